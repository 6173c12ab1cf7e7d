//! hbd's main loop: the tokio driver around [`hb_proto::node::Node`].
//! Owns the sockets, the XDP ring, the timer and the channels to the agents thread; decides
//! nothing: bytes, time and results go into the core, and it carries out what comes out.
//!
//! ```text
//!  send thread "hb-send" (SCHED_FIFO 51 when `realtime on`; see crate::sender)
//!    clock_nanosleep(TIMER_ABSTIME) to Node::heartbeat_deadline
//!    -> lock: Node::handle_heartbeat_timeout, Node::poll_transmit -> encode + sign -> MediumSender
//!    -> send jitter per link ──> SendStats;  other outputs left queued, main loop woken
//!
//!                 main loop (current_thread runtime, SCHED_FIFO 50 when `realtime on`)
//!  XDP ring ───────┐
//!  UDP receivers ──┼──> Node::handle_datagram (decode, authenticate, replay rule, state machine)
//!  timer ──────────┤        (every queued heartbeat is drained before Node::handle_timeout)
//!  control socket ─┤
//!  send thread ────┤
//!  signals ────────┘    Node::poll_output -> Transmit (announcements): encode + sign -> MediumSender
//!                                         -> Received: per-heartbeat figures ──> Metrics
//!                                         -> Resource / Reannounce ──> agents thread
//!  agents thread (multi_thread runtime): netlink, gratuitous ARP, scripts ──> results back
//! ```
//!
//! Everything slow (resource scripts, netlink, ARP repeats) runs on the agents thread so it never
//! delays a heartbeat; `respawn` children are supervised on a thread of their own.
//!
//! Signals: SIGTERM and SIGINT stop hbd cleanly (groups released, peers told); SIGHUP (also
//! what a closed terminal sends) and `hbctl reload` re-read the configuration
//! ([`Driver::reload`]); SIGPIPE is ignored (Rust's runtime), so a closed pipe on stderr only
//! loses log lines. Liveness is judged on kernel arrival times: before the core's timer is
//! handled, the ring buffer and every socket are drained, so a daemon that was not scheduled for
//! a while still sees the heartbeats that arrived meanwhile with their true arrival times.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, MutexGuard, atomic::Ordering},
    time::Duration,
};

use hb_common::{EVENT_DEADLINE, EVENT_PACKET, RingEvent};
use hb_proto::{
    Timestamp,
    config::{Config, LiveChange, LoadOptions, XdpMode, node_id, plan_reload},
    node::{
        ClusterStatus, Command, Event, Level, LinkId, Node, Output, Reception, Rejection,
        ResourceOp,
    },
    ping::PingEvent,
};
use thiserror::Error;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    agents::{
        AbandonHandle, Agents, GroupReport, Prepared, StartOutcome, abandon_pair,
        fence::{self, FenceDevice},
    },
    control::{self, ControlCall, Request, Response},
    generation_file,
    icmp::{self, Pinger},
    metrics::Metrics,
    net::{self, Datagram, MediumSender, Receiver, monotonic_now},
    notify::{self, Notifier},
    pidfile,
    respawn::{self, Respawner},
    sender::{self, SendPath, Shared, Tx},
    watchdog::Watchdog,
    xdp::{self, RingReader, XdpHandle},
};

/// How long a resource script may run before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Most threads of the agents' blocking pool (tokio's default is 512, each a resident 2 MiB
/// stack under `realtime`): gratuitous ARP sends, each well under a millisecond.
pub const AGENTS_BLOCKING_THREADS: usize = 4;

/// Most datagrams read from one socket in one turn of the loop (the first one the socket arm
/// woke up for, and then without waiting). Reading in batches keeps the per-datagram cost of a
/// flood small (one turn, one timer, one poll of every future per batch, not per datagram);
/// the bound keeps every turn short, so the next turn's deadline check comes soon.
pub const READ_BUDGET: usize = 64;

/// Most records taken from the XDP ring buffer in one turn; what is left is taken at the start
/// of the next turn (before it waits) and before every timer.
pub const RING_BUDGET: usize = 256;

/// The reason under which `hbstat` and Prometheus (`hb_packets_rejected_total`) show the
/// datagrams to the heartbeat port that the XDP program dropped as not hb messages.
pub const XDP_DROPPED_REASON: &str = "xdp_not_heartbeat";

/// Most datagrams read from each socket before the core judges a deadline. Bounded by the
/// socket's receive buffer anyway; the bound only guarantees the drain ends under a flood.
pub const DRAIN_BUDGET: usize = 1024;

/// After a clean stop (groups released, shutdown notice sent), how long hbd keeps its XDP
/// program attached before it exits. Detaching XDP from a veth holds the kernel's rtnl lock for
/// about 14 ms (measured: the peer's address add took 14-15 ms instead of 0.4-0.7 ms when it ran
/// during the detach); rtnl is one lock for the whole kernel, so where both nodes share a kernel
/// (network namespaces, containers: the lab and the benchmarks) the peer's takeover would wait
/// behind our exit. The peer starts acquiring within about a millisecond of the notice; this
/// keeps the detach out of that window. Separate machines lose nothing but this delay of the
/// exit.
pub const XDP_DETACH_DELAY: Duration = Duration::from_millis(200);

/// Command-line options of the daemon (see `hbd --help`).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Directory holding ha.cf, haresources and authkeys.
    pub config_dir: PathBuf,
    /// This node's name.
    pub node_name: String,
    /// Persistent state (generation counter).
    pub state_dir: PathBuf,
    /// Control socket and pid file.
    pub run_dir: PathBuf,
}

/// Why hbd could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is invalid (each problem as `PATH:LINE: message`).
    #[error("invalid configuration:\n{0}")]
    Config(String),
    /// Setting something up failed.
    #[error("{0}")]
    Setup(String),
    /// A clean stop gave up on groups whose stop kept failing (no fencing configured).
    #[error("stopped with resources left running: {}", .0.join("; "))]
    LeftRunning(Vec<String>),
    /// A resource could not be stopped and this node fenced itself.
    #[error("a resource could not be stopped: this node fenced itself (fence command ran)")]
    Fenced,
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// How hbd (and `hbd --check`) loads `config_dir` for `node`: with this machine's addresses, so
/// that a `ucast` to one of them is left out with its warning.
pub fn load_options(config_dir: &Path, node: &str) -> LoadOptions {
    let mut opts = LoadOptions::new(config_dir, node);
    opts.local_addrs = net::local_addresses();
    opts
}

/// Loads the configuration, printing nothing (the caller reports errors).
pub fn load_config(opts: &DaemonOptions) -> Result<Config, DaemonError> {
    hb_proto::config::load(&load_options(&opts.config_dir, &opts.node_name)).map_err(|diags| {
        DaemonError::Config(
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// A job for the agents thread.
#[derive(Debug)]
enum AgentJob {
    Run {
        group: usize,
        op: ResourceOp,
    },
    Reannounce {
        group: usize,
    },
    /// Run the checks of the group's next start now (a peer is releasing it to us).
    Prepare {
        group: usize,
    },
    /// What `Prepare` found is void.
    Unprepare {
        group: usize,
    },
    /// Fence (reset) a peer with this node's devices.
    Fence {
        peer: String,
        timeout: Duration,
    },
    /// New gratuitous ARP settings (a reload).
    Garp {
        count: u32,
        interval: Duration,
    },
    /// Fence this node (a group could not be stopped).
    SelfFence {
        command: Vec<String>,
    },
}

/// What `AgentJob::Prepare` found for a group, filled in when its checks are done.
type PreparedSlot = Arc<tokio::sync::Mutex<Option<Prepared>>>;

/// A group start on the agents' runtime: the handle to abandon it, and its task, which yields
/// the clean-up's result when it was abandoned.
type RunningStart = (
    AbandonHandle,
    JoinHandle<Option<Result<GroupReport, String>>>,
);

/// A finished job.
#[derive(Debug)]
enum AgentDone {
    Group {
        group: usize,
        op: ResourceOp,
        result: Result<GroupReport, String>,
    },
    Fence {
        peer: String,
        result: Result<(), String>,
    },
    SelfFence {
        result: Result<(), String>,
    },
}

/// Starts the agents thread with its own runtime; returns the job sender and result receiver.
fn spawn_agents(
    config: &Config,
) -> Result<
    (
        mpsc::UnboundedSender<AgentJob>,
        mpsc::UnboundedReceiver<AgentDone>,
    ),
    DaemonError,
> {
    let (job_tx, mut job_rx) = mpsc::unbounded_channel::<AgentJob>();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<AgentDone>();
    let groups = Arc::new(config.groups.clone());
    let fence_devices = Arc::new(FenceDevice::for_local(config));
    let garp_count = config.ha_cf.garp_count.value;
    let garp_interval = config.ha_cf.garp_interval.value;
    let script_env = crate::agents::script_env(config);
    let realtime = config.ha_cf.realtime.value;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("hb-agents".to_owned())
        .spawn(move || {
            if realtime {
                agents_realtime();
            }
            // With `realtime` (mlockall, MCL_FUTURE) every thread's 2 MiB stack is resident
            // from its creation, and glibc keeps the stacks of exited threads for reuse: the
            // agents' resident memory grows by 2 MiB for each thread beyond the most that
            // ever ran at once. The blocking pool (gratuitous ARP sends) is bounded so that
            // this stays small: its tasks are short.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(AGENTS_BLOCKING_THREADS)
                .thread_name("hb-agents-rt")
                .on_thread_start(move || {
                    if realtime {
                        agents_realtime();
                    }
                })
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("agents runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let agents = match Agents::new(garp_count, garp_interval, SCRIPT_TIMEOUT).await {
                    Ok(a) => Arc::new(a.with_script_env(script_env)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("resource agents: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Starts by group, so that a stop can abandon a start still running: each
                // yields the clean-up's result when it was abandoned.
                let mut starts: HashMap<usize, RunningStart> = HashMap::new();
                // Prepared starts by group (see AgentJob::Prepare): locked while the checks
                // run, so a start that comes meanwhile waits for them instead of running them
                // again.
                let mut prepared: HashMap<usize, PreparedSlot> = HashMap::new();
                while let Some(job) = job_rx.recv().await {
                    match job {
                        AgentJob::Garp { count, interval } => {
                            agents.set_garp(count, interval);
                            continue;
                        }
                        AgentJob::Prepare { group } => {
                            let Some(g) = groups.get(group).cloned() else {
                                continue;
                            };
                            let slot = PreparedSlot::default();
                            let Ok(mut guard) = Arc::clone(&slot).try_lock_owned() else {
                                continue;
                            };
                            prepared.insert(group, slot);
                            let agents = Arc::clone(&agents);
                            tokio::spawn(async move {
                                *guard = Some(agents.prepare_group(&g).await);
                            });
                            continue;
                        }
                        AgentJob::Unprepare { group } => {
                            prepared.remove(&group);
                            continue;
                        }
                        _ => {}
                    }
                    let agents = Arc::clone(&agents);
                    let groups = Arc::clone(&groups);
                    let fence_devices = Arc::clone(&fence_devices);
                    let done_tx = done_tx.clone();
                    if let AgentJob::Run { group, op } = job {
                        let Some(g) = groups.get(group).cloned() else {
                            continue;
                        };
                        match op {
                            ResourceOp::Start => {
                                let (handle, abandon) = abandon_pair();
                                let slot = prepared.remove(&group);
                                let task = tokio::spawn(async move {
                                    let pre = match slot {
                                        Some(s) => s.lock().await.take().unwrap_or_default(),
                                        None => Prepared::default(),
                                    };
                                    match agents.start_group_prepared(&g, abandon, pre).await {
                                        StartOutcome::Completed(result) => {
                                            let _ = done_tx.send(AgentDone::Group {
                                                group,
                                                op,
                                                result: result.map_err(|e| e.to_string()),
                                            });
                                            None
                                        }
                                        StartOutcome::Abandoned(cleanup) => {
                                            Some(cleanup.map_err(|e| e.to_string()))
                                        }
                                    }
                                });
                                starts.insert(group, (handle, task));
                            }
                            ResourceOp::Stop => {
                                prepared.remove(&group);
                                let running = starts.remove(&group);
                                tokio::spawn(async move {
                                    // A start still running is abandoned; its clean-up is
                                    // the stop when it succeeded.
                                    let mut cleaned = None;
                                    if let Some((handle, task)) = running {
                                        handle.abandon();
                                        cleaned = task.await.ok().flatten();
                                    }
                                    let result = match cleaned {
                                        Some(Ok(report)) => Ok(report),
                                        _ => agents.stop_group(&g).await.map_err(|e| e.to_string()),
                                    };
                                    let _ = done_tx.send(AgentDone::Group { group, op, result });
                                });
                            }
                        }
                        continue;
                    }
                    tokio::spawn(async move {
                        match job {
                            AgentJob::Run { .. }
                            | AgentJob::Garp { .. }
                            | AgentJob::Prepare { .. }
                            | AgentJob::Unprepare { .. } => {}
                            AgentJob::Fence { peer, timeout } => {
                                let result = fence::fence(&fence_devices, &peer, timeout).await;
                                let _ = done_tx.send(AgentDone::Fence { peer, result });
                            }
                            AgentJob::Reannounce { group } => {
                                let Some(g) = groups.get(group) else { return };
                                if let Err(e) = agents.reannounce(g).await {
                                    tracing::warn!("reannounce of group {group}: {e}");
                                }
                            }
                            AgentJob::SelfFence { command } => {
                                let result = agents.fence(&command).await;
                                let _ = done_tx.send(AgentDone::SelfFence {
                                    result: result.map_err(|e| e.to_string()),
                                });
                            }
                        }
                    });
                }
            });
        })
        .map_err(setup("spawning the agents thread"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((job_tx, done_rx)),
        Ok(Err(e)) => Err(DaemonError::Setup(e)),
        Err(_) => Err(DaemonError::Setup("the agents thread died".to_owned())),
    }
}

/// SCHED_FIFO priority of the agents threads with `realtime on`: below the main loop (50) and
/// the send thread (51), above everything at normal priority.
pub const AGENTS_PRIORITY: i32 = 40;

/// Puts the calling agents thread (the job loop, the runtime's workers and blocking threads)
/// at SCHED_FIFO [`AGENTS_PRIORITY`] with `SCHED_RESET_ON_FORK`, so what it forks (resource
/// scripts, fence commands) runs at normal priority. A takeover is a chain of hand-offs between
/// these threads (the job, the netlink request and its answer, the gratuitous ARP); at normal
/// priority each waited behind whatever else ran: at 1 kHz on the loaded lab machine the job
/// began 0.1-4.2 ms after the core asked for it. Refused (no CAP_SYS_NICE): said once, and the
/// threads stay at normal priority.
fn agents_realtime() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let param = libc::sched_param {
        sched_priority: AGENTS_PRIORITY,
    };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "realtime: cannot set SCHED_FIFO on the agents threads ({}); takeovers run at normal \
             priority (needs CAP_SYS_NICE)",
            std::io::Error::last_os_error()
        );
    }
}

/// Real-time scheduling and locked memory for the heartbeat path (`realtime on`), with a warning
/// where the machine does not allow it.
fn go_realtime() {
    match sender::set_fifo(50) {
        Ok(()) => tracing::info!("realtime: heartbeat thread runs SCHED_FIFO priority 50"),
        Err(e) => tracing::warn!(
            "realtime: cannot set SCHED_FIFO ({e}); heartbeats run at normal priority \
             (needs CAP_SYS_NICE)"
        ),
    }
    // SAFETY: mlockall has no memory-safety preconditions.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        tracing::info!("realtime: memory locked");
    } else {
        tracing::warn!(
            "realtime: cannot lock memory ({}); pages may be swapped out \
             (needs CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK)",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs hbd until a clean stop. Blocks the calling thread.
pub fn run(opts: &DaemonOptions, config: Config) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup("heartbeat runtime"))?;
    let signals = Signals::install(&rt)?;
    std::fs::create_dir_all(&opts.run_dir).map_err(setup("creating the run directory"))?;
    std::fs::create_dir_all(&opts.state_dir).map_err(setup("creating the state directory"))?;
    let pid_file = pidfile::PidFile::acquire(&opts.run_dir.join(control::PID_NAME))
        .map_err(setup("pid file"))?;
    let generation = generation_file::advance_generation(&opts.state_dir)
        .map_err(setup("generation"))?
        .generation;
    tracing::info!(
        "hb: starting node {} generation {generation} (config {})",
        config.local_node,
        opts.config_dir.display()
    );
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // The agents and respawn threads first, so they do not inherit the heartbeat path's
    // real-time scheduling (the agents set their own, lower, in spawn_agents).
    let (agent_tx, agent_rx) = spawn_agents(&config)?;
    let respawner =
        Respawner::start(respawn::lines_of(&config.ha_cf)).map_err(setup("respawn thread"))?;
    let arbiter = match &config.ha_cf.arbiter {
        Some(a) => {
            tracing::info!(
                "hb: arbiter etcd {} (keys {}, lease TTL {} s)",
                a.endpoints.join(","),
                format!("{}/group/N", a.prefix.value.trim_end_matches('/')),
                a.ttl.value.as_secs()
            );
            Some(
                crate::arbiter::spawn(a, &config.local_node, config.groups.len())
                    .map_err(DaemonError::Setup)?,
            )
        }
        None => None,
    };
    if config.ha_cf.realtime.value {
        go_realtime();
    }
    let result = rt.block_on(async {
        let mut d = Driver::new(opts, config, generation, agent_tx, agent_rx).await?;
        d.respawn = Some(respawner);
        d.arbiter = arbiter;
        d.run(signals).await
    });
    drop(pid_file);
    result
}

/// The signals hbd handles, installed first thing so that none of them can end hbd with its
/// default action while it sets up.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install(rt: &tokio::runtime::Runtime) -> Result<Self, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        let _enter = rt.enter();
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(setup("SIGTERM handler"))?,
            int: signal(SignalKind::interrupt()).map_err(setup("SIGINT handler"))?,
            hup: signal(SignalKind::hangup()).map_err(setup("SIGHUP handler"))?,
        })
    }
}

/// Everything the heartbeat loop owns.
struct Driver {
    opts: DaemonOptions,
    config: Config,
    /// The core, the media sockets and the send thread's statistics (see [`crate::sender`]).
    shared: Arc<Shared>,
    /// The heartbeat send thread.
    send_path: Option<SendPath>,
    metrics: Metrics,
    receivers: Vec<(Receiver, usize)>,
    xdp: Option<XdpHandle>,
    ring: Option<RingReader>,
    /// Why each interface not on the XDP path is on the socket path.
    socket_why: xdp::SocketReasons,
    ifindex_link: HashMap<u32, usize>,
    control_rx: mpsc::Receiver<ControlCall>,
    agent_tx: mpsc::UnboundedSender<AgentJob>,
    agent_rx: mpsc::UnboundedReceiver<AgentDone>,
    started: Timestamp,
    control_path: PathBuf,
    ring_buf: Vec<RingEvent>,
    dgram_buf: Vec<Datagram>,
    pinger: Option<Pinger>,
    ping_buf: Vec<icmp::Reply>,
    respawn: Option<Respawner>,
    control_tx: mpsc::Sender<ControlCall>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    /// The last ring drain stopped at [`RING_BUDGET`]: records are waiting without a wake-up.
    ring_backlog: bool,
    /// The XDP program's drop counter at the last statistics reset.
    xdp_dropped_base: u64,
    /// sd_notify: READY, RELOADING, STOPPING, STATUS, WATCHDOG (see [`crate::notify`]).
    notify: Notifier,
    /// An event may have changed the `STATUS=` line.
    status_dirty: bool,
    /// `watchdog DEVICE`, fed from this loop.
    watchdog: Option<Watchdog>,
    /// The etcd arbiter's thread (`arbiter etcd ...`).
    arbiter: Option<crate::arbiter::ArbiterLink>,
}

fn ifindex(iface: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(iface).ok()
}

/// The key heartbeats are signed with (`auth N` in authkeys).
fn active_key(config: &Config) -> Option<hb_proto::config::AuthKey> {
    config.authkeys.keys.get(&config.authkeys.active).cloned()
}

impl Driver {
    /// The core, locked (the send thread takes the same lock for a few microseconds per
    /// heartbeat; hold it only for calls into the core, never across I/O or logging).
    fn node(&self) -> MutexGuard<'_, Node> {
        sender::lock(&self.shared.node)
    }

    async fn new(
        opts: &DaemonOptions,
        config: Config,
        generation: u64,
        agent_tx: mpsc::UnboundedSender<AgentJob>,
        agent_rx: mpsc::UnboundedReceiver<AgentDone>,
    ) -> Result<Self, DaemonError> {
        let ha = &config.ha_cf;
        let port = ha.udpport.value;

        // Links: media index is the core's LinkId; the first medium on an interface receives
        // for it.
        let mut iface_link = HashMap::new();
        let mut ifindex_link = HashMap::new();
        for (i, m) in ha.media.iter().enumerate() {
            iface_link.entry(m.iface().to_owned()).or_insert(i);
            if let Some(ix) = ifindex(m.iface()) {
                ifindex_link.entry(ix).or_insert(i);
            }
        }
        let mut senders = Vec::new();
        for m in &ha.media {
            match MediumSender::open(m, port) {
                Ok(s) => senders.push(Some(s)),
                Err(e) => {
                    tracing::error!("heartbeat medium on {}: {e}", m.iface());
                    senders.push(None);
                }
            }
        }
        if senders.iter().all(Option::is_none) {
            return Err(DaemonError::Setup(
                "no heartbeat medium could be opened".to_owned(),
            ));
        }
        let mut receivers = Vec::new();
        for spec in net::receiver_specs(&ha.media, port) {
            let Some(&link) = iface_link.get(&spec.iface) else {
                continue;
            };
            match Receiver::open(&spec) {
                Ok(r) => {
                    if let Err(e) = r.ignore_own(node_id(&config.local_node)) {
                        // Only a cost: the core drops our own messages itself.
                        tracing::warn!(
                            "receiving on {}: cannot filter out our own messages in the kernel ({e}); the loop reads them",
                            spec.iface
                        );
                    }
                    receivers.push((r, link));
                }
                Err(e) => tracing::error!("receiving on {}: {e}", spec.iface),
            }
        }

        // XDP fast path (socket path above stays open for what XDP passes on).
        let (xdp_handle, ring, socket_why) = attach_xdp(&config, &ifindex_link)?;

        // Ping nodes: the admin asked for them, so no raw socket means no start.
        let pinger = if ha.ping_node_count() > 0 {
            let p = Pinger::open().map_err(|e| {
                DaemonError::Setup(format!(
                    "ping nodes: raw ICMP socket: {e} (hbd needs CAP_NET_RAW)"
                ))
            })?;
            Some(p)
        } else {
            None
        };
        announce_ipfail(&config);

        // The core's clock starts now, after the slow set-up (XDP load and attach).
        let now = monotonic_now();
        let node = Node::new(&config, generation, now).map_err(setup("node"))?;
        let metrics = Metrics::from_config(&config, now);
        let link_names: Vec<String> = ha.media.iter().map(|m| m.iface().to_owned()).collect();
        let tx = Tx::new(senders, active_key(&config));
        let shared = Shared::new(node, tx, &link_names);
        let send_path = SendPath::start(Arc::clone(&shared), ha.realtime.value)
            .map_err(setup("heartbeat send thread"))?;

        let control_path = control::socket_path(&opts.run_dir, ha.control_socket.as_deref());
        let listener = control::bind(&control_path).map_err(setup("control socket"))?;
        share_control_socket(&control_path, ha.control_group.as_deref())?;
        let (control_tx, control_rx) = mpsc::channel(16);
        tokio::spawn(control::serve(listener, control_tx.clone()));
        let metrics_task = match ha.metrics_listen {
            Some(addr) => Some(serve_metrics(addr, &control_tx).map_err(setup("metrics_listen"))?),
            None => None,
        };
        // Last, so a set-up failure above never leaves an armed watchdog behind.
        let watchdog = match &ha.watchdog {
            Some(path) => {
                let w = Watchdog::open(path, ha.keepalive.value, monotonic_now())
                    .map_err(DaemonError::Setup)?;
                tracing::info!(
                    "hb: watchdog {} opened; fed from the heartbeat loop every keepalive ({} ms), \
                     magic close on a clean stop",
                    path.display(),
                    ha.keepalive.value.as_millis()
                );
                Some(w)
            }
            None => None,
        };
        Ok(Self {
            opts: opts.clone(),
            config,
            shared,
            send_path: Some(send_path),
            metrics,
            receivers,
            xdp: xdp_handle,
            ring,
            socket_why,
            ifindex_link,
            control_rx,
            agent_tx,
            agent_rx,
            started: now,
            control_path,
            ring_buf: Vec::with_capacity(RING_BUDGET),
            dgram_buf: Vec::with_capacity(READ_BUDGET),
            ring_backlog: false,
            xdp_dropped_base: 0,
            pinger,
            ping_buf: Vec::with_capacity(64),
            respawn: None,
            control_tx,
            metrics_task,
            notify: Notifier::from_env(now),
            status_dirty: true,
            watchdog,
            arbiter: None,
        })
    }

    async fn run(&mut self, signals: Signals) -> Result<(), DaemonError> {
        let result = self.run_loop(signals).await;
        // Every way out of the loop is a controlled stop: disarm the watchdog. A crash or a
        // hang never gets here, and the watchdog resets the machine; nor does a node that
        // fenced itself: if its fence command did not reset it, the watchdog will.
        if let Some(w) = self.watchdog.take() {
            if self.node().is_self_fenced() {
                // Closed without the magic character: the watchdog keeps counting down.
                tracing::error!("hb: fenced: watchdog left armed");
                drop(w);
            } else {
                w.magic_close();
            }
        }
        let clean_stop = {
            let node = self.node();
            node.is_stopped() && !node.is_self_fenced()
        };
        if self.xdp.is_some() && clean_stop {
            // A clean stop: the peer is taking over now; detach XDP after it (see
            // XDP_DETACH_DELAY).
            tokio::time::sleep(XDP_DETACH_DELAY).await;
        }
        result
    }

    async fn run_loop(&mut self, mut signals: Signals) -> Result<(), DaemonError> {
        let mut stopping = false;
        let shared = Arc::clone(&self.shared);
        // The periodic heartbeat has its own thread (crate::sender); this loop judges peers.
        // No input can starve a deadline check: every turn begins with the core's deadline
        // (judging peers), whatever is queued; then its outputs are sent; only then is input
        // read, a bounded batch per turn. The timer arm also comes before the input arms in the
        // select, for when the deadline passes while waiting.
        loop {
            let due = self.node().poll_timeout();
            if due.is_some_and(|t| t <= monotonic_now()) {
                self.drain_all();
                self.node().handle_timeout(monotonic_now());
            }
            self.flush_outputs();
            if let Some(w) = self.watchdog.as_mut() {
                w.feed(monotonic_now());
            }
            if self.node().is_stopped() {
                break;
            }
            if self.ring_backlog && self.drain_ring() {
                self.drain_all();
                self.node().handle_timeout(monotonic_now());
                continue;
            }
            self.notify_turn();
            if self.update_batching() {
                // Prompt delivery again: what was queued without a wake-up is read now.
                self.drain_ring();
                continue;
            }
            let mut deadline = self.notify.earliest(self.node().poll_timeout());
            if let Some(w) = self.watchdog.as_ref().and_then(Watchdog::next_due) {
                deadline = Some(deadline.map_or(w, |d| d.min(w)));
            }
            let sleep = match deadline {
                Some(t) => {
                    let wait = t.saturating_since(monotonic_now());
                    tokio::time::sleep(wait)
                }
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                biased;
                _ = signals.term.recv() => self.shutdown(&mut stopping),
                _ = signals.int.recv() => self.shutdown(&mut stopping),
                _ = signals.hup.recv() => {
                    let _ = self.reload(stopping);
                }
                _ = sleep => {
                    self.drain_all();
                    self.node().handle_timeout(monotonic_now());
                }
                r = readable(self.ring.as_mut()), if self.ring.is_some() => {
                    match r {
                        Ok(()) => {
                            if self.drain_ring() {
                                // A kernel deadline passed: judge now.
                                self.drain_all();
                                self.node().handle_timeout(monotonic_now());
                            }
                        }
                        Err(e) => {
                            tracing::error!("XDP ring buffer: {e}; falling back to the socket path");
                            self.metrics.record_socket_error("ring_read");
                            self.ring = None;
                            self.xdp = None;
                            self.set_socket_why(&format!("XDP ring buffer read failed: {e}"));
                        }
                    }
                }
                (i, r) = recv_any(&mut self.receivers), if !self.receivers.is_empty() => {
                    match r {
                        Ok(d) => {
                            let link = self.receivers[i].1;
                            self.handle_datagram(link, &d.data, d.arrival, Some(d.read_at));
                            // The rest of the batch without waiting: READ_BUDGET in all.
                            self.drain_receiver(i, READ_BUDGET - 1);
                        }
                        Err(e) => {
                            tracing::warn!("receive: {e}");
                            self.metrics.record_socket_error("recv");
                        }
                    }
                }
                r = ping_readable(self.pinger.as_ref()), if self.pinger.is_some() => {
                    match r {
                        Ok(()) => self.drain_pings(),
                        Err(e) => {
                            tracing::warn!("ping socket: {e}");
                            self.metrics.record_socket_error("ping_recv");
                        }
                    }
                }
                // The send thread left outputs (an event, a start) in the core: the loop's top
                // flushes them.
                _ = shared.wake.notified() => {}
                Some(call) = self.control_rx.recv() => self.handle_control(call, &mut stopping),
                Some(done) = self.agent_rx.recv() => self.handle_agent_done(done),
                Some(input) = arbiter_result(self.arbiter.as_mut()), if self.arbiter.is_some() => {
                    self.node().handle_arbiter(monotonic_now(), input);
                }
            }
        }
        // The core is stopped: the send thread has ended or ends within its next sleep.
        drop(self.send_path.take());
        self.finish_arbiter().await;
        tracing::info!("hb: node {} stopped", self.config.local_node);
        let _ = std::fs::remove_file(&self.control_path);
        if let Some(r) = self.respawn.take() {
            r.stop();
        }
        if self.node().is_self_fenced() {
            return Err(DaemonError::Fenced);
        }
        match self.node().left_running() {
            [] => Ok(()),
            left => Err(DaemonError::LeftRunning(left.to_vec())),
        }
    }

    /// After the loop: the key releases and the lease revoke of a clean stop are sent before
    /// hbd exits (so peers need not wait for the lease's TTL); at most one renewal interval.
    async fn finish_arbiter(&mut self) {
        let Some(mut link) = self.arbiter.take() else {
            return;
        };
        let wait = self
            .config
            .ha_cf
            .arbiter
            .as_ref()
            .map_or(Duration::ZERO, |a| {
                hb_proto::arbiter::renew_interval(a.ttl.value)
            });
        link.close();
        let _ = tokio::time::timeout(wait, async { while link.rx.recv().await.is_some() {} }).await;
    }

    /// Re-reads ha.cf, haresources and authkeys (SIGHUP, `hbctl reload`) and applies what can
    /// change live ([`hb_proto::config::reload`]); a directive that needs a restart is logged
    /// by name and keeps its running value. A configuration with errors is refused with every
    /// problem as `PATH:LINE: message`, and hbd runs on as before. Returns what to tell
    /// `hbctl reload`.
    fn reload(&mut self, stopping: bool) -> Result<String, String> {
        // systemd hears of the reload (RELOADING=1 ... READY=1) once hbd has told it it is ready.
        let joined = self.node().joined();
        if joined && !stopping {
            self.notify.reloading();
        }
        let result = self.reload_config(stopping);
        if joined && !stopping {
            self.notify.ready();
        }
        self.status_dirty = true;
        result
    }

    /// [`Driver::reload`] without the service manager's notifications.
    fn reload_config(&mut self, stopping: bool) -> Result<String, String> {
        if stopping {
            tracing::warn!("hb: reload ignored: shutting down");
            return Err("shutting down".to_owned());
        }
        tracing::info!("Reloading configuration.");
        let new = match load_config(&self.opts) {
            Ok(c) => c,
            Err(e) => {
                let problems = match e {
                    DaemonError::Config(p) => p,
                    other => other.to_string(),
                };
                for line in problems.lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(
                    "Configuration reload refused: {} has errors; running on the previous configuration.",
                    self.opts.config_dir.display()
                );
                return Err(format!(
                    "configuration refused, running on the previous one:\n{problems}"
                ));
            }
        };
        let mut plan = plan_reload(&self.config, new);
        for w in &plan.config.warnings {
            tracing::warn!("{w}");
        }
        for directive in &plan.restart {
            tracing::warn!(
                "hb: reload: {directive} changed; that needs a restart of hbd: running on the previous value until then"
            );
        }
        let now = monotonic_now();
        for &change in &plan.live.clone() {
            tracing::info!("hb: reload: applying {}", change.directives());
            match change {
                LiveChange::Timings => self.reload_timings(now, &plan.config),
                LiveChange::AuthKeys => tracing::info!(
                    "hb: reload: authkeys: signing with key {}, accepting keys {:?}",
                    plan.config.authkeys.active,
                    plan.config.authkeys.keys.keys().collect::<Vec<_>>()
                ),
                LiveChange::Logging => reopen_logs(&plan.config),
                LiveChange::Garp => {
                    let h = &plan.config.ha_cf;
                    let _ = self.agent_tx.send(AgentJob::Garp {
                        count: h.garp_count.value,
                        interval: h.garp_interval.value,
                    });
                }
                LiveChange::MetricsListen => {
                    if !self.reload_metrics(plan.config.ha_cf.metrics_listen) {
                        plan.config.ha_cf.metrics_listen = self.config.ha_cf.metrics_listen;
                    }
                }
                LiveChange::Xdp => self.reload_xdp(&plan.config),
                LiveChange::Respawn => {
                    if let Some(r) = &self.respawn {
                        r.set(respawn::lines_of(&plan.config.ha_cf));
                    }
                }
                LiveChange::Fencing => self.reload_fencing(&plan.config),
                LiveChange::Ping => {
                    if !self.reload_ping(now, &plan.config) {
                        hb_proto::config::keep_running_ping(
                            &mut plan.config.ha_cf,
                            &self.config.ha_cf,
                        );
                    }
                }
            }
        }
        let h = &plan.config.ha_cf;
        if !plan.changes(LiveChange::Logging) && (h.logfile.is_some() || h.debugfile.is_some()) {
            // Same files: reopened all the same, so `kill -HUP` after log rotation works.
            reopen_logs(&plan.config);
        }
        let summary = if plan.is_empty() {
            "configuration reloaded: no change".to_owned()
        } else {
            let live: Vec<&str> = plan.live.iter().map(|c| c.directives()).collect();
            format!(
                "configuration reloaded: applied [{}]; needs a restart: [{}]",
                live.join(", "),
                plan.restart.join(", ")
            )
        };
        sender::lock(&self.shared.tx).set_key(active_key(&plan.config));
        self.config = plan.config;
        tracing::info!("Configuration reloaded.");
        Ok(summary)
    }

    /// New `keepalive`/`deadtime`/`warntime`/`initdead`: the core's detector and the kernel's
    /// per-peer deadlines.
    fn reload_timings(&mut self, now: Timestamp, new: &Config) {
        let t = hb_proto::config::Timings::of(&new.ha_cf);
        self.node().set_timings(now, t);
        if let Some(h) = self.xdp.as_mut() {
            set_xdp_deadlines(h, new, &self.ifindex_link);
        }
    }

    /// Ping nodes or ipfail changed: the raw ICMP socket is opened when the first ping node
    /// comes and closed when the last goes, the core's monitor is rebuilt (addresses that stay
    /// keep their state, see [`Node::set_ping`]) and the requests in flight and the per-address
    /// metrics follow. `false` (nothing changed, the old ping nodes kept) when the socket
    /// cannot be opened.
    fn reload_ping(&mut self, now: Timestamp, new: &Config) -> bool {
        let count = new.ha_cf.ping_node_count();
        if count > 0 && self.pinger.is_none() {
            match Pinger::open() {
                Ok(p) => {
                    self.pinger = Some(p);
                    tracing::info!("hb: reload: ping nodes: raw ICMP socket opened");
                }
                Err(e) => {
                    tracing::error!(
                        "hb: reload: ping nodes: raw ICMP socket: {e} (hbd needs CAP_NET_RAW); running on the previous ping nodes"
                    );
                    return false;
                }
            }
        }
        // Replies already queued belong to the old addresses.
        self.drain_pings();
        let map = self.node().set_ping(now, &new.ha_cf);
        if count == 0 {
            if self.pinger.take().is_some() {
                tracing::info!("hb: reload: no ping nodes left: raw ICMP socket closed");
            }
        } else if let Some(p) = self.pinger.as_mut() {
            p.remap(&map);
        }
        self.metrics
            .set_ping_links(&crate::metrics::ping_links(new));
        // An address that moved to another ping node keeps the core's state in the metrics too.
        let ping = self.node().status().ping;
        for n in &ping.nodes {
            for l in &n.links {
                let state = match l.state {
                    hb_proto::ping::PingState::Up => control::LinkState::Up,
                    _ => control::LinkState::Dead,
                };
                self.metrics
                    .set_ping_state(&n.name, &l.addr.to_string(), state);
            }
        }
        let names: Vec<String> = hb_proto::ping::ping_targets(&new.ha_cf)
            .into_iter()
            .map(|t| t.name)
            .collect();
        tracing::info!(
            "hb: reload: ping nodes now [{}] (addresses that stay keep their state, new ones \
             start unknown)",
            names.join(", ")
        );
        announce_ipfail(new);
        true
    }

    /// Fencing changed: what a stop failure leads to from now on.
    fn reload_fencing(&mut self, new: &Config) {
        let fence = new.ha_cf.self_fence();
        match &fence {
            Some(c) => tracing::info!("hb: reload: a failed stop fences this node with {c:?}"),
            None => tracing::info!(
                "hb: reload: no fencing configured: a failed stop keeps the group and retries"
            ),
        }
        self.node().set_self_fencing(fence.is_some());
    }

    /// Moves the Prometheus endpoint; `false` (old one kept) when the new address cannot be
    /// bound.
    fn reload_metrics(&mut self, addr: Option<std::net::SocketAddr>) -> bool {
        let Some(addr) = addr else {
            if let Some(t) = self.metrics_task.take() {
                t.abort();
                tracing::info!("hb: Prometheus metrics endpoint closed");
            }
            return true;
        };
        // Bind before closing the old one (the same address: close first).
        let same = self.config.ha_cf.metrics_listen == Some(addr);
        if same && let Some(t) = self.metrics_task.take() {
            t.abort();
        }
        match serve_metrics(addr, &self.control_tx) {
            Ok(task) => {
                if let Some(t) = self.metrics_task.replace(task) {
                    t.abort();
                }
                true
            }
            Err(e) => {
                tracing::error!("hb: reload: metrics_listen {addr}: {e}; keeping the old endpoint");
                false
            }
        }
    }

    /// `xdp` changed: detach for `off`, attach for `auto`/`on` when not attached. The socket
    /// receivers stay open throughout, so no heartbeat is lost while switching.
    fn reload_xdp(&mut self, new: &Config) {
        match new.ha_cf.xdp.value {
            XdpMode::Off => {
                if self.xdp.is_some() {
                    // What the ring still holds first.
                    self.drain_ring();
                    self.ring = None;
                    self.xdp = None;
                    self.set_socket_why("xdp off in ha.cf (reload)");
                    tracing::info!("hb: reload: XDP detached; heartbeats on the socket path");
                }
            }
            XdpMode::Auto | XdpMode::On => {
                if self.xdp.is_some() {
                    return;
                }
                match attach_xdp(new, &self.ifindex_link) {
                    Ok((Some(h), Some(r), why)) => {
                        self.xdp = Some(h);
                        self.ring = Some(r);
                        self.socket_why = why;
                        tracing::info!("hb: reload: XDP attached");
                    }
                    Ok((_, _, why)) => {
                        self.socket_why = why;
                        tracing::info!("hb: reload: XDP not available; socket path kept");
                    }
                    Err(e) => tracing::error!("hb: reload: {e}; socket path kept"),
                }
            }
        }
    }

    fn shutdown(&mut self, stopping: &mut bool) {
        if *stopping {
            tracing::warn!("hb: second stop signal while releasing resources; still releasing");
            return;
        }
        *stopping = true;
        self.notify.stopping();
        self.node()
            .handle_command(monotonic_now(), Command::Shutdown);
    }

    /// Lets the XDP program queue heartbeats that repeat their sender's state without waking
    /// this loop while the core is steady ([`Node::wants_every_message`] false), and asks for
    /// a wake-up per record again as soon as it is not (issue 20). Such heartbeats are then
    /// read at the loop's next wake-up: at the latest the core's own deadline (the peer's
    /// last arrival read plus deadtime), before which everything queued is drained and
    /// judged on its kernel arrival time as always; a changed heartbeat, a kernel deadline
    /// record or a ring buffer an eighth full wakes it at once. Returns `true` when delivery
    /// just became prompt again (the caller drains what was queued).
    fn update_batching(&mut self) -> bool {
        let Some(h) = self.xdp.as_mut() else {
            return false;
        };
        let steady = !sender::lock(&self.shared.node).wants_every_message();
        self.shared.batching.store(steady, Ordering::Release);
        if steady == h.batching() {
            return false;
        }
        if let Err(e) = h.set_batch(steady) {
            // Not batching is the safe side: every record wakes the loop, as before.
            tracing::warn!("XDP: cannot switch heartbeat batching to {steady}: {e}");
            self.metrics.record_socket_error("xdp_config");
            let _ = h.set_batch(false);
            self.shared.batching.store(false, Ordering::Release);
            return false;
        }
        !steady
    }

    /// Reads up to [`RING_BUDGET`] queued ring-buffer records (`ring_backlog` says whether
    /// more may wait); `true` when one was a kernel deadline.
    fn drain_ring(&mut self) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            self.ring_backlog = false;
            return false;
        };
        let mut events = std::mem::take(&mut self.ring_buf);
        events.clear();
        self.ring_backlog = ring.drain_max(&mut events, RING_BUDGET) == RING_BUDGET;
        let read_at = monotonic_now();
        let mut deadline = false;
        for ev in &events {
            match ev.kind {
                EVENT_PACKET => {
                    let Some(&link) = self.ifindex_link.get(&ev.ifindex) else {
                        self.metrics.record_socket_error("ring_unknown_ifindex");
                        continue;
                    };
                    let arrival = xdp::arrival(ev);
                    // A record queued without a wake-up was read when the loop woke for
                    // something else: its read time is no delivery delay.
                    let read_at = xdp::woke(ev).then_some(read_at);
                    self.handle_datagram(link, xdp::payload(ev), arrival, read_at);
                }
                EVENT_DEADLINE => deadline = true,
                _ => self.metrics.record_socket_error("ring_unknown_record"),
            }
        }
        self.ring_buf = events;
        deadline
    }

    /// Drains every socket and the ring buffer without waiting. Sockets first: what they hold
    /// is older (queued before XDP attached, or passed on when the ring was full), so handling
    /// it first keeps sequence numbers in order.
    fn drain_all(&mut self) {
        for i in 0..self.receivers.len() {
            self.drain_receiver(i, DRAIN_BUDGET);
        }
        self.drain_ring();
        self.drain_pings();
    }

    /// Reads and handles up to `max` datagrams queued on receiver `i`, without waiting.
    fn drain_receiver(&mut self, i: usize, max: usize) {
        let mut buf = std::mem::take(&mut self.dgram_buf);
        let link = self.receivers[i].1;
        let mut left = max;
        while left > 0 {
            buf.clear();
            let r = self.receivers[i].0.drain(&mut buf, left.min(READ_BUDGET));
            for d in &buf {
                self.handle_datagram(link, &d.data, d.arrival, Some(d.read_at));
            }
            match r {
                Ok(n) if n == left.min(READ_BUDGET) => left -= n,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("receive: {e}");
                    self.metrics.record_socket_error("recv");
                    break;
                }
            }
        }
        self.dgram_buf = buf;
    }

    /// Reads every queued ICMP reply and hands it to the core with its kernel arrival time.
    fn drain_pings(&mut self) {
        let Some(pinger) = self.pinger.as_mut() else {
            return;
        };
        let mut replies = std::mem::take(&mut self.ping_buf);
        replies.clear();
        match pinger.drain(&mut replies, 1024) {
            Ok(c) => {
                for _ in 0..c.ignored {
                    self.metrics.record_socket_error("ping_ignored");
                }
            }
            Err(e) => {
                tracing::warn!("ping socket: {e}");
                self.metrics.record_socket_error("ping_recv");
            }
        }
        for r in &replies {
            self.metrics
                .record_ping_reply(r.link, r.arrival.saturating_since(r.sent));
            self.node()
                .handle_ping_reply(monotonic_now(), r.link, r.sent, r.arrival);
        }
        self.ping_buf = replies;
    }

    fn send_ping(&mut self, link: usize, addr: std::net::IpAddr) {
        let Some(pinger) = self.pinger.as_mut() else {
            return;
        };
        match pinger.send(link, addr) {
            Ok(_) => self.metrics.record_ping_sent(link, true),
            Err(e) => {
                self.metrics.record_ping_sent(link, false);
                self.metrics.record_socket_error(ping_send_error_label(&e));
            }
        }
    }

    fn link_name(&self, link: usize) -> &str {
        self.config
            .ha_cf
            .media
            .get(link)
            .map(|m| m.iface())
            .unwrap_or("?")
    }

    /// Hands a datagram to the core, which decodes, authenticates and checks it for replays;
    /// what it made of it comes back as [`Output::Received`].
    fn handle_datagram(
        &mut self,
        link: usize,
        bytes: &[u8],
        arrival: Timestamp,
        read_at: Option<Timestamp>,
    ) {
        self.node()
            .handle_datagram(monotonic_now(), LinkId(link), arrival, read_at, bytes);
    }

    /// Records the core's per-datagram figures.
    fn record_reception(&mut self, r: Reception) {
        match r {
            Reception::Heard {
                node,
                link,
                arrival,
                read_at,
                gap,
                rtt,
            } => {
                let link_name = self.link_name(link.0).to_owned();
                self.metrics
                    .record_heartbeat(&node, &link_name, arrival, read_at, gap);
                if let Some(rtt) = rtt {
                    self.metrics.record_rtt(&node, &link_name, rtt);
                }
            }
            Reception::Rejected { link, reason } => {
                self.metrics.record_reject(reason.label());
                match reason {
                    Rejection::Decode(e) => {
                        tracing::debug!("rejected datagram on {}: {e}", self.link_name(link.0));
                    }
                    Rejection::Replay { sender, reason } => {
                        tracing::debug!("rejected message from {sender:#x}: {}", reason.label());
                    }
                }
            }
        }
    }

    fn flush_outputs(&mut self) {
        loop {
            // The guard ends with this statement: outputs are carried out without the lock.
            let Some(out) = self.node().poll_output() else {
                break;
            };
            match out {
                Output::Transmit { link, msg } => self.transmit(link.0, &msg),
                Output::Resource { group, op } => {
                    if self.agent_tx.send(AgentJob::Run { group, op }).is_err() {
                        tracing::error!("agents thread gone: cannot run group {group}");
                    }
                }
                Output::Reannounce { group } => {
                    let _ = self.agent_tx.send(AgentJob::Reannounce { group });
                }
                Output::Prepare { group } => {
                    let _ = self.agent_tx.send(AgentJob::Prepare { group });
                }
                Output::Unprepare { group } => {
                    let _ = self.agent_tx.send(AgentJob::Unprepare { group });
                }
                Output::Fence { peer, timeout, .. } => {
                    if self
                        .agent_tx
                        .send(AgentJob::Fence { peer, timeout })
                        .is_err()
                    {
                        tracing::error!("agents thread gone: cannot fence");
                    }
                }
                Output::Ping { link, addr } => self.send_ping(link, addr),
                Output::Event(ev) => self.handle_event(ev),
                Output::Received(r) => self.record_reception(r),
                Output::Arbiter(req) => {
                    if let Some(failed) = self.arbiter.as_ref().and_then(|a| a.send(req)) {
                        self.node().handle_arbiter(monotonic_now(), failed);
                    }
                }
                Output::SelfFence { group } => {
                    let command = self.config.ha_cf.self_fence().unwrap_or_default();
                    tracing::error!(
                        "hb: group {group} could not be stopped: fencing this node with {command:?}"
                    );
                    if command.is_empty()
                        || self.agent_tx.send(AgentJob::SelfFence { command }).is_err()
                    {
                        self.node().handle_self_fence_result(
                            monotonic_now(),
                            Err("no fence command / agents thread gone".to_owned()),
                        );
                    }
                }
            }
        }
    }

    fn transmit(&mut self, link: usize, msg: &hb_proto::message::Message) {
        let r = sender::lock(&self.shared.tx).send(link, msg);
        if let Err(label) = r {
            self.metrics.record_socket_error(label);
        }
    }

    /// Once per loop turn: the watchdog from the heartbeat loop itself, and `STATUS=` when an
    /// event may have changed it.
    fn notify_turn(&mut self) {
        if !self.notify.enabled() {
            return;
        }
        let joined = self.node().joined();
        self.notify.watchdog(monotonic_now(), joined);
        if self.status_dirty {
            self.status_dirty = false;
            let (status, arbiter) = {
                let node = self.node();
                (node.status(), node.arbiter_status(monotonic_now()))
            };
            let mut line = notify::status_line(&status);
            if let Some(a) = &arbiter {
                line += &notify::arbiter_part(a);
            }
            self.notify.status(&line);
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let f = ev.fields();
        macro_rules! log_event {
            ($level:ident) => {
                tracing::$level!(
                    event = f.event,
                    peer = f.peer,
                    link = f.link,
                    group = f.group,
                    resource = f.resource,
                    "{ev}"
                )
            };
        }
        match ev.level() {
            Level::Info => log_event!(info),
            Level::Warn => log_event!(warn),
            Level::Error => log_event!(error),
        }
        self.status_dirty = true;
        if let Event::Joined { .. } = ev {
            self.notify.ready();
        }
        match &ev {
            Event::LateHeartbeat { node, interval } => self.metrics.record_late(node, *interval),
            Event::LinkUp { node, link } => {
                self.metrics
                    .set_link_state(node, link, control::LinkState::Up)
            }
            Event::LinkDead { node, link } => {
                self.metrics
                    .set_link_state(node, link, control::LinkState::Dead)
            }
            Event::NodeActive { node } | Event::NodeReturned { node } => {
                self.metrics.set_peer_state(node, control::NodeState::Up)
            }
            Event::ShutdownNotice { node } => {
                self.metrics.set_peer_state(node, control::NodeState::Dead);
            }
            Event::NodeDead {
                node,
                last_arrival,
                at,
                ..
            } => {
                self.metrics.set_peer_state(node, control::NodeState::Dead);
                // hb's own line (after Heartbeat's `node X: is dead`): how late the declaration
                // came relative to the kernel arrival time of the peer's last heartbeat, so a
                // late wake-up shows apart from the deadtime itself.
                tracing::info!(
                    "hb: node {node} declared dead {:.1} ms after its last heartbeat arrived (deadtime {} ms)",
                    at.saturating_since(last_arrival.unwrap_or(*at))
                        .as_secs_f64()
                        * 1000.0,
                    self.config.ha_cf.deadtime.value.as_millis()
                );
            }
            Event::Ping(PingEvent::LinkUp { node, addr }) => {
                self.metrics
                    .set_ping_state(node, &addr.to_string(), control::LinkState::Up)
            }
            Event::Ping(PingEvent::LinkDead { node, addr }) => {
                self.metrics
                    .set_ping_state(node, &addr.to_string(), control::LinkState::Dead)
            }
            Event::MachDownComplete { node, times } => self.metrics.record_takeover(node, *times),
            _ => {}
        }
    }

    fn handle_agent_done(&mut self, done: AgentDone) {
        let (group, op, result) = match done {
            AgentDone::Group { group, op, result } => (group, op, result),
            AgentDone::SelfFence { result } => {
                self.node()
                    .handle_self_fence_result(monotonic_now(), result);
                return;
            }
            AgentDone::Fence { peer, result } => {
                self.node()
                    .handle_fence_result(monotonic_now(), &peer, result);
                return;
            }
        };
        let result = result.map(|report| report.times());
        self.node()
            .handle_resource_result(monotonic_now(), group, op, result);
    }

    fn handle_control(&mut self, call: ControlCall, stopping: &mut bool) {
        let now = monotonic_now();
        let response = match call.request {
            Request::Status => Response::Status(self.status_report(now)),
            Request::Standby { scope } => {
                self.node().handle_command(now, Command::Standby(scope));
                Response::Ack {
                    message: format!("standby {} requested", scope.as_str()),
                }
            }
            Request::Takeover { scope } => {
                self.node().handle_command(now, Command::Takeover(scope));
                Response::Ack {
                    message: format!("takeover {} requested", scope.as_str()),
                }
            }
            Request::Stats => {
                let mut report = self.metrics.snapshot_at(now);
                let status = self.node().status();
                report.ping_summary = ping_summary(&status);
                report.arbiter = self.arbiter_report(now);
                {
                    let send = sender::lock(&self.shared.stats);
                    report.send = send.report();
                    for (kind, n) in send.errors() {
                        *report.errors.entry(kind.to_owned()).or_insert(0) += n;
                    }
                }
                if let Some(dropped) = self.xdp_dropped() {
                    report.rejects.insert(
                        XDP_DROPPED_REASON.to_owned(),
                        dropped.saturating_sub(self.xdp_dropped_base),
                    );
                }
                report.delivery = self.delivery();
                Response::Stats(Box::new(report))
            }
            Request::ResetStats => {
                self.metrics.reset_at(now);
                sender::lock(&self.shared.stats).reset();
                self.xdp_dropped_base = self.xdp_dropped().unwrap_or(0);
                Response::Ack {
                    message: "statistics reset".to_owned(),
                }
            }
            Request::Parameter { name } => match self.config.ha_cf.parameter(&name) {
                Some(value) => Response::Ack {
                    message: value.to_owned(),
                },
                None => Response::Error {
                    message: format!("{name} is not set in ha.cf"),
                },
            },
            Request::Shutdown => {
                self.shutdown(stopping);
                Response::Ack {
                    message: "shutting down".to_owned(),
                }
            }
            Request::Reload => match self.reload(*stopping) {
                Ok(message) => Response::Ack { message },
                Err(message) => Response::Error { message },
            },
        };
        let _ = call.reply.send(response);
    }

    /// The XDP program's count of datagrams to the heartbeat port it dropped as not hb
    /// messages (since it was loaded); `None` on the socket path.
    fn xdp_dropped(&self) -> Option<u64> {
        let h = self.xdp.as_ref()?;
        match h.counter(hb_common::counter::DROPPED) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!("reading the XDP drop counter: {e}");
                None
            }
        }
    }

    fn status_report(&self, now: Timestamp) -> control::StatusReport {
        let status = self.node().status();
        let mut report = status_report(&status, now, self.started);
        report.delivery = self.delivery();
        report.arbiter = self.arbiter_report(now);
        report
    }

    /// Per heartbeat interface: XDP or socket path, why, and the XDP program's counters.
    fn delivery(&self) -> Vec<control::DeliveryStatus> {
        delivery_status(&self.config, self.xdp.as_ref(), &self.socket_why)
    }

    /// Every heartbeat interface is on the socket path now, for `why`.
    fn set_socket_why(&mut self, why: &str) {
        self.socket_why = xdp::media_ifaces(&self.config.ha_cf.media)
            .into_iter()
            .map(|i| (i, why.to_owned()))
            .collect();
    }

    /// The arbiter's state for `hbctl status`, hbstat and Prometheus.
    fn arbiter_report(&self, now: Timestamp) -> Option<Box<control::ArbiterReport>> {
        let a = self.config.ha_cf.arbiter.as_ref()?;
        let st = self.node().arbiter_status(now)?;
        Some(Box::new(arbiter_report(a, &st, &self.config.local_node)))
    }
}

/// Opens the control socket to `control_group` (read-only requests; see [`control`]), or to
/// Heartbeat's `haclient` when that is not set and the group exists. Logs what it did.
fn share_control_socket(path: &std::path::Path, group: Option<&str>) -> Result<(), DaemonError> {
    let (name, explicit) = match group {
        Some("none") => {
            tracing::info!(
                "control socket {}: root only (control_group none)",
                path.display()
            );
            return Ok(());
        }
        Some(g) => (g, true),
        None => (hb_proto::config::DEFAULT_CONTROL_GROUP, false),
    };
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => {
            control::allow_group(path, g.gid.as_raw()).map_err(setup("control socket"))?;
            tracing::info!(
                "control socket {}: read-only status for group {name} (gid {}); changes need root",
                path.display(),
                g.gid
            );
            Ok(())
        }
        Ok(None) | Err(_) if !explicit => {
            tracing::info!(
                "control socket {}: root only (no group {name}; set control_group to share status)",
                path.display()
            );
            Ok(())
        }
        Ok(None) => {
            tracing::warn!(
                "control_group {name}: no such group; the control socket {} is root only",
                path.display()
            );
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                "control_group {name}: looking the group up: {e}; the control socket {} is root only",
                path.display()
            );
            Ok(())
        }
    }
}

/// The core's view as the control socket's report.
pub fn status_report(
    s: &ClusterStatus,
    now: Timestamp,
    started: Timestamp,
) -> control::StatusReport {
    let nodes = s
        .nodes
        .iter()
        .map(|n| control::NodeStatusReport {
            name: n.name.clone(),
            id: n.id,
            ping: n.ping.map(|c| control::PingCountStatus {
                reachable: c.reachable,
                configured: c.configured,
                yielding: c.yielding,
            }),
            state: s.node_state(n),
            links: n
                .links
                .iter()
                .map(|l| control::LinkStatus {
                    iface: l.name.clone(),
                    state: l.state.reported(),
                    last_heartbeat_ms: l
                        .last_arrival
                        .map(|t| now.saturating_since(t).as_millis() as u64),
                })
                .collect(),
        })
        .collect();
    let groups = s
        .groups
        .iter()
        .map(|g| control::GroupStatus {
            index: g.index,
            description: g.line.clone(),
            preferred_node: g.preferred.clone(),
            owner: g.owner.clone(),
            local: g.holding_state(),
        })
        .collect();
    control::StatusReport {
        local_node: s.local.clone(),
        generation: s.generation,
        uptime_secs: now.saturating_since(started).as_secs(),
        nodes,
        groups,
        haresources_mismatch: s.haresources_mismatch.clone(),
        fence_pending: s.fence_pending.clone(),
        delivery: Vec::new(),
        ping: ping_status(s, now),
        arbiter: None,
    }
}

/// The arbiter's state as reported (see [`control::ArbiterReport`]).
pub fn arbiter_report(
    a: &hb_proto::config::Arbiter,
    st: &hb_proto::arbiter::ArbiterStatus,
    local: &str,
) -> control::ArbiterReport {
    use hb_proto::arbiter::KeyState;
    let keys = st
        .keys
        .iter()
        .enumerate()
        .map(|(g, k)| {
            let (state, holder, epoch) = match k {
                KeyState::Held { epoch } => ("held", Some(local.to_owned()), Some(*epoch)),
                other => {
                    let word = match other {
                        KeyState::Acquiring => "acquiring",
                        KeyState::Releasing => "releasing",
                        KeyState::Stale => "stale",
                        _ => "free",
                    };
                    let taken = st.taken_by.get(g).cloned().flatten();
                    (
                        word,
                        taken.as_ref().map(|t| t.0.clone()),
                        taken.map(|t| t.1),
                    )
                }
            };
            control::ArbiterKeyReport {
                group: g,
                key: a.key_of(g),
                state: state.to_owned(),
                holder,
                epoch,
            }
        })
        .collect();
    control::ArbiterReport {
        endpoints: a.endpoints.clone(),
        reachable: st.reachable,
        lease: st.lease.map(|l| format!("{l:x}")),
        lease_valid_ms: st.valid_for.map(|d| d.as_millis() as u64),
        ttl_secs: st.ttl.map(|d| d.as_secs()),
        lapses: st.lapses,
        keys_lost: st.keys_lost,
        keys,
    }
}

/// Why the ping guard holds a takeover back, in the words `hbctl status` shows.
pub const TAKEOVER_HELD_REASON: &str =
    "no ping node answered since the peer went silent: this node may be the isolated one";

fn ping_status(s: &ClusterStatus, now: Timestamp) -> Option<Box<control::PingStatus>> {
    let p = &s.ping;
    if p.nodes.is_empty() {
        return None;
    }
    let ms_since = |t: Option<Timestamp>| t.map(|t| now.saturating_since(t).as_millis() as u64);
    Some(Box::new(control::PingStatus {
        reachable: p.reachable,
        configured: p.configured,
        ipfail: p.ipfail,
        comparison: p.comparison.as_str().to_owned(),
        yielding: p.yielding,
        settle_ms: p.settle.as_millis() as u64,
        isolated: p.reachable == 0,
        takeover_held: s.takeover_held.as_ref().map(|peer| control::TakeoverHeld {
            peer: peer.clone(),
            reason: TAKEOVER_HELD_REASON.to_owned(),
        }),
        nodes: p
            .nodes
            .iter()
            .map(|n| control::PingNodeStatus {
                name: n.name.clone(),
                group: n.group,
                state: n.state.as_str().to_owned(),
                addrs: n
                    .links
                    .iter()
                    .map(|l| control::PingAddrStatus {
                        addr: l.addr.to_string(),
                        state: l.state.as_str().to_owned(),
                        last_reply_ms: ms_since(l.last_reply),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// The counts `hbstat` and Prometheus show (`None` without ping nodes).
fn ping_summary(s: &ClusterStatus) -> Option<crate::metrics::PingSummary> {
    if s.ping.nodes.is_empty() {
        return None;
    }
    Some(crate::metrics::PingSummary {
        reachable: s.ping.reachable,
        configured: s.ping.configured,
        ipfail: s.ping.ipfail,
        yielding: s.ping.yielding,
        takeover_held: s.takeover_held.is_some(),
        peers: s
            .nodes
            .iter()
            .filter(|n| !n.local)
            .filter_map(|n| n.ping.map(|c| (n.name.clone(), c.reachable)))
            .collect(),
    })
}

/// Says once at start what hb does for ipfail and ping nodes.
fn announce_ipfail(config: &Config) {
    let ha = &config.ha_cf;
    if ha.ping_node_count() == 0 {
        return;
    }
    let settle = ha.effective_ipfail_settle().as_millis();
    match (ha.ipfail_enabled(), ha.ipfail_respawn()) {
        (true, Some(r)) => tracing::info!(
            "hb: ipfail built in: 'respawn {} {}' is not spawned; hb compares ping node counts \
             with its peers itself (settle {settle} ms)",
            r.user,
            r.command
        ),
        (true, None) => tracing::info!(
            "hb: ipfail built in (ipfail on): hb compares ping node counts with its peers \
             (settle {settle} ms)"
        ),
        (false, _) => {}
    }
    tracing::info!(
        "hb: {} ping node(s), echo every {} ms, dead after {} ms without a reply; a dead \
         peer's groups are taken over only while a ping node answers",
        ha.ping_node_count(),
        ha.effective_ping_interval().as_millis(),
        ha.effective_deadping().as_millis()
    );
}

/// Label of a failed echo request send.
fn ping_send_error_label(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "ping_send_eperm",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "ping_send_unreachable",
        Some(libc::ENOBUFS) | Some(libc::EAGAIN) => "ping_send_busy",
        _ => "ping_send_other",
    }
}

async fn arbiter_result(
    a: Option<&mut crate::arbiter::ArbiterLink>,
) -> Option<hb_proto::arbiter::ArbiterInput> {
    match a {
        Some(a) => a.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn ping_readable(p: Option<&Pinger>) -> std::io::Result<()> {
    match p {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}

async fn readable(ring: Option<&mut RingReader>) -> Result<(), xdp::XdpError> {
    match ring {
        Some(r) => r.readable().await,
        None => std::future::pending().await,
    }
}

/// The next datagram from any receiver, with the receiver's index.
async fn recv_any(receivers: &mut [(Receiver, usize)]) -> (usize, std::io::Result<Datagram>) {
    if receivers.is_empty() {
        return std::future::pending().await;
    }
    let futs = receivers
        .iter_mut()
        .map(|(r, _)| Box::pin(r.recv()))
        .collect::<Vec<_>>();
    let (res, i, _) = futures::future::select_all(futs).await;
    (i, res)
}

/// Switches logging to `config`'s settings, reopening the log files.
fn reopen_logs(config: &Config) {
    let lc = crate::logging::LogConfig::from_ha_cf(&config.ha_cf, false);
    if let Err(e) = crate::logging::reload(&lc) {
        tracing::error!("hb: reload: logging: {e}; logging as before");
    }
}

/// What [`attach_xdp`] set up: the program and its ring (`None`, `None` when it is off or
/// unavailable in `auto` mode), and why each interface left on the socket path is there.
type XdpSetup = (Option<XdpHandle>, Option<RingReader>, xdp::SocketReasons);

/// Loads and attaches the XDP fast path as `config` says, with a kernel deadline per peer and
/// interface.
fn attach_xdp(
    config: &Config,
    ifindex_link: &HashMap<u32, usize>,
) -> Result<XdpSetup, DaemonError> {
    let ha = &config.ha_cf;
    let ifaces = xdp::media_ifaces(&ha.media);
    let (mut handle, mut why) =
        xdp::start_xdp_explained(ha.xdp.value, &ifaces, ha.udpport.value, true)
            .map_err(setup("XDP"))?;
    let mut ring = None;
    if let Some(h) = handle.as_mut() {
        match h.ring_reader() {
            Ok(r) => ring = Some(r),
            Err(e) if ha.xdp.value == XdpMode::On => {
                return Err(DaemonError::Setup(format!("XDP ring buffer: {e}")));
            }
            Err(e) => {
                tracing::warn!("XDP ring buffer: {e}; using the socket path");
                why = ifaces
                    .iter()
                    .map(|i| (i.clone(), format!("XDP ring buffer: {e}")))
                    .collect();
            }
        }
        set_xdp_deadlines(h, config, ifindex_link);
    }
    if ring.is_none() {
        handle = None;
    }
    Ok((handle, ring, why))
}

/// Per heartbeat interface: the XDP path (mode and the program's counters) or the socket path
/// and why. `socket_why` holds the reasons recorded when XDP was set up or given up.
fn delivery_status(
    config: &Config,
    handle: Option<&XdpHandle>,
    socket_why: &[(String, String)],
) -> Vec<control::DeliveryStatus> {
    let attached = handle.map(XdpHandle::attached).unwrap_or_default();
    // The program's counters for the packets that arrived on `ix` (zero if unreadable).
    let on_iface = |h: &XdpHandle, ix: Option<u32>| {
        let c = ix
            .and_then(|ix| h.iface_counters(ix).ok())
            .unwrap_or_default();
        let ring_full = c.get(hb_common::counter::RING_FULL);
        let parse_failures = c.get(hb_common::counter::PARSE_FAIL);
        control::XdpCounters {
            delivered: c.get(hb_common::counter::DELIVERED),
            passed: ring_full.saturating_add(parse_failures),
            ring_full,
            parse_failures,
            dropped: c.get(hb_common::counter::DROPPED),
            batched: c.get(hb_common::counter::BATCHED),
            sequence_gaps: 0,
            peers: Vec::new(),
        }
    };
    let peer_counters = handle
        .and_then(|h| h.peer_counters().ok())
        .unwrap_or_default();
    let name_of = |id: u32| {
        config
            .ha_cf
            .nodes
            .iter()
            .find(|n| node_id(n) == id)
            .cloned()
            .unwrap_or_else(|| format!("?{id:#010x}"))
    };
    xdp::media_ifaces(&config.ha_cf.media)
        .into_iter()
        .map(|iface| match attached.iter().find(|(i, _)| *i == iface) {
            Some((_, mode)) => {
                let ix = ifindex(&iface);
                let mut counters = handle.map(|h| on_iface(h, ix)).unwrap_or_default();
                counters.peers = peer_counters
                    .iter()
                    .filter(|p| Some(p.key.ifindex) == ix)
                    .map(|p| control::XdpPeerCounters {
                        peer: name_of(p.key.sender),
                        heartbeats: p.stats.packets,
                        sequence_gaps: p.stats.seq_gaps,
                    })
                    .collect();
                counters.sequence_gaps = counters
                    .peers
                    .iter()
                    .fold(0u64, |n, p| n.saturating_add(p.sequence_gaps));
                control::DeliveryStatus {
                    iface,
                    path: "xdp".to_owned(),
                    mode: Some(mode.to_string()),
                    reason: None,
                    xdp: Some(counters),
                }
            }
            None => {
                let reason = socket_why
                    .iter()
                    .find(|(i, _)| *i == iface)
                    .map_or_else(|| "XDP not attached".to_owned(), |(_, r)| r.clone());
                control::DeliveryStatus {
                    iface,
                    path: "socket".to_owned(),
                    mode: None,
                    reason: Some(reason),
                    xdp: None,
                }
            }
        })
        .collect()
}

/// Kernel-side deadline per peer and interface: wakes the loop when a peer goes quiet.
fn set_xdp_deadlines(h: &mut XdpHandle, config: &Config, ifindex_link: &HashMap<u32, usize>) {
    let ha = &config.ha_cf;
    for peer in ha.nodes.iter().filter(|n| **n != config.local_node) {
        for &ix in ifindex_link.keys() {
            if let Err(e) = h.set_deadline(node_id(peer), ix, ha.deadtime.value) {
                tracing::warn!("XDP deadline for {peer}: {e}");
            }
        }
    }
}

/// Serves Prometheus metrics on `addr` (on the current runtime).
fn serve_metrics(
    addr: std::net::SocketAddr,
    control_tx: &mpsc::Sender<ControlCall>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    let l = tokio::net::TcpListener::from_std(l)?;
    tracing::info!("hb: Prometheus metrics on http://{addr}/metrics");
    Ok(tokio::spawn(crate::prometheus::serve(
        l,
        control_tx.clone(),
    )))
}
