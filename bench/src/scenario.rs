//! Benchmark scenarios: real traffic from `brink-pktgen` through `brinkd` between namespaced VMs,
//! measured from the kernel's interface counters and brink's own counters.

use std::time::Duration;

use serde::Serialize;

use crate::compare::brink::worker_busy_ns;
use crate::compare::scenario::quantile;
use crate::daemon::Daemon;
use crate::pktgen::frame::Mode;
use crate::topo::{Topology, Vm};
use crate::traffic::{self, rx_packets, Offer};
use crate::BenchError;

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioConfig {
    /// Runs per variant.
    pub runs: usize,
    /// Seconds of traffic per run.
    pub seconds: f64,
    /// Frame size.
    pub size: usize,
    /// Flows (UDP source ports).
    pub flows: u16,
    /// Core for brinkd's worker.
    pub switch_core: usize,
    /// Core for the generator.
    pub generator_core: usize,
}

/// One run of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Frames the generator sent.
    pub sent: u64,
    /// Frames the receiving VM's `eth0` counted.
    pub delivered: u64,
    /// Seconds of traffic.
    pub seconds: f64,
    /// Generator rate.
    pub sent_pps: f64,
    /// Delivered rate.
    pub delivered_pps: f64,
    /// Switch worker busy nanoseconds per delivered frame (0 without a switch).
    pub busy_ns_per_frame: f64,
}

/// All runs of one variant and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// Name.
    pub name: String,
    /// Runs.
    pub runs: Vec<RunResult>,
    /// Median delivered rate.
    pub median_delivered_pps: f64,
    /// Median busy ns per delivered frame.
    pub median_busy_ns_per_frame: f64,
}

impl RunResult {
    /// A run that sent `sent` and delivered `delivered` frames in `seconds`, with `busy_ns` of
    /// switch worker time (0 without a switch).
    pub(crate) fn new(sent: u64, delivered: u64, seconds: f64, busy_ns: u64) -> Self {
        RunResult {
            sent,
            delivered,
            seconds,
            sent_pps: sent as f64 / seconds,
            delivered_pps: delivered as f64 / seconds,
            busy_ns_per_frame: busy_ns as f64 / delivered.max(1) as f64,
        }
    }
}

/// Runs the generator in `from` towards `to` for the configured time, pinned to its core.
pub(crate) fn generate(cfg: &ScenarioConfig, from: &Vm, to: &Vm) -> Result<(u64, f64), BenchError> {
    let offer = Offer {
        mode: Mode::Udp,
        size: cfg.size,
        flows: u32::from(cfg.flows),
        rate: None,
        count: u64::MAX,
        seconds: cfg.seconds,
    };
    let report = traffic::send(cfg.generator_core, from, to, &offer)?;
    Ok((
        report["sent"].as_u64().unwrap_or(0),
        report["seconds"].as_f64().unwrap_or(0.0),
    ))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    quantile(&values.collect::<Vec<_>>(), 0.5)
}

pub(crate) fn variant(name: &str, runs: Vec<RunResult>) -> Variant {
    Variant {
        name: name.into(),
        median_delivered_pps: median(runs.iter().map(|r| r.delivered_pps)),
        median_busy_ns_per_frame: median(runs.iter().map(|r| r.busy_ns_per_frame)),
        runs,
    }
}

/// One-way UDP from VM 1 to VM 2: first the generator alone into its veth (no switch), then
/// through brinkd with conntrack off and on.
pub fn udp_one_way(cfg: &ScenarioConfig) -> Result<Vec<Variant>, BenchError> {
    let mut topo = Topology::new("bch");
    let vm1 = topo.add_vm(1, "10.87.0.1")?;
    let vm2 = topo.add_vm(2, "10.87.0.2")?;
    let mut out = Vec::new();

    // The generator alone: what vm1's veth peer receives with nothing attached to it.
    let mut runs = Vec::new();
    for _ in 0..cfg.runs {
        let before = rx_packets(None, &vm1.host_if)?;
        let (sent, seconds) = generate(cfg, &vm1, &vm2)?;
        let delivered = rx_packets(None, &vm1.host_if)? - before;
        runs.push(RunResult::new(sent, delivered, seconds, 0));
    }
    out.push(variant("generator alone (no switch)", runs));

    for conntrack in [false, true] {
        let dir = topo.scratch().join(format!("brinkd-ct-{conntrack}"));
        let core = cfg.switch_core.to_string();
        let d = Daemon::start(&dir, &["--cores", &core])?;
        d.ctl_ok(&["network", "add", "bench"])?;
        for vm in [&vm1, &vm2] {
            let name = format!("p{}", &vm.host_if[vm.host_if.len() - 1..]);
            let mut extra = vec!["--port-security", "off"];
            if !conntrack {
                extra.push("--no-conntrack");
            }
            d.add_vm_port(&name, vm, "bench", &extra)?;
        }
        // Let ARP and the first flood settle, and the FDB learn.
        std::thread::sleep(Duration::from_millis(300));
        let mut runs = Vec::new();
        for _ in 0..cfg.runs {
            let (rx0, busy0) = (rx_packets(Some(&vm2.netns), "eth0")?, worker_busy_ns(&d)?);
            let (sent, seconds) = generate(cfg, &vm1, &vm2)?;
            std::thread::sleep(Duration::from_millis(100));
            let (rx1, busy1) = (rx_packets(Some(&vm2.netns), "eth0")?, worker_busy_ns(&d)?);
            runs.push(RunResult::new(sent, rx1 - rx0, seconds, busy1 - busy0));
        }
        let name = if conntrack {
            "brinkd, conntrack on"
        } else {
            "brinkd, L2 only"
        };
        out.push(variant(name, runs));
    }
    Ok(out)
}

/// A Markdown table of the variants.
pub fn markdown(cfg: &ScenarioConfig, variants: &[Variant]) -> String {
    let mut s = format!(
        "{}-byte UDP, {} flow(s), {} runs of {} s; switch on core {}, generator on core {}\n\n\
         | variant | delivered Mpps (runs) | median Mpps | loss (median run) | switch busy ns/frame (median) |\n|---|---|---|---|---|\n",
        cfg.size, cfg.flows, cfg.runs, cfg.seconds, cfg.switch_core, cfg.generator_core
    );
    for v in variants {
        let runs: Vec<String> = v
            .runs
            .iter()
            .map(|r| format!("{:.3}", r.delivered_pps / 1e6))
            .collect();
        let mut by_rate = v.runs.clone();
        by_rate.sort_by(|a, b| a.delivered_pps.total_cmp(&b.delivered_pps));
        let mid = &by_rate[by_rate.len() / 2];
        let loss = 1.0 - mid.delivered as f64 / mid.sent.max(1) as f64;
        s.push_str(&format!(
            "| {} | {} | **{:.3}** | {:.1}% | {} |\n",
            v.name,
            runs.join(", "),
            v.median_delivered_pps / 1e6,
            loss * 100.0,
            if v.median_busy_ns_per_frame > 0.0 {
                format!("{:.0}", v.median_busy_ns_per_frame)
            } else {
                "-".into()
            }
        ));
    }
    s
}
