//! Session state machine: what each client message means before and after `join`, and how a
//! session ends. It performs no I/O, and [`crate::connection`] carries out the returned
//! [`Step`]s.

use std::fmt;

use switchyard_proto::{Candidate, ClientMessage, CloseCode, ErrorCode, ServerMessage, Target};

use crate::names::{DisplayName, ParticipantId, RoomName};

/// Stage of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Connected, accepting only `join` and `leave`.
    AwaitingJoin,
    /// Member of a room.
    Joined {
        room: RoomName,
        participant_id: ParticipantId,
    },
}

/// State of one client connection.
#[derive(Debug)]
pub(crate) struct Session {
    phase: Phase,
}

/// Action the connection driver takes for one client message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this message, usually an `error`, to the client.
    Reply(ServerMessage),
    /// Enter the room, then call [`Session::joined`].
    Join { room: RoomName, name: DisplayName },
    /// Pass a request on to the SFU.
    Forward {
        participant_id: ParticipantId,
        request: SfuRequest,
    },
    /// End the session with close code 1000.
    Leave,
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

impl Session {
    pub(crate) fn new() -> Self {
        Session {
            phase: Phase::AwaitingJoin,
        }
    }

    /// Decides what a decoded client message leads to.
    pub(crate) fn handle(&self, message: ClientMessage) -> Step {
        match (&self.phase, message) {
            (_, ClientMessage::Leave) => Step::Leave,

            (Phase::AwaitingJoin, ClientMessage::Join { room, name }) => validate_join(room, name),
            (Phase::AwaitingJoin, _) => Step::Reply(ServerMessage::error(
                ErrorCode::NotJoined,
                "send `join` before any other message",
            )),

            (Phase::Joined { room, .. }, ClientMessage::Join { .. }) => {
                Step::Reply(ServerMessage::error(
                    ErrorCode::AlreadyJoined,
                    format!(
                        "this connection has already joined room {:?}",
                        room.as_str()
                    ),
                ))
            }
            (Phase::Joined { participant_id, .. }, ClientMessage::Offer { sdp }) => {
                forward(participant_id, SfuRequest::PublishOffer(sdp))
            }
            (Phase::Joined { participant_id, .. }, ClientMessage::Answer { sdp }) => {
                forward(participant_id, SfuRequest::SubscriberAnswer(sdp))
            }
            (
                Phase::Joined { participant_id, .. },
                ClientMessage::Candidate { target, candidate },
            ) => forward(participant_id, SfuRequest::Candidate(target, candidate)),
        }
    }

    /// Records that the room store accepted the join.
    pub(crate) fn joined(&mut self, room: RoomName, participant_id: ParticipantId) {
        self.phase = Phase::Joined {
            room,
            participant_id,
        };
    }

    /// Returns the room and participant id once joined.
    pub(crate) fn membership(&self) -> Option<(&RoomName, &ParticipantId)> {
        match &self.phase {
            Phase::AwaitingJoin => None,
            Phase::Joined {
                room,
                participant_id,
            } => Some((room, participant_id)),
        }
    }
}

fn validate_join(room: String, name: String) -> Step {
    let names = RoomName::parse(room).and_then(|room| Ok((room, DisplayName::parse(name)?)));
    match names {
        Ok((room, name)) => Step::Join { room, name },
        Err(error) => Step::Reply(ServerMessage::error(
            ErrorCode::InvalidName,
            error.to_string(),
        )),
    }
}

fn forward(participant_id: &ParticipantId, request: SfuRequest) -> Step {
    Step::Forward {
        participant_id: participant_id.clone(),
        request,
    }
}

/// Reason a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The client sent `leave`.
    Left,
    /// The client sent a close frame.
    ClientClosed,
    /// The connection failed or the client went away without a close frame.
    Disconnected,
    /// A client message was larger than the limit.
    MessageTooLarge,
    /// The client's outbound queue was full.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
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
            _ => None,
        }
    }

    /// Returns the close code the server sends, or `None` when the connection is already gone
    /// or the client started the close handshake.
    pub(crate) fn close_code(self) -> Option<CloseCode> {
        match self {
            SessionEnd::Left => Some(CloseCode::Normal),
            SessionEnd::MessageTooLarge => Some(CloseCode::MessageTooBig),
            SessionEnd::SlowConsumer => Some(CloseCode::SlowConsumer),
            SessionEnd::Shutdown => Some(CloseCode::GoingAway),
            SessionEnd::ClientClosed | SessionEnd::Disconnected => None,
        }
    }
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            SessionEnd::Left => "client left",
            SessionEnd::ClientClosed => "client closed the connection",
            SessionEnd::Disconnected => "connection lost",
            SessionEnd::MessageTooLarge => "message too large",
            SessionEnd::SlowConsumer => "slow consumer",
            SessionEnd::Shutdown => "server shutdown",
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
        }
    }

    fn error_code(step: &Step) -> Option<ErrorCode> {
        match step {
            Step::Reply(ServerMessage::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }

    fn joined_session() -> (Session, ParticipantId) {
        let mut session = Session::new();
        let id = ParticipantId::from_string("p1".into());
        session.joined(RoomName::parse("demo".into()).unwrap(), id.clone());
        (session, id)
    }

    #[test]
    fn valid_join_asks_driver_to_join() {
        let step = Session::new().handle(join("demo", "Ada"));
        assert_eq!(
            step,
            Step::Join {
                room: RoomName::parse("demo".into()).unwrap(),
                name: DisplayName::parse("Ada".into()).unwrap(),
            }
        );
    }

    #[test]
    fn bad_names_are_invalid_name() {
        let session = Session::new();
        let long = "x".repeat(1000);
        for (room, name) in [("", "Ada"), ("demo", ""), ("demo", long.as_str())] {
            let step = session.handle(join(room, name));
            assert_eq!(
                error_code(&step),
                Some(ErrorCode::InvalidName),
                "{room:?} {name:?}"
            );
        }
    }

    #[test]
    fn messages_before_join_are_not_joined() {
        let session = Session::new();
        let messages = [
            ClientMessage::Offer { sdp: "v=0".into() },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Candidate {
                target: Target::Publisher,
                candidate: Candidate::default(),
            },
        ];
        for message in messages {
            let step = session.handle(message);
            assert_eq!(error_code(&step), Some(ErrorCode::NotJoined));
        }
    }

    #[test]
    fn second_join_is_already_joined() {
        let (session, _) = joined_session();
        let step = session.handle(join("other", "Ada"));
        assert_eq!(error_code(&step), Some(ErrorCode::AlreadyJoined));
    }

    #[test]
    fn joined_session_forwards_negotiation() {
        let (session, id) = joined_session();
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
                session.handle(message),
                Step::Forward {
                    participant_id: id.clone(),
                    request,
                }
            );
        }
    }

    #[test]
    fn leave_ends_session_in_any_phase() {
        assert_eq!(Session::new().handle(ClientMessage::Leave), Step::Leave);
        let (session, _) = joined_session();
        assert_eq!(session.handle(ClientMessage::Leave), Step::Leave);
    }

    #[test]
    fn membership_is_set_by_joined() {
        assert!(Session::new().membership().is_none());
        let (session, id) = joined_session();
        let (room, participant_id) = session.membership().unwrap();
        assert_eq!(room.as_str(), "demo");
        assert_eq!(participant_id, &id);
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
            (SessionEnd::SlowConsumer, Some(4008), None),
            (
                SessionEnd::Shutdown,
                Some(1001),
                Some(ErrorCode::ServerShutdown),
            ),
            (SessionEnd::ClientClosed, None, None),
            (SessionEnd::Disconnected, None, None),
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
