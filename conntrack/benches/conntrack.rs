//! Conntrack micro-benchmarks: established lookups in a 1M-entry table (UDP and TCP, on one
//! thread and on two, including connections whose two directions run on different threads;
//! random lookups one by one and in prepared batches of 32),
//! and new-connection inserts on one and on two threads.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use brink_conntrack::{Config, Open, Packet, Run, Table};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flows::{tcp_established, tcp_handshake, udp};

mod flows;

const SEC: u64 = 1_000_000_000;
/// When the measured packets run: inside a second, as a live worker's clock almost always is
/// (at a second's very end no packet can take the table's lock-free path), and after the
/// second the table was filled in, so each connection's first packet takes the lock once.
const NOW: u64 = SEC + SEC / 2;
/// The UDP connections of the filled table (see [`filled`]).
const UDP_FLOWS: u32 = 950_000;
/// Connections a burst of packets of a few flows keeps in cache.
const HOT: u32 = 1024;

/// The `HOT` connections, spread over the table, starting at `first`.
fn hot(first: u32) -> impl Iterator<Item = u32> {
    (0..HOT).map(move |i| first + i * 977)
}

/// A 1M-entry table holding `HOT` established TCP connections (`hot(0)`) and, around them,
/// 950,000 replied (established) UDP connections: 95% full, so that no shard is full. (With a
/// million, the fullest shards refused a few of the measured flows, whose every packet then
/// timed a refused insert instead of a lookup.) The measured connections lie scattered over the
/// slab among the others, as a live table's busy ones do.
fn filled() -> Table {
    let t = Table::new(Config::default());
    for i in hot(0) {
        for p in tcp_handshake(i) {
            t.process(&p, 0);
        }
    }
    for i in 0..UDP_FLOWS {
        t.process(&udp(i, false), 0);
        t.process(&udp(i, true), 0);
    }
    t
}

/// Runs `packets` in turn, `n` of them, on one thread.
fn run(t: &Table, packets: &[Packet], n: u64) -> Duration {
    let start = Instant::now();
    for k in 0..n as usize {
        black_box(t.process(&packets[k % packets.len()], NOW));
    }
    start.elapsed()
}

/// Runs `packets` in turn, `n` of them, on one thread, in batches of 32 as the pipeline does:
/// each batch is prepared (hashed, its buckets prefetched) before any of it is processed.
fn run_batched(t: &Table, packets: &[Packet], n: u64) -> Duration {
    const BATCH: usize = 32;
    let start = Instant::now();
    for b in 0..(n as usize).div_ceil(BATCH) {
        let at = (b * BATCH) % packets.len();
        let batch = &packets[at..(at + BATCH).min(packets.len())];
        let mut prepared = [None; BATCH];
        for (p, prep) in batch.iter().zip(&mut prepared) {
            *prep = Some(t.prepare(p));
        }
        for (p, prep) in batch.iter().zip(&prepared) {
            if let Some(prep) = prep {
                black_box(t.process_prepared(p, prep, Run::one(p), NOW, &mut Open));
            }
        }
    }
    start.elapsed()
}

/// Runs `work[0]` on a thread pinned to core 0 and `work[1]` on one pinned to core 1, started
/// together; each goes through its packets in turn, `n` of them. Returns the wall time.
fn on_two_threads(t: &Arc<Table>, work: [Vec<Packet>; 2], n: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(core, packets)| {
            let (t, barrier) = (Arc::clone(t), Arc::clone(&barrier));
            std::thread::spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                barrier.wait();
                run(&t, &packets, n);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for th in threads {
        th.join().unwrap();
    }
    start.elapsed()
}

fn established(c: &mut Criterion) {
    let table = Arc::new(filled());
    let mut g = c.benchmark_group("ct_established_1M");
    g.throughput(Throughput::Elements(1));
    let hot_udp: Vec<Packet> = hot(0).map(|i| udp(i, false)).collect();
    g.bench_function("hot_1024_flows", |b| {
        b.iter_custom(|iters| run(&table, &hot_udp, iters))
    });
    // Data one way, ACKs the other, as a bulk transfer does.
    let hot_tcp: Vec<Packet> = hot(0)
        .flat_map(|i| [tcp_established(i, false), tcp_established(i, true)])
        .collect();
    g.bench_function("tcp_hot_1024_flows", |b| {
        b.iter_custom(|iters| run(&table, &hot_tcp, iters))
    });
    // Every packet a different connection: each lookup misses the CPU caches.
    let random: Vec<Packet> = (0..UDP_FLOWS)
        .map(|i| udp(i.wrapping_mul(2_654_435_761) % UDP_FLOWS, false))
        .collect();
    g.bench_function("random_over_1M", |b| {
        b.iter_custom(|iters| run(&table, &random, iters))
    });
    g.bench_function("random_over_1M_batched", |b| {
        b.iter_custom(|iters| run_batched(&table, &random, iters))
    });
    // Two pinned threads, each with its own hot UDP connections; time per packet of both.
    g.bench_function("two_threads_own_flows", |b| {
        b.iter_custom(|iters| {
            let own = |first| hot(first).map(|i| udp(i, false)).collect();
            on_two_threads(&table, [own(0), own(1)], iters.div_ceil(2))
        })
    });
    // The same TCP connections on both threads: data on one, the ACKs on the other.
    g.bench_function("two_threads_split_directions", |b| {
        b.iter_custom(|iters| {
            let dir = |reply| hot(0).map(|i| tcp_established(i, reply)).collect();
            on_two_threads(&table, [dir(false), dir(true)], iters.div_ceil(2))
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
    const MAX: u32 = 1_000_000;
    let mut g = c.benchmark_group("ct_insert");
    g.throughput(Throughput::Elements(1));
    // One table for every sample, so the figures are steady-state inserts, not the first touch
    // of the table's memory (page faults), which a running switch pays once.
    let t = Arc::new(Table::new(Config::default()));
    warm_up(&t);
    g.bench_function("one_thread", |b| {
        b.iter_custom(|iters| {
            let packets: Vec<Packet> = (0..iters.min(u64::from(MAX)) as u32)
                .map(|i| udp(i, false))
                .collect();
            let mut total = Duration::ZERO;
            // Start again from an empty table whenever it would go past its capacity.
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(packets.len() as u64);
                t.flush(&Default::default());
                total += run(&t, &packets, n);
                done += n;
            }
            total
        })
    });
    g.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let per = (iters / 2).clamp(1, u64::from(MAX / 2)) as u32;
            let rounds = iters.div_ceil(2 * u64::from(per));
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                t.flush(&Default::default());
                let own = |th: u32| (0..per).map(|i| udp(th * per + i, false)).collect();
                total += on_two_threads(&t, [own(0), own(1)], u64::from(per));
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
