//! The running server: binds the listeners from a [`TurnConfig`] and owns the driver tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use crate::config::TurnConfig;
use crate::counters::TurnCounters;
use crate::error::TurnError;

/// A started TURN server. Dropping it without [`shutdown`](Self::shutdown) leaves the drivers
/// running until the runtime stops.
#[derive(Debug)]
pub struct TurnServer {
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    counters: Arc<TurnCounters>,
    listeners: Vec<Listener>,
}

#[derive(Debug)]
enum Listener {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

/// Validates `config`, binds every listener and spawns the drivers on the current tokio runtime.
pub async fn start(config: TurnConfig) -> Result<TurnServer, TurnError> {
    config.validate()?;
    let mut listeners = Vec::new();
    let mut udp_addrs = Vec::new();
    for addr in &config.listen_udp {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| TurnError::Bind {
                transport: "udp",
                addr: *addr,
                source,
            })?;
        udp_addrs.push(local_addr(&socket.local_addr(), *addr));
        listeners.push(Listener::Udp(socket));
    }
    let tcp_addrs = bind_tcp(&config.listen_tcp, "tcp", &mut listeners).await?;
    let tls_addrs = bind_tcp(&config.listen_tls, "tls", &mut listeners).await?;
    Ok(TurnServer {
        udp_addrs,
        tcp_addrs,
        tls_addrs,
        counters: Arc::new(TurnCounters::default()),
        listeners,
    })
}

async fn bind_tcp(
    addrs: &[SocketAddr],
    transport: &'static str,
    listeners: &mut Vec<Listener>,
) -> Result<Vec<SocketAddr>, TurnError> {
    let mut bound = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TurnError::Bind {
                transport,
                addr: *addr,
                source,
            })?;
        bound.push(local_addr(&listener.local_addr(), *addr));
        listeners.push(Listener::Tcp(listener));
    }
    Ok(bound)
}

fn local_addr(result: &std::io::Result<SocketAddr>, configured: SocketAddr) -> SocketAddr {
    result.as_ref().copied().unwrap_or(configured)
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
        self.counters.clone()
    }

    /// Stops the listeners and relays and releases every socket.
    pub async fn shutdown(self) {
        drop(self.listeners);
    }
}
