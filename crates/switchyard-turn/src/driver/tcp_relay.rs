//! TCP relays (RFC 6062): the listener on the relayed address and outgoing connections to
//! peers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

use super::Shared;
use crate::core::{ConnectionId, RelayId};

/// Time the relay waits for a peer to accept a connection before it sends 447
/// (<https://www.rfc-editor.org/rfc/rfc6062#section-5.2>).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn socket_for(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets the port be bound again while connections from it linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// Binds the listener of a TCP relay.
///
/// Outgoing connections to peers start from the relayed address, which the listener holds.
/// Linux allows that only when both sockets have SO_REUSEPORT. The listener gets it after an
/// exclusive bind: set before the bind, it would let the listener share the port with any
/// other socket of the same user, and the kernel would split incoming connections between
/// them.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket_for(addr)?;
    socket.bind(addr)?;
    let listener = socket.listen(128)?;
    socket2::SockRef::from(&listener).set_reuse_port(true)?;
    Ok(listener)
}

/// Accepts peer connections on a TCP relay and hands them to the core.
pub(crate) fn spawn_accept(
    shared: &Arc<Shared>,
    relay: RelayId,
    listener: TcpListener,
) -> JoinHandle<()> {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shared.shutdown.cancelled() => return,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let mut state = shared.lock();
            if let Some(connection) = state
                .core
                .handle_peer_connection(Instant::now(), relay, peer)
            {
                state.insert_peer_stream(connection, stream);
            }
            state.drain_commands(&shared);
        }
    })
}

/// Connects from `relay_addr` to `peer` for a Connect request.
pub(crate) fn spawn_connect(
    shared: &Arc<Shared>,
    connection: ConnectionId,
    relay_addr: SocketAddr,
    peer: SocketAddr,
) {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, connect_from(relay_addr, peer));
        let result = tokio::select! {
            result = connect => result,
            _ = shared.shutdown.cancelled() => return,
        };
        let stream = match result {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                debug!(%peer, %error, "failed to connect to peer");
                None
            }
            Err(_) => {
                debug!(%peer, "connecting to peer timed out");
                None
            }
        };
        let mut state = shared.lock();
        let connected = stream.is_some();
        if let Some(stream) = stream {
            let _ = stream.set_nodelay(true);
            state.insert_peer_stream(connection, stream);
        }
        state
            .core
            .handle_peer_connected(Instant::now(), connection, connected);
        state.drain_commands(&shared);
    });
}

async fn connect_from(relay_addr: SocketAddr, peer: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket_for(relay_addr)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(relay_addr)?;
    socket.connect(peer).await
}
