//! Whole-pipeline benchmark on in-memory ports: 64-byte frames, 1,000 flows between two ports of
//! one network, L2 forwarding only. One `poll_once` moves one batch of 32 frames from port 0 to
//! port 1 through parse, FDB learn/lookup and transmit staging.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use brink_dataplane::pipeline::BATCH_SIZE;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn l2_forwarding(c: &mut Criterion) {
    let (mut worker, sink) = common::l2_worker(1000);
    let now = Instant::now();
    // Warm up: learn every source MAC once.
    for _ in 0..100 {
        worker.poll_once(now);
    }
    let before = sink.tx_packets.get();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function("l2_64B_1000flows", |b| {
        b.iter(|| worker.poll_once(now));
    });
    g.finish();
    assert!(
        sink.tx_packets.get() > before,
        "the benchmark must actually forward frames"
    );
}

criterion_group!(benches, l2_forwarding);
criterion_main!(benches);
