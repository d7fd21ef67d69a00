//! Per-call-site rate limit for the relay's debug and trace lines.
//!
//! The STUN/TURN relay logs every rejected or malformed request at debug level with the client's
//! address, so anyone who can send datagrams to it could flood the log when debug logging is on.
//! This filter lets through at most a fixed number of such lines a second from each call site.
//! Info and more severe lines, and lines from other crates, always pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Target prefix of the relay crate's log lines.
const RELAY_TARGET: &str = "switchyard_turn";

/// Lines a second let through from one call site by default.
pub const DEFAULT_LINES_PER_SECOND: u32 = 10;

/// A per-layer filter that limits the relay's debug and trace events per call site.
#[derive(Debug)]
pub struct RelayLogLimit {
    lines_per_second: u32,
    epoch: Instant,
    /// Per call site: the second since `epoch` of its current window and the lines in it.
    windows: Mutex<HashMap<Identifier, (u64, u32)>>,
}

impl RelayLogLimit {
    /// Creates a filter that lets through `lines_per_second` lines a second per call site.
    pub fn new(lines_per_second: u32) -> Self {
        RelayLogLimit {
            lines_per_second,
            epoch: Instant::now(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn is_limited(metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && *metadata.level() >= Level::DEBUG
            && metadata.target().starts_with(RELAY_TARGET)
    }

    /// Counts one event of the call site and returns whether it is within this second's limit.
    fn admit(&self, callsite: Identifier) -> bool {
        let second = self.epoch.elapsed().as_secs();
        // Each access is one lookup and update of a plain counter, so a panic elsewhere cannot
        // leave the map inconsistent, and poisoning is ignored.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = windows.entry(callsite).or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 = window.1.saturating_add(1);
        window.1 <= self.lines_per_second
    }
}

impl<S> Filter<S> for RelayLogLimit {
    fn enabled(&self, metadata: &Metadata<'_>, _context: &Context<'_, S>) -> bool {
        !Self::is_limited(metadata) || self.admit(metadata.callsite())
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::is_limited(metadata) {
            // Ask again for every event, so `enabled` can count it.
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;

    /// A writer that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Buffer, needle: &str) -> usize {
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().filter(|line| line.contains(needle)).count()
    }

    #[test]
    fn relay_debug_flood_is_cut() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_filter(RelayLogLimit::new(3));
        let subscriber = tracing_subscriber::registry().with(layer);

        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                tracing::debug!(target: "switchyard_turn::core::handlers", "rejected request");
                tracing::debug!(target: "switchyard_signal::session", "signaling detail");
                tracing::info!(target: "switchyard_turn::server", "relay lifecycle");
            }
        });

        // Each one-second window lets 3 through. The loop spans one or two windows unless the
        // machine stalls for many seconds.
        let rejected = lines(&buffer, "rejected request");
        assert!(rejected >= 3, "{rejected} relay debug lines passed");
        assert!(rejected < 50, "{rejected} relay debug lines passed");
        assert_eq!(lines(&buffer, "signaling detail"), 50);
        assert_eq!(lines(&buffer, "relay lifecycle"), 50);
    }
}
