//! The scenario suite (issue 7), modelled on Heartbeat's and Pacemaker's cluster test suites:
//! each test brings up its own two-node lab with the real `hbd` (the debug binaries), drives one
//! failure or operator action, and asserts from the client's seat and from the nodes:
//! - exactly one node holds the VIP at the end, and it is the expected one;
//! - the client is served by that node again;
//! - no sampled moment (every 2 ms across both nodes' addresses) outside a partition window in
//!   which both nodes hold the VIP, and no ARP claim for the VIP from the wrong node once the
//!   move settled;
//! - the expected log lines appear (and forbidden ones, like `is dead` when no failover is
//!   expected, do not).
//!
//! Every scenario prints `scenario <name>: client-observed outage <ms> ms`.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hb_tests::{
    lab::{
        Lab, LabSpec, Node, ResourceBehaviour,
        probe::{ArpLog, ArpWatch, Outcome, OwnerLog, OwnerSampler, ProbeConfig, ProbeLog, Prober},
    },
    monotonic_ns, require_root,
};

/// Lab tests in this binary run one at a time (2 cores, tens-of-ms deadlines).
static LAB_LOCK: Mutex<()> = Mutex::new(());

const LOG_WAIT: Duration = Duration::from_secs(10);

/// The debug binaries next to the test executable (`target/debug/deps/..`).
fn debug_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test executable has no target dir")?;
    let p = dir.join(name);
    if !p.is_file() {
        bail!("{} is not built", p.display());
    }
    Ok(p)
}

fn spec() -> Result<LabSpec> {
    let mut spec = LabSpec::unique();
    spec.hbd_path = Some(debug_bin("hbd")?);
    spec.hbctl_path = Some(debug_bin("hbctl")?);
    spec.hbstat_path = Some(debug_bin("hbstat")?);
    Ok(spec)
}

fn log_tail(lab: &Lab, node: Node, lines: usize) -> String {
    let text = fs::read_to_string(lab.log_path(node)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- {node} hbd.log (last {lines} lines):\n{}",
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// hbd processes a scenario started itself (both at once), killed on drop.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running scenario: the lab, the client's prober, the dual-owner sampler and the client's
/// ARP watch. Field order is drop order: watchers stop before the lab goes down.
struct Scenario {
    name: &'static str,
    prober: Option<Prober>,
    owners: Option<OwnerSampler>,
    arp: Option<ArpWatch>,
    daemons: Daemons,
    lab: Lab,
    /// When the watchers started.
    t0: u64,
    _guard: MutexGuard<'static, ()>,
}

/// What a scenario expects at its end.
struct Expect {
    /// The node that holds the VIP at the end and serves the client.
    owner: Node,
    /// A move the scenario caused: (old owner, new owner, time of the cause); its outage is the
    /// client-observed outage. Without one, the outage is the longest gap in answers after
    /// `since`.
    moved: Option<(Node, Node, u64)>,
    /// Time the scenario's disturbance began.
    since: u64,
    /// A window in which both nodes may hold the VIP, and why (a partition until the loser
    /// released).
    dual_window: Option<DualWindow>,
    /// Log lines that must appear: (node, text, not before).
    logs: Vec<(Node, String, u64)>,
    /// Log lines that must not appear: (node, text, not before).
    absent: Vec<(Node, String, u64)>,
    /// Whether the VIP must never have left `owner` (nor reached its peer) after `since`.
    never_moved: bool,
    /// Measure the outage as the longest time without an answer from either node (a partition,
    /// where the client may be served by the other side meanwhile).
    any_node_serves: bool,
}

/// A window in which two owners are expected: `[from_ns, to_ns)`, with the reason printed in
/// every report.
struct DualWindow {
    from_ns: u64,
    to_ns: u64,
    why: String,
}

impl Expect {
    fn new(owner: Node, since: u64) -> Self {
        Self {
            owner,
            moved: None,
            since,
            dual_window: None,
            logs: Vec::new(),
            absent: Vec::new(),
            never_moved: false,
            any_node_serves: false,
        }
    }

    fn log(mut self, node: Node, text: &str, after: u64) -> Self {
        self.logs.push((node, text.to_owned(), after));
        self
    }

    fn no_log(mut self, node: Node, text: &str, after: u64) -> Self {
        self.absent.push((node, text.to_owned(), after));
        self
    }

    /// The scenario moves the group from `from` to `to`, caused at `at` (see [`Expect::moved`]).
    fn moved(mut self, from: Node, to: Node, at: u64) -> Self {
        self.moved = Some((from, to, at));
        self
    }

    /// The VIP never leaves the owner (see [`Expect::never_moved`]).
    fn never_moved(mut self) -> Self {
        self.never_moved = true;
        self
    }
}

/// The longest stretch after `after_ns` from an answered probe (or, before any answer, the
/// first unanswered one) to the next answered one with unanswered (or wrongly answered) probes
/// between; zero when nothing failed.
fn longest_gap(probes: &ProbeLog, ok: impl Fn(&Outcome) -> bool, after_ns: u64) -> Duration {
    let mut last_ok: Option<u64> = None;
    let mut first_bad: Option<u64> = None;
    let mut worst = Duration::ZERO;
    for s in &probes.samples {
        if ok(&s.outcome) {
            if let Some(b) = first_bad {
                let from = last_ok.unwrap_or(b);
                worst = worst.max(Duration::from_nanos(s.at_ns.saturating_sub(from)));
            }
            last_ok = Some(s.at_ns);
            first_bad = None;
        } else if s.at_ns >= after_ns && first_bad.is_none() {
            first_bad = Some(s.at_ns);
        }
    }
    worst
}

impl Scenario {
    /// Brings up a lab (hbd started by the lab on both nodes unless `at_once`, where both are
    /// started here together), starts the client's watchers and waits for n1 to serve. `None`
    /// when not root.
    fn up(
        name: &'static str,
        tweak: impl FnOnce(&mut LabSpec),
        at_once: bool,
    ) -> Result<Option<Self>> {
        if !require_root(name) {
            return Ok(None);
        }
        let guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut spec = spec()?;
        tweak(&mut spec);
        let hbd = spec.hbd_path.clone().context("no hbd")?;
        if at_once {
            spec.hbd_path = None;
        }
        let lab = Lab::up(spec)?;
        let mut daemons = Daemons(Vec::new());
        let t0 = monotonic_ns();
        // The watchers start before the daemons in the at-once case, so they see the start.
        let mut s = Scenario {
            name,
            prober: None,
            owners: None,
            arp: None,
            daemons: Daemons(Vec::new()),
            lab,
            t0,
            _guard: guard,
        };
        s.prober = Some(Prober::start(&s.lab, ProbeConfig::new(s.lab.vip()))?);
        s.owners = Some(OwnerSampler::start(&s.lab, Duration::from_millis(2))?);
        s.arp = Some(ArpWatch::start(&s.lab)?);
        if at_once {
            for node in Node::ALL {
                let log = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(s.lab.log_path(node))?;
                let child = s
                    .lab
                    .node_command(node, &hbd, &s.lab.hbd_args(node))
                    .stdout(Stdio::from(log.try_clone()?))
                    .stderr(Stdio::from(log))
                    .spawn()?;
                daemons.0.push(child);
            }
            s.daemons = daemons;
        } else {
            for node in Node::ALL {
                if s.lab.hbd_pid(node).is_none() {
                    bail!(
                        "hbd is not running on {node}\n{}",
                        log_tail(&s.lab, node, 20)
                    );
                }
            }
        }
        let initdead = s.lab.spec().initdead;
        if s.wait_served(Node::N1, t0, initdead + Duration::from_secs(15))
            .is_none()
        {
            bail!(
                "{name}: n1 never served the client after start\n{}\n{}",
                log_tail(&s.lab, Node::N1, 20),
                log_tail(&s.lab, Node::N2, 20)
            );
        }
        // Let the cluster settle (both nodes up, every link up) before the scenario acts.
        s.sleep(Duration::from_millis(300));
        Ok(Some(s))
    }

    /// What the client's prober recorded so far.
    fn probes(&self) -> ProbeLog {
        self.prober
            .as_ref()
            .map(Prober::snapshot)
            .unwrap_or_default()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn wait_served(&self, node: Node, after_ns: u64, timeout: Duration) -> Option<u64> {
        self.prober
            .as_ref()
            .and_then(|p| p.wait_served_by(node, after_ns, timeout))
    }

    /// Waits for `text` in `node`'s log after `after`, failing with both logs' tails.
    fn must_log(&self, node: Node, text: &str, after: u64) -> Result<u64> {
        match self.lab.wait_log(node, text, after, LOG_WAIT)? {
            Some(l) => Ok(l.mono_ns),
            None => bail!(
                "{}: `{text}` never appeared in {node}'s log\n{}\n{}",
                self.name,
                log_tail(&self.lab, Node::N1, 25),
                log_tail(&self.lab, Node::N2, 25)
            ),
        }
    }

    fn hbctl(&self, node: Node, args: &[&str]) -> Result<()> {
        let out = self.lab.hbctl(node, args)?;
        if !out.status.success() {
            bail!(
                "hbctl {args:?} on {node} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Both nodes' log lines in the second before `at_ns` (and 100 ms after), merged by time:
    /// what led to an unexpected line.
    fn context(&self, at_ns: u64) -> String {
        let mut all: Vec<(u64, Node, String)> = Vec::new();
        for node in Node::ALL {
            for l in self.lab.log(node).unwrap_or_default() {
                if l.mono_ns + 1_000_000_000 >= at_ns && l.mono_ns <= at_ns + 100_000_000 {
                    all.push((l.mono_ns, node, format!("{} {}", l.level, l.message)));
                }
            }
        }
        all.sort_by_key(|(t, _, _)| *t);
        all.iter()
            .map(|(t, n, m)| format!("{:+9.1} ms {n}: {m}", (*t as f64 - at_ns as f64) / 1e6))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `at_ns` as signed ms from the scenario's event (`since`) and from the watchers' start.
    fn when(&self, at_ns: u64, since: u64) -> String {
        let rel = |t0: u64| (at_ns as f64 - t0 as f64) / 1e6;
        format!(
            "{:+.1} ms from the scenario's event ({:+.1} ms from the watchers' start)",
            rel(since),
            rel(self.t0)
        )
    }

    /// Why dual-owner samples are a failure: each of the first few, what the sampler read (which
    /// node held the VIP when), where it lies relative to the scenario's event and to any
    /// allowed window, what the lab did to the nodes before it and up to 100 ms after it (kills,
    /// cables, reboots, moves by hand), and both nodes' log lines around it.
    fn dual_report(&self, dual: &[&hb_tests::lab::probe::OwnerSample], e: &Expect) -> String {
        let mut out = String::new();
        let window = match &e.dual_window {
            Some(w) => format!(
                "allowed window: {} to {} ({})",
                self.when(w.from_ns, e.since),
                self.when(w.to_ns, e.since),
                w.why
            ),
            None => "allowed window: none (no partition in this scenario)".to_owned(),
        };
        out += &window;
        out += "\n";
        for s in dual.iter().take(3) {
            out += &format!(
                "- sample at {}:\n  {}\n  what the lab did around it (ms from the sample):\n",
                self.when(s.at_ns, e.since),
                s.describe(s.at_ns)
            );
            let events = self.lab.events();
            let before: Vec<_> = events
                .iter()
                .filter(|ev| ev.at_ns <= s.last_read_ns() + 100_000_000)
                .collect();
            if before.is_empty() {
                out += "    (nothing)\n";
            }
            for ev in before.iter().rev().take(8).rev() {
                out += &format!(
                    "    {:+9.1} ms  {}\n",
                    (ev.at_ns as f64 - s.at_ns as f64) / 1e6,
                    ev.what
                );
            }
            out += &format!(
                "  both nodes' log lines around it (ms from the sample):\n{}\n",
                self.context(s.at_ns)
            );
        }
        out
    }

    /// [`Scenario::finish`], and the figure it returns (the move's outage, or the longest gap
    /// in answers) must stay under `limit`; `what` names that figure in the failure.
    fn finish_under(self, e: Expect, limit: Duration, what: &str) -> Duration {
        let d = check(self.finish(e));
        assert!(d < limit, "{what} {d:?}");
        d
    }

    /// Runs the common assertions and prints the scenario's figures. Returns the outage.
    fn finish(mut self, e: Expect) -> Result<Duration> {
        let name = self.name;
        let owner = e.owner;
        // The client is served by the expected owner again.
        let served_from = e.moved.map_or(e.since, |m| m.2);
        let Some(served_at) = self.wait_served(owner, served_from, Duration::from_secs(10)) else {
            bail!(
                "{name}: {owner} did not serve the client\n{}\n{}",
                log_tail(&self.lab, Node::N1, 25),
                log_tail(&self.lab, Node::N2, 25)
            );
        };
        for (node, text, after) in &e.logs {
            self.must_log(*node, text, *after)?;
        }
        // Let anything late happen before the final reading.
        self.sleep(Duration::from_millis(300));
        let end = monotonic_ns();
        let probes = self.prober.take().context("prober")?.stop()?;
        let owners: OwnerLog = self.owners.take().context("sampler")?.stop()?;
        let arps: ArpLog = self.arp.take().context("arp watch")?.stop()?;

        // Holders as the sampler sees them: the VIP on an interface that is up and running (a
        // killed node's address on a cable-less interface answers nobody).
        let last = owners.samples.last().context("no owner sample")?;
        let holders: Vec<Node> = Node::ALL.into_iter().filter(|n| last.holds(*n)).collect();
        let logs = || {
            format!(
                "{}\n{}",
                log_tail(&self.lab, Node::N1, 30),
                log_tail(&self.lab, Node::N2, 30)
            )
        };
        if holders != vec![owner] {
            bail!(
                "{name}: VIP holders at the end {holders:?}, expected only {owner}\n{}",
                logs()
            );
        }
        // The client is served by the owner alone at the end: over the final settle window the
        // owner answers and no other node does. A single probe may still time out there (its
        // 20 ms read timeout, `os error 11`, when Apache on this loaded 2-core machine is slow
        // to answer): that is the web server's latency, not a second owner or an outage, so the
        // last *answered* probe is what must name the owner.
        let tail_from = end.saturating_sub(250_000_000);
        let tail: Vec<&Outcome> = probes
            .samples
            .iter()
            .filter(|s| s.at_ns >= tail_from)
            .map(|s| &s.outcome)
            .collect();
        let last_answer = probes.samples.iter().rev().find_map(|s| match s.outcome {
            Outcome::Served(n) => Some(n),
            _ => None,
        });
        let served_tail = tail
            .iter()
            .filter(|o| matches!(o, Outcome::Served(n) if *n == owner))
            .count();
        if last_answer != Some(owner)
            || served_tail == 0
            || tail
                .iter()
                .any(|o| matches!(o, Outcome::Served(n) if *n != owner))
        {
            bail!(
                "{name}: at the end the client was not served by {owner} alone (last answer \
                 {last_answer:?}; {served_tail} of {} probes in the last 250 ms served by \
                 {owner}; last probe {:?})\n{}",
                tail.len(),
                probes.last().map(|s| &s.outcome),
                logs()
            );
        }
        for (node, text, after) in &e.absent {
            if let Some(l) = self
                .lab
                .log(*node)?
                .into_iter()
                .find(|l| l.mono_ns >= *after && l.message.contains(text.as_str()))
            {
                bail!(
                    "{name}: unexpected `{}` on {node}\n{}",
                    l.message,
                    self.context(l.mono_ns)
                );
            }
        }
        // No dual ownership outside the allowed window.
        let (w_from, w_to) = e
            .dual_window
            .as_ref()
            .map_or((u64::MAX, u64::MAX), |w| (w.from_ns, w.to_ns));
        let dual: Vec<_> = owners
            .dual_owner()
            .into_iter()
            .filter(|s| s.at_ns < w_from || s.at_ns >= w_to)
            .collect();
        if !dual.is_empty() {
            bail!(
                "{name}: both nodes held the VIP at {} sampled moments outside a partition\n{}",
                dual.len(),
                self.dual_report(&dual, &e)
            );
        }
        let other = owner.other();
        if e.never_moved {
            if let Some(s) = owners
                .samples
                .iter()
                .find(|s| s.at_ns >= e.since && (!s.holds(owner) || s.holds(other)))
            {
                bail!(
                    "{name}: the VIP moved at {}: {}\n{}",
                    self.when(s.at_ns, e.since),
                    s.describe(e.since),
                    logs()
                );
            }
            if probes.first_served_by(other, e.since).is_some() {
                bail!("{name}: {other} answered the client\n{}", logs());
            }
        }
        // Once the owner serves and any partition is over, only it claims the VIP by ARP.
        let settled = served_at.max(if w_to == u64::MAX { 0 } else { w_to });
        let claimants = arps.claimants(settled, end);
        if claimants.iter().any(|n| *n != owner) {
            bail!(
                "{name}: ARP claims for the VIP from {claimants:?} after it settled on {owner}\n{}",
                logs()
            );
        }
        if owners.samples.is_empty() || probes.samples.is_empty() {
            bail!("{name}: the watchers recorded nothing");
        }
        let outage = match e.moved {
            Some((old, new, at)) => probes
                .outage(old, new, at)
                .map(|o| o.duration())
                .with_context(|| {
                    format!("{name}: no move from {old} to {new} seen by the client")
                })?,
            None if e.any_node_serves => {
                longest_gap(&probes, |o| matches!(o, Outcome::Served(_)), e.since)
            }
            None => longest_gap(&probes, |o| *o == Outcome::Served(owner), e.since),
        };
        let failed = probes
            .samples
            .iter()
            .filter(|s| {
                s.at_ns >= e.since
                    && s.outcome != Outcome::Served(owner)
                    && s.outcome != Outcome::Served(other)
            })
            .count();
        println!(
            "scenario {name}: client-observed outage {:.1} ms",
            ms(outage)
        );
        println!(
            "scenario {name}: {} probes ({failed} unanswered since the event), {} owner samples \
             ({} dual-owner inside the allowed window), {} ARP claims seen by the client",
            probes.samples.len(),
            owners.samples.len(),
            owners.dual_owner().len(),
            arps.seen.len()
        );
        drop(self.daemons);
        Ok(outage)
    }
}

macro_rules! scenario {
    ($name:ident, $tweak:expr, $at_once:expr) => {
        match Scenario::up(stringify!($name), $tweak, $at_once).unwrap() {
            Some(s) => s,
            None => return,
        }
    };
}

/// Fails the test on error, after printing the chain.
fn check<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
fn kill9_and_link_down_of_active() {
    let mut s = scenario!(kill9_and_link_down_of_active, |_| {}, false);
    let t = check(s.lab.kill_node(Node::N1));
    let e = Expect::new(Node::N2, t)
        .log(Node::N2, "node n1: is dead", t)
        .log(Node::N2, "Taking over resource group", t)
        .log(Node::N2, "mach_down takeover complete for node n1.", t)
        .moved(Node::N1, Node::N2, t);
    s.finish_under(e, Duration::from_secs(2), "outage");
}

/// Expectations of a handover at `t` (clean stop or standby of n1): n1 releases, n2 acquires,
/// and, with the httpd script in the group, n2 ran its `status` while n1 was releasing.
fn handover(t: u64, script: bool) -> Expect {
    let mut e = Expect::new(Node::N2, t)
        .log(Node::N1, "Releasing resource group", t)
        .log(Node::N2, "Acquiring resource group", t)
        .moved(Node::N1, Node::N2, t);
    if script {
        e = e.log(
            Node::N2,
            "status before start, run while the peer releases: not running",
            t,
        );
    }
    e
}

fn clean_stop(mut s: Scenario, script: bool) {
    let t = check(s.lab.stop_hbd(Node::N1, Duration::from_secs(10)));
    let e = handover(t, script)
        .log(Node::N1, "Heartbeat shutdown complete.", t)
        .log(Node::N2, "Received shutdown notice from n1.", t);
    s.finish_under(e, Duration::from_secs(2), "outage");
}

#[test]
fn clean_stop_of_active() {
    let s = scenario!(clean_stop_of_active, |_| {}, false);
    clean_stop(s, true);
}

/// The group is the address alone (Apache runs on both nodes): the fastest handover, where the
/// release and the acquisition are closest together.
#[test]
fn clean_stop_of_active_address_only() {
    let s = scenario!(
        clean_stop_of_active_address_only,
        |sp| sp.resource = ResourceBehaviour::IpOnly,
        false
    );
    clean_stop(s, false);
}

#[test]
fn failback_when_active_returns() {
    let mut s = scenario!(failback_when_active_returns, |_| {}, false);
    let t_kill = check(s.lab.kill_node(Node::N1));
    assert!(
        s.wait_served(Node::N2, t_kill, Duration::from_secs(10))
            .is_some(),
        "n2 never took over"
    );
    let failover = s
        .probes()
        .outage(Node::N1, Node::N2, t_kill)
        .map(|o| o.duration());
    println!("scenario failback_when_active_returns: failover outage {failover:?}");
    s.sleep(Duration::from_millis(300));
    let t = check(s.lab.restart_node(Node::N1));
    let e = Expect::new(Node::N1, t)
        .log(Node::N2, "Releasing resource group", t)
        .log(Node::N2, "Resource release completed", t)
        .log(Node::N1, "Acquiring resource group", t)
        .moved(Node::N2, Node::N1, t);
    s.finish_under(e, Duration::from_secs(2), "failback outage");
}

/// `hbctl CMD` on `on` (`standby` on n1, `takeover` on n2) hands the group from n1 to n2
/// without a death: n1 releases, n2 acquires (with the httpd script, `script`: n2 ran its
/// `status` while n1 released).
fn hbctl_hands_the_group_to_n2(s: Scenario, on: Node, cmd: &str, script: bool) {
    let t = monotonic_ns();
    check(s.hbctl(on, &[cmd]));
    let e = handover(t, script)
        .log(on, &format!("HA resources ({cmd})"), t)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t);
    s.finish_under(e, Duration::from_secs(2), "outage");
}

#[test]
fn hbctl_standby_gives_the_group_away() {
    let s = scenario!(hbctl_standby_gives_the_group_away, |_| {}, false);
    hbctl_hands_the_group_to_n2(s, Node::N1, "standby", true);
}

#[test]
fn hbctl_standby_gives_the_address_away() {
    let s = scenario!(
        hbctl_standby_gives_the_address_away,
        |sp| sp.resource = ResourceBehaviour::IpOnly,
        false
    );
    hbctl_hands_the_group_to_n2(s, Node::N1, "standby", false);
}

#[test]
fn hbctl_takeover_takes_the_group() {
    let s = scenario!(hbctl_takeover_takes_the_group, |_| {}, false);
    hbctl_hands_the_group_to_n2(s, Node::N2, "takeover", false);
}

#[test]
fn restart_of_standby_does_not_disturb() {
    let mut s = scenario!(restart_of_standby_does_not_disturb, |_| {}, false);
    let t = check(s.lab.stop_hbd(Node::N2, Duration::from_secs(10)));
    check(s.must_log(Node::N1, "Received shutdown notice from n2.", t));
    s.sleep(Duration::from_millis(300));
    let t_start = monotonic_ns();
    check(s.lab.start_hbd(Node::N2));
    let e = Expect::new(Node::N1, t)
        .log(Node::N1, "Link n2:eth1 up.", t_start)
        .log(Node::N2, "Link n1:eth1 up.", t_start)
        .no_log(Node::N1, "Releasing resource group", t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N2, "is dead", t_start)
        .never_moved();
    // Give the restarted standby time to finish initdead and settle.
    s.sleep(s.lab.spec().initdead + Duration::from_millis(300));
    s.finish_under(e, Duration::from_secs(1), "longest gap in answers");
}

#[test]
fn both_nodes_start_at_once() {
    let s = scenario!(both_nodes_start_at_once, |_| {}, true);
    let t = s.t0;
    let mut e = Expect::new(Node::N1, t)
        .log(Node::N1, "Link n2:eth1 up.", t)
        .log(Node::N2, "Link n1:eth1 up.", t)
        .log(Node::N1, "Acquiring resource group", t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t);
    e.never_moved = false;
    // The outage here is from the first unanswered probe (no daemon yet) to n1's first answer.
    check(s.finish(e));
}

#[test]
fn one_of_two_links_cut_no_failover() {
    let s = scenario!(one_of_two_links_cut_no_failover, |sp| sp.links = 2, false);
    // Times taken before the cable is pulled or plugged: the change takes effect inside the
    // `ip` command, and on a loaded machine hbd may log its effect before `set_link` returns
    // (one run failed waiting for `Link n1:eth2 up.` after a `t_up` taken after the command).
    let t = monotonic_ns();
    check(s.lab.set_link(Node::N1, 2, false));
    check(s.must_log(Node::N2, "Link n1:eth2 dead.", t));
    s.sleep(Duration::from_secs(1));
    let t_up = monotonic_ns();
    check(s.lab.set_link(Node::N1, 2, true));
    let e = Expect::new(Node::N1, t)
        .log(Node::N2, "Link n1:eth2 up.", t_up)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t)
        .no_log(Node::N2, "Taking over", t)
        .never_moved();
    s.finish_under(e, Duration::from_secs(1), "longest gap in answers");
}

#[test]
fn partition_and_heal() {
    let s = scenario!(partition_and_heal, |_| {}, false);
    // Times taken before the iptables calls: a rule takes effect as soon as it is added.
    let t = monotonic_ns();
    check(s.lab.partition());
    check(s.must_log(Node::N2, "node n1: is dead", t));
    check(s.must_log(Node::N2, "Taking over resource group", t));
    check(s.must_log(Node::N2, "Resource acquisition completed", t));
    s.sleep(Duration::from_millis(500));
    let t_heal = monotonic_ns();
    check(s.lab.heal());
    let released = check(s.must_log(Node::N2, "Resource release completed", t_heal));
    // The client must come back to the keeper after the loser released.
    assert!(
        s.wait_served(Node::N1, released, Duration::from_secs(10))
            .is_some(),
        "the client was not served by n1 after n2 released"
    );
    let mut e = Expect::new(Node::N1, t)
        .log(
            Node::N2,
            "Cluster node n1 returning after partition.",
            t_heal,
        )
        .log(
            Node::N1,
            "Cluster node n2 returning after partition.",
            t_heal,
        )
        .log(Node::N2, "Resource group held by this node and n1", t_heal)
        .log(Node::N2, "n1 keeps it", t_heal)
        .log(Node::N2, "Releasing resource group", t_heal)
        .log(Node::N1, "Re-announcing resource group", t_heal)
        .no_log(Node::N1, "Releasing resource group", t);
    // Both hold the VIP from the partition until the loser released (plus one sampler round).
    e.dual_window = Some(DualWindow {
        from_ns: t,
        to_ns: released + 20_000_000,
        why: "partition: both sides may hold the VIP from the cut until n2 logged \
              `Resource release completed` after the heal, plus 20 ms for the sampler's round"
            .to_owned(),
    });
    e.any_node_serves = true;
    s.finish_under(e, Duration::from_secs(2), "longest gap in answers");
}

/// The soak's two owners: the holder's hbd stalls past deadtime (SIGSTOP), the peer declares
/// it dead and starts the group (a slow start: the script waits 1 s before Apache starts), and
/// the holder resumes mid-start, still holding. The peer abandons its start when it hears the
/// holder and removes the VIP at once instead of keeping it beside the holder's until its
/// script is done.
#[test]
fn stalled_holder_resumes_mid_takeover_the_start_is_abandoned() {
    let mut s = scenario!(
        stalled_holder_resumes_mid_takeover_the_start_is_abandoned,
        |_| {},
        false
    );
    check(s.lab.set_slow_start(Node::N2, Some(Duration::from_secs(1))));
    let t = check(
        s.lab
            .signal_hbd(Node::N1, nix::sys::signal::Signal::SIGSTOP),
    );
    let taking = s.must_log(Node::N2, "Taking over resource group", t);
    if taking.is_ok() {
        // Into n2's start: the VIP is up there, the script waits.
        s.sleep(Duration::from_millis(20));
    }
    // Thaw n1 whatever happened, so that a failure does not leave it frozen.
    let t_cont = check(
        s.lab
            .signal_hbd(Node::N1, nix::sys::signal::Signal::SIGCONT),
    );
    check(taking);
    let abandoned = check(s.must_log(
        Node::N2,
        "Resource group start abandoned: n1 is alive and holds",
        t,
    ));
    check(s.must_log(Node::N2, "Resource release completed", abandoned));
    check(s.lab.set_slow_start(Node::N2, None));
    let mut e = Expect::new(Node::N1, t)
        .log(Node::N1, "Re-announcing resource group", t)
        .no_log(Node::N2, "Resource acquisition completed", t)
        .no_log(Node::N1, "Releasing resource group", t);
    // n1 frozen is a partition: both may hold the VIP from the stall until n2 heard n1 again
    // and removed its copy (n1's first heartbeat after the thaw, n2's turn, one netlink call,
    // the 2 ms sampler), with 60 ms for this loaded machine. Before the fix n2 kept it until its
    // 1 s start was done.
    e.dual_window = Some(DualWindow {
        from_ns: t,
        to_ns: t_cont + 60_000_000,
        why: "n1 stalled (SIGSTOP) past deadtime: both may hold the VIP from the stall until \
              60 ms after SIGCONT"
            .to_owned(),
    });
    let gap = check(s.finish(e));
    println!(
        "scenario stalled_holder: start abandoned {:.1} ms after SIGCONT",
        ms(Duration::from_nanos(abandoned.saturating_sub(t_cont)))
    );
    assert!(
        gap < Duration::from_secs(2),
        "longest gap in answers {gap:?}"
    );
}

#[test]
fn flapping_link() {
    let s = scenario!(flapping_link, |sp| sp.links = 2, false);
    let t = monotonic_ns();
    for _ in 0..8 {
        check(s.lab.set_link(Node::N1, 2, false));
        s.sleep(Duration::from_millis(150));
        check(s.lab.set_link(Node::N1, 2, true));
        s.sleep(Duration::from_millis(150));
    }
    let e = Expect::new(Node::N1, t)
        .log(Node::N2, "Link n1:eth2 dead.", t)
        .log(Node::N2, "Link n1:eth2 up.", t)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t)
        .no_log(Node::N2, "Taking over", t)
        .never_moved();
    let flaps = check(s.lab.log(Node::N2))
        .iter()
        .filter(|l| l.mono_ns >= t && l.message.contains("Link n1:eth2 dead."))
        .count();
    println!("scenario flapping_link: n2 logged eth2 dead {flaps} times for 8 cable pulls");
    s.finish_under(e, Duration::from_secs(1), "longest gap in answers");
}

#[test]
fn resource_start_fails_on_the_node_taking_over() {
    let mut s = scenario!(
        resource_start_fails_on_the_node_taking_over,
        |sp| sp.resource = ResourceBehaviour::FailStartOnN2,
        false
    );
    let t = check(s.lab.kill_node(Node::N1));
    check(s.must_log(Node::N2, "node n1: is dead", t));
    check(s.must_log(Node::N2, "Resource group start failed", t));
    // n2 cannot run the group and n1 is down: the core releases it and retries with back-off;
    // the client is never served by n2.
    s.sleep(Duration::from_secs(2));
    let snap = s.probes();
    assert!(
        snap.first_served_by(Node::N2, t).is_none(),
        "n2 served the client with a failed httpd"
    );
    let retries = check(s.lab.log(Node::N2))
        .iter()
        .filter(|l| l.mono_ns >= t && l.message.contains("Resource group start failed"))
        .count();
    println!(
        "scenario resource_start_fails_on_the_node_taking_over: {retries} failed starts on n2 while n1 was down"
    );
    let t_back = check(s.lab.restart_node(Node::N1));
    let mut e = Expect::new(Node::N1, t_back)
        .log(Node::N1, "Acquiring resource group", t_back)
        .log(Node::N1, "Resource acquisition completed", t_back);
    // Outage from n1's death to its return and service (no node could run the group).
    e.moved = Some((Node::N1, Node::N1, t_back));
    let outage = check(s.finish(e));
    println!(
        "scenario resource_start_fails_on_the_node_taking_over: no node served from n1's last \
         answer before the kill until n1 returned: {:.1} ms (n1 was down {:.1} ms of it)",
        ms(outage),
        ms(Duration::from_nanos(t_back.saturating_sub(t)))
    );
}

#[test]
fn heartbeat_loss_20_percent_for_30s_no_failover() {
    // Deadtime of ten keepalives (100 ms at keepalive 10 ms), the setting issue 9's loss target
    // names: at 20% independent loss on each of the two links, both links losing ten heartbeats
    // in a row has a probability of about 1e-7 per heartbeat. At deadtime 50 ms this scenario
    // passed 4 of 6 runs on a loaded development machine; the two failures were a stalled sender
    // (a 530 ms late wake-up), not loss.
    let s = scenario!(
        heartbeat_loss_20_percent_for_30s_no_failover,
        |sp| sp.deadtime = Duration::from_millis(100),
        false
    );
    let t = monotonic_ns();
    for node in Node::ALL {
        check(s.lab.heartbeat_loss(node, 0.2, true));
    }
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        s.sleep(Duration::from_millis(100));
    }
    for node in Node::ALL {
        check(s.lab.heartbeat_loss(node, 0.2, false));
    }
    let late = check(s.lab.log(Node::N2))
        .iter()
        .chain(check(s.lab.log(Node::N1)).iter())
        .filter(|l| l.mono_ns >= t && l.message.contains("Late heartbeat"))
        .count();
    println!(
        "scenario heartbeat_loss_20_percent_for_30s_no_failover: {late} late-heartbeat warnings"
    );
    let e = Expect::new(Node::N1, t)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t)
        .no_log(Node::N2, "Taking over", t)
        .no_log(Node::N1, "Releasing resource group", t)
        .never_moved();
    s.finish_under(e, Duration::from_secs(1), "longest gap in answers");
}

/// `ha.cf` lines for ping nodes in a lab: the client's namespace answers ICMP echo, so it
/// serves as the ping node; ipfail built in through Heartbeat's respawn line.
const DEADPING_MS: u64 = 100;
const SETTLE_MS: u64 = 200;

fn with_ping_node(sp: &mut LabSpec) {
    let client = std::net::Ipv4Addr::new(
        10,
        hb_tests::lab::LAN_OCTET,
        sp.subnet,
        hb_tests::lab::CLIENT_HOST,
    );
    sp.extra_ha_cf.extend([
        format!("ping {client}"),
        format!("deadping {DEADPING_MS}ms"),
        format!("ipfail_settle {SETTLE_MS}ms"),
        "respawn hacluster /usr/libexec/heartbeat/ipfail".to_owned(),
    ]);
}

/// iptables arguments that cut `node` from the ping node (echo requests out, replies in).
fn ping_rules(lab: &Lab) -> [Vec<String>; 2] {
    let c = lab.client_addr().to_string();
    [
        ["OUTPUT", "-p", "icmp", "-d", &c, "-j", "DROP"]
            .map(str::to_owned)
            .to_vec(),
        ["INPUT", "-p", "icmp", "-s", &c, "-j", "DROP"]
            .map(str::to_owned)
            .to_vec(),
    ]
}

fn cut_ping(lab: &Lab, node: Node, cut: bool) -> Result<u64> {
    let t = monotonic_ns();
    for rule in ping_rules(lab) {
        let mut args = vec![if cut { "-A" } else { "-D" }];
        args.extend(rule.iter().map(String::as_str));
        lab.iptables(node, &args)?;
    }
    Ok(t)
}

#[test]
fn ipfail_active_loses_the_ping_node() {
    let s = scenario!(ipfail_active_loses_the_ping_node, with_ping_node, false);
    // hbd was started before the watchers: its start lines are older than `s.t0`.
    let t0 = 0;
    check(s.must_log(Node::N1, "hb: ipfail built in", t0));
    check(s.must_log(Node::N1, "Status update for node", t0));
    check(s.must_log(Node::N2, "Status update for node", t0));
    let status = check(s.lab.hbctl(Node::N1, &["status", "--json"]));
    let json: serde_json::Value =
        check(serde_json::from_slice(&status.stdout).context("hbctl status --json"));
    assert_eq!(json["ping"]["reachable"], 1, "status: {json}");
    assert_eq!(json["ping"]["ipfail"], true, "status: {json}");
    assert_eq!(
        json["nodes"][1]["ping"]["reachable"], 1,
        "n2's count: {json}"
    );

    // Heartbeats keep flowing; only n1's ICMP to the ping node is dropped.
    let t = check(cut_ping(&s.lab, Node::N1, true));
    let gave_up = check(s.must_log(
        Node::N1,
        "Giving up because we have less visible ping nodes.",
        t,
    ));
    let after = Duration::from_nanos(gave_up.saturating_sub(t));
    println!(
        "scenario ipfail_active_loses_the_ping_node: n1 gave up {:.1} ms after the cut \
         (deadping {DEADPING_MS} ms + settle {SETTLE_MS} ms)",
        ms(after)
    );
    // The last reply may have come one ping interval (10 ms) before the cut; allow for a
    // loaded machine's timer on top.
    assert!(
        after >= Duration::from_millis(DEADPING_MS + SETTLE_MS - 20)
            && after <= Duration::from_millis(DEADPING_MS + SETTLE_MS + 250),
        "gave up {after:?} after the cut"
    );
    check(s.must_log(Node::N1, "Delayed giveup in 0.2 seconds.", t));
    check(s.must_log(Node::N1, "Releasing resource group", t));
    let served = s
        .wait_served(Node::N2, t, Duration::from_secs(10))
        .expect("n2 never served after n1 gave up");
    println!(
        "scenario ipfail_active_loses_the_ping_node: n2 served {:.1} ms after the cut",
        ms(Duration::from_nanos(served.saturating_sub(t)))
    );
    let out = check(s.lab.hbctl(Node::N1, &["status"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("yielding"), "hbctl status on n1:\n{text}");
    s.sleep(Duration::from_millis(500));

    // The ping node answers n1 again: balanced for the settle delay, then failback.
    let t_back = check(cut_ping(&s.lab, Node::N1, false));
    let e = Expect::new(Node::N1, t_back)
        .log(Node::N1, "Ping node count is balanced.", t_back)
        .log(Node::N2, "Releasing resource group", t_back)
        .log(Node::N1, "Acquiring resource group", t_back)
        .no_log(Node::N1, "node n2: is dead", t0)
        .no_log(Node::N2, "node n1: is dead", t0)
        .moved(Node::N2, Node::N1, t_back);
    s.finish_under(e, Duration::from_secs(2), "failback outage");
}

#[test]
fn isolated_standby_does_not_acquire() {
    let s = scenario!(isolated_standby_does_not_acquire, with_ping_node, false);
    let t = monotonic_ns();
    // n2 loses everything: every packet in or out of its interfaces (the ping node's echo
    // included), then n1's heartbeats to it (dropped at n1, the sender: XDP on n2 sees them
    // before netfilter). Each iptables call takes milliseconds, so n2 is cut from the ping
    // node first: were the heartbeats cut first, n2 would see the ping node answer after n1
    // went silent and rightly take n1 for dead.
    for l in 1..=s.lab.spec().links {
        let iface = format!("eth{l}");
        for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
            check(
                s.lab
                    .iptables(Node::N2, &["-A", chain, dir, &iface, "-j", "DROP"]),
            );
        }
    }
    check(s.lab.partition());
    check(s.must_log(Node::N2, "node n1: is dead", t));
    check(s.must_log(Node::N2, "Not taking over the resources of n1", t));
    s.sleep(Duration::from_millis(DEADPING_MS + SETTLE_MS + 500));
    let out = check(s.lab.hbctl(Node::N2, &["status"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("Takeover of n1's groups held") && text.contains("(isolated)"),
        "hbctl status on n2:\n{text}"
    );
    let e = Expect::new(Node::N1, t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N2, "Taking over resource group", t)
        .no_log(Node::N1, "Releasing resource group", t)
        .never_moved();
    s.finish_under(e, Duration::from_secs(1), "longest gap in answers");
}

/// A cluster-glue external STONITH plugin written by a test into
/// `/usr/lib/stonith/plugins/external/`, removed on drop. `reset NODE` powers the lab node off
/// as [`Lab::kill_node`] does (its cables pulled at once, its hbd SIGKILLed, its VIP gone), or
/// fails when the plugin is made to fail. Every call is appended to `log`.
struct StonithPlugin {
    path: PathBuf,
    /// The `stonith_host` type (`external/NAME`).
    kind: String,
    log: PathBuf,
}

impl StonithPlugin {
    const DIR: &'static str = "/usr/lib/stonith/plugins/external";

    /// The plugin's name for a lab with namespace prefix `prefix`.
    fn kind_for(prefix: &str, fail: bool) -> String {
        format!(
            "external/hblab-{prefix}-{}",
            if fail { "fail" } else { "poweroff" }
        )
    }

    fn write(lab: &Lab, fail: bool) -> Result<Self> {
        let kind = Self::kind_for(&lab.spec().prefix, fail);
        let name = kind.trim_start_matches("external/");
        let path = PathBuf::from(Self::DIR).join(name);
        let log = lab.node_dir(Node::N1).join("../stonith-plugin.log");
        let mut reset = String::new();
        for node in Node::ALL {
            let mut off = String::new();
            for l in 1..=lab.spec().links {
                off += &format!(
                    "    ip -n {} link set {}-e{l} down\n",
                    lab.bridge_netns(),
                    node.name()
                );
            }
            reset += &format!(
                "  {n})\n{off}    kill -9 \"$(cat {run}/hbd.pid)\"\n    \
                 ip -n {ns} addr del {vip}/24 dev eth1 2>/dev/null\n    exit 0;;\n",
                n = node.name(),
                run = lab.run_dir(node).display(),
                ns = lab.netns(node),
                vip = lab.vip(),
            );
        }
        let fail_block = if fail {
            "echo \"hb lab plugin: this power switch is set to fail\" >&2\n    exit 1\n    "
        } else {
            ""
        };
        let script = format!(
            "#!/bin/sh\n\
             # hb lab STONITH plugin ({kind}): powers a lab node off.\n\
             echo \"$(cut -d' ' -f1 /proc/uptime) $* hostlist=$hostlist\" >> {log}\n\
             case \"$1\" in\n\
             gethosts) for h in $hostlist; do echo \"$h\"; done; exit 0;;\n\
             reset|off)\n    {fail_block}case \"$2\" in\n{reset}  *) exit 1;;\n    esac;;\n\
             on|status) exit 0;;\n\
             getconfignames) echo hostlist; exit 0;;\n\
             getinfo-devid|getinfo-devname) echo \"hb lab power switch\"; exit 0;;\n\
             getinfo-devdescr) echo \"powers hb lab nodes off\"; exit 0;;\n\
             getinfo-devurl) echo \"https://example.invalid/hb-lab\"; exit 0;;\n\
             getinfo-xml) echo \"<parameters/>\"; exit 0;;\n\
             *) exit 1;;\n\
             esac\n",
            log = log.display(),
        );
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(Self { path, kind, log })
    }

    /// `stonith -t TYPE hostlist="n1 n2" -S`: cluster-glue's device check.
    fn check_device(&self) -> Result<()> {
        let out = hb_tests::lab::cmd_status(
            "/usr/sbin/stonith",
            &["-t", &self.kind, "hostlist=n1 n2", "-S"],
        )?;
        if !out.status.success() {
            bail!(
                "stonith -S on {}: {}{}",
                self.kind,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn calls(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StonithPlugin {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `stonith_host` with the lab plugin, and a 2 s `fence_delay` (n2 waits 2 s, n1 none).
fn stonith_spec(fail: bool) -> impl FnOnce(&mut LabSpec) {
    move |spec: &mut LabSpec| {
        let kind = StonithPlugin::kind_for(&spec.prefix, fail);
        spec.extra_ha_cf
            .push(format!("stonith_host * {kind} hostlist=\"n1 n2\""));
        spec.extra_ha_cf.push("fence_delay 2".to_owned());
    }
}

/// cluster-glue's `stonith` is installed by the bootstrap; without it the fencing scenarios
/// cannot run (a failure under CI, a skip with a message otherwise).
fn stonith_available(name: &str) -> bool {
    if std::path::Path::new("/usr/sbin/stonith").is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: /usr/sbin/stonith missing (cluster-glue; cargo xtask bootstrap installs it)"
    );
    eprintln!("{name}: skipped: /usr/sbin/stonith missing (install cluster-glue)");
    false
}

#[test]
fn stonith_heartbeat_only_partition_one_survivor() {
    if !stonith_available("stonith_heartbeat_only_partition_one_survivor") {
        return;
    }
    let mut s = scenario!(
        stonith_heartbeat_only_partition_one_survivor,
        stonith_spec(false),
        false
    );
    let plugin = check(StonithPlugin::write(&s.lab, false));
    check(plugin.check_device());
    // Only the heartbeat path is cut: every heartbeat either node sends is dropped, the LAN
    // (client, VIP, ARP) still works between them.
    let t = monotonic_ns();
    for node in Node::ALL {
        check(s.lab.heartbeat_loss(node, 1.0, true));
    }
    check(s.must_log(Node::N1, "node n2: is dead", t));
    check(s.must_log(Node::N2, "node n1: is dead", t));
    // n1 (first in the node list) fences at once; n2 waits its fence_delay and is off first.
    check(s.must_log(Node::N2, "fencing of node n1 delayed 2000 ms", t));
    check(s.must_log(Node::N1, "Resetting node n2 with [stonith device]", t));
    let reset = check(s.must_log(Node::N1, "node n2 now reset.", t));
    assert!(s.lab.hbd_pid(Node::N2).is_none(), "n2's hbd still runs");
    println!(
        "scenario stonith_heartbeat_only_partition_one_survivor: n2 fenced {:.1} ms after the cut",
        (reset - t) as f64 / 1e6
    );
    // n2 never got to fence n1, nor to take the group.
    s.sleep(Duration::from_millis(2500));
    let calls = plugin.calls();
    assert_eq!(
        calls.lines().filter(|l| l.contains(" reset ")).count(),
        1,
        "one reset only: {calls}"
    );
    assert!(calls.contains(" reset n2"), "{calls}");
    let e = Expect::new(Node::N1, t)
        .no_log(Node::N2, "Resetting node n1", t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N1, "Releasing resource group", t)
        .never_moved();
    check(s.finish(e));
    drop(plugin);
}

#[test]
fn stonith_failing_nobody_takes_over() {
    if !stonith_available("stonith_failing_nobody_takes_over") {
        return;
    }
    let s = scenario!(stonith_failing_nobody_takes_over, stonith_spec(true), false);
    let plugin = check(StonithPlugin::write(&s.lab, true));
    let t = monotonic_ns();
    for node in Node::ALL {
        check(s.lab.heartbeat_loss(node, 1.0, true));
    }
    check(s.must_log(Node::N1, "Failed to STONITH node n2", t));
    check(s.must_log(
        Node::N2,
        "Failed to STONITH node n1 with one of my STONITH devices",
        t,
    ));
    check(s.must_log(Node::N2, "its groups are not taken over; retrying in", t));
    // Retried with back-off (1 s after the first failure, a stonith call takes about 1 s).
    check(s.must_log(
        Node::N1,
        "Resetting node n2 with [stonith device] (attempt 2)",
        t,
    ));
    let t_heal = monotonic_ns();
    for node in Node::ALL {
        check(s.lab.heartbeat_loss(node, 1.0, false));
    }
    check(s.must_log(
        Node::N2,
        "hb: node n1 is alive again: fencing it is abandoned and nothing is taken over",
        t_heal,
    ));
    check(s.must_log(
        Node::N1,
        "hb: node n2 is alive again: fencing it is abandoned",
        t_heal,
    ));
    let calls = plugin.calls();
    assert!(
        calls.contains(" reset n1") && calls.contains(" reset n2"),
        "{calls}"
    );
    let e = Expect::new(Node::N1, t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N2, "Taking over resource group", t)
        .no_log(Node::N1, "Releasing resource group", t)
        .no_log(Node::N1, "now reset.", t)
        .no_log(Node::N2, "now reset.", t)
        .never_moved();
    check(s.finish(e));
    drop(plugin);
}

#[test]
fn haresources_differ_between_nodes_no_dual_owner() {
    let mut s = scenario!(
        haresources_differ_between_nodes_no_dual_owner,
        |_| {},
        false
    );
    // n2 restarts with a second group in its haresources.
    check(s.lab.stop_hbd(Node::N2, Duration::from_secs(10)));
    let hares = s.lab.config_dir(Node::N2).join("haresources");
    let mut text = check(fs::read_to_string(&hares).context("haresources"));
    let other_ip = s.lab.vip().octets();
    text += &format!(
        "n2 IPaddr::{}.{}.{}.{}/24/eth1\n",
        other_ip[0],
        other_ip[1],
        other_ip[2],
        other_ip[3].wrapping_add(1)
    );
    check(fs::write(&hares, text).context("writing haresources"));
    let t = monotonic_ns();
    check(s.lab.start_hbd(Node::N2));
    check(s.must_log(
        Node::N1,
        "haresources mismatch: node n2 has different haresources",
        t,
    ));
    check(s.must_log(
        Node::N2,
        "haresources mismatch: node n1 has different haresources",
        t,
    ));
    s.sleep(Duration::from_millis(1000));
    for node in Node::ALL {
        let out = check(s.lab.hbctl(node, &["status"]));
        let text = String::from_utf8_lossy(&out.stdout);
        let peer = node.other().name();
        assert!(
            text.contains(&format!("haresources mismatch: node {peer}")),
            "hbctl status on {node}:\n{text}"
        );
        let out = check(s.lab.hbctl(node, &["status", "--json"]));
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(json.contains("\"haresources_mismatch\""), "{json}");
    }
    let e = Expect::new(Node::N1, t)
        .no_log(Node::N1, "is dead", t)
        .no_log(Node::N2, "is dead", t)
        .no_log(Node::N2, "Acquiring resource group", t)
        .no_log(Node::N1, "Releasing resource group", t)
        .never_moved();
    check(s.finish(e));
}

#[test]
fn watchdog_fed_not_fed_when_stopped_magic_close() {
    let mut s = scenario!(watchdog_fed_not_fed_when_stopped_magic_close, |_| {}, false);
    // A real softdog would reset this shared machine if a test died between SIGSTOP and
    // SIGCONT (hbd SIGKILLed by the lab's cleanup leaves it armed): a stand-in device is used,
    // a regular file the test reads.
    let softdog = std::path::Path::new("/dev/watchdog").exists();
    println!(
        "watchdog: stand-in device (a regular file){}",
        if softdog {
            "; /dev/watchdog exists but is not used by the test (never risk a reset here)"
        } else {
            "; this kernel has no /dev/watchdog"
        }
    );
    let dev = s.lab.node_dir(Node::N2).join("watchdog");
    check(fs::write(&dev, b"").context("watchdog stand-in"));
    check(s.lab.stop_hbd(Node::N2, Duration::from_secs(10)));
    let ha_cf = s.lab.config_dir(Node::N2).join("ha.cf");
    let mut text = check(fs::read_to_string(&ha_cf).context("ha.cf"));
    let base = text.clone();
    text += &format!("watchdog {}\n", dev.display());
    check(fs::write(&ha_cf, &text).context("ha.cf"));
    let t = monotonic_ns();
    check(s.lab.start_hbd(Node::N2));
    check(s.must_log(Node::N2, "watchdog", t));
    let size = || fs::metadata(&dev).map(|m| m.len()).unwrap_or(0);
    s.sleep(Duration::from_millis(500));
    let fed = size();
    // keepalive 10 ms: a feed every 5-10 ms.
    assert!(fed >= 20, "watchdog fed {fed} times in 0.5 s");
    let pid = s.lab.hbd_pid(Node::N2).expect("n2's hbd runs");
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    check(nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).context("SIGSTOP"));
    s.sleep(Duration::from_millis(50));
    let stopped = size();
    s.sleep(Duration::from_millis(500));
    let still = size();
    check(nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).context("SIGCONT"));
    assert_eq!(stopped, still, "fed while SIGSTOPped");
    s.sleep(Duration::from_millis(300));
    assert!(size() > still + 10, "not fed again after SIGCONT");
    check(s.lab.stop_hbd(Node::N2, Duration::from_secs(10)));
    let bytes = check(fs::read(&dev).context("watchdog"));
    assert_eq!(
        bytes.last(),
        Some(&b'V'),
        "no magic close at the clean stop"
    );
    assert!(bytes[..bytes.len() - 1].iter().all(|b| *b == b'.'));
    println!(
        "watchdog: {} feeds, magic close on SIGTERM, no feed during a 500 ms SIGSTOP",
        bytes.len() - 1
    );
    // A device that cannot be opened: hbd refuses to start, saying why.
    check(fs::write(&ha_cf, format!("{base}watchdog /nonexistent/watchdog\n")).context("ha.cf"));
    let t = monotonic_ns();
    check(s.lab.start_hbd(Node::N2));
    check(s.must_log(
        Node::N2,
        "watchdog /nonexistent/watchdog: cannot open the device",
        t,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.lab.hbd_pid(Node::N2).is_some() && Instant::now() < deadline {
        s.sleep(Duration::from_millis(20));
    }
    assert!(
        s.lab.hbd_pid(Node::N2).is_none(),
        "hbd started without its watchdog"
    );
    check(fs::write(&ha_cf, base).context("ha.cf"));
    check(s.lab.start_hbd(Node::N2));
    let e = Expect::new(Node::N1, t).never_moved();
    check(s.finish(e));
}
