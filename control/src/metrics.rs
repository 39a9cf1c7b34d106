//! Prometheus text exposition of brink's counters, encoded by `prometheus-client`.
//!
//! Every scrape builds a fresh registry from what `stats`, `ct.stats`, `port.list` and `sg.list`
//! report, so the metrics and the API never disagree. Labels name ports, networks, workers,
//! drop reasons, groups and rules: never a connection.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use brink_api::call::{Call, NoParams};
use brink_api::client::{Client, ClientError};
use brink_api::types::{CtStats, PortInfo, SgInfo, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

/// A metric's labels, as name/value pairs.
type Labels = Vec<(String, String)>;

/// What the exposition is built from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// Ports, for their networks.
    pub ports: &'a [PortInfo],
    /// Port and worker counters.
    pub stats: &'a Stats,
    /// Connection-table counters.
    pub ct: &'a CtStats,
    /// Security groups with their rules' hit counts.
    pub groups: &'a [SgInfo],
}

/// Counters of one family, labelled per series.
struct Counters(Family<Labels, Counter>);

/// A new family of metrics `M`, registered in `r` as `name`.
fn family<M>(r: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: Default + EncodeMetric + TypedMetric + Send + Sync + std::fmt::Debug + 'static,
{
    let family = Family::<Labels, M>::default();
    r.register(name, help, family.clone());
    family
}

impl Counters {
    fn new(registry: &mut Registry, name: &str, help: &str) -> Self {
        Counters(family(registry, name, help))
    }

    fn set(&self, labels: &[(&str, &str)], value: u64) {
        self.0.get_or_create(&owned(labels)).inc_by(value);
    }
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The exposition of `src`, in the Prometheus text format.
pub fn render(src: Sources<'_>) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("brink");
    ports(&mut r, src);
    workers(&mut r, src.stats);
    conntrack(&mut r, src.ct);
    rules(&mut r, src.groups);
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

fn ports(r: &mut Registry, src: Sources<'_>) {
    let rx_packets = Counters::new(r, "port_receive_packets", "Frames received from the VM");
    let rx_bytes = Counters::new(r, "port_receive_bytes", "Bytes received from the VM");
    let tx_packets = Counters::new(r, "port_transmit_packets", "Frames sent to the VM");
    let tx_bytes = Counters::new(r, "port_transmit_bytes", "Bytes sent to the VM");
    let drops = Counters::new(
        r,
        "port_drops",
        "Frames from the port brink dropped, by reason",
    );
    let tx_drops = Counters::new(
        r,
        "port_transmit_drops",
        "Frames for the port brink dropped before sending them, by reason",
    );
    let xdp = Counters::new(
        r,
        "port_xdp_socket_events",
        "The kernel's AF_XDP socket counters (XDP_STATISTICS), by counter",
    );
    for p in &src.stats.ports {
        let network = src
            .ports
            .iter()
            .find(|i| i.name == p.name)
            .map_or("", |i| i.network.as_str());
        let port = [("port", p.name.as_str()), ("network", network)];
        rx_packets.set(&port, p.rx_packets);
        rx_bytes.set(&port, p.rx_bytes);
        tx_packets.set(&port, p.tx_packets);
        tx_bytes.set(&port, p.tx_bytes);
        for (reason, &n) in &p.drops {
            drops.set(&[port[0], port[1], ("reason", reason)], n);
        }
        for (reason, &n) in &p.tx_drops {
            tx_drops.set(&[port[0], port[1], ("reason", reason)], n);
        }
        if let Some(x) = &p.xdp_socket {
            for (counter, n) in [
                ("rx_dropped", x.rx_dropped),
                ("rx_invalid_descs", x.rx_invalid_descs),
                ("tx_invalid_descs", x.tx_invalid_descs),
                ("rx_ring_full", x.rx_ring_full),
                ("rx_fill_ring_empty_descs", x.rx_fill_ring_empty_descs),
                ("tx_ring_empty_descs", x.tx_ring_empty_descs),
                ("jumbo_dropped", x.jumbo_dropped),
            ] {
                xdp.set(&[port[0], port[1], ("counter", counter)], n);
            }
        }
    }
}

fn workers(r: &mut Registry, stats: &Stats) {
    type Seconds = Counter<f64, AtomicU64>;
    let busy = family::<Seconds>(
        r,
        "worker_busy_seconds",
        "Time in poll iterations that moved frames",
    );
    let idle = family::<Seconds>(
        r,
        "worker_idle_seconds",
        "Time in poll iterations that found nothing",
    );
    let batches = Counters::new(r, "worker_batches", "Batches run through the pipeline");
    let cross_tx = Counters::new(
        r,
        "worker_cross_sent_frames",
        "Frames handed to other workers",
    );
    let cross_rx = Counters::new(
        r,
        "worker_cross_received_frames",
        "Frames from other workers",
    );
    let segmented = Counters::new(r, "worker_segments", "Segments cut from TCP superframes");
    let completed = Counters::new(
        r,
        "worker_checksums_completed",
        "Partial checksums completed in software",
    );
    let answers = Counters::new(
        r,
        "worker_neighbour_answers",
        "ARP requests and neighbour solicitations the neighbour responder answered",
    );
    let learned = Counters::new(r, "worker_fdb_learned", "MAC addresses learned");
    let drops = Counters::new(r, "worker_drops", "Transmit-side drops, by reason");
    for w in &stats.workers {
        let id = w.worker.to_string();
        let worker = [("worker", id.as_str())];
        busy.get_or_create(&owned(&worker))
            .inc_by(w.busy_ns as f64 / 1e9);
        idle.get_or_create(&owned(&worker))
            .inc_by(w.idle_ns as f64 / 1e9);
        batches.set(&worker, w.batches);
        cross_tx.set(&worker, w.cross_tx);
        cross_rx.set(&worker, w.cross_rx);
        segmented.set(&worker, w.segmented);
        completed.set(&worker, w.checksums_completed);
        answers.set(&worker, w.neighbour_answers);
        learned.set(&worker, w.fdb_learned);
        for (reason, &n) in &w.drops {
            drops.set(&[worker[0], ("reason", reason)], n);
        }
    }
}

fn conntrack(r: &mut Registry, ct: &CtStats) {
    let entries = family::<Gauge>(r, "conntrack_entries", "Tracked connections, per network");
    for z in &ct.zones {
        entries
            .get_or_create(&owned(&[("network", z.network.as_str())]))
            .set(i64::try_from(z.connections).unwrap_or(i64::MAX));
    }
    let max = family::<Gauge>(r, "conntrack_max_entries", "The table's maximum");
    max.get_or_create(&Vec::new())
        .set(i64::try_from(ct.max).unwrap_or(i64::MAX));
    for (name, help, value) in [
        ("conntrack_inserts", "Connections created", ct.inserts),
        (
            "conntrack_refused",
            "New connections refused: table or zone full",
            ct.refused,
        ),
        (
            "conntrack_early_drops",
            "Unreplied connections evicted for room",
            ct.early_drops,
        ),
        (
            "conntrack_expired",
            "Connections that timed out",
            ct.expired,
        ),
        (
            "conntrack_flushed",
            "Connections removed by ct flush",
            ct.flushed,
        ),
        (
            "conntrack_denied",
            "New connections security groups refused",
            ct.denied,
        ),
        (
            "conntrack_recheck_kept",
            "Connections kept after a rule change",
            ct.recheck_kept,
        ),
        (
            "conntrack_recheck_cut",
            "Connections cut after a rule change",
            ct.recheck_cut,
        ),
    ] {
        Counters::new(r, name, help).set(&[], value);
    }
    let invalid = Counters::new(r, "conntrack_invalid", "Invalid packets, by reason");
    for (reason, &n) in &ct.invalid {
        invalid.set(&[("reason", reason)], n);
    }
}

fn rules(r: &mut Registry, groups: &[SgInfo]) {
    let hits = Counters::new(
        r,
        "sg_rule_hits",
        "Connections a rule admitted (packets, for a stateless group)",
    );
    for g in groups {
        for rule in &g.rules {
            let id = rule.id.to_string();
            hits.set(
                &[("group", g.name.as_str()), ("rule", id.as_str())],
                rule.hits,
            );
        }
    }
}

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` over HTTP on `addr` (e.g. `127.0.0.1:9464`) on a thread of its own,
/// answering each scrape with the `metrics` method of the daemon's API on `socket`: the
/// server holds no state and takes no lock of the daemon's.
pub fn serve(addr: &str, socket: PathBuf) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let content_type = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
        .map_err(|()| anyhow::anyhow!("bad Content-Type header"))?;
    tracing::info!(%addr, "serving metrics on /metrics");
    std::thread::Builder::new()
        .name("brink-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response =
                    if request.url() != "/metrics" {
                        tiny_http::Response::from_string("only /metrics is here\n")
                            .with_status_code(404)
                    } else {
                        match scrape(&socket) {
                            Ok(text) => tiny_http::Response::from_string(text)
                                .with_header(content_type.clone()),
                            Err(e) => tiny_http::Response::from_string(format!("{e}\n"))
                                .with_status_code(503),
                        }
                    };
                // A client that went away is no error of ours.
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

fn scrape(socket: &Path) -> Result<String, ClientError> {
    Client::connect(socket)?.call_as(&Call::Metrics(NoParams {}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_api::types::{CtZone, PortStats, WorkerStats, XdpSocketStats};
    use prometheus_parse::{Scrape, Value};

    fn sample() -> (Vec<PortInfo>, Stats, CtStats) {
        let port: PortInfo = serde_json::from_value(serde_json::json!({
            "name": "vm1", "id": 1, "iface": "vm1h", "network": "blue", "kind": "afxdp",
            "mac": null, "ips": [], "worker": 0, "mode": "native-copy", "conntrack": true,
            "port_security": true, "security_groups": [], "allowed_pairs": [],
            "permitted_ethertypes": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let stats = Stats {
            ports: vec![PortStats {
                name: "vm1".into(),
                rx_packets: 10,
                rx_bytes: 1000,
                tx_packets: 7,
                tx_bytes: 700,
                drops: [("ingress_denied".to_string(), 3)].into(),
                tx_drops: [("mtu_exceeded".to_string(), 4)].into(),
                xdp_socket: Some(XdpSocketStats {
                    rx_dropped: 2,
                    ..XdpSocketStats::default()
                }),
            }],
            workers: vec![WorkerStats {
                worker: 0,
                busy_ns: 1_500_000_000,
                batches: 4,
                ..WorkerStats::default()
            }],
        };
        let ct = CtStats {
            entries: 5,
            max: 100,
            inserts: 9,
            refused: 0,
            early_drops: 0,
            expired: 4,
            flushed: 0,
            denied: 1,
            recheck_kept: 0,
            recheck_cut: 0,
            invalid: [("tcp_no_connection".to_string(), 6)].into(),
            zones: vec![CtZone {
                network: "blue".into(),
                connections: 5,
            }],
        };
        (vec![port], stats, ct)
    }

    fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?}"));
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        }
    }

    #[test]
    fn the_exposition_parses_and_carries_the_counters() {
        let (ports, stats, ct) = sample();
        let text = render(Sources {
            ports: &ports,
            stats: &stats,
            ct: &ct,
            groups: &[],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}"));
        let port = [("port", "vm1"), ("network", "blue")];
        assert_eq!(
            value(&scrape, "brink_port_receive_packets_total", &port),
            10.0
        );
        assert_eq!(
            value(&scrape, "brink_port_transmit_bytes_total", &port),
            700.0
        );
        let denied = [port[0], port[1], ("reason", "ingress_denied")];
        assert_eq!(value(&scrape, "brink_port_drops_total", &denied), 3.0);
        let too_big = [port[0], port[1], ("reason", "mtu_exceeded")];
        let tx_dropped = value(&scrape, "brink_port_transmit_drops_total", &too_big);
        assert_eq!(tx_dropped, 4.0);
        let xdp = [port[0], ("counter", "rx_dropped")];
        assert_eq!(
            value(&scrape, "brink_port_xdp_socket_events_total", &xdp),
            2.0
        );
        let worker = [("worker", "0")];
        assert_eq!(
            value(&scrape, "brink_worker_busy_seconds_total", &worker),
            1.5
        );
        assert_eq!(
            value(&scrape, "brink_conntrack_entries", &[("network", "blue")]),
            5.0
        );
        assert_eq!(value(&scrape, "brink_conntrack_expired_total", &[]), 4.0);
        let invalid = [("reason", "tcp_no_connection")];
        assert_eq!(
            value(&scrape, "brink_conntrack_invalid_total", &invalid),
            6.0
        );
        assert!(!text.contains("sport"), "no per-connection labels");
    }
}
