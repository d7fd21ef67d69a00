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
/// Datagrams read without yielding to the runtime once a socket is readable, so that a busy
/// socket costs one wakeup per batch instead of one per datagram.
const BATCH: usize = 32;
/// Socket buffer size requested for listener and relay sockets. Linux caps it at
/// `net.core.rmem_max` and `net.core.wmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for large socket buffers, so that bursts are queued rather than dropped.
pub(crate) fn enlarge_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER))
    {
        debug!(%error, "failed to enlarge UDP socket buffers");
    }
}

/// Receives one datagram, waiting only for the first of a batch.
async fn recv_next(
    socket: &UdpSocket,
    buf: &mut [u8],
    batched: &mut usize,
) -> io::Result<(usize, SocketAddr)> {
    if *batched < BATCH {
        match socket.try_recv_from(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            result => {
                *batched += 1;
                return result;
            }
        }
    }
    *batched = 0;
    socket.recv_from(buf).await
}

/// Serves STUN and TURN on one UDP listener socket until shutdown.
pub(crate) fn spawn_listener(shared: &Arc<Shared>, socket: Arc<UdpSocket>, local: SocketAddr) {
    enlarge_buffers(&socket);
    shared.lock().register_udp_listener(socket.clone(), local);
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(2048);
        let mut batched = 0;
        loop {
            let received = tokio::select! {
                received = recv_next(&socket, &mut buf, &mut batched) => received,
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
    let socket = UdpSocket::from_std(socket)?;
    enlarge_buffers(&socket);
    Ok(Arc::new(socket))
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
        let mut batched = 0;
        loop {
            let received = tokio::select! {
                received = recv_next(&socket, &mut buf, &mut batched) => received,
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
