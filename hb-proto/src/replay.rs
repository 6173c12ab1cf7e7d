//! Replay protection, the one rule for which authenticated messages count: per sender, the
//! highest generation heard and, within it, the last sequence number accepted on each link.
//! Owns nothing but those numbers; knows nothing of liveness or ownership (the node state
//! machine runs every message through it before anything else reads the message).

use std::collections::{BTreeMap, BTreeSet};

use crate::message::Message;

/// Why [`ReplayGuard::check`] refused an authenticated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The message is this node's own (heard back through broadcast or multicast loopback).
    #[error("own message")]
    OwnMessage,
    /// The sender is not a configured node.
    #[error("unknown node id {0:#010x}")]
    UnknownNode(u32),
    /// The sender's generation is older than one already heard from it.
    #[error("old generation {got} (current {current})")]
    OldGeneration {
        /// Highest generation heard from the sender.
        current: u64,
        /// Generation in the message.
        got: u64,
    },
    /// The sequence number is not above the last accepted on this link in this generation.
    #[error("replayed or old sequence number {got} (last accepted {last})")]
    Replay {
        /// Last accepted sequence number on the link (0: none yet).
        last: u64,
        /// Sequence number in the message.
        got: u64,
    },
}

impl RejectReason {
    /// Every label [`RejectReason::label`] can return.
    pub const LABELS: [&'static str; 4] =
        ["own_message", "unknown_node", "old_generation", "replay"];

    /// A stable snake_case label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::OwnMessage => "own_message",
            RejectReason::UnknownNode(_) => "unknown_node",
            RejectReason::OldGeneration { .. } => "old_generation",
            RejectReason::Replay { .. } => "replay",
        }
    }
}

#[derive(Debug, Clone)]
struct PeerSeq {
    generation: u64,
    /// Last accepted sequence number per link in `generation`.
    last_seq: BTreeMap<usize, u64>,
}

/// Per-peer replay protection, sans-IO. Feed it every authenticated message with the index of
/// the link (medium) it arrived on.
///
/// Rules, in order: a message from the local node is [`RejectReason::OwnMessage`]; a sender
/// that is not configured is [`RejectReason::UnknownNode`]; a generation below the highest
/// accepted from the sender is [`RejectReason::OldGeneration`]; a higher one becomes the
/// sender's generation and forgets its sequence numbers on every link; within the generation,
/// a sequence number not above the last accepted on the same link is [`RejectReason::Replay`]
/// (sequence numbers start at 1, so 0 is never accepted). Only accepted messages change state.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    local: u32,
    nodes: BTreeSet<u32>,
    peers: BTreeMap<u32, PeerSeq>,
}

impl ReplayGuard {
    /// A guard for the node `local` in a cluster of `nodes` (node ids; `local` may be among
    /// them).
    pub fn new(local: u32, nodes: impl IntoIterator<Item = u32>) -> Self {
        Self {
            local,
            nodes: nodes.into_iter().collect(),
            peers: BTreeMap::new(),
        }
    }

    /// Accept or reject `msg`, which arrived on link `link`. `Ok(gap)` gives the number of
    /// sequence numbers skipped since the last message accepted from the sender on this link in
    /// this generation (lost heartbeats); the first message of a generation on a link reports 0.
    pub fn check(&mut self, msg: &Message, link: usize) -> Result<u64, RejectReason> {
        if msg.sender == self.local {
            return Err(RejectReason::OwnMessage);
        }
        if !self.nodes.contains(&msg.sender) {
            return Err(RejectReason::UnknownNode(msg.sender));
        }
        let peer = self.peers.entry(msg.sender).or_insert_with(|| PeerSeq {
            generation: msg.generation,
            last_seq: BTreeMap::new(),
        });
        if msg.generation < peer.generation {
            return Err(RejectReason::OldGeneration {
                current: peer.generation,
                got: msg.generation,
            });
        }
        if msg.generation > peer.generation {
            peer.generation = msg.generation;
            peer.last_seq.clear();
        }
        let last = peer.last_seq.get(&link).copied().unwrap_or(0);
        if msg.seq <= last {
            return Err(RejectReason::Replay { last, got: msg.seq });
        }
        let gap = if last == 0 { 0 } else { msg.seq - last - 1 };
        peer.last_seq.insert(link, msg.seq);
        Ok(gap)
    }

    /// The highest generation accepted from `sender`.
    pub fn generation(&self, sender: u32) -> Option<u64> {
        self.peers.get(&sender).map(|p| p.generation)
    }

    /// The last sequence number accepted from `sender` on `link` in its current generation.
    pub fn last_seq(&self, sender: u32, link: usize) -> Option<u64> {
        self.peers
            .get(&sender)
            .and_then(|p| p.last_seq.get(&link).copied())
    }
}
