//! The control socket of a real brinkd under hostile clients, and who may use it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_bench::daemon::{bin_dir, Daemon};
use common::{add_tap_port, payload, Topology};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What one hostile connection sends; it never reads an answer.
fn hostile_bytes(kind: u64) -> Vec<u8> {
    match kind % 6 {
        // Random bytes, a newline among every 16 or so: malformed requests.
        0 => payload(4096)
            .into_iter()
            .map(|b| if b % 16 == 0 { b'\n' } else { b })
            .collect(),
        // Valid requests whose answers are never read.
        1 => b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"port.list\"}\n".repeat(200),
        // Wrong types and unknown methods.
        2 => b"{\"jsonrpc\":\"2.0\",\"id\":[],\"method\":\"port.add\",\"params\":{\"name\":{}}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"x\"}\n".repeat(100),
        // A half-written request, then nothing.
        3 => b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"port.l".to_vec(),
        // Deep nesting.
        4 => {
            let mut v = vec![b'['; 100_000];
            v.push(b'\n');
            v
        }
        // A line that never ends.
        _ => vec![b'x'; 256 * 1024],
    }
}

/// Runs `threads` threads of hostile connections until `stop` is set (at most a minute);
/// returns how many request lines (newlines) they got into the socket.
fn flood(socket: &Path, threads: u64, stop: &Arc<AtomicBool>) -> u64 {
    let lines = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (socket, lines, stop) =
                (socket.to_path_buf(), Arc::clone(&lines), Arc::clone(stop));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut held = Vec::new();
                for kind in t.. {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let Ok(mut s) = UnixStream::connect(&socket) else {
                        continue;
                    };
                    s.set_write_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    let bytes = hostile_bytes(kind);
                    if s.write_all(&bytes).is_ok() {
                        let n = bytes.iter().filter(|&&b| b == b'\n').count();
                        lines.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    // Hold up to 40 connections open per thread, unread.
                    held.push(s);
                    if held.len() > 40 {
                        held.remove(0);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    lines.load(Ordering::Relaxed)
}

#[test]
fn hostile_clients_never_lock_out_brinkctl_and_memory_stays_bounded() {
    let topo = Topology::new("ctl");
    let d = Daemon::start(&topo.scratch(), &["--idle-sleep"]).unwrap();
    d.ctl_ok(&["network", "add", "blue"]).unwrap();
    let tap = format!("{}t", topo.prefix());
    add_tap_port(&d, "t1", &tap);
    let pid = d.pid().unwrap();
    let base = rss_kib(pid);
    let mut after = Vec::new();
    for round in 0..2 {
        let (socket, stop) = (d.socket.clone(), Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&stop);
        let hostile = std::thread::spawn(move || flood(&socket, 8, &flag));
        sleep(Duration::from_millis(500));
        let mut peak = 0;
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let start = Instant::now();
            let out = d.ctl(&["port", "list"]);
            slowest = slowest.max(start.elapsed());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains(&tap),
                "round {round}: brinkctl port list failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                d.log_text()
            );
            peak = peak.max(rss_kib(pid));
        }
        stop.store(true, Ordering::Relaxed);
        let lines = hostile.join().unwrap();
        after.push(rss_kib(pid));
        eprintln!(
            "round {round}: {lines} hostile request lines, 20 port lists answered (slowest \
             {slowest:?}), RSS {base} KiB at start, peak {peak} KiB, {} KiB after",
            after[round]
        );
        assert!(
            lines > 5_000,
            "round {round}: only {lines} hostile lines sent"
        );
        // 128 connections, each at most ~1.1 MiB of request and 256 KiB of answers.
        assert!(
            peak < base + 200 * 1024,
            "round {round}: RSS peaked at {peak} KiB"
        );
    }
    assert!(
        after[1] < after[0] + 32 * 1024,
        "RSS grows with what is sent: {after:?} KiB"
    );
    assert!(d
        .log_text()
        .contains("control socket: clients refused or closed"));
    d.ctl_ok(&["port", "del", "t1"]).unwrap();
}

/// A group made for one test, deleted on drop.
struct TempGroup(String);

impl TempGroup {
    fn new(name: &str) -> Self {
        let ok = Command::new("groupadd").arg(name).status().unwrap();
        assert!(ok.success(), "groupadd {name}");
        TempGroup(name.to_string())
    }

    fn gid(&self) -> u32 {
        let line = group_entry(&self.0);
        line.split(':').nth(2).unwrap().trim().parse().unwrap()
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

/// The `getent group` line of `key`, a group's name or gid; empty if there is none.
fn group_entry(key: &str) -> String {
    let out = Command::new("getent")
        .args(["group", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `brinkctl port list` run as user nobody, with `groups` as its supplementary groups.
fn as_nobody(d: &Daemon, groups: &str) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    match groups {
        "" => cmd.arg("--clear-groups"),
        g => cmd.arg(format!("--groups={g}")),
    };
    cmd.arg(bin_dir().join("brinkctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["port", "list"])
        .output()
        .unwrap()
}

#[test]
fn only_root_and_the_socket_group_may_use_the_socket() {
    let topo = Topology::new("grp");
    let d = Daemon::start(&topo.scratch().join("a"), &["--idle-sleep"]).unwrap();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "default socket mode");
    assert!(
        !as_nobody(&d, "").status.success(),
        "nobody used a 0600 socket"
    );
    drop(d);

    let group = TempGroup::new(topo.prefix());
    let d = Daemon::start(
        &topo.scratch().join("b"),
        &["--idle-sleep", "--socket-group", &group.0],
    )
    .unwrap();
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let wanted = group.gid();
    assert_eq!(
        meta.gid(),
        wanted,
        "socket group: the socket's gid is {}'s, the test group {} is gid {wanted}; log:\n{}",
        group_entry(&meta.gid().to_string()),
        group.0,
        d.log_text()
    );
    let member = as_nobody(&d, &wanted.to_string());
    assert!(
        member.status.success(),
        "a member of the socket group was refused: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    let outsider = as_nobody(&d, "");
    assert_eq!(
        outsider.status.code(),
        Some(3),
        "refused by the socket's mode"
    );
    // Even through a socket opened to everyone by mistake, brinkd checks the peer itself.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let outsider = as_nobody(&d, "");
    assert!(!outsider.status.success(), "an outsider was served");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !d
        .log_text()
        .contains("control connection refused: user not allowed")
    {
        assert!(
            Instant::now() < deadline,
            "refusal not logged:\n{}",
            d.log_text()
        );
        sleep(Duration::from_millis(50));
    }
    assert!(d.log_text().contains("uid=65534"), "{}", d.log_text());
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    let topo = Topology::new("fds");
    let d = Daemon::start(&topo.scratch(), &["--idle-sleep"]).unwrap();
    let pid = d.pid().unwrap().to_string();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = format!("--nofile={0}:{0}", open + 8);
    let out = Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.log_text().contains("cannot accept a control connection") {
        assert!(
            Instant::now() < deadline,
            "no accept error:\n{}",
            d.log_text()
        );
        sleep(Duration::from_millis(50));
    }
    let out = d.ctl(&["port", "list"]);
    assert!(
        out.status.success(),
        "brinkctl failed while brinkd was out of file descriptors: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    drop(held);
    assert!(d.ctl(&["network", "list"]).status.success());
}
