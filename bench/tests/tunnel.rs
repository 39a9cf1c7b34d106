//! Networks across hosts (`brink_bench::hosts`): each "host" is a network namespace with its
//! own underlay veth on a shared wire, and its own brinkd, a Linux `vxlan` device in a bridge
//! or Open vSwitch's userspace datapath.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use brink_bench::daemon::Daemon;
use brink_bench::hosts::{self, Hosts, Underlay};
use brink_bench::topo::Vm;
use common::{payload, ping, tcp_transfer};
use serde_json::Value;

fn exec(netns: &str, program: &str, args: &[&str]) -> String {
    let out = hosts::exec(netns, program, args).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    brink_bench::run("ip", args).unwrap();
}

/// Hosts `brink` running brinkd and `linux` with a Linux vxlan device for VNI 1001.
fn site(tag: &str, brink: &[usize], linux: &[usize]) -> Hosts {
    site_on(tag, Underlay::Ipv4, brink, linux)
}

/// [`site`] with `underlay`'s tunnel IPs.
fn site_on(tag: &str, underlay: Underlay, brink: &[usize], linux: &[usize]) -> Hosts {
    let mut s = Hosts::with_underlay(tag, underlay).unwrap();
    for &h in brink {
        s.add_brink_host(h, &["--idle-sleep"]).unwrap();
    }
    for &h in linux {
        s.add_linux_host(h, 1001).unwrap();
    }
    s
}

fn vxlan_net(s: &Hosts, h: usize, name: &str, vni: &str, extra: &[&str]) {
    let add = [
        "network",
        "add",
        name,
        "--vxlan",
        vni,
        "--mtu",
        s.inner_mtu(),
    ];
    s.daemon(h)
        .unwrap()
        .ctl_ok(&[&add[..], extra].concat())
        .unwrap();
}

/// `brinkctl --json ...` on `d`, parsed.
fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&d.ctl_ok(&full).unwrap()).unwrap()
}

/// Packets host `d` received from tunnel endpoint `ip`, as `tunnel show` counts them.
fn rx_from(d: &Daemon, ip: &str) -> u64 {
    endpoint_counter(d, ip, "rx_packets")
}

/// Counter `name` of tunnel endpoint `ip` in host `d`'s `tunnel show`.
fn endpoint_counter(d: &Daemon, ip: &str, name: &str) -> u64 {
    let t = json(d, &["tunnel", "show"]);
    let eps = t["endpoints"].as_array().unwrap();
    let ep = eps.iter().find(|e| e["ip"] == ip);
    ep.map_or(0, |e| e[name].as_u64().unwrap())
}

/// Frames a Linux host's `vx` device decapsulated.
fn vx_rx(ns: &str) -> u64 {
    let text = exec(ns, "cat", &["/sys/class/net/vx/statistics/rx_packets"]);
    text.trim().parse().unwrap()
}

/// Ping, then 4 MiB of TCP, each way between brink's VM `a` and VM `b` on the `peer` host.
fn ping_and_tcp_both_ways(s: &Hosts, a: &Vm, b: &Vm, peer: &str) {
    // The first ping waits for ARP through the tunnel and the far switch's learning, which
    // take longer while the other tunnel tests load both cores: up to 2 s.
    assert!(ping(a, b, 10), "brink -> {peer}");
    assert!(ping(b, a, 3), "{peer} -> brink");
    let data = payload(4 << 20);
    for (from, to, way) in [(a, b, "brink ->"), (b, a, "<- brink")] {
        let got = tcp_transfer(&s.topo, from, to, &data);
        assert!(got == data, "TCP {way} {peer}: {} bytes", got.len());
    }
}

#[test]
fn brink_to_brink_carries_ping_and_tcp_and_keeps_vnis_apart() {
    let mut s = site("Tbb", &[0, 1], &[]);
    // The default MTU does not fit the 1500-byte underlay with VXLAN's 50 bytes: refused.
    let d0 = s.daemon(0).unwrap();
    let err = d0.ctl_ok(&["network", "add", "blue", "--vxlan", "1001"]);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("--mtu 1450"), "{err}");
    for h in 0..2 {
        vxlan_net(&s, h, "blue", "1001", &[]);
        vxlan_net(&s, h, "red", "1002", &[]);
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue").unwrap();
    let a2 = s.add_brink_vm(0, 3, "10.0.0.3", "red").unwrap();
    let b2 = s.add_brink_vm(1, 4, "10.0.0.4", "red").unwrap();
    // What Neutron's l2pop sends each agent: the flood lists and the remote VMs.
    s.brink_remote(0, "blue", 1, &b1).unwrap();
    s.brink_remote(1, "blue", 0, &a1).unwrap();
    s.brink_remote(0, "red", 1, &b2).unwrap();
    s.brink_remote(1, "red", 0, &a2).unwrap();

    assert!(ping(&a1, &b1, 3), "blue: host 0 -> host 1");
    assert!(ping(&b2, &a2, 3), "red: host 1 -> host 0");
    let data = payload(16 << 20);
    let got = tcp_transfer(&s.topo, &a1, &b1, &data);
    assert!(got == data, "16 MB across the tunnel: {} bytes", got.len());
    // Isolation: red's VM has blue's subnet but never reaches blue's VMs, here or there.
    assert!(!ping(&a2, &b1, 2), "red reached blue across the tunnel");
    assert!(!ping(&a2, &a1, 1), "red reached blue on the same host");

    // The remote entry is static, with its endpoint and IP.
    let d0 = s.daemon(0).unwrap();
    let fdb = json(d0, &["fdb", "show", "--network", "blue"]);
    let entries = fdb.as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["mac"] == b1.mac.as_str())
        .unwrap();
    assert_eq!(entry["port"], "blue.uplink");
    assert_eq!(entry["remote"], "192.0.2.2");
    assert_eq!(entry["ips"], serde_json::json!(["10.0.0.2"]));
    assert!(entry["age_secs"].is_null(), "{entry}");
    // Per-endpoint counters saw the traffic both ways.
    let t = json(d0, &["tunnel", "show"]);
    let ep = &t["endpoints"][0];
    assert_eq!(ep["ip"], "192.0.2.2");
    assert!(ep["tx_packets"].as_u64().unwrap() > 1000, "{t}");
    assert!(ep["rx_packets"].as_u64().unwrap() > 100, "{t}");
    assert_eq!(ep["macs"], 2);

    // Restart host 0's brinkd: the tunnel, networks, flood lists and remote entries come back.
    s.restart(0, &["--idle-sleep"]).unwrap();
    // The restarted brinkd reattaches its ports while the first pings are out: up to 3 s.
    assert!(ping(&a1, &b1, 15), "blue after host 0's brinkd restarted");
    let t = json(s.daemon(0).unwrap(), &["tunnel", "show"]);
    assert_eq!(t["local"]["local_ip"], "192.0.2.1", "{t}");
    let flood = &t["endpoints"][0]["flood"];
    assert_eq!(*flood, serde_json::json!(["blue", "red"]));
}

#[test]
fn brink_to_brink_over_an_ipv6_underlay() {
    let mut s = site_on("Tb6", Underlay::Ipv6, &[0, 1], &[]);
    // IPv6's 40-byte header: VXLAN takes 70 bytes, so 1450 no longer fits the 1500-byte
    // underlay.
    let d0 = s.daemon(0).unwrap();
    let err = d0.ctl_ok(&["network", "add", "blue", "--vxlan", "1001", "--mtu", "1450"]);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("--mtu 1430"), "{err}");
    for h in 0..2 {
        vxlan_net(&s, h, "blue", "1001", &[]);
    }
    let d0 = s.daemon(0).unwrap();
    let other = d0.ctl_ok(&["network", "peer", "add", "blue", "192.0.2.2"]);
    let other = other.unwrap_err().to_string();
    assert!(other.contains("IP family"), "an IPv4 endpoint: {other}");
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue").unwrap();
    s.brink_remote(0, "blue", 1, &b1).unwrap();
    s.brink_remote(1, "blue", 0, &a1).unwrap();
    ping_and_tcp_both_ways(&s, &a1, &b1, "brink over IPv6");
    let d0 = s.daemon(0).unwrap();
    let t = json(d0, &["tunnel", "show"]);
    assert_eq!(t["local"]["local_ip"], "2001:db8::1", "{t}");
    let ep = &t["endpoints"][0];
    assert_eq!(ep["ip"], "2001:db8::2", "{t}");
    assert!(ep["tx_packets"].as_u64().unwrap() > 1000, "{t}");
    assert!(rx_from(d0, "2001:db8::2") > 1000, "{t}");
}

/// brink host 0 and Linux host 1 on `underlay`, VM 1 on each in VNI 1001, each told where
/// the other VM is; ping and TCP pass both ways, counted on both ends of the tunnel.
fn brink_and_linux(tag: &str, underlay: Underlay) -> (Hosts, Vm, Vm) {
    let mut s = site_on(tag, underlay, &[0], &[1]);
    vxlan_net(&s, 0, "blue", "1001", &[]);
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_linux_vm(1, 2, "10.0.0.2").unwrap();
    // brink's side from l2pop; Linux's side by hand, as the linuxbridge agent did.
    s.brink_remote(0, "blue", 1, &b1).unwrap();
    s.linux_remote(1, 0, &a1).unwrap();

    ping_and_tcp_both_ways(&s, &a1, &b1, "Linux");
    // Linux's stream to brink crossed the tunnel (in fewer, larger frames where Linux's GRO
    // merged them), and Linux decapsulated brink's.
    let d0 = s.daemon(0).unwrap();
    let got = endpoint_counter(d0, &s.tunnel_ip(1), "rx_bytes");
    assert!(got > 4 << 20, "{}", json(d0, &["tunnel", "show"]));
    assert!(
        vx_rx(&s.host(1)) > 1000,
        "Linux decapsulated brink's frames"
    );
    (s, a1, b1)
}

#[test]
fn brink_to_linux_over_an_ipv6_underlay() {
    let (s, _, _) = brink_and_linux("Tl6", Underlay::Ipv6);
    let t = json(s.daemon(0).unwrap(), &["tunnel", "show"]);
    assert_eq!(t["endpoints"][0]["ip"], "2001:db8::2", "{t}");
}

#[test]
fn brink_to_linux_vxlan_and_bridge_both_ways_and_unknown_vnis_are_dropped() {
    let (s, a1, b1) = brink_and_linux("Tbl", Underlay::Ipv4);

    // A VNI no brink network has: dropped before the kernel's VXLAN socket, and counted.
    let linux = s.host(1);
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
    let ping9 = [
        "netns", "exec", &linux, "ping", "-c", "3", "-i", "0.2", "-W", "1",
    ];
    let _ = Command::new("ip").args(ping9).arg("10.9.0.1").output();
    let t = json(s.daemon(0).unwrap(), &["tunnel", "show"]);
    assert!(t["unknown_vni"].as_u64().unwrap() >= 1, "{t}");

    // A VM with too large an MTU, and its port's interface too (brink set it to the network's
    // MTU, so the kernel would drop them first): its 1,514-byte frames do not fit the network's
    // 1450, are dropped, and the network's tunnel counters say so.
    a1.run("ip", &["link", "set", "eth0", "mtu", "1500"])
        .unwrap();
    let host_end = ["link", "set", a1.host_if.as_str(), "mtu", "1500"];
    exec(&s.host(0), "ip", &host_end);
    let big = ["-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1472"];
    let _ = a1.exec("ping", &[&big[..], &[b1.ip.as_str()]].concat());
    let t = json(s.daemon(0).unwrap(), &["tunnel", "show"]);
    let dropped = &t["networks"][0]["drops"]["mtu_exceeded"];
    assert!(dropped.as_u64().unwrap_or(0) >= 2, "{t}");
}

/// brink host 0 and Open vSwitch host 1 on `underlay`: ping and TCP both ways.
fn brink_and_open_vswitch(tag: &str, underlay: Underlay) {
    let mut s = site_on(tag, underlay, &[0], &[]);
    s.add_ovs_host(1, None).unwrap();
    vxlan_net(&s, 0, "blue", "1001", &[]);
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_ovs_vm(1, 2, "10.0.0.2").unwrap();
    // brink's side from l2pop; OVS's side as Neutron's OVS agent sets it: a VXLAN port per
    // remote host, NORMAL flooding to it and learning from it.
    s.brink_remote(0, "blue", 1, &b1).unwrap();
    s.ovs_remote(1, 0, 1001).unwrap();

    ping_and_tcp_both_ways(&s, &a1, &b1, "OVS");
    // The OVS VM's only way out is br-int's VXLAN port: brink counted what it sent.
    let d0 = s.daemon(0).unwrap();
    assert!(
        rx_from(d0, &s.tunnel_ip(1)) > 1000,
        "{}",
        json(d0, &["tunnel", "show"])
    );
}

#[test]
fn brink_to_open_vswitch_userspace_vxlan_both_ways() {
    brink_and_open_vswitch("Oov", Underlay::Ipv4);
}

#[test]
fn brink_to_open_vswitch_over_an_ipv6_underlay() {
    brink_and_open_vswitch("Oo6", Underlay::Ipv6);
}

#[test]
fn flooding_reaches_the_flood_list_only_and_arp_works_through_it() {
    let mut s = site("Tfl", &[0, 1], &[2]);
    for h in 0..2 {
        vxlan_net(&s, h, "blue", "1001", &[]);
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue").unwrap();
    let (d0, d1) = (s.daemon(0).unwrap(), s.daemon(1).unwrap());
    // Flood lists only, no remote MACs: ARP is flooded, the kernel learns the rest.
    d0.ctl_ok(&["network", "peer", "add", "blue", "192.0.2.2"])
        .unwrap();
    d1.ctl_ok(&["network", "peer", "add", "blue", "192.0.2.1"])
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
    let third = s.host(2);
    let (b_before, c_before) = (rx_from(d1, "192.0.2.1"), vx_rx(&third));
    let ghost_ping = || {
        let args = ["-c", "10", "-i", "0.05", "-W", "1", "10.0.0.99"];
        let _ = a1.exec("ping", &args);
    };
    ghost_ping();
    let b_got = rx_from(d1, "192.0.2.1") - b_before;
    assert!(
        b_got >= 10,
        "host 1 got {b_got} of 10 unknown-unicast frames"
    );
    assert_eq!(
        vx_rx(&third) - c_before,
        0,
        "host 2 is not in the flood list"
    );
    // With host 2 in the flood list, it gets them too; without, again not.
    d0.ctl_ok(&["network", "peer", "add", "blue", "192.0.2.3"])
        .unwrap();
    ghost_ping();
    assert!(vx_rx(&third) - c_before >= 10, "host 2 after peer add");
    d0.ctl_ok(&["network", "peer", "del", "blue", "192.0.2.3"])
        .unwrap();
    let c_after = vx_rx(&third);
    ghost_ping();
    assert_eq!(vx_rx(&third) - c_after, 0, "host 2 after peer del");
}

#[test]
fn the_arp_responder_answers_for_remote_vms_without_flooding() {
    let mut s = site("Tar", &[0, 1], &[]);
    for h in 0..2 {
        vxlan_net(&s, h, "blue", "1001", &["--arp-responder"]);
    }
    let a1 = s.add_brink_vm(0, 1, "10.0.0.1", "blue").unwrap();
    let b1 = s.add_brink_vm(1, 2, "10.0.0.2", "blue").unwrap();
    // No flood list at all: nothing broadcast crosses the tunnel. The ARP requests had nowhere
    // to go, and the network's counters say so.
    assert!(!ping(&a1, &b1, 1), "without l2pop entries nothing is known");
    let t = json(s.daemon(0).unwrap(), &["tunnel", "show"]);
    let nowhere = t["networks"][0]["drops"]["no_endpoint"].as_u64();
    assert!(nowhere.unwrap_or(0) >= 1, "{t}");
    for (h, vm, on) in [(0, &b1, 1), (1, &a1, 0)] {
        let at = s.tunnel_ip(on);
        fdb_add(s.daemon(h).unwrap(), &vm.mac, &at, &vm.ip);
    }
    let _ = a1.exec("ip", &["neigh", "flush", "dev", "eth0"]);
    assert!(
        ping(&a1, &b1, 3),
        "ARP answered on host 0, ICMP to the remote entry"
    );
    let neigh = a1.exec("ip", &["neigh", "show", &b1.ip]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(neigh.contains(&b1.mac), "{neigh}");

    // IPv6: the same VMs get a second address each, and l2population a second pair for each
    // MAC. Neighbour solicitations are answered on their own host, with still no flood list.
    let v6 = |vm: &Vm| format!("fd00::{}", &vm.ip[vm.ip.rfind('.').map_or(0, |i| i + 1)..]);
    for (h, vm, on, peer) in [(0, &b1, 1, &a1), (1, &a1, 0, &b1)] {
        peer.enable_ipv6(&v6(peer)).unwrap();
        let at = s.tunnel_ip(on);
        fdb_add(s.daemon(h).unwrap(), &vm.mac, &at, &v6(vm));
    }
    let answers_before = neighbour_answers(s.daemon(0).unwrap());
    let ping6 = a1.exec("ping", &["-6", "-c", "3", "-i", "0.2", "-W", "1", &v6(&b1)]);
    let ping6 = String::from_utf8_lossy(&ping6.unwrap().stdout).into_owned();
    assert!(
        ping6.contains("3 received"),
        "IPv6 across the tunnel: {ping6}"
    );
    let neigh = a1.exec("ip", &["-6", "neigh", "show", &v6(&b1)]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(neigh.contains(&b1.mac), "{neigh}");
    assert!(
        neighbour_answers(s.daemon(0).unwrap()) > answers_before,
        "host 0's responder answered the solicitation"
    );
    // Both of b1's addresses are in its entry; removing the IPv6 pair keeps the IPv4 one.
    let d0 = s.daemon(0).unwrap();
    let ips = |d: &Daemon| {
        let fdb = json(d, &["fdb", "show", "--network", "blue"]);
        let entries = fdb.as_array().unwrap().clone();
        let entry = entries.into_iter().find(|e| e["mac"] == b1.mac.as_str());
        entry.map(|e| e["ips"].clone())
    };
    assert_eq!(ips(d0), Some(serde_json::json!([b1.ip, v6(&b1)])));
    d0.ctl_ok(&["fdb", "del", "blue", &b1.mac, "--ip", &v6(&b1)])
        .unwrap();
    assert_eq!(ips(d0), Some(serde_json::json!([b1.ip])));
}

/// `fdb add blue MAC --remote AT --ip IP` on `d`: one l2population pair.
fn fdb_add(d: &Daemon, mac: &str, at: &str, ip: &str) {
    d.ctl_ok(&["fdb", "add", "blue", mac, "--remote", at, "--ip", ip])
        .unwrap();
}

/// ARP requests and neighbour solicitations host `d`'s workers answered.
fn neighbour_answers(d: &Daemon) -> u64 {
    let stats = json(d, &["stats"]);
    let workers = stats["workers"].as_array().unwrap();
    workers
        .iter()
        .map(|w| w["neighbour_answers"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_flat_network_is_the_uplink_untagged() {
    let mut s = site("Tft", &[0], &[]);
    // The provider network outside: a namespace at the other end of the uplink.
    let outside = s.add_namespace("o").unwrap();
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
    let d0 = s.daemon(0).unwrap();
    let used = d0.ctl_ok(&["network", "add", "x", "--flat", "--uplink", "ul"]);
    let used = used.unwrap_err().to_string();
    assert!(
        used.contains("tunnel endpoint"),
        "the underlay is taken: {used}"
    );
    d0.ctl_ok(&["network", "add", "ext", "--flat", "--uplink", "up0"])
        .unwrap();
    let a1 = s.add_brink_vm(0, 1, "10.1.0.1", "ext").unwrap();
    let out = exec(
        &a1.netns,
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "1", "10.1.0.100"],
    );
    assert!(out.contains("3 received"), "{out}");
    let ports = json(s.daemon(0).unwrap(), &["port", "list"]);
    let ports = ports.as_array().unwrap();
    let uplink = ports.iter().find(|p| p["name"] == "ext.uplink").unwrap();
    assert_eq!(uplink["iface"], "up0");
}
