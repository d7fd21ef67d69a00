//! Signaling settings: message size limit, outbound queue length, close timeout, the ICE
//! servers handed to clients, and how sessions survive a lost connection.

use std::time::{Duration, SystemTime};

use switchyard_proto::IceServer;

use crate::relay::TurnRelay;
use crate::store::DuplicateIdentity;
use crate::token::ApiKeys;

/// Default maximum size of one client message in bytes (64 KiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Default number of messages that may wait for one client before it counts as a slow consumer.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 256;

/// Default time allowed for the close frame to reach a client and for its reply to arrive.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time a participant whose connection dropped stays in the room, waiting for a resume.
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(20);

/// Default number of unacknowledged messages kept per session for resume.
pub const DEFAULT_OUTBOX_MESSAGES: usize = 1000;

/// Default time an unacknowledged message is kept for resume.
pub const DEFAULT_OUTBOX_AGE: Duration = Duration::from_secs(120);

/// Default interval between WebSocket pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// Default time without any frame from the client before its connection counts as dead.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// Default messages per second one connection may send, on average.
pub const DEFAULT_MAX_MESSAGES_PER_SECOND: u32 = 50;

/// Default maximum number of participants in one room.
pub const DEFAULT_MAX_PARTICIPANTS_PER_ROOM: usize = 100;

/// Default maximum number of rooms on one server.
pub const DEFAULT_MAX_ROOMS: usize = 1000;

/// Default largest file clients offer each other in a peer-to-peer transfer (2 GiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// Settings for the signaling endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalConfig {
    /// Maximum size in bytes of one client message, after reassembly of fragments. A larger
    /// message gets a `message_too_large` error and close code 1009. Default 64 KiB.
    pub max_message_size: usize,
    /// Number of messages that may wait for one client. When a message arrives for a client
    /// whose queue is full, the connection closes with code 4008. Values below 1 count as 1.
    /// Default 256.
    ///
    /// NOTE: the writer task drains the queue while the session handles input, but the session
    /// may handle up to about 128 inputs (tokio's cooperative budget) before the writer gets
    /// to run. A queue shorter than that can fill during a burst even when the client reads.
    pub outbound_queue: usize,
    /// Time allowed, when a session ends, for the queued messages and the close frame to be
    /// written and for the client's close reply to arrive. The connection is dropped after it.
    /// Default 5 seconds.
    pub close_timeout: Duration,
    /// STUN and TURN servers sent to every client in `joined.iceServers`. Default: none.
    pub ice_servers: Vec<IceServer>,
    /// TURN relay whose fresh credentials each client gets in `joined.iceServers`, before
    /// [`SignalConfig::ice_servers`]. Default: none.
    pub turn_relay: Option<TurnRelay>,
    /// Time a participant whose connection dropped without `leave` stays in the room, so that
    /// a `resume` within it is invisible to the others. Zero removes it at once. Default 20
    /// seconds.
    pub reconnect_grace: Duration,
    /// Number of unacknowledged messages kept per session for resume. Default 1,000.
    pub outbox_messages: usize,
    /// Time an unacknowledged message is kept for resume. Default 2 minutes.
    pub outbox_age: Duration,
    /// Interval between WebSocket pings. Default 10 seconds.
    pub ping_interval: Duration,
    /// Time without any frame from a WebSocket client, pongs included, before the connection
    /// counts as dead. Default 30 seconds.
    pub ping_timeout: Duration,
    /// What a join does when a participant with the same identity is in the room. Default:
    /// replace the old session.
    pub duplicate_identity: DuplicateIdentity,
    /// API keys whose secrets sign join tokens. Default: none.
    pub api_keys: ApiKeys,
    /// Whether a `join` without a token is admitted, with every grant. The binary allows it
    /// only without API keys and with the HTTP listener on loopback. Default: true.
    pub allow_tokenless_join: bool,
    /// Messages per second one connection may send on average, with bursts of twice as many.
    /// Default 50.
    pub max_messages_per_second: u32,
    /// Maximum number of participants in one room. Default 100.
    pub max_participants_per_room: usize,
    /// Maximum number of rooms on this server. Default 1,000.
    pub max_rooms: usize,
    /// Values of the `Origin` header accepted on WebSocket upgrades. Empty accepts any
    /// origin, and requests without the header. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Largest file in bytes that clients offer each other in a peer-to-peer file transfer,
    /// handed to them in `joined.maxFileSize`. Files never pass through the server, so the
    /// clients enforce it. Default 2 GiB.
    pub max_file_size: u64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ice_servers: Vec::new(),
            turn_relay: None,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            outbox_messages: DEFAULT_OUTBOX_MESSAGES,
            outbox_age: DEFAULT_OUTBOX_AGE,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            duplicate_identity: DuplicateIdentity::Replace,
            api_keys: ApiKeys::default(),
            allow_tokenless_join: true,
            max_messages_per_second: DEFAULT_MAX_MESSAGES_PER_SECOND,
            max_participants_per_room: DEFAULT_MAX_PARTICIPANTS_PER_ROOM,
            max_rooms: DEFAULT_MAX_ROOMS,
            allowed_origins: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl SignalConfig {
    /// Returns the `joined.iceServers` list for a participant joining at `now`: the TURN relay
    /// with credentials minted for `participant_id`, if there is one, then the configured
    /// servers.
    pub fn ice_servers_for(&self, participant_id: &str, now: SystemTime) -> Vec<IceServer> {
        let relay = self
            .turn_relay
            .as_ref()
            .filter(|relay| !relay.urls.is_empty())
            .map(|relay| relay.ice_server(participant_id, now));
        relay
            .into_iter()
            .chain(self.ice_servers.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(url: &str) -> IceServer {
        IceServer {
            urls: vec![url.into()],
            username: None,
            credential: None,
        }
    }

    #[test]
    fn relay_comes_before_configured_servers() {
        let config = SignalConfig {
            ice_servers: vec![stun("stun:127.0.0.1:3478")],
            turn_relay: Some(TurnRelay {
                urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                secret: "secret".into(),
                lifetime: Duration::from_secs(60),
            }),
            ..SignalConfig::default()
        };
        let servers = config.ice_servers_for("ada", SystemTime::UNIX_EPOCH);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["turn:127.0.0.1:3478?transport=udp"]);
        assert_eq!(servers[0].username.as_deref(), Some("60:ada"));
        assert_eq!(servers[1], stun("stun:127.0.0.1:3478"));
    }

    #[test]
    fn relay_without_urls_is_left_out() {
        let config = SignalConfig {
            turn_relay: Some(TurnRelay {
                urls: Vec::new(),
                secret: "secret".into(),
                lifetime: Duration::from_secs(60),
            }),
            ..SignalConfig::default()
        };
        assert!(config
            .ice_servers_for("ada", SystemTime::UNIX_EPOCH)
            .is_empty());
    }
}
