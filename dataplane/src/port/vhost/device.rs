//! The vhost-user protocol side of a port, on the port's own control thread.
//!
//! rust-vmm's `vhost` crate decodes the frontend's messages (QEMU, DPDK's virtio-user) and calls
//! [`Device`], which keeps what the frontend configured: features, the guest's memory table and
//! the two rings. Whenever the set of running rings changes, the device publishes a complete
//! [`Layout`] through the port's [`Link`]; each worker that polls some of the port's queue
//! pairs takes it between batches. The protocol thread never touches a ring itself.
//!
//! With `VIRTIO_NET_F_MQ` a port has up to [`MAX_PAIRS`] queue pairs. The frontend keeps the
//! control queue to itself (QEMU and DPDK's virtio-user both do) and turns pairs on and off with
//! `SET_VRING_ENABLE`; only enabled rings are polled.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserShMemConfig, VhostUserSharedMsg,
    VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
    VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::VhostUserMemoryRegionBase;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Most queue pairs a port offers (`VIRTIO_NET_F_MQ`).
pub const MAX_PAIRS: usize = 8;
/// Most queues of a port: pair `k`'s receive queue is queue `2k`, its transmit queue `2k + 1`.
pub const QUEUES: usize = 2 * MAX_PAIRS;

/// The guest's receive queue of pair `pair`: brink writes frames into it.
pub fn rx_queue(pair: usize) -> usize {
    2 * pair
}

/// The guest's transmit queue of pair `pair`: brink reads frames from it.
pub fn tx_queue(pair: usize) -> usize {
    2 * pair + 1
}

/// The pair queue `queue` belongs to.
pub fn pair_of(queue: usize) -> usize {
    queue / 2
}
/// Bit of `VIRTIO_RING_F_EVENT_IDX` in the feature word.
pub const EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;
/// The virtio features brink offers: version 1 rings, event-index notification suppression,
/// vhost-user protocol features, mergeable receive buffers, and checksum and TCP segmentation
/// offload both ways (the guest may leave checksums partial and send superframes; it takes
/// superframes whose checksum brink verified). A port of several queue pairs adds
/// `VIRTIO_NET_F_MQ` ([`features`]).
pub const FEATURES: u64 = 1 << VIRTIO_F_VERSION_1
    | EVENT_IDX
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    | 1 << VIRTIO_NET_F_MRG_RXBUF
    | 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6;

/// The virtio features a port of `pairs` queue pairs offers.
pub fn features(pairs: usize) -> u64 {
    if pairs > 1 {
        FEATURES | 1 << VIRTIO_NET_F_MQ
    } else {
        FEATURES
    }
}
/// How long `GET_VRING_BASE` waits for the worker to stop using a ring.
const STOP_WAIT: Duration = Duration::from_millis(200);
/// Steps of that wait.
const STOP_STEPS: u32 = 200;

/// One ring as the frontend configured it.
#[derive(Debug, Clone, Default)]
pub struct RingSetup {
    /// Entries in the ring.
    pub size: u16,
    /// Guest physical address of the descriptor table.
    pub desc: u64,
    /// Guest physical address of the available ring.
    pub avail: u64,
    /// Guest physical address of the used ring.
    pub used: u64,
    /// The eventfd that interrupts the guest, if it gave one.
    pub call: Option<Arc<File>>,
    /// The frontend started the ring (sent its kick eventfd).
    pub started: bool,
    /// The ring is enabled: from its start, until a `SET_VRING_ENABLE` says otherwise.
    pub enabled: bool,
    /// Where the frontend said the ring starts (`SET_VRING_BASE`).
    pub base: u16,
    /// Which `SET_VRING_BASE` of the port set `base` (they are numbered from 1 on, for the
    /// port's whole life; 0: none). A worker starting the ring at a number it has not seen yet
    /// starts at `base`; otherwise the ring was only turned off and on, and continues where the
    /// worker left it. A worker that catches up late thus never overrides the frontend.
    pub base_set: u64,
}

impl RingSetup {
    /// The worker may poll this ring.
    pub fn running(&self) -> bool {
        self.started && self.enabled && self.size > 0
    }
}

/// Everything the worker needs to poll a port's rings, published as a whole.
#[derive(Debug)]
pub struct Layout {
    /// The guest's memory, mapped into brink.
    pub mem: Arc<GuestMemoryMmap>,
    /// The rings, by queue index.
    pub rings: [RingSetup; QUEUES],
    /// `VIRTIO_RING_F_EVENT_IDX` was negotiated.
    pub event_idx: bool,
    /// The features the frontend set.
    pub features: u64,
}

/// What the protocol thread and the workers polling the port share.
#[derive(Debug, Default)]
pub struct Link {
    layout: Mutex<Option<Arc<Layout>>>,
    /// Bumped on every publication.
    generation: AtomicU64,
    /// By queue pair: the last generation the worker polling it took.
    seen: [AtomicU64; MAX_PAIRS],
    /// Bit `k` set: a worker polls pair `k`.
    polled: AtomicU32,
    /// Each ring's next available index, as its worker last left it (or the frontend set it).
    next_avail: [AtomicU16; QUEUES],
    /// The port is closing: the protocol thread ends.
    pub stop: AtomicBool,
}

impl Link {
    /// The current generation (a relaxed-cost check the worker makes between batches).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Takes the published layout, and tells the protocol thread that the worker polling
    /// `pairs` has it.
    pub fn take(&self, generation: u64, pairs: &[usize]) -> Option<Arc<Layout>> {
        let layout = match self.layout.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for seen in pairs.iter().filter_map(|&k| self.seen.get(k)) {
            seen.store(generation, Ordering::Release);
        }
        layout
    }

    /// A worker starts (`true`) or stops polling `pairs`.
    pub fn poll(&self, pairs: &[usize], polling: bool) {
        let mask = pairs.iter().fold(0u32, |m, &k| m | 1 << k);
        if polling {
            self.polled.fetch_or(mask, Ordering::AcqRel);
        } else {
            self.polled.fetch_and(!mask, Ordering::AcqRel);
        }
    }

    /// Where ring `queue` continues.
    pub fn next_avail(&self, queue: usize) -> u16 {
        self.next_avail
            .get(queue)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// Records where ring `queue` continues.
    pub fn set_next_avail(&self, queue: usize, index: u16) {
        if let Some(a) = self.next_avail.get(queue) {
            a.store(index, Ordering::Release);
        }
    }

    pub(super) fn publish(&self, layout: Option<Arc<Layout>>) -> u64 {
        match self.layout.lock() {
            Ok(mut l) => *l = layout,
            Err(poisoned) => *poisoned.into_inner() = layout,
        }
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Waits, bounded, until every worker polling a pair of the port took `generation`.
    fn wait_seen(&self, generation: u64) {
        for _ in 0..STOP_STEPS {
            let polled = self.polled.load(Ordering::Acquire);
            let behind =
                self.seen.iter().enumerate().any(|(k, seen)| {
                    polled & 1 << k != 0 && seen.load(Ordering::Acquire) < generation
                });
            if !behind {
                return;
            }
            std::thread::sleep(STOP_WAIT / STOP_STEPS);
        }
    }
}

/// A guest memory region: where the frontend has it mapped, and where the guest sees it.
#[derive(Debug, Clone, Copy)]
struct Region {
    user_addr: u64,
    guest_addr: u64,
    size: u64,
}

/// The device state the frontend configures.
#[derive(Debug)]
pub struct Device {
    link: Arc<Link>,
    /// Queue pairs offered.
    pairs: usize,
    /// `SET_VRING_BASE`s so far, over every connection.
    bases: u64,
    features: u64,
    protocol_features: u64,
    mem: Option<Arc<GuestMemoryMmap>>,
    regions: Vec<Region>,
    rings: [RingSetup; QUEUES],
}

fn unsupported<T>() -> VuResult<T> {
    Err(VuError::InvalidOperation("not supported by brink"))
}

impl Device {
    /// A device of `pairs` queue pairs (1 to [`MAX_PAIRS`]) with nothing configured,
    /// publishing through `link`.
    pub fn new(link: Arc<Link>, pairs: usize) -> Self {
        Device {
            link,
            pairs: pairs.clamp(1, MAX_PAIRS),
            bases: 0,
            features: 0,
            protocol_features: 0,
            mem: None,
            regions: Vec::new(),
            rings: Default::default(),
        }
    }

    /// Forgets everything the frontend configured (it disconnected or reset the device).
    pub fn reset(&mut self) {
        self.features = 0;
        self.protocol_features = 0;
        self.mem = None;
        self.regions.clear();
        self.rings = Default::default();
        let generation = self.link.publish(None);
        self.link.wait_seen(generation);
        // Only once no worker polls a ring: a worker leaving one records where it stopped.
        for q in 0..QUEUES {
            self.link.set_next_avail(q, 0);
        }
    }

    /// Queue `index`, if the port has it.
    fn ring_index(&self, index: impl Into<u32>) -> VuResult<usize> {
        let i = index.into() as usize;
        if i < 2 * self.pairs {
            Ok(i)
        } else {
            Err(VuError::InvalidParam)
        }
    }

    /// Publishes the rings as they are now; returns the generation.
    fn publish(&self) -> u64 {
        let layout = self.mem.as_ref().map(|mem| {
            Arc::new(Layout {
                mem: Arc::clone(mem),
                rings: self.rings.clone(),
                event_idx: self.features & EVENT_IDX != 0,
                features: self.features,
            })
        });
        self.link.publish(layout)
    }

    /// The guest physical address of frontend address `addr`.
    fn guest_addr(&self, addr: u64) -> VuResult<u64> {
        self.regions
            .iter()
            .find(|r| addr >= r.user_addr && addr - r.user_addr < r.size)
            .map(|r| addr - r.user_addr + r.guest_addr)
            .ok_or(VuError::InvalidParam)
    }
}

/// Maps one region of the guest's memory from the file the frontend sent.
fn map_region(region: &VhostUserMemoryRegion, file: File) -> VuResult<GuestRegionMmap> {
    let size = usize::try_from(region.memory_size).map_err(|_| VuError::InvalidParam)?;
    let mapping = MmapRegion::from_file(FileOffset::new(file, region.mmap_offset), size)
        .map_err(|e| VuError::ReqHandlerError(std::io::Error::other(e)))?;
    GuestRegionMmap::new(mapping, GuestAddress(region.guest_phys_addr)).ok_or(VuError::InvalidParam)
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(features(self.pairs))
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !self::features(self.pairs) != 0 {
            tracing::warn!(
                features = format_args!("{features:#x}"),
                "vhost-user features refused"
            );
            return Err(VuError::InvalidParam);
        }
        self.features = features;
        tracing::info!(
            features = format_args!("{features:#x}"),
            "vhost-user features set"
        );
        self.publish();
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if ctx.len() != files.len() {
            return Err(VuError::InvalidParam);
        }
        let mapped = ctx
            .iter()
            .zip(files)
            .map(|(r, f)| map_region(r, f))
            .collect::<VuResult<Vec<_>>>()?;
        let mem = GuestMemoryMmap::from_regions(mapped).map_err(|_| VuError::InvalidParam)?;
        self.regions = ctx
            .iter()
            .map(|r| Region {
                user_addr: r.user_addr,
                guest_addr: r.guest_phys_addr,
                size: r.memory_size,
            })
            .collect();
        self.mem = Some(Arc::new(mem));
        self.publish();
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let i = self.ring_index(index)?;
        let size = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        if !size.is_power_of_two() {
            return Err(VuError::InvalidParam);
        }
        self.rings[i].size = size;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let i = self.ring_index(index)?;
        let (desc, used, avail) = (
            self.guest_addr(descriptor)?,
            self.guest_addr(used)?,
            self.guest_addr(available)?,
        );
        let ring = &mut self.rings[i];
        (ring.desc, ring.used, ring.avail) = (desc, used, avail);
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let i = self.ring_index(index)?;
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        self.bases += 1;
        (self.rings[i].base, self.rings[i].base_set) = (base, self.bases);
        // What `GET_VRING_BASE` answers until a worker has polled the ring.
        self.link.set_next_avail(i, base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        let i = self.ring_index(index)?;
        let ring = &mut self.rings[i];
        ring.started = false;
        ring.enabled = false;
        let generation = self.publish();
        self.link.wait_seen(generation);
        Ok(VhostUserVringState::new(
            index,
            u32::from(self.link.next_avail(i)),
        ))
    }

    /// Starts the ring. Its worker polls it once it is enabled too: it never waits on the
    /// guest's kicks.
    ///
    /// With `VHOST_USER_F_PROTOCOL_FEATURES` the spec starts a ring disabled until
    /// `SET_VRING_ENABLE`, but QEMU (7.2) sends the first pair's enables before `SET_FEATURES`,
    /// and the `vhost` crate refuses any `SET_VRING_ENABLE` until that feature is acknowledged,
    /// so they never reach the device. The first pair, which every guest uses, is therefore
    /// enabled when it starts; the other pairs wait for their `SET_VRING_ENABLE` (sent when the
    /// guest's driver asks for more pairs, after `SET_FEATURES`), and any ring is turned off
    /// and on again by one.
    fn set_vring_kick(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        let i = self.ring_index(index)?;
        let protocol = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        let ring = &mut self.rings[i];
        ring.started = true;
        ring.enabled |= i < 2 || !protocol;
        self.publish();
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let i = self.ring_index(index)?;
        self.rings[i].call = fd.map(Arc::new);
        self.publish();
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.ring_index(index).map(|_| ())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::MQ)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.protocol_features = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(self.pairs as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        let i = self.ring_index(index)?;
        self.rings[i].enabled = enable;
        self.publish();
        Ok(())
    }

    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        unsupported()
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        unsupported()
    }

    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        unsupported()
    }

    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        unsupported()
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        unsupported()
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        unsupported()
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        unsupported()
    }

    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        unsupported()
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        unsupported()
    }

    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> VuResult<Option<File>> {
        unsupported()
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        unsupported()
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported()
    }

    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> VuResult<()> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn device() -> (Device, Arc<Link>) {
        device_of(1)
    }

    fn device_of(pairs: usize) -> (Device, Arc<Link>) {
        let link = Arc::new(Link::default());
        (Device::new(Arc::clone(&link), pairs), link)
    }

    const MQ: u64 = 1 << VIRTIO_NET_F_MQ;

    #[test]
    fn the_frontend_cannot_ask_for_what_brink_does_not_offer() {
        let (mut d, _) = device();
        assert_eq!(d.get_features().unwrap(), FEATURES);
        assert!(d.set_features(FEATURES | MQ).is_err(), "VIRTIO_NET_F_MQ");
        assert_eq!(d.get_queue_num().unwrap(), 1);
        assert!(d.set_vring_num(2, 256).is_err(), "one queue pair only");
        assert!(d.set_vring_num(0, 100).is_err(), "not a power of two");
        assert!(d.set_vring_num(0, 1 << 16).is_err(), "too large");
        assert!(d.set_vring_kick(7, None).is_err());
        assert!(d
            .add_mem_region(&Default::default(), tempfile(), None)
            .is_err());
        let ctrl = 1 << virtio_bindings::virtio_net::VIRTIO_NET_F_CTRL_VQ;
        let (mut d, _) = device_of(4);
        assert!(
            d.set_features(FEATURES | MQ | ctrl).is_err(),
            "the frontend keeps the control queue"
        );
        d.set_features(FEATURES | MQ).unwrap();
        assert_eq!(d.get_queue_num().unwrap(), 4);
        assert!(d.set_vring_num(7, 256).is_ok(), "pair 3's transmit queue");
        assert!(d.set_vring_num(8, 256).is_err(), "four pairs only");
        assert!(
            d.get_protocol_features()
                .unwrap()
                .contains(VhostUserProtocolFeatures::MQ),
            "GET_QUEUE_NUM is offered"
        );
    }

    #[test]
    fn only_the_first_pair_starts_enabled_the_others_wait_for_their_enable() {
        let (mut d, _) = device_of(2);
        d.set_features(FEATURES | MQ).unwrap();
        for q in 0..4 {
            d.set_vring_num(q, 256).unwrap();
            d.set_vring_kick(q as u8, None).unwrap();
        }
        let enabled = |d: &Device| d.rings[..4].iter().map(|r| r.enabled).collect::<Vec<_>>();
        assert_eq!(enabled(&d), [true, true, false, false]);
        d.set_vring_enable(2, true).unwrap();
        d.set_vring_enable(3, true).unwrap();
        assert!(d.rings[..4].iter().all(RingSetup::running));
        d.set_vring_enable(3, false).unwrap();
        assert!(!d.rings[3].running(), "turned off again");
        // Stopped and started again: an enable sent before the kick stands.
        d.get_vring_base(2).unwrap();
        d.set_vring_enable(2, true).unwrap();
        d.set_vring_kick(2, None).unwrap();
        assert!(d.rings[2].running());
        // Without the protocol features every ring is enabled when it starts.
        let (mut d, _) = device_of(2);
        d.set_features(FEATURES & !VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() | MQ)
            .unwrap();
        d.set_vring_num(3, 256).unwrap();
        d.set_vring_kick(3, None).unwrap();
        assert!(d.rings[3].running());
    }

    #[test]
    fn ring_addresses_are_translated_into_guest_memory_or_refused() {
        let (mut d, link) = device();
        d.regions = vec![Region {
            user_addr: 0x7f00_0000_0000,
            guest_addr: 0x1000_0000,
            size: 0x10_0000,
        }];
        let flags = VhostUserVringAddrFlags::empty;
        let user = 0x7f00_0000_0000;
        d.set_vring_addr(1, flags(), user + 0x100, user + 0x2000, user + 0x1000, 0)
            .unwrap();
        let ring = &d.rings[tx_queue(0)];
        assert_eq!(
            (ring.desc, ring.avail, ring.used),
            (0x1000_0100, 0x1000_1000, 0x1000_2000)
        );
        let outside = user + 0x10_0000;
        assert!(d
            .set_vring_addr(1, flags(), outside, user, user, 0)
            .is_err());
        // No memory table yet: nothing is published for the worker to poll.
        d.set_vring_base(1, 7).unwrap();
        d.set_features(FEATURES).unwrap();
        d.set_vring_kick(1, None).unwrap();
        assert!(link.take(link.generation(), &[0]).is_none());
        // The worker never took a layout: the ring continues where the frontend set it.
        let base = d.get_vring_base(1).unwrap().num;
        assert_eq!(base, 7);
    }

    fn tempfile() -> File {
        File::open("/dev/null").unwrap()
    }
}
