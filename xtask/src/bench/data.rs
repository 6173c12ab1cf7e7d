//! Raw figures of the lab benchmarks, written as JSON next to the plots
//! (`docs/bench/<name>.json`) so the plots can be drawn again without running anything.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    cluster::{Kind, Timing},
    failover::{Fault, Trials},
    loss::CellResult,
};

/// Directory (relative to the workspace root) of the JSON files and plots.
pub const DIR: &str = "docs/bench";

/// `docs/bench/<name>.json` under `root`.
pub fn json_path(root: &Path, name: &str) -> PathBuf {
    root.join(DIR).join(format!("{name}.json"))
}

/// `docs/bench/<name>.svg` under `root`.
pub fn svg_path(root: &Path, name: &str) -> PathBuf {
    root.join(DIR).join(format!("{name}.svg"))
}

/// `command` and `machine` of every JSON file.
pub(super) fn provenance(opts: &super::BenchOptions) -> (String, String) {
    (opts.command(), super::report::machine())
}

/// Writes `data` as pretty JSON to `docs/bench/<name>.json`.
pub fn save<T: Serialize>(root: &Path, name: &str, data: &T) -> Result<PathBuf> {
    let path = json_path(root, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(data)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads `docs/bench/<name>.json`; `None` when the file does not exist.
pub fn load<T: DeserializeOwned>(root: &Path, name: &str) -> Result<Option<T>> {
    let path = json_path(root, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("parsing {}", path.display()))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl FailoverRow {
    /// The row of one failover setting's trials.
    pub(super) fn of(kind: Kind, timing: Timing, fault: Fault, t: &Trials) -> FailoverRow {
        FailoverRow {
            implementation: kind.label().into(),
            keepalive_ms: ms(timing.keepalive),
            deadtime_ms: ms(timing.deadtime),
            fault: fault.label().into(),
            outage_ms: t.outage.clone(),
            detect_ms: t.detect.clone(),
            back_ms: t.back.clone(),
        }
    }
}

impl LossCell {
    /// The record of one loss cell.
    pub(super) fn of(kind: Kind, timing: Timing, rate: u32, r: &CellResult) -> LossCell {
        LossCell {
            implementation: kind.label().into(),
            keepalive_ms: ms(timing.keepalive),
            deadtime_ms: ms(timing.deadtime),
            loss_pct: rate,
            deaths: r.deaths,
            takeovers: r.takeovers,
            disturbed: r.disturbed,
        }
    }
}

/// `failover.json`: every trial of the failover benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverData {
    /// The command line of the run.
    pub command: String,
    /// The machine line (date, kernel, CPUs).
    pub machine: String,
    /// One row per implementation, timing and fault.
    pub rows: Vec<FailoverRow>,
}

/// One failover setting's trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRow {
    /// Implementation label (`hb`, `keepalived`, `heartbeat`, ...).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Keepalive (keepalived: advert interval), ms.
    pub keepalive_ms: u64,
    /// Deadtime (keepalived: master-down interval), ms.
    pub deadtime_ms: u64,
    /// How n1 was taken away.
    pub fault: String,
    /// Client-observed outage per completed trial, ms.
    pub outage_ms: Vec<f64>,
    /// Kill to n2's death line per trial (kills only), ms.
    pub detect_ms: Vec<f64>,
    /// Client-observed outage of the failback per trial, ms.
    pub back_ms: Vec<f64>,
}

/// `loss.json`: every cell of the loss matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossData {
    /// The command line of the run.
    pub command: String,
    /// The machine line.
    pub machine: String,
    /// Length of one cell, seconds.
    pub cell_secs: u64,
    /// One per implementation, timing and loss rate.
    pub cells: Vec<LossCell>,
}

/// What one loss cell saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossCell {
    /// Implementation label.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Keepalive (keepalived: advert interval), ms.
    pub keepalive_ms: u64,
    /// Deadtime (keepalived: master-down interval), ms.
    pub deadtime_ms: u64,
    /// Heartbeat loss on each sender, percent.
    pub loss_pct: u32,
    /// Death declarations on either node.
    pub deaths: usize,
    /// n2 acquiring the resources.
    pub takeovers: usize,
    /// Client probes n1 did not serve.
    pub disturbed: usize,
}

/// `long-loss.json`: the long cell at 20% loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongLossData {
    /// The command line of the run.
    pub command: String,
    /// The machine line.
    pub machine: String,
    /// Length of the cell, seconds.
    pub window_secs: u64,
    /// The cell.
    pub cell: LossCell,
}

/// `saturation.json`: the saturated-CPU runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationData {
    /// The command line of the run.
    pub command: String,
    /// The machine line.
    pub machine: String,
    /// Length of the quiet window under pressure, seconds.
    pub window_secs: u64,
    /// One per implementation and pressure.
    pub rows: Vec<SaturationRow>,
}

/// One saturation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationRow {
    /// Implementation label.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The CPU pressure.
    pub pressure: String,
    /// Deadtime of the run, ms (for the plot's deadtime line).
    #[serde(default)]
    pub deadtime_ms: u64,
    /// Death declarations in the quiet window.
    pub deaths: usize,
    /// Takeovers in the quiet window.
    pub takeovers: usize,
    /// Client probes n1 did not serve in the quiet window.
    pub disturbed: usize,
    /// Kill to n2's death line per detected kill, ms.
    pub detect_ms: Vec<f64>,
    /// Client-observed outage per kill, ms.
    pub outage_ms: Vec<f64>,
}

/// `scale.json`: CPU and detection against the cluster size (written by the scale benchmark).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleData {
    /// The command line of the run.
    pub command: String,
    /// The machine line.
    pub machine: String,
    /// Keepalive, ms.
    pub keepalive_ms: u64,
    /// Deadtime, ms.
    pub deadtime_ms: u64,
    /// One per node count.
    pub rows: Vec<ScaleRow>,
}

/// One cluster size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleRow {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// CPU use of each node's daemon, percent of one core.
    pub cpu_percent: Vec<f64>,
    /// CPU time per heartbeat, µs.
    #[serde(default)]
    pub cpu_us_per_heartbeat: Vec<f64>,
    /// Kill to death line, ms.
    pub detect_ms: Vec<f64>,
    /// Missed detections.
    #[serde(default)]
    pub missed: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_failover() -> FailoverData {
        FailoverData {
            command: "cargo xtask bench --only failover".into(),
            machine: "test machine".into(),
            rows: vec![FailoverRow {
                implementation: "hb".into(),
                keepalive_ms: 10,
                deadtime_ms: 50,
                fault: "kill -9 + links down".into(),
                outage_ms: vec![41.5, 47.25],
                detect_ms: vec![52.0, 55.5],
                back_ms: vec![60.0, 61.0],
            }],
        }
    }

    #[test]
    fn json_round_trip() {
        let dir = std::env::temp_dir().join(format!("hb-bench-data-{}", std::process::id()));
        let f = sample_failover();
        let path = save(&dir, "failover", &f).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"impl\": \"hb\""), "{text}");
        assert_eq!(load::<FailoverData>(&dir, "failover").unwrap(), Some(f));
        assert_eq!(load::<LossData>(&dir, "loss").unwrap(), None);
        let l = LossData {
            command: "c".into(),
            machine: "m".into(),
            cell_secs: 2,
            cells: vec![LossCell {
                implementation: "keepalived".into(),
                keepalive_ms: 10,
                deadtime_ms: 36,
                loss_pct: 20,
                deaths: 3,
                takeovers: 1,
                disturbed: 7,
            }],
        };
        save(&dir, "loss", &l).unwrap();
        assert_eq!(load::<LossData>(&dir, "loss").unwrap(), Some(l));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scale_json_as_specified_parses() {
        let text = r#"{"command":"c","machine":"m","keepalive_ms":10,"deadtime_ms":50,
            "rows":[{"nodes":4,"cpu_percent":[1.5,2.0],"cpu_us_per_heartbeat":[3.0],
            "detect_ms":[51.0],"missed":0}]}"#;
        let s: ScaleData = serde_json::from_str(text).unwrap();
        assert_eq!(s.rows[0].nodes, 4);
        assert_eq!(s.rows[0].cpu_percent, vec![1.5, 2.0]);
    }
}
