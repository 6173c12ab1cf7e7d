//! The failover lab itself, without hbd: it comes up and goes away completely, Apache answers
//! on the VIP of the node holding it, a move of the VIP by hand is seen by the client prober
//! (with its outage), the dual-owner sampler flags both nodes holding the VIP, and a three-node
//! lab comes up with every node reached, sampled and partitioned.

use std::{path::Path, time::Duration};

use hb_tests::{
    lab::{
        Lab, LabSpec, Node, ResourceBehaviour,
        probe::{ArpWatch, OwnerSampler, ProbeConfig, Prober},
    },
    monotonic_ns, require_root,
};

#[allow(clippy::unwrap_used)] // test helper
fn nothing_left(prefix: &str, dir: &Path) {
    let netns = hb_tests::run("ip", &["netns", "list"]).unwrap();
    let list = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !list.lines().any(|l| l.starts_with(prefix)),
        "namespaces left: {list}"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    assert!(
        !Path::new(&format!("/run/hb-lab/{prefix}.json")).exists(),
        "state file left"
    );
}

#[test]
fn lab_up_then_down_leaves_nothing_behind() {
    if !require_root("lab_up_then_down_leaves_nothing_behind") {
        return;
    }
    let mut lab = Lab::up(LabSpec::unique()).unwrap();
    let prefix = lab.spec().prefix.clone();
    let dir = lab.record().dir.clone();
    let status = lab.status();
    assert_eq!(status.namespaces_present.len(), 4, "{status}");
    assert!(status.vip_holders().is_empty(), "{status}");
    for n in &status.nodes {
        assert!(n.namespace && !n.httpd_running, "{status}");
        assert_eq!(n.links_up, vec![(1, true), (2, true)], "{status}");
    }
    // Files each node needs, authkeys private.
    for node in Node::ALL {
        let conf = lab.config_dir(node);
        let ha_cf = std::fs::read_to_string(conf.join("ha.cf")).unwrap();
        assert!(ha_cf.contains("keepalive 10ms\ndeadtime 50ms\n"), "{ha_cf}");
        assert!(ha_cf.contains("bcast eth1\nbcast eth2\n"), "{ha_cf}");
        let hr = std::fs::read_to_string(conf.join("haresources")).unwrap();
        assert_eq!(hr, format!("n1 IPaddr::{}/24/eth1 httpd\n", lab.vip()));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(conf.join("authkeys"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Each node's processes see their own hostname.
        let out = lab.exec(node, "hostname", &[]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node.name());
    }
    // Something running inside a node (Apache) is killed by down.
    lab.add_vip(Node::N1).unwrap();
    assert!(lab.httpd(Node::N1, "start").unwrap().status.success());
    assert!(lab.status().nodes[0].httpd_running);
    let removed = lab.down().unwrap();
    assert!(
        removed.iter().any(|r| r.contains("killed pid")),
        "{removed:?}"
    );
    nothing_left(&prefix, &dir);
    drop(lab);

    // A crashed run leaves things behind; up cleans them first.
    let mut spec = LabSpec::unique();
    spec.prefix = prefix.clone();
    let lab = Lab::up(spec.clone()).unwrap();
    let rec = lab.detach().unwrap();
    assert!(Path::new(&format!("/run/netns/{prefix}n1")).exists());
    // `cargo xtask lab status` reads the state file the detached lab left.
    let recorded = hb_tests::lab::recorded_status(&prefix).unwrap().unwrap();
    assert_eq!(recorded.namespaces_present.len(), 4, "{recorded}");
    let mut lab = Lab::up(spec).unwrap();
    assert_eq!(lab.status().namespaces_present.len(), 4);
    lab.down().unwrap();
    nothing_left(&prefix, &rec.dir);
}

#[test]
fn apache_answers_on_the_vip_of_the_node_holding_it() {
    if !require_root("apache_answers_on_the_vip_of_the_node_holding_it") {
        return;
    }
    let lab = Lab::up(LabSpec::unique()).unwrap();
    let cfg = ProbeConfig::new(lab.vip());
    lab.add_vip(Node::N1).unwrap();
    let out = lab.httpd(Node::N1, "start").unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = lab.httpd(Node::N1, "status").unwrap();
    assert!(status.status.success());
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "running");
    // Apache takes ~100 ms to answer after start.
    let prober = Prober::start(&lab, cfg).unwrap();
    let t = prober.wait_served_by(Node::N1, 0, Duration::from_secs(5));
    let log = prober.stop().unwrap();
    assert!(t.is_some(), "n1 never answered: {:?}", log.last());
    // n2 has no VIP and no Apache: only n1 ever answered.
    assert!(
        !log.samples
            .iter()
            .any(|s| s.outcome == hb_tests::lab::probe::Outcome::Served(Node::N2))
    );
    let out = lab.httpd(Node::N1, "stop").unwrap();
    assert!(out.status.success());
    let status = lab.httpd(Node::N1, "status").unwrap();
    assert_eq!(status.status.code(), Some(3));
    // Stopped: the client is refused (the VIP is still there, nothing listens).
    let after = hb_tests::lab::probe::Prober::start(&lab, cfg).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let log = after.stop().unwrap();
    assert!(!log.samples.is_empty());
    assert!(
        log.samples
            .iter()
            .all(|s| matches!(s.outcome, hb_tests::lab::probe::Outcome::Failed(_))),
        "{:?}",
        log.samples
    );
}

#[test]
fn failing_resource_script_does_not_start_apache() {
    if !require_root("failing_resource_script_does_not_start_apache") {
        return;
    }
    let mut spec = LabSpec::unique();
    spec.resource = ResourceBehaviour::FailStartOnN2;
    let lab = Lab::up(spec).unwrap();
    let out = lab.httpd(Node::N2, "start").unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lab.httpd(Node::N2, "status").unwrap().status.code(),
        Some(3)
    );
    assert!(lab.httpd(Node::N1, "start").unwrap().status.success());
    assert!(lab.httpd(Node::N1, "status").unwrap().status.success());
}

#[test]
fn vip_moved_by_hand_is_seen_by_the_client_with_its_outage() {
    if !require_root("vip_moved_by_hand_is_seen_by_the_client_with_its_outage") {
        return;
    }
    let lab = Lab::up(LabSpec::unique()).unwrap();
    lab.move_by_hand(None, Node::N1).unwrap();
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    let arp = ArpWatch::start(&lab).unwrap();
    assert!(
        prober
            .wait_served_by(Node::N1, 0, Duration::from_secs(5))
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(100));

    let t0 = monotonic_ns();
    let m = lab.move_by_hand(Some(Node::N1), Node::N2).unwrap();
    assert!(m.httpd_ok);
    let first_n2 = prober.wait_served_by(Node::N2, t0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let probes = prober.stop().unwrap();
    let owners = sampler.stop().unwrap();
    let arps = arp.stop().unwrap();
    assert!(first_n2.is_some(), "n2 never answered: {:?}", probes.last());
    // The client saw n2's gratuitous ARP, and no ARP from n1 claimed the VIP after the move.
    assert_eq!(arps.claimants(m.garp, u64::MAX), vec![Node::N2], "{arps:?}");
    assert!(
        arps.seen
            .iter()
            .any(|a| a.oper == 1 && arps.sender(a) == Some(Node::N2))
    );

    let outage = probes.outage(Node::N1, Node::N2, t0).unwrap();
    let ms = |t: u64| (t as f64 - t0 as f64) / 1e6;
    println!(
        "by hand: released {:?} ms, VIP added {:.3} ms, GARP {:.3} ms, httpd started {:.3} ms",
        m.released.map(ms),
        ms(m.vip_added),
        ms(m.garp),
        ms(m.httpd_started)
    );
    println!(
        "VIP moved by hand n1 -> n2 (Apache stop, addr del, addr add, GARP, Apache start): \
         client-observed outage {:.3} ms",
        outage.duration().as_secs_f64() * 1e3
    );
    // n1 answered last before its address went (a probe started before the removal), n2 after.
    // (Not a bound from t0: stopping Apache on n1 comes first and takes as long as spawning
    // `apache2 -k stop` does, tens of ms on a loaded machine.)
    let released = m.released.expect("n1 was alive, so its VIP was released");
    assert!(
        outage.last_old_ns < released && outage.first_new_ns > outage.last_old_ns,
        "last n1 answer {:.1} ms, n1's VIP removed {:.1} ms, first n2 answer {:.1} ms",
        ms(outage.last_old_ns),
        ms(released),
        ms(outage.first_new_ns)
    );
    // Once n2 answered, n1 never answered again (the move is done). Probes that time out right
    // after n2's first answer are not about the move: Apache on n2 was just started (by hand,
    // `apache2 -k start`) and on a loaded machine its first workers may miss the probe's 20 ms
    // (seen here at load average 20: four probes failing with EAGAIN after n2's first answer).
    let disturbed = probes.disturbed_after(Node::N2, outage.first_new_ns);
    assert!(
        disturbed
            .iter()
            .all(|s| !matches!(s.outcome, hb_tests::lab::probe::Outcome::Served(_))),
        "answers from another node after n2's first: {disturbed:?}"
    );
    if !disturbed.is_empty() {
        println!(
            "{} probes unanswered after n2's first answer (n2's fresh Apache)",
            disturbed.len()
        );
    }
    // The client's ARP entry moved to n2's MAC with the GARP, and never both held the VIP.
    assert!(owners.first_arp_to(Node::N2, t0).is_some());
    assert!(owners.dual_owner().is_empty(), "{:?}", owners.dual_owner());
    let last = owners.samples.last().unwrap();
    assert!(!last.holds(Node::N1) && last.holds(Node::N2));
    assert_eq!(owners.arp_owner(last), Some(Node::N2));
    assert!(!lab.holds_vip(Node::N1).unwrap() && lab.holds_vip(Node::N2).unwrap());
}

#[test]
fn dual_owner_sampler_flags_both_nodes_holding_the_vip() {
    if !require_root("dual_owner_sampler_flags_both_nodes_holding_the_vip") {
        return;
    }
    let lab = Lab::up(LabSpec::unique()).unwrap();
    lab.add_vip(Node::N1).unwrap();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let both_from = lab.add_vip(Node::N2).unwrap();
    // From the client's seat: asked who has the VIP, both nodes answer.
    let arp = ArpWatch::start(&lab).unwrap();
    let client = lab.client_netns();
    let vip = lab.vip().to_string();
    hb_tests::run("ip", &["-n", &client, "neigh", "flush", "to", &vip]).unwrap();
    let asked = monotonic_ns();
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    drop(prober);
    let arps = arp.stop().unwrap();
    assert_eq!(
        arps.claimants(asked, u64::MAX),
        vec![Node::N1, Node::N2],
        "{arps:?}"
    );
    // n1 loses its links (dead or cut off) while still holding the address: it cannot answer,
    // so this is not a dual-owner moment.
    // The window where both could answer ends when n1's eth1 has lost its carrier: the kernel
    // applies a carrier change asynchronously (linkwatch), after `ip link set` has returned,
    // so the sampler may still see n1's interface running for a moment on a loaded machine.
    lab.set_link(Node::N1, 1, false).unwrap();
    let n1 = lab.netns(Node::N1);
    let carrier_lost = || {
        hb_tests::run("ip", &["-n", &n1, "-o", "link", "show", "dev", "eth1"])
            // The operational state (what IFF_RUNNING follows), not LOWER_UP (the carrier bit,
            // which flips at once).
            .map(|out| !String::from_utf8_lossy(&out.stdout).contains(" state UP "))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !carrier_lost() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let both_to = monotonic_ns();
    assert!(
        carrier_lost(),
        "n1's eth1 kept its carrier with its cable pulled"
    );
    std::thread::sleep(Duration::from_millis(30));
    assert!(lab.holds_vip(Node::N1).unwrap() && lab.holds_vip(Node::N2).unwrap());
    let owners = sampler.stop().unwrap();
    let dual = owners.dual_owner();
    assert!(!dual.is_empty(), "no dual-owner moment flagged");
    // Every flagged moment lies in the window where both really held it.
    let window_start = both_from.saturating_sub(5_000_000);
    assert!(
        dual.iter()
            .all(|s| s.at_ns >= window_start && s.at_ns <= both_to),
        "{dual:?}"
    );
    assert!(
        owners
            .samples
            .iter()
            .any(|s| s.holds(Node::N1) && !s.holds(Node::N2))
    );
    assert!(
        owners
            .samples
            .iter()
            .any(|s| !s.holds(Node::N1) && s.holds(Node::N2))
    );
}

/// Sends 5 unicast and 5 broadcast datagrams to UDP 694 from `from` to `to`; returns how many
/// arrived.
#[allow(clippy::unwrap_used)] // test helper
fn udp_694_delivered(lab: &Lab, from: Node, to: Node) -> usize {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let to_ns = lab.netns(to);
    let receiver = std::thread::spawn(move || {
        hb_tests::lab::probe::enter_netns(&to_ns).unwrap();
        let sock = std::net::UdpSocket::bind("0.0.0.0:694").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut n = 0;
        let mut buf = [0u8; 64];
        while sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    ready_rx.recv().unwrap();
    let from_ns = lab.netns(from);
    let peer = lab.node_addr(to, 1);
    let bcast = std::net::Ipv4Addr::new(10, 213, lab.spec().subnet, 255);
    std::thread::spawn(move || {
        hb_tests::lab::probe::enter_netns(&from_ns).unwrap();
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_broadcast(true).unwrap();
        for _ in 0..5 {
            // A dropped send returns EPERM: not an error for this count.
            let _ = sock.send_to(b"hb", (peer, 694));
            let _ = sock.send_to(b"hb", (bcast, 694));
        }
    })
    .join()
    .unwrap();
    receiver.join().unwrap()
}

#[test]
fn partition_cuts_the_nodes_apart_and_heal_joins_them() {
    if !require_root("partition_cuts_the_nodes_apart_and_heal_joins_them") {
        return;
    }
    let lab = Lab::up(LabSpec::unique()).unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N1, Node::N2), 10);
    lab.partition().unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N1, Node::N2), 0);
    assert_eq!(udp_694_delivered(&lab, Node::N2, Node::N1), 0);
    // The client still reaches the node holding the VIP.
    lab.move_by_hand(None, Node::N1).unwrap();
    let prober = Prober::start(&lab, ProbeConfig::new(lab.vip())).unwrap();
    assert!(
        prober
            .wait_served_by(Node::N1, 0, Duration::from_secs(5))
            .is_some()
    );
    drop(prober);
    lab.heal().unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N2, Node::N1), 10);
    // Full loss on the sender's side, then removed.
    lab.heartbeat_loss(Node::N1, 1.0, true).unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N1, Node::N2), 0);
    lab.heartbeat_loss(Node::N1, 1.0, false).unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N1, Node::N2), 10);
}

#[test]
fn lab_runs_hbd_per_node_and_reports_one_that_exits_at_once() {
    if !require_root("lab_runs_hbd_per_node_and_reports_one_that_exits_at_once") {
        return;
    }
    // Stand-ins for hbd (the real daemon is wired by the lead): one records its hostname and
    // arguments and stays up, one exits at once.
    let bin_dir = std::env::temp_dir().join(hb_tests::unique_name("hbd"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    let stays = bin_dir.join("hbd-stays");
    let exits = bin_dir.join("hbd-exits");
    std::fs::write(
        &stays,
        "#!/bin/sh\necho \"$(hostname) $*\" > \"$(dirname \"$0\")/args-$(hostname)\"\n\
         echo \"mono=1 INFO started\"\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::write(&exits, "#!/bin/sh\necho 'hbd: bad config' >&2\nexit 3\n").unwrap();
    for f in [&stays, &exits] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    let mut spec = LabSpec::unique();
    spec.hbd_path = Some(stays.clone());
    let mut lab = Lab::up(spec).unwrap();
    let status = lab.status();
    for n in &status.nodes {
        assert!(
            matches!(n.hbd, hb_tests::lab::HbdState::Running(_)),
            "{status}"
        );
    }
    for node in Node::ALL {
        let args = std::fs::read_to_string(bin_dir.join(format!("args-{node}"))).unwrap();
        let want = format!("{node} {}", lab.hbd_args(node).join(" "));
        assert_eq!(args.trim(), want);
        assert!(want.contains("--foreground --config-dir"));
        let log = std::fs::read_to_string(lab.log_path(node)).unwrap();
        assert_eq!(log, "mono=1 INFO started\n");
        let line = lab
            .wait_log(node, "started", 0, Duration::from_millis(100))
            .unwrap()
            .unwrap();
        assert_eq!((line.mono_ns, line.level.as_str()), (1, "INFO"));
        assert!(
            lab.wait_log(node, "is dead", 0, Duration::from_millis(20))
                .unwrap()
                .is_none()
        );
    }
    let pid = lab.hbd_pid(Node::N1).unwrap();
    lab.kill_node(Node::N1).unwrap();
    assert!(lab.hbd_pid(Node::N1).is_none());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    let status = lab.status();
    assert_eq!(status.nodes[0].links_up, vec![(1, false), (2, false)]);
    assert!(matches!(
        status.nodes[1].hbd,
        hb_tests::lab::HbdState::Running(_)
    ));
    lab.restart_node(Node::N1).unwrap();
    assert!(lab.hbd_pid(Node::N1).is_some());
    assert_eq!(lab.status().nodes[0].links_up, vec![(1, true), (2, true)]);
    lab.down().unwrap();

    let mut spec = LabSpec::unique();
    spec.hbd_path = Some(exits);
    let mut lab = Lab::up(spec).unwrap();
    let status = lab.status();
    for n in &status.nodes {
        match &n.hbd {
            hb_tests::lab::HbdState::NotRunning(why) => {
                assert!(why.contains("exited at once"), "{status}")
            }
            other => panic!("{other:?}"),
        }
    }
    let log = std::fs::read_to_string(lab.log_path(Node::N2)).unwrap();
    assert_eq!(log, "hbd: bad config\n");
    drop(lab);
    std::fs::remove_dir_all(&bin_dir).unwrap();
}

/// A three-node lab: five namespaces (n3 at host `.3` on both links), every `ha.cf` lists the
/// three nodes, n3 reaches both others until a partition cuts every pair, the owner sampler reads n3 too and flags any two nodes
/// holding the VIP (n3 among them), and down removes everything.
#[test]
fn three_node_lab_samples_every_node_and_leaves_nothing_behind() {
    if !require_root("three_node_lab_samples_every_node_and_leaves_nothing_behind") {
        return;
    }
    let mut spec = LabSpec::unique();
    spec.nodes = 3;
    let mut lab = Lab::up(spec).unwrap();
    let prefix = lab.spec().prefix.clone();
    let dir = lab.record().dir.clone();
    assert_eq!(lab.nodes(), &[Node::N1, Node::N2, Node::N3]);
    assert_eq!(lab.peers(Node::N3), vec![Node::N1, Node::N2]);
    let status = lab.status();
    assert_eq!(status.namespaces_present.len(), 5, "{status}");
    assert_eq!(status.nodes.len(), 3, "{status}");
    for n in &status.nodes {
        assert!(n.namespace, "{status}");
        assert_eq!(n.links_up, vec![(1, true), (2, true)], "{status}");
    }
    for &node in lab.nodes() {
        let ha_cf = std::fs::read_to_string(lab.config_dir(node).join("ha.cf")).unwrap();
        assert!(ha_cf.contains("node n1\nnode n2\nnode n3\n"), "{ha_cf}");
        let out = lab.exec(node, "hostname", &[]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node.name());
    }
    // n3 and each other node reach each other on the LAN; the partition cuts every pair.
    for peer in [Node::N1, Node::N2] {
        assert_eq!(udp_694_delivered(&lab, Node::N3, peer), 10, "n3 to {peer}");
        assert_eq!(udp_694_delivered(&lab, peer, Node::N3), 10, "{peer} to n3");
    }
    lab.partition().unwrap();
    for (a, b) in [
        (Node::N1, Node::N2),
        (Node::N1, Node::N3),
        (Node::N2, Node::N3),
    ] {
        assert_eq!(udp_694_delivered(&lab, a, b), 0, "{a} to {b} partitioned");
        assert_eq!(udp_694_delivered(&lab, b, a), 0, "{b} to {a} partitioned");
    }
    lab.heal().unwrap();
    assert_eq!(udp_694_delivered(&lab, Node::N3, Node::N1), 10, "healed");
    // n3 alone, then n3 and n2, then n2 alone: only the middle is a dual owner.
    lab.add_vip(Node::N3).unwrap();
    let sampler = OwnerSampler::start(&lab, Duration::from_millis(2)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The window runs from before the `ip addr add` starts to after the `ip addr del` returns:
    // on a loaded machine either command can take longer than any fixed slack.
    let both_from = monotonic_ns();
    lab.add_vip(Node::N2).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let both_to = lab.del_vip(Node::N3).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let owners = sampler.stop().unwrap();
    assert!(owners.samples.iter().all(|s| s.reads.len() == 5));
    assert!(owners.samples.iter().any(|s| s.holders() == vec![Node::N3]));
    assert!(owners.samples.iter().any(|s| s.holders() == vec![Node::N2]));
    let dual = owners.dual_owner();
    assert!(!dual.is_empty(), "no dual-owner moment flagged");
    assert!(
        dual.iter().all(|s| s.dual() == Some((Node::N2, Node::N3))
            && s.at_ns + 5_000_000 >= both_from
            && s.at_ns <= both_to),
        "{dual:?}"
    );
    assert!(owners.samples.iter().all(|s| !s.holds(Node::N1)));
    lab.down().unwrap();
    nothing_left(&prefix, &dir);
}
