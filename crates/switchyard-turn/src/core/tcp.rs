//! TCP relays (RFC 6062): Connect, ConnectionAttempt and ConnectionBind.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::allocation::RelayTransport;
use super::auth::LongTermKey;
use super::handlers::{finish, reply_error, start_response, Request};
use super::{ClientAddr, ClientOutput, Command, ConnectionId, Core, Now, RelayId};
use crate::stun::{
    decode_xor_address, Integrity, MessageType, MessageWriter, ATTR_CONNECTION_ID,
    ATTR_XOR_PEER_ADDRESS, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_SUCCESS_RESPONSE,
    METHOD_CONNECT, METHOD_CONNECTION_ATTEMPT,
};

/// Time a client has to bind a peer connection with ConnectionBind
/// (<https://www.rfc-editor.org/rfc/rfc6062#section-5.2>).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// Peer connections of every TCP allocation.
#[derive(Debug, Default)]
pub struct TcpConnections {
    next_id: u32,
    entries: HashMap<ConnectionId, PeerConnection>,
}

#[derive(Debug)]
struct PeerConnection {
    relay: RelayId,
    peer: SocketAddr,
    state: State,
}

#[derive(Debug)]
enum State {
    /// The driver is connecting; the Connect request waits for the result.
    Connecting(PendingConnect),
    /// Connected, waiting for the client's ConnectionBind.
    Unbound { deadline: Instant },
    /// Bound to a client data connection.
    Bound,
}

#[derive(Debug)]
struct PendingConnect {
    client: ClientAddr,
    transaction_id: [u8; 12],
    auth: Option<(Integrity, LongTermKey)>,
    fingerprint: bool,
}

impl TcpConnections {
    fn insert(&mut self, relay: RelayId, peer: SocketAddr, state: State) -> ConnectionId {
        // Ids are never 0 and wrap after 2^32 - 1 connections; a wrapped id still in use is
        // skipped.
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let id = ConnectionId(self.next_id);
            if let Entry::Vacant(slot) = self.entries.entry(id) {
                slot.insert(PeerConnection { relay, peer, state });
                return id;
            }
        }
    }

    /// Forgets one connection.
    pub fn remove(&mut self, connection: ConnectionId) {
        self.entries.remove(&connection);
    }

    /// Forgets the connections of an allocation and returns their ids.
    pub fn remove_relay(&mut self, relay: RelayId) -> Vec<ConnectionId> {
        let ids: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.relay == relay)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.entries.remove(id);
        }
        ids
    }

    /// Removes connections whose ConnectionBind did not come in time and returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<ConnectionId> {
        let ids: Vec<_> = self
            .entries
            .iter()
            .filter(
                |(_, entry)| matches!(entry.state, State::Unbound { deadline } if now >= deadline),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.entries.remove(id);
        }
        ids
    }

    fn has_peer(&self, relay: RelayId, peer: SocketAddr) -> bool {
        self.entries
            .values()
            .any(|entry| entry.relay == relay && entry.peer == peer)
    }
}

/// Connect (<https://www.rfc-editor.org/rfc/rfc6062#section-5.2>).
pub(super) fn connect(
    core: &mut Core,
    now: Now,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> ClientOutput {
    let Some(relay) = core.active_allocation(now, request) else {
        return reply_error(out, request, 437);
    };
    if let Some(code) = core.check_same_user(relay, request) {
        return reply_error(out, request, code);
    }
    let Some(allocation) = core.allocations.get(&relay) else {
        return reply_error(out, request, 437);
    };
    if allocation.transport != RelayTransport::Tcp {
        return reply_error(out, request, 400);
    }
    let relay_addr = allocation.relay_addr;

    let message = &request.message;
    let Some(Ok(peer)) = message
        .get(ATTR_XOR_PEER_ADDRESS)
        .map(|a| decode_xor_address(a.value, &message.transaction_id()))
    else {
        return reply_error(out, request, 400);
    };
    if let Some(code) = core.check_peer(relay, peer) {
        debug!(client = %request.from.remote, %peer, code, "rejected Connect");
        return reply_error(out, request, code);
    }
    if core.tcp.has_peer(relay, peer) {
        return reply_error(out, request, 446);
    }

    let pending = PendingConnect {
        client: request.from,
        transaction_id: message.transaction_id(),
        auth: request
            .auth
            .as_ref()
            .map(|auth| (auth.integrity, auth.key.clone())),
        fingerprint: request.fingerprint,
    };
    let connection = core.tcp.insert(relay, peer, State::Connecting(pending));
    core.commands.push_back(Command::ConnectPeer {
        connection,
        relay_addr,
        peer,
    });
    ClientOutput::None
}

pub(super) fn peer_connected(
    core: &mut Core,
    now: Instant,
    connection: ConnectionId,
    connected: bool,
) {
    let Some(entry) = core.tcp.entries.get_mut(&connection) else {
        return;
    };
    let State::Connecting(pending) = std::mem::replace(
        &mut entry.state,
        State::Unbound {
            deadline: now + BIND_TIMEOUT,
        },
    ) else {
        return;
    };
    let class = if connected {
        CLASS_SUCCESS_RESPONSE
    } else {
        debug!(peer = %entry.peer, "failed to connect to peer");
        core.tcp.entries.remove(&connection);
        CLASS_ERROR_RESPONSE
    };
    let mut data = Vec::with_capacity(64);
    let mut writer = MessageWriter::new(
        &mut data,
        MessageType::new(METHOD_CONNECT, class),
        pending.transaction_id,
    );
    if connected {
        writer.attr_u32(ATTR_CONNECTION_ID, connection.0);
    } else {
        writer.error_code(447);
    }
    if let Some((integrity, key)) = &pending.auth {
        writer.integrity(*integrity, key.as_bytes());
    }
    if pending.fingerprint {
        writer.fingerprint();
    }
    core.commands.push_back(Command::Transmit {
        to: pending.client,
        data,
    });
}

/// Inbound connection to a relayed address
/// (<https://www.rfc-editor.org/rfc/rfc6062#section-5.3>): accepted only from a peer with a
/// permission, then announced to the client with a ConnectionAttempt indication.
pub(super) fn accept_peer(
    core: &mut Core,
    now: Instant,
    relay: RelayId,
    peer: SocketAddr,
) -> Option<ConnectionId> {
    let allocation = core.allocations.get(&relay)?;
    let allowed = allocation.is_active(now)
        && allocation.transport == RelayTransport::Tcp
        && allocation.has_permission(peer.ip(), now)
        && core.config.policy.allows(peer);
    if !allowed || core.tcp.has_peer(relay, peer) {
        debug!(%peer, relay = relay.0, "rejected inbound peer connection");
        return None;
    }
    let client = allocation.client;
    let connection = core.tcp.insert(
        relay,
        peer,
        State::Unbound {
            deadline: now + BIND_TIMEOUT,
        },
    );
    let mut data = Vec::with_capacity(64);
    let transaction_id = core.transaction_id();
    let mut writer = MessageWriter::new(
        &mut data,
        MessageType::new(METHOD_CONNECTION_ATTEMPT, CLASS_INDICATION),
        transaction_id,
    );
    writer.attr_u32(ATTR_CONNECTION_ID, connection.0);
    writer.xor_address(ATTR_XOR_PEER_ADDRESS, peer);
    core.commands
        .push_back(Command::Transmit { to: client, data });
    Some(connection)
}

/// ConnectionBind (<https://www.rfc-editor.org/rfc/rfc6062#section-5.4>).
pub(super) fn connection_bind(
    core: &mut Core,
    _now: Now,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> ClientOutput {
    if !request.from.transport.is_stream() || core.by_client.contains_key(&request.from) {
        return reply_error(out, request, 400);
    }
    let connection = match request.message.get(ATTR_CONNECTION_ID).map(|a| a.value) {
        Some([a, b, c, d]) => ConnectionId(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => return reply_error(out, request, 400),
    };
    let Some(entry) = core.tcp.entries.get_mut(&connection) else {
        return reply_error(out, request, 400);
    };
    if !matches!(entry.state, State::Unbound { .. }) {
        return reply_error(out, request, 400);
    }
    let owner = core
        .allocations
        .get(&entry.relay)
        .map(|a| a.username.as_str());
    let user = request.auth.as_ref().map(|auth| auth.username.as_str());
    if request.auth.is_some() && owner != user {
        return reply_error(out, request, 441);
    }
    entry.state = State::Bound;
    let writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
    finish(writer, request);
    ClientOutput::ConnectionBound { connection }
}
