//! `brinkctl port ...`: VM attachments and their port security.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{decode, external_id, list_text, pairs_text, recheck_text, table};
use crate::call::Call;
use crate::client::ClientError;
use crate::types::{
    PolledQueues, PortAdd, PortFilter, PortInfo, PortKind, PortName, PortSet, PortSetResult,
    VhostMode,
};

/// `port` subcommands.
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Attach a port to an interface.
    Add(PortAddArgs),
    /// Change a port's security: port security, groups, allowed address pairs, EtherTypes.
    Set(PortSetArgs),
    /// Remove a port (a tap brink created is deleted too).
    Del {
        /// Port name.
        name: String,
    },
    /// List ports.
    List {
        /// Only ports carrying this label (KEY=VALUE, e.g. `iface-id=<Neutron port id>`);
        /// repeat to require several.
        #[arg(long = "external-id", value_parser = external_id)]
        external_ids: Vec<(String, String)>,
    },
}

/// Arguments of `port add`.
#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// Port name.
    pub name: String,
    /// Interface: the host end of a veth pair, or the tap to create with `--type tap`.
    #[arg(
        long,
        required_unless_present = "vhost_socket",
        conflicts_with = "vhost_socket"
    )]
    pub iface: Option<String>,
    /// Network to join.
    #[arg(long)]
    pub network: String,
    /// Port type.
    #[arg(long = "type", value_enum, default_value = "afxdp")]
    pub kind: KindArg,
    /// The vhost-user socket (`--type vhost-user`; `--socket` is the daemon's).
    #[arg(long)]
    pub vhost_socket: Option<String>,
    /// Who creates the vhost-user socket: QEMU or testpmd (client, the default) or brink.
    #[arg(long, value_enum, default_value = "client")]
    pub mode: ModeArg,
    /// Queue pairs the vhost-user port offers, 1 to 8 (default: one per worker, at most 8).
    #[arg(long)]
    pub queues: Option<u16>,
    /// The VM's MAC address (a static FDB entry).
    #[arg(long)]
    pub mac: Option<String>,
    /// The VM's IP address; repeat for several.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Do not track this port's connections.
    #[arg(long)]
    pub no_conntrack: bool,
    /// An orchestrator's label, KEY=VALUE (e.g. `iface-id=<Neutron port id>`); repeat for
    /// several.
    #[arg(long = "external-id", value_parser = external_id)]
    pub external_ids: Vec<(String, String)>,
    /// Port security (default on).
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// `--type` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// AF_XDP on an existing interface.
    Afxdp,
    /// Create a tap device and attach AF_XDP to it.
    Tap,
    /// A vhost-user socket (with `--vhost-socket`).
    VhostUser,
}

/// `--mode` values of a vhost-user port.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// brink connects to the socket the frontend created.
    Client,
    /// brink creates the socket.
    Server,
}

/// Port security arguments shared by `port add` and `port set`.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Port security (anti-spoofing and security groups).
    #[arg(long, value_parser = ["on", "off"])]
    pub port_security: Option<String>,
    /// A security group; repeat for several.
    #[arg(long = "sg")]
    pub groups: Vec<String>,
    /// An allowed address pair: IP or IP/LEN, then optionally ,MAC; repeat for several.
    #[arg(long = "allowed-pair")]
    pub pairs: Vec<String>,
    /// An EtherType besides IPv4, IPv6 and ARP to permit, like 0x88cc; repeat for several.
    #[arg(long = "permitted-ethertype", value_parser = ethertype)]
    pub ethertypes: Vec<u16>,
}

/// Arguments of `port set`.
#[derive(Debug, Args)]
pub struct PortSetArgs {
    /// Port name.
    pub name: String,
    /// Given options replace the port's current values.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Remove every security group.
    #[arg(long, conflicts_with = "groups")]
    pub no_sg: bool,
    /// Remove every allowed address pair.
    #[arg(long, conflicts_with = "pairs")]
    pub no_allowed_pairs: bool,
    /// Remove every permitted EtherType.
    #[arg(long, conflicts_with = "ethertypes")]
    pub no_permitted_ethertypes: bool,
    /// The port's labels, KEY=VALUE; given ones replace all the old ones.
    #[arg(long = "external-id", value_parser = external_id)]
    pub external_ids: Vec<(String, String)>,
    /// Remove every label.
    #[arg(long, conflicts_with = "external_ids")]
    pub no_external_ids: bool,
}

fn ethertype(s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("bad EtherType {s:?}: use hex like 0x88cc"))
}

impl SecurityArgs {
    /// Port security as given (`None`: not given).
    pub fn port_security(&self) -> Option<bool> {
        self.port_security.as_deref().map(|s| s == "on")
    }
}

/// A list option of `port set`: replaced if given, emptied with its `--no-` flag.
fn replace<T: Clone>(given: &[T], clear: bool) -> Option<Vec<T>> {
    if clear {
        Some(vec![])
    } else if given.is_empty() {
        None
    } else {
        Some(given.to_vec())
    }
}

/// The call a `port` command makes.
pub fn call(cmd: &PortCmd) -> Call {
    match cmd {
        PortCmd::Add(a) => Call::PortAdd(PortAdd {
            name: a.name.clone(),
            iface: a.iface.clone().unwrap_or_default(),
            network: a.network.clone(),
            kind: match a.kind {
                KindArg::Afxdp => PortKind::Afxdp,
                KindArg::Tap => PortKind::Tap,
                KindArg::VhostUser => PortKind::VhostUser,
            },
            socket: a.vhost_socket.clone(),
            vhost_mode: match a.mode {
                ModeArg::Client => VhostMode::Client,
                ModeArg::Server => VhostMode::Server,
            },
            queues: a.queues,
            mac: a.mac.clone(),
            ips: a.ips.clone(),
            conntrack: !a.no_conntrack,
            port_security: a.security.port_security().unwrap_or(true),
            security_groups: a.security.groups.clone(),
            allowed_pairs: a.security.pairs.clone(),
            permitted_ethertypes: a.security.ethertypes.clone(),
            external_ids: a.external_ids.iter().cloned().collect(),
        }),
        PortCmd::Set(a) => {
            let s = &a.security;
            Call::PortSet(PortSet {
                name: a.name.clone(),
                port_security: s.port_security(),
                security_groups: replace(&s.groups, a.no_sg),
                allowed_pairs: replace(&s.pairs, a.no_allowed_pairs),
                permitted_ethertypes: replace(&s.ethertypes, a.no_permitted_ethertypes),
                external_ids: replace(&a.external_ids, a.no_external_ids)
                    .map(|ids| ids.into_iter().collect()),
            })
        }
        PortCmd::Del { name } => Call::PortDel(PortName { name: name.clone() }),
        PortCmd::List { external_ids } => Call::PortList(PortFilter {
            external_ids: external_ids.iter().cloned().collect(),
        }),
    }
}

/// Formats the result of a `port` command for people.
pub fn render(cmd: &PortCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        PortCmd::Del { .. } => String::new(),
        PortCmd::List { .. } => port_table(&decode::<Vec<PortInfo>>(result)?),
        PortCmd::Add(_) => {
            let p: PortInfo = decode(result)?;
            format!(
                "port {} added on {} ({}), worker {}",
                p.name,
                p.socket.as_deref().unwrap_or(&p.iface),
                p.mode,
                p.worker
            )
        }
        PortCmd::Set(_) => {
            let r: PortSetResult = decode(result)?;
            format!(
                "{}\n{}",
                port_table(std::slice::from_ref(&r.port)),
                recheck_text(&r.recheck)
            )
        }
    })
}

/// A port kind as `--type` spells it.
fn kind_name(kind: PortKind) -> &'static str {
    match kind {
        PortKind::Afxdp => "afxdp",
        PortKind::Tap => "tap",
        PortKind::VhostUser => "vhost-user",
        PortKind::Uplink => "uplink",
    }
}

/// Where a port's queues are polled: `WORKER:QUEUE,...` per worker, `-` while it is down.
fn queues_text(polled: &[PolledQueues]) -> String {
    let each: Vec<String> = polled
        .iter()
        .map(|p| {
            let queues: Vec<String> = p.queues.iter().map(u32::to_string).collect();
            format!("{}:{}", p.worker, queues.join(","))
        })
        .collect();
    if each.is_empty() {
        return "-".into();
    }
    each.join(" ")
}

fn port_table(ports: &[PortInfo]) -> String {
    table(
        &[
            "PORT",
            "ID",
            "IFACE",
            "NETWORK",
            "TYPE",
            "MODE",
            "WORKER",
            "QUEUES",
            "MAC",
            "IPS",
            "SECURITY",
            "EXTERNAL-IDS",
        ],
        ports
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.id.to_string(),
                    p.socket.clone().unwrap_or_else(|| p.iface.clone()),
                    p.network.clone(),
                    kind_name(p.kind).to_string(),
                    match &p.reason {
                        Some(reason) => format!("{} ({reason})", p.mode),
                        None => p.mode.clone(),
                    },
                    p.worker.to_string(),
                    queues_text(&p.polled),
                    p.mac.clone().unwrap_or_else(|| "-".into()),
                    list_text(&p.ips),
                    match (p.port_security, p.security_groups.is_empty()) {
                        (false, _) => "off".into(),
                        (true, true) => "on, no groups".into(),
                        (true, false) => format!("sg {}", p.security_groups.join(",")),
                    },
                    pairs_text(&p.external_ids),
                ]
            })
            .collect(),
    )
}
