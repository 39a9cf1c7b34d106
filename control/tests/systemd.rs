//! brinkd under a service manager: `READY=1` once restored, watchdog pings, SIGHUP survived,
//! `STOPPING=1` on SIGTERM. The test plays systemd's part with a datagram socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Messages received on `sock` until one contains `want` or `limit` passes.
fn until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if got.last().is_some_and(|m| m.contains(want)) {
                break;
            }
        }
    }
    got
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn brinkd_tells_systemd_it_is_ready_pings_the_watchdog_and_survives_sighup() {
    let dir = std::env::temp_dir().join(format!("brksd{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let notify = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log = dir.join("brinkd.log");
    // systemd names the watched process: the shell execs brinkd, which keeps its pid.
    let mut brinkd = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_brinkd"))
        .arg("--socket")
        .arg(dir.join("brink.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--idle-sleep")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ready = until(&sock, "READY=1", Duration::from_secs(10));
    assert!(
        ready
            .last()
            .is_some_and(|m| m.contains("STATUS=0 networks")),
        "{ready:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let pings = until(&sock, "never", Duration::from_millis(1500));
    let watchdog = pings.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(watchdog >= 3, "{pings:?}");
    signal(brinkd.id(), "-HUP");
    sleep(Duration::from_millis(300));
    assert!(brinkd.try_wait().unwrap().is_none(), "SIGHUP killed brinkd");
    assert!(std::fs::read_to_string(&log).unwrap().contains("SIGHUP"));
    signal(brinkd.id(), "-TERM");
    let stopping = until(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(
        stopping.last().is_some_and(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    assert!(brinkd.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
