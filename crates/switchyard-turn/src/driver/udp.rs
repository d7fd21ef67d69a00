//! UDP listener and UDP relay sockets.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::{debug, trace};

use super::batch::{self, Datagrams, Outbox, BATCH};
use super::socket::UdpSocket;
use super::{now, ClientSink, Shared, State};
use crate::core::{ClientAddr, ClientOutput, RelayId, Transport};

/// Serves STUN and TURN on one UDP listener socket until shutdown.
pub(crate) fn spawn_listener(shared: &Arc<Shared>, socket: Arc<UdpSocket>) {
    let local = socket.local_addr();
    shared.lock().register_udp_listener(socket.clone(), local);
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let mut scratch = Vec::with_capacity(2048);
        let mut replies = Outbox::default();
        let mut to_peers = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                readable = socket.readable() => {
                    if let Err(error) = readable {
                        debug!(%local, %error, "UDP listener failed");
                        return;
                    }
                }
                _ = shared.shutdown.cancelled() => return,
            }
            let handled = batch::receive(&socket, local.is_ipv6(), |datagrams| {
                let mut state = shared.lock();
                handle_datagrams(
                    &mut state,
                    &shared,
                    local,
                    &datagrams,
                    &mut scratch,
                    &mut replies,
                    &mut to_peers,
                );
                drop(state);

                // The core's lock is released before the system calls.
                for (relay_socket, peer, index, payload) in to_peers.drain(..) {
                    let data = &datagrams.bytes(index)[payload];
                    if let Err(error) = relay_socket.send_to(data, peer) {
                        trace!(%peer, %error, "dropped datagram that failed to send to a peer");
                    }
                }
                replies.send(&socket);
            });
            match handled {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP errors from earlier sends surface here on some systems.
                Err(error) => debug!(%local, %error, "UDP receive failed"),
            }
        }
    });
}

/// A payload to send to a peer: the relay socket, the peer, and the index of the datagram in
/// its batch with the payload's range in it.
type PeerSend = (Arc<UdpSocket>, SocketAddr, usize, Range<usize>);

/// Passes each datagram of a batch to the core under one lock. Replies go to `replies`, and
/// payloads for peers to `to_peers` with the relay socket to send them from.
fn handle_datagrams(
    state: &mut State,
    shared: &Arc<Shared>,
    local: SocketAddr,
    datagrams: &Datagrams<'_>,
    scratch: &mut Vec<u8>,
    replies: &mut Outbox,
    to_peers: &mut Vec<PeerSend>,
) {
    let now = now();
    for (index, remote, data) in datagrams.iter() {
        let client = ClientAddr {
            transport: Transport::Udp,
            local,
            remote,
        };
        match state.core.handle_client(now, client, data, scratch) {
            ClientOutput::Reply => replies.push(remote, scratch),
            ClientOutput::ToPeer {
                relay,
                peer,
                payload,
            } => {
                if let Some(relay_socket) = state.relay_socket(relay) {
                    to_peers.push((relay_socket, peer, index, payload));
                }
            }
            ClientOutput::None | ClientOutput::ConnectionBound { .. } => {}
        }
    }
    state.drain_commands(shared);
}

/// Binds a UDP relay socket to `addr`.
pub(crate) fn bind_relay(addr: SocketAddr) -> io::Result<Arc<UdpSocket>> {
    UdpSocket::bind(addr).map(Arc::new)
}

/// Relays datagrams that peers send to `socket` toward the client.
pub(crate) fn spawn_relay(
    shared: &Arc<Shared>,
    relay: RelayId,
    socket: Arc<UdpSocket>,
    sink: ClientSink,
    client: SocketAddr,
) -> JoinHandle<()> {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let ipv6 = socket.local_addr().is_ipv6();
        let mut scratch = Vec::with_capacity(2048);
        let mut to_client = Outbox::default();
        loop {
            tokio::select! {
                readable = socket.readable() => {
                    if let Err(error) = readable {
                        debug!(relay = relay.0, %error, "relay socket failed");
                        return;
                    }
                }
                _ = shared.shutdown.cancelled() => return,
            }
            let received = batch::receive(&socket, ipv6, |datagrams| {
                let now = Instant::now();
                let mut state = shared.lock();
                for (_, peer, data) in datagrams.iter() {
                    if state.core.handle_peer(now, relay, peer, data, &mut scratch) {
                        to_client.push(client, &scratch);
                    }
                }
            });
            match received {
                Ok(()) => sink.send_all(&mut to_client),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // An ICMP error for an earlier send to one peer.
                Err(error) => trace!(relay = relay.0, %error, "relay receive failed"),
            }
        }
    })
}
