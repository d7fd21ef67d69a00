//! A message over the size limit gets `message_too_large` and close code 1009, whatever its
//! size and however it is fragmented, and the other participants carry on.

mod common;

use common::{loopback_config, Client, TestServer, Writer};
use futures_util::SinkExt;
use switchyard_proto::{ErrorCode, ServerMessage};
use switchyard_signal::DEFAULT_MAX_MESSAGE_SIZE;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Returns a JSON text message of exactly `size` bytes with an unknown `type`.
fn padded_message(size: usize) -> String {
    let skeleton = r#"{"type":"pad","pad":""}"#;
    let padding = "x".repeat(size - skeleton.len());
    let text = format!(r#"{{"type":"pad","pad":"{padding}"}}"#);
    assert_eq!(text.len(), size);
    text
}

/// Sends `frames` from a separate task, because the server stops reading after the limit and
/// a large send may block until the server drops the connection.
fn send_in_background(mut writer: Writer, frames: Vec<Message>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for frame in frames {
            if writer.0.feed(frame).await.is_err() {
                return;
            }
        }
        let _ = writer.0.flush().await;
    })
}

/// Joins Ada and Grace, has Grace send `frames`, and checks the outcome for both.
async fn assert_too_large_closes_sender(frames: Vec<Message>) {
    // Without a grace period the sender leaves the room as soon as its connection is closed.
    let config = switchyard::ServerConfig {
        reconnect_grace: std::time::Duration::ZERO,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    let (grace_id, _) = grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    let Client {
        writer,
        reader: mut grace_reader,
    } = grace;
    let sender = send_in_background(writer, frames);

    grace_reader.expect_error(ErrorCode::MessageTooLarge).await;
    assert_eq!(grace_reader.expect_close().await, 1009);
    sender.abort();

    assert_eq!(
        ada.recv().await,
        ServerMessage::ParticipantLeft {
            participant_id: grace_id
        }
    );
    // Ada's connection is unaffected.
    ada.send_json(serde_json::json!({"type": "join", "room": "demo", "name": "Ada"}))
        .await;
    ada.expect_error(ErrorCode::AlreadyJoined).await;

    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn message_just_over_limit_closes_with_1009() {
    let text = padded_message(DEFAULT_MAX_MESSAGE_SIZE + 1);
    assert_too_large_closes_sender(vec![Message::text(text)]).await;
}

#[tokio::test]
async fn two_mib_message_closes_with_1009() {
    let text = padded_message(2 * 1024 * 1024);
    assert_too_large_closes_sender(vec![Message::text(text)]).await;
}

#[tokio::test]
async fn two_mib_binary_message_closes_with_1009() {
    let data = vec![0u8; 2 * 1024 * 1024];
    assert_too_large_closes_sender(vec![Message::binary(data)]).await;
}

#[tokio::test]
async fn fragments_over_limit_close_with_1009() {
    // Each fragment is under the limit, but together they are over it.
    let text = padded_message(DEFAULT_MAX_MESSAGE_SIZE + 1024);
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
    let last = chunks.len() - 1;
    let frames = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let opcode = if index == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            Message::Frame(Frame::message(chunk.to_vec(), opcode, index == last))
        })
        .collect();
    assert_too_large_closes_sender(frames).await;
}

#[tokio::test]
async fn message_at_limit_is_accepted() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = server.connect().await;

    client
        .send(Message::text(padded_message(DEFAULT_MAX_MESSAGE_SIZE)))
        .await;
    client.expect_error(ErrorCode::UnknownType).await;
    client.join("demo", "Ada").await;

    drop(client);
    server.stop().await;
}
