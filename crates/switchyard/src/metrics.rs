//! `GET /metrics` of `switchyard serve`: signaling, SFU and bundled relay counters in the
//! Prometheus text exposition format, version 0.0.4.
//!
//! The text is written by hand from the counter snapshots, which costs no dependency and keeps
//! every name in one place. The relay's part comes from [`crate::turn_metrics::render`], so
//! its names are the same on a standalone relay node.

use std::fmt::Write;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use switchyard_sfu::metrics::{HistogramSnapshot, SfuCounters};
use switchyard_turn::TurnCounters;

use crate::turn_metrics;

/// Content type of the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The counters of one server, read at each scrape.
#[derive(Clone, Debug)]
pub struct MetricsSources {
    /// The SFU's counters.
    pub sfu: Arc<SfuCounters>,
    /// The bundled relay's counters, or `None` when it is disabled.
    pub turn: Option<Arc<TurnCounters>>,
}

impl MetricsSources {
    /// Returns the `GET /metrics` response.
    pub fn response(&self) -> Response {
        ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], self.render()).into_response()
    }

    /// Writes every metric in the text format.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.gauge(
            "switchyard_build_info",
            "Always 1, with the version of the running binary as a label.",
            &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
        );
        render_signaling(&mut out);
        render_sfu(&mut out, &self.sfu);
        let mut text = out.text;
        if let Some(turn) = &self.turn {
            text.push_str(&turn_metrics::render(&turn.snapshot()));
        }
        text
    }
}

fn render_signaling(out: &mut Exposition) {
    let signal = switchyard_signal::metrics::counters().snapshot();
    out.gauge(
        "switchyard_signaling_connections",
        "Open signaling connections, by transport.",
        &labelled("transport", &signal.connections),
    );
    out.counter(
        "switchyard_signaling_messages_received_total",
        "Client messages received, by type; frames that did not decode count as invalid.",
        &labelled("type", &signal.received),
    );
    out.counter(
        "switchyard_signaling_messages_sent_total",
        "Server messages sent, by type.",
        &labelled("type", &signal.sent),
    );
    out.counter(
        "switchyard_signaling_errors_total",
        "Error messages sent to clients, by error code.",
        &labelled("code", &signal.errors),
    );
    out.histogram(
        "switchyard_signaling_rtt_seconds",
        "Signaling round-trip time: WebSocket ping to pong, and numbered message to its ack.",
        &[("ping", &signal.ping_rtt), ("ack", &signal.ack_rtt)],
        "source",
    );
    out.gauge(
        "switchyard_participants",
        "Joined participants, with or without a connection.",
        &[(String::new(), signal.participants)],
    );
    out.counter(
        "switchyard_joins_total",
        "Successful joins.",
        &[(String::new(), signal.joins_total)],
    );
    out.counter(
        "switchyard_leaves_total",
        "Ended sessions, by reason.",
        &labelled("reason", &signal.leaves),
    );
    out.counter(
        "switchyard_resumes_total",
        "Resume requests, over WebSocket and SSE, by result.",
        &labelled("result", &signal.resumes),
    );
}

fn render_sfu(out: &mut Exposition, counters: &SfuCounters) {
    let sfu = counters.snapshot();
    out.gauge(
        "switchyard_rooms",
        "Rooms with at least one participant.",
        &[(String::new(), sfu.rooms)],
    );
    out.gauge(
        "switchyard_sfu_peer_connections",
        "Server-side peer connections, by state.",
        &labelled("state", &sfu.peer_connections),
    );
    out.gauge(
        "switchyard_sfu_tracks",
        "Published tracks, by kind.",
        &labelled("kind", &sfu.tracks),
    );
    let rtp = [
        (
            "switchyard_sfu_rtp_received_packets_total",
            "RTP packets with payload received from publishers.",
            sfu.received_packets,
        ),
        (
            "switchyard_sfu_rtp_received_bytes_total",
            "RTP payload bytes received from publishers.",
            sfu.received_bytes,
        ),
        (
            "switchyard_sfu_rtp_forwarded_packets_total",
            "RTP packets forwarded to subscribers, one per subscriber.",
            sfu.forwarded_packets,
        ),
        (
            "switchyard_sfu_rtp_forwarded_bytes_total",
            "RTP payload bytes forwarded to subscribers.",
            sfu.forwarded_bytes,
        ),
        (
            "switchyard_sfu_sent_messages_total",
            "Messages the media sockets handed to the kernel. With UDP GSO one message carries several datagrams.",
            sfu.sent_messages,
        ),
        (
            "switchyard_sfu_sent_datagrams_total",
            "Datagrams the media sockets sent: RTP, RTCP, STUN and DTLS.",
            sfu.sent_datagrams,
        ),
        (
            "switchyard_sfu_rtp_shard_copies_total",
            "RTP packets handed to another SFU task for the members of a room there.",
            sfu.shard_copies,
        ),
    ];
    for (name, help, value) in rtp {
        out.counter(name, help, &[(String::new(), value)]);
    }
    out.counter(
        "switchyard_sfu_rtp_dropped_packets_total",
        "RTP packets not forwarded to a subscriber, by reason.",
        &labelled("reason", &sfu.dropped_packets),
    );
    out.counter(
        "switchyard_sfu_rtcp_feedback_received_total",
        "RTCP feedback messages received from clients, by type.",
        &labelled("type", &sfu.feedback_received),
    );
    out.counter(
        "switchyard_sfu_rtcp_feedback_sent_total",
        "RTCP feedback messages sent to clients, by type.",
        &labelled("type", &sfu.feedback_sent),
    );
    out.histogram(
        "switchyard_sfu_rtt_seconds",
        "Round-trip time to subscribers, from RTCP receiver reports.",
        &[("", &sfu.rtt)],
        "",
    );
    out.histogram(
        "switchyard_sfu_rtp_delay_seconds",
        "Time an RTP packet spends in the SFU: from the kernel's receive timestamp until every \
         copy forwarded from it has been sent.",
        &[("", &sfu.delay)],
        "",
    );
}

/// Turns `(value, count)` pairs into samples with one label.
fn labelled(label: &str, values: &[(&'static str, u64)]) -> Vec<(String, u64)> {
    values
        .iter()
        .map(|(value, count)| (format!("{{{label}=\"{value}\"}}"), *count))
        .collect()
}

/// Text being written. Writing to a `String` cannot fail, so results are ignored.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn samples(&mut self, name: &str, samples: &[(String, u64)]) {
        for (labels, value) in samples {
            let _ = writeln!(self.text, "{name}{labels} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, samples: &[(String, u64)]) {
        self.header(name, "counter", help);
        self.samples(name, samples);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: &[(String, u64)]) {
        self.header(name, "gauge", help);
        self.samples(name, samples);
    }

    /// Writes one histogram family. Each series has the label `label` set to its name, or no
    /// label when `label` is empty.
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        series: &[(&str, &HistogramSnapshot)],
        label: &str,
    ) {
        self.header(name, "histogram", help);
        for (value, snapshot) in series {
            let prefix = if label.is_empty() {
                String::new()
            } else {
                format!("{label}=\"{value}\",")
            };
            for (bound, count) in &snapshot.buckets {
                let _ = writeln!(self.text, "{name}_bucket{{{prefix}le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                self.text,
                "{name}_bucket{{{prefix}le=\"+Inf\"}} {}",
                snapshot.count
            );
            let labels = if label.is_empty() {
                String::new()
            } else {
                format!("{{{label}=\"{value}\"}}")
            };
            let _ = writeln!(self.text, "{name}_sum{labels} {}", snapshot.sum_seconds);
            let _ = writeln!(self.text, "{name}_count{labels} {}", snapshot.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> MetricsSources {
        MetricsSources {
            sfu: Arc::default(),
            turn: Some(Arc::default()),
        }
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let text = sources().render();
        for sample in text.lines().filter(|line| !line.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|family| text.contains(&format!("# TYPE {family} histogram")))
                .unwrap_or(name);
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }

    #[test]
    fn names_are_prefixed_and_listed_once() {
        let text = sources().render();
        let mut families = Vec::new();
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(name.starts_with("switchyard_"), "{name}");
            assert!(!families.contains(&name), "{name} listed twice");
            families.push(name);
        }
        for expected in [
            "switchyard_signaling_connections",
            "switchyard_sfu_rtp_forwarded_packets_total",
            "switchyard_sfu_rtt_seconds",
            "switchyard_turn_allocations",
        ] {
            assert!(families.contains(&expected), "missing {expected}");
        }
    }

    #[test]
    fn histogram_ends_with_inf_bucket_sum_and_count() {
        let text = sources().render();
        assert!(text.contains("switchyard_sfu_rtt_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("switchyard_sfu_rtt_seconds_sum 0\n"));
        assert!(
            text.contains("switchyard_signaling_rtt_seconds_bucket{source=\"ping\",le=\"0.1\"}")
        );
        assert!(text.contains("switchyard_signaling_rtt_seconds_count{source=\"ack\"}"));
    }
}
