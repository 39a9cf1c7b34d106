//! Zero-copy views of the bytes on the wire.
//!
//! Each view checks its length once in `new_checked`; its getters cannot panic afterwards.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod ip;
pub mod nd;
pub mod segment;
pub mod vlan;

pub use ethernet::{EtherType, EthernetFrame, MacAddr, WireError};

/// What a frame carries above Ethernet, as far as the firewall cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum L3 {
    /// Another EtherType (or ARP that is not Ethernet/IPv4).
    #[default]
    Other,
    /// An Ethernet/IPv4 ARP packet.
    Arp(arp::ArpSender),
    /// A well-formed IP packet.
    Ip(ip::Flow),
}
