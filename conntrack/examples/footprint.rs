//! Memory and expiry cost of a full table: fills 1,000,000 UDP connections, reports the resident
//! memory they added, then expires them all at the default budget and reports the slowest
//! single `expire` call.
//!
//! `cargo run --release -p brink-conntrack --example footprint`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use brink_conntrack::table::DEFAULT_EXPIRE_BUDGET;
use brink_conntrack::{Config, Table};

// The footprint uses only the UDP connections.
#[allow(dead_code)]
#[path = "../benches/flows/mod.rs"]
mod flows;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    const N: u32 = 1_000_000;
    let before = rss_kib();
    let table = Table::new(Config::default());
    for i in 0..N {
        table.process(&flows::udp(i, false), 0);
    }
    let after = rss_kib();
    let entries = table.stats().entries;
    println!(
        "{entries} connections: {:.1} MiB resident ({} bytes each)",
        (after - before) as f64 / 1024.0,
        (after - before) * 1024 / entries.max(1)
    );

    let now = 3600 * 1_000_000_000;
    let (mut calls, mut slowest, mut total) = (0u64, Duration::ZERO, Duration::ZERO);
    let mut times = Vec::new();
    while table.stats().entries > 0 {
        let start = Instant::now();
        table.expire(now, DEFAULT_EXPIRE_BUDGET);
        let took = start.elapsed();
        times.push(took);
        slowest = slowest.max(took);
        total += took;
        calls += 1;
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let over_50us = times
        .iter()
        .filter(|&&t| t > Duration::from_micros(50))
        .count();
    println!(
        "expired {entries} in {calls} calls of budget {DEFAULT_EXPIRE_BUDGET}: total {:.1} ms, \
         median {:.1} us, p99 {:.1} us, p99.9 {:.1} us, slowest {:.1} us, {over_50us} calls over 50 us",
        total.as_secs_f64() * 1e3,
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100]),
        us(times[times.len() * 999 / 1000]),
        us(slowest),
    );
}
