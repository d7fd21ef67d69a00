//! Chat and metadata events carry `seq` like every other session message, and a resume after a
//! cut replays the ones the client missed, in order and with their original `seq`.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ServerFrame, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

async fn recv_frame(client: &mut Client) -> ServerFrame {
    match client.reader.next_frame().await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|error| panic!("server sent invalid JSON {text}: {error}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads frames until the one that is not the `ok` reply to the sender's own request.
async fn recv_event(client: &mut Client) -> ServerFrame {
    loop {
        let frame = recv_frame(client).await;
        if frame.message != ServerMessage::Ok {
            return frame;
        }
    }
}

#[tokio::test]
async fn chat_and_metadata_replay_after_resume() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    grace
        .send_json(serde_json::json!({"type": "join", "room": "demo", "name": "Grace"}))
        .await;
    let joined = recv_frame(&mut grace).await;
    let ServerMessage::Joined { resume_token, .. } = joined.message else {
        panic!("expected joined, got {joined:?}");
    };
    assert_eq!(joined.seq, Some(1));
    let _grace_joined = ada.recv().await;

    // A chat while Grace is connected arrives with the next seq.
    ada.send_json(serde_json::json!({"type": "chat", "id": "c1", "text": "first"}))
        .await;
    let first = recv_frame(&mut grace).await;
    assert_eq!(first.seq, Some(2));
    assert!(
        matches!(&first.message, ServerMessage::Chat { text, .. } if text == "first"),
        "{first:?}"
    );

    let first_at_ada = recv_event(&mut ada).await;
    assert_eq!(first_at_ada.message, first.message);

    // Grace's connection is cut. Meanwhile Ada sends a chat and sets room and own metadata.
    drop(grace);
    let requests = [
        serde_json::json!({"type": "chat", "id": "c2", "text": "second"}),
        serde_json::json!({"type": "set_metadata", "id": "m1", "scope": "room", "metadata": "topic"}),
        serde_json::json!({"type": "set_metadata", "id": "m2", "metadata": "away"}),
    ];
    let mut sent_to_ada = Vec::new();
    for request in requests {
        ada.send_json(request).await;
        sent_to_ada.push(recv_event(&mut ada).await.message);
    }

    // Grace resumes from seq 2 and gets the three missed events, in order, with seq 3 to 5.
    let mut grace = server.connect().await;
    grace
        .send_json(serde_json::json!({"type": "resume", "token": resume_token, "lastSeq": 2}))
        .await;
    let resumed = recv_frame(&mut grace).await;
    assert_eq!(
        resumed.message,
        ServerMessage::Resumed {
            resumed: true,
            last_seq: 5
        }
    );
    let mut replayed = Vec::new();
    for seq in 3..=5 {
        let frame = recv_frame(&mut grace).await;
        assert_eq!(frame.seq, Some(seq), "{frame:?}");
        replayed.push(frame.message);
    }
    assert!(
        matches!(&replayed[0], ServerMessage::Chat { text, .. } if text == "second"),
        "{replayed:?}"
    );
    assert_eq!(
        replayed[1],
        ServerMessage::RoomMetadata {
            metadata: "topic".into()
        }
    );
    assert!(
        matches!(&replayed[2], ServerMessage::ParticipantMetadata { metadata, .. } if metadata == "away"),
        "{replayed:?}"
    );
    assert_eq!(replayed, sent_to_ada, "Grace and Ada saw different events");

    drop((ada, grace));
    server.stop().await;
}
