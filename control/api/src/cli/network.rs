//! `brinkctl network ...`: isolated L2 networks.

use clap::Subcommand;
use serde_json::Value;

use super::{decode, external_id, list_text, pairs_text, table};
use crate::call::{Call, NoParams};
use crate::client::ClientError;
use crate::types::{NetworkAdd, NetworkInfo, NetworkName, NetworkPeer, Segment};

/// `network` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    #[command(group(clap::ArgGroup::new("provider").args(["flat", "vlan"])))]
    Add {
        /// Network name.
        name: String,
        /// The largest IP packet its ports carry (68-9000; jumbo frames above 1500). brink sets
        /// its ports' interfaces to it; set the VMs' MTU to match.
        #[arg(long)]
        mtu: Option<u16>,
        /// Carry the network to other hosts as this VXLAN VNI (needs `tunnel set`). The
        /// underlay's MTU must be at least the network's plus 50 bytes.
        #[arg(long, conflicts_with_all = ["flat", "vlan", "uplink"])]
        vxlan: Option<u32>,
        /// Put the network untagged on `--uplink`.
        #[arg(long, requires = "uplink", conflicts_with = "vlan")]
        flat: bool,
        /// Put the network on `--uplink` tagged with this 802.1Q VLAN id (1-4094); many VLAN
        /// networks share one uplink. Its MTU must leave 4 bytes for the tag.
        #[arg(long, requires = "uplink")]
        vlan: Option<u16>,
        /// The uplink interface of a `--flat` or `--vlan` network.
        #[arg(long, requires = "provider")]
        uplink: Option<String>,
        /// Answer ARP and IPv6 neighbour solicitations for the remote IPs `fdb add --ip` gives,
        /// instead of flooding them to every host (VXLAN networks).
        #[arg(long)]
        arp_responder: bool,
        /// An orchestrator's label, KEY=VALUE (e.g. `neutron-id=<network id>`); repeat for
        /// several.
        #[arg(long = "external-id", value_parser = external_id)]
        external_ids: Vec<(String, String)>,
    },
    /// The flood list of a VXLAN network: the hosts broadcast and unknown unicast go to.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Delete a network that has no ports.
    Del {
        /// Network name.
        name: String,
    },
    /// List networks.
    List,
}

/// `network peer` subcommands.
#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// Add a tunnel endpoint to the network's flood list.
    Add {
        /// Network name.
        network: String,
        /// The remote host's tunnel IP.
        ip: String,
    },
    /// Remove a tunnel endpoint from the network's flood list.
    Del {
        /// Network name.
        network: String,
        /// The remote host's tunnel IP.
        ip: String,
    },
}

/// The call a `network` command makes.
pub fn call(cmd: &NetworkCmd) -> Call {
    match cmd {
        NetworkCmd::Add {
            name,
            mtu,
            vxlan,
            flat: _,
            vlan,
            uplink,
            arp_responder,
            external_ids,
        } => Call::NetworkAdd(NetworkAdd {
            name: name.clone(),
            mtu: *mtu,
            segment: match (vxlan, vlan, uplink) {
                (Some(vni), _, _) => Some(Segment::Vxlan { vni: *vni }),
                (None, Some(vlan), Some(uplink)) => Some(Segment::Vlan {
                    vlan: *vlan,
                    uplink: uplink.clone(),
                }),
                (None, _, Some(uplink)) => Some(Segment::Flat {
                    uplink: uplink.clone(),
                }),
                (None, _, None) => None,
            },
            arp_responder: *arp_responder,
            external_ids: external_ids.iter().cloned().collect(),
        }),
        NetworkCmd::Peer(PeerCmd::Add { network, ip }) => Call::NetworkPeerAdd(NetworkPeer {
            network: network.clone(),
            ip: ip.clone(),
        }),
        NetworkCmd::Peer(PeerCmd::Del { network, ip }) => Call::NetworkPeerDel(NetworkPeer {
            network: network.clone(),
            ip: ip.clone(),
        }),
        NetworkCmd::Del { name } => Call::NetworkDel(NetworkName { name: name.clone() }),
        NetworkCmd::List => Call::NetworkList(NoParams {}),
    }
}

/// Formats the result of a `network` command for people.
pub fn render(cmd: &NetworkCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        NetworkCmd::Add { .. } | NetworkCmd::Del { .. } | NetworkCmd::Peer(_) => String::new(),
        NetworkCmd::List => {
            let nets: Vec<NetworkInfo> = decode(result)?;
            table(
                &[
                    "NETWORK",
                    "ID",
                    "MTU",
                    "SEGMENT",
                    "PEERS",
                    "PORTS",
                    "EXTERNAL-IDS",
                ],
                nets.iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.id.to_string(),
                            n.mtu.to_string(),
                            segment_text(n),
                            list_text(&n.peers),
                            list_text(&n.ports),
                            pairs_text(&n.external_ids),
                        ]
                    })
                    .collect(),
            )
        }
    })
}

/// `vxlan 1001`, `flat eth2`, `vlan 100 eth2` or `local`, with `+arp` when the ARP responder is
/// on.
fn segment_text(n: &NetworkInfo) -> String {
    let segment = match &n.segment {
        Some(Segment::Vxlan { vni }) => format!("vxlan {vni}"),
        Some(Segment::Flat { uplink }) => format!("flat {uplink}"),
        Some(Segment::Vlan { vlan, uplink }) => format!("vlan {vlan} {uplink}"),
        None => "local".into(),
    };
    if n.arp_responder {
        format!("{segment} +arp")
    } else {
        segment
    }
}
