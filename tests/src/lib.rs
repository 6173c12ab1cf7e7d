//! Helpers for hb's privileged end-to-end tests: network namespaces made per test (with unique
//! names, removed on drop), veth pairs, and running code inside a namespace.
//!
//! Privileged tests call [`require_root`] first: it returns `false` (the test returns early
//! and says why) only when not root and `CI` is unset; in CI a non-root run fails.

use std::{
    fs::File,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result, bail};

/// `true` when the test may run privileged code. When not root: panics under `CI`, otherwise
/// prints why the test is skipped and returns `false`.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: privileged test needs root, and CI is set: refusing to skip");
    }
    eprintln!("SKIPPED {test}: needs root (BPF, network namespaces); run as root to exercise it");
    false
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(out)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (`hbt<pid>x<n><tag>`), under the 15-byte limit
/// of interface names when `tag` is at most 2 bytes.
pub fn unique_name(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{}x{n}{tag}", std::process::id() % 100_000)
}

/// A named network namespace (`ip netns add`), deleted on drop with everything in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `unique_name(tag)` with loopback up.
    pub fn new(tag: &str) -> Result<Self> {
        let name = unique_name(tag);
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace named exactly `name` (the caller makes it unique) with loopback up.
    pub fn named(name: &str) -> Result<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `PROGRAM ARGS` inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T>>> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns(CLONE_NEWNET)")?;
            Ok(f())
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins `a` and `b` with a veth pair named `ifname` on both sides, assigns `addr_a`/`addr_b`
/// (CIDR form) and brings both ends up.
pub fn veth_pair(a: &Netns, addr_a: &str, b: &Netns, addr_b: &str, ifname: &str) -> Result<()> {
    let tmp_a = unique_name("va");
    let tmp_b = unique_name("vb");
    run(
        "ip",
        &[
            "link",
            "add",
            &tmp_a,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &tmp_b,
            "netns",
            b.name(),
        ],
    )?;
    a.ip(&["link", "set", &tmp_a, "name", ifname])?;
    b.ip(&["link", "set", &tmp_b, "name", ifname])?;
    a.ip(&["addr", "add", addr_a, "dev", ifname])?;
    b.ip(&["addr", "add", addr_b, "dev", ifname])?;
    a.ip(&["link", "set", ifname, "up"])?;
    b.ip(&["link", "set", ifname, "up"])?;
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// A shared Ethernet segment: a bridge (`br0`) in a namespace of its own, with hosts attached
/// to it by veth pairs. Dropping it deletes the bridge namespace, and with it every veth.
#[derive(Debug)]
pub struct Lan {
    ns: Netns,
}

impl Lan {
    /// A new segment with an empty bridge.
    pub fn new() -> Result<Self> {
        let ns = Netns::new("br")?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self { ns })
    }

    /// The bridge's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Attaches `host` to the segment through an interface named `ifname` in `host`, brings it
    /// up, adds each address of `addrs` (CIDR form; IPv6 ones with `nodad`), and returns the
    /// interface's MAC address as `ip` prints it (`aa:bb:cc:dd:ee:ff`).
    pub fn attach(&self, host: &Netns, ifname: &str, addrs: &[&str]) -> Result<String> {
        let tmp_host = unique_name("lh");
        let port = unique_name("lp");
        run(
            "ip",
            &[
                "link",
                "add",
                &tmp_host,
                "netns",
                host.name(),
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                self.ns.name(),
            ],
        )?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        self.ns.ip(&["link", "set", &port, "up"])?;
        host.ip(&["link", "set", &tmp_host, "name", ifname])?;
        for addr in addrs {
            if addr.contains(':') {
                host.ip(&["-6", "addr", "add", addr, "dev", ifname, "nodad"])?;
            } else {
                host.ip(&["addr", "add", addr, "dev", ifname])?;
            }
        }
        host.ip(&["link", "set", ifname, "up"])?;
        let out = host.ip(&["-br", "link", "show", "dev", ifname])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match text.split_whitespace().nth(2) {
            Some(mac) if mac.len() == 17 => Ok(mac.to_owned()),
            _ => bail!("no MAC in `ip -br link show dev {ifname}`: {text}"),
        }
    }
}

/// The link-layer address of `addr` in `ns`'s neighbour table (`ip neigh show ADDR`), if there
/// is an entry with one.
pub fn neighbour_mac(ns: &Netns, addr: &str) -> Result<Option<String>> {
    let out = ns.ip(&["neigh", "show", addr])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return Ok(words.next().map(str::to_owned));
        }
    }
    Ok(None)
}
pub mod flood;
pub mod floor;
pub mod lab;
pub mod package;
