//! webrtc-rs peer connections of the synthetic participants, shared by every server adapter:
//! building one bound to a chosen address, the send-only probe tracks of a publisher and the
//! task that writes probes on them, and the reading of probes on a subscriber.
//!
//! Each peer connection of the async `webrtc` crate has its own driver task and UDP socket and
//! takes about 0.45 MiB of memory, so a few hundred of them cost the load generator real CPU.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp::header::Header;
use rtc::rtp::Packet;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
};

use crate::probe::{self, Kind, Probe};
use crate::stats::Recorder;

/// Opus packets per second: one 20 ms frame each.
const AUDIO_PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Audio payload bytes, a 20 ms Opus frame at 64 kbit/s.
const AUDIO_PAYLOAD_LEN: usize = 160;
/// RTP timestamp step per audio packet at Opus's 48 kHz clock.
const AUDIO_TIMESTAMP_STEP: u32 = 960;
/// Video clock rate of RTP timestamps.
const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Something a peer connection reported to the adapter that owns it.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the server.
    Candidate(RTCIceCandidateInit),
    /// Gathering finished: the adapter may signal end-of-candidates.
    GatheringComplete,
    State(RTCPeerConnectionState),
}

/// Video sending rate of every publisher.
#[derive(Clone, Copy, Debug)]
pub struct VideoProfile {
    pub kbps: u32,
    pub frames_per_second: u32,
    /// Payload bytes of every video packet.
    pub packet_len: usize,
}

impl VideoProfile {
    /// Returns the packets that carry one frame: the frame's bytes at this bitrate, rounded up
    /// to whole packets.
    pub fn packets_per_frame(&self) -> u32 {
        let frame_bytes = u64::from(self.kbps) * 1000 / 8 / u64::from(self.frames_per_second);
        frame_bytes.div_ceil(self.packet_len as u64).max(1) as u32
    }
}

/// Builds a peer connection with the default codecs and interceptors (NACK, RTCP reports,
/// TWCC), like a browser's, whose one UDP socket is bound to `ip` on a port the kernel picks.
/// Its events go to `events`, and the probes of its remote tracks to `recorder` when given.
pub async fn build(
    ip: IpAddr,
    name: String,
    events: mpsc::UnboundedSender<PeerEvent>,
    recorder: Option<Arc<Recorder>>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_default_codecs()
        .context("registering the default codecs failed")?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .context("registering the default interceptors failed")?;
    // Without mDNS no multicast socket opens, and host candidates carry the plain address.
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let handler = Handler {
        name: name.clone(),
        events,
        recorder,
    };
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec![SocketAddr::new(ip, 0)])
        .build()
        .await
        .map_err(|error| anyhow!("{name}: building the peer connection on {ip} failed: {error}"))?;
    Ok(Arc::new(pc))
}

/// Forwards a peer connection's events: each local candidate (and `None` for end-of-candidates)
/// goes to `on_candidate`, and the state to the returned watch.
pub fn forward_events(
    mut events: mpsc::UnboundedReceiver<PeerEvent>,
    on_candidate: impl Fn(Option<RTCIceCandidateInit>) + Send + 'static,
) -> watch::Receiver<RTCPeerConnectionState> {
    let (state_sender, state) = watch::channel(RTCPeerConnectionState::New);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Candidate(candidate) => on_candidate(Some(candidate)),
                PeerEvent::GatheringComplete => on_candidate(None),
                PeerEvent::State(new_state) => {
                    let _ = state_sender.send(new_state);
                }
            }
        }
    });
    state
}

/// Waits until `state` is `connected`. Fails on `failed` or `closed`, or after `timeout`.
pub async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let reached = tokio::time::timeout(
        timeout,
        state.wait_for(|state| {
            matches!(
                state,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map_err(|_| anyhow!("the peer connection did not connect within {timeout:?}"))?
    .map_err(|_| anyhow!("the peer connection stopped reporting its state"))?;
    match *reached {
        RTCPeerConnectionState::Connected => Ok(()),
        other => Err(anyhow!(
            "the peer connection reached state {other} instead of connected"
        )),
    }
}

/// A send-only probe track on a publisher connection.
pub struct ProbeTrack {
    pub kind: Kind,
    track: Arc<TrackLocalStaticRTP>,
    transceiver: Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    ssrc: u32,
}

/// Adds a send-only Opus track and a send-only VP8 track to `pc`, with SSRCs derived from
/// `publisher`.
pub async fn add_probe_tracks(
    pc: &Arc<dyn PeerConnection>,
    publisher: u32,
) -> anyhow::Result<Vec<ProbeTrack>> {
    let mut tracks = Vec::new();
    for kind in [Kind::Audio, Kind::Video] {
        let (codec, rtc_kind, label) = match kind {
            Kind::Audio => (opus_codec(), RtpCodecKind::Audio, "audio"),
            Kind::Video => (vp8_codec(), RtpCodecKind::Video, "video"),
        };
        let ssrc = 0x5359_0000 + publisher * 2 + u32::from(kind == Kind::Video);
        let stream = format!("loadgen-{publisher}");
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream.clone(),
            format!("{stream}-{label}"),
            format!("{stream} {label}"),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![stream],
            send_encodings: vec![],
        };
        let transceiver = pc
            .add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal>, Some(init))
            .await
            .map_err(|error| anyhow!("adding the {label} track failed: {error}"))?;
        tracks.push(ProbeTrack {
            kind,
            track,
            transceiver,
            ssrc,
        });
    }
    Ok(tracks)
}

/// Sequence numbers assigned so far by one publisher's tracks, and its failed writes.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Next sequence number of the audio track, then of the video track.
    next_sequence: [AtomicU32; 2],
    pub failed_writes: AtomicU64,
}

impl SendCounters {
    /// Returns the next sequence number that the `kind` track will assign.
    pub fn next_sequence(&self, kind: Kind) -> u32 {
        self.next_sequence[kind_index(kind)].load(Ordering::Acquire)
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Audio => 0,
        Kind::Video => 1,
    }
}

/// Starts writing probes on `tracks` after the connection is up: audio at 50 packets per
/// second, video in bursts of whole frames at `video`'s rate. Runs until aborted.
pub async fn start_sending(
    publisher: u32,
    tracks: Vec<ProbeTrack>,
    video: VideoProfile,
) -> anyhow::Result<(Arc<SendCounters>, JoinHandle<()>)> {
    let mut outgoing = Vec::new();
    for track in tracks {
        let payload_type = negotiated_payload_type(&track).await?;
        outgoing.push((track, payload_type));
    }
    let counters = Arc::new(SendCounters::default());
    let task = tokio::spawn(send_probes(
        publisher,
        outgoing,
        video,
        Arc::clone(&counters),
    ));
    Ok((counters, task))
}

async fn send_probes(
    publisher: u32,
    tracks: Vec<(ProbeTrack, u8)>,
    video: VideoProfile,
    counters: Arc<SendCounters>,
) {
    let mut audio_ticks = tokio::time::interval(AUDIO_PACKET_INTERVAL);
    let frame_interval = Duration::from_secs(1) / video.frames_per_second;
    let mut video_ticks = tokio::time::interval(frame_interval);
    audio_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    video_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let video_timestamp_step = VIDEO_CLOCK_RATE / video.frames_per_second;
    let mut frame: u32 = 0;
    loop {
        let kind = tokio::select! {
            _ = audio_ticks.tick() => Kind::Audio,
            _ = video_ticks.tick() => Kind::Video,
        };
        let Some((track, payload_type)) = tracks.iter().find(|(track, _)| track.kind == kind)
        else {
            continue;
        };
        let (packets, payload_len, timestamp) = match kind {
            Kind::Audio => {
                let sequence = counters.next_sequence(Kind::Audio);
                (
                    1,
                    AUDIO_PAYLOAD_LEN,
                    sequence.wrapping_mul(AUDIO_TIMESTAMP_STEP),
                )
            }
            Kind::Video => {
                frame = frame.wrapping_add(1);
                (
                    video.packets_per_frame(),
                    video.packet_len,
                    frame.wrapping_mul(video_timestamp_step),
                )
            }
        };
        for index in 0..packets {
            let counter = &counters.next_sequence[kind_index(kind)];
            let sequence = counter.load(Ordering::Acquire);
            let probe = Probe {
                publisher,
                kind,
                sequence,
                sent_at_ns: probe::now_ns(),
            };
            let packet = Packet {
                header: Header {
                    version: 2,
                    // The last packet of a video frame carries the marker bit.
                    marker: kind == Kind::Video && index + 1 == packets,
                    payload_type: *payload_type,
                    // RTP sequence numbers wrap at 16 bits by definition.
                    sequence_number: sequence as u16,
                    timestamp,
                    ssrc: track.ssrc,
                    ..Default::default()
                },
                payload: Bytes::from(probe.encode(payload_len)),
            };
            if track.track.write_rtp(packet).await.is_err() {
                counters.failed_writes.fetch_add(1, Ordering::Relaxed);
            }
            counter.store(sequence.wrapping_add(1), Ordering::Release);
        }
    }
}

/// Returns the payload type that the remote answer or offer assigned to the track's codec.
async fn negotiated_payload_type(track: &ProbeTrack) -> anyhow::Result<u8> {
    let mime_type = match track.kind {
        Kind::Audio => MIME_TYPE_OPUS,
        Kind::Video => MIME_TYPE_VP8,
    };
    let sender = track
        .transceiver
        .sender()
        .await
        .map_err(|error| anyhow!("the {:?} transceiver is gone: {error}", track.kind))?
        .ok_or_else(|| anyhow!("the send-only {:?} transceiver has no sender", track.kind))?;
    let parameters = sender.get_parameters().await.map_err(|error| {
        anyhow!(
            "reading the {:?} sender's parameters failed: {error}",
            track.kind
        )
    })?;
    parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
        .map(|codec| codec.payload_type)
        .ok_or_else(|| {
            anyhow!(
                "the server did not accept {mime_type} for the {:?} track",
                track.kind
            )
        })
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Callbacks of one peer connection: forwards candidates and state changes to its adapter and
/// reads probes from remote tracks.
struct Handler {
    name: String,
    events: mpsc::UnboundedSender<PeerEvent>,
    recorder: Option<Arc<Recorder>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.events.send(PeerEvent::Candidate(init));
            }
            Err(error) => {
                tracing::warn!(name = %self.name, %error, "local candidate has no JSON form")
            }
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.events.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(name = %self.name, %state, "connection state");
        let _ = self.events.send(PeerEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(recorder) = &self.recorder {
            // Reading runs on its own task so this callback returns to the connection's driver.
            tokio::spawn(read_probes(track, Arc::clone(recorder)));
        }
    }
}

/// Records every probe that arrives on `track` until it ends.
async fn read_probes(track: Arc<dyn TrackRemote>, recorder: Arc<Recorder>) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let arrived_at_ns = probe::now_ns();
                if let Some(probe) = Probe::decode(&packet.payload) {
                    recorder.record(probe, arrived_at_ns);
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_split_into_whole_packets() {
        let video = VideoProfile {
            kbps: 1000,
            frames_per_second: 30,
            packet_len: 1100,
        };
        // 1 Mbit/s at 30 frames per second is 4,166 bytes per frame.
        assert_eq!(video.packets_per_frame(), 4);
    }
}
