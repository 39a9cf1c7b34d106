//! The comparison's report: what ran where (revision, machine, kernel, versions), as JSON, and
//! the figures as Markdown tables, one per scenario.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::scenario::{Outcome, Scenario, Settings, LOADED};
use super::{ovs, Results};

/// Where and with what the figures were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The command line.
    pub command: String,
    /// brink's git revision (with `-dirty` for uncommitted changes).
    pub revision: String,
    /// When (UTC).
    pub date: String,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Versions of the other systems and tools.
    pub versions: BTreeMap<String, String>,
    /// How the runs were made.
    pub settings: Settings,
}

/// The first line `program args` prints (on stdout or stderr), or "absent".
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "absent".into())
}

impl Meta {
    /// Collects the facts of this machine for `settings`, run as `command`.
    pub fn collect(command: String, settings: Settings) -> Meta {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_default();
        let versions = [
            ("ovs", ovs::version().unwrap_or_else(|| "absent".into())),
            ("iperf3", first_line("iperf3", &["--version"])),
            ("iptables", first_line("iptables", &["--version"])),
            ("trafgen", first_line("trafgen", &["--version"])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Meta {
            command,
            revision: first_line("git", &["describe", "--always", "--dirty"]),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            kernel: first_line("uname", &["-r"]),
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            versions,
            settings,
        }
    }
}

/// A number with as many digits as it deserves.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}

/// The Markdown report: machine and method, skipped systems, and a table per scenario.
pub fn markdown(meta: &Meta, r: &Results) -> String {
    let s = &meta.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Revision {}, {}; {} ({} CPUs), kernel {}; {}.\n\nSwitch (brink's worker, OVS's PMD, \
         the forwarder) on core {}; generators, receivers, iperf3 and ping on core {}. Each figure: \
         median of {} run(s) of {} s (min-max); a run during which other processes used more than \
         {:.0}% of the machine was repeated once, and is counted as flagged if the repeat was \
         loaded too.\n\nCommand: `{}`\n",
        meta.revision,
        meta.date,
        meta.cpu,
        meta.cpus,
        meta.kernel,
        meta.versions.values().cloned().collect::<Vec<_>>().join("; "),
        s.switch_core,
        s.generator_core,
        s.runs,
        s.seconds,
        LOADED * 100.0,
        meta.command
    );
    for m in &r.missing_tools {
        let _ = writeln!(out, "- missing tool: {m}");
    }
    for k in &r.skipped {
        let _ = writeln!(
            out,
            "- **{}** ({} rules) skipped: {}",
            k.system, k.rules, k.reason
        );
    }
    let base = super::sg::ALLOW.len();
    let mut scenarios: Vec<Scenario> = vec![Scenario::Ceiling];
    scenarios.extend(Scenario::ALL);
    for scenario in scenarios {
        let rows: Vec<&Outcome> = r
            .outcomes
            .iter()
            .filter(|o| o.scenario == scenario && o.rules <= base)
            .collect();
        table(&mut out, scenario.title(), &rows, false);
    }
    for scenario in Scenario::RULE_SCALE {
        let rows: Vec<&Outcome> = r
            .outcomes
            .iter()
            .filter(|o| o.scenario == scenario && o.rules > base)
            .collect();
        table(
            &mut out,
            &format!("rule scale: {}", scenario.title()),
            &rows,
            true,
        );
    }
    out
}

/// One table: a row per outcome, a column per metric.
fn table(out: &mut String, title: &str, rows: &[&Outcome], with_rules: bool) {
    if rows.is_empty() {
        return;
    }
    let mut metrics: Vec<&str> = Vec::new();
    for f in rows.iter().flat_map(|o| &o.figures) {
        if !metrics.contains(&f.metric.as_str()) {
            metrics.push(&f.metric);
        }
    }
    if metrics.is_empty() {
        metrics.push("result");
    }
    let rules = if with_rules { " rules |" } else { "" };
    let _ = writeln!(
        out,
        "\n### {title}\n\n| system |{rules} {} | runs repeated / flagged |\n|---|{}{}---|",
        metrics.join(" | "),
        if with_rules { "---|" } else { "" },
        "---|".repeat(metrics.len())
    );
    for o in rows {
        let rules = if with_rules {
            format!(" {} |", o.rules)
        } else {
            String::new()
        };
        let cells: Vec<String> = match &o.error {
            Some(e) => {
                let mut c = vec![format!(
                    "failed: {}",
                    e.replace('|', "/").replace('\n', " ")
                )];
                c.resize(metrics.len(), String::new());
                c
            }
            None => metrics
                .iter()
                .map(|m| {
                    o.figures
                        .iter()
                        .find(|f| f.metric == *m)
                        .map_or("-".into(), |f| {
                            format!("**{}** ({}-{})", num(f.median), num(f.min), num(f.max))
                        })
                })
                .collect(),
        };
        let _ = writeln!(
            out,
            "| {} |{rules} {} | {} / {} |",
            o.system,
            cells.join(" | "),
            o.repeated,
            o.flagged
        );
    }
}
