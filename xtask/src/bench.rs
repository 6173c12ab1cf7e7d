//! `cargo xtask bench`: criterion benchmarks under `benches/` and the lab benchmarks (failover
//! outage and detection, false failovers under heartbeat loss, saturated CPU), for hb and for
//! keepalived in the same topology. Figures go to `BENCHMARKS.md`, one section per benchmark.

mod cluster;
mod data;
mod flood;
mod plot;
mod report;
mod scale;

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use hb_tests::lab::Node;

use crate::bootstrap::step;
pub use crate::demo::Binaries;
use cluster::{Cluster, HbOpts, Kind, Timing};
use report::{Summary, loadavg, machine, ms_between, write_section};

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

fn header(opts: &BenchOptions, what: &str) -> String {
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
fn publish<T: serde::Serialize>(
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
        failover(root, bins, opts)?;
    }
    if opts.runs(Which::Loss) {
        loss(root, bins, opts)?;
    }
    if opts.runs(Which::LongLoss) {
        long_loss(root, bins, opts)?;
    }
    if opts.runs(Which::Saturation) {
        saturation(root, bins, opts)?;
    }
    if opts.runs(Which::Scale) {
        scale::scale(root, bins, opts)?;
    }
    if opts.runs(Which::Flood) {
        flood::flood(root, bins, opts)?;
    }
    if opts.runs(Which::Plots) {
        plots(root)?;
    }
    Ok(())
}

/// The method text of the client's probes (written into BENCHMARKS.md).
fn probe_method() -> String {
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
fn hb_timing(deadtime_ms: u64) -> Timing {
    Timing {
        keepalive: Duration::from_millis((deadtime_ms / 5).max(1)),
        deadtime: Duration::from_millis(deadtime_ms),
    }
}

/// keepalived at its smallest accepted advert interval (10 ms).
fn ka_timing(advert_ms: u64) -> Timing {
    let advert = Duration::from_millis(advert_ms);
    Timing {
        keepalive: advert,
        deadtime: Timing::keepalived_down(advert),
    }
}

/// Figures of one failover setting.
#[derive(Debug, Default)]
struct Trials {
    outage: Vec<f64>,
    detect: Vec<f64>,
    back: Vec<f64>,
    failed: Vec<String>,
    load: Vec<f64>,
}

impl Trials {
    fn load_range(&self) -> String {
        let min = self.load.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.load.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if self.load.is_empty() {
            "-".into()
        } else {
            format!("{min:.1}-{max:.1}")
        }
    }
}

/// How a trial takes n1 away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 of the daemon and n1's links down; n1 then comes back as after a reboot.
    Kill,
    /// SIGTERM of the daemon (clean stop); then started again.
    Stop,
    /// `hbctl standby` on n1; then `hbctl takeover` on n1.
    Standby,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 + links down",
            Fault::Stop => "clean stop (SIGTERM)",
            Fault::Standby => "hbctl standby",
        }
    }
}

fn settle(c: &Cluster) -> Duration {
    (c.timing.keepalive * 20).clamp(Duration::from_millis(300), Duration::from_secs(2))
}

/// `HB_BENCH_FAILBACK_DEBUG=1`: prints, after each failback, the ARP packets claiming the VIP
/// that the client saw and the client's probe outcomes from the fault to the first answer of
/// n1, in ms from n1's restart (a diagnostic for the failback column).
fn failback_debug(
    c: &Cluster,
    arp: &hb_tests::lab::probe::ArpWatch,
    t0: u64,
    t1: u64,
) -> Result<()> {
    let rel = |at: u64| (at as f64 - t1 as f64) / 1e6;
    let log = arp.snapshot();
    let claims: Vec<String> = log
        .seen
        .iter()
        .filter(|a| a.at_ns >= t0)
        .map(|a| {
            format!(
                "{:+.1} {} op{}",
                rel(a.at_ns),
                log.sender(a).map_or("?".into(), |n| n.to_string()),
                a.oper
            )
        })
        .collect();
    println!("    ARP claims (ms from restart): {}", claims.join(", "));
    let mut probes = c.probes();
    probes.sort_by_key(|p| p.start_ns);
    let first_n1 = cluster::first_answer(&probes, Node::N1, t1).unwrap_or(u64::MAX);
    let mut last = String::new();
    let mut runs: Vec<String> = Vec::new();
    for p in probes
        .iter()
        .filter(|p| p.start_ns >= t1 && p.start_ns <= first_n1)
    {
        let what = match &p.outcome {
            hb_tests::lab::probe::Outcome::Served(n) => n.to_string(),
            hb_tests::lab::probe::Outcome::Unexpected(_) => "unexpected".into(),
            hb_tests::lab::probe::Outcome::Failed(e) => e.clone(),
        };
        if what != last {
            runs.push(format!("{:+.1} {what}", rel(p.start_ns)));
            last = what;
        }
    }
    println!(
        "    probes (start, ms from restart): {}; back outage {}",
        runs.join(" | "),
        cluster::outage_ms(&probes, Node::N2, Node::N1, t1)
            .map_or("-".into(), |o| format!("{o:.1} ms"))
    );
    Ok(())
}

fn run_trials(c: &mut Cluster, fault: Fault, n: usize) -> Result<Trials> {
    let mut t = Trials::default();
    let arp = if std::env::var_os("HB_BENCH_FAILBACK_DEBUG").is_some() {
        Some(hb_tests::lab::probe::ArpWatch::start(&c.lab)?)
    } else {
        None
    };
    let initdead = c.lab.spec().initdead;
    c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
    for i in 0..n {
        crate::interrupt::check()?;
        crate::interrupt::sleep(settle(c))?;
        // n1 alone holds the VIP before each trial (Heartbeat's start-up and keepalived's
        // dual-master episodes would otherwise make a move without an outage).
        if let Err(e) = c.wait_settled(
            Duration::from_millis(300),
            initdead + Duration::from_secs(15),
        ) {
            crate::interrupt::check()?;
            t.failed.push(format!("before trial {i}: {e:#}"));
            break;
        }
        t.load.push(loadavg());
        let t0 = match fault {
            Fault::Kill => c.kill(Node::N1)?,
            Fault::Stop => c.clean_stop(Node::N1)?,
            Fault::Standby => {
                let at = hb_tests::monotonic_ns();
                let out = c.lab.hbctl(Node::N1, &["standby"])?;
                if !out.status.success() {
                    bail!("hbctl standby: {}", String::from_utf8_lossy(&out.stderr));
                }
                at
            }
        };
        let timeout = c.timing.deadtime + Duration::from_secs(10);
        match c.wait_served(Node::N2, t0, timeout) {
            Ok(_) => {
                if let Some(o) = cluster::outage_ms(&c.probes(), Node::N1, Node::N2, t0) {
                    t.outage.push(o);
                }
                if fault == Fault::Kill
                    && let Some(at) = c.declared_dead(Node::N2, t0, Duration::from_secs(2))?
                {
                    t.detect.push(ms_between(t0, at));
                }
            }
            Err(e) => t.failed.push(format!("trial {i}: {e:#}")),
        }
        // Back to n1 for the next trial.
        let t1 = match fault {
            Fault::Kill => c.restart(Node::N1)?,
            Fault::Stop => c.start(Node::N1)?,
            Fault::Standby => {
                let at = hb_tests::monotonic_ns();
                let out = c.lab.hbctl(Node::N1, &["takeover"])?;
                if !out.status.success() {
                    bail!("hbctl takeover: {}", String::from_utf8_lossy(&out.stderr));
                }
                at
            }
        };
        c.wait_served(Node::N1, t1, initdead + Duration::from_secs(30))?;
        if let Some(o) = cluster::outage_ms(&c.probes(), Node::N2, Node::N1, t1) {
            t.back.push(o);
        }
        if let Some(w) = &arp {
            failback_debug(c, w, t0, t1)?;
        }
        let last = t.outage.last().copied().unwrap_or(f64::NAN);
        let det = t.detect.last().copied().unwrap_or(f64::NAN);
        println!(
            "  {} {}: trial {}/{n}: outage {last:.1} ms, detection {det:.1} ms, load {:.1}",
            c.kind.label(),
            fault.label(),
            i + 1,
            t.load.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(t)
}

fn failover(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let n = opts.trials();
    let mut rows = String::new();
    let mut notes = String::new();
    let mut headline: Option<(Summary, usize)> = None;
    let mut raw = Vec::new();
    for kind in opts.kinds(Which::Failover) {
        let settings: Vec<(Timing, Vec<Fault>)> = match kind {
            // The address-only set-up: kill -9 at every deadtime.
            Kind::Hb(o) if o.ip_only => opts
                .deadtimes()
                .into_iter()
                .map(|d| (hb_timing(d), vec![Fault::Kill]))
                .collect(),
            Kind::Hb(_) => opts
                .deadtimes()
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    // Clean stop and standby do not depend on the deadtime: measured once, at
                    // the first (shortest) deadtime.
                    let faults = if i == 0 {
                        vec![Fault::Kill, Fault::Stop, Fault::Standby]
                    } else {
                        vec![Fault::Kill]
                    };
                    (hb_timing(d), faults)
                })
                .collect(),
            Kind::Keepalived => {
                let adverts = if opts.adverts.is_empty() {
                    vec![10]
                } else {
                    opts.adverts.clone()
                };
                adverts
                    .into_iter()
                    .map(|a| (ka_timing(a), vec![Fault::Kill, Fault::Stop]))
                    .collect()
            }
            // Heartbeat at hb's shortest deadtime (it takes ms timings).
            Kind::Heartbeat => vec![(
                hb_timing(opts.deadtimes().first().copied().unwrap_or(50)),
                vec![Fault::Kill, Fault::Stop],
            )],
        };
        for (timing, faults) in settings {
            for fault in faults {
                step(&format!(
                    "failover: {} keepalive {} ms deadtime {} ms, {}: {n} trials",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    fault.label()
                ));
                let mut c = Cluster::up(kind, timing, 2, bins)?;
                let t = run_trials(&mut c, fault, n)?;
                c.down()?;
                raw.push(data::FailoverRow::of(kind, timing, fault, &t));
                let out = Summary::of(&t.outage);
                let det = Summary::of(&t.detect);
                if kind == Kind::Hb(HbOpts::DEFAULT)
                    && fault == Fault::Kill
                    && timing.deadtime == Duration::from_millis(50)
                    && let Some(o) = out
                {
                    headline = Some((o, t.outage.len()));
                }
                let _ = writeln!(
                    rows,
                    "| {} | {} / {} | {} | {}/{n} | {} | {} | {} | {} |",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    fault.label(),
                    t.outage.len(),
                    Summary::cells(out),
                    if fault == Fault::Kill {
                        Summary::cells(det)
                    } else {
                        "- | - | - | -".into()
                    },
                    Summary::of(&t.back)
                        .map(|s| format!("{:.1}", s.median))
                        .unwrap_or_else(|| "-".into()),
                    t.load_range()
                );
                for f in &t.failed {
                    let _ = writeln!(notes, "- {} {}: {f}", kind.label(), fault.label());
                }
            }
        }
    }
    let mut body = header(
        opts,
        &format!(
            "{n} trials per row; two nodes with two links (LAN `eth1` and heartbeat-only `eth2`) and a client in network namespaces"
        ),
    );
    body += &probe_method();
    body += " **Outage** = arrival of the \
        first answer from n2 minus arrival of the last answer from n1 (client-observed; a request \
        sent while the client's ARP entry was being re-resolved can be answered by n2 once its \
        gratuitous ARP lands, so the outage can be shorter than the detection time). **Detection** (kill only) = the kill's time to n2's `node n1: is dead` log line (hb) or \
        n2's `Entering MASTER STATE` (keepalived), CLOCK_MONOTONIC on both sides. A kill is n1's links \
        down at the bridge (both in one `ip -batch`; the kill's time is taken just before it), \
        then SIGKILL of its HA daemon; n1 then comes back as after a reboot \
        (no VIP, links up, daemon started) and takes the VIP back (hb `auto_failback on`, keepalived \
        preempt); **back** = the client's outage of that failback. hb runs `haresources` \
        `n1 IPaddr::VIP/24/eth1 httpd` (Apache started at takeover, stopped at release); **hb (IP \
        only)** (kill -9 rows) runs `n1 IPaddr::VIP/24/eth1` with Apache started on both nodes at \
        lab-up and again when n1 comes back, the way keepalived runs; keepalived \
        runs Apache on both nodes and moves only the address (its usual set-up). hb's keepalive is a \
        fifth of the deadtime, warntime 0.6 x deadtime, initdead max(2 x deadtime, 500 ms). keepalived: \
        VRRPv3, `advert_int 0.01` (its minimum), unicast peers, preempt (priorities 150/100), GARP \
        delay 0, one GARP, no refresh; its \"deadtime\" column is its master-down interval \
        (3 x advert + skew). Load = 1-minute load average at the trials' starts.\n\n\
        keepalived limits hit: `advert_int` below 0.01 is refused (logged, 1 s used instead); \
        `vrrp_garp_interval 0` and `vrrp_startup_delay 0` are rejected as out of range (left at \
        their defaults); the backup's master-down interval is fixed by VRRP at 3 adverts plus a \
        priority skew (about 36 ms at 10 ms adverts) and cannot be set on its own.\n\n\
        All times in ms.\n\n\
        | impl | keepalive / deadtime | fault | ok | outage min | median | p90 | max | detection min | median | p90 | max | back median | load |\n\
        |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    body += &rows;
    if !notes.is_empty() {
        body += "\nTrials that did not complete:\n";
        body += &notes;
    }
    if let Some((o, k)) = headline {
        let _ = write!(
            body,
            "\nTarget \"deadtime 50 ms: median client-observed outage at most 60 ms, max at most \
             100 ms\": median {:.1} ms ({}), max {:.1} ms ({}) over {k} trials.\n",
            o.median,
            if o.median <= 60.0 { "met" } else { "NOT met" },
            o.max,
            if o.max <= 100.0 { "met" } else { "NOT met" },
        );
    }
    let (command, machine) = data::provenance(opts);
    let raw = data::FailoverData {
        command,
        machine,
        rows: raw,
    };
    publish(
        root,
        opts,
        "Failover outage and detection",
        &body,
        ("failover", &raw),
    )
}

fn loss(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let cell = opts.cell();
    let rates = opts.loss_rates();
    let mut rows = String::new();
    let mut curve = String::new();
    let mut notes = String::new();
    let mut raw = Vec::new();
    for kind in opts.kinds(Which::Loss) {
        let timings: Vec<Timing> = match kind {
            Kind::Hb(_) | Kind::Heartbeat => [30, 50, 100, 200, 500]
                .iter()
                .map(|&d| Timing {
                    keepalive: Duration::from_millis(10),
                    deadtime: Duration::from_millis(d),
                })
                .collect(),
            Kind::Keepalived => {
                let adverts = if opts.adverts.is_empty() {
                    vec![10, 20, 50, 100]
                } else {
                    opts.adverts.clone()
                };
                adverts.into_iter().map(ka_timing).collect()
            }
        };
        // Per loss rate: the shortest deadtime with no false failover.
        let mut shortest: Vec<Option<u128>> = vec![None; rates.len()];
        for timing in &timings {
            step(&format!(
                "loss: {} keepalive {} ms deadtime {} ms: rates {rates:?}, {} s per cell",
                kind.label(),
                timing.keepalive.as_millis(),
                timing.deadtime.as_millis(),
                cell.as_secs()
            ));
            let mut c = Cluster::up(kind, *timing, 1, bins)?;
            for (ri, &rate) in rates.iter().enumerate() {
                let r = match loss_cell(&mut c, rate, cell) {
                    Ok(r) => r,
                    Err(e) => {
                        // The cluster did not come back to n1: the rest of this timing's
                        // cells cannot start from a settled state.
                        crate::interrupt::check()?;
                        let _ = writeln!(
                            notes,
                            "- {} {}/{} ms at {rate}%: cell aborted, later cells of this timing \
                             not run: {}",
                            kind.label(),
                            timing.keepalive.as_millis(),
                            timing.deadtime.as_millis(),
                            format!("{e:#}").lines().next().unwrap_or_default()
                        );
                        break;
                    }
                };
                println!(
                    "  {} {}/{} ms at {rate}%: {} deaths, {} takeovers, {} disturbed probes (load {:.1})",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    r.deaths,
                    r.takeovers,
                    r.disturbed,
                    r.load
                );
                raw.push(data::LossCell::of(kind, *timing, rate, &r));
                if r.deaths == 0 && r.takeovers == 0 && shortest[ri].is_none() {
                    shortest[ri] = Some(timing.deadtime.as_millis());
                }
                let _ = writeln!(
                    rows,
                    "| {} | {} / {} | {rate}% | {} | {} | {} | {:.1} |",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    r.deaths,
                    r.takeovers,
                    r.disturbed,
                    r.load
                );
            }
            c.down()?;
        }
        for (ri, rate) in rates.iter().enumerate() {
            let _ = writeln!(
                curve,
                "| {} | {rate}% | {} |",
                kind.label(),
                shortest[ri]
                    .map(|d| format!("{d} ms"))
                    .unwrap_or_else(|| "none of those tried".into())
            );
        }
    }
    let mut body = header(
        opts,
        &format!(
            "{} s per cell; two nodes with ONE link (`eth1`) and a client",
            cell.as_secs()
        ),
    );
    body += "\nMethod: random loss of each heartbeat on its sender, both nodes \
        (`iptables -A OUTPUT -p udp --dport 694 -m statistic --mode random --probability P -j DROP` \
        for hb, `-p 112` (VRRP) for keepalived), for the cell's length; the cells of one timing run \
        one after the other in the same cluster. One link so that the loss rate is the loss the \
        implementation sees (with hb's two-link lab topology a heartbeat is lost only when both \
        copies are). **Deaths** = `node X: is dead` lines on either node (keepalived: `Entering \
        MASTER STATE`); **takeovers** = n2 acquiring the resource group (keepalived: n2 becoming \
        master); **disturbed** = client probes in the cell that n1 did not serve. keepalived's \
        deadtime column is its master-down interval, 3 x advert + skew.\n\n\
        | impl | keepalive / deadtime ms | loss | deaths | takeovers | disturbed probes | load |\n\
        |---|---|---|---|---|---|---|\n";
    body += &rows;
    body += "\nShortest deadtime (of those tried) with zero deaths and zero takeovers, per loss rate:\n\n\
        | impl | loss | shortest deadtime with no false failover |\n|---|---|---|\n";
    body += &curve;
    if !notes.is_empty() {
        body += "\nCells that could not be measured:\n";
        body += &notes;
    }
    let (command, machine) = data::provenance(opts);
    let raw = data::LossData {
        command,
        machine,
        cell_secs: cell.as_secs(),
        cells: raw,
    };
    publish(
        root,
        opts,
        "False failovers under heartbeat loss",
        &body,
        ("loss", &raw),
    )
}

/// What one loss cell saw.
#[derive(Debug)]
struct CellResult {
    deaths: usize,
    takeovers: usize,
    disturbed: usize,
    load: f64,
}

fn loss_cell(c: &mut Cluster, rate: u32, cell: Duration) -> Result<CellResult> {
    let initdead = c.lab.spec().initdead;
    c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
    // Start from a settled cluster: n1 serving for a while.
    let ready = hb_tests::monotonic_ns();
    c.wait_served(Node::N1, ready, Duration::from_secs(30))?;
    crate::interrupt::sleep(Duration::from_millis(500))?;
    let p = f64::from(rate) / 100.0;
    let from = hb_tests::monotonic_ns();
    if rate > 0 {
        c.set_loss(p, true)?;
    }
    let res = crate::interrupt::sleep(cell);
    if rate > 0 {
        c.set_loss(p, false)?;
    }
    res?;
    let to = hb_tests::monotonic_ns();
    let load = loadavg();
    // Events caused by loss at the end of the cell show up within a deadtime.
    crate::interrupt::sleep(c.timing.deadtime * 2)?;
    let (deaths, takeovers) = c.spurious(from, to + (c.timing.deadtime * 2).as_nanos() as u64)?;
    let disturbed = c.disturbed(Node::N1, from, to);
    // After a false failover, wait for n1 to serve again before the next cell.
    if takeovers > 0 {
        let back = hb_tests::monotonic_ns();
        c.wait_served(Node::N1, back, initdead + Duration::from_secs(30))?;
    }
    Ok(CellResult {
        deaths,
        takeovers,
        disturbed,
        load,
    })
}

fn long_loss(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let len = if opts.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(600)
    };
    let timing = Timing {
        keepalive: Duration::from_millis(10),
        deadtime: Duration::from_millis(100),
    };
    step(&format!(
        "long loss: hb 10/100 ms at 20% for {} s (target: zero false failovers)",
        len.as_secs()
    ));
    let mut c = Cluster::up(Kind::Hb(HbOpts::DEFAULT), timing, 1, bins)?;
    let r = loss_cell(&mut c, 20, len)?;
    c.down()?;
    let mut body = header(
        opts,
        &format!(
            "hb keepalive 10 ms / deadtime 100 ms, one link, 20% loss on both senders for {} s, \
             counted as in the loss matrix",
            len.as_secs()
        ),
    );
    let _ = write!(
        body,
        "\n| impl | keepalive / deadtime ms | loss | window s | deaths | takeovers | disturbed probes | load |\n\
         |---|---|---|---|---|---|---|---|\n\
         | hb | 10 / 100 | 20% | {} | {} | {} | {} | {:.1} |\n\n\
         Target \"zero false failovers in 10 minutes at 20% loss with deadtime of ten keepalives\": **{}**.\n",
        len.as_secs(),
        r.deaths,
        r.takeovers,
        r.disturbed,
        r.load,
        if r.deaths == 0 && r.takeovers == 0 {
            if len >= Duration::from_secs(600) {
                "met"
            } else {
                "no false failover, but the run was shorter than the 10 minutes the target asks"
            }
        } else {
            "NOT met"
        }
    );
    let (command, machine) = data::provenance(opts);
    let raw = data::LongLossData {
        command,
        machine,
        window_secs: len.as_secs(),
        cell: data::LossCell::of(Kind::Hb(HbOpts::DEFAULT), timing, 20, &r),
    };
    publish(
        root,
        opts,
        "Long run at 20% heartbeat loss",
        &body,
        ("long-loss", &raw),
    )
}

/// The CPU pressure of a saturation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pressure {
    /// One busy loop per core (plain `sh` loops at normal priority).
    Busy,
    /// The HA daemons of both nodes in a cgroup limited to 10% of one CPU.
    Quota,
}

impl Pressure {
    fn label(self) -> &'static str {
        match self {
            Pressure::Busy => "all cores busy",
            Pressure::Quota => "daemons in a 10% CPU quota",
        }
    }
}

/// Busy-loop processes, killed on drop.
#[derive(Debug)]
struct Burners(Vec<std::process::Child>);

impl Burners {
    fn start() -> Result<Burners> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(std::process::Stdio::null())
                    .spawn()?,
            );
        }
        Ok(Burners(v))
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CPU-limited cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), removed on drop (its
/// processes are moved back to the root group first). Only the processes given to
/// [`Quota::add`] stay in it: a sweeper moves anything else that lands there (processes the
/// daemons fork: resource scripts and the web server they start) back to the root group every
/// 20 ms, so the quota limits the HA daemons, not Apache serving the client's 1000 requests/s.
#[derive(Debug)]
struct Quota {
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
    keep: std::sync::Arc<std::sync::Mutex<Vec<i32>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sweeper: Option<std::thread::JoinHandle<()>>,
}

impl Quota {
    /// `quota_us` of CPU time per `period_us`.
    fn new(quota_us: u64, period_us: u64) -> Result<Quota> {
        let name = format!("hb-bench-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        if std::fs::read_to_string(v2).is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu")) {
            let root = std::path::PathBuf::from("/sys/fs/cgroup");
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota_us} {period_us}"))?;
            return Ok(Quota::with_sweeper(dir, root));
        }
        let root = std::path::PathBuf::from("/sys/fs/cgroup/cpu");
        if !root.join("cpu.cfs_quota_us").exists() {
            bail!("no cgroup cpu controller (v2 cpu.max or v1 cpu) found");
        }
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        let q = Quota::with_sweeper(dir, root);
        std::fs::write(q.dir.join("cpu.cfs_period_us"), period_us.to_string())?;
        std::fs::write(q.dir.join("cpu.cfs_quota_us"), quota_us.to_string())?;
        // A SCHED_FIFO task (hbd's `realtime on`) may only join a v1 group with RT runtime, and
        // the CFS quota does not apply to it: give the group the same share as RT runtime.
        if q.dir.join("cpu.rt_runtime_us").exists() {
            std::fs::write(q.dir.join("cpu.rt_period_us"), period_us.to_string())?;
            std::fs::write(q.dir.join("cpu.rt_runtime_us"), quota_us.to_string())?;
        }
        Ok(q)
    }

    fn with_sweeper(dir: std::path::PathBuf, root: std::path::PathBuf) -> Quota {
        let keep = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i32>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweeper = {
            let (dir, root, keep, stop) = (dir.clone(), root.clone(), keep.clone(), stop.clone());
            std::thread::Builder::new()
                .name("quota-sweeper".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let kept = keep.lock().map(|k| k.clone()).unwrap_or_default();
                        if let Ok(pids) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                            for p in pids.split_whitespace() {
                                if p.parse::<i32>().is_ok_and(|p| !kept.contains(&p)) {
                                    let _ = std::fs::write(root.join("cgroup.procs"), p);
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
                .ok()
        };
        Quota {
            dir,
            root,
            keep,
            stop,
            sweeper,
        }
    }

    fn add(&self, pid: i32) -> Result<()> {
        if let Ok(mut k) = self.keep.lock() {
            k.push(pid);
        }
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| anyhow::anyhow!("moving pid {pid} into {}: {e}", self.dir.display()))
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.sweeper.take() {
            let _ = t.join();
        }
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for p in pids.split_whitespace() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), p);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn confine(c: &mut Cluster, q: Option<&Quota>) -> Result<()> {
    if let Some(q) = q {
        for node in Node::ALL {
            for pid in c.daemon_pids(node) {
                q.add(pid)?;
            }
        }
    }
    Ok(())
}

fn saturation(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let len = opts.saturation();
    let kills = if opts.quick { 3 } else { 10 };
    let kinds = opts.kinds(Which::Saturation);
    let mut rows = String::new();
    let mut notes = String::new();
    let mut raw = Vec::new();
    let pressures = if opts.pressure.is_empty() {
        vec![Pressure::Busy, Pressure::Quota]
    } else {
        opts.pressure.clone()
    };
    for pressure in pressures {
        for &kind in &kinds {
            let timing = match kind {
                Kind::Keepalived => ka_timing(10),
                Kind::Hb(_) | Kind::Heartbeat => Timing {
                    keepalive: Duration::from_millis(10),
                    deadtime: Duration::from_millis(100),
                },
            };
            step(&format!(
                "saturation: {} with {}: {} s, then {kills} kills",
                kind.label(),
                pressure.label(),
                len.as_secs()
            ));
            let mut c = Cluster::up(kind, timing, 2, bins)?;
            let initdead = c.lab.spec().initdead;
            c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
            crate::interrupt::sleep(Duration::from_millis(500))?;
            let quota = match pressure {
                Pressure::Quota => Some(Quota::new(10_000, 100_000)?),
                Pressure::Busy => None,
            };
            if let Err(e) = confine(&mut c, quota.as_ref()) {
                let _ = writeln!(notes, "- {} {}: {e:#}", kind.label(), pressure.label());
                continue;
            }
            let burners = match pressure {
                Pressure::Busy => Some(Burners::start()?),
                Pressure::Quota => None,
            };
            let from = hb_tests::monotonic_ns();
            crate::interrupt::sleep(len)?;
            let to = hb_tests::monotonic_ns();
            let load = loadavg();
            let (deaths, takeovers) = c.spurious(from, to)?;
            let disturbed = c.disturbed(Node::N1, from, to);
            let mut detect = Vec::new();
            let mut after_last = Vec::new();
            let mut outage = Vec::new();
            for k in 0..kills {
                let back = hb_tests::monotonic_ns();
                if let Err(e) = c.wait_served(Node::N1, back, initdead + Duration::from_secs(30)) {
                    crate::interrupt::check()?;
                    let _ = writeln!(
                        notes,
                        "- {} {}: n1 did not serve again before kill {}: {}",
                        kind.label(),
                        pressure.label(),
                        k + 1,
                        format!("{e:#}").lines().next().unwrap_or_default()
                    );
                    break;
                }
                crate::interrupt::sleep(Duration::from_millis(500))?;
                let t0 = c.kill(Node::N1)?;
                if c.wait_served(Node::N2, t0, Duration::from_secs(10)).is_ok() {
                    if let Some(o) = cluster::outage_ms(&c.probes(), Node::N1, Node::N2, t0) {
                        outage.push(o);
                    }
                    if let Some(at) = c.declared_dead(Node::N2, t0, Duration::from_secs(2))? {
                        detect.push(ms_between(t0, at));
                    }
                    if let Some(ms) = c.dead_after_last_ms(Node::N2, t0)? {
                        after_last.push(ms);
                    }
                }
                c.restart(Node::N1)?;
                confine(&mut c, quota.as_ref())?;
            }
            drop(burners);
            c.down()?;
            drop(quota);
            raw.push(data::SaturationRow {
                implementation: kind.label().into(),
                pressure: pressure.label().into(),
                deadtime_ms: u64::try_from(timing.deadtime.as_millis()).unwrap_or(u64::MAX),
                deaths,
                takeovers,
                disturbed,
                detect_ms: detect.clone(),
                outage_ms: outage.clone(),
            });
            println!(
                "  {} {}: {deaths} deaths, {takeovers} takeovers, {disturbed} disturbed probes in {} s; detection {}",
                kind.label(),
                pressure.label(),
                len.as_secs(),
                Summary::cells(Summary::of(&detect))
            );
            let _ = writeln!(
                rows,
                "| {} | {} | {} / {} | {} | {deaths} | {takeovers} | {disturbed} | {}/{kills} | {} | {} | {} | {load:.1} |",
                kind.label(),
                pressure.label(),
                timing.keepalive.as_millis(),
                timing.deadtime.as_millis(),
                len.as_secs(),
                detect.len(),
                Summary::cells(Summary::of(&detect)),
                Summary::of(&after_last)
                    .map(|s| format!("{:.1} / {:.1}", s.median, s.max))
                    .unwrap_or_else(|| "-".into()),
                Summary::of(&outage)
                    .map(|s| format!("{:.1}", s.median))
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }
    let mut body = header(
        opts,
        "two nodes with two links and a client; hb keepalive 10 ms / deadtime 100 ms (`realtime on`, \
         hb's default: SCHED_FIFO heartbeat thread; **hb (realtime off)**: `realtime off` in \
         `ha.cf`, XDP auto; **hb (xdp off)**: `xdp off`, realtime on), keepalived advert 10 ms",
    );
    body += "\nMethod: **all cores busy** = one `sh -c 'while :; do :; done'` per core at normal \
        priority for the whole run; **quota** = both nodes' HA daemon processes moved into a cgroup \
        limited to 10 ms of CPU per 100 ms (processes they fork, resource scripts and the Apache \
        they start, are moved back out within 20 ms, so the quota limits the daemons, not the web \
        server) (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` plus the same \
        `cpu.rt_runtime_us` / `cpu.rt_period_us`, since a v1 group needs RT runtime for a SCHED_FIFO \
        thread to join and the CFS quota does not limit RT threads). First a quiet window of the \
        given length under that pressure (no faults): deaths, takeovers and disturbed probes count \
        false failovers as in the loss benchmark. Then, still under pressure, n1 is killed (kill -9 \
        + links down) and brought back repeatedly: detection = kill to n2's death line, in ms (the \
        kill's `ip` command runs SCHED_FIFO so that the busy loops do not delay the instrument); \
        **after last** (hb only) = hbd's own figure from its line `hb: node n1 declared dead N ms \
        after its last heartbeat arrived`: how late the declaration came after the kernel arrival \
        time of n1's last heartbeat (deadtime plus any late wake-up), median / max.\n\n\
        | impl | pressure | keepalive / deadtime ms | window s | deaths | takeovers | disturbed probes | kills detected | detection min | median | p90 | max | after last median / max | outage median | load |\n\
        |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    body += &rows;
    if !notes.is_empty() {
        body += "\nRuns that could not be made:\n";
        body += &notes;
    }
    let (command, machine) = data::provenance(opts);
    let raw = data::SaturationData {
        command,
        machine,
        window_secs: len.as_secs(),
        rows: raw,
    };
    publish(
        root,
        opts,
        "Saturated CPU (issue 10)",
        &body,
        ("saturation", &raw),
    )
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
