//! A UDP relay between one client socket and the server's media socket. Cutting it silences a
//! connection at once in both directions, as when a network path fails or a client process dies,
//! so the server can only notice through its ICE timeouts.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Datagrams the relay handles before it stops by itself. A scenario sends about 100 media
/// packets a second for well under a minute, so only a runaway loop reaches this.
const MAX_DATAGRAMS: u64 = 200_000;

/// Receive errors the relay tolerates before it stops. Linux reports an ICMP port unreachable
/// from an earlier send as an error on the next receive, so a few are normal after a peer
/// closes its socket.
const MAX_RECEIVE_ERRORS: u32 = 1_000;

const BUFFER_LEN: usize = 64 * 1024;

/// A running relay. The client sends to [`UdpRelay::client_addr`], and the relay forwards to
/// the server from a second socket and returns the server's datagrams to the last client
/// address it received from.
pub struct UdpRelay {
    client_addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl UdpRelay {
    /// Binds both relay sockets on 127.0.0.1 and starts forwarding to and from `server`.
    pub async fn start(server: SocketAddr) -> UdpRelay {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let client_side = UdpSocket::bind(loopback)
            .await
            .expect("the relay binds its client-side socket on 127.0.0.1");
        let server_side = UdpSocket::bind(loopback)
            .await
            .expect("the relay binds its server-side socket on 127.0.0.1");
        let client_addr = client_side
            .local_addr()
            .expect("a bound socket has a local address");
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(forward(client_side, server_side, server, Arc::clone(&cut)));
        UdpRelay {
            client_addr,
            cut,
            task,
        }
    }

    /// Address that the client uses in place of the server's media address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Drops every datagram from now on, in both directions.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Stops the relay and closes its sockets.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn forward(
    client_side: UdpSocket,
    server_side: UdpSocket,
    server: SocketAddr,
    cut: Arc<AtomicBool>,
) {
    let mut from_client = vec![0u8; BUFFER_LEN];
    let mut from_server = vec![0u8; BUFFER_LEN];
    let mut client: Option<SocketAddr> = None;
    let mut errors = 0;
    for _ in 0..MAX_DATAGRAMS {
        // Send failures are ignored: UDP may drop datagrams anyway, and ICE retransmits.
        tokio::select! {
            received = client_side.recv_from(&mut from_client) => match received {
                Ok((len, source)) => {
                    client = Some(source);
                    if !cut.load(Ordering::Relaxed) {
                        let _ = server_side.send_to(&from_client[..len], server).await;
                    }
                }
                Err(_) => errors += 1,
            },
            received = server_side.recv_from(&mut from_server) => match received {
                Ok((len, source)) => {
                    if let Some(client) = client.filter(|_| source == server) {
                        if !cut.load(Ordering::Relaxed) {
                            let _ = client_side.send_to(&from_server[..len], client).await;
                        }
                    }
                }
                Err(_) => errors += 1,
            },
        }
        if errors > MAX_RECEIVE_ERRORS {
            tracing::warn!(
                errors,
                "the UDP relay stopped after repeated receive errors"
            );
            return;
        }
    }
    tracing::warn!("the UDP relay stopped after {MAX_DATAGRAMS} datagrams");
}
