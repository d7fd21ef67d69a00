//! Starting and stopping a whole server: HTTP listener, SFU, the bundled TURN relay and
//! signaling.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::serve::ListenerExt;
use switchyard_signal::{app, AppState, MemoryRoomStore};
use switchyard_turn::TurnServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::config::ServerConfig;
use crate::health::{self, Readiness};
use crate::metrics::MetricsSources;
use crate::relay::{self, RelayAddrs};
use crate::turn_metrics;
use crate::web;

/// Failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP listener could not be bound.
    #[error("could not bind HTTP listener on {addr}")]
    BindHttp {
        /// Requested address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The SFU could not bind its media socket or start.
    #[error("could not start the SFU on media address {addr}")]
    StartSfu {
        /// Requested media address.
        addr: SocketAddr,
        /// The SFU's error.
        #[source]
        source: std::io::Error,
    },
    /// The bundled TURN relay could not start.
    #[error("could not start the bundled TURN relay")]
    StartTurn(#[source] switchyard_turn::TurnError),
    /// The bundled relay's metrics endpoint could not be bound.
    #[error("could not bind the TURN metrics endpoint on {addr}")]
    BindTurnMetrics {
        /// The relay config's `metrics-listen` address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Accepting HTTP connections failed.
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("server task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

/// A started server. Dropping it leaves the server running. Cancel the shutdown token to stop
/// it.
#[derive(Debug)]
pub struct RunningServer {
    http_addr: SocketAddr,
    media_addr: SocketAddr,
    relay_addrs: Option<RelayAddrs>,
    readiness: Readiness,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningServer {
    /// Address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address the media socket is bound to.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    /// Listener addresses of the bundled TURN relay, or `None` when it is disabled.
    pub fn relay_addrs(&self) -> Option<&RelayAddrs> {
        self.relay_addrs.as_ref()
    }

    /// Returns the readiness that `GET /readyz` reports. Call
    /// [`Readiness::start_draining`] before cancelling the shutdown token to take the server
    /// out of a load balancer first.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Waits until the server has stopped: the listener is closed and every session has sent
    /// its close frame or timed out.
    pub async fn wait(self) -> Result<(), RunError> {
        self.task.await.map_err(RunError::Task)?
    }
}

/// Binds the HTTP listener, the media socket and the TURN relay's listeners, and serves until
/// `shutdown` is cancelled.
///
/// Returns once every socket is bound, so the addresses in [`RunningServer`] are final even
/// when the configuration requests port 0. On shutdown, every connected client gets `error`
/// `server_shutdown` and close code 1001 and leaves the SFU, and then the relay stops.
pub async fn run(
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<RunningServer, RunError> {
    let listener = TcpListener::bind(config.http)
        .await
        .map_err(|source| RunError::BindHttp {
            addr: config.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| RunError::BindHttp {
        addr: config.http,
        source,
    })?;
    let sfu = switchyard_sfu::start(config.sfu_config())
        .await
        .map_err(|source| RunError::StartSfu {
            addr: config.media,
            source,
        })?;
    let media_addr = sfu.media_addr();
    let mut metrics = MetricsSources {
        sfu: sfu.counters(),
        turn: None,
    };

    let mut signal_config = config.signal_config();
    let (relay_server, relay_addrs) = match config.turn.clone() {
        Some(turn) => {
            // The address in the SFU's candidates, which relayed client traffic goes to.
            let sfu_peer = SocketAddr::new(
                config.public_ip.unwrap_or(media_addr.ip()),
                media_addr.port(),
            );
            let metrics_listen = turn.metrics_listen;
            let relay = relay::start(turn, sfu_peer, config.public_ip, &config.turn_urls)
                .await
                .map_err(RunError::StartTurn)?;
            if let Some(addr) = metrics_listen {
                // The endpoint stops by itself when `shutdown` is cancelled.
                turn_metrics::start(addr, relay.server.counters(), shutdown.clone())
                    .await
                    .map_err(|source| RunError::BindTurnMetrics { addr, source })?;
            }
            signal_config.turn_relay = Some(relay.credentials);
            metrics.turn = Some(relay.server.counters());
            (Some(relay.server), Some(relay.addrs))
        }
        None => (None, None),
    };

    let store = Arc::new(MemoryRoomStore::new());
    let state = AppState::new(signal_config, store, sfu, shutdown.clone());
    let readiness = Readiness::new(shutdown.clone());
    let router = app(state.clone())
        .merge(operations_routes(metrics, readiness.clone()))
        .fallback_service(get(web::serve_asset));
    info!(%http_addr, %media_addr, "listening");

    let task =
        tokio::spawn(serve(listener, router, state, relay_server, shutdown).in_current_span());
    Ok(RunningServer {
        http_addr,
        media_addr,
        relay_addrs,
        readiness,
        task,
    })
}

/// Routes for operators: `/metrics`, `/healthz` and `/readyz`.
fn operations_routes(metrics: MetricsSources, readiness: Readiness) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(move || async move { metrics.response() }))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(move || async move { readiness.response() }))
}

/// Turns off Nagle's algorithm on an accepted connection. Signaling frames are small, and
/// with it a frame written while an earlier one waits for its ACK is held until the client's
/// delayed ACK, about 40 ms on Linux.
fn set_socket_options(stream: &mut TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "could not set TCP_NODELAY on an accepted connection");
    }
}

async fn serve(
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    relay: Option<TurnServer>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let listener = listener.tap_io(set_socket_options);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;

    // Sessions are not part of axum's graceful shutdown once upgraded, so end them here. This
    // also covers the listener failing without a shutdown request.
    shutdown.cancel();
    info!(sessions = state.session_count(), "closing sessions");
    state.wait_for_sessions().await;
    if let Some(relay) = relay {
        relay.shutdown().await;
        info!("bundled TURN relay stopped");
    }
    info!("server stopped");
    served.map_err(RunError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let _client = client.unwrap();
        let (mut stream, _) = accepted.unwrap();
        assert!(!stream.nodelay().unwrap());

        set_socket_options(&mut stream);
        assert!(stream.nodelay().unwrap());
    }
}
