//! Namespaced "VMs": each is a network namespace whose `eth0` is one end of a veth pair; the
//! other end stays in the root namespace for brink to attach to.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{run, BenchError};

/// One namespaced VM.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Namespace name.
    pub netns: String,
    /// Host end of the veth pair (what brink attaches to).
    pub host_if: String,
    /// MAC of the VM's `eth0`.
    pub mac: String,
    /// IPv4 address of the VM's `eth0`, without prefix length.
    pub ip: String,
}

impl Vm {
    /// Runs a command inside the VM's namespace and returns its output, whatever its status.
    pub fn exec(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, program])
            .args(args)
            .output()
    }

    /// Turns IPv6 on and adds `addr`/64 (no duplicate address detection, so it is usable at once).
    pub fn enable_ipv6(&self, addr: &str) -> Result<(), BenchError> {
        self.run("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=0"])?;
        self.run("sysctl", &["-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])?;
        self.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        Ok(())
    }

    /// Runs a command inside the VM's namespace and fails unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, BenchError> {
        let mut full = vec!["netns", "exec", &self.netns, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

/// A set of VMs that is torn down on drop.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    vms: Vec<Vm>,
}

impl Topology {
    /// An empty topology whose names start with `brk`, then `tag` (at most 3 characters), then
    /// this process id, so parallel tests and runs never collide.
    pub fn new(tag: &str) -> Self {
        let tag: String = tag.chars().take(3).collect();
        Topology {
            prefix: format!("brk{tag}{}", std::process::id() % 100_000),
            vms: Vec::new(),
        }
    }

    /// Adds VM number `n` (1-99) with MAC `02:00:00:00:<pid>:<n>` and address `ip`/24, IPv6 off
    /// and offloads at their defaults (brink completes the checksums the VM leaves partial).
    pub fn add_vm(&mut self, n: u8, ip: &str) -> Result<Vm, BenchError> {
        self.add_vm_with_queues(n, ip, 1)
    }

    /// [`Topology::add_vm`], with `queues` receive and transmit queues on both ends of the veth.
    pub fn add_vm_with_queues(&mut self, n: u8, ip: &str, queues: u8) -> Result<Vm, BenchError> {
        let queues = queues.max(1).to_string();
        let vm = Vm {
            netns: format!("{}-{n}", self.prefix),
            host_if: format!("{}h{n}", self.prefix),
            mac: format!("02:00:00:00:{:02x}:{n:02x}", std::process::id() % 256),
            ip: ip.to_string(),
        };
        // Registered first, so a failure half-way is still cleaned up.
        self.vms.push(vm.clone());
        run("ip", &["netns", "add", &vm.netns])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &vm.host_if,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "netns",
                &vm.netns,
            ],
        )?;
        run("ip", &["link", "set", &vm.host_if, "up"])?;
        vm.run("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        vm.run("ip", &["link", "set", "eth0", "address", &vm.mac])?;
        vm.run("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        vm.run("ip", &["link", "set", "eth0", "up"])?;
        vm.run("ip", &["link", "set", "lo", "up"])?;
        Ok(vm)
    }

    /// The name prefix, for other objects of this test (tap devices, files).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch directory for this topology's files, removed with it.
    pub fn scratch(&self) -> PathBuf {
        std::env::temp_dir().join(&self.prefix)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for vm in &self.vms {
            // Deleting the namespace deletes its veth end and so the pair.
            let _ = run("ip", &["netns", "del", &vm.netns]);
            let _ = run("ip", &["link", "del", &vm.host_if]);
        }
        let _ = std::fs::remove_dir_all(self.scratch());
    }
}
