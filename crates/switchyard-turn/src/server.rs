//! The running server: binds the listeners from a [`TurnConfig`] and owns the driver tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tracing::info;

use crate::config::TurnConfig;
use crate::core::{Core, CoreConfig};
use crate::counters::TurnCounters;
use crate::driver::socket::UdpSocket;
use crate::driver::{self, stream, tls, udp, Shared};
use crate::error::TurnError;

/// A started TURN server. Dropping it without [`shutdown`](Self::shutdown) leaves the drivers
/// running until the runtime stops.
pub struct TurnServer {
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("udp_addrs", &self.udp_addrs)
            .field("tcp_addrs", &self.tcp_addrs)
            .field("tls_addrs", &self.tls_addrs)
            .finish_non_exhaustive()
    }
}

/// Validates `config`, binds every listener and spawns the drivers on the current tokio runtime.
pub async fn start(config: TurnConfig) -> Result<TurnServer, TurnError> {
    config.validate()?;
    let acceptor = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) if !config.listen_tls.is_empty() => Some(tls::acceptor(cert, key)?),
        _ => None,
    };

    let mut udp_sockets = Vec::new();
    for addr in &config.listen_udp {
        let socket = UdpSocket::bind(*addr).map_err(|source| bind_error("udp", *addr, source))?;
        let local = socket.local_addr();
        udp_sockets.push((Arc::new(socket), local));
    }
    let tcp_listeners = bind_tcp(&config.listen_tcp, "tcp").await?;
    let tls_listeners = bind_tcp(&config.listen_tls, "tls").await?;

    let udp_addrs: Vec<_> = udp_sockets.iter().map(|(_, local)| *local).collect();
    let tcp_addrs: Vec<_> = tcp_listeners.iter().map(|(_, local)| *local).collect();
    let tls_addrs: Vec<_> = tls_listeners.iter().map(|(_, local)| *local).collect();
    let own_addresses = [&udp_addrs[..], &tcp_addrs, &tls_addrs].concat();
    let core_config = CoreConfig::from_turn_config(&config, own_addresses, random_key()?)?;
    let counters = Arc::new(TurnCounters::default());
    let shared = Shared::new(
        Core::new(core_config, counters.clone(), Instant::now()),
        counters,
    );

    for (socket, _) in udp_sockets {
        udp::spawn_listener(&shared, socket);
    }
    for (listener, _) in tcp_listeners {
        stream::spawn_listener(&shared, listener, None);
    }
    for (listener, _) in tls_listeners {
        stream::spawn_listener(&shared, listener, acceptor.clone());
    }
    driver::spawn_timer(&shared);
    info!(udp = ?udp_addrs, tcp = ?tcp_addrs, tls = ?tls_addrs, realm = %config.realm, "TURN server started");
    Ok(TurnServer {
        udp_addrs,
        tcp_addrs,
        tls_addrs,
        shared,
    })
}

async fn bind_tcp(
    addrs: &[SocketAddr],
    transport: &'static str,
) -> Result<Vec<(TcpListener, SocketAddr)>, TurnError> {
    let mut bound = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| bind_error(transport, *addr, source))?;
        let local = listener
            .local_addr()
            .map_err(|source| bind_error(transport, *addr, source))?;
        bound.push((listener, local));
    }
    Ok(bound)
}

fn bind_error(transport: &'static str, addr: SocketAddr, source: std::io::Error) -> TurnError {
    TurnError::Bind {
        transport,
        addr,
        source,
    }
}

fn random_key() -> Result<[u8; 32], TurnError> {
    let mut key = [0; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| TurnError::Random)?;
    Ok(key)
}

impl TurnServer {
    /// Bound UDP listener addresses, with ports chosen by the system where the config had 0.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp_addrs.clone()
    }

    /// Bound TCP listener addresses.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp_addrs.clone()
    }

    /// Bound TLS listener addresses.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls_addrs.clone()
    }

    /// Live counters of this server.
    pub fn counters(&self) -> Arc<TurnCounters> {
        self.shared.counters.clone()
    }

    /// Stops the listeners and relays, waits for every driver task to end and releases every
    /// socket.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.clear();
        self.shared.tasks.wait().await;
        self.shared.clear();
        info!(udp = ?self.udp_addrs, "TURN server stopped");
    }
}
