//! Selective forwarding unit: receives each participant's media on a publisher peer connection
//! and forwards it to every other participant in the same room on their subscriber connection.
//!
//! All peer connections are webrtc-rs `rtc` (sans-IO) instances. One tokio task per worker (a
//! shard) owns whole participants and a socket of its own on the one media port
//! (`SO_REUSEPORT`), so every peer sends to the same address. A large room spreads over
//! shards, which pass its tracks and RTP to each other. Datagrams reach their connection by the
//! STUN USERNAME of the first connectivity check and by source address afterwards, crossing to
//! the owning shard when the kernel delivered them to another shard's socket. The signaling
//! layer talks to that task through an [`SfuHandle`] and receives SDP, candidates and track
//! notices as [`switchyard_proto::ServerMessage`] values on a per-participant channel.

mod batch;
mod config;
mod driver;
mod forward;
mod handle;
pub mod log_limit;
pub mod metrics;
mod negotiation;
mod peer;
mod remote;
mod rtcp_observer;
mod sfu;
mod shard;
mod stun;

pub use config::SfuConfig;
pub use handle::{start, EventSender, SfuHandle};

#[cfg(test)]
mod tests;
