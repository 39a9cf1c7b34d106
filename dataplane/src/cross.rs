//! Cross-worker forwarding: bounded queues between workers.
//!
//! A frame received by one worker for a port owned by another cannot move by handle (each
//! worker has its own frame pool), so its bytes are copied into a [`CrossFrame`] and pushed to
//! the owner's inbound queue from this worker. Each queue has one producer and one consumer.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::port::BUFFER_LEN;
use crate::snapshot::PortId;

/// Frames each cross-worker queue holds.
pub const CROSS_QUEUE_DEPTH: usize = 1024;

/// A frame on its way to the worker that owns its destination port.
#[derive(Clone)]
pub struct CrossFrame {
    /// Destination port.
    pub port: PortId,
    len: u16,
    data: [u8; BUFFER_LEN],
}

impl CrossFrame {
    /// A copy of `bytes` for `port`, or `None` if the frame is longer than one pool buffer
    /// (jumbo frames do not cross workers: `too_big`).
    pub fn new(port: PortId, bytes: &[u8]) -> Option<Self> {
        let mut data = [0u8; BUFFER_LEN];
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

/// A queue from one worker to another.
pub type CrossQueue = Arc<ArrayQueue<CrossFrame>>;

/// Builds the queues for `n` workers: `queues[from][to]`, `None` on the diagonal.
pub fn mesh(n: usize) -> Vec<Vec<Option<CrossQueue>>> {
    (0..n)
        .map(|from| {
            (0..n)
                .map(|to| (from != to).then(|| Arc::new(ArrayQueue::new(CROSS_QUEUE_DEPTH))))
                .collect()
        })
        .collect()
}
