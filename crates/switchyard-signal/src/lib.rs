//! WebSocket signaling for Switchyard.
//!
//! A client connects to `GET /v1/ws` and exchanges JSON text frames, each with a `type` field,
//! as defined by [`switchyard_proto::ClientMessage`] and [`switchyard_proto::ServerMessage`]:
//!
//! 1. The first message must be `join {room, name}`. Room and display names must be 1 to 64
//!    characters, not only whitespace or zero-width characters, and without control characters
//!    or bidirectional overrides, or the reply is `error` `invalid_name`. Any other message
//!    before `join` gets `not_joined`, and a second `join` gets `already_joined`.
//! 2. The server assigns an unguessable participant id, replies `joined` with the others in the
//!    room and the ICE servers (the TURN relay with credentials for this participant, then the
//!    configured servers), and sends `participant_joined` to the others.
//! 3. `offer`, `answer` and `candidate` go to the SFU. Its answers, offers, candidates, track
//!    notices and SDP errors come back in the order the SFU sent them.
//! 4. `leave` ends the session with close code 1000. However a session ends, the SFU drops the
//!    participant and the others get `participant_left` once.
//!
//! Bad input gets an `error` and leaves the connection open: `invalid_json` for text that is
//! not JSON and for binary frames, `unknown_type` for a missing or unknown `type`, and
//! `invalid_message` for a known `type` with bad fields. A message over
//! [`SignalConfig::max_message_size`] gets `message_too_large` and close code 1009. Text frames
//! that are not UTF-8 get close code 1007 and other WebSocket protocol violations 1002, after
//! which the connection closes.
//!
//! Every frame for a client goes through one bounded queue of
//! [`SignalConfig::outbound_queue`] messages, which the session writes to the socket after each
//! batch, with the connection's driver task taking over when the socket is full. A client whose queue
//! is full when another message arrives is disconnected with close code 4008. Cancelling the
//! shutdown token given to [`AppState::new`] sends every client `error` `server_shutdown` and
//! close code 1001.
//!
//! Rooms live behind the [`RoomStore`] trait, which also delivers the room events;
//! [`MemoryRoomStore`] keeps them in this process.

#![warn(missing_docs)]

mod config;
mod connection;
mod decode;
mod join;
pub mod metrics;
mod names;
mod outbound;
mod outbox;
mod participant;
mod peer_log;
mod rate;
mod relay;
mod requests;
mod session;
mod sse;
mod state;
mod store;
pub mod token;
mod trace;
mod websocket;
mod writer;

/// The WebSocket frame decoder, for the fuzz targets in `fuzz/`. Not a stable API: it may
/// change in any release.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::websocket::{Decoder, Incoming, ReadError};
}

use axum::routing::{get, post};
use axum::Router;

pub use config::{
    SignalConfig, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_MESSAGES_PER_SECOND,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PARTICIPANTS_PER_ROOM, DEFAULT_MAX_ROOMS,
    DEFAULT_OUTBOUND_QUEUE, DEFAULT_OUTBOX_AGE, DEFAULT_OUTBOX_MESSAGES, DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT, DEFAULT_RECONNECT_GRACE,
};
pub use decode::{decode, decode_with_id, DecodeError, MAX_REQUEST_ID_CHARS};
pub use names::{
    validate_identity, DisplayName, NameError, ParticipantId, RoomName, MAX_DISPLAY_NAME_CHARS,
    MAX_IDENTITY_CHARS, MAX_ROOM_NAME_CHARS,
};
pub use relay::TurnRelay;
pub use session::{MAX_CHAT_BYTES, MAX_METADATA_BYTES, MAX_PEER_SESSION_CHARS};
pub use sse::{EVENTS_PATH, SEND_PATH};
pub use state::AppState;
pub use store::{
    DuplicateIdentity, JoinPolicy, Member, MemoryRoomStore, RoomEvent, RoomEventSender,
    RoomSnapshot, RoomStore, SharedRoomEvent, StoreError,
};
pub use trace::TRACEPARENT;

/// Path of the WebSocket endpoint.
pub const WS_PATH: &str = "/v1/ws";

/// Builds the signaling routes: `GET /v1/ws` upgrades to a signaling WebSocket, and
/// `GET /v1/events` with `POST /v1/send` carry the same sessions over Server-Sent Events.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(WS_PATH, get(connection::upgrade))
        .route(EVENTS_PATH, get(sse::events))
        .route(SEND_PATH, post(sse::send))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use switchyard_sfu::SfuConfig;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    async fn test_state() -> AppState {
        let sfu = switchyard_sfu::start(SfuConfig {
            bind: ([127, 0, 0, 1], 0).into(),
            ..SfuConfig::default()
        })
        .await
        .expect("SFU binds a loopback UDP port");
        AppState::new(
            SignalConfig::default(),
            Arc::new(MemoryRoomStore::new()),
            sfu,
            CancellationToken::new(),
        )
    }

    async fn status(path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app(test_state().await).oneshot(request).await.unwrap();
        response.status()
    }

    #[tokio::test]
    async fn ws_path_without_upgrade_is_rejected() {
        let status = status(WS_PATH).await;
        assert!(status.is_client_error(), "{status}");
    }

    #[tokio::test]
    async fn other_paths_are_not_routed() {
        assert_eq!(status("/v1/other").await, StatusCode::NOT_FOUND);
    }
}
