//! hbd under a service manager, with real sockets the test makes: sd_notify over a
//! `NOTIFY_SOCKET` datagram socket (READY=1 after join, STATUS=, WATCHDOG=1 at its cadence and
//! none while hbd is SIGSTOPped, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM), the
//! journal's structured fields over a journal socket bound where hbd looks for journald, and
//! `systemd-analyze verify` of hb.service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::{
    collections::HashMap,
    fs,
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use daemon_common::bin;
use hb_tests::{Netns, monotonic_ns, require_root, unique_name, veth_pair};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("hb-sd-{}", unique_name(tag)));
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Heartbeat's three files for nodes n1 and n2 in `dir`, one group preferred by n1.
fn write_config(dir: &Path, timing: &str, vip: &str, extra: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("ha.cf"),
        format!("{timing}\nudpport 694\nbcast eth1\nxdp off\nauto_failback on\nnode n1\nnode n2\n{extra}"),
    )
    .unwrap();
    fs::write(
        dir.join("haresources"),
        format!("n1 IPaddr::{vip}/24/eth1\n"),
    )
    .unwrap();
    let keys = dir.join("authkeys");
    fs::write(&keys, "auth 1\n1 sha256 systemd-test-secret\n").unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
}

/// One hbd in a namespace; SIGKILLed on drop if still running.
struct Hbd {
    child: Child,
    log: PathBuf,
}

impl Hbd {
    /// Starts hbd as `node` in `ns` with config dir `dir`; `wrap` runs before exec inside the
    /// namespace (a shell snippet; `"$@"` is hbd and its arguments).
    fn start(ns: &Netns, node: &str, dir: &Path, wrap: &str, env: &[(&str, String)]) -> Self {
        let log = dir.join("stderr.log");
        let file = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns.name(),
            "unshare",
            "--mount",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", &format!("{wrap} exec \"$@\""), "sh"])
        .arg(bin("hbd"))
        .args(["--foreground", "--node-name", node, "--config-dir"])
        .arg(dir)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self { child, log }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mono= stamp of the first stderr line containing `needle`, waiting up to 2 s for it:
    /// hbd's log writer thread writes lines after the loop moved on, but each line's stamp is
    /// the time the event was logged.
    fn logged_at(&self, needle: &str) -> Option<u64> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            let found = self
                .log()
                .lines()
                .find(|l| l.contains(needle))
                .and_then(|l| l.strip_prefix("mono="))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            if found.is_some() || Instant::now() >= end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the exit; its status.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Whether the kernel shows it stopped (state `T`).
    fn is_stopped(&self) -> bool {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("T")
    }

    /// Whether it catches SIGHUP (bit 0 of `SigCgt` in /proc/PID/status).
    fn catches_sighup(&self) -> bool {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 == 1)
    }
}

impl Drop for Hbd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(self.pid(), Signal::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The test's end of `NOTIFY_SOCKET`: every datagram with the CLOCK_MONOTONIC time it was read.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    got: Vec<(u64, String)>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        Self {
            sock,
            path,
            got: Vec::new(),
        }
    }

    /// Reads what is queued.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let at = monotonic_ns();
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                self.got.push((at, line.to_owned()));
            }
        }
    }

    /// Waits up to `timeout` for a line for which `pred` holds, at or after index `from`;
    /// its index and time.
    fn wait_for(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, u64)> {
        let end = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(i) = (from..self.got.len()).find(|&i| pred(&self.got[i].1)) {
                return Some((i, self.got[i].0));
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads for `d`, every 5 ms, so each line gets the time it arrived.
    fn poll(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.drain();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn count(&self, line: &str) -> usize {
        self.got.iter().filter(|(_, l)| l == line).count()
    }

    fn dump(&self) -> String {
        self.got.iter().map(|(t, l)| format!("{t} {l}\n")).collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn sd_notify_ready_after_join_status_watchdog_reload_and_stopping() {
    if !require_root("sd_notify_ready_after_join_status_watchdog_reload_and_stopping") {
        return;
    }
    let scratch = Scratch::new("nt");
    let a = Netns::new("na").unwrap();
    let b = Netns::new("nb").unwrap();
    veth_pair(&a, "10.77.0.1/24", &b, "10.77.0.2/24", "eth1").unwrap();
    // initdead (10 s) well past the READY deadline below: READY must come from hearing n2.
    let timing = "keepalive 100ms\ndeadtime 3000ms\nwarntime 1000ms\ninitdead 10000ms";
    let (d1, d2) = (scratch.0.join("n1"), scratch.0.join("n2"));
    write_config(&d1, timing, "10.77.0.100", "");
    write_config(&d2, timing, "10.77.0.100", "");
    let mut notify = NotifySocket::bind(&scratch.0);
    let _n2 = Hbd::start(&b, "n2", &d2, "", &[]);
    let started = monotonic_ns();
    // WATCHDOG_USEC 400 ms: hbd sends WATCHDOG=1 every 200 ms.
    let mut n1 = Hbd::start(
        &a,
        "n1",
        &d1,
        "",
        &[
            ("NOTIFY_SOCKET", notify.path.display().to_string()),
            ("WATCHDOG_USEC", "400000".to_owned()),
        ],
    );

    // READY=1 once joined: n2 heard, group 0 acquired here.
    let Some((ready_i, ready_at)) = notify.wait_for(0, Duration::from_secs(9), |l| l == "READY=1")
    else {
        panic!("no READY=1 within 9 s\n{}\n{}", notify.dump(), n1.log());
    };
    let link_up = n1
        .logged_at("Link n2:eth1 up.")
        .unwrap_or_else(|| panic!("READY=1 before n2's link came up\n{}", n1.log()));
    let joined = n1
        .logged_at("Initial resource acquisition complete: 1 of 1 group(s) held here.")
        .unwrap_or_else(|| panic!("READY=1 without the join line\n{}", n1.log()));
    assert!(link_up <= ready_at && joined <= ready_at, "{}", n1.log());
    let addrs = a.ip(&["-br", "addr", "show", "dev", "eth1"]).unwrap();
    assert!(
        String::from_utf8_lossy(&addrs.stdout).contains("10.77.0.100/24"),
        "READY=1 before the VIP was up: {}",
        String::from_utf8_lossy(&addrs.stdout)
    );
    println!(
        "READY=1 {:.0} ms after start, {:.0} ms after `Link n2:eth1 up.` (initdead 10 s)",
        (ready_at - started) as f64 / 1e6,
        (ready_at - link_up) as f64 / 1e6
    );
    assert_eq!(notify.count("READY=1"), 1, "{}", notify.dump());

    // STATUS=: the owner of the group and the peers up.
    let status = notify.wait_for(0, Duration::from_secs(2), |l| {
        l == "STATUS=IPaddr::10.77.0.100/24/eth1 on n1; peers up: n2 (1 of 1)"
    });
    assert!(status.is_some(), "no such STATUS=\n{}", notify.dump());

    // WATCHDOG=1 at half of WATCHDOG_USEC.
    let from = notify.got.len();
    notify.poll(Duration::from_secs(2));
    let beats: Vec<u64> = notify.got[from..]
        .iter()
        .filter(|(_, l)| l == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        beats.len() >= 6,
        "{} WATCHDOG=1 in 2 s\n{}",
        beats.len(),
        notify.dump()
    );
    let gaps: Vec<f64> = beats
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    let cadence = median(gaps);
    println!(
        "WATCHDOG=1: {} in 2 s, median gap {cadence:.1} ms (expected 200)",
        beats.len()
    );
    assert!(
        (150.0..=300.0).contains(&cadence),
        "median WATCHDOG gap {cadence:.1} ms\n{}",
        notify.dump()
    );

    // SIGSTOP: no WATCHDOG=1 while stopped (1 s, five beats' worth), back after SIGCONT.
    n1.signal(Signal::SIGSTOP);
    assert!(daemon_common::wait_until(Duration::from_secs(2), || n1.is_stopped()));
    // What was sent before the stop took effect is read now.
    notify.poll(Duration::from_millis(200));
    let before = notify.count("WATCHDOG=1");
    notify.poll(Duration::from_secs(1));
    let during = notify.count("WATCHDOG=1") - before;
    let resumed_from = notify.got.len();
    n1.signal(Signal::SIGCONT);
    assert_eq!(during, 0, "WATCHDOG=1 while SIGSTOPped\n{}", notify.dump());
    let resumed = notify.wait_for(resumed_from, Duration::from_secs(1), |l| l == "WATCHDOG=1");
    assert!(
        resumed.is_some(),
        "no WATCHDOG=1 after SIGCONT\n{}",
        notify.dump()
    );

    // SIGHUP: RELOADING=1 then READY=1, hbd still running.
    if n1.catches_sighup() {
        let from = notify.got.len();
        n1.signal(Signal::SIGHUP);
        let reloading = notify.wait_for(from, Duration::from_secs(5), |l| l == "RELOADING=1");
        let Some((ri, _)) = reloading else {
            panic!(
                "no RELOADING=1 after SIGHUP\n{}\n{}",
                notify.dump(),
                n1.log()
            );
        };
        let ready = notify.wait_for(ri, Duration::from_secs(5), |l| l == "READY=1");
        assert!(
            ready.is_some(),
            "no READY=1 after RELOADING=1\n{}",
            notify.dump()
        );
        assert!(
            notify.got[ri + 1..]
                .iter()
                .any(|(_, l)| l.starts_with("MONOTONIC_USEC=")),
            "RELOADING=1 without MONOTONIC_USEC=\n{}",
            notify.dump()
        );
        assert!(
            n1.child.try_wait().unwrap().is_none(),
            "hbd ended on SIGHUP"
        );
    } else {
        eprintln!(
            "SKIPPED RELOADING=1/READY=1 on SIGHUP: this hbd does not handle SIGHUP (the reload of \
             issue 16 is not merged here)"
        );
    }
    assert!(ready_i < notify.got.len());

    // SIGTERM: STOPPING=1 at once, then a clean exit.
    let from = notify.got.len();
    let term_at = monotonic_ns();
    n1.signal(Signal::SIGTERM);
    let stopping = notify.wait_for(from, Duration::from_secs(2), |l| l == "STOPPING=1");
    let Some((_, stopping_at)) = stopping else {
        panic!("no STOPPING=1 after SIGTERM\n{}", notify.dump());
    };
    println!(
        "STOPPING=1 {:.1} ms after SIGTERM",
        (stopping_at - term_at) as f64 / 1e6
    );
    let status = n1.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "hbd did not stop cleanly ({status:?})\n{}",
        n1.log()
    );
}

/// Parses journald's native protocol (`NAME\n<u64 LE length><value>\n` or `NAME=value\n`).
fn parse_journal(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let Some(nl) = data.iter().position(|&b| b == b'\n') else {
            break;
        };
        let head = &data[..nl];
        if let Some(eq) = head.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&head[..eq]).into_owned(),
                String::from_utf8_lossy(&head[eq + 1..]).into_owned(),
            );
            data = &data[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(head).into_owned();
            let rest = &data[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(
                name,
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

#[test]
fn journald_gets_structured_fields_and_logfile_keeps_its_lines() {
    if !require_root("journald_gets_structured_fields_and_logfile_keeps_its_lines") {
        return;
    }
    let scratch = Scratch::new("jr");
    let a = Netns::new("ja").unwrap();
    // The peer's end stays empty: n2 never runs.
    let b = Netns::new("jb").unwrap();
    veth_pair(&a, "10.78.0.1/24", &b, "10.78.0.2/24", "eth1").unwrap();
    let dir = scratch.0.join("n1");
    let logfile = scratch.0.join("ha-log");
    // n2 never runs: declared dead at initdead, then n1 takes the group.
    write_config(
        &dir,
        "keepalive 100ms\ndeadtime 1000ms\nwarntime 500ms\ninitdead 1500ms",
        "10.78.0.100",
        &format!("logfile {}\n", logfile.display()),
    );
    // Where hbd looks for journald, /run/systemd/journal/socket, is this directory inside its
    // own mount namespace.
    let jdir = scratch.0.join("systemd");
    fs::create_dir_all(jdir.join("journal")).unwrap();
    let journal = UnixDatagram::bind(jdir.join("journal/socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // JOURNAL_STREAM names hbd's stderr, as systemd sets it.
    let stderr_path = dir.join("stderr.log");
    fs::File::create(&stderr_path).unwrap();
    let st = nix::sys::stat::stat(&stderr_path).unwrap();
    let mut n1 = Hbd::start(
        &a,
        "n1",
        &dir,
        &format!("mount --bind '{}' /run/systemd &&", jdir.display()),
        &[("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))],
    );
    let mut entries: Vec<HashMap<String, String>> = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end
        && !entries
            .iter()
            .any(|e| e.get("EVENT").is_some_and(|v| v == "joined"))
    {
        if let Ok(n) = journal.recv(&mut buf)
            && n > 0
        {
            entries.push(parse_journal(&buf[..n]));
        }
    }
    let dump = || {
        entries
            .iter()
            .map(|e| format!("{e:?}\n"))
            .collect::<String>()
            + &n1.log()
    };
    let find = |event: &str| {
        entries
            .iter()
            .find(|e| e.get("EVENT").is_some_and(|v| v == event))
            .cloned()
            .unwrap_or_else(|| panic!("no EVENT={event} in the journal\n{}", dump()))
    };
    let dead = find("node_dead");
    assert_eq!(dead["PEER"], "n2");
    assert_eq!(dead["MESSAGE"], "node n2: is dead");
    assert_eq!(dead["PRIORITY"], "4");
    assert_eq!(dead["SYSLOG_IDENTIFIER"], "hbd");
    let acquired = find("acquired");
    assert_eq!(acquired["GROUP"], "0");
    assert_eq!(acquired["RESOURCE"], "IPaddr::10.78.0.100/24/eth1");
    assert_eq!(acquired["PRIORITY"], "6");
    assert!(acquired["MESSAGE"].starts_with("Resource acquisition completed: n1 "));
    assert!(!acquired.contains_key("PEER"), "{acquired:?}");
    // A line without structured fields still arrives, with its text whole.
    assert!(
        entries.iter().any(|e| e
            .get("MESSAGE")
            .is_some_and(|m| m.starts_with("hb: starting node n1"))),
        "{}",
        dump()
    );
    // The journal took stderr's place; logfile keeps Heartbeat's lines without the fields.
    assert!(!n1.log().contains("is dead"), "stderr too: {}", n1.log());
    let ha_log = fs::read_to_string(&logfile).unwrap();
    let line = ha_log
        .lines()
        .find(|l| l.contains("node n2: is dead"))
        .unwrap_or_else(|| panic!("{ha_log}"));
    assert!(line.ends_with("WARN: node n2: is dead"), "{line}");
    assert!(!ha_log.contains("event="), "{ha_log}");
    n1.signal(Signal::SIGTERM);
    assert!(
        n1.wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success()),
        "{}",
        n1.log()
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        if std::env::var_os("CI").is_some() {
            panic!("systemd-analyze is not installed (package systemd)");
        }
        eprintln!("SKIPPED systemd_analyze_verify_accepts_the_unit: no systemd-analyze here");
        return;
    };
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hb-daemon/debian/hb.service");
    let text = fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/sbin/hbd\n"), "{text}");
    // The unit as installed, but with the hbd this test run built (the package test verifies
    // the installed one, man pages included).
    let scratch = Scratch::new("un");
    let copy = scratch.0.join("hb.service");
    let hbd = bin("hbd");
    fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/sbin/hbd",
            &format!("ExecStart={}", hbd.display()),
        ),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Complaints about other units on the machine are not ours; none may name hb.service.
    assert!(!stderr.contains("hb.service"), "{stderr}");
}
