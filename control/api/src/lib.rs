//! brink's control API: the wire protocol between `brinkctl` (or any client) and `brinkd`.
//!
//! Newline-delimited JSON-RPC 2.0 over a Unix stream socket: one request object per line, one
//! response object per line, in order. This crate holds the API as one typed enum
//! ([`call::Call`]), the params and result types, the envelopes and a small blocking
//! [`client::Client`]; it deliberately knows nothing of the
//! dataplane, so `brinkctl` links only this.
//!
//! Thread-safety: plain data types; a `Client` is one connection, used by one thread at a time.

pub mod call;
pub mod cli;
pub mod client;
pub mod protocol;
pub mod types;

/// Where `brinkd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/brink/brink.sock";
