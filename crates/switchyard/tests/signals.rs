//! The `switchyard` binary shuts down cleanly on SIGTERM and SIGINT: connected clients get
//! `server_shutdown` and close code 1001, and the process exits with status 0.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, WAIT};
use switchyard_proto::ErrorCode;

/// Starts the binary on 127.0.0.1 with kernel-chosen ports, for the bundled TURN relay too, and
/// returns it with its HTTP address, read from the "listening" log line. `label` keeps the
/// relay config files of tests that run at the same time apart.
fn start_binary(label: &str) -> (Child, SocketAddr) {
    let turn_config = std::env::temp_dir().join(format!(
        "switchyard-signals-{}-{label}.toml",
        std::process::id()
    ));
    std::fs::write(
        &turn_config,
        "listen-udp = [\"127.0.0.1:0\"]\nlisten-tcp = [\"127.0.0.1:0\"]\n",
    )
    .expect("write the TURN config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
        .arg("--turn-config")
        .arg(&turn_config)
        .env("RUST_LOG", "info")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_TURN_CONFIG")
        .env_remove("SWITCHYARD_NO_TURN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the switchyard binary");

    // The thread keeps reading so the pipe never fills. It ends when the process exits.
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });

    let deadline = Instant::now() + WAIT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = receiver.recv_timeout(remaining) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server logged no \"listening\" line within {WAIT:?}");
        };
        if let Some(addr) = http_addr(&line) {
            // The server has read the file before it logs "listening".
            let _ = std::fs::remove_file(&turn_config);
            return (child, addr);
        }
    }
}

fn http_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("http_addr="))?;
    value.parse().ok()
}

/// Waits for the process to exit and returns its status code. Kills it on timeout.
fn wait_for_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("query the child's status") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not exit within {WAIT:?} of the signal");
}

async fn assert_signal_stops_server(signal: &str) {
    let (mut child, addr) = start_binary(signal);
    let mut client = Client::connect(addr, None).await;
    client.join("demo", "Ada").await;

    let sent = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -s {signal} failed");

    client.expect_error(ErrorCode::ServerShutdown).await;
    assert_eq!(client.expect_close().await, 1001);
    let code = tokio::task::spawn_blocking(move || wait_for_exit(&mut child))
        .await
        .expect("wait for the child");
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sigterm_closes_sessions_and_exits_zero() {
    assert_signal_stops_server("TERM").await;
}

#[tokio::test]
async fn sigint_closes_sessions_and_exits_zero() {
    assert_signal_stops_server("INT").await;
}
