//! Signaling messages exchanged between a Switchyard client and server.
//!
//! Every message is one JSON text frame with a `type` field naming the variant in `snake_case`.
//! Field names are `camelCase`, so ICE candidates have the same shape as the browser's
//! `RTCIceCandidate.toJSON()`. `docs/protocol.md` describes the sequences and the error codes.
//!
//! Each participant has two peer connections with the server:
//! - the **publisher** connection carries the participant's own media to the server. The client
//!   always makes the offer on it and the server answers.
//! - the **subscriber** connection carries everyone else's media to the participant. The server
//!   always makes the offer on it and the client answers.

use serde::{Deserialize, Serialize};

mod error;
pub use error::{CloseCode, ErrorCode};

#[cfg(feature = "schema")]
pub mod schema;

/// Peer connection that an SDP or a candidate belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Connection carrying the participant's media to the server; the client offers.
    #[default]
    Publisher,
    /// Connection carrying other participants' media to the client; the server offers.
    Subscriber,
}

/// ICE candidate in the browser's `RTCIceCandidateInit` shape.
///
/// An empty `candidate` string means end-of-candidates for that connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Candidate attribute as RFC 8839 section 5.1 defines it, without the `a=` prefix.
    pub candidate: String,
    /// Media id of the m-section the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the m-section the candidate belongs to.
    #[serde(
        default,
        rename = "sdpMLineIndex",
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// ICE username fragment of the session the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl Candidate {
    /// Returns true when this is the end-of-candidates marker.
    pub fn is_end_of_candidates(&self) -> bool {
        self.candidate.trim().is_empty()
    }
}

/// Member of a room as other participants see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    /// Server-assigned id, unique for one join. Also the media stream id of the participant's
    /// tracks on every subscriber connection.
    pub id: String,
    /// Display name given at join.
    pub name: String,
    /// Application-defined metadata, empty until set with `set_metadata`. Left out of the JSON
    /// when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

/// STUN or TURN server for the browser's `RTCConfiguration.iceServers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Media kind of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Audio track.
    Audio,
    /// Video track.
    Video,
}

/// What a `set_metadata` request changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetadataScope {
    /// A participant's metadata: the sender's own, or another's with the room admin grant.
    #[default]
    Participant,
    /// The room's metadata; needs the room admin grant.
    Room,
}

/// Description or ICE candidate of a peer-to-peer connection between two participants, which
/// the server relays without reading it. The JSON object names the variant in `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum PeerSignal {
    /// SDP offer that opens or replaces the connection.
    Offer {
        /// Session description.
        sdp: String,
    },
    /// SDP answer to the offer of the same session.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// Trickled ICE candidate, or end-of-candidates when `candidate` is empty.
    Candidate {
        /// The candidate.
        #[serde(flatten)]
        candidate: Candidate,
    },
}

/// Message from a client to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// Enter a room. Must be the first message on a connection.
    Join {
        /// Room name; created on first join.
        room: String,
        /// Display name shown to the others. May be empty when the join token carries one.
        #[serde(default)]
        name: String,
        /// Join token (a JWT signed with an API key's secret). Optional only in development
        /// mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Identity for duplicate detection when joining without a token. A token's identity
        /// takes precedence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
    },
    /// Attach this connection to an existing session after the previous one dropped.
    Resume {
        /// Resume token from `joined`.
        token: String,
        /// Sequence number of the last server message the client received.
        last_seq: u64,
    },
    /// Cumulative acknowledgement: every server message up to and including `seq` arrived.
    /// Gets no response.
    Ack {
        /// Highest sequence number received without a gap.
        seq: u64,
    },
    /// SDP offer for the publisher connection.
    Offer {
        /// Session description.
        sdp: String,
    },
    /// SDP answer to the server's latest subscriber offer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// Trickled ICE candidate, or end-of-candidates when `candidate` is empty.
    Candidate {
        /// Connection the candidate belongs to; `publisher` when absent.
        #[serde(default)]
        target: Target,
        /// The candidate.
        #[serde(flatten)]
        candidate: Candidate,
    },
    /// Leave the room; the server closes the connection afterwards.
    Leave,
    /// Set the room's or a participant's metadata.
    SetMetadata {
        /// Room or participant metadata; `participant` when absent.
        #[serde(default)]
        scope: MetadataScope,
        /// Participant whose metadata changes; the sender when absent. Ignored for `room`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<String>,
        /// New metadata, replacing the old value.
        metadata: String,
    },
    /// Send a chat message to everyone in the room, the sender included.
    Chat {
        /// Message text.
        text: String,
    },
    /// Relay a peer-to-peer offer, answer or candidate to one other participant of the room.
    PeerSignal {
        /// Id of the participant that gets the signal.
        to: String,
        /// Id of the peer connection the signal belongs to, chosen by the side that offers it:
        /// 1 to 64 characters without control characters.
        session: String,
        /// The offer, answer or candidate.
        signal: PeerSignal,
    },
}

/// A client message as sent on the wire: the message and, for requests, the request id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientFrame {
    /// Request id chosen by the client, echoed in the response's `requestId`. A retried
    /// request with the same id is executed at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The message.
    #[serde(flatten)]
    pub message: ClientMessage,
}

impl ClientFrame {
    /// Wraps a message with a request id.
    pub fn request(id: impl Into<String>, message: ClientMessage) -> Self {
        ClientFrame {
            id: Some(id.into()),
            message,
        }
    }
}

/// Message from the server to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// Reply to `join`.
    Joined {
        /// Room that was joined.
        room: String,
        /// Id assigned to this participant.
        participant_id: String,
        /// Participants already in the room, without the new one.
        participants: Vec<ParticipantInfo>,
        /// ICE servers for both peer connections.
        ice_servers: Vec<IceServer>,
        /// Secret that lets a new connection take over this session with `resume`.
        #[serde(default)]
        resume_token: String,
        /// The room's metadata, empty until set. Left out of the JSON when empty.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        room_metadata: String,
        /// Largest file in bytes that clients offer to each other in a peer-to-peer file
        /// transfer. The server never sees the files, so the clients enforce it.
        #[serde(default)]
        max_file_size: u64,
    },
    /// Reply to `resume`. When `resumed` is true, the messages after the client's `lastSeq`
    /// follow in order. When false, the session is gone or messages were lost, and the client
    /// must join again.
    Resumed {
        /// Whether the session continues on this connection.
        resumed: bool,
        /// Sequence number of the last message the server has sent in this session, 0 when
        /// `resumed` is false.
        last_seq: u64,
    },
    /// Success reply to a request that has no other reply.
    Ok,
    /// Another participant entered the room.
    ParticipantJoined {
        /// The new participant.
        participant: ParticipantInfo,
    },
    /// Another participant left the room or was disconnected.
    ParticipantLeft {
        /// Id of the participant that left.
        participant_id: String,
    },
    /// Answer to the client's publisher offer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// Offer for the subscriber connection; the client replies with `answer`.
    Offer {
        /// Session description.
        sdp: String,
    },
    /// Server ICE candidate, or end-of-candidates when `candidate` is empty.
    Candidate {
        /// Connection the candidate belongs to.
        target: Target,
        /// The candidate.
        #[serde(flatten)]
        candidate: Candidate,
    },
    /// A track of another participant was added to this participant's subscriber connection.
    /// Sent before the offer that carries it.
    TrackAdded {
        /// Publishing participant; also the track's media stream id.
        participant_id: String,
        /// Track id as it appears in the subscriber SDP's `a=msid`.
        track_id: String,
        /// Audio or video.
        kind: TrackKind,
    },
    /// A track was removed from the subscriber connection because its publisher left or its
    /// connection failed. Sent before the offer that removes it.
    TrackRemoved {
        /// Publishing participant.
        participant_id: String,
        /// Track id that ended.
        track_id: String,
    },
    /// The room's metadata changed.
    RoomMetadata {
        /// New metadata.
        metadata: String,
    },
    /// A participant's metadata changed.
    ParticipantMetadata {
        /// Participant whose metadata changed.
        participant_id: String,
        /// New metadata.
        metadata: String,
    },
    /// A chat message sent to the room.
    Chat {
        /// Id of the sending participant.
        from: String,
        /// Message text.
        text: String,
        /// Time the server received it, in milliseconds since the Unix epoch.
        ts: u64,
    },
    /// A peer-to-peer offer, answer or candidate that another participant addressed to this
    /// one.
    PeerSignal {
        /// Id of the sending participant.
        from: String,
        /// Id of the peer connection the signal belongs to, as the sender gave it.
        session: String,
        /// The offer, answer or candidate.
        signal: PeerSignal,
    },
    /// A request failed; the connection stays open unless a close frame follows.
    Error {
        /// Stable machine-readable code; see [`ErrorCode`].
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// A server message as sent on the wire, with its delivery fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServerFrame {
    /// Sequence number within the session, starting at 1 with `joined`. Absent on messages
    /// sent before `joined` and on `resumed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Id of the request this message replies to.
    #[serde(default, rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerFrame {
    /// Wraps a message that replies to no request.
    pub fn event(message: ServerMessage) -> Self {
        ServerFrame {
            seq: None,
            request_id: None,
            message,
        }
    }

    /// Wraps the reply to the request with id `request_id`, if it had one.
    pub fn reply(request_id: Option<String>, message: ServerMessage) -> Self {
        ServerFrame {
            seq: None,
            request_id,
            message,
        }
    }
}

impl ServerMessage {
    /// Builds an `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
