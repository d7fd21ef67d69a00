//! An offer whose SDP does not parse gets `invalid_sdp` and leaves the participant and the room
//! as they were.

mod common;

use common::{loopback_config, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};

#[tokio::test]
async fn invalid_sdp_leaves_room_unaffected() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    let (ada_id, _) = ada.join("demo", "Ada").await;
    let (grace_id, _) = grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    ada.send_json(serde_json::json!({"type": "offer", "sdp": "this is not SDP"}))
        .await;
    ada.expect_error(ErrorCode::InvalidSdp).await;

    // Ada is still joined: a second join is rejected rather than accepted.
    ada.send_json(serde_json::json!({"type": "join", "room": "demo", "name": "Ada"}))
        .await;
    ada.expect_error(ErrorCode::AlreadyJoined).await;

    // Both are still in the room, and Grace heard nothing about Ada in between: her next
    // message is Lin's arrival.
    let mut lin = server.connect().await;
    let (lin_id, roster) = lin.join("demo", "Lin").await;
    let roster_ids: Vec<&str> = roster.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(roster_ids, [ada_id.as_str(), grace_id.as_str()]);
    match grace.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined for lin, got {other:?}"),
    }

    drop((ada, grace, lin));
    server.stop().await;
}
