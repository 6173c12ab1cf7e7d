//! What a re-read configuration changes (SIGHUP, `hbctl reload`).
//!
//! [`plan_reload`] compares the running [`Config`] with a newly loaded, valid one and returns a
//! [`ReloadPlan`]: the changes the driver applies live ([`LiveChange`]), the directives whose
//! change needs a restart (logged by name, left for the next start), and the configuration to
//! run on from now: the new values of what applies live, the running values of the rest. Pure:
//! no I/O, no clock.
//!
//! Applied live: timings (`keepalive`, `deadtime`, `warntime`, `initdead`, through
//! `Node::set_timings`), `authkeys` (key rotation), logging (`logfile`, `debugfile`, `logfacility`, `debug`, `log_format`,
//! `syslog_ident`), gratuitous ARP settings (`garp_count`, `garp_interval`), `metrics_listen`,
//! `xdp`, `respawn` lines, `self_fence_command`, and ping nodes and ipfail (`ping`,
//! `ping_group`, `deadping`, `ping_interval`, `ipfail`, `ipfail_settle`, through
//! `Node::set_ping`; the driver opens or closes the raw ICMP socket as the set becomes
//! non-empty or empty).
//! Left for the next start: `node` lines, heartbeat media (`bcast`, `ucast`, `mcast`),
//! `udpport`, the resource groups (`haresources`), `auto_failback`, `autojoin`,
//! `control_socket`, `realtime`, `hopfudge`, `watchdog` (the device is opened at start) and
//! the fencing of peers (`stonith_host`, `fence_command`, `fence_delay`, `fence_timeout`), and
//! the arbiter (`arbiter`, `arbiter_*`: its etcd thread and lease are set up at start).

use std::time::Duration;

use super::model::{Config, HaCf};

/// Something a reload changes that the running daemon applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveChange {
    /// `keepalive`, `deadtime`, `warntime` or `initdead`: [`Timings`].
    Timings,
    /// `authkeys`: the new active key signs from now on, every listed key verifies.
    AuthKeys,
    /// `logfile`, `debugfile`, `logfacility`, `debug`, `log_format` or `syslog_ident`.
    Logging,
    /// `garp_count` or `garp_interval` (for addresses acquired from now on).
    Garp,
    /// `metrics_listen`: the Prometheus endpoint moves (or starts, or stops).
    MetricsListen,
    /// `xdp`: the fast path is attached or detached.
    Xdp,
    /// `respawn` lines: children of removed lines are stopped, new lines started.
    Respawn,
    /// `self_fence_command`: how a stop failure fences this node.
    Fencing,
    /// `ping`, `ping_group`, `deadping`, `ping_interval`, `ipfail` or `ipfail_settle`: the
    /// ping-node monitor is rebuilt (addresses that stay keep their state).
    Ping,
}

impl LiveChange {
    /// The directives behind the change, for the log.
    pub fn directives(self) -> &'static str {
        match self {
            LiveChange::Timings => "keepalive/deadtime/warntime/initdead",
            LiveChange::AuthKeys => "authkeys",
            LiveChange::Logging => "logfile/debugfile/logfacility/debug/log_format/syslog_ident",
            LiveChange::Garp => "garp_count/garp_interval",
            LiveChange::MetricsListen => "metrics_listen",
            LiveChange::Xdp => "xdp",
            LiveChange::Respawn => "respawn",
            LiveChange::Fencing => "self_fence_command",
            LiveChange::Ping => "ping/ping_group/deadping/ping_interval/ipfail/ipfail_settle",
        }
    }
}

/// The failure-detector timings of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `keepalive`.
    pub keepalive: Duration,
    /// `deadtime`.
    pub deadtime: Duration,
    /// `warntime`.
    pub warntime: Duration,
    /// `initdead`.
    pub initdead: Duration,
}

impl Timings {
    /// The timings `ha_cf` sets.
    pub fn of(ha_cf: &HaCf) -> Self {
        Self {
            keepalive: ha_cf.keepalive.value,
            deadtime: ha_cf.deadtime.value,
            warntime: ha_cf.warntime.value,
            initdead: ha_cf.initdead.value,
        }
    }
}

/// What a reload does. See the module documentation.
#[derive(Debug, Clone)]
pub struct ReloadPlan {
    /// Changes applied live, each once, in a fixed order.
    pub live: Vec<LiveChange>,
    /// Directives (or files) that changed but need a restart: logged by name, kept at their
    /// running values until the next start.
    pub restart: Vec<&'static str>,
    /// The configuration to run on from now.
    pub config: Config,
}

impl ReloadPlan {
    /// Whether the reload changes `c`.
    pub fn changes(&self, c: LiveChange) -> bool {
        self.live.contains(&c)
    }

    /// `true` when the new files change nothing.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

/// Compares the running configuration with a newly loaded (valid) one. See the module
/// documentation for what applies live and what waits for a restart.
pub fn plan_reload(old: &Config, new: Config) -> ReloadPlan {
    let (o, n) = (&old.ha_cf, &new.ha_cf);
    let mut live = Vec::new();
    let mut add = |c: LiveChange, changed: bool| {
        if changed {
            live.push(c);
        }
    };
    add(LiveChange::Timings, Timings::of(o) != Timings::of(n));
    add(LiveChange::AuthKeys, old.authkeys != new.authkeys);
    let ping_changed = o.ping != n.ping
        || o.ping_groups != n.ping_groups
        || o.deadping != n.deadping
        || o.ping_interval != n.ping_interval
        || o.ipfail != n.ipfail
        || o.ipfail_settle != n.ipfail_settle;
    add(
        LiveChange::Logging,
        o.logfile != n.logfile
            || o.debugfile != n.debugfile
            || o.logfacility != n.logfacility
            || o.debug.value != n.debug.value
            || o.log_format.value != n.log_format.value
            || o.syslog_ident.value != n.syslog_ident.value,
    );
    add(
        LiveChange::Garp,
        o.garp_count.value != n.garp_count.value || o.garp_interval.value != n.garp_interval.value,
    );
    add(
        LiveChange::MetricsListen,
        o.metrics_listen != n.metrics_listen,
    );
    add(LiveChange::Xdp, o.xdp.value != n.xdp.value);
    add(LiveChange::Respawn, o.respawn != n.respawn);
    add(
        LiveChange::Fencing,
        o.self_fence_command != n.self_fence_command,
    );
    add(LiveChange::Ping, ping_changed);

    let mut restart = Vec::new();
    let mut keep = |directive: &'static str, changed: bool| {
        if changed {
            restart.push(directive);
        }
    };
    keep("node", o.nodes != n.nodes);
    keep("bcast/ucast/mcast", o.media != n.media);
    keep("udpport", o.udpport.value != n.udpport.value);
    keep("haresources", old.groups != new.groups);
    keep(
        "auto_failback",
        o.auto_failback.value != n.auto_failback.value,
    );
    keep("autojoin", o.autojoin.value != n.autojoin.value);
    keep("control_socket", o.control_socket != n.control_socket);
    keep("realtime", o.realtime.value != n.realtime.value);
    keep("hopfudge", o.hopfudge.value != n.hopfudge.value);
    keep("watchdog", o.watchdog != n.watchdog);
    keep("stonith_host", o.stonith_hosts != n.stonith_hosts);
    keep("fence_command", o.fence_commands != n.fence_commands);
    keep("fence_delay", o.fence_delay.value != n.fence_delay.value);
    keep(
        "fence_timeout",
        o.fence_timeout.value != n.fence_timeout.value,
    );
    keep("arbiter", o.arbiter != n.arbiter);

    // Run on the new file, except what only a restart can change.
    let mut config = new;
    let h = &mut config.ha_cf;
    h.nodes.clone_from(&o.nodes);
    h.media.clone_from(&o.media);
    h.udpport = o.udpport.clone();
    h.auto_failback = o.auto_failback.clone();
    h.autojoin = o.autojoin.clone();
    h.control_socket.clone_from(&o.control_socket);
    h.realtime = o.realtime.clone();
    h.hopfudge = o.hopfudge.clone();
    h.watchdog.clone_from(&o.watchdog);
    h.arbiter.clone_from(&o.arbiter);
    h.stonith_hosts.clone_from(&o.stonith_hosts);
    h.fence_commands.clone_from(&o.fence_commands);
    h.fence_delay = o.fence_delay.clone();
    h.fence_timeout = o.fence_timeout.clone();
    config.groups.clone_from(&old.groups);
    ReloadPlan {
        live,
        restart,
        config,
    }
}

/// Puts `from`'s ping nodes and ipfail settings back into `to`: what the driver runs on when
/// it cannot apply a [`LiveChange::Ping`] (the raw ICMP socket cannot be opened).
pub fn keep_running_ping(to: &mut HaCf, from: &HaCf) {
    to.ping.clone_from(&from.ping);
    to.ping_groups.clone_from(&from.ping_groups);
    to.deadping = from.deadping;
    to.ping_interval = from.ping_interval;
    to.ipfail = from.ipfail.clone();
    to.ipfail_settle = from.ipfail_settle;
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use super::*;
    use crate::config::{AuthKey, AuthKeys, AuthMethod, parse_ha_cf, parse_haresources_with};

    const BASE: &str = "keepalive 10ms\ndeadtime 50ms\nwarntime 30ms\ninitdead 500ms\n\
                        bcast eth1\nauto_failback on\nnode n1 n2\n";

    fn config(ha_cf: &str, haresources: &str, key: &str) -> Config {
        let ha = parse_ha_cf(Path::new("ha.cf"), ha_cf.as_bytes()).expect("valid ha.cf");
        let resolve = |n: &str| Some(Path::new("/etc/init.d").join(n));
        let groups = parse_haresources_with(
            Path::new("haresources"),
            haresources.as_bytes(),
            &resolve,
            "/etc/init.d",
        )
        .expect("valid haresources");
        let mut keys = BTreeMap::new();
        keys.insert(
            1,
            AuthKey {
                id: 1,
                method: AuthMethod::Sha256,
                secret: key.as_bytes().to_vec(),
            },
        );
        Config {
            config_dir: "/etc/ha.d".into(),
            local_node: "n1".into(),
            ha_cf: ha.value,
            groups: groups.value,
            authkeys: AuthKeys { active: 1, keys },
            warnings: Vec::new(),
        }
    }

    fn base() -> Config {
        config(BASE, "n1 10.0.0.100 httpd\n", "secret")
    }

    #[test]
    fn same_files_change_nothing() {
        let plan = plan_reload(&base(), base());
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn timings_apply_live() {
        let new = config(
            &BASE.replace("keepalive 10ms", "keepalive 20ms"),
            "n1 10.0.0.100 httpd\n",
            "secret",
        );
        let plan = plan_reload(&base(), new);
        assert_eq!(plan.live, vec![LiveChange::Timings]);
        assert!(plan.restart.is_empty());
        let t = Timings::of(&plan.config.ha_cf);
        assert_eq!(t.keepalive, Duration::from_millis(20));
        assert_eq!(t.deadtime, Duration::from_millis(50));
    }

    #[test]
    fn key_rotation_logging_garp_metrics_xdp_respawn_fencing_apply_live() {
        let extra = "logfile /var/log/ha-log\nlog_format hb\nsyslog_ident hb\ngarp_count 3\n\
                     metrics_listen 127.0.0.1:9694\nxdp off\nrespawn hacluster /bin/true\n\
                     self_fence_command /bin/true\n";
        let new = config(&format!("{BASE}{extra}"), "n1 10.0.0.100 httpd\n", "other");
        let plan = plan_reload(&base(), new);
        assert_eq!(
            plan.live,
            vec![
                LiveChange::AuthKeys,
                LiveChange::Logging,
                LiveChange::Garp,
                LiveChange::MetricsListen,
                LiveChange::Xdp,
                LiveChange::Respawn,
                LiveChange::Fencing,
            ]
        );
        assert!(plan.restart.is_empty(), "{:?}", plan.restart);
        assert_eq!(plan.config.authkeys.keys[&1].secret, b"other");
        assert_eq!(plan.config.ha_cf.garp_count.value, 3);
    }

    #[test]
    fn nodes_media_and_groups_wait_for_a_restart() {
        let ha = BASE
            .replace("node n1 n2", "node n1 n2 n3")
            .replace("bcast eth1", "bcast eth1 eth2")
            .replace("auto_failback on", "auto_failback off")
            .replace("keepalive 10ms", "keepalive 15ms");
        let old = base();
        let plan = plan_reload(&old, config(&ha, "n2 10.0.0.101\n", "secret"));
        assert_eq!(
            plan.restart,
            vec!["node", "bcast/ucast/mcast", "haresources", "auto_failback"]
        );
        // The keepalive applies; everything else runs on as before.
        assert_eq!(plan.live, vec![LiveChange::Timings]);
        let c = &plan.config;
        assert_eq!(c.ha_cf.keepalive.value, Duration::from_millis(15));
        assert_eq!(c.ha_cf.nodes, old.ha_cf.nodes);
        assert_eq!(c.ha_cf.media, old.ha_cf.media);
        assert_eq!(c.groups, old.groups);
        assert_eq!(c.ha_cf.auto_failback.value, old.ha_cf.auto_failback.value);
    }

    #[test]
    fn ping_nodes_and_ipfail_apply_live() {
        // The core rebuilds its ping-node monitor (Node::set_ping) and the driver opens the raw
        // ICMP socket: the plan runs on the new ping nodes.
        let extra = "ping 10.0.0.1\ndeadping 200ms\nipfail on\n";
        let old = base();
        let plan = plan_reload(
            &old,
            config(&format!("{BASE}{extra}"), "n1 10.0.0.100 httpd\n", "secret"),
        );
        assert_eq!(plan.live, vec![LiveChange::Ping]);
        assert!(plan.restart.is_empty(), "{:?}", plan.restart);
        let h = &plan.config.ha_cf;
        assert_eq!(
            h.ping,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(h.deadping, Some(Duration::from_millis(200)));
        assert!(h.ipfail.value);
        // When the driver cannot apply it, it runs on the old ones.
        let mut kept = plan.config.ha_cf.clone();
        keep_running_ping(&mut kept, &old.ha_cf);
        assert_eq!(kept.ping, old.ha_cf.ping);
        assert_eq!(kept.deadping, old.ha_cf.deadping);
        assert_eq!(kept.ipfail.value, old.ha_cf.ipfail.value);
        // And back out: removing them is live too.
        let back = plan_reload(&plan.config, base());
        assert_eq!(back.live, vec![LiveChange::Ping]);
        assert!(back.config.ha_cf.ping.is_empty());
    }
}
