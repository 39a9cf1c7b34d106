//! Conntrack micro-benchmarks: established lookups in a 1M-entry table, and new-connection
//! inserts on one and on two threads.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use brink_conntrack::{Config, Packet, Table};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flows::udp;

mod flows;

const SEC: u64 = 1_000_000_000;

/// A table holding `n` replied (established) UDP connections.
fn filled(n: u32) -> Table {
    let t = Table::new(Config::default());
    for i in 0..n {
        t.process(&udp(i, false), 0);
        t.process(&udp(i, true), 0);
    }
    t
}

fn established(c: &mut Criterion) {
    let table = filled(1_000_000);
    let mut g = c.benchmark_group("ct_established_1M");
    g.throughput(Throughput::Elements(1));
    // A working set that stays in cache, as a burst of packets of a few flows does.
    let hot: Vec<Packet> = (0..1024).map(|i| udp(i * 977, false)).collect();
    let mut i = 0;
    g.bench_function("hot_1024_flows", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(table.process(&hot[i], SEC))
        })
    });
    // Every packet a different connection: each lookup misses the CPU caches.
    let random: Vec<Packet> = (0..1_000_000u32)
        .map(|i| udp(i.wrapping_mul(2_654_435_761) % 1_000_000, false))
        .collect();
    let mut j = 0;
    g.bench_function("random_over_1M", |b| {
        b.iter(|| {
            j = (j + 1) % random.len();
            black_box(table.process(&random[j], SEC))
        })
    });
    g.finish();
}

/// Touches all of the table's memory once by filling it to capacity.
fn warm_up(t: &Table) {
    for i in 0..1_000_000 {
        t.process(&udp(i, false), 0);
    }
    t.flush(&Default::default());
}

fn inserts(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_insert");
    g.throughput(Throughput::Elements(1));
    // One table for every sample, so the figures are steady-state inserts, not the first touch
    // of the table's memory (page faults), which a running switch pays once.
    let t = Arc::new(Table::new(Config::default()));
    warm_up(&t);
    g.bench_function("one_thread", |b| {
        b.iter_custom(|iters| {
            let packets: Vec<Packet> = (0..iters.min(1_000_000) as u32)
                .map(|i| udp(i, false))
                .collect();
            let mut total = Duration::ZERO;
            // Refill a fresh table whenever it would go past its capacity.
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(packets.len() as u64) as usize;
                t.flush(&Default::default());
                let start = Instant::now();
                for p in &packets[..n] {
                    black_box(t.process(p, 0));
                }
                total += start.elapsed();
                done += n as u64;
            }
            total
        })
    });
    g.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let per = (iters / 2).clamp(1, 500_000) as u32;
            let rounds = iters.div_ceil(2 * u64::from(per));
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                t.flush(&Default::default());
                let barrier = Arc::new(Barrier::new(3));
                let threads: Vec<_> = (0..2u32)
                    .map(|th| {
                        let (t, barrier) = (Arc::clone(&t), Arc::clone(&barrier));
                        let packets: Vec<Packet> =
                            (0..per).map(|i| udp(th * per + i, false)).collect();
                        std::thread::spawn(move || {
                            core_affinity::set_for_current(core_affinity::CoreId {
                                id: th as usize,
                            });
                            barrier.wait();
                            for p in &packets {
                                black_box(t.process(p, 0));
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                for th in threads {
                    th.join().unwrap();
                }
                total += start.elapsed();
            }
            // Report time per insert of the whole run.
            total.mul_f64(iters as f64 / (rounds * 2 * u64::from(per)) as f64)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = established, inserts
}
criterion_main!(benches);
