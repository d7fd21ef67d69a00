//! Refresh, deletion, quotas, relay port exhaustion and credential expiry.

mod support;

use std::time::{Duration, SystemTime};

use rtc_stun::attributes::{ATTR_EVEN_PORT, ATTR_XOR_RELAYED_ADDRESS};
use rtc_stun::message::METHOD_ALLOCATE;
use support::*;
use switchyard_turn::mint_credentials;

#[tokio::test]
async fn refresh_with_lifetime_zero_releases_the_relay() {
    let server = start(loopback_config()).await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    let relayed = client.allocate().await.unwrap();
    assert_eq!(client.refresh(0).await, Ok(0));
    assert_eq!(server.counters().snapshot().allocations, 0);
    assert_eq!(client.refresh(600).await, Err(437));

    // The relay socket is closed, so its port can be bound again.
    let mut rebound = None;
    for _ in 0..50 {
        if let Ok(socket) = std::net::UdpSocket::bind(relayed) {
            rebound = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rebound.is_some(), "relay port {relayed} is still bound");
    server.shutdown().await;
}

#[tokio::test]
async fn user_quota_is_enforced() {
    let mut config = loopback_config();
    config.user_quota = 1;
    let server = start(config).await;
    let mut first = TestClient::udp(server.udp_addrs()[0]).await;
    first.allocate().await.unwrap();
    let mut second = TestClient::udp(server.udp_addrs()[0]).await;
    assert_eq!(second.allocate().await, Err(486));
    assert_eq!(server.counters().snapshot().quota_rejections_total, 1);
    first.refresh(0).await.unwrap();
    second
        .allocate()
        .await
        .expect("quota freed by the deletion");
    server.shutdown().await;
}

#[tokio::test]
async fn total_quota_is_enforced() {
    let mut config = loopback_config();
    config.total_quota = 2;
    config.user_quota = 0;
    let server = start(config).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = TestClient::tcp(server.tcp_addrs()[0]).await;
        client.allocate().await.unwrap();
        clients.push(client);
    }
    let mut third = TestClient::tcp(server.tcp_addrs()[0]).await;
    assert_eq!(third.allocate().await, Err(486));
    drop(clients.pop());
    let mut freed = false;
    for _ in 0..50 {
        if server.counters().snapshot().allocations == 1 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "closing a TCP client deletes its allocation");
    third
        .allocate()
        .await
        .expect("quota freed by the closed connection");
    server.shutdown().await;
}

#[tokio::test]
async fn exhausted_relay_ports_are_508() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = loopback_config();
    config.min_port = port;
    config.max_port = port;
    config.user_quota = 0;
    let server = start(config).await;
    let mut first = TestClient::udp(server.udp_addrs()[0]).await;
    assert_eq!(first.allocate().await.map(|addr| addr.port()), Ok(port));
    let mut second = TestClient::udp(server.udp_addrs()[0]).await;
    assert_eq!(second.allocate().await, Err(508));
    server.shutdown().await;
}

#[tokio::test]
async fn time_limited_credentials_expire() {
    let mut config = loopback_config();
    config.users.clear();
    config.static_auth_secrets = vec!["current".to_owned(), "previous".to_owned()];
    let server = start(config).await;
    let now = SystemTime::now();

    for secret in ["current", "previous"] {
        let credentials = mint_credentials(secret, "bob", now, Duration::from_secs(3600));
        let mut client = TestClient::udp(server.udp_addrs()[0]).await;
        client.username = credentials.username.clone();
        client.password = credentials.password.clone();
        client
            .allocate()
            .await
            .unwrap_or_else(|code| panic!("secret {secret}: {code}"));
    }

    let expired = mint_credentials(
        "current",
        "bob",
        now - Duration::from_secs(7200),
        Duration::from_secs(3600),
    );
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.username = expired.username.clone();
    client.password = expired.password.clone();
    assert_eq!(client.allocate().await, Err(401));

    let unknown_secret = mint_credentials("other", "bob", now, Duration::from_secs(3600));
    client.username = unknown_secret.username;
    client.password = unknown_secret.password;
    assert_eq!(client.allocate().await, Err(401));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_listener_ports() {
    let server = start(loopback_config()).await;
    let udp = server.udp_addrs()[0];
    let tcp = server.tcp_addrs()[0];
    let mut client = TestClient::udp(udp).await;
    let relayed = client.allocate().await.unwrap();
    server.shutdown().await;
    std::net::UdpSocket::bind(udp).expect("UDP listener port is free");
    std::net::TcpListener::bind(tcp).expect("TCP listener port is free");
    std::net::UdpSocket::bind(relayed).expect("relay port is free");
}

#[tokio::test]
async fn refresh_with_expired_credentials_is_rejected() {
    let mut config = loopback_config();
    config.users.clear();
    config.static_auth_secrets = vec!["current".to_owned()];
    let server = start(config).await;
    let credentials = mint_credentials("current", "bob", SystemTime::now(), Duration::from_secs(1));
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.username = credentials.username.clone();
    client.password = credentials.password.clone();
    client.allocate().await.unwrap();
    // Expiry times have one-second resolution; wait until the expiry second has passed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.refresh(600).await, Err(401));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_with_a_client_that_stopped_reading() {
    let server = start(loopback_config()).await;
    let peer = udp_peer().await;
    let mut client = TestClient::tcp(server.tcp_addrs()[0]).await;
    let relayed = client.allocate().await.unwrap();
    client
        .channel_bind(0x4000, peer.local_addr().unwrap())
        .await
        .unwrap();

    // The client never reads, so its socket buffers and the server's queue fill up.
    let datagram = vec![7; 60_000];
    for round in 0..2000 {
        peer.send_to(&datagram, relayed).await.unwrap();
        if round % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let relayed_bytes = |server: &switchyard_turn::TurnServer| {
        server.counters().snapshot().relayed_to_client.tcp.bytes
    };
    let mut previous = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let current = relayed_bytes(&server);
        if current == previous && current > 0 {
            break;
        }
        previous = current;
    }
    tokio::time::timeout(TIMEOUT, server.shutdown())
        .await
        .expect("shutdown does not wait for a stalled client");
    drop(client);
}

/// EVEN-PORT with the R bit, which `rtc-turn` cannot set from outside its crate.
fn reserve_next_port() -> rtc_stun::attributes::RawAttribute {
    rtc_stun::attributes::RawAttribute {
        typ: ATTR_EVEN_PORT,
        length: 1,
        value: vec![0x80],
    }
}

/// Finds an even port `base` with `base..base + 4` free on 127.0.0.1. Returns it and a socket
/// bound to `base + 1`.
fn free_range_with_next_taken() -> (u16, std::net::UdpSocket) {
    for _ in 0..100 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !3;
        drop(probe);
        if !(1024..=65_530).contains(&base) {
            continue;
        }
        let sockets: Result<Vec<_>, _> = (base..base + 4)
            .map(|port| std::net::UdpSocket::bind(("127.0.0.1", port)))
            .collect();
        if let Ok(mut sockets) = sockets {
            return (base, sockets.swap_remove(1));
        }
    }
    panic!("no four free ports in a row on 127.0.0.1");
}

#[tokio::test]
async fn reservation_skips_taken_odd_port() {
    let (base, _blocker) = free_range_with_next_taken();
    let mut config = loopback_config();
    config.min_port = base;
    config.max_port = base + 3;
    let server = start(config).await;

    let mut first = TestClient::udp(server.udp_addrs()[0]).await;
    let transport = rtc_turn::proto::reqtrans::RequestedTransport {
        protocol: rtc_turn::proto::PROTO_UDP,
    };
    let response = first
        .request(METHOD_ALLOCATE, &[&transport, &reserve_next_port()])
        .await;
    assert_eq!(error_code(&response), None, "{response}");
    let relayed = xor_address(&response, ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(
        relayed.port(),
        base + 2,
        "the pair with a taken odd port is skipped"
    );
    let mut token = rtc_turn::proto::rsrvtoken::ReservationToken::default();
    rtc_stun::message::Getter::get_from(&mut token, &response).expect("RESERVATION-TOKEN");

    // The reserved port is bound by the server, not only marked in its tables.
    let rebind = std::net::UdpSocket::bind(("127.0.0.1", base + 3));
    assert!(
        rebind.is_err(),
        "port {} is not bound by the server",
        base + 3
    );

    let mut second = TestClient::udp(server.udp_addrs()[0]).await;
    let response = second.request(METHOD_ALLOCATE, &[&transport, &token]).await;
    assert_eq!(error_code(&response), None, "{response}");
    let reserved = xor_address(&response, ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(reserved.port(), base + 3);

    // The held socket relays for the second allocation.
    let peer = udp_peer().await;
    second
        .create_permission(peer.local_addr().unwrap())
        .await
        .unwrap();
    second
        .send_indication(peer.local_addr().unwrap(), b"rtcp")
        .await;
    let (payload, from) = peer_recv(&peer).await;
    assert_eq!((payload.as_slice(), from), (&b"rtcp"[..], reserved));
    server.shutdown().await;
}
