//! Parameters and results of each method.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Key-value labels an orchestrator attaches to an object, as OVSDB rows carry them (for
/// example Neutron's `iface-id`): brink stores and shows them, and never reads them.
pub type ExternalIds = BTreeMap<String, String>;

/// Params of `network.add` and `network.del`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkName {
    /// Network name.
    pub name: String,
}

/// Params of `network.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAdd {
    /// Network name.
    pub name: String,
    /// The largest IP packet its ports carry, 68-9000 (default 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// How the network reaches other hosts; absent: it stays on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// Answer ARP and IPv6 neighbour solicitations for the remote IPs `fdb.add` gives, instead
    /// of flooding them to every host (Neutron's `arp_responder`). VXLAN networks only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arp_responder: bool,
    /// The orchestrator's labels (for example Neutron's network id).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
}

/// How a network leaves the host: what Neutron calls its provider segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Segment {
    /// A VXLAN VNI (RFC 7348, UDP 4789) on the host's tunnel endpoint (`tunnel.set`).
    Vxlan {
        /// The VXLAN network identifier, 1-16777215.
        vni: u32,
    },
    /// Untagged on an uplink interface.
    Flat {
        /// The uplink interface.
        uplink: String,
    },
    /// Tagged with an 802.1Q VLAN id on an uplink interface, which many VLAN networks share
    /// (a trunk). brink pushes and pops the tags itself.
    Vlan {
        /// The VLAN id, 1-4094.
        vlan: u16,
        /// The uplink interface.
        uplink: String,
    },
}

/// One network in `network.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network name.
    pub name: String,
    /// Internal id (also the conntrack zone).
    pub id: u16,
    /// MTU.
    pub mtu: u16,
    /// Names of its ports.
    pub ports: Vec<String>,
    /// How it reaches other hosts, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// Whether ARP for remote IPs is answered locally.
    #[serde(default)]
    pub arp_responder: bool,
    /// Its flood list: the tunnel endpoints broadcast and unknown unicast go to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The orchestrator's labels.
    #[serde(default)]
    pub external_ids: ExternalIds,
}

/// How a port reaches its VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// AF_XDP on an existing interface (e.g. the host end of a veth pair).
    #[default]
    Afxdp,
    /// A tap device that brink creates, then AF_XDP on it.
    Tap,
    /// A vhost-user socket shared with QEMU or DPDK: the guest's virtio rings, no kernel.
    #[serde(rename = "vhost-user")]
    VhostUser,
    /// The uplink of a network that leaves the host (its VXLAN device or flat uplink), added
    /// and removed by brink with the network.
    Uplink,
}

/// Who creates a vhost-user port's socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VhostMode {
    /// QEMU or testpmd creates the socket; brink connects (and reconnects).
    #[default]
    Client,
    /// brink creates the socket and waits for the frontend.
    Server,
}

/// Most queue pairs a vhost-user port offers.
pub const MAX_VHOST_QUEUES: u16 = 8;

/// Params of `port.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// Port name.
    pub name: String,
    /// Interface to attach to (created if `kind` is tap); none for a vhost-user port.
    #[serde(default)]
    pub iface: String,
    /// Network the port belongs to.
    pub network: String,
    /// Port kind.
    #[serde(default)]
    pub kind: PortKind,
    /// The vhost-user socket (vhost-user ports only).
    #[serde(default)]
    pub socket: Option<String>,
    /// Who creates the vhost-user socket (default client).
    #[serde(default)]
    pub vhost_mode: VhostMode,
    /// Queue pairs a vhost-user port offers (`VIRTIO_NET_F_MQ` above one), 1 to
    /// [`MAX_VHOST_QUEUES`]; absent: as many as brinkd has workers, at most that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
    /// The VM's MAC address behind the port: a static FDB entry.
    #[serde(default)]
    pub mac: Option<String>,
    /// The VM's IP addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Track the port's connections (default on).
    #[serde(default = "on")]
    pub conntrack: bool,
    /// Port security and security groups (default on: no group, so nothing passes but
    /// neighbour discovery and DHCP until groups are set).
    #[serde(default = "on")]
    pub port_security: bool,
    /// Security groups, by name.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Allowed address pairs: `IP[/LEN][,MAC]` (the port's MAC if none).
    #[serde(default)]
    pub allowed_pairs: Vec<String>,
    /// EtherTypes besides IPv4, IPv6 and ARP the port may send and receive.
    #[serde(default)]
    pub permitted_ethertypes: Vec<u16>,
    /// The orchestrator's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
}

fn on() -> bool {
    true
}

impl PortAdd {
    /// The request for port `name` on `iface` in `network` with every other field at its
    /// default: what `{name, iface, network}` decodes to.
    pub fn new(name: &str, iface: &str, network: &str) -> PortAdd {
        PortAdd {
            name: name.into(),
            iface: iface.into(),
            network: network.into(),
            kind: PortKind::default(),
            socket: None,
            vhost_mode: VhostMode::default(),
            queues: None,
            mac: None,
            ips: vec![],
            conntrack: on(),
            port_security: on(),
            security_groups: vec![],
            allowed_pairs: vec![],
            permitted_ethertypes: vec![],
            external_ids: ExternalIds::new(),
        }
    }
}

/// Params of `port.set`; absent fields stay as they are, given ones replace the old value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSet {
    /// Port name.
    pub name: String,
    /// Port security on or off.
    #[serde(default)]
    pub port_security: Option<bool>,
    /// The port's security groups.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Allowed address pairs: `IP[/LEN][,MAC]`.
    #[serde(default)]
    pub allowed_pairs: Option<Vec<String>>,
    /// Permitted EtherTypes.
    #[serde(default)]
    pub permitted_ethertypes: Option<Vec<u16>>,
    /// The orchestrator's labels (all of them: the given map replaces the old one).
    #[serde(default)]
    pub external_ids: Option<ExternalIds>,
}

/// Result of a change that can cut connections: what the recheck of every connection admitted
/// under the old rules found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    /// Connections another rule still allows.
    pub kept: u64,
    /// Connections no rule allows any more, now removed.
    pub cut: u64,
}

/// Result of `port.set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSetResult {
    /// The port as it is now.
    pub port: PortInfo,
    /// What happened to its connections.
    pub recheck: Recheck,
}

/// Params of `sg.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgAdd {
    /// Group name.
    pub name: String,
    /// Judge every packet and track nothing (Neutron `stateful=False`).
    #[serde(default)]
    pub stateless: bool,
    /// The orchestrator's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
}

/// Params of `sg.member.set`: the group's members on other hosts, all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgMemberSet {
    /// Group name.
    pub group: String,
    /// Addresses (or CIDRs) that remote-group rules naming the group match, besides the
    /// addresses of the group's local ports. Replaces the previous set; empty clears it.
    pub members: Vec<String>,
}

/// Params of `sg.del` and `sg.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgName {
    /// Group name.
    pub name: String,
}

/// Which way a rule applies, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Into the VM.
    Ingress,
    /// Out of the VM.
    Egress,
}

/// IP version of a rule.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Ethertype {
    /// IPv4.
    #[default]
    IPv4,
    /// IPv6.
    IPv6,
}

/// A security-group rule as given (Neutron's fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Direction.
    pub direction: RuleDirection,
    /// IP version (default IPv4).
    #[serde(default)]
    pub ethertype: Ethertype,
    /// Protocol: a name (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, ...), a number, or absent
    /// for any.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Lowest destination port, or the ICMP type.
    #[serde(default)]
    pub port_min: Option<u16>,
    /// Highest destination port, or the ICMP code.
    #[serde(default)]
    pub port_max: Option<u16>,
    /// Remote prefix (CIDR): the source for ingress, the destination for egress.
    #[serde(default)]
    pub remote_ip: Option<String>,
    /// Remote group: the addresses of its member ports.
    #[serde(default)]
    pub remote_group: Option<String>,
}

/// Params of `sg.rule.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleAdd {
    /// Group name.
    pub group: String,
    /// The rule.
    pub rule: RuleSpec,
}

/// Params of `sg.rule.del`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleDel {
    /// Group name.
    pub group: String,
    /// Rule id.
    pub id: u32,
}

/// A rule in `sg.show`, and the result of `sg.rule.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgRuleInfo {
    /// Rule id.
    pub id: u32,
    /// The rule, normalized (protocol lower-case, prefixes canonical).
    pub rule: RuleSpec,
    /// Connections it admitted (packets, for a stateless group).
    pub hits: u64,
}

/// A group in `sg.list` and `sg.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgInfo {
    /// Group name.
    pub name: String,
    /// Stateful (connections judged once) or stateless.
    pub stateful: bool,
    /// Rules.
    pub rules: Vec<SgRuleInfo>,
    /// Ports that use it.
    pub ports: Vec<String>,
    /// Members set by `sg.member.set` (members on other hosts).
    #[serde(default)]
    pub members: Vec<String>,
    /// The orchestrator's labels.
    #[serde(default)]
    pub external_ids: ExternalIds,
}

/// A saved group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgRecord {
    /// Group name.
    pub name: String,
    /// Stateful.
    pub stateful: bool,
    /// Rules with their ids.
    pub rules: Vec<(u32, RuleSpec)>,
    /// Members set by `sg.member.set`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The orchestrator's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
}

/// Params of `sg.import`: what `openstack security group show -f json` prints, one group or a
/// list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgImport {
    /// The JSON.
    pub groups: serde_json::Value,
}

/// Params of `port.del`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortName {
    /// Port name.
    pub name: String,
}

/// One port in `port.list` and the result of `port.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// Internal id.
    pub id: u16,
    /// Interface (empty for a vhost-user port).
    pub iface: String,
    /// Network name.
    pub network: String,
    /// Port kind.
    pub kind: PortKind,
    /// The vhost-user socket.
    #[serde(default)]
    pub socket: Option<String>,
    /// Configured MAC.
    pub mac: Option<String>,
    /// Configured IPs.
    pub ips: Vec<String>,
    /// Worker that polls it.
    pub worker: usize,
    /// Every worker that polls some of its receive queues (a vhost-user port's queue pairs),
    /// with those queues; empty while the port is down.
    #[serde(default)]
    pub polled: Vec<PolledQueues>,
    /// How the port attached: `native-copy` or `skb-copy` (AF_XDP), `vhost-user-client` or
    /// `vhost-user-server`; `down` if the port is not running.
    pub mode: String,
    /// Why the port is down (its interface is missing, for example); `None` while it runs.
    #[serde(default)]
    pub reason: Option<String>,
    /// Connections are tracked.
    pub conntrack: bool,
    /// Port security on.
    pub port_security: bool,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Allowed address pairs.
    pub allowed_pairs: Vec<String>,
    /// Permitted EtherTypes.
    pub permitted_ethertypes: Vec<u16>,
    /// The orchestrator's labels.
    #[serde(default)]
    pub external_ids: ExternalIds,
}

/// The receive queues (or vhost-user queue pairs) of a port that one worker polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledQueues {
    /// The worker.
    pub worker: usize,
    /// The queues.
    pub queues: Vec<u32>,
}

/// Params of `port.list`: with `external_ids`, only the ports that carry all of them (how an
/// agent finds its port by Neutron port id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortFilter {
    /// Labels a port must carry, each with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
}

/// Params of `fdb.show` and `fdb.flush`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFilter {
    /// Only this network.
    #[serde(default)]
    pub network: Option<String>,
}

/// One entry of `fdb.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// Seconds since last seen; absent for static (configured) entries.
    pub age_secs: Option<f64>,
    /// The tunnel endpoint behind which the MAC lives, for an `fdb.add` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Its IP addresses, as `fdb.add` gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
}

/// Params of `fdb.add`: where a remote VM's MAC lives (Neutron l2population's `fdb_add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbAdd {
    /// Network name (a VXLAN network).
    pub network: String,
    /// The remote VM's MAC.
    pub mac: String,
    /// The tunnel endpoint (IP) of the host it is on.
    pub remote: String,
    /// One of the VM's IP addresses (IPv4 or IPv6), for the neighbour responder; a VM with
    /// several comes as one `fdb.add` per address, as l2population sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Params of `fdb.del`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbDel {
    /// Network name.
    pub network: String,
    /// The remote MAC to forget.
    pub mac: String,
    /// Forget only this IP of it (Neutron l2population's `fdb_remove` pair); the entry goes
    /// with its last IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Params of `network.peer.add` and `network.peer.del`: one flood-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPeer {
    /// Network name (a VXLAN network).
    pub network: String,
    /// The remote tunnel endpoint (IP).
    pub ip: String,
}

/// Params of `tunnel.set`: this host's VXLAN tunnel endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSet {
    /// The local tunnel IP (an address of `dev`).
    pub local_ip: String,
    /// The underlay interface.
    pub dev: String,
}

/// Result of `tunnel.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// The endpoint, if one is set.
    pub local: Option<TunnelSet>,
    /// Frames with a VNI no network has, dropped.
    pub unknown_vni: u64,
    /// Every remote endpoint a network floods to or an FDB entry names.
    pub endpoints: Vec<EndpointInfo>,
    /// Each VXLAN network's traffic through the tunnel.
    pub networks: Vec<TunnelNetwork>,
}

/// One remote tunnel endpoint in `tunnel.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Its IP.
    pub ip: String,
    /// Networks whose flood list has it.
    pub flood: Vec<String>,
    /// How many remote MACs live behind it.
    pub macs: usize,
    /// Encapsulated packets received from it.
    pub rx_packets: u64,
    /// Their bytes (outer IP packets).
    pub rx_bytes: u64,
    /// Encapsulated packets sent to it.
    pub tx_packets: u64,
    /// Their bytes (outer IP packets).
    pub tx_bytes: u64,
}

/// One VXLAN network in `tunnel.show`: what its VXLAN device counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelNetwork {
    /// Network name.
    pub network: String,
    /// Its VNI.
    pub vni: u32,
    /// The kernel VXLAN device brink made for it.
    pub device: String,
    /// Frames decapsulated into the network.
    pub rx_packets: u64,
    /// Frames encapsulated out of it (each flood copy counts once).
    pub tx_packets: u64,
    /// Frames the device dropped by reason (`no_endpoint`: nowhere to send, ...).
    pub drops: BTreeMap<String, u64>,
}

/// Params of `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsFilter {
    /// Only this port (workers are then omitted).
    #[serde(default)]
    pub port: Option<String>,
}

/// Counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// Frames received from the VM.
    pub rx_packets: u64,
    /// Bytes received from the VM.
    pub rx_bytes: u64,
    /// Frames sent to the VM.
    pub tx_packets: u64,
    /// Bytes sent to the VM.
    pub tx_bytes: u64,
    /// Frames from this port that were dropped, by reason (non-zero reasons only).
    pub drops: BTreeMap<String, u64>,
    /// Frames for this port that were dropped before it could send them (`mtu_exceeded`), by
    /// reason; each is in `drops` of the port it came from too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tx_drops: BTreeMap<String, u64>,
    /// The kernel's counters of the port's AF_XDP socket; `None` for a port without one.
    #[serde(default)]
    pub xdp_socket: Option<XdpSocketStats>,
}

/// The kernel's counters of one AF_XDP socket (`XDP_STATISTICS`), since the port was opened.
/// Frames the kernel drops here never reach brink, so brink's own counters cannot show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpSocketStats {
    /// Received frames dropped for want of a fill-ring buffer (or too large for one).
    pub rx_dropped: u64,
    /// Receive descriptors the kernel counted invalid.
    pub rx_invalid_descs: u64,
    /// Transmit descriptors the kernel rejected as invalid.
    pub tx_invalid_descs: u64,
    /// Received frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the transmit ring empty (once per drained kick; not a loss).
    pub tx_ring_empty_descs: u64,
    /// brink's count, not the kernel's: multi-buffer frames dropped because every jumbo buffer
    /// of the worker was in use.
    #[serde(default)]
    pub jumbo_dropped: u64,
}

/// A port a worker polls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerPoll {
    /// Port name.
    pub port: String,
    /// The port's receive queues (a vhost-user port's queue pairs) this worker polls.
    pub queues: Vec<u32>,
    /// What each of a vhost-user port's queue pairs that this worker polls moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairStats>,
}

/// Frames one queue pair of a vhost-user port moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairStats {
    /// The queue pair.
    pub pair: u32,
    /// Frames brink took from its transmit queue (the guest sent them).
    pub rx_packets: u64,
    /// Frames brink wrote into its receive queue.
    pub tx_packets: u64,
}

/// Counters of one worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Core it is pinned to.
    pub core: Option<usize>,
    /// Batches processed.
    pub batches: u64,
    /// Poll iterations that moved frames.
    pub busy_polls: u64,
    /// Poll iterations that found nothing.
    pub idle_polls: u64,
    /// Nanoseconds in busy iterations.
    pub busy_ns: u64,
    /// Nanoseconds in idle iterations.
    pub idle_ns: u64,
    /// Frames handed to other workers.
    pub cross_tx: u64,
    /// Frames taken from other workers.
    pub cross_rx: u64,
    /// Segments cut from TCP superframes larger than their network's MTU.
    #[serde(default)]
    pub segmented: u64,
    /// Checksums senders left partial, completed in software for destinations that need them
    /// complete.
    #[serde(default)]
    pub checksums_completed: u64,
    /// ARP requests and neighbour solicitations the neighbour responder answered.
    #[serde(default)]
    pub neighbour_answers: u64,
    /// MACs learned.
    pub fdb_learned: u64,
    /// Learning skipped, FDB full.
    pub fdb_full: u64,
    /// Learned MACs aged out.
    pub fdb_aged: u64,
    /// Transmit-side drops, by reason (non-zero reasons only).
    pub drops: BTreeMap<String, u64>,
    /// The ports it polls, with their receive queues.
    #[serde(default)]
    pub polls: Vec<WorkerPoll>,
}

/// Result of `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per port.
    pub ports: Vec<PortStats>,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
}

/// Params of `ct.show` and `ct.flush`: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtFilter {
    /// Network (conntrack zone).
    #[serde(default)]
    pub network: Option<String>,
    /// Either end's IP address.
    #[serde(default)]
    pub ip: Option<String>,
    /// Either end's port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Protocol: tcp, udp, icmp, icmpv6, sctp or a number.
    #[serde(default)]
    pub proto: Option<String>,
    /// `new`, `established`, or a TCP state (`syn_sent`, `tcp_established`, `time_wait`, ...).
    #[serde(default)]
    pub state: Option<String>,
    /// Mark.
    #[serde(default)]
    pub mark: Option<u32>,
    /// Most connections to show (`ct.show` only; default 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A connection's network and original direction, as `ct.show` and `ct.events` give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtTuple {
    /// Network (zone).
    pub network: String,
    /// Protocol name or number.
    pub proto: String,
    /// Source of the original direction.
    pub src: String,
    /// Source port (ICMP: echo id).
    pub sport: u16,
    /// Destination of the original direction.
    pub dst: String,
    /// Destination port (ICMP: echo id).
    pub dport: u16,
}

/// One connection in `ct.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtEntry {
    /// The connection's network and original direction.
    #[serde(flatten)]
    pub tuple: CtTuple,
    /// `new` (no reply yet) or `established`.
    pub state: String,
    /// TCP state, for TCP.
    pub tcp_state: Option<String>,
    /// Early drop will not evict it.
    pub assured: bool,
    /// Packets from the original side.
    pub packets_orig: u64,
    /// Bytes from the original side.
    pub bytes_orig: u64,
    /// Packets from the reply side.
    pub packets_reply: u64,
    /// Bytes from the reply side.
    pub bytes_reply: u64,
    /// Seconds since created.
    pub age_secs: f64,
    /// Seconds until it times out unless traffic comes.
    pub expires_secs: f64,
    /// Mark.
    pub mark: u32,
    /// Rules that admitted it on the opener's port (egress) and the receiver's port (ingress);
    /// 0 where none was needed.
    pub rules: [u32; 2],
    /// Rule generation it was admitted or last rechecked under.
    pub generation: u32,
    /// The opener's port and the receiver's port (absent: unknown or flooded).
    pub ports: [Option<String>; 2],
}

/// Result of `ct.flush`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CtFlushed {
    /// Connections removed.
    pub flushed: u64,
}

/// Connections of one network, in `ct.stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtZone {
    /// Network.
    pub network: String,
    /// Its connections.
    pub connections: u64,
}

/// Result of `ct.stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CtStats {
    /// Connections in the table.
    pub entries: u64,
    /// The table's maximum.
    pub max: u64,
    /// Connections created.
    pub inserts: u64,
    /// New connections refused (table or zone full).
    pub refused: u64,
    /// Unreplied connections evicted to make room.
    pub early_drops: u64,
    /// Connections that timed out.
    pub expired: u64,
    /// Connections removed by `ct.flush`.
    pub flushed: u64,
    /// New connections security groups refused.
    pub denied: u64,
    /// Connections rechecked after a rule change and kept.
    pub recheck_kept: u64,
    /// Connections rechecked after a rule change and cut.
    pub recheck_cut: u64,
    /// Invalid packets by reason (non-zero only).
    pub invalid: BTreeMap<String, u64>,
    /// Connections per network.
    pub zones: Vec<CtZone>,
}

/// A network's conntrack policy, as `ct.policy.show` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtPolicy {
    /// Network.
    pub network: String,
    /// Idle timeouts in seconds, by name.
    pub timeouts: BTreeMap<String, u32>,
    /// Most connections the network may hold.
    pub limit: Option<u32>,
    /// Mid-stream TCP pickup.
    pub tcp_pickup: bool,
}

/// Params of `ct.policy.set`; absent fields keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtPolicySet {
    /// Network.
    pub network: String,
    /// Timeouts to change, in seconds, by name.
    #[serde(default)]
    pub timeouts: BTreeMap<String, u32>,
    /// New connection limit; 0 removes the limit.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Mid-stream TCP pickup on or off.
    #[serde(default)]
    pub tcp_pickup: Option<bool>,
    /// Start from the defaults instead of the current policy.
    #[serde(default)]
    pub reset: bool,
}

/// Params of `ct.policy.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtPolicyShow {
    /// Network.
    pub network: String,
}

/// Params of `capture.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStart {
    /// The port to capture.
    pub port: String,
    /// Only the port's frames that brink dropped, with the reasons.
    #[serde(default)]
    pub drops: bool,
}

/// Params of `capture.read`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRead {
    /// At most this many frames (default and cap: 1000).
    #[serde(default)]
    pub max: Option<usize>,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturedFrame {
    /// When it was captured, in nanoseconds since 1970 (UTC).
    pub unix_ns: u64,
    /// `in` (from the VM), `out` (to the VM) or `dropped` (from the VM, dropped by brink).
    pub way: String,
    /// Why brink dropped it (`dropped` only), as in `stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its length on the wire.
    pub len: u32,
    /// Its first bytes (at most 1,792), in hex.
    pub data: String,
}

/// The result of `capture.read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureChunk {
    /// Frames captured since the last read, oldest first.
    pub frames: Vec<CapturedFrame>,
    /// Frames lost since the capture started because the reader was too slow.
    pub lost: u64,
}

/// Params of `trace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The port the packet arrives on.
    pub port: String,
    /// The packet: `PROTO,key=value,...` (PROTO `tcp`, `udp`, `icmp` or `icmpv6`; keys `src`,
    /// `dst`, `sport`, `dport`, `flags`, `seq`, `ack`, `win`, `len`, `id`, `type`, `smac`,
    /// `dmac`) or an Ethernet frame in hex.
    pub packet: String,
}

/// One stage's decision in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStage {
    /// `parse`, `port_security`, `l2`, `conntrack`, `rules` or `tx`.
    pub stage: String,
    /// What it found and decided.
    pub detail: String,
}

/// Result of `trace`: one packet through the pipeline against live state, with nothing
/// changed and nothing sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceResult {
    /// The frame traced, in hex.
    pub frame: String,
    /// Each stage's decision, in order, up to the one that dropped it.
    pub stages: Vec<TraceStage>,
    /// The tracked connection the packet belongs to, as it is (unchanged by the trace).
    pub connection: Option<CtEntry>,
    /// The ports it would leave on (empty if dropped).
    pub out: Vec<String>,
    /// Why it would be dropped, if it would.
    pub drop: Option<String>,
}

/// Params of `ct.events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtEventsRead {
    /// Most events to return (default and cap 1000).
    #[serde(default)]
    pub max: Option<usize>,
}

/// One connection event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEvent {
    /// `new`, `established`, `closed` or `expired`.
    pub event: String,
    /// When, in nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// The connection's network and original direction.
    #[serde(flatten)]
    pub tuple: CtTuple,
    /// TCP state after the event, for TCP.
    pub tcp_state: Option<String>,
}

/// Result of `ct.events`: the events since the last read (the first read subscribes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEvents {
    /// Events, oldest first.
    pub events: Vec<CtEvent>,
    /// Events lost because the reader was too slow, since brinkd started.
    pub lost: u64,
}
