//! A call between one publisher and two subscribers moves the server's Prometheus metrics:
//! open WebSocket connections, connected peer connections, forwarded RTP packets and the
//! round-trip time histograms of signaling and RTCP, and the time RTP packets spend in the SFU.
//! Every scrape passes `promtool check metrics` (Debian's `prometheus` package), and the bundled
//! relay's series are in the same output.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::client::Participant;
use support::namespace::run_on_loopback_only;
use switchyard::{CancellationToken, ServerConfig};
use switchyard_turn::TurnConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROOM: &str = "metrics";

/// Verified packets required per track and subscriber before the metrics are read.
const PACKETS_PER_TRACK: usize = 25;

/// Upper bound on waiting for a series to move. Receiver reports, which carry the RTCP round
/// trip, go out about once a second.
const SERIES_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn call_moves_metrics() {
    run_on_loopback_only("call_moves_metrics", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let turn = TurnConfig {
        listen_udp: vec![loopback],
        listen_tcp: vec![loopback],
        ..TurnConfig::default()
    };
    let config = ServerConfig {
        http: loopback,
        media: loopback,
        turn: Some(turn),
        ping_interval: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let server = switchyard::run(config, shutdown.clone())
        .await
        .expect("the server starts on 127.0.0.1");
    let http = server.http_addr();

    let before = scrape(http).await;
    promtool_check(&before);
    assert_eq!(
        value(&before, "switchyard_sfu_rtp_forwarded_packets_total"),
        0.0
    );
    assert_eq!(value(&before, "switchyard_turn_allocations"), 0.0);

    let mut first = Participant::join(http, ROOM, "first").await;
    let mut second = Participant::join(http, ROOM, "second").await;
    let mut publisher = Participant::join(http, ROOM, "publisher").await;
    let sender = publisher.publish().await;
    for subscriber in [&mut first, &mut second] {
        subscriber
            .receive_media(PACKETS_PER_TRACK, |_| {})
            .await
            .unwrap_or_else(|failure| panic!("{failure}\n{}", sender.status()));
    }

    let during = wait_for_series(http, |text| {
        value(text, "switchyard_sfu_rtt_seconds_count") > 0.0
            && value(
                text,
                "switchyard_signaling_rtt_seconds_count{source=\"ping\"}",
            ) > 0.0
    })
    .await;
    promtool_check(&during);

    let forwarded = value(&during, "switchyard_sfu_rtp_forwarded_packets_total");
    assert!(
        forwarded >= (2 * 2 * PACKETS_PER_TRACK) as f64,
        "two subscribers got two tracks each, yet {forwarded} packets counted as forwarded"
    );
    assert!(value(&during, "switchyard_sfu_rtp_forwarded_bytes_total") > 0.0);
    assert!(value(&during, "switchyard_sfu_rtp_received_packets_total") > 0.0);
    // Every RTP packet received on the media socket carries a kernel receive timestamp.
    let delays = value(&during, "switchyard_sfu_rtp_delay_seconds_count");
    assert!(delays > 0.0, "no RTP packet delay was recorded");
    let delay_sum = value(&during, "switchyard_sfu_rtp_delay_seconds_sum");
    assert!(
        delay_sum / delays < 1.0,
        "mean delay in the SFU of {} s is not plausible",
        delay_sum / delays
    );
    assert_eq!(
        value(
            &during,
            "switchyard_signaling_connections{transport=\"websocket\"}"
        ),
        3.0
    );
    assert_eq!(value(&during, "switchyard_participants"), 3.0);
    assert_eq!(value(&during, "switchyard_rooms"), 1.0);
    assert!(value(&during, "switchyard_joins_total") >= 3.0);
    // The publisher's publisher connection and the two subscriber connections with media are
    // connected. The other three never got an offer, so they stay new.
    assert_eq!(
        value(
            &during,
            "switchyard_sfu_peer_connections{state=\"connected\"}"
        ),
        3.0
    );
    assert_eq!(
        value(&during, "switchyard_sfu_peer_connections{state=\"new\"}"),
        3.0
    );
    assert_eq!(value(&during, "switchyard_sfu_tracks{kind=\"video\"}"), 1.0);
    assert_eq!(value(&during, "switchyard_sfu_tracks{kind=\"audio\"}"), 1.0);
    assert!(
        value(
            &during,
            "switchyard_signaling_messages_received_total{type=\"join\"}"
        ) >= 3.0
    );
    assert!(
        value(
            &during,
            "switchyard_signaling_messages_sent_total{type=\"joined\"}"
        ) >= 3.0
    );
    assert!(
        during.contains("\nswitchyard_turn_allocations 0\n"),
        "the bundled relay's series are missing:\n{during}"
    );

    sender.stop();
    publisher.leave().await;
    first.leave().await;
    second.leave().await;

    let after = wait_for_series(http, |text| {
        value(
            text,
            "switchyard_signaling_connections{transport=\"websocket\"}",
        ) == 0.0
            && value(text, "switchyard_participants") == 0.0
    })
    .await;
    promtool_check(&after);
    assert_eq!(value(&after, "switchyard_rooms"), 0.0);
    assert_eq!(value(&after, "switchyard_sfu_tracks{kind=\"video\"}"), 0.0);
    assert!(value(&after, "switchyard_sfu_rtp_forwarded_packets_total") >= forwarded);
    assert!(value(&after, "switchyard_leaves_total{reason=\"left\"}") >= 3.0);

    shutdown.cancel();
    tokio::time::timeout(SERIES_TIMEOUT, server.wait())
        .await
        .expect("the server stops after shutdown")
        .expect("the server stops without an error");
}

/// Scrapes until `ready` accepts the text, and returns that text.
async fn wait_for_series(http: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SERIES_TIMEOUT;
    loop {
        let text = scrape(http).await;
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the expected series did not move within {SERIES_TIMEOUT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `GET /metrics` and returns the body, after checking the status and content type.
async fn scrape(http: SocketAddr) -> String {
    let response = get(http, "/metrics").await;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Sends one HTTP/1.1 GET request and returns the whole response.
async fn get(http: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(http).await.expect("connect to HTTP");
    let request = format!("GET {path} HTTP/1.1\r\nHost: switchyard\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(SERIES_TIMEOUT, stream.read_to_string(&mut response))
        .await
        .expect("the HTTP response ends in time")
        .expect("read the HTTP response");
    response
}

/// Returns the value of the sample whose name and labels are `series`, or 0 when it is absent,
/// as Prometheus treats a counter that has not been written yet.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("sample values are numbers"))
        })
        .unwrap_or(0.0)
}

/// Runs `promtool check metrics` on the text and fails with its output when it finds a problem.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool; install it with `apt-get install prometheus`");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
