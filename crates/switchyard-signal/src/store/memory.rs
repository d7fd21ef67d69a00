//! [`RoomStore`] that keeps every room in this process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use switchyard_proto::ParticipantInfo;

use super::{DuplicateIdentity, Member, RoomEvent, RoomStore, StoreError};
use crate::names::{ParticipantId, RoomName};

/// Rooms of one server process.
///
/// All rooms share one lock. It is held only to update a member list and to push events into
/// unbounded channels, never across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryRoomStore {
    rooms: Mutex<HashMap<RoomName, Vec<Member>>>,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomName, Vec<Member>>> {
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
        duplicates: DuplicateIdentity,
    ) -> Result<Vec<ParticipantInfo>, StoreError> {
        let mut rooms = self.lock();
        let members = rooms.entry(room.clone()).or_default();
        if members.iter().any(|existing| existing.id == member.id) {
            return Err(StoreError::DuplicateParticipant {
                room: room.clone(),
                participant_id: member.id,
            });
        }
        let duplicate = member.identity.as_ref().and_then(|identity| {
            members
                .iter()
                .position(|existing| existing.identity.as_ref() == Some(identity))
        });
        if let Some(index) = duplicate {
            if duplicates == DuplicateIdentity::Reject {
                return Err(StoreError::DuplicateIdentity { room: room.clone() });
            }
            let old = members.remove(index);
            let _ = old.events.send(RoomEvent::Replaced);
            broadcast(members, RoomEvent::ParticipantLeft(old.id));
        }

        let roster = members.iter().map(Member::info).collect();
        broadcast(members, RoomEvent::ParticipantJoined(member.info()));
        members.push(member);
        Ok(roster)
    }

    async fn leave(
        &self,
        room: &RoomName,
        participant_id: &ParticipantId,
    ) -> Result<bool, StoreError> {
        let mut rooms = self.lock();
        let Some(members) = rooms.get_mut(room) else {
            return Ok(false);
        };
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
}

fn broadcast(members: &[Member], event: RoomEvent) {
    for member in members {
        // A closed channel belongs to a session that has ended and is about to call `leave`.
        let _ = member.events.send(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(id: &str, name: &str) -> (Member, mpsc::UnboundedReceiver<RoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: ParticipantId::from_string(id.into()),
            name: name.into(),
            identity: None,
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
                .join(&demo, ada, DuplicateIdentity::Replace)
                .await
                .unwrap(),
            vec![]
        );
        assert_eq!(
            store
                .join(&demo, grace, DuplicateIdentity::Replace)
                .await
                .unwrap(),
            vec![info("a", "Ada")]
        );
        assert_eq!(
            store
                .join(&demo, lin, DuplicateIdentity::Replace)
                .await
                .unwrap(),
            vec![info("a", "Ada"), info("g", "Grace")]
        );
    }

    #[tokio::test]
    async fn join_and_leave_are_announced_to_others_only() {
        let store = MemoryRoomStore::new();
        let demo = room("demo");
        let (ada, mut ada_events) = member("a", "Ada");
        let (grace, mut grace_events) = member("g", "Grace");
        store
            .join(&demo, ada, DuplicateIdentity::Replace)
            .await
            .unwrap();
        store
            .join(&demo, grace, DuplicateIdentity::Replace)
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
        store
            .join(&demo, ada, DuplicateIdentity::Replace)
            .await
            .unwrap();
        store
            .join(&demo, grace, DuplicateIdentity::Replace)
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
            .join(&room("one"), ada, DuplicateIdentity::Replace)
            .await
            .unwrap();
        assert_eq!(
            store
                .join(&room("two"), grace, DuplicateIdentity::Replace)
                .await
                .unwrap(),
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
            .join(&demo, first, DuplicateIdentity::Replace)
            .await
            .unwrap();
        let error = store
            .join(&demo, second, DuplicateIdentity::Replace)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::DuplicateParticipant { .. }));
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(id: &str, identity: &str) -> (Member, mpsc::UnboundedReceiver<RoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: ParticipantId::from_string(id.into()),
            name: identity.into(),
            identity: Some(identity.into()),
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
        store
            .join(&demo, ada, DuplicateIdentity::Replace)
            .await
            .unwrap();
        store
            .join(&demo, old, DuplicateIdentity::Replace)
            .await
            .unwrap();
        let _ = ada_events.try_recv();

        let roster = store
            .join(&demo, new, DuplicateIdentity::Replace)
            .await
            .unwrap();
        let ids: Vec<&str> = roster.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(old_events.try_recv().unwrap(), RoomEvent::Replaced);
        assert_eq!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantLeft(ParticipantId::from_string("g1".into()))
        );
        assert!(matches!(
            ada_events.try_recv().unwrap(),
            RoomEvent::ParticipantJoined(info) if info.id == "g2"
        ));
        assert!(ada_events.try_recv().is_err());
        // The replaced member's own leave finds nothing to announce.
        let old_id = ParticipantId::from_string("g1".into());
        assert!(!store.leave(&demo, &old_id).await.unwrap());
    }

    #[tokio::test]
    async fn same_identity_rejected_when_configured() {
        let store = MemoryRoomStore::new();
        let demo = RoomName::parse("demo".into()).unwrap();
        let (first, _first_events) = member("g1", "grace");
        let (second, _second_events) = member("g2", "grace");
        store
            .join(&demo, first, DuplicateIdentity::Reject)
            .await
            .unwrap();
        let error = store
            .join(&demo, second, DuplicateIdentity::Reject)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::DuplicateIdentity { .. }));
    }
}
