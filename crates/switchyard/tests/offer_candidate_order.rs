//! 500 rounds of a publisher offer followed at once by 20 candidates, on a current-thread
//! runtime whose client yields between frames and sometimes sleeps. In every round each frame
//! is valid JSON, the offer's reply arrives before the server's candidates for it, and the
//! replies to the candidates arrive in the order the candidates were sent.
//!
//! The offer is a real browser-style SDP from `tests/fixtures/sdp`. The test accepts either
//! an `answer` or an `error` for it, whichever the SFU returns, and checks only the ordering.

mod common;

use std::time::Duration;

use common::{loopback_config, Client, TestServer};
use futures_util::SinkExt;
use switchyard_proto::{ServerFrame, ServerMessage, Target};
use tokio_tungstenite::tungstenite::Message;

const OFFER: &str = include_str!("../../../tests/fixtures/sdp/max-bundle-bundle-only-offer.sdp");

const ROUNDS: usize = 500;

const CANDIDATES: usize = 20;

/// Failure bound for all rounds together.
const TOTAL_BOUND: Duration = Duration::from_secs(240);

/// Small deterministic generator for the client's pauses, so a failing run can be repeated.
struct Pauses(u64);

impl Pauses {
    /// Yields to the executor, and on about one frame in eight also sleeps 1 ms.
    async fn pause(&mut self) {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        tokio::task::yield_now().await;
        if self.0.is_multiple_of(8) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn send_raw(client: &mut Client, value: serde_json::Value) {
    client
        .writer
        .0
        .send(Message::text(value.to_string()))
        .await
        .expect("send");
}

fn candidate(index: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "candidate",
        "id": format!("c{index}"),
        "target": "publisher",
        "candidate": format!("candidate:{index} 1 udp 2122260223 127.0.0.1 {} typ host", 50_000 + index),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    })
}

/// Runs one round on a fresh session, checks the order of what comes back, and returns whether
/// the SFU answered the offer.
async fn round(server: &TestServer, number: usize, pauses: &mut Pauses) -> bool {
    let mut client = server.connect().await;
    client.join("order", &format!("Round {number}")).await;

    send_raw(
        &mut client,
        serde_json::json!({"type": "offer", "id": "o", "sdp": OFFER}),
    )
    .await;
    for index in 0..CANDIDATES {
        pauses.pause().await;
        send_raw(&mut client, candidate(index)).await;
    }

    // Read until the offer and every candidate have their reply, and, after an answer, until
    // the server's end-of-candidates for the publisher connection.
    let mut offer_reply: Option<bool> = None;
    let mut candidate_replies = Vec::new();
    let mut server_candidates_done = false;
    while offer_reply.is_none()
        || candidate_replies.len() < CANDIDATES
        || (offer_reply == Some(true) && !server_candidates_done)
    {
        pauses.pause().await;
        let text = match client.reader.next_frame().await {
            Some(Message::Text(text)) => text,
            other => panic!("round {number}: expected a text frame, got {other:?}"),
        };
        let frame: ServerFrame = serde_json::from_str(text.as_str())
            .unwrap_or_else(|error| panic!("round {number}: invalid JSON {text}: {error}"));
        match (frame.request_id.as_deref(), &frame.message) {
            (Some("o"), ServerMessage::Answer { .. }) => offer_reply = Some(true),
            (Some("o"), ServerMessage::Error { .. }) => offer_reply = Some(false),
            (Some(id), _) if id.starts_with('c') => {
                let index: usize = id[1..].parse().expect("candidate request id");
                candidate_replies.push(index);
            }
            (None, ServerMessage::Candidate { target, candidate }) => {
                assert_eq!(*target, Target::Publisher, "round {number}: {text}");
                assert_eq!(
                    offer_reply,
                    Some(true),
                    "round {number}: server candidate before the answer: {text}"
                );
                if candidate.is_end_of_candidates() {
                    server_candidates_done = true;
                }
            }
            _ => panic!("round {number}: unexpected frame {text}"),
        }
    }
    let expected: Vec<usize> = (0..CANDIDATES).collect();
    assert_eq!(
        candidate_replies, expected,
        "round {number}: candidate replies out of order"
    );

    send_raw(&mut client, serde_json::json!({"type": "leave", "id": "l"})).await;
    loop {
        match client.reader.next_frame().await {
            Some(Message::Text(text)) => {
                let frame: ServerFrame = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|error| panic!("round {number}: invalid JSON {text}: {error}"));
                if frame.request_id.as_deref() == Some("l") {
                    assert_eq!(frame.message, ServerMessage::Ok, "round {number}");
                    break;
                }
            }
            other => panic!("round {number}: expected the reply to leave, got {other:?}"),
        }
    }
    assert_eq!(client.expect_close().await, 1000, "round {number}");
    offer_reply == Some(true)
}

#[tokio::test(flavor = "current_thread")]
async fn answer_precedes_candidates_in_every_round() {
    let config = switchyard::ServerConfig {
        reconnect_grace: Duration::ZERO,
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let mut pauses = Pauses(0x2545_F491_4F6C_DD1D);

    let rounds = async {
        let mut answered = 0;
        for number in 0..ROUNDS {
            answered += usize::from(round(&server, number, &mut pauses).await);
        }
        answered
    };
    let answered = tokio::time::timeout(TOTAL_BOUND, rounds)
        .await
        .unwrap_or_else(|_| panic!("{ROUNDS} rounds did not finish within {TOTAL_BOUND:?}"));
    // The fixture is a valid offer, so the SFU answers it: without answers the order of answer
    // and server candidates would go unchecked.
    assert_eq!(
        answered, ROUNDS,
        "only {answered} of {ROUNDS} offers were answered"
    );

    server.stop().await;
}
