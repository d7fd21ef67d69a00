//! Signaling counters: open connections, messages by type, round-trip times, sessions and
//! rejected requests.
//!
//! The counters are process-wide, like the default registry of most Prometheus clients,
//! because messages are counted where they are encoded and decoded, far from any per-server
//! state. A process normally runs one server. Tests that run several in one process see the
//! sum of all of them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use switchyard_proto::{ClientFrame, ClientMessage, ServerMessage};
use switchyard_sfu::metrics::{Histogram, HistogramSnapshot, NamedCounters, RTT_BUCKETS};

use crate::decode::{decode_with_id, DecodeError};
use crate::session::SessionEnd;

/// Transport of a signaling connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `GET /v1/ws`.
    WebSocket,
    /// `GET /v1/events`, with messages posted to `/v1/send`.
    Sse,
}

impl Transport {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// Process-wide signaling counters. Gauges go up and down, `*_total` values only grow.
#[derive(Debug)]
pub struct SignalCounters {
    websocket_connections: AtomicI64,
    sse_connections: AtomicI64,
    participants: AtomicI64,
    joins_total: AtomicU64,
    resumes: NamedCounters,
    leaves: NamedCounters,
    received: NamedCounters,
    sent: NamedCounters,
    errors: NamedCounters,
    ping_rtt: Histogram,
    ack_rtt: Histogram,
}

/// A copy of [`SignalCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SignalSnapshot {
    /// Open connections by transport label.
    pub connections: Vec<(&'static str, u64)>,
    /// Joined sessions, with or without a connection.
    pub participants: u64,
    /// Successful joins.
    pub joins_total: u64,
    /// Resume attempts by result (`resumed`, `failed`).
    pub resumes: Vec<(&'static str, u64)>,
    /// Ended sessions by reason.
    pub leaves: Vec<(&'static str, u64)>,
    /// Client messages by `type`; frames that did not decode count as `invalid`.
    pub received: Vec<(&'static str, u64)>,
    /// Server messages by `type`.
    pub sent: Vec<(&'static str, u64)>,
    /// `error` messages sent, by code.
    pub errors: Vec<(&'static str, u64)>,
    /// WebSocket ping to pong round trips.
    pub ping_rtt: HistogramSnapshot,
    /// Time from sending a numbered message to the client's `ack` for it.
    pub ack_rtt: HistogramSnapshot,
}

/// Returns the process-wide counters.
pub fn counters() -> &'static SignalCounters {
    static COUNTERS: OnceLock<SignalCounters> = OnceLock::new();
    COUNTERS.get_or_init(|| SignalCounters {
        websocket_connections: AtomicI64::new(0),
        sse_connections: AtomicI64::new(0),
        participants: AtomicI64::new(0),
        joins_total: AtomicU64::new(0),
        resumes: NamedCounters::default(),
        leaves: NamedCounters::default(),
        received: NamedCounters::default(),
        sent: NamedCounters::default(),
        errors: NamedCounters::default(),
        ping_rtt: Histogram::new(RTT_BUCKETS),
        ack_rtt: Histogram::new(RTT_BUCKETS),
    })
}

impl SignalCounters {
    /// Copies every counter.
    pub fn snapshot(&self) -> SignalSnapshot {
        let gauge = |value: &AtomicI64| value.load(Ordering::Relaxed).max(0) as u64;
        SignalSnapshot {
            connections: vec![
                (
                    Transport::WebSocket.as_str(),
                    gauge(&self.websocket_connections),
                ),
                (Transport::Sse.as_str(), gauge(&self.sse_connections)),
            ],
            participants: gauge(&self.participants),
            joins_total: self.joins_total.load(Ordering::Relaxed),
            resumes: self.resumes.snapshot(),
            leaves: self.leaves.snapshot(),
            received: self.received.snapshot(),
            sent: self.sent.snapshot(),
            errors: self.errors.snapshot(),
            ping_rtt: self.ping_rtt.snapshot(),
            ack_rtt: self.ack_rtt.snapshot(),
        }
    }

    /// Counts an open connection until the returned guard is dropped.
    pub(crate) fn connection_opened(&'static self, transport: Transport) -> ConnectionGuard {
        self.connection_gauge(transport)
            .fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            counters: self,
            transport,
        }
    }

    fn connection_gauge(&self, transport: Transport) -> &AtomicI64 {
        match transport {
            Transport::WebSocket => &self.websocket_connections,
            Transport::Sse => &self.sse_connections,
        }
    }

    pub(crate) fn session_started(&self) {
        self.joins_total.fetch_add(1, Ordering::Relaxed);
        self.participants.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn session_ended(&self, reason: &'static str) {
        self.participants.fetch_sub(1, Ordering::Relaxed);
        self.leaves.increment(reason);
    }

    pub(crate) fn resume(&self, resumed: bool) {
        self.resumes
            .increment(if resumed { "resumed" } else { "failed" });
    }

    pub(crate) fn message_received(&self, message: &ClientMessage) {
        self.received.increment(client_type(message));
    }

    pub(crate) fn invalid_message_received(&self) {
        self.received.increment("invalid");
    }

    pub(crate) fn message_sent(&self, message: &ServerMessage) {
        self.sent.increment(server_type(message));
        if let ServerMessage::Error { code, .. } = message {
            self.errors.increment(code.as_str());
        }
    }

    /// Counts a message of type `message_type` that is not an `error`.
    pub(crate) fn message_type_sent(&self, message_type: &'static str) {
        self.sent.increment(message_type);
    }

    pub(crate) fn ping_round_trip(&self, rtt: Duration) {
        self.ping_rtt.observe(rtt);
    }

    pub(crate) fn ack_round_trip(&self, rtt: Duration) {
        self.ack_rtt.observe(rtt);
    }
}

/// Decrements an open-connection gauge when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    counters: &'static SignalCounters,
    transport: Transport,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counters
            .connection_gauge(self.transport)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Encodes the current time as a WebSocket ping payload, so the pong that echoes it gives the
/// round trip without per-connection state.
pub(crate) fn ping_payload() -> [u8; 8] {
    let nanos = epoch().elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).to_be_bytes()
}

/// Returns the round trip of a pong that echoes a [`ping_payload`], or `None` for a pong the
/// client sent on its own or with another payload.
pub(crate) fn pong_round_trip(payload: &[u8]) -> Option<Duration> {
    let sent = u64::from_be_bytes(payload.try_into().ok()?);
    let now = u64::try_from(epoch().elapsed().as_nanos()).ok()?;
    now.checked_sub(sent).map(Duration::from_nanos)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Decodes a client message like [`decode_with_id`] and counts it by type, or as `invalid`.
pub(crate) fn decode_and_count(text: &str) -> Result<ClientFrame, (Option<String>, DecodeError)> {
    let decoded = decode_with_id(text);
    match &decoded {
        Ok(frame) => counters().message_received(&frame.message),
        Err(_) => counters().invalid_message_received(),
    }
    decoded
}

/// Returns the `reason` label of an ended session.
pub(crate) fn session_end_label(end: SessionEnd) -> &'static str {
    match end {
        SessionEnd::Left => "left",
        SessionEnd::MessageTooLarge => "message_too_large",
        SessionEnd::Shutdown => "shutdown",
        SessionEnd::GraceExpired => "grace_expired",
        SessionEnd::ResumeFailed => "resume_failed",
        SessionEnd::Replaced => "replaced",
    }
}

/// Returns the `type` of a client message as it appears on the wire.
pub(crate) fn client_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Join { .. } => "join",
        ClientMessage::Resume { .. } => "resume",
        ClientMessage::Ack { .. } => "ack",
        ClientMessage::Offer { .. } => "offer",
        ClientMessage::Answer { .. } => "answer",
        ClientMessage::Candidate { .. } => "candidate",
        ClientMessage::Leave => "leave",
        ClientMessage::SetMetadata { .. } => "set_metadata",
        ClientMessage::Chat { .. } => "chat",
        ClientMessage::PeerSignal { .. } => "peer_signal",
    }
}

/// Returns the `type` of a server message as it appears on the wire.
pub(crate) fn server_type(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Resumed { .. } => "resumed",
        ServerMessage::Ok => "ok",
        ServerMessage::ParticipantJoined { .. } => "participant_joined",
        ServerMessage::ParticipantLeft { .. } => "participant_left",
        ServerMessage::Answer { .. } => "answer",
        ServerMessage::Offer { .. } => "offer",
        ServerMessage::Candidate { .. } => "candidate",
        ServerMessage::TrackAdded { .. } => "track_added",
        ServerMessage::TrackRemoved { .. } => "track_removed",
        ServerMessage::RoomMetadata { .. } => "room_metadata",
        ServerMessage::ParticipantMetadata { .. } => "participant_metadata",
        ServerMessage::Chat { .. } => "chat",
        ServerMessage::Error { .. } => "error",
        ServerMessage::PeerSignal { .. } => "peer_signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_echo_gives_round_trip() {
        let payload = ping_payload();
        let rtt = pong_round_trip(&payload).expect("our own payload decodes");
        assert!(rtt < Duration::from_secs(60), "{rtt:?}");
        assert_eq!(pong_round_trip(b"client"), None);
        assert_eq!(pong_round_trip(&[]), None);
    }

    #[test]
    fn error_messages_count_by_code() {
        let counters = counters();
        let before = counters.snapshot();
        counters.message_sent(&ServerMessage::error(
            switchyard_proto::ErrorCode::RoomFull,
            "full",
        ));
        let after = counters.snapshot();
        let count = |list: &[(&str, u64)], name: &str| {
            list.iter()
                .find(|(key, _)| *key == name)
                .map_or(0, |(_, value)| *value)
        };
        assert!(count(&after.errors, "room_full") > count(&before.errors, "room_full"));
        assert!(count(&after.sent, "error") > count(&before.sent, "error"));
    }
}
