//! `brink-bench compare`: the same scenarios, on the same veth topology, through each system
//! an OpenStack operator could put between two VMs, in one invocation.
//!
//! Each system ([`System`]) is set up between two fresh namespaced VMs, measured with every
//! scenario ([`scenario`]) and torn down before the next starts. The switch runs on one core
//! and the generators on the other; every figure is the median of several runs, and a run during
//! which other processes used the CPU is repeated once and flagged ([`load`]). The result is one
//! JSON document, a Markdown report ([`report`]) and SVG plots ([`plot`]).

pub mod bridge;
pub mod brink;
pub mod crosscore;
pub mod floor;
pub mod forwarder;
pub mod hybrid;
pub mod load;
pub mod ovs;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod sg;
pub mod tools;
pub mod vhost;

use serde::{Deserialize, Serialize};

use crate::topo::{Topology, Vm};
use crate::BenchError;
use scenario::{measure, Outcome, Scenario, Settings};

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// brinkd with security groups and conntrack.
    Brink,
    /// A Linux bridge without netfilter.
    Floor,
    /// Per-VM qbr + qvb/qvo veth + a Linux bridge as br-int, br_netfilter and iptables.
    Hybrid,
    /// Open vSwitch's userspace datapath with AF_XDP ports and conntrack flows.
    Ovs,
    /// A minimal AF_XDP forwarder with no switching logic.
    Forwarder,
}

impl System {
    /// Every system, in report order.
    pub const ALL: [System; 5] = [
        System::Floor,
        System::Hybrid,
        System::Ovs,
        System::Forwarder,
        System::Brink,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            System::Brink => "brink",
            System::Floor => "floor",
            System::Hybrid => "hybrid",
            System::Ovs => "ovs",
            System::Forwarder => "forwarder",
        }
    }

    /// Whether it enforces security-group rules (so rule scale applies).
    pub fn has_rules(self) -> bool {
        matches!(self, System::Brink | System::Hybrid | System::Ovs)
    }

    /// Starts it between the rig's VMs, its switching on `core`, with `rules` ingress rules per
    /// port where it has a firewall.
    pub fn start(
        self,
        rig: &Rig,
        rules: usize,
        core: usize,
    ) -> Result<Box<dyn Switch>, BenchError> {
        Ok(match self {
            System::Brink => Box::new(brink::Brink::start(rig, rules, core)?),
            System::Floor => Box::new(floor::Floor::start(rig)?),
            System::Hybrid => Box::new(hybrid::Hybrid::start(rig, rules)?),
            System::Ovs => Box::new(ovs::Ovs::start(rig, rules, core)?),
            System::Forwarder => Box::new(forwarder::Forwarder::start(rig, core)?),
        })
    }
}

/// Cumulative counters of a switch core's time, read before and after a run.
#[derive(Debug, Clone, Copy)]
pub enum SwitchClock {
    /// Nanoseconds spent on packets (brink's workers, the forwarder).
    BusyNs(u64),
    /// Cycles spent on packets, and all cycles (Open vSwitch's PMD threads).
    Cycles {
        /// Cycles of iterations that processed packets.
        busy: u64,
        /// All cycles.
        total: u64,
    },
}

impl SwitchClock {
    /// A clock of busy nanoseconds.
    pub fn busy_ns(ns: u64) -> SwitchClock {
        SwitchClock::BusyNs(ns)
    }

    /// Busy nanoseconds between `earlier` and `self`, `wall_ns` apart.
    pub fn busy_ns_since(&self, earlier: &SwitchClock, wall_ns: f64) -> Option<f64> {
        match (earlier, self) {
            (SwitchClock::BusyNs(a), SwitchClock::BusyNs(b)) => Some(b.saturating_sub(*a) as f64),
            (
                SwitchClock::Cycles {
                    busy: b0,
                    total: t0,
                },
                SwitchClock::Cycles {
                    busy: b1,
                    total: t1,
                },
            ) => {
                let total = t1.saturating_sub(*t0);
                (total > 0).then(|| b1.saturating_sub(*b0) as f64 / total as f64 * wall_ns)
            }
            _ => None,
        }
    }
}

/// A running system. What it cannot tell, it answers with `None`.
pub trait Switch {
    /// Its switch core's time counters.
    fn clock(&self) -> Result<Option<SwitchClock>, BenchError> {
        Ok(None)
    }
    /// Connections it tracks now.
    fn connections(&self) -> Result<Option<u64>, BenchError> {
        Ok(None)
    }
    /// Forgets every tracked connection.
    fn flush(&self) -> Result<(), BenchError> {
        Ok(())
    }
}

/// Two namespaced VMs for one system: VM 0 sends, VM 1 receives.
#[derive(Debug)]
pub struct Rig {
    /// The VMs.
    pub vms: Vec<Vm>,
    /// Their namespaces and veth pairs; dropped last.
    pub topo: Topology,
}

impl Rig {
    /// Two VMs whose names start with `brk` + `tag`, and the scratch directory.
    pub fn new(tag: &str) -> Result<Rig, BenchError> {
        let mut topo = Topology::new(tag);
        std::fs::create_dir_all(topo.scratch())
            .map_err(|e| BenchError::Config(format!("{}: {e}", topo.scratch().display())))?;
        let vms = vec![topo.add_vm(1, "10.87.0.1")?, topo.add_vm(2, "10.87.0.2")?];
        Ok(Rig { vms, topo })
    }

    /// The sending VM.
    pub fn sender(&self) -> &Vm {
        &self.vms[0]
    }

    /// The receiving VM.
    pub fn receiver(&self) -> &Vm {
        &self.vms[1]
    }
}

/// A system that could not be measured, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// The system.
    pub system: String,
    /// Ingress rules per port it was started with.
    pub rules: usize,
    /// What went wrong.
    pub reason: String,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Tools that are missing even after trying to install them.
    pub missing_tools: Vec<String>,
    /// Systems that did not start or pass traffic.
    pub skipped: Vec<Skipped>,
    /// The figures.
    pub outcomes: Vec<Outcome>,
}

/// Runs the generator ceiling, then every scenario on every system in `systems` with the
/// base group, then rule scale at each of `rule_counts` on the systems with a firewall.
pub fn compare(s: &Settings, systems: &[System], rule_counts: &[usize]) -> Results {
    let mut r = Results {
        missing_tools: tools::ensure(),
        skipped: Vec::new(),
        outcomes: Vec::new(),
    };
    match Rig::new("cmp") {
        Ok(rig) => {
            let no_switch = floor::Nothing;
            r.outcomes
                .push(measure(s, Scenario::Ceiling, "brink-pktgen", 0, || {
                    Scenario::Ceiling.run_once(s, &rig, &no_switch)
                }));
            if tools::installed("trafgen") {
                r.outcomes
                    .push(measure(s, Scenario::Ceiling, "trafgen", 0, || {
                        scenario::trafgen_ceiling(s, &rig)
                    }));
            }
        }
        Err(e) => r.skipped.push(Skipped {
            system: "generator ceiling".into(),
            rules: 0,
            reason: e.to_string(),
        }),
    }
    for &system in systems {
        run_system(s, system, sg::ALLOW.len(), &Scenario::ALL, &mut r);
    }
    for &rules in rule_counts {
        for &system in systems.iter().filter(|s| s.has_rules()) {
            run_system(s, system, rules, &Scenario::RULE_SCALE, &mut r);
        }
    }
    r
}

/// Starts `system` on a fresh rig and runs `scenarios` on it.
fn run_system(s: &Settings, system: System, rules: usize, scenarios: &[Scenario], r: &mut Results) {
    let skip = |reason: String| Skipped {
        system: system.name().into(),
        rules,
        reason,
    };
    let rig = match Rig::new("cmp") {
        Ok(rig) => rig,
        Err(e) => return r.skipped.push(skip(e.to_string())),
    };
    let sw = match system.start(&rig, rules, s.switch_core) {
        Ok(sw) => sw,
        Err(e) => return r.skipped.push(skip(format!("did not start: {e}"))),
    };
    // The first frames teach the bridges where the VMs are; no reply means no switch.
    if let Err(e) = crate::traffic::ping(rig.sender(), rig.receiver(), 3) {
        return r.skipped.push(skip(format!("passes no traffic: {e}")));
    }
    for &scenario in scenarios {
        r.outcomes
            .push(measure(s, scenario, system.name(), rules, || {
                scenario.run_once(s, &rig, sw.as_ref())
            }));
    }
}
