//! SVG bar charts of the comparison (`plotters`): throughput, latency and new-connection rate
//! per system, medians with min-max whiskers.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::scenario::{Outcome, Scenario};
use super::{sg, Results};
use crate::BenchError;

/// One bar series: a label and, per system, (median, min, max) if measured.
type Series = (String, Vec<Option<(f64, f64, f64)>>);

/// Colours of the series, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Writes `throughput.svg`, `latency.svg` and `new-connections.svg` into `dir` (file names
/// prefixed by `prefix`); returns their paths.
pub fn write_all(dir: &Path, prefix: &str, r: &Results) -> Result<Vec<PathBuf>, BenchError> {
    let mut systems: Vec<String> = Vec::new();
    for o in r
        .outcomes
        .iter()
        .filter(|o| o.scenario != Scenario::Ceiling)
    {
        if !systems.contains(&o.system) {
            systems.push(o.system.clone());
        }
    }
    let series = |label: &str, scenario: Scenario, metric: &str| -> Series {
        let values = systems
            .iter()
            .map(|sys| {
                let o: &Outcome = r.outcomes.iter().find(|o| {
                    o.scenario == scenario && &o.system == sys && o.rules <= sg::ALLOW.len()
                })?;
                let f = o.figures.iter().find(|f| f.metric == metric)?;
                Some((f.median, f.min, f.max))
            })
            .collect();
        (label.to_string(), values)
    };
    let charts = [
        (
            "throughput",
            "64-byte UDP delivered",
            "Mpps",
            vec![
                series("1 flow", Scenario::Udp1Flow, "delivered Mpps"),
                series("1,000 flows", Scenario::Udp1000Flows, "delivered Mpps"),
            ],
        ),
        (
            "latency",
            "Latency",
            "microseconds",
            vec![
                series("one-way p50", Scenario::Latency, "p50 us"),
                series("one-way p99", Scenario::Latency, "p99 us"),
                series("ping p50", Scenario::Ping, "p50 us"),
                series("ping p99", Scenario::Ping, "p99 us"),
            ],
        ),
        (
            "new-connections",
            "New UDP connections",
            "thousand per second",
            vec![
                series("offered", Scenario::NewConnections, "offered k/s"),
                series("delivered", Scenario::NewConnections, "delivered k/s"),
            ],
        ),
    ];
    let mut paths = Vec::new();
    for (name, title, unit, series) in charts {
        let path = dir.join(format!("{prefix}{name}.svg"));
        bars(&path, title, unit, &systems, &series)
            .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
        paths.push(path);
    }
    Ok(paths)
}

/// A grouped bar chart: one group per system, one bar per series.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    systems: &[String],
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().flatten().map(|v| v.2))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..systems.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(systems.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                systems.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .draw()?;
    let width = 0.8 / series.len().max(1) as f64;
    for (k, (label, values)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let left = |i: usize| i as f64 + 0.1 + k as f64 * width;
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                let (median, _, _) = (*v)?;
                Some(Rectangle::new(
                    [(left(i), 0.0), (left(i) + width * 0.9, median)],
                    colour.filled(),
                ))
            }))?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        chart.draw_series(values.iter().enumerate().filter_map(|(i, v)| {
            let (_, min, max) = (*v)?;
            let mid = left(i) + width * 0.45;
            Some(PathElement::new(vec![(mid, min), (mid, max)], BLACK))
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
