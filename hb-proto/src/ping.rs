//! Ping nodes and the built-in ipfail, sans-IO.
//!
//! [`PingMonitor`] judges `ping` / `ping_group` nodes on the kernel arrival times of ICMP echo
//! replies the driver reports, decides when the next echo requests are due, and runs ipfail's
//! rule on this node's count of reachable ping nodes against the counts its peers announce in
//! their heartbeats. The node state machine ([`crate::node::Node`]) owns one and reads three
//! things from it: whether this node is *yielding* (ipfail gave its groups up: it is a
//! candidate for a group only when no other node is, like a node in standby), whether it is
//! *isolated* (ping nodes configured, none reachable) and whether it has seen a ping node answer
//! a request sent after a given moment ([`PingMonitor::answered_since`], the evidence a takeover
//! from a peer declared dead waits for).
//!
//! # Liveness
//! Each address (a `ping` line, or one member of a `ping_group`) is a *link*. A link is up from
//! the arrival of a reply until `deadping` passes without another; a link never answered is
//! dead `deadping` after start. A ping node is up while any of its links is up (a `ping_group`
//! is one ping node). Deaths are decided only in [`PingMonitor::handle_timeout`], on arrival
//! times, like heartbeats.
//!
//! # ipfail
//! With ipfail on, this node compares its count of reachable ping nodes with the highest count
//! among live peers that announce one. When it has fewer and that stays so for `settle`
//! (`ipfail_settle`), it gives up (yields); when the counts are balanced again (or it has more)
//! and that stays so for `settle`, it stops yielding. A comparison that flips back within
//! `settle` changes nothing, so a flapping ping node does not move groups back and forth. The
//! yield flag travels in this node's heartbeats, so every node's ownership rule reads the same
//! value.

use std::{fmt, net::IpAddr, time::Duration};

use crate::{Timestamp, config::HaCf, message::PingCounts};

/// Timing and switches of the ping-node monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSettings {
    /// Time between echo requests to each address (`ping_interval`, default `keepalive`).
    pub interval: Duration,
    /// Silence after which an address is dead (`deadping`, default `deadtime`).
    pub deadping: Duration,
    /// How long a count comparison must hold before ipfail acts (`ipfail_settle`).
    pub settle: Duration,
    /// The built-in ipfail is on.
    pub ipfail: bool,
}

impl PingSettings {
    /// The settings `ha.cf` gives.
    pub fn from_ha_cf(ha: &HaCf) -> Self {
        Self {
            interval: ha.effective_ping_interval(),
            deadping: ha.effective_deadping(),
            settle: ha.effective_ipfail_settle(),
            ipfail: ha.ipfail_enabled(),
        }
    }
}

/// One ping node: a `ping` address (named by the address) or a `ping_group` (named by the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingTarget {
    /// Name in logs and status: the address of a `ping` line, the name of a `ping_group`.
    pub name: String,
    /// Addresses pinged.
    pub addrs: Vec<IpAddr>,
    /// `true` for a `ping_group`.
    pub group: bool,
}

/// The ping nodes of `ha.cf`: `ping` lines (each address its own node) then `ping_group`s.
pub fn ping_targets(ha: &HaCf) -> Vec<PingTarget> {
    ha.ping
        .iter()
        .map(|a| PingTarget {
            name: a.to_string(),
            addrs: vec![*a],
            group: false,
        })
        .chain(ha.ping_groups.iter().map(|g| PingTarget {
            name: g.name.clone(),
            addrs: g.hosts.clone(),
            group: true,
        }))
        .collect()
}

/// Liveness of a ping node or of one of its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingState {
    /// No reply yet, within `deadping` of start.
    Unknown,
    /// A reply arrived within `deadping`.
    Up,
    /// No reply for `deadping`.
    Dead,
}

impl PingState {
    /// `unknown`, `up`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            PingState::Unknown => "unknown",
            PingState::Up => "up",
            PingState::Dead => "dead",
        }
    }
}

/// How this node's count compares with its live peers' (ipfail's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// No live peer announces a count (or ipfail is off).
    Unknown,
    /// This node reaches fewer ping nodes than some live peer.
    Fewer,
    /// As many as the best live peer.
    Balanced,
    /// More than every live peer.
    More,
}

impl Comparison {
    /// `unknown`, `fewer`, `balanced`, `more`.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Unknown => "unknown",
            Comparison::Fewer => "fewer",
            Comparison::Balanced => "balanced",
            Comparison::More => "more",
        }
    }
}

/// What the monitor saw or decided, for the log. The `Display` form is Heartbeat's or
/// ipfail's line where they have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingEvent {
    /// A reply arrived on an address that was not up. `Link 10.0.0.254:10.0.0.254 up.`
    LinkUp {
        /// Ping node name.
        node: String,
        /// The address.
        addr: IpAddr,
    },
    /// No reply on an up address for `deadping`. `Link 10.0.0.254:10.0.0.254 dead.`
    LinkDead {
        /// Ping node name.
        node: String,
        /// The address.
        addr: IpAddr,
    },
    /// A ping node became reachable. `Status update for node 10.0.0.254: status ping`
    NodeUp {
        /// Ping node name.
        node: String,
    },
    /// No address of the ping node answered for `deadping`. `node 10.0.0.254: is dead`
    NodeDead {
        /// Ping node name.
        node: String,
    },
    /// This node's count of reachable ping nodes changed (ipfail on). ipfail asks its partner
    /// at this point; in hb the counts travel in every heartbeat.
    /// `Asking other side for ping node count.`
    Asking {
        /// The new count.
        reachable: u8,
    },
    /// Fewer than a peer; giving up once that holds for `settle`. `Delayed giveup in N seconds.`
    DelayedGiveup {
        /// The settle delay.
        settle: Duration,
    },
    /// Fewer than a peer for `settle`: this node yields its groups.
    /// `Giving up because we have less visible ping nodes.`
    GivingUp {
        /// This node's count.
        ours: u8,
        /// The best live peer's count.
        theirs: u8,
    },
    /// As many as the best live peer. `Ping node count is balanced.`
    Balanced,
    /// More than every live peer (ipfail on). `We have more visible ping nodes than the other side.`
    More,
    /// No longer fewer for `settle`: this node stops yielding and takes part in ownership again.
    Resumed,
}

fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        s.trim_end_matches('0').to_owned()
    }
}

impl fmt::Display for PingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingEvent::LinkUp { node, addr } => write!(f, "Link {node}:{addr} up."),
            PingEvent::LinkDead { node, addr } => write!(f, "Link {node}:{addr} dead."),
            PingEvent::NodeUp { node } => write!(f, "Status update for node {node}: status ping"),
            PingEvent::NodeDead { node } => write!(f, "node {node}: is dead"),
            PingEvent::Asking { .. } => write!(f, "Asking other side for ping node count."),
            PingEvent::DelayedGiveup { settle } => {
                write!(f, "Delayed giveup in {} seconds.", secs(*settle))
            }
            PingEvent::GivingUp { .. } => {
                write!(f, "Giving up because we have less visible ping nodes.")
            }
            PingEvent::Balanced => write!(f, "Ping node count is balanced."),
            PingEvent::More => write!(f, "We have more visible ping nodes than the other side."),
            PingEvent::Resumed => write!(
                f,
                "hb: ping node count no longer below a peer's: taking part in group ownership again"
            ),
        }
    }
}

impl PingEvent {
    /// A stable snake_case name (the journal's event field).
    pub fn kind(&self) -> &'static str {
        match self {
            PingEvent::LinkUp { .. } => "ping_link_up",
            PingEvent::LinkDead { .. } => "ping_link_dead",
            PingEvent::NodeUp { .. } => "ping_node_up",
            PingEvent::NodeDead { .. } => "ping_node_dead",
            PingEvent::Asking { .. } => "ipfail_asking",
            PingEvent::DelayedGiveup { .. } => "ipfail_delayed_giveup",
            PingEvent::GivingUp { .. } => "ipfail_giving_up",
            PingEvent::Balanced => "ipfail_balanced",
            PingEvent::More => "ipfail_more",
            PingEvent::Resumed => "ipfail_resumed",
        }
    }

    /// The ping node the event is about, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            PingEvent::LinkUp { node, .. }
            | PingEvent::LinkDead { node, .. }
            | PingEvent::NodeUp { node }
            | PingEvent::NodeDead { node } => Some(node),
            _ => None,
        }
    }

    /// Whether the event is worth a warning (a ping node lost, giving up).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            PingEvent::LinkDead { .. } | PingEvent::NodeDead { .. } | PingEvent::GivingUp { .. }
        )
    }
}

/// One address in a status snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingLinkView {
    /// The address.
    pub addr: IpAddr,
    /// Liveness.
    pub state: PingState,
    /// Arrival of its last reply.
    pub last_reply: Option<Timestamp>,
}

/// One ping node in a status snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingNodeView {
    /// Name (address, or `ping_group` name).
    pub name: String,
    /// `true` for a `ping_group`.
    pub group: bool,
    /// Liveness (up while any address is).
    pub state: PingState,
    /// Its addresses.
    pub links: Vec<PingLinkView>,
}

/// The monitor's state for `hbctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingView {
    /// Ping nodes, in `ha.cf` order (`ping` lines first).
    pub nodes: Vec<PingNodeView>,
    /// Reachable ping nodes.
    pub reachable: u8,
    /// Configured ping nodes.
    pub configured: u8,
    /// The built-in ipfail is on.
    pub ipfail: bool,
    /// ipfail's current comparison with the live peers.
    pub comparison: Comparison,
    /// ipfail gave this node's groups up.
    pub yielding: bool,
    /// The settle delay.
    pub settle: Duration,
}

#[derive(Debug, Clone)]
struct Link {
    node: usize,
    addr: IpAddr,
    state: PingState,
    last_reply: Option<Timestamp>,
    /// Send time of the newest request answered.
    last_answered: Option<Timestamp>,
    /// Start of its `Unknown` period (the monitor's start, or the reload that added it).
    since: Timestamp,
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    group: bool,
    state: PingState,
}

/// The ping-node monitor. See the module documentation.
#[derive(Debug, Clone)]
pub struct PingMonitor {
    settings: PingSettings,
    targets: Vec<Target>,
    links: Vec<Link>,
    next_ping: Timestamp,
    comparison: Comparison,
    since: Timestamp,
    yielding: bool,
    announced_count: Option<u8>,
    events: Vec<PingEvent>,
}

impl PingMonitor {
    /// A monitor for `targets` (see [`ping_targets`]) starting at `now`; the first requests
    /// are due at once. `ha.cf`'s parser refuses more than 255 ping nodes; more are cut here.
    pub fn new(targets: &[PingTarget], settings: PingSettings, now: Timestamp) -> Self {
        let mut m = Self {
            settings,
            targets: Vec::new(),
            links: Vec::new(),
            next_ping: now,
            comparison: Comparison::Unknown,
            since: now,
            yielding: false,
            announced_count: None,
            events: Vec::new(),
        };
        // Every address is new: unknown, dead `deadping` after `now`, pinged at once.
        m.reconfigure(targets, settings, now);
        m
    }

    /// A monitor for `ha.cf`'s ping nodes.
    pub fn from_ha_cf(ha: &HaCf, now: Timestamp) -> Self {
        Self::new(&ping_targets(ha), PingSettings::from_ha_cf(ha), now)
    }

    /// New ping nodes and settings (a configuration reload) at `now`. An address that stays
    /// keeps its liveness, its last reply and the send time of its newest answered request (a
    /// `ping` line's address or a `ping_group` member: matched by address, in the same ping node
    /// first); a new address starts `Unknown` and is dead `deadping` after `now` without a reply;
    /// a removed one stops counting. A ping node's state follows from its addresses (up while
    /// any is up, dead once all are dead, else unknown). New addresses are pinged at once. With
    /// ipfail off or no ping node left, this node stops yielding. Returns, for each previous
    /// address index, its index now (`None`: removed), so the driver can re-address the
    /// requests it has in flight.
    pub fn reconfigure(
        &mut self,
        targets: &[PingTarget],
        settings: PingSettings,
        now: Timestamp,
    ) -> Vec<Option<usize>> {
        let targets = &targets[..targets.len().min(usize::from(u8::MAX))];
        let old = std::mem::take(&mut self.links);
        let old_names: Vec<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        let mut map = vec![None; old.len()];
        let mut added = false;
        for (i, t) in targets.iter().enumerate() {
            for &addr in &t.addrs {
                let free = |j: &usize| map[*j].is_none() && old[*j].addr == addr;
                let kept = (0..old.len())
                    .filter(free)
                    .find(|&j| old_names[old[j].node] == t.name)
                    .or_else(|| (0..old.len()).find(free));
                let link = match kept {
                    Some(j) => {
                        map[j] = Some(self.links.len());
                        Link {
                            node: i,
                            ..old[j].clone()
                        }
                    }
                    None => {
                        added = true;
                        Link {
                            node: i,
                            addr,
                            state: PingState::Unknown,
                            last_reply: None,
                            last_answered: None,
                            since: now,
                        }
                    }
                };
                self.links.push(link);
            }
        }
        self.targets = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut states = self.links.iter().filter(|l| l.node == i).map(|l| l.state);
                let state = if states.clone().any(|s| s == PingState::Up) {
                    PingState::Up
                } else if states.all(|s| s == PingState::Dead) {
                    PingState::Dead
                } else {
                    PingState::Unknown
                };
                Target {
                    name: t.name.clone(),
                    group: t.group,
                    state,
                }
            })
            .collect();
        self.settings = settings;
        self.next_ping = if added {
            now
        } else {
            self.next_ping.min(now + settings.interval)
        };
        if !settings.ipfail || !self.is_configured() {
            if self.yielding {
                self.yielding = false;
                self.events.push(PingEvent::Resumed);
            }
            self.comparison = Comparison::Unknown;
            self.announced_count = None;
            self.since = now;
        }
        map
    }

    /// Settings in use.
    pub fn settings(&self) -> PingSettings {
        self.settings
    }

    /// Whether any ping node is configured.
    pub fn is_configured(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Configured ping nodes (a `ping_group` counts once).
    pub fn configured(&self) -> u8 {
        u8::try_from(self.targets.len()).unwrap_or(u8::MAX)
    }

    /// Reachable ping nodes now.
    pub fn reachable(&self) -> u8 {
        let n = self
            .targets
            .iter()
            .filter(|t| t.state == PingState::Up)
            .count();
        u8::try_from(n).unwrap_or(u8::MAX)
    }

    /// Ping nodes configured and none reachable: this node is cut off from the network the
    /// ping nodes stand for (a node still starting, with no reply yet, counts as isolated).
    pub fn isolated(&self) -> bool {
        self.is_configured() && self.reachable() == 0
    }

    /// ipfail gave this node's groups up.
    pub fn yielding(&self) -> bool {
        self.yielding
    }

    /// ipfail's current comparison.
    pub fn comparison(&self) -> Comparison {
        self.comparison
    }

    /// What this node announces in its heartbeats (`None` without ping nodes: the message then
    /// has the layout of a node without the feature).
    pub fn counts(&self) -> Option<PingCounts> {
        self.is_configured().then(|| PingCounts {
            reachable: self.reachable(),
            configured: self.configured(),
            yielding: self.yielding,
        })
    }

    /// Whether an up ping node answered a request sent at or after `t`: proof that this node
    /// still reached the network after `t`.
    pub fn answered_since(&self, t: Timestamp) -> bool {
        self.links
            .iter()
            .any(|l| l.state == PingState::Up && l.last_answered.is_some_and(|s| s >= t))
    }

    /// The address of link `link` (index into the flat list of every ping node's addresses,
    /// as [`PingMonitor::due`] hands them out).
    pub fn addr(&self, link: usize) -> Option<IpAddr> {
        self.links.get(link).map(|l| l.addr)
    }

    /// The name of the ping node link `link` belongs to.
    pub fn node_name(&self, link: usize) -> Option<&str> {
        self.links
            .get(link)
            .map(|l| self.targets[l.node].name.as_str())
    }

    /// Every address, as `(link index, address)`.
    pub fn links(&self) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
        self.links.iter().enumerate().map(|(i, l)| (i, l.addr))
    }

    /// When [`PingMonitor::handle_timeout`] must run next (`None` without ping nodes).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.is_configured() {
            return None;
        }
        let mut t = self.next_ping;
        for l in &self.links {
            match l.state {
                PingState::Up => {
                    if let Some(a) = l.last_reply {
                        t = t.min(a + self.settings.deadping);
                    }
                }
                PingState::Unknown => t = t.min(l.since + self.settings.deadping),
                PingState::Dead => {}
            }
        }
        if self.settle_pending() {
            t = t.min(self.since + self.settings.settle);
        }
        Some(t)
    }

    /// Links whose echo request is due at `now` (empty between intervals); the driver sends one
    /// request to each and reports replies with [`PingMonitor::handle_reply`].
    pub fn due(&mut self, now: Timestamp) -> Vec<usize> {
        if !self.is_configured() || now < self.next_ping {
            return Vec::new();
        }
        self.next_ping = self.next_ping + self.settings.interval;
        if self.next_ping <= now {
            self.next_ping = now + self.settings.interval;
        }
        (0..self.links.len()).collect()
    }

    /// A reply on `link` to a request sent at `sent`, arrived at `arrival` (kernel time; the
    /// driver drains replies before [`PingMonitor::handle_timeout`]). Returns whether the
    /// count of reachable ping nodes changed.
    pub fn handle_reply(
        &mut self,
        now: Timestamp,
        link: usize,
        sent: Timestamp,
        arrival: Timestamp,
    ) -> bool {
        let deadping = self.settings.deadping;
        let Some(l) = self.links.get_mut(link) else {
            return false;
        };
        let arrival = arrival.min(now);
        let sent = sent.min(arrival);
        l.last_reply = Some(l.last_reply.map_or(arrival, |a| a.max(arrival)));
        l.last_answered = Some(l.last_answered.map_or(sent, |s| s.max(sent)));
        // A reply already `deadping` old (a drained backlog) brings nothing back.
        if arrival + deadping <= now || l.state == PingState::Up {
            return false;
        }
        l.state = PingState::Up;
        let (node, addr) = (l.node, l.addr);
        let name = self.targets[node].name.clone();
        self.events.push(PingEvent::LinkUp {
            node: name.clone(),
            addr,
        });
        if self.targets[node].state != PingState::Up {
            self.targets[node].state = PingState::Up;
            self.events.push(PingEvent::NodeUp { node: name });
            return true;
        }
        false
    }

    /// Judge links on arrival times; returns whether the count of reachable ping nodes changed.
    pub fn handle_timeout(&mut self, now: Timestamp) -> bool {
        let deadping = self.settings.deadping;
        let mut changed = false;
        for i in 0..self.links.len() {
            let l = &mut self.links[i];
            let expired = match l.state {
                PingState::Up => l.last_reply.is_none_or(|a| now >= a + deadping),
                PingState::Unknown => now >= l.since + deadping,
                PingState::Dead => false,
            };
            if !expired {
                continue;
            }
            let was_up = l.state == PingState::Up;
            l.state = PingState::Dead;
            let (node, addr) = (l.node, l.addr);
            if was_up {
                self.events.push(PingEvent::LinkDead {
                    node: self.targets[node].name.clone(),
                    addr,
                });
            }
            let any_up = self
                .links
                .iter()
                .any(|l| l.node == node && l.state == PingState::Up);
            let all_dead = self
                .links
                .iter()
                .all(|l| l.node != node || l.state == PingState::Dead);
            let t = &mut self.targets[node];
            if !any_up && all_dead && t.state != PingState::Dead {
                changed |= t.state == PingState::Up;
                t.state = PingState::Dead;
                self.events.push(PingEvent::NodeDead {
                    node: t.name.clone(),
                });
            }
        }
        changed
    }

    fn settle_pending(&self) -> bool {
        let wants_yield = self.comparison == Comparison::Fewer;
        self.settings.ipfail && wants_yield != self.yielding
    }

    /// ipfail's rule against `best_peer`, the highest count announced by a live peer (`None`:
    /// no live peer announces one). Call after every change of either side and at every
    /// timeout. Returns whether [`PingMonitor::yielding`] changed (the node must re-announce
    /// and re-run its ownership rule).
    pub fn compare(&mut self, now: Timestamp, best_peer: Option<u8>) -> bool {
        if !self.settings.ipfail || !self.is_configured() {
            return false;
        }
        let ours = self.reachable();
        // Until every ping node was judged once (answered, or silent for deadping after
        // start) this node's count is not known: no decision on it.
        let judged = self.targets.iter().all(|t| t.state != PingState::Unknown);
        if self.announced_count != Some(ours) {
            if self.announced_count.is_some() {
                self.events.push(PingEvent::Asking { reachable: ours });
            }
            self.announced_count = Some(ours);
        }
        let comparison = match best_peer {
            _ if !judged => Comparison::Unknown,
            None => Comparison::Unknown,
            Some(theirs) if ours < theirs => Comparison::Fewer,
            Some(theirs) if ours == theirs => Comparison::Balanced,
            Some(_) => Comparison::More,
        };
        if comparison != self.comparison {
            let was_fewer = self.comparison == Comparison::Fewer;
            self.comparison = comparison;
            if (comparison == Comparison::Fewer) != was_fewer {
                // The settle delay restarts only when the side of the rule changes.
                self.since = now;
            }
            match comparison {
                Comparison::Fewer if !self.yielding => self.events.push(PingEvent::DelayedGiveup {
                    settle: self.settings.settle,
                }),
                Comparison::Balanced => self.events.push(PingEvent::Balanced),
                Comparison::More => self.events.push(PingEvent::More),
                _ => {}
            }
        }
        if self.settle_pending() && now >= self.since + self.settings.settle {
            self.yielding = !self.yielding;
            if self.yielding {
                self.events.push(PingEvent::GivingUp {
                    ours,
                    theirs: best_peer.unwrap_or(0),
                });
            } else {
                self.events.push(PingEvent::Resumed);
            }
            return true;
        }
        false
    }

    /// Events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, PingEvent> {
        self.events.drain(..)
    }

    /// Snapshot for status.
    pub fn view(&self) -> PingView {
        PingView {
            nodes: self
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| PingNodeView {
                    name: t.name.clone(),
                    group: t.group,
                    state: t.state,
                    links: self
                        .links
                        .iter()
                        .filter(|l| l.node == i)
                        .map(|l| PingLinkView {
                            addr: l.addr,
                            state: l.state,
                            last_reply: l.last_reply,
                        })
                        .collect(),
                })
                .collect(),
            reachable: self.reachable(),
            configured: self.configured(),
            ipfail: self.settings.ipfail,
            comparison: self.comparison,
            yielding: self.yielding,
            settle: self.settings.settle,
        }
    }
}

#[cfg(test)]
mod tests;
