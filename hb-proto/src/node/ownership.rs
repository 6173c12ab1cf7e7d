//! Ownership: who rightfully owns each group in the local view, when this node may start or
//! must stop it, dual-claim handling and resource results (see the module documentation of
//! [`super`], "Ownership" and "Failures").

use super::{Event, Node, Output, PeerState, Phase, ResourceOp, ResourceTimes};
use crate::{
    Timestamp,
    message::{Holding, NodeStatus},
};

use std::time::Duration;

/// `deadtime * 2^(n-1)`, capped at 16 x `deadtime`.
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(4))
}

pub(super) fn claims(h: Holding) -> bool {
    matches!(h, Holding::Starting | Holding::Held)
}

impl Node {
    /// The driver finished `op` on `group`; a successful start reports when its resources
    /// came up.
    pub fn handle_resource_result(
        &mut self,
        now: Timestamp,
        group: usize,
        op: ResourceOp,
        result: Result<ResourceTimes, String>,
    ) {
        let Some(lg) = self.local_groups.get_mut(group) else {
            self.counters.stale_results += 1;
            return;
        };
        let line = self.groups[group].line.clone();
        match (op, lg.holding, result) {
            (ResourceOp::Start, Holding::Starting, Ok(times)) => {
                lg.holding = Holding::Held;
                lg.start_failures = 0;
                if let Some(from) = lg.takeover_from.take() {
                    for (_, t) in self
                        .mach_down_pending
                        .iter_mut()
                        .filter(|(p, _)| *p == from)
                    {
                        t.resources_started = t.resources_started.max(times.finished);
                        t.first_announce = match (t.first_announce, times.first_announce) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
                self.dirty = true;
                self.event(Event::Acquired { group, line });
            }
            (ResourceOp::Start, Holding::Starting, Err(error)) => {
                lg.start_failures = lg.start_failures.saturating_add(1);
                let retry_after = backoff(self.deadtime, lg.start_failures);
                lg.failed_until = Some(now + retry_after);
                lg.takeover_from = None;
                self.counters.start_failures += 1;
                self.event(Event::StartFailed {
                    group,
                    line,
                    error,
                    retry_after,
                });
                self.release(group);
            }
            // The result of a start abandoned for a live holder: the stop asked in its place
            // decides.
            (ResourceOp::Start, Holding::Stopping, _) if lg.start_abandoned => {}
            (ResourceOp::Stop, Holding::Stopping, Ok(_)) => {
                lg.start_abandoned = false;
                lg.holding = Holding::None;
                lg.stop_failures = 0;
                lg.stop_retry_at = None;
                self.dirty = true;
                self.event(Event::Released { group, line });
            }
            (ResourceOp::Stop, Holding::Stopping, Err(error)) => {
                lg.stop_failures = lg.stop_failures.saturating_add(1);
                let retry_in = backoff(self.deadtime, lg.stop_failures);
                lg.stop_retry_at = Some(now + retry_in);
                self.counters.stop_failures += 1;
                self.event(Event::StopFailed {
                    group,
                    line,
                    error,
                    retry_in,
                });
                self.stop_failed(now, group);
            }
            _ => {
                self.counters.stale_results += 1;
            }
        }
        self.reconcile(now);
        self.flush(now);
    }

    /// Joined: out of `Init` (every peer heard, or `initdead` passed) and every group settled
    /// here: held when this node is its rightful owner, not claimed otherwise (declined, or
    /// failed here and given up). Nothing is starting or stopping.
    pub(super) fn settled(&self) -> bool {
        self.phase == Phase::Active
            && (0..self.groups.len()).all(|g| {
                let mine = self.owner(g) == Some(self.local);
                match self.local_groups[g].holding {
                    Holding::Starting | Holding::Stopping => false,
                    Holding::Held => mine,
                    // The arbiter declining it (etcd unreachable, key held elsewhere) settles
                    // it as not held here.
                    Holding::None => !mine || self.arbiter_declines(g),
                }
            })
    }

    /// Emits [`Event::Joined`] the first time the node is [settled](Node::settled).
    pub(super) fn check_joined(&mut self) {
        if self.joined || !self.settled() {
            return;
        }
        self.joined = true;
        let held = self
            .local_groups
            .iter()
            .filter(|g| g.holding == Holding::Held)
            .count();
        let groups = self.groups.len();
        self.event(Event::Joined { held, groups });
    }

    pub(super) fn member(&self, n: usize, g: usize) -> Option<Member> {
        if n == self.local {
            if self.phase == Phase::Stopped {
                return None;
            }
            let lg = &self.local_groups[g];
            return Some(Member {
                holding: lg.holding,
                candidate: self.phase == Phase::Active && lg.failed_until.is_none(),
                standby: lg.standby || self.ping.yielding(),
                wants: lg.wants,
            });
        }
        let p = &self.peers[n];
        if p.state != PeerState::Up {
            return None;
        }
        let r = p.groups[g];
        Some(Member {
            holding: r.holding,
            candidate: p.status == Some(NodeStatus::Active) && !r.failed,
            // ipfail gave it up: like standby, a candidate only when no other node is.
            standby: r.standby || p.ping.is_some_and(|c| c.yielding),
            wants: r.wants,
        })
    }

    pub(super) fn owner(&self, g: usize) -> Option<usize> {
        let n = self.names.len();
        let pref = self.groups[g].preferred;
        let members: Vec<Option<Member>> = (0..n).map(|i| self.member(i, g)).collect();
        let tier1 = members.iter().flatten().any(|m| m.candidate && !m.standby);
        let cand = |i: usize| -> Option<Member> {
            members[i].filter(|m| m.candidate && (!tier1 || !m.standby))
        };
        // The preferred node if it satisfies `f`, else the first in `node` order that does.
        let pick = |f: &dyn Fn(&Member) -> bool| -> Option<usize> {
            if cand(pref).is_some_and(|m| f(&m)) {
                return Some(pref);
            }
            (0..n).find(|&i| cand(i).is_some_and(|m| f(&m)))
        };
        if pick(&|m| m.wants).is_some() {
            return pick(&|m| m.wants && claims(m.holding)).or_else(|| pick(&|m| m.wants));
        }
        if cand(pref).is_some()
            && (self.failback
                || !(0..n).any(|i| i != pref && cand(i).is_some_and(|m| claims(m.holding))))
        {
            return Some(pref);
        }
        pick(&|m| claims(m.holding)).or_else(|| pick(&|_| true))
    }

    /// A local state change not yet announced (`dirty`) must be announced and echoed first.
    pub(super) fn can_start(&self, g: usize) -> bool {
        !self.dirty
            && !self.fence_blocks_start()
            && self.peers.iter().enumerate().all(|(i, p)| {
                i == self.local
                    || match p.state {
                        PeerState::Dead => self.may_take_from_dead(i),
                        PeerState::Unknown => false,
                        PeerState::Up => {
                            p.groups[g].holding == Holding::None
                                && p.echo_of_us.is_some_and(|e| e >= self.announced_at)
                        }
                    }
            })
    }

    /// A live peer shows the group in any state but `None` (a loser still stopping counts: its
    /// addresses may still be up and announcing).
    pub(super) fn any_peer_involved(&self, g: usize) -> bool {
        (0..self.peers.len()).any(|i| {
            i != self.local
                && self.peers[i].state == PeerState::Up
                && self.peers[i].groups[g].holding != Holding::None
        })
    }

    pub(super) fn first_claimant(&self, g: usize) -> Option<usize> {
        (0..self.peers.len()).find(|&i| {
            i != self.local
                && self.peers[i].state == PeerState::Up
                && claims(self.peers[i].groups[g].holding)
        })
    }

    pub(super) fn reconcile(&mut self, now: Timestamp) {
        if self.phase == Phase::Stopped {
            return;
        }
        self.fence_step(now);
        self.arbiter_step(now);
        let frozen = self.groups_frozen_by_mismatch();
        for g in 0..self.groups.len() {
            let others_want = (0..self.peers.len()).any(|i| {
                i != self.local
                    && self.peers[i].state == PeerState::Up
                    && self.peers[i].groups[g].wants
            });
            let lg = &mut self.local_groups[g];
            if lg.wants && lg.holding == Holding::Held && others_want {
                lg.wants = false;
                self.dirty = true;
            }
            let owner = self.owner(g);
            let mine = owner == Some(self.local);
            let claimant = self.first_claimant(g);
            let holding = self.local_groups[g].holding;
            if !mine {
                self.local_groups[g].orphaned_from = None;
            }
            if claims(holding) && claimant.is_some() && !self.local_groups[g].conflict {
                self.local_groups[g].conflict = true;
                self.counters.dual_ownerships += 1;
                let keeper = owner.map_or_else(|| "nobody".to_owned(), |o| self.names[o].clone());
                let peer = claimant.map(|c| self.names[c].clone()).unwrap_or_default();
                self.event(Event::DualOwnership {
                    group: g,
                    line: self.groups[g].line.clone(),
                    peer,
                    keeper,
                });
                if mine && holding == Holding::Held {
                    self.reannounce(g);
                }
            } else if mine
                && holding == Holding::Held
                && !self.local_groups[g].conflict
                && self.any_peer_involved(g)
            {
                // A live peer shows our group `Stopping`: it claimed it in heartbeats we did not
                // get (loss, a one-sided death) and may have announced the address, so clients
                // may point at it. Announce ours now, and again when it shows it released.
                self.local_groups[g].conflict = true;
                self.reannounce(g);
            } else if self.local_groups[g].conflict && !self.any_peer_involved(g) {
                self.local_groups[g].conflict = false;
                if mine && holding == Holding::Held {
                    self.reannounce(g);
                }
            }
            match holding {
                Holding::None => {
                    let eligible = mine && self.phase == Phase::Active && !frozen;
                    if eligible && self.can_start(g) {
                        if self.arbiter_allows(g, now) {
                            self.start(g);
                        } else {
                            self.arbiter_want(g, now);
                        }
                    } else {
                        if eligible {
                            self.note_takeover_held();
                        } else {
                            self.arbiter_release(g, now);
                        }
                        // A live peer releasing the group to us: the start follows its
                        // confirmation; its checks can run meanwhile.
                        let handing_over = eligible && self.any_peer_stopping(g);
                        self.set_prepared(g, handing_over);
                    }
                }
                Holding::Held => {
                    // A clean stop releases even while frozen; a lost arbiter key (lease not
                    // renewed in time) stops it at once, whoever should own it.
                    let lost = !self.arbiter_allows(g, now);
                    if lost || (!mine && (!frozen || self.phase == Phase::ShuttingDown)) {
                        self.release(g);
                    }
                }
                // Another node rightfully keeps the group and a live peer holds it: the start
                // in progress would only prolong two owners (the driver removes the addresses
                // it added at once and stops what it started).
                Holding::Starting => {
                    if let (false, Some(holder)) = (mine, claimant) {
                        self.abandon_start(g, holder);
                    }
                }
                // A stop finishes or retries.
                Holding::Stopping => {}
            }
        }
        self.clear_takeover_held();
        self.mach_down_check();
        if self.phase == Phase::ShuttingDown {
            if self.local_groups.iter().all(|g| g.holding == Holding::None) {
                self.finish_shutdown(now);
            } else {
                // Groups whose stop keeps failing: a clean stop is bounded.
                self.give_up_if_done(now);
            }
        }
    }

    pub(super) fn reannounce(&mut self, g: usize) {
        self.counters.reannounces += 1;
        let line = self.groups[g].line.clone();
        self.event(Event::Reannounce { group: g, line });
        self.outputs.push_back(Output::Reannounce { group: g });
    }

    /// A live peer shows the group `Stopping`.
    fn any_peer_stopping(&self, g: usize) -> bool {
        (0..self.peers.len()).any(|i| {
            i != self.local
                && self.peers[i].state == PeerState::Up
                && self.peers[i].groups[g].holding == Holding::Stopping
        })
    }

    /// Asks the driver to prepare the start of `g` ([`Output::Prepare`]) or voids what it
    /// prepared ([`Output::Unprepare`]), when that changes.
    fn set_prepared(&mut self, g: usize, want: bool) {
        let lg = &mut self.local_groups[g];
        if lg.prepared == want {
            return;
        }
        lg.prepared = want;
        self.outputs.push_back(if want {
            Output::Prepare { group: g }
        } else {
            Output::Unprepare { group: g }
        });
    }

    pub(super) fn start(&mut self, g: usize) {
        let lg = &mut self.local_groups[g];
        // The start uses what was prepared for it, if anything.
        lg.prepared = false;
        lg.holding = Holding::Starting;
        lg.conflict = false;
        self.dirty = true;
        if let Some(from) = lg.orphaned_from.take() {
            lg.takeover_from = Some(from);
            self.warn_unfenced_takeover(from);
            let resource = self.groups[g].first_resource.clone();
            let from = self.names[from].clone();
            self.event(Event::TakingOver {
                group: g,
                resource,
                from,
            });
        }
        let line = self.groups[g].line.clone();
        self.event(Event::Acquiring { group: g, line });
        self.outputs.push_back(Output::Resource {
            group: g,
            op: ResourceOp::Start,
        });
    }

    /// Gives up the start of `g` in progress because live peer `holder` claims the group and
    /// is not to yield it: a stop replaces it.
    fn abandon_start(&mut self, g: usize, holder: usize) {
        let lg = &mut self.local_groups[g];
        lg.start_abandoned = true;
        let from = lg.takeover_from.take();
        // A takeover given up is not completed: no `mach_down` completion line for it.
        if let Some(from) = from {
            let busy = self
                .local_groups
                .iter()
                .any(|g| g.takeover_from == Some(from) || g.orphaned_from == Some(from));
            if !busy {
                self.mach_down_pending.retain(|(p, _)| *p != from);
            }
        }
        self.counters.abandoned_starts += 1;
        self.event(Event::StartAbandoned {
            group: g,
            line: self.groups[g].line.clone(),
            holder: self.names[holder].clone(),
        });
        self.release(g);
    }

    /// Starts releasing `g` here: `Stopping`, announced, and the stop asked of the driver.
    pub(super) fn release(&mut self, g: usize) {
        self.local_groups[g].holding = Holding::Stopping;
        self.dirty = true;
        self.ask_stop(g);
    }

    /// Asks the driver to stop `g` (a first stop, or a retry of a failed one).
    pub(super) fn ask_stop(&mut self, g: usize) {
        let line = self.groups[g].line.clone();
        self.event(Event::Releasing { group: g, line });
        self.outputs.push_back(Output::Resource {
            group: g,
            op: ResourceOp::Stop,
        });
    }

    pub(super) fn mach_down_check(&mut self) {
        let mut k = 0;
        while k < self.mach_down_pending.len() {
            let (p, times) = self.mach_down_pending[k];
            let busy = self
                .local_groups
                .iter()
                .any(|g| g.takeover_from == Some(p) || g.orphaned_from == Some(p));
            if busy {
                k += 1;
            } else {
                self.mach_down_pending.remove(k);
                let node = self.names[p].clone();
                self.event(Event::MachDownComplete { node, times });
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    pub(super) holding: Holding,
    pub(super) candidate: bool,
    pub(super) standby: bool,
    pub(super) wants: bool,
}
