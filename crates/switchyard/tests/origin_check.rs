//! With allowed origins configured, a request whose `Origin` is not in the list gets HTTP 403
//! with `origin_not_allowed` before any upgrade, on `/v1/ws` and on both SSE endpoints, and a
//! request from an allowed origin proceeds.

mod common;

use std::net::SocketAddr;

use common::{loopback_config, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ALLOWED: &str = "https://app.example";

/// Sends one HTTP/1.1 request and returns the status code, the headers and the body, read up
/// to `Content-Length` (none for a 101 response, which has no body).
async fn request(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let text = format!(
        "{head}Host: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.expect("write");

    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("response headers in time")
            .expect("read");
        assert_eq!(read, 1, "connection closed inside the headers");
        response.push(byte[0]);
    }
    let headers = String::from_utf8(response).expect("headers are UTF-8");
    let status: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {headers:?}"));
    let length = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tokio::time::timeout(WAIT, stream.read_exact(&mut body))
        .await
        .expect("response body in time")
        .expect("read body");
    (status, headers + &String::from_utf8_lossy(&body))
}

fn upgrade_head(origin: Option<&str>) -> String {
    let mut head = String::from(
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    if let Some(origin) = origin {
        head.push_str(&format!("Origin: {origin}\r\n"));
    }
    head
}

#[tokio::test]
async fn rejected_origin_gets_forbidden() {
    let config = switchyard::ServerConfig {
        allowed_origins: vec![ALLOWED.to_owned()],
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let addr = server.http_addr;
    let join = r#"{"type":"join","room":"demo","name":"Ada"}"#;
    let origin = "Origin: https://evil.example\r\n";

    let cases = [
        ("upgrade", upgrade_head(Some("https://evil.example")), ""),
        ("upgrade without Origin", upgrade_head(None), ""),
        (
            "send",
            format!("POST /v1/send HTTP/1.1\r\nContent-Type: application/json\r\n{origin}"),
            join,
        ),
        (
            "events",
            format!("GET /v1/events?token=00 HTTP/1.1\r\nAccept: text/event-stream\r\n{origin}"),
            "",
        ),
    ];
    for (name, head, body) in cases {
        let (status, response) = request(addr, &head, body).await;
        assert_eq!(status, 403, "{name}: {response}");
        assert!(
            response.contains("origin_not_allowed"),
            "{name}: {response}"
        );
    }

    // The allowed origin gets the upgrade and a session over SSE.
    let (status, response) = request(addr, &upgrade_head(Some(ALLOWED)), "").await;
    assert_eq!(status, 101, "{response}");
    let head = format!(
        "POST /v1/send HTTP/1.1\r\nContent-Type: application/json\r\nOrigin: {ALLOWED}\r\n"
    );
    let (status, response) = request(addr, &head, join).await;
    assert_eq!(status, 202, "{response}");

    server.stop().await;
}
