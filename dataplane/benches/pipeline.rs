//! Whole-pipeline benchmarks on in-memory ports: 64-byte UDP frames, 1,000 flows between two
//! ports of one network. One `poll_once` moves one batch of 32 frames from port 0 to port 1
//! through parse, FDB learn/lookup, conntrack (in the `_ct_` case) and transmit staging.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use brink_dataplane::pipeline::BATCH_SIZE;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn forwarding(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for (name, conntrack) in [("l2_64B_1000flows", false), ("l2_ct_64B_1000flows", true)] {
        let (mut worker, sink) = common::worker(1000, conntrack);
        let now = Instant::now();
        // Warm up: learn every source MAC and track every flow once.
        for _ in 0..100 {
            worker.poll_once(now);
        }
        let before = sink.tx_packets.get();
        g.bench_function(name, |b| {
            b.iter(|| worker.poll_once(now));
        });
        assert!(
            sink.tx_packets.get() > before,
            "{name} must actually forward frames"
        );
    }
    g.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
