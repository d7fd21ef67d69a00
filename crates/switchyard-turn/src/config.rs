//! Relay settings, read from TOML with coturn-like kebab-case keys.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// A user with a fixed password. Its `Debug` output hides the password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// Settings of one relay node. Every field has a default, so an empty file is a valid config.
/// Its `Debug` output hides passwords and secrets, so it can be logged.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TurnConfig {
    /// Realm of the long-term credential mechanism. Default `switchyard`.
    pub realm: String,
    /// UDP listening addresses. Default `127.0.0.1:3478`.
    pub listen_udp: Vec<SocketAddr>,
    /// TCP listening addresses. Default `127.0.0.1:3478`.
    pub listen_tcp: Vec<SocketAddr>,
    /// TLS-over-TCP listening addresses; need `tls-cert` and `tls-key`. Default none.
    pub listen_tls: Vec<SocketAddr>,
    /// PEM certificate chain for TLS listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS listeners.
    pub tls_key: Option<PathBuf>,
    /// Local IPv4 address that relay sockets bind to. Default `127.0.0.1`.
    pub relay_ip: IpAddr,
    /// Local IPv6 address for IPv6 relays (RFC 6156). Default none: IPv6 allocations get 440.
    pub relay_ipv6: Option<IpAddr>,
    /// Address advertised in XOR-RELAYED-ADDRESS instead of `relay-ip`, for a relay behind 1:1
    /// NAT. Default none.
    pub external_ip: Option<IpAddr>,
    /// Lowest relay port. Default 49152.
    pub min_port: u16,
    /// Highest relay port. Default 65535.
    pub max_port: u16,
    /// Require authentication. Default true; only a test setup should turn it off.
    pub auth: bool,
    /// Shared secrets for time-limited credentials compatible with coturn's
    /// `static-auth-secret`: username `<expiry unix time>:<user>`, password
    /// base64(HMAC-SHA1(secret, username)). Several may be active during a rotation; the first
    /// one signs credentials that this node hands out. Default none.
    pub static_auth_secrets: Vec<String>,
    /// Users with fixed passwords. Default none.
    pub users: Vec<StaticUser>,
    /// Validity of credentials this node hands out, in seconds. Default 86400.
    pub credential_lifetime: u64,
    /// Allocation lifetime when the client asks for none, in seconds. Default 600.
    pub default_allocation_lifetime: u32,
    /// Maximum allocation lifetime granted, in seconds. Default 3600.
    pub max_allocation_lifetime: u32,
    /// Permission lifetime, in seconds. Default 300.
    pub permission_lifetime: u32,
    /// Channel binding lifetime, in seconds. Default 600.
    pub channel_lifetime: u32,
    /// Allocations one user may hold at once; 0 means no limit. Default 10.
    pub user_quota: u32,
    /// Maximum allocations on the node at once; 0 means no limit. Default 10000.
    pub total_quota: u32,
    /// Relayed bytes per second allowed per allocation, each direction; 0 means no limit.
    /// Default 0.
    pub max_bytes_per_second: u64,
    /// Peer address ranges (CIDR) that are allowed even though the default policy denies them,
    /// for example `127.0.0.0/8` in tests. Default none.
    pub allowed_peer_ranges: Vec<String>,
    /// Peer addresses (IP and port) that are always allowed, checked before every range. The
    /// embedding server puts the SFU's media address here. Default none.
    pub allowed_peer_addresses: Vec<SocketAddr>,
    /// Extra peer address ranges (CIDR) to deny. Default none.
    pub denied_peer_ranges: Vec<String>,
    /// Address of the standalone node's `/metrics` endpoint. Default none.
    pub metrics_listen: Option<SocketAddr>,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("realm", &self.realm)
            .field("listen_udp", &self.listen_udp)
            .field("listen_tcp", &self.listen_tcp)
            .field("listen_tls", &self.listen_tls)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("relay_ip", &self.relay_ip)
            .field("relay_ipv6", &self.relay_ipv6)
            .field("external_ip", &self.external_ip)
            .field("min_port", &self.min_port)
            .field("max_port", &self.max_port)
            .field("auth", &self.auth)
            .field(
                "static_auth_secrets",
                &format_args!("<{} hidden>", self.static_auth_secrets.len()),
            )
            .field("users", &self.users)
            .field("credential_lifetime", &self.credential_lifetime)
            .field(
                "default_allocation_lifetime",
                &self.default_allocation_lifetime,
            )
            .field("max_allocation_lifetime", &self.max_allocation_lifetime)
            .field("permission_lifetime", &self.permission_lifetime)
            .field("channel_lifetime", &self.channel_lifetime)
            .field("user_quota", &self.user_quota)
            .field("total_quota", &self.total_quota)
            .field("max_bytes_per_second", &self.max_bytes_per_second)
            .field("allowed_peer_ranges", &self.allowed_peer_ranges)
            .field("allowed_peer_addresses", &self.allowed_peer_addresses)
            .field("denied_peer_ranges", &self.denied_peer_ranges)
            .field("metrics_listen", &self.metrics_listen)
            .finish()
    }
}

impl std::fmt::Debug for StaticUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUser")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            realm: "switchyard".to_owned(),
            listen_udp: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            listen_tcp: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            listen_tls: Vec::new(),
            tls_cert: None,
            tls_key: None,
            relay_ip: IpAddr::from([127, 0, 0, 1]),
            relay_ipv6: None,
            external_ip: None,
            min_port: 49152,
            max_port: 65535,
            auth: true,
            static_auth_secrets: Vec::new(),
            users: Vec::new(),
            credential_lifetime: 86400,
            default_allocation_lifetime: 600,
            max_allocation_lifetime: 3600,
            permission_lifetime: 300,
            channel_lifetime: 600,
            user_quota: 10,
            total_quota: 10000,
            max_bytes_per_second: 0,
            allowed_peer_ranges: Vec::new(),
            allowed_peer_addresses: Vec::new(),
            denied_peer_ranges: Vec::new(),
            metrics_listen: None,
        }
    }
}

/// An inconsistent [`TurnConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `min-port` is above `max-port`, or zero.
    #[error(
        "invalid relay port range {min}-{max}: min-port must be at least 1 and not above max-port"
    )]
    PortRange {
        /// `min-port`.
        min: u16,
        /// `max-port`.
        max: u16,
    },
    /// A CIDR string in `allowed-peer-ranges` or `denied-peer-ranges` does not parse.
    #[error("invalid peer range {range:?}: expected an address and a prefix length, like 10.0.0.0/8 or fc00::/7")]
    PeerRange {
        /// The string from the config.
        range: String,
    },
    /// TLS listeners are configured without `tls-cert` and `tls-key`.
    #[error("listen-tls needs both tls-cert and tls-key")]
    MissingTlsFiles,
    /// `auth` is on but no user or secret is configured.
    #[error("auth is on but neither users nor static-auth-secrets are set")]
    NoCredentials,
    /// A lifetime is zero, or the default allocation lifetime exceeds the maximum.
    #[error("invalid lifetimes: every lifetime must be at least 1 s and default-allocation-lifetime at most max-allocation-lifetime")]
    Lifetimes,
    /// `relay-ipv6` is set to an IPv4 address, or `relay-ip` to an IPv6 one.
    #[error("relay-ip must be an IPv4 address and relay-ipv6 an IPv6 address")]
    RelayFamily,
    /// A relay address is unspecified (0.0.0.0 or ::), so clients would get an unusable
    /// relayed address.
    #[error("relay-ip and relay-ipv6 must be specific addresses; with relay-ip 0.0.0.0, set external-ip to the address clients reach")]
    UnspecifiedRelay,
}

impl TurnConfig {
    /// Checks the settings that deserialization cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_port == 0 || self.min_port > self.max_port {
            return Err(ConfigError::PortRange {
                min: self.min_port,
                max: self.max_port,
            });
        }
        if !self.listen_tls.is_empty() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError::MissingTlsFiles);
        }
        if self.auth && self.users.is_empty() && self.static_auth_secrets.is_empty() {
            return Err(ConfigError::NoCredentials);
        }
        let lifetimes = [
            self.default_allocation_lifetime,
            self.max_allocation_lifetime,
            self.permission_lifetime,
            self.channel_lifetime,
        ];
        if lifetimes.contains(&0) || self.default_allocation_lifetime > self.max_allocation_lifetime
        {
            return Err(ConfigError::Lifetimes);
        }
        if !self.relay_ip.is_ipv4() || self.relay_ipv6.is_some_and(|ip| !ip.is_ipv6()) {
            return Err(ConfigError::RelayFamily);
        }
        let unspecified_v4 = self.relay_ip.is_unspecified() && self.external_ip.is_none();
        if unspecified_v4 || self.relay_ipv6.is_some_and(|ip| ip.is_unspecified()) {
            return Err(ConfigError::UnspecifiedRelay);
        }
        let ranges = self
            .allowed_peer_ranges
            .iter()
            .chain(&self.denied_peer_ranges);
        for range in ranges {
            if range.parse::<crate::core::Cidr>().is_err() {
                return Err(ConfigError::PeerRange {
                    range: range.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let config = TurnConfig {
            static_auth_secrets: vec!["rotation-secret".to_owned()],
            users: vec![StaticUser {
                name: "ada".to_owned(),
                password: "user-password".to_owned(),
            }],
            ..TurnConfig::default()
        };
        let output = format!("{config:?}");
        assert!(!output.contains("rotation-secret"), "{output}");
        assert!(!output.contains("user-password"), "{output}");
        assert!(output.contains("ada"), "{output}");
    }

    #[test]
    fn kebab_case_keys_parse() {
        let config: TurnConfig = toml::from_str(
            r#"
            allowed-peer-addresses = ["10.0.0.5:40000"]
            allowed-peer-ranges = ["127.0.0.0/8"]
            max-bytes-per-second = 1000
            "#,
        )
        .unwrap();
        assert_eq!(
            config.allowed_peer_addresses,
            vec!["10.0.0.5:40000".parse().unwrap()]
        );
        assert!(toml::from_str::<TurnConfig>("allowed-peer-address = []").is_err());
    }

    #[test]
    fn validation_rejects_inconsistent_settings() {
        let valid = TurnConfig {
            auth: false,
            ..TurnConfig::default()
        };
        assert_eq!(valid.validate(), Ok(()));
        let behind_nat = TurnConfig {
            relay_ip: "0.0.0.0".parse().unwrap(),
            external_ip: Some("203.0.113.7".parse().unwrap()),
            ..valid.clone()
        };
        assert_eq!(behind_nat.validate(), Ok(()));
        let cases = [
            (
                TurnConfig {
                    min_port: 2000,
                    max_port: 1000,
                    ..valid.clone()
                },
                "port range",
            ),
            (
                TurnConfig {
                    auth: true,
                    ..valid.clone()
                },
                "no credentials",
            ),
            (
                TurnConfig {
                    listen_tls: vec!["127.0.0.1:5349".parse().unwrap()],
                    ..valid.clone()
                },
                "TLS files",
            ),
            (
                TurnConfig {
                    permission_lifetime: 0,
                    ..valid.clone()
                },
                "lifetimes",
            ),
            (
                TurnConfig {
                    relay_ip: "::1".parse().unwrap(),
                    ..valid.clone()
                },
                "relay family",
            ),
            (
                TurnConfig {
                    denied_peer_ranges: vec!["10.0.0.0".to_owned()],
                    ..valid.clone()
                },
                "peer range",
            ),
            (
                TurnConfig {
                    relay_ip: "0.0.0.0".parse().unwrap(),
                    ..valid.clone()
                },
                "unspecified relay",
            ),
            (
                TurnConfig {
                    relay_ipv6: Some("::".parse().unwrap()),
                    ..valid.clone()
                },
                "unspecified IPv6 relay",
            ),
        ];
        for (config, case) in cases {
            assert!(config.validate().is_err(), "{case}");
        }
    }
}
