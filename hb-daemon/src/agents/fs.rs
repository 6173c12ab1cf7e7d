//! `Filesystem::device::mountpoint::fstype[::options]`: mount with `mount(8)`, unmount with
//! `umount(8)`, both supervised (an NFS mount can hang). Idempotent: an already mounted mount
//! point starts successfully, an unmounted one stops successfully.

use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
