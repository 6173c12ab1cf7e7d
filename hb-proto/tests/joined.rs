//! `Event::Joined` (the driver's READY=1): once per run, when links are judged and the initial
//! groups are acquired or declined, over many seeds of the simulation.

mod common;

use std::time::Duration;

use common::sim::{Sim, SimSpec};
use hb_proto::{Timestamp, message::Holding, node::Event};

fn joins(sim: &Sim, h: usize) -> Vec<(Timestamp, usize, usize)> {
    sim.hosts[h]
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Joined { held, groups } => Some((*t, *held, *groups)),
            _ => None,
        })
        .collect()
}

/// The last holding change of `group` on host `h` before or at `t`, from its events.
fn held_at(sim: &Sim, h: usize, group: usize, t: Timestamp) -> bool {
    let mut held = false;
    for (at, e) in &sim.hosts[h].events {
        if *at > t {
            break;
        }
        match e {
            Event::Acquired { group: g, .. } if *g == group => held = true,
            Event::Releasing { group: g, .. } if *g == group => held = false,
            _ => {}
        }
    }
    held
}

#[test]
fn nodes_started_together_join_once_before_initdead_holding_their_own_groups() {
    for seed in 0..100 {
        let nodes = 2 + (seed % 2) as usize;
        let mut sim = Sim::new(SimSpec::new(nodes, seed));
        let initdead = sim.spec.timing.initdead;
        let started = sim.now;
        sim.run_until(Sim::ms(400));
        for h in 0..nodes {
            let j = joins(&sim, h);
            assert_eq!(j.len(), 1, "seed {seed}: host {h} joined {j:?}");
            let (at, held, groups) = j[0];
            // Every peer was heard: no waiting for initdead.
            assert!(
                at.saturating_since(started) < initdead,
                "seed {seed}: host {h} joined {:?} after start",
                at.saturating_since(started)
            );
            assert_eq!(groups, nodes, "seed {seed}");
            // With auto_failback on each node holds the group it prefers, and nothing else.
            assert_eq!(held, 1, "seed {seed}: host {h}");
            assert!(
                held_at(&sim, h, h, at),
                "seed {seed}: host {h} joined before holding"
            );
            assert_eq!(
                sim.hosts[h].node.as_ref().unwrap().holding(h),
                Some(Holding::Held)
            );
            assert!(sim.hosts[h].node.as_ref().unwrap().joined());
        }
    }
}

#[test]
fn a_node_whose_peer_dies_at_start_joins_once_it_is_judged_dead_with_every_group() {
    for seed in 0..20 {
        let mut sim = Sim::new(SimSpec::new(2, seed));
        // Killed right after its first heartbeat left: heard once, then silent.
        sim.kill(1);
        sim.run_until(Sim::ms(400));
        let j = joins(&sim, 0);
        assert_eq!(j.len(), 1, "seed {seed}: {j:?}");
        let (at, held, groups) = j[0];
        let dead_at = sim.hosts[0]
            .events
            .iter()
            .find(|(_, e)| matches!(e, Event::NodeDead { node, .. } if node == "node2"))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("seed {seed}: node2 never declared dead"));
        assert!(dead_at <= at, "seed {seed}: joined before node2 was judged");
        assert_eq!((held, groups), (2, 2), "seed {seed}");
        assert!(
            held_at(&sim, 0, 0, at) && held_at(&sim, 0, 1, at),
            "seed {seed}"
        );
    }
}

#[test]
fn a_node_that_declines_joins_and_a_later_death_does_not_join_again() {
    for seed in 0..20 {
        // Both groups preferred by node1: node2 joins holding nothing.
        let mut spec = SimSpec::new(2, seed);
        spec.groups = vec![0, 0];
        let mut sim = Sim::new(spec);
        sim.run_until(Sim::ms(300));
        let j = joins(&sim, 1);
        assert_eq!(j.len(), 1, "seed {seed}: {j:?}");
        assert_eq!((j[0].1, j[0].2), (0, 2), "seed {seed}");
        // node1 dies: node2 takes both over, without a second Joined.
        sim.kill(0);
        sim.run_for(Duration::from_millis(300));
        assert_eq!(sim.held_by(0), vec!["node2".to_owned()], "seed {seed}");
        assert_eq!(joins(&sim, 1).len(), 1, "seed {seed}");
    }
}

#[test]
fn event_fields_for_the_journal() {
    use hb_proto::node::{DeathCause, EventFields};
    let dead = Event::NodeDead {
        node: "node2".into(),
        cause: DeathCause::Silence,
    };
    assert_eq!(
        dead.fields(),
        EventFields {
            event: "node_dead",
            peer: Some("node2"),
            link: None,
            group: None,
            resource: None,
        }
    );
    let link = Event::LinkUp {
        node: "node2".into(),
        link: "eth1".into(),
    };
    assert_eq!(
        (link.fields().event, link.fields().peer, link.fields().link),
        ("link_up", Some("node2"), Some("eth1"))
    );
    let acquired = Event::Acquired {
        group: 1,
        line: "node1 IPaddr::10.0.0.100 httpd".into(),
    };
    let f = acquired.fields();
    assert_eq!(
        (f.event, f.group, f.resource),
        ("acquired", Some(1), Some("IPaddr::10.0.0.100"))
    );
    let joined = Event::Joined { held: 1, groups: 2 };
    assert_eq!(joined.fields().event, "joined");
    assert_eq!(
        joined.to_string(),
        "Initial resource acquisition complete: 1 of 2 group(s) held here."
    );
}
