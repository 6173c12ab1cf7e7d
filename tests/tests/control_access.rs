//! Who may use the control socket: a non-root member of the `control_group` may ask for status
//! (`hbctl status`, `cl_status`) and is refused `standby` (`hbctl standby`, `hb_standby`), which
//! never reaches the main loop; a non-root user outside the group cannot connect; root may do
//! everything. The non-root clients are the real `hbctl` binary run under `setpriv` with another
//! uid and gid (no user or group is created: the kernel checks ids, not names). hbd's side is
//! the real `control::bind` + `allow_group` + `serve`, with a stand-in main loop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Output,
    sync::{Arc, Mutex},
};

use hb_daemon::control::{self, HoldingState, Request, Response, StatusReport};
use hb_tests::{require_root, unique_name};

/// The group given access in this test, and a user outside it (`nobody`).
const GROUP: u32 = 64_123;
const NOBODY: u32 = 65_534;

fn report() -> StatusReport {
    StatusReport {
        local_node: "n1".into(),
        generation: 1,
        uptime_secs: 1,
        nodes: vec![],
        groups: vec![control::GroupStatus {
            index: 0,
            description: "IPaddr::10.0.0.100".into(),
            preferred_node: "n1".into(),
            owner: Some("n1".into()),
            local: HoldingState::Held,
        }],
        haresources_mismatch: vec![],
        fence_pending: vec![],
        delivery: vec![],
        ping: None,
    }
}

/// Runs `program args` as `uid` with only `gid` (no supplementary groups), `env` added.
fn run_as(uid: u32, gid: u32, env: &[(&str, &str)], program: &Path, args: &[&str]) -> Output {
    std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--",
        ])
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("setpriv")
}

#[test]
fn group_members_read_status_and_only_root_changes_state() {
    if !require_root("group_members_read_status_and_only_root_changes_state") {
        return;
    }
    let dir = std::env::temp_dir().join(unique_name("hb-ctl"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of hbctl in a directory everyone can read, and its Heartbeat names.
    let hbctl = dir.join("hbctl");
    std::fs::copy(daemon_common::bin("hbctl"), &hbctl).unwrap();
    for name in ["cl_status", "hb_standby"] {
        std::os::unix::fs::symlink(&hbctl, dir.join(name)).unwrap();
    }
    let sock = dir.join("hbd.sock");
    let sock_s = sock.display().to_string();

    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<control::ControlCall>(8);
    let listener = rt.block_on(async { control::bind(&sock) }).unwrap();
    control::allow_group(&sock, GROUP).unwrap();
    rt.spawn(control::serve(listener, tx));
    let seen_loop = Arc::clone(&seen);
    rt.spawn(async move {
        while let Some(call) = rx.recv().await {
            seen_loop.lock().unwrap().push(call.request.clone());
            let answer = match call.request {
                Request::Status => Response::Status(report()),
                _ => Response::Ack {
                    message: "done".into(),
                },
            };
            let _ = call.reply.send(answer);
        }
    });

    let text = |o: &Output| {
        format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let env = [("HB_CONTROL_SOCKET", sock_s.as_str())];

    // A member of the group: status yes (hbctl and cl_status), standby no.
    let o = run_as(
        NOBODY,
        GROUP,
        &[],
        &hbctl,
        &["--socket", &sock_s, "status", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"local_node\": \"n1\""));
    let o = run_as(NOBODY, GROUP, &env, &dir.join("cl_status"), &["rscstatus"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "local\n");
    let o = run_as(
        NOBODY,
        GROUP,
        &[],
        &hbctl,
        &["--socket", &sock_s, "standby"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied: standby"),
        "{}",
        text(&o)
    );
    let o = run_as(NOBODY, GROUP, &env, &dir.join("hb_standby"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied"),
        "{}",
        text(&o)
    );
    assert!(
        seen.lock().unwrap().iter().all(|r| *r == Request::Status),
        "a refused request reached the main loop: {:?}",
        seen.lock().unwrap()
    );

    // Outside the group: cannot connect at all (hbctl's exit 4).
    let o = run_as(
        NOBODY,
        NOBODY,
        &[],
        &hbctl,
        &["--socket", &sock_s, "status"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // Root: standby goes through.
    let o = std::process::Command::new(&hbctl)
        .args(["--socket", &sock_s, "standby", "foreign"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(seen.lock().unwrap().contains(&Request::Standby {
        scope: control::Scope::Foreign
    }));

    drop(rt);
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
