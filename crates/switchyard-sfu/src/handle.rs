//! Command interface between the signaling layer and the SFU task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};

use switchyard_proto::{Candidate, ServerFrame, Target};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::driver;
use crate::metrics::SfuCounters;
use crate::sfu::Sfu;
use crate::shard::ShardRoutes;
use crate::SfuConfig;

/// Channel on which the SFU sends one participant's SDP, candidates, track notices and errors,
/// in the order they must reach the client. Replies to a request carry its request id.
///
/// The frames are boxed because tokio allocates a channel's first block of 32 slots when the
/// channel is made, and 32 unboxed frames would cost every joined participant about 5 KB.
pub type EventSender = mpsc::UnboundedSender<Box<ServerFrame>>;

#[derive(Debug)]
pub(crate) enum Command {
    Join {
        room: String,
        participant_id: String,
        subscribe: bool,
        events: EventSender,
    },
    PublishOffer {
        participant_id: String,
        request_id: Option<String>,
        sdp: String,
    },
    SubscriberAnswer {
        participant_id: String,
        request_id: Option<String>,
        sdp: String,
    },
    Candidate {
        participant_id: String,
        request_id: Option<String>,
        target: Target,
        candidate: Candidate,
    },
    Leave {
        participant_id: String,
    },
    /// A command sent from inside a span, usually a signaling request's. The SFU runs it in a
    /// child span, so a trace shows the SFU work that the request caused.
    Traced(Box<Command>, tracing::Span),
}

impl Command {
    /// Returns the command's name for its span.
    fn name(&self) -> &'static str {
        match self {
            Command::Join { .. } => "join",
            Command::PublishOffer { .. } => "publish_offer",
            Command::SubscriberAnswer { .. } => "subscriber_answer",
            Command::Candidate { .. } => "candidate",
            Command::Leave { .. } => "leave",
            Command::Traced(command, _) => command.name(),
        }
    }

    /// Returns the command inside its span wrapper, if any.
    fn inner(&self) -> &Command {
        match self {
            Command::Traced(command, _) => command.inner(),
            command => command,
        }
    }

    /// Returns the span the SFU runs this command in, and the command without its span.
    pub(crate) fn into_span(self) -> (tracing::Span, Command) {
        match self {
            Command::Traced(command, parent) => {
                let name = command.name();
                let span = tracing::info_span!(
                    parent: &parent,
                    "sfu_command",
                    otel.name = %format_args!("sfu {name}"),
                    command = name,
                );
                (span, *command)
            }
            command => (tracing::Span::none(), command),
        }
    }
}

/// The shard of a joined participant, and what [`ShardRoutes::place`] counted it as.
#[derive(Debug)]
struct Owner {
    shard: usize,
    room: String,
    subscribe: bool,
}

/// Cheap, cloneable handle to the SFU task. Every method only queues a command, so none blocks.
/// The task stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct SfuHandle {
    /// One command channel per shard.
    shards: Arc<[mpsc::UnboundedSender<Command>]>,
    /// Shard and room of every joined participant, by participant id.
    owners: Arc<Mutex<HashMap<String, Owner>>>,
    /// Members of each room on each shard, shared with the shards.
    routes: Arc<ShardRoutes>,
    /// [`SfuConfig::room_spread_after`].
    room_spread_after: usize,
    media_addr: SocketAddr,
    counters: Arc<SfuCounters>,
}

impl SfuHandle {
    /// Address the media socket is bound to.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    /// Returns the SFU's counters, for metrics.
    pub fn counters(&self) -> Arc<SfuCounters> {
        self.counters.clone()
    }

    /// Adds a participant to a room's forwarding group and creates its publisher and subscriber
    /// peer connections. Tracks already published in the room are offered on the subscriber
    /// connection at once.
    pub fn join(&self, room: &str, participant_id: &str, events: EventSender) {
        self.join_with(room, participant_id, true, events);
    }

    /// Like [`SfuHandle::join`], but with `subscribe` false the participant gets no tracks:
    /// its subscriber connection stays without media and the server never offers on it.
    pub fn join_with(
        &self,
        room: &str,
        participant_id: &str,
        subscribe: bool,
        events: EventSender,
    ) {
        self.send(Command::Join {
            room: room.to_owned(),
            participant_id: participant_id.to_owned(),
            subscribe,
            events,
        });
    }

    /// Applies the client's offer on the publisher connection. The answer, or an `error`, is sent
    /// on the participant's event channel with `request_id`, followed by the server's
    /// candidates.
    pub fn publish_offer(&self, participant_id: &str, request_id: Option<String>, sdp: String) {
        self.send(Command::PublishOffer {
            participant_id: participant_id.to_owned(),
            request_id,
            sdp,
        });
    }

    /// Applies the client's answer to the latest subscriber offer. The reply is `ok` or an
    /// `error`, with `request_id`.
    pub fn subscriber_answer(&self, participant_id: &str, request_id: Option<String>, sdp: String) {
        self.send(Command::SubscriberAnswer {
            participant_id: participant_id.to_owned(),
            request_id,
            sdp,
        });
    }

    /// Adds a remote candidate. Candidates that arrive before their description are buffered.
    /// The reply is `ok` or an `error`, with `request_id`.
    pub fn add_candidate(
        &self,
        participant_id: &str,
        request_id: Option<String>,
        target: Target,
        candidate: Candidate,
    ) {
        self.send(Command::Candidate {
            participant_id: participant_id.to_owned(),
            request_id,
            target,
            candidate,
        });
    }

    /// Closes the participant's peer connections and removes its tracks from every subscriber.
    pub fn leave(&self, participant_id: &str) {
        self.send(Command::Leave {
            participant_id: participant_id.to_owned(),
        });
    }

    fn send(&self, command: Command) {
        let span = tracing::Span::current();
        let command = if span.is_disabled() {
            command
        } else {
            Command::Traced(Box::new(command), span)
        };
        let shard = self.shard_for(&command);
        // The task only stops once every handle is dropped, so the channel is open while `self`
        // exists. A failed send cannot happen, and would be harmless.
        let _ = self.shards[shard].send(command);
    }

    /// Picks the shard that runs a command: a join goes to the shard that
    /// [`ShardRoutes::place`] picks in its room, and every later command of that participant
    /// follows it there. Commands for unknown participants go to shard 0, which replies with an
    /// error as for any unknown participant.
    fn shard_for(&self, command: &Command) -> usize {
        // A panic while holding the lock cannot leave the map half-written: every access is
        // one insert, lookup or remove.
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match command.inner() {
            Command::Join {
                room,
                participant_id,
                subscribe,
                ..
            } => {
                if let Some(owner) = owners.get(participant_id) {
                    // The shard replies `already_joined`.
                    return owner.shard;
                }
                let (shard, created) =
                    self.routes
                        .place(room, self.shards.len(), self.room_spread_after, *subscribe);
                if created {
                    self.counters.room_created();
                }
                let owner = Owner {
                    shard,
                    room: room.clone(),
                    subscribe: *subscribe,
                };
                owners.insert(participant_id.clone(), owner);
                shard
            }
            Command::Leave { participant_id } => match owners.remove(participant_id) {
                Some(owner) => {
                    if self.routes.leave(&owner.room, owner.shard, owner.subscribe) {
                        self.counters.room_removed();
                    }
                    owner.shard
                }
                None => 0,
            },
            Command::PublishOffer { participant_id, .. }
            | Command::SubscriberAnswer { participant_id, .. }
            | Command::Candidate { participant_id, .. } => {
                owners.get(participant_id).map_or(0, |owner| owner.shard)
            }
            Command::Traced(..) => 0,
        }
    }
}

/// Binds the media sockets and spawns one SFU task per worker on the current tokio runtime.
///
/// Fails when a socket cannot be bound, or when it is bound to an unspecified address
/// (`0.0.0.0`, `::`) without a public address to advertise.
pub async fn start(config: SfuConfig) -> std::io::Result<SfuHandle> {
    let workers = config.workers.max(1);
    let first = bind_media_socket(config.bind, workers > 1)?;
    let media_addr = first.local_addr()?;
    let advertised = match config.public_ip {
        Some(ip) => SocketAddr::new(ip, media_addr.port()),
        None if media_addr.ip().is_unspecified() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "media socket bound to {media_addr}, which cannot be advertised as an ICE \
                     candidate; set a public IP or bind a specific address"
                ),
            ));
        }
        None => media_addr,
    };
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(bind_media_socket(media_addr, true)?);
    }

    let counters = Arc::new(SfuCounters::default());
    let routes = Arc::new(ShardRoutes::default());
    let mut commands = Vec::with_capacity(workers);
    let mut command_receivers = Vec::with_capacity(workers);
    let mut inboxes = Vec::with_capacity(workers);
    let mut inbox_receivers = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    let mut link_receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (control, control_receiver) = mpsc::unbounded_channel();
        let (media, media_receiver) = mpsc::channel(driver::MEDIA_INBOX_CAPACITY);
        links.push(driver::ShardLink { control, media });
        link_receivers.push((control_receiver, media_receiver));
        let (sender, receiver) = mpsc::unbounded_channel();
        commands.push(sender);
        command_receivers.push(receiver);
        let (sender, receiver) = mpsc::channel(driver::INBOX_CAPACITY);
        inboxes.push(sender);
        inbox_receivers.push(receiver);
    }
    let inboxes: Arc<[driver::InboxSender]> = inboxes.into();
    let links: Arc<[driver::ShardLink]> = links.into();

    let tasks = sockets
        .into_iter()
        .zip(command_receivers)
        .zip(inbox_receivers)
        .zip(link_receivers);
    for (shard, (((socket, commands), inbox), (control, media))) in tasks.enumerate() {
        let mut sfu =
            Sfu::new(config.clone(), media_addr, advertised).map_err(std::io::Error::other)?;
        sfu.counters = counters.clone();
        sfu.routes = routes.clone();
        sfu.shard = shard;
        sfu.shards = workers;
        let mailboxes = driver::Mailboxes {
            commands,
            inbox,
            shards: inboxes.clone(),
            control,
            media,
            links: links.clone(),
        };
        tokio::spawn(driver::run(socket, sfu, mailboxes));
    }
    info!(%media_addr, %advertised, workers, "SFU media sockets bound");
    Ok(SfuHandle {
        shards: commands.into(),
        owners: Arc::default(),
        routes,
        room_spread_after: config.room_spread_after,
        media_addr,
        counters,
    })
}

/// Bytes requested for each media socket's receive and send buffers.
const MEDIA_SOCKET_BUFFER: usize = 4 << 20;

/// Binds one media socket, with `SO_REUSEPORT` when several workers share the address.
fn bind_media_socket(address: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // The kernel caps the request at net.core.rmem_max and wmem_max, which is fine: larger
    // buffers only absorb longer bursts, such as one video frame fanned out to many peers.
    if let Err(error) = socket
        .set_recv_buffer_size(MEDIA_SOCKET_BUFFER)
        .and_then(|()| socket.set_send_buffer_size(MEDIA_SOCKET_BUFFER))
    {
        debug!(%error, "failed to enlarge media socket buffers");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}
