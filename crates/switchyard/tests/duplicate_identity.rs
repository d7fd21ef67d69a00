//! A second join with an identity already in the room replaces the first session: the others
//! see one leave and one join, and the old connection gets `replaced` and close code 4003. With
//! duplicates rejected, the second join gets `duplicate_identity` instead.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};
use switchyard_signal::DuplicateIdentity;

async fn join_as(client: &mut Client, name: &str, identity: &str) -> ServerMessage {
    client
        .send_json(serde_json::json!({
            "type": "join", "room": "demo", "name": name, "identity": identity
        }))
        .await;
    client.recv().await
}

fn participant_id(joined: &ServerMessage) -> String {
    match joined {
        ServerMessage::Joined { participant_id, .. } => participant_id.clone(),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn same_identity_replaces_old_session() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    ada.join("demo", "Ada").await;
    let mut old = server.connect().await;
    let old_id = participant_id(&join_as(&mut old, "Grace", "grace").await);
    let _old_joined = ada.recv().await;

    let mut new = server.connect().await;
    let joined = join_as(&mut new, "Grace", "grace").await;
    let new_id = participant_id(&joined);
    let ServerMessage::Joined { participants, .. } = joined else {
        unreachable!("checked above");
    };
    assert_eq!(
        participants.len(),
        1,
        "old session still in the roster: {participants:?}"
    );

    old.expect_error(ErrorCode::Replaced).await;
    assert_eq!(old.expect_close().await, 4003);

    assert_eq!(
        ada.recv().await,
        ServerMessage::ParticipantLeft {
            participant_id: old_id
        }
    );
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, new_id),
        other => panic!("expected participant_joined, got {other:?}"),
    }

    // Nothing more about Grace: Ada's next message is Lin's arrival.
    let mut lin = server.connect().await;
    let (lin_id, roster) = lin.join("demo", "Lin").await;
    assert_eq!(roster.len(), 2, "{roster:?}");
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined for lin, got {other:?}"),
    }
    drop((ada, new, lin));
    server.stop().await;
}

#[tokio::test]
async fn same_identity_rejected_when_configured() {
    let config = switchyard::ServerConfig {
        duplicate_identity: DuplicateIdentity::Reject,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut first = server.connect().await;
    participant_id(&join_as(&mut first, "Grace", "grace").await);

    let mut second = server.connect().await;
    match join_as(&mut second, "Grace", "grace").await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::DuplicateIdentity),
        other => panic!("expected duplicate_identity, got {other:?}"),
    }
    // The rejected connection may join with another identity.
    participant_id(&join_as(&mut second, "Grace", "grace-2").await);
    drop((first, second));
    server.stop().await;
}
