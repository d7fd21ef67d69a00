//! Small helpers for the reports: percentiles and waiting for traffic to stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Returns the value at `fraction` (0 to 1) of sorted `values`, or 0 when there are none.
pub fn percentile(values: &[u32], fraction: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    let rank = (fraction * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Waits until `counter` has not changed for `quiet`, or at most `limit`.
pub async fn wait_until_quiet(counter: &AtomicU64, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = counter.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(quiet).await;
        let now = counter.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
    eprintln!("traffic did not stop within {limit:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_hundred_values() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&values, 0.0), 1);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
