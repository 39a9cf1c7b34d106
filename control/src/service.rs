//! The API methods: each request is validated against the model, applied to the dataplane,
//! published as a new snapshot and saved. A refused request changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use brink_api::protocol::{code, method, RpcError};
use brink_api::types::{
    CaptureRead, CaptureStart, CtFilter, CtFlushed, CtPolicySet, CtPolicyShow, CtStats, CtZone,
    FdbEntry, NetworkAdd, NetworkFilter, NetworkName, PortAdd, PortInfo, PortKind, PortName,
    PortSet, PortSetResult, PortStats, Recheck, SgAdd, SgImport, SgName, SgRuleAdd, SgRuleDel,
    Stats, StatsFilter, VhostMode, WorkerPoll, WorkerStats, XdpSocketStats,
};
use brink_conntrack::{Filter, InvalidReason, ZonePolicy};
use brink_dataplane::counters::{DropCounters, DropReason, PortCounters};
use brink_dataplane::firewall::SnapshotGate;
use brink_dataplane::port::afxdp::{self, XdpBackend, XdpSpec};
use brink_dataplane::port::vhost::{self, VhostSpec};
use brink_dataplane::port::PortSpec;
use brink_dataplane::port::{PortError, PortMode, SocketStats};
use brink_dataplane::snapshot::PortId;
use brink_dataplane::switch::Switch;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::capture;
use crate::ct;
use crate::iface::{self, IfaceError};
use crate::metrics;
use crate::model::{Model, ModelError, State};
use crate::sg::{self, SgError};
use crate::store::Store;

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
            | ModelError::BadMac(_)
            | ModelError::NotUnicast(_)
            | ModelError::BadIp(_)
            | ModelError::BadAttachment(_)
            | ModelError::BadMtu(_) => code::INVALID_PARAMS,
            ModelError::Security(e) => return e.into(),
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
            IfaceError::Command { .. } => code::DATAPLANE,
        };
        RpcError::new(code, e.to_string())
    }
}

fn dataplane_error(e: PortError) -> RpcError {
    RpcError::new(code::DATAPLANE, e.to_string())
}

/// What the dataplane said about a running port.
struct Running {
    mode: PortMode,
    counters: Arc<PortCounters>,
    /// The workers that poll its queues, the port's own worker first.
    workers: Vec<usize>,
}

/// The daemon's state: the model, the running switch, and where to save.
pub struct Service {
    model: Model,
    switch: Switch<XdpBackend>,
    running: HashMap<String, Running>,
    /// The table's configured maximum, for `ct.stats`.
    ct_max: u64,
    store: Option<Store>,
    generation: u64,
}

impl Service {
    /// A service over a started switch whose connection table holds `ct_max` connections,
    /// saving to `store` if given.
    pub fn new(switch: Switch<XdpBackend>, ct_max: u64, store: Option<Store>) -> Self {
        Service {
            model: Model::default(),
            switch,
            running: HashMap::new(),
            ct_max,
            store,
            generation: 0,
        }
    }

    /// Replays saved state. Entries that fail (an interface gone since) are logged and skipped.
    pub fn restore(&mut self, state: State) {
        for name in &state.networks {
            let mtu = state.network_mtus.get(name).copied();
            if let Err(e) = self.model.add_network(name, mtu) {
                tracing::warn!(network = %name, error = %e, "saved network not restored");
            }
        }
        if let Err(e) = self.model.groups.add_records(&state.groups) {
            tracing::warn!(error = %e, "saved security groups not restored");
        }
        for policy in &state.policies {
            if let Err(e) = self.ct_policy_set(policy) {
                tracing::warn!(network = %policy.network, error = %e, "saved conntrack policy not restored");
            }
        }
        for port in state.ports {
            let name = port.name.clone();
            match self.port_add(port, true) {
                Ok(_) => tracing::info!(port = %name, "restored"),
                Err(e) => tracing::warn!(port = %name, error = %e, "saved port not restored"),
            }
        }
        self.save();
    }

    /// Serves one request.
    pub fn handle(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            method::NETWORK_ADD => {
                let p: NetworkAdd = decode(params)?;
                self.model.add_network(&p.name, p.mtu)?;
                self.commit();
                reply(&())
            }
            method::NETWORK_DEL => {
                let p: NetworkName = decode(params)?;
                let zone = self.model.network_id(&p.name)?.0;
                self.model.del_network(&p.name)?;
                // A later network may get the same zone: it starts clean.
                let ct = self.switch.conntrack();
                ct.set_policy(zone, None);
                ct.flush(&Filter {
                    zone: Some(zone),
                    ..Filter::default()
                });
                self.commit();
                reply(&())
            }
            method::NETWORK_LIST => {
                decode::<Empty>(params)?;
                reply(&self.model.networks())
            }
            method::PORT_ADD => {
                let info = self.port_add(decode(params)?, false)?;
                self.save();
                reply(&info)
            }
            method::PORT_DEL => {
                let p: PortName = decode(params)?;
                self.port_del(&p.name)?;
                reply(&())
            }
            method::PORT_LIST => {
                decode::<Empty>(params)?;
                let ports: Vec<PortInfo> = self
                    .model
                    .ports()
                    .map(|p| self.port_info(&p.spec.name))
                    .collect::<Result<_, _>>()?;
                reply(&ports)
            }
            method::PORT_SET => {
                let p: PortSet = decode(params)?;
                self.model.set_port(&p)?;
                let recheck = self.commit();
                tracing::info!(port = %p.name, ?recheck, "port security changed");
                reply(&PortSetResult {
                    port: self.port_info(&p.name)?,
                    recheck,
                })
            }
            method::SG_ADD => {
                let p: SgAdd = decode(params)?;
                self.model.groups.add_group(&p.name, !p.stateless)?;
                self.save();
                reply(&())
            }
            method::SG_DEL => {
                let p: SgName = decode(params)?;
                let users = self.model.group_users(&p.name);
                self.model.groups.del_group(&p.name, &users)?;
                reply(&self.commit())
            }
            method::SG_LIST => {
                decode::<Empty>(params)?;
                reply(&self.model.groups.infos(|g| self.model.group_users(g)))
            }
            method::SG_SHOW => {
                let p: SgName = decode(params)?;
                let g = self.model.groups.group(&p.name)?;
                reply(&sg::info(&p.name, g, self.model.group_users(&p.name)))
            }
            method::SG_RULE_ADD => {
                let p: SgRuleAdd = decode(params)?;
                let rule = self.model.groups.add_rule(&p.group, &p.rule, None)?;
                self.commit();
                tracing::info!(group = %p.group, id = rule.id, "rule added");
                reply(&sg::rule_info(&rule))
            }
            method::SG_RULE_DEL => {
                let p: SgRuleDel = decode(params)?;
                self.model.groups.del_rule(&p.group, p.id)?;
                let recheck = self.commit();
                tracing::info!(group = %p.group, id = p.id, ?recheck, "rule removed");
                reply(&recheck)
            }
            method::SG_IMPORT => {
                let p: SgImport = decode(params)?;
                let records = sg::import(&p.groups)?;
                self.model.groups.add_records(&records)?;
                self.commit();
                let infos: Result<Vec<_>, SgError> = records
                    .iter()
                    .map(|r| {
                        let g = self.model.groups.group(&r.name)?;
                        Ok(sg::info(&r.name, g, vec![]))
                    })
                    .collect();
                reply(&infos?)
            }
            method::FDB_SHOW => self.fdb_show(decode(params)?),
            method::FDB_FLUSH => {
                let p: NetworkFilter = decode(params)?;
                let network = p.network.map(|n| self.model.network_id(&n)).transpose()?;
                self.switch.fdb_flush(network).map_err(dataplane_error)?;
                reply(&())
            }
            method::STATS => self.stats(decode(params)?),
            method::METRICS => {
                decode::<Empty>(params)?;
                self.metrics()
            }
            method::CAPTURE_START => {
                let p: CaptureStart = decode(params)?;
                let id = self.model.port(&p.port)?.id;
                self.switch.capture().start(id, p.drops);
                tracing::info!(port = %p.port, drops = p.drops, "capture started");
                reply(&())
            }
            method::CAPTURE_READ => {
                let p: CaptureRead = decode(params)?;
                let now = self.switch.now_ns();
                reply(&capture::read(self.switch.capture(), p.max, now))
            }
            method::CAPTURE_STOP => {
                decode::<Empty>(params)?;
                self.switch.capture().stop();
                tracing::info!("capture stopped");
                reply(&())
            }
            method::CT_SHOW => {
                let (filter, limit) = ct::filter(&self.model, &decode::<CtFilter>(params)?)?;
                let now = self.switch.now_ns();
                let conns = self.switch.conntrack().dump(&filter, limit);
                let entries: Vec<_> = conns
                    .iter()
                    .map(|c| ct::entry(&self.model, c, now))
                    .collect();
                reply(&entries)
            }
            method::CT_FLUSH => {
                let p: CtFilter = decode(params)?;
                if p.limit.is_some() {
                    return Err(RpcError::new(
                        code::INVALID_PARAMS,
                        "ct.flush takes no limit",
                    ));
                }
                let (filter, _) = ct::filter(&self.model, &p)?;
                let flushed = self.switch.conntrack().flush(&filter) as u64;
                reply(&CtFlushed { flushed })
            }
            method::CT_STATS => {
                decode::<Empty>(params)?;
                reply(&self.ct_stats())
            }
            method::CT_POLICY_SET => {
                let p: CtPolicySet = decode(params)?;
                let policy = self.ct_policy_set(&p)?;
                self.save();
                reply(&ct::view(&p.network, &policy))
            }
            method::CT_POLICY_SHOW => {
                let p: CtPolicyShow = decode(params)?;
                let zone = self.model.network_id(&p.network)?.0;
                reply(&ct::view(&p.network, &self.switch.conntrack().policy(zone)))
            }
            other => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!(
                    "no method {other:?}; methods are: {}",
                    method::ALL.join(", ")
                ),
            )),
        }
    }

    /// Adds a port. When `restoring`, a tap device that already exists is one brink created
    /// before a restart and is reused.
    /// Applies `p` to its network's zone and returns the policy now in force.
    fn ct_policy_set(&self, p: &CtPolicySet) -> Result<ZonePolicy, RpcError> {
        let zone = self.model.network_id(&p.network)?.0;
        let ct = self.switch.conntrack();
        let policy = ct::apply(ct.policy(zone), p)?;
        ct.set_policy(zone, Some(policy));
        tracing::info!(network = %p.network, ?policy, "conntrack policy set");
        Ok(policy)
    }

    fn ct_stats(&self) -> CtStats {
        let ct = self.switch.conntrack();
        let s = ct.stats();
        CtStats {
            entries: s.entries,
            max: self.ct_max,
            inserts: s.inserts,
            refused: s.refused,
            early_drops: s.early_drops,
            expired: s.expired,
            flushed: s.flushed,
            denied: s.denied,
            recheck_kept: s.recheck_kept,
            recheck_cut: s.recheck_cut,
            invalid: InvalidReason::ALL
                .iter()
                .map(|&r| (r.name().to_string(), s.invalid[r as usize]))
                .filter(|&(_, n)| n > 0)
                .collect(),
            zones: ct
                .zone_counts()
                .into_iter()
                .map(|(zone, n)| CtZone {
                    network: self
                        .model
                        .network_name(brink_dataplane::snapshot::NetworkId(zone))
                        .map_or_else(|| format!("zone {zone}"), str::to_string),
                    connections: u64::from(n),
                })
                .collect(),
        }
    }

    fn port_add(&mut self, spec: PortAdd, restoring: bool) -> Result<PortInfo, RpcError> {
        let load = self.model.ports_per_worker(self.switch.worker_count());
        let worker = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
        let record = self.model.check_port(&spec, worker)?;
        let counters = Arc::new(PortCounters::default());
        let (mode, workers) = match spec.kind {
            PortKind::VhostUser => self.open_vhost(&spec, record.id, worker, &counters)?,
            PortKind::Afxdp | PortKind::Tap => {
                self.open_xdp(&spec, record.id, worker, restoring, &counters)?
            }
        };
        tracing::info!(port = %spec.name, iface = %spec.iface, socket = ?spec.socket, %mode, ?workers, "port added");
        self.running.insert(
            spec.name.clone(),
            Running {
                mode,
                counters,
                workers,
            },
        );
        self.model.insert_port(record);
        self.publish();
        self.port_info(&spec.name)
    }

    /// Opens a vhost-user port on `worker`, which polls both its rings.
    fn open_vhost(
        &mut self,
        spec: &PortAdd,
        id: PortId,
        worker: usize,
        counters: &Arc<PortCounters>,
    ) -> Result<(PortMode, Vec<usize>), RpcError> {
        let socket = spec.socket.clone().unwrap_or_default();
        let vhost = VhostSpec {
            socket: socket.into(),
            mode: match spec.vhost_mode {
                VhostMode::Client => vhost::VhostMode::Client,
                VhostMode::Server => vhost::VhostMode::Server,
            },
        };
        let mode = self
            .switch
            .open_port(worker, id, PortSpec::VhostUser(vhost), Arc::clone(counters))
            .map_err(dataplane_error)?;
        Ok((mode, vec![worker]))
    }

    /// Opens an AF_XDP port's queues on the workers they are spread over, creating its tap first
    /// if it is one; returns how it attached and the workers.
    fn open_xdp(
        &mut self,
        spec: &PortAdd,
        id: PortId,
        worker: usize,
        restoring: bool,
        counters: &Arc<PortCounters>,
    ) -> Result<(PortMode, Vec<usize>), RpcError> {
        let created_tap = if spec.kind != PortKind::Tap {
            iface::require(&spec.iface)?;
            false
        } else if restoring && iface::exists(&spec.iface) {
            false
        } else {
            iface::create_tap(&spec.iface)?;
            true
        };
        let mtu = self.model.network_mtu(&spec.network);
        // The interface must carry the network's frames before XDP is attached to it.
        if let Err(e) = iface::set_mtu(&spec.iface, mtu) {
            if created_tap {
                let _ = iface::delete(&spec.iface);
            }
            return Err(e.into());
        }
        let placement = queue_placement(
            worker,
            afxdp::rx_queue_count(&spec.iface),
            self.switch.worker_count(),
        );
        let mut workers = Vec::with_capacity(placement.len());
        let mut mode = None;
        for (w, queues) in placement {
            let xdp = XdpSpec {
                iface: spec.iface.clone(),
                mtu,
                queues,
            };
            match self
                .switch
                .open_port(w, id, PortSpec::Xdp(xdp), Arc::clone(counters))
            {
                Ok(m) => {
                    mode.get_or_insert(m);
                    workers.push(w);
                }
                Err(e) => {
                    for &w in &workers {
                        let _ = self.switch.close_port(w, id);
                    }
                    if created_tap {
                        let _ = iface::delete(&spec.iface);
                    }
                    return Err(dataplane_error(e));
                }
            }
        }
        // `queue_placement` always places queue 0, so some worker opened the port.
        match mode {
            Some(mode) => Ok((mode, workers)),
            None => Err(RpcError::new(
                code::DATAPLANE,
                "the port has no receive queue",
            )),
        }
    }

    fn port_del(&mut self, name: &str) -> Result<(), RpcError> {
        let record = self.model.remove_port(name)?;
        // Workers stop forwarding to the port before its socket closes.
        self.publish();
        let workers = self
            .running
            .remove(name)
            .map_or_else(|| vec![record.worker], |r| r.workers);
        let closed = workers
            .iter()
            .try_for_each(|&w| self.switch.close_port(w, record.id));
        if record.spec.kind == PortKind::Tap {
            if let Err(e) = iface::delete(&record.spec.iface) {
                tracing::warn!(port = %name, error = %e, "could not delete tap");
            }
        }
        self.save();
        tracing::info!(port = %name, "port removed");
        closed.map_err(dataplane_error)
    }

    fn port_info(&self, name: &str) -> Result<PortInfo, RpcError> {
        let p = self.model.port(name)?;
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
            mode: self
                .running
                .get(name)
                .map_or_else(|| "down".into(), |r| r.mode.to_string()),
            conntrack: p.spec.conntrack,
            port_security: p.spec.port_security,
            security_groups: p.spec.security_groups.clone(),
            allowed_pairs: p.spec.allowed_pairs.clone(),
            permitted_ethertypes: p.spec.permitted_ethertypes.clone(),
        })
    }

    fn fdb_show(&self, filter: NetworkFilter) -> Result<Value, RpcError> {
        let only = filter
            .network
            .map(|n| self.model.network_id(&n))
            .transpose()?;
        let mut rows = self.switch.fdb_rows().map_err(dataplane_error)?;
        rows.sort_by_key(|r| (r.network, r.mac));
        let entries: Vec<FdbEntry> = rows
            .into_iter()
            .filter(|r| only.is_none_or(|n| n == r.network))
            .filter_map(|r| {
                Some(FdbEntry {
                    network: self.model.network_name(r.network)?.to_string(),
                    mac: r.mac.to_string(),
                    port: self.model.port_by_id(r.port)?.spec.name.clone(),
                    age_secs: r.age.map(|a| a.as_secs_f64()),
                })
            })
            .collect();
        reply(&entries)
    }

    fn stats(&self, filter: StatsFilter) -> Result<Value, RpcError> {
        reply(&self.counters(filter)?)
    }

    /// The Prometheus exposition of every counter (see [`metrics`]).
    fn metrics(&self) -> Result<Value, RpcError> {
        let ports: Vec<PortInfo> = self
            .model
            .ports()
            .map(|p| self.port_info(&p.spec.name))
            .collect::<Result<_, _>>()?;
        let groups = self.model.groups.infos(|g| self.model.group_users(g));
        let text = metrics::render(metrics::Sources {
            ports: &ports,
            stats: &self.counters(StatsFilter::default())?,
            ct: &self.ct_stats(),
            groups: &groups,
        })
        .map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))?;
        reply(&text)
    }

    fn counters(&self, filter: StatsFilter) -> Result<Stats, RpcError> {
        if let Some(name) = &filter.port {
            self.model.port(name)?;
        }
        let sockets: HashMap<_, _> = self
            .switch
            .socket_stats()
            .map_err(dataplane_error)?
            .into_iter()
            .collect();
        let ports = self
            .model
            .ports()
            .filter(|p| filter.port.as_ref().is_none_or(|n| *n == p.spec.name))
            .filter_map(|p| {
                let c = &self.running.get(&p.spec.name)?.counters;
                Some(PortStats {
                    name: p.spec.name.clone(),
                    rx_packets: c.rx_packets.get(),
                    rx_bytes: c.rx_bytes.get(),
                    tx_packets: c.tx_packets.get(),
                    tx_bytes: c.tx_bytes.get(),
                    drops: drop_map(&c.drops),
                    xdp_socket: sockets.get(&p.id).map(xdp_socket_stats),
                })
            })
            .collect();
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
                    fdb_learned: c.fdb_learned.get(),
                    fdb_full: c.fdb_full.get(),
                    fdb_aged: c.fdb_aged.get(),
                    drops: drop_map(&c.drops),
                    polls: polls
                        .get(worker)
                        .into_iter()
                        .flatten()
                        .filter_map(|(id, queues)| {
                            Some(WorkerPoll {
                                port: self.model.port_by_id(*id)?.spec.name.clone(),
                                queues: queues.clone(),
                            })
                        })
                        .collect(),
                })
                .collect()
        };
        Ok(Stats { ports, workers })
    }

    /// Publishes the model to the dataplane and saves it; returns what rechecking the
    /// connections admitted under the old rules found.
    fn commit(&mut self) -> Recheck {
        let recheck = self.publish();
        self.save();
        recheck
    }

    /// Publishes the model as a new snapshot, then sweeps the connection table: connections
    /// admitted under older rules that the new ones deny are cut. Workers recheck such
    /// connections on their next packet too; the result counts both.
    fn publish(&mut self) -> Recheck {
        self.generation += 1;
        let ct = self.switch.conntrack();
        let before = ct.stats();
        let snap = self.switch.publish(self.model.snapshot(self.generation));
        ct.recheck(&mut SnapshotGate(&snap));
        let after = ct.stats();
        Recheck {
            kept: after.recheck_kept - before.recheck_kept,
            cut: after.recheck_cut - before.recheck_cut,
        }
    }

    fn save(&self) {
        if let Some(store) = &self.store {
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
            if let Err(e) = store.save(&self.model.state(policies)) {
                tracing::error!(error = %e, "could not save state");
            }
        }
    }
}

/// Params of methods that take none: absent, null or `{}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn decode<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")))
}

/// Which workers poll which receive queues of a port with `queues` queues: queue `q` goes to
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

fn reply<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
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

fn drop_map(d: &DropCounters) -> BTreeMap<String, u64> {
    DropReason::ALL
        .iter()
        .map(|&r| (r.name().to_string(), d.get(r)))
        .filter(|&(_, n)| n > 0)
        .collect()
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
