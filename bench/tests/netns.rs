//! Integration tests with real kernel traffic: namespaced VMs on veth pairs, `brinkd` in the
//! middle, driven with `brinkctl`. They need root, and each builds and removes its own objects.
//! They run the built `brinkd` and `brinkctl` from `target/`: build the workspace first
//! (`scripts/test` does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_bench::daemon::Daemon;
use common::*;
use serde_json::Value;

#[test]
fn ping_and_a_12mb_tcp_transfer_cross_the_switch_intact() {
    let (topo, d, vms) = rig(
        "tcp",
        &[(1, "10.77.0.1", "blue"), (2, "10.77.0.2", "blue")],
        &[],
    );
    assert!(
        ping(&vms[0], &vms[1], 3),
        "ping through brink failed\n{}",
        d.log_text()
    );
    let data = payload(12 << 20);
    let got = tcp_transfer(&topo, &vms[0], &vms[1], &data);
    assert_eq!(got.len(), data.len(), "bytes lost");
    assert!(got == data, "payload corrupted in transit");
    let s1 = stats(&d, "vm1");
    let s2 = stats(&d, "vm2");
    assert!(s1["rx_bytes"].as_u64().unwrap() > 12 << 20, "{s1}");
    assert!(s2["tx_bytes"].as_u64().unwrap() > 12 << 20, "{s2}");
    let ports = d.ctl_ok(&["port", "list"]).unwrap();
    assert!(
        ports.contains("copy"),
        "port list shows the XDP mode: {ports}"
    );
}

#[test]
fn frames_never_cross_networks() {
    let (_topo, d, vms) = rig(
        "iso",
        &[
            (1, "10.78.0.1", "blue"),
            (2, "10.78.0.2", "blue"),
            (3, "10.78.0.3", "red"),
        ],
        &[],
    );
    assert!(ping(&vms[0], &vms[1], 2), "same network must work");
    assert!(!ping(&vms[0], &vms[2], 2), "ping across networks must fail");
    assert!(!ping(&vms[2], &vms[1], 2), "and the other way");
    assert_eq!(
        stats(&d, "vm3")["tx_packets"],
        0,
        "nothing from blue may reach red"
    );
    // vm3's ARP requests for vm2's address must not have reached vm2: it would have learned vm3.
    let neigh = vms[1].run("ip", &["neigh", "show", &vms[2].ip]).unwrap();
    assert!(neigh.stdout.is_empty(), "red's ARP reached blue: {neigh:?}");
    assert!(
        stats(&d, "vm3")["rx_packets"].as_u64().unwrap() > 0,
        "red's ARPs were received"
    );
    let fdb = d.ctl_ok(&["fdb", "show", "--network", "red"]).unwrap();
    assert!(
        fdb.contains(&vms[2].mac) && !fdb.contains(&vms[0].mac),
        "{fdb}"
    );
}

#[test]
fn removing_a_port_under_traffic_keeps_the_daemon_alive() {
    let (_topo, mut d, vms) = rig(
        "del",
        &[(1, "10.79.0.1", "blue"), (2, "10.79.0.2", "blue")],
        &[],
    );
    let flood = Command::new("ip")
        .args([
            "netns",
            "exec",
            &vms[0].netns,
            "ping",
            "-f",
            "-c",
            "200000",
            "-w",
            "8",
            &vms[1].ip,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(500));
    d.ctl_ok(&["port", "del", "vm2"]).unwrap();
    sleep(Duration::from_millis(300));
    assert!(
        d.is_running(),
        "brinkd died on port removal\n{}",
        d.log_text()
    );
    let link = Command::new("ip")
        .args(["link", "show", &vms[1].host_if])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP program left attached"
    );
    let ports = d.ctl_ok(&["port", "list"]).unwrap();
    assert!(ports.contains("vm1") && !ports.contains("vm2"), "{ports}");
    wait_child(flood, Duration::from_secs(15));
    // The port comes back and works.
    d.add_vm_port("vm2", &vms[1], "blue", &["--port-security", "off"])
        .unwrap();
    assert!(
        ping(&vms[0], &vms[1], 2),
        "re-added port does not forward\n{}",
        d.log_text()
    );
    assert!(
        d.stop().unwrap(),
        "brinkd did not exit cleanly\n{}",
        d.log_text()
    );
}

#[test]
fn brinkctl_reports_bad_input_and_changes_nothing() {
    let (topo, d, vms) = rig("err", &[(1, "10.80.0.1", "blue")], &[]);
    let before = d.ctl_ok(&["--json", "port", "list"]).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "port",
                "add",
                "x",
                "--iface",
                "brk-nope0",
                "--network",
                "blue",
                "--port-security",
                "off",
            ],
            "does not exist",
        ),
        (
            &[
                "port",
                "add",
                "vm1",
                "--iface",
                &vms[0].host_if,
                "--network",
                "blue",
            ],
            "already exists",
        ),
        (
            &[
                "port",
                "add",
                "x",
                "--iface",
                &vms[0].host_if,
                "--network",
                "blue",
            ],
            "already used by port",
        ),
        (
            &["port", "add", "x", "--iface", "lo", "--network", "green"],
            "no network",
        ),
        (
            &[
                "port",
                "add",
                "x",
                "--iface",
                "lo",
                "--network",
                "blue",
                "--mac",
                "zz:00",
            ],
            "bad MAC",
        ),
        (
            &[
                "port",
                "add",
                "x",
                "--iface",
                "lo",
                "--network",
                "blue",
                "--ip",
                "1.2.3",
            ],
            "bad IP",
        ),
        (
            &[
                "port",
                "add",
                "bad name",
                "--iface",
                "lo",
                "--network",
                "blue",
            ],
            "bad name",
        ),
        (
            &["port", "add", "x", "--iface", "lo", "--network", "blue"],
            "needs its VM's MAC",
        ),
        (&["port", "del", "nope"], "no port"),
        (&["network", "add", "blue"], "already exists"),
        (&["network", "del", "blue"], "still has ports"),
        (&["fdb", "show", "--network", "nope"], "no network"),
        (&["stats", "--port", "nope"], "no port"),
    ];
    for (args, want) in cases {
        let out = d.ctl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
    }
    // Raw protocol abuse on the socket.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"{not json\n{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"nope\"}\n{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"port.add\",\"params\":{\"name\":1}}\n[1,2]\n").unwrap();
    let mut r = BufReader::new(s);
    let codes: Vec<i64> = (0..4)
        .map(|_| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            serde_json::from_str::<Value>(&line).unwrap()["error"]["code"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, [-32700, -32601, -32602, -32600]);
    // A request line over 1 MiB is refused with an error, and the connection closed.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let _ = s.write_all(&vec![b'x'; 3 << 20]); // the daemon stops reading part-way
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{line}");
    assert_eq!(
        d.ctl_ok(&["--json", "port", "list"]).unwrap(),
        before,
        "state changed"
    );
    // A tap port whose device already exists is refused; a fresh one is created and removed.
    let tap = format!("{}t", topo.prefix());
    let err = d.ctl(&[
        "port",
        "add",
        "t1",
        "--type",
        "tap",
        "--iface",
        &vms[0].host_if,
        "--network",
        "blue",
    ]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("already"),
        "{err:?}"
    );
    add_tap_port(&d, "t1", &tap);
    d.ctl_ok(&["port", "del", "t1"]).unwrap();
    assert!(!iface_exists(&tap), "tap not removed");
    assert!(
        ping(&vms[0], &vms[0], 1),
        "sanity: loopback of the VM itself"
    );
}

#[test]
fn restart_restores_networks_and_ports() {
    let (topo, mut d, vms) = rig(
        "rst",
        &[(1, "10.81.0.1", "blue"), (2, "10.81.0.2", "blue")],
        &[],
    );
    let tap = format!("{}t", topo.prefix());
    add_tap_port(&d, "t1", &tap);
    let before = d.ctl_ok(&["--json", "port", "list"]).unwrap();
    assert!(d.stop().unwrap());
    assert!(iface_exists(&tap), "taps outlive the daemon");
    for vm in &vms {
        let link = Command::new("ip")
            .args(["link", "show", &vm.host_if])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&link.stdout);
        assert!(
            !text.contains("xdp"),
            "XDP left attached after shutdown: {text}"
        );
    }
    let d2 = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    assert_eq!(
        d2.ctl_ok(&["--json", "port", "list"]).unwrap(),
        before,
        "{}",
        d2.log_text()
    );
    assert!(
        ping(&vms[0], &vms[1], 2),
        "restored ports do not forward\n{}",
        d2.log_text()
    );
    d2.ctl_ok(&["port", "del", "t1"]).unwrap();
    assert!(!iface_exists(&tap), "tap not removed");
}

#[test]
fn two_workers_forward_across_each_other() {
    let (topo, d, vms) = rig(
        "two",
        &[(1, "10.82.0.1", "blue"), (2, "10.82.0.2", "blue")],
        &["--cores", "0,1"],
    );
    let list: Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "port", "list"]).unwrap()).unwrap();
    assert_ne!(
        list[0]["worker"], list[1]["worker"],
        "ports should be spread over workers"
    );
    assert!(ping(&vms[0], &vms[1], 3), "{}", d.log_text());
    let data = payload(2 << 20);
    assert!(
        tcp_transfer(&topo, &vms[1], &vms[0], &data) == data,
        "payload corrupted"
    );
    let all: Value = serde_json::from_str(&d.ctl_ok(&["--json", "stats"]).unwrap()).unwrap();
    let cross: u64 = all["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["cross_tx"].as_u64().unwrap())
        .sum();
    assert!(cross > 1000, "frames should cross workers: {all}");
}

fn ct_show(d: &Daemon, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "ct", "show"];
    args.extend_from_slice(filters);
    let v: Value = serde_json::from_str(&d.ctl_ok(&args).unwrap()).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn conntrack_follows_a_real_tcp_connection_until_time_wait_expires() {
    let (_topo, d, vms) = rig(
        "ct",
        &[(1, "10.83.0.1", "blue"), (2, "10.83.0.2", "blue")],
        &[],
    );
    d.ctl_ok(&["ct", "policy", "set", "blue", "tcp_time_wait=2"])
        .unwrap();
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &vms[1].netns,
            "timeout",
            "20",
            "socat",
            "-u",
        ])
        .args(["TCP-LISTEN:5002,reuseaddr", "OPEN:/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&vms[1], 5002);
    // 200 KB, then the connection stays open for 2 s before the sender closes it.
    let script = format!(
        "(head -c 200000 /dev/zero; sleep 2) | socat -u - TCP:{}:5002",
        vms[1].ip
    );
    let sender = Command::new("ip")
        .args([
            "netns",
            "exec",
            &vms[0].netns,
            "timeout",
            "20",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(1000));
    let conns = ct_show(&d, &["--proto", "tcp", "--port", "5002"]);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(
        (c["network"].as_str(), c["src"].as_str(), c["dst"].as_str()),
        (
            Some("blue"),
            Some(vms[0].ip.as_str()),
            Some(vms[1].ip.as_str())
        )
    );
    assert_eq!(c["dport"], 5002);
    assert_eq!(c["tcp_state"], "ESTABLISHED", "{c}");
    assert_eq!(c["state"], "established");
    assert!(c["bytes_orig"].as_u64().unwrap() >= 200_000, "{c}");
    assert!(c["packets_reply"].as_u64().unwrap() > 0, "{c}");
    let by_state = ct_show(&d, &["--state", "tcp_established", "--network", "blue"]);
    assert_eq!(by_state.len(), 1);

    assert!(wait_child(sender, Duration::from_secs(10)));
    assert!(wait_child(listener, Duration::from_secs(10)));
    sleep(Duration::from_millis(300));
    let closed = ct_show(&d, &["--proto", "tcp", "--port", "5002"]);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["tcp_state"], "TIME_WAIT", "{}", closed[0]);
    // TIME_WAIT is 2 s here; the workers' sweep removes it soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ct_show(&d, &["--proto", "tcp", "--port", "5002"]).is_empty() {
        assert!(Instant::now() < deadline, "the connection never expired");
        sleep(Duration::from_millis(200));
    }
    let stats: Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "ct", "stats"]).unwrap()).unwrap();
    assert!(stats["expired"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["inserts"].as_u64().unwrap() >= 1, "{stats}");
    // Policy and filter errors are reported, not fatal.
    for (args, want) in [
        (
            &["ct", "policy", "set", "blue", "tcp_nope=1"][..],
            "unknown timeout",
        ),
        (&["ct", "policy", "set", "nope", "icmp=1"][..], "no network"),
        (&["ct", "show", "--state", "closing"][..], "bad state"),
        (&["ct", "show", "--proto", "xyz"][..], "bad protocol"),
        (&["ct", "flush", "--ip", "1.2.3"][..], "bad IP"),
    ] {
        let out = d.ctl(args);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {out:?}"
        );
    }
    let policy = d
        .ctl_ok(&["--json", "ct", "policy", "show", "blue"])
        .unwrap();
    assert!(policy.contains("\"tcp_time_wait\": 2"), "{policy}");
}

#[test]
fn ipv6_with_neighbour_discovery_crosses_the_switch() {
    let (_topo, d, vms) = rig(
        "v6",
        &[(1, "10.84.0.1", "blue"), (2, "10.84.0.2", "blue")],
        &[],
    );
    vms[0].enable_ipv6("fd84::1").unwrap();
    vms[1].enable_ipv6("fd84::2").unwrap();
    let out = vms[0]
        .exec(
            "ping",
            &["-6", "-c", "3", "-i", "0.2", "-W", "2", "fd84::2"],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "ping6 failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        d.log_text()
    );
    // Echoes are tracked; neighbour discovery is not (only the echo connection is in the table).
    let conns = ct_show(&d, &["--proto", "icmpv6"]);
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(
        (conns[0]["src"].as_str(), conns[0]["state"].as_str()),
        (Some("fd84::1"), Some("established"))
    );
    assert_eq!(conns[0]["packets_orig"], 3);
}

#[test]
fn a_tcp_segment_for_no_connection_is_dropped_and_counted() {
    let (_topo, d, vms) = rig(
        "inv",
        &[(1, "10.85.0.1", "blue"), (2, "10.85.0.2", "blue")],
        &[],
    );
    // Five bare ACKs, crafted on a raw socket in vm1: no stack would send them, no SYN opened them.
    let script = format!(
        r#"
import socket, struct
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst = socket.inet_aton("{src}"), socket.inet_aton("{dst}")
tcp = struct.pack("!HHIIBBHHH", 44444, 7777, 1, 1, 5 << 4, 0x10, 1000, 0, 0)
tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
eth = bytes.fromhex("{dmac}") + bytes.fromhex("{smac}") + b"\x08\x00"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(5):
    s.send(eth + ip + tcp)
"#,
        src = vms[0].ip,
        dst = vms[1].ip,
        dmac = vms[1].mac.replace(':', ""),
        smac = vms[0].mac.replace(':', ""),
    );
    let out = vms[0].exec("python3", &["-c", &script]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let drops = stats(&d, "vm1")["drops"]["ct_invalid"]
            .as_u64()
            .unwrap_or(0);
        if drops == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected 5 ct_invalid drops, saw {drops}"
        );
        sleep(Duration::from_millis(100));
    }
    let ct: Value = serde_json::from_str(&d.ctl_ok(&["--json", "ct", "stats"]).unwrap()).unwrap();
    assert_eq!(ct["invalid"]["tcp_no_connection"], 5, "{ct}");
    assert!(
        ct_show(&d, &["--port", "7777"]).is_empty(),
        "an invalid packet creates no connection"
    );
}

#[test]
fn with_pickup_a_tcp_connection_survives_a_daemon_restart() {
    let (topo, mut d, vms) = rig(
        "pku",
        &[(1, "10.86.0.1", "blue"), (2, "10.86.0.2", "blue")],
        &[],
    );
    d.ctl_ok(&["ct", "policy", "set", "blue", "--pickup", "on"])
        .unwrap();
    let dir = topo.scratch();
    let (src, dst) = (dir.join("paced.src"), dir.join("paced.dst"));
    let data = payload(400_000);
    std::fs::write(&src, &data).unwrap();
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &vms[1].netns,
            "timeout",
            "30",
            "socat",
            "-u",
            "TCP-LISTEN:6000",
        ])
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .spawn()
        .unwrap();
    wait_listening(&vms[1], 6000);
    // 40 chunks of 10 KB, one every 100 ms: the restart happens mid-stream.
    let script = format!(
        "import socket, time\n\
         data = open('{}', 'rb').read()\n\
         s = socket.create_connection(('{}', 6000))\n\
         for i in range(0, len(data), 10000):\n    s.sendall(data[i:i + 10000]); time.sleep(0.1)\n\
         s.close()\n",
        src.display(),
        vms[1].ip
    );
    let sender = Command::new("ip")
        .args([
            "netns",
            "exec",
            &vms[0].netns,
            "timeout",
            "30",
            "python3",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(1500));
    assert!(d.stop().unwrap());
    let d2 = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    assert!(
        wait_child(sender, Duration::from_secs(30)),
        "sender stalled\n{}",
        d2.log_text()
    );
    assert!(
        wait_child(listener, Duration::from_secs(10)),
        "receiver stalled"
    );
    assert!(
        std::fs::read(&dst).unwrap() == data,
        "payload lost or corrupted across the restart"
    );
    let picked = ct_show(&d2, &["--port", "6000"]);
    assert_eq!(
        picked.len(),
        1,
        "the connection was picked up again: {picked:?}"
    );
}

#[test]
fn pktgen_traffic_is_counted_the_same_by_brink_and_the_receiving_kernel() {
    let (_topo, d, vms) = rig(
        "gen",
        &[(1, "10.88.0.1", "blue"), (2, "10.88.0.2", "blue")],
        &[],
    );
    assert!(ping(&vms[0], &vms[1], 1), "warm-up ping");
    let rx = |vm: &Vm| -> u64 {
        let out = vm
            .run("cat", &["/sys/class/net/eth0/statistics/rx_packets"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let tx_to_vm2 = || stats(&d, "vm2")["tx_packets"].as_u64().unwrap();
    let (rx0, tx0) = (rx(&vms[1]), tx_to_vm2());
    let pktgen = brink_bench::daemon::bin_dir().join("brink-pktgen");
    let out = Command::new("ip")
        .args(["netns", "exec", &vms[0].netns])
        .arg(&pktgen)
        .args([
            "--dst-mac",
            &vms[1].mac,
            "--src-ip",
            &vms[0].ip,
            "--dst-ip",
            &vms[1].ip,
        ])
        .args(["--count", "20000", "--seconds", "5", "--flows", "8"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 20000, "{report}");
    sleep(Duration::from_millis(300));
    let (delivered, forwarded) = (rx(&vms[1]) - rx0, tx_to_vm2() - tx0);
    assert!(delivered > 1000, "almost nothing arrived: {delivered}");
    // The two counters are read by separate commands, so a stray frame (ARP) may fall between
    // the reads: allow a handful, no more.
    assert!(
        forwarded.abs_diff(delivered) <= 5,
        "brink forwarded {forwarded} frames to vm2, vm2 received {delivered}"
    );
    let conns = ct_show(&d, &["--proto", "udp", "--port", "9"]);
    assert_eq!(conns.len(), 8, "one connection per flow: {conns:?}");
}

/// The pid of `d`'s brinkd: the process whose command line names its (unique) control socket.
fn daemon_pid(d: &Daemon) -> u32 {
    let socket = d.socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"brinkd"))
                    && args.contains(&socket.as_bytes())
            })
        })
        .expect("brinkd process not found")
}

/// Resumes a process stopped with SIGSTOP when dropped, so a failing test leaves none behind.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        let ok = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
        assert!(ok.unwrap().success(), "cannot stop brinkd");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn kernel_side_drops_show_in_the_xdp_socket_counters() {
    const FIELDS: [&str; 6] = [
        "rx_dropped",
        "rx_invalid_descs",
        "tx_invalid_descs",
        "rx_ring_full",
        "rx_fill_ring_empty_descs",
        "tx_ring_empty_descs",
    ];
    // More frames than a port's fill ring lends the kernel (4,096).
    const SENT: u64 = 20_000;
    let (_topo, d, vms) = rig(
        "xst",
        &[(1, "10.89.0.1", "blue"), (2, "10.89.0.2", "blue")],
        &[],
    );
    assert!(ping(&vms[0], &vms[1], 2), "warm-up ping\n{}", d.log_text());
    for port in ["vm1", "vm2"] {
        let s = stats(&d, port);
        for f in FIELDS {
            assert!(s["xdp_socket"][f].is_u64(), "{port}: no {f}: {s}");
        }
        // Both ports transmitted (the pings), and the kernel found the ring empty after a kick.
        assert!(
            s["xdp_socket"]["tx_ring_empty_descs"].as_u64() > Some(0),
            "{port}: {s}"
        );
    }
    let table = d.ctl_ok(&["stats"]).unwrap();
    assert!(table.contains("XDP_SOCKET"), "{table}");
    let vm_tx_dropped = || -> u64 {
        let out = vms[0]
            .run("cat", &["/sys/class/net/eth0/statistics/tx_dropped"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let before = stats(&d, "vm1");
    let link_dropped = vm_tx_dropped();
    // With brinkd stopped, nothing takes frames from vm1's rx ring: once the fill ring is
    // empty, the kernel drops what arrives.
    let stopped = Stopped::new(daemon_pid(&d));
    let pktgen = brink_bench::daemon::bin_dir().join("brink-pktgen");
    let out = Command::new("ip")
        .args(["netns", "exec", &vms[0].netns])
        .arg(&pktgen)
        .args(["--dst-mac", &vms[1].mac, "--src-ip", &vms[0].ip])
        .args(["--dst-ip", &vms[1].ip, "--count", &SENT.to_string()])
        .args(["--seconds", "10"])
        .output()
        .unwrap();
    drop(stopped);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], SENT, "{report}");
    sleep(Duration::from_millis(500));
    let after = stats(&d, "vm1");
    let grew = |f: &str| {
        let (a, b) = (&after["xdp_socket"][f], &before["xdp_socket"][f]);
        a.as_u64().unwrap() - b.as_u64().unwrap()
    };
    let received = after["rx_packets"].as_u64().unwrap() - before["rx_packets"].as_u64().unwrap();
    let kernel_lost = grew("rx_dropped") + grew("rx_ring_full");
    assert!(
        grew("rx_fill_ring_empty_descs") > 0 && kernel_lost > 0,
        "the kernel dropped frames brinkd did not take, and says so: {after}"
    );
    // Every frame vm1 sent was received by brink, dropped by the kernel in front of brink's
    // socket, or (ptr_ring of the veth full) dropped on the link; a stray ARP may add one.
    let lost_on_link = vm_tx_dropped() - link_dropped;
    let total = received + kernel_lost + lost_on_link;
    assert!(
        (SENT..=SENT + 3).contains(&total),
        "sent {SENT}, received {received}, kernel dropped {kernel_lost}, link dropped \
         {lost_on_link}: {after}"
    );
    assert!(ping(&vms[0], &vms[1], 2), "brink forwards again");
}
