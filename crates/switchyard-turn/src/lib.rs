//! STUN/TURN server: STUN Binding (RFC 8489) and TURN relaying (RFC 8656) over UDP, TCP and TLS,
//! with long-term and time-limited credentials, quotas and a peer address policy.
//!
//! `switchyard serve` embeds it next to the SFU; `switchyard turn --config FILE` runs it alone as
//! a relay node.

mod config;
mod credentials;

pub use config::{StaticUser, TurnConfig};
pub use credentials::{mint_credentials, Credentials};
