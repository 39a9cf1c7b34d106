//! Port security: what a VM may send, as Neutron defines it (anti-spoofing, no DHCP server, no
//! router advertisements, only permitted EtherTypes).

use brink_conntrack::key::proto;
use brink_conntrack::Addr;

use super::prefix::Prefix;
use crate::counters::DropReason;
use crate::wire::ip::{icmpv6, Flow};
use crate::wire::{MacAddr, L3};

/// DHCP (v4) server and client UDP ports.
const DHCP_SERVER: u16 = 67;
const DHCP_CLIENT: u16 = 68;
/// DHCPv6 client and server UDP ports.
const DHCP6_CLIENT: u16 = 546;
const DHCP6_SERVER: u16 = 547;

/// A port's anti-spoofing state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// Each MAC the port may send from, with the source prefixes it may use.
    sources: Vec<(MacAddr, Vec<Prefix>)>,
    /// EtherTypes besides IPv4, IPv6 and ARP the port may send and receive.
    permitted: Vec<u16>,
}

/// The IPv6 link-local address a MAC gives by modified EUI-64, which Neutron allows too.
pub fn link_local(mac: MacAddr) -> Addr {
    let m = mac.0;
    Addr([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

impl PortSecurity {
    /// A port with MAC `mac` and addresses `ips`, plus allowed address pairs (a prefix and the
    /// MAC it may be used with, the port's own if `None`) and extra permitted EtherTypes.
    pub fn new(
        mac: MacAddr,
        ips: &[Addr],
        pairs: &[(Prefix, Option<MacAddr>)],
        permitted: &[u16],
    ) -> PortSecurity {
        let mut sec = PortSecurity {
            sources: Vec::new(),
            permitted: permitted.to_vec(),
        };
        for &ip in ips {
            sec.allow(mac, Prefix::host(ip));
        }
        sec.allow(mac, Prefix::host(link_local(mac)));
        for &(prefix, pair_mac) in pairs {
            let m = pair_mac.unwrap_or(mac);
            sec.allow(m, prefix);
            sec.allow(m, Prefix::host(link_local(m)));
        }
        sec
    }

    fn allow(&mut self, mac: MacAddr, prefix: Prefix) {
        match self.sources.iter_mut().find(|(m, _)| *m == mac) {
            Some((_, list)) if list.contains(&prefix) => {}
            Some((_, list)) => list.push(prefix),
            None => self.sources.push((mac, vec![prefix])),
        }
    }

    /// Whether the port may send and receive frames of `ethertype` (not IP or ARP).
    pub fn permits(&self, ethertype: u16) -> bool {
        self.permitted.contains(&ethertype)
    }

    /// Checks a frame the VM sent from `src` carrying `l3` of `ethertype`.
    pub fn check(&self, src: MacAddr, ethertype: u16, l3: &L3) -> Result<(), DropReason> {
        let Some((_, prefixes)) = self.sources.iter().find(|(m, _)| *m == src) else {
            return Err(DropReason::SpoofedMac);
        };
        let allowed = |a: Addr| prefixes.iter().any(|p| p.contains(a));
        match l3 {
            L3::Arp(s) => {
                let ip = Addr::v4(s.ip);
                if s.mac == src && (s.ip == [0; 4] || allowed(ip)) {
                    Ok(())
                } else {
                    Err(DropReason::SpoofedArp)
                }
            }
            L3::Ip(flow) => check_ip(flow, allowed),
            L3::Other if self.permits(ethertype) => Ok(()),
            L3::Other => Err(DropReason::EthertypeDenied),
        }
    }
}

fn check_ip(flow: &Flow, allowed: impl Fn(Addr) -> bool) -> Result<(), DropReason> {
    let udp = |s, d| flow.proto == proto::UDP && flow.sport == s && flow.dport == d;
    if udp(DHCP_SERVER, DHCP_CLIENT) || udp(DHCP6_SERVER, DHCP6_CLIENT) {
        return Err(DropReason::DhcpServer);
    }
    let icmp6 = flow.v6 && flow.proto == proto::ICMPV6;
    let kind = flow.icmp.map(|(t, _)| t);
    if icmp6 && kind == Some(icmpv6::ROUTER_ADVERT) {
        return Err(DropReason::RouterAdvert);
    }
    let unspecified = flow.src == Addr::v4([0; 4]) || flow.src == Addr([0; 16]);
    // A client without an address yet: DHCP discover, or IPv6 duplicate address detection and
    // MLD reports sent from `::`.
    let bootstrapping = unspecified
        && (udp(DHCP_CLIENT, DHCP_SERVER) || (icmp6 && kind.is_some_and(icmpv6::is_nd_or_mld)));
    if !bootstrapping && !allowed(flow.src) {
        return Err(DropReason::SpoofedIp);
    }
    match flow.nd_target {
        Some(target) if !allowed(target) => Err(DropReason::SpoofedNd),
        _ => Ok(()),
    }
}

/// ICMPv6 types a port sends without a rule (Neutron's `ICMPV6_ALLOWED_EGRESS_TYPES`):
/// multicast listener query, router solicitation, neighbour solicitation and advertisement.
const ICMPV6_BASE_EGRESS: [u8; 4] = [
    icmpv6::MLD_QUERY,
    icmpv6::ROUTER_SOLICIT,
    icmpv6::NEIGHBOR_SOLICIT,
    icmpv6::NEIGHBOR_ADVERT,
];
/// ICMPv6 types a port receives without a rule (Neutron's `ICMPV6_ALLOWED_INGRESS_TYPES`).
const ICMPV6_BASE_INGRESS: [u8; 3] = [
    icmpv6::MLD_QUERY,
    icmpv6::NEIGHBOR_SOLICIT,
    icmpv6::NEIGHBOR_ADVERT,
];

/// Whether `flow` is one of the exchanges every port with port security allows regardless of
/// its rules, exactly as Neutron's base rules do: the ICMPv6 types above, DHCP and DHCPv6
/// requests out and their replies in. Other ICMPv6 (redirects, MLD reports, router
/// solicitations into a VM, ...) needs a rule.
pub fn base_allowed(flow: &Flow, ingress: bool) -> bool {
    if flow.v6 && flow.proto == proto::ICMPV6 {
        let base: &[u8] = if ingress {
            &ICMPV6_BASE_INGRESS
        } else {
            &ICMPV6_BASE_EGRESS
        };
        return flow.icmp.is_some_and(|(t, _)| base.contains(&t));
    }
    if flow.proto != proto::UDP {
        return false;
    }
    let (client, server) = if flow.v6 {
        (DHCP6_CLIENT, DHCP6_SERVER)
    } else {
        (DHCP_CLIENT, DHCP_SERVER)
    };
    if ingress {
        flow.sport == server && flow.dport == client
    } else {
        flow.sport == client && flow.dport == server
    }
}
