//! A small TURN test client built on `rtc-stun` and `rtc-turn`, so that the server's own codec
//! is checked against another implementation, plus helpers to start servers on loopback.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use md5::Digest;
use ring::{digest, hmac};
use rtc_stun::attributes::*;
use rtc_stun::error_code::ErrorCodeAttribute;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::*;
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use rtc_turn::proto::channum::ChannelNumber;
use rtc_turn::proto::lifetime::Lifetime;
use rtc_turn::proto::peeraddr::PeerAddress;
use rtc_turn::proto::reqtrans::RequestedTransport;
use rtc_turn::proto::{PROTO_TCP, PROTO_UDP};
use switchyard_turn::{StaticUser, TurnConfig, TurnServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";
pub const REALM: &str = "switchyard.test";
/// Every wait in these tests ends after this long, so a broken server fails a test instead of
/// hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Returns a config with one static user, listeners on loopback port 0 and loopback peers
/// allowed.
pub fn loopback_config() -> TurnConfig {
    TurnConfig {
        realm: REALM.to_owned(),
        listen_udp: vec!["127.0.0.1:0".parse().unwrap()],
        listen_tcp: vec!["127.0.0.1:0".parse().unwrap()],
        users: vec![StaticUser {
            name: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }],
        allowed_peer_ranges: vec!["127.0.0.0/8".to_owned()],
        ..TurnConfig::default()
    }
}

pub async fn start(config: TurnConfig) -> TurnServer {
    switchyard_turn::start(config).await.expect("server starts")
}

/// A self-signed certificate for `localhost` written to PEM files under the temp directory.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    pub fn generate(name: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir =
            std::env::temp_dir().join(format!("switchyard-turn-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
        TestCert {
            cert_path,
            key_path,
            der: certified.cert.der().clone(),
        }
    }
}

/// Which credentials the client signs requests with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// MESSAGE-INTEGRITY with the MD5 key, as RFC 5389 clients do.
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256 with the SHA-256 key, PASSWORD-ALGORITHM and USERHASH.
    Sha256Userhash,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Conn {
    Udp(UdpSocket),
    Stream {
        stream: Box<dyn Stream>,
        buffer: Vec<u8>,
    },
}

pub struct TestClient {
    conn: Conn,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub nonce: Option<String>,
    pub mode: AuthMode,
    crypto: Arc<dyn rtc_stun::crypto::RTCCryptoProvider>,
}

/// An error response's code.
pub type Code = u16;

impl TestClient {
    fn new(conn: Conn, server: SocketAddr) -> Self {
        TestClient {
            conn,
            server,
            username: USER.to_owned(),
            password: PASSWORD.to_owned(),
            nonce: None,
            mode: AuthMode::Sha1,
            crypto: rtc_stun::crypto::default_provider().unwrap(),
        }
    }

    pub async fn udp(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server).await.unwrap();
        Self::new(Conn::Udp(socket), server)
    }

    pub async fn tcp(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self::new(
            Conn::Stream {
                stream: Box::new(stream),
                buffer: Vec::new(),
            },
            server,
        )
    }

    pub async fn tls(server: SocketAddr, cert: &TestCert) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der.clone()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(server).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        Self::new(
            Conn::Stream {
                stream: Box::new(stream),
                buffer: Vec::new(),
            },
            server,
        )
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.conn {
            Conn::Udp(socket) => socket.local_addr().ok(),
            Conn::Stream { .. } => None,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(socket) => {
                socket.send(bytes).await.unwrap();
            }
            Conn::Stream { stream, .. } => stream.write_all(bytes).await.unwrap(),
        }
    }

    /// Next datagram, or next framed message on a stream with its padding.
    pub async fn recv_raw(&mut self) -> Vec<u8> {
        tokio::time::timeout(TIMEOUT, self.recv_inner())
            .await
            .expect("message from the server in time")
    }

    /// Bytes from a stream without framing, for RFC 6062 data connections.
    pub async fn recv_raw_bytes(&mut self) -> Vec<u8> {
        let Conn::Stream { stream, buffer } = &mut self.conn else {
            panic!("raw bytes need a stream connection");
        };
        if !buffer.is_empty() {
            return std::mem::take(buffer);
        }
        let mut chunk = vec![0; 4096];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("bytes in time")
            .unwrap();
        chunk.truncate(n);
        chunk
    }

    /// Next message, or `None` when nothing arrives within `wait`.
    pub async fn try_recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(wait, self.recv_inner()).await.ok()
    }

    async fn recv_inner(&mut self) -> Vec<u8> {
        match &mut self.conn {
            Conn::Udp(socket) => {
                let mut buf = vec![0; 65536];
                let n = socket.recv(&mut buf).await.unwrap();
                buf.truncate(n);
                buf
            }
            Conn::Stream { stream, buffer } => loop {
                if let Some(len) = frame_len(buffer) {
                    if buffer.len() >= len {
                        return buffer.drain(..len).collect();
                    }
                }
                let mut chunk = [0; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the connection");
                buffer.extend_from_slice(&chunk[..n]);
            },
        }
    }

    /// Sends `message` and returns the response with the same transaction id, skipping
    /// indications and ChannelData.
    pub async fn transact(&mut self, message: &Message) -> Message {
        self.send_raw(&message.raw).await;
        loop {
            let bytes = self.recv_raw().await;
            if bytes[0] >> 6 != 0 {
                continue;
            }
            let mut response = Message::new();
            response.unmarshal_binary(&bytes).expect("response decodes");
            if response.transaction_id == message.transaction_id {
                return response;
            }
        }
    }

    /// Builds a request with `setters`, adds credentials when a nonce is known and returns
    /// the response, retrying once after a 401 challenge or a 438.
    pub async fn request(&mut self, method: Method, setters: &[&dyn Setter]) -> Message {
        for _ in 0..3 {
            let message = self.build(method, setters);
            let response = self.transact(&message).await;
            match error_code(&response) {
                Some(401) if !self.has_integrity(&message) => self.take_nonce(&response),
                Some(438) => self.take_nonce(&response),
                _ => return response,
            }
        }
        panic!("the server kept rejecting the nonce");
    }

    fn has_integrity(&self, message: &Message) -> bool {
        message.contains(ATTR_MESSAGE_INTEGRITY) || message.contains(ATTR_MESSAGE_INTEGRITY_SHA256)
    }

    pub fn take_nonce(&mut self, response: &Message) {
        let nonce =
            TextAttribute::get_from_as(response, ATTR_NONCE).expect("error response has a NONCE");
        self.nonce = Some(nonce.text);
    }

    pub fn build(&self, method: Method, setters: &[&dyn Setter]) -> Message {
        let mut message = Message::new();
        message.set_type(MessageType::new(method, CLASS_REQUEST));
        message.new_transaction_id().unwrap();
        message.write_header();
        for setter in setters {
            setter.add_to(&mut message).unwrap();
        }
        if let Some(nonce) = &self.nonce {
            self.sign(&mut message, nonce.clone());
        }
        message
    }

    fn sign(&self, message: &mut Message, nonce: String) {
        match self.mode {
            AuthMode::Sha1 => {
                TextAttribute::new(ATTR_USERNAME, self.username.clone())
                    .add_to(message)
                    .unwrap();
                TextAttribute::new(ATTR_REALM, REALM.to_owned())
                    .add_to(message)
                    .unwrap();
                TextAttribute::new(ATTR_NONCE, nonce)
                    .add_to(message)
                    .unwrap();
                MessageIntegrity::new_long_term_integrity_with_provider(
                    self.username.clone(),
                    REALM.to_owned(),
                    self.password.clone(),
                    self.crypto.crypto(),
                )
                .unwrap()
                .add_to(message)
                .unwrap();
            }
            AuthMode::Sha256Userhash => {
                message.add(ATTR_USER_HASH, &userhash(&self.username));
                TextAttribute::new(ATTR_REALM, REALM.to_owned())
                    .add_to(message)
                    .unwrap();
                TextAttribute::new(ATTR_NONCE, nonce)
                    .add_to(message)
                    .unwrap();
                message.add(ATTR_PASSWORD_ALGORITHMS, &[0, 2, 0, 0, 0, 1, 0, 0]);
                message.add(ATTR_PASSWORD_ALGORITHM, &[0, 2, 0, 0]);
                let key = self.sha256_key();
                add_integrity_sha256(message, &key);
            }
        }
    }

    pub fn md5_key(&self) -> Vec<u8> {
        let mut hasher = md5::Md5::new();
        hasher.update(format!("{}:{REALM}:{}", self.username, self.password));
        hasher.finalize().to_vec()
    }

    pub fn sha256_key(&self) -> Vec<u8> {
        let input = format!("{}:{REALM}:{}", self.username, self.password);
        digest::digest(&digest::SHA256, input.as_bytes())
            .as_ref()
            .to_vec()
    }

    /// Checks the integrity attribute of a response to this client.
    pub fn verify(&self, response: &mut Message) {
        match self.mode {
            AuthMode::Sha1 => {
                MessageIntegrity::check(response, &self.md5_key(), self.crypto.crypto())
                    .expect("MESSAGE-INTEGRITY of the response");
            }
            AuthMode::Sha256Userhash => {
                assert!(
                    check_integrity_sha256(response, &self.sha256_key()),
                    "MESSAGE-INTEGRITY-SHA256 of the response"
                );
            }
        }
    }

    /// Allocates a UDP relay; returns the relayed address or the error code.
    pub async fn allocate(&mut self) -> Result<SocketAddr, Code> {
        self.allocate_with(PROTO_UDP, &[]).await
    }

    pub async fn allocate_tcp(&mut self) -> Result<SocketAddr, Code> {
        self.allocate_with(PROTO_TCP, &[]).await
    }

    pub async fn allocate_with(
        &mut self,
        protocol: rtc_turn::proto::Protocol,
        extra: &[&dyn Setter],
    ) -> Result<SocketAddr, Code> {
        let transport = RequestedTransport { protocol };
        let mut setters: Vec<&dyn Setter> = vec![&transport];
        setters.extend_from_slice(extra);
        let mut response = self.request(METHOD_ALLOCATE, &setters).await;
        if let Some(code) = error_code(&response) {
            return Err(code);
        }
        self.verify(&mut response);
        Ok(xor_address(&response, ATTR_XOR_RELAYED_ADDRESS))
    }

    /// Refreshes the allocation; returns the granted lifetime in seconds.
    pub async fn refresh(&mut self, seconds: u64) -> Result<u64, Code> {
        let lifetime = Lifetime(Duration::from_secs(seconds));
        let mut response = self.request(METHOD_REFRESH, &[&lifetime]).await;
        if let Some(code) = error_code(&response) {
            return Err(code);
        }
        self.verify(&mut response);
        let mut granted = Lifetime::default();
        rtc_stun::message::Getter::get_from(&mut granted, &response).unwrap();
        Ok(granted.0.as_secs())
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), Code> {
        let peer = PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        };
        let response = self.request(METHOD_CREATE_PERMISSION, &[&peer]).await;
        error_code(&response).map_or(Ok(()), Err)
    }

    pub async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Result<(), Code> {
        let peer = PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        };
        let response = self
            .request(METHOD_CHANNEL_BIND, &[&ChannelNumber(number), &peer])
            .await;
        error_code(&response).map_or(Ok(()), Err)
    }

    pub async fn connect(&mut self, peer: SocketAddr) -> Result<u32, Code> {
        let peer = PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        };
        let response = self.request(METHOD_CONNECT, &[&peer]).await;
        if let Some(code) = error_code(&response) {
            return Err(code);
        }
        let id = response.get(ATTR_CONNECTION_ID).unwrap();
        Ok(u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
    }

    /// Sends a Send indication; indications carry no credentials.
    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut message = Message::new();
        message.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        message.new_transaction_id().unwrap();
        message.write_header();
        PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to(&mut message)
        .unwrap();
        message.add(ATTR_DATA, data);
        self.send_raw(&message.raw).await;
    }
}

/// Length of the message at the start of `buffer` on a stream, padding included.
fn frame_len(buffer: &[u8]) -> Option<usize> {
    if buffer.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buffer[2], buffer[3]]));
    Some(if buffer[0] >> 6 == 0 {
        20 + len
    } else {
        4 + len.div_ceil(4) * 4
    })
}

pub fn error_code(message: &Message) -> Option<u16> {
    let mut error = ErrorCodeAttribute::default();
    rtc_stun::message::Getter::get_from(&mut error, message).ok()?;
    Some(error.code.0)
}

pub fn error_reason(message: &Message) -> String {
    let mut error = ErrorCodeAttribute::default();
    rtc_stun::message::Getter::get_from(&mut error, message).unwrap();
    String::from_utf8(error.reason).unwrap()
}

pub fn xor_address(message: &Message, typ: AttrType) -> SocketAddr {
    let mut address = XorMappedAddress::default();
    address.get_from_as(message, typ).unwrap();
    SocketAddr::new(address.ip, address.port)
}

pub fn userhash(username: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, format!("{username}:{REALM}").as_bytes())
        .as_ref()
        .to_vec()
}

/// Appends MESSAGE-INTEGRITY-SHA256 the way `rtc-stun` appends MESSAGE-INTEGRITY.
fn add_integrity_sha256(message: &mut Message, key: &[u8]) {
    let length = message.length;
    message.length += 4 + 32;
    message.write_length();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &message.raw);
    message.length = length;
    message.write_length();
    message.add(ATTR_MESSAGE_INTEGRITY_SHA256, tag.as_ref());
}

fn check_integrity_sha256(message: &Message, key: &[u8]) -> bool {
    let Ok(tag) = message.get(ATTR_MESSAGE_INTEGRITY_SHA256) else {
        return false;
    };
    let raw = &message.raw;
    // The attribute is the last one, or followed only by FINGERPRINT.
    let end = if message.contains(ATTR_FINGERPRINT) {
        raw.len() - 8
    } else {
        raw.len()
    };
    let start = end - 4 - tag.len();
    let mut covered = raw[..start].to_vec();
    covered[2..4].copy_from_slice(&((end - 20) as u16).to_be_bytes());
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), &covered, &tag).is_ok()
}

/// Reads hex fixture lines: a name, then hex bytes, `TXID` standing for 12 bytes.
pub fn hex_fixture(text: &str) -> Vec<(String, Vec<u8>)> {
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

/// Binds a UDP peer on loopback.
pub async fn udp_peer() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

pub async fn peer_recv(peer: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 65536];
    let (n, from) = tokio::time::timeout(TIMEOUT, peer.recv_from(&mut buf))
        .await
        .expect("datagram at the peer in time")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}
