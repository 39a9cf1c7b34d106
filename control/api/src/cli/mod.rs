//! `brinkctl`: the command-line client. Human-readable tables by default, `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::protocol::method;
mod capture;
mod sg;

pub use capture::CaptureArgs;
pub use sg::{PortSetArgs, RuleAddArgs, RuleCmd, SecurityArgs, SgCmd};

use crate::types::{
    CtEntry, CtFilter, CtPolicy, CtPolicySet, CtPolicyShow, CtStats, FdbEntry, NetworkAdd,
    NetworkFilter, NetworkInfo, NetworkName, PortAdd, PortInfo, PortKind, PortName, Stats,
    StatsFilter, VhostMode, WorkerStats, XdpSocketStats,
};

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
    /// The forwarding database.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Port and worker counters.
    Stats {
        /// Only this port.
        #[arg(long)]
        port: Option<String>,
        /// Only the workers: their busy and idle time, and the ports and queues each polls.
        #[arg(long, conflicts_with = "port")]
        workers: bool,
    },
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
}

/// `ct` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtCmd {
    /// Show tracked connections.
    Show(CtFilterArgs),
    /// Remove tracked connections (all, or those matching the filters).
    Flush(CtFilterArgs),
    /// Table counters: entries, inserts, refusals, early drops, expiries, invalid packets.
    Stats,
    /// A network's timeouts, connection limit and mid-stream pickup.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// Filters of `ct show` and `ct flush`.
#[derive(Debug, Args)]
pub struct CtFilterArgs {
    /// Network (conntrack zone).
    #[arg(long)]
    pub network: Option<String>,
    /// Either end's IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Either end's port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Protocol: tcp, udp, icmp, icmpv6, sctp or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// new, established, or a TCP state such as syn_sent, tcp_established, time_wait.
    #[arg(long)]
    pub state: Option<String>,
    /// Mark.
    #[arg(long)]
    pub mark: Option<u32>,
    /// Most connections to show (`ct show` only; default 1000).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `ct policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show a network's policy.
    Show {
        /// Network.
        network: String,
    },
    /// Change a network's policy; what is not given stays as it is.
    Set {
        /// Network.
        network: String,
        /// Timeouts as NAME=SECONDS, e.g. tcp_time_wait=30 udp_replied=60.
        timeouts: Vec<String>,
        /// Most connections the network may hold (0: no limit of its own).
        #[arg(long)]
        limit: Option<u32>,
        /// Mid-stream TCP pickup.
        #[arg(long, value_parser = ["on", "off"])]
        pickup: Option<String>,
        /// Start from the default policy.
        #[arg(long)]
        reset: bool,
    },
}

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
    List,
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
    /// The VM's MAC address (a static FDB entry).
    #[arg(long)]
    pub mac: Option<String>,
    /// The VM's IP address; repeat for several.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Do not track this port's connections.
    #[arg(long)]
    pub no_conntrack: bool,
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
    let mut client = Client::connect(&cli.socket)?;
    let (name, params): (&str, Value) = match &cli.command {
        Command::Network(NetworkCmd::Add { name, mtu }) => (
            method::NETWORK_ADD,
            to_json(&NetworkAdd {
                name: name.clone(),
                mtu: *mtu,
            }),
        ),
        Command::Network(NetworkCmd::Del { name }) => (
            method::NETWORK_DEL,
            to_json(&NetworkName { name: name.clone() }),
        ),
        Command::Network(NetworkCmd::List) => (method::NETWORK_LIST, json!({})),
        Command::Port(PortCmd::Add(a)) => (
            method::PORT_ADD,
            to_json(&PortAdd {
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
                mac: a.mac.clone(),
                ips: a.ips.clone(),
                conntrack: !a.no_conntrack,
                port_security: a.security.port_security().unwrap_or(true),
                security_groups: a.security.groups.clone(),
                allowed_pairs: a.security.pairs.clone(),
                permitted_ethertypes: a.security.ethertypes.clone(),
            }),
        ),
        Command::Port(PortCmd::Set(a)) => (method::PORT_SET, sg::port_set(a)),
        Command::Sg(cmd) => sg::request(cmd)?,
        Command::Port(PortCmd::Del { name }) => {
            (method::PORT_DEL, to_json(&PortName { name: name.clone() }))
        }
        Command::Port(PortCmd::List) => (method::PORT_LIST, json!({})),
        Command::Fdb(FdbCmd::Show { network }) => (
            method::FDB_SHOW,
            to_json(&NetworkFilter {
                network: network.clone(),
            }),
        ),
        Command::Fdb(FdbCmd::Flush { network }) => (
            method::FDB_FLUSH,
            to_json(&NetworkFilter {
                network: network.clone(),
            }),
        ),
        Command::Stats { port, .. } => {
            (method::STATS, to_json(&StatsFilter { port: port.clone() }))
        }
        Command::Metrics => (method::METRICS, json!({})),
        // Several calls, and a file rather than a result to print.
        Command::Capture(a) => return capture::run(&mut client, a),
        Command::Ct(CtCmd::Show(f)) => (method::CT_SHOW, to_json(&ct_filter(f))),
        Command::Ct(CtCmd::Flush(f)) => (method::CT_FLUSH, to_json(&ct_filter(f))),
        Command::Ct(CtCmd::Stats) => (method::CT_STATS, json!({})),
        Command::Ct(CtCmd::Policy(PolicyCmd::Show { network })) => (
            method::CT_POLICY_SHOW,
            to_json(&CtPolicyShow {
                network: network.clone(),
            }),
        ),
        Command::Ct(CtCmd::Policy(PolicyCmd::Set {
            network,
            timeouts,
            limit,
            pickup,
            reset,
        })) => {
            let mut set = CtPolicySet {
                network: network.clone(),
                limit: *limit,
                tcp_pickup: pickup.as_deref().map(|p| p == "on"),
                reset: *reset,
                ..CtPolicySet::default()
            };
            for t in timeouts {
                let parsed = t
                    .split_once('=')
                    .and_then(|(n, v)| Some((n, v.parse::<u32>().ok()?)));
                let Some((name, secs)) = parsed else {
                    return Err(ClientError::Usage(format!(
                        "bad timeout {t:?}: use NAME=SECONDS"
                    )));
                };
                set.timeouts.insert(name.to_string(), secs);
            }
            (method::CT_POLICY_SET, to_json(&set))
        }
    };
    let result = client.call_value(name, &params)?;
    if cli.json {
        return serde_json::to_string_pretty(&result)
            .map_err(|e| ClientError::Protocol(e.to_string()));
    }
    render(&cli.command, result)
}

fn ct_filter(a: &CtFilterArgs) -> CtFilter {
    CtFilter {
        network: a.network.clone(),
        ip: a.ip.clone(),
        port: a.port,
        proto: a.proto.clone(),
        state: a.state.clone(),
        mark: a.mark,
        limit: a.limit,
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Formats a successful result for people.
fn render(command: &Command, result: Value) -> Result<String, ClientError> {
    Ok(match command {
        Command::Network(NetworkCmd::List) => {
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
        Command::Port(PortCmd::List) => {
            let ports: Vec<PortInfo> = decode(result)?;
            port_table(&ports)
        }
        Command::Port(PortCmd::Add(_)) => {
            let p: PortInfo = decode(result)?;
            format!(
                "port {} added on {} ({}), worker {}",
                p.name,
                p.socket.as_deref().unwrap_or(&p.iface),
                p.mode,
                p.worker
            )
        }
        Command::Fdb(FdbCmd::Show { .. }) => {
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
        Command::Stats { workers: true, .. } => workers_table(&decode::<Stats>(result)?.workers),
        Command::Stats { .. } => stats_tables(&decode(result)?),
        Command::Metrics => decode::<String>(result)?.trim_end().to_string(),
        Command::Capture(_) => result.to_string(),
        Command::Ct(CtCmd::Show(_)) => ct_table(&decode::<Vec<CtEntry>>(result)?),
        Command::Ct(CtCmd::Flush(_)) => {
            let f: crate::types::CtFlushed = decode(result)?;
            format!("flushed {} connections", f.flushed)
        }
        Command::Ct(CtCmd::Stats) => ct_stats_text(&decode(result)?),
        Command::Ct(CtCmd::Policy(_)) => policy_text(&decode(result)?),
        Command::Port(PortCmd::Set(_)) => sg::render_port_set(result)?,
        Command::Sg(cmd) => sg::render(cmd, result)?,
        Command::Network(_) | Command::Port(_) | Command::Fdb(_) => String::new(),
    })
}

fn ct_table(conns: &[CtEntry]) -> String {
    table(
        &[
            "NETWORK", "PROTO", "ORIGINAL", "STATE", "PKTS", "BYTES", "AGE", "EXPIRES", "MARK",
        ],
        conns
            .iter()
            .map(|c| {
                let state = c.tcp_state.clone().unwrap_or_else(|| c.state.clone());
                vec![
                    c.network.clone(),
                    c.proto.clone(),
                    format!("{}:{} -> {}:{}", c.src, c.sport, c.dst, c.dport),
                    state,
                    format!("{}/{}", c.packets_orig, c.packets_reply),
                    format!("{}/{}", c.bytes_orig, c.bytes_reply),
                    format!("{:.0}s", c.age_secs),
                    format!("{:.0}s", c.expires_secs),
                    c.mark.to_string(),
                ]
            })
            .collect(),
    )
}

fn ct_stats_text(s: &CtStats) -> String {
    let mut out = format!(
        "entries {} of {}, inserts {}, refused {}, early drops {}, expired {}, flushed {}\ninvalid: {}",
        s.entries,
        s.max,
        s.inserts,
        s.refused,
        s.early_drops,
        s.expired,
        s.flushed,
        drops_text(&s.invalid)
    );
    if !s.zones.is_empty() {
        out.push_str("\n\n");
        out.push_str(&table(
            &["NETWORK", "CONNECTIONS"],
            s.zones
                .iter()
                .map(|z| vec![z.network.clone(), z.connections.to_string()])
                .collect(),
        ));
    }
    out
}

fn policy_text(p: &CtPolicy) -> String {
    let mut out = format!(
        "network {}: limit {}, tcp pickup {}\n",
        p.network,
        p.limit.map_or("none".into(), |l| l.to_string()),
        if p.tcp_pickup { "on" } else { "off" }
    );
    out.push_str(&table(
        &["TIMEOUT", "SECONDS"],
        p.timeouts
            .iter()
            .map(|(n, v)| vec![n.clone(), v.to_string()])
            .collect(),
    ));
    out
}

/// A port kind as `--type` spells it.
fn kind_name(kind: PortKind) -> &'static str {
    match kind {
        PortKind::Afxdp => "afxdp",
        PortKind::Tap => "tap",
        PortKind::VhostUser => "vhost-user",
    }
}

fn port_table(ports: &[PortInfo]) -> String {
    table(
        &[
            "PORT", "ID", "IFACE", "NETWORK", "TYPE", "MODE", "WORKER", "MAC", "IPS", "SECURITY",
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
                    p.mode.clone(),
                    p.worker.to_string(),
                    p.mac.clone().unwrap_or_else(|| "-".into()),
                    if p.ips.is_empty() {
                        "-".into()
                    } else {
                        p.ips.join(",")
                    },
                    match (p.port_security, p.security_groups.is_empty()) {
                        (false, _) => "off".into(),
                        (true, true) => "on, no groups".into(),
                        (true, false) => format!("sg {}", p.security_groups.join(",")),
                    },
                ]
            })
            .collect(),
    )
}

fn drops_text(drops: &std::collections::BTreeMap<String, u64>) -> String {
    if drops.is_empty() {
        return "-".into();
    }
    drops
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A port's kernel socket counters in one cell: the non-zero ones by short name, `-` if all are
/// zero, `n/a` for a port without a socket.
fn xdp_socket_text(x: Option<&XdpSocketStats>) -> String {
    let Some(x) = x else {
        return "n/a".into();
    };
    let cells: Vec<String> = [
        ("rx_drop", x.rx_dropped),
        ("rx_full", x.rx_ring_full),
        ("fill_empty", x.rx_fill_ring_empty_descs),
        ("rx_inval", x.rx_invalid_descs),
        ("tx_inval", x.tx_invalid_descs),
        ("tx_empty", x.tx_ring_empty_descs),
        ("jumbo_drop", x.jumbo_dropped),
    ]
    .iter()
    .filter(|&&(_, n)| n > 0)
    .map(|(k, n)| format!("{k}={n}"))
    .collect();
    if cells.is_empty() {
        return "-".into();
    }
    cells.join(",")
}

fn stats_tables(s: &Stats) -> String {
    let mut out = table(
        &[
            "PORT",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "DROPS",
            "XDP_SOCKET",
        ],
        s.ports
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.rx_packets.to_string(),
                    p.rx_bytes.to_string(),
                    p.tx_packets.to_string(),
                    p.tx_bytes.to_string(),
                    drops_text(&p.drops),
                    xdp_socket_text(p.xdp_socket.as_ref()),
                ]
            })
            .collect(),
    );
    if !s.workers.is_empty() {
        out.push_str("\n\n");
        out.push_str(&table(
            &[
                "WORKER",
                "CORE",
                "BATCHES",
                "BUSY_POLLS",
                "IDLE_POLLS",
                "BUSY%",
                "CROSS_TX",
                "CROSS_RX",
                "SEGMENTED",
                "FDB_LEARNED",
                "DROPS",
            ],
            s.workers
                .iter()
                .map(|w| {
                    let total = (w.busy_ns + w.idle_ns).max(1);
                    vec![
                        w.worker.to_string(),
                        w.core.map_or("-".into(), |c| c.to_string()),
                        w.batches.to_string(),
                        w.busy_polls.to_string(),
                        w.idle_polls.to_string(),
                        format!("{:.1}", 100.0 * w.busy_ns as f64 / total as f64),
                        w.cross_tx.to_string(),
                        w.cross_rx.to_string(),
                        w.segmented.to_string(),
                        w.fdb_learned.to_string(),
                        drops_text(&w.drops),
                    ]
                })
                .collect(),
        ));
    }
    out
}

/// `stats --workers`: where each worker's time goes, and what it polls.
fn workers_table(workers: &[WorkerStats]) -> String {
    let seconds = |ns: u64| format!("{:.1}", ns as f64 / 1e9);
    table(
        &[
            "WORKER", "CORE", "BUSY%", "BUSY_S", "IDLE_S", "BATCHES", "POLLS",
        ],
        workers
            .iter()
            .map(|w| {
                let total = (w.busy_ns + w.idle_ns).max(1);
                let polls: Vec<String> = w
                    .polls
                    .iter()
                    .map(|p| {
                        let queues: Vec<String> = p.queues.iter().map(u32::to_string).collect();
                        format!("{}[{}]", p.port, queues.join(","))
                    })
                    .collect();
                vec![
                    w.worker.to_string(),
                    w.core.map_or("-".into(), |c| c.to_string()),
                    format!("{:.1}", 100.0 * w.busy_ns as f64 / total as f64),
                    seconds(w.busy_ns),
                    seconds(w.idle_ns),
                    w.batches.to_string(),
                    polls.join(" "),
                ]
            })
            .collect(),
    )
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
        let Command::Port(PortCmd::Add(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(a.ips, ["10.0.0.1", "fd00::1"]);
        assert!(matches!(a.kind, KindArg::Tap));
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
        assert!(
            Cli::try_parse_from(args).is_err(),
            "neither --iface nor --vhost-socket"
        );
        let both = ["--iface", "veth1"];
        assert!(Cli::try_parse_from(args.iter().chain(&vhost).chain(&both)).is_err());
    }

    #[test]
    fn xdp_socket_cell_lists_non_zero_counters() {
        assert_eq!(xdp_socket_text(None), "n/a");
        assert_eq!(xdp_socket_text(Some(&XdpSocketStats::default())), "-");
        let x = XdpSocketStats {
            rx_ring_full: 3,
            rx_fill_ring_empty_descs: 7,
            tx_ring_empty_descs: 11,
            ..XdpSocketStats::default()
        };
        assert_eq!(
            xdp_socket_text(Some(&x)),
            "rx_full=3,fill_empty=7,tx_empty=11"
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
    }
}
