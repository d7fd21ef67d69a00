//! With `--otlp-endpoint` the binary exports a span for each signaling request over OTLP/HTTP.
//! The span is a child of the client's span when the request carries a W3C `traceparent`
//! header, and the SFU work that a request causes is a child of the request's span. An
//! OTLP/HTTP receiver inside the test decodes what the server posts.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const WAIT: Duration = Duration::from_secs(20);

const JOIN_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const JOIN_PARENT: &str = "b7ad6b7169203331";
const OFFER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OFFER_PARENT: &str = "00f067aa0ba902b7";

/// Accepts OTLP/HTTP trace exports on 127.0.0.1 and sends each decoded span to the test.
fn start_receiver() -> (SocketAddr, mpsc::Receiver<Span>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
    let addr = listener.local_addr().unwrap();
    let (sender, spans) = mpsc::channel();
    // Ends with the test process; each connection carries one request.
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let Some(body) = read_request(stream) else {
                continue;
            };
            let request = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("the body is an ExportTraceServiceRequest");
            let decoded = request
                .resource_spans
                .into_iter()
                .flat_map(|resource| resource.scope_spans)
                .flat_map(|scope| scope.spans);
            for span in decoded {
                let _ = sender.send(span);
            }
        }
    });
    (addr, spans)
}

/// Reads one HTTP/1.1 POST to /v1/traces, responds with 200 and returns its body.
fn read_request(stream: TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "unexpected request {request_line:?}"
    );
    let mut length = 0;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => content_type = value.trim().to_owned(),
            _ => {}
        }
    }
    assert_eq!(content_type, "application/x-protobuf");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = reader.into_inner();
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\
          connection: close\r\n\r\n",
    );
    Some(body)
}

/// Starts the binary with trace export to `otlp`, and returns it with its HTTP address.
fn start_server(otlp: SocketAddr) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
        .args(["--no-turn", "--otlp-endpoint"])
        .arg(format!("http://{otlp}"))
        .env("RUST_LOG", "info")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the switchyard binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(remaining) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server logged no \"listening\" line within {WAIT:?}");
        };
        let addr = line
            .contains("listening")
            .then(|| {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix("http_addr="))
            })
            .flatten()
            .and_then(|value| value.parse().ok());
        if let Some(addr) = addr {
            // Keep draining stderr so the pipe never fills.
            std::thread::spawn(move || while lines.recv().is_ok() {});
            return (child, addr);
        }
    }
}

/// Posts `body` to `path` with a `traceparent` header and returns the response body.
fn post(http: SocketAddr, path: &str, traceparent: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(http).expect("connect to HTTP");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: switchyard\r\nContent-Type: application/json\r\n\
         traceparent: {traceparent}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 202"), "{response}");
    body.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn stop(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("query the child").is_none() {
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn requests_export_spans_with_client_parent() {
    let (otlp, spans) = start_receiver();
    let (child, http) = start_server(otlp);

    let joined = post(
        http,
        "/v1/send",
        &format!("00-{JOIN_TRACE}-{JOIN_PARENT}-01"),
        r#"{"type":"join","room":"traces","name":"Ada"}"#,
    );
    let joined: serde_json::Value = serde_json::from_str(&joined).unwrap();
    let token = joined["resumeToken"].as_str().expect("a resume token");
    // An offer the SFU rejects still makes it parse the SDP, which is the work to trace.
    post(
        http,
        &format!("/v1/send?token={token}"),
        &format!("00-{OFFER_TRACE}-{OFFER_PARENT}-01"),
        r#"{"type":"offer","id":"o1","sdp":"v=0"}"#,
    );

    // Shutdown exports whatever the batch processor still holds.
    std::thread::sleep(Duration::from_millis(500));
    stop(child);

    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    let complete = |received: &[Span]| {
        ["signaling join", "signaling offer", "sfu publish_offer"]
            .iter()
            .all(|name| received.iter().any(|span| span.name == *name))
    };
    while !complete(&received) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match spans.recv_timeout(remaining) {
            Ok(span) => received.push(span),
            Err(_) => {
                let names: Vec<&str> = received.iter().map(|span| span.name.as_str()).collect();
                panic!("spans missing within {WAIT:?}; received {names:?}");
            }
        }
    }

    let join = received
        .iter()
        .find(|span| span.name == "signaling join")
        .unwrap();
    assert_eq!(hex(&join.trace_id), JOIN_TRACE);
    assert_eq!(hex(&join.parent_span_id), JOIN_PARENT);

    let offer = received
        .iter()
        .find(|span| span.name == "signaling offer")
        .expect("a span for the offer request");
    assert_eq!(hex(&offer.trace_id), OFFER_TRACE);
    assert_eq!(hex(&offer.parent_span_id), OFFER_PARENT);

    let sfu = received
        .iter()
        .find(|span| span.name == "sfu publish_offer")
        .unwrap();
    assert_eq!(hex(&sfu.trace_id), OFFER_TRACE);
    assert_eq!(sfu.parent_span_id, offer.span_id);
}
