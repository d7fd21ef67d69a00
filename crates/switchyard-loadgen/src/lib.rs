//! Load generator for SFUs: synthetic webrtc-rs publishers and subscribers that join through a
//! server's real signaling, send RTP at realistic rates and measure what comes out.
//!
//! Publishers send an Opus-like audio track (50 packets per second, 160-byte payloads) and a
//! video track at a chosen bitrate, in bursts of whole frames of 1,000 to 1,200-byte packets.
//! Every payload carries a probe ([`probe`]) with the publisher, the track, a sequence number
//! and the send time. Subscribers record every probe ([`stats`]), and a run ([`scenario`])
//! adds up loss, reordering and latency over a measurement window, together with the server's
//! and the load generator's CPU time from `/proc/<pid>/stat` ([`cpu`]).
//!
//! Two servers are supported: Switchyard through `GET /v1/ws` ([`switchyard`]) and Janus's
//! VideoRoom through its WebSocket API ([`janus`]).
//!
//! The latency is measured from the publisher's `write_rtp` to the subscriber's read, so it
//! includes both webrtc-rs stacks (SRTP, interceptors, task hops) as well as the SFU. It is an
//! upper bound on the latency the SFU adds.

pub mod cpu;
pub mod janus;
pub mod peer;
pub mod probe;
pub mod report;
pub mod scenario;
pub mod sfu_delay;
pub mod stats;
pub mod switchyard;
