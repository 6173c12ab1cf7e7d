//! A fake hbd for the integration tests: the control socket served by `control::serve` (or the
//! Prometheus endpoint by `prometheus::serve`), and a fake main loop that answers from a real
//! `Metrics` and a canned `StatusReport`.

#![allow(dead_code)]
// Test helpers: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use hb_daemon::{
    control::{
        self, ControlCall, GroupStatus, HoldingState, LinkState, LinkStatus, NodeState,
        NodeStatusReport, Request, Response, StatusReport,
    },
    metrics::Metrics,
};
use hb_proto::{Timestamp, node::TakeoverTimes};
use tokio::sync::{mpsc, oneshot};

pub const MS: u64 = 1_000_000;

/// The status the fake loop reports.
pub fn status_report() -> StatusReport {
    StatusReport {
        local_node: "node1".into(),
        generation: 7 << 20,
        uptime_secs: 3723,
        ping: None,
        nodes: vec![
            NodeStatusReport {
                name: "node1".into(),
                ping: None,
                id: hb_proto::config::node_id("node1"),
                state: NodeState::Up,
                links: vec![],
            },
            NodeStatusReport {
                name: "node2".into(),
                ping: None,
                id: hb_proto::config::node_id("node2"),
                state: NodeState::Up,
                links: vec![
                    LinkStatus {
                        iface: "eth1".into(),
                        state: LinkState::Up,
                        last_heartbeat_ms: Some(12),
                    },
                    LinkStatus {
                        iface: "eth2".into(),
                        state: LinkState::Dead,
                        last_heartbeat_ms: None,
                    },
                ],
            },
        ],
        groups: vec![
            GroupStatus {
                index: 0,
                description: "IPaddr::10.0.0.100/24/eth1 httpd".into(),
                preferred_node: "node1".into(),
                owner: Some("node1".into()),
                local: HoldingState::Held,
            },
            GroupStatus {
                index: 1,
                description: "IPaddr::10.0.0.101".into(),
                preferred_node: "node2".into(),
                owner: None,
                local: HoldingState::None,
            },
        ],
        haresources_mismatch: vec![],
        fence_pending: vec![],
        arbiter: None,
        delivery: vec![],
    }
}

/// Metrics with known content: 1000 heartbeats 10 ms apart on node2/eth1 (delivered 40 us
/// after arrival), 5 lost, one 250 us RTT, a rejected packet, a send error, a takeover.
pub fn metrics() -> Metrics {
    let mut m = Metrics::new("node1", &["node2"], &["eth1", "eth2"], Timestamp(0))
        .with_ping_links(&[("10.0.0.254", "10.0.0.254")]);
    m.set_ping_state("10.0.0.254", "10.0.0.254", LinkState::Up);
    m.record_ping_sent(0, true);
    m.record_ping_sent(0, false);
    m.record_ping_reply(0, std::time::Duration::from_micros(80));
    m.set_peer_state("node2", NodeState::Up);
    m.set_link_state("node2", "eth1", LinkState::Up);
    for i in 0..1000u64 {
        let arrival = Timestamp(i * 10 * MS);
        m.record_heartbeat(
            "node2",
            "eth1",
            arrival,
            Some(Timestamp(i * 10 * MS + 40_000)),
            0,
        );
    }
    m.record_heartbeat("node2", "eth1", Timestamp(10_040 * MS), None, 5);
    m.record_rtt("node2", "eth1", std::time::Duration::from_micros(250));
    m.record_late("node2", std::time::Duration::from_millis(40));
    m.record_reject("bad_auth");
    m.record_socket_error("send_eperm");
    m.record_takeover(
        "node2",
        TakeoverTimes {
            last_heard: Timestamp(100 * MS),
            declared_dead: Timestamp(150 * MS),
            resources_started: Some(Timestamp(152 * MS)),
            first_announce: Some(Timestamp(151 * MS)),
            fenced: None,
        },
    );
    m
}

/// The fake loop's answer to one request.
pub fn answer(m: &mut Metrics, request: &Request) -> Response {
    match request {
        Request::Status => Response::Status(status_report()),
        Request::Stats => Response::Stats(Box::new(m.snapshot_at(Timestamp(20_000 * MS)))),
        Request::ResetStats => {
            m.reset_at(Timestamp(20_000 * MS));
            Response::Ack {
                message: "statistics reset".into(),
            }
        }
        Request::Standby { scope } => Response::Ack {
            message: format!("standby {scope} requested"),
        },
        Request::Takeover { scope } => Response::Ack {
            message: format!("takeover {scope} requested"),
        },
        Request::Shutdown => Response::Ack {
            message: "shutting down".into(),
        },
        Request::Reload => Response::Ack {
            message: "configuration reloaded: no change".into(),
        },
        Request::Parameter { name } => match name.as_str() {
            "keepalive" => Response::Ack {
                message: "1".into(),
            },
            _ => Response::Error {
                message: format!("{name} is not set in ha.cf"),
            },
        },
    }
}

/// Runs the fake loop: answers every call until the channel closes; after a Shutdown it
/// refuses new calls.
pub async fn fake_loop(mut rx: mpsc::Receiver<ControlCall>, seen: Arc<Mutex<Vec<Request>>>) {
    let mut m = metrics();
    while let Some(call) = rx.recv().await {
        seen.lock().unwrap().push(call.request.clone());
        let response = answer(&mut m, &call.request);
        let _ = call.reply.send(response);
        if call.request == Request::Shutdown {
            // Like hbd: stop taking requests (serve() then returns and the socket closes),
            // but keep the runtime alive so the answer is written.
            rx.close();
            std::future::pending::<()>().await;
        }
    }
}

/// A fake hbd on a thread of its own: a server (the control socket in a temporary run
/// directory, or the Prometheus endpoint) in front of [`fake_loop`].
pub struct FakeHbd {
    pub dir: tempfile::TempDir,
    pub seen: Arc<Mutex<Vec<Request>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHbd {
    /// The control socket (`control::serve`) in the run directory.
    pub fn start() -> Self {
        Self::serving(|dir, calls| {
            let listener = control::bind(&dir.join(control::SOCKET_NAME)).unwrap();
            tokio::spawn(control::serve(listener, calls));
        })
        .0
    }

    /// The Prometheus endpoint (`prometheus::serve`) on a free loopback port, and its address.
    pub fn start_metrics() -> (Self, std::net::SocketAddr) {
        Self::serving(|_, calls| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tokio::spawn(hb_daemon::prometheus::serve(listener, calls));
            addr
        })
    }

    /// Runs `server(run dir, calls)` inside a current-thread runtime on a new thread, then the
    /// fake loop on the calls until the fake is dropped; returns once the server is set up.
    fn serving<R: Send + 'static>(
        server: impl FnOnce(&std::path::Path, mpsc::Sender<ControlCall>) -> R + Send + 'static,
    ) -> (Self, R) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let seen2 = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (tx, rx) = mpsc::channel(16);
                ready_tx.send(server(&path, tx)).unwrap();
                tokio::select! {
                    () = fake_loop(rx, seen2) => {}
                    _ = stopped => {}
                }
            });
        });
        let r = ready_rx.recv().unwrap();
        let fake = Self {
            dir,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        };
        (fake, r)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(control::SOCKET_NAME)
    }
}

impl Drop for FakeHbd {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
