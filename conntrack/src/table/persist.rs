//! A table's connections taken out and put back, so that a restart of the process cuts none.
//!
//! Times are saved relative to the moment of the save, because the clock `now` counts from is
//! the caller's own and starts again with it. A connection's zone and ports are the caller's
//! numbers, saved as they are: the caller translates them when it puts them back.

use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use super::entry::NS_PER_SEC;
use super::{second, second_begun, Entry, Table};
use crate::gate::Admission;
use crate::key::{ConnKey, Tuple};
use crate::tcp::TcpConn;

/// One connection as saved: everything its entry holds, with times as ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The tuple of the original direction (its zone included).
    pub original: Tuple,
    /// TCP state and windows, if TCP.
    pub tcp: Option<TcpConn>,
    /// A reply was seen.
    pub seen_reply: bool,
    /// Early drop will not evict it.
    pub assured: bool,
    /// Mark.
    pub mark: u32,
    /// How the firewall admitted it.
    pub admission: Admission,
    /// Packets (original, reply), wrapping at 2^32.
    pub packets: [u32; 2],
    /// Bytes (original, reply).
    pub bytes: [u64; 2],
    /// Nanoseconds from its creation (to the second) to the save.
    pub age: u64,
    /// Nanoseconds from its last packet to the save, to the second.
    pub idle: u64,
}

/// Why [`Table::import`] did not put a saved connection back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotImported {
    /// It has timed out meanwhile.
    Expired,
    /// The table already tracks a connection with its key.
    Exists,
    /// Its shard or its zone is full.
    Full,
}

impl Table {
    /// Calls `each` with every live connection at time `now`, one shard at a time, holding
    /// that shard's lock meanwhile (packets of that shard wait).
    pub fn export(&self, now: u64, mut each: impl FnMut(&Saved)) {
        for s in self.shards.iter() {
            let shard = s.lock();
            for (_, e) in shard.live() {
                if e.expires(shard.books.policy(e.key.zone())) <= now {
                    continue;
                }
                each(&Saved {
                    original: e.key.tuple_from(e.opener),
                    tcp: e.tcp,
                    seen_reply: e.seen_reply,
                    assured: e.assured,
                    mark: e.mark,
                    admission: e.admission,
                    packets: e.packets,
                    bytes: e.bytes,
                    age: now.saturating_sub(u64::from(e.created) * NS_PER_SEC),
                    idle: now.saturating_sub(u64::from(e.last_seen) * NS_PER_SEC),
                });
            }
        }
    }

    /// Puts `saved` back at time `now`, as it was when saved: its ages count from `now` (an
    /// age longer than `now` itself is cut to `now`), and it times out as it would have. Its
    /// zone's current policy applies; nothing is counted as an insert.
    pub fn import(&self, saved: &Saved, now: u64) -> Result<(), NotImported> {
        let (key, opener) = ConnKey::of(&saved.original);
        let entry = Entry {
            key,
            admission: saved.admission,
            last_seen: second(now.saturating_sub(saved.idle)),
            opener,
            live: true,
            seen_reply: saved.seen_reply,
            assured: saved.assured,
            tcp: saved.tcp,
            mark: saved.mark,
            packets: saved.packets,
            bytes: saved.bytes,
            created: second_begun(now.saturating_sub(saved.age)),
        };
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let policy = *shard.books.policy(key.zone());
        if u64::from(entry.timeout_secs(&policy)) * NS_PER_SEC <= saved.idle {
            return Err(NotImported::Expired);
        }
        if shard.find(hash, &key).is_some() {
            return Err(NotImported::Exists);
        }
        let zone_full = policy
            .limit
            .is_some_and(|l| self.zones.get(key.zone()) >= l);
        if zone_full || shard.books.live >= shard.books.cap {
            return Err(NotImported::Full);
        }
        self.place(&mut shard, hash, &entry, policy.limit.is_some());
        Ok(())
    }
}
