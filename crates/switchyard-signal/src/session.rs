//! Meaning of each client message on a connection that has not joined yet and in a joined
//! session, and the reasons a session or one of its transports ends. Nothing here does I/O:
//! [`crate::connection`] and [`crate::participant`] carry out the returned steps.

use std::fmt;

use switchyard_proto::{
    Candidate, ClientMessage, CloseCode, ErrorCode, MetadataScope, PeerSignal, ServerMessage,
    Target,
};

use crate::names::{DisplayName, NameError, ParticipantId, RoomName};
use crate::token::Grants;

/// Maximum length of a chat text in bytes.
pub const MAX_CHAT_BYTES: usize = 4096;

/// Maximum length of a room's or participant's metadata in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Maximum length of a `peer_signal` session id in characters.
pub const MAX_PEER_SESSION_CHARS: usize = 64;

/// A validated `join`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JoinRequest {
    pub room: RoomName,
    /// Display name from the message; empty when the token is to supply it.
    pub name: String,
    pub token: Option<String>,
    pub identity: Option<String>,
}

/// Action for a client message on a connection that carries no session yet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unbound {
    /// Send this reply, usually an `error`, without a sequence number.
    Reply(ServerMessage),
    /// Enter a room and start a session.
    Join(JoinRequest),
    /// Attach the connection to an existing session.
    Resume { token: String, last_seq: u64 },
    /// Close the connection with code 1000.
    Leave,
}

/// Action for a client message in a joined session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this reply to the request.
    Reply(ServerMessage),
    /// Pass a request on to the SFU, which replies.
    Forward(SfuRequest),
    /// Apply a cumulative acknowledgement.
    Ack(u64),
    /// Change room state through the room store, then reply `ok`.
    Store(StoreRequest),
    /// End the session with close code 1000.
    Leave,
}

/// Request for the room store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoreRequest {
    /// Set the room's metadata.
    RoomMetadata(String),
    /// Set a participant's metadata.
    ParticipantMetadata(ParticipantId, String),
    /// Send a chat message to the room.
    Chat(String),
    /// Relay a peer-to-peer signal to one other member.
    PeerSignal {
        to: ParticipantId,
        session: String,
        signal: PeerSignal,
    },
}

/// Negotiation message for the SFU.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SfuRequest {
    /// Client offer for the publisher connection.
    PublishOffer(String),
    /// Client answer to the latest subscriber offer.
    SubscriberAnswer(String),
    /// Trickled ICE candidate.
    Candidate(Target, Candidate),
}

/// Decides what a client message does before the connection has joined or resumed.
pub(crate) fn unbound_step(message: ClientMessage) -> Unbound {
    match message {
        ClientMessage::Join {
            room,
            name,
            token,
            identity,
        } => match RoomName::parse(room) {
            Ok(room) => Unbound::Join(JoinRequest {
                room,
                name,
                token,
                identity,
            }),
            Err(error) => Unbound::Reply(ServerMessage::error(
                ErrorCode::InvalidName,
                error.to_string(),
            )),
        },
        ClientMessage::Resume { token, last_seq } => Unbound::Resume { token, last_seq },
        ClientMessage::Leave => Unbound::Leave,
        ClientMessage::Offer { .. }
        | ClientMessage::Answer { .. }
        | ClientMessage::Candidate { .. }
        | ClientMessage::SetMetadata { .. }
        | ClientMessage::Chat { .. }
        | ClientMessage::PeerSignal { .. }
        | ClientMessage::Ack { .. } => Unbound::Reply(ServerMessage::error(
            ErrorCode::NotJoined,
            "send `join` or `resume` before any other message",
        )),
    }
}

/// Who a joined session is: its room, its id and its grants.
#[derive(Clone, Debug)]
pub(crate) struct SessionIdentity {
    pub room: RoomName,
    pub participant_id: ParticipantId,
    pub grants: Grants,
}

/// Decides what a client message does in a joined session, checking the session's grants.
pub(crate) fn joined_step(session: &SessionIdentity, message: ClientMessage) -> Step {
    let room = &session.room;
    let grants = session.grants;
    match message {
        ClientMessage::Offer { .. } if !grants.publish => denied("publish", "send an offer"),
        ClientMessage::Candidate {
            target: Target::Publisher,
            ..
        } if !grants.publish => denied("publish", "send publisher candidates"),
        ClientMessage::Chat { .. } if !grants.publish_data => denied("publish_data", "chat"),
        ClientMessage::Chat { text } => chat_step(text),
        ClientMessage::PeerSignal { .. } if !grants.publish_data => {
            denied("publish_data", "send peer-to-peer signals")
        }
        ClientMessage::PeerSignal {
            to,
            session: peer_session,
            signal,
        } => peer_signal_step(session, to, peer_session, signal),
        ClientMessage::SetMetadata {
            scope,
            participant_id,
            metadata,
        } => metadata_step(session, scope, participant_id, metadata),
        ClientMessage::Leave => Step::Leave,
        ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
            Step::Reply(ServerMessage::error(
                ErrorCode::AlreadyJoined,
                format!(
                    "this connection has already joined room {:?}",
                    room.as_str()
                ),
            ))
        }
        ClientMessage::Offer { sdp } => Step::Forward(SfuRequest::PublishOffer(sdp)),
        ClientMessage::Answer { sdp } => Step::Forward(SfuRequest::SubscriberAnswer(sdp)),
        ClientMessage::Candidate { target, candidate } => {
            Step::Forward(SfuRequest::Candidate(target, candidate))
        }
        ClientMessage::Ack { seq } => Step::Ack(seq),
    }
}

fn denied(grant: &str, action: &str) -> Step {
    Step::Reply(ServerMessage::error(
        ErrorCode::PermissionDenied,
        format!("the join token has no {grant} grant, which is needed to {action}"),
    ))
}

fn chat_step(text: String) -> Step {
    if text.is_empty() {
        return Step::Reply(ServerMessage::error(
            ErrorCode::InvalidMessage,
            "chat text is empty",
        ));
    }
    if text.len() > MAX_CHAT_BYTES {
        return Step::Reply(ServerMessage::error(
            ErrorCode::TextTooLong,
            format!(
                "chat text is {} bytes, the maximum is {MAX_CHAT_BYTES}",
                text.len()
            ),
        ));
    }
    Step::Store(StoreRequest::Chat(text))
}

fn peer_signal_step(
    session: &SessionIdentity,
    to: String,
    peer_session: String,
    signal: PeerSignal,
) -> Step {
    let chars = peer_session.chars().count();
    if chars == 0 || chars > MAX_PEER_SESSION_CHARS || peer_session.chars().any(char::is_control) {
        return Step::Reply(ServerMessage::error(
            ErrorCode::InvalidMessage,
            format!(
                "peer_signal session must be 1 to {MAX_PEER_SESSION_CHARS} characters without \
                 control characters"
            ),
        ));
    }
    if to == session.participant_id.as_str() {
        return Step::Reply(ServerMessage::error(
            ErrorCode::InvalidMessage,
            "peer_signal is addressed to the sender itself; set `to` to another participant's id",
        ));
    }
    Step::Store(StoreRequest::PeerSignal {
        to: ParticipantId::from_string(to),
        session: peer_session,
        signal,
    })
}

fn metadata_step(
    session: &SessionIdentity,
    scope: MetadataScope,
    participant_id: Option<String>,
    metadata: String,
) -> Step {
    if metadata.len() > MAX_METADATA_BYTES {
        return Step::Reply(ServerMessage::error(
            ErrorCode::TextTooLong,
            format!(
                "metadata is {} bytes, the maximum is {MAX_METADATA_BYTES}",
                metadata.len()
            ),
        ));
    }
    let admin = session.grants.room_admin;
    match scope {
        MetadataScope::Room if !admin => denied("room_admin", "change the room's metadata"),
        MetadataScope::Room => Step::Store(StoreRequest::RoomMetadata(metadata)),
        MetadataScope::Participant => {
            let target = participant_id.map_or_else(
                || session.participant_id.clone(),
                ParticipantId::from_string,
            );
            if target != session.participant_id && !admin {
                return denied("room_admin", "change another participant's metadata");
            }
            Step::Store(StoreRequest::ParticipantMetadata(target, metadata))
        }
    }
}

/// Picks the display name of a join: the token's when it has one, else the message's.
pub(crate) fn display_name(
    from_message: String,
    from_token: Option<String>,
) -> Result<DisplayName, NameError> {
    let name = match from_token {
        Some(name) if !name.is_empty() => name,
        _ => from_message,
    };
    DisplayName::parse(name)
}

/// Reason a transport stopped carrying its session, as its driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransportEnd {
    /// The client sent a close frame.
    ClientClosed,
    /// The connection failed or the client went away without a close frame.
    Disconnected,
    /// Nothing arrived from the client within the ping timeout.
    PingTimeout,
    /// A client message was larger than the limit.
    MessageTooLarge,
    /// The client kept sending over the message rate limit.
    RateLimited,
}

impl fmt::Display for TransportEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            TransportEnd::ClientClosed => "client closed the connection",
            TransportEnd::Disconnected => "connection lost",
            TransportEnd::PingTimeout => "no reply to pings",
            TransportEnd::MessageTooLarge => "message too large",
            TransportEnd::RateLimited => "message rate limit exceeded",
        };
        f.write_str(reason)
    }
}

/// Reason a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The client sent `leave`.
    Left,
    /// A client message was larger than the limit.
    MessageTooLarge,
    /// The server is shutting down.
    Shutdown,
    /// No connection resumed the session within the grace period.
    GraceExpired,
    /// A resume found messages missing, so the client has to join again.
    ResumeFailed,
    /// A new join with the same identity took the session's place in the room.
    Replaced,
}

impl SessionEnd {
    /// Returns the `error` message to send before the close frame, if any.
    pub(crate) fn farewell(self) -> Option<ServerMessage> {
        match self {
            SessionEnd::MessageTooLarge => Some(ServerMessage::error(
                ErrorCode::MessageTooLarge,
                "message is larger than the server's limit, closing the connection",
            )),
            SessionEnd::Shutdown => Some(ServerMessage::error(
                ErrorCode::ServerShutdown,
                "server is shutting down, reconnect later",
            )),
            SessionEnd::Replaced => Some(ServerMessage::error(
                ErrorCode::Replaced,
                "a new join with the same identity replaced this session",
            )),
            _ => None,
        }
    }

    /// Returns the close code the server sends, or `None` when the connection is already gone
    /// or the client started the close handshake.
    pub(crate) fn close_code(self) -> Option<CloseCode> {
        match self {
            SessionEnd::Left => Some(CloseCode::Normal),
            SessionEnd::MessageTooLarge => Some(CloseCode::MessageTooBig),
            SessionEnd::Shutdown => Some(CloseCode::GoingAway),
            SessionEnd::Replaced => Some(CloseCode::Replaced),
            SessionEnd::GraceExpired | SessionEnd::ResumeFailed => None,
        }
    }
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            SessionEnd::Left => "client left",
            SessionEnd::MessageTooLarge => "message too large",
            SessionEnd::Shutdown => "server shutdown",
            SessionEnd::GraceExpired => "no resume within the grace period",
            SessionEnd::ResumeFailed => "resume found messages missing",
            SessionEnd::Replaced => "replaced by a new join with the same identity",
        };
        f.write_str(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(room: &str, name: &str) -> ClientMessage {
        ClientMessage::Join {
            room: room.into(),
            name: name.into(),
            token: None,
            identity: None,
        }
    }

    fn error_code(reply: &ServerMessage) -> Option<ErrorCode> {
        match reply {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn unbound_error(step: Unbound) -> Option<ErrorCode> {
        match step {
            Unbound::Reply(reply) => error_code(&reply),
            _ => None,
        }
    }

    fn room() -> RoomName {
        RoomName::parse("demo".into()).unwrap()
    }

    fn session(grants: Grants) -> SessionIdentity {
        SessionIdentity {
            room: room(),
            participant_id: ParticipantId::from_string("me".into()),
            grants,
        }
    }

    fn step_error(step: Step) -> Option<ErrorCode> {
        match step {
            Step::Reply(reply) => error_code(&reply),
            _ => None,
        }
    }

    fn set_metadata(scope: MetadataScope, participant_id: Option<&str>) -> ClientMessage {
        ClientMessage::SetMetadata {
            scope,
            participant_id: participant_id.map(Into::into),
            metadata: "m".into(),
        }
    }

    #[test]
    fn missing_grants_are_permission_denied() {
        let none = session(Grants::default());
        let denied = [
            ClientMessage::Offer { sdp: "o".into() },
            ClientMessage::Candidate {
                target: Target::Publisher,
                candidate: Candidate::default(),
            },
            ClientMessage::Chat { text: "hi".into() },
            peer_signal("other", "s1"),
            set_metadata(MetadataScope::Room, None),
            set_metadata(MetadataScope::Participant, Some("other")),
        ];
        for message in denied {
            let step = joined_step(&none, message.clone());
            assert_eq!(
                step_error(step),
                Some(ErrorCode::PermissionDenied),
                "{message:?}"
            );
        }
        let own = joined_step(&none, set_metadata(MetadataScope::Participant, None));
        assert_eq!(
            own,
            Step::Store(StoreRequest::ParticipantMetadata(
                ParticipantId::from_string("me".into()),
                "m".into()
            ))
        );
    }

    fn peer_signal(to: &str, session: &str) -> ClientMessage {
        ClientMessage::PeerSignal {
            to: to.into(),
            session: session.into(),
            signal: PeerSignal::Offer { sdp: "o".into() },
        }
    }

    #[test]
    fn peer_signal_goes_to_the_store() {
        let step = joined_step(&session(Grants::ALL), peer_signal("other", "s1"));
        assert_eq!(
            step,
            Step::Store(StoreRequest::PeerSignal {
                to: ParticipantId::from_string("other".into()),
                session: "s1".into(),
                signal: PeerSignal::Offer { sdp: "o".into() },
            })
        );
    }

    #[test]
    fn bad_peer_signals_are_invalid_message() {
        let long = "s".repeat(MAX_PEER_SESSION_CHARS + 1);
        let cases = [
            peer_signal("other", ""),
            peer_signal("other", &long),
            peer_signal("other", "a\nb"),
            peer_signal("me", "s1"),
        ];
        for message in cases {
            let step = joined_step(&session(Grants::ALL), message.clone());
            assert_eq!(
                step_error(step),
                Some(ErrorCode::InvalidMessage),
                "{message:?}"
            );
        }
    }

    #[test]
    fn room_admin_sets_any_metadata() {
        let admin = session(Grants {
            room_admin: true,
            ..Grants::default()
        });
        assert_eq!(
            joined_step(&admin, set_metadata(MetadataScope::Room, None)),
            Step::Store(StoreRequest::RoomMetadata("m".into()))
        );
        assert_eq!(
            joined_step(
                &admin,
                set_metadata(MetadataScope::Participant, Some("other"))
            ),
            Step::Store(StoreRequest::ParticipantMetadata(
                ParticipantId::from_string("other".into()),
                "m".into()
            ))
        );
    }

    #[test]
    fn long_chat_and_metadata_are_text_too_long() {
        let all = session(Grants::ALL);
        let chat = ClientMessage::Chat {
            text: "x".repeat(MAX_CHAT_BYTES + 1),
        };
        assert_eq!(
            step_error(joined_step(&all, chat)),
            Some(ErrorCode::TextTooLong)
        );
        let metadata = ClientMessage::SetMetadata {
            scope: MetadataScope::Room,
            participant_id: None,
            metadata: "x".repeat(MAX_METADATA_BYTES + 1),
        };
        assert_eq!(
            step_error(joined_step(&all, metadata)),
            Some(ErrorCode::TextTooLong)
        );
        let empty = ClientMessage::Chat {
            text: String::new(),
        };
        assert_eq!(
            step_error(joined_step(&all, empty)),
            Some(ErrorCode::InvalidMessage)
        );
    }

    #[test]
    fn valid_join_asks_driver_to_join() {
        let step = unbound_step(join("demo", "Ada"));
        assert_eq!(
            step,
            Unbound::Join(JoinRequest {
                room: room(),
                name: "Ada".into(),
                token: None,
                identity: None,
            })
        );
    }

    #[test]
    fn bad_room_names_are_invalid_name() {
        let long = "x".repeat(1000);
        for room in ["", long.as_str(), "a\nb"] {
            let step = unbound_step(join(room, "Ada"));
            assert_eq!(
                unbound_error(step),
                Some(ErrorCode::InvalidName),
                "{room:?}"
            );
        }
    }

    #[test]
    fn bad_display_names_are_invalid_name() {
        let long = "x".repeat(1000);
        for name in ["", long.as_str()] {
            let error = display_name(name.into(), None).unwrap_err();
            let reply = ServerMessage::error(ErrorCode::InvalidName, error.to_string());
            assert_eq!(error_code(&reply), Some(ErrorCode::InvalidName), "{name:?}");
        }
    }

    #[test]
    fn token_name_wins_over_message_name() {
        let name = display_name("Ada".into(), Some("Grace".into())).unwrap();
        assert_eq!(name.as_str(), "Grace");
        let name = display_name("Ada".into(), Some(String::new())).unwrap();
        assert_eq!(name.as_str(), "Ada");
    }

    #[test]
    fn messages_before_join_are_not_joined() {
        let messages = [
            ClientMessage::Offer { sdp: "v=0".into() },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Candidate {
                target: Target::Publisher,
                candidate: Candidate::default(),
            },
            ClientMessage::Ack { seq: 1 },
        ];
        for message in messages {
            assert_eq!(
                unbound_error(unbound_step(message)),
                Some(ErrorCode::NotJoined)
            );
        }
    }

    #[test]
    fn resume_before_join_asks_driver_to_resume() {
        let step = unbound_step(ClientMessage::Resume {
            token: "t".into(),
            last_seq: 3,
        });
        assert_eq!(
            step,
            Unbound::Resume {
                token: "t".into(),
                last_seq: 3
            }
        );
    }

    #[test]
    fn second_join_is_already_joined() {
        let Step::Reply(reply) = joined_step(&session(Grants::ALL), join("other", "Ada")) else {
            panic!("expected a reply");
        };
        assert_eq!(error_code(&reply), Some(ErrorCode::AlreadyJoined));
    }

    #[test]
    fn joined_session_forwards_negotiation() {
        let cases = [
            (
                ClientMessage::Offer { sdp: "o".into() },
                SfuRequest::PublishOffer("o".into()),
            ),
            (
                ClientMessage::Answer { sdp: "a".into() },
                SfuRequest::SubscriberAnswer("a".into()),
            ),
            (
                ClientMessage::Candidate {
                    target: Target::Subscriber,
                    candidate: Candidate::default(),
                },
                SfuRequest::Candidate(Target::Subscriber, Candidate::default()),
            ),
        ];
        for (message, request) in cases {
            assert_eq!(
                joined_step(&session(Grants::ALL), message),
                Step::Forward(request)
            );
        }
    }

    #[test]
    fn ack_and_leave_in_joined_session() {
        assert_eq!(
            joined_step(&session(Grants::ALL), ClientMessage::Ack { seq: 5 }),
            Step::Ack(5)
        );
        assert_eq!(
            joined_step(&session(Grants::ALL), ClientMessage::Leave),
            Step::Leave
        );
        assert_eq!(unbound_step(ClientMessage::Leave), Unbound::Leave);
    }

    #[test]
    fn session_end_close_codes() {
        let cases = [
            (SessionEnd::Left, Some(1000), None),
            (
                SessionEnd::MessageTooLarge,
                Some(1009),
                Some(ErrorCode::MessageTooLarge),
            ),
            (
                SessionEnd::Shutdown,
                Some(1001),
                Some(ErrorCode::ServerShutdown),
            ),
            (SessionEnd::GraceExpired, None, None),
            (SessionEnd::ResumeFailed, None, None),
            (SessionEnd::Replaced, Some(4003), Some(ErrorCode::Replaced)),
        ];
        for (end, code, farewell) in cases {
            assert_eq!(end.close_code().map(CloseCode::code), code, "{end}");
            let farewell_code = end.farewell().map(|message| match message {
                ServerMessage::Error { code, .. } => code,
                other => panic!("farewell {other:?} is not an error"),
            });
            assert_eq!(farewell_code, farewell, "{end}");
        }
    }
}
