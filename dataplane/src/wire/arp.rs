//! ARP for IPv4 over Ethernet: just the sender fields port security checks.

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

#[cfg(test)]
mod tests {
    use super::*;

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
