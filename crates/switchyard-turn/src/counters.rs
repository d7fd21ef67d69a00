//! Server-wide counters, shared between the core and the drivers and read by metrics exporters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::Transport;

/// Live counters of one TURN server. Gauges go up and down, `*_total` values only grow.
///
/// Updates use relaxed atomics, so a [`snapshot`](Self::snapshot) taken while traffic flows may
/// mix values from slightly different moments.
#[derive(Debug, Default)]
pub struct TurnCounters {
    allocations: AtomicU64,
    allocations_total: AtomicU64,
    permissions: AtomicU64,
    channels: AtomicU64,
    to_peer: [TrafficCounter; 3],
    to_client: [TrafficCounter; 3],
    auth_failures_total: AtomicU64,
    denied_peers_total: AtomicU64,
    quota_rejections_total: AtomicU64,
}

#[derive(Debug, Default)]
struct TrafficCounter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of [`TurnCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Allocations that exist now.
    pub allocations: u64,
    /// Allocations created since start.
    pub allocations_total: u64,
    /// Permissions that exist now, over all allocations.
    pub permissions: u64,
    /// Channel bindings that exist now, over all allocations.
    pub channels: u64,
    /// Traffic relayed from clients to peers, by the transport the client uses.
    pub relayed_to_peer: TrafficByTransport,
    /// Traffic relayed from peers to clients, by the transport the client uses.
    pub relayed_to_client: TrafficByTransport,
    /// Requests rejected with 401 because the credentials or the integrity check failed.
    pub auth_failures_total: u64,
    /// Requests and indications rejected by the peer address policy.
    pub denied_peers_total: u64,
    /// Allocate requests rejected with 486 (Allocation Quota Reached).
    pub quota_rejections_total: u64,
}

/// Relayed traffic split by the transport between client and server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficByTransport {
    /// Clients on UDP listeners.
    pub udp: Traffic,
    /// Clients on TCP listeners.
    pub tcp: Traffic,
    /// Clients on TLS listeners.
    pub tls: Traffic,
}

/// Packet and byte counts. For TCP relays (RFC 6062) a packet is one successful read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets relayed.
    pub packets: u64,
    /// Payload bytes relayed, without STUN or ChannelData framing.
    pub bytes: u64,
}

/// Direction of relayed traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From a client through its relayed address to a peer.
    ToPeer,
    /// From a peer through a relayed address to a client.
    ToClient,
}

impl TurnCounters {
    /// Copies every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            allocations: load(&self.allocations),
            allocations_total: load(&self.allocations_total),
            permissions: load(&self.permissions),
            channels: load(&self.channels),
            relayed_to_peer: traffic_by_transport(&self.to_peer),
            relayed_to_client: traffic_by_transport(&self.to_client),
            auth_failures_total: load(&self.auth_failures_total),
            denied_peers_total: load(&self.denied_peers_total),
            quota_rejections_total: load(&self.quota_rejections_total),
        }
    }

    pub(crate) fn add_relayed(&self, direction: Direction, transport: Transport, bytes: usize) {
        let counters = match direction {
            Direction::ToPeer => &self.to_peer,
            Direction::ToClient => &self.to_client,
        };
        let counter = &counters[transport_index(transport)];
        counter.packets.fetch_add(1, Ordering::Relaxed);
        counter.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn allocation_created(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.allocations_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn allocation_deleted(&self, permissions: usize, channels: usize) {
        self.allocations.fetch_sub(1, Ordering::Relaxed);
        self.permissions
            .fetch_sub(permissions as u64, Ordering::Relaxed);
        self.channels.fetch_sub(channels as u64, Ordering::Relaxed);
    }

    pub(crate) fn permission_created(&self) {
        self.permissions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn permission_deleted(&self) {
        self.permissions.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn channel_created(&self) {
        self.channels.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn channel_deleted(&self) {
        self.channels.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn auth_failure(&self) {
        self.auth_failures_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn denied_peer(&self) {
        self.denied_peers_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn quota_rejection(&self) {
        self.quota_rejections_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    }
}

fn traffic_by_transport(counters: &[TrafficCounter; 3]) -> TrafficByTransport {
    let traffic = |counter: &TrafficCounter| Traffic {
        packets: load(&counter.packets),
        bytes: load(&counter.bytes),
    };
    TrafficByTransport {
        udp: traffic(&counters[0]),
        tcp: traffic(&counters[1]),
        tls: traffic(&counters[2]),
    }
}
