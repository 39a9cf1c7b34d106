//! The firewall's hook into the table: who may open a connection, and who may keep one.
//!
//! A [`Gate`] is consulted under the shard's lock, so a connection it refuses is never inserted,
//! and a connection admitted under an older rule generation is rechecked before its next packet
//! is accepted. The table knows nothing about rules; it only stores what the gate returns.

use crate::table::Packet;
use crate::Tuple;

/// How a connection was admitted, as recorded in its entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Admission {
    /// The rules that admitted it on the opener's side (egress) and the receiver's side
    /// (ingress); 0 where no rule was needed.
    pub rules: [u32; 2],
    /// Rule generation it was admitted, or last rechecked, under.
    pub generation: u32,
    /// The opener's port and the receiver's port, numbered by the caller.
    pub ports: [u16; 2],
}

/// Decides whether connections may be opened and whether admitted ones may continue.
pub trait Gate {
    /// The current rule generation; entries admitted under another one are rechecked.
    fn generation(&self) -> u32;
    /// Whether the connection whose first packet is `pkt` may be created, and how.
    fn admit(&mut self, pkt: &Packet) -> Option<Admission>;
    /// Whether the connection that opened with `original` and was admitted as `was` may
    /// continue under the current rules, and how.
    fn recheck(&mut self, original: &Tuple, was: &Admission) -> Option<Admission>;
}

/// The gate of plain connection tracking: admits everything, under generation 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Gate for Open {
    fn generation(&self) -> u32 {
        0
    }
    fn admit(&mut self, _: &Packet) -> Option<Admission> {
        Some(Admission::default())
    }
    fn recheck(&mut self, _: &Tuple, was: &Admission) -> Option<Admission> {
        Some(Admission {
            generation: 0,
            ..*was
        })
    }
}

/// What one [`crate::Table::recheck`] sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recheck {
    /// Connections the current rules still allow.
    pub kept: u64,
    /// Connections removed because no rule allows them any more.
    pub cut: u64,
}
