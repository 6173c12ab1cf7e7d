//! Shared test helpers: configurations built directly, hand-made peer messages, and the
//! deterministic simulation harness in [`sim`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod sim;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use hb_proto::{
    Timestamp,
    config::{
        AuthKeys, AutoFailback, Config, HaCf, IpAddrAgent, Media, Resource, ResourceGroup, Setting,
        XdpMode, node_id,
    },
    message::{Echo, GroupState, Holding, Message, MessageKind, NodeStatus},
    node::{Event, Node, Output, groups_digest},
};

/// Timings of a test cluster.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub keepalive: Duration,
    pub deadtime: Duration,
    pub warntime: Duration,
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

/// Milliseconds as a timestamp.
pub fn ms(n: u64) -> Timestamp {
    Timestamp::from_nanos(n * 1_000_000)
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
                    addr: IpAddr::from([10, 0, 0, 100 + u8::try_from(i).unwrap()]),
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
            fence_delay: Setting::default_value(hb_proto::config::ha_cf::DEFAULT_FENCE_DELAY),
            fence_timeout: Setting::default_value(hb_proto::config::ha_cf::DEFAULT_FENCE_TIMEOUT),
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
            log_format: hb_proto::config::Setting::default_value(
                hb_proto::config::LogFormat::Heartbeat,
            ),
            syslog_ident: hb_proto::config::Setting::default_value("heartbeat".into()),
            self_fence_command: None,
            control_group: None,
        },
        groups,
        authkeys: AuthKeys {
            active: 1,
            keys: BTreeMap::new(),
        },
        warnings: vec![],
    }
}

/// A hand-made message from a peer, as the codec would decode it.
#[derive(Debug, Clone)]
pub struct PeerMsg {
    pub msg: Message,
}

impl PeerMsg {
    /// A heartbeat from `name` (Active, every group `None`).
    pub fn hb(name: &str, generation: u64, seq: u64, send_time: Timestamp, ngroups: usize) -> Self {
        Self {
            msg: Message {
                kind: MessageKind::Heartbeat,
                sender: node_id(name),
                generation,
                seq,
                send_time,
                groups_digest: 0,
                status: NodeStatus::Active,
                echoes: vec![],
                groups: (0..ngroups)
                    .map(|g| GroupState {
                        group: u16::try_from(g).unwrap(),
                        holding: Holding::None,
                        failed: false,
                        standby: false,
                        wants: false,
                    })
                    .collect(),
            },
        }
    }

    /// With the digest of `groups`.
    pub fn digest(mut self, groups: &[ResourceGroup]) -> Self {
        self.msg.groups_digest = groups_digest(groups);
        self
    }

    /// Group `g` in holding state `h`.
    pub fn holding(mut self, g: usize, h: Holding) -> Self {
        self.msg.groups[g].holding = h;
        self
    }

    /// Group `g` flags.
    pub fn flags(mut self, g: usize, failed: bool, standby: bool, wants: bool) -> Self {
        let s = &mut self.msg.groups[g];
        s.failed = failed;
        s.standby = standby;
        s.wants = wants;
        self
    }

    /// Echoing a heartbeat of `node` sent at `send_time`.
    pub fn echo(mut self, node: &str, send_time: Timestamp) -> Self {
        self.msg.echoes.push(Echo {
            node: node_id(node),
            send_time,
            hold: Duration::ZERO,
        });
        self
    }

    /// Status.
    pub fn status(mut self, s: NodeStatus) -> Self {
        self.msg.status = s;
        self
    }

    /// A shutdown notice instead.
    pub fn shutdown(mut self) -> Self {
        self.msg.kind = MessageKind::Shutdown;
        self
    }
}

/// Every output queued.
pub fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// The events among outputs, as their log lines.
pub fn lines(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

/// The events among outputs.
pub fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The resource actions and reannounces among outputs, in order.
pub fn actions(outputs: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Resource { .. } | Output::Reannounce { .. }))
        .cloned()
        .collect()
}

/// The transmitted messages among outputs.
pub fn sent(outputs: &[Output]) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { msg, .. } => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// The send_time of the last transmitted message, for echoing.
pub fn last_send_time(outputs: &[Output]) -> Option<Timestamp> {
    sent(outputs).last().map(|m| m.send_time)
}
