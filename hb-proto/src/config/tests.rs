//! Unit tests: one per rule and per malformed input, asserting the exact `PATH:LINE: message`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::*;

const BASE: &str = "keepalive 2\ndeadtime 30\nbcast eth1\nauto_failback on\nnode a b\n";

fn ha_cf(src: &str) -> Parsed<HaCf> {
    match parse_ha_cf(Path::new("ha.cf"), src.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors: {e:?}"),
    }
}

fn strings(d: &[Diagnostic]) -> Vec<String> {
    d.iter().map(ToString::to_string).collect()
}

fn ha_cf_errors(src: &[u8]) -> Vec<String> {
    strings(&parse_ha_cf(Path::new("ha.cf"), src).expect_err("expected errors"))
}

fn ha_cf_warnings(src: &str) -> Vec<String> {
    strings(&ha_cf(src).warnings)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn fake_resolve(name: &str) -> Option<PathBuf> {
    (name != "nosuch").then(|| PathBuf::from("/etc/init.d").join(name))
}

fn har(src: &str) -> Parsed<Vec<ResourceGroup>> {
    match parse_haresources_with(
        Path::new("haresources"),
        src.as_bytes(),
        &fake_resolve,
        "/etc/ha.d/resource.d, /etc/init.d",
    ) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors: {e:?}"),
    }
}

fn har_errors(src: &[u8]) -> Vec<String> {
    strings(
        &parse_haresources_with(
            Path::new("haresources"),
            src,
            &fake_resolve,
            "/etc/ha.d/resource.d, /etc/init.d",
        )
        .expect_err("expected errors"),
    )
}

fn one_resource(src: &str) -> Resource {
    let g = har(src).value;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].resources.len(), 1);
    g[0].resources[0].clone()
}

fn keys(src: &str) -> Parsed<AuthKeys> {
    match parse_authkeys(Path::new("authkeys"), src.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors: {e:?}"),
    }
}

fn key_errors(src: &[u8]) -> Vec<String> {
    strings(&parse_authkeys(Path::new("authkeys"), src).expect_err("expected errors"))
}

// ---------------------------------------------------------------- ha.cf: values and defaults

#[test]
fn classic_values() {
    let p = ha_cf(
        "logfile /var/log/ha-log\nlogfacility local0\nkeepalive 2\ndeadtime 30\nwarntime 10\n\
         initdead 120\nudpport 694\nbcast eth1\nauto_failback on\nnode node1.example.com\n\
         node node2.example.com\n",
    );
    let c = p.value;
    assert_eq!(ms(c.keepalive.value), 2000);
    assert_eq!(ms(c.deadtime.value), 30_000);
    assert_eq!(ms(c.warntime.value), 10_000);
    assert_eq!(ms(c.initdead.value), 120_000);
    assert_eq!(c.udpport, Setting::set(694));
    assert_eq!(
        c.media,
        vec![Media::Bcast {
            iface: "eth1".into()
        }]
    );
    assert_eq!(c.nodes, vec!["node1.example.com", "node2.example.com"]);
    assert_eq!(c.auto_failback, Setting::set(AutoFailback::On));
    assert_eq!(c.logfile, Some(PathBuf::from("/var/log/ha-log")));
    assert_eq!(c.logfacility.as_deref(), Some("local0"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn heartbeat_defaults_are_marked() {
    let c = ha_cf("bcast eth0\nnode a\nauto_failback off\n").value;
    assert_eq!(c.keepalive, Setting::default_value(Duration::from_secs(1)));
    assert_eq!(c.deadtime, Setting::default_value(Duration::from_secs(30)));
    assert_eq!(
        c.warntime,
        Setting::default_value(Duration::from_secs(15)),
        "warntime defaults to deadtime/2"
    );
    assert_eq!(
        c.initdead,
        Setting::default_value(Duration::from_secs(30)),
        "deadtime > 10 s: initdead defaults to deadtime"
    );
    assert_eq!(c.udpport, Setting::default_value(694));
    assert_eq!(c.debug, Setting::default_value(0));
    assert_eq!(c.realtime, Setting::default_value(true));
    assert_eq!(c.hopfudge, Setting::default_value(1));
    assert_eq!(c.autojoin, Setting::default_value("none".to_string()));
    assert_eq!(c.xdp, Setting::default_value(XdpMode::Auto));
    assert_eq!(c.garp_count, Setting::default_value(5));
    assert_eq!(
        c.garp_interval,
        Setting::default_value(Duration::from_millis(200))
    );
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.control_socket, None);
    assert_eq!(c.control_group, None);
    assert_eq!(c.effective_deadping(), Duration::from_secs(30));
}

#[test]
fn millisecond_timings() {
    let c = ha_cf("keepalive 10ms\ndeadtime 0.05\nbcast eth1\nnode a\nauto_failback on\n").value;
    assert_eq!(ms(c.keepalive.value), 10);
    assert_eq!(ms(c.deadtime.value), 50);
    assert_eq!(
        c.warntime,
        Setting::default_value(Duration::from_millis(25))
    );
    assert_eq!(
        c.initdead,
        Setting::default_value(Duration::from_secs(12)),
        "deadtime < 6 s: initdead defaults to 12 s"
    );
}

#[test]
fn initdead_default_between_6_and_10_s_is_twice_deadtime() {
    let c = ha_cf("deadtime 8\nbcast eth1\nnode a\nauto_failback on\n").value;
    assert_eq!(c.initdead, Setting::default_value(Duration::from_secs(16)));
    let c = ha_cf("deadtime 10\nbcast eth1\nnode a\nauto_failback on\n").value;
    assert_eq!(c.initdead, Setting::default_value(Duration::from_secs(20)));
    let c = ha_cf("deadtime 10.001\nbcast eth1\nnode a\nauto_failback on\n").value;
    assert_eq!(
        c.initdead,
        Setting::default_value(Duration::from_millis(10_001))
    );
}

#[test]
fn us_suffix_rounds_with_a_warning() {
    let p = ha_cf("keepalive 1500us\ndeadtime 10ms\nbcast eth1\nnode a\nauto_failback on\n");
    assert_eq!(ms(p.value.keepalive.value), 2);
    assert_eq!(
        strings(&p.warnings),
        vec!["ha.cf:1: keepalive 1500us rounded to 2 ms, as Heartbeat does"]
    );
}

#[test]
fn deadtime_must_exceed_twice_keepalive() {
    assert_eq!(
        ha_cf_errors(b"keepalive 10ms\ndeadtime 20ms\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:2: deadtime (20 ms) must be more than twice keepalive (10 ms)"]
    );
    // Just over twice is fine.
    ha_cf("keepalive 10ms\ndeadtime 21ms\nbcast eth1\nnode a\nauto_failback on\n");
    // With deadtime defaulted, the keepalive line is blamed.
    assert_eq!(
        ha_cf_errors(b"keepalive 15\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:1: deadtime (30000 ms) must be more than twice keepalive (15000 ms)"]
    );
}

#[test]
fn initdead_must_be_at_least_deadtime() {
    assert_eq!(
        ha_cf_errors(b"deadtime 30\ninitdead 20\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:2: initdead (20000 ms) must be at least deadtime (30000 ms)"]
    );
    assert_eq!(
        ha_cf_warnings(
            "keepalive 10ms\ndeadtime 50ms\ninitdead 1\nbcast eth1\nnode a\nauto_failback on\n"
        ),
        vec![
            "ha.cf:3: initdead (1000 ms) may be too small: it allows for slow network start-up \
             and should be at least 10 s"
        ]
    );
}

#[test]
fn warntime_at_or_above_deadtime_is_warned() {
    assert_eq!(
        ha_cf_warnings(
            "keepalive 10ms\ndeadtime 50ms\nwarntime 10\nbcast eth1\nnode a\nauto_failback on\n"
        ),
        vec![
            "ha.cf:3: warntime (10000 ms) is not less than deadtime (50 ms): no late-heartbeat \
             warning will come before a node is declared dead"
        ]
    );
    assert_eq!(
        ha_cf_errors(b"warntime 0\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:1: warntime: must be more than 0"]
    );
}

#[test]
fn keepalive_zero_is_refused() {
    assert_eq!(
        ha_cf_errors(b"keepalive 0\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:1: keepalive: must be more than 0"]
    );
}

#[test]
fn deadping_defaults_to_deadtime_and_is_checked() {
    let c = ha_cf("deadping 40\nping 10.0.0.254\nbcast eth1\nnode a\nauto_failback on\n").value;
    assert_eq!(c.deadping, Some(Duration::from_secs(40)));
    assert_eq!(c.effective_deadping(), Duration::from_secs(40));
    assert_eq!(c.ping, vec!["10.0.0.254".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        ha_cf_errors(b"keepalive 1\ndeadping 2\nbcast eth1\nnode a\nauto_failback on\n"),
        vec!["ha.cf:2: deadping (2000 ms) must be more than twice keepalive (1000 ms)"]
    );
}

#[test]
fn bad_number_and_bad_unit() {
    assert_eq!(
        ha_cf_errors(
            b"keepalive abc\ndeadtime 1s\nwarntime 1.2.3\nbcast eth1\nnode a\nauto_failback on\n"
        ),
        vec![
            "ha.cf:1: keepalive: 'abc' is not a number",
            "ha.cf:2: deadtime: unknown unit 's' in '1s' (a bare number is seconds; ms and us \
             are the only suffixes)",
            "ha.cf:3: warntime: '1.2.3' is not a number",
        ]
    );
    assert_eq!(
        ha_cf_errors(
            b"udpport 69x\ndebug 300\nhopfudge -1\nbcast eth1\nnode a\nauto_failback on\n"
        ),
        vec![
            "ha.cf:1: udpport: '69x' is not a number",
            "ha.cf:2: debug: 300 is out of range (0..255)",
            "ha.cf:3: hopfudge: '-1' is not a number",
        ]
    );
}

#[test]
fn missing_and_extra_values() {
    assert_eq!(
        ha_cf_errors(b"keepalive\ndeadtime 30 40\nbcast eth1\nnode a\nauto_failback on\n"),
        vec![
            "ha.cf:1: keepalive: missing value",
            "ha.cf:2: deadtime: takes one value, got 2 (30 40)",
        ]
    );
}

#[test]
fn repeated_directive_last_wins_with_warning() {
    let p = ha_cf("keepalive 2\nkeepalive 3\nbcast eth1\nnode a\nauto_failback on\n");
    assert_eq!(ms(p.value.keepalive.value), 3000);
    assert_eq!(
        strings(&p.warnings),
        vec!["ha.cf:2: keepalive set again (first at line 1); the last value wins"]
    );
}

#[test]
fn udpport_default_set_and_range() {
    assert_eq!(ha_cf(BASE).value.udpport, Setting::default_value(694));
    assert_eq!(
        ha_cf(&format!("udpport 1001\n{BASE}")).value.udpport,
        Setting::set(1001)
    );
    assert_eq!(
        ha_cf_errors(format!("udpport 0\n{BASE}").as_bytes()),
        vec!["ha.cf:1: udpport: 0 is not a valid port (1..65535)"]
    );
    assert_eq!(
        ha_cf_errors(format!("udpport 70000\n{BASE}").as_bytes()),
        vec!["ha.cf:1: udpport: 70000 is out of range (1..65535)"]
    );
    assert_eq!(
        ha_cf_warnings(&format!("{BASE}udpport 700\n")),
        vec![
            "ha.cf:6: udpport after a medium (line 3): Heartbeat applies it only to media \
             declared after it, hb applies it to every bcast and ucast medium"
        ]
    );
}

#[test]
fn directives_repeat_and_take_several_values() {
    let c = ha_cf(
        "bcast eth0 eth1\nbcast eth2,eth3\nnode A.example.com\nnode b c,d\nauto_failback on\n",
    )
    .value;
    let ifaces: Vec<&str> = c.media.iter().map(Media::iface).collect();
    assert_eq!(ifaces, vec!["eth0", "eth1", "eth2", "eth3"]);
    assert_eq!(c.nodes, vec!["a.example.com", "b", "c", "d"], "lower-cased");
}

#[test]
fn ucast_and_mcast_media() {
    let c =
        ha_cf("ucast eth1 10.0.0.2\nmcast eth2 239.192.0.1 694 1 0\nnode a\nauto_failback on\n")
            .value;
    assert_eq!(
        c.media,
        vec![
            Media::Ucast {
                iface: "eth1".into(),
                addr: "10.0.0.2".parse().unwrap()
            },
            Media::Mcast {
                iface: "eth2".into(),
                group: "239.192.0.1".parse().unwrap(),
                port: 694,
                ttl: 1,
                loopback: false
            }
        ]
    );
    assert_eq!(
        ha_cf_errors(
            b"ucast eth1\nucast eth1 peer.example.com\nmcast eth2 10.0.0.1 694 1 0\n\
              mcast eth2 239.0.0.1 694 1 2\nmcast eth2 239.0.0.1 0 1 0\nbcast eth0\nnode a\n\
              auto_failback on\n"
        ),
        vec![
            "ha.cf:1: ucast: expected 'ucast IFACE PEER-IP-ADDRESS'",
            "ha.cf:2: ucast: 'peer.example.com' is not an IPv4 address (hb does not resolve host \
             names)",
            "ha.cf:3: mcast: 10.0.0.1 is not a multicast group (224.0.0.0 - 239.255.255.255)",
            "ha.cf:4: mcast loop: '2' is not 0 or 1",
            "ha.cf:5: mcast port: 0 is not a valid port (1..65535)",
        ]
    );
}

#[test]
fn missing_media() {
    assert_eq!(
        ha_cf_errors(b"node a\nauto_failback on\n"),
        vec!["ha.cf:0: no heartbeat media: add a bcast, ucast or mcast line"]
    );
}

#[test]
fn missing_nodes() {
    assert_eq!(
        ha_cf_errors(b"bcast eth0\nauto_failback on\n"),
        vec!["ha.cf:0: no node directive: list every cluster node (its uname -n) on node lines"]
    );
    // autojoin any: nodes may join without node lines.
    ha_cf("bcast eth0\nautojoin any\nauto_failback on\n");
}

#[test]
fn duplicate_node() {
    assert_eq!(
        ha_cf_errors(b"bcast eth0\nnode a b\nnode B\nauto_failback on\n"),
        vec!["ha.cf:3: duplicate node 'b' (already listed at line 2)"]
    );
}

#[test]
fn node_id_collision_is_refused() {
    assert_eq!(node_id("node129599"), node_id("node732382"));
    assert_eq!(
        ha_cf_errors(b"bcast eth0\nnode node129599\nnode node732382\nauto_failback on\n"),
        vec![
            "ha.cf:3: node 'node732382' has the same id (0xf0870842) as node 'node129599' \
             (line 2); rename one of them"
        ]
    );
}

#[test]
fn implausible_interface_names() {
    assert_eq!(
        ha_cf_errors(b"bcast eth0/1 averyveryverylongname\nnode a\nauto_failback on\n"),
        vec![
            "ha.cf:1: bcast: bad interface name 'eth0/1' (an interface name is 1 to 15 \
             characters without '/', ':' or spaces)",
            "ha.cf:1: bcast: bad interface name 'averyveryverylongname' (an interface name is 1 \
             to 15 characters without '/', ':' or spaces)",
            "ha.cf:0: no heartbeat media: add a bcast, ucast or mcast line",
        ]
    );
}

#[test]
fn unknown_directive() {
    assert_eq!(
        ha_cf_errors(format!("{BASE}foo bar\nKeepalive 2\n").as_bytes()),
        vec![
            "ha.cf:6: unknown directive 'foo'",
            "ha.cf:7: unknown directive 'Keepalive' (directives are lower case)",
        ]
    );
}

#[test]
fn unsupported_features_are_errors() {
    assert_eq!(
        ha_cf_errors(
            format!(
                "{BASE}serial /dev/ttyS0\nbaud 19200\ncrm on\ncrm respawn\npacemaker on\n\
                 compression bz2\n"
            )
            .as_bytes()
        ),
        vec![
            "ha.cf:6: 'serial' is not supported by hb: serial heartbeat links are not supported \
             by hb; use bcast, ucast or mcast",
            "ha.cf:7: 'baud' is not supported by hb: serial heartbeat links are not supported by \
             hb; remove baud",
            "ha.cf:8: 'crm on' is not supported by hb: hb manages the resources in haresources \
             itself and cannot run Pacemaker",
            "ha.cf:9: 'crm respawn' is not supported by hb: hb manages the resources in \
             haresources itself and cannot run Pacemaker",
            "ha.cf:10: 'pacemaker on' is not supported by hb: hb manages the resources in \
             haresources itself and cannot run Pacemaker",
            "ha.cf:11: 'compression' is not supported by hb: message compression is not \
             supported by hb (its messages are small)",
        ]
    );
}

#[test]
fn switched_off_or_harmless_directives_are_warnings() {
    assert_eq!(
        ha_cf_warnings(&format!(
            "{BASE}crm off\npacemaker no\nuse_logd yes\ncoredumps true\nuuidfrom nodename\n\
             apiauth ipfail uid=hacluster\nrtprio 5\n"
        )),
        vec![
            "ha.cf:6: 'crm off' ignored: hb manages haresources itself",
            "ha.cf:7: 'pacemaker no' ignored: hb manages haresources itself",
            "ha.cf:8: 'use_logd' ignored: hb does not use logd; it logs through logfile, \
             debugfile and logfacility itself",
            "ha.cf:9: 'coredumps' ignored: core dumps are left to the system's settings",
            "ha.cf:10: 'uuidfrom' ignored: hb identifies nodes by node name",
            "ha.cf:11: 'apiauth' ignored: hb has no Heartbeat client API; API authorisations do \
             not apply",
            "ha.cf:12: 'rtprio' ignored: hb uses a fixed real-time priority when realtime is on",
        ]
    );
}

#[test]
fn auto_failback_values_and_legacy_default() {
    let c = ha_cf("bcast eth0\nnode a\nauto_failback off\n").value;
    assert_eq!(c.auto_failback, Setting::set(AutoFailback::Off));
    let c = ha_cf("bcast eth0\nnode a\nauto_failback yes\n").value;
    assert_eq!(c.auto_failback, Setting::set(AutoFailback::On));
    let p = ha_cf("bcast eth0\nnode a\nauto_failback legacy\n");
    assert_eq!(p.value.auto_failback, Setting::set(AutoFailback::Legacy));
    assert_eq!(
        strings(&p.warnings),
        vec![
            "ha.cf:3: deprecated 'legacy' auto_failback (hb treats it as on); please convert to \
             'auto_failback on'"
        ]
    );
    let p = ha_cf("bcast eth0\nnode a\n");
    assert_eq!(
        p.value.auto_failback,
        Setting::default_value(AutoFailback::Legacy)
    );
    assert_eq!(
        strings(&p.warnings),
        vec![
            "ha.cf:0: auto_failback not set: Heartbeat's default 'legacy' applies (hb treats it \
             as on); set auto_failback on or off"
        ]
    );
    assert_eq!(
        ha_cf_errors(b"bcast eth0\nnode a\nauto_failback maybe\n"),
        vec!["ha.cf:3: auto_failback: 'maybe' is not one of on, off, legacy"]
    );
    // Heartbeat's obsolete nice_failback on = auto_failback off.
    let c = ha_cf("bcast eth0\nnode a\nnice_failback on\n").value;
    assert_eq!(c.auto_failback, Setting::set(AutoFailback::Off));
}

#[test]
fn other_heartbeat_directives() {
    let c = ha_cf(
        "debugfile /var/log/ha-debug\nlogfacility none\ndebug 3\n\
         ping_group routers 10.0.0.253 10.0.0.254\nrespawn hacluster /usr/lib/heartbeat/ipfail -x\n\
         stonith_host * baytech 10.0.0.3 mylogin secret\nwatchdog /dev/watchdog\nrealtime off\n\
         hopfudge 2\nautojoin other\nbcast eth0\nnode a\nauto_failback on\n",
    )
    .value;
    assert_eq!(c.debugfile, Some(PathBuf::from("/var/log/ha-debug")));
    assert_eq!(c.logfacility, None);
    assert_eq!(c.debug, Setting::set(3));
    assert_eq!(
        c.ping_groups,
        vec![PingGroup {
            name: "routers".into(),
            hosts: vec!["10.0.0.253".parse().unwrap(), "10.0.0.254".parse().unwrap()]
        }]
    );
    assert_eq!(
        c.respawn,
        vec![Respawn {
            user: "hacluster".into(),
            command: "/usr/lib/heartbeat/ipfail -x".into()
        }]
    );
    assert_eq!(
        c.stonith_hosts,
        vec!["* baytech 10.0.0.3 mylogin secret".to_string()]
    );
    assert_eq!(c.watchdog, Some(PathBuf::from("/dev/watchdog")));
    assert_eq!(c.realtime, Setting::set(false));
    assert_eq!(c.hopfudge, Setting::set(2));
    assert_eq!(c.autojoin, Setting::set("other".to_string()));
    assert_eq!(
        ha_cf_errors(
            b"logfacility local9\nrespawn hacluster\nwatchdog /dev/a\nwatchdog /dev/b\n\
              autojoin some\nping host.example.com\nbcast eth0\nnode a\nauto_failback on\n"
        ),
        vec![
            "ha.cf:1: logfacility: 'local9' is not a syslog facility (daemon, local0..local7, \
             none, ...)",
            "ha.cf:2: respawn: expected 'respawn USER COMMAND [ARGS]'",
            "ha.cf:4: watchdog: device given twice (first at line 3)",
            "ha.cf:5: autojoin: 'some' is not one of none, other, any",
            "ha.cf:6: ping: 'host.example.com' is not an IP address (hb does not resolve names)",
        ]
    );
}

#[test]
fn hb_additions() {
    let c = ha_cf(&format!(
        "{BASE}xdp on\ngarp_count 3\ngarp_interval 100ms\nmetrics_listen 127.0.0.1:9694\n\
         control_socket /run/hb/ctl.sock\ncontrol_group monitoring\n"
    ))
    .value;
    assert_eq!(c.control_group.as_deref(), Some("monitoring"));
    assert_eq!(c.parameter("garp_interval"), Some("100ms"));
    assert_eq!(
        c.parameter("keepalive"),
        Some("2"),
        "as written: {:?}",
        c.parameters
    );
    assert_eq!(c.parameter("warntime"), None);
    assert_eq!(
        ha_cf(&format!("{BASE}control_group none\n"))
            .value
            .control_group
            .as_deref(),
        Some("none")
    );
    assert_eq!(c.xdp, Setting::set(XdpMode::On));
    assert_eq!(c.garp_count, Setting::set(3));
    assert_eq!(c.garp_interval, Setting::set(Duration::from_millis(100)));
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9694".parse().unwrap()));
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/hb/ctl.sock")));
    let c = ha_cf(&format!("{BASE}xdp off\nmetrics_listen [::1]:9100\n")).value;
    assert_eq!(c.xdp, Setting::set(XdpMode::Off));
    assert_eq!(c.metrics_listen, Some("[::1]:9100".parse().unwrap()));
    assert_eq!(
        ha_cf_errors(
            format!(
                "{BASE}xdp maybe\ngarp_count 1000\ngarp_interval 1s\nmetrics_listen 9694\n\
                 control_socket hb.sock\ncontrol_group ha/client\n"
            )
            .as_bytes()
        ),
        vec![
            "ha.cf:6: xdp: 'maybe' is not one of auto, on, off",
            "ha.cf:7: garp_count: 1000 is out of range (0..100)",
            "ha.cf:8: garp_interval: unknown unit 's' in '1s' (a bare number is seconds; ms and \
             us are the only suffixes)",
            "ha.cf:9: metrics_listen: '9694' is not ADDR:PORT (127.0.0.1:9694, [::1]:9694) or off",
            "ha.cf:10: control_socket: 'hb.sock' is not an absolute path",
            "ha.cf:11: control_group: 'ha/client' is not a group name (letters, digits, '_', \
             '-', '.'; at most 32) or none",
        ]
    );
}

#[test]
fn comments_blank_lines_and_crlf() {
    let c = ha_cf(
        "# comment\r\n\r\n   keepalive 2 # two seconds\r\n\tdeadtime 30#thirty\r\nbcast eth1\r\n\
         node a\r\nauto_failback on",
    )
    .value;
    assert_eq!(ms(c.keepalive.value), 2000);
    assert_eq!(ms(c.deadtime.value), 30_000);
    assert_eq!(c.nodes, vec!["a"]);
}

#[test]
fn non_utf8_line() {
    assert_eq!(
        ha_cf_errors(b"bcast eth0\nnode \xff\nnode a\nauto_failback on\n"),
        vec!["ha.cf:2: line is not valid UTF-8 (bad byte at column 6)"]
    );
}

#[test]
fn empty_ha_cf() {
    assert_eq!(
        ha_cf_errors(b""),
        vec!["ha.cf:0: file is empty: no directives"]
    );
    assert_eq!(
        ha_cf_errors(b"# only comments\n\n"),
        vec!["ha.cf:0: file is empty: no directives"]
    );
}

#[test]
fn all_problems_are_reported() {
    let e = ha_cf_errors(b"keepalive x\nfoo\nbcast\nnode\n");
    assert_eq!(
        e,
        vec![
            "ha.cf:1: keepalive: 'x' is not a number",
            "ha.cf:2: unknown directive 'foo'",
            "ha.cf:3: bcast: missing interface name",
            "ha.cf:4: node: missing node name",
            "ha.cf:0: no node directive: list every cluster node (its uname -n) on node lines",
            "ha.cf:0: no heartbeat media: add a bcast, ucast or mcast line",
        ]
    );
}

// ---------------------------------------------------------------- haresources

#[test]
fn classic_haresources() {
    let g = har("node1.example.com httpd\n").value;
    assert_eq!(
        g,
        vec![ResourceGroup {
            preferred_node: "node1.example.com".into(),
            resources: vec![Resource::Script {
                name: "httpd".into(),
                args: vec![],
                path: PathBuf::from("/etc/init.d/httpd")
            }],
            line: 1
        }]
    );
}

#[test]
fn bare_ip_means_ipaddr() {
    assert_eq!(
        one_resource("a 10.0.0.100"),
        Resource::IpAddr {
            agent: IpAddrAgent::IpAddr,
            addr: "10.0.0.100".parse().unwrap(),
            prefix: None,
            iface: None,
            broadcast: None,
            label: None,
        }
    );
    assert_eq!(
        one_resource("a 2001:db8::10/64"),
        Resource::IpAddr {
            agent: IpAddrAgent::IpAddr,
            addr: "2001:db8::10".parse().unwrap(),
            prefix: Some(64),
            iface: None,
            broadcast: None,
            label: None,
        }
    );
}

#[test]
fn only_words_spelled_like_ip_addresses_are_addresses() {
    assert!(matches!(
        one_resource("a 3ware.sh"),
        Resource::Script { ref name, .. } if name == "3ware.sh"
    ));
    assert!(matches!(
        one_resource("a mail.to"),
        Resource::Script { ref name, .. } if name == "mail.to"
    ));
}

#[test]
fn ipaddr_argument_forms() {
    let ip = |agent, prefix, iface: Option<&str>, broadcast: Option<&str>| Resource::IpAddr {
        agent,
        addr: "10.0.0.100".parse().unwrap(),
        prefix,
        iface: iface.map(str::to_string),
        broadcast: broadcast.map(|b| b.parse().unwrap()),
        label: None,
    };
    use IpAddrAgent::{IpAddr as V1, IpAddr2 as V2};
    assert_eq!(
        one_resource("a IPaddr::10.0.0.100"),
        ip(V1, None, None, None)
    );
    assert_eq!(
        one_resource("a IPaddr::10.0.0.100/24"),
        ip(V1, Some(24), None, None)
    );
    assert_eq!(
        one_resource("a IPaddr2::10.0.0.100/24/eth1"),
        ip(V2, Some(24), Some("eth1"), None)
    );
    assert_eq!(
        one_resource("a IPaddr2::10.0.0.100/24/eth1/10.0.0.255"),
        ip(V2, Some(24), Some("eth1"), Some("10.0.0.255"))
    );
    assert_eq!(
        one_resource("a 10.0.0.100/24/10.0.0.255"),
        ip(V1, Some(24), None, Some("10.0.0.255")),
        "Heartbeat's documented ip/cidr/broadcast form"
    );
    assert_eq!(
        one_resource("a IPaddr::10.0.0.100/255.255.255.0/eth1"),
        ip(V1, Some(24), Some("eth1"), None),
        "dotted netmask"
    );
    assert_eq!(
        one_resource("a IPaddr2::2001:db8::10/64/eth1"),
        Resource::IpAddr {
            agent: V2,
            addr: "2001:db8::10".parse().unwrap(),
            prefix: Some(64),
            iface: Some("eth1".into()),
            broadcast: None,
            label: None,
        }
    );
    assert_eq!(
        one_resource("a IPaddr2::10.0.0.100/24/eth1/10.0.0.255").describe(),
        "IPaddr2::10.0.0.100/24/eth1/10.0.0.255"
    );
    assert_eq!(
        one_resource("a 10.0.0.100/24/10.0.0.255").describe(),
        "IPaddr::10.0.0.100/24/10.0.0.255"
    );
}

#[test]
fn ipaddr_labels_and_empty_netmask() {
    let labelled =
        |agent, prefix, iface: &str, label: &str, broadcast: Option<&str>| Resource::IpAddr {
            agent,
            addr: "10.0.0.100".parse().unwrap(),
            prefix,
            iface: Some(iface.into()),
            broadcast: broadcast.map(|b| b.parse().unwrap()),
            label: Some(label.into()),
        };
    use IpAddrAgent::{IpAddr as V1, IpAddr2 as V2};
    assert_eq!(
        one_resource("a 10.0.0.100/24/eth0:0"),
        labelled(V1, Some(24), "eth0", "eth0:0", None)
    );
    assert_eq!(
        one_resource("a IPaddr2::10.0.0.100/24/eth1:web/10.0.0.255"),
        labelled(V2, Some(24), "eth1", "eth1:web", Some("10.0.0.255"))
    );
    // `ip//eth0`: no netmask (derived from the interface's network), as IPaddr's sed splits it.
    assert_eq!(
        one_resource("a IPaddr::10.0.0.100//eth0:1"),
        labelled(V1, None, "eth0", "eth0:1", None)
    );
    for (line, spelled) in [
        ("a 10.0.0.100/24/eth0:0", "IPaddr::10.0.0.100/24/eth0:0"),
        (
            "a IPaddr2::10.0.0.100/24/eth1:web/10.0.0.255",
            "IPaddr2::10.0.0.100/24/eth1:web/10.0.0.255",
        ),
        ("a IPaddr::10.0.0.100//eth0", "IPaddr::10.0.0.100//eth0"),
        ("a IPaddr::10.0.0.100/24/", "IPaddr::10.0.0.100/24"),
    ] {
        assert_eq!(one_resource(line).describe(), spelled, "{line}");
    }
    for (line, want) in [
        ("a 10.0.0.100/24/eth0:", "bad address label 'eth0:'"),
        (
            "a 10.0.0.100/24/eth0:waytoolonglabel",
            "bad address label 'eth0:waytoolonglabel'",
        ),
        ("a IPaddr2::2001:db8::1/64/eth0:0", "takes no label"),
        ("a 10.0.0.100/24/:0", "bad interface name ''"),
    ] {
        let errs = har_errors(line.as_bytes());
        assert!(errs.iter().any(|e| e.contains(want)), "{line}: {errs:?}");
    }
}

#[test]
fn bad_ip_or_cidr() {
    assert_eq!(
        har_errors(
            b"a 10.0.0.300\nb IPaddr::10.0.0.1/33\nc IPaddr2::2001:db8::1/129\n\
              d IPaddr::10.0.0.1/255.0.255.0\ne IPaddr::10.0.0.1/24/eth0/x\n\
              f IPaddr::10.0.0.1/24/bad/iface/x\ng IPaddr\nh 224.0.0.1\n"
        ),
        vec![
            "haresources:1: bad IP address '10.0.0.300'",
            "haresources:2: bad CIDR prefix '/33' for 10.0.0.1 (0..32)",
            "haresources:3: bad CIDR prefix '/129' for 2001:db8::1 (0..128)",
            "haresources:4: bad netmask '255.0.255.0' (not contiguous)",
            "haresources:5: bad broadcast address 'x'",
            "haresources:6: bad IP resource '10.0.0.1/24/bad/iface/x': expected \
             ip[/cidr[/iface[:label][/broadcast]]]",
            "haresources:7: IPaddr: missing address (IPaddr::ip[/cidr[/iface[:label][/broadcast]]])",
            "haresources:8: 224.0.0.1 cannot be a service address",
        ]
    );
}

#[test]
fn filesystem_resource() {
    assert_eq!(
        one_resource("a Filesystem::/dev/sda1::/data1::ext2"),
        Resource::Filesystem {
            device: "/dev/sda1".into(),
            mountpoint: "/data1".into(),
            fstype: "ext2".into(),
            options: None
        }
    );
    assert_eq!(
        one_resource("a Filesystem::nfs:/export::/mnt/x::nfs::ro,noatime"),
        Resource::Filesystem {
            device: "nfs:/export".into(),
            mountpoint: "/mnt/x".into(),
            fstype: "nfs".into(),
            options: Some("ro,noatime".into())
        }
    );
    assert_eq!(
        har_errors(b"a Filesystem::/dev/sda1::/data1\nb Filesystem::/dev/sdb::data::ext4\n"),
        vec![
            "haresources:1: Filesystem needs Filesystem::device::mountpoint::fstype[::options]",
            "haresources:2: Filesystem: mount point 'data' is not an absolute path",
        ]
    );
}

#[test]
fn script_arguments_and_order() {
    let g = har(
        "Node1 10.0.0.1 drbddisk::r0 Filesystem::/dev/drbd0::/srv::ext4 \\\n  \
                 mysql apache::/etc/apache2/apache2.conf\n",
    )
    .value;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].preferred_node, "node1");
    let start: Vec<String> = g[0].start_order().map(Resource::describe).collect();
    assert_eq!(
        start,
        vec![
            "IPaddr::10.0.0.1",
            "drbddisk::r0",
            "Filesystem::/dev/drbd0::/srv::ext4",
            "mysql",
            "apache::/etc/apache2/apache2.conf"
        ]
    );
    let stop: Vec<String> = g[0].stop_order().map(Resource::describe).collect();
    assert_eq!(
        stop,
        vec![
            "apache::/etc/apache2/apache2.conf",
            "mysql",
            "Filesystem::/dev/drbd0::/srv::ext4",
            "drbddisk::r0",
            "IPaddr::10.0.0.1"
        ]
    );
    assert_eq!(
        g[0].resources[1],
        Resource::Script {
            name: "drbddisk".into(),
            args: vec!["r0".into()],
            path: "/etc/init.d/drbddisk".into()
        }
    );
}

#[test]
fn continuation_comments_and_group_lines() {
    let g = har(
        "# groups\n\nnode1 10.0.0.1 \\\n   httpd # web\nnode2 10.0.0.2 # db\\\nnode2 10.0.0.3 \\\n\
         \\\n mysql\n",
    )
    .value;
    let lines: Vec<(usize, String, String)> = g
        .iter()
        .map(|g| (g.line, g.preferred_node.clone(), g.describe()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (3, "node1".into(), "IPaddr::10.0.0.1 httpd".into()),
            (5, "node2".into(), "IPaddr::10.0.0.2".into()),
            (6, "node2".into(), "IPaddr::10.0.0.3 mysql".into()),
        ]
    );
}

#[test]
fn missing_script() {
    assert_eq!(
        har_errors(b"node1 10.0.0.1 \\\n nosuch\n"),
        vec![
            "haresources:2: resource script 'nosuch' not found as an executable file in \
             /etc/ha.d/resource.d, /etc/init.d"
        ]
    );
}

#[test]
fn duplicate_group_key_and_empty_group() {
    assert_eq!(
        har_errors(b"a 10.0.0.1 httpd\nb 10.0.0.1\nc\n"),
        vec![
            "haresources:2: resource '10.0.0.1' already starts the group at line 1: the first \
             resource of each line names its group and must be unique",
            "haresources:3: group for node 'c' lists no resources",
        ]
    );
}

#[test]
fn empty_haresources_is_valid_with_a_warning() {
    let p = har("# nothing\n");
    assert!(p.value.is_empty());
    assert_eq!(
        strings(&p.warnings),
        vec![
            "haresources:0: no resource groups: hb will exchange heartbeats but manage no resources"
        ]
    );
}

#[test]
fn haresources_non_utf8() {
    assert_eq!(
        har_errors(b"a 10.0.0.1\nb \xc3\x28\n"),
        vec!["haresources:2: line is not valid UTF-8 (bad byte at column 3)"]
    );
}

// ---------------------------------------------------------------- authkeys

#[test]
fn authkeys_methods_and_rotation() {
    let p = keys("# keys\nauth 2\n1 md5 Hello!\n2 sha1 HI!\n3 sha256 s3cret\n");
    let k = p.value;
    assert_eq!(k.active, 2);
    assert_eq!(k.keys.len(), 3);
    assert_eq!(k.keys[&1].method, AuthMethod::Md5);
    assert_eq!(k.keys[&1].secret, b"Hello!");
    assert_eq!(k.keys[&2].method, AuthMethod::Sha1);
    assert_eq!(k.keys[&3].method, AuthMethod::Sha256);
    assert!(p.warnings.is_empty());
}

#[test]
fn crc_is_warned() {
    let p = keys("auth 1\n1 crc\n");
    assert_eq!(p.value.keys[&1].method, AuthMethod::Crc);
    assert!(p.value.keys[&1].secret.is_empty());
    assert_eq!(
        strings(&p.warnings),
        vec![
            "authkeys:2: crc gives no security: it only detects corrupted packets, anyone who can \
             send to the heartbeat port can forge heartbeats; use sha256"
        ]
    );
}

#[test]
fn bad_authkeys_lines() {
    assert_eq!(
        key_errors(
            b"auth\nauth x\n1\nx sha1 k\n2 rot13 k\n3 md5\n4 crc key\n5 sha1 a\n5 sha1 b\n\
              300 sha1 k\nauth 1\n"
        ),
        vec![
            "authkeys:1: bad auth line: expected 'auth N'",
            "authkeys:2: bad auth line: 'x' is not a key id (0..255)",
            "authkeys:3: bad authkeys line: expected 'auth N' or 'N method [key]'",
            "authkeys:4: bad authkeys line: 'x' is not a key id (expected 'N method [key]')",
            "authkeys:5: unknown authentication method 'rot13' (crc, md5, sha1, sha256)",
            "authkeys:6: method md5 requires a key",
            "authkeys:7: method crc takes no key",
            "authkeys:9: duplicate key id 5 (first at line 8)",
            "authkeys:10: key id 300 is out of range (0..255)",
            "authkeys:11: auth 1: no key with id 1 in this file",
        ]
    );
}

#[test]
fn missing_auth_and_empty_authkeys() {
    assert_eq!(
        key_errors(b"1 sha1 k\n"),
        vec!["authkeys:0: missing auth directive: add 'auth N' naming the key to sign with"]
    );
    assert_eq!(
        key_errors(b""),
        vec!["authkeys:0: missing auth directive: add 'auth N' naming the key to sign with"]
    );
}

#[test]
fn authkeys_non_utf8() {
    assert_eq!(
        key_errors(b"auth 1\n1 sha1 \xfe\xff\n"),
        vec![
            "authkeys:2: line is not valid UTF-8 (bad byte at column 8)",
            "authkeys:1: auth 1: no key with id 1 in this file",
        ]
    );
}

#[test]
fn extra_words_after_key_are_warned() {
    let p = keys("auth 1\n1 sha1 my secret\n");
    assert_eq!(p.value.keys[&1].secret, b"my");
    assert_eq!(
        strings(&p.warnings),
        vec![
            "authkeys:2: text after the key is ignored: the key is the single word 'my', as \
             Heartbeat reads it"
        ]
    );
}

#[test]
fn keyfile_mode_check() {
    let p = Path::new("/etc/ha.d/authkeys");
    assert!(check_keyfile_mode(p, 0o100600).is_ok());
    assert!(check_keyfile_mode(p, 0o100400).is_ok());
    assert!(
        check_keyfile_mode(p, 0o100620).is_ok(),
        "group-writable is not refused"
    );
    for mode in [0o100644, 0o100640, 0o100604] {
        assert_eq!(
            check_keyfile_mode(p, mode).unwrap_err().to_string(),
            "/etc/ha.d/authkeys:0: Bad permissions on keyfile [/etc/ha.d/authkeys], 600 \
             recommended."
        );
    }
}

#[test]
fn log_format_syslog_ident_and_self_fence_command() {
    let h = ha_cf(BASE).value;
    assert_eq!(h.log_format.value, LogFormat::Heartbeat);
    assert_eq!(h.syslog_ident.value, "heartbeat");
    assert_eq!(h.self_fence(), None);
    let h = ha_cf(&format!(
        "{BASE}log_format hb\nsyslog_ident hb-web\nself_fence_command /usr/local/sbin/fence-me now\n"
    ))
    .value;
    assert_eq!(h.log_format.value, LogFormat::Hb);
    assert_eq!(h.syslog_ident.value, "hb-web");
    assert_eq!(
        h.self_fence(),
        Some(vec![
            "/usr/local/sbin/fence-me".to_string(),
            "now".to_string()
        ])
    );
    // A watchdog (or stonith_host, fence_command) without self_fence_command: the forced reboot.
    let h = ha_cf(&format!("{BASE}watchdog /dev/watchdog\n")).value;
    assert_eq!(
        h.self_fence(),
        Some(
            DEFAULT_SELF_FENCE_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect()
        )
    );
    assert_eq!(
        ha_cf_errors(
            format!("{BASE}log_format syslog\nself_fence_command reboot\nsyslog_ident a:b\n")
                .as_bytes()
        ),
        vec![
            "ha.cf:6: log_format: 'syslog' is not heartbeat or hb",
            "ha.cf:7: self_fence_command: 'reboot' is not an absolute path",
            "ha.cf:8: syslog_ident: 'a:b' must be at most 64 printable characters without ':' or '['",
        ]
    );
}

#[test]
fn ipfail_respawn_lines_are_recognised() {
    let h = ha_cf(&format!(
        "{BASE}respawn hacluster /usr/lib/heartbeat/ipfail\nrespawn root /usr/local/bin/watcher -v\n\
         respawn hacluster ipfail\nrespawn root /opt/notipfail\n"
    ))
    .value;
    let ipfail: Vec<bool> = h.respawn.iter().map(Respawn::is_ipfail).collect();
    assert_eq!(ipfail, [true, false, true, false]);
    let children: Vec<&str> = h.respawn_children().map(|r| r.command.as_str()).collect();
    assert_eq!(children, ["/usr/local/bin/watcher -v", "/opt/notipfail"]);
    assert_eq!(h.respawn[1].argv(), ["/usr/local/bin/watcher", "-v"]);
}

#[test]
fn no_arbiter_line_means_no_arbiter() {
    let c = ha_cf(BASE).value;
    assert_eq!(c.arbiter, None);
}

#[test]
fn arbiter_etcd_with_its_directives() {
    let c = ha_cf(&format!(
        "{BASE}arbiter etcd http://10.0.0.9:2379,http://10.0.0.10:2379 http://[fd00::1]:2379\n"
    ))
    .value;
    let a = c.arbiter.expect("arbiter");
    assert_eq!(
        a.endpoints,
        [
            "http://10.0.0.9:2379",
            "http://10.0.0.10:2379",
            "http://[fd00::1]:2379"
        ]
    );
    assert_eq!(a.prefix.value, "/hb");
    assert!(a.prefix.is_default);
    assert_eq!(a.ttl.value, Duration::from_secs(5));
    assert!(a.ttl.is_default);
    assert!(!a.tls());
    assert_eq!(a.key_of(3), "/hb/group/3");

    let c = ha_cf(&format!(
        "{BASE}arbiter etcd etcd1:2379\narbiter_prefix /hb/web/\narbiter_ttl 2\n\
         arbiter_ca /etc/hb/ca.pem\narbiter_cert /etc/hb/me.pem\narbiter_key /etc/hb/me.key\n"
    ))
    .value;
    let a = c.arbiter.expect("arbiter");
    assert_eq!(a.endpoints, ["etcd1:2379"]);
    assert_eq!(a.key_of(0), "/hb/web/group/0");
    assert_eq!(a.ttl.value, Duration::from_secs(2));
    assert!(!a.ttl.is_default);
    assert!(a.tls());
    assert_eq!(a.ca.as_deref(), Some(Path::new("/etc/hb/ca.pem")));
    assert_eq!(a.cert.as_deref(), Some(Path::new("/etc/hb/me.pem")));
    assert_eq!(a.key.as_deref(), Some(Path::new("/etc/hb/me.key")));
}

#[test]
fn invalid_arbiter_lines_are_refused_with_line_and_reason() {
    let e = |extra: &str| ha_cf_errors(format!("{BASE}{extra}").as_bytes());
    assert_eq!(
        e("arbiter\n"),
        ["ha.cf:6: arbiter: expected 'arbiter etcd ENDPOINT[,ENDPOINT...]'"]
    );
    assert_eq!(
        e("arbiter consul 10.0.0.9:8500\n"),
        ["ha.cf:6: arbiter: 'consul' is not a supported arbiter (hb supports etcd)"]
    );
    assert_eq!(
        e("arbiter etcd\n"),
        ["ha.cf:6: arbiter etcd: no endpoint (etcd client URL, e.g. http://10.0.0.9:2379)"]
    );
    assert_eq!(
        e("arbiter etcd 10.0.0.9\n"),
        ["ha.cf:6: arbiter etcd: '10.0.0.9' has no port (HOST:PORT, e.g. 10.0.0.9:2379)"]
    );
    assert_eq!(
        e("arbiter etcd 10.0.0.9:0,unix://x:1\n"),
        [
            "ha.cf:6: arbiter etcd: '10.0.0.9:0' has no valid port (1..65535)",
            "ha.cf:6: arbiter etcd: 'unix://x:1' is not an http:// or https:// URL",
        ]
    );
    assert_eq!(
        e("arbiter etcd http://a:1,https://b:1\n"),
        ["ha.cf:6: arbiter etcd: endpoints mix http:// and https://"]
    );
    assert_eq!(
        e("arbiter etcd a:1\narbiter_ttl 0\narbiter_ttl x\narbiter_prefix hb\n"),
        [
            "ha.cf:7: arbiter_ttl: 0 is out of range (1..3600 seconds)",
            "ha.cf:8: arbiter_ttl: 'x' is not a number",
            "ha.cf:9: arbiter_prefix: 'hb' is not a key prefix ('/' then printable characters, e.g. /hb/web)",
        ]
    );
    assert_eq!(
        e("arbiter etcd a:1\narbiter_cert /c.pem\narbiter_ca ca.pem\n"),
        [
            "ha.cf:8: arbiter_ca: 'ca.pem' is not an absolute path",
            "ha.cf:7: arbiter_cert needs arbiter_key (the certificate's private key)",
        ]
    );
    assert_eq!(
        e("arbiter etcd http://a:1\narbiter_ca /ca.pem\n"),
        [
            "ha.cf:6: arbiter etcd: http:// endpoints with arbiter_ca/arbiter_cert: use https:// (or HOST:PORT)"
        ]
    );
    // The arbiter's directives without the arbiter: refused (an arbiter was meant).
    assert_eq!(
        e("arbiter_ttl 3\narbiter_key /k.pem\n"),
        [
            "ha.cf:6: arbiter_ttl needs an 'arbiter etcd ENDPOINT[,ENDPOINT...]' line",
            "ha.cf:7: arbiter_key needs an 'arbiter etcd ENDPOINT[,ENDPOINT...]' line",
        ]
    );
}
