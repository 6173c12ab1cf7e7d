//! The socket path (`hb_daemon::net`) between two network namespaces joined by a veth pair:
//! broadcast, unicast and multicast media deliver datagrams with CLOCK_MONOTONIC arrival
//! stamps inside the test's window; `drain` reads everything queued; a send dropped by a
//! local iptables rule is counted as EPERM and is not fatal.

// Test helpers outside #[test] functions: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use hb_daemon::net::{Datagram, MediumSender, Receiver, ReceiverSpec, receiver_specs};
use hb_proto::config::Media;
use hb_tests::{Netns, monotonic_ns, require_root, veth_pair};

/// A receiving thread inside a namespace, with what it collected.
type ReceiverThread = std::thread::JoinHandle<Result<Result<Vec<Datagram>>>>;

const IFACE: &str = "hb0";
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";

fn pair() -> Result<(Netns, Netns)> {
    let a = Netns::new("a")?;
    let b = Netns::new("b")?;
    veth_pair(
        &a,
        &format!("{ADDR_A}/24"),
        &b,
        &format!("{ADDR_B}/24"),
        IFACE,
    )?;
    wait_up(&a)?;
    wait_up(&b)?;
    Ok((a, b))
}

/// Waits until the veth end is operationally up: until the kernel's link watcher has
/// activated it, its queue discards what is sent (and the send still succeeds).
fn wait_up(ns: &Netns) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = ns.ip(&["-o", "link", "show", IFACE])?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("state UP") && !text.contains("qdisc noop") {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{IFACE} in {} never came up: {text}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens a receiver for `spec` in `ns`, signals readiness, then collects `count` datagrams
/// (or what arrived within 5 s). With `drain_after`, waits that long after readiness and
/// reads everything queued with `drain` instead of `recv`.
fn receive_in(
    ns: &Netns,
    spec: ReceiverSpec,
    count: usize,
    drain_after: Option<Duration>,
) -> Result<(mpsc::Receiver<()>, ReceiverThread)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = ns.run_in(move || -> Result<Vec<Datagram>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut rx = Receiver::open(&spec)?;
            ready_tx.send(()).ok();
            let mut got = Vec::new();
            if let Some(wait) = drain_after {
                tokio::time::sleep(wait).await;
                rx.drain(&mut got, 10_000)?;
                return Ok(got);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while got.len() < count {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(d) => got.push(d?),
                    Err(_) => break,
                }
            }
            Ok(got)
        })
    })?;
    Ok((ready_rx, handle))
}

fn open_sender_in(ns: &Netns, medium: Media, port: u16) -> Result<MediumSender> {
    ns.run_in(move || MediumSender::open(&medium, port))?
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??
        .context("opening the sender")
}

fn join(handle: ReceiverThread) -> Result<Vec<Datagram>> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??
}

fn exchange(medium: Media, port: u16, brd: bool) -> Result<()> {
    let (a, b) = pair()?;
    if brd {
        // Give both ends a broadcast address (`veth_pair` adds the addresses without one).
        for (ns, addr) in [(&a, ADDR_A), (&b, ADDR_B)] {
            let cidr = format!("{addr}/24");
            ns.ip(&["addr", "del", &cidr, "dev", IFACE])?;
            ns.ip(&["addr", "add", &cidr, "brd", "+", "dev", IFACE])?;
        }
    }
    let spec = receiver_specs(std::slice::from_ref(&medium), port)
        .pop()
        .context("no receiver spec")?;
    let (ready, handle) = receive_in(&b, spec, 20, None)?;
    ready.recv_timeout(Duration::from_secs(5))?;
    let mut sender = open_sender_in(&a, medium.clone(), port)?;
    if let Media::Bcast { .. } = &medium {
        let want: Ipv4Addr = if brd {
            "10.77.0.255".parse()?
        } else {
            Ipv4Addr::BROADCAST
        };
        assert_eq!(sender.destination(), SocketAddr::new(want.into(), port));
    }
    let t0 = monotonic_ns();
    let mut sent = 0;
    for i in 0..20 {
        sender.send(format!("hb test {i}").as_bytes())?;
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = join(handle)?;
    let t1 = monotonic_ns();
    assert_eq!(
        got.len(),
        20,
        "all datagrams arrive on a clean veth (sent to {}: {sent} sent)",
        sender.destination(),
    );
    assert_eq!(sent, 20);
    // Figures, not assertions: the kernel stamp to the daemon's read, and the width of the
    // REALTIME-MONOTONIC offset measurement that converted the stamp.
    let mut delays: Vec<u64> = got
        .iter()
        .map(|d| d.read_at.as_nanos() - d.arrival.as_nanos())
        .collect();
    delays.sort_unstable();
    let widths: Vec<u64> = (0..1000)
        .map(|_| hb_daemon::net::realtime_offset().1)
        .collect();
    eprintln!(
        "{medium:?}: stamp-to-read delay p50 {} ns, max {} ns; offset half-width max {} ns over 1000",
        delays[delays.len() / 2],
        delays[delays.len() - 1],
        widths.iter().max().copied().unwrap_or(0)
    );
    let mut last = 0;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, format!("hb test {i}").as_bytes());
        assert_eq!(d.src.ip(), IpAddr::V4(ADDR_A.parse::<Ipv4Addr>()?));
        assert!(d.kernel_stamp, "SO_TIMESTAMPNS gave a stamp");
        let (arrival, read_at) = (d.arrival.as_nanos(), d.read_at.as_nanos());
        assert!(
            t0 <= arrival && arrival <= read_at && read_at <= t1,
            "arrival {arrival} read {read_at} outside [{t0}, {t1}]"
        );
        assert!(arrival >= last, "arrivals in order");
        last = arrival;
    }
    Ok(())
}

#[test]
fn bcast_delivers_with_monotonic_arrival_stamps() -> Result<()> {
    if !require_root("bcast_delivers_with_monotonic_arrival_stamps") {
        return Ok(());
    }
    exchange(
        Media::Bcast {
            iface: IFACE.into(),
        },
        7694,
        false,
    )
}

#[test]
fn bcast_uses_the_configured_broadcast_address() -> Result<()> {
    if !require_root("bcast_uses_the_configured_broadcast_address") {
        return Ok(());
    }
    exchange(
        Media::Bcast {
            iface: IFACE.into(),
        },
        7699,
        true,
    )
}

#[test]
fn ucast_delivers_with_monotonic_arrival_stamps() -> Result<()> {
    if !require_root("ucast_delivers_with_monotonic_arrival_stamps") {
        return Ok(());
    }
    exchange(
        Media::Ucast {
            iface: IFACE.into(),
            addr: ADDR_B.parse()?,
        },
        7695,
        false,
    )
}

#[test]
fn mcast_delivers_with_monotonic_arrival_stamps() -> Result<()> {
    if !require_root("mcast_delivers_with_monotonic_arrival_stamps") {
        return Ok(());
    }
    exchange(
        Media::Mcast {
            iface: IFACE.into(),
            group: "239.77.0.1".parse()?,
            port: 7696,
            ttl: 1,
            loopback: false,
        },
        694,
        false,
    )
}

#[test]
fn drain_reads_everything_queued() -> Result<()> {
    if !require_root("drain_reads_everything_queued") {
        return Ok(());
    }
    let (a, b) = pair()?;
    let medium = Media::Ucast {
        iface: IFACE.into(),
        addr: ADDR_B.parse()?,
    };
    let spec = ReceiverSpec {
        iface: IFACE.into(),
        port: 7697,
        groups: vec![],
    };
    let (ready, handle) = receive_in(&b, spec, 0, Some(Duration::from_millis(500)))?;
    ready.recv_timeout(Duration::from_secs(5))?;
    let mut sender = open_sender_in(&a, medium, 7697)?;
    for i in 0..50 {
        sender.send(format!("queued {i}").as_bytes())?;
    }
    let got = join(handle)?;
    assert_eq!(got.len(), 50);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, format!("queued {i}").as_bytes());
        assert!(d.arrival <= d.read_at);
    }
    Ok(())
}

#[test]
fn send_dropped_by_iptables_counts_eperm_and_goes_on() -> Result<()> {
    if !require_root("send_dropped_by_iptables_counts_eperm_and_goes_on") {
        return Ok(());
    }
    // The rule lives in namespace `a` and goes away with it.
    let (a, _b) = pair()?;
    a.exec(
        "iptables",
        &["-A", "OUTPUT", "-p", "udp", "--dport", "7698", "-j", "DROP"],
    )?;
    let mut sender = open_sender_in(
        &a,
        Media::Ucast {
            iface: IFACE.into(),
            addr: ADDR_B.parse()?,
        },
        7698,
    )?;
    assert_eq!(sender.destination(), SocketAddr::new(ADDR_B.parse()?, 7698));
    // What the daemon counts: each failed send under its label (metrics' socket errors).
    let (mut sent, mut eperm, mut other_errors) = (0, 0, 0);
    for _ in 0..3 {
        match sender.send(b"dropped") {
            Ok(()) => sent += 1,
            Err(err) if err.label == "send_eperm" => {
                assert_eq!(err.source.raw_os_error(), Some(libc::EPERM));
                eperm += 1;
            }
            Err(_) => other_errors += 1,
        }
    }
    assert_eq!((sent, eperm, other_errors), (0, 3, 0));
    Ok(())
}

/// An hb message of `sender` (magic, version and sender id where the header has them; the
/// rest zero, which the filter does not read).
fn hb_like(sender: u32, tag: u8) -> Vec<u8> {
    let mut m = vec![0u8; 48];
    m[..4].copy_from_slice(&hb_common::wire::MAGIC);
    m[4] = hb_common::wire::VERSION;
    m[8..12].copy_from_slice(&sender.to_be_bytes());
    m[47] = tag;
    m
}

#[test]
fn ignore_own_drops_only_our_looped_back_messages() -> Result<()> {
    if !require_root("ignore_own_drops_only_our_looped_back_messages") {
        return Ok(());
    }
    let (a, _b) = pair()?;
    let medium = Media::Bcast {
        iface: IFACE.into(),
    };
    let port = 7698;
    let me = 0x1234_5678;
    let spec = receiver_specs(std::slice::from_ref(&medium), port)
        .pop()
        .context("no receiver spec")?;
    // The receiver runs where the sender is: a broadcast loops back to it.
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = a.run_in(move || -> Result<Vec<Datagram>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut rx = Receiver::open(&spec)?;
            rx.ignore_own(me)?;
            ready_tx.send(()).ok();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut got = Vec::new();
            rx.drain(&mut got, 100)?;
            Ok(got)
        })
    })?;
    ready_rx.recv_timeout(Duration::from_secs(5))?;
    let mut sender = open_sender_in(&a, medium, port)?;
    let sent = [
        hb_like(me, 1),
        hb_like(0x0bad_cafe, 2),
        b"short".to_vec(),
        b"not an hb message, long enough".to_vec(),
        hb_like(me, 3),
    ];
    for m in &sent {
        sender.send(m)?;
    }
    let got: Vec<Vec<u8>> = join(handle)?.into_iter().map(|d| d.data).collect();
    assert_eq!(
        got,
        vec![sent[1].clone(), sent[2].clone(), sent[3].clone()],
        "our own hb messages dropped, everything else kept"
    );
    Ok(())
}
