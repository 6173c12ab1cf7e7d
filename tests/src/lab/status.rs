//! What a lab looks like from outside: the nodes' hbd logs ([`Lab::log`], [`Lab::wait_log`]) and
//! the lab's state read from the system ([`Lab::status`], [`recorded_status`]: namespaces, hbd,
//! VIP holders, Apache, links).

use std::{
    fmt, fs,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    LAN_OCTET, Lab, LabRecord, Node, VIP_HOST, cmd, first_nodes,
    layout::{namespace_names, state_path},
    ns_exists, pid_alive, timeline,
};

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

impl Lab {
    /// `node`'s `hbd.log`, parsed (`mono=<ns> <LEVEL> <message>` lines only).
    pub fn log(&self, node: Node) -> Result<Vec<timeline::LogLine>> {
        timeline::read_log(&self.log_path(node))
    }

    /// Waits up to `timeout` for a line of `node`'s `hbd.log` at or after `after_ns` whose
    /// message contains `needle`.
    ///
    /// Reads only what was appended since its last read (a soak's log grows to megabytes, and
    /// parsing it all every few ms on a loaded machine took longer than some timeouts), and
    /// always reads once more after the timeout has passed, so a line written while a read ran
    /// is never missed.
    pub fn wait_log(
        &self,
        node: Node,
        needle: &str,
        after_ns: u64,
        timeout: Duration,
    ) -> Result<Option<timeline::LogLine>> {
        let path = self.log_path(node);
        let deadline = Instant::now() + timeout;
        let mut pos = 0u64;
        loop {
            let expired = Instant::now() >= deadline;
            if let Some(l) = read_new_lines(&path, &mut pos)?
                .into_iter()
                .find(|l| l.mono_ns >= after_ns && l.message.contains(needle))
            {
                return Ok(Some(l));
            }
            if expired {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lab's state, read from the system.
    pub fn status(&mut self) -> LabStatus {
        for &node in self.nodes() {
            let _ = self.hbd_pid(node);
        }
        status_of(&self.rec)
    }
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
    let nodes = first_nodes(rec.spec.nodes)
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

/// The complete lines appended to the log at `path` since byte `pos`, parsed; advances `pos`
/// past them (a missing file is empty; a file shorter than `pos` was replaced: read from 0).
fn read_new_lines(path: &std::path::Path, pos: &mut u64) -> Result<Vec<timeline::LogLine>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len < *pos {
        *pos = 0;
    }
    f.seek(SeekFrom::Start(*pos))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Ok(Vec::new());
    };
    *pos += end as u64 + 1;
    Ok(timeline::parse_log(&String::from_utf8_lossy(
        &bytes[..=end],
    )))
}
