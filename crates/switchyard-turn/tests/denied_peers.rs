//! The default peer policy against a real server.

mod support;

use std::net::SocketAddr;

use rtc_turn::proto::reqfamily::REQUESTED_FAMILY_IPV6;
use rtc_turn::proto::PROTO_UDP;
use support::*;

const DENIED: &str = include_str!("../../../tests/fixtures/turn/denied-peers.txt");

fn denied_peers() -> Vec<SocketAddr> {
    DENIED
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().parse().unwrap())
        .collect()
}

/// IPv4 addresses and IPv4-mapped IPv6 addresses go to an IPv4 relay, the rest to an IPv6
/// one.
fn is_v4(peer: &SocketAddr) -> bool {
    match peer {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
    }
}

#[tokio::test]
async fn every_fixture_peer_is_forbidden() {
    let mut config = loopback_config();
    config.allowed_peer_ranges.clear();
    config.relay_ipv6 = Some("::1".parse().unwrap());
    let server = start(config).await;
    let mut v4 = TestClient::udp(server.udp_addrs()[0]).await;
    v4.allocate().await.unwrap();
    let mut v6 = TestClient::tcp(server.tcp_addrs()[0]).await;
    let family = REQUESTED_FAMILY_IPV6;
    let relayed = v6.allocate_with(PROTO_UDP, &[&family]).await.unwrap();
    assert!(relayed.is_ipv6());

    let peers = denied_peers();
    assert_eq!(peers.len(), 16);
    for peer in &peers {
        let client = if is_v4(peer) { &mut v4 } else { &mut v6 };
        assert_eq!(
            client.create_permission(*peer).await,
            Err(403),
            "CreatePermission {peer}"
        );
        assert_eq!(
            client.channel_bind(0x4000, *peer).await,
            Err(403),
            "ChannelBind {peer}"
        );
        client.send_indication(*peer, b"x").await;
    }
    let mut tcp = TestClient::tcp(server.tcp_addrs()[0]).await;
    tcp.allocate_tcp().await.unwrap();
    for peer in peers.iter().filter(|peer| is_v4(peer)) {
        assert_eq!(tcp.connect(*peer).await, Err(403), "Connect {peer}");
    }

    // Send indications have no response; a Binding round trip orders them before the count.
    let mut probe = TestClient::udp(server.udp_addrs()[0]).await;
    probe.allocate().await.unwrap();
    let expected = peers.len() as u64 * 3 + peers.iter().filter(|peer| is_v4(peer)).count() as u64;
    let mut counted = 0;
    for _ in 0..50 {
        counted = server.counters().snapshot().denied_peers_total;
        if counted == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counted, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn allowed_address_opens_one_peer() {
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();
    let mut config = loopback_config();
    config.allowed_peer_ranges.clear();
    config.allowed_peer_addresses = vec![peer_addr];
    let server = start(config).await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.allocate().await.unwrap();
    assert_eq!(client.create_permission(peer_addr).await, Ok(()));
    let other = SocketAddr::new(peer_addr.ip(), peer_addr.port().wrapping_add(1));
    assert_eq!(client.create_permission(other).await, Err(403));
    assert_eq!(
        client.create_permission(server.udp_addrs()[0]).await,
        Err(403)
    );
    server.shutdown().await;
}
