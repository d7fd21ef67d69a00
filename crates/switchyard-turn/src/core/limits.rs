//! Token buckets for the bandwidth cap and the rate of 401 responses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket with room for `capacity` tokens that gains `rate` tokens per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: u64,
    rate: u64,
    tokens: u64,
    updated: Instant,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn new(capacity: u64, rate: u64, now: Instant) -> Self {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            updated: now,
        }
    }

    /// Takes `count` tokens if the bucket has them.
    pub fn take(&mut self, count: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= count {
            self.tokens -= count;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        let gained = u128::from(self.rate) * elapsed.as_nanos() / 1_000_000_000;
        if gained == 0 {
            return;
        }
        let gained = u64::try_from(gained).unwrap_or(u64::MAX);
        self.tokens = self.tokens.saturating_add(gained).min(self.capacity);
        // Advance by the time the gained tokens took, so fractions carry over.
        let used = Duration::from_nanos(gained.saturating_mul(1_000_000_000) / self.rate.max(1));
        self.updated = if self.tokens == self.capacity {
            now
        } else {
            self.updated + used
        };
    }

    /// True when the bucket would be full at `now`.
    pub fn is_full(&self, now: Instant) -> bool {
        let mut copy = self.clone();
        copy.refill(now);
        copy.tokens == copy.capacity
    }
}

/// Per-source-address rate limit with a bounded table.
#[derive(Debug)]
pub struct SourceLimiter {
    burst: u64,
    per_second: u64,
    max_sources: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl SourceLimiter {
    /// Allows `burst` events at once and `per_second` after that from each address, and tracks
    /// at most `max_sources` addresses.
    pub fn new(burst: u64, per_second: u64, max_sources: usize) -> Self {
        SourceLimiter {
            burst,
            per_second,
            max_sources,
            buckets: HashMap::new(),
        }
    }

    /// Records one event from `source` and returns whether it is within the limit. When the
    /// table is full, events from addresses not in it are over the limit.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&source) {
            return bucket.take(1, now);
        }
        if self.buckets.len() >= self.max_sources {
            return false;
        }
        let mut bucket = TokenBucket::new(self.burst, self.per_second, now);
        let allowed = bucket.take(1, now);
        self.buckets.insert(source, bucket);
        allowed
    }

    /// Forgets addresses whose buckets have refilled.
    pub fn prune(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 1000, start);
        assert!(bucket.take(1000, start));
        assert!(!bucket.take(1, start));
        let later = start + Duration::from_millis(500);
        assert!(bucket.take(500, later));
        assert!(!bucket.take(1, later));
        let much_later = later + Duration::from_secs(10);
        assert!(bucket.take(1000, much_later));
        assert!(!bucket.take(1, much_later));
    }

    #[test]
    fn fractions_of_a_token_carry_over() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 10, start);
        assert!(bucket.take(10, start));
        let mut now = start;
        let mut taken = 0;
        for _ in 0..100 {
            now += Duration::from_millis(30);
            while bucket.take(1, now) {
                taken += 1;
            }
        }
        assert_eq!(taken, 30);
    }

    #[test]
    fn limiter_counts_per_source_and_prunes() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(2, 1, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(limiter.allow(a, start));
        assert!(limiter.allow(a, start));
        assert!(!limiter.allow(a, start));
        assert!(limiter.allow(b, start));
        assert!(!limiter.allow(c, start), "table is full");
        limiter.prune(start + Duration::from_secs(5));
        assert!(limiter.allow(c, start + Duration::from_secs(5)));
    }
}
