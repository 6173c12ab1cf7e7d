//! The typed configuration. Parsers produce it; the core and the daemon consume it.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

/// A value together with whether it came from the file or is hb's/Heartbeat's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// `true` when the file did not set it.
    pub is_default: bool,
}

impl<T> Setting<T> {
    /// A default value.
    pub fn default_value(value: T) -> Self {
        Self {
            value,
            is_default: true,
        }
    }

    /// A value set by the file.
    pub fn set(value: T) -> Self {
        Self {
            value,
            is_default: false,
        }
    }
}

/// A problem found in a configuration file, reported as `PATH:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// The whole configuration of one node: `ha.cf`, `haresources` and `authkeys` together.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory the files were read from (default `/etc/ha.d`).
    pub config_dir: PathBuf,
    /// This node's name (one of `ha_cf.nodes`).
    pub local_node: String,
    /// `ha.cf`.
    pub ha_cf: HaCf,
    /// `haresources`, one group per line, in file order.
    pub groups: Vec<ResourceGroup>,
    /// `authkeys`.
    pub authkeys: AuthKeys,
    /// Warnings (valid configuration, but worth saying: a switched-off unsupported feature,
    /// `crc` authentication, ...).
    pub warnings: Vec<Diagnostic>,
}

/// `auto_failback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoFailback {
    /// The preferred node takes its groups back when it returns.
    On,
    /// Groups stay where they are.
    Off,
    /// Heartbeat's legacy behaviour: failback unless a node in the cluster does not support
    /// `auto_failback` (hb: treated as `on` in an all-hb cluster).
    Legacy,
}

/// hb's own `xdp` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Use XDP where it attaches, else the socket path, logging which and why.
    Auto,
    /// Refuse to start without XDP.
    On,
    /// Socket path only.
    Off,
}

/// One heartbeat medium (`bcast`, `ucast` or `mcast` line, one per interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// `bcast IFACE...`: broadcast on the interface.
    Bcast {
        /// Interface name.
        iface: String,
    },
    /// `ucast IFACE ADDR`: unicast to the peer address through the interface.
    Ucast {
        /// Interface name.
        iface: String,
        /// Peer address.
        addr: IpAddr,
    },
    /// `mcast IFACE GROUP PORT TTL LOOP`.
    Mcast {
        /// Interface name.
        iface: String,
        /// Multicast group.
        group: IpAddr,
        /// UDP port.
        port: u16,
        /// TTL (0..=255; Heartbeat's own parser takes 0..=4, 0 keeps packets on the host).
        ttl: u8,
        /// Multicast loopback.
        loopback: bool,
    },
}

impl Media {
    /// The interface the medium uses.
    pub fn iface(&self) -> &str {
        match self {
            Media::Bcast { iface } | Media::Ucast { iface, .. } | Media::Mcast { iface, .. } => {
                iface
            }
        }
    }
}

/// `ping_group NAME HOST...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingGroup {
    /// Group name.
    pub name: String,
    /// Members.
    pub hosts: Vec<IpAddr>,
}

/// `respawn USER COMMAND [ARGS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respawn {
    /// User to run as.
    pub user: String,
    /// Command line.
    pub command: String,
}

impl Respawn {
    /// The program and its arguments: the command split on blanks (Heartbeat runs respawn
    /// commands without a shell).
    pub fn argv(&self) -> Vec<&str> {
        self.command.split_ascii_whitespace().collect()
    }

    /// `true` for Heartbeat's ipfail client (a command whose program is `ipfail` or ends in
    /// `/ipfail`, as `respawn hacluster /usr/lib/heartbeat/ipfail`): hbd has ipfail built in,
    /// so such a line is not run as a child. The one rule for every part of hb that needs it.
    pub fn is_ipfail(&self) -> bool {
        self.argv()
            .first()
            .is_some_and(|p| *p == "ipfail" || p.ends_with("/ipfail"))
    }
}

/// hb's `log_format`: the layout of `logfile`/`debugfile` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Heartbeat's ha-log layout, `heartbeat[PID]: YYYY/MM/DD_HH:MM:SS info: message`
    /// (the name in front is `syslog_ident`), so existing log watchers keep matching.
    Heartbeat,
    /// hb's own: `YYYY/MM/DD_HH:MM:SS.mmm hbd[PID]: info: message` (milliseconds).
    Hb,
}

/// The default `syslog_ident`: Heartbeat's.
pub const DEFAULT_SYSLOG_IDENT: &str = "heartbeat";

/// `ha.cf`: Heartbeat's directives plus hb's additions (new names only).
#[derive(Debug, Clone)]
pub struct HaCf {
    /// `keepalive`: interval between heartbeats.
    pub keepalive: Setting<Duration>,
    /// `deadtime`: silence after which a peer is declared dead.
    pub deadtime: Setting<Duration>,
    /// `warntime`: silence after which a late heartbeat is warned about.
    pub warntime: Setting<Duration>,
    /// `initdead`: deadtime at start-up.
    pub initdead: Setting<Duration>,
    /// `udpport` (default 694).
    pub udpport: Setting<u16>,
    /// `bcast`/`ucast`/`mcast` lines, in file order.
    pub media: Vec<Media>,
    /// `node` names in file order, folded to lower case as Heartbeat does.
    pub nodes: Vec<String>,
    /// `auto_failback` (Heartbeat's default: legacy).
    pub auto_failback: Setting<AutoFailback>,
    /// `logfile`.
    pub logfile: Option<PathBuf>,
    /// `debugfile`.
    pub debugfile: Option<PathBuf>,
    /// `logfacility` (syslog facility name, e.g. `local0`); `none` is `None`.
    pub logfacility: Option<String>,
    /// `debug` level (0..=255).
    pub debug: Setting<u8>,
    /// `ping` nodes.
    pub ping: Vec<IpAddr>,
    /// `ping_group` lines.
    pub ping_groups: Vec<PingGroup>,
    /// `deadping`.
    pub deadping: Option<Duration>,
    /// `respawn` lines.
    pub respawn: Vec<Respawn>,
    /// `stonith_host` lines, verbatim after the directive (see [`HaCf::stonith_devices`]).
    pub stonith_hosts: Vec<String>,
    /// hb: `fence_command PROGRAM [ARGS]` lines (the node name is appended), in file order.
    pub fence_commands: Vec<Vec<String>>,
    /// hb: `fence_delay T`: the wait before the first fencing attempt, times this node's
    /// position in the `node` list (default 5 s; the first node does not wait).
    pub fence_delay: Setting<Duration>,
    /// hb: `fence_timeout T`: how long one fencing attempt may take (default 30 s).
    pub fence_timeout: Setting<Duration>,
    /// `watchdog` device.
    pub watchdog: Option<PathBuf>,
    /// `realtime` (default on).
    pub realtime: Setting<bool>,
    /// `hopfudge`.
    pub hopfudge: Setting<u32>,
    /// `autojoin` (none/other/any).
    pub autojoin: Setting<String>,
    /// hb: `xdp auto|on|off` (default auto).
    pub xdp: Setting<XdpMode>,
    /// hb: `garp_count N` gratuitous ARPs per address acquired (default 5).
    pub garp_count: Setting<u32>,
    /// hb: `garp_interval T` between gratuitous ARPs (default 200 ms; the first is immediate).
    pub garp_interval: Setting<Duration>,
    /// hb: `metrics_listen ADDR:PORT` Prometheus endpoint (default off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// hb: `control_socket PATH` (default `<run-dir>/hbd.sock`).
    pub control_socket: Option<PathBuf>,
    /// hb: `ipfail on|off`: hb's own switch for the built-in ipfail (default off; a `respawn`
    /// line running ipfail switches it on too, see [`HaCf::ipfail_enabled`]).
    pub ipfail: Setting<bool>,
    /// hb: `ipfail_settle T`: how long a ping-node count comparison must hold before the built-in
    /// ipfail acts on it (default: the effective `deadping`).
    pub ipfail_settle: Option<Duration>,
    /// hb: `ping_interval T` between ICMP echo requests to each ping node (default `keepalive`).
    pub ping_interval: Option<Duration>,
    /// Every directive line as written, in file order: the name and its value with blanks
    /// collapsed (Heartbeat's parameter table, what `cl_status hbparameter -p NAME` reads; see
    /// [`HaCf::parameter`]).
    pub parameters: Vec<(String, String)>,
    /// Directives present in the file that hb accepts but does not act on (each also a named
    /// warning), in file order: what `hbd --check` lists as not acted on.
    pub ignored: Vec<Ignored>,
    /// hb: `log_format heartbeat|hb` (default heartbeat).
    pub log_format: Setting<LogFormat>,
    /// hb: `syslog_ident NAME` (default `heartbeat`): the syslog identifier, also the name in
    /// front of Heartbeat-layout log lines.
    pub syslog_ident: Setting<String>,
    /// hb: `self_fence_command COMMAND [ARGS]`: how this node fences itself when a resource
    /// cannot be stopped (run without a shell). Default (used when `stonith_host`,
    /// `fence_command` or `watchdog` is set): [`DEFAULT_SELF_FENCE_COMMAND`].
    pub self_fence_command: Option<Vec<String>>,
    /// hb: `control_group GROUP|none`: members of GROUP may ask the control socket read-only
    /// questions (status, statistics: `hbctl status`, `cl_status`, `hbstat`); changes stay
    /// root-only. `None`: not set, meaning [`DEFAULT_CONTROL_GROUP`] when that group exists;
    /// `Some("none")`: root only.
    pub control_group: Option<String>,
    /// hb: `arbiter etcd ENDPOINT[,ENDPOINT...]` and its `arbiter_*` directives: groups are
    /// started only under a lease on an etcd key (see `hb_proto::arbiter`). `None`: no arbiter,
    /// heartbeats alone decide.
    pub arbiter: Option<Arbiter>,
}

/// hb's default `arbiter_prefix`.
pub const DEFAULT_ARBITER_PREFIX: &str = "/hb";
/// hb's default `arbiter_ttl`.
pub const DEFAULT_ARBITER_TTL: Duration = Duration::from_secs(5);
/// Largest `arbiter_ttl` accepted, in seconds.
pub const MAX_ARBITER_TTL_SECS: u64 = 3600;

/// The etcd arbiter (`arbiter etcd ...` and the `arbiter_*` directives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arbiter {
    /// `arbiter etcd ENDPOINT[,ENDPOINT...]`: etcd client URLs, as written (`http://IP:PORT`,
    /// `https://IP:PORT`, or `HOST:PORT`, which etcd-client reads as `http://`, or `https://`
    /// when TLS files are given).
    pub endpoints: Vec<String>,
    /// hb: `arbiter_prefix PREFIX`: the keys are `PREFIX/group/N` for the N-th haresources
    /// group, counted from 0 (default `/hb`; give each cluster sharing an etcd its own).
    pub prefix: Setting<String>,
    /// hb: `arbiter_ttl SECONDS`: the lease's TTL, whole seconds (default 5; the server may
    /// grant a longer one, which is then used).
    pub ttl: Setting<Duration>,
    /// hb: `arbiter_ca FILE`: PEM CA certificate the etcd server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// hb: `arbiter_cert FILE`: PEM client certificate (with `arbiter_key`).
    pub cert: Option<PathBuf>,
    /// hb: `arbiter_key FILE`: PEM private key of `arbiter_cert`.
    pub key: Option<PathBuf>,
}

impl Arbiter {
    /// Whether the client speaks TLS (any of the TLS files is given, or an `https://`
    /// endpoint).
    pub fn tls(&self) -> bool {
        self.ca.is_some()
            || self.cert.is_some()
            || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The etcd key of the `group`-th haresources group (from 0).
    pub fn key_of(&self, group: usize) -> String {
        format!("{}/group/{group}", self.prefix.value.trim_end_matches('/'))
    }
}

/// A directive hb accepts and does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The directive.
    pub directive: String,
    /// Its line in `ha.cf`.
    pub line: usize,
    /// Why it does not matter to hb.
    pub why: String,
}

/// One `stonith_host FROM TYPE PARAMS...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StonithHost {
    /// The node the device is reachable from (`*`: any node).
    pub from: String,
    /// cluster-glue device type (`external/ipmi`, `meatware`, ...).
    pub kind: String,
    /// Parameters, split into words (`"..."` keeps blanks inside one word, quotes removed).
    pub params: Vec<String>,
}

impl StonithHost {
    /// Whether `node` may use the device.
    pub fn usable_from(&self, node: &str) -> bool {
        self.from == "*" || self.from.eq_ignore_ascii_case(node)
    }
}

/// Splits a line into words at blanks; `"..."` keeps blanks inside a word (quotes removed).
pub fn split_quoted(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if !quoted && (c == ' ' || c == '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The self-fence used when fencing is configured without a `self_fence_command`: a forced
/// reboot, no unit shutdown and no unmounting (resources that cannot be stopped would hang an
/// orderly one).
pub const DEFAULT_SELF_FENCE_COMMAND: &[&str] = &["reboot", "-f", "-f"];

/// The group given read-only control-socket access when `control_group` is not set
/// (Heartbeat's `haclient`, whose members run `cl_status`).
pub const DEFAULT_CONTROL_GROUP: &str = "haclient";

impl HaCf {
    /// The value of directive `name` as written in `ha.cf` (the last line naming it), as
    /// Heartbeat's `hbparameter` gives it (`keepalive` -> `200ms`); `None` when the file does
    /// not set it.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `stonith_host` lines, parsed.
    pub fn stonith_devices(&self) -> Vec<StonithHost> {
        self.stonith_hosts
            .iter()
            .filter_map(|l| {
                let mut w = split_quoted(l).into_iter();
                Some(StonithHost {
                    from: w.next()?,
                    kind: w.next()?,
                    params: w.collect(),
                })
            })
            .collect()
    }

    /// Whether any fencing (`stonith_host` or `fence_command`) is configured.
    pub fn fencing_configured(&self) -> bool {
        !self.stonith_hosts.is_empty() || !self.fence_commands.is_empty()
    }

    /// `deadping`, or `deadtime` when not set (Heartbeat's default).
    pub fn effective_deadping(&self) -> Duration {
        self.deadping.unwrap_or(self.deadtime.value)
    }

    /// `ping_interval`, or `keepalive` when not set (Heartbeat pings at the keepalive rate).
    pub fn effective_ping_interval(&self) -> Duration {
        self.ping_interval.unwrap_or(self.keepalive.value)
    }

    /// `ipfail_settle`, or the effective `deadping` when not set.
    pub fn effective_ipfail_settle(&self) -> Duration {
        self.ipfail_settle
            .unwrap_or_else(|| self.effective_deadping())
    }

    /// The first `respawn` line that runs ipfail ([`Respawn::is_ipfail`]).
    pub fn ipfail_respawn(&self) -> Option<&Respawn> {
        self.respawn.iter().find(|r| r.is_ipfail())
    }

    /// Whether the built-in ipfail runs: `ipfail on`, or a `respawn` line running ipfail (unless
    /// `ipfail off` is set explicitly).
    pub fn ipfail_enabled(&self) -> bool {
        if self.ipfail.is_default {
            self.ipfail_respawn().is_some()
        } else {
            self.ipfail.value
        }
    }

    /// Number of ping nodes: each `ping` address and each `ping_group` counts as one.
    pub fn ping_node_count(&self) -> usize {
        self.ping.len() + self.ping_groups.len()
    }

    /// The command this node fences itself with when a group cannot be stopped:
    /// `self_fence_command`, or [`DEFAULT_SELF_FENCE_COMMAND`] when fencing is configured
    /// otherwise (`stonith_host`, `fence_command` or a `watchdog`); `None` when nothing is
    /// configured: then a group whose stop fails is kept and retried.
    pub fn self_fence(&self) -> Option<Vec<String>> {
        if let Some(c) = &self.self_fence_command {
            return Some(c.clone());
        }
        if self.fencing_configured() || self.watchdog.is_some() {
            return Some(
                DEFAULT_SELF_FENCE_COMMAND
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            );
        }
        None
    }

    /// `respawn` lines hbd runs as children (every line but ipfail's, see
    /// [`Respawn::is_ipfail`]).
    pub fn respawn_children(&self) -> impl Iterator<Item = &Respawn> {
        self.respawn.iter().filter(|r| !r.is_ipfail())
    }
}

/// `IPaddr` or `IPaddr2` (same arguments; both manage the address with netlink in hb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddrAgent {
    /// `IPaddr`.
    IpAddr,
    /// `IPaddr2`.
    IpAddr2,
}

/// One resource of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `IPaddr::ip[/cidr[/iface[:label][/broadcast]]]`, `IPaddr::ip/cidr/broadcast` (or a bare
    /// IP).
    IpAddr {
        /// Which agent was named.
        agent: IpAddrAgent,
        /// The address.
        addr: IpAddr,
        /// Prefix length; `None` means derive it from the interface route (Heartbeat's way).
        prefix: Option<u8>,
        /// Interface; `None` means the interface whose network contains the address.
        iface: Option<String>,
        /// IPv4 broadcast address.
        broadcast: Option<IpAddr>,
        /// The address label (`eth0:0` from `.../eth0:0`; always `iface:something`), set as
        /// the address's `IFA_LABEL` as Heartbeat's `IPaddr` (an `ifconfig eth0:0` alias) and
        /// `IPaddr2` (`ip addr add ... label eth0:0`) do.
        label: Option<String>,
    },
    /// `Filesystem::device::mountpoint::fstype[::options]`.
    Filesystem {
        /// Device (or `host:/export`).
        device: String,
        /// Mount point.
        mountpoint: PathBuf,
        /// File system type.
        fstype: String,
        /// Mount options.
        options: Option<String>,
    },
    /// Any other name: an init-style script called with its arguments then
    /// `start`/`stop`/`status`.
    Script {
        /// The name as written (`httpd`).
        name: String,
        /// Arguments (`name::arg1::arg2`).
        args: Vec<String>,
        /// Resolved path: `<config-dir>/resource.d/NAME`, else `/etc/init.d/NAME`.
        path: PathBuf,
    },
}

impl Resource {
    /// Heartbeat's spelling of the resource (`IPaddr::10.0.0.100/24/eth1`, `httpd`).
    pub fn describe(&self) -> String {
        match self {
            Resource::IpAddr {
                agent,
                addr,
                prefix,
                iface,
                broadcast,
                label,
            } => {
                let mut s = match agent {
                    IpAddrAgent::IpAddr => format!("IPaddr::{addr}"),
                    IpAddrAgent::IpAddr2 => format!("IPaddr2::{addr}"),
                };
                if prefix.is_some() || iface.is_some() {
                    // `ip//eth0` (no netmask, an interface) is Heartbeat's too.
                    s.push('/');
                    if let Some(p) = prefix {
                        s.push_str(&p.to_string());
                    }
                    if let Some(i) = label.as_ref().or(iface.as_ref()) {
                        s.push_str(&format!("/{i}"));
                    }
                    // Heartbeat also documents `ip/cidr/broadcast` (no interface).
                    if let Some(b) = broadcast {
                        s.push_str(&format!("/{b}"));
                    }
                }
                s
            }
            Resource::Filesystem {
                device,
                mountpoint,
                fstype,
                options,
            } => {
                let mut s = format!("Filesystem::{device}::{}::{fstype}", mountpoint.display());
                if let Some(o) = options {
                    s.push_str(&format!("::{o}"));
                }
                s
            }
            Resource::Script { name, args, .. } => {
                let mut s = name.clone();
                for a in args {
                    s.push_str("::");
                    s.push_str(a);
                }
                s
            }
        }
    }
}

/// One `haresources` line: a group owned by one node at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// The node that owns the group when it is up (first word of the line, lower case).
    pub preferred_node: String,
    /// Resources, started left to right and stopped right to left.
    pub resources: Vec<Resource>,
    /// Line in `haresources` where the group starts.
    pub line: usize,
}

impl ResourceGroup {
    /// Resources in start order: left to right, as written.
    pub fn start_order(&self) -> impl DoubleEndedIterator<Item = &Resource> {
        self.resources.iter()
    }

    /// Resources in stop order: right to left.
    pub fn stop_order(&self) -> impl DoubleEndedIterator<Item = &Resource> {
        self.resources.iter().rev()
    }

    /// Heartbeat's name for the group: its resources joined by spaces.
    pub fn describe(&self) -> String {
        self.resources
            .iter()
            .map(Resource::describe)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An `authkeys` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// CRC32: detects corruption, gives no security.
    Crc,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256 (hb's addition).
    Sha256,
}

/// One `N method [key]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// Key id (0..=255; Heartbeat accepts 0..=15).
    pub id: u8,
    /// Method.
    pub method: AuthMethod,
    /// Secret (empty for `crc`).
    pub secret: Vec<u8>,
}

/// `authkeys`: the active key signs; every listed key verifies (key rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKeys {
    /// `auth N`: the key used to sign.
    pub active: u8,
    /// Every key by id.
    pub keys: BTreeMap<u8, AuthKey>,
}

/// A node's 32-bit wire id: FNV-1a of its name (the name as in `ha.cf`'s `node` line).
pub fn node_id(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
