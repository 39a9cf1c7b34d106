//! vhost-user ports driven by DPDK's testpmd: two `net_virtio_user` devices listen (`server=1`)
//! and brinkd connects to them (its default client mode) as two vhost-user ports of one network.
//! testpmd forwards in a mac loop started with `--tx-first`; frames must cross brink both ways
//! and be counted on both ports. Then a security group on one port lets its UDP out and nothing
//! in: testpmd restarts, brink reconnects by itself, and the frames in the denied direction are
//! dropped and counted.
//!
//! Needs root. Installs `dpdk-dev` (which has `dpdk-testpmd`) with apt if it is missing, and
//! reserves 2 MiB hugepages on a private hugetlbfs mount for the run, giving both back after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

use brink_bench::daemon::Daemon;
use brink_bench::testpmd::{self, Device, Forwarded, Hugepages, TESTPMD_IP};
use common::*;

/// Hugepages (2 MiB) the test adds to the system's pool.
const PAGES: u64 = 192;
/// Seconds each testpmd run lasts (it is stopped with SIGINT and prints its totals).
const RUN_SECONDS: u32 = 8;
const MAC0: &str = "02:00:00:00:00:01";
const MAC1: &str = "02:00:00:00:00:02";

/// Runs testpmd for [`RUN_SECONDS`] on `devices` (its forwarding core 0, brinkd's worker core
/// 1); `during` runs meanwhile. Returns each port's totals.
fn testpmd_run(
    dir: &Path,
    huge: &Hugepages,
    devices: &[Device<'_>],
    during: impl FnOnce(),
) -> Vec<Forwarded> {
    let run = testpmd::Run::start(huge, devices, RUN_SECONDS, (0, 1)).unwrap();
    during();
    run.finish(devices.len(), &dir.join("testpmd.log")).unwrap()
}

/// testpmd's two devices of `queues` queue pairs on `sockets`, each sending to the other's MAC.
fn testpmd_loop(
    dir: &Path,
    huge: &Hugepages,
    sockets: &[PathBuf; 2],
    queues: u16,
) -> (Forwarded, Forwarded) {
    let devices = testpmd::pair(sockets, [MAC0, MAC1], queues);
    let ports = testpmd_run(dir, huge, &devices, || {});
    (ports[0].clone(), ports[1].clone())
}

/// Checks for root and holds the tests of this file to one at a time: each reserves the
/// system's hugepages and runs testpmd, which two at once would share.
fn root() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let held = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "vhost-user tests need root"
    );
    held
}

fn counter(d: &Daemon, port: &str, name: &str) -> u64 {
    stats(d, port)[name].as_u64().unwrap()
}

fn drops(d: &Daemon, port: &str, reason: &str) -> u64 {
    stats(d, port)["drops"][reason].as_u64().unwrap_or(0)
}

/// Runs `brinkctl` with `args` split at spaces.
fn ctl(d: &Daemon, args: &str) -> String {
    d.ctl_ok(&args.split_whitespace().collect::<Vec<_>>())
        .unwrap()
}

/// brinkd on `cores` with two vhost-user ports of network `blue` on `sockets`: vm1 and vm2,
/// port security off, `extra` added to both `port add`s.
fn two_ports(dir: &Path, sockets: &[PathBuf; 2], cores: &str, extra: &str) -> Daemon {
    let d = Daemon::start(dir, &["--cores", cores]).unwrap();
    ctl(&d, "network add blue");
    for (name, socket, mac) in [("vm1", &sockets[0], MAC0), ("vm2", &sockets[1], MAC1)] {
        let added = ctl(
            &d,
            &format!(
                "port add {name} --network blue --type vhost-user --vhost-socket {} \
                 --mac {mac} --port-security off {extra}",
                socket.display()
            ),
        );
        assert!(added.contains("vhost-user-client"), "{added}");
    }
    d
}

/// Checks that testpmd's loop (`p0`, `p1`: its ports' totals) ran through brink, counted on
/// both ports.
fn assert_looped(d: &Daemon, p0: Forwarded, p1: Forwarded) {
    eprintln!("testpmd: port 0 {p0:?}, port 1 {p1:?}");
    let (vm1_rx, vm1_tx) = (
        counter(d, "vm1", "rx_packets"),
        counter(d, "vm1", "tx_packets"),
    );
    let (vm2_rx, vm2_tx) = (
        counter(d, "vm2", "rx_packets"),
        counter(d, "vm2", "tx_packets"),
    );
    eprintln!("brink: vm1 rx {vm1_rx} tx {vm1_tx}, vm2 rx {vm2_rx} tx {vm2_tx}");
    // More than the first bursts (32 each way): the loop ran through brink.
    assert!(p0.rx > 64 && p1.rx > 64, "{p0:?} {p1:?}");
    // Whatever testpmd received, brink sent it, and brink received no more than testpmd sent.
    assert!(
        p1.rx <= vm2_tx && p0.rx <= vm1_tx,
        "vm1 tx {vm1_tx}, vm2 tx {vm2_tx}"
    );
    assert!(
        vm1_rx <= p0.tx && vm2_rx <= p1.tx,
        "vm1 rx {vm1_rx}, vm2 rx {vm2_rx}"
    );
}

/// Puts vm1 behind a group that lets its UDP out and nothing in, runs testpmd's loop again
/// (`queues` pairs) and checks that vm2's frames to vm1 are dropped and counted.
///
/// testpmd forwards what port 1 receives out of port 0 and the other way round, so vm1's
/// frames still loop, while vm2's (testpmd's first burst on port 1, of the same flow in the
/// same direction: no reply) need an ingress rule at vm1. A dropped frame is counted on the
/// port it came in on.
fn assert_group_drops(
    d: &Daemon,
    dir: &Path,
    huge: &Hugepages,
    sockets: &[PathBuf; 2],
    queues: u16,
) {
    ctl(d, "sg add udp-out");
    ctl(d, "sg rule add udp-out --direction egress --protocol udp");
    ctl(
        d,
        &format!("port set vm1 --port-security on --sg udp-out --allowed-pair {TESTPMD_IP},{MAC0}"),
    );
    let denied_before = drops(d, "vm2", "ingress_denied");
    let (p0, p1) = testpmd_loop(dir, huge, sockets, queues);
    eprintln!("testpmd with the group: port 0 {p0:?}, port 1 {p1:?}");
    eprintln!("brink: vm1 {}, vm2 {}", stats(d, "vm1"), stats(d, "vm2"));
    let denied = drops(d, "vm2", "ingress_denied") - denied_before;
    assert!(p1.rx > 64, "vm1's UDP goes out and loops: {p1:?}");
    assert_eq!(p0.rx, 0, "nothing may reach vm1");
    assert!(
        p1.tx > 0 && denied == p1.tx,
        "denied {denied}, port 1 sent {}",
        p1.tx
    );
    assert_eq!(drops(d, "vm1", "egress_denied"), 0);
}

/// A fresh scratch directory of `topo`, and hugepages for testpmd in it.
fn scratch(topo: &Topology) -> (PathBuf, Hugepages) {
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let huge = Hugepages::reserve(&dir.join("huge"), PAGES).unwrap();
    (dir, huge)
}

/// testpmd's loop with `queues` pairs through brinkd on `cores` (two vhost-user ports), then
/// again with a group on vm1; `check` looks at brinkd after the first loop.
fn loop_then_group(tag: &str, cores: &str, queues: u16, check: impl FnOnce(&Daemon)) {
    // No VMs: the topology only owns the scratch directory, removed when the test ends.
    let topo = Topology::new(tag);
    let (dir, huge) = scratch(&topo);
    let sockets = [dir.join("vm1.sock"), dir.join("vm2.sock")];
    let d = two_ports(&dir, &sockets, cores, "");
    let (p0, p1) = testpmd_loop(&dir, &huge, &sockets, queues);
    assert_looped(&d, p0, p1);
    check(&d);
    assert_group_drops(&d, &dir, &huge, &sockets, queues);
}

#[test]
fn testpmd_frames_cross_brink_both_ways_and_a_group_drops_the_denied_direction() {
    let _one = root();
    loop_then_group("vhb", "1", 1, |_| {});
}

#[test]
fn testpmd_with_two_queue_pairs_loops_through_both_pairs_on_both_workers() {
    let _one = root();
    // Two workers, so two queue pairs per port by default; vm1 is worker 0's, vm2 worker 1's.
    loop_then_group("Mvq", "0,1", 2, |d| {
        let workers = pairs_by_worker(d);
        eprintln!("pairs by worker (port, pair, rx, tx): {workers:?}");
        // Pair k of a port is polled by the worker k after the port's own. testpmd forwards
        // receive queue k to transmit queue k, so the loop runs through every pair only if
        // brink takes frames from each pair's transmit queue and writes into the sending
        // worker's pair.
        let placed: Vec<Vec<(&str, u64)>> = workers
            .iter()
            .map(|w| {
                w.iter()
                    .map(|(port, pair, ..)| (port.as_str(), *pair))
                    .collect()
            })
            .collect();
        assert_eq!(
            placed,
            [vec![("vm1", 0), ("vm2", 1)], vec![("vm1", 1), ("vm2", 0)]]
        );
        for (port, pair, rx, tx) in workers.iter().flatten() {
            // More than the first burst of 32 each way on every pair.
            assert!(*rx > 32 && *tx > 32, "{port} pair {pair}: rx {rx}, tx {tx}");
        }
        // `port list` shows the same placement, worker by worker.
        let out = d.ctl_ok(&["--json", "port", "list"]).unwrap();
        let ports: serde_json::Value = serde_json::from_str(&out).unwrap();
        let polled = |name: &str| {
            let ports = ports.as_array().unwrap();
            let port = ports.iter().find(|p| p["name"] == name).unwrap();
            port["polled"].clone()
        };
        let vm1 = serde_json::json!([{"worker": 0, "queues": [0]}, {"worker": 1, "queues": [1]}]);
        let vm2 = serde_json::json!([{"worker": 0, "queues": [1]}, {"worker": 1, "queues": [0]}]);
        assert_eq!((polled("vm1"), polled("vm2")), (vm1, vm2));
    });
}

#[test]
fn a_vhost_user_port_and_an_af_xdp_port_exchange_frames() {
    let _one = root();
    let mut topo = Topology::new("vhx");
    let dir = topo.scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let huge = Hugepages::reserve(&dir.join("huge"), PAGES).unwrap();
    let socket = dir.join("vm1.sock");
    let d = Daemon::start(&dir, &["--cores", "1"]).unwrap();
    ctl(&d, "network add blue");
    ctl(
        &d,
        &format!(
            "port add vm1 --network blue --type vhost-user --vhost-socket {} --mac {MAC0} \
             --port-security off",
            socket.display()
        ),
    );
    let ns = topo.add_vm(2, "10.0.0.2").unwrap();
    d.add_vm_port("vm2", &ns, "blue", &["--port-security", "off"])
        .unwrap();
    let ns_rx = || -> u64 {
        let out = ns
            .exec("cat", &["/sys/class/net/eth0/statistics/rx_packets"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let rx_before = ns_rx();
    // testpmd sends its first burst to the namespace; the namespace's pings to an address of
    // its subnet are ARP requests, flooded to the vhost-user port.
    let device = Device {
        socket: &socket,
        mac: MAC0,
        peer: &ns.mac,
        queues: 1,
    };
    let ports = testpmd_run(&dir, &huge, &[device], || {
        for _ in 0..5 {
            let _ = ns.exec("ping", &["-c", "1", "-W", "1", "10.0.0.9"]);
        }
    });
    let (p0, ns_got) = (&ports[0], ns_rx() - rx_before);
    eprintln!(
        "testpmd {p0:?}; namespace received {ns_got}; vm1 {}; vm2 {}",
        stats(&d, "vm1"),
        stats(&d, "vm2")
    );
    assert!(p0.rx > 0, "the namespace's ARP requests reached testpmd");
    assert!(ns_got >= 32, "testpmd's first burst reached the namespace");
    assert!(counter(&d, "vm2", "tx_packets") >= 32 && counter(&d, "vm1", "rx_packets") >= 32);
}
