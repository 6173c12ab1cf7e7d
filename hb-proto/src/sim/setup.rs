//! Configurations built directly (no files): timings, groups and a node's whole `Config`.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use crate::config::{
    AuthKeys, AutoFailback, Config, HaCf, IpAddrAgent, Media, Resource, ResourceGroup, Setting,
    XdpMode,
};

/// Timings of a test cluster.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// keepalive.
    pub keepalive: Duration,
    /// deadtime.
    pub deadtime: Duration,
    /// warntime.
    pub warntime: Duration,
    /// initdead.
    pub initdead: Duration,
}

impl Timing {
    /// keepalive 10 ms, deadtime 50 ms, warntime 30 ms, initdead 100 ms.
    pub const FAST: Timing = Timing {
        keepalive: Duration::from_millis(10),
        deadtime: Duration::from_millis(50),
        warntime: Duration::from_millis(30),
        initdead: Duration::from_millis(100),
    };
}

/// Groups: one per entry, with the preferred node's name; group i is
/// `IPaddr::10.0.0.(100+i)/24/eth0 httpd`.
pub fn groups(preferred: &[&str]) -> Vec<ResourceGroup> {
    preferred
        .iter()
        .enumerate()
        .map(|(i, p)| ResourceGroup {
            preferred_node: (*p).to_owned(),
            resources: vec![
                Resource::IpAddr {
                    agent: IpAddrAgent::IpAddr,
                    addr: IpAddr::from([10, 0, 0, 100u8.wrapping_add(i as u8)]),
                    prefix: Some(24),
                    iface: Some("eth0".into()),
                    broadcast: None,
                    label: None,
                },
                Resource::Script {
                    name: "httpd".into(),
                    args: vec![],
                    path: PathBuf::from("/etc/init.d/httpd"),
                },
            ],
            line: i + 1,
        })
        .collect()
}

/// A full configuration for `local`.
pub fn config(
    nodes: &[&str],
    local: &str,
    groups: Vec<ResourceGroup>,
    timing: Timing,
    failback: AutoFailback,
    links: usize,
) -> Config {
    let media = (0..links)
        .map(|i| Media::Bcast {
            iface: format!("eth{}", i + 1),
        })
        .collect();
    Config {
        config_dir: PathBuf::from("/etc/ha.d"),
        local_node: local.to_owned(),
        ha_cf: HaCf {
            keepalive: Setting::set(timing.keepalive),
            deadtime: Setting::set(timing.deadtime),
            warntime: Setting::set(timing.warntime),
            initdead: Setting::set(timing.initdead),
            udpport: Setting::default_value(694),
            media,
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            auto_failback: Setting::set(failback),
            logfile: None,
            debugfile: None,
            logfacility: None,
            debug: Setting::default_value(0),
            ping: vec![],
            ping_groups: vec![],
            deadping: None,
            respawn: vec![],
            stonith_hosts: vec![],
            fence_commands: vec![],
            fence_delay: Setting::default_value(crate::config::ha_cf::DEFAULT_FENCE_DELAY),
            fence_timeout: Setting::default_value(crate::config::ha_cf::DEFAULT_FENCE_TIMEOUT),
            watchdog: None,
            realtime: Setting::default_value(true),
            hopfudge: Setting::default_value(1),
            autojoin: Setting::default_value("none".into()),
            xdp: Setting::default_value(XdpMode::Auto),
            garp_count: Setting::default_value(5),
            garp_interval: Setting::default_value(Duration::from_millis(200)),
            metrics_listen: None,
            control_socket: None,
            ignored: vec![],
            log_format: crate::config::Setting::default_value(crate::config::LogFormat::Heartbeat),
            syslog_ident: crate::config::Setting::default_value("heartbeat".into()),
            self_fence_command: None,
            ipfail: crate::config::Setting::default_value(false),
            ipfail_settle: None,
            ping_interval: None,
            control_group: None,
            arbiter: None,
            parameters: vec![],
        },
        groups,
        authkeys: AuthKeys {
            active: 1,
            keys: BTreeMap::new(),
        },
        warnings: vec![],
    }
}
