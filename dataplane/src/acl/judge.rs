//! Where security groups meet conntrack: the gate that admits new connections and rechecks old
//! ones, and the per-packet checks of stateless ports and flooded frames.

use brink_conntrack::{Admission, CtState, Gate, Packet, Tuple};

use super::filter::{Allow, Direction, PortFilter};
use crate::counters::DropReason;
use crate::snapshot::{PortId, Snapshot};
use crate::wire::ip::Flow;
use crate::wire::L3;

/// The port number recorded when a connection's receiver is not one port (a flood).
pub const NO_PORT: PortId = PortId::MAX;

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

/// Conntrack's gate for one frame from port `from` to port `to` (`None`: flooded).
pub struct FrameGate<'a> {
    snap: &'a Snapshot,
    flow: &'a Flow,
    from: PortId,
    to: Option<PortId>,
    /// Why the gate refused the frame's connection, if it did.
    pub denied: Option<DropReason>,
}

impl<'a> FrameGate<'a> {
    /// The gate for `flow` from `from` to `to`.
    pub fn new(snap: &'a Snapshot, flow: &'a Flow, from: PortId, to: Option<PortId>) -> Self {
        FrameGate {
            snap,
            flow,
            from,
            to,
            denied: None,
        }
    }

    fn admit_flow(&self) -> Result<Admission, DropReason> {
        let out = judge_side(self.snap, self.from, Direction::Egress, self.flow)?;
        let into = match self.to {
            Some(to) => judge_side(self.snap, to, Direction::Ingress, self.flow)?,
            None => None,
        };
        for allow in [out, into].into_iter().flatten() {
            allow.count();
        }
        Ok(Admission {
            rules: [out.map_or(0, Allow::id), into.map_or(0, Allow::id)],
            generation: self.snap.rules_generation(),
            ports: [self.from, self.to.unwrap_or(NO_PORT)],
        })
    }
}

impl Gate for FrameGate<'_> {
    fn generation(&self) -> u32 {
        self.snap.rules_generation()
    }

    fn admit(&mut self, _: &Packet) -> Option<Admission> {
        self.admit_flow().map_err(|r| self.denied = Some(r)).ok()
    }

    fn recheck(&mut self, original: &Tuple, was: &Admission) -> Option<Admission> {
        let kept = recheck(self.snap, original, was);
        if kept.is_none() {
            self.denied = Some(DropReason::RuleRevoked);
        }
        kept
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
}

/// The per-packet check of one side of a frame that conntrack did not judge: a stateless port,
/// or a frame that is not tracked (`tracked` false). Stateful sides of tracked frames pass here.
pub fn per_packet(
    snap: &Snapshot,
    port: PortId,
    dir: Direction,
    flow: &Flow,
    tracked: bool,
) -> Result<(), DropReason> {
    let Some(f) = snap.filter(port) else {
        return Ok(());
    };
    if tracked && f.stateful {
        return Ok(());
    }
    let allow = f.allows(dir, flow).ok_or(dir.denied())?;
    if !f.stateful {
        allow.count();
    }
    Ok(())
}

/// Whether a frame of `ethertype` carrying `l3`, in conntrack state `state`, may be delivered
/// to port `to` without conntrack having judged that port: a flood copy, or a forwarded frame
/// that is not IP. A stateful port takes established and related traffic on conntrack's word;
/// other IP traffic is judged against its ingress rules (a flood's connection records no
/// receiver to recheck later).
pub fn delivers_to(snap: &Snapshot, to: PortId, ethertype: u16, l3: &L3, state: CtState) -> bool {
    let Some(f) = snap.filter(to) else {
        return true;
    };
    match l3 {
        L3::Arp(_) => true,
        L3::Other => f.security.permits(ethertype),
        L3::Ip(flow) => {
            let answered = state.contains(CtState::TRACKED) && !state.contains(CtState::NEW);
            (f.stateful && answered) || f.allows(Direction::Ingress, flow).is_some()
        }
    }
}
