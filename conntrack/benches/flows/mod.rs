//! Synthetic UDP connections, shared by the conntrack benchmark and the footprint example.

use brink_conntrack::key::proto;
use brink_conntrack::{Addr, Packet, Tuple, L4};

/// A packet of UDP connection `i` (distinct address pairs and ports for every `i` below 2^24),
/// in the original direction or, with `reply`, the reply direction.
pub fn udp(i: u32, reply: bool) -> Packet {
    let b = i.to_be_bytes();
    let t = Tuple {
        zone: 1,
        v6: false,
        proto: proto::UDP,
        src: Addr::v4([10, b[1], b[2], b[3]]),
        dst: Addr::v4([172, 16, b[3], b[2]]),
        sport: 1024 + (i % 50_000) as u16,
        dport: 53,
    };
    Packet {
        tuple: if reply { t.reversed() } else { t },
        l4: L4::Udp,
        len: 64,
    }
}
