//! `brinkctl fdb ...`: the forwarding database.

use clap::Subcommand;
use serde_json::Value;

use super::{decode, table};
use crate::call::Call;
use crate::client::ClientError;
use crate::types::{FdbEntry, NetworkFilter};

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
    }
}

/// Formats the result of an `fdb` command for people.
pub fn render(cmd: &FdbCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        FdbCmd::Flush { .. } => String::new(),
        FdbCmd::Show { .. } => {
            let entries: Vec<FdbEntry> = decode(result)?;
            table(
                &["NETWORK", "MAC", "PORT", "AGE"],
                entries
                    .iter()
                    .map(|e| {
                        let age = e.age_secs.map_or("static".into(), |a| format!("{a:.0}s"));
                        vec![e.network.clone(), e.mac.clone(), e.port.clone(), age]
                    })
                    .collect(),
            )
        }
    })
}
