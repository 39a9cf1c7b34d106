//! The firewall's hook into the table: who may open a connection, and who may keep one.
//!
//! A [`Gate`] is consulted under the shard's lock, so a connection it refuses is never inserted,
//! a connection admitted under an older rule generation is rechecked before its next packet
//! is accepted, and every later packet is shown to the gate with the connection's admission, so
//! that a packet bound for a port that never admitted the connection is judged there. The table
//! knows nothing about rules; it only stores what the gate returns.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::key::{ConnKey, Side, Tuple};
use crate::packet::Packet;
use crate::state::Dir;

/// How a connection was admitted, as recorded in its entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Admission {
    /// The rules that admitted it on the opener's side (egress) and the receiver's side
    /// (ingress); 0 where no rule was needed.
    pub rules: [u32; 2],
    /// Rule generation it was admitted, or last rechecked, under.
    pub generation: u32,
    /// The opener's port and the receiver's port, numbered by the caller (who may leave the
    /// receiver open, and fill it in later through [`Gate::pass`]).
    pub ports: [u16; 2],
}

impl Admission {
    /// The port a packet travelling in `dir` is bound for: the receiver for the original
    /// direction, the opener for replies.
    pub fn bound_for(&self, dir: Dir) -> u16 {
        match dir {
            Dir::Original => self.ports[1],
            Dir::Reply => self.ports[0],
        }
    }
}

/// A live connection as [`Gate::pass`] sees it: its original tuple is built only if asked for,
/// so the per-packet call costs nothing when the gate does not need it.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    key: &'a ConnKey,
    opener: Side,
}

impl<'a> Connection<'a> {
    /// The connection with key `key` opened from its `opener` end.
    pub fn new(key: &'a ConnKey, opener: Side) -> Self {
        Connection { key, opener }
    }

    /// The tuple of the packet that opened it.
    pub fn original(&self) -> Tuple {
        self.key.tuple_from(self.opener)
    }
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
    /// Whether a packet travelling in `dir` of the live connection `conn`, admitted as
    /// `admission`, may go on. Called for every packet of a tracked connection. The gate may
    /// complete the admission (record a receiver that now admits the connection).
    fn pass(&mut self, conn: &Connection<'_>, dir: Dir, admission: &mut Admission) -> bool;
    /// Whether the gate takes connection [`Event`]s (none are built otherwise).
    fn wants_events(&self) -> bool {
        false
    }
    /// Takes an event of a connection this gate's packet created or changed.
    fn event(&mut self, _event: &Event) {}
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
    fn pass(&mut self, _: &Connection<'_>, _: Dir, _: &mut Admission) -> bool {
        true
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
