//! Room membership and room events behind the [`RoomStore`] trait.
//!
//! The session handlers only call [`RoomStore::join`] and [`RoomStore::leave`]. The store keeps
//! the rosters and delivers `participant_joined` and `participant_left` to the members'
//! [`RoomEventSender`]s, so a store shared between several servers (for example one backed by
//! Redis, with pub/sub for the events) can replace [`MemoryRoomStore`] without changes to the
//! handlers.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use switchyard_proto::{ParticipantInfo, PeerSignal, ServerMessage};
use tokio::sync::mpsc;

use crate::names::{ParticipantId, RoomName};

mod memory;
pub use memory::MemoryRoomStore;

/// Change in a room's membership, delivered to every other member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    /// A participant entered the room.
    ParticipantJoined(ParticipantInfo),
    /// A participant left the room or was disconnected.
    ParticipantLeft(ParticipantId),
    /// Sent only to the member itself: a new join with its identity took its place, and the
    /// others were told that it left.
    Replaced,
    /// The room's metadata changed. Sent to every member.
    RoomMetadata(String),
    /// A member's metadata changed. Sent to every member.
    ParticipantMetadata(ParticipantId, String),
    /// A chat message. Sent to every member, the sender included.
    Chat {
        /// Sender.
        from: ParticipantId,
        /// Message text.
        text: String,
        /// Time the server received it, in milliseconds since the Unix epoch.
        ts: u64,
    },
    /// A peer-to-peer signal. Sent only to the member it is addressed to.
    PeerSignal {
        /// Sender.
        from: ParticipantId,
        /// Peer connection id chosen by the sender.
        session: String,
        /// The offer, answer or candidate.
        signal: PeerSignal,
    },
}

impl RoomEvent {
    /// Returns the message the client gets for this event, or `None` for [`RoomEvent::Replaced`],
    /// which ends the session instead.
    pub fn into_message(self) -> Option<ServerMessage> {
        match self {
            RoomEvent::ParticipantJoined(participant) => {
                Some(ServerMessage::ParticipantJoined { participant })
            }
            RoomEvent::ParticipantLeft(id) => Some(ServerMessage::ParticipantLeft {
                participant_id: id.as_str().to_owned(),
            }),
            RoomEvent::Replaced => None,
            RoomEvent::RoomMetadata(metadata) => Some(ServerMessage::RoomMetadata { metadata }),
            RoomEvent::ParticipantMetadata(id, metadata) => {
                Some(ServerMessage::ParticipantMetadata {
                    participant_id: id.as_str().to_owned(),
                    metadata,
                })
            }
            RoomEvent::Chat { from, text, ts } => Some(ServerMessage::Chat {
                from: from.as_str().to_owned(),
                text,
                ts,
            }),
            RoomEvent::PeerSignal {
                from,
                session,
                signal,
            } => Some(ServerMessage::PeerSignal {
                from: from.as_str().to_owned(),
                session,
                signal,
            }),
        }
    }
}

/// What a join does when a member with the same identity is already in the room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateIdentity {
    /// Remove the old member and add the new one in one step: the others see one leave and
    /// one join.
    #[default]
    Replace,
    /// Reject the new join with `duplicate_identity`.
    Reject,
}

/// Rules a join must pass besides the room name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinPolicy {
    /// What to do with a member of the same identity.
    pub duplicates: DuplicateIdentity,
    /// Maximum number of members in one room. A replaced member's place counts as free.
    pub max_participants: usize,
    /// Maximum number of rooms. Joining an existing room is never limited by it.
    pub max_rooms: usize,
}

impl Default for JoinPolicy {
    fn default() -> Self {
        JoinPolicy {
            duplicates: DuplicateIdentity::Replace,
            max_participants: usize::MAX,
            max_rooms: usize::MAX,
        }
    }
}

/// A room as a new member finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomSnapshot {
    /// The other members in join order.
    pub others: Vec<ParticipantInfo>,
    /// The room's metadata.
    pub metadata: String,
}

/// Channel on which a store delivers room events to one member's session.
///
/// Unbounded because the session moves each event at once into the client's bounded outbound
/// queue, which is where a slow client is detected.
pub type RoomEventSender = mpsc::UnboundedSender<SharedRoomEvent>;

/// A room event as a store delivers it. Clones share one allocation, so a store sends one
/// event to every member of a room by cloning it, and the sessions encode it as JSON once:
/// the first session to send it stores the encoding here for the others.
#[derive(Clone, Debug)]
pub struct SharedRoomEvent(Arc<SharedInner>);

#[derive(Debug)]
struct SharedInner {
    event: RoomEvent,
    /// JSON object of the event's message without `seq`, and the message's `type`, or `None`
    /// when it has no message or encoding it failed.
    encoded: OnceLock<Option<EncodedEvent>>,
}

/// A room event's message encoded once for all its recipients.
#[derive(Clone, Debug)]
pub(crate) struct EncodedEvent {
    /// The message's `type`, for the sent-message counters.
    pub message_type: &'static str,
    /// JSON object of the message without `seq`.
    pub body: Utf8Bytes,
}

impl SharedRoomEvent {
    /// Wraps an event for delivery to one or more members.
    pub fn new(event: RoomEvent) -> Self {
        SharedRoomEvent(Arc::new(SharedInner {
            event,
            encoded: OnceLock::new(),
        }))
    }

    /// Returns the encoded message, running `encode` if no recipient has encoded it yet.
    pub(crate) fn encoded(
        &self,
        encode: impl FnOnce(&RoomEvent) -> Option<EncodedEvent>,
    ) -> Option<&EncodedEvent> {
        self.0
            .encoded
            .get_or_init(|| encode(&self.0.event))
            .as_ref()
    }
}

impl Deref for SharedRoomEvent {
    type Target = RoomEvent;

    fn deref(&self) -> &RoomEvent {
        &self.0.event
    }
}

impl From<RoomEvent> for SharedRoomEvent {
    fn from(event: RoomEvent) -> Self {
        SharedRoomEvent::new(event)
    }
}

impl PartialEq<RoomEvent> for SharedRoomEvent {
    fn eq(&self, other: &RoomEvent) -> bool {
        self.0.event == *other
    }
}

/// Participant entering a room.
#[derive(Debug)]
pub struct Member {
    /// Id assigned by the server.
    pub id: ParticipantId,
    /// Display name shown to the others.
    pub name: String,
    /// Application-defined metadata shown to the others.
    pub metadata: String,
    /// Identity for duplicate detection, from the join token or the `join` message. Members
    /// without one are never duplicates.
    pub identity: Option<String>,
    /// Channel on which the store delivers the room's events to this member.
    pub events: RoomEventSender,
}

impl Member {
    /// Returns the member as the others see it.
    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.as_str().to_owned(),
            name: self.name.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Failure of a room store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A member with the same identity is in the room and duplicates are rejected.
    #[error("a participant with this identity is already in room {room:?}")]
    DuplicateIdentity {
        /// Room that was joined.
        room: RoomName,
    },
    /// The room has [`JoinPolicy::max_participants`] members.
    #[error("room {room:?} is full")]
    RoomFull {
        /// Room that was joined.
        room: RoomName,
    },
    /// The server has [`JoinPolicy::max_rooms`] rooms and the join would create another.
    #[error("no room {room:?} can be created because the server has the maximum number of rooms")]
    TooManyRooms {
        /// Room that was joined.
        room: RoomName,
    },
    /// No member with this id is in the room.
    #[error("participant {participant_id} is not in room {room:?}")]
    ParticipantNotFound {
        /// Room of the request.
        room: RoomName,
        /// Id that was looked up.
        participant_id: ParticipantId,
    },
    /// A member with this id is already in the room.
    #[error("participant {participant_id} is already in room {room:?}")]
    DuplicateParticipant {
        /// Room that was joined.
        room: RoomName,
        /// Id that is already taken.
        participant_id: ParticipantId,
    },
    /// The backend that stores the rooms failed, for example a lost connection to a shared store.
    #[error("room store failed for room {room:?}")]
    Backend {
        /// Room the operation was for.
        room: RoomName,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Rooms, their members, and delivery of room events to the members.
///
/// A store must announce every change to the other members of the room in the order the
/// changes happen, and announce each participant that leaves exactly once.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Adds `member` to `room`, creating the room if needed, and sends
    /// [`RoomEvent::ParticipantJoined`] to the others. Returns the other members in join order.
    ///
    /// From the moment of the call, `member.events` receives the events of changes that the
    /// returned roster does not include.
    ///
    /// A member with the same [`Member::identity`] is handled by `policy.duplicates`. With
    /// [`DuplicateIdentity::Replace`] the store removes it in the same step, sends it
    /// [`RoomEvent::Replaced`] and the others [`RoomEvent::ParticipantLeft`] for it.
    async fn join(
        &self,
        room: &RoomName,
        member: Member,
        policy: JoinPolicy,
    ) -> Result<RoomSnapshot, StoreError>;

    /// Sets the room's metadata and sends [`RoomEvent::RoomMetadata`] to every member.
    async fn set_room_metadata(&self, room: &RoomName, metadata: String) -> Result<(), StoreError>;

    /// Sets a member's metadata and sends [`RoomEvent::ParticipantMetadata`] to every member.
    async fn set_participant_metadata(
        &self,
        room: &RoomName,
        participant_id: &ParticipantId,
        metadata: String,
    ) -> Result<(), StoreError>;

    /// Sends [`RoomEvent::Chat`] to every member, the sender included.
    async fn chat(
        &self,
        room: &RoomName,
        from: &ParticipantId,
        text: String,
        ts: u64,
    ) -> Result<(), StoreError>;

    /// Sends [`RoomEvent::PeerSignal`] from `from` to the member `to` only. Fails with
    /// [`StoreError::ParticipantNotFound`] when `to` is not in the room.
    async fn peer_signal(
        &self,
        room: &RoomName,
        from: &ParticipantId,
        to: &ParticipantId,
        session: String,
        signal: PeerSignal,
    ) -> Result<(), StoreError>;

    /// Removes a participant from `room` and sends [`RoomEvent::ParticipantLeft`] to the others.
    /// Returns false, and sends nothing, when the participant was not in the room. The room is
    /// deleted when its last member leaves.
    async fn leave(
        &self,
        room: &RoomName,
        participant_id: &ParticipantId,
    ) -> Result<bool, StoreError>;
}
