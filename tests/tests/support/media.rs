//! Test media: RTP payloads in which every byte follows from the track kind and a packet counter,
//! so a receiver can rebuild what was sent and compare a forwarded payload byte for byte.
//!
//! The payloads are not decodable Opus or VP8. The SFU forwards them without looking inside, and
//! the webrtc-rs clients here do not decode.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp::header::Header;
use rtc::rtp::Packet;
use switchyard_proto::TrackKind;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

use crate::support::feedback::KeyframeRequests;

/// Audio payload size in bytes, the size of a 20 ms Opus frame at 64 kbit/s.
pub const AUDIO_PAYLOAD_LEN: usize = 160;
/// Video payload size in bytes. With RTP, SRTP, UDP and IP headers a packet still fits a
/// 1,500-byte Ethernet MTU.
pub const VIDEO_PAYLOAD_LEN: usize = 1000;

const AUDIO_MARKER: [u8; 4] = *b"SYau";
const VIDEO_MARKER: [u8; 4] = *b"SYvi";
/// Marker (4 bytes) and big-endian counter (4 bytes) before the pattern bytes.
const PAYLOAD_HEADER_LEN: usize = 8;

/// Interval between two packets of one track: 50 packets per second.
const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Packets per track after which the sender stops by itself (two minutes at 50 per second).
/// Scenarios stop it much sooner.
const MAX_PACKETS: u32 = 6000;
/// RTP timestamp step per packet: 20 ms at Opus's 48 kHz and at video's 90 kHz clock.
const AUDIO_TIMESTAMP_STEP: u32 = 960;
const VIDEO_TIMESTAMP_STEP: u32 = 1800;

/// Builds the payload of packet number `counter` of a track of `kind`: a marker naming the
/// kind, the counter, then pattern bytes that depend on both.
pub fn payload(kind: TrackKind, counter: u32) -> Bytes {
    let (marker, len) = match kind {
        TrackKind::Audio => (AUDIO_MARKER, AUDIO_PAYLOAD_LEN),
        TrackKind::Video => (VIDEO_MARKER, VIDEO_PAYLOAD_LEN),
    };
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&marker);
    bytes.extend_from_slice(&counter.to_be_bytes());
    // Truncation to u8 is the point: a repeating pattern that shifts with the counter.
    bytes.extend((PAYLOAD_HEADER_LEN..len).map(|i| (i as u32 * 31 + counter) as u8));
    Bytes::from(bytes)
}

/// Compares a received payload with what the publisher sent for the same kind and counter.
/// Returns the counter, or a description of the first difference.
pub fn check_payload(kind: TrackKind, received: &[u8]) -> Result<u32, String> {
    let Some(counter_bytes) = received.get(4..PAYLOAD_HEADER_LEN) else {
        return Err(format!(
            "{kind:?} payload of {} bytes is shorter than the {PAYLOAD_HEADER_LEN}-byte test \
             header: {}",
            received.len(),
            hex_prefix(received)
        ));
    };
    let counter = u32::from_be_bytes(counter_bytes.try_into().expect("slice of 4 bytes"));
    let expected = payload(kind, counter);
    if received == expected.as_ref() {
        return Ok(counter);
    }
    if received.len() != expected.len() {
        return Err(format!(
            "{kind:?} payload for counter {counter} has {} bytes, {} were sent; it starts {}",
            received.len(),
            expected.len(),
            hex_prefix(received)
        ));
    }
    let index = received
        .iter()
        .zip(expected.iter())
        .position(|(got, sent)| got != sent)
        .expect("equal-length payloads that differ have a differing byte");
    Err(format!(
        "{kind:?} payload for counter {counter} differs from what was sent at byte {index}: \
         received {:#04x}, sent {:#04x}; it starts {}",
        received[index],
        expected[index],
        hex_prefix(received)
    ))
}

fn hex_prefix(bytes: &[u8]) -> String {
    let hex_bytes: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    hex_bytes.join(" ")
}

/// One local track of the publisher and the RTP parameters negotiated for it.
pub struct OutgoingTrack {
    pub kind: TrackKind,
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub payload_type: u8,
}

/// Background task that writes test packets to the publisher's tracks every 20 ms, with a count
/// of the keyframe requests that arrive for its video track.
pub struct MediaSender {
    task: JoinHandle<String>,
    ticks: Arc<AtomicU32>,
    /// PLIs and FIRs received for the video track.
    pub keyframe_requests: KeyframeRequests,
}

impl MediaSender {
    /// Starts writing one packet per track every [`PACKET_INTERVAL`], up to [`MAX_PACKETS`] each,
    /// and counting the keyframe requests for the video track.
    ///
    /// Panics when `tracks` has no video track.
    pub fn start(tracks: Vec<OutgoingTrack>) -> MediaSender {
        let video = tracks
            .iter()
            .find(|track| track.kind == TrackKind::Video)
            .expect("the publisher sends a video track");
        let keyframe_requests = KeyframeRequests::start(Arc::clone(&video.track), video.ssrc);
        let ticks = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(send_packets(tracks, Arc::clone(&ticks)));
        MediaSender {
            task,
            ticks,
            keyframe_requests,
        }
    }

    /// Describes the sender's progress, for failure messages.
    pub fn status(&self) -> String {
        let sent = self.ticks.load(Ordering::Relaxed);
        if self.task.is_finished() {
            format!("the media sender stopped after {sent} packets per track")
        } else {
            format!("the media sender has written {sent} packets per track and is running")
        }
    }

    /// Stops the sender and the count of keyframe requests.
    pub fn stop(self) {
        self.task.abort();
        self.keyframe_requests.stop();
    }
}

async fn send_packets(tracks: Vec<OutgoingTrack>, ticks: Arc<AtomicU32>) -> String {
    let mut interval = tokio::time::interval(PACKET_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for counter in 0..MAX_PACKETS {
        interval.tick().await;
        for track in &tracks {
            let packet = test_packet(track, counter);
            if let Err(error) = track.track.write_rtp(packet).await {
                return format!("writing {:?} packet {counter} failed: {error}", track.kind);
            }
        }
        ticks.store(counter + 1, Ordering::Relaxed);
    }
    format!("sent the maximum of {MAX_PACKETS} packets per track")
}

fn test_packet(track: &OutgoingTrack, counter: u32) -> Packet {
    let timestamp_step = match track.kind {
        TrackKind::Audio => AUDIO_TIMESTAMP_STEP,
        TrackKind::Video => VIDEO_TIMESTAMP_STEP,
    };
    Packet {
        header: Header {
            version: 2,
            // Each video packet stands for a whole frame, so each one ends a frame.
            marker: track.kind == TrackKind::Video,
            payload_type: track.payload_type,
            // RTP sequence numbers wrap at 16 bits by definition.
            sequence_number: counter as u16,
            timestamp: counter.wrapping_mul(timestamp_step),
            ssrc: track.ssrc,
            ..Default::default()
        },
        payload: payload(track.kind, counter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let sent = payload(kind, 70_000);
            assert_eq!(check_payload(kind, &sent), Ok(70_000));
        }
    }

    #[test]
    fn changed_byte_is_reported() {
        let mut received = payload(TrackKind::Video, 3).to_vec();
        received[500] ^= 0xff;
        let error = check_payload(TrackKind::Video, &received).unwrap_err();
        assert!(error.contains("at byte 500"), "{error}");
    }

    #[test]
    fn audio_payload_fails_video_check() {
        let audio = payload(TrackKind::Audio, 1);
        assert!(check_payload(TrackKind::Video, &audio).is_err());
    }
}
