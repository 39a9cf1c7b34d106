//! `brinkctl stats`: port and worker counters.

use clap::Args;
use serde_json::Value;

use super::{decode, pairs_text, table};
use crate::call::Call;
use crate::client::ClientError;
use crate::types::{Stats, StatsFilter, WorkerStats, XdpSocketStats};

/// Arguments of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this port.
    #[arg(long)]
    pub port: Option<String>,
    /// Only the workers: their busy and idle time, and the ports and queues each polls.
    #[arg(long, conflicts_with = "port")]
    pub workers: bool,
}

/// The call `stats` makes.
pub fn call(a: &StatsArgs) -> Call {
    Call::Stats(StatsFilter {
        port: a.port.clone(),
    })
}

/// Formats the result of `stats` for people.
pub fn render(a: &StatsArgs, result: Value) -> Result<String, ClientError> {
    let stats: Stats = decode(result)?;
    Ok(if a.workers {
        workers_table(&stats.workers)
    } else {
        tables(&stats)
    })
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

fn tables(s: &Stats) -> String {
    let mut out = table(
        &[
            "PORT",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "DROPS",
            "TX_DROPS",
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
                    pairs_text(&p.drops),
                    pairs_text(&p.tx_drops),
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
                "CSUM_DONE",
                "NEIGH_ANSWERS",
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
                        w.checksums_completed.to_string(),
                        w.neighbour_answers.to_string(),
                        w.fdb_learned.to_string(),
                        pairs_text(&w.drops),
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
                        // A vhost-user port's pairs with what each moved: PAIR:RX/TX.
                        let queues: Vec<String> = if p.pairs.is_empty() {
                            p.queues.iter().map(u32::to_string).collect()
                        } else {
                            p.pairs
                                .iter()
                                .map(|q| format!("{}:{}/{}", q.pair, q.rx_packets, q.tx_packets))
                                .collect()
                        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
