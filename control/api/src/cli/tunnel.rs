//! `brinkctl tunnel ...`: this host's VXLAN tunnel endpoint.

use clap::Subcommand;
use serde_json::Value;

use super::{decode, pairs_text, table};
use crate::call::{Call, NoParams};
use crate::client::ClientError;
use crate::types::{TunnelInfo, TunnelSet};

/// `tunnel` subcommands.
#[derive(Debug, Subcommand)]
pub enum TunnelCmd {
    /// Set the local tunnel endpoint: its IP and the underlay interface that has it.
    Set {
        /// The local tunnel IP.
        #[arg(long)]
        local_ip: String,
        /// The underlay interface.
        #[arg(long)]
        dev: String,
    },
    /// The endpoint, the remote endpoints with their counters, and each VXLAN network's.
    Show,
}

/// The call a `tunnel` command makes.
pub fn call(cmd: &TunnelCmd) -> Call {
    match cmd {
        TunnelCmd::Set { local_ip, dev } => Call::TunnelSet(TunnelSet {
            local_ip: local_ip.clone(),
            dev: dev.clone(),
        }),
        TunnelCmd::Show => Call::TunnelShow(NoParams {}),
    }
}

/// Formats the result of a `tunnel` command for people.
pub fn render(cmd: &TunnelCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        TunnelCmd::Set { .. } => String::new(),
        TunnelCmd::Show => {
            let t: TunnelInfo = decode(result)?;
            let local = t
                .local
                .as_ref()
                .map_or("none".into(), |l| format!("{} on {}", l.local_ip, l.dev));
            let endpoints = table(
                &[
                    "ENDPOINT", "FLOOD", "MACS", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES",
                ],
                t.endpoints
                    .iter()
                    .map(|e| {
                        vec![
                            e.ip.clone(),
                            e.flood.join(","),
                            e.macs.to_string(),
                            e.rx_packets.to_string(),
                            e.rx_bytes.to_string(),
                            e.tx_packets.to_string(),
                            e.tx_bytes.to_string(),
                        ]
                    })
                    .collect(),
            );
            let networks = table(
                &["NETWORK", "VNI", "DEVICE", "RX_PKTS", "TX_PKTS", "DROPS"],
                t.networks
                    .iter()
                    .map(|n| {
                        vec![
                            n.network.clone(),
                            n.vni.to_string(),
                            n.device.clone(),
                            n.rx_packets.to_string(),
                            n.tx_packets.to_string(),
                            pairs_text(&n.drops),
                        ]
                    })
                    .collect(),
            );
            format!(
                "local endpoint: {local}\nunknown_vni dropped: {}\n\n{endpoints}\n\n{networks}",
                t.unknown_vni
            )
        }
    })
}
