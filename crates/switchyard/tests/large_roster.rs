//! A roster of more than 200 KB, from many participants with 64-character names and metadata,
//! reaches a late joiner intact in one `joined` frame.

mod common;

use std::time::Duration;

use common::{loopback_config, TestServer};
use switchyard_proto::ServerMessage;
use tokio_tungstenite::tungstenite::Message;

/// Participants already in the room when the late joiner arrives.
const PARTICIPANTS: usize = 200;

/// Metadata bytes per participant, so the roster is over 200 KB with the names.
const METADATA_BYTES: usize = 1000;

/// Returns a display name of 64 characters, the maximum, with multi-byte characters and a
/// unique prefix.
fn long_name(index: usize) -> String {
    let name: String = format!("{index:03} Zoë Łukasiewicz-Ångström ")
        .chars()
        .chain(std::iter::repeat('é'))
        .take(64)
        .collect();
    assert_eq!(name.chars().count(), 64);
    name
}

fn metadata(index: usize) -> String {
    format!("{index:03}:")
        .chars()
        .chain(std::iter::repeat('m'))
        .take(METADATA_BYTES)
        .collect()
}

#[tokio::test]
async fn late_joiner_gets_large_roster_intact() {
    // The early participants drop their connections after joining and stay in the room for the
    // grace period, so nobody has to read the events of the others' joins.
    let config = switchyard::ServerConfig {
        max_participants_per_room: PARTICIPANTS + 1,
        reconnect_grace: Duration::from_secs(600),
        ..loopback_config()
    };
    let server = TestServer::start(config).await;

    let mut expected = Vec::new();
    for index in 0..PARTICIPANTS {
        let mut client = server.connect().await;
        let (id, _) = client.join("big", &long_name(index)).await;
        client
            .send_json(serde_json::json!({
                "type": "set_metadata", "id": "m", "metadata": metadata(index)
            }))
            .await;
        loop {
            match client.recv().await {
                ServerMessage::Ok => break,
                ServerMessage::Error { code, message } => {
                    panic!("set_metadata of participant {index} failed: {code:?} {message}")
                }
                _ => {}
            }
        }
        expected.push((id, long_name(index), metadata(index)));
    }

    let mut late = server.connect().await;
    late.send_json(serde_json::json!({"type": "join", "room": "big", "name": "Late"}))
        .await;
    let text = match late.reader.next_frame().await {
        Some(Message::Text(text)) => text,
        other => panic!("expected joined as a text frame, got {other:?}"),
    };
    assert!(
        text.len() > 200_000,
        "roster frame has {} bytes",
        text.len()
    );
    let participants = match serde_json::from_str(text.as_str()).expect("joined is valid JSON") {
        ServerMessage::Joined { participants, .. } => participants,
        other => panic!("expected joined, got {other:?}"),
    };

    assert_eq!(participants.len(), PARTICIPANTS);
    for (entry, (id, name, metadata)) in participants.iter().zip(&expected) {
        assert_eq!(&entry.id, id);
        assert_eq!(&entry.name, name);
        assert_eq!(&entry.metadata, metadata);
    }

    drop(late);
    server.stop().await;
}
