//! The node's hooks into the arbiter gate ([`crate::arbiter`]): lease and key results go in,
//! requests come out as [`Output::Arbiter`]; with an arbiter configured a group starts only
//! while its key is held under a valid lease and is stopped as soon as that is no longer so.

use super::{Event, Node, Output};
use crate::{
    Timestamp,
    arbiter::{ArbiterGate, ArbiterInput, ArbiterRequest, ArbiterStatus},
    message::Holding,
};

impl Node {
    /// A result of an [`Output::Arbiter`] request.
    pub fn handle_arbiter(&mut self, now: Timestamp, input: ArbiterInput) {
        let Some(gate) = self.arbiter.as_mut() else {
            self.counters.stale_results += 1;
            return;
        };
        let mut out = Vec::new();
        let mut events = Vec::new();
        gate.input(now, input, &mut out, &mut events);
        self.arbiter_emit(out, events);
        self.reconcile(now);
        self.flush(now);
    }

    /// The arbiter gate's state (`None`: no arbiter configured).
    pub fn arbiter_status(&self, now: Timestamp) -> Option<ArbiterStatus> {
        self.arbiter.as_ref().map(|g| g.status(now))
    }

    fn arbiter_emit(
        &mut self,
        out: Vec<ArbiterRequest>,
        events: Vec<crate::arbiter::ArbiterEvent>,
    ) {
        for e in events {
            self.event(Event::Arbiter(e));
        }
        for r in out {
            self.outputs.push_back(Output::Arbiter(r));
        }
    }

    /// Lease deadlines and renewals; runs first in every reconcile.
    pub(super) fn arbiter_step(&mut self, now: Timestamp) {
        let holding = self
            .local_groups
            .iter()
            .filter(|g| matches!(g.holding, Holding::Starting | Holding::Held))
            .count();
        let Some(gate) = self.arbiter.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        let mut events = Vec::new();
        gate.tick(now, &mut out, &mut events, holding);
        self.arbiter_emit(out, events);
    }

    /// Whether the arbiter lets group `g` be held here at `now` (always, without an arbiter).
    pub(super) fn arbiter_allows(&self, g: usize, now: Timestamp) -> bool {
        self.arbiter.as_ref().is_none_or(|a| a.holds(g, now))
    }

    /// The arbiter declines `g` for now (see [`ArbiterGate::declines`]).
    pub(super) fn arbiter_declines(&self, g: usize) -> bool {
        self.arbiter.as_ref().is_some_and(|a| a.declines(g))
    }

    /// Heartbeats let this node start `g`: ask the arbiter for its key.
    pub(super) fn arbiter_want(&mut self, g: usize, now: Timestamp) {
        let Some(gate) = self.arbiter.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        gate.want(g, now, &mut out);
        self.arbiter_emit(out, Vec::new());
    }

    /// `g` is stopped here and this node does not want it: give its key back.
    pub(super) fn arbiter_release(&mut self, g: usize, now: Timestamp) {
        let Some(gate) = self.arbiter.as_mut().filter(|a| a.involved(g)) else {
            return;
        };
        let mut out = Vec::new();
        gate.release(g, now, &mut out);
        self.arbiter_emit(out, Vec::new());
    }

    /// The clean stop is complete: gives the lease up, so peers need not wait for its TTL;
    /// not while a group whose stop failed may still run here (its key must keep it).
    pub(super) fn arbiter_shut_down(&mut self) {
        if self.local_groups.iter().any(|g| g.holding != Holding::None) {
            return;
        }
        let Some(gate) = self.arbiter.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        gate.shut_down(&mut out);
        self.arbiter_emit(out, Vec::new());
    }

    pub(super) fn arbiter_next_timeout(&self) -> Option<Timestamp> {
        self.arbiter.as_ref().and_then(ArbiterGate::next_timeout)
    }
}
