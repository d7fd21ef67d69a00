//! With `--log-format json` every line the binary writes to standard error is one JSON object
//! with timestamp, level, message and target. Lines inside a session carry its room_id,
//! participant_id and session_id. No credential appears anywhere: not the API secret, the join
//! token, the resume token, the TURN secret nor the TURN password derived from it.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, WAIT};
use serde_json::{json, Value};
use switchyard::token::{sign, Claims, Grants};
use switchyard_proto::ServerMessage;

const API_KEY: &str = "logs-key";
const API_SECRET: &str = "api-secret-4d1f0c2b9e";
const TURN_SECRET: &str = "turn-secret-83a61e7c55";

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    /// Starts the binary with JSON logs at debug level, an API key and a TURN secret.
    fn start() -> Server {
        let turn_config =
            std::env::temp_dir().join(format!("switchyard-json-logs-{}.toml", std::process::id()));
        std::fs::write(
            &turn_config,
            format!(
                "listen-udp = [\"127.0.0.1:0\"]\nlisten-tcp = [\"127.0.0.1:0\"]\n\
                 static-auth-secrets = [\"{TURN_SECRET}\"]\n"
            ),
        )
        .expect("write the TURN config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--log-format", "json"])
            .args(["--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
            .arg("--api-key")
            .arg(format!("{API_KEY}={API_SECRET}"))
            .arg("--turn-config")
            .arg(&turn_config)
            .env("RUST_LOG", "debug")
            .env_remove("SWITCHYARD_CONFIG")
            .env_remove("SWITCHYARD_LOG_FORMAT")
            .env_remove("SWITCHYARD_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the switchyard binary");

        // The thread keeps reading so the pipe never fills. It ends when the process exits.
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut server = Server {
            child,
            lines,
            log: Vec::new(),
        };
        server.wait_for_message("listening");
        let _ = std::fs::remove_file(&turn_config);
        server
    }

    /// Waits for a line whose message is `message` and returns it parsed.
    fn wait_for_message(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(remaining) else {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "no log line with message {message:?} within {WAIT:?}; log:\n{}",
                    self.log.join("\n")
                );
            };
            self.log.push(line.clone());
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if value["message"] == message {
                return value;
            }
        }
    }

    fn http_addr(&self) -> SocketAddr {
        self.log
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|value| value["message"] == "listening")
            .and_then(|value| value["http_addr"].as_str()?.parse().ok())
            .expect("the listening line has http_addr")
    }

    /// Sends SIGTERM, waits for the exit and returns every line the process wrote.
    fn stop(mut self) -> Vec<String> {
        let sent = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s TERM failed");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("query the child's status") {
                assert_eq!(status.code(), Some(0), "{}", self.log.join("\n"));
                break;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread ends once the pipe closes, which closes the channel.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.log.push(line);
        }
        self.log
    }
}

fn join_token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        room: "logs".into(),
        sub: "ada".into(),
        name: Some("Ada".into()),
        grants: Grants::ALL,
        exp: now + 600,
        nbf: None,
    };
    sign(&claims, API_KEY, API_SECRET)
}

#[tokio::test]
async fn json_logs_carry_fields_and_no_secrets() {
    let mut server = Server::start();
    let addr = server.http_addr();
    let token = join_token();

    let mut client = Client::connect(addr, None).await;
    client
        .send_json(json!({"type": "join", "room": "logs", "name": "Ada", "token": token}))
        .await;
    let ServerMessage::Joined {
        resume_token,
        ice_servers,
        ..
    } = client.recv().await
    else {
        panic!("expected joined");
    };
    let turn_password = ice_servers
        .iter()
        .find_map(|server| server.credential.clone())
        .expect("the bundled relay's entry has a credential");

    // A message the session rejects, so the session logs at debug level inside its span.
    client.send_json(json!({"type": "ack", "seq": 99})).await;
    let _ = client.recv().await;
    client.send_json(json!({"type": "leave"})).await;
    let _ = client.recv().await;
    let _ = tokio::time::timeout(WAIT, client.expect_close()).await;
    server.wait_for_message("session ended");

    // A second client tries a forged token, which is rejected and must not be logged either.
    let forged = format!("{token}x");
    let mut intruder = Client::connect(addr, None).await;
    intruder
        .send_json(json!({"type": "join", "room": "logs", "name": "Eve", "token": forged}))
        .await;
    let _ = intruder.recv().await;

    let log = tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop the server");
    assert!(log.len() > 10, "too few log lines:\n{}", log.join("\n"));

    let mut session_lines = 0;
    for line in &log {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON object ({error}): {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(value.get(field).is_some(), "no {field} in {line}");
        }
        let spans = value["spans"].as_array().cloned().unwrap_or_default();
        if let Some(session) = spans.iter().find(|span| span["name"] == "session") {
            session_lines += 1;
            assert_eq!(session["room_id"], "logs", "{line}");
            assert!(session["participant_id"].is_string(), "{line}");
            assert!(session["session_id"].is_number(), "{line}");
        }
    }
    assert!(
        session_lines > 0,
        "no line carries the session span:\n{}",
        log.join("\n")
    );

    let text = log.join("\n");
    for (name, secret) in [
        ("API secret", API_SECRET),
        ("join token", token.as_str()),
        ("forged join token", forged.as_str()),
        ("resume token", resume_token.as_str()),
        ("TURN secret", TURN_SECRET),
        ("TURN password", turn_password.as_str()),
    ] {
        assert!(!text.contains(secret), "the log contains the {name}");
    }
}
