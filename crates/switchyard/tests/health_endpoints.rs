//! `GET /healthz`, `GET /readyz` and `GET /metrics` on the main HTTP listener: readiness turns
//! to 503 while the server drains and after shutdown starts, liveness stays 200, and the
//! metrics include the bundled relay's series.

mod common;

use std::net::SocketAddr;

use common::{loopback_config, WAIT};
use switchyard::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one GET request and returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to HTTP");
    let request = format!("GET {path} HTTP/1.1\r\nHost: switchyard\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("the response ends in time")
        .expect("read the response");
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

#[tokio::test]
async fn readiness_follows_draining() {
    let shutdown = CancellationToken::new();
    let server = switchyard::run(loopback_config(), shutdown.clone())
        .await
        .expect("the server starts");
    let addr = server.http_addr();

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);

    server.readiness().start_draining();
    assert_eq!(get(addr, "/readyz").await, (503, "draining\n".to_owned()));
    assert_eq!(get(addr, "/healthz").await.0, 200);

    shutdown.cancel();
    tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("the server stops")
        .expect("the server stops without an error");
}

#[tokio::test]
async fn metrics_include_bundled_relay() {
    let shutdown = CancellationToken::new();
    let server = switchyard::run(loopback_config(), shutdown.clone())
        .await
        .expect("the server starts");

    let (status, body) = get(server.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "switchyard_turn_allocations 0",
        "switchyard_sfu_rtp_forwarded_packets_total 0",
        "switchyard_rooms 0",
    ] {
        assert!(
            body.lines().any(|candidate| candidate == line),
            "missing {line:?} in:\n{body}"
        );
    }

    shutdown.cancel();
    tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("the server stops")
        .expect("the server stops without an error");
}
