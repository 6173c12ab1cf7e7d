//! The control socket: how `hbctl` and `hbstat` talk to a running hbd.
//! Owns the socket and its JSON protocol; never touches the node (requests go to the main loop).
//!
//! A Unix stream socket at `<run-dir>/hbd.sock` (ha.cf `control_socket` overrides), mode 0600,
//! or 0660 with the `control_group` as its group ([`allow_group`]). Who may do what is checked
//! on the peer's credentials (`SO_PEERCRED`): root and hbd's own user may send every request;
//! anyone else who could connect (a member of the group) only the read-only ones
//! ([`Request::is_read_only`]: status and statistics), and is refused the rest.
//! The protocol is one JSON [`Request`] per line, answered by one JSON [`Response`] per line;
//! a client may send several requests on one connection.
//!
//! ```text
//! {"request":"status"}
//! {"request":"standby","scope":"all"}
//! {"request":"takeover","scope":"foreign"}
//! {"request":"stats"}  {"request":"reset_stats"}  {"request":"shutdown"}
//! {"request":"parameter","name":"keepalive"}
//! ```
//!
//! [`serve`] accepts connections and hands each request to the main loop as a [`ControlCall`]
//! over a tokio mpsc channel; the loop answers through the call's oneshot sender. That keeps
//! the node state machine single-threaded: nothing but the loop touches it.
//!
//! The pid file that guards `<run-dir>/hbd.pid` against a second hbd is
//! [`crate::pidfile::PidFile`].

use std::{
    fs,
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::metrics::StatsReport;

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/hb";
/// Control socket file name inside the run directory.
pub const SOCKET_NAME: &str = "hbd.sock";
/// Pid file name inside the run directory.
pub const PID_NAME: &str = "hbd.pid";
/// Longest request line accepted, in bytes (longer: the connection is answered with an error
/// and closed).
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// The control socket path: `control_socket` from ha.cf when set, else `<run_dir>/hbd.sock`.
pub fn socket_path(run_dir: &Path, control_socket: Option<&Path>) -> PathBuf {
    control_socket.map_or_else(|| run_dir.join(SOCKET_NAME), Path::to_path_buf)
}

pub use hb_proto::node::Scope;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Nodes, links and groups ([`Response::Status`]).
    Status,
    /// Give up the groups in `scope` to the peer.
    Standby {
        /// Which groups.
        #[serde(default)]
        scope: Scope,
    },
    /// Take the groups in `scope` from the peer.
    Takeover {
        /// Which groups.
        #[serde(default)]
        scope: Scope,
    },
    /// Link and takeover statistics ([`Response::Stats`]).
    Stats,
    /// Start a new statistics window.
    ResetStats,
    /// Stop hbd cleanly (releasing its groups).
    Shutdown,
    /// Re-read the configuration, as SIGHUP does ([`Response::Ack`] with what was applied, or
    /// [`Response::Error`] with the refusal's `PATH:LINE` messages).
    Reload,
    /// The value of an `ha.cf` directive as written (`cl_status hbparameter`): answered with
    /// [`Response::Ack`] carrying the value, or [`Response::Error`] when the file does not set
    /// it.
    Parameter {
        /// The directive (`keepalive`).
        name: String,
    },
}

impl Request {
    /// `true` for the questions that change nothing (status, statistics): these are answered
    /// to members of the `control_group`; every other request needs root (or hbd's own user).
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::Status | Request::Stats | Request::Parameter { .. } => true,
            Request::Standby { .. }
            | Request::Takeover { .. }
            | Request::ResetStats
            | Request::Shutdown
            | Request::Reload => false,
        }
    }

    /// The request's name on the wire (`status`, `standby`, ...), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Standby { .. } => "standby",
            Request::Takeover { .. } => "takeover",
            Request::Stats => "stats",
            Request::ResetStats => "reset_stats",
            Request::Shutdown => "shutdown",
            Request::Reload => "reload",
            Request::Parameter { .. } => "parameter",
        }
    }
}

/// The status vocabulary is the core's (hb-proto's `serde` feature): one definition of each
/// word, no mapping.
pub use hb_proto::node::{HoldingState, LinkState, NodeState};

/// One link of a node, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Interface name.
    pub iface: String,
    /// Up or dead.
    pub state: LinkState,
    /// Milliseconds since the last heartbeat on this link (`None`: never heard).
    pub last_heartbeat_ms: Option<u64>,
}

/// How heartbeats reach hbd on one interface (`hbctl status`, `hbstat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// Interface name (a heartbeat medium's).
    pub iface: String,
    /// `xdp` (the XDP program hands heartbeats over through its ring buffer, stamped in the
    /// kernel) or `socket` (the UDP socket, stamped with `SO_TIMESTAMPNS`).
    pub path: String,
    /// With `xdp`: `native` (driver) or `generic` (SKB) mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// With `socket`: why (`xdp off`, the attach or load error, a ring buffer failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `xdp`: the program's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpCounters>,
}

/// The XDP program's counters as `hbctl status` and `hbstat` show them for one interface: the
/// packets that arrived on that interface (the program counts per ingress interface; `dropped`
/// and `passed` of one link never include another link's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// Heartbeats handed to hbd through the ring buffer.
    pub delivered: u64,
    /// Heartbeats passed on to the socket path instead: ring buffer full plus parse failures.
    pub passed: u64,
    /// Of those, passed because the ring buffer was full.
    pub ring_full: u64,
    /// Of those, heartbeats the program could not copy into a record.
    pub parse_failures: u64,
    /// Datagrams to the heartbeat port that are not hb messages, dropped.
    pub dropped: u64,
    /// Of `delivered`, heartbeats queued without waking hbd because they repeated their
    /// sender's state while the core was steady (absent from an older hbd).
    #[serde(default)]
    pub batched: u64,
    /// Sequence numbers skipped on this interface, over its peers (the sum of `peers`'
    /// `sequence_gaps`).
    #[serde(default)]
    pub sequence_gaps: u64,
    /// Per peer on this interface: heartbeats the program saw and the sequence numbers it saw
    /// skipped.
    pub peers: Vec<XdpPeerCounters>,
}

/// One peer's heartbeats as the XDP program counted them on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpPeerCounters {
    /// The peer's name (`?` and its id in hex when not in ha.cf).
    pub peer: String,
    /// Heartbeats seen (delivered or passed).
    pub heartbeats: u64,
    /// Sequence numbers skipped (lost, or not yet arrived).
    pub sequence_gaps: u64,
}

/// One node, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusReport {
    /// Name (ha.cf `node`).
    pub name: String,
    /// Wire id (`node_id(name)`).
    pub id: u32,
    /// State.
    pub state: NodeState,
    /// Links (empty for the local node).
    pub links: Vec<LinkStatus>,
    /// Its ping-node counts (the local node's own for the local node; `None`: no ping nodes,
    /// or a peer that does not announce them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingCountStatus>,
}

/// A node's announced ping-node counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingCountStatus {
    /// Ping nodes it reaches.
    pub reachable: u8,
    /// Ping nodes it has configured.
    pub configured: u8,
    /// Its built-in ipfail gave its groups up.
    pub yielding: bool,
}

/// One ping-node address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingAddrStatus {
    /// The address.
    pub addr: String,
    /// `up`, `dead` or `unknown` (no reply yet, within `deadping` of start).
    pub state: String,
    /// Milliseconds since its last reply (`None`: never answered).
    pub last_reply_ms: Option<u64>,
}

/// One ping node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingNodeStatus {
    /// The address of a `ping` line, or the name of a `ping_group`.
    pub name: String,
    /// `true` for a `ping_group`.
    pub group: bool,
    /// `up` while any address answers, `dead`, or `unknown`.
    pub state: String,
    /// Its addresses.
    pub addrs: Vec<PingAddrStatus>,
}

/// Ping nodes and the built-in ipfail, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingStatus {
    /// Ping nodes this node reaches.
    pub reachable: u8,
    /// Ping nodes configured.
    pub configured: u8,
    /// The built-in ipfail is on.
    pub ipfail: bool,
    /// ipfail's comparison with the live peers: `unknown`, `fewer`, `balanced`, `more`.
    pub comparison: String,
    /// ipfail gave this node's groups up.
    pub yielding: bool,
    /// ipfail's settle delay, ms.
    pub settle_ms: u64,
    /// No ping node reachable.
    pub isolated: bool,
    /// A dead peer whose groups this node does not take over, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_held: Option<TakeoverHeld>,
    /// Every ping node, in ha.cf order.
    pub nodes: Vec<PingNodeStatus>,
}

/// A takeover the ping guard holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverHeld {
    /// The dead peer.
    pub peer: String,
    /// Why, in words.
    pub reason: String,
}

/// One resource group, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Index (line order in haresources).
    pub index: usize,
    /// Heartbeat's name for it (resources joined by spaces).
    pub description: String,
    /// The node that owns it when up.
    pub preferred_node: String,
    /// The node that holds it now (`None`: nobody).
    pub owner: Option<String>,
    /// This node's holding state.
    pub local: HoldingState,
}

/// One group's key on the arbiter, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterKeyReport {
    /// Group index.
    pub group: usize,
    /// The etcd key.
    pub key: String,
    /// `held` (ours under the valid lease), `free`, `acquiring`, `releasing`, `stale` (a
    /// release failed: maybe still ours, not used).
    pub state: String,
    /// Who holds it as last seen: this node while held, else the other holder etcd reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The fencing epoch (`create_revision`) of that holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// The etcd arbiter (`arbiter etcd ...`), as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterReport {
    /// The endpoints from ha.cf.
    pub endpoints: Vec<String>,
    /// The last lease grant or renewal succeeded.
    pub reachable: bool,
    /// The lease, hex, while valid here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// How long the lease stays valid here without another renewal, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_valid_ms: Option<u64>,
    /// The lease's TTL as granted, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Times the lease lapsed here (groups stopped for it) since start.
    pub lapses: u64,
    /// Keys found deleted or replaced by hand while held here (their groups stopped).
    #[serde(default)]
    pub keys_lost: u64,
    /// Every group's key.
    pub keys: Vec<ArbiterKeyReport>,
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's name.
    pub local_node: String,
    /// This node's generation.
    pub generation: u64,
    /// Seconds since hbd started.
    pub uptime_secs: u64,
    /// Every node, this one included, in ha.cf order.
    pub nodes: Vec<NodeStatusReport>,
    /// Every group, in haresources order.
    pub groups: Vec<GroupStatus>,
    /// Ping nodes and the built-in ipfail (`None`: no ping nodes configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Box<PingStatus>>,
    /// Live peers whose haresources differ from ours: no group is taken over or released
    /// until the files agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub haresources_mismatch: Vec<String>,
    /// Peers dead by silence waiting for a fence (their groups are not taken meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fence_pending: Vec<String>,
    /// The etcd arbiter (`None`: not configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbiter: Option<Box<ArbiterReport>>,
    /// Per heartbeat interface: the XDP or the socket path, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery: Vec<DeliveryStatus>,
}

/// An answer on the control socket.
// One response per control call, serialised at once: boxing the status report buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Stats`].
    Stats(Box<StatsReport>),
    /// The request was accepted.
    Ack {
        /// What was done, in words.
        message: String,
    },
    /// The request failed.
    Error {
        /// Why, in words.
        message: String,
    },
}

/// A request from the control socket for the main loop, with where to send the answer.
#[derive(Debug)]
pub struct ControlCall {
    /// The request.
    pub request: Request,
    /// Where the answer goes (the client is gone when sending fails; ignore that).
    pub reply: oneshot::Sender<Response>,
}

/// Errors setting up the control socket or the pid file.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Another hbd answers on the socket.
    #[error("another hbd is listening on {0}")]
    InUse(PathBuf),
    /// Another live hbd holds the pid file.
    #[error("another hbd (pid {pid}) is running: {path}")]
    AlreadyRunning {
        /// Its pid.
        pid: i32,
        /// The pid file.
        path: PathBuf,
    },
    /// A file-system or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

pub(crate) fn io_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> ControlError + use<> {
    let path = path.to_path_buf();
    move |source| ControlError::Io { what, path, source }
}

/// Binds the control socket at `path` with mode 0600, creating its directory. A stale socket
/// file (nobody listening) is replaced; a live one is [`ControlError::InUse`].
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    if fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        fs::remove_file(path).map_err(io_err("removing stale socket", path))?;
    }
    // Bind under a restrictive umask so the socket is never reachable by others, even
    // between bind and chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io_err("binding", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err("setting mode 0600 on", path))?;
    Ok(listener)
}

/// Opens the socket at `path` to the members of group `gid`: group `gid`, mode 0660. They may
/// then connect and ask read-only questions (see the module documentation).
pub fn allow_group(path: &Path, gid: u32) -> Result<(), ControlError> {
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|e| io_err("setting the group of", path)(io::Error::from(e)))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .map_err(io_err("setting mode 0660 on", path))
}

/// Whether a peer with user id `uid` may send requests that change state: root, or the user
/// hbd runs as.
fn may_change_state(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Accepts connections on `listener` forever, handing each request to the main loop through
/// `calls`. Returns when `calls` is closed (the loop has stopped), removing the socket file.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<ControlCall>) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    accept_until_closed(
        "control socket",
        || listener.accept(),
        &calls,
        handle_connection,
    )
    .await;
    drop(listener);
    if let Some(path) = path {
        let _ = fs::remove_file(path);
    }
}

/// The one accept loop of hbd's servers (control socket, Prometheus): accepts until `calls`
/// closes (the main loop stopped), serving each connection on its own task with `handle`.
/// Accept errors are logged as `<what> accept: ...` and retried after 50 ms; connection errors
/// at debug level.
pub(crate) async fn accept_until_closed<S, X, A, AF, H, HF>(
    what: &'static str,
    mut accept: A,
    calls: &mpsc::Sender<ControlCall>,
    handle: H,
) where
    A: FnMut() -> AF,
    AF: Future<Output = io::Result<(S, X)>>,
    H: Fn(S, mpsc::Sender<ControlCall>) -> HF,
    HF: Future<Output = io::Result<()>> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok((stream, _)) => {
                    let task = handle(stream, calls.clone());
                    tokio::spawn(async move {
                        if let Err(e) = task.await {
                            tracing::debug!("{what} connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("{what} accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = calls.closed() => return,
        }
    }
}

async fn handle_connection(stream: UnixStream, calls: mpsc::Sender<ControlCall>) -> io::Result<()> {
    // SO_PEERCRED: who connected. Without it, only read-only requests.
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let privileged = peer_uid.is_some_and(may_change_state);
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n > MAX_REQUEST_LINE {
            let r = Response::Error {
                message: format!("request longer than {MAX_REQUEST_LINE} bytes"),
            };
            write_response(&mut write, &r).await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(text) {
            Ok(request) if !privileged && !request.is_read_only() => {
                let who =
                    peer_uid.map_or_else(|| "an unknown user".to_owned(), |u| format!("uid {u}"));
                tracing::warn!(
                    "control socket: refused {} from {who} (not root)",
                    request.name()
                );
                Response::Error {
                    message: format!(
                        "permission denied: {} changes the cluster and needs root ({who} may \
                         only ask for status)",
                        request.name()
                    ),
                }
            }
            Ok(request) => dispatch(request, &calls).await,
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        write_response(&mut write, &response).await?;
    }
}

async fn dispatch(request: Request, calls: &mpsc::Sender<ControlCall>) -> Response {
    let (reply, answer) = oneshot::channel();
    if calls.send(ControlCall { request, reply }).await.is_err() {
        return Response::Error {
            message: "hbd is shutting down".into(),
        };
    }
    answer.await.unwrap_or_else(|_| Response::Error {
        message: "hbd dropped the request".into(),
    })
}

async fn write_response(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> io::Result<()> {
    let mut out = serde_json::to_vec(response).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.flush().await
}

/// Errors of a control-socket client.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No socket file, or nobody listening on it.
    #[error("hbd is not running (no control socket listening at {path}): {source}")]
    NotRunning {
        /// Socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The socket exists but this user may not open it.
    #[error(
        "permission denied on the control socket {path} (run as root, or as a member of ha.cf's control_group for status)"
    )]
    PermissionDenied {
        /// Socket path.
        path: PathBuf,
    },
    /// Reading or writing failed, or hbd did not answer in time.
    #[error("talking to hbd on {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// hbd's answer was not a valid response.
    #[error("hbd sent an unreadable answer: {0}")]
    Protocol(String),
}

/// Sends `request` to the hbd listening on `path` and waits (at most `timeout` per read or
/// write) for its answer. Blocking: for the command-line clients.
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => ClientError::NotRunning {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol("hbd closed the connection".into()));
    }
    serde_json::from_str(answer.trim()).map_err(|e| ClientError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() {
        let cases = [
            (Request::Status, r#"{"request":"status"}"#),
            (
                Request::Standby {
                    scope: Scope::Foreign,
                },
                r#"{"request":"standby","scope":"foreign"}"#,
            ),
            (
                Request::Takeover { scope: Scope::All },
                r#"{"request":"takeover","scope":"all"}"#,
            ),
            (Request::Stats, r#"{"request":"stats"}"#),
            (Request::ResetStats, r#"{"request":"reset_stats"}"#),
            (Request::Shutdown, r#"{"request":"shutdown"}"#),
            (
                Request::Parameter {
                    name: "keepalive".into(),
                },
                r#"{"request":"parameter","name":"keepalive"}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
        // Scope defaults to all.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"standby"}"#).unwrap(),
            Request::Standby { scope: Scope::All }
        );
    }

    #[test]
    fn scope_parses_the_four_words() {
        for s in ["all", "foreign", "local", "failback"] {
            assert_eq!(s.parse::<Scope>().unwrap().as_str(), s);
        }
        assert!("everything".parse::<Scope>().is_err());
    }

    #[test]
    fn socket_path_honours_control_socket() {
        assert_eq!(
            socket_path(Path::new("/run/hb"), None),
            PathBuf::from("/run/hb/hbd.sock")
        );
        assert_eq!(
            socket_path(Path::new("/run/hb"), Some(Path::new("/tmp/x.sock"))),
            PathBuf::from("/tmp/x.sock")
        );
    }

    #[tokio::test]
    async fn bind_sets_mode_0600_and_refuses_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(SOCKET_NAME);
        let listener = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path), Err(ControlError::InUse(_))));
        drop(listener);
        // Nobody listens any more: the stale file is replaced.
        let _again = bind(&path).unwrap();
    }
}
