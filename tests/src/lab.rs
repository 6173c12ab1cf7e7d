//! The failover lab: two cluster nodes (`n1`, `n2`) and a client, each a network namespace,
//! joined by bridges that live in a namespace of their own (never in the host's).
//!
//! Topology for a lab with prefix `P` and subnet octet `y`:
//! - `Phblab-br` holds bridge `br1` (the LAN, link 1) and, with two links, `br2` (a
//!   heartbeat-only link between the nodes).
//! - `Pn1`, `Pn2`: `eth1` on `br1` (`10.213.y.1/24`, `10.213.y.2/24`), optionally `eth2` on `br2`
//!   (`10.214.y.1/24`, `10.214.y.2/24`). The VIP is `10.213.y.100/24` on `eth1`.
//! - `Pclient`: `eth1` on `br1` (`10.213.y.10/24`).
//!
//! Each node has its own directory (config dir with `ha.cf`, `haresources`, `authkeys` (mode 600,
//! `sha256`), `resource.d/httpd`; state dir; run dir; Apache's config and document root; `hbd.log`),
//! and every process of a node runs in its own UTS namespace whose hostname is the node's name:
//! `ip netns exec NS unshare --uts -- sh -c 'hostname NODE && exec CMD...'`.
//!
//! [`Lab::up`] cleans leftovers of a lab with the same prefix first (found by name, and through the
//! state file `/run/hb-lab/<prefix or "default">.json`), and [`Lab::down`] (also run on drop)
//! kills every process in the lab's namespaces, deletes the namespaces (with the bridges, veths and
//! any iptables rules made inside them) and removes the lab's temp dir and state file.

pub mod probe;
pub mod timeline;

use std::{
    fmt,
    fs::{self, File},
    io::Write as _,
    net::Ipv4Addr,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::monotonic_ns;

/// Second octet of the LAN subnet (`10.213.y.0/24`, link 1, shared with the client).
pub const LAN_OCTET: u8 = 213;
/// Second octet of the heartbeat-only subnet (`10.214.y.0/24`, link 2, nodes only).
pub const HB_OCTET: u8 = 214;
/// Host part of the VIP in the LAN subnet.
pub const VIP_HOST: u8 = 100;
/// Host part of the client's address in the LAN subnet.
pub const CLIENT_HOST: u8 = 10;
/// Where state files of labs are kept (one per prefix).
pub const STATE_DIR: &str = "/run/hb-lab";
/// The text every node's `index.html` starts with, followed by the node's name.
pub const PAGE_PREFIX: &str = "hb lab node ";

/// One of the two cluster nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Node {
    /// `n1`, the preferred owner of the resource group.
    N1,
    /// `n2`, the standby.
    N2,
}

impl Node {
    /// Both nodes, `n1` first.
    pub const ALL: [Node; 2] = [Node::N1, Node::N2];

    /// The node's name as in `ha.cf` (`n1`, `n2`), also its hostname.
    pub fn name(self) -> &'static str {
        match self {
            Node::N1 => "n1",
            Node::N2 => "n2",
        }
    }

    /// The other node.
    pub fn other(self) -> Node {
        match self {
            Node::N1 => Node::N2,
            Node::N2 => Node::N1,
        }
    }

    /// Host part of the node's addresses (`.1`, `.2`).
    pub fn host(self) -> u8 {
        match self {
            Node::N1 => 1,
            Node::N2 => 2,
        }
    }

    fn index(self) -> usize {
        match self {
            Node::N1 => 0,
            Node::N2 => 1,
        }
    }

    /// Parses `n1` / `n2`.
    pub fn from_name(name: &str) -> Option<Node> {
        match name {
            "n1" => Some(Node::N1),
            "n2" => Some(Node::N2),
            _ => None,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the nodes' `resource.d/httpd` script behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ResourceBehaviour {
    /// Both nodes start and stop Apache.
    #[default]
    Ok,
    /// `start` fails (exit 1, Apache not started) on `n2`: the failed-takeover scenario.
    FailStartOnN2,
    /// The address only: `haresources` is `n1 IPaddr::VIP/24/eth1` (no `httpd`), and Apache
    /// runs on both nodes all the time, as keepalived set-ups run it: started at lab-up before
    /// hbd, and again when a node comes back ([`Lab::restart_node`]).
    IpOnly,
}

/// A resource script action [`Lab::set_resource_fault`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceOp {
    /// `start`.
    Start,
    /// `stop`.
    Stop,
}

/// hb's `xdp` directive in `ha.cf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum XdpSetting {
    /// `xdp auto`: XDP where it attaches, else the socket path.
    #[default]
    Auto,
    /// `xdp on`: refuse to start without XDP.
    On,
    /// `xdp off`: socket path only.
    Off,
}

impl XdpSetting {
    fn word(self) -> &'static str {
        match self {
            XdpSetting::Auto => "auto",
            XdpSetting::On => "on",
            XdpSetting::Off => "off",
        }
    }
}

/// What lab to build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSpec {
    /// Prefix of every namespace name: `""` for xtask (`n1`, `n2`, `client`, `hblab-br`); tests
    /// use a unique prefix so labs can run in parallel.
    pub prefix: String,
    /// `y` in `10.213.y.0/24` (LAN) and `10.214.y.0/24` (heartbeat-only link).
    pub subnet: u8,
    /// `keepalive`.
    pub keepalive: Duration,
    /// `deadtime`.
    pub deadtime: Duration,
    /// `warntime`.
    pub warntime: Duration,
    /// `initdead`.
    pub initdead: Duration,
    /// `auto_failback on|off`.
    pub auto_failback: bool,
    /// 1 (`eth1` only) or 2 (`eth1` plus the heartbeat-only `eth2`).
    pub links: u8,
    /// The `hbd` binary; `None` brings the lab up without daemons.
    pub hbd_path: Option<PathBuf>,
    /// The `hbctl` binary, for [`Lab::hbctl`].
    pub hbctl_path: Option<PathBuf>,
    /// The `hbstat` binary, for [`Lab::hbstat`].
    pub hbstat_path: Option<PathBuf>,
    /// Extra lines appended to `ha.cf`.
    pub extra_ha_cf: Vec<String>,
    /// The `xdp` directive.
    pub xdp: XdpSetting,
    /// How the resource script behaves.
    pub resource: ResourceBehaviour,
    /// Extra resources appended to the group's `haresources` line (both nodes), e.g.
    /// `Filesystem::tmpfs::/mnt/x::tmpfs` or the name of a script in [`LabSpec::scripts`].
    #[serde(default)]
    pub extra_resources: Vec<String>,
    /// Extra resource scripts, `(name, body)`, written executable to both nodes'
    /// `resource.d/`.
    #[serde(default)]
    pub scripts: Vec<(String, String)>,
}

impl LabSpec {
    /// The lab of `cargo xtask lab` / `cargo xtask run`: no prefix, subnet `10.213.7.0/24`, fast
    /// timings (keepalive 10 ms, deadtime 50 ms, warntime 30 ms, initdead 500 ms), two links, no
    /// binaries.
    pub fn xtask() -> Self {
        Self {
            prefix: String::new(),
            subnet: 7,
            keepalive: Duration::from_millis(10),
            deadtime: Duration::from_millis(50),
            warntime: Duration::from_millis(30),
            initdead: Duration::from_millis(500),
            auto_failback: true,
            links: 2,
            hbd_path: None,
            hbctl_path: None,
            hbstat_path: None,
            extra_ha_cf: Vec::new(),
            xdp: XdpSetting::Auto,
            resource: ResourceBehaviour::Ok,
            extra_resources: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// Like [`LabSpec::xtask`] but with a prefix and subnet unique to this process and call, so
    /// tests can run labs in parallel.
    pub fn unique() -> Self {
        let prefix = crate::unique_name("");
        let n: u32 = prefix
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        Self {
            prefix,
            subnet: 20 + (n % 200) as u8,
            ..Self::xtask()
        }
    }
}

/// What a lab made, as recorded in its state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    /// The spec it was made from.
    pub spec: LabSpec,
    /// The lab's temp dir (nodes' dirs below it).
    pub dir: PathBuf,
    /// Namespaces made, in creation order.
    pub namespaces: Vec<String>,
    /// Per node (`n1`, `n2`): hbd's pid while it was started by this lab.
    pub hbd_pids: [Option<u32>; 2],
    /// Per node: why hbd is not running (not configured, exited at once with status...).
    pub hbd_notes: [String; 2],
}

/// hbd's state on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbdState {
    /// Running with this pid.
    Running(u32),
    /// Not running; why.
    NotRunning(String),
}

/// One node's state in [`LabStatus`].
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Which node.
    pub node: Node,
    /// Whether its namespace exists.
    pub namespace: bool,
    /// hbd.
    pub hbd: HbdState,
    /// Whether it holds the VIP on `eth1`.
    pub holds_vip: bool,
    /// Whether its Apache runs (`resource.d/httpd status`).
    pub httpd_running: bool,
    /// Per link (1, 2): whether the bridge port is up.
    pub links_up: Vec<(u8, bool)>,
}

/// What [`Lab::status`] reports.
#[derive(Debug, Clone)]
pub struct LabStatus {
    /// The namespaces' prefix.
    pub prefix: String,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The lab's temp dir.
    pub dir: PathBuf,
    /// Namespaces that exist.
    pub namespaces_present: Vec<String>,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
}

impl LabStatus {
    /// Nodes holding the VIP.
    pub fn vip_holders(&self) -> Vec<Node> {
        self.nodes
            .iter()
            .filter(|n| n.holds_vip)
            .map(|n| n.node)
            .collect()
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holders: Vec<_> = self.vip_holders().iter().map(|n| n.name()).collect();
        writeln!(
            f,
            "lab {:?}: namespaces [{}], VIP {} held by [{}], files in {}",
            self.prefix,
            self.namespaces_present.join(", "),
            self.vip,
            holders.join(", "),
            self.dir.display()
        )?;
        for n in &self.nodes {
            let hbd = match &n.hbd {
                HbdState::Running(pid) => format!("hbd running (pid {pid})"),
                HbdState::NotRunning(why) => format!("hbd not running ({why})"),
            };
            let links: Vec<String> = n
                .links_up
                .iter()
                .map(|(l, up)| format!("eth{l} {}", if *up { "up" } else { "DOWN" }))
                .collect();
            writeln!(
                f,
                "  {}: {}namespace, {hbd}, VIP {}, httpd {}, links: {}",
                n.node,
                if n.namespace { "" } else { "NO " },
                if n.holds_vip { "held" } else { "not held" },
                if n.httpd_running {
                    "running"
                } else {
                    "stopped"
                },
                links.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Something the lab did to a node or to the network (a kill, a cable pulled, a daemon started,
/// an address removed...), kept so a failure report can say what the lab was doing when a
/// sample was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEvent {
    /// CLOCK_MONOTONIC ns when it took effect (for a command: when the command returned).
    pub at_ns: u64,
    /// What happened, e.g. `n1 died: links eth1, eth2 down at once`.
    pub what: String,
}

/// A running lab; dropping it tears it down (see [`Lab::down`]).
#[derive(Debug)]
pub struct Lab {
    rec: LabRecord,
    children: [Option<Child>; 2],
    torn_down: bool,
    events: std::sync::Mutex<Vec<LabEvent>>,
}

/// Runs a command detached from the terminal's process group (so Ctrl-C reaches only the
/// driver, which then tears the lab down), failing with its output when it exits non-zero.
pub fn cmd(program: &str, args: &[&str]) -> Result<Output> {
    let out = cmd_status(program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Like [`cmd`] but returns the output whatever the exit status.
pub fn cmd_status(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .with_context(|| format!("spawning {program} {}", args.join(" ")))
}

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Pids of every process in namespace `name` (`ip netns pids`).
fn ns_pids(name: &str) -> Vec<i32> {
    cmd_status("ip", &["netns", "pids", name])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn state_path(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

fn lab_dir(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    std::env::temp_dir().join(format!("hb-lab-{name}"))
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Names of a lab's namespaces: bridge, n1, n2, client.
fn namespace_names(prefix: &str) -> [String; 4] {
    [
        format!("{prefix}hblab-br"),
        format!("{prefix}n1"),
        format!("{prefix}n2"),
        format!("{prefix}client"),
    ]
}

/// Removes everything a lab with `prefix` made, whether or not its state file survived: kills
/// every process in its namespaces, deletes the namespaces, its temp dir and its state file.
/// Returns what it removed, one line per item.
pub fn cleanup(prefix: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut names: Vec<String> = namespace_names(prefix).into();
    let state = state_path(prefix);
    let mut dirs = vec![lab_dir(prefix)];
    if let Ok(text) = fs::read_to_string(&state)
        && let Ok(rec) = serde_json::from_str::<LabRecord>(&text)
    {
        for ns in rec.namespaces {
            if !names.contains(&ns) {
                names.push(ns);
            }
        }
        if !dirs.contains(&rec.dir) {
            dirs.push(rec.dir);
        }
    }
    // Processes first (hbd, Apache, anything else started inside), then the namespaces.
    for ns in names.iter().filter(|n| ns_exists(n)) {
        for _ in 0..50 {
            let pids = ns_pids(ns);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    removed.push(format!("killed pid {pid} in namespace {ns}"));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for ns in names.iter().filter(|n| ns_exists(n)) {
        cmd("ip", &["netns", "del", ns])?;
        removed.push(format!("deleted namespace {ns}"));
    }
    for dir in dirs.iter().filter(|d| d.exists()) {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        removed.push(format!("removed {}", dir.display()));
    }
    if state.exists() {
        fs::remove_file(&state).with_context(|| format!("removing {}", state.display()))?;
        removed.push(format!("removed {}", state.display()));
    }
    Ok(removed)
}

impl Lab {
    /// Builds the lab (cleaning leftovers of a lab with the same prefix first) and starts hbd
    /// on both nodes when `spec.hbd_path` is set. A daemon that exits at once does not fail
    /// `up`: [`Lab::status`] reports it.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        if spec.links != 1 && spec.links != 2 {
            bail!("a lab has 1 or 2 links, not {}", spec.links);
        }
        let leftovers = cleanup(&spec.prefix)?;
        for l in &leftovers {
            eprintln!("[lab] leftover: {l}");
        }
        let dir = lab_dir(&spec.prefix);
        let mut lab = Lab {
            rec: LabRecord {
                spec,
                dir,
                namespaces: Vec::new(),
                hbd_pids: [None, None],
                hbd_notes: [String::new(), String::new()],
            },
            children: [None, None],
            torn_down: false,
            events: std::sync::Mutex::new(Vec::new()),
        };
        // On any error below, dropping `lab` removes what was made so far.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        fs::create_dir_all(&self.rec.dir)?;
        for node in Node::ALL {
            self.write_node_files(node)?;
        }
        let [br, n1, n2, client] = namespace_names(&self.rec.spec.prefix);
        for ns in [&br, &n1, &n2, &client] {
            cmd("ip", &["netns", "add", ns])?;
            self.rec.namespaces.push(ns.clone());
            self.save_state()?;
            cmd("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        for l in 1..=self.rec.spec.links {
            let bridge = format!("br{l}");
            cmd("ip", &["-n", &br, "link", "add", &bridge, "type", "bridge"])?;
            cmd("ip", &["-n", &br, "link", "set", &bridge, "up"])?;
        }
        let y = self.rec.spec.subnet;
        let mut ports = vec![
            (
                n1.clone(),
                "n1-e1".to_owned(),
                1u8,
                format!("10.{LAN_OCTET}.{y}.1/24"),
            ),
            (
                n2.clone(),
                "n2-e1".to_owned(),
                1,
                format!("10.{LAN_OCTET}.{y}.2/24"),
            ),
            (
                client.clone(),
                "cl-e1".to_owned(),
                1,
                format!("10.{LAN_OCTET}.{y}.{CLIENT_HOST}/24"),
            ),
        ];
        if self.rec.spec.links == 2 {
            ports.push((n1, "n1-e2".to_owned(), 2, format!("10.{HB_OCTET}.{y}.1/24")));
            ports.push((n2, "n2-e2".to_owned(), 2, format!("10.{HB_OCTET}.{y}.2/24")));
        }
        for (ns, port, link, addr) in &ports {
            let ifname = format!("eth{link}");
            cmd(
                "ip",
                &[
                    "-n", &br, "link", "add", port, "type", "veth", "peer", "name", &ifname,
                    "netns", ns,
                ],
            )?;
            cmd(
                "ip",
                &[
                    "-n",
                    &br,
                    "link",
                    "set",
                    port,
                    "master",
                    &format!("br{link}"),
                    "up",
                ],
            )?;
            cmd("ip", &["-n", ns, "addr", "add", addr, "dev", &ifname])?;
            cmd("ip", &["-n", ns, "link", "set", &ifname, "up"])?;
        }
        for node in Node::ALL {
            self.start_always_on_httpd(node)?;
            self.start_hbd(node)?;
        }
        self.save_state()
    }

    /// With [`ResourceBehaviour::IpOnly`], starts `node`'s Apache (it runs outside hbd's
    /// control); otherwise does nothing.
    fn start_always_on_httpd(&self, node: Node) -> Result<()> {
        if self.rec.spec.resource != ResourceBehaviour::IpOnly {
            return Ok(());
        }
        let out = self.httpd(node, "start")?;
        if !out.status.success() {
            bail!(
                "starting Apache on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn save_state(&self) -> Result<()> {
        fs::create_dir_all(STATE_DIR)?;
        let path = state_path(&self.rec.spec.prefix);
        let text = serde_json::to_string_pretty(&self.rec)?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The lab's spec.
    pub fn spec(&self) -> &LabSpec {
        &self.rec.spec
    }

    /// Records `what` at `at_ns` in the lab's journal ([`Lab::events`]).
    pub fn note(&self, at_ns: u64, what: impl Into<String>) {
        let ev = LabEvent {
            at_ns,
            what: what.into(),
        };
        match self.events.lock() {
            Ok(mut e) => e.push(ev),
            Err(p) => p.into_inner().push(ev),
        }
    }

    /// Everything the lab did to the nodes and the network since it was built, oldest first.
    pub fn events(&self) -> Vec<LabEvent> {
        match self.events.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What the lab made.
    pub fn record(&self) -> &LabRecord {
        &self.rec
    }

    /// The VIP (`10.213.y.100`).
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, LAN_OCTET, self.rec.spec.subnet, VIP_HOST)
    }

    /// A node's address on link `link` (1 or 2).
    pub fn node_addr(&self, node: Node, link: u8) -> Ipv4Addr {
        let second = if link == 2 { HB_OCTET } else { LAN_OCTET };
        Ipv4Addr::new(10, second, self.rec.spec.subnet, node.host())
    }

    /// The client's address.
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, LAN_OCTET, self.rec.spec.subnet, CLIENT_HOST)
    }

    /// A node's namespace name.
    pub fn netns(&self, node: Node) -> String {
        format!("{}{}", self.rec.spec.prefix, node.name())
    }

    /// The client's namespace name.
    pub fn client_netns(&self) -> String {
        format!("{}client", self.rec.spec.prefix)
    }

    /// The bridges' namespace name.
    pub fn bridge_netns(&self) -> String {
        format!("{}hblab-br", self.rec.spec.prefix)
    }

    /// A node's directory.
    pub fn node_dir(&self, node: Node) -> PathBuf {
        self.rec.dir.join(node.name())
    }

    /// A node's config dir (`ha.cf`, `haresources`, `authkeys`, `resource.d/`).
    pub fn config_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("ha.d")
    }

    /// A node's state dir.
    pub fn state_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("state")
    }

    /// A node's run dir.
    pub fn run_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("run")
    }

    /// A node's `hbd.log` (hbd's stdout and stderr).
    pub fn log_path(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("hbd.log")
    }

    /// A node's resource script (`resource.d/httpd`).
    pub fn httpd_script(&self, node: Node) -> PathBuf {
        self.config_dir(node).join("resource.d").join("httpd")
    }

    fn ha_cf(&self) -> String {
        let s = &self.rec.spec;
        let mut t = String::from("# hb failover lab\n");
        t += &format!("keepalive {}\n", ms(s.keepalive));
        t += &format!("deadtime {}\n", ms(s.deadtime));
        t += &format!("warntime {}\n", ms(s.warntime));
        t += &format!("initdead {}\n", ms(s.initdead));
        t += "udpport 694\n";
        for l in 1..=s.links {
            t += &format!("bcast eth{l}\n");
        }
        t += &format!(
            "auto_failback {}\n",
            if s.auto_failback { "on" } else { "off" }
        );
        t += "node n1\nnode n2\n";
        t += &format!("xdp {}\n", s.xdp.word());
        for line in &s.extra_ha_cf {
            t += line;
            t += "\n";
        }
        t
    }

    fn write_node_files(&self, node: Node) -> Result<()> {
        let dir = self.node_dir(node);
        let conf = self.config_dir(node);
        for d in [
            conf.join("resource.d"),
            self.state_dir(node),
            self.run_dir(node),
            dir.join("www"),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        fs::write(conf.join("ha.cf"), self.ha_cf())?;
        let resources = if self.rec.spec.resource == ResourceBehaviour::IpOnly {
            ""
        } else {
            " httpd"
        };
        let mut extra = String::new();
        for r in &self.rec.spec.extra_resources {
            extra.push(' ');
            extra.push_str(r);
        }
        fs::write(
            conf.join("haresources"),
            format!("n1 IPaddr::{}/24/eth1{resources}{extra}\n", self.vip()),
        )?;
        for (name, body) in &self.rec.spec.scripts {
            let p = conf.join("resource.d").join(name);
            fs::write(&p, body)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }
        let authkeys = conf.join("authkeys");
        let mut f = File::create(&authkeys)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        writeln!(f, "auth 1\n1 sha256 hb-lab-{}-secret", self.rec.spec.subnet)?;
        // Apache: the modules and directives known to work in a namespace (shared README).
        let www = dir.join("www");
        fs::write(
            www.join("index.html"),
            format!("{PAGE_PREFIX}{}\n", node.name()),
        )?;
        let run = self.run_dir(node);
        let httpd_conf = dir.join("httpd.conf");
        fs::write(
            &httpd_conf,
            format!(
                "# Apache for hb lab node {n}\n\
                 ServerRoot /etc/apache2\n\
                 Include mods-available/mpm_event.load\n\
                 Include mods-available/mpm_event.conf\n\
                 Include mods-available/authz_core.load\n\
                 Include mods-available/dir.load\n\
                 ServerName {n}\n\
                 User www-data\n\
                 Group www-data\n\
                 Listen 80\n\
                 PidFile {run}/httpd.pid\n\
                 Mutex file:{run} default\n\
                 ErrorLog {dir}/httpd-error.log\n\
                 DocumentRoot {www}\n\
                 DirectoryIndex index.html\n\
                 <Directory {www}>\n\
                 \x20 Require all granted\n\
                 </Directory>\n",
                n = node.name(),
                run = run.display(),
                dir = dir.display(),
                www = www.display(),
            ),
        )?;
        let fail_start =
            node == Node::N2 && self.rec.spec.resource == ResourceBehaviour::FailStartOnN2;
        let script = self.httpd_script(node);
        fs::write(
            &script,
            format!(
                r#"#!/bin/sh
# hb lab: init-style resource script for node {n}'s Apache (start|stop|status).
CONF={conf}
PIDFILE={run}/httpd.pid
FAIL_START={fail}
# Lab::set_resource_fault: fail-start / fail-stop here make the next actions fail.
FAULTS={faults}
running() {{
    [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}}
# Whether anything in this node listens on TCP port 80.
listening() {{
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk '$2 ~ /:0050$/ && $4 == "0A" {{ f = 1 }} END {{ exit !f }}'
}}
case "$1" in
start)
    if [ "$FAIL_START" = 1 ] || [ -e "$FAULTS/fail-start" ]; then
        echo "httpd: start failed (hb lab: this node's resource script is set to fail)" >&2
        exit 1
    fi
    running && exit 0
    exec /usr/sbin/apache2 -f "$CONF" -k start
    ;;
stop)
    if [ -e "$FAULTS/fail-stop" ]; then
        echo "httpd: stop failed (hb lab: this node's resource script is set to fail)" >&2
        exit 1
    fi
    if running; then
        /usr/sbin/apache2 -f "$CONF" -k stop
        # Stopped once it no longer listens (~40 ms); Apache's parent itself takes ~1.5 s more
        # to exit, and removes its pid file when it does.
        i=0
        while listening && [ $i -lt 500 ]; do sleep 0.005; i=$((i+1)); done
    fi
    rm -f "$PIDFILE"
    exit 0
    ;;
status)
    if running && listening; then echo running; exit 0; fi
    echo stopped
    exit 3
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
"#,
                n = node.name(),
                conf = httpd_conf.display(),
                run = run.display(),
                fail = u8::from(fail_start),
                faults = dir.display(),
            ),
        )?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// A command that runs `program args` on `node`: in its network namespace and in a new UTS
    /// namespace whose hostname is the node's name.
    pub fn node_command(&self, node: Node, program: &Path, args: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns(node), "unshare", "--uts", "--"])
            .args(["sh", "-c"])
            .arg(format!("hostname {} && exec \"$0\" \"$@\"", node.name()))
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .process_group(0);
        c
    }

    /// Runs `program args` on `node` to completion and returns its output (any exit status).
    pub fn exec(&self, node: Node, program: &str, args: &[&str]) -> Result<Output> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.node_command(node, Path::new(program), &args)
            .output()
            .with_context(|| format!("running {program} on {node}"))
    }

    /// The arguments hbd is started with on `node`.
    pub fn hbd_args(&self, node: Node) -> Vec<String> {
        vec![
            "--foreground".into(),
            "--config-dir".into(),
            self.config_dir(node).display().to_string(),
            "--node-name".into(),
            node.name().into(),
            "--state-dir".into(),
            self.state_dir(node).display().to_string(),
            "--run-dir".into(),
            self.run_dir(node).display().to_string(),
        ]
    }

    /// Starts hbd on `node` (output appended to its `hbd.log`). Without `hbd_path`, records why
    /// and returns. A daemon that exits within 200 ms is recorded as exited, not an error.
    pub fn start_hbd(&mut self, node: Node) -> Result<()> {
        let i = node.index();
        let Some(hbd) = self.rec.spec.hbd_path.clone() else {
            self.rec.hbd_notes[i] = "no hbd binary given".into();
            return Ok(());
        };
        if let Some(pid) = self.hbd_pid(node) {
            bail!("hbd already runs on {node} (pid {pid})");
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))?;
        let mut child = self
            .node_command(node, &hbd, &self.hbd_args(node))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} on {node}", hbd.display()))?;
        let pid = child.id();
        self.note(monotonic_ns(), format!("hbd started on {node} (pid {pid})"));
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = child.try_wait()? {
            self.rec.hbd_pids[i] = None;
            self.rec.hbd_notes[i] = format!(
                "exited at once ({status}); see {}",
                self.log_path(node).display()
            );
        } else {
            self.rec.hbd_pids[i] = Some(pid);
            self.rec.hbd_notes[i] = String::new();
            self.children[i] = Some(child);
        }
        self.save_state()
    }

    /// hbd's pid on `node` while it runs.
    pub fn hbd_pid(&mut self, node: Node) -> Option<u32> {
        let i = node.index();
        if let Some(child) = &mut self.children[i]
            && let Ok(Some(status)) = child.try_wait()
        {
            self.children[i] = None;
            self.rec.hbd_pids[i] = None;
            self.rec.hbd_notes[i] = format!("exited ({status})");
        }
        self.rec.hbd_pids[i].filter(|p| pid_alive(*p))
    }

    /// SIGKILLs hbd on `node` (if it runs) and returns the CLOCK_MONOTONIC time of the kill.
    pub fn kill_hbd(&mut self, node: Node) -> Result<u64> {
        let i = node.index();
        let at = monotonic_ns();
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            child.wait()?;
        } else if let Some(pid) = self.rec.hbd_pids[i].filter(|p| pid_alive(*p)) {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
        }
        self.rec.hbd_pids[i] = None;
        self.rec.hbd_notes[i] = "killed (SIGKILL)".into();
        self.note(at, format!("hbd on {node} SIGKILLed"));
        self.save_state()?;
        Ok(at)
    }

    /// Sends `signal` to hbd on `node` (e.g. SIGSTOP / SIGCONT to freeze and thaw it). Returns
    /// the time it was sent; an error if hbd does not run there.
    pub fn signal_hbd(&mut self, node: Node, signal: nix::sys::signal::Signal) -> Result<u64> {
        let Some(pid) = self.hbd_pid(node) else {
            bail!("hbd does not run on {node}");
        };
        let at = monotonic_ns();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(at)
    }

    /// SIGTERMs hbd on `node` and waits up to `timeout` for it to exit (a clean stop).
    pub fn stop_hbd(&mut self, node: Node, timeout: Duration) -> Result<u64> {
        let at = monotonic_ns();
        let Some(pid) = self.hbd_pid(node) else {
            return Ok(at);
        };
        let pid_t = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGTERM)?;
        self.note(at, format!("hbd on {node} sent SIGTERM (clean stop)"));
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.hbd_pid(node).is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.hbd_pid(node).is_some() {
            bail!("hbd on {node} (pid {pid}) still runs {timeout:?} after SIGTERM");
        }
        self.rec.hbd_notes[node.index()] = "stopped (SIGTERM)".into();
        self.save_state()?;
        Ok(at)
    }

    /// Sets link `link` (1 or 2) of `node` down or up at the bridge (the cable is pulled or
    /// plugged back: the node's `ethN` loses or regains carrier). Returns the time just before
    /// the `ip` command (the change takes effect inside it).
    pub fn set_link(&self, node: Node, link: u8, up: bool) -> Result<u64> {
        let port = format!("{}-e{link}", node.name());
        cmd(
            "ip",
            &[
                "-n",
                &self.bridge_netns(),
                "link",
                "set",
                &port,
                if up { "up" } else { "down" },
            ],
        )?;
        let at = monotonic_ns();
        let state = if up { "plugged back" } else { "pulled" };
        self.note(at, format!("{node} eth{link} cable {state}"));
        Ok(at)
    }

    /// Empties `node`'s neighbour (ARP/NDP) table, as a reboot does. A node that "reboots" in
    /// the lab keeps its network namespace, and with it neighbour entries left INCOMPLETE while
    /// its links were down (by TCP retransmissions of connections it had when it died): such an
    /// entry sends its next ARP probe only when its retransmit timer fires (up to 1 s), which
    /// would delay the node's first answers after it comes back by that much.
    pub fn forget_neighbours(&self, node: Node) -> Result<()> {
        cmd("ip", &["-n", &self.netns(node), "neigh", "flush", "all"])?;
        Ok(())
    }

    /// Makes `node`'s resource script fail every `op` (`start` or `stop`) from now on
    /// (`fail = true`), or behave again. Returns the time it took effect.
    pub fn set_resource_fault(&self, node: Node, op: ResourceOp, fail: bool) -> Result<u64> {
        let flag = self.node_dir(node).join(match op {
            ResourceOp::Start => "fail-start",
            ResourceOp::Stop => "fail-stop",
        });
        if fail {
            fs::write(&flag, b"")?;
        } else if let Err(e) = fs::remove_file(&flag)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("removing {}", flag.display()));
        }
        Ok(monotonic_ns())
    }

    /// Pulls all of `node`'s cables at the same instant: one `ip -batch` in the bridges'
    /// namespace sets every bridge port of the node down. Returns the time just before the
    /// command ran (the links go down within it).
    pub fn pull_all_cables(&self, node: Node) -> Result<u64> {
        let batch: String = (1..=self.rec.spec.links)
            .map(|l| format!("link set {}-e{l} down\n", node.name()))
            .collect();
        let path = self.node_dir(node).join("links-down.batch");
        fs::write(&path, batch).with_context(|| format!("writing {}", path.display()))?;
        let at = monotonic_ns();
        cmd(
            "ip",
            &[
                "-n",
                &self.bridge_netns(),
                "-batch",
                &path.display().to_string(),
            ],
        )?;
        let links: Vec<String> = (1..=self.rec.spec.links)
            .map(|l| format!("eth{l}"))
            .collect();
        self.note(
            at,
            format!("{node} died: cables of {} pulled at once", links.join(", ")),
        );
        Ok(at)
    }

    /// The node dies, as a machine that loses power: all its links go down at the same instant
    /// ([`Lab::pull_all_cables`]), then its hbd is SIGKILLed, then the lab removes the VIP the
    /// dead node's namespace still has configured (a powered-off machine holds no address; the
    /// namespace only outlives the "machine" because the lab reuses it for the reboot). Returns
    /// the time just before the links went down: from then on the node neither sends heartbeats
    /// nor answers for any address.
    ///
    /// The order matters. Killing hbd first and pulling the cables one `ip` command each
    /// afterwards left a window in which the node sent no more heartbeats but its kernel still
    /// answered for the VIP on a live link: when spawning the `ip` commands took longer than the
    /// peer's deadtime (a loaded machine), the peer took over inside that window and both nodes
    /// really held the address on a running interface: a dual owner the lab made, not hbd.
    pub fn kill_node(&mut self, node: Node) -> Result<u64> {
        let at = self.pull_all_cables(node)?;
        self.kill_hbd(node)?;
        self.del_vip(node)?;
        Ok(at)
    }

    /// The node comes back as after a reboot: its Apache stopped, VIP gone and neighbour table
    /// empty (what a reboot leaves), links up, hbd started (with [`ResourceBehaviour::IpOnly`], Apache is started
    /// again before hbd, as a boot would). Returns the time hbd was started.
    pub fn restart_node(&mut self, node: Node) -> Result<u64> {
        // A rebooted machine runs no Apache and holds no VIP.
        let _ = self.httpd(node, "stop")?;
        self.del_vip(node)?;
        self.start_always_on_httpd(node)?;
        for l in 1..=self.rec.spec.links {
            self.set_link(node, l, true)?;
        }
        self.forget_neighbours(node)?;
        let at = monotonic_ns();
        self.note(
            at,
            format!("{node} rebooted: no VIP, links up, starting hbd"),
        );
        self.start_hbd(node)?;
        Ok(at)
    }

    /// Adds the VIP on `node`'s `eth1` by hand (already present is fine).
    pub fn add_vip(&self, node: Node) -> Result<u64> {
        let vip = format!("{}/24", self.vip());
        let out = cmd_status(
            "ip",
            &["-n", &self.netns(node), "addr", "add", &vip, "dev", "eth1"],
        )?;
        if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("exists") {
            bail!(
                "adding {vip} on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let at = monotonic_ns();
        self.note(at, format!("lab added the VIP on {node} by hand"));
        Ok(at)
    }

    /// Removes the VIP from `node`'s `eth1` by hand (absent is fine).
    pub fn del_vip(&self, node: Node) -> Result<u64> {
        if self.holds_vip(node)? {
            let vip = format!("{}/24", self.vip());
            cmd(
                "ip",
                &["-n", &self.netns(node), "addr", "del", &vip, "dev", "eth1"],
            )?;
            let at = monotonic_ns();
            self.note(at, format!("lab removed the VIP from {node}"));
            return Ok(at);
        }
        Ok(monotonic_ns())
    }

    /// Whether `node` holds the VIP on `eth1`.
    pub fn holds_vip(&self, node: Node) -> Result<bool> {
        let out = cmd(
            "ip",
            &[
                "-n",
                &self.netns(node),
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "eth1",
            ],
        )?;
        let needle = format!(" {}/", self.vip());
        Ok(String::from_utf8_lossy(&out.stdout).contains(&needle))
    }

    /// The MAC address of `node`'s `ethN`.
    pub fn node_mac(&self, node: Node, link: u8) -> Result<[u8; 6]> {
        let out = cmd(
            "ip",
            &[
                "-n",
                &self.netns(node),
                "-o",
                "link",
                "show",
                "dev",
                &format!("eth{link}"),
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_once("link/ether ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(probe::parse_mac)
            .with_context(|| format!("no MAC in `{}`", text.trim()))
    }

    /// Runs `resource.d/httpd ACTION` on `node` (as hbd would) and returns its output; exit status
    /// 0 is success (`status`: 0 running, 3 stopped).
    pub fn httpd(&self, node: Node, action: &str) -> Result<Output> {
        let script = self.httpd_script(node);
        self.node_command(node, &script, &[action.to_owned()])
            .output()
            .with_context(|| format!("running {} {action}", script.display()))
    }

    /// Sends one gratuitous ARP for the VIP from `node`'s `eth1`.
    pub fn send_garp(&self, node: Node) -> Result<u64> {
        probe::send_garp(&self.netns(node), "eth1", self.vip())
    }

    /// Moves the resource group by hand, as hbd would: on `from` stop Apache and remove the VIP
    /// (skipped when `from` is dead), on `to` add the VIP, send a gratuitous ARP and start
    /// Apache. Returns the times of each step.
    pub fn move_by_hand(&self, from: Option<Node>, to: Node) -> Result<ManualMove> {
        let released = match from {
            Some(f) => {
                let _ = self.httpd(f, "stop")?;
                Some(self.del_vip(f)?)
            }
            None => None,
        };
        let vip_added = self.add_vip(to)?;
        let garp = self.send_garp(to)?;
        let out = self.httpd(to, "start")?;
        let httpd_started = monotonic_ns();
        Ok(ManualMove {
            released,
            vip_added,
            garp,
            httpd_started,
            httpd_ok: out.status.success(),
        })
    }

    /// Runs the `hbctl` binary on `node`: `hbctl --run-dir RUN_DIR ARGS`.
    pub fn hbctl(&self, node: Node, args: &[&str]) -> Result<Output> {
        let bin = self
            .rec
            .spec
            .hbctl_path
            .clone()
            .context("no hbctl binary in the lab spec")?;
        self.tool(node, &bin, args)
    }

    /// Runs the `hbstat` binary on `node`: `hbstat --run-dir RUN_DIR ARGS`.
    pub fn hbstat(&self, node: Node, args: &[&str]) -> Result<Output> {
        let bin = self
            .rec
            .spec
            .hbstat_path
            .clone()
            .context("no hbstat binary in the lab spec")?;
        self.tool(node, &bin, args)
    }

    fn tool(&self, node: Node, bin: &Path, args: &[&str]) -> Result<Output> {
        let mut all = vec![
            "--run-dir".to_owned(),
            self.run_dir(node).display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.node_command(node, bin, &all)
            .output()
            .with_context(|| format!("running {} on {node}", bin.display()))
    }

    /// Adds an iptables rule inside `node`'s namespace (`iptables ARGS`); the rule goes away
    /// with the namespace.
    pub fn iptables(&self, node: Node, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", "", "iptables", "-w"];
        let ns = self.netns(node);
        all[2] = &ns;
        all.extend_from_slice(args);
        cmd("ip", &all).map(|_| ())
    }

    fn partition_rules(&self, node: Node) -> Vec<Vec<String>> {
        let mut rules = Vec::new();
        for l in 1..=self.rec.spec.links {
            let peer = self.node_addr(node.other(), l).to_string();
            rules.push(vec!["INPUT".into(), "-s".into(), peer.clone()]);
            rules.push(vec!["OUTPUT".into(), "-d".into(), peer]);
            // Broadcast heartbeats leave with no peer address; drop them at the sender, since
            // a receiver-side rule acts after XDP has seen the packet.
            rules.push(vec![
                "OUTPUT".into(),
                "-o".into(),
                format!("eth{l}"),
                "-p".into(),
                "udp".into(),
                "--dport".into(),
                "694".into(),
            ]);
        }
        rules
    }

    fn partition_rules_apply(&self, op: &str) -> Result<u64> {
        for node in Node::ALL {
            for rule in self.partition_rules(node) {
                let mut args: Vec<&str> = vec![op];
                args.extend(rule.iter().map(String::as_str));
                args.extend(["-j", "DROP"]);
                self.iptables(node, &args)?;
            }
        }
        Ok(monotonic_ns())
    }

    /// Partitions n1 from n2 on every link with iptables inside both nodes (traffic between
    /// their addresses and all outgoing heartbeats on UDP 694 dropped); the client still reaches
    /// both. Returns the time it took effect.
    pub fn partition(&self) -> Result<u64> {
        let at = self.partition_rules_apply("-A")?;
        self.note(
            at,
            "partition: n1 and n2 cut off from each other (iptables)",
        );
        Ok(at)
    }

    /// Heals [`Lab::partition`]. Returns the time it took effect.
    pub fn heal(&self) -> Result<u64> {
        let at = self.partition_rules_apply("-D")?;
        self.note(at, "partition healed");
        Ok(at)
    }

    /// Drops each heartbeat `node` sends with probability `p` (on the sender, see
    /// [`Lab::partition`]); `on = false` removes the rule.
    pub fn heartbeat_loss(&self, node: Node, p: f64, on: bool) -> Result<()> {
        self.random_loss(node, &["-p", "udp", "--dport", "694"], p, on)
    }

    /// Drops each packet `node` sends that `matcher` (iptables match arguments, e.g. `-p 112`)
    /// selects, with probability `p` (`iptables -m statistic` on the sender's OUTPUT);
    /// `on = false` removes the rule.
    pub fn random_loss(&self, node: Node, matcher: &[&str], p: f64, on: bool) -> Result<()> {
        let p = format!("{p}");
        let mut args = vec![if on { "-A" } else { "-D" }, "OUTPUT"];
        args.extend_from_slice(matcher);
        args.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability", &p]);
        args.extend_from_slice(&["-j", "DROP"]);
        self.iptables(node, &args)?;
        let what = if on { "on" } else { "off" };
        self.note(
            monotonic_ns(),
            format!(
                "{node}: random loss {p} of sent {} {what}",
                matcher.join(" ")
            ),
        );
        Ok(())
    }

    /// `node`'s `hbd.log`, parsed (`mono=<ns> <LEVEL> <message>` lines only).
    pub fn log(&self, node: Node) -> Result<Vec<timeline::LogLine>> {
        timeline::read_log(&self.log_path(node))
    }

    /// Waits up to `timeout` for a line of `node`'s `hbd.log` at or after `after_ns` whose
    /// message contains `needle`.
    pub fn wait_log(
        &self,
        node: Node,
        needle: &str,
        after_ns: u64,
        timeout: Duration,
    ) -> Result<Option<timeline::LogLine>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log(node)?
                .into_iter()
                .find(|l| l.mono_ns >= after_ns && l.message.contains(needle))
            {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lab's state, read from the system.
    pub fn status(&mut self) -> LabStatus {
        for node in Node::ALL {
            let _ = self.hbd_pid(node);
        }
        status_of(&self.rec)
    }

    /// Leaves the lab running after this process exits (for `cargo xtask lab up`): the state
    /// file stays, and [`cleanup`] removes the lab later.
    pub fn detach(mut self) -> Result<LabRecord> {
        self.save_state()?;
        self.torn_down = true;
        // The children keep running; their handles are just forgotten.
        for c in &mut self.children {
            drop(c.take());
        }
        Ok(self.rec.clone())
    }

    /// Removes everything the lab made (see [`cleanup`]); idempotent.
    pub fn down(&mut self) -> Result<Vec<String>> {
        if self.torn_down {
            return Ok(Vec::new());
        }
        for c in self.children.iter_mut() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let removed = cleanup(&self.rec.spec.prefix)?;
        self.torn_down = true;
        Ok(removed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("[lab] tearing down {:?}: {e:#}", self.rec.spec.prefix);
        }
    }
}

/// Times of a resource group moved by hand ([`Lab::move_by_hand`]), CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy)]
pub struct ManualMove {
    /// VIP removed from the old owner (when it was alive).
    pub released: Option<u64>,
    /// VIP added on the new owner.
    pub vip_added: u64,
    /// Gratuitous ARP sent.
    pub garp: u64,
    /// `httpd start` returned.
    pub httpd_started: u64,
    /// Whether `httpd start` succeeded.
    pub httpd_ok: bool,
}

/// The state of a lab from its state file (`prefix` `""` for xtask's lab), or `None` when no
/// lab with that prefix is recorded.
pub fn recorded_status(prefix: &str) -> Result<Option<LabStatus>> {
    let path = state_path(prefix);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let rec: LabRecord =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(status_of(&rec)))
}

fn status_of(rec: &LabRecord) -> LabStatus {
    let prefix = &rec.spec.prefix;
    let vip = Ipv4Addr::new(10, LAN_OCTET, rec.spec.subnet, VIP_HOST);
    let br = format!("{prefix}hblab-br");
    let nodes = Node::ALL
        .iter()
        .map(|&node| {
            let ns = format!("{prefix}{}", node.name());
            let namespace = ns_exists(&ns);
            let i = node.index();
            let hbd = match rec.hbd_pids[i] {
                Some(pid) if pid_alive(pid) => HbdState::Running(pid),
                Some(pid) => HbdState::NotRunning(format!("pid {pid} gone")),
                None => HbdState::NotRunning(if rec.hbd_notes[i].is_empty() {
                    "not started".into()
                } else {
                    rec.hbd_notes[i].clone()
                }),
            };
            let holds_vip = namespace
                && cmd(
                    "ip",
                    &["-n", &ns, "-o", "-4", "addr", "show", "dev", "eth1"],
                )
                .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/")))
                .unwrap_or(false);
            let pidfile = rec.dir.join(node.name()).join("run").join("httpd.pid");
            let httpd_running = fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(pid_alive);
            let links_up = (1..=rec.spec.links)
                .map(|l| {
                    let port = format!("{}-e{l}", node.name());
                    let up = cmd("ip", &["-n", &br, "-o", "link", "show", "dev", &port])
                        .map(|o| {
                            let t = String::from_utf8_lossy(&o.stdout).into_owned();
                            t.split_once('<')
                                .and_then(|(_, r)| r.split_once('>'))
                                .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
                        })
                        .unwrap_or(false);
                    (l, up)
                })
                .collect();
            NodeStatus {
                node,
                namespace,
                hbd,
                holds_vip,
                httpd_running,
                links_up,
            }
        })
        .collect();
    LabStatus {
        prefix: prefix.clone(),
        vip,
        dir: rec.dir.clone(),
        namespaces_present: namespace_names(prefix)
            .into_iter()
            .filter(|n| ns_exists(n))
            .collect(),
        nodes,
    }
}
