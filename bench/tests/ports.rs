//! AF_XDP ports as clouds have them: many per worker, and with several queues.
//!
//! - brink opens an AF_XDP socket on every receive queue of a port's interface, so frames a VM
//!   sends on queue 1 are switched like those on queue 0 and never reach the host stack instead.
//!   Checked on a multi-queue tap (as libvirt creates one for a guest with `queues=2`; here a
//!   python "guest" holds both queue file descriptors) and on a veth pair with two queues (the VM
//!   picks queue 1 through XPS).
//! - 16 ports on one worker all get receive buffers from its frame pool, and all pass traffic.
//!
//! Needs root and python3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use etherparse::PacketBuilder;

const PYTHON: &str = "/usr/bin/python3";
/// Datagrams sent per queue.
const COUNT: usize = 50;
const UDP_PORT: u16 = 5555;

/// A "guest" on a new multi-queue tap `argv[1]` with two queues. Prints "ready", then reads
/// commands from stdin: `send Q HEX...` writes each frame on queue Q; `count SECONDS MAC` counts,
/// per queue, the frames to MAC that arrive within SECONDS and prints the two counts.
const GUEST: &str = r#"
import fcntl, os, select, struct, sys, time
TUNSETIFF = 0x400454ca
flags = 0x0002 | 0x1000 | 0x0100   # IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE
fds = []
for q in range(2):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", sys.argv[1].encode(), flags))
    fds.append(fd)
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "send":
        for frame in words[2:]:
            os.write(fds[int(words[1])], bytes.fromhex(frame))
        print("sent", flush=True)
    elif words[0] == "count":
        mac, counts = bytes.fromhex(words[2].replace(":", "")), [0, 0]
        end = time.monotonic() + float(words[1])
        while (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select(fds, [], [], left)
            for fd in readable:
                while True:
                    try:
                        frame = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if frame[:6] == mac:
                        counts[fds.index(fd)] += 1
        print(counts[0], counts[1], flush=True)
"#;

/// Counts the UDP datagrams arriving on port `argv[1]` for `argv[2]` seconds; prints the count.
const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
end, n = time.monotonic() + float(sys.argv[2]), 0
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        s.recv(2048)
        n += 1
    except socket.timeout:
        break
print(n, flush=True)
"#;

/// Sends `argv[3]` UDP datagrams to `argv[1]`:`argv[2]`, 2 ms apart.
const SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"queue test %d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.002)
"#;

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

fn ip_bytes(ip: &str) -> [u8; 4] {
    ip.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

/// A UDP datagram from (`src_mac`, `src_ip`) to (`dst_mac`, `dst_ip`):[`UDP_PORT`], in hex.
fn udp_frame(src: (&str, &str), dst: (&str, &str), seq: usize) -> String {
    let payload = format!("queue test {seq}");
    let builder = PacketBuilder::ethernet2(mac_bytes(src.0), mac_bytes(dst.0))
        .ipv4(ip_bytes(src.1), ip_bytes(dst.1), 64)
        .udp(40000, UDP_PORT);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload.as_bytes()).unwrap();
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// A python helper running in `netns` (or the root namespace), talked to line by line.
struct Helper {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Helper {
    fn start(netns: Option<&str>, script: &str, args: &[&str]) -> Self {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "timeout", "60", PYTHON]);
                c
            }
            None => {
                let mut c = Command::new("timeout");
                c.args(["60", PYTHON]);
                c
            }
        };
        let mut child = cmd
            .args(["-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut h = Helper { child, out };
        assert_eq!(h.line(), "ready");
        h
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn say(&mut self, line: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.line()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a receiver in `vm` for `seconds`; read its count with `line()`.
fn receiver(vm: &Vm, seconds: u32) -> Helper {
    Helper::start(
        Some(&vm.netns),
        RECEIVER,
        &[&UDP_PORT.to_string(), &seconds.to_string()],
    )
}

#[test]
fn a_multi_queue_tap_is_switched_on_every_queue() {
    let (topo, d, vms) = rig("mqt", &[(1, "10.0.61.1", "blue")], &[]);
    let vm = &vms[0];
    let tap = format!("{}t", topo.prefix());
    let (guest_mac, guest_ip) = ("02:00:00:00:61:0a", "10.0.61.10");
    let mut guest = Helper::start(None, GUEST, &[&tap]);
    assert_eq!(
        std::fs::read_dir(format!("/sys/class/net/{tap}/queues"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("rx-"))
            .count(),
        2,
        "the tap has two receive queues"
    );
    brink_bench::run("ip", &["link", "set", &tap, "up"]).unwrap();
    d.ctl_ok(&[
        "port",
        "add",
        "guest",
        "--iface",
        &tap,
        "--network",
        "blue",
        "--mac",
        guest_mac,
        "--ip",
        guest_ip,
        "--port-security",
        "off",
    ])
    .unwrap();

    // Guest to VM, on each queue in turn.
    for queue in [1, 0] {
        let mut rx = receiver(vm, 3);
        let frames: Vec<String> = (0..COUNT)
            .map(|i| udp_frame((guest_mac, guest_ip), (&vm.mac, &vm.ip), i))
            .collect();
        assert_eq!(
            guest.say(&format!("send {queue} {}", frames.join(" "))),
            "sent"
        );
        let got: usize = rx.line().parse().unwrap();
        assert_eq!(got, COUNT, "datagrams the guest sent on queue {queue}");
    }
    let s = stats(&d, "guest");
    assert_eq!(s["rx_packets"], 2 * COUNT as u64, "{s}");

    // VM to guest: brink transmits on the tap, and the guest reads it from a queue.
    vm.run(
        "ip",
        &["neigh", "add", guest_ip, "lladdr", guest_mac, "dev", "eth0"],
    )
    .unwrap();
    let send = vm
        .exec(
            "timeout",
            &[
                "20",
                PYTHON,
                "-c",
                SENDER,
                guest_ip,
                &UDP_PORT.to_string(),
                &COUNT.to_string(),
            ],
        )
        .unwrap();
    assert!(send.status.success());
    let counts = guest.say(&format!("count 1 {guest_mac}"));
    let total: usize = counts.split(' ').map(|n| n.parse::<usize>().unwrap()).sum();
    assert_eq!(total, COUNT, "frames the guest read per queue: {counts}");
    drop(d);
}

/// Two VMs, `a` with two queues whose traffic leaves on queue 1 (XPS maps core 0 to it), `b`
/// with one, around a brinkd with `workers` workers; both ports with port security off.
fn two_queue_rig(tag: &str, workers: &str) -> (Topology, brink_bench::daemon::Daemon, Vm, Vm) {
    let mut topo = Topology::new(tag);
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    let d =
        brink_bench::daemon::Daemon::start(&dir, &["--idle-sleep", "--cores", workers]).unwrap();
    d.ctl_ok(&["network", "add", "blue"]).unwrap();
    let a = topo.add_vm_with_queues(1, "10.0.62.1", 2).unwrap();
    let b = topo.add_vm(2, "10.0.62.2").unwrap();
    for (name, vm) in [("vm1", &a), ("vm2", &b)] {
        d.add_vm_port(
            name,
            vm,
            "blue",
            &["--ip", &vm.ip, "--port-security", "off"],
        )
        .unwrap();
    }
    for (queue, cpus) in [(0, "2"), (1, "1")] {
        a.run(
            "sh",
            &[
                "-c",
                &format!("echo {cpus} > /sys/class/net/eth0/queues/tx-{queue}/xps_cpus"),
            ],
        )
        .unwrap();
    }
    a.run(
        "ip",
        &["neigh", "add", &b.ip, "lladdr", &b.mac, "dev", "eth0"],
    )
    .unwrap();
    (topo, d, a, b)
}

/// Sends [`COUNT`] datagrams from `a` (on its queue 1) to `b`; returns how many arrived.
fn send_on_queue_1(a: &Vm, b: &Vm) -> usize {
    let mut rx = receiver(b, 4);
    let send = a
        .exec(
            "taskset",
            &[
                "-c",
                "0",
                PYTHON,
                "-c",
                SENDER,
                &b.ip,
                &UDP_PORT.to_string(),
                &COUNT.to_string(),
            ],
        )
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    rx.line().parse().unwrap()
}

#[test]
fn a_veth_with_two_queues_is_switched_on_queue_1() {
    let (_topo, d, a, b) = two_queue_rig("mqv", "1");
    assert_eq!(send_on_queue_1(&a, &b), COUNT, "datagrams sent on queue 1");

    // Prove the frames took queue 1, where the driver counts them (native XDP only).
    let ethtool = Command::new("ethtool").args(["-S", &a.host_if]).output();
    let text = ethtool
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    match text
        .lines()
        .find(|l| l.trim().starts_with("rx_queue_1_xdp_packets:"))
    {
        Some(line) => {
            let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= COUNT as u64, "queue 1 carried {n} frames: {line}");
        }
        None => eprintln!("NOTE: no per-queue XDP counter on {}: {text}", a.host_if),
    }
    drop(d);
}

#[test]
fn the_queues_of_a_port_are_spread_over_the_workers() {
    // vm1 (two queues) goes to worker 0, so its queue 1 to worker 1; vm2 to worker 1.
    let (_topo, d, a, b) = two_queue_rig("mqw", "0,1");
    let ports = d.ctl_ok(&["--json", "port", "list"]).unwrap();
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(ports[0]["worker"], 0, "{ports}");
    assert_eq!(ports[1]["worker"], 1, "{ports}");
    assert_eq!(send_on_queue_1(&a, &b), COUNT, "datagrams sent on queue 1");
    let all = d.ctl_ok(&["--json", "stats"]).unwrap();
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let workers = all["workers"].as_array().unwrap();
    let polls = |w: usize| workers[w]["polls"].to_string();
    assert_eq!(polls(0), r#"[{"port":"vm1","queues":[0]}]"#, "{all}");
    assert_eq!(
        polls(1),
        r#"[{"port":"vm1","queues":[1]},{"port":"vm2","queues":[0]}]"#,
        "{all}"
    );
    let text = d.ctl_ok(&["stats", "--workers"]).unwrap();
    assert!(text.contains("vm1[1] vm2[0]"), "{text}");
    // Worker 1 polls vm1's queue 1 and sends on vm2 itself: nothing crossed between workers.
    assert!(workers[1]["batches"].as_u64().unwrap() > 0, "{all}");
    for w in workers {
        assert_eq!(
            w["cross_tx"], 0,
            "a frame went through another worker: {all}"
        );
    }
    assert!(stats(&d, "vm1")["rx_packets"].as_u64().unwrap() >= COUNT as u64);
    drop(d);
}

#[test]
fn sixteen_ports_on_one_worker_all_pass_traffic() {
    const PORTS: u8 = 16;
    let ips: Vec<String> = (1..=PORTS).map(|n| format!("10.0.63.{n}")).collect();
    let vms: Vec<(u8, &str, &str)> = (1..=PORTS)
        .zip(&ips)
        .map(|(n, ip)| (n, ip.as_str(), "blue"))
        .collect();
    let (_topo, d, vms) = rig("p16", &vms, &[]);
    // Each VM pings the next one, all at once.
    let pings: Vec<Child> = vms
        .iter()
        .zip(vms.iter().cycle().skip(1))
        .map(|(from, to)| {
            Command::new("ip")
                .args(["netns", "exec", &from.netns, "ping", "-c", "3", "-i", "0.2"])
                .args(["-W", "2", "-w", "10", &to.ip])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let failed: Vec<usize> = pings
        .into_iter()
        .enumerate()
        .filter_map(|(i, child)| (!wait_child(child, Duration::from_secs(15))).then_some(i + 1))
        .collect();
    if !failed.is_empty() {
        for n in 1..=PORTS {
            eprintln!("vm{n}: {}", stats(&d, &format!("vm{n}")));
        }
    }
    assert!(failed.is_empty(), "VMs whose ping failed: {failed:?}");
    for n in 1..=PORTS {
        let s = stats(&d, &format!("vm{n}"));
        assert!(s["rx_packets"].as_u64().unwrap() >= 6, "vm{n}: {s}");
        assert_eq!(s["xdp_socket"]["rx_fill_ring_empty_descs"], 0, "vm{n}: {s}");
    }
}

/// Sets `vm`'s eth0 MTU.
fn set_vm_mtu(vm: &Vm, mtu: u32) {
    vm.run("ip", &["link", "set", "eth0", "mtu", &mtu.to_string()])
        .unwrap();
}

/// Whether `count` pings of `size` bytes, not to be fragmented, from `from` to `to` all pass.
fn ping_df(from: &Vm, to: &Vm, size: u32, count: u32) -> bool {
    let (size, count) = (size.to_string(), count.to_string());
    let args = [
        "-c", &count, "-i", "0.2", "-W", "2", "-M", "do", "-s", &size, &to.ip,
    ];
    from.exec("ping", &args).unwrap().status.success()
}

fn drops(d: &brink_bench::daemon::Daemon, port: &str, reason: &str) -> u64 {
    stats(d, port)["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn jumbo_frames_cross_a_network_with_mtu_9000_and_oversize_frames_are_counted() {
    let mut topo = Topology::new("jmb");
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    let d = brink_bench::daemon::Daemon::start(&dir, &["--idle-sleep"]).unwrap();
    d.ctl_ok(&["network", "add", "jumbo", "--mtu", "9000"])
        .unwrap();
    d.ctl_ok(&["network", "add", "small"]).unwrap();
    let list = d.ctl_ok(&["--json", "network", "list"]).unwrap();
    assert!(list.contains("\"mtu\": 9000"), "{list}");
    let vms: Vec<Vm> = [
        (1, "10.0.64.1"),
        (2, "10.0.64.2"),
        (3, "10.0.65.3"),
        (4, "10.0.65.4"),
    ]
    .iter()
    .map(|&(n, ip)| topo.add_vm(n, ip).unwrap())
    .collect();
    for (i, vm) in vms.iter().enumerate() {
        let net = if i < 2 { "jumbo" } else { "small" };
        // vm3's MTU is larger than its network's (see below).
        set_vm_mtu(vm, if i < 3 { 9000 } else { 1500 });
        d.add_vm_port(
            &format!("vm{}", i + 1),
            vm,
            net,
            &["--port-security", "off"],
        )
        .unwrap();
    }
    let host_mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", vms[0].host_if));
    assert_eq!(
        host_mtu.unwrap().trim(),
        "9000",
        "brink sets its port's MTU"
    );

    // The largest unfragmented ping of MTU 9000.
    assert!(ping_df(&vms[0], &vms[1], 8972, 3), "8,972-byte pings");
    // TCP with 9,000-byte frames, intact.
    let data = payload(16 << 20);
    assert!(
        tcp_transfer(&topo, &vms[0], &vms[1], &data) == data,
        "16 MB at MTU 9000"
    );
    let s = stats(&d, "vm1");
    assert_eq!(s["xdp_socket"]["jumbo_dropped"], 0, "{s}");

    // A VM whose MTU is larger than its network's: brink drops what does not fit, and counts
    // it. (The host end's MTU is raised by hand, as a misconfigured host would have it.)
    brink_bench::run("ip", &["link", "set", &vms[2].host_if, "mtu", "9000"]).unwrap();
    assert!(ping(&vms[2], &vms[3], 1), "small pings still pass");
    let before = drops(&d, "vm3", "mtu_exceeded");
    assert!(
        !ping_df(&vms[2], &vms[3], 3000, 2),
        "a 3,028-byte packet crossed an MTU 1500 network"
    );
    assert!(drops(&d, "vm3", "mtu_exceeded") >= before + 2);
    drop(d);
}
