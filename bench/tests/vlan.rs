//! VLAN provider networks on a real uplink: two networks tagged 100 and 200 share one veth,
//! whose far end (namespace "outside") sees and sends tagged frames through raw AF_PACKET
//! sockets (`vlan_outside.py`), as the host has no 802.1Q devices. Needs root and python3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use brink_bench::daemon::Daemon;
use brink_bench::hosts::{self, Hosts};
use serde_json::Value;

const OUTSIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vlan_outside.py");

fn exec(netns: &str, program: &str, args: &[&str]) -> String {
    let out = hosts::exec(netns, program, args).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let full = [&["--json"], args].concat();
    serde_json::from_str(&d.ctl_ok(&full).unwrap()).unwrap()
}

/// Frames `netns`'s `eth0` received.
fn rx_packets(netns: &str) -> u64 {
    let text = exec(netns, "cat", &["/sys/class/net/eth0/statistics/rx_packets"]);
    text.trim().parse().unwrap()
}

/// The counters `stats` gives port `name`.
fn port_stats(d: &Daemon, name: &str) -> Value {
    let s = json(d, &["stats"]);
    let ports = s["ports"].as_array().unwrap();
    ports.iter().find(|p| p["name"] == name).unwrap().clone()
}

/// `vlan_outside.py send` in `outside`: `count` UDP datagrams tagged `tag` ("-": untagged).
fn send(outside: &str, tag: &str, count: u32, mac: &str, ip: &str, payload: &str) {
    let n = count.to_string();
    let args = [OUTSIDE, "eth0", "send", tag, &n, mac, ip, "5000", payload];
    let out = hosts::exec(outside, "python3", &args).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last datagram settles before counters are read.
    std::thread::sleep(std::time::Duration::from_millis(200));
}

#[test]
fn vlan_networks_share_an_uplink_tagged_and_apart() {
    let mut s = Hosts::new("Lvl").unwrap();
    s.add_brink_host(0, &["--idle-sleep"]).unwrap();
    let outside = s.add_namespace("o").unwrap();
    let host = s.host(0);
    brink_bench::run(
        "ip",
        &[
            "link", "add", "up0", "netns", &host, "type", "veth", "peer", "name", "eth0", "netns",
            &outside,
        ],
    )
    .unwrap();
    exec(
        &outside,
        "sysctl",
        &["-qw", "net.ipv6.conf.all.disable_ipv6=1"],
    );
    exec(&host, "ip", &["link", "set", "up0", "up"]);
    exec(&outside, "ip", &["link", "set", "eth0", "up"]);
    let d = s.daemon(0).unwrap();
    for (net, tag) in [("n100", "100"), ("n200", "200")] {
        d.ctl_ok(&["network", "add", net, "--vlan", tag, "--uplink", "up0"])
            .unwrap();
    }
    let taken = d.ctl_ok(&["network", "add", "n2", "--vlan", "200", "--uplink", "up0"]);
    let taken = taken.unwrap_err().to_string();
    assert!(
        taken.contains("VLAN 200") && taken.contains("n200"),
        "{taken}"
    );
    let flat = d.ctl_ok(&["network", "add", "f", "--flat", "--uplink", "up0"]);
    let flat = flat.unwrap_err().to_string();
    assert!(flat.contains("already used by network"), "{flat}");
    let mtu = exec(&host, "cat", &["/sys/class/net/up0/mtu"]);
    assert_eq!(
        mtu.trim(),
        "1504",
        "the trunk carries 1500-byte packets and a tag"
    );
    let list = d.ctl_ok(&["network", "list"]).unwrap();
    assert!(list.contains("vlan 100 up0"), "{list}");
    // Both VMs in the same subnet: only the VLAN keeps them apart.
    let a = s.add_brink_vm(0, 1, "10.1.0.1", "n100").unwrap();
    let b = s.add_brink_vm(0, 2, "10.1.0.2", "n200").unwrap();
    let d = s.daemon(0).unwrap();
    // Quiet links: no IPv6 router solicitations of the host's own veth ends in the counts.
    exec(
        &host,
        "sysctl",
        &["-qw", "net.ipv6.conf.all.disable_ipv6=1"],
    );

    // Ping out through each VLAN: the station outside answers with the tag it was asked on.
    let responder = Command::new("ip")
        .args([
            "netns", "exec", &outside, "python3", OUTSIDE, "eth0", "respond", "5",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ping = |vm: &brink_bench::topo::Vm, to: &str, n: &str| {
        let out = vm.exec("ping", &["-c", n, "-i", "0.2", "-W", "1", to]);
        String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
    };
    let pings = [ping(&a, "10.1.0.100", "3"), ping(&b, "10.1.0.100", "3")];
    let apart = ping(&a, &b.ip, "2");
    let seen = responder.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    for out in &pings {
        assert!(
            out.contains("3 received"),
            "through its VLAN: {out}\noutside saw:\n{seen}"
        );
    }
    assert!(apart.contains(" 0 received"), "different VLANs: {apart}");
    let tags_from = |mac: &str| -> Vec<&str> {
        let lines = seen.lines().filter(|l| l.split(' ').nth(1) == Some(mac));
        lines.map(|l| l.split(' ').next().unwrap()).collect()
    };
    let (from_a, from_b) = (tags_from(&a.mac), tags_from(&b.mac));
    assert!(from_a.len() >= 4, "ARP and pings from a: {seen}");
    assert!(
        from_a.iter().all(|t| *t == "100"),
        "a's frames leave tagged 100: {seen}"
    );
    assert!(from_b.len() >= 4, "ARP and pings from b: {seen}");
    assert!(
        from_b.iter().all(|t| *t == "200"),
        "b's frames leave tagged 200: {seen}"
    );

    // Tagged frames from outside: 100 reaches only a, 200 only b; UDP comes in through the tag.
    let listener = Command::new("ip")
        .args(["netns", "exec", &a.netns, "timeout", "3", "socat", "-u"])
        .args(["UDP-RECV:5000", "STDOUT"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (a0, b0) = (rx_packets(&a.netns), rx_packets(&b.netns));
    send(&outside, "100", 5, &a.mac, &a.ip, "to-a-on-100");
    let (a1, b1) = (rx_packets(&a.netns), rx_packets(&b.netns));
    assert_eq!((a1 - a0, b1 - b0), (5, 0), "tagged 100: to a only");
    let got = listener.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&got.stdout);
    assert!(got.starts_with("to-a-on-100"), "a's UDP listener: {got:?}");
    send(
        &outside,
        "200",
        3,
        "ff:ff:ff:ff:ff:ff",
        "10.1.0.255",
        "bcast-200",
    );
    let (a2, b2) = (rx_packets(&a.netns), rx_packets(&b.netns));
    assert_eq!(
        (a2 - a1, b2 - b1),
        (0, 3),
        "tagged 200 broadcast: to b only"
    );

    // No network has VLAN 300, and none is untagged: dropped and counted on the trunk.
    let before = port_stats(d, "up0.trunk")["drops"]["unknown_vlan"]
        .as_u64()
        .unwrap_or(0);
    send(
        &outside,
        "300",
        4,
        "ff:ff:ff:ff:ff:ff",
        "10.1.0.255",
        "nobody",
    );
    send(
        &outside,
        "-",
        2,
        "ff:ff:ff:ff:ff:ff",
        "10.1.0.255",
        "untagged",
    );
    let (a3, b3) = (rx_packets(&a.netns), rx_packets(&b.netns));
    assert_eq!((a3 - a2, b3 - b2), (0, 0), "no VM sees them");
    let trunk = port_stats(d, "up0.trunk");
    let dropped = trunk["drops"]["unknown_vlan"].as_u64().unwrap();
    assert_eq!(dropped - before, 6, "{trunk}");
    let uplink = port_stats(d, "n100.uplink");
    assert!(uplink["tx_packets"].as_u64().unwrap() >= 4, "{uplink}");
    assert!(uplink["rx_packets"].as_u64().unwrap() >= 8, "{uplink}");

    // Saved and restored: after a restart the trunk is back and tagged frames still enter.
    s.restart(0, &["--idle-sleep"]).unwrap();
    let d = s.daemon(0).unwrap();
    let list = d.ctl_ok(&["network", "list"]).unwrap();
    assert!(
        list.contains("vlan 100 up0") && list.contains("vlan 200 up0"),
        "{list}"
    );
    send(&outside, "100", 3, &a.mac, &a.ip, "after-restart");
    let a4 = rx_packets(&a.netns);
    assert_eq!(a4 - a3, 3, "tagged 100 after the restart");
    assert_eq!(rx_packets(&b.netns), b3);

    // The networks go with their uplink ports, the trunk with the last of them.
    for vm in ["vm1", "vm2"] {
        d.ctl_ok(&["port", "del", vm]).unwrap();
    }
    d.ctl_ok(&["network", "del", "n100"]).unwrap();
    assert!(json(d, &["stats"])["ports"]
        .to_string()
        .contains("up0.trunk"));
    d.ctl_ok(&["network", "del", "n200"]).unwrap();
    assert!(!json(d, &["stats"])["ports"]
        .to_string()
        .contains("up0.trunk"));
}
