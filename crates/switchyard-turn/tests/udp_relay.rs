//! Relaying between a client and a UDP peer on loopback with channels and indications.

mod support;

use rtc_stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use rtc_stun::message::{Message, METHOD_DATA};
use support::*;

#[tokio::test]
async fn channel_data_relays_both_ways() {
    let server = start(loopback_config()).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    let relayed = client.allocate().await.unwrap();
    client.channel_bind(0x4001, peer_addr).await.unwrap();

    client
        .send_raw(&[0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .await;
    let (payload, from) = peer_recv(&peer).await;
    assert_eq!(payload, b"hello");
    assert_eq!(from, relayed);

    peer.send_to(b"pong", relayed).await.unwrap();
    let message = client.recv_raw().await;
    assert_eq!(message, [0x40, 0x01, 0x00, 0x04, b'p', b'o', b'n', b'g']);

    let snapshot = server.counters().snapshot();
    assert_eq!(snapshot.relayed_to_peer.udp.packets, 1);
    assert_eq!(snapshot.relayed_to_peer.udp.bytes, 5);
    assert_eq!(snapshot.relayed_to_client.udp.bytes, 4);
    assert_eq!(snapshot.channels, 1);
    assert_eq!(snapshot.permissions, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn send_and_data_indications() {
    let server = start(loopback_config()).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();
    let mut client = TestClient::tcp(server.tcp_addrs()[0]).await;
    let relayed = client.allocate().await.unwrap();

    peer.send_to(b"too early", relayed).await.unwrap();
    client.create_permission(peer_addr).await.unwrap();
    client.send_indication(peer_addr, b"via send").await;
    let (payload, _) = peer_recv(&peer).await;
    assert_eq!(payload, b"via send");

    peer.send_to(b"via data", relayed).await.unwrap();
    let bytes = client.recv_raw().await;
    let mut message = Message::new();
    message.unmarshal_binary(&bytes).unwrap();
    assert_eq!(message.typ.method, METHOD_DATA);
    assert_eq!(message.get(ATTR_DATA).unwrap(), b"via data");
    assert_eq!(xor_address(&message, ATTR_XOR_PEER_ADDRESS), peer_addr);
    server.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_drops_excess() {
    let mut config = loopback_config();
    config.max_bytes_per_second = 1000;
    let server = start(config).await;
    let peer = udp_peer().await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.allocate().await.unwrap();
    client
        .channel_bind(0x4000, peer.local_addr().unwrap())
        .await
        .unwrap();
    let mut frame = vec![0x40, 0x00, 0x01, 0x90];
    frame.resize(4 + 400, 7);
    for _ in 0..10 {
        client.send_raw(&frame).await;
    }
    let mut received = 0;
    let mut buf = vec![0; 2048];
    while let Ok(Ok(_)) = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        peer.recv_from(&mut buf),
    )
    .await
    {
        received += 1;
    }
    // A full bucket contains 1000 bytes: two payloads, plus whatever refilled while sending.
    assert!(
        (2..10).contains(&received),
        "{received} of 10 datagrams passed the cap"
    );
    server.shutdown().await;
}
