//! `cargo xtask lab up|down|status` and the two-node failover demo of `cargo xtask run`,
//! built on the lab library `hb_tests::lab`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use hb_tests::lab::{
    self, Lab, LabSpec, Node,
    probe::{ArpWatch, OwnerSampler, ProbeConfig, Prober},
    timeline::{self, Move, Timeline},
};

use crate::bootstrap::step;

/// The daemon's binaries, where built.
#[derive(Debug, Clone, Default)]
pub struct Binaries {
    /// `target/release/hbd`.
    pub hbd: Option<PathBuf>,
    /// `target/release/hbctl`.
    pub hbctl: Option<PathBuf>,
    /// `target/release/hbstat`.
    pub hbstat: Option<PathBuf>,
}

impl Binaries {
    /// The release binaries under `root/target/release` that exist.
    pub fn find(root: &Path) -> Self {
        let bin = |name: &str| {
            let p = root.join("target/release").join(name);
            p.is_file().then_some(p)
        };
        Self {
            hbd: bin("hbd"),
            hbctl: bin("hbctl"),
            hbstat: bin("hbstat"),
        }
    }

    fn spec(&self, with_hbd: bool) -> LabSpec {
        let mut spec = LabSpec::xtask();
        if with_hbd {
            spec.hbd_path = self.hbd.clone();
        }
        spec.hbctl_path = self.hbctl.clone();
        spec.hbstat_path = self.hbstat.clone();
        spec
    }
}

/// `cargo xtask lab up`: builds the lab (cleaning leftovers first), starts hbd on both nodes
/// when built, and leaves it running.
pub fn lab_up(bins: &Binaries) -> Result<()> {
    if bins.hbd.is_none() {
        step("target/release/hbd is not built: the lab comes up without daemons");
    }
    let mut lab = Lab::up(bins.spec(true))?;
    print!("{}", lab.status());
    let rec = lab.detach()?;
    println!(
        "lab left running (files in {}); `cargo xtask lab down` removes it",
        rec.dir.display()
    );
    Ok(())
}

/// `cargo xtask lab down`: removes everything the lab made.
pub fn lab_down() -> Result<()> {
    let removed = lab::cleanup("")?;
    if removed.is_empty() {
        println!("no lab to remove");
    }
    for r in removed {
        println!("{r}");
    }
    Ok(())
}

/// `cargo xtask lab status`.
pub fn lab_status() -> Result<()> {
    match lab::recorded_status("")? {
        Some(s) => print!("{s}"),
        None => println!("no lab is up (`cargo xtask lab up` makes one)"),
    }
    Ok(())
}

fn log_tail(lab: &Lab, node: Node, lines: usize) -> String {
    let path = lab.log_path(node);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n    ");
    format!("  {} (last {lines} lines):\n    {tail}", path.display())
}

fn wait_served(
    lab: &Lab,
    prober: &Prober,
    node: Node,
    after_ns: u64,
    timeout: Duration,
) -> Result<u64> {
    let end = Instant::now() + timeout;
    loop {
        crate::interrupt::check()?;
        if let Some(at) = prober.snapshot().first_served_by(node, after_ns) {
            return Ok(at);
        }
        if Instant::now() >= end {
            let last = prober
                .snapshot()
                .last()
                .map(|s| format!("{:?}", s.outcome))
                .unwrap_or_else(|| "no probe yet".into());
            bail!(
                "{node} did not answer on the VIP within {timeout:?} (last probe: {last})\n{}\n{}",
                log_tail(lab, Node::N1, 15),
                log_tail(lab, Node::N2, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Adds, before the first answer, when the client's ARP entry for the VIP moved to `new`.
fn add_client_arp_row(t: &mut Timeline, owners: &OwnerSampler, new: Node) {
    let at = owners.snapshot().first_arp_to(new, t.t0_ns);
    let pos = t
        .rows
        .iter()
        .position(|r| r.label.starts_with("first answer from"))
        .unwrap_or(t.rows.len());
    t.rows.insert(
        pos,
        timeline::Row {
            label: format!("client's ARP entry for the VIP points to {new}"),
            at_ns: at,
        },
    );
}

/// In the by-hand demo the lab's own steps stand in for hbd's log lines.
fn fill_by_hand(t: &mut Timeline, new: Node, m: &lab::ManualMove) {
    for row in &mut t.rows {
        let by_hand = if row.label == format!("VIP added on {new}") {
            Some(m.vip_added)
        } else if row.label == "first gratuitous ARP" {
            Some(m.garp)
        } else {
            None
        };
        match (row.at_ns, by_hand) {
            (None, Some(at)) => {
                row.at_ns = Some(at);
                row.label += " (by hand)";
            }
            (None, None) => row.label += " (no hbd in a by-hand run)",
            _ => {}
        }
    }
    t.row(
        format!("httpd started on {new} (by hand)"),
        Some(m.httpd_started),
    );
}

/// `cargo xtask run` with no hbd arguments: the two-node failover demo. With `by_hand`, the
/// lab moves the VIP itself where hbd would (to show the lab and the client's view without the
/// daemon). Ctrl-C tears everything down.
pub fn demo(bins: &Binaries, by_hand: bool) -> Result<()> {
    crate::interrupt::install();
    if !by_hand && bins.hbd.is_none() {
        bail!(
            "target/release/hbd was not built; `cargo xtask run --by-hand` runs the demo with \
             the VIP moved by the lab instead of hbd"
        );
    }
    step("bringing the lab up: n1, n2 and a client in network namespaces");
    let mut lab = Lab::up(bins.spec(!by_hand))?;
    let spec = lab.spec().clone();
    let vip = lab.vip();
    println!("{}", lab.status());
    crate::interrupt::check()?;
    if !by_hand {
        for node in Node::ALL {
            if lab.hbd_pid(node).is_none() {
                bail!("hbd is not running on {node}\n{}", log_tail(&lab, node, 20));
            }
        }
    }
    let mut manual = None;
    if by_hand {
        step("by hand: VIP and httpd on n1");
        lab.move_by_hand(None, Node::N1)?;
    }
    let prober = Prober::start(&lab, ProbeConfig::new(vip))?;
    let owners = OwnerSampler::start(&lab, Duration::from_millis(2))?;
    let arp = ArpWatch::start(&lab)?;
    step(&format!(
        "client probing http://{vip}/ every 5 ms (20 ms timeout); waiting for n1 to serve"
    ));
    wait_served(
        &lab,
        &prober,
        Node::N1,
        0,
        spec.initdead + Duration::from_secs(15),
    )?;
    println!("cluster status:\n{}", lab.status());
    if let Some(hbctl) = &spec.hbctl_path {
        for node in Node::ALL {
            let out = lab.hbctl(node, &["status"])?;
            println!(
                "{} status on {node}:\n{}{}",
                hbctl.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    crate::interrupt::sleep(Duration::from_millis(300))?;

    step("killing n1: its links down at once, then SIGKILL of its hbd");
    let t_kill = lab.kill_node(Node::N1)?;
    if by_hand {
        crate::interrupt::sleep(spec.deadtime)?;
        manual = Some(lab.move_by_hand(None, Node::N2)?);
    }
    wait_served(&lab, &prober, Node::N2, t_kill, Duration::from_secs(10))?;
    crate::interrupt::sleep(Duration::from_millis(200))?;
    let n2_log = timeline::read_log(&lab.log_path(Node::N2))?;
    let mut failover = timeline::takeover_timeline(
        &Move {
            title: "failover (ms from n1's kill):",
            t0_ns: t_kill,
            old: Node::N1,
            new: Node::N2,
            vip,
            declared_dead: true,
        },
        &prober.snapshot(),
        &n2_log,
    );
    if let Some(m) = &manual {
        fill_by_hand(&mut failover, Node::N2, m);
    }
    add_client_arp_row(&mut failover, &owners, Node::N2);
    println!("{failover}");

    step("bringing n1 back (links up, hbd started)");
    let t_back = lab.restart_node(Node::N1)?;
    if by_hand {
        crate::interrupt::sleep(spec.initdead)?;
        manual = Some(lab.move_by_hand(Some(Node::N2), Node::N1)?);
    }
    wait_served(
        &lab,
        &prober,
        Node::N1,
        t_back,
        spec.initdead + Duration::from_secs(20),
    )?;
    crate::interrupt::sleep(Duration::from_millis(200))?;
    let n1_log = timeline::read_log(&lab.log_path(Node::N1))?;
    let mut failback = timeline::takeover_timeline(
        &Move {
            title: "failback (ms from n1's restart):",
            t0_ns: t_back,
            old: Node::N2,
            new: Node::N1,
            vip,
            declared_dead: false,
        },
        &prober.snapshot(),
        &n1_log,
    );
    if let Some(m) = &manual {
        fill_by_hand(&mut failback, Node::N1, m);
    }
    add_client_arp_row(&mut failback, &owners, Node::N1);
    println!("{failback}");

    let probes = prober.stop()?;
    let owners = owners.stop()?;
    let arps = arp.stop()?;
    let claims = |n: Node| {
        arps.seen
            .iter()
            .filter(|a| arps.sender(a) == Some(n))
            .count()
    };
    println!(
        "client saw ARP packets claiming the VIP: {} from n1, {} from n2",
        claims(Node::N1),
        claims(Node::N2)
    );
    let dual = owners.dual_owner();
    println!(
        "client: {} probes; VIP owners sampled {} times every 2 ms: {} with both nodes holding it",
        probes.samples.len(),
        owners.samples.len(),
        dual.len()
    );
    match &spec.hbstat_path {
        Some(hbstat) => {
            for node in Node::ALL {
                let out = lab.hbstat(node, &[])?;
                println!(
                    "{} on {node}:\n{}{}",
                    hbstat.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        None => println!("hbstat: not built, no histograms to show"),
    }
    step("tearing the lab down");
    lab.down()?;
    if !dual.is_empty() {
        bail!("both nodes held the VIP at {} sampled moments", dual.len());
    }
    Ok(())
}

/// `cargo xtask run --arbiter`: the same heartbeat partition (both nodes still reach the client
/// network, and so etcd) twice: without an arbiter both nodes take the VIP; with `arbiter etcd`
/// (etcd in the client's namespace, TTL 2 s) only n1 keeps it. Sampled every 2 ms.
pub fn arbiter_demo(bins: &Binaries) -> Result<()> {
    crate::interrupt::install();
    if bins.hbd.is_none() {
        bail!("target/release/hbd was not built");
    }
    let mut results = Vec::new();
    for with in [false, true] {
        let mut spec = bins.spec(true);
        spec.arbiter = with;
        let label = if with {
            "with arbiter etcd (TTL 2 s)"
        } else {
            "without an arbiter"
        };
        step(&format!("{label}: bringing the lab up"));
        let mut lab = Lab::up(spec)?;
        for node in Node::ALL {
            if lab.hbd_pid(node).is_none() {
                bail!("hbd is not running on {node}\n{}", log_tail(&lab, node, 20));
            }
        }
        let end = Instant::now() + Duration::from_secs(20);
        while !lab.holds_vip(Node::N1)? || lab.holds_vip(Node::N2)? {
            if Instant::now() >= end {
                bail!(
                    "the VIP did not settle on n1\n{}",
                    log_tail(&lab, Node::N1, 20)
                );
            }
            crate::interrupt::sleep(Duration::from_millis(20))?;
        }
        // Let the holder's key and lease settle too.
        crate::interrupt::sleep(Duration::from_millis(500))?;
        let owners = OwnerSampler::start(&lab, Duration::from_millis(2))?;
        let t0 = hb_tests::monotonic_ns();
        step(&format!(
            "{label}: heartbeat partition between n1 and n2 for 4 s"
        ));
        lab.partition()?;
        crate::interrupt::sleep(Duration::from_secs(4))?;
        lab.heal()?;
        crate::interrupt::sleep(Duration::from_secs(1))?;
        let log = owners.stop()?;
        let dual = log.dual_owner().len();
        let line = format!(
            "{label}: {dual} of {} samples with both nodes holding {}; VIP now on {}",
            log.samples.len(),
            lab.vip(),
            match (lab.holds_vip(Node::N1)?, lab.holds_vip(Node::N2)?) {
                (true, true) => "both",
                (true, false) => "n1",
                (false, true) => "n2",
                (false, false) => "nobody",
            }
        );
        if let Some(first) = log.dual_owner().first() {
            println!("first dual-owner sample: {}", first.describe(t0));
        }
        if with {
            for node in Node::ALL {
                let out = lab.hbctl(node, &["status"])?;
                println!(
                    "hbctl status on {node}:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
        println!("{line}");
        results.push(line);
        lab.down()?;
    }
    println!("\nsummary:");
    for r in results {
        println!("  {r}");
    }
    Ok(())
}
