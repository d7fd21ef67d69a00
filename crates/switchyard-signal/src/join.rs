//! Admission of a `join`: checks the display name, adds the participant to the room store and
//! starts its session task. Shared by the WebSocket and the SSE transports.

use switchyard_proto::{ErrorCode, ServerMessage};
use tokio::sync::mpsc;
use tracing::{debug, error};

use crate::names::ParticipantId;
use crate::outbound::Outbound;
use crate::participant::{self, NewSession, SessionHandle};
use crate::session::{display_name, JoinRequest};
use crate::state::AppState;
use crate::store::{Member, StoreError};

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
    let name = match display_name(request.name, None) {
        Ok(name) => name,
        Err(reply) => {
            return Err(Rejected {
                reply,
                outbound: connection.map(|(_, outbound)| outbound),
            })
        }
    };

    let participant_id = ParticipantId::random();
    let (room_events, room_receiver) = mpsc::unbounded_channel();
    let member = Member {
        id: participant_id.clone(),
        name: name.into_string(),
        identity: request.identity,
        events: room_events,
    };
    let duplicates = state.config.duplicate_identity;
    let others = match state.store.join(&request.room, member, duplicates).await {
        Ok(others) => others,
        Err(StoreError::DuplicateIdentity { room }) => {
            debug!(room_id = %room, "join with a duplicate identity rejected");
            return Err(Rejected {
                reply: ServerMessage::error(
                    ErrorCode::DuplicateIdentity,
                    "a participant with this identity is already in the room",
                ),
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
            others,
            join_request_id: request_id,
            connection,
        },
    );
    Ok(Joined {
        handle,
        resume_token,
        participant_id,
    })
}
