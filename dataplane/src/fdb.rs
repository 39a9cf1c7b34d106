//! The forwarding database: MAC addresses learned per network.
//!
//! Each worker owns one `Fdb` and learns from the frames it receives. Configured (static)
//! MACs live in the [`Snapshot`](crate::snapshot::Snapshot), not here. The table is bounded:
//! its capacity is reserved up front and a full table stops learning (counted) rather than grow.

use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::snapshot::{NetworkId, PortId};
use crate::wire::MacAddr;

/// Default time after which an entry not refreshed by traffic is forgotten.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
/// Default number of learned entries per worker.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Learned {
    port: PortId,
    seen: Instant,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// A new entry was added, or an entry moved to another port.
    Learned,
    /// The existing entry was refreshed.
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
    map: HashMap<(NetworkId, MacAddr), Learned>,
    capacity: usize,
    aging: Duration,
}

impl Fdb {
    /// An empty table that holds up to `capacity` entries, each forgotten `aging` after it was
    /// last seen.
    pub fn new(capacity: usize, aging: Duration) -> Self {
        Fdb {
            map: HashMap::with_capacity(capacity),
            capacity,
            aging,
        }
    }

    /// Records that `mac` was seen as a source on `port` of `network` at `now`.
    #[inline]
    pub fn learn(&mut self, network: NetworkId, mac: MacAddr, port: PortId, now: Instant) -> Learn {
        if let Some(e) = self.map.get_mut(&(network, mac)) {
            let moved = e.port != port;
            *e = Learned { port, seen: now };
            return if moved {
                Learn::Learned
            } else {
                Learn::Refreshed
            };
        }
        if self.map.len() >= self.capacity {
            return Learn::Full;
        }
        self.map.insert((network, mac), Learned { port, seen: now });
        Learn::Learned
    }

    /// The port `mac` was last seen on in `network`, unless the entry has aged out.
    #[inline]
    pub fn lookup(&self, network: NetworkId, mac: MacAddr, now: Instant) -> Option<PortId> {
        let e = self.map.get(&(network, mac))?;
        (now.saturating_duration_since(e.seen) < self.aging).then_some(e.port)
    }

    /// Removes entries not seen for the aging time; returns how many.
    pub fn age(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let aging = self.aging;
        self.map
            .retain(|_, e| now.saturating_duration_since(e.seen) < aging);
        before - self.map.len()
    }

    /// Removes entries for which `stale(network, port)` is true, e.g. a port that was removed
    /// or moved to another network.
    pub fn forget(&mut self, mut stale: impl FnMut(NetworkId, PortId) -> bool) {
        self.map.retain(|&(net, _), e| !stale(net, e.port));
    }

    /// Removes all entries of `network`, or every entry.
    pub fn flush(&mut self, network: Option<NetworkId>) {
        match network {
            Some(n) => self.map.retain(|&(net, _), _| net != n),
            None => self.map.clear(),
        }
    }

    /// Number of entries, aged or not.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Live entries with their age at `now`.
    pub fn rows(&self, now: Instant) -> impl Iterator<Item = FdbRow> + '_ {
        self.map.iter().filter_map(move |(&(network, mac), e)| {
            let age = now.saturating_duration_since(e.seen);
            (age < self.aging).then_some(FdbRow {
                network,
                mac,
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

    #[test]
    fn forget_removes_entries_of_stale_ports() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(8, DEFAULT_AGING);
        fdb.learn(NET, mac(1), 1, t0);
        fdb.learn(NET, mac(2), 2, t0);
        fdb.forget(|_, port| port == 1);
        assert_eq!(fdb.lookup(NET, mac(1), t0), None);
        assert_eq!(fdb.lookup(NET, mac(2), t0), Some(2));
    }
}
