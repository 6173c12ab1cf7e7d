//! `Node::wants_every_message` (issue 20): false only once a cluster is steady, true from the
//! moment anything is in motion (a standby, a peer's death), false again once it settled.

mod common;

use std::time::Duration;

use common::sim::{Sim, SimSpec};
use hb_proto::node::{Command, Scope};

fn wants(sim: &Sim, h: usize) -> bool {
    sim.hosts[h]
        .node
        .as_ref()
        .is_none_or(hb_proto::node::Node::wants_every_message)
}

#[test]
fn steady_only_while_nothing_moves() {
    for seed in 0..20 {
        let mut sim = Sim::new(SimSpec::new(2, seed));
        sim.start(0);
        sim.start(1);
        assert!(wants(&sim, 0), "seed {seed}: not steady before joining");
        sim.run_for(Duration::from_secs(2));
        assert!(
            !wants(&sim, 0) && !wants(&sim, 1),
            "seed {seed}: steady after joining"
        );

        // A standby: the releasing node at once, its peer as soon as it hears of it.
        sim.command(0, Command::Standby(Scope::All));
        assert!(wants(&sim, 0), "seed {seed}: a standby is motion");
        sim.run_for(Duration::from_secs(2));
        assert!(
            !wants(&sim, 0) && !wants(&sim, 1),
            "seed {seed}: steady after the handover"
        );

        // A dead peer: never steady while it is dead.
        sim.kill(1);
        sim.run_for(Duration::from_secs(1));
        assert!(wants(&sim, 0), "seed {seed}: a dead peer is not steady");
    }
}
