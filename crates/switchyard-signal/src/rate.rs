//! Token bucket for the messages-per-second limit of one connection. Sans-IO: callers pass
//! `now`.

use std::time::Instant;

/// Outcome of one message under the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Within the limit: handle the message.
    Allow,
    /// Over the limit: drop the message and reply `rate_limited`.
    Drop,
    /// Over the limit for a whole bucket's worth of messages in a row: close the connection.
    Close,
}

/// Token bucket that refills at `rate` tokens per second up to `rate * 2`, so a client may
/// send a burst of two seconds' worth of messages, such as a batch of ICE candidates.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    /// Messages dropped since the last one allowed.
    dropped_in_row: u32,
}

impl RateLimiter {
    /// Creates a full bucket. A `rate` of 0 counts as 1.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimiter {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: now,
            dropped_in_row: 0,
        }
    }

    /// Takes a token for one message received at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.dropped_in_row = 0;
            return Admission::Allow;
        }
        self.dropped_in_row += 1;
        if f64::from(self.dropped_in_row) > self.capacity {
            Admission::Close
        } else {
            Admission::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_drop_then_close() {
        let now = Instant::now();
        let mut limiter = RateLimiter::new(5, now);
        for _ in 0..10 {
            assert_eq!(limiter.admit(now), Admission::Allow);
        }
        for _ in 0..10 {
            assert_eq!(limiter.admit(now), Admission::Drop);
        }
        assert_eq!(limiter.admit(now), Admission::Close);
    }

    #[test]
    fn tokens_refill_over_time() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(5, start);
        for _ in 0..10 {
            limiter.admit(start);
        }
        assert_eq!(limiter.admit(start), Admission::Drop);
        let later = start + Duration::from_millis(400);
        assert_eq!(limiter.admit(later), Admission::Allow);
        assert_eq!(limiter.admit(later), Admission::Allow);
        assert_eq!(limiter.admit(later), Admission::Drop);
    }
}
