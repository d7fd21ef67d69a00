//! Counters of the SFU, updated by the state machine and the RTCP observer on the media path
//! and copied by [`SfuCounters::snapshot`] for a metrics exporter.
//!
//! Every update is one relaxed atomic operation, with no lock and no allocation, so counting
//! costs the forwarding path a few nanoseconds per packet. [`Histogram`] and [`NamedCounters`]
//! are shared building blocks that the signaling crate uses too.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rtc::peer_connection::state::RTCPeerConnectionState;
use switchyard_proto::TrackKind;

/// Upper bounds in seconds of the round-trip time histograms' buckets.
pub const RTT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds in seconds of the buckets of the time RTP packets spend in the SFU.
pub const DELAY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.1,
];

/// A Prometheus-style histogram of durations with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative; the last one counts values above every bound.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bound in seconds and the cumulative count of observations at or below it.
    pub buckets: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Creates an empty histogram with these bucket bounds in seconds, in ascending order.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Copies the histogram, with cumulative bucket counts as Prometheus expects them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(bound, bucket)| {
                cumulative += bucket.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let above = self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        // Relaxed loads may see a bucket increment without the count's, so the count is at least
        // the sum of the buckets, as the exposition format requires.
        let count = self.count.load(Ordering::Relaxed).max(cumulative + above);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Slots of a [`NamedCounters`]. More names than this are counted under `other`.
const NAMED_SLOTS: usize = 48;

/// Counters keyed by a name from a small fixed set, such as message types or error codes.
///
/// A name takes a free slot the first time it is counted, so the set of names need not be
/// listed here. Lookups compare at most [`NAMED_SLOTS`] names and never lock or allocate.
#[derive(Debug)]
pub struct NamedCounters {
    slots: [(OnceLock<&'static str>, AtomicU64); NAMED_SLOTS],
    other: AtomicU64,
}

impl Default for NamedCounters {
    fn default() -> Self {
        NamedCounters {
            slots: std::array::from_fn(|_| (OnceLock::new(), AtomicU64::new(0))),
            other: AtomicU64::new(0),
        }
    }
}

impl NamedCounters {
    /// Adds one to the counter of `name`.
    pub fn increment(&self, name: &'static str) {
        for (slot, count) in &self.slots {
            // Every caller scans the slots in the same order and a slot is set once, so a name
            // takes exactly one slot even when two threads count it first at the same time.
            let taken = *slot.get_or_init(|| name);
            if taken == name {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns every name counted so far with its count, sorted by name. Names beyond the slots
    /// appear as `other`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let other = self.other.load(Ordering::Relaxed);
        let mut counts: Vec<(&'static str, u64)> = self
            .slots
            .iter()
            .filter_map(|(slot, count)| Some((*slot.get()?, count.load(Ordering::Relaxed))))
            .chain((other > 0).then_some(("other", other)))
            .collect();
        counts.sort_unstable_by_key(|(name, _)| *name);
        counts
    }
}

/// Reason a received RTP packet was not forwarded to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The payload type was not negotiated on the publisher connection.
    UnknownPayloadType,
    /// The subscriber did not accept the track's codec.
    CodecNotNegotiated,
    /// The subscriber connection rejected the packet.
    WriteFailed,
    /// Another shard of the room had too many packets waiting to take this one.
    ShardInboxFull,
}

impl DropReason {
    /// Every reason, in the order of the counters.
    pub const ALL: [DropReason; 4] = [
        DropReason::UnknownPayloadType,
        DropReason::CodecNotNegotiated,
        DropReason::WriteFailed,
        DropReason::ShardInboxFull,
    ];

    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownPayloadType => "unknown_payload_type",
            DropReason::CodecNotNegotiated => "codec_not_negotiated",
            DropReason::WriteFailed => "write_failed",
            DropReason::ShardInboxFull => "shard_inbox_full",
        }
    }
}

/// RTCP feedback message types that the SFU counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// Generic NACK (RFC 4585 section 6.2.1).
    Nack,
    /// Picture Loss Indication (RFC 4585 section 6.3.1).
    Pli,
    /// Full Intra Request (RFC 5104 section 4.3.1).
    Fir,
}

impl Feedback {
    /// Every type, in the order of the counters.
    pub const ALL: [Feedback; 3] = [Feedback::Nack, Feedback::Pli, Feedback::Fir];

    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Nack => "nack",
            Feedback::Pli => "pli",
            Feedback::Fir => "fir",
        }
    }
}

/// Peer connection states in the order of the gauges.
pub const PEER_STATES: [RTCPeerConnectionState; 7] = [
    RTCPeerConnectionState::Unspecified,
    RTCPeerConnectionState::New,
    RTCPeerConnectionState::Connecting,
    RTCPeerConnectionState::Connected,
    RTCPeerConnectionState::Disconnected,
    RTCPeerConnectionState::Failed,
    RTCPeerConnectionState::Closed,
];

/// Live counters of one SFU. Gauges go up and down, `*_total` values only grow.
///
/// NOTE: every SFU task of a server updates the same counters, so at high packet rates the
/// tasks contend for their cache lines. Per-task copies added up at snapshot time would avoid
/// that; it has not been measured.
#[derive(Debug)]
pub struct SfuCounters {
    rooms: AtomicI64,
    peer_connections: [AtomicI64; PEER_STATES.len()],
    tracks: [AtomicI64; 2],
    received: PacketCounter,
    forwarded: PacketCounter,
    sent_messages: AtomicU64,
    sent_datagrams: AtomicU64,
    shard_copies: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    feedback_received: [AtomicU64; Feedback::ALL.len()],
    feedback_sent: [AtomicU64; Feedback::ALL.len()],
    rtt: Histogram,
    delay: Histogram,
}

#[derive(Debug, Default)]
struct PacketCounter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl PacketCounter {
    fn add(&self, bytes: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// A copy of [`SfuCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SfuSnapshot {
    /// Rooms with at least one participant in the SFU.
    pub rooms: u64,
    /// Peer connections that exist now, by state name as WebRTC spells it (`new`, `connected`).
    pub peer_connections: Vec<(&'static str, u64)>,
    /// Published tracks that exist now, by kind (`audio`, `video`).
    pub tracks: Vec<(&'static str, u64)>,
    /// RTP packets received from publishers.
    pub received_packets: u64,
    /// RTP payload bytes received from publishers.
    pub received_bytes: u64,
    /// RTP packets sent to subscribers.
    pub forwarded_packets: u64,
    /// RTP payload bytes sent to subscribers.
    pub forwarded_bytes: u64,
    /// Messages that the media sockets handed to the kernel. With UDP GSO one message carries
    /// several datagrams.
    pub sent_messages: u64,
    /// Datagrams the media sockets sent, RTP, RTCP, STUN and DTLS alike.
    pub sent_datagrams: u64,
    /// RTP packets handed to another SFU task, for the members of a room there.
    pub shard_copies: u64,
    /// Packets not forwarded to one subscriber, by reason.
    pub dropped_packets: Vec<(&'static str, u64)>,
    /// RTCP feedback messages received, by type.
    pub feedback_received: Vec<(&'static str, u64)>,
    /// RTCP feedback messages sent, by type.
    pub feedback_sent: Vec<(&'static str, u64)>,
    /// Round-trip times to subscribers, from their RTCP receiver reports.
    pub rtt: HistogramSnapshot,
    /// Time from the kernel's receipt of an RTP datagram until every copy made from it was sent.
    pub delay: HistogramSnapshot,
}

impl Default for SfuCounters {
    fn default() -> Self {
        SfuCounters {
            rooms: AtomicI64::new(0),
            peer_connections: Default::default(),
            tracks: Default::default(),
            received: PacketCounter::default(),
            forwarded: PacketCounter::default(),
            sent_messages: AtomicU64::new(0),
            sent_datagrams: AtomicU64::new(0),
            shard_copies: AtomicU64::new(0),
            dropped: Default::default(),
            feedback_received: Default::default(),
            feedback_sent: Default::default(),
            rtt: Histogram::new(RTT_BUCKETS),
            delay: Histogram::new(DELAY_BUCKETS),
        }
    }
}

impl SfuCounters {
    /// Copies every counter.
    pub fn snapshot(&self) -> SfuSnapshot {
        let gauge = |value: &AtomicI64| value.load(Ordering::Relaxed).max(0) as u64;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        SfuSnapshot {
            rooms: gauge(&self.rooms),
            peer_connections: PEER_STATES
                .iter()
                .zip(&self.peer_connections)
                .map(|(state, count)| (state_name(*state), gauge(count)))
                .collect(),
            tracks: [TrackKind::Audio, TrackKind::Video]
                .into_iter()
                .map(|kind| (kind_name(kind), gauge(&self.tracks[kind_index(kind)])))
                .collect(),
            received_packets: load(&self.received.packets),
            received_bytes: load(&self.received.bytes),
            forwarded_packets: load(&self.forwarded.packets),
            forwarded_bytes: load(&self.forwarded.bytes),
            sent_messages: load(&self.sent_messages),
            sent_datagrams: load(&self.sent_datagrams),
            shard_copies: load(&self.shard_copies),
            dropped_packets: DropReason::ALL
                .iter()
                .zip(&self.dropped)
                .map(|(reason, count)| (reason.as_str(), load(count)))
                .collect(),
            feedback_received: Feedback::ALL
                .iter()
                .zip(&self.feedback_received)
                .map(|(kind, count)| (kind.as_str(), load(count)))
                .collect(),
            feedback_sent: Feedback::ALL
                .iter()
                .zip(&self.feedback_sent)
                .map(|(kind, count)| (kind.as_str(), load(count)))
                .collect(),
            rtt: self.rtt.snapshot(),
            delay: self.delay.snapshot(),
        }
    }

    pub(crate) fn room_created(&self) {
        self.rooms.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn room_removed(&self) {
        self.rooms.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn peer_state_changed(
        &self,
        from: Option<RTCPeerConnectionState>,
        to: Option<RTCPeerConnectionState>,
    ) {
        if let Some(from) = from {
            self.peer_connections[state_index(from)].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(to) = to {
            self.peer_connections[state_index(to)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn track_opened(&self, kind: TrackKind) {
        self.tracks[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn track_closed(&self, kind: TrackKind) {
        self.tracks[kind_index(kind)].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn rtp_received(&self, payload_bytes: usize) {
        self.received.add(payload_bytes);
    }

    pub(crate) fn rtp_forwarded(&self, payload_bytes: usize) {
        self.forwarded.add(payload_bytes);
    }

    pub(crate) fn sent(&self, messages: u64, datagrams: u64) {
        self.sent_messages.fetch_add(messages, Ordering::Relaxed);
        self.sent_datagrams.fetch_add(datagrams, Ordering::Relaxed);
    }

    pub(crate) fn shard_copy(&self) {
        self.shard_copies.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rtp_dropped(&self, reason: DropReason) {
        let index = DropReason::ALL
            .iter()
            .position(|candidate| *candidate == reason)
            .unwrap_or(0);
        self.dropped[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn feedback_received(&self, kind: Feedback) {
        self.feedback_received[feedback_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn feedback_sent(&self, kind: Feedback) {
        self.feedback_sent[feedback_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn media_delay(&self, delay: Duration) {
        self.delay.observe(delay);
    }

    pub(crate) fn round_trip(&self, rtt: Duration) {
        self.rtt.observe(rtt);
    }
}

fn feedback_index(kind: Feedback) -> usize {
    match kind {
        Feedback::Nack => 0,
        Feedback::Pli => 1,
        Feedback::Fir => 2,
    }
}

fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    }
}

fn state_index(state: RTCPeerConnectionState) -> usize {
    PEER_STATES
        .iter()
        .position(|candidate| *candidate == state)
        .unwrap_or(0)
}

fn state_name(state: RTCPeerConnectionState) -> &'static str {
    match state {
        RTCPeerConnectionState::Unspecified => "unspecified",
        RTCPeerConnectionState::New => "new",
        RTCPeerConnectionState::Connecting => "connecting",
        RTCPeerConnectionState::Connected => "connected",
        RTCPeerConnectionState::Disconnected => "disconnected",
        RTCPeerConnectionState::Failed => "failed",
        RTCPeerConnectionState::Closed => "closed",
        // The enum is non-exhaustive; a state added by a later `rtc` counts as unspecified.
        _ => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::new(&[0.01, 0.1, 1.0]);
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_secs(3));

        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, [(0.01, 1), (0.1, 3), (1.0, 3)]);
        assert_eq!(snapshot.count, 4);
        assert!((snapshot.sum_seconds - 3.105).abs() < 1e-9);
    }

    #[test]
    fn named_counters_add_up_by_name() {
        let counters = NamedCounters::default();
        counters.increment("offer");
        counters.increment("answer");
        counters.increment("offer");
        assert_eq!(counters.snapshot(), [("answer", 1), ("offer", 2)]);
    }

    #[test]
    fn named_counters_overflow_into_other() {
        let counters = NamedCounters::default();
        let names: Vec<&'static str> = (0..NAMED_SLOTS + 2)
            .map(|n| &*Box::leak(format!("name{n:02}").into_boxed_str()))
            .collect();
        for name in &names {
            counters.increment(name);
        }
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), NAMED_SLOTS + 1);
        assert!(snapshot.contains(&("other", 2)));
    }

    #[test]
    fn peer_state_gauges_move() {
        let counters = SfuCounters::default();
        counters.peer_state_changed(None, Some(RTCPeerConnectionState::New));
        counters.peer_state_changed(
            Some(RTCPeerConnectionState::New),
            Some(RTCPeerConnectionState::Connected),
        );
        let snapshot = counters.snapshot();
        assert!(snapshot.peer_connections.contains(&("new", 0)));
        assert!(snapshot.peer_connections.contains(&("connected", 1)));

        counters.peer_state_changed(Some(RTCPeerConnectionState::Connected), None);
        let snapshot = counters.snapshot();
        assert!(snapshot.peer_connections.contains(&("connected", 0)));
    }
}
