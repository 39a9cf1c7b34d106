//! The floor: one Linux bridge between the VMs, no netfilter, no firewall.

use super::bridge::SwitchNs;
use super::{Rig, Switch};
use crate::BenchError;

/// A Linux bridge switching the rig's VMs.
#[derive(Debug)]
pub struct Floor {
    _ns: SwitchNs,
}

impl Floor {
    /// Puts the VMs' host interfaces on one bridge that does not call iptables.
    pub fn start(rig: &Rig) -> Result<Floor, BenchError> {
        let ns = SwitchNs::new(rig)?;
        let bridge = format!("{}br", rig.topo.prefix());
        ns.bridge(&bridge, false)?;
        for vm in &rig.vms {
            ns.enslave(&vm.host_if, &bridge)?;
        }
        Ok(Floor { _ns: ns })
    }
}

impl Switch for Floor {}

/// No switch at all: what the generator ceiling runs against.
#[derive(Debug)]
pub struct Nothing;

impl Switch for Nothing {}
