//! Tokio drivers: one per listener type (UDP, TCP, TLS) plus the relay sockets. They own the
//! sockets and feed the sans-IO [`Core`](crate::core::Core), which sits behind one lock that is
//! never held across an `.await`.

mod batch;
pub(crate) mod socket;
pub(crate) mod stream;
pub(crate) mod tcp_relay;
pub(crate) mod tls;
pub(crate) mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error};

use crate::core::{
    ClientAddr, Command, ConnectionId, Core, Now, RelayId, RelayTransport, Transport,
};
use crate::counters::TurnCounters;
use batch::Outbox;
use socket::UdpSocket;
use stream::StreamSink;

/// State shared by every driver task of one server.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub counters: Arc<TurnCounters>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// The core and the driver-side tables that go with it, under one lock.
pub(crate) struct State {
    pub core: Core,
    relays: HashMap<RelayId, Relay>,
    streams: HashMap<ClientAddr, Arc<StreamSink>>,
    udp_listeners: HashMap<SocketAddr, Arc<UdpSocket>>,
    peer_streams: HashMap<ConnectionId, TcpStream>,
    /// UDP sockets bound for reservations (EVEN-PORT with the R bit), by address, until an
    /// Allocate with the token takes them or the reservation expires.
    reserved: HashMap<SocketAddr, Arc<UdpSocket>>,
}

/// A UDP socket bound for a reservation, and the address it was asked for.
type HeldSocket = (SocketAddr, Arc<UdpSocket>);

struct Relay {
    /// The UDP relay socket; `None` for TCP relays, whose listener lives in its task.
    socket: Option<Arc<UdpSocket>>,
    task: JoinHandle<()>,
}

/// Destination of messages for one client.
#[derive(Clone)]
pub(crate) enum ClientSink {
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    Stream(Arc<StreamSink>),
}

impl ClientSink {
    /// Sends one message. A UDP datagram that does not fit the socket buffer is dropped, as
    /// the network would drop it.
    pub fn send(&self, data: &[u8]) {
        match self {
            ClientSink::Udp { socket, to } => {
                if let Err(error) = socket.send_to(data, *to) {
                    debug!(client = %to, %error, "failed to send to client");
                }
            }
            ClientSink::Stream(sink) => sink.push(data),
        }
    }

    /// Sends every message in `outbox`, addressed to this client, and empties it.
    pub fn send_all(&self, outbox: &mut Outbox) {
        if outbox.is_empty() {
            return;
        }
        match self {
            ClientSink::Udp { socket, .. } => outbox.send(socket),
            ClientSink::Stream(sink) => {
                sink.push_all(outbox.messages());
                outbox.clear();
            }
        }
    }
}

impl Shared {
    pub fn new(core: Core, counters: Arc<TurnCounters>) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                core,
                relays: HashMap::new(),
                streams: HashMap::new(),
                udp_listeners: HashMap::new(),
                peer_streams: HashMap::new(),
                reserved: HashMap::new(),
            }),
            counters,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// Locks the state. A panic while the lock was held is a bug elsewhere; the state is
    /// still used rather than taking the whole server down with it.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops every socket and connection that the tables hold.
    pub fn clear(&self) {
        let mut state = self.lock();
        for (_, relay) in state.relays.drain() {
            relay.task.abort();
        }
        state.streams.clear();
        state.udp_listeners.clear();
        state.peer_streams.clear();
        state.reserved.clear();
    }
}

impl State {
    pub fn register_udp_listener(&mut self, socket: Arc<UdpSocket>, local: SocketAddr) {
        self.udp_listeners.insert(local, socket);
    }

    pub fn register_stream(&mut self, client: ClientAddr, sink: Arc<StreamSink>) {
        self.streams.insert(client, sink);
    }

    pub fn unregister_stream(&mut self, client: &ClientAddr) {
        self.streams.remove(client);
    }

    pub fn relay_socket(&self, relay: RelayId) -> Option<Arc<UdpSocket>> {
        self.relays.get(&relay)?.socket.clone()
    }

    pub fn take_peer_stream(&mut self, connection: ConnectionId) -> Option<TcpStream> {
        self.peer_streams.remove(&connection)
    }

    pub fn insert_peer_stream(&mut self, connection: ConnectionId, stream: TcpStream) {
        self.peer_streams.insert(connection, stream);
    }

    fn sink_for(&self, client: &ClientAddr) -> Option<ClientSink> {
        match client.transport {
            Transport::Udp => Some(ClientSink::Udp {
                socket: self.udp_listeners.get(&client.local)?.clone(),
                to: client.remote,
            }),
            Transport::Tcp | Transport::Tls => {
                Some(ClientSink::Stream(self.streams.get(client)?.clone()))
            }
        }
    }

    /// Carries out every command the core has queued.
    pub fn drain_commands(&mut self, shared: &Arc<Shared>) {
        while let Some(command) = self.core.poll_command() {
            match command {
                Command::BindRelay {
                    relay,
                    addr,
                    transport,
                    client,
                    reserve_next,
                } => self.bind_relay(shared, relay, addr, transport, client, reserve_next),
                Command::ReleaseReserved { addr } => {
                    self.reserved.remove(&addr);
                }
                Command::CloseRelay { relay } => {
                    if let Some(relay) = self.relays.remove(&relay) {
                        relay.task.abort();
                    }
                }
                Command::Transmit { to, data } => match self.sink_for(&to) {
                    Some(sink) => sink.send(&data),
                    None => {
                        debug!(client = %to.remote, "dropped message for a client that is gone")
                    }
                },
                Command::ConnectPeer {
                    connection,
                    relay_addr,
                    peer,
                } => tcp_relay::spawn_connect(shared, connection, relay_addr, peer),
                Command::ClosePeerConnection { connection } => {
                    self.peer_streams.remove(&connection);
                }
            }
        }
    }

    fn bind_relay(
        &mut self,
        shared: &Arc<Shared>,
        relay: RelayId,
        addr: SocketAddr,
        transport: RelayTransport,
        client: ClientAddr,
        reserve_next: bool,
    ) {
        let Some(sink) = self.sink_for(&client) else {
            // The client left while its Allocate was processed, so the allocation goes with it.
            // A socket held for its reserved port is closed too.
            self.reserved.remove(&addr);
            self.core.handle_client_closed(client);
            return;
        };
        let mut reserved_socket = None;
        let result = match transport {
            RelayTransport::Udp => self
                .bind_udp_relay(addr, reserve_next)
                .map(|(socket, next)| {
                    reserved_socket = next;
                    let task = udp::spawn_relay(shared, relay, socket.clone(), sink, client.remote);
                    (
                        Relay {
                            socket: Some(socket.clone()),
                            task,
                        },
                        Ok(socket.local_addr()),
                    )
                }),
            RelayTransport::Tcp => tcp_relay::bind_listener(addr).map(|listener| {
                let local = listener.local_addr();
                let task = tcp_relay::spawn_accept(shared, relay, listener);
                (Relay { socket: None, task }, local)
            }),
        };
        let now = now();
        match result {
            Ok((entry, Ok(local))) => {
                self.relays.insert(relay, entry);
                if let Some((next, socket)) = reserved_socket {
                    self.reserved.insert(next, socket);
                }
                self.core.handle_relay_bound(now, relay, Ok(local));
            }
            Ok((entry, Err(error))) => {
                entry.task.abort();
                error!(relay = relay.0, %error, "failed to read the address of a bound relay socket");
                self.core.handle_relay_bound(now, relay, Err(error));
            }
            Err(error) => self.core.handle_relay_bound(now, relay, Err(error)),
        }
    }

    /// Binds a UDP relay socket to `addr`, or takes the one held for it since a reservation.
    /// With `reserve_next`, also binds the next port, which fails the whole bind when taken.
    fn bind_udp_relay(
        &mut self,
        addr: SocketAddr,
        reserve_next: bool,
    ) -> std::io::Result<(Arc<UdpSocket>, Option<HeldSocket>)> {
        let socket = match self.reserved.remove(&addr) {
            Some(socket) => socket,
            None => udp::bind_relay(addr)?,
        };
        if !reserve_next {
            return Ok((socket, None));
        }
        let port = addr.port().checked_add(1).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no port above 65535")
        })?;
        let next = SocketAddr::new(addr.ip(), port);
        Ok((socket, Some((next, udp::bind_relay(next)?))))
    }
}

/// Reads the current monotonic and wall-clock time.
pub(crate) fn now() -> Now {
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    Now {
        instant: Instant::now(),
        unix_secs,
    }
}

/// Runs the core's timers until shutdown.
pub(crate) fn spawn_timer(shared: &Arc<Shared>) {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        loop {
            let deadline = shared.lock().core.poll_timeout();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shared.shutdown.cancelled() => return,
            }
            let mut state = shared.lock();
            state.core.handle_timeout(Instant::now());
            state.drain_commands(&shared);
        }
    });
}
