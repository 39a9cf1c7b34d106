//! Security groups and port security with real kernel traffic: namespaced VMs on veth pairs,
//! `brinkd` in the middle with port security on, driven with `brinkctl`. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Child;
use std::thread::sleep;
use std::time::Duration;

use brink_bench::daemon::Daemon;
use brink_bench::hosts::Hosts;
use common::*;
use serde_json::Value;

/// VMs with port security on and no groups yet.
fn secured(tag: &str, vms: &[(u8, &str, &str)]) -> (Topology, Daemon, Vec<Vm>) {
    rig_with(tag, vms, &[], &[])
}

fn ctl(d: &Daemon, args: &[&str]) -> String {
    d.ctl_ok(args).unwrap()
}

/// Adds a rule to `group` with `args` (`sg rule add` options, space-separated) and returns its
/// id.
fn rule(d: &Daemon, group: &str, args: &str) -> u32 {
    let mut all = vec!["sg", "rule", "add", group];
    all.extend(args.split_whitespace());
    ctl(d, &all).trim().parse().unwrap()
}

/// Puts `ports` in a new group "open" that allows everything both ways, so only port security
/// filters them.
fn open_group(d: &Daemon, ports: &[&str]) {
    ctl(d, &["sg", "add", "open"]);
    rule(d, "open", "--direction egress");
    rule(d, "open", "--direction ingress");
    for p in ports {
        ctl(d, &["port", "set", p, "--sg", "open"]);
    }
}

/// The hit count of rule `id` in `sg show GROUP`.
fn rule_hits(d: &Daemon, group: &str, id: u32) -> u64 {
    let shown = json(d, &["sg", "show", group]);
    let rules = shown["rules"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["id"].as_u64() == Some(u64::from(id)));
    rule.unwrap()["hits"].as_u64().unwrap()
}

fn drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    stats(d, port)["drops"][reason].as_u64().unwrap_or(0)
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ctl(d, &all)).unwrap()
}

/// Whether a TCP connection from `from` to `to`:`port` is accepted within 2 s.
fn tcp_connects(from: &Vm, to: &Vm, port: u16) -> bool {
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let listener = spawn_in(to, &["timeout", "5", "socat", "-u", &listen, "/dev/null"]);
    wait_listening(to, port);
    let target = format!("TCP:{}:{port},connect-timeout=2", to.ip);
    let ok = from
        .exec("timeout", &["4", "socat", "-u", "/dev/null", &target])
        .unwrap()
        .status
        .success();
    wait_child(listener, Duration::from_secs(6));
    ok
}

/// Whether a UDP datagram from `from` reaches a socket on `to`:`port` (the receiving kernel's
/// `InDatagrams` counter moves).
fn udp_arrives(from: &Vm, to: &Vm, port: u16) -> bool {
    let received = || {
        let snmp = to.exec("cat", &["/proc/net/snmp"]).unwrap().stdout;
        udp_in_datagrams(&String::from_utf8_lossy(&snmp))
    };
    let before = received();
    let listen = format!("UDP-RECV:{port}");
    let listener = spawn_in(to, &["timeout", "2", "socat", "-u", &listen, "/dev/null"]);
    sleep(Duration::from_millis(200));
    let send = format!("echo hi | socat -u - UDP-SENDTO:{}:{port}", to.ip);
    for _ in 0..3 {
        from.exec("sh", &["-c", &send]).unwrap();
        sleep(Duration::from_millis(100));
    }
    wait_child(listener, Duration::from_secs(3));
    received() > before
}

/// `InDatagrams` of the `Udp:` lines of /proc/net/snmp.
fn udp_in_datagrams(snmp: &str) -> u64 {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn default_deny_then_rules_admit_exactly_what_they_name() {
    let (_topo, d, vms) = secured("sgd", &[(1, "10.70.0.1", "net"), (2, "10.70.0.2", "net")]);
    let (client, server) = (&vms[0], &vms[1]);
    // No group: nothing passes but ARP.
    assert!(!ping(client, server, 2), "ping passed with no rules");
    assert!(!tcp_connects(client, server, 80));
    assert!(drops(&d, "vm1", "egress_denied") > 0);

    // The client may open TCP and ping out; the server takes TCP 80 and ICMP echo in.
    ctl(&d, &["sg", "add", "client"]);
    ctl(&d, &["sg", "add", "web"]);
    rule(&d, "client", "--direction egress --protocol tcp");
    rule(&d, "client", "--direction egress --protocol icmp");
    rule(&d, "client", "--direction egress --protocol udp --port 53");
    let web = rule(&d, "web", "--direction ingress --protocol tcp --port 80");
    ctl(&d, &["port", "set", "vm1", "--sg", "client"]);
    ctl(&d, &["port", "set", "vm2", "--sg", "web"]);
    assert!(tcp_connects(client, server, 80), "TCP 80 and its replies");
    assert!(!tcp_connects(client, server, 81), "TCP 81 has no rule");
    assert!(!ping(client, server, 2), "no ingress ICMP rule yet");
    let before = drops(&d, "vm1", "ingress_denied") + drops(&d, "vm1", "egress_denied");
    assert!(before > 0);
    // Egress-only: the server's replies pass, but it cannot open a connection to the client.
    assert!(!tcp_connects(server, client, 80), "unsolicited inbound");

    rule(
        &d,
        "web",
        "--direction ingress --protocol icmp --icmp-type 8",
    );
    assert!(ping(client, server, 2), "ICMP echo rule and its replies");
    // UDP: a rule for port 53 (egress and ingress both needed).
    assert!(!udp_arrives(client, server, 53), "no ingress UDP rule");
    rule(&d, "web", "--direction ingress --protocol udp --port 53");
    assert!(
        udp_arrives(client, server, 53),
        "UDP 53 with rules on both sides"
    );

    let hits = rule_hits(&d, "web", web);
    assert!(hits >= 1, "the TCP 80 rule counted its connection");
    let conns = json(&d, &["ct", "show", "--port", "80"]);
    assert!(
        conns
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["rules"][1].as_u64() == Some(u64::from(web))),
        "connections record their admitting rule: {conns}"
    );
}

#[test]
fn remote_group_rules_follow_membership() {
    let (_topo, d, vms) = secured(
        "sgr",
        &[
            (1, "10.71.0.1", "net"),
            (2, "10.71.0.2", "net"),
            (3, "10.71.0.3", "net"),
        ],
    );
    ctl(&d, &["sg", "add", "peers"]);
    ctl(&d, &["sg", "add", "outside"]);
    rule(&d, "peers", "--direction egress");
    rule(&d, "peers", "--direction ingress --remote-group peers");
    rule(&d, "outside", "--direction egress");
    ctl(&d, &["port", "set", "vm1", "--sg", "peers"]);
    ctl(&d, &["port", "set", "vm2", "--sg", "peers"]);
    ctl(&d, &["port", "set", "vm3", "--sg", "outside"]);
    assert!(ping(&vms[0], &vms[1], 2), "members reach each other");
    assert!(!ping(&vms[2], &vms[1], 2), "a non-member does not");
    ctl(&d, &["port", "set", "vm3", "--sg", "peers"]);
    assert!(ping(&vms[2], &vms[1], 2), "joining the group lets it in");
    ctl(&d, &["port", "set", "vm1", "--sg", "outside"]);
    assert!(!ping(&vms[0], &vms[1], 2), "leaving the group shuts it out");
    assert!(ping(&vms[1], &vms[2], 2));
}

#[test]
fn ipv6_rules_with_neighbour_discovery() {
    let (_topo, d, vms) = secured("sg6", &[(1, "10.72.0.1", "net"), (2, "10.72.0.2", "net")]);
    vms[0].enable_ipv6("fd72::1").unwrap();
    vms[1].enable_ipv6("fd72::2").unwrap();
    // The ports were added with their IPv4 addresses only; the IPv6 ones come as pairs.
    ctl(&d, &["port", "set", "vm1", "--allowed-pair", "fd72::1"]);
    ctl(&d, &["port", "set", "vm2", "--allowed-pair", "fd72::2/128"]);
    ctl(&d, &["sg", "add", "v6"]);
    rule(&d, "v6", "--direction egress --ethertype IPv6");
    rule(
        &d,
        "v6",
        "--direction ingress --ethertype IPv6 --protocol icmpv6",
    );
    for vm in ["vm1", "vm2"] {
        ctl(&d, &["port", "set", vm, "--sg", "v6"]);
    }
    let ping6 = vms[0]
        .exec(
            "ping",
            &["-6", "-c", "2", "-i", "0.2", "-W", "2", "fd72::2"],
        )
        .unwrap();
    assert!(
        ping6.status.success(),
        "IPv6 ping with ND through port security"
    );
    assert!(!ping(&vms[0], &vms[1], 2), "no IPv4 rule");
}

#[test]
fn spoofed_addresses_are_dropped_and_allowed_pairs_let_them_through() {
    let (_topo, d, vms) = secured("sgs", &[(1, "10.73.0.1", "net"), (2, "10.73.0.2", "net")]);
    open_group(&d, &["vm1", "vm2"]);
    assert!(ping(&vms[0], &vms[1], 2));
    vms[0]
        .run("ip", &["addr", "add", "10.73.0.50/24", "dev", "eth0"])
        .unwrap();
    let from_50 = |vm: &Vm| {
        vm.exec(
            "ping",
            &[
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                "10.73.0.50",
                "10.73.0.2",
            ],
        )
        .unwrap()
        .status
        .success()
    };
    assert!(!from_50(&vms[0]), "a spoofed source IP passed");
    assert!(drops(&d, "vm1", "spoofed_ip") > 0 || drops(&d, "vm1", "spoofed_arp") > 0);
    ctl(&d, &["port", "set", "vm1", "--allowed-pair", "10.73.0.50"]);
    assert!(from_50(&vms[0]), "an allowed address pair");
    vms[0]
        .run(
            "ip",
            &["link", "set", "eth0", "address", "02:00:00:00:00:77"],
        )
        .unwrap();
    assert!(!ping(&vms[0], &vms[1], 2), "a spoofed MAC passed");
    assert!(drops(&d, "vm1", "spoofed_mac") > 0);
}

#[test]
fn a_vm_acting_as_dhcp_server_or_router_is_dropped() {
    let (_topo, d, vms) = secured("sgh", &[(1, "10.74.0.1", "net"), (2, "10.74.0.2", "net")]);
    open_group(&d, &["vm1", "vm2"]);
    vms[0].enable_ipv6("fd74::1").unwrap();
    let offer = "echo offer | socat -u - UDP4-DATAGRAM:10.74.0.255:68,bind=:67,broadcast";
    vms[0].run("sh", &["-c", offer]).unwrap();
    let ra = "import socket\n\
              s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n\
              s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)\n\
              ra = bytes([134, 0, 0, 0, 64, 0, 7, 8]) + bytes(8)\n\
              s.sendto(ra, ('ff02::1', 0, 0, socket.if_nametoindex('eth0')))\n";
    vms[0].run("python3", &["-c", ra]).unwrap();
    sleep(Duration::from_millis(300));
    assert!(drops(&d, "vm1", "dhcp_server") >= 1, "{}", stats(&d, "vm1"));
    assert!(
        drops(&d, "vm1", "router_advert") >= 1,
        "{}",
        stats(&d, "vm1")
    );
    // DHCP client traffic is allowed out without any rule.
    ctl(&d, &["port", "set", "vm1", "--no-sg"]);
    let before = stats(&d, "vm2")["tx_packets"].as_u64().unwrap();
    let discover = "echo discover | socat -u - UDP4-DATAGRAM:10.74.0.255:67,bind=:68,broadcast";
    vms[0].run("sh", &["-c", discover]).unwrap();
    sleep(Duration::from_millis(300));
    assert!(stats(&d, "vm2")["tx_packets"].as_u64().unwrap() > before);
}

/// Sends 40 chunks of 10 KB to `to`:`port`, one every 100 ms; returns the sender and receiver
/// and the file the receiver writes.
fn paced_stream(
    topo: &Topology,
    from: &Vm,
    to: &Vm,
    port: u16,
) -> (Child, Child, std::path::PathBuf) {
    let dir = topo.scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let dst = dir.join(format!("paced.{port}"));
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let out = format!("OPEN:{},creat,trunc", dst.display());
    let receiver = spawn_in(to, &["timeout", "15", "socat", "-u", &listen, &out]);
    wait_listening(to, port);
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('{}', {port}))\n\
         for i in range(40):\n    s.sendall(bytes(10000)); time.sleep(0.1)\n\
         s.close()\n",
        to.ip
    );
    let sender = spawn_in(from, &["timeout", "10", "python3", "-c", &script]);
    (sender, receiver, dst)
}

/// Asserts that a [`paced_stream`] was cut: the sender never finishes and the receiver's file
/// misses data.
fn assert_stream_cut(sender: Child, receiver: Child, file: &std::path::Path) {
    assert!(
        !wait_child(sender, Duration::from_secs(12)),
        "the cut stream finished"
    );
    wait_child(receiver, Duration::from_secs(16));
    let got = std::fs::metadata(file).unwrap().len();
    assert!(
        got < 400_000,
        "the cut stream delivered everything ({got} bytes)"
    );
}

#[test]
fn removing_a_rule_cuts_only_the_connections_no_other_rule_allows() {
    let (topo, d, vms) = secured("sgc", &[(1, "10.75.0.1", "net"), (2, "10.75.0.2", "net")]);
    ctl(&d, &["sg", "add", "client"]);
    ctl(&d, &["sg", "add", "srv"]);
    rule(&d, "client", "--direction egress");
    let a = rule(&d, "srv", "--direction ingress --protocol tcp --port 6001");
    rule(
        &d,
        "srv",
        "--direction ingress --protocol tcp --port-min 6002 --port-max 6003",
    );
    ctl(&d, &["port", "set", "vm1", "--sg", "client"]);
    ctl(&d, &["port", "set", "vm2", "--sg", "srv"]);
    let (s1, r1, f1) = paced_stream(&topo, &vms[0], &vms[1], 6001);
    let (s2, r2, f2) = paced_stream(&topo, &vms[0], &vms[1], 6002);
    sleep(Duration::from_millis(1500));
    let cut = json(&d, &["sg", "rule", "del", "srv", &a.to_string()]);
    assert!(cut["cut"].as_u64().unwrap() >= 1, "{cut}");
    assert!(cut["kept"].as_u64().unwrap() >= 1, "{cut}");
    assert!(
        wait_child(s2, Duration::from_secs(12)),
        "the other stream stalled"
    );
    assert!(wait_child(r2, Duration::from_secs(5)));
    assert_eq!(std::fs::metadata(&f2).unwrap().len(), 400_000);
    assert_stream_cut(s1, r1, &f1);
    assert!(
        drops(&d, "vm1", "rule_revoked")
            + drops(&d, "vm2", "rule_revoked")
            + drops(&d, "vm1", "ct_invalid")
            > 0
    );
}

#[test]
fn explicit_members_are_admitted_and_removing_one_cuts_its_connection() {
    // vm1 stands for a member on another host: it is in the group only by `sg member set`.
    let (topo, d, vms) = secured("sgm", &[(1, "10.76.0.1", "net"), (2, "10.76.0.2", "net")]);
    ctl(&d, &["sg", "add", "client"]);
    ctl(&d, &["sg", "add", "web"]);
    rule(&d, "client", "--direction egress");
    rule(
        &d,
        "web",
        "--direction ingress --protocol tcp --remote-group web",
    );
    ctl(&d, &["port", "set", "vm1", "--sg", "client"]);
    ctl(&d, &["port", "set", "vm2", "--sg", "web"]);
    assert!(!tcp_connects(&vms[0], &vms[1], 6101), "not a member yet");
    let set = json(
        &d,
        &["sg", "member", "set", "web", "10.76.0.1", "10.99.0.0/16"],
    );
    assert_eq!(set["cut"], 0, "{set}");
    let shown = json(&d, &["sg", "show", "web"]);
    assert_eq!(
        shown["members"],
        serde_json::json!(["10.76.0.1/32", "10.99.0.0/16"])
    );
    assert!(
        tcp_connects(&vms[0], &vms[1], 6102),
        "an explicit member gets in"
    );
    let (sender, receiver, file) = paced_stream(&topo, &vms[0], &vms[1], 6103);
    sleep(Duration::from_millis(1500));
    let cut = json(&d, &["sg", "member", "set", "web", "10.99.0.0/16"]);
    assert!(cut["cut"].as_u64().unwrap() >= 1, "{cut}");
    assert_stream_cut(sender, receiver, &file);
    assert!(!tcp_connects(&vms[0], &vms[1], 6104), "no longer a member");
    let bad = d.ctl(&["sg", "member", "set", "web", "10.76.0.300"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad member"));
    assert_eq!(
        json(&d, &["sg", "show", "web"])["members"],
        serde_json::json!(["10.99.0.0/16"]),
        "a refused set changes nothing"
    );
}

#[test]
fn bad_security_requests_are_refused_and_change_nothing() {
    let (topo, d, _vms) = secured("sgb", &[(1, "10.76.0.1", "net")]);
    ctl(&d, &["sg", "add", "web"]);
    rule(&d, "web", "--direction ingress --protocol tcp --port 80");
    ctl(&d, &["sg", "add", "flat", "--stateless"]);
    let before = (
        ctl(&d, &["--json", "sg", "list"]),
        ctl(&d, &["--json", "port", "list"]),
    );
    let file = topo.scratch().join("bad.json");
    std::fs::create_dir_all(topo.scratch()).unwrap();
    std::fs::write(
        &file,
        "{\"name\": \"x\", \"rules\": [{\"direction\": \"sideways\"}]}",
    )
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("sg add web".to_string(), "already exists"),
        (
            "sg rule add nope --direction ingress".to_string(),
            "no security group",
        ),
        (
            "sg rule add web --direction ingress --remote-ip 10.0.0.0/40".to_string(),
            "bad remote IP prefix",
        ),
        (
            "sg rule add web --direction ingress --protocol tcp --port-min 90 --port-max 80"
                .to_string(),
            "bad port range",
        ),
        (
            "sg rule add web --direction ingress --protocol icmp --icmp-code 0".to_string(),
            "ICMP code needs an ICMP type",
        ),
        (
            "sg rule add web --direction ingress --protocol tcp --port 80".to_string(),
            "duplicates rule",
        ),
        (
            "sg rule add web --direction ingress --remote-group nope".to_string(),
            "no security group",
        ),
        ("sg rule del web 999".to_string(), "no rule 999"),
        ("port set vm1 --sg nope".to_string(), "no security group"),
        (
            "port set vm1 --sg web --sg flat".to_string(),
            "all stateful or all stateless",
        ),
        (
            "port set vm1 --allowed-pair 10.0.0.1,zz".to_string(),
            "bad allowed address pair",
        ),
        ("port set nope --no-sg".to_string(), "no port"),
        (
            format!("sg import {file}", file = file.display()),
            "bad direction",
        ),
    ];
    for (line, want) in cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = d.ctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line} should fail");
        assert!(err.contains(want), "{line}: expected {want:?} in {err:?}");
    }
    ctl(&d, &["port", "set", "vm1", "--sg", "web"]);
    let out = d.ctl(&["sg", "del", "web"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("used by ports: vm1"));
    ctl(&d, &["port", "set", "vm1", "--no-sg"]);
    let after = (
        ctl(&d, &["--json", "sg", "list"]),
        ctl(&d, &["--json", "port", "list"]),
    );
    assert_eq!(before.0, after.0, "groups changed");
    assert_eq!(before.1, after.1, "ports changed");
}

#[test]
fn openstack_groups_import_and_survive_a_restart() {
    let (topo, mut d, vms) = secured("sgi", &[(1, "10.77.0.1", "net"), (2, "10.77.0.2", "net")]);
    let file = topo.scratch().join("groups.json");
    std::fs::create_dir_all(topo.scratch()).unwrap();
    std::fs::write(
        &file,
        r#"{"id": "5f0c", "name": "default", "stateful": true, "description": "Default security group",
            "rules": [
              {"id": "a1", "direction": "egress", "ethertype": "IPv4", "protocol": null,
               "port_range_min": null, "port_range_max": null, "remote_ip_prefix": null,
               "remote_group_id": null, "security_group_id": "5f0c"},
              {"id": "a2", "direction": "egress", "ethertype": "IPv6", "protocol": null,
               "remote_ip_prefix": null, "remote_group_id": null},
              {"id": "a3", "direction": "ingress", "ethertype": "IPv4", "protocol": null,
               "remote_ip_prefix": null, "remote_group_id": "5f0c"},
              {"id": "a4", "direction": "ingress", "ethertype": "IPv6", "protocol": null,
               "remote_ip_prefix": null, "remote_group_id": "5f0c"}]}"#,
    )
    .unwrap();
    let out = ctl(&d, &["sg", "import", file.to_str().unwrap()]);
    assert!(out.contains("imported group default (4 rules)"), "{out}");
    for vm in ["vm1", "vm2"] {
        ctl(&d, &["port", "set", vm, "--sg", "default"]);
    }
    assert!(
        ping(&vms[0], &vms[1], 2),
        "Neutron's default group lets members talk"
    );
    assert!(d.stop().unwrap());
    let d2 = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    let shown = json(&d2, &["sg", "show", "default"]);
    assert_eq!(shown["rules"].as_array().unwrap().len(), 4, "{shown}");
    assert_eq!(shown["ports"], serde_json::json!(["vm1", "vm2"]));
    assert!(ping(&vms[1], &vms[0], 2), "restored groups still admit");
}

#[test]
fn stateless_groups_judge_every_packet_so_replies_need_rules() {
    let (_topo, d, vms) = secured("sgl", &[(1, "10.78.0.1", "net"), (2, "10.78.0.2", "net")]);
    open_group(&d, &["vm1"]);
    ctl(&d, &["sg", "add", "flat", "--stateless"]);
    rule(
        &d,
        "flat",
        "--direction ingress --protocol icmp --icmp-type 8",
    );
    ctl(&d, &["port", "set", "vm2", "--sg", "flat"]);
    assert!(
        !ping(&vms[0], &vms[1], 2),
        "an echo reply passed without a rule"
    );
    assert!(drops(&d, "vm2", "egress_denied") > 0);
    let reply = rule(
        &d,
        "flat",
        "--direction egress --protocol icmp --icmp-type 0",
    );
    assert!(ping(&vms[0], &vms[1], 2), "echo request and reply rules");
    let hits = rule_hits(&d, "flat", reply);
    assert!(hits >= 2, "a stateless rule counts packets ({hits})");
    // vm2 tracks nothing it sends: no connection was opened from its side.
    let conns = json(&d, &["ct", "show", "--ip", "10.78.0.2"]);
    assert!(
        conns
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["src"] != "10.78.0.2"),
        "{conns}"
    );
}

#[test]
fn a_member_on_another_host_gets_in_through_the_tunnel_and_loses_it_with_its_membership() {
    let mut s = Hosts::new("sgx").unwrap();
    for h in 0..2 {
        s.add_brink_host(h, &["--idle-sleep"]).unwrap();
        let add = [
            "network",
            "add",
            "blue",
            "--vxlan",
            "1001",
            "--mtu",
            s.inner_mtu(),
        ];
        ctl(s.daemon(h).unwrap(), &add);
    }
    // Host 0: the server, in group web, which admits TCP from web's members only. Host 1: a
    // member and a non-member, known to host 0 only as addresses (what Neutron sends).
    let srv = s.add_vm(0, 1, "10.77.0.1").unwrap();
    let member = s.add_brink_vm(1, 2, "10.77.0.2", "blue").unwrap();
    let other = s.add_brink_vm(1, 3, "10.77.0.3", "blue").unwrap();
    let d0 = s.daemon(0).unwrap();
    ctl(d0, &["sg", "add", "web"]);
    rule(d0, "web", "--direction egress");
    rule(
        d0,
        "web",
        "--direction ingress --protocol tcp --remote-group web",
    );
    let port = ["--ip", "10.77.0.1", "--sg", "web"];
    d0.add_vm_port("vm1", &srv, "blue", &port).unwrap();
    ctl(d0, &["sg", "member", "set", "web", "10.77.0.2"]);
    s.brink_remote(0, "blue", 1, &member).unwrap();
    s.brink_remote(0, "blue", 1, &other).unwrap();
    s.brink_remote(1, "blue", 0, &srv).unwrap();

    assert!(
        tcp_connects(&member, &srv, 6201),
        "the remote member gets in"
    );
    assert!(!tcp_connects(&other, &srv, 6202), "the non-member does not");
    let (sender, receiver, file) = paced_stream(&s.topo, &member, &srv, 6203);
    sleep(Duration::from_millis(1500));
    let cut = json(d0, &["sg", "member", "set", "web", "10.99.0.1"]);
    assert!(cut["cut"].as_u64().unwrap() >= 1, "{cut}");
    assert_stream_cut(sender, receiver, &file);
    assert!(!tcp_connects(&member, &srv, 6204), "no longer a member");
}
