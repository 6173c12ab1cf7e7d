//! Supervised commands: init-style resource scripts and `mount`/`umount`.
//!
//! Each command runs as a tokio child in its own process group with stdin null and stdout/stderr
//! captured line by line into the log. It is bounded by a timeout: on expiry the whole process
//! group is sent SIGKILL (a script's children die with it). Nothing here blocks the runtime, so
//! heartbeats keep flowing while a script runs.
//!
//! Output reading outlives the command when needed: a start script that leaves a daemon holding
//! its stdout would otherwise make us wait for EOF forever, and dropping the pipe would send that
//! daemon SIGPIPE. So the command counts as finished when its process exits; its output is
//! collected for a short grace period after that, and the readers keep logging in the background
//! until EOF.

use std::{
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How long to keep collecting output after the command exited (output still in the pipe).
const OUTPUT_GRACE: Duration = Duration::from_millis(20);
/// Most output kept for error messages and status parsing (everything is logged).
const OUTPUT_CAP: usize = 16 * 1024;

/// How a supervised command ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout and stderr, interleaved by line as read (at most [`OUTPUT_CAP`] bytes).
    pub output: String,
    /// Captured stdout alone (at most [`OUTPUT_CAP`] bytes): what Heartbeat's ResourceManager
    /// reads from `status` (its backquotes take stdout only).
    pub stdout: String,
}

/// Why a supervised command produced no exit status.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// It ran past the timeout and was killed; the output it wrote until then.
    Timeout(String),
}

/// Runs `program args...` supervised (see the module documentation), with `env` added to hbd's
/// environment. `label` names the resource in log lines.
pub(crate) async fn run(
    label: &str,
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Finished, RunError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    tracing::debug!(
        resource = label,
        "running {} {}",
        program.display(),
        args.join(" ")
    );
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = child.id();
    let output = Arc::new(Mutex::new(String::new()));
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            label.to_owned(),
            out,
            output.clone(),
            Some(stdout.clone()),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            label.to_owned(),
            err,
            output.clone(),
            None,
        )));
    }
    let collected = |output: &Arc<Mutex<String>>| match output.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // Let the readers drain what the command wrote; a daemon it started may keep the
            // pipe open, so do not wait for EOF beyond the grace period.
            let _ = tokio::time::timeout(OUTPUT_GRACE, futures::future::join_all(readers)).await;
            Ok(Finished {
                status,
                output: collected(&output),
                stdout: collected(&stdout),
            })
        }
        Ok(Err(e)) => Err(RunError::Wait(e)),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The child leads its own process group (process_group(0)): kill all of it.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            let _ = tokio::time::timeout(OUTPUT_GRACE, futures::future::join_all(readers)).await;
            Err(RunError::Timeout(collected(&output)))
        }
    }
}

/// Logs each line of `pipe` and keeps up to [`OUTPUT_CAP`] bytes of it in `into` (and, for
/// stdout, in `stdout` too). `stdout` is `None` for stderr.
async fn read_lines(
    label: String,
    pipe: impl AsyncRead + Unpin,
    into: Arc<Mutex<String>>,
    stdout: Option<Arc<Mutex<String>>>,
) {
    let keep = |buf: &Arc<Mutex<String>>, line: &str| {
        let mut guard = match buf.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.len() + line.len() < OUTPUT_CAP {
            guard.push_str(line);
            guard.push('\n');
        }
    };
    let mut lines = BufReader::new(pipe).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                match &stdout {
                    Some(out) => {
                        tracing::info!(resource = %label, "{line}");
                        keep(out, &line);
                    }
                    None => tracing::warn!(resource = %label, "stderr: {line}"),
                }
                keep(&into, &line);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(resource = %label, "reading output: {e}");
                break;
            }
        }
    }
}

/// Heartbeat's ResourceManager rule for "is this resource already running?" (`we_own_resource`),
/// applied to what `SCRIPT status` printed on stdout, whatever its exit code:
///
/// ```sh
/// case `$spath $arg status` in
///   *[Nn][Oo][Tt]\ *[Rr]unning*) return 3;;   # not running
///   *[Rr]unning*|*OK*)           return 0;;   # running
///   *)                           return 3;;
/// esac
/// ```
///
/// So `not running`, `NOT  currently running` mean no; `running`, `is Running...`, `OK` mean
/// yes; anything else (`stopped`, nothing at all, `RUNNING` in capitals) means no. The case
/// patterns are case-sensitive where Heartbeat's are: `OK` only in capitals, `unning` in lower
/// case.
pub fn heartbeat_says_running(stdout: &str) -> bool {
    // `*[Nn][Oo][Tt]\ *[Rr]unning*`: "not" in any case, one space, then anything, then
    // "[Rr]unning".
    let bytes = stdout.as_bytes();
    let not_running = bytes.windows(4).enumerate().any(|(i, w)| {
        w[..3].eq_ignore_ascii_case(b"not") && w[3] == b' ' && contains_running(&stdout[i + 4..])
    });
    if not_running {
        return false;
    }
    contains_running(stdout) || stdout.contains("OK")
}

/// `*[Rr]unning*`.
fn contains_running(s: &str) -> bool {
    s.contains("running") || s.contains("Running")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_already_running_rule() {
        // Running, whatever the exit code (the caller ignores it, as Heartbeat does).
        for yes in [
            "httpd (pid 42) is running...",
            "Running",
            "OK",
            "apache2 is Running\n",
            "status: OK\n",
        ] {
            assert!(heartbeat_says_running(yes), "{yes:?}");
        }
        for no in [
            "",
            "httpd is stopped",
            "httpd is not running",
            "Not running",
            "NOT  currently running",
            "apache is not really running",
            "RUNNING",
            "ok",
            "dead but pid file exists",
        ] {
            assert!(!heartbeat_says_running(no), "{no:?}");
        }
        // `not` must be followed by a space: "nothing running" is running to Heartbeat.
        assert!(heartbeat_says_running("nothing running"));
        // A "not ... running" anywhere wins over an earlier "running".
        assert!(!heartbeat_says_running("running check: daemon not running"));
    }
}
