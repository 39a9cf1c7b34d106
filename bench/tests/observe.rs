//! Watching brink as an operator does, with real namespaces and traffic:
//! - metrics: `brinkctl metrics` and `brinkd --metrics-listen` give the same Prometheus text,
//!   which parses, follows Prometheus naming and carries the traffic of real pings;
//! - capture: `brinkctl capture` writes a pcapng file that `tcpdump -r` reads, and `--drops`
//!   holds a denied SYN with the reason in its comment.
//!
//! Needs root and tcpdump.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use brink_bench::daemon::Daemon;
use common::*;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use prometheus_parse::{Scrape, Value};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

/// GET `path` from `addr`; returns the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn metrics_parse_carry_real_traffic_and_are_served_over_http() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (_topo, d, vms) = rig(
        "met",
        &[(1, "10.0.66.1", "blue"), (2, "10.0.66.2", "blue")],
        &["--metrics-listen", &addr],
    );
    assert!(ping(&vms[0], &vms[1], 3));
    let text = d.ctl_ok(&["metrics"]).unwrap();
    let scrape = parse(&text);
    let vm1 = [("port", "vm1"), ("network", "blue")];
    assert!(
        value(&scrape, "brink_port_receive_packets_total", &vm1) >= 3.0,
        "{text}"
    );
    assert!(value(&scrape, "brink_port_transmit_packets_total", &vm1) >= 3.0);
    assert!(
        value(
            &scrape,
            "brink_worker_busy_seconds_total",
            &[("worker", "0")]
        ) > 0.0
    );
    assert!(value(&scrape, "brink_conntrack_inserts_total", &[]) >= 1.0);
    for s in &scrape.samples {
        assert!(s.metric.starts_with("brink_"), "{}", s.metric);
        for key in ["src", "dst", "sport", "dport"] {
            assert!(
                s.labels.get(key).is_none(),
                "per-connection label on {}",
                s.metric
            );
        }
    }

    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let served = parse(&body);
    assert!(value(&served, "brink_port_receive_packets_total", &vm1) >= 3.0);
    let (status, _) = http_get(&addr, "/other");
    assert!(status.contains("404"), "{status}");
    drop(d);
}

/// Two VMs in network blue with port security; vm2 takes ICMP in, and TCP 5001 but not 5002.
fn guarded(tag: &str) -> (Topology, Daemon, Vec<Vm>) {
    let mut topo = Topology::new(tag);
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    let d = Daemon::start(&dir, &["--idle-sleep"]).unwrap();
    d.ctl_ok(&["network", "add", "blue"]).unwrap();
    d.ctl_ok(&["sg", "add", "web"]).unwrap();
    for rule in [
        &["--direction", "egress"][..],
        &["--direction", "ingress", "--protocol", "icmp"],
        &[
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--port",
            "5001",
        ],
    ] {
        let mut args = vec!["sg", "rule", "add", "web"];
        args.extend_from_slice(rule);
        d.ctl_ok(&args).unwrap();
    }
    let mut vms = vec![];
    for (n, ip) in [(1, "10.0.67.1"), (2, "10.0.67.2")] {
        let vm = topo.add_vm(n, ip).unwrap();
        d.add_vm_port(&format!("vm{n}"), &vm, "blue", &["--ip", ip, "--sg", "web"])
            .unwrap();
        vms.push(vm);
    }
    (topo, d, vms)
}

/// Starts `brinkctl capture ARGS -w FILE` in the background.
fn capture(d: &Daemon, args: &[&str], file: &std::path::Path) -> std::process::Child {
    Command::new(brink_bench::daemon::bin_dir().join("brinkctl"))
        .arg("--socket")
        .arg(d.dir().join("brink.sock"))
        .arg("capture")
        .args(args)
        .arg("-w")
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The packets of pcapng `file`: their bytes and comments.
fn packets(file: &std::path::Path) -> Vec<(Vec<u8>, Vec<String>)> {
    let mut reader = PcapNgReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut out = vec![];
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(p) = block.unwrap() {
            let comments = p
                .options
                .iter()
                .filter_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect();
            out.push((p.data.to_vec(), comments));
        }
    }
    out
}

#[test]
fn captures_open_with_tcpdump_and_drops_carry_their_reason() {
    let (topo, d, vms) = guarded("cap");
    let dir = topo.scratch();
    let traffic = dir.join("traffic.pcapng");
    let child = capture(
        &d,
        &["--port", "vm1", "--count", "4", "--seconds", "15"],
        &traffic,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(ping(&vms[0], &vms[1], 2));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let read = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&traffic)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(text.contains("ICMP echo request"), "{text}");
    assert!(text.contains("ICMP echo reply"), "{text}");

    // A SYN to TCP 5002, which vm2's group does not admit, dropped at vm1 as ingress_denied.
    let dropped = dir.join("drops.pcapng");
    let args = [
        "--port",
        "vm1",
        "--drops",
        "--count",
        "1",
        "--seconds",
        "15",
    ];
    let child = capture(&d, &args, &dropped);
    std::thread::sleep(Duration::from_millis(300));
    let _ = vms[0].exec(
        "timeout",
        &["3", "bash", "-c", "echo > /dev/tcp/10.0.67.2/5002"],
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = packets(&dropped);
    assert!(!got.is_empty(), "no dropped frame captured");
    let (frame, comments) = &got[0];
    assert_eq!(comments, &["dropped: ingress_denied"], "{comments:?}");
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
        panic!("not TCP");
    };
    assert!(tcp.syn() && tcp.destination_port() == 5002);
    let read = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&dropped)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&read.stdout).contains(".5002: Flags [S]"));
}

/// What `trace` must not change: connections (without their clocks), FDB entries, port
/// counters and rule hits.
fn live_state(d: &Daemon) -> Vec<serde_json::Value> {
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&d.ctl_ok(&all).unwrap()).unwrap()
    };
    let mut conns = json(&["ct", "show"]);
    for c in conns.as_array_mut().unwrap() {
        let c = c.as_object_mut().unwrap();
        c.remove("age_secs");
        c.remove("expires_secs");
    }
    let mut fdb = json(&["fdb", "show"]);
    for e in fdb.as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("age_secs");
    }
    let ports = json(&["stats"])["ports"].clone();
    vec![conns, fdb, ports, json(&["sg", "show", "web"])]
}

#[test]
fn a_trace_shows_the_live_connection_and_changes_nothing() {
    let (_topo, d, vms) = guarded("Otr");
    let (client, server) = (&vms[0], &vms[1]);
    let listener = spawn_in(
        server,
        &[
            "timeout",
            "20",
            "socat",
            "-u",
            "TCP-LISTEN:5001",
            "/dev/null",
        ],
    );
    wait_listening(server, 5001);
    // A connection that stays open and quiet for a while.
    let hold = format!(
        "import socket, time\n\
         s = socket.socket(); s.bind(({:?}, 40123)); s.connect(({:?}, 5001))\n\
         s.sendall(b'x' * 100); time.sleep(8); s.close()\n",
        client.ip, server.ip
    );
    let holder = spawn_in(client, &["timeout", "20", "python3", "-c", &hold]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut before = live_state(&d);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = live_state(&d);
        let established = now[0]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["sport"] == 40123 && c["tcp_state"] == "ESTABLISHED");
        if established && now == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no quiet established connection: {now:?}"
        );
        before = now;
    }

    let trace = |packet: &str| -> serde_json::Value {
        let out = d
            .ctl_ok(&["--json", "trace", "--port", "vm1", "--packet", packet])
            .unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let live = trace("tcp,src=10.0.67.1,dst=10.0.67.2,sport=40123,dport=5001,flags=A");
    let conn = &live["connection"];
    assert_eq!(conn["tcp_state"], "ESTABLISHED", "{live:#}");
    assert_eq!(
        (conn["sport"].clone(), conn["dport"].clone()),
        (40123.into(), 5001.into())
    );
    let shown = before[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["sport"] == 40123)
        .unwrap();
    assert_eq!(
        conn["packets_orig"], shown["packets_orig"],
        "the real entry"
    );
    assert!(conn["expires_secs"].as_f64().unwrap() > 80_000.0, "{conn}");
    let stages = live["stages"].as_array().unwrap();
    let ct = stages.iter().find(|s| s["stage"] == "conntrack").unwrap();
    assert!(
        ct["detail"].as_str().unwrap().contains("connection found"),
        "{live:#}"
    );
    let l2 = stages.iter().find(|s| s["stage"] == "l2").unwrap();
    assert!(
        l2["detail"].as_str().unwrap().contains("on port vm2"),
        "{live:#}"
    );

    // A new connection the rules admit, and one they refuse.
    let syn = trace("tcp,src=10.0.67.1,dst=10.0.67.2,sport=40999,dport=5001,flags=S");
    assert_eq!(syn["out"], serde_json::json!(["vm2"]), "{syn:#}");
    assert!(syn["connection"].is_null());
    assert!(
        syn.to_string().contains("would create a connection"),
        "{syn:#}"
    );
    let denied = trace("tcp,src=10.0.67.1,dst=10.0.67.2,sport=40999,dport=5002,flags=S");
    assert_eq!(denied["drop"], "conntrack: ingress_denied", "{denied:#}");
    let text = d
        .ctl_ok(&[
            "trace",
            "--port",
            "vm1",
            "--packet",
            "tcp,src=10.0.67.1,dst=10.0.67.2,sport=40123,dport=5001,flags=A",
        ])
        .unwrap();
    assert!(
        text.contains("connection     tcp 10.0.67.1:40123"),
        "{text}"
    );

    assert_eq!(live_state(&d), before, "the trace changed live state");
    assert!(
        wait_child(holder, Duration::from_secs(15)),
        "the connection failed"
    );
    let _ = wait_child(listener, Duration::from_secs(5));
}

#[test]
fn ct_events_stream_a_connections_life_as_json_lines() {
    let (topo, d, vms) = rig(
        "Oev",
        &[(1, "10.0.68.1", "blue"), (2, "10.0.68.2", "blue")],
        &[],
    );
    d.ctl_ok(&["ct", "policy", "set", "blue", "udp_unreplied=1"])
        .unwrap();
    let reader = Command::new(brink_bench::daemon::bin_dir().join("brinkctl"))
        .arg("--socket")
        .arg(d.dir().join("brink.sock"))
        .args(["ct", "events", "--count", "5", "--seconds", "15"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first read subscribes.
    std::thread::sleep(Duration::from_millis(500));
    let data = payload(10_000);
    assert_eq!(tcp_transfer(&topo, &vms[0], &vms[1], &data), data);
    let udp = vms[0]
        .exec("sh", &["-c", "echo hi | socat -u - UDP:10.0.68.2:9999"])
        .unwrap();
    assert!(udp.status.success());
    let out = reader.wait_with_output().unwrap();
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |dport: u64| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e["dport"] == dport && e["network"] == "blue")
            .map(|e| e["event"].as_str().unwrap())
            .collect()
    };
    assert_eq!(of(5001), ["new", "established", "closed"], "{events:#?}");
    assert_eq!(of(9999), ["new", "expired"], "{events:#?}");
    let new = events.iter().find(|e| e["dport"] == 5001).unwrap();
    assert_eq!(
        (new["src"].as_str(), new["proto"].as_str()),
        (Some("10.0.68.1"), Some("tcp"))
    );
    assert_eq!(new["tcp_state"], "SYN_SENT");
}
