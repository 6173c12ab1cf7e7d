//! The arbiter gate: with `arbiter etcd ...` configured, a node may start a group only while it
//! holds that group's etcd key under a live lease, and stops it when the lease may have
//! expired. Sans-IO like the rest of the core: the node emits [`ArbiterRequest`]s, the driver
//! carries them out against etcd and reports [`ArbiterInput`]s back, stamped with the time the
//! core asked (so every deadline is computed here, on this node's CLOCK_MONOTONIC).
//!
//! # The lease
//! The node keeps one etcd lease of `arbiter_ttl` (the server may grant a longer TTL, which is
//! then used). It asks for a renewal (keepalive) every [`renew_interval`] = TTL/4. A grant or
//! renewal the core asked for at time `t` and that succeeded makes the lease *valid here* until
//! `t + TTL - margin`, [`margin`] = TTL/4. Measured from the moment the core ASKED, not from the
//! reply: etcd restarts the lease's TTL when it processes the request, which is after `t`, so
//! etcd's own expiry is always at least `margin` after the local deadline (clock rates differ
//! by far less than that). The node never waits for etcd to say the lease expired.
//!
//! When the local deadline passes without a newer success the lease *lapses* here: every key
//! is considered lost at once, every group held or starting is stopped (the stop has the
//! `margin` to complete before etcd may give the key to another node), the lapsed lease is
//! abandoned (a revoke is attempted, best effort) and a new one is asked for.
//!
//! # The keys
//! Group N's key is `PREFIX/group/N`. The node asks for it ([`ArbiterRequest::Acquire`]: a
//! transaction "create the key with my lease if it does not exist, else read it") only when
//! heartbeats already say it may start the group; it starts the group only once the key is
//! held under the current, valid lease. A key held by another lease ([`KeyOutcome::Taken`]) is
//! asked for again every [`acquire_retry`] (it disappears when its holder deletes it or its
//! lease expires on etcd). The key's `create_revision` is the group's fencing epoch: it is
//! logged and exported, and increases with every new holder. A group is given back only after
//! its resources stopped ([`ArbiterRequest::Release`]: delete the key if it is still under our
//! lease), so the next holder cannot start it while our resources may still be up.
//!
//! The lease keepalive says nothing about the keys: a key deleted or overwritten by hand while
//! its lease lives goes unnoticed by it. So with every renewal the node also checks each key it
//! holds ([`ArbiterRequest::Verify`]: is the key still there with the epoch held and under our
//! lease?). A key that is gone, has another `create_revision` or is no longer under our lease
//! ([`KeyOutcome::Lost`]) is lost: the group is stopped here (as for a lapse, for that group
//! only) and its key is asked for again only once the group is stopped. Between a deletion by
//! hand and its discovery up to one renewal interval (TTL/4) plus a round trip passes, in which
//! another node may create the key and start the group while it still runs here.
//!
//! A node that cannot reach etcd holds no valid lease and so never starts a group; one that
//! held groups stops them within `TTL - margin` of its last successful renewal request.

use std::time::Duration;

use crate::Timestamp;

/// Time before the lease's TTL ends at which this node considers it lost: TTL/4.
pub fn margin(ttl: Duration) -> Duration {
    ttl / 4
}

/// Interval between renewal requests (and grant attempts): TTL/4.
pub fn renew_interval(ttl: Duration) -> Duration {
    ttl / 4
}

/// Interval between attempts to acquire a key another lease holds: TTL/10, at least 50 ms.
pub fn acquire_retry(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(50))
}

/// What the node asks the driver to do against etcd. Every request is answered with exactly
/// one [`ArbiterInput`] carrying the same `at` (or, for keys, `seq`); a request that fails or
/// times out (the driver gives up after [`renew_interval`]) is answered as failed. `Revoke` is
/// not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArbiterRequest {
    /// Grant a new lease of `ttl`; answer [`ArbiterInput::Granted`] or
    /// [`ArbiterInput::LeaseFailed`].
    Grant {
        /// The TTL asked for.
        ttl: Duration,
        /// When the core asked (echo it back).
        at: Timestamp,
    },
    /// Renew `lease` once; answer [`ArbiterInput::Renewed`] or [`ArbiterInput::LeaseFailed`].
    KeepAlive {
        /// The lease id.
        lease: i64,
        /// When the core asked (echo it back).
        at: Timestamp,
    },
    /// Revoke an abandoned lease (its keys go with it); best effort, not answered.
    Revoke {
        /// The lease id.
        lease: i64,
    },
    /// Create group `group`'s key with `lease` if it does not exist, else read it; answer
    /// [`ArbiterInput::Key`] with [`KeyOutcome::Held`] (the key is under `lease`),
    /// [`KeyOutcome::Taken`] or [`KeyOutcome::Failed`].
    Acquire {
        /// Group index.
        group: usize,
        /// The lease to put the key under.
        lease: i64,
        /// Request number (echo it back).
        seq: u64,
    },
    /// Check that group `group`'s key, held here, is still there with `epoch` as its
    /// `create_revision` and under `lease`; answer [`KeyOutcome::Held`] (it is),
    /// [`KeyOutcome::Lost`] (it is not) or [`KeyOutcome::Failed`]. Sent with every renewal.
    Verify {
        /// Group index.
        group: usize,
        /// Our lease.
        lease: i64,
        /// The epoch held here.
        epoch: i64,
        /// Request number (echo it back).
        seq: u64,
    },
    /// Delete group `group`'s key if it is under `lease`; answer [`KeyOutcome::Released`] or
    /// [`KeyOutcome::Failed`].
    Release {
        /// Group index.
        group: usize,
        /// Our lease.
        lease: i64,
        /// Request number (echo it back).
        seq: u64,
    },
}

impl ArbiterRequest {
    /// The answer a driver gives when the request fails or is not answered in time (`None` for
    /// [`ArbiterRequest::Revoke`], which is not answered).
    pub fn failed(&self, error: &str) -> Option<ArbiterInput> {
        let error = error.to_owned();
        match *self {
            ArbiterRequest::Grant { at, .. } | ArbiterRequest::KeepAlive { at, .. } => {
                Some(ArbiterInput::LeaseFailed { at, error })
            }
            ArbiterRequest::Revoke { .. } => None,
            ArbiterRequest::Acquire { group, seq, .. }
            | ArbiterRequest::Verify { group, seq, .. }
            | ArbiterRequest::Release { group, seq, .. } => Some(ArbiterInput::Key {
                group,
                seq,
                outcome: KeyOutcome::Failed { error },
            }),
        }
    }
}

/// What etcd answered about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The key is under our lease; `epoch` is its `create_revision`.
    Held {
        /// `create_revision`.
        epoch: i64,
    },
    /// The key is under another lease.
    Taken {
        /// The key's value: the holder's node name.
        holder: String,
        /// Its `create_revision`.
        epoch: i64,
    },
    /// The key is not ours (any more): deleted, or it was someone else's.
    Released,
    /// Answer to [`ArbiterRequest::Verify`]: the key held here is gone, was created again
    /// (another `create_revision`) or is no longer under our lease (overwritten).
    Lost {
        /// What etcd has under the key now, if anything: (value, `create_revision`).
        now: Option<(String, i64)>,
    },
    /// The request failed or timed out.
    Failed {
        /// The driver's error text.
        error: String,
    },
}

/// A result from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArbiterInput {
    /// A [`ArbiterRequest::Grant`] asked at `at` succeeded.
    Granted {
        /// The request's `at`.
        at: Timestamp,
        /// The lease id.
        lease: i64,
        /// The TTL etcd granted.
        ttl: Duration,
    },
    /// A [`ArbiterRequest::KeepAlive`] asked at `at` was answered: the lease has `ttl` to live
    /// (zero: etcd says it is gone).
    Renewed {
        /// The request's `at`.
        at: Timestamp,
        /// The lease id.
        lease: i64,
        /// The TTL etcd reported.
        ttl: Duration,
    },
    /// A grant or renewal asked at `at` failed or timed out.
    LeaseFailed {
        /// The request's `at`.
        at: Timestamp,
        /// The driver's error text.
        error: String,
    },
    /// A key request was answered.
    Key {
        /// Group index.
        group: usize,
        /// The request's `seq`.
        seq: u64,
        /// The answer.
        outcome: KeyOutcome,
    },
}

/// What the gate reports, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArbiterEvent {
    /// A lease was granted.
    LeaseGranted {
        /// The lease id.
        lease: i64,
        /// Its TTL.
        ttl: Duration,
    },
    /// A grant or renewal failed after the last one succeeded (logged once until one succeeds).
    Unreachable {
        /// The driver's error text.
        error: String,
    },
    /// A grant or renewal succeeded again after failures.
    Reachable,
    /// The lease was not renewed in time: every group here is stopped.
    LeaseLapsed {
        /// The lease id.
        lease: i64,
        /// Groups this node was holding or starting.
        groups: usize,
    },
    /// etcd reported the lease gone (expired or revoked).
    LeaseGone {
        /// The lease id.
        lease: i64,
    },
    /// The key of a group is ours: the group may start.
    KeyHeld {
        /// Group index.
        group: usize,
        /// The key's `create_revision`.
        epoch: i64,
    },
    /// The key of a group is another node's: the group does not start here (logged when the
    /// holder or epoch changes).
    KeyTaken {
        /// Group index.
        group: usize,
        /// The holder's node name.
        holder: String,
        /// The key's `create_revision`.
        epoch: i64,
    },
    /// The key of a group was given back.
    KeyReleased {
        /// Group index.
        group: usize,
    },
    /// The key of a group held here was deleted or replaced behind our back (by hand): the
    /// group is stopped here.
    KeyLost {
        /// Group index.
        group: usize,
        /// The key.
        key: String,
        /// The epoch held here.
        epoch: i64,
        /// What etcd has under the key now: (value, `create_revision`).
        now: Option<(String, i64)>,
    },
}

impl ArbiterEvent {
    /// Worth an operator's attention.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            ArbiterEvent::Unreachable { .. }
                | ArbiterEvent::LeaseGone { .. }
                | ArbiterEvent::KeyTaken { .. }
        )
    }

    /// Something failed that stops groups.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            ArbiterEvent::LeaseLapsed { .. } | ArbiterEvent::KeyLost { .. }
        )
    }

    /// Snake-case kind (the journal's `EVENT` field).
    pub fn kind(&self) -> &'static str {
        match self {
            ArbiterEvent::LeaseGranted { .. } => "arbiter_lease_granted",
            ArbiterEvent::Unreachable { .. } => "arbiter_unreachable",
            ArbiterEvent::Reachable => "arbiter_reachable",
            ArbiterEvent::LeaseLapsed { .. } => "arbiter_lease_lapsed",
            ArbiterEvent::LeaseGone { .. } => "arbiter_lease_gone",
            ArbiterEvent::KeyHeld { .. } => "arbiter_key_held",
            ArbiterEvent::KeyTaken { .. } => "arbiter_key_taken",
            ArbiterEvent::KeyReleased { .. } => "arbiter_key_released",
            ArbiterEvent::KeyLost { .. } => "arbiter_key_lost",
        }
    }

    /// The group it is about.
    pub fn group(&self) -> Option<usize> {
        match self {
            ArbiterEvent::KeyHeld { group, .. }
            | ArbiterEvent::KeyTaken { group, .. }
            | ArbiterEvent::KeyReleased { group }
            | ArbiterEvent::KeyLost { group, .. } => Some(*group),
            _ => None,
        }
    }
}

impl std::fmt::Display for ArbiterEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArbiterEvent::LeaseGranted { lease, ttl } => write!(
                f,
                "arbiter: lease {lease:x} granted (TTL {} s)",
                ttl.as_secs()
            ),
            ArbiterEvent::Unreachable { error } => write!(
                f,
                "arbiter: etcd unreachable ({error}); no group is started here until it answers"
            ),
            ArbiterEvent::Reachable => write!(f, "arbiter: etcd reachable again"),
            ArbiterEvent::LeaseLapsed { lease, groups } => write!(
                f,
                "arbiter: lease {lease:x} not renewed in time; stopping {groups} group(s) before \
                 etcd can give them to another node"
            ),
            ArbiterEvent::LeaseGone { lease } => {
                write!(f, "arbiter: etcd reports lease {lease:x} gone")
            }
            ArbiterEvent::KeyHeld { group, epoch } => {
                write!(f, "arbiter: group {group} held here, epoch {epoch}")
            }
            ArbiterEvent::KeyTaken {
                group,
                holder,
                epoch,
            } => write!(
                f,
                "arbiter: group {group} is held by {holder} (epoch {epoch}); not starting it here"
            ),
            ArbiterEvent::KeyReleased { group } => {
                write!(f, "arbiter: group {group} given back")
            }
            ArbiterEvent::KeyLost {
                group,
                key,
                epoch,
                now,
            } => {
                write!(
                    f,
                    "arbiter: group {group} key {key} lost (deleted or replaced); stopping it \
                     (held here at epoch {epoch}; "
                )?;
                match now {
                    Some((value, rev)) => write!(f, "etcd now has '{value}', epoch {rev})"),
                    None => write!(f, "etcd now has no such key)"),
                }
            }
        }
    }
}

/// One group's key as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Not ours (never asked, given back, lost with a lease, or held by another node).
    Free,
    /// An acquire is out.
    Acquiring,
    /// Ours under the current lease, with its epoch.
    Held {
        /// `create_revision`.
        epoch: i64,
    },
    /// A release is out.
    Releasing,
    /// A release failed: the key may still be ours. Not usable to start the group; asked for
    /// (an acquire tells) or given back again.
    Stale,
}

#[derive(Debug, Clone)]
struct Key {
    /// The etcd key (for logs).
    name: String,
    state: KeyState,
    /// The request out (its seq), if any.
    pending: Option<u64>,
    /// When it was sent.
    sent: Option<Timestamp>,
    /// Not before this time may an acquire be sent again (after Taken or Failed).
    next_try: Option<Timestamp>,
    /// The other holder last seen (holder, epoch).
    taken_by: Option<(String, i64)>,
    /// The last epoch held here.
    last_epoch: Option<i64>,
}

impl Key {
    /// A request `seq` goes out at `now`, the key entering `state`.
    fn ask(&mut self, state: KeyState, seq: u64, now: Timestamp) {
        self.state = state;
        self.pending = Some(seq);
        self.sent = Some(now);
        self.next_try = None;
    }
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    ttl: Duration,
    valid_until: Timestamp,
}

/// Status of the gate, for `hbctl status`, hbstat and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterStatus {
    /// The last grant or renewal succeeded.
    pub reachable: bool,
    /// The current lease (id), valid here.
    pub lease: Option<i64>,
    /// The current lease's TTL as etcd granted it.
    pub ttl: Option<Duration>,
    /// How long the lease stays valid here from now.
    pub valid_for: Option<Duration>,
    /// Per group: the key's state here.
    pub keys: Vec<KeyState>,
    /// Per group: the other node holding the key, as last seen (name, epoch).
    pub taken_by: Vec<Option<(String, i64)>>,
    /// Per group: the last epoch this node held.
    pub last_epoch: Vec<Option<i64>>,
    /// Lease lapses since start.
    pub lapses: u64,
    /// Keys found lost (deleted or replaced by hand) since start.
    pub keys_lost: u64,
}

/// The gate. See the module documentation.
#[derive(Debug, Clone)]
pub struct ArbiterGate {
    ttl: Duration,
    lease: Option<Lease>,
    /// The grant out (asked at), if any.
    grant_sent: Option<Timestamp>,
    next_renew: Option<Timestamp>,
    reachable: bool,
    /// Unreachable was reported since the last success.
    unreachable_reported: bool,
    keys: Vec<Key>,
    seq: u64,
    lapses: u64,
    keys_lost: u64,
}

impl ArbiterGate {
    /// A gate for `groups` groups and a lease TTL of `ttl`, the keys named as with the default
    /// prefix (`/hb/group/N`; only logs use the names).
    pub fn new(ttl: Duration, groups: usize) -> Self {
        Self::for_keys(ttl, (0..groups).map(|g| format!("/hb/group/{g}")).collect())
    }

    /// A gate for one group per key in `keys` (their etcd names, for logs) and a lease TTL of
    /// `ttl`.
    pub fn for_keys(ttl: Duration, keys: Vec<String>) -> Self {
        Self {
            ttl,
            lease: None,
            grant_sent: None,
            next_renew: None,
            reachable: false,
            unreachable_reported: false,
            keys: keys
                .into_iter()
                .map(|name| Key {
                    name,
                    state: KeyState::Free,
                    pending: None,
                    sent: None,
                    next_try: None,
                    taken_by: None,
                    last_epoch: None,
                })
                .collect(),
            seq: 0,
            lapses: 0,
            keys_lost: 0,
        }
    }

    /// The lease is valid here at `now`.
    pub fn lease_valid(&self, now: Timestamp) -> bool {
        self.lease.is_some_and(|l| now < l.valid_until)
    }

    /// Group `g` may be held here at `now`: its key is ours under a lease valid here.
    pub fn holds(&self, g: usize, now: Timestamp) -> bool {
        self.lease_valid(now)
            && self
                .keys
                .get(g)
                .is_some_and(|k| matches!(k.state, KeyState::Held { .. }))
    }

    /// The epoch of group `g`'s key while held here.
    pub fn epoch(&self, g: usize) -> Option<i64> {
        match self.keys.get(g)?.state {
            KeyState::Held { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// Whether the key of `g` is ours or being asked for or given back (anything but free).
    pub fn involved(&self, g: usize) -> bool {
        self.keys.get(g).is_some_and(|k| k.state != KeyState::Free)
    }

    /// The arbiter declines group `g` here for now: etcd did not answer since the last failure,
    /// or the key is held by another node (so a node that is the rightful owner by heartbeats
    /// but cannot get the key counts as settled: see `Node::joined`).
    pub fn declines(&self, g: usize) -> bool {
        (!self.reachable && self.unreachable_reported)
            || self
                .keys
                .get(g)
                .is_some_and(|k| k.state == KeyState::Free && k.taken_by.is_some())
    }

    /// The lease's time checks: a lapse (returns the lapsed lease's id; the caller stops its
    /// groups), grants and renewals due. Requests go to `out`.
    pub fn tick(
        &mut self,
        now: Timestamp,
        out: &mut Vec<ArbiterRequest>,
        events: &mut Vec<ArbiterEvent>,
        holding_groups: usize,
    ) {
        if let Some(l) = self.lease
            && now >= l.valid_until
        {
            self.lapses += 1;
            events.push(ArbiterEvent::LeaseLapsed {
                lease: l.id,
                groups: holding_groups,
            });
            out.push(ArbiterRequest::Revoke { lease: l.id });
            self.drop_lease();
        }
        let interval = renew_interval(self.ttl);
        for k in &mut self.keys {
            if k.next_try.is_some_and(|t| now >= t) {
                k.next_try = None;
            }
            if k.sent.is_some_and(|s| now >= s + interval) {
                // No answer in time: the request is given up (its answer, if it comes, is
                // stale); the node asks again if it still wants to.
                k.pending = None;
                k.sent = None;
                k.state = match k.state {
                    KeyState::Acquiring | KeyState::Releasing => KeyState::Stale,
                    ref s => s.clone(),
                };
            }
        }
        match self.lease {
            Some(l) => {
                if self.next_renew.is_none_or(|t| now >= t) {
                    out.push(ArbiterRequest::KeepAlive {
                        lease: l.id,
                        at: now,
                    });
                    self.next_renew = Some(now + interval);
                    // The keepalive does not look at keys: check every key held here too.
                    for (group, k) in self.keys.iter_mut().enumerate() {
                        let KeyState::Held { epoch } = k.state else {
                            continue;
                        };
                        if k.pending.is_some() {
                            continue;
                        }
                        self.seq += 1;
                        k.pending = Some(self.seq);
                        k.sent = Some(now);
                        out.push(ArbiterRequest::Verify {
                            group,
                            lease: l.id,
                            epoch,
                            seq: self.seq,
                        });
                    }
                }
            }
            None => {
                if self.grant_sent.is_none_or(|t| now >= t + interval) {
                    out.push(ArbiterRequest::Grant {
                        ttl: self.ttl,
                        at: now,
                    });
                    self.grant_sent = Some(now);
                }
            }
        }
    }

    fn drop_lease(&mut self) {
        self.lease = None;
        self.next_renew = None;
        self.grant_sent = None;
        for k in &mut self.keys {
            // Keys go with the lease; answers to requests out under it are stale.
            k.state = KeyState::Free;
            k.pending = None;
            k.sent = None;
            k.next_try = None;
        }
    }

    /// The next time [`ArbiterGate::tick`] has something to do.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        let interval = renew_interval(self.ttl);
        let mut t = match self.lease {
            Some(l) => self
                .next_renew
                .map_or(l.valid_until, |r| r.min(l.valid_until)),
            None => self.grant_sent.map_or(Timestamp::ZERO, |s| s + interval),
        };
        for k in &self.keys {
            if let Some(n) = k.next_try {
                t = t.min(n);
            }
            if let Some(s) = k.sent {
                t = t.min(s + interval);
            }
        }
        Some(t)
    }

    /// The node wants to start group `g` (heartbeats allow it): asks for the key when it is
    /// free, the lease is valid and no retry wait is running.
    pub fn want(&mut self, g: usize, now: Timestamp, out: &mut Vec<ArbiterRequest>) {
        let Some(lease) = self.lease.filter(|l| now < l.valid_until) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        let Some(k) = self.keys.get_mut(g) else {
            return;
        };
        let ready = match k.state {
            KeyState::Free => k.next_try.is_none_or(|t| now >= t),
            KeyState::Stale => true,
            KeyState::Acquiring | KeyState::Held { .. } | KeyState::Releasing => false,
        };
        if ready {
            k.ask(KeyState::Acquiring, seq, now);
            out.push(ArbiterRequest::Acquire {
                group: g,
                lease: lease.id,
                seq,
            });
        }
    }

    /// The node no longer needs group `g`'s key (its resources are stopped and it is not the
    /// rightful owner): gives it back.
    pub fn release(&mut self, g: usize, now: Timestamp, out: &mut Vec<ArbiterRequest>) {
        let Some(lease) = self.lease else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        let Some(k) = self.keys.get_mut(g) else {
            return;
        };
        let ready = match k.state {
            KeyState::Held { .. } | KeyState::Acquiring | KeyState::Stale => true,
            KeyState::Releasing | KeyState::Free => false,
        };
        if ready {
            k.ask(KeyState::Releasing, seq, now);
            out.push(ArbiterRequest::Release {
                group: g,
                lease: lease.id,
                seq,
            });
        }
    }

    /// A result from the driver. Returns `true` when something changed that the node must
    /// reconcile on.
    pub fn input(
        &mut self,
        now: Timestamp,
        input: ArbiterInput,
        out: &mut Vec<ArbiterRequest>,
        events: &mut Vec<ArbiterEvent>,
    ) -> bool {
        match input {
            ArbiterInput::Granted { at, lease, ttl } => {
                self.grant_sent = None;
                self.success(events);
                if self.lease.is_some() || at > now {
                    // A second grant answer (we asked twice): not the lease we use.
                    out.push(ArbiterRequest::Revoke { lease });
                    return false;
                }
                let valid_until = at + ttl.saturating_sub(margin(ttl));
                if now >= valid_until {
                    // Too late to be of use.
                    out.push(ArbiterRequest::Revoke { lease });
                    return false;
                }
                self.lease = Some(Lease {
                    id: lease,
                    ttl,
                    valid_until,
                });
                self.next_renew = Some(at + renew_interval(ttl));
                events.push(ArbiterEvent::LeaseGranted { lease, ttl });
                true
            }
            ArbiterInput::Renewed { at, lease, ttl } => {
                if self.lease.is_none_or(|l| l.id != lease) {
                    return false;
                }
                self.success(events);
                if ttl.is_zero() {
                    events.push(ArbiterEvent::LeaseGone { lease });
                    self.drop_lease();
                    return true;
                }
                if let Some(l) = self.lease.as_mut()
                    && at <= now
                {
                    let until = at + ttl.saturating_sub(margin(ttl));
                    l.valid_until = l.valid_until.max(until);
                }
                false
            }
            ArbiterInput::LeaseFailed { error, .. } => {
                // A failed grant is retried a renewal interval after it was asked (never at
                // once: a driver that fails requests immediately must not spin the node).
                self.reachable = false;
                if !self.unreachable_reported {
                    self.unreachable_reported = true;
                    events.push(ArbiterEvent::Unreachable { error });
                }
                false
            }
            ArbiterInput::Key {
                group,
                seq,
                outcome,
            } => {
                let retry = acquire_retry(self.ttl);
                let valid = self.lease_valid(now);
                let Some(k) = self.keys.get_mut(group).filter(|k| k.pending == Some(seq)) else {
                    return false;
                };
                k.pending = None;
                k.sent = None;
                match (k.state.clone(), outcome) {
                    // A check of a key held here: still ours, or no answer (the lease's
                    // deadline still governs): nothing changes.
                    (KeyState::Held { epoch: held }, KeyOutcome::Held { epoch })
                        if held == epoch =>
                    {
                        return false;
                    }
                    (KeyState::Held { .. }, KeyOutcome::Failed { .. }) => return false,
                    (KeyState::Held { epoch }, outcome) => {
                        // Lost (or an answer that contradicts what we hold): not ours. The
                        // node stops the group; it asks for the key again (`want`) only once
                        // the group is stopped.
                        let now_has = match outcome {
                            KeyOutcome::Lost { now } => now,
                            KeyOutcome::Taken { holder, epoch } => Some((holder, epoch)),
                            KeyOutcome::Held { epoch } => Some(("this lease".to_owned(), epoch)),
                            KeyOutcome::Released | KeyOutcome::Failed { .. } => None,
                        };
                        k.state = KeyState::Free;
                        self.keys_lost += 1;
                        events.push(ArbiterEvent::KeyLost {
                            group,
                            key: k.name.clone(),
                            epoch,
                            now: now_has,
                        });
                    }
                    (KeyState::Acquiring, KeyOutcome::Held { epoch }) if valid => {
                        k.state = KeyState::Held { epoch };
                        k.taken_by = None;
                        k.last_epoch = Some(epoch);
                        events.push(ArbiterEvent::KeyHeld { group, epoch });
                    }
                    (KeyState::Acquiring, KeyOutcome::Taken { holder, epoch }) => {
                        k.state = KeyState::Free;
                        k.next_try = Some(now + retry);
                        let seen = Some((holder.clone(), epoch));
                        if k.taken_by != seen {
                            k.taken_by = seen;
                            events.push(ArbiterEvent::KeyTaken {
                                group,
                                holder,
                                epoch,
                            });
                        }
                    }
                    (KeyState::Releasing, KeyOutcome::Released) => {
                        k.state = KeyState::Free;
                        events.push(ArbiterEvent::KeyReleased { group });
                    }
                    (KeyState::Releasing, _) => {
                        // Maybe still ours: the node gives it back again (or asks for it).
                        k.state = KeyState::Stale;
                    }
                    _ => {
                        // Failed, or an answer that no longer fits: free, try again later.
                        k.state = KeyState::Free;
                        k.next_try = Some(now + retry);
                    }
                }
                true
            }
        }
    }

    /// A clean stop is complete: the lease is given up (its keys go with it on etcd).
    pub fn shut_down(&mut self, out: &mut Vec<ArbiterRequest>) {
        if let Some(l) = self.lease {
            out.push(ArbiterRequest::Revoke { lease: l.id });
        }
        self.drop_lease();
    }

    fn success(&mut self, events: &mut Vec<ArbiterEvent>) {
        if !self.reachable && self.unreachable_reported {
            events.push(ArbiterEvent::Reachable);
        }
        self.reachable = true;
        self.unreachable_reported = false;
    }

    /// The gate's state at `now`.
    pub fn status(&self, now: Timestamp) -> ArbiterStatus {
        let valid = self.lease.filter(|l| now < l.valid_until);
        ArbiterStatus {
            reachable: self.reachable,
            lease: valid.map(|l| l.id),
            ttl: valid.map(|l| l.ttl),
            valid_for: valid.map(|l| l.valid_until.saturating_since(now)),
            keys: self.keys.iter().map(|k| k.state.clone()).collect(),
            taken_by: self.keys.iter().map(|k| k.taken_by.clone()).collect(),
            last_epoch: self.keys.iter().map(|k| k.last_epoch).collect(),
            lapses: self.lapses,
            keys_lost: self.keys_lost,
        }
    }
}
