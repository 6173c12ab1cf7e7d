//! The XDP fast path (issue 5) end to end, in network namespaces: hb's XDP program delivers
//! heartbeats over IPv4, IPv6 and VLAN with kernel timestamps through the ring buffer (read with
//! `RingReader` on tokio), consumes them only when asked, drops (and counts) what arrives on the
//! heartbeat port and cannot be an hb message, lets everything else through untouched, counts
//! sequence gaps per peer, keeps the program-wide counts whole when its per-interface map is
//! full, isolates loaders in different namespaces, detaches when its holder is killed, and
//! applies the `xdp auto|on|off` policy.
// Test code: helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use hb_common::{EVENT_PACKET, FAMILY_V4, FAMILY_V6, IfaceCounters, RingEvent, counter, wire};
use hb_daemon::xdp::{AttachMode, PeerCounters, XdpError, XdpHandle, XdpMode, start_xdp};
use hb_tests::{Netns, monotonic_ns, require_root, run, veth_pair};

const PORT: u16 = 694;
/// A port next to it, for traffic the program must leave alone.
const OTHER_PORT: u16 = 695;

/// A well-formed hb message prefix (`len` bytes, length field set), as the XDP program checks it.
fn hb_msg(sender: u32, generation: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut msg = vec![0u8; len];
    msg[..4].copy_from_slice(&wire::MAGIC);
    msg[wire::OFF_VERSION] = wire::VERSION;
    msg[wire::OFF_SENDER..wire::OFF_SENDER + 4].copy_from_slice(&sender.to_be_bytes());
    msg[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&(len as u16).to_be_bytes());
    msg[wire::OFF_GENERATION..wire::OFF_GENERATION + 8].copy_from_slice(&generation.to_be_bytes());
    msg[wire::OFF_SEQ..wire::OFF_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
    msg
}

fn seq_of(ev: &RingEvent) -> u64 {
    u64::from_be_bytes(
        ev.data[wire::OFF_SEQ..wire::OFF_SEQ + 8]
            .try_into()
            .unwrap(),
    )
}

/// Sends `datagrams` from `src` (an address in `ns`) to their destinations, `gap` apart.
/// Send errors (EPERM from an iptables DROP) are counted, not fatal.
fn send_from(ns: &Netns, src: &str, datagrams: Vec<(Vec<u8>, String)>, gap: Duration) -> usize {
    let src = src.to_owned();
    ns.run_in(move || {
        let sock = UdpSocket::bind(&src).expect("bind sender");
        let mut failed = 0;
        for (msg, dst) in datagrams {
            if sock.send_to(&msg, &dst).is_err() {
                failed += 1;
            }
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        failed
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap()
}

/// What a receiver saw.
#[derive(Debug)]
struct Outcome {
    events: Vec<RingEvent>,
    counters: Vec<(&'static str, u64)>,
    peers: Vec<PeerCounters>,
    socket: Vec<(Vec<u8>, SocketAddr)>,
    /// What a socket on [`OTHER_PORT`] received.
    other: Vec<(Vec<u8>, SocketAddr)>,
    ifindex: u32,
    /// The program's counters for `ifindex` (`IFACES`).
    iface: IfaceCounters,
    /// Its counters for an interface it is not attached to (loopback).
    lo: IfaceCounters,
}

/// The program-wide counter `name` among `counters` (as `XdpHandle::counters` lists them).
fn counter_named(counters: &[(&'static str, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap()
}

impl Outcome {
    fn counter(&self, name: &str) -> u64 {
        counter_named(&self.counters, name)
    }

    /// The receiver's program is attached to one interface: its counters for that interface
    /// are the global ones for datagrams to the heartbeat port (no kernel deadlines are set
    /// here, so the callback's counts stay 0); other traffic is counted program-wide only; it
    /// counted nothing for any other interface.
    fn assert_iface_counters_are_the_global_ones(&self) {
        for (name, value) in &self.counters {
            let index = match *name {
                "seen" | "not_heartbeat" => {
                    let index = if *name == "seen" {
                        counter::SEEN
                    } else {
                        counter::NOT_HEARTBEAT
                    };
                    assert_eq!(self.iface.get(index), 0, "{name}: {:?}", self.iface);
                    continue;
                }
                "delivered" => counter::DELIVERED,
                "ring_full" => counter::RING_FULL,
                "parse_fail" => counter::PARSE_FAIL,
                "consumed" => counter::CONSUMED,
                "peers_full" => counter::PEERS_FULL,
                "deadlines" => counter::DEADLINES,
                "dropped" => counter::DROPPED,
                "batched" => counter::BATCHED,
                "ifaces_full" => {
                    assert_eq!(*value, 0, "IFACES full with one interface");
                    continue;
                }
                other => panic!("unknown counter {other}"),
            };
            assert_eq!(
                self.iface.get(index),
                *value,
                "{name} on ifindex {}: {:?} vs global {:?}",
                self.ifindex,
                self.iface,
                self.counters
            );
        }
        assert_eq!(self.lo, IfaceCounters::default(), "counted on loopback");
    }
}

/// A receiver thread in a namespace: XDP on `iface`, a `RingReader` drained on tokio, and a
/// plain UDP socket on the heartbeat port. It stops when `stop` is called.
struct Receiver {
    stop: mpsc::Sender<()>,
    join: std::thread::JoinHandle<anyhow::Result<Outcome>>,
}

impl Receiver {
    fn start(ns: &Netns, iface: &str, consume: bool) -> Self {
        Self::start_with(ns, iface, consume, false, false)
    }

    /// `hold`: leave the ring buffer unread until stopped (to fill it up). `batch`: the
    /// program's `XdpConfig::batch` on (heartbeats repeating their sender's state wake no one).
    fn start_with(ns: &Netns, iface: &str, consume: bool, hold: bool, batch: bool) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let iface = iface.to_owned();
        let join = ns
            .run_in(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let sock = UdpSocket::bind(("::", PORT)).expect("bind heartbeat socket");
                    sock.set_nonblocking(true).unwrap();
                    let other_sock = UdpSocket::bind(("::", OTHER_PORT)).expect("bind other");
                    other_sock.set_nonblocking(true).unwrap();
                    let mut other = Vec::new();
                    let mut handle = XdpHandle::load(PORT, consume).expect("load XDP");
                    handle.attach(&iface).expect("attach XDP");
                    handle.set_batch(batch).expect("batch");
                    let mut reader = handle.ring_reader().expect("ring reader");
                    let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).unwrap();
                    ready_tx.send(()).unwrap();
                    let mut events = Vec::new();
                    let mut socket = Vec::new();
                    let mut buf = [0u8; 65536];
                    let mut stop_at: Option<Instant> = None;
                    loop {
                        if !hold {
                            reader.drain(&mut events);
                        }
                        while let Ok((n, from)) = sock.recv_from(&mut buf) {
                            socket.push((buf[..n].to_vec(), from));
                        }
                        while let Ok((n, from)) = other_sock.recv_from(&mut buf) {
                            other.push((buf[..n].to_vec(), from));
                        }
                        if stop_at.is_none() && stop_rx.try_recv().is_ok() {
                            // Let the last packets through the stack before the final drain.
                            stop_at = Some(Instant::now() + Duration::from_millis(200));
                        }
                        if stop_at.is_some_and(|t| Instant::now() >= t) {
                            break;
                        }
                        let _ = tokio::time::timeout(Duration::from_millis(10), reader.readable())
                            .await;
                    }
                    reader.drain(&mut events);
                    while let Ok((n, from)) = sock.recv_from(&mut buf) {
                        socket.push((buf[..n].to_vec(), from));
                    }
                    while let Ok((n, from)) = other_sock.recv_from(&mut buf) {
                        other.push((buf[..n].to_vec(), from));
                    }
                    Outcome {
                        events,
                        iface: handle.iface_counters(ifindex).unwrap(),
                        lo: handle.iface_counters(1).unwrap(),
                        counters: handle.counters().unwrap(),
                        peers: handle.peer_counters().unwrap(),
                        socket,
                        other,
                        ifindex,
                    }
                })
            })
            .unwrap();
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver attached XDP");
        Self {
            stop: stop_tx,
            join,
        }
    }

    fn finish(self) -> Outcome {
        self.stop.send(()).unwrap();
        self.join.join().unwrap().unwrap()
    }
}

/// Sender and receiver joined by veth `hb0`: 10.77.0.1/2 and fd77::1/2.
fn pair() -> (Netns, Netns) {
    let s = Netns::new("s").unwrap();
    let r = Netns::new("r").unwrap();
    veth_pair(&s, "10.77.0.1/24", &r, "10.77.0.2/24", "hb0").unwrap();
    s.ip(&["addr", "add", "fd77::1/64", "dev", "hb0", "nodad"])
        .unwrap();
    r.ip(&["addr", "add", "fd77::2/64", "dev", "hb0", "nodad"])
        .unwrap();
    // Resolve neighbours before the measured packets (port 9: nobody listens).
    let warm = |dst: &str| vec![(b"warm-up".to_vec(), dst.to_owned())];
    send_from(&s, "0.0.0.0:0", warm("10.77.0.2:9"), Duration::ZERO);
    send_from(&s, "[::]:0", warm("[fd77::2]:9"), Duration::ZERO);
    std::thread::sleep(Duration::from_millis(200));
    (s, r)
}

fn mac_of(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = ns.ip(&["-o", "link", "show", "dev", iface]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_owned();
    let mut mac = [0u8; 6];
    for (i, b) in hex.split(':').enumerate() {
        mac[i] = u8::from_str_radix(b, 16).unwrap();
    }
    mac
}

/// An Ethernet frame with an 802.1Q tag (`vid`, none for `None`) carrying IPv4/UDP `payload`.
fn vlan_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vid: Option<u16>,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    if let Some(vid) = vid {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&dst.0);
    let mut sum: u32 = f[ip_start..ip_start + 20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[ip_start + 10..ip_start + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(payload);
    f
}

/// Sends raw Ethernet `frames` out of `iface` in `ns` (AF_PACKET).
fn send_raw(ns: &Netns, iface: &str, frames: Vec<Vec<u8>>) {
    let iface = iface.to_owned();
    ns.run_in(move || {
        let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).unwrap();
        // SAFETY: plain socket(2); the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0, "AF_PACKET socket");
        for frame in frames {
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&frame[..6]);
            // SAFETY: buffer and address valid for the call.
            let n = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(n, frame.len() as isize, "raw send");
        }
        // SAFETY: fd from socket(2) above.
        unsafe { libc::close(fd) };
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn heartbeats_over_ipv4_ipv6_and_vlan_arrive_once_with_kernel_timestamps_and_are_consumed() {
    if !require_root("heartbeats_over_ipv4_ipv6_and_vlan_arrive_once_with_kernel_timestamps") {
        return;
    }
    let (s, r) = pair();
    let rx = Receiver::start(&r, "hb0", true);
    const N: u64 = 100;
    let before = monotonic_ns();
    // Sender 1 over IPv4, 2 over IPv6, 3 over IPv4 in VLAN 7; interleaved, 1 ms apart.
    let paths = [
        (1u32, "10.77.0.1:40001", "10.77.0.2:694", 64usize),
        (2, "[fd77::1]:40002", "[fd77::2]:694", 80),
        (3, "10.79.0.1:40003", "10.79.0.2:694", 96),
    ];
    let (smac, rmac) = (mac_of(&s, "hb0"), mac_of(&r, "hb0"));
    for seq in 1..=N {
        for (sender, src, dst, len) in paths {
            if sender == 3 {
                // VLAN 7, as raw tagged frames (no 8021q module needed).
                let msg = hb_msg(sender, 1, seq, len);
                let frame = vlan_frame(
                    rmac,
                    smac,
                    Some(7),
                    ([10, 79, 0, 1], 40003),
                    ([10, 79, 0, 2], PORT),
                    &msg,
                );
                send_raw(&s, "hb0", vec![frame]);
                continue;
            }
            let failed = send_from(
                &s,
                src,
                vec![(hb_msg(sender, 1, seq, len), dst.to_owned())],
                Duration::ZERO,
            );
            assert_eq!(failed, 0);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = rx.finish();
    let after = monotonic_ns();

    for (sender, src, _, len) in paths {
        let evs: Vec<&RingEvent> = out.events.iter().filter(|e| e.sender == sender).collect();
        assert_eq!(
            evs.len() as u64,
            N,
            "sender {sender}: every heartbeat once; counters {:?}",
            out.counters
        );
        let src: SocketAddr = src.parse().unwrap();
        for (i, ev) in evs.iter().enumerate() {
            assert_eq!(ev.kind, EVENT_PACKET);
            assert_eq!(seq_of(ev), i as u64 + 1, "in order, each once");
            assert_eq!(ev.len as usize, len);
            assert_eq!(&ev.data[..len], &hb_msg(sender, 1, i as u64 + 1, len)[..]);
            assert_eq!(ev.ifindex, out.ifindex, "arrival interface is the veth");
            assert_eq!(ev.dst_port, PORT);
            assert_eq!(ev.src_port, src.port());
            match src {
                SocketAddr::V4(a) => {
                    assert_eq!(ev.family, FAMILY_V4);
                    assert_eq!(&ev.src_addr[..4], &a.ip().octets());
                }
                SocketAddr::V6(a) => {
                    assert_eq!(ev.family, FAMILY_V6);
                    assert_eq!(ev.src_addr, a.ip().octets());
                }
            }
            assert!(
                ev.ktime_ns >= before && ev.ktime_ns <= after,
                "kernel timestamp {} within the test's CLOCK_MONOTONIC window [{before}, {after}]",
                ev.ktime_ns
            );
        }
        assert!(evs.windows(2).all(|w| w[0].ktime_ns < w[1].ktime_ns));
        let peer = out
            .peers
            .iter()
            .find(|p| p.key.sender == sender)
            .expect("per-peer counters");
        assert_eq!(peer.key.ifindex, out.ifindex);
        assert_eq!(peer.stats.packets, N);
        assert_eq!(peer.stats.bytes, N * len as u64);
        assert_eq!(peer.stats.seq_gaps, 0);
        assert_eq!(peer.stats.last_seq, N);
        assert_eq!(peer.stats.generation, 1);
        assert_eq!(peer.stats.last_arrival_ns, evs.last().unwrap().ktime_ns);
    }
    assert_eq!(out.peers.len(), 3);
    assert_eq!(out.counter("delivered"), 3 * N);
    assert_eq!(out.counter("consumed"), 3 * N);
    assert_eq!(out.counter("parse_fail"), 0);
    assert_eq!(out.counter("ring_full"), 0);
    out.assert_iface_counters_are_the_global_ones();
    assert!(
        out.socket.is_empty(),
        "consumed heartbeats do not also reach the socket: {:?}",
        out.socket.len()
    );
}

#[test]
fn without_consume_heartbeats_reach_both_the_ring_and_the_socket() {
    if !require_root("without_consume_heartbeats_reach_both_the_ring_and_the_socket") {
        return;
    }
    let (s, r) = pair();
    let rx = Receiver::start(&r, "hb0", false);
    let msgs = (1..=50)
        .map(|seq| (hb_msg(7, 1, seq, 64), "10.77.0.2:694".to_owned()))
        .collect();
    assert_eq!(
        send_from(&s, "10.77.0.1:0", msgs, Duration::from_millis(1)),
        0
    );
    let out = rx.finish();
    assert_eq!(out.events.len(), 50);
    assert_eq!(out.socket.len(), 50, "passed on to the socket as well");
    for (i, (data, _)) in out.socket.iter().enumerate() {
        assert_eq!(data, &hb_msg(7, 1, i as u64 + 1, 64), "unaltered");
    }
    assert_eq!(out.counter("consumed"), 0);
}

#[test]
fn junk_on_the_heartbeat_port_is_dropped_and_counted_and_other_ports_are_untouched() {
    if !require_root(
        "junk_on_the_heartbeat_port_is_dropped_and_counted_and_other_ports_are_untouched",
    ) {
        return;
    }
    let (s, r) = pair();
    let rx = Receiver::start(&r, "hb0", true);
    let mut wrong_version = hb_msg(5, 1, 2, 64);
    wrong_version[wire::OFF_VERSION] = wire::VERSION + 1;
    let mut wrong_length = hb_msg(5, 1, 3, 64);
    wrong_length[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&100u16.to_be_bytes());
    let mut wrong_magic = hb_msg(5, 1, 4, 64);
    wrong_magic[0] = b'X';
    let short = hb_msg(5, 1, 5, 64)[..20].to_vec();
    let not_hb = b"GET / HTTP/1.0 -- not a heartbeat, just UDP to the port".to_vec();
    // What cannot be an hb message: XDP drops it.
    let junk = vec![
        not_hb,
        wrong_version,
        wrong_length,
        wrong_magic,
        short,
        vec![],
        hb_msg(5, 1, 1, 1200), // longer than any hb message (wire::MAX_MESSAGE_LEN), one frame
    ];
    // IPv4 fragments carry no ports past the first: left to the stack to reassemble.
    let fragmented = hb_msg(5, 1, 1, 3000);
    let mut msgs: Vec<(Vec<u8>, String)> = junk
        .iter()
        .map(|m| (m.clone(), format!("10.77.0.2:{PORT}")))
        .collect();
    msgs.push((fragmented.clone(), format!("10.77.0.2:{PORT}")));
    msgs.push((hb_msg(5, 1, 1, 64), format!("10.77.0.2:{PORT}")));
    // The same bytes to another port, and a heartbeat-looking one: none of the program's
    // business.
    let mut elsewhere = junk.clone();
    elsewhere.push(fragmented.clone());
    elsewhere.push(hb_msg(5, 1, 9, 64));
    msgs.extend(
        elsewhere
            .iter()
            .map(|m| (m.clone(), format!("10.77.0.2:{OTHER_PORT}"))),
    );
    assert_eq!(
        send_from(&s, "10.77.0.1:0", msgs, Duration::from_millis(1)),
        0
    );
    let out = rx.finish();
    let lens = |v: &[(Vec<u8>, SocketAddr)]| v.iter().map(|(d, _)| d.len()).collect::<Vec<_>>();
    assert!(
        out.socket.len() == 1 && out.socket[0].0 == fragmented,
        "only the reassembled fragments reach the heartbeat socket: got lengths {:?}",
        lens(&out.socket)
    );
    assert_eq!(out.counter("dropped"), junk.len() as u64);
    out.assert_iface_counters_are_the_global_ones();
    assert_eq!(out.events.len(), 1, "only the heartbeat is delivered");
    assert_eq!(seq_of(&out.events[0]), 1);
    assert_eq!(out.counter("delivered"), 1);
    assert_eq!(out.counter("consumed"), 1);
    assert_eq!(out.counter("parse_fail"), 0);
    let got: Vec<Vec<u8>> = out.other.iter().map(|(d, _)| d.clone()).collect();
    assert!(
        got == elsewhere,
        "everything sent to port {OTHER_PORT} arrives as sent, in order: got lengths {:?}",
        lens(&out.other)
    );
}

#[test]
fn a_full_interface_map_loses_only_the_per_interface_counts() {
    if !require_root("a_full_interface_map_loses_only_the_per_interface_counts") {
        return;
    }
    // One program on IFACES_MAX + 1 interfaces (veth pairs inside one namespace: a frame sent
    // out of xaN arrives on xbN, where the program runs), one junk datagram to the heartbeat
    // port arriving on each, in order.
    let n = hb_common::IFACES_MAX as usize + 1;
    let r = Netns::new("ifm").unwrap();
    let mut batch = String::new();
    for i in 0..n {
        batch += &format!(
            "link add xa{i} type veth peer name xb{i}\nlink set xa{i} up\nlink set xb{i} up\n"
        );
    }
    let file = std::env::temp_dir().join(format!("{}.ip", r.name()));
    std::fs::write(&file, batch).unwrap();
    r.ip(&["-batch", &file.display().to_string()]).unwrap();
    let _ = std::fs::remove_file(&file);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let join = r
        .run_in(move || {
            let mut handle = XdpHandle::load(PORT, true).expect("load XDP");
            let mut ifindexes = Vec::new();
            for i in 0..n {
                let iface = format!("xb{i}");
                handle.attach(&iface).expect("attach XDP");
                ifindexes.push(nix::net::if_::if_nametoindex(iface.as_str()).unwrap());
            }
            ready_tx.send(()).unwrap();
            sent_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let per_iface: Vec<u64> = ifindexes
                .iter()
                .map(|&ix| handle.iface_counters(ix).unwrap().get(counter::DROPPED))
                .collect();
            (handle.counters().unwrap(), per_iface)
        })
        .unwrap();
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("program attached to every interface");
    let junk = b"not an hb message".to_vec();
    for i in 0..n {
        let frame = vlan_frame(
            mac_of(&r, &format!("xb{i}")),
            mac_of(&r, &format!("xa{i}")),
            None,
            ([10, 78, 0, 1], 40000),
            ([10, 78, 0, 2], PORT),
            &junk,
        );
        send_raw(&r, &format!("xa{i}"), vec![frame]);
    }
    sent_tx.send(()).unwrap();
    let (counters, per_iface) = join.join().unwrap().unwrap();
    let global = |name: &str| counter_named(&counters, name);
    // The program-wide counts stay whole; only the interface the full map had no room for
    // lost its own count, and that loss is counted.
    assert_eq!(global("dropped"), n as u64, "{counters:?}");
    assert_eq!(global("ifaces_full"), 1, "{counters:?}");
    assert_eq!(
        per_iface[..n - 1],
        vec![1; n - 1][..],
        "each of the first {} interfaces counted its datagram",
        n - 1
    );
    assert_eq!(per_iface[n - 1], 0, "the interface beyond the map's room");
}

#[test]
fn heartbeats_the_full_ring_buffer_cannot_carry_reach_the_socket() {
    if !require_root("heartbeats_the_full_ring_buffer_cannot_carry_reach_the_socket") {
        return;
    }
    let (s, r) = pair();
    // Consume on, reader holding the ring buffer: once it is full, heartbeats must pass.
    let rx = Receiver::start_with(&r, "hb0", true, true, false);
    const N: u64 = 1500; // 1 MiB ring buffer holds about 970 records
    let msgs = (1..=N)
        .map(|seq| (hb_msg(6, 1, seq, 64), "10.77.0.2:694".to_owned()))
        .collect();
    assert_eq!(
        send_from(&s, "10.77.0.1:0", msgs, Duration::from_micros(100)),
        0
    );
    let out = rx.finish();
    let ring_full = out.counter("ring_full");
    assert!(
        ring_full > 0,
        "the ring buffer filled up: {:?}",
        out.counters
    );
    assert_eq!(out.events.len() as u64, out.counter("delivered"));
    out.assert_iface_counters_are_the_global_ones();
    assert_eq!(
        out.socket.len() as u64,
        ring_full,
        "what the ring could not carry passed"
    );
    assert_eq!(
        out.events.len() as u64 + ring_full,
        N,
        "every heartbeat exactly once"
    );
    let mut seqs: Vec<u64> = out.events.iter().map(seq_of).collect();
    seqs.extend(
        out.socket.iter().map(|(d, _)| {
            u64::from_be_bytes(d[wire::OFF_SEQ..wire::OFF_SEQ + 8].try_into().unwrap())
        }),
    );
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    let peer = out.peers.iter().find(|p| p.key.sender == 6).unwrap();
    assert_eq!(peer.stats.packets, N, "counted whether delivered or not");
    assert_eq!(peer.stats.seq_gaps, 0);
}

/// Removes an iptables rule from a namespace on drop (the namespace's removal would too).
struct IptablesRule<'a> {
    ns: &'a Netns,
    rule: Vec<&'static str>,
}

impl<'a> IptablesRule<'a> {
    fn add(ns: &'a Netns, rule: Vec<&'static str>) -> Self {
        let mut args = vec!["-A"];
        args.extend(&rule);
        ns.exec("iptables", &args).unwrap();
        Self { ns, rule }
    }
}

impl Drop for IptablesRule<'_> {
    fn drop(&mut self) {
        let mut args = vec!["-D"];
        args.extend(&self.rule);
        let _ = self.ns.exec("iptables", &args);
    }
}

#[test]
fn loss_injected_on_the_sender_shows_as_sequence_gaps_of_the_right_size() {
    if !require_root("loss_injected_on_the_sender_shows_as_sequence_gaps_of_the_right_size") {
        return;
    }
    let (s, r) = pair();
    let rx = Receiver::start(&r, "hb0", true);
    let to = "10.77.0.2:694".to_owned();
    // Seq 1 before the loss starts, so the count starts from a known first sequence number.
    send_from(
        &s,
        "10.77.0.1:0",
        vec![(hb_msg(9, 1, 1, 64), to.clone())],
        Duration::ZERO,
    );
    const LAST: u64 = 2000;
    let failed = {
        let _rule = IptablesRule::add(
            &s,
            vec![
                "OUTPUT",
                "-p",
                "udp",
                "--dport",
                "694",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.2",
                "-j",
                "DROP",
            ],
        );
        let msgs = (2..=LAST)
            .map(|seq| (hb_msg(9, 1, seq, 64), to.clone()))
            .collect();
        send_from(&s, "10.77.0.1:0", msgs, Duration::from_micros(200))
    };
    // A restart of the sender (new generation) restarts the tracking without a gap.
    let restart = (1..=5)
        .map(|seq| (hb_msg(9, 2, seq, 64), to.clone()))
        .collect();
    let before_restart = send_from(&s, "10.77.0.1:0", restart, Duration::from_millis(1));
    assert_eq!(before_restart, 0);
    let out = rx.finish();

    let gen1: Vec<&RingEvent> = out
        .events
        .iter()
        .filter(|e| u64::from_be_bytes(e.data[16..24].try_into().unwrap()) == 1)
        .collect();
    let delivered = gen1.len() as u64;
    let last_delivered = gen1.iter().map(|e| seq_of(e)).max().unwrap();
    let peer = out.peers.iter().find(|p| p.key.sender == 9).unwrap();
    assert_eq!(
        delivered + failed as u64,
        LAST,
        "every datagram not dropped by iptables is delivered"
    );
    let expected_gaps = last_delivered - delivered;
    assert_eq!(
        peer.stats.seq_gaps, expected_gaps,
        "gaps = last seq delivered - packets delivered"
    );
    let ratio = peer.stats.seq_gaps as f64 / LAST as f64;
    assert!(
        (0.14..=0.26).contains(&ratio),
        "about 20% lost: {} of {LAST}",
        peer.stats.seq_gaps
    );
    assert_eq!(peer.stats.generation, 2);
    assert_eq!(peer.stats.last_seq, 5);
    assert_eq!(peer.stats.packets, delivered + 5);
    println!(
        "loss test: {failed} dropped by iptables, {} gaps counted, last delivered seq {last_delivered}",
        peer.stats.seq_gaps
    );
}

#[test]
fn loaders_in_two_namespaces_each_see_only_their_own_traffic() {
    if !require_root("loaders_in_two_namespaces_each_see_only_their_own_traffic") {
        return;
    }
    let (s1, r1) = pair();
    let (s2, r2) = pair();
    let rx1 = Receiver::start(&r1, "hb0", true);
    let rx2 = Receiver::start(&r2, "hb0", true);
    let to = "10.77.0.2:694";
    let t1 = std::thread::spawn(move || {
        let msgs = (1..=200)
            .map(|q| (hb_msg(11, 1, q, 64), to.to_owned()))
            .collect();
        let failed = send_from(&s1, "10.77.0.1:0", msgs, Duration::from_millis(1));
        (s1, failed)
    });
    let msgs = (1..=150)
        .map(|q| (hb_msg(22, 1, q, 64), to.to_owned()))
        .collect();
    assert_eq!(
        send_from(&s2, "10.77.0.1:0", msgs, Duration::from_millis(1)),
        0
    );
    let (_s1, failed1) = t1.join().unwrap();
    assert_eq!(failed1, 0);
    let out1 = rx1.finish();
    let out2 = rx2.finish();
    assert_eq!(out1.events.len(), 200);
    assert!(out1.events.iter().all(|e| e.sender == 11));
    assert_eq!(out2.events.len(), 150);
    assert!(out2.events.iter().all(|e| e.sender == 22));
    assert_eq!(out1.peers.len(), 1);
    assert_eq!(out1.peers[0].stats.packets, 200);
    assert_eq!(out2.peers.len(), 1);
    assert_eq!(out2.peers[0].stats.packets, 150);
    assert_eq!(out1.counter("delivered"), 200);
    assert_eq!(out2.counter("delivered"), 150);
}

/// Kills and reaps the holder on drop.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xdp_shown(ns: &Netns) -> bool {
    let out = ns.ip(&["-d", "link", "show", "dev", "hb0"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.contains("prog/xdp") || text.contains(" xdp")
}

#[test]
fn nothing_stays_attached_after_the_holder_is_killed() {
    if !require_root("nothing_stays_attached_after_the_holder_is_killed") {
        return;
    }
    let (_s, r) = pair();
    assert!(!xdp_shown(&r));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            r.name(),
            env!("CARGO_BIN_EXE_xdp_hold"),
            "hb0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = Holder(child);
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("attached"), "holder said {line:?}");
    assert!(xdp_shown(&r), "attached while the holder lives");
    // SIGKILL: no destructor runs; the kernel releases the bpf_link with the process's fds.
    run("kill", &["-KILL", &holder.0.id().to_string()]).unwrap();
    holder.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_shown(&r) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = r.ip(&["-d", "link", "show", "dev", "hb0"]).unwrap();
    assert!(
        !xdp_shown(&r),
        "XDP still attached after SIGKILL: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn xdp_policy_off_auto_on() {
    if !require_root("xdp_policy_off_auto_on") {
        return;
    }
    let (_s, r) = pair();
    r.run_in(|| {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(
            start_xdp(XdpMode::Off, &s(&["hb0"]), PORT, true)
                .unwrap()
                .is_none()
        );
        assert!(
            start_xdp(XdpMode::Auto, &s(&["nosuch0"]), PORT, true)
                .unwrap()
                .is_none(),
            "auto falls back to the socket path"
        );
        assert!(matches!(
            start_xdp(XdpMode::On, &s(&["nosuch0"]), PORT, true),
            Err(XdpError::Attach { .. })
        ));
        assert!(matches!(
            start_xdp(XdpMode::On, &[], PORT, true),
            Err(XdpError::NoInterface)
        ));
        let auto = start_xdp(XdpMode::Auto, &s(&["hb0", "nosuch0", "hb0"]), PORT, true)
            .unwrap()
            .expect("auto attaches where it can");
        assert_eq!(
            auto.attached(),
            vec![("hb0".to_owned(), AttachMode::Native)]
        );
        drop(auto);
        let on = start_xdp(XdpMode::On, &s(&["hb0"]), PORT, true)
            .unwrap()
            .expect("on attaches");
        assert_eq!(on.attached(), vec![("hb0".to_owned(), AttachMode::Native)]);
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn with_batch_on_only_heartbeats_that_change_their_senders_state_wake_the_reader() {
    if !require_root(
        "with_batch_on_only_heartbeats_that_change_their_senders_state_wake_the_reader",
    ) {
        return;
    }
    let (s, r) = pair();
    let rx = Receiver::start_with(&r, "hb0", true, false, true);
    // 10 heartbeats in one state, 5 in another (status byte), then 5 with one echo more: the
    // echo count is state, the echoes' contents (send times) are not.
    let mut msgs = Vec::new();
    for seq in 1..=20u64 {
        let mut m = hb_msg(7, 1, seq, 68);
        m[wire::HEADER_LEN] = if seq <= 10 { 1 } else { 2 };
        if seq > 15 {
            m[wire::HEADER_LEN + 1] = 1;
            m[wire::HEADER_LEN + 8..wire::HEADER_LEN + 16].copy_from_slice(&seq.to_be_bytes());
        }
        msgs.push((m, "10.77.0.2:694".to_owned()));
    }
    assert_eq!(
        send_from(&s, "10.77.0.1:40000", msgs, Duration::from_millis(1)),
        0
    );
    let out = rx.finish();
    let got: Vec<(u64, bool)> = out
        .events
        .iter()
        .filter(|e| e.kind == EVENT_PACKET && e.sender == 7)
        .map(|e| (seq_of(e), hb_daemon::xdp::woke(e)))
        .collect();
    assert_eq!(got.len(), 20, "every heartbeat delivered: {got:?}");
    let woke: Vec<u64> = got.iter().filter(|(_, w)| *w).map(|(s, _)| *s).collect();
    assert_eq!(woke, vec![1, 11, 16], "a wake-up for each new state only");
    assert_eq!(out.counter("batched"), 17);
}
