//! Attacks from inside a tenant VM: Ethernet frames crafted with etherparse, sent raw from the
//! VM's namespace (an AF_PACKET socket, as a VM's own kernel would put them on the wire), and
//! what arrives at the other VMs captured the same way. Every frame carries the attacker's own
//! MAC and IP, so port security has no reason to drop it as spoofed; the security groups alone
//! must stop it. Each test also checks a frame that must arrive, so a silent capture cannot pass
//! for a blocked attack, and the drop counters. Needs root and python3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_bench::daemon::Daemon;
use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// Seconds between two frames a VM sends.
const GAP: &str = "0.2";

const BROADCAST: [u8; 6] = [0xff; 6];
/// An IPv4 multicast MAC (all-hosts group).
const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];
/// A unicast MAC no port has.
const UNKNOWN: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0xee];

/// Sends each frame given in hex, `argv[1]` seconds apart, out of eth0.
const SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for i, frame in enumerate(sys.argv[2:]):
    if i:
        time.sleep(float(sys.argv[1]))
    s.send(bytes.fromhex(frame))
"#;

/// Prints "ready", then collects the frames arriving on eth0 (not those it sends) until stdin
/// closes (and 0.3 s more for frames in flight) or `argv[1]` seconds pass; prints them in hex.
const CAPTURE: &str = r#"
import os, select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 3))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
watch = [s, sys.stdin]
frames = []
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    readable, _, _ = select.select(watch, [], [], left)
    if sys.stdin in readable and not os.read(0, 1):
        watch = [s]
        end = min(end, time.monotonic() + 0.3)
    if s in readable:
        data, addr = s.recvfrom(65535)
        if addr[0] == "eth0" and addr[2] != socket.PACKET_OUTGOING:
            frames.append(data.hex())
print("\n".join(frames), flush=True)
"#;

/// What arrives at one VM's eth0 while it runs.
struct Capture {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    netns: String,
}

impl Capture {
    /// Starts capturing in `vm` and waits until the socket is bound.
    fn start(vm: &Vm) -> Capture {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &vm.netns, "timeout", "25"])
            .args([PYTHON, "-c", CAPTURE, "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.trim() != "ready" {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("capture in {} did not start: {err}", vm.netns);
        }
        Capture {
            child,
            stdin,
            stdout,
            netns: vm.netns.clone(),
        }
    }

    /// Stops the capture and returns the frames that arrived.
    fn finish(mut self) -> Vec<Vec<u8>> {
        drop(self.stdin.take());
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "capture in {} failed", self.netns);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| unhex(l.trim()))
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends `frames` out of `vm`'s eth0 exactly as they are, [`GAP`] apart.
fn send(vm: &Vm, frames: &[Vec<u8>]) {
    let hexed: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    let mut args = vec!["20", PYTHON, "-c", SENDER, GAP];
    args.extend(hexed.iter().map(String::as_str));
    let out = vm.exec("timeout", &args).unwrap();
    assert!(
        out.status.success(),
        "sending from {}: {}",
        vm.netns,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `frames` from `from` while capturing at each of `at`; returns what each captured.
fn exchange(from: &Vm, at: &[&Vm], frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let captures: Vec<Capture> = at.iter().map(|vm| Capture::start(vm)).collect();
    send(from, frames);
    captures.into_iter().map(Capture::finish).collect()
}

/// How many of `got` are `frame`, byte for byte (a receiver may see zero padding after it).
fn arrivals(got: &[Vec<u8>], frame: &[u8]) -> usize {
    got.iter()
        .filter(|g| g.len() >= frame.len() && g[..frame.len()] == *frame)
        .filter(|g| g[frame.len()..].iter().all(|&b| b == 0))
        .count()
}

/// Checks that each of `frames` arrived in `got` (`want`) or never did; `at` names the capture.
fn expect(got: &[Vec<u8>], frames: &[Vec<u8>], want: bool, at: &str) {
    for f in frames {
        let n = arrivals(got, f);
        let seen: Vec<String> = got
            .iter()
            .map(|g| format!("{} {}", describe(g), hex(g)))
            .collect();
        if want {
            assert!(
                n >= 1,
                "{at}: {} did not arrive; got {seen:#?}",
                describe(f)
            );
        } else {
            assert!(
                n == 0,
                "{at}: {} arrived ({}); got {seen:#?}",
                describe(f),
                hex(f)
            );
        }
    }
}

/// A frame in one line, as etherparse reads it, for failure messages.
fn describe(frame: &[u8]) -> String {
    let to = frame.get(..6).map(mac_string).unwrap_or_default();
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return format!("to {to}: {} bytes etherparse cannot read", frame.len());
    };
    let ips = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            format!("{} > {}", h.source_addr(), h.destination_addr())
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            format!("{} > {}", h.source_addr(), h.destination_addr())
        }
        Some(NetSlice::Arp(_)) => return format!("to {to}: arp"),
        None => return format!("to {to}: not IP"),
    };
    let l4 = match &p.transport {
        Some(TransportSlice::Tcp(t)) => format!(
            "tcp {} > {} seq {}{}{}{} len {}",
            t.source_port(),
            t.destination_port(),
            t.sequence_number(),
            if t.syn() { " SYN" } else { "" },
            if t.rst() { " RST" } else { "" },
            if t.ack() { " ACK" } else { "" },
            t.payload().len()
        ),
        Some(TransportSlice::Udp(u)) => format!(
            "udp {} > {} {:?}",
            u.source_port(),
            u.destination_port(),
            String::from_utf8_lossy(u.payload())
        ),
        Some(TransportSlice::Icmpv4(i)) => format!("icmp type {}", i.type_u8()),
        Some(TransportSlice::Icmpv6(i)) => format!("icmpv6 type {}", i.type_u8()),
        _ => "other".into(),
    };
    format!("to {to}: {ips} {l4}")
}

fn mac_string(m: &[u8]) -> String {
    let parts: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

fn mac(vm: &Vm) -> [u8; 6] {
    let bytes: Vec<u8> = vm
        .mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn ip(vm: &Vm) -> [u8; 4] {
    vm.ip.parse::<Ipv4Addr>().unwrap().octets()
}

/// The IPv6 link-local address `vm`'s MAC gives by modified EUI-64 (port security allows it).
fn link_local(vm: &Vm) -> [u8; 16] {
    let m = mac(vm);
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xfe, 0x80]);
    a[8..].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    a
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

/// The Ethernet multicast address of IPv6 group `group`.
fn v6_group_mac(group: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// The solicited-node multicast group of `addr`.
fn solicited_node(addr: [u8; 16]) -> [u8; 16] {
    let mut g = v6("ff02::1:ff00:0");
    g[13..].copy_from_slice(&addr[13..]);
    g
}

/// A TCP SYN, or a RST, with sequence number `seq` (etherparse computes the checksums).
fn tcp(from: &Vm, to: &Vm, dst_mac: [u8; 6], ports: (u16, u16), seq: u32, rst: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(from), dst_mac)
        .ipv4(ip(from), ip(to), 64)
        .tcp(ports.0, ports.1, seq, if rst { 0 } else { 64240 });
    let b = if rst { b.rst() } else { b.syn() };
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn syn(from: &Vm, to: &Vm, dst_mac: [u8; 6], sport: u16, dport: u16) -> Vec<u8> {
    tcp(
        from,
        to,
        dst_mac,
        (sport, dport),
        1_000_000 + u32::from(sport),
        false,
    )
}

fn udp(from: &Vm, to: &Vm, dst_mac: [u8; 6], sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(from), dst_mac)
        .ipv4(ip(from), ip(to), 64)
        .udp(sport, dport)
        .write(&mut out, data)
        .unwrap();
    out
}

/// An ICMP message of `kind` with bytes 4-7 `rest` and `data` after them.
fn icmp(from: &Vm, to: &Vm, dst_mac: [u8; 6], kind: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(from), dst_mac)
        .ipv4(ip(from), ip(to), 64)
        .icmpv4_raw(kind, 0, rest)
        .write(&mut out, data)
        .unwrap();
    out
}

/// An ICMPv6 message of `kind` from `from`'s link-local address to `dst` (at its multicast MAC,
/// or at `dst_mac`), with bytes 4-7 `rest` and `data` after them.
fn icmpv6(from: &Vm, dst: [u8; 16], dst_mac: Option<[u8; 6]>, kind: u8, rest: [u8; 4]) -> Icmp6 {
    Icmp6 {
        src_mac: mac(from),
        dst_mac: dst_mac.unwrap_or(v6_group_mac(dst)),
        src: link_local(from),
        dst,
        kind,
        rest,
        hops: 255,
    }
}

/// An ICMPv6 message to build.
struct Icmp6 {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    kind: u8,
    rest: [u8; 4],
    hops: u8,
}

impl Icmp6 {
    fn build(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv6(self.src, self.dst, self.hops)
            .icmpv6_raw(self.kind, 0, self.rest)
            .write(&mut out, data)
            .unwrap();
        out
    }

    /// As MLD is sent: hop limit 1, behind a hop-by-hop header with the router alert option.
    fn mld(mut self, data: &[u8]) -> Vec<u8> {
        self.hops = 1;
        with_ext_header(self.build(data), 0, [0, 0, 5, 2, 0, 0, 1, 0])
    }
}

/// `frame` (Ethernet + IPv6) with an 8-byte extension header of type `kind` inserted before its
/// payload; `ext[0]` is set to the next header. The transport checksum stays right (the
/// pseudo-header has the upper-layer length).
fn with_ext_header(mut frame: Vec<u8>, kind: u8, mut ext: [u8; 8]) -> Vec<u8> {
    let (next, len) = (14 + 6, 14 + 4);
    ext[0] = frame[next];
    frame[next] = kind;
    let plen = u16::from_be_bytes([frame[len], frame[len + 1]]) + 8;
    frame[len..len + 2].copy_from_slice(&plen.to_be_bytes());
    frame.splice(14 + 40..14 + 40, ext);
    frame
}

/// `frame` (Ethernet, IPv4 without options) with the transport checksum at byte `field` of the
/// transport header as a sender with checksum offload leaves it: the one's-complement sum of the
/// pseudo-header (addresses, protocol, transport length) folded to 16 bits, not complemented.
fn partial(mut frame: Vec<u8>, field: usize) -> Vec<u8> {
    let header = &frame[14..34];
    let words: u32 = header[12..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let mut sum = words + u32::from(header[9]) + (frame.len() - 34) as u32;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let at = 34 + field;
    frame[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    frame
}

/// `packet` sent the two-step way: first to `first` (flooded), then the same to `victim`'s MAC.
fn two_step(first: [u8; 6], victim: &Vm, packet: impl Fn([u8; 6]) -> Vec<u8>) -> [Vec<u8>; 2] {
    [packet(first), packet(mac(victim))]
}

/// VMs with port security on and no groups yet.
fn secured(tag: &str, subnet: u8, count: u8) -> (Topology, Daemon, Vec<Vm>) {
    let ips: Vec<String> = (1..=count).map(|n| format!("10.{subnet}.0.{n}")).collect();
    let vms: Vec<(u8, &str, &str)> = (1..=count)
        .zip(&ips)
        .map(|(n, ip)| (n, ip.as_str(), "blue"))
        .collect();
    rig_with(tag, &vms, &[], &[])
}

fn ctl(d: &Daemon, args: &[&str]) -> String {
    d.ctl_ok(args).unwrap()
}

/// Adds a rule to `group` with `args` (`sg rule add` options, space-separated).
fn rule(d: &Daemon, group: &str, args: &str) {
    let mut all = vec!["sg", "rule", "add", group];
    all.extend(args.split_whitespace());
    ctl(d, &all);
}

/// The ingress rules of the issue's group `ancsg` (which allows any IPv4 out).
const ANCSG: [&str; 5] = [
    "--protocol icmp",
    "--protocol tcp --port 22",
    "--protocol tcp --port 5201",
    "--protocol udp --port 4444",
    "--protocol udp --port-min 5000 --port-max 19999",
];

/// Adds stateful group `name` allowing any IPv4 out and `ingress` in (the `sg rule add` options
/// of each rule), and puts `ports` in it.
fn group(d: &Daemon, name: &str, ingress: &[&str], ports: &[&str]) {
    ctl(d, &["sg", "add", name]);
    rule(d, name, "--direction egress");
    for r in ingress {
        rule(d, name, &format!("--direction ingress {r}"));
    }
    for p in ports {
        ctl(d, &["port", "set", p, "--sg", name]);
    }
}

/// Every drop counter of `port`, to compare before and after.
fn all_drops(d: &Daemon, port: &str) -> Value {
    stats(d, port)["drops"].clone()
}

/// How much each drop counter of `port` grew since `before` (non-zero ones only).
fn drops_since(d: &Daemon, port: &str, before: &Value) -> Vec<(String, u64)> {
    let now = all_drops(d, port);
    let mut grown: Vec<(String, u64)> = now
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let was = before[k].as_u64().unwrap_or(0);
            (k.clone(), v.as_u64().unwrap_or(0) - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    grown.sort();
    grown
}

/// `pairs` in the form [`drops_since`] returns.
fn grew(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = pairs.iter().map(|&(k, n)| (k.to_string(), n)).collect();
    v.sort();
    v
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ctl(d, &all)).unwrap()
}

/// The tracked connections with source port `sport`.
fn conns_from(d: &Daemon, sport: u16) -> Vec<Value> {
    let all = json(d, &["ct", "show", "--port", &sport.to_string()]);
    let all = all.as_array().unwrap();
    all.iter()
        .filter(|c| c["sport"].as_u64() == Some(u64::from(sport)))
        .cloned()
        .collect()
}

/// Sends `all` from `attacker` (vm1) and checks that `victim` receives every one of `allowed`
/// and none of `denied`, each of which counted one `ingress_denied` on vm1: a flood that no port
/// admits, or a unicast frame the victim refuses.
fn refused_alone(
    d: &Daemon,
    attacker: &Vm,
    victim: &Vm,
    all: &[Vec<u8>],
    denied: &[Vec<u8>],
    allowed: &[Vec<u8>],
) {
    let before = all_drops(d, "vm1");
    let got = &exchange(attacker, &[victim], all)[0];
    expect(got, denied, false, "victim");
    expect(got, allowed, true, "victim");
    assert_eq!(
        drops_since(d, "vm1", &before),
        grew(&[("ingress_denied", denied.len() as u64)])
    );
}

#[test]
fn flooding_first_does_not_open_a_port_the_victim_denies() {
    let (_topo, d, vms) = secured("afl", 80, 2);
    let (attacker, victim) = (&vms[0], &vms[1]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    let (mut denied, mut allowed, mut all) = (vec![], vec![], vec![]);
    for (i, first) in [BROADCAST, MULTICAST, UNKNOWN].into_iter().enumerate() {
        let sport = 40_000 + 10 * i as u16;
        let tcp80 = two_step(first, victim, |m| syn(attacker, victim, m, sport, 80));
        let udp53 = two_step(first, victim, |m| {
            udp(attacker, victim, m, sport + 1, 53, b"query")
        });
        let tcp22 = two_step(first, victim, |m| syn(attacker, victim, m, sport + 2, 22));
        let udp4444 = two_step(first, victim, |m| {
            udp(attacker, victim, m, sport + 3, 4444, b"hello")
        });
        all.extend(
            [&tcp80, &udp53, &tcp22, &udp4444]
                .into_iter()
                .flatten()
                .cloned(),
        );
        denied.extend(tcp80.into_iter().chain(udp53));
        allowed.extend(tcp22.into_iter().chain(udp4444));
    }
    refused_alone(&d, attacker, victim, &all, &denied, &allowed);
    for sport in [40_000, 40_001, 40_010, 40_011, 40_020, 40_021] {
        assert_eq!(conns_from(&d, sport), Vec::<Value>::new(), "port {sport}");
    }
}

#[test]
fn flooding_first_does_not_open_an_icmp_type_the_victim_denies() {
    let (_topo, d, vms) = secured("afi", 81, 2);
    let (attacker, victim) = (&vms[0], &vms[1]);
    group(&d, "ancsg", &ANCSG, &["vm1"]);
    // The victim takes timestamp requests (13) but not echo requests (8).
    let mut quiet = ANCSG;
    quiet[0] = "--protocol icmp --icmp-type 13";
    group(&d, "quiet", &quiet, &["vm2"]);
    let (mut denied, mut allowed, mut all) = (vec![], vec![], vec![]);
    for (i, first) in [BROADCAST, MULTICAST, UNKNOWN].into_iter().enumerate() {
        let id = 0x41 + i as u8;
        let echo = two_step(first, victim, |m| {
            icmp(attacker, victim, m, 8, [0, id, 0, 1], b"ping")
        });
        let stamp = two_step(first, victim, |m| {
            icmp(attacker, victim, m, 13, [0, id, 0, 1], &[0; 12])
        });
        all.extend(echo.iter().chain(&stamp).cloned());
        denied.extend(echo);
        allowed.extend(stamp);
    }
    refused_alone(&d, attacker, victim, &all, &denied, &allowed);
}

#[test]
fn a_flood_a_bystander_admits_does_not_open_the_victim() {
    let (_topo, d, vms) = secured("afb", 82, 3);
    let (attacker, victim, bystander) = (&vms[0], &vms[1], &vms[2]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    group(&d, "web", &["--protocol tcp --port 80"], &["vm3"]);
    // The bystander admits the flood, so the connection exists; the victim still judges it.
    let flood = syn(attacker, victim, BROADCAST, 41_000, 80);
    let direct = syn(attacker, victim, mac(victim), 41_000, 80);
    // Sent to the bystander first, the bystander becomes its receiver; still not the victim.
    let flood2 = syn(attacker, victim, BROADCAST, 41_001, 80);
    let via = syn(attacker, victim, mac(bystander), 41_001, 80);
    let direct2 = syn(attacker, victim, mac(victim), 41_001, 80);
    let all = [flood, direct, flood2, via, direct2];
    let before = all_drops(&d, "vm1");
    let got = exchange(attacker, &[victim, bystander], &all);
    expect(&got[0], &all, false, "victim");
    expect(
        &got[1],
        &[all[0].clone(), all[2].clone(), all[3].clone()],
        true,
        "bystander",
    );
    // The victim refuses its copy of each flood and each frame sent to it.
    assert_eq!(
        drops_since(&d, "vm1", &before),
        grew(&[("ingress_denied", 4)])
    );
    let conn = &conns_from(&d, 41_001)[0];
    assert_eq!(conn["ports"], serde_json::json!(["vm1", "vm3"]), "{conn}");
}

#[test]
fn an_icmp_error_does_not_make_the_victim_receive_a_flooded_connection() {
    let (_topo, d, vms) = secured("afe", 83, 3);
    let (attacker, victim, bystander) = (&vms[0], &vms[1], &vms[2]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    group(&d, "web", &["--protocol tcp --port 80"], &["vm3"]);
    let sport = 41_100;
    // The flood creates the connection (the bystander admits it) with no receiver yet.
    let flood = syn(attacker, victim, BROADCAST, sport, 80);
    // An ICMP error about the connection's reply direction travels in its original direction;
    // the victim admits ICMP, so it must not become the receiver of the TCP connection.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(ip(victim), ip(attacker), 64)
        .tcp(80, sport, 7, 64240)
        .syn()
        .ack(1_000_000 + u32::from(sport) + 1)
        .write(&mut quoted, &[])
        .unwrap();
    let mut error = Vec::new();
    PacketBuilder::ethernet2(mac(attacker), mac(victim))
        .ipv4(ip(attacker), ip(victim), 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut error, &quoted[..28])
        .unwrap();
    let direct = syn(attacker, victim, mac(victim), sport, 80);
    let got = exchange(
        attacker,
        &[victim, bystander],
        &[flood.clone(), error, direct.clone()],
    );
    expect(&got[1], std::slice::from_ref(&flood), true, "bystander");
    let conn = conns_from(&d, sport);
    assert!(
        conn.iter().all(|c| c["ports"][1] != "vm2"),
        "the victim became the receiver: {conn:?}"
    );
    expect(&got[0], &[flood, direct], false, "victim");
}

#[test]
fn a_remote_group_rule_admits_its_members_only_on_its_port() {
    let (_topo, d, vms) = secured("afr", 84, 3);
    let (attacker, victim, friend) = (&vms[0], &vms[1], &vms[2]);
    group(&d, "ancsg", &ANCSG, &["vm1"]);
    group(&d, "trusted", &[], &["vm3"]);
    // The attacker's group is trusted for SSH, not for the web port.
    group(
        &d,
        "web",
        &[
            "--protocol tcp --port 80 --remote-group trusted",
            "--protocol tcp --port 22 --remote-group ancsg",
        ],
        &["vm2"],
    );
    let web = two_step(BROADCAST, victim, |m| syn(attacker, victim, m, 42_000, 80));
    let ssh = two_step(BROADCAST, victim, |m| syn(attacker, victim, m, 42_001, 22));
    let trusted = two_step(BROADCAST, victim, |m| syn(friend, victim, m, 42_002, 80));
    let (before1, before3) = (all_drops(&d, "vm1"), all_drops(&d, "vm3"));
    let at_victim = Capture::start(victim);
    send(attacker, &[web.clone(), ssh.clone()].concat());
    send(friend, &trusted);
    let got = at_victim.finish();
    expect(&got, &web, false, "victim");
    expect(&got, &ssh, true, "victim");
    expect(&got, &trusted, true, "victim");
    // vm1: the web flood no port admits, its unicast copy, and vm3 refusing the SSH flood.
    assert_eq!(
        drops_since(&d, "vm1", &before1),
        grew(&[("ingress_denied", 3)])
    );
    // vm3: vm1 (no web rule) refusing the trusted flood.
    assert_eq!(
        drops_since(&d, "vm3", &before3),
        grew(&[("ingress_denied", 1)])
    );
}

#[test]
fn icmpv6_from_a_vm_passes_only_neutron_base_types() {
    let (_topo, d, vms) = secured("af6", 85, 3);
    let (vm1, vm2, vm3) = (&vms[0], &vms[1], &vms[2]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2", "vm3"]);
    let all_nodes = v6("ff02::1");
    let group_addr = v6("ff02::1:ff00:1");
    let sll = |vm: &Vm, kind: u8| [&[kind, 1][..], &mac(vm)].concat();
    // Refused: a redirect to vm2, MLDv2 and MLDv1 reports, a router advertisement, a router
    // solicitation (a VM may send it, no VM takes it), an advertisement for vm2's address.
    let redirect = icmpv6(vm1, link_local(vm2), Some(mac(vm2)), 137, [0; 4])
        .build(&[v6("fe80::bad"), v6("2001:db8::1")].concat());
    let report2 = icmpv6(vm1, v6("ff02::16"), None, 143, [0, 0, 0, 1])
        .mld(&[&[4, 0, 0, 0][..], &group_addr].concat());
    let report1 = icmpv6(vm1, group_addr, None, 131, [0; 4]).mld(&group_addr);
    let ra = icmpv6(vm1, all_nodes, None, 134, [64, 0, 0x07, 0x08])
        .build(&[&[0; 8][..], &sll(vm1, 1)].concat());
    let rs = icmpv6(vm1, v6("ff02::2"), None, 133, [0; 4]).build(&sll(vm1, 1));
    let na_spoofed = icmpv6(vm1, all_nodes, None, 136, [0x20, 0, 0, 0])
        .build(&[&link_local(vm2)[..], &sll(vm1, 2)].concat());
    // Allowed without a rule: a solicitation for vm2, an advertisement for vm1's own address,
    // a listener query.
    let ns = icmpv6(vm1, solicited_node(link_local(vm2)), None, 135, [0; 4])
        .build(&[&link_local(vm2)[..], &sll(vm1, 1)].concat());
    let na = icmpv6(vm1, all_nodes, None, 136, [0x20, 0, 0, 0])
        .build(&[&link_local(vm1)[..], &sll(vm1, 2)].concat());
    let query = icmpv6(vm1, all_nodes, None, 130, [0x27, 0x10, 0, 0]).mld(&[0; 16]);
    let refused = [redirect, report2, report1, ra, rs, na_spoofed];
    let passed = [ns, na, query];
    let before = all_drops(&d, "vm1");
    let got = exchange(
        vm1,
        &[vm2, vm3],
        &[refused.to_vec(), passed.to_vec()].concat(),
    );
    for (got, at) in got.iter().zip(["vm2", "vm3"]) {
        expect(got, &refused, false, at);
        expect(got, &passed, true, at);
    }
    assert_eq!(
        drops_since(&d, "vm1", &before),
        grew(&[
            ("egress_denied", 3),
            ("router_advert", 1),
            ("ingress_denied", 2),
            ("spoofed_nd", 1),
        ])
    );
}

#[test]
fn fragment_headers_do_not_hide_router_advertisements_or_dhcp_offers() {
    let (_topo, d, vms) = secured("afg", 86, 2);
    let (vm1, vm2) = (&vms[0], &vms[1]);
    // Groups that let everything through both ways, stateful and stateless: only port security
    // stands.
    for (name, flag) in [("open", ""), ("flat", "--stateless")] {
        let mut add = vec!["sg", "add", name];
        add.extend(flag.split_whitespace());
        ctl(&d, &add);
        for r in [
            "--direction egress",
            "--direction egress --ethertype IPv6",
            "--direction ingress",
            "--direction ingress --ethertype IPv6",
        ] {
            rule(&d, name, r);
        }
    }
    let ra = icmpv6(vm1, v6("ff02::1"), None, 134, [64, 0, 0x07, 0x08])
        .build(&[&[0; 8][..], &[1, 1], &mac(vm1)].concat());
    // The same advertisement as an atomic fragment (offset 0, no more fragments), and behind
    // an empty hop-by-hop header.
    let ra_fragment = with_ext_header(ra.clone(), 44, [0, 0, 0, 0, 0, 0, 0x12, 0x34]);
    let ra_hop = with_ext_header(ra.clone(), 0, [0, 0, 1, 4, 0, 0, 0, 0]);
    let offer = udp(vm1, vm2, BROADCAST, 67, 68, &[2; 240]);
    // The same offer with the more-fragments bit set: its UDP header is all there.
    let mut offer_fragment = offer.clone();
    offer_fragment[14 + 6] |= 0x20;
    let (mut h, _) = etherparse::Ipv4Header::from_slice(&offer_fragment[14..]).unwrap();
    h.header_checksum = h.calc_header_checksum();
    offer_fragment[14..34].copy_from_slice(&h.to_bytes());
    let refused = [ra, ra_fragment, ra_hop, offer, offer_fragment];
    for (i, name) in ["open", "flat"].into_iter().enumerate() {
        for p in ["vm1", "vm2"] {
            ctl(&d, &["port", "set", p, "--sg", name]);
        }
        let control = udp(vm1, vm2, mac(vm2), 40_000 + i as u16, 4444, b"control");
        let before = all_drops(&d, "vm1");
        let all = [refused.to_vec(), vec![control.clone()]].concat();
        let got = &exchange(vm1, &[vm2], &all)[0];
        expect(got, &[control], true, name);
        expect(got, &refused, false, name);
        let grown = drops_since(&d, "vm1", &before);
        let count = |reason: &str| grown.iter().find(|(r, _)| r == reason).map_or(0, |g| g.1);
        // A stateful port may drop the fragments in conntrack instead (`ct_invalid`).
        assert!(
            count("router_advert") >= 2 && count("dhcp_server") >= 1,
            "{name}: {grown:?}"
        );
        let total: u64 = grown.iter().map(|g| g.1).sum();
        assert_eq!(total, refused.len() as u64, "{name}: {grown:?}");
    }
}

/// What one paced TCP connection from `client` to `server`:5201 saw when `client` sent the RST
/// `make_rst(sport, next_seq)` in a pause of its stream.
struct RstRun {
    /// What the server's socket received.
    received: String,
    /// Frames that arrived at the server while the RST was sent.
    at_server: Vec<Vec<u8>>,
    /// The RST sent.
    rst: Vec<u8>,
    /// The connection in `ct show` right after.
    conn: Value,
}

/// Lines `client` sends: 5, a pause, then 10 more.
const LINES: usize = 15;

/// Connects from `client` to `server`:5201 and sends 5 lines 0.1 s apart, pauses 2.5 s, then
/// sends 10 more; during the pause sends `make_rst(sport, next_seq)` from `client`.
fn rst_in_a_pause(
    topo: &Topology,
    d: &Daemon,
    client: &Vm,
    server: &Vm,
    run: &str,
    make_rst: impl Fn(u16, u32) -> Vec<u8>,
) -> RstRun {
    let dir = topo.scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("rst.{run}"));
    let out = format!("OPEN:{},creat,trunc", file.display());
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server.netns,
            "timeout",
            "12",
            "socat",
            "-u",
        ])
        .args(["TCP-LISTEN:5201,reuseaddr", &out])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(server, 5201);
    let watch = Capture::start(server);
    // The sender marks the start of its pause in a file, so a slow start on a loaded machine
    // does not move the RST out of the pause.
    let paused = dir.join(format!("rst.{run}.paused"));
    let _ = std::fs::remove_file(&paused);
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('{}', 5201), timeout=5)\n\
         for i in range({LINES}):\n    s.sendall(b'line%d\\n' % i)\n    \
         if i == 4: open('{}', 'w').close(); time.sleep(2.5)\n    \
         else: time.sleep(0.1)\n\
         s.close()\n",
        server.ip,
        paused.display()
    );
    let sender = Command::new("ip")
        .args(["netns", "exec", &client.netns, "timeout", "10", PYTHON])
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    while !paused.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    // Let the pause's first segment reach the capture.
    sleep(Duration::from_millis(200));
    // The client's next sequence number, from its last segment.
    let seen = watch.finish();
    let last = seen.iter().rev().find_map(|f| {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            return None;
        };
        (t.destination_port() == 5201).then(|| {
            let len = t.payload().len() as u32 + u32::from(t.syn());
            let next = t.sequence_number().wrapping_add(len);
            (t.source_port(), next)
        })
    });
    let (sport, next) = last.expect("no segment of the connection captured");
    let rst = make_rst(sport, next);
    let at_server = exchange(client, &[server], std::slice::from_ref(&rst)).remove(0);
    assert!(
        paused.exists() && started.elapsed() < Duration::from_millis(2400),
        "the RST came after the pause"
    );
    let conn = conns_from(d, sport).pop().unwrap_or_default();
    wait_child(sender, Duration::from_secs(10));
    wait_child(listener, Duration::from_secs(10));
    RstRun {
        received: std::fs::read_to_string(&file).unwrap_or_default(),
        at_server,
        rst,
        conn,
    }
}

#[test]
fn a_bad_checksum_rst_does_not_close_a_live_connection() {
    let (topo, d, vms) = secured("afc", 87, 2);
    let (client, server) = (&vms[0], &vms[1]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    let all_lines: String = (0..LINES).map(|i| format!("line{i}\n")).collect();
    // An in-window RST with a wrong checksum: dropped before conntrack sees it.
    let before = all_drops(&d, "vm1");
    let bad = rst_in_a_pause(&topo, &d, client, server, "bad", |sport, seq| {
        let mut f = tcp(client, server, mac(server), (sport, 5201), seq, true);
        f[14 + 20 + 16] ^= 0x5a;
        f
    });
    expect(
        &bad.at_server,
        std::slice::from_ref(&bad.rst),
        false,
        "server",
    );
    assert_eq!(bad.conn["tcp_state"], "ESTABLISHED", "{}", bad.conn);
    assert_eq!(bad.received, all_lines, "the stream was cut");
    assert_eq!(
        drops_since(&d, "vm1", &before),
        grew(&[("bad_checksum", 1)])
    );
    // The same RST with its checksum right closes the connection: the sequence number was good.
    let good = rst_in_a_pause(&topo, &d, client, server, "good", |sport, seq| {
        tcp(client, server, mac(server), (sport, 5201), seq, true)
    });
    expect(
        &good.at_server,
        std::slice::from_ref(&good.rst),
        true,
        "server",
    );
    assert_eq!(good.conn["tcp_state"], "CLOSE", "{}", good.conn);
    assert!(
        good.received.len() < all_lines.len(),
        "a good RST did not cut the stream: {:?}",
        good.received
    );
}

#[test]
fn bad_checksums_are_dropped_and_partial_ones_completed() {
    let (_topo, d, vms) = secured("afk", 88, 2);
    let (vm1, vm2) = (&vms[0], &vms[1]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    let to = mac(vm2);
    let udp_sum = 14 + 20 + 6;
    let mut bad_udp = udp(vm1, vm2, to, 40_001, 5000, b"bad udp");
    bad_udp[udp_sum] ^= 0x5a;
    let good_udp = udp(vm1, vm2, to, 40_002, 5000, b"good udp");
    // Offloaded checksums: brink completes them, so the receiver gets the packet whole.
    let whole_udp = udp(vm1, vm2, to, 40_003, 5000, b"partial udp");
    let partial_udp = partial(whole_udp.clone(), 6);
    let whole_syn = syn(vm1, vm2, to, 40_007, 22);
    let partial_syn = partial(whole_syn.clone(), 16);
    // IPv4 UDP may carry no checksum at all.
    let mut unsummed_udp = udp(vm1, vm2, to, 40_004, 5000, b"no checksum");
    unsummed_udp[udp_sum..udp_sum + 2].copy_from_slice(&[0, 0]);
    let mut bad_header = udp(vm1, vm2, to, 40_005, 5000, b"bad header");
    bad_header[14 + 10] ^= 0x5a;
    let mut bad_syn = syn(vm1, vm2, to, 40_006, 22);
    bad_syn[14 + 20 + 16] ^= 0x5a;
    let good_echo = icmp(vm1, vm2, to, 8, [0, 7, 0, 1], b"good echo");
    let mut bad_echo = icmp(vm1, vm2, to, 8, [0, 8, 0, 1], b"bad echo");
    bad_echo[14 + 20 + 2] ^= 0x5a;
    // ICMP has no offload: a zero (partial-looking) checksum is wrong.
    let mut zero_echo = icmp(vm1, vm2, to, 8, [0, 9, 0, 1], b"zero echo");
    zero_echo[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&[0, 0]);
    let bad = [bad_udp, bad_header, bad_syn, bad_echo, zero_echo];
    let good = [good_udp, unsummed_udp, good_echo];
    let before = all_drops(&d, "vm1");
    let sent = [&bad[..], &good, &[partial_udp.clone(), partial_syn.clone()]].concat();
    let got = &exchange(vm1, &[vm2], &sent)[0];
    expect(got, &good, true, "vm2");
    expect(got, &[whole_udp, whole_syn], true, "vm2");
    expect(got, &[partial_udp, partial_syn], false, "vm2");
    expect(got, &bad, false, "vm2");
    assert_eq!(
        drops_since(&d, "vm1", &before),
        grew(&[("bad_checksum", bad.len() as u64)])
    );
    // Conntrack never saw them: no connection from their ports.
    for sport in [40_001, 40_005, 40_006] {
        assert_eq!(conns_from(&d, sport), Vec::<Value>::new(), "port {sport}");
    }
}

/// Not an attack, the ordinary case the checksum work is for: a VM whose kernel leaves TCP and
/// UDP checksums to the device (veth's default, like virtio-net's) sends through brink, and the
/// receiver gets datagrams whose checksums are correct.
#[test]
fn a_vm_with_checksum_offload_on_sends_correct_checksums() {
    let (_topo, d, vms) = secured("afo", 89, 2);
    let (vm1, vm2) = (&vms[0], &vms[1]);
    group(&d, "ancsg", &ANCSG, &["vm1", "vm2"]);
    let features = vm1.exec("ethtool", &["-k", "eth0"]).unwrap();
    assert!(
        String::from_utf8_lossy(&features.stdout).contains("tx-checksum-ip-generic: on"),
        "vm1 does not offload checksums"
    );
    let capture = Capture::start(vm2);
    let target = format!("UDP:{}:5000", vm2.ip);
    for i in 0..3 {
        let line = format!("echo offloaded {i} | socat -u - {target}");
        assert!(vm1
            .exec("timeout", &["5", "bash", "-c", &line])
            .unwrap()
            .status
            .success());
    }
    sleep(Duration::from_millis(200));
    let got = capture.finish();
    let mut checked = 0;
    for f in &got {
        let Ok(p) = SlicedPacket::from_ethernet(f) else {
            continue;
        };
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) = (&p.net, &p.transport)
        else {
            continue;
        };
        if udp.destination_port() != 5000 {
            continue;
        }
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .unwrap();
        assert_eq!(
            udp.checksum(),
            want,
            "a datagram with a wrong checksum arrived"
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "datagrams that arrived: {got:?}");
}
