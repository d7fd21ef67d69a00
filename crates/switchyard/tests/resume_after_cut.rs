//! A WebSocket cut without a close frame, followed by `resume` on a new connection: the
//! client's sequence numbers continue without a gap or a duplicate, and the others never see
//! the participant leave.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ServerFrame, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

/// Reads the next frame as a [`ServerFrame`], with its sequence number.
async fn recv_frame(client: &mut Client) -> ServerFrame {
    match client.reader.next_frame().await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|error| panic!("server sent invalid JSON {text}: {error}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Sends `join` and returns `joined` as a frame.
async fn join(client: &mut Client, name: &str) -> ServerFrame {
    client
        .send_json(serde_json::json!({"type": "join", "id": "j1", "room": "demo", "name": name}))
        .await;
    let frame = recv_frame(client).await;
    assert!(
        matches!(frame.message, ServerMessage::Joined { .. }),
        "expected joined, got {frame:?}"
    );
    frame
}

fn resume_token(joined: &ServerFrame) -> String {
    match &joined.message {
        ServerMessage::Joined { resume_token, .. } => resume_token.clone(),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn resume_continues_sequence_without_gap() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    join(&mut ada, "Ada").await;
    let joined = join(&mut grace, "Grace").await;
    assert_eq!(joined.seq, Some(1));
    assert_eq!(joined.request_id.as_deref(), Some("j1"));
    let token = resume_token(&joined);
    let _grace_joined = recv_frame(&mut ada).await;

    // Lin joins while Grace is connected: Grace receives it as message 2.
    let mut lin = server.connect().await;
    let lin_joined = join(&mut lin, "Lin").await;
    let ServerMessage::Joined {
        participant_id: lin_id,
        ..
    } = lin_joined.message
    else {
        unreachable!("join returned joined");
    };
    let seen = recv_frame(&mut grace).await;
    assert_eq!(seen.seq, Some(2));
    let _lin_joined_at_ada = recv_frame(&mut ada).await;

    // Cut Grace's connection without a close frame, then let more happen in the room.
    drop(grace);
    lin.send_json(serde_json::json!({"type": "leave", "id": "l1"}))
        .await;
    assert_eq!(lin.recv().await, ServerMessage::Ok);
    assert_eq!(lin.expect_close().await, 1000);

    // Grace resumes on a new connection from message 2.
    let mut grace = server.connect().await;
    grace
        .send_json(serde_json::json!({"type": "resume", "id": "r1", "token": token, "lastSeq": 2}))
        .await;
    let resumed = recv_frame(&mut grace).await;
    assert_eq!(resumed.request_id.as_deref(), Some("r1"));
    assert_eq!(resumed.seq, None);
    assert!(
        matches!(
            resumed.message,
            ServerMessage::Resumed { resumed: true, .. }
        ),
        "{resumed:?}"
    );

    // Messages 3 on arrive in order: Lin's departure, then anything new.
    let missed = recv_frame(&mut grace).await;
    assert_eq!(missed.seq, Some(3), "{missed:?}");
    assert_eq!(
        missed.message,
        ServerMessage::ParticipantLeft {
            participant_id: lin_id.clone()
        }
    );
    grace
        .send_json(serde_json::json!({"type": "ack", "seq": 3}))
        .await;
    grace
        .send_json(serde_json::json!({"type": "leave", "id": "l2"}))
        .await;
    let ok = recv_frame(&mut grace).await;
    assert_eq!(ok.seq, Some(4), "{ok:?}");
    assert_eq!(ok.message, ServerMessage::Ok);
    assert_eq!(grace.expect_close().await, 1000);

    // Ada saw Lin leave, then Grace leave once, and nothing about the cut in between.
    let first = recv_frame(&mut ada).await;
    assert_eq!(
        first.message,
        ServerMessage::ParticipantLeft {
            participant_id: lin_id
        }
    );
    let second = recv_frame(&mut ada).await;
    assert!(
        matches!(second.message, ServerMessage::ParticipantLeft { .. }),
        "{second:?}"
    );
    assert_eq!(second.seq, first.seq.map(|seq| seq + 1));

    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn resume_with_unknown_token_is_rejected() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = server.connect().await;
    client
        .send_json(serde_json::json!({"type": "resume", "id": "r1", "token": "nope", "lastSeq": 0}))
        .await;
    let reply = recv_frame(&mut client).await;
    assert_eq!(reply.request_id.as_deref(), Some("r1"));
    assert_eq!(
        reply.message,
        ServerMessage::Resumed {
            resumed: false,
            last_seq: 0
        }
    );

    // The connection stays usable for a fresh join.
    join(&mut client, "Ada").await;
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn resume_past_dropped_messages_is_rejected() {
    let config = switchyard::ServerConfig {
        outbox_messages: 2,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    join(&mut ada, "Ada").await;
    let token = resume_token(&join(&mut grace, "Grace").await);
    let ServerMessage::ParticipantJoined { participant } = recv_frame(&mut ada).await.message
    else {
        panic!("expected participant_joined");
    };
    let grace_id = participant.id;
    drop(grace);

    // Three more joins overflow Grace's outbox of two messages.
    let mut others = Vec::new();
    for name in ["Lin", "Mia", "Noa"] {
        let mut other = server.connect().await;
        join(&mut other, name).await;
        others.push(other);
    }

    let mut grace = server.connect().await;
    grace
        .send_json(serde_json::json!({"type": "resume", "token": token, "lastSeq": 1}))
        .await;
    let reply = recv_frame(&mut grace).await;
    assert_eq!(
        reply.message,
        ServerMessage::Resumed {
            resumed: false,
            last_seq: 0
        }
    );

    // The server gave up on the session, so the others see Grace leave.
    loop {
        match recv_frame(&mut ada).await.message {
            ServerMessage::ParticipantLeft { participant_id } => {
                assert_eq!(participant_id, grace_id);
                break;
            }
            ServerMessage::ParticipantJoined { .. } => {}
            other => panic!("expected participant_left, got {other:?}"),
        }
    }
    drop((ada, grace, others));
    server.stop().await;
}
