//! Ping nodes in the node state machine: ipfail's comparison against the live peers' announced
//! counts, and the guard on taking a dead peer's groups (see [`crate::ping`]).

use super::{Event, Node, PeerState};
use crate::Timestamp;

impl Node {
    /// The ping guard on taking a dead peer's groups without its confirmation. With ping nodes
    /// configured, this node must reach one now and have had an answer to a request sent at
    /// least one `keepalive` after the peer's last heartbeat arrived (when the next one was
    /// due): proof that it was still on the network while the peer was silent, so the silence
    /// is not its own isolation. A peer that sent a shutdown notice released its groups itself.
    /// Without ping nodes there is no guard, except for a peer whose takeover the guard held
    /// when a reload removed the last ping node: held until that peer comes back.
    pub(super) fn may_take_from_dead(&self, i: usize) -> bool {
        let p = &self.peers[i];
        if p.shutdown_generation.is_some() && p.shutdown_generation == p.dead_generation {
            return true;
        }
        if !self.ping.is_configured() {
            return !p.ping_hold;
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

    /// A start this node would make waits for the ping guard: say so once per dead peer.
    pub(super) fn note_takeover_held(&mut self) {
        if let Some(i) = self.takeover_blocked_by()
            && self.takeover_held != Some(i)
        {
            self.takeover_held = Some(i);
            let node = self.names[i].clone();
            self.event(Event::TakeoverHeld { node });
        }
    }

    /// The held peer came back, or a ping node answered since it went silent.
    pub(super) fn clear_takeover_held(&mut self) {
        if self
            .takeover_held
            .is_some_and(|i| self.peers[i].state != PeerState::Dead || self.may_take_from_dead(i))
        {
            self.takeover_held = None;
        }
    }

    /// ipfail's rule on the live peers' announced counts; events out, `dirty` when the yield
    /// flag changed.
    pub(super) fn ping_compare(&mut self, now: Timestamp) {
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
}
