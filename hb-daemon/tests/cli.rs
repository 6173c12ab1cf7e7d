//! `hbctl` and `hbstat` binaries against a fake hbd, and without one.

// Test helpers outside #[test] functions: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::FakeHbd;
use hb_daemon::{
    control::{Request, Scope, StatusReport},
    metrics::StatsReport,
};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

const HBCTL: &str = env!("CARGO_BIN_EXE_hbctl");
const HBSTAT: &str = env!("CARGO_BIN_EXE_hbstat");

#[test]
fn hbctl_status_table_and_json() {
    let hbd = FakeHbd::start();
    let run_dir = hbd.run_dir();
    let run_dir = run_dir.to_str().unwrap();
    let table = stdout(&run(HBCTL, &["--run-dir", run_dir, "status"]));
    assert!(
        table.starts_with("Local node: node1 (generation 7340032, up 1h02m03s)"),
        "{table}"
    );
    let node2 = table.lines().find(|l| l.starts_with("node2")).unwrap();
    assert!(node2.contains(" up "), "{table}");
    assert!(
        node2.contains("eth1 up (12.0ms ago), eth2 dead (never heard)"),
        "{table}"
    );
    let g1: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(g1, ["1", "node2", "none", "none", "IPaddr::10.0.0.101"]);

    let socket = hbd.socket();
    let json = stdout(&run(
        HBCTL,
        &["--socket", socket.to_str().unwrap(), "status", "--json"],
    ));
    let parsed: StatusReport = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, common::status_report());
}

#[test]
fn hbctl_standby_and_takeover_scopes() {
    let hbd = FakeHbd::start();
    let run_dir = hbd.run_dir();
    let run_dir = run_dir.to_str().unwrap();
    let out = stdout(&run(HBCTL, &["--run-dir", run_dir, "standby"]));
    assert_eq!(out, "standby all requested\n");
    stdout(&run(HBCTL, &["--run-dir", run_dir, "takeover", "foreign"]));
    stdout(&run(HBCTL, &["--run-dir", run_dir, "standby", "failback"]));
    let bad = run(HBCTL, &["--run-dir", run_dir, "takeover", "everything"]);
    assert!(!bad.status.success());
    assert_eq!(
        *hbd.seen.lock().unwrap(),
        vec![
            Request::Standby { scope: Scope::All },
            Request::Takeover {
                scope: Scope::Foreign
            },
            Request::Standby {
                scope: Scope::Failback
            },
        ]
    );
}

#[test]
fn hbstat_views() {
    let hbd = FakeHbd::start();
    let run_dir = hbd.run_dir();
    let run_dir = run_dir.to_str().unwrap();
    let table = stdout(&run(HBSTAT, &["--run-dir", run_dir]));
    assert!(
        table.contains("peer node2 (up): late heartbeats 1"),
        "{table}"
    );
    assert!(
        table.contains("link eth1 (up): received 1001, lost 5 (0.50%)"),
        "{table}"
    );
    let gap: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("gap "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        gap,
        [
            "gap", "1000", "10.0ms", "10.0ms", "10.0ms", "10.0ms", "50.0ms"
        ]
    );
    let delivery: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("delivery "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(delivery[1..3], ["1000", "40.0us"]);
    assert!(
        table.contains(
            "last: node2 declared dead after 50.0ms, resources after 52.0ms, first ARP after 51.0ms"
        ),
        "{table}"
    );
    assert!(table.contains("errors: send_eperm 1"), "{table}");

    let hist = stdout(&run(HBSTAT, &["--run-dir", run_dir, "--histogram"]));
    assert!(hist.contains("gap distribution:"), "{hist}");
    let full_bar = "#".repeat(hb_daemon::display::BAR_WIDTH);
    assert!(
        hist.lines()
            .any(|l| l.contains("<=  10.0ms |") && l.contains(&full_bar) && l.ends_with(" 999")),
        "{hist}"
    );

    let json = stdout(&run(HBSTAT, &["--run-dir", run_dir, "--json"]));
    let report: StatsReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.peers[0].links[0].lost, 5);
    assert_eq!(
        report.peers[0].links[0].gap.buckets.len(),
        report.bucket_bounds_ns.len()
    );

    let reset = stdout(&run(HBSTAT, &["--run-dir", run_dir, "--reset"]));
    assert_eq!(reset, "statistics reset\n");
    let json = stdout(&run(HBSTAT, &["--run-dir", run_dir, "--json"]));
    let report: StatsReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.peers[0].links[0].received, 0);
}

#[test]
fn hbstat_watch_refreshes_until_stopped() {
    let hbd = FakeHbd::start();
    let mut child = Command::new(HBSTAT)
        .args([
            "--run-dir",
            hbd.run_dir().to_str().unwrap(),
            "--watch",
            "--json",
            "--interval",
            "0.05",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..3 {
        let line = lines.next().unwrap().unwrap();
        let r: StatsReport = serde_json::from_str(&line).unwrap();
        assert_eq!(r.local_node, "node1");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stats_requests = hbd
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| **r == Request::Stats)
        .count();
    assert!(stats_requests >= 3);
}

#[test]
fn clear_message_when_hbd_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_str().unwrap();
    for (bin, args) in [
        (HBSTAT, vec!["--run-dir", run_dir]),
        (HBCTL, vec!["--run-dir", run_dir, "status"]),
        (HBCTL, vec!["--run-dir", run_dir, "standby"]),
    ] {
        let o = run(bin, &args);
        assert_eq!(o.status.code(), Some(3), "{bin}");
        let err = String::from_utf8_lossy(&o.stderr);
        let name = std::path::Path::new(bin)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            err.starts_with(&format!(
                "{name}: hbd is not running (no control socket listening at {run_dir}/hbd.sock)"
            )),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    // A socket file nobody listens on (hbd died): the same message.
    let stale = dir.path().join("hbd.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let o = run(HBSTAT, &["--socket", stale.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hbd is not running"));
}

#[test]
fn clear_message_when_the_socket_is_not_accessible() {
    // Needs root to drop to another user; the socket is mode 0600, owned by root.
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !nix::unistd::geteuid().is_root() || !has_setpriv {
        eprintln!(
            "SKIPPED clear_message_when_the_socket_is_not_accessible: needs root and setpriv"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let hbd = FakeHbd::start();
    std::fs::set_permissions(hbd.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = hbd.socket();
    for (bin, args) in [
        (HBSTAT, vec!["--socket", socket.to_str().unwrap()]),
        (HBCTL, vec!["--socket", socket.to_str().unwrap(), "status"]),
    ] {
        let mut all = vec!["--reuid=nobody", "--regid=nogroup", "--clear-groups", bin];
        all.extend(args);
        let o = run("setpriv", &all);
        assert_eq!(o.status.code(), Some(4), "{bin}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "permission denied on the control socket {}",
                socket.display()
            )),
            "{err}"
        );
    }
    assert!(hbd.seen.lock().unwrap().is_empty());
}
