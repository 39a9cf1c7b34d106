//! The connection table: sharded, bounded, with per-zone policies and budgeted expiry.
//!
//! Each shard keeps its connections in a slab (a `Vec` whose dead slots form a free list threaded
//! through the slots themselves) and an [`Index`] of slab positions, so a million connections
//! cost 128 bytes each (two cache lines, see [`Entry`]) plus about 8 bytes of index, and
//! removing one touches one index bucket.
//! A packet hashes its canonical key once ([`Table::prepare`], which also prefetches its index
//! bucket), locks the one shard the hash picks, and does all of its work there: lookup, state
//! update, or insert.

use parking_lot::{Mutex, MutexGuard};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::event::{Event, EventKind};
use crate::gate::{Admission, Connection, Gate, Open, Recheck};
use crate::index::{Index, Lines};
use crate::key::{proto, Addr, ConnKey, Side, Tuple};
use crate::packet::{Packet, L4};
use crate::state::{CtState, Dir, InvalidReason};
use crate::tcp::{TcpConn, TcpState, TcpVerdict};
use crate::timeout::ZonePolicy;

mod peek;
mod persist;

pub use peek::Peek;
pub use persist::{NotImported, Saved};

const NS_PER_SEC: u64 = 1_000_000_000;
/// Entries one [`Table::expire`] call looks at unless told otherwise.
pub const DEFAULT_EXPIRE_BUDGET: usize = 128;
/// Slab positions looked at, from a new key's position, for an unreplied entry to evict.
const EARLY_DROP_SCAN: usize = 16;

/// Table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most connections the table holds.
    pub max_connections: usize,
    /// Number of shards (each with its own lock).
    pub shards: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 1_000_000,
            shards: 256,
        }
    }
}

/// One tracked connection, in two cache lines. The first holds what every packet reads: the
/// key, the admission, when it was last seen and the flags; an established packet writes it
/// only when its second or a flag changes. The second holds TCP's windows, the counters, and
/// what only the control path reads.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: ConnKey,
    admission: Admission,
    /// The second (of `now`) of the last packet.
    last_seen: u32,
    /// Which end of `key` opened the connection.
    opener: Side,
    /// False for a free slot, whose `mark` then links to the next free slot.
    live: bool,
    seen_reply: bool,
    /// Past the point where early drop may evict it (TCP established, or replied).
    assured: bool,
    // The second cache line.
    tcp: Option<TcpConn>,
    mark: u32,
    /// Packets per direction, wrapping at 2^32.
    packets: [u32; 2],
    bytes: [u64; 2],
    created: u64,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 128);
const _: () = assert!(std::mem::offset_of!(Entry, tcp) == 64);

/// `now` (nanoseconds) in whole seconds as entries record it, rounded up, so that a connection
/// never times out before its timeout (and at most a second after).
fn second(now: u64) -> u32 {
    u32::try_from(now.div_ceil(NS_PER_SEC)).unwrap_or(u32::MAX)
}

impl Entry {
    fn dir(&self, side: Side) -> Dir {
        if side == self.opener {
            Dir::Original
        } else {
            Dir::Reply
        }
    }

    fn timeout_secs(&self, policy: &ZonePolicy) -> u32 {
        let t = &policy.timeouts;
        match (self.key.proto(), self.tcp) {
            (_, Some(tcp)) => t.tcp(tcp.state()),
            (proto::UDP, _) if self.seen_reply => t.udp_replied,
            (proto::UDP, _) => t.udp_unreplied,
            (proto::ICMP | proto::ICMPV6, _) => t.icmp,
            _ if self.seen_reply => t.other_replied,
            _ => t.other_unreplied,
        }
    }

    fn expires(&self, policy: &ZonePolicy) -> u64 {
        (u64::from(self.last_seen) + u64::from(self.timeout_secs(policy))) * NS_PER_SEC
    }

    /// Event `kind` of this entry at time `now`.
    fn event(&self, kind: EventKind, now: u64) -> Event {
        Event {
            kind,
            original: self.key.tuple_from(self.opener),
            tcp_state: self.tcp.map(|t| t.state()),
            at: now,
        }
    }

    /// The entry as [`Table::dump`] reports it.
    fn info(&self, policy: &ZonePolicy) -> ConnInfo {
        ConnInfo {
            original: self.key.tuple_from(self.opener),
            tcp_state: self.tcp.map(|t| t.state()),
            seen_reply: self.seen_reply,
            assured: self.assured,
            packets: self.packets.map(u64::from),
            bytes: self.bytes,
            created: self.created,
            last_seen: u64::from(self.last_seen) * NS_PER_SEC,
            expires: self.expires(policy),
            mark: self.mark,
            admission: self.admission,
        }
    }

    fn state(&self, dir: Dir) -> CtState {
        let mut s = CtState::TRACKED;
        s = s | if self.seen_reply {
            CtState::ESTABLISHED
        } else {
            CtState::NEW
        };
        if dir == Dir::Reply {
            s = s | CtState::REPLY;
        }
        s
    }
}

/// Counters of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections in the table.
    pub entries: u64,
    /// Connections created.
    pub inserts: u64,
    /// New connections refused: table or zone full and nothing to evict.
    pub refused: u64,
    /// Unreplied connections evicted to make room.
    pub early_drops: u64,
    /// Connections removed because they timed out.
    pub expired: u64,
    /// Connections removed by [`Table::flush`].
    pub flushed: u64,
    /// New connections the gate refused (never inserted), and packets of tracked connections
    /// it refused (bound for a port that did not admit the connection and does not now).
    pub denied: u64,
    /// Connections rechecked under a new rule generation and kept.
    pub recheck_kept: u64,
    /// Connections rechecked under a new rule generation and removed.
    pub recheck_cut: u64,
    /// Invalid packets, by [`InvalidReason`] index.
    pub invalid: [u64; InvalidReason::ALL.len()],
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.entries += o.entries;
        self.inserts += o.inserts;
        self.refused += o.refused;
        self.early_drops += o.early_drops;
        self.expired += o.expired;
        self.flushed += o.flushed;
        self.denied += o.denied;
        self.recheck_kept += o.recheck_kept;
        self.recheck_cut += o.recheck_cut;
        for (a, b) in self.invalid.iter_mut().zip(o.invalid) {
            *a += b;
        }
    }
}

/// A connection as reported by [`Table::dump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The tuple of the original direction.
    pub original: Tuple,
    /// TCP state, if TCP.
    pub tcp_state: Option<TcpState>,
    /// A reply was seen.
    pub seen_reply: bool,
    /// Early drop will not evict it.
    pub assured: bool,
    /// Packets (original, reply), wrapping at 2^32.
    pub packets: [u64; 2],
    /// Bytes (original, reply).
    pub bytes: [u64; 2],
    /// When it was created.
    pub created: u64,
    /// When a packet was last seen, to the second (rounded up).
    pub last_seen: u64,
    /// When it times out unless more packets come.
    pub expires: u64,
    /// Mark.
    pub mark: u32,
    /// How the firewall admitted it.
    pub admission: Admission,
}

/// Which connections [`Table::dump`] and [`Table::flush`] select; `None` fields match all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Zone.
    pub zone: Option<u16>,
    /// Either end's address.
    pub addr: Option<Addr>,
    /// Either end's port.
    pub port: Option<u16>,
    /// IP protocol.
    pub proto: Option<u8>,
    /// State.
    pub state: Option<StateFilter>,
    /// Mark.
    pub mark: Option<u32>,
}

/// A state to select connections by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// No reply seen yet.
    New,
    /// A reply was seen.
    Established,
    /// A TCP connection in this state.
    Tcp(TcpState),
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        let k = &e.key;
        self.zone.is_none_or(|z| z == k.zone())
            && self.addr.is_none_or(|a| a == k.lo() || a == k.hi())
            && self
                .port
                .is_none_or(|p| p == k.lo_port() || p == k.hi_port())
            && self.proto.is_none_or(|p| p == k.proto())
            && self.mark.is_none_or(|m| m == e.mark)
            && self.state.is_none_or(|s| match s {
                StateFilter::New => !e.seen_reply,
                StateFilter::Established => e.seen_reply,
                StateFilter::Tcp(t) => e.tcp.is_some_and(|c| c.state() == t),
            })
    }
}

/// End of a shard's free list.
const NO_SLOT: u32 = u32::MAX;

struct Shard {
    slab: Vec<Entry>,
    index: Index,
    /// First free slot in `slab`, or [`NO_SLOT`].
    free: u32,
    /// Live entries.
    live: usize,
    cap: usize,
    /// Next slab position the expiry sweep looks at.
    cursor: usize,
    default_policy: ZonePolicy,
    /// This shard's copy of the per-zone policies (copied into every shard so that reading
    /// them needs no lock beyond the shard's own).
    policies: HashMap<u16, ZonePolicy>,
    stats: Stats,
}

impl Shard {
    fn policy(&self, zone: u16) -> &ZonePolicy {
        self.policies.get(&zone).unwrap_or(&self.default_policy)
    }

    fn find(&self, hash: u64, key: &ConnKey) -> Option<usize> {
        let slab = &self.slab;
        self.index
            .find(hash, |i| slab[i as usize].key == *key)
            .map(|i| i as usize)
    }

    fn invalid(&mut self, reason: InvalidReason) -> CtState {
        self.stats.invalid[reason as usize] += 1;
        CtState::TRACKED | CtState::INVALID
    }

    /// Stores `entry` in a free slot; returns its position.
    fn alloc(&mut self, entry: Entry) -> u32 {
        self.live += 1;
        if self.free == NO_SLOT {
            self.slab.push(entry);
            return (self.slab.len() - 1) as u32;
        }
        let pos = self.free;
        let slot = &mut self.slab[pos as usize];
        self.free = slot.mark;
        *slot = entry;
        pos
    }

    /// Removes the live entry at slab position `pos`.
    fn remove(&mut self, pos: usize, hasher: &DefaultHashBuilder, zones: &ZoneCounts) {
        let e = &mut self.slab[pos];
        let key = e.key;
        e.live = false;
        e.mark = self.free;
        self.free = pos as u32;
        self.live -= 1;
        self.index.remove(hasher.hash_one(key), pos as u32);
        if self.policy(key.zone()).limit.is_some() {
            zones.dec(key.zone());
        }
    }

    /// Makes sure the live entry at `pos` is admitted under `gate`'s generation: rechecks it if
    /// not, and removes it if the gate refuses. Returns whether it is still there.
    fn recheck(
        &mut self,
        pos: usize,
        gate: &mut impl Gate,
        hasher: &DefaultHashBuilder,
        zones: &ZoneCounts,
    ) -> bool {
        let e = &mut self.slab[pos];
        if e.admission.generation == gate.generation() {
            return true;
        }
        match gate.recheck(&e.key.tuple_from(e.opener), &e.admission) {
            Some(a) => {
                e.admission = a;
                self.stats.recheck_kept += 1;
                true
            }
            None => {
                self.remove(pos, hasher, zones);
                self.stats.recheck_cut += 1;
                false
            }
        }
    }

    /// Asks `gate` whether a packet from `side` of the live entry at `pos` may go on; counts a
    /// refusal as denied. The packet has not touched the entry's state.
    fn pass(&mut self, pos: usize, side: Side, gate: &mut impl Gate) -> bool {
        let e = &mut self.slab[pos];
        let conn = Connection::new(&e.key, e.opener);
        let passed = gate.pass(&conn, e.dir(side), &mut e.admission);
        if !passed {
            self.stats.denied += 1;
        }
        passed
    }

    /// Live entries of `zone` in this shard.
    fn count_zone(&self, zone: u16) -> u32 {
        self.slab
            .iter()
            .filter(|e| e.live && e.key.zone() == zone)
            .count() as u32
    }

    /// An unreplied connection near `hash`'s slab position that early drop would evict.
    fn early_drop_victim(&self, hash: u64) -> Option<usize> {
        let len = self.slab.len();
        if len == 0 {
            return None;
        }
        let start = (hash as usize) % len;
        (0..EARLY_DROP_SCAN.min(len))
            .map(|i| (start + i) % len)
            .find(|&p| self.slab[p].live && !self.slab[p].assured)
    }

    /// Evicts an unreplied connection near `hash`'s slab position, if there is one.
    fn early_drop(&mut self, hash: u64, hasher: &DefaultHashBuilder, zones: &ZoneCounts) -> bool {
        match self.early_drop_victim(hash) {
            Some(p) => {
                self.remove(p, hasher, zones);
                self.stats.early_drops += 1;
                true
            }
            None => false,
        }
    }
}

/// Live connection counts of the zones that have a limit (only those are counted, so inserts in
/// unlimited zones touch no shared memory). Each shard adds its share under its own lock when a
/// limit is set and removes it when the limit is lifted.
struct ZoneCounts(Box<[AtomicU32]>);

impl ZoneCounts {
    fn new() -> Self {
        ZoneCounts((0..=u16::MAX).map(|_| AtomicU32::new(0)).collect())
    }
    fn get(&self, zone: u16) -> u32 {
        self.0[usize::from(zone)].load(Ordering::Relaxed)
    }
    fn add(&self, zone: u16, n: u32) {
        self.0[usize::from(zone)].fetch_add(n, Ordering::Relaxed);
    }
    fn sub(&self, zone: u16, n: u32) {
        self.0[usize::from(zone)].fetch_sub(n, Ordering::Relaxed);
    }
    fn inc(&self, zone: u16) {
        self.add(zone, 1);
    }
    fn dec(&self, zone: u16) {
        self.sub(zone, 1);
    }
}

/// A packet's connection key, which end of it the packet comes from, and the key's hash, as
/// [`Table::prepare`] computed them.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    key: ConnKey,
    side: Side,
    hash: u64,
}

/// The connection table. See the crate docs for the threading contract.
pub struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// Where each shard's index buckets are, to prefetch them without the lock.
    lines: Box<[Lines]>,
    hasher: DefaultHashBuilder,
    zones: ZoneCounts,
    /// Shard the next [`Table::expire`] call sweeps.
    next_expire: AtomicUsize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Table {
    /// An empty table. Memory for `max_connections` is reserved up front, so inserts never
    /// grow anything.
    pub fn new(config: Config) -> Self {
        let shards = config.shards.max(1);
        let cap = config.max_connections.div_ceil(shards);
        let shards: Box<[Mutex<Shard>]> = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    slab: Vec::with_capacity(cap),
                    index: Index::with_capacity(cap),
                    free: NO_SLOT,
                    live: 0,
                    cap,
                    cursor: 0,
                    default_policy: ZonePolicy::default(),
                    policies: HashMap::new(),
                    stats: Stats::default(),
                })
            })
            .collect();
        Table {
            lines: shards.iter().map(|s| lock(s).index.lines()).collect(),
            shards,
            hasher: DefaultHashBuilder::default(),
            zones: ZoneCounts::new(),
            next_expire: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_of(hash, self.shards.len())])
    }

    /// Tracks one packet at time `now` (nanoseconds) and says what it is, admitting every new
    /// connection (plain connection tracking, no firewall).
    pub fn process(&self, pkt: &Packet, now: u64) -> CtState {
        self.process_gated(pkt, now, &mut Open)
    }

    /// Tracks one packet at time `now` (nanoseconds) and says what it is. A valid first packet
    /// of a connection creates its entry if `gate` admits it; an entry admitted under another
    /// generation than the gate's is rechecked first and removed if the gate refuses it. A
    /// refused or removed connection yields the empty state (nothing tracked); an invalid
    /// packet changes nothing.
    pub fn process_gated(&self, pkt: &Packet, now: u64, gate: &mut impl Gate) -> CtState {
        self.process_prepared(pkt, &self.prepare(pkt), now, gate)
    }

    /// Hashes the connection `pkt` belongs to (for an ICMP error, the one it quotes) and starts
    /// loading its index bucket. A batch prepares all its packets before it processes any
    /// ([`Table::process_prepared`]), so that their cache misses overlap.
    #[inline]
    pub fn prepare(&self, pkt: &Packet) -> Prepared {
        let tuple = match &pkt.l4 {
            L4::IcmpError { quoted } => quoted,
            _ => &pkt.tuple,
        };
        let (key, side) = ConnKey::of(tuple);
        let hash = self.hasher.hash_one(key);
        if let Some(lines) = self.lines.get(shard_of(hash, self.lines.len())) {
            lines.prefetch(hash);
        }
        Prepared { key, side, hash }
    }

    /// [`Table::process_gated`] for a packet that [`Table::prepare`] prepared as `prep`.
    pub fn process_prepared(
        &self,
        pkt: &Packet,
        prep: &Prepared,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        if let L4::IcmpError { .. } = pkt.l4 {
            return self.related(prep, now, gate);
        }
        let Prepared { key, side, hash } = *prep;
        let mut shard = self.shard(hash);
        if pkt.l4 == L4::Fragment {
            return shard.invalid(InvalidReason::Fragment);
        }
        if let Some(pos) = shard.find(hash, &key) {
            let policy = shard.policy(key.zone());
            if shard.slab[pos].expires(policy) > now {
                if !shard.recheck(pos, gate, &self.hasher, &self.zones) {
                    return CtState::default();
                }
                if !shard.pass(pos, side, gate) {
                    return CtState::default();
                }
                return self.update(&mut shard, pos, hash, side, pkt, now, gate);
            }
            if gate.wants_events() {
                gate.event(&shard.slab[pos].event(EventKind::Expired, now));
            }
            shard.remove(pos, &self.hasher, &self.zones);
            shard.stats.expired += 1;
        }
        self.insert(&mut shard, hash, key, side, pkt, now, gate)
    }

    /// Applies `pkt` to the live entry at `pos`, whose key hashes to `hash`.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        shard: &mut Shard,
        pos: usize,
        hash: u64,
        side: Side,
        pkt: &Packet,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        let e = &mut shard.slab[pos];
        let dir = e.dir(side);
        if let (L4::Tcp(seg), Some(tcp)) = (&pkt.l4, &mut e.tcp) {
            let before = tcp.state();
            match tcp.update(dir, seg) {
                TcpVerdict::Valid(state) => {
                    if !e.assured && state >= TcpState::Established {
                        e.assured = true;
                    }
                    if gate.wants_events() {
                        if let Some(kind) = tcp_event(before, state) {
                            gate.event(&e.event(kind, now));
                        }
                    }
                }
                TcpVerdict::Ignored => {}
                TcpVerdict::Reopen => {
                    let key = e.key;
                    shard.remove(pos, &self.hasher, &self.zones);
                    return self.insert(shard, hash, key, side, pkt, now, gate);
                }
                TcpVerdict::Invalid(reason) => return shard.invalid(reason),
            }
        }
        let d = dir as usize;
        e.packets[d] = e.packets[d].wrapping_add(1);
        e.bytes[d] += u64::from(pkt.len);
        // The first line is written only when something in it changes.
        let now_s = second(now);
        if e.last_seen != now_s {
            e.last_seen = now_s;
        }
        if dir == Dir::Reply && !e.seen_reply {
            e.seen_reply = true;
            e.assured |= e.tcp.is_none();
            if e.tcp.is_none() && gate.wants_events() {
                gate.event(&e.event(EventKind::Established, now));
            }
        }
        e.state(dir)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: ConnKey,
        side: Side,
        pkt: &Packet,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        let policy = *shard.policy(key.zone());
        let tcp = match pkt.l4 {
            L4::Tcp(seg) => match TcpConn::new(&seg, policy.tcp_pickup) {
                Ok(c) => Some(c),
                Err(reason) => return shard.invalid(reason),
            },
            L4::IcmpEcho { reply: true } => return shard.invalid(InvalidReason::IcmpUnrelated),
            _ => None,
        };
        let Some(admission) = gate.admit(pkt) else {
            shard.stats.denied += 1;
            return CtState::default();
        };
        let zone_full = policy
            .limit
            .is_some_and(|l| self.zones.get(key.zone()) >= l);
        if zone_full
            || (shard.live >= shard.cap && !shard.early_drop(hash, &self.hasher, &self.zones))
        {
            shard.stats.refused += 1;
            return shard.invalid(InvalidReason::TableFull);
        }
        let entry = Entry {
            key,
            tcp,
            opener: side,
            live: true,
            seen_reply: false,
            assured: false,
            mark: 0,
            admission,
            packets: [1, 0],
            bytes: [u64::from(pkt.len), 0],
            created: now,
            last_seen: second(now),
        };
        self.place(shard, hash, entry, policy.limit.is_some());
        shard.stats.inserts += 1;
        if gate.wants_events() {
            gate.event(&entry.event(EventKind::New, now));
        }
        entry.state(Dir::Original)
    }

    /// Stores `entry`, whose key hashes to `hash`, in `shard`, and counts it in its zone if
    /// the zone is `limited`.
    fn place(&self, shard: &mut Shard, hash: u64, entry: Entry, limited: bool) {
        let pos = shard.alloc(entry);
        // The shard holds at most `cap` entries and the index has room for them all.
        shard.index.insert(hash, pos);
        if limited {
            self.zones.inc(entry.key.zone());
        }
    }

    /// An ICMP error is related if the packet it quotes belongs to a tracked connection and
    /// `gate` lets it travel that connection.
    fn related(&self, quoted: &Prepared, now: u64, gate: &mut impl Gate) -> CtState {
        let Prepared {
            key,
            side: quoted_side,
            hash,
        } = *quoted;
        let mut shard = self.shard(hash);
        match shard.find(hash, &key) {
            Some(pos) if shard.slab[pos].expires(shard.policy(key.zone())) > now => {
                // The error travels against the quoted packet, as if sent from its other end.
                let side = quoted_side.other();
                if !shard.pass(pos, side, gate) {
                    return CtState::default();
                }
                let rpl = if shard.slab[pos].dir(side) == Dir::Reply {
                    CtState::REPLY
                } else {
                    CtState::default()
                };
                CtState::TRACKED | CtState::RELATED | rpl
            }
            _ => shard.invalid(InvalidReason::IcmpUnrelated),
        }
    }

    /// Removes timed-out connections from one shard (the next in turn), looking at no more than
    /// `budget` slots; returns how many were removed.
    pub fn expire(&self, now: u64, budget: usize) -> usize {
        self.expire_with(now, budget, |_| {})
    }

    /// [`Table::expire`], calling `expired` with the event of each connection removed.
    pub fn expire_with(&self, now: u64, budget: usize, mut expired: impl FnMut(&Event)) -> usize {
        let i = self.next_expire.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let mut shard = lock(&self.shards[i]);
        let mut removed = 0;
        for _ in 0..budget.min(shard.slab.len()) {
            if shard.cursor >= shard.slab.len() {
                shard.cursor = 0;
            }
            let pos = shard.cursor;
            shard.cursor += 1;
            let e = &shard.slab[pos];
            if e.live && e.expires(shard.policy(e.key.zone())) <= now {
                expired(&e.event(EventKind::Expired, now));
                shard.remove(pos, &self.hasher, &self.zones);
                shard.stats.expired += 1;
                removed += 1;
            }
        }
        removed
    }

    /// Rechecks, with `gate`, every connection admitted under another generation than the
    /// gate's, one shard at a time; removes those the gate refuses.
    pub fn recheck(&self, gate: &mut impl Gate) -> Recheck {
        let mut done = Recheck::default();
        for s in self.shards.iter() {
            let mut shard = lock(s);
            for pos in 0..shard.slab.len() {
                let e = &shard.slab[pos];
                if !e.live || e.admission.generation == gate.generation() {
                    continue;
                }
                if shard.recheck(pos, gate, &self.hasher, &self.zones) {
                    done.kept += 1;
                } else {
                    done.cut += 1;
                }
            }
        }
        done
    }

    /// Connections matching `filter`, at most `limit` of them.
    pub fn dump(&self, filter: &Filter, limit: usize) -> Vec<ConnInfo> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for e in shard.slab.iter().filter(|e| e.live && filter.matches(e)) {
                if out.len() >= limit {
                    return out;
                }
                out.push(e.info(shard.policy(e.key.zone())));
            }
        }
        out
    }

    /// Removes every connection matching `filter`; returns how many.
    pub fn flush(&self, filter: &Filter) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut shard = lock(s);
            for pos in 0..shard.slab.len() {
                if shard.slab[pos].live && filter.matches(&shard.slab[pos]) {
                    shard.remove(pos, &self.hasher, &self.zones);
                    shard.stats.flushed += 1;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Sets the policy of `zone` (`None`: back to the default).
    pub fn set_policy(&self, zone: u16, policy: Option<ZonePolicy>) {
        let limited = policy.is_some_and(|p| p.limit.is_some());
        for s in self.shards.iter() {
            let mut shard = lock(s);
            let was_limited = shard.policy(zone).limit.is_some();
            if limited != was_limited {
                let n = shard.count_zone(zone);
                if limited {
                    self.zones.add(zone, n);
                } else {
                    self.zones.sub(zone, n);
                }
            }
            match policy {
                Some(p) => shard.policies.insert(zone, p),
                None => shard.policies.remove(&zone),
            };
        }
    }

    /// The policy in force for `zone`.
    pub fn policy(&self, zone: u16) -> ZonePolicy {
        *lock(&self.shards[0]).policy(zone)
    }

    /// Connections per zone, for zones that have any. Scans the table: for the control path.
    pub fn zone_counts(&self) -> Vec<(u16, u32)> {
        let mut counts: HashMap<u16, u32> = HashMap::new();
        for s in self.shards.iter() {
            for e in lock(s).slab.iter().filter(|e| e.live) {
                *counts.entry(e.key.zone()).or_default() += 1;
            }
        }
        let mut out: Vec<(u16, u32)> = counts.into_iter().collect();
        out.sort_unstable();
        out
    }

    /// Counters summed over all shards.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.shards.iter() {
            let shard = lock(s);
            total.add(&shard.stats);
            total.entries += shard.live as u64;
        }
        total
    }
}

/// The event of a TCP connection going from state `before` to `now`: established when the
/// handshake completes, closed when it enters TIME_WAIT or CLOSE.
fn tcp_event(before: TcpState, now: TcpState) -> Option<EventKind> {
    if before == now {
        return None;
    }
    match now {
        TcpState::Established => Some(EventKind::Established),
        TcpState::TimeWait | TcpState::Close if before < TcpState::TimeWait => {
            Some(EventKind::Closed)
        }
        _ => None,
    }
}

/// The shard, of `shards`, that a key hashing to `hash` lives in.
///
/// The shard's index uses the same hash: its home bucket from the low bits and its 16-bit tag
/// from bits 32 to 47 (see [`crate::index`]). A shard picked from either would give every key
/// in it the same tag (so the tag filter never rejects a way and each probe loads entries) or
/// crowd its keys into a few buckets. So the shard comes from the top 16 bits, scaled to
/// `shards`, which neither uses for any shard of fewer than 2^32 buckets.
#[inline]
fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 48) * shards as u64) >> 16) as usize
}

/// Locks a shard.
#[inline]
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hashes of `n` distinct keys, as the table computes them.
    fn hashes(n: u32) -> Vec<u64> {
        let hasher = DefaultHashBuilder::default();
        (0..n)
            .map(|i| {
                let t = Tuple {
                    src: Addr::v4(i.to_be_bytes()),
                    dport: 80,
                    proto: proto::TCP,
                    ..Tuple::default()
                };
                hasher.hash_one(ConnKey::of(&t).0)
            })
            .collect()
    }

    #[test]
    fn tags_inside_one_shard_are_spread() {
        let mut in_shard: Vec<u64> = hashes(512_000)
            .into_iter()
            .filter(|&h| shard_of(h, 256) == 7)
            .collect();
        assert!(in_shard.len() > 1_500, "{} keys in shard 7", in_shard.len());
        // About 2,000 keys over 65,535 tags: a few share one by chance (about 30). Tags taken
        // from the shard's own bits would all be the same.
        in_shard.sort_unstable_by_key(|&h| crate::index::tag(h));
        in_shard.dedup_by_key(|h| crate::index::tag(*h));
        let keys = in_shard.len();
        assert!(keys > 1_450, "only {keys} distinct tags in one shard");
    }

    #[test]
    fn shards_are_even_for_any_count() {
        for shards in [1, 3, 256, 1000] {
            let mut per = vec![0u32; shards];
            let n = 1_000 * shards as u32;
            for h in hashes(n) {
                per[shard_of(h, shards)] += 1;
            }
            // 1,000 keys each on average; a shard far off means the bits are not spread.
            assert!(
                per.iter().all(|&k| (800..1_200).contains(&k)),
                "{shards} shards: {:?}",
                (per.iter().min(), per.iter().max())
            );
        }
    }
}
