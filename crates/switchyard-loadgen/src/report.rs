//! Results of a run: one human-readable block and one JSON line.

use std::time::Duration;

use serde::Serialize;

use crate::scenario::{Config, Snapshot};
use crate::sfu_delay::SfuDelay;
use crate::stats::{Delivery, Latency};

/// Results of one scenario run. Rates are per second of the measurement window; "forwarded"
/// packets are the distinct probes of the window that reached a subscriber.
#[derive(Debug, Serialize)]
pub struct Report {
    pub server: &'static str,
    pub scenario: String,
    pub publishers: u32,
    /// Participants that receive.
    pub subscribers: usize,
    /// Subscribers that received every expected track before the window.
    pub subscribers_ready: usize,
    pub video_kbps: u32,
    pub connect_s: f64,
    pub window_s: f64,
    pub expected_packets: u64,
    pub forwarded_packets: u64,
    pub loss_percent: f64,
    pub reordered_packets: u64,
    pub duplicate_packets: u64,
    pub failed_writes: u64,
    /// Probes sent in the window times their receivers, per second: the offered load. It falls
    /// short of the configured rates when the publishers' tasks fall behind.
    pub offered_per_s: f64,
    pub forwarded_per_s: f64,
    /// Server CPU seconds in the window, all threads, or `None` without `--server-pid`.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_packet: Option<f64>,
    pub forwarded_per_server_cpu_s: Option<f64>,
    /// The load generator's own CPU seconds in the window.
    pub loadgen_cpu_s: f64,
    /// One-way latency from the publisher's `write_rtp` to the subscriber's read of the packet,
    /// both webrtc-rs stacks included.
    pub latency: Latency,
    /// Time RTP packets spent inside the SFU in the window, from the SFU's own histogram;
    /// Switchyard only.
    pub sfu_delay: Option<SfuDelay>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        subscribers: usize,
        subscribers_ready: usize,
        connect_time: Duration,
        start: &Snapshot,
        end: &Snapshot,
        mut delivery: Delivery,
        failed_writes: u64,
        sfu_delay: Option<SfuDelay>,
    ) -> Report {
        let window_s = end.at.duration_since(start.at).as_secs_f64();
        let forwarded = delivery.received;
        let server_cpu_s = match (start.server_cpu, end.server_cpu) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start).as_secs_f64()),
            _ => None,
        };
        let per_packet = |cpu_s: f64| (forwarded > 0).then(|| cpu_s * 1e6 / forwarded as f64);
        let per_cpu_s = |cpu_s: f64| (cpu_s > 0.0).then(|| forwarded as f64 / cpu_s);
        Report {
            server: config.server.name(),
            scenario: config.shape.label(),
            publishers: match config.shape {
                crate::scenario::Shape::FanOut { .. } => 1,
                crate::scenario::Shape::Meeting { participants } => participants,
            },
            subscribers,
            subscribers_ready,
            video_kbps: config.video.kbps,
            connect_s: connect_time.as_secs_f64(),
            window_s,
            expected_packets: delivery.expected,
            forwarded_packets: forwarded,
            loss_percent: delivery.loss() * 100.0,
            reordered_packets: delivery.reordered,
            duplicate_packets: delivery.duplicates,
            failed_writes,
            offered_per_s: delivery.expected as f64 / window_s,
            forwarded_per_s: forwarded as f64 / window_s,
            server_cpu_s,
            server_cpu_us_per_packet: server_cpu_s.and_then(per_packet),
            forwarded_per_server_cpu_s: server_cpu_s.and_then(per_cpu_s),
            loadgen_cpu_s: end.own_cpu.saturating_sub(start.own_cpu).as_secs_f64(),
            latency: delivery.latency(),
            sfu_delay,
        }
    }

    /// Returns the human-readable summary.
    pub fn text(&self) -> String {
        let optional = |value: Option<f64>, digits: usize| match value {
            Some(value) => format!("{value:.digits$}"),
            None => "n/a (no --server-pid)".to_owned(),
        };
        let bound = |value: Option<f64>| match value {
            Some(value) => format!("{value:.0}"),
            None => "(above the largest bucket)".to_owned(),
        };
        let mut lines = vec![
            format!(
                "{} {}: {} publisher(s), {} subscriber(s) ({} ready), video {} kbit/s",
                self.server,
                self.scenario,
                self.publishers,
                self.subscribers,
                self.subscribers_ready,
                self.video_kbps
            ),
            format!("  connect            {:.1} s", self.connect_s),
            format!("  window             {:.1} s", self.window_s),
            format!(
                "  forwarded          {} of {} packets, {:.0} of {:.0} packets/s",
                self.forwarded_packets,
                self.expected_packets,
                self.forwarded_per_s,
                self.offered_per_s
            ),
            format!(
                "  loss               {:.3} %  (reordered {}, duplicates {}, failed writes {})",
                self.loss_percent,
                self.reordered_packets,
                self.duplicate_packets,
                self.failed_writes
            ),
            format!(
                "  latency            p50 {:.0} us, p99 {:.0} us, max {:.0} us",
                self.latency.p50_us, self.latency.p99_us, self.latency.max_us
            ),
            match &self.sfu_delay {
                Some(delay) => format!(
                    "  time in the SFU    p50 at most {} us, p99 at most {} us ({} packets)",
                    bound(delay.p50_us_at_most),
                    bound(delay.p99_us_at_most),
                    delay.packets
                ),
                None => "  time in the SFU    n/a (Switchyard only)".to_owned(),
            },
            format!("  server CPU         {} s", optional(self.server_cpu_s, 2)),
            format!(
                "  server CPU/packet  {} us",
                optional(self.server_cpu_us_per_packet, 2)
            ),
            format!(
                "  packets/CPU s      {}",
                optional(self.forwarded_per_server_cpu_s, 0)
            ),
        ];
        lines.push(format!(
            "  loadgen CPU        {:.2} s ({:.0} % of one core)",
            self.loadgen_cpu_s,
            self.loadgen_cpu_s / self.window_s * 100.0
        ));
        lines.join("\n")
    }
}
