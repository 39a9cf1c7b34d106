//! The worker's side of a vhost-user port: it polls the guest's rings itself.
//!
//! Frames from the guest's transmit queue are copied out of guest memory, and frames for the
//! guest are copied into the buffers it posted on its receive queue. Every descriptor comes from
//! an untrusted guest: a chain with an address outside its memory, a buffer of the wrong
//! direction or a frame too long is refused and counted, never followed. `virtio-queue` ends a
//! chain after as many descriptors as the ring has; a chain cut there (a loop) or at a
//! descriptor index outside the table still points to a next descriptor, and is refused too.
//!
//! The guest is interrupted only when it asks for it (its used-event index with
//! `VIRTIO_RING_F_EVENT_IDX`, else the absence of `VRING_AVAIL_F_NO_INTERRUPT`), at most once per
//! batch; brink never asks the guest to kick (it polls).

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::super::jumbo::JUMBO_LEN;
use super::device::{Layout, Link, RingSetup, QUEUES, RX_QUEUE, TX_QUEUE};

/// Bytes of the virtio-net header in front of every frame (`struct virtio_net_hdr_v1`).
pub const NET_HDR_LEN: usize = 12;
/// The header brink writes in front of a frame for the guest: no offload, one buffer.
const RX_HEADER: [u8; NET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// What went wrong with the guest's descriptors, counted per port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Transmit chains refused: outside guest memory, write-only, too long or shorter than the
    /// virtio-net header.
    pub tx_refused: u64,
    /// Receive chains that could not hold a frame (too short, read-only or outside guest
    /// memory); the frame was dropped.
    pub rx_refused: u64,
    /// Frames the guest sent that the worker had no buffer to copy into.
    pub dropped: u64,
}

type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// One port's rings as the worker sees them.
#[derive(Debug)]
pub struct Rings {
    link: Arc<Link>,
    generation: u64,
    layout: Option<Arc<Layout>>,
    queues: [Option<Queue>; QUEUES],
    /// One frame read out of guest memory.
    scratch: Vec<u8>,
    stats: RingStats,
}

impl Rings {
    /// Rings that follow what `link` publishes.
    pub fn new(link: Arc<Link>) -> Self {
        Rings {
            link,
            generation: 0,
            layout: None,
            queues: [None, None],
            scratch: vec![0; NET_HDR_LEN + JUMBO_LEN],
            stats: RingStats::default(),
        }
    }

    /// Counts of refused descriptors.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Takes a new layout if the protocol thread published one (between batches).
    pub fn sync(&mut self) {
        let generation = self.link.generation();
        if generation == self.generation {
            return;
        }
        self.save_positions();
        self.generation = generation;
        self.layout = self.link.take(generation);
        self.queues = [None, None];
        if let Some(layout) = &self.layout {
            for (q, setup) in layout.rings.iter().enumerate() {
                self.queues[q] = ring(
                    &layout.mem,
                    setup,
                    layout.event_idx,
                    self.link.next_avail(q),
                );
            }
        }
    }

    /// Records where each running ring continues, for `GET_VRING_BASE`.
    fn save_positions(&self) {
        for (q, queue) in self.queues.iter().enumerate() {
            if let Some(queue) = queue {
                self.link.set_next_avail(q, queue.next_avail());
            }
        }
    }

    /// Reads up to `max` frames the guest sent, handing each one's bytes to `take`, which says
    /// whether it kept them. Returns how many it kept.
    pub fn receive(&mut self, max: usize, mut take: impl FnMut(&[u8]) -> bool) -> usize {
        let (Some(layout), Some(queue)) = (&self.layout, &mut self.queues[TX_QUEUE]) else {
            return 0;
        };
        let mem = &*layout.mem;
        let (mut frames, mut used) = (0, 0);
        while used < max {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            match read_chain(mem, chain, &mut self.scratch) {
                Some(len) if len > NET_HDR_LEN => {
                    if take(&self.scratch[NET_HDR_LEN..len]) {
                        frames += 1;
                    } else {
                        self.stats.dropped += 1;
                    }
                }
                _ => self.stats.tx_refused += 1,
            }
            if queue.add_used(mem, head, 0).is_err() {
                self.stats.tx_refused += 1;
            }
            used += 1;
        }
        if used > 0 {
            self.link.set_next_avail(TX_QUEUE, queue.next_avail());
            notify(queue, mem, &layout.rings[TX_QUEUE]);
        }
        frames
    }

    /// Copies `frame` into the next buffer the guest posted. Returns `false` if the guest has
    /// no buffer (the frame is the caller's to drop); a buffer that cannot hold the frame is
    /// given back empty and the frame counted in `rx_refused`.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let (Some(layout), Some(queue)) = (&self.layout, &mut self.queues[RX_QUEUE]) else {
            return false;
        };
        let mem = &*layout.mem;
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            return false;
        };
        let head = chain.head_index();
        let written = write_chain(mem, chain, &RX_HEADER, frame).unwrap_or_else(|| {
            self.stats.rx_refused += 1;
            0
        });
        if queue.add_used(mem, head, written).is_err() {
            self.stats.rx_refused += 1;
        }
        true
    }

    /// Interrupts the guest after `send`s, if it asked to be.
    pub fn flush_sent(&mut self) {
        let (Some(layout), Some(queue)) = (&self.layout, &mut self.queues[RX_QUEUE]) else {
            return;
        };
        self.link.set_next_avail(RX_QUEUE, queue.next_avail());
        notify(queue, &layout.mem, &layout.rings[RX_QUEUE]);
    }
}

/// A queue over `setup` if it is running and lies in guest memory.
fn ring(
    mem: &GuestMemoryMmap,
    setup: &RingSetup,
    event_idx: bool,
    next_avail: u16,
) -> Option<Queue> {
    if !setup.running() {
        return None;
    }
    let mut q = Queue::new(setup.size).ok()?;
    q.set_size(setup.size);
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(setup.desc);
    q.set_desc_table_address(lo, hi);
    let (lo, hi) = split(setup.avail);
    q.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(setup.used);
    q.set_used_ring_address(lo, hi);
    q.set_event_idx(event_idx);
    q.set_ready(true);
    if !q.is_valid(mem) {
        tracing::warn!(
            size = setup.size,
            "vhost-user ring outside guest memory: not polled"
        );
        return None;
    }
    // brink polls: a guest without event-index suppression is told not to kick
    // (`VRING_USED_F_NO_NOTIFY`); with it, brink never moves the avail-event index it waits for.
    q.disable_notification(mem).ok()?;
    q.set_next_avail(next_avail);
    let used = q.used_idx(mem, Ordering::Acquire).ok()?;
    q.set_next_used(used.0);
    Some(q)
}

/// Writes the guest's call eventfd if the guest wants an interrupt for what was just used.
fn notify(queue: &mut Queue, mem: &GuestMemoryMmap, setup: &RingSetup) {
    let Some(call) = &setup.call else {
        return;
    };
    if queue.needs_notification(mem).unwrap_or(true) {
        // A failed write only delays the guest until the next interrupt.
        let _ = (&**call as &File).write(&1u64.to_ne_bytes());
    }
}

/// Copies the readable chain into `dst`; `None` if it is not readable, leaves guest memory, is
/// cut or is longer than `dst`.
fn read_chain(mem: &GuestMemoryMmap, chain: Chain<'_>, dst: &mut [u8]) -> Option<usize> {
    let (mut len, mut cut) = (0usize, false);
    for desc in chain {
        if desc.is_write_only() {
            return None;
        }
        let end = len.checked_add(desc.len() as usize)?;
        mem.read_slice(dst.get_mut(len..end)?, desc.addr()).ok()?;
        len = end;
        cut = desc.has_next();
    }
    (!cut).then_some(len)
}

/// Writes `header` then `frame` into the writable chain; the bytes written, or `None` if the
/// chain is not writable, leaves guest memory or is too short (a looping chain ends where the
/// frame does).
fn write_chain(
    mem: &GuestMemoryMmap,
    chain: Chain<'_>,
    header: &[u8],
    frame: &[u8],
) -> Option<u32> {
    let total = header.len() + frame.len();
    let mut done = 0;
    for desc in chain {
        if done == total {
            break;
        }
        if !desc.is_write_only() {
            return None;
        }
        let (mut addr, mut room): (GuestAddress, usize) = (desc.addr(), desc.len() as usize);
        while room > 0 && done < total {
            let src = match done.checked_sub(header.len()) {
                None => &header[done..],
                Some(at) => &frame[at..],
            };
            let n = src.len().min(room);
            mem.write_slice(&src[..n], addr).ok()?;
            addr = addr.checked_add(n as u64)?;
            room -= n;
            done += n;
        }
    }
    if done == total {
        u32::try_from(total).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    use super::*;

    const SIZE: u16 = 16;
    /// Where the guest keeps its packet buffers.
    const DATA: u64 = 0x10_0000;

    fn memory() -> Arc<GuestMemoryMmap> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap())
    }

    fn setup(q: &MockSplitQueue<'_, GuestMemoryMmap>) -> RingSetup {
        RingSetup {
            size: SIZE,
            desc: q.desc_table_addr().0,
            avail: q.avail_addr().0,
            used: q.used_addr().0,
            call: None,
            started: true,
            enabled: true,
        }
    }

    fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
    }

    type Mock<'a> = MockSplitQueue<'a, GuestMemoryMmap>;

    /// The guest's receive and transmit rings.
    fn queues(mem: &GuestMemoryMmap) -> (Mock<'_>, Mock<'_>) {
        (
            MockSplitQueue::create(mem, GuestAddress(0), SIZE),
            MockSplitQueue::create(mem, GuestAddress(0x8000), SIZE),
        )
    }

    /// The worker's rings over `rx` and `tx`, as the protocol thread would publish them.
    fn rings(mem: &Arc<GuestMemoryMmap>, rx: RingSetup, tx: RingSetup) -> Rings {
        let link = Arc::new(Link::default());
        link.publish(Some(Arc::new(Layout {
            mem: Arc::clone(mem),
            rings: [rx, tx],
            event_idx: true,
        })));
        let mut rings = Rings::new(link);
        rings.sync();
        rings
    }

    fn used_len(mem: &GuestMemoryMmap, q: &Mock<'_>, i: u64) -> u32 {
        // A used element is (id: u32, len: u32) after the 4-byte ring header.
        mem.read_obj(q.used_addr().unchecked_add(4 + 8 * i + 4))
            .unwrap()
    }

    fn received(rings: &mut Rings) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        rings.receive(32, |b| {
            got.push(b.to_vec());
            true
        });
        got
    }

    #[test]
    fn frames_the_guest_sends_are_read_without_their_header() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        let frame: Vec<u8> = (0..60).collect();
        mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(DATA))
            .unwrap();
        mem.write_slice(&frame, GuestAddress(DATA + 0x1000))
            .unwrap();
        // The header in one descriptor, the frame in the next.
        tx.add_desc_chains(
            &[
                desc(DATA, NET_HDR_LEN as u32, VRING_DESC_F_NEXT, 1),
                desc(DATA + 0x1000, 60, 0, 0),
            ],
            0,
        )
        .unwrap();
        assert_eq!(received(&mut r), vec![frame]);
        assert_eq!(tx.used().idx().load(), 1, "the chain is given back");
        assert!(received(&mut r).is_empty());
        assert_eq!(r.stats(), RingStats::default());
    }

    #[test]
    fn bad_transmit_chains_are_refused_and_given_back() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        // Outside guest memory; write-only; shorter than the header; a loop.
        tx.add_desc_chains(&[desc(0xffff_0000, 64, 0, 0)], 0)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_WRITE, 0)], 1)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 8, 0, 0)], 2).unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_NEXT, 3)], 3)
            .unwrap();
        assert!(received(&mut r).is_empty());
        assert_eq!(r.stats().tx_refused, 4);
        assert_eq!(tx.used().idx().load(), 4);
    }

    #[test]
    fn frames_for_the_guest_fill_its_buffers_or_wait_for_one() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        let frame = [0xab; 100];
        assert!(!r.send(&frame), "no buffer posted yet");
        rx.add_desc_chains(&[desc(DATA, 2048, VRING_DESC_F_WRITE, 0)], 0)
            .unwrap();
        // Too short for header and frame.
        rx.add_desc_chains(&[desc(DATA + 0x1000, 50, VRING_DESC_F_WRITE, 0)], 1)
            .unwrap();
        assert!(r.send(&frame));
        assert!(r.send(&frame), "the short buffer is given back empty");
        r.flush_sent();
        assert_eq!(rx.used().idx().load(), 2);
        assert_eq!(used_len(&mem, &rx, 0), (NET_HDR_LEN + frame.len()) as u32);
        assert_eq!(used_len(&mem, &rx, 1), 0);
        let mut written = [0u8; NET_HDR_LEN + 100];
        mem.read_slice(&mut written, GuestAddress(DATA)).unwrap();
        assert_eq!(written[..NET_HDR_LEN], RX_HEADER);
        assert_eq!(written[NET_HDR_LEN..], frame);
        assert_eq!(r.stats().rx_refused, 1);
        assert!(!r.send(&frame), "both buffers used");
    }

    #[test]
    fn rings_not_enabled_are_not_polled() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        tx.add_desc_chains(&[desc(DATA + 0x1000, 64, 0, 0)], 0)
            .unwrap();
        let disabled = RingSetup {
            enabled: false,
            ..setup(&tx)
        };
        let mut r = rings(&mem, setup(&rx), disabled);
        assert_eq!(r.receive(32, |_| true), 0);
        assert_eq!(tx.used().idx().load(), 0);
    }
}
