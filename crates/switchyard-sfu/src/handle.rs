//! Command interface between the signaling layer and the SFU task.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_proto::{Candidate, ServerFrame, Target};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::info;

use crate::driver;
use crate::metrics::SfuCounters;
use crate::sfu::Sfu;
use crate::SfuConfig;

/// Channel on which the SFU sends one participant's SDP, candidates, track notices and errors,
/// in the order they must reach the client. Replies to a request carry its request id.
pub type EventSender = mpsc::UnboundedSender<ServerFrame>;

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
}

/// Cheap, cloneable handle to the SFU task. Every method only queues a command, so none blocks.
/// The task stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct SfuHandle {
    commands: mpsc::UnboundedSender<Command>,
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
        // The task only stops once every handle is dropped, so the channel is open while `self`
        // exists. A failed send cannot happen, and would be harmless.
        let _ = self.commands.send(command);
    }
}

/// Binds the media socket and spawns the SFU task on the current tokio runtime.
///
/// Fails when the socket cannot be bound, or when it is bound to an unspecified address
/// (`0.0.0.0`, `::`) without a public address to advertise.
pub async fn start(config: SfuConfig) -> std::io::Result<SfuHandle> {
    let socket = UdpSocket::bind(config.bind).await?;
    let media_addr = socket.local_addr()?;
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
    let sfu = Sfu::new(config, media_addr, advertised).map_err(std::io::Error::other)?;
    let counters = sfu.counters.clone();
    let (commands, receiver) = mpsc::unbounded_channel();
    info!(%media_addr, %advertised, "SFU media socket bound");
    tokio::spawn(driver::run(socket, sfu, receiver));
    Ok(SfuHandle {
        commands,
        media_addr,
        counters,
    })
}
