//! Join tokens on a server with an API key: valid tokens admit with their grants, and every
//! kind of bad token gets its own error code.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{loopback_config, TestServer};
use switchyard::token::{sign, ApiKeys, Claims, Grants};
use switchyard_proto::{ErrorCode, ServerMessage};

const KEY: &str = "key1";
const SECRET: &str = "secret1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(room: &str, identity: &str, grants: Grants) -> Claims {
    Claims {
        room: room.into(),
        sub: identity.into(),
        name: None,
        grants,
        exp: now() + 600,
        nbf: None,
    }
}

async fn join_error(server: &TestServer, token: Option<String>) -> ErrorCode {
    let mut client = server.connect().await;
    client
        .send_json(serde_json::json!({
            "type": "join", "room": "demo", "name": "Ada", "token": token
        }))
        .await;
    match client.recv().await {
        ServerMessage::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_tokens_get_their_own_codes() {
    let config = switchyard::ServerConfig {
        api_keys: ApiKeys::new([(KEY.to_owned(), SECRET.to_owned())]),
        ..loopback_config()
    };
    let server = TestServer::start(config).await;

    let expired = Claims {
        exp: now() - 10,
        ..claims("demo", "ada", Grants::ALL)
    };
    let not_yet = Claims {
        nbf: Some(now() + 3600),
        ..claims("demo", "ada", Grants::ALL)
    };
    let cases = [
        (None, ErrorCode::TokenRequired),
        (Some("not-a-token".to_owned()), ErrorCode::InvalidToken),
        (
            Some(sign(&claims("other", "ada", Grants::ALL), KEY, SECRET)),
            ErrorCode::WrongRoom,
        ),
        (Some(sign(&expired, KEY, SECRET)), ErrorCode::TokenExpired),
        (Some(sign(&not_yet, KEY, SECRET)), ErrorCode::TokenExpired),
        (
            Some(sign(&claims("demo", "ada", Grants::ALL), KEY, "wrong")),
            ErrorCode::InvalidSignature,
        ),
        (
            Some(sign(&claims("demo", "ada", Grants::ALL), "key2", SECRET)),
            ErrorCode::UnknownApiKey,
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(
            join_error(&server, token.clone()).await,
            expected,
            "{token:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn grants_limit_requests() {
    let config = switchyard::ServerConfig {
        api_keys: ApiKeys::new([(KEY.to_owned(), SECRET.to_owned())]),
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let token = sign(&claims("demo", "ada", Grants::default()), KEY, SECRET);
    let mut ada = server.connect().await;
    ada.send_json(serde_json::json!({
        "type": "join", "room": "demo", "name": "", "token": token
    }))
    .await;
    let ServerMessage::Joined { .. } = ada.recv().await else {
        panic!("expected joined");
    };

    let denied = [
        serde_json::json!({"type": "offer", "sdp": "v=0"}),
        serde_json::json!({"type": "chat", "text": "hi"}),
        serde_json::json!({"type": "set_metadata", "scope": "room", "metadata": "m"}),
        serde_json::json!({
            "type": "set_metadata", "participantId": "someone", "metadata": "m"
        }),
    ];
    for message in denied {
        ada.send_json(message.clone()).await;
        match ada.recv().await {
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::PermissionDenied, "{message}")
            }
            other => panic!("expected permission_denied for {message}, got {other:?}"),
        }
    }
    ada.send_json(serde_json::json!({"type": "set_metadata", "metadata": "own"}))
        .await;
    let mut replies = Vec::new();
    for _ in 0..2 {
        replies.push(
            tokio::time::timeout(Duration::from_secs(20), ada.recv())
                .await
                .unwrap(),
        );
    }
    assert!(replies.contains(&ServerMessage::Ok), "{replies:?}");
    server.stop().await;
}
