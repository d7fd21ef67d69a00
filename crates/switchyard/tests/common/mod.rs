//! Shared pieces of the scenario tests: a real server on 127.0.0.1 with kernel-chosen ports, and
//! a WebSocket client built on tokio-tungstenite.

// Each scenario file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchyard::{CancellationToken, RelayAddrs, RunningServer, ServerConfig};
use switchyard_proto::{ErrorCode, ParticipantInfo, ServerMessage};
use switchyard_turn::TurnConfig;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Failure bound for every wait. No test relies on how long anything takes.
pub const WAIT: Duration = Duration::from_secs(20);

/// Returns the default configuration with HTTP, media and the bundled TURN relay's UDP and TCP
/// listeners on 127.0.0.1, port 0.
pub fn loopback_config() -> ServerConfig {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    ServerConfig {
        http: loopback,
        media: loopback,
        turn: Some(TurnConfig {
            listen_udp: vec![loopback],
            listen_tcp: vec![loopback],
            ..TurnConfig::default()
        }),
        ..ServerConfig::default()
    }
}

/// A running server and the token that stops it.
pub struct TestServer {
    pub http_addr: SocketAddr,
    pub relay_addrs: Option<RelayAddrs>,
    pub shutdown: CancellationToken,
    server: RunningServer,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let shutdown = CancellationToken::new();
        let server = switchyard::run(config, shutdown.clone())
            .await
            .unwrap_or_else(|error| panic!("server failed to start: {error:?}"));
        TestServer {
            http_addr: server.http_addr(),
            relay_addrs: server.relay_addrs().cloned(),
            shutdown,
            server,
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.http_addr, None).await
    }

    /// Cancels the shutdown token and waits until the server has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(WAIT, self.server.wait()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("server stopped with an error: {error:?}"),
            Err(_) => panic!("server did not stop within {WAIT:?}"),
        }
    }
}

type Stream = WebSocketStream<TcpStream>;

/// Sending half of a client connection.
pub struct Writer(pub SplitSink<Stream, Message>);

/// Receiving half of a client connection.
pub struct Reader(pub SplitStream<Stream>);

/// A signaling client.
pub struct Client {
    pub writer: Writer,
    pub reader: Reader,
}

impl Client {
    /// Connects to `/v1/ws`, optionally with a small socket receive buffer so that a client
    /// that stops reading fills the server's buffers sooner.
    pub async fn connect(addr: SocketAddr, receive_buffer: Option<u32>) -> Client {
        let socket = TcpSocket::new_v4().expect("create TCP socket");
        if let Some(size) = receive_buffer {
            socket
                .set_recv_buffer_size(size)
                .expect("set receive buffer size");
        }
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        let url = format!("ws://{addr}/v1/ws");
        let (ws, _response) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("WebSocket handshake failed");
        let (sink, stream) = ws.split();
        Client {
            writer: Writer(sink),
            reader: Reader(stream),
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.writer.send(Message::text(value.to_string())).await;
    }

    pub async fn send(&mut self, message: Message) {
        self.writer.send(message).await;
    }

    pub async fn recv(&mut self) -> ServerMessage {
        self.reader.recv().await
    }

    /// Sends `join` and returns this participant's id and the roster from `joined`.
    pub async fn join(&mut self, room: &str, name: &str) -> (String, Vec<ParticipantInfo>) {
        self.send_json(serde_json::json!({"type": "join", "room": room, "name": name}))
            .await;
        match self.recv().await {
            ServerMessage::Joined {
                participant_id,
                participants,
                ..
            } => (participant_id, participants),
            other => panic!("expected joined, got {other:?}"),
        }
    }

    pub async fn expect_error(&mut self, expected: ErrorCode) {
        self.reader.expect_error(expected).await;
    }

    pub async fn expect_close(&mut self) -> u16 {
        self.reader.expect_close().await
    }
}

impl Writer {
    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.0.send(message))
            .await
            .expect("send timed out")
            .expect("send failed");
    }
}

impl Reader {
    /// Returns the next frame, or `None` when the connection ended without one.
    pub async fn next_frame(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(WAIT, self.0.next())
            .await
            .expect("no frame from the server in time");
        match next {
            Some(Ok(message)) => Some(message),
            Some(Err(_)) | None => None,
        }
    }

    /// Returns the next server message. Fails on anything but a JSON text frame.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_frame().await {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str())
                .unwrap_or_else(|error| panic!("server sent invalid JSON {text}: {error}")),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn expect_error(&mut self, expected: ErrorCode) {
        match self.recv().await {
            ServerMessage::Error { code, .. } => assert_eq!(code, expected),
            other => panic!("expected error {expected:?}, got {other:?}"),
        }
    }

    /// Reads the next frame, which must be a close frame, and returns its code. Reads on until
    /// the connection ends, which sends tungstenite's reply to the close frame, as a browser
    /// does at once.
    pub async fn expect_close(&mut self) -> u16 {
        let code = match self.next_frame().await {
            Some(Message::Close(Some(frame))) => frame.code.into(),
            other => panic!("expected a close frame, got {other:?}"),
        };
        if let Some(frame) = self.next_frame().await {
            panic!("expected the connection to end after the close frame, got {frame:?}");
        }
        code
    }
}
