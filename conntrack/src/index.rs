//! A shard's hash index: slab positions by key hash, in buckets of one cache line each.
//!
//! A key's hash picks its home bucket (low bits) and a 16-bit tag (bits 32 to 47, which the
//! shard choice does not use, see `table::shard_of`). A bucket holds [`WAYS`] tags and their
//! slab positions, so a lookup reads one line, compares tags, and loads only the entries whose
//! tag matches. A bucket that is full sends further keys on to the next bucket and counts them
//! (`overflow`, as in folly's F14): a lookup stops at the first bucket that sent nothing on,
//! and a removal takes its count back from every bucket the key had passed, so no tombstones
//! build up. Because the home bucket's address follows from the hash alone, a batch can
//! prefetch every key's bucket ([`Index::prefetch`]) before it looks any key up.
//!
//! Tags, counts and positions are atomics: one writer at a time (the shard's lock) changes
//! them, while packets look positions up without the lock. Such a lookup may see a bucket
//! half changed, so it may miss a key or find a position that holds another key by now; its
//! caller checks the key under the entry's claim ([`crate::slot`]) and takes the locked path
//! when it finds nothing.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering::Relaxed};

/// Keys one bucket holds.
pub const WAYS: usize = 10;
/// The tag of an empty way.
const EMPTY: u16 = 0;
/// Buckets are sized so that at most this share of ways is in use when the shard is full.
const MAX_LOAD: f64 = 0.8;

/// Ten ways in one cache line: 20 bytes of tags, 2 of overflow count, 40 of slab positions.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Bucket {
    tags: [AtomicU16; WAYS],
    /// Keys stored past this bucket whose probe passed through it.
    overflow: AtomicU16,
    slots: [AtomicU32; WAYS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// The 16-bit tag of a hash, never 0 (which marks an empty way).
#[inline]
pub fn tag(hash: u64) -> u16 {
    ((hash >> 32) as u16).max(1)
}

/// A fixed-size index of up to `capacity` slab positions.
#[derive(Debug)]
pub struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
}

impl Index {
    /// An empty index with room for `capacity` keys; it never grows.
    pub fn with_capacity(capacity: usize) -> Self {
        let want = (capacity as f64 / (WAYS as f64 * MAX_LOAD)).ceil() as usize;
        let n = want.max(1).next_power_of_two();
        Index {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Asks the CPU to start loading the home bucket of `hash`, so that a lookup a little later
    /// finds it in cache. Changes nothing.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let line: *const Bucket = &self.buckets[self.home(hash)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of x86_64, so the instruction exists; a prefetch reads nothing
            // into the program and cannot fault, whatever the address (it is a live bucket's).
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(line.cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }

    /// The buckets a probe for `hash` visits, in order: its home bucket, then each next one,
    /// once round the index at most.
    #[inline]
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> {
        let (home, mask) = (self.home(hash), self.mask);
        (0..self.buckets.len()).map(move |i| (home + i) & mask)
    }

    /// The position stored for `hash` that `is` accepts (the caller compares the keys).
    #[inline]
    pub fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag(hash);
        for at in self.probe(hash) {
            let b = &self.buckets[at];
            for w in 0..WAYS {
                if b.tags[w].load(Relaxed) == tag {
                    let pos = b.slots[w].load(Relaxed);
                    if is(pos) {
                        return Some(pos);
                    }
                }
            }
            if b.overflow.load(Relaxed) == 0 {
                return None;
            }
        }
        None
    }

    /// Stores `pos` for `hash`. Returns false only if every way is taken, which a shard that
    /// holds no more than the index's capacity never sees. Writers take turns (the caller
    /// holds the shard's lock).
    pub fn insert(&self, hash: u64, pos: u32) -> bool {
        let tag = tag(hash);
        for (step, at) in self.probe(hash).enumerate() {
            let b = &self.buckets[at];
            if let Some(w) = b.tags.iter().position(|t| t.load(Relaxed) == EMPTY) {
                // A lookup racing this may see the tag with an older position: it then finds
                // another key, or a dead entry, under the entry's claim.
                b.slots[w].store(pos, Relaxed);
                b.tags[w].store(tag, Relaxed);
                self.count_passed(hash, step, true);
                return true;
            }
        }
        false
    }

    /// Removes `pos`, stored for `hash`. Returns whether it was there. Writers take turns.
    pub fn remove(&self, hash: u64, pos: u32) -> bool {
        let tag = tag(hash);
        for (step, at) in self.probe(hash).enumerate() {
            let b = &self.buckets[at];
            let stored =
                |w: &usize| b.tags[*w].load(Relaxed) == tag && b.slots[*w].load(Relaxed) == pos;
            if let Some(w) = (0..WAYS).find(stored) {
                b.tags[w].store(EMPTY, Relaxed);
                self.count_passed(hash, step, false);
                return true;
            }
            if b.overflow.load(Relaxed) == 0 {
                return false;
            }
        }
        false
    }

    /// Adds one to (or takes one from) the overflow count of the first `steps` buckets of
    /// `hash`'s probe, which a key stored `steps` buckets on passed through.
    fn count_passed(&self, hash: u64, steps: usize, add: bool) {
        for at in self.probe(hash).take(steps) {
            let count = &self.buckets[at].overflow;
            let n = count.load(Relaxed);
            count.store(
                if add {
                    n.saturating_add(1)
                } else {
                    n.saturating_sub(1)
                },
                Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A hash whose home bucket is `bucket` and whose tag is `tag`.
    fn h(bucket: u64, tag: u16) -> u64 {
        (u64::from(tag) << 32) | bucket
    }

    #[test]
    fn a_full_bucket_overflows_into_the_next_and_takes_its_count_back() {
        let ix = Index::with_capacity(4 * WAYS);
        // WAYS + 3 keys with the same home bucket and tag: the last three go to bucket 1.
        for pos in 0..WAYS as u32 + 3 {
            assert!(ix.insert(h(0, 7), pos));
        }
        assert_eq!(ix.buckets[0].overflow.load(Relaxed), 3);
        for pos in 0..WAYS as u32 + 3 {
            assert_eq!(ix.find(h(0, 7), |p| p == pos), Some(pos));
        }
        assert_eq!(ix.find(h(0, 7), |p| p == 99), None);
        assert!(ix.remove(h(0, 7), WAYS as u32 + 1), "one of the overflowed");
        assert_eq!(ix.buckets[0].overflow.load(Relaxed), 2);
        assert!(!ix.remove(h(0, 7), WAYS as u32 + 1), "already gone");
        assert_eq!(
            ix.find(h(0, 7), |p| p == WAYS as u32 + 2),
            Some(WAYS as u32 + 2)
        );
        // A key at home in bucket 1 is found there without its bucket overflowing.
        assert!(ix.insert(h(1, 9), 50));
        assert_eq!(ix.find(h(1, 9), |p| p == 50), Some(50));
        assert_eq!(ix.buckets[1].overflow.load(Relaxed), 0);
    }

    proptest::proptest! {
        /// Under any sequence of inserts and removes the index finds exactly what a map holds.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((0u64..64, 0u32..200, proptest::prelude::any::<bool>()), 0..400)) {
            let ix = Index::with_capacity(200);
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (hash_seed, pos, insert) in ops {
                // Few distinct hashes, many collisions: tags and buckets repeat.
                let hash = h(hash_seed % 8, (hash_seed % 5) as u16 + 1);
                match (insert, model.get(&pos).copied()) {
                    (true, None) => {
                        proptest::prop_assert!(ix.insert(hash, pos));
                        model.insert(pos, hash);
                    }
                    (false, Some(was)) => {
                        proptest::prop_assert!(ix.remove(was, pos));
                        model.remove(&pos);
                    }
                    _ => {}
                }
            }
            for pos in 0..200 {
                let found = model.get(&pos).map(|&hash| ix.find(hash, |p| p == pos));
                proptest::prop_assert_eq!(found.unwrap_or(None), model.get(&pos).map(|_| pos));
            }
            // Emptied, the index has taken back every overflow count it gave.
            for (&pos, &hash) in &model {
                proptest::prop_assert!(ix.remove(hash, pos));
            }
            let empty = |b: &Bucket| {
                b.overflow.load(Relaxed) == 0 && b.tags.iter().all(|t| t.load(Relaxed) == EMPTY)
            };
            proptest::prop_assert!(ix.buckets.iter().all(empty));
        }
    }
}
