//! `Filesystem::device::mountpoint::fstype[::options]`: mount with `mount(8)`, unmount with
//! `umount(8)`, both supervised (an NFS mount can hang). Idempotent: an already mounted mount
//! point starts successfully, an unmounted one stops successfully.
//!
//! A busy mount (a process has its working directory, root, executable, an open file or a
//! mapping below the mount point) is freed as the OCF Filesystem agent frees it (`fuser -km`):
//! [`users_of`] finds those processes by scanning `/proc` (same mount namespace only, never hbd
//! itself), [`end_processes`] sends them SIGTERM, then SIGKILL to what is left after
//! [`TERM_GRACE`], and the unmount is tried again.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// How long processes using a busy mount get between SIGTERM and SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(1);

/// The mount table of the calling thread's mount namespace (`/proc/thread-self`, not
/// `/proc/self`: a thread may have entered another namespace than the process leader).
const MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// Whether something is mounted on `mountpoint` (compared after resolving symlinks when the
/// path exists).
pub(crate) fn is_mounted(mountpoint: &Path) -> std::io::Result<bool> {
    // procfs is in memory: reading it does not block.
    let table = std::fs::read_to_string(MOUNTINFO)?;
    let want = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    Ok(mount_points(&table).any(|p| p == want))
}

/// Mount points listed in a `mountinfo` table (field 5, octal escapes decoded).
pub(crate) fn mount_points(table: &str) -> impl Iterator<Item = PathBuf> + '_ {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
}

/// Decodes the `\NNN` octal escapes mountinfo uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Arguments of `mount` for a Filesystem resource.
pub(crate) fn mount_args<'a>(
    device: &'a str,
    mountpoint: &'a str,
    fstype: &'a str,
    options: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec!["-t", fstype];
    if let Some(o) = options {
        args.extend(["-o", o]);
    }
    args.extend([device, mountpoint]);
    args
}

/// Whether `path` (as a `/proc` link shows it) is `mountpoint` or below it.
fn below(path: &Path, mountpoint: &Path) -> bool {
    path.starts_with(mountpoint)
}

/// Paths of the files a process maps (`/proc/PID/maps`, sixth field).
fn mapped_paths(maps: &str) -> impl Iterator<Item = &Path> + '_ {
    maps.lines()
        .filter_map(|l| l.split_ascii_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(Path::new)
}

/// One process using a mount: pid and command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub pid: i32,
    pub comm: String,
}

/// Whether process `dir` (a `/proc/PID` directory) uses anything below `mountpoint`.
fn uses(dir: &Path, mountpoint: &Path) -> bool {
    let link_below =
        |name: &str| std::fs::read_link(dir.join(name)).is_ok_and(|p| below(&p, mountpoint));
    if link_below("cwd") || link_below("root") || link_below("exe") {
        return true;
    }
    if let Ok(fds) = std::fs::read_dir(dir.join("fd"))
        && fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| below(&p, mountpoint)))
    {
        return true;
    }
    std::fs::read_to_string(dir.join("maps"))
        .is_ok_and(|maps| mapped_paths(&maps).any(|p| below(p, mountpoint)))
}

/// Processes in this thread's mount namespace using anything below `mountpoint` (hbd
/// excluded), by scanning `/proc` as `fuser -m` does.
pub(crate) fn users_of(mountpoint: &Path) -> Vec<User> {
    let mountpoint = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    let own_ns = std::fs::read_link("/proc/thread-self/ns/mnt").ok();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut users = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = e.path();
        // A process in another mount namespace sees other mounts under the same paths.
        if std::fs::read_link(dir.join("ns/mnt")).ok() != own_ns {
            continue;
        }
        if uses(&dir, &mountpoint) {
            let comm = std::fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default();
            if let Ok(pid) = i32::try_from(pid) {
                users.push(User { pid, comm });
            }
        }
    }
    users.sort_by_key(|u| u.pid);
    users
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped) no longer holds the mount.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// SIGTERM to every process, then SIGKILL to those still alive after [`TERM_GRACE`]; returns
/// once they are gone (or another [`TERM_GRACE`] passed after SIGKILL).
pub(crate) async fn end_processes(users: &[User]) {
    use nix::sys::signal::{Signal, kill};
    let signal_all = |sig: Signal| {
        for u in users.iter().filter(|u| alive(u.pid)) {
            let _ = kill(nix::unistd::Pid::from_raw(u.pid), sig);
        }
    };
    let wait_gone = || async {
        let until = tokio::time::Instant::now() + TERM_GRACE;
        while users.iter().any(|u| alive(u.pid)) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    signal_all(Signal::SIGTERM);
    wait_gone().await;
    if users.iter().any(|u| alive(u.pid)) {
        signal_all(Signal::SIGKILL);
        wait_gone().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_files_and_below() {
        let maps = "55d0-55d1 r--p 00000000 08:01 1234 /srv/data/bin/app\n\
                    7f00-7f01 rw-p 00000000 00:00 0 \n\
                    7f02-7f03 r--p 00000000 00:00 0 [vdso]\n";
        let paths: Vec<_> = mapped_paths(maps).collect();
        assert_eq!(paths, [Path::new("/srv/data/bin/app")]);
        assert!(below(
            Path::new("/srv/data/bin/app"),
            Path::new("/srv/data")
        ));
        assert!(below(Path::new("/srv/data"), Path::new("/srv/data")));
        assert!(!below(Path::new("/srv/database"), Path::new("/srv/data")));
    }

    #[test]
    fn a_process_in_a_directory_is_found_and_ended() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let users = users_of(dir.path());
        assert!(
            users.iter().any(|u| u.pid == pid && u.comm == "sleep"),
            "{users:?}"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(end_processes(&users));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(15), "SIGTERM was enough");
        assert!(!users_of(dir.path()).iter().any(|u| u.pid == pid));
    }

    #[test]
    fn parses_mountinfo_with_escapes() {
        let table = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     40 22 0:35 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\
                     41 22 0:36 / /srv/data rw - xfs /dev/sdb1 rw\n";
        let points: Vec<_> = mount_points(table).collect();
        assert_eq!(
            points,
            vec![
                PathBuf::from("/"),
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/srv/data")
            ]
        );
    }

    #[test]
    fn mount_arguments() {
        assert_eq!(
            mount_args("/dev/sdb1", "/data", "ext4", None),
            ["-t", "ext4", "/dev/sdb1", "/data"]
        );
        assert_eq!(
            mount_args("nfs:/x", "/x", "nfs", Some("ro,soft")),
            ["-t", "nfs", "-o", "ro,soft", "nfs:/x", "/x"]
        );
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")).unwrap());
    }
}
