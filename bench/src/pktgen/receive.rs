//! The receiving end: counts frames on an AF_XDP socket and reads the stamps of
//! brink-pktgen's UDP frames for loss, reordering and one-way latency.
//!
//! Latency is the receive time minus the stamp's send time, both from the system clock, so it
//! is one-way only when sender and receiver run on the same host (namespaces share the clock).

use std::io::Write;
use std::time::{Duration, Instant};

use brink_dataplane::port::Backend;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::frame::Stamp;
use super::{now_ns, open, Progress, BATCH};
use crate::BenchError;

/// The longest latency the histogram holds (longer ones count as this).
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// What the receiver prints on stderr once its socket is open.
pub const READY: &str = "brink-pktgen: receiving";

/// Where to receive and when to stop.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveConfig {
    /// Interface to receive on.
    pub iface: String,
    /// Stop after this many stamped frames.
    pub count: u64,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop when no stamped frame arrived for this long after the first one.
    pub idle: Duration,
    /// Draw a progress line on stderr every second (only where stderr is a terminal).
    pub progress: bool,
}

/// One-way latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// What arrived.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveReport {
    /// Stamped frames received.
    pub received: u64,
    /// Other frames received (ARP, other traffic).
    pub other: u64,
    /// Stamped frames missing: the highest sequence number seen + 1, minus those received.
    pub lost: u64,
    /// Stamped frames that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Seconds from the first to the last stamped frame.
    pub seconds: f64,
    /// Stamped frames per second over those seconds.
    pub pps: f64,
    /// One-way latency of the stamped frames.
    pub latency: Latency,
    /// How AF_XDP attached.
    pub attach: String,
}

/// Counts of a run so far.
struct Tally {
    received: u64,
    other: u64,
    reordered: u64,
    next_seq: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally, BenchError> {
        Ok(Tally {
            received: 0,
            other: 0,
            reordered: 0,
            next_seq: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .map_err(|e| BenchError::Config(e.to_string()))?,
        })
    }

    /// Takes one frame received at `now_ns`.
    fn count(&mut self, frame: &[u8], now_ns: u64) {
        let Some(stamp) = Stamp::read(frame) else {
            self.other += 1;
            return;
        };
        self.received += 1;
        if stamp.seq < self.next_seq {
            self.reordered += 1;
        } else {
            self.next_seq = stamp.seq + 1;
        }
        let ns = now_ns
            .saturating_sub(stamp.sent_ns)
            .clamp(1, MAX_LATENCY_NS);
        self.latency.saturating_record(ns);
    }

    fn latency(&self) -> Latency {
        if self.latency.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Latency {
            p50_us: us(self.latency.value_at_quantile(0.5)),
            p99_us: us(self.latency.value_at_quantile(0.99)),
            p999_us: us(self.latency.value_at_quantile(0.999)),
            max_us: us(self.latency.max()),
        }
    }
}

/// Receives until `cfg.count` stamped frames, `cfg.duration`, or `cfg.idle` without a frame.
pub fn receive(cfg: &ReceiveConfig) -> Result<ReceiveReport, BenchError> {
    let mut tally = Tally::new()?;
    let (mut xdp, mode) = open(&cfg.iface)?;
    eprintln!("{READY}");
    let _ = std::io::stderr().flush();
    let mut progress = Progress::new(cfg.progress, "received");
    let mut batch = vec![Default::default(); BATCH];
    let start = Instant::now();
    let (mut first, mut last) = (None, start);
    loop {
        let n = xdp.rx(0, &mut batch);
        let now = Instant::now();
        if n > 0 {
            let (ns, before) = (now_ns(), tally.received);
            for f in &batch[..n] {
                tally.count(xdp.bytes(f), ns);
            }
            for &f in &batch[..n] {
                xdp.free(f);
            }
            if tally.received > before {
                first.get_or_insert(now);
                last = now;
            }
        } else if first.is_some() && now - last > cfg.idle {
            break;
        } else {
            std::thread::yield_now();
        }
        if tally.received >= cfg.count || now - start >= cfg.duration {
            break;
        }
        xdp.service();
        progress.update(tally.received, now - start);
    }
    progress.finish();
    xdp.close(0);
    let seconds = first.map_or(0.0, |f| (last - f).as_secs_f64());
    Ok(ReceiveReport {
        received: tally.received,
        other: tally.other,
        lost: tally.next_seq.saturating_sub(tally.received),
        reordered: tally.reordered,
        seconds,
        pps: tally.received as f64 / seconds.max(1e-9),
        latency: tally.latency(),
        attach: mode.to_string(),
    })
}
