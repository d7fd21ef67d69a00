//! One allocation: its relayed address, lifetime, permissions and channel bindings
//! (<https://www.rfc-editor.org/rfc/rfc8656#section-2.2>).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::auth::LongTermKey;
use super::limits::TokenBucket;
use super::policy::unmap;
use super::{ClientAddr, RelayId};
use crate::stun::Integrity;

/// A channel number stays tied to its peer for this long after the binding expires, so that
/// late ChannelData cannot reach another peer
/// (<https://www.rfc-editor.org/rfc/rfc8656#section-12>).
pub const CHANNEL_QUARANTINE: Duration = Duration::from_secs(300);

/// Transport between the relay and peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayTransport {
    /// UDP relay (RFC 8656).
    Udp,
    /// TCP relay (RFC 6062).
    Tcp,
}

/// A channel binding.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    /// Peer transport address.
    pub peer: SocketAddr,
    /// Time the binding ends unless refreshed.
    pub expires: Instant,
    /// False once the sweep has counted the binding as expired.
    pub counted: bool,
}

/// Allocate request that waits for the driver to bind the relay socket.
#[derive(Clone, Debug)]
pub struct PendingAllocate {
    /// Transaction id of the request.
    pub transaction_id: [u8; 12],
    /// Lifetime granted.
    pub lifetime: Duration,
    /// Integrity attribute the request used and the key to sign the response with; `None`
    /// when authentication is off.
    pub auth: Option<(Integrity, LongTermKey)>,
    /// Whether the request had FINGERPRINT.
    pub fingerprint: bool,
    /// RESERVATION-TOKEN to return, set once the relay and the reserved port are bound.
    pub reservation_token: Option<[u8; 8]>,
    /// Whether the request had EVEN-PORT, so that every port tried is even.
    pub even_port: bool,
    /// Whether EVEN-PORT had the R bit: the next port is bound and held as well, for a later
    /// Allocate with RESERVATION-TOKEN.
    pub reserve_next: bool,
    /// Bind attempts so far.
    pub attempts: u32,
    /// Whether the port is one the client reserved earlier with a token.
    pub reserved_port: bool,
}

/// State of one allocation.
#[derive(Debug)]
pub struct Allocation {
    /// Id of the relay socket.
    pub id: RelayId,
    /// Client 5-tuple.
    pub client: ClientAddr,
    /// User that created the allocation; later requests must use the same one.
    pub username: String,
    /// Relay transport.
    pub transport: RelayTransport,
    /// Address the relay socket is bound to.
    pub relay_addr: SocketAddr,
    /// Address advertised in XOR-RELAYED-ADDRESS.
    pub advertised_addr: SocketAddr,
    /// Time the allocation ends unless refreshed.
    pub expires: Instant,
    /// Permissions by peer IP (ports are not part of a permission), with their expiry times.
    pub permissions: HashMap<IpAddr, Instant>,
    /// Channel bindings by number.
    pub channels: HashMap<u16, Channel>,
    /// Channel numbers by peer.
    pub channel_by_peer: HashMap<SocketAddr, u16>,
    /// Bandwidth cap toward peers.
    pub to_peer_budget: Option<TokenBucket>,
    /// Bandwidth cap toward the client.
    pub to_client_budget: Option<TokenBucket>,
    /// Set while the relay socket is being bound.
    pub pending: Option<PendingAllocate>,
    /// Transaction id of the Allocate request, to recognize retransmissions.
    pub allocate_transaction: [u8; 12],
    /// RESERVATION-TOKEN sent in the success response, sent again to a retransmission while
    /// the reservation lasts.
    pub reservation_token: Option<[u8; 8]>,
}

impl Allocation {
    /// True when the allocation is bound and its lifetime has not run out.
    pub fn is_active(&self, now: Instant) -> bool {
        self.pending.is_none() && now < self.expires
    }

    /// True when a permission for the peer's IP exists at `now`.
    pub fn has_permission(&self, peer: IpAddr, now: Instant) -> bool {
        self.permissions
            .get(&unmap(peer))
            .is_some_and(|expires| now < *expires)
    }

    /// Installs or refreshes a permission; returns true when it is new.
    pub fn permit(&mut self, peer: IpAddr, expires: Instant) -> bool {
        self.permissions.insert(unmap(peer), expires).is_none()
    }

    /// Peer of an active channel.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&number)
            .filter(|channel| now < channel.expires)
            .map(|channel| channel.peer)
    }

    /// Number of the active channel bound to `peer`.
    pub fn channel_for(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let number = *self.channel_by_peer.get(&peer)?;
        self.channel_peer(number, now).map(|_| number)
    }

    /// Checks whether `number` may be bound to `peer`: neither may be tied to something else,
    /// counting expired bindings during their quarantine (<https://www.rfc-editor.org/rfc/rfc8656#section-11.2>).
    pub fn can_bind(&self, number: u16, peer: SocketAddr) -> bool {
        let number_free = self
            .channels
            .get(&number)
            .is_none_or(|channel| channel.peer == peer);
        let peer_free = self
            .channel_by_peer
            .get(&peer)
            .is_none_or(|bound| *bound == number);
        number_free && peer_free
    }

    /// Binds or refreshes a channel; returns true when the binding is new or was counted as
    /// expired.
    pub fn bind_channel(&mut self, number: u16, peer: SocketAddr, expires: Instant) -> bool {
        let previous = self.channels.insert(
            number,
            Channel {
                peer,
                expires,
                counted: true,
            },
        );
        self.channel_by_peer.insert(peer, number);
        !previous.is_some_and(|channel| channel.counted)
    }

    /// Removes expired permissions and channels. Returns the permissions removed and the
    /// channels that stopped being active.
    pub fn sweep(&mut self, now: Instant) -> (usize, usize) {
        let before = self.permissions.len();
        self.permissions.retain(|_, expires| now < *expires);
        let permissions = before - self.permissions.len();

        let mut channels = 0;
        for channel in self.channels.values_mut() {
            if channel.counted && now >= channel.expires {
                channel.counted = false;
                channels += 1;
            }
        }
        let by_peer = &mut self.channel_by_peer;
        self.channels.retain(|_, channel| {
            let keep = now < channel.expires + CHANNEL_QUARANTINE;
            if !keep {
                by_peer.remove(&channel.peer);
            }
            keep
        });
        (permissions, channels)
    }

    /// Active channel bindings, for the counters when the allocation goes away.
    pub fn counted_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|channel| channel.counted)
            .count()
    }
}
