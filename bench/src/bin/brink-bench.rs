//! `brink-bench`: runs traffic scenarios through brinkd (`one-way`) or through brink and the
//! systems it replaces side by side (`compare`), and reports JSON plus Markdown.

use std::path::PathBuf;

use anyhow::Context;
use brink_bench::compare::{self, plot, report, scenario::Settings, vhost, System};
use brink_bench::scenario::{self, ScenarioConfig};
use clap::Parser;

/// Measure brink with real traffic between namespaced VMs (needs root; uses 2 cores).
#[derive(Debug, Parser)]
#[command(name = "brink-bench", version, about)]
enum Args {
    /// One-way UDP from the generator alone and through brinkd (L2 only, conntrack on).
    OneWay(OneWay),
    /// brink, the hybrid path, Open vSwitch, the Linux bridge floor and a bare AF_XDP
    /// forwarder, the same scenarios on each.
    Compare(Compare),
    /// Renders the Markdown report and the plots again from a `compare --json` file.
    Report(Report),
    /// One-way UDP between hosts through VXLAN (brink, Linux and Open vSwitch ends) next to one
    /// brink host, and TCP through the tunnel.
    Tunnel(OneWay),
    /// testpmd's vhost-user mac loop through brink (port security, stateful group, conntrack)
    /// and through Open vSwitch-DPDK (NORMAL, and conntrack), one after the other.
    Vhost(Vhost),
}

#[derive(Debug, clap::Args)]
struct Vhost {
    /// Seconds of each loop (the rate is testpmd's last 2-second stats period).
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds: each runs every switch once, in order; the summary gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The switches, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "brink,ovs-normal,ovs-ct"
    )]
    systems: Vec<vhost::LoopSystem>,
    /// Queue pairs of testpmd's devices and brink's ports (testpmd `queues=N`, `--rxq/--txq`).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// brinkd's `--cores` (one worker per core; testpmd forwards on core 0).
    #[arg(long, default_value = "1")]
    brink_cores: String,
    /// Write the JSON results here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Report {
    /// The JSON a `compare` wrote.
    json: PathBuf,
    /// Where the Markdown and plots go.
    #[command(flatten)]
    out: Outputs,
}

/// Where a comparison's report goes.
#[derive(Debug, clap::Args)]
struct Outputs {
    /// Write the Markdown report here (it is printed too).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write the SVG plots into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
}

/// What `compare --json` writes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Document {
    meta: report::Meta,
    results: compare::Results,
}

#[derive(Debug, clap::Args)]
struct OneWay {
    /// Runs per variant.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of traffic per run (at most 60).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Frame size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Flows (UDP source ports).
    #[arg(long, default_value_t = 1)]
    flows: u16,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Compare {
    /// One short run of each scenario (a smoke test; the figures mean little).
    #[arg(long)]
    quick: bool,
    /// Runs per figure (at least 3 for a report).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of traffic per run (at most 60).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Systems to compare (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    /// Rule counts per port for rule scale (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    rules: Vec<usize>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    out: Outputs,
}

fn write(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The scenario settings `a` asks for.
fn scenario_config(a: &OneWay) -> anyhow::Result<ScenarioConfig> {
    anyhow::ensure!((1..=20).contains(&a.runs), "--runs must be 1-20");
    anyhow::ensure!(
        a.seconds > 0.0 && a.seconds <= 60.0,
        "--seconds must be in (0, 60]"
    );
    Ok(ScenarioConfig {
        runs: a.runs,
        seconds: a.seconds,
        size: a.size,
        flows: a.flows,
        switch_core: 1,
        generator_core: 0,
    })
}

/// Writes `report` (plus the git revision) as JSON if asked, and prints `markdown`.
fn publish(a: &OneWay, mut report: serde_json::Value, markdown: &str) -> anyhow::Result<()> {
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if let Some(path) = &a.json {
        report["revision"] = serde_json::json!(revision);
        write(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    println!("revision {revision}\n\n{markdown}");
    Ok(())
}

fn one_way(a: OneWay) -> anyhow::Result<()> {
    let cfg = scenario_config(&a)?;
    let variants = scenario::udp_one_way(&cfg)?;
    let report = serde_json::json!({ "config": cfg, "variants": variants });
    publish(&a, report, &scenario::markdown(&cfg, &variants))
}

fn tunnel(a: OneWay) -> anyhow::Result<()> {
    let cfg = scenario_config(&a)?;
    let (variants, bps, retransmits) = brink_bench::tunnel::udp_tunnel(&cfg)?;
    let report = serde_json::json!({
        "config": cfg, "variants": variants, "tcp_bps": bps, "tcp_retransmits": retransmits,
    });
    let tcp = format!(
        "\nTCP through brink -> VXLAN -> brink (iperf3, one stream, {} s): {:.2} Gbit/s, {} \
         retransmits\n",
        cfg.seconds,
        bps / 1e9,
        retransmits
    );
    publish(&a, report, &(scenario::markdown(&cfg, &variants) + &tcp))
}

fn compare(a: Compare) -> anyhow::Result<()> {
    anyhow::ensure!((1..=20).contains(&a.runs), "--runs must be 1-20");
    anyhow::ensure!(
        a.seconds > 0.0 && a.seconds <= 60.0,
        "--seconds must be in (0, 60]"
    );
    let settings = if a.quick {
        Settings {
            runs: 1,
            seconds: 1.0,
            switch_core: 1,
            generator_core: 0,
            new_connections: 20_000,
            pings: 20,
            latency_rate: 10_000.0,
        }
    } else {
        Settings {
            runs: a.runs,
            seconds: a.seconds,
            switch_core: 1,
            generator_core: 0,
            new_connections: 200_000,
            pings: 200,
            latency_rate: 10_000.0,
        }
    };
    let systems = if a.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        a.systems
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let doc = Document {
        results: compare::compare(&settings, &systems, &a.rules),
        meta: report::Meta::collect(command, settings),
    };
    if let Some(path) = &a.json {
        write(path, &serde_json::to_vec_pretty(&doc)?)?;
    }
    render(&doc, &a.out)
}

/// Writes and prints the Markdown report, and writes the plots.
fn render(doc: &Document, out: &Outputs) -> anyhow::Result<()> {
    let markdown = report::markdown(&doc.meta, &doc.results);
    if let Some(path) = &out.markdown {
        write(path, markdown.as_bytes())?;
    }
    if let Some(dir) = &out.plots {
        std::fs::create_dir_all(dir)?;
        plot::write_all(dir, "compare-", &doc.results)?;
    }
    println!("{markdown}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    brink_dataplane::port::afxdp::silence_library_logs();
    match Args::parse() {
        Args::OneWay(a) => one_way(a),
        Args::Compare(a) => compare(a),
        Args::Tunnel(a) => tunnel(a),
        Args::Vhost(a) => {
            let shape = vhost::Shape {
                queues: a.queues,
                brink_cores: a.brink_cores.clone(),
            };
            let time = (a.seconds.clamp(4, 60), a.rounds.clamp(1, 20));
            let results = vhost::run_all(&a.systems, time, &shape)?;
            if let Some(path) = &a.json {
                std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
            }
            println!("{}", vhost::markdown(&results));
            Ok(())
        }
        Args::Report(a) => {
            let text = std::fs::read(&a.json)
                .with_context(|| format!("cannot read {}", a.json.display()))?;
            render(&serde_json::from_slice(&text)?, &a.out)
        }
    }
}
