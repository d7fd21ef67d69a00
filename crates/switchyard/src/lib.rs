//! The Switchyard server as a library: configuration, command line, the embedded browser client,
//! and [`run`], which starts the HTTP listener, the SFU, the bundled TURN relay and signaling in
//! the current tokio runtime. The `switchyard` binary is a thin `main` around it, and
//! integration tests call [`run`] directly with port 0 addresses.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod health;
pub mod metrics;
mod relay;
pub mod relay_log_limit;
mod server;
pub mod telemetry;
pub mod turn_config;
pub mod turn_metrics;
pub mod web;

pub use config::{ConfigError, ServerConfig};
pub use health::Readiness;
pub use relay::RelayAddrs;
pub use server::{run, RunError, RunningServer};
pub use switchyard_signal::token;
pub use tokio_util::sync::CancellationToken;
