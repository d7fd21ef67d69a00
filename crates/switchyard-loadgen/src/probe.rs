//! Probe payloads: every RTP payload the publishers send carries the publisher's index, the track
//! kind, a per-track sequence number and the send time, so a subscriber can count loss and
//! reordering and measure latency without any other channel to the publisher.
//!
//! Layout, big-endian: one codec byte (an Opus TOC byte for audio, a VP8 payload descriptor with
//! the start-of-partition bit for video, so an SFU that peeks at the codec finds a plausible
//! first byte), the 4-byte magic `SYLG`, the publisher index (u32), the kind (u8: 0 audio,
//! 1 video), the sequence number (u32) and the send time in nanoseconds since [`epoch`] (u64).
//! Zero bytes pad the payload to its requested size. The payloads are not decodable media.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Magic bytes after the codec byte.
const MAGIC: [u8; 4] = *b"SYLG";
/// Bytes of the probe header, codec byte included.
pub const HEADER_LEN: usize = 1 + 4 + 4 + 1 + 4 + 8;

/// Opus TOC byte: configuration 31 (CELT fullband, 20 ms), stereo, one frame.
const OPUS_TOC: u8 = 0xfc;
/// VP8 payload descriptor (RFC 7741, section 4.2) with only S set: the start of partition 0.
const VP8_DESCRIPTOR: u8 = 0x10;

/// Media kind of a probe track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Audio,
    Video,
}

/// The fields of one probe payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub publisher: u32,
    pub kind: Kind,
    pub sequence: u32,
    /// Send time, in nanoseconds since [`epoch`].
    pub sent_at_ns: u64,
}

/// Returns the process-wide reference instant of the send and receive times. Publishers and
/// subscribers run in the same process, so their monotonic clocks agree.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Returns the time since [`epoch`] in nanoseconds.
pub fn now_ns() -> u64 {
    // u64 nanoseconds overflow after 584 years.
    epoch().elapsed().as_nanos() as u64
}

/// Converts a duration since [`epoch`] in nanoseconds back to a [`Duration`].
pub fn ns_to_duration(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

impl Probe {
    /// Writes the probe into a payload of `len` bytes, which must be at least [`HEADER_LEN`].
    pub fn encode(&self, len: usize) -> Vec<u8> {
        let len = len.max(HEADER_LEN);
        let mut bytes = Vec::with_capacity(len);
        bytes.push(match self.kind {
            Kind::Audio => OPUS_TOC,
            Kind::Video => VP8_DESCRIPTOR,
        });
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&self.publisher.to_be_bytes());
        bytes.push(match self.kind {
            Kind::Audio => 0,
            Kind::Video => 1,
        });
        bytes.extend_from_slice(&self.sequence.to_be_bytes());
        bytes.extend_from_slice(&self.sent_at_ns.to_be_bytes());
        bytes.resize(len, 0);
        bytes
    }

    /// Reads the probe at the start of `payload`. Returns `None` for a payload that is too short
    /// or lacks the magic, such as padding-only packets.
    pub fn decode(payload: &[u8]) -> Option<Probe> {
        let header = payload.get(..HEADER_LEN)?;
        if header[1..5] != MAGIC {
            return None;
        }
        let kind = match header[9] {
            0 => Kind::Audio,
            1 => Kind::Video,
            _ => return None,
        };
        Some(Probe {
            publisher: u32::from_be_bytes(header[5..9].try_into().ok()?),
            kind,
            sequence: u32::from_be_bytes(header[10..14].try_into().ok()?),
            sent_at_ns: u64::from_be_bytes(header[14..22].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips() {
        let probe = Probe {
            publisher: 7,
            kind: Kind::Video,
            sequence: 70_000,
            sent_at_ns: 123_456_789_012,
        };
        let payload = probe.encode(1100);
        assert_eq!(payload.len(), 1100);
        assert_eq!(payload[0], VP8_DESCRIPTOR);
        assert_eq!(Probe::decode(&payload), Some(probe));
    }

    #[test]
    fn short_payload_is_not_a_probe() {
        let payload = Probe {
            publisher: 1,
            kind: Kind::Audio,
            sequence: 1,
            sent_at_ns: 1,
        }
        .encode(HEADER_LEN);
        assert_eq!(Probe::decode(&payload[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn payload_without_magic_is_not_a_probe() {
        let mut payload = vec![0u8; 200];
        payload[1..5].copy_from_slice(b"XXXX");
        assert_eq!(Probe::decode(&payload), None);
    }
}
