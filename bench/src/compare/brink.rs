//! brink: `brinkd` with port security, the security group and conntrack on every port.

use serde_json::Value;

use super::{sg, Rig, Switch, SwitchClock};

/// Rules per imported group: the API takes requests of up to 1 MiB, and a long rule list is
/// split over several groups on the same port (the port's rules are their union).
const RULES_PER_GROUP: usize = 4000;
use crate::daemon::Daemon;
use crate::BenchError;

/// A running `brinkd` switching the rig's VMs.
#[derive(Debug)]
pub struct Brink {
    daemon: Daemon,
}

impl Brink {
    /// Starts `brinkd` with its worker on `core` and adds one port per VM in one network, with
    /// port security and `rules` ingress rules.
    pub fn start(rig: &Rig, rules: usize, core: usize) -> Result<Brink, BenchError> {
        let dir = rig.topo.scratch().join("brinkd");
        let daemon = Daemon::start(&dir, &["--cores", &core.to_string()])?;
        daemon.ctl_ok(&["network", "add", "bench"])?;
        let mut groups = Vec::new();
        for (n, chunk) in sg::ingress(rules).chunks(RULES_PER_GROUP).enumerate() {
            let name = format!("bench{n}");
            let file = dir.join(format!("{name}.json"));
            std::fs::write(&file, sg::openstack_json(&name, chunk).to_string())
                .map_err(|e| BenchError::Config(format!("{}: {e}", file.display())))?;
            daemon.ctl_ok(&["sg", "import", &file.to_string_lossy()])?;
            groups.push(name);
        }
        for (n, vm) in rig.vms.iter().enumerate() {
            let mut args = vec!["--ip", vm.ip.as_str()];
            for g in &groups {
                args.extend(["--sg", g.as_str()]);
            }
            daemon.add_vm_port(&format!("vm{n}"), vm, "bench", &args)?;
        }
        Ok(Brink { daemon })
    }

    fn json(&self, args: &[&str]) -> Result<Value, BenchError> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.daemon.ctl_ok(&full)?)
            .map_err(|e| BenchError::Config(format!("brinkctl {}: {e}", args.join(" "))))
    }
}

/// The busy nanoseconds of all of `daemon`'s workers so far.
pub fn worker_busy_ns(daemon: &Daemon) -> Result<u64, BenchError> {
    let stats: Value = serde_json::from_str(&daemon.ctl_ok(&["--json", "stats"])?)
        .map_err(|e| BenchError::Config(format!("brinkctl stats: {e}")))?;
    Ok(stats["workers"]
        .as_array()
        .map_or(0, |w| w.iter().filter_map(|w| w["busy_ns"].as_u64()).sum()))
}

impl Switch for Brink {
    fn clock(&self) -> Result<Option<SwitchClock>, BenchError> {
        Ok(Some(SwitchClock::busy_ns(worker_busy_ns(&self.daemon)?)))
    }

    fn connections(&self) -> Result<Option<u64>, BenchError> {
        Ok(self.json(&["ct", "stats"])?["entries"].as_u64())
    }

    fn flush(&self) -> Result<(), BenchError> {
        self.daemon.ctl_ok(&["ct", "flush"]).map(drop)
    }
}
