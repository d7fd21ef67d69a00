//! Construction of the server's peer connections: codecs, interceptors, ICE credentials and the
//! one host candidate, plus the buffering of remote candidates that arrive early.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtc::crypto::SignatureScheme;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::interceptor::{NackResponderBuilder, SenderReportBuilder};
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::Packet as RtcpPacket;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use switchyard_proto::Candidate;

use crate::metrics::SfuCounters;
use crate::rtcp_observer::RtcpObserver;
use crate::SfuConfig;

/// Candidates buffered per connection before its remote description is set. A browser sends a
/// handful per network interface, so this only stops a client that floods.
pub(crate) const MAX_PENDING_CANDIDATES: usize = 64;

/// Codecs the SFU accepts from publishers and offers to subscribers. H.264 entries are matched on
/// profile (RFC 6184 section 8.2.2), so one entry per profile family and packetization mode covers
/// every level a browser offers; the level answered is the one registered here.
fn codecs() -> Vec<(RTCRtpCodecParameters, RtpCodecKind)> {
    let video_feedback = vec![
        feedback("ccm", "fir"),
        feedback("nack", ""),
        feedback("nack", "pli"),
    ];
    let opus = RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    };
    let video = |mime: &str, fmtp: &str| RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: video_feedback.clone(),
    };
    let h264 = |profile_level_id: &str, mode: u8| {
        video(
            MIME_TYPE_H264,
            &format!(
                "level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={profile_level_id}"
            ),
        )
    };
    vec![
        (codec(opus, 111), RtpCodecKind::Audio),
        (codec(video(MIME_TYPE_VP8, ""), 96), RtpCodecKind::Video),
        // Constrained Baseline, Baseline, Main and Constrained High, each at level 3.1.
        (codec(h264("42e01f", 1), 102), RtpCodecKind::Video),
        (codec(h264("42e01f", 0), 103), RtpCodecKind::Video),
        (codec(h264("42001f", 1), 104), RtpCodecKind::Video),
        (codec(h264("4d001f", 1), 106), RtpCodecKind::Video),
        (codec(h264("640c1f", 1), 108), RtpCodecKind::Video),
    ]
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

fn codec(rtp_codec: RTCRtpCodec, payload_type: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec,
        payload_type,
    }
}

/// Marks inbound keyframe requests (PLI and FIR) for delivery to the application, so the SFU can
/// pass a subscriber's request on to the publisher. Without a mark the interceptor chain consumes
/// all inbound RTCP. Other RTCP stays with the chain.
///
/// A compound packet that contains a request is cut down to its requests. `rtc` 0.21.1 tags an
/// inbound compound with the track of the first SSRC its first packet names, and drops a
/// compound whose first packet names none. Browsers put a receiver report first, which may name
/// another track or, without report blocks, none at all. The interceptors in earlier slots have
/// already seen the whole compound.
#[derive(Default)]
struct DeliverKeyframeRequests {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverKeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            if packets
                .iter()
                .any(|packet| is_keyframe_request(packet.as_ref()))
            {
                packets.retain(|packet| is_keyframe_request(packet.as_ref()));
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

fn is_keyframe_request(packet: &dyn RtcpPacket) -> bool {
    let packet = packet.as_any();
    packet.is::<PictureLossIndication>() || packet.is::<FullIntraRequest>()
}

impl Interceptor for DeliverKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// ICE username fragment and password of one server-side connection.
#[derive(Clone, Debug)]
pub(crate) struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCredentials {
    pub fn random() -> Self {
        IceCredentials {
            ufrag: random_token(16),
            pwd: random_token(32),
        }
    }
}

/// Returns `len` random characters from the ICE character set (RFC 8839 section 5.4).
pub(crate) fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Role of a participant's peer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerRole {
    /// Receives the participant's tracks.
    Publisher,
    /// Sends the other participants' tracks to the participant.
    Subscriber,
}

/// Builds one server-side peer connection with our codecs, the interceptors its role needs and
/// fixed ICE credentials, so the media socket can route a first STUN request to it by its
/// username fragment.
///
/// A publisher connection gets webrtc-rs's default set: NACK generator and responder, receiver
/// and sender reports, and the TWCC receiver. A subscriber connection only sends RTP, so it
/// gets the NACK responder and sender reports alone. Every forwarded copy passes each
/// interceptor on the way out, and each one moves the packet through a queue of its own, so
/// the three that only act on received RTP would cost every copy without doing anything.
pub(crate) fn build_peer_connection(
    now: Instant,
    role: PeerRole,
    credentials: &IceCredentials,
    certificate: &RTCCertificate,
    config: &SfuConfig,
    counters: Arc<SfuCounters>,
) -> Result<RTCPeerConnection, RtcError> {
    let mut media_engine = MediaEngine::default();
    for (codec, kind) in codecs() {
        media_engine.register_codec(codec, kind)?;
    }

    // The observer sits closest to the wire, so it sees inbound RTCP before any interceptor
    // consumes it and outbound RTCP after every interceptor generated its own.
    let registry = Registry::new()
        .with(Slot::from(500), RtcpObserver::new(counters))
        .with(Slot::from(14_000), DeliverKeyframeRequests::default());
    let registry = match role {
        PeerRole::Publisher => register_default_interceptors(registry, &mut media_engine)?,
        PeerRole::Subscriber => subscriber_interceptors(registry, &mut media_engine)?,
    };

    let mut setting_engine = SettingEngineBuilder::new()
        .with_ice_credentials(credentials.ufrag.clone(), credentials.pwd.clone())
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            Some(config.ice_failed_timeout),
            Some(config.ice_keepalive_interval),
        );
    if config.srtp_aead_only {
        setting_engine = setting_engine.with_srtp_protection_profiles(AEAD_SRTP_PROFILES.to_vec());
    }
    let setting_engine = setting_engine.build();

    RTCPeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![certificate.clone()])
                .build(),
        )
        .with_media_engine(media_engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .build(now)
}

/// SRTP profile of [`SfuConfig::srtp_aead_only`]. In the DTLS handshake `rtc-dtls` as the
/// server takes the client's first profile that it supports, and BoringSSL (Chrome) takes its
/// own first one. Chrome lists AES-CM first and AES-256-GCM before AES-128-GCM, so it uses
/// AES-128-GCM only when the SFU offers nothing else.
const AEAD_SRTP_PROFILES: [SrtpProtectionProfile; 1] =
    [SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm];

/// Adds the interceptors of a connection that only sends RTP: the NACK responder, which resends
/// what a subscriber reports lost, and sender reports. The video codecs already carry the `nack`
/// and `nack pli` feedback (see [`codecs`]), and the simulcast header extensions are registered
/// as the default set registers them.
fn subscriber_interceptors(
    registry: Registry,
    media_engine: &mut MediaEngine,
) -> Result<Registry, RtcError> {
    configure_simulcast_extension_headers(media_engine)?;
    Ok(registry
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build()))
}

/// Makes the self-signed DTLS certificate that a shard's peer connections share. Without one,
/// webrtc-rs makes a new key pair and certificate for every connection, two per join. Browsers
/// check the certificate against the fingerprint in the SDP, which stays the same for every
/// connection of the shard, as with one certificate per Janus instance.
pub(crate) fn dtls_certificate() -> Result<RTCCertificate, RtcError> {
    let provider =
        rtc::crypto::default_provider().map_err(|error| RtcError::Other(error.to_string()))?;
    let params = CertificateParams::new(vec!["switchyard".to_owned()])
        .map_err(|error| RtcError::Other(error.to_string()))?;
    RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
}

/// Builds the server's one host candidate: the media socket's address, or the public address in
/// its place when the server sits behind 1:1 NAT.
pub(crate) fn host_candidate(advertised: SocketAddr) -> Result<RTCIceCandidateInit, RtcError> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: advertised.ip().to_string(),
            port: advertised.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    RTCIceCandidate::from(&candidate).to_json()
}

/// Converts a signaling candidate to the `rtc` form.
pub(crate) fn to_rtc_candidate(candidate: &Candidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate.clone(),
        sdp_mid: candidate.sdp_mid.clone(),
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment.clone(),
        ..Default::default()
    }
}

/// Converts an `rtc` candidate to the signaling form.
pub(crate) fn from_rtc_candidate(candidate: &RTCIceCandidateInit) -> Candidate {
    Candidate {
        candidate: candidate.candidate.clone(),
        sdp_mid: candidate.sdp_mid.clone(),
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment.clone(),
    }
}

/// Returns true for a candidate whose address is an mDNS name (`<uuid>.local`). Browsers hide
/// their host addresses this way. The server cannot resolve them and learns the browser's real
/// address as a peer-reflexive candidate when its connectivity checks arrive.
pub(crate) fn is_mdns_candidate(candidate: &str) -> bool {
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    candidate
        .split_whitespace()
        .nth(4)
        .is_some_and(|address| address.to_ascii_lowercase().ends_with(".local"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdns_candidate_detected() {
        let mdns = "candidate:1 1 udp 2113937151 0f1e2d3c-0000-4000-8000-000000000001.local 50000 typ host";
        let plain = "candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host";
        assert!(is_mdns_candidate(mdns));
        assert!(!is_mdns_candidate(plain));
        assert!(!is_mdns_candidate(""));
    }

    #[test]
    fn random_token_uses_ice_characters() {
        let token = random_token(32);
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    fn rtcp(packets: Vec<Box<dyn RtcpPacket>>) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: Packet::Rtcp(packets).into(),
        }
    }

    fn delivered(input: TaggedPacket) -> TaggedPacket {
        let mut interceptor = DeliverKeyframeRequests::default();
        interceptor.handle_read(input).unwrap();
        interceptor.poll_read().expect("every packet passes on")
    }

    #[test]
    fn keyframe_requests_cut_from_compound() {
        use rtc::rtcp::receiver_report::ReceiverReport;

        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        };
        let output = delivered(rtcp(vec![
            Box::new(ReceiverReport::default()),
            Box::new(pli.clone()),
        ]));
        assert!(output.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(packets) = &output.message.packet else {
            panic!("RTCP became {:?}", output.message.packet);
        };
        assert_eq!(packets.len(), 1, "{packets:?}");
        assert_eq!(
            packets[0].as_any().downcast_ref::<PictureLossIndication>(),
            Some(&pli)
        );
    }

    #[test]
    fn report_without_request_left_to_chain() {
        use rtc::rtcp::receiver_report::ReceiverReport;

        let output = delivered(rtcp(vec![Box::new(ReceiverReport::default())]));
        assert!(!output.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(packets) = &output.message.packet else {
            panic!("RTCP became {:?}", output.message.packet);
        };
        assert_eq!(packets.len(), 1, "{packets:?}");
    }

    /// Returns the offer of a subscriber connection that sends one VP8 track.
    fn subscriber_offer(certificate: &RTCCertificate) -> String {
        use rtc::media_stream::MediaStreamTrack;
        use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters};
        use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

        let mut pc = build_peer_connection(
            Instant::now(),
            PeerRole::Subscriber,
            &IceCredentials::random(),
            certificate,
            &SfuConfig::default(),
            Arc::default(),
        )
        .expect("subscriber connection builds");
        let (vp8, _) = codecs()
            .into_iter()
            .find(|(codec, _)| codec.rtp_codec.mime_type == MIME_TYPE_VP8)
            .expect("VP8 is registered");
        let track = MediaStreamTrack::new(
            "publisher".to_owned(),
            "video".to_owned(),
            "video".to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(1234),
                    ..Default::default()
                },
                codec: vp8.rtp_codec,
                ..Default::default()
            }],
        );
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec!["publisher".to_owned()],
            send_encodings: vec![],
        };
        pc.add_transceiver_from_track(track, Some(init))
            .expect("track added");
        pc.create_offer(None).expect("offer created").sdp
    }

    #[test]
    fn subscriber_offer_keeps_nack_and_pli() {
        let offer = subscriber_offer(&dtls_certificate().unwrap());
        // Subscribers report loss and request keyframes, and the NACK responder serves the
        // loss reports.
        assert!(offer.contains("a=rtcp-fb:96 nack\r\n"), "{offer}");
        assert!(offer.contains("a=rtcp-fb:96 nack pli\r\n"), "{offer}");
    }

    #[test]
    fn connections_share_the_certificate_they_are_given() {
        let fingerprint = |offer: &str| {
            offer
                .lines()
                .find(|line| line.starts_with("a=fingerprint:"))
                .map(str::to_owned)
                .expect("offer has a fingerprint")
        };
        let shared = dtls_certificate().unwrap();
        let first = fingerprint(&subscriber_offer(&shared));
        assert_eq!(first, fingerprint(&subscriber_offer(&shared)));
        assert_ne!(
            first,
            fingerprint(&subscriber_offer(&dtls_certificate().unwrap()))
        );
    }

    #[test]
    fn peer_connection_builds() {
        let credentials = IceCredentials::random();
        for role in [PeerRole::Publisher, PeerRole::Subscriber] {
            let built = build_peer_connection(
                Instant::now(),
                role,
                &credentials,
                &dtls_certificate().unwrap(),
                &SfuConfig::default(),
                Arc::default(),
            );
            assert!(built.is_ok(), "{role:?} build failed: {:?}", built.err());
        }
    }
}
