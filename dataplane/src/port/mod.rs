//! Ports: where frames enter and leave the switch.
//!
//! A [`Backend`] owns one worker's frame buffers and the ports that worker polls. Frames are
//! handles into the backend's buffer pool, so moving a frame from one port of a worker to
//! another moves the handle, not the bytes. Two backends exist: [`afxdp`] (the real one, whose
//! worker also polls the [`vhost`]-user ports it owns) and [`memory`] (deterministic tests and
//! benchmarks without the kernel).

pub mod afxdp;
pub mod jumbo;
pub mod memory;
pub mod offload;
pub mod vhost;

use std::fmt;

use self::offload::Checksum;
use crate::counters::DropReason;
use crate::snapshot::PortId;

/// Largest frame one pool buffer holds (AF_XDP copy mode, 2 KiB chunks less the kernel
/// headroom). Longer frames, up to [`jumbo::JUMBO_LEN`], go in jumbo buffers.
pub const BUFFER_LEN: usize = 1792;

/// How a port ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// XDP in the driver (native), frames copied to the UMEM.
    NativeCopy,
    /// Generic (SKB) XDP, frames copied to the UMEM.
    SkbCopy,
    /// An in-memory test port.
    Memory,
    /// A vhost-user port; brink connects to the frontend's socket.
    VhostUserClient,
    /// A vhost-user port on a socket brink listens on.
    VhostUserServer,
}

/// What a worker of the real backend opens: an AF_XDP port or a vhost-user port.
#[derive(Debug, Clone)]
pub enum PortSpec {
    /// AF_XDP on an interface.
    Xdp(afxdp::XdpSpec),
    /// Queue pairs of a vhost-user port.
    VhostUser(vhost::VhostShare),
}

impl fmt::Display for PortMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortMode::NativeCopy => "native-copy",
            PortMode::SkbCopy => "skb-copy",
            PortMode::Memory => "memory",
            PortMode::VhostUserClient => "vhost-user-client",
            PortMode::VhostUserServer => "vhost-user-server",
        })
    }
}

/// The kernel's counters of one port's AF_XDP socket (`getsockopt(XDP_STATISTICS)`), counted
/// since the socket was opened. Names are the kernel's (`struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the kernel could not deliver to the socket for another reason than a full rx
    /// ring: no fill-ring buffer to copy into (also counted in `rx_fill_ring_empty_descs`),
    /// or a frame larger than a buffer.
    pub rx_dropped: u64,
    /// Receive descriptors the kernel counted invalid.
    pub rx_invalid_descs: u64,
    /// Transmit descriptors the kernel rejected as invalid (address or length).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full (the worker did not consume in time).
    pub rx_ring_full: u64,
    /// Times the kernel wanted a buffer for a received frame and found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel looked for a frame to send and found the transmit ring empty (once per
    /// transmit kick that drained the ring: not a loss).
    pub tx_ring_empty_descs: u64,
    /// Not the kernel's: multi-buffer frames brink received but dropped because all of the
    /// worker's jumbo buffers were in use.
    pub jumbo_dropped: u64,
}

impl SocketStats {
    /// Adds `other`'s counts to these (the sockets of one port's queues).
    pub fn add(&mut self, other: &SocketStats) {
        self.rx_dropped += other.rx_dropped;
        self.rx_invalid_descs += other.rx_invalid_descs;
        self.tx_invalid_descs += other.tx_invalid_descs;
        self.rx_ring_full += other.rx_ring_full;
        self.rx_fill_ring_empty_descs += other.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += other.tx_ring_empty_descs;
        self.jumbo_dropped += other.jumbo_dropped;
    }
}

/// What one queue of a port moved, on a backend that counts per queue (a vhost-user port's
/// queue pairs, counted by the worker that polls each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue (queue pair).
    pub queue: u32,
    /// Frames received from it.
    pub rx_packets: u64,
    /// Frames sent on it.
    pub tx_packets: u64,
}

/// Why a port could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The port id is out of range or already open on this worker.
    #[error("port id {0} is out of range or already in use")]
    BadId(PortId),
    /// The interface name cannot be used.
    #[error("bad interface name {0:?}")]
    BadInterface(String),
    /// The kernel refused the AF_XDP socket in both native and SKB mode.
    #[error("cannot attach AF_XDP to {iface}: {reason}")]
    Attach {
        /// Interface name.
        iface: String,
        /// What the kernel or libxdp said.
        reason: String,
    },
    /// The worker's frame pool could not be created.
    #[error("cannot create frame pool: {0}")]
    Pool(String),
    /// The worker did not answer (stopped or stuck).
    #[error("worker {0} did not answer")]
    WorkerGone(usize),
    /// More workers asked for than per-worker counters have slots for.
    #[error("{0} workers asked for; at most {max}", max = crate::counters::MAX_WORKERS)]
    TooManyWorkers(usize),
}

/// One worker's frame pool and ports. Used only by the worker thread that created it.
pub trait Backend {
    /// A handle to one frame buffer in this backend's pool.
    type Frame: Copy + Default;
    /// What it takes to open a port (an interface name, an in-memory link, ...).
    type Spec: Send;

    /// Opens port `id` as described by `spec`.
    fn open(&mut self, id: PortId, spec: Self::Spec) -> Result<PortMode, PortError>;
    /// Closes port `id`, reclaiming every frame its rings held. Unknown ids are ignored.
    fn close(&mut self, id: PortId);
    /// Receives up to `out.len()` frames from port `id`; returns how many were written.
    fn rx(&mut self, id: PortId, out: &mut [Self::Frame]) -> usize;
    /// The bytes of a frame this worker holds.
    fn bytes(&self, frame: &Self::Frame) -> &[u8];
    /// Overwrites the bytes at `at..at + bytes.len()` of a frame this worker holds (a checksum
    /// the switch completes); a range outside the frame changes nothing.
    fn patch(&mut self, frame: &mut Self::Frame, at: usize, bytes: &[u8]);
    /// Gives a frame this worker holds the length `len`, running `edit` over its bytes while
    /// they are the longer of the two lengths: a frame grows before `edit` sees it (the new
    /// bytes unspecified) and shrinks after. Returns `false`, with nothing done, when `len` is
    /// more than the frame's buffer holds.
    fn reshape(
        &mut self,
        frame: &mut Self::Frame,
        len: usize,
        edit: impl FnOnce(&mut [u8]),
    ) -> bool;
    /// Queues frames for transmission on port `id`; returns how many were taken. The caller
    /// still owns the rest.
    fn tx(&mut self, id: PortId, frames: &[Self::Frame]) -> usize;
    /// Returns a frame to the free pool.
    fn free(&mut self, frame: Self::Frame);
    /// A new frame holding a copy of `bytes`, or `None` if the pool is empty or `bytes` is
    /// longer than [`jumbo::JUMBO_LEN`].
    fn alloc_copy(&mut self, bytes: &[u8]) -> Option<Self::Frame>;
    /// A new frame holding a copy of `frame`, for flooding.
    fn clone_frame(&mut self, frame: &Self::Frame) -> Option<Self::Frame>;
    /// Whether port `id` takes `frame`, a TCP superframe longer than the network's MTU, whole
    /// (a vhost-user guest with segmentation offload), so it is not cut into segments first.
    fn takes_superframe(&self, _id: PortId, _frame: &Self::Frame) -> bool {
        false
    }
    /// How the transport checksum of a frame this worker holds stands (default: as on the
    /// wire, for backends whose ports carry no checksum state). A partial one lies inside the
    /// frame: the backend refused any other when it took the frame.
    fn checksum(&self, _frame: &Self::Frame) -> Checksum {
        Checksum::AsIs
    }
    /// Records how `frame`'s transport checksum stands now (after brink completed it).
    fn set_checksum(&mut self, _frame: &mut Self::Frame, _checksum: Checksum) {}
    /// Whether port `id` takes a frame whose checksum is partial as it is (a vhost-user guest
    /// with `VIRTIO_NET_F_GUEST_CSUM`), so it is not completed first.
    fn takes_partial(&self, _id: PortId) -> bool {
        false
    }
    /// Whether this worker transmits on port `id` itself (when it has the port open at all):
    /// not a vhost-user port none of whose receive queues it polls is running, whose frames go
    /// to the port's own worker instead.
    fn sends(&self, _id: PortId) -> bool {
        true
    }
    /// Why port `id` did not take the frames `tx` left: its transmit ring was full, unless the
    /// backend knows better (a guest that posted no receive buffer).
    fn full_reason(&self, _id: PortId) -> DropReason {
        DropReason::TxRingFull
    }
    /// Ring housekeeping: reap transmit completions, refill receive buffers, kick the kernel.
    /// Returns the number of frames reaped.
    fn service(&mut self) -> usize;
    /// The receive queues of port `id` this backend polls (an in-memory port has one, 0).
    fn queues(&self, _id: PortId) -> Vec<u32> {
        vec![0]
    }
    /// What each queue of port `id` this backend polls moved, if it counts per queue (none
    /// does by default).
    fn queue_stats(&self, _id: PortId) -> Vec<QueueStats> {
        Vec::new()
    }
    /// The kernel's counters of port `id`'s socket, or `None` for a port without one (unknown
    /// ids, in-memory ports: the default). It costs a system call: ask between batches, on
    /// request, never per frame.
    fn socket_stats(&self, _id: PortId) -> Option<SocketStats> {
        None
    }
}
