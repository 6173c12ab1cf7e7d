//! Issue 10 against the real hbd: the standby's hbd frozen with SIGSTOP for 3 x deadtime while
//! the active node keeps sending, then SIGCONT: no failover, no VIP move, a logged late wake-up
//! (XDP path, and the socket path with `xdp off`). And the opposite: a peer that truly stopped
//! while the standby was frozen is declared dead right after SIGCONT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::time::Duration;

use daemon_common::{expect_log, lock, logged, logs, ms, signal, spec, up_and_settled};
use hb_tests::{
    lab::{LabSpec, Node, XdpSetting},
    monotonic_ns, require_root,
};
use nix::sys::signal::Signal;

/// Freezes n2's hbd for 3 x deadtime while n1 runs, and checks nothing moved.
fn frozen_standby_does_not_fail_over(spec: LabSpec, path: &str) {
    let deadtime = spec.deadtime;
    let mut lab = up_and_settled(spec);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = monotonic_ns();
    signal(&mut lab, Node::N2, Signal::SIGSTOP);
    std::thread::sleep(deadtime * 3);
    let resumed = monotonic_ns();
    signal(&mut lab, Node::N2, Signal::SIGCONT);
    let late = expect_log(
        &lab,
        Node::N2,
        "Late wakeup: ran ",
        stopped,
        Duration::from_secs(3),
    );
    let line = lab
        .log(Node::N2)
        .unwrap()
        .into_iter()
        .find(|l| l.mono_ns == late)
        .unwrap();
    // Let whatever the standby would do after waking happen.
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "{path}: n2 frozen {:.1} ms (deadtime {deadtime:?}); logged {:.1} ms after SIGCONT: {}",
        ms(stopped, resumed),
        ms(resumed, late),
        line.message
    );
    for needle in [
        "is dead",
        "Taking over",
        "Acquiring resource group",
        "eth1 dead.",
        "eth2 dead.",
    ] {
        assert!(
            !logged(&lab, Node::N2, needle, stopped),
            "{path}: frozen standby logged {needle:?} after SIGCONT\n{}",
            logs(&lab, 30)
        );
    }
    assert!(
        lab.holds_vip(Node::N1).unwrap() && !lab.holds_vip(Node::N2).unwrap(),
        "{path}: VIP moved\n{}",
        logs(&lab, 30)
    );
    assert!(lab.hbd_pid(Node::N2).is_some(), "n2's hbd exited");
}

#[test]
fn frozen_standby_xdp_path_no_failover() {
    if !require_root("frozen_standby_xdp_path_no_failover") {
        return;
    }
    let _g = lock();
    frozen_standby_does_not_fail_over(spec(), "XDP path");
}

#[test]
fn frozen_standby_socket_path_no_failover() {
    if !require_root("frozen_standby_socket_path_no_failover") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.xdp = XdpSetting::Off;
    frozen_standby_does_not_fail_over(spec, "socket path");
}

#[test]
fn peer_that_died_during_the_freeze_is_declared_dead_after_sigcont() {
    if !require_root("peer_that_died_during_the_freeze_is_declared_dead_after_sigcont") {
        return;
    }
    let _g = lock();
    let spec = spec();
    let deadtime = spec.deadtime;
    let mut lab = up_and_settled(spec);
    let stopped = monotonic_ns();
    signal(&mut lab, Node::N2, Signal::SIGSTOP);
    let killed = lab.kill_node(Node::N1).unwrap();
    std::thread::sleep(deadtime * 3);
    let resumed = monotonic_ns();
    signal(&mut lab, Node::N2, Signal::SIGCONT);
    let dead = expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        stopped,
        Duration::from_secs(5),
    );
    println!(
        "n1 killed {:.1} ms into n2's {:.1} ms freeze; `node n1: is dead` {:.1} ms after SIGCONT",
        ms(stopped, killed),
        ms(stopped, resumed),
        ms(resumed, dead)
    );
    assert!(dead >= resumed, "declared dead while frozen?");
    // Right after SIGCONT: within a deadtime plus scheduling margin, not a fresh full wait.
    assert!(
        ms(resumed, dead) < (deadtime + Duration::from_millis(500)).as_secs_f64() * 1e3,
        "declared dead {:.1} ms after SIGCONT",
        ms(resumed, dead)
    );
    assert!(
        daemon_common::wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N2).unwrap()),
        "n2 did not take the VIP\n{}",
        logs(&lab, 30)
    );
}
