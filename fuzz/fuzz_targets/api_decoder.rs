//! Fuzzes the control API decoder with arbitrary request lines.

#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|line: &[u8]| check::decoder_contract(line));
