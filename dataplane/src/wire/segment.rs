//! Software TCP segmentation: what a NIC does for TCP segmentation offload (TSO), done by the
//! switch when a frame is larger than its destination's MTU.
//!
//! A guest with TSO on (the virtio-net default) hands its tap TCP *superframes* of up to 64 KiB,
//! counting on the host to cut them into segments. AF_XDP carries no segmentation metadata, so
//! brink recognises such a frame by its size: a TCP frame larger than the network's MTU. Each
//! segment gets the superframe's headers with its own lengths, sequence number and checksums,
//! as Linux's `tcp_gso_segment` makes them: IPv4 ids count up, CWR stays on the first segment
//! only, FIN and PSH on the last only. Conntrack has judged the superframe as the byte range it
//! covers, which is exactly what its segments cover.

use etherparse::checksum::Sum16BitWords;

use super::checksum::{pseudo_header, sum};
use super::ethernet::EthernetFrame;

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86dd;
const TCP: u8 = 6;
const TCP_CWR: u8 = 0x80;
const TCP_PSH: u8 = 0x08;
const TCP_FIN: u8 = 0x01;
const IPV6_HEADER: usize = 40;

/// Where a TCP frame's headers end, parsed once.
struct Layout {
    v4: bool,
    /// Length of the IP header.
    ip_header: usize,
    /// Length of Ethernet, IP and TCP headers together.
    headers: usize,
    /// Length of the IP packet (what its header says).
    ip_len: usize,
}

fn layout(frame: &[u8]) -> Option<Layout> {
    let eth = EthernetFrame::HEADER_LEN;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(eth..)?;
    let (v4, ip_header, ip_len) = match ethertype {
        IPV4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
            if ip[0] >> 4 != 4 || ihl < 20 || *ip.get(9)? != TCP || fragment != 0 {
                return None;
            }
            (true, ihl, usize::from(u16::from_be_bytes([ip[2], ip[3]])))
        }
        IPV6 => {
            if *ip.get(6)? != TCP {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            (false, IPV6_HEADER, IPV6_HEADER + payload)
        }
        _ => return None,
    };
    let tcp = ip.get(ip_header..ip_len)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    if data_offset < 20 || data_offset > tcp.len() {
        return None;
    }
    Some(Layout {
        v4,
        ip_header,
        headers: eth + ip_header + data_offset,
        ip_len,
    })
}

/// Cuts the TCP frame `frame` into segments whose IP packets fit `mtu`, building each in `buf`
/// and handing it to `emit`, which returns false to stop early (no buffer left). Returns how
/// many segments were emitted, or `None` if `frame` is not a TCP frame that can be segmented
/// (another protocol, an IP fragment, broken headers, or headers that leave no room for data).
pub fn tcp_segments(
    frame: &[u8],
    mtu: usize,
    buf: &mut [u8],
    mut emit: impl FnMut(&[u8]) -> bool,
) -> Option<usize> {
    let at = layout(frame)?;
    let eth = EthernetFrame::HEADER_LEN;
    let payload = frame.get(at.headers..eth + at.ip_len)?;
    let mss = mtu
        .checked_sub(at.headers - eth)?
        .min(buf.len().checked_sub(at.headers)?);
    if mss == 0 {
        return None;
    }
    let tcp_at = eth + at.ip_header;
    let seq = u32::from_be_bytes(frame.get(tcp_at + 4..tcp_at + 8)?.try_into().ok()?);
    let ip_id = u16::from_be_bytes([frame[eth + 4], frame[eth + 5]]);
    let count = payload.len().div_ceil(mss);
    for (k, chunk) in payload.chunks(mss).enumerate() {
        let len = at.headers + chunk.len();
        let out = &mut buf[..len];
        out[..at.headers].copy_from_slice(&frame[..at.headers]);
        out[at.headers..].copy_from_slice(chunk);
        let ip_len = len - eth;
        let (ip, tcp) = out[eth..].split_at_mut(at.ip_header);
        let pseudo = if at.v4 {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.wrapping_add(k as u16).to_be_bytes());
            ip[10..12].fill(0);
            let check = Sum16BitWords::new().add_slice(ip).ones_complement();
            ip[10..12].copy_from_slice(&check.to_ne_bytes());
            pseudo_header(&ip[12..16], &ip[16..20], TCP, tcp.len() as u16)
        } else {
            ip[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
            pseudo_header(&ip[8..24], &ip[24..40], TCP, tcp.len() as u16)
        };
        let offset = (k * mss) as u32;
        tcp[4..8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
        if k > 0 {
            tcp[13] &= !TCP_CWR;
        }
        if k + 1 < count {
            tcp[13] &= !(TCP_FIN | TCP_PSH);
        }
        tcp[16..18].fill(0);
        let check = sum(pseudo, tcp).ones_complement();
        tcp[16..18].copy_from_slice(&check.to_ne_bytes());
        if !emit(out) {
            return Some(k);
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn superframe(v6: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC, MAC);
        let b = if v6 {
            b.ipv6([1; 16], [2; 16], 64)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let b = b
            .tcp(40000, 80, 1_000_000, 501)
            .ack(7)
            .psh()
            .fin()
            .cwr()
            .options(&[etherparse::TcpOptionElement::Timestamp(1, 2)])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut frame = Vec::new();
        b.write(&mut frame, payload)
            .unwrap_or_else(|e| panic!("{e}"));
        frame
    }

    fn segment_all(frame: &[u8], mtu: usize) -> Option<Vec<Vec<u8>>> {
        let mut buf = vec![0u8; 9216];
        let mut out = Vec::new();
        let n = tcp_segments(frame, mtu, &mut buf, |s| {
            out.push(s.to_vec());
            true
        })?;
        assert_eq!(n, out.len());
        Some(out)
    }

    #[test]
    fn superframes_become_mtu_sized_segments_with_correct_headers() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        for v6 in [false, true] {
            let frame = superframe(v6, &payload);
            let segments = segment_all(&frame, 1500).unwrap_or_else(|| panic!("v6={v6}"));
            let mut joined = Vec::new();
            for (k, s) in segments.iter().enumerate() {
                assert!(s.len() - 14 <= 1500, "segment {k} is {} bytes", s.len());
                let p = SlicedPacket::from_ethernet(s).unwrap_or_else(|e| panic!("{e}"));
                let Some(TransportSlice::Tcp(tcp)) = p.transport else {
                    panic!("segment {k} is not TCP");
                };
                let want = match &p.net {
                    Some(NetSlice::Ipv4(ip)) => {
                        let h = ip.header().to_header();
                        assert_eq!(h.header_checksum, h.calc_header_checksum(), "{k}");
                        assert_eq!(ip.header().identification(), k as u16);
                        tcp.calc_checksum_ipv4(ip.header().source(), ip.header().destination())
                    }
                    Some(NetSlice::Ipv6(ip)) => {
                        tcp.calc_checksum_ipv6(ip.header().source(), ip.header().destination())
                    }
                    _ => panic!("segment {k} is not IP"),
                };
                assert_eq!(
                    tcp.checksum(),
                    want.unwrap_or_else(|e| panic!("{e}")),
                    "{k}"
                );
                assert_eq!(tcp.sequence_number(), 1_000_000 + joined.len() as u32);
                let last = k + 1 == segments.len();
                assert_eq!(
                    (tcp.fin(), tcp.psh(), tcp.cwr()),
                    (last, last, k == 0),
                    "{k}"
                );
                assert!(tcp.ack() && tcp.acknowledgment_number() == 7);
                joined.extend_from_slice(tcp.payload());
            }
            assert_eq!(joined, payload, "v6={v6}");
        }
    }

    #[test]
    fn only_whole_tcp_packets_are_segmented() {
        let frame = superframe(false, &[1; 4000]);
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut udp, &[0; 4000])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(segment_all(&udp, 1500).is_none(), "UDP");
        let mut fragment = frame.clone();
        fragment[14 + 6] |= 0x20;
        assert!(segment_all(&fragment, 1500).is_none(), "fragment");
        assert!(segment_all(&frame[..100], 1500).is_none(), "cut short");
        assert!(segment_all(&frame, 52).is_none(), "headers fill the MTU");
        let mut stop_after_two = 0;
        let mut buf = [0u8; 2048];
        let n = tcp_segments(&frame, 1500, &mut buf, |_| {
            stop_after_two += 1;
            stop_after_two < 2
        });
        assert_eq!(n, Some(1), "emit refused the second segment");
    }
}
