//! The relay's `GET /metrics` endpoint, in the Prometheus text exposition format, served on the
//! relay config's `metrics-listen` address.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use switchyard_turn::{CounterSnapshot, TrafficByTransport, TurnCounters};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Content type of the Prometheus text format, version 0.0.4.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    /// Address the listener is bound to.
    pub addr: SocketAddr,
    /// The serving task. It ends when the shutdown token given to [`start`] is cancelled.
    pub task: JoinHandle<()>,
}

/// Binds `addr` and serves the relay's counters at `GET /metrics` until `shutdown` is
/// cancelled.
pub async fn start(
    addr: SocketAddr,
    counters: Arc<TurnCounters>,
    shutdown: CancellationToken,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&counters.snapshot());
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text).into_response() }
        }),
    );
    info!(%addr, "TURN metrics listening");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            error!(
                error = &err as &dyn std::error::Error,
                "TURN metrics endpoint failed"
            );
        }
    });
    Ok(MetricsServer { addr, task })
}

/// Writes the counters in the Prometheus text format, one `# HELP` and `# TYPE` line per metric.
pub fn render(snapshot: &CounterSnapshot) -> String {
    let mut text = String::new();
    let gauges = [
        (
            "allocations",
            "Allocations that exist now.",
            snapshot.allocations,
        ),
        (
            "permissions",
            "Permissions that exist now.",
            snapshot.permissions,
        ),
        (
            "channels",
            "Channel bindings that exist now.",
            snapshot.channels,
        ),
    ];
    for (name, help, value) in gauges {
        write_metric(&mut text, name, "gauge", help, &[("", value)]);
    }

    let counters = [
        (
            "allocations_total",
            "Allocations created since start.",
            snapshot.allocations_total,
        ),
        (
            "auth_failures_total",
            "Requests rejected with 401.",
            snapshot.auth_failures_total,
        ),
        (
            "denied_peers_total",
            "Requests denied by the peer address policy.",
            snapshot.denied_peers_total,
        ),
        (
            "quota_rejections_total",
            "Allocate requests rejected with 486.",
            snapshot.quota_rejections_total,
        ),
    ];
    for (name, help, value) in counters {
        write_metric(&mut text, name, "counter", help, &[("", value)]);
    }

    let packets = traffic_samples(snapshot, |traffic| traffic.packets);
    let bytes = traffic_samples(snapshot, |traffic| traffic.bytes);
    write_metric(
        &mut text,
        "relayed_packets_total",
        "counter",
        "Packets relayed, by direction and client transport.",
        &packets,
    );
    write_metric(
        &mut text,
        "relayed_bytes_total",
        "counter",
        "Payload bytes relayed, by direction and client transport.",
        &bytes,
    );
    text
}

/// Returns one sample per direction and client transport, labelled for Prometheus.
fn traffic_samples(
    snapshot: &CounterSnapshot,
    value: impl Fn(&switchyard_turn::Traffic) -> u64,
) -> Vec<(String, u64)> {
    let directions: [(&str, &TrafficByTransport); 2] = [
        ("to_peer", &snapshot.relayed_to_peer),
        ("to_client", &snapshot.relayed_to_client),
    ];
    let mut samples = Vec::new();
    for (direction, by_transport) in directions {
        for (transport, traffic) in [
            ("udp", &by_transport.udp),
            ("tcp", &by_transport.tcp),
            ("tls", &by_transport.tls),
        ] {
            let labels = format!("{{direction=\"{direction}\",transport=\"{transport}\"}}");
            samples.push((labels, value(traffic)));
        }
    }
    samples
}

fn write_metric<L: AsRef<str>>(
    text: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(L, u64)],
) {
    // Writing to a `String` cannot fail.
    let _ = writeln!(text, "# HELP switchyard_turn_{name} {help}");
    let _ = writeln!(text, "# TYPE switchyard_turn_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(text, "switchyard_turn_{name}{} {value}", labels.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_turn::Traffic;

    #[test]
    fn render_lists_every_counter() {
        let snapshot = CounterSnapshot {
            allocations: 2,
            allocations_total: 5,
            relayed_to_peer: TrafficByTransport {
                tcp: Traffic {
                    packets: 7,
                    bytes: 700,
                },
                ..TrafficByTransport::default()
            },
            auth_failures_total: 3,
            ..CounterSnapshot::default()
        };
        let text = render(&snapshot);

        for line in [
            "# TYPE switchyard_turn_allocations gauge",
            "switchyard_turn_allocations 2",
            "# TYPE switchyard_turn_allocations_total counter",
            "switchyard_turn_allocations_total 5",
            "switchyard_turn_auth_failures_total 3",
            "switchyard_turn_permissions 0",
            "switchyard_turn_relayed_packets_total{direction=\"to_peer\",transport=\"tcp\"} 7",
            "switchyard_turn_relayed_bytes_total{direction=\"to_peer\",transport=\"tcp\"} 700",
            "switchyard_turn_relayed_bytes_total{direction=\"to_client\",transport=\"tls\"} 0",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let text = render(&CounterSnapshot::default());
        for sample in text.lines().filter(|line| !line.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
