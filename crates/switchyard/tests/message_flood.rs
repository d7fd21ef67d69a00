//! A client that floods messages gets `rate_limited` for each dropped one and, when it keeps
//! going, close code 4029, while another participant in the same room keeps working.

mod common;

use common::{loopback_config, TestServer};
use futures_util::SinkExt;
use switchyard_proto::{ErrorCode, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

/// Messages per second for the test server: a bucket of 2, so a short flood overruns it.
const RATE: u32 = 1;

/// Chat messages in the flood, far more than the bucket plus a bucket's worth of drops.
const FLOOD: usize = 200;

#[tokio::test]
async fn flood_is_rate_limited_then_closed() {
    let config = switchyard::ServerConfig {
        max_messages_per_second: RATE,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    // Ada sends the whole flood before reading anything. The server may close the connection
    // part way, so a failed send ends the flood instead of the test.
    for i in 0..FLOOD {
        let text = serde_json::json!({"type": "chat", "id": format!("c{i}"), "text": "spam"});
        if ada
            .writer
            .0
            .send(Message::text(text.to_string()))
            .await
            .is_err()
        {
            break;
        }
    }

    // Ada reads replies until the close frame: at least one rate_limited error comes first.
    let mut rate_limited = 0;
    let close_code = loop {
        match ada.reader.next_frame().await {
            Some(Message::Text(text)) => {
                let message: ServerMessage = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|error| panic!("invalid JSON {text}: {error}"));
                if let ServerMessage::Error { code, .. } = message {
                    assert_eq!(code, ErrorCode::RateLimited, "{text}");
                    rate_limited += 1;
                }
            }
            Some(Message::Close(Some(frame))) => break u16::from(frame.code),
            Some(_) => {}
            None => panic!("connection ended without a close frame"),
        }
    };
    assert!(rate_limited > 0, "no rate_limited before the close");
    assert_eq!(close_code, 4029);

    // Grace is unaffected: her chat gets ok and reaches her, her own rate budget intact.
    grace
        .send_json(serde_json::json!({"type": "chat", "id": "g1", "text": "still here"}))
        .await;
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match grace.recv().await {
            ServerMessage::Chat { text, .. } if text == "spam" => {}
            ServerMessage::ParticipantLeft { .. } => {}
            other => replies.push(other),
        }
    }
    assert!(replies.contains(&ServerMessage::Ok), "{replies:?}");
    assert!(
        replies
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat { text, .. } if text == "still here")),
        "{replies:?}"
    );

    drop((ada, grace));
    server.stop().await;
}
