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
    rooms: RwLock<HashMap<String, Vec<u32>>>,
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

    /// Picks the shard for a participant that joins `room` and counts it there. The room's home
    /// shard takes members until it has `spread_after` of them. After that each member goes to
    /// the shard with the fewest members of the room, the home shard first on a tie. Returns
    /// the shard, and true when the room had no members before.
    pub fn place(&self, room: &str, shards: usize, spread_after: usize) -> (usize, bool) {
        let shards = shards.max(1);
        let home = shard_of_room(room, shards);
        let mut rooms = write(&self.rooms);
        let counts = rooms
            .entry(room.to_owned())
            .or_insert_with(|| vec![0; shards]);
        let created = counts.iter().all(|count| *count == 0);
        let shard = if (counts[home] as usize) < spread_after.max(1) {
            home
        } else {
            // Starting at the home shard makes it win ties.
            (0..shards)
                .map(|offset| (home + offset) % shards)
                .min_by_key(|shard| counts[*shard])
                .unwrap_or(home)
        };
        let was_spread = shards_with_members(counts) > 1;
        counts[shard] += 1;
        if !was_spread && shards_with_members(counts) > 1 {
            self.spread_rooms.fetch_add(1, Ordering::Relaxed);
        }
        (shard, created)
    }

    /// Counts a member of `room` on `shard` out. Returns true when the room has no members
    /// left.
    pub fn leave(&self, room: &str, shard: usize) -> bool {
        let mut rooms = write(&self.rooms);
        let Some(counts) = rooms.get_mut(room) else {
            return false;
        };
        let was_spread = shards_with_members(counts) > 1;
        if let Some(count) = counts.get_mut(shard) {
            *count = count.saturating_sub(1);
        }
        if was_spread && shards_with_members(counts) < 2 {
            self.spread_rooms.fetch_sub(1, Ordering::Relaxed);
        }
        let empty = counts.iter().all(|count| *count == 0);
        if empty {
            rooms.remove(room);
        }
        empty
    }

    /// Replaces the contents of `shards` with the shards other than `except` that have members
    /// of `room`.
    pub fn other_shards_of_room(&self, room: &str, except: usize, shards: &mut Vec<usize>) {
        shards.clear();
        if self.spread_rooms.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(counts) = read(&self.rooms).get(room) {
            shards.extend(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(shard, count)| *shard != except && **count > 0)
                    .map(|(shard, _)| shard),
            );
        }
    }
}

/// Counts the shards with at least one member.
fn shards_with_members(counts: &[u32]) -> usize {
    counts.iter().filter(|count| **count > 0).count()
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
        let placed: Vec<usize> = (0..5).map(|_| routes.place("big", 3, 2).0).collect();
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
        let (first, created) = routes.place("small", 2, 8);
        assert!(created);
        let (second, created) = routes.place("small", 2, 8);
        assert!(!created);
        assert_eq!(
            first, second,
            "a room below the limit stays on its home shard"
        );
        assert!(!routes.leave("small", first));
        assert!(routes.leave("small", second));
        assert!(
            routes.place("small", 2, 8).1,
            "an emptied room is created again"
        );
        assert!(!routes.leave("unknown", 0));
    }

    #[test]
    fn unspread_rooms_skip_the_lookup() {
        let routes = ShardRoutes::default();
        let home = shard_of_room("pair", 2);
        let mut others = Vec::new();
        routes.place("pair", 2, 1);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 0);
        let (second, _) = routes.place("pair", 2, 1);
        assert_ne!(second, home);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 1);
        routes.other_shards_of_room("pair", home, &mut others);
        assert_eq!(others, [second]);
        routes.leave("pair", second);
        assert_eq!(routes.spread_rooms.load(Ordering::Relaxed), 0);
        routes.other_shards_of_room("pair", home, &mut others);
        assert!(others.is_empty());
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
