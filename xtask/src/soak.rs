//! `cargo xtask soak`: randomized faults in the two-node lab, modelled on Pacemaker's and
//! Heartbeat's cluster test suites (CTS), each followed by audits.
//!
//! One lab (two nodes, two links, the release `hbd`, Apache as the group's resource) lives for
//! the whole run. Each step picks a fault with the seeded PRNG, carries it out and undoes it,
//! watching the client's view (an HTTP probe of the VIP every 5 ms) and who holds the VIP
//! (sampled every 2 ms in both nodes), then audits:
//! - at most one node holds the VIP outside the step's partition window (a partition, a freeze
//!   longer than deadtime, a burst of heavy heartbeat loss: from the fault until the release
//!   bound after it ends);
//! - the group is owned by exactly one node and serves the client again within the bound
//!   (`recovery bound` below, derived from deadtime; plus initdead after an hbd start);
//! - every hbd that should run still runs and no log says `panicked`;
//! - no ERROR line in either log, except resource failures during the steps that cause them;
//! - each hbd's open descriptors and resident memory do not grow over its life.
//!
//! The seed is printed first; `--seed S` repeats the run step for step (the machine's timing
//! still differs).

use std::{
    collections::BTreeMap,
    fmt, fs,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use hb_proto::sim::Rng;
use hb_tests::{
    lab::{
        Lab, LabSpec, Node, ResourceOp,
        probe::{Outcome, OwnerLog, OwnerSampler, ProbeConfig, ProbeLog, Prober},
        timeline,
    },
    monotonic_ns,
};
use nix::sys::signal::Signal;

use crate::{bootstrap::step, demo::Binaries, interrupt};

/// `cargo xtask soak` options.
#[derive(Debug, Args)]
pub struct SoakOptions {
    /// How long to inject faults (lab set-up and the summary come on top).
    #[arg(long, default_value_t = 9)]
    pub minutes: u64,
    /// PRNG seed (default: from the clock; printed first either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// SIGHUP (reload) to both nodes is one of the faults by default (hbd reloads on SIGHUP);
    /// this flag, which once added it, is kept for scripts and changes nothing.
    #[arg(long, conflicts_with = "no_sighup_reload")]
    pub sighup_reload: bool,
    /// Leave the SIGHUP reload out of the faults.
    #[arg(long)]
    pub no_sighup_reload: bool,
}

/// The run's choices come from the simulation's seeded PRNG.
trait PickNode {
    fn node(&mut self) -> Node;
}

impl PickNode for Rng {
    fn node(&mut self) -> Node {
        if self.below(2) == 0 {
            Node::N1
        } else {
            Node::N2
        }
    }
}

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// kill -9 of hbd and every link down (power off), later a reboot.
    KillNode,
    /// SIGSTOP for less than deadtime, then SIGCONT: no failover.
    FreezeShort,
    /// SIGSTOP for more than deadtime, then SIGCONT.
    FreezeLong,
    /// SIGTERM (clean stop), later a start.
    CleanStop,
    /// `hbctl standby` on the owner.
    Standby,
    /// `hbctl takeover` on the other node.
    Takeover,
    /// The heartbeat-only link (eth2) of one node down for a while: no failover.
    LinkCut,
    /// Every path between the nodes cut, then healed.
    Partition,
    /// 20-50 % of both nodes' heartbeats dropped for a few seconds.
    LossBurst,
    /// The other node's resource script fails to start when it takes over (`hbctl takeover`
    /// there): the group goes back to the owner.
    FailStart,
    /// The owner's resource script fails to stop for a while when the other node takes over:
    /// the owner keeps the group (retrying the stop) until the stop works.
    FailStop,
    /// Both nodes power off and reboot at once.
    RestartBoth,
    /// SIGHUP to both (reload; left out with `--no-sighup-reload`).
    SighupReload,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::KillNode,
        Kind::FreezeShort,
        Kind::FreezeLong,
        Kind::CleanStop,
        Kind::Standby,
        Kind::Takeover,
        Kind::LinkCut,
        Kind::Partition,
        Kind::LossBurst,
        Kind::FailStart,
        Kind::FailStop,
        Kind::RestartBoth,
        Kind::SighupReload,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::KillNode => "kill-9-node",
            Kind::FreezeShort => "sigstop-short",
            Kind::FreezeLong => "sigstop-long",
            Kind::CleanStop => "clean-stop-start",
            Kind::Standby => "hbctl-standby",
            Kind::Takeover => "hbctl-takeover",
            Kind::LinkCut => "link-cut",
            Kind::Partition => "partition-heal",
            Kind::LossBurst => "loss-burst",
            Kind::FailStart => "resource-start-fails",
            Kind::FailStop => "resource-stop-fails",
            Kind::RestartBoth => "restart-both",
            Kind::SighupReload => "sighup-reload",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long the one owner must serve undisturbed before a recovery counts (a failback or a
/// second move that follows at once is waited for).
const STABLE: Duration = Duration::from_millis(500);

/// What one step found.
#[derive(Debug)]
struct StepReport {
    kind: Kind,
    detail: String,
    /// The client's longest time without an answer during the step.
    outage: Option<Duration>,
    failures: Vec<String>,
    /// Both logs during a failed step.
    evidence: String,
}

/// Descriptors and memory of one hbd process at the end of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    step: usize,
    fds: usize,
    /// VmRSS, kB.
    rss: u64,
    /// Resident thread stacks (anonymous `rw-p` mappings of exactly [`THREAD_STACK_KB`]): with
    /// `realtime` (mlockall) each thread's stack is resident in full from its creation, and
    /// glibc keeps the stacks of exited threads for new ones, so these only say how many threads
    /// ever ran at once.
    stacks: u64,
    /// VmRSS less the resident thread stacks, kB: where a leak would show.
    rest: u64,
}

/// The size of a Rust thread's stack mapping (std's default, 2 MiB; tokio's threads too).
const THREAD_STACK_KB: u64 = 2048;

/// The most threads besides the main one an hbd of the soak's set-up runs at once: its own
/// (`hbd-log`, `hb-send`, `hb-agents`, `hb-respawn`, `hb-etcd`), the agents' two tokio workers
/// and their blocking pool (`AGENTS_BLOCKING_THREADS`, 4), and one more for a thread that exits
/// while its successor starts.
const MOST_THREADS: u64 = 12;

/// Descriptors and memory of one hbd process over its life.
#[derive(Debug, Default)]
struct ProcTrack {
    node: Option<Node>,
    samples: Vec<Usage>,
}

/// The soak's state.
struct Soak {
    lab: Lab,
    rng: Rng,
    deadtime: Duration,
    initdead: Duration,
    /// Time from a fault to the group being owned and served again.
    bound: Duration,
    /// Extra time after an hbd start (initdead).
    start_bound: Duration,
    /// Byte offsets of each node's log already audited.
    log_offsets: [u64; 2],
    procs: BTreeMap<u32, ProcTrack>,
    step_no: usize,
    /// Which hbd is in standby (`hbctl standby` until a takeover there or a restart).
    standby: [bool; 2],
    /// SIGHUP reloads so far.
    reloads: u64,
}

fn idx(node: Node) -> usize {
    usize::from(node == Node::N2)
}

/// Accumulates one step's observations.
struct Watch {
    prober: Prober,
    owners: OwnerSampler,
    t0: u64,
    /// Windows in which two owners are allowed: [from, to) in CLOCK_MONOTONIC ns.
    dual_windows: Vec<(u64, u64)>,
    failures: Vec<String>,
    /// Resource failures (and their ERROR lines) are this step's fault.
    resource_errors: bool,
    notes: Vec<String>,
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn since_ms(from_ns: u64, to_ns: u64) -> String {
    ms(Duration::from_nanos(to_ns.saturating_sub(from_ns)))
}

/// Open descriptors, VmRSS and resident thread stacks of `pid` (`/proc/PID/smaps`).
fn proc_usage(pid: u32, step: usize) -> Option<Usage> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let stacks = resident_stacks(&smaps);
    Some(Usage {
        step,
        fds,
        rss,
        stacks,
        rest: rss.saturating_sub(stacks * THREAD_STACK_KB),
    })
}

/// How many anonymous private writable mappings of [`THREAD_STACK_KB`] are resident in full.
fn resident_stacks(smaps: &str) -> u64 {
    let mut n = 0;
    let mut stack_like = false;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let (Some(first), second) = (f.next(), f.next()) else {
            continue;
        };
        if let Some((from, to)) = first.split_once('-')
            && let (Ok(from), Ok(to)) = (u64::from_str_radix(from, 16), u64::from_str_radix(to, 16))
        {
            // `START-END PERMS OFFSET DEV INODE [PATH]`: anonymous mappings have inode 0 and no path.
            let rest: Vec<&str> = f.collect();
            stack_like = second == Some("rw-p")
                && (to - from) / 1024 == THREAD_STACK_KB
                && rest.len() == 3
                && rest[2] == "0";
        } else if stack_like && first == "Rss:" {
            if second.and_then(|v| v.parse::<u64>().ok()) == Some(THREAD_STACK_KB) {
                n += 1;
            }
            stack_like = false;
        }
    }
    n
}

/// Whether a process's descriptors or memory grew over its samples: the last quarter against
/// the first quarter (descriptors: more than 2 above the first quarter's highest; memory less
/// its resident thread stacks: the last quarter's lowest more than 10 % + 2 MiB above the first
/// quarter's highest; thread stacks: more than hbd's most threads at once). Needs 8 samples.
fn growth(samples: &[Usage]) -> Option<String> {
    if samples.len() < 8 {
        return None;
    }
    let q = samples.len() / 4;
    let (first, last) = (&samples[..q], &samples[samples.len() - q..]);
    let fd_first = first.iter().map(|s| s.fds).max()?;
    let fd_last = last.iter().map(|s| s.fds).min()?;
    let rss_first = first.iter().map(|s| s.rest).max()?;
    let rss_last = last.iter().map(|s| s.rest).min()?;
    let stacks = samples.iter().map(|s| s.stacks).max()?;
    let mut out = Vec::new();
    if fd_last > fd_first + 2 {
        out.push(format!(
            "open descriptors grew from {fd_first} to {fd_last}"
        ));
    }
    if rss_last > rss_first + rss_first / 10 + 2048 {
        out.push(format!(
            "resident memory (less thread stacks) grew from {rss_first} kB to {rss_last} kB"
        ));
    }
    if stacks > MOST_THREADS {
        out.push(format!(
            "{stacks} resident thread stacks, more than hbd's {MOST_THREADS} threads at most"
        ));
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// The longest time without an answer from any node in `[from, to)`, counting from the last
/// answer before `from` (or `from` itself).
fn longest_gap(log: &ProbeLog, from: u64, to: u64) -> Option<Duration> {
    let served: Vec<u64> = log
        .samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Served(_)))
        .map(|s| s.at_ns)
        .collect();
    let mut prev = served
        .iter()
        .rev()
        .find(|t| **t < from)
        .copied()
        .unwrap_or(from);
    let mut gap = 0u64;
    let mut any = false;
    for &t in served.iter().filter(|t| **t >= from && **t < to) {
        gap = gap.max(t - prev);
        prev = t;
        any = true;
    }
    any.then(|| Duration::from_nanos(gap))
}

/// p50 and max of `v` (sorted in place).
fn p50_max(v: &mut [Duration]) -> Option<(Duration, Duration)> {
    v.sort();
    Some((v[v.len() / 2], *v.last()?))
}

impl Soak {
    fn holders(log: &OwnerLog) -> Option<Vec<Node>> {
        Some(log.samples.last()?.holders())
    }

    fn watch(&self) -> Result<Watch> {
        let owners = OwnerSampler::start(&self.lab, Duration::from_millis(2))?;
        let prober = Prober::start(&self.lab, ProbeConfig::new(self.lab.vip()))?;
        Ok(Watch {
            prober,
            owners,
            t0: monotonic_ns(),
            dual_windows: Vec::new(),
            failures: Vec::new(),
            resource_errors: false,
            notes: Vec::new(),
        })
    }

    /// Waits until exactly one node holds the VIP, the client's last answer came from it and
    /// it has served since `from`, and that stayed so for [`STABLE`]; `expect` names the node
    /// it must be. Gives up (a failure) `bound` + [`STABLE`] after the call. Returns the owner.
    fn recover(
        &self,
        w: &mut Watch,
        from: u64,
        bound: Duration,
        expect: Option<Node>,
        what: &str,
    ) -> Result<Option<Node>> {
        let deadline = Instant::now() + bound + STABLE;
        let mut stable: Option<(Node, Instant, u64)> = None;
        loop {
            interrupt::check()?;
            let owners = w.owners.snapshot();
            let probes = w.prober.snapshot();
            let last_served = probes.samples.iter().rev().find_map(|s| match s.outcome {
                Outcome::Served(n) => Some(n),
                _ => None,
            });
            let ok = Self::holders(&owners).and_then(|h| match h.as_slice() {
                [o] if expect.is_none_or(|e| e == *o) && last_served == Some(*o) => {
                    probes.first_served_by(*o, from).map(|at| (*o, at))
                }
                _ => None,
            });
            match (ok, stable) {
                (Some((o, _)), Some((s, since, at))) if o == s => {
                    if since.elapsed() >= STABLE {
                        w.notes.push(format!(
                            "{what}: {o} serves after {} ms",
                            since_ms(from, at)
                        ));
                        return Ok(Some(o));
                    }
                }
                (Some((o, at)), _) => stable = Some((o, Instant::now(), at)),
                (None, _) => stable = None,
            }
            if Instant::now() >= deadline {
                let h = Self::holders(&owners).unwrap_or_default();
                let arp = owners.samples.last().and_then(|s| owners.arp_owner(s));
                let last = probes.samples.last().map(|s| format!("{:?}", s.outcome));
                w.failures.push(format!(
                    "{what}: not owned by one node{} serving the client for {} ms within {} ms \
                     (VIP held by {h:?}, client's ARP entry -> {arp:?}, last answer from \
                     {last_served:?}, last probe {last:?})",
                    expect.map(|e| format!(" ({e})")).unwrap_or_default(),
                    ms(STABLE),
                    ms(bound)
                ));
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The one current owner (at the start of a step).
    fn owner(&self, w: &Watch) -> Option<Node> {
        match Self::holders(&w.owners.snapshot())?.as_slice() {
            [o] => Some(*o),
            _ => None,
        }
    }

    /// Ends a step: stops the watchers and runs the audits.
    fn finish(&mut self, kind: Kind, mut w: Watch) -> Result<StepReport> {
        // A moment of quiet after the last action, inside the watch.
        interrupt::sleep(Duration::from_millis(200))?;
        let end = monotonic_ns();
        let owners = w.owners.stop()?;
        let probes = w.prober.stop()?;
        // 1. Never two owners outside the partition windows.
        let dual: Vec<u64> = owners
            .dual_owner_between(w.t0, end)
            .into_iter()
            .map(|s| s.at_ns)
            .filter(|t| !w.dual_windows.iter().any(|(a, b)| t >= a && t < b))
            .collect();
        if let (Some(first), Some(last)) = (dual.first(), dual.last()) {
            w.failures.push(format!(
                "both nodes held the VIP at {} sampled moments outside a partition window \
                 (+{} ms to +{} ms into the step)",
                dual.len(),
                since_ms(w.t0, *first),
                since_ms(w.t0, *last)
            ));
        }
        // 2. hbd runs on both nodes (every step ends with both started) and did not panic;
        // 3. the log audit.
        let mut step_logs = Vec::new();
        for node in Node::ALL {
            if self.lab.hbd_pid(node).is_none() {
                w.failures.push(format!(
                    "hbd on {node} is not running at the end of the step"
                ));
            }
            let path = self.lab.log_path(node);
            let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let i = idx(node);
            let off = (self.log_offsets[i] as usize).min(text.len());
            let new = String::from_utf8_lossy(&text[off..]).into_owned();
            self.log_offsets[i] = text.len() as u64;
            if new.contains("panicked") {
                w.failures
                    .push(format!("hbd on {node} panicked: see {}", path.display()));
            }
            let lines: Vec<&str> = new.lines().collect();
            step_logs.push(format!(
                "--- {node} hbd.log during the step (last 25 lines):\n{}",
                lines[lines.len().saturating_sub(25)..].join("\n")
            ));
            for line in timeline::parse_log(&new) {
                if line.level != "ERROR" {
                    continue;
                }
                let expected = w.resource_errors
                    && [
                        "start failed",
                        "stop failed",
                        "could not stop",
                        // Heartbeat's line for a stop that keeps failing (no fencing: the
                        // group is kept and its stop retried).
                        "Resource STOP failure",
                        "Cannot start",
                    ]
                    .iter()
                    .any(|s| line.message.contains(s));
                if !expected {
                    w.failures
                        .push(format!("unexpected ERROR on {node}: {}", line.message));
                }
            }
        }
        // 4. Descriptors and memory, sampled at the quiet end of each step.
        for node in Node::ALL {
            if let Some(pid) = self.lab.hbd_pid(node)
                && let Some(usage) = proc_usage(pid, self.step_no)
            {
                let t = self.procs.entry(pid).or_default();
                t.node = Some(node);
                t.samples.push(usage);
            }
        }
        let evidence = if w.failures.is_empty() {
            String::new()
        } else {
            step_logs.join("\n")
        };
        Ok(StepReport {
            kind,
            evidence,
            detail: w.notes.join("; "),
            outage: longest_gap(&probes, w.t0, end),
            failures: w.failures,
        })
    }

    /// Puts the lab back to both hbd running, one owner serving; fails if it cannot.
    fn repair(&mut self) -> Result<()> {
        step(
            "soak: repairing the lab (heal, no loss, links up, resource scripts normal, hbd on both)",
        );
        let _ = self.lab.heal();
        for node in Node::ALL {
            let _ = self.lab.heartbeat_loss(node, 0.0, false);
            for l in 1..=self.lab.spec().links {
                let _ = self.lab.set_link(node, l, true);
            }
            let _ = self.lab.signal_hbd(node, Signal::SIGCONT);
            for op in [ResourceOp::Start, ResourceOp::Stop] {
                self.lab.set_resource_fault(node, op, false)?;
            }
        }
        for node in Node::ALL {
            if self.lab.hbd_pid(node).is_none() {
                self.lab.restart_node(node)?;
                self.standby[idx(node)] = false;
            }
        }
        let mut w = self.watch()?;
        let from = monotonic_ns();
        let ok = self.recover(
            &mut w,
            from,
            self.start_bound + Duration::from_secs(10),
            None,
            "repair",
        )?;
        let _ = w.owners.stop();
        let _ = w.prober.stop();
        if ok.is_none() {
            bail!("the lab could not be repaired: {}", w.failures.join("; "));
        }
        Ok(())
    }

    fn step(&mut self, kind: Kind) -> Result<StepReport> {
        let mut w = self.watch()?;
        // Let the watchers see the steady state first.
        interrupt::sleep(Duration::from_millis(100))?;
        let Some(owner) = self.owner(&w) else {
            w.failures
                .push("no single owner at the start of the step".into());
            return self.finish(kind, w);
        };
        let other = owner.other();
        let bound = self.bound;
        let start_bound = self.start_bound;
        match kind {
            Kind::KillNode => {
                let victim = self.rng.node();
                let at = self.lab.kill_node(victim)?;
                w.notes.push(format!("kill -9 {victim} (owner {owner})"));
                let expect = Some(if victim == owner { other } else { owner });
                self.recover(&mut w, at, bound, expect, "after the kill")?;
                interrupt::sleep(
                    self.rng
                        .between(Duration::from_millis(300), Duration::from_secs(2)),
                )?;
                let at = self.lab.restart_node(victim)?;
                self.standby[idx(victim)] = false;
                interrupt::sleep(self.initdead)?;
                self.recover(&mut w, at, start_bound, None, "after the reboot")?;
            }
            Kind::FreezeShort => {
                let victim = self.rng.node();
                let d = self.deadtime * 2 / 5;
                let at = self.lab.signal_hbd(victim, Signal::SIGSTOP)?;
                std::thread::sleep(d);
                self.lab.signal_hbd(victim, Signal::SIGCONT)?;
                w.notes
                    .push(format!("SIGSTOP {victim} for {} ms (owner {owner})", ms(d)));
                interrupt::sleep(self.deadtime * 4)?;
                self.recover(&mut w, at, bound, Some(owner), "after SIGCONT")?;
            }
            Kind::FreezeLong => {
                let victim = self.rng.node();
                let d = self
                    .rng
                    .between(self.deadtime * 3, Duration::from_millis(2000));
                let at = self.lab.signal_hbd(victim, Signal::SIGSTOP)?;
                interrupt::sleep(d)?;
                let cont = self.lab.signal_hbd(victim, Signal::SIGCONT)?;
                w.notes
                    .push(format!("SIGSTOP {victim} for {} ms (owner {owner})", ms(d)));
                // A frozen owner still holds the VIP while its peer takes over: a partition
                // from the peer's view, until the thawed node hears it and releases.
                w.dual_windows.push((at, cont + bound.as_nanos() as u64));
                self.recover(&mut w, cont, bound, None, "after SIGCONT")?;
            }
            Kind::CleanStop => {
                let victim = self.rng.node();
                let at = self.lab.stop_hbd(victim, Duration::from_secs(10))?;
                w.notes.push(format!("SIGTERM {victim} (owner {owner})"));
                let expect = Some(if victim == owner { other } else { owner });
                self.recover(&mut w, at, bound, expect, "after the stop")?;
                interrupt::sleep(
                    self.rng
                        .between(Duration::from_millis(200), Duration::from_secs(1)),
                )?;
                let at = monotonic_ns();
                self.lab.start_hbd(victim)?;
                self.standby[idx(victim)] = false;
                interrupt::sleep(self.initdead)?;
                self.recover(&mut w, at, start_bound, None, "after the start")?;
            }
            Kind::Standby => {
                let at = monotonic_ns();
                self.hbctl(&mut w, owner, &["standby"])?;
                self.standby[idx(owner)] = true;
                // With both nodes in standby neither is preferred for being awake: the
                // haresources node (n1) gets the group, as auto_failback has it.
                let both = self.standby[idx(other)];
                let expect = if both { Node::N1 } else { other };
                w.notes.push(format!(
                    "hbctl standby on {owner}{}",
                    if both { " (both nodes in standby)" } else { "" }
                ));
                self.recover(&mut w, at, bound, Some(expect), "after standby")?;
            }
            Kind::Takeover => {
                let at = monotonic_ns();
                self.hbctl(&mut w, other, &["takeover"])?;
                self.standby[idx(other)] = false;
                w.notes.push(format!("hbctl takeover on {other}"));
                self.recover(&mut w, at, bound, Some(other), "after takeover")?;
            }
            Kind::LinkCut => {
                let victim = self.rng.node();
                let d = self
                    .rng
                    .between(Duration::from_millis(500), Duration::from_secs(3));
                let link = self.lab.spec().links;
                let at = self.lab.set_link(victim, link, false)?;
                interrupt::sleep(d)?;
                self.lab.set_link(victim, link, true)?;
                w.notes.push(format!(
                    "{victim} eth{link} down for {} ms (owner {owner})",
                    ms(d)
                ));
                self.recover(&mut w, at, bound, Some(owner), "with one link cut")?;
                self.absent(&mut w, "is dead", at)?;
            }
            Kind::Partition => {
                let d = self
                    .rng
                    .between(Duration::from_millis(300), Duration::from_secs(3));
                // Rules go in one by one: the partition starts with the first.
                let at = monotonic_ns();
                self.lab.partition()?;
                interrupt::sleep(d)?;
                let healed = self.lab.heal()?;
                w.notes
                    .push(format!("partition for {} ms (owner {owner})", ms(d)));
                w.dual_windows.push((at, healed + bound.as_nanos() as u64));
                self.recover(&mut w, healed, bound, None, "after the heal")?;
            }
            Kind::LossBurst => {
                let pct = 20 + self.rng.below(31);
                let p = pct as f64 / 100.0;
                let d = self
                    .rng
                    .between(Duration::from_secs(2), Duration::from_secs(6));
                let at = monotonic_ns();
                for node in Node::ALL {
                    self.lab.heartbeat_loss(node, p, true)?;
                }
                interrupt::sleep(d)?;
                for node in Node::ALL {
                    self.lab.heartbeat_loss(node, p, false)?;
                }
                let off = monotonic_ns();
                let deaths = self.count_log(&mut w, "is dead", at)?;
                w.notes.push(format!(
                    "{pct}% heartbeat loss for {} ms (owner {owner}): {deaths} peer(s) declared dead",
                    ms(d)
                ));
                // Heavy enough loss is a partition to the failure detector: no heartbeat on
                // any link for deadtime.
                w.dual_windows.push((at, off + bound.as_nanos() as u64));
                self.recover(&mut w, off, bound, None, "after the burst")?;
            }
            Kind::FailStart => {
                w.resource_errors = true;
                self.lab
                    .set_resource_fault(other, ResourceOp::Start, true)?;
                let at = monotonic_ns();
                // takeover clears the other node's standby and failure marks: it asks for the
                // group, the owner releases it, the start fails, the owner takes it back.
                self.hbctl(&mut w, other, &["takeover"])?;
                self.standby[idx(other)] = false;
                w.notes
                    .push(format!("{other}'s start fails, hbctl takeover on {other}"));
                if self
                    .lab
                    .wait_log(other, "Resource group start failed", at, bound)?
                    .is_none()
                {
                    w.failures
                        .push(format!("{other} never reported its failed start"));
                }
                self.recover(&mut w, at, bound, Some(owner), "after the failed start")?;
                self.lab
                    .set_resource_fault(other, ResourceOp::Start, false)?;
                // The failed node is a candidate again once its failure mark expires (at most
                // 16 x deadtime): the group may move then (to it, if the owner is in standby
                // or it is the preferred node). Wait for that inside this step.
                interrupt::sleep(self.deadtime * 16)?;
                let at = monotonic_ns();
                self.recover(&mut w, at, bound, None, "after the failure mark expired")?;
            }
            Kind::FailStop => {
                w.resource_errors = true;
                self.lab.set_resource_fault(owner, ResourceOp::Stop, true)?;
                let at = monotonic_ns();
                self.hbctl(&mut w, other, &["takeover"])?;
                self.standby[idx(other)] = false;
                let d = self
                    .rng
                    .between(Duration::from_millis(300), Duration::from_millis(1500));
                interrupt::sleep(d)?;
                self.lab
                    .set_resource_fault(owner, ResourceOp::Stop, false)?;
                let fixed = monotonic_ns();
                w.notes.push(format!(
                    "{owner}'s stop fails for {} ms during hbctl takeover on {other}",
                    since_ms(at, fixed)
                ));
                // hbd's agent retries a stop (3 attempts) before the group's stop fails: any
                // failed attempt shows the fault was hit.
                if self.count_log(&mut w, "stop failed", at)? == 0 {
                    w.failures
                        .push(format!("{owner} never reported its failed stop"));
                }
                // Stop retries back off up to 16 x deadtime.
                self.recover(
                    &mut w,
                    fixed,
                    bound + self.deadtime * 16,
                    Some(other),
                    "after the stop works again",
                )?;
            }
            Kind::RestartBoth => {
                for node in Node::ALL {
                    self.lab.kill_node(node)?;
                }
                interrupt::sleep(Duration::from_millis(200))?;
                let at = monotonic_ns();
                for node in Node::ALL {
                    self.lab.restart_node(node)?;
                }
                self.standby = [false; 2];
                w.notes.push("both nodes killed and rebooted".into());
                interrupt::sleep(self.initdead)?;
                let expect = self.lab.spec().auto_failback.then_some(Node::N1);
                self.recover(&mut w, at, start_bound + bound, expect, "after the reboot")?;
            }
            Kind::SighupReload => {
                // Every other reload changes `warntime` (30 <-> 40 ms) in both ha.cf files, so
                // that hbd applies a change live, not only reads the same files again.
                let warntime = self.reload_warntime()?;
                let at = monotonic_ns();
                for node in Node::ALL {
                    self.lab.signal_hbd(node, Signal::SIGHUP)?;
                }
                w.notes.push(format!(
                    "SIGHUP to both (owner {owner}, warntime {warntime} ms)"
                ));
                for node in Node::ALL {
                    if self
                        .lab
                        .wait_log(node, "Configuration reloaded.", at, Duration::from_secs(2))?
                        .is_none()
                    {
                        w.failures.push(format!(
                            "{node} did not log `Configuration reloaded.` within 2 s of SIGHUP"
                        ));
                    }
                }
                interrupt::sleep(self.deadtime * 4)?;
                self.recover(&mut w, at, bound, Some(owner), "after the reload")?;
            }
        }
        self.finish(kind, w)
    }

    /// Writes the next `warntime` (30 or 40 ms, alternating) into both nodes' `ha.cf`; returns it.
    fn reload_warntime(&mut self) -> Result<u64> {
        self.reloads += 1;
        let warntime = if self.reloads.is_multiple_of(2) {
            30
        } else {
            40
        };
        for node in Node::ALL {
            let path = self.lab.config_dir(node).join("ha.cf");
            let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
            let new: Vec<String> = text
                .lines()
                .map(|l| {
                    if l.starts_with("warntime ") {
                        format!("warntime {warntime}ms")
                    } else {
                        l.to_owned()
                    }
                })
                .collect();
            fs::write(&path, new.join("\n") + "\n")
                .with_context(|| format!("{}", path.display()))?;
        }
        Ok(warntime)
    }

    fn hbctl(&self, w: &mut Watch, node: Node, args: &[&str]) -> Result<()> {
        let out = self.lab.hbctl(node, args)?;
        if !out.status.success() {
            w.failures.push(format!(
                "hbctl {} on {node} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    fn count_log(&self, _w: &mut Watch, needle: &str, after: u64) -> Result<usize> {
        let mut n = 0;
        for node in Node::ALL {
            n += self
                .lab
                .log(node)?
                .iter()
                .filter(|l| l.mono_ns >= after && l.message.contains(needle))
                .count();
        }
        Ok(n)
    }

    fn absent(&self, w: &mut Watch, needle: &str, after: u64) -> Result<()> {
        let n = self.count_log(w, needle, after)?;
        if n > 0 {
            w.failures
                .push(format!("{n} log line(s) say \"{needle}\" after the fault"));
        }
        Ok(())
    }
}

/// Runs the soak.
pub fn soak(bins: &Binaries, opts: &SoakOptions) -> Result<()> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!(
        "soak: seed {seed} (repeat with: cargo xtask soak --seed {seed} --minutes {})",
        opts.minutes
    );
    let (Some(hbd), Some(hbctl)) = (bins.hbd.clone(), bins.hbctl.clone()) else {
        bail!("target/release/hbd and hbctl are not built");
    };
    interrupt::install();
    let mut spec = LabSpec::unique();
    spec.hbd_path = Some(hbd);
    spec.hbctl_path = Some(hbctl);
    spec.hbstat_path = bins.hbstat.clone();
    let deadtime = spec.deadtime;
    let initdead = spec.initdead;
    // From a fault to the group served again: detection (deadtime), the takeover itself
    // (address, gratuitous ARP, Apache's start of about 100 ms) and this shared machine's
    // scheduling delays.
    let bound = deadtime * 10 + Duration::from_millis(1500);
    let start_bound = initdead + bound;
    step(&format!(
        "soak: lab {} (keepalive {} ms, deadtime {} ms, initdead {} ms, two links, Apache); \
         recovery bound {} ms, {} ms after an hbd start",
        spec.prefix,
        ms(spec.keepalive),
        ms(deadtime),
        ms(initdead),
        ms(bound),
        ms(start_bound)
    ));
    let lab = Lab::up(spec)?;
    let mut soak = Soak {
        lab,
        rng: Rng::new(seed),
        deadtime,
        initdead,
        bound,
        start_bound,
        log_offsets: [0; 2],
        procs: BTreeMap::new(),
        step_no: 0,
        standby: [false; 2],
        reloads: 0,
    };
    for node in Node::ALL {
        if soak.lab.hbd_pid(node).is_none() {
            bail!(
                "hbd did not start on {node}: see {}",
                soak.lab.log_path(node).display()
            );
        }
    }
    soak.repair()?;
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::SighupReload || !opts.no_sighup_reload)
        .collect();
    if opts.no_sighup_reload {
        step("soak: sighup-reload left out (--no-sighup-reload)");
    }
    let started = Instant::now();
    let budget = Duration::from_secs(opts.minutes * 60);
    let mut reports: Vec<StepReport> = Vec::new();
    while started.elapsed() < budget {
        interrupt::check()?;
        soak.step_no += 1;
        let kind = kinds[soak.rng.below(kinds.len() as u64) as usize];
        let r = soak.step(kind)?;
        println!(
            "[soak {:>4}] +{:>6.1}s {:<22} {} | outage {} ms | {}",
            soak.step_no,
            started.elapsed().as_secs_f64(),
            kind.name(),
            r.detail,
            r.outage.map(ms).unwrap_or_else(|| "-".into()),
            if r.failures.is_empty() {
                "audits ok".to_owned()
            } else {
                format!("AUDIT FAILED: {}", r.failures.join("; "))
            }
        );
        let failed = !r.failures.is_empty();
        if failed {
            println!("{}", r.evidence);
        }
        reports.push(r);
        if failed {
            soak.repair()?;
        }
    }
    // Descriptors and memory per hbd process.
    let mut proc_failures = Vec::new();
    println!("\nhbd processes (descriptors, resident memory at the end of each step):");
    for (pid, t) in &soak.procs {
        let (Some(first), Some(last)) = (t.samples.first(), t.samples.last()) else {
            continue;
        };
        let node = t.node.map(Node::name).unwrap_or("?");
        let verdict = growth(&t.samples);
        println!(
            "  {node} pid {pid}: {} steps, fds {} -> {}, rss {} -> {} kB, of which thread \
             stacks {} -> {}{}",
            t.samples.len(),
            first.fds,
            last.fds,
            first.rss,
            last.rss,
            first.stacks,
            last.stacks,
            verdict
                .as_ref()
                .map(|v| format!("  GROWTH: {v}"))
                .unwrap_or_default()
        );
        if let Some(v) = verdict {
            proc_failures.push(format!("{node} pid {pid}: {v}"));
        }
    }
    print_summary(seed, started.elapsed(), &reports, &proc_failures);
    let failed: usize = reports.iter().filter(|r| !r.failures.is_empty()).count();
    if failed > 0 || !proc_failures.is_empty() {
        bail!(
            "soak: {failed} step(s) failed their audits, {} process audit(s) failed (seed {seed})",
            proc_failures.len()
        );
    }
    Ok(())
}

fn print_summary(seed: u64, elapsed: Duration, reports: &[StepReport], proc_failures: &[String]) {
    println!(
        "\nsoak summary: seed {seed}, {} steps in {:.1} min",
        reports.len(),
        elapsed.as_secs_f64() / 60.0
    );
    println!(
        "| {:<22} | {:>6} | {:>15} | {:>15} | {:>14} |",
        "fault", "steps", "outage p50 (ms)", "outage max (ms)", "audit failures"
    );
    println!(
        "|{:-<24}|{:->8}|{:->17}|{:->17}|{:->16}|",
        "", "", "", "", ""
    );
    let mut by_kind: BTreeMap<Kind, Vec<&StepReport>> = BTreeMap::new();
    for r in reports {
        by_kind.entry(r.kind).or_default().push(r);
    }
    for (kind, rs) in &by_kind {
        let mut outages: Vec<Duration> = rs.iter().filter_map(|r| r.outage).collect();
        let (p50, max) = p50_max(&mut outages)
            .map(|(a, b)| (ms(a), ms(b)))
            .unwrap_or(("-".into(), "-".into()));
        let failures = rs.iter().filter(|r| !r.failures.is_empty()).count();
        println!(
            "| {:<22} | {:>6} | {:>15} | {:>15} | {:>14} |",
            kind.name(),
            rs.len(),
            p50,
            max,
            failures
        );
    }
    let total_failures = reports.iter().filter(|r| !r.failures.is_empty()).count();
    println!(
        "| {:<22} | {:>6} | {:>15} | {:>15} | {:>14} |",
        "all",
        reports.len(),
        "",
        "",
        total_failures
    );
    for r in reports.iter().filter(|r| !r.failures.is_empty()) {
        println!("  {}: {}", r.kind, r.failures.join("; "));
    }
    for f in proc_failures {
        println!("  process: {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(step: usize, fds: usize, rest: u64, stacks: u64) -> Usage {
        Usage {
            step,
            fds,
            rss: rest + stacks * THREAD_STACK_KB,
            stacks,
            rest,
        }
    }

    #[test]
    fn growth_needs_a_rise_beyond_noise() {
        let flat: Vec<Usage> = (0..12)
            .map(|i| usage(i, 20, 8000 + (i as u64 % 3) * 100, 7))
            .collect();
        assert_eq!(growth(&flat), None);
        let leaking: Vec<Usage> = (0..12)
            .map(|i| usage(i, 20 + i, 8000 + i as u64 * 1000, 7))
            .collect();
        let v = growth(&leaking).unwrap();
        assert!(v.contains("descriptors") && v.contains("memory"), "{v}");
        assert_eq!(growth(&leaking[..7]), None);
    }

    #[test]
    fn new_thread_stacks_are_not_a_leak_until_too_many() {
        // The soak's 2026-12-02 flag: VmRSS 43.4 -> 50.0 MB in 2 MiB steps, each a thread of
        // the agents' blocking pool whose locked stack glibc kept.
        let more_threads: Vec<Usage> = (0..10)
            .map(|i| usage(i, 31, 30_000, 7 + (i as u64 / 3).min(3)))
            .collect();
        assert_eq!(growth(&more_threads), None);
        let runaway: Vec<Usage> = (0..10)
            .map(|i| usage(i, 31, 30_000, 7 + i as u64))
            .collect();
        assert!(growth(&runaway).unwrap().contains("thread stacks"));
    }

    #[test]
    fn counts_resident_thread_stacks_in_smaps() {
        let smaps = "\
55e65b9b4000-55e65cc07000 rw-p 00000000 00:00 0                          [heap]
Size:              19020 kB
Rss:               18764 kB
7f63b553e000-7f63b553f000 ---p 00000000 00:00 0
Size:                  4 kB
Rss:                   0 kB
7f63b553f000-7f63b573f000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                2048 kB
7f63b533e000-7f63b553e000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                 120 kB
7f63b4b32000-7f63b4d32000 r--s 00001000 00:10 1038                       anon_inode:bpf-map
Size:               2048 kB
Rss:                2048 kB
";
        assert_eq!(resident_stacks(smaps), 1);
    }

    #[test]
    fn same_seed_same_faults() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..20).map(|_| a.below(13)).collect();
        let ys: Vec<u64> = (0..20).map(|_| b.below(13)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().any(|x| *x != xs[0]));
    }
}
