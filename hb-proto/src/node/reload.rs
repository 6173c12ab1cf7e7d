//! Live changes to a running node (a configuration reload) and what a stop that keeps failing
//! leads to.
//!
//! # New timings
//! [`Node::set_timings`] takes effect at once: a shorter `keepalive` brings the next heartbeat
//! forward, a longer one applies from the next heartbeat on; `warntime` and `initdead` apply to
//! the next check. A shorter `deadtime` must not declare a live peer dead because it still
//! sends at the pace of the old configuration (its own reload may come a little later): for each
//! live peer the previous, longer `deadtime` stays in force until a heartbeat from it arrives
//! within half the new `deadtime` of the one before (the peer's pace fits the new value, by
//! Heartbeat's rule `deadtime > 2 x keepalive`). A longer `deadtime` applies at once.
//!
//! # New ping nodes
//! [`Node::set_ping`] rebuilds the ping-node monitor (see
//! [`crate::ping::PingMonitor::reconfigure`]): an
//! address that stays keeps its liveness and the evidence it gave, a new one starts unknown, a
//! removed one stops counting. A reload never lets this node take a group the guard on dead
//! peers would not let it take without the reload: the guard still asks for an answer, from a
//! ping node configured now, to a request sent after the peer went silent (a new address has
//! none until it answers such a request), and a peer whose takeover the guard holds when the
//! reload removes the last ping node stays held until it comes back. With ipfail off (or no
//! ping node left) the node stops yielding, as it would after a restart.
//!
//! # Stop failures
//! A group whose stop failed (the driver already retried it) is logged with Heartbeat's
//! `Resource STOP failure. Reboot required!`. With fencing configured ([`Node::set_self_fencing`]:
//! `fence_command`, `stonith_host` or `watchdog`) the node asks the driver to fence itself
//! ([`Output::SelfFence`], once); when that is done ([`Node::handle_self_fence_result`]) it stops
//! heartbeating without a shutdown notice, so peers take the group over only once they declare
//! this node dead, by which time the reboot is under way. Without fencing, or when the fence
//! command fails, the group stays `Stopping` (no peer acquires it) and its stop is retried with
//! back-off; status shows the failures. During a clean stop the retries come every
//! [`SHUTDOWN_STOP_RETRY`] and end after [`SHUTDOWN_STOP_ATTEMPTS`] failed stops of a group
//! since the stop began: the node stops, naming the groups left running
//! ([`Node::left_running`]).

use std::time::Duration;

use super::{Event, Node, Output, PeerState, Phase};
use crate::{
    Timestamp,
    config::{HaCf, Timings},
    message::Holding,
    ping::{PingSettings, ping_targets},
};

/// During a clean stop: failed stops of one group before the node gives up on it.
pub const SHUTDOWN_STOP_ATTEMPTS: u32 = 3;
/// During a clean stop: the pause before a failed stop is retried.
pub const SHUTDOWN_STOP_RETRY: Duration = Duration::from_secs(1);

impl Node {
    /// New `keepalive`, `deadtime`, `warntime` and `initdead` (a reload). See the module
    /// documentation. The driver validated them (`deadtime > 2 x keepalive`).
    pub fn set_timings(&mut self, now: Timestamp, t: Timings) {
        if self.phase == Phase::Stopped {
            return;
        }
        let old_deadtime = self.deadtime;
        let mut kept_for = Vec::new();
        if t.deadtime < old_deadtime {
            for i in 0..self.peers.len() {
                if i == self.local || self.peers[i].state != PeerState::Up {
                    continue;
                }
                let floor = self.peers[i].deadtime_floor.unwrap_or(old_deadtime);
                self.peers[i].deadtime_floor = Some(floor.max(old_deadtime));
                kept_for.push(self.names[i].clone());
            }
        } else {
            for p in &mut self.peers {
                p.deadtime_floor = p.deadtime_floor.filter(|f| *f > t.deadtime);
            }
        }
        self.keepalive = t.keepalive;
        self.deadtime = t.deadtime;
        self.warntime = t.warntime;
        self.initdead = t.initdead;
        let sooner = now + t.keepalive;
        if sooner < self.next_heartbeat {
            self.next_heartbeat = sooner;
        }
        self.event(Event::TimingsChanged {
            keepalive: t.keepalive,
            deadtime: t.deadtime,
            warntime: t.warntime,
            kept_for,
        });
        self.handle_timeout(now);
    }

    /// New ping nodes (`ping`, `ping_group`) and their settings (`deadping`, `ping_interval`,
    /// `ipfail`, `ipfail_settle`) from `ha` (a reload). See the module documentation. Returns,
    /// for each previous ping-node address index (as in [`Output::Ping`]), its index now
    /// (`None`: removed): the driver re-addresses the requests it has in flight with it.
    pub fn set_ping(&mut self, now: Timestamp, ha: &HaCf) -> Vec<Option<usize>> {
        let targets = ping_targets(ha);
        if targets.is_empty() && self.ping.is_configured() {
            for i in 0..self.peers.len() {
                if i != self.local
                    && self.peers[i].state == PeerState::Dead
                    && !self.may_take_from_dead(i)
                {
                    self.peers[i].ping_hold = true;
                }
            }
        }
        let map = self
            .ping
            .reconfigure(&targets, PingSettings::from_ha_cf(ha), now);
        // Requests not yet handed to the driver follow their address too.
        self.outputs.retain_mut(|o| match o {
            Output::Ping { link, .. } => match map.get(*link).copied().flatten() {
                Some(new) => {
                    *link = new;
                    true
                }
                None => false,
            },
            _ => true,
        });
        // The counts in our heartbeats change.
        self.dirty = true;
        if self.phase != Phase::Stopped {
            self.handle_timeout(now);
        }
        map
    }

    /// The `deadtime` in force for peer `i` (see the module documentation).
    pub(super) fn peer_deadtime(&self, i: usize) -> Duration {
        self.peers[i]
            .deadtime_floor
            .map_or(self.deadtime, |f| f.max(self.deadtime))
    }

    /// A heartbeat from peer `i` arrived `gap` after the previous one on the same link: once
    /// that fits the current `deadtime`, a longer one kept after a reload is dropped.
    pub(super) fn note_pace(&mut self, i: usize, gap: Duration) {
        if self.peers[i].deadtime_floor.is_some() && gap.saturating_mul(2) < self.deadtime {
            self.peers[i].deadtime_floor = None;
        }
    }

    /// Whether the admin configured fencing (`fence_command`, `stonith_host` or `watchdog`):
    /// what a failed stop leads to (see the module documentation).
    pub fn set_self_fencing(&mut self, configured: bool) {
        self.self_fence_configured = configured;
    }

    /// Groups a clean stop gave up on (their stop kept failing): empty after a complete stop.
    pub fn left_running(&self) -> &[String] {
        &self.left_running
    }

    /// `true` once the node fenced itself ([`Node::handle_self_fence_result`] with `Ok`).
    pub fn is_self_fenced(&self) -> bool {
        self.self_fenced
    }

    /// A group's stop failed (counted, its retry scheduled). Decides what comes next.
    pub(super) fn stop_failed(&mut self, now: Timestamp, group: usize) {
        let line = self.groups[group].line.clone();
        // A clean stop is bounded even when fencing keeps failing.
        let give_up = self.phase == Phase::ShuttingDown
            && self.shutdown_stop_failures(group) >= SHUTDOWN_STOP_ATTEMPTS;
        let fence = self.self_fence_configured && !self.self_fence_pending && !give_up;
        self.event(Event::StopFailureRebootRequired {
            group,
            line,
            fencing: self.self_fence_configured && !give_up,
        });
        if fence {
            self.self_fence_pending = true;
            self.outputs.push_back(Output::SelfFence { group });
            return;
        }
        if self.phase != Phase::ShuttingDown || self.self_fence_pending {
            return;
        }
        let lg = &mut self.local_groups[group];
        if !give_up {
            lg.stop_retry_at = Some(now + SHUTDOWN_STOP_RETRY);
            return;
        }
        // Give up on every group whose stop has failed as often; stop once nothing else is
        // still being released.
        lg.stop_retry_at = None;
        self.give_up_if_done(now);
    }

    /// A clean stop begins: failed stops are counted from here, and a group whose stop is
    /// waiting for a long back-off is retried within [`SHUTDOWN_STOP_RETRY`].
    pub(super) fn shutdown_began(&mut self, now: Timestamp) {
        self.stop_failures_before_shutdown =
            self.local_groups.iter().map(|g| g.stop_failures).collect();
        let soon = now + SHUTDOWN_STOP_RETRY;
        for g in &mut self.local_groups {
            if let Some(t) = g.stop_retry_at
                && t > soon
            {
                g.stop_retry_at = Some(soon);
            }
        }
    }

    /// Failed stops of `group` since the clean stop began.
    fn shutdown_stop_failures(&self, group: usize) -> u32 {
        let before = self
            .stop_failures_before_shutdown
            .get(group)
            .copied()
            .unwrap_or(0);
        self.local_groups[group]
            .stop_failures
            .saturating_sub(before)
    }

    /// During a clean stop: when every group is released or given up on, stop.
    pub(super) fn give_up_if_done(&mut self, now: Timestamp) {
        let _ = now;
        let done = (0..self.local_groups.len()).all(|i| {
            let g = &self.local_groups[i];
            g.holding == Holding::None
                || (g.holding == Holding::Stopping
                    && self.shutdown_stop_failures(i) >= SHUTDOWN_STOP_ATTEMPTS
                    && g.stop_retry_at.is_none())
        });
        if !done {
            return;
        }
        self.left_running = self
            .local_groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.holding != Holding::None)
            .map(|(i, _)| self.groups[i].line.clone())
            .collect();
        let lines = self.left_running.clone();
        self.event(Event::ShutdownIncomplete { lines });
        // No shutdown notice: the resources may still be up, peers wait for deadtime.
        self.dirty = false;
        self.phase = Phase::Stopped;
        self.event(Event::Stopped);
    }

    /// The driver ran the self-fence command asked for by [`Output::SelfFence`].
    pub fn handle_self_fence_result(&mut self, now: Timestamp, result: Result<(), String>) {
        if !self.self_fence_pending || self.phase == Phase::Stopped {
            self.counters.stale_results += 1;
            return;
        }
        self.self_fence_pending = false;
        match result {
            Ok(()) => {
                self.self_fenced = true;
                self.event(Event::SelfFenced);
                // Heartbeats stop here, without a shutdown notice.
                self.dirty = false;
                self.phase = Phase::Stopped;
            }
            Err(error) => {
                self.event(Event::SelfFenceFailed { error });
                if self.phase == Phase::ShuttingDown {
                    for g in 0..self.local_groups.len() {
                        let lg = &mut self.local_groups[g];
                        if lg.holding == Holding::Stopping && lg.stop_retry_at.is_none() {
                            lg.stop_retry_at = Some(now + SHUTDOWN_STOP_RETRY);
                        }
                    }
                }
            }
        }
    }
}
