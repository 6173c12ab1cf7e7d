//! What the node tells the driver for logging and metrics.
//!
//! Every event carries node and interface NAMES so its [`Display`](std::fmt::Display) form is the
//! line Heartbeat logs for the same situation (`Link node2:eth1 dead.`,
//! `node node1: is dead`, ...). Events Heartbeat has no line for get hb's own wording.

use std::{fmt, time::Duration};

use crate::Timestamp;
use crate::ping::PingEvent;

/// How loud the driver should log an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Normal operation.
    Info,
    /// Worth an operator's attention.
    Warn,
    /// Something failed.
    Error,
}

/// Why a peer was declared dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathCause {
    /// No heartbeat on any link for `deadtime` (or `initdead` for a peer never heard).
    Silence,
    /// It sent a shutdown notice.
    Shutdown,
}

/// The timeline of one takeover from a dead peer ([`Event::MachDownComplete`]), all on this
/// node's CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeoverTimes {
    /// Arrival of the last heartbeat heard from the peer (its death time if never heard).
    pub last_heard: Timestamp,
    /// When it was declared dead.
    pub declared_dead: Timestamp,
    /// When the last resource of the groups taken over had started, as the driver measured it
    /// (`None`: none started).
    pub resources_started: Option<Timestamp>,
    /// When the first gratuitous ARP or NA went out for them (`None`: no address moved).
    pub first_announce: Option<Timestamp>,
    /// When the fence of the peer succeeded (`None`: no fencing configured, or a shutdown).
    pub fenced: Option<Timestamp>,
}

/// Something the node state machine did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A heartbeat arrived on a link that was not up. `Link node2:eth1 up.`
    LinkUp {
        /// Peer name.
        node: String,
        /// Interface name.
        link: String,
    },
    /// No heartbeat on the link for `deadtime`. `Link node2:eth1 dead.`
    LinkDead {
        /// Peer name.
        node: String,
        /// Interface name.
        link: String,
    },
    /// A heartbeat from the peer arrived more than `warntime` after the previous one.
    /// `Late heartbeat: Node node2: interval 73 ms`
    LateHeartbeat {
        /// Peer name.
        node: String,
        /// Time since the previous heartbeat from that peer (any link).
        interval: Duration,
    },
    /// A peer became active (first heard, or heard again in a new generation after being dead).
    /// `Status update for node node2: status active`
    NodeActive {
        /// Peer name.
        node: String,
    },
    /// A peer was declared dead. `node node1: is dead`
    NodeDead {
        /// Peer name.
        node: String,
        /// Silence or shutdown notice.
        cause: DeathCause,
        /// Kernel arrival of its last heartbeat on any link (`None`: never heard).
        last_arrival: Option<Timestamp>,
        /// When it was declared dead (the `now` of the input that decided it).
        at: Timestamp,
    },
    /// A peer sent a shutdown notice. `Received shutdown notice from node1.`
    ShutdownNotice {
        /// Peer name.
        node: String,
    },
    /// A peer declared dead is heard again in the SAME generation (it did not restart: the
    /// silence was a partition or a stall). `Cluster node node1 returning after partition.`
    NodeReturned {
        /// Peer name.
        node: String,
    },
    /// A peer that was up is heard in a newer generation: it restarted within `deadtime`.
    NodeRestarted {
        /// Peer name.
        node: String,
        /// Its new generation.
        generation: u64,
    },
    /// Starting a group that a dead peer held. `Taking over resource group IPaddr::10.0.0.100`
    TakingOver {
        /// Group index.
        group: usize,
        /// The group's first resource, as Heartbeat names a group in this line.
        resource: String,
        /// The dead peer that held it.
        from: String,
    },
    /// Starting a group. `Acquiring resource group: node1 IPaddr::10.0.0.100 httpd`
    Acquiring {
        /// Group index.
        group: usize,
        /// The `haresources` line: preferred node then resources.
        line: String,
    },
    /// Stopping a group. `Releasing resource group: node1 IPaddr::10.0.0.100 httpd`
    Releasing {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
    },
    /// Every resource of the group started. `Resource acquisition completed: ...`
    Acquired {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
    },
    /// Every resource of the group stopped. `Resource release completed: ...`
    Released {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
    },
    /// The groups taken over from a dead peer are all started (or failed).
    /// `mach_down takeover complete for node node1.`
    MachDownComplete {
        /// The dead peer.
        node: String,
        /// How long each step of the takeover took, from the peer's last heartbeat.
        times: TakeoverTimes,
    },
    /// Starting a group failed; it is being stopped and marked failed here so a peer takes it.
    StartFailed {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
        /// The driver's error text.
        error: String,
        /// How long this node will not try the group again.
        retry_after: Duration,
    },
    /// Stopping a group failed; it will be retried (the group stays `Stopping`, so no peer
    /// acquires it meanwhile).
    StopFailed {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
        /// The driver's error text.
        error: String,
        /// When the stop is retried.
        retry_in: Duration,
    },
    /// Two nodes claim the same group (a partition healed, or a false takeover after lost
    /// heartbeats). Resolved by the rightful-owner rule: `keeper` keeps it, the other stops.
    DualOwnership {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
        /// The peer that also claims it.
        peer: String,
        /// Who keeps it.
        keeper: String,
    },
    /// A start in progress was given up because a live peer holds the group and keeps it (it
    /// had been taken over from a peer that was only late, or a partition healed mid-start); a
    /// stop follows at once.
    StartAbandoned {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
        /// The live peer that holds it.
        holder: String,
    },
    /// The holder re-sends gratuitous ARPs for the group (after a conflicting claim).
    Reannounce {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
    },
    /// The node's timer ran late: `handle_timeout` came `late_by` after the heartbeat deadline
    /// (the daemon was stopped or starved). Peers may have missed our heartbeats.
    LateWakeup {
        /// How late.
        late_by: Duration,
    },
    /// A live peer's heartbeats describe different `haresources` groups: it stays alive in
    /// membership, but no group is started or released until the files agree. Logged at once
    /// and every minute while it lasts.
    ConfigMismatch {
        /// Peer name.
        node: String,
        /// Our `groups_digest`.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer's `haresources` agree with ours again.
    ConfigAgrees {
        /// Peer name.
        node: String,
    },
    /// An operator `standby` command was applied.
    Standby {
        /// The scope word (`all`, `foreign`, `local`, `failback`).
        scope: &'static str,
        /// How many groups it covers.
        groups: usize,
    },
    /// An operator `takeover` command was applied.
    Takeover {
        /// The scope word.
        scope: &'static str,
        /// How many groups it covers.
        groups: usize,
    },
    /// A ping node changed state, or the built-in ipfail decided (Heartbeat's and ipfail's
    /// lines, see [`PingEvent`]).
    Ping(PingEvent),
    /// A dead peer's groups are not taken over: ping nodes are configured and this node has no
    /// proof that it still reaches one after the peer went silent (it may be the isolated one,
    /// and its gratuitous ARPs could pull clients away from a live owner). Logged once per
    /// death; the takeover happens as soon as a ping node answers.
    TakeoverHeld {
        /// The dead peer.
        node: String,
    },
    /// The node has joined: links judged (every peer heard, or `initdead` passed) and the
    /// initial resource groups acquired here or declined (another node owns them). Once per run.
    /// `Initial resource acquisition complete: 1 of 2 group(s) held here.`
    Joined {
        /// Groups held here.
        held: usize,
        /// Groups in `haresources`.
        groups: usize,
    },
    /// The fencing gate acted (see [`crate::fence`]).
    Fence(crate::fence::FenceEvent),
    /// The arbiter gate acted (see [`crate::arbiter`]).
    Arbiter(crate::arbiter::ArbiterEvent),
    /// A clean stop began.
    ShuttingDown,
    /// The clean stop completed: groups released, shutdown notice sent.
    /// `Heartbeat shutdown complete.`
    Stopped,
    /// A reload changed the failure-detector timings.
    TimingsChanged {
        /// New `keepalive`.
        keepalive: Duration,
        /// New `deadtime`.
        deadtime: Duration,
        /// New `warntime`.
        warntime: Duration,
        /// Peers whose heartbeats still come too slowly for the shorter `deadtime`: the
        /// previous one stays in force for them until their pace fits.
        kept_for: Vec<String>,
    },
    /// A group's stop failed after every attempt: its resources may still be up.
    /// Heartbeat's `Resource STOP failure. Reboot required!`
    StopFailureRebootRequired {
        /// Group index.
        group: usize,
        /// The `haresources` line.
        line: String,
        /// Whether this node fences itself now (fencing configured); otherwise it keeps the
        /// group and keeps retrying.
        fencing: bool,
    },
    /// The self-fence command failed; the group is kept and its stop retried.
    SelfFenceFailed {
        /// The driver's error text.
        error: String,
    },
    /// The self-fence command ran: this node stops heartbeating so a peer takes over once it
    /// is declared dead.
    SelfFenced,
    /// A clean stop gave up on groups whose stop kept failing: hbd stops with their resources
    /// possibly still running (no fencing configured).
    ShutdownIncomplete {
        /// The `haresources` lines left running.
        lines: Vec<String>,
    },
}

impl Event {
    /// How loud to log it.
    pub fn level(&self) -> Level {
        match self {
            Event::LinkDead { .. }
            | Event::LateHeartbeat { .. }
            | Event::NodeDead { .. }
            | Event::NodeReturned { .. }
            | Event::DualOwnership { .. }
            | Event::StartAbandoned { .. }
            | Event::LateWakeup { .. }
            | Event::TakeoverHeld { .. } => Level::Warn,
            Event::Ping(p) if p.is_warning() => Level::Warn,
            Event::StartFailed { .. }
            | Event::StopFailed { .. }
            | Event::ConfigMismatch { .. }
            | Event::StopFailureRebootRequired { .. }
            | Event::SelfFenceFailed { .. }
            | Event::SelfFenced
            | Event::ShutdownIncomplete { .. } => Level::Error,
            Event::Fence(e) if e.is_error() => Level::Error,
            Event::Fence(e) if !e.is_info() => Level::Warn,
            Event::Arbiter(e) if e.is_error() => Level::Error,
            Event::Arbiter(e) if e.is_warning() => Level::Warn,
            _ => Level::Info,
        }
    }
}

/// An event's structured fields, for logs that keep them apart from the message (the journal:
/// `EVENT`, `PEER`, `LINK`, `GROUP`, `RESOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// The kind of event, snake case (`node_dead`, `acquired`, ...).
    pub event: &'static str,
    /// The peer it is about.
    pub peer: Option<&'a str>,
    /// The interface.
    pub link: Option<&'a str>,
    /// The group index.
    pub group: Option<usize>,
    /// The group's first resource (the name Heartbeat gives a group).
    pub resource: Option<&'a str>,
}

/// The first resource of a `haresources` line (after the preferred node).
fn first_resource(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

impl Event {
    /// The structured fields (see [`EventFields`]).
    pub fn fields(&self) -> EventFields<'_> {
        let mut f = EventFields {
            event: "",
            peer: None,
            link: None,
            group: None,
            resource: None,
        };
        fn group_line<'a>(f: &mut EventFields<'a>, group: usize, line: &'a str) {
            f.group = Some(group);
            f.resource = first_resource(line);
        }
        match self {
            Event::LinkUp { node, link } | Event::LinkDead { node, link } => {
                f.event = if matches!(self, Event::LinkUp { .. }) {
                    "link_up"
                } else {
                    "link_dead"
                };
                f.peer = Some(node);
                f.link = Some(link);
            }
            Event::LateHeartbeat { node, .. } => {
                (f.event, f.peer) = ("late_heartbeat", Some(node.as_str()))
            }
            Event::NodeActive { node } => (f.event, f.peer) = ("node_active", Some(node.as_str())),
            Event::NodeDead { node, .. } => (f.event, f.peer) = ("node_dead", Some(node.as_str())),
            Event::ShutdownNotice { node } => {
                (f.event, f.peer) = ("shutdown_notice", Some(node.as_str()))
            }
            Event::NodeReturned { node } => {
                (f.event, f.peer) = ("node_returned", Some(node.as_str()))
            }
            Event::NodeRestarted { node, .. } => {
                (f.event, f.peer) = ("node_restarted", Some(node.as_str()))
            }
            Event::TakingOver {
                group,
                resource,
                from,
            } => {
                f.event = "taking_over";
                f.peer = Some(from);
                f.group = Some(*group);
                f.resource = Some(resource);
            }
            Event::Acquiring { group, line } => {
                f.event = "acquiring";
                group_line(&mut f, *group, line);
            }
            Event::Releasing { group, line } => {
                f.event = "releasing";
                group_line(&mut f, *group, line);
            }
            Event::Acquired { group, line } => {
                f.event = "acquired";
                group_line(&mut f, *group, line);
            }
            Event::Released { group, line } => {
                f.event = "released";
                group_line(&mut f, *group, line);
            }
            Event::MachDownComplete { node, .. } => {
                (f.event, f.peer) = ("mach_down_complete", Some(node.as_str()))
            }
            Event::StartFailed { group, line, .. } => {
                f.event = "start_failed";
                group_line(&mut f, *group, line);
            }
            Event::StopFailed { group, line, .. } => {
                f.event = "stop_failed";
                group_line(&mut f, *group, line);
            }
            Event::DualOwnership {
                group, line, peer, ..
            } => {
                f.event = "dual_ownership";
                f.peer = Some(peer);
                group_line(&mut f, *group, line);
            }
            Event::StartAbandoned {
                group,
                line,
                holder,
            } => {
                f.event = "start_abandoned";
                f.peer = Some(holder);
                group_line(&mut f, *group, line);
            }
            Event::Reannounce { group, line } => {
                f.event = "reannounce";
                group_line(&mut f, *group, line);
            }
            Event::LateWakeup { .. } => f.event = "late_wakeup",
            Event::ConfigMismatch { node, .. } => {
                (f.event, f.peer) = ("config_mismatch", Some(node.as_str()))
            }
            Event::ConfigAgrees { node } => {
                (f.event, f.peer) = ("config_agrees", Some(node.as_str()))
            }
            Event::Standby { .. } => f.event = "standby",
            Event::Takeover { .. } => f.event = "takeover",
            Event::Joined { .. } => f.event = "joined",
            Event::Fence(_) => f.event = "fence",
            Event::Arbiter(e) => {
                f.event = e.kind();
                f.group = e.group();
            }
            Event::Ping(p) => {
                f.event = p.kind();
                f.peer = p.node();
            }
            Event::TakeoverHeld { node } => {
                (f.event, f.peer) = ("takeover_held", Some(node.as_str()))
            }
            Event::ShuttingDown => f.event = "shutting_down",
            Event::Stopped => f.event = "stopped",
            Event::TimingsChanged { .. } => f.event = "timings_changed",
            Event::StopFailureRebootRequired { group, line, .. } => {
                f.event = "stop_failure_reboot_required";
                group_line(&mut f, *group, line);
            }
            Event::SelfFenceFailed { .. } => f.event = "self_fence_failed",
            Event::SelfFenced => f.event = "self_fenced",
            Event::ShutdownIncomplete { .. } => f.event = "shutdown_incomplete",
        }
        f
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::LinkUp { node, link } => write!(f, "Link {node}:{link} up."),
            Event::Fence(e) => write!(f, "{e}"),
            Event::Arbiter(e) => write!(f, "{e}"),
            Event::LinkDead { node, link } => write!(f, "Link {node}:{link} dead."),
            Event::LateHeartbeat { node, interval } => {
                write!(
                    f,
                    "Late heartbeat: Node {node}: interval {} ms",
                    ms(*interval)
                )
            }
            Event::NodeActive { node } => write!(f, "Status update for node {node}: status active"),
            Event::NodeDead { node, .. } => write!(f, "node {node}: is dead"),
            Event::ShutdownNotice { node } => write!(f, "Received shutdown notice from {node}."),
            Event::NodeReturned { node } => {
                write!(f, "Cluster node {node} returning after partition.")
            }
            Event::NodeRestarted { node, generation } => {
                write!(
                    f,
                    "Cluster node {node} restarted (generation {generation})."
                )
            }
            Event::TakingOver { resource, .. } => {
                write!(f, "Taking over resource group {resource}")
            }
            Event::Acquiring { line, .. } => write!(f, "Acquiring resource group: {line}"),
            Event::Releasing { line, .. } => write!(f, "Releasing resource group: {line}"),
            Event::Acquired { line, .. } => write!(f, "Resource acquisition completed: {line}"),
            Event::Released { line, .. } => write!(f, "Resource release completed: {line}"),
            Event::MachDownComplete { node, .. } => {
                write!(f, "mach_down takeover complete for node {node}.")
            }
            Event::StartFailed {
                line,
                error,
                retry_after,
                ..
            } => write!(
                f,
                "Resource group start failed: {line}: {error}; released, not retried here for {} ms",
                ms(*retry_after)
            ),
            Event::StopFailed {
                line,
                error,
                retry_in,
                ..
            } => write!(
                f,
                "Resource group stop failed: {line}: {error}; retrying in {} ms",
                ms(*retry_in)
            ),
            Event::DualOwnership {
                line, peer, keeper, ..
            } => write!(
                f,
                "Resource group held by this node and {peer}: {line}; {keeper} keeps it"
            ),
            Event::StartAbandoned { line, holder, .. } => write!(
                f,
                "Resource group start abandoned: {holder} is alive and holds {line}; releasing it here"
            ),
            Event::Reannounce { line, .. } => {
                write!(f, "Re-announcing resource group: {line}")
            }
            Event::LateWakeup { late_by } => {
                write!(
                    f,
                    "Late wakeup: ran {} ms after the heartbeat deadline",
                    ms(*late_by)
                )
            }
            Event::ConfigMismatch { node, ours, theirs } => write!(
                f,
                "haresources mismatch: node {node} has different haresources groups (digest \
                 {theirs:08x}, ours {ours:08x}); no group is taken over or released until the \
                 files agree"
            ),
            Event::ConfigAgrees { node } => write!(
                f,
                "haresources of node {node} agree with ours again: ownership decisions resume"
            ),
            Event::Standby { scope, groups } => {
                write!(
                    f,
                    "Giving up {scope} HA resources (standby): {groups} group(s)"
                )
            }
            Event::Takeover { scope, groups } => {
                write!(
                    f,
                    "Taking over {scope} HA resources (takeover): {groups} group(s)"
                )
            }
            Event::Ping(p) => p.fmt(f),
            Event::TakeoverHeld { node } => write!(
                f,
                "Not taking over the resources of {node}: no ping node answered since it went \
                 silent; this node may be the isolated one"
            ),
            Event::Joined { held, groups } => write!(
                f,
                "Initial resource acquisition complete: {held} of {groups} group(s) held here."
            ),
            Event::ShuttingDown => write!(f, "Heartbeat shutdown in progress."),
            Event::Stopped => write!(f, "Heartbeat shutdown complete."),
            Event::TimingsChanged {
                keepalive,
                deadtime,
                warntime,
                kept_for,
            } => {
                write!(
                    f,
                    "hb: timings now keepalive {} ms, deadtime {} ms, warntime {} ms",
                    ms(*keepalive),
                    ms(*deadtime),
                    ms(*warntime)
                )?;
                if !kept_for.is_empty() {
                    write!(
                        f,
                        "; the previous deadtime stays in force for {} until their heartbeats \
                         come at least twice per deadtime",
                        kept_for.join(", ")
                    )?;
                }
                Ok(())
            }
            Event::StopFailureRebootRequired { line, fencing, .. } => {
                write!(f, "Resource STOP failure. Reboot required! ({line}; ")?;
                if *fencing {
                    write!(f, "fencing this node)")
                } else {
                    write!(
                        f,
                        "no fencing configured: keeping the group and retrying its stop)"
                    )
                }
            }
            Event::SelfFenceFailed { error } => write!(
                f,
                "hb: self-fence failed: {error}; keeping the group and retrying its stop"
            ),
            Event::SelfFenced => write!(
                f,
                "hb: self-fence done: heartbeats stop so the peer takes over once it declares \
                 this node dead"
            ),
            Event::ShutdownIncomplete { lines } => write!(
                f,
                "hb: shutdown incomplete: resources left running: {}",
                lines.join("; ")
            ),
        }
    }
}
