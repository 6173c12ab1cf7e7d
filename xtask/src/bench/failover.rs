//! The failover benchmark: client-observed outage and detection time when n1 is killed
//! (kill -9 and links down), stopped cleanly or put in standby, and the outage of the failback,
//! for hb, hb with the address only, keepalived and Heartbeat 3.0.6.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Result, bail};
use hb_tests::lab::Node;

use super::{
    BenchOptions, Binaries, Which,
    cluster::{self, Cluster, HbOpts, Kind, Timing},
    data,
    report::{Summary, hb_timing, header, ka_timing, loadavg, ms_between, probe_method, publish},
};
use crate::bootstrap::step;

/// Figures of one failover setting.
#[derive(Debug, Default)]
pub(super) struct Trials {
    pub(super) outage: Vec<f64>,
    pub(super) detect: Vec<f64>,
    pub(super) back: Vec<f64>,
    pub(super) failed: Vec<String>,
    pub(super) load: Vec<f64>,
    /// hb clean stop / standby: where the time went, per trial (see [`Handover`]).
    pub(super) handover: Vec<Handover>,
}

/// One hb handover (clean stop or standby) from both nodes' logs (CLOCK_MONOTONIC on both, one
/// host), ms: n1's release (`Releasing resource group` to `Resource release completed`), the
/// notice (n1's release completed to n2's `Acquiring resource group`: the heartbeat that says
/// it, and n2's decision) and n2's acquisition (`Acquiring` to `Resource acquisition
/// completed`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Handover {
    release: f64,
    notice: f64,
    acquire: f64,
    /// The trial's client-observed outage minus release, notice and acquire.
    beyond: f64,
}

impl Handover {
    /// From the logs, after the fault at `t0` that caused `outage`; `None` when a line is
    /// missing.
    fn read(c: &Cluster, t0: u64, outage: f64) -> Result<Option<Handover>> {
        let wait = Duration::from_secs(2);
        let Some(r0) = c.wait_line(Node::N1, "Releasing resource group", t0, wait)? else {
            return Ok(None);
        };
        let Some(r1) = c.wait_line(Node::N1, "Resource release completed", r0, wait)? else {
            return Ok(None);
        };
        let Some(a0) = c.wait_line(Node::N2, "Acquiring resource group", t0, wait)? else {
            return Ok(None);
        };
        let Some(a1) = c.wait_line(Node::N2, "Resource acquisition completed", a0, wait)? else {
            return Ok(None);
        };
        let (release, acquire) = (ms_between(r0, r1), ms_between(a0, a1));
        // Negative if n2 acquired before n1 said its release was complete (never expected).
        let notice = (a0 as f64 - r1 as f64) / 1e6;
        Ok(Some(Handover {
            release,
            notice,
            acquire,
            beyond: outage - (release + notice + acquire),
        }))
    }

    /// `release / notice / acquire` medians of `v`, for the notes under the table.
    fn medians(v: &[Handover]) -> Option<String> {
        let med = |f: fn(&Handover) -> f64| {
            Summary::of(&v.iter().map(f).collect::<Vec<_>>()).map(|s| s.median)
        };
        Some(format!(
            "{:.1} | {:.2} | {:.1} | {:.1}",
            med(|h| h.release)?,
            med(|h| h.notice)?,
            med(|h| h.acquire)?,
            med(|h| h.beyond)?
        ))
    }
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
pub(super) enum Fault {
    /// kill -9 of the daemon and n1's links down; n1 then comes back as after a reboot.
    Kill,
    /// SIGTERM of the daemon (clean stop); then started again.
    Stop,
    /// `hbctl standby` on n1; then `hbctl takeover` on n1.
    Standby,
}

impl Fault {
    pub(super) fn label(self) -> &'static str {
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

/// How long after its start Heartbeat 3.0.6 is not killed in a trial. Once all its child
/// processes run, Heartbeat adds 2 s to its own deadtime for 5 s and announces it to its peers
/// (`hb_add_deadtime(2000)` then `hb_pop_deadtime` after 5000 ms in `heartbeat.c`), which use
/// the announced value: a node killed within 5 s of its start is declared dead ~2.05 s after
/// the kill at deadtime 50 ms. In service a node runs far longer than that before it fails; the
/// trials before this wait measured that start-up window (detection ~2.2 s median) instead of
/// Heartbeat's detector.
const HEARTBEAT_STARTUP_DEADTIME: Duration = Duration::from_secs(6);

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

pub(super) fn run_trials(c: &mut Cluster, fault: Fault, n: usize) -> Result<Trials> {
    let mut t = Trials::default();
    let arp = if std::env::var_os("HB_BENCH_FAILBACK_DEBUG").is_some() {
        Some(hb_tests::lab::probe::ArpWatch::start(&c.lab)?)
    } else {
        None
    };
    let initdead = c.lab.spec().initdead;
    // The lab started n1's daemon before this.
    let mut n1_started = hb_tests::monotonic_ns();
    c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
    for i in 0..n {
        crate::interrupt::check()?;
        crate::interrupt::sleep(settle(c))?;
        if c.kind == Kind::Heartbeat && fault == Fault::Kill {
            let up = Duration::from_nanos(hb_tests::monotonic_ns().saturating_sub(n1_started));
            crate::interrupt::sleep(HEARTBEAT_STARTUP_DEADTIME.saturating_sub(up))?;
        }
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
                let outage = cluster::outage_ms(&c.probes(), Node::N1, Node::N2, t0);
                if let Some(o) = outage {
                    t.outage.push(o);
                }
                if fault == Fault::Kill
                    && let Some(at) = c.declared_dead(Node::N2, t0, Duration::from_secs(2))?
                {
                    t.detect.push(ms_between(t0, at));
                }
                if matches!(c.kind, Kind::Hb(_))
                    && fault != Fault::Kill
                    && let Some(o) = outage
                    && let Some(h) = Handover::read(c, t0, o)?
                {
                    t.handover.push(h);
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
        if fault != Fault::Standby {
            n1_started = t1;
        }
        c.wait_served(Node::N1, t1, initdead + Duration::from_secs(30))?;
        if let Some(o) = cluster::outage_ms(&c.probes(), Node::N2, Node::N1, t1) {
            t.back.push(o);
        }
        if let Some(w) = &arp {
            failback_debug(c, w, t0, t1)?;
        }
        let last = t.outage.last().copied().unwrap_or(f64::NAN);
        let det = t.detect.last().copied().unwrap_or(f64::NAN);
        let split = t
            .handover
            .last()
            .filter(|_| fault != Fault::Kill)
            .map(|h| {
                format!(
                    " (release {:.1}, notice {:.2}, acquire {:.1} ms)",
                    h.release, h.notice, h.acquire
                )
            })
            .unwrap_or_default();
        println!(
            "  {} {}: trial {}/{n}: outage {last:.1} ms{split}, detection {det:.1} ms, load {:.1}",
            c.kind.label(),
            fault.label(),
            i + 1,
            t.load.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(t)
}

pub(super) fn failover(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let n = opts.trials();
    let mut rows = String::new();
    let mut notes = String::new();
    let mut split = String::new();
    let mut headline: Option<(Summary, usize)> = None;
    let mut raw = Vec::new();
    for kind in opts.kinds(Which::Failover) {
        let settings: Vec<(Timing, Vec<Fault>)> = match kind {
            // Both hb set-ups (with Apache as a resource, and the address alone).
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
                if let Some(m) = Handover::medians(&t.handover) {
                    let _ = writeln!(
                        split,
                        "| {} | {} | {} of {} | {m} |",
                        kind.label(),
                        fault.label(),
                        t.handover.len(),
                        t.outage.len()
                    );
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
        then SIGKILL of its HA daemon (Heartbeat 3.0.6 only once it has run for 6 s: it adds 2 s to \
        its announced deadtime for the first 5 s after its start; hbd is frozen with SIGSTOP \
        instead and SIGKILLed when n1 restarts, since both nodes share one kernel and a killed \
        hbd's XDP detach holds its rtnl lock for ~14 ms, which a dead machine never does to its \
        peer); n1 then comes back as after a reboot \
        (no VIP, links up, daemon started) and takes the VIP back (hb `auto_failback on`, keepalived \
        preempt); **back** = the client's outage of that failback. hb runs `haresources` \
        `n1 IPaddr::VIP/24/eth1 httpd` (Apache started at takeover, stopped at release); **hb (IP \
        only)** runs `n1 IPaddr::VIP/24/eth1` with Apache started on both nodes at \
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
    if !split.is_empty() {
        body += "\nWhere an hb handover's time goes (medians, ms, from both nodes' logs): n1's \
            **release** (`Releasing resource group` to `Resource release completed`), the \
            **notice** (n1's release completed to n2's `Acquiring resource group`: the heartbeat \
            that says so and n2's decision) and n2's **acquire** (`Acquiring` to `Resource \
            acquisition completed`, address and gratuitous ARP included); **beyond** = the \
            trial's client-observed outage minus those three (negative: the client was still \
            served during part of the release, until the web server stopped answering). With \
            Apache as a resource, release and acquire are its stop and start plus the address's \
            removal and addition (the IP-only rows' release and acquire); its `status` before \
            `start` runs on n2 while n1 releases, outside acquire.\n\n\
            | impl | fault | trials | release | notice | acquire | beyond |\n\
            |---|---|---|---|---|---|---|\n";
        body += &split;
    }
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
