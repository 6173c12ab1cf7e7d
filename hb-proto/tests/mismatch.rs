//! haresources differing between the nodes: never two owners. The peer stays alive in
//! membership, both sides log the mismatch (again every minute), and no group moves until the
//! files agree.

mod common;

use std::time::Duration;

use common::{
    groups,
    sim::{Sim, SimSpec},
};
use hb_proto::node::{Event, PeerState};

fn mismatch_lines(sim: &Sim, h: usize, since: hb_proto::Timestamp) -> usize {
    sim.count_events(h, since, |e| matches!(e, Event::ConfigMismatch { .. }))
}

#[test]
fn differing_haresources_freeze_ownership_and_keep_membership() {
    let mut sim = Sim::new(SimSpec::new(2, 7));
    sim.run_until(Sim::ms(300));
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    // node2 restarts with a third group in its haresources.
    let changed_at = sim.now;
    sim.kill(1);
    sim.start_with(1, groups(&["node1", "node2", "node2"]));
    sim.run_for(Duration::from_secs(150));
    // Alive on both sides: nobody declared the other dead after the restart.
    assert_eq!(sim.view(0, 1), Some(PeerState::Up));
    assert_eq!(sim.view(1, 0), Some(PeerState::Up));
    assert!(sim.death_time(1, 0, changed_at).is_none());
    // node1 keeps its group; node2's group, down with its restart, is not taken by anybody
    // (node1 does not know what node2 holds, node2 does not start while the files differ).
    assert_eq!(sim.held_by(0), ["node1"]);
    assert!(sim.holders(1).is_empty(), "{:?}", sim.holders(1));
    assert_eq!(sim.max_holders, 1);
    // Logged at once and every minute: 3 times in 150 s on each side.
    assert_eq!(mismatch_lines(&sim, 0, changed_at), 3);
    assert_eq!(mismatch_lines(&sim, 1, changed_at), 3);
    let line = sim.hosts[0]
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::ConfigMismatch { .. }))
        .map(|(_, e)| e.to_string())
        .unwrap();
    assert!(
        line.starts_with("haresources mismatch: node node2"),
        "{line}"
    );
    let status = sim.hosts[0].node.as_ref().unwrap().status();
    assert_eq!(status.haresources_mismatch, ["node2"]);
    // The files agree again (node2 restarted with the common haresources): normal decisions.
    let fixed_at = sim.now;
    sim.kill(1);
    sim.start(1);
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    assert!(
        sim.hosts[0]
            .node
            .as_ref()
            .unwrap()
            .status()
            .haresources_mismatch
            .is_empty()
    );
    assert_eq!(mismatch_lines(&sim, 0, fixed_at), 0);
}

#[test]
fn a_mismatched_peer_that_dies_is_taken_over_from() {
    let mut sim = Sim::new(SimSpec::new(2, 8));
    sim.run_until(Sim::ms(300));
    sim.kill(1);
    sim.start_with(1, groups(&["node1", "node2", "node2"]));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.holders(1).is_empty());
    sim.kill(1);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.view(0, 1), Some(PeerState::Dead));
    assert_eq!(
        sim.held_by(1),
        ["node1"],
        "the freeze ends with the peer's death"
    );
}
