//! Restarts that lose nothing, with real namespaces and traffic: a port whose interface is
//! missing at start-up, a corrupt state file, and kill -9 under traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brink_bench::daemon::Daemon;
use common::*;
use serde_json::Value;

fn port_list(d: &Daemon) -> Vec<Value> {
    serde_json::from_str(&d.ctl_ok(&["--json", "port", "list"]).unwrap()).unwrap()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_port_whose_interface_is_missing_at_restart_is_kept_down_and_comes_back() {
    let (_topo, mut d, vms) = rig(
        "mis",
        &[(1, "10.91.0.1", "blue"), (2, "10.91.0.2", "blue")],
        &[],
    );
    let before = port_list(&d);
    assert!(d.stop().unwrap());
    run("ip", &["link", "del", &vms[1].host_if]);
    let state = d.dir().join("state").join("state.json");
    let saved = std::fs::read(&state).unwrap();
    let d = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    let vm2 = port_list(&d)
        .into_iter()
        .find(|p| p["name"] == "vm2")
        .unwrap();
    assert_eq!(vm2["mode"], "down", "{vm2}");
    let reason = vm2["reason"].as_str().unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    let table = d.ctl_ok(&["port", "list"]).unwrap();
    assert!(table.contains("does not exist"), "{table}");
    assert_eq!(std::fs::read(&state).unwrap(), saved, "state file changed");
    // The VM comes up after brinkd.
    vms[1].plug(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while port_list(&d) != before {
        assert!(
            Instant::now() < deadline,
            "vm2 did not come back: {:?}\n{}",
            port_list(&d),
            d.log_text()
        );
        sleep(Duration::from_millis(100));
    }
    assert!(
        ping(&vms[0], &vms[1], 2),
        "the port that came back does not forward\n{}",
        d.log_text()
    );
}

#[test]
fn a_corrupt_state_file_is_refused_with_its_path_and_the_backup_named() {
    let (_topo, mut d, _vms) = rig("cor", &[(1, "10.92.0.1", "blue")], &[]);
    d.ctl_ok(&["network", "add", "red"]).unwrap();
    assert!(d.stop().unwrap());
    let state = d.dir().join("state").join("state.json");
    let backup = d.dir().join("state").join("state.json.bak");
    let corrupt = b"{\"networks\": [\"blue\", ";
    std::fs::write(&state, corrupt).unwrap();
    let err = Daemon::start(d.dir(), &["--idle-sleep"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{} is not valid brink state", state.display())),
        "{err}"
    );
    assert!(err.contains(&backup.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        corrupt,
        "brinkd wrote over it"
    );
    let previous: Value = serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
    assert_eq!(
        previous["networks"],
        serde_json::json!(["blue"]),
        "{previous}"
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The times (`ping -D`) of the echo replies in `output`.
fn reply_times(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn after_kill_9_traffic_stops_and_a_restart_restores_it() {
    let (topo, d, vms) = rig(
        "k9",
        &[(1, "10.93.0.1", "blue"), (2, "10.93.0.2", "blue")],
        &[],
    );
    let before = port_list(&d);
    let log = topo.scratch().join("ping.out");
    let pinger = Command::new("ip")
        .args(["netns", "exec", &vms[0].netns])
        .args([
            "ping", "-D", "-i", "0.05", "-w", "12", "-W", "1", &vms[1].ip,
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_secs(1));
    let killed = unix_now();
    run("kill", &["-KILL", &d.pid().unwrap().to_string()]);
    let mut d = d;
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.is_running() {
        assert!(Instant::now() < deadline, "brinkd survived kill -9");
        sleep(Duration::from_millis(10));
    }
    let link = Command::new("ip")
        .args(["link", "show", &vms[0].host_if])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP stays attached after kill -9"
    );
    sleep(Duration::from_secs(1));
    let restarted = unix_now();
    let d2 = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    assert!(
        wait_child(pinger, Duration::from_secs(15)),
        "ping got no reply at all"
    );
    let times = reply_times(&std::fs::read_to_string(&log).unwrap());
    assert!(
        times.iter().any(|&t| t < killed),
        "no replies before the kill: {times:?}"
    );
    let during: Vec<f64> = times
        .iter()
        .copied()
        .filter(|&t| t > killed + 0.2 && t < restarted)
        .collect();
    assert!(
        during.is_empty(),
        "traffic passed while brinkd was dead: {during:?}"
    );
    let first = times.iter().copied().find(|&t| t > restarted);
    let first = first.unwrap_or_else(|| panic!("no replies after the restart\n{}", d2.log_text()));
    eprintln!(
        "kill -9 at {killed:.3}, restart at {restarted:.3}, first reply {:.3} s after the restart",
        first - restarted
    );
    assert!(
        first - restarted < 1.0,
        "traffic came back {:.3} s after the restart",
        first - restarted
    );
    assert_eq!(port_list(&d2), before, "configuration restored");
}

#[test]
fn a_sigterm_restart_keeps_a_live_tcp_transfer_going_byte_for_byte() {
    let (topo, mut d, vms) = rig(
        "Ost",
        &[(1, "10.94.0.1", "blue"), (2, "10.94.0.2", "blue")],
        &[],
    );
    let policy = d.ctl_ok(&["ct", "policy", "show", "blue"]).unwrap();
    assert!(policy.contains("tcp pickup off"), "{policy}");
    let (sender, receiver) = (&vms[0], &vms[1]);
    let dir = topo.scratch();
    let (src, dst) = (dir.join("tcp.src"), dir.join("tcp.dst"));
    let data = payload(6 << 20);
    std::fs::write(&src, &data).unwrap();
    let listener = receive_tcp(receiver, &dst);
    // 6 MiB in 64 KiB pieces, 50 ms apart: about 5 s, across the restart.
    let paced = format!(
        "import socket, time\n\
         data = open({src:?}, 'rb').read()\n\
         s = socket.create_connection(({ip:?}, 5001))\n\
         for i in range(0, len(data), 65536):\n    s.sendall(data[i:i + 65536]); time.sleep(0.05)\n\
         s.close()\n",
        src = src.display().to_string(),
        ip = receiver.ip,
    );
    let sending = Command::new("ip")
        .args([
            "netns",
            "exec",
            &sender.netns,
            "timeout",
            "60",
            "python3",
            "-c",
        ])
        .arg(paced)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(1500));
    let before: Vec<Value> = serde_json::from_str(
        &d.ctl_ok(&["--json", "ct", "show", "--port", "5001"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(before.len(), 1, "the transfer's connection: {before:?}");
    assert!(d.stop().unwrap(), "brinkd did not stop cleanly");
    let saved = d.dir().join("state").join("conntrack.bin");
    assert!(saved.exists(), "no saved table\n{}", d.log_text());
    let d2 = Daemon::start(d.dir(), &["--idle-sleep"]).unwrap();
    // Calls are served once the table is back.
    let after: Vec<Value> = serde_json::from_str(
        &d2.ctl_ok(&["--json", "ct", "show", "--port", "5001"])
            .unwrap(),
    )
    .unwrap();
    assert!(!saved.exists(), "the saved table is removed once read");
    assert_eq!(after.len(), 1, "carried over: {after:?}\n{}", d2.log_text());
    assert_eq!(after[0]["state"], before[0]["state"], "{after:?}");
    let sent = sending.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "sender failed: {}\n{}",
        String::from_utf8_lossy(&sent.stderr),
        d2.log_text()
    );
    assert!(
        wait_child(listener, Duration::from_secs(30)),
        "receiver did not finish"
    );
    let got = std::fs::read(&dst).unwrap();
    assert!(
        got == data,
        "{} of {} bytes arrived intact\n{}",
        got.iter().zip(&data).take_while(|(a, b)| a == b).count(),
        data.len(),
        d2.log_text()
    );
    assert!(
        d2.log_text().contains("connections carried over"),
        "{}",
        d2.log_text()
    );
}
