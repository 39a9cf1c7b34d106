//! `port.*`: VM attachments. A saved port whose interface cannot be opened at start-up stays
//! configured, shown down with the reason, and is retried until it opens.

use std::sync::Arc;
use std::time::Duration;

use brink_api::protocol::{code, RpcError};
use brink_api::types::{
    ExternalIds, PolledQueues, PortAdd, PortFilter, PortInfo, PortKind, PortSet, PortSetResult,
    MAX_VHOST_QUEUES,
};
use brink_dataplane::counters::PortCounters;
use brink_dataplane::port::{Backend, PortMode};
use brink_dataplane::worker::Polled;

use super::{dataplane_error, Running, Service};
use crate::host::Host;
use crate::iface::IfaceError;
use crate::model::PortRecord;

/// How often the server asks the service to retry the ports that are down.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl<H: Host> Service<H> {
    pub(super) fn port_add(&mut self, spec: PortAdd) -> Result<PortInfo, RpcError> {
        let record = self.check_port(&spec)?;
        self.bring_up(&record, false)?;
        let name = record.spec.name.clone();
        self.model.insert_port(record.clone());
        // Not yet published, so no worker polls it: closing it undoes everything.
        if let Err(e) = self.save() {
            if let Err(closing) = self.tear_down(&record) {
                tracing::warn!(port = %name, error = %closing.message, "could not close the unsaved port");
            }
            return Err(e);
        }
        self.publish();
        self.port_info(&name, &self.polls()?)
    }

    /// Adds a saved port; if it cannot be opened now it is kept down, with the reason.
    pub(super) fn restore_port(&mut self, spec: PortAdd) -> Result<(), RpcError> {
        let record = self.check_port(&spec)?;
        match self.bring_up(&record, true) {
            Ok(()) => tracing::info!(port = %spec.name, "restored"),
            Err(e) => {
                tracing::warn!(port = %spec.name, reason = %e, "saved port is down until it can be opened");
                self.down.insert(spec.name, e.message);
            }
        }
        self.model.insert_port(record);
        Ok(())
    }

    /// Tries again to open every port that is down (an interface that appeared since);
    /// returns how many came up.
    pub fn retry_down_ports(&mut self) -> usize {
        let down: Vec<PortRecord> = self
            .model
            .ports()
            .filter(|p| self.down.contains_key(&p.spec.name))
            .cloned()
            .collect();
        let mut up = 0;
        for record in down {
            let name = &record.spec.name;
            let kernel = matches!(record.spec.kind, PortKind::Afxdp | PortKind::Uplink);
            if kernel && !self.host.exists(&record.spec.iface) {
                continue;
            }
            match self.bring_up(&record, true) {
                Ok(()) => {
                    self.down.remove(name);
                    up += 1;
                }
                Err(e) if self.down.get(name) != Some(&e.message) => {
                    tracing::warn!(port = %name, reason = %e, "port still down");
                    self.down.insert(name.clone(), e.message);
                }
                Err(_) => {}
            }
        }
        if up > 0 {
            self.publish();
        }
        up
    }

    pub(super) fn port_del(&mut self, name: &str) -> Result<(), RpcError> {
        if self.model.port(name)?.spec.kind == PortKind::Uplink {
            let network = &self.model.port(name)?.spec.network;
            return Err(RpcError::new(
                code::IN_USE,
                format!("port {name:?} is network {network:?}'s uplink: it goes with the network"),
            ));
        }
        self.remove_port(name)
    }

    /// Removes port `name` (any kind), closing its sockets.
    pub(super) fn remove_port(&mut self, name: &str) -> Result<(), RpcError> {
        let record = self.model.remove_port(name)?;
        self.save()?;
        self.down.remove(name);
        // Workers stop forwarding to the port before its socket closes.
        self.publish();
        let closed = self.tear_down(&record);
        tracing::info!(port = %name, "port removed");
        closed
    }

    /// Closes a port that no published snapshot lists (any more) on every worker that opened
    /// it, and deletes its tap if brink made one.
    fn tear_down(&mut self, record: &PortRecord) -> Result<(), RpcError> {
        let name = &record.spec.name;
        let workers = self.running.remove(name).map_or(vec![], |r| r.workers);
        let closed = workers
            .iter()
            .try_for_each(|&w| self.switch.close_port(w, record.id))
            .map_err(dataplane_error);
        if record.spec.kind == PortKind::Tap {
            if let Err(e) = self.host.delete_tap(&record.spec.iface) {
                tracing::warn!(port = %name, error = %e, "could not delete tap");
            }
        }
        closed
    }

    pub(super) fn port_list(&self, filter: &PortFilter) -> Result<Vec<PortInfo>, RpcError> {
        let carries = |ids: &ExternalIds| {
            filter
                .external_ids
                .iter()
                .all(|(k, v)| ids.get(k) == Some(v))
        };
        let polls = self.polls()?;
        self.model
            .ports()
            .filter(|p| carries(&p.spec.external_ids))
            .map(|p| self.port_info(&p.spec.name, &polls))
            .collect()
    }

    pub(super) fn port_set(&mut self, p: &PortSet) -> Result<PortSetResult, RpcError> {
        self.model.set_port(p)?;
        let recheck = self.commit()?;
        tracing::info!(port = %p.name, ?recheck, "port security changed");
        Ok(PortSetResult {
            port: self.port_info(&p.name, &self.polls()?)?,
            recheck,
        })
    }

    /// Validates a port request and assigns it to the worker with the fewest ports.
    /// A VLAN network's uplink port goes to the worker of its trunk, if that is open.
    pub(super) fn check_port(&self, spec: &PortAdd) -> Result<PortRecord, RpcError> {
        let load = self.model.ports_per_worker(self.switch.worker_count());
        let trunk = Some(spec)
            .filter(|s| self.model.is_vlan_uplink(s))
            .and_then(|s| self.model.trunk(&s.iface));
        let least_loaded = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
        let worker = trunk.map_or(least_loaded, |t| t.worker);
        Ok(self.model.check_port(spec, worker)?)
    }

    /// Opens `record`'s port, its receive queues spread over the workers from its own, creating
    /// the tap of a tap port first. When `restoring`, a tap that exists is the one brink created
    /// before a restart, and is reused.
    pub(super) fn bring_up(
        &mut self,
        record: &PortRecord,
        restoring: bool,
    ) -> Result<(), RpcError> {
        let iface = &record.spec.iface;
        let created_tap = match record.spec.kind {
            PortKind::Afxdp | PortKind::VhostUser | PortKind::Uplink => false,
            PortKind::Tap if restoring && self.host.exists(iface) => false,
            PortKind::Tap => {
                self.host.create_tap(iface)?;
                true
            }
        };
        let counters = Arc::new(PortCounters::default());
        let mut workers = Vec::new();
        let opened = match record.spec.kind {
            PortKind::Uplink if self.model.is_vlan_uplink(&record.spec) => {
                self.open_vlan(record, &counters, &mut workers)
            }
            PortKind::VhostUser => self.open_vhost(record, &counters, &mut workers),
            PortKind::Afxdp | PortKind::Tap | PortKind::Uplink => {
                self.open_queues(record, &counters, &mut workers)
            }
        };
        let mode = match opened {
            Ok(mode) => mode,
            Err(e) => {
                for &w in &workers {
                    let _ = self.switch.close_port(w, record.id);
                }
                if created_tap {
                    let _ = self.host.delete_tap(iface);
                }
                return Err(e);
            }
        };
        let socket = &record.spec.socket;
        tracing::info!(port = %record.spec.name, %iface, ?socket, %mode, ?workers, "port up");
        let running = Running {
            mode,
            counters,
            workers,
        };
        self.running.insert(record.spec.name.clone(), running);
        Ok(())
    }

    /// Opens a vhost-user port, its queue pairs spread over the workers from its own (pair 0,
    /// which every guest uses, on the port's own worker), recording in `workers` each that
    /// opened its share.
    fn open_vhost(
        &self,
        record: &PortRecord,
        counters: &Arc<PortCounters>,
        workers: &mut Vec<usize>,
    ) -> Result<PortMode, RpcError> {
        let socket = record.spec.socket.as_deref().unwrap_or_default();
        let count = self.switch.worker_count();
        let pairs = record
            .spec
            .queues
            .map_or_else(|| count.min(usize::from(MAX_VHOST_QUEUES)), usize::from);
        let (placed, shares): (Vec<usize>, Vec<Vec<u32>>) =
            queue_placement(record.worker, pairs as u32, count)
                .into_iter()
                .unzip();
        let specs = self
            .host
            .vhost_specs(socket, record.spec.vhost_mode, &shares)?;
        self.open_shares(record, counters, workers, placed.into_iter().zip(specs))
    }

    /// Opens each worker's share of `record`'s port (`(worker, spec)`), recording in `workers`
    /// each that opened it; returns how the first one attached.
    fn open_shares(
        &self,
        record: &PortRecord,
        counters: &Arc<PortCounters>,
        workers: &mut Vec<usize>,
        shares: impl IntoIterator<Item = (usize, <H::Backend as Backend>::Spec)>,
    ) -> Result<PortMode, RpcError> {
        let mut mode = None;
        for (w, spec) in shares {
            let opened = self
                .switch
                .open_port(w, record.id, spec, Arc::clone(counters));
            mode.get_or_insert(opened.map_err(dataplane_error)?);
            workers.push(w);
        }
        // Placement always places queue (pair) 0, so some worker opened the port.
        mode.ok_or_else(|| RpcError::new(code::DATAPLANE, "the port has no queue"))
    }

    /// Sets the interface's MTU, then opens the port's queues on the workers `queue_placement`
    /// gives, recording in `workers` each that opened its share; returns how AF_XDP attached.
    fn open_queues(
        &self,
        record: &PortRecord,
        counters: &Arc<PortCounters>,
        workers: &mut Vec<usize>,
    ) -> Result<PortMode, RpcError> {
        let iface = &record.spec.iface;
        if !self.host.exists(iface) {
            return Err(IfaceError::Missing(iface.clone()).into());
        }
        let mtu = self.model.network_mtu(&record.spec.network);
        // The interface must carry the network's frames before XDP is attached to it.
        self.host.set_mtu(iface, mtu)?;
        let placement = queue_placement(
            record.worker,
            self.host.rx_queues(iface),
            self.switch.worker_count(),
        );
        let specs = placement
            .into_iter()
            .map(|(w, queues)| Ok((w, self.host.spec(iface, mtu, queues)?)))
            .collect::<Result<Vec<_>, IfaceError>>()?;
        self.open_shares(record, counters, workers, specs)
    }

    /// What each worker polls, by worker, for [`port_info`](Self::port_info).
    fn polls(&self) -> Result<Vec<Vec<Polled>>, RpcError> {
        self.switch.polls().map_err(dataplane_error)
    }

    /// Port `name` as the API shows it; `polls` is what each worker polls.
    fn port_info(&self, name: &str, polls: &[Vec<Polled>]) -> Result<PortInfo, RpcError> {
        let p = self.model.port(name)?;
        let polled = polls
            .iter()
            .enumerate()
            .flat_map(|(worker, ports)| {
                let queues = ports.iter().find(|polled| polled.port == p.id);
                queues.map(|q| PolledQueues {
                    worker,
                    queues: q.queues.clone(),
                })
            })
            .collect();
        Ok(PortInfo {
            name: p.spec.name.clone(),
            id: p.id,
            iface: p.spec.iface.clone(),
            network: p.spec.network.clone(),
            kind: p.spec.kind,
            socket: p.spec.socket.clone(),
            mac: p.spec.mac.clone(),
            ips: p.spec.ips.clone(),
            worker: p.worker,
            polled,
            mode: self
                .running
                .get(name)
                .map_or_else(|| "down".into(), |r| r.mode.to_string()),
            reason: self.down.get(name).cloned(),
            conntrack: p.spec.conntrack,
            port_security: p.spec.port_security,
            security_groups: p.spec.security_groups.clone(),
            allowed_pairs: p.spec.allowed_pairs.clone(),
            permitted_ethertypes: p.spec.permitted_ethertypes.clone(),
            external_ids: p.spec.external_ids.clone(),
        })
    }
}

/// Which workers poll which receive queues (or vhost-user queue pairs) of a port with `queues`
/// of them: queue `q` goes to
/// worker `(first + q) % workers`, so a multi-queue port spreads over the workers, starting with
/// its own.
fn queue_placement(first: usize, queues: u32, workers: usize) -> Vec<(usize, Vec<u32>)> {
    let workers = workers.max(1);
    let mut placement: Vec<(usize, Vec<u32>)> = Vec::new();
    for q in 0..queues.max(1) {
        let w = (first + q as usize) % workers;
        match placement.iter_mut().find(|(pw, _)| *pw == w) {
            Some((_, qs)) => qs.push(q),
            None => placement.push((w, vec![q])),
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::queue_placement;

    #[test]
    fn queues_spread_over_the_workers_from_the_ports_own() {
        assert_eq!(queue_placement(1, 1, 2), [(1, vec![0])]);
        assert_eq!(queue_placement(1, 4, 2), [(1, vec![0, 2]), (0, vec![1, 3])]);
        assert_eq!(queue_placement(0, 2, 1), [(0, vec![0, 1])]);
        assert_eq!(queue_placement(2, 2, 4), [(2, vec![0]), (3, vec![1])]);
    }
}
