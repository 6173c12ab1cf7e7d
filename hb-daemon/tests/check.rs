//! Runs the built `hbd --check` on configuration directories made from hb-proto's fixtures:
//! exit codes 0, 1 and 2 and the lines printed.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

/// A temporary configuration directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "hbd-check-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn write(&self, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixture's files with authkeys 0600 and an executable `resource.d/httpd`.
fn fixture(name: &str) -> TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hb-proto/tests/fixtures")
        .join(name);
    let t = TempDir::new(name);
    for (f, mode) in [
        ("ha.cf", 0o644),
        ("haresources", 0o644),
        ("authkeys", 0o600),
    ] {
        t.write(f, &std::fs::read(src.join(f)).unwrap(), mode);
    }
    t.write("resource.d/httpd", b"#!/bin/sh\nexit 0\n", 0o755);
    t
}

fn hbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hbd"))
        .args(args)
        .output()
        .unwrap()
}

fn check(dir: &TempDir, node: &str) -> (i32, String, String) {
    let out = hbd(&[
        "--check",
        "--config-dir",
        dir.0.to_str().unwrap(),
        "--node-name",
        node,
    ]);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim_end() == line)
}

#[test]
fn classic_configuration_is_valid() {
    let t = fixture("classic");
    let (code, out, err) = check(&t, "node1.example.com");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for line in [
        "  keepalive       2000 ms",
        "  deadtime        30000 ms",
        "  warntime        10000 ms",
        "  initdead        120000 ms",
        "  udpport         694",
        "  auto_failback   on",
        "  realtime        on (default)",
        "  xdp             auto (default)",
        "  garp_interval   200 ms (default)",
        "  bcast eth1 udp port 694",
        "  node1.example.com id 0xfffec923 (this node)",
        "  node2.example.com id 0x73a8b71a",
        "  key 1 crc (signs)",
    ] {
        assert!(has_line(&out, line), "missing {line:?} in:\n{out}");
    }
    assert!(
        has_line(
            &out,
            &format!("    httpd [{}]", t.0.join("resource.d/httpd").display())
        ),
        "{out}"
    );
    assert_eq!(
        err.trim_end(),
        format!(
            "{}:2: warning: crc gives no security: it only detects corrupted packets, anyone who \
             can send to the heartbeat port can forge heartbeats; use sha256",
            t.0.join("authkeys").display()
        )
    );
}

#[test]
fn millisecond_configuration_is_valid() {
    let t = fixture("classic-10ms");
    let (code, out, err) = check(&t, "node2.example.com");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(has_line(&out, "  keepalive       10 ms"), "{out}");
    assert!(has_line(&out, "  deadtime        50 ms"), "{out}");
    assert!(
        has_line(&out, "  node2.example.com id 0x73a8b71a (this node)"),
        "{out}"
    );
}

#[test]
fn every_problem_is_printed_and_exit_code_is_1() {
    let t = fixture("classic");
    t.write(
        "ha.cf",
        b"keepalive 10ms\ndeadtime 20ms\nbcast eth1\nnode node1.example.com\nserial /dev/ttyS0\n",
        0o644,
    );
    t.write("authkeys", b"auth 1\n1 crc\n", 0o644);
    let (code, out, err) = check(&t, "node1.example.com");
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    let d = t.0.display();
    let expected = [
        format!(
            "{d}/ha.cf:5: 'serial' is not supported by hb: serial heartbeat links are not \
             supported by hb; use bcast, ucast or mcast"
        ),
        format!("{d}/ha.cf:2: deadtime (20 ms) must be more than twice keepalive (10 ms)"),
        format!("{d}/authkeys:0: Bad permissions on keyfile [{d}/authkeys], 600 recommended."),
        format!("hbd: 3 problems in the configuration in {d}"),
    ];
    assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");
}

#[test]
fn unknown_node_name_is_an_error() {
    let t = fixture("classic");
    let (code, _, err) = check(&t, "node3.example.com");
    assert_eq!(code, 1);
    assert!(
        has_line(
            &err,
            &format!(
                "{}:0: this node 'node3.example.com' is not in any node line (nodes: \
                 node1.example.com, node2.example.com); node names must match uname -n",
                t.0.join("ha.cf").display()
            )
        ),
        "{err}"
    );
}

#[test]
fn missing_config_dir_is_an_error() {
    let out = hbd(&[
        "--check",
        "--config-dir",
        "/nonexistent/hb-check-dir",
        "--node-name",
        "a",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        has_line(
            &err,
            "/nonexistent/hb-check-dir/ha.cf:0: cannot read: No such file or directory (os error 2)"
        ),
        "{err}"
    );
}

#[test]
fn the_daemon_refuses_an_invalid_configuration() {
    let out = hbd(&[
        "--config-dir",
        "/nonexistent/hb-check-dir",
        "--node-name",
        "a",
        "--foreground",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        has_line(
            &err,
            "/nonexistent/hb-check-dir/ha.cf:0: cannot read: No such file or directory (os error 2)"
        ),
        "{err}"
    );
    assert!(err.contains("hbd: refusing to start"), "{err}");
}

#[test]
fn node_name_defaults_to_uname_n() {
    let uname = Command::new("uname").arg("-n").output().unwrap();
    let host = String::from_utf8(uname.stdout).unwrap().trim().to_string();
    let t = fixture("classic");
    t.write(
        "ha.cf",
        format!("bcast eth1\nauto_failback on\nnode {host}\nnode other-node\n").as_bytes(),
        0o644,
    );
    t.write(
        "haresources",
        format!("{host} 10.0.0.100/24/eth1\n").as_bytes(),
        0o644,
    );
    t.write("authkeys", b"auth 1\n1 sha256 s3cret\n", 0o600);
    let out = hbd(&["--check", "--config-dir", t.0.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lower = host.to_ascii_lowercase();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("  {lower} id ")) && l.ends_with("(this node)")),
        "{stdout}"
    );
    assert!(
        has_line(&stdout, "    IPaddr::10.0.0.100/24/eth1"),
        "{stdout}"
    );
    assert!(
        has_line(&stdout, "  key 1 sha256 (HMAC) (signs)"),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn config_dir_defaults_to_etc_ha_d() {
    let out = hbd(&["--check", "--node-name", "hb-check-test-node"]);
    let all = format!(
        "{}{}",
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap()
    );
    assert!(all.contains("/etc/ha.d"), "{all}");
}

/// One ha.cf naming both nodes' unicast addresses: on this machine 127.0.0.1 is its own, so that
/// line is left out (with its warning) and the other stays the one medium, as in Heartbeat.
#[test]
fn a_ucast_to_an_address_of_this_machine_is_left_out() {
    let t = fixture("classic");
    t.write(
        "ha.cf",
        b"keepalive 2\ndeadtime 30\ninitdead 120\nudpport 694\nucast lo 127.0.0.1\n\
          ucast lo 192.0.2.7\nauto_failback on\nnode node1.example.com\nnode node2.example.com\n",
        0o644,
    );
    let (code, out, err) = check(&t, "node1.example.com");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(has_line(&out, "  ucast lo 192.0.2.7 udp port 694"), "{out}");
    assert!(!out.contains("127.0.0.1"), "{out}");
    assert!(
        has_line(
            &err,
            &format!(
                "{}:5: warning: ucast lo 127.0.0.1: an address of this machine; ignored, as \
                 Heartbeat does (one ha.cf can serve every node)",
                t.0.join("ha.cf").display()
            )
        ),
        "{err}"
    );
}
