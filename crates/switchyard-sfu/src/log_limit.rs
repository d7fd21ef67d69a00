//! Rate limit for log lines that peers can trigger at will, such as rejected datagrams or
//! invalid messages, so a misbehaving or hostile client cannot flood the log.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Admits at most `per_second` log lines in each one-second window, and counts the rest.
///
/// Meant for a `static` next to the log statement:
///
/// ```
/// # use std::time::Instant;
/// use switchyard_sfu::log_limit::LogLimiter;
/// static REJECTED: LogLimiter = LogLimiter::new(10);
/// if let Some(suppressed) = REJECTED.admit(Instant::now()) {
///     tracing::debug!(suppressed, "rejected a datagram");
/// }
/// ```
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    epoch: OnceLock<Instant>,
    /// Whole seconds since `epoch` of the current window.
    window: AtomicU64,
    admitted: AtomicU32,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// Creates a limiter that admits `per_second` lines a second.
    pub const fn new(per_second: u32) -> Self {
        LogLimiter {
            per_second,
            epoch: OnceLock::new(),
            window: AtomicU64::new(0),
            admitted: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Returns `Some` with the number of lines suppressed since the last admitted one when a
    /// line may be logged at `now`, and `None`, counting it, when the window is full.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let epoch = *self.epoch.get_or_init(|| now);
        let second = now.saturating_duration_since(epoch).as_secs();
        let window = self.window.load(Ordering::Relaxed);
        // One caller wins the move to a new window and resets the count. A line counted
        // against the old window in between is harmless.
        if second > window
            && self
                .window
                .compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_is_cut_and_counted() {
        let limiter = LogLimiter::new(3);
        let start = Instant::now();
        let admitted: Vec<Option<u64>> = (0..10).map(|_| limiter.admit(start)).collect();
        assert_eq!(&admitted[..3], [Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));

        let next_second = start + Duration::from_secs(1);
        assert_eq!(limiter.admit(next_second), Some(7));
        assert_eq!(limiter.admit(next_second), Some(0));
    }
}
