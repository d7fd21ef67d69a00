//! STUN/TURN server: STUN Binding (RFC 8489) and TURN relaying (RFC 8656) over UDP, TCP and TLS,
//! with long-term and time-limited credentials, quotas and a peer address policy.
//!
//! `switchyard serve` embeds it next to the SFU; `switchyard turn --config FILE` runs it alone as
//! a relay node.
//!
//! [`start`] validates a [`TurnConfig`], binds every listener and spawns the drivers on the
//! current tokio runtime. The protocol logic lives in a sans-IO core that the drivers feed with
//! received bytes and the current time.

mod config;
pub mod core;
mod counters;
mod credentials;
mod driver;
mod error;
mod server;
pub mod stun;

pub use config::{ConfigError, StaticUser, TurnConfig};
pub use counters::{CounterSnapshot, Direction, Traffic, TrafficByTransport, TurnCounters};
pub use credentials::{mint_credentials, Credentials};
pub use error::TurnError;
pub use server::{start, TurnServer};
