//! Prometheus exposition: scrape `/metrics` over loopback from `prometheus::serve` with a fake
//! main loop, and parse it with the `prometheus-parse` crate.

// Test helpers outside #[test] functions: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
};

use prometheus_parse::{Sample, Scrape, Value};

fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

fn scalar(s: &Sample) -> f64 {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{} is not a scalar: {other:?}", s.metric),
    }
}

#[test]
fn scrape_parses_with_names_labels_and_values() {
    let (hbd, addr) = common::FakeHbd::start_metrics();

    let (head, body) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();

    let link = [("peer", "node2"), ("link", "eth1")];
    assert_eq!(
        scalar(find(&scrape, "hb_heartbeats_received_total", &link)),
        1001.0
    );
    assert!(matches!(
        find(&scrape, "hb_heartbeats_received_total", &link).value,
        Value::Counter(_)
    ));
    assert_eq!(
        scalar(find(&scrape, "hb_heartbeats_lost_total", &link)),
        5.0
    );
    assert!((scalar(find(&scrape, "hb_heartbeat_loss_ratio", &link)) - 5.0 / 1006.0).abs() < 1e-9);
    assert_eq!(scalar(find(&scrape, "hb_link_up", &link)), 1.0);
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_link_up",
            &[("peer", "node2"), ("link", "eth2")]
        )),
        0.0
    );
    assert_eq!(
        scalar(find(&scrape, "hb_peer_up", &[("peer", "node2")])),
        1.0
    );
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_peer_state",
            &[("peer", "node2"), ("state", "up")]
        )),
        1.0
    );
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_peer_state",
            &[("peer", "node2"), ("state", "dead")]
        )),
        0.0
    );
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_heartbeats_late_total",
            &[("peer", "node2")]
        )),
        1.0
    );
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_packets_rejected_total",
            &[("reason", "bad_auth")]
        )),
        1.0
    );
    assert_eq!(
        scalar(find(&scrape, "hb_errors_total", &[("kind", "send_eperm")])),
        1.0
    );
    assert_eq!(scalar(find(&scrape, "hb_takeovers_total", &[])), 1.0);
    assert_eq!(scalar(find(&scrape, "hb_stats_window_seconds", &[])), 20.0);

    // The gap histogram: 999 gaps of 10 ms and one of 50 ms (the 40 ms after the last plus
    // the 5 lost); cumulative buckets in seconds.
    let gap = find(&scrape, "hb_heartbeat_gap_seconds", &link);
    let Value::Histogram(buckets) = &gap.value else {
        panic!("{:?}", gap.value)
    };
    let at = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le || (b.less_than - le).abs() < 1e-12)
            .unwrap_or_else(|| panic!("no bucket le={le}"))
            .count
    };
    assert_eq!(at(0.005), 0.0);
    assert_eq!(at(0.01), 999.0);
    assert_eq!(at(0.02), 999.0);
    assert_eq!(at(0.05), 1000.0);
    assert_eq!(at(f64::INFINITY), 1000.0);
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    assert_eq!(
        scalar(find(&scrape, "hb_heartbeat_gap_seconds_count", &link)),
        1000.0
    );
    let sum = scalar(find(&scrape, "hb_heartbeat_gap_seconds_sum", &link));
    assert!((sum - (999.0 * 0.01 + 0.05)).abs() < 1e-9, "{sum}");
    let rtt = find(&scrape, "hb_heartbeat_rtt_seconds", &link);
    let Value::Histogram(rtt) = &rtt.value else {
        panic!()
    };
    assert_eq!(
        rtt.iter()
            .find(|b| (b.less_than - 0.0005).abs() < 1e-12)
            .unwrap()
            .count,
        1.0
    );
    assert_eq!(
        scalar(find(
            &scrape,
            "hb_heartbeat_delivery_delay_seconds_count",
            &link
        )),
        1000.0
    );
    assert_eq!(
        scalar(find(&scrape, "hb_takeover_detect_seconds_count", &[])),
        1.0
    );
    assert!((scalar(find(&scrape, "hb_takeover_detect_seconds_sum", &[])) - 0.05).abs() < 1e-12);
    assert!((scalar(find(&scrape, "hb_takeover_garp_seconds_sum", &[])) - 0.051).abs() < 1e-12);
    // Every family is documented.
    for name in [
        "hb_heartbeats_received_total",
        "hb_heartbeat_gap_seconds",
        "hb_heartbeat_delivery_delay_seconds",
        "hb_heartbeat_rtt_seconds",
        "hb_takeover_resources_seconds",
    ] {
        assert!(scrape.docs.contains_key(name), "{name} has no HELP");
    }

    let (head, _) = get(addr, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert_eq!(
        *hbd.seen.lock().unwrap(),
        vec![hb_daemon::control::Request::Stats]
    );
}

#[test]
fn every_metric_in_the_exposition_is_in_docs_metrics_md() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .unwrap();
    let mut report = common::metrics().snapshot_at(hb_proto::Timestamp(1));
    report.ping_summary = Some(hb_daemon::metrics::PingSummary {
        reachable: 1,
        configured: 1,
        ipfail: true,
        peers: [("node2".to_owned(), 1)].into_iter().collect(),
        ..Default::default()
    });
    report.arbiter = Some(Box::new(hb_daemon::control::ArbiterReport {
        endpoints: vec!["http://10.0.0.9:2379".into()],
        reachable: true,
        lease: Some("7".into()),
        lease_valid_ms: Some(1500),
        ttl_secs: Some(2),
        lapses: 1,
        keys_lost: 0,
        keys: vec![hb_daemon::control::ArbiterKeyReport {
            group: 0,
            key: "/hb/group/0".into(),
            state: "held".into(),
            holder: Some("node1".into()),
            epoch: Some(42),
        }],
    }));
    let mut send = hb_daemon::sender::SendStats::new(&["eth1"]);
    send.record(
        0,
        hb_proto::Timestamp(0),
        hb_proto::Timestamp(20_000),
        hb_proto::Timestamp(30_000),
    );
    report.send = send.report();
    report.delivery = vec![
        hb_daemon::control::DeliveryStatus {
            iface: "eth1".into(),
            path: "xdp".into(),
            mode: Some("generic".into()),
            reason: None,
            xdp: Some(hb_daemon::control::XdpCounters {
                delivered: 900,
                passed: 3,
                ring_full: 2,
                parse_failures: 1,
                dropped: 7,
                batched: 800,
                sequence_gaps: 4,
                peers: vec![],
            }),
        },
        hb_daemon::control::DeliveryStatus {
            iface: "eth2".into(),
            path: "socket".into(),
            mode: None,
            reason: Some("xdp off in ha.cf".into()),
            xdp: None,
        },
    ];
    let text = hb_daemon::prometheus::render(&report);
    for line in [
        "hb_heartbeat_path{link=\"eth1\",path=\"xdp\",mode=\"generic\"} 1",
        "hb_heartbeat_path{link=\"eth2\",path=\"socket\",mode=\"none\"} 1",
        "hb_xdp_heartbeats_delivered_total{link=\"eth1\"} 900",
        "hb_xdp_heartbeats_batched_total{link=\"eth1\"} 800",
        "hb_xdp_heartbeats_passed_total{link=\"eth1\"} 3",
        "hb_xdp_ring_full_total{link=\"eth1\"} 2",
        "hb_xdp_parse_failures_total{link=\"eth1\"} 1",
        "hb_xdp_junk_dropped_total{link=\"eth1\"} 7",
        "hb_xdp_sequence_gaps_total{link=\"eth1\"} 4",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("hb_xdp_heartbeats_delivered_total{link=\"eth2\"}"),
        "no XDP counters for a socket-path interface:\n{text}"
    );
    assert!(
        text.contains("hb_arbiter_lease_valid_seconds 1.5"),
        "{text}"
    );
    assert!(
        text.contains("hb_arbiter_group_held{group=\"0\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hb_arbiter_group_epoch{group=\"0\",holder=\"node1\"} 42"),
        "{text}"
    );
    assert!(
        text.contains("hb_heartbeats_sent_total{link=\"eth1\"} 1"),
        "{text}"
    );
    assert!(text.contains("hb_heartbeat_send_jitter_seconds_count{link=\"eth1\"} 1"));
    assert!(text.contains("hb_heartbeat_send_jitter_seconds_sum{link=\"eth1\"} 0.00003"));
    assert!(text.contains("hb_heartbeat_send_wakeup_seconds_count{link=\"eth1\"} 1"));
    assert!(text.contains("hb_heartbeat_send_wakeup_seconds_sum{link=\"eth1\"} 0.00002"));
    assert!(text.contains("hb_ping_rtt_seconds_count{node=\"10.0.0.254\",addr=\"10.0.0.254\"} 1"));
    assert!(text.contains("hb_peer_ping_nodes_reachable{peer=\"node2\"} 1"));
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} missing from docs/metrics.md"
        );
    }
}
