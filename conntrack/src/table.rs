//! The connection table: sharded, bounded, with per-zone policies and budgeted expiry.
//!
//! Each shard keeps its connections in a slab of versioned slots (see [`crate::slot`]),
//! allocated once and never freed while the table lives, with dead slots on a free list threaded
//! through the slots themselves, and an [`Index`] of slab positions. A million connections cost
//! 128 bytes each (two cache lines, see `table/entry.rs`) plus about 8 bytes of index, and
//! removing one touches one index bucket.
//!
//! A packet hashes its canonical key once ([`Table::prepare`], which also prefetches its index
//! bucket); a [`Run`] of packets like it (a stream's frames, back to back in one batch) is
//! processed as that one packet, with every packet of the run counted. Then:
//! - **A plain established packet takes no lock.** It looks its key up in the index, claims
//!   the entry's slot (one compare-and-swap on the slot's version), checks under the claim that
//!   the slot still holds its live connection, seen this very second and admitted under the
//!   gate's rule generation, reading the slot's words in place. If it changes nothing but
//!   counters and TCP windows (no TCP state, no first reply, no new second, not invalid), it asks
//!   the gate and writes just the words that change; releasing the claim bumps the version.
//! - **Anything else takes the shard's lock** and does all of its work there: a miss, a new
//!   connection, a TCP state change, a first reply, the first packet of a second (which moves
//!   `last_seen`: so the locked path, which knows the zone's timeouts, is the one to decide a
//!   connection has not timed out), an expired or rechecked connection, an invalid packet, an
//!   ICMP error or a fragment. A packet sent to the locked path has not asked the gate yet.
//! - **Writers** (insert, removal, the locked path's updates, expiry, flush, recheck, import)
//!   hold the shard's lock, which orders them among themselves and guards the free list and
//!   the index, and claim each slot they write, so a lock-free packet never sees an entry
//!   half written and never updates one that was removed or reused: it checks the key and the
//!   live flag under its own claim. Readers of the control path copy entries whole.

use parking_lot::{Mutex, MutexGuard};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::event::{Event, EventKind};
use crate::gate::{Admission, Connection, Gate, Open, Recheck};
use crate::index::Index;
use crate::key::{Addr, ConnKey, Side, Tuple};
use crate::packet::{Packet, Run, L4};
use crate::state::{CtState, Dir, InvalidReason};
use crate::tcp::{TcpConn, TcpState};
use crate::timeout::ZonePolicy;
use entry::{second, second_begun, Counted, Entry, Slab, Step};

mod entry;
mod peek;
mod persist;

pub use peek::Peek;
pub use persist::{NotImported, Saved};

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
    /// When it was created, to the second (rounded down).
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

/// One shard: its entries and their index, which packets read without the lock, and the lock
/// over its bookkeeping, which every writer takes.
struct Shard {
    slab: Slab,
    index: Index,
    books: Mutex<Books>,
}

/// What a shard's writers keep behind its lock.
struct Books {
    /// First free slot in the slab, or [`NO_SLOT`].
    free: u32,
    /// Slots ever used: those past it have never held an entry.
    used: usize,
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

impl Books {
    fn policy(&self, zone: u16) -> &ZonePolicy {
        self.policies.get(&zone).unwrap_or(&self.default_policy)
    }
}

impl Shard {
    fn lock(&self) -> Locked<'_> {
        Locked {
            slab: &self.slab,
            index: &self.index,
            books: self.books.lock(),
        }
    }
}

/// A shard whose lock is held: only one of these exists per shard at a time.
struct Locked<'a> {
    slab: &'a Slab,
    index: &'a Index,
    books: MutexGuard<'a, Books>,
}

impl Locked<'_> {
    fn find(&self, hash: u64, key: &ConnKey) -> Option<usize> {
        let slab = self.slab;
        self.index
            .find(hash, |i| slab.key(i as usize) == *key)
            .map(|i| i as usize)
    }

    /// Live entries at slab positions `0..used`, with their positions.
    fn live(&self) -> impl Iterator<Item = (usize, Entry)> + '_ {
        (0..self.books.used)
            .map(|pos| (pos, self.slab.get(pos)))
            .filter(|(_, e)| e.live)
    }

    /// Counts `packets` invalid packets for `reason`.
    fn invalid(&mut self, reason: InvalidReason, packets: u32) -> CtState {
        self.books.stats.invalid[reason as usize] += u64::from(packets);
        CtState::TRACKED | CtState::INVALID
    }

    /// Stores `entry` in a free slot; returns its position.
    fn alloc(&mut self, entry: &Entry) -> u32 {
        let b = &mut *self.books;
        b.live += 1;
        let pos = if b.free == NO_SLOT {
            b.used += 1;
            (b.used - 1) as u32
        } else {
            let pos = b.free;
            b.free = self.slab.get(pos as usize).mark;
            pos
        };
        self.slab.set(pos as usize, entry);
        pos
    }

    /// Removes the live entry at slab position `pos`.
    fn remove(&mut self, pos: usize, hasher: &DefaultHashBuilder, zones: &ZoneCounts) {
        let next = self.books.free;
        let key = self.slab.update(pos, |e| {
            e.live = false;
            e.mark = next;
            e.key
        });
        self.books.free = pos as u32;
        self.books.live -= 1;
        self.index.remove(hasher.hash_one(key), pos as u32);
        if self.books.policy(key.zone()).limit.is_some() {
            zones.dec(key.zone());
        }
    }

    /// Makes sure the live entry `e` at `pos` is admitted under `gate`'s generation: rechecks it
    /// if not, and removes it if the gate refuses. Returns whether it is still there. (The
    /// generation changes only under the lock, so the copy tells; the recheck itself reads the
    /// admission under the slot's claim, which a packet may have completed since the copy.)
    fn recheck(
        &mut self,
        pos: usize,
        e: &Entry,
        gate: &mut impl Gate,
        hasher: &DefaultHashBuilder,
        zones: &ZoneCounts,
    ) -> bool {
        if e.admission.generation == gate.generation() {
            return true;
        }
        let kept = self.slab.update(pos, |e| {
            let kept = gate.recheck(&e.key.tuple_from(e.opener), &e.admission);
            if let Some(a) = kept {
                e.admission = a;
            }
            kept.is_some()
        });
        if kept {
            self.books.stats.recheck_kept += 1;
        } else {
            self.remove(pos, hasher, zones);
            self.books.stats.recheck_cut += 1;
        }
        kept
    }

    /// Asks `gate` whether a run of `packets` from `side` of the live entry at `pos` may go on,
    /// and if so applies `then` to the entry, holding its slot throughout; counts a refusal as
    /// that many denied.
    fn pass<R>(
        &mut self,
        pos: usize,
        side: Side,
        packets: u32,
        gate: &mut impl Gate,
        then: impl FnOnce(&mut Entry, &mut dyn FnMut(&Event)) -> R,
    ) -> Option<R> {
        let done = self.slab.update(pos, |e| {
            let conn = Connection::new(&e.key, e.opener);
            if !gate.pass(&conn, e.dir(side), &mut e.admission) {
                return None;
            }
            Some(then(e, &mut |event| gate.event(event)))
        });
        if done.is_none() {
            self.books.stats.denied += u64::from(packets);
        }
        done
    }

    /// Live entries of `zone` in this shard.
    fn count_zone(&self, zone: u16) -> u32 {
        self.live().filter(|(_, e)| e.key.zone() == zone).count() as u32
    }

    /// An unreplied connection near `hash`'s slab position that early drop would evict.
    fn early_drop_victim(&self, hash: u64) -> Option<usize> {
        let len = self.books.used;
        if len == 0 {
            return None;
        }
        let start = (hash as usize) % len;
        (0..EARLY_DROP_SCAN.min(len))
            .map(|i| (start + i) % len)
            .find(|&p| {
                let e = self.slab.get(p);
                e.live && !e.assured
            })
    }

    /// Evicts an unreplied connection near `hash`'s slab position, if there is one.
    fn early_drop(&mut self, hash: u64, hasher: &DefaultHashBuilder, zones: &ZoneCounts) -> bool {
        match self.early_drop_victim(hash) {
            Some(p) => {
                self.remove(p, hasher, zones);
                self.books.stats.early_drops += 1;
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
    shards: Box<[Shard]>,
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
    /// grow anything (the kernel maps its pages as connections first touch them).
    pub fn new(config: Config) -> Self {
        let shards = config.shards.max(1);
        let cap = config.max_connections.div_ceil(shards);
        Table {
            shards: (0..shards)
                .map(|_| Shard {
                    slab: Slab::new(cap),
                    index: Index::with_capacity(cap),
                    books: Mutex::new(Books {
                        free: NO_SLOT,
                        used: 0,
                        live: 0,
                        cap,
                        cursor: 0,
                        default_policy: ZonePolicy::default(),
                        policies: HashMap::new(),
                        stats: Stats::default(),
                    }),
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            zones: ZoneCounts::new(),
            next_expire: AtomicUsize::new(0),
        }
    }

    /// The shard a key hashing to `hash` lives in.
    #[inline]
    fn shard_of(&self, hash: u64) -> &Shard {
        &self.shards[shard_of(hash, self.shards.len())]
    }

    /// The shard a key hashing to `hash` lives in, locked.
    fn shard(&self, hash: u64) -> Locked<'_> {
        self.shard_of(hash).lock()
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
        self.process_prepared(pkt, &self.prepare(pkt), Run::one(pkt), now, gate)
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
        self.shard_of(hash).index.prefetch(hash);
        Prepared { key, side, hash }
    }

    /// [`Table::process_gated`] for the `run` of packets like `pkt`, which [`Table::prepare`]
    /// prepared as `prep`: the state of every one of them.
    pub fn process_prepared(
        &self,
        pkt: &Packet,
        prep: &Prepared,
        run: Run,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        match pkt.l4 {
            L4::IcmpError { .. } => return self.related(prep, run, now, gate),
            L4::Fragment => {
                return self
                    .shard(prep.hash)
                    .invalid(InvalidReason::Fragment, run.packets)
            }
            _ => {}
        }
        if let Some(state) = self.established(pkt, prep, run, now, gate) {
            return state;
        }
        let Prepared { key, side, hash } = *prep;
        let mut shard = self.shard(hash);
        if let Some(pos) = shard.find(hash, &key) {
            let e = shard.slab.get(pos);
            if e.expires(shard.books.policy(key.zone())) > now {
                if !shard.recheck(pos, &e, gate, &self.hasher, &self.zones) {
                    return CtState::default();
                }
                return self.update(&mut shard, pos, hash, side, pkt, run, now, gate);
            }
            if gate.wants_events() {
                gate.event(&e.event(EventKind::Expired, now));
            }
            shard.remove(pos, &self.hasher, &self.zones);
            shard.books.stats.expired += 1;
        }
        self.insert(&mut shard, hash, key, side, pkt, run, now, gate)
    }

    /// A plain established packet, without the shard's lock (see the module docs): its state,
    /// or `None` to take the locked path, which then does all the work (the gate was not asked).
    #[inline]
    fn established(
        &self,
        pkt: &Packet,
        prep: &Prepared,
        run: Run,
        now: u64,
        gate: &mut impl Gate,
    ) -> Option<CtState> {
        let shard = self.shard_of(prep.hash);
        // The first position with the key's tag; a tag shared by two keys goes the locked way.
        let pos = shard.index.find(prep.hash, |_| true)?;
        let mut claim = shard.slab.slot(pos as usize)?.claim();
        match entry::count(&mut claim, &prep.key, prep.side, pkt, run, now, gate)? {
            Counted::Passed(state) => Some(state),
            Counted::Denied => {
                drop(claim);
                shard.lock().books.stats.denied += u64::from(run.packets);
                Some(CtState::default())
            }
        }
    }

    /// Asks `gate` whether the `run` of packets like `pkt` may travel the live entry at `pos`
    /// (whose key hashes to `hash`), and if so applies it.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        shard: &mut Locked<'_>,
        pos: usize,
        hash: u64,
        side: Side,
        pkt: &Packet,
        run: Run,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        let wants_events = gate.wants_events();
        let applied = shard.pass(pos, side, run.packets, gate, |e, event| {
            let was = *e;
            let step = e.apply(e.dir(side), pkt, run, now);
            if step == Step::Taken && wants_events {
                if let Some(kind) = e.event_since(&was) {
                    event(&e.event(kind, now));
                }
            }
            (step, *e)
        });
        let Some((step, e)) = applied else {
            return CtState::default();
        };
        match step {
            Step::Taken => e.state(e.dir(side)),
            Step::Invalid(reason) => shard.invalid(reason, run.packets),
            Step::Reopen => {
                shard.remove(pos, &self.hasher, &self.zones);
                self.insert(shard, hash, e.key, side, pkt, run, now, gate)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        shard: &mut Locked<'_>,
        hash: u64,
        key: ConnKey,
        side: Side,
        pkt: &Packet,
        run: Run,
        now: u64,
        gate: &mut impl Gate,
    ) -> CtState {
        let policy = *shard.books.policy(key.zone());
        let n = run.packets;
        let tcp = match pkt.l4 {
            L4::Tcp(seg) => match TcpConn::new(&seg, policy.tcp_pickup) {
                Ok(c) => Some(c),
                Err(reason) => return shard.invalid(reason, n),
            },
            L4::IcmpEcho { reply: true } => return shard.invalid(InvalidReason::IcmpUnrelated, n),
            _ => None,
        };
        let Some(admission) = gate.admit(pkt) else {
            shard.books.stats.denied += u64::from(n);
            return CtState::default();
        };
        let zone_full = policy
            .limit
            .is_some_and(|l| self.zones.get(key.zone()) >= l);
        if zone_full
            || (shard.books.live >= shard.books.cap
                && !shard.early_drop(hash, &self.hasher, &self.zones))
        {
            shard.books.stats.refused += u64::from(n);
            return shard.invalid(InvalidReason::TableFull, n);
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
            packets: [n, 0],
            bytes: [run.bytes, 0],
            created: second_begun(now),
            last_seen: second(now),
        };
        self.place(shard, hash, &entry, policy.limit.is_some());
        shard.books.stats.inserts += 1;
        if gate.wants_events() {
            gate.event(&entry.event(EventKind::New, now));
        }
        entry.state(Dir::Original)
    }

    /// Stores `entry`, whose key hashes to `hash`, in `shard`, and counts it in its zone if
    /// the zone is `limited`.
    fn place(&self, shard: &mut Locked<'_>, hash: u64, entry: &Entry, limited: bool) {
        let pos = shard.alloc(entry);
        // The shard holds at most `cap` entries and the index has room for them all.
        shard.index.insert(hash, pos);
        if limited {
            self.zones.inc(entry.key.zone());
        }
    }

    /// An ICMP error is related if the packet it quotes belongs to a tracked connection and
    /// `gate` lets it travel that connection (a `run` of them all is).
    fn related(&self, quoted: &Prepared, run: Run, now: u64, gate: &mut impl Gate) -> CtState {
        let Prepared {
            key,
            side: quoted_side,
            hash,
        } = *quoted;
        let mut shard = self.shard(hash);
        let found = shard.find(hash, &key).map(|pos| (pos, shard.slab.get(pos)));
        match found {
            Some((pos, e)) if e.expires(shard.books.policy(key.zone())) > now => {
                // The error travels against the quoted packet, as if sent from its other end.
                let side = quoted_side.other();
                if shard
                    .pass(pos, side, run.packets, gate, |_, _| ())
                    .is_none()
                {
                    return CtState::default();
                }
                let rpl = if e.dir(side) == Dir::Reply {
                    CtState::REPLY
                } else {
                    CtState::default()
                };
                CtState::TRACKED | CtState::RELATED | rpl
            }
            _ => shard.invalid(InvalidReason::IcmpUnrelated, run.packets),
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
        let mut shard = self.shards[i].lock();
        let mut removed = 0;
        for _ in 0..budget.min(shard.books.used) {
            if shard.books.cursor >= shard.books.used {
                shard.books.cursor = 0;
            }
            let pos = shard.books.cursor;
            shard.books.cursor += 1;
            let e = shard.slab.get(pos);
            if e.live && e.expires(shard.books.policy(e.key.zone())) <= now {
                expired(&e.event(EventKind::Expired, now));
                shard.remove(pos, &self.hasher, &self.zones);
                shard.books.stats.expired += 1;
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
            let mut shard = s.lock();
            for pos in 0..shard.books.used {
                let e = shard.slab.get(pos);
                if !e.live || e.admission.generation == gate.generation() {
                    continue;
                }
                if shard.recheck(pos, &e, gate, &self.hasher, &self.zones) {
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
            let shard = s.lock();
            for (_, e) in shard.live().filter(|(_, e)| filter.matches(e)) {
                if out.len() >= limit {
                    return out;
                }
                out.push(e.info(shard.books.policy(e.key.zone())));
            }
        }
        out
    }

    /// Removes every connection matching `filter`; returns how many.
    pub fn flush(&self, filter: &Filter) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut shard = s.lock();
            for pos in 0..shard.books.used {
                let e = shard.slab.get(pos);
                if e.live && filter.matches(&e) {
                    shard.remove(pos, &self.hasher, &self.zones);
                    shard.books.stats.flushed += 1;
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
            let mut shard = s.lock();
            let was_limited = shard.books.policy(zone).limit.is_some();
            if limited != was_limited {
                let n = shard.count_zone(zone);
                if limited {
                    self.zones.add(zone, n);
                } else {
                    self.zones.sub(zone, n);
                }
            }
            match policy {
                Some(p) => shard.books.policies.insert(zone, p),
                None => shard.books.policies.remove(&zone),
            };
        }
    }

    /// The policy in force for `zone`.
    pub fn policy(&self, zone: u16) -> ZonePolicy {
        *self.shards[0].books.lock().policy(zone)
    }

    /// Connections per zone, for zones that have any. Scans the table: for the control path.
    pub fn zone_counts(&self) -> Vec<(u16, u32)> {
        let mut counts: HashMap<u16, u32> = HashMap::new();
        for s in self.shards.iter() {
            for (_, e) in s.lock().live() {
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
            let books = s.books.lock();
            total.add(&books.stats);
            total.entries += books.live as u64;
        }
        total
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::proto;

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
    fn an_established_packet_takes_no_lock_and_any_other_waits_for_it() {
        use std::sync::{mpsc, Arc};
        use std::time::Duration;
        let udp = |sport, reply| {
            let t = Tuple {
                src: Addr::v4([10, 0, 0, 1]),
                dst: Addr::v4([10, 0, 0, 2]),
                sport,
                dport: 53,
                proto: proto::UDP,
                ..Tuple::default()
            };
            Packet {
                tuple: if reply { t.reversed() } else { t },
                l4: L4::Udp,
                len: 100,
            }
        };
        let t = Arc::new(Table::new(Config {
            max_connections: 100,
            shards: 1,
        }));
        // Inside second 1.
        let now = entry::NS_PER_SEC / 2;
        t.process(&udp(1, false), now);
        t.process(&udp(1, true), now);
        // A worker sends a packet each time it is told to.
        let (go, told) = mpsc::channel::<(Packet, u64)>();
        let (tx, rx) = mpsc::channel();
        let worker = {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for (p, at) in told {
                    let _ = tx.send(t.process(&p, at));
                }
            })
        };
        let (wait, a_while) = (Duration::from_secs(10), Duration::from_millis(200));
        let held = t.shards[0].books.lock();
        assert!(go.send((udp(1, false), now)).is_ok());
        assert_eq!(
            rx.recv_timeout(wait).ok(),
            Some(CtState::TRACKED | CtState::ESTABLISHED)
        );
        // A new connection needs the lock.
        assert!(go.send((udp(2, false), now)).is_ok());
        assert!(rx.recv_timeout(a_while).is_err());
        drop(held);
        assert!(rx
            .recv_timeout(wait)
            .is_ok_and(|s| s.contains(CtState::NEW)));
        // So does the first packet of a new second (it moves `last_seen`).
        let held = t.shards[0].books.lock();
        assert!(go.send((udp(1, false), 3 * now)).is_ok());
        assert!(rx.recv_timeout(a_while).is_err());
        drop(held);
        assert!(rx
            .recv_timeout(wait)
            .is_ok_and(|s| s.contains(CtState::ESTABLISHED)));
        drop(go);
        assert!(worker.join().is_ok());
        let info = t.dump(&Filter::default(), 1);
        assert_eq!(info[0].packets, [3, 1], "every packet counted");
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
