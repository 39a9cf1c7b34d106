//! VLAN trunks: one port on an uplink interface carrying several networks, each tagged with its
//! own 802.1Q VLAN id.
//!
//! Every VLAN network has a logical uplink port of its own, in its network like any port, and
//! the trunk is the one real port (socket) on the interface. A worker that polls a trunk splits
//! each received batch by tag with a [`Demux`]: frames lose their tag and go through the
//! pipeline as batches from their network's logical port; an untagged frame or one with a tag
//! no network has is dropped as `unknown_vlan` on the trunk. A frame sent to a logical port gets
//! its tag ([`tag`]) and leaves on the trunk. No network ever sees another's frames: the tag
//! decides the port, and the port decides the network, its conntrack zone and its FDB.

use crate::batch::BATCH_SIZE;
use crate::port::Backend;
use crate::snapshot::PortId;
use crate::wire::vlan::{self, TAG_LEN};

/// Where a logical VLAN port lives: on which trunk, with which VLAN id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanPort {
    /// The trunk port.
    pub trunk: PortId,
    /// The VLAN id (1-4094).
    pub vid: u16,
}

/// The logical VLAN ports of one worker's trunks. A worker has a few, so lookups scan.
#[derive(Debug, Default)]
pub struct Trunks {
    ports: Vec<(PortId, VlanPort)>,
}

impl Trunks {
    /// Adds (or moves) logical port `id`.
    pub fn add(&mut self, id: PortId, at: VlanPort) {
        self.remove(id);
        self.ports.push((id, at));
    }

    /// Forgets logical port `id`, if it is one.
    pub fn remove(&mut self, id: PortId) {
        self.ports.retain(|&(p, _)| p != id);
    }

    /// Whether port `trunk` is the trunk of some logical port.
    #[inline]
    pub fn carries(&self, trunk: PortId) -> bool {
        self.ports.iter().any(|(_, v)| v.trunk == trunk)
    }

    /// The logical port of VLAN `vid` on `trunk`.
    #[inline]
    pub fn port(&self, trunk: PortId, vid: u16) -> Option<PortId> {
        let at = VlanPort { trunk, vid };
        self.ports.iter().find(|(_, v)| *v == at).map(|&(p, _)| p)
    }
}

/// Pushes an 802.1Q tag with VLAN id `vid` into `frame`. Returns `false` when its buffer has
/// no room for 4 more bytes (or it is shorter than its MAC addresses); the frame is then not
/// to be sent.
#[inline]
pub fn tag<B: Backend>(backend: &mut B, frame: &mut B::Frame, vid: u16) -> bool {
    let len = backend.bytes(frame).len();
    let mut pushed = false;
    backend.reshape(frame, len + TAG_LEN, |b| pushed = vlan::push(b, vid)) && pushed
}

/// Removes the tag of a tagged `frame`; an untagged one is left as it is and `false` returned.
#[inline]
pub fn untag<B: Backend>(backend: &mut B, frame: &mut B::Frame) -> bool {
    let len = backend.bytes(frame).len();
    if vlan::vid(backend.bytes(frame)).is_none() {
        return false;
    }
    backend.reshape(frame, len - TAG_LEN, |b| {
        vlan::pop(b);
    })
}

/// One received trunk batch, split by VLAN into groups of frames for one logical port each.
/// Fixed-size arrays: splitting allocates nothing.
#[derive(Debug)]
pub struct Demux<F> {
    /// Where the trunk's batch is received into.
    pub frames: [F; BATCH_SIZE],
    /// The logical port of each kept frame.
    to: [PortId; BATCH_SIZE],
    /// Kept frames not yet handed out, at the front of `frames`.
    len: usize,
    /// Frames put aside to be dropped.
    aside: [F; BATCH_SIZE],
}

impl<F: Copy + Default> Default for Demux<F> {
    fn default() -> Self {
        Demux {
            frames: [F::default(); BATCH_SIZE],
            to: [0; BATCH_SIZE],
            len: 0,
            aside: [F::default(); BATCH_SIZE],
        }
    }
}

impl<F: Copy + Default> Demux<F> {
    /// Sorts the first `n` frames of `frames`, received on `trunk`: a frame tagged with a VLAN
    /// that has a logical port in `trunks` for which `up` holds loses its tag and is kept for
    /// that port; every other one is put aside, and returned, to be dropped as `unknown_vlan`.
    pub fn split<B: Backend<Frame = F>>(
        &mut self,
        backend: &mut B,
        trunks: &Trunks,
        trunk: PortId,
        n: usize,
        up: impl Fn(PortId) -> bool,
    ) -> &[F] {
        let (mut kept, mut aside) = (0, 0);
        for i in 0..n.min(BATCH_SIZE) {
            let mut f = self.frames[i];
            let port = vlan::vid(backend.bytes(&f))
                .and_then(|vid| trunks.port(trunk, vid))
                .filter(|&p| up(p));
            match port {
                Some(p) if untag(backend, &mut f) => {
                    self.frames[kept] = f;
                    self.to[kept] = p;
                    kept += 1;
                }
                _ => {
                    self.aside[aside] = f;
                    aside += 1;
                }
            }
        }
        self.len = kept;
        &self.aside[..aside]
    }

    /// Moves the kept frames of the next logical port into `out`, in the order they arrived;
    /// returns the port and how many. `None` once every group was handed out.
    pub fn next_group(&mut self, out: &mut [F; BATCH_SIZE]) -> Option<(PortId, usize)> {
        let port = *self.to[..self.len].first()?;
        let (mut taken, mut rest) = (0, 0);
        for i in 0..self.len {
            if self.to[i] == port {
                out[taken] = self.frames[i];
                taken += 1;
            } else {
                self.frames[rest] = self.frames[i];
                self.to[rest] = self.to[i];
                rest += 1;
            }
        }
        self.len = rest;
        Some((port, taken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::memory::{MemBackend, MemFrame};

    const TRUNK: PortId = 9;

    /// A frame from MAC ..:0`n` with EtherType 0x0800 and one payload byte `n`, tagged `vid`.
    fn frame(vid: Option<u16>, n: u8) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, n]);
        if let Some(vid) = vid {
            f.extend([0x81, 0x00]);
            f.extend(vid.to_be_bytes());
        }
        f.extend([0x08, 0x00, n]);
        f
    }

    fn trunks() -> Trunks {
        let mut t = Trunks::default();
        t.add(
            1,
            VlanPort {
                trunk: TRUNK,
                vid: 100,
            },
        );
        t.add(
            2,
            VlanPort {
                trunk: TRUNK,
                vid: 200,
            },
        );
        t.add(3, VlanPort { trunk: 8, vid: 300 });
        t
    }

    #[test]
    fn tag_and_untag_a_pool_frame() {
        let mut b = MemBackend::new(4);
        let mut f = b.alloc_copy(&frame(None, 7)).unwrap();
        assert!(tag(&mut b, &mut f, 100));
        assert_eq!(b.bytes(&f), frame(Some(100), 7));
        assert!(untag(&mut b, &mut f));
        assert_eq!(b.bytes(&f), frame(None, 7));
        assert!(!untag(&mut b, &mut f), "no tag left");
        let mut full = b.alloc_copy(&[0; crate::port::BUFFER_LEN]).unwrap();
        assert!(!tag(&mut b, &mut full, 100), "no room in the buffer");
        assert_eq!(b.bytes(&full).len(), crate::port::BUFFER_LEN);
    }

    #[test]
    fn splits_a_batch_by_vlan_and_puts_unknown_tags_aside() {
        let mut b = MemBackend::new(16);
        let mut d = Demux::<MemFrame>::default();
        let sent = [
            frame(Some(100), 1),
            frame(Some(200), 2),
            frame(Some(300), 3), // VLAN 300 is on another trunk
            frame(Some(100), 4),
            frame(None, 5),
            frame(Some(200), 6),
            frame(Some(999), 7),
        ];
        for (i, f) in sent.iter().enumerate() {
            d.frames[i] = b.alloc_copy(f).unwrap();
        }
        let aside: Vec<u8> = d
            .split(&mut b, &trunks(), TRUNK, sent.len(), |_| true)
            .to_vec()
            .iter()
            .map(|f| *b.bytes(f).last().unwrap())
            .collect();
        assert_eq!(aside, [3, 5, 7]);
        let mut out = [MemFrame::default(); BATCH_SIZE];
        let mut groups = vec![];
        while let Some((port, n)) = d.next_group(&mut out) {
            let got: Vec<Vec<u8>> = out[..n].iter().map(|f| b.bytes(f).to_vec()).collect();
            groups.push((port, got));
        }
        let expect = vec![
            (1, vec![frame(None, 1), frame(None, 4)]),
            (2, vec![frame(None, 2), frame(None, 6)]),
        ];
        assert_eq!(groups, expect, "untagged, per port, in arrival order");
    }

    #[test]
    fn a_port_that_is_down_takes_nothing() {
        let mut b = MemBackend::new(4);
        let mut d = Demux::<MemFrame>::default();
        d.frames[0] = b.alloc_copy(&frame(Some(100), 1)).unwrap();
        d.frames[1] = b.alloc_copy(&frame(Some(200), 2)).unwrap();
        let aside = d.split(&mut b, &trunks(), TRUNK, 2, |p| p != 1).len();
        assert_eq!(aside, 1);
        let mut out = [MemFrame::default(); BATCH_SIZE];
        assert_eq!(d.next_group(&mut out), Some((2, 1)));
        assert_eq!(d.next_group(&mut out), None);
    }

    #[test]
    fn trunks_find_ports_by_trunk_and_vlan() {
        let mut t = trunks();
        assert_eq!(t.port(TRUNK, 200), Some(2));
        assert_eq!(t.port(8, 200), None);
        assert!(t.carries(8));
        t.remove(3);
        assert!(!t.carries(8));
        assert!(t.carries(TRUNK));
    }
}
