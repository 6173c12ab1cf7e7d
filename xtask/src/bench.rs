//! `cargo xtask bench`: criterion benchmarks under `benches/` and the lab benchmarks (failover
//! outage and detection, false failovers under heartbeat loss, saturated CPU), for hb and for
//! keepalived in the same topology. Figures go to `BENCHMARKS.md`, one section per benchmark.
//!
//! This file holds the options and the dispatch; each lab benchmark is one file under `bench/`
//! (`failover`, `loss`, `long_loss`, `saturation`, `scale`, `flood`, `khz`), the shared helpers are in
//! `report` (figures, section header and publication, timings), the lab cluster in `cluster`,
//! the raw JSON in `data` and the SVG plots in `plot`.

mod cluster;
mod data;
mod failover;
mod flood;
mod khz;
mod long_loss;
mod loss;
mod plot;
mod report;
mod saturation;
mod scale;

use std::{path::Path, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use crate::bootstrap::step;
pub use crate::demo::Binaries;
use cluster::{HbOpts, Kind};
pub use saturation::Pressure;

/// Which benchmarks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// `cargo bench -p hb-benches` (codec, metrics, XDP vs socket path).
    Criterion,
    /// Failover outage and detection (kill -9 + link down; clean stop; hbctl standby).
    Failover,
    /// False failovers under random heartbeat loss (the loss matrix).
    Loss,
    /// The 10-minute cell at 20% loss, keepalive 10 ms / deadtime 100 ms (the target).
    LongLoss,
    /// False failovers and detection with both cores saturated, and with a CPU quota.
    Saturation,
    /// 2, 4, 8 and 16 hb nodes on one link: CPU per node and detection time per observer.
    Scale,
    /// Junk datagrams flooding the heartbeat port at rising rates, XDP and `xdp off`: the rate
    /// held with no false death.
    Flood,
    /// hb at keepalive 1 ms / deadtime 10 ms beside keepalived at 10 ms adverts: kill outage
    /// with 1 ms probes, 20% loss, send jitter (as is and all cores busy), hbd CPU.
    Khz,
    /// Draw `docs/bench/*.svg` again from `docs/bench/*.json` (runs nothing, needs no root).
    Plots,
}

/// Which implementations to measure in the lab benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// hb (`hbd`, XDP auto); the saturation benchmark adds hb with `xdp off`.
    Hb,
    /// hb with the address only in `haresources` and Apache always running on both nodes
    /// (failover benchmark only).
    HbIpOnly,
    /// hb with `realtime off` (saturation benchmark only).
    HbRtOff,
    /// keepalived (VRRPv3).
    Keepalived,
    /// Linux-HA Heartbeat 3.0.6 (Debian's `heartbeat`).
    Heartbeat,
}

/// `cargo xtask bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// Benchmarks to run (comma separated); default: all of them.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Which>,
    /// Implementations for the lab benchmarks (comma separated); default: all of them (each
    /// benchmark runs those it has rows for).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<Peer>,
    /// A short run: 5 trials, deadtimes 50 and 250 ms, 5 s loss cells, loss 0/20/50%, 30 s
    /// saturation, scale with 2 and 4 nodes (10 s CPU window, 3 kills); figures are written all
    /// the same (marked quick).
    #[arg(long)]
    pub quick: bool,
    /// Failover trials per setting (default 20).
    #[arg(long)]
    pub trials: Option<usize>,
    /// hb deadtimes for the failover benchmark, ms (default 50,100,250,1000); keepalive is a
    /// fifth of the deadtime. The scale benchmark uses the first (default 50) with keepalive
    /// 10 ms.
    #[arg(long, value_delimiter = ',')]
    pub deadtimes: Vec<u64>,
    /// keepalived advert intervals, ms: for the failover benchmark (default 10, its minimum)
    /// and the loss matrix (default 10,20,50,100).
    #[arg(long, value_delimiter = ',')]
    pub adverts: Vec<u64>,
    /// Length of one loss cell, seconds (default 30).
    #[arg(long)]
    pub cell_secs: Option<u64>,
    /// Loss rates, percent (default 0,10,20,30,50).
    #[arg(long, value_delimiter = ',')]
    pub loss: Vec<u32>,
    /// Length of each saturation run, seconds (default 300).
    #[arg(long)]
    pub saturation_secs: Option<u64>,
    /// Pressures of the saturation benchmark (default: busy,quota).
    #[arg(long, value_delimiter = ',')]
    pub pressure: Vec<Pressure>,
    /// Node counts for the scale benchmark (default 2,4,8,16; with --quick 2,4).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<usize>,
    /// Print the figures but do not write BENCHMARKS.md (nor docs/bench/scale.json).
    #[arg(long)]
    pub no_write: bool,
    /// Extra arguments passed to `cargo bench` after `--`.
    #[arg(last = true)]
    pub bench_args: Vec<String>,
}

impl BenchOptions {
    fn runs(&self, w: Which) -> bool {
        self.only.is_empty() || self.only.contains(&w)
    }

    /// The implementations benchmark `w` runs, in order: `hb-ip-only` only in the failover
    /// benchmark, `hb-rt-off` only in the saturation benchmark (where `hb` also brings hb with
    /// `xdp off`, right after it).
    fn kinds(&self, w: Which) -> Vec<Kind> {
        let peers = if self.peers.is_empty() {
            vec![
                Peer::Hb,
                Peer::HbIpOnly,
                Peer::HbRtOff,
                Peer::Keepalived,
                Peer::Heartbeat,
            ]
        } else {
            self.peers.clone()
        };
        let mut kinds = Vec::new();
        for p in peers {
            match p {
                Peer::Hb => {
                    kinds.push(Kind::Hb(HbOpts::DEFAULT));
                    if w == Which::Saturation {
                        kinds.push(Kind::Hb(HbOpts::XDP_OFF));
                    }
                }
                Peer::HbIpOnly if w == Which::Failover => kinds.push(Kind::Hb(HbOpts::IP_ONLY)),
                Peer::HbRtOff if w == Which::Saturation => kinds.push(Kind::Hb(HbOpts::RT_OFF)),
                Peer::HbIpOnly | Peer::HbRtOff => {
                    if !self.peers.is_empty() {
                        let name = p.to_possible_value().map(|v| v.get_name().to_owned());
                        println!(
                            "  (--peers {}: no rows in the {w:?} benchmark, skipped)",
                            name.unwrap_or_default()
                        );
                    }
                }
                Peer::Keepalived => kinds.push(Kind::Keepalived),
                Peer::Heartbeat => kinds.push(Kind::Heartbeat),
            }
        }
        kinds
    }

    fn trials(&self) -> usize {
        self.trials.unwrap_or(if self.quick { 5 } else { 20 })
    }

    fn deadtimes(&self) -> Vec<u64> {
        if !self.deadtimes.is_empty() {
            self.deadtimes.clone()
        } else if self.quick {
            vec![50, 250]
        } else {
            vec![50, 100, 250, 1000]
        }
    }

    fn cell(&self) -> Duration {
        Duration::from_secs(self.cell_secs.unwrap_or(if self.quick { 5 } else { 30 }))
    }

    fn loss_rates(&self) -> Vec<u32> {
        if !self.loss.is_empty() {
            self.loss.clone()
        } else if self.quick {
            vec![0, 20, 50]
        } else {
            vec![0, 10, 20, 30, 50]
        }
    }

    fn saturation(&self) -> Duration {
        Duration::from_secs(
            self.saturation_secs
                .unwrap_or(if self.quick { 30 } else { 300 }),
        )
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("cargo xtask {}", args.join(" "))
    }

    fn quick_note(&self) -> &'static str {
        if self.quick {
            " (**--quick**: fewer trials and shorter cells than the issue asks)"
        } else {
            ""
        }
    }
}

/// `--only plots`: every plot whose JSON exists, drawn again.
fn plots(root: &Path) -> Result<()> {
    let written = plot::render_all(root)?;
    if written.is_empty() {
        step(&format!("plots: no JSON files in {}", data::DIR));
    }
    for p in written {
        step(&format!("{} written", p.display()));
    }
    Ok(())
}

/// `cargo xtask bench`.
pub fn bench(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    crate::interrupt::install();
    if opts.runs(Which::Criterion) {
        let mut cmd = crate::cargo();
        cmd.args(["bench", "-p", "hb-benches"]);
        if !opts.bench_args.is_empty() {
            cmd.arg("--").args(&opts.bench_args);
        }
        crate::run_step("cargo bench -p hb-benches", &mut cmd)?;
    }
    let lab_benches = [
        Which::Failover,
        Which::Loss,
        Which::LongLoss,
        Which::Saturation,
        Which::Scale,
        Which::Flood,
        Which::Khz,
    ];
    if !lab_benches.iter().any(|w| opts.runs(*w)) {
        if opts.runs(Which::Plots) {
            plots(root)?;
        }
        return Ok(());
    }
    if !crate::bootstrap::is_root() {
        bail!("the lab benchmarks need root (network namespaces, iptables)");
    }
    if bins.hbd.is_none() {
        bail!("target/release/hbd is not built");
    }
    if opts.runs(Which::Failover) {
        failover::failover(root, bins, opts)?;
    }
    if opts.runs(Which::Loss) {
        loss::loss(root, bins, opts)?;
    }
    if opts.runs(Which::LongLoss) {
        long_loss::long_loss(root, bins, opts)?;
    }
    if opts.runs(Which::Saturation) {
        saturation::saturation(root, bins, opts)?;
    }
    if opts.runs(Which::Scale) {
        scale::scale(root, bins, opts)?;
    }
    if opts.runs(Which::Flood) {
        flood::flood(root, bins, opts)?;
    }
    if opts.runs(Which::Khz) {
        khz::khz(root, bins, opts)?;
    }
    if opts.runs(Which::Plots) {
        plots(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(peers: Vec<Peer>) -> BenchOptions {
        BenchOptions {
            only: Vec::new(),
            peers,
            quick: false,
            trials: None,
            deadtimes: Vec::new(),
            adverts: Vec::new(),
            cell_secs: None,
            loss: Vec::new(),
            saturation_secs: None,
            pressure: Vec::new(),
            nodes: Vec::new(),
            no_write: true,
            bench_args: Vec::new(),
        }
    }

    fn labels(o: &BenchOptions, w: Which) -> Vec<&'static str> {
        o.kinds(w).into_iter().map(Kind::label).collect()
    }

    #[test]
    fn default_peers_add_the_new_rows_where_they_belong() {
        let o = opts(Vec::new());
        assert_eq!(
            labels(&o, Which::Failover),
            ["hb", "hb (IP only)", "keepalived", "Heartbeat 3.0.6"]
        );
        assert_eq!(
            labels(&o, Which::Saturation),
            [
                "hb",
                "hb (xdp off)",
                "hb (realtime off)",
                "keepalived",
                "Heartbeat 3.0.6"
            ]
        );
        assert_eq!(
            labels(&o, Which::Loss),
            ["hb", "keepalived", "Heartbeat 3.0.6"]
        );
    }

    #[test]
    fn existing_peer_values_run_what_they_ran_before() {
        let o = opts(vec![Peer::Hb, Peer::Keepalived, Peer::Heartbeat]);
        assert_eq!(
            labels(&o, Which::Failover),
            ["hb", "keepalived", "Heartbeat 3.0.6"]
        );
        assert_eq!(
            labels(&o, Which::Saturation),
            ["hb", "hb (xdp off)", "keepalived", "Heartbeat 3.0.6"]
        );
    }

    #[test]
    fn peer_names_on_the_command_line() {
        for (name, peer) in [
            ("hb", Peer::Hb),
            ("hb-ip-only", Peer::HbIpOnly),
            ("hb-rt-off", Peer::HbRtOff),
            ("keepalived", Peer::Keepalived),
            ("heartbeat", Peer::Heartbeat),
        ] {
            assert_eq!(Peer::from_str(name, false), Ok(peer));
        }
    }

    #[test]
    fn new_peer_values_pick_their_rows_alone() {
        assert_eq!(
            labels(&opts(vec![Peer::HbRtOff]), Which::Saturation),
            ["hb (realtime off)"]
        );
        assert_eq!(
            labels(&opts(vec![Peer::HbIpOnly]), Which::Failover),
            ["hb (IP only)"]
        );
        assert!(labels(&opts(vec![Peer::HbIpOnly]), Which::Saturation).is_empty());
        assert!(labels(&opts(vec![Peer::HbRtOff]), Which::Failover).is_empty());
    }
}
