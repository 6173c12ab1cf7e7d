//! Failure detection: what an authentic message does to a peer's links, liveness and
//! announced state, and when silence makes a link or a node dead. Judged on kernel arrival
//! times only (see the module documentation of [`super`], "Failure detection").

use super::{
    DeathCause, Event, LinkId, LinkState, Node, PeerState, Phase, RemoteGroup, TakeoverTimes,
};
use crate::{
    Timestamp,
    message::{Holding, Message, MessageKind, PingCounts},
};

/// How often the haresources mismatch with a live peer is logged again while it lasts.
pub const MISMATCH_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Node {
    /// Returns whether anything the ownership decisions read changed (peer liveness, status,
    /// group states, or its echo now confirming our last announcement).
    pub(super) fn accept_message(
        &mut self,
        now: Timestamp,
        link: LinkId,
        arrival: Timestamp,
        msg: Message,
    ) -> bool {
        // The replay rule (crate::replay, run in `receive`) has vouched for link, sender and
        // sequence number; what is left is this node's reading of the message.
        let Some(i) = self.ids.iter().position(|&id| id == msg.sender) else {
            return false;
        };
        // A different haresources digest: the peer is alive all the same (its heartbeats prove
        // it), but its group states describe other groups and are not applied.
        let mismatch = msg.groups_digest != self.digest;
        let arrival = arrival.min(now);
        let mut relevant = false;
        let p = &mut self.peers[i];
        match p.generation {
            Some(g) if msg.generation > g => {
                // A new incarnation: sequence numbers restart (the replay guard forgot them),
                // old state is void.
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
        self.counters.messages_received += 1;
        if mismatch {
            self.counters.ignored_config_mismatch += 1;
        }

        // A notice from a peer this run has not heard alive yet, or one that echoes none of
        // this run's heartbeats (so it may have been sent before this node started: the final
        // heartbeat that precedes it can make the peer look alive), can be a previous
        // incarnation's, still in flight while both nodes restart at once. Taken as the peer
        // leaving, it would let each node start the other's groups (the cluster fuzz target's
        // findings). It is counted and set aside: the peer's own heartbeats, or their silence
        // for deadtime, or initdead, decide. A peer that heard this run echoes its heartbeats
        // in the notice (every message echoes each live peer's latest).
        let me = self.ids[self.local];
        let sent_in_this_run = msg
            .echoes
            .iter()
            .any(|e| e.node == me && e.send_time >= self.started);
        if msg.kind == MessageKind::Shutdown && (p.state == PeerState::Unknown || !sent_in_this_run)
        {
            self.counters.ignored_stale += 1;
            return false;
        }
        if msg.kind == MessageKind::Shutdown {
            p.shutdown_generation = Some(msg.generation);
            self.event(Event::ShutdownNotice {
                node: self.names[i].clone(),
            });
            self.declare_dead(now, i, DeathCause::Shutdown);
            self.maybe_leave_init();
            return true;
        }

        // Liveness. A message whose arrival is already `deadtime` old (a late drained backlog)
        // updates arrival times but brings no link or node back.
        let fresh = arrival + self.peer_deadtime(i) > now;
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
        let link_gap = self.peers[i].links[link.0]
            .last_arrival
            .filter(|a| arrival > *a)
            .map(|a| arrival.saturating_since(a));
        if let Some(gap) = link_gap {
            self.note_pace(i, gap);
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
            for (g, slot) in p.groups.iter_mut().enumerate().filter(|_| !mismatch) {
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
        relevant |= self.note_groups_digest(now, i, msg.groups_digest);
        let p = &mut self.peers[i];
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
            self.peers[i].ping_hold = false;
            self.fence_peer_alive(i);
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

    /// Tracks whether peer `i`'s haresources digest differs from ours: an error naming it at
    /// once and every [`MISMATCH_REPORT_INTERVAL`] while it lasts, and a line when the files
    /// agree again. Returns whether the mismatch started or ended.
    fn note_groups_digest(&mut self, now: Timestamp, i: usize, theirs: u32) -> bool {
        let ours = self.digest;
        let node = self.names[i].clone();
        let p = &mut self.peers[i];
        let was = p.config_mismatch.is_some();
        if theirs == ours {
            p.config_mismatch = None;
            p.mismatch_next_report = None;
            if was {
                self.event(Event::ConfigAgrees { node });
            }
            return was;
        }
        p.config_mismatch = Some(theirs);
        if !was {
            // Whatever it announced before describes other groups.
            p.groups.fill(RemoteGroup::NONE);
        }
        if p.mismatch_next_report.is_none_or(|t| now >= t) {
            p.mismatch_next_report = Some(now + MISMATCH_REPORT_INTERVAL);
            self.event(Event::ConfigMismatch { node, ours, theirs });
        }
        !was
    }

    /// A live peer's haresources differ from ours: no group is started or released until the
    /// files agree (see the module documentation of [`super`], "Ownership").
    pub(super) fn groups_frozen_by_mismatch(&self) -> bool {
        self.peers.iter().enumerate().any(|(i, p)| {
            i != self.local && p.state == PeerState::Up && p.config_mismatch.is_some()
        })
    }

    pub(super) fn maybe_leave_init(&mut self) {
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
    pub(super) fn detect(&mut self, now: Timestamp) {
        if self.phase == Phase::Init && now >= self.started + self.initdead {
            for i in 0..self.peers.len() {
                if i != self.local && self.peers[i].state == PeerState::Unknown {
                    self.declare_dead(now, i, DeathCause::Silence);
                }
            }
            self.phase = Phase::Active;
            self.dirty = true;
        }
        for i in 0..self.peers.len() {
            if i == self.local || self.peers[i].state != PeerState::Up {
                continue;
            }
            let deadtime = self.peer_deadtime(i);
            for l in 0..self.links.len() {
                let pl = &mut self.peers[i].links[l];
                if pl.state == LinkState::Up && pl.last_arrival.is_none_or(|a| now >= a + deadtime)
                {
                    pl.state = LinkState::Dead;
                    let (node, link) = (self.names[i].clone(), self.links[l].clone());
                    self.event(Event::LinkDead { node, link });
                }
            }
            if self.peers[i].links.iter().all(|l| l.state != LinkState::Up) {
                self.declare_dead(now, i, DeathCause::Silence);
            }
        }
    }

    pub(super) fn declare_dead(&mut self, now: Timestamp, i: usize, cause: DeathCause) {
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
        let last_arrival = p.last_arrival;
        for &g in &held {
            self.local_groups[g].orphaned_from = Some(i);
        }
        if !held.is_empty() {
            let times = TakeoverTimes {
                last_heard: last_arrival.unwrap_or(now),
                declared_dead: now,
                resources_started: None,
                first_announce: None,
                fenced: None,
            };
            self.mach_down_pending.push((i, times));
        }
        self.counters.deaths += 1;
        self.fencing.note_death(i, cause);
        let node = self.names[i].clone();
        self.event(Event::NodeDead {
            node,
            cause,
            last_arrival,
            at: now,
        });
    }
}
