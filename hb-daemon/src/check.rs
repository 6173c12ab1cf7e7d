//! `hbd --check`: validate `/etc/ha.d` and print the effective configuration.
//! Reads the configuration and prints; never starts anything.
//!
//! On success the effective configuration goes to stdout (every timing in milliseconds,
//! `(default)` after each value the files did not set) and warnings to stderr as
//! `PATH:LINE: warning: ...`; the exit code is 0. On any error every problem in all three files
//! goes to stderr as `PATH:LINE: message` and the exit code is 1.

use std::{fmt::Display, fmt::Write as _, path::Path, process::ExitCode, time::Duration};

use hb_proto::config::{
    AuthMethod, AutoFailback, Config, Diagnostic, Media, Resource, Setting, XdpMode, load, node_id,
};

/// A diagnostic as a warning line: `PATH:LINE: warning: message`.
pub fn warning_line(d: &Diagnostic) -> String {
    format!("{}:{}: warning: {}", d.path.display(), d.line, d.message)
}

/// Runs `hbd --check`: loads the configuration in `config_dir` for `node_name` (default
/// `uname -n`), prints the effective configuration and warnings, or every problem.
/// Exit code 0 when valid, 1 otherwise.
pub fn run_check(config_dir: &Path, node_name: Option<&str>) -> ExitCode {
    let node = match node_name {
        Some(n) => n.to_string(),
        None => match crate::node_name::local_node_name() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("hbd: cannot read this node's name (uname -n): {e}");
                return ExitCode::from(1);
            }
        },
    };
    match load(&crate::daemon::load_options(config_dir, &node)) {
        Ok(config) => {
            print!("{}", effective_config(&config));
            for w in &config.warnings {
                eprintln!("{}", warning_line(w));
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "hbd: {} problem{} in the configuration in {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                config_dir.display()
            );
            ExitCode::from(1)
        }
    }
}

/// The `ha.cf` directives hbd acts on (every other accepted directive is recorded in
/// [`hb_proto::config::HaCf::ignored`] with a named warning when present). `ping`,
/// `ping_group`, `deadping` (ping nodes, ipfail) and `respawn` are acted on by their own parts
/// of hbd.
pub const ACTED_ON: &[&str] = &[
    "keepalive",
    "deadtime",
    "warntime",
    "initdead",
    "deadping",
    "udpport",
    "bcast",
    "ucast",
    "mcast",
    "node",
    "auto_failback",
    "nice_failback",
    "logfile",
    "debugfile",
    "logfacility",
    "debug",
    "ping",
    "ping_group",
    "respawn",
    "stonith_host",
    "fence_command",
    "fence_delay",
    "fence_timeout",
    "watchdog",
    "realtime",
    "xdp",
    "garp_count",
    "garp_interval",
    "ipfail",
    "ipfail_settle",
    "ping_interval",
    "metrics_listen",
    "control_socket",
    "log_format",
    "syslog_ident",
    "self_fence_command",
    "control_group",
    "arbiter",
    "arbiter_prefix",
    "arbiter_ttl",
    "arbiter_ca",
    "arbiter_cert",
    "arbiter_key",
];

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn mark<T>(s: &Setting<T>, shown: impl Display) -> String {
    if s.is_default {
        format!("{shown} (default)")
    } else {
        shown.to_string()
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The effective configuration as `hbd --check` prints it.
pub fn effective_config(c: &Config) -> String {
    let h = &c.ha_cf;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Configuration in {} is valid for node {}.",
        c.config_dir.display(),
        c.local_node
    );
    let _ = writeln!(o, "\nha.cf (timings in milliseconds):");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "  {k:<15} {v}");
    };
    row("keepalive", mark(&h.keepalive, ms(h.keepalive.value)));
    row("deadtime", mark(&h.deadtime, ms(h.deadtime.value)));
    row("warntime", mark(&h.warntime, ms(h.warntime.value)));
    row("initdead", mark(&h.initdead, ms(h.initdead.value)));
    row(
        "deadping",
        match h.deadping {
            Some(d) => ms(d),
            None => format!("{} (default: deadtime)", ms(h.effective_deadping())),
        },
    );
    row(
        "ping_interval",
        match h.ping_interval {
            Some(d) => ms(d),
            None => format!("{} (default: keepalive)", ms(h.effective_ping_interval())),
        },
    );
    let ipfail = match (h.ipfail_enabled(), h.ipfail.is_default) {
        (true, true) => "on (a respawn line runs ipfail: built in, not spawned)",
        (true, false) => "on",
        (false, true) => "off (default)",
        (false, false) => "off",
    };
    row("ipfail", ipfail.to_owned());
    row(
        "ipfail_settle",
        match h.ipfail_settle {
            Some(d) => ms(d),
            None => format!("{} (default: deadping)", ms(h.effective_ipfail_settle())),
        },
    );
    row("udpport", mark(&h.udpport, h.udpport.value));
    let af = match h.auto_failback.value {
        AutoFailback::On => "on",
        AutoFailback::Off => "off",
        AutoFailback::Legacy => "legacy (treated as on)",
    };
    row("auto_failback", mark(&h.auto_failback, af));
    row("realtime", mark(&h.realtime, on_off(h.realtime.value)));
    row("debug", mark(&h.debug, h.debug.value));
    row("hopfudge", mark(&h.hopfudge, h.hopfudge.value));
    row("autojoin", mark(&h.autojoin, &h.autojoin.value));
    row(
        "logfacility",
        h.logfacility.clone().unwrap_or_else(|| "none".to_string()),
    );
    row(
        "logfile",
        h.logfile
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
    );
    row(
        "debugfile",
        h.debugfile
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
    );
    row(
        "watchdog",
        h.watchdog
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
    );
    let xdp = match h.xdp.value {
        XdpMode::Auto => "auto",
        XdpMode::On => "on",
        XdpMode::Off => "off",
    };
    row("xdp", mark(&h.xdp, xdp));
    row("garp_count", mark(&h.garp_count, h.garp_count.value));
    row(
        "garp_interval",
        mark(&h.garp_interval, ms(h.garp_interval.value)),
    );
    row(
        "metrics_listen",
        h.metrics_listen
            .map_or_else(|| "off (default)".to_string(), |a| a.to_string()),
    );
    row(
        "control_socket",
        h.control_socket.as_ref().map_or_else(
            || "<run-dir>/hbd.sock (default)".to_string(),
            |p| p.display().to_string(),
        ),
    );
    row(
        "control_group",
        h.control_group.clone().unwrap_or_else(|| {
            format!(
                "{} if it exists (default)",
                hb_proto::config::DEFAULT_CONTROL_GROUP
            )
        }),
    );

    match &h.arbiter {
        None => row("arbiter", "none (default)".to_string()),
        Some(a) => {
            row("arbiter", format!("etcd {}", a.endpoints.join(",")));
            row(
                "arbiter_prefix",
                mark(
                    &a.prefix,
                    format!("{} (keys {})", a.prefix.value, a.key_of(0)),
                ),
            );
            row(
                "arbiter_ttl",
                mark(&a.ttl, format!("{} s", a.ttl.value.as_secs())),
            );
            let file = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.display().to_string())
            };
            row(
                "arbiter_tls",
                if a.tls() {
                    format!(
                        "ca {}, cert {}, key {}",
                        file(&a.ca),
                        file(&a.cert),
                        file(&a.key)
                    )
                } else {
                    "off".to_string()
                },
            );
        }
    }

    let _ = writeln!(o, "\nmedia:");
    for m in &h.media {
        let _ = match m {
            Media::Bcast { iface } => {
                writeln!(o, "  bcast {iface} udp port {}", h.udpport.value)
            }
            Media::Ucast { iface, addr } => {
                writeln!(o, "  ucast {iface} {addr} udp port {}", h.udpport.value)
            }
            Media::Mcast {
                iface,
                group,
                port,
                ttl,
                loopback,
            } => writeln!(
                o,
                "  mcast {iface} {group} udp port {port} ttl {ttl} loop {}",
                u8::from(*loopback)
            ),
        };
    }

    let _ = writeln!(o, "\nnodes:");
    for n in &h.nodes {
        let this = if *n == c.local_node {
            " (this node)"
        } else {
            ""
        };
        let _ = writeln!(o, "  {n} id {:#010x}{this}", node_id(n));
    }
    if !h.ping.is_empty() || !h.ping_groups.is_empty() {
        let _ = writeln!(o, "\nping nodes:");
        for p in &h.ping {
            let _ = writeln!(o, "  {p}");
        }
        for g in &h.ping_groups {
            let hosts: Vec<String> = g.hosts.iter().map(ToString::to_string).collect();
            let _ = writeln!(o, "  group {}: {}", g.name, hosts.join(" "));
        }
    }
    if !h.respawn.is_empty() {
        let _ = writeln!(o, "\nrespawn:");
        for r in &h.respawn {
            let built_in = if r.is_ipfail() {
                if h.ipfail_enabled() {
                    "  (ipfail: built into hb, not spawned)"
                } else {
                    "  (ipfail: not run, 'ipfail off')"
                }
            } else {
                ""
            };
            let _ = writeln!(o, "  {} {}{built_in}", r.user, r.command);
        }
    }
    let _ = writeln!(o, "\nfencing:");
    if h.fencing_configured() {
        for s in h.stonith_devices() {
            let usable = if s.usable_from(&c.local_node) {
                "used by this node"
            } else {
                "not from this node"
            };
            let _ = writeln!(
                o,
                "  stonith_host {} {} {} ({usable})",
                s.from,
                s.kind,
                s.params.join(" ")
            );
        }
        for f in &h.fence_commands {
            let _ = writeln!(o, "  fence_command {} NODE", f.join(" "));
        }
        let fs = hb_proto::fence::FenceSetup::from_config(c);
        if !fs.local_device {
            let _ = writeln!(
                o,
                "  this node has no device: it will not take over from a node dead by silence"
            );
        }
        let _ = writeln!(
            o,
            "  fence_timeout {}, first attempt after {} (fence_delay {} x position in node list)",
            mark(&h.fence_timeout, ms(h.fence_timeout.value)),
            ms(fs.delay),
            mark(&h.fence_delay, ms(h.fence_delay.value))
        );
    } else {
        let _ = writeln!(
            o,
            "  none: a takeover from a node dead by silence is not fenced (warned at each)"
        );
    }
    if !h.ignored.is_empty() {
        let _ = writeln!(o, "\nnot acted on by hbd:");
        for i in &h.ignored {
            let _ = writeln!(o, "  {} (line {}): {}", i.directive, i.line, i.why);
        }
    }

    let _ = writeln!(
        o,
        "\nresource groups (haresources; resources in start order):"
    );
    if c.groups.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for (i, g) in c.groups.iter().enumerate() {
        let _ = writeln!(
            o,
            "  group {i} (line {}) preferred node {}:",
            g.line, g.preferred_node
        );
        for r in g.start_order() {
            let _ = match r {
                Resource::Script { path, .. } => {
                    writeln!(o, "    {} [{}]", r.describe(), path.display())
                }
                _ => writeln!(o, "    {}", r.describe()),
            };
        }
    }

    let _ = writeln!(o, "\nauthkeys:");
    for k in c.authkeys.keys.values() {
        let method = match k.method {
            AuthMethod::Crc => "crc",
            AuthMethod::Md5 => "md5 (HMAC)",
            AuthMethod::Sha1 => "sha1 (HMAC)",
            AuthMethod::Sha256 => "sha256 (HMAC)",
        };
        let active = if k.id == c.authkeys.active {
            " (signs)"
        } else {
            " (verifies)"
        };
        let _ = writeln!(o, "  key {} {method}{active}", k.id);
    }
    o
}
