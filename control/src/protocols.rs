//! IP protocol names as Neutron and iproute2 spell them.

use brink_conntrack::key::proto;

/// Names and numbers; the first name of a number is the one shown.
const PROTOCOLS: [(&str, u8); 24] = [
    ("icmp", proto::ICMP),
    ("igmp", 2),
    ("ipip", 4),
    ("tcp", proto::TCP),
    ("egp", 8),
    ("udp", proto::UDP),
    ("dccp", 33),
    ("ipv6-encap", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", proto::ICMPV6),
    ("ipv6-icmp", proto::ICMPV6),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ospf", 89),
    ("encap", 98),
    ("vrrp", 112),
    ("pgm", 113),
    ("sctp", proto::SCTP),
    ("udplite", 136),
];

/// The number of protocol `s`: a name (any case) or a number 0-255.
pub fn number(s: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p)| p)
        .or_else(|| s.parse().ok())
}

/// The name of protocol `p`, or its number.
pub fn proto_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|&&(_, n)| n == p)
        .map_or_else(|| p.to_string(), |(name, _)| name.to_string())
}

/// Every known name, comma-separated, for error messages.
pub fn names() -> String {
    PROTOCOLS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether rules of protocol `p` may name destination ports (Neutron's list).
pub fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::SCTP | 33 | 136)
}
