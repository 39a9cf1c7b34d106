//! Parameters and results of each method.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Params of `network.add` and `network.del`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkName {
    /// Network name.
    pub name: String,
}

/// One network in `network.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network name.
    pub name: String,
    /// Internal id (also the conntrack zone).
    pub id: u16,
    /// Names of its ports.
    pub ports: Vec<String>,
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
}

/// Params of `port.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// Port name.
    pub name: String,
    /// Interface to attach to (created if `kind` is tap).
    pub iface: String,
    /// Network the port belongs to.
    pub network: String,
    /// Port kind.
    #[serde(default)]
    pub kind: PortKind,
    /// The VM's MAC address behind the port: a static FDB entry.
    #[serde(default)]
    pub mac: Option<String>,
    /// The VM's IP addresses.
    #[serde(default)]
    pub ips: Vec<String>,
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
    /// Interface.
    pub iface: String,
    /// Network name.
    pub network: String,
    /// Port kind.
    pub kind: PortKind,
    /// Configured MAC.
    pub mac: Option<String>,
    /// Configured IPs.
    pub ips: Vec<String>,
    /// Worker that polls it.
    pub worker: usize,
    /// How AF_XDP attached: `native-copy` or `skb-copy`.
    pub mode: String,
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
    /// MACs learned.
    pub fdb_learned: u64,
    /// Learning skipped, FDB full.
    pub fdb_full: u64,
    /// Learned MACs aged out.
    pub fdb_aged: u64,
    /// Transmit-side drops, by reason (non-zero reasons only).
    pub drops: BTreeMap<String, u64>,
}

/// Result of `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per port.
    pub ports: Vec<PortStats>,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
}
