//! `brinkctl fdb ...`: the forwarding database.

use clap::Subcommand;
use serde_json::Value;

use super::{decode, list_text, table};
use crate::call::Call;
use crate::client::ClientError;
use crate::types::{FdbAdd, FdbDel, FdbEntry, NetworkFilter};

/// `fdb` subcommands.
#[derive(Debug, Subcommand)]
pub enum FdbCmd {
    /// Show static and learned entries.
    Show {
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Forget learned entries (static ones stay).
    Flush {
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Say where a remote VM's MAC lives (Neutron l2population): a static entry.
    Add {
        /// Network name (a VXLAN network).
        network: String,
        /// The remote VM's MAC.
        mac: String,
        /// The tunnel IP of the host it is on.
        #[arg(long)]
        remote: String,
        /// One of the VM's IP addresses (IPv4 or IPv6), for the network's neighbour
        /// responder; add a dual-stack VM once per address.
        #[arg(long)]
        ip: Option<String>,
    },
    /// Forget a remote MAC, or with `--ip` one of its IPs (the entry goes with its last IP).
    Del {
        /// Network name.
        network: String,
        /// The remote VM's MAC.
        mac: String,
        /// Forget only this IP of it.
        #[arg(long)]
        ip: Option<String>,
    },
}

/// The call an `fdb` command makes.
pub fn call(cmd: &FdbCmd) -> Call {
    match cmd {
        FdbCmd::Show { network } => Call::FdbShow(NetworkFilter {
            network: network.clone(),
        }),
        FdbCmd::Flush { network } => Call::FdbFlush(NetworkFilter {
            network: network.clone(),
        }),
        FdbCmd::Add {
            network,
            mac,
            remote,
            ip,
        } => Call::FdbAdd(FdbAdd {
            network: network.clone(),
            mac: mac.clone(),
            remote: remote.clone(),
            ip: ip.clone(),
        }),
        FdbCmd::Del { network, mac, ip } => Call::FdbDel(FdbDel {
            network: network.clone(),
            mac: mac.clone(),
            ip: ip.clone(),
        }),
    }
}

/// Formats the result of an `fdb` command for people.
pub fn render(cmd: &FdbCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        FdbCmd::Flush { .. } | FdbCmd::Add { .. } | FdbCmd::Del { .. } => String::new(),
        FdbCmd::Show { .. } => {
            let entries: Vec<FdbEntry> = decode(result)?;
            table(
                &["NETWORK", "MAC", "PORT", "AGE", "REMOTE", "IPS"],
                entries
                    .iter()
                    .map(|e| {
                        let age = e.age_secs.map_or("static".into(), |a| format!("{a:.0}s"));
                        let dash = || "-".to_string();
                        vec![
                            e.network.clone(),
                            e.mac.clone(),
                            e.port.clone(),
                            age,
                            e.remote.clone().unwrap_or_else(dash),
                            list_text(&e.ips),
                        ]
                    })
                    .collect(),
            )
        }
    })
}
