//! Where security groups meet conntrack: the gate that admits new connections, rechecks old
//! ones and judges packets bound for a port that never admitted their connection, and the
//! per-packet checks of stateless ports and flooded frames.
//!
//! A connection records the two ports that admitted it: the opener (whose egress rules allowed
//! the first packet) and the receiver (whose ingress rules did). A packet of the connection
//! passes unjudged only towards one of them. A first packet that is flooded has no receiver yet:
//! it is created if some port of the network admits it, each flood copy is judged by its port,
//! and the receiver is recorded when a later packet is sent to one port whose rules admit it.

use brink_conntrack::{Admission, Connection, Dir, Event, Gate, Packet, Tuple};

use crate::acl::filter::{Allow, Direction, PortFilter};
use crate::counters::DropReason;
use crate::ct_events::CtEvents;
use crate::snapshot::{NetworkId, PortId, Snapshot, NO_PORT};
use crate::wire::ip::Flow;
use crate::wire::L3;

/// The filter of `port` if it has port security on and judges connections (stateful).
fn stateful(snap: &Snapshot, port: PortId) -> Option<&PortFilter> {
    snap.filter(port).filter(|f| f.stateful)
}

/// Judges `flow` on side `port` if that port is stateful: why it is allowed (`None`: the port
/// judges nothing here), or why not.
fn judge_side<'s>(
    snap: &'s Snapshot,
    port: PortId,
    dir: Direction,
    flow: &Flow,
) -> Result<Option<Allow<'s>>, DropReason> {
    match stateful(snap, port) {
        None => Ok(None),
        Some(f) => f.allows(dir, flow).map(Some).ok_or(dir.denied()),
    }
}

/// Whether the connection opened by `original` and admitted as `was` is still allowed by the
/// rules of `snap`, and how.
pub fn recheck(snap: &Snapshot, original: &Tuple, was: &Admission) -> Option<Admission> {
    let flow = Flow::of_tuple(original);
    let out = judge_side(snap, was.ports[0], Direction::Egress, &flow).ok()?;
    let into = judge_side(snap, was.ports[1], Direction::Ingress, &flow).ok()?;
    Some(Admission {
        rules: [out.map_or(0, Allow::id), into.map_or(0, Allow::id)],
        generation: snap.rules_generation(),
        ports: was.ports,
    })
}

/// Conntrack's gate for one frame from port `from` of `network` to port `to` (`None`:
/// flooded), on worker `worker` (whose rule-hit counters it writes).
pub struct FrameGate<'a> {
    snap: &'a Snapshot,
    flow: &'a Flow,
    network: NetworkId,
    from: PortId,
    to: Option<PortId>,
    worker: usize,
    /// Why the gate refused the frame, if it did.
    pub denied: Option<DropReason>,
    /// The port the frame's connection lets it reach without that port's rules judging it
    /// (the end it is bound for), or [`NO_PORT`].
    pub peer: PortId,
    /// Count hits on the rules that admit (off for a trace).
    counting: bool,
    /// Where connection events go, if a reader is subscribed.
    events: Option<&'a CtEvents>,
}

impl<'a> FrameGate<'a> {
    /// The gate for `flow` from `from` (in `network`) to `to`, on `worker`.
    pub fn new(
        snap: &'a Snapshot,
        flow: &'a Flow,
        network: NetworkId,
        from: PortId,
        to: Option<PortId>,
        worker: usize,
    ) -> Self {
        FrameGate {
            snap,
            flow,
            network,
            from,
            to,
            worker,
            denied: None,
            peer: NO_PORT,
            counting: true,
            events: None,
        }
    }

    /// This gate, sending the connection events of its frame to `events`.
    pub fn with_events(self, events: Option<&'a CtEvents>) -> Self {
        FrameGate { events, ..self }
    }

    /// The gate for a traced frame: it judges as [`FrameGate::new`]'s does, and counts nothing.
    pub fn uncounted(
        snap: &'a Snapshot,
        flow: &'a Flow,
        network: NetworkId,
        from: PortId,
        to: Option<PortId>,
    ) -> Self {
        FrameGate {
            counting: false,
            // The worker only matters for counting, which this gate does not do.
            ..FrameGate::new(snap, flow, network, from, to, 0)
        }
    }

    /// Counts a hit on the rule behind `allow`, unless this gate counts nothing.
    fn hit(&self, allow: Allow<'_>) {
        if self.counting {
            allow.count(self.worker);
        }
    }

    fn admit_flow(&self) -> Result<Admission, DropReason> {
        let out = judge_side(self.snap, self.from, Direction::Egress, self.flow)?;
        let into = match self.to {
            Some(to) => judge_side(self.snap, to, Direction::Ingress, self.flow)?,
            None => {
                self.admit_flood()?;
                None
            }
        };
        for allow in [out, into].into_iter().flatten() {
            self.hit(allow);
        }
        Ok(Admission {
            rules: [out.map_or(0, Allow::id), into.map_or(0, Allow::id)],
            generation: self.snap.rules_generation(),
            ports: [self.from, self.to.unwrap_or(NO_PORT)],
        })
    }

    /// Whether some other port of the network admits a flooded first packet (each one's
    /// admitting rule is counted); if none does, why not.
    fn admit_flood(&self) -> Result<(), DropReason> {
        let mut refused = DropReason::NoOtherPort;
        let mut admitted = false;
        for &port in self.snap.members(self.network) {
            if port == self.from {
                continue;
            }
            match judge_side(self.snap, port, Direction::Ingress, self.flow) {
                Ok(allow) => {
                    admitted = true;
                    if let Some(a) = allow {
                        self.hit(a);
                    }
                }
                Err(reason) => refused = reason,
            }
        }
        if admitted {
            Ok(())
        } else {
            Err(refused)
        }
    }
}

impl Gate for FrameGate<'_> {
    fn generation(&self) -> u32 {
        self.snap.rules_generation()
    }

    #[inline]
    fn wants_events(&self) -> bool {
        self.events.is_some()
    }

    fn event(&mut self, event: &Event) {
        if let Some(events) = self.events {
            events.push(event);
        }
    }

    fn admit(&mut self, _: &Packet) -> Option<Admission> {
        let admitted = self.admit_flow().map_err(|r| self.denied = Some(r)).ok()?;
        self.peer = admitted.ports[1];
        Some(admitted)
    }

    fn recheck(&mut self, original: &Tuple, was: &Admission) -> Option<Admission> {
        let kept = recheck(self.snap, original, was);
        if kept.is_none() {
            self.denied = Some(DropReason::RuleRevoked);
        }
        kept
    }

    /// A packet bound for the end of its connection that admitted it passes. One sent to
    /// another port is judged by that port's ingress rules, as a new connection would be; if
    /// the connection has no receiver yet, the first port whose rules admit the connection
    /// itself (its original flow, not only this packet: an ICMP error about it is judged as
    /// what it is) becomes its receiver. Flood copies are judged per port when they are sent.
    fn pass(&mut self, conn: &Connection<'_>, dir: Dir, admission: &mut Admission) -> bool {
        self.peer = admission.bound_for(dir);
        let Some(to) = self.to else {
            return true;
        };
        if self.peer == to {
            return true;
        }
        match judge_side(self.snap, to, Direction::Ingress, self.flow) {
            Err(reason) => {
                self.denied = Some(reason);
                false
            }
            Ok(allow) => {
                if dir == Dir::Original && admission.ports[1] == NO_PORT {
                    // Most often this packet is of the connection's own flow, already judged.
                    let own = Flow::of_tuple(&conn.original());
                    let admits = if own == *self.flow {
                        Ok(allow)
                    } else {
                        judge_side(self.snap, to, Direction::Ingress, &own)
                    };
                    if let Ok(allow) = admits {
                        admission.ports[1] = to;
                        admission.rules[1] = allow.map_or(0, Allow::id);
                        if let Some(a) = allow {
                            self.hit(a);
                        }
                        self.peer = to;
                    }
                }
                true
            }
        }
    }
}

/// The gate of the control thread's recheck sweep: rechecks against a snapshot and never
/// admits (the sweep creates nothing).
pub struct SnapshotGate<'a>(pub &'a Snapshot);

impl Gate for SnapshotGate<'_> {
    fn generation(&self) -> u32 {
        self.0.rules_generation()
    }

    fn admit(&mut self, _: &Packet) -> Option<Admission> {
        None
    }

    fn recheck(&mut self, original: &Tuple, was: &Admission) -> Option<Admission> {
        recheck(self.0, original, was)
    }

    fn pass(&mut self, _: &Connection<'_>, _: Dir, _: &mut Admission) -> bool {
        true
    }
}

/// The per-packet check of one side of a frame that conntrack did not judge: a stateless port,
/// or a frame that is not tracked (`tracked` false). Stateful sides of tracked frames pass here.
/// A stateless port's admitting rule is counted for `worker`.
pub fn per_packet(
    snap: &Snapshot,
    port: PortId,
    dir: Direction,
    flow: &Flow,
    tracked: bool,
    worker: usize,
) -> Result<(), DropReason> {
    if let Some(allow) = judge_packet(snap, port, dir, flow, tracked)? {
        allow.count(worker);
    }
    Ok(())
}

/// Whether port `port` takes a packet conntrack tracked on conntrack's word, with no check of
/// its own: it has no port security, or its groups are stateful.
#[inline]
pub fn trusts_conntrack(snap: &Snapshot, port: PortId) -> bool {
    snap.filter(port).is_none_or(|f| f.stateful)
}

/// [`per_packet`]'s judgement, counting nothing: the stateless rule that allows the packet
/// (`None`: no stateless rule needed), or why it is dropped.
pub fn judge_packet<'s>(
    snap: &'s Snapshot,
    port: PortId,
    dir: Direction,
    flow: &Flow,
    tracked: bool,
) -> Result<Option<Allow<'s>>, DropReason> {
    // As `trusts_conntrack` says, with the one lookup the rules below need too.
    let Some(f) = snap.filter(port) else {
        return Ok(None);
    };
    if tracked && f.stateful {
        return Ok(None);
    }
    let allow = f.allows(dir, flow).ok_or(dir.denied())?;
    Ok((!f.stateful).then_some(allow))
}

/// Whether a frame of `ethertype` carrying `l3` may be delivered to port `to` without
/// conntrack having judged that port (a flood copy, or a forwarded frame that is not IP), and
/// if not, why. A stateful port takes the traffic of a connection it is an admitting end of
/// (`peer`, from the gate) on conntrack's word; other IP traffic is judged against its ingress
/// rules.
pub fn delivers_to(
    snap: &Snapshot,
    to: PortId,
    ethertype: u16,
    l3: &L3,
    peer: PortId,
) -> Result<(), DropReason> {
    let Some(f) = snap.filter(to) else {
        return Ok(());
    };
    let (allowed, reason) = match l3 {
        L3::Arp(_) => (true, DropReason::EthertypeDenied),
        L3::Other => (f.security.permits(ethertype), DropReason::EthertypeDenied),
        L3::Ip(flow) => (
            (f.stateful && peer == to) || f.allows(Direction::Ingress, flow).is_some(),
            DropReason::IngressDenied,
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(reason)
    }
}
