//! Networks that leave the host: the tunnel endpoint, each network's segment (a VXLAN VNI, a
//! flat uplink or a VLAN on an uplink trunk), and what Neutron's l2population tells an agent: the flood list and where each
//! remote MAC lives.
//!
//! Pure data, like the rest of the model: the kernel devices these describe are made by
//! [`crate::vxlan`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use brink_api::types::{Segment, TunnelSet};
use brink_dataplane::wire::vlan::MAX_VID;
use brink_dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};

/// Bytes VXLAN adds in front of a frame on an IPv4 underlay: outer Ethernet 14, IPv4 20,
/// UDP 8, VXLAN 8. A network's MTU plus this must fit the underlay's MTU.
pub const VXLAN_OVERHEAD: u16 = 50;
/// The same on an IPv6 underlay, whose header is 40 bytes.
pub const VXLAN6_OVERHEAD: u16 = 70;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Why a tunnel or segment change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    /// A VLAN id outside 1..=4094.
    #[error("VLAN {0} is out of range: use 1 to {MAX_VID}")]
    BadVlan(u16),
    /// Another network has the VLAN on the uplink.
    #[error("VLAN {vlan} on uplink {uplink:?} is already used by network {network:?}")]
    VlanInUse {
        /// The VLAN id.
        vlan: u16,
        /// The uplink interface.
        uplink: String,
        /// The network that has it.
        network: String,
    },
    /// A VNI outside 1..=2^24-1.
    #[error("VNI {0} is out of range: use 1 to {MAX_VNI}")]
    BadVni(u32),
    /// Another network has the VNI.
    #[error("VNI {vni} is already used by network {network:?}")]
    VniInUse {
        /// The VNI.
        vni: u32,
        /// The network that has it.
        network: String,
    },
    /// A VXLAN network without a tunnel endpoint.
    #[error("no tunnel endpoint: run `tunnel set --local-ip IP --dev IFACE` first")]
    NoTunnel,
    /// The endpoint cannot change while VXLAN networks use it.
    #[error("the tunnel endpoint is used by VXLAN networks {0}; delete them first")]
    TunnelInUse(String),
    /// Not an IP address.
    #[error("bad tunnel endpoint {0:?}: expected an IPv4 or IPv6 address like 192.0.2.1")]
    BadEndpoint(String),
    /// A remote endpoint of the other IP family than the local one.
    #[error("tunnel endpoint {endpoint} is not of the local endpoint {local}'s IP family")]
    OtherFamily {
        /// The remote endpoint.
        endpoint: IpAddr,
        /// The local endpoint.
        local: IpAddr,
    },
    /// The network has no VXLAN segment.
    #[error("network {0:?} is not a VXLAN network")]
    NotVxlan(String),
    /// A flood-list or FDB entry names the local endpoint.
    #[error("{0} is this host's own tunnel endpoint")]
    OwnEndpoint(IpAddr),
    /// The flood list has no such entry.
    #[error("network {network:?} does not flood to {ip}")]
    NoPeer {
        /// Network name.
        network: String,
        /// The endpoint.
        ip: IpAddr,
    },
    /// No remote entry for the MAC.
    #[error("network {network:?} has no remote entry for {mac}")]
    NoRemote {
        /// Network name.
        network: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// The remote entry for the MAC has no such IP.
    #[error("the remote entry for {mac} in network {network:?} has no IP {ip}")]
    NoRemoteIp {
        /// Network name.
        network: String,
        /// The MAC.
        mac: MacAddr,
        /// The IP.
        ip: IpAddr,
    },
    /// A remote MAC that is a local port's.
    #[error("MAC {mac} is configured on local port {port:?}")]
    LocalMac {
        /// The MAC.
        mac: MacAddr,
        /// The local port that has it.
        port: String,
    },
    /// An uplink another network or a port uses.
    #[error("uplink {uplink:?} is already used by {user}")]
    UplinkInUse {
        /// The interface.
        uplink: String,
        /// Who uses it.
        user: String,
    },
    /// The ARP responder needs a VXLAN network.
    #[error("--arp-responder needs a VXLAN network")]
    ArpNeedsVxlan,
    /// The network's frames plus VXLAN's headers do not fit the underlay.
    #[error(
        "network MTU {mtu} plus {overhead} bytes of VXLAN headers exceeds the MTU {underlay} \
         of underlay {dev:?}: give the network --mtu {fit} or raise the underlay's MTU to {need}",
        fit = underlay.saturating_sub(*overhead),
        need = mtu + overhead
    )]
    MtuTooLarge {
        /// The network's MTU.
        mtu: u16,
        /// What VXLAN adds on this underlay ([`Tunnel::overhead`]).
        overhead: u16,
        /// The underlay interface.
        dev: String,
        /// Its MTU.
        underlay: u16,
    },
}

/// This host's VXLAN tunnel endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// The local tunnel IP (IPv4 or IPv6; remote endpoints are of the same family).
    pub local_ip: IpAddr,
    /// The underlay interface.
    pub dev: String,
}

impl Tunnel {
    /// Parses a `tunnel.set` request.
    pub fn parse(set: &TunnelSet) -> Result<Tunnel, OverlayError> {
        Ok(Tunnel {
            local_ip: parse_endpoint(&set.local_ip)?,
            dev: set.dev.clone(),
        })
    }

    /// Bytes VXLAN adds to a frame on this underlay.
    pub fn overhead(&self) -> u16 {
        match self.local_ip {
            IpAddr::V4(_) => VXLAN_OVERHEAD,
            IpAddr::V6(_) => VXLAN6_OVERHEAD,
        }
    }

    /// As the API shows it.
    pub fn to_api(&self) -> TunnelSet {
        TunnelSet {
            local_ip: self.local_ip.to_string(),
            dev: self.dev.clone(),
        }
    }
}

/// Parses a tunnel endpoint address.
pub fn parse_endpoint(s: &str) -> Result<IpAddr, OverlayError> {
    s.trim()
        .parse()
        .map_err(|_| OverlayError::BadEndpoint(s.into()))
}

/// Where a remote MAC lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedRemote")]
pub struct Remote {
    /// The endpoint of its host.
    pub endpoint: IpAddr,
    /// Its IPv4 and IPv6 addresses, for the neighbour responder (l2population sends one
    /// MAC/IP pair per address).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ips: BTreeSet<IpAddr>,
}

/// A [`Remote`] as saved, also as releases before dual-stack entries saved it (one `ip`).
#[derive(Deserialize)]
struct SavedRemote {
    endpoint: IpAddr,
    #[serde(default)]
    ip: Option<IpAddr>,
    #[serde(default)]
    ips: BTreeSet<IpAddr>,
}

impl From<SavedRemote> for Remote {
    fn from(s: SavedRemote) -> Self {
        let mut ips = s.ips;
        ips.extend(s.ip);
        Remote {
            endpoint: s.endpoint,
            ips,
        }
    }
}

/// A network's segment and, for VXLAN, its l2population state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// How the network leaves the host.
    pub segment: Segment,
    /// Answer ARP for remote IPs locally.
    #[serde(default)]
    pub arp_responder: bool,
    /// The flood list.
    #[serde(default)]
    pub peers: BTreeSet<IpAddr>,
    /// Remote MACs (as [`MacAddr`] prints them) and where they live.
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
}

impl Overlay {
    /// A new segment with no flood list and no remote MACs.
    pub fn new(segment: Segment, arp_responder: bool) -> Result<Self, OverlayError> {
        match segment {
            Segment::Vxlan { vni } if !(1..=MAX_VNI).contains(&vni) => {
                return Err(OverlayError::BadVni(vni))
            }
            Segment::Vlan { vlan, .. } if !(1..=MAX_VID).contains(&vlan) => {
                return Err(OverlayError::BadVlan(vlan))
            }
            Segment::Flat { .. } | Segment::Vlan { .. } if arp_responder => {
                return Err(OverlayError::ArpNeedsVxlan)
            }
            _ => {}
        }
        Ok(Overlay {
            segment,
            arp_responder,
            peers: BTreeSet::new(),
            remotes: BTreeMap::new(),
        })
    }

    /// The VNI of a VXLAN network.
    pub fn vni(&self) -> Option<u32> {
        match self.segment {
            Segment::Vxlan { vni } => Some(vni),
            Segment::Flat { .. } | Segment::Vlan { .. } => None,
        }
    }

    /// The VLAN id of a VLAN network.
    pub fn vlan(&self) -> Option<u16> {
        match self.segment {
            Segment::Vlan { vlan, .. } => Some(vlan),
            Segment::Vxlan { .. } | Segment::Flat { .. } => None,
        }
    }

    /// The interface brink attaches to as the network's uplink port: the VXLAN device it makes,
    /// or the flat or VLAN uplink (for VLAN networks, the trunk they share).
    pub fn uplink_iface(&self) -> String {
        match &self.segment {
            Segment::Vxlan { vni } => vxlan_device(*vni),
            Segment::Flat { uplink } | Segment::Vlan { uplink, .. } => uplink.clone(),
        }
    }

    /// The remote MACs with where they live.
    pub fn remote_macs(&self) -> impl Iterator<Item = (MacAddr, &Remote)> {
        self.remotes
            .iter()
            .filter_map(|(mac, r)| Some((mac.parse().ok()?, r)))
    }

    /// Every endpoint this network names: its flood list and its remote MACs' hosts.
    pub fn endpoints(&self) -> BTreeSet<IpAddr> {
        let remotes = self.remotes.values().map(|r| r.endpoint);
        self.peers.iter().copied().chain(remotes).collect()
    }

    /// Whether the kernel should learn remote MACs from tunnel traffic: only while
    /// l2population has given none (Neutron's l2pop turns learning off).
    pub fn learns(&self) -> bool {
        self.remotes.is_empty()
    }
}

/// The name of the VXLAN device brink makes for `vni`.
pub fn vxlan_device(vni: u32) -> String {
    format!("brvx{vni}")
}

/// The name of the uplink port brink adds to `network`.
pub fn uplink_port(network: &str) -> String {
    format!("{network}.uplink")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_validated() {
        assert_eq!(
            Overlay::new(Segment::Vxlan { vni: 0 }, false),
            Err(OverlayError::BadVni(0))
        );
        assert_eq!(
            Overlay::new(Segment::Vxlan { vni: MAX_VNI + 1 }, false),
            Err(OverlayError::BadVni(MAX_VNI + 1))
        );
        let flat = Segment::Flat {
            uplink: "eth2".into(),
        };
        assert_eq!(
            Overlay::new(flat.clone(), true),
            Err(OverlayError::ArpNeedsVxlan)
        );
        assert_eq!(Overlay::new(flat, false).unwrap().uplink_iface(), "eth2");
        for vlan in [0, MAX_VID + 1] {
            let uplink = "eth2".into();
            let bad = Overlay::new(Segment::Vlan { vlan, uplink }, false);
            assert_eq!(bad, Err(OverlayError::BadVlan(vlan)));
        }
        let vlan = Segment::Vlan {
            vlan: 4094,
            uplink: "eth2".into(),
        };
        let arp = Overlay::new(vlan.clone(), true);
        assert_eq!(arp, Err(OverlayError::ArpNeedsVxlan));
        let vlan = Overlay::new(vlan, false).unwrap();
        assert_eq!(
            (vlan.vlan(), vlan.uplink_iface().as_str()),
            (Some(4094), "eth2")
        );
        let vx = Overlay::new(Segment::Vxlan { vni: 16_777_215 }, true).unwrap();
        assert_eq!(vx.uplink_iface(), "brvx16777215");
        assert!(vx.uplink_iface().len() < 16, "fits an interface name");
        assert!(vx.learns());
    }

    #[test]
    fn the_mtu_error_says_what_to_set() {
        let e = OverlayError::MtuTooLarge {
            mtu: 1500,
            overhead: VXLAN_OVERHEAD,
            dev: "eth1".into(),
            underlay: 1500,
        };
        let text = e.to_string();
        assert!(text.contains("--mtu 1450"), "{text}");
        assert!(text.contains("to 1550"), "{text}");
        assert_eq!(parse_endpoint("fd00::1"), Ok("fd00::1".parse().unwrap()));
        assert_eq!(
            parse_endpoint("fd00::g"),
            Err(OverlayError::BadEndpoint("fd00::g".into()))
        );
    }
}
