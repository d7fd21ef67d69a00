//! STUN/TURN server: STUN Binding (RFC 8489) and TURN relaying (RFC 8656) over UDP, TCP and TLS,
//! with long-term and time-limited credentials, quotas and a peer address policy.
//!
//! `switchyard serve` embeds it next to the SFU; `switchyard turn --config FILE` runs it alone as
//! a relay node.
//!
//! [`start`] validates a [`TurnConfig`], binds every listener and spawns the drivers on the
//! current tokio runtime; [`TurnServer::shutdown`] stops them and releases every socket.
//!
//! # Structure
//!
//! - [`core`]: the sans-IO state machine. It takes the current time and received bytes and
//!   returns replies, payloads to forward and commands for the drivers. It owns allocations,
//!   permissions, channel bindings, nonces, quotas, the peer policy and authentication, and
//!   never touches a socket or the clock.
//! - [`stun`]: a borrowed, validating view of STUN messages, a writer into reused buffers,
//!   ChannelData and the stream framer. Types, attribute codes and reason phrases come from
//!   `rtc-stun`.
//! - `driver`: one tokio driver per listener type (UDP, TCP, TLS) plus the relay sockets. The
//!   core sits behind one lock that no driver holds across an `.await`.
//!
//! # Supported
//!
//! Allocate, Refresh, CreatePermission, ChannelBind, Send and Data indications, ChannelData,
//! EVEN-PORT and RESERVATION-TOKEN, IPv6 relays (RFC 6156), TCP relays (RFC 6062: Connect,
//! ConnectionBind, ConnectionAttempt), MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 with
//! PASSWORD-ALGORITHMS and USERHASH, static users and coturn-style time-limited credentials.
//!
//! Not supported: DTLS, OAuth (RFC 7635), ADDITIONAL-ADDRESS-FAMILY dual allocations and
//! DONT-FRAGMENT, which Allocate rejects with 420 as RFC 8656 section 7.2 prescribes for a
//! server that cannot set the DF bit. USERHASH works for static users only, because the user
//! name of time-limited credentials cannot be recovered from its hash.

mod config;
pub mod core;
mod counters;
mod credentials;
mod driver;
mod error;
mod server;
pub mod stun;

pub use config::{ConfigError, StaticUser, TurnConfig};
pub use counters::{CounterSnapshot, Traffic, TrafficByTransport, TurnCounters};
pub use credentials::{mint_credentials, Credentials};
pub use error::TurnError;
pub use server::{start, TurnServer};
