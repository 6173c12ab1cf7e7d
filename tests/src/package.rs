//! Building hb's Debian package: what `cargo xtask package` runs, and what the package test
//! (tests/tests/package.rs) builds and installs.
//!
//! 1. `cargo build --release -p hb-daemon` (hbd, hbctl, hbstat, hb-docgen and the XDP program);
//! 2. `hb-docgen target/release/hb-assets`: man pages and shell completions from the clap
//!    definitions, hb-ha.cf(5) from docs/configuration.md; man pages compressed with `gzip -9n`;
//! 3. `cargo deb -p hb-daemon --no-build` with `[package.metadata.deb]` of hb-daemon/Cargo.toml
//!    (cargo-deb, installed by the bootstrap at [`CARGO_DEB_VERSION`]).
//!
//! The result is `target/debian/hb_<version>-<revision>_amd64.deb`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// The cargo-deb version the bootstrap installs (`cargo install --locked --version`).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// The Debian package's name.
pub const PACKAGE: &str = "hb";

fn run(what: &str, cmd: &mut Command) -> Result<String> {
    eprintln!("[package] {what}");
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what}: failed ({})\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cargo to run: the one running us (`CARGO`), else `cargo` on PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The target directory of the workspace at `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Whether `cargo deb` is installed at [`CARGO_DEB_VERSION`].
pub fn cargo_deb_ready() -> bool {
    cargo()
        .args(["deb", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION))
}

/// Builds the package from the workspace at `root` and returns the `.deb`'s path.
pub fn build(root: &Path) -> Result<PathBuf> {
    if !cargo_deb_ready() {
        bail!(
            "cargo-deb {CARGO_DEB_VERSION} is not installed (`cargo xtask bootstrap` installs it)"
        );
    }
    let target = target_dir(root);
    run(
        "cargo build --release -p hb-daemon (hbd, hbctl, hbstat, hb-docgen, the XDP program)",
        cargo().current_dir(root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "hb-daemon",
            "--bins",
        ]),
    )?;
    let assets = target.join("release/hb-assets");
    if assets.exists() {
        fs::remove_dir_all(&assets).with_context(|| format!("removing {}", assets.display()))?;
    }
    run(
        "hb-docgen: man pages and completions",
        Command::new(target.join("release/hb-docgen")).arg(&assets),
    )?;
    let man = assets.join("man");
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)
        .with_context(|| format!("reading {}", man.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    run(
        "gzip -9n the man pages",
        Command::new("gzip").arg("-9nf").args(&pages),
    )?;
    let out = run(
        "cargo deb -p hb-daemon --no-build",
        cargo()
            .current_dir(root)
            .args(["deb", "-p", "hb-daemon", "--no-build", "--quiet"]),
    )?;
    let deb = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb printed no .deb path")?;
    let deb = if deb.is_absolute() {
        deb
    } else {
        root.join(deb)
    };
    if !deb.is_file() {
        bail!(
            "cargo deb said it wrote {}, which is not there",
            deb.display()
        );
    }
    Ok(deb)
}
