//! Sans-IO tests of the SFU state machine against SDP that real browsers send.

use std::net::SocketAddr;
use std::time::Instant;

use switchyard_proto::{Candidate, ErrorCode, ServerFrame, ServerMessage, Target};
use tokio::sync::mpsc;

use crate::handle::Command;
use crate::sfu::Sfu;

const H264_HIGH_OFFER: &str =
    include_str!("../../../tests/fixtures/sdp/h264-high-level-5.2-offer.sdp");
const BUNDLE_ONLY_OFFER: &str =
    include_str!("../../../tests/fixtures/sdp/max-bundle-bundle-only-offer.sdp");
const MDNS_OFFER: &str = include_str!("../../../tests/fixtures/sdp/mdns-host-candidate-offer.sdp");
const DATACHANNEL_OFFER: &str =
    include_str!("../../../tests/fixtures/sdp/datachannel-only-offer.sdp");
const CANDIDATE_BEFORE_OFFER: &str =
    include_str!("../../../tests/fixtures/signaling/candidate-before-offer.jsonl");

struct Harness {
    sfu: Sfu,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        let address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        Harness {
            sfu: Sfu::new(crate::SfuConfig::default(), address, address).unwrap(),
            now: Instant::now(),
        }
    }

    fn join(&mut self, room: &str, id: &str) -> mpsc::UnboundedReceiver<Box<ServerFrame>> {
        let (events, receiver) = mpsc::unbounded_channel();
        self.sfu.handle_command(
            self.now,
            Command::Join {
                room: room.into(),
                participant_id: id.into(),
                subscribe: true,
                events,
            },
        );
        receiver
    }

    fn offer(&mut self, id: &str, sdp: &str) {
        self.sfu.handle_command(
            self.now,
            Command::PublishOffer {
                participant_id: id.into(),
                request_id: None,
                sdp: sdp.replace('\n', "\r\n"),
            },
        );
    }

    fn candidate(&mut self, id: &str, candidate: Candidate) {
        self.sfu.handle_command(
            self.now,
            Command::Candidate {
                participant_id: id.into(),
                request_id: None,
                target: Target::Publisher,
                candidate,
            },
        );
    }
}

/// Returns the queued messages without the `ok` replies to candidates.
fn drain(receiver: &mut mpsc::UnboundedReceiver<Box<ServerFrame>>) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    while let Ok(frame) = receiver.try_recv() {
        if frame.message != ServerMessage::Ok {
            messages.push(frame.message);
        }
    }
    messages
}

/// Returns the SDP of the only answer among `messages`, failing on an error message.
fn answer_sdp(messages: &[ServerMessage]) -> String {
    for message in messages {
        if let ServerMessage::Error { code, message } = message {
            panic!("SFU returned error {code:?}: {message}");
        }
    }
    let answers: Vec<&String> = messages
        .iter()
        .filter_map(|message| match message {
            ServerMessage::Answer { sdp } => Some(sdp),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "expected one answer in {messages:?}");
    answers[0].clone()
}

fn media_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|line| line.starts_with("m=")).collect()
}

#[test]
fn h264_constrained_high_level_52_answered_with_h264() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "safari");
    harness.offer("safari", H264_HIGH_OFFER);
    let sdp = answer_sdp(&drain(&mut events));

    let video = media_lines(&sdp);
    assert_eq!(video.len(), 1, "answer: {sdp}");
    assert!(video[0].starts_with("m=video 9"), "video rejected: {sdp}");
    let rtpmaps: Vec<&str> = sdp.lines().filter(|l| l.starts_with("a=rtpmap:")).collect();
    assert!(
        rtpmaps.iter().any(|l| l.contains("H264/90000")),
        "no H264 in: {sdp}"
    );

    // Every H.264 format in the answer keeps the offered profile and packetization mode, and a
    // level no higher than the offered 5.2 (0x34).
    let fmtps: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=fmtp:") && l.contains("profile-level-id"))
        .collect();
    assert!(!fmtps.is_empty(), "no H264 fmtp in: {sdp}");
    for fmtp in fmtps {
        assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
        let id = fmtp.split("profile-level-id=").nth(1).unwrap();
        let id = &id[..6];
        assert!(
            id.starts_with("640c") || id.starts_with("42e0"),
            "profile changed: {fmtp}"
        );
        let level = u8::from_str_radix(&id[4..6], 16).unwrap();
        assert!(level <= 0x34, "level above the offer: {fmtp}");
    }
}

#[test]
fn bundle_only_media_section_is_bundled() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "maxbundle");
    harness.offer("maxbundle", BUNDLE_ONLY_OFFER);
    let sdp = answer_sdp(&drain(&mut events));

    let media = media_lines(&sdp);
    assert_eq!(media.len(), 2, "answer: {sdp}");
    assert!(media[0].starts_with("m=audio"), "{sdp}");
    assert!(media[1].starts_with("m=video"), "{sdp}");
    let group = sdp
        .lines()
        .find(|l| l.starts_with("a=group:BUNDLE"))
        .expect("answer has a BUNDLE group");
    assert_eq!(group.trim(), "a=group:BUNDLE 0 1");
    // The video section is accepted: it has a codec and is not inactive.
    let video_section = sdp.split("m=video").nth(1).unwrap();
    assert!(video_section.contains("VP8/90000"), "{sdp}");
    assert!(!video_section.contains("a=inactive"), "{sdp}");
}

#[test]
fn mdns_candidate_offer_accepted() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "mdns");
    harness.offer("mdns", MDNS_OFFER);
    let sdp = answer_sdp(&drain(&mut events));
    assert!(media_lines(&sdp)[0].starts_with("m=audio 9"), "{sdp}");

    // A trickled mDNS candidate is skipped, not an error.
    harness.candidate(
        "mdns",
        Candidate {
            candidate: "candidate:2 1 udp 2113937151 9a8b7c6d-0000-4000-8000-000000000002.local 50001 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        },
    );
    let after = drain(&mut events);
    assert!(after.is_empty(), "unexpected messages: {after:?}");
}

#[test]
fn datachannel_only_offer_gets_application_answer() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "data");
    harness.offer("data", DATACHANNEL_OFFER);
    let sdp = answer_sdp(&drain(&mut events));

    let media = media_lines(&sdp);
    assert_eq!(media.len(), 1, "{sdp}");
    assert!(
        media[0].starts_with("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
        "{sdp}"
    );
    assert!(sdp.contains("a=sctp-port:"), "{sdp}");
    assert!(sdp.contains("a=max-message-size:"), "{sdp}");
}

#[test]
fn candidate_before_offer_buffered_and_applied() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "early");
    let offer = MDNS_OFFER.replace("a=ice-ufrag:Mn0p", "a=ice-ufrag:AbCd");
    for line in CANDIDATE_BEFORE_OFFER.lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        match message["type"].as_str().unwrap() {
            "candidate" => {
                let candidate: Candidate = serde_json::from_value(message).unwrap();
                harness.candidate("early", candidate);
            }
            "offer" => harness.offer("early", &offer),
            other => panic!("unexpected fixture line type {other}"),
        }
    }
    let messages = drain(&mut events);
    answer_sdp(&messages);

    let key = harness.sfu.keys_by_id["early"];
    let publisher = &harness.sfu.participants[&key].publisher;
    assert!(publisher.pending_candidates.is_empty());
    assert!(publisher.has_remote_description);
}

#[test]
fn too_many_early_candidates_rejected() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "flood");
    for port in 0..=crate::peer::MAX_PENDING_CANDIDATES {
        harness.candidate(
            "flood",
            Candidate {
                candidate: format!(
                    "candidate:1 1 udp 2113937151 127.0.0.1 {} typ host",
                    20000 + port
                ),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
                username_fragment: None,
            },
        );
    }
    let messages = drain(&mut events);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(matches!(
        messages[0],
        ServerMessage::Error {
            code: ErrorCode::TooManyCandidates,
            ..
        }
    ));
}

#[test]
fn invalid_sdp_rejected_and_room_unaffected() {
    let mut harness = Harness::new();
    let mut good_events = harness.join("room", "good");
    let mut bad_events = harness.join("room", "bad");

    harness.offer("bad", "this is not SDP");
    let messages = drain(&mut bad_events);
    assert!(
        matches!(
            messages.as_slice(),
            [ServerMessage::Error {
                code: ErrorCode::InvalidSdp,
                ..
            }]
        ),
        "{messages:?}"
    );

    // An offer that parses but cannot be applied, for example with no ICE credentials.
    harness.offer("bad", "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtpmap:111 opus/48000/2\n");
    let messages = drain(&mut bad_events);
    assert!(
        matches!(messages.as_slice(), [ServerMessage::Error { .. }]),
        "{messages:?}"
    );

    // The other participant still negotiates normally, and so does the one that sent garbage.
    harness.offer("good", BUNDLE_ONLY_OFFER);
    answer_sdp(&drain(&mut good_events));
    harness.offer("bad", MDNS_OFFER);
    answer_sdp(&drain(&mut bad_events));
}

#[test]
fn answer_followed_by_candidates() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "order");
    harness.offer("order", MDNS_OFFER);
    let messages = drain(&mut events);
    assert!(
        matches!(messages[0], ServerMessage::Answer { .. }),
        "{messages:?}"
    );
    assert!(
        matches!(&messages[1], ServerMessage::Candidate { target: Target::Publisher, candidate } if candidate.candidate.contains("127.0.0.1 40000 typ host")),
        "{messages:?}"
    );
    let ServerMessage::Candidate { candidate, .. } = &messages[1] else {
        unreachable!()
    };
    // The offer's only m-section has mid 0; browsers reject a candidate whose sdpMid names none.
    assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
    assert_eq!(candidate.sdp_mline_index, Some(0));
    assert!(
        matches!(&messages[2], ServerMessage::Candidate { target: Target::Publisher, candidate } if candidate.is_end_of_candidates()),
        "{messages:?}"
    );
}

#[test]
fn public_ip_advertised_in_candidate() {
    let bound: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let public: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let mut harness = Harness {
        sfu: Sfu::new(crate::SfuConfig::default(), bound, public).unwrap(),
        now: Instant::now(),
    };
    let mut events = harness.join("room", "natted");
    harness.offer("natted", MDNS_OFFER);
    let messages = drain(&mut events);
    let candidates: Vec<&Candidate> = messages
        .iter()
        .filter_map(|message| match message {
            ServerMessage::Candidate { candidate, .. } if !candidate.is_end_of_candidates() => {
                Some(candidate)
            }
            _ => None,
        })
        .collect();
    assert_eq!(candidates.len(), 1, "{messages:?}");
    assert!(
        candidates[0]
            .candidate
            .contains("203.0.113.7 40000 typ host"),
        "{}",
        candidates[0].candidate
    );
    assert!(!candidates[0].candidate.contains("10.1.2.3"));
}

#[test]
fn every_request_gets_one_reply_with_its_id() {
    let mut harness = Harness::new();
    let mut events = harness.join("room", "ids");
    let candidate = Candidate {
        candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    };
    let requests = [
        Command::Candidate {
            participant_id: "ids".into(),
            request_id: Some("c1".into()),
            target: Target::Publisher,
            candidate: candidate.clone(),
        },
        Command::PublishOffer {
            participant_id: "ids".into(),
            request_id: Some("o1".into()),
            sdp: MDNS_OFFER.replace('\n', "\r\n"),
        },
        Command::Candidate {
            participant_id: "ids".into(),
            request_id: Some("c2".into()),
            target: Target::Publisher,
            candidate: Candidate::default(),
        },
        Command::SubscriberAnswer {
            participant_id: "ids".into(),
            request_id: Some("a1".into()),
            sdp: "v=0".into(),
        },
    ];
    for command in requests {
        harness.sfu.handle_command(harness.now, command);
    }

    let mut replies = Vec::new();
    while let Ok(frame) = events.try_recv() {
        if let Some(id) = frame.request_id {
            replies.push((id, frame.message));
        }
    }
    let ids: Vec<&str> = replies.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["c1", "o1", "c2", "a1"], "{replies:?}");
    assert_eq!(replies[0].1, ServerMessage::Ok);
    assert!(matches!(replies[1].1, ServerMessage::Answer { .. }));
    assert_eq!(replies[2].1, ServerMessage::Ok);
    assert!(matches!(
        replies[3].1,
        ServerMessage::Error {
            code: ErrorCode::NegotiationFailed,
            ..
        }
    ));
}

/// Returns a VP8 track of `speaker` on shard 1, as shard 1 announces it.
fn remote_video_track(global: u64) -> crate::remote::RemoteTrack {
    let codec = rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        ..Default::default()
    };
    crate::remote::RemoteTrack {
        global,
        shard: 1,
        room: "spread".into(),
        publisher_id: "speaker".into(),
        track_id: "TR_remote".into(),
        kind: switchyard_proto::TrackKind::Video,
        codec: codec.clone(),
        incoming_codecs: vec![(96, codec)],
    }
}

/// Returns a harness for shard 0 of two.
fn first_of_two_shards() -> Harness {
    let mut harness = Harness::new();
    harness.sfu.shards = 2;
    harness
}

#[test]
fn remote_track_reaches_members_and_late_joiners() {
    use crate::remote::ShardMessage;
    let mut h = first_of_two_shards();
    let mut viewer = h.join("spread", "viewer");
    let global = (1 << 48) | 1;
    h.sfu.handle_shard_message(
        h.now,
        ShardMessage::TrackAdded(Box::new(remote_video_track(global))),
    );
    let announced = |messages: &[ServerMessage]| {
        messages.iter().any(|message| {
            matches!(message, ServerMessage::TrackAdded { participant_id, track_id, .. }
                if participant_id == "speaker" && track_id == "TR_remote")
        })
    };
    assert!(announced(&drain(&mut viewer)), "a member gets the track");

    let mut late = h.join("spread", "late-viewer");
    assert!(announced(&drain(&mut late)), "a later member gets it too");
    let mut elsewhere = h.join("other-room", "stranger");
    assert!(!announced(&drain(&mut elsewhere)), "another room does not");

    // A keyframe request for the track goes to its shard.
    let viewer_key = h.sfu.keys_by_id["viewer"];
    h.sfu.request_keyframes_for_subscriber(h.now, viewer_key);
    let requests: Vec<_> = h
        .sfu
        .shard_out
        .drain(..)
        .filter(|(shard, message)| {
            *shard == 1
                && matches!(message, ShardMessage::KeyframeRequest { global: g } if *g == global)
        })
        .collect();
    assert_eq!(requests.len(), 1);

    // A second request inside the interval waits for the interval's end.
    let count_requests = |sfu: &mut Sfu| {
        sfu.shard_out
            .drain(..)
            .filter(|(_, message)| matches!(message, ShardMessage::KeyframeRequest { .. }))
            .count()
    };
    h.sfu.request_keyframes_for_subscriber(h.now, viewer_key);
    assert_eq!(count_requests(&mut h.sfu), 0, "held by the throttle");
    let later = h.now + crate::sfu::KEYFRAME_REQUEST_INTERVAL;
    h.sfu.handle_timeout(later);
    assert_eq!(count_requests(&mut h.sfu), 1, "sent when the interval ends");

    h.sfu
        .handle_shard_message(h.now, ShardMessage::TrackRemoved { global });
    for id in ["viewer", "late-viewer"] {
        let key = h.sfu.keys_by_id[id];
        assert!(
            h.sfu.participants[&key].subscriptions.is_empty(),
            "{id} still subscribes to the removed track"
        );
    }
    assert!(h.sfu.remote.publishers.is_empty());
}

#[test]
fn unknown_remote_messages_are_ignored() {
    use crate::remote::ShardMessage;
    let mut h = first_of_two_shards();
    let _viewer = h.join("spread", "viewer");
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: 96,
            ..Default::default()
        },
        payload: bytes::Bytes::from_static(&[1, 2, 3]),
    };
    for message in [
        ShardMessage::Rtp {
            global: 7,
            packet: packet.clone(),
            received: None,
        },
        ShardMessage::TrackRemoved { global: 7 },
        ShardMessage::KeyframeRequest { global: 7 },
    ] {
        h.sfu.handle_shard_message(h.now, message);
    }
    assert!(h.sfu.poll_transmit().is_none());
    assert!(h.sfu.shard_out.is_empty());

    // RTP of a known track with a payload type its publisher never negotiated is counted.
    h.sfu.handle_shard_message(
        h.now,
        ShardMessage::TrackAdded(Box::new(remote_video_track(8))),
    );
    let mut unknown_type = packet;
    unknown_type.header.payload_type = 111;
    h.sfu.handle_shard_message(
        h.now,
        ShardMessage::Rtp {
            global: 8,
            packet: unknown_type,
            received: None,
        },
    );
    let dropped = h.sfu.counters.snapshot().dropped_packets;
    assert!(
        dropped.contains(&("unknown_payload_type", 1)),
        "{dropped:?}"
    );
}
