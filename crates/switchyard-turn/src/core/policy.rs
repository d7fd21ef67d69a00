//! Peer address policy: the peers a client may reach through a relay.
//!
//! RFC 8656 section 21.3 leaves the policy to the operator
//! (<https://www.rfc-editor.org/rfc/rfc8656#section-21.3>). Without one, a relay on a private
//! network lets anyone on the internet reach the loopback interface, cloud metadata services
//! and internal hosts, so the defaults deny every non-public range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address range in CIDR notation, such as `10.0.0.0/8` or `fc00::/7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A string that is not an address and a prefix length.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR range {0:?}")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let invalid = || CidrError(text.to_owned());
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let network: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    const fn v4(octets: [u8; 4], prefix: u8) -> Self {
        let [a, b, c, d] = octets;
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(first_segment: u16, prefix: u8) -> Self {
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(first_segment, 0, 0, 0, 0, 0, 0, 0)),
            prefix,
        }
    }

    /// True when `ip` lies in the range. IPv4 ranges never contain IPv6 addresses; callers
    /// unwrap IPv4-mapped addresses first.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Ranges denied unless configured otherwise: "this network", loopback, link-local, private,
/// shared address space, multicast, broadcast and the unspecified addresses.
const DEFAULT_DENIED: [Cidr; 14] = [
    Cidr::v4([0, 0, 0, 0], 8),
    Cidr::v4([127, 0, 0, 0], 8),
    Cidr::v4([169, 254, 0, 0], 16),
    Cidr::v4([10, 0, 0, 0], 8),
    Cidr::v4([172, 16, 0, 0], 12),
    Cidr::v4([192, 168, 0, 0], 16),
    Cidr::v4([100, 64, 0, 0], 10),
    Cidr::v4([224, 0, 0, 0], 4),
    Cidr::v4([255, 255, 255, 255], 32),
    Cidr::v6(0, 128),
    Cidr {
        network: IpAddr::V6(Ipv6Addr::LOCALHOST),
        prefix: 128,
    },
    Cidr::v6(0xfe80, 10),
    Cidr::v6(0xfc00, 7),
    Cidr::v6(0xff00, 8),
];

/// Peer address policy of one server.
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    allowed_addresses: Vec<SocketAddr>,
    allowed_ranges: Vec<Cidr>,
    denied_ranges: Vec<Cidr>,
    own_addresses: Vec<SocketAddr>,
    relay_ips: Vec<IpAddr>,
    relay_ports: (u16, u16),
}

impl PeerPolicy {
    /// Builds a policy. `own_addresses` are the listener addresses; `relay_ips` with
    /// `relay_ports` describe every relayed transport address the server can hand out.
    pub fn new(
        allowed_addresses: Vec<SocketAddr>,
        allowed_ranges: Vec<Cidr>,
        denied_ranges: Vec<Cidr>,
        own_addresses: Vec<SocketAddr>,
        relay_ips: Vec<IpAddr>,
        relay_ports: (u16, u16),
    ) -> Self {
        PeerPolicy {
            allowed_addresses: allowed_addresses.into_iter().map(unmap_addr).collect(),
            allowed_ranges,
            denied_ranges,
            own_addresses: own_addresses.into_iter().map(unmap_addr).collect(),
            relay_ips: relay_ips.into_iter().map(unmap).collect(),
            relay_ports,
        }
    }

    /// Decides whether a relay may exchange data with `peer`, checking in this order:
    ///
    /// 1. An address in `allowed-peer-addresses` or in an `allowed-peer-ranges` range is
    ///    allowed. As with coturn's `allowed-peer-ip`, this overrides every denial below.
    /// 2. The server's own listening and relayed addresses are denied.
    /// 3. Addresses in `denied-peer-ranges` and the default ranges are denied.
    /// 4. Everything else is allowed.
    pub fn allows(&self, peer: SocketAddr) -> bool {
        let peer = unmap_addr(peer);
        let ip = peer.ip();
        if self.allowed_addresses.contains(&peer)
            || self.allowed_ranges.iter().any(|range| range.contains(ip))
        {
            return true;
        }
        if self.is_own_address(peer) {
            return false;
        }
        let mut denied = self.denied_ranges.iter().chain(DEFAULT_DENIED.iter());
        !denied.any(|range| range.contains(ip))
    }

    fn is_own_address(&self, peer: SocketAddr) -> bool {
        let (min, max) = self.relay_ports;
        let unspecified_listener =
            |own: &SocketAddr| own.ip().is_unspecified() && own.port() == peer.port();
        self.own_addresses
            .iter()
            .any(|own| *own == peer || unspecified_listener(own))
            || (self.relay_ips.contains(&peer.ip()) && (min..=max).contains(&peer.port()))
    }
}

/// Returns the IPv4 address inside an IPv4-mapped IPv6 address, or `ip` unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn unmap_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(unmap(addr.ip()), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED_PEERS: &str = include_str!("../../../../tests/fixtures/turn/denied-peers.txt");

    fn default_policy() -> PeerPolicy {
        PeerPolicy::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
            vec!["203.0.113.1:3478".parse().unwrap()],
            vec!["203.0.113.1".parse().unwrap()],
            (49152, 65535),
        )
    }

    fn fixture_peers() -> Vec<SocketAddr> {
        DENIED_PEERS
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| line.trim().parse().unwrap())
            .collect()
    }

    #[test]
    fn every_fixture_peer_is_denied() {
        let policy = default_policy();
        let peers = fixture_peers();
        assert_eq!(peers.len(), 16);
        for peer in peers {
            assert!(!policy.allows(peer), "{peer} is allowed");
        }
    }

    #[test]
    fn other_default_ranges_are_denied() {
        let policy = default_policy();
        for peer in [
            "172.31.255.255:1",
            "100.127.0.1:1",
            "239.255.255.250:1900",
            "255.255.255.255:9",
            "[ff02::1]:1",
            "[fd12::1]:1",
            "[febf::1]:1",
            "[::ffff:10.1.2.3]:1",
            "[::ffff:169.254.169.254]:80",
        ] {
            assert!(!policy.allows(peer.parse().unwrap()), "{peer} is allowed");
        }
    }

    #[test]
    fn public_peers_are_allowed() {
        let policy = default_policy();
        for peer in [
            "8.8.8.8:53",
            "172.32.0.1:1",
            "100.128.0.1:1",
            "[2001:db8::1]:1",
            "[::ffff:8.8.8.8]:53",
        ] {
            assert!(policy.allows(peer.parse().unwrap()), "{peer} is denied");
        }
    }

    #[test]
    fn own_listener_and_relay_addresses_are_denied() {
        let policy = default_policy();
        assert!(!policy.allows("203.0.113.1:3478".parse().unwrap()));
        assert!(!policy.allows("203.0.113.1:50000".parse().unwrap()));
        assert!(!policy.allows("[::ffff:203.0.113.1]:50000".parse().unwrap()));
        assert!(policy.allows("203.0.113.1:80".parse().unwrap()));
    }

    #[test]
    fn allowed_ranges_and_addresses_open_denied_ones() {
        let sfu: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let policy = PeerPolicy::new(
            vec![sfu],
            vec!["127.0.0.0/8".parse().unwrap()],
            vec!["8.8.0.0/16".parse().unwrap()],
            vec!["127.0.0.1:3478".parse().unwrap()],
            vec!["127.0.0.1".parse().unwrap()],
            (49152, 49200),
        );
        assert!(policy.allows(sfu));
        assert!(!policy.allows("10.0.0.5:40001".parse().unwrap()));
        assert!(policy.allows("127.0.0.1:3480".parse().unwrap()));
        assert!(policy.allows("[::ffff:127.0.0.1]:3480".parse().unwrap()));
        assert!(
            policy.allows("127.0.0.1:49160".parse().unwrap()),
            "an allowed range opens the server's own relayed addresses too"
        );
        assert!(!policy.allows("8.8.8.8:53".parse().unwrap()));
        assert!(policy.allows("8.9.8.8:53".parse().unwrap()));
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        assert!("::/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} parses");
        }
    }
}
