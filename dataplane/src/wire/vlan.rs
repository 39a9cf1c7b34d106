//! IEEE 802.1Q VLAN tags: the 4 bytes between the MAC addresses and the EtherType of a frame
//! on a trunk. brink reads, pushes and pops them itself (the host may have no 802.1Q devices).

/// The 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// The 802.1ad (service tag) protocol identifier, accepted on receive like 802.1Q.
pub const TPID_8021AD: u16 = 0x88a8;
/// Bytes a tag adds to a frame.
pub const TAG_LEN: usize = 4;
/// The largest VLAN id a network may use (0 means priority only, 4095 is reserved).
pub const MAX_VID: u16 = 4094;

mod field {
    use std::ops::Range;

    /// Destination and source MAC addresses, which stay in front of the tag.
    pub const MACS: usize = 12;
    /// Tag protocol identifier.
    pub const TPID: Range<usize> = 12..14;
    /// Tag control information: priority, drop eligibility and the 12-bit VLAN id.
    pub const TCI: Range<usize> = 14..16;
}

/// The VLAN id of a tagged frame; `None` for an untagged or short one.
#[inline]
pub fn vid(frame: &[u8]) -> Option<u16> {
    let tpid = u16::from_be_bytes(frame.get(field::TPID)?.try_into().ok()?);
    if tpid != TPID_8021Q && tpid != TPID_8021AD {
        return None;
    }
    let tci = u16::from_be_bytes(frame.get(field::TCI)?.try_into().ok()?);
    Some(tci & 0x0fff)
}

/// Inserts an 802.1Q tag with VLAN id `vid` (priority 0) after the MAC addresses: `buf` holds a
/// frame in all but its last [`TAG_LEN`] bytes, and all of it afterwards. Returns `false`, with
/// nothing changed, when the frame is shorter than its MAC addresses.
#[inline]
pub fn push(buf: &mut [u8], vid: u16) -> bool {
    let Some(len) = buf.len().checked_sub(TAG_LEN) else {
        return false;
    };
    if len < field::MACS {
        return false;
    }
    buf.copy_within(field::MACS..len, field::MACS + TAG_LEN);
    buf[field::TPID].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[field::TCI].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    true
}

/// Removes the tag of a tagged `frame`, moving what follows it forward: the frame is then the
/// first `frame.len() - TAG_LEN` bytes. Returns `false`, with nothing changed, for a frame
/// [`vid`] finds no tag in.
#[inline]
pub fn pop(frame: &mut [u8]) -> bool {
    if vid(frame).is_none() {
        return false;
    }
    frame.copy_within(field::MACS + TAG_LEN.., field::MACS);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP-typed frame from 02:..:01 with a 2-byte payload.
    const UNTAGGED: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, 0xab, 0xcd,
    ];
    /// The same frame tagged with VLAN 100.
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x81, 0x00, 0x00, 0x64, 0x08,
        0x06, 0xab, 0xcd,
    ];

    #[test]
    fn push_then_pop_round_trips() {
        let mut buf = [0u8; 20];
        buf[..16].copy_from_slice(&UNTAGGED);
        assert!(push(&mut buf, 100));
        assert_eq!(buf, TAGGED);
        assert_eq!(vid(&buf), Some(100));
        assert!(pop(&mut buf));
        assert_eq!(buf[..16], UNTAGGED);
    }

    #[test]
    fn reads_the_id_of_either_tpid() {
        let mut qinq = TAGGED;
        qinq[12..14].copy_from_slice(&TPID_8021AD.to_be_bytes());
        qinq[14] = 0xef; // priority 7, drop eligible, id 0xf64
        assert_eq!(vid(&qinq), Some(0xf64));
        assert_eq!(vid(&UNTAGGED), None);
        assert_eq!(vid(&TAGGED[..15]), None, "cut inside the tag");
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let mut untagged = UNTAGGED;
        assert!(!pop(&mut untagged));
        assert_eq!(untagged, UNTAGGED);
        let mut short = [0u8; 15];
        assert!(!push(&mut short, 1), "11 bytes of frame: no MACs");
        assert!(!push(&mut [0u8; 3], 1));
    }
}
