//! Spreading rooms over several SFU tasks, each with its own socket on the one media port.
//!
//! Every task (a shard) binds the media address with `SO_REUSEPORT` and owns whole rooms: a
//! room's peer connections, and so its forwarding, stay in one task without locks. The kernel
//! spreads incoming datagrams over the sockets by a hash of the source and destination, not by
//! room, so a shard that reads a datagram of another shard's peer passes it on. [`ShardRoutes`]
//! maps ICE username fragments and remote addresses to the shard that owns them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::RwLock;

use crate::stun;

/// Owners of ICE username fragments and remote addresses, shared by every shard.
#[derive(Debug, Default)]
pub(crate) struct ShardRoutes {
    by_ufrag: RwLock<HashMap<String, usize>>,
    by_address: RwLock<HashMap<SocketAddr, usize>>,
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
