//! ARP for IPv4 over Ethernet: the sender fields port security checks, and the reply an ARP
//! responder sends for a request.

use super::MacAddr;

/// The sender of an ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSender {
    /// Sender hardware address.
    pub mac: MacAddr,
    /// Sender protocol (IPv4) address.
    pub ip: [u8; 4],
}

/// The sender of the ARP packet in `payload`, or `None` if it is not Ethernet/IPv4 ARP or is cut
/// short.
pub fn sender(payload: &[u8]) -> Option<ArpSender> {
    let header = payload.get(..28)?;
    if header[0..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(&header[8..14]);
    let mut ip = [0; 4];
    ip.copy_from_slice(&header[14..18]);
    Some(ArpSender {
        mac: MacAddr(mac),
        ip,
    })
}

/// An Ethernet/IPv4 ARP frame without padding: Ethernet header 14, ARP 28.
pub const FRAME_LEN: usize = 42;

/// The target IP of the ARP request in Ethernet `frame`, or `None` if it is not an
/// Ethernet/IPv4 ARP request.
pub fn request_target(frame: &[u8]) -> Option<[u8; 4]> {
    let arp = frame.get(14..FRAME_LEN)?;
    if frame[12..14] != [0x08, 0x06] || arp[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
        return None;
    }
    let mut ip = [0; 4];
    ip.copy_from_slice(&arp[24..28]);
    Some(ip)
}

/// The reply to the ARP request in `frame` (checked by [`request_target`]) saying that its
/// target IP is at `mac`, addressed to the requester.
pub fn reply(frame: &[u8], mac: MacAddr) -> Option<[u8; FRAME_LEN]> {
    let target = request_target(frame)?;
    let requester = sender(frame.get(14..)?)?;
    let mut r = [0u8; FRAME_LEN];
    r[0..6].copy_from_slice(&requester.mac.0);
    r[6..12].copy_from_slice(&mac.0);
    r[12..14].copy_from_slice(&[0x08, 0x06]);
    r[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    r[22..28].copy_from_slice(&mac.0);
    r[28..32].copy_from_slice(&target);
    r[32..38].copy_from_slice(&requester.mac.0);
    r[38..42].copy_from_slice(&requester.ip);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_the_reply_with_the_answer() {
        // Who has 10.0.0.2? Tell 10.0.0.1 (at 02:00:00:00:00:01), as Linux sends it.
        let mut req = [0u8; FRAME_LEN];
        req[0..6].copy_from_slice(&[0xff; 6]);
        req[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        req[12..22].copy_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        req[22..28].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        req[28..32].copy_from_slice(&[10, 0, 0, 1]);
        req[38..42].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(request_target(&req), Some([10, 0, 0, 2]));
        let at = MacAddr([2, 0, 0, 0, 0, 2]);
        let r = reply(&req, at).unwrap();
        let want: [u8; FRAME_LEN] = [
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 6, // Ethernet: to the requester
            0, 1, 8, 0, 6, 4, 0, 2, // reply
            2, 0, 0, 0, 0, 2, 10, 0, 0, 2, // 10.0.0.2 is at 02:..:02
            2, 0, 0, 0, 0, 1, 10, 0, 0, 1, // to 10.0.0.1 at 02:..:01
        ];
        assert_eq!(r, want);
        // A reply is not a request; a cut frame is nothing.
        assert_eq!(request_target(&r), None);
        assert_eq!(request_target(&req[..41]), None);
        assert_eq!(reply(&req[..30], at), None);
    }

    #[test]
    fn reads_the_sender_of_ethernet_ipv4_arp_only() {
        let mut arp = [0u8; 28];
        arp[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp[8..14].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        arp[14..18].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(
            sender(&arp),
            Some(ArpSender {
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                ip: [10, 0, 0, 9]
            })
        );
        assert_eq!(sender(&arp[..27]), None);
        arp[2] = 0x86;
        assert_eq!(sender(&arp), None);
    }
}
