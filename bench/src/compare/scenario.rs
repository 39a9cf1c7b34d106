//! The scenarios every system runs, and how a figure is made of several runs.
//!
//! A run returns named measurements; [`measure`] repeats it, repeats once more a run during
//! which other processes used more than [`LOADED`] of the machine (and flags it if the repeat
//! is loaded too), and keeps the median, min and max of each measurement.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::load::LoadSample;
use super::{Rig, Switch};
use crate::pktgen::frame::Mode;
use crate::topo::Vm;
use crate::traffic::{self, rx_packets, Offer, Receiver};
use crate::BenchError;

/// Share of the machine's CPU other processes may use during a run before it is repeated.
pub const LOADED: f64 = 0.05;
/// Time for the last frames to arrive before counters are read.
const SETTLE: Duration = Duration::from_millis(200);

/// How long and how often to measure, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Runs per figure.
    pub runs: usize,
    /// Seconds of traffic per run.
    pub seconds: f64,
    /// Core of the switch (brink's worker, OVS's PMD, the forwarder).
    pub switch_core: usize,
    /// Core of the generators, receivers, iperf3 and ping.
    pub generator_core: usize,
    /// New connections offered per new-connection run.
    pub new_connections: u64,
    /// Pings per latency run.
    pub pings: u32,
    /// Frames per second of the latency runs.
    pub latency_rate: f64,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// 64-byte UDP, one flow, as fast as the generator goes.
    Udp1Flow,
    /// 64-byte UDP, 1,000 flows.
    Udp1000Flows,
    /// A new UDP 5-tuple per frame.
    NewConnections,
    /// iperf3, one stream, the VMs' offloads at their defaults.
    TcpOffloads,
    /// iperf3 with the VMs' TX checksum offload off.
    TcpChecksumOff,
    /// Stamped UDP at a low rate, one-way latency from brink-pktgen's receiver.
    Latency,
    /// ping round trips.
    Ping,
    /// The generator alone: 64-byte UDP into the sending VM's veth, nothing attached.
    Ceiling,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Udp1Flow,
        Scenario::Udp1000Flows,
        Scenario::NewConnections,
        Scenario::TcpOffloads,
        Scenario::TcpChecksumOff,
        Scenario::Latency,
        Scenario::Ping,
    ];

    /// What rule scale runs at each rule count.
    pub const RULE_SCALE: [Scenario; 2] = [Scenario::Udp1000Flows, Scenario::NewConnections];

    /// Its title in reports.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::Udp1Flow => "64-byte UDP, 1 flow",
            Scenario::Udp1000Flows => "64-byte UDP, 1,000 flows",
            Scenario::NewConnections => "new connections (UDP 5-tuples)",
            Scenario::TcpOffloads => "TCP (iperf3), VM offloads at defaults",
            Scenario::TcpChecksumOff => "TCP (iperf3), VM TX checksum offload off",
            Scenario::Latency => "one-way latency (brink-pktgen)",
            Scenario::Ping => "ping round trip",
            Scenario::Ceiling => "generator ceiling: 64-byte UDP into a veth, no switch",
        }
    }

    /// One run of it against `sw` between the rig's VMs.
    pub fn run_once(self, s: &Settings, rig: &Rig, sw: &dyn Switch) -> Result<Metrics, BenchError> {
        match self {
            Scenario::Udp1Flow => udp_rate(s, rig, sw, 1),
            Scenario::Udp1000Flows => udp_rate(s, rig, sw, 1000),
            Scenario::NewConnections => new_connections(s, rig, sw),
            Scenario::TcpOffloads => tcp(s, rig, true),
            Scenario::TcpChecksumOff => tcp(s, rig, false),
            Scenario::Latency => latency(s, rig),
            Scenario::Ping => ping(s, rig),
            Scenario::Ceiling => ceiling(s, rig),
        }
    }
}

/// Named measurements of one run.
pub type Metrics = Vec<(&'static str, f64)>;

/// One measurement over the runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// What it is, with its unit.
    pub metric: String,
    /// Every run's value.
    pub runs: Vec<f64>,
    /// Median of the runs.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// A scenario's figures on one system, or why there are none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// The system.
    pub system: String,
    /// Ingress rules per port.
    pub rules: usize,
    /// The figures.
    pub figures: Vec<Figure>,
    /// Runs repeated because other processes were busy.
    pub repeated: usize,
    /// Kept runs during which other processes were busy anyway.
    pub flagged: usize,
    /// Why the runs failed, if they did.
    pub error: Option<String>,
}

impl Outcome {
    /// The median of `metric`, if measured.
    pub fn median(&self, metric: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.metric == metric)
            .map(|f| f.median)
    }
}

/// The value at quantile `q` (0-1) of `values`, by the nearest-rank method.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(0.0)
}

/// Runs `one` `s.runs` times (a loaded run once more) and makes the figures.
pub fn measure(
    s: &Settings,
    scenario: Scenario,
    system: &str,
    rules: usize,
    mut one: impl FnMut() -> Result<Metrics, BenchError>,
) -> Outcome {
    let mut outcome = Outcome {
        scenario,
        system: system.into(),
        rules,
        figures: Vec::new(),
        repeated: 0,
        flagged: 0,
        error: None,
    };
    let mut runs: Vec<Metrics> = Vec::new();
    for _ in 0..s.runs {
        for attempt in 0..2 {
            let before = LoadSample::take();
            let result = one();
            let loaded = before.foreign_share_until(&LoadSample::take()) > LOADED;
            match result {
                Err(e) => {
                    outcome.error = Some(e.to_string());
                    return outcome;
                }
                Ok(_) if loaded && attempt == 0 => outcome.repeated += 1,
                Ok(m) => {
                    outcome.flagged += usize::from(loaded);
                    runs.push(m);
                    break;
                }
            }
        }
    }
    let names: Vec<&str> = runs
        .first()
        .map_or(vec![], |m| m.iter().map(|p| p.0).collect());
    outcome.figures = names
        .into_iter()
        .map(|name| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|m| m.iter().find(|p| p.0 == name).map(|p| p.1))
                .collect();
            Figure {
                metric: name.into(),
                median: quantile(&values, 0.5),
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                runs: values,
            }
        })
        .collect();
    outcome
}

/// Frames the receiving VM's `eth0` has counted.
fn delivered_so_far(vm: &Vm) -> Result<u64, BenchError> {
    rx_packets(Some(&vm.netns), "eth0")
}

/// The sender's report: (frames sent, seconds).
fn sent(report: &serde_json::Value) -> (u64, f64) {
    (
        report["sent"].as_u64().unwrap_or(0),
        report["seconds"].as_f64().unwrap_or(0.0).max(1e-9),
    )
}

/// 64-byte UDP in `flows` flows as fast as the generator goes: delivered rate, loss, and the
/// switch core's busy time per delivered frame.
fn udp_rate(s: &Settings, rig: &Rig, sw: &dyn Switch, flows: u32) -> Result<Metrics, BenchError> {
    let offer = Offer {
        mode: Mode::Udp,
        size: 64,
        flows,
        rate: None,
        count: u64::MAX,
        seconds: s.seconds,
    };
    let (rx0, clock0, t0) = (
        delivered_so_far(rig.receiver())?,
        sw.clock()?,
        Instant::now(),
    );
    let report = traffic::send(s.generator_core, rig.sender(), rig.receiver(), &offer)?;
    std::thread::sleep(SETTLE);
    let (rx1, clock1) = (delivered_so_far(rig.receiver())?, sw.clock()?);
    let wall_ns = t0.elapsed().as_nanos() as f64;
    let (sent, seconds) = sent(&report);
    let delivered = rx1.saturating_sub(rx0);
    let mut m = vec![
        ("delivered Mpps", delivered as f64 / seconds / 1e6),
        ("sent Mpps", sent as f64 / seconds / 1e6),
        ("loss %", loss(sent, delivered)),
    ];
    if let (Some(a), Some(b)) = (clock0, clock1) {
        if let Some(busy) = b.busy_ns_since(&a, wall_ns) {
            m.push(("switch core ns/frame", busy / delivered.max(1) as f64));
        }
    }
    Ok(m)
}

fn loss(sent: u64, delivered: u64) -> f64 {
    100.0 * sent.saturating_sub(delivered) as f64 / sent.max(1) as f64
}

/// A new UDP 5-tuple per frame, from an empty connection table: offered and delivered rates,
/// the share delivered, and the connections tracked afterwards.
fn new_connections(s: &Settings, rig: &Rig, sw: &dyn Switch) -> Result<Metrics, BenchError> {
    sw.flush()?;
    let offer = Offer {
        mode: Mode::NewUdp,
        size: 64,
        flows: 1,
        rate: None,
        count: s.new_connections,
        seconds: 30.0,
    };
    let rx0 = delivered_so_far(rig.receiver())?;
    let report = traffic::send(s.generator_core, rig.sender(), rig.receiver(), &offer)?;
    std::thread::sleep(SETTLE);
    let delivered = delivered_so_far(rig.receiver())?.saturating_sub(rx0);
    let (sent, seconds) = sent(&report);
    let mut m = vec![
        ("offered k/s", sent as f64 / seconds / 1e3),
        ("delivered k/s", delivered as f64 / seconds / 1e3),
        ("delivered %", 100.0 - loss(sent, delivered)),
    ];
    if let Some(n) = sw.connections()? {
        m.push(("tracked after", n as f64));
    }
    Ok(m)
}

/// One iperf3 stream, with the VMs' TX checksum offload on (their default) or off.
fn tcp(s: &Settings, rig: &Rig, offloads: bool) -> Result<Metrics, BenchError> {
    let setting = if offloads { "on" } else { "off" };
    for vm in &rig.vms {
        vm.run("ethtool", &["-K", "eth0", "tx", setting])?;
    }
    let result = traffic::iperf3(s.generator_core, rig.sender(), rig.receiver(), s.seconds);
    if !offloads {
        for vm in &rig.vms {
            vm.run("ethtool", &["-K", "eth0", "tx", "on"])?;
        }
    }
    let (bps, retransmits) = result?;
    Ok(vec![("Gbit/s", bps / 1e9), ("retransmits", retransmits)])
}

/// Stamped UDP at `s.latency_rate` frames per second: one-way latency percentiles and loss.
fn latency(s: &Settings, rig: &Rig) -> Result<Metrics, BenchError> {
    let receiver = Receiver::start(s.generator_core, rig.receiver(), s.seconds + 5.0)?;
    let offer = Offer {
        mode: Mode::Udp,
        size: 64,
        flows: 1,
        rate: Some(s.latency_rate),
        count: u64::MAX,
        seconds: s.seconds,
    };
    let report = traffic::send(s.generator_core, rig.sender(), rig.receiver(), &offer)?;
    let got = receiver.finish()?;
    let (sent, _) = sent(&report);
    let received = got["received"].as_u64().unwrap_or(0);
    if received == 0 {
        return Err(BenchError::Config("no stamped frame arrived".into()));
    }
    let lat = &got["latency"];
    let us = |k: &str| lat[k].as_f64().unwrap_or(0.0);
    Ok(vec![
        ("p50 us", us("p50_us")),
        ("p99 us", us("p99_us")),
        ("p99.9 us", us("p999_us")),
        ("max us", us("max_us")),
        ("loss %", loss(sent, received)),
        ("reordered", got["reordered"].as_f64().unwrap_or(0.0)),
    ])
}

/// `s.pings` pings: round-trip percentiles.
fn ping(s: &Settings, rig: &Rig) -> Result<Metrics, BenchError> {
    let rtts = traffic::ping(rig.sender(), rig.receiver(), s.pings)?;
    Ok(vec![
        ("p50 us", quantile(&rtts, 0.5)),
        ("p99 us", quantile(&rtts, 0.99)),
        ("max us", quantile(&rtts, 1.0)),
        ("lost", f64::from(s.pings) - rtts.len() as f64),
    ])
}

/// brink-pktgen alone: what the sending VM's veth peer receives, with nothing attached to it.
fn ceiling(s: &Settings, rig: &Rig) -> Result<Metrics, BenchError> {
    let offer = Offer {
        mode: Mode::Udp,
        size: 64,
        flows: 1,
        rate: None,
        count: u64::MAX,
        seconds: s.seconds,
    };
    let host_if = &rig.sender().host_if;
    let rx0 = rx_packets(None, host_if)?;
    let report = traffic::send(s.generator_core, rig.sender(), rig.receiver(), &offer)?;
    let arrived = rx_packets(None, host_if)?.saturating_sub(rx0);
    let (_, seconds) = sent(&report);
    Ok(vec![("Mpps", arrived as f64 / seconds / 1e6)])
}

/// trafgen (netsniff-ng) the same way, one CPU: its rate from its own report.
pub fn trafgen_ceiling(s: &Settings, rig: &Rig) -> Result<Metrics, BenchError> {
    let (from, to) = (rig.sender(), rig.receiver());
    let config = rig.topo.scratch().join("trafgen.cfg");
    let frame = format!(
        "{{ eth(da={}, sa={}), ipv4(sa={}, da={}), udp(sp=10000, dp=9), fill(0x00, 22) }}\n",
        to.mac, from.mac, from.ip, to.ip
    );
    std::fs::write(&config, frame)
        .map_err(|e| BenchError::Config(format!("{}: {e}", config.display())))?;
    let count = (700_000.0 * s.seconds) as u64;
    let out = crate::run(
        "taskset",
        &[
            "-c",
            &s.generator_core.to_string(),
            "timeout",
            &format!("{:.0}", s.seconds * 4.0 + 10.0),
            "ip",
            "netns",
            "exec",
            &from.netns,
            "trafgen",
            "-o",
            "eth0",
            "-i",
            &config.to_string_lossy(),
            "--cpus",
            "1",
            "-n",
            &count.to_string(),
        ],
    )?;
    // "  2 sec, 904690 usec on CPU0 (1500000 packets)"
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("usec on CPU"))
        .ok_or_else(|| BenchError::Config(format!("no rate in trafgen's output: {text}")))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| {
        words
            .get(i)
            .and_then(|w| w.trim_start_matches('(').parse::<f64>().ok())
    };
    let (Some(sec), Some(usec), Some(packets)) = (num(0), num(2), num(6)) else {
        return Err(BenchError::Config(format!(
            "unreadable trafgen line {line:?}"
        )));
    };
    Ok(vec![("Mpps", packets / (sec + usec / 1e6).max(1e-9) / 1e6)])
}
