//! Connection keys: the directional [`Tuple`] a packet carries and the canonical [`ConnKey`]
//! both directions of a connection map to.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// IP protocol numbers brink tracks specially.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// An IPv4 or IPv6 address in 16 bytes (IPv4 as an IPv4-mapped IPv6 address).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// An IPv4 address.
    #[inline]
    pub fn v4(octets: [u8; 4]) -> Self {
        // Built as one integer, so that the address is written whole, never byte by byte.
        let mapped = 0xffff << 32 | u128::from(u32::from_be_bytes(octets));
        Addr(mapped.to_be_bytes())
    }

    /// Whether this is an IPv4 address (IPv4-mapped).
    #[inline]
    pub fn is_v4(self) -> bool {
        self.0[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
    }

    /// The address as a std type.
    pub fn ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Addr::v4(v4.octets()),
            IpAddr::V6(v6) => Addr(v6.octets()),
        }
    }
}

/// A packet's addresses and ports as it travels, in its zone.
///
/// For ICMP echo, both ports hold the echo identifier; for protocols without ports, both are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Tuple {
    /// Conntrack zone (brink: the network id).
    pub zone: u16,
    /// The packet is IPv6 (else IPv4). Part of the key, so an IPv6 packet with IPv4-mapped
    /// addresses never matches an IPv4 connection.
    pub v6: bool,
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port (or ICMP echo id).
    pub sport: u16,
    /// Destination port (or ICMP echo id).
    pub dport: u16,
}

impl Tuple {
    /// The same flow seen from the other end.
    pub fn reversed(self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..self
        }
    }
}

/// Which end of the canonical key a packet's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source is the key's `lo` end.
    Lo,
    /// The source is the key's `hi` end.
    Hi,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// A connection's identity, the same for both directions: the (address, port) ends are ordered.
///
/// Stored as five 64-bit words (each address as two big-endian halves, then ports, zone,
/// protocol and address family), so hashing, comparing and ordering keys are a few word operations.
#[derive(Debug, Clone, Copy, Eq, Default)]
pub struct ConnKey([u64; 5]);

const _: () = assert!(std::mem::size_of::<ConnKey>() == 40);

impl PartialEq for ConnKey {
    /// All five words at once, without a branch per word or a call to `memcmp` (which a
    /// derived comparison of the array becomes).
    #[inline]
    fn eq(&self, other: &ConnKey) -> bool {
        self.0
            .iter()
            .zip(other.0)
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl Hash for ConnKey {
    /// Word by word: a derived hash writes the array as 40 bytes plus a length, which costs
    /// the hasher its slow path for long inputs.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        for word in self.0 {
            state.write_u64(word);
        }
    }
}

fn halves(a: Addr) -> (u64, u64) {
    let v = u128::from_be_bytes(a.0);
    ((v >> 64) as u64, v as u64)
}

fn addr_of(hi: u64, lo: u64) -> Addr {
    Addr((u128::from(hi) << 64 | u128::from(lo)).to_be_bytes())
}

impl ConnKey {
    /// The canonical key of `t`, and which end of it `t`'s source is.
    #[inline]
    pub fn of(t: &Tuple) -> (ConnKey, Side) {
        let (s, d) = (halves(t.src), halves(t.dst));
        let src_first = (s, t.sport) <= (d, t.dport);
        let (lo, lo_port, hi, hi_port, side) = if src_first {
            (s, t.sport, d, t.dport, Side::Lo)
        } else {
            (d, t.dport, s, t.sport, Side::Hi)
        };
        let meta = u64::from(lo_port)
            | u64::from(hi_port) << 16
            | u64::from(t.zone) << 32
            | u64::from(t.proto) << 48
            | u64::from(t.v6) << 56;
        (ConnKey([lo.0, lo.1, hi.0, hi.1, meta]), side)
    }

    /// The key's five words, as a table stores them.
    #[inline]
    pub(crate) fn words(&self) -> [u64; 5] {
        self.0
    }

    /// The key [`ConnKey::words`] gave `words`.
    #[inline]
    pub(crate) fn from_words(words: [u64; 5]) -> ConnKey {
        ConnKey(words)
    }

    /// Lower (address, port) end's address.
    pub fn lo(&self) -> Addr {
        addr_of(self.0[0], self.0[1])
    }

    /// Higher end's address.
    pub fn hi(&self) -> Addr {
        addr_of(self.0[2], self.0[3])
    }

    /// Port of the lower end.
    pub fn lo_port(&self) -> u16 {
        self.0[4] as u16
    }

    /// Port of the higher end.
    pub fn hi_port(&self) -> u16 {
        (self.0[4] >> 16) as u16
    }

    /// Conntrack zone.
    #[inline]
    pub fn zone(&self) -> u16 {
        (self.0[4] >> 32) as u16
    }

    /// IP protocol number.
    #[inline]
    pub fn proto(&self) -> u8 {
        (self.0[4] >> 48) as u8
    }

    /// Whether the connection is IPv6.
    #[inline]
    pub fn v6(&self) -> bool {
        self.0[4] >> 56 & 1 == 1
    }

    /// The tuple of a packet sent from `side`.
    pub fn tuple_from(&self, side: Side) -> Tuple {
        let t = Tuple {
            zone: self.zone(),
            v6: self.v6(),
            proto: self.proto(),
            src: self.lo(),
            dst: self.hi(),
            sport: self.lo_port(),
            dport: self.hi_port(),
        };
        match side {
            Side::Lo => t,
            Side::Hi => t.reversed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tuple() -> impl Strategy<Value = Tuple> {
        (
            any::<u16>(),
            any::<bool>(),
            any::<u8>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(zone, v6, proto, s, d, sport, dport)| Tuple {
                zone,
                v6,
                proto,
                src: Addr(s),
                dst: Addr(d),
                sport,
                dport,
            })
    }

    proptest! {
        #[test]
        fn both_directions_share_a_key(t in tuple()) {
            let (k1, s1) = ConnKey::of(&t);
            let (k2, s2) = ConnKey::of(&t.reversed());
            prop_assert_eq!(k1, k2);
            prop_assert_eq!(k1.tuple_from(s1), t);
            if t.reversed() != t {
                prop_assert_ne!(s1, s2);
            }
        }
    }

    #[test]
    fn zones_and_protocols_separate_keys() {
        let t = Tuple {
            zone: 1,
            v6: false,
            proto: proto::TCP,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            sport: 1000,
            dport: 80,
        };
        let other_zone = Tuple { zone: 2, ..t };
        let udp = Tuple {
            proto: proto::UDP,
            ..t
        };
        assert_ne!(ConnKey::of(&t).0, ConnKey::of(&other_zone).0);
        assert_ne!(ConnKey::of(&t).0, ConnKey::of(&udp).0);
        // The same 16 address bytes as IPv6 (IPv4-mapped) are another connection.
        let mapped = Tuple { v6: true, ..t };
        assert_ne!(ConnKey::of(&t).0, ConnKey::of(&mapped).0);
        assert!(ConnKey::of(&mapped).0.v6() && !ConnKey::of(&t).0.v6());
        assert_eq!(t.src.ip().to_string(), "10.0.0.1");
    }
}
