//! Real guests through brink: two QEMU guests (Debian's kernel, a busybox initramfs the test
//! builds) attached as libvirt and Nova attach them, on taps opened with `vnet_hdr` and virtio-net
//! with its default offloads, switched by `brinkd` with port security and a security group.
//! One tap is created by brink (`port add --type tap`), the other by the test as libvirt makes
//! one (`ip tuntap add ... vnet_hdr`) and added as a plain interface. Needs root and `/dev/kvm`
//! (without it the test prints why and passes); where `/dev/kvm` is PVM, which cannot run a stock
//! kernel, the guests run under QEMU's TCG (`guest::Accel::detect`). `scripts/deps` installs
//! QEMU, busybox and xz. A second test attaches two guests to vhost-user ports instead, with
//! their offloads, a namespace on an AF_XDP port beside them, and a brinkd restart under them.
//! docs/TESTING.md describes the tests and what they found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use brink_bench::daemon::Daemon;
use brink_bench::guest::{self, Accel, Guest, GuestSpec, Kernel, Nic};
use brink_bench::run;
use common::*;

/// vCPUs of the vhost-user guests, and so queue pairs of their NICs and brink's ports.
const VCPUS: u32 = 2;
/// brinkd for the vhost-user guests: a worker on each core, so each port's queue pairs are
/// spread over both (a worker that polls several pairs of a port writes into one only).
const SPREAD: [&str; 3] = ["--idle-sleep", "--cores", "0,1"];
/// Bytes of the TCP stream.
const STREAM: usize = 16 << 20;
/// QEMU is killed after this long, whatever the test does.
const GUEST_LIFETIME: Duration = Duration::from_secs(400);
const BOOT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);
/// How long the stream may take (today guest TSO frames are lost at brink's AF_XDP sockets and
/// TCP recovers by retransmitting: about a minute under TCG).
const STREAM_LIMIT: Duration = Duration::from_secs(150);

/// Taps of this test, deleted on drop (also the one brink made, should the test stop before
/// `port del`).
struct Taps(Vec<String>);

impl Drop for Taps {
    fn drop(&mut self) {
        for tap in &self.0 {
            if iface_exists(tap) {
                let _ = run("ip", &["link", "del", "dev", tap]);
            }
        }
    }
}

fn guest_spec(
    name: &str,
    (kernel, accel): (&Kernel, Accel),
    dir: &Path,
    (nic, vcpus): (Nic, u32),
    mac: &str,
    ip: &str,
) -> GuestSpec {
    GuestSpec {
        name: name.into(),
        kernel: kernel.boot_image().to_path_buf(),
        accel,
        initramfs: dir.join("initramfs.cpio"),
        nic,
        mac: mac.into(),
        ip: format!("{ip}/24"),
        memory_mib: 256,
        vcpus,
        dir: dir.to_path_buf(),
        lifetime: GUEST_LIFETIME,
    }
}

/// Starts guests `g1` and `g2` of `vcpus` vCPUs each on `nics`, with `macs` and `ips`
/// (booting, not yet ready).
fn boot_two(
    kernel: (&Kernel, Accel),
    dir: &Path,
    (nics, vcpus): ([Nic; 2], u32),
    macs: [&str; 2],
    ips: [&str; 2],
) -> [Guest; 2] {
    let mut n = 0;
    nics.map(|nic| {
        n += 1;
        let (name, nic) = (format!("g{n}"), (nic, vcpus));
        let spec = guest_spec(&name, kernel, dir, nic, macs[n - 1], ips[n - 1]);
        Guest::boot(&spec).unwrap()
    })
}

/// brinkd with `args` and its files in `dir`, network `blue` and group `guest` in Neutron's
/// shape: everything out; ping and TCP 5001 in.
fn switch(dir: &Path, args: &[&str]) -> Daemon {
    let d = Daemon::start(dir, args).unwrap();
    ctl(&d, "network add blue");
    ctl(&d, "sg add guest");
    ctl(&d, "sg rule add guest --direction egress");
    ctl(&d, "sg rule add guest --direction ingress --protocol icmp");
    ctl(
        &d,
        "sg rule add guest --direction ingress --protocol tcp --port 5001",
    );
    d
}

/// Runs `brinkctl` with `args` split at spaces.
fn ctl(d: &Daemon, args: &str) -> String {
    d.ctl_ok(&args.split_whitespace().collect::<Vec<_>>())
        .unwrap()
}

fn drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    stats(d, port)["drops"][reason].as_u64().unwrap_or(0)
}

/// The first 64-hex-digit word of `text` (a sha256sum line).
fn sha256(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no sha256 in {text:?}"))
        .to_string()
}

/// The virtio-net features the guest's driver negotiated (bits of the device's `features`).
fn virtio_features(g: &mut Guest) -> String {
    const NAMES: &[(usize, &str)] = &[
        (0, "CSUM"),
        (1, "GUEST_CSUM"),
        (7, "GUEST_TSO4"),
        (8, "GUEST_TSO6"),
        (11, "HOST_TSO4"),
        (12, "HOST_TSO6"),
        (15, "MRG_RXBUF"),
    ];
    let bits = g
        .sh_ok("cat /sys/class/net/eth0/device/features", SHORT)
        .unwrap();
    let bits = bits.trim().as_bytes();
    NAMES
        .iter()
        .filter(|(i, _)| bits.get(*i) == Some(&b'1'))
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A counter of the guest's `/proc/net/snmp` line `Tcp:`.
fn guest_tcp(g: &mut Guest, name: &str) -> u64 {
    let snmp = g.sh_ok("grep ^Tcp: /proc/net/snmp", SHORT).unwrap();
    let mut lines = snmp.lines();
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Whether `client` can open TCP `port` on `server` (at `server_ip`) and send a line through it.
fn tcp_connects(client: &mut Guest, server: &mut Guest, server_ip: &str, port: u16) -> bool {
    let got = format!("/tmp/got.{port}");
    server
        .sh_ok(
            &format!("rm -f {got}; (sleep 6 | timeout 6 nc -l -p {port} > {got}) &"),
            SHORT,
        )
        .unwrap();
    // Give the listener a moment to bind.
    server.sh_ok("sleep 0.3", SHORT).unwrap();
    let sent = client
        .sh(
            &format!("echo hello-{port} | timeout 4 nc -w 2 {server_ip} {port}"),
            SHORT,
        )
        .unwrap();
    let received = server
        .sh(&format!("cat {got}; killall -q nc"), SHORT)
        .unwrap();
    sent.status == 0 && received.output.contains(&format!("hello-{port}"))
}

/// What a guest test starts from: the accelerator, the topology (names and scratch directory)
/// and the kernel with an initramfs in the scratch directory. `None` (with the reason printed)
/// where no KVM guest can run.
fn guest_setup(tag: &str) -> Option<(Accel, Topology, Kernel)> {
    let Some((accel, why)) = Accel::detect() else {
        eprintln!("SKIPPED: /dev/kvm is missing or not usable, so no KVM guest can run here");
        return None;
    };
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "the KVM test needs root"
    );
    eprintln!("guests run with {accel:?}: {why}");
    let t0 = Instant::now();
    let topo = Topology::new(tag);
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = Kernel::distro(&guest::cache_dir()).unwrap();
    let busybox = Path::new("/bin/busybox");
    guest::build_initramfs(&kernel, busybox, &dir.join("initramfs.cpio")).unwrap();
    eprintln!(
        "kernel {} ({}) and initramfs ready in {:.1?}",
        kernel.release,
        kernel.boot_image().display(),
        t0.elapsed()
    );
    Some((accel, topo, kernel))
}

/// Sends [`STREAM`] random bytes over TCP 5001 from `from` to `to` (listening at `to_ip`) and
/// asserts they arrived intact. Returns how long it took and how many segments `from`
/// retransmitted.
fn stream(from: &mut Guest, to: &mut Guest, to_ip: &str) -> (Duration, u64) {
    let sent = from
        .sh_ok(
            &format!("head -c {STREAM} /dev/urandom > /tmp/data && sha256sum /tmp/data"),
            STREAM_LIMIT,
        )
        .unwrap();
    let limit = STREAM_LIMIT.as_secs();
    to.sh_ok(
        &format!(
            "rm -f /tmp/recv.sum; sleep {limit} | timeout {limit} nc -l -p 5001 \
             | (sha256sum > /tmp/recv.part; mv /tmp/recv.part /tmp/recv.sum) &"
        ),
        SHORT,
    )
    .unwrap();
    to.sh_ok("sleep 0.3", SHORT).unwrap();
    let retrans = guest_tcp(from, "RetransSegs");
    let started = Instant::now();
    let send = from
        .sh(
            &format!("timeout {limit} nc {to_ip} 5001 < /tmp/data"),
            STREAM_LIMIT + SHORT,
        )
        .unwrap();
    let took = started.elapsed();
    let received = to
        .sh(
            "i=0; while [ ! -e /tmp/recv.sum ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             cat /tmp/recv.sum",
            SHORT,
        )
        .unwrap();
    let retrans = guest_tcp(from, "RetransSegs").saturating_sub(retrans);
    eprintln!(
        "stream of {STREAM} bytes: {took:.1?}, {:.1} Mbit/s, {retrans} segments retransmitted",
        STREAM as f64 * 8.0 / took.as_secs_f64() / 1e6,
    );
    assert_eq!(send.status, 0, "sender failed: {}", send.output);
    assert_eq!(
        sha256(&received.output),
        sha256(&sent),
        "the stream arrived changed"
    );
    (took, retrans)
}

/// Pings `to` from `from` three times; asserts it answered.
fn ping_ok(from: &mut Guest, to: &str) {
    let out = from
        .sh(&format!("ping -c 3 -i 0.2 -W 2 {to}"), SHORT)
        .unwrap();
    assert_eq!(out.status, 0, "ping {to} failed: {}", out.output);
}

#[test]
fn kvm_guests_ping_stream_and_are_filtered_through_brink() {
    let Some((accel, topo, kernel)) = guest_setup("kvm") else {
        return;
    };
    let t0 = Instant::now();
    let dir = topo.scratch();

    let prefix = topo.prefix();
    let (tap1, tap2) = (format!("{prefix}t1"), format!("{prefix}t2"));
    let _taps = Taps(vec![tap1.clone(), tap2.clone()]);
    let pid = std::process::id() % 256;
    let mac1 = format!("52:54:00:9b:{pid:02x}:01");
    let mac2 = format!("52:54:00:9b:{pid:02x}:02");
    let (ip1, ip2) = ("10.90.0.1", "10.90.0.2");

    let d = switch(&dir.join("brinkd"), &["--idle-sleep"]);
    // Guest 1 on a tap brink creates; guest 2 on one made as libvirt makes it (vnet_hdr),
    // added as an existing interface.
    ctl(
        &d,
        &format!(
            "port add vm1 --type tap --iface {tap1} --network blue --mac {mac1} --ip {ip1} \
             --sg guest"
        ),
    );
    run(
        "ip",
        &["tuntap", "add", "dev", &tap2, "mode", "tap", "vnet_hdr"],
    )
    .unwrap();
    run("ip", &["link", "set", "dev", &tap2, "up"]).unwrap();
    ctl(
        &d,
        &format!("port add vm2 --iface {tap2} --network blue --mac {mac2} --ip {ip2} --sg guest"),
    );

    let [mut g1, mut g2] = boot_two(
        (&kernel, accel),
        &dir,
        ([Nic::Tap(tap1.clone()), Nic::Tap(tap2.clone())], 1),
        [&mac1, &mac2],
        [ip1, ip2],
    );
    let boot1 = g1.wait_ready(BOOT).unwrap();
    let boot2 = g2.wait_ready(BOOT).unwrap();
    eprintln!("guests booted in {boot1:.1?} and {boot2:.1?} (started together)");
    for (g, tap) in [(&mut g1, &tap1), (&mut g2, &tap2)] {
        let k = Command::new("ethtool").args(["-k", tap]).output().unwrap();
        let k = String::from_utf8_lossy(&k.stdout);
        let on: Vec<&str> = k
            .lines()
            .filter(|l| l.ends_with(": on"))
            .map(|l| l.trim().trim_end_matches(": on"))
            .collect();
        eprintln!(
            "{tap}: guest virtio-net negotiated [{}]; tap offloads on: {}",
            virtio_features(g),
            on.join(" ")
        );
    }

    // Ping both ways.
    ping_ok(&mut g1, ip2);
    ping_ok(&mut g2, ip1);

    // 16 MB over TCP 5001, g1 -> g2, intact.
    stream(&mut g1, &mut g2, ip2);
    let (s1, s2) = (stats(&d, "vm1"), stats(&d, "vm2"));
    eprintln!(
        "vm1 drops {} socket {}; vm2 drops {} socket {}",
        s1["drops"], s1["xdp_socket"], s2["drops"], s2["xdp_socket"],
    );
    // The guest sends TSO superframes (up to 64 KiB): they arrive as multi-buffer frames and
    // leave as segments that fit the network's MTU.
    let segmented = worker_counter(&d, "segmented");
    eprintln!("segments cut from guest superframes: {segmented}");
    assert!(
        segmented > 0,
        "the guest sent no TSO superframe through brink"
    );

    // The group admits TCP 5001 but not 5002. A refused SYN is counted at the port it arrived
    // on, under the reason of the port that refused it.
    assert!(tcp_connects(&mut g1, &mut g2, ip2, 5001), "TCP 5001");
    let before = drops(&d, "vm1", "ingress_denied");
    assert!(
        !tcp_connects(&mut g1, &mut g2, ip2, 5002),
        "TCP 5002 has no rule"
    );
    let after = drops(&d, "vm1", "ingress_denied");
    assert!(
        after > before,
        "no ingress_denied counted: {}",
        stats(&d, "vm1")
    );
    let before = drops(&d, "vm2", "ingress_denied");
    assert!(
        !tcp_connects(&mut g2, &mut g1, ip1, 5002),
        "TCP 5002 the other way"
    );
    assert!(drops(&d, "vm2", "ingress_denied") > before);
    // A rule for 5002 opens it.
    ctl(
        &d,
        "sg rule add guest --direction ingress --protocol tcp --port 5002",
    );
    assert!(
        tcp_connects(&mut g1, &mut g2, ip2, 5002),
        "TCP 5002 after its rule"
    );

    g1.stop();
    g2.stop();
    ctl(&d, "port del vm1");
    ctl(&d, "port del vm2");
    assert!(!iface_exists(&tap1), "brink did not delete its tap");
    eprintln!("KVM guest test done in {:.1?}", t0.elapsed());
}

/// Frames brink received (`rx`) or sent (`tx`) on `port` were on average longer than one
/// full-size frame: TCP superframes.
fn superframes(d: &Daemon, port: &str, way: &str) -> bool {
    let s = stats(d, port);
    let bytes = s[format!("{way}_bytes")].as_u64().unwrap();
    let packets = s[format!("{way}_packets")].as_u64().unwrap();
    packets > 0 && bytes / packets > 1514
}

/// Counter `name` summed over the workers, so far.
fn worker_counter(d: &Daemon, name: &str) -> u64 {
    let all: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "stats"]).unwrap()).unwrap();
    let workers = all["workers"].as_array().unwrap();
    workers.iter().map(|w| w[name].as_u64().unwrap_or(0)).sum()
}

/// Two guests of [`VCPUS`] vCPUs on vhost-user ports (QEMU owns each socket, `server=on`;
/// brink connects, its default client mode), with virtio-net's offloads at their defaults:
/// checksum and TCP segmentation offload both ways and mergeable receive buffers, and a queue
/// pair per vCPU. They ping and move [`STREAM`] bytes intact, as superframes brink passes whole
/// from guest to guest, their checksums left partial (brink completes none), and every queue
/// pair carries frames both ways. The stream from a guest to a namespace on a veth (AF_XDP)
/// port arrives intact too: brink completes the guest's checksums and cuts its superframes for
/// it. Then brinkd is restarted under the live guests: it reconnects to their sockets by
/// itself, from its saved state, and the stream flows again.
#[test]
fn vhost_user_guests_stream_with_offloads_and_survive_a_brinkd_restart() {
    let Some((accel, mut topo, kernel)) = guest_setup("Vg") else {
        return;
    };
    let t0 = Instant::now();
    let dir = topo.scratch();
    let sockets = [dir.join("g1.sock"), dir.join("g2.sock")];
    let pid = std::process::id() % 256;
    let macs = [
        format!("52:54:00:9c:{pid:02x}:01"),
        format!("52:54:00:9c:{pid:02x}:02"),
    ];
    let (ip1, ip2, ip3) = ("10.91.0.1", "10.91.0.2", "10.91.0.3");
    let [mut g1, mut g2] = boot_two(
        (&kernel, accel),
        &dir,
        (sockets.clone().map(Nic::VhostUser), VCPUS),
        [&macs[0], &macs[1]],
        [ip1, ip2],
    );

    let daemon_dir = dir.join("brinkd");
    let mut d = switch(&daemon_dir, &SPREAD);
    for (n, ip) in [ip1, ip2].into_iter().enumerate() {
        ctl(
            &d,
            &format!(
                "port add vm{} --network blue --type vhost-user --vhost-socket {} --mac {} \
                 --ip {ip} --sg guest --queues {VCPUS}",
                n + 1,
                sockets[n].display(),
                macs[n]
            ),
        );
    }
    let ns = topo.add_vm(3, ip3).unwrap();
    d.add_vm_port("vm3", &ns, "blue", &["--ip", ip3, "--sg", "guest"])
        .unwrap();
    let boot1 = g1.wait_ready(BOOT).unwrap();
    let boot2 = g2.wait_ready(BOOT).unwrap();
    let features = virtio_features(&mut g1);
    eprintln!("guests booted in {boot1:.1?} and {boot2:.1?}; g1 negotiated [{features}]");
    assert_eq!(
        features, "CSUM GUEST_CSUM GUEST_TSO4 GUEST_TSO6 HOST_TSO4 HOST_TSO6 MRG_RXBUF",
        "virtio-net offloads at their defaults"
    );
    for g in [&mut g1, &mut g2] {
        let queues = g.sh_ok("ls /sys/class/net/eth0/queues", SHORT).unwrap();
        let queues: Vec<&str> = queues.split_whitespace().collect();
        assert_eq!(
            queues,
            ["rx-0", "rx-1", "tx-0", "tx-1"],
            "a queue pair per vCPU"
        );
    }
    ping_ok(&mut g1, ip2);
    ping_ok(&mut g2, ip1);
    stream(&mut g1, &mut g2, ip2);
    eprintln!("vm1 {}\nvm2 {}", stats(&d, "vm1"), stats(&d, "vm2"));
    // Pings sent from each vCPU leave on that vCPU's transmit queue, and brink answers each
    // on the pair of the worker that took it: every pair of both ports moves frames both
    // ways.
    for cpu in 0..VCPUS {
        for (g, to) in [(&mut g1, ip2), (&mut g2, ip1)] {
            let ping = g.sh(
                &format!("taskset -c {cpu} ping -c 3 -i 0.2 -W 2 {to}"),
                SHORT,
            );
            assert_eq!(ping.unwrap().status, 0, "ping {to} from vCPU {cpu}");
        }
    }
    let pairs: Vec<_> = pairs_by_worker(&d).into_iter().flatten().collect();
    eprintln!("queue pairs (port, pair, rx, tx): {pairs:?}");
    assert_eq!(pairs.len(), 2 * VCPUS as usize, "{pairs:?}");
    for (port, pair, rx, tx) in &pairs {
        assert!(*rx > 0 && *tx > 0, "{port} pair {pair}: rx {rx}, tx {tx}");
    }
    assert!(superframes(&d, "vm1", "rx"), "g1 sent no superframe");
    assert!(superframes(&d, "vm2", "tx"), "g2 got no superframe whole");
    assert_eq!(
        worker_counter(&d, "checksums_completed"),
        0,
        "guest to guest, every checksum travels partial"
    );

    // g1 to the namespace: the same data, cut into segments with complete checksums.
    let sum = sha256(&g1.sh_ok("sha256sum /tmp/data", SHORT).unwrap());
    let got = dir.join("ns.sha256");
    let listener = Command::new("ip")
        .args(["netns", "exec", &ns.netns, "timeout", "120", "sh", "-c"])
        .arg(format!(
            "socat -u TCP-LISTEN:5001,reuseaddr - | sha256sum > {}",
            got.display()
        ))
        .spawn()
        .unwrap();
    wait_listening(&ns, 5001);
    let sent = g1
        .sh(
            &format!("timeout 100 nc {ip3} 5001 < /tmp/data"),
            STREAM_LIMIT,
        )
        .unwrap();
    assert_eq!(
        sent.status,
        0,
        "sender failed: {}; vm3 {}; brinkd log:\n{}",
        sent.output,
        stats(&d, "vm3"),
        d.log_text()
    );
    assert!(
        wait_child(listener, Duration::from_secs(30)),
        "namespace did not finish"
    );
    assert_eq!(
        sha256(&std::fs::read_to_string(&got).unwrap()),
        sum,
        "the stream to the namespace arrived changed"
    );
    assert!(
        worker_counter(&d, "segmented") > 0,
        "superframes to an AF_XDP port are cut"
    );
    assert!(
        worker_counter(&d, "checksums_completed") > 0,
        "the guest's partial checksums in frames that are not cut are completed for veth"
    );
    eprintln!("to the namespace: vm3 {}", stats(&d, "vm3"));

    // Restart brinkd under the live guests: the same state directory, no command.
    assert!(d.stop().unwrap(), "brinkd did not exit cleanly");
    let d = Daemon::start(&daemon_dir, &SPREAD).unwrap();
    let mut resumed = false;
    for _ in 0..20 {
        let out = g1.sh(&format!("ping -c 1 -W 1 {ip2}"), SHORT).unwrap();
        if out.status == 0 {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "no ping after the restart; brinkd log:\n{}",
        d.log_text()
    );
    stream(&mut g2, &mut g1, ip1);
    eprintln!(
        "after the restart: vm1 {}\nvm2 {}",
        stats(&d, "vm1"),
        stats(&d, "vm2")
    );
    g1.stop();
    g2.stop();
    eprintln!("vhost-user guest test done in {:.1?}", t0.elapsed());
}
