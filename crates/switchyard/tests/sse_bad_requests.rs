//! Malformed requests to the SSE endpoints get the documented JSON `error` body and status,
//! not a plain-text framework message: a body over the framework's limit, a body that is not
//! UTF-8, and query strings that do not parse.

mod common;

use std::net::SocketAddr;

use common::{loopback_config, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a raw HTTP/1.1 request (head lines without the final blank line, then `body`) and
/// returns the status code and the response body. The body is written while the response is
/// read, because the server may answer and close before it has read the whole body; a reset
/// after the response is ignored.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect to HTTP");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("{head}\r\nHost: switchyard\r\nConnection: close\r\n\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });

    let mut response = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(length) => response.extend_from_slice(&chunk[..length]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the response ends in time");
    drop(write.await);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Returns the `code` of a JSON `error` body, failing when the body is not one.
fn error_code(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: not JSON: {body:?}"));
    assert_eq!(value["type"], "error", "{body}");
    value["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn huge_body_gets_json_413() {
    let server = TestServer::start(loopback_config()).await;
    // Over the HTTP layer's body limit (2 MiB), not only over the message size limit.
    let huge = vec![b'a'; 3 << 20];
    let head = format!(
        "POST /v1/send HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        huge.len()
    );
    let (status, body) = request(server.http_addr, &head, &huge).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "message_too_large");
    server.stop().await;
}

#[tokio::test]
async fn non_utf8_body_gets_json_400() {
    let server = TestServer::start(loopback_config()).await;
    let (status, body) = request(
        server.http_addr,
        "POST /v1/send HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2",
        &[0xff, 0xfe],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_message");
    server.stop().await;
}

#[tokio::test]
async fn bad_query_gets_json_400() {
    let server = TestServer::start(loopback_config()).await;
    let cases = [
        "GET /v1/events?token=x&lastSeq=abc HTTP/1.1",
        "GET /v1/events?token=x&lastSeq=18446744073709551616 HTTP/1.1",
        "POST /v1/send?lastSeq=-1 HTTP/1.1\r\nContent-Length: 0",
    ];
    for head in cases {
        let (status, body) = request(server.http_addr, head, b"").await;
        assert_eq!(status, 400, "{head}: {body}");
        assert_eq!(error_code(&body), "invalid_message", "{head}");
    }
    server.stop().await;
}
