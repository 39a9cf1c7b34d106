//! The guest's memory as the worker reads and writes it: the host address of each region the
//! frontend shared, so that a guest address costs a bounds check and an add, not a walk through
//! `vm-memory`'s generic slice iterators (which took a third of the worker's time per frame).
//!
//! `vm-memory` maps the regions and keeps them mapped ([`GuestMemoryMmap`], held here); this
//! module only looks addresses up in them. Every address comes from an untrusted guest: an
//! access that leaves the guest's memory is refused, never followed. An access that runs from
//! one region into the next is split at the boundary.

// Guest memory is shared with another process: it is reached through raw host addresses.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::Arc;

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

/// One region: guest addresses `start..start + len` live at host address `host`.
#[derive(Debug, Clone, Copy)]
struct HostRegion {
    start: u64,
    len: u64,
    host: *mut u8,
}

/// The guest's memory regions, by guest address.
#[derive(Debug)]
pub struct GuestMap {
    regions: Vec<HostRegion>,
    /// Keeps the regions mapped for as long as their host addresses are used.
    _mem: Arc<GuestMemoryMmap>,
}

// SAFETY: the host addresses point into mappings that `_mem` owns and keeps alive; the map
// itself holds no thread-bound state, and the worker that owns it is its only user.
unsafe impl Send for GuestMap {}

impl GuestMap {
    /// The host addresses of `mem`'s regions.
    pub fn new(mem: Arc<GuestMemoryMmap>) -> Self {
        let regions = mem
            .iter()
            .filter_map(|r| {
                let host = r.get_host_address(MemoryRegionAddress(0)).ok()?;
                Some(HostRegion {
                    start: r.start_addr().0,
                    len: r.len(),
                    host,
                })
            })
            .collect();
        GuestMap { regions, _mem: mem }
    }

    /// The bytes at guest address `addr` that lie in the same region, at most `len` of them;
    /// `None` outside guest memory.
    #[inline]
    fn piece(&self, addr: u64, len: usize) -> Option<Span<'_>> {
        let r = self
            .regions
            .iter()
            .find(|r| addr >= r.start && addr - r.start < r.len)?;
        let offset = addr - r.start;
        Some(Span {
            // SAFETY: `offset` is inside the region, so the address stays inside its mapping.
            host: unsafe { r.host.add(offset as usize) },
            size: len.min((r.len - offset) as usize),
            _map: PhantomData,
        })
    }

    /// The host address of `len` bytes at `addr`, if they lie in one region (a ring's parts,
    /// which the worker then reads and writes in place).
    pub fn contiguous(&self, addr: u64, len: usize) -> Option<*mut u8> {
        self.span(addr, len).map(|span| span.host)
    }

    /// The `len` bytes at guest address `addr`, if they lie in one region: one lookup for a
    /// buffer that is then read or written in several parts (a virtio-net header and a frame).
    #[inline]
    pub fn span(&self, addr: u64, len: usize) -> Option<Span<'_>> {
        self.piece(addr, len).filter(|span| span.size == len)
    }

    /// Copies the guest's bytes at `addr` into `dst`; `false` (with `dst` partly written) if
    /// they leave guest memory.
    #[inline]
    pub fn read(&self, mut addr: u64, mut dst: &mut [u8]) -> bool {
        while !dst.is_empty() {
            let Some(span) = self.piece(addr, dst.len()) else {
                return false;
            };
            let (now, rest) = dst.split_at_mut(span.size);
            if !span.read(0, now) {
                return false;
            }
            (addr, dst) = (addr + now.len() as u64, rest);
        }
        true
    }

    /// Copies `src` into the guest's memory at `addr`; `false` (with part of it written) if the
    /// range leaves guest memory.
    #[inline]
    pub fn write(&self, mut addr: u64, mut src: &[u8]) -> bool {
        while !src.is_empty() {
            let Some(span) = self.piece(addr, src.len()) else {
                return false;
            };
            let (now, rest) = src.split_at(span.size);
            if !span.write(0, now) {
                return false;
            }
            (addr, src) = (addr + now.len() as u64, rest);
        }
        true
    }
}

/// Bytes of guest memory in one region, found once ([`GuestMap::span`]); every access is
/// checked against their size. All copies to and from guest memory go through one.
#[derive(Debug)]
pub struct Span<'m> {
    host: *mut u8,
    size: usize,
    _map: PhantomData<&'m GuestMap>,
}

impl Span<'_> {
    /// How many bytes the span holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether `n` bytes from offset `at` on lie in the span.
    fn holds(&self, at: usize, n: usize) -> bool {
        at.checked_add(n).is_some_and(|end| end <= self.size)
    }

    /// Copies the span's bytes from offset `at` on into `dst`; `false`, with nothing copied,
    /// if they run past its end.
    #[inline]
    pub fn read(&self, at: usize, dst: &mut [u8]) -> bool {
        if !self.holds(at, dst.len()) {
            return false;
        }
        // SAFETY: `at..at + dst.len()` lies in the span, which lies in one mapped region
        // (`piece`) that the borrowed map keeps mapped; guest memory never overlaps one
        // of brink's own buffers. The guest may change the bytes meanwhile; they are only ever
        // used from the copy.
        unsafe { std::ptr::copy_nonoverlapping(self.host.add(at), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` into the span from offset `at` on; `false`, with nothing written, if it
    /// runs past its end.
    #[inline]
    pub fn write(&self, at: usize, src: &[u8]) -> bool {
        if !self.holds(at, src.len()) {
            return false;
        }
        // SAFETY: as in `read`: the range lies in mapped guest memory, apart from `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.host.add(at), src.len()) };
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    #[test]
    fn accesses_stay_in_guest_memory_and_cross_adjacent_regions() {
        let mem = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0x1000), 0x1000),
                (GuestAddress(0x2000), 0x1000),
                (GuestAddress(0x8000), 0x1000),
            ])
            .unwrap(),
        );
        let map = GuestMap::new(Arc::clone(&mem));
        let bytes: Vec<u8> = (0..64).collect();
        assert!(map.write(0x1fe0, &bytes), "across two adjacent regions");
        let mut back = [0u8; 64];
        mem.read_slice(&mut back, GuestAddress(0x1fe0)).unwrap();
        assert_eq!(back[..], bytes[..]);
        let mut again = [0u8; 64];
        assert!(map.read(0x1fe0, &mut again));
        assert_eq!(again, back);
        assert!(!map.read(0x2fe0, &mut again), "runs into the hole");
        assert!(!map.write(0x0, &bytes), "below guest memory");
        assert!(
            !map.read(u64::MAX - 8, &mut again),
            "at the top of the address space"
        );
        assert!(
            map.contiguous(0x1fe0, 64).is_none(),
            "a ring part spans regions"
        );
        assert!(map.contiguous(0x8000, 0x1000).is_some());
        assert!(map.contiguous(0x8001, 0x1000).is_none());
        assert!(map.span(0x1fe0, 64).is_none(), "a span lies in one region");
        let span = map.span(0x8000, 0x100).unwrap();
        assert!(span.write(0xf0, &bytes[..16]));
        assert!(!span.write(0xf1, &bytes[..16]), "past the span's end");
        assert!(
            !span.read(usize::MAX, &mut again[..1]),
            "an offset that overflows"
        );
        let mut tail = [0u8; 16];
        assert!(span.read(0xf0, &mut tail));
        assert_eq!(tail[..], bytes[..16]);
    }
}
