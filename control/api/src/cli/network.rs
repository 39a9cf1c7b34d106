//! `brinkctl network ...`: isolated L2 networks.

use clap::Subcommand;
use serde_json::Value;

use super::{decode, table};
use crate::call::{Call, NoParams};
use crate::client::ClientError;
use crate::types::{NetworkAdd, NetworkInfo, NetworkName};

/// `network` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    Add {
        /// Network name.
        name: String,
        /// The largest IP packet its ports carry (68-9000; jumbo frames above 1500). brink sets
        /// its ports' interfaces to it; set the VMs' MTU to match.
        #[arg(long)]
        mtu: Option<u16>,
    },
    /// Delete a network that has no ports.
    Del {
        /// Network name.
        name: String,
    },
    /// List networks.
    List,
}

/// The call a `network` command makes.
pub fn call(cmd: &NetworkCmd) -> Call {
    match cmd {
        NetworkCmd::Add { name, mtu } => Call::NetworkAdd(NetworkAdd {
            name: name.clone(),
            mtu: *mtu,
        }),
        NetworkCmd::Del { name } => Call::NetworkDel(NetworkName { name: name.clone() }),
        NetworkCmd::List => Call::NetworkList(NoParams {}),
    }
}

/// Formats the result of a `network` command for people.
pub fn render(cmd: &NetworkCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        NetworkCmd::Add { .. } | NetworkCmd::Del { .. } => String::new(),
        NetworkCmd::List => {
            let nets: Vec<NetworkInfo> = decode(result)?;
            table(
                &["NETWORK", "ID", "MTU", "PORTS"],
                nets.iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.id.to_string(),
                            n.mtu.to_string(),
                            n.ports.join(","),
                        ]
                    })
                    .collect(),
            )
        }
    })
}
