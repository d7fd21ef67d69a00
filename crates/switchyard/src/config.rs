//! Effective server settings, resolved from flags, environment variables, the TOML config file
//! and built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_proto::IceServer;
use switchyard_sfu::SfuConfig;
use switchyard_signal::{SignalConfig, DEFAULT_CLOSE_TIMEOUT};

use crate::cli::ServeArgs;

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
}

/// Settings of a whole server process.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Time a participant whose connection dropped stays in the room, waiting for a resume.
    /// Zero removes it at once. Default 20 seconds.
    pub reconnect_grace: Duration,
    /// Unacknowledged messages kept per session for resume. Default 1,000.
    pub outbox_messages: usize,
    /// Time an unacknowledged message is kept for resume. Default 2 minutes.
    pub outbox_age: Duration,
    /// Interval between WebSocket pings. Default 10 seconds.
    pub ping_interval: Duration,
    /// Time without any frame from a WebSocket client before its connection counts as dead.
    /// Default 30 seconds.
    pub ping_timeout: Duration,
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
            reconnect_grace: signal.reconnect_grace,
            outbox_messages: signal.outbox_messages,
            outbox_age: signal.outbox_age,
            ping_interval: signal.ping_interval,
            ping_timeout: signal.ping_timeout,
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
            reconnect_grace: defaults.reconnect_grace,
            outbox_messages: defaults.outbox_messages,
            outbox_age: defaults.outbox_age,
            ping_interval: defaults.ping_interval,
            ping_timeout: defaults.ping_timeout,
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
        check_ice_timeout("ice-disconnected-timeout", self.ice_disconnected_timeout)?;
        check_ice_timeout("ice-failed-timeout", self.ice_failed_timeout)?;
        if let Some(url) = self.ice_servers.iter().find(|url| !is_ice_url(url)) {
            return Err(ConfigError::IceServerUrl { url: url.clone() });
        }
        Ok(())
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
            ..SfuConfig::default()
        }
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source,
    })
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
