//! One frame through the pipeline against live state, changing nothing and sending nothing:
//! what `brinkctl trace` shows.
//!
//! Parse and port security are the pipeline's own stages, run on a batch of one frame held by an
//! in-memory backend. L2 looks the destination up without learning the source; conntrack is
//! asked through [`Table::peek`] with a gate that counts nothing; the per-packet rules are
//! judged without counting. No FDB entry, connection or counter changes.

use brink_conntrack::{CtState, Peek, Table};

use crate::acl::filter::{Allow, Direction};
use crate::batch::{Batch, FlowKey, Verdict};
use crate::counters::DropReason;
use crate::firewall::{self, FrameGate};
use crate::pipeline as stage;
use crate::port::memory::MemBackend;
use crate::port::Backend;
use crate::snapshot::{NetworkId, PortId, Snapshot, NO_PORT};
use crate::wire::{MacAddr, L3};

/// A stage of the pipeline, where a traced frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parse.
    Parse,
    /// Port security.
    PortSecurity,
    /// L2 forwarding.
    L2,
    /// Connection tracking, with the security groups' admission of new connections.
    Conntrack,
    /// Per-packet rules (stateless ports, untracked traffic, EtherTypes).
    Rules,
    /// Transmit: no port of the network takes the flooded frame.
    Tx,
}

impl Stage {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::PortSecurity => "port_security",
            Stage::L2 => "l2",
            Stage::Conntrack => "conntrack",
            Stage::Rules => "rules",
            Stage::Tx => "tx",
        }
    }
}

/// What became of a traced frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It leaves on these ports.
    Out(Vec<PortId>),
    /// It is dropped at this stage, for this reason.
    Dropped(Stage, DropReason),
}

/// One frame's way through the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Its Ethernet header, as parsed.
    pub key: FlowKey,
    /// What it carries above Ethernet, as the firewall sees it.
    pub l3: L3,
    /// The port L2 found its destination MAC on (`None`: flooded or not looked up).
    pub fdb: Option<PortId>,
    /// What conntrack has and would do (`None`: the frame is not tracked).
    pub conntrack: Option<Peek>,
    /// The stateless rules that allow it on the sending and the receiving port (0: none
    /// judged it).
    pub stateless_rules: [u32; 2],
    /// Where it goes.
    pub outcome: Outcome,
}

/// Traces `frame` arriving on port `in_port` at conntrack time `now_ns`, against `snap`, the
/// connection table, and `fdb` (the port a network's MAC is known on, configured or learned).
/// `None` if `snap` has no port `in_port` or the frame does not fit a buffer.
pub fn trace(
    frame: &[u8],
    in_port: PortId,
    snap: &Snapshot,
    table: &Table,
    now_ns: u64,
    fdb: impl Fn(NetworkId, MacAddr) -> Option<PortId>,
) -> Option<Trace> {
    let entry = snap.port(in_port)?;
    let mut backend = MemBackend::new(1);
    let mut b: Batch<_> = Batch::default();
    b.frames[0] = backend.alloc_copy(frame)?;
    b.len = 1;
    b.in_port = in_port;
    b.network = entry.network;
    b.track = entry.tracks();
    b.inspect = b.track || snap.is_filtered(entry.network);
    stage::parse(&mut b, &backend);
    let mut t = Trace {
        key: b.keys[0],
        l3: b.l3[0],
        fdb: None,
        conntrack: None,
        stateless_rules: [0; 2],
        outcome: Outcome::Out(vec![]),
    };
    if let Verdict::Drop(reason) = b.verdicts[0] {
        t.outcome = Outcome::Dropped(Stage::Parse, reason);
        return Some(t);
    }
    stage::port_security(&mut b, snap);
    if let Verdict::Drop(reason) = b.verdicts[0] {
        t.outcome = Outcome::Dropped(Stage::PortSecurity, reason);
        return Some(t);
    }
    let k = t.key;
    if stage::bad_source(&k) {
        t.outcome = Outcome::Dropped(Stage::L2, DropReason::BadSourceMac);
        return Some(t);
    }
    let to = match stage::destination(&k, in_port, || fdb(k.network, k.dst)) {
        Verdict::Drop(reason) => {
            t.outcome = Outcome::Dropped(Stage::L2, reason);
            return Some(t);
        }
        Verdict::Forward(p) => Some(p),
        Verdict::Flood => None,
    };
    t.fdb = to;
    let mut peer = NO_PORT;
    let mut tracked = false;
    if let (true, Some(packet), L3::Ip(flow)) = (b.track, &b.ct[0], &t.l3) {
        let mut gate = FrameGate::uncounted(snap, flow, k.network, in_port, to);
        let peek = table.peek(packet, now_ns, &mut gate);
        peer = gate.peer;
        tracked = peek.state.contains(CtState::TRACKED);
        let refused = gate.denied.or_else(|| {
            peek.state
                .contains(CtState::INVALID)
                .then_some(DropReason::CtInvalid)
        });
        t.conntrack = Some(peek);
        if let Some(reason) = refused {
            t.outcome = Outcome::Dropped(Stage::Conntrack, reason);
            return Some(t);
        }
    }
    if let Err(reason) = rules(&mut t, snap, in_port, to, tracked, peer) {
        t.outcome = Outcome::Dropped(Stage::Rules, reason);
        return Some(t);
    }
    let out: Vec<PortId> = match to {
        Some(p) => vec![p],
        None => snap
            .members(k.network)
            .iter()
            .copied()
            .filter(|&p| p != in_port)
            .filter(|&p| firewall::delivers_to(snap, p, k.ethertype, &t.l3, peer).is_ok())
            .collect(),
    };
    t.outcome = if out.is_empty() {
        Outcome::Dropped(Stage::Tx, DropReason::NoOtherPort)
    } else {
        Outcome::Out(out)
    };
    Some(t)
}

/// The `rules` stage for the traced frame, recording the stateless rules that allow it.
fn rules(
    t: &mut Trace,
    snap: &Snapshot,
    in_port: PortId,
    to: Option<PortId>,
    tracked: bool,
    peer: PortId,
) -> Result<(), DropReason> {
    if !snap.is_filtered(t.key.network) {
        return Ok(());
    }
    let Some(to) = to else {
        // Flood copies are judged per port at transmit.
        if let L3::Ip(flow) = &t.l3 {
            let out = firewall::judge_packet(snap, in_port, Direction::Egress, flow, tracked)?;
            t.stateless_rules[0] = out.map_or(0, Allow::id);
        }
        return Ok(());
    };
    match &t.l3 {
        L3::Ip(flow) => {
            let out = firewall::judge_packet(snap, in_port, Direction::Egress, flow, tracked)?;
            let into = firewall::judge_packet(snap, to, Direction::Ingress, flow, tracked)?;
            t.stateless_rules = [out.map_or(0, Allow::id), into.map_or(0, Allow::id)];
            Ok(())
        }
        l3 => firewall::delivers_to(snap, to, t.key.ethertype, l3, peer),
    }
}
