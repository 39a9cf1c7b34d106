//! Networks across hosts: each "host" is a network namespace with its own underlay veth on a
//! shared wire (a Linux bridge in a namespace of its own), and either its own brinkd or a Linux
//! `vxlan` device with a bridge. VMs are namespaces on veth pairs whose host end is moved into
//! their host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use brink_bench::daemon::Daemon;
use common::{payload, ping, tcp_transfer, Topology, Vm};
use serde_json::Value;

/// Runs `ip` with `args`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `program args` inside `netns`; returns stdout, panicking on failure.
fn exec(netns: &str, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{netns}: {program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The underlay's MTU; VXLAN networks get 50 bytes less.
const UNDERLAY_MTU: &str = "1500";
const INNER_MTU: &str = "1450";

/// Namespaces of one test: hosts on a wire. Deleted on drop, after the daemons (declared first
/// in [`Site`]) have stopped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A multi-host test: VMs, brinkd per brink host, host namespaces.
struct Site {
    /// Brink hosts' daemons, by host index.
    daemons: Vec<Option<Daemon>>,
    topo: Topology,
    spaces: Namespaces,
    wire: String,
}

impl Site {
    fn new(tag: &str) -> Site {
        let topo = Topology::new(tag);
        let wire = format!("{}-w", topo.prefix());
        let spaces = Namespaces(vec![wire.clone()]);
        ip(&["netns", "add", &wire]);
        exec(&wire, "ip", &["link", "add", "br0", "type", "bridge"]);
        exec(&wire, "ip", &["link", "set", "br0", "up"]);
        Site {
            daemons: vec![],
            topo,
            spaces,
            wire,
        }
    }

    /// The namespace of host `h`.
    fn host(&self, h: usize) -> String {
        format!("{}-h{h}", self.topo.prefix())
    }

    /// Tunnel IP of host `h`.
    fn tunnel_ip(h: usize) -> String {
        format!("192.0.2.{}", h + 1)
    }

    /// Adds host `h` with underlay `ul` (its tunnel IP on it) plugged into the wire.
    fn add_host(&mut self, h: usize) -> String {
        let ns = self.host(h);
        self.spaces.0.push(ns.clone());
        ip(&["netns", "add", &ns]);
        let port = format!("p{h}");
        ip(&[
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
        ]);
        exec(
            &self.wire,
            "ip",
            &["link", "set", &port, "master", "br0", "up"],
        );
        let addr = format!("{}/24", Site::tunnel_ip(h));
        exec(&ns, "ip", &["addr", "add", &addr, "dev", "ul"]);
        exec(&ns, "ip", &["link", "set", "ul", "up"]);
        exec(&ns, "ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Adds host `h` running brinkd with its tunnel endpoint set.
    fn add_brink_host(&mut self, h: usize) {
        let ns = self.add_host(h);
        let dir = self.topo.scratch().join(format!("h{h}"));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Daemon::start_in(Some(&ns), &dir, &["--idle-sleep"]).unwrap();
        let local = Site::tunnel_ip(h);
        d.ctl_ok(&["tunnel", "set", "--local-ip", &local, "--dev", "ul"])
            .unwrap();
        if self.daemons.len() <= h {
            self.daemons.resize_with(h + 1, || None);
        }
        self.daemons[h] = Some(d);
    }

    fn d(&self, h: usize) -> &Daemon {
        self.daemons[h].as_ref().unwrap()
    }

    /// VM `n` with `ip`, its veth's host end moved into host `h`, MTU `INNER_MTU`.
    fn add_vm(&mut self, h: usize, n: u8, addr: &str) -> Vm {
        let vm = self.topo.add_vm(n, addr).unwrap();
        let ns = self.host(h);
        ip(&["link", "set", &vm.host_if, "netns", &ns]);
        exec(&ns, "ip", &["link", "set", &vm.host_if, "up"]);
        vm.run("ip", &["link", "set", "eth0", "mtu", INNER_MTU])
            .unwrap();
        vm
    }

    /// VM `n` on brink host `h` in `network`, as port `vmN`.
    fn add_brink_vm(&mut self, h: usize, n: u8, addr: &str, network: &str) -> Vm {
        let vm = self.add_vm(h, n, addr);
        let name = format!("vm{n}");
        self.d(h)
            .add_vm_port(
                &name,
                &vm,
                network,
                &["--ip", addr, "--port-security", "off"],
            )
            .unwrap();
        vm
    }

    /// Host `h` as Linux does it: a `vxlan` device for `vni` (no learning) in a bridge.
    fn add_linux_host(&mut self, h: usize, vni: u32) -> String {
        let ns = self.add_host(h);
        let (vni, local) = (vni.to_string(), Site::tunnel_ip(h));
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
        exec(&ns, "ip", &vx);
        exec(&ns, "ip", &["link", "add", "br0", "type", "bridge"]);
        exec(&ns, "ip", &["link", "set", "vx", "master", "br0", "up"]);
        exec(&ns, "ip", &["link", "set", "br0", "up"]);
        ns
    }

    /// A VM on Linux host `h`, in its bridge.
    fn add_linux_vm(&mut self, h: usize, n: u8, addr: &str) -> Vm {
        let vm = self.add_vm(h, n, addr);
        let ns = self.host(h);
        exec(&ns, "ip", &["link", "set", &vm.host_if, "master", "br0"]);
        vm
    }
}

/// `brinkctl --json ...` on `d`, parsed.
fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&d.ctl_ok(&full).unwrap()).unwrap()
}

/// Packets host `d` received from tunnel endpoint `ip`, as `tunnel show` counts them.
fn rx_from(d: &Daemon, ip: &str) -> u64 {
    let t = json(d, &["tunnel", "show"]);
    let eps = t["endpoints"].as_array().unwrap();
    let ep = eps.iter().find(|e| e["ip"] == ip);
    ep.map_or(0, |e| e["rx_packets"].as_u64().unwrap())
}

/// Frames a Linux host's `vx` device decapsulated.
fn vx_rx(ns: &str) -> u64 {
    let text = exec(ns, "cat", &["/sys/class/net/vx/statistics/rx_packets"]);
    text.trim().parse().unwrap()
}

#[test]
fn brink_to_brink_carries_ping_and_tcp_and_keeps_vnis_apart() {
    let mut s = Site::new("Tbb");
    s.add_brink_host(0);
    s.add_brink_host(1);
    // The default MTU does not fit the 1500-byte underlay with VXLAN's 50 bytes: refused.
    let err = s
        .d(0)
        .ctl_ok(&["network", "add", "blue", "--vxlan", "1001"]);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("--mtu 1450"), "{err}");
    for h in 0..2 {
        for (net, vni) in [("blue", "1001"), ("red", "1002")] {
            let add = ["network", "add", net, "--vxlan", vni, "--mtu", INNER_MTU];
            s.d(h).ctl_ok(&add).unwrap();
        }
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue");
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue");
    let a2 = s.add_brink_vm(0, 3, "10.0.0.3", "red");
    let b2 = s.add_brink_vm(1, 4, "10.0.0.4", "red");
    // What Neutron's l2pop sends each agent: the flood lists and the remote VMs.
    for (h, other) in [(0, 1), (1, 0)] {
        let peer = Site::tunnel_ip(other);
        for net in ["blue", "red"] {
            s.d(h)
                .ctl_ok(&["network", "peer", "add", net, &peer])
                .unwrap();
        }
    }
    let remote = |h: usize, net: &str, vm: &Vm, on: usize| {
        let at = Site::tunnel_ip(on);
        let add = ["fdb", "add", net, &vm.mac, "--remote", &at, "--ip", &vm.ip];
        s.d(h).ctl_ok(&add).unwrap();
    };
    remote(0, "blue", &b1, 1);
    remote(1, "blue", &a1, 0);
    remote(0, "red", &b2, 1);
    remote(1, "red", &a2, 0);

    assert!(ping(&a1, &b1, 3), "blue: host 0 -> host 1");
    assert!(ping(&b2, &a2, 3), "red: host 1 -> host 0");
    let data = payload(16 << 20);
    let got = tcp_transfer(&s.topo, &a1, &b1, &data);
    assert!(
        got == data,
        "16 MB across the tunnel: {} bytes arrived",
        got.len()
    );
    // Isolation: red's VM has blue's subnet but never reaches blue's VMs, here or there.
    assert!(!ping(&a2, &b1, 2), "red reached blue across the tunnel");
    assert!(!ping(&a2, &a1, 1), "red reached blue on the same host");

    // The remote entry is static, with its endpoint and IP, and learning never moves it.
    let fdb = json(s.d(0), &["fdb", "show", "--network", "blue"]);
    let entry = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == b1.mac.to_lowercase())
        .cloned()
        .unwrap();
    assert_eq!(entry["port"], "blue.uplink");
    assert_eq!(entry["remote"], "192.0.2.2");
    assert_eq!(entry["ip"], "10.0.0.2");
    assert!(entry["age_secs"].is_null(), "{entry}");
    // Per-endpoint counters saw the traffic both ways.
    let t = json(s.d(0), &["tunnel", "show"]);
    let ep = &t["endpoints"][0];
    assert_eq!(ep["ip"], "192.0.2.2");
    assert!(ep["tx_packets"].as_u64().unwrap() > 1000, "{t}");
    assert!(ep["rx_packets"].as_u64().unwrap() > 100, "{t}");
    assert_eq!(ep["macs"], 2);

    // Restart host 0's brinkd: the tunnel, networks, flood lists and remote entries come back.
    let dir = s.d(0).dir().to_path_buf();
    s.daemons[0] = None;
    let d = Daemon::start_in(Some(&s.host(0)), &dir, &["--idle-sleep"]).unwrap();
    s.daemons[0] = Some(d);
    assert!(ping(&a1, &b1, 3), "blue after host 0's brinkd restarted");
    let t = json(s.d(0), &["tunnel", "show"]);
    assert_eq!(t["local"]["local_ip"], "192.0.2.1", "{t}");
    assert_eq!(
        t["endpoints"][0]["flood"],
        serde_json::json!(["blue", "red"])
    );
}

#[test]
fn brink_to_linux_vxlan_and_bridge_both_ways_and_unknown_vnis_are_dropped() {
    let mut s = Site::new("Tbl");
    s.add_brink_host(0);
    let linux = s.add_linux_host(1, 1001);
    let add = [
        "network", "add", "blue", "--vxlan", "1001", "--mtu", INNER_MTU,
    ];
    s.d(0).ctl_ok(&add).unwrap();
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue");
    let b1 = s.add_linux_vm(1, 2, "10.0.0.2");
    // brink's side from l2pop; Linux's side by hand, as the linuxbridge agent would.
    s.d(0)
        .ctl_ok(&["network", "peer", "add", "blue", "192.0.2.2"])
        .unwrap();
    let at = ["--remote", "192.0.2.2", "--ip", &b1.ip];
    s.d(0)
        .ctl_ok(&[&["fdb", "add", "blue", &b1.mac][..], &at].concat())
        .unwrap();
    let zero = "00:00:00:00:00:00";
    let flood = ["fdb", "append", zero, "dev", "vx", "dst", "192.0.2.1"];
    exec(&linux, "bridge", &flood);
    let mac = a1.mac.as_str();
    exec(
        &linux,
        "bridge",
        &["fdb", "add", mac, "dev", "vx", "dst", "192.0.2.1"],
    );

    assert!(ping(&a1, &b1, 3), "brink -> Linux");
    assert!(ping(&b1, &a1, 3), "Linux -> brink");
    let data = payload(4 << 20);
    assert!(
        tcp_transfer(&s.topo, &a1, &b1, &data) == data,
        "TCP brink -> Linux"
    );
    assert!(
        tcp_transfer(&s.topo, &b1, &a1, &data) == data,
        "TCP Linux -> brink"
    );

    // A VNI no brink network has: dropped before the kernel's VXLAN socket, and counted.
    let vx = [
        "link",
        "add",
        "vx9",
        "type",
        "vxlan",
        "id",
        "1009",
        "local",
        "192.0.2.2",
        "dev",
        "ul",
        "dstport",
        "4789",
        "remote",
        "192.0.2.1",
    ];
    exec(&linux, "ip", &vx);
    exec(&linux, "ip", &["addr", "add", "10.9.0.2/24", "dev", "vx9"]);
    exec(&linux, "ip", &["link", "set", "vx9", "up"]);
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &linux, "ping", "-c", "3", "-i", "0.2", "-W", "1",
        ])
        .arg("10.9.0.1")
        .output();
    let t = json(s.d(0), &["tunnel", "show"]);
    assert!(t["unknown_vni"].as_u64().unwrap() >= 3, "{t}");
}

#[test]
fn flooding_reaches_the_flood_list_only_and_arp_works_through_it() {
    let mut s = Site::new("Tfl");
    s.add_brink_host(0);
    s.add_brink_host(1);
    let third = s.add_linux_host(2, 1001);
    for h in 0..2 {
        let add = [
            "network", "add", "blue", "--vxlan", "1001", "--mtu", INNER_MTU,
        ];
        s.d(h).ctl_ok(&add).unwrap();
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue");
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue");
    // Flood lists only, no remote MACs: ARP is flooded, the kernel learns the rest.
    s.d(0)
        .ctl_ok(&["network", "peer", "add", "blue", "192.0.2.2"])
        .unwrap();
    s.d(1)
        .ctl_ok(&["network", "peer", "add", "blue", "192.0.2.1"])
        .unwrap();
    assert!(ping(&a1, &b1, 3), "ARP through the flood list");

    // Unknown unicast: a MAC no one has. It goes to host 1 (in the flood list), not host 2.
    let ghost = [
        "neigh",
        "replace",
        "10.0.0.99",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
    ];
    a1.run("ip", &ghost).unwrap();
    let (b_before, c_before) = (rx_from(s.d(1), "192.0.2.1"), vx_rx(&third));
    let ghost_ping = || {
        let args = ["-c", "10", "-i", "0.05", "-W", "1", "10.0.0.99"];
        let _ = a1.exec("ping", &args);
    };
    ghost_ping();
    let b_got = rx_from(s.d(1), "192.0.2.1") - b_before;
    assert!(
        b_got >= 10,
        "host 1 got {b_got} of 10 unknown-unicast frames"
    );
    assert_eq!(
        vx_rx(&third) - c_before,
        0,
        "host 2 is not in the flood list"
    );
    // With host 2 in the flood list, it gets them too.
    s.d(0)
        .ctl_ok(&["network", "peer", "add", "blue", "192.0.2.3"])
        .unwrap();
    ghost_ping();
    assert!(vx_rx(&third) - c_before >= 10, "host 2 after peer add");
    s.d(0)
        .ctl_ok(&["network", "peer", "del", "blue", "192.0.2.3"])
        .unwrap();
    let c_after = vx_rx(&third);
    ghost_ping();
    assert_eq!(vx_rx(&third) - c_after, 0, "host 2 after peer del");
}

#[test]
fn the_arp_responder_answers_for_remote_vms_without_flooding() {
    let mut s = Site::new("Tar");
    s.add_brink_host(0);
    s.add_brink_host(1);
    for h in 0..2 {
        let add = [
            "network", "add", "blue", "--vxlan", "1001", "--mtu", INNER_MTU,
        ];
        s.d(h)
            .ctl_ok(&[&add[..], &["--arp-responder"]].concat())
            .unwrap();
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue");
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue");
    // No flood list at all: nothing broadcast crosses the tunnel.
    assert!(!ping(&a1, &b1, 1), "without l2pop entries nothing is known");
    for (h, vm, on) in [(0, &b1, 1), (1, &a1, 0)] {
        let at = Site::tunnel_ip(on);
        let add = [
            "fdb", "add", "blue", &vm.mac, "--remote", &at, "--ip", &vm.ip,
        ];
        s.d(h).ctl_ok(&add).unwrap();
    }
    let _ = a1.exec("ip", &["neigh", "flush", "dev", "eth0"]);
    assert!(
        ping(&a1, &b1, 3),
        "ARP answered on host 0, ICMP to the remote entry"
    );
    let neigh = a1.exec("ip", &["neigh", "show", &b1.ip]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(neigh.contains(&b1.mac.to_lowercase()), "{neigh}");
}

#[test]
fn a_flat_network_is_the_uplink_untagged() {
    let mut s = Site::new("Tft");
    s.add_brink_host(0);
    // The provider network outside: a namespace at the other end of the uplink.
    let outside = format!("{}-o", s.topo.prefix());
    s.spaces.0.push(outside.clone());
    ip(&["netns", "add", &outside]);
    let host = s.host(0);
    ip(&[
        "link", "add", "up0", "netns", &host, "type", "veth", "peer", "name", "eth0", "netns",
        &outside,
    ]);
    exec(&host, "ip", &["link", "set", "up0", "up"]);
    exec(
        &outside,
        "ip",
        &["addr", "add", "10.1.0.100/24", "dev", "eth0"],
    );
    exec(&outside, "ip", &["link", "set", "eth0", "up"]);
    let used = s
        .d(0)
        .ctl_ok(&["network", "add", "x", "--flat", "--uplink", "ul"]);
    assert!(
        used.unwrap_err().to_string().contains("tunnel endpoint"),
        "the underlay is taken"
    );
    s.d(0)
        .ctl_ok(&["network", "add", "ext", "--flat", "--uplink", "up0"])
        .unwrap();
    let a1 = s.add_brink_vm(0, 1, "10.1.0.1", "ext");
    let out = exec(
        &a1.netns,
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "1", "10.1.0.100"],
    );
    assert!(out.contains("3 received"), "{out}");
    let ports = json(s.d(0), &["port", "list"]);
    let uplink = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ext.uplink");
    assert_eq!(uplink.unwrap()["iface"], "up0");
}
