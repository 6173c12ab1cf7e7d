//! Transmit: the periodic heartbeat, the immediate announcement of a local change, the
//! shutdown notice, and the message every link gets (echoes, group states, sequence numbers).

use super::{Event, LinkId, Node, Output, PeerState, Phase, SHUTDOWN_NOTICE_COPIES};
use crate::{
    Timestamp,
    message::{Echo, GroupState, Message, MessageKind},
};

impl Node {
    pub(super) fn finish_shutdown(&mut self, now: Timestamp) {
        // Send our final state first so peers see every group released, then the notice.
        self.send_all(now, MessageKind::Heartbeat);
        for _ in 0..SHUTDOWN_NOTICE_COPIES {
            self.send_all(now, MessageKind::Shutdown);
        }
        self.dirty = false;
        self.phase = Phase::Stopped;
        self.arbiter_shut_down();
        self.event(Event::Stopped);
    }

    pub(super) fn periodic_heartbeat(&mut self, now: Timestamp) {
        self.send_all(now, MessageKind::Heartbeat);
        self.next_heartbeat = self.next_heartbeat + self.keepalive;
        if self.next_heartbeat <= now {
            self.next_heartbeat = now + self.keepalive;
        }
    }

    /// Sends a heartbeat now when the local state changed.
    /// A start that waited only for that announcement (no live peer to confirm) happens now.
    /// Every `handle_*` ends here, so this is also where joining is noticed.
    pub(super) fn flush(&mut self, now: Timestamp) {
        if self.dirty && self.phase != Phase::Stopped {
            self.send_all(now, MessageKind::Heartbeat);
            self.reconcile(now);
            if self.dirty && self.phase != Phase::Stopped {
                self.send_all(now, MessageKind::Heartbeat);
            }
        }
        self.check_joined();
    }

    pub(super) fn send_all(&mut self, now: Timestamp, kind: MessageKind) {
        if self.dirty {
            self.announced_at = now;
            self.dirty = false;
        }
        let mut echoes: Vec<Echo> = self
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
        let mut groups: Vec<GroupState> = self
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
        let nlinks = self.links.len();
        for l in 0..nlinks {
            self.tx_seq[l] += 1;
            // Every link but the last gets a copy; the last takes the originals.
            let (echoes, groups) = if l + 1 == nlinks {
                (std::mem::take(&mut echoes), std::mem::take(&mut groups))
            } else {
                (echoes.clone(), groups.clone())
            };
            let msg = Message {
                kind,
                sender: self.ids[self.local],
                generation: self.generation,
                seq: self.tx_seq[l],
                send_time: now,
                groups_digest: self.digest,
                status,
                echoes,
                groups,
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
