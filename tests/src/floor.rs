//! The machine's wake-up floor beside hb: cyclictest (Debian's rt-tests), bare real-time
//! sleepers that wake as hb's send thread does for a heartbeat (SCHED_FIFO, absolute
//! CLOCK_MONOTONIC sleeps of one interval, memory locked) and do nothing else, in a process of
//! their own. Without its `/dev/cpu_dma_latency` request (`--laptop`: hbd makes none, and on a
//! haltpoll guest it would change how idle CPUs wait). cyclictest pins its thread N to CPU N,
//! where hb's send thread may run on any: a stall of one CPU inside the machine (a
//! higher-priority task, a long softirq) the floor sees in full, while hb's thread may be woken
//! on the other CPU; a stall of the whole vCPU by the host both see alike. The floor is thus
//! at most as good as the machine is for hb, never better.
//!
//! Its wake-up latency is what any program waking at that rate gets on this machine under the
//! same load. The 1 kHz benchmark shows it beside hb's send jitter; the flood test holds hbd's
//! `Late wakeup` count to what the floor shows over the same window (on a VM whose host does
//! not run a busy vCPU for milliseconds, both nodes' send threads wake 5-13 ms late at the
//! same instant: the machine's lateness, not hbd's).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use nix::{sys::signal::Signal, unistd::Pid};

/// What the floor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorSpec {
    /// Sleeping threads (one per thread of hb's compared with it).
    pub threads: u32,
    /// Each thread's period.
    pub interval: Duration,
    /// SCHED_FIFO priority (hb's send thread's: `hb_daemon::sender::SEND_PRIORITY`).
    pub priority: u32,
    /// Histogram range, us, in 1 us buckets (a latency beyond it counts as an overflow).
    pub histogram_us: u32,
}

/// A running cyclictest, killed on drop; [`Floor::stop`] ends it and reads its histogram.
#[derive(Debug)]
pub struct Floor {
    child: Option<Child>,
    steal_at_start: Option<u64>,
}

impl Floor {
    /// Starts cyclictest with `spec`, until [`Floor::stop`] (or drop).
    pub fn start(spec: FloorSpec) -> Result<Floor> {
        let steal_at_start = steal_ticks();
        let interval_us = spec.interval.as_micros().max(1);
        let child = Command::new("cyclictest")
            .args(["-q", "-m", "--laptop"])
            .arg(format!("-t{}", spec.threads.max(1)))
            .arg(format!("-i{interval_us}"))
            .arg(format!("-p{}", spec.priority))
            .arg(format!("-h{}", spec.histogram_us))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting cyclictest (Debian's rt-tests)")?;
        Ok(Floor {
            child: Some(child),
            steal_at_start,
        })
    }

    /// cyclictest's pid (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops cyclictest (SIGINT: it prints its histogram and exits) and reads what it saw.
    pub fn stop(mut self) -> Result<Latencies> {
        let child = self.child.take().context("cyclictest already stopped")?;
        let pid = i32::try_from(child.id()).context("cyclictest pid")?;
        let sent = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGINT);
        let out = child.wait_with_output().context("waiting for cyclictest")?;
        // An exit before the signal (cyclictest refused its arguments, say) says why on stderr.
        ensure!(
            out.status.success(),
            "cyclictest failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        sent.context("stopping cyclictest")?;
        let mut l = Latencies::parse(&String::from_utf8_lossy(&out.stdout))?;
        if let (Some(a), Some(b)) = (self.steal_at_start, steal_ticks()) {
            l.steal = Some(ticks(b.saturating_sub(a)));
        }
        Ok(l)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// cyclictest's wake-up latencies, all threads together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    /// `(latency us, wake-ups)`, ascending, 1 us wide.
    buckets: Vec<(u64, u64)>,
    /// Wake-ups beyond the histogram's range.
    pub overflows: u64,
    /// The largest latency, us.
    pub max_us: u64,
    /// CPU time the host took from this machine meanwhile (`steal` in `/proc/stat`, all CPUs;
    /// `None` where it cannot be read).
    pub steal: Option<Duration>,
}

impl Latencies {
    /// Reads the output of `cyclictest -q -h N` (rt-tests 2.4), one column per thread.
    pub fn parse(out: &str) -> Result<Latencies> {
        let mut l = Latencies::default();
        let mut max = None;
        let sum = |v: &str| -> Result<u64> {
            v.split_whitespace()
                .map(|n| n.parse::<u64>().with_context(|| format!("cyclictest: {v}")))
                .sum()
        };
        for line in out.lines() {
            if let Some(v) = line.strip_prefix("# Histogram Overflows:") {
                l.overflows = sum(v)?;
            } else if let Some(v) = line.strip_prefix("# Max Latencies:") {
                let per_thread = v
                    .split_whitespace()
                    .map(str::parse::<u64>)
                    .collect::<Result<Vec<_>, _>>()
                    .context("cyclictest max")?;
                max = per_thread.into_iter().max();
            } else if !line.starts_with('#') {
                let mut f = line.split_whitespace();
                if let Some(Ok(us)) = f.next().map(str::parse::<u64>)
                    && let Ok(n) = f.map(str::parse::<u64>).sum::<Result<u64, _>>()
                {
                    l.buckets.push((us, n));
                }
            }
        }
        l.max_us = max.context("cyclictest printed no `# Max Latencies` line")?;
        ensure!(l.samples() > 0, "cyclictest measured nothing");
        Ok(l)
    }

    /// Wake-ups measured.
    pub fn samples(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum::<u64>() + self.overflows
    }

    /// The `q` quantile, us; one that falls among the overflows is the largest latency.
    pub fn percentile(&self, q: f64) -> u64 {
        let want = (q * self.samples() as f64).ceil() as u64;
        let mut acc = 0;
        for (us, n) in &self.buckets {
            acc += n;
            if acc >= want {
                return *us;
            }
        }
        self.max_us
    }

    /// Wake-ups later than `late` (overflows among them when `late` is within the range).
    pub fn above(&self, late: Duration) -> u64 {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.buckets
            .iter()
            .filter(|(b, _)| *b > us)
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.overflows
    }
}

/// `steal` of `/proc/stat`'s `cpu` line (USER_HZ ticks, all CPUs).
fn steal_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal(&stat)
}

fn parse_steal(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Duration::from_nanos(n.saturating_mul(1_000_000_000) / hz)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_histogram_percentiles() {
        // The shape of `cyclictest -q -h N` (rt-tests 2.4), shortened: 1000 wake-ups.
        let out = "# Histogram\n000009 000900\n000010 000090\n000400 000009\n000401 000000\n\
                   # Total: 000000999\n# Min Latencies: 00009\n# Avg Latencies: 00012\n\
                   # Max Latencies: 25000\n# Histogram Overflows: 00001\n\
                   # Histogram Overflow at cycle number:\n# Thread 0: 00042\n";
        let l = Latencies::parse(out).unwrap();
        assert_eq!(l.samples(), 1000);
        assert_eq!((l.percentile(0.99), l.percentile(0.999)), (10, 400));
        assert_eq!(l.max_us, 25000);
        assert_eq!(l.above(Duration::from_micros(10)), 10);
        assert_eq!(l.above(Duration::from_micros(400)), 1);
        // The last wake-up is an overflow: the top percentile is the largest latency.
        assert_eq!(l.percentile(1.0), 25000);
        // p99.9 among the overflows: reported as the largest latency.
        let two = out
            .replace("000400 000009", "000400 000008")
            .replace("Overflows: 00001", "Overflows: 00002");
        assert_eq!(Latencies::parse(&two).unwrap().percentile(0.999), 25000);
        assert!(Latencies::parse("# Histogram\n").is_err());
    }

    #[test]
    fn threads_are_summed_and_the_max_is_the_largest() {
        // `-t 2`: a column per thread, as printed here.
        let out = "# Histogram\n000028 000000\t000001\n000034 000002\t000000\n\
                   006000 000001\t000001\n# Total: 000000003 000000002\n\
                   # Max Latencies: 06000 07100\n# Histogram Overflows: 00000 00001\n\
                   # Thread 0:\n# Thread 1: 00007\n";
        let l = Latencies::parse(out).unwrap();
        assert_eq!(l.samples(), 6);
        assert_eq!(l.max_us, 7100);
        assert_eq!(l.above(Duration::from_millis(5)), 3);
    }

    #[test]
    fn steal_is_the_eighth_number_of_the_cpu_line() {
        let stat = "cpu  640 0 443 15710 59 0 13 17 0 0\ncpu0 320 0 200 7000 30 0 6 9 0 0\n";
        assert_eq!(parse_steal(stat), Some(17));
        assert_eq!(parse_steal("cpu0 1 2 3\n"), None);
        assert_eq!(parse_steal("cpu  1 2 3 4 5 6 7\n"), None);
    }
}
