//! `respawn USER COMMAND [ARGS]`: children hbd starts, keeps running and stops, as Heartbeat
//! does for its clients.
//!
//! - Each line's command runs (without a shell) as USER, with USER's primary group and
//!   supplementary groups (`initgroups`), in its own process group, stdin null; every line it
//!   writes to stdout or stderr goes into hb's log (`respawn NAME[PID]: line`).
//! - When it exits it is started again after a back-off (1 s, doubling for each exit within
//!   [`STABLE_RUN`] of its start, at most [`MAX_BACKOFF`]), unless it exited with status 100:
//!   Heartbeat's rule for a client that asks not to be restarted.
//! - On shutdown each child's process group gets SIGTERM, then SIGKILL after [`STOP_GRACE`].
//! - ipfail lines ([`hb_proto::config::Respawn::is_ipfail`]) are not run: hbd has ipfail
//!   built in.
//!
//! The children are supervised on a thread of their own (its own small runtime, started before
//! the heartbeat thread goes real-time), so a fork or a chatty child never delays a heartbeat.

use std::{ffi::CString, process::Stdio, sync::mpsc as std_mpsc, time::Duration};

use hb_proto::config::Respawn;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    sync::{mpsc, watch},
};

/// The first restart delay.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// A child that ran this long before exiting is restarted after [`MIN_BACKOFF`] again.
pub const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long a child may take to exit after SIGTERM before it is sent SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Heartbeat's exit status for "do not restart me".
pub const NO_RESTART_STATUS: i32 = 100;

enum Cmd {
    /// Run exactly these lines (children of other lines are stopped).
    Set(Vec<Respawn>),
    /// Stop every child, then answer.
    Stop(std_mpsc::Sender<()>),
}

/// The respawn supervisor. Dropping it stops every child (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct Respawner {
    tx: mpsc::UnboundedSender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The lines of `ha_cf` hbd runs (ipfail's excluded).
pub fn lines_of(ha_cf: &hb_proto::config::HaCf) -> Vec<Respawn> {
    ha_cf.respawn_children().cloned().collect()
}

impl Respawner {
    /// Starts the supervisor thread and the children of `lines` (ipfail lines are skipped).
    pub fn start(lines: Vec<Respawn>) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("hb-respawn".to_owned())
            .spawn(move || {
                rt.block_on(async move {
                    let mut running: Vec<Child> = Vec::new();
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Set(lines) => set(&mut running, lines).await,
                            Cmd::Stop(ack) => {
                                stop_all(std::mem::take(&mut running)).await;
                                let _ = ack.send(());
                                return;
                            }
                        }
                    }
                    stop_all(running).await;
                });
            })?;
        let r = Self {
            tx,
            thread: Some(thread),
        };
        r.set(lines);
        Ok(r)
    }

    /// Runs exactly `lines` from now (a reload): children of removed lines are stopped, new
    /// lines started, unchanged lines left running.
    pub fn set(&self, lines: Vec<Respawn>) {
        let lines = lines.into_iter().filter(|r| !r.is_ipfail()).collect();
        let _ = self.tx.send(Cmd::Set(lines));
    }

    /// Stops every child (SIGTERM, SIGKILL after [`STOP_GRACE`]) and waits for that.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (ack_tx, ack_rx) = std_mpsc::channel();
        if self.tx.send(Cmd::Stop(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(STOP_GRACE + Duration::from_secs(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl Drop for Respawner {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// One line's supervisor task.
struct Child {
    line: Respawn,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn set(running: &mut Vec<Child>, lines: Vec<Respawn>) {
    let mut keep: Vec<Child> = Vec::new();
    let mut start = Vec::new();
    for line in lines {
        match running.iter().position(|c| c.line == line) {
            Some(i) => keep.push(running.swap_remove(i)),
            None => start.push(line),
        }
    }
    stop_all(std::mem::take(running)).await;
    for line in start {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(line.clone(), stopped));
        keep.push(Child { line, stop, task });
    }
    *running = keep;
}

async fn stop_all(children: Vec<Child>) {
    for c in &children {
        let _ = c.stop.send(true);
    }
    for c in children {
        let _ = c.task.await;
    }
}

/// The short name of a line for the log: the program's file name.
fn label(line: &Respawn) -> String {
    let prog = line.argv().first().copied().unwrap_or("?");
    prog.rsplit('/').next().unwrap_or(prog).to_owned()
}

/// The delay before the `n`-th consecutive quick restart (n >= 1).
pub fn backoff(n: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(5))
        .min(MAX_BACKOFF)
}

/// uid, gid and supplementary groups of `user`.
fn credentials(user: &str) -> Result<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>), String> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("looking up user {user}: {e}"))?
        .ok_or_else(|| format!("no user named {user}"))?;
    let name = CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
    let groups = nix::unistd::getgrouplist(&name, u.gid)
        .map_err(|e| format!("groups of {user}: {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok((u.uid.as_raw(), u.gid.as_raw(), groups))
}

fn spawn_child(line: &Respawn) -> Result<tokio::process::Child, String> {
    let argv = line.argv();
    let Some((prog, args)) = argv.split_first() else {
        return Err("empty command".to_owned());
    };
    let (uid, gid, groups) = credentials(&line.user)?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure only makes async-signal-safe syscalls (getuid, setgroups, setgid,
    // setuid) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::geteuid() == uid {
                return Ok(());
            }
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("starting {}: {e}", line.command))
}

async fn log_lines(name: String, pid: u32, pipe: impl AsyncRead + Unpin, stderr: bool) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            tracing::warn!("respawn {name}[{pid}]: {line}");
        } else {
            tracing::info!("respawn {name}[{pid}]: {line}");
        }
    }
}

fn signal_group(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// Runs `line` until told to stop, restarting it as the module documentation says.
async fn supervise(line: Respawn, mut stopped: watch::Receiver<bool>) {
    let name = label(&line);
    let mut quick_exits = 0u32;
    loop {
        let began = tokio::time::Instant::now();
        let outcome = match spawn_child(&line) {
            Err(e) => {
                tracing::error!("respawn: {e}");
                None
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                tracing::info!(
                    "respawn: started {} as {} (pid {pid})",
                    line.command,
                    line.user
                );
                if let Some(out) = child.stdout.take() {
                    tokio::spawn(log_lines(name.clone(), pid, out, false));
                }
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(log_lines(name.clone(), pid, err, true));
                }
                tokio::select! {
                    status = child.wait() => Some((pid, status)),
                    _ = until_stopped(&mut stopped) => {
                        stop_child(&name, pid, &mut child).await;
                        return;
                    }
                }
            }
        };
        if let Some((pid, status)) = outcome {
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("respawn: waiting for {name} (pid {pid}): {e}");
                    return;
                }
            };
            if status.code() == Some(NO_RESTART_STATUS) {
                tracing::info!(
                    "respawn: {} (pid {pid}) exited with status {NO_RESTART_STATUS}: \
                     not restarted",
                    line.command
                );
                return;
            }
            if began.elapsed() >= STABLE_RUN {
                quick_exits = 0;
            }
            quick_exits = quick_exits.saturating_add(1);
            let delay = backoff(quick_exits);
            tracing::warn!(
                "respawn: {} (pid {pid}) exited ({}); restarting in {:.1} s",
                line.command,
                crate::agents::exit_words(status),
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = until_stopped(&mut stopped) => return,
            }
        } else {
            quick_exits = quick_exits.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(backoff(quick_exits)) => {}
                _ = until_stopped(&mut stopped) => return,
            }
        }
    }
}

/// Returns once the supervisor is told to stop.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn stop_child(name: &str, pid: u32, child: &mut tokio::process::Child) {
    tracing::info!("respawn: stopping {name} (pid {pid})");
    signal_group(pid, nix::sys::signal::Signal::SIGTERM);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(
                "respawn: {name} (pid {pid}) still runs {STOP_GRACE:?} after SIGTERM; SIGKILL"
            );
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
    // Whatever is left of its process group.
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    fn me() -> String {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    }

    fn count_lines(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[test]
    fn restarts_unless_100_and_stops_children() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let ones = dir.path().join("ones");
        let hundreds = dir.path().join("hundreds");
        let pidfile = dir.path().join("sleeper.pid");
        let one = script("one", &format!("echo x >> {}; exit 1", ones.display()));
        let hundred = script(
            "hundred",
            &format!("echo x >> {}; exit 100", hundreds.display()),
        );
        let sleeper = script(
            "sleeper",
            &format!("echo $$ > {}; exec sleep 1000", pidfile.display()),
        );
        let line = |p: &std::path::Path| Respawn {
            user: me(),
            command: p.display().to_string(),
        };
        let ipfail = Respawn {
            user: me(),
            command: "/usr/lib/heartbeat/ipfail".into(),
        };
        let r = Respawner::start(vec![line(&one), line(&hundred), line(&sleeper), ipfail]).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(count_lines(&ones) >= 2, "exit 1 is restarted");
        assert_eq!(count_lines(&hundreds), 1, "exit 100 is not restarted");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive =
            |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        assert!(alive(pid));
        r.stop();
        assert!(!alive(pid), "the sleeper is gone after stop");
    }
}
