//! The typed hb message: what the codec (`packet`) decodes into and encodes from, and what the
//! node state machine consumes and produces. No bytes here; the byte layout is in `packet` and
//! `docs/protocol.md`.

use std::time::Duration;

use crate::{Timestamp, time::duration_nanos};

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A periodic heartbeat carrying the sender's state.
    Heartbeat,
    /// The sender is stopping cleanly and has released its groups: act now, not at deadtime.
    Shutdown,
}

/// The sender's echo of a heartbeat it heard from one peer, for round-trip time without
/// synchronised clocks: `rtt = arrival_of_this - echoed send_time - hold`, all on the
/// receiver's own clock except `hold`, which is a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// The peer whose heartbeat is echoed.
    pub node: u32,
    /// That heartbeat's `send_time` (the peer's own clock).
    pub send_time: Timestamp,
    /// Time between the echoed heartbeat's arrival at the sender and this message's send time.
    pub hold: Duration,
}

/// How far the sender has got with holding a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Not holding it.
    None,
    /// Starting its resources.
    Starting,
    /// Holding it (all resources started).
    Held,
    /// Stopping its resources.
    Stopping,
}

/// The sender's state for one resource group (index into `haresources` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupState {
    /// Group index (line order in `haresources`).
    pub group: u16,
    /// Holding state on the sender.
    pub holding: Holding,
    /// The sender failed to start it and will not try again soon.
    pub failed: bool,
    /// The sender is in standby for this group (will not hold it).
    pub standby: bool,
    /// The sender asks the holder to release it (`hbctl takeover`, failback).
    pub wants: bool,
}

/// The sender's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Started, still within `initdead`.
    Init,
    /// Up.
    Active,
    /// Stopping.
    Stopping,
}

/// The sender's ping-node counts (present when the sender has ping nodes configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingCounts {
    /// Ping nodes the sender reaches now (a `ping_group` counts once).
    pub reachable: u8,
    /// Ping nodes the sender has configured (at least `reachable`).
    pub configured: u8,
    /// The sender's built-in ipfail gave its groups up (it reaches fewer ping nodes than a
    /// peer): it is a candidate for a group only when no other node is.
    pub yielding: bool,
}

/// One hb message, decoded and authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Heartbeat or shutdown notice.
    pub kind: MessageKind,
    /// Sender node id (`config::node_id` of its name).
    pub sender: u32,
    /// Sender's generation: increases at every start of the sender.
    pub generation: u64,
    /// Sequence number within the generation, from 1, one per message per link.
    pub seq: u64,
    /// Sender's CLOCK_MONOTONIC when it sent the message.
    pub send_time: Timestamp,
    /// Digest of the sender's `haresources` groups, so a mismatch is seen and refused.
    pub groups_digest: u32,
    /// The sender's state.
    pub status: NodeStatus,
    /// Echoes of the last heartbeat heard from each peer.
    pub echoes: Vec<Echo>,
    /// The sender's state for every group it has any state for.
    pub groups: Vec<GroupState>,
    /// The sender's ping-node counts (`None`: no ping nodes configured, or a sender from
    /// before the field existed).
    pub ping: Option<PingCounts>,
}

/// Round-trip time from an echo of one of this node's own heartbeats: `arrival - echoed
/// send_time - hold`, where `arrival` and the echoed send time are both on this node's clock and
/// `hold` is a duration measured by the peer. `None` when the result would be negative (a
/// bogus echo).
pub fn rtt_from_echo(arrival: Timestamp, echo: &Echo) -> Option<Duration> {
    arrival
        .as_nanos()
        .checked_sub(echo.send_time.as_nanos())?
        .checked_sub(duration_nanos(echo.hold))
        .map(Duration::from_nanos)
}
