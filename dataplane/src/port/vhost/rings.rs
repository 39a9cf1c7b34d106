//! The worker's side of a vhost-user port: it polls the guest's rings itself.
//!
//! Frames from the guest's transmit queue are copied out of guest memory straight into a frame
//! of the worker's pool, and frames for the guest are copied into the buffers it posted on its
//! receive queue: one chain per frame, or as many as the frame needs with mergeable receive
//! buffers (`VIRTIO_NET_F_MRG_RXBUF`). The rings are read and written in place ([`vring`]),
//! guest addresses through [`guest`]'s region table; the used index is published, and the guest
//! interrupted, once per batch (and the used index shown every [`SHOW_EVERY_BYTES`] sent to
//! the guest within it).
//!
//! Offloads ride on the virtio-net header in front of every frame. A checksum the guest left
//! partial (`NEEDS_CSUM`) stays partial: the frame carries where it lies ([`Checksum`]), parse
//! checks that it is where the TCP or UDP header is without summing the payload, and a guest
//! that takes partial checksums (`GUEST_CSUM`) gets it so, with `NEEDS_CSUM` and the same
//! `csum_start` and `csum_offset`; egress completes it for any other port. A frame whose
//! checksum brink completed goes to such a guest with `DATA_VALID`. A TCP superframe
//! (`GSO_TCPV4/6`) keeps its segmentation: a guest that takes superframes (`GUEST_TSO4/6`) gets
//! it whole, with a header saying how to cut it; any other port gets it cut in software
//! (egress), each segment's checksum computed once.
//!
//! Every descriptor comes from an untrusted guest: a chain with an address outside its memory,
//! a buffer of the wrong direction, a frame too long, a header asking for what brink did not
//! offer, a descriptor index outside the table or a chain longer than the ring (a loop) is
//! refused and counted, never followed.
//!
//! The guest is interrupted only when it asks for it (its used-event index with
//! `VIRTIO_RING_F_EVENT_IDX`, else the absence of `VRING_AVAIL_F_NO_INTERRUPT`), at most once per
//! batch; brink never asks the guest to kick (it polls).
//!
//! [`vring`]: super::vring
//! [`guest`]: super::guest

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
};

use super::super::jumbo::{Gso, JUMBO_LEN};
use super::super::offload::Checksum;
use super::super::QueueStats;
use super::device::{pair_of, rx_queue, tx_queue, Layout, Link, MAX_PAIRS, QUEUES};
use super::guest::{GuestMap, Span};
use super::vring::{Desc, SplitRing};
use crate::wire::checksum::Partial;

/// Bytes of the virtio-net header in front of every frame (`struct virtio_net_hdr_v1`).
pub const NET_HDR_LEN: usize = 12;
/// Bytes sent to a guest between showings of its used index within one batch
/// ([`Rings::show_sent`]): the guest starts on the first large frames while the worker copies
/// the rest, and sees small ones once per batch. Each showing moves the index's cache line to
/// the guest's core and back, so it is worth it only after copying this much (measured in
/// docs/BENCHMARKS.md).
pub const SHOW_EVERY_BYTES: usize = 32 * 1024;
/// Where the header's checksum start (`csum_start`) and offset (`csum_offset`) are.
const CSUM_START_AT: usize = 6;
const CSUM_OFFSET_AT: usize = 8;
/// Where the header's buffer count (`num_buffers`) is.
const NUM_BUFFERS_AT: usize = 10;
/// Most receive buffers one frame may span with mergeable buffers: a 64 KiB superframe in
/// buffers of 1,518 bytes (Linux's smallest) takes 44.
const MAX_MERGED: usize = 64;

/// What went wrong with the guest's descriptors, counted per port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Transmit chains refused: outside guest memory, write-only, too long, shorter than the
    /// virtio-net header, or with a header asking for what brink did not offer or for a
    /// partial checksum outside the frame.
    pub tx_refused: u64,
    /// Receive chains that could not hold a frame (too short, read-only or outside guest
    /// memory); the frame was dropped.
    pub rx_refused: u64,
    /// Frames the guest sent that the worker had no buffer to copy into.
    pub dropped: u64,
}

/// What the guest's driver negotiated, as the worker needs it.
#[derive(Debug, Clone, Copy, Default)]
struct Offloads {
    /// It takes frames whose checksum is partial, and checksums marked verified.
    csum: bool,
    /// It takes TCP/IPv4 superframes.
    tso4: bool,
    /// It takes TCP/IPv6 superframes.
    tso6: bool,
    /// A frame may span several receive buffers.
    mergeable: bool,
}

impl Offloads {
    fn new(features: u64) -> Self {
        let has = |bit: u32| features & (1 << bit) != 0;
        Offloads {
            csum: has(VIRTIO_NET_F_GUEST_CSUM),
            tso4: has(VIRTIO_NET_F_GUEST_TSO4),
            tso6: has(VIRTIO_NET_F_GUEST_TSO6),
            mergeable: has(VIRTIO_NET_F_MRG_RXBUF),
        }
    }

    /// Whether a superframe cut as `gso` says may go to the guest whole (its checksum partial:
    /// the specification makes `GUEST_TSO4/6` depend on `GUEST_CSUM`).
    fn takes(&self, gso: &Gso) -> bool {
        self.csum
            && match u32::from(gso.kind) {
                VIRTIO_NET_HDR_GSO_TCPV4 => self.tso4,
                VIRTIO_NET_HDR_GSO_TCPV6 => self.tso6,
                _ => false,
            }
    }

    /// The header brink writes in front of a frame for the guest: one buffer (mergeable buffers
    /// count theirs in afterwards), the segmentation of a superframe the guest takes whole, and,
    /// if the guest takes checksum offload, where a partial checksum lies (`NEEDS_CSUM`) or that
    /// brink completed it (`DATA_VALID`).
    ///
    /// It is put together as two words and stored as those two, so that `write_chain`'s copy
    /// of it reads them straight back (a word read over several smaller stores waits for
    /// them to reach the cache: one such wait per frame).
    fn rx_header(&self, gso: Option<Gso>, checksum: Checksum) -> [u8; NET_HDR_LEN] {
        // Bytes 0-7: flags, gso_type, hdr_len, gso_size, csum_start; 8-11: csum_offset,
        // num_buffers.
        let (mut flags, mut cut, mut start, mut offset) = (0u8, 0u64, 0u16, 0u16);
        if let Some(g) = gso.filter(|g| self.takes(g)) {
            cut = u64::from(g.kind) << 8 | u64::from(g.header_len) << 16 | u64::from(g.size) << 32;
        }
        match checksum {
            Checksum::Partial(p) if self.csum => {
                flags = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
                (start, offset) = (p.start, p.offset);
            }
            Checksum::Valid if self.csum => flags = VIRTIO_NET_HDR_F_DATA_VALID as u8,
            _ => {}
        }
        let low = u64::from(flags) | cut | u64::from(start) << (8 * CSUM_START_AT);
        let high = u32::from(offset) | 1 << (8 * (NUM_BUFFERS_AT - CSUM_OFFSET_AT));
        let mut h = [0u8; NET_HDR_LEN];
        h[..8].copy_from_slice(&low.to_le_bytes());
        h[8..].copy_from_slice(&high.to_le_bytes());
        h
    }
}

// `rx_header`'s two words: csum_start ends the first, csum_offset starts the second.
const _: () = assert!(CSUM_START_AT == 6 && CSUM_OFFSET_AT == 8 && NUM_BUFFERS_AT == 10);

/// What became of a frame handed to a [`Sink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// It is in a pool frame now.
    Kept,
    /// The pool had no buffer for it.
    NoBuffer,
    /// Its bytes could not be read whole (the guest's chain changed or left its memory).
    Refused,
}

/// Where the frames a guest sends go: the worker's frame pool.
pub trait Sink {
    /// Fills a new buffer of `len` bytes with `fill` and keeps it as a frame cut as `.0`, its
    /// checksum standing as `.1`, if `fill` returns `true`; gives the buffer back otherwise.
    fn take(
        &mut self,
        len: usize,
        offloads: (Option<Gso>, Checksum),
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> Taken;
}

/// The rings of the queue pairs of one port that one worker polls, as that worker sees them.
///
/// Frames from the guest are taken from every running transmit queue among them, each poll
/// starting at the next one. Frames for the guest all go into the receive queue of the first
/// running pair among them, so that each ring has one writer and a flow's frames keep their
/// order; a worker with none running hands the port's frames to the port's own worker (see
/// [`sends`](Self::sends)).
#[derive(Debug)]
pub struct Rings {
    link: Arc<Link>,
    generation: u64,
    layout: Option<Arc<Layout>>,
    /// The queue pairs this worker polls.
    pairs: Vec<usize>,
    queues: [Option<SplitRing>; QUEUES],
    /// The guest memory the rings lie in (declared after them: it keeps their memory mapped).
    map: Option<GuestMap>,
    offloads: Offloads,
    /// The receive queue frames for the guest go into.
    to_guest: Option<usize>,
    /// Where in `pairs` the next `receive` starts.
    next_pair: usize,
    /// By queue: the `SET_VRING_BASE` its ring last started from ([`RingSetup::base_set`]).
    bases: [u64; QUEUES],
    /// The receive chains one frame is being written into (mergeable buffers).
    merged: [(u16, u32); MAX_MERGED],
    stats: RingStats,
    /// By queue pair: frames taken from its transmit queue (`rx_packets`) and written into its
    /// receive queue (`tx_packets`).
    moved: [QueueStats; MAX_PAIRS],
}

impl Rings {
    /// Rings of queue pairs `pairs` (those below [`MAX_PAIRS`]) that follow what `link`
    /// publishes.
    pub fn new(link: Arc<Link>, pairs: &[usize]) -> Self {
        let pairs: Vec<usize> = pairs.iter().copied().filter(|&k| k < MAX_PAIRS).collect();
        link.poll(&pairs, true);
        Rings {
            link,
            generation: 0,
            layout: None,
            pairs,
            queues: Default::default(),
            map: None,
            offloads: Offloads::default(),
            to_guest: None,
            next_pair: 0,
            bases: [0; QUEUES],
            merged: [(0, 0); MAX_MERGED],
            stats: RingStats::default(),
            moved: std::array::from_fn(|k| QueueStats {
                queue: k as u32,
                ..QueueStats::default()
            }),
        }
    }

    /// The queue pairs these rings poll.
    pub fn pairs(&self) -> &[usize] {
        &self.pairs
    }

    /// Counts of refused descriptors.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// What each of the pairs these rings poll moved.
    pub fn pair_stats(&self) -> impl Iterator<Item = QueueStats> + '_ {
        self.pairs
            .iter()
            .filter_map(|&k| self.moved.get(k).copied())
    }

    /// Whether frames for the guest can be written here: one of these pairs' receive queues is
    /// running.
    pub fn sends(&self) -> bool {
        self.to_guest.is_some()
    }

    /// Takes a new layout if the protocol thread published one (between batches).
    pub fn sync(&mut self) {
        let generation = self.link.generation();
        if generation == self.generation {
            return;
        }
        self.save_positions();
        self.generation = generation;
        self.queues = Default::default();
        self.map = None;
        self.offloads = Offloads::default();
        self.to_guest = None;
        self.layout = self.link.take(generation, &self.pairs);
        if let Some(layout) = &self.layout {
            let map = GuestMap::new(Arc::clone(&layout.mem));
            self.offloads = Offloads::new(layout.features);
            for &pair in &self.pairs {
                for q in [rx_queue(pair), tx_queue(pair)] {
                    let setup = &layout.rings[q];
                    let fresh = setup.base_set != self.bases[q];
                    let next = if fresh {
                        setup.base
                    } else {
                        self.link.next_avail(q)
                    };
                    self.queues[q] = SplitRing::new(&map, setup, layout.event_idx, next);
                    if self.queues[q].is_some() {
                        self.bases[q] = setup.base_set;
                    }
                }
            }
            self.to_guest = self
                .pairs
                .iter()
                .map(|&pair| rx_queue(pair))
                .find(|&q| self.queues[q].is_some());
            self.map = Some(map);
        }
    }

    /// Records where each running ring continues, for `GET_VRING_BASE`.
    fn save_positions(&self) {
        for (q, ring) in self.queues.iter().enumerate() {
            if let Some(ring) = ring {
                self.link.set_next_avail(q, ring.next_avail());
            }
        }
    }

    /// Whether the guest takes a superframe cut as `gso` whole.
    pub fn takes_superframe(&self, gso: &Gso) -> bool {
        self.offloads.takes(gso)
    }

    /// Whether the guest takes frames whose checksum is partial (`GUEST_CSUM`).
    pub fn takes_partial(&self) -> bool {
        self.offloads.csum
    }

    /// Reads up to `max` frames the guest sent on the transmit queues of these pairs into
    /// `sink`, each with its segmentation and how its checksum stands (partial where the guest
    /// left it so). Returns how many `sink` kept.
    pub fn receive(&mut self, max: usize, sink: &mut impl Sink) -> usize {
        let (Some(layout), Some(map)) = (&self.layout, &self.map) else {
            return 0;
        };
        let (mut frames, mut used) = (0, 0);
        let count = self.pairs.len();
        // Each poll starts at the next pair, so a busy queue cannot starve the others.
        self.next_pair = (self.next_pair + 1) % count.max(1);
        for k in 0..count {
            let pair = self.pairs[(self.next_pair + k) % count];
            let q = tx_queue(pair);
            let Some(ring) = &mut self.queues[q] else {
                continue;
            };
            let (before, kept_before) = (used, frames);
            ring.prefetch(map, max - used);
            while used < max {
                let Some(head) = ring.pop() else {
                    break;
                };
                used += 1;
                let taken =
                    offered(ring, map, head).map(|(len, header, lone)| {
                        sink.take(len - NET_HDR_LEN, (header.gso, header.checksum), |frame| {
                            match &lone {
                                Some(span) => span.read(NET_HDR_LEN, frame),
                                None => copy_out(ring, map, head, NET_HDR_LEN, frame) == Some(len),
                            }
                        })
                    });
                match taken {
                    Some(Taken::Kept) => frames += 1,
                    Some(Taken::NoBuffer) => self.stats.dropped += 1,
                    Some(Taken::Refused) | None => self.stats.tx_refused += 1,
                }
                ring.push_used(head, 0);
            }
            if used > before {
                self.moved[pair].rx_packets += (frames - kept_before) as u64;
                self.link.set_next_avail(q, ring.next_avail());
                publish(ring, &layout.rings[q].call);
            }
            if used == max {
                break;
            }
        }
        frames
    }

    /// Copies `frame` into the next buffer the guest posted (or the next ones, with mergeable
    /// buffers), with `gso` in its header if the guest takes the superframe whole and how its
    /// checksum stands if the guest takes checksum offload; `checksum` is partial only if the
    /// guest takes it so ([`takes_partial`](Self::takes_partial)). Returns
    /// `false` if the guest has no room (the frame is the caller's to drop); a buffer that
    /// cannot hold the frame is given back empty and the frame counted in `rx_refused`. The
    /// guest sees the frames at [`flush_sent`](Self::flush_sent).
    pub fn send(&mut self, frame: &[u8], gso: Option<Gso>, checksum: Checksum) -> bool {
        let Some(q) = self.to_guest else {
            return false;
        };
        let (Some(map), Some(ring)) = (&self.map, &mut self.queues[q]) else {
            return false;
        };
        let header = self.offloads.rx_header(gso, checksum);
        let parts = (&header, frame);
        let total = NET_HDR_LEN + frame.len();
        let mergeable = self.offloads.mergeable;
        let Some(head) = ring.pop() else {
            return false;
        };
        let first = write_chain(ring, map, head, parts, 0);
        // The usual case: the frame fits the first chain, whose header already says one
        // buffer. With mergeable buffers the header must lie in the chain's first buffer
        // (Linux posts one buffer per chain).
        let fits = |&(n, (_, len)): &(usize, (u64, usize))| {
            n == total && (!mergeable || len >= NET_HDR_LEN)
        };
        if first.filter(fits).is_some() {
            self.moved[pair_of(q)].tx_packets += 1;
            ring.push_used(head, total as u32);
            return true;
        }
        let started = first.filter(|&(n, _)| mergeable && n > 0 && n < total);
        let Some((mut done, first)) = started else {
            self.stats.rx_refused += 1;
            ring.push_used(head, 0);
            return true;
        };
        // Mergeable buffers: fill further chains until the frame is written, then tell the
        // guest in the first one's header how many it spans. If the ring runs out first, the
        // chains go back to it untouched; a chain that cannot be written (or a frame needing
        // more than MAX_MERGED of them) gives them all back empty.
        self.merged[0] = (head, done as u32);
        let (mut count, mut bad) = (1, false);
        while done < total {
            if count == MAX_MERGED {
                bad = true;
                break;
            }
            let Some(head) = ring.pop() else {
                ring.unpop(count as u16);
                return false;
            };
            self.merged[count] = (head, 0);
            count += 1;
            match write_chain(ring, map, head, parts, done) {
                Some((n, _)) if n > 0 => {
                    self.merged[count - 1].1 = n as u32;
                    done += n;
                }
                _ => {
                    bad = true;
                    break;
                }
            }
        }
        let (addr, len) = first;
        let buffers = (count as u16).to_le_bytes();
        let counted = !bad
            && len >= NET_HDR_LEN
            && addr
                .checked_add(NUM_BUFFERS_AT as u64)
                .is_some_and(|at| map.write(at, &buffers));
        if counted {
            self.moved[pair_of(q)].tx_packets += 1;
        } else {
            self.stats.rx_refused += 1;
            for m in &mut self.merged[..count] {
                m.1 = 0;
            }
        }
        for &(head, len) in &self.merged[..count] {
            ring.push_used(head, len);
        }
        true
    }

    /// Starts loading the guest's next `n` receive buffers, before as many `send`s.
    pub fn prepare_send(&mut self, n: usize) {
        let (Some(map), Some(q)) = (&self.map, self.to_guest) else {
            return;
        };
        if let Some(ring) = &mut self.queues[q] {
            ring.prefetch(map, n);
        }
    }

    /// Makes the frames `send` wrote so far visible to the guest, within a batch; the guest is
    /// interrupted, if it asked, at [`flush_sent`](Self::flush_sent).
    pub fn show_sent(&mut self) {
        if let Some(ring) = self.to_guest.and_then(|q| self.queues[q].as_mut()) {
            ring.show();
        }
    }

    /// Publishes the frames `send` wrote, and interrupts the guest if it asked to be.
    pub fn flush_sent(&mut self) {
        let (Some(layout), Some(q)) = (&self.layout, self.to_guest) else {
            return;
        };
        let Some(ring) = &mut self.queues[q] else {
            return;
        };
        self.link.set_next_avail(q, ring.next_avail());
        publish(ring, &layout.rings[q].call);
    }
}

impl Drop for Rings {
    /// Records where the rings stopped and tells the protocol thread the pairs are not polled.
    fn drop(&mut self) {
        self.save_positions();
        self.link.poll(&self.pairs, false);
    }
}

/// Publishes `ring`'s used entries, and writes the guest's `call` eventfd if it wants an
/// interrupt for them.
fn publish(ring: &mut SplitRing, call: &Option<Arc<File>>) {
    if ring.publish() {
        if let Some(call) = call {
            // A failed write only delays the guest until the next interrupt.
            let _ = (&**call as &File).write(&1u64.to_ne_bytes());
        }
    }
}

/// What the virtio-net header of a frame the guest sent asks for.
#[derive(Debug, Clone, Copy)]
struct TxHeader {
    /// Partial where the guest left it so (`NEEDS_CSUM`), for the frame to carry.
    checksum: Checksum,
    /// The frame is a TCP superframe cut like this.
    gso: Option<Gso>,
}

impl TxHeader {
    /// The header's requests; `None` (refused) if it asks for what brink did not offer.
    fn parse(header: &[u8; NET_HDR_LEN]) -> Option<TxHeader> {
        let word = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let (flags, kind) = (u32::from(header[0]), u32::from(header[1]));
        let checksum = if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            Checksum::Partial(Partial {
                start: word(CSUM_START_AT),
                offset: word(CSUM_OFFSET_AT),
            })
        } else {
            Checksum::AsIs
        };
        let gso = match kind & !VIRTIO_NET_HDR_GSO_ECN {
            0 => None,
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => Some(Gso {
                kind: header[1] & !(VIRTIO_NET_HDR_GSO_ECN as u8),
                header_len: word(2),
                size: word(4),
            })
            .filter(|g| g.size > 0),
            _ => return None,
        };
        Some(TxHeader { checksum, gso })
    }
}

/// The length of the transmit chain at `head` and its virtio-net header's requests, if the
/// chain is readable, holds a header and a frame no longer than a jumbo buffer, and the header
/// asks for nothing brink did not offer and for no partial checksum outside the frame (parse
/// checks that one inside it is in the TCP or UDP header). A chain of one buffer in one region
/// comes with that buffer, for the frame to be copied from it without walking the chain again.
fn offered<'m>(
    ring: &SplitRing,
    map: &'m GuestMap,
    head: u16,
) -> Option<(usize, TxHeader, Option<Span<'m>>)> {
    let mut header = [0u8; NET_HDR_LEN];
    let lone = lone_buffer(ring, map, head, false).map(|(_, span)| span);
    let len = match &lone {
        Some(span) => span.read(0, &mut header).then_some(span.size())?,
        None => copy_out(ring, map, head, 0, &mut header)?,
    };
    if len <= NET_HDR_LEN || len - NET_HDR_LEN > JUMBO_LEN {
        return None;
    }
    let header = TxHeader::parse(&header)?;
    let inside = match header.checksum {
        Checksum::Partial(p) => p.fits(len - NET_HDR_LEN),
        _ => true,
    };
    inside.then_some((len, header, lone))
}

/// The buffer of the chain at `head` and where it lies, if the chain is that one buffer, the
/// device writes it (`writable`) or reads it as asked, and it lies in one region.
fn lone_buffer<'m>(
    ring: &SplitRing,
    map: &'m GuestMap,
    head: u16,
    writable: bool,
) -> Option<(Desc, Span<'m>)> {
    let d = ring.lone(head).filter(|d| d.writable() == writable)?;
    Some((d, map.span(d.addr, d.len as usize)?))
}

/// Copies the bytes of the readable chain at `head` from offset `skip` on into `dst`, as many
/// as `dst` holds, and returns the chain's whole length; `None` if the chain is broken, has a
/// writable buffer, or the bytes copied leave guest memory.
fn copy_out(
    ring: &SplitRing,
    map: &GuestMap,
    head: u16,
    skip: usize,
    dst: &mut [u8],
) -> Option<usize> {
    let (mut at, mut ok) = (0usize, true);
    let whole = ring.walk(head, |d| {
        let len = d.len as usize;
        let end = at.saturating_add(len);
        ok = !d.writable() && end <= NET_HDR_LEN + JUMBO_LEN;
        if ok && end > skip && at < skip + dst.len() {
            // The part of this buffer that falls in `skip..skip + dst.len()`.
            let from = skip.saturating_sub(at);
            let to = (skip + dst.len()).min(end) - at;
            let into = at + from - skip;
            ok = d
                .addr
                .checked_add(from as u64)
                .is_some_and(|addr| map.read(addr, &mut dst[into..into + to - from]));
        }
        at = end;
        ok
    });
    (whole && ok).then_some(at)
}

/// Writes the bytes of `parts` (a virtio-net header, of fixed size so that it is written without
/// a call to `memcpy`, and a frame), one after the other, from offset `from` on into the writable
/// chain at `head`, as many as it holds. Returns how many, and the guest address and length of
/// the chain's first buffer; `None` if the chain is broken, not writable or leaves guest memory.
fn write_chain(
    ring: &SplitRing,
    map: &GuestMap,
    head: u16,
    parts: (&[u8; NET_HDR_LEN], &[u8]),
    from: usize,
) -> Option<(usize, (u64, usize))> {
    let total = NET_HDR_LEN + parts.1.len();
    // The usual case: the whole frame fits the chain's one buffer.
    let whole = (from == 0)
        .then(|| lone_buffer(ring, map, head, true))
        .flatten()
        .filter(|(_, span)| span.size() >= total);
    if let Some((d, span)) = whole {
        let ok = span.write(0, parts.0) && span.write(NET_HDR_LEN, parts.1);
        return ok.then_some((total, (d.addr, span.size())));
    }
    let (mut done, mut first, mut ok) = (from, None, true);
    let whole = ring.walk(head, |d| {
        if done == total {
            return false;
        }
        ok = d.writable();
        let (mut addr, mut room) = (d.addr, d.len as usize);
        first = first.or(Some((addr, room)));
        while ok && room > 0 && done < total {
            let src = match done.checked_sub(NET_HDR_LEN) {
                None => &parts.0[done..],
                Some(at) => &parts.1[at..],
            };
            let n = src.len().min(room);
            ok = map.write(addr, &src[..n]);
            addr += n as u64;
            room -= n;
            done += n;
        }
        ok
    });
    (whole && ok).then_some((done - from, first?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use virtio_bindings::virtio_ring::{
        VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

    use super::super::device::RingSetup;
    use super::*;
    use crate::wire::checksum;

    /// Frames as they arrive, with their segmentation and checksum state.
    #[derive(Default)]
    struct Collect(Vec<(Vec<u8>, Option<Gso>, Checksum)>);

    impl Sink for Collect {
        fn take(
            &mut self,
            len: usize,
            (gso, checksum): (Option<Gso>, Checksum),
            fill: impl FnOnce(&mut [u8]) -> bool,
        ) -> Taken {
            let mut frame = vec![0; len];
            if !fill(&mut frame) {
                return Taken::Refused;
            }
            self.0.push((frame, gso, checksum));
            Taken::Kept
        }
    }

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
            base: 0,
            base_set: 0,
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
        rings_with(mem, rx, tx, 0)
    }

    /// [`rings_with`] with event indexes negotiated or not.
    fn rings_events(
        mem: &Arc<GuestMemoryMmap>,
        rx: RingSetup,
        tx: RingSetup,
        features: u64,
        event_idx: bool,
    ) -> Rings {
        let mut all: [RingSetup; QUEUES] = Default::default();
        (all[0], all[1]) = (rx, tx);
        let link = published(mem, all, features, event_idx);
        polling(&link, &[0])
    }

    /// A link on which the protocol thread published `rings`.
    fn published(
        mem: &Arc<GuestMemoryMmap>,
        rings: [RingSetup; QUEUES],
        features: u64,
        event_idx: bool,
    ) -> Arc<Link> {
        let link = Arc::new(Link::default());
        link.publish(Some(Arc::new(Layout {
            mem: Arc::clone(mem),
            rings,
            event_idx,
            features,
        })));
        link
    }

    /// A worker's rings of `pairs` on `link`, synced.
    fn polling(link: &Arc<Link>, pairs: &[usize]) -> Rings {
        let mut rings = Rings::new(Arc::clone(link), pairs);
        rings.sync();
        rings
    }

    /// The receive and transmit rings of `pairs` queue pairs, a page apart from 0x4_0000 on,
    /// and their setups (all running).
    fn pairs_of(mem: &GuestMemoryMmap, pairs: usize) -> (Vec<Mock<'_>>, [RingSetup; QUEUES]) {
        let mut setups: [RingSetup; QUEUES] = Default::default();
        let mocks: Vec<Mock<'_>> = (0..2 * pairs)
            .map(|q| MockSplitQueue::create(mem, GuestAddress(0x4_0000 + 0x1000 * q as u64), SIZE))
            .collect();
        for (q, m) in mocks.iter().enumerate() {
            setups[q] = setup(m);
        }
        (mocks, setups)
    }

    /// Puts a frame whose first byte is `tag` on transmit ring `tx` (its `k`-th chain), in
    /// guest buffer `k` of that ring.
    fn offer(mem: &GuestMemoryMmap, tx: &Mock<'_>, q: usize, k: u16, tag: u8) {
        let at = DATA + 0x1000 * (8 * q as u64 + u64::from(k));
        let mut frame = vec![0u8; NET_HDR_LEN + 60];
        frame[NET_HDR_LEN] = tag;
        mem.write_slice(&frame, GuestAddress(at)).unwrap();
        tx.add_desc_chains(&[desc(at, frame.len() as u32, 0, 0)], k)
            .unwrap();
    }

    #[test]
    fn frames_on_each_pairs_transmit_queue_are_taken_by_the_worker_polling_it() {
        let mem = memory();
        let (mocks, setups) = pairs_of(&mem, 3);
        let link = published(&mem, setups, 0, true);
        // One worker polls pairs 0 and 2, another pair 1.
        let (mut a, mut b) = (polling(&link, &[0, 2]), polling(&link, &[1]));
        for pair in 0..3 {
            let q = tx_queue(pair);
            offer(&mem, &mocks[q], q, 0, pair as u8);
        }
        let tags = |r: &mut Rings| {
            let mut t: Vec<u8> = received(r).iter().map(|f| f[0]).collect();
            t.sort_unstable();
            t
        };
        assert_eq!(tags(&mut a), [0, 2]);
        assert_eq!(tags(&mut b), [1]);
        for pair in 0..3 {
            assert_eq!(mocks[tx_queue(pair)].used().idx().load(), 1, "pair {pair}");
        }
        let moved: Vec<(u32, u64)> = a.pair_stats().map(|s| (s.queue, s.rx_packets)).collect();
        assert_eq!(moved, [(0, 1), (2, 1)]);
        // A full batch from one pair does not keep the next poll from the other.
        for k in 0..4 {
            offer(&mem, &mocks[tx_queue(0)], tx_queue(0), 1 + k, 0);
            offer(&mem, &mocks[tx_queue(2)], tx_queue(2), 1 + k, 2);
        }
        let mut got = Collect::default();
        let mut pairs_seen = Vec::new();
        for _ in 0..2 {
            a.receive(4, &mut got);
            pairs_seen.push(got.0.last().map(|(f, ..)| f[0]));
        }
        pairs_seen.sort_unstable();
        assert_eq!(pairs_seen, [Some(0), Some(2)]);
    }

    #[test]
    fn a_ring_started_again_begins_where_the_frontend_says_even_for_a_late_worker() {
        let mem = memory();
        let (mocks, mut setups) = pairs_of(&mem, 2);
        let q = tx_queue(1);
        for k in 0..3 {
            offer(&mem, &mocks[q], q, k, k as u8);
        }
        (setups[q].base, setups[q].base_set) = (2, 1);
        let link = published(&mem, setups.clone(), 0, true);
        let mut r = polling(&link, &[1]);
        let tags = |r: &mut Rings| {
            r.sync();
            received(r).iter().map(|f| f[0]).collect::<Vec<_>>()
        };
        assert_eq!(tags(&mut r), [2], "started at the frontend's base");
        // Stopped, given a new base and started again, all before this worker looks: it
        // starts at the new base, not where it was.
        setups[q].enabled = false;
        link.publish(Some(layout(&mem, setups.clone())));
        (setups[q].enabled, setups[q].base, setups[q].base_set) = (true, 1, 2);
        link.publish(Some(layout(&mem, setups.clone())));
        assert_eq!(tags(&mut r), [1, 2]);
        // Only turned off and on: it continues where it was.
        offer(&mem, &mocks[q], q, 3, 3);
        setups[q].enabled = false;
        link.publish(Some(layout(&mem, setups.clone())));
        r.sync();
        setups[q].enabled = true;
        link.publish(Some(layout(&mem, setups)));
        assert_eq!(tags(&mut r), [3]);
    }

    /// The layout of `rings` (no features, event indexes on).
    fn layout(mem: &Arc<GuestMemoryMmap>, rings: [RingSetup; QUEUES]) -> Arc<Layout> {
        Arc::new(Layout {
            mem: Arc::clone(mem),
            rings,
            event_idx: true,
            features: 0,
        })
    }

    #[test]
    fn a_disabled_ring_is_neither_polled_nor_written() {
        let mem = memory();
        let (mocks, mut setups) = pairs_of(&mem, 2);
        setups[tx_queue(1)].enabled = false;
        setups[rx_queue(0)].enabled = false;
        let link = published(&mem, setups, 0, true);
        let mut r = polling(&link, &[0, 1]);
        offer(&mem, &mocks[tx_queue(1)], tx_queue(1), 0, 1);
        assert!(received(&mut r).is_empty());
        assert_eq!(mocks[tx_queue(1)].used().idx().load(), 0);
        // Frames for the guest go to the running receive queue of pair 1, not pair 0's.
        for q in [rx_queue(0), rx_queue(1)] {
            mocks[q]
                .add_desc_chains(
                    &[desc(DATA + 0x1000 * q as u64, 2048, VRING_DESC_F_WRITE, 0)],
                    0,
                )
                .unwrap();
        }
        assert!(r.sends());
        assert!(r.send(&[0x77; 60], None, Checksum::AsIs));
        r.flush_sent();
        assert_eq!(mocks[rx_queue(0)].used().idx().load(), 0);
        assert_eq!(mocks[rx_queue(1)].used().idx().load(), 1);
        // A worker whose only receive queue is off sends nothing itself.
        let mut only = polling(&link, &[0]);
        assert!(!only.sends());
        assert!(!only.send(&[0x77; 60], None, Checksum::AsIs));
    }

    #[test]
    fn frames_for_the_guest_go_into_the_receive_ring_of_the_senders_pair() {
        let mem = memory();
        let (mocks, setups) = pairs_of(&mem, 2);
        let link = published(&mem, setups, 0, true);
        let (mut a, mut b) = (polling(&link, &[0]), polling(&link, &[1]));
        for q in [rx_queue(0), rx_queue(1)] {
            for k in 0..2u16 {
                let at = DATA + 0x1000 * (8 * q as u64 + u64::from(k));
                mocks[q]
                    .add_desc_chains(&[desc(at, 2048, VRING_DESC_F_WRITE, 0)], k)
                    .unwrap();
            }
        }
        assert!(a.send(&[0xa0; 60], None, Checksum::AsIs));
        a.flush_sent();
        for _ in 0..2 {
            assert!(b.send(&[0xb1; 60], None, Checksum::AsIs));
        }
        b.flush_sent();
        assert_eq!(mocks[rx_queue(0)].used().idx().load(), 1);
        assert_eq!(mocks[rx_queue(1)].used().idx().load(), 2);
        let first_byte = |q: usize| {
            let mut byte = [0u8];
            let at = DATA + 0x1000 * 8 * q as u64 + NET_HDR_LEN as u64;
            mem.read_slice(&mut byte, GuestAddress(at)).unwrap();
            byte[0]
        };
        assert_eq!(
            (first_byte(rx_queue(0)), first_byte(rx_queue(1))),
            (0xa0, 0xb1)
        );
        let sent = |r: &Rings| r.pair_stats().map(|s| s.tx_packets).collect::<Vec<_>>();
        assert_eq!((sent(&a), sent(&b)), (vec![1], vec![2]));
    }

    /// [`rings`] with `features` negotiated.
    fn rings_with(
        mem: &Arc<GuestMemoryMmap>,
        rx: RingSetup,
        tx: RingSetup,
        features: u64,
    ) -> Rings {
        rings_events(mem, rx, tx, features, true)
    }

    fn used_len(mem: &GuestMemoryMmap, q: &Mock<'_>, i: u64) -> u32 {
        // A used element is (id: u32, len: u32) after the 4-byte ring header.
        mem.read_obj(q.used_addr().unchecked_add(4 + 8 * i + 4))
            .unwrap()
    }

    fn received(rings: &mut Rings) -> Vec<Vec<u8>> {
        let mut got = Collect::default();
        rings.receive(32, &mut got);
        got.0.into_iter().map(|(frame, ..)| frame).collect()
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
        assert_eq!(received(&mut r), vec![frame.clone()]);
        assert_eq!(tx.used().idx().load(), 1, "the chain is given back");
        assert!(received(&mut r).is_empty());
        // The header and the frame in one descriptor, as Linux and DPDK send them.
        let mut lone = vec![0; NET_HDR_LEN];
        lone.extend_from_slice(&frame);
        mem.write_slice(&lone, GuestAddress(DATA + 0x2000)).unwrap();
        let len = lone.len() as u32;
        tx.add_desc_chains(&[desc(DATA + 0x2000, len, 0, 0)], 2)
            .unwrap();
        assert_eq!(received(&mut r), vec![frame]);
        assert_eq!(tx.used().idx().load(), 2);
        assert_eq!(r.stats(), RingStats::default());
    }

    #[test]
    fn bad_transmit_chains_are_refused_and_given_back() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        // Outside guest memory; write-only; shorter than the header; a loop; a next index
        // outside the table; an indirect table (not offered).
        tx.add_desc_chains(&[desc(0xffff_0000, 64, 0, 0)], 0)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_WRITE, 0)], 1)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 8, 0, 0)], 2).unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_NEXT, 3)], 3)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_NEXT, 100)], 4)
            .unwrap();
        tx.add_desc_chains(&[desc(DATA, 64, VRING_DESC_F_INDIRECT, 0)], 5)
            .unwrap();
        assert!(received(&mut r).is_empty());
        assert_eq!(r.stats().tx_refused, 6);
        assert_eq!(tx.used().idx().load(), 6);
    }

    #[test]
    fn frames_for_the_guest_fill_its_buffers_or_wait_for_one() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        let frame = [0xab; 100];
        assert!(
            !r.send(&frame, None, Checksum::AsIs),
            "no buffer posted yet"
        );
        rx.add_desc_chains(&[desc(DATA, 2048, VRING_DESC_F_WRITE, 0)], 0)
            .unwrap();
        // Too short for header and frame.
        rx.add_desc_chains(&[desc(DATA + 0x1000, 50, VRING_DESC_F_WRITE, 0)], 1)
            .unwrap();
        assert!(r.send(&frame, None, Checksum::AsIs));
        assert!(
            r.send(&frame, None, Checksum::AsIs),
            "the short buffer is given back empty"
        );
        r.flush_sent();
        assert_eq!(rx.used().idx().load(), 2);
        assert_eq!(used_len(&mem, &rx, 0), (NET_HDR_LEN + frame.len()) as u32);
        assert_eq!(used_len(&mem, &rx, 1), 0);
        let mut written = [0u8; NET_HDR_LEN + 100];
        mem.read_slice(&mut written, GuestAddress(DATA)).unwrap();
        assert_eq!(
            written[..NET_HDR_LEN],
            Offloads::default().rx_header(None, Checksum::AsIs)
        );
        assert_eq!(written[NET_HDR_LEN..], frame);
        assert_eq!(r.stats().rx_refused, 1);
        assert!(!r.send(&frame, None, Checksum::AsIs), "both buffers used");
    }

    #[test]
    fn the_guest_is_interrupted_only_when_it_asks() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let path = std::env::temp_dir().join(format!("brink-call-{}", std::process::id()));
        let call = Arc::new(File::create(&path).unwrap());
        let interrupts = || std::fs::metadata(&path).unwrap().len() / 8;
        for k in 0..4u16 {
            let at = DATA + u64::from(k) * 0x1000;
            rx.add_desc_chains(&[desc(at, 2048, VRING_DESC_F_WRITE, 0)], k)
                .unwrap();
        }
        let with_call = RingSetup {
            call: Some(Arc::clone(&call)),
            ..setup(&rx)
        };
        let frame = [0x5a; 60];
        let send = |r: &mut Rings| {
            assert!(r.send(&frame, None, Checksum::AsIs));
            r.flush_sent();
        };
        // Without event indexes: the avail ring's NO_INTERRUPT flag says it.
        let mut r = rings_events(&mem, with_call.clone(), setup(&tx), 0, false);
        let flags = rx.avail_addr();
        mem.write_obj(VRING_AVAIL_F_NO_INTERRUPT as u16, flags)
            .unwrap();
        send(&mut r);
        assert_eq!(interrupts(), 0, "the guest asked for no interrupt");
        mem.write_obj(0u16, flags).unwrap();
        send(&mut r);
        assert_eq!(interrupts(), 1);
        r.flush_sent();
        assert_eq!(interrupts(), 1, "nothing new used, no interrupt");
        // With them: only once the used index passes the guest's used-event index.
        let mut r = rings_events(&mem, with_call, setup(&tx), 0, true);
        let used_event = rx.avail_addr().unchecked_add(4 + 2 * u64::from(SIZE));
        mem.write_obj(3u16, used_event).unwrap();
        send(&mut r);
        assert_eq!(
            interrupts(),
            1,
            "used index 3 is not past the event index 3"
        );
        send(&mut r);
        assert_eq!(interrupts(), 2);
        assert_eq!(rx.used().idx().load(), 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn rings_misaligned_or_outside_guest_memory_are_not_polled() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        tx.add_desc_chains(&[desc(DATA + 0x1000, 64, 0, 0)], 0)
            .unwrap();
        let misaligned = RingSetup {
            avail: setup(&tx).avail + 1,
            ..setup(&tx)
        };
        let outside = RingSetup {
            used: 0x20_0000 - 8,
            ..setup(&tx)
        };
        for bad in [misaligned, outside] {
            let mut r = rings(&mem, setup(&rx), bad);
            assert_eq!(r.receive(32, &mut Collect::default()), 0);
        }
        assert_eq!(tx.used().idx().load(), 0);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        assert_eq!(received(&mut r).len(), 1, "the same ring laid out right");
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
        assert_eq!(r.receive(32, &mut Collect::default()), 0);
        assert_eq!(tx.used().idx().load(), 0);
    }

    /// A TCP/IPv4 frame of `payload` bytes from 10.0.0.1 to 10.0.0.2 whose checksum field holds
    /// only the pseudo-header sum, as a guest with checksum offload leaves it; and where the
    /// field is.
    fn partial_tcp(payload: usize) -> (Vec<u8>, usize) {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (20 + 20 + payload) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[46] = 5 << 4;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let pseudo = checksum::pseudo_header(&f[26..30], &f[30..34], 6, 20 + payload as u16);
        f[50..52].copy_from_slice(&(!pseudo.ones_complement()).to_ne_bytes());
        (f, 50)
    }

    /// The virtio-net header of a frame whose TCP/IPv4 checksum (field at 50) the guest left
    /// partial, cut into segments of 1,448 bytes if `tso`.
    fn partial_header(tso: bool) -> [u8; NET_HDR_LEN] {
        let mut header = [0u8; NET_HDR_LEN];
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
        if tso {
            header[1] = VIRTIO_NET_HDR_GSO_TCPV4 as u8;
            header[2..4].copy_from_slice(&54u16.to_le_bytes());
            header[4..6].copy_from_slice(&1448u16.to_le_bytes());
        }
        header[6..8].copy_from_slice(&34u16.to_le_bytes());
        header[8..10].copy_from_slice(&16u16.to_le_bytes());
        header
    }

    /// What the guest behind `rings` sends with `header` in front of `frame`, as the worker
    /// takes it.
    fn sent_by_guest(
        mem: &GuestMemoryMmap,
        tx: &Mock<'_>,
        rings: &mut Rings,
        header: [u8; NET_HDR_LEN],
        frame: &[u8],
    ) -> (Vec<u8>, Option<Gso>, Checksum) {
        mem.write_slice(&header, GuestAddress(DATA)).unwrap();
        mem.write_slice(frame, GuestAddress(DATA + 0x1000)).unwrap();
        tx.add_desc_chains(
            &[
                desc(DATA, NET_HDR_LEN as u32, VRING_DESC_F_NEXT, 1),
                desc(DATA + 0x1000, frame.len() as u32, 0, 0),
            ],
            0,
        )
        .unwrap();
        let mut got = Collect::default();
        rings.receive(32, &mut got);
        let [taken] = &got.0[..] else {
            panic!("{} frames", got.0.len())
        };
        taken.clone()
    }

    /// What the guest behind `rings` receives for `frame` sent with `gso` and `checksum`: its
    /// virtio-net header and the frame, from one buffer of 64 KiB.
    fn received_by_guest(
        mem: &GuestMemoryMmap,
        rx: &Mock<'_>,
        rings: &mut Rings,
        (frame, gso, checksum): (&[u8], Option<Gso>, Checksum),
    ) -> ([u8; NET_HDR_LEN], Vec<u8>) {
        rx.add_desc_chains(&[desc(DATA, 0x1_0000, VRING_DESC_F_WRITE, 0)], 0)
            .unwrap();
        assert!(rings.send(frame, gso, checksum));
        rings.flush_sent();
        let len = used_len(mem, rx, 0) as usize;
        assert_eq!(len, NET_HDR_LEN + frame.len());
        let mut written = vec![0u8; len];
        mem.read_slice(&mut written, GuestAddress(DATA)).unwrap();
        let payload = written.split_off(NET_HDR_LEN);
        (written.try_into().unwrap(), payload)
    }

    fn csum_start_offset(header: &[u8; NET_HDR_LEN]) -> (u16, u16) {
        let word = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        (word(6), word(8))
    }

    #[test]
    fn a_partial_checksum_travels_to_a_guest_that_takes_it_untouched() {
        let partial = Checksum::Partial(Partial {
            start: 34,
            offset: 16,
        });
        for tso in [false, true] {
            let (frame, field) = partial_tcp(if tso { 3000 } else { 1000 });
            let mem = memory();
            let (rx, tx) = queues(&mem);
            let mut a = rings(&mem, setup(&rx), setup(&tx));
            let (bytes, gso, checksum) =
                sent_by_guest(&mem, &tx, &mut a, partial_header(tso), &frame);
            assert_eq!(bytes, frame, "taken as it was sent: nothing completed");
            assert_eq!(checksum, partial);
            assert_eq!(gso.is_some(), tso);

            let mem = memory();
            let (rx, tx) = queues(&mem);
            let features = 1 << VIRTIO_NET_F_GUEST_CSUM | 1 << VIRTIO_NET_F_GUEST_TSO4;
            let mut b = rings_with(&mem, setup(&rx), setup(&tx), features);
            assert!(b.takes_partial());
            assert_eq!(gso.is_some_and(|g| b.takes_superframe(&g)), tso);
            let (header, got) = received_by_guest(&mem, &rx, &mut b, (&bytes, gso, checksum));
            assert_eq!(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM as u8, "tso={tso}");
            assert_eq!(csum_start_offset(&header), (34, 16));
            let kind = if tso {
                VIRTIO_NET_HDR_GSO_TCPV4 as u8
            } else {
                0
            };
            assert_eq!(header[1], kind);
            if tso {
                assert_eq!(u16::from_le_bytes([header[4], header[5]]), 1448, "gso_size");
            }
            assert_eq!(
                got, frame,
                "the bytes arrive untouched, the field still partial"
            );
            assert_eq!(got[field..field + 2], frame[field..field + 2]);
        }
    }

    #[test]
    fn a_partial_checksum_outside_the_frame_is_refused_and_counted() {
        let (frame, _) = partial_tcp(100);
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut r = rings(&mem, setup(&rx), setup(&tx));
        let mut header = partial_header(false);
        // The field would be the frame's last byte and the one after it.
        let start = frame.len() as u16 - 17;
        header[6..8].copy_from_slice(&start.to_le_bytes());
        mem.write_slice(&header, GuestAddress(DATA)).unwrap();
        mem.write_slice(&frame, GuestAddress(DATA + 0x1000))
            .unwrap();
        tx.add_desc_chains(
            &[
                desc(DATA, NET_HDR_LEN as u32, VRING_DESC_F_NEXT, 1),
                desc(DATA + 0x1000, frame.len() as u32, 0, 0),
            ],
            0,
        )
        .unwrap();
        assert!(received(&mut r).is_empty());
        assert_eq!(r.stats().tx_refused, 1);
        assert_eq!(tx.used().idx().load(), 1, "the chain is given back");
        // One byte earlier, the field lies inside: taken (parse judges where it is).
        let (bytes, _, checksum) = sent_by_guest(
            &mem,
            &tx,
            &mut r,
            {
                header[6..8].copy_from_slice(&(start - 1).to_le_bytes());
                header
            },
            &frame,
        );
        assert_eq!(bytes, frame);
        assert_eq!(checksum.partial().map(|p| p.start), Some(start - 1));
    }

    #[test]
    fn a_guest_without_guest_csum_gets_complete_checksums_and_no_flags() {
        let (frame, _) = partial_tcp(1000);
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let mut a = rings(&mem, setup(&rx), setup(&tx));
        let (mut bytes, _, checksum) =
            sent_by_guest(&mem, &tx, &mut a, partial_header(false), &frame);

        // TSO without GUEST_CSUM (which the specification forbids) takes no superframe either.
        let mut b = rings_with(&mem, setup(&rx), setup(&tx), 1 << VIRTIO_NET_F_GUEST_TSO4);
        assert!(!b.takes_partial());
        let gso = Gso {
            kind: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
            header_len: 54,
            size: 1448,
        };
        assert!(!b.takes_superframe(&gso));
        // What egress does for such a guest: complete it in software first.
        assert!(checksum.partial().unwrap().complete(&mut bytes));
        let (header, got) = received_by_guest(&mem, &rx, &mut b, (&bytes, None, Checksum::Valid));
        assert_eq!(header, Offloads::default().rx_header(None, Checksum::AsIs));
        assert_eq!(header[0], 0, "no NEEDS_CSUM, no DATA_VALID");
        let pseudo = checksum::pseudo_header(&got[26..30], &got[30..34], 6, 1020);
        assert_eq!(
            checksum::segment(&pseudo, &got[34..], 16),
            checksum::Verdict::Valid
        );
        assert_eq!(got[54..], frame[54..], "the payload is the same");
    }

    #[test]
    fn a_checksum_brink_completed_goes_to_a_guest_csum_guest_as_valid() {
        let offloads = Offloads::new(1 << VIRTIO_NET_F_GUEST_CSUM);
        let valid = offloads.rx_header(None, Checksum::Valid);
        assert_eq!(valid[0], VIRTIO_NET_HDR_F_DATA_VALID as u8);
        assert_eq!(
            offloads.rx_header(None, Checksum::AsIs)[0],
            0,
            "not verified"
        );
    }

    #[test]
    fn with_mergeable_buffers_a_frame_spans_as_many_as_it_needs() {
        let mem = memory();
        let (rx, tx) = queues(&mem);
        let features = 1 << VIRTIO_NET_F_MRG_RXBUF
            | 1 << VIRTIO_NET_F_GUEST_CSUM
            | 1 << VIRTIO_NET_F_GUEST_TSO4;
        let mut r = rings_with(&mem, setup(&rx), setup(&tx), features);
        let partial = Checksum::Partial(Partial {
            start: 34,
            offset: 16,
        });
        let (frame, _) = partial_tcp(4000);
        let gso = Gso {
            kind: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
            header_len: 54,
            size: 1448,
        };
        // Two buffers of 1,536 bytes: not enough; the frame is not taken and nothing is used.
        for k in 0..2u16 {
            let at = DATA + u64::from(k) * 0x1000;
            rx.add_desc_chains(&[desc(at, 1536, VRING_DESC_F_WRITE, 0)], k)
                .unwrap();
        }
        assert!(!r.send(&frame, Some(gso), partial));
        assert_eq!(rx.used().idx().load(), 0);
        rx.add_desc_chains(&[desc(DATA + 0x2000, 1536, VRING_DESC_F_WRITE, 0)], 2)
            .unwrap();
        assert!(r.send(&frame, Some(gso), partial));
        r.flush_sent();
        assert_eq!(rx.used().idx().load(), 3);
        let lens: Vec<u32> = (0..3).map(|i| used_len(&mem, &rx, i)).collect();
        assert_eq!(
            lens,
            [1536, 1536, (NET_HDR_LEN + frame.len()) as u32 - 3072]
        );
        let mut header = [0u8; NET_HDR_LEN];
        mem.read_slice(&mut header, GuestAddress(DATA)).unwrap();
        assert_eq!(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM as u8);
        assert_eq!(csum_start_offset(&header), (34, 16));
        assert_eq!(header[1], VIRTIO_NET_HDR_GSO_TCPV4 as u8);
        assert_eq!(u16::from_le_bytes([header[4], header[5]]), 1448);
        assert_eq!(
            u16::from_le_bytes([header[10], header[11]]),
            3,
            "num_buffers"
        );
        let mut tail = vec![0u8; 100];
        mem.read_slice(
            &mut tail,
            GuestAddress(DATA + 0x2000 + u64::from(lens[2]) - 100),
        )
        .unwrap();
        assert_eq!(tail, frame[frame.len() - 100..]);
        assert_eq!(r.stats(), RingStats::default());
    }

    /// A ring of `SIZE` entries laid out from `base`: table, then available ring, then used
    /// ring, a page apart (the mock's own layout packs the used ring into the available one
    /// when all of its entries are written).
    fn spread(base: u64) -> RingSetup {
        RingSetup {
            size: SIZE,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            call: None,
            started: true,
            enabled: true,
            base: 0,
            base_set: 0,
        }
    }

    proptest::proptest! {
        /// A guest that writes anything at all into its descriptor tables and rings: the worker
        /// neither crashes nor reads outside guest memory, and gives back every transmit chain
        /// it takes, frame or not.
        #[test]
        fn a_hostile_guest_gets_its_chains_back_and_nothing_else(
            table in proptest::collection::vec(proptest::num::u8::ANY, 16 * SIZE as usize),
            heads in proptest::collection::vec(0u16..24, SIZE as usize),
            offered in 0u16..=SIZE,
            features in proptest::num::u64::ANY,
        ) {
            let mem = memory();
            let (rx, tx) = (spread(0), spread(0x8000));
            for q in [&rx, &tx] {
                mem.write_slice(&table, GuestAddress(q.desc)).unwrap();
                for (i, h) in heads.iter().enumerate() {
                    mem.write_obj(*h, GuestAddress(q.avail + 4 + 2 * i as u64)).unwrap();
                }
                mem.write_obj(offered, GuestAddress(q.avail + 2)).unwrap();
            }
            let used = |q: &RingSetup| mem.read_obj::<u16>(GuestAddress(q.used + 2)).unwrap();
            let mut r = rings_with(&mem, rx.clone(), tx.clone(), features);
            let got = received(&mut r);
            let stats = r.stats();
            proptest::prop_assert_eq!(
                got.len() as u64 + stats.tx_refused + stats.dropped,
                u64::from(offered)
            );
            proptest::prop_assert_eq!(used(&tx), offered);
            let frame = [0x11; 200];
            while r.send(&frame, None, Checksum::AsIs) {}
            r.flush_sent();
            proptest::prop_assert!(used(&rx) <= offered);
        }
    }
}
