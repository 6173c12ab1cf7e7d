//! Ping nodes, the built-in ipfail and the isolation guard, in the deterministic simulation
//! (virtual time): two nodes, one group preferred by node1, one ping node both reach.

mod common;

use std::time::Duration;

use common::sim::{PingSpec, Sim, SimSpec};
use hb_proto::{
    message::Holding,
    node::Event,
    ping::{PingEvent, PingState},
};

const DEADPING: Duration = Duration::from_millis(60);
const SETTLE: Duration = Duration::from_millis(100);

fn spec(seed: u64, ipfail: bool) -> SimSpec {
    let mut spec = SimSpec::new(2, seed);
    spec.groups = vec![0];
    spec.ping = Some(PingSpec {
        deadping: DEADPING,
        settle: SETTLE,
        ipfail,
        rtt: Duration::from_micros(300),
    });
    spec
}

/// A started pair with node1 holding the group.
fn settled(seed: u64, ipfail: bool) -> Sim {
    let mut sim = Sim::new(spec(seed, ipfail));
    sim.run_until(Sim::ms(400));
    assert_eq!(sim.held_by(0), ["node1"], "seed {seed}");
    sim
}

fn lines(sim: &Sim, h: usize, since: hb_proto::Timestamp) -> Vec<String> {
    sim.hosts[h]
        .events
        .iter()
        .filter(|(t, _)| *t >= since)
        .map(|(_, e)| e.to_string())
        .collect()
}

/// Runs in 1 ms steps until `f` holds; the time it took.
fn until(sim: &mut Sim, limit: Duration, f: impl Fn(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now;
    while sim.now.saturating_since(start) <= limit {
        if f(sim) {
            return Some(sim.now.saturating_since(start));
        }
        sim.run_for(Duration::from_millis(1));
    }
    None
}

#[test]
fn counts_travel_in_heartbeats() {
    let sim = settled(1, true);
    for h in 0..2 {
        let st = sim.hosts[h].node.as_ref().unwrap().status();
        assert_eq!(st.ping.reachable, 1);
        for n in &st.nodes {
            let c = n.ping.expect("every node announces its counts");
            assert_eq!((c.reachable, c.configured, c.yielding), (1, 1, false));
        }
    }
}

#[test]
fn active_losing_the_ping_node_gives_its_group_up_and_takes_it_back() {
    for seed in 0..50 {
        let mut sim = settled(seed, true);
        let t = sim.spec.timing;
        let lost = sim.now;
        sim.hosts[0].ping_ok = false;
        let moved = until(&mut sim, Duration::from_secs(1), |s| {
            s.held_by(0) == ["node2"]
        })
        .unwrap_or_else(|| panic!("seed {seed}: group never moved"));
        // Dead at deadping after the last reply (at most one interval before the loss), then
        // settle, then the echo-confirmed release and start.
        assert!(
            moved <= DEADPING + SETTLE + 4 * t.keepalive,
            "seed {seed}: moved after {moved:?}"
        );
        assert!(
            moved >= DEADPING + SETTLE - t.keepalive,
            "seed {seed}: {moved:?}"
        );
        let l = lines(&sim, 0, lost);
        for want in [
            "Link 10.0.0.254:10.0.0.254 dead.",
            "node 10.0.0.254: is dead",
            "Asking other side for ping node count.",
            "Delayed giveup in 0.1 seconds.",
            "Giving up because we have less visible ping nodes.",
        ] {
            assert!(
                l.iter().any(|x| x == want),
                "seed {seed}: no {want:?} in {l:?}"
            );
        }
        let back = sim.now;
        sim.hosts[0].ping_ok = true;
        let returned = until(&mut sim, Duration::from_secs(1), |s| {
            s.held_by(0) == ["node1"]
        })
        .unwrap_or_else(|| panic!("seed {seed}: group never came back"));
        assert!(
            returned <= SETTLE + 5 * t.keepalive,
            "seed {seed}: back after {returned:?}"
        );
        let l = lines(&sim, 0, back);
        assert!(
            l.iter().any(|x| x == "Ping node count is balanced."),
            "{l:?}"
        );
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
        assert_eq!(sim.max_holders, 1, "seed {seed}: never two holders");
    }
}

#[test]
fn without_auto_failback_the_group_stays_after_the_ping_node_returns() {
    let mut spec = spec(3, true);
    spec.failback = hb_proto::config::AutoFailback::Off;
    let mut sim = Sim::new(spec);
    sim.run_until(Sim::ms(400));
    assert_eq!(sim.held_by(0), ["node1"]);
    sim.hosts[0].ping_ok = false;
    sim.run_for(Duration::from_millis(400));
    assert_eq!(sim.held_by(0), ["node2"]);
    sim.hosts[0].ping_ok = true;
    sim.run_for(Duration::from_millis(600));
    assert_eq!(sim.held_by(0), ["node2"], "balanced counts change nothing");
    assert_eq!(sim.max_holders, 1);
}

#[test]
fn balanced_loss_moves_nothing() {
    for seed in 0..30 {
        let mut sim = settled(seed, true);
        // The ping node itself dies: both lose it within one interval of each other.
        sim.hosts[0].ping_ok = false;
        sim.run_for(Duration::from_micros(4_000 + seed * 200));
        sim.hosts[1].ping_ok = false;
        let since = sim.now;
        sim.run_for(Duration::from_millis(800));
        assert_eq!(sim.held_by(0), ["node1"], "seed {seed}");
        let releases = sim.count_events(0, since, |e| matches!(e, Event::Releasing { .. }));
        assert_eq!(releases, 0, "seed {seed}: {:?}", lines(&sim, 0, since));
        assert!(
            sim.count_events(0, since, |e| matches!(
                e,
                Event::Ping(PingEvent::GivingUp { .. })
            )) == 0
        );
    }
}

#[test]
fn flapping_ping_node_does_not_move_the_group() {
    for seed in 0..20 {
        let mut sim = settled(seed, true);
        let since = sim.now;
        // Down 80 ms (dead after 60), up 50 ms, for 3 s: never 100 ms fewer in a row.
        for _ in 0..23 {
            sim.hosts[0].ping_ok = false;
            sim.run_for(Duration::from_millis(80));
            sim.hosts[0].ping_ok = true;
            sim.run_for(Duration::from_millis(50));
        }
        let dead = sim.count_events(0, since, |e| {
            matches!(e, Event::Ping(PingEvent::NodeDead { .. }))
        });
        assert!(dead >= 10, "seed {seed}: the ping node did flap ({dead})");
        assert_eq!(sim.held_by(0), ["node1"], "seed {seed}");
        let releases = sim.count_events(0, since, |e| matches!(e, Event::Releasing { .. }));
        assert_eq!(releases, 0, "seed {seed}: {:?}", lines(&sim, 0, since));
    }
}

#[test]
fn ipfail_off_keeps_groups_where_they_are() {
    let mut sim = settled(5, false);
    sim.hosts[0].ping_ok = false;
    sim.run_for(Duration::from_millis(800));
    assert_eq!(sim.held_by(0), ["node1"]);
}

#[test]
fn isolated_standby_does_not_take_over() {
    for seed in 0..30 {
        let mut sim = settled(seed, true);
        let since = sim.now;
        // node2 loses everything at once: heartbeats both ways and the ping node.
        sim.partition(&[&[0], &[1]]);
        sim.hosts[1].ping_ok = false;
        sim.run_for(Duration::from_millis(1000));
        assert!(sim.death_time(1, 0, since).is_some(), "seed {seed}");
        assert_eq!(
            sim.holders(0),
            ["node1"],
            "seed {seed}: the active keeps it"
        );
        let l = lines(&sim, 1, since);
        assert!(
            l.iter()
                .any(|x| x.starts_with("Not taking over the resources of node1")),
            "seed {seed}: {l:?}"
        );
        let st = sim.hosts[1].node.as_ref().unwrap().status();
        assert_eq!(st.takeover_held.as_deref(), Some("node1"));
        assert_eq!(sim.max_holders, 1, "seed {seed}");
        // Still cut from node1, but the ping node answers again: node1 is taken for dead.
        sim.hosts[1].ping_ok = true;
        sim.run_for(Duration::from_millis(100));
        assert_eq!(
            sim.hosts[1].node.as_ref().unwrap().holding(0),
            Some(Holding::Held)
        );
    }
}

#[test]
fn real_death_is_taken_over_with_the_ping_guard_on() {
    for seed in 0..50 {
        let mut sim = settled(seed, true);
        let t = sim.spec.timing;
        let last = sim.hosts[0].last_sent.unwrap();
        sim.kill(0);
        let since = sim.now;
        until(&mut sim, Duration::from_secs(1), |s| {
            s.holders(0) == ["node2"]
        })
        .unwrap_or_else(|| panic!("seed {seed}: no takeover"));
        let taken = sim.now.saturating_since(last);
        assert!(
            taken <= t.deadtime + 2 * t.keepalive,
            "seed {seed}: the guard delayed the takeover: {taken:?}"
        );
        assert_eq!(
            sim.count_events(1, since, |e| matches!(e, Event::TakeoverHeld { .. })),
            0,
            "seed {seed}"
        );
    }
}

#[test]
fn isolated_at_start_takes_nothing() {
    let mut spec = spec(9, true);
    spec.groups = vec![1];
    let mut sim = Sim::new(spec);
    // node2 alone on the network side of nothing: node1 off, no ping node.
    sim.kill(0);
    sim.hosts[1].ping_ok = false;
    sim.run_until(Sim::ms(600));
    assert!(
        sim.holders(0).is_empty(),
        "{:?}",
        lines(&sim, 1, Sim::ms(0))
    );
    sim.hosts[1].ping_ok = true;
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.holders(0), ["node2"]);
}

#[allow(clippy::unwrap_used)] // test helper
fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// A reload's ping nodes: the address that stays keeps its liveness, a new one starts unknown
/// and comes up on its first answer, a removed one stops counting; nothing moves.
#[test]
fn reload_keeps_a_ping_node_that_stays_and_adds_the_new_one_unknown() {
    for seed in 0..20 {
        let mut sim = settled(seed, true);
        let since = sim.now;
        let map = sim.set_ping_nodes(0, &[ip("10.0.0.254"), ip("10.0.0.253")]);
        assert_eq!(map, [Some(0)], "seed {seed}");
        let st = sim.hosts[0].node.as_ref().unwrap().status();
        let states: Vec<_> = st
            .ping
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.state))
            .collect();
        assert_eq!(
            states,
            [
                ("10.0.0.254", PingState::Up),
                ("10.0.0.253", PingState::Unknown)
            ],
            "seed {seed}"
        );
        assert_eq!((st.ping.reachable, st.ping.configured), (1, 2));
        sim.run_for(Duration::from_millis(50));
        let st = sim.hosts[0].node.as_ref().unwrap().status();
        assert_eq!(
            (st.ping.reachable, st.ping.configured),
            (2, 2),
            "seed {seed}"
        );
        // The peer reads the new counts in node1's heartbeats.
        let peer = sim.hosts[1].node.as_ref().unwrap().status();
        let c = peer.nodes[0].ping.expect("node1 announces its counts");
        assert_eq!((c.reachable, c.configured), (2, 2), "seed {seed}");
        // Out again: node1 then announces no ping nodes at all.
        let map = sim.set_ping_nodes(0, &[]);
        assert_eq!(map, [None, None]);
        sim.run_for(Duration::from_millis(50));
        let peer = sim.hosts[1].node.as_ref().unwrap().status();
        assert_eq!(peer.nodes[0].ping, None, "seed {seed}");
        assert_eq!(sim.held_by(0), ["node1"], "seed {seed}: nothing moved");
        assert_eq!(
            sim.count_events(0, since, |e| matches!(
                e,
                Event::Ping(PingEvent::NodeDead { .. })
            )),
            0,
            "seed {seed}"
        );
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
    }
}

/// The isolation guard survives every reload: node2, cut from node1 and from the ping node,
/// holds node1's takeover back; a reload to a new ping node that does not answer, or to no
/// ping node at all, does not let it take the group; only an answer to a request sent after
/// node1 went silent does.
#[test]
fn reload_never_lifts_the_isolation_guard() {
    for seed in 0..30 {
        let mut sim = settled(seed, false);
        let since = sim.now;
        sim.partition(&[&[0], &[1]]);
        sim.hosts[1].ping_ok = false;
        sim.run_for(Duration::from_millis(400));
        assert!(sim.death_time(1, 0, since).is_some(), "seed {seed}");
        let held = |sim: &Sim| {
            sim.hosts[1]
                .node
                .as_ref()
                .unwrap()
                .status()
                .takeover_held
                .clone()
        };
        assert_eq!(held(&sim).as_deref(), Some("node1"), "seed {seed}");
        // A new ping node that does not answer either.
        sim.hosts[1].ping_ok = true;
        sim.hosts[1].ping_silent = vec![ip("10.0.0.254"), ip("10.0.0.253")];
        sim.set_ping_nodes(1, &[ip("10.0.0.253")]);
        sim.run_for(Duration::from_millis(300));
        assert_eq!(
            sim.holders(0),
            ["node1"],
            "seed {seed}: new silent ping node"
        );
        // No ping node at all: still held, node1 never came back.
        sim.set_ping_nodes(1, &[]);
        sim.run_for(Duration::from_millis(300));
        assert_eq!(sim.holders(0), ["node1"], "seed {seed}: ping nodes removed");
        assert_eq!(held(&sim).as_deref(), Some("node1"), "seed {seed}");
        assert_eq!(sim.max_holders, 1, "seed {seed}");
        // A ping node configured again that answers: node2 reaches the network after node1
        // went silent, so node1 is taken for dead.
        sim.hosts[1].ping_silent.clear();
        sim.set_ping_nodes(1, &[ip("10.0.0.254")]);
        sim.run_for(Duration::from_millis(100));
        assert_eq!(
            sim.hosts[1].node.as_ref().unwrap().holding(0),
            Some(Holding::Held),
            "seed {seed}"
        );
    }
}

/// Without ping nodes at start, a reload that adds them turns the guard on for the next death:
/// isolated node2 does not take node1's group.
#[test]
fn reload_adding_ping_nodes_guards_the_next_takeover() {
    for seed in 0..20 {
        let mut sim = settled(seed, false);
        sim.set_ping_nodes(0, &[]);
        sim.set_ping_nodes(1, &[]);
        sim.run_for(Duration::from_millis(100));
        sim.set_ping_nodes(1, &[ip("10.0.0.254")]);
        sim.run_for(Duration::from_millis(100));
        let since = sim.now;
        sim.partition(&[&[0], &[1]]);
        sim.hosts[1].ping_ok = false;
        sim.run_for(Duration::from_millis(500));
        assert!(sim.death_time(1, 0, since).is_some(), "seed {seed}");
        assert_eq!(sim.holders(0), ["node1"], "seed {seed}");
        assert_eq!(sim.max_holders, 1, "seed {seed}");
    }
}
