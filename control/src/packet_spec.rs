//! Packets written the way an operator types them, for `brinkctl trace`:
//! `tcp,src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80,flags=S`, or an Ethernet frame in hex.

use std::collections::BTreeMap;
use std::net::IpAddr;

use brink_dataplane::wire::MacAddr;
use etherparse::PacketBuilder;

/// Why a packet spec cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad packet {spec:?}: {reason}")]
pub struct SpecError {
    /// The spec.
    pub spec: String,
    /// What is wrong, and what is allowed.
    pub reason: String,
}

/// The Ethernet addresses a spec that names none gets, filled in by the caller from the model.
#[derive(Debug, Clone, Copy)]
pub struct Macs {
    /// The source MAC when the spec has no `smac`.
    pub src: Option<MacAddr>,
    /// The destination MAC for the spec's destination address when it has no `dmac`
    /// (`None`: broadcast).
    pub dst: Option<MacAddr>,
}

/// What a field spec says, before the MACs are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    proto: String,
    keys: BTreeMap<String, String>,
    /// The destination address.
    pub dst: IpAddr,
    src: IpAddr,
}

/// A spec: a frame in hex (`02000000...`, colons and spaces allowed), or fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A whole frame.
    Frame(Vec<u8>),
    /// Fields, to build a frame from.
    Fields(Fields),
}

const KEYS: [&str; 13] = [
    "src", "dst", "sport", "dport", "flags", "seq", "ack", "win", "len", "id", "type", "smac",
    "dmac",
];

impl Spec {
    /// Parses `spec`.
    pub fn parse(spec: &str) -> Result<Spec, SpecError> {
        let bad = |reason: String| SpecError {
            spec: spec.to_string(),
            reason,
        };
        let hex: String = spec
            .chars()
            .filter(|c| !matches!(c, ':' | ' ' | '-'))
            .collect();
        if !spec.contains(',') && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return hex::decode(&hex)
                .map(Spec::Frame)
                .map_err(|e| bad(format!("not a frame in hex: {e}")));
        }
        let mut parts = spec.split(',').map(str::trim);
        let proto = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "icmp" | "icmpv6") {
            return Err(bad(format!(
                "starts with {proto:?}: use tcp, udp, icmp or icmpv6, or give a frame in hex"
            )));
        }
        let mut keys = BTreeMap::new();
        for part in parts.filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad(format!("{part:?} is not key=value")));
            };
            if !KEYS.contains(&k) {
                return Err(bad(format!("no key {k:?}; keys are {}", KEYS.join(", "))));
            }
            keys.insert(k.to_string(), v.to_string());
        }
        let addr = |k: &str| -> Result<IpAddr, SpecError> {
            let v = keys.get(k).ok_or_else(|| bad(format!("{k}= is missing")))?;
            v.parse()
                .map_err(|_| bad(format!("{k}={v} is not an IP address")))
        };
        let (src, dst) = (addr("src")?, addr("dst")?);
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(bad("src and dst are of different IP versions".into()));
        }
        if (proto == "icmp" && !src.is_ipv4()) || (proto == "icmpv6" && src.is_ipv4()) {
            return Err(bad(format!("{proto} does not go with these addresses")));
        }
        Ok(Spec::Fields(Fields {
            proto,
            keys,
            dst,
            src,
        }))
    }
}

impl Fields {
    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.keys.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{key}={v} is not a number in range")),
        }
    }

    fn mac(&self, key: &str, default: Option<MacAddr>) -> Result<Option<MacAddr>, String> {
        match self.keys.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<MacAddr>()
                .map(Some)
                .map_err(|_| format!("{key}={v} is not a MAC address")),
        }
    }

    /// The frame, with `macs` where the spec names none.
    pub fn build(&self, macs: Macs) -> Result<Vec<u8>, SpecError> {
        self.frame(macs).map_err(|reason| SpecError {
            spec: format!("{},...", self.proto),
            reason,
        })
    }

    fn frame(&self, macs: Macs) -> Result<Vec<u8>, String> {
        let smac = self
            .mac("smac", macs.src)?
            .ok_or("the port has no MAC configured: give smac=")?;
        let dmac = self.mac("dmac", macs.dst)?.unwrap_or(MacAddr::BROADCAST);
        let eth = PacketBuilder::ethernet2(smac.0, dmac.0);
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (s, d) => eth.ipv6(v6(s), v6(d), 64),
        };
        let payload = vec![0u8; self.num("len", 0usize)?.min(9000)];
        let (sport, dport) = (self.num("sport", 40000u16)?, self.num("dport", 80u16)?);
        let mut out = Vec::new();
        let written = match self.proto.as_str() {
            "tcp" => {
                let seq = self.num("seq", 1u32)?;
                let mut tcp = ip.tcp(sport, dport, seq, self.num("win", 64240u16)?);
                let flags = self.keys.get("flags").map_or("S", String::as_str);
                for f in flags.chars() {
                    tcp = match f.to_ascii_uppercase() {
                        'S' => tcp.syn(),
                        'A' => tcp.ack(self.num("ack", 0u32)?),
                        'F' => tcp.fin(),
                        'R' => tcp.rst(),
                        'P' => tcp.psh(),
                        'E' => tcp.ece(),
                        'C' => tcp.cwr(),
                        other => {
                            return Err(format!("flag {other:?}: flags are S, A, F, R, P, E, C"))
                        }
                    };
                }
                tcp.write(&mut out, &payload)
            }
            "udp" => ip.udp(sport, dport).write(&mut out, &payload),
            proto => {
                let id = self.num("id", 1u16)?;
                let reply = match self.keys.get("type").map(String::as_str) {
                    None | Some("request") => false,
                    Some("reply") => true,
                    Some(other) => return Err(format!("type={other}: use request or reply")),
                };
                match (proto, reply) {
                    ("icmp", false) => ip.icmpv4_echo_request(id, 1).write(&mut out, &payload),
                    ("icmp", true) => ip.icmpv4_echo_reply(id, 1).write(&mut out, &payload),
                    (_, false) => ip.icmpv6_echo_request(id, 1).write(&mut out, &payload),
                    (_, true) => ip.icmpv6_echo_reply(id, 1).write(&mut out, &payload),
                }
            }
        };
        written.map_err(|e| e.to_string())?;
        Ok(out)
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn fields(spec: &str) -> Fields {
        match Spec::parse(spec).unwrap() {
            Spec::Fields(f) => f,
            Spec::Frame(_) => panic!("not fields"),
        }
    }

    const MACS: Macs = Macs {
        src: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        dst: None,
    };

    #[test]
    fn a_tcp_spec_builds_the_segment_it_says() {
        let f = fields("tcp,src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80,flags=SA,ack=7");
        let frame = f.build(MACS).unwrap();
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), [10, 0, 0, 1]);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not TCP")
        };
        assert_eq!((tcp.source_port(), tcp.destination_port()), (40000, 80));
        assert!(tcp.syn() && tcp.ack() && !tcp.fin());
        assert_eq!(tcp.acknowledgment_number(), 7);
        assert_eq!(&frame[0..6], &[0xff; 6], "broadcast without a known MAC");
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn hex_frames_and_bad_specs() {
        assert_eq!(
            Spec::parse("02:00:00:00:00:02 0a").unwrap(),
            Spec::Frame(vec![2, 0, 0, 0, 0, 2, 0x0a])
        );
        for (spec, says) in [
            (
                "sctp,src=1.1.1.1,dst=1.1.1.2",
                "use tcp, udp, icmp or icmpv6",
            ),
            ("tcp,src=1.1.1.1", "dst= is missing"),
            ("tcp,src=1.1.1.1,dst=::1", "different IP versions"),
            ("tcp,src=1.1.1.1,dst=1.1.1.2,port=3", "no key \"port\""),
            ("icmpv6,src=1.1.1.1,dst=1.1.1.2", "does not go with"),
            ("0g", "starts with"),
        ] {
            let e = Spec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
        let f = fields("tcp,src=1.1.1.1,dst=1.1.1.2,flags=SX");
        assert!(f.build(MACS).unwrap_err().to_string().contains("flag 'X'"));
        let none = Macs {
            src: None,
            dst: None,
        };
        assert!(f.build(none).unwrap_err().to_string().contains("smac="));
    }
}
