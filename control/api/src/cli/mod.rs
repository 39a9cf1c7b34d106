//! `brinkctl`: the command-line client. Human-readable tables by default, `--json` for scripts.
//!
//! One module per noun, as the API has: each turns its commands into a [`Call`] and formats
//! the result.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::call::{Call, NoParams};
use crate::client::{Client, ClientError};
use crate::types::Recheck;

mod capture;
mod ct;
mod fdb;
mod metrics;
mod network;
mod port;
mod sg;
mod stats;
mod trace;
mod tunnel;

pub use capture::CaptureArgs;
pub use ct::{CtCmd, CtFilterArgs, EventsArgs, PolicyCmd};
pub use fdb::FdbCmd;
pub use network::{NetworkCmd, PeerCmd};
pub use port::{KindArg, ModeArg, PortAddArgs, PortCmd, PortSetArgs, SecurityArgs};
pub use sg::{MemberCmd, RuleAddArgs, RuleCmd, SgCmd};
pub use stats::StatsArgs;
pub use trace::TraceArgs;
pub use tunnel::TunnelCmd;

/// Control a running brinkd.
#[derive(Debug, Parser)]
#[command(name = "brinkctl", version, about)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "BRINK_SOCKET", default_value = crate::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the daemon's JSON result instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Networks: isolated L2 domains.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Ports: VM attachments.
    #[command(subcommand)]
    Port(PortCmd),
    /// This host's VXLAN tunnel endpoint.
    #[command(subcommand)]
    Tunnel(TunnelCmd),
    /// The forwarding database.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Port and worker counters.
    Stats(StatsArgs),
    /// Every counter in Prometheus text format (what `brinkd --metrics-listen` serves).
    Metrics,
    /// Capture a port's traffic, or what brink dropped of it, into a pcapng file.
    Capture(CaptureArgs),
    /// Connection tracking.
    #[command(subcommand)]
    Ct(CtCmd),
    /// Security groups and their rules.
    #[command(subcommand)]
    Sg(SgCmd),
    /// Run one packet through the pipeline against live state, without sending it or
    /// changing anything, and show each stage's decision.
    Trace(TraceArgs),
}

/// Runs `brinkctl` with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("brinkctl: {e}");
            match e {
                ClientError::Connect { .. } => ExitCode::from(3),
                ClientError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs one command and returns what to print.
pub fn run(cli: &Cli) -> Result<String, ClientError> {
    let call = match &cli.command {
        // Several calls, and a file rather than a result to print.
        Command::Capture(a) => return capture::run(&mut Client::connect(&cli.socket)?, a),
        Command::Ct(CtCmd::Events(a)) => return ct::events(&mut Client::connect(&cli.socket)?, a),
        Command::Network(cmd) => network::call(cmd),
        Command::Port(cmd) => port::call(cmd),
        Command::Tunnel(cmd) => tunnel::call(cmd),
        Command::Fdb(cmd) => fdb::call(cmd),
        Command::Stats(a) => stats::call(a),
        Command::Metrics => Call::Metrics(NoParams {}),
        Command::Ct(cmd) => ct::call(cmd)?,
        Command::Sg(cmd) => sg::call(cmd)?,
        Command::Trace(a) => trace::call(a),
    };
    let result = Client::connect(&cli.socket)?.call(&call)?;
    if cli.json {
        return serde_json::to_string_pretty(&result)
            .map_err(|e| ClientError::Protocol(e.to_string()));
    }
    match &cli.command {
        Command::Network(cmd) => network::render(cmd, result),
        Command::Port(cmd) => port::render(cmd, result),
        Command::Tunnel(cmd) => tunnel::render(cmd, result),
        Command::Fdb(cmd) => fdb::render(cmd, result),
        Command::Stats(a) => stats::render(a, result),
        Command::Metrics => metrics::render(result),
        Command::Capture(_) => Ok(result.to_string()),
        Command::Ct(cmd) => ct::render(cmd, result),
        Command::Sg(cmd) => sg::render(cmd, result),
        Command::Trace(_) => trace::render(result),
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Names in one cell: `a,b,...`, or `-` for none.
fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items.join(",")
}

/// Values by name in one cell (counters, external ids): `name=value,...`, or `-` for none.
fn pairs_text<V: std::fmt::Display>(pairs: &BTreeMap<String, V>) -> String {
    if pairs.is_empty() {
        return "-".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a `--external-id KEY=VALUE` argument.
fn external_id(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("bad external id {s:?}: use KEY=VALUE")),
    }
}

/// What a change that rechecked connections did to them.
fn recheck_text(r: &Recheck) -> String {
    format!("connections rechecked: {} kept, {} cut", r.kept, r.cut)
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flag_is_accepted_before_and_after_the_subcommand() {
        for args in [
            vec!["brinkctl", "--json", "port", "list"],
            vec!["brinkctl", "port", "list", "--json"],
            vec!["brinkctl", "port", "--json", "list"],
        ] {
            let cli = Cli::try_parse_from(&args).unwrap();
            assert!(cli.json, "{args:?}");
        }
    }

    #[test]
    fn vhost_user_port_takes_a_socket_instead_of_an_interface() {
        let args = ["brinkctl", "port", "add", "vm1", "--network", "blue"];
        let vhost = ["--type", "vhost-user", "--vhost-socket", "/run/vm1.sock"];
        let cli =
            Cli::try_parse_from(args.iter().chain(&vhost).chain(&["--mode", "server"])).unwrap();
        let Command::Port(PortCmd::Add(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert!(matches!(a.kind, KindArg::VhostUser));
        assert!(matches!(a.mode, ModeArg::Server));
        assert_eq!(a.vhost_socket.as_deref(), Some("/run/vm1.sock"));
        assert!(a.iface.is_none());
        assert_eq!(a.queues, None, "as many as brinkd has workers");
        let cli = Cli::try_parse_from(args.iter().chain(&vhost).chain(&["--queues", "4"])).unwrap();
        let Command::Port(PortCmd::Add(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(a.queues, Some(4));
        assert!(
            Cli::try_parse_from(args).is_err(),
            "neither --iface nor --vhost-socket"
        );
        let both = ["--iface", "veth1"];
        assert!(Cli::try_parse_from(args.iter().chain(&vhost).chain(&both)).is_err());
    }

    #[test]
    fn port_add_collects_repeated_ips() {
        let cli = Cli::try_parse_from([
            "brinkctl",
            "port",
            "add",
            "vm1",
            "--iface",
            "veth1",
            "--network",
            "blue",
            "--ip",
            "10.0.0.1",
            "--ip",
            "fd00::1",
            "--type",
            "tap",
        ])
        .unwrap();
        let Command::Port(cmd) = &cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        let Call::PortAdd(p) = port::call(cmd) else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(p.ips, ["10.0.0.1", "fd00::1"]);
        assert_eq!(p.kind, crate::types::PortKind::Tap);
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
    }
}
