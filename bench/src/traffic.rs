//! Traffic between namespaced VMs: `brink-pktgen` senders and receivers, iperf3 and ping, each
//! pinned to a core and bounded in time, and the kernel's interface counters.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::bin_dir;
use crate::pktgen::frame::Mode;
use crate::pktgen::receive::READY;
use crate::topo::Vm;
use crate::{run, BenchError};

/// Extra seconds a bounded command may take beyond its own duration.
const GRACE: f64 = 10.0;

/// What a `brink-pktgen send` should do.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The traffic.
    pub mode: Mode,
    /// Frame size.
    pub size: usize,
    /// Flows.
    pub flows: u32,
    /// Frames per second, or as fast as possible.
    pub rate: Option<f64>,
    /// At most this many frames.
    pub count: u64,
    /// At most this many seconds.
    pub seconds: f64,
}

/// A command run inside `vm`, pinned to `core`, under `timeout`.
fn pinned(core: usize, vm: &Vm, limit: f64, program: &std::path::Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &core.to_string(), "timeout", &format!("{limit:.0}")])
        .args(["ip", "netns", "exec", &vm.netns])
        .arg(program);
    c
}

fn json_of(out: std::process::Output, what: &str) -> Result<Value, BenchError> {
    if !out.status.success() {
        return Err(BenchError::Command {
            command: what.into(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Config(format!("{what}: {e}")))
}

/// Runs `brink-pktgen send` in `from` towards `to` on `core`; returns its JSON report.
pub fn send(core: usize, from: &Vm, to: &Vm, offer: &Offer) -> Result<Value, BenchError> {
    let pktgen = bin_dir().join("brink-pktgen");
    let mode = serde_json::to_value(offer.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut c = pinned(core, from, offer.seconds + GRACE, &pktgen);
    c.args(["send", "--mode", &mode, "--dst-mac", &to.mac])
        .args(["--src-ip", &from.ip, "--dst-ip", &to.ip])
        .args(["--size", &offer.size.to_string()])
        .args(["--flows", &offer.flows.to_string()])
        .args(["--count", &offer.count.to_string()])
        .args(["--seconds", &offer.seconds.to_string()]);
    if let Some(rate) = offer.rate {
        c.args(["--rate", &rate.to_string()]);
    }
    let out = c
        .output()
        .map_err(|e| BenchError::Config(format!("{}: {e}", pktgen.display())))?;
    json_of(out, "brink-pktgen send")
}

/// A `brink-pktgen receive` running in a VM.
#[derive(Debug)]
pub struct Receiver {
    child: Option<Child>,
    /// Kept open, so the receiver can still write to it.
    _stderr: Option<BufReader<ChildStderr>>,
}

impl Receiver {
    /// Starts a receiver on `vm`'s `eth0`, pinned to `core`, for at most `seconds`, and waits
    /// until its socket is open.
    pub fn start(core: usize, vm: &Vm, seconds: f64) -> Result<Receiver, BenchError> {
        let pktgen = bin_dir().join("brink-pktgen");
        let mut child = pinned(core, vm, seconds + GRACE, &pktgen)
            .args(["receive", "--seconds", &seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Config(format!("{}: {e}", pktgen.display())))?;
        let mut stderr = child.stderr.take().map(BufReader::new);
        let ready = stderr
            .as_mut()
            .is_some_and(|e| e.lines().map_while(Result::ok).any(|l| l.contains(READY)));
        let receiver = Receiver {
            child: Some(child),
            _stderr: stderr,
        };
        if ready {
            Ok(receiver)
        } else {
            Err(BenchError::Config(
                "brink-pktgen receive did not open its socket".into(),
            ))
        }
    }

    /// Waits for the receiver to stop (it does so when nothing arrived for a second) and
    /// returns its JSON report.
    pub fn finish(mut self) -> Result<Value, BenchError> {
        let Some(child) = self.child.take() else {
            return Err(BenchError::Config("receiver already finished".into()));
        };
        let out = child
            .wait_with_output()
            .map_err(|e| BenchError::Config(format!("brink-pktgen receive: {e}")))?;
        json_of(out, "brink-pktgen receive")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Frames `iface` has received (in `netns`, or the root namespace).
pub fn rx_packets(netns: Option<&str>, iface: &str) -> Result<u64, BenchError> {
    let path = format!("/sys/class/net/{iface}/statistics/rx_packets");
    let out = match netns {
        Some(ns) => run("ip", &["netns", "exec", ns, "cat", &path])?.stdout,
        None => std::fs::read(&path).map_err(|e| BenchError::Config(format!("{path}: {e}")))?,
    };
    String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .map_err(|_| BenchError::Config(format!("unreadable counter {path}")))
}

/// TCP throughput of one iperf3 stream from `from` to `to`: (bit/s, retransmits).
pub fn iperf3(core: usize, from: &Vm, to: &Vm, seconds: f64) -> Result<(f64, f64), BenchError> {
    let iperf = std::path::Path::new("iperf3");
    let server = pinned(core, to, seconds + GRACE, iperf)
        .args(["-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Config(format!("iperf3: {e}")))?;
    let _server = KillOnDrop(server);
    let mut last = None;
    // The server needs a moment to listen; the client retries a few times.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let out = pinned(core, from, seconds + GRACE, iperf)
            .args([
                "-c",
                &to.ip,
                "-p",
                "5201",
                "-J",
                "--connect-timeout",
                "2000",
            ])
            .args(["-t", &format!("{seconds:.0}")])
            .output()
            .map_err(|e| BenchError::Config(format!("iperf3: {e}")))?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let sent = &v["end"]["sum_sent"];
        if let (Some(bps), Some(retr)) = (
            sent["bits_per_second"].as_f64(),
            sent["retransmits"].as_f64(),
        ) {
            return Ok((bps, retr));
        }
        last = v["error"].as_str().map(str::to_string);
        if last.as_deref().is_some_and(|e| !e.contains("connect")) {
            break;
        }
    }
    Err(BenchError::Config(format!(
        "iperf3: {}",
        last.unwrap_or_else(|| "no result".into())
    )))
}

/// Round-trip times in microseconds of `count` pings from `from` to `to`, 10 ms apart.
pub fn ping(from: &Vm, to: &Vm, count: u32) -> Result<Vec<f64>, BenchError> {
    let out = from
        .exec(
            "ping",
            &["-c", &count.to_string(), "-i", "0.01", "-W", "1", &to.ip],
        )
        .map_err(|e| BenchError::Config(format!("ping: {e}")))?;
    let rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok())
        .map(|ms: f64| ms * 1e3)
        .collect();
    if rtts.is_empty() {
        return Err(BenchError::Config(format!(
            "ping {} from {}: no reply",
            to.ip, from.netns
        )));
    }
    Ok(rtts)
}

/// A child process killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
