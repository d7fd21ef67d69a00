//! SFU settings.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Settings for the media socket and the peer connections.
#[derive(Clone, Debug)]
pub struct SfuConfig {
    /// Address of the one UDP socket that carries all media. Default `127.0.0.1:40000`.
    pub bind: SocketAddr,
    /// Address advertised in the server's ICE candidate instead of the bound address, for a
    /// server behind 1:1 NAT. Default: none, the bound address is advertised.
    pub public_ip: Option<IpAddr>,
    /// Time without STUN traffic from a peer before its connection counts as disconnected. The
    /// ICE agent of `rtc` 0.21.1 does not count media, so keep this above
    /// `ice_keepalive_interval`, or a healthy connection turns disconnected between keepalives.
    /// Default 5 seconds.
    pub ice_disconnected_timeout: Duration,
    /// Further time without STUN traffic before a disconnected connection fails. A failed
    /// publisher connection removes the participant's tracks from every subscriber. Default 25
    /// seconds.
    pub ice_failed_timeout: Duration,
    /// Interval of ICE keepalives on an idle connection. Default 2 seconds.
    pub ice_keepalive_interval: Duration,
    /// Number of SFU tasks, each with its own socket on the media address (`SO_REUSEPORT`).
    /// Participants are spread over them by room. Default: the number of CPUs.
    pub workers: usize,
    /// Members of one room that its home task takes before the room spreads over the other
    /// tasks. A spread room's RTP crosses between tasks, which cost up to 40 % more CPU per
    /// forwarded packet in `bench/sfu-vs-janus.sh` on 2 CPUs. So rooms whose fan-out fits one
    /// core stay on one task. Default 50.
    pub room_spread_after: usize,
    /// Whether the DTLS handshake offers only the SRTP profile `SRTP_AEAD_AES_128_GCM`. Chrome
    /// lists AES-CM with HMAC-SHA1 first and AES-256-GCM before AES-128-GCM, so without this it
    /// uses AES-CM, and with every AES-GCM profile offered it uses AES-256-GCM. A client
    /// without AES-128-GCM cannot connect then. Default false.
    pub srtp_aead_only: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 40000)),
            public_ip: None,
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(25),
            ice_keepalive_interval: Duration::from_secs(2),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            room_spread_after: 50,
            srtp_aead_only: false,
        }
    }
}
