//! Packet capture of one port: copies of what it receives and sends, or of what brink dropped
//! of its frames, queued for the control thread to write out.
//!
//! Off (the default), it costs a worker one relaxed atomic load per batch: the captured port
//! is read into the batch and compared with plain integers after that. On, each captured frame
//! is copied (at most [`SNAPLEN`] bytes) into a bounded queue; when the queue is full, frames
//! are counted as lost instead of waiting for the reader.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::counters::DropReason;
use crate::port::BUFFER_LEN;
use crate::snapshot::{PortId, NO_PORT};

/// Bytes of a frame a capture keeps (longer frames are cut, their length recorded).
pub const SNAPLEN: usize = BUFFER_LEN;
/// Captured frames the queue holds until the reader takes them.
pub const CAPTURE_DEPTH: usize = 4096;

/// Which way a captured frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Received from the port's VM.
    In,
    /// Sent to the port's VM.
    Out,
    /// Received from the VM and dropped by brink for this reason.
    Dropped(DropReason),
}

/// One captured frame.
#[derive(Clone)]
pub struct Captured {
    /// Nanoseconds since the switch started, as conntrack counts them.
    pub at_ns: u64,
    /// Which way it went.
    pub way: Way,
    /// The frame's length on the wire.
    pub len: u32,
    kept: u16,
    data: [u8; SNAPLEN],
}

impl Captured {
    /// The bytes kept (the first [`SNAPLEN`] at most).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.kept)]
    }
}

/// The capture state workers share with the control thread.
pub struct Capture {
    port: AtomicU32,
    drops_only: AtomicBool,
    queue: ArrayQueue<Captured>,
    lost: AtomicU64,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            port: AtomicU32::new(u32::from(NO_PORT)),
            drops_only: AtomicBool::new(false),
            queue: ArrayQueue::new(CAPTURE_DEPTH),
            lost: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("port", &self.port.load(Ordering::Relaxed))
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// What a worker captures in one batch, read from the shared state once at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The captured port, or [`NO_PORT`].
    pub port: PortId,
    /// Only frames brink dropped.
    pub drops_only: bool,
}

impl Target {
    /// Nothing is captured.
    pub const OFF: Target = Target {
        port: NO_PORT,
        drops_only: false,
    };

    /// Whether frames received on or sent to `port` are captured (drops aside).
    #[inline]
    pub fn traffic_of(self, port: PortId) -> bool {
        self.port == port && !self.drops_only
    }
}

impl Capture {
    /// Starts capturing `port` (only its dropped frames if `drops_only`), throwing away what an
    /// earlier capture left queued.
    pub fn start(&self, port: PortId, drops_only: bool) {
        self.stop();
        while self.queue.pop().is_some() {}
        self.lost.store(0, Ordering::Relaxed);
        self.drops_only.store(drops_only, Ordering::Relaxed);
        self.port.store(u32::from(port), Ordering::Release);
    }

    /// Stops capturing; what is queued stays to be read.
    pub fn stop(&self) {
        self.port.store(u32::from(NO_PORT), Ordering::Release);
    }

    /// What to capture now.
    #[inline]
    pub fn target(&self) -> Target {
        let port = self.port.load(Ordering::Acquire);
        if port == u32::from(NO_PORT) {
            return Target::OFF;
        }
        Target {
            port: PortId::try_from(port).unwrap_or(NO_PORT),
            drops_only: self.drops_only.load(Ordering::Relaxed),
        }
    }

    /// Queues a copy of `bytes`, or counts it lost if the queue is full.
    pub fn record(&self, at_ns: u64, way: Way, bytes: &[u8]) {
        let kept = bytes.len().min(SNAPLEN);
        let mut frame = Captured {
            at_ns,
            way,
            len: bytes.len() as u32,
            kept: kept as u16,
            data: [0; SNAPLEN],
        };
        frame.data[..kept].copy_from_slice(&bytes[..kept]);
        if self.queue.push(frame).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes up to `max` captured frames, oldest first.
    pub fn take(&self, max: usize) -> Vec<Captured> {
        std::iter::from_fn(|| self.queue.pop()).take(max).collect()
    }

    /// Frames lost since the capture started because the queue was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_targets_one_port_and_keeps_what_it_is_given() {
        let c = Capture::default();
        assert_eq!(c.target(), Target::OFF);
        c.start(7, false);
        assert!(c.target().traffic_of(7));
        assert!(!c.target().traffic_of(8));
        c.record(5, Way::In, &[1; 3000]);
        c.record(6, Way::Dropped(DropReason::IngressDenied), &[2; 60]);
        c.stop();
        assert_eq!(c.target(), Target::OFF);
        let got = c.take(10);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].len, got[0].bytes().len()), (3000, SNAPLEN));
        assert_eq!(got[1].way, Way::Dropped(DropReason::IngressDenied));
        c.start(7, true);
        assert!(!c.target().traffic_of(7), "drops only");
        for _ in 0..=CAPTURE_DEPTH {
            c.record(1, Way::Out, &[0; 60]);
        }
        assert_eq!(c.lost(), 1);
    }
}
