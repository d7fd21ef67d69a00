//! Errors of starting a TURN server.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Failure of [`start`](crate::start).
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind its address.
    #[error("failed to bind {transport} listener on {addr}: {source}")]
    Bind {
        /// `udp`, `tcp` or `tls`.
        transport: &'static str,
        /// Address from the config.
        addr: SocketAddr,
        /// Error of the bind call.
        source: std::io::Error,
    },
    /// The TLS certificate or key file could not be read or used.
    #[error("failed to load TLS {what} from {path}: {reason}")]
    Tls {
        /// `certificate` or `private key`.
        what: &'static str,
        /// Path from the config.
        path: PathBuf,
        /// Error message of the PEM parser or of rustls.
        reason: String,
    },
    /// The system random number generator failed.
    #[error("failed to generate the nonce key: the system random number generator failed")]
    Random,
}
