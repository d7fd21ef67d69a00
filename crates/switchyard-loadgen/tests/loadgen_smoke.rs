//! Runs the `switchyard-loadgen` binary for a few seconds against a real server in this process:
//! one publisher, two subscribers. Checks that packets arrive, that loss stays bounded and that
//! the JSON summary is complete. Speed is never checked: the machine may be busy.
//!
//! ICE may only see loopback, so a run that finds other network interfaces re-runs this test
//! inside a new network namespace (`unshare -n`, or `unshare -rn` without root).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchyard::{CancellationToken, ServerConfig};

/// Set in the child run's environment, so a child that still sees other interfaces fails.
const CHILD_MARKER: &str = "SWITCHYARD_LOADGEN_LOOPBACK_CHILD";
/// Upper bound on the load generator's run: connecting, 1 s warm-up, 3 s window, closing.
const LOADGEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Loss above this fails the test. On an idle loopback no packet is lost; the margin covers a
/// heavily loaded machine.
const MAX_LOSS_PERCENT: f64 = 20.0;

#[test]
fn fan_out_to_two_subscribers() {
    if !only_loopback() {
        rerun_in_loopback_namespace("fan_out_to_two_subscribers");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("failed to build the tokio runtime");
    let summary = runtime.block_on(scenario());

    assert_eq!(summary["server"], "switchyard", "{summary}");
    assert_eq!(summary["subscribers"], 2, "{summary}");
    assert_eq!(summary["subscribers_ready"], 2, "{summary}");
    let forwarded = summary["forwarded_packets"].as_u64().unwrap_or(0);
    assert!(forwarded > 0, "no packet reached a subscriber: {summary}");
    let loss = summary["loss_percent"].as_f64().unwrap_or(100.0);
    assert!(
        loss <= MAX_LOSS_PERCENT,
        "loss {loss} % is over {MAX_LOSS_PERCENT} %: {summary}"
    );
    assert!(summary["server_cpu_s"].is_number(), "{summary}");
    assert!(
        summary["latency"]["p99_us"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary}"
    );
    // The SFU's own delay histogram was read at both edges of the window.
    let delay = &summary["sfu_delay"];
    assert!(delay["packets"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(delay["p99_us_at_most"].is_number(), "{summary}");
}

/// Starts the server, runs the load generator against it and returns its JSON summary.
async fn scenario() -> Value {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = ServerConfig {
        http: loopback,
        media: loopback,
        turn: None,
        ..ServerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let server = switchyard::run(config, shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("the server failed to start on 127.0.0.1: {error:?}"));

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard-loadgen"));
    command
        .args(["--target", &server.http_addr().to_string()])
        .args(["--subscribers", "2", "--warmup", "1", "--duration", "3"])
        .args(["--connect-timeout", "30", "--json"])
        // The server runs in this process, so this process's CPU time stands for it.
        .args(["--server-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(LOADGEN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("switchyard-loadgen did not finish within {LOADGEN_TIMEOUT:?}"))
        .expect("failed to start switchyard-loadgen");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
    summary(&output)
}

fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "switchyard-loadgen failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in the output:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|error| panic!("invalid JSON {line}: {error}"))
}

/// Returns true when `lo` is the only interface. Reads `/proc/self/net/dev`, which shows this
/// process's namespace, unlike `/sys/class/net`.
fn only_loopback() -> bool {
    let table = std::fs::read_to_string("/proc/self/net/dev")
        .expect("failed to read /proc/self/net/dev; this test needs Linux with procfs");
    // Two header lines, then one `name: counters...` line per interface.
    table
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .all(|(name, _)| name.trim() == "lo")
}

fn rerun_in_loopback_namespace(test_name: &str) {
    assert!(
        std::env::var_os(CHILD_MARKER).is_none(),
        "the new network namespace still has interfaces other than `lo`"
    );
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0");
    let test_binary = std::env::current_exe().expect("failed to find the test binary's path");
    // The child's own timeouts bound its run.
    let output = Command::new("unshare")
        .arg(if is_root { "-n" } else { "-rn" })
        .args(["sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(test_binary)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::null())
        .output()
        .expect("failed to start `unshare`; install util-linux and iproute2");
    assert!(
        output.status.success(),
        "{test_name} failed in the loopback-only namespace ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
