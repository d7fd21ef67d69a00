//! A request sent twice with the same id runs once, and the retry gets the first reply again.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ErrorCode, ServerFrame, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

async fn recv_frame(client: &mut Client) -> ServerFrame {
    match client.reader.next_frame().await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|error| panic!("server sent invalid JSON {text}: {error}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn same_request_id_runs_once() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("demo", "Ada").await;
    grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    // An answer with no subscriber offer outstanding fails in the SFU. Sent twice with one id,
    // the SFU sees it once and both copies get the same error.
    let answer = serde_json::json!({"type": "answer", "id": "a1", "sdp": "v=0"});
    ada.send_json(answer.clone()).await;
    let first = recv_frame(&mut ada).await;
    ada.send_json(answer).await;
    let second = recv_frame(&mut ada).await;
    assert_eq!(first.request_id.as_deref(), Some("a1"));
    assert!(
        matches!(
            first.message,
            ServerMessage::Error {
                code: ErrorCode::NegotiationFailed,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(second.request_id, first.request_id);
    assert_eq!(second.message, first.message);
    assert_eq!(second.seq, first.seq.map(|seq| seq + 1));

    // `leave` twice with one id: the first ends the session, so the second never runs.
    grace
        .send_json(serde_json::json!({"type": "leave", "id": "l1"}))
        .await;
    grace
        .send_json(serde_json::json!({"type": "leave", "id": "l1"}))
        .await;
    let ok = recv_frame(&mut grace).await;
    assert_eq!(ok.message, ServerMessage::Ok);
    assert_eq!(ok.request_id.as_deref(), Some("l1"));
    assert_eq!(grace.expect_close().await, 1000);

    // Ada gets exactly one participant_left, then the next event is Lin's arrival.
    assert!(matches!(
        ada.recv().await,
        ServerMessage::ParticipantLeft { .. }
    ));
    let mut lin = server.connect().await;
    let (lin_id, _) = lin.join("demo", "Lin").await;
    match ada.recv().await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, lin_id),
        other => panic!("expected participant_joined for lin, got {other:?}"),
    }
    drop((ada, lin));
    server.stop().await;
}

#[tokio::test]
async fn every_request_gets_one_reply() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    ada.join("demo", "Ada").await;

    let requests = [
        serde_json::json!({"type": "candidate", "id": "c1", "candidate": ""}),
        serde_json::json!({"type": "offer", "id": "o1", "sdp": "not sdp"}),
        serde_json::json!({"type": "join", "id": "j2", "room": "demo", "name": "Ada"}),
        serde_json::json!({"type": "shout", "id": "s1"}),
        serde_json::json!({"type": "offer", "id": "o2"}),
    ];
    for request in &requests {
        ada.send_json(request.clone()).await;
    }
    // Replies from the SFU can overtake the ones the session sends at once, so they are
    // matched by request id.
    let mut replies = std::collections::BTreeMap::new();
    for _ in &requests {
        let frame = recv_frame(&mut ada).await;
        let id = frame.request_id.clone().unwrap_or_default();
        let previous = replies.insert(id, frame.message.clone());
        assert!(previous.is_none(), "second reply to one request: {frame:?}");
    }
    let code = |id: &str| match &replies[id] {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    };
    assert_eq!(replies.len(), requests.len(), "{replies:?}");
    assert_eq!(replies["c1"], ServerMessage::Ok);
    assert_eq!(code("o1"), Some(ErrorCode::InvalidSdp));
    assert_eq!(code("j2"), Some(ErrorCode::AlreadyJoined));
    assert_eq!(code("s1"), Some(ErrorCode::UnknownType));
    assert_eq!(code("o2"), Some(ErrorCode::InvalidMessage));
    drop(ada);
    server.stop().await;
}
