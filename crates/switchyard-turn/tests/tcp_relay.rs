//! TCP relays (RFC 6062): Connect, ConnectionBind and raw data both ways.

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn connect_and_bind_relays_bytes() {
    let server = start(loopback_config()).await;
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer_listener.local_addr().unwrap();

    let mut control = TestClient::tcp(server.tcp_addrs()[0]).await;
    let relayed = control.allocate_tcp().await.unwrap();
    let connection = control.connect(peer_addr).await.unwrap();
    let (mut peer, from) = tokio::time::timeout(TIMEOUT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, relayed, "the peer sees the relayed address");

    let mut data = TestClient::tcp(server.tcp_addrs()[0]).await;
    data.nonce = control.nonce.clone();
    let id = connection.to_be_bytes();
    let setter = rtc_stun::attributes::RawAttribute {
        typ: rtc_stun::attributes::ATTR_CONNECTION_ID,
        length: 4,
        value: id.to_vec(),
    };
    let response = data
        .request(rtc_stun::message::METHOD_CONNECTION_BIND, &[&setter])
        .await;
    assert_eq!(error_code(&response), None);

    data.send_raw(b"from client").await;
    let mut buf = [0; 11];
    tokio::time::timeout(TIMEOUT, peer.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"from client");

    peer.write_all(b"from peer").await.unwrap();
    let mut received = Vec::new();
    while received.len() < 9 {
        let chunk = data.recv_raw_bytes().await;
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b"from peer");
    server.shutdown().await;
}
