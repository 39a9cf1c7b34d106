//! One port's rules for one direction and ethertype, compiled for lookup.
//!
//! Neutron rules only allow, and their order does not matter, so a packet is allowed when any
//! rule matches. The compiled set answers with the matching rule of lowest index, so the answer
//! is the same as a linear scan's ([`Rule::matches`]) while touching only a few buckets:
//! partitioned by protocol, then by port (a hash for single ports, elementary intervals for
//! ranges, one bucket for any port), then by remote address (elementary intervals of the
//! address space, found by binary search).

use std::collections::BTreeMap;
use std::sync::Arc;

use brink_conntrack::Addr;
use hashbrown::HashMap;

use super::prefix::Prefix;
use crate::counters::RuleHits;

/// One allow rule, as the compiler takes it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's id (reported as the admitting rule).
    pub id: u32,
    /// IP protocol, or `None` for any.
    pub proto: Option<u8>,
    /// Inclusive range of [`crate::wire::ip::Flow::rule_port`] values: destination ports, or
    /// ICMP `type << 8 | code`.
    pub ports: (u16, u16),
    /// Remote addresses that match: a prefix, or a remote group's member addresses. Empty
    /// matches nothing (a remote group without members).
    pub remotes: Vec<Prefix>,
    /// Connections (stateful) or packets (stateless) the rule admitted, per worker.
    pub hits: Arc<RuleHits>,
}

impl Rule {
    /// Whether the rule matches a packet of `proto` with rule port `port` whose remote end is
    /// `remote`: the linear definition the compiled set agrees with.
    pub fn matches(&self, proto: u8, port: u16, remote: Addr) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && (self.ports.0..=self.ports.1).contains(&port)
            && self.remotes.iter().any(|p| p.contains(remote))
    }
}

/// The rule a lookup found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Rule id.
    pub id: u32,
    hits: Arc<RuleHits>,
}

impl Hit {
    /// Counts one admission by `worker`.
    #[inline]
    pub fn count(&self, worker: usize) {
        self.hits.add(worker, 1);
    }
}

/// Rule indexes by remote address. Prefixes are intervals of the address space, so the space is
/// cut into elementary intervals at every prefix's ends, and each interval keeps the lowest
/// rule index covering it: one binary search per lookup, whatever the prefix lengths.
#[derive(Debug, Default)]
struct RemoteSet {
    /// Interval starts, sorted; `best[i]` covers `starts[i]..starts[i + 1]`.
    starts: Vec<u128>,
    best: Vec<u32>,
}

/// No rule covers an interval.
const NONE: u32 = u32::MAX;

fn lowest(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl RemoteSet {
    /// The set of the remotes of `rules`, each `(rule index, rule)`.
    fn new(rules: &[(u32, &Rule)]) -> RemoteSet {
        // Each prefix adds its rule index at its first address and removes it after its last.
        let mut events: Vec<(u128, bool, u32)> = Vec::new();
        for &(i, rule) in rules {
            for p in &rule.remotes {
                events.push((p.bits(), true, i));
                if let Some(end) = p.last().checked_add(1) {
                    events.push((end, false, i));
                }
            }
        }
        events.sort_unstable();
        let mut set = RemoteSet::default();
        let mut active: BTreeMap<u32, u32> = BTreeMap::new();
        let mut k = 0;
        while k < events.len() {
            let at = events[k].0;
            while k < events.len() && events[k].0 == at {
                let (_, add, i) = events[k];
                if add {
                    *active.entry(i).or_default() += 1;
                } else if let Some(n) = active.get_mut(&i) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&i);
                    }
                }
                k += 1;
            }
            let best = active.keys().next().copied().unwrap_or(NONE);
            if set.best.last() != Some(&best) {
                set.starts.push(at);
                set.best.push(best);
            }
        }
        set
    }

    #[inline]
    fn lookup(&self, addr: Addr) -> Option<u32> {
        let a = u128::from_be_bytes(addr.0);
        let i = self.starts.partition_point(|&s| s <= a).checked_sub(1)?;
        self.best.get(i).copied().filter(|&b| b != NONE)
    }
}

/// Rule indexes by rule port.
#[derive(Debug, Default)]
struct PortIndex {
    /// Rules for every port.
    all: RemoteSet,
    /// Rules for one port.
    exact: HashMap<u16, RemoteSet>,
    /// Starts of the elementary intervals that the other ranges cut the port space into
    /// (sorted, beginning with 0); `spans[i]` holds the ranges covering interval `i`.
    starts: Vec<u16>,
    spans: Vec<RemoteSet>,
}

impl PortIndex {
    fn build(rules: &[(u32, &Rule)]) -> PortIndex {
        let mut all = Vec::new();
        let mut exact: HashMap<u16, Vec<(u32, &Rule)>> = HashMap::new();
        let mut ranges = Vec::new();
        for &(i, rule) in rules {
            match rule.ports {
                (0, u16::MAX) => all.push((i, rule)),
                (lo, hi) if lo == hi => exact.entry(lo).or_default().push((i, rule)),
                (lo, hi) if lo < hi => ranges.push((i, rule)),
                _ => {} // An empty range matches nothing.
            }
        }
        let mut index = PortIndex {
            all: RemoteSet::new(&all),
            exact: exact
                .into_iter()
                .map(|(port, rules)| (port, RemoteSet::new(&rules)))
                .collect(),
            ..PortIndex::default()
        };
        if ranges.is_empty() {
            return index;
        }
        let mut starts: Vec<u16> = ranges
            .iter()
            .flat_map(|(_, r)| [Some(r.ports.0), r.ports.1.checked_add(1)])
            .flatten()
            .chain([0])
            .collect();
        starts.sort_unstable();
        starts.dedup();
        ranges.sort_unstable_by_key(|(_, r)| r.ports.0);
        let mut pending = ranges.iter().peekable();
        let mut active: Vec<(u32, &Rule)> = Vec::new();
        for &start in &starts {
            while let Some(&(i, r)) = pending.next_if(|(_, r)| r.ports.0 <= start) {
                active.push((i, r));
            }
            active.retain(|(_, r)| r.ports.1 >= start);
            index.spans.push(RemoteSet::new(&active));
        }
        index.starts = starts;
        index
    }

    #[inline]
    fn lookup(&self, port: u16, addr: Addr) -> Option<u32> {
        let mut best = self.all.lookup(addr);
        if let Some(set) = self.exact.get(&port) {
            best = lowest(best, set.lookup(addr));
        }
        if !self.starts.is_empty() {
            let span = self
                .starts
                .partition_point(|&s| s <= port)
                .saturating_sub(1);
            best = lowest(best, self.spans[span].lookup(addr));
        }
        best
    }
}

/// A compiled rule set. Immutable; shared by every worker through the snapshot.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Hit>,
    any_proto: PortIndex,
    /// Index into `protos` plus one, per protocol number (0: no rule names it).
    proto_slot: Vec<u16>,
    protos: Vec<PortIndex>,
}

impl RuleSet {
    /// Compiles `rules`; a lookup reports the first of them that matches.
    pub fn compile(rules: &[Rule]) -> RuleSet {
        let mut by_proto: BTreeMap<Option<u8>, Vec<(u32, &Rule)>> = BTreeMap::new();
        for (i, r) in (0u32..).zip(rules) {
            by_proto.entry(r.proto).or_default().push((i, r));
        }
        let any = by_proto.remove(&None).unwrap_or_default();
        let mut proto_slot = vec![0u16; 256];
        let mut protos = Vec::new();
        for (proto, named) in by_proto {
            if let Some(p) = proto {
                protos.push(PortIndex::build(&named));
                proto_slot[usize::from(p)] = protos.len() as u16;
            }
        }
        RuleSet {
            rules: rules
                .iter()
                .map(|r| Hit {
                    id: r.id,
                    hits: Arc::clone(&r.hits),
                })
                .collect(),
            any_proto: PortIndex::build(&any),
            proto_slot,
            protos,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching a packet of `proto` with rule port `port` and remote address
    /// `remote`, or `None` if no rule allows it.
    #[inline]
    pub fn lookup(&self, proto: u8, port: u16, remote: Addr) -> Option<&Hit> {
        if self.rules.is_empty() {
            return None;
        }
        let mut best = self.any_proto.lookup(port, remote);
        let slot = self
            .proto_slot
            .get(usize::from(proto))
            .copied()
            .unwrap_or(0);
        if let Some(index) = self.protos.get(usize::from(slot).wrapping_sub(1)) {
            best = lowest(best, index.lookup(port, remote));
        }
        best.and_then(|i| self.rules.get(i as usize))
    }
}
