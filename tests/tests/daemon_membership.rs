//! Issue 4 against the real hbd in the lab: both daemons see each other's links come up;
//! `kill -9` of one is declared dead by the other within deadtime plus a margin (from the
//! kill, by the log's mono= stamps); SIGTERM of one sends a shutdown notice the other acts on
//! without waiting for deadtime; an invalid configuration is refused with `PATH:LINE:` lines
//! and exit status 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{path::PathBuf, process::Command, time::Duration};

use daemon_common::{expect_log, lock, logged, ms, spec, up_and_settled, wait_until};
use hb_tests::{lab::Node, require_root};

#[test]
fn both_daemons_see_each_others_links_come_up() {
    if !require_root("both_daemons_see_each_others_links_come_up") {
        return;
    }
    let _g = lock();
    // up_and_settled waits for `Link n2:eth1 up.` / `Link n2:eth2 up.` on n1 and the reverse.
    let lab = up_and_settled(spec());
    for node in Node::ALL {
        let mut first_up = u64::MAX;
        for l in [1, 2] {
            let line = format!("Link {}:eth{l} up.", node.other());
            let at = expect_log(&lab, node, &line, 0, Duration::from_secs(1));
            println!("{node}: {line:?} at mono={at}");
            first_up = first_up.min(at);
        }
        // A peer that had not started within initdead may be declared dead before its
        // first heartbeat (Heartbeat's rule, seen when spawning the second daemon is slow on a
        // loaded machine); once a link came up, no death.
        assert!(
            !logged(&lab, node, "is dead", first_up),
            "{node} declared a peer dead after its links came up\n{}",
            daemon_common::logs(&lab, 30)
        );
    }
}

#[test]
fn kill_9_is_declared_dead_within_deadtime() {
    if !require_root("kill_9_is_declared_dead_within_deadtime") {
        return;
    }
    let _g = lock();
    let spec = spec();
    let deadtime = spec.deadtime;
    let mut lab = up_and_settled(spec);
    let killed = lab.kill_hbd(Node::N1).unwrap();
    let dead = expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        killed,
        Duration::from_secs(5),
    );
    let detect = ms(killed, dead);
    println!(
        "kill -9 of n1's hbd to `node n1: is dead` on n2: {detect:.1} ms (deadtime {deadtime:?})"
    );
    // Deadtime plus a margin for scheduling on a loaded 2-core machine.
    let margin = Duration::from_millis(500);
    assert!(
        detect < (deadtime + margin).as_secs_f64() * 1e3,
        "declared dead {detect:.1} ms after the kill"
    );
    // hb's own line after Heartbeat's: how long after the last heartbeat's arrival.
    let line = lab
        .wait_log(
            Node::N2,
            "hb: node n1 declared dead ",
            killed,
            Duration::from_secs(2),
        )
        .unwrap()
        .unwrap_or_else(|| panic!("no `declared dead` line\n{}", daemon_common::logs(&lab, 30)));
    let after_last = hb_tests::lab::timeline::declared_dead_after_ms(&line.message)
        .unwrap_or_else(|| panic!("unparsable: {}", line.message));
    println!("{}", line.message);
    assert!(
        line.message
            .ends_with(&format!("(deadtime {} ms)", deadtime.as_millis())),
        "{}",
        line.message
    );
    // Never before the deadtime has passed since the last heartbeat; after it by at most
    // the same scheduling margin.
    assert!(
        after_last >= deadtime.as_secs_f64() * 1e3 - 0.5
            && after_last < (deadtime + margin).as_secs_f64() * 1e3,
        "{}",
        line.message
    );
    assert!(
        wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N2).unwrap()),
        "n2 did not take the VIP\n{}",
        daemon_common::logs(&lab, 30)
    );
    println!(
        "VIP on n2 {:.1} ms after the kill",
        ms(killed, hb_tests::monotonic_ns())
    );
}

#[test]
fn sigterm_sends_shutdown_notice_and_peer_acts_before_deadtime() {
    if !require_root("sigterm_sends_shutdown_notice_and_peer_acts_before_deadtime") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.deadtime = Duration::from_secs(2);
    spec.warntime = Duration::from_secs(1);
    spec.initdead = Duration::from_secs(4);
    let deadtime = spec.deadtime;
    let mut lab = up_and_settled(spec);
    let stopped = lab.stop_hbd(Node::N1, Duration::from_secs(5)).unwrap();
    let notice = expect_log(
        &lab,
        Node::N2,
        "Received shutdown notice from n1.",
        stopped,
        Duration::from_secs(3),
    );
    assert!(
        wait_until(Duration::from_secs(3), || lab.holds_vip(Node::N2).unwrap()),
        "n2 did not take the VIP after the shutdown notice\n{}",
        daemon_common::logs(&lab, 30)
    );
    let vip_at = hb_tests::monotonic_ns();
    let took = expect_log(&lab, Node::N2, "hb: address", stopped, Duration::ZERO);
    println!(
        "SIGTERM of n1 to shutdown notice on n2: {:.1} ms; to VIP added on n2: {:.1} ms; VIP seen on n2 by {:.1} ms (deadtime {deadtime:?})",
        ms(stopped, notice),
        ms(stopped, took),
        ms(stopped, vip_at)
    );
    // Acted on the notice, well before deadtime would have expired.
    assert!(
        ms(stopped, took) < deadtime.as_secs_f64() * 1e3 / 2.0,
        "takeover {:.1} ms after SIGTERM: waited for deadtime?",
        ms(stopped, took)
    );
    assert!(!lab.holds_vip(Node::N1).unwrap(), "n1 kept the VIP");
    // n2 marks n1 dead on the notice itself, not after deadtime.
    let dead = expect_log(&lab, Node::N2, "node n1: is dead", stopped, Duration::ZERO);
    assert!(
        dead >= notice && ms(notice, dead) < deadtime.as_secs_f64() * 1e3 / 2.0,
        "n1 declared dead {:.1} ms after the notice",
        ms(notice, dead)
    );
}

/// Removes the config directory it names when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn invalid_config_is_refused_with_path_line_and_exit_1() {
    let dir = TempDir(std::env::temp_dir().join(hb_tests::unique_name("hbcfg")));
    let conf = dir.0.join("ha.d");
    std::fs::create_dir_all(&conf).unwrap();
    // Line 3: deadtime below keepalive; line 4: an unknown directive.
    std::fs::write(
        conf.join("ha.cf"),
        "# bad\nkeepalive 100ms\ndeadtime 10ms\nfrobnicate yes\nbcast eth1\nnode n1\nnode n2\n",
    )
    .unwrap();
    std::fs::write(conf.join("haresources"), "n1 IPaddr::10.9.9.9/24/eth1\n").unwrap();
    let authkeys = conf.join("authkeys");
    std::fs::write(&authkeys, "auth 1\n1 sha256 secret\n").unwrap();
    std::fs::set_permissions(
        &authkeys,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = Command::new(daemon_common::bin("hbd"))
        .arg("--foreground")
        .arg("--config-dir")
        .arg(&conf)
        .args(["--node-name", "n1"])
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .arg("--run-dir")
        .arg(dir.0.join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("hbd's stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let ha_cf = conf.join("ha.cf").display().to_string();
    let located: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{ha_cf}:")))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect();
    assert!(
        located.contains(&4),
        "no {ha_cf}:4: line for the unknown directive"
    );
    assert!(
        located.iter().any(|&l| l == 3 || l == 2),
        "no {ha_cf}:LINE: line for deadtime below keepalive"
    );
    assert!(
        !dir.0.join("run/hbd.sock").exists(),
        "a refused hbd opened its control socket"
    );
}
