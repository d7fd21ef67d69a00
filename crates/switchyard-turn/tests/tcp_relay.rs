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

#[tokio::test]
async fn inbound_peer_connection_relays_bytes() {
    let server = start(loopback_config()).await;
    let mut control = TestClient::tcp(server.tcp_addrs()[0]).await;
    let relayed = control.allocate_tcp().await.unwrap();

    let peer_socket = tokio::net::TcpSocket::new_v4().unwrap();
    peer_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let peer_addr = peer_socket.local_addr().unwrap();
    control.create_permission(peer_addr).await.unwrap();
    let mut peer = peer_socket.connect(relayed).await.unwrap();
    peer.write_all(b"early bytes").await.unwrap();

    let attempt = control.recv_raw().await;
    let mut message = rtc_stun::message::Message::new();
    message.unmarshal_binary(&attempt).unwrap();
    assert_eq!(
        message.typ.method,
        rtc_stun::message::METHOD_CONNECTION_ATTEMPT
    );
    assert_eq!(
        xor_address(&message, rtc_stun::attributes::ATTR_XOR_PEER_ADDRESS),
        peer_addr
    );
    let id = message
        .get(rtc_stun::attributes::ATTR_CONNECTION_ID)
        .unwrap();

    let mut data = TestClient::tcp(server.tcp_addrs()[0]).await;
    data.nonce = control.nonce.clone();
    let setter = rtc_stun::attributes::RawAttribute {
        typ: rtc_stun::attributes::ATTR_CONNECTION_ID,
        length: 4,
        value: id,
    };
    let response = data
        .request(rtc_stun::message::METHOD_CONNECTION_BIND, &[&setter])
        .await;
    assert_eq!(error_code(&response), None);

    let mut received = Vec::new();
    while received.len() < 11 {
        received.extend_from_slice(&data.recv_raw_bytes().await);
    }
    assert_eq!(received, b"early bytes");
    data.send_raw(b"to peer").await;
    let mut buf = [0; 7];
    tokio::time::timeout(TIMEOUT, peer.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"to peer");
    peer.write_all(b"to client").await.unwrap();
    let mut received = Vec::new();
    while received.len() < 9 {
        received.extend_from_slice(&data.recv_raw_bytes().await);
    }
    assert_eq!(received, b"to client");
    server.shutdown().await;
}
