//! Whole-pipeline benchmarks on in-memory ports between two ports of one network, with the
//! default connection table (256 shards, 1M connections) prefilled with 900,000 others. One
//! `poll_once` moves a batch of 32 frames from port 0 to port 1 (and, for TCP, port 1's batch of
//! ACKs back) through parse, port security, FDB learn/lookup, conntrack with the
//! security-group gate, the per-packet rule checks and transmit staging, as far as each setup
//! enables them.
//!
//! - `*_1000flows`: 1,000 flows whose connections exist (steady state): UDP without replies,
//!   or established TCP (data one way, ACKs the other).
//! - `sg_ct_new_conns`: every frame opens a new connection: 32,768 flows from an empty table,
//!   each judged by both ports' rules and inserted.
//!
//! With `BRINK_COUNT_PACKETS=n` in the environment, the binary instead runs one steady setup
//! (`BRINK_SETUP`, a benchmark name below) for about `n` packets and exits: for counting
//! instructions and cache misses per packet under a simulator (see docs/BENCHMARKS.md).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use brink_conntrack::Filter;
use brink_dataplane::batch::BATCH_SIZE;
use common::{Rig, Setup, Traffic};
use criterion::{criterion_group, Criterion, Throughput};

const FLOWS: usize = 1000;
/// Connections in the table besides the benchmark's own.
const PREFILL: u32 = 900_000;

const STEADY: [(&str, Setup, Traffic); 5] = [
    ("l2_udp_1000flows", Setup::L2, Traffic::Udp),
    ("l2_tcp_1000flows", Setup::L2, Traffic::Tcp),
    ("ct_udp_1000flows", Setup::Conntrack, Traffic::Udp),
    ("sg_ct_udp_1000flows", Setup::Firewall, Traffic::Udp),
    ("sg_ct_tcp_1000flows", Setup::Firewall, Traffic::Tcp),
];

/// A rig for one steady setup, its table prefilled and every flow seen a hundred times, and the
/// instant it runs at. The instant is taken after the rig's clock started, so that conntrack's
/// time is inside a second, as a live worker's almost always is (at its clock's very start, no
/// packet could take conntrack's lock-free path: see `brink_conntrack::table`).
fn steady_rig(name: &str, setup: Setup, traffic: Traffic) -> (Rig, Instant) {
    let mut rig = common::worker(FLOWS, setup, traffic);
    rig.prefill(PREFILL);
    let now = Instant::now();
    // Warm up: learn every source MAC and track every flow.
    for _ in 0..100 {
        rig.worker.poll_once(now);
    }
    let moved = rig.sink.tx_packets.get() + rig.source.tx_packets.get();
    assert_eq!(
        moved,
        100 * rig.per_poll as u64,
        "{name} must forward every frame"
    );
    (rig, now)
}

fn steady(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    for (name, setup, traffic) in STEADY {
        let (mut rig, now) = steady_rig(name, setup, traffic);
        g.throughput(Throughput::Elements(rig.per_poll as u64));
        g.bench_function(name, |b| {
            b.iter(|| rig.worker.poll_once(now));
        });
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    const NEW: usize = 32_768;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(NEW as u64));
    let mut rig = common::worker(NEW, Setup::Firewall, Traffic::Udp);
    let now = Instant::now();
    g.bench_function("sg_ct_new_conns_64B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rig.ct.flush(&Filter::default());
                let inserts = rig.ct.stats().inserts;
                let start = Instant::now();
                for _ in 0..NEW / BATCH_SIZE {
                    rig.worker.poll_once(now);
                }
                total += start.elapsed();
                assert_eq!(rig.ct.stats().inserts - inserts, NEW as u64);
            }
            total
        });
    });
    g.finish();
}

/// The counting run: `packets` packets of the steady setup `name`.
fn count(packets: &str, name: &str) {
    let packets: usize = packets.parse().expect("BRINK_COUNT_PACKETS: a number");
    let (name, setup, traffic) = STEADY
        .into_iter()
        .find(|s| s.0 == name)
        .expect("BRINK_SETUP: a steady benchmark name");
    let (mut rig, now) = steady_rig(name, setup, traffic);
    for _ in 0..packets / rig.per_poll {
        rig.worker.poll_once(now);
    }
}

criterion_group!(benches, steady, new_connections);

fn main() {
    match std::env::var("BRINK_COUNT_PACKETS") {
        Ok(n) => count(&n, &std::env::var("BRINK_SETUP").unwrap_or_default()),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
