//! The 1 kHz benchmark (issue 20): hb at keepalive 1 ms / deadtime 10 ms, keepalived at its
//! floor (10 ms adverts) beside it in the same run, one link, the client probing the VIP every
//! millisecond. Measures the kill outage (links down + kill -9, hbd frozen instead, see
//! `Cluster::kill`), 20% heartbeat loss on both
//! senders (false deaths, takeovers, probes not answered by the owner), and for hb the send
//! jitter (`hbstat`'s `send`, per node) and hbd's CPU (both nodes, in % of a core), on the
//! machine as it is and with every core busy. Both run the address alone as the resource with
//! Apache up on both nodes (keepalived's set-up: `HbOpts::IP_ONLY`), so the outages compare.
//! Just before each of hb's jitter windows, with the cluster up and the same load, cyclictest
//! runs alone for as long ([`Floor`]): the machine's own floor for a 1 kHz sender's wake-ups.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, Result};
use hb_tests::{floor::FloorSpec, lab::Node};
use serde::Serialize;

use super::{
    BenchOptions, Binaries,
    cluster::{Cluster, HbOpts, Kind, Timing},
    data,
    failover::{Fault, Trials, run_trials},
    loss::{CellResult, loss_cell},
    report::{Summary, header, ka_timing, loadavg, probe_method, publish},
    saturation::Burners,
    scale::cpu_seconds,
};
use crate::bootstrap::step;

/// hb's timing here.
const HB: Timing = Timing {
    keepalive: Duration::from_millis(1),
    deadtime: Duration::from_millis(10),
};

/// Send jitter and CPU of both hb nodes over one window.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Window {
    /// What else ran: `as is` or `all cores busy`.
    pub(super) pressure: String,
    /// Length, s.
    pub(super) secs: f64,
    /// Per node (n1, n2): send jitter p99 and p99.9, ms.
    pub(super) jitter_p99_ms: Vec<f64>,
    pub(super) jitter_p999_ms: Vec<f64>,
    /// Per node: largest send jitter, ms.
    pub(super) jitter_max_ms: Vec<f64>,
    /// Per node: p99.9 of the wake-up part of the jitter (`hbstat`'s `wakeup`: the send thread
    /// woke minus the heartbeat was due; the machine's part), ms.
    pub(super) wakeup_p999_ms: Vec<f64>,
    /// Per node: periodic heartbeats sent in the window.
    pub(super) sent: Vec<u64>,
    /// Per node: hbd's CPU (every thread), % of one core.
    pub(super) cpu_percent: Vec<f64>,
    /// 1-minute load average at the end.
    pub(super) load: f64,
    /// The machine's floor, measured just before under the same pressure.
    pub(super) floor: Option<Floor>,
}

/// The machine's floor for hb's send thread over one window ([`hb_tests::floor`]): cyclictest
/// as a bare 1 kHz sleeper, one thread at SCHED_FIFO [`FLOOR_PRIORITY`] (hb's send thread's).
/// Its wake-up latency is what any program sending at 1 kHz gets here; its CPU is the cost of
/// waking 1000 times a second and doing nothing else.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Floor {
    /// What else ran: `as is` or `all cores busy` (hb's cluster is up in both).
    pub(super) pressure: String,
    /// Length of the CPU window, s (the latency histogram covers cyclictest's whole run, one
    /// second longer at each end).
    pub(super) secs: f64,
    /// Wake-ups measured.
    pub(super) samples: u64,
    /// Wake-up latency p99, p99.9 and largest, ms.
    pub(super) p99_ms: f64,
    pub(super) p999_ms: f64,
    pub(super) max_ms: f64,
    /// cyclictest's CPU, % of one core.
    pub(super) cpu_percent: f64,
    /// 1-minute load average at the end.
    pub(super) load: f64,
}

/// SCHED_FIFO priority of the floor's sleeper: hb's send thread's (`hb_daemon::sender`).
const FLOOR_PRIORITY: u32 = 51;

/// Histogram range of cyclictest, us (a latency beyond it counts as an overflow).
const FLOOR_HISTOGRAM_US: u32 = 20_000;

/// Runs the floor's sleeper for `len` (see [`Floor`]).
fn floor(len: Duration, pressure: &str) -> Result<Floor> {
    // Killed on drop if anything below fails or Ctrl-C comes.
    let running = hb_tests::floor::Floor::start(FloorSpec {
        threads: 1,
        interval: Duration::from_millis(1),
        priority: FLOOR_PRIORITY,
        histogram_us: FLOOR_HISTOGRAM_US,
    })?;
    let pid = running.pid().context("cyclictest pid")?;
    crate::interrupt::sleep(Duration::from_secs(1))?;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = std::time::Instant::now();
    crate::interrupt::sleep(len)?;
    let cpu1 = cpu_seconds(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    crate::interrupt::sleep(Duration::from_secs(1))?;
    let l = running.stop()?;
    let us_ms = |us: u64| us as f64 / 1e3;
    let f = Floor {
        pressure: pressure.to_owned(),
        secs,
        samples: l.samples(),
        p99_ms: us_ms(l.percentile(0.99)),
        p999_ms: us_ms(l.percentile(0.999)),
        max_ms: us_ms(l.max_us),
        cpu_percent: (cpu1 - cpu0) / secs * 100.0,
        load: loadavg(),
    };
    println!(
        "  floor (cyclictest 1 kHz), {pressure}: wake-up latency p99.9 {:.3} ms, max {:.2} ms, \
         CPU {:.1} %, load {:.1}",
        f.p999_ms, f.max_ms, f.cpu_percent, f.load
    );
    Ok(f)
}

/// hb's window under `pressure`, after the floor's window under the same.
fn with_floor(c: &mut Cluster, len: Duration, pressure: &str) -> Result<Window> {
    let f = floor(len, pressure)?;
    let mut w = window(c, len, pressure)?;
    w.floor = Some(f);
    Ok(w)
}

/// Raw figures (`docs/bench/khz.json`).
#[derive(Debug, Serialize)]
struct KhzData {
    command: String,
    machine: String,
    windows: Vec<Window>,
    loss_secs: u64,
    hb_loss: (usize, usize, usize),
    keepalived_loss: (usize, usize, usize),
    hb_outage_ms: Vec<f64>,
    hb_detect_ms: Vec<f64>,
    keepalived_outage_ms: Vec<f64>,
}

fn ns_ms(v: &serde_json::Value) -> f64 {
    v.as_u64().unwrap_or(0) as f64 / 1e6
}

/// Resets both nodes' statistics, waits `len`, and reads their send jitter and CPU.
fn window(c: &mut Cluster, len: Duration, pressure: &str) -> Result<Window> {
    let mut cpu0 = Vec::new();
    for node in Node::ALL {
        c.lab.hbstat(node, &["--reset"])?;
        let pid = *c
            .daemon_pids(node)
            .first()
            .with_context(|| format!("no hbd on {node}"))?;
        cpu0.push((pid, cpu_seconds(pid as u32)?));
    }
    let t0 = std::time::Instant::now();
    crate::interrupt::sleep(len)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut w = Window {
        pressure: pressure.to_owned(),
        secs,
        load: loadavg(),
        ..Window::default()
    };
    for (node, (pid, before)) in Node::ALL.into_iter().zip(cpu0) {
        let used = cpu_seconds(pid as u32)? - before;
        w.cpu_percent.push(used / secs * 100.0);
        let out = c.lab.hbstat(node, &["--json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("hbstat --json")?;
        let send = &v["send"][0];
        w.sent.push(send["sent"].as_u64().unwrap_or(0));
        w.jitter_p99_ms.push(ns_ms(&send["jitter"]["p99_ns"]));
        w.jitter_p999_ms.push(ns_ms(&send["jitter"]["p999_ns"]));
        w.jitter_max_ms.push(ns_ms(&send["jitter"]["max_ns"]));
        w.wakeup_p999_ms.push(ns_ms(&send["wakeup"]["p999_ns"]));
    }
    println!(
        "  hb 1/10 ms, {pressure}: send jitter p99.9 {:?} ms (wake-up {:?}), CPU {:?} %, load {:.1}",
        w.jitter_p999_ms, w.wakeup_p999_ms, w.cpu_percent, w.load
    );
    Ok(w)
}

fn pair(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The 1-minute load average below which the first window counts as run on a quiet machine
/// (2 cores: less than half of one busy).
const QUIET_LOAD: f64 = 0.5;

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub(super) fn khz(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let trials = opts.trials.unwrap_or(if opts.quick { 5 } else { 20 });
    let loss_len = if opts.quick {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(60)
    };
    let win = if opts.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(30)
    };
    step(&format!(
        "1 kHz: hb 1/10 ms and keepalived 10 ms adverts: send jitter and CPU, {} s at 20% \
         loss, {trials} kills",
        loss_len.as_secs()
    ));
    // The address alone in haresources, Apache running on both nodes: keepalived's set-up, so
    // the outages compare (with Apache as a resource hb's outage adds its start).
    let mut c = Cluster::up(Kind::Hb(HbOpts::IP_ONLY), HB, 1, bins)?;
    let initdead = c.lab.spec().initdead;
    c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
    crate::interrupt::sleep(Duration::from_millis(500))?;
    let mut windows = vec![with_floor(&mut c, win, "as is")?];
    {
        let _burners = Burners::start()?;
        windows.push(with_floor(&mut c, win, "all cores busy")?);
    }
    let hb_loss = loss_cell(&mut c, 20, loss_len)?;
    let hb_kills = run_trials(&mut c, Fault::Kill, trials)?;
    c.down()?;

    let mut k = Cluster::up(Kind::Keepalived, ka_timing(10), 1, bins)?;
    let ka_loss = loss_cell(&mut k, 20, loss_len)?;
    let ka_kills = run_trials(&mut k, Fault::Kill, trials)?;
    k.down()?;

    let body = report(
        opts, &windows, loss_len, &hb_loss, &ka_loss, &hb_kills, &ka_kills,
    );
    let (command, machine) = data::provenance(opts);
    let cells = |r: &CellResult| (r.deaths, r.takeovers, r.disturbed);
    let raw = KhzData {
        command,
        machine,
        windows,
        loss_secs: loss_len.as_secs(),
        hb_loss: cells(&hb_loss),
        keepalived_loss: cells(&ka_loss),
        hb_outage_ms: hb_kills.outage.clone(),
        hb_detect_ms: hb_kills.detect.clone(),
        keepalived_outage_ms: ka_kills.outage.clone(),
    };
    publish(
        root,
        opts,
        "1 kHz heartbeats: hb 1/10 ms beside keepalived",
        &body,
        ("khz", &raw),
    )
}

fn report(
    opts: &BenchOptions,
    windows: &[Window],
    loss_len: Duration,
    hb_loss: &CellResult,
    ka_loss: &CellResult,
    hb: &Trials,
    ka: &Trials,
) -> String {
    let mut body = header(
        opts,
        "hb keepalive 1 ms / deadtime 10 ms (xdp auto, realtime on) and keepalived at its floor \
         (10 ms adverts) in the same run, one link; both with the address alone as the resource \
         and Apache running on both nodes (keepalived's set-up)",
    );
    body += &probe_method();
    body += " A kill is n1's link down at the bridge, then its daemon SIGKILLed (keepalived) or \
        frozen with SIGSTOP and SIGKILLed when n1 restarts (hbd: a killed hbd's XDP detach holds \
        the shared kernel's rtnl lock for ~14 ms, delaying the peer's address add and ARP socket, \
        which a dead machine never does to its peer).";
    let _ = write!(
        body,
        "\n\n| window | s | send jitter p99 ms (n1 / n2) | p99.9 ms | of which wake-up p99.9 ms \
         | max ms | heartbeats sent | hbd CPU % of a core | load |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for w in windows {
        let _ = writeln!(
            body,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} |",
            w.pressure,
            w.secs,
            pair(&w.jitter_p99_ms, 3),
            pair(&w.jitter_p999_ms, 3),
            pair(&w.wakeup_p999_ms, 3),
            pair(&w.jitter_max_ms, 2),
            w.sent
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / "),
            pair(&w.cpu_percent, 1),
            w.load
        );
    }
    body += "\nThe wake-up column is `hbstat`'s `wakeup`: when hb's send thread woke for the \
        heartbeat (its sleep returned, before it takes any lock) minus when the heartbeat was due: \
        the machine's part of the jitter. The rest is hbd's own (the core, signing, sending, the \
        main loop's lock).\n";
    if windows.iter().any(|w| w.floor.is_some()) {
        let _ = write!(
            body,
            "\nThe machine's floor, measured for as long just before each window (the cluster \
            up, the same pressure): cyclictest (Debian's rt-tests) alone, a 1 kHz sleeper that \
            sends nothing: one thread at SCHED_FIFO {FLOOR_PRIORITY} like hb's send thread (pinned to \
            CPU 0, cyclictest's way, where hb's may run on either), absolute 1 ms \
            CLOCK_MONOTONIC sleeps, memory locked, no `/dev/cpu_dma_latency` request \
            (`--laptop`; hbd makes none). Its wake-up latency is what any program waking 1000 \
            times a second gets here; its CPU is the cost of the wake-ups alone.\n\n\
            | window | s | wake-ups | wake-up latency p99 ms | p99.9 ms | max ms | cyclictest \
            CPU % of a core | load |\n|---|---|---|---|---|---|---|---|\n"
        );
        for (w, f) in windows
            .iter()
            .filter_map(|w| w.floor.as_ref().map(|f| (w, f)))
        {
            let _ = writeln!(
                body,
                "| {} | {:.0} | {} | {:.3} | {:.3} | {:.2} | {:.1} | {:.1} |",
                w.pressure, f.secs, f.samples, f.p99_ms, f.p999_ms, f.max_ms, f.cpu_percent, f.load
            );
        }
    }
    let _ = write!(
        body,
        "\n| impl | 20% loss for {} s: deaths | takeovers | probes not answered by n1 | load |\n\
         |---|---|---|---|---|\n",
        loss_len.as_secs()
    );
    for (name, r) in [
        ("hb 1/10 ms (IP only)", hb_loss),
        ("keepalived 10 ms", ka_loss),
    ] {
        let _ = writeln!(
            body,
            "| {name} | {} | {} | {} | {:.1} |",
            r.deaths, r.takeovers, r.disturbed, r.load
        );
    }
    let _ = write!(
        body,
        "\n| impl | kills | outage ms median / p90 / max | detection ms median / max | failed |\n\
         |---|---|---|---|---|\n"
    );
    for (name, t) in [("hb 1/10 ms (IP only)", hb), ("keepalived 10 ms", ka)] {
        let o = Summary::of(&t.outage);
        let d = Summary::of(&t.detect);
        let _ = writeln!(
            body,
            "| {name} | {} | {} | {} | {} |",
            t.outage.len(),
            o.map_or("-".into(), |s| format!(
                "{:.1} / {:.1} / {:.1}",
                s.median, s.p90, s.max
            )),
            d.map_or("-".into(), |s| format!("{:.1} / {:.1}", s.median, s.max)),
            t.failed.len()
        );
    }
    let hb_median = Summary::of(&hb.outage).map(|s| s.median);
    let quiet = windows.first();
    let _ = write!(
        body,
        "\nTargets (issue 20): kill outage median <= 15 ms: **{}**; 0 false deaths and 0 failed \
         probes at 20% loss: **{}**; send jitter p99.9 <= 1 ms on a quiet machine: **{}** (the \
         first window runs on the machine as it is: quiet only when the load column says so); \
         hbd CPU <= 3% of a core on both nodes (the first window): **{}**.\n",
        hb_median.map_or("not measured", |m| verdict(m <= 15.0)),
        verdict(hb_loss.deaths == 0 && hb_loss.takeovers == 0 && hb_loss.disturbed == 0),
        quiet.map_or("not measured".to_owned(), |w| {
            let v = verdict(w.jitter_p999_ms.iter().all(|j| *j <= 1.0));
            let mut v = if w.load < QUIET_LOAD {
                v.to_owned()
            } else {
                format!("{v} at load {:.1}, not a quiet machine", w.load)
            };
            let _ = write!(
                v,
                "; its wake-up part p99.9 {} ms",
                pair(&w.wakeup_p999_ms, 3)
            );
            if let Some(f) = &w.floor {
                let _ = write!(
                    v,
                    "; the machine's floor before it: p99.9 {:.3} ms",
                    f.p999_ms
                );
            }
            v
        }),
        quiet.map_or("not measured".to_owned(), |w| {
            let mut v = verdict(w.cpu_percent.iter().all(|c| *c <= 3.0)).to_owned();
            if let Some(f) = &w.floor {
                let _ = write!(
                    v,
                    "; the wake-ups alone cost {:.1}% of a core here",
                    f.cpu_percent
                );
            }
            v
        }),
    );
    body
}
