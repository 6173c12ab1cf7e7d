//! Cost of hbd's metrics on the heartbeat path (`record_heartbeat`, `record_rtt`) and of a
//! `snapshot` (what `hbstat` and each Prometheus scrape cost the main loop), for one peer over
//! two links with a day of 1 kHz heartbeats' worth of spread in the histograms.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use hb_daemon::metrics::Metrics;
use hb_proto::Timestamp;

fn filled() -> Metrics {
    let mut m = Metrics::new("node1", &["node2"], &["eth1", "eth2"], Timestamp(0));
    let mut t = 0u64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Gaps around 1 ms with jitter, delivery delays of tens of microseconds.
        t += 900_000 + x % 200_000;
        for link in ["eth1", "eth2"] {
            m.record_heartbeat(
                "node2",
                link,
                Timestamp(t),
                Some(Timestamp(t + 20_000 + x % 80_000)),
                0,
            );
            m.record_rtt("node2", link, Duration::from_nanos(50_000 + x % 100_000));
        }
    }
    m
}

fn bench(c: &mut Criterion) {
    let mut m = filled();
    let mut t = 1_000_000_000_000u64;
    c.bench_function("metrics/record_heartbeat", |b| {
        b.iter(|| {
            t += 1_000_000;
            m.record_heartbeat(
                black_box("node2"),
                black_box("eth2"),
                Timestamp(t),
                Some(Timestamp(t + 35_000)),
                0,
            );
        })
    });
    c.bench_function("metrics/record_rtt", |b| {
        b.iter(|| {
            m.record_rtt(
                black_box("node2"),
                black_box("eth1"),
                Duration::from_micros(80),
            )
        })
    });
    let m = filled();
    c.bench_function("metrics/snapshot_1_peer_2_links", |b| {
        b.iter(|| black_box(m.snapshot_at(Timestamp(1))))
    });
    let report = m.snapshot_at(Timestamp(1));
    c.bench_function("metrics/prometheus_render", |b| {
        b.iter(|| black_box(hb_daemon::prometheus::render(black_box(&report))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
