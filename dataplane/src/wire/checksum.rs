//! Internet checksums (RFC 1071) of IPv4 headers and transport segments, as conntrack needs
//! them checked: Linux (`nf_conntrack_checksum=1`) and Open vSwitch's userspace conntrack treat
//! a packet with a bad checksum as invalid, so brink does too.
//!
//! A VM with transmit checksum offload on (the default on veth, tap and virtio-net) sends TCP and
//! UDP segments whose checksum field holds only the folded pseudo-header sum, for the device to
//! complete. Such a *partial* checksum is recognised and reported apart from a bad one.
//!
//! The summing is etherparse's (`Sum16BitWords`, eight bytes at a time).

use etherparse::checksum::Sum16BitWords;

/// What a transport segment's checksum field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The checksum is complete and correct (or absent, where the protocol allows it).
    Valid,
    /// The field holds the pseudo-header sum only: the sender offloaded the checksum. The
    /// complete checksum, as the field's two bytes, is given.
    Partial([u8; 2]),
    /// The checksum is wrong.
    Bad,
}

/// Whether an IPv4 header (options included) carries a correct header checksum.
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    Sum16BitWords::new().add_slice(header).ones_complement() == 0
}

/// The sum of the pseudo-header of a segment of `len` bytes of protocol `proto` between the
/// addresses `src` and `dst` (4 bytes each for IPv4, 16 for IPv6).
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, len: u16) -> Sum16BitWords {
    Sum16BitWords::new()
        .add_slice(src)
        .add_slice(dst)
        .add_2bytes([0, proto])
        .add_2bytes(len.to_be_bytes())
}

/// Checks `segment`, whose checksum field is at byte `field`, against the sum `pseudo` of its
/// pseudo-header (an empty sum for ICMPv4, which has none).
pub fn segment(pseudo: &Sum16BitWords, segment: &[u8], field: usize) -> Verdict {
    if pseudo.clone().add_slice(segment).ones_complement() == 0 {
        return Verdict::Valid;
    }
    let Some(&[a, b]) = segment.get(field..field + 2) else {
        return Verdict::Bad;
    };
    // Both in native byte order: the summing works on native-order words.
    let stored = u16::from_ne_bytes([a, b]);
    let folded = !pseudo.ones_complement();
    // One's complement arithmetic has two zeros, 0x0000 and 0xffff.
    let zero = |v: u16| v == 0 || v == 0xffff;
    if stored != folded && !(zero(stored) && zero(folded)) {
        return Verdict::Bad;
    }
    // The sum with the field taken as zero (adding its complement cancels it); 0xffff stands
    // for a zero result, which UDP reserves for "no checksum".
    let without_field = pseudo
        .clone()
        .add_slice(segment)
        .add_2bytes((!stored).to_ne_bytes());
    Verdict::Partial(
        without_field
            .to_ones_complement_with_no_zero()
            .to_ne_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header of RFC 1071's usual example (checksum 0xb861).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn ipv4_header_checksums() {
        assert!(ipv4_header_ok(&HEADER));
        let mut bad = HEADER;
        bad[11] ^= 1;
        assert!(!ipv4_header_ok(&bad));
    }

    #[test]
    fn segments_are_valid_partial_or_bad() {
        // UDP 10.0.0.1:1000 -> 10.0.0.2:53, 4 payload bytes, checksum from etherparse.
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 53)
            .write(&mut frame, b"abcd")
            .unwrap_or_else(|e| panic!("{e}"));
        let udp = frame[20..].to_vec();
        let pseudo = pseudo_header(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, udp.len() as u16);
        assert_eq!(segment(&pseudo, &udp, 6), Verdict::Valid);
        let mut bad = udp.clone();
        bad[9] ^= 0x40;
        assert_eq!(segment(&pseudo, &bad, 6), Verdict::Bad);
        // What a kernel with checksum offload leaves: the folded pseudo-header sum.
        let mut partial = udp.clone();
        partial[6..8].copy_from_slice(&(!pseudo.ones_complement()).to_ne_bytes());
        let Verdict::Partial(complete) = segment(&pseudo, &partial, 6) else {
            panic!("not recognised as partial");
        };
        assert_eq!(
            complete,
            [udp[6], udp[7]],
            "completed as etherparse computes it"
        );
        assert_eq!(segment(&pseudo, &udp[..4], 6), Verdict::Bad, "cut short");
    }
}
