//! hbd and its service manager: the sd_notify(3) protocol (through the `sd-notify` crate).
//!
//! Under systemd (`hb.service` is `Type=notify`, `NotifyAccess=main`) the driver reports:
//! - `READY=1` once the node has joined: the links are judged (every peer heard, or `initdead`
//!   passed) and the initial resource groups are acquired or declined
//!   ([`hb_proto::node::Event::Joined`]);
//! - `RELOADING=1` (with `MONOTONIC_USEC=`) when a SIGHUP reload begins, `READY=1` when it ends;
//! - `STOPPING=1` when a clean stop begins;
//! - `STATUS=` a one-line summary: the owner of each group and the peers up ([`status_line`]),
//!   and with an arbiter whether it is reachable ([`arbiter_part`]);
//! - `WATCHDOG=1` from the heartbeat loop itself, every half of `WATCHDOG_USEC` (systemd's
//!   `WatchdogSec=`), so a hung or starved loop stops feeding it and systemd restarts hbd; until
//!   joined, with `EXTEND_TIMEOUT_USEC=` so a long `initdead` does not time the start out.
//!
//! Without `NOTIFY_SOCKET` (not started by a service manager) every call does nothing. A failed
//! send is logged once as a warning: it never stops hbd.

use std::time::Duration;

use hb_proto::{
    Timestamp,
    message::Holding,
    node::{ClusterStatus, PeerState},
};
use sd_notify::NotifyState;

/// The sd_notify side of the driver (see the module documentation).
#[derive(Debug, Default)]
pub struct Notifier {
    enabled: bool,
    watchdog_every: Option<Duration>,
    next_watchdog: Option<Timestamp>,
    status: String,
    warned: bool,
}

impl Notifier {
    /// From the environment the service manager set: `NOTIFY_SOCKET`, `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`, which must be ours when set). `now` starts the watchdog cadence.
    pub fn from_env(now: Timestamp) -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog_every = if enabled {
            sd_notify::watchdog_enabled().map(|usec| usec / 2)
        } else {
            None
        };
        if let Some(every) = watchdog_every {
            tracing::info!(
                "hb: systemd watchdog on: WATCHDOG=1 every {} ms from the heartbeat loop",
                every.as_millis()
            );
        }
        Self {
            enabled,
            watchdog_every,
            next_watchdog: watchdog_every.map(|_| now),
            status: String::new(),
            warned: false,
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            if self.warned {
                tracing::debug!("sd_notify: {e}");
            } else {
                self.warned = true;
                tracing::warn!("sd_notify: cannot notify the service manager: {e}");
            }
        }
    }

    /// `READY=1`: joined (at start) or a reload finished.
    pub fn ready(&mut self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (as systemd 253's `Type=notify-reload` wants):
    /// a reload began. Follow it with [`Notifier::ready`].
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(mono) => self.send(&[NotifyState::Reloading, mono]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: a clean stop began.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `STATUS=line`, sent only when it changed.
    pub fn status(&mut self, line: &str) {
        if !self.enabled || self.status == line {
            return;
        }
        self.status = line.to_owned();
        self.send(&[NotifyState::Status(line)]);
    }

    /// The watchdog cadence (half of `WATCHDOG_USEC`), when systemd asked for one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    /// When the loop must wake up next to feed the watchdog.
    pub fn next_watchdog(&self) -> Option<Timestamp> {
        self.next_watchdog
    }

    /// The earlier of `deadline` (the core's next timeout) and the next watchdog time.
    pub fn earliest(&self, deadline: Option<Timestamp>) -> Option<Timestamp> {
        match (deadline, self.next_watchdog) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends `WATCHDOG=1` when it is due at `now`; called on every turn of the heartbeat loop.
    /// Until the node has `joined`, each tick also extends systemd's start timeout
    /// (`EXTEND_TIMEOUT_USEC=`, three ticks from now): joining may take `initdead` and the
    /// initial resource starts, and only a loop that stopped turning should time the start out.
    pub fn watchdog(&mut self, now: Timestamp, joined: bool) {
        let (Some(every), Some(next)) = (self.watchdog_every, self.next_watchdog) else {
            return;
        };
        if now < next {
            return;
        }
        self.next_watchdog = Some(now + every);
        if joined {
            self.send(&[NotifyState::Watchdog]);
        } else {
            let extend = u32::try_from((every * 3).as_micros()).unwrap_or(u32::MAX);
            self.send(&[
                NotifyState::Watchdog,
                NotifyState::ExtendTimeoutUsec(extend),
            ]);
        }
    }
}

/// The one-line `STATUS=`: each group's first resource and its owner (the rightful owner in the
/// local view; `starting`/`stopping` while this node moves it), then the peers up, and what
/// holds groups back (peers waiting for a fence, peers whose `haresources` differ).
///
/// ```text
/// IPaddr::10.0.0.100 on n1, IPaddr::10.0.0.101 on nobody; peers up: n2 (1 of 1)
/// ```
pub fn status_line(s: &ClusterStatus) -> String {
    let mut groups = Vec::with_capacity(s.groups.len());
    for g in &s.groups {
        let what = g
            .line
            .split_whitespace()
            .nth(1)
            .map_or_else(|| format!("group {}", g.index), str::to_owned);
        let owner = match g.local {
            Holding::Starting => format!("{} (starting)", s.local),
            Holding::Stopping => format!("{} (stopping)", s.local),
            _ => g.owner.clone().unwrap_or_else(|| "nobody".to_owned()),
        };
        groups.push(format!("{what} on {owner}"));
    }
    let peers: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| !n.local)
        .map(|n| n.name.as_str())
        .collect();
    let up: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| !n.local && n.state == PeerState::Up)
        .map(|n| n.name.as_str())
        .collect();
    let peers_part = if up.is_empty() {
        format!("peers up: none (0 of {})", peers.len())
    } else {
        format!(
            "peers up: {} ({} of {})",
            up.join(" "),
            up.len(),
            peers.len()
        )
    };
    let mut line = if groups.is_empty() {
        peers_part
    } else {
        format!("{}; {peers_part}", groups.join(", "))
    };
    if !s.fence_pending.is_empty() {
        line += &format!("; waiting to fence: {}", s.fence_pending.join(" "));
    }
    if !s.haresources_mismatch.is_empty() {
        line += &format!(
            "; haresources differ on: {}",
            s.haresources_mismatch.join(" ")
        );
    }
    line
}

/// The arbiter's part of `STATUS=` (with `arbiter etcd` configured): whether etcd answered the
/// last lease request and whether this node holds a lease valid here, e.g.
/// `; arbiter: reachable, lease held` or `; arbiter: unreachable (nothing is taken over)`.
pub fn arbiter_part(a: &hb_proto::arbiter::ArbiterStatus) -> String {
    match (a.reachable, a.lease.is_some()) {
        (true, true) => "; arbiter: reachable, lease held".to_owned(),
        (true, false) => "; arbiter: reachable, no lease yet".to_owned(),
        (false, true) => "; arbiter: unreachable, lease still valid here".to_owned(),
        (false, false) => "; arbiter: unreachable (nothing is taken over)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hb_proto::{
        message::NodeStatus,
        node::{Counters, GroupView, NodeView},
    };

    fn node(name: &str, local: bool, state: PeerState) -> NodeView {
        NodeView {
            name: name.into(),
            id: 0,
            local,
            state,
            generation: None,
            status: None,
            last_arrival: None,
            links: Vec::new(),
            ping: None,
        }
    }

    fn group(index: usize, line: &str, owner: Option<&str>, local: Holding) -> GroupView {
        GroupView {
            index,
            line: line.into(),
            preferred: line.split_whitespace().next().unwrap_or("").into(),
            owner: owner.map(str::to_owned),
            holders: Vec::new(),
            local,
            failed: false,
            standby: false,
            wants: false,
            stop_failures: 0,
        }
    }

    fn status(nodes: Vec<NodeView>, groups: Vec<GroupView>) -> ClusterStatus {
        ClusterStatus {
            local: "n1".into(),
            generation: 1,
            status: NodeStatus::Active,
            stopped: false,
            nodes,
            groups,
            counters: Counters::default(),
            haresources_mismatch: Vec::new(),
            fence_pending: Vec::new(),
            ping: hb_proto::ping::PingView {
                nodes: Vec::new(),
                reachable: 0,
                configured: 0,
                ipfail: false,
                comparison: hb_proto::ping::Comparison::Unknown,
                yielding: false,
                settle: std::time::Duration::ZERO,
            },
            takeover_held: None,
        }
    }

    #[test]
    fn arbiter_part_says_reachability_and_lease() {
        let mut a = hb_proto::arbiter::ArbiterStatus {
            reachable: true,
            lease: Some(7),
            ttl: Some(std::time::Duration::from_secs(2)),
            valid_for: Some(std::time::Duration::from_secs(1)),
            keys: Vec::new(),
            taken_by: Vec::new(),
            last_epoch: Vec::new(),
            lapses: 0,
            keys_lost: 0,
        };
        assert_eq!(arbiter_part(&a), "; arbiter: reachable, lease held");
        a.reachable = false;
        assert_eq!(
            arbiter_part(&a),
            "; arbiter: unreachable, lease still valid here"
        );
        a.lease = None;
        assert_eq!(
            arbiter_part(&a),
            "; arbiter: unreachable (nothing is taken over)"
        );
        a.reachable = true;
        assert_eq!(arbiter_part(&a), "; arbiter: reachable, no lease yet");
    }

    #[test]
    fn status_line_names_owners_and_peers_up() {
        let s = status(
            vec![
                node("n1", true, PeerState::Up),
                node("n2", false, PeerState::Up),
                node("n3", false, PeerState::Dead),
            ],
            vec![
                group(0, "n1 IPaddr::10.0.0.100 httpd", Some("n1"), Holding::Held),
                group(1, "n2 IPaddr::10.0.0.101", None, Holding::None),
                group(2, "n2 IPaddr::10.0.0.102", Some("n2"), Holding::Stopping),
                group(3, "n1", Some("n1"), Holding::Starting),
            ],
        );
        assert_eq!(
            status_line(&s),
            "IPaddr::10.0.0.100 on n1, IPaddr::10.0.0.101 on nobody, \
             IPaddr::10.0.0.102 on n1 (stopping), group 3 on n1 (starting); peers up: n2 (1 of 2)"
        );
        let mut fenced = status(
            vec![
                node("n1", true, PeerState::Up),
                node("n2", false, PeerState::Dead),
            ],
            vec![],
        );
        fenced.fence_pending = vec!["n2".into()];
        fenced.haresources_mismatch = vec!["n3".into()];
        assert_eq!(
            status_line(&fenced),
            "peers up: none (0 of 1); waiting to fence: n2; haresources differ on: n3"
        );
        let alone = status(
            vec![
                node("n1", true, PeerState::Up),
                node("n2", false, PeerState::Unknown),
            ],
            vec![],
        );
        assert_eq!(status_line(&alone), "peers up: none (0 of 1)");
    }

    #[test]
    fn watchdog_cadence_and_earliest_deadline() {
        let t0 = Timestamp::from_nanos(1_000_000_000);
        let mut n = Notifier {
            enabled: false,
            watchdog_every: Some(Duration::from_millis(100)),
            next_watchdog: Some(t0),
            ..Notifier::default()
        };
        assert_eq!(n.earliest(Some(t0 + Duration::from_millis(5))), Some(t0));
        n.watchdog(t0 + Duration::from_millis(1), true);
        let next = t0 + Duration::from_millis(101);
        assert_eq!(n.next_watchdog(), Some(next));
        // Not due yet: unchanged.
        n.watchdog(t0 + Duration::from_millis(50), true);
        assert_eq!(n.next_watchdog(), Some(next));
        assert_eq!(
            n.earliest(Some(t0 + Duration::from_millis(5))),
            Some(t0 + Duration::from_millis(5))
        );
        assert_eq!(n.earliest(None), Some(next));
        let off = Notifier::default();
        assert_eq!(off.earliest(None), None);
        assert_eq!(off.watchdog_interval(), None);
    }
}
