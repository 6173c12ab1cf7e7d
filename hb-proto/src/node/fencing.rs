//! The node's hooks into the fencing gate ([`crate::fence`]): deaths and returns go in, fence
//! requests come out as [`Output::Fence`], and no group starts while a peer dead by silence is
//! not fenced (see the module documentation of [`crate::fence`]).

use super::{DeathCause, Event, Node, Output, Phase};
use crate::{
    Timestamp,
    fence::{FenceEvent, FenceGate, FenceSetup},
};

/// The fencing state a node keeps.
#[derive(Debug, Clone)]
pub(super) struct Fencing {
    gate: FenceGate,
    /// Deaths declared since the last reconcile, handed to the gate there (with its time).
    deaths: Vec<(usize, DeathCause)>,
    /// Per peer: died by silence and no fencing is configured; warn at the takeover.
    warn_at_takeover: Vec<bool>,
}

impl Fencing {
    pub(super) fn new(setup: FenceSetup, names: Vec<String>) -> Self {
        let n = names.len();
        Self {
            gate: FenceGate::new(setup, names),
            deaths: Vec::new(),
            warn_at_takeover: vec![false; n],
        }
    }

    /// A death was declared (liveness calls this).
    pub(super) fn note_death(&mut self, i: usize, cause: DeathCause) {
        self.deaths.push((i, cause));
    }

    pub(super) fn next_timeout(&self) -> Option<Timestamp> {
        self.gate.next_timeout()
    }
}

impl Node {
    /// The driver's result of an [`Output::Fence`] for `peer` (its name).
    pub fn handle_fence_result(&mut self, now: Timestamp, peer: &str, result: Result<(), String>) {
        let Some(i) = self.names.iter().position(|n| n == peer) else {
            self.counters.stale_results += 1;
            return;
        };
        if result.is_ok() {
            for (_, t) in self.mach_down_pending.iter_mut().filter(|(p, _)| *p == i) {
                t.fenced = Some(now);
            }
        }
        match self.fencing.gate.result(i, now, result) {
            Some((ev, _)) => self.event(Event::Fence(ev)),
            None => self.counters.stale_results += 1,
        }
        self.reconcile(now);
        self.flush(now);
    }

    /// Whether a peer (by name) waits for a fence in the local view.
    pub fn fence_pending(&self, peer: &str) -> bool {
        self.names
            .iter()
            .position(|n| n == peer)
            .is_some_and(|i| self.fencing.gate.pending(i))
    }

    /// Hands new deaths to the gate and emits the attempts that are due. Runs first in every
    /// reconcile.
    pub(super) fn fence_step(&mut self, now: Timestamp) {
        let configured = self.fencing.gate.setup().configured;
        for (i, cause) in std::mem::take(&mut self.fencing.deaths) {
            let silent = cause == DeathCause::Silence;
            self.fencing.warn_at_takeover[i] = silent && !configured;
            for ev in self.fencing.gate.peer_dead(i, now, silent) {
                self.event(Event::Fence(ev));
            }
        }
        // A node on its way out starts no new attempt (it takes nothing over any more).
        if self.phase == Phase::ShuttingDown {
            return;
        }
        if !self.fencing.gate.due(now) {
            return;
        }
        // Not while the ping guard would keep this node from taking the peer's groups: it may
        // be the isolated one.
        let may_fence: Vec<bool> = (0..self.peers.len())
            .map(|i| i == self.local || self.may_take_from_dead(i))
            .collect();
        let (reqs, evs) = self.fencing.gate.poll(now, |i| may_fence[i]);
        for ev in evs {
            self.event(Event::Fence(ev));
        }
        for r in reqs {
            self.outputs.push_back(Output::Fence {
                peer: self.names[r.peer].clone(),
                attempt: r.attempt,
                timeout: r.timeout,
            });
        }
    }

    /// Peer `i` is heard again: a fence not yet done is abandoned.
    pub(super) fn fence_peer_alive(&mut self, i: usize) {
        self.fencing.deaths.retain(|(p, _)| *p != i);
        if let Some(w) = self.fencing.warn_at_takeover.get_mut(i) {
            *w = false;
        }
        for ev in self.fencing.gate.peer_alive(i) {
            self.event(Event::Fence(ev));
        }
    }

    /// The takeover gate: a peer dead by silence is not fenced yet, so no group may start.
    pub(super) fn fence_blocks_start(&self) -> bool {
        self.fencing.gate.takeover_blocked()
    }

    /// Heartbeat's two warnings, once per death, at a takeover from a peer dead by silence when
    /// no fencing is configured.
    pub(super) fn warn_unfenced_takeover(&mut self, from: usize) {
        if self
            .fencing
            .warn_at_takeover
            .get(from)
            .copied()
            .unwrap_or(false)
        {
            self.fencing.warn_at_takeover[from] = false;
            self.event(Event::Fence(FenceEvent::NotConfigured));
            self.event(Event::Fence(FenceEvent::DisksUnprotected));
        }
    }
}
