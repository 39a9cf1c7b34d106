//! The vhost-user loop, side by side: DPDK's testpmd runs two `net_virtio_user` "VMs" in a mac
//! loop (`--forward-mode=mac --tx-first`) through a switch that connects to their sockets, and
//! the rate testpmd receives at is the switch's rate. The same loop runs through
//!
//! - brink: two vhost-user ports with port security, a stateful security group and conntrack;
//! - Open vSwitch with DPDK, `actions=NORMAL`;
//! - Open vSwitch with DPDK and conntrack (`ct(zone=1)`: new connections committed,
//!   established ones passed), the ruleset of issue 14's reference figure.
//!
//! The switch's poll thread (brink's worker, OVS's PMD) runs on core 1, testpmd's forwarding
//! core on core 0. With [`Shape::queues`] above one, testpmd's devices use that many queue
//! pairs (brink's ports offer as many), and brink runs a worker on each of
//! [`Shape::brink_cores`]. The harness installs testpmd (`dpdk-dev`) and Open vSwitch-DPDK
//! (`openvswitch-switch-dpdk`) with apt if they are missing, and reserves the hugepages both
//! need, giving them back after each loop.

use std::path::Path;
use std::time::Duration;

use super::ovs::{Ovs, VSWITCHD_DPDK};
use super::tools;
use crate::daemon::Daemon;
use crate::testpmd::{self, Forwarded, Hugepages, TESTPMD_IP};
use crate::topo::Topology;
use crate::BenchError;

/// Hugepages (2 MiB) for testpmd (256 MiB) and OVS-DPDK (256 MiB), with room to spare.
const PAGES: u64 = 320;
const MAC0: &str = "02:00:00:00:00:01";
const MAC1: &str = "02:00:00:00:00:02";
/// The switch's poll core and testpmd's forwarding core.
const SWITCH_CORE: usize = 1;
const TESTPMD_CORE: usize = 0;
/// How long a switch gets to connect to testpmd's sockets before the rate counts (testpmd
/// starts sending at once; the first stats period is not used).
const SETTLE: Duration = Duration::from_secs(2);

/// How the loop is laid out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// Queue pairs of testpmd's devices (and of brink's ports).
    pub queues: u16,
    /// brinkd's `--cores`: one worker per core listed.
    pub brink_cores: String,
}

/// The switch the loop runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum LoopSystem {
    /// brink with port security, a stateful group and conntrack.
    Brink,
    /// brink switching only (no port security, no group, no conntrack): the rings' share of
    /// the cost.
    BrinkL2,
    /// Open vSwitch-DPDK, `actions=NORMAL`.
    OvsNormal,
    /// Open vSwitch-DPDK with conntrack.
    OvsCt,
}

/// One loop's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoopResult {
    /// Through what.
    pub system: LoopSystem,
    /// Frames per second through the switch: both testpmd ports' receive rates in the last
    /// stats period, added.
    pub pps: u64,
    /// testpmd's totals per port: (received, sent).
    pub totals: Vec<(u64, u64)>,
    /// The loop's layout.
    pub shape: Shape,
    /// brink only: its worker's busy time (polls that moved frames, wall clock) per frame it
    /// received, in nanoseconds.
    pub worker_ns_per_frame: Option<f64>,
}

/// brink's workers' busy time per frame received, from `stats`.
fn worker_ns_per_frame(d: &Daemon) -> Result<Option<f64>, BenchError> {
    let text = d.ctl_ok(&["--json", "stats"])?;
    let stats: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BenchError::Config(format!("stats: {e}")))?;
    let busy: u64 = stats["workers"]
        .as_array()
        .map(|workers| workers.iter().filter_map(|w| w["busy_ns"].as_u64()).sum())
        .unwrap_or(0);
    let frames: u64 = stats["ports"]
        .as_array()
        .map(|ports| ports.iter().filter_map(|p| p["rx_packets"].as_u64()).sum())
        .unwrap_or(0);
    Ok((frames > 0).then(|| busy as f64 / frames as f64))
}

/// Open vSwitch's flows: everything NORMAL, or IP through conntrack zone 1 first.
fn ovs_flows(system: LoopSystem) -> &'static str {
    match system {
        LoopSystem::OvsCt => {
            "table=0,priority=10,ip,ct_state=-trk,actions=ct(zone=1,table=1)\n\
             table=0,priority=0,actions=NORMAL\n\
             table=1,priority=10,ip,ct_state=+trk+new,actions=ct(commit,zone=1),NORMAL\n\
             table=1,priority=10,ip,ct_state=+trk+est,actions=NORMAL\n\
             table=1,priority=0,actions=drop\n"
        }
        _ => "actions=NORMAL\n",
    }
}

/// brinkd with the two vhost-user ports; `filtered`: each allowed testpmd's address with its own
/// MAC, in a stateful group that lets UDP in (else plain switching, conntrack off).
fn brink(
    dir: &Path,
    sockets: &[std::path::PathBuf; 2],
    filtered: bool,
    shape: &Shape,
) -> Result<Daemon, BenchError> {
    let d = Daemon::start(dir, &["--cores", &shape.brink_cores])?;
    let ctl = |args: &str| d.ctl_ok(&args.split_whitespace().collect::<Vec<_>>());
    ctl("network add blue")?;
    if filtered {
        ctl("sg add loop")?;
        ctl("sg rule add loop --direction egress")?;
        ctl("sg rule add loop --direction ingress --protocol udp")?;
    }
    for (n, (socket, mac)) in sockets.iter().zip([MAC0, MAC1]).enumerate() {
        let filter = match filtered {
            true => format!("--sg loop --allowed-pair {TESTPMD_IP},{mac}"),
            false => "--port-security off --no-conntrack".to_string(),
        };
        ctl(&format!(
            "port add vm{} --network blue --type vhost-user --vhost-socket {} --mac {mac} \
             --queues {} {filter}",
            n + 1,
            socket.display(),
            shape.queues
        ))?;
    }
    Ok(d)
}

/// Runs the loop laid out as `shape` through `system` for `seconds`; files go under `dir`.
pub fn run_loop(
    dir: &Path,
    system: LoopSystem,
    seconds: u32,
    shape: &Shape,
) -> Result<LoopResult, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError::Config(format!("{}: {e}", dir.display())))?;
    let huge = Hugepages::reserve(&dir.join("huge"), PAGES)?;
    let sockets = [dir.join("vm1.sock"), dir.join("vm2.sock")];
    let devices = testpmd::pair(&sockets, [MAC0, MAC1], shape.queues);
    // testpmd listens first; the switch connects (brink retries, OVS reconnects).
    let run = testpmd::Run::start(&huge, &devices, seconds + 2, (TESTPMD_CORE, SWITCH_CORE))?;
    std::thread::sleep(SETTLE / 4);
    let log = dir.join("testpmd.log");
    // The switch runs until testpmd has stopped and printed its totals.
    let (ports, worker_ns): (Vec<Forwarded>, _) = match system {
        LoopSystem::Brink | LoopSystem::BrinkL2 => {
            let filtered = system == LoopSystem::Brink;
            let brinkd = brink(&dir.join("brinkd"), &sockets, filtered, shape)?;
            let ports = run.finish(devices.len(), &log)?;
            (ports, worker_ns_per_frame(&brinkd)?)
        }
        LoopSystem::OvsNormal | LoopSystem::OvsCt => {
            let _ovs = Ovs::start_dpdk(
                &dir.join("ovs"),
                "brkVovs".into(),
                &sockets,
                (SWITCH_CORE, &huge.mount),
                ovs_flows(system),
            )?;
            (run.finish(devices.len(), &log)?, None)
        }
    };
    Ok(LoopResult {
        system,
        pps: ports.iter().map(|p| p.rx_pps).sum(),
        totals: ports.iter().map(|p| (p.rx, p.tx)).collect(),
        shape: shape.clone(),
        worker_ns_per_frame: worker_ns,
    })
}

/// The programs the loops need, and their packages.
const NEEDED: [(&str, &str); 2] = [
    ("dpdk-testpmd", "dpdk-dev"),
    (VSWITCHD_DPDK, "openvswitch-switch-dpdk"),
];

/// Runs the loop laid out as `shape` through each of `systems` in turn; files go under a
/// scratch directory.
pub fn run_all(
    systems: &[LoopSystem],
    seconds: u32,
    shape: &Shape,
) -> Result<Vec<LoopResult>, BenchError> {
    let missing = tools::ensure_all(&NEEDED);
    if !missing.is_empty() {
        return Err(BenchError::Config(format!(
            "missing: {}",
            missing.join("; ")
        )));
    }
    let topo = Topology::new("Vb");
    systems
        .iter()
        .map(|&s| run_loop(&topo.scratch().join(format!("{s:?}")), s, seconds, shape))
        .collect()
}

/// The results as a Markdown table.
pub fn markdown(results: &[LoopResult]) -> String {
    let mut out = String::from(
        "| switch | queue pairs | brink cores | Mpps | worker ns/frame | testpmd rx/tx per port |\n\
         |---|---:|---|---:|---:|---|\n",
    );
    for r in results {
        let totals: Vec<String> = r
            .totals
            .iter()
            .map(|(rx, tx)| format!("{rx}/{tx}"))
            .collect();
        let ns = r
            .worker_ns_per_frame
            .map_or_else(|| "-".to_string(), |ns| format!("{ns:.0}"));
        let cores = match r.system {
            LoopSystem::Brink | LoopSystem::BrinkL2 => r.shape.brink_cores.as_str(),
            LoopSystem::OvsNormal | LoopSystem::OvsCt => "-",
        };
        out.push_str(&format!(
            "| {:?} | {} | {cores} | {:.2} | {ns} | {} |\n",
            r.system,
            r.shape.queues,
            r.pps as f64 / 1e6,
            totals.join(", ")
        ));
    }
    out
}
