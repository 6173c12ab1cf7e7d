//! The etcd driver of the arbiter gate ([`hb_proto::arbiter`]): carries out the core's
//! [`ArbiterRequest`]s with etcd-client on a thread of its own (its own tokio runtime, started
//! before the heartbeat thread goes real-time) and sends each result back as an
//! [`ArbiterInput`].
//!
//! The heartbeat loop never waits on etcd: it hands requests over with `try_send` on a bounded
//! channel (a full channel is answered at once as a failure, which the core treats like a
//! timeout), and reads results from a channel it polls with the rest of its inputs. Lease
//! requests (grant, keepalive, revoke) and key requests (the transactions) run in two separate
//! tasks, so a slow transaction never delays a renewal; each request is given up after the
//! core's renewal interval and answered as failed. A keepalive stream that failed or timed out
//! is dropped and opened anew, so an answer is never matched to the wrong request. The checks
//! of held keys the core sends with every renewal ([`ArbiterRequest::Verify`]) are key
//! requests: one transaction comparing the key's `create_revision` and lease.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use hb_proto::{
    arbiter::{ArbiterInput, ArbiterRequest, KeyOutcome, renew_interval},
    config::Arbiter,
};
use tokio::sync::mpsc;

/// Requests queued towards etcd before new ones are refused (answered as failed).
const QUEUE: usize = 64;

/// The heartbeat loop's end of the driver.
#[derive(Debug)]
pub struct ArbiterLink {
    tx: Option<mpsc::Sender<ArbiterRequest>>,
    /// Results, in the order etcd answered.
    pub rx: mpsc::UnboundedReceiver<ArbiterInput>,
}

impl ArbiterLink {
    /// Hands `req` to the etcd thread without waiting; `Some(input)` is the failure to give
    /// the core at once when the queue is full or the thread is gone.
    pub fn send(&self, req: ArbiterRequest) -> Option<ArbiterInput> {
        let Some(tx) = &self.tx else {
            return failure(&req, "etcd thread closed");
        };
        match tx.try_send(req) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(r)) => failure(&r, "etcd request queue full"),
            Err(mpsc::error::TrySendError::Closed(r)) => failure(&r, "etcd thread gone"),
        }
    }

    /// No more requests: the thread finishes the queued ones, then closes [`ArbiterLink::rx`].
    pub fn close(&mut self) {
        self.tx = None;
    }
}

/// The failure answer to `req` (`None` for a revoke, which is not answered).
fn failure(req: &ArbiterRequest, error: &str) -> Option<ArbiterInput> {
    req.failed(error)
}

/// Connection settings read once at start.
#[derive(Debug, Clone)]
struct Settings {
    endpoints: Vec<String>,
    tls: Option<TlsOptions>,
    keys: Vec<String>,
    node: String,
    timeout: Duration,
}

/// Reads the TLS files (an error names the file) and starts the etcd thread.
pub fn spawn(arbiter: &Arbiter, node: &str, groups: usize) -> Result<ArbiterLink, String> {
    let tls = if arbiter.tls() {
        let mut t = TlsOptions::new();
        if let Some(ca) = &arbiter.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("arbiter_ca {}: {e}", ca.display()))?;
            t = t.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&arbiter.cert, &arbiter.key) {
            let c =
                std::fs::read(cert).map_err(|e| format!("arbiter_cert {}: {e}", cert.display()))?;
            let k =
                std::fs::read(key).map_err(|e| format!("arbiter_key {}: {e}", key.display()))?;
            t = t.identity(Identity::from_pem(c, k));
        }
        Some(t)
    } else {
        None
    };
    let settings = Settings {
        endpoints: arbiter.endpoints.clone(),
        tls,
        keys: (0..groups).map(|g| arbiter.key_of(g)).collect(),
        node: node.to_owned(),
        timeout: renew_interval(arbiter.ttl.value),
    };
    let (tx, mut req_rx) = mpsc::channel::<ArbiterRequest>(QUEUE);
    let (res_tx, rx) = mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("etcd runtime: {e}"))?;
    std::thread::Builder::new()
        .name("hb-etcd".into())
        .spawn(move || {
            rt.block_on(async move {
                let (lease_tx, lease_rx) = mpsc::unbounded_channel();
                let (kv_tx, kv_rx) = mpsc::unbounded_channel();
                let lease = tokio::spawn(lease_task(settings.clone(), lease_rx, res_tx.clone()));
                let kv = tokio::spawn(kv_task(settings, kv_rx, res_tx));
                while let Some(req) = req_rx.recv().await {
                    let to = match req {
                        ArbiterRequest::Grant { .. }
                        | ArbiterRequest::KeepAlive { .. }
                        | ArbiterRequest::Revoke { .. } => &lease_tx,
                        ArbiterRequest::Acquire { .. }
                        | ArbiterRequest::Verify { .. }
                        | ArbiterRequest::Release { .. } => &kv_tx,
                    };
                    if to.send(req).is_err() {
                        break;
                    }
                }
                drop((lease_tx, kv_tx));
                let _ = lease.await;
                let _ = kv.await;
            });
        })
        .map_err(|e| format!("etcd thread: {e}"))?;
    Ok(ArbiterLink { tx: Some(tx), rx })
}

async fn connect(s: &Settings) -> Result<Client, String> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(s.timeout)
        .with_timeout(s.timeout)
        .with_keep_alive(s.timeout, s.timeout);
    if let Some(t) = &s.tls {
        o = o.with_tls(t.clone());
    }
    match tokio::time::timeout(s.timeout, Client::connect(&s.endpoints, Some(o))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connecting to etcd: {e}")),
        Err(_) => Err("connecting to etcd: timed out".to_owned()),
    }
}

/// A client, connected on first use and after a failure.
struct Conn {
    settings: Settings,
    client: Option<Client>,
}

impl Conn {
    async fn get(&mut self) -> Result<Client, String> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = connect(&self.settings).await?;
        self.client = Some(c.clone());
        Ok(c)
    }
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcd request timed out".to_owned()),
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

async fn lease_task(
    settings: Settings,
    mut rx: mpsc::UnboundedReceiver<ArbiterRequest>,
    tx: mpsc::UnboundedSender<ArbiterInput>,
) {
    let timeout = settings.timeout;
    let mut conn = Conn {
        settings,
        client: None,
    };
    let mut keeper: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)> = None;
    while let Some(req) = rx.recv().await {
        let answer = match req {
            ArbiterRequest::Grant { ttl, at } => {
                let r = match conn.get().await {
                    Ok(mut c) => {
                        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
                        within(timeout, c.lease_grant(ttl, None)).await
                    }
                    Err(e) => Err(e),
                };
                Some(match r {
                    Ok(g) => ArbiterInput::Granted {
                        at,
                        lease: g.id(),
                        ttl: secs(g.ttl()),
                    },
                    Err(error) => {
                        conn.client = None;
                        ArbiterInput::LeaseFailed { at, error }
                    }
                })
            }
            ArbiterRequest::KeepAlive { lease, at } => {
                let r = keep_alive(&mut conn, &mut keeper, lease, timeout).await;
                Some(match r {
                    Ok(ttl) => ArbiterInput::Renewed { at, lease, ttl },
                    // etcd answered: the lease expired or was revoked.
                    Err(error) if error.contains("lease not found") => {
                        keeper = None;
                        ArbiterInput::Renewed {
                            at,
                            lease,
                            ttl: Duration::ZERO,
                        }
                    }
                    Err(error) => {
                        // The stream may hold this request's late answer: never reuse it.
                        keeper = None;
                        ArbiterInput::LeaseFailed { at, error }
                    }
                })
            }
            ArbiterRequest::Revoke { lease } => {
                if keeper.as_ref().is_some_and(|(id, _, _)| *id == lease) {
                    keeper = None;
                }
                if let Ok(mut c) = conn.get().await
                    && let Err(e) = within(timeout, c.lease_revoke(lease)).await
                {
                    tracing::debug!("arbiter: revoking lease {lease:x}: {e}");
                }
                None
            }
            other => failure(&other, "not a lease request"),
        };
        if let Some(a) = answer
            && tx.send(a).is_err()
        {
            break;
        }
    }
}

async fn keep_alive(
    conn: &mut Conn,
    keeper: &mut Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
    lease: i64,
    timeout: Duration,
) -> Result<Duration, String> {
    if keeper.as_ref().is_none_or(|(id, _, _)| *id != lease) {
        let mut c = conn.get().await?;
        let (k, s) = within(timeout, c.lease_keep_alive(lease))
            .await
            .inspect_err(|_| {
                conn.client = None;
            })?;
        *keeper = Some((lease, k, s));
    }
    let Some((_, k, s)) = keeper.as_mut() else {
        return Err("no keepalive stream".to_owned());
    };
    within(timeout, k.keep_alive()).await?;
    match within(timeout, s.message()).await? {
        Some(r) => Ok(secs(r.ttl())),
        None => Err("keepalive stream closed".to_owned()),
    }
}

/// The etcd key of `group`.
fn group_key(keys: &[String], group: usize) -> Result<&str, String> {
    keys.get(group)
        .map(String::as_str)
        .ok_or_else(|| format!("no key for group {group}"))
}

async fn kv_task(
    settings: Settings,
    mut rx: mpsc::UnboundedReceiver<ArbiterRequest>,
    tx: mpsc::UnboundedSender<ArbiterInput>,
) {
    let timeout = settings.timeout;
    let node = settings.node.clone();
    let keys = settings.keys.clone();
    let mut conn = Conn {
        settings,
        client: None,
    };
    while let Some(req) = rx.recv().await {
        let (group, seq, outcome) = match req {
            ArbiterRequest::Acquire { group, lease, seq } => {
                let o = async {
                    acquire(&mut conn, group_key(&keys, group)?, &node, lease, timeout).await
                };
                (group, seq, o.await)
            }
            ArbiterRequest::Verify {
                group,
                lease,
                epoch,
                seq,
            } => {
                let o = async {
                    verify(&mut conn, group_key(&keys, group)?, lease, epoch, timeout).await
                };
                (group, seq, o.await)
            }
            ArbiterRequest::Release { group, lease, seq } => {
                let o =
                    async { release(&mut conn, group_key(&keys, group)?, lease, timeout).await };
                (group, seq, o.await)
            }
            other => {
                if let Some(a) = failure(&other, "not a key request")
                    && tx.send(a).is_err()
                {
                    break;
                }
                continue;
            }
        };
        let outcome = outcome.unwrap_or_else(|error| {
            conn.client = None;
            KeyOutcome::Failed { error }
        });
        if tx
            .send(ArbiterInput::Key {
                group,
                seq,
                outcome,
            })
            .is_err()
        {
            break;
        }
    }
}

/// "Create the key under `lease` if it does not exist; read it either way".
async fn acquire(
    conn: &mut Conn,
    key: &str,
    node: &str,
    lease: i64,
    timeout: Duration,
) -> Result<KeyOutcome, String> {
    let mut c = conn.get().await?;
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key, node, Some(PutOptions::new().with_lease(lease))),
            TxnOp::get(key, None),
        ])
        .or_else([TxnOp::get(key, None)]);
    let resp = within(timeout, c.txn(txn)).await?;
    let kv = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    });
    let Some(kv) = kv else {
        return Err(format!("key {key} vanished during the transaction"));
    };
    Ok(if kv.lease() == lease {
        KeyOutcome::Held {
            epoch: kv.create_revision(),
        }
    } else {
        KeyOutcome::Taken {
            holder: String::from_utf8_lossy(kv.value()).into_owned(),
            epoch: kv.create_revision(),
        }
    })
}

/// "Is the key still there, created at `epoch` and under `lease`? If not, what is there?"
async fn verify(
    conn: &mut Conn,
    key: &str,
    lease: i64,
    epoch: i64,
    timeout: Duration,
) -> Result<KeyOutcome, String> {
    let mut c = conn.get().await?;
    let txn = Txn::new()
        .when([
            Compare::create_revision(key, CompareOp::Equal, epoch),
            Compare::lease(key, CompareOp::Equal, lease),
        ])
        .or_else([TxnOp::get(key, None)]);
    let resp = within(timeout, c.txn(txn)).await?;
    if resp.succeeded() {
        return Ok(KeyOutcome::Held { epoch });
    }
    let now = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
            )
        }),
        _ => None,
    });
    Ok(KeyOutcome::Lost { now })
}

/// "Delete the key if it is under `lease`".
async fn release(
    conn: &mut Conn,
    key: &str,
    lease: i64,
    timeout: Duration,
) -> Result<KeyOutcome, String> {
    let mut c = conn.get().await?;
    let txn = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease)])
        .and_then([TxnOp::delete(key, None)]);
    within(timeout, c.txn(txn)).await?;
    Ok(KeyOutcome::Released)
}
