//! Bad client input gets the documented `error` and leaves the connection usable.

mod common;

use common::{loopback_config, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_input_gets_error_and_connection_stays_up() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = server.connect().await;

    let cases = [
        (Message::text("not json"), ErrorCode::InvalidJson),
        (Message::text("{\"type\":\"join\""), ErrorCode::InvalidJson),
        (Message::binary(b"{}".to_vec()), ErrorCode::InvalidJson),
        (Message::text("{}"), ErrorCode::UnknownType),
        (Message::text("[1,2]"), ErrorCode::UnknownType),
        (Message::text(r#"{"type":"shout"}"#), ErrorCode::UnknownType),
        (Message::text(r#"{"type":42}"#), ErrorCode::UnknownType),
        (
            Message::text(r#"{"type":"join"}"#),
            ErrorCode::InvalidMessage,
        ),
        (
            Message::text(r#"{"type":"join","room":"demo","name":7}"#),
            ErrorCode::InvalidMessage,
        ),
        (
            Message::text(r#"{"type":"candidate","target":"nowhere","candidate":""}"#),
            ErrorCode::InvalidMessage,
        ),
        (
            Message::text(r#"{"type":"offer","sdp":"v=0"}"#),
            ErrorCode::NotJoined,
        ),
        (
            Message::text(r#"{"type":"join","room":"","name":"Ada"}"#),
            ErrorCode::InvalidName,
        ),
        (
            Message::text(r#"{"type":"join","room":"demo","name":"Ada\nLovelace"}"#),
            ErrorCode::InvalidName,
        ),
    ];
    for (message, expected) in cases {
        let sent = format!("{message:?}");
        client.send(message).await;
        match client.recv().await {
            ServerMessage::Error { code, .. } => assert_eq!(code, expected, "after {sent}"),
            other => panic!("expected error {expected:?} after {sent}, got {other:?}"),
        }
    }

    // The connection still works: join succeeds, and a second join is rejected.
    client.join("demo", "Ada").await;
    client
        .send_json(serde_json::json!({"type": "join", "room": "demo", "name": "Ada"}))
        .await;
    client.expect_error(ErrorCode::AlreadyJoined).await;

    client.send_json(serde_json::json!({"type": "leave"})).await;
    assert_eq!(client.recv().await, ServerMessage::Ok);
    assert_eq!(client.expect_close().await, 1000);
    server.stop().await;
}

#[tokio::test]
async fn long_names_and_identities_rejected() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = server.connect().await;

    let long = "x".repeat(65);
    client
        .send_json(serde_json::json!({"type": "join", "room": long, "name": "Ada"}))
        .await;
    client.expect_error(ErrorCode::InvalidName).await;
    client
        .send_json(serde_json::json!({"type": "join", "room": "demo", "name": long}))
        .await;
    client.expect_error(ErrorCode::InvalidName).await;

    let identities = ["x".repeat(129), String::new(), "\u{7}".to_owned()];
    for identity in identities {
        client
            .send_json(
                serde_json::json!({"type": "join", "room": "demo", "name": "Ada", "identity": identity}),
            )
            .await;
        client.expect_error(ErrorCode::InvalidName).await;
    }

    let at_limit = "x".repeat(64);
    client.join(&at_limit, &at_limit).await;
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn errors_do_not_disturb_others() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    grace.send(Message::text("garbage")).await;
    grace.expect_error(ErrorCode::InvalidJson).await;

    // Ada's next message is about Lin, so she got nothing from Grace's mistake.
    let mut lin = server.connect().await;
    let (lin_id, _) = lin.join("demo", "Lin").await;
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined, got {other:?}"),
    }
    drop((ada, grace, lin));
    server.stop().await;
}
