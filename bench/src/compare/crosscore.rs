//! How fast the host moves a cache line between two cores: a line bounced between two threads
//! pinned to them, timed per round trip.
//!
//! On a virtual machine the host decides where the vCPUs run, and on this one the round trip
//! between the two vCPUs flips between about 90 ns and about 300 ns for seconds at a time. A
//! vhost-user loop crosses between the cores several times per frame (rings and buffers written
//! on one core are read on the other), so its rate follows: the harness records the round trip
//! before and after each loop, for loops to be compared where the machine was the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use core_affinity::CoreId;

use super::scenario::quantile;

/// Round trips per sample, and samples per measurement (the median is kept).
const TRIPS: u64 = 4_000;
const SAMPLES: usize = 5;
/// Longest a measurement may take: the other thread may not get its core (then the result is
/// `None`).
const LIMIT: Duration = Duration::from_secs(2);
/// The value that tells the echo to stop.
const STOP: u64 = u64::MAX;

/// The line: one counter on a cache line of its own.
#[repr(align(128))]
struct Line(AtomicU64);

/// The median round trip of a cache line between cores `a` and `b`, in nanoseconds; `None` if
/// either core is not this process's to run on or the measurement overran [`LIMIT`]. Runs on
/// two threads of its own: the caller's affinity is left alone.
pub fn round_trip_ns(a: usize, b: usize) -> Option<f64> {
    let ours = core_affinity::get_core_ids()?;
    if ![a, b].iter().all(|&id| ours.contains(&CoreId { id })) {
        return None;
    }
    let line = Line(AtomicU64::new(0));
    let start = Barrier::new(2);
    let deadline = Instant::now() + LIMIT;
    std::thread::scope(|s| {
        s.spawn(|| {
            let pinned = core_affinity::set_for_current(CoreId { id: b });
            start.wait();
            if pinned {
                echo(&line, deadline);
            } else {
                line.0.store(STOP, Ordering::Release);
            }
        });
        let timer = s.spawn(|| {
            let pinned = core_affinity::set_for_current(CoreId { id: a });
            start.wait();
            let ns = pinned.then(|| time(&line, deadline)).flatten();
            line.0.store(STOP, Ordering::Release);
            ns
        });
        timer.join().ok().flatten()
    })
}

/// Answers every odd value on `line` with the next even one, until told to stop or `deadline`.
fn echo(line: &Line, deadline: Instant) {
    let mut want = 1;
    while Instant::now() < deadline {
        match line.0.load(Ordering::Acquire) {
            STOP => return,
            seen if seen == want => {
                line.0.store(want + 1, Ordering::Release);
                want += 2;
            }
            _ => std::hint::spin_loop(),
        }
    }
}

/// Sends odd values on `line` and waits for each answer: the median over [`SAMPLES`] of the
/// time per round trip, or `None` if the echo stopped or `deadline` passed first.
fn time(line: &Line, deadline: Instant) -> Option<f64> {
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut next = 1;
    for _ in 0..SAMPLES {
        let began = Instant::now();
        for _ in 0..TRIPS {
            line.0.store(next, Ordering::Release);
            loop {
                match line.0.load(Ordering::Acquire) {
                    seen if seen == next + 1 => break,
                    STOP => return None,
                    _ if Instant::now() > deadline => return None,
                    _ => std::hint::spin_loop(),
                }
            }
            next += 2;
        }
        samples.push(began.elapsed().as_nanos() as f64 / TRIPS as f64);
    }
    Some(quantile(&samples, 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_between_two_cores_takes_time() {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let (Some(a), Some(b)) = (cores.first(), cores.get(1)) else {
            return;
        };
        let ns = round_trip_ns(a.id, b.id).expect("both cores can be pinned to");
        // Two cache-line transfers cannot take less than a few nanoseconds, nor (pinned, on an
        // otherwise idle machine) as long as the limit.
        assert!(ns > 5.0 && ns < 1e6, "{ns} ns");
    }

    #[test]
    fn a_core_that_does_not_exist_gives_no_measurement() {
        assert_eq!(round_trip_ns(0, 4096), None);
    }
}
