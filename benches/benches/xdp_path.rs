//! XDP ring buffer vs socket delivery, side by side in one run (issue 5's figures).
//!
//! Two network namespaces joined by a veth; the sender sends hb heartbeats at 100 Hz, then (in fresh
//! namespaces) at 1 kHz. On the
//! receiver hb's XDP program is attached with `consume` off, so every heartbeat reaches both
//! paths:
//! - XDP: a tokio `RingReader`; delay = CLOCK_MONOTONIC when the reader has the record minus the
//!   record's `bpf_ktime_get_ns()`.
//! - socket: a plain UDP socket with `SO_TIMESTAMPNS` (CLOCK_REALTIME, converted to
//!   CLOCK_MONOTONIC with the measured REALTIME-MONOTONIC offset); delay = CLOCK_MONOTONIC after
//!   `recvmsg` returns minus the kernel receive timestamp.
//!
//! CPU per heartbeat: `getrusage(RUSAGE_THREAD)` (user + system) of each reading thread divided
//! by the heartbeats it read. Each run is cut into rounds (`Params::round` heartbeats); p50/p99/p99.9 are
//! computed per round and the median over rounds is printed.
//!
//! Run: `cargo bench -p hb-benches --bench xdp_path` as root (skips with a message otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::IoSliceMut,
    net::UdpSocket,
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hb_common::wire;
use hb_daemon::xdp::XdpHandle;
use hb_tests::{Netns, monotonic_ns, veth_pair};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};

const PORT: u16 = 694;
/// Port of the blocking socket reader (the sender sends each heartbeat to both ports).
const PORT_BLOCKING: u16 = 695;
/// One run's shape: heartbeats per second, heartbeats ignored at the start (caches, neighbour
/// entries, page faults), heartbeats per round, rounds (`warmup + rounds * round` heartbeats,
/// `/ rate_hz` seconds in all).
#[derive(Debug, Clone, Copy)]
struct Params {
    rate_hz: u64,
    warmup: u64,
    round: u64,
    rounds: u64,
}

/// The rates the issue asks for: 100 Hz (hb's default-ish keepalive of 10 ms) and 1 kHz.
const RUNS: [Params; 2] = [
    Params {
        rate_hz: 100,
        warmup: 50,
        round: 500,
        rounds: 5,
    },
    Params {
        rate_hz: 1000,
        warmup: 500,
        round: 2000,
        rounds: 5,
    },
];

fn hb_msg(seq: u64) -> Vec<u8> {
    let len = 96usize;
    let mut msg = vec![0u8; len];
    msg[..4].copy_from_slice(&wire::MAGIC);
    msg[wire::OFF_VERSION] = wire::VERSION;
    msg[wire::OFF_SENDER..wire::OFF_SENDER + 4].copy_from_slice(&1u32.to_be_bytes());
    msg[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&(len as u16).to_be_bytes());
    msg[wire::OFF_GENERATION..wire::OFF_GENERATION + 8].copy_from_slice(&1u64.to_be_bytes());
    msg[wire::OFF_SEQ..wire::OFF_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
    msg
}

fn seq_of(data: &[u8]) -> u64 {
    u64::from_be_bytes(data[wire::OFF_SEQ..wire::OFF_SEQ + 8].try_into().unwrap())
}

fn clock_ns(id: nix::time::ClockId) -> u64 {
    let ts = nix::time::clock_gettime(id).unwrap();
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of many bracketed readings.
fn realtime_offset_ns() -> i128 {
    let mut best: Option<(u64, i128)> = None;
    for _ in 0..1000 {
        let m0 = clock_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        let r = clock_ns(nix::time::ClockId::CLOCK_REALTIME);
        let m1 = clock_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        let width = m1 - m0;
        let off = r as i128 - (m0 as i128 + m1 as i128) / 2;
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, off));
        }
    }
    best.unwrap().1
}

/// User + system CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn enable_timestamps(sock: &UdpSocket) {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).unwrap();
}

/// One `recvmsg`: `(seq, delay ns)` from the datagram's `SO_TIMESTAMPNS` stamp, `None` for a
/// datagram without a stamp or too short.
fn recv_stamped(fd: i32, buf: &mut [u8], offset: i128) -> nix::Result<Option<(u64, u64)>> {
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let now = monotonic_ns();
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let real = ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128;
                stamp = Some(real - offset);
            }
        }
    }
    let len = msg.bytes;
    Ok(match stamp {
        Some(mono) if len >= wire::HEADER_LEN => {
            Some((seq_of(&buf[..len]), (now as i128 - mono).max(0) as u64))
        }
        _ => None,
    })
}

/// What one reader measured: (seq, delay ns) and CPU ns over `count` heartbeats.
struct Measured {
    samples: Vec<(u64, u64)>,
    cpu_ns: u64,
    count: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Medians over rounds of p50, p99, p99.9 (ns), and per-round values.
fn summarize(m: &Measured, p: Params) -> ([u64; 3], Vec<[u64; 3]>) {
    let mut rounds = Vec::new();
    for r in 0..p.rounds {
        let lo = p.warmup + r * p.round;
        let hi = lo + p.round;
        let mut d: Vec<u64> = m
            .samples
            .iter()
            .filter(|(s, _)| *s > lo && *s <= hi)
            .map(|(_, d)| *d)
            .collect();
        if d.is_empty() {
            continue;
        }
        d.sort_unstable();
        rounds.push([
            percentile(&d, 0.5),
            percentile(&d, 0.99),
            percentile(&d, 0.999),
        ]);
    }
    let med = [0, 1, 2].map(|i| median(rounds.iter().map(|r| r[i]).collect()));
    (med, rounds)
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED xdp_path benchmark: needs root (BPF, network namespaces)");
        return;
    }
    for p in RUNS {
        run(p);
        println!();
    }
}

/// One run at `p.rate_hz`: fresh namespaces, the three readers, the sender; prints a table.
fn run(p: Params) {
    let total = p.warmup + p.rounds * p.round;
    let s = Netns::new("bs").unwrap();
    let r = Netns::new("br").unwrap();
    veth_pair(&s, "10.88.0.1/24", &r, "10.88.0.2/24", "hb0").unwrap();
    let offset = realtime_offset_ns();

    // XDP reader: its own thread and current-thread tokio runtime, like hbd's reader.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (xstop_tx, xstop_rx) = tokio::sync::oneshot::channel::<()>();
    let xdp = r
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut handle = XdpHandle::load(PORT, false).expect("load XDP");
                let mode = handle.attach("hb0").expect("attach");
                let mut reader = handle.ring_reader().expect("ring");
                ready_tx.send(mode).unwrap();
                let mut events = Vec::new();
                let mut samples = Vec::with_capacity(total as usize);
                let mut stop = xstop_rx;
                let cpu0 = thread_cpu_ns();
                loop {
                    tokio::select! {
                        r = reader.readable() => r.expect("ring readable"),
                        _ = &mut stop => break,
                    }
                    events.clear();
                    reader.drain(&mut events);
                    let now = monotonic_ns();
                    for ev in &events {
                        samples.push((seq_of(&ev.data), now.saturating_sub(ev.ktime_ns)));
                    }
                }
                let cpu_ns = thread_cpu_ns() - cpu0;
                let counters = handle.counters().unwrap();
                (
                    Measured {
                        count: samples.len() as u64,
                        samples,
                        cpu_ns,
                    },
                    counters,
                )
            })
        })
        .unwrap();
    let mode = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // Socket reader as hbd would run it: tokio, readable() then recvmsg until EAGAIN.
    let (tready_tx, tready_rx) = std::sync::mpsc::channel();
    let (tstop_tx, tstop_rx) = tokio::sync::oneshot::channel::<()>();
    let tokio_sock = r
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            rt.block_on(async move {
                let std_sock = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
                enable_timestamps(&std_sock);
                std_sock.set_nonblocking(true).unwrap();
                let sock = tokio::net::UdpSocket::from_std(std_sock).unwrap();
                tready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                let mut samples = Vec::with_capacity(total as usize);
                let mut stop = tstop_rx;
                let cpu0 = thread_cpu_ns();
                loop {
                    tokio::select! {
                        r = sock.readable() => r.expect("socket readable"),
                        _ = &mut stop => break,
                    }
                    loop {
                        match sock.try_io(tokio::io::Interest::READABLE, || {
                            recv_stamped(sock.as_raw_fd(), &mut buf, offset)
                                .map_err(std::io::Error::from)
                        }) {
                            Ok(Some(sample)) => samples.push(sample),
                            Ok(None) => {}
                            Err(_) => break, // WouldBlock: drained
                        }
                    }
                }
                let cpu_ns = thread_cpu_ns() - cpu0;
                Measured {
                    count: samples.len() as u64,
                    samples,
                    cpu_ns,
                }
            })
        })
        .unwrap();
    tready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // Blocking recvmsg reader (lower bound for a socket path), on its own port: the sender
    // sends every heartbeat to both ports.
    let (sready_tx, sready_rx) = std::sync::mpsc::channel();
    let stop_s = Arc::new(AtomicBool::new(false));
    let stop_b = stop_s.clone();
    let sock_reader = r
        .run_in(move || {
            let sock = UdpSocket::bind(("0.0.0.0", PORT_BLOCKING)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            enable_timestamps(&sock);
            sready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let mut samples = Vec::with_capacity(total as usize);
            let cpu0 = thread_cpu_ns();
            while !stop_b.load(Ordering::Relaxed) {
                if let Ok(Some(sample)) = recv_stamped(sock.as_raw_fd(), &mut buf, offset) {
                    samples.push(sample);
                }
            }
            let cpu_ns = thread_cpu_ns() - cpu0;
            Measured {
                count: samples.len() as u64,
                samples,
                cpu_ns,
            }
        })
        .unwrap();
    sready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // Sender: `p.rate_hz`, paced against absolute deadlines.
    let sender = s
        .run_in(move || {
            let sock = UdpSocket::bind("10.88.0.1:0").unwrap();
            sock.send_to(b"warm-up", "10.88.0.2:9").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let start = Instant::now();
            let period = Duration::from_nanos(1_000_000_000 / p.rate_hz);
            for seq in 1..=total {
                let due = start + period * (seq as u32);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let msg = hb_msg(seq);
                sock.send_to(&msg, "10.88.0.2:694").unwrap();
                sock.send_to(&msg, ("10.88.0.2", PORT_BLOCKING)).unwrap();
            }
        })
        .unwrap();
    sender.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = xstop_tx.send(());
    let _ = tstop_tx.send(());
    stop_s.store(true, Ordering::Relaxed);
    let (xdp_m, counters) = xdp.join().unwrap().unwrap();
    let tsock_m = tokio_sock.join().unwrap().unwrap();
    let bsock_m = sock_reader.join().unwrap().unwrap();

    let (xm, xr) = summarize(&xdp_m, p);
    let (tm, tr) = summarize(&tsock_m, p);
    let (bm, br) = summarize(&bsock_m, p);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "XDP vs socket delivery: veth between two namespaces, XDP {mode} mode (consume off), \
         {} Hz, {} rounds of {} heartbeats after {} warm-up; kernel {}; {} CPUs",
        p.rate_hz,
        p.rounds,
        p.round,
        p.warmup,
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("XDP counters: {counters:?}");
    println!("| path | heartbeats read | p50 us | p99 us | p99.9 us | CPU us/heartbeat |");
    println!("|---|---|---|---|---|---|");
    for (name, m, med) in [
        ("XDP ring buffer (tokio RingReader)", &xdp_m, xm),
        ("UDP socket (tokio readable + recvmsg)", &tsock_m, tm),
        ("UDP socket (blocking recvmsg)", &bsock_m, bm),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2} |",
            m.count,
            us(med[0]),
            us(med[1]),
            us(med[2]),
            m.cpu_ns as f64 / 1000.0 / m.count.max(1) as f64
        );
    }
    for (name, rounds) in [("XDP", xr), ("socket tokio", tr), ("socket blocking", br)] {
        let per: Vec<String> = rounds
            .iter()
            .map(|r| format!("{}/{}/{}", us(r[0]), us(r[1]), us(r[2])))
            .collect();
        println!("{name} per round p50/p99/p99.9 us: {}", per.join("  "));
    }
}
