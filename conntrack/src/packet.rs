//! What conntrack is told about a packet: its tuple and its protocol details, parsed by the
//! caller.

use crate::key::Tuple;
use crate::tcp::TcpSegment;

/// The protocol part of a packet, parsed by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// A UDP datagram.
    Udp,
    /// An ICMP or ICMPv6 echo request (`reply` false) or reply; the tuple's ports hold the id.
    IcmpEcho {
        /// True for an echo reply.
        reply: bool,
    },
    /// An ICMP or ICMPv6 error (unreachable, time exceeded, packet too big, parameter problem)
    /// quoting the header of the packet it is about.
    IcmpError {
        /// The quoted packet's tuple, as that packet travelled.
        quoted: Tuple,
    },
    /// An IP fragment, which brink does not reassemble.
    Fragment,
    /// Any other protocol, or an ICMP message that is neither echo nor error.
    Other,
}

/// Packets of one connection tracked as one: `packets` packets with the same tuple and
/// protocol details, back to back, `bytes` in all. Every one of them would do to the table what
/// the first does, but for its counters; so a run is judged, and its connection looked up,
/// once. TCP segments carry their own sequence numbers: each is a run of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Packets in the run (at least one).
    pub packets: u32,
    /// Their bytes, for the counters.
    pub bytes: u64,
}

impl Run {
    /// The run of `pkt` alone.
    pub fn one(pkt: &Packet) -> Run {
        Run {
            packets: 1,
            bytes: u64::from(pkt.len),
        }
    }
}

/// A packet as conntrack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Addresses, ports, protocol and zone.
    pub tuple: Tuple,
    /// Protocol details.
    pub l4: L4,
    /// Bytes, for the counters.
    pub len: u32,
}
