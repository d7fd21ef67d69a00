//! A session over Server-Sent Events: `join` by POST, events with `id:` set to the sequence
//! number, and a reconnect with `Last-Event-ID` that resumes without a gap while the others see
//! no leave.

mod common;

use std::net::SocketAddr;

use common::{loopback_config, TestServer, WAIT};
use switchyard_proto::{ServerFrame, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one HTTP/1.1 request and returns the connection, positioned after the headers, with
/// the status code and the headers.
async fn request(addr: SocketAddr, head: &str, body: &str) -> (TcpStream, u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let text = format!(
        "{head}Host: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.expect("write");

    let mut headers = Vec::new();
    while !headers.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("response headers in time")
            .expect("read");
        assert_eq!(read, 1, "connection closed inside the headers");
        headers.push(byte[0]);
    }
    let headers = String::from_utf8(headers).expect("headers are UTF-8");
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    (stream, status, headers)
}

/// Sends a POST with `Connection: close` and returns the status and the body.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let head =
        format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nConnection: close\r\n");
    let (mut stream, status, _) = request(addr, &head, body).await;
    let mut rest = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut rest))
        .await
        .expect("response body in time")
        .expect("read");
    (status, rest)
}

/// An open `text/event-stream` response, read as chunked transfer encoding.
struct EventStream {
    stream: TcpStream,
    /// Decoded body bytes not yet parsed into events.
    body: String,
    /// Raw bytes not yet decoded from chunks.
    raw: Vec<u8>,
    /// The last chunk, of size 0, has arrived.
    ended: bool,
}

impl EventStream {
    async fn open(addr: SocketAddr, token: &str, last_event_id: Option<u64>) -> EventStream {
        let mut head =
            format!("GET /v1/events?token={token} HTTP/1.1\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        let (stream, status, headers) = request(addr, &head, "").await;
        assert_eq!(status, 200, "{headers}");
        assert!(headers.contains("text/event-stream"), "{headers}");
        assert!(headers.contains("chunked"), "{headers}");
        EventStream {
            stream,
            body: String::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// Returns the next event's `id` and parsed data. Skips keep-alive comments.
    async fn next(&mut self) -> Option<(u64, ServerFrame)> {
        loop {
            if let Some(end) = self.body.find("\n\n") {
                let block: String = self.body.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().parse().expect("numeric id"));
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data = Some(value.trim_start().to_owned());
                    }
                }
                let Some(data) = data else {
                    continue;
                };
                let frame = serde_json::from_str(&data)
                    .unwrap_or_else(|error| panic!("event data {data} is not JSON: {error}"));
                return Some((id.expect("every event has an id"), frame));
            }
            if self.ended {
                return None;
            }
            if !self.decode_chunk() && !self.read_more().await {
                return None;
            }
        }
    }

    /// Moves one complete chunk from `raw` to `body`. Returns false if none is complete.
    fn decode_chunk(&mut self) -> bool {
        let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size_text = std::str::from_utf8(&self.raw[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        let start = line_end + 2;
        if size == 0 {
            self.ended = true;
            return true;
        }
        if self.raw.len() < start + size + 2 {
            return false;
        }
        let chunk = String::from_utf8(self.raw[start..start + size].to_vec()).expect("UTF-8");
        self.body.push_str(&chunk);
        self.raw.drain(..start + size + 2);
        true
    }

    async fn read_more(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut buffer))
            .await
            .expect("no event in time")
            .unwrap_or(0);
        self.raw.extend_from_slice(&buffer[..read]);
        read > 0
    }
}

#[tokio::test]
async fn sse_reconnect_resumes_from_last_event_id() {
    let server = TestServer::start(loopback_config()).await;
    let addr = server.http_addr;
    let mut ada = server.connect().await;
    ada.join("demo", "Ada").await;

    // Grace joins over SSE: the POST returns the token, the stream starts with `joined`.
    let (status, body) = post(
        addr,
        "/v1/send",
        r#"{"type":"join","id":"j1","room":"demo","name":"Grace"}"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let token = body["resumeToken"]
        .as_str()
        .expect("resumeToken")
        .to_owned();

    // Every stream starts with `resumed`, here from sequence number 0.
    let mut events = EventStream::open(addr, &token, None).await;
    let (id, resumed) = events.next().await.expect("resumed");
    assert_eq!(id, 0);
    assert!(
        matches!(
            resumed.message,
            ServerMessage::Resumed { resumed: true, .. }
        ),
        "{resumed:?}"
    );
    let (id, joined) = events.next().await.expect("joined");
    assert_eq!(id, 1);
    assert_eq!(joined.seq, Some(1));
    assert_eq!(joined.request_id.as_deref(), Some("j1"));
    assert!(matches!(joined.message, ServerMessage::Joined { .. }));
    let grace_id = match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => participant.id,
        other => panic!("expected participant_joined, got {other:?}"),
    };

    // The stream drops; Lin joins meanwhile.
    drop(events);
    let mut lin = server.connect().await;
    let (lin_id, _) = lin.join("demo", "Lin").await;
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined for lin, not {other:?}"),
    }

    // The reconnect sends Last-Event-ID: 1 and gets `resumed`, then message 2.
    let mut events = EventStream::open(addr, &token, Some(1)).await;
    let (_, resumed) = events.next().await.expect("resumed");
    assert!(
        matches!(
            resumed.message,
            ServerMessage::Resumed { resumed: true, .. }
        ),
        "{resumed:?}"
    );
    let (id, missed) = events.next().await.expect("missed message");
    assert_eq!(id, 2);

    // The reconnect counts as a resume in the metrics. The counter is shared by every test in
    // this process, so it is only checked to be at least 1.
    let head = "GET /metrics HTTP/1.1\r\nConnection: close\r\n";
    let (mut metrics, status, _) = request(addr, head, "").await;
    assert_eq!(status, 200);
    let mut text = String::new();
    tokio::time::timeout(WAIT, metrics.read_to_string(&mut text))
        .await
        .expect("metrics in time")
        .expect("read metrics");
    let resumed: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("switchyard_resumes_total{result=\"resumed\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resumed counter in\n{text}"));
    assert!(resumed >= 1.0, "resumes: {resumed}");
    assert!(
        matches!(&missed.message, ServerMessage::ParticipantJoined { participant } if participant.id == lin_id),
        "{missed:?}"
    );

    // Requests go by POST with the token, and their replies come on the stream.
    let path = format!("/v1/send?token={token}");
    let (status, body) = post(
        addr,
        &path,
        r#"[{"type":"ack","seq":2},{"type":"leave","id":"l1"}]"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (id, ok) = events.next().await.expect("ok");
    assert_eq!(id, 3);
    assert_eq!(ok.request_id.as_deref(), Some("l1"));
    assert_eq!(ok.message, ServerMessage::Ok);
    assert!(events.next().await.is_none(), "stream goes on after leave");

    // Ada saw Grace leave once, and only now.
    assert_eq!(
        ada.recv().await,
        ServerMessage::ParticipantLeft {
            participant_id: grace_id
        }
    );

    // The token is gone with the session.
    let (status, body) = post(addr, &path, r#"{"type":"ack","seq":3}"#).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("session_not_found"), "{body}");

    drop((ada, lin));
    server.stop().await;
}
