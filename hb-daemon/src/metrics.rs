//! What hbd records about its links and takeovers (issue 8), kept in HDR histograms.
//! Records what the core reports (`Output::Received`, events) and never feeds anything back into
//! a decision.
//!
//! One [`Metrics`] is owned by the main loop; every `record_*` call is `&mut self`, touches a
//! preallocated histogram or counter and never allocates on the steady path, so recording
//! never blocks the heartbeat path. Peers and links are fixed at construction from the
//! configuration: nothing here is a map keyed by network input, so memory is constant over
//! time. Rejected-packet reasons and error kinds are `&'static str` labels chosen by the code,
//! a small bounded set.
//!
//! Every histogram covers 1 us .. 60 s with 3 significant digits (values outside are clamped
//! to the bounds) and is stored in nanoseconds with a 1 ns unit, so the 3 digits hold down to
//! 1 us (a 1 us unit would quantise to 512 ns steps). Each histogram is a fixed array of 27,648
//! u64 counts (216 KiB), allocated once.
//!
//! [`Metrics::snapshot`] produces a [`StatsReport`]: the serde type `hbstat`, `hbctl` and the
//! Prometheus exposition read. It carries, for each histogram, the percentiles and the counts
//! over a fixed log scale ([`BUCKET_BOUNDS_NS`]) so that a client can draw the distribution.

use std::{collections::BTreeMap, time::Duration};

use hb_proto::{Timestamp, node::TakeoverTimes, time::duration_nanos};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::control::{LinkState, NodeState};

/// Lowest value a histogram tells apart: 1 us, in ns.
pub const HIST_LOW_NS: u64 = 1_000;
/// Highest value a histogram tells apart: 60 s, in ns.
pub const HIST_HIGH_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept by each histogram.
pub const HIST_SIGFIG: u8 = 3;

/// Upper bounds (inclusive, ns) of the fixed log-scale buckets carried in a
/// [`HistogramSummary`]: 1-2-5 steps from 1 us to 60 s. Values above the last bound fall in
/// the overflow count (none can, given the histogram bounds).
pub const BUCKET_BOUNDS_NS: [u64; 24] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    20_000_000_000,
    60_000_000_000,
];

/// A latency histogram with fixed bounds plus the exact sum of what was recorded.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    sum_ns: u64,
}

impl LatencyHistogram {
    /// An empty histogram covering [`HIST_LOW_NS`] .. [`HIST_HIGH_NS`].
    pub fn new() -> Self {
        // The bounds are constants that satisfy the crate's preconditions (low >= 1,
        // high >= 2 * low, sigfig <= 5), so this cannot fail; a unit test builds one.
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, HIST_HIGH_NS, HIST_SIGFIG)
            .expect("constant histogram bounds are valid");
        Self { hist, sum_ns: 0 }
    }

    /// Records one value, clamped to the histogram's bounds.
    pub fn record(&mut self, d: Duration) {
        let ns = duration_nanos(d);
        self.hist
            .saturating_record(ns.clamp(HIST_LOW_NS, HIST_HIGH_NS));
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Length of the histogram's counts array: constant for the life of the histogram.
    pub fn distinct_buckets(&self) -> usize {
        self.hist.distinct_values()
    }

    /// Empties the histogram.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_ns = 0;
    }

    /// The percentiles and the log-scale bucket counts.
    pub fn summary(&self) -> HistogramSummary {
        // One pass over the recorded values gives the buckets and the percentiles (the
        // crate's value_at_quantile would walk the counts once per percentile).
        const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
        let h = &self.hist;
        let count = h.len();
        let mut buckets = vec![0u64; BUCKET_BOUNDS_NS.len()];
        let mut overflow = 0u64;
        let mut percentiles = [0u64; 4];
        if count > 0 {
            // The rank of each percentile: the smallest value with at least q * count
            // values at or below it.
            let ranks = QUANTILES.map(|q| ((q * count as f64).ceil() as u64).clamp(1, count));
            let (mut next, mut cumulative) = (0, 0u64);
            for v in h.iter_recorded() {
                let n = v.count_at_value();
                cumulative += n;
                while next < ranks.len() && cumulative >= ranks[next] {
                    percentiles[next] = h.highest_equivalent(v.value_iterated_to());
                    next += 1;
                }
                // The lowest value equivalent to the sample: a sample equal to a bound
                // counts under that bound.
                let value = h.lowest_equivalent(v.value_iterated_to());
                match BUCKET_BOUNDS_NS.iter().position(|&b| value <= b) {
                    Some(i) => buckets[i] += n,
                    None => overflow += n,
                }
            }
        }
        let [p50, p90, p99, p999] = percentiles;
        HistogramSummary {
            count,
            sum_ns: self.sum_ns,
            min_ns: if count == 0 { 0 } else { h.min() },
            max_ns: if count == 0 { 0 } else { h.max() },
            mean_ns: self.sum_ns.checked_div(count).unwrap_or(0),
            p50_ns: p50,
            p90_ns: p90,
            p99_ns: p99,
            p999_ns: p999,
            buckets,
            overflow,
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// One histogram as reported: percentiles (ns) and counts per bucket of [`BUCKET_BOUNDS_NS`].
///
/// Percentiles and extremes are HDR-rounded (3 significant digits); `sum_ns` is exact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Values recorded.
    pub count: u64,
    /// Sum of the values recorded, ns (exact, saturating).
    pub sum_ns: u64,
    /// Smallest value, ns (0 when empty).
    pub min_ns: u64,
    /// Largest value, ns (0 when empty).
    pub max_ns: u64,
    /// Mean, ns (exact: `sum_ns / count`).
    pub mean_ns: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Count per bucket: `buckets[i]` counts values `<= BUCKET_BOUNDS_NS[i]` and above the
    /// previous bound (not cumulative).
    pub buckets: Vec<u64>,
    /// Values above the last bound.
    pub overflow: u64,
}

impl HistogramSummary {
    /// Values recorded above `bound_ns`, which must be one of [`BUCKET_BOUNDS_NS`] (`None`
    /// otherwise: the buckets cannot tell).
    pub fn above(&self, bound_ns: u64) -> Option<u64> {
        let i = BUCKET_BOUNDS_NS.iter().position(|&b| b == bound_ns)?;
        Some(
            self.buckets
                .iter()
                .skip(i + 1)
                .fold(self.overflow, |n, &c| n.saturating_add(c)),
        )
    }
}

/// The last takeover, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverReport {
    /// The peer whose groups were taken over.
    pub peer: String,
    /// Last heartbeat to peer declared dead, ns.
    pub to_dead_ns: u64,
    /// Last heartbeat to resources started, ns.
    pub to_resources_ns: Option<u64>,
    /// Last heartbeat to first gratuitous ARP, ns.
    pub to_garp_ns: Option<u64>,
    /// Peer declared dead to peer fenced, ns (`None`: not fenced).
    #[serde(default)]
    pub dead_to_fenced_ns: Option<u64>,
}

/// Statistics of one link (interface) of one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Interface name.
    pub link: String,
    /// Link state as last set by the loop.
    pub state: LinkState,
    /// Heartbeats received.
    pub received: u64,
    /// Heartbeats lost (sequence gaps).
    pub lost: u64,
    /// `lost / (received + lost)`, 0 when nothing was expected.
    pub loss_ratio: f64,
    /// Inter-arrival gap of heartbeats.
    pub gap: HistogramSummary,
    /// Kernel-to-daemon delivery delay.
    pub delivery: HistogramSummary,
    /// Round-trip time from echoed send times.
    pub rtt: HistogramSummary,
}

/// Statistics of one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Node name.
    pub peer: String,
    /// Node state as last set by the loop.
    pub state: NodeState,
    /// Heartbeats that arrived after more than `warntime` of silence.
    pub late: u64,
    /// The silences that made heartbeats late.
    pub late_interval: HistogramSummary,
    /// One entry per link, in configuration order.
    pub links: Vec<LinkStats>,
}

/// Takeover timings, over every takeover of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverStats {
    /// Takeovers recorded.
    pub count: u64,
    /// Last heartbeat heard to peer declared dead.
    pub to_dead: HistogramSummary,
    /// Last heartbeat heard to resources started.
    pub to_resources: HistogramSummary,
    /// Last heartbeat heard to first gratuitous ARP sent.
    pub to_garp: HistogramSummary,
    /// Peer declared dead to peer fenced (takeovers that fenced).
    #[serde(default)]
    pub dead_to_fenced: HistogramSummary,
    /// The most recent takeover.
    pub last: Option<TakeoverReport>,
}

/// Statistics of one ping-node address (a `ping` line, or one member of a `ping_group`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingStats {
    /// The ping node (the address of a `ping` line, the name of a `ping_group`).
    pub node: String,
    /// The address pinged.
    pub addr: String,
    /// Up (answered within `deadping`) or dead, as last set by the loop.
    pub state: LinkState,
    /// Echo requests sent.
    pub sent: u64,
    /// Echo replies received.
    pub received: u64,
    /// Requests the kernel refused to send (an iptables `DROP`, no route).
    pub send_errors: u64,
    /// Round-trip time: request send to the reply's kernel arrival stamp.
    pub rtt: HistogramSummary,
}

/// The ping-node counts and the built-in ipfail's state, from the core at snapshot time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingSummary {
    /// Ping nodes this node reaches.
    pub reachable: u8,
    /// Ping nodes configured.
    pub configured: u8,
    /// The built-in ipfail is on.
    pub ipfail: bool,
    /// ipfail gave this node's groups up (fewer ping nodes than a peer).
    pub yielding: bool,
    /// A dead peer's takeover held back: no ping node answered since it went silent.
    pub takeover_held: bool,
    /// Each peer's announced count of reachable ping nodes (peers that announce one).
    pub peers: BTreeMap<String, u8>,
}

/// Everything [`Metrics`] holds, for `hbstat`, `hbctl` and Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// This node's name.
    pub local_node: String,
    /// Length of the window (since start or the last reset), ns.
    pub window_ns: u64,
    /// Upper bounds of the histogram buckets, ns (see [`BUCKET_BOUNDS_NS`]).
    pub bucket_bounds_ns: Vec<u64>,
    /// One entry per peer, in configuration order.
    pub peers: Vec<PeerStats>,
    /// Takeover timings.
    pub takeovers: TakeoverStats,
    /// Rejected packets by reason.
    pub rejects: BTreeMap<String, u64>,
    /// Socket and ring-buffer errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// One entry per ping-node address, in configuration order (empty without ping nodes).
    #[serde(default)]
    pub ping: Vec<PingStats>,
    /// Ping-node counts and ipfail (`None` without ping nodes).
    #[serde(default)]
    pub ping_summary: Option<PingSummary>,
    /// The etcd arbiter (`None`: not configured).
    #[serde(default)]
    pub arbiter: Option<Box<crate::control::ArbiterReport>>,
    /// Send jitter of the periodic heartbeats, one entry per link in configuration order
    /// (filled in by the daemon from [`crate::sender::SendStats`]).
    #[serde(default)]
    pub send: Vec<crate::sender::SendLinkStats>,
    /// Per heartbeat interface: the XDP or the socket path, and why (filled in by the
    /// daemon).
    #[serde(default)]
    pub delivery: Vec<crate::control::DeliveryStatus>,
}

#[derive(Debug, Clone)]
struct LinkMetrics {
    name: String,
    state: LinkState,
    received: u64,
    lost: u64,
    last_arrival: Option<Timestamp>,
    gap: LatencyHistogram,
    delivery: LatencyHistogram,
    rtt: LatencyHistogram,
}

impl LinkMetrics {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: LinkState::Dead,
            received: 0,
            lost: 0,
            last_arrival: None,
            gap: LatencyHistogram::new(),
            delivery: LatencyHistogram::new(),
            rtt: LatencyHistogram::new(),
        }
    }

    fn reset(&mut self) {
        self.received = 0;
        self.lost = 0;
        self.last_arrival = None;
        self.gap.reset();
        self.delivery.reset();
        self.rtt.reset();
    }
}

#[derive(Debug, Clone)]
struct PeerMetrics {
    name: String,
    state: NodeState,
    late: u64,
    late_interval: LatencyHistogram,
    links: Vec<LinkMetrics>,
}

#[derive(Debug, Clone)]
struct PingMetrics {
    node: String,
    addr: String,
    state: LinkState,
    sent: u64,
    received: u64,
    send_errors: u64,
    rtt: LatencyHistogram,
}

/// hbd's statistics: per peer and per link histograms and counters, takeover timings, reject
/// and error counters, per ping-node address RTT. Owned by the main loop.
#[derive(Debug, Clone)]
pub struct Metrics {
    local_node: String,
    window_start: Timestamp,
    peers: Vec<PeerMetrics>,
    takeover_count: u64,
    to_dead: LatencyHistogram,
    to_resources: LatencyHistogram,
    to_garp: LatencyHistogram,
    dead_to_fenced: LatencyHistogram,
    last_takeover: Option<TakeoverReport>,
    rejects: BTreeMap<&'static str, u64>,
    errors: BTreeMap<&'static str, u64>,
    ping: Vec<PingMetrics>,
}

/// Label under which events naming a peer or link not in the configuration are counted.
pub const UNKNOWN_PEER_OR_LINK: &str = "unknown_peer_or_link";

/// The ping-node addresses of `config`, as `(ping node, address)` in the core's link order.
pub fn ping_links(config: &hb_proto::config::Config) -> Vec<(String, std::net::IpAddr)> {
    hb_proto::ping::ping_targets(&config.ha_cf)
        .into_iter()
        .flat_map(|t| t.addrs.into_iter().map(move |a| (t.name.clone(), a)))
        .collect()
}

impl Metrics {
    /// Metrics for `local_node` and its `peers`, each reachable over every one of `links`
    /// (interface names), all in configuration order. `now` starts the window.
    pub fn new<P: AsRef<str>, L: AsRef<str>>(
        local_node: &str,
        peers: &[P],
        links: &[L],
        now: Timestamp,
    ) -> Self {
        let peers = peers
            .iter()
            .map(|p| PeerMetrics {
                name: p.as_ref().to_owned(),
                state: NodeState::Init,
                late: 0,
                late_interval: LatencyHistogram::new(),
                links: links.iter().map(|l| LinkMetrics::new(l.as_ref())).collect(),
            })
            .collect();
        Self {
            local_node: local_node.to_owned(),
            window_start: now,
            peers,
            takeover_count: 0,
            to_dead: LatencyHistogram::new(),
            to_resources: LatencyHistogram::new(),
            to_garp: LatencyHistogram::new(),
            dead_to_fenced: LatencyHistogram::new(),
            last_takeover: None,
            rejects: BTreeMap::new(),
            errors: BTreeMap::new(),
            ping: Vec::new(),
        }
    }

    /// Adds ping-node addresses, as `(ping node, address)` in the core's link order.
    pub fn with_ping_links<N: AsRef<str>, A: ToString>(mut self, links: &[(N, A)]) -> Self {
        self.set_ping_links(links);
        self
    }

    /// The ping-node addresses after a reload, as `(ping node, address)` in the core's link
    /// order: an address of the same ping node that stays keeps its state and figures, a new
    /// one starts empty (dead until its first reply), a removed one is dropped.
    pub fn set_ping_links<N: AsRef<str>, A: ToString>(&mut self, links: &[(N, A)]) {
        let mut old = std::mem::take(&mut self.ping);
        self.ping = links
            .iter()
            .map(|(n, a)| {
                let (node, addr) = (n.as_ref(), a.to_string());
                match old.iter().position(|p| p.node == node && p.addr == addr) {
                    Some(i) => old.swap_remove(i),
                    None => PingMetrics {
                        node: node.to_owned(),
                        addr,
                        state: LinkState::Dead,
                        sent: 0,
                        received: 0,
                        send_errors: 0,
                        rtt: LatencyHistogram::new(),
                    },
                }
            })
            .collect();
    }

    /// An echo request to ping-node address `link` was sent (`ok`) or refused by the kernel.
    pub fn record_ping_sent(&mut self, link: usize, ok: bool) {
        match self.ping.get_mut(link) {
            Some(p) if ok => p.sent = p.sent.saturating_add(1),
            Some(p) => p.send_errors = p.send_errors.saturating_add(1),
            None => self.count_unknown(),
        }
    }

    /// An echo reply from ping-node address `link` after `rtt`.
    pub fn record_ping_reply(&mut self, link: usize, rtt: Duration) {
        match self.ping.get_mut(link) {
            Some(p) => {
                p.received = p.received.saturating_add(1);
                p.rtt.record(rtt);
            }
            None => self.count_unknown(),
        }
    }

    /// Sets the state reported for ping-node address `addr` of `node`.
    pub fn set_ping_state(&mut self, node: &str, addr: &str, state: LinkState) {
        if let Some(p) = self
            .ping
            .iter_mut()
            .find(|p| p.node == node && p.addr == addr)
        {
            p.state = state;
        }
    }

    /// Metrics built from a configuration: every node but the local one is a peer, every
    /// distinct medium interface a link.
    pub fn from_config(config: &hb_proto::config::Config, now: Timestamp) -> Self {
        let peers: Vec<&str> = config
            .ha_cf
            .nodes
            .iter()
            .map(String::as_str)
            .filter(|n| *n != config.local_node)
            .collect();
        let mut links: Vec<&str> = Vec::new();
        for m in &config.ha_cf.media {
            if !links.contains(&m.iface()) {
                links.push(m.iface());
            }
        }
        Self::new(&config.local_node, &peers, &links, now).with_ping_links(&ping_links(config))
    }

    fn peer_mut(&mut self, peer: &str) -> Option<&mut PeerMetrics> {
        self.peers.iter_mut().find(|p| p.name == peer)
    }

    fn link_mut(&mut self, peer: &str, link: &str) -> Option<&mut LinkMetrics> {
        self.peer_mut(peer)?
            .links
            .iter_mut()
            .find(|l| l.name == link)
    }

    fn count_unknown(&mut self) {
        *self.errors.entry(UNKNOWN_PEER_OR_LINK).or_insert(0) += 1;
    }

    /// A heartbeat from `peer` arrived on `link` at `arrival` (kernel stamp); the daemon read
    /// it at `delivered_at` (when known: the delivery delay is `delivered_at - arrival`);
    /// `seq_gap` sequence numbers were skipped before it (0: none lost).
    pub fn record_heartbeat(
        &mut self,
        peer: &str,
        link: &str,
        arrival: Timestamp,
        delivered_at: Option<Timestamp>,
        seq_gap: u64,
    ) {
        let Some(l) = self.link_mut(peer, link) else {
            self.count_unknown();
            return;
        };
        l.received = l.received.saturating_add(1);
        l.lost = l.lost.saturating_add(seq_gap);
        if let Some(prev) = l.last_arrival
            && arrival >= prev
        {
            l.gap.record(arrival.saturating_since(prev));
        }
        if l.last_arrival.is_none_or(|prev| arrival > prev) {
            l.last_arrival = Some(arrival);
        }
        if let Some(d) = delivered_at {
            l.delivery.record(d.saturating_since(arrival));
        }
    }

    /// A round-trip time measured from an echoed send time.
    pub fn record_rtt(&mut self, peer: &str, link: &str, rtt: Duration) {
        match self.link_mut(peer, link) {
            Some(l) => l.rtt.record(rtt),
            None => self.count_unknown(),
        }
    }

    /// A heartbeat from `peer` came after `interval` of silence, more than `warntime`.
    pub fn record_late(&mut self, peer: &str, interval: Duration) {
        match self.peer_mut(peer) {
            Some(p) => {
                p.late = p.late.saturating_add(1);
                p.late_interval.record(interval);
            }
            None => self.count_unknown(),
        }
    }

    /// A packet was rejected for `reason` (a fixed label such as `"bad_auth"`).
    pub fn record_reject(&mut self, reason: &'static str) {
        *self.rejects.entry(reason).or_insert(0) += 1;
    }

    /// A socket or ring-buffer error of `kind` (a fixed label such as `"send_eperm"`).
    pub fn record_socket_error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// A takeover's timings.
    pub fn record_takeover(&mut self, peer: &str, t: TakeoverTimes) {
        self.takeover_count = self.takeover_count.saturating_add(1);
        let to_dead = t.declared_dead.saturating_since(t.last_heard);
        self.to_dead.record(to_dead);
        let to_resources = t
            .resources_started
            .map(|r| r.saturating_since(t.last_heard));
        if let Some(d) = to_resources {
            self.to_resources.record(d);
        }
        let to_garp = t.first_announce.map(|g| g.saturating_since(t.last_heard));
        if let Some(d) = to_garp {
            self.to_garp.record(d);
        }
        let to_fenced = t.fenced.map(|f| f.saturating_since(t.declared_dead));
        if let Some(d) = to_fenced {
            self.dead_to_fenced.record(d);
        }
        self.last_takeover = Some(TakeoverReport {
            peer: peer.to_owned(),
            to_dead_ns: duration_nanos(to_dead),
            to_resources_ns: to_resources.map(duration_nanos),
            to_garp_ns: to_garp.map(duration_nanos),
            dead_to_fenced_ns: to_fenced.map(duration_nanos),
        });
    }

    /// Sets the state reported for `peer`. A peer declared dead (or gone with a shutdown
    /// notice) ends every gap series of its links: the silence until it is heard again is an
    /// outage, not an inter-arrival gap.
    pub fn set_peer_state(&mut self, peer: &str, state: NodeState) {
        if let Some(p) = self.peer_mut(peer) {
            p.state = state;
            if state == NodeState::Dead {
                for l in &mut p.links {
                    l.last_arrival = None;
                }
            }
        }
    }

    /// Sets the state reported for `peer`'s `link`. A dead link ends its gap series (the next
    /// heartbeat on it starts a new one), so a gap never spans a death and a return.
    pub fn set_link_state(&mut self, peer: &str, link: &str, state: LinkState) {
        if let Some(l) = self.link_mut(peer, link) {
            l.state = state;
            if state == LinkState::Dead {
                l.last_arrival = None;
            }
        }
    }

    /// Everything recorded since the window started; `now` ends the window.
    pub fn snapshot_at(&self, now: Timestamp) -> StatsReport {
        let peers = self
            .peers
            .iter()
            .map(|p| PeerStats {
                peer: p.name.clone(),
                state: p.state,
                late: p.late,
                late_interval: p.late_interval.summary(),
                links: p
                    .links
                    .iter()
                    .map(|l| {
                        let expected = l.received.saturating_add(l.lost);
                        LinkStats {
                            link: l.name.clone(),
                            state: l.state,
                            received: l.received,
                            lost: l.lost,
                            loss_ratio: if expected == 0 {
                                0.0
                            } else {
                                l.lost as f64 / expected as f64
                            },
                            gap: l.gap.summary(),
                            delivery: l.delivery.summary(),
                            rtt: l.rtt.summary(),
                        }
                    })
                    .collect(),
            })
            .collect();
        StatsReport {
            local_node: self.local_node.clone(),
            window_ns: now.as_nanos().saturating_sub(self.window_start.as_nanos()),
            bucket_bounds_ns: BUCKET_BOUNDS_NS.to_vec(),
            peers,
            takeovers: TakeoverStats {
                count: self.takeover_count,
                to_dead: self.to_dead.summary(),
                to_resources: self.to_resources.summary(),
                to_garp: self.to_garp.summary(),
                dead_to_fenced: self.dead_to_fenced.summary(),
                last: self.last_takeover.clone(),
            },
            rejects: self
                .rejects
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            ping: self
                .ping
                .iter()
                .map(|p| PingStats {
                    node: p.node.clone(),
                    addr: p.addr.clone(),
                    state: p.state,
                    sent: p.sent,
                    received: p.received,
                    send_errors: p.send_errors,
                    rtt: p.rtt.summary(),
                })
                .collect(),
            ping_summary: None,
            arbiter: None,
            send: Vec::new(),
            delivery: Vec::new(),
        }
    }

    /// Everything recorded since the window started, ending the window now.
    pub fn snapshot(&self) -> StatsReport {
        self.snapshot_at(crate::net::monotonic_now())
    }

    /// Starts a new window at `now`: clears every histogram and counter (states are kept).
    pub fn reset_at(&mut self, now: Timestamp) {
        self.window_start = now;
        for p in &mut self.peers {
            p.late = 0;
            p.late_interval.reset();
            for l in &mut p.links {
                l.reset();
            }
        }
        self.takeover_count = 0;
        self.to_dead.reset();
        self.to_resources.reset();
        self.to_garp.reset();
        self.dead_to_fenced.reset();
        self.last_takeover = None;
        for v in self.rejects.values_mut() {
            *v = 0;
        }
        for v in self.errors.values_mut() {
            *v = 0;
        }
        for p in &mut self.ping {
            p.sent = 0;
            p.received = 0;
            p.send_errors = 0;
            p.rtt.reset();
        }
    }

    /// Starts a new window now.
    pub fn reset(&mut self) {
        self.reset_at(crate::net::monotonic_now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn metrics() -> Metrics {
        Metrics::new("node1", &["node2"], &["eth1", "eth2"], Timestamp(0))
    }

    #[test]
    fn reloaded_ping_links_keep_the_figures_of_addresses_that_stay() {
        let mut m = metrics().with_ping_links(&[("10.0.0.1", "10.0.0.1"), ("gw", "10.0.0.2")]);
        m.record_ping_sent(1, true);
        m.set_ping_state("gw", "10.0.0.2", LinkState::Up);
        m.set_ping_links(&[("gw", "10.0.0.2"), ("10.0.0.3", "10.0.0.3")]);
        let p = m.snapshot_at(Timestamp(0)).ping;
        let rows: Vec<_> = p
            .iter()
            .map(|p| (p.node.as_str(), p.addr.as_str(), p.state, p.sent))
            .collect();
        assert_eq!(
            rows,
            [
                ("gw", "10.0.0.2", LinkState::Up, 1),
                ("10.0.0.3", "10.0.0.3", LinkState::Dead, 0)
            ]
        );
    }

    #[test]
    fn heartbeats_give_gaps_delivery_and_loss() {
        let mut m = metrics();
        for i in 1..=100u64 {
            let arrival = Timestamp(i * 10 * MS);
            m.record_heartbeat(
                "node2",
                "eth1",
                arrival,
                Some(Timestamp(i * 10 * MS + 40_000)),
                0,
            );
        }
        // Two lost before the next one, which arrives 30 ms after the last.
        m.record_heartbeat("node2", "eth1", Timestamp(1030 * MS), None, 2);
        let r = m.snapshot_at(Timestamp(2000 * MS));
        assert_eq!(r.window_ns, 2000 * MS);
        let l = &r.peers[0].links[0];
        assert_eq!(l.link, "eth1");
        assert_eq!(l.received, 101);
        assert_eq!(l.lost, 2);
        assert!((l.loss_ratio - 2.0 / 103.0).abs() < 1e-12);
        assert_eq!(l.gap.count, 100);
        // 99 gaps of 10 ms and one of 30 ms.
        assert_eq!(l.gap.sum_ns, 99 * 10 * MS + 30 * MS);
        let within = |v: u64, want: u64| v.abs_diff(want) <= want / 500;
        assert!(within(l.gap.p50_ns, 10 * MS), "{}", l.gap.p50_ns);
        assert!(within(l.gap.max_ns, 30 * MS), "{}", l.gap.max_ns);
        assert_eq!(l.delivery.count, 100);
        assert!(within(l.delivery.p99_ns, 40_000));
        // Bucket counts: 10 ms gaps in the (5 ms, 10 ms] bucket, the 30 ms one in (20, 50].
        let b10 = BUCKET_BOUNDS_NS.iter().position(|&b| b == 10 * MS).unwrap();
        let b50 = BUCKET_BOUNDS_NS.iter().position(|&b| b == 50 * MS).unwrap();
        assert_eq!(l.gap.buckets[b10], 99);
        assert_eq!(l.gap.buckets[b50], 1);
        assert_eq!(l.gap.buckets.iter().sum::<u64>(), 100);
        // The other link saw nothing.
        assert_eq!(r.peers[0].links[1].received, 0);
        assert_eq!(r.peers[0].links[1].gap.count, 0);
    }

    #[test]
    fn rtt_late_rejects_errors_and_unknown_names() {
        let mut m = metrics();
        m.record_rtt("node2", "eth2", Duration::from_micros(250));
        m.record_late("node2", Duration::from_millis(80));
        m.record_reject("bad_auth");
        m.record_reject("bad_auth");
        m.record_socket_error("send_eperm");
        m.record_heartbeat("intruder", "eth1", Timestamp(1), None, 0);
        m.record_rtt("node2", "eth9", Duration::from_micros(1));
        let r = m.snapshot_at(Timestamp(1));
        assert_eq!(r.peers[0].links[1].rtt.count, 1);
        assert!(r.peers[0].links[1].rtt.p50_ns.abs_diff(250_000) <= 250);
        assert_eq!(r.peers[0].late, 1);
        assert_eq!(r.rejects.get("bad_auth"), Some(&2));
        assert_eq!(r.errors.get("send_eperm"), Some(&1));
        assert_eq!(r.errors.get(UNKNOWN_PEER_OR_LINK), Some(&2));
    }

    #[test]
    fn takeover_times_are_measured_from_the_last_heartbeat() {
        let mut m = metrics();
        m.record_takeover(
            "node2",
            TakeoverTimes {
                last_heard: Timestamp(100 * MS),
                declared_dead: Timestamp(150 * MS),
                resources_started: Some(Timestamp(152 * MS)),
                first_announce: Some(Timestamp(151 * MS)),
                fenced: Some(Timestamp(180 * MS)),
            },
        );
        let r = m.snapshot_at(Timestamp(200 * MS));
        assert_eq!(r.takeovers.count, 1);
        let last = r.takeovers.last.as_ref().unwrap();
        assert_eq!(last.to_dead_ns, 50 * MS);
        assert_eq!(last.to_resources_ns, Some(52 * MS));
        assert_eq!(last.to_garp_ns, Some(51 * MS));
        assert_eq!(last.dead_to_fenced_ns, Some(30 * MS));
        assert_eq!(r.takeovers.dead_to_fenced.count, 1);
        assert_eq!(r.takeovers.to_dead.sum_ns, 50 * MS);
    }

    #[test]
    fn reset_starts_a_new_window_and_keeps_states() {
        let mut m = metrics();
        m.set_peer_state("node2", NodeState::Up);
        m.set_link_state("node2", "eth1", LinkState::Up);
        m.record_heartbeat("node2", "eth1", Timestamp(MS), None, 0);
        m.record_heartbeat("node2", "eth1", Timestamp(2 * MS), None, 3);
        m.record_reject("bad_auth");
        m.reset_at(Timestamp(5 * MS));
        let r = m.snapshot_at(Timestamp(6 * MS));
        assert_eq!(r.window_ns, MS);
        let l = &r.peers[0].links[0];
        assert_eq!((l.received, l.lost, l.gap.count), (0, 0, 0));
        assert_eq!(l.state, LinkState::Up);
        assert_eq!(r.peers[0].state, NodeState::Up);
        assert_eq!(r.rejects.get("bad_auth"), Some(&0));
        // No gap is measured across the reset.
        m.record_heartbeat("node2", "eth1", Timestamp(7 * MS), None, 0);
        assert_eq!(
            m.snapshot_at(Timestamp(8 * MS)).peers[0].links[0].gap.count,
            0
        );
    }

    #[test]
    fn a_gap_never_spans_a_death_and_a_return() {
        let mut m = metrics();
        m.set_peer_state("node2", NodeState::Up);
        m.set_link_state("node2", "eth1", LinkState::Up);
        m.record_heartbeat("node2", "eth1", Timestamp(MS), None, 0);
        m.record_heartbeat("node2", "eth1", Timestamp(2 * MS), None, 0);
        // The link dies, the peer with it; it comes back 500 ms later.
        m.set_link_state("node2", "eth1", LinkState::Dead);
        m.set_peer_state("node2", NodeState::Dead);
        m.set_peer_state("node2", NodeState::Up);
        m.set_link_state("node2", "eth1", LinkState::Up);
        m.record_heartbeat("node2", "eth1", Timestamp(502 * MS), None, 0);
        m.record_heartbeat("node2", "eth1", Timestamp(503 * MS), None, 0);
        let gap = &m.snapshot_at(Timestamp(600 * MS)).peers[0].links[0].gap;
        assert_eq!(gap.count, 2, "1 ms before the death, 1 ms after the return");
        assert!(gap.max_ns < 2 * MS, "max gap {} ns", gap.max_ns);
        // A peer declared dead ends the series of every link, even one whose own state the
        // loop did not change (a shutdown notice).
        m.record_heartbeat("node2", "eth2", Timestamp(504 * MS), None, 0);
        m.set_peer_state("node2", NodeState::Dead);
        m.record_heartbeat("node2", "eth2", Timestamp(900 * MS), None, 0);
        let r = m.snapshot_at(Timestamp(901 * MS));
        assert_eq!(r.peers[0].links[1].gap.count, 0);
    }

    #[test]
    fn memory_does_not_grow_with_samples() {
        let mut h = LatencyHistogram::new();
        let before = h.hist.distinct_values();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..1_000_000 {
            // xorshift: values spread over and beyond the whole range.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.record(Duration::from_nanos(x % 120_000_000_000));
        }
        assert_eq!(h.count(), 1_000_000);
        assert_eq!(before, 27_648, "the documented size");
        assert_eq!(h.hist.distinct_values(), before);
        assert_eq!(h.distinct_buckets(), before);
        // Values beyond 60 s were clamped, not grown into.
        assert!(h.hist.max() <= h.hist.highest_equivalent(HIST_HIGH_NS));

        let mut m = metrics();
        m.record_heartbeat("node2", "eth1", Timestamp(0), Some(Timestamp(1)), 0);
        let size_before = m.peers[0].links[0].gap.distinct_buckets();
        for i in 1..1_000_000u64 {
            m.record_heartbeat(
                "node2",
                "eth1",
                Timestamp(i * 997),
                Some(Timestamp(i * 997 + i)),
                1,
            );
        }
        assert_eq!(m.peers[0].links[0].gap.distinct_buckets(), size_before);
        assert_eq!(m.peers[0].links[0].delivery.distinct_buckets(), size_before);
    }

    #[test]
    fn one_pass_percentiles_match_the_crate() {
        let mut h = LatencyHistogram::new();
        let mut x: u64 = 12345;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(Duration::from_nanos(1_000 + (x >> 40) % 50_000_000));
        }
        let s = h.summary();
        assert_eq!(s.p50_ns, h.hist.value_at_quantile(0.5));
        assert_eq!(s.p90_ns, h.hist.value_at_quantile(0.9));
        assert_eq!(s.p99_ns, h.hist.value_at_quantile(0.99));
        assert_eq!(s.p999_ns, h.hist.value_at_quantile(0.999));
        assert_eq!(s.buckets.iter().sum::<u64>() + s.overflow, 10_000);
    }

    #[test]
    fn above_a_bound_counts_the_later_buckets() {
        let mut h = LatencyHistogram::new();
        for ms in [1, 4, 6, 6, 30] {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.above(5_000_000), Some(3));
        assert_eq!(s.above(20_000_000), Some(1));
        assert_eq!(s.above(1_000), Some(5));
        assert_eq!(s.above(60_000_000_000), Some(0));
        // Not a bucket bound: the buckets cannot tell.
        assert_eq!(s.above(3_000_000), None);
    }

    #[test]
    fn from_config_takes_peers_and_distinct_interfaces() {
        use hb_proto::config::{AuthKeys, Config, parse_ha_cf};
        // Parsed from ha.cf text, so the test does not restate every HaCf field (each new
        // directive used to have to be added here by hand).
        let text = "keepalive 10ms\ndeadtime 50ms\nwarntime 30ms\ninitdead 100ms\n\
                    bcast eth1\nucast eth2 10.0.1.2\nucast eth1 10.0.0.3\n\
                    node node1 node2 node3\n";
        let ha_cf = parse_ha_cf(std::path::Path::new("ha.cf"), text.as_bytes())
            .unwrap()
            .value;
        let config = Config {
            config_dir: "/etc/ha.d".into(),
            local_node: "node2".into(),
            ha_cf,
            groups: vec![],
            authkeys: AuthKeys {
                active: 1,
                keys: Default::default(),
            },
            warnings: vec![],
        };
        let r = Metrics::from_config(&config, Timestamp(0)).snapshot_at(Timestamp(0));
        assert_eq!(r.local_node, "node2");
        let peers: Vec<&str> = r.peers.iter().map(|p| p.peer.as_str()).collect();
        assert_eq!(peers, ["node1", "node3"]);
        for p in &r.peers {
            let links: Vec<&str> = p.links.iter().map(|l| l.link.as_str()).collect();
            assert_eq!(links, ["eth1", "eth2"]);
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut m = metrics();
        m.record_heartbeat("node2", "eth1", Timestamp(MS), None, 0);
        m.record_heartbeat("node2", "eth1", Timestamp(3 * MS), None, 0);
        let r = m.snapshot_at(Timestamp(4 * MS));
        let back: StatsReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
