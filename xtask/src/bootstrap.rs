//! Makes sure everything hb needs to build and test is on the machine, installing what is
//! missing (idempotently) when it can, and otherwise stopping with one message that lists
//! exactly what to install.
//!
//! Checked, in order: Debian packages (LLVM 22 for bpf-linker, iproute2, iptables, the lab's web
//! server, lintian and man-db for the package test, protoc for etcd-client's build and etcd for the
//! arbiter tests), the pinned eBPF nightly with `rust-src`,
//! `bpf-linker` built against LLVM 22, and cargo-deb (pinned) for `cargo xtask package`.
//! With everything present this costs a few tens of milliseconds.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// The nightly used for the eBPF build: its LLVM (22) must match bpf-linker's.
/// Keep in sync with `hb-daemon/build.rs`. Never `rustup update` or a bare `nightly`.
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";
/// bpf-linker version installed by the bootstrap.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-fuzz version `cargo xtask fuzz` installs (`cargo install --locked`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// The LLVM major version bpf-linker is built against.
pub const LLVM_MAJOR: &str = "22";

/// Debian packages needed by every command (build, tests, lab).
pub const BASE_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "iptables",
    "apache2",
    // The lab: `unshare` runs each node in its own UTS namespace (its own hostname).
    "util-linux",
    // STONITH: `/usr/sbin/stonith` and its external-plugin directory, for `stonith_host` and
    // the fencing lab tests.
    "cluster-glue",
    // The package test: cargo-deb's dependency detection (dpkg-shlibdeps), lintian on the
    // .deb, `man -w` after installing it.
    "dpkg-dev",
    "lintian",
    "man-db",
    // The etcd arbiter: etcd-client's build generates its gRPC code with `protoc`, which needs
    // the well-known types (google/protobuf/descriptor.proto, struct.proto: libprotobuf-dev);
    // the arbiter lab tests start Debian's etcd (3.4) in a namespace.
    "protobuf-compiler",
    "libprotobuf-dev",
    "etcd-server",
    // The machine's wake-up floor (`hb_tests::floor`): cyclictest, beside hb in the flood test
    // and the 1 kHz benchmark.
    "rt-tests",
];

/// Prints a progress line.
pub fn step(msg: &str) {
    eprintln!("[xtask] {msg}");
}

/// Whether we run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn os_is_debian_like() -> bool {
    let Ok(text) = std::fs::read_to_string("/etc/os-release") else {
        return false;
    };
    text.lines().any(|l| {
        let l = l.trim();
        (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
            && (l.contains("debian") || l.contains("ubuntu"))
    })
}

/// Debian packages from `wanted` that are not installed.
fn missing_packages(wanted: &[&str]) -> Vec<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\\n"])
        .args(wanted)
        .output();
    let installed: Vec<String> = match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, status) = l.split_once(' ')?;
                (status.trim() == "installed").then(|| name.to_owned())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    wanted
        .iter()
        .filter(|p| !installed.iter().any(|i| i == *p))
        .map(|p| (*p).to_owned())
        .collect()
}

fn cargo_home_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

/// Finds an executable on PATH or in cargo's bin directory.
pub fn find_exe(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::iter::once(cargo_home_bin()))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn nightly_ready() -> (bool, bool) {
    let Ok(out) = Command::new("rustup").args(["toolchain", "list"]).output() else {
        return (false, false);
    };
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("{EBPF_TOOLCHAIN}-")) || l.trim() == EBPF_TOOLCHAIN);
    if !listed {
        return (false, false);
    }
    let sysroot = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let has_src = sysroot
        .map(|s| s.join("lib/rustlib/src/rust/library/core").is_dir())
        .unwrap_or(false);
    (true, has_src)
}

/// bpf-linker present and linked against LLVM 22.
fn bpf_linker_ready() -> Option<bool> {
    let exe = find_exe("bpf-linker")?;
    let out = Command::new("ldd").arg(&exe).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.contains(&format!("libLLVM.so.{LLVM_MAJOR}"))
            || text.contains(&format!("libLLVM-{LLVM_MAJOR}")),
    )
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Ensures the prerequisites, with `extra_packages` (Debian) on top of [`BASE_PACKAGES`].
pub fn ensure(extra_packages: &[&str]) -> Result<()> {
    let started = std::time::Instant::now();
    let can_install_packages = is_root() && os_is_debian_like();
    let mut manual: Vec<String> = Vec::new();

    // 1. Debian packages.
    let wanted: Vec<&str> = BASE_PACKAGES
        .iter()
        .chain(extra_packages)
        .copied()
        .collect();
    let missing = missing_packages(&wanted);
    if missing.is_empty() {
        step(&format!(
            "bootstrap: system packages present ({})",
            wanted.join(", ")
        ));
    } else if can_install_packages {
        step(&format!(
            "bootstrap: installing Debian packages: {}",
            missing.join(" ")
        ));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    } else {
        manual.push(format!(
            "system packages: {} (Debian/Ubuntu names; as root: apt-get install -y --no-install-recommends {})",
            missing.join(" "),
            missing.join(" ")
        ));
    }

    // 2. The pinned nightly with rust-src.
    match nightly_ready() {
        (true, true) => step(&format!(
            "bootstrap: {EBPF_TOOLCHAIN} with rust-src present"
        )),
        (listed, _) => {
            if find_exe("rustup").is_none() {
                manual.push(format!(
                    "rustup, then: rustup toolchain install {EBPF_TOOLCHAIN} --profile minimal --component rust-src"
                ));
            } else if listed {
                step(&format!("bootstrap: adding rust-src to {EBPF_TOOLCHAIN}"));
                run(Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    EBPF_TOOLCHAIN,
                ]))?;
            } else {
                step(&format!(
                    "bootstrap: installing {EBPF_TOOLCHAIN} with rust-src (eBPF build)"
                ));
                run(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    EBPF_TOOLCHAIN,
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ]))?;
            }
        }
    }

    // 3. bpf-linker against LLVM 22.
    match bpf_linker_ready() {
        Some(true) => step(&format!(
            "bootstrap: bpf-linker (LLVM {LLVM_MAJOR}) present"
        )),
        state => {
            let llvm_prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
            if !Path::new(&llvm_prefix).join("bin/llvm-config").exists() {
                manual.push(format!(
                    "bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR}: needs llvm-{LLVM_MAJOR}-dev first, then \
                     LLVM_PREFIX={llvm_prefix} cargo install bpf-linker --version {BPF_LINKER_VERSION} --locked \
                     --no-default-features --features llvm-{LLVM_MAJOR}"
                ));
            } else {
                let why = if state.is_some() {
                    "rebuilding (not linked against LLVM 22)"
                } else {
                    "installing"
                };
                step(&format!(
                    "bootstrap: {why} bpf-linker {BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR}), about 2 minutes"
                ));
                run(Command::new("cargo")
                    .args([
                        "install",
                        "bpf-linker",
                        "--version",
                        BPF_LINKER_VERSION,
                        "--locked",
                        "--force",
                        "--no-default-features",
                        "--features",
                    ])
                    .arg(format!("llvm-{LLVM_MAJOR}"))
                    .env("LLVM_PREFIX", &llvm_prefix))?;
            }
        }
    }

    // 4. cargo-deb (the Debian package), pinned.
    let deb_version = hb_tests::package::CARGO_DEB_VERSION;
    if hb_tests::package::cargo_deb_ready() {
        step(&format!("bootstrap: cargo-deb {deb_version} present"));
    } else {
        step(&format!(
            "bootstrap: installing cargo-deb {deb_version} (the Debian package), about 2 minutes"
        ));
        run(Command::new("cargo").args([
            "install",
            "cargo-deb",
            "--locked",
            "--force",
            "--version",
            deb_version,
        ]))?;
    }

    if !manual.is_empty() {
        let who = if !os_is_debian_like() {
            "this is not Debian or Ubuntu"
        } else {
            "not running as root"
        };
        bail!(
            "missing prerequisites, and the bootstrap cannot install them ({who}). Install:\n  - {}",
            manual.join("\n  - ")
        );
    }
    step(&format!(
        "bootstrap: ready in {} ms",
        started.elapsed().as_millis()
    ));
    Ok(())
}
