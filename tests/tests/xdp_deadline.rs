//! The kernel-side deadline (issue 10): hb's XDP program re-arms a per-peer `bpf_timer` at every
//! heartbeat it delivers and, when the daemon's deadline passes without one, posts an
//! `EVENT_DEADLINE` record to the ring buffer. It never declares a peer alive: a deadline record
//! only says that time has passed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::UdpSocket,
    sync::mpsc,
    time::{Duration, Instant},
};

use hb_common::{EVENT_DEADLINE, EVENT_PACKET, RingEvent, wire};
use hb_daemon::xdp::XdpHandle;
use hb_tests::{Netns, require_root, veth_pair};

const PORT: u16 = 694;
const SENDER: u32 = 4;
const DEADLINE: Duration = Duration::from_millis(60);

fn hb_msg(seq: u64) -> Vec<u8> {
    let mut msg = vec![0u8; 64];
    msg[..4].copy_from_slice(&wire::MAGIC);
    msg[wire::OFF_VERSION] = wire::VERSION;
    msg[wire::OFF_SENDER..wire::OFF_SENDER + 4].copy_from_slice(&SENDER.to_be_bytes());
    msg[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&64u16.to_be_bytes());
    msg[wire::OFF_GENERATION..wire::OFF_GENERATION + 8].copy_from_slice(&1u64.to_be_bytes());
    msg[wire::OFF_SEQ..wire::OFF_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
    msg
}

fn send(ns: &Netns, seqs: std::ops::RangeInclusive<u64>) {
    ns.run_in(move || {
        let sock = UdpSocket::bind("10.77.0.1:0").unwrap();
        for seq in seqs {
            sock.send_to(&hb_msg(seq), "10.77.0.2:694").unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn a_deadline_record_follows_the_last_heartbeat_by_the_configured_deadline() {
    if !require_root("a_deadline_record_follows_the_last_heartbeat_by_the_configured_deadline") {
        return;
    }
    let s = Netns::new("s").unwrap();
    let r = Netns::new("r").unwrap();
    veth_pair(&s, "10.77.0.1/24", &r, "10.77.0.2/24", "hb0").unwrap();

    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let rx = r
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut handle = XdpHandle::load(PORT, true).unwrap();
                handle.attach("hb0").unwrap();
                let ifindex = nix::net::if_::if_nametoindex("hb0").unwrap();
                handle.set_deadline(SENDER, ifindex, DEADLINE).unwrap();
                let mut reader = handle.ring_reader().unwrap();
                ready_tx.send(ifindex).unwrap();
                let mut events = Vec::new();
                let mut stop_at: Option<Instant> = None;
                loop {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(10), reader.readable()).await;
                    reader.drain(&mut events);
                    if stop_at.is_none() && stop_rx.try_recv().is_ok() {
                        stop_at = Some(Instant::now() + DEADLINE * 5);
                    }
                    if stop_at.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                }
                reader.drain(&mut events);
                (
                    events,
                    handle.counter(hb_common::counter::DEADLINES).unwrap(),
                )
            })
        })
        .unwrap();
    let ifindex = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // A first burst, a silence well past the deadline, a second burst, then silence.
    send(&s, 1..=20);
    std::thread::sleep(DEADLINE * 4);
    send(&s, 21..=30);
    stop_tx.send(()).unwrap();
    let (events, posted): (Vec<RingEvent>, u64) = rx.join().unwrap().unwrap();

    let deadlines: Vec<&RingEvent> = events.iter().filter(|e| e.kind == EVENT_DEADLINE).collect();
    let packets: Vec<&RingEvent> = events.iter().filter(|e| e.kind == EVENT_PACKET).collect();
    assert_eq!(packets.len(), 30, "every heartbeat delivered");
    assert_eq!(
        deadlines.len(),
        2,
        "one deadline record per silence: {deadlines:?}"
    );
    assert_eq!(posted, 2);
    let last_of_burst = [packets[19].ktime_ns, packets[29].ktime_ns];
    for (d, last) in deadlines.iter().zip(last_of_burst) {
        assert_eq!(d.sender, SENDER);
        assert_eq!(d.ifindex, ifindex);
        assert_eq!(d.len, 0);
        let after = d.ktime_ns - last;
        assert!(
            after >= DEADLINE.as_nanos() as u64,
            "not before the deadline: {after} ns after the last heartbeat"
        );
        // Loose bound: the record belongs to this silence, not to a later one.
        assert!(
            after < (DEADLINE * 3).as_nanos() as u64,
            "record {after} ns after the last heartbeat"
        );
        println!(
            "deadline record {:.3} ms after the last heartbeat (deadline {} ms)",
            after as f64 / 1e6,
            DEADLINE.as_millis()
        );
    }
    // No deadline while heartbeats kept coming: each record follows the end of a burst.
    assert!(deadlines[0].ktime_ns < packets[20].ktime_ns);
    assert!(deadlines[1].ktime_ns > packets[29].ktime_ns);
}
