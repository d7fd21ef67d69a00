//! Debug lines about mistakes a client can repeat at will, rate-limited over all clients so a
//! misbehaving or hostile client cannot flood the log. Each admitted line says how many were
//! suppressed before it.

use std::time::Instant;

use switchyard_sfu::log_limit::LogLimiter;
use tracing::debug;

use crate::decode::DecodeError;

/// Lines a second for each kind of mistake.
const LINES_PER_SECOND: u32 = 10;

/// Logs a client message that did not decode.
pub(crate) fn invalid_message(error: &DecodeError) {
    static LIMIT: LogLimiter = LogLimiter::new(LINES_PER_SECOND);
    if let Some(suppressed) = LIMIT.admit(Instant::now()) {
        debug!(%error, suppressed, "invalid client message");
    }
}

/// Logs a binary WebSocket frame, which the protocol does not use.
pub(crate) fn binary_frame(bytes: usize) {
    static LIMIT: LogLimiter = LogLimiter::new(LINES_PER_SECOND);
    if let Some(suppressed) = LIMIT.admit(Instant::now()) {
        debug!(bytes, suppressed, "binary frame rejected");
    }
}

/// Logs a rejected join token. The token itself is a credential and is never logged.
pub(crate) fn token_rejected(room: &str, error: &dyn std::fmt::Display) {
    static LIMIT: LogLimiter = LogLimiter::new(LINES_PER_SECOND);
    if let Some(suppressed) = LIMIT.admit(Instant::now()) {
        debug!(room_id = %room, %error, suppressed, "join token rejected");
    }
}
