//! `switchyard turn --config FILE`: the relay alone. It reports bad config files clearly, logs
//! its settings without secrets, responds to STUN Binding requests and stops cleanly on SIGTERM and
//! SIGINT.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::WAIT;

const SECRET: &str = "turn-command-secret";
const PASSWORD: &str = "turn-command-password";

fn temp_config(label: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "switchyard-turn-command-{}-{label}.toml",
        std::process::id()
    ));
    std::fs::write(&path, contents).expect("write the TURN config");
    path
}

fn relay_command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .arg("turn")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Runs the relay with a config that it must reject, and returns its output.
fn run_rejected(label: &str, contents: &str) -> Output {
    let path = temp_config(label, contents);
    let output = relay_command(&path).output().expect("run switchyard turn");
    std::fs::remove_file(path).unwrap();
    assert!(!output.status.success(), "the relay accepted {contents:?}");
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A relay process and every line it has logged so far.
struct Relay {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Relay {
    fn start(label: &str) -> Relay {
        Relay::start_with(label, "")
    }

    /// Starts the relay with `extra_config` appended to a config with loopback listeners on
    /// ports chosen by the system, a secret and a static user.
    fn start_with(label: &str, extra_config: &str) -> Relay {
        Relay::start_with_args(label, extra_config, &[])
    }

    /// Starts the relay like [`Relay::start_with`], with `args` added to its command line.
    fn start_with_args(label: &str, extra_config: &str, args: &[&str]) -> Relay {
        let config = format!(
            r#"
            listen-udp = ["127.0.0.1:0"]
            listen-tcp = ["127.0.0.1:0"]
            static-auth-secrets = ["{SECRET}"]
            users = [{{ name = "test", password = "{PASSWORD}" }}]
            {extra_config}
            "#
        );
        let path = temp_config(label, &config);
        let mut child = relay_command(&path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard turn");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        // The thread keeps reading so the pipe never fills. It ends when the process exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut relay = Relay {
            child,
            lines,
            log: Vec::new(),
        };
        relay.wait_for_line("TURN relay listening");
        std::fs::remove_file(path).unwrap();
        relay
    }

    /// Waits for a log line that contains `text` and returns it.
    fn wait_for_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(remaining) else {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "no log line with {text:?} within {WAIT:?}; log:\n{}",
                    self.log.join("\n")
                );
            };
            self.log.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Returns a line already read that contains `text`, or waits for one.
    fn find_line(&mut self, text: &str) -> String {
        match self.log.iter().find(|line| line.contains(text)) {
            Some(line) => line.clone(),
            None => self.wait_for_line(text),
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit and returns its status code. Kills it on timeout.
    fn wait_for_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("query the child's status") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("the relay did not exit within {WAIT:?} of the signal");
    }
}

/// Reads the first UDP listener from the "TURN relay listening" line, which logs
/// `udp=[127.0.0.1:PORT]`.
fn udp_listener(line: &str) -> SocketAddr {
    let list = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("udp=["))
        .unwrap_or_else(|| panic!("no udp field in {line:?}"));
    let first = list.trim_end_matches(',').trim_end_matches(']');
    first
        .parse()
        .unwrap_or_else(|error| panic!("invalid address {first:?} in {line:?}: {error}"))
}

/// Sends a STUN Binding request (RFC 8489 section 5) and returns the response's message type.
fn stun_binding_type(server: SocketAddr) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"switchyard12");
    socket.send_to(&request, server).unwrap();

    let mut response = [0u8; 512];
    let (len, _) = socket
        .recv_from(&mut response)
        .expect("a STUN response from the relay");
    assert!(
        len >= 20,
        "response of {len} bytes is shorter than a STUN header"
    );
    assert_eq!(&response[8..20], b"switchyard12", "transaction id differs");
    u16::from_be_bytes([response[0], response[1]])
}

#[test]
fn missing_file_is_reported() {
    let output = relay_command(Path::new("/nonexistent/relay.toml"))
        .output()
        .expect("run switchyard turn");
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("could not read TURN config file /nonexistent/relay.toml"),
        "{text}"
    );
}

#[test]
fn unknown_key_is_reported() {
    let output = run_rejected("unknown-key", "listen-udpp = []\n");
    let text = stderr(&output);
    assert!(text.contains("invalid TURN config file"), "{text}");
    assert!(text.contains("listen-udpp"), "{text}");
}

#[test]
fn wrong_type_is_reported() {
    let output = run_rejected("wrong-type", "min-port = \"low\"\n");
    let text = stderr(&output);
    assert!(text.contains("invalid TURN config file"), "{text}");
    assert!(text.contains("min-port"), "{text}");
}

#[test]
fn inconsistent_settings_are_reported() {
    let output = run_rejected(
        "port-range",
        "static-auth-secrets = [\"s\"]\nmin-port = 60000\nmax-port = 50000\n",
    );
    let text = stderr(&output);
    assert!(text.contains("could not start the TURN relay"), "{text}");
    assert!(text.contains("60000-50000"), "{text}");
}

#[test]
fn missing_credentials_are_reported() {
    let output = run_rejected("no-credentials", "listen-udp = [\"127.0.0.1:0\"]\n");
    let text = stderr(&output);
    assert!(
        text.contains("neither users nor static-auth-secrets"),
        "{text}"
    );
}

#[test]
fn log_leaves_out_secrets() {
    let mut relay = Relay::start("log");
    relay.signal("TERM");
    assert_eq!(relay.wait_for_exit(), Some(0));
    while let Ok(line) = relay.lines.recv_timeout(WAIT) {
        relay.log.push(line);
    }

    let log = relay.log.join("\n");
    assert!(log.contains("static_auth_secrets=1"), "{log}");
    assert!(log.contains("\"test\""), "user names are logged: {log}");
    assert!(!log.contains(SECRET), "the secret is in the log: {log}");
    assert!(!log.contains(PASSWORD), "the password is in the log: {log}");
}

/// The relay replies to a STUN Binding request on the default runtime and on one worker thread.
#[test]
fn relay_answers_stun_binding() {
    for (label, args) in [
        ("stun", &[][..]),
        ("stun-one-thread", &["--worker-threads", "1"]),
    ] {
        let mut relay = Relay::start_with_args(label, "", args);
        let line = relay.find_line("TURN relay listening");
        let listener = udp_listener(&line);
        if !args.is_empty() {
            assert!(line.contains("worker_threads=1"), "{line}");
        }

        // 0x0101 is a Binding success response.
        assert_eq!(stun_binding_type(listener), 0x0101, "{args:?}");
        relay.signal("TERM");
        assert_eq!(relay.wait_for_exit(), Some(0), "{args:?}");
    }
}

#[test]
fn zero_worker_threads_are_rejected() {
    let output = relay_command(Path::new("/nonexistent/relay.toml"))
        .args(["--worker-threads", "0"])
        .output()
        .expect("run switchyard turn");
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("invalid value '0' for '--worker-threads <COUNT>'"),
        "{text}"
    );
}

/// Sends `GET /metrics` over a plain TCP connection and returns the whole HTTP response.
fn get_metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the metrics response");
    response
}

#[test]
fn relay_serves_metrics() {
    let mut relay = Relay::start_with("metrics", r#"metrics-listen = "127.0.0.1:0""#);
    let line = relay.find_line("TURN metrics listening");
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let response = get_metrics(addr);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    assert!(
        response.contains("\nswitchyard_turn_allocations 0\n"),
        "{response}"
    );
    relay.signal("TERM");
    assert_eq!(relay.wait_for_exit(), Some(0));
}

#[test]
fn sigterm_stops_relay() {
    let mut relay = Relay::start("sigterm");
    relay.signal("TERM");
    relay.wait_for_line("TURN relay stopped");
    assert_eq!(relay.wait_for_exit(), Some(0));
}

#[test]
fn sigint_stops_relay() {
    let mut relay = Relay::start("sigint");
    relay.signal("INT");
    relay.wait_for_line("TURN relay stopped");
    assert_eq!(relay.wait_for_exit(), Some(0));
}
