//! Issue 5 against the real hbd: with `xdp on` each hbd logs the mode it attached in, `ip -d
//! link show` shows the program while hbd runs and nothing once hbd is `kill -9`ed (bpf_link);
//! the two hbd in their own namespaces do not disturb each other; with `xdp off` heartbeats flow
//! on the socket path and failover works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{net::SocketAddrV4, time::Duration};

use daemon_common::{expect_log, lock, logged, ms, spec, up_and_settled, wait_until};
use hb_tests::flood::{Flood, FloodConfig};
use hb_tests::lab::{Lab, Node, XdpSetting};
use hb_tests::require_root;

/// `ip -d link show dev ethN` in `node`'s namespace.
fn link_detail(lab: &Lab, node: Node, link: u8) -> String {
    let out = hb_tests::lab::cmd(
        "ip",
        &[
            "-n",
            &lab.netns(node),
            "-d",
            "link",
            "show",
            "dev",
            &format!("eth{link}"),
        ],
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an XDP program is attached (`xdp`/`xdpgeneric` with `prog/xdp id N`).
fn xdp_attached(detail: &str) -> bool {
    detail.contains("prog/xdp")
}

#[test]
fn xdp_on_attaches_while_running_and_nothing_stays_after_kill_9() {
    if !require_root("xdp_on_attaches_while_running_and_nothing_stays_after_kill_9") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.xdp = XdpSetting::On;
    let mut lab = up_and_settled(spec);
    for node in Node::ALL {
        for l in [1u8, 2] {
            let at = expect_log(
                &lab,
                node,
                &format!("xdp on: attached to eth{l} in "),
                0,
                Duration::from_secs(1),
            );
            let line = lab
                .log(node)
                .unwrap()
                .into_iter()
                .find(|x| x.mono_ns == at)
                .unwrap();
            println!("{node}: {}", line.message);
            assert!(
                line.message.ends_with("in native mode") || line.message.ends_with("in skb mode"),
                "{}",
                line.message
            );
            let d = link_detail(&lab, node, l);
            assert!(xdp_attached(&d), "{node} eth{l} shows no XDP program:\n{d}");
        }
    }
    // Each node's link to the other is up: two hbd on one host, each in its own namespace,
    // receive each other's heartbeats through their own XDP programs.
    assert!(!logged(&lab, Node::N1, "is dead", 0) && !logged(&lab, Node::N2, "is dead", 0));
    // hbctl status says so per link, with the program's counters for the peer.
    let out = lab.hbctl(Node::N2, &["status", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let delivery = v["delivery"]
        .as_array()
        .expect("delivery in hbctl status --json");
    assert_eq!(delivery.len(), 2, "{v}");
    for (l, d) in delivery.iter().enumerate() {
        assert_eq!(d["iface"], format!("eth{}", l + 1), "{d}");
        assert_eq!(d["path"], "xdp", "{d}");
        assert!(d["mode"] == "native" || d["mode"] == "generic", "{d}");
        assert!(d["xdp"]["delivered"].as_u64().unwrap() > 0, "{d}");
        assert_eq!(d["xdp"]["peers"][0]["peer"], "n1", "{d}");
        assert!(
            d["xdp"]["peers"][0]["heartbeats"].as_u64().unwrap() > 0,
            "{d}"
        );
    }
    let text = lab.hbctl(Node::N2, &["status"]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("eth1: XDP (native mode)") || text.contains("eth1: XDP (generic mode)"),
        "{text}"
    );

    let killed = lab.kill_hbd(Node::N1).unwrap();
    for l in [1u8, 2] {
        let d = link_detail(&lab, Node::N1, l);
        assert!(
            !xdp_attached(&d) && !d.contains("xdp"),
            "XDP still attached to n1 eth{l} after kill -9:\n{d}"
        );
        // n2's program is not disturbed by n1's going away.
        let d2 = link_detail(&lab, Node::N2, l);
        assert!(xdp_attached(&d2), "n2 eth{l} lost its XDP program:\n{d2}");
    }
    let dead = expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        killed,
        Duration::from_secs(5),
    );
    println!(
        "n1 killed, declared dead by n2 (XDP path) after {:.1} ms",
        ms(killed, dead)
    );
    assert!(
        wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N2).unwrap()),
        "n2 did not take the VIP"
    );
}

#[test]
fn xdp_off_heartbeats_flow_on_the_socket_path_and_failover_works() {
    if !require_root("xdp_off_heartbeats_flow_on_the_socket_path_and_failover_works") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.xdp = XdpSetting::Off;
    let mut lab = up_and_settled(spec);
    for node in Node::ALL {
        assert!(
            !logged(&lab, node, "attached to", 0),
            "{node} attached XDP with `xdp off`"
        );
        for l in [1u8, 2] {
            let d = link_detail(&lab, node, l);
            assert!(
                !xdp_attached(&d),
                "{node} eth{l} has XDP with `xdp off`:\n{d}"
            );
        }
    }
    // Heartbeats keep flowing: no link or node declared dead over a second.
    std::thread::sleep(Duration::from_secs(1));
    for node in Node::ALL {
        for needle in ["is dead", "eth1 dead.", "eth2 dead."] {
            assert!(
                !logged(&lab, node, needle, 0),
                "{}",
                daemon_common::logs(&lab, 20)
            );
        }
    }
    let stats = lab.hbstat(Node::N2, &["--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let received = v["peers"][0]["links"][0]["received"].as_u64().unwrap();
    println!("n2 received {received} heartbeats from n1 on the socket path");
    for d in v["delivery"].as_array().expect("delivery in hbstat --json") {
        assert_eq!(d["path"], "socket", "{d}");
        assert_eq!(d["reason"], "xdp off in ha.cf", "{d}");
    }
    assert!(received > 50, "{v}");

    let killed = lab.kill_node(Node::N1).unwrap();
    let dead = expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        killed,
        Duration::from_secs(5),
    );
    assert!(
        wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N2).unwrap()),
        "n2 did not take the VIP"
    );
    println!(
        "socket path: n1 killed, declared dead after {:.1} ms, VIP on n2 by {:.1} ms",
        ms(killed, dead),
        ms(killed, hb_tests::monotonic_ns())
    );
}

/// `delivery[].xdp` of `hbctl status --json` (`via` "hbctl") or `hbstat --json` ("hbstat") on
/// `node`, by interface name.
fn xdp_counters(lab: &Lab, node: Node, via: &str) -> Vec<(String, serde_json::Value)> {
    let out = match via {
        "hbctl" => lab.hbctl(node, &["status", "--json"]).unwrap(),
        _ => lab.hbstat(node, &["--json"]).unwrap(),
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["delivery"]
        .as_array()
        .unwrap_or_else(|| panic!("no delivery in {via} --json: {v}"))
        .iter()
        .map(|d| {
            assert_eq!(d["path"], "xdp", "{d}");
            (d["iface"].as_str().unwrap().to_owned(), d["xdp"].clone())
        })
        .collect()
}

/// Counter `name` of interface `iface` in an [`xdp_counters`] answer.
fn count(c: &[(String, serde_json::Value)], iface: &str, name: &str) -> u64 {
    let (_, x) = c
        .iter()
        .find(|(i, _)| i == iface)
        .unwrap_or_else(|| panic!("no {iface} in {c:?}"));
    x[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} for {iface}: {x}"))
}

/// Issue 20: the XDP program counts per ingress interface, and `hbctl status --json` and
/// `hbstat --json` show each link its own counters. Junk sent to n2's eth1 only is counted as
/// dropped on eth1 only; heartbeats of n1 held back on eth2 only show as sequence gaps on eth2
/// only.
#[test]
fn xdp_counters_are_per_link() {
    if !require_root("xdp_counters_are_per_link") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.xdp = XdpSetting::On;
    let lab = up_and_settled(spec);
    let before = xdp_counters(&lab, Node::N2, "hbctl");
    for l in ["eth1", "eth2"] {
        assert!(count(&before, l, "delivered") > 0, "{before:?}");
    }

    // Junk (no hb header) from the client, which sits on link 1 only, to n2's eth1 address. At
    // 500/s in one thread no queue on the way overflows: every datagram sent reaches n2's eth1.
    let flood = Flood::start(FloodConfig {
        netns: lab.client_netns(),
        targets: vec![SocketAddrV4::new(lab.node_addr(Node::N2, 1), 694)],
        rate: 500,
        len: 200,
        seed: 20,
        threads: 1,
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let sent = flood.stop().unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // n1's heartbeats on eth2 dropped at n1 (a rule at n2 would act after XDP) for 30 ms: about
    // three heartbeats at keepalive 10 ms, less than deadtime.
    let rule = ["-o", "eth2", "-p", "udp", "--dport", "694", "-j", "DROP"];
    let mut add = vec!["-I", "OUTPUT"];
    add.extend_from_slice(&rule);
    lab.iptables(Node::N1, &add).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mut del = vec!["-D", "OUTPUT"];
    del.extend_from_slice(&rule);
    lab.iptables(Node::N1, &del).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let after = xdp_counters(&lab, Node::N2, "hbctl");
    let stats = xdp_counters(&lab, Node::N2, "hbstat");
    let delta = |iface: &str, name: &str| count(&after, iface, name) - count(&before, iface, name);
    println!(
        "junk sent to n2 eth1: {} ({} errors); dropped on eth1 {}, on eth2 {}; sequence gaps on \
         eth1 {}, on eth2 {}; delivered eth1 {}, eth2 {}",
        sent.sent,
        sent.errors,
        delta("eth1", "dropped"),
        delta("eth2", "dropped"),
        delta("eth1", "sequence_gaps"),
        delta("eth2", "sequence_gaps"),
        delta("eth1", "delivered"),
        delta("eth2", "delivered"),
    );
    assert!(sent.sent > 300, "the junk sender sent only {sent:?}");
    assert_eq!(delta("eth1", "dropped"), sent.sent, "{after:?}");
    assert_eq!(delta("eth2", "dropped"), 0, "{after:?}");
    assert!(delta("eth2", "sequence_gaps") > 0, "{after:?}");
    assert_eq!(delta("eth1", "sequence_gaps"), 0, "{after:?}");
    for l in ["eth1", "eth2"] {
        assert!(delta(l, "delivered") > 0, "{after:?}");
        for name in ["passed", "ring_full", "parse_failures"] {
            assert_eq!(count(&after, l, name), 0, "{l} {name}: {after:?}");
        }
        // The link total is the sum over its peers (one here).
        let x = &after.iter().find(|(i, _)| i == l).unwrap().1;
        assert_eq!(
            x["sequence_gaps"], x["peers"][0]["sequence_gaps"],
            "{l}: {x}"
        );
        // hbstat shows the same counters (read later: never fewer).
        for name in ["dropped", "sequence_gaps"] {
            assert!(
                count(&stats, l, name) >= count(&after, l, name),
                "{stats:?}"
            );
        }
    }
    assert_eq!(count(&stats, "eth2", "dropped"), 0, "{stats:?}");
    let text = lab.hbctl(Node::N2, &["status"]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let eth2 = text
        .lines()
        .find(|l| l.trim_start().starts_with("eth2: XDP"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(eth2.contains("junk dropped 0,"), "{text}");
}
