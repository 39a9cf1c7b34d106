//! SVG bar charts of the comparison (`plotters`): throughput, latency and new-connection rate
//! per system, medians with min-max whiskers.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
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
    // (file, title, unit, logarithmic, series)
    let charts = [
        (
            "throughput",
            "64-byte UDP delivered",
            "Mpps",
            false,
            vec![
                series("1 flow", Scenario::Udp1Flow, "delivered Mpps"),
                series("1,000 flows", Scenario::Udp1000Flows, "delivered Mpps"),
            ],
        ),
        (
            "latency",
            "Latency (logarithmic)",
            "microseconds",
            true,
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
            false,
            vec![
                series("offered", Scenario::NewConnections, "offered k/s"),
                series("delivered", Scenario::NewConnections, "delivered k/s"),
            ],
        ),
    ];
    let mut paths = Vec::new();
    for (name, title, unit, log, series) in charts {
        let path = dir.join(format!("{prefix}{name}.svg"));
        bars(&path, title, unit, log, &systems, &series)
            .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
        paths.push(path);
    }
    Ok(paths)
}

/// The drawing error of plotters, boxed.
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// A grouped bar chart: one group per system, one bar per series; on a logarithmic axis if
/// `log` (for values that span orders of magnitude).
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    log: bool,
    systems: &[String],
    series: &[Series],
) -> Drawn {
    let values = || series.iter().flat_map(|s| s.1.iter().flatten());
    let top = values().map(|v| v.2).fold(0.0f64, f64::max).max(1e-3) * 1.15;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60);
    let x = 0f64..systems.len() as f64;
    if log {
        let bottom = values()
            .map(|v| v.1)
            .filter(|v| *v > 0.0)
            .fold(top, f64::min)
            / 2.0;
        let chart = builder.build_cartesian_2d(x, (bottom..top * 2.0).log_scale())?;
        draw(chart, unit, bottom, systems, series)?;
    } else {
        let chart = builder.build_cartesian_2d(x, 0f64..top)?;
        draw(chart, unit, 0.0, systems, series)?;
    }
    root.present()?;
    Ok(())
}

/// Draws the axes, bars from `bottom` up to the medians, min-max whiskers and the legend.
fn draw<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    unit: &str,
    bottom: f64,
    systems: &[String],
    series: &[Series],
) -> Drawn
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
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
        .y_label_formatter(&|y| format!("{y}"))
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
                    [(left(i), bottom), (left(i) + width * 0.9, median)],
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
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
