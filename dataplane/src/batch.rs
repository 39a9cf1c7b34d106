//! A batch: up to [`BATCH_SIZE`] frames received together on one port, with what each stage of
//! the pipeline has learnt and decided about each frame, in arrays indexed like the frames.

use brink_conntrack::{CtState, Packet};

use crate::counters::DropReason;
use crate::snapshot::{NetworkId, PortId, NO_PORT};
use crate::wire::ip::Fixup;
use crate::wire::{MacAddr, L3};

/// Frames per batch.
pub const BATCH_SIZE: usize = 32;

/// What the pipeline decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send to this port.
    Forward(PortId),
    /// Send to every other port of the frame's network.
    Flood,
    /// Drop, and count it under this reason.
    Drop(DropReason),
}

/// The fields later stages need, parsed once per frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// EtherType as on the wire.
    pub ethertype: u16,
    /// Network of the port the frame arrived on.
    pub network: NetworkId,
}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 16);
// A checksum to complete costs its frame 6 bytes of the batch, not 24.
const _: () = assert!(std::mem::size_of::<Option<Fixup>>() == 6);

/// Up to [`BATCH_SIZE`] frames received together on one port.
#[derive(Debug)]
pub struct Batch<F> {
    /// Number of frames in use.
    pub len: usize,
    /// Port the frames arrived on.
    pub in_port: PortId,
    /// The port's network; also its conntrack zone.
    pub network: NetworkId,
    /// The port tracks connections.
    pub track: bool,
    /// Frames need their ARP and IP headers read: the port tracks connections, or its network
    /// has ports with port security. Other frames pass as they are (a plain L2 port).
    pub inspect: bool,
    /// Bytes received in this batch (filled by `parse`).
    pub rx_bytes: u64,
    /// The frames.
    pub frames: [F; BATCH_SIZE],
    /// Parsed keys.
    pub keys: [FlowKey; BATCH_SIZE],
    /// What each frame carries above Ethernet.
    pub l3: [L3; BATCH_SIZE],
    /// The checksum each frame's sender left partial (offloaded), to complete before sending;
    /// `at` counts from the start of the frame.
    pub fix: [Option<Fixup>; BATCH_SIZE],
    /// What conntrack is told about each IP frame (`None`: not tracked).
    pub ct: [Option<Packet>; BATCH_SIZE],
    /// What conntrack said (default: not tracked).
    pub ct_state: [CtState; BATCH_SIZE],
    /// The port each frame's connection lets it reach without that port's rules judging it
    /// (the connection's end it is bound for), or [`NO_PORT`].
    pub peer: [PortId; BATCH_SIZE],
    /// Decisions.
    pub verdicts: [Verdict; BATCH_SIZE],
}

impl<F> Batch<F> {
    /// The indexes of the frames in use, `0..len`; capped at [`BATCH_SIZE`], so that indexing
    /// the batch's arrays with them needs no bounds check.
    #[inline]
    pub fn indexes(&self) -> std::ops::Range<usize> {
        0..self.len.min(BATCH_SIZE)
    }
}

impl<F: Copy + Default> Default for Batch<F> {
    fn default() -> Self {
        Batch {
            len: 0,
            in_port: 0,
            network: NetworkId::default(),
            track: false,
            inspect: false,
            rx_bytes: 0,
            frames: [F::default(); BATCH_SIZE],
            keys: [FlowKey::default(); BATCH_SIZE],
            l3: [L3::default(); BATCH_SIZE],
            fix: [None; BATCH_SIZE],
            ct: [None; BATCH_SIZE],
            ct_state: [CtState::default(); BATCH_SIZE],
            peer: [NO_PORT; BATCH_SIZE],
            verdicts: [Verdict::Flood; BATCH_SIZE],
        }
    }
}
