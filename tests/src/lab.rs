//! The failover lab: two cluster nodes (`n1`, `n2`), or three with [`LabSpec::nodes`] 3 (`n3`
//! too), and a client, each a network namespace, joined by bridges that live in a namespace of
//! their own (never in the host's).
//!
//! Topology for a lab with prefix `P` and subnet octet `y`:
//! - `Phblab-br` holds bridge `br1` (the LAN, link 1) and, with two links, `br2` (a
//!   heartbeat-only link between the nodes).
//! - `Pn1`, `Pn2` (and `Pn3`): `eth1` on `br1` (`10.213.y.1/24`, `10.213.y.2/24`,
//!   `10.213.y.3/24`), optionally `eth2` on `br2` (`10.214.y.1/24`, ...). The VIP is
//!   `10.213.y.100/24` on `eth1`.
//! - `Pclient`: `eth1` on `br1` (`10.213.y.10/24`).
//!
//! Every node's `ha.cf` lists all the lab's nodes in order (`node n1`, `node n2`, `node n3`) and
//! heartbeats by broadcast on every link; `haresources` prefers `n1`. [`Node::ALL`] is the
//! two-node set the two-node tests and xtask (bench, soak, demo) use; code that must work for
//! either size loops over [`Lab::nodes`] and [`Lab::peers`].
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
//!
//! This file holds the lab's vocabulary (nodes, spec, record) and the command helpers; `impl Lab`
//! is split by concern: `setup` (up, down, cleanup, state file), `files` (each node's config and
//! scripts), `layout` (names, addresses, paths, journal), `nodes` (processes on the nodes),
//! `links` (cables, partitions, loss), `vip` (the address by hand), `arbiter` (etcd in the
//! client's namespace) and `status` (logs and the lab's state read from the system).

mod arbiter;
mod files;
mod layout;
mod links;
mod nodes;
pub mod probe;
mod setup;
mod status;
pub mod timeline;
mod vip;

use std::{
    fmt, fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

pub use arbiter::EtcdTls;
pub use setup::cleanup;
pub use status::{HbdState, LabStatus, NodeStatus, recorded_status};
pub use vip::ManualMove;

/// Second octet of the LAN subnet (`10.213.y.0/24`, link 1, shared with the client).
pub const LAN_OCTET: u8 = 213;
/// Second octet of the heartbeat-only subnet (`10.214.y.0/24`, link 2, nodes only).
pub const HB_OCTET: u8 = 214;
/// Host part of the VIP in the LAN subnet.
pub const VIP_HOST: u8 = 100;
/// Host part of the client's address in the LAN subnet.
pub const CLIENT_HOST: u8 = 10;
/// `arbiter_ttl` of a lab with [`LabSpec::arbiter`] (etcd 3.4's floor is about 2 s).
pub const LAB_ARBITER_TTL: Duration = Duration::from_secs(2);
/// etcd's client port in the lab.
pub const ETCD_PORT: u16 = 2379;
/// Where state files of labs are kept (one per prefix).
pub const STATE_DIR: &str = "/run/hb-lab";
/// The text every node's `index.html` starts with, followed by the node's name.
pub const PAGE_PREFIX: &str = "hb lab node ";

/// One of the cluster nodes: a lab has two ([`Node::ALL`]) or three ([`LabSpec::nodes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Node {
    /// `n1`, the preferred owner of the resource group.
    N1,
    /// `n2`, the standby (with three nodes, the first in `node` order after `n1`).
    N2,
    /// `n3`, the third node of a three-node lab (last in `node` order).
    N3,
}

impl Node {
    /// The nodes of a two-node lab (the default), `n1` first.
    pub const ALL: [Node; 2] = [Node::N1, Node::N2];

    /// Every node a lab can have, in `node` order; a lab of `k` nodes has the first `k`
    /// ([`Lab::nodes`]).
    pub const UP_TO_THREE: [Node; 3] = [Node::N1, Node::N2, Node::N3];

    /// The node's name as in `ha.cf` (`n1`, `n2`, `n3`), also its hostname.
    pub fn name(self) -> &'static str {
        match self {
            Node::N1 => "n1",
            Node::N2 => "n2",
            Node::N3 => "n3",
        }
    }

    /// The other node of a two-node lab. `n3` has no single other node: it panics for `n3`
    /// (three-node code uses [`Lab::peers`]).
    pub fn other(self) -> Node {
        match self {
            Node::N1 => Node::N2,
            Node::N2 => Node::N1,
            Node::N3 => panic!("n3 has no single other node: use Lab::peers"),
        }
    }

    /// Host part of the node's addresses (`.1`, `.2`, `.3`).
    pub fn host(self) -> u8 {
        match self {
            Node::N1 => 1,
            Node::N2 => 2,
            Node::N3 => 3,
        }
    }

    /// The node's position in [`Node::UP_TO_THREE`] (`n1` 0, `n2` 1, `n3` 2), the index of
    /// per-node arrays.
    pub fn index(self) -> usize {
        match self {
            Node::N1 => 0,
            Node::N2 => 1,
            Node::N3 => 2,
        }
    }

    /// Parses `n1` / `n2` / `n3`.
    pub fn from_name(name: &str) -> Option<Node> {
        match name {
            "n1" => Some(Node::N1),
            "n2" => Some(Node::N2),
            "n3" => Some(Node::N3),
            _ => None,
        }
    }
}

/// The first `count` nodes in `node` order (two when `count` is not 2 or 3, which
/// [`Lab::up`] refuses).
pub(crate) fn first_nodes(count: u8) -> &'static [Node] {
    match count {
        3 => &Node::UP_TO_THREE,
        _ => &Node::ALL,
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
    /// Every node starts and stops Apache.
    #[default]
    Ok,
    /// `start` fails (exit 1, Apache not started) on `n2`: the failed-takeover scenario.
    FailStartOnN2,
    /// The address only: `haresources` is `n1 IPaddr::VIP/24/eth1` (no `httpd`), and Apache
    /// runs on every node all the time, as keepalived set-ups run it: started at lab-up before
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
    /// Extra resources appended to the group's `haresources` line (every node), e.g.
    /// `Filesystem::tmpfs::/mnt/x::tmpfs` or the name of a script in [`LabSpec::scripts`].
    #[serde(default)]
    pub extra_resources: Vec<String>,
    /// Extra resource scripts, `(name, body)`, written executable to every node's
    /// `resource.d/`.
    #[serde(default)]
    pub scripts: Vec<(String, String)>,
    /// Run etcd in the client's namespace and configure every node with it as its arbiter
    /// (`arbiter etcd http://CLIENT:2379`, `arbiter_ttl 2`, see [`Lab::start_etcd`]).
    #[serde(default)]
    pub arbiter: bool,
    /// How many cluster nodes: 2 (`n1`, `n2`, the default) or 3 (`n3` too, host `.3` on every
    /// link). Every node's `ha.cf` lists all of them; `haresources` prefers `n1`.
    #[serde(default = "two_nodes")]
    pub nodes: u8,
}

fn two_nodes() -> u8 {
    2
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
            arbiter: false,
            nodes: 2,
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
    /// Per node (`n1`, `n2`, `n3`, by [`Node::index`]): hbd's pid while it was started by
    /// this lab.
    pub hbd_pids: [Option<u32>; 3],
    /// Per node: why hbd is not running (not configured, exited at once with status...).
    pub hbd_notes: [String; 3],
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
    /// Per node (by [`Node::index`]): hbd's process while this lab runs it.
    children: [Option<Child>; 3],
    /// etcd, when [`LabSpec::arbiter`] is set.
    etcd: Option<Child>,
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
