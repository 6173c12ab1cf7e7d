//! The fencing gate: no group is taken from a peer declared dead by silence until that peer
//! has been fenced (STONITH), when fencing is configured.
//!
//! Sans-IO like the rest of the core. The node tells the gate when a peer is declared dead
//! ([`FenceGate::peer_dead`]) or heard again ([`FenceGate::peer_alive`]); the gate asks for a
//! fence with [`FenceRequest`]s from [`FenceGate::poll`] and takes the driver's result back with
//! [`FenceGate::result`]. While [`FenceGate::takeover_blocked`] is true the node starts no group.
//!
//! # Rules
//! - Only a death by silence needs a fence. A shutdown notice is a clean release: the peer
//!   stopped its groups before it sent it.
//! - A peer never heard by `initdead` is treated as dead by silence (it may be running,
//!   partitioned since start-up, and holding groups).
//! - The first attempt is made `delay` after the death: zero for the first node of ha.cf's
//!   `node` list, `fence_delay` times its position for the others. Two nodes that declare each
//!   other dead at the same moment therefore do not fence each other at the same moment: the
//!   first node's fence lands while the second is still waiting, and the second (powered off)
//!   never fires. `fence_delay` must be longer than a fence takes.
//! - A failed or timed-out attempt is retried after [`retry_backoff`] (1 s, doubling, at most
//!   [`MAX_RETRY_BACKOFF`]); the groups stay where they are meanwhile.
//! - The peer heard again (partition healed, stall over) ends the attempt: nothing is taken
//!   over, the late result of a running attempt is ignored.
//! - A node that cannot fence (fencing is configured for the cluster, but no `stonith_host`
//!   line names this node or `*`, and there is no `fence_command`) never takes over from a peer
//!   dead by silence: it says so and waits for the peer to return or for an operator.
//! - With ping nodes configured, a peer is fenced only when this node could take its groups
//!   (the ping guard: a ping node answered a request sent after the peer went silent). An
//!   isolated node (its own link or switch failed) would otherwise power off the healthy
//!   holder and then not take over: the attempt waits instead
//!   ([`FenceEvent::HeldIsolated`], once), and is made as soon as a ping answer clears it.
//! - With no fencing configured at all the gate never blocks; the node warns at each takeover
//!   from a silent peer (`No STONITH device configured.`, `Shared disks are not protected.`).

use std::{fmt, time::Duration};

use crate::{Timestamp, config::Config};

/// Retries back off from this.
pub const FIRST_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(32);

/// Wait before attempt `n + 1` after `n` failed attempts: 1 s, 2 s, 4 s ... at most 32 s.
pub fn retry_backoff(failed: u32) -> Duration {
    FIRST_RETRY_BACKOFF
        .saturating_mul(1u32 << failed.saturating_sub(1).min(5))
        .min(MAX_RETRY_BACKOFF)
}

/// How this node fences, as the core needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceSetup {
    /// Some fencing (`stonith_host` or `fence_command`) is configured in ha.cf.
    pub configured: bool,
    /// This node has a device it may use (`stonith_host` naming it or `*`, or `fence_command`).
    pub local_device: bool,
    /// How long one attempt may take before the driver kills it and reports a failure.
    pub timeout: Duration,
    /// Wait from a death to the first attempt (see the module documentation).
    pub delay: Duration,
}

impl FenceSetup {
    /// The setup for `config.local_node`: a device when a `stonith_host` line names it or `*`,
    /// or a `fence_command` is set; the delay is `fence_delay` times its position in the `node`
    /// list.
    pub fn from_config(config: &Config) -> Self {
        let ha = &config.ha_cf;
        if !ha.fencing_configured() {
            return Self::NONE;
        }
        let local = &config.local_node;
        let position = ha.nodes.iter().position(|n| n == local).unwrap_or(0);
        Self {
            configured: true,
            local_device: !ha.fence_commands.is_empty()
                || ha.stonith_devices().iter().any(|s| s.usable_from(local)),
            timeout: ha.fence_timeout.value,
            delay: ha
                .fence_delay
                .value
                .saturating_mul(u32::try_from(position).unwrap_or(u32::MAX)),
        }
    }

    /// No fencing configured.
    pub const NONE: Self = Self {
        configured: false,
        local_device: false,
        timeout: Duration::ZERO,
        delay: Duration::ZERO,
    };
}

/// Ask the driver to fence (reset) a peer; report with [`FenceGate::result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRequest {
    /// Index of the peer in ha.cf's `node` list.
    pub peer: usize,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Kill the attempt after this long and report it failed.
    pub timeout: Duration,
}

/// What the gate did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceEvent {
    /// An attempt starts. Heartbeat: `Resetting node node2 with [stonith device]`.
    Resetting {
        /// Peer name.
        node: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// The first attempt waits (this node is not first in the `node` list).
    Delayed {
        /// Peer name.
        node: String,
        /// The wait.
        delay: Duration,
    },
    /// Fenced. Heartbeat: `node node2 now reset.`
    Reset {
        /// Peer name.
        node: String,
        /// From the death to the fence's success.
        after: Duration,
    },
    /// An attempt failed or timed out. Heartbeat: `Failed to STONITH node node2 with one of
    /// my STONITH devices`, then hb's retry line.
    Failed {
        /// Peer name.
        node: String,
        /// The driver's error text.
        error: String,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// The peer was heard again before it was fenced: the attempt is over, nothing is taken.
    Abandoned {
        /// Peer name.
        node: String,
    },
    /// The attempt waits: no ping node answered since the peer went silent, so this node may
    /// be the isolated one (see the module documentation).
    HeldIsolated {
        /// Peer name.
        node: String,
    },
    /// Fencing is configured but this node has no device: it will not take over.
    NoLocalDevice {
        /// Peer name.
        node: String,
    },
    /// A takeover from a peer dead by silence, with no fencing configured (Heartbeat's
    /// first warning). `No STONITH device configured.`
    NotConfigured,
    /// Heartbeat's second warning with it. `Shared disks are not protected.`
    DisksUnprotected,
}

impl FenceEvent {
    /// Failures and a node that cannot fence are errors.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            FenceEvent::Failed { .. } | FenceEvent::NoLocalDevice { .. }
        )
    }

    /// A fence that succeeded is normal operation; everything else is worth a warning.
    pub fn is_info(&self) -> bool {
        matches!(self, FenceEvent::Reset { .. })
    }
}

impl fmt::Display for FenceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceEvent::Resetting { node, attempt } => {
                write!(f, "Resetting node {node} with [stonith device]")?;
                if *attempt > 1 {
                    write!(f, " (attempt {attempt})")?;
                }
                Ok(())
            }
            FenceEvent::Delayed { node, delay } => write!(
                f,
                "hb: fencing of node {node} delayed {} ms (fence_delay: this node is not first \
                 in the node list); its groups wait for the fence",
                delay.as_millis()
            ),
            FenceEvent::Reset { node, after } => write!(
                f,
                "node {node} now reset. (fenced {} ms after it was declared dead)",
                after.as_millis()
            ),
            FenceEvent::Failed {
                node,
                error,
                retry_in,
            } => write!(
                f,
                "Failed to STONITH node {node} with one of my STONITH devices: {error}; \
                 its groups are not taken over; retrying in {} ms",
                retry_in.as_millis()
            ),
            FenceEvent::Abandoned { node } => write!(
                f,
                "hb: node {node} is alive again: fencing it is abandoned and nothing is taken over"
            ),
            FenceEvent::NotConfigured => write!(f, "No STONITH device configured."),
            FenceEvent::DisksUnprotected => write!(f, "Shared disks are not protected."),
            FenceEvent::HeldIsolated { node } => write!(
                f,
                "hb: not fencing node {node} yet: no ping node answered since it went silent \
                 (this node may be the isolated one)"
            ),
            FenceEvent::NoLocalDevice { node } => write!(
                f,
                "hb: node {node} is dead but this node has no STONITH device (no stonith_host \
                 line names it or '*', no fence_command): its groups are not taken over"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Alive, or gone after a shutdown notice, or fenced: nothing to wait for.
    Clear,
    /// Needs a fence; the next attempt is due at `at`.
    Waiting {
        since: Timestamp,
        failed: u32,
        at: Timestamp,
    },
    /// An attempt is running.
    Running { since: Timestamp, attempt: u32 },
    /// Needs a fence this node cannot make.
    Stuck,
}

/// Per-peer fencing state. See the module documentation.
#[derive(Debug, Clone)]
pub struct FenceGate {
    setup: FenceSetup,
    names: Vec<String>,
    state: Vec<State>,
    /// Per peer: a due attempt waits for the caller's leave (said once).
    held: Vec<bool>,
    fenced: u64,
    failures: u64,
}

impl FenceGate {
    /// A gate for the nodes named in `names` (ha.cf's `node` order).
    pub fn new(setup: FenceSetup, names: Vec<String>) -> Self {
        let state = vec![State::Clear; names.len()];
        let held = vec![false; names.len()];
        Self {
            setup,
            names,
            state,
            held,
            fenced: 0,
            failures: 0,
        }
    }

    /// The setup this gate runs with.
    pub fn setup(&self) -> FenceSetup {
        self.setup
    }

    /// Peer `i` was declared dead at `now`; `silent` unless it sent a shutdown notice.
    pub fn peer_dead(&mut self, i: usize, now: Timestamp, silent: bool) -> Vec<FenceEvent> {
        let mut ev = Vec::new();
        let Some(s) = self.state.get_mut(i) else {
            return ev;
        };
        if !silent || !self.setup.configured {
            *s = State::Clear;
            return ev;
        }
        if !matches!(*s, State::Clear) {
            return ev;
        }
        if !self.setup.local_device {
            *s = State::Stuck;
            ev.push(FenceEvent::NoLocalDevice {
                node: self.names[i].clone(),
            });
            return ev;
        }
        *s = State::Waiting {
            since: now,
            failed: 0,
            at: now + self.setup.delay,
        };
        self.held[i] = false;
        if !self.setup.delay.is_zero() {
            ev.push(FenceEvent::Delayed {
                node: self.names[i].clone(),
                delay: self.setup.delay,
            });
        }
        ev
    }

    /// Peer `i` was heard again (alive, or restarted in a new generation).
    pub fn peer_alive(&mut self, i: usize) -> Vec<FenceEvent> {
        let Some(s) = self.state.get_mut(i) else {
            return Vec::new();
        };
        let was = std::mem::replace(s, State::Clear);
        self.held[i] = false;
        match was {
            State::Waiting { .. } | State::Running { .. } | State::Stuck => {
                vec![FenceEvent::Abandoned {
                    node: self.names[i].clone(),
                }]
            }
            State::Clear => Vec::new(),
        }
    }

    /// Whether an attempt is due at `now` (held ones included): [`FenceGate::poll`] has
    /// something to decide.
    pub fn due(&self, now: Timestamp) -> bool {
        self.state
            .iter()
            .any(|s| matches!(s, State::Waiting { at, .. } if now >= *at))
    }

    /// Attempts due at `now` on the peers `may_fence` allows. A due attempt it does not allow
    /// waits without a timer ([`FenceGate::next_timeout`] leaves it out): poll again when the
    /// answer may have changed.
    pub fn poll(
        &mut self,
        now: Timestamp,
        may_fence: impl Fn(usize) -> bool,
    ) -> (Vec<FenceRequest>, Vec<FenceEvent>) {
        let mut reqs = Vec::new();
        let mut ev = Vec::new();
        for (i, s) in self.state.iter_mut().enumerate() {
            if let State::Waiting { since, failed, at } = *s
                && now >= at
            {
                if !may_fence(i) {
                    if !self.held[i] {
                        self.held[i] = true;
                        ev.push(FenceEvent::HeldIsolated {
                            node: self.names[i].clone(),
                        });
                    }
                    continue;
                }
                self.held[i] = false;
                let attempt = failed + 1;
                *s = State::Running { since, attempt };
                reqs.push(FenceRequest {
                    peer: i,
                    attempt,
                    timeout: self.setup.timeout,
                });
                ev.push(FenceEvent::Resetting {
                    node: self.names[i].clone(),
                    attempt,
                });
            }
        }
        (reqs, ev)
    }

    /// The driver's result of the running attempt on peer `i`. A result for a peer with no
    /// running attempt (it came back meanwhile) is ignored and `None` is returned; otherwise
    /// the event, and for a success the time from the death to the fence.
    pub fn result(
        &mut self,
        i: usize,
        now: Timestamp,
        result: Result<(), String>,
    ) -> Option<(FenceEvent, Option<Duration>)> {
        let s = self.state.get_mut(i)?;
        let State::Running { since, attempt } = *s else {
            return None;
        };
        let node = self.names[i].clone();
        match result {
            Ok(()) => {
                *s = State::Clear;
                self.fenced += 1;
                let after = now.saturating_since(since);
                Some((FenceEvent::Reset { node, after }, Some(after)))
            }
            Err(error) => {
                let retry_in = retry_backoff(attempt);
                *s = State::Waiting {
                    since,
                    failed: attempt,
                    at: now + retry_in,
                };
                self.failures += 1;
                Some((
                    FenceEvent::Failed {
                        node,
                        error,
                        retry_in,
                    },
                    None,
                ))
            }
        }
    }

    /// A peer dead by silence is not fenced yet: no group may be started.
    pub fn takeover_blocked(&self) -> bool {
        self.state.iter().any(|s| !matches!(s, State::Clear))
    }

    /// Peer `i` waits for a fence (or for a device this node lacks).
    pub fn pending(&self, i: usize) -> bool {
        self.state
            .get(i)
            .is_some_and(|s| !matches!(s, State::Clear))
    }

    /// When the next attempt is due.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.state
            .iter()
            .zip(&self.held)
            .filter_map(|(s, held)| match s {
                State::Waiting { at, .. } if !held => Some(*at),
                _ => None,
            })
            .min()
    }

    /// Successful fences since start.
    pub fn fenced(&self) -> u64 {
        self.fenced
    }

    /// Failed attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn gate(delay: Duration) -> FenceGate {
        FenceGate::new(
            FenceSetup {
                configured: true,
                local_device: true,
                timeout: Duration::from_secs(10),
                delay,
            },
            vec!["a".into(), "b".into()],
        )
    }

    #[test]
    fn silent_death_blocks_until_fenced() {
        let mut g = gate(Duration::ZERO);
        assert!(g.peer_dead(1, t(100), true).is_empty());
        assert!(g.takeover_blocked());
        let (reqs, ev) = g.poll(t(100), |_| true);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].peer, 1);
        assert_eq!(reqs[0].attempt, 1);
        assert!(matches!(&ev[0], FenceEvent::Resetting { node, attempt: 1 } if node == "b"));
        assert!(
            g.poll(t(150), |_| true).0.is_empty(),
            "one attempt at a time"
        );
        assert!(g.takeover_blocked());
        let (e, after) = g.result(1, t(350), Ok(())).unwrap();
        assert!(matches!(e, FenceEvent::Reset { .. }));
        assert_eq!(after, Some(250 * MS));
        assert!(!g.takeover_blocked());
        assert_eq!(g.fenced(), 1);
    }

    #[test]
    fn shutdown_notice_needs_no_fence() {
        let mut g = gate(Duration::ZERO);
        g.peer_dead(1, t(100), false);
        assert!(!g.takeover_blocked());
        assert!(g.poll(t(100), |_| true).0.is_empty());
    }

    #[test]
    fn unconfigured_never_blocks() {
        let mut g = FenceGate::new(FenceSetup::NONE, vec!["a".into(), "b".into()]);
        g.peer_dead(1, t(100), true);
        assert!(!g.takeover_blocked());
        assert!(g.poll(t(100), |_| true).0.is_empty());
    }

    #[test]
    fn failures_back_off_and_keep_blocking() {
        let mut g = gate(Duration::ZERO);
        g.peer_dead(1, t(0), true);
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let (reqs, _) = g.poll(now, |_| true);
            assert_eq!(reqs.len(), 1);
            let (e, after) = g.result(1, now, Err("exit status 1".into())).unwrap();
            assert_eq!(after, None);
            let FenceEvent::Failed { retry_in, .. } = e else {
                panic!("{e:?}");
            };
            waits.push(retry_in.as_secs());
            assert!(g.takeover_blocked());
            assert!(
                g.poll(now + (retry_in - MS), |_| true).0.is_empty(),
                "not before back-off"
            );
            assert_eq!(g.next_timeout(), Some(now + retry_in));
            now = now + retry_in;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(g.failures(), 8);
    }

    #[test]
    fn peer_return_ends_attempt_and_ignores_late_result() {
        let mut g = gate(Duration::ZERO);
        g.peer_dead(1, t(0), true);
        g.poll(t(0), |_| true);
        let ev = g.peer_alive(1);
        assert!(matches!(&ev[0], FenceEvent::Abandoned { node } if node == "b"));
        assert!(!g.takeover_blocked());
        assert!(g.result(1, t(10), Ok(())).is_none(), "late result ignored");
        assert_eq!(g.fenced(), 0);
        assert!(g.peer_alive(1).is_empty());
    }

    #[test]
    fn delay_defers_first_attempt_only() {
        let mut g = gate(500 * MS);
        let ev = g.peer_dead(1, t(0), true);
        assert!(matches!(&ev[0], FenceEvent::Delayed { .. }));
        assert!(g.poll(t(499), |_| true).0.is_empty());
        assert_eq!(g.next_timeout(), Some(t(500)));
        assert_eq!(g.poll(t(500), |_| true).0.len(), 1);
        g.result(1, t(600), Err("no".into()));
        // The retry waits for the back-off, not the delay again.
        assert_eq!(g.next_timeout(), Some(t(1600)));
    }

    #[test]
    fn a_due_attempt_the_caller_holds_waits_without_a_timer_and_is_said_once() {
        let mut g = gate(Duration::ZERO);
        g.peer_dead(1, t(0), true);
        let (reqs, ev) = g.poll(t(0), |_| false);
        assert!(reqs.is_empty());
        assert!(matches!(&ev[..], [FenceEvent::HeldIsolated { node }] if node == "b"));
        assert_eq!(g.next_timeout(), None, "no busy timer while held");
        assert!(g.takeover_blocked());
        let (reqs, ev) = g.poll(t(5), |_| false);
        assert!(reqs.is_empty() && ev.is_empty(), "said once");
        let (reqs, _) = g.poll(t(9), |_| true);
        assert_eq!(reqs.len(), 1, "made as soon as allowed");
    }

    #[test]
    fn no_local_device_is_stuck_until_return() {
        let mut g = FenceGate::new(
            FenceSetup {
                configured: true,
                local_device: false,
                timeout: Duration::from_secs(1),
                delay: Duration::ZERO,
            },
            vec!["a".into(), "b".into()],
        );
        let ev = g.peer_dead(1, t(0), true);
        assert!(matches!(&ev[0], FenceEvent::NoLocalDevice { .. }));
        assert!(g.poll(t(100_000), |_| true).0.is_empty());
        assert!(g.takeover_blocked());
        g.peer_alive(1);
        assert!(!g.takeover_blocked());
    }
}
