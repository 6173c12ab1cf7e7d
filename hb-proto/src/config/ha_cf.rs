//! `ha.cf`: Heartbeat 3.0.x's directives plus hb's additions.
//!
//! Read line by line as Heartbeat reads it: `#` starts a comment anywhere on a line, the first
//! word is the directive (case-sensitive), and for most directives every further word
//! (separated by blanks or `,`) is one value (`node a b`, `bcast eth0 eth1`). `ucast`,
//! `mcast`, `ping_group`, `respawn` and `stonith_host` take the whole rest of the line.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    diag::{Diags, IFACE_RULE, Parsed, is_delim, lines, parse_bool, plausible_iface, words},
    model::{
        Arbiter, AutoFailback, DEFAULT_ARBITER_PREFIX, DEFAULT_ARBITER_TTL, DEFAULT_SYSLOG_IDENT,
        Diagnostic, HaCf, Ignored, LogFormat, MAX_ARBITER_TTL_SECS, Media, PingGroup, Respawn,
        Setting, XdpMode, node_id,
    },
    time::{TimeError, parse_time},
};

/// Heartbeat's default `keepalive` (config.c: `"1000ms"`).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_millis(1000);
/// Heartbeat's default `deadtime` (config.c: `"30000ms"`).
pub const DEFAULT_DEADTIME: Duration = Duration::from_millis(30_000);
/// Heartbeat's default `udpport` (IANA `ha-cluster`).
pub const DEFAULT_UDPPORT: u16 = 694;
/// Heartbeat's default `hopfudge`.
pub const DEFAULT_HOPFUDGE: u32 = 1;
/// hb's default `garp_count`.
pub const DEFAULT_GARP_COUNT: u32 = 5;
/// hb's default `garp_interval`.
pub const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(200);
/// hb's default `fence_delay`.
pub const DEFAULT_FENCE_DELAY: Duration = Duration::from_secs(5);
/// hb's default `fence_timeout`.
pub const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `garp_count` accepted.
pub const MAX_GARP_COUNT: u32 = 100;

/// Heartbeat's default `initdead` for a given `deadtime` (config.c): `deadtime` when it is
/// above 10 s, 12 s when it is below 6 s, else twice `deadtime`.
pub fn default_initdead(deadtime: Duration) -> Duration {
    if deadtime > Duration::from_millis(10_000) {
        deadtime
    } else if deadtime < Duration::from_millis(6000) {
        Duration::from_millis(12_000)
    } else {
        deadtime.saturating_mul(2)
    }
}

/// Heartbeat's default `warntime`: half of `deadtime`, in whole milliseconds.
pub fn default_warntime(deadtime: Duration) -> Duration {
    Duration::from_millis(u64::try_from(deadtime.as_millis() / 2).unwrap_or(u64::MAX))
}

/// syslog facility names Heartbeat accepts (`cl_syslogfac_str2int`), plus `none`.
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
    "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Heartbeat 3.0.x directives hb does not implement that are harmless to ignore: a named
/// warning, whatever the value. (`crm`/`pacemaker`, `use_apphbd`, `hbgenmethod` depend on
/// their value and are handled separately.)
const IGNORED: &[(&str, &str)] = &[
    (
        "apiauth",
        "hb has no Heartbeat client API; API authorisations do not apply",
    ),
    (
        "cluster",
        "hb identifies the cluster by its authkeys and node list",
    ),
    (
        "use_logd",
        "hb does not use logd; it logs through logfile, debugfile and logfacility itself",
    ),
    (
        "conn_logd_time",
        "hb does not use logd; it logs through logfile, debugfile and logfacility itself",
    ),
    ("msgfmt", "hb has its own wire format"),
    ("normalpoll", "hb's event loop does not use poll(2) choices"),
    ("log_badpack", "hb always counts bad packets in hbstat"),
    ("syslogmsgfmt", "hb chooses its own log file format"),
    ("coredumps", "core dumps are left to the system's settings"),
    ("coreroot", "core dumps are left to the system's settings"),
    ("uuidfrom", "hb identifies nodes by node name"),
    (
        "compression_threshold",
        "hb's messages are small and never compressed",
    ),
    (
        "traditional_compression",
        "hb's messages are small and never compressed",
    ),
    ("max_rexmit_delay", "hb does not retransmit heartbeats"),
    (
        "rtprio",
        "hb uses a fixed real-time priority when realtime is on",
    ),
    ("memreserve", "hb does not preallocate memory"),
    (
        "crm_daemon_dir",
        "hb does not run Pacemaker (only meaningful with 'pacemaker on')",
    ),
    (
        "crmd_spawns_pengine",
        "hb does not run Pacemaker (only meaningful with 'pacemaker on')",
    ),
    (
        "record_config_changes",
        "hb does not run Pacemaker (only meaningful with 'pacemaker on')",
    ),
    (
        "record_pengine_inputs",
        "hb does not run Pacemaker (only meaningful with 'pacemaker on')",
    ),
    (
        "enable_config_writes",
        "hb does not run Pacemaker (only meaningful with 'pacemaker on')",
    ),
];

/// Heartbeat 3.0.x directives that ask for a feature hb does not have: an error.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "serial",
        "serial heartbeat links are not supported by hb; use bcast, ucast or mcast",
    ),
    (
        "baud",
        "serial heartbeat links are not supported by hb; remove baud",
    ),
    (
        "ucast6",
        "IPv6 heartbeat media are not supported by hb; use ucast over IPv4",
    ),
    (
        "mcast6",
        "IPv6 heartbeat media are not supported by hb; use mcast over IPv4",
    ),
    (
        "ping6",
        "IPv6 ping nodes are not supported by hb; use ping with an IPv4 address",
    ),
    (
        "hbaping",
        "Fibre Channel ping nodes are not supported by hb",
    ),
    ("rds", "RDS heartbeat media are not supported by hb"),
    ("tipc", "TIPC heartbeat media are not supported by hb"),
    (
        "compression",
        "message compression is not supported by hb (its messages are small)",
    ),
    (
        "stonith",
        "the stonith configuration-file form is not supported by hb; use stonith_host",
    ),
    (
        "failfast",
        "failfast children are not supported by hb; use respawn",
    ),
    (
        "env",
        "environment settings for respawn clients are not supported by hb",
    ),
    ("quorum_server", "quorum servers are not supported by hb"),
];

#[derive(Debug, Default)]
struct Raw {
    directives: usize,
    keepalive: Option<(Duration, usize)>,
    deadtime: Option<(Duration, usize)>,
    warntime: Option<(Duration, usize)>,
    initdead: Option<(Duration, usize)>,
    deadping: Option<(Duration, usize)>,
    udpport: Option<(u16, usize)>,
    media: Vec<(Media, usize)>,
    nodes: Vec<(String, usize)>,
    auto_failback: Option<(AutoFailback, usize)>,
    logfile: Option<PathBuf>,
    debugfile: Option<PathBuf>,
    logfacility: Option<Option<String>>,
    debug: Option<u8>,
    ping: Vec<IpAddr>,
    ping_groups: Vec<PingGroup>,
    respawn: Vec<Respawn>,
    stonith_hosts: Vec<String>,
    fence_commands: Vec<Vec<String>>,
    fence_delay: Option<Duration>,
    fence_timeout: Option<Duration>,
    watchdog: Option<(PathBuf, usize)>,
    realtime: Option<bool>,
    hopfudge: Option<u32>,
    autojoin: Option<String>,
    xdp: Option<XdpMode>,
    garp_count: Option<u32>,
    garp_interval: Option<Duration>,
    metrics_listen: Option<Option<SocketAddr>>,
    control_socket: Option<PathBuf>,
    ipfail: Option<bool>,
    ipfail_settle: Option<(Duration, usize)>,
    ping_interval: Option<(Duration, usize)>,
    ignored: Vec<Ignored>,
    log_format: Option<LogFormat>,
    syslog_ident: Option<String>,
    self_fence_command: Option<Vec<String>>,
    control_group: Option<String>,
    arbiter: Option<(Vec<String>, usize)>,
    arbiter_prefix: Option<(String, usize)>,
    arbiter_ttl: Option<(Duration, usize)>,
    arbiter_ca: Option<(PathBuf, usize)>,
    arbiter_cert: Option<(PathBuf, usize)>,
    arbiter_key: Option<(PathBuf, usize)>,
    parameters: Vec<(String, String)>,
    /// First line of each single-valued directive, to warn when one is repeated.
    seen: HashMap<String, usize>,
}

/// Everything parsed from `ha.cf`, with its diagnostics (for the cross-file checks in `load`).
#[derive(Debug)]
pub(crate) struct HaCfParse {
    pub(crate) ha_cf: HaCf,
    /// The line of each of `ha_cf.media`, in the same order.
    pub(crate) media_lines: Vec<usize>,
    pub(crate) diags: Diags,
    /// The file had no directive at all.
    pub(crate) empty: bool,
}

/// Parses `ha.cf` from bytes. `path` is only used in diagnostics. Returns every problem found.
pub fn parse_ha_cf(path: &Path, bytes: &[u8]) -> Result<Parsed<HaCf>, Vec<Diagnostic>> {
    let p = parse_ha_cf_inner(path, bytes);
    p.diags.finish(p.ha_cf)
}

pub(crate) fn parse_ha_cf_inner(path: &Path, bytes: &[u8]) -> HaCfParse {
    let mut d = Diags::new(path);
    let mut raw = Raw::default();
    for (n, text) in lines(bytes, &mut d) {
        let text = match text.find('#') {
            Some(i) => &text[..i],
            None => text,
        };
        let text = text.trim_matches(super::diag::is_ws);
        if text.is_empty() {
            continue;
        }
        raw.directives += 1;
        let (directive, rest) = match text.find(super::diag::is_ws) {
            Some(i) => (&text[..i], text[i..].trim_start_matches(super::diag::is_ws)),
            None => (text, ""),
        };
        raw.parameters.push((
            directive.to_owned(),
            super::diag::words(rest).collect::<Vec<_>>().join(" "),
        ));
        directive_line(&mut raw, &mut d, n, directive, rest);
    }
    finish(raw, d)
}

/// One value of a single-valued directive, or an error when there is not exactly one.
fn one_value<'a>(d: &mut Diags, n: usize, directive: &str, values: &[&'a str]) -> Option<&'a str> {
    match values {
        [] => {
            d.error(n, format!("{directive}: missing value"));
            None
        }
        [v] => Some(v),
        _ => {
            d.error(
                n,
                format!(
                    "{directive}: takes one value, got {} ({})",
                    values.len(),
                    values.join(" ")
                ),
            );
            None
        }
    }
}

/// A directive accepted but not acted on: a warning `'DIRECTIVE ...' ignored: WHY`, and a
/// record in [`HaCf::ignored`].
fn ignore(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, shown: &str, why: &str) {
    d.warn(n, format!("'{shown}' ignored: {why}"));
    raw.ignored.push(Ignored {
        directive: directive.to_string(),
        line: n,
        why: why.to_string(),
    });
}

/// An error when `rest` has an odd number of `"` (words are split with [`split_quoted`]).
///
/// [`split_quoted`]: super::model::split_quoted
fn unbalanced_quotes(d: &mut Diags, n: usize, directive: &str, rest: &str) -> bool {
    let odd = !rest.matches('"').count().is_multiple_of(2);
    if odd {
        d.error(n, format!("{directive}: unbalanced '\"'"));
    }
    odd
}

fn time_error(directive: &str, e: &TimeError) -> String {
    format!("{directive}: {e}")
}

fn parse_time_directive(d: &mut Diags, n: usize, directive: &str, value: &str) -> Option<Duration> {
    match parse_time(value) {
        Ok(t) => {
            if !t.exact {
                d.warn(
                    n,
                    format!(
                        "{directive} {value} rounded to {} ms, as Heartbeat does",
                        t.value.as_millis()
                    ),
                );
            }
            Some(t.value)
        }
        Err(e) => {
            d.error(n, time_error(directive, &e));
            None
        }
    }
}

fn parse_uint<T: std::str::FromStr>(
    d: &mut Diags,
    n: usize,
    directive: &str,
    value: &str,
    range: &str,
) -> Option<T> {
    if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
        d.error(n, format!("{directive}: '{value}' is not a number"));
        return None;
    }
    match value.parse::<T>() {
        Ok(v) => Some(v),
        Err(_) => {
            d.error(n, format!("{directive}: {value} is out of range ({range})"));
            None
        }
    }
}

/// How a directive reads its line.
#[derive(Clone, Copy)]
enum Form {
    /// Exactly one value (`missing value` / `takes one value` otherwise).
    One(fn(&mut Raw, &mut Diags, usize, &str, &str)),
    /// Every word of the line is a value (blanks or `,` between them; none is possible).
    Words(fn(&mut Raw, &mut Diags, usize, &[&str])),
    /// The whole rest of the line.
    Rest(fn(&mut Raw, &mut Diags, usize, &str)),
}

/// One directive hb reads.
struct Directive {
    name: &'static str,
    form: Form,
    /// Single-valued: a repeat is allowed (the last wins, as in Heartbeat) but warned about,
    /// counted under this name (`nice_failback` counts as `auto_failback`). `None`: repeats
    /// add values or are judged by the directive itself.
    single: Option<&'static str>,
}

const fn one(name: &'static str, f: fn(&mut Raw, &mut Diags, usize, &str, &str)) -> Directive {
    Directive {
        name,
        form: Form::One(f),
        single: Some(name),
    }
}

/// Every directive hb reads, in the order of Heartbeat's documentation, then hb's additions,
/// then the Heartbeat directives whose meaning depends on the value. [`IGNORED`] and
/// [`UNSUPPORTED`] hold the rest Heartbeat knows.
const DIRECTIVES: &[Directive] = &[
    one("keepalive", time_directive),
    one("deadtime", time_directive),
    one("warntime", time_directive),
    one("initdead", time_directive),
    one("deadping", time_directive),
    one("udpport", udpport),
    Directive {
        name: "bcast",
        form: Form::Words(bcast),
        single: None,
    },
    Directive {
        name: "ucast",
        form: Form::Rest(ucast),
        single: None,
    },
    Directive {
        name: "mcast",
        form: Form::Rest(mcast),
        single: None,
    },
    Directive {
        name: "node",
        form: Form::Words(node),
        single: None,
    },
    one("auto_failback", auto_failback),
    Directive {
        name: "nice_failback",
        form: Form::One(nice_failback),
        single: Some("auto_failback"),
    },
    one("logfile", log_file),
    one("debugfile", log_file),
    one("logfacility", logfacility),
    one("debug", debug),
    Directive {
        name: "ping",
        form: Form::Words(ping),
        single: None,
    },
    Directive {
        name: "ping_group",
        form: Form::Rest(ping_group),
        single: None,
    },
    Directive {
        name: "respawn",
        form: Form::Rest(respawn),
        single: None,
    },
    Directive {
        name: "stonith_host",
        form: Form::Rest(stonith_host),
        single: None,
    },
    Directive {
        name: "fence_command",
        form: Form::Rest(fence_command),
        single: None,
    },
    one("fence_delay", fence_time),
    one("fence_timeout", fence_time),
    Directive {
        name: "watchdog",
        form: Form::One(watchdog),
        single: None,
    },
    one("realtime", realtime),
    one("hopfudge", hopfudge),
    one("autojoin", autojoin),
    // hb's additions.
    one("xdp", xdp),
    one("garp_count", garp_count),
    one("garp_interval", garp_interval),
    one("ipfail", ipfail),
    one("ipfail_settle", ping_time),
    one("ping_interval", ping_time),
    one("metrics_listen", metrics_listen),
    one("control_socket", control_socket),
    one("log_format", log_format),
    one("syslog_ident", syslog_ident),
    Directive {
        name: "self_fence_command",
        form: Form::Rest(self_fence_command),
        single: Some("self_fence_command"),
    },
    one("control_group", control_group),
    Directive {
        name: "arbiter",
        form: Form::Words(arbiter),
        single: Some("arbiter"),
    },
    one("arbiter_prefix", arbiter_prefix),
    one("arbiter_ttl", arbiter_ttl),
    one("arbiter_ca", arbiter_file),
    one("arbiter_cert", arbiter_file),
    one("arbiter_key", arbiter_file),
    // Heartbeat directives whose meaning depends on the value.
    Directive {
        name: "crm",
        form: Form::One(crm),
        single: None,
    },
    Directive {
        name: "pacemaker",
        form: Form::One(crm),
        single: None,
    },
    Directive {
        name: "use_apphbd",
        form: Form::One(use_apphbd),
        single: None,
    },
    Directive {
        name: "hbgenmethod",
        form: Form::One(hbgenmethod),
        single: None,
    },
];

/// The directives the parser reads (each accepted for some value; `crm on`, `use_apphbd on`,
/// `hbgenmethod time` are errors), in table order: [`DIRECTIVES`]' names.
pub fn directives() -> impl Iterator<Item = &'static str> {
    DIRECTIVES.iter().map(|d| d.name)
}

/// Every directive `ha.cf` accepts for at least one value: [`directives`], then the ones
/// accepted only to be ignored with a named warning.
pub fn accepted_directives() -> Vec<&'static str> {
    directives()
        .chain(IGNORED.iter().map(|(k, _)| *k))
        .collect()
}

/// Heartbeat directives that ask for a feature hb lacks: always an error.
pub fn unsupported_directives() -> impl Iterator<Item = &'static str> {
    UNSUPPORTED.iter().map(|(name, _)| *name)
}

fn directive_line(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, rest: &str) {
    let Some(entry) = DIRECTIVES.iter().find(|e| e.name == directive) else {
        other_directive(raw, d, n, directive);
        return;
    };
    if let Some(key) = entry.single {
        if let Some(first) = raw.seen.get(key) {
            d.warn(
                n,
                format!("{directive} set again (first at line {first}); the last value wins"),
            );
        } else {
            raw.seen.insert(key.to_string(), n);
        }
    }
    match entry.form {
        Form::One(f) => {
            let values: Vec<&str> = rest.split(is_delim).filter(|w| !w.is_empty()).collect();
            if let Some(v) = one_value(d, n, directive, &values) {
                f(raw, d, n, directive, v);
            }
        }
        Form::Words(f) => {
            let values: Vec<&str> = rest.split(is_delim).filter(|w| !w.is_empty()).collect();
            f(raw, d, n, &values);
        }
        Form::Rest(f) => f(raw, d, n, rest),
    }
}

/// A directive not in [`DIRECTIVES`]: ignored with a warning, unsupported, or unknown.
fn other_directive(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str) {
    if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == directive) {
        ignore(raw, d, n, directive, directive, why);
    } else if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == directive) {
        d.error(n, format!("'{directive}' is not supported by hb: {why}"));
    } else if directive.bytes().any(|b| b.is_ascii_uppercase()) {
        d.error(
            n,
            format!("unknown directive '{directive}' (directives are lower case)"),
        );
    } else {
        d.error(n, format!("unknown directive '{directive}'"));
    }
}

fn time_directive(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let Some(t) = parse_time_directive(d, n, directive, v) else {
        return;
    };
    match directive {
        "keepalive" => {
            if t.is_zero() {
                d.error(n, "keepalive: must be more than 0");
                return;
            }
            raw.keepalive = Some((t, n));
        }
        "deadtime" => raw.deadtime = Some((t, n)),
        "warntime" => {
            if t.is_zero() {
                d.error(n, "warntime: must be more than 0");
                return;
            }
            raw.warntime = Some((t, n));
        }
        "initdead" => raw.initdead = Some((t, n)),
        _ => raw.deadping = Some((t, n)),
    }
}

fn udpport(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    if let Some(p) = parse_uint::<u16>(d, n, directive, v, "1..65535") {
        if p == 0 {
            d.error(n, "udpport: 0 is not a valid port (1..65535)");
            return;
        }
        if let Some((_, first_media)) = raw.media.first() {
            d.warn(
                n,
                format!(
                    "udpport after a medium (line {first_media}): Heartbeat applies it \
                     only to media declared after it, hb applies it to every bcast and \
                     ucast medium"
                ),
            );
        }
        raw.udpport = Some((p, n));
    }
}

fn bcast(raw: &mut Raw, d: &mut Diags, n: usize, values: &[&str]) {
    if values.is_empty() {
        d.error(n, "bcast: missing interface name");
    }
    for v in values {
        if plausible_iface(v) {
            raw.media.push((
                Media::Bcast {
                    iface: v.to_string(),
                },
                n,
            ));
        } else {
            d.error(n, format!("bcast: bad interface name '{v}' ({IFACE_RULE})"));
        }
    }
}

fn node(raw: &mut Raw, d: &mut Diags, n: usize, values: &[&str]) {
    if values.is_empty() {
        d.error(n, "node: missing node name");
    }
    for v in values {
        // Heartbeat folds node names to lower case (add_node).
        let name = v.to_ascii_lowercase();
        if let Some((_, first)) = raw.nodes.iter().find(|(x, _)| *x == name) {
            d.error(
                n,
                format!("duplicate node '{name}' (already listed at line {first})"),
            );
            continue;
        }
        let id = node_id(&name);
        if let Some((other, line)) = raw.nodes.iter().find(|(x, _)| node_id(x) == id) {
            d.error(
                n,
                format!(
                    "node '{name}' has the same id ({id:#010x}) as node '{other}' \
                     (line {line}); rename one of them"
                ),
            );
            continue;
        }
        raw.nodes.push((name, n));
    }
}

fn auto_failback(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    let af = match parse_bool(v) {
        Some(true) => AutoFailback::On,
        Some(false) => AutoFailback::Off,
        None if v.eq_ignore_ascii_case("legacy") => {
            d.warn(
                n,
                "deprecated 'legacy' auto_failback (hb treats it as on); please convert \
                 to 'auto_failback on'",
            );
            AutoFailback::Legacy
        }
        None => {
            d.error(
                n,
                format!("auto_failback: '{v}' is not one of on, off, legacy"),
            );
            return;
        }
    };
    raw.auto_failback = Some((af, n));
}

fn nice_failback(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    // Heartbeat's set_nice_failback: on means auto_failback off, off means legacy.
    match parse_bool(v) {
        Some(true) => {
            d.warn(
                n,
                "nice_failback is obsolete: 'nice_failback on' read as 'auto_failback off'",
            );
            raw.auto_failback = Some((AutoFailback::Off, n));
        }
        Some(false) => {
            d.warn(
                n,
                "nice_failback is obsolete: 'nice_failback off' read as 'auto_failback \
                 legacy'; consider 'auto_failback on'",
            );
            raw.auto_failback = Some((AutoFailback::Legacy, n));
        }
        None => d.error(n, format!("nice_failback: '{v}' is not on or off")),
    }
}

fn log_file(raw: &mut Raw, _: &mut Diags, _: usize, directive: &str, v: &str) {
    if directive == "logfile" {
        raw.logfile = Some(PathBuf::from(v));
    } else {
        raw.debugfile = Some(PathBuf::from(v));
    }
}

fn logfacility(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if v == "none" {
        raw.logfacility = Some(None);
    } else if FACILITIES.contains(&v) {
        raw.logfacility = Some(Some(v.to_string()));
    } else {
        d.error(
            n,
            format!(
                "logfacility: '{v}' is not a syslog facility (daemon, local0..local7, \
                 none, ...)"
            ),
        );
    }
}

fn debug(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    if let Some(x) = parse_uint::<u8>(d, n, directive, v, "0..255") {
        raw.debug = Some(x);
    }
}

fn ping(raw: &mut Raw, d: &mut Diags, n: usize, values: &[&str]) {
    if values.is_empty() {
        d.error(n, "ping: missing address");
    }
    for v in values {
        match v.parse::<IpAddr>() {
            Ok(a) => raw.ping.push(a),
            Err(_) => d.error(
                n,
                format!("ping: '{v}' is not an IP address (hb does not resolve names)"),
            ),
        }
    }
}

fn ping_group(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    let mut w = words(rest);
    let Some(name) = w.next() else {
        d.error(n, "ping_group: missing group name");
        return;
    };
    let mut hosts = Vec::new();
    let mut ok = true;
    for h in w {
        match h.parse::<IpAddr>() {
            Ok(a) => hosts.push(a),
            Err(_) => {
                ok = false;
                d.error(
                    n,
                    format!(
                        "ping_group {name}: '{h}' is not an IP address (hb does not \
                         resolve names)"
                    ),
                );
            }
        }
    }
    if hosts.is_empty() && ok {
        d.error(n, format!("ping_group {name}: no addresses"));
        return;
    }
    if raw.ping_groups.iter().any(|g| g.name == name) {
        d.error(n, format!("ping_group: duplicate group name '{name}'"));
        return;
    }
    if ok {
        raw.ping_groups.push(PingGroup {
            name: name.to_string(),
            hosts,
        });
    }
}

fn respawn(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    let mut w = words(rest);
    let (Some(user), Some(_)) = (w.next(), w.next()) else {
        d.error(n, "respawn: expected 'respawn USER COMMAND [ARGS]'");
        return;
    };
    let command = rest
        .trim_start_matches(super::diag::is_ws)
        .strip_prefix(user)
        .unwrap_or(rest)
        .trim_matches(super::diag::is_ws);
    raw.respawn.push(Respawn {
        user: user.to_string(),
        command: command.to_string(),
    });
}

fn stonith_host(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    if words(rest).count() < 2 {
        d.error(
            n,
            "stonith_host: expected 'stonith_host HOSTFROM TYPE [PARAMS]'",
        );
        return;
    }
    if unbalanced_quotes(d, n, "stonith_host", rest) {
        return;
    }
    raw.stonith_hosts.push(rest.to_string());
}

fn fence_command(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    if unbalanced_quotes(d, n, "fence_command", rest) {
        return;
    }
    let argv = super::model::split_quoted(rest);
    match argv.first() {
        None => d.error(n, "fence_command: expected 'fence_command PROGRAM [ARGS]'"),
        Some(p) if !p.starts_with('/') => {
            d.error(n, format!("fence_command: '{p}' is not an absolute path"))
        }
        Some(_) => raw.fence_commands.push(argv),
    }
}

/// `fence_delay` and `fence_timeout`.
fn fence_time(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let Some(t) = parse_time_directive(d, n, directive, v) else {
        return;
    };
    if directive == "fence_delay" {
        raw.fence_delay = Some(t);
    } else if t.is_zero() {
        d.error(n, "fence_timeout: must be more than 0");
    } else {
        raw.fence_timeout = Some(t);
    }
}

fn watchdog(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if let Some((_, first)) = &raw.watchdog {
        d.error(
            n,
            format!("watchdog: device given twice (first at line {first})"),
        );
        return;
    }
    raw.watchdog = Some((PathBuf::from(v), n));
}

fn realtime(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    match parse_bool(v) {
        Some(b) => raw.realtime = Some(b),
        None => d.error(n, format!("realtime: '{v}' is not on or off")),
    }
}

fn hopfudge(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    if let Some(x) = parse_uint::<u8>(d, n, directive, v, "0..255") {
        raw.hopfudge = Some(u32::from(x));
        ignore(
            raw,
            d,
            n,
            directive,
            directive,
            "hb does not forward messages between nodes, so there are no hops to bound",
        );
    }
}

fn autojoin(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let v = v.to_ascii_lowercase();
    if matches!(v.as_str(), "none" | "other" | "any") {
        if v != "none" {
            ignore(
                raw,
                d,
                n,
                directive,
                &format!("autojoin {v}"),
                "hb admits only the nodes on node lines (with 'any', this node is added \
                 to them when missing)",
            );
        }
        raw.autojoin = Some(v);
    } else {
        d.error(n, format!("autojoin: '{v}' is not one of none, other, any"));
    }
}

fn xdp(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    match v.to_ascii_lowercase().as_str() {
        "auto" => raw.xdp = Some(XdpMode::Auto),
        "on" => raw.xdp = Some(XdpMode::On),
        "off" => raw.xdp = Some(XdpMode::Off),
        _ => d.error(n, format!("xdp: '{v}' is not one of auto, on, off")),
    }
}

fn garp_count(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let range = format!("0..{MAX_GARP_COUNT}");
    if let Some(x) = parse_uint::<u32>(d, n, directive, v, &range) {
        if x > MAX_GARP_COUNT {
            d.error(n, format!("garp_count: {x} is out of range ({range})"));
        } else {
            raw.garp_count = Some(x);
        }
    }
}

fn garp_interval(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    if let Some(t) = parse_time_directive(d, n, directive, v) {
        raw.garp_interval = Some(t);
    }
}

fn ipfail(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    match parse_bool(v) {
        Some(b) => raw.ipfail = Some(b),
        None => d.error(n, format!("ipfail: '{v}' is not on or off")),
    }
}

/// `ipfail_settle` and `ping_interval`.
fn ping_time(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let Some(t) = parse_time_directive(d, n, directive, v) else {
        return;
    };
    if directive == "ipfail_settle" {
        raw.ipfail_settle = Some((t, n));
    } else if t.is_zero() {
        d.error(n, "ping_interval: must be more than 0");
    } else {
        raw.ping_interval = Some((t, n));
    }
}

fn metrics_listen(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if v == "off" || v == "none" {
        raw.metrics_listen = Some(None);
    } else {
        match v.parse::<SocketAddr>() {
            Ok(a) => raw.metrics_listen = Some(Some(a)),
            Err(_) => d.error(
                n,
                format!(
                    "metrics_listen: '{v}' is not ADDR:PORT (127.0.0.1:9694, \
                     [::1]:9694) or off"
                ),
            ),
        }
    }
}

fn control_socket(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if v.starts_with('/') {
        raw.control_socket = Some(PathBuf::from(v));
    } else {
        d.error(n, format!("control_socket: '{v}' is not an absolute path"));
    }
}

fn log_format(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    match v.to_ascii_lowercase().as_str() {
        "heartbeat" => raw.log_format = Some(LogFormat::Heartbeat),
        "hb" => raw.log_format = Some(LogFormat::Hb),
        _ => d.error(n, format!("log_format: '{v}' is not heartbeat or hb")),
    }
}

fn syslog_ident(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'[')
    {
        d.error(
            n,
            format!(
                "syslog_ident: '{v}' must be at most 64 printable characters without \
                 ':' or '['"
            ),
        );
    } else {
        raw.syslog_ident = Some(v.to_string());
    }
}

fn self_fence_command(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    let argv: Vec<String> = words(rest).map(str::to_string).collect();
    match argv.first() {
        None => d.error(
            n,
            "self_fence_command: expected 'self_fence_command COMMAND [ARGS]'",
        ),
        Some(p) if !p.starts_with('/') => d.error(
            n,
            format!("self_fence_command: '{p}' is not an absolute path"),
        ),
        Some(_) => raw.self_fence_command = Some(argv),
    }
}

fn control_group(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        raw.control_group = Some(v.to_string());
    } else {
        d.error(
            n,
            format!(
                "control_group: '{v}' is not a group name (letters, digits, '_', '-', \
                 '.'; at most 32) or none"
            ),
        );
    }
}

/// `arbiter etcd ENDPOINT[,ENDPOINT...]`.
fn arbiter(raw: &mut Raw, d: &mut Diags, n: usize, values: &[&str]) {
    let Some((kind, endpoints)) = values.split_first() else {
        d.error(n, "arbiter: expected 'arbiter etcd ENDPOINT[,ENDPOINT...]'");
        return;
    };
    if *kind != "etcd" {
        d.error(
            n,
            format!("arbiter: '{kind}' is not a supported arbiter (hb supports etcd)"),
        );
        return;
    }
    if endpoints.is_empty() {
        d.error(
            n,
            "arbiter etcd: no endpoint (etcd client URL, e.g. http://10.0.0.9:2379)",
        );
        return;
    }
    let mut ok = true;
    for e in endpoints {
        if let Err(why) = check_endpoint(e) {
            d.error(n, format!("arbiter etcd: '{e}' {why}"));
            ok = false;
        }
    }
    let schemes = |p: &str| endpoints.iter().any(|e| e.starts_with(p));
    if ok && schemes("http://") && schemes("https://") {
        d.error(n, "arbiter etcd: endpoints mix http:// and https://");
        ok = false;
    }
    if ok {
        raw.arbiter = Some((endpoints.iter().map(|e| e.to_string()).collect(), n));
    }
}

/// An etcd client endpoint: `[http://|https://]HOST:PORT`, port 1..65535, nothing after it.
fn check_endpoint(e: &str) -> Result<(), &'static str> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    if rest.contains("://") {
        return Err("is not an http:// or https:// URL");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("has no port (HOST:PORT, e.g. 10.0.0.9:2379)");
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    if !host_ok {
        return Err("has no valid host name or address before the port");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("has no valid port (1..65535)"),
    }
}

fn arbiter_prefix(raw: &mut Raw, d: &mut Diags, n: usize, _: &str, v: &str) {
    if v.starts_with('/') && v.len() > 1 && v.bytes().all(|b| b.is_ascii_graphic()) {
        raw.arbiter_prefix = Some((v.to_string(), n));
    } else {
        d.error(
            n,
            format!("arbiter_prefix: '{v}' is not a key prefix ('/' then printable characters, e.g. /hb/web)"),
        );
    }
}

fn arbiter_ttl(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    let range = format!("1..{MAX_ARBITER_TTL_SECS} seconds");
    match parse_uint::<u64>(d, n, directive, v, &range) {
        Some(s) if (1..=MAX_ARBITER_TTL_SECS).contains(&s) => {
            raw.arbiter_ttl = Some((Duration::from_secs(s), n));
        }
        Some(s) => d.error(n, format!("arbiter_ttl: {s} is out of range ({range})")),
        None => {}
    }
}

/// `arbiter_ca`, `arbiter_cert`, `arbiter_key`.
fn arbiter_file(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    if !v.starts_with('/') {
        d.error(n, format!("{directive}: '{v}' is not an absolute path"));
        return;
    }
    let slot = match directive {
        "arbiter_ca" => &mut raw.arbiter_ca,
        "arbiter_cert" => &mut raw.arbiter_cert,
        _ => &mut raw.arbiter_key,
    };
    *slot = Some((PathBuf::from(v), n));
}

/// The `arbiter_*` directives need `arbiter`; a client certificate needs its key; TLS files
/// do not go with `http://` endpoints.
fn check_arbiter(raw: &Raw, d: &mut Diags) -> Option<Arbiter> {
    let lines = [
        (
            "arbiter_prefix",
            raw.arbiter_prefix.as_ref().map(|(_, l)| *l),
        ),
        ("arbiter_ttl", raw.arbiter_ttl.as_ref().map(|(_, l)| *l)),
        ("arbiter_ca", raw.arbiter_ca.as_ref().map(|(_, l)| *l)),
        ("arbiter_cert", raw.arbiter_cert.as_ref().map(|(_, l)| *l)),
        ("arbiter_key", raw.arbiter_key.as_ref().map(|(_, l)| *l)),
    ];
    let Some((endpoints, line)) = &raw.arbiter else {
        for (name, l) in lines {
            if let Some(l) = l {
                d.error(
                    l,
                    format!("{name} needs an 'arbiter etcd ENDPOINT[,ENDPOINT...]' line"),
                );
            }
        }
        return None;
    };
    let mut ok = true;
    match (&raw.arbiter_cert, &raw.arbiter_key) {
        (Some((_, l)), None) => {
            d.error(
                *l,
                "arbiter_cert needs arbiter_key (the certificate's private key)",
            );
            ok = false;
        }
        (None, Some((_, l))) => {
            d.error(
                *l,
                "arbiter_key needs arbiter_cert (the client certificate)",
            );
            ok = false;
        }
        _ => {}
    }
    let tls_files = raw.arbiter_ca.is_some() || raw.arbiter_cert.is_some();
    if tls_files && endpoints.iter().any(|e| e.starts_with("http://")) {
        d.error(
            *line,
            "arbiter etcd: http:// endpoints with arbiter_ca/arbiter_cert: use https:// (or HOST:PORT)",
        );
        ok = false;
    }
    ok.then(|| Arbiter {
        endpoints: endpoints.clone(),
        prefix: setting(
            raw.arbiter_prefix.as_ref().map(|(p, _)| p.clone()),
            DEFAULT_ARBITER_PREFIX.to_string(),
        ),
        ttl: setting(raw.arbiter_ttl.map(|(t, _)| t), DEFAULT_ARBITER_TTL),
        ca: raw.arbiter_ca.as_ref().map(|(p, _)| p.clone()),
        cert: raw.arbiter_cert.as_ref().map(|(p, _)| p.clone()),
        key: raw.arbiter_key.as_ref().map(|(p, _)| p.clone()),
    })
}

/// `crm` and `pacemaker`.
fn crm(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    match parse_bool(v) {
        Some(false) => ignore(
            raw,
            d,
            n,
            directive,
            &format!("{directive} {v}"),
            "hb manages haresources itself",
        ),
        _ if matches!(
            v.to_ascii_lowercase().as_str(),
            "true"
                | "on"
                | "yes"
                | "y"
                | "1"
                | "respawn"
                | "minimal"
                | "manual"
                | "ccm-only"
                | "valgrind"
        ) =>
        {
            d.error(
                n,
                format!(
                    "'{directive} {v}' is not supported by hb: hb manages the \
                     resources in haresources itself and cannot run Pacemaker"
                ),
            );
        }
        _ => d.error(n, format!("{directive}: '{v}' is not a valid value")),
    }
}

fn use_apphbd(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    match parse_bool(v) {
        Some(false) => ignore(
            raw,
            d,
            n,
            directive,
            &format!("use_apphbd {v}"),
            "hb has no apphbd",
        ),
        Some(true) => d.error(
            n,
            "'use_apphbd' is not supported by hb: hb does not register with apphbd",
        ),
        None => d.error(n, format!("use_apphbd: '{v}' is not on or off")),
    }
}

fn hbgenmethod(raw: &mut Raw, d: &mut Diags, n: usize, directive: &str, v: &str) {
    match v {
        "file" => ignore(
            raw,
            d,
            n,
            directive,
            "hbgenmethod file",
            "hb keeps its generation in its state directory",
        ),
        "time" => d.error(
            n,
            "'hbgenmethod time' is not supported by hb: hb keeps its generation in its \
             state directory",
        ),
        _ => d.error(n, format!("hbgenmethod: '{v}' is not file or time")),
    }
}

fn ucast(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    let w: Vec<&str> = words(rest).collect();
    let [iface, addr] = w.as_slice() else {
        d.error(n, "ucast: expected 'ucast IFACE PEER-IP-ADDRESS'");
        return;
    };
    if !plausible_iface(iface) {
        d.error(
            n,
            format!("ucast: bad interface name '{iface}' ({IFACE_RULE})"),
        );
        return;
    }
    match addr.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
            d.error(n, format!("ucast: {a} is not a unicast address"))
        }
        Ok(a) => raw.media.push((
            Media::Ucast {
                iface: iface.to_string(),
                addr: IpAddr::V4(a),
            },
            n,
        )),
        Err(_) => d.error(
            n,
            format!("ucast: '{addr}' is not an IPv4 address (hb does not resolve host names)"),
        ),
    }
}

fn mcast(raw: &mut Raw, d: &mut Diags, n: usize, rest: &str) {
    let w: Vec<&str> = words(rest).collect();
    let [iface, group, port, ttl, lp] = w.as_slice() else {
        d.error(n, "mcast: expected 'mcast IFACE GROUP PORT TTL LOOP'");
        return;
    };
    let mut ok = true;
    if !plausible_iface(iface) {
        d.error(
            n,
            format!("mcast: bad interface name '{iface}' ({IFACE_RULE})"),
        );
        ok = false;
    }
    let group = match group.parse::<Ipv4Addr>() {
        Ok(g) if g.is_multicast() => Some(g),
        Ok(g) => {
            d.error(
                n,
                format!("mcast: {g} is not a multicast group (224.0.0.0 - 239.255.255.255)"),
            );
            None
        }
        Err(_) => {
            d.error(
                n,
                format!("mcast: '{group}' is not an IPv4 multicast group"),
            );
            None
        }
    };
    let port = match parse_uint::<u16>(d, n, "mcast port", port, "1..65535") {
        Some(0) => {
            d.error(n, "mcast port: 0 is not a valid port (1..65535)");
            None
        }
        p => p,
    };
    let ttl = parse_uint::<u8>(d, n, "mcast ttl", ttl, "0..255");
    if ttl == Some(0) {
        d.warn(n, "mcast ttl 0: heartbeats will not leave this host");
    }
    let lp = match *lp {
        "0" => Some(false),
        "1" => Some(true),
        other => {
            d.error(n, format!("mcast loop: '{other}' is not 0 or 1"));
            None
        }
    };
    if let (true, Some(group), Some(port), Some(ttl), Some(loopback)) = (ok, group, port, ttl, lp) {
        raw.media.push((
            Media::Mcast {
                iface: iface.to_string(),
                group: IpAddr::V4(group),
                port,
                ttl,
                loopback,
            },
            n,
        ));
    }
}

fn setting<T>(v: Option<T>, default: T) -> Setting<T> {
    match v {
        Some(v) => Setting::set(v),
        None => Setting::default_value(default),
    }
}

fn finish(raw: Raw, mut d: Diags) -> HaCfParse {
    let empty = raw.directives == 0;
    if empty {
        d.error(0, "file is empty: no directives");
    }
    let autojoin = raw.autojoin.clone().unwrap_or_else(|| "none".to_string());
    if !empty && raw.nodes.is_empty() && autojoin != "any" {
        d.error(
            0,
            "no node directive: list every cluster node (its uname -n) on node lines",
        );
    }
    if !empty && raw.media.is_empty() {
        d.error(0, "no heartbeat media: add a bcast, ucast or mcast line");
    }
    let keepalive = raw.keepalive.map(|(v, _)| v).unwrap_or(DEFAULT_KEEPALIVE);
    let deadtime = raw.deadtime.map(|(v, _)| v).unwrap_or(DEFAULT_DEADTIME);
    let ms = |x: Duration| x.as_millis();
    if deadtime <= keepalive.saturating_mul(2) {
        let line = raw
            .deadtime
            .map(|(_, l)| l)
            .or(raw.keepalive.map(|(_, l)| l))
            .unwrap_or(0);
        d.error(
            line,
            format!(
                "deadtime ({} ms) must be more than twice keepalive ({} ms)",
                ms(deadtime),
                ms(keepalive)
            ),
        );
    }
    let warntime = raw
        .warntime
        .map(|(v, _)| v)
        .unwrap_or_else(|| default_warntime(deadtime));
    if let Some((w, line)) = raw.warntime
        && w >= deadtime
    {
        d.warn(
            line,
            format!(
                "warntime ({} ms) is not less than deadtime ({} ms): no late-heartbeat warning \
                 will come before a node is declared dead",
                ms(w),
                ms(deadtime)
            ),
        );
    }
    let initdead = raw
        .initdead
        .map(|(v, _)| v)
        .unwrap_or_else(|| default_initdead(deadtime));
    if let Some((i, line)) = raw.initdead {
        if i < deadtime {
            d.error(
                line,
                format!(
                    "initdead ({} ms) must be at least deadtime ({} ms)",
                    ms(i),
                    ms(deadtime)
                ),
            );
        } else if i < Duration::from_millis(10_000) {
            d.warn(
                line,
                format!(
                    "initdead ({} ms) may be too small: it allows for slow network start-up \
                     and should be at least 10 s",
                    ms(i)
                ),
            );
        }
    }
    if let Some((p, line)) = raw.deadping
        && p <= keepalive.saturating_mul(2)
    {
        d.error(
            line,
            format!(
                "deadping ({} ms) must be more than twice keepalive ({} ms)",
                ms(p),
                ms(keepalive)
            ),
        );
    }
    check_ping(&raw, &mut d, deadtime);
    if raw.auto_failback.is_none() && !empty {
        d.warn(
            0,
            "auto_failback not set: Heartbeat's default 'legacy' applies (hb treats it as on); \
             set auto_failback on or off",
        );
    }
    let arbiter = check_arbiter(&raw, &mut d);
    let media_lines = raw.media.iter().map(|(_, line)| *line).collect();
    let ha_cf = HaCf {
        keepalive: setting(raw.keepalive.map(|(v, _)| v), keepalive),
        deadtime: setting(raw.deadtime.map(|(v, _)| v), deadtime),
        warntime: setting(raw.warntime.map(|(v, _)| v), warntime),
        initdead: setting(raw.initdead.map(|(v, _)| v), initdead),
        udpport: setting(raw.udpport.map(|(v, _)| v), DEFAULT_UDPPORT),
        media: raw.media.into_iter().map(|(m, _)| m).collect(),
        nodes: raw.nodes.iter().map(|(n, _)| n.clone()).collect(),
        auto_failback: setting(raw.auto_failback.map(|(v, _)| v), AutoFailback::Legacy),
        logfile: raw.logfile,
        debugfile: raw.debugfile,
        logfacility: raw.logfacility.flatten(),
        debug: setting(raw.debug, 0),
        ping: raw.ping,
        ping_groups: raw.ping_groups,
        deadping: raw.deadping.map(|(v, _)| v),
        respawn: raw.respawn,
        stonith_hosts: raw.stonith_hosts,
        fence_commands: raw.fence_commands,
        fence_delay: setting(raw.fence_delay, DEFAULT_FENCE_DELAY),
        fence_timeout: setting(raw.fence_timeout, DEFAULT_FENCE_TIMEOUT),
        watchdog: raw.watchdog.map(|(p, _)| p),
        realtime: setting(raw.realtime, true),
        hopfudge: setting(raw.hopfudge, DEFAULT_HOPFUDGE),
        autojoin: setting(raw.autojoin, "none".to_string()),
        xdp: setting(raw.xdp, XdpMode::Auto),
        garp_count: setting(raw.garp_count, DEFAULT_GARP_COUNT),
        garp_interval: setting(raw.garp_interval, DEFAULT_GARP_INTERVAL),
        metrics_listen: raw.metrics_listen.flatten(),
        control_socket: raw.control_socket,
        ipfail: setting(raw.ipfail, false),
        ipfail_settle: raw.ipfail_settle.map(|(v, _)| v),
        ping_interval: raw.ping_interval.map(|(v, _)| v),
        ignored: raw.ignored,
        log_format: setting(raw.log_format, LogFormat::Heartbeat),
        syslog_ident: setting(raw.syslog_ident, DEFAULT_SYSLOG_IDENT.to_string()),
        self_fence_command: raw.self_fence_command,
        control_group: raw.control_group,
        arbiter,
        parameters: raw.parameters,
    };
    HaCfParse {
        ha_cf,
        media_lines,
        diags: d,
        empty,
    }
}

/// Ping nodes and the built-in ipfail: intervals that can judge a ping node, ipfail with
/// something to count.
fn check_ping(raw: &Raw, d: &mut Diags, deadtime: Duration) {
    let deadping = raw.deadping.map_or(deadtime, |(v, _)| v);
    if let Some((i, line)) = raw.ping_interval
        && deadping <= i.saturating_mul(2)
    {
        d.error(
            line,
            format!(
                "ping_interval ({} ms) must be less than half of deadping ({} ms)",
                i.as_millis(),
                deadping.as_millis()
            ),
        );
    }
    let pings = raw.ping.len() + raw.ping_groups.len();
    if pings > usize::from(u8::MAX) {
        d.error(
            0,
            format!(
                "{pings} ping nodes configured; hb supports at most 255 (ping and ping_group lines)"
            ),
        );
    }
    let respawned = raw.respawn.iter().find(|r| r.is_ipfail());
    let wanted = match raw.ipfail {
        Some(b) => b,
        None => respawned.is_some(),
    };
    if wanted && pings == 0 {
        d.warn(
            0,
            "ipfail has no ping nodes to count and does nothing: add ping or ping_group lines",
        );
    }
    if raw.ipfail == Some(false)
        && let Some(r) = respawned
    {
        d.warn(
            0,
            format!(
                "'respawn {} {}' not run and ipfail not built in: 'ipfail off' is set",
                r.user, r.command
            ),
        );
    }
    if !wanted && raw.ipfail_settle.is_some() {
        d.warn(0, "ipfail_settle has no effect without ipfail");
    }
    if pings == 0 && (raw.deadping.is_some() || raw.ping_interval.is_some()) {
        d.warn(
            0,
            "deadping and ping_interval have no effect without ping nodes",
        );
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn every_known_directive_is_in_exactly_one_table_and_none_is_unknown() {
        let all: Vec<&str> = accepted_directives()
            .into_iter()
            .chain(unsupported_directives())
            .collect();
        assert!(all.len() > 60, "{all:?}");
        for (i, name) in all.iter().enumerate() {
            assert!(!all[..i].contains(name), "{name} listed twice");
            let mut d = Diags::new(Path::new("ha.cf"));
            directive_line(&mut Raw::default(), &mut d, 1, name, "x");
            let text = format!("{:?}", d.finish(()));
            assert!(!text.contains("unknown directive"), "{name}: {text}");
        }
    }
}
