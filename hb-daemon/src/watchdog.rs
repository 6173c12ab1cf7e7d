//! `watchdog DEVICE`: the kernel watchdog fed from the heartbeat loop.
//!
//! The device is opened at start (hbd refuses to start when it cannot be opened: the operator
//! asked for hang protection). The heartbeat loop writes one byte to it at most every half
//! `keepalive` and at least every `keepalive` while it runs; a loop that hangs or is starved (or
//! a SIGSTOPped hbd) stops feeding it and the watchdog resets the machine after its own timeout
//! (the driver's setting, e.g. softdog's `soft_margin`, 60 s by default). A clean stop writes the
//! magic close character `V` before closing, so the watchdog is disarmed; any other exit (a
//! crash, SIGKILL) leaves it armed, as Heartbeat does.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use hb_proto::Timestamp;

/// The byte written at each feed (any byte but `V` keeps the watchdog armed).
pub const FEED: &[u8] = b".";
/// The magic close character.
pub const MAGIC_CLOSE: &[u8] = b"V";

/// An open watchdog device.
#[derive(Debug)]
pub struct Watchdog {
    file: Option<File>,
    path: PathBuf,
    interval: Duration,
    last_feed: Option<Timestamp>,
    feeds: u64,
    write_error_logged: bool,
}

impl Watchdog {
    /// Opens `path` for writing (close-on-exec, so resource scripts never hold it) and feeds it
    /// once. `keepalive` is the feeding period.
    pub fn open(path: &Path, keepalive: Duration, now: Timestamp) -> Result<Self, String> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                format!(
                    "watchdog {}: cannot open the device ({e}); hbd does not start without the \
                     watchdog ha.cf asks for (load a driver, e.g. 'modprobe softdog', or remove \
                     the watchdog line)",
                    path.display()
                )
            })?;
        let mut w = Self {
            file: Some(file),
            path: path.to_path_buf(),
            interval: keepalive / 2,
            last_feed: None,
            feeds: 0,
            write_error_logged: false,
        };
        w.feed(now);
        Ok(w)
    }

    /// Feeds the watchdog when half a keepalive passed since the last feed. Called from the
    /// heartbeat loop at every turn.
    pub fn feed(&mut self, now: Timestamp) {
        if self
            .last_feed
            .is_some_and(|t| now.saturating_since(t) < self.interval)
        {
            return;
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        self.last_feed = Some(now);
        match f.write_all(FEED) {
            Ok(()) => {
                self.feeds += 1;
                self.write_error_logged = false;
            }
            Err(e) => {
                if !self.write_error_logged {
                    self.write_error_logged = true;
                    tracing::error!("watchdog {}: feeding failed: {e}", self.path.display());
                }
            }
        }
    }

    /// When the next feed is due at the latest (a keepalive after the last one): the loop wakes
    /// for it, since it no longer wakes for every heartbeat (the XDP program queues those that
    /// repeat their sender's state).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.file.as_ref()?;
        self.last_feed.map(|t| t + self.interval * 2)
    }

    /// Feeds written since start.
    pub fn feeds(&self) -> u64 {
        self.feeds
    }

    /// Clean stop: magic close (`V`), then close, so the watchdog does not reset the machine.
    pub fn magic_close(mut self) {
        if let Some(mut f) = self.file.take() {
            match f.write_all(MAGIC_CLOSE) {
                Ok(()) => tracing::info!(
                    "watchdog {}: magic close after {} feeds",
                    self.path.display(),
                    self.feeds
                ),
                Err(e) => tracing::error!(
                    "watchdog {}: magic close failed ({e}): the watchdog stays armed",
                    self.path.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_at_most_every_half_keepalive_then_magic_close() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wd");
        std::fs::write(&p, b"").unwrap();
        let ms = |m: u64| Timestamp::from_nanos(m * 1_000_000);
        let mut w = Watchdog::open(&p, Duration::from_millis(100), ms(0)).unwrap();
        w.feed(ms(10));
        w.feed(ms(49));
        w.feed(ms(50));
        w.feed(ms(120));
        assert_eq!(w.feeds(), 3);
        assert_eq!(w.next_due(), Some(ms(220)));
        w.magic_close();
        assert_eq!(std::fs::read(&p).unwrap(), b"...V");
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let e = Watchdog::open(
            Path::new("/nonexistent/watchdog"),
            Duration::from_millis(100),
            Timestamp::ZERO,
        )
        .unwrap_err();
        assert!(e.contains("cannot open the device"), "{e}");
        assert!(e.contains("/nonexistent/watchdog"), "{e}");
    }
}
