//! The API service: each [`Call`] is validated against the model, saved, applied to the
//! dataplane and published as a new snapshot. A refused request changes nothing, and neither
//! does a request whose change cannot be saved: it fails, and the model goes back to what was
//! saved last. One handler module per noun of the API.

mod capture;
mod ct;
mod fdb;
mod network;
mod port;
mod restart;
mod sg;
mod stats;
mod trace;
mod trunk;
mod tunnel;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use brink_api::call::{Call, NoParams};
use brink_api::protocol::{code, RpcError};
use brink_api::types::Recheck;
use brink_conntrack::ZonePolicy;
use brink_dataplane::counters::PortCounters;
use brink_dataplane::firewall::SnapshotGate;
use brink_dataplane::port::{PortError, PortMode};
use brink_dataplane::switch::Switch;
use serde::Serialize;
use serde_json::Value;

use crate::host::Host;
use crate::iface::IfaceError;
use crate::model::{Model, ModelError, State};
use crate::overlay::OverlayError;
use crate::sg::SgError;
use crate::store::Store;

pub use port::RETRY_INTERVAL;
pub use restart::Carried;

impl From<SgError> for RpcError {
    fn from(e: SgError) -> Self {
        let code = match e {
            SgError::NoGroup(_) | SgError::NoRule { .. } => code::NOT_FOUND,
            SgError::Exists(_) | SgError::Duplicate { .. } => code::ALREADY_EXISTS,
            SgError::InUse { .. } | SgError::Referenced { .. } => code::IN_USE,
            _ => code::INVALID_PARAMS,
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<ModelError> for RpcError {
    fn from(e: ModelError) -> Self {
        let code = match e {
            ModelError::NoNetwork(_) | ModelError::NoPort(_) => code::NOT_FOUND,
            ModelError::NetworkExists(_) | ModelError::PortExists(_) => code::ALREADY_EXISTS,
            ModelError::NetworkInUse { .. }
            | ModelError::IfaceInUse { .. }
            | ModelError::SocketInUse { .. }
            | ModelError::DuplicateMac { .. } => code::IN_USE,
            ModelError::TooManyPorts | ModelError::TooManyNetworks => code::DATAPLANE,
            ModelError::BadName(_)
            | ModelError::BadExternalIds(_)
            | ModelError::BadMac(_)
            | ModelError::NotUnicast(_)
            | ModelError::BadIp(_)
            | ModelError::BadAttachment(_)
            | ModelError::BadQueues(_)
            | ModelError::BadMtu(_) => code::INVALID_PARAMS,
            ModelError::Security(e) => return e.into(),
            ModelError::Overlay(ref o) => match o {
                OverlayError::NoPeer { .. }
                | OverlayError::NoRemote { .. }
                | OverlayError::NoRemoteIp { .. } => code::NOT_FOUND,
                OverlayError::VniInUse { .. }
                | OverlayError::VlanInUse { .. }
                | OverlayError::TunnelInUse(_)
                | OverlayError::UplinkInUse { .. }
                | OverlayError::LocalMac { .. } => code::IN_USE,
                _ => code::INVALID_PARAMS,
            },
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<IfaceError> for RpcError {
    fn from(e: IfaceError) -> Self {
        let code = match e {
            IfaceError::BadName(_) => code::INVALID_PARAMS,
            IfaceError::Missing(_) => code::NOT_FOUND,
            IfaceError::Exists(_) => code::IN_USE,
            IfaceError::Command { .. } | IfaceError::Unsupported(_) | IfaceError::Vhost(_) => {
                code::DATAPLANE
            }
        };
        RpcError::new(code, e.to_string())
    }
}

fn dataplane_error(e: PortError) -> RpcError {
    RpcError::new(code::DATAPLANE, e.to_string())
}

/// A saved item that cannot be restored: the state file holds something this brinkd refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("saved {kind} {name:?} cannot be restored: {reason}")]
pub struct RestoreError {
    /// "network", "port", "security groups", "conntrack policy of network", "tunnel endpoint"
    /// or "uplink".
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What the dataplane said about a running port.
struct Running {
    mode: PortMode,
    counters: Arc<PortCounters>,
    /// The workers that poll its queues, the port's own worker first.
    workers: Vec<usize>,
}

/// The daemon's state: the model, the running switch, the host's interfaces, and where to
/// save.
pub struct Service<H: Host> {
    model: Model,
    /// The model as last saved (or restored), which a failed save goes back to.
    saved: Model,
    switch: Switch<H::Backend>,
    host: H,
    running: HashMap<String, Running>,
    /// The VLAN trunks that are open, by their stats name.
    trunks: HashMap<String, Running>,
    /// Ports configured but not running, with the reason (an interface missing at start-up).
    down: BTreeMap<String, String>,
    /// The table's configured maximum, for `ct.stats`.
    ct_max: u64,
    store: Option<Store>,
    generation: u64,
    /// When connection events were last read (`None`: nobody is subscribed).
    events_read: Option<std::time::Instant>,
}

impl<H: Host> Service<H> {
    /// A service over a started switch whose connection table holds `ct_max` connections,
    /// with ports on `host`'s interfaces, saving to `store` if given.
    pub fn new(switch: Switch<H::Backend>, host: H, ct_max: u64, store: Option<Store>) -> Self {
        Service {
            model: Model::default(),
            saved: Model::default(),
            switch,
            host,
            running: HashMap::new(),
            trunks: HashMap::new(),
            down: BTreeMap::new(),
            ct_max,
            store,
            generation: 0,
            events_read: None,
        }
    }

    /// Replays saved state. A port that cannot be opened now (its interface is missing) is
    /// kept, shown down with the reason, and retried by [`Service::retry_down_ports`]; anything
    /// the model refuses is an error, and nothing is restored then.
    pub fn restore(&mut self, state: State) -> Result<(), RestoreError> {
        let refused = |kind, name: &str, reason: String| RestoreError {
            kind,
            name: name.to_string(),
            reason,
        };
        if let Some(tunnel) = state.tunnel {
            self.model
                .set_tunnel(tunnel)
                .map_err(|e| refused("tunnel endpoint", "", e.to_string()))?;
        }
        for name in &state.networks {
            let mtu = state.network_mtus.get(name).copied();
            self.model
                .add_network(name, mtu)
                .map_err(|e| refused("network", name, e.to_string()))?;
            if let Some(ids) = state.network_external_ids.get(name) {
                self.model
                    .set_network_external_ids(name, ids)
                    .map_err(|e| refused("network", name, e.to_string()))?;
            }
            if let Some(overlay) = state.overlays.get(name) {
                self.model
                    .check_overlay(overlay)
                    .map_err(|e| refused("network", name, e.to_string()))?;
                self.model.insert_overlay(name, overlay.clone());
            }
        }
        self.model
            .groups
            .add_records(&state.groups)
            .map_err(|e| refused("security groups", "", e.to_string()))?;
        for policy in &state.policies {
            self.ct_policy_apply(policy)
                .map_err(|e| refused("conntrack policy of network", &policy.network, e.message))?;
        }
        for spec in state.ports {
            let name = spec.name.clone();
            self.restore_port(spec)
                .map_err(|e| refused("port", &name, e.message))?;
        }
        self.restore_uplinks()
            .map_err(|e| refused("uplink", "", e.message))?;
        self.saved = self.model.clone();
        self.publish();
        Ok(())
    }

    /// What runs, in a few words: networks, ports up and down.
    pub fn summary(&self) -> String {
        format!(
            "{} networks, {} ports up, {} down",
            self.model.networks().len(),
            self.running.len(),
            self.down.len()
        )
    }

    /// Serves one call.
    pub fn handle(&mut self, call: Call) -> Result<Value, RpcError> {
        match call {
            Call::NetworkAdd(p) => reply(&self.network_add(&p)?),
            Call::NetworkDel(p) => reply(&self.network_del(&p)?),
            Call::NetworkList(NoParams {}) => reply(&self.model.networks()),
            Call::NetworkPeerAdd(p) => reply(&self.network_peer_add(&p)?),
            Call::NetworkPeerDel(p) => reply(&self.network_peer_del(&p)?),
            Call::TunnelSet(p) => reply(&self.tunnel_set(&p)?),
            Call::TunnelShow(NoParams {}) => reply(&self.tunnel_show()),
            Call::PortAdd(p) => reply(&self.port_add(p)?),
            Call::PortDel(p) => reply(&self.port_del(&p.name)?),
            Call::PortList(p) => reply(&self.port_list(&p)?),
            Call::PortSet(p) => reply(&self.port_set(&p)?),
            Call::FdbShow(p) => reply(&self.fdb_show(p)?),
            Call::FdbFlush(p) => reply(&self.fdb_flush(p)?),
            Call::FdbAdd(p) => reply(&self.fdb_add(&p)?),
            Call::FdbDel(p) => reply(&self.fdb_del(&p)?),
            Call::Stats(p) => reply(&self.stats(&p)?),
            Call::Metrics(NoParams {}) => reply(&self.metrics()?),
            Call::CaptureStart(p) => reply(&self.capture_start(&p)?),
            Call::CaptureRead(p) => reply(&self.capture_read(&p)),
            Call::CaptureStop(NoParams {}) => reply(&self.capture_stop()),
            Call::CtShow(p) => reply(&self.ct_show(&p)?),
            Call::CtFlush(p) => reply(&self.ct_flush(&p)?),
            Call::CtStats(NoParams {}) => reply(&self.ct_stats()),
            Call::CtPolicySet(p) => reply(&self.ct_policy_set(&p)?),
            Call::CtPolicyShow(p) => reply(&self.ct_policy_show(&p)?),
            Call::CtEvents(p) => reply(&self.ct_events(&p)),
            Call::SgAdd(p) => reply(&self.sg_add(&p)?),
            Call::SgDel(p) => reply(&self.sg_del(&p)?),
            Call::SgList(NoParams {}) => reply(&self.sg_list()),
            Call::SgShow(p) => reply(&self.sg_show(&p)?),
            Call::SgRuleAdd(p) => reply(&self.sg_rule_add(&p)?),
            Call::SgRuleDel(p) => reply(&self.sg_rule_del(&p)?),
            Call::SgMemberSet(p) => reply(&self.sg_member_set(&p)?),
            Call::SgImport(p) => reply(&self.sg_import(&p)?),
            Call::Trace(p) => reply(&self.trace(&p)?),
        }
    }

    /// Saves the model and publishes it to the dataplane; returns what rechecking the
    /// connections admitted under the old rules found. If the save fails, nothing is published
    /// and the model goes back to what was saved last.
    fn commit(&mut self) -> Result<Recheck, RpcError> {
        self.save()?;
        Ok(self.publish())
    }

    /// Publishes the model as a new snapshot, then sweeps the connection table: connections
    /// admitted under older rules that the new ones deny are cut. Workers recheck such
    /// connections on their next packet too; the result counts both.
    fn publish(&mut self) -> Recheck {
        self.generation += 1;
        let ct = self.switch.conntrack();
        let before = ct.stats();
        let running = &self.running;
        let counters = self.model.ports().filter_map(|p| {
            let c = &running.get(&p.spec.name)?.counters;
            Some((p.id, Arc::clone(c)))
        });
        let snapshot = self
            .model
            .snapshot(self.generation, |p| running.contains_key(&p.spec.name))
            .with_port_counters(counters);
        let snap = self.switch.publish(snapshot);
        ct.recheck(&mut SnapshotGate(&snap));
        let after = ct.stats();
        Recheck {
            kept: after.recheck_kept - before.recheck_kept,
            cut: after.recheck_cut - before.recheck_cut,
        }
    }

    /// Saves the whole configuration. A failure fails the request that made the change, and
    /// the model goes back to what was saved last; a handler undoes what it did to the
    /// dataplane before the save itself.
    fn save(&mut self) -> Result<(), RpcError> {
        let Some(store) = &self.store else {
            self.saved = self.model.clone();
            return Ok(());
        };
        // The table holds the policies; networks still on the defaults need no entry.
        let ct = self.switch.conntrack();
        let policies = self
            .model
            .networks()
            .into_iter()
            .filter_map(|n| {
                let policy = ct.policy(n.id);
                (policy != ZonePolicy::default()).then(|| ct::as_request(&n.name, &policy))
            })
            .collect();
        match store.save(&self.model.state(policies)) {
            Ok(()) => {
                self.saved = self.model.clone();
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "could not save state; the change is undone");
                self.model = self.saved.clone();
                Err(RpcError::new(
                    code::NOT_SAVED,
                    format!("the change is not made: it could not be saved: {e}"),
                ))
            }
        }
    }
}

fn reply<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}
