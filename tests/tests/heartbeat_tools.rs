//! `cl_status`, `hb_standby` and `hb_takeover` (hbctl under those names) against a live hbd
//! pair, compared with what Heartbeat 3.0.6 printed for the same commands on the same kind of
//! two-node lab (`tests/golden/heartbeat/`, recorded by its `capture.sh`): nodes n1 and n2, one
//! link `eth1`, n1 holding its group. Compared are the answers that do not depend on the
//! resource groups (the Heartbeat lab had a group per node, this one a group on n1); for
//! `rscstatus` in the other states hb's own words are checked. Standby, takeover, a dead peer
//! and a stopped hbd are each asked about as in the recording.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{path::PathBuf, process::Output, time::Duration};

use daemon_common::{lock, logs, spec, up_and_settled, wait_until};
use hb_tests::{
    lab::{Lab, Node},
    require_root,
};

/// One recorded answer: stdout, stderr (dates and pids masked), exit code.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    stdout: String,
    stderr: String,
    code: i32,
}

fn golden(name: &str) -> Answer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/heartbeat");
    let read = |ext: &str| {
        std::fs::read_to_string(dir.join(format!("{name}.{ext}")))
            .unwrap_or_else(|e| panic!("golden {name}.{ext}: {e}"))
    };
    Answer {
        stdout: read("out"),
        stderr: read("err"),
        code: read("rc").trim().parse().unwrap(),
    }
}

/// capture.sh's masking: a leading `Mon DD HH:MM:SS ` becomes `DATE `, `[digits]` `[PID]`.
fn mask(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| {
            let b = l.as_bytes();
            let dated = b.len() > 16
                && b[..3].iter().all(u8::is_ascii_alphabetic)
                && b[3] == b' '
                && b[6] == b' '
                && b[9] == b':'
                && b[12] == b':'
                && b[15] == b' ';
            let l = if dated {
                format!("DATE {}", &l[16..])
            } else {
                l.to_owned()
            };
            let mut out = String::new();
            let mut rest = l.as_str();
            while let Some(i) = rest.find('[') {
                out += &rest[..=i];
                rest = &rest[i + 1..];
                match rest.find(']') {
                    Some(j) if j > 0 && rest[..j].bytes().all(|c| c.is_ascii_digit()) => {
                        out += "PID";
                        rest = &rest[j..];
                    }
                    _ => {}
                }
            }
            out + rest + "\n"
        })
        .collect()
}

/// Links named like Heartbeat's tools to the lab's hbctl, in the lab's directory.
fn tool(lab: &Lab, name: &str) -> PathBuf {
    let dir = lab.node_dir(Node::N1).join("tools");
    let path = dir.join(name);
    if !path.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(daemon_common::bin("hbctl"), &path).unwrap();
    }
    path
}

/// Runs the tool `name` with `args` on `node` (hostname = node name, its hbd's socket).
fn run(lab: &Lab, node: Node, name: &str, args: &str) -> Answer {
    let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    let out: Output = lab
        .node_command(node, &tool(lab, name), &args)
        .env("HB_RUN_DIR", lab.run_dir(node))
        .output()
        .unwrap();
    Answer {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: mask(&String::from_utf8_lossy(&out.stderr)),
        code: out.status.code().unwrap_or(-1),
    }
}

fn check(lab: &Lab, node: Node, golden_name: &str, line: &str) {
    let got = run(lab, node, "cl_status", line);
    assert_eq!(
        got,
        golden(golden_name),
        "cl_status {line} on {node} vs Heartbeat's ({golden_name})\n{}",
        logs(lab, 20)
    );
}

fn rscstatus(lab: &Lab, node: Node) -> String {
    run(lab, node, "cl_status", "rscstatus").stdout
}

#[test]
fn heartbeat_tools_against_a_live_pair() {
    if !require_root("heartbeat_tools_against_a_live_pair") {
        return;
    }
    let _guard = lock();
    let mut s = spec();
    s.links = 1;
    let mut lab = up_and_settled(s);
    // Both up, n1 holding its group.
    for (name, line) in [
        ("usage", ""),
        ("bogus", "bogus"),
        ("hbstatus", "hbstatus"),
        ("hbstatus-m", "hbstatus -m"),
        ("listnodes", "listnodes"),
        ("listnodes-n", "listnodes -n"),
        ("listnodes-p", "listnodes -p"),
        ("listnodes-m", "listnodes -m"),
        ("listnodes-x", "listnodes -x"),
        ("listnodes-v", "listnodes -v"),
        ("nodetype", "nodetype n2"),
        ("nodetype-nosuch", "nodetype nosuch"),
        ("nodestatus-self", "nodestatus n1"),
        ("nodestatus-peer", "nodestatus n2"),
        ("nodestatus-m", "nodestatus -m n2"),
        ("nodestatus-nosuch", "nodestatus nosuch"),
        ("nodestatus-x", "nodestatus -x n2"),
        ("nodeweight", "nodeweight n2"),
        ("listhblinks-self", "listhblinks n1"),
        ("listhblinks-peer", "listhblinks n2"),
        ("listhblinks-v", "listhblinks -v n2"),
        ("listhblinks-nosuch", "listhblinks nosuch"),
        ("hblinkstatus", "hblinkstatus n2 eth1"),
        ("hblinkstatus-m", "hblinkstatus -m n2 eth1"),
        ("hblinkstatus-self", "hblinkstatus n1 eth1"),
        ("hblinkstatus-nosuchlink", "hblinkstatus n2 eth9"),
        ("clientstatus", "clientstatus n2 ipfail"),
        ("rscstatus", "rscstatus"),
        ("rscstatus-m", "rscstatus -m"),
    ] {
        check(&lab, Node::N1, name, line);
    }
    assert_eq!(rscstatus(&lab, Node::N2), "none\n");
    // hbparameter: the value as ha.cf writes it; Heartbeat's failure for one it does not set.
    let keepalive = run(&lab, Node::N1, "cl_status", "hbparameter -p keepalive");
    assert_eq!(
        (keepalive.stdout.as_str(), keepalive.code),
        ("10ms\n", 0),
        "{keepalive:?}"
    );
    check(
        &lab,
        Node::N1,
        "hbparameter-nosuch",
        "hbparameter -p nosuch",
    );

    // hb_standby: Heartbeat's output (its path in the usage lines is the program name).
    let bogus = run(&lab, Node::N1, "hb_standby", "bogus");
    let me = tool(&lab, "hb_standby").display().to_string();
    let want = golden("hb_standby-bogus");
    let swap = |s: &str| s.replace("/usr/share/heartbeat/hb_standby", &me);
    assert_eq!(bogus.stdout, swap(&want.stdout));
    assert_eq!(bogus.stderr, swap(&want.stderr));
    assert_eq!(bogus.code, want.code);
    assert_eq!(run(&lab, Node::N1, "hb_standby", ""), golden("hb_standby"));
    let moved = wait_until(Duration::from_secs(10), || {
        lab.holds_vip(Node::N2).unwrap()
            && !lab.holds_vip(Node::N1).unwrap()
            && rscstatus(&lab, Node::N2) == "foreign\n"
    });
    assert!(
        moved,
        "hb_standby did not move the group\n{}",
        logs(&lab, 30)
    );
    check(&lab, Node::N1, "standby.rscstatus-n1", "rscstatus");
    check(&lab, Node::N2, "standby.nodestatus", "nodestatus n1");

    // hb_takeover: silent, exit 0; the group comes back.
    let t = run(&lab, Node::N1, "hb_takeover", "all");
    assert_eq!(t, golden("hb_takeover"));
    let back = wait_until(Duration::from_secs(10), || {
        lab.holds_vip(Node::N1).unwrap()
            && !lab.holds_vip(Node::N2).unwrap()
            && rscstatus(&lab, Node::N1) == "local\n"
    });
    assert!(
        back,
        "hb_takeover did not take the group\n{}",
        logs(&lab, 30)
    );
    check(&lab, Node::N2, "takeover.rscstatus-n2", "rscstatus");

    // The peer dies.
    lab.kill_hbd(Node::N2).unwrap();
    let dead = wait_until(Duration::from_secs(10), || {
        run(&lab, Node::N1, "cl_status", "nodestatus n2").stdout == "dead\n"
    });
    assert!(dead, "n2 never reported dead\n{}", logs(&lab, 30));
    for (name, line) in [
        ("dead.nodestatus", "nodestatus n2"),
        ("dead.hblinkstatus", "hblinkstatus n2 eth1"),
        ("dead.listnodes", "listnodes"),
        ("dead.clientstatus", "clientstatus n2 ipfail"),
    ] {
        check(&lab, Node::N1, name, line);
    }

    // hbd stopped on this node too.
    lab.kill_hbd(Node::N1).unwrap();
    for (name, line) in [
        ("stopped.hbstatus", "hbstatus"),
        ("stopped.nodestatus", "nodestatus n1"),
        ("stopped.rscstatus", "rscstatus"),
    ] {
        check(&lab, Node::N1, name, line);
    }
}
