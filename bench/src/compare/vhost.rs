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
//! [`Shape::brink_cores`]. Each loop records the two cores' cache-line round trip before and
//! after it ([`crosscore`]): this machine's host changes it, and the loop's rate with it. The
//! harness installs testpmd (`dpdk-dev`) and Open vSwitch-DPDK (`openvswitch-switch-dpdk`) with
//! apt if they are missing, and reserves the hugepages both need, giving them back after each
//! loop.

use std::path::Path;
use std::time::Duration;

use super::crosscore;
use super::ovs::{Ovs, VSWITCHD_DPDK};
use super::scenario::quantile;
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
    /// Which round of [`run_all`] (from 1).
    pub round: u32,
    /// Frames per second through the switch: both testpmd ports' receive rates in the last
    /// stats period, added.
    pub pps: u64,
    /// The same in every stats period but the first (which has the switch connecting), in
    /// order.
    pub periods: Vec<u64>,
    /// The cross-core round trip between the switch's and testpmd's cores just before the
    /// loop started and just after it ended, in nanoseconds ([`crosscore`]).
    pub round_trip_ns: [Option<f64>; 2],
    /// testpmd's totals per port: (received, sent).
    pub totals: Vec<(u64, u64)>,
    /// The loop's layout.
    pub shape: Shape,
    /// brink only: how its workers' polls went over the whole loop.
    pub worker: Option<WorkerLoad>,
}

/// How brink's workers spent a loop, from `stats`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WorkerLoad {
    /// Busy time (polls that moved frames, wall clock) per frame received, in nanoseconds.
    pub ns_per_frame: f64,
    /// Frames received per batch the pipeline ran: 32 when the worker is the loop's
    /// bottleneck, fewer when it waits on the other side.
    pub frames_per_batch: f64,
}

/// brink's workers' busy time and batch size over the frames received, from `stats`.
fn worker_load(d: &Daemon) -> Result<Option<WorkerLoad>, BenchError> {
    let text = d.ctl_ok(&["--json", "stats"])?;
    let stats: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BenchError::Config(format!("stats: {e}")))?;
    let workers = |field: &str| -> u64 {
        stats["workers"]
            .as_array()
            .map(|workers| workers.iter().filter_map(|w| w[field].as_u64()).sum())
            .unwrap_or(0)
    };
    let frames: u64 = stats["ports"]
        .as_array()
        .map(|ports| ports.iter().filter_map(|p| p["rx_packets"].as_u64()).sum())
        .unwrap_or(0);
    let (busy, batches) = (workers("busy_ns"), workers("batches"));
    Ok((frames > 0 && batches > 0).then(|| WorkerLoad {
        ns_per_frame: busy as f64 / frames as f64,
        frames_per_batch: frames as f64 / batches as f64,
    }))
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

/// Runs the loop laid out as `shape` through `system` for `seconds` as round `round`; files go
/// under `dir`.
pub fn run_loop(
    dir: &Path,
    (system, round): (LoopSystem, u32),
    seconds: u32,
    shape: &Shape,
) -> Result<LoopResult, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError::Config(format!("{}: {e}", dir.display())))?;
    let before = crosscore::round_trip_ns(SWITCH_CORE, TESTPMD_CORE);
    let huge = Hugepages::reserve(&dir.join("huge"), PAGES)?;
    let sockets = [dir.join("vm1.sock"), dir.join("vm2.sock")];
    let devices = testpmd::pair(&sockets, [MAC0, MAC1], shape.queues);
    // testpmd listens first; the switch connects (brink retries, OVS reconnects).
    let run = testpmd::Run::start(&huge, &devices, seconds + 2, (TESTPMD_CORE, SWITCH_CORE))?;
    std::thread::sleep(SETTLE / 4);
    let log = dir.join("testpmd.log");
    // The switch runs until testpmd has stopped and printed its totals.
    let (ports, worker): (Vec<Forwarded>, _) = match system {
        LoopSystem::Brink | LoopSystem::BrinkL2 => {
            let filtered = system == LoopSystem::Brink;
            let brinkd = brink(&dir.join("brinkd"), &sockets, filtered, shape)?;
            let ports = run.finish(devices.len(), &log)?;
            (ports, worker_load(&brinkd)?)
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
    let after = crosscore::round_trip_ns(SWITCH_CORE, TESTPMD_CORE);
    let periods = period_rates(&ports);
    Ok(LoopResult {
        system,
        round,
        pps: periods.last().copied().unwrap_or(0),
        periods: periods.get(1..).unwrap_or_default().to_vec(),
        round_trip_ns: [before, after],
        totals: ports.iter().map(|p| (p.rx, p.tx)).collect(),
        shape: shape.clone(),
        worker,
    })
}

/// Both ports' receive rates added, stats period by stats period.
fn period_rates(ports: &[Forwarded]) -> Vec<u64> {
    let periods = ports.iter().map(|p| p.rx_pps.len()).min().unwrap_or(0);
    (0..periods)
        .map(|k| ports.iter().map(|p| p.rx_pps[k]).sum())
        .collect()
}

/// The programs the loops need, and their packages.
const NEEDED: [(&str, &str); 2] = [
    ("dpdk-testpmd", "dpdk-dev"),
    (VSWITCHD_DPDK, "openvswitch-switch-dpdk"),
];

/// Runs the loop laid out as `shape` through each of `systems` in turn, `rounds` times over
/// (so that systems are compared within a round, where the machine's speed is the same for
/// all); files go under a scratch directory.
pub fn run_all(
    systems: &[LoopSystem],
    (seconds, rounds): (u32, u32),
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
    let mut results = vec![];
    for round in 1..=rounds.max(1) {
        for &s in systems {
            let dir = topo.scratch().join(format!("{s:?}"));
            results.push(run_loop(&dir, (s, round), seconds, shape)?);
        }
    }
    Ok(results)
}

/// The results as Markdown: every loop, then each system's median over the rounds, and
/// brink's ratios to Open vSwitch-DPDK (the goals: 2x `ovs-ct`, 1x `ovs-normal`).
pub fn markdown(results: &[LoopResult]) -> String {
    let mut out = String::from(
        "| round | switch | queue pairs | brink cores | Mpps | Mpps per period | cross-core ns before/after | worker ns/frame | frames/batch | testpmd rx/tx per port |\n\
         |---:|---|---:|---|---:|---|---|---:|---:|---|\n",
    );
    for r in results {
        let totals: Vec<String> = r
            .totals
            .iter()
            .map(|(rx, tx)| format!("{rx}/{tx}"))
            .collect();
        let (ns, batch) = r.worker.map_or_else(
            || ("-".to_string(), "-".to_string()),
            |w| {
                (
                    format!("{:.0}", w.ns_per_frame),
                    format!("{:.1}", w.frames_per_batch),
                )
            },
        );
        let cores = match r.system {
            LoopSystem::Brink | LoopSystem::BrinkL2 => r.shape.brink_cores.as_str(),
            LoopSystem::OvsNormal | LoopSystem::OvsCt => "-",
        };
        let periods: Vec<String> = r
            .periods
            .iter()
            .map(|&pps| format!("{:.2}", pps as f64 / 1e6))
            .collect();
        let trips = r
            .round_trip_ns
            .map(|ns| ns.map_or_else(|| "-".to_string(), |ns| format!("{ns:.0}")));
        out.push_str(&format!(
            "| {} | {:?} | {} | {cores} | {:.2} | {} | {} | {ns} | {batch} | {} |\n",
            r.round,
            r.system,
            r.shape.queues,
            r.pps as f64 / 1e6,
            periods.join(", "),
            trips.join("/"),
            totals.join(", ")
        ));
    }
    out.push_str("\n| switch | Mpps by round | median Mpps |\n|---|---|---:|\n");
    let mut systems: Vec<LoopSystem> = vec![];
    for r in results {
        if !systems.contains(&r.system) {
            systems.push(r.system);
        }
    }
    for &s in &systems {
        let rates: Vec<String> = mpps(results, s).iter().map(|m| format!("{m:.2}")).collect();
        let median = quantile(&mpps(results, s), 0.5);
        out.push_str(&format!("| {s:?} | {} | {median:.2} |\n", rates.join(", ")));
    }
    for (of, to) in [
        (LoopSystem::Brink, LoopSystem::OvsCt),
        (LoopSystem::Brink, LoopSystem::OvsNormal),
    ] {
        let (a, b) = (mpps(results, of), mpps(results, to));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let by_round: Vec<String> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| format!("{:.2}x", a / b))
            .collect();
        let ratio = quantile(&a, 0.5) / quantile(&b, 0.5);
        out.push_str(&format!(
            "\n{of:?} against {to:?}: {ratio:.2}x by the medians ({} round by round)",
            by_round.join(", ")
        ));
    }
    out.push('\n');
    out
}

/// The rates of `system`'s loops in Mpps, round by round.
fn mpps(results: &[LoopResult], system: LoopSystem) -> Vec<f64> {
    let of = results.iter().filter(|r| r.system == system);
    of.map(|r| r.pps as f64 / 1e6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(system: LoopSystem, round: u32, mpps: f64) -> LoopResult {
        LoopResult {
            system,
            round,
            pps: (mpps * 1e6) as u64,
            periods: vec![(mpps * 5e5) as u64, (mpps * 1e6) as u64],
            round_trip_ns: [Some(140.4), None],
            totals: vec![],
            shape: Shape {
                queues: 1,
                brink_cores: "1".into(),
            },
            worker: None,
        }
    }

    #[test]
    fn the_summary_gives_medians_and_brinks_ratios_round_by_round() {
        let mut results = vec![];
        for (round, (brink, ct)) in [(2.0, 1.0), (3.0, 2.0), (1.0, 4.0)].into_iter().enumerate() {
            results.push(result(LoopSystem::Brink, round as u32 + 1, brink));
            results.push(result(LoopSystem::OvsCt, round as u32 + 1, ct));
        }
        let text = markdown(&results);
        assert!(
            text.contains("| Brink | 2.00, 3.00, 1.00 | 2.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| OvsCt | 1.00, 2.00, 4.00 | 2.00 |"),
            "{text}"
        );
        assert!(
            text.contains("Brink against OvsCt: 1.00x by the medians (2.00x, 1.50x, 0.25x"),
            "{text}"
        );
        assert!(!text.contains("against OvsNormal"), "{text}");
        assert!(
            text.contains("| 1 | Brink | 1 | 1 | 2.00 | 1.00, 2.00 | 140/- |"),
            "each loop with its periods and the round trips around it: {text}"
        );
        assert_eq!(
            text.matches("\n| Brink |").count(),
            1,
            "one summary row: {text}"
        );
    }
}
