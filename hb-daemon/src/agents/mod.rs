//! Resource agents: how a resource group is started and stopped (the core decides when).
//! Owns how resources are run; never decides when (the core does) and never blocks the
//! heartbeat thread (it runs on its own runtime).
//!
//! - `IPaddr`/`IPaddr2`: the address is added with rtnetlink (already present is success; IPv6
//!   with `nodad`), then announced at once from a raw `AF_PACKET` socket: gratuitous ARP in
//!   both request and reply forms for IPv4, an unsolicited neighbour advertisement (Override
//!   flag) for IPv6. The announcement repeats `garp_count` times `garp_interval` apart in the
//!   background; the resource counts as started once the address is added and the first
//!   announcement is out. Without a prefix or interface, the interface whose configured
//!   network contains the address supplies them (Heartbeat's findif). Release removes the
//!   address (already absent is success) and cancels pending repeats.
//! - Init-style scripts (`resource.d/NAME`, else `/etc/init.d/NAME`, resolved by the config
//!   parser) are called as `PATH ARGS... start|stop|status`, supervised: own process group,
//!   stdin null, output logged line by line, SIGKILL to the group at the timeout, counted as
//!   finished when the script exits even if a daemon it started keeps its stdout. As
//!   Heartbeat's ResourceManager does, `start` is preceded by
//!   `status`, and a script whose status output says it runs
//!   ([`heartbeat_says_running`]) is not started again. Scripts (and mount commands) get the
//!   `HA_*` environment of [`script_env`].
//! - `Filesystem`: `mount -t FSTYPE [-o OPTS] DEV MOUNTPOINT` and `umount MOUNTPOINT`,
//!   idempotent, supervised like scripts. When `umount` fails and processes use the mount,
//!   they get SIGTERM, then SIGKILL (as the OCF Filesystem agent's `fuser -km`), and the
//!   unmount is tried again.
//!
//! Failure handling: [`Agents::start_group`] stops what it started when a resource fails, so the
//! group is released for a peer to try. A failing stop is retried ([`STOP_ATTEMPTS`] times) and
//! each failure logged at error level.

mod addr;
pub mod fence;
mod fs;
pub mod packet;
mod script;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use hb_proto::{
    Timestamp,
    config::{Resource, ResourceGroup},
    node::ResourceTimes,
};

pub use script::heartbeat_says_running;

/// How often a failing stop is tried before giving up on that resource.
pub const STOP_ATTEMPTS: u32 = 3;
/// Pause between stop attempts.
pub const STOP_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// CLOCK_MONOTONIC now (the daemon's one clock read, [`crate::net::monotonic_now`]).
pub(crate) use crate::net::monotonic_now as now;

/// What [`Agents::prepare_group`] found, for the start that follows: per resource of the group,
/// for scripts, whether their `status` said they run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    running: Vec<Option<bool>>,
}

impl Prepared {
    /// The prepared status of the group's resource `i` (`None`: not a script, or not prepared).
    pub fn running_of(&self, i: usize) -> Option<bool> {
        self.running.get(i).copied().flatten()
    }
}

/// How [`Agents::start_group_abandonable`] ended.
#[derive(Debug)]
pub enum StartOutcome {
    /// The start ran to its end (a failure included: what it started is stopped).
    Completed(Result<GroupReport, AgentError>),
    /// The start was abandoned; the result is that of stopping what it had started.
    Abandoned(Result<GroupReport, AgentError>),
}

/// Tells a running start to give up; made with [`abandon_pair`].
#[derive(Debug)]
pub struct Abandon(tokio::sync::watch::Receiver<bool>);

/// The sending side of an [`Abandon`].
#[derive(Debug)]
pub struct AbandonHandle(tokio::sync::watch::Sender<bool>);

/// A handle to abandon a start and the receiver the start watches.
pub fn abandon_pair() -> (AbandonHandle, Abandon) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    (AbandonHandle(tx), Abandon(rx))
}

impl AbandonHandle {
    /// Abandons the start (no effect once it ended).
    pub fn abandon(&self) {
        let _ = self.0.send(true);
    }
}

impl Abandon {
    /// One that is never set.
    pub fn never() -> Self {
        abandon_pair().1
    }

    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once set; never when the handle is gone unset.
    async fn wait(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What went wrong with a resource. Every variant names the resource in Heartbeat's spelling
/// (`IPaddr::10.0.0.100/24/eth1`, `httpd`).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The rtnetlink connection could not be opened.
    #[error("opening the rtnetlink connection: {0}")]
    Connection(#[source] std::io::Error),
    /// A netlink request about an address or link failed.
    #[error("{resource}: netlink: {source}")]
    Netlink {
        /// The resource.
        resource: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The named interface does not exist.
    #[error("{resource}: no interface named {iface}")]
    NoSuchInterface {
        /// The resource.
        resource: String,
        /// The interface.
        iface: String,
    },
    /// No interface has a network containing the address (findif failed).
    #[error("{resource}: no interface has a network containing {addr}; give prefix and interface")]
    NoInterface {
        /// The resource.
        resource: String,
        /// The address.
        addr: IpAddr,
    },
    /// The address is not configured here (reannounce of an address we do not hold).
    #[error("{resource}: {addr} is not configured on this node")]
    NotHeld {
        /// The resource.
        resource: String,
        /// The address.
        addr: IpAddr,
    },
    /// Sending the announcement (raw socket) failed.
    #[error("{resource}: announcing {addr}: {source}")]
    Announce {
        /// The resource.
        resource: String,
        /// The address.
        addr: IpAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A script or mount command could not be run.
    #[error("{resource}: running {program} {action}: {source}")]
    Spawn {
        /// The resource.
        resource: String,
        /// The program.
        program: PathBuf,
        /// `start`, `stop`, `status`, `mount`, `umount`.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A script or mount command exited unsuccessfully.
    #[error("{resource}: {action} failed ({status}): {output}")]
    Failed {
        /// The resource.
        resource: String,
        /// `start`, `stop`, `mount`, `umount`.
        action: String,
        /// Exit code or signal, in words.
        status: String,
        /// What it printed (stdout and stderr), trimmed.
        output: String,
    },
    /// A script or mount command ran past its timeout and was killed.
    #[error("{resource}: {action} timed out after {timeout:?} and was killed")]
    Timeout {
        /// The resource.
        resource: String,
        /// `start`, `stop`, `status`, `mount`, `umount`.
        action: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Reading the mount table failed.
    #[error("{resource}: reading the mount table: {source}")]
    MountTable {
        /// The resource.
        resource: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// The resource the error is about (empty for [`AgentError::Connection`]).
    pub fn resource(&self) -> &str {
        match self {
            AgentError::Connection(_) => "",
            AgentError::Netlink { resource, .. }
            | AgentError::NoSuchInterface { resource, .. }
            | AgentError::NoInterface { resource, .. }
            | AgentError::NotHeld { resource, .. }
            | AgentError::Announce { resource, .. }
            | AgentError::Spawn { resource, .. }
            | AgentError::Failed { resource, .. }
            | AgentError::Timeout { resource, .. }
            | AgentError::MountTable { resource, .. } => resource,
        }
    }
}

/// Timings of one resource in a start or stop (CLOCK_MONOTONIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceReport {
    /// Heartbeat's spelling of the resource.
    pub name: String,
    /// When the agent began.
    pub started: Timestamp,
    /// When it finished (for an address: the first announcement is out).
    pub finished: Timestamp,
    /// Addresses on start: when the address was added ("VIP added").
    pub address_added: Option<Timestamp>,
    /// Addresses on start: when the first gratuitous ARP / unsolicited NA was sent. `None` when
    /// the interface has no MAC or sending failed (logged at error level; the address stays).
    pub first_announce: Option<Timestamp>,
    /// Stop only: the error of a resource that could not be stopped after all attempts.
    pub error: Option<String>,
}

/// Per-resource timings of a group start or stop, in the order the resources were handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReport {
    /// One entry per resource handled.
    pub resources: Vec<ResourceReport>,
}

impl GroupReport {
    /// What the core's takeover timeline needs: when the last resource had started and when
    /// the first announcement went out.
    pub fn times(&self) -> ResourceTimes {
        ResourceTimes {
            finished: self.resources.iter().map(|r| r.finished).max(),
            first_announce: self.resources.iter().filter_map(|r| r.first_announce).min(),
        }
    }
}

/// The resource agents of one node: an rtnetlink connection (its task runs on the runtime
/// that created it, in the network namespace of the thread that created it), the announcement
/// settings and the script timeout.
pub struct Agents {
    netlink: addr::Netlink,
    connection: tokio::task::JoinHandle<()>,
    announcer: addr::Announcer,
    script_timeout: Duration,
    /// Added to the environment of every script and mount command ([`script_env`]).
    script_env: Vec<(String, String)>,
}

/// Where Heartbeat's resource agents keep their state files (`HA_RSCTMP`, the default of
/// resource-agents' `ocf-directories`); hbd creates it before the first script runs.
pub const HA_RSCTMP: &str = "/run/resource-agents";

/// The `HA_*` environment Heartbeat 3.0.6 gives resource scripts (as recorded from a running
/// Heartbeat pair: `tests/golden/heartbeat/envdump.env`), for this configuration:
///
/// | variable | value |
/// |---|---|
/// | `HA_CURHOST` | this node's name |
/// | `HA_DIR` | the configuration directory (`/etc/ha.d`) |
/// | `HA_FUNCS` | `HA_DIR/shellfuncs` |
/// | `HA_RESOURCEDIR` | `HA_DIR/resource.d` |
/// | `HA_RCDIR` | `HA_DIR/rc.d` |
/// | `HA_RSCTMP` | [`HA_RSCTMP`] |
/// | `HA_LOGFILE` | ha.cf `logfile` (absent when not set) |
/// | `HA_DEBUGLOG` | ha.cf `debugfile`, else `/dev/null` |
/// | `HA_LOGFACILITY` | ha.cf `logfacility` (absent when not set or `none`) |
/// | `HA_DEBUG` | ha.cf `debug` (absent when 0) |
/// | `HA_LOGD` | `no` (hb has no logging daemon) |
/// | `HA_DATEFMT` | `%Y/%m/%d_%T` and a tab |
/// | `HA_NICEFAILBACK` | `yes` (Heartbeat 3 sets it for every `auto_failback` mode) |
pub fn script_env(config: &hb_proto::config::Config) -> Vec<(String, String)> {
    let h = &config.ha_cf;
    let dir = config.config_dir.display().to_string();
    let mut env = vec![
        ("HA_CURHOST".to_owned(), config.local_node.clone()),
        ("HA_DIR".to_owned(), dir.clone()),
        ("HA_FUNCS".to_owned(), format!("{dir}/shellfuncs")),
        ("HA_RESOURCEDIR".to_owned(), format!("{dir}/resource.d")),
        ("HA_RCDIR".to_owned(), format!("{dir}/rc.d")),
        ("HA_RSCTMP".to_owned(), HA_RSCTMP.to_owned()),
        (
            "HA_DEBUGLOG".to_owned(),
            h.debugfile
                .as_ref()
                .map_or_else(|| "/dev/null".to_owned(), |p| p.display().to_string()),
        ),
        ("HA_LOGD".to_owned(), "no".to_owned()),
        ("HA_DATEFMT".to_owned(), "%Y/%m/%d_%T\t".to_owned()),
        ("HA_NICEFAILBACK".to_owned(), "yes".to_owned()),
    ];
    if let Some(f) = &h.logfile {
        env.push(("HA_LOGFILE".to_owned(), f.display().to_string()));
    }
    if let Some(f) = &h.logfacility {
        env.push(("HA_LOGFACILITY".to_owned(), f.clone()));
    }
    if h.debug.value > 0 {
        env.push(("HA_DEBUG".to_owned(), h.debug.value.to_string()));
    }
    env
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("announcer", &self.announcer)
            .field("script_timeout", &self.script_timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.announcer.cancel_all();
        self.connection.abort();
    }
}

/// What an `IPaddr` resource resolved to.
struct ResolvedAddr {
    index: u32,
    name: String,
    mac: Option<[u8; 6]>,
    prefix: u8,
}

impl Agents {
    /// Opens the rtnetlink connection (spawned on the current tokio runtime) and keeps the
    /// announcement settings: `garp_count` announcements per address (at least one), the first
    /// immediate, `garp_interval` apart; scripts and mounts killed after `script_timeout`.
    pub async fn new(
        garp_count: u32,
        garp_interval: Duration,
        script_timeout: Duration,
    ) -> Result<Self, AgentError> {
        let (conn, handle, _messages) =
            rtnetlink::new_connection().map_err(AgentError::Connection)?;
        let connection = tokio::spawn(conn);
        Ok(Self {
            netlink: addr::Netlink::new(handle),
            connection,
            announcer: addr::Announcer::new(garp_count.max(1), garp_interval),
            script_timeout,
            script_env: Vec::new(),
        })
    }

    /// Runs the self-fence command (`fence_command`, default a forced reboot), supervised
    /// like a script; `Ok` when it exited 0.
    pub async fn fence(&self, command: &[String]) -> Result<(), AgentError> {
        let Some((program, args)) = command.split_first() else {
            return Err(AgentError::Failed {
                resource: "fence".into(),
                action: "fence".into(),
                status: "no command".into(),
                output: String::new(),
            });
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_checked("fence", Path::new(program), &args, "fence")
            .await
    }

    /// Gratuitous ARP settings for addresses acquired or re-announced from now on (a reload).
    pub fn set_garp(&self, garp_count: u32, garp_interval: Duration) {
        self.announcer.set(garp_count, garp_interval);
    }

    /// Gives every script and mount command `env` (see [`script_env`]) on top of hbd's own
    /// environment, and creates [`HA_RSCTMP`] when `env` names it.
    pub fn with_script_env(mut self, env: Vec<(String, String)>) -> Self {
        if let Some((_, dir)) = env.iter().find(|(k, _)| k == "HA_RSCTMP")
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!("creating {dir} (HA_RSCTMP for resource scripts): {e}");
        }
        self.script_env = env;
        self
    }

    /// Starts a whole group left to right. On the first failure, stops what was started
    /// (right to left, the failed resource included since it may be half started) and returns
    /// the error. Returns per-resource timings (for the takeover timeline / hbstat).
    pub async fn start_group(&self, group: &ResourceGroup) -> Result<GroupReport, AgentError> {
        match self.start_group_abandonable(group, Abandon::never()).await {
            StartOutcome::Completed(result) | StartOutcome::Abandoned(result) => result,
        }
    }

    /// [`Agents::start_group`] that gives up when `abandon` is set (the core abandoned the
    /// start: a live peer holds the group). Then no further resource is started, the addresses
    /// the start already added are removed at once (while a script in progress runs on), the
    /// resource in progress is let finish, and what was started is stopped right to left;
    /// [`StartOutcome::Abandoned`] carries that clean-up's result.
    pub async fn start_group_abandonable(
        &self,
        group: &ResourceGroup,
        abandon: Abandon,
    ) -> StartOutcome {
        self.start_group_prepared(group, abandon, Prepared::default())
            .await
    }

    /// The checks a start of `group` runs first and that change nothing, run ahead of the start
    /// (the core's `Output::Prepare`: a peer is releasing the group to this node): each
    /// script's `status` ([`Agents::script_says_running`]).
    pub async fn prepare_group(&self, group: &ResourceGroup) -> Prepared {
        let mut running = Vec::with_capacity(group.resources.len());
        for res in &group.resources {
            running.push(match res {
                Resource::Script { args, path, .. } => {
                    let name = res.describe();
                    let r = self.script_says_running(&name, path, args).await;
                    tracing::info!(
                        resource = %name,
                        "status before start, run while the peer releases: {}",
                        if r { "running" } else { "not running" }
                    );
                    Some(r)
                }
                _ => None,
            });
        }
        Prepared { running }
    }

    /// [`Agents::start_group_abandonable`] with what [`Agents::prepare_group`] found: a script
    /// whose status was run there is not asked again.
    pub async fn start_group_prepared(
        &self,
        group: &ResourceGroup,
        mut abandon: Abandon,
        prepared: Prepared,
    ) -> StartOutcome {
        let mut report = GroupReport::default();
        for (i, res) in group.resources.iter().enumerate() {
            if abandon.is_set() {
                return StartOutcome::Abandoned(self.stop_started(group, i, &[]).await);
            }
            let name = res.describe();
            tracing::info!(resource = %name, "starting");
            let started = now();
            let mut start = Box::pin(self.start_resource(res, &name, prepared.running_of(i)));
            let outcome = tokio::select! {
                biased;
                r = &mut start => Some(r),
                () = abandon.wait() => None,
            };
            let Some(outcome) = outcome else {
                // An address being added is given up at once (its add, if already sent, is
                // undone by the removal below: one netlink connection keeps the order); a
                // script or mount in progress is let finish, then stopped.
                let address = matches!(res, Resource::IpAddr { .. });
                tracing::warn!(
                    resource = %name,
                    "start abandoned: removing the group's addresses now, then stopping what was started"
                );
                let running = if address {
                    drop(start);
                    None
                } else {
                    Some(start)
                };
                let mut removed = vec![];
                let upto = if address { i + 1 } else { i };
                for (j, prev) in group.resources[..upto].iter().enumerate().rev() {
                    if matches!(prev, Resource::IpAddr { .. }) {
                        if let Err(e) = self.stop_with_retry(prev, &prev.describe()).await {
                            tracing::error!(resource = %prev.describe(), "{e}");
                        }
                        removed.push(j);
                    }
                }
                if let Some(script) = running {
                    let _ = script.await;
                }
                return StartOutcome::Abandoned(self.stop_started(group, i + 1, &removed).await);
            };
            drop(start);
            match outcome {
                Ok((address_added, first_announce)) => {
                    let finished = now();
                    tracing::info!(
                        resource = %name,
                        "started in {:?}",
                        finished.saturating_since(started)
                    );
                    report.resources.push(ResourceReport {
                        name: name.clone(),
                        started,
                        finished,
                        address_added,
                        first_announce,
                        error: None,
                    });
                }
                Err(e) => {
                    tracing::error!(resource = %name, "start failed: {e}; releasing the group");
                    for prev in group.resources[..=i].iter().rev() {
                        let prev_name = prev.describe();
                        if let Err(se) = self.stop_with_retry(prev, &prev_name).await {
                            tracing::error!(
                                resource = %prev_name,
                                "could not stop after a failed group start: {se}"
                            );
                        }
                    }
                    return StartOutcome::Completed(Err(e));
                }
            }
        }
        StartOutcome::Completed(Ok(report))
    }

    /// Stops a whole group right to left, continuing past failures (each stop tried
    /// [`STOP_ATTEMPTS`] times); returns the first error.
    pub async fn stop_group(&self, group: &ResourceGroup) -> Result<GroupReport, AgentError> {
        self.stop_started(group, group.resources.len(), &[]).await
    }

    /// Stops the first `count` resources of `group` right to left, but those in `skip`
    /// (already stopped), continuing past failures; returns the first error.
    async fn stop_started(
        &self,
        group: &ResourceGroup,
        count: usize,
        skip: &[usize],
    ) -> Result<GroupReport, AgentError> {
        let mut report = GroupReport::default();
        let mut first_error = None;
        for (j, res) in group.resources[..count].iter().enumerate().rev() {
            if skip.contains(&j) {
                continue;
            }
            let name = res.describe();
            tracing::info!(resource = %name, "stopping");
            let started = now();
            let outcome = self.stop_with_retry(res, &name).await;
            let finished = now();
            let error = match outcome {
                Ok(()) => {
                    tracing::info!(
                        resource = %name,
                        "stopped in {:?}",
                        finished.saturating_since(started)
                    );
                    None
                }
                Err(e) => {
                    let text = e.to_string();
                    first_error.get_or_insert(e);
                    Some(text)
                }
            };
            report.resources.push(ResourceReport {
                name,
                started,
                finished,
                address_added: None,
                first_announce: None,
                error,
            });
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Re-sends the announcements (count and interval per config) for every address of the
    /// group now, without touching the addresses. Used when another node falsely claims one
    /// of our addresses. An address not configured here is an error ([`AgentError::NotHeld`]);
    /// the others are still announced.
    pub async fn reannounce(&self, group: &ResourceGroup) -> Result<(), AgentError> {
        let mut first_error = None;
        for res in &group.resources {
            let Resource::IpAddr { addr, iface, .. } = res else {
                continue;
            };
            let name = res.describe();
            let result = self.reannounce_one(&name, *addr, iface.as_deref()).await;
            if let Err(e) = result {
                tracing::error!(resource = %name, "reannounce: {e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn reannounce_one(
        &self,
        name: &str,
        addr: IpAddr,
        iface: Option<&str>,
    ) -> Result<(), AgentError> {
        let netlink = |source| AgentError::Netlink {
            resource: name.to_owned(),
            source,
        };
        let only = match iface {
            Some(i) => Some(self.iface_index(name, i).await?),
            None => None,
        };
        let holders = addr::holders(&self.netlink, addr).await.map_err(netlink)?;
        let Some(index) = holders.into_iter().find(|h| only.is_none_or(|o| o == *h)) else {
            return Err(AgentError::NotHeld {
                resource: name.to_owned(),
                addr,
            });
        };
        let (ifname, mac) = addr::link_info(&self.netlink.handle, index)
            .await
            .map_err(netlink)?;
        let Some(mac) = mac else {
            tracing::info!(resource = name, "{ifname} has no MAC: nothing to announce");
            return Ok(());
        };
        self.announcer
            .announce(name, index, &ifname, mac, addr)
            .await
            .map_err(|source| AgentError::Announce {
                resource: name.to_owned(),
                addr,
                source,
            })?;
        Ok(())
    }

    async fn iface_index(&self, name: &str, iface: &str) -> Result<u32, AgentError> {
        addr::link_index(&self.netlink.handle, iface)
            .await
            .map_err(|source| AgentError::Netlink {
                resource: name.to_owned(),
                source,
            })?
            .ok_or_else(|| AgentError::NoSuchInterface {
                resource: name.to_owned(),
                iface: iface.to_owned(),
            })
    }

    /// Interface and prefix for an address: as configured, else from the networks configured
    /// on the node (findif).
    async fn resolve(
        &self,
        name: &str,
        addr: IpAddr,
        prefix: Option<u8>,
        iface: Option<&str>,
    ) -> Result<ResolvedAddr, AgentError> {
        let netlink = |source| AgentError::Netlink {
            resource: name.to_owned(),
            source,
        };
        let only = match iface {
            Some(i) => Some(self.iface_index(name, i).await?),
            None => None,
        };
        let (index, prefix) = match (only, prefix) {
            (Some(index), Some(prefix)) => (index, prefix),
            _ => {
                let networks: Vec<_> = addr::dump_addresses(&self.netlink)
                    .await
                    .map_err(netlink)?
                    .into_iter()
                    .map(|(i, a, p, _)| (i, a, p))
                    .collect();
                let (index, found) =
                    addr::find_network(&networks, addr, only).ok_or_else(|| {
                        AgentError::NoInterface {
                            resource: name.to_owned(),
                            addr,
                        }
                    })?;
                (index, prefix.unwrap_or(found))
            }
        };
        let (ifname, mac) = addr::link_info(&self.netlink.handle, index)
            .await
            .map_err(netlink)?;
        Ok(ResolvedAddr {
            index,
            name: ifname,
            mac,
            prefix,
        })
    }

    /// Starts one resource; for addresses returns when it was added and first announced.
    /// `prepared`: a script's status before start, already run ([`Agents::prepare_group`]).
    async fn start_resource(
        &self,
        res: &Resource,
        name: &str,
        prepared: Option<bool>,
    ) -> Result<(Option<Timestamp>, Option<Timestamp>), AgentError> {
        match res {
            Resource::IpAddr {
                addr,
                prefix,
                iface,
                broadcast,
                label,
                ..
            } => {
                let r = self.resolve(name, *addr, *prefix, iface.as_deref()).await?;
                addr::add_address(
                    &self.netlink.handle,
                    r.index,
                    *addr,
                    r.prefix,
                    *broadcast,
                    label.as_deref(),
                )
                .await
                .map_err(|source| AgentError::Netlink {
                    resource: name.to_owned(),
                    source,
                })?;
                let added = now();
                match label {
                    Some(l) => tracing::info!(
                        resource = name,
                        "hb: address {addr} added on {} (/{}, label {l})",
                        r.name,
                        r.prefix
                    ),
                    None => tracing::info!(
                        resource = name,
                        "hb: address {addr} added on {} (/{})",
                        r.name,
                        r.prefix
                    ),
                }
                let Some(mac) = r.mac else {
                    tracing::info!(
                        resource = name,
                        "{} has no MAC: nothing to announce",
                        r.name
                    );
                    return Ok((Some(added), None));
                };
                match self
                    .announcer
                    .announce(name, r.index, &r.name, mac, *addr)
                    .await
                {
                    Ok(sent) => {
                        let what = if addr.is_ipv4() {
                            "gratuitous ARP"
                        } else {
                            "unsolicited neighbour advertisement"
                        };
                        tracing::info!(resource = name, "hb: {what} sent for {addr} on {}", r.name);
                        Ok((Some(added), Some(sent)))
                    }
                    Err(e) => {
                        // The address works; peers learn it by ARP once their entries expire.
                        tracing::error!(resource = name, "announcing {addr} on {}: {e}", r.name);
                        Ok((Some(added), None))
                    }
                }
            }
            Resource::Filesystem {
                device,
                mountpoint,
                fstype,
                options,
            } => {
                if self.mounted(name, mountpoint)? {
                    tracing::info!(resource = name, "{} already mounted", mountpoint.display());
                    return Ok((None, None));
                }
                if let Err(e) = tokio::fs::create_dir_all(mountpoint).await {
                    tracing::warn!(resource = name, "creating {}: {e}", mountpoint.display());
                }
                let mp = mountpoint.to_string_lossy();
                let args = fs::mount_args(device, &mp, fstype, options.as_deref());
                self.run_checked(name, Path::new("mount"), &args, "mount")
                    .await?;
                Ok((None, None))
            }
            Resource::Script { args, path, .. } => {
                // Heartbeat's ResourceManager: `we_own_resource $j || doscript $j start`.
                let running = match prepared {
                    Some(r) => r,
                    None => self.script_says_running(name, path, args).await,
                };
                if running {
                    tracing::info!(
                        resource = name,
                        "already running (its status says so): not started again"
                    );
                    return Ok((None, None));
                }
                let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
                all.push("start");
                self.run_checked(name, path, &all, "start").await?;
                Ok((None, None))
            }
        }
    }

    async fn stop_with_retry(&self, res: &Resource, name: &str) -> Result<(), AgentError> {
        let mut attempt = 1;
        loop {
            match self.stop_resource(res, name).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!(
                        resource = name,
                        "stop failed (attempt {attempt}/{STOP_ATTEMPTS}): {e}"
                    );
                    if attempt >= STOP_ATTEMPTS {
                        return Err(e);
                    }
                }
            }
            attempt += 1;
            tokio::time::sleep(STOP_RETRY_PAUSE).await;
        }
    }

    async fn stop_resource(&self, res: &Resource, name: &str) -> Result<(), AgentError> {
        match res {
            Resource::IpAddr { addr, iface, .. } => {
                self.announcer.cancel(*addr);
                let only = match iface {
                    Some(i) => match addr::link_index(&self.netlink.handle, i).await {
                        Ok(Some(index)) => Some(index),
                        // The interface is gone, and the address with it.
                        Ok(None) => return Ok(()),
                        Err(source) => {
                            return Err(AgentError::Netlink {
                                resource: name.to_owned(),
                                source,
                            });
                        }
                    },
                    None => None,
                };
                let removed = addr::remove_address(&self.netlink, *addr, only)
                    .await
                    .map_err(|source| AgentError::Netlink {
                        resource: name.to_owned(),
                        source,
                    })?;
                if removed == 0 {
                    tracing::info!(resource = name, "{addr} already absent");
                } else {
                    tracing::info!(resource = name, "{addr} removed");
                }
                Ok(())
            }
            Resource::Filesystem { mountpoint, .. } => {
                if !self.mounted(name, mountpoint)? {
                    tracing::info!(resource = name, "{} not mounted", mountpoint.display());
                    return Ok(());
                }
                let mp = mountpoint.to_string_lossy();
                let first = self
                    .run_checked(name, Path::new("umount"), &[&mp], "umount")
                    .await;
                let Err(e) = first else { return Ok(()) };
                // Busy: end what uses it (as the OCF agent's fuser -km), then try again.
                let users = fs::users_of(mountpoint);
                if users.is_empty() {
                    return Err(e);
                }
                let list = users
                    .iter()
                    .map(|u| format!("{}[{}]", u.comm, u.pid))
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::warn!(
                    resource = name,
                    "hb: {mp} is busy: ending the processes using it: {list}"
                );
                fs::end_processes(&users).await;
                self.run_checked(name, Path::new("umount"), &[&mp], "umount")
                    .await
            }
            Resource::Script { args, path, .. } => {
                let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
                all.push("stop");
                self.run_checked(name, path, &all, "stop").await
            }
        }
    }

    /// `SCRIPT ARGS status` before a start, judged as Heartbeat's ResourceManager does
    /// ([`script::heartbeat_says_running`] on its stdout, exit code ignored). A status that
    /// cannot be run or times out counts as not running (Heartbeat's backquotes give an empty
    /// string then), so the start goes ahead.
    async fn script_says_running(&self, name: &str, path: &Path, args: &[String]) -> bool {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push("status");
        match script::run(name, path, &all, &self.script_env, self.script_timeout).await {
            Ok(done) => script::heartbeat_says_running(&done.stdout),
            Err(e) => {
                let why = match e {
                    script::RunError::Spawn(e) | script::RunError::Wait(e) => e.to_string(),
                    script::RunError::Timeout(_) => {
                        format!("timed out after {:?}", self.script_timeout)
                    }
                };
                tracing::warn!(resource = name, "status before start: {why}; starting it");
                false
            }
        }
    }

    fn mounted(&self, name: &str, mountpoint: &Path) -> Result<bool, AgentError> {
        fs::is_mounted(mountpoint).map_err(|source| AgentError::MountTable {
            resource: name.to_owned(),
            source,
        })
    }

    /// Runs a supervised command that must exit 0.
    async fn run_checked(
        &self,
        name: &str,
        program: &Path,
        args: &[&str],
        action: &str,
    ) -> Result<(), AgentError> {
        match script::run(name, program, args, &self.script_env, self.script_timeout).await {
            Ok(done) if done.status.success() => Ok(()),
            Ok(done) => Err(AgentError::Failed {
                resource: name.to_owned(),
                action: action.to_owned(),
                status: exit_words(done.status),
                output: done.output.trim().to_owned(),
            }),
            Err(script::RunError::Timeout(output)) => {
                if !output.trim().is_empty() {
                    tracing::error!(
                        resource = name,
                        "{action} output before the timeout: {}",
                        output.trim()
                    );
                }
                Err(AgentError::Timeout {
                    resource: name.to_owned(),
                    action: action.to_owned(),
                    timeout: self.script_timeout,
                })
            }
            Err(script::RunError::Spawn(source) | script::RunError::Wait(source)) => {
                Err(AgentError::Spawn {
                    resource: name.to_owned(),
                    program: program.to_path_buf(),
                    action: action.to_owned(),
                    source,
                })
            }
        }
    }
}

/// An exit status in words (`exit 1`, `signal 9`).
pub(crate) fn exit_words(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: T) {}
    fn is_send_sync<T: Send + Sync>() {}

    /// Compile-time check: the agents can be shared across tasks of a multi-threaded runtime
    /// and their futures spawned there.
    #[allow(dead_code)]
    fn futures_are_send(agents: &Agents, group: &ResourceGroup) {
        is_send_sync::<Agents>();
        is_send(agents.start_group(group));
        is_send(agents.stop_group(group));
        is_send(agents.reannounce(group));
    }

    #[test]
    fn exit_status_in_words() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            exit_words(std::process::ExitStatus::from_raw(1 << 8)),
            "exit 1"
        );
        assert_eq!(
            exit_words(std::process::ExitStatus::from_raw(9)),
            "signal 9"
        );
    }
}
