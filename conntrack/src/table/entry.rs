//! One tracked connection: what it records, what a packet does to it, and how it is stored in
//! a [`Slot`] of 15 words (a slab of them, never freed while the table lives, is a shard's
//! memory of connections).

use super::ConnInfo;
use crate::event::{Event, EventKind};
use crate::gate::{Admission, Connection, Gate};
use crate::key::{proto, ConnKey, Side};
use crate::packet::{Packet, Run, L4};
use crate::slot::{Claim, Slot};
use crate::state::{CtState, Dir, InvalidReason};
use crate::tcp::{TcpConn, TcpState, TcpVerdict};
use crate::timeout::ZonePolicy;

pub(super) const NS_PER_SEC: u64 = 1_000_000_000;
/// Words of an entry in its slot.
pub(super) const WORDS: usize = 15;

// An entry and its version are two cache lines. The first (words 0 to 7) holds what every
// packet reads: the key, the admission, when it was last seen and the flags; a plain
// established packet writes only the second: the TCP windows, the counters, and the version.
const _: () = assert!(std::mem::size_of::<Slot<WORDS>>() == 128);

/// `now` (nanoseconds) in whole seconds as entries record when they were last seen, rounded
/// up, so that a connection never times out before its timeout (and at most a second after).
pub(super) fn second(now: u64) -> u32 {
    u32::try_from(now.div_ceil(NS_PER_SEC)).unwrap_or(u32::MAX)
}

/// `now` in whole seconds rounded down, as entries record when they were created.
pub(super) fn second_begun(now: u64) -> u32 {
    u32::try_from(now / NS_PER_SEC).unwrap_or(u32::MAX)
}

/// One tracked connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub key: ConnKey,
    pub admission: Admission,
    /// The second (of `now`) of the last packet.
    pub last_seen: u32,
    /// Which end of `key` opened the connection.
    pub opener: Side,
    /// False for a free slot, whose `mark` then links to the next free slot.
    pub live: bool,
    pub seen_reply: bool,
    /// Past the point where early drop may evict it (TCP established, or replied).
    pub assured: bool,
    pub tcp: Option<TcpConn>,
    pub mark: u32,
    /// Packets per direction, wrapping at 2^32.
    pub packets: [u32; 2],
    pub bytes: [u64; 2],
    /// The second (of `now`, rounded down) it was created in.
    pub created: u32,
}

/// What [`Entry::apply`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Taken: the entry is updated.
    Taken,
    /// A SYN of a closed TCP connection: a new connection starts in its place.
    Reopen,
    /// Invalid: the entry is unchanged.
    Invalid(InvalidReason),
}

// Flag bits of word 7.
const OPENER_HI: u64 = 1;
const LIVE: u64 = 1 << 1;
const SEEN_REPLY: u64 = 1 << 2;
const ASSURED: u64 = 1 << 3;
const TCP: u64 = 1 << 4;

fn halves(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | u64::from(hi) << 32
}

/// Words 5 and 6: the admission's rules, generation and ports.
#[inline]
fn admission_words(a: &Admission) -> [u64; 2] {
    let ports = u32::from(a.ports[0]) | u32::from(a.ports[1]) << 16;
    [join(a.rules[0], a.rules[1]), join(a.generation, ports)]
}

/// The admission [`admission_words`] made `w5` and `w6` of.
#[inline]
fn admission_of(w5: u64, w6: u64) -> Admission {
    let (rule_out, rule_in) = halves(w5);
    let (generation, ports) = halves(w6);
    Admission {
        rules: [rule_out, rule_in],
        generation,
        ports: [ports as u16, (ports >> 16) as u16],
    }
}

/// The top three bytes of word 7: TCP's state and its two directions' window flags.
#[inline]
fn tcp_word7(bytes: [u8; 3]) -> u64 {
    u64::from(bytes[0]) << 40 | u64::from(bytes[1]) << 48 | u64::from(bytes[2]) << 56
}

/// Words 8 to 10: TCP's six window fields.
#[inline]
fn window_words(win: [u32; 6]) -> [u64; 3] {
    [
        join(win[0], win[1]),
        join(win[2], win[3]),
        join(win[4], win[5]),
    ]
}

/// The TCP connection stored in word 7's top bytes and words 8 to 10.
#[inline]
fn tcp_of(w7: u64, win: [u64; 3]) -> TcpConn {
    let [_, _, _, _, _, s, o_bits, r_bits] = w7.to_le_bytes();
    let (o_end, o_maxend) = halves(win[0]);
    let (o_maxwin, r_end) = halves(win[1]);
    let (r_maxend, r_maxwin) = halves(win[2]);
    TcpConn::from_parts(
        [s, o_bits, r_bits],
        [o_end, o_maxend, o_maxwin, r_end, r_maxend, r_maxwin],
    )
}

/// Which end opened the connection, from word 7's flags.
#[inline]
fn opener_of(flags: u64) -> Side {
    if flags & OPENER_HI != 0 {
        Side::Hi
    } else {
        Side::Lo
    }
}

/// The direction of a packet from the `side` end of a connection its `opener` end opened.
#[inline]
fn dir(opener: Side, side: Side) -> Dir {
    if side == opener {
        Dir::Original
    } else {
        Dir::Reply
    }
}

/// The state of a packet travelling in `dir` of a connection that has (or has not) seen a
/// reply.
#[inline]
fn state(seen_reply: bool, dir: Dir) -> CtState {
    let mut s = CtState::TRACKED;
    s = s | if seen_reply {
        CtState::ESTABLISHED
    } else {
        CtState::NEW
    };
    if dir == Dir::Reply {
        s = s | CtState::REPLY;
    }
    s
}

impl Entry {
    /// The entry as its slot stores it: key (words 0-4), admission (5-6), last seen, flags,
    /// TCP state and window flags (7), TCP windows (8-10), packets (11), bytes (12-13),
    /// created and mark (14).
    #[inline]
    pub fn to_words(self) -> [u64; WORDS] {
        let k = self.key.words();
        let (tcp_bytes, win) = self.tcp.map_or(([0; 3], [0; 6]), TcpConn::to_parts);
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        let flags = flag(self.opener == Side::Hi, OPENER_HI)
            | flag(self.live, LIVE)
            | flag(self.seen_reply, SEEN_REPLY)
            | flag(self.assured, ASSURED)
            | flag(self.tcp.is_some(), TCP);
        let [a5, a6] = admission_words(&self.admission);
        let [w8, w9, w10] = window_words(win);
        [
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            a5,
            a6,
            u64::from(self.last_seen) | flags << 32 | tcp_word7(tcp_bytes),
            w8,
            w9,
            w10,
            join(self.packets[0], self.packets[1]),
            self.bytes[0],
            self.bytes[1],
            join(self.created, self.mark),
        ]
    }

    /// The entry that [`Entry::to_words`] made `w` of.
    #[inline]
    pub fn from_words(w: &[u64; WORDS]) -> Entry {
        let (last_seen, rest) = halves(w[7]);
        let flags = u64::from(rest);
        let (p_out, p_in) = halves(w[11]);
        let (created, mark) = halves(w[14]);
        Entry {
            key: ConnKey::from_words([w[0], w[1], w[2], w[3], w[4]]),
            admission: admission_of(w[5], w[6]),
            last_seen,
            opener: opener_of(flags),
            live: flags & LIVE != 0,
            seen_reply: flags & SEEN_REPLY != 0,
            assured: flags & ASSURED != 0,
            tcp: (flags & TCP != 0).then(|| tcp_of(w[7], [w[8], w[9], w[10]])),
            mark,
            packets: [p_out, p_in],
            bytes: [w[12], w[13]],
            created,
        }
    }

    pub fn dir(&self, side: Side) -> Dir {
        dir(self.opener, side)
    }

    pub fn timeout_secs(&self, policy: &ZonePolicy) -> u32 {
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

    pub fn expires(&self, policy: &ZonePolicy) -> u64 {
        (u64::from(self.last_seen) + u64::from(self.timeout_secs(policy))) * NS_PER_SEC
    }

    /// Event `kind` of this entry at time `now`.
    pub fn event(&self, kind: EventKind, now: u64) -> Event {
        Event {
            kind,
            original: self.key.tuple_from(self.opener),
            tcp_state: self.tcp.map(|t| t.state()),
            at: now,
        }
    }

    /// The entry as [`super::Table::dump`] reports it.
    pub fn info(&self, policy: &ZonePolicy) -> ConnInfo {
        ConnInfo {
            original: self.key.tuple_from(self.opener),
            tcp_state: self.tcp.map(|t| t.state()),
            seen_reply: self.seen_reply,
            assured: self.assured,
            packets: self.packets.map(u64::from),
            bytes: self.bytes,
            created: u64::from(self.created) * NS_PER_SEC,
            last_seen: u64::from(self.last_seen) * NS_PER_SEC,
            expires: self.expires(policy),
            mark: self.mark,
            admission: self.admission,
        }
    }

    pub fn state(&self, dir: Dir) -> CtState {
        state(self.seen_reply, dir)
    }

    /// Applies the `run` of packets like `pkt`, travelling in `dir` at `now`: its TCP segment,
    /// its counters, the second it was seen in and whether it is the first reply. An invalid
    /// packet changes nothing.
    #[inline]
    pub fn apply(&mut self, dir: Dir, pkt: &Packet, run: Run, now: u64) -> Step {
        if let (L4::Tcp(seg), Some(tcp)) = (&pkt.l4, &mut self.tcp) {
            match tcp.update(dir, seg) {
                TcpVerdict::Valid(state) => self.assured |= state >= TcpState::Established,
                TcpVerdict::Ignored => {}
                TcpVerdict::Reopen => return Step::Reopen,
                TcpVerdict::Invalid(reason) => return Step::Invalid(reason),
            }
        }
        let d = dir as usize;
        self.packets[d] = self.packets[d].wrapping_add(run.packets);
        self.bytes[d] += run.bytes;
        self.last_seen = second(now);
        if dir == Dir::Reply && !self.seen_reply {
            self.seen_reply = true;
            self.assured |= self.tcp.is_none();
        }
        Step::Taken
    }

    /// The event of a packet that made `before` into this entry, if it is one: TCP's handshake
    /// done or its close, or another protocol's first reply.
    pub fn event_since(&self, before: &Entry) -> Option<EventKind> {
        match (before.tcp, self.tcp) {
            (Some(was), Some(is)) => tcp_event(was.state(), is.state()),
            _ => (!before.seen_reply && self.seen_reply).then_some(EventKind::Established),
        }
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

/// What [`count`] made of a plain established packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// Counted: the packet goes on in this state.
    Passed(CtState),
    /// The gate refused it: nothing changed.
    Denied,
}

/// Applies the `run` of packets like `pkt`, of the connection `key` from its `side` end at
/// `now`, straight on the words of the entry `claim` holds: the lock-free path's work (see the
/// table's module docs). It reads the key, the flags and the admission in place, decodes TCP
/// only for a TCP packet, and writes back only the words that change: the direction's counters,
/// TCP's windows and the admission the gate completed.
///
/// Returns `None`, having changed nothing and not asked the gate, for a packet that needs more:
/// another or a dead entry, an entry of an earlier second or rule generation, a first reply,
/// or a TCP segment that changes the state or is not valid. The locked path does all of that.
#[inline]
pub(super) fn count(
    claim: &mut Claim<'_, WORDS>,
    key: &ConnKey,
    side: Side,
    pkt: &Packet,
    run: Run,
    now: u64,
    gate: &mut impl Gate,
) -> Option<Counted> {
    let w7 = claim.word(7);
    let (last_seen, rest) = halves(w7);
    let flags = u64::from(rest);
    let (w5, w6) = (claim.word(5), claim.word(6));
    // Seen in the second still running at `now`: it cannot have timed out, whatever its zone's
    // policy, and the packet leaves `last_seen` as it is.
    let fresh = u64::from(last_seen) * NS_PER_SEC > now && second(now) == last_seen;
    if flags & LIVE == 0 || !fresh || halves(w6).0 != gate.generation() {
        return None;
    }
    if ConnKey::from_words(std::array::from_fn(|i| claim.word(i))) != *key {
        return None;
    }
    let opener = opener_of(flags);
    let dir = dir(opener, side);
    let seen_reply = flags & SEEN_REPLY != 0;
    if dir == Dir::Reply && !seen_reply {
        return None;
    }
    let tcp = match (&pkt.l4, flags & TCP != 0) {
        (L4::Tcp(seg), true) => {
            let win = [claim.word(8), claim.word(9), claim.word(10)];
            let mut tcp = tcp_of(w7, win);
            let was = tcp.state();
            match tcp.update(dir, seg) {
                TcpVerdict::Valid(now) if now == was => {
                    // Established for the first time makes it assured: a flag changes.
                    if now >= TcpState::Established && flags & ASSURED == 0 {
                        return None;
                    }
                }
                TcpVerdict::Ignored => {}
                _ => return None,
            }
            Some((tcp, win))
        }
        _ => None,
    };
    let mut admission = admission_of(w5, w6);
    if !gate.pass(&Connection::new(key, opener), dir, &mut admission) {
        return Some(Counted::Denied);
    }
    let [a5, a6] = admission_words(&admission);
    if (a5, a6) != (w5, w6) {
        claim.set(5, a5);
        claim.set(6, a6);
    }
    if let Some((tcp, win)) = tcp {
        let (bytes, fields) = tcp.to_parts();
        let new7 = w7 & 0xff_ffff_ffff | tcp_word7(bytes);
        if new7 != w7 {
            claim.set(7, new7);
        }
        for (i, (old, new)) in win.into_iter().zip(window_words(fields)).enumerate() {
            if old != new {
                claim.set(8 + i, new);
            }
        }
    }
    let d = dir as usize;
    let (out, back) = halves(claim.word(11));
    let mut packets = [out, back];
    packets[d] = packets[d].wrapping_add(run.packets);
    claim.set(11, join(packets[0], packets[1]));
    claim.set(12 + d, claim.word(12 + d) + run.bytes);
    Some(Counted::Passed(state(seen_reply, dir)))
}

/// A shard's entries, one per slot, in memory allocated once and freed only with the table:
/// a packet may read a slot without the shard's lock at any time (see [`crate::slot`]).
pub(super) struct Slab(Box<[Slot<WORDS>]>);

impl Slab {
    /// `cap` free slots.
    pub fn new(cap: usize) -> Slab {
        Slab(Slot::zeroed(cap))
    }

    /// The slot at `pos`, if there is one.
    #[inline]
    pub fn slot(&self, pos: usize) -> Option<&Slot<WORDS>> {
        self.0.get(pos)
    }

    /// The key of the entry at `pos`, for a caller that holds the shard's lock: keys are
    /// written only under it (a packet without the lock changes counters, windows and the
    /// admission, never the key), so no copy of the whole slot is needed.
    #[inline]
    pub fn key(&self, pos: usize) -> ConnKey {
        let slot = &self.0[pos];
        ConnKey::from_words(std::array::from_fn(|i| slot.word(i)))
    }

    /// A whole copy of the entry at `pos`.
    pub fn get(&self, pos: usize) -> Entry {
        Entry::from_words(&self.0[pos].look())
    }

    /// Changes the entry at `pos` with `f`, holding its slot meanwhile.
    pub fn update<R>(&self, pos: usize, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut claim = self.0[pos].claim();
        let mut e = Entry::from_words(&claim.words());
        let r = f(&mut e);
        claim.store(&e.to_words());
        r
    }

    /// Makes the entry at `pos` `entry`.
    pub fn set(&self, pos: usize, entry: &Entry) {
        self.0[pos].claim().store(&entry.to_words());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Addr, Tuple};
    use crate::tcp::{flags, TcpSegment};

    #[test]
    fn an_entry_survives_its_words() {
        let t = Tuple {
            zone: 7,
            v6: true,
            proto: proto::TCP,
            src: Addr([9; 16]),
            dst: Addr([3; 16]),
            sport: 1234,
            dport: 80,
        };
        let (key, opener) = ConnKey::of(&t);
        let syn = TcpSegment {
            seq: 0xfedc_ba98,
            window: 1000,
            flags: flags::SYN,
            wscale: Some(7),
            ..TcpSegment::default()
        };
        let mut tcp = TcpConn::new(&syn, false).ok();
        let synack = TcpSegment {
            seq: 77,
            ack: 0xfedc_ba99,
            flags: flags::SYN | flags::ACK,
            wscale: Some(3),
            ..syn
        };
        if let Some(c) = &mut tcp {
            assert!(matches!(
                c.update(Dir::Reply, &synack),
                TcpVerdict::Valid(_)
            ));
        }
        let e = Entry {
            key,
            admission: Admission {
                rules: [u32::MAX, 5],
                generation: 0x8000_0001,
                ports: [65535, 2],
            },
            last_seen: u32::MAX - 1,
            opener,
            live: true,
            seen_reply: true,
            assured: false,
            tcp,
            mark: 0xdead_beef,
            packets: [u32::MAX, 1],
            bytes: [u64::MAX, 2],
            created: 12,
        };
        let back = Entry::from_words(&e.to_words());
        assert_eq!(back.to_words(), e.to_words());
        assert_eq!(
            (back.key, back.admission, back.tcp),
            (e.key, e.admission, e.tcp)
        );
        assert_eq!(
            back.info(&ZonePolicy::default()),
            e.info(&ZonePolicy::default())
        );
        assert_eq!((back.opener, back.mark), (opener, 0xdead_beef));
        for state in TcpState::ALL {
            let (mut bytes, words) = tcp.map(TcpConn::to_parts).unwrap_or_default();
            bytes[0] = state as u8 - 1;
            assert_eq!(TcpConn::from_parts(bytes, words).state(), state);
        }
    }
}
