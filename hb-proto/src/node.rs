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
//! No group starts while a peer declared dead by silence waits for its fence (fencing configured;
//! see [`crate::fence`]), and no group starts or is released (but by a clean stop) while a live
//! peer announces a different `haresources` digest ([`groups_digest`]).
//!
//! A node `Starting` a group that is not rightfully its own while a live peer claims it (the
//! peer it took over from was only late, not dead, or a partition healed mid-start) does not
//! wait for its start to finish: it abandons the start at once ([`Event::StartAbandoned`]) and
//! asks for a stop in its place, so the address it may already have added goes away within one
//! heartbeat of hearing the holder instead of after the rest of the start.
//!
//! While a live peer is `Stopping` a group this node is the rightful owner of (a clean stop or
//! `standby` handing it over), the node asks the driver to prepare the start
//! ([`Output::Prepare`]: the checks that precede a start, run while the peer releases) and
//! voids that ([`Output::Unprepare`]) when the handover ends without a start here; the start
//! itself still waits for the release to be confirmed.
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
//! - A `Stop` may come while the group's `Start` still runs (an abandoned start): the driver
//!   then starts no further resource of the group, removes the addresses the start added at
//!   once, lets the resource in progress finish, stops what the start started, and reports the
//!   `Stop` (reporting the abandoned `Start` too is allowed; it is ignored).

mod arbiter;
mod command;
mod event;
mod fencing;
mod liveness;
mod ownership;
mod ping_guard;
mod receive;
mod reload;
mod status;
mod transmit;

use std::{collections::VecDeque, net::IpAddr, time::Duration};

pub use command::{Command, Scope};
pub use event::{DeathCause, Event, EventFields, Level, TakeoverTimes};
pub use receive::{Reception, Rejection};
pub use reload::{SHUTDOWN_STOP_ATTEMPTS, SHUTDOWN_STOP_RETRY};
pub use status::{
    ClusterStatus, Counters, GroupView, HoldingState, LinkState, LinkView, NodeState, NodeView,
    PeerState,
};

use crate::{
    Timestamp,
    config::{AuthKeys, AutoFailback, Config, ResourceGroup, node_id},
    message::{Holding, Message, NodeStatus, PingCounts},
    ping::PingMonitor,
    replay::ReplayGuard,
};

/// Index of a heartbeat medium in `config.ha_cf.media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub usize);

/// What the driver measured while starting a group's resources, reported with the result (the
/// takeover timeline in [`Event::MachDownComplete`] is built from it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceTimes {
    /// When the last resource had started.
    pub finished: Option<Timestamp>,
    /// When the first gratuitous ARP or NA was sent.
    pub first_announce: Option<Timestamp>,
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
    /// A live peer is releasing the group to this node, and its start follows as soon as the
    /// release is confirmed: run now what that start would run first without changing
    /// anything (each script's `status`, which Heartbeat runs before `start`), so the start
    /// does not wait for it. The group's next `Resource { op: Start }` may use the result;
    /// [`Output::Unprepare`] voids it. Optional: a driver may ignore both and check at start.
    Prepare {
        /// Group index.
        group: usize,
    },
    /// What [`Output::Prepare`] asked for is void (the handover did not happen): the next
    /// start of the group checks afresh.
    Unprepare {
        /// Group index.
        group: usize,
    },
    /// Re-send gratuitous ARPs for the group's addresses.
    Reannounce {
        /// Group index.
        group: usize,
    },
    /// Fence (reset) a peer before anything is taken over from it; report with
    /// [`Node::handle_fence_result`]. Run it off the heartbeat path, killed after `timeout`.
    Fence {
        /// The peer's name.
        peer: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Kill the attempt after this long and report it failed.
        timeout: Duration,
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
    /// What became of one received datagram, for metrics: the driver records it, nothing more.
    Received(Reception),
    /// A group's stop failed and fencing is configured: fence this node
    /// (`self_fence_command`, by default a forced reboot); report with
    /// [`Node::handle_self_fence_result`].
    SelfFence {
        /// The group that could not be stopped.
        group: usize,
    },
    /// An etcd request for the arbiter (`arbiter etcd ...` configured); report its result with
    /// [`Node::handle_arbiter`]. Run it off the heartbeat path.
    Arbiter(crate::arbiter::ArbiterRequest),
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
/// each group's line (`preferred resource...`), newline-terminated, in file order. A peer
/// whose digest differs stays alive in membership, but its group states are not applied and no
/// group is started or released while it is alive (see "Ownership" in the module docs).
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
    /// After a reload shortened `deadtime`: the previous one, in force for this peer until its
    /// heartbeats come at the new pace (see `reload`).
    deadtime_floor: Option<Duration>,
    /// Its haresources digest, while it differs from ours.
    config_mismatch: Option<u32>,
    /// When the mismatch is logged again.
    mismatch_next_report: Option<Timestamp>,
    /// Ping-node counts in the message whose state is applied.
    ping: Option<PingCounts>,
    /// Dead, its takeover held by the ping guard, when a reload removed every ping node: still
    /// held until it comes back (a reload never lifts the guard, see `reload`).
    ping_hold: bool,
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
    /// A live peer is involved with the group we hold or claim (a dual claim, reported; or the
    /// peer seen releasing it): re-announce when the peer shows it `None`.
    conflict: bool,
    /// The dead peer that held it when it died.
    orphaned_from: Option<usize>,
    /// Being started as a takeover from this dead peer.
    takeover_from: Option<usize>,
    /// An [`Output::Prepare`] is in force (a live peer is releasing the group to us).
    prepared: bool,
    /// The start in progress was abandoned (a live peer holds the group): its result, if the
    /// driver still reports one, is ignored; the stop asked in its place decides.
    start_abandoned: bool,
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
    /// The periodic heartbeat has a timer of its own ([`Node::set_separate_heartbeat_timer`]).
    separate_heartbeat_timer: bool,
    /// send_time of the first heartbeat after our last state change.
    announced_at: Timestamp,
    peers: Vec<Peer>,
    local_groups: Vec<LocalGroup>,
    /// Takeovers from dead peers not yet complete: (peer, timeline so far).
    mach_down_pending: Vec<(usize, TakeoverTimes)>,
    dirty: bool,
    /// [`Event::Joined`] was emitted.
    joined: bool,
    outputs: VecDeque<Output>,
    counters: Counters,
    keys: AuthKeys,
    replay: ReplayGuard,
    fencing: fencing::Fencing,
    ping: PingMonitor,
    /// The dead peer whose takeover the ping guard holds back (reported once).
    takeover_held: Option<usize>,
    /// Fencing configured: a failed stop fences this node (see `reload`).
    self_fence_configured: bool,
    /// An [`Output::SelfFence`] is out, its result not yet in.
    self_fence_pending: bool,
    /// The node fenced itself.
    self_fenced: bool,
    /// Groups a clean stop gave up on.
    left_running: Vec<String>,
    /// Each group's failed stops when the clean stop began.
    stop_failures_before_shutdown: Vec<u32>,
    /// The arbiter gate (`arbiter etcd ...` configured).
    arbiter: Option<crate::arbiter::ArbiterGate>,
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
                };
                links.len()
            ],
            last_arrival: None,
            echo: None,
            state_send_time: None,
            echo_of_us: None,
            groups: vec![RemoteGroup::NONE; groups.len()],
            deadtime_floor: None,
            config_mismatch: None,
            mismatch_next_report: None,
            ping: None,
            ping_hold: false,
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
            start_abandoned: false,
            prepared: false,
        };
        let replay = ReplayGuard::new(ids[local], ids.iter().copied());
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
            separate_heartbeat_timer: false,
            announced_at: now,
            mach_down_pending: Vec::new(),
            dirty: false,
            joined: false,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            keys: config.authkeys.clone(),
            replay,
            fencing: fencing::Fencing::new(
                crate::fence::FenceSetup::from_config(config),
                ha.nodes.clone(),
            ),
            ping: PingMonitor::from_ha_cf(ha, now),
            takeover_held: None,
            self_fence_configured: ha.self_fence().is_some(),
            self_fence_pending: false,
            self_fenced: false,
            left_running: Vec::new(),
            stop_failures_before_shutdown: Vec::new(),
            arbiter: ha.arbiter.as_ref().map(|a| {
                let keys = (0..config.groups.len()).map(|g| a.key_of(g)).collect();
                crate::arbiter::ArbiterGate::for_keys(a.ttl.value, keys)
            }),
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
        if !self.separate_heartbeat_timer {
            self.check_late_wakeup(now);
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
                self.ask_stop(g);
            }
        }
        self.reconcile(now);
        if !self.separate_heartbeat_timer && now >= self.next_heartbeat {
            self.periodic_heartbeat(now);
            // A change it just announced may have been all a start was waiting for.
            self.reconcile(now);
        }
        self.flush(now);
    }

    /// Gives the periodic heartbeat a timer of its own: from now on [`Node::handle_timeout`]
    /// and [`Node::poll_timeout`] leave it out, and the driver calls
    /// [`Node::handle_heartbeat_timeout`] at [`Node::heartbeat_deadline`] (a send path that
    /// no other input can delay). Detection and everything else stay with `handle_timeout`.
    pub fn set_separate_heartbeat_timer(&mut self, on: bool) {
        self.separate_heartbeat_timer = on;
    }

    /// When the next periodic heartbeat is due (`None` once stopped).
    pub fn heartbeat_deadline(&self) -> Option<Timestamp> {
        (self.phase != Phase::Stopped).then_some(self.next_heartbeat)
    }

    /// The heartbeat timer fired: sends the periodic heartbeat when it is due (reporting
    /// [`Event::LateWakeup`] when this runs late) and starts what that announcement was all a
    /// start waited for. Judges no peer (that needs every queued heartbeat handed in first:
    /// [`Node::handle_timeout`]), so it may be called without draining input. Returns whether
    /// a heartbeat was sent.
    pub fn handle_heartbeat_timeout(&mut self, now: Timestamp) -> bool {
        if self.phase == Phase::Stopped || now < self.next_heartbeat {
            return false;
        }
        self.check_late_wakeup(now);
        self.periodic_heartbeat(now);
        self.reconcile(now);
        self.flush(now);
        true
    }

    /// The next [`Output::Transmit`] in the queue, taken out of it (other outputs stay queued
    /// for [`Node::poll_output`], in order): for a send path that only sends.
    pub fn poll_transmit(&mut self) -> Option<(LinkId, Message)> {
        let i = self
            .outputs
            .iter()
            .position(|o| matches!(o, Output::Transmit { .. }))?;
        match self.outputs.remove(i) {
            Some(Output::Transmit { link, msg }) => Some((link, msg)),
            Some(other) => {
                // Not reached (the position is a Transmit); put it back rather than lose it.
                self.outputs.insert(i, other);
                None
            }
            None => None,
        }
    }

    /// Outputs are queued for [`Node::poll_output`].
    pub fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Whether the driver must hand in every message as soon as it arrives (issue 20). `false`
    /// only when the node is steady: joined and active, nothing pending (no local group
    /// starting, stopping, failed, prepared or in conflict, no takeover, no fencing), every
    /// peer up on every link, active, with our haresources, no group of its in transition,
    /// and its latest state confirming our last announcement. Then a message that repeats its
    /// sender's previous state (kind, flags, ping counts, generation, status, haresources
    /// digest and group states: all [`Node::handle_datagram`] decides on, except the echo,
    /// whose confirmation is part of being steady) changes nothing but the peer's arrival
    /// times, which are judged on kernel time: the driver may hand such messages in later,
    /// but before [`Node::handle_timeout`] as always. Any doubt answers `true`.
    pub fn wants_every_message(&self) -> bool {
        if self.phase != Phase::Active
            || !self.joined
            || self.dirty
            || !self.mach_down_pending.is_empty()
            || self.takeover_held.is_some()
            || self.self_fence_pending
        {
            return true;
        }
        let busy_group = |g: &LocalGroup| {
            matches!(g.holding, Holding::Starting | Holding::Stopping)
                || g.failed_until.is_some()
                || g.stop_retry_at.is_some()
                || g.conflict
                || g.prepared
                || g.takeover_from.is_some()
                || g.orphaned_from.is_some()
                || g.start_abandoned
        };
        if self.local_groups.iter().any(busy_group) {
            return true;
        }
        self.peers.iter().enumerate().any(|(i, p)| {
            i != self.local
                && (p.state != PeerState::Up
                    || p.status != Some(NodeStatus::Active)
                    || p.config_mismatch.is_some()
                    || p.deadtime_floor.is_some()
                    || p.ping_hold
                    || p.links.iter().any(|l| l.state != LinkState::Up)
                    || p.echo_of_us.is_none_or(|e| e < self.announced_at)
                    || p.groups
                        .iter()
                        .any(|g| matches!(g.holding, Holding::Starting | Holding::Stopping)))
        })
    }

    fn check_late_wakeup(&mut self, now: Timestamp) {
        if now > self.next_heartbeat {
            let late_by = now.saturating_since(self.next_heartbeat);
            if late_by > late_wakeup_threshold(self.keepalive) {
                self.counters.late_wakeups += 1;
                self.event(Event::LateWakeup { late_by });
            }
        }
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
        // Without the heartbeat (its own timer), something else always bounds the wait: an
        // hour at most.
        let mut t = if self.separate_heartbeat_timer {
            self.next_heartbeat + std::time::Duration::from_secs(3600)
        } else {
            self.next_heartbeat
        };
        if self.phase == Phase::Init {
            t = t.min(self.started + self.initdead);
        }
        for (i, p) in self.peers.iter().enumerate() {
            if i == self.local || p.state != PeerState::Up {
                continue;
            }
            let deadtime = self.peer_deadtime(i);
            for l in &p.links {
                if let (LinkState::Up, Some(a)) = (l.state, l.last_arrival) {
                    t = t.min(a + deadtime);
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
        if let Some(f) = self.fencing.next_timeout() {
            t = t.min(f);
        }
        if let Some(a) = self.arbiter_next_timeout() {
            t = t.min(a);
        }
        Some(t)
    }

    /// `true` once the node has joined ([`Event::Joined`]): links judged (every peer heard, or
    /// `initdead` passed) and the initial resource groups acquired or declined. The driver
    /// tells its service manager it is ready then.
    pub fn joined(&self) -> bool {
        self.joined
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
}
