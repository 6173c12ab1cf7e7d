//! `cargo xtask bench --only flood` (issue 17): random 200-byte datagrams (no key, no hb header)
//! to UDP 694 of both nodes from the lab's client, at rising rates, with XDP and with `xdp off`,
//! hb at keepalive 10 ms / deadtime 100 ms on one link (the link the flood arrives on). Each
//! step counts deaths, takeovers and late warnings in the nodes' logs and the rejects hbd
//! counted; the figure is the highest rate held with no false death.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddrV4, path::Path, time::Duration};

use anyhow::Result;
use hb_tests::{
    flood::{Flood, FloodConfig},
    lab::Node,
    monotonic_ns,
};
use serde::Serialize;

use super::{
    BenchOptions, Binaries,
    cluster::{Cluster, HbOpts, Kind, Timing},
    data,
    report::{header, loadavg, publish},
};
use crate::bootstrap::step;

/// One step of the flood.
#[derive(Debug, Clone, Serialize)]
struct FloodStep {
    path: String,
    target_per_s: u64,
    sent_per_s: f64,
    send_errors: u64,
    deaths: usize,
    takeovers: usize,
    late_warnings: usize,
    /// Rejects hbd counted, per node (XDP: `xdp_not_heartbeat`; socket path: all reasons).
    rejects: [u64; 2],
    load: f64,
}

#[derive(Debug, Serialize)]
struct FloodData {
    command: String,
    machine: String,
    seconds_per_step: u64,
    steps: Vec<FloodStep>,
}

/// Rejects `node`'s hbd counted (`hbstat --json`): under `reason`, or all of them.
fn rejects(c: &Cluster, node: Node, reason: Option<&str>) -> u64 {
    let Ok(out) = c.lab.hbstat(node, &["--json"]) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let map: BTreeMap<String, u64> = v["rejects"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    match reason {
        Some(r) => map.get(r).copied().unwrap_or(0),
        None => map.values().sum(),
    }
}

pub(super) fn flood(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let secs = if opts.quick { 5 } else { 15 };
    let rates: &[u64] = if opts.quick {
        &[40_000]
    } else {
        &[20_000, 40_000, 80_000, 160_000]
    };
    let timing = Timing {
        keepalive: Duration::from_millis(10),
        deadtime: Duration::from_millis(100),
    };
    let mut steps = Vec::new();
    for (label, hb) in [("XDP", HbOpts::DEFAULT), ("xdp off", HbOpts::XDP_OFF)] {
        let c = Cluster::up(Kind::Hb(hb), timing, 1, bins)?;
        c.wait_settled(Duration::from_millis(500), Duration::from_secs(20))?;
        for &rate in rates {
            step(&format!(
                "flood ({label}): {rate} junk datagrams/s for {secs} s"
            ));
            for node in Node::ALL {
                let _ = c.lab.hbstat(node, &["--reset"]);
            }
            let from = monotonic_ns();
            let targets = Node::ALL
                .iter()
                .map(|&n| SocketAddrV4::new(c.lab.node_addr(n, 1), 694))
                .collect();
            let f = Flood::start(FloodConfig {
                netns: c.lab.client_netns(),
                targets,
                rate,
                len: 200,
                seed: rate,
                threads: 2,
            })?;
            crate::interrupt::sleep(Duration::from_secs(secs))?;
            let sent = f.stop()?;
            std::thread::sleep(Duration::from_millis(300));
            let to = monotonic_ns();
            let (deaths, takeovers) = c.spurious(from, to)?;
            let mut late = 0;
            for node in Node::ALL {
                late += c
                    .lab
                    .log(node)?
                    .iter()
                    .filter(|l| l.mono_ns >= from && l.message.contains("Late"))
                    .count();
            }
            let reason = (label == "XDP").then_some(hb_daemon_reason());
            let s = FloodStep {
                path: label.to_owned(),
                target_per_s: rate,
                sent_per_s: sent.rate(),
                send_errors: sent.errors,
                deaths,
                takeovers,
                late_warnings: late,
                rejects: [rejects(&c, Node::N1, reason), rejects(&c, Node::N2, reason)],
                load: loadavg(),
            };
            step(&format!("{s:?}"));
            let failed = deaths > 0 || takeovers > 0;
            // Stop when hb failed, or when the sender could not keep up (higher targets would
            // send no more).
            let saturated = s.sent_per_s < rate as f64 * 0.9;
            steps.push(s);
            if failed || saturated {
                break;
            }
            // Let a false death (had there been one) settle before the next step.
            c.wait_settled(Duration::from_millis(300), Duration::from_secs(20))?;
        }
        c.down()?;
    }
    let mut body = header(
        opts,
        &format!(
            "hb keepalive 10 ms / deadtime 100 ms, one link (the client's LAN), random 200-byte \
             datagrams from the client's namespace to both nodes' UDP 694 ({secs} s per step, two \
             sender threads; rising rates until a false death or until the sender cannot send \
             faster)"
        ),
    );
    let _ = write!(
        body,
        "\n| path | target /s | sent /s | deaths | takeovers | late warnings | rejects counted n1 / n2 | load |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for s in &steps {
        let _ = writeln!(
            body,
            "| {} | {} | {:.0} | {} | {} | {} | {} / {} | {:.1} |",
            s.path,
            s.target_per_s,
            s.sent_per_s,
            s.deaths,
            s.takeovers,
            s.late_warnings,
            s.rejects[0],
            s.rejects[1],
            s.load
        );
    }
    for path in ["XDP", "xdp off"] {
        let held = steps
            .iter()
            .filter(|s| s.path == path && s.deaths == 0 && s.takeovers == 0)
            .map(|s| s.sent_per_s)
            .fold(0.0, f64::max);
        let _ = writeln!(
            body,
            "\n{path}: flood held with no false death up to **{held:.0} datagrams/s** (the \
             highest rate sent without a death or takeover)."
        );
    }
    let _ = writeln!(
        body,
        "\nRejects: with XDP, `xdp_not_heartbeat` (dropped in the kernel); with `xdp off`, every \
         reason (junk is `bad_magic`). The flood's path through veth and the receiving stack \
         runs on the sender's CPU time, so on a loaded machine the sender, not hbd, sets the \
         top rate."
    );
    let (command, machine) = data::provenance(opts);
    let raw = FloodData {
        command,
        machine,
        seconds_per_step: secs,
        steps,
    };
    publish(
        root,
        opts,
        "Junk flood on the heartbeat port",
        &body,
        ("flood", &raw),
    )
}

/// The reject reason hbd shows for what XDP dropped (hb_daemon::daemon::XDP_DROPPED_REASON;
/// xtask does not link hb-daemon).
fn hb_daemon_reason() -> &'static str {
    "xdp_not_heartbeat"
}
