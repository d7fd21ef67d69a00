//! One benchmark client: a WebSocket from a chosen loopback source address, the `join`
//! handshake, acknowledgements, and cheap scanning of server frames.
//!
//! Frames are scanned for the few fields the benchmarks need instead of being parsed as JSON,
//! so that the load generator stays cheap next to the server it measures. Both servers put
//! `seq` first when they send it, and write chat fields in the order of
//! `switchyard_proto::ServerMessage::Chat`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket over plain TCP.
pub type Socket = WebSocketStream<TcpStream>;

/// Messages a client receives before it acknowledges them, as the web client does.
pub const ACK_EVERY: u64 = 16;

/// Time after which a client acknowledges fewer than [`ACK_EVERY`] messages.
pub const ACK_DELAY: Duration = Duration::from_millis(250);

/// Where clients connect and from which source addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// Server address.
    pub server: SocketAddr,
    /// Path of the WebSocket endpoint, for example `/v1/ws`.
    pub path: String,
    /// Source addresses, used in turn. Each address has its own range of ephemeral ports.
    pub sources: Vec<IpAddr>,
}

impl Target {
    /// Returns the source address of client number `index`.
    pub fn source(&self, index: usize) -> IpAddr {
        self.sources[index % self.sources.len()]
    }
}

/// Returns `count` loopback source addresses: 127.0.1.1, 127.0.1.2 and so on.
pub fn loopback_sources(count: u8) -> Vec<IpAddr> {
    (1..=count.max(1))
        .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 1, n)))
        .collect()
}

/// Opens a WebSocket to `target` from `source`, with small buffers so that many clients fit
/// in the load generator's memory.
pub async fn connect(target: &Target, source: IpAddr) -> anyhow::Result<Socket> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding a client socket to {source}"))?;
    let stream = socket
        .connect(target.server)
        .await
        .with_context(|| format!("connecting from {source} to {}", target.server))?;
    stream.set_nodelay(true)?;

    let url = format!("ws://{}{}", target.server, target.path);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(socket)
}

/// Sends `join` for `room` and waits for `joined`. Returns the highest `seq` seen, which the
/// caller acknowledges later.
pub async fn join(socket: &mut Socket, room: &str, name: &str) -> anyhow::Result<u64> {
    let join = format!(r#"{{"type":"join","id":"j","room":"{room}","name":"{name}"}}"#);
    socket.send(Message::text(join)).await?;
    let mut last_seq = 0;
    loop {
        let frame = socket
            .next()
            .await
            .context("connection closed before joined")??;
        let Message::Text(text) = frame else {
            continue;
        };
        let text = text.as_str();
        if let Some(seq) = seq(text) {
            last_seq = last_seq.max(seq);
        }
        match message_type(text) {
            Some("joined") => return Ok(last_seq),
            Some("error") => bail!("join rejected: {text}"),
            _ => {}
        }
    }
}

/// Builds the `ack` for every message up to `seq`.
pub fn ack(seq: u64) -> Message {
    Message::text(format!(r#"{{"type":"ack","seq":{seq}}}"#))
}

/// Returns the `seq` of a frame that starts with it.
pub fn seq(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"seq":"#)?;
    leading_number(rest)
}

/// Returns the value of the first `"type"` field.
pub fn message_type(text: &str) -> Option<&str> {
    let start = text.find(r#""type":""#)? + r#""type":""#.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

/// Returns the number at the start of `text`.
pub fn leading_number(text: &str) -> Option<u64> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_read_from_the_start() {
        assert_eq!(seq(r#"{"seq":42,"type":"chat"}"#), Some(42));
        assert_eq!(seq(r#"{"type":"chat"}"#), None);
    }

    #[test]
    fn type_is_the_first_type_field() {
        let text = r#"{"seq":1,"type":"chat","from":"a","text":"\"type\":\"x\""}"#;
        assert_eq!(message_type(text), Some("chat"));
        assert_eq!(message_type("{}"), None);
    }

    #[test]
    fn sources_cycle() {
        let target = Target {
            server: "127.0.0.1:1".parse().unwrap(),
            path: "/".into(),
            sources: loopback_sources(2),
        };
        assert_eq!(target.source(0), target.source(2));
        assert_ne!(target.source(0), target.source(1));
    }
}
