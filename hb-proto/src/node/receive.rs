//! Receive: the one entry for bytes from the network. A datagram is decoded and authenticated
//! ([`crate::packet::decode`]), run through the one replay rule ([`crate::replay`]), reported
//! for metrics ([`Reception`]) and only then read by the state machine (liveness and
//! ownership). The driver hands in bytes with their link and kernel arrival time; it decodes,
//! checks and decides nothing.

use std::time::Duration;

use super::{LinkId, Node, Output, Phase};
use crate::{
    Timestamp,
    message::{Message, rtt_from_echo},
    packet::{self, DecodeError},
    replay::RejectReason,
};

/// What became of one received datagram ([`Output::Received`]): the per-heartbeat figures the
/// driver's metrics record. Informative only; the decisions are already taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reception {
    /// An authentic message that passed the replay rule.
    Heard {
        /// Sender's name.
        node: String,
        /// The medium it arrived on.
        link: LinkId,
        /// Kernel arrival time.
        arrival: Timestamp,
        /// When the driver read it from the ring buffer or socket (`None`: not known).
        read_at: Option<Timestamp>,
        /// Sequence numbers skipped since the sender's previous message on this link.
        gap: u64,
        /// Round trip from the sender's echo of one of our heartbeats, if it carried one.
        rtt: Option<Duration>,
    },
    /// Refused before the state machine read it. Our own messages looped back are not reported.
    Rejected {
        /// The medium it arrived on.
        link: LinkId,
        /// Why.
        reason: Rejection,
    },
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not an authentic hb message.
    Decode(DecodeError),
    /// Authentic, but refused by the replay rule.
    Replay {
        /// The sender's node id.
        sender: u32,
        /// Which rule.
        reason: RejectReason,
    },
}

impl Rejection {
    /// The metrics label ([`DecodeError::reason`] or [`RejectReason::label`]).
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Decode(e) => e.reason(),
            Rejection::Replay { reason, .. } => reason.label(),
        }
    }
}

impl Node {
    /// A datagram that arrived on `link` at `arrival` (kernel time, possibly well before `now`
    /// when the driver drains a backlog) and was read at `read_at`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        link: LinkId,
        arrival: Timestamp,
        read_at: Option<Timestamp>,
        bytes: &[u8],
    ) {
        if self.phase == Phase::Stopped {
            return;
        }
        // Cheap checks before the digest is computed (a flood of junk or of forged senders must
        // cost little): the fixed header (size, magic, version, length, type), then the sender
        // id it names. Our own broadcast looped back, or a node not in ha.cf, costs no HMAC.
        let header = match packet::peek_header(bytes) {
            Ok(h) => h,
            Err(e) => {
                self.report(Reception::Rejected {
                    link,
                    reason: Rejection::Decode(e),
                });
                return;
            }
        };
        if header.sender == self.ids[self.local] {
            return;
        }
        if !self.ids.contains(&header.sender) {
            self.counters.ignored_unknown_sender += 1;
            self.report(Reception::Rejected {
                link,
                reason: Rejection::Replay {
                    sender: header.sender,
                    reason: RejectReason::UnknownNode(header.sender),
                },
            });
            return;
        }
        match packet::decode(bytes, &self.keys) {
            Ok(msg) => self.receive(now, link, arrival, read_at, msg),
            Err(e) => self.report(Reception::Rejected {
                link,
                reason: Rejection::Decode(e),
            }),
        }
    }

    /// A message already decoded and authenticated (tests and simulations, which skip the
    /// bytes). It takes the same path as [`Node::handle_datagram`] from the replay rule on.
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
        self.receive(now, link, arrival, None, msg);
    }

    fn receive(
        &mut self,
        now: Timestamp,
        link: LinkId,
        arrival: Timestamp,
        read_at: Option<Timestamp>,
        msg: Message,
    ) {
        if link.0 >= self.links.len() {
            self.counters.ignored_bad_link += 1;
            return;
        }
        let gap = match self.replay.check(&msg, link.0) {
            Ok(gap) => gap,
            // Our own broadcast or multicast looped back.
            Err(RejectReason::OwnMessage) => return,
            Err(reason) => {
                match reason {
                    RejectReason::UnknownNode(_) => self.counters.ignored_unknown_sender += 1,
                    _ => self.counters.ignored_stale += 1,
                }
                let sender = msg.sender;
                self.report(Reception::Rejected {
                    link,
                    reason: Rejection::Replay { sender, reason },
                });
                return;
            }
        };
        if let Some(i) = self.ids.iter().position(|&id| id == msg.sender) {
            let me = self.ids[self.local];
            let rtt = msg
                .echoes
                .iter()
                .find(|e| e.node == me)
                .and_then(|e| rtt_from_echo(arrival, e));
            self.report(Reception::Heard {
                node: self.names[i].clone(),
                link,
                arrival,
                read_at,
                gap,
                rtt,
            });
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

    fn report(&mut self, r: Reception) {
        self.outputs.push_back(Output::Received(r));
    }
}
