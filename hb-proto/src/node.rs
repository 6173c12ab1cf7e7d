//! The node state machine: membership, failure detection and resource-group ownership.
//!
//! Sans-IO, in the style of quinn-proto: the driver feeds inputs (`handle_*`), drains
//! [`Output`]s with [`Node::poll_output`] after every input, and calls
//! [`Node::handle_timeout`] at [`Node::poll_timeout`]. Time is always passed in.
//!
//! # Failure detection
//! Liveness is judged on the kernel's ARRIVAL time of heartbeats, never on when the daemon ran.
//! A link to a peer is up when an authentic heartbeat arrived on it and dead when none arrived
//! for `deadtime`; a peer is dead when every link to it is dead. A peer never heard is declared
//! dead `initdead` after start. A shutdown notice declares the sender dead at once.
//! Death is only ever decided in [`Node::handle_timeout`], which the driver calls after draining
//! every queued heartbeat, so a daemon that was frozen judges peers on the arrivals the kernel
//! recorded during the freeze, and reports the freeze as [`Event::LateWakeup`] when the
//! periodic heartbeat ran more than [`late_wakeup_threshold`] after its deadline.
//!
//! A peer declared dead and heard again in the same generation is
//! [`Event::NodeReturned`] (a partition or a stall healed); heard in a newer generation it
//! restarted, which is logged as [`Event::LinkUp`] + [`Event::NodeActive`] only.
//!
//! # Ownership
//! Every node computes the *rightful owner* of each group over its live membership view
//! ([`Node::rightful_owner`]); the inputs are what every node announces in its heartbeats, so
//! nodes with the same view agree:
//! 1. candidates are live nodes with status `Active`, that have not failed the group and are
//!    not shutting down; nodes in standby for it are candidates only when no other is;
//! 2. a candidate that asked for the group (`hbctl takeover`, flag `wants`) wins (a holder
//!    among several such first, then the preferred node, then `node` order);
//! 3. else the preferred node, if a candidate and (`auto_failback` on/legacy, or no other
//!    candidate holds it);
//! 4. else a candidate that holds it (`Starting`/`Held`): the preferred node if it is one,
//!    else the first in `node` order;
//! 5. else the preferred node if a candidate, else the first candidate in `node` order.
//!
//! A holder that is no longer the rightful owner stops the group (`Stopping`, then `None`).
//! The rightful owner starts it only when every live peer's latest heartbeat shows the group
//! `None` AND echoes a heartbeat of ours sent after our last state change (so the peer
//! computed its own decision knowing our current state: two nodes with stale views cannot
//! both start). Peers that are dead (detector) or sent a shutdown notice do not count: that is
//! the only way a group is taken without a peer's confirmation. Outside a partition, no two
//! nodes are ever `Starting`/`Held` for the same group.
//!
//! A `Held` group that a live peer also claims (partition healed, false takeover) emits
//! [`Event::DualOwnership`]; the node that keeps it emits [`Output::Reannounce`] at once, and
//! again when the peer shows it released (`None`: its gratuitous ARPs, sent while it held the
//! group, may have overwritten ours).
//!
//! # Failures
//! A failed start stops the group and marks it `failed` in heartbeats, so the rule passes it to
//! another node; this node does not try it again for `deadtime * 2^(n-1)` after its n-th
//! consecutive failure (capped at 16 x `deadtime`), or until a `takeover` command covers it.
//! A failed stop is retried after `deadtime * 2^(n-1)` (capped at 16 x `deadtime`); the group
//! stays `Stopping` meanwhile, so no peer acquires it while resources may still be up.
//!
//! # Operator commands
//! `standby SCOPE` marks the groups in scope standby here (released to another node, kept
//! only as a last resort); `takeover SCOPE` clears standby and failure marks and asks for the
//! groups (`wants`). Scopes: `all`; `local` = groups whose preferred node is this one;
//! `foreign` = the others; `failback` = `foreign` for standby (give other nodes' groups back)
//! and `local` for takeover (take our own back). A holder that also `wants` a group drops its
//! request when another live node asks for it, so the newest takeover wins.

//!
//! # Driver contract
//! - Drain [`Node::poll_output`] after every `handle_*` call; re-read [`Node::poll_timeout`].
//! - Hand in every queued datagram (with its kernel arrival time) before
//!   [`Node::handle_timeout`].
//! - Keep each message's `send_time` (or a later one) and its `echoes`: peers echo it back,
//!   and a hand-over waits for that echo.
//! - Pass a `generation` that increases at every start of the daemon (persisted counter or
//!   boot-independent clock): peers ignore older generations and count replays.
//! - Report every `Resource` output exactly once with [`Node::handle_resource_result`]; run
//!   resources supervised with timeouts (a start that times out is an `Err`).

mod event;
mod status;

use std::{collections::VecDeque, net::IpAddr, time::Duration};

pub use event::{DeathCause, Event, Level};
pub use status::{ClusterStatus, Counters, GroupView, LinkState, LinkView, NodeView, PeerState};

use crate::{
    Timestamp,
    config::{AutoFailback, Config, ResourceGroup, node_id},
    message::{Echo, GroupState, Holding, Message, MessageKind, NodeStatus, PingCounts},
    ping::PingMonitor,
};

/// Index of a heartbeat medium in `config.ha_cf.media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub usize);

/// Which groups an operator command covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every group.
    All,
    /// Groups whose preferred node is another node.
    Foreign,
    /// Groups whose preferred node is this node.
    Local,
    /// `standby failback`: foreign groups; `takeover failback`: local groups.
    Failback,
}

impl Scope {
    /// The word as typed (`all`, `foreign`, `local`, `failback`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Foreign => "foreign",
            Scope::Local => "local",
            Scope::Failback => "failback",
        }
    }
}

/// An operator command (`hbctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `hbctl standby SCOPE` (Heartbeat's `hb_standby`).
    Standby(Scope),
    /// `hbctl takeover SCOPE` (Heartbeat's `hb_takeover`).
    Takeover(Scope),
    /// Clean stop: release every group, send a shutdown notice, stop.
    Shutdown,
}

/// What to do with a whole group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceOp {
    /// Start its resources left to right.
    Start,
    /// Stop its resources right to left.
    Stop,
}

/// What the node asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Encode, sign and send `msg` on the link.
    Transmit {
        /// The medium.
        link: LinkId,
        /// The message.
        msg: Message,
    },
    /// Start or stop a whole group; report with [`Node::handle_resource_result`].
    Resource {
        /// Group index.
        group: usize,
        /// Start or stop.
        op: ResourceOp,
    },
    /// Re-send gratuitous ARPs for the group's addresses.
    Reannounce {
        /// Group index.
        group: usize,
    },
    /// Send one ICMP echo request to a ping node's address; report the reply with
    /// [`Node::handle_ping_reply`].
    Ping {
        /// Index of the address among every ping node's addresses (`ha.cf` order).
        link: usize,
        /// The address.
        addr: IpAddr,
    },
    /// For logging and metrics.
    Event(Event),
}

/// Why a configuration cannot run a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The local node is not one of `ha.cf`'s `node` lines.
    #[error("local node {0:?} is not in ha.cf's node list")]
    UnknownLocalNode(String),
    /// A node is listed twice.
    #[error("node {0:?} is listed twice in ha.cf")]
    DuplicateNode(String),
    /// Two node names hash to the same wire id.
    #[error("nodes {0:?} and {1:?} have the same wire id")]
    NodeIdCollision(String, String),
    /// No `bcast`/`ucast`/`mcast` line.
    #[error("no heartbeat media (bcast, ucast or mcast) configured")]
    NoMedia,
    /// A group's preferred node is not a `node`.
    #[error("haresources line {line}: preferred node {node:?} is not in ha.cf's node list")]
    UnknownPreferredNode {
        /// `haresources` line.
        line: usize,
        /// The name.
        node: String,
    },
    /// More groups than the wire can number.
    #[error("too many resource groups: {0} (at most 65535)")]
    TooManyGroups(usize),
    /// `keepalive` is zero.
    #[error("keepalive must be greater than zero")]
    ZeroKeepalive,
    /// `deadtime` is not longer than `keepalive`.
    #[error("deadtime ({deadtime:?}) must be longer than keepalive ({keepalive:?})")]
    DeadtimeTooShort {
        /// `deadtime`.
        deadtime: Duration,
        /// `keepalive`.
        keepalive: Duration,
    },
}

/// How many shutdown notices are sent on each link (each with its own sequence number), so one
/// lost datagram does not turn a clean stop into a `deadtime` wait on the peers.
pub const SHUTDOWN_NOTICE_COPIES: usize = 3;

/// The smallest lateness reported as [`Event::LateWakeup`].
pub const MIN_LATE_WAKEUP: Duration = Duration::from_millis(5);

/// How late the periodic heartbeat may run before [`Event::LateWakeup`]: half a `keepalive`,
/// at least [`MIN_LATE_WAKEUP`] (below that is ordinary scheduler jitter).
pub fn late_wakeup_threshold(keepalive: Duration) -> Duration {
    (keepalive / 2).max(MIN_LATE_WAKEUP)
}

/// Digest of the `haresources` groups announced in every message (`groups_digest`): CRC32 of
/// each group's line (`preferred resource...`), newline-terminated, in file order. Nodes
/// whose digests differ ignore each other's messages.
pub fn groups_digest(groups: &[ResourceGroup]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for g in groups {
        h.update(group_line(g).as_bytes());
        h.update(b"\n");
    }
    h.finalize()
}

fn group_line(g: &ResourceGroup) -> String {
    let d = g.describe();
    if d.is_empty() {
        g.preferred_node.clone()
    } else {
        format!("{} {d}", g.preferred_node)
    }
}

/// `deadtime * 2^(n-1)`, capped at 16 x `deadtime`.
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(4))
}

fn claims(h: Holding) -> bool {
    matches!(h, Holding::Starting | Holding::Held)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Within initdead, not every peer heard yet.
    Init,
    Active,
    ShuttingDown,
    Stopped,
}

#[derive(Debug, Clone)]
struct GroupInfo {
    preferred: usize,
    line: String,
    first_resource: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RemoteGroup {
    holding: Holding,
    failed: bool,
    standby: bool,
    wants: bool,
}

impl RemoteGroup {
    const NONE: Self = Self {
        holding: Holding::None,
        failed: false,
        standby: false,
        wants: false,
    };
}

#[derive(Debug, Clone)]
struct PeerLink {
    state: LinkState,
    last_arrival: Option<Timestamp>,
    last_seq: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    state: PeerState,
    generation: Option<u64>,
    /// Generation in which it was declared dead (for "returning after partition").
    dead_generation: Option<u64>,
    /// Generation whose shutdown notice was received: nothing more is accepted from it.
    shutdown_generation: Option<u64>,
    status: Option<NodeStatus>,
    links: Vec<PeerLink>,
    last_arrival: Option<Timestamp>,
    /// (send_time, arrival) of the newest heartbeat, for our echo.
    echo: Option<(Timestamp, Timestamp)>,
    /// send_time of the message whose group state is applied.
    state_send_time: Option<Timestamp>,
    /// In that message: its echo of our heartbeat.
    echo_of_us: Option<Timestamp>,
    groups: Vec<RemoteGroup>,
    mismatch_reported: bool,
    /// Ping-node counts in the message whose state is applied.
    ping: Option<PingCounts>,
}

#[derive(Debug, Clone)]
struct LocalGroup {
    holding: Holding,
    failed_until: Option<Timestamp>,
    start_failures: u32,
    stop_failures: u32,
    stop_retry_at: Option<Timestamp>,
    standby: bool,
    wants: bool,
    /// A dual claim is in progress (reported, reannounced).
    conflict: bool,
    /// The dead peer that held it when it died.
    orphaned_from: Option<usize>,
    /// Being started as a takeover from this dead peer.
    takeover_from: Option<usize>,
}

/// One node's state machine. See the module documentation.
#[derive(Debug)]
pub struct Node {
    local: usize,
    names: Vec<String>,
    ids: Vec<u32>,
    links: Vec<String>,
    groups: Vec<GroupInfo>,
    keepalive: Duration,
    deadtime: Duration,
    warntime: Duration,
    initdead: Duration,
    failback: bool,
    digest: u32,
    generation: u64,
    started: Timestamp,
    phase: Phase,
    tx_seq: Vec<u64>,
    next_heartbeat: Timestamp,
    /// send_time of the first heartbeat after our last state change.
    announced_at: Timestamp,
    peers: Vec<Peer>,
    local_groups: Vec<LocalGroup>,
    mach_down_pending: Vec<usize>,
    dirty: bool,
    outputs: VecDeque<Output>,
    counters: Counters,
    ping: PingMonitor,
    /// The dead peer whose takeover the ping guard holds back (reported once).
    takeover_held: Option<usize>,
}

impl Node {
    /// A node for `config.local_node`, in its `generation` (must increase at every start),
    /// starting at `now`. The first heartbeats are queued at once.
    pub fn new(config: &Config, generation: u64, now: Timestamp) -> Result<Self, NodeError> {
        let ha = &config.ha_cf;
        let names = ha.nodes.clone();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(NodeError::DuplicateNode(n.clone()));
            }
        }
        let ids: Vec<u32> = names.iter().map(|n| node_id(n)).collect();
        for (i, id) in ids.iter().enumerate() {
            if let Some(j) = ids[..i].iter().position(|x| x == id) {
                return Err(NodeError::NodeIdCollision(
                    names[j].clone(),
                    names[i].clone(),
                ));
            }
        }
        let local = names
            .iter()
            .position(|n| *n == config.local_node)
            .ok_or_else(|| NodeError::UnknownLocalNode(config.local_node.clone()))?;
        if ha.media.is_empty() {
            return Err(NodeError::NoMedia);
        }
        if config.groups.len() > usize::from(u16::MAX) {
            return Err(NodeError::TooManyGroups(config.groups.len()));
        }
        let keepalive = ha.keepalive.value;
        let deadtime = ha.deadtime.value;
        if keepalive.is_zero() {
            return Err(NodeError::ZeroKeepalive);
        }
        if deadtime <= keepalive {
            return Err(NodeError::DeadtimeTooShort {
                deadtime,
                keepalive,
            });
        }
        let mut groups = Vec::with_capacity(config.groups.len());
        for g in &config.groups {
            let preferred = names
                .iter()
                .position(|n| *n == g.preferred_node)
                .ok_or_else(|| NodeError::UnknownPreferredNode {
                    line: g.line,
                    node: g.preferred_node.clone(),
                })?;
            groups.push(GroupInfo {
                preferred,
                line: group_line(g),
                first_resource: g
                    .resources
                    .first()
                    .map(|r| r.describe())
                    .unwrap_or_default(),
            });
        }
        let links: Vec<String> = ha.media.iter().map(|m| m.iface().to_owned()).collect();
        let peer = Peer {
            state: PeerState::Unknown,
            generation: None,
            dead_generation: None,
            shutdown_generation: None,
            status: None,
            links: vec![
                PeerLink {
                    state: LinkState::Unknown,
                    last_arrival: None,
                    last_seq: 0,
                };
                links.len()
            ],
            last_arrival: None,
            echo: None,
            state_send_time: None,
            echo_of_us: None,
            groups: vec![RemoteGroup::NONE; groups.len()],
            mismatch_reported: false,
            ping: None,
        };
        let local_group = LocalGroup {
            holding: Holding::None,
            failed_until: None,
            start_failures: 0,
            stop_failures: 0,
            stop_retry_at: None,
            standby: false,
            wants: false,
            conflict: false,
            orphaned_from: None,
            takeover_from: None,
        };
        let mut node = Self {
            local,
            peers: vec![peer; names.len()],
            local_groups: vec![local_group; groups.len()],
            names,
            ids,
            tx_seq: vec![0; links.len()],
            links,
            groups,
            keepalive,
            deadtime,
            warntime: ha.warntime.value,
            initdead: ha.initdead.value,
            failback: ha.auto_failback.value != AutoFailback::Off,
            digest: groups_digest(&config.groups),
            generation,
            started: now,
            phase: Phase::Init,
            next_heartbeat: now,
            announced_at: now,
            mach_down_pending: Vec::new(),
            dirty: false,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            ping: PingMonitor::from_ha_cf(ha, now),
            takeover_held: None,
        };
        node.peers[local].state = PeerState::Up;
        node.peers[local].generation = Some(generation);
        if node.names.len() == 1 {
            node.phase = Phase::Active;
        }
        node.periodic_heartbeat(now);
        node.reconcile(now);
        node.flush(now);
        Ok(node)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.names[self.local]
    }

    /// This node's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A decoded, authenticated message that arrived on `link` at `arrival` (kernel time,
    /// possibly well before `now` when the driver drains a backlog).
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        link: LinkId,
        arrival: Timestamp,
        msg: Message,
    ) {
        if self.phase == Phase::Stopped {
            return;
        }
        // Most heartbeats repeat what the previous one said: decisions are only re-taken when
        // something they read changed.
        let relevant = self.accept_message(now, link, arrival, msg);
        self.ping_compare(now);
        if relevant || self.dirty {
            self.reconcile(now);
        }
        self.flush(now);
    }

    /// An ICMP echo reply from ping-node address `link` (as in [`Output::Ping`]) to a request
    /// sent at `sent`, arrived at `arrival` (kernel time). Hand in every queued reply before
    /// [`Node::handle_timeout`], like heartbeats.
    pub fn handle_ping_reply(
        &mut self,
        now: Timestamp,
        link: usize,
        sent: Timestamp,
        arrival: Timestamp,
    ) {
        if self.phase == Phase::Stopped {
            return;
        }
        let changed = self.ping.handle_reply(now, link, sent, arrival);
        self.ping_compare(now);
        // A reply may be the proof a held takeover waits for.
        if changed || self.dirty || self.takeover_held.is_some() {
            self.reconcile(now);
        }
        self.flush(now);
    }

    /// The timer fired (or the driver is checking). Called after every queued message was
    /// handed in, so liveness is judged on arrival times.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.phase == Phase::Stopped {
            return;
        }
        if now > self.next_heartbeat {
            let late_by = now.saturating_since(self.next_heartbeat);
            if late_by > late_wakeup_threshold(self.keepalive) {
                self.counters.late_wakeups += 1;
                self.event(Event::LateWakeup { late_by });
            }
        }
        self.detect(now);
        self.ping.handle_timeout(now);
        self.ping_compare(now);
        for link in self.ping.due(now) {
            if let Some(addr) = self.ping.addr(link) {
                self.outputs.push_back(Output::Ping { link, addr });
            }
        }
        for g in 0..self.groups.len() {
            let lg = &mut self.local_groups[g];
            if lg.failed_until.is_some_and(|t| now >= t) {
                lg.failed_until = None;
                self.dirty = true;
            }
            if lg.holding == Holding::Stopping && lg.stop_retry_at.is_some_and(|t| now >= t) {
                lg.stop_retry_at = None;
                let line = self.groups[g].line.clone();
                self.event(Event::Releasing { group: g, line });
                self.outputs.push_back(Output::Resource {
                    group: g,
                    op: ResourceOp::Stop,
                });
            }
        }
        self.reconcile(now);
        if now >= self.next_heartbeat {
            self.periodic_heartbeat(now);
            // A change it just announced may have been all a start was waiting for.
            self.reconcile(now);
        }
        self.flush(now);
    }

    /// An operator command.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command) {
        if matches!(self.phase, Phase::Stopped | Phase::ShuttingDown) {
            return;
        }
        match cmd {
            Command::Standby(scope) => {
                let scope_groups = self.scope_groups(scope, true);
                for &g in &scope_groups {
                    let lg = &mut self.local_groups[g];
                    lg.standby = true;
                    lg.wants = false;
                }
                self.dirty = true;
                self.event(Event::Standby {
                    scope: scope.as_str(),
                    groups: scope_groups.len(),
                });
            }
            Command::Takeover(scope) => {
                let scope_groups = self.scope_groups(scope, false);
                for &g in &scope_groups {
                    let lg = &mut self.local_groups[g];
                    lg.standby = false;
                    lg.wants = true;
                    lg.failed_until = None;
                    lg.start_failures = 0;
                }
                self.dirty = true;
                self.event(Event::Takeover {
                    scope: scope.as_str(),
                    groups: scope_groups.len(),
                });
            }
            Command::Shutdown => {
                self.phase = Phase::ShuttingDown;
                self.dirty = true;
                self.event(Event::ShuttingDown);
            }
        }
        self.reconcile(now);
        self.flush(now);
    }

    /// The driver finished `op` on `group`.
    pub fn handle_resource_result(
        &mut self,
        now: Timestamp,
        group: usize,
        op: ResourceOp,
        result: Result<(), String>,
    ) {
        let Some(lg) = self.local_groups.get_mut(group) else {
            self.counters.stale_results += 1;
            return;
        };
        let line = self.groups[group].line.clone();
        match (op, lg.holding, result) {
            (ResourceOp::Start, Holding::Starting, Ok(())) => {
                lg.holding = Holding::Held;
                lg.start_failures = 0;
                lg.takeover_from = None;
                self.dirty = true;
                self.event(Event::Acquired { group, line });
            }
            (ResourceOp::Start, Holding::Starting, Err(error)) => {
                lg.start_failures = lg.start_failures.saturating_add(1);
                let retry_after = backoff(self.deadtime, lg.start_failures);
                lg.failed_until = Some(now + retry_after);
                lg.takeover_from = None;
                lg.holding = Holding::Stopping;
                self.dirty = true;
                self.counters.start_failures += 1;
                self.event(Event::StartFailed {
                    group,
                    line: line.clone(),
                    error,
                    retry_after,
                });
                self.event(Event::Releasing { group, line });
                self.outputs.push_back(Output::Resource {
                    group,
                    op: ResourceOp::Stop,
                });
            }
            (ResourceOp::Stop, Holding::Stopping, Ok(())) => {
                lg.holding = Holding::None;
                lg.stop_failures = 0;
                lg.stop_retry_at = None;
                self.dirty = true;
                self.event(Event::Released { group, line });
            }
            (ResourceOp::Stop, Holding::Stopping, Err(error)) => {
                lg.stop_failures = lg.stop_failures.saturating_add(1);
                let retry_in = backoff(self.deadtime, lg.stop_failures);
                lg.stop_retry_at = Some(now + retry_in);
                self.counters.stop_failures += 1;
                self.event(Event::StopFailed {
                    group,
                    line,
                    error,
                    retry_in,
                });
            }
            _ => {
                self.counters.stale_results += 1;
            }
        }
        self.reconcile(now);
        self.flush(now);
    }

    /// The next output, if any. Drain completely after every `handle_*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next (`None` once stopped).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.phase == Phase::Stopped {
            return None;
        }
        let mut t = self.next_heartbeat;
        if self.phase == Phase::Init {
            t = t.min(self.started + self.initdead);
        }
        for (i, p) in self.peers.iter().enumerate() {
            if i == self.local || p.state != PeerState::Up {
                continue;
            }
            for l in &p.links {
                if let (LinkState::Up, Some(a)) = (l.state, l.last_arrival) {
                    t = t.min(a + self.deadtime);
                }
            }
        }
        if let Some(p) = self.ping.poll_timeout() {
            t = t.min(p);
        }
        for lg in &self.local_groups {
            if let Some(f) = lg.failed_until {
                t = t.min(f);
            }
            if let Some(r) = lg.stop_retry_at {
                t = t.min(r);
            }
        }
        Some(t)
    }

    /// `true` once a [`Command::Shutdown`] completed: groups released, notice sent.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The local holding state of a group.
    pub fn holding(&self, group: usize) -> Option<Holding> {
        self.local_groups.get(group).map(|g| g.holding)
    }

    /// Liveness of a node (by name) in the local view.
    pub fn peer_state(&self, name: &str) -> Option<PeerState> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(self.peers[i].state)
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The rightful owner of a group in the local view (see the module documentation).
    pub fn rightful_owner(&self, group: usize) -> Option<&str> {
        if group >= self.groups.len() {
            return None;
        }
        self.owner(group).map(|i| self.names[i].as_str())
    }

    /// Snapshot for `hbctl status` / `hbstat`.
    pub fn status(&self) -> ClusterStatus {
        let nodes = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let p = &self.peers[i];
                let local = i == self.local;
                NodeView {
                    name: name.clone(),
                    id: self.ids[i],
                    local,
                    state: if local && self.phase == Phase::Stopped {
                        PeerState::Dead
                    } else {
                        p.state
                    },
                    generation: p.generation,
                    status: if local {
                        Some(self.local_status())
                    } else {
                        p.status
                    },
                    last_arrival: p.last_arrival,
                    ping: if local { self.ping.counts() } else { p.ping },
                    links: if local {
                        Vec::new()
                    } else {
                        p.links
                            .iter()
                            .zip(&self.links)
                            .map(|(l, name)| LinkView {
                                name: name.clone(),
                                state: l.state,
                                last_arrival: l.last_arrival,
                            })
                            .collect()
                    },
                }
            })
            .collect();
        let groups = (0..self.groups.len())
            .map(|g| {
                let lg = &self.local_groups[g];
                let holders = (0..self.names.len())
                    .filter(|&n| self.member(n, g).is_some_and(|m| claims(m.holding)))
                    .map(|n| self.names[n].clone())
                    .collect();
                GroupView {
                    index: g,
                    line: self.groups[g].line.clone(),
                    preferred: self.names[self.groups[g].preferred].clone(),
                    owner: self.owner(g).map(|i| self.names[i].clone()),
                    holders,
                    local: lg.holding,
                    failed: lg.failed_until.is_some(),
                    standby: lg.standby,
                    wants: lg.wants,
                }
            })
            .collect();
        ClusterStatus {
            local: self.names[self.local].clone(),
            generation: self.generation,
            status: self.local_status(),
            stopped: self.phase == Phase::Stopped,
            nodes,
            groups,
            counters: self.counters,
            ping: self.ping.view(),
            takeover_held: self.takeover_held.map(|i| self.names[i].clone()),
        }
    }

    // ----- internals -----

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn local_status(&self) -> NodeStatus {
        match self.phase {
            Phase::Init => NodeStatus::Init,
            Phase::Active => NodeStatus::Active,
            Phase::ShuttingDown | Phase::Stopped => NodeStatus::Stopping,
        }
    }

    fn scope_groups(&self, scope: Scope, standby: bool) -> Vec<usize> {
        let local_only = match scope {
            Scope::All => None,
            Scope::Local => Some(true),
            Scope::Foreign => Some(false),
            Scope::Failback => Some(!standby),
        };
        (0..self.groups.len())
            .filter(|&g| local_only.is_none_or(|l| (self.groups[g].preferred == self.local) == l))
            .collect()
    }

    /// Returns whether anything the ownership decisions read changed (peer liveness, status,
    /// group states, or its echo now confirming our last announcement).
    fn accept_message(
        &mut self,
        now: Timestamp,
        link: LinkId,
        arrival: Timestamp,
        msg: Message,
    ) -> bool {
        if link.0 >= self.links.len() {
            self.counters.ignored_bad_link += 1;
            return false;
        }
        let Some(i) = self.ids.iter().position(|&id| id == msg.sender) else {
            self.counters.ignored_unknown_sender += 1;
            return false;
        };
        if i == self.local {
            // Our own broadcast or multicast looped back.
            return false;
        }
        if msg.groups_digest != self.digest {
            self.counters.ignored_config_mismatch += 1;
            if !self.peers[i].mismatch_reported {
                self.peers[i].mismatch_reported = true;
                let node = self.names[i].clone();
                self.event(Event::ConfigMismatch { node });
            }
            return false;
        }
        let arrival = arrival.min(now);
        let mut relevant = false;
        let p = &mut self.peers[i];
        p.mismatch_reported = false;
        match p.generation {
            Some(g) if msg.generation < g => {
                self.counters.ignored_stale += 1;
                return false;
            }
            Some(g) if msg.generation > g => {
                // A new incarnation: sequence numbers restart, old state is void.
                for l in &mut p.links {
                    l.last_seq = 0;
                }
                p.state_send_time = None;
                p.echo_of_us = None;
                p.echo = None;
                p.groups.fill(RemoteGroup::NONE);
                p.ping = None;
                let was_up = p.state == PeerState::Up;
                p.generation = Some(msg.generation);
                relevant = true;
                if was_up {
                    self.event(Event::NodeRestarted {
                        node: self.names[i].clone(),
                        generation: msg.generation,
                    });
                }
            }
            Some(_) => {}
            None => p.generation = Some(msg.generation),
        }
        let p = &mut self.peers[i];
        if p.shutdown_generation == Some(msg.generation) {
            self.counters.ignored_stale += 1;
            return false;
        }
        let pl = &mut p.links[link.0];
        if msg.seq <= pl.last_seq {
            self.counters.ignored_stale += 1;
            return false;
        }
        pl.last_seq = msg.seq;
        self.counters.messages_received += 1;

        if msg.kind == MessageKind::Shutdown {
            p.shutdown_generation = Some(msg.generation);
            self.event(Event::ShutdownNotice {
                node: self.names[i].clone(),
            });
            self.declare_dead(i, DeathCause::Shutdown);
            self.maybe_leave_init();
            return true;
        }

        // Liveness. A message whose arrival is already `deadtime` old (a late drained backlog)
        // updates arrival times but brings no link or node back.
        let fresh = arrival + self.deadtime > now;
        let p = &mut self.peers[i];
        if p.state == PeerState::Up
            && let Some(prev) = p.last_arrival
            && arrival > prev
        {
            let interval = arrival.saturating_since(prev);
            if interval > self.warntime {
                self.counters.late_heartbeats += 1;
                self.event(Event::LateHeartbeat {
                    node: self.names[i].clone(),
                    interval,
                });
            }
        }
        let p = &mut self.peers[i];
        p.last_arrival = Some(p.last_arrival.map_or(arrival, |a| a.max(arrival)));
        let pl = &mut p.links[link.0];
        pl.last_arrival = Some(pl.last_arrival.map_or(arrival, |a| a.max(arrival)));
        let link_came_up = fresh && pl.state != LinkState::Up;
        if link_came_up {
            pl.state = LinkState::Up;
        }
        if p.echo.is_none_or(|(_, a)| arrival >= a) {
            p.echo = Some((msg.send_time, arrival));
        }
        if p.state_send_time.is_none_or(|t| msg.send_time >= t) {
            p.state_send_time = Some(msg.send_time);
            if p.status != Some(msg.status) {
                p.status = Some(msg.status);
                relevant = true;
            }
            let me = self.ids[self.local];
            let confirmed = |e: Option<Timestamp>| e.is_some_and(|e| e >= self.announced_at);
            let echo_of_us = msg
                .echoes
                .iter()
                .find(|e| e.node == me)
                .map(|e| e.send_time);
            relevant |= confirmed(echo_of_us) != confirmed(p.echo_of_us);
            p.echo_of_us = echo_of_us;
            let yielding = |c: Option<PingCounts>| c.is_some_and(|c| c.yielding);
            relevant |= yielding(p.ping) != yielding(msg.ping);
            p.ping = msg.ping;
            for (g, slot) in p.groups.iter_mut().enumerate() {
                let new = msg
                    .groups
                    .iter()
                    .find(|gs| usize::from(gs.group) == g)
                    .map_or(RemoteGroup::NONE, |gs| RemoteGroup {
                        holding: gs.holding,
                        failed: gs.failed,
                        standby: gs.standby,
                        wants: gs.wants,
                    });
                if *slot != new {
                    *slot = new;
                    relevant = true;
                }
            }
        }
        let prev_state = p.state;
        let returned = prev_state == PeerState::Dead && p.dead_generation == Some(msg.generation);
        if link_came_up {
            let link = self.links[link.0].clone();
            self.event(Event::LinkUp {
                node: self.names[i].clone(),
                link,
            });
        }
        if fresh && prev_state != PeerState::Up {
            relevant = true;
            self.peers[i].state = PeerState::Up;
            if returned {
                self.counters.returns += 1;
                self.event(Event::NodeReturned {
                    node: self.names[i].clone(),
                });
                // While it could not hear us the peer may have held our groups and sent
                // gratuitous ARPs. If it released (or is releasing) before we heard it, the
                // dual-ownership check never sees its claim: mark the conflict now, so the
                // rightful holder re-announces once the peer shows the group `None`.
                for g in 0..self.local_groups.len() {
                    let peer = self.peers[i].groups[g].holding;
                    if self.local_groups[g].holding == Holding::Held
                        && matches!(peer, Holding::None | Holding::Stopping)
                    {
                        self.local_groups[g].conflict = true;
                    }
                }
            } else {
                self.event(Event::NodeActive {
                    node: self.names[i].clone(),
                });
            }
            self.maybe_leave_init();
        }
        relevant
    }

    fn maybe_leave_init(&mut self) {
        if self.phase == Phase::Init
            && self
                .peers
                .iter()
                .enumerate()
                .all(|(i, p)| i == self.local || p.state != PeerState::Unknown)
        {
            self.phase = Phase::Active;
            self.dirty = true;
        }
    }

    /// Link and node deaths by arrival time.
    fn detect(&mut self, now: Timestamp) {
        if self.phase == Phase::Init && now >= self.started + self.initdead {
            for i in 0..self.peers.len() {
                if i != self.local && self.peers[i].state == PeerState::Unknown {
                    self.declare_dead(i, DeathCause::Silence);
                }
            }
            self.phase = Phase::Active;
            self.dirty = true;
        }
        for i in 0..self.peers.len() {
            if i == self.local || self.peers[i].state != PeerState::Up {
                continue;
            }
            for l in 0..self.links.len() {
                let pl = &mut self.peers[i].links[l];
                if pl.state == LinkState::Up
                    && pl.last_arrival.is_none_or(|a| now >= a + self.deadtime)
                {
                    pl.state = LinkState::Dead;
                    let (node, link) = (self.names[i].clone(), self.links[l].clone());
                    self.event(Event::LinkDead { node, link });
                }
            }
            if self.peers[i].links.iter().all(|l| l.state != LinkState::Up) {
                self.declare_dead(i, DeathCause::Silence);
            }
        }
    }

    fn declare_dead(&mut self, i: usize, cause: DeathCause) {
        let p = &mut self.peers[i];
        if p.state == PeerState::Dead {
            return;
        }
        p.state = PeerState::Dead;
        p.dead_generation = p.generation;
        for l in &mut p.links {
            if l.state == LinkState::Up {
                l.state = LinkState::Dead;
            }
        }
        let held: Vec<usize> = (0..p.groups.len())
            .filter(|&g| p.groups[g].holding != Holding::None)
            .collect();
        p.groups.fill(RemoteGroup::NONE);
        p.ping = None;
        p.status = None;
        p.state_send_time = None;
        p.echo_of_us = None;
        for &g in &held {
            self.local_groups[g].orphaned_from = Some(i);
        }
        if !held.is_empty() {
            self.mach_down_pending.push(i);
        }
        self.counters.deaths += 1;
        let node = self.names[i].clone();
        self.event(Event::NodeDead { node, cause });
    }

    fn member(&self, n: usize, g: usize) -> Option<Member> {
        if n == self.local {
            if self.phase == Phase::Stopped {
                return None;
            }
            let lg = &self.local_groups[g];
            return Some(Member {
                holding: lg.holding,
                candidate: self.phase == Phase::Active && lg.failed_until.is_none(),
                standby: lg.standby || self.ping.yielding(),
                wants: lg.wants,
            });
        }
        let p = &self.peers[n];
        if p.state != PeerState::Up {
            return None;
        }
        let r = p.groups[g];
        Some(Member {
            holding: r.holding,
            candidate: p.status == Some(NodeStatus::Active) && !r.failed,
            // ipfail gave it up: like standby, a candidate only when no other node is.
            standby: r.standby || p.ping.is_some_and(|c| c.yielding),
            wants: r.wants,
        })
    }

    fn owner(&self, g: usize) -> Option<usize> {
        let n = self.names.len();
        let pref = self.groups[g].preferred;
        let members: Vec<Option<Member>> = (0..n).map(|i| self.member(i, g)).collect();
        let tier1 = members.iter().flatten().any(|m| m.candidate && !m.standby);
        let cand = |i: usize| -> Option<Member> {
            members[i].filter(|m| m.candidate && (!tier1 || !m.standby))
        };
        // The preferred node if it satisfies `f`, else the first in `node` order that does.
        let pick = |f: &dyn Fn(&Member) -> bool| -> Option<usize> {
            if cand(pref).is_some_and(|m| f(&m)) {
                return Some(pref);
            }
            (0..n).find(|&i| cand(i).is_some_and(|m| f(&m)))
        };
        if pick(&|m| m.wants).is_some() {
            return pick(&|m| m.wants && claims(m.holding)).or_else(|| pick(&|m| m.wants));
        }
        if cand(pref).is_some()
            && (self.failback
                || !(0..n).any(|i| i != pref && cand(i).is_some_and(|m| claims(m.holding))))
        {
            return Some(pref);
        }
        pick(&|m| claims(m.holding)).or_else(|| pick(&|_| true))
    }

    /// A local state change not yet announced (`dirty`) must be announced and echoed first.
    fn can_start(&self, g: usize) -> bool {
        !self.dirty
            && self.peers.iter().enumerate().all(|(i, p)| {
                i == self.local
                    || match p.state {
                        PeerState::Dead => self.may_take_from_dead(i),
                        PeerState::Unknown => false,
                        PeerState::Up => {
                            p.groups[g].holding == Holding::None
                                && p.echo_of_us.is_some_and(|e| e >= self.announced_at)
                        }
                    }
            })
    }

    /// The ping guard on taking a dead peer's groups without its confirmation. With ping nodes
    /// configured, this node must reach one now and have had an answer to a request sent at
    /// least one `keepalive` after the peer's last heartbeat arrived (when the next one was
    /// due): proof that it was still on the network while the peer was silent, so the silence
    /// is not its own isolation. A peer that sent a shutdown notice released its groups itself.
    fn may_take_from_dead(&self, i: usize) -> bool {
        let p = &self.peers[i];
        if !self.ping.is_configured()
            || (p.shutdown_generation.is_some() && p.shutdown_generation == p.dead_generation)
        {
            return true;
        }
        let silent_since = p.last_arrival.unwrap_or(self.started) + self.keepalive;
        !self.ping.isolated() && self.ping.answered_since(silent_since)
    }

    /// The first dead peer the ping guard does not let this node take over from.
    fn takeover_blocked_by(&self) -> Option<usize> {
        (0..self.peers.len()).find(|&i| {
            i != self.local && self.peers[i].state == PeerState::Dead && !self.may_take_from_dead(i)
        })
    }

    /// ipfail's rule on the live peers' announced counts; events out, `dirty` when the yield
    /// flag changed.
    fn ping_compare(&mut self, now: Timestamp) {
        let best = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != self.local && p.state == PeerState::Up)
            .filter_map(|(_, p)| p.ping.map(|c| c.reachable))
            .max();
        if self.ping.compare(now, best) {
            self.dirty = true;
        }
        let events: Vec<_> = self.ping.drain_events().collect();
        for e in events {
            self.event(Event::Ping(e));
        }
    }

    /// A live peer shows the group in any state but `None` (a loser still stopping counts: its
    /// addresses may still be up and announcing).
    fn any_peer_involved(&self, g: usize) -> bool {
        (0..self.peers.len()).any(|i| {
            i != self.local
                && self.peers[i].state == PeerState::Up
                && self.peers[i].groups[g].holding != Holding::None
        })
    }

    fn first_claimant(&self, g: usize) -> Option<usize> {
        (0..self.peers.len()).find(|&i| {
            i != self.local
                && self.peers[i].state == PeerState::Up
                && claims(self.peers[i].groups[g].holding)
        })
    }

    fn reconcile(&mut self, now: Timestamp) {
        if self.phase == Phase::Stopped {
            return;
        }
        for g in 0..self.groups.len() {
            let others_want = (0..self.peers.len()).any(|i| {
                i != self.local
                    && self.peers[i].state == PeerState::Up
                    && self.peers[i].groups[g].wants
            });
            let lg = &mut self.local_groups[g];
            if lg.wants && lg.holding == Holding::Held && others_want {
                lg.wants = false;
                self.dirty = true;
            }
            let owner = self.owner(g);
            let mine = owner == Some(self.local);
            let claimant = self.first_claimant(g);
            let holding = self.local_groups[g].holding;
            if !mine {
                self.local_groups[g].orphaned_from = None;
            }
            if claims(holding) && claimant.is_some() && !self.local_groups[g].conflict {
                self.local_groups[g].conflict = true;
                self.counters.dual_ownerships += 1;
                let keeper = owner.map_or_else(|| "nobody".to_owned(), |o| self.names[o].clone());
                let peer = claimant.map(|c| self.names[c].clone()).unwrap_or_default();
                self.event(Event::DualOwnership {
                    group: g,
                    line: self.groups[g].line.clone(),
                    peer,
                    keeper,
                });
                if mine && holding == Holding::Held {
                    self.reannounce(g);
                }
            } else if self.local_groups[g].conflict && !self.any_peer_involved(g) {
                self.local_groups[g].conflict = false;
                if mine && holding == Holding::Held {
                    self.reannounce(g);
                }
            }
            match holding {
                Holding::None => {
                    if mine && self.phase == Phase::Active {
                        if self.can_start(g) {
                            self.start(g);
                        } else {
                            self.note_takeover_held();
                        }
                    }
                }
                Holding::Held => {
                    if !mine {
                        self.local_groups[g].holding = Holding::Stopping;
                        self.dirty = true;
                        let line = self.groups[g].line.clone();
                        self.event(Event::Releasing { group: g, line });
                        self.outputs.push_back(Output::Resource {
                            group: g,
                            op: ResourceOp::Stop,
                        });
                    }
                }
                // A start cannot be cancelled: its result decides; a stop finishes or retries.
                Holding::Starting | Holding::Stopping => {}
            }
        }
        if self
            .takeover_held
            .is_some_and(|i| self.peers[i].state != PeerState::Dead || self.may_take_from_dead(i))
        {
            self.takeover_held = None;
        }
        self.mach_down_check();
        if self.phase == Phase::ShuttingDown
            && self.local_groups.iter().all(|g| g.holding == Holding::None)
        {
            self.finish_shutdown(now);
        }
    }

    /// A start this node would make waits for the ping guard: say so once per dead peer.
    fn note_takeover_held(&mut self) {
        if let Some(i) = self.takeover_blocked_by()
            && self.takeover_held != Some(i)
        {
            self.takeover_held = Some(i);
            let node = self.names[i].clone();
            self.event(Event::TakeoverHeld { node });
        }
    }

    fn reannounce(&mut self, g: usize) {
        self.counters.reannounces += 1;
        let line = self.groups[g].line.clone();
        self.event(Event::Reannounce { group: g, line });
        self.outputs.push_back(Output::Reannounce { group: g });
    }

    fn start(&mut self, g: usize) {
        let lg = &mut self.local_groups[g];
        lg.holding = Holding::Starting;
        lg.conflict = false;
        self.dirty = true;
        if let Some(from) = lg.orphaned_from.take() {
            lg.takeover_from = Some(from);
            let resource = self.groups[g].first_resource.clone();
            let from = self.names[from].clone();
            self.event(Event::TakingOver {
                group: g,
                resource,
                from,
            });
        }
        let line = self.groups[g].line.clone();
        self.event(Event::Acquiring { group: g, line });
        self.outputs.push_back(Output::Resource {
            group: g,
            op: ResourceOp::Start,
        });
    }

    fn mach_down_check(&mut self) {
        let mut k = 0;
        while k < self.mach_down_pending.len() {
            let p = self.mach_down_pending[k];
            let busy = self
                .local_groups
                .iter()
                .any(|g| g.takeover_from == Some(p) || g.orphaned_from == Some(p));
            if busy {
                k += 1;
            } else {
                self.mach_down_pending.remove(k);
                let node = self.names[p].clone();
                self.event(Event::MachDownComplete { node });
            }
        }
    }

    fn finish_shutdown(&mut self, now: Timestamp) {
        // Send our final state first so peers see every group released, then the notice.
        self.send_all(now, MessageKind::Heartbeat);
        for _ in 0..SHUTDOWN_NOTICE_COPIES {
            self.send_all(now, MessageKind::Shutdown);
        }
        self.dirty = false;
        self.phase = Phase::Stopped;
        self.event(Event::Stopped);
    }

    fn periodic_heartbeat(&mut self, now: Timestamp) {
        self.send_all(now, MessageKind::Heartbeat);
        self.next_heartbeat = self.next_heartbeat + self.keepalive;
        if self.next_heartbeat <= now {
            self.next_heartbeat = now + self.keepalive;
        }
    }

    /// Sends a heartbeat now when the local state changed.
    /// A start that waited only for that announcement (no live peer to confirm) happens now.
    fn flush(&mut self, now: Timestamp) {
        if self.dirty && self.phase != Phase::Stopped {
            self.send_all(now, MessageKind::Heartbeat);
            self.reconcile(now);
            if self.dirty && self.phase != Phase::Stopped {
                self.send_all(now, MessageKind::Heartbeat);
            }
        }
    }

    fn send_all(&mut self, now: Timestamp, kind: MessageKind) {
        if self.dirty {
            self.announced_at = now;
            self.dirty = false;
        }
        let echoes: Vec<Echo> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != self.local && p.state == PeerState::Up)
            .filter_map(|(i, p)| {
                p.echo.map(|(send_time, arrival)| Echo {
                    node: self.ids[i],
                    send_time,
                    hold: now.saturating_since(arrival),
                })
            })
            .collect();
        let groups: Vec<GroupState> = self
            .local_groups
            .iter()
            .enumerate()
            .map(|(g, lg)| GroupState {
                group: u16::try_from(g).unwrap_or(u16::MAX),
                holding: lg.holding,
                failed: lg.failed_until.is_some(),
                standby: lg.standby,
                wants: lg.wants,
            })
            .collect();
        let status = self.local_status();
        for l in 0..self.links.len() {
            self.tx_seq[l] += 1;
            let msg = Message {
                kind,
                sender: self.ids[self.local],
                generation: self.generation,
                seq: self.tx_seq[l],
                send_time: now,
                groups_digest: self.digest,
                status,
                echoes: echoes.clone(),
                groups: groups.clone(),
                ping: self.ping.counts(),
            };
            self.counters.messages_sent += 1;
            self.outputs.push_back(Output::Transmit {
                link: LinkId(l),
                msg,
            });
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Member {
    holding: Holding,
    candidate: bool,
    standby: bool,
    wants: bool,
}
