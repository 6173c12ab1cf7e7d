//! Shared test helpers: configurations built directly, hand-made peer messages, and the
//! deterministic simulation harness in [`sim`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use hb_proto::sim::{self, Timing, config, groups};

use std::time::Duration;

use hb_proto::{
    Timestamp,
    config::{ResourceGroup, node_id},
    message::{Echo, GroupState, Holding, Message, MessageKind, NodeStatus},
    node::{Event, Node, Output, groups_digest},
};

/// Milliseconds as a timestamp.
pub fn ms(n: u64) -> Timestamp {
    Timestamp::from_nanos(n * 1_000_000)
}

/// A hand-made message from a peer, as the codec would decode it.
#[derive(Debug, Clone)]
pub struct PeerMsg {
    pub msg: Message,
}

impl PeerMsg {
    /// A heartbeat from `name` (Active, every group `None`).
    pub fn hb(name: &str, generation: u64, seq: u64, send_time: Timestamp, ngroups: usize) -> Self {
        Self {
            msg: Message {
                kind: MessageKind::Heartbeat,
                sender: node_id(name),
                generation,
                seq,
                send_time,
                groups_digest: 0,
                ping: None,
                status: NodeStatus::Active,
                echoes: vec![],
                groups: (0..ngroups)
                    .map(|g| GroupState {
                        group: u16::try_from(g).unwrap(),
                        holding: Holding::None,
                        failed: false,
                        standby: false,
                        wants: false,
                    })
                    .collect(),
            },
        }
    }

    /// With the digest of `groups`.
    pub fn digest(mut self, groups: &[ResourceGroup]) -> Self {
        self.msg.groups_digest = groups_digest(groups);
        self
    }

    /// Group `g` in holding state `h`.
    pub fn holding(mut self, g: usize, h: Holding) -> Self {
        self.msg.groups[g].holding = h;
        self
    }

    /// Group `g` flags.
    pub fn flags(mut self, g: usize, failed: bool, standby: bool, wants: bool) -> Self {
        let s = &mut self.msg.groups[g];
        s.failed = failed;
        s.standby = standby;
        s.wants = wants;
        self
    }

    /// Echoing a heartbeat of `node` sent at `send_time`.
    pub fn echo(mut self, node: &str, send_time: Timestamp) -> Self {
        self.msg.echoes.push(Echo {
            node: node_id(node),
            send_time,
            hold: Duration::ZERO,
        });
        self
    }

    /// Status.
    pub fn status(mut self, s: NodeStatus) -> Self {
        self.msg.status = s;
        self
    }

    /// A shutdown notice instead.
    pub fn shutdown(mut self) -> Self {
        self.msg.kind = MessageKind::Shutdown;
        self
    }
}

/// Every output queued.
pub fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// The events among outputs, as their log lines.
pub fn lines(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

/// The events among outputs.
pub fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The resource actions and reannounces among outputs, in order.
pub fn actions(outputs: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Resource { .. } | Output::Reannounce { .. }))
        .cloned()
        .collect()
}

/// The transmitted messages among outputs.
pub fn sent(outputs: &[Output]) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { msg, .. } => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// The send_time of the last transmitted message, for echoing.
pub fn last_send_time(outputs: &[Output]) -> Option<Timestamp> {
    sent(outputs).last().map(|m| m.send_time)
}
