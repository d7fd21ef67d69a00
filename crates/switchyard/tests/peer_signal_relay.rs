//! `peer_signal` relays a peer-to-peer offer, answer or candidate to the one participant it is
//! addressed to, with `seq` and resume like every other session message. A signal to someone
//! not in the room gets `participant_not_found`, and one from a participant without the
//! publish-data grant gets `permission_denied`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{loopback_config, Client, TestServer};
use serde_json::{json, Value};
use switchyard::token::{sign, ApiKeys, Claims, Grants};
use switchyard_proto::{Candidate, ErrorCode, PeerSignal, ServerFrame, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

async fn recv_frame(client: &mut Client) -> ServerFrame {
    match client.reader.next_frame().await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|error| panic!("server sent invalid JSON {text}: {error}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Joins and returns the participant id and the resume token.
async fn join(client: &mut Client, name: &str, token: Option<&str>) -> (String, String) {
    let mut message = json!({"type": "join", "room": "demo", "name": name});
    if let Some(token) = token {
        message["token"] = json!(token);
    }
    client.send_json(message).await;
    let frame = recv_frame(client).await;
    match frame.message {
        ServerMessage::Joined {
            participant_id,
            resume_token,
            ..
        } => (participant_id, resume_token),
        other => panic!("expected joined, got {other:?}"),
    }
}

/// Reads frames until `participant_joined`, and fails on anything else but `ok`.
async fn expect_participant_joined(client: &mut Client) {
    loop {
        match recv_frame(client).await.message {
            ServerMessage::ParticipantJoined { .. } => return,
            ServerMessage::Ok => {}
            other => panic!("expected participant_joined, got {other:?}"),
        }
    }
}

fn offer_to(to: &str, id: &str) -> Value {
    json!({
        "type": "peer_signal",
        "id": id,
        "to": to,
        "session": "s1",
        "signal": {"kind": "offer", "sdp": "v=0 offer"}
    })
}

#[tokio::test]
async fn signal_reaches_only_the_addressed_participant() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    let mut lin = server.connect().await;
    let (ada_id, _) = join(&mut ada, "Ada", None).await;
    let (grace_id, _) = join(&mut grace, "Grace", None).await;
    expect_participant_joined(&mut ada).await;
    let (lin_id, _) = join(&mut lin, "Lin", None).await;
    expect_participant_joined(&mut ada).await;
    expect_participant_joined(&mut grace).await;

    ada.send_json(offer_to(&grace_id, "p1")).await;
    let reply = recv_frame(&mut ada).await;
    assert_eq!(reply.request_id.as_deref(), Some("p1"));
    assert_eq!(reply.message, ServerMessage::Ok);

    let relayed = recv_frame(&mut grace).await;
    assert!(relayed.seq.is_some(), "{relayed:?}");
    assert_eq!(
        relayed.message,
        ServerMessage::PeerSignal {
            from: ada_id.clone(),
            session: "s1".into(),
            signal: PeerSignal::Offer {
                sdp: "v=0 offer".into()
            },
        }
    );

    // Grace sends a candidate back. Lin, who was addressed by nobody, then gets a chat as
    // the next message, so a stray signal to Lin would show up before it.
    grace
        .send_json(json!({
            "type": "peer_signal",
            "to": ada_id,
            "session": "s1",
            "signal": {"kind": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        }))
        .await;
    let candidate = recv_frame(&mut ada).await;
    assert_eq!(
        candidate.message,
        ServerMessage::PeerSignal {
            from: grace_id.clone(),
            session: "s1".into(),
            signal: PeerSignal::Candidate {
                candidate: Candidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                    sdp_mid: Some("0".into()),
                    ..Candidate::default()
                },
            },
        }
    );
    ada.send_json(json!({"type": "chat", "text": "marker"}))
        .await;
    let next_at_lin = recv_frame(&mut lin).await;
    assert!(
        matches!(&next_at_lin.message, ServerMessage::Chat { text, .. } if text == "marker"),
        "Lin got {next_at_lin:?} before the chat"
    );
    assert_ne!(lin_id, ada_id);

    drop((ada, grace, lin));
    server.stop().await;
}

#[tokio::test]
async fn signal_to_unknown_participant_is_not_found() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let (ada_id, _) = join(&mut ada, "Ada", None).await;

    ada.send_json(offer_to("0123456789abcdef0123456789abcdef", "p1"))
        .await;
    let reply = recv_frame(&mut ada).await;
    assert_eq!(reply.request_id.as_deref(), Some("p1"));
    match reply.message {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::ParticipantNotFound),
        other => panic!("expected participant_not_found, got {other:?}"),
    }

    ada.send_json(offer_to(&ada_id, "p2")).await;
    match recv_frame(&mut ada).await.message {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidMessage),
        other => panic!("expected invalid_message for a signal to oneself, got {other:?}"),
    }

    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn signal_without_publish_data_grant_is_denied() {
    const KEY: &str = "key1";
    const SECRET: &str = "secret1";
    let config = switchyard::ServerConfig {
        api_keys: ApiKeys::new([(KEY.to_owned(), SECRET.to_owned())]),
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |identity: &str, grants: Grants| {
        let claims = Claims {
            room: "demo".into(),
            sub: identity.into(),
            name: None,
            grants,
            exp,
            nbf: None,
        };
        sign(&claims, KEY, SECRET)
    };
    let without_data = Grants {
        publish_data: false,
        ..Grants::ALL
    };

    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    join(&mut ada, "Ada", Some(&token("ada", without_data))).await;
    let (grace_id, _) = join(&mut grace, "Grace", Some(&token("grace", Grants::ALL))).await;
    expect_participant_joined(&mut ada).await;

    ada.send_json(offer_to(&grace_id, "p1")).await;
    let reply = recv_frame(&mut ada).await;
    assert_eq!(reply.request_id.as_deref(), Some("p1"));
    match reply.message {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("expected permission_denied, got {other:?}"),
    }

    // Grace got nothing: her next message is the chat she sends herself.
    grace
        .send_json(json!({"type": "chat", "text": "marker"}))
        .await;
    loop {
        match recv_frame(&mut grace).await.message {
            ServerMessage::Ok => {}
            ServerMessage::Chat { text, .. } => {
                assert_eq!(text, "marker");
                break;
            }
            other => panic!("Grace got {other:?} although Ada's signal was denied"),
        }
    }

    drop((ada, grace));
    server.stop().await;
}

#[tokio::test]
async fn signals_sent_while_cut_arrive_after_resume() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    let (ada_id, _) = join(&mut ada, "Ada", None).await;
    let (grace_id, grace_token) = join(&mut grace, "Grace", None).await;
    expect_participant_joined(&mut ada).await;

    // Grace's connection is cut, so Ada's offer and two candidates wait in Grace's outbox.
    drop(grace);
    let signals = [
        json!({"kind": "offer", "sdp": "v=0 offer"}),
        json!({"kind": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}),
        json!({"kind": "candidate", "candidate": ""}),
    ];
    for (index, signal) in signals.iter().enumerate() {
        ada.send_json(json!({
            "type": "peer_signal",
            "id": format!("p{index}"),
            "to": grace_id,
            "session": "s1",
            "signal": signal
        }))
        .await;
        assert_eq!(recv_frame(&mut ada).await.message, ServerMessage::Ok);
    }

    let mut grace = server.connect().await;
    grace
        .send_json(json!({"type": "resume", "token": grace_token, "lastSeq": 1}))
        .await;
    let resumed = recv_frame(&mut grace).await;
    assert_eq!(
        resumed.message,
        ServerMessage::Resumed {
            resumed: true,
            last_seq: 4
        }
    );
    for (seq, signal) in (2..=4).zip(signals) {
        let frame = recv_frame(&mut grace).await;
        assert_eq!(frame.seq, Some(seq), "{frame:?}");
        let expected: PeerSignal = serde_json::from_value(signal).unwrap();
        assert_eq!(
            frame.message,
            ServerMessage::PeerSignal {
                from: ada_id.clone(),
                session: "s1".into(),
                signal: expected,
            }
        );
    }

    drop((ada, grace));
    server.stop().await;
}
