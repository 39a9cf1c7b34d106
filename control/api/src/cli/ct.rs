//! `brinkctl ct ...`: connection tracking.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{decode, pairs_text, table};
use crate::call::{Call, NoParams};
use crate::client::{Client, ClientError};
use crate::types::{
    CtEntry, CtEvents, CtEventsRead, CtFilter, CtFlushed, CtPolicy, CtPolicySet, CtPolicyShow,
    CtStats,
};

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
    /// Stream connection events (new, established, closed, expired) as JSON lines.
    Events(EventsArgs),
}

/// `ct events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Stop after this many events (default: never).
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop after this many seconds (default: never).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// How often `ct events` reads (brinkd ends a subscription not read for 5 s).
const READ_EVERY: Duration = Duration::from_millis(100);

/// Streams events to stdout, one JSON object a line, until `a` says stop; a growing count of
/// lost events goes to stderr.
pub fn events(client: &mut Client, a: &EventsArgs) -> Result<String, ClientError> {
    let deadline = a.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut left = a.count.unwrap_or(usize::MAX);
    let mut lost = None;
    let mut out = std::io::stdout().lock();
    while left > 0 && deadline.is_none_or(|d| Instant::now() < d) {
        let max = left.min(1000);
        let read: CtEvents =
            decode(client.call(&Call::CtEvents(CtEventsRead { max: Some(max) }))?)?;
        // Events lost before this subscription are not this reader's.
        let before = *lost.get_or_insert(read.lost);
        if read.lost > before {
            eprintln!(
                "brinkctl: {} events lost (reading too slowly)",
                read.lost - before
            );
            lost = Some(read.lost);
        }
        for e in read.events.iter().take(left) {
            let line =
                serde_json::to_string(e).map_err(|e| ClientError::Protocol(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| ClientError::Protocol(e.to_string()))?;
        }
        out.flush()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        left -= read.events.len().min(left);
        if read.events.is_empty() {
            std::thread::sleep(READ_EVERY);
        }
    }
    Ok(String::new())
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

/// The call a `ct` command makes.
pub fn call(cmd: &CtCmd) -> Result<Call, ClientError> {
    Ok(match cmd {
        CtCmd::Show(f) => Call::CtShow(filter(f)),
        CtCmd::Flush(f) => Call::CtFlush(filter(f)),
        CtCmd::Stats => Call::CtStats(NoParams {}),
        // One read; `events` streams.
        CtCmd::Events(_) => Call::CtEvents(CtEventsRead::default()),
        CtCmd::Policy(PolicyCmd::Show { network }) => Call::CtPolicyShow(CtPolicyShow {
            network: network.clone(),
        }),
        CtCmd::Policy(PolicyCmd::Set {
            network,
            timeouts,
            limit,
            pickup,
            reset,
        }) => {
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
            Call::CtPolicySet(set)
        }
    })
}

fn filter(a: &CtFilterArgs) -> CtFilter {
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

/// Formats the result of a `ct` command for people.
pub fn render(cmd: &CtCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        CtCmd::Show(_) => connections(&decode::<Vec<CtEntry>>(result)?),
        CtCmd::Flush(_) => {
            let f: CtFlushed = decode(result)?;
            format!("flushed {} connections", f.flushed)
        }
        CtCmd::Stats => stats_text(&decode(result)?),
        CtCmd::Policy(_) => policy_text(&decode(result)?),
        CtCmd::Events(_) => {
            let read: CtEvents = decode(result)?;
            let lines: Result<Vec<String>, _> =
                read.events.iter().map(serde_json::to_string).collect();
            lines
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .join("\n")
        }
    })
}

fn connections(conns: &[CtEntry]) -> String {
    table(
        &[
            "NETWORK", "PROTO", "ORIGINAL", "STATE", "PKTS", "BYTES", "AGE", "EXPIRES", "MARK",
        ],
        conns
            .iter()
            .map(|c| {
                let state = c.tcp_state.clone().unwrap_or_else(|| c.state.clone());
                let t = &c.tuple;
                vec![
                    t.network.clone(),
                    t.proto.clone(),
                    format!("{}:{} -> {}:{}", t.src, t.sport, t.dst, t.dport),
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

fn stats_text(s: &CtStats) -> String {
    let mut out = format!(
        "entries {} of {}, inserts {}, refused {}, early drops {}, expired {}, flushed {}\ninvalid: {}",
        s.entries,
        s.max,
        s.inserts,
        s.refused,
        s.early_drops,
        s.expired,
        s.flushed,
        pairs_text(&s.invalid)
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
