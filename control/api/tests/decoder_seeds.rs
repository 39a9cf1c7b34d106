//! The fuzz target's seed corpus, replayed through the same contract on every test run, so the
//! contract and the seeds stay true between fuzzing sessions (`scripts/fuzz`).

#![allow(clippy::unwrap_used)]

#[path = "../fuzz/check.rs"]
mod check;

#[test]
fn every_seed_keeps_the_decoder_contract() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/api_decoder");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        check::decoder_contract(&std::fs::read(entry.unwrap().path()).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 10, "{seeds} seeds");
}
