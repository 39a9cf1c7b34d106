//! AF_XDP ports through `xsk-rs`: one UMEM per worker, shared by all of that worker's sockets.
//!
//! A port has one socket per receive queue of its interface (a multi-queue tap or veth has
//! several), so no queue's frames reach the host stack instead of brink: libxdp's program passes
//! frames of a queue without a socket to the kernel. The worker polls every queue of its ports and
//! transmits on queue 0.
//!
//! Sockets are bound with multi-buffer (`XDP_USE_SG`): a frame longer than one 2 KiB buffer
//! arrives as a chain of buffers, which `rx` copies into one [`JumboPool`] buffer, and a long
//! frame leaves as such a chain again.
//!
//! Frame ownership is the whole safety story here. Every frame of the UMEM is at any moment
//! either held by this backend (in the free list or in a batch) or lent to the kernel through
//! one port's fill or transmit ring. `holder` records which port a lent frame went to, so closing
//! a port reclaims exactly its frames, and a frame is never touched while the kernel has it.
//!
//! The worker's vhost-user ports live here too ([`VhostPorts`]): a frame a guest sends is copied
//! into a frame of this UMEM, and a frame for a guest is copied into its receive buffer and
//! freed, so AF_XDP and vhost-user ports of one network talk through the same pool.
#![allow(unsafe_code)]

use std::num::NonZeroU32;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::jumbo::{Gso, JumboPool};
use super::offload::Checksum;
use super::vhost::rings::{Sink, Taken, SHOW_EVERY_BYTES};
use super::vhost::{VhostMode, VhostPorts, VhostQueues};
use super::{Backend, PortError, PortMode, PortSpec, QueueStats, SocketStats, BUFFER_LEN};
use crate::counters::DropReason;
use crate::snapshot::{PortId, MAX_PORTS};

/// Frames in one worker's UMEM (2 KiB each, 128 MiB).
pub const UMEM_FRAMES: u32 = 65536;
/// Size of each socket's fill and rx rings.
pub const RX_RING_SIZE: u32 = 4096;
/// Size of each socket's tx and completion rings. The kernel sends what a kick hands it and
/// completes it at once (on veth never more than one batch was seen outstanding).
pub const TX_RING_SIZE: u32 = 2048;
/// Most frames a socket's fill ring holds: the whole ring.
///
/// AF_XDP has no backpressure: when a frame arrives and the socket's fill ring is empty, the
/// kernel drops it (`rx_fill_ring_empty_descs`). The frames lent through the fill ring are the
/// only queue in front of the worker, so on a busy port they must cover a burst arriving while
/// the worker is behind or descheduled. 4,096 frames hold more than one TCP flow with Linux's
/// default buffers keeps in flight (`tcp_wmem` at most 4 MiB, about 2,900 full-size segments);
/// with 1,024 and 2,048, iperf3 through brink lost frames here.
pub const FILL_MAX: usize = RX_RING_SIZE as usize;
/// Frames a new socket's fill ring holds when the pool is getting short, before traffic shows
/// it needs more.
///
/// Lent frames cannot be taken back from an idle socket. So a socket starts at [`FILL_MAX`]
/// while the pool still has room for two more full rings (about a dozen sockets per worker),
/// and at this depth after that, doubling up to [`FILL_MAX`] each time the kernel has used up
/// three quarters of it: a worker keeps buffers for dozens of idle ports and the full depth for
/// its busy ones. Sockets whose frames span several buffers always start at [`FILL_MAX`]: those
/// of taps (a guest's TSO superframes take up to 37 buffers each) and of jumbo networks.
pub const FILL_START: usize = 1024;
/// Frames of the UMEM never lent through fill rings: what batches, transmit rings and copies
/// for flooding need.
pub const UMEM_RESERVE: usize = 4096;
// The rx ring holds every frame the fill ring lends, so it can never overflow (`rx_ring_full`).
const _: () = assert!(FILL_MAX <= RX_RING_SIZE as usize);
const _: () = assert!(FILL_START <= FILL_MAX && UMEM_RESERVE < UMEM_FRAMES as usize);

const FRAME_SIZE: u32 = 2048;
/// Jumbo buffers per worker (64 KiB each): more than a batch and the frames staged with it.
const JUMBO_SLOTS: u16 = 128;
/// Most buffers the kernel takes for one transmitted frame (`MAX_SKB_FRAGS` + 1).
const MAX_TX_PARTS: usize = 18;
/// `XDP_PKT_CONTD`: more buffers of this frame follow.
const PKT_CONTD: u32 = 1;
/// A network MTU above which veth ports use SKB mode: native XDP on veth caps the VM end's
/// MTU at about 3,500 bytes unless the program handles multi-buffer frames, which libxdp's does
/// not.
const NATIVE_MAX_MTU: u16 = 1500;
/// Descriptors `descs` holds: a batch of the longest frames sent.
const BATCH_DESCS: usize = crate::batch::BATCH_SIZE * MAX_TX_PARTS;
/// `holder` value of a frame this backend holds.
const HELD: PortId = PortId::MAX;

/// An AF_XDP port on an existing interface, one socket per receive queue.
#[derive(Debug, Clone)]
pub struct XdpSpec {
    /// Interface name (the host end of a veth pair, or a tap device).
    pub iface: String,
    /// The MTU of the port's network.
    pub mtu: u16,
    /// The receive queues this worker polls; empty: all of them. A port's queues may be spread
    /// over several workers, each opening the port with its share.
    pub queues: Vec<u32>,
}

/// A frame an AF_XDP worker holds: one UMEM buffer, or a jumbo buffer for a longer frame, with
/// how its transport checksum stands (partial only in a frame a vhost-user guest sent).
#[derive(Debug, Clone, Copy)]
pub enum XdpFrame {
    /// A frame in one UMEM buffer.
    Umem(FrameDesc, Checksum),
    /// A frame of `len` bytes in jumbo buffer `slot`.
    Jumbo {
        /// The buffer.
        slot: u16,
        /// Frame length.
        len: u32,
        /// Its transport checksum.
        checksum: Checksum,
    },
}

// The checksum state fits in the handle's padding: batches and staging copy no more bytes.
const _: () = assert!(std::mem::size_of::<XdpFrame>() == 40);

impl Default for XdpFrame {
    fn default() -> Self {
        XdpFrame::Umem(FrameDesc::default(), Checksum::AsIs)
    }
}

impl XdpFrame {
    /// How its transport checksum stands.
    #[inline]
    fn checksum(&self) -> Checksum {
        match self {
            XdpFrame::Umem(_, checksum) | XdpFrame::Jumbo { checksum, .. } => *checksum,
        }
    }
}

/// One port: its interface and a socket per receive queue this worker polls.
struct XdpPort {
    iface: String,
    queues: Vec<XdpSocket>,
    /// The queue `rx` reads first next time, so that a busy queue cannot starve the others.
    next_rx: usize,
}

struct XdpSocket {
    /// The interface's receive queue it is bound to.
    queue: u32,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames lent to the kernel through the fill ring and not yet received.
    in_fill: usize,
    /// How many frames the fill ring is kept at: [`FILL_START`], doubled under pressure.
    fill_target: usize,
    /// Frames lent to the kernel through the tx ring and not yet reaped.
    in_tx: usize,
    /// The socket takes multi-buffer frames (`XDP_USE_SG`).
    multi_buffer: bool,
    /// A multi-buffer frame `rx` has read part of.
    partial: Option<Partial>,
    /// Frames `rx` dropped because no jumbo buffer was free.
    jumbo_dropped: u64,
}

/// The buffers of a multi-buffer frame read so far.
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Where they are copied (`None`: no buffer was free; the frame is dropped).
    slot: Option<u16>,
    len: usize,
}

/// One worker's UMEM and AF_XDP sockets.
pub struct XdpBackend {
    umem: Umem,
    /// Every frame as first created, by frame number: a clean descriptor to reclaim one with.
    pristine: Vec<FrameDesc>,
    free: Vec<FrameDesc>,
    holder: Vec<PortId>,
    ports: Vec<Option<XdpPort>>,
    /// Ids of the open ports, so housekeeping skips empty slots.
    open: Vec<PortId>,
    /// Scratch space for reaping completions.
    reaped: Vec<FrameDesc>,
    /// Scratch space `rx` consumes descriptors into: a batch's worth, written by the kernel's
    /// ring only.
    received: Vec<FrameDesc>,
    /// Scratch space for the descriptors of transmitted buffers.
    descs: Vec<FrameDesc>,
    jumbo: JumboPool,
    vhost: VhostPorts,
}

impl std::fmt::Debug for XdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpBackend")
            .field("free", &self.free.len())
            .field("ports", &self.open.len())
            .finish()
    }
}

/// Stops libxdp and libbpf from printing to stderr.
///
/// Their messages are noise here (the multi-program dispatcher fails to load on this kernel
/// and libxdp falls back to a single program by itself); real failures reach the caller as
/// errors with the kernel's errno, which brink reports.
pub fn silence_library_logs() {
    // SAFETY: both calls only swap a global function pointer; `None` means "print nothing".
    // They are made before any socket exists, so no library call is printing concurrently.
    unsafe {
        libxdp_sys::libxdp_set_print(None);
        libbpf_sys::libbpf_set_print(None);
    }
}

impl XdpBackend {
    /// Creates the worker's UMEM.
    pub fn new() -> Result<Self, PortError> {
        let err = |e: &dyn std::fmt::Display| PortError::Pool(e.to_string());
        let config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| err(&e))?)
            .fill_queue_size(QueueSize::new(RX_RING_SIZE).map_err(|e| err(&e))?)
            .comp_queue_size(QueueSize::new(TX_RING_SIZE).map_err(|e| err(&e))?)
            .build()
            .map_err(|e| err(&e))?;
        let count = NonZeroU32::new(UMEM_FRAMES).ok_or_else(|| err(&"empty UMEM"))?;
        let (umem, pristine) = Umem::new(config, count, false).map_err(|e| err(&e))?;
        Ok(XdpBackend {
            umem,
            free: pristine.clone(),
            holder: vec![HELD; pristine.len()],
            pristine,
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            open: Vec::with_capacity(MAX_PORTS),
            reaped: vec![FrameDesc::default(); TX_RING_SIZE as usize],
            received: vec![FrameDesc::default(); crate::batch::BATCH_SIZE],
            descs: Vec::with_capacity(BATCH_DESCS),
            jumbo: JumboPool::new(JUMBO_SLOTS),
            vhost: VhostPorts::default(),
        })
    }

    /// Number of frames this backend holds free.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    fn frame_number(desc: &FrameDesc) -> usize {
        desc.addr() / FRAME_SIZE as usize
    }

    fn set_holder(holder: &mut [PortId], descs: &[FrameDesc], to: PortId) {
        for d in descs {
            if let Some(h) = holder.get_mut(Self::frame_number(d)) {
                *h = to;
            }
        }
    }

    /// Binds a socket to `queue` of `iface`, with multi-buffer frames if the kernel offers them.
    fn bind(&self, iface: &Interface, queue: u32, xdp: XdpFlags) -> Result<XdpSocket, String> {
        let flags = BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP;
        match self.bind_with(iface, queue, xdp, flags | BindFlags::XDP_USE_SG) {
            Ok(s) => Ok(s),
            Err(sg_err) => {
                let mut s = self.bind_with(iface, queue, xdp, flags)?;
                tracing::info!(%sg_err, "AF_XDP multi-buffer refused: frames stay within 1,792 bytes");
                s.multi_buffer = false;
                Ok(s)
            }
        }
    }

    fn bind_with(
        &self,
        iface: &Interface,
        queue: u32,
        xdp: XdpFlags,
        flags: BindFlags,
    ) -> Result<XdpSocket, String> {
        let size = |n| QueueSize::new(n).map_err(|e| e.to_string());
        let config = SocketConfig::builder()
            .rx_queue_size(size(RX_RING_SIZE)?)
            .tx_queue_size(size(TX_RING_SIZE)?)
            .xdp_flags(xdp)
            .bind_flags(flags)
            .build();
        let mut tries = 0;
        let sockets = loop {
            // SAFETY: `open` checked that no port of this UMEM is on this interface, and binds
            // each queue once; other workers bind other queues of it. So the (interface,
            // queue) pair is not shared and libxdp may load its program or add to the one it
            // loaded.
            let made = unsafe { Socket::new(config, &self.umem, iface, queue) };
            // The kernel releases a socket of a failed attempt (native XDP refused) after a
            // grace period; until then the queue is busy.
            match made {
                Err(e) if is_busy(&e) && tries < BUSY_RETRIES => {
                    tries += 1;
                    std::thread::sleep(BUSY_WAIT);
                }
                made => break made,
            }
        };
        match sockets {
            Ok((tx, rx, Some((fq, cq)))) => Ok(XdpSocket {
                queue,
                tx,
                rx,
                fq,
                cq,
                in_fill: 0,
                fill_target: FILL_START,
                in_tx: 0,
                multi_buffer: true,
                partial: None,
                jumbo_dropped: 0,
            }),
            Ok((_, _, None)) => Err(format!("queue {queue} is already bound by this worker")),
            Err(e) => Err(match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            }),
        }
    }

    /// Binds the first of `spec`'s queues in native mode, or in SKB mode if the driver refuses
    /// (or the MTU needs it), then its other queues in the mode that worked.
    fn bind_all(&self, spec: &XdpSpec) -> Result<(Vec<XdpSocket>, PortMode), PortError> {
        let (name, mtu) = (spec.iface.as_str(), spec.mtu);
        let attach = |reason: String| PortError::Attach {
            iface: name.to_string(),
            reason,
        };
        let iface: Interface = name
            .parse()
            .map_err(|_| PortError::BadInterface(name.to_string()))?;
        let queues: Vec<u32> = if spec.queues.is_empty() {
            (0..rx_queue_count(name)).collect()
        } else {
            spec.queues.clone()
        };
        let first_queue = queues.first().copied().unwrap_or(0);
        let native = if let Some(kind) = without_native_xdp(name) {
            Err(format!("not tried: {kind} devices have no native XDP"))
        } else if mtu <= NATIVE_MAX_MTU {
            self.bind(&iface, first_queue, XdpFlags::XDP_FLAGS_DRV_MODE)
        } else {
            Err(format!("not tried: MTU {mtu} is above {NATIVE_MAX_MTU}"))
        };
        let (first, mode, flags) = match native {
            Ok(s) => (s, PortMode::NativeCopy, XdpFlags::XDP_FLAGS_DRV_MODE),
            Err(native_err) => match self.bind(&iface, first_queue, XdpFlags::XDP_FLAGS_SKB_MODE) {
                Ok(s) => {
                    tracing::info!(iface = %name, %native_err, "native XDP refused, using SKB mode");
                    (s, PortMode::SkbCopy, XdpFlags::XDP_FLAGS_SKB_MODE)
                }
                Err(skb_err) => {
                    return Err(attach(format!("native: {native_err}; skb: {skb_err}")))
                }
            },
        };
        let mut sockets = vec![first];
        for &q in queues.iter().skip(1) {
            let socket = self.bind(&iface, q, flags).map_err(|e| {
                attach(format!(
                    "queue {q}: {e} (frames of that queue would reach the host stack)"
                ))
            })?;
            sockets.push(socket);
        }
        Ok((sockets, mode))
    }

    /// Tops up the fill ring of every queue of port `id` from the free list.
    fn refill(&mut self, id: PortId) {
        let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else {
            return;
        };
        for s in &mut port.queues {
            let lendable = self.free.len().saturating_sub(UMEM_RESERVE);
            let want = s.fill_target.saturating_sub(s.in_fill).min(lendable);
            let room = s.fq.nb_free(want as u32) as usize;
            let n = want.min(room);
            if n == 0 {
                continue;
            }
            let start = self.free.len() - n;
            // SAFETY: these frames come from this UMEM's free list: no ring holds them and
            // nothing reads them until the kernel hands them back on this socket's rx ring.
            let given = unsafe { s.fq.produce(&self.free[start..]) };
            Self::set_holder(&mut self.holder, &self.free[start..start + given], id);
            self.free.drain(start..start + given);
            s.in_fill += given;
            if s.fq.needs_wakeup() {
                // A failed wake-up only delays reception until the next one.
                let _ = s.fq.wakeup(s.rx.fd_mut(), 0);
            }
        }
    }
}

/// Receive queues of interface `name` (`/sys/class/net/NAME/queues/rx-N`); 1 when sysfs does
/// not say.
pub fn rx_queue_count(name: &str) -> u32 {
    let dir = format!("/sys/class/net/{name}/queues");
    let count = std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count()
    });
    u32::try_from(count).unwrap_or(u32::MAX).max(1)
}

/// The kind of `iface` if it is a virtual device without native XDP (a VXLAN device brink
/// attaches a network's tunnel to, a bridge), from sysfs's `DEVTYPE`. Such devices go straight
/// to SKB mode: a refused native attempt on a worker's first socket leaves the UMEM's own socket
/// bound to the queue (libxdp keeps that descriptor, which the UMEM shares), so the SKB attempt
/// would find the queue busy.
fn without_native_xdp(iface: &str) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/class/net/{iface}/uevent")).ok()?;
    let kind = uevent.lines().find_map(|l| l.strip_prefix("DEVTYPE="))?;
    ["vxlan", "geneve", "vlan", "bridge"]
        .contains(&kind)
        .then(|| kind.to_string())
}

/// How often, and how long apart, a bind finding its queue busy is tried again.
const BUSY_RETRIES: u32 = 20;
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether a socket could not be made because its queue is still held (`EBUSY`).
fn is_busy(e: &dyn std::error::Error) -> bool {
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ResourceBusy)
}

/// Whether interface `name` is a tun or tap device (they have `tun_flags` in sysfs).
fn is_tun(name: &str) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(name)
        .join("tun_flags")
        .exists()
}

/// Copies `bytes` into a frame taken from `free`.
fn copy_into(umem: &Umem, free: &mut Vec<FrameDesc>, bytes: &[u8]) -> Option<FrameDesc> {
    fill_umem(umem, free, bytes.len(), |dst| {
        dst.copy_from_slice(bytes);
        true
    })
    .ok()
}

/// A frame taken from `free` holding `len` bytes that `fill` writes. Errs, with the frame given
/// back, if `free` is empty, `len` is more than a frame holds, or `fill` returns `false`.
fn fill_umem(
    umem: &Umem,
    free: &mut Vec<FrameDesc>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> bool,
) -> Result<FrameDesc, Taken> {
    if len > BUFFER_LEN {
        return Err(Taken::Refused);
    }
    let mut desc = free.pop().ok_or(Taken::NoBuffer)?;
    desc.set_options(0);
    let filled = {
        // SAFETY: `desc` came from the free list, so neither the kernel nor any batch uses it,
        // and what `fill` copies from lies in another frame or outside the UMEM.
        let mut data = unsafe { umem.data_mut(&mut desc) };
        data.cursor().set_pos(len);
        let bytes = data.contents_mut();
        bytes.len() == len && fill(bytes)
    };
    if !filled {
        free.push(desc);
        return Err(Taken::Refused);
    }
    Ok(desc)
}

/// A new frame holding a copy of `bytes`: a UMEM frame, or a jumbo buffer if it is longer.
fn copy_frame(
    umem: &Umem,
    free: &mut Vec<FrameDesc>,
    jumbo: &mut JumboPool,
    bytes: &[u8],
) -> Option<XdpFrame> {
    fill_frame(umem, free, jumbo, (bytes.len(), Checksum::AsIs), |dst| {
        dst.copy_from_slice(bytes);
        true
    })
    .ok()
}

/// A new frame of `len` bytes that `fill` writes, its checksum standing as `checksum`: a UMEM
/// frame, or a jumbo buffer if it is longer. Errs, with the buffer given back, if there is none
/// or `fill` returns `false`.
fn fill_frame(
    umem: &Umem,
    free: &mut Vec<FrameDesc>,
    jumbo: &mut JumboPool,
    (len, checksum): (usize, Checksum),
    fill: impl FnOnce(&mut [u8]) -> bool,
) -> Result<XdpFrame, Taken> {
    if len <= BUFFER_LEN {
        return fill_umem(umem, free, len, fill).map(|desc| XdpFrame::Umem(desc, checksum));
    }
    let slot = jumbo.take().ok_or(Taken::NoBuffer)?;
    let filled = jumbo.get_mut(slot).get_mut(..len).is_some_and(fill);
    if !filled {
        jumbo.give(slot);
        return Err(Taken::Refused);
    }
    Ok(XdpFrame::Jumbo {
        slot,
        len: len as u32,
        checksum,
    })
}

/// The worker's pool as the place frames from a guest land in: each in a new frame, put in
/// `out`.
struct PoolSink<'a> {
    umem: &'a Umem,
    free: &'a mut Vec<FrameDesc>,
    jumbo: &'a mut JumboPool,
    out: &'a mut [XdpFrame],
    n: usize,
}

impl Sink for PoolSink<'_> {
    fn take(
        &mut self,
        len: usize,
        (gso, checksum): (Option<Gso>, Checksum),
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> Taken {
        let Some(slot) = self.out.get_mut(self.n) else {
            return Taken::NoBuffer;
        };
        match fill_frame(self.umem, self.free, self.jumbo, (len, checksum), fill) {
            Ok(frame) => {
                if let XdpFrame::Jumbo { slot, .. } = frame {
                    self.jumbo.set_gso(slot, gso);
                }
                *slot = frame;
                self.n += 1;
                Taken::Kept
            }
            Err(why) => why,
        }
    }
}

/// The bytes of a frame this worker holds.
fn frame_bytes<'a>(umem: &'a Umem, jumbo: &'a JumboPool, frame: &XdpFrame) -> &'a [u8] {
    match frame {
        // SAFETY: a `Frame` handed to the pipeline is held by this backend (received or
        // copied into), so no ring and no writer touches it while it is read.
        XdpFrame::Umem(desc, _) => unsafe { umem.data(desc) }.contents(),
        XdpFrame::Jumbo { slot, len, .. } => jumbo.get(*slot, *len as usize),
    }
}

/// Appends the bytes of received buffer `desc` to the frame `partial` collects, and hands the
/// buffer back to `free` (it is copied). Returns the frame when `desc` was its last buffer.
fn gather(
    umem: &Umem,
    jumbo: &mut JumboPool,
    partial: &mut Option<Partial>,
    desc: &FrameDesc,
) -> Option<XdpFrame> {
    let p = partial.get_or_insert_with(|| Partial {
        slot: jumbo.take(),
        len: 0,
    });
    // SAFETY: the kernel returned `desc` on an rx ring, so it has finished writing it.
    let bytes = unsafe { umem.data(desc) }.contents();
    if let Some(slot) = p.slot {
        match jumbo.get_mut(slot).get_mut(p.len..p.len + bytes.len()) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => {
                // Longer than any frame can be: drop it.
                jumbo.give(slot);
                p.slot = None;
            }
        }
    }
    p.len += bytes.len();
    if desc.has_more_frames() {
        return None;
    }
    let done = partial.take()?;
    Some(XdpFrame::Jumbo {
        slot: done.slot?,
        len: done.len as u32,
        checksum: Checksum::AsIs,
    })
}

impl Backend for XdpBackend {
    type Frame = XdpFrame;
    type Spec = PortSpec;

    fn open(&mut self, id: PortId, spec: PortSpec) -> Result<PortMode, PortError> {
        if self.ports.get(usize::from(id)).is_none_or(Option::is_some)
            || self.vhost.get(id).is_some()
        {
            return Err(PortError::BadId(id));
        }
        let spec = match spec {
            PortSpec::Xdp(spec) => spec,
            PortSpec::VhostUser(share) => {
                let mode = match share.port.mode() {
                    VhostMode::Client => PortMode::VhostUserClient,
                    VhostMode::Server => PortMode::VhostUserServer,
                };
                tracing::info!(port = id, pairs = ?share.pairs, "vhost-user queue pairs polled");
                self.vhost.insert(id, VhostQueues::new(share));
                return Ok(mode);
            }
        };
        if self.ports.iter().flatten().any(|p| p.iface == spec.iface) {
            return Err(PortError::Attach {
                iface: spec.iface,
                reason: "interface already has a port on this worker".into(),
            });
        }
        let (mut queues, mode) = self.bind_all(&spec)?;
        let multi_buffer = spec.mtu > crate::snapshot::DEFAULT_MTU || is_tun(&spec.iface);
        let roomy = self.free.len().saturating_sub(UMEM_RESERVE) >= 2 * FILL_MAX * queues.len();
        if multi_buffer || roomy {
            for s in &mut queues {
                s.fill_target = FILL_MAX;
            }
        }
        tracing::info!(iface = %spec.iface, queues = queues.len(), %mode, "AF_XDP port open");
        self.ports[usize::from(id)] = Some(XdpPort {
            iface: spec.iface,
            queues,
            next_rx: 0,
        });
        self.open.push(id);
        self.refill(id);
        Ok(mode)
    }

    fn close(&mut self, id: PortId) {
        // Dropping a vhost-user port stops its control thread; the guest's rings hold no frame
        // of this pool.
        if self.vhost.remove(id) {
            return;
        }
        let Some(slot) = self.ports.get_mut(usize::from(id)) else {
            return;
        };
        // Dropping the queues deletes the sockets; libxdp detaches its XDP program with the last
        // socket on the interface. Only then are the port's frames safe to reuse.
        let Some(port) = slot.take() else {
            return;
        };
        for partial in port.queues.iter().filter_map(|s| s.partial) {
            if let Some(jumbo) = partial.slot {
                self.jumbo.give(jumbo);
            }
        }
        drop(port);
        self.open.retain(|&p| p != id);
        for (n, h) in self.holder.iter_mut().enumerate() {
            if *h == id {
                *h = HELD;
                self.free.push(self.pristine[n]);
            }
        }
    }

    #[inline]
    fn rx(&mut self, id: PortId, out: &mut [XdpFrame]) -> usize {
        if let Some(port) = self.vhost.get_mut(id) {
            // Take no more frames from the guest than the pool can copy into: a chain taken is
            // given back to the guest, so one without a frame to copy into would be lost. These
            // frames are the batch's, which the reserve is for.
            let max = out.len().min(self.free.len());
            let mut sink = PoolSink {
                umem: &self.umem,
                free: &mut self.free,
                jumbo: &mut self.jumbo,
                out,
                n: 0,
            };
            port.rings().receive(max, &mut sink);
            return sink.n;
        }
        let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else {
            return 0;
        };
        let queues = port.queues.len();
        let mut n = 0;
        for k in 0..queues {
            let s = &mut port.queues[(port.next_rx + k) % queues];
            while n < out.len() {
                // Each buffer makes at most one frame, so asking for as many as `out` has room
                // for never overflows it.
                let want = (out.len() - n).min(self.received.len());
                // SAFETY: the rx ring of a socket of this UMEM only returns frames of this UMEM,
                // which the kernel has finished writing; they are ours until we lend them again.
                let got = unsafe { s.rx.consume(&mut self.received[..want]) };
                if got == 0 {
                    break;
                }
                s.in_fill -= got.min(s.in_fill);
                for desc in &self.received[..got] {
                    let num = Self::frame_number(desc);
                    if let Some(h) = self.holder.get_mut(num) {
                        *h = HELD;
                    }
                    if s.partial.is_none() && !desc.has_more_frames() {
                        out[n] = XdpFrame::Umem(*desc, Checksum::AsIs);
                        n += 1;
                        continue;
                    }
                    let ended = !desc.has_more_frames();
                    match gather(&self.umem, &mut self.jumbo, &mut s.partial, desc) {
                        Some(frame) => {
                            out[n] = frame;
                            n += 1;
                        }
                        None if ended => s.jumbo_dropped += 1,
                        None => {}
                    }
                    // Copied: the buffer goes back to the pool at once.
                    if let Some(&clean) = self.pristine.get(num) {
                        self.free.push(clean);
                    }
                }
                if s.fill_target < FILL_MAX {
                    // Entries still waiting in the fill ring for the kernel to receive into.
                    let waiting = RX_RING_SIZE as usize - s.fq.nb_free_exact() as usize;
                    if waiting < s.fill_target / 4 {
                        s.fill_target = (s.fill_target * 2).min(FILL_MAX);
                    }
                }
            }
            if n == out.len() {
                break;
            }
        }
        port.next_rx = (port.next_rx + 1) % queues;
        n
    }

    #[inline]
    fn bytes(&self, frame: &XdpFrame) -> &[u8] {
        frame_bytes(&self.umem, &self.jumbo, frame)
    }

    fn patch(&mut self, frame: &mut XdpFrame, at: usize, bytes: &[u8]) {
        let dst = match frame {
            XdpFrame::Umem(desc, _) => {
                // SAFETY: as in `bytes`: `frame` is held by this backend, so no ring and no
                // other reader or writer touches it while it is written.
                let mut data = unsafe { self.umem.data_mut(desc) };
                if let Some(dst) = data.contents_mut().get_mut(at..at + bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                return;
            }
            XdpFrame::Jumbo { slot, len, .. } => &mut self.jumbo.get_mut(*slot)[..*len as usize],
        };
        if let Some(dst) = dst.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    fn reshape(&mut self, frame: &mut XdpFrame, len: usize, edit: impl FnOnce(&mut [u8])) -> bool {
        match frame {
            XdpFrame::Umem(desc, _) => {
                // SAFETY: as in `patch`: `frame` is held by this backend, so no ring and no
                // other reader or writer touches it while it is written.
                let mut data = unsafe { self.umem.data_mut(desc) };
                let old = data.contents().len();
                if len > data.cursor().buf_len() {
                    return false;
                }
                data.cursor().set_pos(len.max(old));
                edit(data.contents_mut());
                data.cursor().set_pos(len);
                true
            }
            XdpFrame::Jumbo { slot, len: old, .. } => {
                let Ok(new_len) = u32::try_from(len) else {
                    return false;
                };
                let buf = self.jumbo.get_mut(*slot);
                let Some(bytes) = buf.get_mut(..len.max(*old as usize)) else {
                    return false;
                };
                edit(bytes);
                *old = new_len;
                true
            }
        }
    }

    #[inline]
    fn tx(&mut self, id: PortId, frames: &[XdpFrame]) -> usize {
        if let Some(port) = self.vhost.get_mut(id) {
            let rings = port.rings();
            rings.prepare_send(frames.len());
            let (mut taken, mut unshown) = (0, 0);
            for frame in frames {
                let gso = match *frame {
                    XdpFrame::Jumbo { slot, .. } => self.jumbo.gso(slot),
                    XdpFrame::Umem(..) => None,
                };
                let bytes = frame_bytes(&self.umem, &self.jumbo, frame);
                if !rings.send(bytes, gso, frame.checksum()) {
                    break;
                }
                taken += 1;
                unshown += bytes.len();
                if unshown >= SHOW_EVERY_BYTES {
                    rings.show_sent();
                    unshown = 0;
                }
            }
            rings.flush_sent();
            for &frame in &frames[..taken] {
                self.free(frame);
            }
            return taken;
        }
        let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else {
            return 0;
        };
        let Some(s) = port.queues.first_mut() else {
            return 0;
        };
        // Whole frames only: a frame's buffers go into the ring together or not at all.
        let mut room = s.tx.nb_free(TX_RING_SIZE) as usize;
        self.descs.clear();
        let mut taken = 0;
        for frame in frames {
            match *frame {
                XdpFrame::Umem(desc, _) if room > 0 => {
                    self.descs.push(desc);
                    room -= 1;
                }
                XdpFrame::Jumbo { slot, len, .. } => {
                    let bytes = self.jumbo.get(slot, len as usize);
                    let parts = bytes.len().div_ceil(BUFFER_LEN);
                    if !s.multi_buffer || parts > room.min(MAX_TX_PARTS) || parts > self.free.len()
                    {
                        break;
                    }
                    let start = self.descs.len();
                    for chunk in bytes.chunks(BUFFER_LEN) {
                        match copy_into(&self.umem, &mut self.free, chunk) {
                            Some(mut desc) => {
                                desc.set_options(PKT_CONTD);
                                self.descs.push(desc);
                            }
                            None => break,
                        }
                    }
                    if self.descs.len() - start < parts {
                        // A buffer could not be filled: never send part of a frame.
                        self.free.extend(self.descs.drain(start..));
                        break;
                    }
                    if let Some(last) = self.descs.last_mut() {
                        last.set_options(0);
                    }
                    self.jumbo.give(slot);
                    room -= parts;
                }
                XdpFrame::Umem(..) => break,
            }
            taken += 1;
        }
        // SAFETY: the caller holds these frames of this UMEM (or gave up the jumbo buffers they
        // were copied from) and gives them up; they are not touched again until reaped from
        // this socket's completion ring.
        let sent = unsafe { s.tx.produce(&self.descs) };
        debug_assert_eq!(sent, self.descs.len(), "the ring had room");
        Self::set_holder(&mut self.holder, &self.descs[..sent], id);
        s.in_tx += sent;
        if s.tx.needs_wakeup() {
            // Errors are transient (ring full, link down); `service` kicks again.
            let _ = s.tx.wakeup();
        }
        taken
    }

    #[inline]
    fn free(&mut self, frame: XdpFrame) {
        match frame {
            XdpFrame::Umem(desc, _) => self.free.push(desc),
            XdpFrame::Jumbo { slot, .. } => self.jumbo.give(slot),
        }
    }

    fn alloc_copy(&mut self, bytes: &[u8]) -> Option<XdpFrame> {
        copy_frame(&self.umem, &mut self.free, &mut self.jumbo, bytes)
    }

    fn clone_frame(&mut self, frame: &XdpFrame) -> Option<XdpFrame> {
        match *frame {
            XdpFrame::Umem(desc, checksum) => {
                // SAFETY: as in `bytes`: `frame` is held by this backend.
                let src = unsafe { self.umem.data(&desc) }.contents();
                copy_into(&self.umem, &mut self.free, src)
                    .map(|copy| XdpFrame::Umem(copy, checksum))
            }
            XdpFrame::Jumbo {
                slot,
                len,
                checksum,
            } => {
                let copy = self.jumbo.take()?;
                self.jumbo.copy_within(slot, copy, len as usize);
                Some(XdpFrame::Jumbo {
                    slot: copy,
                    len,
                    checksum,
                })
            }
        }
    }

    fn takes_superframe(&self, id: PortId, frame: &XdpFrame) -> bool {
        let (Some(port), XdpFrame::Jumbo { slot, .. }) = (self.vhost.get(id), frame) else {
            return false;
        };
        // Only a frame this worker writes into the guest itself: a superframe cannot cross to
        // another worker whole.
        port.rings_ref().sends()
            && self
                .jumbo
                .gso(*slot)
                .is_some_and(|gso| port.takes_superframe(&gso))
    }

    fn sends(&self, id: PortId) -> bool {
        self.vhost
            .get(id)
            .is_none_or(|port| port.rings_ref().sends())
    }

    #[inline]
    fn checksum(&self, frame: &XdpFrame) -> Checksum {
        frame.checksum()
    }

    fn set_checksum(&mut self, frame: &mut XdpFrame, to: Checksum) {
        match frame {
            XdpFrame::Umem(_, checksum) | XdpFrame::Jumbo { checksum, .. } => *checksum = to,
        }
    }

    fn takes_partial(&self, id: PortId) -> bool {
        self.vhost.get(id).is_some_and(VhostQueues::takes_partial)
    }

    fn full_reason(&self, id: PortId) -> DropReason {
        match self.vhost.get(id) {
            Some(_) => DropReason::GuestNoBuffer,
            None => DropReason::TxRingFull,
        }
    }

    fn service(&mut self) -> usize {
        self.vhost.sync();
        let mut reaped_total = 0;
        for i in 0..self.open.len() {
            let id = self.open[i];
            let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else {
                continue;
            };
            for s in port.queues.iter_mut().filter(|s| s.in_tx > 0) {
                // SAFETY: the completion ring returns frames of this UMEM that the kernel has
                // finished sending; `reaped` is scratch space we own.
                let n = unsafe { s.cq.consume(&mut self.reaped) };
                s.in_tx -= n.min(s.in_tx);
                for d in &self.reaped[..n] {
                    let num = Self::frame_number(d);
                    if let Some(h) = self.holder.get_mut(num) {
                        *h = HELD;
                        self.free.push(self.pristine[num]);
                    }
                }
                if s.in_tx > 0 && s.tx.needs_wakeup() {
                    let _ = s.tx.wakeup();
                }
                reaped_total += n;
            }
            self.refill(id);
        }
        reaped_total
    }

    fn queues(&self, id: PortId) -> Vec<u32> {
        match self.ports.get(usize::from(id)) {
            Some(Some(port)) => port.queues.iter().map(|s| s.queue).collect(),
            // A vhost-user port's queue pairs.
            _ => self.vhost.get(id).map_or_else(Vec::new, |p| {
                p.rings_ref().pairs().iter().map(|&k| k as u32).collect()
            }),
        }
    }

    fn queue_stats(&self, id: PortId) -> Vec<QueueStats> {
        self.vhost
            .get(id)
            .map_or_else(Vec::new, |port| port.rings_ref().pair_stats().collect())
    }

    fn socket_stats(&self, id: PortId) -> Option<SocketStats> {
        if let Some(port) = self.vhost.get(id) {
            let rings = port.rings_ref().stats();
            return Some(SocketStats {
                rx_dropped: rings.dropped,
                rx_invalid_descs: rings.tx_refused,
                tx_invalid_descs: rings.rx_refused,
                ..SocketStats::default()
            });
        }
        let Some(Some(port)) = self.ports.get(usize::from(id)) else {
            return None;
        };
        let mut sum = SocketStats::default();
        for s in &port.queues {
            match s.rx.fd().xdp_statistics() {
                Ok(k) => sum.add(&SocketStats {
                    rx_dropped: k.rx_dropped(),
                    rx_invalid_descs: k.rx_invalid_descs(),
                    tx_invalid_descs: k.tx_invalid_descs(),
                    rx_ring_full: k.rx_ring_full(),
                    rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs(),
                    tx_ring_empty_descs: k.tx_ring_empty_descs(),
                    jumbo_dropped: s.jumbo_dropped,
                }),
                Err(e) => {
                    tracing::warn!(iface = %port.iface, error = %e, "cannot read XDP_STATISTICS");
                    return None;
                }
            }
        }
        Some(sum)
    }
}
