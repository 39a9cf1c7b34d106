//! The transmit side of a worker: per-port staging, flooding, cross-worker hand-off, drops.
//!
//! Frames for one port are staged and handed to the backend together at the end of a batch, so
//! the kernel is kicked once per port per batch, not once per frame. A frame larger than its
//! network's MTU is cut into segments here if it is a TCP superframe (segmentation offload,
//! [`segment`]), and dropped as `mtu_exceeded` otherwise. A frame whose checksum its sender
//! left partial has it completed here, once, unless its destination takes it partial (a
//! vhost-user guest with `GUEST_CSUM`); segments get complete checksums as they are cut.

use std::sync::Arc;

use crate::batch::BATCH_SIZE;
use crate::capture::{Capture, Target, Way};
use crate::counters::{DropReason, PortCounters, WorkerCounters};
use crate::cross::CrossQueue;
use crate::port::offload::Checksum;
use crate::port::Backend;
use crate::snapshot::{NetworkId, PortId, Snapshot, MAX_PORTS};
use crate::trunk::{self, VlanPort};
use crate::wire::checksum::Partial;
use crate::wire::segment;
use crate::wire::vlan::TAG_LEN;
use crate::wire::EthernetFrame;

/// Longest frame segmentation reads: an Ethernet header and the largest IP packet.
const MAX_SUPERFRAME: usize = EthernetFrame::HEADER_LEN + u16::MAX as usize;
/// Longest segment it builds: an Ethernet header and a 9,000-byte IP packet, the largest MTU.
const MAX_SEGMENT: usize = EthernetFrame::HEADER_LEN + 9000;

/// A port this worker owns.
struct LocalPort<F> {
    counters: Arc<PortCounters>,
    staged: [F; BATCH_SIZE],
    staged_len: usize,
    staged_bytes: u64,
    /// Listed in `Egress::dirty`.
    dirty: bool,
    /// A logical VLAN port: its frames are tagged and staged on its trunk instead.
    vlan: Option<VlanPort>,
}

/// A worker's backend, its ports and its queues to other workers.
pub struct Egress<B: Backend> {
    worker: usize,
    /// The worker's frame pool and sockets.
    pub backend: B,
    ports: Vec<Option<LocalPort<B::Frame>>>,
    /// Ports with staged frames, in the order they were first staged.
    dirty: Vec<PortId>,
    /// `to_worker[w]`: queue to worker `w` (`None` for this worker).
    to_worker: Vec<Option<CrossQueue>>,
    counters: Arc<WorkerCounters>,
    /// A superframe being segmented, copied out of the pool that its segments are taken from.
    superframe: Vec<u8>,
    /// The segment being built.
    segment: Vec<u8>,
    capture: Arc<Capture>,
    /// What is captured in this poll iteration, and when it started (conntrack's clock).
    target: Target,
    now_ns: u64,
}

impl<B: Backend> Egress<B> {
    /// Egress for worker `worker`, with its queues to the other workers.
    pub fn new(
        worker: usize,
        backend: B,
        to_worker: Vec<Option<CrossQueue>>,
        counters: Arc<WorkerCounters>,
        capture: Arc<Capture>,
    ) -> Self {
        Egress {
            worker,
            backend,
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            dirty: Vec::with_capacity(MAX_PORTS),
            to_worker,
            counters,
            superframe: vec![0; MAX_SUPERFRAME],
            segment: vec![0; MAX_SEGMENT],
            capture,
            target: Target::OFF,
            now_ns: 0,
        }
    }

    /// Captures `target` from now on, with `now_ns` as the time of what it records.
    pub fn capture_at(&mut self, target: Target, now_ns: u64) {
        self.target = target;
        self.now_ns = now_ns;
    }

    /// Starts transmitting on port `id`: one the backend has opened, or (with `vlan`) a
    /// logical VLAN port whose frames leave tagged on its trunk.
    pub fn attach(&mut self, id: PortId, counters: Arc<PortCounters>, vlan: Option<VlanPort>) {
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = Some(LocalPort {
                counters,
                staged: [B::Frame::default(); BATCH_SIZE],
                staged_len: 0,
                staged_bytes: 0,
                dirty: false,
                vlan,
            });
        }
    }

    /// Stops transmitting on port `id`, flushing what is staged first.
    pub fn detach(&mut self, id: PortId) {
        self.flush();
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = None;
        }
    }

    /// Whether this worker has a socket of port `id`.
    #[inline]
    fn is_local(&self, id: PortId) -> bool {
        self.ports.get(usize::from(id)).is_some_and(Option::is_some)
    }

    /// Counters of local port `id`.
    pub fn port_counters(&self, id: PortId) -> Option<&PortCounters> {
        self.ports
            .get(usize::from(id))
            .and_then(Option::as_ref)
            .map(|p| &*p.counters)
    }

    /// Drops a frame that arrived on `in_port`, counting it there.
    pub fn drop_rx(&mut self, in_port: PortId, reason: DropReason, frame: B::Frame) {
        self.count_rx_drop(in_port, reason);
        if self.target.port == in_port {
            let bytes = self.backend.bytes(&frame);
            self.capture
                .record(self.now_ns, Way::Dropped(reason), bytes);
        }
        self.backend.free(frame);
    }

    fn count_rx_drop(&self, in_port: PortId, reason: DropReason) {
        match self.port_counters(in_port) {
            Some(c) => c.drops.add_shared(reason, 1),
            None => self.counters.drops.add(reason, 1),
        }
    }

    /// Sends `frame` from `in_port` to port `to`, on this worker or through the owner's queue.
    pub fn send(&mut self, in_port: PortId, to: PortId, frame: B::Frame, snap: &Snapshot) {
        let Some((owner, network)) = snap.port(to).map(|e| (e.worker, e.network)) else {
            self.counters.drops.add(DropReason::PortGone, 1);
            self.backend.free(frame);
            return;
        };
        let mtu = usize::from(snap.mtu(network));
        let len = self.backend.bytes(&frame).len();
        if len > EthernetFrame::HEADER_LEN + mtu && !self.backend.takes_superframe(to, &frame) {
            self.send_segments(in_port, to, frame, snap, mtu);
            return;
        }
        // A port whose queues are spread over workers has a socket (or a vhost-user receive
        // queue) on each: send on ours, if it can take frames now.
        let local = owner == self.worker || (self.is_local(to) && self.backend.sends(to));
        // Only a port of this backend can take a partial checksum: another worker's gets the
        // bytes alone.
        let mut frame = frame;
        if let Checksum::Partial(partial) = self.backend.checksum(&frame) {
            if !(local && self.backend.takes_partial(to)) {
                self.complete(&mut frame, partial);
            }
        }
        if local {
            self.stage(to, frame, len);
            return;
        }
        let pushed = match self.to_worker.get(owner).and_then(Option::as_ref) {
            Some(q) => q.push(to, self.backend.bytes(&frame)),
            None => Err(DropReason::PortGone),
        };
        match pushed {
            Ok(()) => {
                self.counters.cross_tx.add(1);
                self.backend.free(frame);
            }
            Err(reason) => self.drop_rx(in_port, reason, frame),
        }
    }

    /// Completes the checksum `frame`'s sender left `partial`, in software (the backend handed it
    /// over only inside the frame).
    #[cold]
    #[inline(never)]
    fn complete(&mut self, frame: &mut B::Frame, partial: Partial) {
        let len = self.backend.bytes(frame).len();
        self.backend.reshape(frame, len, |bytes| {
            partial.complete(bytes);
        });
        self.backend.set_checksum(frame, Checksum::Valid);
        self.counters.checksums_completed.add(1);
    }

    /// Sends `frame`, larger than `mtu`, to `to` as TCP segments that fit, or drops it.
    fn send_segments(
        &mut self,
        in_port: PortId,
        to: PortId,
        frame: B::Frame,
        snap: &Snapshot,
        mtu: usize,
    ) {
        // Both buffers are moved out and back (no allocation) so that sending can borrow `self`.
        let (mut superframe, mut segment) = (
            std::mem::take(&mut self.superframe),
            std::mem::take(&mut self.segment),
        );
        let bytes = self.backend.bytes(&frame);
        let len = bytes.len().min(superframe.len());
        superframe[..len].copy_from_slice(&bytes[..len]);
        let mut out_of_frames = false;
        let made = segment::tcp_segments(&superframe[..len], mtu, &mut segment, |s| {
            match self.backend.alloc_copy(s) {
                Some(mut f) => {
                    // Its checksums were just computed.
                    self.backend.set_checksum(&mut f, Checksum::Valid);
                    self.send(in_port, to, f, snap);
                }
                None => out_of_frames = true,
            }
            !out_of_frames
        });
        (self.superframe, self.segment) = (superframe, segment);
        match made {
            None => {
                if let Some(c) = snap.port_counters(to) {
                    c.tx_drops.add_shared(DropReason::MtuExceeded, 1);
                }
                return self.drop_rx(in_port, DropReason::MtuExceeded, frame);
            }
            Some(_) if out_of_frames => self.count_rx_drop(in_port, DropReason::NoFreeFrame),
            Some(n) => self.counters.segmented.add(n as u64),
        }
        self.backend.free(frame);
    }

    /// Sends a copy of `frame` to every port of `network` except `in_port` that `admits`. Each
    /// port that refuses its copy counts one drop, with the reason it gave, on `in_port`.
    pub fn flood(
        &mut self,
        in_port: PortId,
        network: NetworkId,
        frame: B::Frame,
        snap: &Snapshot,
        admits: impl Fn(PortId) -> Result<(), DropReason>,
    ) {
        let mut refused = false;
        // Every target but the last gets a copy; the last one gets the original frame.
        let mut last = None;
        for &p in snap.members(network) {
            if p == in_port {
                continue;
            }
            if let Err(reason) = admits(p) {
                self.count_rx_drop(in_port, reason);
                refused = true;
                continue;
            }
            if let Some(prev) = last.replace(p) {
                match self.backend.clone_frame(&frame) {
                    Some(copy) => self.send(in_port, prev, copy, snap),
                    None => self.count_rx_drop(in_port, DropReason::NoFreeFrame),
                }
            }
        }
        match last {
            Some(to) => self.send(in_port, to, frame, snap),
            None if refused => self.backend.free(frame),
            None => self.drop_rx(in_port, DropReason::NoOtherPort, frame),
        }
    }

    /// Takes a frame (`bytes`) that another worker forwarded to local port `to`.
    pub fn accept_cross(&mut self, to: PortId, bytes: &[u8]) {
        match self.backend.alloc_copy(bytes) {
            Some(frame) => {
                self.counters.cross_rx.add(1);
                self.stage(to, frame, bytes.len());
            }
            None => self.counters.drops.add(DropReason::NoFreeFrame, 1),
        }
    }

    /// Stages `frame`, `len` bytes long, for local port `to`; for a logical VLAN port, tagged
    /// on its trunk.
    #[inline(always)]
    fn stage(&mut self, to: PortId, frame: B::Frame, len: usize) {
        if self.target.traffic_of(to) {
            let bytes = self.backend.bytes(&frame);
            self.capture.record(self.now_ns, Way::Out, bytes);
        }
        let Some(Some(port)) = self.ports.get_mut(usize::from(to)) else {
            self.counters.drops.add(DropReason::PortGone, 1);
            self.backend.free(frame);
            return;
        };
        if let Some(v) = port.vlan {
            // Counted as sent once handed to the trunk, whose counters see what it sends.
            port.counters.tx_packets.add_shared(1);
            port.counters.tx_bytes.add_shared(len as u64);
            return self.stage_tagged(v, frame, len);
        }
        if port.staged_len == BATCH_SIZE {
            flush_staged(&mut self.backend, &self.counters, to, port);
        }
        if !port.dirty {
            port.dirty = true;
            self.dirty.push(to);
        }
        port.staged[port.staged_len] = frame;
        port.staged_len += 1;
        port.staged_bytes += len as u64;
    }

    /// Tags `frame`, `len` bytes long, for VLAN `v` and stages it on the trunk. Out of line, so
    /// that [`stage`](Self::stage) is not recursive and is inlined where frames are sent.
    #[inline(never)]
    fn stage_tagged(&mut self, v: VlanPort, mut frame: B::Frame, len: usize) {
        if !trunk::tag(&mut self.backend, &mut frame, v.vid) {
            self.counters.drops.add(DropReason::NoTagRoom, 1);
            self.backend.free(frame);
            return;
        }
        self.stage(v.trunk, frame, len + TAG_LEN)
    }

    /// Hands every staged frame to the backend.
    pub fn flush(&mut self) {
        while let Some(id) = self.dirty.pop() {
            if let Some(Some(port)) = self.ports.get_mut(usize::from(id)) {
                port.dirty = false;
                flush_staged(&mut self.backend, &self.counters, id, port);
            }
        }
    }
}

/// Hands port `id`'s staged frames to `backend`; frames its ring cannot take are dropped.
fn flush_staged<B: Backend>(
    backend: &mut B,
    worker: &WorkerCounters,
    id: PortId,
    port: &mut LocalPort<B::Frame>,
) {
    let staged = &port.staged[..port.staged_len];
    let sent = backend.tx(id, staged);
    let mut unsent_bytes = 0;
    for f in &staged[sent..] {
        unsent_bytes += backend.bytes(f).len() as u64;
        backend.free(*f);
    }
    port.counters.tx_packets.add_shared(sent as u64);
    port.counters
        .tx_bytes
        .add_shared(port.staged_bytes - unsent_bytes);
    let unsent = (staged.len() - sent) as u64;
    if unsent > 0 {
        worker.drops.add(backend.full_reason(id), unsent);
    }
    port.staged_len = 0;
    port.staged_bytes = 0;
}
