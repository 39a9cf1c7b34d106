//! brink: `brinkd` with port security, the security group and conntrack on every port.

use serde_json::Value;

use super::{sg, Rig, Switch, SwitchClock};
use crate::daemon::Daemon;
use crate::BenchError;

/// A running `brinkd` switching the rig's VMs.
#[derive(Debug)]
pub struct Brink {
    daemon: Daemon,
}

impl Brink {
    /// Starts `brinkd` with its worker on `core` and adds one port per VM in one network, with
    /// port security and a group of `rules` ingress rules.
    pub fn start(rig: &Rig, rules: usize, core: usize) -> Result<Brink, BenchError> {
        let dir = rig.topo.scratch().join("brinkd");
        let daemon = Daemon::start(&dir, &["--cores", &core.to_string()])?;
        let group = dir.join("sg.json");
        let json = sg::openstack_json("bench", &sg::ingress(rules));
        std::fs::write(&group, json.to_string())
            .map_err(|e| BenchError::Config(format!("{}: {e}", group.display())))?;
        daemon.ctl_ok(&["network", "add", "bench"])?;
        daemon.ctl_ok(&["sg", "import", &group.to_string_lossy()])?;
        for (n, vm) in rig.vms.iter().enumerate() {
            let name = format!("vm{n}");
            daemon.add_vm_port(&name, vm, "bench", &["--ip", &vm.ip, "--sg", "bench"])?;
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

impl Switch for Brink {
    fn clock(&self) -> Result<Option<SwitchClock>, BenchError> {
        let stats = self.json(&["stats"])?;
        let busy: u64 = stats["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter_map(|w| w["busy_ns"].as_u64()).sum());
        Ok(Some(SwitchClock::busy_ns(busy)))
    }

    fn connections(&self) -> Result<Option<u64>, BenchError> {
        Ok(self.json(&["ct", "stats"])?["entries"].as_u64())
    }

    fn flush(&self) -> Result<(), BenchError> {
        self.daemon.ctl_ok(&["ct", "flush"]).map(drop)
    }
}
