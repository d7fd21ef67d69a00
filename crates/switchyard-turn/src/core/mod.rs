//! Sans-IO TURN core: allocations, permissions, channel bindings, nonces, quotas and
//! authentication. It takes the current time and received bytes and returns what to send, with
//! no sockets, tasks or clock of its own.
//!
//! The drivers call [`Core::handle_client`] for each message from a client,
//! [`Core::handle_peer`] for each datagram a relay socket receives and [`Core::handle_timeout`]
//! when [`Core::poll_timeout`] is due. Work that needs the operating system (binding a relay
//! socket, connecting to a peer, sending a message that was not a direct reply) comes out of
//! [`Core::poll_command`].

mod allocation;
mod auth;
mod handlers;
mod limits;
mod policy;
mod ports;
mod tcp;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

pub use allocation::RelayTransport;
pub use auth::{userhash, LongTermKey, PasswordAlgorithm, PASSWORD_ALGORITHMS};
pub use policy::{Cidr, PeerPolicy};

use crate::config::{ConfigError, TurnConfig};
use crate::counters::{Direction, TurnCounters};
use crate::stun::{
    ChannelData, MessageType, MessageWriter, ATTR_DATA, ATTR_LIFETIME, ATTR_RESERVATION_TOKEN,
    ATTR_XORMAPPED_ADDRESS, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS, CLASS_INDICATION,
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_DATA,
};
use allocation::Allocation;
use auth::Authenticator;
use limits::{SourceLimiter, TokenBucket};
use ports::PortPool;

/// Transport between a client and a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// True for TCP and TLS, where ChannelData is padded and messages are framed.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The client side of a 5-tuple: transport, listener address and client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    /// Transport of the listener.
    pub transport: Transport,
    /// Local address of the listener socket or accepted connection.
    pub local: SocketAddr,
    /// Client address.
    pub remote: SocketAddr,
}

/// Id of an allocation and its relay socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// Id of a TCP connection to a peer (RFC 6062 CONNECTION-ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u32);

/// Monotonic time for timers plus wall-clock seconds for credential expiry.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Seconds since the Unix epoch.
    pub unix_secs: u64,
}

/// Action for the driver after [`Core::handle_client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    /// Nothing to send.
    None,
    /// Send the bytes in `out` back to the client.
    Reply,
    /// Send `data[payload]` from the relay socket `relay` to `peer`.
    ToPeer {
        /// Relay socket.
        relay: RelayId,
        /// Destination.
        peer: SocketAddr,
        /// Range of the payload within the input.
        payload: Range<usize>,
    },
    /// Send the bytes in `out` back to the client, then relay raw bytes between this client
    /// connection and the peer connection `connection` (RFC 6062 ConnectionBind).
    ConnectionBound {
        /// The peer connection.
        connection: ConnectionId,
    },
}

/// Work for the drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bind a relay socket to `addr` and report the result with [`Core::handle_relay_bound`].
    /// A UDP socket the drivers hold for `addr` since an earlier `reserve_next` serves instead
    /// of a new one.
    BindRelay {
        /// New relay id.
        relay: RelayId,
        /// Address and port chosen by the core.
        addr: SocketAddr,
        /// UDP socket or TCP listener.
        transport: RelayTransport,
        /// Client that owns the allocation.
        client: ClientAddr,
        /// Also bind a UDP socket to the next port and hold it for a later Allocate with
        /// RESERVATION-TOKEN. The bind fails as a whole when either port is taken.
        reserve_next: bool,
    },
    /// Close the socket held for a reservation that expired.
    ReleaseReserved {
        /// Address of the held socket.
        addr: SocketAddr,
    },
    /// Close the relay socket and every peer connection of the allocation.
    CloseRelay {
        /// Relay id.
        relay: RelayId,
    },
    /// Send a message to a client.
    Transmit {
        /// Destination.
        to: ClientAddr,
        /// Complete STUN message.
        data: Vec<u8>,
    },
    /// Open a TCP connection from `relay_addr` to `peer` and report with
    /// [`Core::handle_peer_connected`] (RFC 6062 Connect).
    ConnectPeer {
        /// Connection id.
        connection: ConnectionId,
        /// Local address to connect from.
        relay_addr: SocketAddr,
        /// Peer.
        peer: SocketAddr,
    },
    /// Close a peer TCP connection that the client did not bind in time, or whose allocation
    /// is gone.
    ClosePeerConnection {
        /// Connection id.
        connection: ConnectionId,
    },
}

/// Settings of the core, derived from [`TurnConfig`].
#[derive(Debug)]
pub struct CoreConfig {
    /// Realm.
    pub realm: String,
    /// Whether requests must be authenticated.
    pub auth: bool,
    /// Static users: name to password.
    pub users: HashMap<String, String>,
    /// Secrets of time-limited credentials.
    pub secrets: Vec<String>,
    /// Key that signs nonces.
    pub nonce_key: [u8; 32],
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Address IPv4 relay sockets bind to.
    pub relay_ipv4: IpAddr,
    /// Address IPv6 relay sockets bind to, if IPv6 relays are enabled.
    pub relay_ipv6: Option<IpAddr>,
    /// Address advertised instead of `relay_ipv4`.
    pub external_ipv4: Option<IpAddr>,
    /// Relay port range.
    pub ports: (u16, u16),
    /// Lifetime of an allocation when the client asks for none or less.
    pub default_lifetime: Duration,
    /// Maximum allocation lifetime.
    pub max_lifetime: Duration,
    /// Permission lifetime.
    pub permission_lifetime: Duration,
    /// Channel binding lifetime.
    pub channel_lifetime: Duration,
    /// Allocations per user, 0 for no limit.
    pub user_quota: u32,
    /// Allocations in total, 0 for no limit.
    pub total_quota: u32,
    /// Bytes per second per allocation and direction, 0 for no limit.
    pub max_bytes_per_second: u64,
    /// Peer address policy.
    pub policy: PeerPolicy,
    /// 401 responses sent at once to one source address before the rate limit applies.
    pub unauthorized_burst: u64,
    /// 401 responses per second to one source address after the burst.
    pub unauthorized_per_second: u64,
}

impl CoreConfig {
    /// Derives the core settings from `config`. `own_addresses` are the bound listener
    /// addresses, which the peer policy denies.
    pub fn from_turn_config(
        config: &TurnConfig,
        own_addresses: Vec<SocketAddr>,
        nonce_key: [u8; 32],
    ) -> Result<Self, ConfigError> {
        let parse = |ranges: &[String]| -> Result<Vec<Cidr>, ConfigError> {
            ranges
                .iter()
                .map(|range| {
                    range.parse().map_err(|_| ConfigError::PeerRange {
                        range: range.clone(),
                    })
                })
                .collect()
        };
        let mut relay_ips = vec![config.relay_ip];
        relay_ips.extend(config.relay_ipv6);
        relay_ips.extend(config.external_ip);
        let policy = PeerPolicy::new(
            config.allowed_peer_addresses.clone(),
            parse(&config.allowed_peer_ranges)?,
            parse(&config.denied_peer_ranges)?,
            own_addresses,
            relay_ips,
            (config.min_port, config.max_port),
        );
        let secs = |value: u32| Duration::from_secs(u64::from(value));
        Ok(CoreConfig {
            realm: config.realm.clone(),
            auth: config.auth,
            users: config
                .users
                .iter()
                .map(|user| (user.name.clone(), user.password.clone()))
                .collect(),
            secrets: config.static_auth_secrets.clone(),
            nonce_key,
            nonce_lifetime: Duration::from_secs(600),
            relay_ipv4: config.relay_ip,
            relay_ipv6: config.relay_ipv6,
            external_ipv4: config.external_ip,
            ports: (config.min_port, config.max_port),
            default_lifetime: secs(config.default_allocation_lifetime),
            max_lifetime: secs(config.max_allocation_lifetime),
            permission_lifetime: secs(config.permission_lifetime),
            channel_lifetime: secs(config.channel_lifetime),
            user_quota: config.user_quota,
            total_quota: config.total_quota,
            max_bytes_per_second: config.max_bytes_per_second,
            policy,
            // Clients behind one NAT address each need a challenge when they start, and
            // turnutils_uclient -m 50 starts 100 allocations at once.
            unauthorized_burst: 200,
            unauthorized_per_second: 100,
        })
    }
}

/// Interval of the sweep that expires allocations, permissions, channels and reservations.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Relay ports a core tries to bind for one Allocate before it sends 508.
const MAX_BIND_ATTEMPTS: u32 = 8;
/// Permissions one allocation may hold. Each costs memory, and a client could otherwise add
/// them without end; CreatePermission beyond it gets 508.
const MAX_PERMISSIONS: usize = 1024;
/// Largest peer datagram relayed: the attributes of its Data indication, an IPv6
/// XOR-PEER-ADDRESS (24 bytes), the DATA header (4 bytes), the data and up to 3 bytes of
/// padding, must fit the 16-bit message length field.
const MAX_PEER_DATAGRAM: usize = 65_535 - 24 - 4 - 3;
/// Source addresses the 401 rate limiter tracks.
const MAX_LIMITED_SOURCES: usize = 65_536;
/// How long a port reserved with EVEN-PORT and the R bit stays reserved
/// (<https://www.rfc-editor.org/rfc/rfc8656#section-7.2>).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// A port kept for a later Allocate with RESERVATION-TOKEN.
#[derive(Clone, Debug)]
struct Reservation {
    addr: SocketAddr,
    expires: Instant,
    /// User whose quota the reservation counts in.
    username: String,
}

/// The TURN server state machine.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    auth: Authenticator,
    counters: Arc<TurnCounters>,
    allocations: HashMap<RelayId, Allocation>,
    by_client: HashMap<ClientAddr, RelayId>,
    by_user: HashMap<String, u32>,
    ports_v4: PortPool,
    ports_v6: PortPool,
    reservations: HashMap<[u8; 8], Reservation>,
    next_relay: u64,
    commands: VecDeque<Command>,
    unauthorized: SourceLimiter,
    next_sweep: Instant,
    tcp: tcp::TcpConnections,
    id_state: u64,
}

impl Core {
    /// Creates a core with no allocations.
    pub fn new(config: CoreConfig, counters: Arc<TurnCounters>, now: Instant) -> Self {
        let auth = Authenticator::new(
            config.realm.clone(),
            config.users.clone(),
            config.secrets.clone(),
            config.nonce_key,
            config.nonce_lifetime.as_secs(),
        );
        let (min, max) = config.ports;
        // The generator's output reveals its state, so it is seeded with a hash of the nonce
        // key rather than with key bytes.
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[&config.nonce_key[..], b"transaction ids"].concat(),
        );
        let mut seed = [0; 8];
        seed.copy_from_slice(&digest.as_ref()[..8]);
        Core {
            unauthorized: SourceLimiter::new(
                config.unauthorized_burst,
                config.unauthorized_per_second,
                MAX_LIMITED_SOURCES,
            ),
            config,
            auth,
            counters,
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            by_user: HashMap::new(),
            ports_v4: PortPool::new(min, max),
            ports_v6: PortPool::new(min, max),
            reservations: HashMap::new(),
            next_relay: 1,
            commands: VecDeque::new(),
            next_sweep: now + SWEEP_INTERVAL,
            tcp: tcp::TcpConnections::default(),
            id_state: u64::from_be_bytes(seed) | 1,
        }
    }

    /// Handles one message (a UDP datagram, or one frame of a stream) from a client. A reply,
    /// if any, is written to `out`, which is cleared first.
    pub fn handle_client(
        &mut self,
        now: Now,
        from: ClientAddr,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        out.clear();
        match data.first() {
            Some(byte) if byte >> 6 == 0b01 => self.handle_channel_data(now.instant, from, data),
            Some(byte) if byte >> 6 == 0b00 => self.handle_stun(now, from, data, out),
            _ => {
                debug!(client = %from.remote, len = data.len(), "dropped message that is neither STUN nor ChannelData");
                ClientOutput::None
            }
        }
    }

    fn handle_channel_data(&mut self, now: Instant, from: ClientAddr, data: &[u8]) -> ClientOutput {
        let Some(message) = ChannelData::parse(data) else {
            debug!(client = %from.remote, len = data.len(), "dropped malformed ChannelData");
            return ClientOutput::None;
        };
        let Some(relay) = self.by_client.get(&from).copied() else {
            return ClientOutput::None;
        };
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return ClientOutput::None;
        };
        if !allocation.is_active(now) {
            return ClientOutput::None;
        }
        let Some(peer) = allocation.channel_peer(message.number, now) else {
            debug!(client = %from.remote, channel = message.number, "dropped ChannelData on an unbound channel");
            return ClientOutput::None;
        };
        if !allocation.has_permission(peer.ip(), now) {
            return ClientOutput::None;
        }
        let len = message.payload.len();
        if !take_budget(&mut allocation.to_peer_budget, len, now) {
            return ClientOutput::None;
        }
        self.counters
            .add_relayed(Direction::ToPeer, from.transport, len);
        let start = crate::stun::CHANNEL_DATA_HEADER_LEN;
        ClientOutput::ToPeer {
            relay,
            peer,
            payload: start..start + len,
        }
    }

    /// Handles a datagram that relay socket `relay` received from `from`. Returns true when
    /// `out` (cleared first) contains a ChannelData message or Data indication for the
    /// allocation's client.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if data.len() > MAX_PEER_DATAGRAM {
            return false;
        }
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return false;
        };
        if !allocation.is_active(now) || !allocation.has_permission(from.ip(), now) {
            return false;
        }
        if !take_budget(&mut allocation.to_client_budget, data.len(), now) {
            return false;
        }
        let client = allocation.client;
        let channel = allocation.channel_for(from, now);
        match channel {
            Some(number) => ChannelData::write(out, number, data, client.transport.is_stream()),
            None => {
                let transaction_id = self.transaction_id();
                write_data_indication(out, transaction_id, from, data);
            }
        }
        self.counters
            .add_relayed(Direction::ToClient, client.transport, data.len());
        true
    }

    /// Reports the result of [`Command::BindRelay`]. On failure the core tries another port,
    /// or rejects the Allocate with 508 after the last attempt.
    pub fn handle_relay_bound(
        &mut self,
        now: Now,
        relay: RelayId,
        result: Result<SocketAddr, std::io::Error>,
    ) {
        match result {
            Ok(bound) => self.complete_allocate(now, relay, bound),
            Err(error) => {
                debug!(relay = relay.0, %error, "failed to bind relay port, trying another");
                self.retry_bind(relay);
            }
        }
    }

    fn complete_allocate(&mut self, now: Now, relay: RelayId, bound: SocketAddr) {
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return;
        };
        let Some(mut pending) = allocation.pending.take() else {
            return;
        };
        let chosen = allocation.relay_addr;
        if pending.reserve_next {
            let next = SocketAddr::new(chosen.ip(), chosen.port() + 1);
            let username = allocation.username.clone();
            pending.reservation_token = Some(self.reserve(now, next, &username));
        }
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return;
        };
        allocation.reservation_token = pending.reservation_token;
        allocation.relay_addr = bound;
        let advertised_ip = match (bound.ip(), self.config.external_ipv4) {
            (IpAddr::V4(_), Some(external)) => external,
            (ip, _) => ip,
        };
        allocation.advertised_addr = SocketAddr::new(advertised_ip, bound.port());
        allocation.expires = now.instant + pending.lifetime;
        self.counters.allocation_created();
        debug!(relay = relay.0, client = %allocation.client.remote, relayed = %allocation.advertised_addr, "allocation created");
        let mut data = Vec::with_capacity(128);
        write_allocate_success(&mut data, allocation, &pending);
        let to = allocation.client;
        self.commands.push_back(Command::Transmit { to, data });
    }

    /// Handles an inbound TCP connection from `peer` to the relay listener of `relay`
    /// (RFC 6062 section 5.3). Returns the connection id to keep it under, or `None` when the
    /// connection must be closed.
    pub fn handle_peer_connection(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: SocketAddr,
    ) -> Option<ConnectionId> {
        tcp::accept_peer(self, now, relay, peer)
    }

    /// Reports the result of [`Command::ConnectPeer`].
    pub fn handle_peer_connected(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        connected: bool,
    ) {
        tcp::peer_connected(self, now, connection, connected);
    }

    /// Reports that a bound peer connection or its client data connection closed.
    pub fn handle_connection_closed(&mut self, connection: ConnectionId) {
        self.tcp.remove(connection);
    }

    /// Reports that a client's TCP or TLS connection closed. Its allocation goes away with it
    /// (<https://www.rfc-editor.org/rfc/rfc8656#section-3.1>).
    pub fn handle_client_closed(&mut self, client: ClientAddr) {
        if let Some(relay) = self.by_client.get(&client).copied() {
            self.delete_allocation(relay);
        }
    }

    /// Next time [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Expires allocations, permissions, channel bindings, reservations and unbound peer
    /// connections.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;

        let expired: Vec<RelayId> = self
            .allocations
            .values()
            .filter(|allocation| allocation.pending.is_none() && now >= allocation.expires)
            .map(|allocation| allocation.id)
            .collect();
        for relay in expired {
            debug!(relay = relay.0, "allocation expired");
            self.delete_allocation(relay);
        }

        for allocation in self.allocations.values_mut() {
            let (permissions, channels) = allocation.sweep(now);
            for _ in 0..permissions {
                self.counters.permission_deleted();
            }
            for _ in 0..channels {
                self.counters.channel_deleted();
            }
        }

        let expired: Vec<[u8; 8]> = self
            .reservations
            .iter()
            .filter(|(_, reservation)| now >= reservation.expires)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            if let Some(reservation) = self.reservations.remove(&token) {
                self.release_reservation_quota(&reservation.username);
                self.release_reserved_port(reservation.addr);
            }
        }
        self.unauthorized.prune(now);
        for connection in self.tcp.expire(now) {
            self.commands
                .push_back(Command::ClosePeerConnection { connection });
        }
    }

    /// Next piece of work for the drivers.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// True when `client` has an allocation, bound or still binding.
    pub fn has_allocation(&self, client: &ClientAddr) -> bool {
        self.by_client.contains_key(client)
    }

    /// Number of allocations, bound or still binding.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    fn delete_allocation(&mut self, relay: RelayId) {
        let Some(allocation) = self.allocations.remove(&relay) else {
            return;
        };
        self.by_client.remove(&allocation.client);
        if let Some(count) = self.by_user.get_mut(&allocation.username) {
            *count -= 1;
            if *count == 0 {
                self.by_user.remove(&allocation.username);
            }
        }
        if allocation.pending.is_none() {
            self.counters
                .allocation_deleted(allocation.permissions.len(), allocation.counted_channels());
        }
        let port = allocation.relay_addr.port();
        let pool = match allocation.relay_addr.ip() {
            IpAddr::V4(_) => &mut self.ports_v4,
            IpAddr::V6(_) => &mut self.ports_v6,
        };
        pool.release(port);
        // A port paired for a reservation that was never made.
        if allocation.pending.as_ref().is_some_and(|p| p.reserve_next) {
            pool.release(port + 1);
        }
        for connection in self.tcp.remove_relay(relay) {
            self.commands
                .push_back(Command::ClosePeerConnection { connection });
        }
        self.commands.push_back(Command::CloseRelay { relay });
    }

    /// Returns a reserved port to its pool and has the drivers close its socket.
    fn release_reserved_port(&mut self, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(_) => self.ports_v4.release(addr.port()),
            SocketAddr::V6(_) => self.ports_v6.release(addr.port()),
        }
        self.commands.push_back(Command::ReleaseReserved { addr });
    }

    /// Takes a reservation that ended out of its user's quota.
    fn release_reservation_quota(&mut self, username: &str) {
        if let Some(count) = self.by_user.get_mut(username) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_user.remove(username);
            }
        }
    }

    fn retry_bind(&mut self, relay: RelayId) {
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return;
        };
        let Some(pending) = allocation.pending.as_mut() else {
            return;
        };
        pending.attempts += 1;
        let pool = match allocation.relay_addr.ip() {
            IpAddr::V4(_) => &mut self.ports_v4,
            IpAddr::V6(_) => &mut self.ports_v6,
        };
        // The failed ports stay marked as used until others are taken, so that the next
        // attempt picks different ones. After the last attempt the allocation is deleted and
        // its ports released.
        let next = if pending.attempts < MAX_BIND_ATTEMPTS && !pending.reserved_port {
            pool.acquire(pending.even_port, pending.reserve_next)
        } else {
            None
        };
        match next {
            Some(port) => {
                let failed_port = allocation.relay_addr.port();
                pool.release(failed_port);
                if pending.reserve_next {
                    pool.release(failed_port + 1);
                }
                allocation.relay_addr.set_port(port);
                self.commands.push_back(Command::BindRelay {
                    relay,
                    addr: allocation.relay_addr,
                    transport: allocation.transport,
                    client: allocation.client,
                    reserve_next: pending.reserve_next,
                });
            }
            None => {
                let pending = pending.clone();
                let client = allocation.client;
                let mut data = Vec::with_capacity(64);
                handlers::write_error_for_pending(&mut data, &pending, 508);
                self.commands
                    .push_back(Command::Transmit { to: client, data });
                self.delete_allocation(relay);
            }
        }
    }

    /// Transaction id for an indication the server sends. It comes from a xorshift generator
    /// seeded with the nonce key: unique enough for clients, cheap enough per packet, and not
    /// meant to be unpredictable.
    fn transaction_id(&mut self) -> [u8; 12] {
        let mut id = [0; 12];
        for chunk in id.chunks_mut(4) {
            self.id_state ^= self.id_state << 13;
            self.id_state ^= self.id_state >> 7;
            self.id_state ^= self.id_state << 17;
            chunk.copy_from_slice(&self.id_state.to_be_bytes()[..4]);
        }
        id
    }

    fn new_relay_id(&mut self) -> RelayId {
        let id = RelayId(self.next_relay);
        self.next_relay += 1;
        id
    }
}

fn take_budget(budget: &mut Option<TokenBucket>, len: usize, now: Instant) -> bool {
    match budget {
        Some(bucket) => bucket.take(len as u64, now),
        None => true,
    }
}

fn write_data_indication(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    peer: SocketAddr,
    data: &[u8],
) {
    let mut writer = MessageWriter::new(
        out,
        MessageType::new(METHOD_DATA, CLASS_INDICATION),
        transaction_id,
    );
    writer.xor_address(ATTR_XOR_PEER_ADDRESS, peer);
    writer.attr(ATTR_DATA, data);
}

fn write_allocate_success(
    out: &mut Vec<u8>,
    allocation: &Allocation,
    pending: &allocation::PendingAllocate,
) {
    let mut writer = MessageWriter::new(
        out,
        MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE),
        pending.transaction_id,
    );
    writer.xor_address(ATTR_XOR_RELAYED_ADDRESS, allocation.advertised_addr);
    writer.xor_address(ATTR_XORMAPPED_ADDRESS, allocation.client.remote);
    writer.attr_u32(ATTR_LIFETIME, pending.lifetime.as_secs() as u32);
    if let Some(token) = pending.reservation_token {
        writer.attr(ATTR_RESERVATION_TOKEN, &token);
    }
    if let Some((integrity, key)) = &pending.auth {
        writer.integrity(*integrity, key.as_bytes());
    }
    if pending.fingerprint {
        writer.fingerprint();
    }
}

#[cfg(test)]
mod tests;
