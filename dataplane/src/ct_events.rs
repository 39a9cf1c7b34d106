//! Connection events for the control thread (`brinkctl ct events`): what conntrack reports
//! while a reader is subscribed, in one bounded queue the workers share.
//!
//! Off (the default), it costs a worker one relaxed atomic load per batch and per expiry slice,
//! and the table builds no event. On, an event is a `Copy` value pushed into a fixed-size
//! lock-free queue: no allocation and no system call; when the queue is full, events are counted
//! as lost instead of waiting for the reader.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use brink_conntrack::Event;
use crossbeam_queue::ArrayQueue;

/// Events the queue holds until the reader takes them.
pub const EVENT_DEPTH: usize = 16_384;

/// The event queue workers share with the control thread.
pub struct CtEvents {
    on: AtomicBool,
    queue: ArrayQueue<Event>,
    lost: AtomicU64,
}

impl Default for CtEvents {
    fn default() -> Self {
        CtEvents {
            on: AtomicBool::new(false),
            queue: ArrayQueue::new(EVENT_DEPTH),
            lost: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for CtEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtEvents")
            .field("on", &self.on.load(Ordering::Relaxed))
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl CtEvents {
    /// Starts or stops collecting. Stopping drops what the reader has not taken.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            while self.queue.pop().is_some() {}
        }
    }

    /// The queue, if a reader is subscribed: what a worker loads once per batch.
    #[inline]
    pub fn active(&self) -> Option<&CtEvents> {
        self.on.load(Ordering::Relaxed).then_some(self)
    }

    /// Queues `event`, or counts it lost if the queue is full.
    #[inline]
    pub fn push(&self, event: &Event) {
        if self.queue.push(*event).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes up to `max` queued events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Event> {
        std::iter::from_fn(|| self.queue.pop()).take(max).collect()
    }

    /// Events lost to a full queue since the switch started.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_conntrack::{EventKind, Tuple};

    fn event(port: u16) -> Event {
        Event {
            kind: EventKind::New,
            original: Tuple {
                sport: port,
                ..Tuple::default()
            },
            tcp_state: None,
            at: 0,
        }
    }

    #[test]
    fn off_nothing_is_active_and_a_full_queue_counts_what_it_loses() {
        let ev = CtEvents::default();
        assert!(ev.active().is_none());
        ev.set(true);
        let on = ev.active().unwrap();
        for p in 0..EVENT_DEPTH as u16 + 3 {
            on.push(&event(p));
        }
        assert_eq!(ev.lost(), 3);
        let first = ev.take(2);
        assert_eq!(first, [event(0), event(1)], "oldest first");
        ev.set(false);
        assert!(ev.take(10).is_empty(), "stopping drops the rest");
    }
}
