//! [`RoomStore`] that keeps every room in this process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use switchyard_proto::PeerSignal;

use super::{
    DuplicateIdentity, JoinPolicy, Member, RoomEvent, RoomSnapshot, RoomStore, SharedRoomEvent,
    StoreError,
};
use crate::names::{ParticipantId, RoomName};

/// Rooms of one server process.
///
/// All rooms share one lock. It is held only to update a member list and to push events into
/// unbounded channels, never across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryRoomStore {
    rooms: Mutex<HashMap<RoomName, Room>>,
}

#[derive(Debug, Default)]
struct Room {
    members: Vec<Member>,
    metadata: String,
}

impl MemoryRoomStore {
    /// Creates a store with no rooms.
    pub fn new() -> Self {
        MemoryRoomStore::default()
    }

    /// Returns the number of rooms that have at least one member.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomName, Room>> {
        // Nothing that can panic runs while the lock is held, and every update leaves the map
        // consistent, so the data is still valid if a panic ever poisoned it.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn join(
        &self,
        room: &RoomName,
        member: Member,
        policy: JoinPolicy,
    ) -> Result<RoomSnapshot, StoreError> {
        let mut rooms = self.lock();
        if !rooms.contains_key(room) && rooms.len() >= policy.max_rooms {
            return Err(StoreError::TooManyRooms { room: room.clone() });
        }
        let entry = rooms.entry(room.clone()).or_default();
        let result = admit(room, entry, member, policy);
        if entry.members.is_empty() {
            rooms.remove(room);
        }
        result
    }

    async fn leave(
        &self,
        room: &RoomName,
        participant_id: &ParticipantId,
    ) -> Result<bool, StoreError> {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return Ok(false);
        };
        let members = &mut entry.members;
        let Some(index) = members.iter().position(|m| &m.id == participant_id) else {
            return Ok(false);
        };

        members.remove(index);
        broadcast(members, RoomEvent::ParticipantLeft(participant_id.clone()));
        if members.is_empty() {
            rooms.remove(room);
        }
        Ok(true)
    }

    async fn set_room_metadata(&self, room: &RoomName, metadata: String) -> Result<(), StoreError> {
        let mut rooms = self.lock();
        // A session only calls this while it is a member, so the room exists.
        let Some(entry) = rooms.get_mut(room) else {
            return Ok(());
        };
        entry.metadata.clone_from(&metadata);
        broadcast(&entry.members, RoomEvent::RoomMetadata(metadata));
        Ok(())
    }

    async fn set_participant_metadata(
        &self,
        room: &RoomName,
        participant_id: &ParticipantId,
        metadata: String,
    ) -> Result<(), StoreError> {
        let mut rooms = self.lock();
        let member = rooms
            .get_mut(room)
            .and_then(|entry| entry.members.iter_mut().find(|m| &m.id == participant_id));
        let Some(member) = member else {
            return Err(StoreError::ParticipantNotFound {
                room: room.clone(),
                participant_id: participant_id.clone(),
            });
        };
        member.metadata.clone_from(&metadata);
        let event = RoomEvent::ParticipantMetadata(participant_id.clone(), metadata);
        if let Some(entry) = rooms.get(room) {
            broadcast(&entry.members, event);
        }
        Ok(())
    }

    async fn chat(
        &self,
        room: &RoomName,
        from: &ParticipantId,
        text: String,
        ts: u64,
    ) -> Result<(), StoreError> {
        let rooms = self.lock();
        if let Some(entry) = rooms.get(room) {
            let from = from.clone();
            broadcast(&entry.members, RoomEvent::Chat { from, text, ts });
        }
        Ok(())
    }

    async fn peer_signal(
        &self,
        room: &RoomName,
        from: &ParticipantId,
        to: &ParticipantId,
        session: String,
        signal: PeerSignal,
    ) -> Result<(), StoreError> {
        let rooms = self.lock();
        let member = rooms
            .get(room)
            .and_then(|entry| entry.members.iter().find(|m| &m.id == to));
        let Some(member) = member else {
            return Err(StoreError::ParticipantNotFound {
                room: room.clone(),
                participant_id: to.clone(),
            });
        };
        let event = RoomEvent::PeerSignal {
            from: from.clone(),
            session,
            signal,
        };
        // A closed channel belongs to a session that has ended and is about to call `leave`.
        let _ = member.events.send(event.into());
        Ok(())
    }
}

/// Adds `member` to `room` under `policy`, replacing a member of the same identity.
fn admit(
    name: &RoomName,
    room: &mut Room,
    member: Member,
    policy: JoinPolicy,
) -> Result<RoomSnapshot, StoreError> {
    let members = &mut room.members;
    if members.iter().any(|existing| existing.id == member.id) {
        return Err(StoreError::DuplicateParticipant {
            room: name.clone(),
            participant_id: member.id,
        });
    }
    let duplicate = member.identity.as_ref().and_then(|identity| {
        members
            .iter()
            .position(|existing| existing.identity.as_ref() == Some(identity))
    });
    if duplicate.is_some() && policy.duplicates == DuplicateIdentity::Reject {
        return Err(StoreError::DuplicateIdentity { room: name.clone() });
    }
    if duplicate.is_none() && members.len() >= policy.max_participants {
        return Err(StoreError::RoomFull { room: name.clone() });
    }
    if let Some(index) = duplicate {
        let old = members.remove(index);
        let _ = old.events.send(RoomEvent::Replaced.into());
        broadcast(members, RoomEvent::ParticipantLeft(old.id));
    }

    let others = members.iter().map(Member::info).collect();
    broadcast(members, RoomEvent::ParticipantJoined(member.info()));
    members.push(member);
    Ok(RoomSnapshot {
        others,
        metadata: room.metadata.clone(),
    })
}

/// Sends one shared copy of `event` to every member.
fn broadcast(members: &[Member], event: RoomEvent) {
    let event = SharedRoomEvent::new(event);
    for member in members {
        // A closed channel belongs to a session that has ended and is about to call `leave`.
        let _ = member.events.send(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::ParticipantInfo;
    use tokio::sync::mpsc;

    fn member(id: &str, name: &str) -> (Member, mpsc::UnboundedReceiver<SharedRoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: ParticipantId::from_string(id.into()),
            name: name.into(),
            identity: None,
            metadata: String::new(),
            events,
        };
        (member, receiver)
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name.into()).unwrap()
    }

    fn info(id: &str, name: &str) -> ParticipantInfo {
        ParticipantInfo {
            id: id.into(),
            name: name.into(),
            metadata: String::new(),
        }
    }

    #[tokio::test]
    async fn join_returns_others_in_join_order() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, _ada_events) = member("a", "Ada");
        let (grace, _grace_events) = member("g", "Grace");
        let (lin, _lin_events) = member("l", "Lin");

        assert_eq!(
            store
                .join(&demo, ada, JoinPolicy::default())
                .await
                .unwrap()
                .others,
            vec![]
        );
        assert_eq!(
            store
                .join(&demo, grace, JoinPolicy::default())
                .await
                .unwrap()
                .others,
            vec![info("a", "Ada")]
        );
        assert_eq!(
            store
                .join(&demo, lin, JoinPolicy::default())
                .await
                .unwrap()
                .others,
            vec![info("a", "Ada"), info("g", "Grace")]
        );
    }

    #[tokio::test]
    async fn join_and_leave_are_announced_to_others_only() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, mut ada_events) = member("a", "Ada");
        let (grace, mut grace_events) = member("g", "Grace");
        store.join(&demo, ada, JoinPolicy::default()).await.unwrap();
        store
            .join(&demo, grace, JoinPolicy::default())
            .await
            .unwrap();

        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantJoined(info("g", "Grace"))
        );
        assert!(grace_events.try_recv().is_err());

        let grace_id = ParticipantId::from_string("g".into());
        assert!(store.leave(&demo, &grace_id).await.unwrap());
        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantLeft(grace_id)
        );
        assert!(grace_events.try_recv().is_err());
    }

    #[tokio::test]
    async fn second_leave_announces_nothing() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, mut ada_events) = member("a", "Ada");
        let (grace, _grace_events) = member("g", "Grace");
        store.join(&demo, ada, JoinPolicy::default()).await.unwrap();
        store
            .join(&demo, grace, JoinPolicy::default())
            .await
            .unwrap();
        let _ = ada_events.try_recv();

        let grace_id = ParticipantId::from_string("g".into());
        assert!(store.leave(&demo, &grace_id).await.unwrap());
        assert!(!store.leave(&demo, &grace_id).await.unwrap());
        assert!(ada_events.try_recv().is_ok());
        assert!(ada_events.try_recv().is_err());
    }

    #[tokio::test]
    async fn rooms_are_separate_and_deleted_when_empty() {
        let store = MemoryRoomStore::new();
        let (ada, mut ada_events) = member("a", "Ada");
        let (grace, _grace_events) = member("g", "Grace");
        store
            .join(&room("one"), ada, JoinPolicy::default())
            .await
            .unwrap();
        assert_eq!(
            store
                .join(&room("two"), grace, JoinPolicy::default())
                .await
                .unwrap()
                .others,
            vec![]
        );
        assert!(ada_events.try_recv().is_err());
        assert_eq!(store.room_count(), 2);

        let ada_id = ParticipantId::from_string("a".into());
        assert!(store.leave(&room("one"), &ada_id).await.unwrap());
        assert_eq!(store.room_count(), 1);
    }

    #[tokio::test]
    async fn duplicate_id_is_rejected() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (first, _first_events) = member("a", "Ada");
        let (second, _second_events) = member("a", "Impostor");
        store
            .join(&demo, first, JoinPolicy::default())
            .await
            .unwrap();
        let error = store
            .join(&demo, second, JoinPolicy::default())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::DuplicateParticipant { .. }));
    }

    #[tokio::test]
    async fn peer_signal_reaches_only_the_addressed_member() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, mut ada_events) = member("a", "Ada");
        let (grace, mut grace_events) = member("g", "Grace");
        let (lin, mut lin_events) = member("l", "Lin");
        for member in [ada, grace, lin] {
            store
                .join(&demo, member, JoinPolicy::default())
                .await
                .unwrap();
        }
        for events in [&mut ada_events, &mut grace_events, &mut lin_events] {
            while events.try_recv().is_ok() {}
        }

        let signal = PeerSignal::Offer { sdp: "o".into() };
        let from = ParticipantId::from_string("a".into());
        let to = ParticipantId::from_string("g".into());
        store
            .peer_signal(&demo, &from, &to, "s1".into(), signal.clone())
            .await
            .unwrap();
        assert_eq!(
            grace_events.try_recv().unwrap(),
            RoomEvent::PeerSignal {
                from: from.clone(),
                session: "s1".into(),
                signal: signal.clone(),
            }
        );
        assert!(ada_events.try_recv().is_err());
        assert!(lin_events.try_recv().is_err());

        let nobody = ParticipantId::from_string("x".into());
        let error = store
            .peer_signal(&demo, &from, &nobody, "s1".into(), signal)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::ParticipantNotFound { .. }));
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(id: &str, identity: &str) -> (Member, mpsc::UnboundedReceiver<SharedRoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: ParticipantId::from_string(id.into()),
            name: identity.into(),
            identity: Some(identity.into()),
            metadata: String::new(),
            events,
        };
        (member, receiver)
    }

    #[tokio::test]
    async fn same_identity_replaces_in_one_step() {
        let store = MemoryRoomStore::new();
        let demo = RoomName::parse("demo".into()).unwrap();
        let (ada, mut ada_events) = member("a", "ada");
        let (old, mut old_events) = member("g1", "grace");
        let (new, _new_events) = member("g2", "grace");
        store.join(&demo, ada, JoinPolicy::default()).await.unwrap();
        store.join(&demo, old, JoinPolicy::default()).await.unwrap();
        let _ = ada_events.try_recv();

        let roster = store.join(&demo, new, JoinPolicy::default()).await.unwrap();
        let ids: Vec<&str> = roster.others.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(old_events.try_recv().unwrap(), RoomEvent::Replaced);
        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantLeft(ParticipantId::from_string("g1".into()))
        );
        assert!(matches!(
            &*ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantJoined(info) if info.id == "g2"
        ));
        assert!(ada_events.try_recv().is_err());
        // The replaced member's own leave finds nothing to announce.
        let old_id = ParticipantId::from_string("g1".into());
        assert!(!store.leave(&demo, &old_id).await.unwrap());
    }

    fn reject() -> JoinPolicy {
        JoinPolicy {
            duplicates: DuplicateIdentity::Reject,
            ..JoinPolicy::default()
        }
    }

    #[tokio::test]
    async fn same_identity_rejected_when_configured() {
        let store = MemoryRoomStore::new();
        let demo = RoomName::parse("demo".into()).unwrap();
        let (first, _first_events) = member("g1", "grace");
        let (second, _second_events) = member("g2", "grace");
        store.join(&demo, first, reject()).await.unwrap();
        let error = store.join(&demo, second, reject()).await.unwrap_err();
        assert!(matches!(error, StoreError::DuplicateIdentity { .. }));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(id: &str) -> (Member, mpsc::UnboundedReceiver<SharedRoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: ParticipantId::from_string(id.into()),
            name: id.into(),
            identity: None,
            metadata: String::new(),
            events,
        };
        (member, receiver)
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name.into()).unwrap()
    }

    #[tokio::test]
    async fn full_room_rejects_join() {
        let store = MemoryRoomStore::new();
        let policy = JoinPolicy {
            max_participants: 1,
            ..JoinPolicy::default()
        };
        let (ada, _ada_events) = member("a");
        let (grace, _grace_events) = member("g");
        store.join(&room("demo"), ada, policy).await.unwrap();
        let error = store.join(&room("demo"), grace, policy).await.unwrap_err();
        assert!(matches!(error, StoreError::RoomFull { .. }), "{error}");
    }

    #[tokio::test]
    async fn room_limit_rejects_new_room_only() {
        let store = MemoryRoomStore::new();
        let policy = JoinPolicy {
            max_rooms: 1,
            ..JoinPolicy::default()
        };
        let (ada, _ada_events) = member("a");
        let (grace, _grace_events) = member("g");
        let (lin, _lin_events) = member("l");
        store.join(&room("one"), ada, policy).await.unwrap();
        store.join(&room("one"), grace, policy).await.unwrap();
        let error = store.join(&room("two"), lin, policy).await.unwrap_err();
        assert!(matches!(error, StoreError::TooManyRooms { .. }), "{error}");
        assert_eq!(store.room_count(), 1);
    }

    #[tokio::test]
    async fn metadata_reaches_members_and_late_joiners() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, mut ada_events) = member("a");
        store.join(&demo, ada, JoinPolicy::default()).await.unwrap();
        store
            .set_room_metadata(&demo, "topic".into())
            .await
            .unwrap();
        let ada_id = ParticipantId::from_string("a".into());
        store
            .set_participant_metadata(&demo, &ada_id, "busy".into())
            .await
            .unwrap();
        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::RoomMetadata("topic".into())
        );
        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantMetadata(ada_id, "busy".into())
        );

        let (grace, _grace_events) = member("g");
        let snapshot = store
            .join(&demo, grace, JoinPolicy::default())
            .await
            .unwrap();
        assert_eq!(snapshot.metadata, "topic");
        assert_eq!(snapshot.others[0].metadata, "busy");

        let unknown = ParticipantId::from_string("x".into());
        let error = store
            .set_participant_metadata(&demo, &unknown, "m".into())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::ParticipantNotFound { .. }));
    }
}
