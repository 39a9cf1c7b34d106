//! Synthetic UDP and TCP connections, shared by the conntrack benchmark and the footprint example.

use brink_conntrack::key::proto;
use brink_conntrack::tcp::flags::{ACK, PSH, SYN};
use brink_conntrack::{Addr, Packet, TcpSegment, Tuple, L4};

/// The tuple of connection `i` of protocol `proto` in the original direction (distinct address
/// pairs and ports for every `i` below 2^24).
fn tuple(i: u32, proto: u8, dport: u16) -> Tuple {
    let b = i.to_be_bytes();
    Tuple {
        zone: 1,
        v6: false,
        proto,
        src: Addr::v4([10, b[1], b[2], b[3]]),
        dst: Addr::v4([172, 16, b[3], b[2]]),
        sport: 1024 + (i % 50_000) as u16,
        dport,
    }
}

/// A packet of UDP connection `i`, in the original direction or, with `reply`, the reply
/// direction.
pub fn udp(i: u32, reply: bool) -> Packet {
    let t = tuple(i, proto::UDP, 53);
    Packet {
        tuple: if reply { t.reversed() } else { t },
        l4: L4::Udp,
        len: 64,
    }
}

/// The opener's initial sequence number, and the responder's.
const ISN: [u32; 2] = [1_000, 9_000];
/// Payload bytes of a data segment (a 64-byte frame).
const DATA: u32 = 10;

fn tcp(i: u32, reply: bool, flags: u8, seq: u32, ack: u32, payload_len: u32) -> Packet {
    let t = tuple(i, proto::TCP, 80);
    Packet {
        tuple: if reply { t.reversed() } else { t },
        l4: L4::Tcp(TcpSegment {
            seq,
            ack,
            window: 64_000,
            flags,
            payload_len,
            wscale: None,
        }),
        len: 54 + payload_len,
    }
}

/// The three packets that open TCP connection `i`: SYN, SYN-ACK, ACK.
pub fn tcp_handshake(i: u32) -> [Packet; 3] {
    let [c, s] = ISN;
    [
        tcp(i, false, SYN, c, 0, 0),
        tcp(i, true, SYN | ACK, s, c + 1, 0),
        tcp(i, false, ACK, c + 1, s + 1, 0),
    ]
}

/// An established packet of TCP connection `i` after its handshake: a data segment from the
/// opener, or with `reply` the responder's pure ACK of it. Both may be sent again and again (a
/// retransmission and a duplicate ACK), and stay valid.
pub fn tcp_established(i: u32, reply: bool) -> Packet {
    let [c, s] = ISN;
    if reply {
        tcp(i, true, ACK, s + 1, c + 1 + DATA, 0)
    } else {
        tcp(i, false, PSH | ACK, c + 1, s + 1, DATA)
    }
}
