//! Figures and the `BENCHMARKS.md` writer shared by the lab benchmarks: summaries, the machine
//! line, a section's header and publication (BENCHMARKS.md, JSON, plot), the probe method text
//! and the hb / keepalived timings the benchmarks use.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{
    BenchOptions,
    cluster::{self, Timing},
    data, plot,
};
use crate::bootstrap::step;

/// min, median, p90 and max of a set of samples (nearest rank), in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (nearest rank).
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Largest.
    pub max: f64,
}

/// The value at percentile `p` (0-100) of sorted `v`, nearest rank.
fn rank(v: &[f64], p: f64) -> f64 {
    let n = v.len();
    let r = ((p / 100.0) * n as f64).ceil() as usize;
    v[r.clamp(1, n) - 1]
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            min: v[0],
            median: rank(&v, 50.0),
            p90: rank(&v, 90.0),
            max: v[v.len() - 1],
        })
    }

    /// `min / median / p90 / max` with one decimal.
    pub fn cells(s: Option<Summary>) -> String {
        match s {
            Some(s) => format!(
                "{:.1} | {:.1} | {:.1} | {:.1}",
                s.min, s.median, s.p90, s.max
            ),
            None => "- | - | - | -".into(),
        }
    }
}

/// Milliseconds between two CLOCK_MONOTONIC ns stamps.
pub fn ms_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

/// The 1-minute load average (from `/proc/loadavg`).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Date, kernel, CPU count and model: the header line every section starts with.
pub fn machine() -> String {
    let date = stdout_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = stdout_of("uname", &["-r"]);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|s| s.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    format!("{date}; {cpus} cores ({model}); {os}; kernel {kernel}")
}

/// Replaces the `## title` section of `BENCHMARKS.md` under `root` (up to the next `## `
/// heading) with `body`, or appends it; other sections are kept as they are.
pub fn write_section(root: &Path, title: &str, body: &str) -> Result<()> {
    let path = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# hb benchmarks\n".into());
    let heading = format!("## {title}\n");
    let mut section = heading.clone();
    let _ = write!(section, "\n{}\n", body.trim_end());
    let new = match text.find(&heading) {
        Some(start) => {
            let after = start + heading.len();
            let end = text[after..]
                .find("\n## ")
                .map(|i| after + i + 1)
                .unwrap_or(text.len());
            let mut t = text[..start].to_owned();
            t += &section;
            if end < text.len() {
                t += "\n";
                t += &text[end..];
            }
            t
        }
        None => {
            let mut t = text.trim_end().to_owned();
            t += "\n\n";
            t += &section;
            t
        }
    };
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
}

pub fn header(opts: &BenchOptions, what: &str) -> String {
    format!(
        "Command (as root, from the workspace root, after `cargo build --release -p hb-daemon`): \
         `{}`{}; {what}.\n\nMachine: {}.\n",
        opts.command(),
        opts.quick_note(),
        machine()
    )
}

/// Prints a section; unless `--no-write`, writes it to BENCHMARKS.md, its raw figures to
/// `docs/bench/<name>.json` and its plot (when there is one) to `docs/bench/<name>.svg`.
pub fn publish<T: serde::Serialize>(
    root: &Path,
    opts: &BenchOptions,
    title: &str,
    body: &str,
    (name, raw): (&str, &T),
) -> Result<()> {
    let mut body = body.trim_end().to_owned();
    let plotted = plot::PLOTS.contains(&name);
    if plotted {
        let _ = write!(body, "\n\n![{title}]({}/{name}.svg)\n", data::DIR);
    }
    let _ = writeln!(
        body,
        "\nRaw figures: [`{0}/{name}.json`]({0}/{name}.json).",
        data::DIR
    );
    println!("\n## {title}\n\n{body}");
    if !opts.no_write {
        write_section(root, title, &body)?;
        step(&format!("BENCHMARKS.md: section \"{title}\" written"));
        let path = data::save(root, name, raw)?;
        step(&format!("{} written", path.display()));
        if plotted && let Some(svg) = plot::render(root, name)? {
            step(&format!("{} written", svg.display()));
        }
    }
    Ok(())
}

/// The method text of the client's probes (written into BENCHMARKS.md).
pub fn probe_method() -> String {
    let n = cluster::PROBERS as u32;
    let period = cluster::PROBE_PERIOD.as_millis();
    format!(
        "\nMethod: the client probes `http://VIP/` from its own namespace: {n} prober threads, \
         each starting a probe every {period} ms on a fixed grid staggered by {step} ms, so one \
         probe starts every {step} ms ({rate}/s) whatever earlier probes are doing (a probe ends \
         within its {timeout} ms timeout, before its prober's next start). A probe is a new TCP \
         connection (connect, `GET / HTTP/1.0`, read to the end; the server closes first, so \
         the client keeps no TIME_WAIT for answered probes) with {timeout} ms for connect and \
         answer together; it ends at the answer, or fails at its timeout (the socket is then \
         dropped).",
        step = cluster::PROBE_PERIOD.as_secs_f64() * 1e3 / f64::from(n),
        rate = (f64::from(n) / cluster::PROBE_PERIOD.as_secs_f64()).round(),
        timeout = cluster::PROBE_TIMEOUT.as_millis(),
    )
}

/// Timing used for an hb deadtime: keepalive a fifth of it.
pub fn hb_timing(deadtime_ms: u64) -> Timing {
    Timing {
        keepalive: Duration::from_millis((deadtime_ms / 5).max(1)),
        deadtime: Duration::from_millis(deadtime_ms),
    }
}

/// keepalived at its smallest accepted advert interval (10 ms).
pub fn ka_timing(advert_ms: u64) -> Timing {
    let advert = Duration::from_millis(advert_ms);
    Timing {
        keepalive: advert,
        deadtime: Timing::keepalived_down(advert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.min, s.median, s.p90, s.max), (1.0, 10.0, 18.0, 20.0));
        assert!(Summary::of(&[]).is_none());
        let one = Summary::of(&[3.0]).unwrap();
        assert_eq!((one.median, one.p90), (3.0, 3.0));
    }

    #[test]
    fn section_replaced_or_appended() {
        let dir = std::env::temp_dir().join(format!("hb-bench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("BENCHMARKS.md"),
            "# hb benchmarks\n\n## A\n\nold a\n\n## B\n\nkeep b\n",
        )
        .unwrap();
        write_section(&dir, "A", "new a").unwrap();
        write_section(&dir, "C", "c").unwrap();
        let t = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        assert_eq!(
            t,
            "# hb benchmarks\n\n## A\n\nnew a\n\n## B\n\nkeep b\n\n## C\n\nc\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
