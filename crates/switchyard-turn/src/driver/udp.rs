//! UDP listener and UDP relay sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use super::{now, ClientSink, Shared};
use crate::core::{ClientAddr, ClientOutput, RelayId, Transport};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Serves STUN and TURN on one UDP listener socket until shutdown.
pub(crate) fn spawn_listener(shared: &Arc<Shared>, socket: Arc<UdpSocket>, local: SocketAddr) {
    shared.lock().register_udp_listener(socket.clone(), local);
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(2048);
        loop {
            let received = tokio::select! {
                received = socket.recv_from(&mut buf) => received,
                _ = shared.shutdown.cancelled() => return,
            };
            let (len, remote) = match received {
                Ok(received) => received,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems.
                    debug!(%local, %error, "UDP receive failed");
                    continue;
                }
            };
            let client = ClientAddr {
                transport: Transport::Udp,
                local,
                remote,
            };
            handle_datagram(&shared, &socket, client, &buf[..len], &mut out).await;
        }
    });
}

async fn handle_datagram(
    shared: &Arc<Shared>,
    socket: &UdpSocket,
    client: ClientAddr,
    data: &[u8],
    out: &mut Vec<u8>,
) {
    let (output, relay_socket) = {
        let mut state = shared.lock();
        let output = state.core.handle_client(now(), client, data, out);
        let relay_socket = match &output {
            ClientOutput::ToPeer { relay, .. } => state.relay_socket(*relay),
            _ => None,
        };
        state.drain_commands(shared);
        (output, relay_socket)
    };
    match output {
        ClientOutput::Reply => {
            if let Err(error) = socket.send_to(out, client.remote).await {
                debug!(client = %client.remote, %error, "failed to send reply");
            }
        }
        ClientOutput::ToPeer { peer, payload, .. } => {
            if let Some(relay_socket) = relay_socket {
                send_to_peer(&relay_socket, &data[payload], peer).await;
            }
        }
        ClientOutput::None | ClientOutput::ConnectionBound { .. } => {}
    }
}

/// Sends a datagram to a peer, waiting for buffer space only when the socket is full.
pub(crate) async fn send_to_peer(socket: &UdpSocket, payload: &[u8], peer: SocketAddr) {
    let result = match socket.try_send_to(payload, peer) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            socket.send_to(payload, peer).await
        }
        result => result,
    };
    if let Err(error) = result {
        trace!(%peer, %error, "failed to send to peer");
    }
}

/// Binds a UDP relay socket to `addr`.
pub(crate) fn bind_relay(addr: SocketAddr) -> io::Result<Arc<UdpSocket>> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(Arc::new(UdpSocket::from_std(socket)?))
}

/// Relays datagrams that peers send to `socket` toward the client.
pub(crate) fn spawn_relay(
    shared: &Arc<Shared>,
    relay: RelayId,
    socket: Arc<UdpSocket>,
    sink: ClientSink,
) -> JoinHandle<()> {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(2048);
        loop {
            let received = tokio::select! {
                received = socket.recv_from(&mut buf) => received,
                _ = shared.shutdown.cancelled() => return,
            };
            let Ok((len, peer)) = received else {
                continue;
            };
            let forward =
                shared
                    .lock()
                    .core
                    .handle_peer(Instant::now(), relay, peer, &buf[..len], &mut out);
            if forward {
                sink.send(&out);
            }
        }
    })
}
