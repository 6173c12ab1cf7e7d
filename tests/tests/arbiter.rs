//! Issue 19 against the real hbd and a real etcd (Debian's etcd-server in the lab's client
//! namespace, `arbiter_ttl 2`): a heartbeat partition with both nodes reaching etcd leaves the
//! VIP on one node at every sample; the owner cut off from etcd and its peer drops the VIP
//! within the TTL and the peer, still reaching etcd, takes it; with etcd killed no node takes
//! a group over, the owner drops it (as documented) and both daemons keep running. With three
//! nodes, the owner killed: n2 (next in `node` order) takes over, n3 does not, no two owners are
//! ever sampled (with the arbiter and, for comparison, with heartbeats only).
//! Then etcd over TLS (a test CA, client certificates required; a node with a wrong CA never
//! starts a group) and a held key deleted by hand (its holder sees it at the next renewal and
//! stops the group before taking it again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::time::Duration;

use daemon_common::{expect_log, lock, logged, logs, ms, spec, up_and_settled, wait_until};
use hb_tests::{
    lab::{
        EtcdTls, LAB_ARBITER_TTL, Lab, LabSpec, Node,
        probe::{Outcome, OwnerSampler, ProbeConfig, Prober, enter_netns},
    },
    monotonic_ns, require_root,
};

fn arbiter_spec() -> LabSpec {
    let mut s = spec();
    s.arbiter = true;
    s
}

fn settled() -> Lab {
    let lab = up_and_settled(arbiter_spec());
    expect_log(
        &lab,
        Node::N1,
        "arbiter: group 0 held here, epoch",
        0,
        Duration::from_secs(5),
    );
    lab
}

fn assert_running(lab: &mut Lab) {
    for node in Node::ALL {
        assert!(
            lab.hbd_pid(node).is_some(),
            "hbd on {node} exited\n{}",
            logs(lab, 40)
        );
    }
}

#[test]
fn heartbeat_partition_with_both_nodes_reaching_etcd_keeps_one_owner() {
    if !require_root("heartbeat_partition_with_both_nodes_reaching_etcd_keeps_one_owner") {
        return;
    }
    let _g = lock();
    let mut lab = settled();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    // Stamped before: the iptables commands take long enough on a loaded machine for n2 to
    // declare n1 dead before the last one returns.
    let cut = monotonic_ns();
    lab.partition().unwrap();
    // n2 declares n1 dead, asks etcd for the group's key and is told n1 holds it.
    expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        cut,
        Duration::from_secs(5),
    );
    expect_log(
        &lab,
        Node::N2,
        "arbiter: group 0 is held by n1",
        cut,
        Duration::from_secs(5),
    );
    // Several lease TTLs of partition.
    std::thread::sleep(LAB_ARBITER_TTL * 3);
    let healed = lab.heal().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let log = sampler.stop().unwrap();
    let dual = log.dual_owner();
    assert!(
        dual.is_empty(),
        "both nodes held the VIP in {} of {} samples, first: {}\n{}",
        dual.len(),
        log.samples.len(),
        dual[0].describe(cut),
        logs(&lab, 40)
    );
    assert!(log.samples.len() > 500, "{} samples", log.samples.len());
    // n1 kept it all along.
    let lost = log
        .samples
        .iter()
        .filter(|s| s.at_ns > cut && !s.holds(Node::N1))
        .count();
    assert_eq!(lost, 0, "n1 lost the VIP\n{}", logs(&lab, 40));
    assert!(!logged(&lab, Node::N2, "Acquiring resource group", cut));
    assert!(lab.holds_vip(Node::N1).unwrap() && !lab.holds_vip(Node::N2).unwrap());
    let _ = healed;
    // The arbiter in hbctl status (--json and text) and hbstat: n1 holds the key, n2 saw it
    // taken by n1 with the same epoch.
    let json = |node| {
        let out = lab.hbctl(node, &["status", "--json"]).unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (j1, j2) = (json(Node::N1), json(Node::N2));
    let a1 = &j1["arbiter"];
    assert_eq!(a1["reachable"], true, "{j1}");
    assert!(a1["lease"].is_string(), "{j1}");
    assert_eq!(a1["keys"][0]["state"], "held", "{j1}");
    assert_eq!(a1["keys"][0]["holder"], "n1", "{j1}");
    let epoch = a1["keys"][0]["epoch"].as_i64().expect("epoch");
    assert_eq!(j2["arbiter"]["keys"][0]["holder"], "n1", "{j2}");
    assert_eq!(
        j2["arbiter"]["keys"][0]["epoch"].as_i64(),
        Some(epoch),
        "{j2}"
    );
    let text =
        String::from_utf8_lossy(&lab.hbctl(Node::N1, &["status"]).unwrap().stdout).into_owned();
    assert!(
        text.contains(&format!("held, holder n1, epoch {epoch}")),
        "{text}"
    );
    let stat = String::from_utf8_lossy(&lab.hbstat(Node::N2, &[]).unwrap().stdout).into_owned();
    assert!(
        stat.contains("arbiter: etcd") && stat.contains("reachable"),
        "{stat}"
    );
    assert_running(&mut lab);
}

#[test]
fn owner_cut_off_from_etcd_and_peer_stops_within_the_ttl_and_the_peer_takes_over() {
    if !require_root(
        "owner_cut_off_from_etcd_and_peer_stops_within_the_ttl_and_the_peer_takes_over",
    ) {
        return;
    }
    let _g = lock();
    let mut lab = settled();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    // Stamped before the commands (see above): the real cut is a little later.
    let cut = monotonic_ns();
    lab.cut_etcd(Node::N1, true).unwrap();
    lab.partition().unwrap();
    let ok = wait_until(LAB_ARBITER_TTL * 4, || lab.holds_vip(Node::N2).unwrap());
    let log = sampler.stop().unwrap();
    assert!(ok, "n2 never took the VIP\n{}", logs(&lab, 40));
    let dual = log.dual_owner();
    assert!(
        dual.is_empty(),
        "both held the VIP: {}\n{}",
        dual[0].describe(cut),
        logs(&lab, 40)
    );
    let dropped = log
        .samples
        .iter()
        .find(|s| s.at_ns > cut && !s.holds(Node::N1))
        .map(|s| s.at_ns)
        .expect("n1 dropped the VIP");
    let taken = log
        .samples
        .iter()
        .find(|s| s.at_ns > cut && s.holds(Node::N2))
        .map(|s| s.at_ns)
        .expect("n2 took the VIP");
    let ttl_ms = LAB_ARBITER_TTL.as_secs_f64() * 1000.0;
    let lapsed = expect_log(
        &lab,
        Node::N1,
        "not renewed in time",
        cut,
        Duration::from_secs(1),
    );
    let released = expect_log(
        &lab,
        Node::N1,
        "Resource release completed",
        cut,
        Duration::from_secs(1),
    );
    eprintln!(
        "after the cut: n1's lease lapsed at {:.0} ms, its group was stopped at {:.0} ms, the \
         sampler saw the VIP leave n1 at {:.0} ms and arrive on n2 at {:.0} ms (TTL {ttl_ms} ms)",
        ms(cut, lapsed),
        ms(cut, released),
        ms(cut, dropped),
        ms(cut, taken)
    );
    // The lease lapses TTL x 3/4 after the last successful renewal request (at most the cut);
    // the group is stopped within the TTL.
    assert!(
        ms(cut, released) <= ttl_ms,
        "stopped {:.0} ms after the cut",
        ms(cut, released)
    );
    assert!(taken > dropped);
    // n1, cut off, never takes anything back.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!lab.holds_vip(Node::N1).unwrap());
    lab.heal().unwrap();
    lab.cut_etcd(Node::N1, false).unwrap();
    assert_running(&mut lab);
}

#[test]
fn etcd_killed_nobody_takes_over_the_owner_drops_the_group_and_nothing_crashes() {
    if !require_root("etcd_killed_nobody_takes_over_the_owner_drops_the_group_and_nothing_crashes")
    {
        return;
    }
    let _g = lock();
    let mut lab = settled();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let killed = lab.kill_etcd().unwrap();
    let dropped = wait_until(LAB_ARBITER_TTL * 2, || !lab.holds_vip(Node::N1).unwrap());
    assert!(dropped, "n1 kept the VIP without etcd\n{}", logs(&lab, 40));
    // n2 sees n1 die and still takes nothing over.
    let dead = monotonic_ns();
    lab.kill_hbd(Node::N1).unwrap();
    expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        dead,
        Duration::from_secs(5),
    );
    std::thread::sleep(LAB_ARBITER_TTL * 2);
    let log = sampler.stop().unwrap();
    assert!(
        !log.samples
            .iter()
            .any(|s| s.at_ns > killed && s.holds(Node::N2)),
        "n2 took the VIP without etcd\n{}",
        logs(&lab, 40)
    );
    assert!(logged(&lab, Node::N2, "arbiter: etcd unreachable", killed));
    assert!(
        lab.hbd_pid(Node::N2).is_some(),
        "hbd on n2 exited\n{}",
        logs(&lab, 40)
    );
    // etcd back: n2 takes the group once n1's lease has expired.
    let back = lab.start_etcd().unwrap();
    let ok = wait_until(LAB_ARBITER_TTL * 4, || lab.holds_vip(Node::N2).unwrap());
    assert!(
        ok,
        "n2 did not take the VIP after etcd came back\n{}",
        logs(&lab, 40)
    );
    eprintln!(
        "n2 took the VIP {:.0} ms after etcd came back",
        ms(back, monotonic_ns())
    );
}

/// The client-observed outage when n1 dies (kill -9 and cables pulled), three trials each
/// without and with the arbiter: without, n2 takes over once it declares n1 dead (deadtime
/// 50 ms); with, only once etcd expired n1's lease (TTL 2 s, renewed every 500 ms). The medians
/// are printed for BENCHMARKS.md ("Arbiter" section).
#[test]
fn owner_killed_takeover_time_with_and_without_the_arbiter() {
    if !require_root("owner_killed_takeover_time_with_and_without_the_arbiter") {
        return;
    }
    let _g = lock();
    let mut medians = Vec::new();
    for with in [false, true] {
        let mut outages = Vec::new();
        for _ in 0..3 {
            let mut s = spec();
            s.arbiter = with;
            let mut lab = if with { settled() } else { up_and_settled(s) };
            let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
            assert!(
                prober
                    .wait_served_by(Node::N1, 0, Duration::from_secs(10))
                    .is_some(),
                "n1 never answered"
            );
            let killed = lab.kill_node(Node::N1).unwrap();
            let served = prober.wait_served_by(Node::N2, killed, Duration::from_secs(10));
            let log = prober.stop().unwrap();
            assert!(served.is_some(), "n2 never answered\n{}", logs(&lab, 40));
            let outage = log
                .outage(Node::N1, Node::N2, killed)
                .expect("an outage")
                .duration()
                .as_secs_f64()
                * 1000.0;
            outages.push(outage);
        }
        outages.sort_by(f64::total_cmp);
        let label = if with { "with the arbiter" } else { "without" };
        eprintln!(
            "outage {label}: {outages:.0?} ms, median {:.0} ms",
            outages[1]
        );
        medians.push(outages[1]);
    }
    let ttl_ms = LAB_ARBITER_TTL.as_secs_f64() * 1000.0;
    assert!(
        medians[0] < 1000.0,
        "without the arbiter: {:.0} ms",
        medians[0]
    );
    // n1's last renewal was at most TTL/4 before its death: etcd keeps its key TTL x 3/4 at
    // least, and the takeover follows the expiry within a retry (TTL/10) and a start.
    assert!(
        medians[1] >= ttl_ms * 0.75 - 100.0,
        "with the arbiter: {:.0} ms",
        medians[1]
    );
    assert!(
        medians[1] <= ttl_ms + 1500.0,
        "with the arbiter: {:.0} ms",
        medians[1]
    );
}

/// The epoch in `node`'s first `arbiter: group 0 held here, epoch E` line at or after
/// `after_ns`, waiting up to `timeout` for it.
fn held_here_epoch(lab: &Lab, node: Node, after_ns: u64, timeout: Duration) -> (u64, i64) {
    let line = lab
        .wait_log(node, "arbiter: group 0 held here, epoch", after_ns, timeout)
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "{node} did not log that it holds group 0's key\n{}",
                logs(lab, 40)
            )
        });
    let epoch = line
        .message
        .rsplit_once("epoch ")
        .and_then(|(_, e)| e.trim().parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {:?}", line.message));
    (line.mono_ns, epoch)
}

/// What [`three_nodes_owner_killed`] measured, ms after the kill.
#[derive(Debug)]
struct ThreeNodeKill {
    /// The VIP first seen on n2 by the owner sampler.
    vip_on_n2_ms: f64,
    /// n2's first answer to the client's prober.
    served_by_n2_ms: f64,
}

/// Three nodes (`node n1`, `node n2`, `node n3`), n1 the owner; n1 dies (cables pulled at
/// once, hbd SIGKILLed, its VIP gone: [`Lab::kill_node`]). n2, the first node in `node` order
/// still alive, takes the group over, n3 does not, and no two nodes hold the VIP at any sampled
/// moment; both survivors keep running. With the arbiter, n2 starts the group only once etcd
/// expired n1's lease, under a new epoch.
fn three_nodes_owner_killed(arbiter: bool) -> ThreeNodeKill {
    let mut s = spec();
    s.nodes = 3;
    s.arbiter = arbiter;
    let mut lab = up_and_settled(s);
    let ttl_ms = LAB_ARBITER_TTL.as_secs_f64() * 1000.0;
    let n1_epoch = arbiter.then(|| held_here_epoch(&lab, Node::N1, 0, Duration::from_secs(5)).1);
    // Every node's ha.cf lists the three nodes in order.
    for &node in lab.nodes() {
        let ha_cf = std::fs::read_to_string(lab.config_dir(node).join("ha.cf")).unwrap();
        assert!(
            ha_cf.contains("node n1\nnode n2\nnode n3\n"),
            "{node}: {ha_cf}"
        );
    }
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    assert!(
        prober
            .wait_served_by(Node::N1, 0, Duration::from_secs(10))
            .is_some(),
        "n1 never answered\n{}",
        logs(&lab, 40)
    );
    let killed = lab.kill_node(Node::N1).unwrap();
    let timeout = if arbiter {
        LAB_ARBITER_TTL * 4
    } else {
        Duration::from_secs(5)
    };
    let served = prober.wait_served_by(Node::N2, killed, timeout);
    // A lease TTL more: n3 must still not take the group, nor n2 lose it.
    std::thread::sleep(LAB_ARBITER_TTL);
    let probes = prober.stop().unwrap();
    let owners = sampler.stop().unwrap();
    let served = served.unwrap_or_else(|| panic!("n2 never answered\n{}", logs(&lab, 40)));
    let dual = owners.dual_owner();
    assert!(
        dual.is_empty(),
        "two nodes held the VIP in {} of {} samples, first: {} ({:?})\n{}",
        dual.len(),
        owners.samples.len(),
        dual[0].describe(killed),
        dual[0].dual(),
        logs(&lab, 40)
    );
    assert!(
        owners.samples.len() > 500,
        "{} samples",
        owners.samples.len()
    );
    let on_n2 = owners
        .samples
        .iter()
        .find(|s| s.at_ns > killed && s.holds(Node::N2))
        .map(|s| s.at_ns)
        .expect("the sampler saw the VIP on n2");
    assert!(
        !owners.samples.iter().any(|s| s.holds(Node::N3)),
        "n3 held the VIP\n{}",
        logs(&lab, 40)
    );
    let last = owners.samples.last().unwrap();
    assert_eq!(last.holders(), vec![Node::N2], "{}", last.describe(killed));
    assert!(
        probes
            .samples
            .iter()
            .all(|p| p.outcome != Outcome::Served(Node::N3)),
        "n3 answered for the VIP"
    );
    // The order by the logs: both survivors declare n1 dead; n2 (next in `node` order) takes
    // the group over, n3 never tries.
    let n2_dead = expect_log(
        &lab,
        Node::N2,
        "node n1: is dead",
        killed,
        Duration::from_secs(1),
    );
    expect_log(
        &lab,
        Node::N3,
        "node n1: is dead",
        killed,
        Duration::from_secs(1),
    );
    let acquiring = expect_log(
        &lab,
        Node::N2,
        "Acquiring resource group",
        killed,
        Duration::from_secs(1),
    );
    assert!(acquiring > n2_dead);
    for line in ["Taking over resource group", "Acquiring resource group"] {
        assert!(
            !logged(&lab, Node::N3, line, 0),
            "n3 logged {line:?}\n{}",
            logs(&lab, 40)
        );
    }
    if let Some(n1_epoch) = n1_epoch {
        // n2 asked at once and was told n1 still held the key; it got the key under a new
        // epoch once n1's lease expired, and started the group only then. n3 never asked.
        let refused = expect_log(
            &lab,
            Node::N2,
            &format!("arbiter: group 0 is held by n1 (epoch {n1_epoch})"),
            killed,
            Duration::from_secs(1),
        );
        let (held_at, n2_epoch) = held_here_epoch(&lab, Node::N2, killed, Duration::from_secs(1));
        assert!(n2_dead <= refused && refused < held_at);
        assert!(n2_epoch > n1_epoch, "epoch {n1_epoch} then {n2_epoch}");
        assert!(
            held_at <= acquiring,
            "n2 started the group before holding the key"
        );
        for line in ["arbiter: group 0 held here", "arbiter: group 0 is held by"] {
            assert!(
                !logged(&lab, Node::N3, line, 0),
                "n3 logged {line:?}\n{}",
                logs(&lab, 40)
            );
        }
        // etcd keeps n1's key at least TTL x 3/4 after its last renewal (at most TTL/4 before
        // the kill), then n2's retry (TTL/10) and the start follow.
        assert!(
            ms(killed, on_n2) >= ttl_ms * 0.75 - 100.0,
            "n2 took the VIP {:.0} ms after the kill, before n1's lease could expire",
            ms(killed, on_n2)
        );
        assert!(
            ms(killed, on_n2) <= ttl_ms + 1500.0,
            "n2 took the VIP {:.0} ms after the kill",
            ms(killed, on_n2)
        );
    } else {
        assert!(
            ms(killed, on_n2) < 1000.0,
            "n2 took the VIP {:.0} ms after the kill",
            ms(killed, on_n2)
        );
    }
    for node in [Node::N2, Node::N3] {
        assert!(
            lab.hbd_pid(node).is_some(),
            "hbd on {node} exited\n{}",
            logs(&lab, 40)
        );
    }
    ThreeNodeKill {
        vip_on_n2_ms: ms(killed, on_n2),
        served_by_n2_ms: ms(killed, served),
    }
}

#[test]
fn three_nodes_owner_killed_next_in_order_takes_over() {
    if !require_root("three_nodes_owner_killed_next_in_order_takes_over") {
        return;
    }
    let _g = lock();
    let m = three_nodes_owner_killed(true);
    eprintln!(
        "three nodes, arbiter (TTL {} s), n1 killed: VIP on n2 after {:.0} ms, n2 answered the \
         client after {:.0} ms",
        LAB_ARBITER_TTL.as_secs(),
        m.vip_on_n2_ms,
        m.served_by_n2_ms
    );
}

#[test]
fn three_nodes_without_the_arbiter_owner_killed_next_in_order_takes_over() {
    if !require_root("three_nodes_without_the_arbiter_owner_killed_next_in_order_takes_over") {
        return;
    }
    let _g = lock();
    let m = three_nodes_owner_killed(false);
    eprintln!(
        "three nodes, heartbeats only, n1 killed: VIP on n2 after {:.0} ms, n2 answered the \
         client after {:.0} ms",
        m.vip_on_n2_ms, m.served_by_n2_ms
    );
}

/// Group 0's key with the lab's default `arbiter_prefix`.
const KEY0: &str = "/hb/group/0";

/// Reads `key` on the lab's etcd (over https with `tls`'s CA and client certificate) from a
/// client in the lab's client namespace, as `etcdctl get` would: (value, create_revision,
/// lease). With `delete`, deletes it afterwards, as `etcdctl del` would.
fn etcd_kv(
    lab: &Lab,
    tls: Option<&EtcdTls>,
    key: &str,
    delete: bool,
) -> Option<(String, i64, i64)> {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
    let ns = lab.client_netns();
    let url = if tls.is_some() {
        lab.etcd_https_url()
    } else {
        lab.etcd_url()
    };
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = tls.map(|t| {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&t.ca)))
            .identity(Identity::from_pem(
                read(&t.client_cert),
                read(&t.client_key),
            ))
    });
    let key = key.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut o = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(5));
            if let Some(t) = tls {
                o = o.with_tls(t);
            }
            let mut c = Client::connect([url], Some(o)).await.unwrap();
            let r = c.get(key.as_str(), None).await.unwrap();
            let kv = r.kvs().first().map(|kv| {
                (
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.create_revision(),
                    kv.lease(),
                )
            });
            if delete {
                c.delete(key.as_str(), None).await.unwrap();
            }
            kv
        })
    })
    .join()
    .unwrap()
}

fn status_json(lab: &Lab, node: Node) -> serde_json::Value {
    let out = lab.hbctl(node, &["status", "--json"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// etcd over https with a test CA and client certificates required: n1, given the right CA,
/// holds group 0 under an epoch and the VIP; n2, given a CA that did not sign etcd's
/// certificate, reports the arbiter unreachable and never starts the group, not even once n1
/// stopped cleanly and gave the key back.
#[test]
fn over_tls_n1_holds_the_group_and_a_node_with_a_wrong_ca_never_starts_it() {
    if !require_root("over_tls_n1_holds_the_group_and_a_node_with_a_wrong_ca_never_starts_it") {
        return;
    }
    let _g = lock();
    let mut lab = Lab::up(arbiter_spec()).unwrap();
    // The lab starts etcd over http and both daemons against it: stop them, restart etcd over
    // https, point n1 at it with the right CA and n2 with a wrong one, start them again.
    for node in Node::ALL {
        lab.stop_hbd(node, Duration::from_secs(5)).unwrap();
    }
    let tls = lab.make_etcd_tls().unwrap();
    lab.start_etcd_tls(&tls).unwrap();
    lab.use_arbiter_tls(Node::N1, &tls, &tls.ca).unwrap();
    lab.use_arbiter_tls(Node::N2, &tls, &tls.wrong_ca).unwrap();
    let t0 = monotonic_ns();
    for node in Node::ALL {
        lab.start_hbd(node).unwrap();
    }
    assert_running(&mut lab);
    expect_log(
        &lab,
        Node::N1,
        "arbiter: group 0 held here, epoch",
        t0,
        Duration::from_secs(10),
    );
    let ok = wait_until(Duration::from_secs(10), || lab.holds_vip(Node::N1).unwrap());
    assert!(ok, "n1 never took the VIP\n{}", logs(&lab, 40));
    expect_log(
        &lab,
        Node::N2,
        "arbiter: etcd unreachable",
        t0,
        Duration::from_secs(10),
    );
    let line = lab
        .log(Node::N2)
        .unwrap()
        .into_iter()
        .find(|l| l.mono_ns >= t0 && l.message.contains("arbiter: etcd unreachable"))
        .unwrap();
    eprintln!("n2 (wrong CA): {}", line.message);
    // n1's status and etcd agree on the holder and the epoch.
    let j1 = status_json(&lab, Node::N1);
    let a1 = &j1["arbiter"];
    assert_eq!(a1["reachable"], true, "{j1}");
    assert!(
        a1["endpoints"][0].as_str().unwrap().starts_with("https://"),
        "{j1}"
    );
    assert_eq!(a1["keys"][0]["state"], "held", "{j1}");
    let epoch = a1["keys"][0]["epoch"].as_i64().expect("epoch");
    let (value, rev, _) = etcd_kv(&lab, Some(&tls), KEY0, false).expect("the key on etcd");
    assert_eq!((value.as_str(), rev), ("n1", epoch));
    // n2: unreachable, in --json and in the text.
    let j2 = status_json(&lab, Node::N2);
    assert_eq!(j2["arbiter"]["reachable"], false, "{j2}");
    let text =
        String::from_utf8_lossy(&lab.hbctl(Node::N2, &["status"]).unwrap().stdout).into_owned();
    assert!(text.contains("UNREACHABLE"), "{text}");
    // n1 stops cleanly (its lease revoked, the key gone): heartbeats give n2 the group, the
    // arbiter does not.
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let stopped = lab.stop_hbd(Node::N1, Duration::from_secs(10)).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || etcd_kv(
            &lab,
            Some(&tls),
            KEY0,
            false
        )
        .is_none()),
        "n1's clean stop left its key"
    );
    std::thread::sleep(LAB_ARBITER_TTL * 2);
    let log = sampler.stop().unwrap();
    assert!(
        !log.samples.iter().any(|s| s.holds(Node::N2)),
        "n2 took the VIP without reaching etcd\n{}",
        logs(&lab, 40)
    );
    assert!(!logged(&lab, Node::N2, "Acquiring resource group", t0));
    assert!(logged(&lab, Node::N2, "arbiter: etcd unreachable", t0));
    assert!(!logged(&lab, Node::N2, "arbiter: etcd reachable again", t0));
    assert!(etcd_kv(&lab, Some(&tls), KEY0, false).is_none());
    assert!(
        lab.hbd_pid(Node::N2).is_some(),
        "hbd on n2 exited\n{}",
        logs(&lab, 40)
    );
    let _ = stopped;
}

/// A key deleted by hand (`etcdctl del`) while n1 holds it: n1 sees it at its next renewal's
/// check (within TTL/4), logs it, stops the group, then asks for the key again and starts the
/// group under a new epoch; the VIP is never on both nodes and n2 never starts the group.
#[test]
fn a_key_deleted_by_hand_is_seen_by_its_holder_which_stops_the_group_before_taking_it_again() {
    if !require_root(
        "a_key_deleted_by_hand_is_seen_by_its_holder_which_stops_the_group_before_taking_it_again",
    ) {
        return;
    }
    let _g = lock();
    let mut lab = settled();
    let (value, epoch0, lease) = etcd_kv(&lab, None, KEY0, false).expect("n1's key");
    assert_eq!(value, "n1");
    assert_ne!(lease, 0);
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let deleted = monotonic_ns();
    etcd_kv(&lab, None, KEY0, true).expect("deleted n1's key");
    let lost = expect_log(
        &lab,
        Node::N1,
        "arbiter: group 0 key /hb/group/0 lost (deleted or replaced); stopping it",
        deleted,
        LAB_ARBITER_TTL,
    );
    let released = expect_log(
        &lab,
        Node::N1,
        "Resource release completed",
        deleted,
        Duration::from_secs(5),
    );
    let held = expect_log(
        &lab,
        Node::N1,
        "arbiter: group 0 held here, epoch",
        released,
        Duration::from_secs(5),
    );
    let ok = wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N1).unwrap());
    assert!(ok, "n1 did not take the VIP back\n{}", logs(&lab, 40));
    std::thread::sleep(Duration::from_secs(1));
    let log = sampler.stop().unwrap();
    let ttl_ms = LAB_ARBITER_TTL.as_secs_f64() * 1000.0;
    eprintln!(
        "after the deletion: n1 saw the key lost at {:.0} ms, stopped the group at {:.0} ms, \
         held the key again at {:.0} ms (renewal interval {:.0} ms)",
        ms(deleted, lost),
        ms(deleted, released),
        ms(deleted, held),
        ttl_ms / 4.0
    );
    // The check runs with every renewal (TTL/4); its answer, the log line and the deletion's
    // own round trip add a few tens of ms, more on a loaded machine.
    assert!(
        ms(deleted, lost) <= ttl_ms / 4.0 + 250.0,
        "seen {:.0} ms after the deletion",
        ms(deleted, lost)
    );
    let dual = log.dual_owner();
    assert!(
        dual.is_empty(),
        "both held the VIP: {}\n{}",
        dual[0].describe(deleted),
        logs(&lab, 40)
    );
    // The VIP left n1 (the group was really stopped) and came back.
    assert!(
        log.samples
            .iter()
            .any(|s| s.at_ns > deleted && !s.holds(Node::N1)),
        "the sampler never saw the VIP leave n1"
    );
    assert!(!logged(&lab, Node::N2, "Acquiring resource group", deleted));
    let (value, epoch, _) = etcd_kv(&lab, None, KEY0, false).expect("n1's new key");
    assert_eq!(value, "n1");
    assert!(epoch > epoch0, "epoch {epoch} after {epoch0}");
    let j1 = status_json(&lab, Node::N1);
    assert_eq!(j1["arbiter"]["keys_lost"], 1, "{j1}");
    assert_eq!(
        j1["arbiter"]["keys"][0]["epoch"].as_i64(),
        Some(epoch),
        "{j1}"
    );
    assert_eq!(j1["arbiter"]["lapses"], 0, "{j1}");
    assert_running(&mut lab);
}
