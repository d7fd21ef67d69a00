//! Harness shared by the end-to-end scenarios: loopback-only network namespaces, the in-process
//! server, webrtc-rs participants, checkable test media and the checks on it, keyframe requests
//! seen by a publisher, and a UDP relay that can cut a connection.
//!
//! Every scenario file compiles this module into its own test binary and uses only part of it.
#![allow(dead_code)]

pub mod checks;
pub mod client;
pub mod feedback;
pub mod media;
pub mod namespace;
pub mod relay;
pub mod server;
pub mod signaling;
