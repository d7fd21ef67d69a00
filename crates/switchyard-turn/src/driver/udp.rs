//! UDP listener and UDP relay sockets.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::{debug, trace};

use super::batch::{self, Outbox};
use super::socket::UdpSocket;
use super::{now, ClientSink, Shared};
use crate::core::{ClientAddr, ClientOutput, Now, RelayId, Transport};

/// Serves STUN and TURN on one UDP listener socket until shutdown.
pub(crate) fn spawn_listener(shared: &Arc<Shared>, socket: Arc<UdpSocket>) {
    let local = socket.local_addr();
    shared.lock().register_udp_listener(socket.clone(), local);
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let mut scratch = Vec::with_capacity(2048);
        let mut replies = Outbox::default();
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
                let now = now();
                for (remote, data) in datagrams.iter() {
                    let client = ClientAddr {
                        transport: Transport::Udp,
                        local,
                        remote,
                    };
                    let to_peer =
                        handle_datagram(&shared, now, client, data, &mut scratch, &mut replies);
                    // Sent right away, while the datagram is still in the CPU's caches, and
                    // after the core's lock is released.
                    if let Some((relay_socket, peer, payload)) = to_peer {
                        if let Err(error) = relay_socket.send_to(&data[payload], peer) {
                            trace!(%peer, %error, "dropped datagram that failed to send to a peer");
                        }
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

/// Passes one datagram from a client to the core. A reply goes to `replies`; a payload for a
/// peer is returned with the relay socket to send it from and its range in `data`.
fn handle_datagram(
    shared: &Arc<Shared>,
    now: Now,
    client: ClientAddr,
    data: &[u8],
    scratch: &mut Vec<u8>,
    replies: &mut Outbox,
) -> Option<(Arc<UdpSocket>, SocketAddr, Range<usize>)> {
    let mut state = shared.lock();
    let to_peer = match state.core.handle_client(now, client, data, scratch) {
        ClientOutput::Reply => {
            replies.push(client.remote, scratch);
            None
        }
        ClientOutput::ToPeer {
            relay,
            peer,
            payload,
        } => state
            .relay_socket(relay)
            .map(|relay_socket| (relay_socket, peer, payload)),
        ClientOutput::None | ClientOutput::ConnectionBound { .. } => None,
    };
    state.drain_commands(shared);
    to_peer
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
                for (peer, data) in datagrams.iter() {
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
