//! IPv4, IPv6 and their transport headers, parsed into what the firewall and conntrack need.
//!
//! One pass over the bytes after the Ethernet header yields a [`Parsed`]: a well-formed packet,
//! whose [`Flow`] (what port security and security-group rules read) and conntrack [`Packet`]
//! are written straight to the caller's [`Out`], a malformed header, or a bad checksum (IPv4
//! header, TCP, UDP, ICMP, ICMPv6; see [`super::checksum`]). A transport checksum the sender
//! said it left partial (a vhost-user guest's `NEEDS_CSUM`) is not summed ([`parse_partial`]):
//! it must be the checksum field of the TCP or UDP header. Every view checks its length once;
//! nothing here can panic on any input.

use brink_conntrack::key::proto;
use brink_conntrack::{Addr, Packet, TcpSegment, Tuple, L4};

use super::checksum::{self, Partial, Verdict};
use super::{EtherType, L3};

/// ICMPv6 types port security and the firewall treat specially.
pub mod icmpv6 {
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Multicast listener query.
    pub const MLD_QUERY: u8 = 130;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Neighbour discovery and multicast listener messages: they pass untracked, as in Linux,
    /// so address resolution never depends on connection state.
    pub fn is_nd_or_mld(kind: u8) -> bool {
        matches!(kind, 130..=137 | 143)
    }
}

/// The fields of an IP packet that port security and security-group rules match on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// TCP, UDP or SCTP source port (else 0).
    pub sport: u16,
    /// TCP, UDP or SCTP destination port (else 0).
    pub dport: u16,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// Target address of an IPv6 neighbour advertisement.
    pub nd_target: Option<Addr>,
}

impl Flow {
    /// What a rule's port range is matched against: the destination port, or for ICMP
    /// `type << 8 | code` (Neutron puts ICMP type and code in the port range fields).
    #[inline]
    pub fn rule_port(&self) -> u16 {
        match self.icmp {
            Some((t, c)) => u16::from(t) << 8 | u16::from(c),
            None => self.dport,
        }
    }

    /// The flow of the packet that opened the connection `original`, for rechecking it when
    /// only the connection's tuple is known. ICMP connections are echo requests.
    pub fn of_tuple(original: &Tuple) -> Flow {
        let icmp = match original.proto {
            proto::ICMP => Some((8, 0)),
            proto::ICMPV6 => Some((128, 0)),
            _ => None,
        };
        let (sport, dport) = if icmp.is_some() {
            (0, 0)
        } else {
            (original.sport, original.dport)
        };
        let tuple = Tuple {
            sport,
            dport,
            ..*original
        };
        Flow::of_packet(&tuple, icmp, None)
    }

    /// The flow of a packet with tuple `tuple` (its zone aside), ICMP or ICMPv6 type and code
    /// `icmp` and neighbour advertisement target `nd_target`.
    #[inline(always)]
    fn of_packet(tuple: &Tuple, icmp: Option<(u8, u8)>, nd_target: Option<Addr>) -> Flow {
        Flow {
            v6: tuple.v6,
            proto: tuple.proto,
            src: tuple.src,
            dst: tuple.dst,
            sport: tuple.sport,
            dport: tuple.dport,
            icmp,
            nd_target,
        }
    }
}

/// A checksum the switch completes before it sends the frame on: the sender offloaded it and
/// left the pseudo-header sum. `bytes` go at offset `at` from the start of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixup {
    /// Offset of the checksum field from the start of the IP header (frames are shorter than
    /// 64 KiB; an offset past the frame patches nothing).
    pub at: u16,
    /// The complete checksum, as on the wire.
    pub bytes: [u8; 2],
}

/// What an IP packet is. A well-formed packet's facts go to the caller's [`Out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A well-formed packet, written to [`Out`], and the checksum to complete, if the sender
    /// left it partial.
    Ip(Option<Fixup>),
    /// The IP or transport header is cut short or inconsistent.
    Malformed,
    /// The IPv4 header checksum or the TCP, UDP, ICMP or ICMPv6 checksum is wrong. A partial
    /// checksum (offloaded by the sender) is not wrong.
    BadChecksum,
    /// The sender said it left the checksum partial somewhere else than in the checksum field
    /// of the packet's TCP or UDP header.
    BadOffload,
}

/// Where parsing writes a well-formed packet (the frame's slots in its batch, so that nothing
/// is built twice); both are left alone unless the packet parses as [`Parsed::Ip`].
pub struct Out<'a> {
    /// What port security and the rules match on: [`L3::Ip`] with the packet's [`Flow`].
    pub l3: &'a mut L3,
    /// What conntrack is told about the packet (`None`: neighbour discovery and MLD, which
    /// pass untracked).
    pub ct: &'a mut Option<Packet>,
}

/// Parses the payload of an Ethernet frame of type `ethertype` for conntrack zone `zone`.
/// Returns `None` for frames that are not IP.
pub fn parse(ethertype: EtherType, payload: &[u8], zone: u16, out: Out<'_>) -> Option<Parsed> {
    parse_with(ethertype, payload, zone, None, out)
}

/// [`parse`] for a packet whose sender said it left the transport checksum `partial`, offsets
/// counted from the start of `payload`: trusted, as Linux trusts `CHECKSUM_PARTIAL`, and not
/// summed, if it is the checksum field of an unfragmented packet's TCP or UDP header; any other
/// place is a [`Parsed::BadOffload`].
pub fn parse_partial(
    ethertype: EtherType,
    payload: &[u8],
    zone: u16,
    partial: Partial,
    out: Out<'_>,
) -> Option<Parsed> {
    parse_with(ethertype, payload, zone, Some(partial), out)
}

/// What [`parse`] and [`parse_partial`] share; inlined, so that `parse` pays nothing for it.
#[inline(always)]
fn parse_with(
    ethertype: EtherType,
    payload: &[u8],
    zone: u16,
    partial: Option<Partial>,
    out: Out<'_>,
) -> Option<Parsed> {
    // Each family's header goes to its own copy of `judge`, so that neither is kept in memory
    // for a join of the two.
    Some(match ethertype {
        EtherType::Ipv4 => judge(ipv4(payload), zone, partial, out),
        EtherType::Ipv6 => judge(ipv6(payload), zone, partial, out),
        _ => return None,
    })
}

/// Judges the parsed network header `l3` (`None`: malformed) and parses its transport header
/// into `out`.
#[inline(always)]
fn judge(l3: Option<Net<'_>>, zone: u16, partial: Option<Partial>, out: Out<'_>) -> Parsed {
    match l3 {
        None => Parsed::Malformed,
        Some(l3) if !l3.v6 && !checksum::ipv4_header_ok(l3.header) => Parsed::BadChecksum,
        Some(mut l3) => {
            // One call of `transport` per family, so that it is inlined as it is without
            // offloads.
            if let Some(p) = partial {
                if !l3.is_checksum_field(p) {
                    return Parsed::BadOffload;
                }
                l3.trusted = true;
            }
            transport(&l3, zone, out)
        }
    }
}

/// Where the checksum field lies in a TCP header.
const TCP_CHECKSUM_AT: usize = 16;
/// Where the checksum field lies in a UDP header.
const UDP_CHECKSUM_AT: usize = 6;

/// The network-layer facts transport parsing needs.
struct Net<'a> {
    src: Addr,
    dst: Addr,
    proto: u8,
    /// An IP fragment: conntrack cannot follow it.
    fragment: bool,
    /// A fragment other than the first, which carries no transport header.
    later_fragment: bool,
    v6: bool,
    /// Bytes of the IP packet, headers included (for counters).
    len: u32,
    /// The IPv4 header, options included (empty for IPv6).
    header: &'a [u8],
    /// The source and destination address as the header holds them, one after the other (for
    /// the pseudo-header sum, read from the packet rather than from `src` and `dst`).
    addresses: &'a [u8],
    /// Offset of `payload` from the start of the IP header.
    payload_at: usize,
    payload: &'a [u8],
    /// The sender left the transport checksum partial, in its field: it is not summed.
    trusted: bool,
}

impl Net<'_> {
    /// Whether `partial` (offsets from the start of the IP header) is the checksum field of
    /// this unfragmented packet's TCP or UDP header.
    #[inline(always)]
    fn is_checksum_field(&self, partial: Partial) -> bool {
        let field = match self.proto {
            proto::TCP => TCP_CHECKSUM_AT,
            proto::UDP => UDP_CHECKSUM_AT,
            _ => return false,
        };
        !self.fragment
            && (usize::from(partial.start), usize::from(partial.offset)) == (self.payload_at, field)
    }

    /// The checksum verdict of the transport segment (the whole payload) whose checksum field
    /// is at byte `field`; `pseudo` says whether the sum covers the pseudo-header. Inlined, so
    /// that the header's facts are not written out for it.
    #[inline(always)]
    fn checksum(&self, field: usize, pseudo: bool) -> Verdict {
        let sum = if pseudo {
            let (src, dst) = self.addresses.split_at(self.addresses.len() / 2);
            let len = self.payload.len() as u16;
            checksum::pseudo_header(src, dst, self.proto, len)
        } else {
            Default::default()
        };
        checksum::segment(&sum, self.payload, field)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn addr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// An IPv4 header; `buf` may be longer than the packet (Ethernet padding) or, for a packet
/// quoted in an ICMP error, shorter (then `payload` is what is there). The fixed 20 bytes are
/// read from one array after one length check.
fn ipv4(buf: &[u8]) -> Option<Net<'_>> {
    let h: &[u8; 20] = buf.first_chunk()?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 || buf.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < ihl {
        return None;
    }
    let end = total.min(buf.len());
    let frag = u16::from_be_bytes([h[6], h[7]]);
    Some(Net {
        src: Addr::v4([h[12], h[13], h[14], h[15]]),
        dst: Addr::v4([h[16], h[17], h[18], h[19]]),
        proto: h[9],
        fragment: frag & 0x3fff != 0, // more-fragments bit or a fragment offset
        later_fragment: frag & 0x1fff != 0,
        v6: false,
        len: total as u32,
        header: &buf[..ihl],
        addresses: &h[12..20],
        payload_at: ihl,
        payload: &buf[ihl..end],
        trusted: false,
    })
}

/// Extension headers followed before giving up.
const MAX_EXT_HEADERS: usize = 8;

fn ipv6(buf: &[u8]) -> Option<Net<'_>> {
    if buf.first()? >> 4 != 6 || buf.len() < 40 {
        return None;
    }
    let end = (40 + usize::from(be16(buf, 4)?)).min(buf.len());
    let mut next = buf[6];
    let mut off = 40;
    let mut fragment = false;
    let mut later_fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        let ext_len = match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units after the first 8.
            0 | 43 | 60 => (usize::from(*buf.get(off + 1)?) + 1) * 8,
            // Fragment header.
            44 => {
                fragment = true;
                later_fragment |= be16(buf, off + 2)? >> 3 != 0;
                8
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => (usize::from(*buf.get(off + 1)?) + 2) * 4,
            _ => break,
        };
        next = *buf.get(off)?;
        off += ext_len;
    }
    if off > end {
        return None;
    }
    Some(Net {
        src: Addr(addr(buf, 8)?),
        dst: Addr(addr(buf, 24)?),
        proto: next,
        fragment,
        later_fragment,
        v6: true,
        len: end as u32,
        header: &[],
        addresses: buf.get(8..40)?,
        payload_at: off,
        payload: &buf[off..end],
        trusted: false,
    })
}

/// Parses the transport header of `l3` into `out`. Inlined into [`parse`] and
/// [`parse_partial`]: it runs on every inspected IP packet. Each kind of packet is written out
/// where it is recognised, so that what conntrack tracks of it is known there.
#[inline(always)]
fn transport(l3: &Net<'_>, zone: u16, out: Out<'_>) -> Parsed {
    let p = l3.payload;
    if l3.fragment {
        // Conntrack does not follow fragments, but port security and stateless rules judge what
        // the first one says of its transport header (a router advertisement or DHCP offer in
        // a fragment is still one).
        let (mut ports, mut icmp) = ((0, 0), None);
        if !l3.later_fragment {
            match (l3.proto, l3.v6) {
                (proto::TCP | proto::UDP | proto::SCTP, _) => {
                    if let (Some(sport), Some(dport)) = (be16(p, 0), be16(p, 2)) {
                        ports = (sport, dport);
                    }
                }
                (proto::ICMP, false) | (proto::ICMPV6, true) => icmp = icmp_fields(p, l3.v6),
                _ => {}
            }
        }
        write(l3, zone, out, ports, icmp, Some(((0, 0), L4::Fragment)));
        return Parsed::Ip(None);
    }
    match (l3.proto, l3.v6) {
        (proto::TCP, _) => {
            let Some((sport, dport, seg)) = tcp(p) else {
                return Parsed::Malformed;
            };
            let Ok(fix) = checksum(l3) else {
                return Parsed::BadChecksum;
            };
            let ports = (sport, dport);
            write(l3, zone, out, ports, None, Some((ports, L4::Tcp(seg))));
            Parsed::Ip(fix)
        }
        (proto::UDP | proto::SCTP, _) => {
            let (Some(sport), Some(dport), true) = (be16(p, 0), be16(p, 2), p.len() >= 8) else {
                return Parsed::Malformed;
            };
            let Ok(fix) = checksum(l3) else {
                return Parsed::BadChecksum;
            };
            let ports = (sport, dport);
            let l4 = if l3.proto == proto::UDP {
                L4::Udp
            } else {
                L4::Other
            };
            write(l3, zone, out, ports, None, Some((ports, l4)));
            Parsed::Ip(fix)
        }
        (proto::ICMP, false) | (proto::ICMPV6, true) => {
            let Some(fields) = icmp_fields(p, l3.v6) else {
                return Parsed::Malformed;
            };
            let Ok(fix) = checksum(l3) else {
                return Parsed::BadChecksum;
            };
            let kind = fields.0 .0;
            let ct = if l3.v6 && icmpv6::is_nd_or_mld(kind) {
                None
            } else {
                let family = if l3.v6 {
                    IcmpFamily::V6
                } else {
                    IcmpFamily::V4
                };
                let Some(ct) = icmp(p, zone, family) else {
                    return Parsed::Malformed;
                };
                Some(ct)
            };
            write(l3, zone, out, (0, 0), Some(fields), ct);
            Parsed::Ip(fix)
        }
        _ => {
            let Ok(fix) = checksum(l3) else {
                return Parsed::BadChecksum;
            };
            write(l3, zone, out, (0, 0), None, Some(((0, 0), L4::Other)));
            Parsed::Ip(fix)
        }
    }
}

/// Writes a well-formed packet to `out`: its flow, with `ports` and the ICMP type, code and
/// neighbour advertisement target in `icmp`, and, unless `ct` is `None` (untracked), its
/// conntrack packet, with the tuple's ports and protocol details `ct` gives. Inlined where
/// each kind of packet is written, so that the protocol details are written as that kind.
#[inline(always)]
fn write(
    l3: &Net<'_>,
    zone: u16,
    out: Out<'_>,
    (sport, dport): (u16, u16),
    icmp: Option<((u8, u8), Option<Addr>)>,
    ct: Option<((u16, u16), L4)>,
) {
    let (icmp, nd_target) = match icmp {
        Some((kind_code, target)) => (Some(kind_code), target),
        None => (None, None),
    };
    let tuple = Tuple {
        zone,
        v6: l3.v6,
        proto: l3.proto,
        src: l3.src,
        dst: l3.dst,
        sport,
        dport,
    };
    *out.l3 = L3::Ip(Flow::of_packet(&tuple, icmp, nd_target));
    *out.ct = ct.map(|((sport, dport), l4)| Packet {
        tuple: Tuple {
            sport,
            dport,
            ..tuple
        },
        l4,
        len: l3.len,
    });
}

/// An ICMP or ICMPv6 message's type and code, and a neighbour advertisement's target; `None` if
/// the message is cut short of them.
fn icmp_fields(p: &[u8], v6: bool) -> Option<((u8, u8), Option<Addr>)> {
    let (&kind, &code) = (p.first()?, p.get(1)?);
    let target = if v6 && kind == icmpv6::NEIGHBOR_ADVERT {
        Some(Addr(addr(p, 8)?))
    } else {
        None
    };
    Some(((kind, code), target))
}

/// The transport checksum of an unfragmented packet is wrong.
struct BadChecksum;

/// Checks the transport checksum of an unfragmented packet: complete and correct, or partial
/// where senders offload it (TCP and UDP; then the completion is returned). IPv4 UDP may carry
/// none (0); protocols whose checksum brink does not verify pass, and so does a checksum the
/// sender said it left partial (`trusted`). Inlined: for the usual packet it is a few tests.
#[inline(always)]
fn checksum(l3: &Net<'_>) -> Result<Option<Fixup>, BadChecksum> {
    if l3.trusted {
        return Ok(None);
    }
    let (field, pseudo, offloadable) = match (l3.proto, l3.v6) {
        (proto::TCP, _) => (TCP_CHECKSUM_AT, true, true),
        (proto::UDP, false) if be16(l3.payload, UDP_CHECKSUM_AT) == Some(0) => return Ok(None),
        (proto::UDP, _) => (UDP_CHECKSUM_AT, true, true),
        (proto::ICMP, false) => (2, false, false),
        (proto::ICMPV6, true) => (2, true, false),
        _ => return Ok(None),
    };
    match l3.checksum(field, pseudo) {
        Verdict::Valid => Ok(None),
        Verdict::Partial(bytes) if offloadable => Ok(Some(Fixup {
            at: u16::try_from(l3.payload_at + field).unwrap_or(u16::MAX),
            bytes,
        })),
        _ => Err(BadChecksum),
    }
}

/// Source port, destination port and the segment facts conntrack tracks. The fixed 20 bytes
/// are read from one array after one length check.
fn tcp(p: &[u8]) -> Option<(u16, u16, TcpSegment)> {
    let h: &[u8; 20] = p.first_chunk()?;
    let doff = usize::from(h[12] >> 4) * 4;
    if doff < 20 || p.len() < doff {
        return None;
    }
    let flags = h[13];
    let mut wscale = None;
    // Options: only window scale matters, and only on SYNs.
    if flags & brink_conntrack::tcp::flags::SYN != 0 {
        let mut o = 20;
        while o < doff {
            match p[o] {
                0 => break,
                1 => o += 1,
                kind => {
                    let len = usize::from(*p.get(o + 1)?);
                    if len < 2 || o + len > doff {
                        return None;
                    }
                    if kind == 3 && len == 3 {
                        wscale = Some(p[o + 2]);
                    }
                    o += len;
                }
            }
        }
    }
    let seg = TcpSegment {
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        window: u16::from_be_bytes([h[14], h[15]]),
        flags,
        payload_len: (p.len() - doff) as u32,
        wscale,
    };
    let port = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    Some((port(0), port(2), seg))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IcmpFamily {
    V4,
    V6,
}

/// An ICMP or ICMPv6 message in conntrack zone `zone`, as its tuple's ports and what conntrack
/// tracks: echoes keyed by identifier, errors with the packet they quote.
fn icmp(p: &[u8], zone: u16, family: IcmpFamily) -> Option<((u16, u16), L4)> {
    let kind = *p.first()?;
    if p.len() < 8 {
        return None;
    }
    let (echo_request, echo_reply, is_error) = match family {
        IcmpFamily::V4 => (8, 0, matches!(kind, 3 | 11 | 12)),
        IcmpFamily::V6 => (128, 129, matches!(kind, 1..=4)),
    };
    if kind == echo_request || kind == echo_reply {
        let id = be16(p, 4)?;
        let reply = kind == echo_reply;
        return Some(((id, id), L4::IcmpEcho { reply }));
    }
    if !is_error {
        return Some(((0, 0), L4::Other));
    }
    // The quoted packet: its IP header and at least the first 8 bytes of its transport header.
    let quoted = &p[8..];
    let inner = match family {
        IcmpFamily::V4 => ipv4(quoted)?,
        IcmpFamily::V6 => ipv6(quoted)?,
    };
    let mut q = Tuple {
        zone,
        v6: inner.v6,
        proto: inner.proto,
        src: inner.src,
        dst: inner.dst,
        sport: 0,
        dport: 0,
    };
    let ip = inner.payload;
    match inner.proto {
        proto::TCP | proto::UDP | proto::SCTP => {
            q.sport = be16(ip, 0)?;
            q.dport = be16(ip, 2)?;
        }
        proto::ICMP | proto::ICMPV6 => {
            let id = be16(ip, 4)?;
            q.sport = id;
            q.dport = id;
        }
        _ => {}
    }
    Some(((0, 0), L4::IcmpError { quoted: q }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ethernet2Header, Icmpv4Type, Icmpv6Type, PacketBuilder, PacketBuilderStep};

    const ZONE: u16 = 7;

    /// A parse with its [`Out`] slots, for comparing whole.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Ip(Flow, Option<Packet>, Option<Fixup>),
        Malformed,
        BadChecksum,
        BadOffload,
    }

    fn seen(run: impl FnOnce(Out<'_>) -> Option<Parsed>) -> Option<Seen> {
        let (mut l3, mut ct) = (L3::Other, None);
        let parsed = run(Out {
            l3: &mut l3,
            ct: &mut ct,
        })?;
        Some(match (parsed, l3) {
            (Parsed::Ip(fix), L3::Ip(flow)) => Seen::Ip(flow, ct, fix),
            (Parsed::Ip(_), other) => panic!("a well-formed packet written as {other:?}"),
            (Parsed::Malformed, _) => Seen::Malformed,
            (Parsed::BadChecksum, _) => Seen::BadChecksum,
            (Parsed::BadOffload, _) => Seen::BadOffload,
        })
    }

    fn parse(ethertype: EtherType, payload: &[u8], zone: u16) -> Option<Seen> {
        seen(|out| super::parse(ethertype, payload, zone, out))
    }

    fn parse_partial(et: EtherType, payload: &[u8], zone: u16, p: Partial) -> Option<Seen> {
        seen(|out| super::parse_partial(et, payload, zone, p, out))
    }

    fn ip_payload(frame: &[u8]) -> (EtherType, &[u8]) {
        let eth = super::super::EthernetFrame::new_checked(frame).unwrap();
        (eth.ethertype(), eth.payload())
    }

    fn parsed(frame: &[u8]) -> Seen {
        let (et, p) = ip_payload(frame);
        parse(et, p, ZONE).unwrap()
    }

    fn track(frame: &[u8]) -> Packet {
        match parsed(frame) {
            Seen::Ip(_, Some(p), _) => p,
            other => panic!("not tracked: {other:?}"),
        }
    }

    /// Serializes a finished etherparse builder with `payload`.
    macro_rules! build {
        ($b:expr, $payload:expr) => {{
            let mut out = Vec::new();
            $b.write(&mut out, $payload).unwrap();
            out
        }};
    }

    fn eth() -> PacketBuilderStep<Ethernet2Header> {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    }

    #[test]
    fn a_partial_checksum_is_trusted_unsummed_only_at_the_tcp_or_udp_field() {
        let tcp = build!(eth().ipv6([1; 16], [2; 16], 64).tcp(1, 2, 3, 4), &[7; 100]);
        let udp = build!(
            eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1, 2),
            &[7; 100]
        );
        // Garbage in the checksum field: the payload is not summed, so it passes.
        for (mut frame, ip_header, field) in [(tcp, 40u16, 16u16), (udp, 20, 6)] {
            let at = usize::from(14 + ip_header + field);
            frame[at] ^= 0x5a;
            let (et, p) = ip_payload(&frame);
            let partial = |start, offset| Partial { start, offset };
            assert_eq!(parse(et, p, ZONE), Some(Seen::BadChecksum));
            let trusted = parse_partial(et, p, ZONE, partial(ip_header, field));
            assert!(
                matches!(trusted, Some(Seen::Ip(_, Some(_), None))),
                "{trusted:?}"
            );
            for (start, offset) in [(0, 10), (ip_header, field + 2), (ip_header + 8, 0)] {
                let refused = parse_partial(et, p, ZONE, partial(start, offset));
                assert_eq!(refused, Some(Seen::BadOffload), "{start}+{offset}");
            }
        }
        let ping = build!(
            eth()
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .icmpv4_echo_request(1, 1),
            &[0; 8]
        );
        let (et, p) = ip_payload(&ping);
        let partial = Partial {
            start: 20,
            offset: 2,
        };
        assert_eq!(
            parse_partial(et, p, ZONE, partial),
            Some(Seen::BadOffload),
            "ICMP"
        );
        assert_eq!(parse_partial(EtherType::Arp, &[0; 28], 1, partial), None);
    }

    #[test]
    fn tcp_syn_with_window_scale() {
        let b = eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 29200)
            .syn()
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let p = track(&build!(b, &[]));
        assert_eq!(
            p.tuple,
            Tuple {
                zone: ZONE,
                v6: false,
                proto: proto::TCP,
                src: Addr::v4([10, 0, 0, 1]),
                dst: Addr::v4([10, 0, 0, 2]),
                sport: 40000,
                dport: 80
            }
        );
        let L4::Tcp(seg) = p.l4 else { panic!("{p:?}") };
        assert_eq!(
            (seg.seq, seg.window, seg.flags, seg.payload_len, seg.wscale),
            (1000, 29200, 0x02, 0, Some(7))
        );
    }

    #[test]
    fn tcp_data_and_udp_over_ipv6() {
        let b = eth()
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1, 2, 5, 100)
            .ack(9)
            .psh();
        let p = track(&build!(b, &[0u8; 300]));
        let L4::Tcp(seg) = p.l4 else { panic!() };
        assert_eq!(
            (seg.ack, seg.payload_len, p.tuple.src, p.len),
            (9, 300, Addr([0xfd; 16]), 40 + 20 + 300)
        );
        let b = eth().ipv6([0xfd; 16], [0xfe; 16], 64).udp(5353, 53);
        let p = track(&build!(b, b"q"));
        assert_eq!((p.tuple.sport, p.tuple.dport, p.l4), (5353, 53, L4::Udp));
    }

    #[test]
    fn icmp_echo_uses_the_identifier() {
        let b = eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(0x1234, 1);
        let p = track(&build!(b, b"ping"));
        assert_eq!(
            (p.tuple.sport, p.tuple.dport, p.l4),
            (0x1234, 0x1234, L4::IcmpEcho { reply: false })
        );
        let b = eth().ipv6([1; 16], [2; 16], 64).icmpv6_echo_reply(0x99, 1);
        assert_eq!(track(&build!(b, b"")).l4, L4::IcmpEcho { reply: true });
    }

    #[test]
    fn icmp_errors_carry_the_quoted_tuple() {
        // The UDP packet 10.0.0.1:5000 -> 10.0.0.2:53 that a router could not deliver.
        let quoted = build!(
            PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(5000, 53),
            b"x"
        );
        let b = eth().ipv4([192, 0, 2, 1], [10, 0, 0, 1], 64).icmpv4(
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        );
        let p = track(&build!(b, &quoted[..28]));
        let want = Tuple {
            zone: ZONE,
            v6: false,
            proto: proto::UDP,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            sport: 5000,
            dport: 53,
        };
        assert_eq!(p.l4, L4::IcmpError { quoted: want });

        let quoted6 = build!(
            PacketBuilder::ipv6([1; 16], [2; 16], 64).tcp(40000, 443, 1, 1000),
            &[0; 8]
        );
        let b = eth()
            .ipv6([9; 16], [1; 16], 64)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 });
        let p = track(&build!(b, &quoted6[..48]));
        let L4::IcmpError { quoted } = p.l4 else {
            panic!("{p:?}")
        };
        assert_eq!(
            (quoted.proto, quoted.sport, quoted.dport),
            (proto::TCP, 40000, 443)
        );
        // Cut inside the quoted transport header: malformed, not a panic.
        let b = eth()
            .ipv6([9; 16], [1; 16], 64)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 });
        assert_eq!(parsed(&build!(b, &quoted6[..41])), Seen::Malformed);
    }

    #[test]
    fn neighbour_discovery_is_untracked_and_advertisements_carry_their_target() {
        let nd = |kind| {
            eth()
                .ipv6([1; 16], [2; 16], 255)
                .icmpv6(Icmpv6Type::Unknown {
                    type_u8: kind,
                    code_u8: 0,
                    bytes5to8: [0; 4],
                })
        };
        let Seen::Ip(flow, None, _) = parsed(&build!(nd(135), &[7; 20])) else {
            panic!("a solicitation is tracked or malformed");
        };
        assert_eq!((flow.icmp, flow.nd_target), (Some((135, 0)), None));
        let Seen::Ip(flow, None, _) = parsed(&build!(nd(136), &[7; 20])) else {
            panic!("an advertisement is tracked or malformed");
        };
        assert_eq!(flow.nd_target, Some(Addr([7; 16])));
        assert_eq!(parsed(&build!(nd(136), &[7; 8])), Seen::Malformed);
    }

    #[test]
    fn flows_carry_ports_or_icmp_type_and_code() {
        let b = eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(68, 67);
        let Seen::Ip(flow, Some(_), _) = parsed(&build!(b, &[0; 8])) else {
            panic!("UDP not tracked");
        };
        assert_eq!((flow.sport, flow.dport, flow.rule_port()), (68, 67, 67));
        assert!(!flow.v6 && flow.src == Addr::v4([10, 0, 0, 1]));
        let b = eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4(Icmpv4Type::TimestampRequest(
                etherparse::icmpv4::TimestampMessage::from_bytes([0; 16]),
            ));
        let Seen::Ip(flow, _, _) = parsed(&build!(b, &[])) else {
            panic!("ICMP not parsed");
        };
        assert_eq!(flow.rule_port(), 13 << 8);
    }

    #[test]
    fn fragments_are_marked() {
        let mut f = build!(
            eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1, 2),
            &[0; 16]
        );
        let (mut h, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
        h.more_fragments = true;
        h.header_checksum = h.calc_header_checksum();
        f[14..34].copy_from_slice(&h.to_bytes());
        assert_eq!(track(&f).l4, L4::Fragment);
        let Seen::Ip(first, _, _) = parsed(&f) else {
            panic!("not IP")
        };
        assert_eq!(
            (first.sport, first.dport),
            (1, 2),
            "the first fragment's ports"
        );
        h.fragment_offset = etherparse::IpFragOffset::try_new(2).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut later = f.clone();
        later[14..34].copy_from_slice(&h.to_bytes());
        let Seen::Ip(later, _, _) = parsed(&later) else {
            panic!("not IP")
        };
        assert_eq!(
            (later.sport, later.dport),
            (0, 0),
            "a later fragment has none"
        );
        f[14 + 10] ^= 1;
        assert_eq!(parsed(&f), Seen::BadChecksum, "header checksum");
    }

    #[test]
    fn non_ip_is_not_parsed() {
        assert_eq!(parse(EtherType::Arp, &[0; 28], 1), None);
    }

    #[test]
    fn short_and_inconsistent_headers_are_malformed() {
        let f = build!(
            eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 2, 3, 4),
            &[]
        );
        let (et, p) = ip_payload(&f);
        for cut in [0, 10, 19, 25, 39] {
            assert_eq!(
                parse(et, &p[..cut], 1),
                Some(Seen::Malformed),
                "cut at {cut}"
            );
        }
        let mut bad = p.to_vec();
        bad[20 + 12] = 0x40; // TCP data offset 16 bytes
        assert_eq!(parse(et, &bad, 1), Some(Seen::Malformed));
    }

    #[test]
    fn a_hop_by_hop_header_is_skipped() {
        let mut v6 = build!(PacketBuilder::ipv6([1; 16], [2; 16], 64).udp(7, 8), b"");
        // Insert an 8-byte hop-by-hop header (next header UDP) after the fixed header.
        let hbh = [17u8, 0, 1, 4, 0, 0, 0, 0];
        v6[6] = 0;
        let plen = u16::from_be_bytes([v6[4], v6[5]]) + 8;
        v6[4..6].copy_from_slice(&plen.to_be_bytes());
        v6.splice(40..40, hbh);
        let p = match parse(EtherType::Ipv6, &v6, 1) {
            Some(Seen::Ip(_, Some(p), _)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (p.tuple.proto, p.tuple.sport, p.tuple.dport),
            (proto::UDP, 7, 8)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(et in proptest::prop_oneof![proptest::strategy::Just(0x0800u16), proptest::strategy::Just(0x86dd)], bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(EtherType::from(et), &bytes, 1);
        }
    }
}
