//! One HA implementation (hb, or keepalived) running in the failover lab, with the client's
//! probes, behind the few operations the benchmarks need: kill a node, bring it back, stop it
//! cleanly, inject heartbeat loss, and read when a node declared its peer dead.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::SocketAddrV4,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hb_tests::{
    lab::{
        Lab, LabSpec, Node, ResourceBehaviour, XdpSetting,
        probe::{Outcome, enter_netns, probe_once},
        timeline,
    },
    monotonic_ns,
};

use super::Binaries;

/// How hb is set up in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbOpts {
    /// The `xdp` directive.
    pub xdp: XdpSetting,
    /// `realtime` (hb's default: on); `false` appends `realtime off` to `ha.cf`.
    pub realtime: bool,
    /// The address only in `haresources`, Apache running on both nodes all the time
    /// ([`ResourceBehaviour::IpOnly`]); otherwise Apache is a resource (`... httpd`).
    pub ip_only: bool,
}

impl HbOpts {
    /// hb as shipped: `xdp auto`, `realtime on`, Apache as a resource.
    pub const DEFAULT: HbOpts = HbOpts {
        xdp: XdpSetting::Auto,
        realtime: true,
        ip_only: false,
    };
    /// `xdp off`.
    pub const XDP_OFF: HbOpts = HbOpts {
        xdp: XdpSetting::Off,
        ..HbOpts::DEFAULT
    };
    /// `realtime off`.
    pub const RT_OFF: HbOpts = HbOpts {
        realtime: false,
        ..HbOpts::DEFAULT
    };
    /// The address only, Apache always running.
    pub const IP_ONLY: HbOpts = HbOpts {
        ip_only: true,
        ..HbOpts::DEFAULT
    };
}

/// Which implementation runs the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// hb's `hbd` set up as `HbOpts` says.
    Hb(HbOpts),
    /// keepalived (VRRPv3, unicast, preempt); the keepalive is its `advert_int`.
    Keepalived,
    /// Linux-HA Heartbeat 3.0.6 (Debian's `heartbeat`), v1 `haresources` mode.
    Heartbeat,
}

impl Kind {
    /// Name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Hb(o) if o == HbOpts::DEFAULT => "hb",
            Kind::Hb(o) if o == HbOpts::XDP_OFF => "hb (xdp off)",
            Kind::Hb(o) if o == HbOpts::RT_OFF => "hb (realtime off)",
            Kind::Hb(o) if o == HbOpts::IP_ONLY => "hb (IP only)",
            Kind::Hb(_) => "hb (other settings)",
            Kind::Keepalived => "keepalived",
            Kind::Heartbeat => "Heartbeat 3.0.6",
        }
    }
}

/// Timings of a cluster: hb's keepalive and deadtime; for keepalived the advert interval (its
/// master-down interval is 3 adverts plus a skew, fixed by the protocol).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// hb `keepalive` / keepalived `advert_int`.
    pub keepalive: Duration,
    /// hb `deadtime` (keepalived: 3 x advert + skew, shown for reference).
    pub deadtime: Duration,
}

impl Timing {
    /// keepalived's master-down interval for the backup's priority 100: 3 x advert + (256 -
    /// 100) / 256 x advert.
    pub fn keepalived_down(advert: Duration) -> Duration {
        advert * 3 + advert.mul_f64(156.0 / 256.0)
    }
}

/// Output lines of a process, each stamped with CLOCK_MONOTONIC when it was read.
#[derive(Debug)]
struct Stamped {
    child: Child,
    lines: Arc<Mutex<Vec<(u64, String)>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Stamped {
    fn spawn(mut cmd: Command, log: PathBuf) -> Result<Stamped> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out: Vec<Box<dyn std::io::Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for stream in out {
            let lines = lines.clone();
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                let mut file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .ok();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let at = monotonic_ns();
                    if let Some(f) = &mut file {
                        use std::io::Write as _;
                        let _ = writeln!(f, "mono={at} {line}");
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push((at, line));
                    }
                }
            }));
        }
        Ok(Stamped {
            child,
            lines,
            readers,
        })
    }

    fn lines(&self) -> Vec<(u64, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn finish(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// A log file followed every 2 ms, each new line stamped with CLOCK_MONOTONIC when read.
#[derive(Debug)]
struct Tail {
    stop: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<(u64, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Tail {
    fn start(path: PathBuf) -> Tail {
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, lines) = (stop.clone(), lines.clone());
            std::thread::spawn(move || {
                let mut pos = 0usize;
                let mut partial = String::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(bytes) = fs::read(&path)
                        && bytes.len() > pos
                    {
                        let at = monotonic_ns();
                        partial += &String::from_utf8_lossy(&bytes[pos..]);
                        pos = bytes.len();
                        while let Some(i) = partial.find('\n') {
                            let line: String = partial.drain(..=i).collect();
                            if let Ok(mut l) = lines.lock() {
                                l.push((at, line.trim_end().to_owned()));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Tail {
            stop,
            lines,
            thread: Some(thread),
        }
    }

    fn lines(&self) -> Vec<(u64, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP probe of the VIP from the client: when it started, when it ended, what it got.
#[derive(Debug, Clone)]
pub struct Probe {
    /// CLOCK_MONOTONIC ns at the start (connect).
    pub start_ns: u64,
    /// CLOCK_MONOTONIC ns when the answer (or the failure) came.
    pub end_ns: u64,
    /// What it got.
    pub outcome: Outcome,
}

/// Client probers: threads in the client's namespace requesting `http://VIP/` on a fixed
/// grid. Prober `i` of `n` starts a probe at `base + i * period / n + k * period` for k = 0, 1,
/// ...: together they start one probe every `period / n` whatever earlier probes are doing, as
/// long as a probe (at most `timeout`, which must be shorter than `period`) ends before its
/// prober's next start. A prober that overran its slot anyway (overloaded machine) starts its
/// next probe at once and then goes on at its next grid slot.
#[derive(Debug)]
struct Probers {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Probe>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Probers {
    fn start(
        ns: &str,
        target: SocketAddrV4,
        n: usize,
        period: Duration,
        timeout: Duration,
    ) -> Result<Probers> {
        if timeout >= period {
            bail!("probe timeout {timeout:?} must be shorter than the period {period:?}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let step = period / u32::try_from(n.max(1))?;
        // Leave time for every thread to enter the namespace before the first slot.
        let base = Instant::now() + Duration::from_millis(5) * u32::try_from(n)? + period;
        for i in 0..n {
            let first = base + step * u32::try_from(i)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, samples, ns) = (stop.clone(), samples.clone(), ns.to_owned());
            threads.push(std::thread::spawn(move || {
                let entered = enter_netns(&ns);
                let ok = entered.is_ok();
                let _ = tx.send(entered.map_err(|e| format!("{e:#}")));
                if !ok {
                    return;
                }
                let mut next = first;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    let start_ns = monotonic_ns();
                    let outcome = probe_once(target, timeout);
                    let end_ns = monotonic_ns();
                    if let Ok(mut v) = samples.lock() {
                        v.push(Probe {
                            start_ns,
                            end_ns,
                            outcome,
                        });
                    }
                    next += period;
                    // Overran the next slot: start at once (above), then back on the grid.
                    let now = Instant::now();
                    if next < now {
                        while next + period < now {
                            next += period;
                        }
                    }
                }
            }));
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("prober {i}: {e}"),
                Err(_) => bail!("prober {i} died"),
            }
        }
        Ok(Probers {
            stop,
            samples,
            threads,
        })
    }

    fn snapshot(&self) -> Vec<Probe> {
        let mut v = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        v.sort_by_key(|p| p.end_ns);
        v
    }
}

impl Drop for Probers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The first answer from `node` that arrived at or after `after_ns` (its arrival time).
pub fn first_answer(probes: &[Probe], node: Node, after_ns: u64) -> Option<u64> {
    probes
        .iter()
        .filter(|p| p.end_ns >= after_ns && p.outcome == Outcome::Served(node))
        .map(|p| p.end_ns)
        .min()
}

/// Client-observed outage of a move from `old` to `new` caused at `event_ns`: arrival of the
/// first answer from `new` after the event minus arrival of the last answer from `old` before
/// that, in ms.
pub fn outage_ms(probes: &[Probe], old: Node, new: Node, event_ns: u64) -> Option<f64> {
    let first_new = first_answer(probes, new, event_ns)?;
    let last_old = probes
        .iter()
        .filter(|p| p.end_ns < first_new && p.outcome == Outcome::Served(old))
        .map(|p| p.end_ns)
        .max()?;
    Some(first_new.saturating_sub(last_old) as f64 / 1e6)
}

/// A cluster in the lab with the client probing the VIP.
#[derive(Debug)]
pub struct Cluster {
    /// The implementation.
    pub kind: Kind,
    /// Its timings.
    pub timing: Timing,
    /// The lab (dropped last: tears everything down).
    pub lab: Lab,
    /// keepalived's processes' output (all of it, over restarts), per node.
    ka_lines: [Vec<(u64, String)>; 2],
    ka: [Option<Stamped>; 2],
    ka_starts: u32,
    /// Heartbeat: per node, the holder of its UTS, mount and IPC namespaces, and its log.
    hb_holders: [Option<Child>; 2],
    hb_tails: [Option<Tail>; 2],
    probers: Option<Probers>,
}

/// How many probers run side by side on a staggered grid ([`Probers`]): 25 probers each every
/// [`PROBE_PERIOD`] start one probe every millisecond, and a probe blocked in its
/// [`PROBE_TIMEOUT`] during an outage never delays the next start.
pub const PROBERS: usize = 25;
/// Time between two probes of one prober.
pub const PROBE_PERIOD: Duration = Duration::from_millis(25);
/// Timeout of one probe (connect, request and answer together).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(20);

/// `n`'s slot in the per-node arrays (the bench runs two-node labs: `n1`, `n2`).
fn idx(n: Node) -> usize {
    n.index()
}

impl Cluster {
    /// Brings the lab up with `links` links and starts `kind` on both nodes, then the client's
    /// probers; does not wait for the VIP to be served.
    pub fn up(kind: Kind, timing: Timing, links: u8, bins: &Binaries) -> Result<Cluster> {
        let mut spec = LabSpec::unique();
        spec.links = links;
        spec.keepalive = timing.keepalive;
        spec.deadtime = timing.deadtime;
        spec.warntime = timing.deadtime.mul_f64(0.6).max(timing.keepalive * 2);
        spec.initdead = (timing.deadtime * 2).max(Duration::from_millis(500));
        spec.hbctl_path = bins.hbctl.clone();
        spec.hbstat_path = bins.hbstat.clone();
        if let Kind::Hb(o) = kind {
            spec.xdp = o.xdp;
            if !o.realtime {
                spec.extra_ha_cf.push("realtime off".into());
            }
            if o.ip_only {
                spec.resource = ResourceBehaviour::IpOnly;
            }
            spec.hbd_path = Some(bins.hbd.clone().context("target/release/hbd not built")?);
        }
        let lab = Lab::up(spec)?;
        let mut c = Cluster {
            kind,
            timing,
            lab,
            ka_lines: [Vec::new(), Vec::new()],
            ka: [None, None],
            ka_starts: 0,
            hb_holders: [None, None],
            hb_tails: [None, None],
            probers: None,
        };
        if kind == Kind::Keepalived {
            for node in Node::ALL {
                // keepalived's way: the web server runs on both nodes, only the address moves.
                let out = c.lab.httpd(node, "start")?;
                if !out.status.success() {
                    bail!("apache on {node}: {}", String::from_utf8_lossy(&out.stderr));
                }
                c.write_keepalived_conf(node)?;
                c.start_keepalived(node)?;
            }
        } else if kind == Kind::Heartbeat {
            for node in Node::ALL {
                c.heartbeat_setup(node)?;
            }
            for node in Node::ALL {
                c.heartbeat_start(node)?;
            }
        } else {
            for node in Node::ALL {
                if c.lab.hbd_pid(node).is_none() {
                    bail!(
                        "hbd is not running on {node}: {}",
                        fs::read_to_string(c.lab.log_path(node)).unwrap_or_default()
                    );
                }
            }
        }
        c.probers = Some(Probers::start(
            &c.lab.client_netns(),
            SocketAddrV4::new(c.lab.vip(), 80),
            PROBERS,
            PROBE_PERIOD,
            PROBE_TIMEOUT,
        )?);
        Ok(c)
    }

    fn ka_conf(&self, node: Node) -> PathBuf {
        self.lab.node_dir(node).join("keepalived.conf")
    }

    fn write_keepalived_conf(&self, node: Node) -> Result<()> {
        let advert = self.timing.keepalive.as_secs_f64();
        let me = self.lab.node_addr(node, 1);
        let peer = self.lab.node_addr(node.other(), 1);
        let prio = if node == Node::N1 { 150 } else { 100 };
        let conf = format!(
            "# hb bench: keepalived for lab node {n}\n\
             global_defs {{\n\
             \x20 router_id {n}\n\
             \x20 vrrp_version 3\n\
             \x20 vrrp_garp_master_delay 0\n\
             \x20 vrrp_garp_master_repeat 1\n\
             \x20 vrrp_garp_master_refresh 0\n\
             \x20 vrrp_garp_lower_prio_repeat 1\n\
             }}\n\
             vrrp_instance VI_1 {{\n\
             \x20 state BACKUP\n\
             \x20 interface eth1\n\
             \x20 virtual_router_id 51\n\
             \x20 priority {prio}\n\
             \x20 advert_int {advert}\n\
             \x20 preempt_delay 0\n\
             \x20 unicast_src_ip {me}\n\
             \x20 unicast_peer {{\n\
             \x20   {peer}\n\
             \x20 }}\n\
             \x20 virtual_ipaddress {{\n\
             \x20   {vip}/24 dev eth1\n\
             \x20 }}\n\
             \x20 garp_master_delay 0\n\
             \x20 garp_master_repeat 1\n\
             \x20 garp_master_refresh 0\n\
             }}\n",
            n = node.name(),
            vip = self.lab.vip(),
        );
        fs::write(self.ka_conf(node), conf)?;
        Ok(())
    }

    fn start_keepalived(&mut self, node: Node) -> Result<()> {
        let dir = self.lab.node_dir(node);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.lab.netns(node), "keepalived"])
            .args(["-n", "-l", "-D", "-P", "-f"])
            .arg(self.ka_conf(node))
            .arg("-p")
            .arg(dir.join(format!("keepalived-{}.pid", self.ka_starts)))
            .arg("-r")
            .arg(dir.join(format!("keepalived-vrrp-{}.pid", self.ka_starts)));
        // Fresh pid files per start: after a kill -9 the old ones may name a process not yet
        // reaped, and keepalived then refuses to start ("daemon is already running").
        self.ka_starts += 1;
        let s = Stamped::spawn(cmd, dir.join("keepalived.log"))?;
        self.ka[idx(node)] = Some(s);
        Ok(())
    }

    fn hb_dir(&self, node: Node) -> PathBuf {
        self.lab.node_dir(node).join("heartbeat")
    }

    /// Heartbeat's private `/etc/ha.d`, `/var/lib/heartbeat` and `/var/log` for `node`, and the
    /// long-lived holder of its UTS (hostname = node name), mount (those bind mounts, a tmpfs
    /// on `/run`) and IPC namespaces, inside the node's network namespace.
    fn heartbeat_setup(&mut self, node: Node) -> Result<()> {
        let dir = self.hb_dir(node);
        let (etc, varlib, log) = (dir.join("ha.d"), dir.join("varlib"), dir.join("log"));
        fs::create_dir_all(&dir)?;
        hb_tests::lab::cmd("cp", &["-a", "/etc/ha.d", &etc.display().to_string()])?;
        hb_tests::lab::cmd(
            "cp",
            &["-a", "/var/lib/heartbeat", &varlib.display().to_string()],
        )?;
        fs::create_dir_all(&log)?;
        let s = self.lab.spec();
        let t = &self.timing;
        let msf = |d: Duration| format!("{}ms", d.as_millis());
        let mut ha_cf = String::from("# hb bench: Linux-HA Heartbeat 3.0.6\n");
        ha_cf += &format!(
            "logfile /var/log/ha-log\nuse_logd no\nkeepalive {}\ndeadtime {}\nwarntime {}\ninitdead {}\nudpport 694\n",
            msf(t.keepalive),
            msf(t.deadtime),
            msf(s.warntime),
            msf(s.initdead)
        );
        // Unicast to the peer: Heartbeat's `bcast` sends to the interface's broadcast address,
        // which the lab's addresses (added without `brd`) do not have.
        for l in 1..=s.links {
            ha_cf += &format!("ucast eth{l} {}\n", self.lab.node_addr(node.other(), l));
        }
        ha_cf += "auto_failback on\nnode n1\nnode n2\ncrm no\n";
        fs::write(etc.join("ha.cf"), ha_cf)?;
        fs::write(
            etc.join("haresources"),
            format!("n1 IPaddr::{}/24/eth1 httpd\n", self.lab.vip()),
        )?;
        // Heartbeat 3.0.6 has no sha256 auth plugin: sha1 (its strongest).
        let authkeys = etc.join("authkeys");
        fs::write(&authkeys, "auth 1\n1 sha1 hb-bench-heartbeat-secret\n")?;
        fs::set_permissions(
            &authkeys,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        fs::copy(
            self.lab.httpd_script(node),
            etc.join("resource.d").join("httpd"),
        )?;
        let script = format!(
            "set -e\n\
             hostname {n}\n\
             mount --bind {etc} /etc/ha.d\n\
             mount --bind {varlib} /var/lib/heartbeat\n\
             mount --bind {log} /var/log\n\
             mount -t tmpfs tmpfs /run\n\
             mkdir -p /run/heartbeat/ccm /run/heartbeat/crm /run/heartbeat/dopd /run/crm /run/lock /run/apache2 /run/resource-agents\n\
             chown -R hacluster:haclient /run/heartbeat /run/crm\n\
             chmod 750 /run/heartbeat /run/crm\n\
             echo ready\n\
             exec sleep 100000\n",
            n = node.name(),
            etc = etc.display(),
            varlib = varlib.display(),
            log = log.display(),
        );
        let mut holder = Command::new("ip")
            .args(["netns", "exec", &self.lab.netns(node)])
            .args([
                "unshare",
                "--uts",
                "--mount",
                "--ipc",
                "--propagation",
                "private",
                "--",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the Heartbeat namespace holder")?;
        let mut first = String::new();
        if let Some(out) = holder.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut first);
        }
        if first.trim() != "ready" {
            let _ = holder.kill();
            bail!("Heartbeat namespace holder on {node} failed to set up");
        }
        self.hb_holders[idx(node)] = Some(holder);
        self.hb_tails[idx(node)] = Some(Tail::start(log.join("ha-log")));
        Ok(())
    }

    /// Runs a command inside `node`'s Heartbeat namespaces (network, UTS, mount, IPC).
    fn hb_nsenter(&self, node: Node, args: &[&str]) -> Result<std::process::Output> {
        let pid = self.hb_holders[idx(node)]
            .as_ref()
            .map(Child::id)
            .context("no Heartbeat holder")?
            .to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "-u", "-m", "-i", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("nsenter")
    }

    fn heartbeat_start(&mut self, node: Node) -> Result<()> {
        // After a kill -9 the old master may linger unreaped (a zombie still answers kill(pid,
        // 0)) and Heartbeat would refuse to start as "already running": a rebooted node has no
        // pid file.
        let _ = self.hb_nsenter(node, &["rm", "-f", "/run/heartbeat.pid"])?;
        let out = self.hb_nsenter(node, &["/usr/libexec/heartbeat/heartbeat"])?;
        if !out.status.success() {
            bail!(
                "Heartbeat on {node}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn heartbeat_pids(&self, node: Node) -> Vec<i32> {
        hb_tests::lab::cmd_status("ip", &["netns", "pids", &self.lab.netns(node)])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .filter(|p| {
                        // Heartbeat's processes rename themselves; their executable does not.
                        fs::read_link(format!("/proc/{p}/exe"))
                            .is_ok_and(|e| e.ends_with("heartbeat/heartbeat"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pids of the HA daemon's processes on `node`.
    pub fn daemon_pids(&mut self, node: Node) -> Vec<i32> {
        match self.kind {
            Kind::Hb(_) => self
                .lab
                .hbd_pid(node)
                .and_then(|p| i32::try_from(p).ok())
                .into_iter()
                .collect(),
            Kind::Heartbeat => self.heartbeat_pids(node),
            Kind::Keepalived => {
                let out =
                    hb_tests::lab::cmd_status("ip", &["netns", "pids", &self.lab.netns(node)]);
                out.map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                        .filter(|p| {
                            fs::read_to_string(format!("/proc/{p}/comm"))
                                .is_ok_and(|c| c.trim() == "keepalived")
                        })
                        .collect()
                })
                .unwrap_or_default()
            }
        }
    }

    fn stop_keepalived(&mut self, node: Node, sig: nix::sys::signal::Signal) -> Result<u64> {
        let at = monotonic_ns();
        let pids = self.daemon_pids(node);
        // SIGKILL every keepalived process (parent and VRRP child); SIGTERM only the parent,
        // which stops its child and gives the address up.
        let targets: Vec<i32> = if sig == nix::sys::signal::Signal::SIGKILL {
            pids
        } else {
            self.ka[idx(node)]
                .as_ref()
                .and_then(|s| i32::try_from(s.child.id()).ok())
                .into_iter()
                .collect()
        };
        for p in targets {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
        }
        if let Some(s) = self.ka[idx(node)].take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut s = s;
            while Instant::now() < deadline {
                if s.child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let lines = s.lines();
            s.finish();
            self.ka_lines[idx(node)] = lines;
        }
        Ok(at)
    }

    /// Every probe of every prober so far, by arrival of the answer.
    pub fn probes(&self) -> Vec<Probe> {
        self.probers
            .as_ref()
            .map(Probers::snapshot)
            .unwrap_or_default()
    }

    /// Waits until an answer from `node` arrived at or after `after_ns`; returns its arrival.
    pub fn wait_served(&self, node: Node, after_ns: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            crate::interrupt::check()?;
            if let Some(at) = first_answer(&self.probes(), node, after_ns) {
                return Ok(at);
            }
            if Instant::now() >= deadline {
                let mut tails = String::new();
                for n in Node::ALL {
                    let lines = self.lines(n).unwrap_or_default();
                    tails += &format!("\n  {n}'s daemon, last lines:");
                    for (at, l) in &lines[lines.len().saturating_sub(12)..] {
                        tails += &format!("\n    {at} {l}");
                    }
                }
                bail!(
                    "{}: {node} did not serve the VIP within {timeout:?} (last probe {:?}){tails}",
                    self.kind.label(),
                    self.probes().last().map(|s| s.outcome.clone())
                );
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// Waits until n1 alone holds the VIP (n2 not) for `stable` without a break; fails after
    /// `timeout` saying who held it.
    pub fn wait_settled(&self, stable: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut since: Option<Instant> = None;
        loop {
            crate::interrupt::check()?;
            let (h1, h2) = (self.lab.holds_vip(Node::N1)?, self.lab.holds_vip(Node::N2)?);
            if h1 && !h2 {
                let s = *since.get_or_insert_with(Instant::now);
                if s.elapsed() >= stable {
                    return Ok(());
                }
            } else {
                since = None;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: n1 alone did not hold the VIP for {stable:?} within {timeout:?} \
                     (n1 holds it: {h1}, n2 holds it: {h2})",
                    self.kind.label()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node dies: all its links down at once (one `ip -batch` in the bridges' namespace),
    /// then SIGKILL of its HA daemon (hb: SIGSTOP, and SIGKILL at [`Cluster::restart`]). Returns
    /// the time just before the links went down.
    pub fn kill(&mut self, node: Node) -> Result<u64> {
        // The instrument must not be starved by the load it measures (busy loops at normal
        // priority in the saturation benchmark): the `ip` child inherits SCHED_FIFO from this
        // thread for the duration of the command.
        let rt = RealtimeGuard::new();
        let res = self.lab.pull_all_cables(node);
        drop(rt);
        let at = res?;
        match self.kind {
            Kind::Hb(_) => {
                // Frozen now, SIGKILLed when the node is restarted: a dead machine's teardown
                // never runs in its peer's kernel, but here both nodes share one, and a killed
                // hbd's exit detaches its XDP program, which holds the kernel's rtnl lock for
                // ~14 ms (see hb_daemon::daemon::XDP_DETACH_DELAY) right when the peer adds the
                // address and opens its ARP socket, both under rtnl: measured at 1 kHz, the
                // address add took 9.5-20 ms after a kill and 0.2-0.3 ms after a freeze. The
                // frozen hbd sends nothing (its links are down anyway) and holds no lock.
                self.lab
                    .signal_hbd(node, nix::sys::signal::Signal::SIGSTOP)?;
            }
            Kind::Keepalived => {
                self.stop_keepalived(node, nix::sys::signal::Signal::SIGKILL)?;
            }
            Kind::Heartbeat => {
                for p in self.heartbeat_pids(node) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        Ok(at)
    }

    /// The node comes back as after a reboot (no VIP, empty neighbour table, links up, daemon
    /// started).
    pub fn restart(&mut self, node: Node) -> Result<u64> {
        match self.kind {
            Kind::Hb(_) => {
                // The hbd `kill` froze (a no-op when it no longer runs).
                self.lab.kill_hbd(node)?;
                self.lab.restart_node(node)
            }
            Kind::Heartbeat => {
                let _ = self.lab.httpd(node, "stop")?;
                self.lab.del_vip(node)?;
                for l in 1..=self.lab.spec().links {
                    self.lab.set_link(node, l, true)?;
                }
                self.lab.forget_neighbours(node)?;
                let at = monotonic_ns();
                self.heartbeat_start(node)?;
                Ok(at)
            }
            Kind::Keepalived => {
                self.lab.del_vip(node)?;
                for l in 1..=self.lab.spec().links {
                    self.lab.set_link(node, l, true)?;
                }
                self.lab.forget_neighbours(node)?;
                let at = monotonic_ns();
                self.start_keepalived(node)?;
                Ok(at)
            }
        }
    }

    /// Clean stop of the HA daemon on `node` (SIGTERM, wait for it to exit).
    pub fn clean_stop(&mut self, node: Node) -> Result<u64> {
        match self.kind {
            Kind::Hb(_) => self.lab.stop_hbd(node, Duration::from_secs(10)),
            Kind::Keepalived => self.stop_keepalived(node, nix::sys::signal::Signal::SIGTERM),
            Kind::Heartbeat => {
                let at = monotonic_ns();
                let _ = self.hb_nsenter(node, &["/usr/libexec/heartbeat/heartbeat", "-k"])?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !self.heartbeat_pids(node).is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(at)
            }
        }
    }

    /// Starts the HA daemon on `node` again after [`Cluster::clean_stop`].
    pub fn start(&mut self, node: Node) -> Result<u64> {
        let at = monotonic_ns();
        match self.kind {
            Kind::Hb(o) => {
                if o.ip_only {
                    // Apache runs outside hbd's control: make sure it still does (it does,
                    // hbd's stop released only the address).
                    let out = self.lab.httpd(node, "start")?;
                    if !out.status.success() {
                        bail!("apache on {node}: {}", String::from_utf8_lossy(&out.stderr));
                    }
                }
                self.lab.start_hbd(node)?
            }
            Kind::Keepalived => self.start_keepalived(node)?,
            Kind::Heartbeat => self.heartbeat_start(node)?,
        }
        Ok(at)
    }

    /// Drops each heartbeat (hb: UDP 694; keepalived: VRRP, IP protocol 112) that either node
    /// sends with probability `p` (iptables `statistic` on the sender); `on = false` removes it.
    pub fn set_loss(&self, p: f64, on: bool) -> Result<()> {
        for node in Node::ALL {
            match self.kind {
                Kind::Hb(_) | Kind::Heartbeat => self.lab.heartbeat_loss(node, p, on)?,
                Kind::Keepalived => self.lab.random_loss(node, &["-p", "112"], p, on)?,
            }
        }
        Ok(())
    }

    fn ka_all_lines(&self, node: Node) -> Vec<(u64, String)> {
        let mut v = self.ka_lines[idx(node)].clone();
        if let Some(s) = &self.ka[idx(node)] {
            v.extend(s.lines());
        }
        v
    }

    /// Lines (time, text) of `node`'s daemon output.
    fn lines(&self, node: Node) -> Result<Vec<(u64, String)>> {
        Ok(match self.kind {
            Kind::Hb(_) => self
                .lab
                .log(node)?
                .into_iter()
                .map(|l| (l.mono_ns, l.message))
                .collect(),
            Kind::Keepalived => self.ka_all_lines(node),
            Kind::Heartbeat => self.hb_tails[idx(node)]
                .as_ref()
                .map(Tail::lines)
                .unwrap_or_default(),
        })
    }

    fn death_needle(&self, observer: Node) -> String {
        match self.kind {
            Kind::Hb(_) | Kind::Heartbeat => timeline::is_dead(observer.other()),
            Kind::Keepalived => "Entering MASTER STATE".into(),
        }
    }

    /// When `observer` declared its peer dead (hb: `node X: is dead`; keepalived: the backup
    /// entering MASTER state), waiting up to `timeout`.
    pub fn declared_dead(
        &self,
        observer: Node,
        after_ns: u64,
        timeout: Duration,
    ) -> Result<Option<u64>> {
        self.wait_line(observer, &self.death_needle(observer), after_ns, timeout)
    }

    /// The time of `node`'s first log line at or after `after_ns` containing `needle`, waiting
    /// up to `timeout` for it.
    pub fn wait_line(
        &self,
        node: Node,
        needle: &str,
        after_ns: u64,
        timeout: Duration,
    ) -> Result<Option<u64>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self
                .lines(node)?
                .into_iter()
                .find(|(at, l)| *at >= after_ns && l.contains(needle))
            {
                return Ok(Some(at));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// hb only: from `observer`'s line `hb: node X declared dead N ms after its last heartbeat
    /// arrived` (at or after `after_ns`), N: how long after the kernel arrival time of the
    /// peer's last heartbeat the daemon declared it dead. `None` for other implementations or
    /// when there is no such line.
    pub fn dead_after_last_ms(&self, observer: Node, after_ns: u64) -> Result<Option<f64>> {
        if !matches!(self.kind, Kind::Hb(_)) {
            return Ok(None);
        }
        Ok(self
            .lines(observer)?
            .into_iter()
            .filter(|(at, _)| *at >= after_ns)
            .find_map(|(_, l)| timeline::declared_dead_after_ms(&l)))
    }

    /// Between `from_ns` and `to_ns`: spurious deaths declared (by either node) and takeovers by
    /// `n2` (hb: `Acquiring resource group` on n2; keepalived: n2 entering MASTER state).
    pub fn spurious(&self, from_ns: u64, to_ns: u64) -> Result<(usize, usize)> {
        let in_win = |at: u64| at >= from_ns && at <= to_ns;
        let mut deaths = 0;
        for node in Node::ALL {
            let needle = self.death_needle(node);
            deaths += self
                .lines(node)?
                .iter()
                .filter(|(at, l)| in_win(*at) && l.contains(&needle))
                .count();
        }
        let takeover = match self.kind {
            Kind::Hb(_) | Kind::Heartbeat => "Acquiring resource group",
            Kind::Keepalived => "Entering MASTER STATE",
        };
        let takeovers = self
            .lines(Node::N2)?
            .iter()
            .filter(|(at, l)| in_win(*at) && l.contains(takeover))
            .count();
        Ok((deaths, takeovers))
    }

    /// Between `from_ns` and `to_ns`: probes that `owner` did not serve.
    pub fn disturbed(&self, owner: Node, from_ns: u64, to_ns: u64) -> usize {
        self.probes()
            .iter()
            .filter(|s| s.start_ns >= from_ns && s.start_ns <= to_ns)
            .filter(|s| s.outcome != Outcome::Served(owner))
            .count()
    }

    /// Copies the daemons' logs to `$HB_BENCH_KEEP_LOGS/<lab prefix>/` when that variable is
    /// set (for looking into a run after the lab is gone).
    fn keep_logs(&self) {
        let Some(dest) = std::env::var_os("HB_BENCH_KEEP_LOGS") else {
            return;
        };
        let dest = PathBuf::from(dest).join(&self.lab.spec().prefix);
        for node in Node::ALL {
            let d = dest.join(node.name());
            let _ = fs::create_dir_all(&d);
            let dir = self.lab.node_dir(node);
            for (from, name) in [
                (self.lab.log_path(node), "hbd.log"),
                (dir.join("keepalived.log"), "keepalived.log"),
                (self.hb_dir(node).join("log").join("ha-log"), "ha-log"),
            ] {
                let _ = fs::copy(from, d.join(name));
            }
        }
    }

    /// Stops probers and daemons and removes the lab.
    pub fn down(mut self) -> Result<()> {
        self.keep_logs();
        drop(self.probers.take());
        for node in Node::ALL {
            if let Some(s) = self.ka[idx(node)].take() {
                s.finish();
            }
            drop(self.hb_tails[idx(node)].take());
            if let Some(mut h) = self.hb_holders[idx(node)].take() {
                let _ = h.kill();
                let _ = h.wait();
            }
        }
        self.lab.down()?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.keep_logs();
        drop(self.probers.take());
        for s in self.ka.iter_mut().filter_map(Option::take) {
            s.finish();
        }
        for t in &mut self.hb_tails {
            drop(t.take());
        }
        for mut h in self.hb_holders.iter_mut().filter_map(Option::take) {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// Runs the calling thread SCHED_FIFO (priority 40, below hbd's 50) until dropped, then back
/// to SCHED_OTHER; children forked meanwhile inherit the policy. Best effort: without the
/// privilege it changes nothing.
pub(crate) struct RealtimeGuard {
    raised: bool,
}

impl RealtimeGuard {
    pub(crate) fn new() -> RealtimeGuard {
        let param = libc::sched_param { sched_priority: 40 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid sched_param.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        RealtimeGuard { raised: rc == 0 }
    }
}

impl Drop for RealtimeGuard {
    fn drop(&mut self) {
        if self.raised {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
    }
}
