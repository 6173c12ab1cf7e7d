//! Failover timelines from hbd's logs and the client's probes.
//!
//! hbd's log lines are expected as `mono=<ns> <LEVEL> <message>`: the first field is
//! CLOCK_MONOTONIC in decimal nanoseconds, then one level word, then the message, for example
//! `mono=81234567890 WARN node n1: is dead`. Lines without a leading `mono=` field (panics,
//! output of resource scripts) are skipped. The messages looked for are Heartbeat's wording plus
//! hb's own two lines, matched as substrings of the message:
//! - `node n1: is dead`
//! - `Taking over resource group IPaddr::...`
//! - `Acquiring resource group: ...`
//! - `mach_down takeover complete for node n1.`
//! - `hb: address 10.x.y.100 added on eth1`
//! - `hb: gratuitous ARP sent for 10.x.y.100 on eth1`

use std::{fmt, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{Node, probe::ProbeLog};

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// CLOCK_MONOTONIC ns from the `mono=` field.
    pub mono_ns: u64,
    /// The level word (`INFO`, `WARN`, ...).
    pub level: String,
    /// The rest of the line.
    pub message: String,
}

/// Parses `mono=<ns> <level> <message>`; `None` for any other line.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let rest = line.trim_start().strip_prefix("mono=")?;
    let (ns, rest) = rest.split_once(char::is_whitespace)?;
    let mono_ns = ns.parse().ok()?;
    let rest = rest.trim_start();
    let (level, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Some(LogLine {
        mono_ns,
        level: level.to_owned(),
        message: message.trim().to_owned(),
    })
}

/// Parses every `mono=` line of a log.
pub fn parse_log(text: &str) -> Vec<LogLine> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads and parses a log file; a missing file is an empty log.
pub fn read_log(path: &Path) -> Result<Vec<LogLine>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_log(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The first line at or after `after_ns` whose message contains `needle`.
pub fn first_after(log: &[LogLine], needle: &str, after_ns: u64) -> Option<u64> {
    log.iter()
        .find(|l| l.mono_ns >= after_ns && l.message.contains(needle))
        .map(|l| l.mono_ns)
}

/// The exact message hb prints when it added the VIP.
pub fn address_added(vip: Ipv4Addr, iface: &str) -> String {
    format!("hb: address {vip} added on {iface}")
}

/// The exact message hb prints when it sent a gratuitous ARP.
pub fn garp_sent(vip: Ipv4Addr, iface: &str) -> String {
    format!("hb: gratuitous ARP sent for {vip} on {iface}")
}

/// Heartbeat's line when a node is declared dead.
pub fn is_dead(node: Node) -> String {
    format!("node {node}: is dead")
}

/// From hb's line `hb: node X declared dead N ms after its last heartbeat arrived (deadtime D
/// ms)`: N, how long after the kernel arrival time of the peer's last heartbeat hbd declared it
/// dead. `None` for any other line.
pub fn declared_dead_after_ms(message: &str) -> Option<f64> {
    message
        .split_once(" declared dead ")?
        .1
        .split_once(" ms after its last heartbeat arrived")?
        .0
        .parse()
        .ok()
}

/// One row of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What happened.
    pub label: String,
    /// When (CLOCK_MONOTONIC ns), or `None` when not seen.
    pub at_ns: Option<u64>,
}

/// A timeline of one move of the resource group, relative to the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Heading.
    pub title: String,
    /// The causing event (kill, restart...), CLOCK_MONOTONIC ns.
    pub t0_ns: u64,
    /// The rows, in the order the issue lists them.
    pub rows: Vec<Row>,
    /// Client-observed outage, when both answers were seen.
    pub outage: Option<Duration>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new(title: impl Into<String>, t0_ns: u64) -> Self {
        Self {
            title: title.into(),
            t0_ns,
            rows: Vec::new(),
            outage: None,
        }
    }

    /// Appends a row.
    pub fn row(&mut self, label: impl Into<String>, at_ns: Option<u64>) -> &mut Self {
        self.rows.push(Row {
            label: label.into(),
            at_ns,
        });
        self
    }

    /// The time of the row labelled `label`.
    pub fn at(&self, label: &str) -> Option<u64> {
        self.rows.iter().find(|r| r.label == label)?.at_ns
    }
}

/// Signed milliseconds of `at - t0`.
fn offset_ms(at: u64, t0: u64) -> f64 {
    (at as f64 - t0 as f64) / 1e6
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        for r in &self.rows {
            match r.at_ns {
                Some(at) => writeln!(f, "  {:>+10.3} ms  {}", offset_ms(at, self.t0_ns), r.label)?,
                None => writeln!(f, "  {:>10}     {}", "not seen", r.label)?,
            }
        }
        match self.outage {
            Some(d) => writeln!(
                f,
                "  client-observed outage: {:.3} ms",
                d.as_secs_f64() * 1e3
            ),
            None => writeln!(
                f,
                "  client-observed outage: not measured (an answer is missing)"
            ),
        }
    }
}

/// A move of the resource group, for [`takeover_timeline`].
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    /// Heading.
    pub title: &'a str,
    /// The causing event: `old` killed (failover) or `old` restarted (failback), ns.
    pub t0_ns: u64,
    /// The owner before.
    pub old: Node,
    /// The owner after.
    pub new: Node,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// Add the row for the new owner's `node OLD: is dead` line (failover only).
    pub declared_dead: bool,
}

/// The timeline of a [`Move`], from the client's probes and the new owner's log.
pub fn takeover_timeline(m: &Move<'_>, probes: &ProbeLog, new_log: &[LogLine]) -> Timeline {
    let Move {
        title,
        t0_ns,
        old,
        new,
        vip,
        declared_dead,
    } = *m;
    let mut t = Timeline::new(title, t0_ns);
    let outage = probes.outage(old, new, t0_ns);
    let first_new = probes.first_served_by(new, t0_ns);
    let last_old = match first_new {
        Some(f) => probes.last_served_by(old, f),
        None => probes.last_served_by(old, u64::MAX),
    };
    t.row(format!("last answer from {old}"), last_old);
    if declared_dead {
        t.row(
            format!("{old} declared dead"),
            first_after(new_log, &is_dead(old), t0_ns),
        );
    }
    t.row(
        format!("VIP added on {new}"),
        first_after(new_log, &address_added(vip, "eth1"), t0_ns),
    );
    t.row(
        "first gratuitous ARP",
        first_after(new_log, &garp_sent(vip, "eth1"), t0_ns),
    );
    t.row(format!("first answer from {new}"), first_new);
    t.outage = outage.map(|o| o.duration());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::probe::{Outcome, ProbeSample};

    #[test]
    fn parses_mono_lines_and_skips_others() {
        let log = parse_log(
            "mono=1000 WARN node n1: is dead\n\
             thread 'main' panicked\n\
             mono=x INFO nope\n\
             mono=2000 INFO hb: address 10.213.7.100 added on eth1\n\
             mono=3000 INFO\n",
        );
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].mono_ns, 1000);
        assert_eq!(log[0].level, "WARN");
        assert_eq!(log[0].message, "node n1: is dead");
        assert_eq!(log[2].message, "");
        let vip = Ipv4Addr::new(10, 213, 7, 100);
        assert_eq!(
            first_after(&log, &address_added(vip, "eth1"), 0),
            Some(2000)
        );
        assert_eq!(first_after(&log, &address_added(vip, "eth1"), 2001), None);
    }

    #[test]
    fn takeover_timeline_combines_probes_and_log() {
        let vip = Ipv4Addr::new(10, 213, 7, 100);
        let log = parse_log(&format!(
            "mono=1000000 INFO hb: address {vip} added on eth1\n\
             mono=1050000 WARN node n1: is dead\n\
             mono=1060000 INFO hb: address {vip} added on eth1\n\
             mono=1061000 INFO hb: gratuitous ARP sent for {vip} on eth1\n"
        ));
        let s = |at, o| ProbeSample {
            at_ns: at,
            outcome: o,
        };
        let probes = ProbeLog {
            samples: vec![
                s(990_000, Outcome::Served(Node::N1)),
                s(1_010_000, Outcome::Failed("timed out".into())),
                s(1_070_000, Outcome::Served(Node::N2)),
            ],
        };
        let m = Move {
            title: "failover",
            t0_ns: 1_001_000,
            old: Node::N1,
            new: Node::N2,
            vip,
            declared_dead: true,
        };
        let t = takeover_timeline(&m, &probes, &log);
        assert_eq!(t.at("last answer from n1"), Some(990_000));
        assert_eq!(t.at("n1 declared dead"), Some(1_050_000));
        assert_eq!(t.at("VIP added on n2"), Some(1_060_000));
        assert_eq!(t.at("first gratuitous ARP"), Some(1_061_000));
        assert_eq!(t.at("first answer from n2"), Some(1_070_000));
        assert_eq!(t.outage, Some(Duration::from_nanos(80_000)));
        let text = t.to_string();
        assert!(text.contains("-0.011 ms  last answer from n1"), "{text}");
        assert!(text.contains("+0.049 ms  n1 declared dead"), "{text}");
        assert!(text.contains("client-observed outage: 0.080 ms"), "{text}");
    }
}
