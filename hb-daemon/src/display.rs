//! Human-readable views of the control socket's reports, for `hbctl status` and `hbstat`.
//! Pure formatting of reports; no I/O, no decisions.

use std::fmt::Write as _;

use crate::{
    control::{DeliveryStatus, PingStatus, StatusReport},
    metrics::{HistogramSummary, LinkStats, StatsReport},
};

/// A duration in ns with three significant digits and a readable unit (`850ns`, `12.3us`,
/// `10.0ms`, `1.20s`).
pub fn duration_ns(ns: u64) -> String {
    let (value, unit) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 1_000_000 {
        (ns as f64 / 1e3, "us")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "ms")
    } else {
        (ns as f64 / 1e9, "s")
    };
    if value >= 100.0 {
        format!("{value:.0}{unit}")
    } else if value >= 10.0 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.2}{unit}")
    }
}

/// Whole seconds as `1h02m03s`, `4m05s` or `7s`.
pub fn uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn pad_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `hbctl status`: nodes with their state and links, then which node owns each group.
pub fn status(r: &StatusReport) -> String {
    let mut out = format!(
        "Local node: {} (generation {}, up {})\n\n",
        r.local_node,
        r.generation,
        uptime(r.uptime_secs)
    );
    let with_ping = r.ping.is_some();
    let mut header = vec![
        "NODE".to_owned(),
        "ID".to_owned(),
        "STATE".to_owned(),
        "LINKS".to_owned(),
    ];
    if with_ping {
        header.insert(3, "PING".to_owned());
    }
    let mut rows = vec![header];
    for n in &r.nodes {
        let links = if n.name == r.local_node {
            "(local)".to_owned()
        } else if n.links.is_empty() {
            "-".to_owned()
        } else {
            n.links
                .iter()
                .map(|l| match l.last_heartbeat_ms {
                    Some(ms) => format!(
                        "{} {} ({} ago)",
                        l.iface,
                        l.state.as_str(),
                        duration_ns(ms.saturating_mul(1_000_000))
                    ),
                    None => format!("{} {} (never heard)", l.iface, l.state.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut row = vec![
            n.name.clone(),
            format!("{:#010x}", n.id),
            n.state.as_str().to_owned(),
            links,
        ];
        if with_ping {
            let ping = n.ping.map_or_else(
                || "-".to_owned(),
                |c| {
                    let y = if c.yielding { " yielding" } else { "" };
                    format!("{}/{}{y}", c.reachable, c.configured)
                },
            );
            row.insert(3, ping);
        }
        rows.push(row);
    }
    out.push_str(&pad_table(&rows));
    out.push('\n');
    for n in &r.haresources_mismatch {
        let _ = writeln!(
            out,
            "haresources mismatch: node {n} has different haresources groups; no group is taken \
             over or released until the files agree.",
        );
    }
    for n in &r.fence_pending {
        let _ = writeln!(
            out,
            "fencing: node {n} is dead and not fenced yet; its groups are not taken over until \
             it is."
        );
    }
    if !r.haresources_mismatch.is_empty() || !r.fence_pending.is_empty() {
        out.push('\n');
    }
    if !r.delivery.is_empty() {
        delivery_section(&mut out, &r.delivery);
        out.push('\n');
    }
    if let Some(p) = &r.ping {
        ping_section(&mut out, p);
    }
    if let Some(a) = &r.arbiter {
        arbiter_section(&mut out, a);
    }
    if r.groups.is_empty() {
        out.push_str("No resource groups.\n");
        return out;
    }
    let mut rows = vec![vec![
        "GROUP".to_owned(),
        "PREFERRED".to_owned(),
        "OWNER".to_owned(),
        "LOCAL".to_owned(),
        "RESOURCES".to_owned(),
    ]];
    for g in &r.groups {
        rows.push(vec![
            g.index.to_string(),
            g.preferred_node.clone(),
            g.owner.clone().unwrap_or_else(|| "none".to_owned()),
            g.local.as_str().to_owned(),
            g.description.clone(),
        ]);
    }
    out.push_str(&pad_table(&rows));
    out
}

/// The arbiter: reachability, lease, and each group's key holder and epoch.
fn arbiter_section(out: &mut String, a: &crate::control::ArbiterReport) {
    let lease = match (&a.lease, a.lease_valid_ms) {
        (Some(l), Some(ms)) => format!("lease {l} valid here for {ms} ms"),
        _ => "no valid lease: no group is started or kept here".to_owned(),
    };
    let _ = writeln!(
        out,
        "arbiter: etcd {} {}, {lease}, {} lapse(s), {} key(s) lost",
        a.endpoints.join(","),
        if a.reachable {
            "reachable"
        } else {
            "UNREACHABLE"
        },
        a.lapses,
        a.keys_lost
    );
    for k in &a.keys {
        let holder = match (&k.holder, k.epoch) {
            (Some(h), Some(e)) => format!(", holder {h}, epoch {e}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  group {} key {}: {}{holder}",
            k.group, k.key, k.state
        );
    }
    out.push('\n');
}

/// One line per heartbeat interface: the XDP path (mode, the program's counters) or the
/// socket path and why. Empty when the report has none (an older hbd).
pub fn delivery_section(out: &mut String, delivery: &[DeliveryStatus]) {
    if delivery.is_empty() {
        return;
    }
    out.push_str("Heartbeat delivery:\n");
    for d in delivery {
        match (&d.mode, &d.xdp) {
            (Some(mode), Some(c)) => {
                let _ = writeln!(
                    out,
                    "  {}: XDP ({mode} mode); on this link: delivered {} ({} without a \
                     wake-up), passed {} (ring full {}, parse failures {}), junk dropped {}, \
                     sequence gaps {}",
                    d.iface,
                    c.delivered,
                    c.batched,
                    c.passed,
                    c.ring_full,
                    c.parse_failures,
                    c.dropped,
                    c.sequence_gaps
                );
                for p in &c.peers {
                    let _ = writeln!(
                        out,
                        "    from {}: {} heartbeats, {} sequence gaps",
                        p.peer, p.heartbeats, p.sequence_gaps
                    );
                }
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  {}: socket path ({})",
                    d.iface,
                    d.reason.as_deref().unwrap_or("XDP not attached")
                );
            }
        }
    }
}

fn ping_section(out: &mut String, p: &PingStatus) {
    let ipfail = if p.ipfail {
        format!(
            "ipfail on (settle {}): {}{}",
            duration_ns(p.settle_ms.saturating_mul(1_000_000)),
            p.comparison,
            if p.yielding {
                ", yielding: fewer ping nodes than a peer, groups given up"
            } else {
                ""
            }
        )
    } else {
        "ipfail off".to_owned()
    };
    let _ = writeln!(
        out,
        "Ping nodes: {}/{} reachable{}; {ipfail}",
        p.reachable,
        p.configured,
        if p.isolated { " (isolated)" } else { "" }
    );
    let mut rows = vec![vec![
        "PING NODE".to_owned(),
        "STATE".to_owned(),
        "ADDRESSES".to_owned(),
    ]];
    for n in &p.nodes {
        let addrs = n
            .addrs
            .iter()
            .map(|a| match a.last_reply_ms {
                Some(ms) => format!(
                    "{} {} ({} ago)",
                    a.addr,
                    a.state,
                    duration_ns(ms.saturating_mul(1_000_000))
                ),
                None => format!("{} {} (never answered)", a.addr, a.state),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let name = if n.group {
            format!("{} (group)", n.name)
        } else {
            n.name.clone()
        };
        rows.push(vec![name, n.state.clone(), addrs]);
    }
    out.push_str(&pad_table(&rows));
    if let Some(h) = &p.takeover_held {
        let _ = writeln!(out, "Takeover of {}'s groups held: {}", h.peer, h.reason);
    }
    out.push('\n');
}

fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p == 0.0 {
        "0%".to_owned()
    } else if p < 0.01 {
        format!("{p:.4}%")
    } else {
        format!("{p:.2}%")
    }
}

fn percentile_row(name: &str, h: &HistogramSummary) -> Vec<String> {
    if h.count == 0 {
        return vec![
            name.to_owned(),
            "0".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ];
    }
    vec![
        name.to_owned(),
        h.count.to_string(),
        duration_ns(h.p50_ns),
        duration_ns(h.p90_ns),
        duration_ns(h.p99_ns),
        duration_ns(h.p999_ns),
        duration_ns(h.max_ns),
    ]
}

/// Width of the longest bar drawn by [`bar_chart`].
pub const BAR_WIDTH: usize = 40;

/// The distribution of `h` as a bar chart over `bounds` (ns), one line per bucket from the
/// first to the last non-empty one, each prefixed with `indent`.
pub fn bar_chart(h: &HistogramSummary, bounds: &[u64], indent: &str) -> String {
    let mut out = String::new();
    let first = h.buckets.iter().position(|&c| c > 0);
    let last = h.buckets.iter().rposition(|&c| c > 0);
    let (Some(first), Some(last)) = (first, last) else {
        let _ = writeln!(out, "{indent}(no samples)");
        return out;
    };
    let max = h.buckets.iter().copied().max().unwrap_or(1).max(1);
    for i in first..=last {
        let count = h.buckets[i];
        let bound = bounds.get(i).copied().unwrap_or(0);
        let len = usize::try_from(count.saturating_mul(BAR_WIDTH as u64) / max).unwrap_or(0);
        // A non-empty bucket always shows at least a sliver.
        let bar = if count > 0 && len == 0 {
            ".".to_owned()
        } else {
            "#".repeat(len)
        };
        let _ = writeln!(
            out,
            "{indent}<= {:>7} |{bar:<w$} {count}",
            duration_ns(bound),
            w = BAR_WIDTH
        );
    }
    if h.overflow > 0 {
        let _ = writeln!(out, "{indent}>  {:>7} | {}", "max", h.overflow);
    }
    out
}

/// A table of percentiles, one row per named histogram, each line indented by `indent`.
fn percentile_table(out: &mut String, indent: &str, rows: &[(&str, &HistogramSummary)]) {
    let mut table = vec![
        ["", "samples", "p50", "p90", "p99", "p99.9", "max"]
            .map(str::to_owned)
            .to_vec(),
    ];
    table.extend(rows.iter().map(|(name, h)| percentile_row(name, h)));
    for line in pad_table(&table).lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn link_block(out: &mut String, l: &LinkStats, bounds: &[u64], histogram: bool) {
    let _ = writeln!(
        out,
        "  link {} ({}): received {}, lost {} ({})",
        l.link,
        l.state.as_str(),
        l.received,
        l.lost,
        percent(l.loss_ratio)
    );
    percentile_table(
        out,
        "    ",
        &[("gap", &l.gap), ("delivery", &l.delivery), ("rtt", &l.rtt)],
    );
    if histogram {
        for (name, h) in [("gap", &l.gap), ("delivery", &l.delivery), ("rtt", &l.rtt)] {
            if h.count > 0 {
                let _ = writeln!(out, "    {name} distribution:");
                out.push_str(&bar_chart(h, bounds, "      "));
            }
        }
    }
}

/// `hbstat`'s default view (with bar charts when `histogram`).
pub fn stats(r: &StatsReport, histogram: bool) -> String {
    let mut out = format!(
        "hbstat: node {}, window {}\n",
        r.local_node,
        uptime(r.window_ns / 1_000_000_000)
    );
    if !r.delivery.is_empty() {
        out.push('\n');
        delivery_section(&mut out, &r.delivery);
    }
    if r.peers.is_empty() {
        out.push_str("\nNo peers configured.\n");
    }
    for p in &r.peers {
        let _ = writeln!(
            out,
            "\npeer {} ({}): late heartbeats {}",
            p.peer,
            p.state.as_str(),
            p.late
        );
        for l in &p.links {
            link_block(&mut out, l, &r.bucket_bounds_ns, histogram);
        }
    }
    if !r.send.is_empty() {
        let _ = writeln!(
            out,
            "\nsending (periodic heartbeats; jitter = handed to the kernel - scheduled; wake-up = \
             the send thread woke - scheduled, the machine's part of the jitter):"
        );
        for l in &r.send {
            let _ = writeln!(out, "  link {}: sent {}", l.link, l.sent);
            percentile_table(
                &mut out,
                "    ",
                &[("jitter", &l.jitter), ("wake-up", &l.wakeup)],
            );
            if histogram && l.jitter.count > 0 {
                let _ = writeln!(out, "    jitter distribution:");
                out.push_str(&bar_chart(&l.jitter, &r.bucket_bounds_ns, "      "));
            }
        }
    }
    if let Some(sum) = &r.ping_summary {
        let peers = sum
            .peers
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "\nping nodes: {}/{} reachable{}{}{}",
            sum.reachable,
            sum.configured,
            if peers.is_empty() {
                String::new()
            } else {
                format!(" (peers: {peers})")
            },
            if sum.yielding {
                ", ipfail yielding"
            } else {
                ""
            },
            if sum.takeover_held {
                ", takeover held (isolated?)"
            } else {
                ""
            }
        );
    }
    if let Some(a) = &r.arbiter {
        out.push('\n');
        arbiter_section(&mut out, a);
    }
    for p in &r.ping {
        let _ = writeln!(
            out,
            "  ping {}{} ({}): sent {}, answered {}, send errors {}",
            p.node,
            if p.node == p.addr {
                String::new()
            } else {
                format!(" {}", p.addr)
            },
            p.state.as_str(),
            p.sent,
            p.received,
            p.send_errors
        );
        percentile_table(&mut out, "    ", &[("rtt", &p.rtt)]);
        if histogram && p.rtt.count > 0 {
            let _ = writeln!(out, "    rtt distribution:");
            out.push_str(&bar_chart(&p.rtt, &r.bucket_bounds_ns, "      "));
        }
    }
    let t = &r.takeovers;
    if t.count > 0 {
        let _ = writeln!(out, "\ntakeovers: {}", t.count);
        percentile_table(
            &mut out,
            "  ",
            &[
                ("to dead", &t.to_dead),
                ("to resources", &t.to_resources),
                ("to garp", &t.to_garp),
                ("dead to fenced", &t.dead_to_fenced),
            ],
        );
        if let Some(last) = &t.last {
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), duration_ns);
            let _ = writeln!(
                out,
                "  last: {} declared dead after {}, resources after {}, first ARP after {}, \
                 fenced {} after its death",
                last.peer,
                duration_ns(last.to_dead_ns),
                opt(last.to_resources_ns),
                opt(last.to_garp_ns),
                opt(last.dead_to_fenced_ns)
            );
        }
    }
    let nonzero = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
    };
    let rejects = nonzero(&r.rejects);
    let errors = nonzero(&r.errors);
    let _ = writeln!(
        out,
        "\nrejected packets: {}",
        if rejects.is_empty() {
            "none".to_owned()
        } else {
            rejects.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "errors: {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        control::{GroupStatus, HoldingState, LinkState, LinkStatus, NodeState, NodeStatusReport},
        metrics::{BUCKET_BOUNDS_NS, Metrics},
    };
    use hb_proto::Timestamp;

    #[test]
    fn durations_are_readable() {
        assert_eq!(duration_ns(850), "850ns");
        assert_eq!(duration_ns(12_345), "12.3us");
        assert_eq!(duration_ns(10_000_000), "10.0ms");
        assert_eq!(duration_ns(1_200_000_000), "1.20s");
        assert_eq!(duration_ns(250_000_000), "250ms");
        assert_eq!(uptime(3723), "1h02m03s");
        assert_eq!(uptime(245), "4m05s");
    }

    #[test]
    fn status_lists_nodes_links_and_owners() {
        let r = StatusReport {
            local_node: "node1".into(),
            generation: 42,
            uptime_secs: 65,
            ping: None,
            nodes: vec![
                NodeStatusReport {
                    name: "node1".into(),
                    ping: None,
                    id: 1,
                    state: NodeState::Up,
                    links: vec![],
                },
                NodeStatusReport {
                    name: "node2".into(),
                    ping: None,
                    id: 2,
                    state: NodeState::Dead,
                    links: vec![LinkStatus {
                        iface: "eth1".into(),
                        state: LinkState::Dead,
                        last_heartbeat_ms: Some(5200),
                    }],
                },
            ],
            groups: vec![GroupStatus {
                index: 0,
                description: "IPaddr::10.0.0.100/24/eth1 httpd".into(),
                preferred_node: "node2".into(),
                owner: Some("node1".into()),
                local: HoldingState::Held,
            }],
            haresources_mismatch: vec!["node2".into()],
            fence_pending: vec![],
            arbiter: None,
            delivery: vec![],
        };
        let s = status(&r);
        assert!(
            s.contains("haresources mismatch: node node2 has different haresources groups"),
            "{s}"
        );
        assert!(
            s.contains("Local node: node1 (generation 42, up 1m05s)"),
            "{s}"
        );
        let node2 = s.lines().find(|l| l.starts_with("node2")).unwrap();
        assert!(
            node2.contains("dead") && node2.contains("eth1 dead (5.20s ago)"),
            "{s}"
        );
        let group = s.lines().find(|l| l.starts_with('0')).unwrap();
        let words: Vec<&str> = group.split_whitespace().collect();
        assert_eq!(&words[..4], &["0", "node2", "node1", "held"]);
        assert!(group.ends_with("IPaddr::10.0.0.100/24/eth1 httpd"));
    }

    #[test]
    fn status_shows_ping_nodes_ipfail_and_a_held_takeover() {
        use crate::control::{PingAddrStatus, PingCountStatus, PingNodeStatus, TakeoverHeld};
        let counts = |reachable, yielding| {
            Some(PingCountStatus {
                reachable,
                configured: 1,
                yielding,
            })
        };
        let r = StatusReport {
            local_node: "node2".into(),
            generation: 1,
            uptime_secs: 5,
            haresources_mismatch: vec![],
            fence_pending: vec![],
            arbiter: None,
            delivery: vec![],
            ping: Some(Box::new(PingStatus {
                reachable: 0,
                configured: 1,
                ipfail: true,
                comparison: "fewer".into(),
                yielding: true,
                settle_ms: 200,
                isolated: true,
                takeover_held: Some(TakeoverHeld {
                    peer: "node1".into(),
                    reason: "no ping node answered".into(),
                }),
                nodes: vec![PingNodeStatus {
                    name: "10.0.0.254".into(),
                    group: false,
                    state: "dead".into(),
                    addrs: vec![PingAddrStatus {
                        addr: "10.0.0.254".into(),
                        state: "dead".into(),
                        last_reply_ms: Some(1500),
                    }],
                }],
            })),
            nodes: vec![
                NodeStatusReport {
                    name: "node1".into(),
                    ping: counts(1, false),
                    id: 1,
                    state: NodeState::Dead,
                    links: vec![],
                },
                NodeStatusReport {
                    name: "node2".into(),
                    ping: counts(0, true),
                    id: 2,
                    state: NodeState::Up,
                    links: vec![],
                },
            ],
            groups: vec![],
        };
        let s = status(&r);
        let node1 = s.lines().find(|l| l.starts_with("node1")).unwrap();
        assert!(node1.contains("1/1"), "{s}");
        let node2 = s.lines().find(|l| l.starts_with("node2")).unwrap();
        assert!(node2.contains("0/1 yielding"), "{s}");
        assert!(
            s.contains("Ping nodes: 0/1 reachable (isolated); ipfail on (settle 200ms): fewer"),
            "{s}"
        );
        assert!(s.contains("10.0.0.254 dead (1.50s ago)"), "{s}");
        assert!(
            s.contains("Takeover of node1's groups held: no ping node answered"),
            "{s}"
        );
    }

    #[test]
    fn delivery_says_xdp_mode_and_counters_or_socket_and_why() {
        use crate::control::{XdpCounters, XdpPeerCounters};
        let delivery = vec![
            DeliveryStatus {
                iface: "eth1".into(),
                path: "xdp".into(),
                mode: Some("native".into()),
                reason: None,
                xdp: Some(XdpCounters {
                    delivered: 900,
                    passed: 3,
                    ring_full: 2,
                    parse_failures: 1,
                    dropped: 7,
                    batched: 800,
                    sequence_gaps: 4,
                    peers: vec![XdpPeerCounters {
                        peer: "node2".into(),
                        heartbeats: 903,
                        sequence_gaps: 4,
                    }],
                }),
            },
            DeliveryStatus {
                iface: "eth2".into(),
                path: "socket".into(),
                mode: None,
                reason: Some("attach failed: no such device".into()),
                xdp: None,
            },
        ];
        let mut out = String::new();
        delivery_section(&mut out, &delivery);
        assert_eq!(
            out,
            "Heartbeat delivery:\n  eth1: XDP (native mode); on this link: delivered 900 (800 \
             without a wake-up), passed 3 (ring full 2, parse failures 1), junk dropped 7, \
             sequence gaps 4\n    from node2: 903 heartbeats, 4 sequence gaps\n  eth2: socket \
             path (attach failed: no such device)\n"
        );
        let json = serde_json::to_string(&delivery[1]).unwrap();
        assert_eq!(
            json,
            r#"{"iface":"eth2","path":"socket","reason":"attach failed: no such device"}"#
        );
    }

    #[test]
    fn stats_view_and_bar_chart() {
        let mut m = Metrics::new("node1", &["node2"], &["eth1"], Timestamp(0));
        for i in 0..1000u64 {
            m.record_heartbeat("node2", "eth1", Timestamp(i * 10_000_000), None, 0);
        }
        m.record_heartbeat("node2", "eth1", Timestamp(10_040_000_000), None, 3);
        m.record_reject("bad_auth");
        let r = m.snapshot_at(Timestamp(61_000_000_000));
        let s = stats(&r, true);
        assert!(s.contains("hbstat: node node1, window 1m01s"), "{s}");
        assert!(
            s.contains("link eth1 (dead): received 1001, lost 3 (0.30%)"),
            "{s}"
        );
        let gap = s
            .lines()
            .find(|l| l.trim_start().starts_with("gap "))
            .unwrap();
        let words: Vec<&str> = gap.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "gap", "1000", "10.0ms", "10.0ms", "10.0ms", "10.0ms", "50.0ms"
            ]
        );
        assert!(s.contains("rejected packets: bad_auth 1"), "{s}");
        assert!(
            !s.contains("sending"),
            "no send section without send statistics: {s}"
        );
        let mut send = crate::sender::SendStats::new(&["eth1"]);
        send.record(0, Timestamp(0), Timestamp(25_000), Timestamp(40_000));
        let mut r2 = r.clone();
        r2.send = send.report();
        let s2 = stats(&r2, false);
        assert!(s2.contains("  link eth1: sent 1\n"), "{s2}");
        let jitter = s2
            .lines()
            .find(|l| l.trim_start().starts_with("jitter "))
            .unwrap();
        assert_eq!(jitter.split_whitespace().nth(2), Some("40.0us"), "{s2}");
        let wakeup = s2
            .lines()
            .find(|l| l.trim_start().starts_with("wake-up "))
            .unwrap();
        assert_eq!(wakeup.split_whitespace().nth(2), Some("25.0us"), "{s2}");
        // The chart: 999 gaps in (5 ms, 10 ms], none in (10, 20], one in (20, 50]: the full
        // bar, an empty one and a sliver.
        let chart = bar_chart(&r.peers[0].links[0].gap, &BUCKET_BOUNDS_NS, "");
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 3, "{chart}");
        assert!(lines[0].contains("10.0ms") && lines[0].contains(&"#".repeat(BAR_WIDTH)));
        assert!(lines[0].ends_with(" 999"));
        assert!(
            lines[1].contains("20.0ms |") && lines[1].ends_with(" 0"),
            "{chart}"
        );
        assert!(
            lines[2].contains("50.0ms |.") && lines[2].ends_with(" 1"),
            "{chart}"
        );
    }
}
