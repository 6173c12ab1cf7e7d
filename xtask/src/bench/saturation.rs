//! The saturation benchmark (issue 10): false failovers and detection with both cores busy, and
//! with the HA daemons in a 10% CPU quota (a cgroup), for hb (realtime on/off, xdp off),
//! keepalived and Heartbeat 3.0.6.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Result, bail};
use clap::ValueEnum;
use hb_tests::lab::Node;

use super::{
    BenchOptions, Binaries, Which,
    cluster::{self, Cluster, Kind, Timing},
    data,
    report::{Summary, header, ka_timing, loadavg, ms_between, publish},
};
use crate::bootstrap::step;

/// The CPU pressure of a saturation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pressure {
    /// One busy loop per core (plain `sh` loops at normal priority).
    Busy,
    /// The HA daemons of both nodes in a cgroup limited to 10% of one CPU.
    Quota,
}

impl Pressure {
    pub(super) fn label(self) -> &'static str {
        match self {
            Pressure::Busy => "all cores busy",
            Pressure::Quota => "daemons in a 10% CPU quota",
        }
    }
}

/// Busy-loop processes, killed on drop.
#[derive(Debug)]
pub(super) struct Burners(Vec<std::process::Child>);

impl Burners {
    pub(super) fn start() -> Result<Burners> {
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

pub(super) fn saturation(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
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
