//! `cargo xtask`: hb's developer and operator entry point.
//!
//! Every command first makes sure the prerequisites are installed (see [`bootstrap`]).

mod bench;
mod bootstrap;
mod demo;
mod fuzz;
mod interrupt;
mod soak;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark hb")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build everything; with no arguments run the live two-node failover demo in network
    /// namespaces; with `-- <hbd args>` run the daemon for real on this host.
    Run(RunOptions),
    /// Every test: rustfmt, clippy (-D warnings), unit tests and privileged tests.
    Test(TestOptions),
    /// Benchmarks (criterion under benches/ and the failover benches); figures go to BENCHMARKS.md.
    Bench(Box<bench::BenchOptions>),
    /// The fuzz campaign: every cargo-fuzz target under fuzz/ on the pinned nightly (installs
    /// cargo-fuzz); CI only replays the kept corpus (in `cargo test`).
    Fuzz(fuzz::FuzzOptions),
    /// Randomized faults in the lab (CTS-style), each followed by audits; a summary table at
    /// the end. Needs root.
    Soak(soak::SoakOptions),
    /// The failover lab: two nodes and a client in network namespaces.
    Lab(LabOptions),
    /// Build the Debian package: target/debian/hb_<version>_amd64.deb (cargo-deb).
    Package,
    /// Only install what is missing (toolchain, bpf-linker, cargo-deb, system packages).
    Bootstrap,
}

#[derive(Debug, Args)]
struct RunOptions {
    /// Run the demo with the lab moving the VIP and httpd by hand where hbd would (the lab and
    /// the client's view without the daemon).
    #[arg(long)]
    by_hand: bool,
    /// Run the partition demo instead: a heartbeat partition without an arbiter (both nodes
    /// take the VIP) and with `arbiter etcd` (etcd in the lab, only one node holds it).
    #[arg(long, conflicts_with = "by_hand")]
    arbiter: bool,
    /// Arguments for `hbd`; when present, runs the daemon on this host instead of the demo.
    #[arg(last = true)]
    hbd_args: Vec<String>,
}

#[derive(Debug, Args)]
struct TestOptions {
    /// Extra arguments passed to `cargo test` after `--` (e.g. a test name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

#[derive(Debug, Args)]
struct LabOptions {
    #[command(subcommand)]
    action: LabAction,
}

#[derive(Debug, Subcommand)]
enum LabAction {
    /// Create the namespaces, bridge and nodes, and start hbd on each.
    Up,
    /// Remove everything the lab made.
    Down,
    /// Show what is up.
    Status,
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn run_step(name: &str, cmd: &mut Command) -> Result<()> {
    bootstrap::step(name);
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{name}: failed ({status})");
    }
    Ok(())
}

fn test(opts: &TestOptions) -> Result<()> {
    bootstrap::ensure(&[])?;
    run_step(
        "cargo fmt --all --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run_step(
        "cargo clippy --all-targets -- -D warnings",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    if !bootstrap::is_root() {
        bootstrap::step(
            "not root: privileged tests (BPF, network namespaces) will say SKIPPED (they fail instead under CI)",
        );
    }
    let mut cmd = cargo();
    cmd.args(["test", "--no-fail-fast"]);
    if !opts.test_args.is_empty() {
        cmd.arg("--").args(&opts.test_args);
    }
    bootstrap::step("cargo test (unit, simulation and privileged tests)");
    let totals = run_counting_tests(&mut cmd)?;
    // One closing line for the whole run (cargo prints one per test binary).
    println!(
        "test: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !totals.success {
        bail!("cargo test: failed");
    }
    Ok(())
}

/// Sums of cargo test's per-binary `test result:` lines.
#[derive(Debug, Default)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
    success: bool,
}

/// Runs `cmd` (a `cargo test`), echoing its stdout line by line, and sums the results.
fn run_counting_tests(cmd: &mut Command) -> Result<TestTotals> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = TestTotals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.trim_start().strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => totals.passed += n,
                    "failed" => totals.failed += n,
                    "ignored" => totals.ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    totals.success = status.success() && totals.failed == 0;
    Ok(totals)
}

fn bench(opts: &bench::BenchOptions) -> Result<()> {
    if !opts.only.is_empty() && opts.only.iter().all(|w| *w == bench::Which::Plots) {
        // Only redraws docs/bench/*.svg: no packages, no build, no root.
        return bench::bench(&workspace_root()?, &demo::Binaries::default(), opts);
    }
    // The peers.
    bootstrap::ensure(&["keepalived", "heartbeat"])?;
    if !opts.only.is_empty()
        && opts
            .only
            .iter()
            .all(|w| matches!(w, bench::Which::Criterion | bench::Which::Plots))
    {
        return bench::bench(&workspace_root()?, &demo::Binaries::default(), opts);
    }
    run_step(
        "cargo build --release (hbd, hbctl, hbstat and the XDP program)",
        cargo().args(["build", "--release", "-p", "hb-daemon"]),
    )?;
    let root = workspace_root()?;
    bench::bench(&root, &demo::Binaries::find(&root), opts)
}

fn run(opts: &RunOptions) -> Result<()> {
    bootstrap::ensure(&[])?;
    run_step(
        "cargo build --release (hbd, hbctl, hbstat and the XDP program)",
        cargo().args(["build", "--release", "-p", "hb-daemon"]),
    )?;
    let root = workspace_root()?;
    if opts.hbd_args.is_empty() && opts.arbiter {
        return demo::arbiter_demo(&demo::Binaries::find(&root));
    }
    if opts.hbd_args.is_empty() {
        return demo::demo(&demo::Binaries::find(&root), opts.by_hand);
    }
    run_step(
        "hbd",
        Command::new(root.join("target/release/hbd")).args(&opts.hbd_args),
    )
}

fn soak_cmd(opts: &soak::SoakOptions) -> Result<()> {
    bootstrap::ensure(&[])?;
    if !bootstrap::is_root() {
        bail!("cargo xtask soak needs root (network namespaces, iptables)");
    }
    run_step(
        "cargo build --release (hbd, hbctl, hbstat and the XDP program)",
        cargo().args(["build", "--release", "-p", "hb-daemon"]),
    )?;
    let root = workspace_root()?;
    soak::soak(&demo::Binaries::find(&root), opts)
}

fn lab(opts: &LabOptions) -> Result<()> {
    bootstrap::ensure(&[])?;
    match opts.action {
        LabAction::Up => {
            run_step(
                "cargo build --release (hbd, hbctl, hbstat and the XDP program)",
                cargo().args(["build", "--release", "-p", "hb-daemon"]),
            )?;
            demo::lab_up(&demo::Binaries::find(&workspace_root()?))
        }
        LabAction::Down => demo::lab_down(),
        LabAction::Status => demo::lab_status(),
    }
}

fn package() -> Result<()> {
    bootstrap::ensure(&[])?;
    let deb = hb_tests::package::build(&workspace_root()?)?;
    println!("{}", deb.display());
    Ok(())
}

fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Cmd::Run(o) => run(o),
        Cmd::Test(o) => test(o),
        Cmd::Bench(o) => bench(o),
        Cmd::Lab(o) => lab(o),
        Cmd::Fuzz(o) => fuzz::fuzz(&workspace_root()?, o),
        Cmd::Soak(o) => soak_cmd(o),
        Cmd::Package => package(),
        Cmd::Bootstrap => bootstrap::ensure(&[]),
    }
}
