//! Spreading participants over several SFU tasks, each with its own socket on the one media
//! port.
//!
//! Every task (a shard) binds the media address with `SO_REUSEPORT` and owns whole
//! participants: both peer connections of one participant stay in one task without locks. A
//! room starts on its home shard. Once that shard has [`crate::SfuConfig::room_spread_after`]
//! of its members, later members go to the shard with the fewest of them, and the shards pass
//! the room's tracks and RTP to each other (see `remote.rs`).
//!
//! The kernel spreads incoming datagrams over the sockets by a hash of the source and
//! destination, not by participant, so a shard that reads a datagram of another shard's peer
//! passes it on. [`ShardRoutes`] maps ICE username fragments and remote addresses to the shard
//! that owns them, and counts the members of each room on each shard.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::stun;

/// Owners of ICE username fragments and remote addresses, shared by every shard.
#[derive(Debug, Default)]
pub(crate) struct ShardRoutes {
    by_ufrag: RwLock<HashMap<String, usize>>,
    by_address: RwLock<HashMap<SocketAddr, usize>>,
    /// Members of each room on each shard, indexed by shard.
    rooms: RwLock<HashMap<String, Vec<Members>>>,
    /// Rooms with members on more than one shard. While there are none, forwarding skips the
    /// lookup in `rooms`.
    spread_rooms: AtomicUsize,
}

impl ShardRoutes {
    /// Returns the shard that owns the connection a datagram belongs to, by the USERNAME of a
    /// STUN request first and by the source address otherwise.
    pub fn owner(&self, source: SocketAddr, payload: &[u8]) -> Option<usize> {
        if let Some(ufrag) = stun::local_ufrag(payload) {
            if let Some(shard) = read(&self.by_ufrag).get(ufrag) {
                return Some(*shard);
            }
        }
        read(&self.by_address).get(&source).copied()
    }

    pub fn bind_ufrag(&self, ufrag: &str, shard: usize) {
        write(&self.by_ufrag).insert(ufrag.to_owned(), shard);
    }

    pub fn unbind_ufrag(&self, ufrag: &str) {
        write(&self.by_ufrag).remove(ufrag);
    }

    /// Records that `shard` receives from `address`. Only writes when the owner changed, so the
    /// periodic consent checks of a settled connection take the read lock alone.
    pub fn bind_address(&self, address: SocketAddr, shard: usize) {
        if read(&self.by_address).get(&address) == Some(&shard) {
            return;
        }
        write(&self.by_address).insert(address, shard);
    }

    pub fn unbind_address(&self, address: &SocketAddr) {
        write(&self.by_address).remove(address);
    }

    /// Picks the shard for a participant that joins `room` and counts it there, as subscribing
    /// when `subscribes` is true. The room's home shard takes members until it has
    /// `spread_after` of them. After that each member goes to the shard with the fewest members
    /// of the room, the home shard first on a tie. Returns the shard, and true when the room
    /// had no members before.
    pub fn place(
        &self,
        room: &str,
        shards: usize,
        spread_after: usize,
        subscribes: bool,
    ) -> (usize, bool) {
        let shards = shards.max(1);
        let home = shard_of_room(room, shards);
        let mut rooms = write(&self.rooms);
        let counts = rooms
            .entry(room.to_owned())
            .or_insert_with(|| vec![Members::default(); shards]);
        let created = shards_with_members(counts) == 0;
        let shard = if (counts[home].all as usize) < spread_after.max(1) {
            home
        } else {
            // Starting at the home shard makes it win ties.
            (0..shards)
                .map(|offset| (home + offset) % shards)
                .min_by_key(|shard| counts[*shard].all)
                .unwrap_or(home)
        };
        let was_spread = shards_with_members(counts) > 1;
        counts[shard].all += 1;
        counts[shard].subscribing += u32::from(subscribes);
        if !was_spread && shards_with_members(counts) > 1 {
            self.spread_rooms.fetch_add(1, Ordering::Relaxed);
        }
        (shard, created)
    }

    /// Counts a member of `room` on `shard` out, `subscribed` as [`ShardRoutes::place`]
    /// counted it. Returns true when the room has no members left.
    pub fn leave(&self, room: &str, shard: usize, subscribed: bool) -> bool {
        let mut rooms = write(&self.rooms);
        let Some(counts) = rooms.get_mut(room) else {
            return false;
        };
        let was_spread = shards_with_members(counts) > 1;
        if let Some(members) = counts.get_mut(shard) {
            members.all = members.all.saturating_sub(1);
            members.subscribing = members.subscribing.saturating_sub(u32::from(subscribed));
        }
        if was_spread && shards_with_members(counts) < 2 {
            self.spread_rooms.fetch_sub(1, Ordering::Relaxed);
        }
        let empty = shards_with_members(counts) == 0;
        if empty {
            rooms.remove(room);
        }
        empty
    }

    /// Returns true when some room has members on more than one shard.
    pub fn any_room_spread(&self) -> bool {
        self.spread_rooms.load(Ordering::Relaxed) > 0
    }

    /// Replaces the contents of `shards` with the shards other than `except` that have
    /// subscribing members of `room`.
    pub fn other_shards_of_room(&self, room: &str, except: usize, shards: &mut Vec<usize>) {
        shards.clear();
        if !self.any_room_spread() {
            return;
        }
        if let Some(counts) = read(&self.rooms).get(room) {
            shards.extend(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(shard, members)| *shard != except && members.subscribing > 0)
                    .map(|(shard, _)| shard),
            );
        }
    }
}

/// Members of one room on one shard.
#[derive(Clone, Copy, Debug, Default)]
struct Members {
    all: u32,
    /// Members that receive the room's tracks, so that the shard needs its RTP.
    subscribing: u32,
}

/// Counts the shards with at least one member.
fn shards_with_members(counts: &[Members]) -> usize {
    counts.iter().filter(|members| members.all > 0).count()
}

/// Returns the shard that owns a room, out of `shards`.
pub(crate) fn shard_of_room(room: &str, shards: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    room.hash(&mut hasher);
    // The remainder is below `shards`, which is a usize, so the cast cannot truncate.
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// Takes a read lock. A shard that panicked while writing left a map that is still consistent,
/// because every write is a single insert or remove, so poisoning is ignored.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes a write lock, ignoring poisoning for the reason given on [`read`].
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_maps_to_same_shard() {
        let first = shard_of_room("demo", 4);
        assert!(first < 4);
        assert_eq!(shard_of_room("demo", 4), first);
        assert_eq!(shard_of_room("demo", 1), 0);
    }

    #[test]
    fn room_spreads_after_home_fills() {
        let routes = ShardRoutes::default();
        let home = shard_of_room("big", 3);
        let placed: Vec<usize> = (0..5).map(|_| routes.place("big", 3, 2, true).0).collect();
        assert_eq!(
            &placed[..2],
            &[home, home],
            "the home shard takes the first two"
        );
        let mut others: Vec<usize> = placed[2..4].to_vec();
        others.sort_unstable();
        let mut expected: Vec<usize> = (0..3).filter(|shard| *shard != home).collect();
        expected.sort_unstable();
        assert_eq!(others, expected, "then the emptiest shards");
        let mut spread = Vec::new();
        routes.other_shards_of_room("big", home, &mut spread);
        assert_eq!(spread.len(), 2);
    }

    #[test]
    fn room_counts_creation_and_emptying() {
        let routes = ShardRoutes::default();
        let (first, created) = routes.place("small", 2, 8, true);
        assert!(created);
        let (second, created) = routes.place("small", 2, 8, true);
        assert!(!created);
        assert_eq!(
            first, second,
            "a room below the limit stays on its home shard"
        );
        assert!(!routes.leave("small", first, true));
        assert!(routes.leave("small", second, true));
        assert!(
            routes.place("small", 2, 8, true).1,
            "an emptied room is created again"
        );
        assert!(!routes.leave("unknown", 0, true));
    }

    #[test]
    fn unspread_rooms_skip_the_lookup() {
        let routes = ShardRoutes::default();
        let home = shard_of_room("pair", 2);
        let mut others = Vec::new();
        routes.place("pair", 2, 1, true);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 0);
        let (second, _) = routes.place("pair", 2, 1, true);
        assert_ne!(second, home);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 1);
        routes.other_shards_of_room("pair", home, &mut others);
        assert_eq!(others, [second]);
        routes.leave("pair", second, true);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 0);
        routes.other_shards_of_room("pair", home, &mut others);
        assert!(others.is_empty());
    }

    #[test]
    fn shards_without_subscribers_get_no_rtp() {
        let routes = ShardRoutes::default();
        let (home, _) = routes.place("talk", 2, 1, true);
        let (other, _) = routes.place("talk", 2, 1, false);
        assert_ne!(home, other);
        let mut shards = Vec::new();
        routes.other_shards_of_room("talk", home, &mut shards);
        assert!(
            shards.is_empty(),
            "the other shard's member does not subscribe"
        );
        routes.other_shards_of_room("talk", other, &mut shards);
        assert_eq!(shards, [home]);
    }

    #[test]
    fn address_owner_follows_rebinding() {
        let routes = ShardRoutes::default();
        let address: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(routes.owner(address, b"not stun"), None);

        routes.bind_address(address, 1);
        assert_eq!(routes.owner(address, b"not stun"), Some(1));

        routes.bind_address(address, 0);
        assert_eq!(routes.owner(address, b"not stun"), Some(0));

        routes.unbind_address(&address);
        assert_eq!(routes.owner(address, b"not stun"), None);
    }
}
