//! A running node's live changes (new timings from a reload) and what a stop that keeps failing
//! leads to (self-fence with fencing configured; keep and retry without; a bounded clean stop).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PeerMsg, Timing, config, drain, events, groups, ms, sent};
use hb_proto::{
    Timestamp,
    config::{AutoFailback, Config, Timings},
    message::{Holding, MessageKind},
    node::{
        Command, Event, LinkId, Node, Output, PeerState, ResourceOp, ResourceTimes,
        SHUTDOWN_STOP_ATTEMPTS,
    },
};

const SLOW: Timing = Timing {
    keepalive: Duration::from_millis(100),
    deadtime: Duration::from_millis(500),
    warntime: Duration::from_millis(300),
    initdead: Duration::from_millis(1000),
};

fn fast() -> Timings {
    Timings {
        keepalive: Duration::from_millis(10),
        deadtime: Duration::from_millis(50),
        warntime: Duration::from_millis(30),
        initdead: Duration::from_millis(100),
    }
}

/// Runs the node's timer from `from` to `to` (exclusive), returning the send times of the
/// heartbeats it sent and every output.
fn run(node: &mut Node, to: Timestamp) -> (Vec<Timestamp>, Vec<Output>) {
    let mut times = Vec::new();
    let mut all = Vec::new();
    while let Some(t) = node.poll_timeout() {
        if t >= to {
            break;
        }
        node.handle_timeout(t);
        let outs = drain(node);
        times.extend(sent(&outs).iter().map(|m| m.send_time));
        all.extend(outs);
    }
    times.dedup();
    (times, all)
}

#[test]
fn a_new_keepalive_applies_from_the_next_heartbeat() {
    let cfg = config(&["node1"], "node1", vec![], SLOW, AutoFailback::On, 1);
    let mut node = Node::new(&cfg, 1, ms(0)).unwrap();
    drain(&mut node);
    let (before, _) = run(&mut node, ms(250));
    assert_eq!(before, [ms(100), ms(200)]);
    // Shorter: the next heartbeat comes forward to now + 10 ms.
    node.set_timings(ms(250), fast());
    let outs = drain(&mut node);
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, Event::TimingsChanged { .. })),
        "{outs:?}"
    );
    let (after, _) = run(&mut node, ms(300));
    assert_eq!(after, [ms(260), ms(270), ms(280), ms(290)]);
    // Longer again: the one scheduled stays, then the new interval.
    node.set_timings(
        ms(300),
        Timings {
            keepalive: Duration::from_millis(100),
            ..fast()
        },
    );
    // The heartbeat due at 300 ms went out with the reload; then every 100 ms.
    let at_reload: Vec<Timestamp> = sent(&drain(&mut node))
        .iter()
        .map(|m| m.send_time)
        .collect();
    assert_eq!(at_reload, [ms(300)]);
    let (later, _) = run(&mut node, ms(520));
    assert_eq!(later, [ms(400), ms(500)]);
}

/// node1 with node2 up, both on `SLOW` timings; node2's heartbeats every `every` ms from
/// `from` to `to`, node1's timer run in between. Returns node1's events.
fn feed(node: &mut Node, seq: &mut u64, from: u64, to: u64, every: u64) -> Vec<Event> {
    let mut evs = Vec::new();
    let mut t = from;
    while t < to {
        let (_, outs) = run(node, ms(t));
        evs.extend(events(&outs));
        *seq += 1;
        let msg = PeerMsg::hb("node2", 1, *seq, ms(t), 0).digest(&[]).msg;
        node.handle_message(ms(t), LinkId(0), ms(t), msg);
        evs.extend(events(&drain(node)));
        t += every;
    }
    evs
}

#[test]
fn a_shorter_deadtime_waits_for_the_peer_to_reload_too() {
    let cfg = config(
        &["node1", "node2"],
        "node1",
        vec![],
        SLOW,
        AutoFailback::On,
        1,
    );
    let mut node = Node::new(&cfg, 1, ms(0)).unwrap();
    drain(&mut node);
    let mut seq = 0;
    feed(&mut node, &mut seq, 0, 1000, 100);
    assert_eq!(node.peer_state("node2"), Some(PeerState::Up));
    // node1 reloads to deadtime 50 ms; node2 still sends every 100 ms (not reloaded yet).
    node.set_timings(ms(1000), fast());
    let outs = drain(&mut node);
    let changed = events(&outs)
        .into_iter()
        .find(|e| matches!(e, Event::TimingsChanged { .. }))
        .unwrap();
    assert!(
        changed.to_string().contains("stays in force for node2"),
        "{changed}"
    );
    let evs = feed(&mut node, &mut seq, 1000, 2000, 100);
    assert!(
        !evs.iter().any(|e| matches!(e, Event::NodeDead { .. })),
        "declared dead while it kept its old pace: {evs:?}"
    );
    assert_eq!(node.peer_state("node2"), Some(PeerState::Up));
    // node2 reloads: heartbeats every 10 ms; from then the 50 ms deadtime is in force.
    feed(&mut node, &mut seq, 2000, 2100, 10);
    let (_, outs) = run(&mut node, ms(2200));
    let dead: Vec<String> = events(&outs)
        .iter()
        .filter(|e| matches!(e, Event::NodeDead { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(dead, ["node node2: is dead"]);
    // Last heartbeat at 2090 ms: declared dead at 2140 ms, the new deadtime.
    let status = node.status();
    let n2 = status.nodes.iter().find(|n| n.name == "node2").unwrap();
    assert_eq!(n2.last_arrival, Some(ms(2090)));
}

/// A one-node cluster holding group 0, with or without fencing.
fn holding(fence: bool) -> (Node, Config) {
    let mut cfg = config(
        &["node1"],
        "node1",
        groups(&["node1"]),
        Timing::FAST,
        AutoFailback::On,
        1,
    );
    if fence {
        cfg.ha_cf.self_fence_command = Some(vec!["/usr/local/sbin/fence-me".into()]);
    }
    let mut node = Node::new(&cfg, 1, ms(0)).unwrap();
    let outs = drain(&mut node);
    assert!(outs.contains(&Output::Resource {
        group: 0,
        op: ResourceOp::Start
    }));
    node.handle_resource_result(ms(1), 0, ResourceOp::Start, Ok(ResourceTimes::default()));
    drain(&mut node);
    assert_eq!(node.holding(0), Some(Holding::Held));
    (node, cfg)
}

fn stop_fails(node: &mut Node, at: Timestamp) -> Vec<Output> {
    node.handle_resource_result(at, 0, ResourceOp::Stop, Err("stuck: exit 1".into()));
    drain(node)
}

fn reboot_required(outs: &[Output]) -> Vec<String> {
    events(outs)
        .iter()
        .filter(|e| matches!(e, Event::StopFailureRebootRequired { .. }))
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_failed_stop_with_fencing_fences_once_then_heartbeats_stop_without_a_notice() {
    let (mut node, _) = holding(true);
    node.handle_command(ms(10), Command::Shutdown);
    let outs = drain(&mut node);
    assert!(outs.contains(&Output::Resource {
        group: 0,
        op: ResourceOp::Stop
    }));
    let outs = stop_fails(&mut node, ms(20));
    assert_eq!(
        reboot_required(&outs),
        ["Resource STOP failure. Reboot required! \
          (node1 IPaddr::10.0.0.100/24/eth0 httpd; fencing this node)"]
    );
    assert!(outs.contains(&Output::SelfFence { group: 0 }), "{outs:?}");
    // The group stays Stopping while the fence runs; a second failure asks no second fence.
    assert_eq!(node.holding(0), Some(Holding::Stopping));
    let (_, outs) = run(&mut node, ms(200));
    assert!(outs.contains(&Output::Resource {
        group: 0,
        op: ResourceOp::Stop
    }));
    let outs = stop_fails(&mut node, ms(200));
    assert!(!outs.iter().any(|o| matches!(o, Output::SelfFence { .. })));
    node.handle_self_fence_result(ms(210), Ok(()));
    let outs = drain(&mut node);
    assert!(events(&outs).contains(&Event::SelfFenced));
    assert!(node.is_stopped() && node.is_self_fenced());
    assert!(
        !sent(&outs).iter().any(|m| m.kind == MessageKind::Shutdown),
        "a fenced node sends no shutdown notice"
    );
    assert_eq!(node.poll_timeout(), None, "no more heartbeats");
}

#[test]
fn a_failed_fence_keeps_the_group_and_retries() {
    let (mut node, _) = holding(true);
    node.handle_command(ms(10), Command::Standby(hb_proto::node::Scope::All));
    drain(&mut node);
    // A one-node cluster keeps its group in standby (last resort): stop it by shutdown.
    node.handle_command(ms(11), Command::Shutdown);
    drain(&mut node);
    let outs = stop_fails(&mut node, ms(20));
    assert!(outs.contains(&Output::SelfFence { group: 0 }));
    node.handle_self_fence_result(ms(30), Err("fence-me: exit 1".into()));
    let outs = drain(&mut node);
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, Event::SelfFenceFailed { .. })),
        "{outs:?}"
    );
    assert!(!node.is_stopped());
    assert_eq!(node.holding(0), Some(Holding::Stopping));
    // The next failure asks for the fence again.
    let (_, outs) = run(&mut node, ms(2000));
    assert!(outs.contains(&Output::Resource {
        group: 0,
        op: ResourceOp::Stop
    }));
    let outs = stop_fails(&mut node, ms(2000));
    assert!(outs.contains(&Output::SelfFence { group: 0 }));
}

#[test]
fn without_fencing_a_failed_stop_is_kept_and_retried_and_shown() {
    let (mut node, _) = holding(false);
    // Only a clean stop releases the group of a one-node cluster.
    node.handle_command(ms(10), Command::Shutdown);
    drain(&mut node);
    let outs = stop_fails(&mut node, ms(20));
    assert_eq!(
        reboot_required(&outs),
        [
            "Resource STOP failure. Reboot required! (node1 IPaddr::10.0.0.100/24/eth0 httpd; \
          no fencing configured: keeping the group and retrying its stop)"
        ]
    );
    assert!(!outs.iter().any(|o| matches!(o, Output::SelfFence { .. })));
    assert_eq!(node.holding(0), Some(Holding::Stopping));
    assert_eq!(node.status().groups[0].stop_failures, 1);
    // A clean stop retries every second and gives up after SHUTDOWN_STOP_ATTEMPTS failures.
    let mut now = 20;
    for attempt in 2..=SHUTDOWN_STOP_ATTEMPTS {
        let (_, outs) = run(&mut node, ms(now + 1001));
        assert!(
            outs.contains(&Output::Resource {
                group: 0,
                op: ResourceOp::Stop
            }),
            "attempt {attempt}: {outs:?}"
        );
        now += 1000;
        let outs = stop_fails(&mut node, ms(now));
        if attempt < SHUTDOWN_STOP_ATTEMPTS {
            assert!(!node.is_stopped());
        } else {
            let lines: Vec<String> = events(&outs).iter().map(ToString::to_string).collect();
            assert!(
                lines.contains(
                    &"hb: shutdown incomplete: resources left running: \
                      node1 IPaddr::10.0.0.100/24/eth0 httpd"
                        .to_string()
                ),
                "{lines:?}"
            );
            assert!(!sent(&outs).iter().any(|m| m.kind == MessageKind::Shutdown));
        }
    }
    assert!(node.is_stopped() && !node.is_self_fenced());
    assert_eq!(
        node.left_running(),
        ["node1 IPaddr::10.0.0.100/24/eth0 httpd"]
    );
}

#[test]
fn a_clean_stop_counts_only_its_own_failed_stops() {
    let cfg = config(
        &["node1"],
        "node1",
        groups(&["node1"]),
        Timing::FAST,
        AutoFailback::On,
        1,
    );
    let mut node = Node::new(&cfg, 1, ms(0)).unwrap();
    drain(&mut node);
    // The start fails, and so does every stop while running (back-off 50, 100, 200, 400 ms).
    node.handle_resource_result(ms(1), 0, ResourceOp::Start, Err("httpd: exit 1".into()));
    drain(&mut node);
    let mut now = 2;
    for _ in 0..4 {
        stop_fails(&mut node, ms(now));
        let (_, outs) = run(&mut node, ms(now + 1000));
        assert!(outs.contains(&Output::Resource {
            group: 0,
            op: ResourceOp::Stop
        }));
        now = node.status().groups[0].stop_failures as u64 * 1000 + 2;
    }
    assert_eq!(node.status().groups[0].stop_failures, 4);
    // The clean stop still makes SHUTDOWN_STOP_ATTEMPTS attempts of its own.
    node.handle_command(ms(now), Command::Shutdown);
    drain(&mut node);
    for attempt in 1..=SHUTDOWN_STOP_ATTEMPTS {
        stop_fails(&mut node, ms(now));
        assert_eq!(
            node.is_stopped(),
            attempt == SHUTDOWN_STOP_ATTEMPTS,
            "attempt {attempt}"
        );
        if attempt < SHUTDOWN_STOP_ATTEMPTS {
            let (_, outs) = run(&mut node, ms(now + 1001));
            assert!(outs.contains(&Output::Resource {
                group: 0,
                op: ResourceOp::Stop
            }));
            now += 1001;
        }
    }
    assert_eq!(node.left_running().len(), 1);
}
