//! Shared by the `daemon_*` test files: the debug binaries, a lab spec running them, the
//! per-binary lab lock, and small waits on hbd's log and the VIP.
#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use hb_tests::lab::{Lab, LabSpec, Node};

/// Serializes the lab tests of one test binary (2 cores, tens-of-ms deadlines).
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// Takes the lab lock (recovering from a poisoned lock after a failed test).
pub fn lock() -> MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `target/debug/NAME`, next to the test executable's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/debug");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not built (run the tests with `cargo test` at the workspace root)",
        p.display()
    );
    p
}

/// A unique lab spec running the debug hbd, hbctl and hbstat.
pub fn spec() -> LabSpec {
    let mut s = LabSpec::unique();
    s.hbd_path = Some(bin("hbd"));
    s.hbctl_path = Some(bin("hbctl"));
    s.hbstat_path = Some(bin("hbstat"));
    s
}

/// The last `n` lines of each node's hbd.log, for failure messages.
pub fn logs(lab: &Lab, n: usize) -> String {
    let mut out = String::new();
    for &node in lab.nodes() {
        let text = std::fs::read_to_string(lab.log_path(node)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        out += &format!(
            "--- {node} hbd.log (last {n} lines)\n{}\n",
            all[all.len().saturating_sub(n)..].join("\n")
        );
    }
    out
}

/// Waits up to `timeout` for `cond`; true when it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `line` in `node`'s log at or after `after_ns`; its mono= stamp. Panics with both
/// logs when it does not come within `timeout`.
pub fn expect_log(lab: &Lab, node: Node, line: &str, after_ns: u64, timeout: Duration) -> u64 {
    match lab.wait_log(node, line, after_ns, timeout).unwrap() {
        Some(l) => l.mono_ns,
        None => panic!(
            "{node} did not log {line:?} within {timeout:?}\n{}",
            logs(lab, 30)
        ),
    }
}

/// Whether `node`'s log has a line containing `needle` at or after `after_ns`.
pub fn logged(lab: &Lab, node: Node, needle: &str, after_ns: u64) -> bool {
    lab.log(node)
        .unwrap()
        .iter()
        .any(|l| l.mono_ns >= after_ns && l.message.contains(needle))
}

/// Brings a lab up, checks every daemon runs, waits until each node sees every peer's link up
/// on every link and n1 holds the VIP (and no other node does).
pub fn up_and_settled(spec: LabSpec) -> Lab {
    let links = spec.links;
    let mut lab = Lab::up(spec).unwrap();
    for &node in lab.nodes() {
        assert!(
            lab.hbd_pid(node).is_some(),
            "hbd not running on {node}: {}\n{}",
            lab.status(),
            logs(&lab, 30)
        );
    }
    for &node in lab.nodes() {
        for peer in lab.peers(node) {
            for l in 1..=links {
                expect_log(
                    &lab,
                    node,
                    &format!("Link {peer}:eth{l} up."),
                    0,
                    Duration::from_secs(10),
                );
            }
        }
    }
    let ok = wait_until(Duration::from_secs(10), || {
        lab.holds_vip(Node::N1).unwrap()
            && !lab
                .peers(Node::N1)
                .iter()
                .any(|&n| lab.holds_vip(n).unwrap())
    });
    assert!(
        ok,
        "VIP not on n1 alone: {}\n{}",
        lab.status(),
        logs(&lab, 30)
    );
    lab
}

/// Sends `sig` to `node`'s hbd.
pub fn signal(lab: &mut Lab, node: Node, sig: nix::sys::signal::Signal) {
    let pid = lab.hbd_pid(node).expect("hbd runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Milliseconds between two CLOCK_MONOTONIC stamps (`to` before `from` gives a negative value).
pub fn ms(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) / 1e6
}
