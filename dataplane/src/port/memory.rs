//! In-memory ports for deterministic tests and benchmarks.
//!
//! A [`MemPort::Link`] is a pair of bounded queues that a test thread pushes frames into and
//! reads frames out of, each with how its checksum stands (a link may stand for a vhost-user
//! guest with checksum offload both ways). A [`MemPort::Replay`] yields the same prepared frames
//! forever without copying them and discards whatever is sent to it: a traffic source and sink
//! for benchmarks.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::jumbo::{JumboPool, JUMBO_LEN};
use super::offload::Checksum;
use super::{Backend, PortError, PortMode, BUFFER_LEN};
use crate::snapshot::{PortId, MAX_PORTS};

/// The test side of an in-memory port.
#[derive(Debug)]
pub struct MemLink {
    to_switch: ArrayQueue<(Vec<u8>, Checksum)>,
    from_switch: ArrayQueue<(Vec<u8>, Checksum)>,
    /// The port takes frames whose checksum is partial, as a guest with `GUEST_CSUM` does.
    takes_partial: bool,
}

impl MemLink {
    /// A link whose queues hold up to `depth` frames each way.
    pub fn new(depth: usize) -> Arc<Self> {
        Self::with_offload(depth, false)
    }

    /// A link that takes partial checksums (`takes_partial`) or not.
    pub fn with_offload(depth: usize, takes_partial: bool) -> Arc<Self> {
        Arc::new(MemLink {
            to_switch: ArrayQueue::new(depth.max(1)),
            from_switch: ArrayQueue::new(depth.max(1)),
            takes_partial,
        })
    }

    /// Offers a frame to the switch; returns it back if the queue is full.
    pub fn send(&self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.send_with(frame, Checksum::AsIs)
    }

    /// Offers a frame whose checksum stands as `checksum` (a guest's offload) to the switch.
    pub fn send_with(&self, frame: Vec<u8>, checksum: Checksum) -> Result<(), Vec<u8>> {
        self.to_switch
            .push((frame, checksum))
            .map_err(|(frame, _)| frame)
    }

    /// Takes the next frame the switch transmitted on this port.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.recv_with().map(|(frame, _)| frame)
    }

    /// Takes the next frame the switch transmitted on this port, with how its checksum stands.
    pub fn recv_with(&self) -> Option<(Vec<u8>, Checksum)> {
        self.from_switch.pop()
    }
}

/// How an in-memory port behaves.
#[derive(Debug)]
pub enum MemPort {
    /// Frames come from and go to a [`MemLink`].
    Link(Arc<MemLink>),
    /// These frames are received in a loop, and transmitted frames are discarded.
    Replay(Vec<Vec<u8>>),
}

#[derive(Debug)]
enum Open {
    Link(Arc<MemLink>),
    /// The replayed frames (pinned in the pool) and the next one to hand out.
    Replay {
        frames: Vec<MemFrame>,
        next: usize,
    },
}

/// A frame in the in-memory pool, or in one of its jumbo buffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemFrame {
    index: u32,
    len: u32,
    jumbo: bool,
    checksum: Checksum,
}

/// A frame pool in plain memory plus the in-memory ports of one worker.
#[derive(Debug)]
pub struct MemBackend {
    pool: Vec<u8>,
    free: Vec<u32>,
    /// Pool frames owned by replay ports, never returned to `free`.
    pinned: Vec<bool>,
    ports: Vec<Option<Open>>,
    jumbo: JumboPool,
}

const CHUNK: usize = BUFFER_LEN;
/// Jumbo buffers of an in-memory backend.
const JUMBO_SLOTS: u16 = 64;

impl MemBackend {
    /// A backend with `frames` buffers.
    pub fn new(frames: u32) -> Self {
        MemBackend {
            pool: vec![0; frames as usize * CHUNK],
            free: (0..frames).rev().collect(),
            pinned: vec![false; frames as usize],
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            jumbo: JumboPool::new(JUMBO_SLOTS),
        }
    }

    /// Number of frames in the free pool.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    fn write(&mut self, bytes: &[u8]) -> Option<MemFrame> {
        let len = bytes.len() as u32;
        if bytes.len() > CHUNK {
            let slot = self.jumbo.copy_of(bytes)?;
            return Some(MemFrame {
                index: u32::from(slot),
                len,
                jumbo: true,
                checksum: Checksum::AsIs,
            });
        }
        let index = self.free.pop()?;
        let start = index as usize * CHUNK;
        self.pool[start..start + bytes.len()].copy_from_slice(bytes);
        Some(MemFrame {
            index,
            len,
            jumbo: false,
            checksum: Checksum::AsIs,
        })
    }

    /// The jumbo buffer of `frame`, if it is in one.
    fn jumbo_slot(frame: &MemFrame) -> Option<u16> {
        frame.jumbo.then_some(frame.index as u16)
    }
}

impl Backend for MemBackend {
    type Frame = MemFrame;
    type Spec = MemPort;

    fn open(&mut self, id: PortId, spec: MemPort) -> Result<PortMode, PortError> {
        if self.ports.get(usize::from(id)).is_none_or(Option::is_some) {
            return Err(PortError::BadId(id));
        }
        let open = match spec {
            MemPort::Link(link) => Open::Link(link),
            MemPort::Replay(frames) => {
                let mut pinned = Vec::with_capacity(frames.len());
                for bytes in &frames {
                    let f = self
                        .write(bytes)
                        .filter(|f| !f.jumbo)
                        .ok_or_else(|| PortError::Pool("replay frames do not fit".into()))?;
                    self.pinned[f.index as usize] = true;
                    pinned.push(f);
                }
                Open::Replay {
                    frames: pinned,
                    next: 0,
                }
            }
        };
        self.ports[usize::from(id)] = Some(open);
        Ok(PortMode::Memory)
    }

    fn close(&mut self, id: PortId) {
        if let Some(Some(Open::Replay { frames, .. })) = self.ports.get(usize::from(id)) {
            for f in frames {
                self.pinned[f.index as usize] = false;
                self.free.push(f.index);
            }
        }
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = None;
        }
    }

    fn rx(&mut self, id: PortId, out: &mut [MemFrame]) -> usize {
        match self.ports.get_mut(usize::from(id)) {
            Some(Some(Open::Replay { frames, next })) if !frames.is_empty() => {
                for slot in out.iter_mut() {
                    *slot = frames[*next];
                    *next += 1;
                    if *next == frames.len() {
                        *next = 0;
                    }
                }
                out.len()
            }
            Some(Some(Open::Link(link))) => {
                let link = Arc::clone(link);
                let mut n = 0;
                while n < out.len() && !self.free.is_empty() {
                    let Some((bytes, checksum)) = link.to_switch.pop() else {
                        break;
                    };
                    // A frame too long for a buffer is lost here, as a NIC would drop it, and
                    // so is one with a partial checksum outside it, as the vhost-user rings
                    // refuse it.
                    if checksum.partial().is_some_and(|p| !p.fits(bytes.len())) {
                        continue;
                    }
                    if let Some(f) = self.write(&bytes) {
                        out[n] = MemFrame { checksum, ..f };
                        n += 1;
                    }
                }
                n
            }
            _ => 0,
        }
    }

    fn bytes(&self, frame: &MemFrame) -> &[u8] {
        if let Some(slot) = Self::jumbo_slot(frame) {
            return self.jumbo.get(slot, frame.len as usize);
        }
        let start = frame.index as usize * CHUNK;
        self.pool
            .get(start..start + frame.len as usize)
            .unwrap_or(&[])
    }

    fn patch(&mut self, frame: &mut MemFrame, at: usize, bytes: &[u8]) {
        if at + bytes.len() > frame.len as usize {
            return;
        }
        let dst = match Self::jumbo_slot(frame) {
            Some(slot) => self.jumbo.get_mut(slot).get_mut(at..at + bytes.len()),
            None => {
                let start = frame.index as usize * CHUNK;
                self.pool.get_mut(start + at..start + at + bytes.len())
            }
        };
        if let Some(dst) = dst {
            dst.copy_from_slice(bytes);
        }
    }

    fn reshape(&mut self, frame: &mut MemFrame, len: usize, edit: impl FnOnce(&mut [u8])) -> bool {
        let (buf, capacity) = match Self::jumbo_slot(frame) {
            Some(slot) => (self.jumbo.get_mut(slot), JUMBO_LEN),
            None => {
                let start = frame.index as usize * CHUNK;
                (
                    self.pool.get_mut(start..start + CHUNK).unwrap_or(&mut []),
                    CHUNK,
                )
            }
        };
        let Ok(new_len) = u32::try_from(len) else {
            return false;
        };
        if len > capacity {
            return false;
        }
        let seen = len.max(frame.len as usize);
        if let Some(bytes) = buf.get_mut(..seen) {
            edit(bytes);
        }
        frame.len = new_len;
        true
    }

    fn tx(&mut self, id: PortId, frames: &[MemFrame]) -> usize {
        let link = match self.ports.get(usize::from(id)) {
            Some(Some(Open::Link(link))) => Some(Arc::clone(link)),
            Some(Some(Open::Replay { .. })) => None,
            _ => return 0,
        };
        let mut taken = 0;
        for f in frames {
            if let Some(link) = &link {
                let sent = (self.bytes(f).to_vec(), f.checksum);
                if link.from_switch.push(sent).is_err() {
                    break;
                }
            }
            self.free(*f);
            taken += 1;
        }
        taken
    }

    fn free(&mut self, frame: MemFrame) {
        if let Some(slot) = Self::jumbo_slot(&frame) {
            self.jumbo.give(slot);
        } else if !self.pinned[frame.index as usize] {
            self.free.push(frame.index);
        }
    }

    fn alloc_copy(&mut self, bytes: &[u8]) -> Option<MemFrame> {
        self.write(bytes)
    }

    fn clone_frame(&mut self, frame: &MemFrame) -> Option<MemFrame> {
        if let Some(slot) = Self::jumbo_slot(frame) {
            let copy = self.jumbo.take()?;
            self.jumbo.copy_within(slot, copy, frame.len as usize);
            return Some(MemFrame {
                index: u32::from(copy),
                ..*frame
            });
        }
        let index = self.free.pop()?;
        let (src, dst) = (frame.index as usize * CHUNK, index as usize * CHUNK);
        let len = frame.len as usize;
        self.pool.copy_within(src..src + len, dst);
        Some(MemFrame { index, ..*frame })
    }

    #[inline]
    fn checksum(&self, frame: &MemFrame) -> Checksum {
        frame.checksum
    }

    fn set_checksum(&mut self, frame: &mut MemFrame, checksum: Checksum) {
        frame.checksum = checksum;
    }

    fn takes_partial(&self, id: PortId) -> bool {
        matches!(self.ports.get(usize::from(id)), Some(Some(Open::Link(link))) if link.takes_partial)
    }

    fn service(&mut self) -> usize {
        0
    }
}
