//! The ping-node monitor and ipfail's rule in virtual time.

use std::{net::IpAddr, time::Duration};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn settings(ipfail: bool) -> PingSettings {
    PingSettings {
        interval: 10 * MS,
        deadping: 50 * MS,
        settle: 100 * MS,
        ipfail,
    }
}

fn one_node(ipfail: bool) -> PingMonitor {
    let targets = vec![PingTarget {
        name: "10.0.0.254".into(),
        addrs: vec![addr("10.0.0.254")],
        group: false,
    }];
    PingMonitor::new(&targets, settings(ipfail), at(0))
}

fn lines(m: &mut PingMonitor) -> Vec<String> {
    m.drain_events().map(|e| e.to_string()).collect()
}

/// Runs the monitor from `from` to `to` ms: requests at every due time, a reply 1 ms later when
/// `answers(t)` says so, the timeout and ipfail's rule against `peer` at every ms.
fn run(
    m: &mut PingMonitor,
    from: u64,
    to: u64,
    answers: impl Fn(u64) -> bool,
    peer: impl Fn(u64) -> Option<u8>,
) {
    let mut in_flight: Vec<(usize, u64)> = Vec::new();
    for t in from..=to {
        for (link, sent) in std::mem::take(&mut in_flight) {
            if sent + 1 == t {
                m.handle_reply(at(t), link, at(sent), at(t));
            } else {
                in_flight.push((link, sent));
            }
        }
        m.handle_timeout(at(t));
        m.compare(at(t), peer(t));
        if answers(t) {
            in_flight.extend(m.due(at(t)).into_iter().map(|l| (l, t)));
        } else {
            m.due(at(t));
        }
    }
}

#[test]
fn reply_brings_node_up_with_heartbeat_lines() {
    let mut m = one_node(false);
    assert_eq!(m.due(at(0)), vec![0]);
    assert!(m.due(at(5)).is_empty(), "next request one interval later");
    assert!(m.handle_reply(at(1), 0, at(0), at(1)));
    assert_eq!(m.reachable(), 1);
    assert_eq!(
        lines(&mut m),
        [
            "Link 10.0.0.254:10.0.0.254 up.",
            "Status update for node 10.0.0.254: status ping"
        ]
    );
    assert!(!m.isolated());
    assert!(m.answered_since(at(0)));
    assert!(!m.answered_since(at(1)));
}

#[test]
fn dead_after_deadping_without_reply() {
    let mut m = one_node(false);
    m.due(at(0));
    m.handle_reply(at(1), 0, at(0), at(1));
    lines(&mut m);
    assert!(!m.handle_timeout(at(50)));
    assert_eq!(
        m.poll_timeout(),
        Some(at(10)),
        "the next request is due first"
    );
    m.due(at(10));
    assert_eq!(m.poll_timeout(), Some(at(20)));
    assert!(m.handle_timeout(at(51)), "dead at last reply + deadping");
    assert_eq!(m.reachable(), 0);
    assert!(m.isolated());
    assert_eq!(
        lines(&mut m),
        [
            "Link 10.0.0.254:10.0.0.254 dead.",
            "node 10.0.0.254: is dead"
        ]
    );
}

#[test]
fn never_answered_is_dead_deadping_after_start() {
    let mut m = one_node(false);
    assert!(m.isolated(), "no reply yet counts as unreachable");
    assert!(!m.handle_timeout(at(49)));
    assert!(!m.handle_timeout(at(50)), "count was 0 already: unchanged");
    assert_eq!(lines(&mut m), ["node 10.0.0.254: is dead"]);
    assert_eq!(m.view().nodes[0].state, PingState::Dead);
}

#[test]
fn stale_reply_from_a_drained_backlog_brings_nothing_back() {
    let mut m = one_node(false);
    m.handle_timeout(at(60));
    lines(&mut m);
    assert!(!m.handle_reply(at(200), 0, at(100), at(101)));
    assert_eq!(m.reachable(), 0);
    assert!(lines(&mut m).is_empty());
}

#[test]
fn group_is_up_while_any_member_is() {
    let targets = vec![PingTarget {
        name: "routers".into(),
        addrs: vec![addr("10.0.0.1"), addr("10.0.0.2")],
        group: true,
    }];
    let mut m = PingMonitor::new(&targets, settings(false), at(0));
    assert_eq!(m.configured(), 1);
    assert_eq!(m.due(at(0)), vec![0, 1]);
    m.handle_reply(at(1), 0, at(0), at(1));
    m.handle_reply(at(1), 1, at(0), at(1));
    assert_eq!(m.reachable(), 1);
    assert_eq!(
        lines(&mut m),
        [
            "Link routers:10.0.0.1 up.",
            "Status update for node routers: status ping",
            "Link routers:10.0.0.2 up."
        ]
    );
    // Only 10.0.0.2 keeps answering.
    m.handle_reply(at(30), 1, at(29), at(30));
    assert!(!m.handle_timeout(at(51)));
    assert_eq!(m.reachable(), 1, "one member up keeps the group up");
    assert_eq!(lines(&mut m), ["Link routers:10.0.0.1 dead."]);
    assert!(m.handle_timeout(at(80)));
    assert_eq!(m.reachable(), 0);
    assert_eq!(
        lines(&mut m),
        ["Link routers:10.0.0.2 dead.", "node routers: is dead"]
    );
}

#[test]
fn fewer_than_peer_gives_up_after_settle() {
    let mut m = one_node(true);
    // Answers until 200 ms, then silence; the peer always sees 1.
    run(&mut m, 0, 400, |t| t < 200, |_| Some(1));
    let l = lines(&mut m);
    assert!(
        l.contains(&"Ping node count is balanced.".to_owned()),
        "{l:?}"
    );
    assert!(m.yielding());
    // The last of each line (the first reply also changed the count).
    let pos = |s: &str| l.iter().rposition(|x| x == s).unwrap_or(usize::MAX);
    assert!(pos("node 10.0.0.254: is dead") < pos("Asking other side for ping node count."));
    assert!(pos("Asking other side for ping node count.") < pos("Delayed giveup in 0.1 seconds."));
    assert!(
        pos("Delayed giveup in 0.1 seconds.")
            < pos("Giving up because we have less visible ping nodes.")
    );
}

#[test]
fn giveup_comes_deadping_plus_settle_after_the_last_reply() {
    let mut m = one_node(true);
    run(&mut m, 0, 199, |t| t < 200, |_| Some(1));
    assert!(!m.yielding());
    // Last request 190, reply 191: dead at 241, gives up at 341.
    run(&mut m, 200, 340, |_| false, |_| Some(1));
    assert!(!m.yielding(), "not before deadping + settle");
    run(&mut m, 341, 341, |_| false, |_| Some(1));
    assert!(m.yielding());
}

#[test]
fn balanced_counts_change_nothing() {
    let mut m = one_node(true);
    // Both sides lose the ping node: the peer's count drops 5 ms after ours.
    run(&mut m, 0, 600, |t| t < 200, |t| Some(u8::from(t < 246)));
    assert!(!m.yielding());
    let l = lines(&mut m);
    assert!(
        !l.iter().any(|x| x.starts_with("Giving up")),
        "a short difference while both lose it is not a giveup: {l:?}"
    );
    assert_eq!(m.comparison(), Comparison::Balanced);
}

#[test]
fn flapping_ping_node_does_not_give_up() {
    let mut m = one_node(true);
    // The ping node answers 60 ms of every 140: dead for 30 ms, up again, never 100 ms fewer.
    run(&mut m, 0, 2000, |t| t % 140 < 60, |_| Some(1));
    let l = lines(&mut m);
    assert!(
        l.iter().filter(|x| x.ends_with("is dead")).count() >= 5,
        "{l:?}"
    );
    assert!(!l.iter().any(|x| x.starts_with("Giving up")), "{l:?}");
    assert!(!m.yielding());
}

#[test]
fn resumes_after_balanced_for_settle() {
    let mut m = one_node(true);
    run(&mut m, 0, 299, |t| t < 100, |_| Some(1));
    assert!(m.yielding(), "gave up at 151 + 100");
    lines(&mut m);
    // Answering again from 300: up at 301, balanced, resumes at 401.
    run(&mut m, 300, 400, |_| true, |_| Some(1));
    assert!(m.yielding(), "not before settle");
    run(&mut m, 401, 402, |_| true, |_| Some(1));
    assert!(!m.yielding());
    let l = lines(&mut m);
    assert!(
        l.iter()
            .any(|x| x.starts_with("hb: ping node count no longer below")),
        "{l:?}"
    );
}

#[test]
fn resuming_waits_for_settle_so_a_flap_back_does_not_move_groups() {
    let mut m = one_node(true);
    run(&mut m, 0, 450, |t| t < 100, |_| Some(1));
    assert!(m.yielding());
    // Up for 40 ms, then gone again: never balanced for 100 ms.
    run(&mut m, 451, 900, |t| t < 490, |_| Some(1));
    assert!(m.yielding(), "still yielding through a short return");
}

#[test]
fn ipfail_off_never_yields() {
    let mut m = one_node(false);
    run(&mut m, 0, 600, |t| t < 100, |_| Some(1));
    assert!(!m.yielding());
    assert!(
        !lines(&mut m)
            .iter()
            .any(|x| x.contains("giveup") || x.contains("Giving"))
    );
}

#[test]
fn no_live_peer_stops_yielding_after_settle() {
    let mut m = one_node(true);
    run(&mut m, 0, 450, |t| t < 100, |_| Some(1));
    assert!(m.yielding());
    run(&mut m, 451, 560, |_| false, |_| None);
    assert!(!m.yielding(), "nobody to yield to");
}

#[test]
fn counts_travel_only_with_ping_nodes() {
    let m = PingMonitor::new(&[], settings(true), at(0));
    assert_eq!(m.counts(), None);
    assert_eq!(m.poll_timeout(), None);
    assert!(!m.isolated());
    let mut m = one_node(true);
    m.handle_reply(at(1), 0, at(0), at(1));
    assert_eq!(
        m.counts(),
        Some(PingCounts {
            reachable: 1,
            configured: 1,
            yielding: false
        })
    );
}

#[test]
fn settle_deadline_is_in_poll_timeout() {
    let mut m = one_node(true);
    m.handle_reply(at(1), 0, at(0), at(1));
    m.compare(at(1), Some(1));
    m.due(at(0));
    m.handle_timeout(at(51));
    m.compare(at(51), Some(1));
    assert_eq!(m.comparison(), Comparison::Fewer);
    // next ping at 10 is overdue; after sending, the settle deadline (151) is next.
    m.due(at(51));
    assert_eq!(m.poll_timeout(), Some(at(61)));
    for t in [61, 71, 81, 91, 101, 111, 121, 131, 141] {
        m.due(at(t));
    }
    assert_eq!(m.poll_timeout(), Some(at(151)));
}

#[test]
fn ping_targets_from_ha_cf() {
    let c = crate::config::parse_ha_cf(
        std::path::Path::new("ha.cf"),
        b"ping 10.0.0.254\nping_group routers 10.0.0.1 10.0.0.2\nbcast eth1\nnode a\nnode b\n\
         auto_failback on\nrespawn hacluster /usr/libexec/heartbeat/ipfail\n",
    )
    .expect("valid")
    .value;
    let t = ping_targets(&c);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].name, "10.0.0.254");
    assert!(!t[0].group);
    assert_eq!(t[1].name, "routers");
    assert_eq!(t[1].addrs.len(), 2);
    let s = PingSettings::from_ha_cf(&c);
    assert!(s.ipfail, "a respawn line running ipfail switches it on");
    assert_eq!(s.interval, c.keepalive.value);
    assert_eq!(s.deadping, c.deadtime.value);
    assert_eq!(s.settle, s.deadping);
}

fn target(name: &str, addrs: &[&str]) -> PingTarget {
    PingTarget {
        name: name.into(),
        addrs: addrs.iter().map(|a| addr(a)).collect(),
        group: addrs.len() > 1 || name.parse::<IpAddr>().is_err(),
    }
}

fn state_of(m: &PingMonitor, a: &str) -> PingState {
    let v = m.view();
    v.nodes
        .iter()
        .flat_map(|n| n.links.iter())
        .find(|l| l.addr == addr(a))
        .map(|l| l.state)
        .unwrap_or_else(|| panic!("{a} not configured: {v:?}"))
}

#[test]
fn reconfigure_keeps_addresses_that_stay_and_starts_new_ones_unknown() {
    let mut m = one_node(false);
    run(&mut m, 0, 30, |_| true, |_| None);
    assert_eq!(state_of(&m, "10.0.0.254"), PingState::Up);
    let answered = m.links[0].last_answered;
    // A reload at 30 ms: the address stays, one is added, in a group.
    let map = m.reconfigure(
        &[
            target("10.0.0.254", &["10.0.0.254"]),
            target("gw", &["10.0.0.1", "10.0.0.2"]),
        ],
        settings(false),
        at(30),
    );
    assert_eq!(map, [Some(0)], "the old address keeps index 0");
    assert_eq!(state_of(&m, "10.0.0.254"), PingState::Up);
    assert_eq!(m.links[0].last_answered, answered, "its evidence stays");
    assert_eq!(state_of(&m, "10.0.0.1"), PingState::Unknown);
    assert_eq!((m.reachable(), m.configured()), (1, 2));
    // New addresses are pinged at once.
    assert_eq!(m.due(at(30)), [0, 1, 2]);
    // Never answered: dead deadping after the reload (not after the start).
    m.handle_timeout(at(79));
    assert_eq!(state_of(&m, "10.0.0.1"), PingState::Unknown);
    m.handle_timeout(at(80));
    assert_eq!(state_of(&m, "10.0.0.1"), PingState::Dead);
    assert_eq!(m.view().nodes[1].state, PingState::Dead);
}

#[test]
fn reconfigure_removes_addresses_and_remaps_the_rest() {
    let mut m = PingMonitor::new(
        &[
            target("10.0.0.1", &["10.0.0.1"]),
            target("10.0.0.2", &["10.0.0.2"]),
        ],
        settings(false),
        at(0),
    );
    run(&mut m, 0, 30, |_| true, |_| None);
    assert_eq!(m.reachable(), 2);
    let map = m.reconfigure(
        &[target("10.0.0.2", &["10.0.0.2"])],
        settings(false),
        at(30),
    );
    assert_eq!(map, [None, Some(0)]);
    assert_eq!((m.reachable(), m.configured()), (1, 1));
    assert_eq!(state_of(&m, "10.0.0.2"), PingState::Up);
    // No new address: the schedule goes on (no burst of requests).
    assert!(m.due(at(30)).is_empty());
    // Everything removed: nothing configured, nothing due, no timeout.
    let map = m.reconfigure(&[], settings(false), at(31));
    assert_eq!(map, [None]);
    assert!(!m.is_configured());
    assert!(m.poll_timeout().is_none());
    assert!(m.counts().is_none());
}

#[test]
fn reconfigure_with_ipfail_off_stops_yielding() {
    let mut m = one_node(true);
    // Never answers, the peer reaches one: gives up after deadping + settle.
    run(&mut m, 0, 200, |_| false, |_| Some(1));
    assert!(m.yielding());
    m.reconfigure(
        &[target("10.0.0.254", &["10.0.0.254"])],
        settings(false),
        at(200),
    );
    assert!(!m.yielding());
    assert_eq!(m.comparison(), Comparison::Unknown);
    assert!(
        lines(&mut m)
            .iter()
            .any(|l| l.contains("taking part in group ownership again"))
    );
}
