//! Logging for hbd, the way Heartbeat logs: stderr with `--foreground`, ha.cf `logfile`
//! (levels info and above), `debugfile` (debug too when ha.cf `debug` > 0) and syslog with
//! `logfacility` (`none` disables it).
//!
//! File lines are in Heartbeat's ha-log layout, in local time, so existing log watchers keep
//! matching (the name in front is ha.cf `syslog_ident`, default `heartbeat`):
//!
//! ```text
//! heartbeat[4242]: 2026/11/26_01:02:03 info: Link node2:eth1 up.
//! ```
//!
//! or, with hb's `log_format hb`, hb's own layout with milliseconds:
//!
//! ```text
//! 2026/11/26_01:02:03.123 hbd[4242]: info: Link node2:eth1 up.
//! ```
//!
//! syslog gets `level: message` under the identifier `syslog_ident`.
//!
//! On stderr (`--foreground`) each line instead starts with the CLOCK_MONOTONIC time of the
//! event, so a supervisor can line events up with its own clock:
//!
//! ```text
//! mono=81234567890 INFO Link node2:eth1 up.
//! ```
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr, or `hbd --journald`) lines go to the
//! journal instead of stderr, through tracing-journald, with the structured fields of hb's
//! events kept apart from the message: `EVENT`, `PEER`, `LINK`, `GROUP`, `RESOURCE`
//! ([`STRUCTURED_FIELDS`]; in the files they are left out, since the message says the same).
//! `logfile`, `debugfile` and `logfacility` work the same with or without the journal.
//!
//! Levels are written `ERROR`, `WARN`, `info`, `debug` (Heartbeat's words). Formatting happens
//! in the caller, writing in a background thread fed through a bounded channel: a slow disk
//! never blocks the heartbeat path; when the channel is full, lines are dropped and counted
//! ([`LogGuard::dropped`]). Dropping the [`LogGuard`] flushes and closes every sink.
//! [`reload`] switches the installed logger to a new ha.cf's settings (SIGHUP): the writer
//! thread swaps its sinks between two lines, nothing is lost.

use std::{
    ffi::CString,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use hb_proto::config::LogFormat;
use thiserror::Error;
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{Layer, layer::Context, prelude::*};

/// Lines that may wait for the writer thread before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;

/// Errors setting up logging.
#[derive(Debug, Error)]
pub enum LogError {
    /// A log file could not be opened for appending.
    #[error("opening log file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `logfacility` names no syslog facility.
    #[error(
        "unknown logfacility {0:?} (expected auth, authpriv, cron, daemon, ftp, kern, lpr, mail, news, syslog, user, uucp, local0..local7 or none)"
    )]
    Facility(String),
    /// The writer thread could not be started.
    #[error("starting the log writer thread: {0}")]
    Thread(io::Error),
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
    /// `--journald` was asked for and the journal's socket does not answer.
    #[error("the journal (/run/systemd/journal/socket): {0}")]
    Journald(io::Error),
    /// [`reload`] before [`init`].
    #[error("logging is not initialised")]
    NotInstalled,
}

/// The fields of hb's events (`hb_proto::node::EventFields`) that the journal gets as fields of
/// their own (upper-cased: `EVENT`, `PEER`, ...). Text lines leave them out.
pub const STRUCTURED_FIELDS: [&str; 5] = ["event", "peer", "link", "group", "resource"];

/// Whether `JOURNAL_STREAM` (set by systemd when stderr goes to the journal) names the file
/// our stderr is: `DEVICE:INODE` of fd 2.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Where hbd logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Log to stderr (`--foreground`).
    pub stderr: bool,
    /// ha.cf `logfile`.
    pub logfile: Option<PathBuf>,
    /// ha.cf `debugfile`.
    pub debugfile: Option<PathBuf>,
    /// ha.cf `logfacility` (`None`: no syslog).
    pub logfacility: Option<String>,
    /// ha.cf `debug` level.
    pub debug: u8,
    /// Log to the journal (instead of stderr): `--journald`, or [`stderr_is_journal`].
    pub journald: bool,
    /// hb's `log_format` for the files.
    pub format: LogFormat,
    /// hb's `syslog_ident`: the syslog identifier and the name in front of Heartbeat-layout
    /// lines.
    pub ident: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            stderr: false,
            logfile: None,
            debugfile: None,
            logfacility: None,
            debug: 0,
            format: LogFormat::Heartbeat,
            ident: hb_proto::config::DEFAULT_SYSLOG_IDENT.to_owned(),
            journald: false,
        }
    }
}

impl LogConfig {
    /// From ha.cf, with `foreground` from the command line.
    pub fn from_ha_cf(ha_cf: &hb_proto::config::HaCf, foreground: bool) -> Self {
        Self {
            stderr: foreground,
            logfile: ha_cf.logfile.clone(),
            debugfile: ha_cf.debugfile.clone(),
            logfacility: ha_cf
                .logfacility
                .clone()
                .filter(|f| !f.eq_ignore_ascii_case("none")),
            debug: ha_cf.debug.value,
            journald: false,
            format: ha_cf.log_format.value,
            ident: ha_cf.syslog_ident.value.clone(),
        }
    }
}

/// The syslog facility for a `logfacility` name.
pub fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name.to_ascii_lowercase().as_str() {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "ftp" => libc::LOG_FTP,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// Heartbeat's word for a level.
pub fn level_word(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// `YYYY/MM/DD_HH:MM:SS.mmm` in local time.
pub fn timestamp(t: SystemTime) -> String {
    stamp(t, true)
}

/// `YYYY/MM/DD_HH:MM:SS` in local time (Heartbeat's ha-log stamp).
pub fn timestamp_secs(t: SystemTime) -> String {
    stamp(t, false)
}

fn stamp(t: SystemTime, millis: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = libc::time_t::try_from(d.as_secs()).unwrap_or(0);
    // SAFETY: all-zero is a valid `libc::tm` (integers and a null zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the thread-safe variant and
    // only writes `tm`.
    let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
    if !ok {
        return format!("@{}.{:03}", d.as_secs(), d.subsec_millis());
    }
    let mut s = format!(
        "{:04}/{:02}/{:02}_{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    );
    if millis {
        let _ = write!(s, ".{:03}", d.subsec_millis());
    }
    s
}

/// A file line in `format`: Heartbeat's `IDENT[PID]: STAMP level: message` or hb's
/// `STAMP.mmm hbd[PID]: level: message`.
pub fn file_line(format: LogFormat, ident: &str, pid: u32, t: SystemTime, body: &str) -> String {
    match format {
        LogFormat::Heartbeat => format!("{ident}[{pid}]: {} {body}", timestamp_secs(t)),
        LogFormat::Hb => format!("{} hbd[{pid}]: {body}", timestamp(t)),
    }
}

/// What the writer thread is sent.
#[derive(Debug)]
enum Msg {
    /// A line to write.
    Line(Line),
    /// Write everything before this, then answer.
    Flush(Sender<()>),
    /// Close the sinks and write to these from the next line on.
    Reconfigure(Box<Sinks>),
}

/// One formatted line on its way to the sinks.
#[derive(Debug)]
struct Line {
    level: Level,
    /// `level: message` (what syslog gets; it adds time and ident itself).
    body: String,
    /// When it was logged (the file line is laid out by the writer, in its sinks' format).
    at: SystemTime,
    /// The stderr (`--foreground`) form: `mono=<CLOCK_MONOTONIC ns> <LEVEL> <message>`, so a
    /// supervisor (the lab, tests) can line log events up with its own monotonic clock.
    console: String,
    /// The journal's `MESSAGE` (message and unstructured fields) and its structured fields.
    journal: Option<Box<(String, Structured)>>,
}

/// Values of [`STRUCTURED_FIELDS`] an event carried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Structured {
    event: Option<String>,
    peer: Option<String>,
    link: Option<String>,
    group: Option<String>,
    resource: Option<String>,
}

impl Structured {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "event" => &mut self.event,
            "peer" => &mut self.peer,
            "link" => &mut self.link,
            "group" => &mut self.group,
            "resource" => &mut self.resource,
            _ => return None,
        })
    }
}

/// The tracing layer: formats each event and queues it for the writer thread.
#[derive(Debug)]
pub struct HbLayer {
    max_level: Arc<AtomicU8>,
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
    journald: bool,
}

fn level_code(l: Level) -> u8 {
    match l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

impl HbLayer {
    fn max_level(&self) -> u8 {
        self.max_level.load(Ordering::Relaxed)
    }
}

struct Visitor<'a> {
    message: &'a mut String,
    fields: &'a mut String,
    structured: &'a mut Structured,
}

impl tracing::field::Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if let Some(slot) = self.structured.slot(field.name()) {
            *slot = Some(value.to_owned());
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if let Some(slot) = self.structured.slot(field.name()) {
            *slot = Some(format!("{value:?}"));
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for HbLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_code(*metadata.level()) <= self.max_level()
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level_code(level) > self.max_level() {
            return;
        }
        let mut message = String::new();
        let mut fields = String::new();
        let mut structured = Structured::default();
        event.record(&mut Visitor {
            message: &mut message,
            fields: &mut fields,
            structured: &mut structured,
        });
        let journal = self
            .journald
            .then(|| Box::new((format!("{message}{fields}"), structured)));
        let body = format!("{}: {message}{fields}", level_word(level));
        let console = format!(
            "mono={} {} {message}{fields}",
            crate::net::monotonic_now().as_nanos(),
            level.as_str()
        );
        match self.tx.try_send(Msg::Line(Line {
            level,
            body,
            at: SystemTime::now(),
            console,
            journal,
        })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps the writer thread alive; dropping it flushes every queued line and closes the sinks.
#[derive(Debug)]
pub struct LogGuard {
    dropped: Arc<AtomicU64>,
    // The thread ends once every sender (this one and the layer's) is gone.
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// The layer lives in the global subscriber until exit: flush on drop, do not join.
    global: bool,
    max_level: Arc<AtomicU8>,
    /// `--foreground`: kept across reloads.
    stderr: bool,
    /// The journal (`--journald`, systemd's `JOURNAL_STREAM`): kept across reloads.
    journald: bool,
}

impl LogGuard {
    /// Lines dropped because the writer thread fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until every line queued so far is written; `false` on
    /// timeout.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack_tx, ack_rx) = bounded(1);
        if tx.send_timeout(Msg::Flush(ack_tx), timeout).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Switches to `config`'s sinks, format and level (stderr and the journal stay as started). On an error
    /// (a log file that cannot be opened, an unknown facility) the running sinks are kept.
    pub fn reconfigure(&self, config: &LogConfig) -> Result<(), LogError> {
        let tx = self.tx.as_ref().ok_or(LogError::NotInstalled)?;
        reconfigure(tx, &self.max_level, (self.stderr, self.journald), config)
    }
}

fn reconfigure(
    tx: &Sender<Msg>,
    max_level: &AtomicU8,
    (stderr, journald): (bool, bool),
    config: &LogConfig,
) -> Result<(), LogError> {
    let config = LogConfig {
        stderr,
        journald,
        ..config.clone()
    };
    let sinks = open_sinks(&config)?;
    // Lines queued before this one are written to the old sinks.
    tx.send(Msg::Reconfigure(Box::new(sinks)))
        .map_err(|_| LogError::NotInstalled)?;
    max_level.store(level_code(max_level_of(&config)), Ordering::Relaxed);
    // Callsites cache whether they are enabled: recompute for the new level.
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// The installed logger's guard handle, for [`reload`].
static INSTALLED: std::sync::OnceLock<ReloadHandle> = std::sync::OnceLock::new();

#[derive(Debug)]
struct ReloadHandle {
    tx: Sender<Msg>,
    max_level: Arc<AtomicU8>,
    stderr: bool,
    journald: bool,
}

/// Switches the logger installed by [`init`] to `config` (ha.cf reloaded). `--foreground`
/// and the journal stay as started.
pub fn reload(config: &LogConfig) -> Result<(), LogError> {
    let h = INSTALLED.get().ok_or(LogError::NotInstalled)?;
    reconfigure(&h.tx, &h.max_level, (h.stderr, h.journald), config)
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if self.global {
            self.flush(std::time::Duration::from_secs(1));
            return;
        }
        // The layer is gone with its subscriber: closing our sender ends the thread after
        // it has written everything queued.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the writer thread writes, and how.
#[derive(Debug)]
pub struct Sinks {
    /// The journal: a tracing-journald layer, fed from this (the writer) thread so a slow
    /// journald never blocks the heartbeat path.
    journal: Option<tracing::Dispatch>,
    stderr: bool,
    logfile: Option<File>,
    debugfile: Option<(File, Level)>,
    syslog: bool,
    stderr_level: Level,
    format: LogFormat,
    ident: String,
    pid: u32,
}

fn open_append(path: &Path) -> Result<File, LogError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn syslog_priority(level: Level) -> libc::c_int {
    match level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
    }
}

/// Hands `line` to the journal layer: `MESSAGE`, `PRIORITY`, the structured fields.
fn write_journal(journal: &tracing::Dispatch, line: &Line) {
    let Some((message, s)) = line.journal.as_deref() else {
        return;
    };
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "hbd",
                $level,
                event = s.event.as_deref(),
                peer = s.peer.as_deref(),
                link = s.link.as_deref(),
                group = s.group.as_deref(),
                resource = s.resource.as_deref(),
                "{message}"
            )
        };
    }
    tracing::dispatcher::with_default(journal, || match line.level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        Level::TRACE => emit!(Level::TRACE),
    });
}

/// The journal layer: plain field names, `SYSLOG_IDENTIFIER=hbd`, syslog's priorities.
fn journal_dispatch() -> io::Result<tracing::Dispatch> {
    use tracing_journald::{Priority, PriorityMappings};
    let layer = tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("hbd".to_owned())
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        });
    Ok(tracing::Dispatch::new(
        tracing_subscriber::registry().with(layer),
    ))
}

fn write_line(sinks: &mut Sinks, line: &Line) {
    if let Some(journal) = &sinks.journal
        && line.level <= sinks.stderr_level
    {
        write_journal(journal, line);
    }
    if sinks.stderr && line.level <= sinks.stderr_level {
        let _ = writeln!(io::stderr().lock(), "{}", line.console);
    }
    let full = if sinks.logfile.is_some() || sinks.debugfile.is_some() {
        file_line(sinks.format, &sinks.ident, sinks.pid, line.at, &line.body)
    } else {
        String::new()
    };
    if let Some(f) = &mut sinks.logfile
        && line.level <= Level::INFO
    {
        let _ = writeln!(f, "{full}");
    }
    if let Some((f, max)) = &mut sinks.debugfile
        && line.level <= *max
    {
        let _ = writeln!(f, "{full}");
    }
    if sinks.syslog && line.level <= Level::INFO {
        let text = CString::new(line.body.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the format is a NUL-terminated "%s" and the argument a live C string.
        unsafe { libc::syslog(syslog_priority(line.level), c"%s".as_ptr(), text.as_ptr()) };
    }
}

fn max_level_of(config: &LogConfig) -> Level {
    if config.debug > 0 {
        Level::DEBUG
    } else {
        Level::INFO
    }
}

/// syslog identifiers handed to `openlog` (which keeps the pointer): one leaked copy per
/// distinct name, so a reload back and forth does not leak more.
fn static_ident(name: &str) -> &'static std::ffi::CStr {
    static IDENTS: std::sync::Mutex<Vec<&'static std::ffi::CStr>> =
        std::sync::Mutex::new(Vec::new());
    let mut idents = IDENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = idents.iter().find(|i| i.to_bytes() == name.as_bytes()) {
        return i;
    }
    let c = CString::new(name.replace('\0', " ")).unwrap_or_default();
    let leaked: &'static std::ffi::CStr = Box::leak(c.into_boxed_c_str());
    idents.push(leaked);
    leaked
}

/// Opens the sinks `config` names (files opened for appending; syslog opened with the
/// identifier).
fn open_sinks(config: &LogConfig) -> Result<Sinks, LogError> {
    let max_level = max_level_of(config);
    let facility = match &config.logfacility {
        Some(name) => Some(facility(name).ok_or_else(|| LogError::Facility(name.clone()))?),
        None => None,
    };
    let journal = if config.journald {
        Some(journal_dispatch().map_err(LogError::Journald)?)
    } else {
        None
    };
    let sinks = Sinks {
        // The journal takes stderr's place (under systemd, stderr is the journal too).
        stderr: config.stderr && journal.is_none(),
        journal,
        logfile: config.logfile.as_deref().map(open_append).transpose()?,
        debugfile: config
            .debugfile
            .as_deref()
            .map(open_append)
            .transpose()?
            .map(|f| (f, max_level)),
        syslog: facility.is_some(),
        stderr_level: max_level,
        format: config.format,
        ident: config.ident.clone(),
        pid: std::process::id(),
    };
    match facility {
        Some(fac) => {
            let ident = static_ident(&config.ident);
            // SAFETY: the ident is a 'static C string, as openlog requires (it keeps the
            // pointer).
            unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, fac) };
        }
        None => {
            // SAFETY: closelog has no preconditions.
            unsafe { libc::closelog() };
        }
    }
    Ok(sinks)
}

fn close_sinks(sinks: &mut Sinks) {
    if let Some(f) = &mut sinks.logfile {
        let _ = f.sync_data();
    }
    if let Some((f, _)) = &mut sinks.debugfile {
        let _ = f.sync_data();
    }
}

/// Builds the layer for `config` and starts its writer thread. Use [`init`] to install it
/// globally; tests install it with `tracing::subscriber::with_default`.
pub fn layer(config: &LogConfig) -> Result<(HbLayer, LogGuard), LogError> {
    let max_level = Arc::new(AtomicU8::new(level_code(max_level_of(config))));
    let mut sinks = open_sinks(config)?;
    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = bounded(QUEUE_LINES);
    let thread = std::thread::Builder::new()
        .name("hbd-log".into())
        .spawn(move || {
            for msg in rx {
                match msg {
                    Msg::Line(line) => write_line(&mut sinks, &line),
                    Msg::Flush(ack) => {
                        if let Some(f) = &mut sinks.logfile {
                            let _ = f.flush();
                        }
                        let _ = ack.send(());
                    }
                    Msg::Reconfigure(new) => {
                        close_sinks(&mut sinks);
                        sinks = *new;
                    }
                }
            }
            close_sinks(&mut sinks);
        })
        .map_err(LogError::Thread)?;
    let dropped = Arc::new(AtomicU64::new(0));
    Ok((
        HbLayer {
            max_level: Arc::clone(&max_level),
            tx: tx.clone(),
            dropped: dropped.clone(),
            journald: config.journald,
        },
        LogGuard {
            dropped,
            tx: Some(tx),
            thread: Some(thread),
            global: false,
            max_level,
            stderr: config.stderr,
            journald: config.journald,
        },
    ))
}

/// Installs the layer as the global subscriber. Keep the guard for the life of the process:
/// its drop waits (at most 1 s) for the lines queued so far to be written.
pub fn init(config: &LogConfig) -> Result<LogGuard, LogError> {
    let (layer, mut guard) = layer(config)?;
    guard.global = true;
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|_| LogError::AlreadyInstalled)?;
    if let Some(tx) = &guard.tx {
        let _ = INSTALLED.set(ReloadHandle {
            tx: tx.clone(),
            max_level: Arc::clone(&guard.max_level),
            stderr: guard.stderr,
            journald: guard.journald,
        });
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hb's layout: `2026/11/26_01:02:03.123 hbd[PID]: info: message`.
    fn check_hb_line(line: &str, level: &str, message: &str) {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 23, "{line}");
        let b = stamp.as_bytes();
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'/', b'/', b'_', b':', b':', b'.')
        );
        assert!(
            stamp.chars().filter(char::is_ascii_digit).count() == 17,
            "{line}"
        );
        let expected = format!("hbd[{}]: {level}: {message}", std::process::id());
        assert_eq!(rest, expected);
    }

    /// Heartbeat's ha-log layout: `IDENT[PID]: 2026/11/26_01:02:03 info: message`.
    fn check_line_as(ident: &str, line: &str, level: &str, message: &str) {
        let prefix = format!("{ident}[{}]: ", std::process::id());
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"));
        let (stamp, rest) = rest.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 19, "{line}");
        let b = stamp.as_bytes();
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16]),
            (b'/', b'/', b'_', b':', b':')
        );
        assert_eq!(
            stamp.chars().filter(char::is_ascii_digit).count(),
            14,
            "{line}"
        );
        assert_eq!(rest, format!("{level}: {message}"));
    }

    fn check_line(line: &str, level: &str, message: &str) {
        check_line_as("heartbeat", line, level, message);
    }

    #[test]
    fn files_get_heartbeat_style_lines_by_level() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = dir.path().join("ha-log");
        let debugfile = dir.path().join("ha-debug");
        let config = LogConfig {
            logfile: Some(logfile.clone()),
            debugfile: Some(debugfile.clone()),
            debug: 1,
            ..LogConfig::default()
        };
        let (layer, guard) = layer(&config).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("Link node2:eth1 up.");
            tracing::debug!("checking links");
            tracing::warn!(node = "node2", "Late heartbeat");
            tracing::error!("Cannot start group 0");
        });
        drop(guard);
        let log = std::fs::read_to_string(&logfile).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        check_line(lines[0], "info", "Link node2:eth1 up.");
        check_line(lines[1], "WARN", "Late heartbeat node=node2");
        check_line(lines[2], "ERROR", "Cannot start group 0");
        let debug = std::fs::read_to_string(&debugfile).unwrap();
        let lines: Vec<&str> = debug.lines().collect();
        assert_eq!(lines.len(), 4, "{debug}");
        check_line(lines[1], "debug", "checking links");
    }

    #[test]
    fn hb_layout_and_reconfigure_switch_file_format_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        let config = LogConfig {
            logfile: Some(first.clone()),
            format: LogFormat::Hb,
            ..LogConfig::default()
        };
        let (layer, guard) = layer(&config).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("before");
            tracing::debug!("not written");
            guard
                .reconfigure(&LogConfig {
                    logfile: Some(second.clone()),
                    debugfile: Some(second.clone()),
                    debug: 1,
                    ident: "hb-web".into(),
                    ..LogConfig::default()
                })
                .unwrap();
            tracing::info!("after");
            tracing::debug!("debug now");
        });
        drop(guard);
        let one = std::fs::read_to_string(&first).unwrap();
        let lines: Vec<&str> = one.lines().collect();
        assert_eq!(lines.len(), 1, "{one}");
        check_hb_line(lines[0], "info", "before");
        let two = std::fs::read_to_string(&second).unwrap();
        let lines: Vec<&str> = two.lines().collect();
        // `after` goes to both logfile and debugfile (the same file here), `debug now` once.
        assert_eq!(lines.len(), 3, "{two}");
        check_line_as("hb-web", lines[0], "info", "after");
        check_line_as("hb-web", lines[2], "debug", "debug now");
    }

    #[test]
    fn debug_zero_keeps_debug_out_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let debugfile = dir.path().join("ha-debug");
        std::fs::write(&debugfile, "older line\n").unwrap();
        let config = LogConfig {
            debugfile: Some(debugfile.clone()),
            ..LogConfig::default()
        };
        let (layer, guard) = layer(&config).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::debug!("not written");
            tracing::info!("written");
        });
        drop(guard);
        let text = std::fs::read_to_string(&debugfile).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "older line");
        check_line(lines[1], "info", "written");
    }

    #[test]
    fn facilities_map_and_unknown_is_refused() {
        assert_eq!(facility("local0"), Some(libc::LOG_LOCAL0));
        assert_eq!(facility("DAEMON"), Some(libc::LOG_DAEMON));
        assert_eq!(facility("nowhere"), None);
        let config = LogConfig {
            logfacility: Some("nowhere".into()),
            ..LogConfig::default()
        };
        assert!(matches!(layer(&config), Err(LogError::Facility(_))));
    }

    #[test]
    fn timestamp_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_790_000_000_123);
        let s = timestamp(t);
        assert_eq!(s.len(), 23, "{s}");
        assert!(s.ends_with(".123"), "{s}");
    }
}
