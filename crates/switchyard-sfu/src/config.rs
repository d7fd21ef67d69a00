//! SFU settings.

use std::net::{IpAddr, SocketAddr};

/// Settings for the media socket and the peer connections.
#[derive(Clone, Debug)]
pub struct SfuConfig {
    /// Address of the one UDP socket that carries all media. Default `127.0.0.1:40000`.
    pub bind: SocketAddr,
    /// Address advertised in the server's ICE candidate instead of the bound address, for a
    /// server behind 1:1 NAT. Default: none, the bound address is advertised.
    pub public_ip: Option<IpAddr>,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 40000)),
            public_ip: None,
        }
    }
}
