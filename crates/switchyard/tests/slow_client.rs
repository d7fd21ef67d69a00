//! A client that stops reading is disconnected with close code 4008 once its outbound queue is
//! full, and the others get `participant_left`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{loopback_config, Client, TestServer, WAIT};
use futures_util::SinkExt;
use switchyard::ServerConfig;
use switchyard_proto::{ErrorCode, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

/// Upper bound on the invalid messages the slow client sends: enough to fill the socket buffers
/// on both sides and then the queue, with room to spare.
const MAX_FLOOD_MESSAGES: usize = 2_000_000;
const FLOOD_BATCH: usize = 500;

#[tokio::test]
async fn short_queue_closes_with_4008() {
    assert_slow_client_closed(8).await;
}

#[tokio::test]
async fn default_queue_closes_with_4008() {
    assert_slow_client_closed(switchyard_signal::DEFAULT_OUTBOUND_QUEUE).await;
}

async fn assert_slow_client_closed(outbound_queue: usize) {
    let config = ServerConfig {
        outbound_queue,
        // Long enough for the client below to read its backlog and reach the close frame.
        close_timeout: Duration::from_secs(60),
        // The slow client leaves the room as soon as its connection is closed.
        reconnect_grace: Duration::ZERO,
        // The flood has to fill the queue, not hit the message rate limit.
        max_messages_per_second: u32::MAX / 4,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    ada.join("demo", "Ada").await;
    let mut slow = Client::connect(server.http_addr, Some(4096)).await;
    let (slow_id, _) = slow.join("demo", "Slow").await;
    let _slow_joined = ada.recv().await;

    // Every invalid message makes the server queue an error reply, which the slow client does
    // not read.
    let Client {
        mut writer,
        reader: mut slow_reader,
    } = slow;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let stop = Arc::clone(&stop);
        let sent = Arc::clone(&sent);
        async move {
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < MAX_FLOOD_MESSAGES
            {
                for _ in 0..FLOOD_BATCH {
                    if writer.0.feed(Message::text("{}")).await.is_err() {
                        return;
                    }
                }
                if writer.0.flush().await.is_err() {
                    return;
                }
                sent.fetch_add(FLOOD_BATCH, Ordering::Relaxed);
            }
        }
    });

    let left = tokio::time::timeout(WAIT * 3, ada.recv()).await;
    stop.store(true, Ordering::Relaxed);
    flood.abort();
    let sent = sent.load(Ordering::Relaxed);
    match left {
        Ok(message) => assert_eq!(
            message,
            ServerMessage::ParticipantLeft {
                participant_id: slow_id
            },
            "after {sent} flood messages"
        ),
        Err(_) => panic!("ada got no participant_left after {sent} flood messages"),
    }

    // The slow client now reads its backlog of error replies and then finds the close frame.
    let mut replies = 0usize;
    let code = loop {
        match slow_reader.next_frame().await {
            Some(Message::Text(text)) => {
                let reply: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
                assert!(
                    matches!(
                        reply,
                        ServerMessage::Error {
                            code: ErrorCode::UnknownType,
                            ..
                        }
                    ),
                    "unexpected reply {reply:?}"
                );
                replies += 1;
                assert!(replies <= sent, "more replies than messages sent");
            }
            Some(Message::Close(Some(frame))) => break u16::from(frame.code),
            other => panic!(
                "expected error replies and a close frame, got {other:?} after {replies} replies"
            ),
        }
    };
    assert_eq!(code, 4008, "after {replies} replies");
    // Reading on sends the reply to the close frame, which lets the server finish the session.
    assert!(slow_reader.next_frame().await.is_none());

    drop(ada);
    server.stop().await;
}
