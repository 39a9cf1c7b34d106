//! Ethernet II frames and MAC addresses.

use std::fmt;
use std::str::FromStr;

/// Why a frame could not be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header it should hold.
    #[error("frame truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit is set.
    #[inline]
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The address as the low 48 bits of a `u64`.
    #[inline]
    pub fn to_u64(self) -> u64 {
        let m = self.0;
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }

    /// True for the all-zero address, which no station may use.
    #[inline]
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address {0:?}: expected six hex octets like 02:00:00:00:00:01")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// The EtherType field. Unknown values are data, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    /// IPv4 (0x0800).
    Ipv4,
    /// ARP (0x0806).
    Arp,
    /// 802.1Q VLAN tag (0x8100).
    Vlan,
    /// IPv6 (0x86dd).
    Ipv6,
    /// Anything else, including 802.3 length fields.
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(v) => v,
        }
    }
}

/// A checked view of an Ethernet II header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// Length of the Ethernet II header: destination, source, EtherType.
    pub const HEADER_LEN: usize = 14;

    /// Views `buf` as an Ethernet frame after one length check.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated {
                len: buf.len(),
                need: Self::HEADER_LEN,
            });
        }
        Ok(EthernetFrame { buf })
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.mac_at(0))
    }

    /// Source MAC address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(self.mac_at(6))
    }

    /// The EtherType field.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(u16::from_be_bytes([self.buf[12], self.buf[13]]))
    }

    /// The bytes after the Ethernet header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[Self::HEADER_LEN..]
    }

    #[inline]
    fn mac_at(&self, off: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf[off..off + 6]);
        m
    }
}

/// Writes an Ethernet II header into the first 14 bytes of `buf`.
///
/// Returns the number of bytes written, or an error if `buf` is too short.
pub fn emit_header(
    buf: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
) -> Result<usize, WireError> {
    let need = EthernetFrame::HEADER_LEN;
    let hdr = buf
        .get_mut(..need)
        .ok_or(WireError::Truncated { len: 0, need })?;
    hdr[0..6].copy_from_slice(&dst.0);
    hdr[6..12].copy_from_slice(&src.0);
    hdr[12..14].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An ARP request from 52:54:00:12:34:56 to broadcast, as captured.
    const ARP_REQ: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn parses_captured_arp_request() {
        let f = EthernetFrame::new_checked(&ARP_REQ).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert!(f.dst().is_multicast());
        assert_eq!(f.src(), "52:54:00:12:34:56".parse().unwrap());
        assert!(!f.src().is_multicast());
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn rejects_short_frames() {
        for len in 0..EthernetFrame::HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_REQ[..len]).unwrap_err(),
                WireError::Truncated { len, need: 14 }
            );
        }
    }

    #[test]
    fn mac_parse_rejects_garbage() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "0g:00:00:00:00:01",
            "2:0:0:0:0:1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} should not parse");
        }
        assert_eq!(
            "02-00-00-00-00-0A".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 0x0a])
        );
    }

    #[test]
    fn unknown_ethertype_is_data() {
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(u16::from(EtherType::from(0x88cc)), 0x88cc);
    }

    proptest! {
        #[test]
        fn parse_of_emit_is_identity(dst: [u8; 6], src: [u8; 6], et: u16, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = vec![0u8; 14 + payload.len()];
            emit_header(&mut buf, MacAddr(dst), MacAddr(src), EtherType::from(et)).unwrap();
            buf[14..].copy_from_slice(&payload);
            let f = EthernetFrame::new_checked(&buf).unwrap();
            prop_assert_eq!(f.dst(), MacAddr(dst));
            prop_assert_eq!(f.src(), MacAddr(src));
            prop_assert_eq!(u16::from(f.ethertype()), et);
            prop_assert_eq!(f.payload(), &payload[..]);
        }

        #[test]
        fn agrees_with_etherparse(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ours = EthernetFrame::new_checked(&bytes);
            let theirs = etherparse::Ethernet2HeaderSlice::from_slice(&bytes);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok());
            if let (Ok(o), Ok(t)) = (ours, theirs) {
                prop_assert_eq!(o.dst().0, t.destination());
                prop_assert_eq!(o.src().0, t.source());
                prop_assert_eq!(u16::from(o.ethertype()), t.ether_type().0);
            }
        }

        #[test]
        fn mac_display_parse_roundtrip(m: [u8; 6]) {
            prop_assert_eq!(MacAddr(m).to_string().parse::<MacAddr>().unwrap(), MacAddr(m));
        }
    }
}
