//! Joining a room: the roster in `joined`, `participant_joined` for the others, and exactly one
//! `participant_left` however a participant goes away.

mod common;

use common::{loopback_config, TestServer};
use switchyard_proto::{IceServer, ParticipantInfo, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn second_client_sees_first_in_roster() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;

    let (ada_id, ada_roster) = ada.join("demo", "Ada").await;
    assert!(ada_roster.is_empty());
    let (grace_id, grace_roster) = grace.join("demo", "Grace").await;
    assert_ne!(ada_id, grace_id);
    assert_eq!(
        grace_roster,
        [ParticipantInfo {
            id: ada_id,
            name: "Ada".into(),
            metadata: String::new(),
        }]
    );

    let announced = ada.recv().await;
    assert_eq!(
        announced,
        ServerMessage::ParticipantJoined {
            participant: ParticipantInfo {
                id: grace_id,
                name: "Grace".into(),
                metadata: String::new(),
            }
        }
    );
    drop((ada, grace));
    server.stop().await;
}

#[tokio::test]
async fn joined_carries_configured_ice_servers() {
    let config = switchyard::ServerConfig {
        ice_servers: vec!["stun:127.0.0.1:3478".into()],
        turn: None,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    ada.send_json(serde_json::json!({"type": "join", "room": "demo", "name": "Ada"}))
        .await;

    let ServerMessage::Joined {
        room, ice_servers, ..
    } = ada.recv().await
    else {
        panic!("expected joined");
    };
    assert_eq!(room, "demo");
    assert_eq!(
        ice_servers,
        [IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        }]
    );
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn rooms_do_not_share_rosters() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("one", "Ada").await;
    let (_, roster) = grace.join("two", "Grace").await;
    assert!(roster.is_empty());
    drop((ada, grace));
    server.stop().await;
}

/// Has `lin` join after `grace` went away and checks that `ada` gets exactly one
/// `participant_left` for grace: the queue is ordered, so a duplicate would arrive before lin's
/// `participant_joined`.
async fn assert_left_once(server: &TestServer, ada: &mut common::Client, grace_id: &str) {
    assert_eq!(
        ada.recv().await,
        ServerMessage::ParticipantLeft {
            participant_id: grace_id.into()
        }
    );

    let mut lin = server.connect().await;
    let (lin_id, roster) = lin.join("demo", "Lin").await;
    assert_eq!(roster.len(), 1, "grace is still in the roster: {roster:?}");
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined for lin, got {other:?}"),
    }
    drop(lin);
}

#[tokio::test]
async fn leave_announces_participant_left_once() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    let (grace_id, _) = grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    grace.send_json(serde_json::json!({"type": "leave"})).await;
    assert_eq!(grace.recv().await, ServerMessage::Ok);
    assert_eq!(grace.expect_close().await, 1000);

    assert_left_once(&server, &mut ada, &grace_id).await;
    drop(ada);
    server.stop().await;
}

/// Returns the loopback configuration without the grace period, so a participant whose
/// connection drops leaves at once.
fn no_grace_config() -> switchyard::ServerConfig {
    switchyard::ServerConfig {
        reconnect_grace: std::time::Duration::ZERO,
        ..loopback_config()
    }
}

#[tokio::test]
async fn disconnect_announces_participant_left_once() {
    let server = TestServer::start(no_grace_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    let (grace_id, _) = grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    // Dropping both halves closes the TCP connection without a close frame.
    drop(grace);

    assert_left_once(&server, &mut ada, &grace_id).await;
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn client_close_frame_announces_participant_left_once() {
    let server = TestServer::start(no_grace_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    let (grace_id, _) = grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    grace.send(Message::Close(None)).await;
    assert!(matches!(
        grace.reader.next_frame().await,
        Some(Message::Close(_)) | None
    ));

    assert_left_once(&server, &mut ada, &grace_id).await;
    drop(ada);
    server.stop().await;
}
