//! The real Switchyard server, started in-process on loopback ports picked by the kernel, and
//! the tokio runtime the scenarios run on.

use std::net::{Ipv4Addr, SocketAddr};

use switchyard::{CancellationToken, RunningServer, ServerConfig};
use tracing_subscriber::EnvFilter;

use crate::support::client::WAIT_TIMEOUT;

/// Builds the runtime for one scenario and installs the log subscriber.
///
/// Logs go through the test harness's capture, so they show for a failing test. `RUST_LOG`
/// selects them, for example `RUST_LOG=switchyard_sfu=debug,webrtc=info`. Without it only
/// warnings and errors show.
pub fn runtime() -> tokio::runtime::Runtime {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A second scenario in the same process finds the subscriber already installed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("failed to build the tokio runtime")
}

/// Reads a count from the environment variable `name`. A value that is not a positive
/// number fails the scenario, so that a typo does not silently test the defaults.
fn env_override(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(count) if count > 0 => Some(count),
        _ => panic!("{name} must be a positive number, not {value:?}"),
    }
}

/// A running server and the token that stops it.
pub struct TestServer {
    pub http_addr: SocketAddr,
    pub media_addr: SocketAddr,
    shutdown: CancellationToken,
    server: RunningServer,
}

impl TestServer {
    /// Starts the server with HTTP and media on 127.0.0.1, port 0, and default settings
    /// otherwise. The media socket's address is the candidate the server advertises.
    pub async fn start() -> TestServer {
        TestServer::start_with(ServerConfig::default()).await
    }

    /// Starts the server with `config`, except that HTTP and media listen on 127.0.0.1, port 0,
    /// and the bundled TURN relay is off, because these clients ignore `iceServers`.
    ///
    /// `E2E_MEDIA_WORKERS` in the environment raises the config's SFU workers to at least that
    /// many, and `E2E_ROOM_SPREAD_AFTER` replaces its room spread limit. With 2 and 1, every
    /// scenario's rooms span at least two workers.
    pub async fn start_with(config: ServerConfig) -> TestServer {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let config = ServerConfig {
            http: loopback,
            media: loopback,
            turn: None,
            media_workers: env_override("E2E_MEDIA_WORKERS")
                .map_or(config.media_workers, |workers| {
                    workers.max(config.media_workers)
                }),
            room_spread_after: env_override("E2E_ROOM_SPREAD_AFTER")
                .unwrap_or(config.room_spread_after),
            ..config
        };
        let shutdown = CancellationToken::new();
        let server = switchyard::run(config, shutdown.clone())
            .await
            .unwrap_or_else(|error| {
                panic!("the server failed to start on 127.0.0.1 (is `lo` up?): {error:?}")
            });
        TestServer {
            http_addr: server.http_addr(),
            media_addr: server.media_addr(),
            shutdown,
            server,
        }
    }

    /// Cancels the shutdown token and waits until the server has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(WAIT_TIMEOUT, self.server.wait()).await;
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the server stopped with an error: {error:?}"),
            Err(_) => panic!("the server did not stop within {WAIT_TIMEOUT:?} of shutdown"),
        }
    }
}
