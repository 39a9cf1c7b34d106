//! The hybrid path OpenStack's iptables firewall driver plugs: per VM a Linux bridge `qbr`
//! holding the VM's tap and one end of a veth pair `qvb`/`qvo`, whose other end sits on the
//! integration bridge (here a Linux bridge standing in for `br-int`), with `br_netfilter`
//! sending bridged frames through Neutron-shaped iptables physdev chains and `nf_conntrack`.

use super::bridge::SwitchNs;
use super::sg::{self, IptablesPort};
use super::{Rig, Switch};
use crate::{run, BenchError};

/// The hybrid path switching the rig's VMs.
#[derive(Debug)]
pub struct Hybrid {
    ns: SwitchNs,
}

impl Hybrid {
    /// Builds qbr/qvb/qvo per VM, the integration bridge and the iptables rules, with `rules`
    /// ingress rules per port.
    pub fn start(rig: &Rig, rules: usize) -> Result<Hybrid, BenchError> {
        // Built into some kernels (then modprobe fails and the sysctl below still works).
        let _ = run("modprobe", &["br_netfilter"]);
        let ns = SwitchNs::new(rig)?;
        let p = rig.topo.prefix();
        let br_int = format!("{p}i");
        // Only the qbr bridges call iptables, as in Neutron, where br-int is Open vSwitch and
        // a frame meets netfilter once on each VM's qbr.
        ns.bridge(&br_int, false)?;
        let mut ports = Vec::new();
        for (n, vm) in rig.vms.iter().enumerate() {
            let (qbr, qvb, qvo) = (format!("{p}q{n}"), format!("{p}b{n}"), format!("{p}o{n}"));
            ns.bridge(&qbr, true)?;
            ns.veth(&qvb, &qvo)?;
            ns.enslave(&vm.host_if, &qbr)?;
            ns.enslave(&qvb, &qbr)?;
            ns.enslave(&qvo, &br_int)?;
            ports.push(IptablesPort {
                tap: vm.host_if.clone(),
                qvb: qvb.clone(),
                id: format!("{n}-port"),
                mac: vm.mac.clone(),
                ip: vm.ip.clone(),
                zone: 1,
            });
        }
        let script = rig.topo.scratch().join("iptables.rules");
        std::fs::write(&script, sg::iptables(&ports, &sg::ingress(rules)))
            .map_err(|e| BenchError::Config(format!("{}: {e}", script.display())))?;
        ns.run("iptables-restore", &[&script.to_string_lossy()])?;
        Ok(Hybrid { ns })
    }
}

impl Switch for Hybrid {
    fn connections(&self) -> Result<Option<u64>, BenchError> {
        let out = self
            .ns
            .run("cat", &["/proc/sys/net/netfilter/nf_conntrack_count"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().ok())
    }

    fn flush(&self) -> Result<(), BenchError> {
        // `conntrack -F` exits 1 on an empty table here; what matters is the table after it.
        let _ = self.ns.run("conntrack", &["-F"]);
        Ok(())
    }
}
