//! A build-time check, nothing at run time: its build script fails with the Debian package to
//! install when a system library or tool that libxdp (built from source by `libxdp-sys`, under
//! `xsk-rs`) needs is missing, so that a fresh machine's first `cargo build` says what to do
//! instead of failing deep inside libxdp's `configure`. `scripts/deps` installs them all.
//!
//! It has no dependencies, so cargo runs its build script at once, alongside `libxdp-sys`'s.
#![forbid(unsafe_code)]
