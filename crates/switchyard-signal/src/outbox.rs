//! Per-session outbox: numbers every server message of a session and keeps the ones the client
//! has not acknowledged, so that they can be sent again in order after a reconnect.
//!
//! The outbox does no I/O and never reads the clock: every call that depends on time takes
//! `now`. Messages leave it when the client acknowledges them, when more than
//! [`OutboxConfig::max_messages`] are waiting, or when they are older than
//! [`OutboxConfig::max_age`]. A message dropped before it was acknowledged makes a resume from
//! an earlier sequence number impossible, and [`Outbox::replay`] reports that as a gap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;

/// Limits of one session's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutboxConfig {
    /// Number of unacknowledged messages kept. Values below 1 count as 1.
    pub max_messages: usize,
    /// Time an unacknowledged message is kept.
    pub max_age: Duration,
}

/// One numbered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Numbered {
    /// Sequence number, from 1.
    pub seq: u64,
    /// JSON object of the message without `seq`, often shared with the other recipients of a
    /// broadcast.
    pub body: Utf8Bytes,
}

#[derive(Debug)]
struct Entry {
    message: Numbered,
    sent_at: Instant,
}

/// Reason an acknowledgement or a resume request cannot be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutboxError {
    /// The client names a sequence number the server has not sent yet.
    #[error("sequence number {seq} is ahead of the last message sent, {last_seq}")]
    Ahead {
        /// The client's sequence number.
        seq: u64,
        /// The last sequence number the server sent.
        last_seq: u64,
    },
    /// Messages after the client's sequence number were dropped before they were acknowledged.
    #[error("messages {} to {dropped} after sequence number {seq} are no longer kept", seq + 1)]
    Gap {
        /// The client's sequence number.
        seq: u64,
        /// Highest sequence number that was dropped unacknowledged.
        dropped: u64,
    },
}

/// Sequence numbering and retransmission buffer of one session.
#[derive(Debug)]
pub(crate) struct Outbox {
    config: OutboxConfig,
    entries: VecDeque<Entry>,
    next_seq: u64,
    acked: u64,
    /// Highest sequence number dropped before the client acknowledged it, 0 if none.
    dropped: u64,
}

impl Outbox {
    pub(crate) fn new(config: OutboxConfig) -> Self {
        Outbox {
            config,
            entries: VecDeque::new(),
            next_seq: 1,
            acked: 0,
            dropped: 0,
        }
    }

    /// Returns the sequence number the next message gets.
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Returns the sequence number of the last message pushed, 0 before the first.
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Stores a message under the next sequence number and returns that number, after
    /// dropping what is over the limits.
    pub(crate) fn push(&mut self, now: Instant, body: Utf8Bytes) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry {
            message: Numbered { seq, body },
            sent_at: now,
        });
        self.trim(now);
        seq
    }

    /// Applies a cumulative acknowledgement of every message up to `seq`. Returns when message
    /// `seq` was pushed, if this acknowledges it for the first time and it was still kept.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<Option<Instant>, OutboxError> {
        let last_seq = self.last_seq();
        if seq > last_seq {
            return Err(OutboxError::Ahead { seq, last_seq });
        }
        if seq <= self.acked {
            return Ok(None);
        }
        self.acked = seq;
        let mut sent_at = None;
        while self.entries.front().is_some_and(|e| e.message.seq <= seq) {
            let entry = self.entries.pop_front();
            sent_at = entry.filter(|e| e.message.seq == seq).map(|e| e.sent_at);
        }
        Ok(sent_at)
    }

    /// Returns the messages after `last_seq`, in order, for a client that received everything
    /// up to `last_seq`, and counts `last_seq` as acknowledged.
    pub(crate) fn replay(&mut self, last_seq: u64) -> Result<Vec<Numbered>, OutboxError> {
        self.ack(last_seq)?;
        if self.dropped > last_seq {
            return Err(OutboxError::Gap {
                seq: last_seq,
                dropped: self.dropped,
            });
        }
        Ok(self.entries.iter().map(|e| e.message.clone()).collect())
    }

    /// Drops messages over the count limit and messages older than the age limit.
    pub(crate) fn trim(&mut self, now: Instant) {
        let max_messages = self.config.max_messages.max(1);
        while self.entries.len() > max_messages {
            self.drop_oldest();
        }
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.sent_at) >= self.config.max_age)
        {
            self.drop_oldest();
        }
    }

    /// Returns when the oldest message reaches the age limit, if any message is kept.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .front()
            .map(|e| e.sent_at + self.config.max_age)
    }

    /// Returns the number of messages kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn drop_oldest(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.dropped = self.dropped.max(entry.message.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn outbox(max_messages: usize) -> Outbox {
        Outbox::new(OutboxConfig {
            max_messages,
            max_age: 2 * MINUTE,
        })
    }

    fn push_n(outbox: &mut Outbox, now: Instant, count: usize) {
        for n in 0..count {
            outbox.push(now, Utf8Bytes::from(n.to_string()));
        }
    }

    fn seqs(messages: &[Numbered]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn numbers_start_at_one_and_increase() {
        let now = Instant::now();
        let mut outbox = outbox(10);
        assert_eq!(outbox.last_seq(), 0);
        assert_eq!(outbox.push(now, "a".into()), 1);
        assert_eq!(outbox.push(now, "b".into()), 2);
        assert_eq!(outbox.next_seq(), 3);
    }

    #[test]
    fn ack_removes_messages_up_to_seq() {
        let now = Instant::now();
        let mut outbox = outbox(10);
        push_n(&mut outbox, now, 5);
        outbox.ack(3).unwrap();
        assert_eq!(outbox.len(), 2);
        // An older acknowledgement changes nothing.
        outbox.ack(1).unwrap();
        assert_eq!(outbox.len(), 2);
        assert_eq!(seqs(&outbox.replay(3).unwrap()), [4, 5]);
    }

    #[test]
    fn ack_ahead_of_last_seq_is_rejected() {
        let now = Instant::now();
        let mut outbox = outbox(10);
        push_n(&mut outbox, now, 2);
        assert_eq!(
            outbox.ack(3),
            Err(OutboxError::Ahead {
                seq: 3,
                last_seq: 2
            })
        );
    }

    #[test]
    fn replay_returns_unacknowledged_in_order() {
        let now = Instant::now();
        let mut outbox = outbox(10);
        push_n(&mut outbox, now, 6);
        assert_eq!(seqs(&outbox.replay(2).unwrap()), [3, 4, 5, 6]);
        // The replay counted 2 as acknowledged; a second replay from 4 leaves 5 and 6.
        assert_eq!(seqs(&outbox.replay(4).unwrap()), [5, 6]);
        assert!(outbox.replay(6).unwrap().is_empty());
    }

    #[test]
    fn count_limit_drops_oldest_and_makes_a_gap() {
        let now = Instant::now();
        let mut outbox = outbox(3);
        push_n(&mut outbox, now, 5);
        assert_eq!(outbox.len(), 3);
        assert_eq!(
            outbox.replay(1),
            Err(OutboxError::Gap { seq: 1, dropped: 2 })
        );
        assert_eq!(seqs(&outbox.replay(2).unwrap()), [3, 4, 5]);
    }

    #[test]
    fn acknowledged_messages_leave_no_gap() {
        let now = Instant::now();
        let mut outbox = outbox(3);
        for _ in 0..10 {
            push_n(&mut outbox, now, 2);
            let last = outbox.last_seq();
            outbox.ack(last).unwrap();
        }
        assert_eq!(outbox.len(), 0);
        assert!(outbox.replay(20).unwrap().is_empty());
    }

    #[test]
    fn age_limit_drops_old_messages() {
        let start = Instant::now();
        let mut outbox = outbox(100);
        push_n(&mut outbox, start, 2);
        push_n(&mut outbox, start + MINUTE, 1);
        assert_eq!(outbox.poll_timeout(), Some(start + 2 * MINUTE));

        outbox.trim(start + 2 * MINUTE);
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.poll_timeout(), Some(start + 3 * MINUTE));
        assert!(matches!(outbox.replay(0), Err(OutboxError::Gap { .. })));
        assert_eq!(seqs(&outbox.replay(2).unwrap()), [3]);

        outbox.trim(start + 3 * MINUTE);
        assert_eq!(outbox.poll_timeout(), None);
    }

    #[test]
    fn replay_ahead_of_last_seq_is_rejected() {
        let mut outbox = outbox(10);
        assert!(matches!(outbox.replay(1), Err(OutboxError::Ahead { .. })));
    }
}
