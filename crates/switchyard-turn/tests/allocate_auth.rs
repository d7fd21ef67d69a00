//! Allocate over UDP, TCP and TLS with both integrity algorithms.

mod support;

use rtc_stun::attributes::ATTR_XORMAPPED_ADDRESS;
use rtc_stun::message::{Message, MessageType, CLASS_REQUEST, METHOD_BINDING};
use support::*;

#[tokio::test]
async fn sha1_allocate_over_udp() {
    let server = start(loopback_config()).await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    let relayed = client.allocate().await.expect("allocation");
    assert_eq!(
        relayed.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert!((49152..=65535).contains(&relayed.port()));
    let nonce = client.nonce.clone().unwrap();
    assert!(nonce.starts_with("obMatJos2wAAA"), "{nonce}");
    assert_eq!(server.counters().snapshot().allocations, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn sha256_userhash_allocate_over_tcp() {
    let server = start(loopback_config()).await;
    let mut client = TestClient::tcp(server.tcp_addrs()[0]).await;
    client.mode = AuthMode::Sha256Userhash;
    client.allocate().await.expect("allocation");
    assert_eq!(client.refresh(1200).await, Ok(1200));
    server.shutdown().await;
}

#[tokio::test]
async fn allocate_over_tls() {
    let cert = TestCert::generate("allocate");
    let mut config = loopback_config();
    config.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls_cert = Some(cert.cert_path.clone());
    config.tls_key = Some(cert.key_path.clone());
    let server = start(config).await;
    let mut client = TestClient::tls(server.tls_addrs()[0], &cert).await;
    client.allocate().await.expect("allocation over TLS");
    let mut sha256 = TestClient::tls(server.tls_addrs()[0], &cert).await;
    sha256.mode = AuthMode::Sha256Userhash;
    sha256
        .allocate()
        .await
        .expect("SHA-256 allocation over TLS");
    assert_eq!(server.counters().snapshot().allocations, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_rejected() {
    let server = start(loopback_config()).await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.password = "guess".to_owned();
    assert_eq!(client.allocate().await, Err(401));
    assert_eq!(server.counters().snapshot().auth_failures_total, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn binding_on_every_listener() {
    let cert = TestCert::generate("binding");
    let mut config = loopback_config();
    config.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls_cert = Some(cert.cert_path.clone());
    config.tls_key = Some(cert.key_path.clone());
    let server = start(config).await;
    let clients = [
        TestClient::udp(server.udp_addrs()[0]).await,
        TestClient::tcp(server.tcp_addrs()[0]).await,
        TestClient::tls(server.tls_addrs()[0], &cert).await,
    ];
    for mut client in clients {
        let mut request = Message::new();
        request.set_type(MessageType::new(METHOD_BINDING, CLASS_REQUEST));
        request.new_transaction_id().unwrap();
        request.write_header();
        let response = client.transact(&request).await;
        assert_eq!(error_code(&response), None);
        let mapped = xor_address(&response, ATTR_XORMAPPED_ADDRESS);
        assert_eq!(
            mapped.ip(),
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
        if let Some(local) = client.local_addr() {
            assert_eq!(mapped, local);
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn stale_nonce_is_replaced() {
    let server = start(loopback_config()).await;
    let mut client = TestClient::udp(server.udp_addrs()[0]).await;
    client.nonce = Some("obMatJos2wAAA1.not-issued-by-this-server".to_owned());
    let message = client.build(
        rtc_stun::message::METHOD_ALLOCATE,
        &[&rtc_turn::proto::reqtrans::RequestedTransport {
            protocol: rtc_turn::proto::PROTO_UDP,
        }],
    );
    let response = client.transact(&message).await;
    assert_eq!(error_code(&response), Some(438));
    assert_eq!(error_reason(&response), "Stale Nonce");
    client.take_nonce(&response);
    client
        .allocate()
        .await
        .expect("allocation with the fresh nonce");
    server.shutdown().await;
}
