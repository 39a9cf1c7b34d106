//! A versioned slot: `N` words of data that threads read without a lock and write one at a time,
//! the storage of one connection entry (the seqlock of Linux, over a slab that is never freed
//! while the table lives, as in VPP's bihash and Open vSwitch's cmap).
//!
//! The protocol, on the slot's `version` (even: quiet; odd: one thread is writing):
//! - **Claim** (every writer, and an established packet, which reads and then writes): wait
//!   for an even version `v`, swap it for `v + 1` with a compare-and-swap (Acquire, so the
//!   claimer sees everything the last writer wrote), then a Release fence, so that no reader
//!   sees a word it writes without also seeing the odd version. The claimer reads and writes the
//!   words as it likes: no one else writes them meanwhile. Dropping the [`Claim`] stores
//!   `v + 2` (Release), whether or not anything changed.
//! - **Look** (a reader that only reads): load the version (Acquire); if odd, wait; load the
//!   words (Relaxed), an Acquire fence, and load the version again. If it is the same, no
//!   writer touched the slot meanwhile and the copy is whole; otherwise look again.
//!
//! The words are atomics loaded and stored Relaxed, so a reader racing a writer reads stale or
//! mixed words (which it then throws away), never undefined memory. The version is 64 bits:
//! it never wraps, so a version seen twice means nothing happened between. A claim holds the
//! slot for a few dozen instructions; a thread that finds it held spins, then yields.
//!
//! The protocol is checked by a `loom` model (`tests/loom.rs`, run by `scripts/test`): a
//! reader never accepts a torn copy, and a claimer that checks the key it looked up never
//! updates an entry that was removed or reused meanwhile.

#[cfg(loom)]
use loom::{
    sync::atomic::{fence, AtomicU64, Ordering},
    thread::yield_now,
};
#[cfg(not(loom))]
use std::{
    sync::atomic::{fence, AtomicU64, Ordering},
    thread::yield_now,
};

/// One slot: `N` words of data and a version.
#[derive(Debug)]
pub struct Slot<const N: usize> {
    words: [AtomicU64; N],
    version: AtomicU64,
}

/// Spins a few rounds, then yields, while another thread holds a slot (`round` counts from 0).
#[inline]
fn wait(round: u32) {
    if cfg!(loom) || round >= 64 {
        yield_now();
    } else {
        std::hint::spin_loop();
    }
}

impl<const N: usize> Slot<N> {
    /// A slot of zeros, at version 0.
    pub fn new() -> Self {
        Slot {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            version: AtomicU64::new(0),
        }
    }

    /// `n` slots of zeros. The memory comes zeroed from the allocator, so a large table costs
    /// only the pages its connections touch (the kernel maps the rest on first use).
    #[cfg(not(loom))]
    pub fn zeroed(n: usize) -> Box<[Self]> {
        let slots = Box::<[Self]>::new_zeroed_slice(n);
        // SAFETY: a `Slot` is `N + 1` `AtomicU64`s, and an `AtomicU64` has the same in-memory
        // representation as a `u64`, for which all-zero bytes are a valid value (0): so zeroed
        // memory is `n` valid slots of zeros at version 0, exactly what `Slot::new` builds.
        #[allow(unsafe_code)]
        unsafe {
            slots.assume_init()
        }
    }

    /// `n` slots of zeros (loom's atomics are no plain integers, so each is built).
    #[cfg(loom)]
    pub fn zeroed(n: usize) -> Box<[Self]> {
        (0..n).map(|_| Slot::new()).collect()
    }

    /// A whole copy of the words, as some writer left them.
    pub fn look(&self) -> [u64; N] {
        let mut round = 0;
        loop {
            let v = self.version.load(Ordering::Acquire);
            if v & 1 == 0 {
                let words = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
                fence(Ordering::Acquire);
                if self.version.load(Ordering::Relaxed) == v {
                    return words;
                }
            }
            wait(round);
            round += 1;
        }
    }

    /// Word `i` as last stored, without a copy of the others: for a word that no one can be
    /// writing (its writers hold a lock the caller holds too).
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    /// Waits until no one else holds the slot, then holds it until the claim is dropped.
    #[inline]
    pub fn claim(&self) -> Claim<'_, N> {
        let mut round = 0;
        loop {
            let v = self.version.load(Ordering::Relaxed);
            if v & 1 == 0
                && self
                    .version
                    .compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                fence(Ordering::Release);
                return Claim {
                    slot: self,
                    version: v,
                };
            }
            wait(round);
            round += 1;
        }
    }
}

impl<const N: usize> Default for Slot<N> {
    fn default() -> Self {
        Slot::new()
    }
}

/// A slot held by one thread, with a way to read and change its words one at a time or all
/// at once. The slot is released (at a new version) when the claim is dropped.
#[derive(Debug)]
pub struct Claim<'a, const N: usize> {
    slot: &'a Slot<N>,
    /// The even version the slot had when claimed.
    version: u64,
}

impl<const N: usize> Claim<'_, N> {
    /// Word `i`, as this claim (or the last writer) left it.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.slot.word(i)
    }

    /// Makes word `i` `value`.
    #[inline]
    pub fn set(&mut self, i: usize, value: u64) {
        self.slot.words[i].store(value, Ordering::Relaxed);
    }

    /// A copy of all the words.
    #[inline]
    pub fn words(&self) -> [u64; N] {
        std::array::from_fn(|i| self.word(i))
    }

    /// Makes the slot's words `words`, storing only those that differ.
    #[inline]
    pub fn store(&mut self, words: &[u64; N]) {
        for (slot, &new) in self.slot.words.iter().zip(words) {
            if slot.load(Ordering::Relaxed) != new {
                slot.store(new, Ordering::Relaxed);
            }
        }
    }
}

impl<const N: usize> Drop for Claim<'_, N> {
    fn drop(&mut self) {
        self.slot.version.store(self.version + 2, Ordering::Release);
    }
}
