//! Linux bridges for the kernel systems (floor and hybrid), built in a namespace of their own
//! so that their bridges, iptables rules, sysctls and conntrack table touch nothing else on the
//! host. The VMs' host interfaces move into it.

use std::process::Output;

use super::Rig;
use crate::{run, BenchError};

/// The switch's namespace, deleted (with every device in it) on drop.
#[derive(Debug)]
pub struct SwitchNs {
    /// Its name.
    pub name: String,
}

impl SwitchNs {
    /// A new namespace holding the rig's host interfaces, up, where bridges call iptables
    /// only if made to ([`SwitchNs::bridge`]).
    pub fn new(rig: &Rig) -> Result<SwitchNs, BenchError> {
        let ns = SwitchNs {
            name: format!("{}-sw", rig.topo.prefix()),
        };
        run("ip", &["netns", "add", &ns.name])?;
        ns.run("ip", &["link", "set", "lo", "up"])?;
        // A namespace's own setting (br_netfilter is per namespace), on by default; absent
        // without br_netfilter, when no bridge calls iptables anyway.
        let _ = ns.run("sysctl", &["-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        for vm in &rig.vms {
            run("ip", &["link", "set", &vm.host_if, "netns", &ns.name])?;
            ns.up(&vm.host_if)?;
        }
        Ok(ns)
    }

    /// Runs a command in the namespace and fails unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, BenchError> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Sets `iface` up.
    pub fn up(&self, iface: &str) -> Result<(), BenchError> {
        self.run("ip", &["link", "set", iface, "up"]).map(drop)
    }

    /// A new bridge `name`, up, whose IPv4 frames go through iptables if `netfilter`.
    pub fn bridge(&self, name: &str, netfilter: bool) -> Result<(), BenchError> {
        let call = if netfilter { "1" } else { "0" };
        self.run(
            "ip",
            &[
                "link",
                "add",
                name,
                "type",
                "bridge",
                "nf_call_iptables",
                call,
            ],
        )?;
        self.up(name)
    }

    /// Puts `iface` on `bridge`.
    pub fn enslave(&self, iface: &str, bridge: &str) -> Result<(), BenchError> {
        self.run("ip", &["link", "set", iface, "master", bridge])
            .map(drop)
    }

    /// A veth pair `a`/`b`, both up.
    pub fn veth(&self, a: &str, b: &str) -> Result<(), BenchError> {
        self.run("ip", &["link", "add", a, "type", "veth", "peer", "name", b])?;
        self.up(a)?;
        self.up(b)
    }
}

impl Drop for SwitchNs {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
