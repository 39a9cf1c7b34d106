//! `brink-pktgen`: a traffic generator and receiver on AF_XDP sockets.
//!
//! The sender opens the same AF_XDP port the switch uses (`brink_dataplane::port::afxdp`) on
//! one interface, typically a VM's `eth0` inside its namespace, and transmits frames built from
//! templates ([`frame`]) in batches, as fast as the ring takes them or at a set rate, bounded by
//! a packet count and a duration. The receiver ([`receive`]) counts what arrives on another
//! interface and reads the stamps of UDP frames for loss, reordering and one-way latency.

pub mod frame;
pub mod receive;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brink_dataplane::port::afxdp::{XdpBackend, XdpSpec};
use brink_dataplane::port::{Backend, PortMode, PortSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::BenchError;
use frame::{FrameSpec, Frames};

/// Frames queued per ring kick.
const BATCH: usize = 64;
/// Attempts to attach: the kernel may still hold the interface for a moment after a previous
/// socket on it closed (seen as EBUSY, rarely).
const ATTACH_TRIES: u32 = 5;
/// A rate-limited sender sleeps when its next frame is due further away than this, and spins
/// (yielding the core) when it is due sooner.
const SLEEP_OVER: Duration = Duration::from_micros(200);

/// What to send, where, and for how long.
#[derive(Debug, Clone, Serialize)]
pub struct SendConfig {
    /// Interface to send on.
    pub iface: String,
    /// The frames.
    pub frames: FrameSpec,
    /// Frames per second, or as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many frames.
    pub count: u64,
    /// Stop after this long.
    pub duration: Duration,
    /// Draw a progress line on stderr every second (only where stderr is a terminal).
    pub progress: bool,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Frames the ring took.
    pub sent: u64,
    /// Seconds spent sending.
    pub seconds: f64,
    /// Frames per second.
    pub pps: f64,
    /// How AF_XDP attached.
    pub attach: String,
}

/// An AF_XDP port on `iface`'s first queue, at the default MTU.
pub fn xdp_spec(iface: &str) -> PortSpec {
    PortSpec::Xdp(XdpSpec {
        iface: iface.to_string(),
        mtu: brink_dataplane::snapshot::DEFAULT_MTU,
        queues: vec![0],
    })
}

/// Opens an AF_XDP port on `iface` as port 0 of a new backend.
fn open(iface: &str) -> Result<(XdpBackend, PortMode), BenchError> {
    let attach = |e: brink_dataplane::port::PortError| BenchError::Config(e.to_string());
    let mut xdp = XdpBackend::new().map_err(attach)?;
    let spec = xdp_spec(iface);
    let mut tries = 1;
    loop {
        match xdp.open(0, spec.clone()) {
            Ok(mode) => return Ok((xdp, mode)),
            Err(_) if tries < ATTACH_TRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(attach(e)),
        }
    }
}

/// Nanoseconds since the Unix epoch: the clock both ends of a one-way latency read.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A progress line, redrawn at most once a second.
struct Progress {
    bar: ProgressBar,
    verb: &'static str,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool, verb: &'static str) -> Progress {
        let bar = if enabled {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(1))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Progress {
            bar,
            verb,
            last: Instant::now(),
        }
    }

    /// Shows `count` frames after `elapsed`, if a second has passed since the last line.
    fn update(&mut self, count: u64, elapsed: Duration) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let mpps = count as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
            self.bar
                .set_message(format!("{} {count} frames ({mpps:.3} Mpps)", self.verb));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Sends until `cfg.count` frames or `cfg.duration`, whichever comes first.
pub fn send(cfg: &SendConfig) -> Result<SendReport, BenchError> {
    let mut frames = Frames::new(&cfg.frames)?;
    if cfg.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(BenchError::Config("the rate must be above 0".into()));
    }
    let (mut xdp, mode) = open(&cfg.iface)?;
    let mut progress = Progress::new(cfg.progress, "sent");
    let mut batch = Vec::with_capacity(BATCH);
    let (mut sent, mut built) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if sent >= cfg.count || elapsed >= cfg.duration {
            break;
        }
        let due = match cfg.rate {
            Some(rate) => (elapsed.as_secs_f64() * rate) as u64 + 1,
            None => u64::MAX,
        };
        let want = (cfg.count.min(due).saturating_sub(sent) as usize).min(BATCH);
        if want == 0 {
            pace(cfg.rate, sent, elapsed);
            continue;
        }
        // One clock read per batch: the stamp is the time the batch was built.
        let now = now_ns();
        while batch.len() < want {
            let Some(f) = xdp.alloc_copy(frames.build(built, now)) else {
                break;
            };
            batch.push(f);
            built += 1;
        }
        let took = xdp.tx(0, &batch);
        sent += took as u64;
        batch.drain(..took);
        xdp.service();
        progress.update(sent, elapsed);
    }
    for f in batch {
        xdp.free(f);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    xdp.close(0);
    Ok(SendReport {
        sent,
        seconds,
        pps: sent as f64 / seconds.max(1e-9),
        attach: mode.to_string(),
    })
}

/// Waits for the next frame of a rate-limited run: sleeps when it is far, yields when near.
fn pace(rate: Option<f64>, sent: u64, elapsed: Duration) {
    let Some(rate) = rate else {
        return;
    };
    let next = Duration::from_secs_f64((sent + 1) as f64 / rate);
    match next.checked_sub(elapsed) {
        Some(wait) if wait > SLEEP_OVER => std::thread::sleep(wait - SLEEP_OVER / 2),
        _ => std::thread::yield_now(),
    }
}
