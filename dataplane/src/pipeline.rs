//! The stages every batch of frames goes through, in order: parse, port security, l2,
//! conntrack (which asks the security-group rules before it creates a connection), rules (the
//! per-packet checks conntrack does not cover), finish checksums (those a VM offloaded), tx.
//!
//! Each stage is a plain function over the whole [`Batch`]: it finishes every frame before the
//! next stage starts, reads the parsed [`FlowKey`] and [`L3`] rather than the bytes, and records
//! its decision in the frame's [`Verdict`]. A dropped frame keeps its reason until `tx` counts and
//! frees it.

use std::time::Instant;

use brink_conntrack::key::proto;
use brink_conntrack::{Addr, CtState, Packet, Run, Table, L4};

use crate::acl::Direction;
use crate::batch::{Batch, FlowKey, Verdict, BATCH_SIZE};
use crate::counters::{DropReason, WorkerCounters};
use crate::ct_events::CtEvents;
use crate::egress::Egress;
use crate::fdb::{Fdb, Learn};
use crate::firewall::{self, FrameGate};
use crate::port::offload::Checksum;
use crate::port::Backend;
use crate::snapshot::{PortId, Snapshot, NO_PORT};
use crate::wire::checksum::Partial;
use crate::wire::ip::{self, icmpv6, Fixup, Flow, Out, Parsed};
use crate::wire::{arp, nd, EtherType, EthernetFrame, L3};

/// Parses every frame's Ethernet header into its key; if the batch needs inspecting, its ARP and
/// IP headers into its [`L3`] (with the checksum to complete if the sender offloaded it) and, on
/// ports that track connections, what conntrack needs. Short frames are dropped as runts,
/// inspected IP frames with broken headers as malformed and those with wrong checksums as bad
/// checksums. In an inspected frame, a checksum the port says its sender left partial is not
/// summed; it is dropped as a bad offload if it lies anywhere but in the TCP or UDP header's
/// checksum field.
pub fn parse<B: Backend>(b: &mut Batch<B::Frame>, backend: &B) {
    b.rx_bytes = 0;
    for i in b.indexes() {
        let bytes = backend.bytes(&b.frames[i]);
        b.rx_bytes += bytes.len() as u64;
        b.l3[i] = L3::Other;
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            b.verdicts[i] = Verdict::Drop(DropReason::Runt);
            continue;
        };
        b.keys[i] = FlowKey {
            dst: eth.dst(),
            src: eth.src(),
            ethertype: u16::from(eth.ethertype()),
            network: b.network,
        };
        b.verdicts[i] = Verdict::Flood;
        b.fix[i] = None;
        if !b.inspect {
            continue;
        }
        b.ct[i] = None;
        b.ct_state[i] = CtState::default();
        b.peer[i] = NO_PORT;
        let header = (bytes.len() - eth.payload().len()) as u16;
        let partial = backend.checksum(&b.frames[i]).partial();
        let out = Out {
            l3: &mut b.l3[i],
            ct: &mut b.ct[i],
        };
        let parsed = match (eth.ethertype(), partial) {
            (EtherType::Arp, None) => {
                if let Some(sender) = arp::sender(eth.payload()) {
                    b.l3[i] = L3::Arp(sender);
                }
                continue;
            }
            (et, None) => ip::parse(et, eth.payload(), b.network.0, out),
            // Counted from the IP header (one starting before it wraps round to where no
            // header can be); not IP at all: refused below.
            (et, Some(p)) => ip::parse_partial(
                et,
                eth.payload(),
                b.network.0,
                Partial {
                    start: p.start.wrapping_sub(header),
                    ..p
                },
                out,
            )
            .or(Some(Parsed::BadOffload)),
        };
        match parsed {
            Some(Parsed::Ip(fix)) => {
                if !b.track {
                    b.ct[i] = None;
                }
                b.fix[i] = fix.map(|f| Fixup {
                    at: f.at.saturating_add(header),
                    ..f
                });
            }
            Some(Parsed::Malformed) => b.verdicts[i] = Verdict::Drop(DropReason::MalformedIp),
            Some(Parsed::BadChecksum) => b.verdicts[i] = Verdict::Drop(DropReason::BadChecksum),
            Some(Parsed::BadOffload) => b.verdicts[i] = Verdict::Drop(DropReason::BadOffload),
            None => {}
        }
    }
}

/// On ports with port security, drops what the VM may not send: frames from other MACs or IP
/// addresses, spoofed ARP and neighbour advertisements, DHCP server replies, router
/// advertisements, and EtherTypes that are not permitted.
///
/// A frame with the same source MAC, EtherType and headers as the frame checked before it (a
/// VM's stream, usually the whole batch) takes that frame's outcome.
pub fn port_security<F>(b: &mut Batch<F>, snap: &Snapshot) {
    let Some(filter) = snap.filter(b.in_port) else {
        return;
    };
    let mut last: Option<(usize, Result<(), DropReason>)> = None;
    for i in b.indexes() {
        if matches!(b.verdicts[i], Verdict::Drop(_)) {
            continue;
        }
        let k = &b.keys[i];
        let outcome = match last {
            Some((j, outcome))
                if (k.src, k.ethertype, &b.l3[i])
                    == (b.keys[j].src, b.keys[j].ethertype, &b.l3[j]) =>
            {
                outcome
            }
            _ => filter.security.check(k.src, k.ethertype, &b.l3[i]),
        };
        last = Some((i, outcome));
        if let Err(reason) = outcome {
            b.verdicts[i] = Verdict::Drop(reason);
        }
    }
}

/// Learns source MACs and picks each frame's destination: a configured or learned port of the
/// same network, or a flood of the network for group and unknown destinations. The FDB was
/// synced with the current snapshot, so every port it names exists in that network.
///
/// A frame with the same MACs as the frame before it in the batch (a VM's stream, usually the
/// whole batch) takes that frame's outcome: learning it again at the same `now` would change
/// nothing but the counters, which count it again.
pub fn l2<F>(b: &mut Batch<F>, fdb: &mut Fdb, now: Instant, wc: &WorkerCounters) {
    let in_port = b.in_port;
    let mut last: Option<(FlowKey, Learn, Verdict)> = None;
    for i in b.indexes() {
        if matches!(b.verdicts[i], Verdict::Drop(_)) {
            continue;
        }
        let k = b.keys[i];
        let (learnt, verdict) = match last {
            Some((seen, learnt, verdict)) if (seen.src, seen.dst) == (k.src, k.dst) => {
                // A move is learned once; a full table refuses every frame.
                let again = if learnt == Learn::Full {
                    Learn::Full
                } else {
                    Learn::Refreshed
                };
                (again, verdict)
            }
            _ if bad_source(&k) => {
                b.verdicts[i] = Verdict::Drop(DropReason::BadSourceMac);
                continue;
            }
            _ => {
                let learnt = fdb.learn(k.network, k.src, in_port, now);
                let verdict = destination(&k, in_port, || fdb.lookup(k.network, k.dst, now));
                last = Some((k, learnt, verdict));
                (learnt, verdict)
            }
        };
        match learnt {
            Learn::Learned => wc.fdb_learned.add(1),
            Learn::Full => wc.fdb_full.add(1),
            Learn::Refreshed => {}
        }
        b.verdicts[i] = verdict;
    }
}

/// A source MAC no frame may come from: a group address, or zero.
#[inline]
pub fn bad_source(k: &FlowKey) -> bool {
    k.src.is_multicast() || k.src.is_zero()
}

/// Where L2 sends a frame with key `k` from `in_port`: a flood for group destinations, else the
/// port `lookup` finds its destination MAC on (a hairpin back to `in_port` is dropped), or a
/// flood if it finds none.
#[inline]
pub fn destination(
    k: &FlowKey,
    in_port: PortId,
    lookup: impl FnOnce() -> Option<PortId>,
) -> Verdict {
    if k.dst.is_multicast() {
        return Verdict::Flood;
    }
    match lookup() {
        Some(p) if p == in_port => Verdict::Drop(DropReason::Hairpin),
        Some(p) => Verdict::Forward(p),
        None => Verdict::Flood,
    }
}

/// Answers ARP requests and IPv6 neighbour solicitations for remote VMs of networks with a
/// neighbour responder (Neutron's `arp_responder`): the request becomes the reply, sent back to
/// the port it came from, instead of a flood to every host. Requests that arrive from the
/// uplink the answer lives behind are left to their network. Answers are counted in the
/// worker's `neighbour_answers`.
pub fn neighbour_responder<B: Backend>(
    b: &mut Batch<B::Frame>,
    backend: &mut B,
    snap: &Snapshot,
    wc: &WorkerCounters,
) {
    if !snap.answers_neighbours() {
        return;
    }
    for i in b.indexes() {
        if b.verdicts[i] != Verdict::Flood {
            continue;
        }
        let bytes = backend.bytes(&b.frames[i]);
        let (network, in_port) = (b.network, b.in_port);
        // The answer's MAC, unless it lives behind the port that asks.
        let answer = |ip| {
            let (mac, uplink) = snap.neighbour_answer(network, ip)?;
            (uplink != in_port).then_some(mac)
        };
        let reply = match EtherType::from(b.keys[i].ethertype) {
            EtherType::Arp => arp::request_target(bytes)
                .and_then(|target| arp::reply(bytes, answer(Addr::v4(target))?))
                .map(Reply::Arp),
            EtherType::Ipv6 => nd::solicitation(bytes).and_then(|asked| {
                let advert = nd::advert(bytes, answer(Addr(asked.target))?)?;
                Some(Reply::Nd(asked, advert))
            }),
            _ => None,
        };
        let frame = &mut b.frames[i];
        match reply {
            Some(Reply::Arp(reply)) => backend.patch(frame, 0, &reply),
            Some(Reply::Nd(asked, advert)) => {
                let written = backend.reshape(frame, nd::ADVERT_LEN, |bytes| {
                    bytes[..nd::ADVERT_LEN].copy_from_slice(&advert);
                });
                if !written {
                    continue;
                }
                backend.set_checksum(frame, Checksum::AsIs);
                // What the later stages judge is the advertisement.
                b.l3[i] = L3::Ip(Flow {
                    v6: true,
                    proto: proto::ICMPV6,
                    src: Addr(asked.target),
                    dst: Addr(asked.source),
                    icmp: Some((icmpv6::NEIGHBOR_ADVERT, 0)),
                    nd_target: Some(Addr(asked.target)),
                    ..Flow::default()
                });
            }
            None => continue,
        }
        b.verdicts[i] = Verdict::Forward(in_port);
        wc.neighbour_answers.add(1);
    }
}

/// A neighbour responder's answer, as the frame to send.
enum Reply {
    Arp([u8; arp::FRAME_LEN]),
    Nd(nd::Solicitation, [u8; nd::ADVERT_LEN]),
}

/// On ports that track connections, tracks every IP frame still on its way in its network's
/// zone at time `now_ns`. A new connection is created only if the security groups of both its
/// ports allow it (of a flood: the sender's and some receiver's), a connection admitted under
/// older rules is rechecked, and a frame sent to a port that is not the admitting end it is
/// bound for is judged by that port's rules; frames refused any of these ways, and frames
/// invalid for any connection, are dropped. Rule hits are counted for `worker`; connection
/// events go to `events` if given.
///
/// Frames of one flow back to back, bound for one place (a VM's stream: most often the whole
/// batch), are tracked as one [`Run`]: their connection is looked up and judged once, and every
/// one of them is counted.
pub fn conntrack<F>(
    b: &mut Batch<F>,
    table: &Table,
    snap: &Snapshot,
    now_ns: u64,
    worker: usize,
    events: Option<&CtEvents>,
) {
    if !b.track {
        return;
    }
    // First every run's connection is hashed and its index bucket prefetched (the run that
    // starts at frame `i` ends before frame `ends[i]`), then each is looked up: the buckets'
    // cache misses overlap instead of following one another.
    let mut prepared = [None; BATCH_SIZE];
    let mut ends = [0u8; BATCH_SIZE];
    let mut i = 0;
    while i < b.len {
        let head = i;
        i += 1;
        let dropped = matches!(b.verdicts[head], Verdict::Drop(_));
        if let (Some(packet), false) = (&b.ct[head], dropped) {
            while i < b.len && same_run(b, head, i) {
                i += 1;
            }
            prepared[head] = Some(table.prepare(packet));
            ends[head] = i as u8;
        }
    }
    for (head, prep) in prepared.iter().enumerate().take(b.len) {
        let (Some(prep), Some(packet), L3::Ip(flow)) = (prep, &b.ct[head], &b.l3[head]) else {
            continue;
        };
        let to = match b.verdicts[head] {
            Verdict::Forward(p) => Some(p),
            _ => None,
        };
        let frames = head..usize::from(ends[head]);
        let run = match frames.len() {
            1 => Run::one(packet),
            n => Run {
                packets: n as u32,
                bytes: b.ct[frames.clone()]
                    .iter()
                    .flatten()
                    .map(|p| u64::from(p.len))
                    .sum(),
            },
        };
        let mut gate =
            FrameGate::new(snap, flow, b.network, b.in_port, to, worker).with_events(events);
        let state = table.process_prepared(packet, prep, run, now_ns, &mut gate);
        let refused = match gate.denied {
            Some(reason) => Some(reason),
            None => state
                .contains(CtState::INVALID)
                .then_some(DropReason::CtInvalid),
        };
        for k in frames {
            b.ct_state[k] = state;
            b.peer[k] = gate.peer;
            if let Some(reason) = refused {
                b.verdicts[k] = Verdict::Drop(reason);
            }
        }
    }
}

/// Whether frame `k` of `b` joins the conntrack run of frame `head`: it is on its way to the
/// same place, with the same packet for conntrack but for its length, and so the same flow for
/// the gate (the tuple holds all of it but an ICMP message's type and code). TCP segments never
/// join one: each is tracked for its own sequence numbers.
#[inline]
fn same_run<F>(b: &Batch<F>, head: usize, k: usize) -> bool {
    let (Some(first), Some(this)) = (&b.ct[head], &b.ct[k]) else {
        return false;
    };
    let icmp = |l3: &L3| match l3 {
        L3::Ip(flow) => flow.icmp,
        _ => None,
    };
    // The ports first: they tell most flows apart.
    let ports = |p: &Packet| (p.tuple.sport, p.tuple.dport);
    !matches!(this.l4, L4::Tcp(_))
        && ports(this) == ports(first)
        && this.tuple == first.tuple
        && this.l4 == first.l4
        && b.verdicts[k] == b.verdicts[head]
        && icmp(&b.l3[k]) == icmp(&b.l3[head])
}

/// The security-group checks conntrack did not make: every packet of stateless ports and of
/// untracked traffic, and the EtherTypes a port with port security accepts. Flooded frames are
/// checked per receiving port in `tx`. Stateless rule hits are counted for `worker`.
pub fn rules<F>(b: &mut Batch<F>, snap: &Snapshot, worker: usize) {
    if !snap.is_filtered(b.network) {
        return;
    }
    let sender_trusts = firewall::trusts_conntrack(snap, b.in_port);
    for i in b.indexes() {
        if matches!(b.verdicts[i], Verdict::Drop(_)) {
            continue;
        }
        let to = match b.verdicts[i] {
            Verdict::Forward(p) => Some(p),
            _ => None,
        };
        let checked = match &b.l3[i] {
            L3::Ip(flow) => {
                let tracked = b.ct_state[i].contains(CtState::TRACKED);
                // Conntrack judged it for both ends: nothing to check here.
                if tracked
                    && sender_trusts
                    && to.is_none_or(|to| firewall::trusts_conntrack(snap, to))
                {
                    continue;
                }
                let judge =
                    |port, dir| firewall::per_packet(snap, port, dir, flow, tracked, worker);
                judge(b.in_port, Direction::Egress).and_then(|()| match to {
                    Some(to) => judge(to, Direction::Ingress),
                    None => Ok(()),
                })
            }
            l3 => match to {
                Some(to) => firewall::delivers_to(snap, to, b.keys[i].ethertype, l3, b.peer[i]),
                None => Ok(()),
            },
        };
        if let Err(reason) = checked {
            b.verdicts[i] = Verdict::Drop(reason);
        }
    }
}

/// Completes the checksums that senders left partial (transmit checksum offload) and parse
/// found by the sum in every inspected frame still on its way, so receivers get correct ones
/// whatever their offload settings. (A checksum the port said was partial is completed at
/// egress, only for the destinations that need it.)
pub fn finish_checksums<B: Backend>(b: &mut Batch<B::Frame>, backend: &mut B) {
    for i in b.indexes() {
        if let (Some(fix), false) = (b.fix[i], matches!(b.verdicts[i], Verdict::Drop(_))) {
            backend.patch(&mut b.frames[i], usize::from(fix.at), &fix.bytes);
            backend.set_checksum(&mut b.frames[i], Checksum::Valid);
        }
    }
}

/// Carries out every verdict: frames go to their port's transmit staging (or to the owning
/// worker), floods are copied to each other port of the network, drops are counted and freed.
pub fn tx<B: Backend>(b: &Batch<B::Frame>, egress: &mut Egress<B>, snap: &Snapshot) {
    let in_port = b.in_port;
    for i in b.indexes() {
        let frame = b.frames[i];
        match b.verdicts[i] {
            Verdict::Forward(to) => egress.send(in_port, to, frame, snap),
            Verdict::Flood => {
                let (ethertype, l3, peer) = (b.keys[i].ethertype, &b.l3[i], b.peer[i]);
                egress.flood(in_port, b.keys[i].network, frame, snap, |to| {
                    firewall::delivers_to(snap, to, ethertype, l3, peer)
                });
            }
            Verdict::Drop(reason) => egress.drop_rx(in_port, reason, frame),
        }
    }
    egress.flush();
}
