//! The participants-per-room and rooms-per-server limits: a join over either gets its error
//! and stays on an open connection, and a place freed by a leave can be taken again.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};

async fn join_error(client: &mut Client, room: &str, name: &str) -> ErrorCode {
    client
        .send_json(serde_json::json!({"type": "join", "room": room, "name": name}))
        .await;
    match client.recv().await {
        ServerMessage::Error { code, .. } => code,
        other => panic!("expected an error for {name} in {room}, got {other:?}"),
    }
}

async fn leave(client: &mut Client) {
    client.send_json(serde_json::json!({"type": "leave"})).await;
    assert_eq!(client.recv().await, ServerMessage::Ok);
    assert_eq!(client.expect_close().await, 1000);
}

#[tokio::test]
async fn full_room_rejects_join() {
    let config = switchyard::ServerConfig {
        max_participants_per_room: 2,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    grace.join("demo", "Grace").await;

    let mut lin = server.connect().await;
    assert_eq!(
        join_error(&mut lin, "demo", "Lin").await,
        ErrorCode::RoomFull
    );

    // Another room is not affected by the full one.
    let mut other = server.connect().await;
    other.join("other", "Lin").await;

    // The rejected connection stays open, and joins once a place is free.
    leave(&mut grace).await;
    let (_, roster) = lin.join("demo", "Lin").await;
    assert_eq!(roster.len(), 1, "{roster:?}");

    drop((ada, lin, other));
    server.stop().await;
}

#[tokio::test]
async fn room_count_limit_rejects_new_room() {
    let config = switchyard::ServerConfig {
        max_rooms: 2,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("one", "Ada").await;
    grace.join("two", "Grace").await;

    let mut lin = server.connect().await;
    assert_eq!(
        join_error(&mut lin, "three", "Lin").await,
        ErrorCode::TooManyRooms
    );

    // Joining an existing room creates no room, so it is allowed at the limit.
    let mut cleo = server.connect().await;
    cleo.join("one", "Cleo").await;

    // When the last participant leaves a room, the room is gone and a new one fits.
    leave(&mut grace).await;
    lin.join("three", "Lin").await;

    drop((ada, lin, cleo));
    server.stop().await;
}
