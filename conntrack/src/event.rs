//! Connection events: a connection created, established, closed or expired, as the table
//! reports them to a [`crate::Gate`] that asks for them (and to the caller of
//! [`crate::Table::expire_with`]). Plain `Copy` data, so a reporter can queue them without
//! allocating.

use crate::key::Tuple;
use crate::tcp::TcpState;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created by its first packet.
    New,
    /// A reply was seen (TCP: the handshake completed).
    Established,
    /// TCP: closed by FINs or a reset (it stays in the table until it times out).
    Closed,
    /// Removed because it timed out.
    Expired,
}

impl EventKind {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Established => "established",
            EventKind::Closed => "closed",
            EventKind::Expired => "expired",
        }
    }
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The connection's original tuple.
    pub original: Tuple,
    /// Its TCP state after the event, if TCP.
    pub tcp_state: Option<TcpState>,
    /// When (the table's clock).
    pub at: u64,
}
