//! ChannelData over TCP and TLS: padding, several frames per read and frames split across
//! reads.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::net::UdpSocket;

const FIXTURE: &str = include_str!("../../../tests/fixtures/turn/channeldata-over-tcp.hex");

async fn bound_client(client: &mut TestClient, peer: &UdpSocket) -> SocketAddr {
    let relayed = client.allocate().await.unwrap();
    client
        .channel_bind(0x4000, peer.local_addr().unwrap())
        .await
        .unwrap();
    relayed
}

async fn check_stream(mut client: TestClient) {
    let fixture = hex_fixture(FIXTURE);
    let (_, padded_frame) = &fixture[0];
    let (_, two_frames) = &fixture[1];
    let peer = udp_peer().await;
    let relayed = bound_client(&mut client, &peer).await;

    client.send_raw(padded_frame).await;
    let (payload, _) = peer_recv(&peer).await;
    assert_eq!(
        payload,
        padded_frame[4..17],
        "the peer gets the 13 payload bytes only"
    );

    client.send_raw(two_frames).await;
    assert_eq!(peer_recv(&peer).await.0, two_frames[4..17]);
    assert_eq!(peer_recv(&peer).await.0, [1, 2, 3, 4, 5, 6, 7, 8]);

    for chunk in two_frames.chunks(3) {
        client.send_raw(chunk).await;
    }
    assert_eq!(peer_recv(&peer).await.0, two_frames[4..17]);
    assert_eq!(peer_recv(&peer).await.0, [1, 2, 3, 4, 5, 6, 7, 8]);

    let datagram = &padded_frame[4..17];
    peer.send_to(datagram, relayed).await.unwrap();
    let message = client.recv_raw().await;
    let mut expected = vec![0x40, 0x00, 0x00, 0x0d];
    expected.extend_from_slice(datagram);
    expected.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        message, expected,
        "header, 13 bytes and three zero bytes of padding"
    );
}

#[tokio::test]
async fn channel_data_over_tcp() {
    let server = start(loopback_config()).await;
    check_stream(TestClient::tcp(server.tcp_addrs()[0]).await).await;
    let snapshot = server.counters().snapshot();
    assert_eq!(snapshot.relayed_to_peer.tcp.packets, 5);
    assert_eq!(snapshot.relayed_to_peer.tcp.bytes, 13 * 3 + 8 * 2);
    assert_eq!(snapshot.relayed_to_client.tcp.bytes, 13);
    server.shutdown().await;
}

#[tokio::test]
async fn channel_data_over_tls() {
    let cert = TestCert::generate("channel-data");
    let mut config = loopback_config();
    config.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls_cert = Some(cert.cert_path.clone());
    config.tls_key = Some(cert.key_path.clone());
    let server = start(config).await;
    check_stream(TestClient::tls(server.tls_addrs()[0], &cert).await).await;
    assert_eq!(
        server.counters().snapshot().relayed_to_client.tls.packets,
        1
    );
    server.shutdown().await;
}
