//! Error codes carried by `error` messages and WebSocket close frames.

use serde::{Deserialize, Serialize};

/// Machine-readable code of an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, or is binary.
    InvalidJson,
    /// The `type` field is missing or names no known message.
    UnknownType,
    /// The message has the right `type` but a missing or malformed field.
    InvalidMessage,
    /// A message other than `join` arrived before `join`.
    NotJoined,
    /// A second `join` arrived on a joined connection.
    AlreadyJoined,
    /// The room or display name is empty or too long.
    InvalidName,
    /// An SDP could not be parsed or was the wrong type.
    InvalidSdp,
    /// The SDP parsed but could not be applied (for example an answer with no offer pending).
    NegotiationFailed,
    /// A candidate could not be parsed or applied.
    InvalidCandidate,
    /// Too many candidates arrived before the description they belong to.
    TooManyCandidates,
    /// The message was larger than the limit; the connection closes with 1009.
    MessageTooLarge,
    /// The client did not read fast enough and its outgoing queue filled; the connection closes.
    SlowConsumer,
    /// The server is shutting down; the connection closes with 1001.
    ServerShutdown,
    /// A fault inside the server; the request had no effect.
    InternalError,
    /// No session has the given resume token: it ended or never existed. Join again.
    SessionNotFound,
    /// A participant with the same identity is in the room, and the server rejects duplicates.
    DuplicateIdentity,
    /// A new join with the same identity replaced this session; the connection closes with 4003.
    Replaced,
    /// The join token is malformed or names an algorithm other than HS256.
    InvalidToken,
    /// The join token's `kid` names no configured API key.
    UnknownApiKey,
    /// The join token's signature does not match its API key's secret.
    InvalidSignature,
    /// The join token's `exp` has passed, or its `nbf` has not come yet.
    TokenExpired,
    /// The join token is for another room.
    WrongRoom,
    /// The join has no token and the server is not in development mode.
    TokenRequired,
    /// The participant's grants do not allow the request.
    PermissionDenied,
    /// The connection sent more messages per second than allowed; the message was dropped.
    RateLimited,
    /// The room has the maximum number of participants.
    RoomFull,
    /// The server has the maximum number of rooms and the join would create one.
    TooManyRooms,
    /// The request names a participant that is not in the room.
    ParticipantNotFound,
    /// A chat text or metadata value is longer than the limit.
    TextTooLong,
    /// HTTP only: the request's `Origin` is not in the server's list of allowed origins.
    OriginNotAllowed,
}

impl ErrorCode {
    /// Returns the code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::NegotiationFailed => "negotiation_failed",
            ErrorCode::InvalidCandidate => "invalid_candidate",
            ErrorCode::TooManyCandidates => "too_many_candidates",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ServerShutdown => "server_shutdown",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::SessionNotFound => "session_not_found",
            ErrorCode::DuplicateIdentity => "duplicate_identity",
            ErrorCode::Replaced => "replaced",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::UnknownApiKey => "unknown_api_key",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::TokenRequired => "token_required",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ParticipantNotFound => "participant_not_found",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
        }
    }
}

/// WebSocket close codes the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the client sent `leave`.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1009: a message was over the size limit.
    MessageTooBig,
    /// 4008: the client's outgoing queue filled because it stopped reading.
    SlowConsumer,
    /// 4001: another connection resumed the session.
    Superseded,
    /// 4003: a new join with the same identity replaced the session.
    Replaced,
    /// 4029: the client went on sending over the message rate limit.
    RateLimited,
}

impl CloseCode {
    /// Returns the numeric close code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::MessageTooBig => 1009,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Superseded => 4001,
            CloseCode::Replaced => 4003,
            CloseCode::RateLimited => 4029,
        }
    }
}
