//! The server's own WebSocket framing, driven byte by byte from a raw TCP client: the opening
//! handshake, fragmented and split frames, control frames, and the close codes for protocol
//! violations, which leave other connections alone.

mod common;

use std::time::Duration;

use common::{loopback_config, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

/// A WebSocket client that writes frames exactly as the test builds them.
struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A frame from the server: opcode and payload.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

impl RawClient {
    async fn connect(server: &TestServer) -> RawClient {
        let stream = TcpStream::connect(server.http_addr).await.expect("connect");
        RawClient::upgrade(server, stream).await
    }

    /// Connects with a receive buffer of `size` bytes, which also stops the kernel from
    /// growing it, so that little of what the server sends fits while the test does not read.
    async fn connect_with_receive_buffer(server: &TestServer, size: u32) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        let stream = socket.connect(server.http_addr).await.expect("connect");
        RawClient::upgrade(server, stream).await
    }

    async fn upgrade(server: &TestServer, stream: TcpStream) -> RawClient {
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.http_addr
        );
        let (head, buffer) = exchange_on(stream, &request).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 section 1.3 gives this accept value for this key.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        RawClient {
            stream: buffer.0,
            buffer: buffer.1,
        }
    }

    /// Sends bytes one write per byte, so that the server gets every possible split.
    async fn send_split(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.stream.write_all(&[*byte]).await.expect("write");
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads the next frame, or `None` when the server closed the connection.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("no frame from the server in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a text frame and decodes it.
    async fn message(&mut self) -> ServerMessage {
        loop {
            let frame = self.frame().await.expect("connection closed");
            if frame.opcode == 0x1 {
                let frame: switchyard_proto::ServerFrame =
                    serde_json::from_slice(&frame.payload).expect("server sends JSON");
                return frame.message;
            }
        }
    }

    /// Reads frames until the close frame and returns its code, then checks that the server
    /// closes the TCP connection.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = self
                .frame()
                .await
                .expect("connection closed before a close frame");
            if frame.opcode == 0x8 {
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                assert_eq!(self.frame().await, None, "nothing follows the close frame");
                return code;
            }
        }
    }
}

/// Sends an HTTP request and returns the response head and the stream with what was read
/// after the head.
async fn http_exchange(server: &TestServer, request: &str) -> (String, (TcpStream, Vec<u8>)) {
    let stream = TcpStream::connect(server.http_addr).await.expect("connect");
    exchange_on(stream, request).await
}

async fn exchange_on(mut stream: TcpStream, request: &str) -> (String, (TcpStream, Vec<u8>)) {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut read = Vec::new();
    loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).into_owned();
            let rest = read[end + 4..].to_vec();
            return (head, (stream, rest));
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("no response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        read.extend_from_slice(&chunk[..n]);
    }
}

/// Builds a client frame, masked unless `masked` is false.
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0xa1, 0x02, 0x7c, 0x55];
    let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        bytes.push(mask_bit | payload.len() as u8);
    } else {
        bytes.push(mask_bit | 126);
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if masked {
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    } else {
        bytes.extend_from_slice(payload);
    }
    bytes
}

fn parse_server_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let [first, second, ..] = *bytes else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    let (start, length) = match second & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
        ),
        127 => (
            10,
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
        ),
        short => (2, usize::from(short)),
    };
    let payload = bytes.get(start..start + length)?.to_vec();
    let frame = Frame {
        opcode: first & 0x0f,
        payload,
    };
    Some((frame, start + length))
}

#[tokio::test]
async fn fragmented_and_split_frames_and_control_frames() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = RawClient::connect(&server).await;

    // A join in three fragments, with a ping between two of them, sent a byte at a time.
    let join = br#"{"type":"join","room":"framing","name":"Ada"}"#;
    let mut bytes = frame(false, 0x1, &join[..10], true);
    bytes.extend(frame(false, 0x0, &join[10..20], true));
    bytes.extend(frame(true, 0x9, b"are you there", true));
    bytes.extend(frame(true, 0x0, &join[20..], true));
    client.send_split(&bytes).await;

    let pong = client.frame().await.expect("a pong");
    assert_eq!(
        pong,
        Frame {
            opcode: 0xA,
            payload: b"are you there".to_vec()
        }
    );
    assert!(matches!(
        client.message().await,
        ServerMessage::Joined { .. }
    ));

    // A message of 300 bytes needs the 16-bit length.
    let text_length = 300 - r#"{"type":"chat","text":""}"#.len();
    let padded = format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(text_length));
    assert_eq!(padded.len(), 300);
    client
        .send(&frame(true, 0x1, padded.as_bytes(), true))
        .await;
    // The reply is `ok`, and the chat comes back to its sender too, in either order.
    for _ in 0..2 {
        match client.message().await {
            ServerMessage::Chat { text, .. } => assert_eq!(text.len(), text_length),
            ServerMessage::Ok => {}
            other => panic!("expected ok and the chat, got {other:?}"),
        }
    }

    // The client closes; the server echoes the code and closes the TCP connection.
    client.send(&frame(true, 0x8, &[0x0f, 0xa0], true)).await;
    assert_eq!(client.close_code().await, 4000);
    server.stop().await;
}

#[tokio::test]
async fn protocol_violations_close_only_their_connection() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    ada.join("violations", "Ada").await;

    let cases: [(&str, Vec<u8>, u16); 5] = [
        ("unmasked frame", frame(true, 0x1, b"{}", false), 1002),
        ("reserved opcode", frame(true, 0x3, b"", true), 1002),
        ("long ping", frame(true, 0x9, &[0; 126], true), 1002),
        (
            "text that is not UTF-8",
            frame(true, 0x1, &[0xc3, 0x28], true),
            1007,
        ),
        (
            "continuation without a message",
            frame(true, 0x0, b"x", true),
            1002,
        ),
    ];
    for (name, bytes, expected) in cases {
        let mut client = RawClient::connect(&server).await;
        client.send(&bytes).await;
        assert_eq!(client.close_code().await, expected, "{name}");
    }

    // Ada's connection was not disturbed, so she gets `participant_joined` for the next one.
    let mut grace = server.connect().await;
    let (grace_id, _) = grace.join("violations", "Grace").await;
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, grace_id),
        other => panic!("expected participant_joined, got {other:?}"),
    }
    drop((ada, grace));
    server.stop().await;
}

#[tokio::test]
async fn bad_upgrade_requests_get_http_errors() {
    let server = TestServer::start(loopback_config()).await;
    let host = server.http_addr;
    let cases = [
        (
            "no upgrade",
            format!("GET /v1/ws HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            "426",
        ),
        (
            "old version",
            format!(
                "GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
            "400",
        ),
        (
            "short key",
            format!(
                "GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n"
            ),
            "400",
        ),
    ];
    for (name, request, status) in cases {
        let (head, _) = http_exchange(&server, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {head}"
        );
        let head = head.to_ascii_lowercase();
        let has_line = |expected: &str| head.split("\r\n").any(|line| line == expected);
        // RFC 6455 section 4.4: a rejection names the versions the server speaks.
        assert!(has_line("sec-websocket-version: 13"), "{name}: {head}");
        if status == "426" {
            // RFC 7231 section 6.5.15: a 426 names the protocol to upgrade to.
            assert!(has_line("upgrade: websocket"), "{name}: {head}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn pings_from_a_client_that_does_not_read() {
    let server = TestServer::start(loopback_config()).await;
    let mut client = RawClient::connect_with_receive_buffer(&server, 16 * 1024).await;

    // About 65 MB of pings, sent before reading anything. A server that kept a pong for each
    // would hold 63 MB for this client. The kernel buffers only a few MB of pongs for one
    // connection with this small receive buffer (8 MB on a Debian 12 machine with the
    // default `net.ipv4.tcp_wmem`), so far fewer than one pong per ping reach the client.
    const PINGS: usize = 500_000;
    const PER_WRITE: usize = 1_000;
    let ping = frame(true, 0x9, &[b'p'; 125], true);
    let burst = ping.repeat(PER_WRITE);
    for _ in 0..PINGS / PER_WRITE {
        client.send(&burst).await;
    }
    client.send(&frame(true, 0x8, &[0x03, 0xe8], true)).await;

    // The server replies to the close frame after the pongs it kept, then closes.
    let mut pongs = 0;
    loop {
        let frame = client
            .frame()
            .await
            .expect("connection closed before the close frame");
        match frame.opcode {
            0xA => pongs += 1,
            0x8 => break,
            _ => {}
        }
    }
    assert!(pongs > 0, "no pong at all");
    assert!(
        pongs < PINGS / 4,
        "the server kept {pongs} pongs for a client that did not read"
    );
    server.stop().await;
}

#[tokio::test]
async fn binary_frames_count_against_the_rate_limit() {
    let config = switchyard::ServerConfig {
        // A bucket of 2 messages, and a close after 3 dropped in a row.
        max_messages_per_second: 1,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(&server).await;
    let flood = frame(true, 0x2, b"", true).repeat(20);
    client.send(&flood).await;

    let mut errors = Vec::new();
    let close_code = loop {
        let frame = client
            .frame()
            .await
            .expect("connection closed before the close frame");
        match frame.opcode {
            0x1 => {
                let frame: switchyard_proto::ServerFrame =
                    serde_json::from_slice(&frame.payload).expect("server sends JSON");
                if let ServerMessage::Error { code, .. } = frame.message {
                    errors.push(code);
                }
            }
            0x8 => break u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
            _ => {}
        }
    };
    assert!(errors.contains(&ErrorCode::InvalidJson), "{errors:?}");
    assert!(errors.contains(&ErrorCode::RateLimited), "{errors:?}");
    assert_eq!(close_code, 4029);
    server.stop().await;
}
