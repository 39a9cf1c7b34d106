//! `stats` and `metrics`: port and worker counters, and all counters for Prometheus.

use std::collections::{BTreeMap, HashMap};

use brink_api::protocol::{code, RpcError};
use brink_api::types::{
    PairStats, PortFilter, PortStats, Stats, StatsFilter, WorkerPoll, WorkerStats, XdpSocketStats,
};
use brink_dataplane::counters::{DropCounters, DropReason, PortCounters};
use brink_dataplane::port::{QueueStats, SocketStats};

use super::trunk::trunk_name;
use super::{dataplane_error, Service};
use crate::host::Host;
use crate::metrics;

impl<H: Host> Service<H> {
    pub(super) fn stats(&self, filter: &StatsFilter) -> Result<Stats, RpcError> {
        if let Some(name) = &filter.port {
            self.model.port(name)?;
        }
        let sockets: HashMap<_, _> = self
            .switch
            .socket_stats()
            .map_err(dataplane_error)?
            .into_iter()
            .collect();
        let port_stats = |name: String, id, c: &PortCounters| PortStats {
            name,
            rx_packets: c.rx_packets.get(),
            rx_bytes: c.rx_bytes.get(),
            tx_packets: c.tx_packets.get(),
            tx_bytes: c.tx_bytes.get(),
            drops: drop_map(&c.drops),
            tx_drops: drop_map(&c.tx_drops),
            xdp_socket: sockets.get(&id).map(xdp_socket_stats),
        };
        let ports = self
            .model
            .ports()
            .filter(|p| filter.port.as_ref().is_none_or(|n| *n == p.spec.name))
            .filter_map(|p| {
                let c = &self.running.get(&p.spec.name)?.counters;
                Some(port_stats(p.spec.name.clone(), p.id, c))
            });
        // The VLAN trunks, which are in no network, after the ports.
        let trunks = self
            .model
            .trunks()
            .filter(|_| filter.port.is_none())
            .filter_map(|(iface, t)| {
                let name = trunk_name(iface);
                let c = &self.trunks.get(&name)?.counters;
                Some(port_stats(name, t.id, c))
            });
        let ports = ports.chain(trunks).collect();
        let workers = if filter.port.is_some() {
            vec![]
        } else {
            let polls = self.switch.polls().map_err(dataplane_error)?;
            self.switch
                .worker_counters()
                .enumerate()
                .map(|(worker, (core, c))| WorkerStats {
                    worker,
                    core,
                    batches: c.batches.get(),
                    busy_polls: c.busy_polls.get(),
                    idle_polls: c.idle_polls.get(),
                    busy_ns: c.busy_ns.get(),
                    idle_ns: c.idle_ns.get(),
                    cross_tx: c.cross_tx.get(),
                    cross_rx: c.cross_rx.get(),
                    segmented: c.segmented.get(),
                    checksums_completed: c.checksums_completed.get(),
                    neighbour_answers: c.neighbour_answers.get(),
                    fdb_learned: c.fdb_learned.get(),
                    fdb_full: c.fdb_full.get(),
                    fdb_aged: c.fdb_aged.get(),
                    drops: drop_map(&c.drops),
                    polls: polls
                        .get(worker)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| {
                            Some(WorkerPoll {
                                port: self.model.port_by_id(p.port)?.spec.name.clone(),
                                queues: p.queues.clone(),
                                pairs: p.moved.iter().map(pair_stats).collect(),
                            })
                        })
                        .collect(),
                })
                .collect()
        };
        Ok(Stats { ports, workers })
    }

    /// The Prometheus exposition of every counter (see [`metrics`]).
    pub(super) fn metrics(&self) -> Result<String, RpcError> {
        metrics::render(metrics::Sources {
            ports: &self.port_list(&PortFilter::default())?,
            stats: &self.stats(&StatsFilter::default())?,
            ct: &self.ct_stats(),
            groups: &self.sg_list(),
        })
        .map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
    }

    /// Each worker's loop iterations so far: a worker that hangs stops counting.
    pub fn worker_polls(&self) -> Vec<u64> {
        self.switch
            .worker_counters()
            .map(|(_, c)| c.busy_polls.get() + c.idle_polls.get())
            .collect()
    }
}

fn pair_stats(q: &QueueStats) -> PairStats {
    PairStats {
        pair: q.queue,
        rx_packets: q.rx_packets,
        tx_packets: q.tx_packets,
    }
}

fn xdp_socket_stats(k: &SocketStats) -> XdpSocketStats {
    XdpSocketStats {
        rx_dropped: k.rx_dropped,
        rx_invalid_descs: k.rx_invalid_descs,
        tx_invalid_descs: k.tx_invalid_descs,
        rx_ring_full: k.rx_ring_full,
        rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: k.tx_ring_empty_descs,
        jumbo_dropped: k.jumbo_dropped,
    }
}

/// The non-zero counts of `d`, by reason name.
pub(super) fn drop_map(d: &DropCounters) -> BTreeMap<String, u64> {
    DropReason::ALL
        .iter()
        .map(|&r| (r.name().to_string(), d.get(r)))
        .filter(|&(_, n)| n > 0)
        .collect()
}
