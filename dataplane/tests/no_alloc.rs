//! The worker must not allocate per batch: after start-up, forwarding traffic through the whole
//! pipeline performs no heap allocation at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use brink_dataplane::batch::BATCH_SIZE;
use brink_dataplane::port::memory::{MemBackend, MemFrame};
use brink_dataplane::port::Backend;
use brink_dataplane::trunk::{self, Demux, Trunks, VlanPort};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forwarding_does_not_allocate() {
    for setup in [
        common::Setup::L2,
        common::Setup::Conntrack,
        common::Setup::Firewall,
    ] {
        for traffic in [common::Traffic::Udp, common::Traffic::Tcp] {
            forward_without_allocating(setup, traffic);
        }
    }
    // In the same test: the counter is global, and tests run in parallel.
    trunk_split_without_allocating();
}

/// A VLAN trunk's batch split by tag and the frames tagged again, over and over: the demux's
/// arrays are fixed, and tagging moves bytes in the frame's own buffer.
fn trunk_split_without_allocating() {
    const TRUNK: u16 = 9;
    let mut backend = MemBackend::new(64);
    let mut trunks = Trunks::default();
    for (port, vid) in [(1, 100), (2, 200)] {
        trunks.add(port, VlanPort { trunk: TRUNK, vid });
    }
    let mut demux = Demux::default();
    for (i, f) in demux.frames.iter_mut().enumerate() {
        let mut bytes = vec![0xab; 64];
        bytes[12..16].copy_from_slice(&[0x81, 0, 0, if i % 3 == 0 { 100 } else { 200 }]);
        *f = backend.alloc_copy(&bytes).unwrap();
    }
    let mut group = [MemFrame::default(); BATCH_SIZE];
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    for _ in 0..1000 {
        let aside = demux
            .split(&mut backend, &trunks, TRUNK, BATCH_SIZE, |_| true)
            .len();
        assert_eq!(aside, 0);
        let mut back = 0;
        while let Some((port, n)) = demux.next_group(&mut group) {
            for f in &mut group[..n] {
                assert!(trunk::tag(&mut backend, f, port * 100));
                demux.frames[back] = *f;
                back += 1;
            }
        }
        assert_eq!(back, BATCH_SIZE);
    }
    ARMED.store(false, Ordering::Relaxed);
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "splitting a trunk's batch allocated"
    );
}

fn forward_without_allocating(setup: common::Setup, traffic: common::Traffic) {
    const OTHERS: u32 = 10_000;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    let rig = common::worker(1000, setup, traffic);
    rig.prefill(OTHERS);
    let common::Rig {
        mut worker,
        sink,
        source,
        ct,
        per_poll,
    } = rig;
    let now = Instant::now();
    for _ in 0..100 {
        worker.poll_once(now);
    }
    let moved = || sink.tx_packets.get() + source.tx_packets.get();
    let before = moved();
    ARMED.store(true, Ordering::Relaxed);
    for _ in 0..10_000 {
        worker.poll_once(now);
    }
    ARMED.store(false, Ordering::Relaxed);
    assert_eq!(
        moved() - before,
        10_000 * per_poll as u64,
        "every frame must be forwarded ({setup:?}, {traffic:?})"
    );
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "the worker allocated on the hot path ({setup:?}, {traffic:?})"
    );
    let tracked = OTHERS as u64 + if setup == common::Setup::L2 { 0 } else { 1000 };
    assert_eq!(ct.stats().entries, tracked, "{setup:?}");
}
