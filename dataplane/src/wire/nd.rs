//! IPv6 neighbour discovery (RFC 4861) as a neighbour responder needs it: the target of a
//! neighbour solicitation, and the advertisement that answers it. ARP's IPv6 counterpart of
//! [`super::arp`].

use super::checksum::{self, pseudo_header};
use super::ip::icmpv6;
use super::MacAddr;

/// Offset of the IPv6 header in an untagged Ethernet frame.
const IP_AT: usize = 14;
/// Offset of the ICMPv6 message: the IPv6 header is 40 bytes, and a solicitation carries no
/// extension header.
const ICMP_AT: usize = IP_AT + 40;
/// A solicitation without options: ICMPv6 type, code, checksum, reserved, target (24 bytes).
const SOLICIT_LEN: usize = ICMP_AT + 24;
/// ICMPv6 protocol number.
const ICMPV6: u8 = 58;
/// Neighbour discovery messages carry hop limit 255: they were not routed (RFC 4861 7.1.1).
const HOP_LIMIT: u8 = 255;
/// An advertisement with its target link-layer address option: 24 bytes and 8.
const ADVERT_ICMP_LEN: usize = 32;
/// An Ethernet/IPv6 neighbour advertisement with the target link-layer address option.
pub const ADVERT_LEN: usize = ICMP_AT + ADVERT_ICMP_LEN;

/// A neighbour solicitation a responder may answer: who asks (its IPv6 source) and for which
/// target address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitation {
    /// The asker's address.
    pub source: [u8; 16],
    /// The address asked for.
    pub target: [u8; 16],
}

/// The solicitation in untagged Ethernet `frame`, or `None` if it is not a neighbour
/// solicitation with hop limit 255 and code 0 directly after the IPv6 header. One from the
/// unspecified address (duplicate address detection) is `None` too: only the owner of the
/// address may answer that.
pub fn solicitation(frame: &[u8]) -> Option<Solicitation> {
    let message = frame.get(..SOLICIT_LEN)?;
    let ip = &message[IP_AT..ICMP_AT];
    let icmp = &message[ICMP_AT..];
    let is_solicitation = message[12..14] == [0x86, 0xdd]
        && ip[0] >> 4 == 6
        && (ip[6], ip[7]) == (ICMPV6, HOP_LIMIT)
        && (icmp[0], icmp[1]) == (icmpv6::NEIGHBOR_SOLICIT, 0);
    let source: [u8; 16] = ip[8..24].try_into().ok()?;
    if !is_solicitation || source == [0; 16] {
        return None;
    }
    Some(Solicitation {
        source,
        target: icmp[8..24].try_into().ok()?,
    })
}

/// The advertisement answering the solicitation in `frame` (checked by [`solicitation`]) that
/// its target is at `mac`: from the target, to the asker's address and MAC, solicited and
/// overriding, with the target link-layer address option.
pub fn advert(frame: &[u8], mac: MacAddr) -> Option<[u8; ADVERT_LEN]> {
    let asked = solicitation(frame)?;
    let mut r = [0u8; ADVERT_LEN];
    r[0..6].copy_from_slice(frame.get(6..12)?);
    r[6..12].copy_from_slice(&mac.0);
    r[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut r[IP_AT..ICMP_AT];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(ADVERT_ICMP_LEN as u16).to_be_bytes());
    (ip[6], ip[7]) = (ICMPV6, HOP_LIMIT);
    ip[8..24].copy_from_slice(&asked.target);
    ip[24..40].copy_from_slice(&asked.source);
    let icmp = &mut r[ICMP_AT..];
    icmp[0] = icmpv6::NEIGHBOR_ADVERT;
    // Flags: solicited (0x40) and override (0x20); not a router.
    icmp[4] = 0x60;
    icmp[8..24].copy_from_slice(&asked.target);
    // Option 2, target link-layer address, one unit of 8 bytes.
    icmp[24..26].copy_from_slice(&[2, 1]);
    icmp[26..32].copy_from_slice(&mac.0);
    let pseudo = pseudo_header(&asked.target, &asked.source, ICMPV6, ADVERT_ICMP_LEN as u16);
    let sum = checksum::sum(pseudo, icmp).ones_complement();
    icmp[2..4].copy_from_slice(&sum.to_ne_bytes());
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Type, SlicedPacket, TransportSlice};

    const ASKER: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const TARGET: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

    /// A solicitation from fd00::1 (02:..:01) for fd00::9, as Linux sends it: to the target's
    /// solicited-node group, with the source link-layer address option.
    fn solicit(source: [u8; 16]) -> Vec<u8> {
        let mut f = vec![0u8; SOLICIT_LEN + 8];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 9]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&32u16.to_be_bytes());
        (f[20], f[21]) = (58, 255);
        f[22..38].copy_from_slice(&source);
        f[38..54].copy_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 9]);
        f[54] = icmpv6::NEIGHBOR_SOLICIT;
        f[62..78].copy_from_slice(&TARGET);
        f[78..80].copy_from_slice(&[1, 1]);
        f[80..86].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f
    }

    #[test]
    fn a_solicitation_gets_a_solicited_advertisement_with_a_valid_checksum() {
        let req = solicit(ASKER);
        assert_eq!(
            solicitation(&req),
            Some(Solicitation {
                source: ASKER,
                target: TARGET
            })
        );
        let at = MacAddr([2, 0, 0, 0, 0, 9]);
        let r = advert(&req, at).unwrap();
        assert_eq!(&r[0..6], &[2, 0, 0, 0, 0, 1], "to the asker");
        assert_eq!(&r[6..12], &at.0, "from the answer");
        // etherparse reads it as an advertisement from the target to the asker, checksum right.
        let p = SlicedPacket::from_ethernet(&r).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6");
        };
        assert_eq!(ip.header().source(), TARGET);
        assert_eq!(ip.header().destination(), ASKER);
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6");
        };
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv6Type::NeighborAdvertisement(h) if h.solicited && h.r#override && !h.router
        ));
        let pseudo = pseudo_header(&TARGET, &ASKER, ICMPV6, ADVERT_ICMP_LEN as u16);
        assert_eq!(
            checksum::sum(pseudo, &r[ICMP_AT..]).ones_complement(),
            0,
            "checksum"
        );
        assert_eq!(&r[ICMP_AT + 8..ICMP_AT + 24], &TARGET);
        assert_eq!(&r[ICMP_AT + 24..], &[2, 1, 2, 0, 0, 0, 0, 9]);
        // An advertisement is not a solicitation.
        assert_eq!(solicitation(&r), None);
    }

    #[test]
    fn only_plain_solicitations_from_an_address_are_answered() {
        // Duplicate address detection comes from `::`: only the owner may answer.
        assert_eq!(solicitation(&solicit([0; 16])), None);
        let good = solicit(ASKER);
        assert_eq!(solicitation(&good[..SOLICIT_LEN - 1]), None, "cut short");
        let mut routed = good.clone();
        routed[21] = 64;
        assert_eq!(solicitation(&routed), None, "hop limit below 255");
        let mut coded = good.clone();
        coded[55] = 1;
        assert_eq!(solicitation(&coded), None, "code other than 0");
        let mut v4 = good;
        v4[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(solicitation(&v4), None, "not IPv6");
        assert_eq!(advert(&v4, MacAddr([2, 0, 0, 0, 0, 9])), None);
    }
}
