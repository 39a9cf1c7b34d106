//! Multi-host topologies: each "host" is a network namespace with an underlay veth (`ul`,
//! tunnel IP `192.0.2.<h+1>` or, on an IPv6 [`Underlay`], `2001:db8::<h+1>`) plugged into a
//! shared wire (a Linux bridge in a namespace of its own), running its own brinkd, a Linux
//! `vxlan` device in a bridge, or Open vSwitch's userspace datapath with a VXLAN port. VMs are
//! [`Topology`] VMs whose veth host end is moved into their host.

use std::process::Output;

use crate::compare::ovs::Ovs;
use crate::daemon::Daemon;
use crate::topo::{Topology, Vm};
use crate::{run, BenchError};

/// The underlay's MTU; VXLAN networks get 50 bytes less over IPv4, 70 over IPv6
/// ([`Hosts::inner_mtu`]).
pub const UNDERLAY_MTU: &str = "1500";
/// The MTU of VXLAN networks and their VMs on a [`UNDERLAY_MTU`] IPv4 underlay.
const INNER_MTU: &str = "1450";
/// The same on an IPv6 underlay, whose outer header is 20 bytes longer.
const INNER_MTU_V6: &str = "1430";

/// The IP version of a wire's underlay: which tunnel IPs its hosts get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underlay {
    /// Host `h` is `192.0.2.<h+1>/24`; VXLAN networks get [`INNER_MTU`].
    Ipv4,
    /// Host `h` is `2001:db8::<h+1>/64`; VXLAN networks get [`INNER_MTU_V6`].
    Ipv6,
}

/// The per-namespace switches of br_netfilter (absent while it is not loaded).
const BRIDGE_NETFILTER: [&str; 3] = [
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
];

/// Runs `program args` inside `netns` and fails unless it exits 0.
pub fn exec(netns: &str, program: &str, args: &[&str]) -> Result<Output, BenchError> {
    run(
        "ip",
        &[&["netns", "exec", netns, program][..], args].concat(),
    )
}

/// Namespaces, deleted on drop.
#[derive(Debug, Default)]
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// Hosts on a wire, their daemons, switches and VMs. Dropping it stops the daemons and
/// switches, then removes the VMs and namespaces.
#[derive(Debug)]
pub struct Hosts {
    /// brinkd of each brink host, by host index (declared first: stopped first).
    daemons: Vec<Option<Daemon>>,
    /// Open vSwitch of each OVS host, with its host index.
    switches: Vec<(usize, Ovs)>,
    /// The VMs.
    pub topo: Topology,
    spaces: Namespaces,
    wire: String,
    underlay: Underlay,
}

impl Hosts {
    /// An empty wire with an IPv4 underlay, with names from `tag` (see [`Topology::new`]).
    pub fn new(tag: &str) -> Result<Hosts, BenchError> {
        Hosts::with_underlay(tag, Underlay::Ipv4)
    }

    /// An empty wire whose hosts get `underlay`'s tunnel IPs.
    pub fn with_underlay(tag: &str, underlay: Underlay) -> Result<Hosts, BenchError> {
        let topo = Topology::new(tag);
        let wire = format!("{}-w", topo.prefix());
        let hosts = Hosts {
            daemons: vec![],
            switches: vec![],
            topo,
            spaces: Namespaces(vec![wire.clone()]),
            wire,
            underlay,
        };
        run("ip", &["netns", "add", &hosts.wire])?;
        // The wire stands for the physical network, so no iptables on it: where br_netfilter
        // is loaded (brink-bench compare's hybrid path loads it), a new namespace's bridges
        // call iptables by default, which would charge every tunnelled frame a few
        // microseconds more, or not, depending on what ran on the machine before.
        let no_netfilter = BRIDGE_NETFILTER.map(|key| format!("{key}=0"));
        let no_netfilter: Vec<&str> = no_netfilter.iter().map(String::as_str).collect();
        exec(
            &hosts.wire,
            "sysctl",
            &[&["-qew"][..], &no_netfilter].concat(),
        )?;
        exec(&hosts.wire, "ip", &["link", "add", "br0", "type", "bridge"])?;
        exec(&hosts.wire, "ip", &["link", "set", "br0", "up"])?;
        Ok(hosts)
    }

    /// The namespace of host `h`.
    pub fn host(&self, h: usize) -> String {
        format!("{}-h{h}", self.topo.prefix())
    }

    /// The tunnel IP of host `h`.
    pub fn tunnel_ip(&self, h: usize) -> String {
        match self.underlay {
            Underlay::Ipv4 => format!("192.0.2.{}", h + 1),
            Underlay::Ipv6 => format!("2001:db8::{}", h + 1),
        }
    }

    /// The tunnel IP of host `h` with its prefix length.
    fn tunnel_addr(&self, h: usize) -> String {
        let prefix = match self.underlay {
            Underlay::Ipv4 => 24,
            Underlay::Ipv6 => 64,
        };
        format!("{}/{prefix}", self.tunnel_ip(h))
    }

    /// The MTU that VXLAN networks and their VMs get on this underlay.
    pub fn inner_mtu(&self) -> &'static str {
        match self.underlay {
            Underlay::Ipv4 => INNER_MTU,
            Underlay::Ipv6 => INNER_MTU_V6,
        }
    }

    /// Adds a namespace that is removed with the hosts; returns its name.
    pub fn add_namespace(&mut self, suffix: &str) -> Result<String, BenchError> {
        let ns = format!("{}-{suffix}", self.topo.prefix());
        self.spaces.0.push(ns.clone());
        run("ip", &["netns", "add", &ns])?;
        Ok(ns)
    }

    /// Adds host `h` with its underlay on the wire, its tunnel IP on it; returns its
    /// namespace.
    pub fn add_host(&mut self, h: usize) -> Result<String, BenchError> {
        let ns = self.plug_host(h)?;
        let addr = self.tunnel_addr(h);
        let mut add = vec!["addr", "add", &addr, "dev", "ul"];
        if self.underlay == Underlay::Ipv6 {
            // Without duplicate address detection the address is usable at once.
            add.push("nodad");
        }
        exec(&ns, "ip", &add)?;
        Ok(ns)
    }

    /// Adds host `h` with its underlay on the wire, up but without an address; returns its
    /// namespace.
    fn plug_host(&mut self, h: usize) -> Result<String, BenchError> {
        let ns = self.add_namespace(&format!("h{h}"))?;
        let port = format!("p{h}");
        let link = [
            "link",
            "add",
            "ul",
            "netns",
            &ns,
            "mtu",
            UNDERLAY_MTU,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.wire,
        ];
        run("ip", &link)?;
        exec(
            &self.wire,
            "ip",
            &["link", "set", &port, "master", "br0", "up"],
        )?;
        exec(&ns, "ip", &["link", "set", "ul", "up"])?;
        exec(&ns, "ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Adds host `h` running brinkd with `args`, its tunnel endpoint set.
    pub fn add_brink_host(&mut self, h: usize, args: &[&str]) -> Result<(), BenchError> {
        let ns = self.add_host(h)?;
        let dir = self.topo.scratch().join(format!("h{h}"));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Daemon::start_in(Some(&ns), &dir, args)?;
        let local = self.tunnel_ip(h);
        d.ctl_ok(&["tunnel", "set", "--local-ip", &local, "--dev", "ul"])?;
        if self.daemons.len() <= h {
            self.daemons.resize_with(h + 1, || None);
        }
        self.daemons[h] = Some(d);
        Ok(())
    }

    /// The brinkd of host `h`.
    pub fn daemon(&self, h: usize) -> Result<&Daemon, BenchError> {
        let d = self.daemons.get(h).and_then(Option::as_ref);
        d.ok_or_else(|| BenchError::Config(format!("host {h} runs no brinkd")))
    }

    /// Stops the brinkd of host `h` and starts it again with `args` on its saved state.
    pub fn restart(&mut self, h: usize, args: &[&str]) -> Result<(), BenchError> {
        let dir = self.daemon(h)?.dir().to_path_buf();
        self.daemons[h] = None;
        self.daemons[h] = Some(Daemon::start_in(Some(&self.host(h)), &dir, args)?);
        Ok(())
    }

    /// VM `n` with address `addr` (MTU [`Hosts::inner_mtu`]), its veth host end in host `h`.
    pub fn add_vm(&mut self, h: usize, n: u8, addr: &str) -> Result<Vm, BenchError> {
        let vm = self.topo.add_vm(n, addr)?;
        let ns = self.host(h);
        run("ip", &["link", "set", &vm.host_if, "netns", &ns])?;
        exec(&ns, "ip", &["link", "set", &vm.host_if, "up"])?;
        vm.run("ip", &["link", "set", "eth0", "mtu", self.inner_mtu()])?;
        Ok(vm)
    }

    /// VM `n` on brink host `h`, port `vmN` of `network` (port security off).
    pub fn add_brink_vm(
        &mut self,
        h: usize,
        n: u8,
        addr: &str,
        network: &str,
    ) -> Result<Vm, BenchError> {
        let vm = self.add_vm(h, n, addr)?;
        let args = ["--ip", addr, "--port-security", "off"];
        self.daemon(h)?
            .add_vm_port(&format!("vm{n}"), &vm, network, &args)?;
        Ok(vm)
    }

    /// Host `h` as Linux does it: a `vxlan` device `vx` for `vni` (no learning) in bridge
    /// `br0`; returns its namespace.
    pub fn add_linux_host(&mut self, h: usize, vni: u32) -> Result<String, BenchError> {
        let ns = self.add_host(h)?;
        let (vni, local) = (vni.to_string(), self.tunnel_ip(h));
        let vx = [
            "link",
            "add",
            "vx",
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            "ul",
            "dstport",
            "4789",
            "nolearning",
        ];
        exec(&ns, "ip", &vx)?;
        exec(&ns, "ip", &["link", "add", "br0", "type", "bridge"])?;
        exec(&ns, "ip", &["link", "set", "vx", "master", "br0", "up"])?;
        exec(&ns, "ip", &["link", "set", "br0", "up"])?;
        Ok(ns)
    }

    /// A VM on Linux host `h`, in its bridge.
    pub fn add_linux_vm(&mut self, h: usize, n: u8, addr: &str) -> Result<Vm, BenchError> {
        let vm = self.add_vm(h, n, addr)?;
        exec(
            &self.host(h),
            "ip",
            &["link", "set", &vm.host_if, "master", "br0"],
        )?;
        Ok(vm)
    }

    /// Tells Linux host `h` that it floods to host `to` and that `vm` lives there.
    pub fn linux_remote(&self, h: usize, to: usize, vm: &Vm) -> Result<(), BenchError> {
        let (ns, dst) = (self.host(h), self.tunnel_ip(to));
        let flood = [
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx",
            "dst",
            &dst,
        ];
        exec(&ns, "bridge", &flood)?;
        exec(
            &ns,
            "bridge",
            &["fdb", "add", &vm.mac, "dev", "vx", "dst", &dst],
        )?;
        Ok(())
    }

    /// Host `h` as Open vSwitch's userspace datapath does it (see [`Ovs::start_vtep`]): the
    /// underlay on `br-phy` with the tunnel IP, VMs and tunnels on `br-int`, NORMAL switching;
    /// with `core`, OVS runs on that core only.
    pub fn add_ovs_host(&mut self, h: usize, core: Option<usize>) -> Result<(), BenchError> {
        // The tunnel IP goes on br-phy only. Were it on `ul` first, a peer that resolved it
        // meanwhile would keep sending to `ul`'s MAC, which OVS does not take as tunnel
        // traffic, until its neighbour entry expired (the first ping failed for 10 s so).
        let ns = self.plug_host(h)?;
        // The wire's port to this host finishes the checksums that other hosts' kernels left
        // partial, as a NIC would: OVS reads its underlay through a packet socket, which
        // carries no checksum metadata, and drops a tunnelled frame whose outer UDP checksum
        // is unfinished (Linux fills it in over IPv6; IPv4 VXLAN leaves it zero).
        exec(
            &self.wire,
            "ethtool",
            &["-K", &format!("p{h}"), "tx", "off"],
        )?;
        let dir = self.topo.scratch().join(format!("ovs{h}"));
        let addr = self.tunnel_addr(h);
        let ovs = Ovs::start_vtep(&ns, &dir, "ul", &addr, core)?;
        self.switches.push((h, ovs));
        Ok(())
    }

    /// The Open vSwitch of host `h`.
    fn ovs(&self, h: usize) -> Result<&Ovs, BenchError> {
        let ovs = self.switches.iter().find(|(at, _)| *at == h);
        let ovs = ovs.map(|(_, ovs)| ovs);
        ovs.ok_or_else(|| BenchError::Config(format!("host {h} runs no Open vSwitch")))
    }

    /// A VM on OVS host `h`, a port of its `br-int`. OVS reads that port through a packet
    /// socket, which carries no checksum metadata, so the VM's transmit checksum offload is
    /// off: otherwise its TCP and UDP checksums would leave the host unfinished.
    pub fn add_ovs_vm(&mut self, h: usize, n: u8, addr: &str) -> Result<Vm, BenchError> {
        let vm = self.add_vm(h, n, addr)?;
        vm.run("ethtool", &["-K", "eth0", "tx", "off"])?;
        self.ovs(h)?.add_port(&vm.host_if)?;
        Ok(vm)
    }

    /// Gives OVS host `h` a VXLAN port `vxTO` for `vni` to host `to`, as Neutron's OVS agent
    /// does for each remote host; NORMAL floods to it and learns from it.
    pub fn ovs_remote(&self, h: usize, to: usize, vni: u32) -> Result<(), BenchError> {
        let port = format!("vx{to}");
        self.ovs(h)?.add_vxlan_port(&port, &self.tunnel_ip(to), vni)
    }

    /// Tells brink host `h` what l2population would: `network` floods to host `to`, where
    /// `vm` lives.
    pub fn brink_remote(
        &self,
        h: usize,
        network: &str,
        to: usize,
        vm: &Vm,
    ) -> Result<(), BenchError> {
        let (d, at) = (self.daemon(h)?, self.tunnel_ip(to));
        d.ctl_ok(&["network", "peer", "add", network, &at])?;
        let add = [
            "fdb", "add", network, &vm.mac, "--remote", &at, "--ip", &vm.ip,
        ];
        d.ctl_ok(&add)?;
        Ok(())
    }
}
