//! Deterministic simulation of an hb cluster: N [`Node`]s, virtual time that jumps to the next
//! deadline or delivery, links with loss, delay, jitter and partitions, a seeded xorshift PRNG,
//! resource actions that complete after a delay (and may fail), kills, restarts, pauses.
//!
//! The ownership invariant (never two nodes `Starting`/`Held` for one group) is checked after
//! every step; a violation is recorded unless a partition, a pause, every link being cut or a
//! loss burst ([`Sim::disrupt`]) is in force or ended less than a settle time ago.
//!
//! With [`SimSpec::wire`] every message goes over the wire as the daemon sends it: encoded and
//! signed (CRC32, see `sim_keys`), then handed to the receiver's `Node::handle_datagram` (which
//! decodes, authenticates and runs the replay rule, as in the daemon), so captured datagrams can
//! be replayed or mangled ([`Sim::inject`]).
//!
//! Built behind the `sim` feature: hb-proto's tests and the `cluster` fuzz target
//! (`hb_proto::fuzz::cluster`) share it. A test harness, not a runtime path: a configuration it built
//! itself that the core refuses is a harness bug and panics.
#![allow(clippy::expect_used)]

mod setup;

pub use setup::{Timing, config, groups};

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    rc::Rc,
    time::Duration,
};

use crate::{
    Timestamp,
    arbiter::{ArbiterInput, ArbiterRequest, KeyOutcome},
    config::{AuthKey, AuthKeys, AuthMethod, AutoFailback, ResourceGroup},
    message::{Holding, Message, MessageKind},
    node::{Command, Event, LinkId, Node, Output, PeerState, Reception, ResourceOp, ResourceTimes},
    packet,
};

/// xorshift64* PRNG.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (any seed; zero is mapped away).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform duration in [lo, hi].
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.below(span + 1))
    }

    /// true with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// One link's behaviour (same for every pair of nodes).
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in [0, jitter].
    pub jitter: Duration,
}

impl LinkParams {
    /// 100 us +- 200 us, no loss.
    pub const CLEAN: LinkParams = LinkParams {
        loss: 0.0,
        delay: Duration::from_micros(100),
        jitter: Duration::from_micros(200),
    };
}

/// One ping node (`ping 10.0.0.254`) every host pings, and how the built-in ipfail is set.
#[derive(Debug, Clone, Copy)]
pub struct PingSpec {
    /// `deadping`.
    pub deadping: Duration,
    /// `ipfail_settle`.
    pub settle: Duration,
    /// `ipfail on`.
    pub ipfail: bool,
    /// Round-trip time of an echo.
    pub rtt: Duration,
}

/// A cluster to simulate.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Number of nodes (`node1`...).
    pub nodes: usize,
    /// Preferred node index of each group.
    pub groups: Vec<usize>,
    /// Timings.
    pub timing: Timing,
    /// auto_failback.
    pub failback: AutoFailback,
    /// One entry per link.
    pub links: Vec<LinkParams>,
    /// How long a group start or stop takes.
    pub resource_delay: Duration,
    /// Seed.
    pub seed: u64,
    /// Fencing: every node has a `stonith_host *` device that powers the target off.
    pub fence: Option<SimFence>,
    /// Send every message encoded and signed, decode and replay-check it at the receiver (as
    /// the daemon does), and keep the last datagrams for [`Sim::inject`].
    pub wire: bool,
    /// A ping node, if any.
    pub ping: Option<PingSpec>,
    /// An etcd arbiter every node is configured with, if any.
    pub arbiter: Option<SimArbiter>,
}

/// The simulated etcd (one member): leases expire on ITS clock (the simulation's), keys are
/// created by transaction on their absence, each with the next revision as `create_revision`.
#[derive(Debug, Clone, Copy)]
pub struct SimArbiter {
    /// `arbiter_ttl`.
    pub ttl: Duration,
    /// Round trip from a node to etcd (the request is processed half-way).
    pub rtt: Duration,
}

/// The simulated etcd's state.
#[derive(Debug, Default)]
struct SimEtcd {
    /// Lease id -> (expiry, ttl).
    leases: BTreeMap<i64, (Timestamp, Duration)>,
    /// Per group: (lease, holder, create_revision).
    keys: Vec<Option<(i64, String, i64)>>,
    revision: i64,
    next_lease: i64,
    /// etcd is running.
    up: bool,
}

impl SimEtcd {
    fn expire(&mut self, now: Timestamp) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, (exp, _))| *exp <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: i64) {
        self.leases.remove(&id);
        for k in &mut self.keys {
            if k.as_ref().is_some_and(|(l, _, _)| *l == id) {
                *k = None;
                self.revision += 1;
            }
        }
    }

    /// Carries out `req` from `holder` at `now` (etcd's processing time).
    fn process(
        &mut self,
        now: Timestamp,
        holder: &str,
        req: ArbiterRequest,
    ) -> Option<ArbiterInput> {
        self.expire(now);
        match req {
            ArbiterRequest::Grant { ttl, at } => {
                self.next_lease += 1;
                let id = self.next_lease;
                self.leases.insert(id, (now + ttl, ttl));
                Some(ArbiterInput::Granted { at, lease: id, ttl })
            }
            ArbiterRequest::KeepAlive { lease, at } => {
                let ttl = match self.leases.get_mut(&lease) {
                    Some((exp, ttl)) => {
                        *exp = now + *ttl;
                        *ttl
                    }
                    None => Duration::ZERO,
                };
                Some(ArbiterInput::Renewed { at, lease, ttl })
            }
            ArbiterRequest::Revoke { lease } => {
                self.revoke(lease);
                None
            }
            ArbiterRequest::Acquire { group, lease, seq } => {
                let outcome = match &self.keys[group] {
                    None if self.leases.contains_key(&lease) => {
                        self.revision += 1;
                        self.keys[group] = Some((lease, holder.to_owned(), self.revision));
                        KeyOutcome::Held {
                            epoch: self.revision,
                        }
                    }
                    None => KeyOutcome::Failed {
                        error: "etcdserver: requested lease not found".into(),
                    },
                    Some((l, _, rev)) if *l == lease => KeyOutcome::Held { epoch: *rev },
                    Some((_, h, rev)) => KeyOutcome::Taken {
                        holder: h.clone(),
                        epoch: *rev,
                    },
                };
                Some(ArbiterInput::Key {
                    group,
                    seq,
                    outcome,
                })
            }
            ArbiterRequest::Verify {
                group,
                lease,
                epoch,
                seq,
            } => {
                let outcome = match &self.keys[group] {
                    Some((l, _, rev)) if *l == lease && *rev == epoch => KeyOutcome::Held { epoch },
                    Some((_, h, rev)) => KeyOutcome::Lost {
                        now: Some((h.clone(), *rev)),
                    },
                    None => KeyOutcome::Lost { now: None },
                };
                Some(ArbiterInput::Key {
                    group,
                    seq,
                    outcome,
                })
            }
            ArbiterRequest::Release { group, lease, seq } => {
                if self.keys[group]
                    .as_ref()
                    .is_some_and(|(l, _, _)| *l == lease)
                {
                    self.keys[group] = None;
                    self.revision += 1;
                }
                Some(ArbiterInput::Key {
                    group,
                    seq,
                    outcome: KeyOutcome::Released,
                })
            }
        }
    }
}

/// The answer a driver gives when etcd does not answer `req` in time.
fn arbiter_timeout(req: &ArbiterRequest) -> Option<ArbiterInput> {
    req.failed("etcd request timed out (simulated)")
}

/// The simulated fencing device.
#[derive(Debug, Clone, Copy)]
pub struct SimFence {
    /// How long a fence takes; the target is powered off when it completes.
    pub duration: Duration,
    /// `fence_delay`.
    pub delay: Duration,
    /// Every attempt fails (the target stays up).
    pub fail: bool,
}

impl SimSpec {
    /// `n` nodes, one group per node preferred by it, FAST timings, two clean links,
    /// auto_failback on, 2 ms resource actions.
    pub fn new(n: usize, seed: u64) -> Self {
        Self {
            nodes: n,
            groups: (0..n).collect(),
            timing: Timing::FAST,
            failback: AutoFailback::On,
            links: vec![LinkParams::CLEAN; 2],
            resource_delay: Duration::from_millis(2),
            seed,
            fence: None,
            wire: false,
            ping: None,
            arbiter: None,
        }
    }
}

/// What travels on a link. A datagram's bytes are shared by every copy in flight and the
/// capture buffer (one encoding, no copy per receiver).
#[derive(Debug, Clone)]
enum Payload {
    Msg(Message),
    Bytes(Rc<[u8]>),
}

/// The event queue: a min-heap of (time, scheduling order) keys, each naming a slot of `slots`
/// where its event waits (the heap moves only the small keys). Events come out in the order of
/// a `BTreeMap<(Timestamp, seq), Ev>`, so runs stay the same.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    slots: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: Timestamp, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The time of the earliest event.
    fn next_at(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest event if it is due at `now`.
    fn pop_due(&mut self, now: Timestamp) -> Option<Ev> {
        if self.next_at()? > now {
            return None;
        }
        let Reverse((_, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slots[slot].take()
    }
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        link: usize,
        payload: Payload,
    },
    ResourceDone {
        host: usize,
        incarnation: u64,
        group: usize,
        op: ResourceOp,
    },
    Resume {
        host: usize,
    },
    FenceDone {
        host: usize,
        incarnation: u64,
        peer: String,
    },
    PingReply {
        host: usize,
        incarnation: u64,
        /// Index into the host's `ping_maps` when the request went out.
        epoch: usize,
        link: usize,
        sent: Timestamp,
    },
    /// A request reaches etcd.
    EtcdProcess {
        host: usize,
        incarnation: u64,
        req: ArbiterRequest,
    },
    /// An arbiter result reaches the node (or its driver's timeout fires).
    EtcdReply {
        host: usize,
        incarnation: u64,
        input: ArbiterInput,
    },
}

/// One simulated machine.
#[derive(Debug)]
pub struct Host {
    /// Name.
    pub name: String,
    /// The state machine, `None` while killed.
    pub node: Option<Node>,
    generation: u64,
    incarnation: u64,
    paused: bool,
    backlog: Vec<(usize, Timestamp, Payload)>,
    pending_results: Vec<(usize, ResourceOp)>,
    /// Groups whose start fails on this host.
    pub fail_start: Vec<bool>,
    /// Remaining failures of stop per group.
    pub fail_stop: Vec<u32>,
    /// Every event with its time.
    pub events: Vec<(Timestamp, Event)>,
    /// Every reannounce with its time.
    pub reannounces: Vec<(Timestamp, usize)>,
    /// Time of the last heartbeat it sent.
    pub last_sent: Option<Timestamp>,
    /// Resource actions it ran: (time, group, op).
    pub actions: Vec<(Timestamp, usize, ResourceOp)>,
    /// Fences it started: (time, peer).
    pub fences: Vec<(Timestamp, String)>,
    /// The ping node answers this host (requests and replies both pass).
    pub ping_ok: bool,
    /// Ping-node addresses that never answer this host (with `ping_ok`, the others do).
    pub ping_silent: Vec<std::net::IpAddr>,
    /// The address-index maps of every ping reload, oldest first (as a driver re-addresses
    /// its requests in flight).
    ping_maps: Vec<Vec<Option<usize>>>,
    ping_backlog: Vec<(usize, Timestamp, Timestamp)>,
    /// The host reaches etcd (requests and answers both pass).
    pub etcd_ok: bool,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// The spec.
    pub spec: SimSpec,
    /// Current virtual time.
    pub now: Timestamp,
    /// Hosts, index = node index.
    pub hosts: Vec<Host>,
    queue: Queue,
    /// Scratch for `run_until`: each host's timer at the start of a step.
    timers: Vec<Option<Timestamp>>,
    /// The PRNG.
    pub rng: Rng,
    blocked: Vec<Vec<bool>>,
    link_down: Vec<bool>,
    partitioned: bool,
    disrupted: usize,
    settle_until: Timestamp,
    /// Steps taken.
    pub steps: u64,
    /// Step bound (livelock guard).
    pub max_steps: u64,
    /// Ownership violations outside partitions: (time, group, holders).
    pub violations: Vec<(Timestamp, usize, Vec<String>)>,
    /// Largest number of simultaneous holders seen at any time (partitions included).
    pub max_holders: usize,
    group_defs: Vec<ResourceGroup>,
    names: Vec<String>,
    keys: AuthKeys,
    /// The last datagrams sent (wire mode), newest last: (link, bytes).
    captured: VecDeque<(usize, Rc<[u8]>)>,
    /// Datagrams handed in that decoding or the replay guard refused (wire mode).
    pub rejected: u64,
    /// Largest number of hosts seen at once with a group's resources possibly up
    /// (`Starting`, `Held` or `Stopping`), partitions included.
    pub max_involved: usize,
    etcd: SimEtcd,
}

/// How many sent datagrams [`Sim::inject`] can pick from.
pub const CAPTURED: usize = 64;

/// CRC32 "signing": the same codec and checks as HMAC at a fraction of the cost (the fuzz
/// target runs tens of thousands of messages per input). Datagrams the fuzzer makes up or
/// mangles still fail it: it does not compute CRCs.
fn sim_keys() -> AuthKeys {
    let key = AuthKey {
        id: 1,
        method: AuthMethod::Crc,
        secret: Vec::new(),
    };
    AuthKeys {
        active: 1,
        keys: BTreeMap::from([(1, key)]),
    }
}

impl Sim {
    /// Every node started at time 1 ms.
    pub fn new(spec: SimSpec) -> Self {
        let names: Vec<String> = (1..=spec.nodes).map(|i| format!("node{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let prefs: Vec<&str> = spec.groups.iter().map(|&p| refs[p]).collect();
        let group_defs = groups(&prefs);
        let ng = spec.groups.len();
        let hosts = names
            .iter()
            .map(|name| Host {
                name: name.clone(),
                node: None,
                generation: 0,
                incarnation: 0,
                paused: false,
                backlog: vec![],
                pending_results: vec![],
                fail_start: vec![false; ng],
                fail_stop: vec![0; ng],
                events: vec![],
                reannounces: vec![],
                last_sent: None,
                actions: vec![],
                fences: vec![],
                ping_ok: true,
                ping_silent: vec![],
                ping_maps: vec![],
                ping_backlog: vec![],
                etcd_ok: true,
            })
            .collect();
        let n = spec.nodes;
        let nlinks = spec.links.len();
        let mut sim = Self {
            rng: Rng::new(spec.seed),
            spec,
            now: Timestamp::from_nanos(1_000_000),
            hosts,
            queue: Queue::default(),
            timers: Vec::new(),
            blocked: vec![vec![false; n]; n],
            link_down: vec![false; nlinks],
            partitioned: false,
            disrupted: 0,
            settle_until: Timestamp::ZERO,
            steps: 0,
            max_steps: 5_000_000,
            violations: vec![],
            max_holders: 0,
            group_defs,
            names,
            keys: sim_keys(),
            captured: VecDeque::new(),
            rejected: 0,
            max_involved: 0,
            etcd: SimEtcd {
                keys: vec![None; ng],
                up: true,
                ..SimEtcd::default()
            },
        };
        for h in 0..n {
            sim.start(h);
        }
        sim
    }

    /// Time since the start of the simulation's clock.
    pub fn ms(n: u64) -> Timestamp {
        Timestamp::from_nanos(n * 1_000_000)
    }

    fn settle(&self) -> Duration {
        let t = self.spec.timing;
        let max_delay = self
            .spec
            .links
            .iter()
            .map(|l| l.delay + l.jitter)
            .max()
            .unwrap_or_default();
        t.deadtime + 2 * t.keepalive + 2 * max_delay + 2 * self.spec.resource_delay
    }

    /// Starts (or restarts) host `h` in a new generation.
    pub fn start(&mut self, h: usize) {
        self.start_with(h, self.group_defs.clone());
    }

    /// Starts (or restarts) host `h` in a new generation with its own `haresources`.
    pub fn start_with(&mut self, h: usize, groups: Vec<ResourceGroup>) {
        let cfg = self.host_config(h, groups);
        let host = &mut self.hosts[h];
        host.paused = false;
        host.generation += 1;
        host.incarnation += 1;
        host.backlog.clear();
        host.pending_results.clear();
        host.ping_backlog.clear();
        host.node = Some(
            Node::new(&cfg, host.generation, self.now).expect("the simulation's config is valid"),
        );
        self.drain(h);
    }

    /// A reload on host `h` that sets its ping nodes to `addrs` (one `ping` line each; the
    /// spec's `deadping`, `ipfail` and settle), through [`Node::set_ping`]. Returns the map of
    /// old to new ping-address indices.
    pub fn set_ping_nodes(&mut self, h: usize, addrs: &[std::net::IpAddr]) -> Vec<Option<usize>> {
        let mut cfg = self.host_config(h, self.group_defs.clone());
        cfg.ha_cf.ping = addrs.to_vec();
        let now = self.now;
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Vec::new();
        };
        let map = node.set_ping(now, &cfg.ha_cf);
        let host = &mut self.hosts[h];
        host.ping_backlog = std::mem::take(&mut host.ping_backlog)
            .into_iter()
            .filter_map(|(l, sent, arrival)| Some((map.get(l).copied().flatten()?, sent, arrival)))
            .collect();
        host.ping_maps.push(map.clone());
        self.drain(h);
        map
    }

    /// Host `h`'s configuration in this simulation, with `groups` as its `haresources`.
    fn host_config(&self, h: usize, groups: Vec<ResourceGroup>) -> crate::config::Config {
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let mut cfg = config(
            &refs,
            refs[h],
            groups,
            self.spec.timing,
            self.spec.failback,
            self.spec.links.len(),
        );
        if let Some(f) = self.spec.fence {
            cfg.ha_cf.stonith_hosts = vec!["* external/sim".into()];
            cfg.ha_cf.fence_delay = crate::config::Setting::set(f.delay);
        }
        if let Some(p) = self.spec.ping {
            cfg.ha_cf.ping = vec![std::net::IpAddr::from([10, 0, 0, 254])];
            cfg.ha_cf.deadping = Some(p.deadping);
            cfg.ha_cf.ipfail = crate::config::Setting::set(p.ipfail);
            cfg.ha_cf.ipfail_settle = Some(p.settle);
        }
        if let Some(a) = self.spec.arbiter {
            cfg.ha_cf.arbiter = Some(crate::config::Arbiter {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: crate::config::Setting::default_value("/hb".into()),
                ttl: crate::config::Setting::set(a.ttl),
                ca: None,
                cert: None,
                key: None,
            });
        }
        cfg.authkeys = self.keys.clone();
        cfg
    }

    /// Kills host `h` (power off: its resources vanish with it).
    pub fn kill(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.node = None;
        host.incarnation += 1;
        host.paused = false;
    }

    /// Operator command on host `h`.
    pub fn command(&mut self, h: usize, cmd: Command) {
        if let Some(node) = self.hosts[h].node.as_mut() {
            node.handle_command(self.now, cmd);
            self.drain(h);
        }
    }

    /// Splits the cluster: no traffic between different sides. A second split while one is in
    /// force only changes the sides.
    pub fn partition(&mut self, sides: &[&[usize]]) {
        let n = self.spec.nodes;
        for a in 0..n {
            for b in 0..n {
                let sa = sides.iter().position(|s| s.contains(&a));
                let sb = sides.iter().position(|s| s.contains(&b));
                self.blocked[a][b] = sa != sb;
            }
        }
        if !self.partitioned {
            self.partitioned = true;
            self.disrupt();
        }
    }

    /// Ends the partition (nothing without one).
    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.fill(false);
        }
        if std::mem::take(&mut self.partitioned) {
            self.undisrupt();
        }
    }

    /// Whether a partition is in force.
    pub fn partitioned(&self) -> bool {
        self.partitioned
    }

    /// Freezes host `h` for `d`: messages and resource results for it queue up and are handed
    /// in, with their true arrival times, when it resumes; then its timer runs.
    pub fn pause(&mut self, h: usize, d: Duration) {
        self.hosts[h].paused = true;
        self.disrupted += 1;
        let at = self.now + d;
        self.schedule(at, Ev::Resume { host: h });
    }

    fn schedule(&mut self, at: Timestamp, ev: Ev) {
        self.queue.push(at, ev);
    }

    fn drain(&mut self, h: usize) {
        let now = self.now;
        // Carrying out an output never calls into the node, so taking them one at a time is
        // the same as taking them all first.
        while let Some(o) = self.hosts[h].node.as_mut().and_then(Node::poll_output) {
            match o {
                Output::Transmit { link, msg } => {
                    if msg.kind == MessageKind::Heartbeat {
                        self.hosts[h].last_sent = Some(now);
                    }
                    let payload = if self.spec.wire {
                        let key = self.keys.keys.get(&self.keys.active);
                        let bytes: Rc<[u8]> =
                            packet::encode(&msg, key.expect("the simulation's key"))
                                .expect("the core's messages encode")
                                .into();
                        if self.captured.len() == CAPTURED {
                            self.captured.pop_front();
                        }
                        self.captured.push_back((link.0, Rc::clone(&bytes)));
                        Payload::Bytes(bytes)
                    } else {
                        Payload::Msg(msg)
                    };
                    if self.link_down[link.0] {
                        continue;
                    }
                    let params = self.spec.links[link.0];
                    for to in 0..self.spec.nodes {
                        if to == h || self.blocked[h][to] || self.rng.chance(params.loss) {
                            continue;
                        }
                        let at =
                            now + params.delay + self.rng.between(Duration::ZERO, params.jitter);
                        self.schedule(
                            at,
                            Ev::Deliver {
                                to,
                                link: link.0,
                                payload: payload.clone(),
                            },
                        );
                    }
                }
                Output::Resource { group, op } => {
                    self.hosts[h].actions.push((now, group, op));
                    let incarnation = self.hosts[h].incarnation;
                    let at = now + self.spec.resource_delay;
                    self.schedule(
                        at,
                        Ev::ResourceDone {
                            host: h,
                            incarnation,
                            group,
                            op,
                        },
                    );
                }
                Output::Reannounce { group } => self.hosts[h].reannounces.push((now, group)),
                Output::Fence { peer, .. } => {
                    self.hosts[h].fences.push((now, peer.clone()));
                    let incarnation = self.hosts[h].incarnation;
                    let d = self.spec.fence.map_or(Duration::ZERO, |f| f.duration);
                    self.schedule(
                        now + d,
                        Ev::FenceDone {
                            host: h,
                            incarnation,
                            peer,
                        },
                    );
                }
                Output::Ping { link, addr } => {
                    let Some(p) = self.spec.ping else { continue };
                    if !self.hosts[h].ping_ok || self.hosts[h].ping_silent.contains(&addr) {
                        continue;
                    }
                    let incarnation = self.hosts[h].incarnation;
                    let epoch = self.hosts[h].ping_maps.len();
                    self.schedule(
                        now + p.rtt,
                        Ev::PingReply {
                            host: h,
                            incarnation,
                            epoch,
                            link,
                            sent: now,
                        },
                    );
                }
                Output::Event(e) => self.hosts[h].events.push((now, e)),
                Output::Received(Reception::Rejected { .. }) => self.rejected += 1,
                Output::Received(Reception::Heard { .. }) => {}
                // The simulation's resources always stop.
                Output::SelfFence { .. } => {}
                // Its resources have nothing to check before a start.
                Output::Prepare { .. } | Output::Unprepare { .. } => {}
                Output::Arbiter(req) => self.arbiter_request(h, req),
            }
        }
    }

    /// Hands what arrived on `link` at `arrival` to host `h` (a datagram through
    /// `Node::handle_datagram`, as the daemon does), then carries out its outputs.
    fn hand_in(&mut self, h: usize, link: usize, arrival: Timestamp, payload: Payload) {
        let now = self.now;
        if let Some(node) = self.hosts[h].node.as_mut() {
            match payload {
                Payload::Msg(msg) => node.handle_message(now, LinkId(link), arrival, msg),
                Payload::Bytes(bytes) => {
                    node.handle_datagram(now, LinkId(link), arrival, None, &bytes[..]);
                }
            }
        }
        self.drain(h);
    }

    /// Hands `bytes` to host `h` as a datagram that arrived on `link` now (a stray, forged or
    /// replayed one: no sender is told). Nothing happens while `h` is down; a paused host gets
    /// it when it resumes.
    pub fn inject(&mut self, h: usize, link: usize, bytes: Vec<u8>) {
        let link = link % self.spec.links.len().max(1);
        let now = self.now;
        let host = &mut self.hosts[h];
        if host.node.is_none() {
            return;
        }
        if host.paused {
            host.backlog.push((link, now, Payload::Bytes(bytes.into())));
            return;
        }
        self.hand_in(h, link, now, Payload::Bytes(bytes.into()));
    }

    /// The `i`-th last datagram sent (wire mode; 0 is the newest): (link, bytes).
    pub fn captured(&self, i: usize) -> Option<(usize, &[u8])> {
        let n = self.captured.len();
        i.checked_add(1)
            .and_then(|k| n.checked_sub(k))
            .and_then(|j| self.captured.get(j))
            .map(|(l, b)| (*l, &b[..]))
    }

    /// Cuts (`up == false`) or restores link `link` for every node. Cutting the last link up
    /// counts as a partition (a disruption) until a link is restored.
    pub fn set_link(&mut self, link: usize, up: bool) {
        let Some(down) = self.link_down.get(link).copied() else {
            return;
        };
        if down != up {
            return;
        }
        let all_down_before = self.link_down.iter().all(|d| *d);
        self.link_down[link] = !up;
        let all_down_after = self.link_down.iter().all(|d| *d);
        match (all_down_before, all_down_after) {
            (false, true) => self.disrupt(),
            (true, false) => self.undisrupt(),
            _ => {}
        }
    }

    /// Whether link `link` is up.
    pub fn link_up(&self, link: usize) -> bool {
        self.link_down.get(link).is_some_and(|d| !d)
    }

    /// Opens a window in which two owners are not a violation (a fault the caller injects that
    /// amounts to a partition, such as heavy loss); close it with [`Sim::undisrupt`].
    pub fn disrupt(&mut self) {
        self.disrupted += 1;
    }

    /// Closes a window opened by [`Sim::disrupt`]; violations count again after a settle time.
    pub fn undisrupt(&mut self) {
        self.disrupted = self.disrupted.saturating_sub(1);
        self.settle_until = self.settle_until.max(self.now + self.settle());
    }

    /// Whether a partition, pause or [`Sim::disrupt`] window is in force or ended less than a
    /// settle time ago.
    pub fn disrupted(&self) -> bool {
        self.disrupted > 0 || self.now < self.settle_until
    }

    fn result_for(&mut self, h: usize, group: usize, op: ResourceOp) -> Result<(), String> {
        let host = &mut self.hosts[h];
        match op {
            ResourceOp::Start if host.fail_start[group] => Err("start failed (simulated)".into()),
            ResourceOp::Stop if host.fail_stop[group] > 0 => {
                host.fail_stop[group] -= 1;
                Err("stop failed (simulated)".into())
            }
            _ => Ok(()),
        }
    }

    /// Hands host `h` the result of its `op` on `group` now.
    fn hand_in_result(&mut self, h: usize, group: usize, op: ResourceOp) {
        let r = self.result_for(h, group, op);
        let now = self.now;
        if let Some(node) = self.hosts[h].node.as_mut() {
            node.handle_resource_result(now, group, op, r.map(|()| ResourceTimes::default()));
        }
        self.drain(h);
    }

    fn process(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Deliver { to, link, payload } => {
                let host = &mut self.hosts[to];
                if host.node.is_none() {
                    return;
                }
                if host.paused {
                    host.backlog.push((link, now, payload));
                    return;
                }
                self.hand_in(to, link, now, payload);
            }
            Ev::ResourceDone {
                host: h,
                incarnation,
                group,
                op,
            } => {
                if self.hosts[h].incarnation != incarnation || self.hosts[h].node.is_none() {
                    return;
                }
                if self.hosts[h].paused {
                    self.hosts[h].pending_results.push((group, op));
                    return;
                }
                self.hand_in_result(h, group, op);
            }
            Ev::FenceDone {
                host: h,
                incarnation,
                peer,
            } => {
                if self.hosts[h].incarnation != incarnation || self.hosts[h].node.is_none() {
                    return;
                }
                let fail = self.spec.fence.is_none_or(|f| f.fail);
                let r = if fail {
                    Err("fence failed (simulated)".to_owned())
                } else {
                    if let Some(t) = self.names.iter().position(|n| *n == peer) {
                        self.kill(t);
                    }
                    Ok(())
                };
                if let Some(node) = self.hosts[h].node.as_mut() {
                    node.handle_fence_result(now, &peer, r);
                }
                self.drain(h);
            }
            Ev::PingReply {
                host: h,
                incarnation,
                epoch,
                link,
                sent,
            } => {
                let host = &mut self.hosts[h];
                if host.incarnation != incarnation || !host.ping_ok {
                    return;
                }
                // Re-addressed through every ping reload since it was sent.
                let Some(link) = host.ping_maps[epoch.min(host.ping_maps.len())..]
                    .iter()
                    .try_fold(link, |l, map| map.get(l).copied().flatten())
                else {
                    return;
                };
                if host.paused {
                    host.ping_backlog.push((link, sent, now));
                    return;
                }
                if let Some(node) = host.node.as_mut() {
                    node.handle_ping_reply(now, link, sent, now);
                }
                self.drain(h);
            }
            Ev::EtcdProcess {
                host: h,
                incarnation,
                req,
            } => {
                let Some(a) = self.spec.arbiter else { return };
                let fallback = arbiter_timeout(&req);
                let input = if self.hosts[h].etcd_ok && self.etcd.up {
                    let name = self.names[h].clone();
                    self.etcd.process(now, &name, req)
                } else {
                    None
                };
                // Lost on the way there or back: the driver's timeout answers.
                let (at, input) = match input {
                    Some(i) => (now + a.rtt / 2, Some(i)),
                    None => (
                        now + crate::arbiter::renew_interval(a.ttl),
                        fallback.filter(|_| !(self.hosts[h].etcd_ok && self.etcd.up)),
                    ),
                };
                if let Some(input) = input {
                    self.schedule(
                        at,
                        Ev::EtcdReply {
                            host: h,
                            incarnation,
                            input,
                        },
                    );
                }
            }
            Ev::EtcdReply {
                host: h,
                incarnation,
                mut input,
            } => {
                if self.hosts[h].incarnation != incarnation || self.hosts[h].node.is_none() {
                    return;
                }
                if !self.hosts[h].etcd_ok {
                    // The answer is lost: the driver's timeout reports a failure.
                    if let ArbiterInput::Granted { at, .. } | ArbiterInput::Renewed { at, .. } =
                        input
                    {
                        input = ArbiterInput::LeaseFailed {
                            at,
                            error: "etcd answer lost (simulated)".into(),
                        };
                    } else if let ArbiterInput::Key { group, seq, .. } = input {
                        input = ArbiterInput::Key {
                            group,
                            seq,
                            outcome: KeyOutcome::Failed {
                                error: "etcd answer lost (simulated)".into(),
                            },
                        };
                    }
                }
                if let Some(node) = self.hosts[h].node.as_mut() {
                    node.handle_arbiter(now, input);
                }
                self.drain(h);
            }
            Ev::Resume { host: h } => {
                self.disrupted = self.disrupted.saturating_sub(1);
                self.settle_until = self.settle_until.max(now + self.settle());
                if !self.hosts[h].paused {
                    return;
                }
                self.hosts[h].paused = false;
                let backlog = std::mem::take(&mut self.hosts[h].backlog);
                let results = std::mem::take(&mut self.hosts[h].pending_results);
                // The driver drains every queued datagram (with its kernel arrival time) and
                // every finished resource action before it runs the timer.
                for (link, arrival, payload) in backlog {
                    self.hand_in(h, link, arrival, payload);
                }
                for (link, sent, arrival) in std::mem::take(&mut self.hosts[h].ping_backlog) {
                    if let Some(node) = self.hosts[h].node.as_mut() {
                        node.handle_ping_reply(now, link, sent, arrival);
                    }
                    self.drain(h);
                }
                for (group, op) in results {
                    self.hand_in_result(h, group, op);
                }
                if let Some(node) = self.hosts[h].node.as_mut() {
                    node.handle_timeout(now);
                }
                self.drain(h);
            }
        }
    }

    fn arbiter_request(&mut self, h: usize, req: ArbiterRequest) {
        let Some(a) = self.spec.arbiter else { return };
        let incarnation = self.hosts[h].incarnation;
        if self.hosts[h].etcd_ok && self.etcd.up {
            self.schedule(
                self.now + a.rtt / 2,
                Ev::EtcdProcess {
                    host: h,
                    incarnation,
                    req,
                },
            );
        } else if let Some(input) = arbiter_timeout(&req) {
            let at = self.now + crate::arbiter::renew_interval(a.ttl);
            self.schedule(
                at,
                Ev::EtcdReply {
                    host: h,
                    incarnation,
                    input,
                },
            );
        }
    }

    /// Cuts (or restores) host `h`'s path to etcd.
    pub fn set_etcd_reach(&mut self, h: usize, ok: bool) {
        self.hosts[h].etcd_ok = ok;
    }

    /// Stops (or starts) the simulated etcd; its leases and keys survive (as on disk), their
    /// TTLs keep running.
    pub fn set_etcd_up(&mut self, up: bool) {
        self.etcd.up = up;
    }

    /// Deletes group `group`'s key on the simulated etcd, as `etcdctl del` by hand would (its
    /// holder's lease lives on).
    pub fn etcd_delete_key(&mut self, group: usize) {
        if self.etcd.keys[group].take().is_some() {
            self.etcd.revision += 1;
        }
    }

    /// Overwrites group `group`'s key on the simulated etcd, as `etcdctl put KEY VALUE` by hand
    /// would: same `create_revision`, no lease any more (it no longer expires with anyone's).
    pub fn etcd_overwrite_key(&mut self, group: usize, value: &str) {
        self.etcd.revision += 1;
        if let Some((lease, holder, _)) = self.etcd.keys[group].as_mut() {
            *lease = 0;
            *holder = value.to_owned();
        }
    }

    /// The node holding group `group`'s key on the simulated etcd now, with the epoch.
    pub fn etcd_holder(&mut self, group: usize) -> Option<(String, i64)> {
        self.etcd.expire(self.now);
        self.etcd.keys[group]
            .as_ref()
            .map(|(_, h, r)| (h.clone(), *r))
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_ev = self.queue.next_at();
            // Deliveries at `next` cannot make a timer earlier than `next` due (every deadline
            // they set is in the future), so the timers read here stay valid for this step.
            // One buffer for every step (put back below).
            let mut timers = std::mem::take(&mut self.timers);
            timers.clear();
            timers.extend(self.hosts.iter().map(|h| {
                if h.paused {
                    None
                } else {
                    h.node.as_ref().and_then(Node::poll_timeout)
                }
            }));
            let next_timer = timers.iter().flatten().min().copied();
            let next = match (next_ev, next_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(next) = next.filter(|t| *t <= until) else {
                self.timers = timers;
                break;
            };
            self.now = self.now.max(next);
            self.steps += 1;
            assert!(
                self.steps <= self.max_steps,
                "step bound exceeded at {:?}: livelock?",
                self.now
            );
            while let Some(ev) = self.queue.pop_due(self.now) {
                self.process(ev);
            }
            for (h, timer) in timers.iter().enumerate() {
                if self.hosts[h].paused {
                    continue;
                }
                let now = self.now;
                let due = timer.is_some_and(|t| t <= now);
                if due {
                    if let Some(node) = self.hosts[h].node.as_mut() {
                        node.handle_timeout(now);
                    }
                    self.drain(h);
                }
            }
            self.timers = timers;
            self.check();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Hosts (names) that are `Starting`/`Held` for `group`.
    pub fn holders(&self, group: usize) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| {
                h.node.as_ref().is_some_and(|n| {
                    matches!(n.holding(group), Some(Holding::Starting | Holding::Held))
                })
            })
            .map(|h| h.name.clone())
            .collect()
    }

    /// Hosts (names) that are `Held` for `group`.
    pub fn held_by(&self, group: usize) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| {
                h.node
                    .as_ref()
                    .is_some_and(|n| n.holding(group) == Some(Holding::Held))
            })
            .map(|h| h.name.clone())
            .collect()
    }

    fn check(&mut self) {
        for g in 0..self.spec.groups.len() {
            let count = self
                .hosts
                .iter()
                .filter(|h| {
                    h.node.as_ref().is_some_and(|n| {
                        matches!(n.holding(g), Some(Holding::Starting | Holding::Held))
                    })
                })
                .count();
            self.max_holders = self.max_holders.max(count);
            let involved = self
                .hosts
                .iter()
                .filter(|h| {
                    h.node.as_ref().is_some_and(|n| {
                        matches!(
                            n.holding(g),
                            Some(Holding::Starting | Holding::Held | Holding::Stopping)
                        )
                    })
                })
                .count();
            self.max_involved = self.max_involved.max(involved);
            if count > 1 && self.disrupted == 0 && self.now >= self.settle_until {
                let holders = self.holders(g);
                self.violations.push((self.now, g, holders));
            }
        }
    }

    /// The view of `observer` about `node`.
    pub fn view(&self, observer: usize, node: usize) -> Option<PeerState> {
        self.hosts[observer]
            .node
            .as_ref()
            .and_then(|n| n.peer_state(&self.names[node]))
    }

    /// The first time `observer` declared `node` dead after `since`.
    pub fn death_time(&self, observer: usize, node: usize, since: Timestamp) -> Option<Timestamp> {
        let name = &self.names[node];
        self.hosts[observer]
            .events
            .iter()
            .find(|(t, e)| *t >= since && matches!(e, Event::NodeDead { node, .. } if node == name))
            .map(|(t, _)| *t)
    }

    /// Every event of `h` since `since` that satisfies `f`.
    pub fn count_events(&self, h: usize, since: Timestamp, f: impl Fn(&Event) -> bool) -> usize {
        self.hosts[h]
            .events
            .iter()
            .filter(|(t, e)| *t >= since && f(e))
            .count()
    }

    /// Name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}
