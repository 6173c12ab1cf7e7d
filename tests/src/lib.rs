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

pub mod lab;
