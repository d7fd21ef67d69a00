//! Arrival records of the subscribers, and the loss, reordering and latency they add up to over
//! the measurement window.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::probe::{Kind, Probe};

/// Arrivals kept per subscriber and track. Past it, arrivals are counted in
/// [`Recorder::overflowed`] and left out of the results. At 120 packets per second that is over
/// two hours.
const MAX_ARRIVALS_PER_TRACK: usize = 1_000_000;

/// One received probe: its sequence number and the time from its send to its arrival,
/// saturated at `u32::MAX` nanoseconds (4.3 s).
#[derive(Clone, Copy, Debug)]
struct Arrival {
    sequence: u32,
    latency_ns: u32,
}

/// Every probe one subscriber received, by publisher and kind, in arrival order.
#[derive(Debug, Default)]
pub struct Recorder {
    tracks: Mutex<HashMap<(u32, Kind), Vec<Arrival>>>,
    overflowed: std::sync::atomic::AtomicU64,
}

impl Recorder {
    /// Records a probe that arrived at `arrived_at_ns` (nanoseconds since [`crate::probe::epoch`]).
    pub fn record(&self, probe: Probe, arrived_at_ns: u64) {
        let latency_ns = arrived_at_ns
            .saturating_sub(probe.sent_at_ns)
            .min(u64::from(u32::MAX)) as u32;
        let arrival = Arrival {
            sequence: probe.sequence,
            latency_ns,
        };
        let mut tracks = self
            .tracks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let arrivals = tracks.entry((probe.publisher, probe.kind)).or_default();
        if arrivals.len() < MAX_ARRIVALS_PER_TRACK {
            arrivals.push(arrival);
        } else {
            self.overflowed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Returns how many of `expected` tracks have delivered at least one probe.
    pub fn tracks_seen(&self, expected: &[(u32, Kind)]) -> usize {
        let tracks = self
            .tracks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        expected
            .iter()
            .filter(|key| tracks.contains_key(key))
            .count()
    }
}

/// Sequence numbers that one publisher track assigned during the measurement window:
/// `first..end`.
#[derive(Clone, Copy, Debug)]
pub struct TrackWindow {
    pub publisher: u32,
    pub kind: Kind,
    pub first: u32,
    pub end: u32,
}

/// Delivery counts over the window, summed over subscribers and tracks.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Probes sent in the window times the subscribers that should receive them.
    pub expected: u64,
    /// Distinct probes of the window that arrived.
    pub received: u64,
    pub duplicates: u64,
    /// Probes that arrived after a probe of the same track with a higher sequence number.
    pub reordered: u64,
    /// Arrivals left out because a track reached the per-track record limit.
    pub overflowed: u64,
    latencies_ns: Vec<u32>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Delivery {
    /// Adds the arrivals of `recorder` for the tracks in `windows`.
    pub fn add(&mut self, recorder: &Recorder, windows: &[TrackWindow]) {
        let tracks = recorder
            .tracks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for window in windows {
            let span = window.end.saturating_sub(window.first);
            self.expected += u64::from(span);
            let Some(arrivals) = tracks.get(&(window.publisher, window.kind)) else {
                continue;
            };
            self.add_track(arrivals, window.first, span);
        }
        self.overflowed += recorder
            .overflowed
            .load(std::sync::atomic::Ordering::Relaxed);
    }

    fn add_track(&mut self, arrivals: &[Arrival], first: u32, span: u32) {
        let mut seen = vec![false; span as usize];
        let mut highest: Option<u32> = None;
        for arrival in arrivals {
            let Some(offset) = arrival.sequence.checked_sub(first).filter(|o| *o < span) else {
                continue;
            };
            let slot = &mut seen[offset as usize];
            if *slot {
                self.duplicates += 1;
                continue;
            }
            *slot = true;
            self.received += 1;
            if highest.is_some_and(|highest| arrival.sequence < highest) {
                self.reordered += 1;
            }
            highest = highest.max(Some(arrival.sequence));
            self.latencies_ns.push(arrival.latency_ns);
        }
    }

    /// Returns the share of expected probes that never arrived, from 0 to 1.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.expected as f64
    }

    /// Returns the latency percentiles of the distinct arrivals (nearest-rank).
    pub fn latency(&mut self) -> Latency {
        if self.latencies_ns.is_empty() {
            return Latency::default();
        }
        self.latencies_ns.sort_unstable();
        let at = |quantile: f64| {
            let rank = (quantile * self.latencies_ns.len() as f64).ceil() as usize;
            let index = rank.clamp(1, self.latencies_ns.len()) - 1;
            f64::from(self.latencies_ns[index]) / 1000.0
        };
        Latency {
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sequence: u32, sent_at_ns: u64) -> Probe {
        Probe {
            publisher: 0,
            kind: Kind::Audio,
            sequence,
            sent_at_ns,
        }
    }

    fn window(first: u32, end: u32) -> TrackWindow {
        TrackWindow {
            publisher: 0,
            kind: Kind::Audio,
            first,
            end,
        }
    }

    #[test]
    fn loss_counts_only_the_window() {
        let recorder = Recorder::default();
        for sequence in [1, 2, 3, 5, 9] {
            recorder.record(probe(sequence, 0), 1_000);
        }
        let mut delivery = Delivery::default();
        delivery.add(&recorder, &[window(2, 6)]);
        assert_eq!(delivery.expected, 4);
        assert_eq!(delivery.received, 3);
        assert!((delivery.loss() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn late_and_repeated_probes_are_counted() {
        let recorder = Recorder::default();
        for sequence in [0, 2, 1, 2, 3] {
            recorder.record(probe(sequence, 0), 1_000);
        }
        let mut delivery = Delivery::default();
        delivery.add(&recorder, &[window(0, 4)]);
        assert_eq!(delivery.received, 4);
        assert_eq!(delivery.reordered, 1);
        assert_eq!(delivery.duplicates, 1);
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let recorder = Recorder::default();
        for sequence in 0..100u32 {
            let latency_ns = u64::from(sequence + 1) * 1_000;
            recorder.record(probe(sequence, 10_000_000), 10_000_000 + latency_ns);
        }
        let mut delivery = Delivery::default();
        delivery.add(&recorder, &[window(0, 100)]);
        let latency = delivery.latency();
        assert_eq!(latency.p50_us, 50.0);
        assert_eq!(latency.p99_us, 99.0);
        assert_eq!(latency.max_us, 100.0);
    }

    #[test]
    fn missing_track_counts_as_lost() {
        let recorder = Recorder::default();
        let mut delivery = Delivery::default();
        delivery.add(&recorder, &[window(0, 10)]);
        assert_eq!(delivery.expected, 10);
        assert_eq!(delivery.loss(), 1.0);
    }
}
