//! A `loom` model of the slot protocol that lets established packets skip the shard lock
//! (`brink_conntrack::slot`): every interleaving, and every value the memory model lets a load
//! return, of a few threads playing the table's roles on one slot.
//!
//! Built and run only with `--cfg loom`, as `scripts/test` does:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p brink-conntrack --test loom`
//!
//! loom 0.7 may leave a spawned thread unexplored when its first operation is a load
//! (tokio-rs/loom#392), and a model explored one way only passes anything. So each model
//! counts its executions ([`explore`]), and readers run in the spawned threads: with the
//! roles the other way round, loom tried one execution, and a `look` without its version
//! check passed.

#![cfg(loom)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use brink_conntrack::slot::Slot;
use loom::sync::Arc;
use loom::thread;
// The count of executions is kept outside the model, with std's atomics.
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The model's entry: its key, whether it is live, and a packet counter.
const KEY: usize = 0;
const LIVE: usize = 1;
const COUNT: usize = 2;

/// Runs `model` under loom, and checks that loom tried it more than one way (a loom that
/// explored one interleaving only would pass anything).
fn explore(model: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    loom::model(move || {
        counted.fetch_add(1, Relaxed);
        model();
    });
    let runs = runs.load(Relaxed);
    assert!(runs > 10, "loom explored {runs} executions only");
}

/// A slot holding a live entry with key `key` and `count` packets.
fn entry(key: u64, count: u64) -> Arc<Slot<3>> {
    let slot = Arc::new(Slot::new());
    slot.claim().store(&[key, 1, count]);
    slot
}

/// A packet of connection `key` on the lock-free path: it claims the slot, and counts itself
/// only if the slot still holds that live connection. Returns whether it counted.
fn established_packet(slot: &Slot<3>, key: u64) -> bool {
    let mut claim = slot.claim();
    let mut w = claim.words();
    if w[KEY] != key || w[LIVE] != 1 {
        return false;
    }
    w[COUNT] += 1;
    claim.store(&w);
    true
}

/// A reader that looks without claiming never gets a torn copy: a writer changes every word of
/// the slot each time it claims it, and each copy a reader takes is of one of those writes.
#[test]
fn a_look_never_returns_a_torn_copy() {
    explore(|| {
        let slot = Arc::new(Slot::<3>::new());
        let reader = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.look())
        };
        for n in 1..=2 {
            slot.claim().store(&[n, n, n]);
        }
        let seen = reader.join().unwrap();
        assert!(
            seen == [0; 3] || seen == [1; 3] || seen == [2; 3],
            "{seen:?}"
        );
        assert_eq!(slot.look(), [2; 3]);
    });
}

/// An established packet racing a writer that removes its entry and reuses the slot for
/// another connection (expiry, flush or recheck, then an insert): the packet is counted in its
/// own entry before the removal, or not at all, and never in the entry that took its slot.
#[test]
fn a_packet_never_updates_a_removed_or_reused_entry() {
    explore(|| {
        let slot = entry(1, 0);
        let packet = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || established_packet(&slot, 1))
        };
        // The writer removes key 1, noting the packets it had, then puts key 2 in its place.
        let had = {
            let mut claim = slot.claim();
            let mut w = claim.words();
            w[LIVE] = 0;
            claim.store(&w);
            w[COUNT]
        };
        slot.claim().store(&[2, 1, 0]);
        let counted = packet.join().unwrap();
        assert_eq!(
            had,
            u64::from(counted),
            "counted exactly when it came first"
        );
        assert_eq!(slot.look(), [2, 1, 0], "the new entry is untouched");
    });
}

/// Two packets of one connection on two workers (its two directions) and a reader that looks
/// meanwhile: no update is lost, and the reader sees 0, 1 or 2 packets, never anything else.
#[test]
fn concurrent_packets_of_one_entry_lose_no_update() {
    explore(|| {
        let slot = entry(7, 0);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let slot = Arc::clone(&slot);
                thread::spawn(move || assert!(established_packet(&slot, 7)))
            })
            .collect();
        let seen = slot.look();
        assert!(
            seen[KEY] == 7 && seen[LIVE] == 1 && seen[COUNT] <= 2,
            "{seen:?}"
        );
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(slot.look()[COUNT], 2);
    });
}
