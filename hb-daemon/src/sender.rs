//! The send path: a thread of its own ("hb-send") that sends the periodic heartbeats at their
//! deadlines, so no other work of hbd can delay them (issue 20).
//!
//! Measured before it existed (BENCHMARKS.md, "Send path at 1 kHz"): the heartbeat loop slept
//! on tokio's timer, whose wheel has a 1 ms resolution and rounds every deadline up, so at
//! `keepalive 1ms` one turn in nine slept 2-2.5 ms instead of 1 ms; and the loop did everything
//! else between two sends (draining the ring and the sockets, metrics, logging, control calls,
//! a reload's file reads and XDP attach). Here the thread sleeps to the absolute deadline with
//! `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` (with timer slack 1 ns), wakes, calls the
//! core under a short lock ([`Node::handle_heartbeat_timeout`]: the core still decides what is
//! sent and when; it never reads the clock), takes only the transmits out
//! ([`Node::poll_transmit`]), encodes, signs and sends them, and records how late each send
//! was ([`SendStats`]: the send jitter `hbstat` and Prometheus show) and, of that, how late the
//! thread woke: the wake-up latency is the machine's (timer, scheduler, and on a VM the
//! host waking a halted vCPU), the rest is hbd's own (the core, signing, sending, waiting for
//! the lock the main loop holds). Whatever else the core
//! queued (a `Late wakeup` event, a start the announcement allowed) is left for the main loop,
//! which is woken for it. With `realtime on` the thread runs SCHED_FIFO one priority above the
//! main loop; where that is not permitted it says so once, by name, and runs at normal
//! priority.
//!
//! Peer deaths stay with the main loop: judging needs every queued heartbeat handed in first,
//! and that loop no longer wakes for the periodic heartbeat, only for input and deadlines.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use hb_proto::{
    Timestamp,
    config::AuthKey,
    message::Message,
    node::{LinkId, Node},
    packet,
};
use serde::{Deserialize, Serialize};

use crate::{
    metrics::{HistogramSummary, LatencyHistogram},
    net::{MediumSender, monotonic_now},
};

/// Longest single sleep of the send thread: it re-reads the core's deadline at least this
/// often (a reload may bring the next heartbeat forward; a stop ends the thread).
pub const MAX_SLEEP: Duration = Duration::from_millis(50);

/// SCHED_FIFO priority of the send thread with `realtime on` (the main loop runs at 50).
pub const SEND_PRIORITY: i32 = 51;

/// Locks `m`, also after a thread panicked while holding it (the data is still consistent for
/// what hbd does with it: counters and the core, whose methods do not unwind half-way).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The media sockets and the signing key, shared by the send thread and the main loop (which
/// sends the immediate announcements of a state change and the shutdown notices).
#[derive(Debug)]
pub struct Tx {
    senders: Vec<Option<MediumSender>>,
    key: Option<AuthKey>,
}

impl Tx {
    /// The media, by link index (`None`: could not be opened), signing with `key`.
    pub fn new(senders: Vec<Option<MediumSender>>, key: Option<AuthKey>) -> Self {
        Self { senders, key }
    }

    /// A new signing key (a reload).
    pub fn set_key(&mut self, key: Option<AuthKey>) {
        self.key = key;
    }

    /// Encodes, signs and sends `msg` on `link`; `Err` is the error label to count.
    pub fn send(&mut self, link: usize, msg: &Message) -> Result<(), &'static str> {
        let Some(key) = self.key.as_ref() else {
            return Err("no_active_key");
        };
        let bytes = packet::encode(msg, key).map_err(|e| {
            tracing::error!("encoding a heartbeat: {e}");
            "encode"
        })?;
        match self.senders.get_mut(link) {
            Some(Some(sender)) => sender.send(&bytes).map_err(|e| e.label),
            _ => Ok(()),
        }
    }
}

/// Send jitter of one link, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLinkStats {
    /// Interface name.
    pub link: String,
    /// Periodic heartbeats sent on the link by the send thread.
    pub sent: u64,
    /// Send jitter: when the datagram was handed to the kernel minus when the core scheduled
    /// it (its deadline).
    pub jitter: HistogramSummary,
    /// The wake-up part of `jitter`: when the send thread woke for the heartbeat (its sleep
    /// returned) minus when it was due. What `jitter` has beyond it is hbd's own time.
    #[serde(default)]
    pub wakeup: HistogramSummary,
}

/// What the send thread records: per link, the periodic heartbeats it sent and how late.
#[derive(Debug)]
pub struct SendStats {
    /// Per link: name, sent, jitter, wake-up latency.
    links: Vec<(String, u64, LatencyHistogram, LatencyHistogram)>,
    errors: BTreeMap<&'static str, u64>,
}

impl SendStats {
    /// One entry per link name, in link order.
    pub fn new<S: AsRef<str>>(links: &[S]) -> Self {
        Self {
            links: links
                .iter()
                .map(|l| {
                    (
                        l.as_ref().to_owned(),
                        0,
                        LatencyHistogram::new(),
                        LatencyHistogram::new(),
                    )
                })
                .collect(),
            errors: BTreeMap::new(),
        }
    }

    /// A periodic heartbeat scheduled at `due`, for which the send thread woke at `woke`,
    /// was handed to the kernel on `link` at `at`.
    pub fn record(&mut self, link: usize, due: Timestamp, woke: Timestamp, at: Timestamp) {
        if let Some((_, sent, jitter, wakeup)) = self.links.get_mut(link) {
            *sent = sent.saturating_add(1);
            jitter.record(at.saturating_since(due));
            wakeup.record(woke.saturating_since(due));
        }
    }

    /// A send error of `kind`.
    pub fn record_error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// Per link, as reported.
    pub fn report(&self) -> Vec<SendLinkStats> {
        self.links
            .iter()
            .map(|(link, sent, jitter, wakeup)| SendLinkStats {
                link: link.clone(),
                sent: *sent,
                jitter: jitter.summary(),
                wakeup: wakeup.summary(),
            })
            .collect()
    }

    /// Send errors by kind.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.errors.iter().map(|(k, v)| (*k, *v))
    }

    /// A new statistics window.
    pub fn reset(&mut self) {
        for (_, sent, jitter, wakeup) in &mut self.links {
            *sent = 0;
            jitter.reset();
            wakeup.reset();
        }
        for v in self.errors.values_mut() {
            *v = 0;
        }
    }
}

/// What the main loop and the send thread share.
#[derive(Debug)]
pub struct Shared {
    /// The core.
    pub node: Mutex<Node>,
    /// Sockets and key.
    pub tx: Mutex<Tx>,
    /// Send jitter and errors of the send thread.
    pub stats: Mutex<SendStats>,
    /// The send thread left outputs in the core for the main loop.
    pub wake: tokio::sync::Notify,
    /// The main loop let the XDP program queue heartbeats that repeat their sender's state
    /// (the core was steady): the send thread wakes the loop when the core stops being so.
    pub batching: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// `node` (switched to a separate heartbeat timer), `tx` and per-link statistics.
    pub fn new(mut node: Node, tx: Tx, links: &[String]) -> Arc<Self> {
        node.set_separate_heartbeat_timer(true);
        Arc::new(Self {
            node: Mutex::new(node),
            tx: Mutex::new(tx),
            stats: Mutex::new(SendStats::new(links)),
            wake: tokio::sync::Notify::new(),
            batching: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        })
    }
}

/// The running send thread; dropping it stops the thread (within [`MAX_SLEEP`]).
#[derive(Debug)]
pub struct SendPath {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SendPath {
    /// Starts the thread; `realtime`: try SCHED_FIFO [`SEND_PRIORITY`].
    pub fn start(shared: Arc<Shared>, realtime: bool) -> std::io::Result<Self> {
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("hb-send".to_owned())
            .spawn(move || run(&s, realtime))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for SendPath {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets SCHED_FIFO `priority` on the calling thread.
pub fn set_fifo(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sleeps until `t` on CLOCK_MONOTONIC (absolute: no drift from the time spent computing the
/// wait, no rounding to a tick).
pub fn sleep_until(t: Timestamp) {
    let ns = t.as_nanos();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(ns / 1_000_000_000).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(ns % 1_000_000_000).unwrap_or(0),
    };
    loop {
        // SAFETY: valid timespec; a null remainder is allowed with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

fn run(shared: &Shared, realtime: bool) {
    if realtime {
        match set_fifo(SEND_PRIORITY) {
            Ok(()) => tracing::info!(
                "realtime: heartbeat send thread runs SCHED_FIFO priority {SEND_PRIORITY}"
            ),
            Err(e) => tracing::warn!(
                "realtime: cannot set SCHED_FIFO on the heartbeat send thread ({e}); it runs at \
                 normal priority (needs CAP_SYS_NICE)"
            ),
        }
    }
    // SAFETY: prctl with an integer argument; the smallest slack the kernel takes.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut out: Vec<(LinkId, Message)> = Vec::with_capacity(8);
    // (link, handed to the kernel at, this heartbeat's own periodic send, result)
    let mut sent: Vec<(usize, Timestamp, bool, Result<(), &'static str>)> = Vec::with_capacity(8);
    // When the last sleep returned (the wake-up), before any lock is taken.
    let mut woke = None;
    while !shared.stop.load(Ordering::Acquire) {
        let Some(due) = lock(&shared.node).heartbeat_deadline() else {
            return;
        };
        let now = monotonic_now();
        if now < due {
            sleep_until(due.min(now + MAX_SLEEP));
            woke = Some(monotonic_now());
            continue;
        }
        // Not asleep when it fell due (the previous turn ran long): none of it is wake-up.
        let woke_at = woke.take().unwrap_or(due);
        let more = {
            let mut node = lock(&shared.node);
            if !node.handle_heartbeat_timeout(now) {
                continue;
            }
            while let Some(t) = node.poll_transmit() {
                out.push(t);
            }
            // Also when the core just stopped being steady: the main loop turns batching off.
            node.has_output()
                || (shared.batching.load(Ordering::Acquire) && node.wants_every_message())
        };
        {
            let mut tx = lock(&shared.tx);
            for (link, msg) in out.drain(..) {
                let at = monotonic_now();
                // A transmit the main loop queued a moment ago (it may be taken here first)
                // was not scheduled for `due`: sent, not counted as jitter.
                let periodic = msg.send_time == now;
                sent.push((link.0, at, periodic, tx.send(link.0, &msg)));
            }
        }
        {
            let mut stats = lock(&shared.stats);
            for (link, at, periodic, r) in sent.drain(..) {
                if periodic {
                    stats.record(link, due, woke_at, at);
                }
                if let Err(kind) = r {
                    stats.record_error(kind);
                }
            }
        }
        if more {
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_to_an_absolute_deadline() {
        let t = monotonic_now() + Duration::from_millis(3);
        sleep_until(t);
        let woke = monotonic_now();
        assert!(woke >= t, "woke before the deadline");
        // A deadline in the past returns at once.
        let before = monotonic_now();
        sleep_until(Timestamp(1));
        assert!(monotonic_now().saturating_since(before) < Duration::from_secs(1));
    }

    #[test]
    fn send_stats_record_jitter_per_link_and_reset() {
        let mut s = SendStats::new(&["eth1", "eth2"]);
        s.record(
            0,
            Timestamp(1_000_000),
            Timestamp(1_020_000),
            Timestamp(1_030_000),
        );
        s.record(
            0,
            Timestamp(2_000_000),
            Timestamp(2_000_000),
            Timestamp(2_010_000),
        );
        // Woke before it was due (a sleep returning early): no wake-up latency.
        s.record(
            1,
            Timestamp(2_000_000),
            Timestamp(1_999_000),
            Timestamp(2_000_000),
        );
        s.record(7, Timestamp(0), Timestamp(0), Timestamp(5));
        s.record_error("send_eperm");
        let r = s.report();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].link.as_str(), r[0].sent), ("eth1", 2));
        assert_eq!(r[0].jitter.sum_ns, 40_000);
        assert!(r[0].jitter.max_ns.abs_diff(30_000) <= 30);
        assert_eq!((r[0].wakeup.count, r[0].wakeup.sum_ns), (2, 20_000));
        assert!(r[0].wakeup.max_ns.abs_diff(20_000) <= 20);
        assert_eq!(r[1].sent, 1);
        assert_eq!((r[1].wakeup.count, r[1].wakeup.sum_ns), (1, 0));
        assert_eq!(s.errors().collect::<Vec<_>>(), [("send_eperm", 1)]);
        s.reset();
        assert_eq!(s.report()[0].sent, 0);
        assert_eq!(s.report()[0].jitter.count, 0);
        assert_eq!(s.report()[0].wakeup.count, 0);
        assert_eq!(s.errors().collect::<Vec<_>>(), [("send_eperm", 0)]);
    }
}
