//! The bundled TURN relay: its URLs and each participant's credentials in `joined.iceServers`,
//! running without it, and its sockets after shutdown.

mod common;

use std::net::UdpSocket;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{loopback_config, TestServer};
use switchyard::ServerConfig;
use switchyard_proto::{IceServer, ServerMessage};

const SECRET: &str = "relay-test-secret";

fn config_with_secret() -> ServerConfig {
    let mut config = loopback_config();
    let turn = config
        .turn
        .as_mut()
        .expect("loopback_config enables the relay");
    turn.static_auth_secrets = vec![SECRET.into()];
    config.ice_servers = vec!["stun:127.0.0.1:3478".into()];
    config
}

/// Returns base64(HMAC-SHA1(secret, username)), the password of coturn's `static-auth-secret`
/// scheme, computed here without the server's code.
fn expected_password(secret: &str, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

async fn join(server: &TestServer, name: &str) -> (String, Vec<IceServer>) {
    let mut client = server.connect().await;
    client
        .send_json(serde_json::json!({"type": "join", "room": "relay", "name": name}))
        .await;
    match client.recv().await {
        ServerMessage::Joined {
            participant_id,
            ice_servers,
            ..
        } => (participant_id, ice_servers),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn joined_carries_relay_credentials() {
    let server = TestServer::start(config_with_secret()).await;
    let addrs = server.relay_addrs.clone().expect("the relay is running");
    let (participant_id, ice_servers) = join(&server, "Ada").await;

    assert_eq!(ice_servers.len(), 2, "{ice_servers:?}");
    let relay = &ice_servers[0];
    let expected_urls = [
        format!("turn:127.0.0.1:{}?transport=udp", addrs.udp[0].port()),
        format!("turn:127.0.0.1:{}?transport=tcp", addrs.tcp[0].port()),
    ];
    assert_eq!(relay.urls, expected_urls);
    assert_eq!(ice_servers[1].urls, ["stun:127.0.0.1:3478"]);
    assert_eq!(ice_servers[1].username, None);

    let username = relay
        .username
        .as_deref()
        .expect("the relay entry has a username");
    let (expiry, user) = username
        .split_once(':')
        .expect("the username is <expiry>:<user>");
    assert_eq!(user, participant_id);
    let expiry: u64 = expiry.parse().expect("the expiry is a unix time");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry > now, "expiry {expiry} is not after {now}");

    let password = relay
        .credential
        .as_deref()
        .expect("the relay entry has a credential");
    assert_eq!(password, expected_password(SECRET, username));
    server.stop().await;
}

#[tokio::test]
async fn other_relays_share_the_credentials() {
    let other = "turn:127.0.0.2:3478?transport=udp";
    let config = ServerConfig {
        turn_urls: vec![other.into()],
        ..config_with_secret()
    };
    let server = TestServer::start(config).await;
    let (_, ice_servers) = join(&server, "Ada").await;

    let relay = &ice_servers[0];
    assert_eq!(relay.urls.len(), 3, "{relay:?}");
    assert_eq!(relay.urls[2], other);
    let username = relay.username.as_deref().unwrap();
    assert_eq!(
        relay.credential.as_deref(),
        Some(expected_password(SECRET, username).as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn each_participant_gets_own_credentials() {
    let server = TestServer::start(config_with_secret()).await;
    let (ada_id, ada_servers) = join(&server, "Ada").await;
    let (grace_id, grace_servers) = join(&server, "Grace").await;

    let ada_username = ada_servers[0].username.clone().unwrap();
    let grace_username = grace_servers[0].username.clone().unwrap();
    assert!(
        ada_username.ends_with(&format!(":{ada_id}")),
        "{ada_username}"
    );
    assert!(
        grace_username.ends_with(&format!(":{grace_id}")),
        "{grace_username}"
    );
    assert_ne!(ada_servers[0].credential, grace_servers[0].credential);
    server.stop().await;
}

#[tokio::test]
async fn generated_secret_signs_credentials() {
    // No static-auth-secrets: the server generates one, so the password cannot be checked
    // against a known secret, only for its shape.
    let server = TestServer::start(loopback_config()).await;
    let (_, ice_servers) = join(&server, "Ada").await;

    assert_eq!(ice_servers.len(), 1, "{ice_servers:?}");
    let password = ice_servers[0].credential.as_deref().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(password)
        .expect("the password is base64");
    assert_eq!(decoded.len(), 20, "an HMAC-SHA1 tag has 20 bytes");
    server.stop().await;
}

#[tokio::test]
async fn no_turn_lists_only_configured_servers() {
    let config = ServerConfig {
        turn: None,
        ..config_with_secret()
    };
    let server = TestServer::start(config).await;
    assert_eq!(server.relay_addrs, None);

    let (_, ice_servers) = join(&server, "Ada").await;
    assert_eq!(
        ice_servers,
        [IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        }]
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_releases_relay_ports() {
    let server = TestServer::start(loopback_config()).await;
    let addrs = server.relay_addrs.clone().unwrap();
    server.stop().await;

    for addr in &addrs.udp {
        UdpSocket::bind(addr).unwrap_or_else(|error| panic!("UDP {addr} still in use: {error}"));
    }
    for addr in &addrs.tcp {
        std::net::TcpListener::bind(addr)
            .unwrap_or_else(|error| panic!("TCP {addr} still in use: {error}"));
    }
}
