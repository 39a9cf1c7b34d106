//! VLAN trunks: the one AF_XDP socket on an uplink interface that the VLAN networks on it
//! share. A trunk opens with its first VLAN network's uplink port and closes with its last;
//! each VLAN network's uplink port is a logical port on it (see `brink_dataplane::trunk`).

use std::sync::Arc;

use brink_api::protocol::{code, RpcError};
use brink_dataplane::counters::PortCounters;
use brink_dataplane::port::PortMode;
use brink_dataplane::trunk::VlanPort;
use brink_dataplane::wire::vlan::TAG_LEN;

use super::{dataplane_error, Running, Service};
use crate::host::Host;
use crate::iface::IfaceError;
use crate::model::PortRecord;

/// How stats name the trunk on `iface`.
pub(super) fn trunk_name(iface: &str) -> String {
    format!("{iface}.trunk")
}

impl<H: Host> Service<H> {
    /// Opens VLAN network uplink port `record` on its trunk, opening the trunk first if it is
    /// the uplink's first VLAN network; returns how the trunk is attached.
    pub(super) fn open_vlan(
        &mut self,
        record: &PortRecord,
        counters: &Arc<PortCounters>,
        workers: &mut Vec<usize>,
    ) -> Result<PortMode, RpcError> {
        let network = &record.spec.network;
        let Some((vid, iface)) = self.model.vlan_of(network) else {
            let message = format!("network {network:?} is not a VLAN network");
            return Err(RpcError::new(code::DATAPLANE, message));
        };
        let mode = self.open_trunk(&iface, record)?;
        let Some(trunk) = self.model.trunk(&iface) else {
            return Err(RpcError::new(code::DATAPLANE, "the trunk did not open"));
        };
        let at = VlanPort {
            trunk: trunk.id,
            vid,
        };
        self.switch
            .open_vlan(trunk.worker, record.id, at, Arc::clone(counters))
            .map_err(dataplane_error)?;
        workers.push(trunk.worker);
        Ok(mode)
    }

    /// Opens the trunk on `iface` on the worker of `first`, the VLAN uplink port it opens for,
    /// unless it is open, and sets the interface's MTU to carry the largest frames of its VLAN
    /// networks with their tag.
    fn open_trunk(&mut self, iface: &str, first: &PortRecord) -> Result<PortMode, RpcError> {
        if !self.host.exists(iface) {
            return Err(IfaceError::Missing(iface.into()).into());
        }
        let largest = self.model.vlan_networks(iface).map(|(_, mtu)| mtu).max();
        let mtu = largest.unwrap_or_default() + TAG_LEN as u16;
        self.host.set_mtu(iface, mtu)?;
        let name = trunk_name(iface);
        if let Some(r) = self.trunks.get(&name) {
            return Ok(r.mode);
        }
        let worker = first.worker;
        let trunk = self.model.check_trunk(worker, first.id)?;
        let queues = (0..self.host.rx_queues(iface).max(1)).collect();
        let spec = self.host.spec(iface, mtu, queues)?;
        let counters = Arc::new(PortCounters::default());
        let mode = self
            .switch
            .open_port(worker, trunk.id, spec, Arc::clone(&counters))
            .map_err(dataplane_error)?;
        tracing::info!(%iface, id = trunk.id, worker, %mode, "trunk up");
        self.model.insert_trunk(iface, trunk);
        let running = Running {
            mode,
            counters,
            workers: vec![worker],
        };
        self.trunks.insert(name, running);
        Ok(mode)
    }

    /// Closes the trunk on `iface` once no VLAN network's uplink port uses it.
    pub(super) fn close_unused_trunk(&mut self, iface: &str) {
        let used = self
            .model
            .ports()
            .any(|p| p.spec.iface == iface && self.model.is_vlan_uplink(&p.spec));
        if used {
            return;
        }
        let Some(trunk) = self.model.remove_trunk(iface) else {
            return;
        };
        self.trunks.remove(&trunk_name(iface));
        if let Err(e) = self.switch.close_port(trunk.worker, trunk.id) {
            tracing::warn!(%iface, error = %e, "could not close trunk");
        }
        tracing::info!(%iface, "trunk closed");
    }
}
