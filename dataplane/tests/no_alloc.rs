//! The worker must not allocate per batch: after start-up, forwarding traffic through the whole
//! pipeline performs no heap allocation at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

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
        forward_without_allocating(setup);
    }
}

fn forward_without_allocating(setup: common::Setup) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    let common::Rig {
        mut worker,
        sink,
        ct,
    } = common::worker(1000, setup);
    let now = Instant::now();
    for _ in 0..100 {
        worker.poll_once(now);
    }
    let before = sink.tx_packets.get();
    ARMED.store(true, Ordering::Relaxed);
    for _ in 0..10_000 {
        worker.poll_once(now);
    }
    ARMED.store(false, Ordering::Relaxed);
    assert_eq!(
        sink.tx_packets.get() - before,
        10_000 * 32,
        "every frame must be forwarded ({setup:?})"
    );
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "the worker allocated on the hot path ({setup:?})"
    );
    let tracked = if setup == common::Setup::L2 { 0 } else { 1000 };
    assert_eq!(ct.stats().entries, tracked, "{setup:?}");
}
