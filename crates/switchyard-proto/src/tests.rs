use super::*;
use serde_json::json;

fn round_trip_client(message: ClientMessage, expected: serde_json::Value) {
    let encoded = serde_json::to_value(&message).unwrap();
    assert_eq!(encoded, expected);
    let decoded: ClientMessage = serde_json::from_value(expected).unwrap();
    assert_eq!(decoded, message);
}

fn round_trip_server(message: ServerMessage, expected: serde_json::Value) {
    let encoded = serde_json::to_value(&message).unwrap();
    assert_eq!(encoded, expected);
    let decoded: ServerMessage = serde_json::from_value(expected).unwrap();
    assert_eq!(decoded, message);
}

#[test]
fn client_messages_round_trip() {
    round_trip_client(
        ClientMessage::Join {
            room: "demo".into(),
            name: "Ada".into(),
            token: None,
            identity: None,
        },
        json!({"type": "join", "room": "demo", "name": "Ada"}),
    );
    round_trip_client(
        ClientMessage::Resume {
            token: "t".into(),
            last_seq: 7,
        },
        json!({"type": "resume", "token": "t", "lastSeq": 7}),
    );
    round_trip_client(
        ClientMessage::Ack { seq: 3 },
        json!({"type": "ack", "seq": 3}),
    );
    round_trip_client(
        ClientMessage::Offer { sdp: "v=0".into() },
        json!({"type": "offer", "sdp": "v=0"}),
    );
    round_trip_client(
        ClientMessage::Answer { sdp: "v=0".into() },
        json!({"type": "answer", "sdp": "v=0"}),
    );
    round_trip_client(
        ClientMessage::Candidate {
            target: Target::Subscriber,
            candidate: Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
                username_fragment: Some("abcd".into()),
            },
        },
        json!({
            "type": "candidate",
            "target": "subscriber",
            "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "abcd"
        }),
    );
    round_trip_client(ClientMessage::Leave, json!({"type": "leave"}));
}

#[test]
fn candidate_target_defaults_to_publisher() {
    let text = r#"{"type":"candidate","sdpMid":"0","sdpMLineIndex":0,"candidate":""}"#;
    let message: ClientMessage = serde_json::from_str(text).unwrap();
    let ClientMessage::Candidate { target, candidate } = message else {
        panic!("decoded {message:?}, expected a candidate");
    };
    assert_eq!(target, Target::Publisher);
    assert!(candidate.is_end_of_candidates());
}

#[test]
fn server_messages_round_trip() {
    round_trip_server(
        ServerMessage::Joined {
            room: "demo".into(),
            participant_id: "p1".into(),
            participants: vec![ParticipantInfo {
                id: "p0".into(),
                name: "Grace".into(),
                metadata: String::new(),
            }],
            ice_servers: vec![IceServer {
                urls: vec!["stun:127.0.0.1:3478".into()],
                username: None,
                credential: None,
            }],
            resume_token: "r".into(),
            room_metadata: String::new(),
            max_file_size: 1024,
        },
        json!({
            "type": "joined",
            "room": "demo",
            "participantId": "p1",
            "participants": [{"id": "p0", "name": "Grace"}],
            "iceServers": [{"urls": ["stun:127.0.0.1:3478"]}],
            "resumeToken": "r",
            "maxFileSize": 1024
        }),
    );
    round_trip_server(
        ServerMessage::Resumed {
            resumed: true,
            last_seq: 9,
        },
        json!({"type": "resumed", "resumed": true, "lastSeq": 9}),
    );
    round_trip_server(ServerMessage::Ok, json!({"type": "ok"}));
    round_trip_server(
        ServerMessage::ParticipantJoined {
            participant: ParticipantInfo {
                id: "p2".into(),
                name: "Lin".into(),
                metadata: String::new(),
            },
        },
        json!({"type": "participant_joined", "participant": {"id": "p2", "name": "Lin"}}),
    );
    round_trip_server(
        ServerMessage::ParticipantLeft {
            participant_id: "p2".into(),
        },
        json!({"type": "participant_left", "participantId": "p2"}),
    );
    round_trip_server(
        ServerMessage::Offer { sdp: "v=0".into() },
        json!({"type": "offer", "sdp": "v=0"}),
    );
    round_trip_server(
        ServerMessage::Answer { sdp: "v=0".into() },
        json!({"type": "answer", "sdp": "v=0"}),
    );
    round_trip_server(
        ServerMessage::Candidate {
            target: Target::Publisher,
            candidate: Candidate::default(),
        },
        json!({"type": "candidate", "target": "publisher", "candidate": ""}),
    );
    round_trip_server(
        ServerMessage::TrackAdded {
            participant_id: "p0".into(),
            track_id: "t1".into(),
            kind: TrackKind::Video,
        },
        json!({"type": "track_added", "participantId": "p0", "trackId": "t1", "kind": "video"}),
    );
    round_trip_server(
        ServerMessage::TrackRemoved {
            participant_id: "p0".into(),
            track_id: "t1".into(),
        },
        json!({"type": "track_removed", "participantId": "p0", "trackId": "t1"}),
    );
    round_trip_server(
        ServerMessage::error(ErrorCode::InvalidSdp, "bad"),
        json!({"type": "error", "code": "invalid_sdp", "message": "bad"}),
    );
}

#[test]
fn error_code_strings_match_serde() {
    let codes = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidName,
        ErrorCode::InvalidSdp,
        ErrorCode::NegotiationFailed,
        ErrorCode::InvalidCandidate,
        ErrorCode::TooManyCandidates,
        ErrorCode::MessageTooLarge,
        ErrorCode::SlowConsumer,
        ErrorCode::ServerShutdown,
        ErrorCode::InternalError,
        ErrorCode::SessionNotFound,
        ErrorCode::DuplicateIdentity,
        ErrorCode::Replaced,
    ];
    for code in codes {
        let encoded = serde_json::to_value(code).unwrap();
        assert_eq!(encoded, json!(code.as_str()));
    }
}

#[test]
fn frames_carry_delivery_fields_beside_the_message() {
    let frame = ServerFrame {
        seq: Some(4),
        request_id: Some("r1".into()),
        message: ServerMessage::Ok,
    };
    let encoded = serde_json::to_value(&frame).unwrap();
    assert_eq!(encoded, json!({"seq": 4, "requestId": "r1", "type": "ok"}));
    let decoded: ServerFrame = serde_json::from_value(encoded).unwrap();
    assert_eq!(decoded, frame);

    let event = ServerFrame::event(ServerMessage::ParticipantLeft {
        participant_id: "p".into(),
    });
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"type": "participant_left", "participantId": "p"})
    );

    let client: ClientFrame =
        serde_json::from_value(json!({"type": "offer", "id": "o1", "sdp": "v=0"})).unwrap();
    assert_eq!(
        client,
        ClientFrame::request("o1", ClientMessage::Offer { sdp: "v=0".into() })
    );
    let without_id: ClientFrame = serde_json::from_value(json!({"type": "leave"})).unwrap();
    assert_eq!(without_id.id, None);
}

#[test]
fn candidate_frame_keeps_flattened_fields() {
    let text =
        r#"{"type":"candidate","id":"c1","target":"subscriber","candidate":"x","sdpMid":"0"}"#;
    let frame: ClientFrame = serde_json::from_str(text).unwrap();
    assert_eq!(frame.id.as_deref(), Some("c1"));
    let ClientMessage::Candidate { target, candidate } = frame.message else {
        panic!("decoded {frame:?}, expected a candidate");
    };
    assert_eq!(target, Target::Subscriber);
    assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
}

#[test]
fn peer_signals_round_trip() {
    round_trip_client(
        ClientMessage::PeerSignal {
            to: "p2".into(),
            session: "s1".into(),
            signal: PeerSignal::Offer { sdp: "v=0".into() },
        },
        json!({
            "type": "peer_signal",
            "to": "p2",
            "session": "s1",
            "signal": {"kind": "offer", "sdp": "v=0"}
        }),
    );
    round_trip_client(
        ClientMessage::PeerSignal {
            to: "p2".into(),
            session: "s1".into(),
            signal: PeerSignal::Candidate {
                candidate: Candidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                },
            },
        },
        json!({
            "type": "peer_signal",
            "to": "p2",
            "session": "s1",
            "signal": {
                "kind": "candidate",
                "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0
            }
        }),
    );
    round_trip_server(
        ServerMessage::PeerSignal {
            from: "p1".into(),
            session: "s1".into(),
            signal: PeerSignal::Answer { sdp: "v=0".into() },
        },
        json!({
            "type": "peer_signal",
            "from": "p1",
            "session": "s1",
            "signal": {"kind": "answer", "sdp": "v=0"}
        }),
    );
}

#[test]
fn joined_without_max_file_size_decodes_as_zero() {
    let text =
        r#"{"type":"joined","room":"r","participantId":"p","participants":[],"iceServers":[]}"#;
    let message: ServerMessage = serde_json::from_str(text).unwrap();
    let ServerMessage::Joined { max_file_size, .. } = message else {
        panic!("decoded {message:?}, expected joined");
    };
    assert_eq!(max_file_size, 0);
}

#[test]
fn peer_signal_with_unknown_kind_is_rejected() {
    let text = r#"{"type":"peer_signal","to":"p","session":"s","signal":{"kind":"bye"}}"#;
    assert!(serde_json::from_str::<ClientMessage>(text).is_err());
}
