//! Zero-copy views of the bytes on the wire.
//!
//! Each view checks its length once in `new_checked`; its getters cannot panic afterwards.

pub mod ethernet;
pub mod ip;

pub use ethernet::{EtherType, EthernetFrame, MacAddr, WireError};
