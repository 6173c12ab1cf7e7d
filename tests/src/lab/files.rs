//! The files of each node the lab writes before anything starts: `ha.cf`, `haresources`,
//! `authkeys`, extra resource scripts, Apache's config and document root, and the init-style
//! `resource.d/httpd` script (with the fault flags of [`Lab::set_resource_fault`]).

use std::{
    fs::{self, File},
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{Lab, Node, PAGE_PREFIX, ResourceBehaviour};

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Lab {
    fn ha_cf(&self) -> String {
        let s = &self.rec.spec;
        let mut t = String::from("# hb failover lab\n");
        t += &format!("keepalive {}\n", ms(s.keepalive));
        t += &format!("deadtime {}\n", ms(s.deadtime));
        t += &format!("warntime {}\n", ms(s.warntime));
        t += &format!("initdead {}\n", ms(s.initdead));
        t += "udpport 694\n";
        for l in 1..=s.links {
            t += &format!("bcast eth{l}\n");
        }
        t += &format!(
            "auto_failback {}\n",
            if s.auto_failback { "on" } else { "off" }
        );
        // One `node` line per node, in `node` order (the order takeovers follow).
        for n in self.nodes() {
            t += &format!("node {n}\n");
        }
        t += &format!("xdp {}\n", s.xdp.word());
        if s.arbiter {
            t += &format!("arbiter etcd {}\n", self.etcd_url());
            t += &format!("arbiter_ttl {}\n", super::LAB_ARBITER_TTL.as_secs());
        }
        for line in &s.extra_ha_cf {
            t += line;
            t += "\n";
        }
        t
    }

    pub(super) fn write_node_files(&self, node: Node) -> Result<()> {
        let dir = self.node_dir(node);
        let conf = self.config_dir(node);
        for d in [
            conf.join("resource.d"),
            self.state_dir(node),
            self.run_dir(node),
            dir.join("www"),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        fs::write(conf.join("ha.cf"), self.ha_cf())?;
        let resources = if self.rec.spec.resource == ResourceBehaviour::IpOnly {
            ""
        } else {
            " httpd"
        };
        let mut extra = String::new();
        for r in &self.rec.spec.extra_resources {
            extra.push(' ');
            extra.push_str(r);
        }
        fs::write(
            conf.join("haresources"),
            format!("n1 IPaddr::{}/24/eth1{resources}{extra}\n", self.vip()),
        )?;
        for (name, body) in &self.rec.spec.scripts {
            let p = conf.join("resource.d").join(name);
            fs::write(&p, body)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }
        let authkeys = conf.join("authkeys");
        let mut f = File::create(&authkeys)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        writeln!(f, "auth 1\n1 sha256 hb-lab-{}-secret", self.rec.spec.subnet)?;
        // Apache: the modules and directives known to work in a namespace (shared README).
        let www = dir.join("www");
        fs::write(
            www.join("index.html"),
            format!("{PAGE_PREFIX}{}\n", node.name()),
        )?;
        let run = self.run_dir(node);
        let httpd_conf = dir.join("httpd.conf");
        fs::write(
            &httpd_conf,
            format!(
                "# Apache for hb lab node {n}\n\
                 ServerRoot /etc/apache2\n\
                 Include mods-available/mpm_event.load\n\
                 Include mods-available/mpm_event.conf\n\
                 Include mods-available/authz_core.load\n\
                 Include mods-available/dir.load\n\
                 ServerName {n}\n\
                 User www-data\n\
                 Group www-data\n\
                 Listen 80\n\
                 PidFile {run}/httpd.pid\n\
                 Mutex file:{run} default\n\
                 ErrorLog {dir}/httpd-error.log\n\
                 DocumentRoot {www}\n\
                 DirectoryIndex index.html\n\
                 <Directory {www}>\n\
                 \x20 Require all granted\n\
                 </Directory>\n",
                n = node.name(),
                run = run.display(),
                dir = dir.display(),
                www = www.display(),
            ),
        )?;
        let fail_start =
            node == Node::N2 && self.rec.spec.resource == ResourceBehaviour::FailStartOnN2;
        let script = self.httpd_script(node);
        fs::write(
            &script,
            format!(
                r#"#!/bin/sh
# hb lab: init-style resource script for node {n}'s Apache (start|stop|status).
CONF={conf}
PIDFILE={run}/httpd.pid
FAIL_START={fail}
# Lab::set_resource_fault: fail-start / fail-stop here make the next actions fail;
# Lab::set_slow_start: slow-start holds the seconds a start waits before Apache starts.
FAULTS={faults}
running() {{
    [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}}
# Whether anything in this node listens on TCP port 80.
listening() {{
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk '$2 ~ /:0050$/ && $4 == "0A" {{ f = 1 }} END {{ exit !f }}'
}}
case "$1" in
start)
    if [ "$FAIL_START" = 1 ] || [ -e "$FAULTS/fail-start" ]; then
        echo "httpd: start failed (hb lab: this node's resource script is set to fail)" >&2
        exit 1
    fi
    running && exit 0
    [ -s "$FAULTS/slow-start" ] && sleep "$(cat "$FAULTS/slow-start")"
    /usr/sbin/apache2 -f "$CONF" -k start || exit $?
    # `apache2 -k start` returns once it has forked; the server writes its pid file a moment
    # later. Return when it has (up to 5 s), so a `status` right after `start` sees it.
    i=0
    while ! running && [ $i -lt 1000 ]; do sleep 0.005; i=$((i+1)); done
    running
    ;;
stop)
    if [ -e "$FAULTS/fail-stop" ]; then
        echo "httpd: stop failed (hb lab: this node's resource script is set to fail)" >&2
        exit 1
    fi
    if running; then
        /usr/sbin/apache2 -f "$CONF" -k stop
        # Stopped once it no longer listens (~40 ms); Apache's parent itself takes ~1.5 s more
        # to exit, and removes its pid file when it does.
        i=0
        while listening && [ $i -lt 500 ]; do sleep 0.005; i=$((i+1)); done
    fi
    rm -f "$PIDFILE"
    exit 0
    ;;
status)
    if running && listening; then echo running; exit 0; fi
    echo stopped
    exit 3
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
"#,
                n = node.name(),
                conf = httpd_conf.display(),
                run = run.display(),
                fail = u8::from(fail_start),
                faults = dir.display(),
            ),
        )?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}
