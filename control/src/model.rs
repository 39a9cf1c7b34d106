//! The configuration model: networks and ports by name, validated, with their dataplane ids.
//!
//! Pure data: nothing here touches the kernel or the dataplane, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use brink_api::types::{
    CtPolicySet, ExternalIds, NetworkInfo, PortAdd, PortKind, PortSet, Segment, SgRecord,
    MAX_VHOST_QUEUES,
};
use brink_conntrack::Addr;
use brink_dataplane::acl::{PortFilter, PortSecurity, Prefix};
use brink_dataplane::snapshot::{NetworkId, PortEntry, PortId, Snapshot, DEFAULT_MTU, MAX_PORTS};
use brink_dataplane::wire::ethernet::MacParseError;
use brink_dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};

use crate::name::{self, BadExternalIds, BadName};
use crate::overlay::{self, Overlay, OverlayError, Remote, Tunnel};
use crate::sg::{parse_cidr, Members, SecurityGroups, SgError};

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A name with characters or a length that is not allowed.
    #[error(transparent)]
    BadName(#[from] BadName),
    /// Bad external ids.
    #[error(transparent)]
    BadExternalIds(#[from] BadExternalIds),
    /// The network name is taken.
    #[error("network {0:?} already exists")]
    NetworkExists(String),
    /// No such network.
    #[error("no network named {0:?}")]
    NoNetwork(String),
    /// The network still has ports.
    #[error("network {name:?} still has ports: {ports}")]
    NetworkInUse {
        /// Network name.
        name: String,
        /// Its ports, comma-separated.
        ports: String,
    },
    /// The port name is taken.
    #[error("port {0:?} already exists")]
    PortExists(String),
    /// No such port.
    #[error("no port named {0:?}")]
    NoPort(String),
    /// Another port uses the interface.
    #[error("interface {iface:?} is already used by port {port:?}")]
    IfaceInUse {
        /// Interface name.
        iface: String,
        /// The port using it.
        port: String,
    },
    /// Another port uses the vhost-user socket.
    #[error("socket {socket:?} is already used by port {port:?}")]
    SocketInUse {
        /// Socket path.
        socket: String,
        /// The port using it.
        port: String,
    },
    /// The port's kind and what it attaches to do not match.
    #[error("{0}")]
    BadAttachment(&'static str),
    /// A vhost-user port's queue pairs out of range.
    #[error("{0} queue pairs asked for; a vhost-user port has 1 to {max}", max = MAX_VHOST_QUEUES)]
    BadQueues(u16),
    /// A malformed MAC address.
    #[error(transparent)]
    BadMac(#[from] MacParseError),
    /// A MAC address no VM may own.
    #[error("MAC {0} is not a unicast address; a VM's MAC must be unicast and non-zero")]
    NotUnicast(MacAddr),
    /// Another port of the network has this MAC.
    #[error("MAC {mac} is already configured on port {port:?} of network {network:?}")]
    DuplicateMac {
        /// The MAC.
        mac: MacAddr,
        /// The port that has it.
        port: String,
        /// The network.
        network: String,
    },
    /// A malformed IP address.
    #[error("bad IP address {0:?}: expected an IPv4 or IPv6 address like 10.0.0.5 or fd00::5")]
    BadIp(String),
    /// All port ids are used.
    #[error("no free port id: at most {MAX_PORTS} ports")]
    TooManyPorts,
    /// All network ids are used.
    #[error("no free network id")]
    TooManyNetworks,
    /// An MTU outside what brink carries.
    #[error("MTU {0} is out of range: use {min} to {max}", min = MIN_MTU, max = MAX_MTU)]
    BadMtu(u16),
    /// A security group or port security setting was refused.
    #[error(transparent)]
    Security(#[from] SgError),
    /// A tunnel, segment or l2population change was refused.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
}

/// A port as configured, with the ids the dataplane knows it by.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRecord {
    /// The request that created it, normalized (MAC lower-case, IPs canonical).
    pub spec: PortAdd,
    /// Dataplane port id.
    pub id: PortId,
    /// Worker that owns it.
    pub worker: usize,
    /// Parsed MAC.
    pub mac: Option<MacAddr>,
    /// Parsed IPs.
    pub ips: Vec<IpAddr>,
    /// Parsed allowed address pairs.
    pub pairs: Vec<(Prefix, Option<MacAddr>)>,
}

/// The smallest network MTU (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// The largest network MTU: jumbo frames.
pub const MAX_MTU: u16 = 9000;

/// What is saved to disk: enough to replay every change after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Network names.
    pub networks: Vec<String>,
    /// MTUs of the networks that do not use the default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_mtus: BTreeMap<String, u16>,
    /// External ids of the networks that have any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_external_ids: BTreeMap<String, ExternalIds>,
    /// Port requests.
    pub ports: Vec<PortAdd>,
    /// Conntrack policies of networks that have one.
    #[serde(default)]
    pub policies: Vec<CtPolicySet>,
    /// Security groups.
    #[serde(default)]
    pub groups: Vec<SgRecord>,
    /// The tunnel endpoint, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// Segments and l2population state of the networks that leave the host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overlays: BTreeMap<String, Overlay>,
}

/// Networks, ports and security groups by name.
#[derive(Debug, Clone, Default)]
pub struct Model {
    networks: BTreeMap<String, NetworkId>,
    /// MTUs of the networks that do not use [`DEFAULT_MTU`].
    mtus: BTreeMap<String, u16>,
    /// External ids of the networks that have any.
    network_ids: BTreeMap<String, ExternalIds>,
    ports: BTreeMap<String, PortRecord>,
    /// Security groups.
    pub groups: SecurityGroups,
    /// This host's tunnel endpoint.
    tunnel: Option<Tunnel>,
    /// Segments of the networks that leave the host, by network name.
    overlays: BTreeMap<String, Overlay>,
    /// The trunks of uplinks that carry VLAN networks, by interface. Derived from the VLAN
    /// networks, so not saved: their uplinks make them again after a restart.
    trunks: BTreeMap<String, Trunk>,
}

/// The one socket on an uplink interface that its VLAN networks share: a dataplane port in no
/// network, polled by one worker, which also owns the VLAN networks' uplink ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trunk {
    /// Its dataplane port id.
    pub id: PortId,
    /// The worker that polls it.
    pub worker: usize,
}

/// An allowed address pair `IP[/LEN][,MAC]`.
fn parse_pair(s: &str) -> Result<(Prefix, Option<MacAddr>), SgError> {
    let bad = || SgError::BadPair(s.into());
    let (ip, mac) = match s.split_once(',') {
        Some((ip, mac)) => (ip, Some(mac.trim().parse::<MacAddr>().map_err(|_| bad())?)),
        None => (s, None),
    };
    if mac.is_some_and(|m| m.is_multicast() || m.is_zero()) {
        return Err(bad());
    }
    Ok((parse_cidr(ip.trim()).map_err(|_| bad())?, mac))
}

impl Model {
    /// Adds a network with MTU `mtu` (default [`DEFAULT_MTU`]) and returns its id.
    pub fn add_network(&mut self, name: &str, mtu: Option<u16>) -> Result<NetworkId, ModelError> {
        name::check(name)?;
        if self.networks.contains_key(name) {
            return Err(ModelError::NetworkExists(name.into()));
        }
        let mtu = mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(ModelError::BadMtu(mtu));
        }
        let used: Vec<u16> = self.networks.values().map(|n| n.0).collect();
        let id = (1..=u16::MAX)
            .find(|i| !used.contains(i))
            .ok_or(ModelError::TooManyNetworks)?;
        self.networks.insert(name.into(), NetworkId(id));
        if mtu != DEFAULT_MTU {
            self.mtus.insert(name.into(), mtu);
        }
        Ok(NetworkId(id))
    }

    /// Replaces the external ids of network `name`.
    pub fn set_network_external_ids(
        &mut self,
        name: &str,
        ids: &ExternalIds,
    ) -> Result<(), ModelError> {
        self.network_id(name)?;
        name::check_external_ids(ids)?;
        if ids.is_empty() {
            self.network_ids.remove(name);
        } else {
            self.network_ids.insert(name.into(), ids.clone());
        }
        Ok(())
    }

    /// Fails unless network `name` exists and has no ports but its uplink.
    pub fn check_network_unused(&self, name: &str) -> Result<(), ModelError> {
        self.network_id(name)?;
        let ports: Vec<String> = self
            .ports
            .values()
            .filter(|p| p.spec.network == name && p.spec.kind != PortKind::Uplink)
            .map(|p| p.spec.name.clone())
            .collect();
        if !ports.is_empty() {
            return Err(ModelError::NetworkInUse {
                name: name.into(),
                ports: ports.join(","),
            });
        }
        Ok(())
    }

    /// Deletes a network that has no ports (remove its uplink first).
    pub fn del_network(&mut self, name: &str) -> Result<(), ModelError> {
        self.check_network_unused(name)?;
        let ports = self.ports_of(name);
        if !ports.is_empty() {
            return Err(ModelError::NetworkInUse {
                name: name.into(),
                ports: ports.join(","),
            });
        }
        self.networks.remove(name);
        self.mtus.remove(name);
        self.network_ids.remove(name);
        self.overlays.remove(name);
        Ok(())
    }

    /// Every network with its ports.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.networks
            .iter()
            .map(|(name, id)| NetworkInfo {
                name: name.clone(),
                id: id.0,
                mtu: self.network_mtu(name),
                ports: self.ports_of(name),
                segment: self.overlays.get(name).map(|o| o.segment.clone()),
                arp_responder: self.overlays.get(name).is_some_and(|o| o.arp_responder),
                peers: self.overlays.get(name).map_or(vec![], |o| {
                    o.peers.iter().map(ToString::to_string).collect()
                }),
                external_ids: self.network_ids.get(name).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// The id of network `name`.
    pub fn network_id(&self, name: &str) -> Result<NetworkId, ModelError> {
        self.networks
            .get(name)
            .copied()
            .ok_or_else(|| ModelError::NoNetwork(name.into()))
    }

    /// The MTU of network `name` ([`DEFAULT_MTU`] for one that does not exist).
    pub fn network_mtu(&self, name: &str) -> u16 {
        self.mtus.get(name).copied().unwrap_or(DEFAULT_MTU)
    }

    /// The name of network `id`.
    pub fn network_name(&self, id: NetworkId) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, &n)| n == id)
            .map(|(name, _)| name.as_str())
    }

    fn ports_of(&self, network: &str) -> Vec<String> {
        self.ports
            .values()
            .filter(|p| p.spec.network == network)
            .map(|p| p.spec.name.clone())
            .collect()
    }

    /// The lowest port id no port, no trunk and not `pending` (a port not yet inserted) has.
    fn free_port_id(&self, pending: Option<PortId>) -> Result<PortId, ModelError> {
        (0..MAX_PORTS as PortId)
            .find(|i| {
                Some(*i) != pending
                    && self.ports.values().all(|p| p.id != *i)
                    && self.trunks.values().all(|t| t.id != *i)
            })
            .ok_or(ModelError::TooManyPorts)
    }

    /// Whether `spec` is the uplink port of a VLAN network.
    pub fn is_vlan_uplink(&self, spec: &PortAdd) -> bool {
        spec.kind == PortKind::Uplink && self.vlan_of(&spec.network).is_some()
    }

    /// The VLAN id and uplink interface of VLAN network `network`.
    pub fn vlan_of(&self, network: &str) -> Option<(u16, String)> {
        let o = self.overlays.get(network)?;
        Some((o.vlan()?, o.uplink_iface()))
    }

    /// The trunk on uplink `iface`, if it has one.
    pub fn trunk(&self, iface: &str) -> Option<Trunk> {
        self.trunks.get(iface).copied()
    }

    /// The trunks, by interface.
    pub fn trunks(&self) -> impl Iterator<Item = (&str, Trunk)> {
        self.trunks.iter().map(|(i, t)| (i.as_str(), *t))
    }

    /// Picks a port id for a new trunk polled by `worker`, opened for port `first` (checked,
    /// not yet inserted). Nothing changes.
    pub fn check_trunk(&self, worker: usize, first: PortId) -> Result<Trunk, ModelError> {
        Ok(Trunk {
            id: self.free_port_id(Some(first))?,
            worker,
        })
    }

    /// Records `trunk`, checked by [`Model::check_trunk`], as the trunk on `iface`.
    pub fn insert_trunk(&mut self, iface: &str, trunk: Trunk) {
        self.trunks.insert(iface.into(), trunk);
    }

    /// Forgets the trunk on `iface`.
    pub fn remove_trunk(&mut self, iface: &str) -> Option<Trunk> {
        self.trunks.remove(iface)
    }

    /// The VLAN networks on uplink `iface`, with their MTUs.
    pub fn vlan_networks<'a>(&'a self, iface: &'a str) -> impl Iterator<Item = (&'a str, u16)> {
        self.overlays
            .iter()
            .filter(move |(_, o)| o.vlan().is_some() && o.uplink_iface() == iface)
            .map(|(n, _)| (n.as_str(), self.network_mtu(n)))
    }

    /// Validates a port request against the model and picks a free port id. Nothing changes.
    pub fn check_port(&self, spec: &PortAdd, worker: usize) -> Result<PortRecord, ModelError> {
        name::check(&spec.name)?;
        name::check_external_ids(&spec.external_ids)?;
        if self.ports.contains_key(&spec.name) {
            return Err(ModelError::PortExists(spec.name.clone()));
        }
        self.network_id(&spec.network)?;
        check_attachment(spec)?;
        if let Some(socket) = &spec.socket {
            if let Some(other) = self.ports.values().find(|p| p.spec.socket == spec.socket) {
                return Err(ModelError::SocketInUse {
                    socket: socket.clone(),
                    port: other.spec.name.clone(),
                });
            }
        }
        // The VLAN networks of a trunk all have an uplink port on its interface.
        let vlan = self.is_vlan_uplink(spec);
        if let Some(other) = self.ports.values().find(|p| {
            !spec.iface.is_empty()
                && p.spec.iface == spec.iface
                && !(vlan && self.is_vlan_uplink(&p.spec))
        }) {
            return Err(ModelError::IfaceInUse {
                iface: spec.iface.clone(),
                port: other.spec.name.clone(),
            });
        }
        let mac = match &spec.mac {
            Some(s) => {
                let mac: MacAddr = s.parse()?;
                if mac.is_multicast() || mac.is_zero() {
                    return Err(ModelError::NotUnicast(mac));
                }
                if let Some(other) = self
                    .ports
                    .values()
                    .find(|p| p.spec.network == spec.network && p.mac == Some(mac))
                {
                    return Err(ModelError::DuplicateMac {
                        mac,
                        port: other.spec.name.clone(),
                        network: spec.network.clone(),
                    });
                }
                Some(mac)
            }
            None => None,
        };
        let ips = spec
            .ips
            .iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| ModelError::BadIp(s.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id = self.free_port_id(None)?;
        let mut spec = spec.clone();
        spec.mac = mac.map(|m| m.to_string());
        spec.ips = ips.iter().map(IpAddr::to_string).collect();
        let pairs = self.check_security(&mut spec, mac)?;
        Ok(PortRecord {
            spec,
            id,
            worker,
            mac,
            ips,
            pairs,
        })
    }

    /// Validates and normalizes the port-security fields of `spec` for a port with MAC `mac`;
    /// returns the parsed allowed address pairs.
    fn check_security(
        &self,
        spec: &mut PortAdd,
        mac: Option<MacAddr>,
    ) -> Result<Vec<(Prefix, Option<MacAddr>)>, SgError> {
        if !spec.port_security {
            if !spec.security_groups.is_empty() || !spec.allowed_pairs.is_empty() {
                return Err(SgError::SecurityOff);
            }
            return Ok(vec![]);
        }
        if mac.is_none() {
            return Err(SgError::NeedsMac);
        }
        self.groups.check_port_groups(&spec.security_groups)?;
        spec.security_groups.dedup();
        if let Some(&bad) = spec.permitted_ethertypes.iter().find(|&&e| e < 0x0600) {
            return Err(SgError::BadEthertype(bad));
        }
        let pairs = spec
            .allowed_pairs
            .iter()
            .map(|p| parse_pair(p))
            .collect::<Result<Vec<_>, _>>()?;
        spec.allowed_pairs = pairs
            .iter()
            .map(|(prefix, mac)| match mac {
                Some(m) => format!("{prefix},{m}"),
                None => prefix.to_string(),
            })
            .collect();
        Ok(pairs)
    }

    /// Changes a port's security as `set` asks; returns the port as it is now.
    pub fn set_port(&mut self, set: &PortSet) -> Result<&PortRecord, ModelError> {
        let record = self.port(&set.name)?;
        let mut spec = record.spec.clone();
        let mac = record.mac;
        if let Some(on) = set.port_security {
            spec.port_security = on;
        }
        if let Some(groups) = &set.security_groups {
            spec.security_groups = groups.clone();
        }
        if let Some(pairs) = &set.allowed_pairs {
            spec.allowed_pairs = pairs.clone();
        }
        if let Some(types) = &set.permitted_ethertypes {
            spec.permitted_ethertypes = types.clone();
        }
        if let Some(ids) = &set.external_ids {
            name::check_external_ids(ids)?;
            spec.external_ids = ids.clone();
        }
        let pairs = self.check_security(&mut spec, mac)?;
        let record = self
            .ports
            .get_mut(&set.name)
            .ok_or_else(|| ModelError::NoPort(set.name.clone()))?;
        record.spec = spec;
        record.pairs = pairs;
        Ok(record)
    }

    /// Names of the ports that use security group `group`.
    pub fn group_users(&self, group: &str) -> Vec<String> {
        self.ports
            .values()
            .filter(|p| p.spec.security_groups.iter().any(|g| g == group))
            .map(|p| p.spec.name.clone())
            .collect()
    }

    /// The addresses of each group's ports (fixed IPs and allowed address pairs): what a
    /// remote-group rule naming the group matches. Computed once per snapshot.
    fn group_members(&self) -> Members {
        let mut members = Members::new();
        for p in self.ports.values() {
            let ips = p.ips.iter().map(|&ip| Prefix::host(Addr::from(ip)));
            let addrs: Vec<Prefix> = ips.chain(p.pairs.iter().map(|&(pr, _)| pr)).collect();
            for g in &p.spec.security_groups {
                members.entry(g.clone()).or_default().extend(&addrs);
            }
        }
        for (g, explicit) in self.groups.explicit_members() {
            members.entry(g.into()).or_default().extend(explicit);
        }
        for list in members.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        members
    }

    /// The compiled security of port `p` given every group's `members`, `None` if port
    /// security is off.
    fn filter(&self, p: &PortRecord, members: &Members) -> Option<Arc<PortFilter>> {
        if !p.spec.port_security {
            return None;
        }
        let mac = p.mac?;
        let groups = &p.spec.security_groups;
        let compile = |ingress, v6| self.groups.compile(groups, ingress, v6, members);
        let ips: Vec<Addr> = p.ips.iter().map(|&ip| Addr::from(ip)).collect();
        Some(Arc::new(PortFilter {
            stateful: self.groups.check_port_groups(groups).unwrap_or(true),
            ingress: [compile(true, false), compile(true, true)],
            egress: [compile(false, false), compile(false, true)],
            security: PortSecurity::new(mac, &ips, &p.pairs, &p.spec.permitted_ethertypes),
        }))
    }

    /// Adds a port checked by [`Model::check_port`].
    pub fn insert_port(&mut self, record: PortRecord) {
        self.ports.insert(record.spec.name.clone(), record);
    }

    /// Removes a port and returns it.
    pub fn remove_port(&mut self, name: &str) -> Result<PortRecord, ModelError> {
        self.ports
            .remove(name)
            .ok_or_else(|| ModelError::NoPort(name.into()))
    }

    /// Port `name`.
    pub fn port(&self, name: &str) -> Result<&PortRecord, ModelError> {
        self.ports
            .get(name)
            .ok_or_else(|| ModelError::NoPort(name.into()))
    }

    /// Every port, by name.
    pub fn ports(&self) -> impl Iterator<Item = &PortRecord> {
        self.ports.values()
    }

    /// The port with dataplane id `id`.
    pub fn port_by_id(&self, id: PortId) -> Option<&PortRecord> {
        self.ports.values().find(|p| p.id == id)
    }

    /// Number of ports each of `workers` workers owns.
    pub fn ports_per_worker(&self, workers: usize) -> Vec<usize> {
        let mut load = vec![0; workers];
        for p in self.ports.values() {
            if let Some(n) = load.get_mut(p.worker) {
                *n += 1;
            }
        }
        load
    }

    /// The dataplane's view of the model, with the ports for which `up` is true (a port
    /// whose interface is missing stays configured, but the dataplane does not see it).
    pub fn snapshot(&self, generation: u64, up: impl Fn(&PortRecord) -> bool) -> Snapshot {
        let members = self.group_members();
        Snapshot::new(
            generation,
            self.ports.values().filter(|p| up(p)).filter_map(|p| {
                let network = *self.networks.get(&p.spec.network)?;
                Some((
                    p.id,
                    PortEntry {
                        network,
                        worker: p.worker,
                        mac: p.mac,
                        conntrack: p.spec.conntrack,
                        filter: self.filter(p, &members),
                    },
                ))
            }),
        )
        .with_mtus(
            self.mtus
                .iter()
                .filter_map(|(name, &mtu)| Some((*self.networks.get(name)?, mtu))),
        )
        .with_remote_macs(self.remotes(&up).map(|(_, n, mac, _, port)| (n, mac, port)))
        .with_neighbour_answers(
            self.remotes(&up)
                .filter(|(o, ..)| o.arp_responder)
                .flat_map(|(_, n, mac, remote, port)| {
                    remote
                        .ips
                        .iter()
                        .map(move |&ip| (n, Addr::from(ip), mac, port))
                }),
        )
    }

    /// Every remote MAC as `(segment, network, MAC, where, uplink port)`, for networks whose
    /// uplink is up.
    fn remotes<'a>(
        &'a self,
        up: &'a impl Fn(&PortRecord) -> bool,
    ) -> impl Iterator<Item = (&'a Overlay, NetworkId, MacAddr, &'a Remote, PortId)> + 'a {
        self.overlays.iter().flat_map(move |(name, o)| {
            let network = self.networks.get(name).copied();
            let uplink = self
                .ports
                .get(&overlay::uplink_port(name))
                .filter(|p| up(p))
                .map(|p| p.id);
            let macs = network.zip(uplink).into_iter();
            macs.flat_map(move |(n, port)| {
                o.remote_macs().map(move |(mac, r)| (o, n, mac, r, port))
            })
        })
    }

    /// What to save, with the conntrack `policies` of networks that have one.
    pub fn state(&self, policies: Vec<CtPolicySet>) -> State {
        let mut ports: Vec<&PortRecord> = self.ports.values().collect();
        ports.sort_by_key(|p| p.id);
        State {
            networks: self.networks.keys().cloned().collect(),
            network_mtus: self.mtus.clone(),
            network_external_ids: self.network_ids.clone(),
            ports: ports
                .into_iter()
                .filter(|p| p.spec.kind != PortKind::Uplink)
                .map(|p| p.spec.clone())
                .collect(),
            policies,
            groups: self.groups.records(),
            tunnel: self.tunnel.clone(),
            overlays: self.overlays.clone(),
        }
    }

    /// The tunnel endpoint, if set.
    pub fn tunnel(&self) -> Option<&Tunnel> {
        self.tunnel.as_ref()
    }

    /// Sets the tunnel endpoint; refused while VXLAN networks use another.
    pub fn set_tunnel(&mut self, tunnel: Tunnel) -> Result<(), ModelError> {
        let users: Vec<&str> = self
            .overlays
            .iter()
            .filter(|(_, o)| o.vni().is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        if !users.is_empty() && self.tunnel.as_ref() != Some(&tunnel) {
            return Err(OverlayError::TunnelInUse(users.join(",")).into());
        }
        self.tunnel = Some(tunnel);
        Ok(())
    }

    /// Checks that a new network may have segment `o`: a VXLAN network needs the tunnel and
    /// a VNI of its own, a flat one an uplink nothing else uses. Nothing changes.
    pub fn check_overlay(&self, o: &Overlay) -> Result<(), ModelError> {
        match &o.segment {
            Segment::Vxlan { vni } => {
                if self.tunnel.is_none() {
                    return Err(OverlayError::NoTunnel.into());
                }
                if let Some((network, _)) =
                    self.overlays.iter().find(|(_, x)| x.vni() == Some(*vni))
                {
                    let network = network.clone();
                    return Err(OverlayError::VniInUse { vni: *vni, network }.into());
                }
            }
            Segment::Flat { uplink } => self.check_uplink_free(uplink, false)?,
            Segment::Vlan { vlan, uplink } => {
                if let Some((network, _)) = self
                    .overlays
                    .iter()
                    .find(|(_, x)| x.vlan() == Some(*vlan) && x.uplink_iface() == *uplink)
                {
                    return Err(OverlayError::VlanInUse {
                        vlan: *vlan,
                        uplink: uplink.clone(),
                        network: network.clone(),
                    }
                    .into());
                }
                self.check_uplink_free(uplink, true)?;
            }
        }
        Ok(())
    }

    /// Fails if a network, a port or the tunnel endpoint uses `uplink`; with `vlan`, other VLAN
    /// networks (and their uplink ports) may, as they share its trunk.
    fn check_uplink_free(&self, uplink: &str, vlan: bool) -> Result<(), ModelError> {
        let user =
            self.overlays
                .iter()
                .find(|(_, x)| x.uplink_iface() == uplink && !(vlan && x.vlan().is_some()))
                .map(|(n, _)| format!("network {n:?}"))
                .or_else(|| {
                    let port = self.ports.values().find(|p| {
                        p.spec.iface == uplink && !(vlan && self.is_vlan_uplink(&p.spec))
                    })?;
                    Some(format!("port {:?}", port.spec.name))
                })
                .or_else(|| {
                    let t = self.tunnel.as_ref().filter(|t| t.dev == uplink)?;
                    Some(format!("the tunnel endpoint {}", t.local_ip))
                });
        match user {
            Some(user) => Err(OverlayError::UplinkInUse {
                uplink: uplink.into(),
                user,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Gives network `name` segment `o`, checked by [`Model::check_overlay`].
    pub fn insert_overlay(&mut self, name: &str, o: Overlay) {
        self.overlays.insert(name.to_string(), o);
    }

    /// The segment of network `name`, if it has one.
    pub fn overlay(&self, name: &str) -> Option<&Overlay> {
        self.overlays.get(name)
    }

    /// Every network's segment, by network name.
    pub fn overlays(&self) -> impl Iterator<Item = (&str, &Overlay)> {
        self.overlays.iter().map(|(n, o)| (n.as_str(), o))
    }

    /// The VXLAN segment of network `name`, to change.
    fn vxlan_mut(&mut self, name: &str) -> Result<&mut Overlay, ModelError> {
        self.network_id(name)?;
        self.overlays
            .get_mut(name)
            .filter(|o| o.vni().is_some())
            .ok_or_else(|| OverlayError::NotVxlan(name.into()).into())
    }

    /// Parses a remote endpoint address; the local one is refused.
    fn remote_endpoint(&self, ip: &str) -> Result<IpAddr, ModelError> {
        let ip = overlay::parse_endpoint(ip)?;
        let local = self.tunnel.as_ref().map(|t| t.local_ip);
        if local == Some(ip) {
            return Err(OverlayError::OwnEndpoint(ip).into());
        }
        if let Some(local) = local.filter(|l| l.is_ipv4() != ip.is_ipv4()) {
            return Err(OverlayError::OtherFamily {
                endpoint: ip,
                local,
            }
            .into());
        }
        Ok(ip)
    }

    /// Adds `ip` to network `name`'s flood list; returns it, or `None` if it was there.
    pub fn add_peer(&mut self, name: &str, ip: &str) -> Result<Option<IpAddr>, ModelError> {
        let ip = self.remote_endpoint(ip)?;
        Ok(self.vxlan_mut(name)?.peers.insert(ip).then_some(ip))
    }

    /// Removes `ip` from network `name`'s flood list; returns it.
    pub fn del_peer(&mut self, name: &str, ip: &str) -> Result<IpAddr, ModelError> {
        let ip = overlay::parse_endpoint(ip)?;
        if !self.vxlan_mut(name)?.peers.remove(&ip) {
            let network = name.to_string();
            return Err(OverlayError::NoPeer { network, ip }.into());
        }
        Ok(ip)
    }

    /// Records that `mac` of network `name` lives behind endpoint `remote`, with IP `ip` if
    /// given. Behind the endpoint it already had, the entry keeps its other IPs (a dual-stack
    /// VM comes as one pair per address); behind another, it starts again with this one (the VM
    /// moved). Returns the parsed MAC, the entry and what the network had before, to restore
    /// with [`Model::put_remote`] if the change cannot be carried out.
    pub fn add_remote(
        &mut self,
        name: &str,
        mac: &str,
        remote: &str,
        ip: Option<&str>,
    ) -> Result<(MacAddr, Remote, Option<Remote>), ModelError> {
        let endpoint = self.remote_endpoint(remote)?;
        let mac: MacAddr = mac.parse()?;
        if mac.is_multicast() || mac.is_zero() {
            return Err(ModelError::NotUnicast(mac));
        }
        let ip = ip.map(parse_ip).transpose()?;
        if let Some(p) = self
            .ports
            .values()
            .find(|p| p.spec.network == name && p.mac == Some(mac))
        {
            let port = p.spec.name.clone();
            return Err(OverlayError::LocalMac { mac, port }.into());
        }
        let remotes = &mut self.vxlan_mut(name)?.remotes;
        let previous = remotes.get(&mac.to_string()).cloned();
        let mut entry = match &previous {
            Some(r) if r.endpoint == endpoint => r.clone(),
            _ => Remote {
                endpoint,
                ips: BTreeSet::new(),
            },
        };
        entry.ips.extend(ip);
        remotes.insert(mac.to_string(), entry.clone());
        Ok((mac, entry, previous))
    }

    /// Sets remote `mac` of network `name` back to `entry` (`None`: no entry).
    pub fn put_remote(
        &mut self,
        name: &str,
        mac: MacAddr,
        entry: Option<Remote>,
    ) -> Result<(), ModelError> {
        let remotes = &mut self.vxlan_mut(name)?.remotes;
        match entry {
            Some(r) => remotes.insert(mac.to_string(), r),
            None => remotes.remove(&mac.to_string()),
        };
        Ok(())
    }

    /// Forgets remote `mac` of network `name`, or with `ip` only that IP of it (l2population
    /// removes one MAC/IP pair at a time): the entry goes with its last IP. Returns the parsed
    /// MAC and whether the entry is gone.
    pub fn del_remote(
        &mut self,
        name: &str,
        mac: &str,
        ip: Option<&str>,
    ) -> Result<(MacAddr, bool), ModelError> {
        let mac: MacAddr = mac.parse()?;
        let ip = ip.map(parse_ip).transpose()?;
        let network = name.to_string();
        let remotes = &mut self.vxlan_mut(name)?.remotes;
        let key = mac.to_string();
        let Some(entry) = remotes.get_mut(&key) else {
            return Err(OverlayError::NoRemote { network, mac }.into());
        };
        if let Some(ip) = ip {
            if !entry.ips.remove(&ip) {
                return Err(OverlayError::NoRemoteIp { network, mac, ip }.into());
            }
            if !entry.ips.is_empty() {
                return Ok((mac, false));
            }
        }
        remotes.remove(&key);
        Ok((mac, true))
    }
}

/// An IP address as the API gives it.
fn parse_ip(s: &str) -> Result<IpAddr, ModelError> {
    s.parse().map_err(|_| ModelError::BadIp(s.into()))
}

/// An AF_XDP or tap port names an interface; a vhost-user port names a socket instead.
fn check_attachment(spec: &PortAdd) -> Result<(), ModelError> {
    let vhost = spec.kind == PortKind::VhostUser;
    match (vhost, spec.iface.is_empty(), spec.socket.as_deref()) {
        (true, true, Some(s)) if !s.is_empty() => Ok(()),
        (true, _, _) => Err(ModelError::BadAttachment(
            "a vhost-user port needs a socket and no interface",
        )),
        (false, false, None) if spec.queues.is_none() => Ok(()),
        (false, _, _) => Err(ModelError::BadAttachment(
            "an afxdp, tap or uplink port needs an interface, and no socket or queue pairs",
        )),
    }?;
    match spec.queues {
        Some(n) if n == 0 || n > MAX_VHOST_QUEUES => Err(ModelError::BadQueues(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_api::types::{ExternalIds, PortKind};

    fn spec(name: &str, iface: &str, net: &str, mac: Option<&str>) -> PortAdd {
        PortAdd {
            mac: mac.map(Into::into),
            port_security: false,
            ..PortAdd::new(name, iface, net)
        }
    }

    fn add(m: &mut Model, s: PortAdd) -> Result<PortRecord, ModelError> {
        let r = m.check_port(&s, 0)?;
        m.insert_port(r.clone());
        Ok(r)
    }

    #[test]
    fn only_a_vhost_user_port_has_queue_pairs_and_at_most_eight() {
        let mut m = Model::default();
        m.add_network("blue", None).unwrap();
        let vhost = |name: &str, queues| PortAdd {
            kind: PortKind::VhostUser,
            socket: Some(format!("/run/{name}.sock")),
            queues,
            ..spec(name, "", "blue", None)
        };
        add(&mut m, vhost("vm1", Some(8))).unwrap();
        add(&mut m, vhost("vm2", None)).unwrap();
        for bad in [0, 9] {
            assert_eq!(
                m.check_port(&vhost("vm3", Some(bad)), 0).unwrap_err(),
                ModelError::BadQueues(bad)
            );
        }
        let afxdp = PortAdd {
            queues: Some(2),
            ..spec("vm4", "veth4", "blue", None)
        };
        assert!(matches!(
            m.check_port(&afxdp, 0),
            Err(ModelError::BadAttachment(_))
        ));
    }

    #[test]
    fn vlan_networks_share_an_uplink_with_their_own_ids_and_no_flat_network() {
        let mut m = Model::default();
        let vlan = |vlan, uplink: &str| {
            let uplink = uplink.into();
            Overlay::new(Segment::Vlan { vlan, uplink }, false).unwrap()
        };
        let uplink_of = |net: &str| PortAdd {
            kind: PortKind::Uplink,
            ..spec(&overlay::uplink_port(net), "eth2", net, None)
        };
        for (net, id) in [("v100", 100), ("v200", 200)] {
            m.add_network(net, None).unwrap();
            m.check_overlay(&vlan(id, "eth2")).unwrap();
            m.insert_overlay(net, vlan(id, "eth2"));
            add(&mut m, uplink_of(net)).unwrap();
        }
        assert!(matches!(
            m.check_overlay(&vlan(200, "eth2")),
            Err(ModelError::Overlay(OverlayError::VlanInUse {
                vlan: 200,
                ..
            }))
        ));
        m.check_overlay(&vlan(200, "eth3")).unwrap();
        let flat = Overlay::new(
            Segment::Flat {
                uplink: "eth2".into(),
            },
            false,
        )
        .unwrap();
        assert!(matches!(
            m.check_overlay(&flat),
            Err(ModelError::Overlay(OverlayError::UplinkInUse { .. }))
        ));
        add(&mut m, spec("vm", "eth3", "v100", None)).unwrap();
        assert!(
            matches!(
                m.check_overlay(&vlan(300, "eth3")),
                Err(ModelError::Overlay(OverlayError::UplinkInUse { .. }))
            ),
            "a VM's interface is no trunk"
        );
        let nets: Vec<_> = m.vlan_networks("eth2").collect();
        assert_eq!(nets, [("v100", DEFAULT_MTU), ("v200", DEFAULT_MTU)]);
        // A trunk's id is no port's, nor the one of the port it is opened for.
        let first = m
            .check_port(&spec("next", "eth4", "v100", None), 0)
            .unwrap();
        let trunk = m.check_trunk(1, first.id).unwrap();
        assert!(trunk.id != first.id && m.port_by_id(trunk.id).is_none());
        m.insert_trunk("eth2", trunk);
        let after = m
            .check_port(&spec("next", "eth4", "v100", None), 0)
            .unwrap();
        assert_ne!(after.id, trunk.id);
        assert_eq!(m.remove_trunk("eth2"), Some(trunk));
    }

    #[test]
    fn networks_get_distinct_ids_and_cannot_be_deleted_while_used() {
        let mut m = Model::default();
        let a = m.add_network("a", None).unwrap();
        let b = m.add_network("b", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            m.add_network("a", None),
            Err(ModelError::NetworkExists("a".into()))
        );
        add(&mut m, spec("p1", "veth1", "a", None)).unwrap();
        assert!(matches!(
            m.del_network("a"),
            Err(ModelError::NetworkInUse { .. })
        ));
        m.remove_port("p1").unwrap();
        m.del_network("a").unwrap();
        assert_eq!(m.del_network("a"), Err(ModelError::NoNetwork("a".into())));
    }

    #[test]
    fn port_requests_are_validated() {
        let mut m = Model::default();
        m.add_network("a", None).unwrap();
        m.add_network("b", None).unwrap();
        add(&mut m, spec("p1", "veth1", "a", Some("02:00:00:00:00:01"))).unwrap();
        let cases = [
            (spec("p1", "veth9", "a", None), "already exists"),
            (spec("p2", "veth1", "a", None), "already used by port"),
            (spec("p2", "veth2", "zz", None), "no network"),
            (spec("p2", "veth2", "a", Some("02:00:00:00:00")), "bad MAC"),
            (
                spec("p2", "veth2", "a", Some("01:00:5e:00:00:01")),
                "unicast",
            ),
            (
                spec("p2", "veth2", "a", Some("02:00:00:00:00:01")),
                "already configured",
            ),
        ];
        for (s, want) in cases {
            let err = m.check_port(&s, 0).unwrap_err().to_string();
            assert!(err.contains(want), "{s:?}: {err}");
        }
        // The same MAC in another network is fine: networks are isolated.
        add(&mut m, spec("p2", "veth2", "b", Some("02:00:00:00:00:01"))).unwrap();
        let mut bad_ip = spec("p3", "veth3", "a", None);
        bad_ip.ips = vec!["10.0.0.300".into()];
        assert_eq!(
            m.check_port(&bad_ip, 0),
            Err(ModelError::BadIp("10.0.0.300".into()))
        );
    }

    #[test]
    fn remote_entries_gather_a_dual_stack_vms_ips_and_lose_them_one_by_one() {
        let mut m = Model::default();
        let blue = m.add_network("blue", None).unwrap();
        m.set_tunnel(Tunnel {
            local_ip: "192.0.2.1".parse().unwrap(),
            dev: "eth1".into(),
        })
        .unwrap();
        let vxlan = Overlay::new(Segment::Vxlan { vni: 1001 }, true).unwrap();
        m.insert_overlay("blue", vxlan);
        let mac = "02:00:00:00:00:05";
        let (v4, v6) = ("10.0.0.5", "fd00::5");
        m.add_remote("blue", mac, "192.0.2.2", Some(v4)).unwrap();
        let (_, entry, before) = m.add_remote("blue", mac, "192.0.2.2", Some(v6)).unwrap();
        assert_eq!(entry.ips.len(), 2, "both addresses kept: {entry:?}");
        assert_eq!(before.map(|r| r.ips.len()), Some(1));
        // Both feed the neighbour responder (the uplink port is up for this snapshot).
        add(&mut m, spec("blue.uplink", "brvx1001", "blue", None)).unwrap();
        let snap = m.snapshot(1, |_| true);
        for ip in [v4, v6] {
            let addr = Addr::from(ip.parse::<IpAddr>().unwrap());
            let answer = snap
                .neighbour_answer(blue, addr)
                .map(|(mac, _)| mac.to_string());
            assert_eq!(answer.as_deref(), Some(mac), "{ip}");
        }
        // Removing one pair keeps the entry; the other pair takes it away.
        assert_eq!(
            m.del_remote("blue", mac, Some("10.0.0.9"))
                .unwrap_err()
                .to_string(),
            format!("the remote entry for {mac} in network \"blue\" has no IP 10.0.0.9")
        );
        assert!(!m.del_remote("blue", mac, Some(v4)).unwrap().1);
        assert!(m.del_remote("blue", mac, Some(v6)).unwrap().1);
        assert!(m.overlay("blue").unwrap().remotes.is_empty());
        // Moved to another host: the entry starts again there.
        m.add_remote("blue", mac, "192.0.2.2", Some(v4)).unwrap();
        let (_, moved, _) = m.add_remote("blue", mac, "192.0.2.3", Some(v6)).unwrap();
        assert_eq!(
            moved.ips.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
            [v6]
        );
        // An entry saved by an older brinkd, with one `ip`, still loads.
        let old: Remote =
            serde_json::from_str(r#"{"endpoint":"192.0.2.2","ip":"10.0.0.5"}"#).unwrap();
        assert_eq!(
            old.ips.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
            [v4]
        );
    }

    #[test]
    fn port_ids_are_reused_and_state_round_trips() {
        let mut m = Model::default();
        m.add_network("a", None).unwrap();
        let p1 = add(&mut m, spec("p1", "veth1", "a", Some("02:00:00:00:00:AA"))).unwrap();
        let p2 = add(&mut m, spec("p2", "veth2", "a", None)).unwrap();
        assert_ne!(p1.id, p2.id);
        assert_eq!(
            p1.spec.mac.as_deref(),
            Some("02:00:00:00:00:aa"),
            "MACs are normalized"
        );
        m.remove_port("p1").unwrap();
        let p3 = add(&mut m, spec("p3", "veth3", "a", None)).unwrap();
        assert_eq!(p3.id, p1.id);
        let state = m.state(vec![]);
        assert_eq!(state.networks, ["a"]);
        assert_eq!(state.ports.len(), 2);
        let snap = m.snapshot(1, |_| true);
        assert_eq!(snap.members(m.network_id("a").unwrap()).len(), 2);
    }

    #[test]
    fn port_security_is_validated_and_compiled_with_remote_group_members() {
        use brink_api::types::{RuleDirection, RuleSpec};
        let mut m = Model::default();
        m.add_network("a", None).unwrap();
        m.groups
            .add_group("web", true, &ExternalIds::new())
            .unwrap();
        m.groups
            .add_group("flat", false, &ExternalIds::new())
            .unwrap();
        let mut secured = spec("p1", "veth1", "a", None);
        secured.port_security = true;
        let err = m.check_port(&secured, 0).unwrap_err().to_string();
        assert!(err.contains("needs its VM's MAC"), "{err}");
        secured.mac = Some("02:00:00:00:00:01".into());
        secured.ips = vec!["10.0.0.1".into()];
        secured.security_groups = vec!["web".into()];
        secured.allowed_pairs = vec!["10.9.0.0/16, 02:00:00:00:00:99".into()];
        let p1 = add(&mut m, secured).unwrap();
        assert_eq!(p1.spec.allowed_pairs, ["10.9.0.0/16,02:00:00:00:00:99"]);
        let from_web = RuleSpec {
            direction: RuleDirection::Ingress,
            ethertype: Default::default(),
            protocol: None,
            port_min: None,
            port_max: None,
            remote_ip: None,
            remote_group: Some("web".into()),
        };
        m.groups.add_rule("web", &from_web, None).unwrap();
        assert_eq!(
            m.group_members()["web"],
            [
                Prefix::host(Addr::v4([10, 0, 0, 1])),
                Prefix::new("10.9.0.0".parse().unwrap(), 16).unwrap()
            ]
        );
        let snap = m.snapshot(1, |_| true);
        let filter = snap.port(p1.id).unwrap().filter.clone().unwrap();
        assert!(filter.stateful);
        let hit = filter.ingress[0].lookup(6, 22, Addr::v4([10, 9, 3, 4]));
        assert!(hit.is_some(), "a pair's prefix is a member address");
        assert!(filter.ingress[0]
            .lookup(6, 22, Addr::v4([10, 8, 0, 1]))
            .is_none());
        assert!(filter.egress[0].is_empty());
        // Members on other hosts, as Neutron's member updates give them, join the local ones.
        let remote = Addr::v4([10, 20, 0, 7]);
        let admits = |m: &Model| {
            let snap = m.snapshot(1, |_| true);
            let filter = snap.port(p1.id).unwrap().filter.clone().unwrap();
            filter.ingress[0].lookup(6, 22, remote).is_some()
        };
        assert!(!admits(&m));
        m.groups
            .set_members("web", &["10.20.0.7".into(), " 10.20.0.7".into()])
            .unwrap();
        assert!(admits(&m));
        assert_eq!(m.groups.group("web").unwrap().members.len(), 1, "deduped");
        let state = m.state(vec![]);
        let web = state.groups.iter().find(|g| g.name == "web").unwrap();
        assert_eq!(web.members, ["10.20.0.7/32"]);
        assert!(matches!(
            m.groups.set_members("web", &["10.20.0.300".into()]),
            Err(SgError::BadMember(_))
        ));
        assert!(admits(&m), "a refused set changes nothing");
        m.groups.set_members("web", &[]).unwrap();
        assert!(!admits(&m));
        let bad = [
            (
                PortSet {
                    security_groups: Some(vec!["web".into(), "flat".into()]),
                    ..PortSet::default()
                },
                "all stateful or all stateless",
            ),
            (
                PortSet {
                    port_security: Some(false),
                    ..PortSet::default()
                },
                "port security is off",
            ),
            (
                PortSet {
                    allowed_pairs: Some(vec!["10.0.0.1,01:00:5e:00:00:01".into()]),
                    ..PortSet::default()
                },
                "bad allowed address pair",
            ),
            (
                PortSet {
                    permitted_ethertypes: Some(vec![0x05dc]),
                    ..PortSet::default()
                },
                "EtherTypes start at 0x0600",
            ),
            (
                PortSet {
                    security_groups: Some(vec!["nope".into()]),
                    ..PortSet::default()
                },
                "no security group",
            ),
        ];
        for (mut set, want) in bad {
            set.name = "p1".into();
            let err = m.set_port(&set).unwrap_err().to_string();
            assert!(err.contains(want), "{set:?}: {err}");
        }
        assert_eq!(
            m.port("p1").unwrap().spec.security_groups,
            ["web"],
            "unchanged"
        );
        let off = PortSet {
            name: "p1".into(),
            port_security: Some(false),
            security_groups: Some(vec![]),
            allowed_pairs: Some(vec![]),
            permitted_ethertypes: None,
            external_ids: None,
        };
        m.set_port(&off).unwrap();
        assert!(m
            .snapshot(2, |_| true)
            .port(p1.id)
            .unwrap()
            .filter
            .is_none());
        assert!(m.group_users("web").is_empty());
    }
}
