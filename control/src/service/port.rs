//! `port.*`: VM attachments. A saved port whose interface cannot be opened at start-up stays
//! configured, shown down with the reason, and is retried until it opens.

use std::sync::Arc;
use std::time::Duration;

use brink_api::protocol::RpcError;
use brink_api::types::{PortAdd, PortInfo, PortKind, PortSet, PortSetResult};
use brink_dataplane::counters::PortCounters;

use super::{dataplane_error, Running, Service};
use crate::host::Host;
use crate::model::PortRecord;

/// How often the server asks the service to retry the ports that are down.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl<H: Host> Service<H> {
    pub(super) fn port_add(&mut self, spec: PortAdd) -> Result<PortInfo, RpcError> {
        let record = self.check_port(&spec)?;
        self.bring_up(&record, false)?;
        let name = record.spec.name.clone();
        self.model.insert_port(record);
        self.publish();
        self.save()?;
        self.port_info(&name)
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
            if record.spec.kind == PortKind::Afxdp && !self.host.exists(&record.spec.iface) {
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
        let record = self.model.remove_port(name)?;
        self.down.remove(name);
        // Workers stop forwarding to the port before its socket closes.
        self.publish();
        let closed = match self.running.remove(name) {
            Some(_) => self
                .switch
                .close_port(record.worker, record.id)
                .map_err(dataplane_error),
            None => Ok(()),
        };
        if record.spec.kind == PortKind::Tap {
            if let Err(e) = self.host.delete_tap(&record.spec.iface) {
                tracing::warn!(port = %name, error = %e, "could not delete tap");
            }
        }
        self.save()?;
        tracing::info!(port = %name, "port removed");
        closed
    }

    pub(super) fn port_list(&self) -> Result<Vec<PortInfo>, RpcError> {
        self.model
            .ports()
            .map(|p| self.port_info(&p.spec.name))
            .collect()
    }

    pub(super) fn port_set(&mut self, p: &PortSet) -> Result<PortSetResult, RpcError> {
        self.model.set_port(p)?;
        let recheck = self.commit()?;
        tracing::info!(port = %p.name, ?recheck, "port security changed");
        Ok(PortSetResult {
            port: self.port_info(&p.name)?,
            recheck,
        })
    }

    /// Validates a port request and assigns it to the worker with the fewest ports.
    fn check_port(&self, spec: &PortAdd) -> Result<PortRecord, RpcError> {
        let load = self.model.ports_per_worker(self.switch.worker_count());
        let worker = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
        Ok(self.model.check_port(spec, worker)?)
    }

    /// Opens `record`'s port on its worker, creating the tap of a tap port first. When
    /// `restoring`, a tap that exists is the one brink created before a restart, and is reused.
    fn bring_up(&mut self, record: &PortRecord, restoring: bool) -> Result<(), RpcError> {
        let iface = &record.spec.iface;
        let created_tap = match record.spec.kind {
            PortKind::Afxdp => false,
            PortKind::Tap if restoring && self.host.exists(iface) => false,
            PortKind::Tap => {
                self.host.create_tap(iface)?;
                true
            }
        };
        let counters = Arc::new(PortCounters::default());
        let opened = self
            .host
            .spec(iface)
            .map_err(RpcError::from)
            .and_then(|spec| {
                let c = Arc::clone(&counters);
                let opened = self.switch.open_port(record.worker, record.id, spec, c);
                opened.map_err(dataplane_error)
            });
        let mode = match opened {
            Ok(mode) => mode,
            Err(e) => {
                if created_tap {
                    let _ = self.host.delete_tap(iface);
                }
                return Err(e);
            }
        };
        tracing::info!(port = %record.spec.name, %iface, %mode, worker = record.worker, "port up");
        self.running
            .insert(record.spec.name.clone(), Running { mode, counters });
        Ok(())
    }

    fn port_info(&self, name: &str) -> Result<PortInfo, RpcError> {
        let p = self.model.port(name)?;
        Ok(PortInfo {
            name: p.spec.name.clone(),
            id: p.id,
            iface: p.spec.iface.clone(),
            network: p.spec.network.clone(),
            kind: p.spec.kind,
            mac: p.spec.mac.clone(),
            ips: p.spec.ips.clone(),
            worker: p.worker,
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
        })
    }
}
