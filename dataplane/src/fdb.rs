//! The forwarding database: MAC addresses learned per network.
//!
//! Each worker owns one `Fdb` and learns from the frames it receives. Configured (static) MACs
//! are copied in from each new [`Snapshot`] as pinned entries, so one
//! lookup per address answers both; pinned entries never age and learning never moves them. The
//! table is bounded: its capacity is reserved up front and a full table stops learning (counted)
//! rather than grow.

use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::snapshot::{MacKey, NetworkId, PortId, Snapshot, MAX_PORTS};
use crate::wire::MacAddr;

/// Default time after which an entry not refreshed by traffic is forgotten.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
/// Default number of learned entries per worker.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Learned {
    port: PortId,
    seen: Instant,
    /// A configured MAC: never aged, never moved by learning.
    pinned: bool,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// A new entry was added, or an entry moved to another port.
    Learned,
    /// The existing entry was refreshed, or the MAC is configured (pinned) and left alone.
    Refreshed,
    /// The table is full; nothing was added.
    Full,
}

/// One FDB entry, for dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbRow {
    /// Network of the entry.
    pub network: NetworkId,
    /// The MAC address.
    pub mac: MacAddr,
    /// Port the MAC was last seen on.
    pub port: PortId,
    /// Time since the MAC was last seen; `None` for static entries.
    pub age: Option<Duration>,
}

/// A bounded, aging MAC table keyed by (network, MAC).
#[derive(Debug)]
pub struct Fdb {
    map: HashMap<MacKey, Learned>,
    /// Unpinned entries in `map`.
    learned: usize,
    capacity: usize,
    aging: Duration,
}

impl Fdb {
    /// An empty table that learns up to `capacity` entries, each forgotten `aging` after it was
    /// last seen, besides the pinned entries of up to [`MAX_PORTS`] configured MACs.
    pub fn new(capacity: usize, aging: Duration) -> Self {
        Fdb {
            map: HashMap::with_capacity(capacity + MAX_PORTS),
            learned: 0,
            capacity,
            aging,
        }
    }

    /// Records that `mac` was seen as a source on `port` of `network` at `now`.
    #[inline]
    pub fn learn(&mut self, network: NetworkId, mac: MacAddr, port: PortId, now: Instant) -> Learn {
        let key = MacKey::new(network, mac);
        if let Some(e) = self.map.get_mut(&key) {
            if e.pinned {
                return Learn::Refreshed;
            }
            let moved = e.port != port;
            e.port = port;
            e.seen = now;
            return if moved {
                Learn::Learned
            } else {
                Learn::Refreshed
            };
        }
        if self.learned >= self.capacity {
            return Learn::Full;
        }
        let pinned = false;
        self.map.insert(
            key,
            Learned {
                port,
                seen: now,
                pinned,
            },
        );
        self.learned += 1;
        Learn::Learned
    }

    /// The port `mac` is configured on or was last seen on in `network`, unless a learned
    /// entry has aged out.
    #[inline]
    pub fn lookup(&self, network: NetworkId, mac: MacAddr, now: Instant) -> Option<PortId> {
        let e = self.map.get(&MacKey::new(network, mac))?;
        (e.pinned || self.fresh(e, now)).then_some(e.port)
    }

    fn fresh(&self, e: &Learned, now: Instant) -> bool {
        now.saturating_duration_since(e.seen) < self.aging
    }

    /// Removes learned entries not seen for the aging time; returns how many.
    pub fn age(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let aging = self.aging;
        self.map
            .retain(|_, e| e.pinned || now.saturating_duration_since(e.seen) < aging);
        self.learned -= before - self.map.len();
        before - self.map.len()
    }

    fn recount(&mut self) {
        self.learned = self.map.values().filter(|e| !e.pinned).count();
    }

    /// Makes the pinned entries those configured in `snap`, and drops learned entries whose port
    /// no longer exists in their network.
    pub fn sync(&mut self, snap: &Snapshot, now: Instant) {
        self.map.retain(|k, e| {
            !e.pinned && snap.port(e.port).is_some_and(|p| p.network == k.network())
        });
        for (network, mac, port) in snap.static_entries() {
            let pinned = true;
            self.map.insert(
                MacKey::new(network, mac),
                Learned {
                    port,
                    seen: now,
                    pinned,
                },
            );
        }
        self.recount();
    }

    /// Forgets learned entries of `network`, or all learned entries.
    pub fn flush(&mut self, network: Option<NetworkId>) {
        self.map
            .retain(|k, e| e.pinned || network.is_some_and(|n| k.network() != n));
        self.recount();
    }

    /// Number of learned entries, aged or not.
    pub fn len(&self) -> usize {
        self.learned
    }

    /// True when no entry was learned.
    pub fn is_empty(&self) -> bool {
        self.learned == 0
    }

    /// Live learned entries with their age at `now`.
    pub fn rows(&self, now: Instant) -> impl Iterator<Item = FdbRow> + '_ {
        self.map.iter().filter_map(move |(k, e)| {
            let age = now.saturating_duration_since(e.seen);
            (!e.pinned && self.fresh(e, now)).then_some(FdbRow {
                network: k.network(),
                mac: k.mac(),
                port: e.port,
                age: Some(age),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId(1);
    const OTHER: NetworkId = NetworkId(2);

    fn mac(b: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, b])
    }

    #[test]
    fn learns_refreshes_and_moves() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(8, DEFAULT_AGING);
        assert_eq!(fdb.learn(NET, mac(1), 4, t0), Learn::Learned);
        assert_eq!(fdb.learn(NET, mac(1), 4, t0), Learn::Refreshed);
        assert_eq!(fdb.lookup(NET, mac(1), t0), Some(4));
        assert_eq!(fdb.learn(NET, mac(1), 5, t0), Learn::Learned);
        assert_eq!(fdb.lookup(NET, mac(1), t0), Some(5));
    }

    #[test]
    fn networks_do_not_share_entries() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(8, DEFAULT_AGING);
        fdb.learn(NET, mac(1), 4, t0);
        assert_eq!(fdb.lookup(OTHER, mac(1), t0), None);
        fdb.learn(OTHER, mac(1), 9, t0);
        assert_eq!(fdb.lookup(NET, mac(1), t0), Some(4));
        assert_eq!(fdb.lookup(OTHER, mac(1), t0), Some(9));
        fdb.flush(Some(OTHER));
        assert_eq!(fdb.lookup(OTHER, mac(1), t0), None);
        assert_eq!(fdb.lookup(NET, mac(1), t0), Some(4));
    }

    #[test]
    fn entries_age_out() {
        let t0 = Instant::now();
        let aging = Duration::from_secs(10);
        let mut fdb = Fdb::new(8, aging);
        fdb.learn(NET, mac(1), 1, t0);
        fdb.learn(NET, mac(2), 2, t0 + Duration::from_secs(5));
        let t1 = t0 + aging;
        assert_eq!(
            fdb.lookup(NET, mac(1), t1),
            None,
            "stale entry must not be used"
        );
        assert_eq!(fdb.lookup(NET, mac(2), t1), Some(2));
        assert_eq!(fdb.rows(t1).count(), 1);
        assert_eq!(fdb.age(t1), 1);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn full_table_stops_learning_but_keeps_refreshing() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(2, DEFAULT_AGING);
        fdb.learn(NET, mac(1), 1, t0);
        fdb.learn(NET, mac(2), 1, t0);
        assert_eq!(fdb.learn(NET, mac(3), 1, t0), Learn::Full);
        assert_eq!(fdb.lookup(NET, mac(3), t0), None);
        assert_eq!(fdb.learn(NET, mac(2), 2, t0), Learn::Learned);
        assert_eq!(fdb.len(), 2);
    }

    fn snap(ports: &[(PortId, u16, Option<u8>)]) -> Snapshot {
        Snapshot::new(
            1,
            ports.iter().map(|&(id, net, m)| {
                let entry = crate::snapshot::PortEntry {
                    network: NetworkId(net),
                    worker: 0,
                    mac: m.map(mac),
                    conntrack: false,
                    filter: None,
                };
                (id, entry)
            }),
        )
    }

    #[test]
    fn sync_pins_configured_macs_and_drops_stale_learned_ones() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(2, Duration::from_secs(10));
        fdb.learn(NET, mac(1), 1, t0);
        fdb.learn(NET, mac(2), 2, t0);
        // Port 1 is gone; port 2 stays; port 3 has configured MAC 9.
        fdb.sync(&snap(&[(2, 1, None), (3, 1, Some(9))]), t0);
        assert_eq!(fdb.lookup(NET, mac(1), t0), None);
        assert_eq!(fdb.lookup(NET, mac(2), t0), Some(2));
        assert_eq!(fdb.lookup(NET, mac(9), t0), Some(3));
        assert_eq!(fdb.len(), 1, "pinned entries do not count as learned");
        // Pinned: learning does not move it, aging and flushing keep it, rows do not list it.
        assert_eq!(fdb.learn(NET, mac(9), 2, t0), Learn::Refreshed);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(fdb.age(later), 1);
        fdb.flush(None);
        assert_eq!(fdb.lookup(NET, mac(9), later), Some(3));
        assert_eq!(fdb.rows(later).count(), 0);
        // Learning capacity counts learned entries only.
        assert_eq!(fdb.learn(NET, mac(5), 2, later), Learn::Learned);
        assert_eq!(fdb.learn(NET, mac(6), 2, later), Learn::Learned);
        assert_eq!(fdb.learn(NET, mac(7), 2, later), Learn::Full);
    }
}
