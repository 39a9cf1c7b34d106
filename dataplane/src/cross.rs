//! Cross-worker forwarding: bounded queues between workers.
//!
//! A frame received by one worker for a port of which it has no socket cannot move by handle
//! (each worker has its own frame pool), so its bytes are copied into a [`CrossFrame`] and pushed
//! to the owner's inbound queue from this worker. Each queue has one producer and one consumer.
//! Frames up to one pool buffer go in the frame queue; longer ones (jumbo frames, up to a
//! 9,000-byte MTU) in a smaller queue of larger slots, so the common case stays compact.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::counters::DropReason;
use crate::port::BUFFER_LEN;
use crate::snapshot::PortId;

/// Frames each cross-worker frame queue holds.
pub const CROSS_QUEUE_DEPTH: usize = 1024;
/// Jumbo frames each cross-worker queue holds.
pub const CROSS_JUMBO_DEPTH: usize = 64;
/// The longest frame that crosses workers: an Ethernet header, a VLAN tag and a 9,000-byte IP
/// packet (longer TCP frames are segmented before they cross).
pub const CROSS_JUMBO_LEN: usize = 14 + 4 + 9000;

/// A frame of up to `N` bytes on its way to the worker that owns its destination port.
#[derive(Clone)]
pub struct CrossFrame<const N: usize> {
    /// Destination port.
    pub port: PortId,
    len: u16,
    data: [u8; N],
}

impl<const N: usize> CrossFrame<N> {
    /// A copy of `bytes` for `port`, or `None` if the frame is longer than `N`.
    pub fn new(port: PortId, bytes: &[u8]) -> Option<Self> {
        let mut data = [0u8; N];
        data.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(CrossFrame {
            port,
            len: bytes.len() as u16,
            data,
        })
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// The queues from one worker to another.
pub struct CrossLink {
    frames: ArrayQueue<CrossFrame<BUFFER_LEN>>,
    jumbo: ArrayQueue<CrossFrame<CROSS_JUMBO_LEN>>,
}

impl CrossLink {
    fn new() -> Self {
        CrossLink {
            frames: ArrayQueue::new(CROSS_QUEUE_DEPTH),
            jumbo: ArrayQueue::new(CROSS_JUMBO_DEPTH),
        }
    }

    /// Queues a copy of `bytes` for port `port`: `too_big` past [`CROSS_JUMBO_LEN`],
    /// `cross_queue_full` if its queue is full.
    pub fn push(&self, port: PortId, bytes: &[u8]) -> Result<(), DropReason> {
        let queued = if bytes.len() <= BUFFER_LEN {
            CrossFrame::new(port, bytes).map(|f| self.frames.push(f).is_ok())
        } else {
            CrossFrame::new(port, bytes).map(|f| self.jumbo.push(f).is_ok())
        };
        match queued {
            Some(true) => Ok(()),
            Some(false) => Err(DropReason::CrossQueueFull),
            None => Err(DropReason::TooBig),
        }
    }

    /// Takes the next queued frame, if any, and hands its port and bytes to `take`.
    pub fn pop(&self, take: impl FnOnce(PortId, &[u8])) -> bool {
        if let Some(f) = self.frames.pop() {
            take(f.port, f.bytes());
        } else if let Some(f) = self.jumbo.pop() {
            take(f.port, f.bytes());
        } else {
            return false;
        }
        true
    }
}

/// A queue from one worker to another.
pub type CrossQueue = Arc<CrossLink>;

/// Builds the queues for `n` workers: `queues[from][to]`, `None` on the diagonal.
pub fn mesh(n: usize) -> Vec<Vec<Option<CrossQueue>>> {
    (0..n)
        .map(|from| {
            (0..n)
                .map(|to| (from != to).then(|| Arc::new(CrossLink::new())))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_jumbo_frames_cross_in_their_own_queues() {
        let link = CrossLink::new();
        link.push(3, &[1; 60]).unwrap_or_else(|e| panic!("{e:?}"));
        link.push(4, &[2; 9014]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(link.push(5, &[0; 9100]), Err(DropReason::TooBig));
        let mut got = vec![];
        while link.pop(|port, bytes| got.push((port, bytes.len(), bytes[0]))) {}
        assert_eq!(got, [(3, 60, 1), (4, 9014, 2)]);
        for _ in 0..CROSS_JUMBO_DEPTH {
            link.push(4, &[2; 2000]).unwrap_or_else(|e| panic!("{e:?}"));
        }
        assert_eq!(link.push(4, &[2; 2000]), Err(DropReason::CrossQueueFull));
    }
}
