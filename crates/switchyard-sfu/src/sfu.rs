//! The SFU state machine: every participant's two peer connections, the routing of datagrams to
//! them, and the room membership that decides who receives whose media.
//!
//! `Sfu` does no I/O. The driver feeds it commands, datagrams and the time, and takes datagrams
//! to send from [`Sfu::poll_transmit`]. Events for clients go straight onto each participant's
//! unbounded channel, which never blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use switchyard_proto::{ErrorCode, ServerFrame, ServerMessage, Target};
use tracing::{debug, info};

use crate::forward::{PublishedTrack, Subscription};
use crate::handle::{Command, EventSender};
use crate::log_limit::LogLimiter;
use crate::metrics::SfuCounters;
use crate::peer::{
    build_peer_connection, dtls_certificate, host_candidate, IceCredentials, PeerRole,
};
use crate::remote::{RemoteTracks, ShardMessage};
use crate::shard::ShardRoutes;
use crate::stun;
use crate::SfuConfig;
use rtc::peer_connection::certificate::RTCCertificate;

/// Internal handle of a participant, stable for one join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ParticipantKey(pub u64);

/// One of a participant's two peer connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PeerKey {
    pub participant: ParticipantKey,
    pub target: Target,
}

/// One server-side peer connection and the state the SFU keeps beside it.
pub(crate) struct Peer {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    /// Remote candidates that arrived before the remote description.
    pub pending_candidates: Vec<RTCIceCandidateInit>,
    pub has_remote_description: bool,
    /// STUN checks that arrived before the remote description, replayed once it is set. The ICE
    /// agent drops checks it cannot authenticate yet, which costs the client a retransmission.
    pub early_checks: Vec<(SocketAddr, BytesMut)>,
    pub connected: bool,
    /// The last state the connection reported, counted in [`SfuCounters`].
    pub state: RTCPeerConnectionState,
    /// The host candidate is in the connection's local description.
    pub host_candidate_added: bool,
    /// The host candidate and end-of-candidates were sent to the client.
    pub host_candidate_sent: bool,
    pub next_timeout: Option<Instant>,
}

/// Subscriber-side offer/answer state. The server is the only offerer on the subscriber
/// connection and keeps at most one offer outstanding; changes made meanwhile are collected
/// into the next offer, sent when the answer arrives.
#[derive(Default)]
pub(crate) struct SubscriberNegotiation {
    pub offer_in_flight: bool,
    pub needs_offer: bool,
    /// `track_added` / `track_removed` notices to send just before the next offer.
    pub notices: Vec<ServerMessage>,
}

pub(crate) struct Participant {
    pub id: String,
    pub room: String,
    pub events: EventSender,
    pub publisher: Peer,
    pub subscriber: Peer,
    pub published: Vec<PublishedTrack>,
    pub subscriptions: Vec<Subscription>,
    pub negotiation: SubscriberNegotiation,
    /// Whether other participants' tracks are forwarded to this one.
    pub subscribe: bool,
}

impl Participant {
    pub fn peer_mut(&mut self, target: Target) -> &mut Peer {
        self.split(target).1
    }

    /// Returns the participant id beside one of its connections, for logging while the
    /// connection is borrowed.
    pub fn split(&mut self, target: Target) -> (&str, &mut Peer) {
        match target {
            Target::Publisher => (&self.id, &mut self.publisher),
            Target::Subscriber => (&self.id, &mut self.subscriber),
        }
    }

    /// Queues a message for the client. A closed channel means the session is ending and the
    /// signaling layer will send `leave`, so a failed send is ignored.
    pub fn send(&self, message: ServerMessage) {
        let _ = self.events.send(Box::new(ServerFrame::event(message)));
    }

    /// Queues the one reply to the request with id `request_id`.
    pub fn reply(&self, request_id: Option<String>, message: ServerMessage) {
        let _ = self
            .events
            .send(Box::new(ServerFrame::reply(request_id, message)));
    }
}

/// A datagram to send from the media socket.
#[derive(Debug)]
pub(crate) struct Transmit {
    pub destination: SocketAddr,
    pub payload: BytesMut,
}

pub(crate) struct Sfu {
    pub config: SfuConfig,
    pub local_addr: SocketAddr,
    pub host_candidate: RTCIceCandidateInit,
    /// Boxed: a participant with its two peer connections is about 17 KB, and the map's table
    /// would otherwise keep that much room for every free slot and move it on every resize.
    pub participants: HashMap<ParticipantKey, Box<Participant>>,
    pub keys_by_id: HashMap<String, ParticipantKey>,
    /// Event channels of participants whose peer connections could not be created, so that
    /// their later requests still get an `error` reply. Removed on leave.
    failed_joins: HashMap<String, EventSender>,
    pub rooms: HashMap<String, Vec<ParticipantKey>>,
    by_ufrag: HashMap<String, PeerKey>,
    by_address: HashMap<SocketAddr, PeerKey>,
    pub transmits: VecDeque<Transmit>,
    /// Connections with output waiting to be drained.
    pub dirty: Vec<PeerKey>,
    next_key: u64,
    /// Earliest time a throttled keyframe request may go out.
    pub next_keyframe_flush: Option<Instant>,
    pub counters: Arc<SfuCounters>,
    /// Owners of ufrags and addresses across shards, and this state machine's shard index.
    pub routes: Arc<ShardRoutes>,
    pub shard: usize,
    /// Number of shards. With more than one, rooms may span shards.
    pub shards: usize,
    /// Messages for other shards, with the index of each one's shard, for the driver to send.
    pub shard_out: Vec<(usize, ShardMessage)>,
    /// Tracks published on other shards.
    pub remote: RemoteTracks,
    /// Reused list of shards that receive a copy of one RTP packet.
    pub spread_scratch: Vec<usize>,
    /// Last number used for a [`Sfu::new_global_track_id`].
    pub next_global_track: u64,
    /// The DTLS certificate of every peer connection of this shard, made once at start.
    certificate: RTCCertificate,
}

/// Upper bound on drain rounds for one input, so a feedback loop between connections cannot spin
/// the task forever. Each round handles every connection that got new output in the last one.
const MAX_DRAIN_ROUNDS: usize = 64;

impl Sfu {
    /// Creates the state machine for a socket bound at `local_addr` that advertises `advertised`
    /// in its ICE candidate.
    pub fn new(
        config: SfuConfig,
        local_addr: SocketAddr,
        advertised: SocketAddr,
    ) -> Result<Self, rtc::shared::error::Error> {
        Ok(Sfu {
            certificate: dtls_certificate()?,
            config,
            local_addr,
            host_candidate: host_candidate(advertised)?,
            participants: HashMap::new(),
            keys_by_id: HashMap::new(),
            failed_joins: HashMap::new(),
            rooms: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_address: HashMap::new(),
            transmits: VecDeque::new(),
            dirty: Vec::new(),
            next_key: 1,
            next_keyframe_flush: None,
            counters: Arc::default(),
            routes: Arc::default(),
            shard: 0,
            shards: 1,
            shard_out: Vec::new(),
            remote: RemoteTracks::default(),
            spread_scratch: Vec::new(),
            next_global_track: 0,
        })
    }

    /// Applies one command from the signaling layer.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        let (span, command) = command.into_span();
        let _entered = span.enter();
        match command {
            Command::Join {
                room,
                participant_id,
                subscribe,
                events,
            } => self.join(now, room, participant_id, subscribe, events),
            Command::PublishOffer {
                participant_id,
                request_id,
                sdp,
            } => {
                if let Some(key) = self.key_for_request(&participant_id, &request_id) {
                    self.handle_publish_offer(now, key, request_id, sdp);
                }
            }
            Command::SubscriberAnswer {
                participant_id,
                request_id,
                sdp,
            } => {
                if let Some(key) = self.key_for_request(&participant_id, &request_id) {
                    self.handle_subscriber_answer(now, key, request_id, sdp);
                }
            }
            Command::Candidate {
                participant_id,
                request_id,
                target,
                candidate,
            } => {
                if let Some(key) = self.key_for_request(&participant_id, &request_id) {
                    self.handle_remote_candidate(key, request_id, target, &candidate);
                }
            }
            Command::Leave { participant_id } => {
                self.failed_joins.remove(&participant_id);
                if let Some(key) = self.key_of(&participant_id) {
                    self.leave(now, key);
                }
            }
            // `into_span` unwrapped it, and commands are wrapped once.
            Command::Traced(command, _) => self.handle_command(now, *command),
        }
        self.drain_dirty(now);
    }

    /// Returns the key of the participant a request is for. A participant whose join failed
    /// gets an `internal_error` reply instead, so that every request has a reply.
    fn key_for_request(
        &self,
        participant_id: &str,
        request_id: &Option<String>,
    ) -> Option<ParticipantKey> {
        if let Some(events) = self.failed_joins.get(participant_id) {
            let _ = events.send(Box::new(ServerFrame::reply(
                request_id.clone(),
                ServerMessage::error(
                    ErrorCode::InternalError,
                    "the server could not create this participant's peer connections",
                ),
            )));
            return None;
        }
        self.key_of(participant_id)
    }

    fn key_of(&self, participant_id: &str) -> Option<ParticipantKey> {
        let key = self.keys_by_id.get(participant_id).copied();
        if key.is_none() {
            debug!(participant_id, "command for unknown participant ignored");
        }
        key
    }

    fn join(
        &mut self,
        now: Instant,
        room: String,
        participant_id: String,
        subscribe: bool,
        events: EventSender,
    ) {
        if self.keys_by_id.contains_key(&participant_id) {
            let _ = events.send(Box::new(ServerFrame::event(ServerMessage::error(
                ErrorCode::AlreadyJoined,
                "participant is already in the SFU",
            ))));
            return;
        }
        let publisher = match self.new_peer(now, PeerRole::Publisher) {
            Ok(peer) => peer,
            Err(error) => return self.fail_join(events, participant_id, error),
        };
        let subscriber = match self.new_peer(now, PeerRole::Subscriber) {
            Ok(peer) => peer,
            Err(error) => return self.fail_join(events, participant_id, error),
        };

        for _ in 0..2 {
            self.counters
                .peer_state_changed(None, Some(RTCPeerConnectionState::New));
        }
        let key = self.new_participant_key();
        self.by_ufrag.insert(
            publisher.ufrag.clone(),
            PeerKey {
                participant: key,
                target: Target::Publisher,
            },
        );
        self.by_ufrag.insert(
            subscriber.ufrag.clone(),
            PeerKey {
                participant: key,
                target: Target::Subscriber,
            },
        );
        self.routes.bind_ufrag(&publisher.ufrag, self.shard);
        self.routes.bind_ufrag(&subscriber.ufrag, self.shard);
        info!(room_id = %room, participant_id = %participant_id, "participant joined the SFU");
        self.participants.insert(
            key,
            Box::new(Participant {
                id: participant_id.clone(),
                room: room.clone(),
                events,
                publisher,
                subscriber,
                published: Vec::new(),
                subscriptions: Vec::new(),
                negotiation: SubscriberNegotiation::default(),
                subscribe,
            }),
        );
        self.keys_by_id.insert(participant_id, key);
        self.rooms.entry(room.clone()).or_default().push(key);

        self.subscribe_to_room(now, key);
    }

    /// Returns a key no participant or stand-in of this shard has had.
    pub(crate) fn new_participant_key(&mut self) -> ParticipantKey {
        let key = ParticipantKey(self.next_key);
        self.next_key += 1;
        key
    }

    fn fail_join(
        &mut self,
        events: EventSender,
        participant_id: String,
        error: rtc::shared::error::Error,
    ) {
        tracing::error!(%participant_id, %error, "failed to create peer connections");
        let _ = events.send(Box::new(ServerFrame::event(ServerMessage::error(
            ErrorCode::InternalError,
            "failed to create peer connections",
        ))));
        self.failed_joins.insert(participant_id, events);
    }

    fn new_peer(&self, now: Instant, role: PeerRole) -> Result<Peer, rtc::shared::error::Error> {
        let credentials = IceCredentials::random();
        let pc = build_peer_connection(
            now,
            role,
            &credentials,
            &self.certificate,
            &self.config,
            self.counters.clone(),
        )?;
        Ok(Peer {
            pc,
            ufrag: credentials.ufrag,
            pending_candidates: Vec::new(),
            has_remote_description: false,
            early_checks: Vec::new(),
            connected: false,
            state: RTCPeerConnectionState::New,
            host_candidate_added: false,
            host_candidate_sent: false,
            next_timeout: None,
        })
    }

    /// Removes a participant: its tracks leave every subscriber, its connections close.
    pub fn leave(&mut self, now: Instant, key: ParticipantKey) {
        self.unpublish_all(now, key);
        let Some(mut participant) = self.participants.remove(&key) else {
            return;
        };
        info!(room_id = %participant.room, participant_id = %participant.id, "participant left the SFU");
        self.keys_by_id.remove(&participant.id);
        self.by_ufrag.remove(&participant.publisher.ufrag);
        self.by_ufrag.remove(&participant.subscriber.ufrag);
        self.routes.unbind_ufrag(&participant.publisher.ufrag);
        self.routes.unbind_ufrag(&participant.subscriber.ufrag);
        let routes = &self.routes;
        self.by_address.retain(|address, peer| {
            let keep = peer.participant != key;
            if !keep {
                routes.unbind_address(address);
            }
            keep
        });
        self.dirty.retain(|peer| peer.participant != key);
        if let Some(members) = self.rooms.get_mut(&participant.room) {
            members.retain(|member| *member != key);
            if members.is_empty() {
                self.rooms.remove(&participant.room);
            }
        }
        // Subscriptions of this participant only live in its own connection, which closes here.
        for peer in [&mut participant.publisher, &mut participant.subscriber] {
            self.counters.peer_state_changed(Some(peer.state), None);
            if let Err(error) = peer.pc.close() {
                debug!(participant_id = %participant.id, %error, "closing peer connection failed");
            }
            while let Some(transmit) = peer.pc.poll_write() {
                self.transmits.push_back(Transmit {
                    destination: transmit.transport.peer_addr,
                    payload: transmit.message,
                });
            }
        }
    }

    /// Routes one datagram from the media socket to its peer connection and drains the output.
    /// Returns false, without handling it, when the datagram belongs to none of this state
    /// machine's connections.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, payload: &[u8]) -> bool {
        let handled = self.feed_datagram(now, source, payload);
        self.drain_dirty(now);
        handled
    }

    /// Routes one datagram to its peer connection like [`Sfu::handle_datagram`], but leaves the
    /// output to a later [`Sfu::drain_dirty`]. Feeding several datagrams of a read before draining
    /// puts the copies of a burst for one subscriber next to each other in the transmit queue,
    /// so that they can leave as one GSO send.
    pub fn feed_datagram(&mut self, now: Instant, source: SocketAddr, payload: &[u8]) -> bool {
        let Some(peer_key) = self.route(source, payload) else {
            return false;
        };
        let Some(participant) = self.participants.get_mut(&peer_key.participant) else {
            return true;
        };
        let (participant_id, peer) = participant.split(peer_key.target);
        if !peer.has_remote_description && stun::is_stun(payload) {
            if peer.early_checks.len() < MAX_EARLY_CHECKS {
                peer.early_checks.push((source, BytesMut::from(payload)));
            }
            return true;
        }
        feed(
            self.local_addr,
            now,
            participant_id,
            peer,
            source,
            BytesMut::from(payload),
        );
        self.dirty.push(peer_key);
        true
    }

    /// Feeds the STUN checks held back by [`Sfu::handle_datagram`] into a connection that now has
    /// its remote description.
    pub fn replay_early_checks(&mut self, now: Instant, peer_key: PeerKey) {
        let local_addr = self.local_addr;
        let Some(participant) = self.participants.get_mut(&peer_key.participant) else {
            return;
        };
        let (participant_id, peer) = participant.split(peer_key.target);
        for (source, payload) in std::mem::take(&mut peer.early_checks) {
            feed(local_addr, now, participant_id, peer, source, payload);
        }
        self.dirty.push(peer_key);
    }

    /// Finds the connection a datagram belongs to: by the USERNAME of a STUN request, which also
    /// (re)binds the source address, and otherwise by the source address alone.
    fn route(&mut self, source: SocketAddr, payload: &[u8]) -> Option<PeerKey> {
        if let Some(ufrag) = stun::local_ufrag(payload) {
            if let Some(peer) = self.by_ufrag.get(ufrag).copied() {
                self.by_address.insert(source, peer);
                self.routes.bind_address(source, self.shard);
                return Some(peer);
            }
        }
        self.by_address.get(&source).copied()
    }

    /// Runs the timers of every connection that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerKey> = self
            .participants
            .iter()
            .flat_map(|(key, participant)| {
                [
                    (Target::Publisher, participant.publisher.next_timeout),
                    (Target::Subscriber, participant.subscriber.next_timeout),
                ]
                .into_iter()
                .filter(|(_, deadline)| deadline.is_some_and(|deadline| deadline <= now))
                .map(|(target, _)| PeerKey {
                    participant: *key,
                    target,
                })
            })
            .collect();
        for peer_key in due {
            if let Some(participant) = self.participants.get_mut(&peer_key.participant) {
                let (participant_id, peer) = participant.split(peer_key.target);
                if let Err(error) = peer.pc.handle_timeout(now) {
                    debug!(participant_id, %error, "peer connection timer failed");
                }
                peer.next_timeout = None;
                self.dirty.push(peer_key);
            }
        }
        if self.next_keyframe_flush.is_some_and(|flush| flush <= now) {
            self.next_keyframe_flush = None;
            self.flush_keyframe_requests(now);
        }
        self.drain_dirty(now);
    }

    /// Returns the earliest deadline of any connection timer or throttled keyframe request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // NOTE: a linear scan per loop turn; fine for hundreds of connections, a timer wheel
        // would be needed for many thousands.
        self.participants
            .values()
            .flat_map(|participant| {
                [
                    participant.publisher.next_timeout,
                    participant.subscriber.next_timeout,
                ]
            })
            .flatten()
            .chain(self.next_keyframe_flush)
            .min()
    }

    /// Returns the next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Drains output from every connection marked dirty: datagrams, events and application
    /// messages (RTP and RTCP). Handling those can mark further connections dirty, for example
    /// forwarding RTP to subscribers, so this repeats until nothing is left.
    pub fn drain_dirty(&mut self, now: Instant) {
        for _ in 0..MAX_DRAIN_ROUNDS {
            if self.dirty.is_empty() {
                return;
            }
            let round: HashSet<PeerKey> = self.dirty.drain(..).collect();
            for peer_key in round {
                self.drain_peer(now, peer_key);
            }
        }
        debug!(
            pending = self.dirty.len(),
            "drain rounds exhausted; the rest waits for the next input"
        );
    }

    fn drain_peer(&mut self, now: Instant, peer_key: PeerKey) {
        let Some(participant) = self.participants.get_mut(&peer_key.participant) else {
            return;
        };
        let peer = participant.peer_mut(peer_key.target);
        let mut events = Vec::new();
        let mut messages = Vec::new();
        // Events and reads can produce writes (RTCP replies), so loop until all three are empty.
        loop {
            let mut progressed = false;
            while let Some(transmit) = peer.pc.poll_write() {
                progressed = true;
                self.transmits.push_back(Transmit {
                    destination: transmit.transport.peer_addr,
                    payload: transmit.message,
                });
            }
            while let Some(event) = peer.pc.poll_event() {
                progressed = true;
                events.push(event);
            }
            while let Some(message) = peer.pc.poll_read() {
                progressed = true;
                messages.push(message.message);
            }
            if !progressed {
                break;
            }
        }
        peer.next_timeout = peer.pc.poll_timeout();

        for event in events {
            self.handle_peer_event(now, peer_key, event);
        }
        for message in messages {
            self.handle_peer_message(now, peer_key, message);
        }
    }

    /// Shortens the driver's sleep so a throttled keyframe request goes out on time.
    pub fn schedule_keyframe_flush(&mut self, at: Instant) {
        self.next_keyframe_flush = Some(match self.next_keyframe_flush {
            Some(existing) => existing.min(at),
            None => at,
        });
    }

    /// Other participants in the same room as `key`.
    pub fn room_peers(&self, key: ParticipantKey) -> Vec<ParticipantKey> {
        let Some(participant) = self.participants.get(&key) else {
            return Vec::new();
        };
        self.rooms
            .get(&participant.room)
            .map(|members| {
                members
                    .iter()
                    .copied()
                    .filter(|member| *member != key)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Hands one datagram to a peer connection. Errors concern that peer only and are logged.
fn feed(
    local_addr: SocketAddr,
    now: Instant,
    participant_id: &str,
    peer: &mut Peer,
    source: SocketAddr,
    payload: BytesMut,
) {
    let input = TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr,
            peer_addr: source,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: payload,
    };
    if let Err(error) = peer.pc.handle_read(input) {
        // A peer can send garbage at line rate, so these lines are rate-limited.
        static REJECTED: LogLimiter = LogLimiter::new(10);
        if let Some(suppressed) = REJECTED.admit(now) {
            debug!(participant_id, %source, %error, suppressed, "peer connection rejected datagram");
        }
    }
}

/// STUN checks held per connection until its remote description is set. A browser sends one
/// check per candidate pair and retransmits, so a few cover a normal start.
const MAX_EARLY_CHECKS: usize = 16;

/// Minimum gap between two keyframe requests sent to one publisher track.
pub(crate) const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
