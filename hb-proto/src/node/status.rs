//! A snapshot of the node's view for `hbctl status` and `hbstat`, and the words the control
//! socket reports it in ([`NodeState`], [`LinkState`], [`HoldingState`]; serde behind the
//! `serde` feature). Reads the node, never changes it.

use super::{Node, Phase, ownership::claims};
use crate::{
    Timestamp,
    message::{Holding, NodeStatus, PingCounts},
    ping::PingView,
};

/// Liveness of a node in the local view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Not heard yet, still within `initdead`.
    Unknown,
    /// Heard within `deadtime` on at least one link (the local node is always `Up` until it
    /// has stopped).
    Up,
    /// Declared dead (silence or shutdown notice).
    Dead,
}

/// State of one link to one peer. The control socket reports `Unknown` as `dead`
/// ([`LinkState::reported`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum LinkState {
    /// Never heard on this link.
    Unknown,
    /// Heard within `deadtime`.
    Up,
    /// Silent for `deadtime`.
    Dead,
}

impl LinkState {
    /// As the control socket reports it: `Up`, or `Dead` for a link not up (never heard
    /// included).
    pub fn reported(self) -> Self {
        match self {
            LinkState::Up => LinkState::Up,
            LinkState::Unknown | LinkState::Dead => LinkState::Dead,
        }
    }

    /// `up`, `dead` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Dead => "dead",
            LinkState::Unknown => "unknown",
        }
    }
}

/// A node's state as `hbctl status` reports it: liveness and announced status in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum NodeState {
    /// Heartbeats are arriving.
    Up,
    /// Silent for longer than deadtime.
    Dead,
    /// Not heard from yet (within initdead).
    Init,
    /// Up, in standby.
    Standby,
    /// Stopping.
    Stopping,
}

impl NodeState {
    /// The word shown by `hbctl status` (Heartbeat's `cl_status` wording where it has one).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Dead => "dead",
            NodeState::Init => "init",
            NodeState::Standby => "standby",
            NodeState::Stopping => "stopping",
        }
    }
}

/// How far this node has got with holding a group, as `hbctl status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HoldingState {
    /// Not holding it.
    None,
    /// Starting its resources.
    Starting,
    /// Holding it.
    Held,
    /// Stopping its resources.
    Stopping,
    /// Failed to start it.
    Failed,
    /// Its stop failed: kept (resources may be up) while the stop is retried; Heartbeat's
    /// `Resource STOP failure. Reboot required!` was logged.
    StopFailed,
}

impl HoldingState {
    /// The word shown by `hbctl status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldingState::None => "none",
            HoldingState::Starting => "starting",
            HoldingState::Held => "held",
            HoldingState::Stopping => "stopping",
            HoldingState::Failed => "failed",
            HoldingState::StopFailed => "stop failed, retrying (reboot required)",
        }
    }
}

/// One link to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// Interface name.
    pub name: String,
    /// State.
    pub state: LinkState,
    /// Arrival time (CLOCK_MONOTONIC) of the last heartbeat on it.
    pub last_arrival: Option<Timestamp>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Name as in `ha.cf`.
    pub name: String,
    /// Wire id.
    pub id: u32,
    /// This is the local node.
    pub local: bool,
    /// Liveness.
    pub state: PeerState,
    /// Last generation heard (the local node's own generation for the local node).
    pub generation: Option<u64>,
    /// Last status it announced.
    pub status: Option<NodeStatus>,
    /// Arrival of its last heartbeat on any link.
    pub last_arrival: Option<Timestamp>,
    /// Links (empty for the local node).
    pub links: Vec<LinkView>,
    /// Ping-node counts it announces (the local node's own for the local node; `None`: no ping
    /// nodes, or a peer that does not announce them).
    pub ping: Option<PingCounts>,
}

/// One resource group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Index (line order in `haresources`).
    pub index: usize,
    /// The `haresources` line (preferred node then resources).
    pub line: String,
    /// Preferred node.
    pub preferred: String,
    /// The rightful owner in the local view.
    pub owner: Option<String>,
    /// Nodes that claim it (`Starting` or `Held`), the local node included.
    pub holders: Vec<String>,
    /// The local node's holding state.
    pub local: Holding,
    /// Failed to start here; not retried until the back-off ends.
    pub failed: bool,
    /// Failed stops since it last stopped cleanly (its resources may still be up; the stop is
    /// being retried).
    pub stop_failures: u32,
    /// The local node is in standby for it.
    pub standby: bool,
    /// The local node asked to take it over.
    pub wants: bool,
}

impl GroupView {
    /// The local holding state as reported: `Failed` for a failed group not held.
    pub fn holding_state(&self) -> HoldingState {
        if self.failed && self.local == Holding::None {
            return HoldingState::Failed;
        }
        match self.local {
            Holding::None => HoldingState::None,
            Holding::Starting => HoldingState::Starting,
            Holding::Held => HoldingState::Held,
            Holding::Stopping if self.stop_failures > 0 => HoldingState::StopFailed,
            Holding::Stopping => HoldingState::Stopping,
        }
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Heartbeat and shutdown messages handed to the driver.
    pub messages_sent: u64,
    /// Messages accepted.
    pub messages_received: u64,
    /// From a node not in `ha.cf`.
    pub ignored_unknown_sender: u64,
    /// Older generation, or non-increasing sequence number on the link (replay, duplicate).
    pub ignored_stale: u64,
    /// Different `haresources` digest.
    pub ignored_config_mismatch: u64,
    /// On a link index the configuration does not have.
    pub ignored_bad_link: u64,
    /// Late heartbeats (`warntime`).
    pub late_heartbeats: u64,
    /// Late wakeups of the node's timer.
    pub late_wakeups: u64,
    /// Peers declared dead.
    pub deaths: u64,
    /// Peers heard again after being declared dead (same generation).
    pub returns: u64,
    /// Dual ownerships seen.
    pub dual_ownerships: u64,
    /// Starts abandoned because a live peer held the group.
    pub abandoned_starts: u64,
    /// Re-announcements asked of the driver.
    pub reannounces: u64,
    /// Failed group starts.
    pub start_failures: u64,
    /// Failed group stops.
    pub stop_failures: u64,
    /// Resource results that matched no operation in progress.
    pub stale_results: u64,
}

/// Snapshot of the whole local view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The local node's name.
    pub local: String,
    /// The local generation.
    pub generation: u64,
    /// The local status as announced.
    pub status: NodeStatus,
    /// The clean stop completed.
    pub stopped: bool,
    /// Every node in `ha.cf` order, the local one included.
    pub nodes: Vec<NodeView>,
    /// Every group in `haresources` order.
    pub groups: Vec<GroupView>,
    /// Counters.
    pub counters: Counters,
    /// Live peers whose `haresources` differ from ours (no group moves meanwhile).
    pub haresources_mismatch: Vec<String>,
    /// Peers dead by silence that wait for a fence before anything is taken from them.
    pub fence_pending: Vec<String>,
    /// Ping nodes and the built-in ipfail.
    pub ping: PingView,
    /// A dead peer whose groups this node does not take over because no ping node answered
    /// since the peer went silent (see [`super::Event::TakeoverHeld`]).
    pub takeover_held: Option<String>,
}

impl ClusterStatus {
    /// A node's state as reported: the local node by its own status, a peer by liveness and
    /// the status it announced.
    pub fn node_state(&self, n: &NodeView) -> NodeState {
        if n.local {
            return match self.status {
                NodeStatus::Init => NodeState::Init,
                NodeStatus::Active => NodeState::Up,
                NodeStatus::Stopping => NodeState::Stopping,
            };
        }
        match (n.state, n.status) {
            (PeerState::Up, Some(NodeStatus::Stopping)) => NodeState::Stopping,
            (PeerState::Up, Some(NodeStatus::Init)) => NodeState::Init,
            (PeerState::Up, _) => NodeState::Up,
            (PeerState::Dead, _) => NodeState::Dead,
            (PeerState::Unknown, _) => NodeState::Init,
        }
    }
}

impl Node {
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
                    stop_failures: lg.stop_failures,
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
            haresources_mismatch: (0..self.names.len())
                .filter(|&i| {
                    i != self.local
                        && self.peers[i].state == PeerState::Up
                        && self.peers[i].config_mismatch.is_some()
                })
                .map(|i| self.names[i].clone())
                .collect(),
            fence_pending: self
                .names
                .iter()
                .filter(|n| self.fence_pending(n))
                .cloned()
                .collect(),
            ping: self.ping.view(),
            takeover_held: self.takeover_held.map(|i| self.names[i].clone()),
        }
    }
}
