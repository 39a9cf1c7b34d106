//! Open vSwitch: the userspace datapath (`netdev`) with AF_XDP ports and Neutron-ovsfw-shaped
//! conntrack flows, from the distribution's `openvswitch-switch`, run with a database, run
//! directory and logs of its own and its PMD thread pinned to the switch core. The same
//! daemons also run inside a namespace as a VXLAN host of [`crate::hosts`]
//! ([`Ovs::start_vtep`]), with OVS's userspace tunnelling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sg::{self, OvsPort};
use super::{Rig, Switch, SwitchClock};
use crate::{run, BenchError};

/// The schema the package installs.
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
/// The tap the userspace datapath creates for itself, whatever the bridge's name.
const DATAPATH_TAP: &str = "ovs-netdev";
/// Open vSwitch built with DPDK, as `openvswitch-switch-dpdk` installs it (beside the plain
/// build, which stays the default `ovs-vswitchd`).
pub const VSWITCHD_DPDK: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
/// How long the daemons and ports may take to come up.
const PATIENCE: Duration = Duration::from_secs(20);

/// The bridge of [`Ovs::start_vtep`] that holds the underlay port and the tunnel IP.
pub const PHYSICAL_BRIDGE: &str = "br-phy";
/// The bridge of [`Ovs::start_vtep`] that holds the VMs and the tunnels.
pub const INTEGRATION_BRIDGE: &str = "br-int";

/// A private `ovsdb-server` and `ovs-vswitchd`, stopped on drop.
#[derive(Debug)]
pub struct Ovs {
    dir: PathBuf,
    bridge: String,
    /// The namespace the daemons run in; `None` for the caller's own.
    netns: Option<String>,
    /// The tunnel endpoint address of [`Ovs::start_vtep`]'s physical bridge.
    tunnel_ip: Option<String>,
    daemons: Vec<Child>,
}

/// The installed version, e.g. `ovs-vswitchd (Open vSwitch) 3.1.0`.
pub fn version() -> Option<String> {
    let out = Command::new("ovs-vswitchd")
        .arg("--version")
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .to_string(),
    )
}

impl Ovs {
    /// Starts the daemons, a netdev bridge with one AF_XDP port per VM, and the flows with
    /// `rules` ingress rules per port; the PMD thread runs on `core`.
    pub fn start(rig: &Rig, rules: usize, core: usize) -> Result<Ovs, BenchError> {
        if version().is_none() {
            return Err(BenchError::Config("ovs-vswitchd is not installed".into()));
        }
        if Path::new("/sys/class/net").join(DATAPATH_TAP).exists() {
            return Err(BenchError::Config(format!(
                "another userspace datapath runs here ({DATAPATH_TAP} exists)"
            )));
        }
        let ovs = Ovs::launch(
            &rig.topo.scratch().join("ovs"),
            format!("{}ov", rig.topo.prefix()),
            None,
            "ovs-vswitchd",
            &[format!("other_config:pmd-cpu-mask={:#x}", 1u64 << core)],
        )?;
        let br = ovs.bridge.clone();
        let mut ports = Vec::new();
        for (n, vm) in rig.vms.iter().enumerate() {
            let ofport = n as u16 + 1;
            ovs.vsctl(&[
                "add-port",
                &br,
                &vm.host_if,
                "--",
                "set",
                "interface",
                &vm.host_if,
                "type=afxdp",
                "options:xdp-mode=native",
                &format!("ofport_request={ofport}"),
            ])?;
            ports.push(OvsPort {
                ofport,
                mac: vm.mac.clone(),
                ip: vm.ip.clone(),
            });
        }
        for vm in &rig.vms {
            ovs.wait_for(
                |o| {
                    o.vsctl(&["get", "interface", &vm.host_if, "ofport"])
                        .is_ok_and(|p| p.trim() != "-1" && p.trim() != "[]")
                },
                "the AF_XDP ports",
            )?;
        }
        let flows = ovs.dir.join("flows.txt");
        std::fs::write(&flows, sg::openflow(&ports, &sg::ingress(rules), 1))
            .map_err(|e| BenchError::Config(format!("{}: {e}", flows.display())))?;
        ovs.ofctl(&["del-flows", &br])?;
        ovs.ofctl(&["add-flows", &br, &flows.to_string_lossy()])?;
        Ok(ovs)
    }

    /// Starts Open vSwitch built with DPDK (`openvswitch-switch-dpdk`) with a netdev bridge
    /// of one `dpdkvhostuserclient` port per socket (the frontends listen there), its PMD on
    /// `core` and DPDK's memory from the hugetlbfs at `huge`. `flows` is an `ovs-ofctl
    /// add-flows` file's text.
    pub fn start_dpdk(
        dir: &Path,
        bridge: String,
        sockets: &[PathBuf],
        (core, huge): (usize, &Path),
        flows: &str,
    ) -> Result<Ovs, BenchError> {
        if !Path::new(VSWITCHD_DPDK).exists() {
            return Err(BenchError::Config(format!(
                "{VSWITCHD_DPDK} is missing (openvswitch-switch-dpdk)"
            )));
        }
        let prefix = format!("--file-prefix={bridge} --no-pci");
        let ovs = Ovs::launch(
            dir,
            bridge,
            None,
            VSWITCHD_DPDK,
            &[
                "other_config:dpdk-init=true".into(),
                format!("other_config:dpdk-hugepage-dir={}", huge.display()),
                "other_config:dpdk-socket-mem=256".into(),
                format!("other_config:dpdk-extra=\"{prefix}\""),
                format!("other_config:pmd-cpu-mask={:#x}", 1u64 << core),
            ],
        )?;
        for (n, socket) in sockets.iter().enumerate() {
            let port = format!("vhu{n}");
            ovs.vsctl(&[
                "add-port",
                &ovs.bridge,
                &port,
                "--",
                "set",
                "interface",
                &port,
                "type=dpdkvhostuserclient",
                &format!("options:vhost-server-path={}", socket.display()),
                &format!("ofport_request={}", n + 1),
            ])?;
        }
        let file = ovs.dir.join("flows.txt");
        std::fs::write(&file, flows)
            .map_err(|e| BenchError::Config(format!("{}: {e}", file.display())))?;
        ovs.ofctl(&["del-flows", &ovs.bridge])?;
        ovs.ofctl(&["add-flows", &ovs.bridge, &file.to_string_lossy()])?;
        Ok(ovs)
    }

    /// Starts a hypervisor's Open vSwitch inside `netns`, as OVS's userspace tunnelling wants
    /// it: the underlay interface `underlay` becomes a port of the netdev bridge
    /// [`PHYSICAL_BRIDGE`], whose internal port takes over the tunnel address `addr`
    /// (`IP/LEN`) from it, and VMs and tunnels go on [`INTEGRATION_BRIDGE`]
    /// ([`Ovs::add_port`], [`Ovs::add_vxlan_port`]). Files and logs are kept in `dir`. With
    /// `core`, its PMD thread and every other thread of the daemon run on that core only (a
    /// benchmark's switch core).
    pub fn start_vtep(
        netns: &str,
        dir: &Path,
        underlay: &str,
        addr: &str,
        core: Option<usize>,
    ) -> Result<Ovs, BenchError> {
        let mask = core.map(|c| format!("other_config:pmd-cpu-mask={:#x}", 1u64 << c));
        let mut ovs = Ovs::launch(
            dir,
            INTEGRATION_BRIDGE.into(),
            Some(netns),
            "ovs-vswitchd",
            mask.as_slice(),
        )?;
        if let Some(core) = core {
            for daemon in &ovs.daemons {
                let (core, pid) = (core.to_string(), daemon.id().to_string());
                run("taskset", &["-a", "-p", "-c", &core, &pid])?;
            }
        }
        let phy = PHYSICAL_BRIDGE;
        ovs.vsctl(&[
            "add-br",
            phy,
            "--",
            "set",
            "bridge",
            phy,
            "datapath_type=netdev",
        ])?;
        ovs.vsctl(&["add-port", phy, underlay])?;
        ovs.ip(&["addr", "flush", "dev", underlay])?;
        ovs.ip(&["addr", "add", addr, "dev", phy])?;
        ovs.ip(&["link", "set", phy, "up"])?;
        // ovs-vswitchd learns the address and its route from netlink in its own time: a tunnel
        // added before it has them drops what it should carry.
        let ip = addr.split('/').next().unwrap_or(addr).to_string();
        let route = format!("dev {phy} SRC {ip}");
        ovs.wait_for(
            |o| {
                o.appctl(&["ovs/route/show"])
                    .is_ok_and(|t| t.lines().any(|l| l.trim_end().ends_with(&route)))
            },
            "ovs-vswitchd's route to the underlay",
        )?;
        ovs.tunnel_ip = Some(ip);
        Ok(ovs)
    }

    /// Adds interface `iface` (in the daemons' namespace) to the bridge as a plain port.
    pub fn add_port(&self, iface: &str) -> Result<(), BenchError> {
        self.vsctl(&["add-port", &self.bridge, iface]).map(drop)
    }

    /// Adds the VXLAN port `name` to the bridge: VNI `vni` to and from `remote_ip`, as
    /// Neutron's OVS agent adds one port per remote host.
    pub fn add_vxlan_port(&self, name: &str, remote_ip: &str, vni: u32) -> Result<(), BenchError> {
        self.vsctl(&[
            "add-port",
            &self.bridge,
            name,
            "--",
            "set",
            "interface",
            name,
            "type=vxlan",
            &format!("options:remote_ip={remote_ip}"),
            &format!("options:key={vni}"),
        ])?;
        // VXLAN is received once ovs-vswitchd listens on the endpoint's UDP port.
        let Some(ip) = &self.tunnel_ip else {
            return Ok(());
        };
        let listening = format!("dst={ip},proto=17");
        self.wait_for(
            |o| {
                o.appctl(&["tnl/ports/show", "-v"])
                    .is_ok_and(|t| t.contains(&listening))
            },
            "ovs-vswitchd's VXLAN port",
        )
    }

    /// Starts `ovsdb-server` and `vswitchd` (the program) on files in `dir`, inside `netns` if
    /// given, with `config` (`other_config:KEY=VALUE`) set first, and adds the netdev bridge
    /// `bridge`.
    fn launch(
        dir: &Path,
        bridge: String,
        netns: Option<&str>,
        vswitchd: &str,
        config: &[String],
    ) -> Result<Ovs, BenchError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BenchError::Config(format!("{}: {e}", dir.display())))?;
        let mut ovs = Ovs {
            bridge,
            dir: dir.to_path_buf(),
            netns: netns.map(str::to_string),
            tunnel_ip: None,
            daemons: Vec::new(),
        };
        let db = ovs.path("conf.db");
        run("ovsdb-tool", &["create", &db, SCHEMA])?;
        let remote = format!("--remote=punix:{}", ovs.path("db.sock"));
        ovs.spawn("ovsdb-server", &[&db, &remote], "ovsdb")?;
        ovs.wait_for(|o| Path::new(&o.path("db.sock")).exists(), "ovsdb-server")?;
        ovs.vsctl(&["--no-wait", "init"])?;
        for c in config {
            ovs.vsctl(&["--no-wait", "set", "Open_vSwitch", ".", c])?;
        }
        let db_sock = format!("unix:{}", ovs.path("db.sock"));
        ovs.spawn(vswitchd, &[&db_sock], "vswitchd")?;
        ovs.wait_for(|o| o.appctl(&["version"]).is_ok(), "ovs-vswitchd")?;
        let br = ovs.bridge.clone();
        ovs.vsctl(&[
            "add-br",
            &br,
            "--",
            "set",
            "bridge",
            &br,
            "datapath_type=netdev",
        ])?;
        Ok(ovs)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Runs `ip args` in the daemons' namespace.
    fn ip(&self, args: &[&str]) -> Result<(), BenchError> {
        match &self.netns {
            Some(ns) => run("ip", &[&["-n", ns.as_str()][..], args].concat()),
            None => run("ip", args),
        }
        .map(drop)
    }

    /// Environment that keeps every OVS tool on this instance's files.
    fn env(&self, c: &mut Command) {
        for var in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"] {
            c.env(var, &self.dir);
        }
    }

    /// Starts daemon `program` of this instance, in its namespace.
    fn spawn(&mut self, program: &str, args: &[&str], name: &str) -> Result<(), BenchError> {
        // `ip netns exec` execs the program in place, so the child is the daemon itself.
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        self.env(&mut c);
        c.args(args)
            .arg(format!("--unixctl={}", self.path(&format!("{name}.ctl"))))
            .arg(format!("--pidfile={}", self.path(&format!("{name}.pid"))))
            .arg(format!("--log-file={}", self.path(&format!("{name}.log"))))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c
            .spawn()
            .map_err(|e| BenchError::Config(format!("{program}: {e}")))?;
        self.daemons.push(child);
        Ok(())
    }

    fn wait_for(&self, ok: impl Fn(&Ovs) -> bool, what: &str) -> Result<(), BenchError> {
        let deadline = Instant::now() + PATIENCE;
        while !ok(self) {
            if Instant::now() > deadline {
                return Err(BenchError::Timeout(format!(
                    "{what} did not come up; see {}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn tool(&self, program: &str, args: &[&str]) -> Result<String, BenchError> {
        let mut c = Command::new(program);
        self.env(&mut c);
        let out = c
            .args(args)
            .output()
            .map_err(|e| BenchError::Config(format!("{program}: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(BenchError::Command {
                command: format!("{program} {}", args.join(" ")),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn vsctl(&self, args: &[&str]) -> Result<String, BenchError> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut full = vec![db.as_str(), "--timeout=10"];
        full.extend_from_slice(args);
        self.tool("ovs-vsctl", &full)
    }

    fn ofctl(&self, args: &[&str]) -> Result<String, BenchError> {
        self.tool("ovs-ofctl", args)
    }

    fn appctl(&self, args: &[&str]) -> Result<String, BenchError> {
        let target = self.path("vswitchd.ctl");
        let mut full = vec!["-t", target.as_str()];
        full.extend_from_slice(args);
        self.tool("ovs-appctl", &full)
    }
}

impl Switch for Ovs {
    fn clock(&self) -> Result<Option<SwitchClock>, BenchError> {
        let text = self.appctl(&["dpif-netdev/pmd-stats-show"])?;
        let cycles = |what: &str| -> u64 {
            text.split("pmd thread")
                .skip(1)
                .filter_map(|pmd| {
                    let line = pmd.lines().find(|l| l.trim_start().starts_with(what))?;
                    line.split(':')
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum()
        };
        let (idle, busy) = (cycles("idle cycles"), cycles("processing cycles"));
        Ok(Some(SwitchClock::Cycles {
            busy,
            total: idle + busy,
        }))
    }

    fn connections(&self) -> Result<Option<u64>, BenchError> {
        Ok(self.appctl(&["dpctl/ct-get-nconns"])?.trim().parse().ok())
    }

    fn flush(&self) -> Result<(), BenchError> {
        self.appctl(&["dpctl/flush-conntrack"]).map(drop)
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        // Deleting the bridge closes the AF_XDP sockets and detaches their programs.
        let _ = self.vsctl(&["--if-exists", "del-br", &self.bridge.clone()]);
        let _ = self.appctl(&["exit"]);
        let ctl = self.path("ovsdb.ctl");
        let _ = self.tool("ovs-appctl", &["-t", &ctl, "exit"]);
        for mut d in self.daemons.drain(..) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.ip(&["link", "del", DATAPATH_TAP]);
    }
}
