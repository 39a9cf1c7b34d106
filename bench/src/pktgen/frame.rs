//! The frames the generator sends.
//!
//! Each mode has one template per frame size, built once with `etherparse`; per packet only a
//! few fields change (ports, TCP sequence number, the UDP payload's stamp), written in place
//! with an incremental checksum update (RFC 1624), so a frame costs a copy and a few stores.
//!
//! UDP frames carry a [`Stamp`] at the start of their payload: a magic number, a sequence number
//! and the send time, from which the receiver computes loss, reordering and one-way latency.

use serde::Serialize;

use crate::BenchError;

/// Ethernet + IPv4 header length (no options).
const L4: usize = 14 + 20;
/// UDP header length.
const UDP_LEN: usize = 8;
/// TCP header length (no options).
const TCP_LEN: usize = 20;
/// Offset of the UDP checksum in a frame.
const UDP_CHECKSUM: usize = L4 + 6;
/// Offset of the TCP checksum in a frame.
const TCP_CHECKSUM: usize = L4 + 16;
/// Offset of the TCP sequence number in a frame.
const TCP_SEQ: usize = L4 + 4;
/// Offset of the stamp in a UDP frame.
pub const STAMP_AT: usize = L4 + UDP_LEN;
/// Smallest frame (without FCS) Ethernet allows.
pub const MIN_FRAME: usize = 60;
/// Largest frame (without FCS) on a 1500-byte MTU.
pub const MAX_FRAME: usize = 1514;
/// First source port of the flows.
const BASE_PORT: u16 = 10_000;
/// Destination port of the fixed-tuple modes.
pub const DST_PORT: u16 = 9;
/// Source ports of the new-tuple modes: 1024..65535.
const EPHEMERAL: u32 = 65_536 - 1024;
/// Destination ports the new-tuple modes step through once the source ports are used up.
const NEW_TUPLE_DST_PORTS: u32 = 1000;
/// IMIX: 7 frames of 64 bytes, 4 of 576, 1 of 1514, in that order.
const IMIX: [(usize, usize); 3] = [(64, 7), (576, 4), (MAX_FRAME, 1)];

/// What traffic to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// UDP in N flows (source ports 10000.. in turn), stamped.
    Udp,
    /// TCP SYNs, every one from a new source port (a new connection per packet).
    Syn,
    /// UDP, every packet a new 5-tuple (source port, then destination port), stamped.
    NewUdp,
    /// TCP PSH+ACK segments in N flows with advancing sequence numbers, as in an established
    /// connection (no handshake is sent).
    Tcp,
    /// UDP in N flows, 64/576/1514-byte frames in a 7:4:1 mix, stamped.
    Imix,
}

/// The addresses and shape of the frames.
#[derive(Debug, Clone, Serialize)]
pub struct FrameSpec {
    /// What to send.
    pub mode: Mode,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
    /// Frame size in bytes without FCS (60-1514; IMIX ignores it).
    pub size: usize,
    /// Flows of the `udp`, `tcp` and `imix` modes.
    pub flows: u32,
}

/// What a UDP frame's payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sequence number of the frame in its run, from 0.
    pub seq: u64,
    /// Send time, nanoseconds since the Unix epoch (the same clock in every namespace).
    pub sent_ns: u64,
}

impl Stamp {
    /// Marks a payload as brink-pktgen's.
    pub const MAGIC: u16 = 0xb71c;
    /// Bytes on the wire.
    pub const LEN: usize = 18;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..2].copy_from_slice(&Self::MAGIC.to_be_bytes());
        b[2..10].copy_from_slice(&self.seq.to_be_bytes());
        b[10..].copy_from_slice(&self.sent_ns.to_be_bytes());
        b
    }

    /// The stamp of a frame, if it is an IPv4 UDP frame from brink-pktgen (IP options allowed).
    pub fn read(frame: &[u8]) -> Option<Stamp> {
        let ip = frame.get(14..)?;
        if frame.get(12..14)? != [0x08, 0x00] || *ip.get(9)? != 17 {
            return None;
        }
        let payload = usize::from(ip.first()? & 0x0f) * 4 + UDP_LEN;
        let b = ip.get(payload..payload + Self::LEN)?;
        if b[..2] != Self::MAGIC.to_be_bytes() {
            return None;
        }
        let word = |r: std::ops::Range<usize>| {
            b.get(r)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
        };
        Some(Stamp {
            seq: word(2..10)?,
            sent_ns: word(10..18)?,
        })
    }
}

/// Builds every frame of a run from the templates of one [`FrameSpec`].
#[derive(Debug, Clone)]
pub struct Frames {
    spec: FrameSpec,
    /// One frame per size, whose changing fields are rewritten per packet.
    templates: Vec<Vec<u8>>,
    /// Template index per position in the size cycle (one entry except for IMIX).
    cycle: Vec<usize>,
}

impl Frames {
    /// The templates of `spec`; fails on a size outside 60-1514 or no flows.
    pub fn new(spec: &FrameSpec) -> Result<Frames, BenchError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&spec.size) {
            return Err(BenchError::Config(format!(
                "frame size {} is not {MIN_FRAME}-{MAX_FRAME}",
                spec.size
            )));
        }
        if spec.flows == 0 || spec.flows > u32::from(u16::MAX - BASE_PORT) {
            return Err(BenchError::Config(format!(
                "flows {} is not 1-{}",
                spec.flows,
                u16::MAX - BASE_PORT
            )));
        }
        let sizes: Vec<(usize, usize)> = match spec.mode {
            Mode::Imix => IMIX.to_vec(),
            _ => vec![(spec.size, 1)],
        };
        let templates = sizes
            .iter()
            .map(|&(size, _)| template(spec, size))
            .collect::<Result<Vec<_>, _>>()?;
        let cycle = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &(_, n))| std::iter::repeat_n(i, n))
            .collect();
        Ok(Frames {
            spec: spec.clone(),
            templates,
            cycle,
        })
    }

    /// Frame number `i` of the run, sent at `now_ns`.
    pub fn build(&mut self, i: u64, now_ns: u64) -> &[u8] {
        let slot = self.cycle[(i % self.cycle.len() as u64) as usize];
        let spec = &self.spec;
        let Some(f) = self.templates.get_mut(slot) else {
            return &[];
        };
        let flow = (i % u64::from(spec.flows)) as u16;
        let stamp = Stamp {
            seq: i,
            sent_ns: now_ns,
        };
        match spec.mode {
            Mode::Udp | Mode::Imix => {
                put(f, L4, &(BASE_PORT + flow).to_be_bytes(), UDP_CHECKSUM);
                put(f, STAMP_AT, &stamp.to_bytes(), UDP_CHECKSUM);
            }
            Mode::NewUdp => {
                put(f, L4, &new_tuple_ports(i), UDP_CHECKSUM);
                put(f, STAMP_AT, &stamp.to_bytes(), UDP_CHECKSUM);
            }
            Mode::Syn => {
                put(f, L4, &new_tuple_ports(i), TCP_CHECKSUM);
                put(f, TCP_SEQ, &(i as u32).to_be_bytes(), TCP_CHECKSUM);
            }
            Mode::Tcp => {
                let payload = (f.len() - L4 - TCP_LEN) as u64;
                let seq = (i / u64::from(spec.flows)) * payload;
                put(f, L4, &(BASE_PORT + flow).to_be_bytes(), TCP_CHECKSUM);
                put(f, TCP_SEQ, &(seq as u32).to_be_bytes(), TCP_CHECKSUM);
            }
        }
        f
    }
}

/// Source and destination port of new tuple number `i`: every source port, then the next
/// destination port.
fn new_tuple_ports(i: u64) -> [u8; 4] {
    let src = 1024 + (i % u64::from(EPHEMERAL)) as u16;
    let dst = BASE_PORT + ((i / u64::from(EPHEMERAL)) % u64::from(NEW_TUPLE_DST_PORTS)) as u16;
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&src.to_be_bytes());
    b[2..].copy_from_slice(&dst.to_be_bytes());
    b
}

/// The template of one frame size: headers with valid checksums and a zero payload.
fn template(spec: &FrameSpec, size: usize) -> Result<Vec<u8>, BenchError> {
    let b = etherparse::PacketBuilder::ethernet2(spec.src_mac, spec.dst_mac).ipv4(
        spec.src_ip,
        spec.dst_ip,
        64,
    );
    let mut bytes = Vec::with_capacity(size);
    let result = match spec.mode {
        Mode::Udp | Mode::NewUdp | Mode::Imix => b
            .udp(BASE_PORT, DST_PORT)
            .write(&mut bytes, &vec![0u8; size - L4 - UDP_LEN]),
        Mode::Syn => b
            .tcp(BASE_PORT, DST_PORT, 0, 64_240)
            .syn()
            .write(&mut bytes, &vec![0u8; size - L4 - TCP_LEN]),
        Mode::Tcp => b
            .tcp(BASE_PORT, DST_PORT, 0, 64_240)
            .psh()
            .ack(1)
            .write(&mut bytes, &vec![0u8; size - L4 - TCP_LEN]),
    };
    result.map_err(|e| BenchError::Config(e.to_string()))?;
    Ok(bytes)
}

/// Writes `new` at `at` (an even offset) and updates the 16-bit one's complement checksum at
/// `checksum` for the change (RFC 1624, eqn. 3). Out-of-range offsets change nothing.
fn put(frame: &mut [u8], at: usize, new: &[u8], checksum: usize) {
    let (Some(old), Some(sum)) = (
        frame.get(at..at + new.len()),
        frame.get(checksum..checksum + 2),
    ) else {
        return;
    };
    let mut acc = u32::from(!u16::from_be_bytes([sum[0], sum[1]]));
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let word = |c: &[u8]| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        acc += u32::from(!word(o)) + u32::from(word(n));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // UDP reserves 0 for "no checksum"; its one's complement twin 0xffff means the same sum.
    let folded = match !(acc as u16) {
        0 => 0xffff,
        s => s,
    };
    frame[at..at + new.len()].copy_from_slice(new);
    frame[checksum..checksum + 2].copy_from_slice(&folded.to_be_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn spec(mode: Mode, size: usize, flows: u32) -> FrameSpec {
        FrameSpec {
            mode,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: [10, 0, 0, 1],
            dst_ip: [10, 0, 0, 2],
            size,
            flows,
        }
    }

    /// Parses `f` with etherparse and checks its IPv4 and transport checksums; returns the
    /// (source port, destination port, TCP sequence number and flags if TCP).
    fn parse(f: &[u8]) -> (u16, u16, Option<(u32, bool, bool)>) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(ip.header().source(), [10, 0, 0, 1]);
        let payload = ip.payload().payload;
        match p.transport.unwrap() {
            TransportSlice::Udp(u) => {
                let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(u.checksum(), want, "UDP checksum");
                (u.source_port(), u.destination_port(), None)
            }
            TransportSlice::Tcp(t) => {
                let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), want, "TCP checksum");
                let flags = (t.sequence_number(), t.syn(), t.ack());
                assert_eq!(payload.len(), f.len() - 34);
                (t.source_port(), t.destination_port(), Some(flags))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn udp_flows_turn_and_carry_valid_checksums_and_stamps() {
        let mut frames = Frames::new(&spec(Mode::Udp, 64, 3)).unwrap();
        for i in 0..7u64 {
            let f = frames.build(i, 1_000 + i).to_vec();
            assert_eq!(f.len(), 64);
            let (src, dst, tcp) = parse(&f);
            assert_eq!((src, dst, tcp), (10_000 + (i % 3) as u16, DST_PORT, None));
            assert_eq!(
                Stamp::read(&f),
                Some(Stamp {
                    seq: i,
                    sent_ns: 1_000 + i
                })
            );
        }
    }

    #[test]
    fn new_udp_tuples_never_repeat_within_a_run() {
        let mut frames = Frames::new(&spec(Mode::NewUdp, 60, 1)).unwrap();
        let mut seen = std::collections::HashSet::new();
        // Across the wrap of the source ports into the next destination port.
        for i in (0..1000).chain(64_000..66_000) {
            let (src, dst, _) = parse(frames.build(i, u64::MAX - i));
            assert!(seen.insert((src, dst)), "tuple {src}->{dst} repeated");
        }
    }

    #[test]
    fn syns_are_new_connections_with_valid_checksums() {
        let mut frames = Frames::new(&spec(Mode::Syn, 60, 1)).unwrap();
        for i in [0u64, 1, 2, 70_000] {
            let f = frames.build(i, 0).to_vec();
            let (src, _, tcp) = parse(&f);
            assert_eq!(tcp, Some((i as u32, true, false)));
            assert_eq!(src, 1024 + (i % u64::from(EPHEMERAL)) as u16);
            assert_eq!(Stamp::read(&f), None, "TCP frames carry no stamp");
        }
    }

    #[test]
    fn established_tcp_advances_each_flows_sequence_by_its_payload() {
        let mut frames = Frames::new(&spec(Mode::Tcp, 100, 2)).unwrap();
        let payload = 100 - 54;
        for i in 0..6u64 {
            let (src, _, tcp) = parse(frames.build(i, 0));
            assert_eq!(src, 10_000 + (i % 2) as u16);
            assert_eq!(tcp, Some(((i / 2) as u32 * payload, false, true)));
        }
    }

    #[test]
    fn imix_cycles_seven_four_one() {
        let mut frames = Frames::new(&spec(Mode::Imix, 64, 4)).unwrap();
        let sizes: Vec<usize> = (0..24).map(|i| frames.build(i, 0).len()).collect();
        let count = |s| sizes.iter().filter(|&&x| x == s).count();
        assert_eq!((count(64), count(576), count(1514)), (14, 8, 2));
        for i in 0..12 {
            let f = frames.build(i, 7).to_vec();
            parse(&f);
            assert_eq!(Stamp::read(&f).map(|s| s.seq), Some(i));
        }
    }

    #[test]
    fn bad_sizes_and_flows_are_refused() {
        assert!(Frames::new(&spec(Mode::Udp, 59, 1)).is_err());
        assert!(Frames::new(&spec(Mode::Udp, 1515, 1)).is_err());
        assert!(Frames::new(&spec(Mode::Udp, 64, 0)).is_err());
    }

    #[test]
    fn stamps_are_read_only_from_our_udp_frames() {
        let mut frames = Frames::new(&spec(Mode::Udp, 64, 1)).unwrap();
        let mut f = frames.build(5, 9).to_vec();
        assert!(Stamp::read(&f[..40]).is_none(), "truncated");
        f[STAMP_AT] ^= 1;
        assert!(Stamp::read(&f).is_none(), "wrong magic");
    }
}
