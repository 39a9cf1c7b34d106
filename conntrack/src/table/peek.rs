//! A packet looked up without being tracked: what [`Table::process_gated`] would make of it, on
//! copies, with nothing in the table changed and nothing counted. For a live packet trace.

use std::hash::BuildHasher;

use super::{ConnInfo, Entry, Table};
use crate::gate::{Admission, Connection, Gate};
use crate::key::ConnKey;
use crate::packet::{Packet, L4};
use crate::state::{CtState, Dir, InvalidReason};
use crate::tcp::{TcpConn, TcpVerdict};

/// What [`Table::peek`] found and what the packet would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The live connection the packet (or the packet an ICMP error quotes) belongs to, as it
    /// is in the table.
    pub entry: Option<ConnInfo>,
    /// The state the packet would get; empty if the gate would refuse it.
    pub state: CtState,
    /// Why the packet would be invalid, if it would.
    pub invalid: Option<InvalidReason>,
    /// The connection the packet would create, admitted so (a TCP SYN of a closed connection
    /// creates one too, in place of the old).
    pub creates: Option<Admission>,
}

impl Table {
    /// What [`Table::process_gated`] would do with `pkt` at time `now`, without doing it: the
    /// entry is looked up, and a copy of it is updated, rechecked and passed through `gate`.
    /// The gate must not count what it is shown.
    pub fn peek(&self, pkt: &Packet, now: u64, gate: &mut impl Gate) -> Peek {
        let quoted = match pkt.l4 {
            L4::IcmpError { quoted } => Some(quoted),
            _ => None,
        };
        let (key, side) = ConnKey::of(&quoted.unwrap_or(pkt.tuple));
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        let policy = *shard.books.policy(key.zone());
        let live = shard
            .find(hash, &key)
            .map(|pos| shard.slab.get(pos))
            .filter(|e| e.expires(&policy) > now);
        let mut peek = Peek {
            entry: live.map(|e| e.info(&policy)),
            state: CtState::default(),
            invalid: None,
            creates: None,
        };
        let invalid = |mut peek: Peek, reason| {
            peek.state = CtState::TRACKED | CtState::INVALID;
            peek.invalid = Some(reason);
            peek
        };
        if quoted.is_some() {
            let Some(mut e) = live else {
                return invalid(peek, InvalidReason::IcmpUnrelated);
            };
            // The error travels against the quoted packet.
            let dir = e.dir(side.other());
            if gate.pass(&Connection::new(&e.key, e.opener), dir, &mut e.admission) {
                let rpl = match dir {
                    Dir::Reply => CtState::REPLY,
                    Dir::Original => CtState::default(),
                };
                peek.state = CtState::TRACKED | CtState::RELATED | rpl;
            }
            return peek;
        }
        if pkt.l4 == L4::Fragment {
            return invalid(peek, InvalidReason::Fragment);
        }
        if let Some(mut e) = live {
            if e.admission.generation != gate.generation() {
                match gate.recheck(&e.key.tuple_from(e.opener), &e.admission) {
                    Some(a) => e.admission = a,
                    None => return peek,
                }
            }
            let dir = e.dir(side);
            if !gate.pass(&Connection::new(&e.key, e.opener), dir, &mut e.admission) {
                return peek;
            }
            match (&pkt.l4, &mut e.tcp) {
                (L4::Tcp(seg), Some(tcp)) => match tcp.update(dir, seg) {
                    TcpVerdict::Invalid(reason) => return invalid(peek, reason),
                    TcpVerdict::Reopen => {}
                    TcpVerdict::Valid(_) | TcpVerdict::Ignored => return seen(peek, e, dir),
                },
                _ => return seen(peek, e, dir),
            }
        }
        // A new connection, as `insert` would make it.
        match pkt.l4 {
            L4::Tcp(seg) => {
                if let Err(reason) = TcpConn::new(&seg, policy.tcp_pickup) {
                    return invalid(peek, reason);
                }
            }
            L4::IcmpEcho { reply: true } => return invalid(peek, InvalidReason::IcmpUnrelated),
            _ => {}
        }
        let Some(admission) = gate.admit(pkt) else {
            return peek;
        };
        let zone_full = policy
            .limit
            .is_some_and(|l| self.zones.get(key.zone()) >= l);
        let replaced = live.is_some();
        if zone_full
            || (!replaced
                && shard.books.live >= shard.books.cap
                && shard.early_drop_victim(hash).is_none())
        {
            return invalid(peek, InvalidReason::TableFull);
        }
        peek.state = CtState::TRACKED | CtState::NEW;
        peek.creates = Some(admission);
        peek
    }
}

/// `peek` with the state a packet travelling in `dir` of the live entry `e` would get.
fn seen(mut peek: Peek, mut e: Entry, dir: Dir) -> Peek {
    if dir == Dir::Reply {
        e.seen_reply = true;
    }
    peek.state = e.state(dir);
    peek
}
