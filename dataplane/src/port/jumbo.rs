//! Buffers for frames longer than one pool buffer: jumbo frames (MTU up to 9,000) and the TCP
//! superframes of guests with segmentation offload (up to 64 KiB).
//!
//! AF_XDP hands such a frame over as a chain of 2 KiB UMEM buffers (multi-buffer, `XDP_USE_SG`).
//! The backend copies the chain into one jumbo buffer, so every stage reads a frame as one slice;
//! the extra copy is small next to the kernel's own copy of every buffer. A worker has a fixed
//! number of them, taken and given back without allocating.
//!
//! A superframe a vhost-user guest sent keeps its segmentation ([`Gso`], from its virtio-net
//! header) beside its buffer, so it can reach another guest that takes superframes whole.

/// Bytes in one jumbo buffer: an Ethernet header, a VLAN tag and the largest IP packet.
pub const JUMBO_LEN: usize = 14 + 4 + u16::MAX as usize;

/// How a TCP superframe is to be cut into segments, as its sender's virtio-net header said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gso {
    /// `VIRTIO_NET_HDR_GSO_TCPV4` or `VIRTIO_NET_HDR_GSO_TCPV6`.
    pub kind: u8,
    /// Bytes of Ethernet, IP and TCP headers.
    pub header_len: u16,
    /// Payload bytes of each segment (the MSS).
    pub size: u16,
}

/// A worker's jumbo buffers, each free or held by one frame.
#[derive(Debug)]
pub struct JumboPool {
    bytes: Vec<u8>,
    free: Vec<u16>,
    /// Each buffer's segmentation, if it holds a guest's superframe.
    gso: Vec<Option<Gso>>,
}

impl JumboPool {
    /// A pool of `slots` buffers (at most 65,536).
    pub fn new(slots: u16) -> Self {
        JumboPool {
            bytes: vec![0; usize::from(slots) * JUMBO_LEN],
            free: (0..slots).rev().collect(),
            gso: vec![None; usize::from(slots)],
        }
    }

    /// Takes a free buffer (with no segmentation).
    pub fn take(&mut self) -> Option<u16> {
        let slot = self.free.pop()?;
        self.set_gso(slot, None);
        Some(slot)
    }

    /// The segmentation of the superframe in buffer `slot`, if it has one.
    pub fn gso(&self, slot: u16) -> Option<Gso> {
        self.gso.get(usize::from(slot)).copied().flatten()
    }

    /// Records the segmentation of the superframe in buffer `slot`.
    pub fn set_gso(&mut self, slot: u16, gso: Option<Gso>) {
        if let Some(g) = self.gso.get_mut(usize::from(slot)) {
            *g = gso;
        }
    }

    /// Gives buffer `slot` back.
    pub fn give(&mut self, slot: u16) {
        self.free.push(slot);
    }

    /// The first `len` bytes of buffer `slot` (empty if out of range).
    pub fn get(&self, slot: u16, len: usize) -> &[u8] {
        let start = usize::from(slot) * JUMBO_LEN;
        self.bytes
            .get(start..start + len.min(JUMBO_LEN))
            .unwrap_or(&[])
    }

    /// The whole of buffer `slot`, to write (empty if out of range).
    pub fn get_mut(&mut self, slot: u16) -> &mut [u8] {
        let start = usize::from(slot) * JUMBO_LEN;
        self.bytes
            .get_mut(start..start + JUMBO_LEN)
            .unwrap_or(&mut [])
    }

    /// Copies the first `len` bytes of buffer `from`, and its segmentation, into buffer `to`.
    pub fn copy_within(&mut self, from: u16, to: u16, len: usize) {
        let (src, dst) = (usize::from(from) * JUMBO_LEN, usize::from(to) * JUMBO_LEN);
        let len = len.min(JUMBO_LEN);
        if src.max(dst) + len <= self.bytes.len() {
            self.bytes.copy_within(src..src + len, dst);
        }
        self.set_gso(to, self.gso(from));
    }

    /// A new buffer holding a copy of `bytes`, or `None` if none is free or `bytes` is too long.
    pub fn copy_of(&mut self, bytes: &[u8]) -> Option<u16> {
        if bytes.len() > JUMBO_LEN {
            return None;
        }
        let slot = self.take()?;
        self.get_mut(slot)[..bytes.len()].copy_from_slice(bytes);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_taken_written_and_given_back() {
        let mut pool = JumboPool::new(2);
        let a = pool
            .copy_of(&[7; 9000])
            .unwrap_or_else(|| panic!("no buffer"));
        let b = pool.copy_of(&[8; 3]).unwrap_or_else(|| panic!("no buffer"));
        assert_ne!(a, b);
        assert!(pool.copy_of(&[1]).is_none(), "only two buffers");
        assert_eq!(pool.get(a, 9000), &[7; 9000][..]);
        assert_eq!(pool.get(b, 3), &[8; 3]);
        pool.give(a);
        assert!(pool.copy_of(&vec![0; JUMBO_LEN + 1]).is_none(), "too long");
        assert_eq!(pool.copy_of(&[9]), Some(a));
    }
}
