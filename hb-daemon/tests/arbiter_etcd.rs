//! The arbiter's etcd driver against a real etcd (Debian's etcd-server, started by the test on
//! loopback with a private data directory): lease grant and keepalive, the key transaction
//! (created under our lease, seen as taken from another lease, released only by its holder),
//! the renewal's check of a held key (there, replaced, gone), and failures once etcd is gone. Without an `etcd` binary the test fails under CI and is
//! skipped (saying so) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hb_daemon::arbiter::{ArbiterLink, spawn};
use hb_proto::{
    Timestamp,
    arbiter::{ArbiterInput, ArbiterRequest, KeyOutcome},
    config::{Arbiter, Setting},
};

struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_etcd() -> Option<Etcd> {
    let Ok(etcd) = which::which("etcd") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd not installed (the bootstrap installs etcd-server)"
        );
        eprintln!("SKIPPED: no etcd binary (install etcd-server; cargo xtask bootstrap does)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let child = Command::new(etcd)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Etcd {
        child,
        _dir: dir,
        url,
    })
}

fn arbiter(url: &str) -> Arbiter {
    Arbiter {
        endpoints: vec![url.to_owned()],
        prefix: Setting::set("/hbtest".into()),
        ttl: Setting::set(Duration::from_secs(2)),
        ca: None,
        cert: None,
        key: None,
    }
}

fn ask(link: &mut ArbiterLink, rt: &tokio::runtime::Runtime, req: ArbiterRequest) -> ArbiterInput {
    assert!(link.send(req).is_none());
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), link.rx.recv()).await })
        .expect("an answer within 5 s")
        .expect("the etcd thread answers")
}

fn now() -> Timestamp {
    Timestamp::from_nanos(1)
}

/// Grants a lease, retrying while etcd starts up.
fn grant(link: &mut ArbiterLink, rt: &tokio::runtime::Runtime) -> i64 {
    let started = Instant::now();
    loop {
        match ask(
            link,
            rt,
            ArbiterRequest::Grant {
                ttl: Duration::from_secs(2),
                at: now(),
            },
        ) {
            ArbiterInput::Granted { lease, ttl, .. } => {
                assert!(ttl >= Duration::from_secs(2), "{ttl:?}");
                return lease;
            }
            ArbiterInput::LeaseFailed { error, .. } => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "etcd never answered: {error}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn lease_keepalive_and_key_transactions_against_a_real_etcd() {
    let Some(mut etcd) = start_etcd() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = arbiter(&etcd.url);
    let mut n1 = spawn(&a, "node1", 1).unwrap();
    let mut n2 = spawn(&a, "node2", 1).unwrap();
    let l1 = grant(&mut n1, &rt);
    let l2 = grant(&mut n2, &rt);
    assert_ne!(l1, l2);

    match ask(
        &mut n1,
        &rt,
        ArbiterRequest::KeepAlive {
            lease: l1,
            at: now(),
        },
    ) {
        ArbiterInput::Renewed { lease, ttl, .. } => {
            assert_eq!(lease, l1);
            assert!(ttl >= Duration::from_secs(1), "{ttl:?}");
        }
        other => panic!("{other:?}"),
    }
    let epoch = match ask(
        &mut n1,
        &rt,
        ArbiterRequest::Acquire {
            group: 0,
            lease: l1,
            seq: 1,
        },
    ) {
        ArbiterInput::Key {
            group: 0,
            seq: 1,
            outcome: KeyOutcome::Held { epoch },
        } => epoch,
        other => panic!("{other:?}"),
    };
    assert!(epoch > 0);
    // Asking again under the same lease: still ours, same epoch.
    assert_eq!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::Acquire {
                group: 0,
                lease: l1,
                seq: 2
            }
        ),
        ArbiterInput::Key {
            group: 0,
            seq: 2,
            outcome: KeyOutcome::Held { epoch }
        }
    );
    // The other node sees it taken, by node1, with the epoch.
    assert_eq!(
        ask(
            &mut n2,
            &rt,
            ArbiterRequest::Acquire {
                group: 0,
                lease: l2,
                seq: 1
            }
        ),
        ArbiterInput::Key {
            group: 0,
            seq: 1,
            outcome: KeyOutcome::Taken {
                holder: "node1".into(),
                epoch
            }
        }
    );
    // node2's release does not delete node1's key.
    assert!(matches!(
        ask(
            &mut n2,
            &rt,
            ArbiterRequest::Release {
                group: 0,
                lease: l2,
                seq: 2
            }
        ),
        ArbiterInput::Key {
            outcome: KeyOutcome::Released,
            ..
        }
    ));
    assert!(matches!(
        ask(
            &mut n2,
            &rt,
            ArbiterRequest::Acquire {
                group: 0,
                lease: l2,
                seq: 3
            }
        ),
        ArbiterInput::Key {
            outcome: KeyOutcome::Taken { .. },
            ..
        }
    ));
    // node1 gives it back; node2 gets it with a newer epoch.
    assert!(matches!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::Release {
                group: 0,
                lease: l1,
                seq: 3
            }
        ),
        ArbiterInput::Key {
            outcome: KeyOutcome::Released,
            ..
        }
    ));
    let epoch2 = match ask(
        &mut n2,
        &rt,
        ArbiterRequest::Acquire {
            group: 0,
            lease: l2,
            seq: 4,
        },
    ) {
        ArbiterInput::Key {
            outcome: KeyOutcome::Held { epoch },
            ..
        } => epoch,
        other => panic!("{other:?}"),
    };
    assert!(epoch2 > epoch);
    // The renewal's check: node2's key is there with its epoch under its lease; node1's check
    // of the epoch it held finds it replaced, by node2's.
    assert_eq!(
        ask(
            &mut n2,
            &rt,
            ArbiterRequest::Verify {
                group: 0,
                lease: l2,
                epoch: epoch2,
                seq: 5
            }
        ),
        ArbiterInput::Key {
            group: 0,
            seq: 5,
            outcome: KeyOutcome::Held { epoch: epoch2 }
        }
    );
    assert_eq!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::Verify {
                group: 0,
                lease: l1,
                epoch,
                seq: 4
            }
        ),
        ArbiterInput::Key {
            group: 0,
            seq: 4,
            outcome: KeyOutcome::Lost {
                now: Some(("node2".into(), epoch2))
            }
        }
    );
    // node2's lease expires (no keepalive for its TTL): the key goes with it, node1 gets it.
    std::thread::sleep(Duration::from_secs(4));
    match ask(
        &mut n2,
        &rt,
        ArbiterRequest::KeepAlive {
            lease: l2,
            at: now(),
        },
    ) {
        ArbiterInput::Renewed { ttl, .. } => {
            assert_eq!(ttl, Duration::ZERO, "lease should be gone")
        }
        other => panic!("{other:?}"),
    }
    // Its check now finds no key at all.
    assert_eq!(
        ask(
            &mut n2,
            &rt,
            ArbiterRequest::Verify {
                group: 0,
                lease: l2,
                epoch: epoch2,
                seq: 6
            }
        ),
        ArbiterInput::Key {
            group: 0,
            seq: 6,
            outcome: KeyOutcome::Lost { now: None }
        }
    );
    let l1b = grant(&mut n1, &rt);
    assert!(matches!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::Acquire {
                group: 0,
                lease: l1b,
                seq: 5
            }
        ),
        ArbiterInput::Key {
            outcome: KeyOutcome::Held { .. },
            ..
        }
    ));

    // etcd gone: every request is answered as failed within the renewal interval (500 ms).
    let _ = etcd.child.kill();
    let _ = etcd.child.wait();
    let t = Instant::now();
    assert!(matches!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::KeepAlive {
                lease: l1b,
                at: now()
            }
        ),
        ArbiterInput::LeaseFailed { .. }
    ));
    assert!(matches!(
        ask(
            &mut n1,
            &rt,
            ArbiterRequest::Acquire {
                group: 0,
                lease: l1b,
                seq: 6
            }
        ),
        ArbiterInput::Key {
            outcome: KeyOutcome::Failed { .. },
            ..
        }
    ));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
