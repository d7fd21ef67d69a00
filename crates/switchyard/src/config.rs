//! Effective server settings, resolved from flags, environment variables, the TOML config file
//! and built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_proto::IceServer;
use switchyard_sfu::SfuConfig;
use switchyard_signal::token::ApiKeys;
use switchyard_signal::{DuplicateIdentity, SignalConfig, DEFAULT_CLOSE_TIMEOUT};
use switchyard_turn::TurnConfig;

use crate::cli::ServeArgs;
use crate::turn_config::{self, TurnConfigError};

/// Default HTTP address.
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Default media UDP address.
pub const DEFAULT_MEDIA: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// Largest ICE timeout accepted, in seconds. The ICE agent adds the timeouts to instants and
/// to each other, which would overflow and panic for values near `u64::MAX` seconds, and an
/// hour of silence is already far past any useful timeout.
pub const MAX_ICE_TIMEOUT_SECS: u64 = 3600;

/// Largest accepted reconnect grace, outbox age, ping interval and ping timeout, in seconds
/// (one day). The session adds them to instants, which would overflow and panic for values
/// near `u64::MAX` seconds.
pub const MAX_SESSION_TIMER_SECS: u64 = 86_400;

/// Largest accepted number of SFU tasks. Each binds its own socket and spawns a task, and
/// far more tasks than CPUs only add cross-task hand-offs.
pub const MAX_MEDIA_WORKERS: usize = 256;

/// URL schemes accepted for ICE servers (RFC 7064 for STUN, RFC 7065 for TURN).
const ICE_URL_SCHEMES: [&str; 4] = ["stun:", "stuns:", "turn:", "turns:"];

/// Reason the configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("could not read config file {path}")]
    ReadFile {
        /// Path given with `--config`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a bad value.
    #[error("invalid config file {path}")]
    ParseFile {
        /// Path given with `--config`.
        path: PathBuf,
        /// The TOML parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A numeric setting is 0.
    #[error("{key} must be at least 1")]
    Zero {
        /// Flag and file key name.
        key: &'static str,
    },
    /// A setting is above its maximum.
    #[error("{key} must be at most {max}")]
    TooLarge {
        /// Flag and file key name.
        key: &'static str,
        /// The largest accepted value, in the unit of the flag.
        max: u64,
    },
    /// An ICE server URL does not start with a STUN or TURN scheme.
    #[error(
        "invalid ICE server URL {url:?}; expected it to start with stun:, stuns:, turn: or turns:"
    )]
    IceServerUrl {
        /// The rejected URL.
        url: String,
    },
    /// The TURN config file could not be read or parsed.
    #[error(transparent)]
    TurnFile(#[from] TurnConfigError),
    /// The TURN settings are inconsistent.
    #[error("invalid TURN settings")]
    Turn(#[source] switchyard_turn::ConfigError),
    /// A `turn-url` does not start with `turn:` or `turns:`.
    #[error("invalid TURN URL {url:?}; expected it to start with turn: or turns:")]
    TurnUrl {
        /// The rejected URL.
        url: String,
    },
    /// `turn-url` is set while the bundled relay, whose secret signs the credentials, is off.
    #[error("turn-url needs the bundled relay's secret; remove no-turn, or list the URLs with ice-server")]
    TurnUrlWithoutRelay,
    /// One source sets both `no-turn` and `turn-config`.
    #[error("no-turn and turn-config are both set; remove one of them")]
    TurnConflict,
    /// A TURN listener has a wildcard address, which cannot go into the URLs given to clients.
    #[error(
        "the TURN listener {addr} has a wildcard address that clients cannot connect to; \
         set external-ip in the TURN config or --public-ip"
    )]
    TurnUrlHost {
        /// The listener address.
        addr: SocketAddr,
    },
}

/// Settings of a whole server process.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// TCP address for HTTP and WebSocket signaling. Port 0 picks a free port. Default
    /// `127.0.0.1:8080`.
    pub http: SocketAddr,
    /// UDP address of the media socket. Port 0 picks a free port. Default `127.0.0.1:40000`.
    pub media: SocketAddr,
    /// Address advertised in ICE candidates instead of the media address. Default: none.
    pub public_ip: Option<IpAddr>,
    /// STUN and TURN URLs sent to clients, one `iceServers` entry each. Default: none.
    pub ice_servers: Vec<String>,
    /// Maximum size of one client message in bytes. Default 64 KiB.
    pub max_message_size: usize,
    /// Messages that may wait for one client before it is disconnected. Default 256.
    pub outbound_queue: usize,
    /// Time allowed for each of the two steps of closing a session: sending the close frame
    /// and waiting for the client's reply. Default 5 seconds.
    pub close_timeout: Duration,
    /// Time without STUN traffic from a peer before the SFU counts its connection as
    /// disconnected and stops forwarding to it. The ICE agent of webrtc-rs `rtc` 0.21.1 ignores
    /// media here, so keep this above the 2-second keepalive interval, or a healthy connection
    /// turns disconnected between keepalives. Default 5 seconds.
    pub ice_disconnected_timeout: Duration,
    /// Further time without STUN traffic before a disconnected connection fails. A failed
    /// publisher connection removes the participant's tracks from every subscriber. Default 25
    /// seconds.
    pub ice_failed_timeout: Duration,
    /// Number of SFU tasks sharing the media address. Default: the number of CPUs.
    pub media_workers: usize,
    /// Members of one room on its home SFU task before the room spreads over the others.
    /// Default 50.
    pub room_spread_after: usize,
    /// Whether the SFU offers only the SRTP profile AEAD_AES_128_GCM. Default false.
    pub srtp_aead_only: bool,
    /// Time a participant whose connection dropped stays in the room, waiting for a resume.
    /// Zero removes it at once. Default 20 seconds.
    pub reconnect_grace: Duration,
    /// Unacknowledged messages kept per session for resume. Default 1,000.
    pub outbox_messages: usize,
    /// Time an unacknowledged message is kept for resume. Default 2 minutes.
    pub outbox_age: Duration,
    /// Interval between WebSocket pings. Default 10 seconds.
    pub ping_interval: Duration,
    /// Time between the shutdown signal and closing the sessions, while `GET /readyz`
    /// answers 503 so load balancers stop sending new clients. Default 0.
    pub drain_delay: Duration,
    /// Time without any frame from a WebSocket client before its connection counts as dead.
    /// Default 30 seconds.
    pub ping_timeout: Duration,
    /// What a join does when a participant with the same identity is in the room. Default:
    /// replace the old session.
    pub duplicate_identity: DuplicateIdentity,
    /// API keys whose secrets sign join tokens. `Debug` shows the key names only. Default:
    /// none.
    pub api_keys: ApiKeys,
    /// Messages per second one connection may send on average. Default 50.
    pub max_messages_per_second: u32,
    /// Maximum number of participants in one room. Default 100.
    pub max_participants_per_room: usize,
    /// Maximum number of rooms. Default 1,000.
    pub max_rooms: usize,
    /// Largest file in bytes that clients offer each other in a peer-to-peer file transfer.
    /// Default 2 GiB.
    pub max_file_size: u64,
    /// Origins allowed to open signaling connections; empty allows any. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Settings of the bundled STUN/TURN relay, or `None` to run without it. Default: the
    /// relay's defaults, listening on 127.0.0.1:3478 over UDP and TCP.
    pub turn: Option<TurnConfig>,
    /// URLs of other relay nodes that accept the bundled relay's secret, given to clients with
    /// the bundled relay's URLs and credentials. Default: none.
    pub turn_urls: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let signal = SignalConfig::default();
        let sfu = SfuConfig::default();
        ServerConfig {
            http: DEFAULT_HTTP,
            media: DEFAULT_MEDIA,
            public_ip: None,
            ice_servers: Vec::new(),
            max_message_size: signal.max_message_size,
            outbound_queue: signal.outbound_queue,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ice_disconnected_timeout: sfu.ice_disconnected_timeout,
            ice_failed_timeout: sfu.ice_failed_timeout,
            media_workers: sfu.workers,
            room_spread_after: sfu.room_spread_after,
            srtp_aead_only: sfu.srtp_aead_only,
            reconnect_grace: signal.reconnect_grace,
            outbox_messages: signal.outbox_messages,
            outbox_age: signal.outbox_age,
            ping_interval: signal.ping_interval,
            ping_timeout: signal.ping_timeout,
            duplicate_identity: signal.duplicate_identity,
            api_keys: signal.api_keys,
            max_messages_per_second: signal.max_messages_per_second,
            drain_delay: Duration::ZERO,
            max_participants_per_room: signal.max_participants_per_room,
            max_rooms: signal.max_rooms,
            max_file_size: signal.max_file_size,
            allowed_origins: signal.allowed_origins,
            turn: Some(TurnConfig::default()),
            turn_urls: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Resolves the settings: flags and environment variables (already merged by clap) over the
    /// file named by `--config`, over the defaults.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        ServerConfig::from_merged(args.or(file))
    }

    fn from_merged(args: ServeArgs) -> Result<Self, ConfigError> {
        let defaults = ServerConfig::default();
        let turn = match (args.no_turn, &args.turn_config) {
            (true, Some(_)) => return Err(ConfigError::TurnConflict),
            (true, None) => None,
            (false, Some(path)) => Some(turn_config::load(path)?),
            (false, None) => defaults.turn.clone(),
        };
        let config = ServerConfig {
            http: args.http.unwrap_or(defaults.http),
            media: args.media.unwrap_or(defaults.media),
            public_ip: args.public_ip,
            ice_servers: args.ice_server,
            max_message_size: args.max_message_size.unwrap_or(defaults.max_message_size),
            outbound_queue: args.outbound_queue.unwrap_or(defaults.outbound_queue),
            close_timeout: defaults.close_timeout,
            ice_disconnected_timeout: args
                .ice_disconnected_timeout
                .map_or(defaults.ice_disconnected_timeout, Duration::from_secs),
            ice_failed_timeout: args
                .ice_failed_timeout
                .map_or(defaults.ice_failed_timeout, Duration::from_secs),
            media_workers: args.media_workers.unwrap_or(defaults.media_workers),
            room_spread_after: args.room_spread_after.unwrap_or(defaults.room_spread_after),
            srtp_aead_only: args.srtp_aead_only,
            reconnect_grace: args
                .reconnect_grace
                .map_or(defaults.reconnect_grace, Duration::from_secs),
            drain_delay: args
                .drain_delay
                .map_or(defaults.drain_delay, Duration::from_secs),
            outbox_messages: args.outbox_messages.unwrap_or(defaults.outbox_messages),
            outbox_age: args
                .outbox_age
                .map_or(defaults.outbox_age, Duration::from_secs),
            ping_interval: args
                .ping_interval
                .map_or(defaults.ping_interval, Duration::from_secs),
            ping_timeout: args
                .ping_timeout
                .map_or(defaults.ping_timeout, Duration::from_secs),
            duplicate_identity: args
                .duplicate_identity
                .map_or(defaults.duplicate_identity, Into::into),
            api_keys: ApiKeys::new(args.api_key.into_iter().map(|arg| (arg.key, arg.secret))),
            max_messages_per_second: args
                .max_messages_per_second
                .unwrap_or(defaults.max_messages_per_second),
            max_participants_per_room: args
                .max_participants_per_room
                .unwrap_or(defaults.max_participants_per_room),
            max_rooms: args.max_rooms.unwrap_or(defaults.max_rooms),
            max_file_size: args.max_file_size.unwrap_or(defaults.max_file_size),
            allowed_origins: args.allowed_origin,
            turn,
            turn_urls: args.turn_url,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size == 0 {
            return Err(ConfigError::Zero {
                key: "max-message-size",
            });
        }
        if self.outbound_queue == 0 {
            return Err(ConfigError::Zero {
                key: "outbound-queue",
            });
        }

        for (key, value) in [
            (
                "max-messages-per-second",
                self.max_messages_per_second as usize,
            ),
            ("max-participants-per-room", self.max_participants_per_room),
            ("max-rooms", self.max_rooms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { key });
            }
        }

        if self.outbox_messages == 0 {
            return Err(ConfigError::Zero {
                key: "outbox-messages",
            });
        }
        check_session_timer("outbox-age", self.outbox_age)?;
        check_session_timer("ping-interval", self.ping_interval)?;
        check_session_timer("ping-timeout", self.ping_timeout)?;
        if self.reconnect_grace > Duration::from_secs(MAX_SESSION_TIMER_SECS) {
            return Err(ConfigError::TooLarge {
                key: "reconnect-grace",
                max: MAX_SESSION_TIMER_SECS,
            });
        }

        check_ice_timeout("ice-disconnected-timeout", self.ice_disconnected_timeout)?;
        check_ice_timeout("ice-failed-timeout", self.ice_failed_timeout)?;
        if self.media_workers == 0 {
            return Err(ConfigError::Zero {
                key: "media-workers",
            });
        }
        if self.media_workers > MAX_MEDIA_WORKERS {
            return Err(ConfigError::TooLarge {
                key: "media-workers",
                max: MAX_MEDIA_WORKERS as u64,
            });
        }
        if self.room_spread_after == 0 {
            return Err(ConfigError::Zero {
                key: "room-spread-after",
            });
        }
        if self.drain_delay > Duration::from_secs(MAX_SESSION_TIMER_SECS) {
            return Err(ConfigError::TooLarge {
                key: "drain-delay",
                max: MAX_SESSION_TIMER_SECS,
            });
        }
        if let Some(url) = self.ice_servers.iter().find(|url| !is_ice_url(url)) {
            return Err(ConfigError::IceServerUrl { url: url.clone() });
        }
        if let Some(turn) = &self.turn {
            self.validate_turn(turn)?;
        }
        if let Some(url) = self.turn_urls.iter().find(|url| !is_turn_url(url)) {
            return Err(ConfigError::TurnUrl { url: url.clone() });
        }
        if self.turn.is_none() && !self.turn_urls.is_empty() {
            return Err(ConfigError::TurnUrlWithoutRelay);
        }
        Ok(())
    }

    /// Checks the bundled relay's settings as the relay will get them: with a secret, which is
    /// generated at start when the file has none, and with a host for every URL.
    fn validate_turn(&self, turn: &TurnConfig) -> Result<(), ConfigError> {
        let mut checked = turn.clone();
        if checked.static_auth_secrets.is_empty() {
            checked
                .static_auth_secrets
                .push("generated at start".into());
        }
        checked.validate().map_err(ConfigError::Turn)?;

        if turn.external_ip.is_some() || self.public_ip.is_some() {
            return Ok(());
        }
        let listeners = turn.listen_udp.iter().chain(&turn.listen_tcp);
        match listeners
            .chain(&turn.listen_tls)
            .find(|addr| addr.ip().is_unspecified())
        {
            Some(addr) => Err(ConfigError::TurnUrlHost { addr: *addr }),
            None => Ok(()),
        }
    }

    /// Returns true when joins without a token are allowed: no API key is configured and the
    /// HTTP listener is on a loopback address, so only this machine can reach it.
    pub fn development_mode(&self) -> bool {
        self.api_keys.is_empty() && self.http.ip().is_loopback()
    }

    /// Returns the settings of the signaling endpoint.
    pub fn signal_config(&self) -> SignalConfig {
        let ice_servers = self
            .ice_servers
            .iter()
            .map(|url| IceServer {
                urls: vec![url.clone()],
                username: None,
                credential: None,
            })
            .collect();
        SignalConfig {
            max_message_size: self.max_message_size,
            outbound_queue: self.outbound_queue,
            close_timeout: self.close_timeout,
            ice_servers,
            reconnect_grace: self.reconnect_grace,
            outbox_messages: self.outbox_messages,
            outbox_age: self.outbox_age,
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            duplicate_identity: self.duplicate_identity,
            api_keys: self.api_keys.clone(),
            allow_tokenless_join: self.development_mode(),
            max_messages_per_second: self.max_messages_per_second,
            max_participants_per_room: self.max_participants_per_room,
            max_rooms: self.max_rooms,
            allowed_origins: self.allowed_origins.clone(),
            max_file_size: self.max_file_size,
            turn_relay: None,
        }
    }

    /// Returns the settings of the SFU.
    pub fn sfu_config(&self) -> SfuConfig {
        SfuConfig {
            bind: self.media,
            public_ip: self.public_ip,
            ice_disconnected_timeout: self.ice_disconnected_timeout,
            ice_failed_timeout: self.ice_failed_timeout,
            workers: self.media_workers,
            room_spread_after: self.room_spread_after,
            srtp_aead_only: self.srtp_aead_only,
            ..SfuConfig::default()
        }
    }
}

/// Reads the serve config file. A relative `turn-config` path in it is resolved against the
/// file's directory.
fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let mut args: ServeArgs = toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source,
    })?;
    if let Some(turn_config) = args.turn_config.as_mut().filter(|file| file.is_relative()) {
        *turn_config = path.parent().unwrap_or(Path::new("")).join(&*turn_config);
    }
    Ok(args)
}

/// Rejects a zero timeout, which the ICE agent reads as "never", so a zero failed timeout would
/// keep a dead publisher's tracks in the room for good. Rejects timeouts above
/// [`MAX_ICE_TIMEOUT_SECS`].
fn check_ice_timeout(key: &'static str, timeout: Duration) -> Result<(), ConfigError> {
    if timeout.is_zero() {
        return Err(ConfigError::Zero { key });
    }
    if timeout > Duration::from_secs(MAX_ICE_TIMEOUT_SECS) {
        return Err(ConfigError::TooLarge {
            key,
            max: MAX_ICE_TIMEOUT_SECS,
        });
    }
    Ok(())
}

/// Rejects a zero or too large session timer: a zero ping interval makes tokio's interval
/// panic, and a zero outbox age or ping timeout would drop every message or connection at once.
fn check_session_timer(key: &'static str, timer: Duration) -> Result<(), ConfigError> {
    if timer.is_zero() {
        return Err(ConfigError::Zero { key });
    }
    if timer > Duration::from_secs(MAX_SESSION_TIMER_SECS) {
        return Err(ConfigError::TooLarge {
            key,
            max: MAX_SESSION_TIMER_SECS,
        });
    }
    Ok(())
}

fn is_turn_url(url: &str) -> bool {
    ["turn:", "turns:"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
}

fn is_ice_url(url: &str) -> bool {
    ICE_URL_SCHEMES
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("switchyard-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn no_settings_give_defaults() {
        let config = ServerConfig::from_args(ServeArgs::default()).unwrap();
        assert_eq!(config, ServerConfig::default());
        assert_eq!(config.http, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(
            config.media,
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.max_message_size, 65536);
        assert_eq!(config.outbound_queue, 256);
        assert_eq!(config.ice_disconnected_timeout, Duration::from_secs(5));
        assert_eq!(config.ice_failed_timeout, Duration::from_secs(25));
        assert_eq!(config.room_spread_after, 50);
        assert!(!config.srtp_aead_only);
    }

    #[test]
    fn file_values_apply_under_flags() {
        let path = temp_file(
            "file-values.toml",
            r#"
            http = "127.0.0.1:9001"
            media = "127.0.0.1:9002"
            public-ip = "203.0.113.7"
            ice-server = ["stun:127.0.0.1:3478"]
            max-message-size = 1024
            outbound-queue = 4
            ice-disconnected-timeout = 3
            ice-failed-timeout = 7
            room-spread-after = 3
            srtp-aead-only = true
            "#,
        );
        let args = ServeArgs {
            outbound_queue: Some(32),
            ice_failed_timeout: Some(9),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = ServerConfig::from_args(args).unwrap();
        std::fs::remove_file(path).unwrap();

        assert_eq!(config.http, "127.0.0.1:9001".parse::<SocketAddr>().unwrap());
        assert_eq!(
            config.media,
            "127.0.0.1:9002".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            config.public_ip,
            Some("203.0.113.7".parse::<IpAddr>().unwrap())
        );
        assert_eq!(config.ice_servers, ["stun:127.0.0.1:3478"]);
        assert_eq!(config.max_message_size, 1024);
        assert_eq!(config.outbound_queue, 32);
        assert_eq!(config.ice_disconnected_timeout, Duration::from_secs(3));
        assert_eq!(config.ice_failed_timeout, Duration::from_secs(9));
        assert_eq!(config.room_spread_after, 3);
        assert!(config.srtp_aead_only);
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let path = temp_file("unknown-key.toml", "htpp = \"127.0.0.1:1\"\n");
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let result = ServerConfig::from_args(args);
        std::fs::remove_file(path).unwrap();
        assert!(matches!(result, Err(ConfigError::ParseFile { .. })));
    }

    #[test]
    fn missing_file_is_reported() {
        let args = ServeArgs {
            config: Some(PathBuf::from("/nonexistent/switchyard.toml")),
            ..ServeArgs::default()
        };
        let result = ServerConfig::from_args(args);
        assert!(matches!(result, Err(ConfigError::ReadFile { .. })));
    }

    #[test]
    fn zero_limits_are_rejected() {
        for args in [
            ServeArgs {
                max_message_size: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                outbound_queue: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                ice_disconnected_timeout: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                ice_failed_timeout: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                room_spread_after: Some(0),
                ..ServeArgs::default()
            },
        ] {
            assert!(matches!(
                ServerConfig::from_args(args),
                Err(ConfigError::Zero { .. })
            ));
        }
    }

    #[test]
    fn ice_timeouts_above_maximum_are_rejected() {
        for args in [
            ServeArgs {
                ice_disconnected_timeout: Some(MAX_ICE_TIMEOUT_SECS + 1),
                ..ServeArgs::default()
            },
            ServeArgs {
                ice_failed_timeout: Some(u64::MAX),
                ..ServeArgs::default()
            },
        ] {
            assert!(matches!(
                ServerConfig::from_args(args),
                Err(ConfigError::TooLarge { .. })
            ));
        }
        let at_maximum = ServeArgs {
            ice_disconnected_timeout: Some(MAX_ICE_TIMEOUT_SECS),
            ice_failed_timeout: Some(MAX_ICE_TIMEOUT_SECS),
            ..ServeArgs::default()
        };
        assert!(ServerConfig::from_args(at_maximum).is_ok());
    }

    #[test]
    fn session_settings_reach_signal_config() {
        let path = temp_file(
            "session-settings.toml",
            r#"
            reconnect-grace = 3
            outbox-messages = 40
            outbox-age = 50
            ping-interval = 4
            ping-timeout = 9
            duplicate-identity = "reject"
            "#,
        );
        let args = ServeArgs {
            ping_timeout: Some(11),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = ServerConfig::from_args(args);
        std::fs::remove_file(path).unwrap();

        let signal = config.unwrap().signal_config();
        assert_eq!(signal.reconnect_grace, Duration::from_secs(3));
        assert_eq!(signal.outbox_messages, 40);
        assert_eq!(signal.outbox_age, Duration::from_secs(50));
        assert_eq!(signal.ping_interval, Duration::from_secs(4));
        assert_eq!(signal.ping_timeout, Duration::from_secs(11));
        assert_eq!(signal.duplicate_identity, DuplicateIdentity::Reject);
    }

    #[test]
    fn bad_session_settings_are_rejected() {
        let zero = [
            ServeArgs {
                outbox_messages: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                outbox_age: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                ping_interval: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                ping_timeout: Some(0),
                ..ServeArgs::default()
            },
        ];
        for args in zero {
            let result = ServerConfig::from_args(args.clone());
            assert!(matches!(result, Err(ConfigError::Zero { .. })), "{args:?}");
        }
        let too_large = ServeArgs {
            reconnect_grace: Some(u64::MAX),
            ..ServeArgs::default()
        };
        assert!(matches!(
            ServerConfig::from_args(too_large),
            Err(ConfigError::TooLarge { .. })
        ));
        let no_grace = ServeArgs {
            reconnect_grace: Some(0),
            ..ServeArgs::default()
        };
        assert!(ServerConfig::from_args(no_grace).is_ok());
    }

    #[test]
    fn development_mode_needs_loopback_and_no_keys() {
        let loopback = ServerConfig::default();
        assert!(loopback.development_mode());
        assert!(loopback.signal_config().allow_tokenless_join);

        let with_key = ServerConfig {
            api_keys: ApiKeys::new([("key1".to_owned(), "secret1".to_owned())]),
            ..ServerConfig::default()
        };
        assert!(!with_key.signal_config().allow_tokenless_join);

        let public = ServerConfig {
            http: "0.0.0.0:8080".parse().unwrap(),
            ..ServerConfig::default()
        };
        assert!(!public.signal_config().allow_tokenless_join);
    }

    #[test]
    fn zero_join_limits_are_rejected() {
        for args in [
            ServeArgs {
                max_messages_per_second: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                max_participants_per_room: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                max_rooms: Some(0),
                ..ServeArgs::default()
            },
        ] {
            let result = ServerConfig::from_args(args.clone());
            assert!(matches!(result, Err(ConfigError::Zero { .. })), "{args:?}");
        }
    }

    #[test]
    fn ice_timeouts_reach_sfu_config() {
        let config = ServerConfig {
            ice_disconnected_timeout: Duration::from_secs(1),
            ice_failed_timeout: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        let sfu = config.sfu_config();
        assert_eq!(sfu.ice_disconnected_timeout, Duration::from_secs(1));
        assert_eq!(sfu.ice_failed_timeout, Duration::from_secs(2));

        let defaults = ServerConfig::default().sfu_config();
        let sfu_defaults = SfuConfig::default();
        assert_eq!(
            defaults.ice_disconnected_timeout,
            sfu_defaults.ice_disconnected_timeout
        );
        assert_eq!(defaults.ice_failed_timeout, sfu_defaults.ice_failed_timeout);
    }

    #[test]
    fn ice_urls_need_stun_or_turn_scheme() {
        for url in ["stun:127.0.0.1", "turns:127.0.0.1:5349?transport=tcp"] {
            let args = ServeArgs {
                ice_server: vec![url.into()],
                ..ServeArgs::default()
            };
            assert!(ServerConfig::from_args(args).is_ok(), "{url}");
        }
        for url in ["http://127.0.0.1", "127.0.0.1:3478", "stun:"] {
            let args = ServeArgs {
                ice_server: vec![url.into()],
                ..ServeArgs::default()
            };
            assert!(
                matches!(
                    ServerConfig::from_args(args),
                    Err(ConfigError::IceServerUrl { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn relay_runs_by_default() {
        let config = ServerConfig::from_args(ServeArgs::default()).unwrap();
        let turn = config.turn.expect("the relay is on by default");
        let listener: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        assert_eq!(turn.listen_udp, [listener]);
        assert_eq!(turn.listen_tcp, [listener]);
        assert!(turn.static_auth_secrets.is_empty());
    }

    #[test]
    fn no_turn_disables_relay() {
        let args = ServeArgs {
            no_turn: true,
            ..ServeArgs::default()
        };
        assert_eq!(ServerConfig::from_args(args).unwrap().turn, None);
    }

    #[test]
    fn turn_config_path_resolves_against_serve_file() {
        let turn_path = temp_file("relay.toml", "listen-udp = [\"127.0.0.1:3499\"]\n");
        let turn_name = turn_path.file_name().unwrap().to_str().unwrap();
        let serve_path = temp_file(
            "serve-turn.toml",
            &format!("turn-config = \"{turn_name}\"\n"),
        );
        let args = ServeArgs {
            config: Some(serve_path.clone()),
            ..ServeArgs::default()
        };
        let config = ServerConfig::from_args(args);
        std::fs::remove_file(turn_path).unwrap();
        std::fs::remove_file(serve_path).unwrap();

        let turn = config.unwrap().turn.unwrap();
        assert_eq!(
            turn.listen_udp,
            ["127.0.0.1:3499".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn flag_overrides_file_no_turn() {
        let turn_path = temp_file("relay-flag.toml", "min-port = 50000\n");
        let serve_path = temp_file("serve-no-turn.toml", "no-turn = true\n");
        let args = ServeArgs {
            turn_config: Some(turn_path.clone()),
            config: Some(serve_path.clone()),
            ..ServeArgs::default()
        };
        let config = ServerConfig::from_args(args);
        std::fs::remove_file(turn_path).unwrap();
        std::fs::remove_file(serve_path).unwrap();

        assert_eq!(config.unwrap().turn.unwrap().min_port, 50000);
    }

    #[test]
    fn turn_conflict_in_one_file_is_rejected() {
        let path = temp_file(
            "serve-conflict.toml",
            "no-turn = true\nturn-config = \"relay.toml\"\n",
        );
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let result = ServerConfig::from_args(args);
        std::fs::remove_file(path).unwrap();
        assert!(
            matches!(result, Err(ConfigError::TurnConflict)),
            "{result:?}"
        );
    }

    #[test]
    fn bad_turn_file_is_reported() {
        let path = temp_file("relay-bad.toml", "listen-udp = \"not a list\"\n");
        let args = ServeArgs {
            turn_config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let result = ServerConfig::from_args(args);
        std::fs::remove_file(path).unwrap();
        let error = result.unwrap_err();
        assert!(matches!(error, ConfigError::TurnFile(_)), "{error:?}");
        assert!(error.to_string().contains("relay-bad.toml"), "{error}");
    }

    #[test]
    fn invalid_turn_settings_are_rejected() {
        let mut config = ServerConfig::default();
        let turn = config.turn.as_mut().unwrap();
        turn.min_port = 60000;
        turn.max_port = 50000;
        assert!(matches!(config.validate(), Err(ConfigError::Turn(_))));
    }

    #[test]
    fn wildcard_turn_listener_needs_external_address() {
        let wildcard: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        let mut config = ServerConfig::default();
        config.turn.as_mut().unwrap().listen_udp = vec![wildcard];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TurnUrlHost { addr }) if addr == wildcard
        ));

        let with_public_ip = ServerConfig {
            public_ip: Some("203.0.113.7".parse().unwrap()),
            ..config.clone()
        };
        assert!(with_public_ip.validate().is_ok());

        let mut with_external_ip = config;
        with_external_ip.turn.as_mut().unwrap().external_ip = Some("203.0.113.8".parse().unwrap());
        assert!(with_external_ip.validate().is_ok());
    }

    #[test]
    fn turn_urls_need_turn_scheme_and_relay() {
        let args = ServeArgs {
            turn_url: vec!["turns:127.0.0.2:5349?transport=tcp".into()],
            ..ServeArgs::default()
        };
        let config = ServerConfig::from_args(args).unwrap();
        assert_eq!(config.turn_urls, ["turns:127.0.0.2:5349?transport=tcp"]);

        for url in ["stun:127.0.0.2:3478", "turn:", "127.0.0.2:3478"] {
            let args = ServeArgs {
                turn_url: vec![url.into()],
                ..ServeArgs::default()
            };
            assert!(
                matches!(
                    ServerConfig::from_args(args),
                    Err(ConfigError::TurnUrl { .. })
                ),
                "{url}"
            );
        }

        let without_relay = ServeArgs {
            turn_url: vec!["turn:127.0.0.2:3478".into()],
            no_turn: true,
            ..ServeArgs::default()
        };
        assert!(matches!(
            ServerConfig::from_args(without_relay),
            Err(ConfigError::TurnUrlWithoutRelay)
        ));
    }

    #[test]
    fn ice_servers_become_one_entry_each() {
        let config = ServerConfig {
            ice_servers: vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478".into()],
            ..ServerConfig::default()
        };
        let signal = config.signal_config();
        assert_eq!(signal.ice_servers.len(), 2);
        assert_eq!(signal.ice_servers[1].urls, ["turn:127.0.0.1:3478"]);
    }
}
