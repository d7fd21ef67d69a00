//! Admission of a `join`: verifies the join token, checks the display name, adds the
//! participant to the room store and starts its session task. Shared by the WebSocket and the
//! SSE transports.

use std::time::SystemTime;

use switchyard_proto::{ErrorCode, ServerMessage};
use tokio::sync::mpsc;
use tracing::{debug, error};

use crate::names::{validate_identity, ParticipantId};
use crate::outbound::Outbound;
use crate::participant::{self, NewSession, SessionHandle};
use crate::session::{display_name, JoinRequest};
use crate::state::AppState;
use crate::store::{JoinPolicy, Member, StoreError};
use crate::token::{self, Grants};

/// A joined session.
#[derive(Debug)]
pub(crate) struct Joined {
    pub handle: SessionHandle,
    pub resume_token: String,
    pub participant_id: ParticipantId,
}

/// A rejected join: the error reply, and the connection's queue back when one was given.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub reply: ServerMessage,
    pub outbound: Option<Outbound>,
}

/// Admits `request` and starts the session. `connection` is the connection that carries the
/// session from the start; the session sends `joined` on it.
pub(crate) async fn join(
    state: &AppState,
    request: JoinRequest,
    request_id: Option<String>,
    connection: Option<(u64, Outbound)>,
) -> Result<Joined, Rejected> {
    let admission = match authorize(state, &request) {
        Ok(admission) => admission,
        Err((code, message)) => {
            return Err(Rejected {
                reply: ServerMessage::error(code, message),
                outbound: connection.map(|(_, outbound)| outbound),
            })
        }
    };
    if let Some(identity) = &admission.identity {
        if let Err(error) = validate_identity(identity) {
            return Err(Rejected {
                reply: ServerMessage::error(ErrorCode::InvalidName, error.to_string()),
                outbound: connection.map(|(_, outbound)| outbound),
            });
        }
    }
    let name = match display_name(request.name, admission.name) {
        Ok(name) => name,
        Err(error) => {
            return Err(Rejected {
                reply: ServerMessage::error(ErrorCode::InvalidName, error.to_string()),
                outbound: connection.map(|(_, outbound)| outbound),
            })
        }
    };

    let participant_id = ParticipantId::random();
    let (room_events, room_receiver) = mpsc::unbounded_channel();
    let member = Member {
        id: participant_id.clone(),
        name: name.into_string(),
        identity: admission.identity,
        metadata: String::new(),
        events: room_events,
    };
    let policy = JoinPolicy {
        duplicates: state.config.duplicate_identity,
        max_participants: state.config.max_participants_per_room,
        max_rooms: state.config.max_rooms,
    };
    let snapshot = match state.store.join(&request.room, member, policy).await {
        Ok(snapshot) => snapshot,
        Err(
            err @ (StoreError::DuplicateIdentity { .. }
            | StoreError::RoomFull { .. }
            | StoreError::TooManyRooms { .. }),
        ) => {
            debug!(room_id = %request.room, reason = %err, "join rejected");
            return Err(Rejected {
                reply: store_rejection(&err),
                outbound: connection.map(|(_, outbound)| outbound),
            });
        }
        Err(err) => {
            error!(
                error = &err as &dyn std::error::Error,
                room_id = %request.room,
                "room store failed to add participant"
            );
            return Err(Rejected {
                reply: ServerMessage::error(
                    ErrorCode::InternalError,
                    "could not join the room, try again",
                ),
                outbound: connection.map(|(_, outbound)| outbound),
            });
        }
    };

    // From here on, the session task removes the participant from the room and the SFU
    // however the session ends.
    let (handle, resume_token) = participant::start(
        state,
        NewSession {
            room: request.room,
            participant_id: participant_id.clone(),
            room_events: room_receiver,
            snapshot,
            grants: admission.grants,
            join_request_id: request_id,
            connection,
        },
    );
    crate::metrics::counters().session_started();
    Ok(Joined {
        handle,
        resume_token,
        participant_id,
    })
}

/// What a join may do, from its token or, in development mode, from the message alone.
struct Admission {
    identity: Option<String>,
    name: Option<String>,
    grants: Grants,
}

/// Verifies the join token, or admits a tokenless join when the server allows it. Returns the
/// error code and message on rejection.
fn authorize(state: &AppState, request: &JoinRequest) -> Result<Admission, (ErrorCode, String)> {
    let config = &state.config;
    let Some(token) = &request.token else {
        if config.allow_tokenless_join {
            return Ok(Admission {
                identity: request.identity.clone(),
                name: None,
                grants: Grants::ALL,
            });
        }
        debug!(room_id = %request.room, "join without a token rejected");
        return Err((
            ErrorCode::TokenRequired,
            "this server requires a join token; get one from the application that sent you here"
                .to_owned(),
        ));
    };
    match token::verify(
        token,
        &config.api_keys,
        request.room.as_str(),
        SystemTime::now(),
    ) {
        Ok(claims) => Ok(Admission {
            // A token without a name falls back to the message's, then to the identity.
            name: claims
                .name
                .or_else(|| request.name.is_empty().then(|| claims.sub.clone())),
            identity: Some(claims.sub),
            grants: claims.grants,
        }),
        Err(error) => {
            crate::peer_log::token_rejected(request.room.as_str(), &error);
            Err((error.code(), error.to_string()))
        }
    }
}

fn store_rejection(error: &StoreError) -> ServerMessage {
    let (code, message) = match error {
        StoreError::DuplicateIdentity { .. } => (
            ErrorCode::DuplicateIdentity,
            "a participant with this identity is already in the room".to_owned(),
        ),
        StoreError::RoomFull { .. } => (
            ErrorCode::RoomFull,
            "the room has the maximum number of participants, try again later".to_owned(),
        ),
        _ => (
            ErrorCode::TooManyRooms,
            "the server has the maximum number of rooms, join an existing room or try later"
                .to_owned(),
        ),
    };
    ServerMessage::error(code, message)
}
