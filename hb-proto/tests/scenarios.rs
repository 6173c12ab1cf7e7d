//! Golden scenarios of the node state machine: inputs in, expected actions and log lines out.
//! Two-node cluster `node1`/`node2`, one link `eth1`, keepalive 10 ms, deadtime 50 ms,
//! warntime 30 ms, initdead 100 ms; group 0 = `node1 IPaddr::10.0.0.100/24/eth0 httpd`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    PeerMsg, Timing, actions, config, drain, events, groups, last_send_time, lines, ms, sent,
    sim::{LinkParams, Sim, SimSpec},
};
use hb_proto::{
    Timestamp,
    config::{AutoFailback, ResourceGroup},
    message::{Holding, MessageKind, NodeStatus},
    node::{
        Command, DeathCause, Event, LinkId, Node, NodeError, Output, PeerState, ResourceOp,
        ResourceTimes, Scope, TakeoverTimes, late_wakeup_threshold,
    },
};

const LINE: &str = "node1 IPaddr::10.0.0.100/24/eth0 httpd";

/// A node under test plus the bookkeeping to talk to it as its peer.
struct Bench {
    node: Node,
    groups: Vec<ResourceGroup>,
    peer: &'static str,
    peer_gen: u64,
    peer_seq: u64,
    /// send_time of the node's last transmitted message (what the peer echoes).
    our_last: Timestamp,
    now: Timestamp,
}

impl Bench {
    fn new(local: &'static str, failback: AutoFailback, timing: Timing) -> (Self, Vec<Output>) {
        let groups = groups(&["node1"]);
        let cfg = config(
            &["node1", "node2"],
            local,
            groups.clone(),
            timing,
            failback,
            1,
        );
        let mut node = Node::new(&cfg, 1, ms(0)).unwrap();
        let outs = drain(&mut node);
        let our_last = last_send_time(&outs).unwrap();
        let peer = if local == "node1" { "node2" } else { "node1" };
        (
            Self {
                node,
                groups,
                peer,
                peer_gen: 1,
                peer_seq: 0,
                our_last,
                now: ms(0),
            },
            outs,
        )
    }

    /// A heartbeat from the peer sent at `now`, echoing our last message, group 0 `holding`.
    fn peer_hb(&mut self, holding: Holding) -> PeerMsg {
        self.peer_seq += 1;
        PeerMsg::hb(self.peer, self.peer_gen, self.peer_seq, self.now, 1)
            .digest(&self.groups)
            .holding(0, holding)
            .echo(self.node.name().to_owned().as_str(), self.our_last)
    }

    fn note(&mut self, outs: &[Output]) {
        if let Some(t) = last_send_time(outs) {
            self.our_last = t;
        }
    }

    /// Delivers `m` at `at` (arrival = now = at).
    fn deliver(&mut self, at: Timestamp, m: PeerMsg) -> Vec<Output> {
        self.run_until(at);
        self.node.handle_message(at, LinkId(0), at, m.msg);
        let outs = drain(&mut self.node);
        self.note(&outs);
        outs
    }

    /// Runs the node's timer up to `until`, as a punctual driver would.
    fn run_until(&mut self, until: Timestamp) -> Vec<Output> {
        let mut all = vec![];
        while let Some(t) = self.node.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t;
            self.node.handle_timeout(t);
            let outs = drain(&mut self.node);
            self.note(&outs);
            all.extend(outs);
        }
        self.now = self.now.max(until);
        all
    }

    fn result(&mut self, at: Timestamp, op: ResourceOp, r: Result<(), String>) -> Vec<Output> {
        let mut outs = self.run_until(at);
        self.node
            .handle_resource_result(at, 0, op, r.map(|()| ResourceTimes::default()));
        let more = drain(&mut self.node);
        self.note(&more);
        outs.extend(more);
        outs
    }

    fn command(&mut self, at: Timestamp, cmd: Command) -> Vec<Output> {
        let mut outs = self.run_until(at);
        self.node.handle_command(at, cmd);
        let more = drain(&mut self.node);
        self.note(&more);
        outs.extend(more);
        outs
    }

    /// The peer sends a heartbeat every keepalive from `from` to `to` (inclusive) showing
    /// `holding`.
    fn peer_beats(&mut self, from: u64, to: u64, holding: Holding) -> Vec<Output> {
        let mut all = vec![];
        let mut t = from;
        while t <= to {
            let m = self.peer_hb_at(ms(t), holding);
            all.extend(self.deliver(ms(t), m));
            t += 10;
        }
        all
    }

    fn peer_hb_at(&mut self, at: Timestamp, holding: Holding) -> PeerMsg {
        self.run_until(at);
        self.peer_hb(holding)
    }
}

fn start(g: usize) -> Output {
    Output::Resource {
        group: g,
        op: ResourceOp::Start,
    }
}

fn stop(g: usize) -> Output {
    Output::Resource {
        group: g,
        op: ResourceOp::Stop,
    }
}

/// node2 with node1 (preferred) holding group 0 and beating until 45 ms.
fn node2_watching_node1_hold(failback: AutoFailback) -> Bench {
    let (mut b, _) = Bench::new("node2", failback, Timing::FAST);
    let outs = b.peer_beats(5, 45, Holding::Held);
    assert_eq!(
        lines(&outs),
        [
            "Link node1:eth1 up.",
            "Status update for node node1: status active",
            // Every peer heard and the group declined (node1 holds it): joined.
            "Initial resource acquisition complete: 0 of 1 group(s) held here."
        ]
    );
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.rightful_owner(0), Some("node1"));
    b
}

/// node2 after taking group 0 over from a dead node1 (last heartbeat at 45 ms).
fn node2_after_takeover(failback: AutoFailback) -> Bench {
    let mut b = node2_watching_node1_hold(failback);
    let outs = b.run_until(ms(95));
    assert_eq!(actions(&outs), [start(0)]);
    let outs = b.result(ms(97), ResourceOp::Start, Ok(()));
    assert!(lines(&outs).contains(&format!("Resource acquisition completed: {LINE}")));
    assert_eq!(b.node.holding(0), Some(Holding::Held));
    b
}

#[test]
fn takeover_on_death_at_deadtime_after_the_last_arrival() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    // Still alive just before deadtime after the last arrival (45 ms).
    let outs = b.run_until(ms(94));
    assert!(events(&outs).is_empty(), "{:?}", lines(&outs));
    assert_eq!(b.node.peer_state("node1"), Some(PeerState::Up));
    let outs = b.run_until(ms(95));
    assert_eq!(
        lines(&outs),
        [
            "Link node1:eth1 dead.",
            "node node1: is dead",
            // No fencing configured: Heartbeat's warnings at the takeover.
            "No STONITH device configured.",
            "Shared disks are not protected.",
            "Taking over resource group IPaddr::10.0.0.100/24/eth0",
            &format!("Acquiring resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [start(0)]);
    // The change is announced at once, not at the next keepalive.
    let hb = sent(&outs);
    assert!(hb.iter().any(|m| m.groups[0].holding == Holding::Starting));
    let outs = b.result(ms(97), ResourceOp::Start, Ok(()));
    assert_eq!(
        lines(&outs),
        [
            format!("Resource acquisition completed: {LINE}"),
            "mach_down takeover complete for node node1.".to_owned(),
        ]
    );
    assert_eq!(sent(&outs)[0].groups[0].holding, Holding::Held);
    assert_eq!(b.node.counters().deaths, 1);
}

#[test]
fn takeover_timeline_comes_with_the_death_and_the_completion() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    let outs = b.run_until(ms(95));
    let dead = events(&outs)
        .into_iter()
        .find(|e| matches!(e, Event::NodeDead { .. }));
    assert_eq!(
        dead,
        Some(Event::NodeDead {
            node: "node1".into(),
            cause: DeathCause::Silence,
            last_arrival: Some(ms(45)),
            at: ms(95),
        })
    );
    let mut outs = b.run_until(ms(97));
    let times = ResourceTimes {
        finished: Some(ms(96)),
        first_announce: Some(Timestamp::from_nanos(95_500_000)),
    };
    b.node
        .handle_resource_result(ms(97), 0, ResourceOp::Start, Ok(times));
    outs.extend(drain(&mut b.node));
    assert!(events(&outs).contains(&Event::MachDownComplete {
        node: "node1".into(),
        times: TakeoverTimes {
            last_heard: ms(45),
            declared_dead: ms(95),
            resources_started: Some(ms(96)),
            first_announce: Some(Timestamp::from_nanos(95_500_000)),
            fenced: None,
        },
    }));
}

#[test]
fn failback_on_return_with_auto_failback_on() {
    let mut b = node2_after_takeover(AutoFailback::On);
    // node1 restarts (generation 2): just "Link up" and "status active", then node2 releases.
    b.peer_gen = 2;
    b.peer_seq = 0;
    let m = b.peer_hb_at(ms(300), Holding::None);
    let outs = b.deliver(ms(300), m);
    assert_eq!(
        lines(&outs),
        [
            "Link node1:eth1 up.".to_owned(),
            "Status update for node node1: status active".to_owned(),
            format!("Releasing resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [stop(0)]);
    assert_eq!(sent(&outs)[0].groups[0].holding, Holding::Stopping);
    let outs = b.result(ms(303), ResourceOp::Stop, Ok(()));
    assert_eq!(
        lines(&outs),
        [format!("Resource release completed: {LINE}")]
    );
    assert_eq!(sent(&outs)[0].groups[0].holding, Holding::None);
    // node1's next heartbeats never make node2 start again.
    let outs = b.peer_beats(310, 400, Holding::Held);
    assert!(actions(&outs).is_empty());
}

#[test]
fn returning_preferred_node_waits_for_the_holder_to_release() {
    // node1's side of the failback: the peer holds the group, node1 must not start it
    // until a heartbeat shows it released.
    let (mut b, _) = Bench::new("node1", AutoFailback::On, Timing::FAST);
    let outs = b.peer_beats(5, 25, Holding::Held);
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.rightful_owner(0), Some("node1"));
    let outs = b.peer_beats(35, 45, Holding::Stopping);
    assert!(actions(&outs).is_empty());
    let outs = b.peer_beats(55, 55, Holding::None);
    assert_eq!(actions(&outs), [start(0)]);
    assert_eq!(
        lines(&outs),
        [format!("Acquiring resource group: {LINE}")],
        "no takeover line: the peer released it, it did not die"
    );
}

#[test]
fn no_failback_with_auto_failback_off() {
    let mut b = node2_after_takeover(AutoFailback::Off);
    b.peer_gen = 2;
    b.peer_seq = 0;
    let outs = b.peer_beats(300, 400, Holding::None);
    assert!(actions(&outs).is_empty(), "{outs:?}");
    assert_eq!(b.node.holding(0), Some(Holding::Held));
    assert_eq!(b.node.rightful_owner(0), Some("node2"));

    // And node1's side: it does not start what node2 holds.
    let (mut b1, _) = Bench::new("node1", AutoFailback::Off, Timing::FAST);
    let outs = b1.peer_beats(5, 200, Holding::Held);
    assert!(actions(&outs).is_empty());
    assert_eq!(b1.node.rightful_owner(0), Some("node2"));
}

/// node1 holding group 0, node2 alive and beating until 45 ms.
fn node1_holding() -> Bench {
    let (mut b, _) = Bench::new("node1", AutoFailback::On, Timing::FAST);
    let outs = b.peer_beats(5, 5, Holding::None);
    // The first heartbeat ends initdead early but was sent before node2 knew node1 was
    // Active: node1 waits for an echo of its announcement.
    assert!(actions(&outs).is_empty());
    let outs = b.peer_beats(15, 15, Holding::None);
    assert_eq!(actions(&outs), [start(0)]);
    b.result(ms(17), ResourceOp::Start, Ok(()));
    b.peer_beats(25, 45, Holding::None);
    assert_eq!(b.node.holding(0), Some(Holding::Held));
    b
}

#[test]
fn standby_releases_and_stays_released() {
    let mut b = node1_holding();
    // `standby foreign` covers nothing here (group 0 is node1's own).
    let outs = b.command(ms(46), Command::Standby(Scope::Foreign));
    assert!(actions(&outs).is_empty());
    let outs = b.command(ms(47), Command::Standby(Scope::All));
    assert_eq!(
        lines(&outs),
        [
            "Giving up all HA resources (standby): 1 group(s)".to_owned(),
            format!("Releasing resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [stop(0)]);
    let hb = &sent(&outs)[0];
    assert!(hb.groups[0].standby);
    assert_eq!(hb.groups[0].holding, Holding::Stopping);
    b.result(ms(49), ResourceOp::Stop, Ok(()));
    assert_eq!(b.node.rightful_owner(0), Some("node2"));
    let outs = b.peer_beats(55, 200, Holding::None);
    assert!(actions(&outs).is_empty());
    // `takeover local` takes it back once node2 released it.
    let outs = b.command(ms(201), Command::Takeover(Scope::Local));
    assert!(sent(&outs).last().unwrap().groups[0].wants);
    let outs = b.peer_beats(205, 215, Holding::None);
    assert_eq!(actions(&outs), [start(0)]);
}

#[test]
fn peer_in_standby_hands_the_group_over() {
    let (mut b, _) = Bench::new("node2", AutoFailback::On, Timing::FAST);
    let m = b.peer_hb_at(ms(5), Holding::Held);
    b.deliver(ms(5), m);
    let m = b
        .peer_hb_at(ms(15), Holding::Stopping)
        .flags(0, false, true, false);
    let outs = b.deliver(ms(15), m);
    assert!(
        actions(&outs).is_empty(),
        "must wait while node1 is still stopping"
    );
    assert_eq!(b.node.rightful_owner(0), Some("node2"));
    let m = b
        .peer_hb_at(ms(25), Holding::None)
        .flags(0, false, true, false);
    let outs = b.deliver(ms(25), m);
    assert_eq!(actions(&outs), [start(0)]);
}

fn preparations(outputs: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Prepare { .. } | Output::Unprepare { .. }))
        .cloned()
        .collect()
}

impl Bench {
    /// A heartbeat from the peer in standby for group 0, showing `holding`, delivered at `at`.
    fn standby_peer_beat(&mut self, at: u64, holding: Holding) -> Vec<Output> {
        let m = self
            .peer_hb_at(ms(at), holding)
            .flags(0, false, true, false);
        self.deliver(ms(at), m)
    }
}

/// node2 seeing node1 hold group 0 (5 ms), then go standby and announce `Stopping` (15 ms):
/// node2 prepares the start, once, and does not start.
fn node2_with_node1_releasing() -> Bench {
    let (mut b, _) = Bench::new("node2", AutoFailback::On, Timing::FAST);
    let m = b.peer_hb_at(ms(5), Holding::Held);
    let outs = b.deliver(ms(5), m);
    assert!(
        preparations(&outs).is_empty(),
        "nothing to prepare while node1 keeps it"
    );
    let outs = b.standby_peer_beat(15, Holding::Stopping);
    assert_eq!(preparations(&outs), [Output::Prepare { group: 0 }]);
    assert!(
        actions(&outs).is_empty(),
        "never start before the release is confirmed"
    );
    b
}

#[test]
fn a_handover_prepares_the_start_while_the_peer_releases() {
    let mut b = node2_with_node1_releasing();
    let outs = b.standby_peer_beat(17, Holding::Stopping);
    assert!(preparations(&outs).is_empty(), "prepared once");
    // The release confirmed: the start, which uses the preparation (no Unprepare).
    let outs = b.standby_peer_beat(19, Holding::None);
    assert_eq!(actions(&outs), [start(0)]);
    assert!(preparations(&outs).is_empty());
}

#[test]
fn a_handover_that_does_not_happen_voids_the_preparation() {
    let mut b = node2_with_node1_releasing();
    // node1 takes it back (`hbctl takeover` on node1 while its stop runs): no longer ours.
    let m = b
        .peer_hb_at(ms(17), Holding::Stopping)
        .flags(0, false, false, true);
    let outs = b.deliver(ms(17), m);
    assert_eq!(preparations(&outs), [Output::Unprepare { group: 0 }]);
    assert_eq!(b.node.rightful_owner(0), Some("node1"));
    assert!(actions(&outs).is_empty());
}

#[test]
fn a_peer_that_dies_while_releasing_is_taken_over_with_the_preparation() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    // node1's clean stop: status Stopping, group Stopping.
    let m = b
        .peer_hb_at(ms(50), Holding::Stopping)
        .status(NodeStatus::Stopping);
    let outs = b.deliver(ms(50), m);
    assert_eq!(preparations(&outs), [Output::Prepare { group: 0 }]);
    assert!(actions(&outs).is_empty());
    // Its final state never arrives; it is declared dead at deadtime and taken over: the start
    // consumes the preparation.
    let outs = b.run_until(ms(101));
    assert_eq!(actions(&outs), [start(0)]);
    assert!(preparations(&outs).is_empty());
}

#[test]
fn takeover_command_asks_the_holder_then_starts_after_its_release() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    let outs = b.command(ms(46), Command::Takeover(Scope::All));
    assert_eq!(
        lines(&outs),
        ["Taking over all HA resources (takeover): 1 group(s)"]
    );
    assert!(
        actions(&outs).is_empty(),
        "never start while the peer holds it"
    );
    assert!(sent(&outs)[0].groups[0].wants);
    let outs = b.peer_beats(55, 65, Holding::Stopping);
    assert!(actions(&outs).is_empty());
    let outs = b.peer_beats(75, 75, Holding::None);
    assert_eq!(actions(&outs), [start(0)]);
    // node2 keeps it: node1 alive, preferred, auto_failback on, but node2 asked for it.
    b.result(ms(77), ResourceOp::Start, Ok(()));
    let outs = b.peer_beats(85, 200, Holding::None);
    assert!(actions(&outs).is_empty());

    // The holder's side: a peer that wants the group makes it release.
    let mut h = node1_holding();
    let m = h
        .peer_hb_at(ms(55), Holding::None)
        .flags(0, false, false, true);
    let outs = h.deliver(ms(55), m);
    assert_eq!(actions(&outs), [stop(0)]);
}

#[test]
fn heal_after_partition_preferred_keeps_and_reannounces() {
    // node1's side: it holds its group; node2 was declared dead, took the group, and is heard
    // again in the same generation.
    let mut b = node1_holding();
    let outs = b.run_until(ms(95));
    assert!(lines(&outs).contains(&"node node2: is dead".to_owned()));
    let outs = b.peer_beats(200, 200, Holding::Held);
    assert_eq!(
        lines(&outs),
        [
            "Link node2:eth1 up.".to_owned(),
            "Cluster node node2 returning after partition.".to_owned(),
            format!("Resource group held by this node and node2: {LINE}; node1 keeps it"),
            format!("Re-announcing resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [Output::Reannounce { group: 0 }]);
    let outs = b.peer_beats(210, 210, Holding::Stopping);
    assert!(actions(&outs).is_empty());
    // The loser's last gratuitous ARPs may have won the client: announce once more.
    let outs = b.peer_beats(220, 220, Holding::None);
    assert_eq!(actions(&outs), [Output::Reannounce { group: 0 }]);
    assert_eq!(b.node.counters().dual_ownerships, 1);
    assert_eq!(b.node.holding(0), Some(Holding::Held));

    // node2's side: it holds after node1's death; node1 returns (same generation) holding it.
    let mut b2 = node2_after_takeover(AutoFailback::Off);
    let outs = b2.peer_beats(300, 300, Holding::Held);
    assert_eq!(
        lines(&outs),
        [
            "Link node1:eth1 up.".to_owned(),
            "Cluster node node1 returning after partition.".to_owned(),
            format!("Resource group held by this node and node1: {LINE}; node1 keeps it"),
            format!("Releasing resource group: {LINE}"),
        ]
    );
    assert_eq!(
        actions(&outs),
        [stop(0)],
        "the loser stops and does not re-announce"
    );
}

#[test]
fn a_late_holder_heard_mid_takeover_makes_the_start_abandoned_at_once() {
    // The soak's finding (BENCHMARKS.md, soak): node1 woke 42 ms late, node2 declared it dead at
    // deadtime and began the takeover; node1's next heartbeat (same generation, still holding)
    // came while node2's start was running. node2 must not finish a start of a group node1
    // keeps: it gives it up at once and stops, instead of holding the address beside node1
    // until its scripts are done.
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    let outs = b.run_until(ms(95));
    assert_eq!(actions(&outs), [start(0)]);
    assert_eq!(b.node.holding(0), Some(Holding::Starting));
    let outs = b.peer_beats(96, 96, Holding::Held);
    assert_eq!(
        lines(&outs),
        [
            "Link node1:eth1 up.".to_owned(),
            "Cluster node node1 returning after partition.".to_owned(),
            format!("Resource group held by this node and node1: {LINE}; node1 keeps it"),
            format!(
                "Resource group start abandoned: node1 is alive and holds {LINE}; releasing it here"
            ),
            format!("Releasing resource group: {LINE}"),
        ]
    );
    assert_eq!(
        actions(&outs),
        [stop(0)],
        "a stop replaces the start at once"
    );
    assert_eq!(b.node.holding(0), Some(Holding::Stopping));
    assert!(
        sent(&outs)
            .iter()
            .any(|m| m.groups[0].holding == Holding::Stopping)
    );
    assert_eq!(b.node.counters().abandoned_starts, 1);
    // node1 keeps beating while node2's scripts finish.
    let outs = b.peer_beats(106, 296, Holding::Held);
    assert!(actions(&outs).is_empty());
    // The abandoned start's result (a driver may still report it) changes nothing.
    let outs = b.result(ms(297), ResourceOp::Start, Ok(()));
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.holding(0), Some(Holding::Stopping));
    assert_eq!(b.node.counters().stale_results, 0);
    let outs = b.result(ms(298), ResourceOp::Stop, Ok(()));
    assert_eq!(
        lines(&outs),
        [format!("Resource release completed: {LINE}")]
    );
    assert_eq!(b.node.holding(0), Some(Holding::None));
    // No second takeover while node1 keeps it.
    let outs = b.peer_beats(305, 400, Holding::Held);
    assert!(actions(&outs).is_empty());
}

#[test]
fn the_rightful_owner_does_not_abandon_its_start_for_a_claimant() {
    // node1 (preferred, auto_failback on) starting its group while node2, back from a
    // partition, still claims it: node1 keeps starting; node2 is the one to yield.
    let (mut b, _) = Bench::new("node1", AutoFailback::On, Timing::FAST);
    b.peer_beats(5, 15, Holding::None);
    assert_eq!(b.node.holding(0), Some(Holding::Starting));
    let outs = b.peer_beats(16, 16, Holding::Held);
    assert!(actions(&outs).is_empty(), "{:?}", lines(&outs));
    assert_eq!(b.node.holding(0), Some(Holding::Starting));
    assert_eq!(b.node.counters().abandoned_starts, 0);
    b.result(ms(17), ResourceOp::Start, Ok(()));
    assert_eq!(b.node.holding(0), Some(Holding::Held));
}

#[test]
fn a_peer_seen_only_releasing_our_group_makes_us_announce_again() {
    // The soak's loss burst: node2 declared node1 dead (one-sided, 50% loss), started the
    // group, sent its gratuitous ARP, heard node1 keep it and released; node1 lost every
    // heartbeat that showed node2 claiming it and saw only `Stopping`. The client points at
    // node2 by then: node1 announces at once, and again when node2 shows it released.
    let mut b = node1_holding();
    let outs = b.peer_beats(55, 55, Holding::Stopping);
    assert_eq!(
        lines(&outs),
        [format!("Re-announcing resource group: {LINE}")]
    );
    assert_eq!(actions(&outs), [Output::Reannounce { group: 0 }]);
    let outs = b.peer_beats(65, 85, Holding::Stopping);
    assert!(actions(&outs).is_empty(), "once while it stops");
    let outs = b.peer_beats(95, 95, Holding::None);
    assert_eq!(actions(&outs), [Output::Reannounce { group: 0 }]);
    let outs = b.peer_beats(105, 200, Holding::None);
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.holding(0), Some(Holding::Held));
    assert_eq!(
        b.node.counters().dual_ownerships,
        0,
        "not a dual claim it saw"
    );
}

#[test]
fn heal_after_the_loser_already_released_still_reannounces() {
    // node1 holds; node2 was declared dead (partition), took the group and released it again
    // before node1 heard it (the heal reached node2 first): node1 never sees a claim, yet
    // node2's gratuitous ARPs may have moved the clients, so node1 announces again.
    let mut b = node1_holding();
    let outs = b.run_until(ms(95));
    assert!(lines(&outs).contains(&"node node2: is dead".to_owned()));
    let outs = b.peer_beats(200, 200, Holding::None);
    assert_eq!(
        lines(&outs),
        [
            "Link node2:eth1 up.".to_owned(),
            "Cluster node node2 returning after partition.".to_owned(),
            format!("Re-announcing resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [Output::Reannounce { group: 0 }]);
    // Once only.
    let outs = b.peer_beats(210, 230, Holding::None);
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.holding(0), Some(Holding::Held));
}

#[test]
fn start_failure_releases_and_the_peer_acquires() {
    let (mut b, _) = Bench::new("node1", AutoFailback::On, Timing::FAST);
    b.peer_beats(5, 15, Holding::None);
    assert_eq!(b.node.holding(0), Some(Holding::Starting));
    let outs = b.result(ms(16), ResourceOp::Start, Err("httpd: exit 1".into()));
    assert_eq!(
        lines(&outs),
        [
            format!(
                "Resource group start failed: {LINE}: httpd: exit 1; released, not retried here for 50 ms"
            ),
            format!("Releasing resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [stop(0)]);
    let hb = &sent(&outs)[0];
    assert!(hb.groups[0].failed);
    b.result(ms(18), ResourceOp::Stop, Ok(()));
    assert_eq!(b.node.rightful_owner(0), Some("node2"));
    let outs = b.peer_beats(25, 45, Holding::None);
    assert!(actions(&outs).is_empty(), "no retry while failed");
    assert!(b.node.status().groups[0].failed);

    // node2's side: node1 shows the group failed and released: node2 acquires it.
    let (mut b2, _) = Bench::new("node2", AutoFailback::On, Timing::FAST);
    let m = b2
        .peer_hb_at(ms(5), Holding::Stopping)
        .flags(0, true, false, false);
    let outs = b2.deliver(ms(5), m);
    assert!(actions(&outs).is_empty());
    let m = b2
        .peer_hb_at(ms(15), Holding::None)
        .flags(0, true, false, false);
    let outs = b2.deliver(ms(15), m);
    assert_eq!(actions(&outs), [start(0)]);
}

#[test]
fn stop_failure_is_retried_with_backoff_and_logged_at_error_level() {
    let mut b = node1_holding();
    b.command(ms(46), Command::Standby(Scope::All));
    let outs = b.result(ms(48), ResourceOp::Stop, Err("umount: busy".into()));
    let ev = events(&outs);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].level(), hb_proto::node::Level::Error);
    assert_eq!(
        ev[0].to_string(),
        format!("Resource group stop failed: {LINE}: umount: busy; retrying in 50 ms")
    );
    // Heartbeat's line; no fencing configured: the group is kept and its stop retried.
    assert_eq!(ev[1].level(), hb_proto::node::Level::Error);
    assert_eq!(
        ev[1].to_string(),
        format!(
            "Resource STOP failure. Reboot required! ({LINE}; no fencing configured: keeping \
             the group and retrying its stop)"
        )
    );
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.holding(0), Some(Holding::Stopping));
    // Retried at 98 ms, not before.
    let outs = b.run_until(ms(97));
    assert!(actions(&outs).is_empty());
    let outs = b.run_until(ms(98));
    assert_eq!(actions(&outs), [stop(0)]);
    let outs = b.result(ms(99), ResourceOp::Stop, Err("umount: busy".into()));
    assert!(lines(&outs)[0].ends_with("retrying in 100 ms"));
}

#[test]
fn shutdown_notice_is_acted_on_at_once() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    b.peer_beats(50, 50, Holding::None);
    let m = b.peer_hb_at(ms(51), Holding::None).shutdown();
    let outs = b.deliver(ms(51), m);
    assert_eq!(
        lines(&outs),
        [
            "Received shutdown notice from node1.".to_owned(),
            "node node1: is dead".to_owned(),
            format!("Acquiring resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [start(0)]);
    assert!(events(&outs).contains(&Event::NodeDead {
        node: "node1".into(),
        cause: DeathCause::Shutdown,
        last_arrival: Some(ms(50)),
        at: ms(51),
    }));
    // Later heartbeats of that generation do not bring it back.
    let m = b.peer_hb_at(ms(52), Holding::None);
    let outs = b.deliver(ms(52), m);
    assert!(events(&outs).is_empty());
    assert_eq!(b.node.peer_state("node1"), Some(PeerState::Dead));
}

#[test]
fn clean_shutdown_releases_then_sends_the_notice() {
    let mut b = node1_holding();
    let outs = b.command(ms(46), Command::Shutdown);
    assert_eq!(actions(&outs), [stop(0)]);
    assert!(!b.node.is_stopped());
    assert_eq!(sent(&outs)[0].status, NodeStatus::Stopping);
    assert!(sent(&outs).iter().all(|m| m.kind == MessageKind::Heartbeat));
    let outs = b.result(ms(48), ResourceOp::Stop, Ok(()));
    let msgs = sent(&outs);
    assert_eq!(msgs[0].kind, MessageKind::Heartbeat);
    assert_eq!(msgs[0].groups[0].holding, Holding::None);
    assert!(msgs[1..].iter().all(|m| m.kind == MessageKind::Shutdown));
    assert_eq!(msgs.len(), 1 + hb_proto::node::SHUTDOWN_NOTICE_COPIES);
    assert!(msgs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(
        lines(&outs).last().map(String::as_str),
        Some("Heartbeat shutdown complete.")
    );
    assert!(b.node.is_stopped());
    assert_eq!(b.node.poll_timeout(), None);
}

#[test]
fn late_heartbeat_is_reported_with_its_interval() {
    let timing = Timing {
        warntime: Duration::from_millis(50),
        deadtime: Duration::from_millis(100),
        ..Timing::FAST
    };
    let (mut b, _) = Bench::new("node2", AutoFailback::On, timing);
    b.peer_beats(5, 5, Holding::None);
    let m = b.peer_hb_at(ms(78), Holding::None);
    let outs = b.deliver(ms(78), m);
    assert_eq!(lines(&outs), ["Late heartbeat: Node node1: interval 73 ms"]);
    assert_eq!(b.node.counters().late_heartbeats, 1);
    let m = b.peer_hb_at(ms(88), Holding::None);
    assert!(events(&b.deliver(ms(88), m)).is_empty());
}

#[test]
fn a_stalled_driver_judges_liveness_on_arrival_times() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    // The daemon is frozen from 46 ms to 400 ms; node1 kept beating, the kernel stamped
    // arrivals. The driver drains them (now = 400) and then runs the timer.
    let now = ms(400);
    for (k, t) in (55..=395).step_by(10).enumerate() {
        let m = PeerMsg::hb("node1", 1, 6 + k as u64, ms(t), 1)
            .digest(&b.groups)
            .holding(0, Holding::Held);
        b.node.handle_message(now, LinkId(0), ms(t), m.msg);
    }
    assert!(events(&drain(&mut b.node)).is_empty());
    let expected_deadline = b.node.poll_timeout().unwrap();
    assert!(expected_deadline < now);
    b.node.handle_timeout(now);
    let outs = drain(&mut b.node);
    let ev = events(&outs);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let Event::LateWakeup { late_by } = ev[0] else {
        panic!("{ev:?}")
    };
    assert!(late_by > late_wakeup_threshold(Duration::from_millis(10)));
    assert_eq!(b.node.peer_state("node1"), Some(PeerState::Up));
    assert_eq!(b.node.counters().late_wakeups, 1);
    assert!(actions(&outs).is_empty());
    // node1 truly stops after 395 ms: dead at 445 ms, not earlier.
    b.now = now;
    let outs = b.run_until(ms(444));
    assert!(events(&outs).is_empty());
    let outs = b.run_until(ms(445));
    assert!(lines(&outs).contains(&"node node1: is dead".to_owned()));
}

#[test]
fn initdead_applies_before_the_peer_is_heard() {
    let (mut b, outs) = Bench::new("node1", AutoFailback::On, Timing::FAST);
    assert_eq!(sent(&outs)[0].status, NodeStatus::Init);
    assert_eq!(b.node.poll_timeout(), Some(ms(10)));
    let outs = b.run_until(ms(99));
    assert!(actions(&outs).is_empty());
    assert_eq!(b.node.peer_state("node2"), Some(PeerState::Unknown));
    let outs = b.run_until(ms(100));
    assert_eq!(
        lines(&outs),
        [
            "node node2: is dead".to_owned(),
            format!("Acquiring resource group: {LINE}"),
        ]
    );
    assert_eq!(actions(&outs), [start(0)]);
}

#[test]
fn stale_forged_and_foreign_messages_are_ignored_and_counted() {
    let (mut b, _) = Bench::new("node2", AutoFailback::On, Timing::FAST);
    b.peer_gen = 5;
    let m = b.peer_hb_at(ms(5), Holding::None);
    b.deliver(ms(5), m.clone());
    // Replay of the same sequence number.
    b.deliver(ms(6), m.clone());
    // Older generation.
    let mut old = m.clone();
    old.msg.generation = 4;
    old.msg.seq = 99;
    b.deliver(ms(7), old);
    // Different haresources.
    let mut other = m.clone();
    other.msg.seq = 100;
    other.msg.groups_digest ^= 1;
    let outs = b.deliver(ms(8), other.clone());
    let digest = other.msg.groups_digest;
    assert_eq!(
        lines(&outs),
        [format!(
            "haresources mismatch: node node1 has different haresources groups (digest \
             {digest:08x}, ours {:08x}); no group is taken over or released until the files \
             agree",
            digest ^ 1
        )]
    );
    other.msg.seq = 101;
    assert!(
        events(&b.deliver(ms(9), other)).is_empty(),
        "reported once a minute"
    );
    // Unknown sender, unknown link.
    let mut stranger = m.clone();
    stranger.msg.sender = 12345;
    b.deliver(ms(10), stranger);
    b.node
        .handle_message(ms(11), LinkId(7), ms(11), m.msg.clone());
    let c = b.node.counters();
    // The mismatched heartbeats still count as received (they prove the peer alive).
    assert_eq!(c.messages_received, 3);
    assert_eq!(c.ignored_stale, 2);
    assert_eq!(c.ignored_config_mismatch, 2);
    assert_eq!(c.ignored_unknown_sender, 1);
    assert_eq!(c.ignored_bad_link, 1);
}

#[test]
fn simultaneous_start_one_node_acquires() {
    for seed in 0..50 {
        let mut spec = SimSpec::new(2, seed);
        spec.groups = vec![0];
        spec.links = vec![LinkParams::CLEAN];
        let mut sim = Sim::new(spec);
        sim.run_until(Sim::ms(300));
        assert_eq!(sim.max_holders, 1, "seed {seed}");
        assert_eq!(sim.held_by(0), ["node1"], "seed {seed}");
        let starts: usize = sim.hosts.iter().map(|h| h.actions.len()).sum();
        assert_eq!(starts, 1, "seed {seed}");
    }
}

#[test]
fn status_snapshot_describes_nodes_links_and_groups() {
    let b = node1_holding();
    let s = b.node.status();
    assert_eq!(s.local, "node1");
    assert_eq!(s.status, NodeStatus::Active);
    assert_eq!(s.nodes.len(), 2);
    assert!(s.nodes[0].local);
    let peer = &s.nodes[1];
    assert_eq!(peer.name, "node2");
    assert_eq!(peer.state, PeerState::Up);
    assert_eq!(peer.links.len(), 1);
    assert_eq!(peer.links[0].name, "eth1");
    assert_eq!(peer.links[0].last_arrival, Some(ms(45)));
    let g = &s.groups[0];
    assert_eq!(g.line, LINE);
    assert_eq!(g.preferred, "node1");
    assert_eq!(g.owner.as_deref(), Some("node1"));
    assert_eq!(g.holders, ["node1"]);
    assert_eq!(g.local, Holding::Held);
}

#[test]
fn heartbeats_carry_per_link_sequence_echoes_and_group_state() {
    let groups = groups(&["node1"]);
    let cfg = config(
        &["node1", "node2"],
        "node1",
        groups,
        Timing::FAST,
        AutoFailback::On,
        2,
    );
    let mut node = Node::new(&cfg, 7, ms(0)).unwrap();
    let first = sent(&drain(&mut node));
    assert_eq!(first.len(), 2, "one per link");
    assert!(first.iter().all(|m| m.seq == 1 && m.generation == 7));
    let peer = PeerMsg::hb("node2", 1, 1, ms(3), 1).digest(&cfg.groups);
    node.handle_message(ms(5), LinkId(1), ms(4), peer.msg);
    drain(&mut node);
    node.handle_timeout(ms(10));
    let outs = drain(&mut node);
    let msgs: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { link, msg } => Some((*link, msg.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(msgs.len(), 2);
    for (link, m) in &msgs {
        assert!(m.seq >= 2, "{link:?}");
        assert_eq!(m.echoes.len(), 1);
        assert_eq!(m.echoes[0].send_time, ms(3));
        assert_eq!(m.echoes[0].hold, Duration::from_millis(6));
        assert_eq!(m.groups.len(), 1);
    }
    assert_eq!(node.poll_timeout(), Some(ms(20)).min(Some(ms(54))));
}

#[test]
fn invalid_configurations_are_refused() {
    let g = groups(&["node3"]);
    let cfg = config(
        &["node1", "node2"],
        "node1",
        g,
        Timing::FAST,
        AutoFailback::On,
        1,
    );
    assert!(matches!(
        Node::new(&cfg, 1, ms(0)),
        Err(NodeError::UnknownPreferredNode { .. })
    ));
    let cfg = config(
        &["node1"],
        "nodeX",
        vec![],
        Timing::FAST,
        AutoFailback::On,
        1,
    );
    assert_eq!(
        Node::new(&cfg, 1, ms(0)).unwrap_err(),
        NodeError::UnknownLocalNode("nodeX".into())
    );
    let cfg = config(
        &["node1"],
        "node1",
        vec![],
        Timing::FAST,
        AutoFailback::On,
        0,
    );
    assert_eq!(Node::new(&cfg, 1, ms(0)).unwrap_err(), NodeError::NoMedia);
    let t = Timing {
        deadtime: Duration::from_millis(10),
        ..Timing::FAST
    };
    let cfg = config(&["node1"], "node1", vec![], t, AutoFailback::On, 1);
    assert!(matches!(
        Node::new(&cfg, 1, ms(0)),
        Err(NodeError::DeadtimeTooShort { .. })
    ));
}

#[test]
fn event_lines_match_heartbeat_wording() {
    let cases = [
        (
            Event::LinkUp {
                node: "node2".into(),
                link: "eth1".into(),
            },
            "Link node2:eth1 up.",
        ),
        (
            Event::LinkDead {
                node: "node2".into(),
                link: "eth1".into(),
            },
            "Link node2:eth1 dead.",
        ),
        (
            Event::LateHeartbeat {
                node: "node2".into(),
                interval: Duration::from_micros(73_400),
            },
            "Late heartbeat: Node node2: interval 73 ms",
        ),
        (
            Event::NodeDead {
                node: "node1".into(),
                cause: DeathCause::Silence,
                last_arrival: Some(ms(100)),
                at: ms(150),
            },
            "node node1: is dead",
        ),
        (
            Event::ShutdownNotice {
                node: "node1".into(),
            },
            "Received shutdown notice from node1.",
        ),
        (
            Event::NodeReturned {
                node: "node1".into(),
            },
            "Cluster node node1 returning after partition.",
        ),
        (
            Event::TakingOver {
                group: 0,
                resource: "IPaddr::10.0.0.100".into(),
                from: "node1".into(),
            },
            "Taking over resource group IPaddr::10.0.0.100",
        ),
        (
            Event::Acquiring {
                group: 0,
                line: "node1 IPaddr::10.0.0.100 httpd".into(),
            },
            "Acquiring resource group: node1 IPaddr::10.0.0.100 httpd",
        ),
        (
            Event::Releasing {
                group: 0,
                line: "node1 IPaddr::10.0.0.100 httpd".into(),
            },
            "Releasing resource group: node1 IPaddr::10.0.0.100 httpd",
        ),
        (
            Event::MachDownComplete {
                node: "node1".into(),
                times: TakeoverTimes {
                    last_heard: ms(100),
                    declared_dead: ms(150),
                    resources_started: Some(ms(152)),
                    first_announce: Some(ms(151)),
                    fenced: None,
                },
            },
            "mach_down takeover complete for node node1.",
        ),
    ];
    for (e, line) in cases {
        assert_eq!(e.to_string(), line);
    }
}

#[test]
fn three_nodes_the_first_live_node_in_order_takes_over_a_dead_nodes_group() {
    let mut spec = SimSpec::new(3, 11);
    spec.groups = vec![0];
    spec.failback = AutoFailback::Legacy;
    let mut sim = Sim::new(spec);
    sim.run_until(Sim::ms(300));
    assert_eq!(sim.held_by(0), ["node1"]);
    let killed = sim.now;
    sim.kill(0);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.held_by(0), ["node2"]);
    assert_eq!(sim.max_holders, 1);
    let node2: Vec<String> = sim.hosts[1]
        .events
        .iter()
        .filter(|(t, _)| *t >= killed)
        .map(|(_, e)| e.to_string())
        .filter(|l| !l.starts_with("Link"))
        .collect();
    assert_eq!(
        node2,
        [
            "node node1: is dead".to_owned(),
            "No STONITH device configured.".to_owned(),
            "Shared disks are not protected.".to_owned(),
            "Taking over resource group IPaddr::10.0.0.100/24/eth0".to_owned(),
            format!("Acquiring resource group: {LINE}"),
            format!("Resource acquisition completed: {LINE}"),
            "mach_down takeover complete for node node1.".to_owned(),
        ]
    );
    assert!(
        sim.hosts[2].actions.iter().all(|(t, _, _)| *t < killed),
        "node3 does not touch the group"
    );
    // legacy = on: node1 back, it takes its group back.
    sim.start(0);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.held_by(0), ["node1"]);
    assert_eq!(sim.max_holders, 1);
}

#[test]
fn a_separate_heartbeat_timer_sends_while_handle_timeout_only_judges() {
    let mut b = node2_watching_node1_hold(AutoFailback::On);
    b.node.set_separate_heartbeat_timer(true);
    let due = b.node.heartbeat_deadline().unwrap();
    assert!(due > b.now);
    // The loop's timer is node1's deadline (last heard at 45 ms), not the heartbeat.
    assert_eq!(b.node.poll_timeout(), Some(ms(95)));
    b.node.handle_timeout(due);
    assert!(sent(&drain(&mut b.node)).is_empty(), "handle_timeout sent");
    // The heartbeat timer sends, once per deadline.
    assert!(!b.node.handle_heartbeat_timeout(Timestamp(due.0 - 1)));
    assert!(b.node.handle_heartbeat_timeout(due));
    let (link, msg) = b.node.poll_transmit().unwrap();
    assert_eq!(
        (link, msg.kind, msg.send_time),
        (LinkId(0), MessageKind::Heartbeat, due)
    );
    assert!(!b.node.has_output());
    assert!(!b.node.handle_heartbeat_timeout(due));
    let next = due + Duration::from_millis(10);
    assert_eq!(b.node.heartbeat_deadline(), Some(next));
    // Late: reported; the transmit is taken out, the event stays for poll_output.
    let late = next + Duration::from_millis(30);
    assert!(b.node.handle_heartbeat_timeout(late));
    assert!(b.node.poll_transmit().is_some());
    assert!(b.node.poll_transmit().is_none());
    let ev = events(&drain(&mut b.node));
    assert_eq!(
        ev,
        [Event::LateWakeup {
            late_by: Duration::from_millis(30)
        }]
    );
    assert_eq!(
        b.node.heartbeat_deadline(),
        Some(late + Duration::from_millis(10))
    );
    // Detection stays with handle_timeout, at node1's deadline.
    b.node.handle_timeout(ms(95));
    let outs = drain(&mut b.node);
    assert!(lines(&outs).contains(&"node node1: is dead".to_owned()));
}
