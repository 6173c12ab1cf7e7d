//! `<run-dir>/hbd.pid`: written at start, refused when a live hbd holds it, removed on exit.
//! Owns that one file; knows nothing of the control socket beside it (its errors are
//! [`ControlError`]s, the run directory's).

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use crate::control::{ControlError, io_err};

/// `<run-dir>/hbd.pid`, held while hbd runs; removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path`. Refuses ([`ControlError::AlreadyRunning`]) when
    /// the file names a live process running the same program as this one; a stale file (dead
    /// process, or another program that reused the pid) is replaced.
    pub fn acquire(path: &Path) -> Result<Self, ControlError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let pid = std::process::id();
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(path)
            {
                Ok(mut f) => {
                    writeln!(f, "{pid}").map_err(io_err("writing", path))?;
                    f.sync_all().map_err(io_err("syncing", path))?;
                    return Ok(Self {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(other) = read_pid(path)
                        && holder_alive(other)
                    {
                        return Err(ControlError::AlreadyRunning {
                            pid: other,
                            path: path.to_path_buf(),
                        });
                    }
                    match fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("removing stale", path)(e)),
                    }
                }
                Err(e) => return Err(io_err("creating", path)(e)),
            }
        }
        Err(ControlError::Io {
            what: "creating (raced with another starter)",
            path: path.to_path_buf(),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        })
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.path).is_some_and(|p| i64::from(p) == i64::from(self.pid)) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `true` when `pid` is a live process running the same executable name as this process.
fn holder_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    if !alive {
        return false;
    }
    let comm = |p: &str| fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs == ours,
        // Without /proc, trust the pid.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::PID_NAME;

    #[test]
    fn pid_file_refuses_a_live_holder_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join(PID_NAME);
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id() as i32));
        // This process is alive and runs this program: a second acquire is refused.
        match PidFile::acquire(&path) {
            Err(ControlError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, std::process::id() as i32)
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(held);
        assert!(!path.exists(), "drop removes the pid file");

        // A pid that is not a live process: stale, replaced.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(&path, format!("{dead}\n")).unwrap();
        let again = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(again.path()), Some(std::process::id() as i32));

        // A live process running another program (pid 1 is init, never this test): stale.
        drop(again);
        fs::write(&path, "1\n").unwrap();
        let third = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(third.path()), Some(std::process::id() as i32));
    }
}
