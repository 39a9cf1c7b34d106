//! Internet checksums (RFC 1071) of IPv4 headers and transport segments, as conntrack needs
//! them checked: Linux (`nf_conntrack_checksum=1`) and Open vSwitch's userspace conntrack treat
//! a packet with a bad checksum as invalid, so brink does too.
//!
//! A VM with transmit checksum offload on (the default on veth, tap and virtio-net) sends TCP and
//! UDP segments whose checksum field holds only the folded pseudo-header sum, for the device to
//! complete. Such a *partial* checksum is recognised and reported apart from a bad one.
//!
//! Pseudo-headers are summed with etherparse's `Sum16BitWords`; segments with [`sum`], which
//! adds 32-bit words into four 64-bit lanes the compiler vectorises: on a full-size frame it is
//! several times faster than etherparse's word-at-a-time loop with carries (see
//! docs/BENCHMARKS.md), and this sum runs on every inspected TCP and UDP frame. The usual IPv4
//! header, without options, is summed as its five 32-bit words.

use etherparse::checksum::Sum16BitWords;

/// The one's complement sum of `bytes` as 16-bit words in native byte order (an odd last byte
/// padded with zero), folded into a [`Sum16BitWords`]-compatible running sum via `start`.
pub fn sum(mut start: Sum16BitWords, bytes: &[u8]) -> Sum16BitWords {
    let mut lanes = [0u64; 4];
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        for (lane, word) in lanes.iter_mut().zip(c.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    // 32-bit words summed into 64-bit lanes cannot overflow below 2^32 words; fold the lanes
    // to 32 bits with end-around carries, then hand the rest to etherparse.
    let total = lanes.iter().fold(0u64, |acc, &l| {
        let (s, carry) = acc.overflowing_add(l);
        s + u64::from(carry)
    });
    start
        .add_4bytes(fold(total).to_ne_bytes())
        .add_slice(chunks.remainder())
}

/// A sum of 32-bit words folded to 32 bits with end-around carries.
#[inline]
fn fold(total: u64) -> u32 {
    let folded = (total >> 32) + (total & 0xffff_ffff);
    ((folded >> 32) + (folded & 0xffff_ffff)) as u32
}

/// Where a transport checksum its sender left partial lies (virtio-net's `csum_start` and
/// `csum_offset`, Linux's `CHECKSUM_PARTIAL`): the field at `start + offset` holds the
/// pseudo-header sum, and the sum of the bytes from `start` to the end of the frame completes
/// it. Offsets count from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Where the checksummed bytes start: the transport header.
    pub start: u16,
    /// Where the checksum field is, from `start`.
    pub offset: u16,
}

impl Partial {
    /// Offset of the checksum field from the start of the frame.
    pub fn field(&self) -> usize {
        usize::from(self.start) + usize::from(self.offset)
    }

    /// Whether the checksum field lies inside a frame of `len` bytes.
    pub fn fits(&self, len: usize) -> bool {
        self.field() + 2 <= len
    }

    /// Completes the checksum in `frame`; `false`, with nothing changed, if its field lies
    /// outside.
    pub fn complete(&self, frame: &mut [u8]) -> bool {
        let (start, field) = (usize::from(self.start), self.field());
        if !self.fits(frame.len()) {
            return false;
        }
        let sum = sum(Sum16BitWords::new(), &frame[start..]).ones_complement();
        frame[field..field + 2].copy_from_slice(&sum.to_ne_bytes());
        true
    }
}

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

/// Whether an IPv4 header (options included) carries a correct header checksum. The usual
/// header, without options, is summed as its five 32-bit words.
#[inline(always)]
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    match <&[u8; 20]>::try_from(header) {
        Ok(h) => {
            let word =
                |k: usize| u64::from(u32::from_ne_bytes([h[k], h[k + 1], h[k + 2], h[k + 3]]));
            let total = word(0) + word(4) + word(8) + word(12) + word(16);
            // Folded on to 16 bits with end-around carries, a correct header sums to all ones.
            let word = fold(total);
            let half = (word >> 16) + (word & 0xffff);
            (half >> 16) + (half & 0xffff) == 0xffff
        }
        Err(_) => sum(Sum16BitWords::new(), header).ones_complement() == 0,
    }
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
    let total = sum(pseudo.clone(), segment);
    if total.ones_complement() == 0 {
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
    let without_field = total.add_2bytes((!stored).to_ne_bytes());
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

    proptest::proptest! {
        #[test]
        fn sum_agrees_with_etherparse(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let want = Sum16BitWords::new().add_4bytes([1, 2, 3, 4]).add_slice(&bytes);
            let got = sum(Sum16BitWords::new().add_4bytes([1, 2, 3, 4]), &bytes);
            proptest::prop_assert_eq!(got.ones_complement(), want.ones_complement());
        }
    }

    proptest::proptest! {
        #[test]
        fn header_check_agrees_with_etherparse(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 20..=60)) {
            let want = Sum16BitWords::new().add_slice(&bytes).ones_complement() == 0;
            proptest::prop_assert_eq!(ipv4_header_ok(&bytes), want);
            // A header whose checksum field is set to make it correct passes.
            let mut fixed = bytes.clone();
            fixed[10..12].copy_from_slice(&[0, 0]);
            let complement = Sum16BitWords::new().add_slice(&fixed).ones_complement();
            fixed[10..12].copy_from_slice(&complement.to_ne_bytes());
            proptest::prop_assert!(ipv4_header_ok(&fixed));
        }
    }

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
