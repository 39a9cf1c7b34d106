//! Helpers shared by the netns integration tests: VMs on veth pairs around a brinkd, traffic
//! and counters. Each test binary uses some of them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_bench::daemon::Daemon;
pub use brink_bench::topo::{Topology, Vm};
use serde_json::Value;

/// Builds VMs `(n, ip, network)`, starts brinkd with `extra` args and adds one port per VM,
/// with port security off. Bind the result as `(_topo, d, vms)` so the daemon stops before the
/// topology goes.
pub fn rig(tag: &str, vms: &[(u8, &str, &str)], extra: &[&str]) -> (Topology, Daemon, Vec<Vm>) {
    rig_with(tag, vms, extra, &["--port-security", "off"])
}

/// [`rig`], with `port_args` added to every `port add`.
pub fn rig_with(
    tag: &str,
    vms: &[(u8, &str, &str)],
    extra: &[&str],
    port_args: &[&str],
) -> (Topology, Daemon, Vec<Vm>) {
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "netns tests need root"
    );
    let mut topo = Topology::new(tag);
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = vec!["--idle-sleep"];
    args.extend_from_slice(extra);
    let d = Daemon::start(&dir, &args).unwrap();
    let mut out = vec![];
    for &(n, ip, net) in vms {
        let vm = topo.add_vm(n, ip).unwrap();
        if !d.ctl_ok(&["network", "list"]).unwrap().contains(net) {
            d.ctl_ok(&["network", "add", net]).unwrap();
        }
        let mut args = vec!["--ip", ip];
        args.extend_from_slice(port_args);
        d.add_vm_port(&format!("vm{n}"), &vm, net, &args).unwrap();
        out.push(vm);
    }
    (topo, d, out)
}

pub fn iface_exists(name: &str) -> bool {
    PathBuf::from("/sys/class/net").join(name).exists()
}

/// Adds port `name` of type tap on a new device `tap` in network blue, and checks brink made it.
pub fn add_tap_port(d: &Daemon, name: &str, tap: &str) {
    d.ctl_ok(&[
        "port",
        "add",
        name,
        "--type",
        "tap",
        "--iface",
        tap,
        "--network",
        "blue",
        "--port-security",
        "off",
    ])
    .unwrap();
    assert!(iface_exists(tap), "tap {tap} not created");
}

pub fn ping(from: &Vm, to: &Vm, count: u32) -> bool {
    from.exec(
        "ping",
        &["-c", &count.to_string(), "-i", "0.2", "-W", "1", &to.ip],
    )
    .unwrap()
    .status
    .success()
}

pub fn stats(d: &Daemon, port: &str) -> Value {
    let out = d.ctl_ok(&["--json", "stats", "--port", port]).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["ports"][0].clone()
}

/// Deterministic pseudo-random bytes (xorshift), so a corrupted byte cannot hide.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn wait_listening(vm: &Vm, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let out = vm
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .unwrap();
        if !out.stdout.is_empty() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("listener on port {port} did not start");
}

pub fn wait_child(mut child: Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Starts `args` inside `vm`'s namespace, its output discarded.
pub fn spawn_in(vm: &Vm, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &vm.netns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Listens on `to`'s TCP port 5001 (for at most 60 s) and writes what one connection sends into
/// `dst`; returns once it listens.
pub fn receive_tcp(to: &Vm, dst: &std::path::Path) -> Child {
    let listener = Command::new("ip")
        .args(["netns", "exec", &to.netns, "timeout", "60", "socat", "-u"])
        .arg("TCP-LISTEN:5001,reuseaddr")
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(to, 5001);
    listener
}

/// Sends `data` over TCP from `from` to `to` port 5001 through the switch; returns what arrived.
pub fn tcp_transfer(topo: &Topology, from: &Vm, to: &Vm, data: &[u8]) -> Vec<u8> {
    let dir = topo.scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let (src, dst): (PathBuf, PathBuf) = (dir.join("tcp.src"), dir.join("tcp.dst"));
    std::fs::write(&src, data).unwrap();
    let _ = std::fs::remove_file(&dst);
    let listener = receive_tcp(to, &dst);
    let sent = from
        .exec(
            "timeout",
            &[
                "60",
                "socat",
                "-u",
                &format!("OPEN:{}", src.display()),
                &format!("TCP:{}:5001", to.ip),
            ],
        )
        .unwrap();
    assert!(
        sent.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        wait_child(listener, Duration::from_secs(30)),
        "receiver did not finish"
    );
    std::fs::read(&dst).unwrap()
}

/// The vhost-user queue pairs each worker polls, as (port, pair, rx_packets, tx_packets),
/// sorted.
pub fn pairs_by_worker(d: &Daemon) -> Vec<Vec<(String, u64, u64, u64)>> {
    let out = d.ctl_ok(&["--json", "stats", "--workers"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let mut pairs = vec![];
            for poll in w["polls"].as_array().unwrap() {
                for p in poll["pairs"].as_array().into_iter().flatten() {
                    pairs.push((
                        poll["port"].as_str().unwrap().to_string(),
                        p["pair"].as_u64().unwrap(),
                        p["rx_packets"].as_u64().unwrap(),
                        p["tx_packets"].as_u64().unwrap(),
                    ));
                }
            }
            pairs.sort();
            pairs
        })
        .collect()
}
