//! Issue 8 against the real hbd: with heartbeats every 10 ms and 20% loss injected on the
//! sender, `hbstat --json` on the receiver reports a loss rate near 20% and a p50 gap near
//! 10 ms; with no loss, nothing lost. hbd's Prometheus endpoint (`metrics_listen` on the
//! namespace's loopback) is scraped from inside the namespace and parsed with
//! `prometheus-parse`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use daemon_common::{lock, logged, spec, up_and_settled};
use hb_tests::{
    lab::{Lab, Node},
    require_root,
};
use prometheus_parse::{Scrape, Value};

const METRICS: &str = "127.0.0.1:9464";

/// n2's statistics for its link from n1: (received, lost, loss_ratio, gap p50 ms).
fn n2_link_stats(lab: &Lab) -> (u64, u64, f64, f64) {
    let out = lab.hbstat(Node::N2, &["--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peer = &v["peers"][0];
    assert_eq!(peer["peer"], "n1", "{v}");
    let link = &peer["links"][0];
    assert_eq!(link["link"], "eth1", "{v}");
    (
        link["received"].as_u64().unwrap(),
        link["lost"].as_u64().unwrap(),
        link["loss_ratio"].as_f64().unwrap(),
        link["gap"]["p50_ns"].as_u64().unwrap() as f64 / 1e6,
    )
}

/// Starts a new statistics window on n2, waits `d`, and reads n2's link statistics.
fn window(lab: &Lab, d: Duration) -> (u64, u64, f64, f64) {
    let out = lab.hbstat(Node::N2, &["--reset"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(d);
    n2_link_stats(lab)
}

/// `GET /metrics` from inside `ns`.
fn scrape_in(ns: String) -> String {
    std::thread::spawn(move || {
        hb_tests::lab::probe::enter_netns(&ns).unwrap();
        let mut s = TcpStream::connect(METRICS).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap()
}

fn sample(scrape: &Scrape, name: &str) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.get("peer") == Some("n1")
                && s.labels.get("link") == Some("eth1")
        })
        .unwrap_or_else(|| panic!("no sample {name}{{peer=\"n1\",link=\"eth1\"}}"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a scalar: {other:?}"),
    }
}

#[test]
fn hbstat_reports_injected_loss_and_gap_and_prometheus_parses() {
    if !require_root("hbstat_reports_injected_loss_and_gap_and_prometheus_parses") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.links = 1;
    // Large enough that 20% loss never kills the peer.
    spec.deadtime = Duration::from_millis(500);
    spec.warntime = Duration::from_millis(300);
    spec.initdead = Duration::from_secs(1);
    spec.extra_ha_cf = vec![format!("metrics_listen {METRICS}")];
    let keepalive_ms = spec.keepalive.as_secs_f64() * 1e3;
    let lab = up_and_settled(spec);

    // No loss: nothing lost.
    let (received, lost, ratio, p50) = window(&lab, Duration::from_secs(2));
    println!(
        "no loss, 2 s window: received {received}, lost {lost}, loss ratio {ratio:.3}, gap p50 {p50:.2} ms"
    );
    assert!(received > 100, "only {received} heartbeats in 2 s");
    assert_eq!(lost, 0);
    assert_eq!(ratio, 0.0);
    assert!(
        (keepalive_ms * 0.7..keepalive_ms * 1.5).contains(&p50),
        "gap p50 {p50} ms"
    );

    // 20% loss on n1's sends.
    lab.heartbeat_loss(Node::N1, 0.2, true).unwrap();
    let (received, lost, ratio, p50) = window(&lab, Duration::from_secs(4));
    println!(
        "20% loss injected, 4 s window: received {received}, lost {lost}, loss ratio {ratio:.3}, gap p50 {p50:.2} ms"
    );
    assert!(received > 200, "only {received} heartbeats in 4 s");
    // About 400 sent: 4 standard deviations either side of 0.2.
    assert!((0.12..0.28).contains(&ratio), "loss ratio {ratio}");
    let counted = lost as f64 / (received + lost) as f64;
    assert!(
        (counted - ratio).abs() < 0.02,
        "lost/(received+lost) {counted} vs {ratio}"
    );
    assert!(
        (keepalive_ms * 0.7..keepalive_ms * 1.5).contains(&p50),
        "gap p50 {p50} ms"
    );
    assert!(
        !logged(&lab, Node::N2, "is dead", 0),
        "n1 declared dead under 20% loss"
    );

    // The Prometheus endpoint, scraped from inside n2's namespace, parses and agrees.
    let text = scrape_in(lab.netns(Node::N2));
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let prom_lost = sample(&scrape, "hb_heartbeats_lost_total");
    let prom_received = sample(&scrape, "hb_heartbeats_received_total");
    let prom_ratio = sample(&scrape, "hb_heartbeat_loss_ratio");
    println!(
        "Prometheus: {} samples; n1/eth1 received {prom_received}, lost {prom_lost}, loss ratio {prom_ratio:.3}",
        scrape.samples.len()
    );
    assert!(
        prom_received >= received as f64,
        "{prom_received} < {received}"
    );
    assert!(prom_lost >= lost as f64, "{prom_lost} < {lost}");
    assert!(
        (0.12..0.28).contains(&prom_ratio),
        "loss ratio {prom_ratio}"
    );
    lab.heartbeat_loss(Node::N1, 0.2, false).unwrap();
}
