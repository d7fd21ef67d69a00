//! The STUN/TURN relay that `serve` runs next to the SFU: its shared secret, the peer address it
//! must always allow, and the URLs that clients get in `joined.iceServers`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use switchyard_signal::TurnRelay;
use switchyard_turn::{TurnConfig, TurnError, TurnServer};
use tracing::info;

/// Bytes of randomness in a generated secret, written as hex.
const GENERATED_SECRET_BYTES: usize = 32;

/// Listener addresses of the bundled relay, with the ports the system picked where the config
/// had port 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAddrs {
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// TLS-over-TCP listeners.
    pub tls: Vec<SocketAddr>,
}

/// A started bundled relay and what the signaling server hands out for it.
pub(crate) struct EmbeddedRelay {
    pub server: TurnServer,
    pub addrs: RelayAddrs,
    pub credentials: TurnRelay,
}

/// Starts the relay of `config` for an SFU that advertises `sfu_media` in its candidates.
///
/// The relay always allows `sfu_media` as a peer, so that a client can reach the SFU through
/// it even where the peer policy denies that address, as it denies loopback. When the config
/// has no `static-auth-secrets`, a random secret is generated; it is never logged. When the
/// config has no `external-ip`, `public_ip` takes its place. Clients get `other_relay_urls`
/// after the relay's own URLs, with the same credentials.
pub(crate) async fn start(
    mut config: TurnConfig,
    sfu_media: SocketAddr,
    public_ip: Option<IpAddr>,
    other_relay_urls: &[String],
) -> Result<EmbeddedRelay, TurnError> {
    if config.static_auth_secrets.is_empty() {
        config.static_auth_secrets.push(generate_secret());
        info!("generated a random TURN secret for this run");
    }
    if !config.allowed_peer_addresses.contains(&sfu_media) {
        config.allowed_peer_addresses.push(sfu_media);
    }
    config.external_ip = config.external_ip.or(public_ip);

    let secret = config.static_auth_secrets[0].clone();
    let lifetime = Duration::from_secs(config.credential_lifetime);
    let external_ip = config.external_ip;
    crate::turn_config::log_effective(&config, "starting the bundled TURN relay");

    let server = switchyard_turn::start(config).await?;
    let addrs = RelayAddrs {
        udp: server.udp_addrs(),
        tcp: server.tcp_addrs(),
        tls: server.tls_addrs(),
    };
    let mut urls = relay_urls(&addrs, external_ip);
    urls.extend(other_relay_urls.iter().cloned());
    let credentials = TurnRelay {
        urls,
        secret,
        lifetime,
    };
    info!(urls = ?credentials.urls, "bundled TURN relay listening");
    Ok(EmbeddedRelay {
        server,
        addrs,
        credentials,
    })
}

/// Returns one URL per listener (RFC 7065): `turn:HOST:PORT?transport=udp` for UDP,
/// `turn:HOST:PORT?transport=tcp` for TCP and `turns:HOST:PORT?transport=tcp` for TLS. HOST is
/// `external_ip` when set, else the listener's address. Duplicates are listed once.
pub(crate) fn relay_urls(addrs: &RelayAddrs, external_ip: Option<IpAddr>) -> Vec<String> {
    let listeners = [
        ("turn", "udp", &addrs.udp),
        ("turn", "tcp", &addrs.tcp),
        ("turns", "tcp", &addrs.tls),
    ];
    let mut urls = Vec::new();
    for (scheme, transport, listener_addrs) in listeners {
        for addr in listener_addrs {
            let host = SocketAddr::new(external_ip.unwrap_or(addr.ip()), addr.port());
            // `SocketAddr` puts IPv6 addresses in brackets, as URLs need.
            let url = format!("{scheme}:{host}?transport={transport}");
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}

fn generate_secret() -> String {
    let bytes: [u8; GENERATED_SECRET_BYTES] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(udp: &[&str], tcp: &[&str], tls: &[&str]) -> RelayAddrs {
        let parse = |list: &[&str]| list.iter().map(|addr| addr.parse().unwrap()).collect();
        RelayAddrs {
            udp: parse(udp),
            tcp: parse(tcp),
            tls: parse(tls),
        }
    }

    #[test]
    fn urls_use_listener_addresses() {
        let addrs = addrs(
            &["127.0.0.1:3478"],
            &["127.0.0.1:3479"],
            &["127.0.0.1:5349"],
        );
        assert_eq!(
            relay_urls(&addrs, None),
            [
                "turn:127.0.0.1:3478?transport=udp",
                "turn:127.0.0.1:3479?transport=tcp",
                "turns:127.0.0.1:5349?transport=tcp",
            ]
        );
    }

    #[test]
    fn urls_use_external_ip() {
        let addrs = addrs(
            &["10.0.0.5:3478", "[fd00::5]:3478"],
            &["10.0.0.5:3478"],
            &[],
        );
        let external: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            relay_urls(&addrs, Some(external)),
            [
                "turn:203.0.113.7:3478?transport=udp",
                "turn:203.0.113.7:3478?transport=tcp",
            ]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let addrs = addrs(&["[::1]:3478"], &[], &[]);
        assert_eq!(relay_urls(&addrs, None), ["turn:[::1]:3478?transport=udp"]);
    }

    #[test]
    fn generated_secrets_differ() {
        let first = generate_secret();
        assert_eq!(first.len(), 2 * GENERATED_SECRET_BYTES);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, generate_secret());
    }
}
