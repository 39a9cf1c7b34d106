//! Whole-pipeline benchmarks on in-memory ports: 64-byte UDP frames between two ports of one
//! network. One `poll_once` moves one batch of 32 frames from port 0 to port 1 through parse,
//! port security, FDB learn/lookup, conntrack with the security-group gate, the per-packet rule
//! checks and transmit staging, as far as each setup enables them.
//!
//! - `l2`, `l2_ct`, `sg_ct`: 1,000 flows whose connections exist (steady state).
//! - `sg_ct_new_conns`: every frame opens a new connection: 32,768 flows from an empty table,
//!   each judged by both ports' rules and inserted.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use brink_conntrack::Filter;
use brink_dataplane::batch::BATCH_SIZE;
use common::Setup;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn steady(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for (name, setup) in [
        ("l2_64B_1000flows", Setup::L2),
        ("l2_ct_64B_1000flows", Setup::Conntrack),
        ("sg_ct_64B_1000flows", Setup::Firewall),
    ] {
        let mut rig = common::worker(1000, setup);
        let now = Instant::now();
        // Warm up: learn every source MAC and track every flow once.
        for _ in 0..100 {
            rig.worker.poll_once(now);
        }
        assert_eq!(
            rig.sink.tx_packets.get(),
            100 * BATCH_SIZE as u64,
            "{name} must forward every frame"
        );
        g.bench_function(name, |b| {
            b.iter(|| rig.worker.poll_once(now));
        });
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    const FLOWS: usize = 32_768;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(FLOWS as u64));
    let mut rig = common::worker(FLOWS, Setup::Firewall);
    let now = Instant::now();
    g.bench_function("sg_ct_new_conns_64B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rig.ct.flush(&Filter::default());
                let inserts = rig.ct.stats().inserts;
                let start = Instant::now();
                for _ in 0..FLOWS / BATCH_SIZE {
                    rig.worker.poll_once(now);
                }
                total += start.elapsed();
                assert_eq!(rig.ct.stats().inserts - inserts, FLOWS as u64);
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, steady, new_connections);
criterion_main!(benches);
