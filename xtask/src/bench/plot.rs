//! SVG plots of the lab benchmarks' raw figures (`docs/bench/<name>.json` ->
//! `docs/bench/<name>.svg`), drawn with plotters' SVG backend (text as SVG `<text>`, no font
//! files needed).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::data::{self, FailoverData, LossData, SaturationData, ScaleData};

const FONT: &str = "sans-serif";

/// A drawing error (plotters' error types borrow nothing but are not all `Send + Sync`).
fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// The same colour for an implementation in every plot: hb blue (hb without XDP purple),
/// keepalived red, Heartbeat green; others from a small palette in the order first seen.
#[derive(Debug, Default)]
struct Colours(Vec<String>);

impl Colours {
    fn of(&mut self, implementation: &str) -> RGBColor {
        let name = implementation.to_ascii_lowercase();
        if name == "hb" {
            return RGBColor(31, 119, 180);
        } else if name.starts_with("hb") {
            return RGBColor(148, 103, 189);
        } else if name.starts_with("keepalived") {
            return RGBColor(214, 39, 40);
        } else if name.starts_with("heartbeat") {
            return RGBColor(44, 160, 44);
        }
        let i = match self.0.iter().position(|s| *s == name) {
            Some(i) => i,
            None => {
                self.0.push(name);
                self.0.len() - 1
            }
        };
        const C: [RGBColor; 3] = [
            RGBColor(255, 127, 14),
            RGBColor(140, 86, 75),
            RGBColor(23, 190, 207),
        ];
        C[i % C.len()]
    }
}

/// Row `i` of `n` drawn from the top: the segment index (segment 0 is at the bottom).
fn from_top(i: usize, n: usize) -> i32 {
    i32::try_from(n.saturating_sub(1).saturating_sub(i)).unwrap_or(0)
}

/// The label of segment `v` of rows drawn from the top.
fn top_label(v: &SegmentValue<i32>, names: &[String]) -> String {
    match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| names.len().checked_sub(i + 1))
            .and_then(|i| names.get(i).cloned())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    }
}

/// One row of a horizontal strip plot: every sample as a dot, the median as a bar.
#[derive(Debug, Clone)]
struct Strip {
    label: String,
    implementation: String,
    values: Vec<f64>,
    /// A per-row reference line (e.g. deadtime + 10 ms).
    mark: Option<f64>,
}

/// Median (nearest rank) of `v`.
fn median(v: &[f64]) -> Option<f64> {
    super::report::Summary::of(v).map(|s| s.median)
}

/// A log axis label: 1, 2 and 5 x 10^k written, other ticks left blank.
fn log_label(v: &f64) -> String {
    if !(v.is_finite() && *v > 0.0) {
        return String::new();
    }
    let m = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 0.05) {
        if *v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        }
    } else {
        String::new()
    }
}

/// A log-scale range covering `values`, in whole decades.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1.0, 1000.0);
    }
    // Whole decades: plotters labels a log axis at 1, 2, .. 9 x 10^k only within them.
    (
        10f64.powf((lo / 1.2).log10().floor()),
        10f64.powf((hi * 1.2).log10().ceil()),
    )
}

/// A horizontal strip plot on a log x axis; `line` is a global reference line (value, legend).
fn strip_plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    strips: &[Strip],
    line: Option<f64>,
) -> Result<()> {
    let n = strips.len().max(1);
    let height = 120 + 34 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (lo, hi) = log_bounds(
        strips
            .iter()
            .flat_map(|s| s.values.iter().copied().chain(s.mark))
            .chain(line),
    );
    let labels: Vec<String> = strips.iter().map(|s| s.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(330)
        // An i32 range is inclusive here: 0..n-1 is n segments (a single row gets an empty
        // one above it: plotters puts no key point on a range of width 0).
        .build_cartesian_2d(
            (lo..hi).log_scale(),
            (0..(n as i32 - 1).max(1)).into_segmented(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_labels(n + 1)
        .y_label_formatter(&|v| top_label(v, &labels))
        .light_line_style(TRANSPARENT)
        .x_labels(40)
        .x_label_formatter(&log_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let mut colours = Colours::default();
    for (i, s) in strips.iter().enumerate() {
        let c = colours.of(&s.implementation);
        let i = from_top(i, n);
        let y = SegmentValue::CenterOf(i);
        chart
            .draw_series(
                s.values
                    .iter()
                    .filter(|v| v.is_finite() && **v > 0.0)
                    .map(|&v| Circle::new((v, y.clone()), 4, c.mix(0.45).filled())),
            )
            .map_err(err)?;
        if let Some(m) = median(&s.values) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, SegmentValue::Exact(i)), (m, SegmentValue::Exact(i + 1))],
                    c.stroke_width(3),
                )))
                .map_err(err)?;
        }
        if let Some(m) = s.mark.filter(|m| *m > 0.0) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, SegmentValue::Exact(i)), (m, SegmentValue::Exact(i + 1))],
                    BLACK.stroke_width(1),
                )))
                .map_err(err)?;
        }
    }
    if let Some(v) = line {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(v, SegmentValue::Exact(0)), (v, SegmentValue::Last)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// `failover.svg`: client-observed outage of every trial per row, log scale, 60 ms target.
pub fn failover(d: &FailoverData, path: &Path) -> Result<()> {
    let strips: Vec<Strip> = d
        .rows
        .iter()
        .map(|r| Strip {
            label: format!(
                "{} {}/{} ms, {} ({})",
                r.implementation,
                r.keepalive_ms,
                r.deadtime_ms,
                r.fault,
                r.outage_ms.len()
            ),
            implementation: r.implementation.clone(),
            values: r.outage_ms.clone(),
            mark: None,
        })
        .collect();
    strip_plot(
        path,
        "Client-observed failover outage (dots: trials, bar: median)",
        "outage, ms (log scale); black line: the 60 ms target (median at deadtime 50 ms)",
        &strips,
        Some(60.0),
    )
}

/// `saturation.svg`: detection delay of every kill per implementation and pressure, with a
/// deadtime + 10 ms mark per row.
pub fn saturation(d: &SaturationData, path: &Path) -> Result<()> {
    let strips: Vec<Strip> = d
        .rows
        .iter()
        .map(|r| Strip {
            label: format!(
                "{}, {} ({} detected)",
                r.implementation,
                r.pressure,
                r.detect_ms.len()
            ),
            implementation: r.implementation.clone(),
            values: r.detect_ms.clone(),
            mark: (r.deadtime_ms > 0).then_some(r.deadtime_ms as f64 + 10.0),
        })
        .collect();
    strip_plot(
        path,
        "Detection of a kill under CPU pressure (dots: kills, bar: median, thin line: deadtime + 10 ms)",
        "kill to death line, ms (log scale)",
        &strips,
        None,
    )
}

/// Implementations in order of first appearance.
fn impls<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in names {
        if !v.iter().any(|s| s == n) {
            v.push(n.to_owned());
        }
    }
    v
}

/// Per implementation and loss rate, the shortest deadtime whose cell had no death and no
/// takeover.
pub fn shortest_clean(d: &LossData) -> Vec<(String, Vec<(u32, u64)>)> {
    impls(d.cells.iter().map(|c| c.implementation.as_str()))
        .into_iter()
        .map(|name| {
            let mut rates: Vec<u32> = d
                .cells
                .iter()
                .filter(|c| c.implementation == name)
                .map(|c| c.loss_pct)
                .collect();
            rates.sort_unstable();
            rates.dedup();
            let points = rates
                .into_iter()
                .filter_map(|rate| {
                    d.cells
                        .iter()
                        .filter(|c| {
                            c.implementation == name
                                && c.loss_pct == rate
                                && c.deaths == 0
                                && c.takeovers == 0
                        })
                        .map(|c| c.deadtime_ms)
                        .min()
                        .map(|dt| (rate, dt))
                })
                .collect();
            (name, points)
        })
        .collect()
}

/// `loss.svg`: left, the shortest clean deadtime against the loss rate per implementation;
/// right, deaths / takeovers of every cell.
pub fn loss(d: &LossData, path: &Path) -> Result<()> {
    let mut rows: Vec<(String, u64, u64)> = Vec::new();
    for c in &d.cells {
        let key = (c.implementation.clone(), c.keepalive_ms, c.deadtime_ms);
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    let mut rates: Vec<u32> = d.cells.iter().map(|c| c.loss_pct).collect();
    rates.sort_unstable();
    rates.dedup();
    let height = (160 + 30 * rows.len() as u32).max(450);
    let root = SVGBackend::new(path, (1300, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "False failovers under random heartbeat loss ({} s per cell)",
                d.cell_secs
            ),
            (FONT, 20),
        )
        .map_err(err)?;
    let (left, right) = root.split_horizontally(560);

    // Left: the curve.
    let curves = shortest_clean(d);
    let max_rate = f64::from(rates.last().copied().unwrap_or(50)).max(10.0);
    let top = d
        .cells
        .iter()
        .map(|c| c.deadtime_ms as f64)
        .fold(10.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "shortest deadtime tried with zero deaths and takeovers (none: no point)",
            (FONT, 15),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-2.0..max_rate + 5.0, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("heartbeat loss on each sender, %")
        .y_desc("deadtime, ms")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let mut colours = Colours::default();
    for (name, points) in &curves {
        let c = colours.of(name);
        let pts: Vec<(f64, f64)> = points
            .iter()
            .map(|&(r, dt)| (f64::from(r), dt as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;

    // Right: every cell, "deaths / takeovers", red when not zero.
    let labels: Vec<String> = rows
        .iter()
        .map(|(i, k, dt)| format!("{i} {k}/{dt} ms"))
        .collect();
    let rate_labels: Vec<String> = rates.iter().map(|r| format!("{r}%")).collect();
    let nx = rates.len().max(1) as i32;
    let ny = rows.len().max(1) as i32;
    let mut grid = ChartBuilder::on(&right)
        .caption(
            "deaths / takeovers per cell (keepalive / deadtime)",
            (FONT, 15),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(170)
        .build_cartesian_2d(
            (0..(nx - 1).max(1)).into_segmented(),
            (0..(ny - 1).max(1)).into_segmented(),
        )
        .map_err(err)?;
    let label_of = |v: &SegmentValue<i32>, names: &[String]| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| names.get(i).cloned())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    let row_label = |v: &SegmentValue<i32>| top_label(v, &labels);
    grid.configure_mesh()
        .disable_mesh()
        .x_desc("heartbeat loss on each sender")
        .x_labels(rates.len() + 1)
        .y_labels(rows.len() + 1)
        .x_label_formatter(&|v| label_of(v, &rate_labels))
        .y_label_formatter(&row_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for c in &d.cells {
        let Some(yi) = rows
            .iter()
            .position(|r| r.0 == c.implementation && r.1 == c.keepalive_ms && r.2 == c.deadtime_ms)
        else {
            continue;
        };
        let Some(xi) = rates.iter().position(|r| *r == c.loss_pct) else {
            continue;
        };
        let (x, y) = (xi as i32, from_top(yi, rows.len()));
        let bad = c.deaths + c.takeovers;
        let fill = if bad == 0 {
            RGBColor(220, 240, 220)
        } else {
            // Darker with more events (log scale).
            let k = ((bad as f64).log10() / 3.0).clamp(0.0, 1.0);
            RGBColor(250, (190.0 - 150.0 * k) as u8, (190.0 - 150.0 * k) as u8)
        };
        grid.draw_series(std::iter::once(Rectangle::new(
            [
                (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
            ],
            fill.filled(),
        )))
        .map_err(err)?;
        grid.draw_series(std::iter::once(Text::new(
            format!("{} / {}", c.deaths, c.takeovers),
            (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
            (FONT, 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        )))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// `(nodes, (median, max))` of one figure per node count.
type Points = [(f64, Option<(f64, f64)>)];

/// One panel of `scale.svg`: `(caption, y axis)`, median and max per node count, an optional
/// deadtime line.
fn scale_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    (caption, y_desc): (&str, &str),
    pts: &Points,
    deadtime: Option<f64>,
    xr: std::ops::Range<f64>,
) -> Result<()> {
    let top = pts
        .iter()
        .filter_map(|p| p.1.map(|s| s.1))
        .chain(deadtime)
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 15))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xr.clone(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(err)?;
    type Pick = fn((f64, f64)) -> f64;
    let median: Pick = |s| s.0;
    let max: Pick = |s| s.1;
    for (name, c, pick) in [
        ("median", RGBColor(31, 119, 180), median),
        ("max", RGBColor(214, 39, 40), max),
    ] {
        let v: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|(x, s)| s.map(|s| (*x, pick(s))))
            .collect();
        chart
            .draw_series(LineSeries::new(v.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(v.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(err)?;
    }
    if let Some(dt) = deadtime.filter(|d| *d > 0.0) {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(xr.start, dt), (xr.end, dt)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?
            .label("deadtime")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// `scale.svg`: per node count, daemon CPU (median and max) and detection (median and max).
pub fn scale(d: &ScaleData, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "Cluster size: keepalive {} ms / deadtime {} ms",
                d.keepalive_ms, d.deadtime_ms
            ),
            (FONT, 20),
        )
        .map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    let mut rows = d.rows.clone();
    rows.sort_by_key(|r| r.nodes);
    let xmin = rows.first().map_or(2, |r| r.nodes) as f64;
    let xmax = rows.last().map_or(2, |r| r.nodes) as f64;
    let xr = (xmin - 0.5)..(xmax + 0.5).max(xmin + 1.0);
    let stat = |v: &[f64]| super::report::Summary::of(v).map(|s| (s.median, s.max));
    scale_panel(
        &left,
        ("daemon CPU per node", "CPU, % of one core"),
        &rows
            .iter()
            .map(|r| (r.nodes as f64, stat(&r.cpu_percent)))
            .collect::<Vec<_>>(),
        None,
        xr.clone(),
    )?;
    scale_panel(
        &right,
        ("detection of a killed node", "kill to death line, ms"),
        &rows
            .iter()
            .map(|r| (r.nodes as f64, stat(&r.detect_ms)))
            .collect::<Vec<_>>(),
        Some(d.deadtime_ms as f64),
        xr,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

/// Renders `docs/bench/<name>.svg` from `docs/bench/<name>.json` for `name`, when the JSON
/// exists; returns the SVG's path.
pub fn render(root: &Path, name: &str) -> Result<Option<PathBuf>> {
    let out = data::svg_path(root, name);
    let drawn = match name {
        "failover" => data::load::<FailoverData>(root, name)?.map(|d| failover(&d, &out)),
        "loss" => data::load::<LossData>(root, name)?.map(|d| loss(&d, &out)),
        "saturation" => data::load::<SaturationData>(root, name)?.map(|d| saturation(&d, &out)),
        "scale" => data::load::<ScaleData>(root, name)?.map(|d| scale(&d, &out)),
        _ => return Err(anyhow!("no plot named {name}")),
    };
    match drawn {
        Some(r) => r.map(|()| Some(out)),
        None => Ok(None),
    }
}

/// The plots there are: one per JSON file.
pub const PLOTS: [&str; 4] = ["failover", "loss", "saturation", "scale"];

/// Renders every plot whose JSON exists; returns the SVGs written.
pub fn render_all(root: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for name in PLOTS {
        if let Some(p) = render(root, name)? {
            v.push(p);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::super::data::{FailoverRow, LossCell, SaturationRow, ScaleRow};
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hb-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn svg(path: &Path) -> String {
        let t = std::fs::read_to_string(path).unwrap();
        assert!(t.starts_with("<svg"), "{}", &t[..t.len().min(200)]);
        assert!(
            t.contains("<circle") || t.contains("<rect"),
            "nothing drawn"
        );
        t
    }

    #[test]
    fn failover_and_saturation_plots_have_axis_labels_and_rows() {
        let d = dir("strip");
        let f = FailoverData {
            command: "c".into(),
            machine: "m".into(),
            rows: vec![
                FailoverRow {
                    implementation: "hb".into(),
                    keepalive_ms: 10,
                    deadtime_ms: 50,
                    fault: "kill -9 + links down".into(),
                    outage_ms: vec![41.0, 45.5, 52.0],
                    detect_ms: vec![50.0],
                    back_ms: vec![],
                },
                FailoverRow {
                    implementation: "heartbeat".into(),
                    keepalive_ms: 10,
                    deadtime_ms: 50,
                    fault: "clean stop (SIGTERM)".into(),
                    outage_ms: vec![2100.0, 3050.0],
                    detect_ms: vec![],
                    back_ms: vec![],
                },
            ],
        };
        data::save(&d, "failover", &f).unwrap();
        let s = SaturationData {
            command: "c".into(),
            machine: "m".into(),
            window_secs: 30,
            rows: vec![SaturationRow {
                implementation: "hb".into(),
                pressure: "all cores busy".into(),
                deadtime_ms: 100,
                deaths: 0,
                takeovers: 0,
                disturbed: 0,
                detect_ms: vec![101.0, 104.0],
                outage_ms: vec![90.0],
            }],
        };
        data::save(&d, "saturation", &s).unwrap();
        let written = render_all(&d).unwrap();
        assert_eq!(written.len(), 2);
        let t = svg(&data::svg_path(&d, "failover"));
        assert!(t.contains("outage, ms (log scale)"));
        assert!(t.contains("hb 10/50 ms, kill -9 + links down (3)"));
        assert!(t.contains("heartbeat 10/50 ms, clean stop (SIGTERM) (2)"));
        assert!(t.contains("60 ms target"));
        assert!(t.matches("<circle").count() >= 5);
        let t = svg(&data::svg_path(&d, "saturation"));
        assert!(t.contains("kill to death line, ms (log scale)"));
        assert!(t.contains("hb, all cores busy (2 detected)"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn loss_plot_and_curve() {
        let d = dir("loss");
        let cell = |i: &str, dt: u64, loss: u32, deaths: usize| LossCell {
            implementation: i.into(),
            keepalive_ms: 10,
            deadtime_ms: dt,
            loss_pct: loss,
            deaths,
            takeovers: deaths.min(1),
            disturbed: 0,
        };
        let l = LossData {
            command: "c".into(),
            machine: "m".into(),
            cell_secs: 2,
            cells: vec![
                cell("hb", 30, 0, 0),
                cell("hb", 30, 20, 4),
                cell("hb", 50, 0, 0),
                cell("hb", 50, 20, 0),
                cell("keepalived", 36, 0, 0),
                cell("keepalived", 36, 20, 12),
            ],
        };
        assert_eq!(
            shortest_clean(&l),
            vec![
                ("hb".to_owned(), vec![(0, 30), (20, 50)]),
                ("keepalived".to_owned(), vec![(0, 36)]),
            ]
        );
        data::save(&d, "loss", &l).unwrap();
        render(&d, "loss").unwrap().unwrap();
        let t = svg(&data::svg_path(&d, "loss"));
        assert!(t.contains("heartbeat loss on each sender, %"));
        assert!(t.contains("deadtime, ms"));
        assert!(t.contains("hb 10/30 ms"));
        assert!(t.contains("12 / 1"));
        assert!(t.contains("20%"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn scale_plot() {
        let d = dir("scale");
        let row = |nodes: usize, cpu: f64, det: f64| ScaleRow {
            nodes,
            cpu_percent: vec![cpu, cpu * 1.5],
            cpu_us_per_heartbeat: vec![5.0],
            detect_ms: vec![det, det + 5.0],
            missed: 0.0,
        };
        let s = ScaleData {
            command: "c".into(),
            machine: "m".into(),
            keepalive_ms: 10,
            deadtime_ms: 50,
            rows: vec![row(2, 0.5, 51.0), row(4, 1.0, 53.0), row(8, 2.2, 55.0)],
        };
        data::save(&d, "scale", &s).unwrap();
        assert_eq!(render(&d, "failover").unwrap(), None);
        render(&d, "scale").unwrap().unwrap();
        let t = svg(&data::svg_path(&d, "scale"));
        assert!(t.contains("CPU, % of one core"));
        assert!(t.contains("kill to death line, ms"));
        assert!(t.contains(">nodes<") || t.contains("nodes"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
