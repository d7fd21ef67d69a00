//! Selective forwarding unit: receives each participant's media on a publisher peer connection
//! and forwards it to every other participant in the same room on their subscriber connection.
//!
//! All peer connections are webrtc-rs `rtc` (sans-IO) instances owned by one tokio task, which
//! also owns the single UDP socket that every peer sends to. Datagrams reach their connection by
//! the STUN USERNAME of the first connectivity check and by source address afterwards. The
//! signaling layer talks to that task through an [`SfuHandle`] and receives SDP, candidates and
//! track notices as [`switchyard_proto::ServerMessage`] values on a per-participant channel.

mod batch;
mod config;
mod driver;
mod forward;
mod handle;
pub mod metrics;
mod negotiation;
mod peer;
mod rtcp_observer;
mod sfu;
mod stun;

pub use config::SfuConfig;
pub use handle::{start, EventSender, SfuHandle};

#[cfg(test)]
mod tests;
