//! hbd's persistent state in `--state-dir` (default `/var/lib/hb`): the generation.
//!
//! The generation tells peers that a node restarted (its sequence numbers start again). It
//! must be strictly increasing across restarts, also when the wall clock goes backwards or two
//! starts fall within one second:
//!
//! ```text
//! next = max(stored + 1, wall_clock_secs << 20)
//! ```
//!
//! The wall-clock term keeps generations increasing when the state file is lost (a reinstalled
//! node); the `stored + 1` term when the clock is behind. `<< 20` leaves room for about a
//! million starts per second before the two terms could meet, and fits in a `u64` until
//! the year 2^44 s from 1970. The new value is written before it is used (temporary file,
//! fsync, rename, fsync of the directory), so a crash never reuses one.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use thiserror::Error;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hb";
/// File holding the generation, in the state directory.
pub const GENERATION_FILE: &str = "generation";

/// Errors reading or writing the state directory.
#[derive(Debug, Error)]
pub enum StateError {
    /// A file-system operation failed.
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

/// The pure rule: the generation that follows `stored` (`None`: no file) at wall-clock time
/// `wall_secs` (seconds since 1970). The rule lives in the sans-IO core
/// ([`hb_proto::generation::generation_after`]); this is that function, named for this module.
pub fn next_generation(stored: Option<u64>, wall_secs: u64) -> u64 {
    hb_proto::generation::generation_after(stored, wall_secs)
}

/// What [`advance_generation`] found and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// The new generation, already on disk.
    pub generation: u64,
    /// The one read from the file (`None`: no file, or unreadable content).
    pub previous: Option<u64>,
    /// The file existed but did not hold a number (the wall-clock term took over).
    pub was_corrupt: bool,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

/// Reads the stored generation: `Ok(None)` when there is no file, `Err` on I/O errors, and
/// `Ok(Some(Err(content)))` when the file holds something other than a number.
fn read_stored(dir: &Path) -> Result<Option<Result<u64, String>>, StateError> {
    let path = dir.join(GENERATION_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().parse::<u64>().map_err(|_| text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", &path)(e)),
    }
}

/// The generation stored in `dir` (`None`: no file or not a number).
pub fn read_generation(dir: &Path) -> Result<Option<u64>, StateError> {
    Ok(read_stored(dir)?.and_then(Result::ok))
}

/// Writes `generation` to `dir` atomically: a temporary file, fsync, rename over the old
/// one, fsync of the directory. Creates `dir` (mode 0700 parents as the umask allows).
pub fn write_generation(dir: &Path, generation: u64) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let path = dir.join(GENERATION_FILE);
    let tmp = dir.join(format!(".{GENERATION_FILE}.{}.tmp", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
    writeln!(f, "{generation}").map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))?;
    Ok(())
}

/// Reads the previous generation from `dir`, writes the next one (see the module doc) and
/// returns it. Call once per start, before the first heartbeat.
pub fn advance_generation(dir: &Path) -> Result<Generation, StateError> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    advance_generation_at(dir, wall)
}

/// [`advance_generation`] with the wall clock given.
pub fn advance_generation_at(dir: &Path, wall_secs: u64) -> Result<Generation, StateError> {
    let stored = read_stored(dir)?;
    let previous = stored.clone().and_then(Result::ok);
    let generation = next_generation(previous, wall_secs);
    write_generation(dir, generation)?;
    Ok(Generation {
        generation,
        previous,
        was_corrupt: matches!(stored, Some(Err(_))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_takes_the_larger_term() {
        // Never 0 (the first start on a machine whose clock reads 0).
        assert_eq!(next_generation(None, 0), 1);
        assert_eq!(next_generation(None, 10), 10 << 20);
        assert_eq!(next_generation(Some(10 << 20), 10), (10 << 20) + 1);
        // Clock went backwards: still increasing.
        assert_eq!(next_generation(Some(50 << 20), 10), (50 << 20) + 1);
        assert_eq!(next_generation(Some(u64::MAX), 10), u64::MAX);
    }

    #[test]
    fn strictly_increasing_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("lib").join("hb");
        let first = advance_generation_at(&state, 1_000).unwrap();
        assert_eq!(first.previous, None);
        assert_eq!(first.generation, 1_000 << 20);
        let mut last = first.generation;
        // Many starts within one second, then the clock going backwards.
        for wall in [1_000, 1_000, 1_000, 999, 5] {
            let g = advance_generation_at(&state, wall).unwrap();
            assert_eq!(g.previous, Some(last));
            assert!(g.generation > last);
            last = g.generation;
        }
        // A later clock jumps ahead.
        let g = advance_generation_at(&state, 2_000).unwrap();
        assert_eq!(g.generation, 2_000 << 20);
        assert_eq!(read_generation(&state).unwrap(), Some(2_000 << 20));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(GENERATION_FILE)]);
    }

    #[test]
    fn corrupt_file_falls_back_to_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(GENERATION_FILE), "garbage\n").unwrap();
        let g = advance_generation_at(dir.path(), 7).unwrap();
        assert!(g.was_corrupt);
        assert_eq!(g.previous, None);
        assert_eq!(g.generation, 7 << 20);
        assert_eq!(read_generation(dir.path()).unwrap(), Some(7 << 20));
    }

    #[test]
    fn real_clock_gives_a_recent_generation() {
        let dir = tempfile::tempdir().unwrap();
        let g = advance_generation(dir.path()).unwrap();
        // After 2020-01-01.
        assert!(g.generation >= 1_577_836_800 << 20);
    }
}
