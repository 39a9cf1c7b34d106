//! The fuzz target's contract on every test run: its seed corpus, and random lines (bytes, and
//! requests with random params), so the contract and the seeds stay true between fuzzing
//! sessions (`scripts/fuzz`).

#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/check.rs"]
mod check;

#[test]
fn every_seed_keeps_the_decoder_contract() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/api_decoder");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        check::decoder_contract(&std::fs::read(entry.unwrap().path()).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 10, "{seeds} seeds");
}

proptest::proptest! {
    #[test]
    fn random_bytes_keep_the_decoder_contract(line in proptest::collection::vec(0u8..=255, 0..512)) {
        check::decoder_contract(&line);
    }

    #[test]
    fn random_params_keep_the_decoder_contract(
        method in proptest::sample::select(brink_api::call::Call::METHODS),
        params in "[{}\\[\\]\",:a-z0-9_. -]{0,80}",
    ) {
        let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        check::decoder_contract(line.as_bytes());
    }
}
