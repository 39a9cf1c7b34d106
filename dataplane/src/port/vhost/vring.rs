//! One split virtqueue (virtio 1.1, section 2.6) as the device side polls it, in place in the
//! guest's memory.
//!
//! The three parts of the ring (descriptor table, available ring, used ring) are translated
//! to host addresses once, when the ring starts: `virtio-queue` checks the size and the parts'
//! alignment, and each part must lie in one region of guest memory. Per frame the worker then reads an available
//! entry and the chain's descriptors and writes a used entry, with no address translation;
//! per batch it reads the available index once and publishes the used index once. DPDK's
//! vhost library and Open vSwitch-DPDK work the same way. Only the ring indexes are shared
//! with the guest's concurrent writes, so only they are atomics (acquire on the available
//! index before the entries it covers are read, release on the used index after the entries
//! it covers are written).
//!
//! Every descriptor is read once into a local copy and checked there: a guest that rewrites
//! its ring meanwhile can only hurt its own frames.

// Guest memory is shared with another process: it is reached through raw host addresses.
#![allow(unsafe_code)]

use std::num::Wrapping;
use std::sync::atomic::{fence, AtomicU16, Ordering};

use virtio_bindings::virtio_ring::{
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::device::RingSetup;
use super::guest::GuestMap;

/// Bytes of one descriptor.
const DESC_LEN: usize = 16;
/// Bytes of one used-ring element (`id: u32, len: u32`).
const USED_ELEM_LEN: usize = 8;
/// Bytes of a ring's `flags` and `idx` header.
const RING_HEADER: usize = 4;
/// Bytes of a cache line.
const CACHE_LINE: usize = 64;
/// How much of a buffer [`SplitRing::prefetch`] loads: a virtio-net header and a small frame.
const PREFETCH_BYTES: usize = 2 * CACHE_LINE;

/// One descriptor, as read from the guest.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Guest address of the buffer.
    pub addr: u64,
    /// Its length.
    pub len: u32,
    flags: u16,
    next: u16,
}

impl Desc {
    /// The device writes this buffer (a receive buffer).
    pub fn writable(&self) -> bool {
        u32::from(self.flags) & VRING_DESC_F_WRITE != 0
    }
}

/// A split ring in guest memory, with the device's positions in it.
#[derive(Debug)]
pub struct SplitRing {
    desc: *const u8,
    avail: *const u8,
    used: *mut u8,
    size: u16,
    event_idx: bool,
    /// The next available entry to take.
    next_avail: Wrapping<u16>,
    /// The guest's available index as last read.
    avail_idx: Wrapping<u16>,
    /// The next used entry to write.
    next_used: Wrapping<u16>,
    /// The used index the guest was last told about (published).
    published: Wrapping<u16>,
    /// The used index at the last interrupt decision.
    signalled: Wrapping<u16>,
    /// Buffers the device writes are prefetched for writing (the CPU has `PREFETCHW`).
    prefetch_writes: bool,
}

// SAFETY: the pointers point into guest memory that the port's `GuestMap` keeps mapped for as
// long as the ring is used (the ring is dropped with or before it); only the owning worker uses
// the ring.
unsafe impl Send for SplitRing {}

impl SplitRing {
    /// The ring `setup` describes, continuing at available index `next_avail`, if it is running
    /// and laid out inside guest memory (each part in one region). The guest is told not to
    /// kick: brink polls.
    pub fn new(
        map: &GuestMap,
        setup: &RingSetup,
        event_idx: bool,
        next_avail: u16,
    ) -> Option<SplitRing> {
        if !setup.running() {
            return None;
        }
        let size = usize::from(setup.size);
        // Both rings end with a 16-bit event index.
        let parts = aligned(setup).then(|| {
            (
                map.contiguous(setup.desc, DESC_LEN * size),
                map.contiguous(setup.avail, RING_HEADER + 2 * size + 2),
                map.contiguous(setup.used, RING_HEADER + USED_ELEM_LEN * size + 2),
            )
        });
        let Some((Some(desc), Some(avail), Some(used))) = parts else {
            tracing::warn!(
                size = setup.size,
                "vhost-user ring misaligned or outside guest memory: not polled"
            );
            return None;
        };
        let mut ring = SplitRing {
            desc,
            avail,
            used,
            size: setup.size,
            event_idx,
            next_avail: Wrapping(next_avail),
            avail_idx: Wrapping(next_avail),
            next_used: Wrapping(0),
            published: Wrapping(0),
            signalled: Wrapping(0),
            prefetch_writes: has_prefetchw(),
        };
        let used_idx = Wrapping(ring.used_index().load(Ordering::Acquire));
        (ring.next_used, ring.published, ring.signalled) = (used_idx, used_idx, used_idx);
        if !event_idx {
            // With event indexes the guest kicks only when the available event index (which
            // brink never moves) is passed; without, this flag asks it not to.
            ring.used_flags()
                .store(VRING_USED_F_NO_NOTIFY as u16, Ordering::Release);
        }
        Some(ring)
    }

    /// Where the device continues in the available ring.
    pub fn next_avail(&self) -> u16 {
        self.next_avail.0
    }

    fn avail_index(&self) -> &AtomicU16 {
        // SAFETY: `avail + 2` is the available ring's 2-byte aligned `idx` (checked at setup),
        // inside guest memory that stays mapped while the ring lives.
        unsafe { AtomicU16::from_ptr(self.avail.add(2) as *mut u16) }
    }

    fn used_flags(&self) -> &AtomicU16 {
        // SAFETY: as in `avail_index`, the used ring's `flags` (4-byte aligned).
        unsafe { AtomicU16::from_ptr(self.used as *mut u16) }
    }

    fn used_index(&self) -> &AtomicU16 {
        // SAFETY: as in `avail_index`, the used ring's `idx`.
        unsafe { AtomicU16::from_ptr(self.used.add(2) as *mut u16) }
    }

    /// Reads the 16-bit little-endian word `at` bytes into the available ring.
    fn avail_word(&self, at: usize) -> u16 {
        // SAFETY: callers pass `at` within the available ring's `4 + 2 * size + 2` bytes.
        u16::from_le(unsafe { std::ptr::read_volatile(self.avail.add(at) as *const u16) })
    }

    /// How many chains the guest made available that the device has not taken. The guest's
    /// index is read again only once all of them are taken; one that claims more entries than
    /// the ring has is not followed (none are available).
    #[inline]
    fn available(&mut self) -> u16 {
        if self.next_avail == self.avail_idx {
            self.avail_idx = Wrapping(self.avail_index().load(Ordering::Acquire));
            if (self.avail_idx - self.next_avail).0 > self.size {
                self.avail_idx = self.next_avail;
            }
        }
        (self.avail_idx - self.next_avail).0
    }

    /// The head of the `k`-th available chain from the next one (`k` below `available()`).
    #[inline]
    fn peek(&self, k: u16) -> u16 {
        let slot = usize::from((self.next_avail.0.wrapping_add(k)) & (self.size - 1));
        self.avail_word(RING_HEADER + 2 * slot)
    }

    /// The head of the next chain the guest made available, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<u16> {
        if self.available() == 0 {
            return None;
        }
        let head = self.peek(0);
        self.next_avail += 1;
        Some(head)
    }

    /// Starts loading what the next `n` chains will touch (the used-ring lines their entries go
    /// to, their head descriptors, then the first bytes of their buffers), so that a batch's
    /// cache misses on memory the guest wrote or read last overlap instead of coming one after
    /// the other. Takes nothing from the ring.
    pub fn prefetch(&mut self, map: &GuestMap, n: usize) {
        let n = self.available().min(u16::try_from(n).unwrap_or(u16::MAX));
        self.prefetch_used(n);
        for k in 0..n {
            let head = usize::from(self.peek(k) & (self.size - 1));
            prefetch(self.desc.wrapping_add(DESC_LEN * head), false);
        }
        for k in 0..n {
            let Some(d) = self.descriptor(self.peek(k)) else {
                continue;
            };
            if let Some(at) = map.contiguous(d.addr, 1) {
                let end = at.wrapping_add((d.len as usize).clamp(1, PREFETCH_BYTES) - 1);
                let write = d.writable() && self.prefetch_writes;
                prefetch(at, write);
                if (end as usize) / CACHE_LINE != (at as usize) / CACHE_LINE {
                    prefetch(end, write);
                }
            }
        }
    }

    /// Starts loading, for writing, the used-ring lines the next `n` used entries go to: the
    /// guest read them last, so each would otherwise wait for its line to come back from the
    /// guest's core when it is written (measured in docs/BENCHMARKS.md).
    fn prefetch_used(&self, n: u16) {
        let size = usize::from(self.size);
        let first = usize::from(self.next_used.0 & (self.size - 1));
        let n = usize::from(n).min(size);
        // The entries may wrap round to the ring's start: two runs of them.
        let tail = n.min(size - first);
        for (slot, count) in [(first, tail), (0, n - tail)] {
            if count == 0 {
                continue;
            }
            let start = self.used.wrapping_add(RING_HEADER + USED_ELEM_LEN * slot) as *const u8;
            let end = start.wrapping_add(USED_ELEM_LEN * count - 1);
            let mut line = start.wrapping_sub(start as usize % CACHE_LINE);
            while line <= end {
                prefetch(line, self.prefetch_writes);
                line = line.wrapping_add(CACHE_LINE);
            }
        }
    }

    /// Puts the last `n` chains taken back, as if they had not been taken.
    pub fn unpop(&mut self, n: u16) {
        self.next_avail -= n;
    }

    /// Descriptor `index` of the table, if it is one.
    #[inline]
    fn descriptor(&self, index: u16) -> Option<Desc> {
        if index >= self.size {
            return None;
        }
        // SAFETY: `index < size`, so the 16 bytes lie in the descriptor table, which is
        // 16-byte aligned (checked at setup): both 8-byte words are aligned. Each is read once,
        // as a whole, whatever the guest writes meanwhile.
        let (addr, rest) = unsafe {
            let at = self.desc.add(DESC_LEN * usize::from(index)) as *const u64;
            (
                std::ptr::read_volatile(at),
                std::ptr::read_volatile(at.add(1)),
            )
        };
        // The second word is `len: u32, flags: u16, next: u16`, little-endian.
        let rest = u64::from_le(rest);
        Some(Desc {
            addr: u64::from_le(addr),
            len: rest as u32,
            flags: (rest >> 32) as u16,
            next: (rest >> 48) as u16,
        })
    }

    /// Descriptor `head`, if it is a chain of its own (neither linked on nor indirect): the
    /// usual shape of a virtio-net frame, its header and bytes in one buffer.
    #[inline]
    pub fn lone(&self, head: u16) -> Option<Desc> {
        let linked = VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT;
        self.descriptor(head)
            .filter(|d| u32::from(d.flags) & linked == 0)
    }

    /// Calls `each` with the descriptors of the chain at `head`, in order, until it returns
    /// `false`. Returns `false` if the chain is broken: an index outside the table, an indirect
    /// descriptor (not offered) or more links than the ring has entries (a loop).
    #[inline]
    pub fn walk(&self, head: u16, mut each: impl FnMut(Desc) -> bool) -> bool {
        let mut index = head;
        for _ in 0..self.size {
            let Some(d) = self.descriptor(index) else {
                return false;
            };
            if u32::from(d.flags) & VRING_DESC_F_INDIRECT != 0 {
                return false;
            }
            if !each(d) {
                return true;
            }
            if u32::from(d.flags) & VRING_DESC_F_NEXT == 0 {
                return true;
            }
            index = d.next;
        }
        false
    }

    /// Returns chain `head` to the guest with `len` bytes written into it; the guest sees it
    /// once [`publish`](Self::publish) runs.
    #[inline]
    pub fn push_used(&mut self, head: u16, len: u32) {
        let slot = usize::from(self.next_used.0 & (self.size - 1));
        let mut elem = [0u8; USED_ELEM_LEN];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        // SAFETY: `slot < size`, so the element lies in the used ring (checked at setup).
        unsafe {
            std::ptr::write_volatile(
                self.used.add(RING_HEADER + USED_ELEM_LEN * slot) as *mut [u8; USED_ELEM_LEN],
                elem,
            );
        }
        self.next_used += 1;
    }

    /// Makes the used entries pushed so far visible to the guest, without asking whether it
    /// wants an interrupt for them ([`publish`](Self::publish) does, for all of them since the
    /// last interrupt decision).
    pub fn show(&mut self) {
        if self.next_used != self.published {
            self.used_index().store(self.next_used.0, Ordering::Release);
            self.published = self.next_used;
        }
    }

    /// Publishes the used entries pushed since the last interrupt decision; returns whether the
    /// guest asked to be interrupted for them (its used event index, or the absence of
    /// `NO_INTERRUPT`).
    pub fn publish(&mut self) -> bool {
        if self.next_used == self.signalled {
            return false;
        }
        self.show();
        // The guest may be setting its event index or flags while it checks the used index:
        // order the store above before the loads below (the spec's full barrier).
        fence(Ordering::SeqCst);
        let (new, old) = (self.next_used, self.signalled);
        self.signalled = new;
        if self.event_idx {
            let event = Wrapping(self.avail_word(RING_HEADER + 2 * usize::from(self.size)));
            return new - event - Wrapping(1) < new - old;
        }
        u32::from(self.avail_word(0)) & VRING_AVAIL_F_NO_INTERRUPT == 0
    }
}

/// Asks the CPU to start loading the cache line at `at`: to write it, in exclusive state, if
/// `write` (with `PREFETCHW`, which only a CPU that has it gets: see [`has_prefetchw`]), else to
/// read it. Reads nothing into the program and cannot fault, whatever the address.
#[inline]
fn prefetch(at: *const u8, write: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if write {
            // SAFETY: callers pass `write` only where `has_prefetchw` said the CPU has the
            // instruction; a prefetch has no effect but on the cache, for any address, and
            // touches neither the stack nor the flags.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) at,
                    options(nostack, preserves_flags, readonly)
                );
            }
        } else {
            // SAFETY: SSE is part of x86_64, so the instruction exists; a prefetch has no
            // effect but on the cache, for any address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, write);
}

/// Whether the CPU has `PREFETCHW` (CPUID leaf 8000_0001h, ECX bit 8). Rust's write hint
/// (`_MM_HINT_ET0`) compiles to a plain read prefetch unless the whole build targets the
/// feature; a receive buffer prefetched for reading still waits for ownership when the worker
/// writes the frame into it, the line being the guest's last (measured in BENCHMARKS.md).
fn has_prefetchw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `virtio-queue` accepts the ring's size (a power of two) and the alignment of its
/// three parts.
fn aligned(setup: &RingSetup) -> bool {
    Queue::new(setup.size).is_ok_and(|mut q| {
        q.try_set_desc_table_address(GuestAddress(setup.desc))
            .is_ok()
            && q.try_set_avail_ring_address(GuestAddress(setup.avail))
                .is_ok()
            && q.try_set_used_ring_address(GuestAddress(setup.used))
                .is_ok()
    })
}
