//! The fencing gate in the node, in virtual time: a takeover from a peer dead by silence waits
//! for the fence, failed fences are retried with back-off and nothing is taken meanwhile, the
//! peer's return ends the attempt, and two nodes fencing each other end with one survivor.

mod common;

use std::time::Duration;

use common::sim::{Sim, SimFence, SimSpec};
use hb_proto::{
    fence::FenceEvent,
    message::Holding,
    node::{Command, Event},
};

const MS: Duration = Duration::from_millis(1);

fn fenced_spec(seed: u64, fence: SimFence) -> SimSpec {
    let mut spec = SimSpec::new(2, seed);
    spec.fence = Some(fence);
    spec
}

fn fence_events(sim: &Sim, h: usize, f: impl Fn(&FenceEvent) -> bool) -> usize {
    sim.count_events(
        h,
        hb_proto::Timestamp::ZERO,
        |e| matches!(e, Event::Fence(fe) if f(fe)),
    )
}

/// Both nodes up, each holding its own group.
fn settled(spec: SimSpec) -> Sim {
    let mut sim = Sim::new(spec);
    sim.run_until(Sim::ms(300));
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    sim
}

#[test]
fn mutual_fencing_leaves_one_survivor_owning_every_group() {
    for seed in 0..50 {
        let fence = SimFence {
            duration: 80 * MS,
            delay: 500 * MS,
            fail: false,
        };
        let mut sim = settled(fenced_spec(seed, fence));
        // A heartbeat-only partition: both nodes declare each other dead at about the same
        // moment, and both hold a group the other must take over.
        sim.partition(&[&[0], &[1]]);
        sim.run_for(Duration::from_millis(2000));
        assert!(
            sim.hosts[1].node.is_none(),
            "seed {seed}: node2 was powered off"
        );
        assert!(sim.hosts[0].node.is_some(), "seed {seed}: node1 survives");
        assert_eq!(sim.held_by(0), ["node1"], "seed {seed}");
        assert_eq!(
            sim.held_by(1),
            ["node1"],
            "seed {seed}: taken over after the fence"
        );
        assert_eq!(sim.hosts[0].fences.len(), 1, "seed {seed}");
        assert!(
            sim.hosts[1].fences.is_empty(),
            "seed {seed}: node2 waited fence_delay and was off before it fired"
        );
        assert_eq!(
            fence_events(&sim, 1, |e| matches!(e, FenceEvent::Delayed { .. })),
            1
        );
        // Never two owners, partition included.
        assert_eq!(sim.max_holders, 1, "seed {seed}");
        // The takeover came after the fence, not before.
        let fenced_at = sim.hosts[0].fences[0].0 + fence.duration;
        let started: Vec<_> = sim.hosts[0]
            .actions
            .iter()
            .filter(|(_, g, op)| *g == 1 && *op == hb_proto::node::ResourceOp::Start)
            .collect();
        assert!(
            started.iter().all(|(t, _, _)| *t >= fenced_at),
            "seed {seed}"
        );
    }
}

#[test]
fn takeover_waits_for_the_fence() {
    let fence = SimFence {
        duration: 300 * MS,
        delay: 500 * MS,
        fail: false,
    };
    let mut sim = settled(fenced_spec(1, fence));
    sim.kill(1);
    let killed = sim.now;
    sim.run_for(Duration::from_millis(250));
    // Dead after deadtime, fence running: not taken.
    assert!(sim.death_time(0, 1, killed).is_some());
    assert_eq!(
        sim.hosts[0].node.as_ref().unwrap().holding(1),
        Some(Holding::None)
    );
    assert!(sim.hosts[0].node.as_ref().unwrap().fence_pending("node2"));
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.held_by(1), ["node1"]);
    assert_eq!(
        fence_events(
            &sim,
            0,
            |e| matches!(e, FenceEvent::Reset { node, .. } if node == "node2")
        ),
        1
    );
}

#[test]
fn failed_fences_retry_with_backoff_and_nothing_is_taken() {
    let fence = SimFence {
        duration: 10 * MS,
        delay: 500 * MS,
        fail: true,
    };
    let mut sim = settled(fenced_spec(2, fence));
    sim.partition(&[&[0], &[1]]);
    sim.run_for(Duration::from_millis(8000));
    // node1 (no delay) tried at about 0, 1, 3, 7 s after the death.
    let tries: Vec<u64> = sim.hosts[0]
        .fences
        .iter()
        .map(|(t, _)| t.saturating_since(sim.hosts[0].fences[0].0).as_millis() as u64)
        .collect();
    assert_eq!(tries.len(), 4, "{tries:?}");
    for (t, want) in tries.iter().zip([0, 1010, 3020, 7030]) {
        assert!(t.abs_diff(want) <= 20, "{tries:?}");
    }
    assert!(fence_events(&sim, 0, |e| matches!(e, FenceEvent::Failed { .. })) >= 3);
    // Nobody took anything over: each group stays with its holder.
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    assert_eq!(sim.max_holders, 1);
    // Healed: the attempts end, nothing moves.
    sim.heal();
    sim.run_for(Duration::from_millis(500));
    let fences = sim.hosts[0].fences.len();
    sim.run_for(Duration::from_millis(20_000));
    assert_eq!(
        sim.hosts[0].fences.len(),
        fences,
        "no attempt after the return"
    );
    assert!(fence_events(&sim, 0, |e| matches!(e, FenceEvent::Abandoned { .. })) >= 1);
    assert!(fence_events(&sim, 1, |e| matches!(e, FenceEvent::Abandoned { .. })) >= 1);
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn peer_return_ends_the_attempts_on_both_sides() {
    // node1's device fails (so node2 stays up); node2 waits its fence_delay. The partition
    // heals before node1's retry and before node2's delay is over.
    let fence = SimFence {
        duration: 10 * MS,
        delay: 500 * MS,
        fail: true,
    };
    let mut sim = settled(fenced_spec(3, fence));
    sim.partition(&[&[0], &[1]]);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.hosts[0].fences.len(), 1);
    sim.heal();
    sim.run_for(Duration::from_millis(5000));
    assert_eq!(sim.hosts[0].fences.len(), 1, "no retry after the return");
    assert!(sim.hosts[1].fences.is_empty(), "node2 never fired");
    for h in 0..2 {
        assert_eq!(
            fence_events(&sim, h, |e| matches!(e, FenceEvent::Abandoned { .. })),
            1
        );
        assert!(
            !sim.hosts[h]
                .node
                .as_ref()
                .unwrap()
                .fence_pending(sim.name(1 - h))
        );
    }
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.held_by(1), ["node2"]);
    assert_eq!(sim.max_holders, 1);
}

#[test]
fn shutdown_notice_needs_no_fence() {
    let fence = SimFence {
        duration: 10 * MS,
        delay: Duration::ZERO,
        fail: true,
    };
    let mut sim = settled(fenced_spec(4, fence));
    sim.command(1, Command::Shutdown);
    sim.run_for(Duration::from_millis(300));
    assert!(sim.hosts[0].fences.is_empty());
    assert_eq!(sim.held_by(1), ["node1"]);
}

#[test]
fn without_fencing_a_takeover_from_a_silent_peer_warns_as_heartbeat() {
    let mut sim = settled(SimSpec::new(2, 5));
    sim.kill(1);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.held_by(1), ["node1"]);
    let lines: Vec<String> = sim.hosts[0]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Fence(_)))
        .map(|(_, e)| e.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "No STONITH device configured.",
            "Shared disks are not protected."
        ]
    );
    assert!(sim.hosts[0].fences.is_empty());
}

#[test]
fn a_node_shutting_down_starts_no_fence() {
    // node1's device fails, so node2 stays up; node2 is stopped during its fence_delay.
    let fence = SimFence {
        duration: 10 * MS,
        delay: 500 * MS,
        fail: true,
    };
    let mut sim = settled(fenced_spec(6, fence));
    sim.partition(&[&[0], &[1]]);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        fence_events(&sim, 1, |e| matches!(e, FenceEvent::Delayed { .. })),
        1
    );
    sim.command(1, Command::Shutdown);
    sim.run_for(Duration::from_millis(2000));
    assert!(
        sim.hosts[1].fences.is_empty(),
        "node2 fenced while shutting down"
    );
    assert!(sim.hosts[1].node.as_ref().unwrap().is_stopped());
    // node2 released its group on the way out; node1 cannot fence it, so does not take it.
    assert!(sim.holders(1).is_empty(), "{:?}", sim.holders(1));
    assert_eq!(sim.held_by(0), ["node1"]);
}

#[test]
fn an_isolated_node_does_not_fence_the_healthy_one() {
    // node1 (first in the node list: it would fence at once) loses its links AND its ping
    // node: it is the isolated one. Fencing node2 would power off the node that can still
    // serve and leave only a node nobody reaches. It waits; node2, which still reaches the
    // ping node, fences node1 after its fence_delay and takes both groups.
    for seed in 0..30 {
        let fence = SimFence {
            duration: 80 * MS,
            delay: 300 * MS,
            fail: false,
        };
        let mut spec = fenced_spec(seed, fence);
        spec.ping = Some(common::sim::PingSpec {
            deadping: 60 * MS,
            settle: 100 * MS,
            ipfail: false,
            rtt: Duration::from_micros(300),
        });
        let mut sim = settled(spec);
        let cut = sim.now;
        sim.hosts[0].ping_ok = false;
        sim.partition(&[&[0], &[1]]);
        sim.run_for(Duration::from_millis(1500));
        assert!(sim.hosts[0].node.is_none(), "seed {seed}: node1 was fenced");
        assert!(sim.hosts[1].node.is_some(), "seed {seed}: node2 survives");
        assert_eq!(sim.held_by(0), ["node2"], "seed {seed}");
        assert_eq!(sim.held_by(1), ["node2"], "seed {seed}");
        assert!(
            sim.hosts[0].fences.is_empty(),
            "seed {seed}: the isolated node fenced {:?}",
            sim.hosts[0].fences
        );
        assert_eq!(
            sim.count_events(0, cut, |e| matches!(
                e,
                Event::Fence(FenceEvent::HeldIsolated { node }) if node == "node2"
            )),
            1,
            "seed {seed}: said once"
        );
    }
}
