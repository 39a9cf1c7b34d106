//! The read-mostly state workers share: which ports exist, their networks and owners.
//!
//! The control thread builds a new immutable [`Snapshot`] for every change and publishes it
//! through a [`SnapshotCell`]; a worker loads it once per poll iteration. An old snapshot is
//! freed when the last worker drops its reference, never while a worker still reads it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use brink_conntrack::Addr;
use hashbrown::HashMap;

use crate::acl::PortFilter;
use crate::counters::PortCounters;
use crate::wire::MacAddr;

/// Index of a port in every per-port table (snapshot, worker port table, frame holders).
pub type PortId = u16;

/// Upper bound on port ids, and so on ports per switch.
pub const MAX_PORTS: usize = 1024;

/// A network: an isolated L2 domain, like a Neutron network on br-int.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub u16);

/// A (network, MAC) pair packed into one integer: the key of every MAC table, hashed in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacKey(u64);

impl MacKey {
    /// The key of `mac` in `network`.
    #[inline]
    pub fn new(network: NetworkId, mac: MacAddr) -> Self {
        MacKey(u64::from(network.0) << 48 | mac.to_u64())
    }

    /// The network.
    pub fn network(self) -> NetworkId {
        NetworkId((self.0 >> 48) as u16)
    }

    /// The MAC address.
    pub fn mac(self) -> MacAddr {
        let b = self.0.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// What workers need to know about one port.
#[derive(Debug, Clone)]
pub struct PortEntry {
    /// The port's network.
    pub network: NetworkId,
    /// The worker that owns the port's socket.
    pub worker: usize,
    /// The VM's MAC address behind this port, if configured: a static FDB entry.
    pub mac: Option<MacAddr>,
    /// Track this port's IP traffic in its network's conntrack zone.
    pub conntrack: bool,
    /// Port security and security groups; `None`: port security off (a plain switch port).
    pub filter: Option<Arc<PortFilter>>,
}

impl PortEntry {
    /// Whether traffic from this port is tracked: conntrack is on and its groups are not
    /// stateless.
    #[inline]
    pub fn tracks(&self) -> bool {
        self.conntrack && self.filter.as_ref().is_none_or(|f| f.stateful)
    }
}

/// One immutable view of the switch's ports and networks.
#[derive(Debug, Default)]
pub struct Snapshot {
    generation: u64,
    ports: Vec<Option<PortEntry>>,
    members: HashMap<NetworkId, Vec<PortId>>,
    static_macs: HashMap<MacKey, PortId>,
    /// Networks with at least one port with port security.
    filtered: Vec<NetworkId>,
    /// MTUs of networks that do not use [`DEFAULT_MTU`].
    mtus: HashMap<NetworkId, u16>,
    /// Neighbour responder answers: (network, IPv4 or IPv6 address) -> the remote MAC and the
    /// uplink it lives behind.
    neighbours: HashMap<(NetworkId, Addr), (MacAddr, PortId)>,
    /// Each port's counters, for the worker that drops a frame meant for it (empty: none).
    counters: Vec<Option<Arc<PortCounters>>>,
}

/// A port id no port has: the receiver recorded for a connection whose first packet was flooded,
/// and the peer of a frame that no connection lets through unjudged.
pub const NO_PORT: PortId = PortId::MAX;

/// The MTU of a network that sets none (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;

impl Snapshot {
    /// Builds a snapshot from `(id, entry)` pairs. Ids at or above [`MAX_PORTS`] are ignored
    /// (the control plane never hands them out).
    pub fn new(generation: u64, ports: impl IntoIterator<Item = (PortId, PortEntry)>) -> Self {
        let mut snap = Snapshot {
            generation,
            ports: vec![None; MAX_PORTS],
            ..Snapshot::default()
        };
        for (id, entry) in ports {
            let Some(slot) = snap.ports.get_mut(usize::from(id)) else {
                continue;
            };
            snap.members.entry(entry.network).or_default().push(id);
            if let Some(mac) = entry.mac {
                snap.static_macs.insert(MacKey::new(entry.network, mac), id);
            }
            if entry.filter.is_some() && !snap.filtered.contains(&entry.network) {
                snap.filtered.push(entry.network);
            }
            *slot = Some(entry);
        }
        for list in snap.members.values_mut() {
            list.sort_unstable();
        }
        snap
    }

    /// This snapshot with the given network MTUs (the others keep [`DEFAULT_MTU`]).
    pub fn with_mtus(mut self, mtus: impl IntoIterator<Item = (NetworkId, u16)>) -> Self {
        self.mtus = mtus
            .into_iter()
            .filter(|&(_, m)| m != DEFAULT_MTU)
            .collect();
        self
    }

    /// This snapshot with static FDB entries for MACs that live behind another host: each
    /// `(network, mac, port)` names the network's uplink port. Entries whose port is not in
    /// the snapshot or not in that network are ignored; a local port's MAC keeps its port.
    pub fn with_remote_macs(
        mut self,
        macs: impl IntoIterator<Item = (NetworkId, MacAddr, PortId)>,
    ) -> Self {
        for (network, mac, port) in macs {
            if self.port(port).is_some_and(|p| p.network == network) {
                self.static_macs
                    .entry(MacKey::new(network, mac))
                    .or_insert(port);
            }
        }
        self
    }

    /// This snapshot with neighbour responder answers: each `(network, ip, mac, uplink)` says
    /// that `ip` (IPv4, which ARP asks for, or IPv6, which neighbour discovery asks for) is at
    /// remote `mac`, behind port `uplink`.
    pub fn with_neighbour_answers(
        mut self,
        answers: impl IntoIterator<Item = (NetworkId, Addr, MacAddr, PortId)>,
    ) -> Self {
        self.neighbours = answers
            .into_iter()
            .map(|(n, ip, mac, uplink)| ((n, ip), (mac, uplink)))
            .collect();
        self
    }

    /// This snapshot with the ports' counters, `(id, counters)`, so that any worker can count
    /// what it drops on the way to a port.
    pub fn with_port_counters(
        mut self,
        counters: impl IntoIterator<Item = (PortId, Arc<PortCounters>)>,
    ) -> Self {
        self.counters = vec![None; MAX_PORTS];
        for (id, c) in counters {
            if let Some(slot) = self.counters.get_mut(usize::from(id)) {
                *slot = Some(c);
            }
        }
        self
    }

    /// The counters of port `id`, if the snapshot carries them.
    #[inline]
    pub fn port_counters(&self, id: PortId) -> Option<&PortCounters> {
        self.counters.get(usize::from(id))?.as_deref()
    }

    /// Whether some network has neighbour responder answers.
    #[inline]
    pub fn answers_neighbours(&self) -> bool {
        !self.neighbours.is_empty()
    }

    /// The MAC the neighbour responder gives for `ip` in `network` and the uplink it lives
    /// behind.
    #[inline]
    pub fn neighbour_answer(&self, network: NetworkId, ip: Addr) -> Option<(MacAddr, PortId)> {
        self.neighbours.get(&(network, ip)).copied()
    }

    /// The MTU of `network`: the largest IP packet its ports carry.
    #[inline]
    pub fn mtu(&self, network: NetworkId) -> u16 {
        if self.mtus.is_empty() {
            return DEFAULT_MTU;
        }
        self.mtus.get(&network).copied().unwrap_or(DEFAULT_MTU)
    }

    /// The generation this snapshot was published as.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation connections are admitted under: connections admitted under an older one
    /// are rechecked against this snapshot's rules. It wraps after 2^32 snapshots; a connection
    /// would have to sit unchecked through exactly that many to be missed.
    #[inline]
    pub fn rules_generation(&self) -> u32 {
        self.generation as u32
    }

    /// The port with id `id`, if it exists.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// The compiled security of port `id`, if it exists and has port security on.
    #[inline]
    pub fn filter(&self, id: PortId) -> Option<&PortFilter> {
        self.port(id).and_then(|p| p.filter.as_deref())
    }

    /// Whether some port of `network` has port security, so frames there need their IP headers
    /// read even when they are not tracked.
    #[inline]
    pub fn is_filtered(&self, network: NetworkId) -> bool {
        self.filtered.contains(&network)
    }

    /// All ports of `network`, in id order.
    #[inline]
    pub fn members(&self, network: NetworkId) -> &[PortId] {
        self.members.get(&network).map_or(&[], Vec::as_slice)
    }

    /// Every configured `(network, mac, port)`, for FDB dumps.
    pub fn static_entries(&self) -> impl Iterator<Item = (NetworkId, MacAddr, PortId)> + '_ {
        self.static_macs
            .iter()
            .map(|(&k, &p)| (k.network(), k.mac(), p))
    }
}

/// Where the current snapshot is published.
#[derive(Debug)]
pub struct SnapshotCell(ArcSwap<Snapshot>);

impl Default for SnapshotCell {
    fn default() -> Self {
        SnapshotCell(ArcSwap::from_pointee(Snapshot::new(0, [])))
    }
}

impl SnapshotCell {
    /// Replaces the current snapshot and returns it. Workers see it from their next poll
    /// iteration.
    pub fn publish(&self, snap: Snapshot) -> Arc<Snapshot> {
        let snap = Arc::new(snap);
        self.0.store(Arc::clone(&snap));
        snap
    }

    /// The current snapshot; hold it for one poll iteration at most.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(net: u16, mac: Option<u8>) -> PortEntry {
        PortEntry {
            network: NetworkId(net),
            worker: 0,
            mac: mac.map(|b| MacAddr([2, 0, 0, 0, 0, b])),
            conntrack: false,
            filter: None,
        }
    }

    #[test]
    fn indexes_members_and_static_macs_per_network() {
        let snap = Snapshot::new(
            7,
            [
                (3, entry(1, Some(3))),
                (1, entry(1, None)),
                (2, entry(2, Some(3))),
            ],
        );
        assert_eq!(snap.generation(), 7);
        assert_eq!(snap.members(NetworkId(1)), &[1, 3]);
        assert_eq!(snap.members(NetworkId(2)), &[2]);
        assert!(snap.members(NetworkId(9)).is_empty());
        let mac = MacAddr([2, 0, 0, 0, 0, 3]);
        let mut statics: Vec<_> = snap.static_entries().collect();
        statics.sort();
        assert_eq!(statics, [(NetworkId(1), mac, 3), (NetworkId(2), mac, 2)]);
        assert!(snap.port(0).is_none());
        assert!(snap.port(u16::MAX).is_none());
    }

    #[test]
    fn mac_keys_round_trip() {
        let mac = MacAddr([0xfe, 1, 2, 3, 4, 0xff]);
        let k = MacKey::new(NetworkId(0xabcd), mac);
        assert_eq!((k.network(), k.mac()), (NetworkId(0xabcd), mac));
        assert_ne!(k, MacKey::new(NetworkId(1), mac));
    }

    #[test]
    fn out_of_range_ids_are_ignored() {
        let snap = Snapshot::new(1, [(u16::MAX, entry(1, Some(1)))]);
        assert!(snap.members(NetworkId(1)).is_empty());
    }
}
