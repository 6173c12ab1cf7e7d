//! Prometheus exposition (text format 0.0.4) of hbd's statistics, over a tiny HTTP/1.1 server
//! started when ha.cf sets `metrics_listen ADDR:PORT` (off by default).
//! Owns only the HTTP framing; never keeps statistics or touches the node.
//!
//! The server holds no statistics of its own: each scrape asks the main loop for a
//! [`StatsReport`] through the same channel as the control socket ([`ControlCall`] with
//! [`Request::Stats`]) and renders it with [`render`]. The metrics are listed in
//! `docs/metrics.md`. `hbstat --reset` starts a new window, which Prometheus sees as a counter
//! reset.

use std::{fmt::Write as _, io, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

use crate::{
    control::{ControlCall, LinkState, NodeState, Request, Response},
    metrics::{HistogramSummary, StatsReport},
};

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Longest request head read, in bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, l: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {value}", labels(l));
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &HistogramSummary, bounds: &[u64]) {
        let mut cumulative = 0u64;
        for (bound, count) in bounds.iter().zip(&h.buckets) {
            cumulative += count;
            let le = secs(*bound).to_string();
            let mut with_le = l.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let mut with_le = l.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_le, h.count as f64);
        self.sample(&format!("{name}_sum"), l, secs(h.sum_ns));
        self.sample(&format!("{name}_count"), l, h.count as f64);
    }
}

/// Renders `report` in the Prometheus text format 0.0.4.
pub fn render(report: &StatsReport) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let b = &report.bucket_bounds_ns;
    let links = || {
        report
            .peers
            .iter()
            .flat_map(|p| p.links.iter().map(move |l| (p, l)))
    };

    f.header(
        "hb_stats_window_seconds",
        "gauge",
        "Length of the statistics window (since hbd started or the last reset).",
    );
    f.sample("hb_stats_window_seconds", &[], secs(report.window_ns));

    f.header(
        "hb_peer_up",
        "gauge",
        "1 when the peer is up (or in standby), else 0.",
    );
    for p in &report.peers {
        let up = matches!(p.state, NodeState::Up | NodeState::Standby);
        f.sample("hb_peer_up", &[("peer", &p.peer)], f64::from(u8::from(up)));
    }
    f.header(
        "hb_peer_state",
        "gauge",
        "1 for the peer's current state, 0 for the others (up, dead, init, standby, stopping).",
    );
    for p in &report.peers {
        for state in [
            NodeState::Up,
            NodeState::Dead,
            NodeState::Init,
            NodeState::Standby,
            NodeState::Stopping,
        ] {
            f.sample(
                "hb_peer_state",
                &[("peer", &p.peer), ("state", state.as_str())],
                f64::from(u8::from(p.state == state)),
            );
        }
    }
    f.header(
        "hb_link_up",
        "gauge",
        "1 when heartbeats arrive on the link, else 0.",
    );
    for (p, l) in links() {
        let up = l.state == LinkState::Up;
        f.sample(
            "hb_link_up",
            &[("peer", &p.peer), ("link", &l.link)],
            f64::from(u8::from(up)),
        );
    }

    f.header(
        "hb_heartbeats_received_total",
        "counter",
        "Heartbeats received from the peer on the link.",
    );
    for (p, l) in links() {
        let lb = [("peer", p.peer.as_str()), ("link", l.link.as_str())];
        f.sample("hb_heartbeats_received_total", &lb, l.received as f64);
    }
    f.header(
        "hb_heartbeats_lost_total",
        "counter",
        "Heartbeats lost (gaps in the peer's sequence numbers) on the link.",
    );
    for (p, l) in links() {
        let lb = [("peer", p.peer.as_str()), ("link", l.link.as_str())];
        f.sample("hb_heartbeats_lost_total", &lb, l.lost as f64);
    }
    f.header(
        "hb_heartbeat_loss_ratio",
        "gauge",
        "lost / (received + lost) over the window.",
    );
    for (p, l) in links() {
        let lb = [("peer", p.peer.as_str()), ("link", l.link.as_str())];
        f.sample("hb_heartbeat_loss_ratio", &lb, l.loss_ratio);
    }
    f.header(
        "hb_heartbeats_late_total",
        "counter",
        "Heartbeats from the peer that came after more than warntime of silence.",
    );
    for p in &report.peers {
        f.sample(
            "hb_heartbeats_late_total",
            &[("peer", &p.peer)],
            p.late as f64,
        );
    }

    for (name, help, pick) in [
        (
            "hb_heartbeat_gap_seconds",
            "Inter-arrival gap of heartbeats.",
            (|l: &crate::metrics::LinkStats| &l.gap)
                as fn(&crate::metrics::LinkStats) -> &HistogramSummary,
        ),
        (
            "hb_heartbeat_delivery_delay_seconds",
            "Delay from the kernel's arrival stamp to the daemon reading the heartbeat.",
            |l| &l.delivery,
        ),
        (
            "hb_heartbeat_rtt_seconds",
            "Round-trip time from echoed send times.",
            |l| &l.rtt,
        ),
    ] {
        f.header(name, "histogram", help);
        for (p, l) in links() {
            let lb = [("peer", p.peer.as_str()), ("link", l.link.as_str())];
            f.histogram(name, &lb, pick(l), b);
        }
    }
    f.header(
        "hb_heartbeat_late_interval_seconds",
        "histogram",
        "Silences longer than warntime that ended with a late heartbeat.",
    );
    for p in &report.peers {
        f.histogram(
            "hb_heartbeat_late_interval_seconds",
            &[("peer", &p.peer)],
            &p.late_interval,
            b,
        );
    }

    f.header(
        "hb_heartbeats_sent_total",
        "counter",
        "Periodic heartbeats sent on the link by the send thread.",
    );
    for l in &report.send {
        f.sample(
            "hb_heartbeats_sent_total",
            &[("link", &l.link)],
            l.sent as f64,
        );
    }
    type SendHistogram = fn(&crate::sender::SendLinkStats) -> &HistogramSummary;
    let send: [(&str, &str, SendHistogram); 2] = [
        (
            "hb_heartbeat_send_jitter_seconds",
            "Send jitter: when a periodic heartbeat was handed to the kernel minus when it was due.",
            |l| &l.jitter,
        ),
        (
            "hb_heartbeat_send_wakeup_seconds",
            "The wake-up part of the send jitter: when the send thread woke for a periodic \
             heartbeat minus when it was due (the machine's part; the rest is hbd's own).",
            |l| &l.wakeup,
        ),
    ];
    for (name, help, get) in send {
        f.header(name, "histogram", help);
        for l in &report.send {
            f.histogram(name, &[("link", &l.link)], get(l), b);
        }
    }

    ping(&mut f, report);
    arbiter(&mut f, report);
    delivery(&mut f, report);

    let t = &report.takeovers;
    f.header(
        "hb_takeovers_total",
        "counter",
        "Takeovers of a dead peer's groups.",
    );
    f.sample("hb_takeovers_total", &[], t.count as f64);
    for (name, help, h) in [
        (
            "hb_takeover_detect_seconds",
            "Time from the last heartbeat heard to the peer declared dead.",
            &t.to_dead,
        ),
        (
            "hb_takeover_resources_seconds",
            "Time from the last heartbeat heard to the taken groups' resources started.",
            &t.to_resources,
        ),
        (
            "hb_takeover_garp_seconds",
            "Time from the last heartbeat heard to the first gratuitous ARP sent.",
            &t.to_garp,
        ),
        (
            "hb_takeover_fence_seconds",
            "Time from the peer declared dead to the peer fenced (takeovers that fenced).",
            &t.dead_to_fenced,
        ),
    ] {
        f.header(name, "histogram", help);
        f.histogram(name, &[], h, b);
    }

    f.header(
        "hb_packets_rejected_total",
        "counter",
        "Packets rejected, by reason.",
    );
    for (reason, n) in &report.rejects {
        f.sample(
            "hb_packets_rejected_total",
            &[("reason", reason)],
            *n as f64,
        );
    }
    f.header(
        "hb_errors_total",
        "counter",
        "Socket and ring-buffer errors, by kind.",
    );
    for (kind, n) in &report.errors {
        f.sample("hb_errors_total", &[("kind", kind)], *n as f64);
    }
    out
}

/// Per heartbeat interface: the delivery path and, on the XDP path, the program's counters for
/// that interface (since hbd loaded the program: a `--reset` does not restart them).
fn delivery(f: &mut Family<'_>, report: &StatsReport) {
    if report.delivery.is_empty() {
        return;
    }
    f.header(
        "hb_heartbeat_path",
        "gauge",
        "1 for the path heartbeats take on the interface: xdp (mode native or generic) or socket (mode none).",
    );
    for d in &report.delivery {
        let mode = d.mode.as_deref().unwrap_or("none");
        f.sample(
            "hb_heartbeat_path",
            &[("link", &d.iface), ("path", &d.path), ("mode", mode)],
            1.0,
        );
    }
    type Get = fn(&crate::control::XdpCounters) -> u64;
    let series: [(&str, &str, Get); 7] = [
        (
            "hb_xdp_heartbeats_delivered_total",
            "Heartbeats the XDP program handed to hbd through its ring buffer, per interface.",
            |c| c.delivered,
        ),
        (
            "hb_xdp_heartbeats_batched_total",
            "Of the delivered heartbeats, those queued without waking hbd (they repeated their sender's state while the core was steady), per interface.",
            |c| c.batched,
        ),
        (
            "hb_xdp_heartbeats_passed_total",
            "Heartbeats the XDP program passed to the socket path instead (ring full or parse failure), per interface.",
            |c| c.passed,
        ),
        (
            "hb_xdp_ring_full_total",
            "Heartbeats passed because the ring buffer was full, per interface.",
            |c| c.ring_full,
        ),
        (
            "hb_xdp_parse_failures_total",
            "Heartbeats passed because the program could not copy them into a record, per interface.",
            |c| c.parse_failures,
        ),
        (
            "hb_xdp_junk_dropped_total",
            "Datagrams to the heartbeat port that are not hb messages, dropped by the XDP program, per interface.",
            |c| c.dropped,
        ),
        (
            "hb_xdp_sequence_gaps_total",
            "Sequence numbers the XDP program saw skipped, over the interface's peers.",
            |c| c.sequence_gaps,
        ),
    ];
    for (name, help, get) in series {
        f.header(name, "counter", help);
        for d in &report.delivery {
            if let Some(c) = &d.xdp {
                f.sample(name, &[("link", &d.iface)], get(c) as f64);
            }
        }
    }
}

/// The etcd arbiter (nothing without `arbiter`).
fn arbiter(f: &mut Family<'_>, report: &StatsReport) {
    let Some(a) = &report.arbiter else { return };
    f.header(
        "hb_arbiter_reachable",
        "gauge",
        "1 when the last etcd lease grant or renewal succeeded.",
    );
    f.sample(
        "hb_arbiter_reachable",
        &[],
        f64::from(u8::from(a.reachable)),
    );
    f.header(
        "hb_arbiter_lease_valid_seconds",
        "gauge",
        "How long this node's etcd lease stays valid here without another renewal (0: none).",
    );
    f.sample(
        "hb_arbiter_lease_valid_seconds",
        &[],
        a.lease_valid_ms.unwrap_or(0) as f64 / 1000.0,
    );
    f.header(
        "hb_arbiter_lease_lapses_total",
        "counter",
        "Times the lease was not renewed in time and this node stopped its groups.",
    );
    f.sample("hb_arbiter_lease_lapses_total", &[], a.lapses as f64);
    f.header(
        "hb_arbiter_keys_lost_total",
        "counter",
        "Times a key held here was found deleted or replaced (by hand) and its group stopped.",
    );
    f.sample("hb_arbiter_keys_lost_total", &[], a.keys_lost as f64);
    f.header(
        "hb_arbiter_group_held",
        "gauge",
        "1 when this node holds the group's etcd key under its valid lease.",
    );
    for k in &a.keys {
        let g = k.group.to_string();
        f.sample(
            "hb_arbiter_group_held",
            &[("group", &g)],
            f64::from(u8::from(k.state == "held")),
        );
    }
    f.header(
        "hb_arbiter_group_epoch",
        "gauge",
        "The fencing epoch (etcd create_revision) of the group's key, by holder, as last seen.",
    );
    for k in &a.keys {
        if let (Some(h), Some(e)) = (&k.holder, k.epoch) {
            let g = k.group.to_string();
            f.sample(
                "hb_arbiter_group_epoch",
                &[("group", &g), ("holder", h)],
                e as f64,
            );
        }
    }
}

/// Ping nodes and the built-in ipfail (nothing without ping nodes).
fn ping(f: &mut Family<'_>, report: &StatsReport) {
    let b = &report.bucket_bounds_ns;
    if let Some(s) = &report.ping_summary {
        for (name, help, v) in [
            (
                "hb_ping_nodes_reachable",
                "Ping nodes this node reaches (a ping_group counts once).",
                s.reachable,
            ),
            (
                "hb_ping_nodes_configured",
                "Ping nodes configured (ping and ping_group lines).",
                s.configured,
            ),
            (
                "hb_ipfail_yielding",
                "1 when the built-in ipfail gave this node's groups up (fewer ping nodes than a peer).",
                u8::from(s.yielding),
            ),
            (
                "hb_takeover_held",
                "1 when a dead peer's groups are not taken over: no ping node answered since it went silent.",
                u8::from(s.takeover_held),
            ),
        ] {
            f.header(name, "gauge", help);
            f.sample(name, &[], f64::from(v));
        }
        f.header(
            "hb_peer_ping_nodes_reachable",
            "gauge",
            "Ping nodes the peer reaches, as announced in its heartbeats.",
        );
        for (peer, n) in &s.peers {
            f.sample(
                "hb_peer_ping_nodes_reachable",
                &[("peer", peer)],
                f64::from(*n),
            );
        }
    }
    if report.ping.is_empty() {
        return;
    }
    f.header(
        "hb_ping_up",
        "gauge",
        "1 when the ping-node address answered within deadping, else 0.",
    );
    for p in &report.ping {
        let lb = [("node", p.node.as_str()), ("addr", p.addr.as_str())];
        f.sample(
            "hb_ping_up",
            &lb,
            f64::from(u8::from(p.state == LinkState::Up)),
        );
    }
    for (name, help, pick) in [
        (
            "hb_ping_requests_total",
            "ICMP echo requests sent to the ping-node address.",
            (|p: &crate::metrics::PingStats| p.sent) as fn(&crate::metrics::PingStats) -> u64,
        ),
        (
            "hb_ping_replies_total",
            "ICMP echo replies received from the ping-node address.",
            |p| p.received,
        ),
        (
            "hb_ping_send_errors_total",
            "Echo requests the kernel refused to send (iptables DROP, no route).",
            |p| p.send_errors,
        ),
    ] {
        f.header(name, "counter", help);
        for p in &report.ping {
            let lb = [("node", p.node.as_str()), ("addr", p.addr.as_str())];
            f.sample(name, &lb, pick(p) as f64);
        }
    }
    f.header(
        "hb_ping_rtt_seconds",
        "histogram",
        "Round-trip time of ICMP echo to the ping-node address (send to the reply's kernel stamp).",
    );
    for p in &report.ping {
        let lb = [("node", p.node.as_str()), ("addr", p.addr.as_str())];
        f.histogram("hb_ping_rtt_seconds", &lb, &p.rtt, b);
    }
}

/// Answers `GET /metrics` on `listener` until `calls` is closed.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<ControlCall>) {
    crate::control::accept_until_closed("metrics listener", || listener.accept(), &calls, handle)
        .await;
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(head);
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
            return Ok(head);
        }
    }
}

async fn handle(mut stream: TcpStream, calls: mpsc::Sender<ControlCall>) -> io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        )
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_owned())
    } else {
        let (reply, answer) = oneshot::channel();
        let sent = calls
            .send(ControlCall {
                request: Request::Stats,
                reply,
            })
            .await;
        match (sent, answer.await) {
            (Ok(()), Ok(Response::Stats(report))) => ("200 OK", CONTENT_TYPE, render(&report)),
            _ => (
                "503 Service Unavailable",
                "text/plain",
                "hbd is not answering\n".to_owned(),
            ),
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
