//! Issue 6 against the real hbd: when n1 dies (hbd killed, links down) the VIP moves to n2,
//! the client receives n2's gratuitous ARP and its neighbour entry for the VIP changes to n2's
//! MAC; with `auto_failback on` the VIP returns to n1 when it comes back, with `auto_failback
//! off` it stays on n2; `hbctl status --json` shows the owner throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::time::Duration;

use daemon_common::{expect_log, lock, logs, ms, spec, up_and_settled, wait_until};
use hb_tests::{
    lab::{
        Lab, Node,
        probe::{ArpWatch, OwnerSampler, ProbeConfig, Prober},
    },
    monotonic_ns, require_root,
};

/// The owner of the (only) resource group as `hbctl status --json` on `node` reports it.
fn owner_seen_by(lab: &Lab, node: Node) -> Option<String> {
    let out = lab.hbctl(node, &["status", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "hbctl status --json on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups = v["groups"].as_array().expect("groups array");
    assert_eq!(groups.len(), 1, "{v}");
    groups[0]["owner"].as_str().map(str::to_owned)
}

/// The client's complete neighbour entry for the VIP (its namespace's `/proc/net/arp`).
fn client_neighbour(lab: &Lab) -> Option<[u8; 6]> {
    let ns = lab.client_netns();
    let out = hb_tests::lab::cmd("ip", &["netns", "exec", &ns, "cat", "/proc/net/arp"]).unwrap();
    hb_tests::lab::probe::arp_entry(&String::from_utf8_lossy(&out.stdout), lab.vip())
}

/// Waits until `hbctl status --json` on `node` names `owner`.
fn wait_owner(lab: &Lab, node: Node, owner: Node) {
    let ok = wait_until(Duration::from_secs(5), || {
        owner_seen_by(lab, node).as_deref() == Some(owner.name())
    });
    assert!(
        ok,
        "hbctl on {node} does not name {owner} as owner (says {:?})",
        owner_seen_by(lab, node)
    );
}

/// Kills n1 and checks the VIP, GARP and client's ARP entry move to n2. Returns the kill time.
fn fail_over(lab: &mut Lab, prober: &Prober, owners: &OwnerSampler, arp: &ArpWatch) -> u64 {
    // The client has an ARP entry for the VIP pointing to n1 (made by the probes).
    let n1_mac = lab.node_mac(Node::N1, 1).unwrap();
    let n2_mac = lab.node_mac(Node::N2, 1).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || owners
            .snapshot()
            .samples
            .last()
            .is_some_and(|s| s.client_arp == Some(n1_mac))),
        "client's ARP entry for the VIP never pointed to n1"
    );
    let killed = lab.kill_node(Node::N1).unwrap();
    let served = prober.wait_served_by(Node::N2, killed, Duration::from_secs(10));
    assert!(
        served.is_some(),
        "n2 never answered on the VIP\n{}",
        logs(lab, 30)
    );
    // (The lab removed the dead n1's address after pulling its cables, as a power loss would.)
    assert!(lab.holds_vip(Node::N2).unwrap());
    let garp = expect_log(
        lab,
        Node::N2,
        "hb: gratuitous ARP sent for",
        killed,
        Duration::ZERO,
    );
    // The client saw n2 claim the VIP, and its neighbour entry moved to n2's MAC.
    assert!(
        wait_until(Duration::from_secs(2), || arp
            .snapshot()
            .claimants(killed, monotonic_ns())
            .contains(&Node::N2)),
        "client saw no ARP from n2 claiming the VIP"
    );
    let arp_moved = owners.snapshot().first_arp_to(Node::N2, killed);
    let arp_moved = arp_moved.expect("client's ARP entry for the VIP never moved to n2");
    let entry = client_neighbour(lab);
    assert_eq!(entry, Some(n2_mac), "client's neighbour entry");
    let log = prober.snapshot();
    let outage = log.outage(Node::N1, Node::N2, killed);
    println!(
        "failover: n2's GARP sent {:.1} ms after the kill, client's ARP entry -> n2 at {:.1} ms, \
         client-observed outage {:?}",
        ms(killed, garp),
        ms(killed, arp_moved),
        outage.map(|o| o.duration())
    );
    wait_owner(lab, Node::N2, Node::N2);
    killed
}

#[test]
fn vip_moves_to_n2_with_garp_and_fails_back_to_n1() {
    if !require_root("vip_moves_to_n2_with_garp_and_fails_back_to_n1") {
        return;
    }
    let _g = lock();
    let mut lab = up_and_settled(spec());
    for node in Node::ALL {
        wait_owner(&lab, node, Node::N1);
    }
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    let owners = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let arp = ArpWatch::start(&lab).unwrap();
    assert!(
        prober
            .wait_served_by(Node::N1, 0, Duration::from_secs(10))
            .is_some(),
        "n1 never answered on the VIP"
    );
    fail_over(&mut lab, &prober, &owners, &arp);

    // auto_failback on: n1 takes the VIP back once it returns.
    let back = lab.restart_node(Node::N1).unwrap();
    let served = prober.wait_served_by(Node::N1, back, Duration::from_secs(15));
    assert!(
        served.is_some(),
        "VIP did not return to n1\n{}",
        logs(&lab, 30)
    );
    assert!(
        wait_until(Duration::from_secs(5), || lab.holds_vip(Node::N1).unwrap()
            && !lab.holds_vip(Node::N2).unwrap()),
        "VIP not on n1 alone after failback"
    );
    let n1_mac = lab.node_mac(Node::N1, 1).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || client_neighbour(&lab)
            == Some(n1_mac)),
        "client's neighbour entry did not return to n1"
    );
    for node in Node::ALL {
        wait_owner(&lab, node, Node::N1);
    }
    let probes = prober.stop().unwrap();
    let owners = owners.stop().unwrap();
    arp.stop().unwrap();
    println!(
        "failback: first answer from n1 {:.1} ms after its restart; outage {:?}",
        ms(back, served.unwrap()),
        probes
            .outage(Node::N2, Node::N1, back)
            .map(|o| o.duration())
    );
    let dual = owners.dual_owner();
    println!(
        "{} owner samples, {} with both nodes holding the VIP",
        owners.samples.len(),
        dual.len()
    );
    assert!(dual.is_empty(), "both nodes held the VIP: {dual:?}");
}

#[test]
fn auto_failback_off_leaves_the_vip_on_n2() {
    if !require_root("auto_failback_off_leaves_the_vip_on_n2") {
        return;
    }
    let _g = lock();
    let mut spec = spec();
    spec.auto_failback = false;
    let mut lab = up_and_settled(spec);
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    let owners = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let arp = ArpWatch::start(&lab).unwrap();
    assert!(
        prober
            .wait_served_by(Node::N1, 0, Duration::from_secs(10))
            .is_some(),
        "n1 never answered on the VIP"
    );
    fail_over(&mut lab, &prober, &owners, &arp);

    let back = lab.restart_node(Node::N1).unwrap();
    // n1 is back and sees n2 ...
    expect_log(
        &lab,
        Node::N1,
        "Link n2:eth1 up.",
        back,
        Duration::from_secs(10),
    );
    // ... and well past initdead and deadtime the VIP is still n2's alone.
    std::thread::sleep(lab.spec().initdead + Duration::from_secs(1));
    assert!(
        lab.holds_vip(Node::N2).unwrap() && !lab.holds_vip(Node::N1).unwrap(),
        "VIP moved with auto_failback off\n{}",
        logs(&lab, 30)
    );
    for node in Node::ALL {
        wait_owner(&lab, node, Node::N2);
    }
    let probes = prober.stop().unwrap();
    assert!(
        probes.first_served_by(Node::N1, back).is_none(),
        "n1 answered on the VIP after its return"
    );
    println!("auto_failback off: VIP stayed on n2 after n1 returned");
    owners.stop().unwrap();
    arp.stop().unwrap();
}
