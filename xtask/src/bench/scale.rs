//! The scale benchmark (issue 9): 2, 4, 8 and 16 hb nodes on one shared link; CPU per node and
//! detection time per observer.
//!
//! Topology for prefix `P` (its own; the two-node lab does not fit): namespace `P-br` holds
//! bridge `br0` with ports `p1..pN`; namespaces `P-n1..P-nN` each have one veth `eth1` on it
//! with `10.215.y.k/24 brd +`. Every node runs the release `hbd` (in a UTS namespace whose
//! hostname is the node's name, like the lab), with all N `node` lines and `bcast eth1`: one
//! broadcast heartbeat per keepalive reaches every other node. `haresources` is empty (hb
//! accepts it with the warning "no resource groups: hb will exchange heartbeats but manage no
//! resources"): the benchmark measures membership only. Dropping [`Scale`] kills the daemons,
//! deletes the namespaces (with the bridge and veths) and the temp dir.

use std::{
    fs::{self, File},
    io::Write as _,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hb_tests::{
    Netns,
    lab::timeline::{LogLine, read_log},
    monotonic_ns, unique_name,
};

use super::{
    BenchOptions, Binaries,
    report::{Summary, header, loadavg, machine, ms_between, publish},
};
use crate::bootstrap::step;

/// Second octet of the scale benchmark's subnet (`10.215.y.0/24`).
const SCALE_OCTET: u8 = 215;
/// How long an observer has to log a victim's death before it counts as missed.
const DETECT_TIMEOUT: Duration = Duration::from_secs(2);

/// N nodes on one bridge, each running hbd.
#[derive(Debug)]
struct Scale {
    prefix: String,
    n: usize,
    keepalive: Duration,
    deadtime: Duration,
    initdead: Duration,
    dir: PathBuf,
    bridge: Option<Netns>,
    nodes: Vec<Netns>,
    children: Vec<Option<Child>>,
    hbd: PathBuf,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// `nK`, the name of node `k` (0-based index `k - 1`).
fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

impl Scale {
    /// Builds the topology for `n` nodes and starts hbd on each.
    fn up(n: usize, keepalive: Duration, deadtime: Duration, hbd: &Path) -> Result<Scale> {
        if !(2..=250).contains(&n) {
            bail!("the scale benchmark takes 2 to 250 nodes, not {n}");
        }
        let prefix = unique_name("s");
        let h = prefix
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let subnet = 20 + (h % 200) as u8;
        let mut s = Scale {
            prefix: prefix.clone(),
            n,
            keepalive,
            deadtime,
            initdead: (deadtime * 2).max(Duration::from_millis(500)),
            dir: std::env::temp_dir().join(format!("hb-scale-{prefix}")),
            bridge: None,
            nodes: Vec::new(),
            children: Vec::new(),
            hbd: hbd.to_path_buf(),
        };
        // On any error below, dropping `s` removes what was made so far.
        let br = Netns::named(&format!("{prefix}-br"))?;
        br.ip(&["link", "add", "br0", "type", "bridge"])?;
        br.ip(&["link", "set", "br0", "up"])?;
        s.bridge = Some(br);
        for i in 0..n {
            let ns = Netns::named(&format!("{prefix}-{}", node_name(i)))?;
            s.nodes.push(ns);
            s.children.push(None);
            let port = format!("p{}", i + 1);
            let br = s.bridge()?;
            br.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth1",
                "netns",
                s.nodes[i].name(),
            ])?;
            br.ip(&["link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("10.{SCALE_OCTET}.{subnet}.{}/24", i + 1);
            s.nodes[i].ip(&["addr", "add", &addr, "brd", "+", "dev", "eth1"])?;
            s.nodes[i].ip(&["link", "set", "eth1", "up"])?;
            s.write_files(i, subnet)?;
        }
        for i in 0..n {
            s.start(i)?;
        }
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..n {
            if let Some(c) = &mut s.children[i]
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "hbd on {} exited at once ({status}); see {}",
                    node_name(i),
                    s.log_path(i).display()
                );
            }
        }
        Ok(s)
    }

    fn bridge(&self) -> Result<&Netns> {
        self.bridge.as_ref().context("no bridge namespace")
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(node_name(i))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("hbd.log")
    }

    fn write_files(&self, i: usize, subnet: u8) -> Result<()> {
        let dir = self.node_dir(i);
        let conf = dir.join("ha.d");
        for d in [conf.join("resource.d"), dir.join("state"), dir.join("run")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut ha = format!(
            "# hb scale benchmark, {} nodes on one link\nkeepalive {}\ndeadtime {}\nwarntime {}\ninitdead {}\n\
             udpport 694\nbcast eth1\nauto_failback on\n",
            self.n,
            ms(self.keepalive),
            ms(self.deadtime),
            ms(self.deadtime.mul_f64(0.6).max(self.keepalive * 2)),
            ms(self.initdead),
        );
        for k in 0..self.n {
            ha += &format!("node {}\n", node_name(k));
        }
        ha += "xdp auto\n";
        fs::write(conf.join("ha.cf"), ha)?;
        // No resource groups: membership only.
        fs::write(conf.join("haresources"), "")?;
        let authkeys = conf.join("authkeys");
        let mut f = File::create(&authkeys)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        writeln!(f, "auth 1\n1 sha256 hb-scale-{subnet}-secret")?;
        Ok(())
    }

    /// Starts hbd on node `i` (output appended to its `hbd.log`); returns the time just before.
    fn start(&mut self, i: usize) -> Result<u64> {
        let dir = self.node_dir(i);
        let name = node_name(i);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            self.nodes[i].name(),
            "unshare",
            "--uts",
            "--",
        ])
        .args(["sh", "-c"])
        .arg(format!("hostname {name} && exec \"$0\" \"$@\""))
        .arg(&self.hbd)
        .arg("--foreground")
        .arg("--config-dir")
        .arg(dir.join("ha.d"))
        .args(["--node-name", &name])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C reaches only xtask, which then tears down.
        .process_group(0);
        let at = monotonic_ns();
        let child = c
            .spawn()
            .with_context(|| format!("starting {} on {name}", self.hbd.display()))?;
        self.children[i] = Some(child);
        Ok(at)
    }

    /// hbd's pid on node `i` while it runs (`ip netns exec`, `unshare` and `sh` all exec).
    fn pid(&mut self, i: usize) -> Option<u32> {
        let c = self.children[i].as_mut()?;
        match c.try_wait() {
            Ok(None) => Some(c.id()),
            _ => None,
        }
    }

    /// The node dies: its bridge port down, then SIGKILL of its hbd (as `Cluster::kill`).
    /// Returns the CLOCK_MONOTONIC time just before the link went down.
    fn kill(&mut self, i: usize) -> Result<u64> {
        // As `Cluster::kill`: the instrument's `ip` runs SCHED_FIFO so load cannot delay it.
        let rt = super::cluster::RealtimeGuard::new();
        let at = monotonic_ns();
        let res = self
            .bridge()?
            .ip(&["link", "set", &format!("p{}", i + 1), "down"]);
        drop(rt);
        res?;
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(at)
    }

    /// The node comes back: link up, hbd started. Returns the time just before hbd started.
    fn restart(&mut self, i: usize) -> Result<u64> {
        self.bridge()?
            .ip(&["link", "set", &format!("p{}", i + 1), "up"])?;
        self.start(i)
    }

    fn log(&self, i: usize) -> Result<Vec<LogLine>> {
        read_log(&self.log_path(i))
    }

    /// Waits until every node in `watch` logged `Link nJ:eth1 up.` at or after `after_ns` for
    /// every peer `j` in `of` (other than itself).
    fn wait_up(
        &self,
        watch: &[usize],
        of: &[usize],
        after_ns: u64,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            crate::interrupt::check()?;
            let mut missing = Vec::new();
            for &w in watch {
                let log = self.log(w)?;
                for &j in of.iter().filter(|j| **j != w) {
                    let needle = format!("Link {}:eth1 up.", node_name(j));
                    if !log
                        .iter()
                        .any(|l| l.mono_ns >= after_ns && l.message.contains(&needle))
                    {
                        missing.push(format!("{} does not see {}", node_name(w), node_name(j)));
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "after {timeout:?}: {} (logs in {})",
                    missing.join(", "),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Per observer in `observers`: when it logged `node V: is dead` at or after `after_ns`,
    /// waiting up to [`DETECT_TIMEOUT`] in all.
    fn deaths(
        &self,
        victim: usize,
        observers: &[usize],
        after_ns: u64,
    ) -> Result<Vec<Option<u64>>> {
        let needle = format!("node {}: is dead", node_name(victim));
        let deadline = Instant::now() + DETECT_TIMEOUT;
        let mut seen: Vec<Option<u64>> = vec![None; observers.len()];
        loop {
            crate::interrupt::check()?;
            for (k, &o) in observers.iter().enumerate() {
                if seen[k].is_none() {
                    seen[k] = self
                        .log(o)?
                        .iter()
                        .find(|l| l.mono_ns >= after_ns && l.message.contains(&needle))
                        .map(|l| l.mono_ns);
                }
            }
            if seen.iter().all(Option::is_some) || Instant::now() >= deadline {
                return Ok(seen);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The XDP mode node `i`'s hbd reported (`native`, `generic`, ...), or how it fell back.
    fn xdp_mode(&self, i: usize) -> Result<String> {
        let log = self.log(i)?;
        for l in &log {
            if let Some(rest) = l.message.strip_prefix("xdp auto: attached to eth1 in ") {
                return Ok(rest.trim_end_matches(" mode").to_owned());
            }
            if l.message.starts_with("xdp auto:") {
                return Ok("socket path".into());
            }
        }
        Ok("not logged".into())
    }

    /// Deaths (`is dead` lines, any node) logged between `from_ns` and `to_ns`.
    fn deaths_between(&self, from_ns: u64, to_ns: u64) -> Result<usize> {
        let mut n = 0;
        for i in 0..self.n {
            n += self
                .log(i)?
                .iter()
                .filter(|l| {
                    l.mono_ns >= from_ns && l.mono_ns <= to_ns && l.message.contains(": is dead")
                })
                .count();
        }
        Ok(n)
    }
}

impl Drop for Scale {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Anything else left in the namespaces, then the namespaces themselves.
        for ns in &self.nodes {
            if let Ok(o) = Command::new("ip")
                .args(["netns", "pids", ns.name()])
                .output()
            {
                for pid in String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        self.nodes.clear();
        self.bridge = None;
        // `$HB_BENCH_KEEP_LOGS/<prefix>/nK/hbd.log`, as the two-node labs keep theirs.
        if let Some(dest) = std::env::var_os("HB_BENCH_KEEP_LOGS") {
            let dest = PathBuf::from(dest).join(&self.prefix);
            for i in 0..self.n {
                let d = dest.join(node_name(i));
                let _ = fs::create_dir_all(&d);
                let _ = fs::copy(self.log_path(i), d.join("hbd.log"));
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// CPU time of `pid` in seconds: the sum over its threads of the first field of
/// `/proc/<pid>/task/<tid>/schedstat` (ns on a CPU, exact, where `/proc/<pid>/stat`'s utime and
/// stime count 10 ms ticks). Threads that exited before the reading are not counted (hbd's
/// threads live as long as it does).
pub(super) fn cpu_seconds(pid: u32) -> Result<f64> {
    let mut ns: u64 = 0;
    let dir = format!("/proc/{pid}/task");
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("bad {}", path.display()))?;
    }
    Ok(ns as f64 / 1e9)
}

/// The figures of one node count.
#[derive(Debug, Default)]
struct Row {
    nodes: usize,
    cpu_percent: Vec<f64>,
    cpu_us_per_heartbeat: Vec<f64>,
    detect_ms: Vec<f64>,
    missed: usize,
    expected: usize,
    load: f64,
    xdp: Vec<String>,
    spurious: usize,
    notes: Vec<String>,
}

fn median(v: &[f64]) -> Option<f64> {
    Summary::of(v).map(|s| s.median)
}

fn max(v: &[f64]) -> Option<f64> {
    Summary::of(v).map(|s| s.max)
}

fn one(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

/// Counts of equal strings, `native x4, generic x1`.
fn tally(v: &[String]) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for s in v {
        match seen.iter_mut().find(|(t, _)| t == s) {
            Some((_, c)) => *c += 1,
            None => seen.push((s.clone(), 1)),
        }
    }
    seen.iter()
        .map(|(s, c)| format!("{s} x{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_one(
    n: usize,
    keepalive: Duration,
    deadtime: Duration,
    window: Duration,
    kills: usize,
    hbd: &Path,
) -> Result<Row> {
    let mut row = Row {
        nodes: n,
        ..Row::default()
    };
    let mut s = Scale::up(n, keepalive, deadtime, hbd)?;
    let all: Vec<usize> = (0..n).collect();
    s.wait_up(&all, &all, 0, s.initdead + Duration::from_secs(30))?;
    for i in 0..n {
        row.xdp.push(s.xdp_mode(i)?);
    }
    crate::interrupt::sleep(Duration::from_millis(500))?;

    // 1. CPU over the window.
    let mut pids = Vec::new();
    for i in 0..n {
        pids.push(
            s.pid(i)
                .with_context(|| format!("hbd on {} is not running", node_name(i)))?,
        );
    }
    let before: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_>>()?;
    let from = monotonic_ns();
    let t0 = Instant::now();
    crate::interrupt::sleep(window)?;
    let after: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_>>()?;
    let secs = t0.elapsed().as_secs_f64();
    row.load = loadavg();
    row.spurious = s.deaths_between(from, monotonic_ns())?;
    let hb_per_s = (n - 1) as f64 / keepalive.as_secs_f64();
    for (b, a) in before.iter().zip(&after) {
        let cpu = a - b;
        row.cpu_percent.push(cpu / secs * 100.0);
        row.cpu_us_per_heartbeat.push(cpu * 1e6 / (hb_per_s * secs));
    }
    println!(
        "  {n} nodes: CPU % per node median {} max {}, {} us per heartbeat median; XDP: {}; load {:.1}",
        one(median(&row.cpu_percent), 2),
        one(max(&row.cpu_percent), 2),
        one(median(&row.cpu_us_per_heartbeat), 1),
        tally(&row.xdp),
        row.load
    );
    if row.spurious > 0 {
        row.notes.push(format!(
            "{} `is dead` lines during the {} s CPU window (no fault injected)",
            row.spurious,
            window.as_secs()
        ));
    }

    // 2. Detection: kill a node, every survivor's `is dead` time; bring it back.
    for k in 0..kills {
        crate::interrupt::check()?;
        let victim = k % n;
        let survivors: Vec<usize> = (0..n).filter(|i| *i != victim).collect();
        let t0 = s.kill(victim)?;
        let seen = s.deaths(victim, &survivors, t0)?;
        let mut this = Vec::new();
        for at in &seen {
            match at {
                Some(at) => this.push(ms_between(t0, *at)),
                None => row.missed += 1,
            }
        }
        row.expected += survivors.len();
        println!(
            "  {n} nodes: kill {}/{kills} of {}: {}/{} observers, detection {} ms",
            k + 1,
            node_name(victim),
            this.len(),
            survivors.len(),
            Summary::cells(Summary::of(&this)).replace(" | ", " / ")
        );
        row.detect_ms.extend(this);
        let back = s.restart(victim)?;
        // The victim sees everyone, everyone sees the victim.
        if let Err(e) = s.wait_up(&[victim], &all, back, s.initdead + Duration::from_secs(20)) {
            crate::interrupt::check()?;
            row.notes
                .push(format!("{} did not come back: {e:#}", node_name(victim)));
            break;
        }
        if let Err(e) = s.wait_up(&survivors, &[victim], back, Duration::from_secs(20)) {
            crate::interrupt::check()?;
            row.notes
                .push(format!("{} not seen again: {e:#}", node_name(victim)));
            break;
        }
        crate::interrupt::sleep(Duration::from_millis(300))?;
    }
    drop(s);
    Ok(row)
}

/// The raw figures in the shape the plotting helper reads (`docs/bench/scale.json`).
fn to_json(
    command: &str,
    machine: &str,
    keepalive: Duration,
    deadtime: Duration,
    rows: &[Row],
) -> serde_json::Value {
    serde_json::json!({
        "command": command,
        "machine": machine,
        "keepalive_ms": keepalive.as_millis() as u64,
        "deadtime_ms": deadtime.as_millis() as u64,
        "rows": rows.iter().map(|r| serde_json::json!({
            "nodes": r.nodes,
            "cpu_percent": r.cpu_percent,
            "cpu_us_per_heartbeat": r.cpu_us_per_heartbeat,
            "detect_ms": r.detect_ms,
            "missed": r.missed,
        })).collect::<Vec<_>>(),
    })
}

/// `cargo xtask bench --only scale`.
pub fn scale(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let hbd = bins
        .hbd
        .clone()
        .context("target/release/hbd is not built")?;
    let counts = if !opts.nodes.is_empty() {
        opts.nodes.clone()
    } else if opts.quick {
        vec![2, 4]
    } else {
        vec![2, 4, 8, 16]
    };
    let keepalive = Duration::from_millis(10);
    let deadtime = Duration::from_millis(opts.deadtimes.first().copied().unwrap_or(50));
    if deadtime <= keepalive {
        bail!("deadtime {deadtime:?} must be longer than the 10 ms keepalive");
    }
    let window = Duration::from_secs(if opts.quick { 10 } else { 20 });
    let kills = if opts.quick { 3 } else { 5 };
    let mut rows = Vec::new();
    for n in counts {
        step(&format!(
            "scale: {n} nodes on one link, keepalive {} ms deadtime {} ms: {} s CPU window, {kills} kills",
            keepalive.as_millis(),
            deadtime.as_millis(),
            window.as_secs()
        ));
        rows.push(run_one(n, keepalive, deadtime, window, kills, &hbd)?);
    }

    let ka_ms = keepalive.as_millis();
    let mut body = header(
        opts,
        &format!(
            "N hb nodes on one bridge, one link each, keepalive {ka_ms} ms / deadtime {} ms",
            deadtime.as_millis()
        ),
    );
    body += &format!(
        "\nMethod: one bridge and N node namespaces, each with one veth `eth1` on it \
        (`10.215.y.k/24 brd +`); the release `hbd` on every node with all N `node` lines, \
        `bcast eth1` (one broadcast packet per keepalive reaches every other node, so each node \
        receives (N-1) x {} heartbeats/s), `xdp auto`, `auth 1 sha256`, warntime 0.6 x deadtime, \
        initdead max(2 x deadtime, 500 ms), and an empty `haresources` (hb accepts it: heartbeats \
        and membership only, no resources). Once every node logged `Link nJ:eth1 up.` for every \
        peer: **CPU** = on-CPU time of each hbd (sum of its threads' `/proc/<pid>/task/*/schedstat`, ns) over a {} s window, as % \
        of one core, and per heartbeat received. Then **detection**: {kills} kills rotating the \
        victim (n1, n2, ...): bridge port of the victim down and kill -9 of its hbd (time taken \
        just before, CLOCK_MONOTONIC), and for every surviving node the time to its `node nK: is \
        dead` line; observers that do not log it within 2 s are missed. The victim is brought \
        back (port up, hbd started) and every node must see it up again before the next kill. \
        Raw figures: `docs/bench/scale.json`.\n\n\
        | nodes | heartbeats/s received per node | CPU % per node median / max | CPU us per heartbeat median | detection min / median / p90 / max (ms) | deaths seen / expected | load |\n\
        |---|---|---|---|---|---|---|\n",
        1000 / ka_ms.max(1),
        window.as_secs()
    );
    let mut notes = String::new();
    for r in &rows {
        body += &format!(
            "| {} | {} | {} / {} | {} | {} | {} / {} | {:.1} |\n",
            r.nodes,
            (r.nodes - 1) as u128 * 1000 / ka_ms.max(1),
            one(median(&r.cpu_percent), 2),
            one(max(&r.cpu_percent), 2),
            one(median(&r.cpu_us_per_heartbeat), 1),
            Summary::cells(Summary::of(&r.detect_ms)).replace(" | ", " / "),
            r.detect_ms.len(),
            r.expected,
            r.load
        );
        notes += &format!("- {} nodes: XDP {}\n", r.nodes, tally(&r.xdp));
        for note in &r.notes {
            notes += &format!("- {} nodes: {note}\n", r.nodes);
        }
    }
    body += "\nXDP mode each hbd attached in (`xdp auto: attached to eth1 in ... mode`), and anything \
        unusual:\n\n";
    body += &notes;
    let json = to_json(&opts.command(), &machine(), keepalive, deadtime, &rows);
    publish(
        root,
        opts,
        "Scale: nodes on one link",
        &body,
        ("scale", &json),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_plotting_shape() {
        let rows = vec![Row {
            nodes: 4,
            cpu_percent: vec![1.5, 2.0, 1.0, 1.25],
            cpu_us_per_heartbeat: vec![50.0, 66.5, 33.0, 41.0],
            detect_ms: vec![51.0, 52.5, 60.0],
            missed: 0,
            expected: 3,
            ..Row::default()
        }];
        let v = to_json(
            "cargo xtask bench --only scale",
            "test machine",
            Duration::from_millis(10),
            Duration::from_millis(50),
            &rows,
        );
        let expected = serde_json::json!({
            "command": "cargo xtask bench --only scale",
            "machine": "test machine",
            "keepalive_ms": 10,
            "deadtime_ms": 50,
            "rows": [{
                "nodes": 4,
                "cpu_percent": [1.5, 2.0, 1.0, 1.25],
                "cpu_us_per_heartbeat": [50.0, 66.5, 33.0, 41.0],
                "detect_ms": [51.0, 52.5, 60.0],
                "missed": 0,
            }],
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn tally_counts_in_first_seen_order() {
        let v: Vec<String> = ["native", "generic", "native"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(tally(&v), "native x2, generic x1");
    }

    #[test]
    fn cpu_of_this_process_grows_while_busy() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        let mut after = before;
        while after <= before && Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            after = cpu_seconds(std::process::id()).unwrap();
        }
        assert!(
            after > before,
            "on-CPU time did not grow: {before} -> {after}"
        );
    }
}
