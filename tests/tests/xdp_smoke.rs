//! The toolchain end to end: the XDP program built by aya-build, attached on a veth in a
//! namespace, delivers one kernel-timestamped ring-buffer event per UDP packet to port 694.

use std::{net::UdpSocket, time::Duration};

use hb_common::{EVENT_PACKET, wire};
use hb_daemon::xdp::{XdpHandle, parse_ring_record};
use hb_tests::{Netns, monotonic_ns, require_root, veth_pair};

const PACKETS: u64 = 50;

fn heartbeat_like(seq: u64) -> Vec<u8> {
    let mut msg = vec![0u8; 64];
    msg[..4].copy_from_slice(&wire::MAGIC);
    msg[wire::OFF_VERSION] = wire::VERSION;
    msg[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&64u16.to_be_bytes());
    msg[wire::OFF_SEQ..wire::OFF_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
    msg
}

#[test]
fn xdp_delivers_one_timestamped_ring_event_per_udp_packet() {
    if !require_root("xdp_delivers_one_timestamped_ring_event_per_udp_packet") {
        return;
    }
    let sender = Netns::new("s").unwrap();
    let receiver = Netns::new("r").unwrap();
    veth_pair(&sender, "10.77.0.1/24", &receiver, "10.77.0.2/24", "hb0").unwrap();
    // Resolve ARP before the measured packets so none waits in the neighbour queue.
    sender
        .run_in(|| {
            let sock = UdpSocket::bind("10.77.0.1:0").expect("bind");
            sock.send_to(b"warm-up", "10.77.0.2:9").expect("send");
            std::thread::sleep(Duration::from_millis(100));
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let rx = receiver
        .run_in(move || {
            let mut handle = XdpHandle::load(694, false).expect("load XDP object");
            handle.attach("hb0").expect("attach XDP to hb0");
            let mut ring = handle.take_ring().expect("ring buffer");
            ready_tx.send(()).expect("signal ready");
            let mut events = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let mut sender_done = false;
            while std::time::Instant::now() < deadline {
                while let Some(item) = ring.next() {
                    events.push(parse_ring_record(&item).expect("whole record"));
                }
                if sender_done && events.len() as u64 >= PACKETS {
                    break;
                }
                if done_rx.try_recv().is_ok() {
                    sender_done = true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // Anything late still counts: drain once more after the sender finished.
            std::thread::sleep(Duration::from_millis(50));
            while let Some(item) = ring.next() {
                events.push(parse_ring_record(&item).expect("whole record"));
            }
            let counters = handle.counters().expect("counters");
            (events, counters)
        })
        .unwrap();
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver attached XDP");

    let before = monotonic_ns();
    let tx = sender
        .run_in(move || {
            let sock = UdpSocket::bind("10.77.0.1:0").expect("bind");
            for seq in 1..=PACKETS {
                sock.send_to(&heartbeat_like(seq), "10.77.0.2:694")
                    .expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    tx.join().unwrap().unwrap();
    done_tx.send(()).unwrap();
    let (events, counters) = rx.join().unwrap().unwrap();
    let after = monotonic_ns();

    assert_eq!(
        events.len() as u64,
        PACKETS,
        "one ring-buffer event per packet; counters {counters:?}"
    );
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.kind, EVENT_PACKET);
        assert_eq!(ev.dst_port, 694);
        assert_eq!(&ev.src_addr[..4], &[10, 77, 0, 1]);
        assert_eq!(ev.len, 64);
        let seq = u64::from_be_bytes(
            ev.data[wire::OFF_SEQ..wire::OFF_SEQ + 8]
                .try_into()
                .unwrap(),
        );
        assert_eq!(seq, i as u64 + 1, "events in order, each packet once");
        assert!(
            ev.ktime_ns >= before && ev.ktime_ns <= after,
            "kernel timestamp {} within the test's CLOCK_MONOTONIC window [{before}, {after}]",
            ev.ktime_ns
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].ktime_ns < w[1].ktime_ns),
        "timestamps increase"
    );
}
