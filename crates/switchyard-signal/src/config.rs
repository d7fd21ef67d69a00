//! Signaling settings: message size limit, outbound queue length, close timeout and the ICE
//! servers handed to clients.

use std::time::Duration;

use switchyard_proto::IceServer;

/// Default maximum size of one client message in bytes (64 KiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Default number of messages that may wait for one client before it counts as a slow consumer.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 256;

/// Default time allowed for the close frame to reach a client and for its reply to arrive.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings for the WebSocket endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalConfig {
    /// Maximum size in bytes of one client message, after reassembly of fragments. A larger
    /// message gets a `message_too_large` error and close code 1009. Default 64 KiB.
    pub max_message_size: usize,
    /// Number of messages that may wait for one client. When a message arrives for a client
    /// whose queue is full, the connection closes with code 4008. Values below 1 count as 1.
    /// Default 256.
    ///
    /// NOTE: the writer task drains the queue while the session handles input, but the session
    /// may handle up to about 128 inputs (tokio's cooperative budget) before the writer gets
    /// to run. A queue shorter than that can fill during a burst even when the client reads.
    pub outbound_queue: usize,
    /// Time allowed, when a session ends, for the queued messages and the close frame to be
    /// written and for the client's close reply to arrive. The connection is dropped after it.
    /// Default 5 seconds.
    pub close_timeout: Duration,
    /// STUN and TURN servers sent to every client in `joined.iceServers`. Default: none.
    pub ice_servers: Vec<IceServer>,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ice_servers: Vec::new(),
        }
    }
}
