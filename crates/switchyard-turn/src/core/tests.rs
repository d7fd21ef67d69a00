//! Protocol rules of the core, driven with a virtual clock.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::stun::*;

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const REALM: &str = "example.org";
const SECRETS: [&str; 2] = ["old-secret", "new-secret"];
const UNIX_START: u64 = 1_700_000_000;
const RELAY_IP: [u8; 4] = [198, 51, 100, 10];
const PEER: &str = "192.0.2.7:5000";
const MALFORMED: &str = include_str!("../../../../tests/fixtures/stun/malformed.hex");
const DENIED_PEERS: &str = include_str!("../../../../tests/fixtures/turn/denied-peers.txt");

/// Attributes of a request under construction.
type Attrs = Vec<(AttrType, Vec<u8>)>;

fn udp_client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        local: "198.51.100.10:3478".parse().unwrap(),
        remote: SocketAddr::from(([203, 0, 113, 5], port)),
    }
}

fn tcp_client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Tcp,
        ..udp_client(port)
    }
}

fn test_config() -> CoreConfig {
    let mut config = TurnConfig {
        realm: REALM.to_owned(),
        min_port: 50000,
        max_port: 50009,
        relay_ip: IpAddr::from(RELAY_IP),
        static_auth_secrets: SECRETS.iter().map(|s| s.to_string()).collect(),
        users: vec![crate::StaticUser {
            name: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }],
        ..TurnConfig::default()
    };
    config.listen_udp = vec!["198.51.100.10:3478".parse().unwrap()];
    CoreConfig::from_turn_config(&config, config.listen_udp.clone(), [7; 32]).unwrap()
}

/// Credentials a test client signs with.
#[derive(Clone)]
struct Creds {
    username: String,
    password: String,
    integrity: Integrity,
    algorithm: PasswordAlgorithm,
    userhash: bool,
}

impl Creds {
    /// Returns time-limited credentials of `user` that expire at `expiry` (Unix seconds),
    /// signed with the first secret.
    fn time_limited(user: &str, expiry: u64) -> Self {
        let username = format!("{expiry}:{user}");
        let password = crate::credentials::password_for(SECRETS[0], &username);
        Creds::sha1(&username, &password)
    }

    fn sha1(username: &str, password: &str) -> Self {
        Creds {
            username: username.to_owned(),
            password: password.to_owned(),
            integrity: Integrity::Sha1,
            algorithm: PasswordAlgorithm::Md5,
            userhash: false,
        }
    }

    fn key(&self) -> LongTermKey {
        LongTermKey::derive(self.algorithm, &self.username, REALM, &self.password)
    }
}

struct Harness {
    core: Core,
    counters: Arc<TurnCounters>,
    start: Instant,
    now: Now,
    out: Vec<u8>,
    nonce: Option<String>,
    next_txid: u8,
}

/// A parsed reply, owning its bytes.
struct Reply(Vec<u8>);

impl Reply {
    fn view(&self) -> MessageView<'_> {
        MessageView::parse(&self.0).expect("reply parses")
    }

    fn class(&self) -> MessageClass {
        self.view().message_type().class
    }

    fn error_code(&self) -> Option<u16> {
        let value = self.view().get(ATTR_ERROR_CODE)?.value.to_vec();
        Some(u16::from(value[2]) * 100 + u16::from(value[3]))
    }

    fn reason(&self) -> String {
        let value = self.view().get(ATTR_ERROR_CODE).unwrap().value.to_vec();
        String::from_utf8(value[4..].to_vec()).unwrap()
    }

    fn attr(&self, typ: AttrType) -> Option<Vec<u8>> {
        self.view().get(typ).map(|a| a.value.to_vec())
    }

    fn address(&self, typ: AttrType) -> SocketAddr {
        let view = self.view();
        decode_xor_address(view.get(typ).unwrap().value, &view.transaction_id()).unwrap()
    }
}

impl Harness {
    fn new() -> Self {
        Self::with_config(test_config())
    }

    fn with_config(config: CoreConfig) -> Self {
        let start = Instant::now();
        let counters = Arc::new(TurnCounters::default());
        Harness {
            core: Core::new(config, counters.clone(), start),
            counters,
            start,
            now: Now {
                instant: start,
                unix_secs: UNIX_START,
            },
            out: Vec::new(),
            nonce: None,
            next_txid: 0,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now.instant += by;
        self.now.unix_secs += by.as_secs();
        self.core.handle_timeout(self.now.instant);
    }

    fn txid(&mut self) -> [u8; 12] {
        self.next_txid += 1;
        [self.next_txid; 12]
    }

    fn build(
        &mut self,
        method: Method,
        class: MessageClass,
        attrs: &[(AttrType, Vec<u8>)],
        creds: Option<&Creds>,
    ) -> Vec<u8> {
        let txid = self.txid();
        build_message(method, class, txid, attrs, creds, self.nonce.as_deref())
    }

    fn send(&mut self, from: ClientAddr, data: &[u8]) -> ClientOutput {
        self.core.handle_client(self.now, from, data, &mut self.out)
    }

    fn reply(&mut self, from: ClientAddr, data: &[u8]) -> Reply {
        let output = self.send(from, data);
        assert_eq!(output, ClientOutput::Reply, "expected a reply");
        Reply(self.out.clone())
    }

    fn request(
        &mut self,
        from: ClientAddr,
        method: Method,
        attrs: &[(AttrType, Vec<u8>)],
        creds: Option<&Creds>,
    ) -> Reply {
        let data = self.build(method, CLASS_REQUEST, attrs, creds);
        self.reply(from, &data)
    }

    /// Gets a nonce with an unauthenticated request.
    fn challenge(&mut self, from: ClientAddr) -> Reply {
        let reply = self.request(from, METHOD_ALLOCATE, &[udp_transport()], None);
        assert_eq!(reply.error_code(), Some(401));
        self.nonce = Some(String::from_utf8(reply.attr(ATTR_NONCE).unwrap()).unwrap());
        reply
    }

    fn commands(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.core.poll_command()).collect()
    }

    /// Completes pending relay binds and returns the messages sent to clients.
    fn complete_binds(&mut self) -> Vec<(ClientAddr, Reply)> {
        let mut sent = Vec::new();
        loop {
            let commands = self.commands();
            if commands.is_empty() {
                return sent;
            }
            for command in commands {
                match command {
                    Command::BindRelay { relay, addr, .. } => {
                        self.core.handle_relay_bound(self.now, relay, Ok(addr));
                    }
                    Command::Transmit { to, data } => sent.push((to, Reply(data))),
                    _ => {}
                }
            }
        }
    }

    /// Sends an Allocate that is expected to wait for a relay bind, binds and returns the
    /// success response.
    fn allocate_with(
        &mut self,
        from: ClientAddr,
        attrs: &[(AttrType, Vec<u8>)],
        creds: &Creds,
    ) -> Reply {
        let data = self.build(METHOD_ALLOCATE, CLASS_REQUEST, attrs, Some(creds));
        let output = self.send(from, &data);
        if output == ClientOutput::Reply {
            return Reply(self.out.clone());
        }
        assert_eq!(output, ClientOutput::None);
        let mut sent = self.complete_binds();
        assert_eq!(sent.len(), 1);
        let (to, reply) = sent.remove(0);
        assert_eq!(to, from);
        reply
    }

    fn allocate(&mut self, from: ClientAddr) -> (RelayId, SocketAddr) {
        self.challenge(from);
        let creds = Creds::sha1(USER, PASSWORD);
        let reply = self.allocate_with(from, &[udp_transport()], &creds);
        assert_eq!(
            reply.class(),
            CLASS_SUCCESS_RESPONSE,
            "error {:?}",
            reply.error_code()
        );
        let relay = *self.core.by_client.get(&from).unwrap();
        (relay, reply.address(ATTR_XOR_RELAYED_ADDRESS))
    }

    fn alice(&self) -> Creds {
        Creds::sha1(USER, PASSWORD)
    }
}

fn build_message(
    method: Method,
    class: MessageClass,
    txid: [u8; 12],
    attrs: &[(AttrType, Vec<u8>)],
    creds: Option<&Creds>,
    nonce: Option<&str>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut writer = MessageWriter::new(&mut buf, MessageType::new(method, class), txid);
    for (typ, value) in attrs {
        writer.attr(*typ, value);
    }
    if let Some(creds) = creds {
        if creds.userhash {
            writer.attr(ATTR_USER_HASH, &userhash(&creds.username, REALM));
        } else {
            writer.attr(ATTR_USERNAME, creds.username.as_bytes());
        }
        writer.attr(ATTR_REALM, REALM.as_bytes());
        writer.attr(ATTR_NONCE, nonce.unwrap_or("no-nonce").as_bytes());
        if creds.algorithm == PasswordAlgorithm::Sha256 {
            writer.attr(ATTR_PASSWORD_ALGORITHMS, &PASSWORD_ALGORITHMS);
            writer.attr(ATTR_PASSWORD_ALGORITHM, &[0, 2, 0, 0]);
        }
        writer.integrity(creds.integrity, creds.key().as_bytes());
    }
    buf
}

fn udp_transport() -> (AttrType, Vec<u8>) {
    (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

fn tcp_transport() -> (AttrType, Vec<u8>) {
    (ATTR_REQUESTED_TRANSPORT, vec![6, 0, 0, 0])
}

fn lifetime(seconds: u32) -> (AttrType, Vec<u8>) {
    (ATTR_LIFETIME, seconds.to_be_bytes().to_vec())
}

fn xor_peer(peer: SocketAddr, txid: [u8; 12]) -> (AttrType, Vec<u8>) {
    let mut buf = Vec::new();
    let mut writer = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_SEND, CLASS_INDICATION),
        txid,
    );
    writer.xor_address(ATTR_XOR_PEER_ADDRESS, peer);
    (ATTR_XOR_PEER_ADDRESS, buf[24..].to_vec())
}

fn channel_number(number: u16) -> (AttrType, Vec<u8>) {
    let [high, low] = number.to_be_bytes();
    (ATTR_CHANNEL_NUMBER, vec![high, low, 0, 0])
}

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

/// Request attributes that carry a peer address depend on the transaction id, so requests
/// with peers are built here with the id the harness will use next.
fn peer_request(
    h: &mut Harness,
    from: ClientAddr,
    method: Method,
    peers: &[SocketAddr],
    extra: &[(AttrType, Vec<u8>)],
) -> Reply {
    let txid = h.txid();
    let mut attrs: Vec<_> = peers.iter().map(|peer| xor_peer(*peer, txid)).collect();
    attrs.extend_from_slice(extra);
    let creds = h.alice();
    let data = build_message(
        method,
        CLASS_REQUEST,
        txid,
        &attrs,
        Some(&creds),
        h.nonce.as_deref(),
    );
    h.reply(from, &data)
}

fn send_indication(
    h: &mut Harness,
    from: ClientAddr,
    peer: SocketAddr,
    payload: &[u8],
) -> (Vec<u8>, ClientOutput) {
    let txid = h.txid();
    let attrs = [xor_peer(peer, txid), (ATTR_DATA, payload.to_vec())];
    let data = build_message(METHOD_SEND, CLASS_INDICATION, txid, &attrs, None, None);
    let output = h.send(from, &data);
    (data, output)
}

fn assert_verified(reply: &Reply, kind: Integrity, key: &LongTermKey) {
    let view = reply.view();
    let attribute = view.get(kind.attr_type()).expect("response has integrity");
    assert!(
        verify_integrity(&view, attribute, kind, key.as_bytes()),
        "response integrity"
    );
}

fn hex_fixture(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_owned();
            let mut bytes = Vec::new();
            for word in words {
                if word == "TXID" {
                    bytes.extend_from_slice(&[0xab; 12]);
                } else {
                    bytes.push(u8::from_str_radix(word, 16).unwrap());
                }
            }
            (name, bytes)
        })
        .collect()
}

#[test]
fn binding_returns_mapped_address_without_auth() {
    let mut h = Harness::new();
    let reply = h.request(udp_client(40000), METHOD_BINDING, &[], None);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(
        reply.address(ATTR_XORMAPPED_ADDRESS),
        udp_client(40000).remote
    );
}

#[test]
fn binding_over_tcp_returns_mapped_address() {
    let mut h = Harness::new();
    let reply = h.request(tcp_client(40000), METHOD_BINDING, &[], None);
    assert_eq!(
        reply.address(ATTR_XORMAPPED_ADDRESS),
        tcp_client(40000).remote
    );
}

#[test]
fn binding_with_fingerprint_gets_fingerprint() {
    let mut h = Harness::new();
    let mut data = Vec::new();
    let mut writer = MessageWriter::new(
        &mut data,
        MessageType::new(METHOD_BINDING, CLASS_REQUEST),
        [1; 12],
    );
    writer.fingerprint();
    let reply = h.reply(udp_client(40000), &data);
    assert!(reply.attr(ATTR_FINGERPRINT).is_some());
    let last = data.len() - 1;
    data[last] ^= 1;
    assert_eq!(
        h.send(udp_client(40000), &data),
        ClientOutput::None,
        "wrong fingerprint is dropped"
    );
}

#[test]
fn allocate_without_credentials_is_challenged() {
    let mut h = Harness::new();
    let reply = h.challenge(udp_client(40000));
    assert_eq!(reply.reason(), "Unauthorized");
    assert_eq!(reply.attr(ATTR_REALM).unwrap(), REALM.as_bytes());
    let nonce = String::from_utf8(reply.attr(ATTR_NONCE).unwrap()).unwrap();
    assert!(nonce.starts_with("obMatJos2wAAA"), "{nonce}");
    assert_eq!(
        reply.attr(ATTR_PASSWORD_ALGORITHMS).unwrap(),
        PASSWORD_ALGORITHMS
    );
    assert!(reply.attr(ATTR_MESSAGE_INTEGRITY).is_none());
    assert_eq!(h.counters.snapshot().auth_failures_total, 0);
}

#[test]
fn allocate_with_sha1_integrity() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_verified(&reply, Integrity::Sha1, &creds.key());
    let relayed = reply.address(ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(relayed.ip(), IpAddr::from(RELAY_IP));
    assert!((50000..=50009).contains(&relayed.port()));
    assert_eq!(reply.address(ATTR_XORMAPPED_ADDRESS), client.remote);
    assert_eq!(reply.attr(ATTR_LIFETIME).unwrap(), 600u32.to_be_bytes());
    let snapshot = h.counters.snapshot();
    assert_eq!(snapshot.allocations, 1);
    assert_eq!(snapshot.allocations_total, 1);
}

#[test]
fn allocate_with_sha256_and_userhash() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = Creds {
        integrity: Integrity::Sha256,
        algorithm: PasswordAlgorithm::Sha256,
        userhash: true,
        ..h.alice()
    };
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(
        reply.class(),
        CLASS_SUCCESS_RESPONSE,
        "{:?}",
        reply.error_code()
    );
    assert_verified(&reply, Integrity::Sha256, &creds.key());
    assert!(reply.attr(ATTR_MESSAGE_INTEGRITY).is_none());
}

#[test]
fn sha256_integrity_with_md5_key() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = Creds {
        integrity: Integrity::Sha256,
        ..h.alice()
    };
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_verified(&reply, Integrity::Sha256, &creds.key());
}

#[test]
fn wrong_password_is_unauthorized() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = Creds::sha1(USER, "guess");
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(401));
    assert!(reply.attr(ATTR_NONCE).is_some());
    assert_eq!(h.counters.snapshot().auth_failures_total, 1);
    let unknown = Creds::sha1("mallory", PASSWORD);
    let reply = h.allocate_with(client, &[udp_transport()], &unknown);
    assert_eq!(reply.error_code(), Some(401));
    assert_eq!(h.counters.snapshot().auth_failures_total, 2);
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn unknown_userhash_is_unauthorized() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = Creds {
        userhash: true,
        ..Creds::sha1("mallory", PASSWORD)
    };
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(401));
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_one() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    h.advance(Duration::from_secs(601));
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(438));
    assert_eq!(reply.reason(), "Stale Nonce");
    let fresh = String::from_utf8(reply.attr(ATTR_NONCE).unwrap()).unwrap();
    assert_ne!(Some(&fresh), h.nonce.as_ref());
    h.nonce = Some(fresh);
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
}

#[test]
fn nonce_of_another_address_is_stale() {
    let mut h = Harness::new();
    h.challenge(udp_client(40000));
    let mut other = udp_client(40000);
    other.remote = "203.0.113.99:40000".parse().unwrap();
    let creds = h.alice();
    let reply = h.allocate_with(other, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(438));
}

#[test]
fn forged_nonce_is_stale() {
    let mut h = Harness::new();
    h.nonce = Some("obMatJos2wAAA6553f100.AAAAAAAAAAAAAAAA".to_owned());
    let creds = h.alice();
    let reply = h.allocate_with(udp_client(40000), &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(438));
}

#[test]
fn missing_realm_or_mismatched_algorithms_is_bad_request() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let nonce = h.nonce.clone().unwrap();

    let mut data = Vec::new();
    let mut writer = MessageWriter::new(
        &mut data,
        MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST),
        [9; 12],
    );
    writer.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    writer.attr(ATTR_USERNAME, USER.as_bytes());
    writer.attr(ATTR_NONCE, nonce.as_bytes());
    writer.integrity(Integrity::Sha1, creds.key().as_bytes());
    assert_eq!(h.reply(client, &data).error_code(), Some(400));

    for (offered, chosen) in [
        (&[0, 1, 0, 0][..], &[0, 1, 0, 0][..]),
        (&PASSWORD_ALGORITHMS[..], &[0, 3, 0, 0][..]),
    ] {
        let mut data = Vec::new();
        let mut writer = MessageWriter::new(
            &mut data,
            MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST),
            [10; 12],
        );
        writer.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        writer.attr(ATTR_USERNAME, USER.as_bytes());
        writer.attr(ATTR_REALM, REALM.as_bytes());
        writer.attr(ATTR_NONCE, nonce.as_bytes());
        writer.attr(ATTR_PASSWORD_ALGORITHMS, offered);
        writer.attr(ATTR_PASSWORD_ALGORITHM, chosen);
        writer.integrity(Integrity::Sha1, creds.key().as_bytes());
        assert_eq!(h.reply(client, &data).error_code(), Some(400));
    }
}

#[test]
fn time_limited_credentials_with_either_secret() {
    for secret in SECRETS {
        let mut h = Harness::new();
        let client = udp_client(40000);
        h.challenge(client);
        let username = format!("{}:bob", UNIX_START + 100);
        let creds = Creds::sha1(
            &username,
            &crate::credentials::password_for(secret, &username),
        );
        let reply = h.allocate_with(client, &[udp_transport()], &creds);
        assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE, "secret {secret}");
    }
}

#[test]
fn expired_credentials_are_rejected_on_allocate_and_refresh() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let expired = format!("{}:bob", UNIX_START - 1);
    let creds = Creds::sha1(
        &expired,
        &crate::credentials::password_for(SECRETS[0], &expired),
    );
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(401));
    assert_eq!(h.counters.snapshot().auth_failures_total, 1);

    let username = format!("{}:bob", UNIX_START + 60);
    let creds = Creds::sha1(
        &username,
        &crate::credentials::password_for(SECRETS[1], &username),
    );
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    h.advance(Duration::from_secs(120));
    h.challenge(udp_client(40001));
    h.nonce = None;
    let reply = h.request(client, METHOD_REFRESH, &[], None);
    h.nonce = Some(String::from_utf8(reply.attr(ATTR_NONCE).unwrap()).unwrap());
    let reply = h.request(client, METHOD_REFRESH, &[lifetime(600)], Some(&creds));
    assert_eq!(reply.error_code(), Some(401));
}

#[test]
fn auth_off_allocates_without_credentials() {
    let mut config = test_config();
    config.auth = false;
    let mut h = Harness::with_config(config);
    let client = udp_client(40000);
    let data = h.build(METHOD_ALLOCATE, CLASS_REQUEST, &[udp_transport()], None);
    assert_eq!(h.send(client, &data), ClientOutput::None);
    let sent = h.complete_binds();
    assert_eq!(sent[0].1.class(), CLASS_SUCCESS_RESPONSE);
    assert!(sent[0].1.attr(ATTR_MESSAGE_INTEGRITY).is_none());
}

#[test]
fn allocation_lifetime_is_clamped() {
    for (requested, granted) in [
        (None, 600),
        (Some(10), 600),
        (Some(1200), 1200),
        (Some(5000), 3600),
    ] {
        let mut h = Harness::new();
        let client = udp_client(40000);
        h.challenge(client);
        let mut attrs = vec![udp_transport()];
        attrs.extend(requested.map(lifetime));
        let creds = h.alice();
        let reply = h.allocate_with(client, &attrs, &creds);
        assert_eq!(
            reply.attr(ATTR_LIFETIME).unwrap(),
            u32::to_be_bytes(granted),
            "requested {requested:?}"
        );
    }
}

#[test]
fn refresh_with_lifetime_zero_deletes_allocation() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let creds = h.alice();
    let reply = h.request(client, METHOD_REFRESH, &[lifetime(0)], Some(&creds));
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(reply.attr(ATTR_LIFETIME).unwrap(), 0u32.to_be_bytes());
    assert_verified(&reply, Integrity::Sha1, &creds.key());
    assert!(h.commands().contains(&Command::CloseRelay { relay }));
    assert_eq!(h.counters.snapshot().allocations, 0);
    let reply = h.request(client, METHOD_REFRESH, &[lifetime(600)], Some(&creds));
    assert_eq!(reply.error_code(), Some(437));
}

#[test]
fn refresh_extends_and_caps_lifetime() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let creds = h.alice();
    h.advance(Duration::from_secs(500));
    let reply = h.request(client, METHOD_REFRESH, &[lifetime(9999)], Some(&creds));
    assert_eq!(reply.attr(ATTR_LIFETIME).unwrap(), 3600u32.to_be_bytes());
    h.advance(Duration::from_secs(3000));
    assert!(!h.commands().contains(&Command::CloseRelay { relay }));
    h.advance(Duration::from_secs(601));
    assert!(h.commands().contains(&Command::CloseRelay { relay }));
}

#[test]
fn allocation_expires_without_refresh() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    h.advance(Duration::from_secs(599));
    assert!(h.commands().is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.commands(), vec![Command::CloseRelay { relay }]);
    assert_eq!(h.counters.snapshot().allocations, 0);
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn refresh_by_another_user_is_wrong_credentials() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    let username = format!("{}:bob", UNIX_START + 600);
    let bob = Creds::sha1(
        &username,
        &crate::credentials::password_for(SECRETS[0], &username),
    );
    let reply = h.request(client, METHOD_REFRESH, &[lifetime(600)], Some(&bob));
    assert_eq!(reply.error_code(), Some(441));
    assert_eq!(reply.reason(), "Wrong Credentials");
}

#[test]
fn second_allocate_on_same_five_tuple_is_mismatch() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(437));
    assert_eq!(reply.reason(), "Allocation Mismatch");
}

#[test]
fn retransmitted_allocate_gets_success_again() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let data = h.build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        &[udp_transport()],
        Some(&creds),
    );
    assert_eq!(h.send(client, &data), ClientOutput::None);
    let first = h.complete_binds().remove(0).1;
    let again = h.reply(client, &data);
    assert_eq!(again.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(
        again.address(ATTR_XOR_RELAYED_ADDRESS),
        first.address(ATTR_XOR_RELAYED_ADDRESS)
    );
}

#[test]
fn requested_transport_rules() {
    let cases: [(ClientAddr, Attrs, u16); 4] = [
        (udp_client(40000), vec![], 400),
        (
            udp_client(40000),
            vec![(ATTR_REQUESTED_TRANSPORT, vec![1, 0, 0, 0])],
            442,
        ),
        (
            udp_client(40000),
            vec![(ATTR_REQUESTED_TRANSPORT, vec![17, 0])],
            400,
        ),
        (udp_client(40000), vec![tcp_transport()], 400),
    ];
    for (client, attrs, code) in cases {
        let mut h = Harness::new();
        h.challenge(client);
        let creds = h.alice();
        let reply = h.allocate_with(client, &attrs, &creds);
        assert_eq!(reply.error_code(), Some(code), "{attrs:?}");
    }
}

#[test]
fn ipv6_relay_without_ipv6_address_is_440() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    for family in [2u8, 3] {
        let attrs = [
            udp_transport(),
            (ATTR_REQUESTED_ADDRESS_FAMILY, vec![family, 0, 0, 0]),
        ];
        let reply = h.allocate_with(client, &attrs, &creds);
        assert_eq!(reply.error_code(), Some(440), "family {family}");
        assert_eq!(reply.reason(), "Address Family not Supported");
    }
}

#[test]
fn ipv6_relay_when_configured() {
    let mut config = test_config();
    config.relay_ipv6 = Some("2001:db8::10".parse().unwrap());
    let mut h = Harness::with_config(config);
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let attrs = [
        udp_transport(),
        (ATTR_REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
    ];
    let reply = h.allocate_with(client, &attrs, &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let relayed = reply.address(ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(relayed.ip(), "2001:db8::10".parse::<IpAddr>().unwrap());

    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    assert_eq!(reply.error_code(), Some(443), "IPv4 peer on an IPv6 relay");
    let v6_peer: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[v6_peer], &[]);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let refresh = h.request(
        client,
        METHOD_REFRESH,
        &[(ATTR_REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0])],
        Some(&creds),
    );
    assert_eq!(refresh.error_code(), Some(443));
}

#[test]
fn user_quota_is_486() {
    let mut config = test_config();
    config.user_quota = 2;
    let mut h = Harness::with_config(config);
    h.allocate(udp_client(40000));
    h.allocate(udp_client(40001));
    let client = udp_client(40002);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(486));
    assert_eq!(reply.reason(), "Allocation Quota Reached");
    assert_eq!(h.counters.snapshot().quota_rejections_total, 1);

    let username = format!("{}:bob", UNIX_START + 600);
    let bob = Creds::sha1(
        &username,
        &crate::credentials::password_for(SECRETS[0], &username),
    );
    let reply = h.allocate_with(client, &[udp_transport()], &bob);
    assert_eq!(
        reply.class(),
        CLASS_SUCCESS_RESPONSE,
        "another user has quota left"
    );
}

#[test]
fn total_quota_is_486_and_frees_on_delete() {
    let mut config = test_config();
    config.total_quota = 1;
    let mut h = Harness::with_config(config);
    let first = udp_client(40000);
    h.allocate(first);
    let client = udp_client(40001);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(486));
    h.request(first, METHOD_REFRESH, &[lifetime(0)], Some(&creds));
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
}

#[test]
fn no_free_relay_port_is_508() {
    let mut config = test_config();
    config.ports = (50000, 50000);
    let mut h = Harness::with_config(config);
    h.allocate(udp_client(40000));
    let client = udp_client(40001);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(508));
    assert_eq!(reply.reason(), "Insufficient Capacity");
}

#[test]
fn failed_binds_retry_other_ports_then_508() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let data = h.build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        &[udp_transport()],
        Some(&creds),
    );
    assert_eq!(h.send(client, &data), ClientOutput::None);
    let mut tried = Vec::new();
    let mut reply = None;
    for _ in 0..20 {
        for command in h.commands() {
            match command {
                Command::BindRelay { relay, addr, .. } => {
                    tried.push(addr.port());
                    let error = std::io::Error::from(std::io::ErrorKind::AddrInUse);
                    h.core.handle_relay_bound(h.now, relay, Err(error));
                }
                Command::Transmit { data, .. } => reply = Some(Reply(data)),
                _ => {}
            }
        }
    }
    assert_eq!(tried.len(), MAX_BIND_ATTEMPTS as usize);
    let mut unique = tried.clone();
    unique.dedup();
    assert_eq!(unique.len(), tried.len(), "each attempt uses another port");
    assert_eq!(reply.unwrap().error_code(), Some(508));
    assert_eq!(h.core.allocation_count(), 0);
    assert_eq!(h.counters.snapshot().allocations, 0);
}

#[test]
fn even_port_reservation_serves_the_next_allocate() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(
        client,
        &[udp_transport(), (ATTR_EVEN_PORT, vec![0x80])],
        &creds,
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let port = reply.address(ATTR_XOR_RELAYED_ADDRESS).port();
    assert_eq!(port % 2, 0);
    let token = reply.attr(ATTR_RESERVATION_TOKEN).expect("token");

    let second = udp_client(40001);
    let reply = h.allocate_with(
        second,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token.clone())],
        &creds,
    );
    assert_eq!(reply.address(ATTR_XOR_RELAYED_ADDRESS).port(), port + 1);
    let third = udp_client(40002);
    let reply = h.allocate_with(
        third,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token)],
        &creds,
    );
    assert_eq!(reply.error_code(), Some(508), "a token serves once");
    let reply = h.allocate_with(
        third,
        &[
            udp_transport(),
            (ATTR_EVEN_PORT, vec![0]),
            (ATTR_RESERVATION_TOKEN, vec![0; 8]),
        ],
        &creds,
    );
    assert_eq!(reply.error_code(), Some(400));
}

/// Sends an Allocate with EVEN-PORT and the R bit and completes each relay bind with `result`
/// until the core replies. Returns the binds it requested and the reply.
fn allocate_reserving(
    h: &mut Harness,
    client: ClientAddr,
    mut result: impl FnMut(SocketAddr) -> std::io::Result<SocketAddr>,
) -> (Vec<(SocketAddr, bool)>, Reply) {
    h.challenge(client);
    let creds = h.alice();
    let attrs = [udp_transport(), (ATTR_EVEN_PORT, vec![0x80])];
    let data = h.build(METHOD_ALLOCATE, CLASS_REQUEST, &attrs, Some(&creds));
    // An Allocate rejected before any bind gets its reply at once.
    if h.send(client, &data) == ClientOutput::Reply {
        return (Vec::new(), Reply(h.out.clone()));
    }
    let mut binds = Vec::new();
    for _ in 0..20 {
        for command in h.commands() {
            match command {
                Command::BindRelay {
                    relay,
                    addr,
                    reserve_next,
                    ..
                } => {
                    binds.push((addr, reserve_next));
                    h.core.handle_relay_bound(h.now, relay, result(addr));
                }
                Command::Transmit { data, .. } => return (binds, Reply(data)),
                _ => {}
            }
        }
    }
    panic!("no reply to the Allocate");
}

#[test]
fn reservation_binds_next_port() {
    let mut h = Harness::new();
    let (binds, reply) = allocate_reserving(&mut h, udp_client(40000), Ok);
    let relay = SocketAddr::from((RELAY_IP, 50000));
    assert_eq!(
        binds,
        [(relay, true)],
        "the next port is bound along with the relay"
    );
    let token = reply.attr(ATTR_RESERVATION_TOKEN).expect("token");

    let second = udp_client(40001);
    h.challenge(second);
    let creds = h.alice();
    let attrs = [udp_transport(), (ATTR_RESERVATION_TOKEN, token)];
    let data = h.build(METHOD_ALLOCATE, CLASS_REQUEST, &attrs, Some(&creds));
    assert_eq!(h.send(second, &data), ClientOutput::None);
    let binds: Vec<_> = h
        .commands()
        .into_iter()
        .filter_map(|command| match command {
            Command::BindRelay {
                addr, reserve_next, ..
            } => Some((addr, reserve_next)),
            _ => None,
        })
        .collect();
    let next = SocketAddr::from((RELAY_IP, 50001));
    assert_eq!(
        binds,
        [(next, false)],
        "the token's Allocate takes the held port"
    );
}

#[test]
fn failed_reservation_bind_retries_another_even_pair() {
    let mut config = test_config();
    config.ports = (50000, 50003);
    let mut h = Harness::with_config(config);
    // The first pair fails, as when another process has bound 50001.
    let (binds, reply) = allocate_reserving(&mut h, udp_client(40000), |addr| {
        if addr.port() == 50000 {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        } else {
            Ok(addr)
        }
    });
    let ports: Vec<_> = binds
        .iter()
        .map(|(addr, reserve)| (addr.port(), *reserve))
        .collect();
    assert_eq!(ports, [(50000, true), (50002, true)]);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(reply.address(ATTR_XOR_RELAYED_ADDRESS).port(), 50002);
    assert!(reply.attr(ATTR_RESERVATION_TOKEN).is_some());

    // 50000 and 50001 went back to the pool, the only free ports of the range.
    let client = udp_client(40001);
    h.challenge(client);
    let creds = h.alice();
    let reply = h.allocate_with(client, &[udp_transport()], &creds);
    assert_eq!(reply.address(ATTR_XOR_RELAYED_ADDRESS).port(), 50000);
}

#[test]
fn expired_reservation_releases_the_held_port() {
    let mut h = Harness::new();
    let (_, reply) = allocate_reserving(&mut h, udp_client(40000), Ok);
    assert!(reply.attr(ATTR_RESERVATION_TOKEN).is_some());
    h.advance(RESERVATION_LIFETIME + SWEEP_INTERVAL);
    let released: Vec<_> = h
        .commands()
        .into_iter()
        .filter_map(|command| match command {
            Command::ReleaseReserved { addr } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(released, [SocketAddr::from((RELAY_IP, 50001))]);
}

#[test]
fn failed_reservation_allocate_frees_both_ports() {
    let mut config = test_config();
    config.ports = (50000, 50001);
    let mut h = Harness::with_config(config);
    let (binds, reply) = allocate_reserving(&mut h, udp_client(40000), |_| {
        Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
    });
    assert_eq!(binds.len(), 1, "the range has no other even pair");
    assert_eq!(reply.error_code(), Some(508));
    let (binds, _) = allocate_reserving(&mut h, udp_client(40001), Ok);
    assert_eq!(binds.len(), 1, "both ports are free again");
}

#[test]
fn retransmitted_reserving_allocate_repeats_token() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let attrs = [udp_transport(), (ATTR_EVEN_PORT, vec![0x80])];
    let data = h.build(METHOD_ALLOCATE, CLASS_REQUEST, &attrs, Some(&creds));
    assert_eq!(h.send(client, &data), ClientOutput::None);
    let sent = h.complete_binds();
    let token = sent[0].1.attr(ATTR_RESERVATION_TOKEN).expect("token");

    let again = h.reply(client, &data);
    assert_eq!(again.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(again.attr(ATTR_RESERVATION_TOKEN), Some(token.clone()));

    // Once the token is used, a retransmission no longer carries it.
    let second = udp_client(40001);
    h.challenge(second);
    let reply = h.allocate_with(
        second,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token)],
        &creds,
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let again = h.reply(client, &data);
    assert_eq!(again.attr(ATTR_RESERVATION_TOKEN), None);
}

#[test]
fn reservations_count_in_user_quota() {
    let mut config = test_config();
    config.user_quota = 2;
    let mut h = Harness::with_config(config);
    let (_, reply) = allocate_reserving(&mut h, udp_client(40000), Ok);
    let token = reply.attr(ATTR_RESERVATION_TOKEN).expect("token");
    let creds = h.alice();

    // One allocation and one reservation fill a quota of two.
    let third = udp_client(40002);
    h.challenge(third);
    let reply = h.allocate_with(third, &[udp_transport()], &creds);
    assert_eq!(reply.error_code(), Some(486));

    // The token's Allocate takes the reservation's place, so it passes.
    let second = udp_client(40001);
    h.challenge(second);
    let reply = h.allocate_with(
        second,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token)],
        &creds,
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let reply = h.allocate_with(third, &[udp_transport()], &creds);
    assert_eq!(
        reply.error_code(),
        Some(486),
        "two allocations fill the quota"
    );
}

#[test]
fn token_of_another_user_needs_quota() {
    let mut config = test_config();
    config.user_quota = 2;
    let mut h = Harness::with_config(config);
    let (_, reply) = allocate_reserving(&mut h, udp_client(40000), Ok);
    let token = reply.attr(ATTR_RESERVATION_TOKEN).expect("token");

    // Bob fills his own quota of two, then presents Alice's token.
    let bob_creds = Creds::time_limited("bob", UNIX_START + 100);
    for port in [40001, 40002] {
        let client = udp_client(port);
        h.challenge(client);
        let reply = h.allocate_with(client, &[udp_transport()], &bob_creds);
        assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    }
    let client = udp_client(40003);
    h.challenge(client);
    let reply = h.allocate_with(
        client,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token)],
        &bob_creds,
    );
    assert_eq!(reply.error_code(), Some(486), "Bob's quota is full");
}

#[test]
fn reserve_and_delete_cannot_pin_ports() {
    let mut config = test_config();
    config.user_quota = 2;
    let mut h = Harness::with_config(config);
    let mut reserved = 0;
    for port in 40000..40004 {
        let (binds, reply) = allocate_reserving(&mut h, udp_client(port), Ok);
        if reply.error_code() == Some(486) {
            continue;
        }
        assert_eq!(binds.len(), 1);
        reserved += 1;
        let creds = h.alice();
        h.request(
            udp_client(port),
            METHOD_REFRESH,
            &[lifetime(0)],
            Some(&creds),
        );
    }
    assert_eq!(
        reserved, 1,
        "a deleted allocation leaves its reservation in the quota of two"
    );

    h.advance(RESERVATION_LIFETIME + SWEEP_INTERVAL);
    let (_, reply) = allocate_reserving(&mut h, udp_client(40010), Ok);
    assert_eq!(
        reply.class(),
        CLASS_SUCCESS_RESPONSE,
        "expired reservations free the quota"
    );
}

#[test]
fn expired_token_before_sweep_is_508() {
    let mut h = Harness::new();
    let (_, reply) = allocate_reserving(&mut h, udp_client(40000), Ok);
    let token = reply.attr(ATTR_RESERVATION_TOKEN).expect("token");
    h.commands();
    // Past the lifetime, but before the sweep runs.
    h.now.instant += RESERVATION_LIFETIME;
    let second = udp_client(40001);
    h.challenge(second);
    let creds = h.alice();
    let data = h.build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        &[udp_transport(), (ATTR_RESERVATION_TOKEN, token)],
        Some(&creds),
    );
    let reply = h.reply(second, &data);
    assert_eq!(reply.error_code(), Some(508));
    let released: Vec<_> = h
        .commands()
        .into_iter()
        .filter(|command| matches!(command, Command::ReleaseReserved { .. }))
        .collect();
    assert_eq!(released.len(), 1, "the held socket is closed");
}

#[test]
fn unknown_required_attribute_is_420() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let reply = h.request(
        client,
        METHOD_BINDING,
        &[
            (AttrType(0x0031), vec![1, 2, 3, 4]),
            (AttrType(0x8031), vec![]),
        ],
        None,
    );
    assert_eq!(reply.error_code(), Some(420));
    assert_eq!(
        reply.attr(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        vec![0x00, 0x31]
    );

    let reply = h.request(
        client,
        METHOD_ALLOCATE,
        &[udp_transport(), (ATTR_DONT_FRAGMENT, vec![])],
        None,
    );
    assert_eq!(reply.error_code(), Some(420));
    assert_eq!(
        reply.attr(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        vec![0x00, 0x1a]
    );
}

#[test]
fn unknown_method_is_400() {
    let mut h = Harness::new();
    let mut data = h.build(METHOD_BINDING, CLASS_REQUEST, &[], None);
    data[1] = 0x2f;
    let reply = h.reply(udp_client(40000), &data);
    assert_eq!(reply.error_code(), Some(400));
    assert_eq!(reply.reason(), "Bad Request");
}

#[test]
fn responses_and_unknown_classes_are_dropped() {
    let mut h = Harness::new();
    let data = h.build(METHOD_BINDING, CLASS_SUCCESS_RESPONSE, &[], None);
    assert_eq!(h.send(udp_client(40000), &data), ClientOutput::None);
    let data = h.build(METHOD_BINDING, CLASS_INDICATION, &[], None);
    assert_eq!(h.send(udp_client(40000), &data), ClientOutput::None);
}

#[test]
fn permission_gates_relaying_both_ways() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let mut out = Vec::new();
    assert!(
        !h.core
            .handle_peer(h.now.instant, relay, peer(), b"early", &mut out),
        "no permission yet"
    );
    let (_, output) = send_indication(&mut h, client, peer(), b"hello");
    assert_eq!(
        output,
        ClientOutput::None,
        "Send without permission is dropped"
    );

    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(h.counters.snapshot().permissions, 1);

    let (data, output) = send_indication(&mut h, client, peer(), b"hello");
    let ClientOutput::ToPeer {
        relay: to_relay,
        peer: to,
        payload,
    } = output
    else {
        panic!("expected ToPeer, got {output:?}");
    };
    assert_eq!((to_relay, to), (relay, peer()));
    assert_eq!(&data[payload], b"hello");

    let other_port = SocketAddr::new(peer().ip(), 6000);
    assert!(
        h.core
            .handle_peer(h.now.instant, relay, other_port, b"pong", &mut out),
        "permissions ignore ports"
    );
    let indication = Reply(out.clone());
    assert_eq!(
        indication.view().message_type(),
        MessageType::new(METHOD_DATA, CLASS_INDICATION)
    );
    assert_eq!(indication.address(ATTR_XOR_PEER_ADDRESS), other_port);
    assert_eq!(indication.attr(ATTR_DATA).unwrap(), b"pong");

    let snapshot = h.counters.snapshot();
    assert_eq!(
        snapshot.relayed_to_peer.udp,
        crate::Traffic {
            packets: 1,
            bytes: 5
        }
    );
    assert_eq!(
        snapshot.relayed_to_client.udp,
        crate::Traffic {
            packets: 1,
            bytes: 4
        }
    );

    h.advance(Duration::from_secs(301));
    assert!(
        !h.core
            .handle_peer(h.now.instant, relay, peer(), b"late", &mut out),
        "permission expired"
    );
    assert_eq!(h.counters.snapshot().permissions, 0);
}

#[test]
fn create_permission_needs_a_peer_and_an_allocation() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.challenge(client);
    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    assert_eq!(reply.error_code(), Some(437));
    h.allocate(client);
    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[], &[]);
    assert_eq!(reply.error_code(), Some(400));
}

#[test]
fn create_permission_is_all_or_nothing() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let denied: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CREATE_PERMISSION,
        &[peer(), denied],
        &[],
    );
    assert_eq!(reply.error_code(), Some(403));
    let mut out = Vec::new();
    assert!(!h
        .core
        .handle_peer(h.now.instant, relay, peer(), b"x", &mut out));
    assert_eq!(h.counters.snapshot().permissions, 0);
}

#[test]
fn channel_data_relays_both_ways() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    assert_eq!(
        reply.class(),
        CLASS_SUCCESS_RESPONSE,
        "{:?}",
        reply.error_code()
    );
    let snapshot = h.counters.snapshot();
    assert_eq!((snapshot.channels, snapshot.permissions), (1, 1));

    let frame = [0x40, 0x00, 0x00, 0x03, 7, 8, 9, 0];
    let output = h.send(client, &frame);
    let ClientOutput::ToPeer {
        peer: to, payload, ..
    } = output
    else {
        panic!("expected ToPeer, got {output:?}");
    };
    assert_eq!(to, peer());
    assert_eq!(&frame[payload], &[7, 8, 9]);

    let mut out = Vec::new();
    assert!(h
        .core
        .handle_peer(h.now.instant, relay, peer(), &[1, 2, 3, 4, 5], &mut out));
    assert_eq!(
        out,
        [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5],
        "no padding over UDP"
    );

    assert_eq!(
        h.send(client, &[0x40, 0x01, 0x00, 0x01, 1]),
        ClientOutput::None,
        "unbound channel"
    );
    assert_eq!(
        h.send(client, &[0x40, 0x00, 0x00, 0x09, 1]),
        ClientOutput::None,
        "length past the end"
    );
    assert_eq!(
        h.send(client, &[0x50, 0x00, 0x00, 0x01, 1]),
        ClientOutput::None,
        "reserved number"
    );
}

#[test]
fn channel_data_to_stream_client_is_padded() {
    let mut h = Harness::new();
    let client = tcp_client(40000);
    let (relay, _) = h.allocate(client);
    peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    let payload = [0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut out = Vec::new();
    assert!(h
        .core
        .handle_peer(h.now.instant, relay, peer(), &payload, &mut out));
    let mut expected = vec![0x40, 0x00, 0x00, 0x0d];
    expected.extend_from_slice(&payload);
    expected.extend_from_slice(&[0, 0, 0]);
    assert_eq!(out, expected);
    assert_eq!(h.counters.snapshot().relayed_to_client.tcp.bytes, 13);
}

#[test]
fn padded_channel_data_from_stream_forwards_only_payload() {
    let mut h = Harness::new();
    let client = tcp_client(40000);
    h.allocate(client);
    peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    let fixture = hex_fixture(include_str!(
        "../../../../tests/fixtures/turn/channeldata-over-tcp.hex"
    ));
    let (_, padded_frame) = &fixture[0];
    let output = h.send(client, padded_frame);
    let ClientOutput::ToPeer { payload, .. } = output else {
        panic!("expected ToPeer, got {output:?}");
    };
    assert_eq!(payload.len(), 13);
    assert_eq!(&padded_frame[payload], &padded_frame[4..17]);
}

#[test]
fn channel_bind_rules() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    let other: SocketAddr = "192.0.2.8:5000".parse().unwrap();
    let cases: [(&[SocketAddr], Attrs, u16); 4] = [
        (&[], vec![channel_number(0x4000)], 400),
        (&[peer()], vec![], 400),
        (&[peer()], vec![channel_number(0x3fff)], 400),
        (&[peer()], vec![channel_number(0x8000)], 400),
    ];
    for (peers, extra, code) in cases {
        let reply = peer_request(&mut h, client, METHOD_CHANNEL_BIND, peers, &extra);
        assert_eq!(reply.error_code(), Some(code), "{extra:?}");
    }
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE, "refresh");
    assert_eq!(h.counters.snapshot().channels, 1);
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[other],
        &[channel_number(0x4000)],
    );
    assert_eq!(
        reply.error_code(),
        Some(400),
        "number bound to another peer"
    );
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4001)],
    );
    assert_eq!(
        reply.error_code(),
        Some(400),
        "peer bound to another number"
    );
}

#[test]
fn channel_expires_and_stays_quarantined() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    for _ in 0..2 {
        h.advance(Duration::from_secs(299));
        peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    }
    peer_request(&mut h, client, METHOD_REFRESH, &[], &[lifetime(3600)]);
    h.advance(Duration::from_secs(3));
    assert_eq!(h.counters.snapshot().channels, 0);
    assert_eq!(
        h.send(client, &[0x40, 0x00, 0x00, 0x01, 1, 0, 0, 0]),
        ClientOutput::None
    );
    let mut out = Vec::new();
    assert!(h
        .core
        .handle_peer(h.now.instant, relay, peer(), b"x", &mut out));
    assert_eq!(out[0] >> 6, 0, "a Data indication once the channel expired");

    let other: SocketAddr = "192.0.2.8:5000".parse().unwrap();
    h.challenge(client);
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[other],
        &[channel_number(0x4000)],
    );
    assert_eq!(
        reply.error_code(),
        Some(400),
        "quarantined for five minutes"
    );
    h.advance(Duration::from_secs(301));
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[other],
        &[channel_number(0x4000)],
    );
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
}

#[test]
fn every_denied_peer_form_is_rejected() {
    let peers: Vec<SocketAddr> = DENIED_PEERS
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert_eq!(peers.len(), 16);
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    let mut denied = 0;
    for peer in peers {
        let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer], &[]);
        let expected = if peer.is_ipv6() && peer.ip().to_string().contains("ffff") {
            403
        } else if peer.is_ipv6() {
            443
        } else {
            403
        };
        assert_eq!(
            reply.error_code(),
            Some(expected),
            "CreatePermission {peer}"
        );
        assert_eq!(
            reply.reason(),
            if expected == 403 {
                "Forbidden"
            } else {
                "Peer Address Family Mismatch"
            }
        );
        let reply = peer_request(
            &mut h,
            client,
            METHOD_CHANNEL_BIND,
            &[peer],
            &[channel_number(0x4000)],
        );
        assert_eq!(reply.error_code(), Some(expected), "ChannelBind {peer}");
        let (_, output) = send_indication(&mut h, client, peer, b"x");
        assert_eq!(output, ClientOutput::None, "Send {peer}");
        if expected == 403 {
            denied += 3;
        }
        let mut out = Vec::new();
        assert!(!h
            .core
            .handle_peer(h.now.instant, relay, peer, b"x", &mut out));
    }
    assert_eq!(h.counters.snapshot().denied_peers_total, denied);
}

#[test]
fn denied_ipv6_peers_on_ipv6_relay() {
    let mut config = test_config();
    config.relay_ipv6 = Some("2001:db8::10".parse().unwrap());
    let mut h = Harness::with_config(config);
    let client = udp_client(40000);
    h.challenge(client);
    let creds = h.alice();
    let attrs = [
        udp_transport(),
        (ATTR_REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
    ];
    assert_eq!(
        h.allocate_with(client, &attrs, &creds).class(),
        CLASS_SUCCESS_RESPONSE
    );
    for line in DENIED_PEERS.lines().filter(|line| line.starts_with('[')) {
        let peer: SocketAddr = line.trim().parse().unwrap();
        let mapped_v4 = peer.ip().to_string().contains("ffff");
        let expected = if mapped_v4 { 443 } else { 403 };
        let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer], &[]);
        assert_eq!(
            reply.error_code(),
            Some(expected),
            "CreatePermission {peer}"
        );
        let reply = peer_request(
            &mut h,
            client,
            METHOD_CHANNEL_BIND,
            &[peer],
            &[channel_number(0x4000)],
        );
        assert_eq!(reply.error_code(), Some(expected), "ChannelBind {peer}");
    }
}

#[test]
fn allowed_ranges_open_loopback_peers() {
    let mut turn = TurnConfig {
        allowed_peer_ranges: vec!["127.0.0.0/8".to_owned()],
        allowed_peer_addresses: vec!["10.1.2.3:4000".parse().unwrap()],
        ..TurnConfig::default()
    };
    turn.users = vec![crate::StaticUser {
        name: USER.to_owned(),
        password: PASSWORD.to_owned(),
    }];
    turn.realm = REALM.to_owned();
    turn.relay_ip = IpAddr::from(RELAY_IP);
    let config = CoreConfig::from_turn_config(&turn, vec![], [1; 32]).unwrap();
    let mut h = Harness::with_config(config);
    let client = udp_client(40000);
    h.allocate(client);
    for (peer, code) in [
        ("127.0.0.1:3480", None),
        ("10.1.2.3:4000", None),
        ("10.1.2.3:4001", Some(403)),
    ] {
        let reply = peer_request(
            &mut h,
            client,
            METHOD_CREATE_PERMISSION,
            &[peer.parse().unwrap()],
            &[],
        );
        assert_eq!(reply.error_code(), code, "{peer}");
    }
}

#[test]
fn bandwidth_cap_drops_over_the_limit() {
    let mut config = test_config();
    config.max_bytes_per_second = 1000;
    let mut h = Harness::with_config(config);
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    let mut frame = vec![0x40, 0x00, 0x01, 0x90];
    frame.resize(4 + 400, 0);
    let forwarded = (0..5)
        .filter(|_| matches!(h.send(client, &frame), ClientOutput::ToPeer { .. }))
        .count();
    assert_eq!(forwarded, 2);
    let mut out = Vec::new();
    let delivered = (0..5)
        .filter(|_| {
            h.core
                .handle_peer(h.now.instant, relay, peer(), &[0; 400], &mut out)
        })
        .count();
    assert_eq!(delivered, 2, "each direction has its own budget");
    h.advance(Duration::from_secs(1));
    assert!(matches!(
        h.send(client, &frame),
        ClientOutput::ToPeer { .. }
    ));
}

#[test]
fn unauthorized_replies_are_rate_limited_per_source() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let data = h.build(METHOD_ALLOCATE, CLASS_REQUEST, &[udp_transport()], None);
    let replies = (0..500)
        .filter(|_| h.send(client, &data) == ClientOutput::Reply)
        .count();
    assert_eq!(replies, 200);
    let mut other = udp_client(40000);
    other.remote = "203.0.113.6:40000".parse().unwrap();
    assert_eq!(
        h.send(other, &data),
        ClientOutput::Reply,
        "other sources are not limited"
    );
    h.advance(Duration::from_secs(1));
    let replies = (0..500)
        .filter(|_| h.send(client, &data) == ClientOutput::Reply)
        .count();
    assert_eq!(replies, 100);
}

#[test]
fn malformed_fixture_inputs_are_dropped() {
    let inputs = hex_fixture(MALFORMED);
    assert_eq!(inputs.len(), 5);
    let mut h = Harness::new();
    let client = udp_client(40000);
    for (name, bytes) in inputs {
        assert_eq!(h.send(client, &bytes), ClientOutput::None, "{name}");
        assert_eq!(
            h.send(tcp_client(40000), &bytes),
            ClientOutput::None,
            "{name} over TCP"
        );
    }
    let reply = h.request(client, METHOD_BINDING, &[], None);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE, "still serving");
}

#[test]
fn truncated_and_garbage_inputs_never_panic() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    let creds = h.alice();
    let valid = h.build(
        METHOD_REFRESH,
        CLASS_REQUEST,
        &[lifetime(600)],
        Some(&creds),
    );
    for len in 0..valid.len() {
        h.send(client, &valid[..len]);
    }
    for byte in 0..=255u8 {
        let mut data = valid.clone();
        let index = usize::from(byte) % data.len();
        data[index] ^= byte;
        h.send(client, &data);
        h.send(client, &[byte; 24]);
    }
}

#[test]
fn tcp_allocation_connect_and_bind() {
    let mut config = test_config();
    config.policy = PeerPolicy::default();
    let mut h = Harness::with_config(config);
    let control = tcp_client(40000);
    h.challenge(control);
    let creds = h.alice();
    let reply = h.allocate_with(control, &[tcp_transport()], &creds);
    assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);

    let reply = peer_request(
        &mut h,
        control,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    assert_eq!(reply.error_code(), Some(400), "no channels on TCP relays");

    let txid = h.txid();
    let data = build_message(
        METHOD_CONNECT,
        CLASS_REQUEST,
        txid,
        &[xor_peer(peer(), txid)],
        Some(&creds),
        h.nonce.as_deref(),
    );
    assert_eq!(h.send(control, &data), ClientOutput::None);
    let commands = h.commands();
    let Some(Command::ConnectPeer {
        connection,
        peer: to,
        ..
    }) = commands.first().cloned()
    else {
        panic!("expected ConnectPeer, got {commands:?}");
    };
    assert_eq!(to, peer());
    let reply = peer_request(&mut h, control, METHOD_CONNECT, &[peer()], &[]);
    assert_eq!(reply.error_code(), Some(446), "one connection per peer");

    h.core
        .handle_peer_connected(h.now.instant, connection, true);
    let sent = h.complete_binds();
    let response = &sent[0].1;
    assert_eq!(response.class(), CLASS_SUCCESS_RESPONSE);
    assert_eq!(
        response.attr(ATTR_CONNECTION_ID).unwrap(),
        connection.0.to_be_bytes()
    );

    let data_connection = tcp_client(40001);
    let attrs = [(ATTR_CONNECTION_ID, connection.0.to_be_bytes().to_vec())];
    let data = h.build(METHOD_CONNECTION_BIND, CLASS_REQUEST, &attrs, Some(&creds));
    assert_eq!(
        h.send(data_connection, &data),
        ClientOutput::ConnectionBound { connection }
    );
    let data = h.build(METHOD_CONNECTION_BIND, CLASS_REQUEST, &attrs, Some(&creds));
    assert_eq!(
        h.reply(tcp_client(40002), &data).error_code(),
        Some(400),
        "bound only once"
    );
}

#[test]
fn failed_connect_is_447_and_unbound_connections_expire() {
    let mut config = test_config();
    config.policy = PeerPolicy::default();
    let mut h = Harness::with_config(config);
    let control = tcp_client(40000);
    h.challenge(control);
    let creds = h.alice();
    h.allocate_with(control, &[tcp_transport()], &creds);

    let txid = h.txid();
    let data = build_message(
        METHOD_CONNECT,
        CLASS_REQUEST,
        txid,
        &[xor_peer(peer(), txid)],
        Some(&creds),
        h.nonce.as_deref(),
    );
    h.send(control, &data);
    let Some(Command::ConnectPeer { connection, .. }) = h.commands().first().cloned() else {
        panic!("expected ConnectPeer");
    };
    h.core
        .handle_peer_connected(h.now.instant, connection, false);
    assert_eq!(h.complete_binds()[0].1.error_code(), Some(447));

    let txid = h.txid();
    let data = build_message(
        METHOD_CONNECT,
        CLASS_REQUEST,
        txid,
        &[xor_peer(peer(), txid)],
        Some(&creds),
        h.nonce.as_deref(),
    );
    h.send(control, &data);
    let Some(Command::ConnectPeer { connection, .. }) = h.commands().first().cloned() else {
        panic!("expected ConnectPeer");
    };
    h.core
        .handle_peer_connected(h.now.instant, connection, true);
    h.complete_binds();
    h.advance(Duration::from_secs(31));
    assert!(h
        .commands()
        .contains(&Command::ClosePeerConnection { connection }));
}

#[test]
fn connect_rules() {
    let mut h = Harness::new();
    let udp = udp_client(40000);
    h.allocate(udp);
    let reply = peer_request(&mut h, udp, METHOD_CONNECT, &[peer()], &[]);
    assert_eq!(reply.error_code(), Some(400), "Connect on a UDP allocation");

    let control = tcp_client(40000);
    h.challenge(control);
    let creds = h.alice();
    h.allocate_with(control, &[tcp_transport()], &creds);
    for denied in ["127.0.0.1:80", "10.0.0.1:80", "[::ffff:192.168.1.1]:80"] {
        let reply = peer_request(
            &mut h,
            control,
            METHOD_CONNECT,
            &[denied.parse().unwrap()],
            &[],
        );
        assert_eq!(reply.error_code(), Some(403), "Connect to {denied}");
    }
    let reply = peer_request(&mut h, control, METHOD_CONNECT, &[], &[]);
    assert_eq!(reply.error_code(), Some(400));
}

#[test]
fn inbound_peer_connection_needs_permission() {
    let mut h = Harness::new();
    let control = tcp_client(40000);
    h.challenge(control);
    let creds = h.alice();
    h.allocate_with(control, &[tcp_transport()], &creds);
    let relay = *h.core.by_client.get(&control).unwrap();
    assert_eq!(
        h.core.handle_peer_connection(h.now.instant, relay, peer()),
        None
    );
    peer_request(&mut h, control, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    let connection = h
        .core
        .handle_peer_connection(h.now.instant, relay, peer())
        .unwrap();
    let sent = h.complete_binds();
    let attempt = &sent[0].1;
    assert_eq!(
        attempt.view().message_type(),
        MessageType::new(METHOD_CONNECTION_ATTEMPT, CLASS_INDICATION)
    );
    assert_eq!(
        attempt.attr(ATTR_CONNECTION_ID).unwrap(),
        connection.0.to_be_bytes()
    );
    assert_eq!(attempt.address(ATTR_XOR_PEER_ADDRESS), peer());
}

#[test]
fn closing_the_client_connection_deletes_its_allocation() {
    let mut h = Harness::new();
    let client = tcp_client(40000);
    let (relay, _) = h.allocate(client);
    h.core.handle_client_closed(client);
    assert_eq!(h.commands(), vec![Command::CloseRelay { relay }]);
    assert_eq!(h.counters.snapshot().allocations, 0);
}

#[test]
fn counters_track_permissions_and_channels_on_delete() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    let other: SocketAddr = "192.0.2.8:1".parse().unwrap();
    peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[other], &[]);
    let snapshot = h.counters.snapshot();
    assert_eq!((snapshot.permissions, snapshot.channels), (2, 1));
    let creds = h.alice();
    h.request(client, METHOD_REFRESH, &[lifetime(0)], Some(&creds));
    let snapshot = h.counters.snapshot();
    assert_eq!(
        (
            snapshot.allocations,
            snapshot.permissions,
            snapshot.channels
        ),
        (0, 0, 0)
    );
    let _ = h.start;
}

#[test]
fn permissions_per_allocation_are_capped() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    h.allocate(client);
    let peers: Vec<SocketAddr> = (0..MAX_PERMISSIONS as u32)
        .map(|i| SocketAddr::from((std::net::Ipv4Addr::from(0x0808_0000 + i), 1)))
        .collect();
    for chunk in peers.chunks(64) {
        let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, chunk, &[]);
        assert_eq!(reply.class(), CLASS_SUCCESS_RESPONSE);
    }
    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &peers[..1], &[]);
    assert_eq!(
        reply.class(),
        CLASS_SUCCESS_RESPONSE,
        "refreshing is always allowed"
    );
    let reply = peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    assert_eq!(reply.error_code(), Some(508));
    let reply = peer_request(
        &mut h,
        client,
        METHOD_CHANNEL_BIND,
        &[peer()],
        &[channel_number(0x4000)],
    );
    assert_eq!(reply.error_code(), Some(508));
}

#[test]
fn oversized_peer_datagram_is_dropped() {
    let mut h = Harness::new();
    let client = udp_client(40000);
    let (relay, _) = h.allocate(client);
    peer_request(&mut h, client, METHOD_CREATE_PERMISSION, &[peer()], &[]);
    let mut out = Vec::new();
    let largest = vec![0; MAX_PEER_DATAGRAM];
    assert!(h
        .core
        .handle_peer(h.now.instant, relay, peer(), &largest, &mut out));
    let indication = MessageView::parse(&out).expect("the largest Data indication is valid");
    assert_eq!(
        indication.get(ATTR_DATA).unwrap().value.len(),
        MAX_PEER_DATAGRAM
    );
    let oversized = vec![0; MAX_PEER_DATAGRAM + 1];
    assert!(!h
        .core
        .handle_peer(h.now.instant, relay, peer(), &oversized, &mut out));
}
