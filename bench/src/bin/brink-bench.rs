//! `brink-bench`: runs a traffic scenario through brinkd and reports JSON plus a Markdown table.

use anyhow::Context;
use brink_bench::scenario::{self, ScenarioConfig};
use clap::Parser;

/// Measure brink with real traffic between namespaced VMs (needs root; uses 2 cores).
#[derive(Debug, Parser)]
#[command(name = "brink-bench", version, about)]
struct Args {
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
    json: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((1..=20).contains(&a.runs), "--runs must be 1-20");
    anyhow::ensure!(
        a.seconds > 0.0 && a.seconds <= 60.0,
        "--seconds must be in (0, 60]"
    );
    let cfg = ScenarioConfig {
        runs: a.runs,
        seconds: a.seconds,
        size: a.size,
        flows: a.flows,
        switch_core: 1,
        generator_core: 0,
    };
    let variants = scenario::udp_one_way(&cfg)?;
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if let Some(path) = &a.json {
        let report =
            serde_json::json!({ "revision": revision, "config": cfg, "variants": variants });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "revision {revision}\n\n{}",
        scenario::markdown(&cfg, &variants)
    );
    Ok(())
}
