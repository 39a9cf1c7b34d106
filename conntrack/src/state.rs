//! What conntrack says about a packet: `ct_state` bits as Open vSwitch users know them.

use std::fmt;

/// A set of `ct_state` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CtState(pub u8);

impl CtState {
    /// The first packet(s) of a connection: no reply seen yet.
    pub const NEW: CtState = CtState(0x01);
    /// A connection that has seen packets both ways.
    pub const ESTABLISHED: CtState = CtState(0x02);
    /// Related to a tracked connection (an ICMP error about it).
    pub const RELATED: CtState = CtState(0x04);
    /// The packet travels in the reply direction.
    pub const REPLY: CtState = CtState(0x08);
    /// Not valid for any tracked connection; must be dropped.
    pub const INVALID: CtState = CtState(0x10);
    /// Conntrack looked at the packet.
    pub const TRACKED: CtState = CtState(0x20);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: CtState) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for CtState {
    type Output = CtState;
    fn bitor(self, rhs: CtState) -> CtState {
        CtState(self.0 | rhs.0)
    }
}

impl fmt::Display for CtState {
    /// `+trk+est+rpl` style, like `ovs-appctl dpctl/dump-conntrack`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, name) in [
            (CtState::TRACKED, "trk"),
            (CtState::NEW, "new"),
            (CtState::ESTABLISHED, "est"),
            (CtState::RELATED, "rel"),
            (CtState::REPLY, "rpl"),
            (CtState::INVALID, "inv"),
        ] {
            if self.contains(bit) {
                write!(f, "+{name}")?;
            }
        }
        Ok(())
    }
}

/// Direction of a packet relative to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the side that opened the connection.
    Original = 0,
    /// Towards the side that opened it.
    Reply = 1,
}

/// Why a packet was found invalid. Indexes the table's invalid counters.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// A TCP flag combination no stack sends (SYN+FIN, no flags, FIN without ACK, ...).
    TcpFlags = 0,
    /// A TCP segment outside the receiver's window, or an ACK for data never sent.
    TcpWindow,
    /// A TCP segment that the connection's state does not allow (e.g. SYN-ACK from the opener).
    TcpState,
    /// A TCP segment other than SYN for an unknown connection (mid-stream pickup is off).
    TcpNoConnection,
    /// An ICMP error about no tracked connection, or an ICMP reply with no request.
    IcmpUnrelated,
    /// A new connection refused because the table or the zone is full.
    TableFull,
    /// A packet conntrack cannot follow (an IP fragment: brink does not reassemble).
    Fragment,
}

impl InvalidReason {
    /// Every reason, in index order.
    pub const ALL: [InvalidReason; 7] = [
        InvalidReason::TcpFlags,
        InvalidReason::TcpWindow,
        InvalidReason::TcpState,
        InvalidReason::TcpNoConnection,
        InvalidReason::IcmpUnrelated,
        InvalidReason::TableFull,
        InvalidReason::Fragment,
    ];

    /// Name used in statistics.
    pub fn name(self) -> &'static str {
        match self {
            InvalidReason::TcpFlags => "tcp_flags",
            InvalidReason::TcpWindow => "tcp_window",
            InvalidReason::TcpState => "tcp_state",
            InvalidReason::TcpNoConnection => "tcp_no_connection",
            InvalidReason::IcmpUnrelated => "icmp_unrelated",
            InvalidReason::TableFull => "table_full",
            InvalidReason::Fragment => "fragment",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_indices() {
        let s = CtState::TRACKED | CtState::ESTABLISHED | CtState::REPLY;
        assert_eq!(s.to_string(), "+trk+est+rpl");
        assert!(s.contains(CtState::REPLY) && !s.contains(CtState::NEW));
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
