//! `cargo xtask fuzz`: the fuzz campaign. Runs each cargo-fuzz target under `fuzz/` on the
//! pinned nightly for `--seconds` (or `--runs` executions), prints libFuzzer's execution count
//! per target, and stops with an error naming the artifact when a target finds a crash (a run
//! stopped by Ctrl-C is reported as interrupted, not as a finding).
//!
//! The campaign starts from the kept corpus (`fuzz/corpus/TARGET`, in the repository) and
//! writes what it finds to `target/fuzz-corpus/TARGET`, so a run leaves the repository alone;
//! `--save-corpus` merges both into a minimized `fuzz/corpus/TARGET` (libFuzzer's
//! `-set_cover_merge=1` over edges: few inputs reaching the same code). CI replays the kept corpus on stable instead
//! (`hb-proto/tests/fuzz_corpus.rs`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::bootstrap::{self, EBPF_TOOLCHAIN, step};

/// Every fuzz target: the files under `fuzz/fuzz_targets/`, sorted.
fn all_targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// `cargo xtask fuzz` options.
#[derive(Debug, Args)]
pub struct FuzzOptions {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Stop a target after this many executions (whichever of this and --seconds comes first).
    #[arg(long)]
    pub runs: Option<u64>,
    /// Only these targets (repeatable); default every target.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Merge what the campaign found into a minimized fuzz/corpus/TARGET (to commit).
    #[arg(long)]
    pub save_corpus: bool,
}

/// One target's outcome.
#[derive(Debug)]
struct Outcome {
    target: String,
    seconds: f64,
    executions: Option<u64>,
    end: End,
}

/// How a target's run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Its time or execution budget ran out.
    Done,
    /// Stopped by SIGINT or SIGTERM before that (libFuzzer exits 72 and says
    /// `libFuzzer: run interrupted`): no finding, but the budget was not spent.
    Interrupted,
    /// A finding: the artifact libFuzzer wrote, or what is known when it named none.
    Crash(String),
}

/// How a libFuzzer run that printed `stderr` and exited with `status` ended.
fn classify(status: std::process::ExitStatus, stderr: &str) -> End {
    if status.success() {
        End::Done
    } else if let Some(a) = artifact(stderr) {
        End::Crash(a)
    } else if stderr.contains("libFuzzer: run interrupted") {
        End::Interrupted
    } else {
        End::Crash(format!("exit {status}, no artifact named"))
    }
}

/// Whether `target` is built with libFuzzer's comparison tracing (`-sanitizer-coverage-trace-
/// compares`, cargo-fuzz's default). Every target but `cluster` is: they parse the input's bytes,
/// and the operands of the comparisons they make (keywords, magic numbers, lengths) are what
/// libFuzzer's mutations splice in. The `cluster` target compares the simulation's state
/// (timestamps, sequence numbers, holdings) millions of times per input, and the tracing call
/// on each comparison cost twice the rest of an execution (a 10 s steady-state input: 12.2 ms
/// with it, 3.9 ms without), while its input is decoded by `arbitrary` (enum choices by
/// multiplication, plain integers): those operands are not the input's bytes. Edge coverage
/// and every check are the same without it; the datagram decoder its `Garbage` steps reach is
/// fuzzed with comparison tracing by the `decode` target.
fn trace_compares(target: &str) -> bool {
    target != "cluster"
}

/// `cargo +NIGHTLY fuzz SUBCOMMAND --sanitizer none` for `target`: hb-proto has no `unsafe`
/// code, so AddressSanitizer could only find what safe Rust already rules out, at about half
/// the executions per second; panics, failed assertions and overflow checks (cargo-fuzz builds
/// with debug assertions) are found either way. Build, run and merge of a target take the same
/// flags, or `cargo fuzz run` rebuilds it.
fn cargo_fuzz(root: &Path, subcommand: &str, target: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{EBPF_TOOLCHAIN}"))
        .args(["fuzz", subcommand, "--sanitizer", "none"])
        .current_dir(root);
    if !trace_compares(target) {
        cmd.arg("--no-trace-compares");
    }
    cmd.arg(target);
    cmd
}

/// libFuzzer's `stat::number_of_executed_units: N` (printed with `-print_final_stats=1`).
fn executions(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

/// The artifact libFuzzer names on a crash (`Test unit written to PATH`).
fn artifact(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("Test unit written to "))
        .map(|(_, p)| p.trim().to_owned())
        .next_back()
}

fn run_target(root: &Path, target: &str, opts: &FuzzOptions) -> Result<Outcome> {
    let kept = root.join("fuzz/corpus").join(target);
    let found = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&kept)?;
    std::fs::create_dir_all(&found)?;
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let mut cmd = cargo_fuzz(root, "run", target);
    cmd.arg(&found)
        .arg(&kept)
        .arg("--")
        .arg(format!("-max_total_time={}", opts.seconds))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(runs) = opts.runs {
        cmd.arg(format!("-runs={runs}"));
    }
    step(&format!(
        "fuzz {target}: {} s{} (corpus {} + {})",
        opts.seconds,
        opts.runs
            .map(|r| format!(" or {r} executions"))
            .unwrap_or_default(),
        kept.display(),
        found.display()
    ));
    let started = Instant::now();
    // libFuzzer reports on stderr: keep it for the figures and pass it through as it comes.
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let stderr = child.stderr.take().context("cargo fuzz stderr")?;
    let mut text = String::new();
    {
        use std::io::{BufRead as _, BufReader};
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading cargo fuzz output")?;
            // Progress lines (`#N ... exec/s`) every few seconds, the stats and the crash report.
            if !line.starts_with("INFO: ") || line.contains("Seed") {
                eprintln!("{line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = child.wait()?;
    let seconds = started.elapsed().as_secs_f64();
    let end = classify(status, &text);
    if end == End::Done && opts.save_corpus {
        save_corpus(root, target, &kept, &found)?;
    }
    Ok(Outcome {
        target: target.to_owned(),
        seconds,
        executions: executions(&text),
        end,
    })
}

/// Replaces `kept` with the minimized merge of `kept` and `found`.
fn save_corpus(root: &Path, target: &str, kept: &Path, found: &Path) -> Result<()> {
    let merged: PathBuf = root
        .join("target/fuzz-corpus")
        .join(format!("{target}.merged"));
    if merged.exists() {
        std::fs::remove_dir_all(&merged)?;
    }
    std::fs::create_dir_all(&merged)?;
    step(&format!(
        "fuzz {target}: minimizing the corpus into {}",
        kept.display()
    ));
    let status = cargo_fuzz(root, "run", target)
        .arg(&merged)
        .arg(kept)
        .arg(found)
        // The fewest inputs that keep every edge: set cover over edges (counters off). For
        // ha_cf this kept 82 of 1355 inputs with 867 of 869 edges; a plain -merge=1 keeps
        // every input with a new feature (hit counts included): 1355.
        .args(["--", "-set_cover_merge=1", "-use_counters=0"])
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("fuzz {target}: corpus merge failed ({status})");
    }
    std::fs::remove_dir_all(kept)?;
    std::fs::rename(&merged, kept)?;
    Ok(())
}

/// Makes sure cargo-fuzz (pinned) is installed; the nightly comes from the main bootstrap.
fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have
        .as_deref()
        .is_some_and(|v| v.ends_with(bootstrap::CARGO_FUZZ_VERSION))
    {
        step(&format!(
            "bootstrap: cargo-fuzz {} present",
            bootstrap::CARGO_FUZZ_VERSION
        ));
        return Ok(());
    }
    step(&format!(
        "bootstrap: installing cargo-fuzz {} (about a minute)",
        bootstrap::CARGO_FUZZ_VERSION
    ));
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked", "--force", "--version"])
        .arg(bootstrap::CARGO_FUZZ_VERSION)
        .status()?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// Runs the campaign.
pub fn fuzz(root: &Path, opts: &FuzzOptions) -> Result<()> {
    // Ctrl-C reaches libFuzzer too, which stops and prints its figures: this process stays to
    // report them.
    crate::interrupt::install_sigint();
    // libFuzzer itself is C++, built by libfuzzer-sys.
    bootstrap::ensure(&["g++"])?;
    ensure_cargo_fuzz()?;
    let all = all_targets(root)?;
    if let Some(t) = opts.targets.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target {t} (targets: {})", all.join(", "));
    }
    let mut targets: Vec<&String> = if opts.targets.is_empty() {
        all.iter().collect()
    } else {
        opts.targets.iter().collect()
    };
    // Those built with comparison tracing first: the flags change once, so hb-proto is
    // rebuilt once.
    targets.sort_by_key(|t| !trace_compares(t));
    let mut outcomes = Vec::new();
    for t in &targets {
        step(&format!(
            "cargo fuzz build {t} (release, debug assertions, {}the pinned nightly)",
            if trace_compares(t) {
                ""
            } else {
                "no comparison tracing, "
            }
        ));
        let status = cargo_fuzz(root, "build", t).status()?;
        if !status.success() {
            bail!("cargo fuzz build {t} failed ({status})");
        }
        let outcome = run_target(root, t, opts)?;
        let interrupted = outcome.end == End::Interrupted;
        outcomes.push(outcome);
        if interrupted {
            break;
        }
    }
    println!("\nfuzz campaign ({} s per target):", opts.seconds);
    println!(
        "{:<12} {:>9} {:>14} {:>9}  result",
        "target", "seconds", "executions", "exec/s"
    );
    for o in &outcomes {
        let (execs, rate) = match o.executions {
            Some(n) => (
                n.to_string(),
                format!("{:.0}", n as f64 / o.seconds.max(0.001)),
            ),
            None => ("?".to_owned(), "?".to_owned()),
        };
        let result = match &o.end {
            End::Done => "ok".to_owned(),
            End::Interrupted => "interrupted (no finding)".to_owned(),
            End::Crash(a) => format!("CRASH: {a}"),
        };
        println!(
            "{:<12} {:>9.0} {:>14} {:>9}  {result}",
            o.target, o.seconds, execs, rate
        );
    }
    let crashed = outcomes
        .iter()
        .filter(|o| matches!(o.end, End::Crash(_)))
        .count();
    if crashed > 0 {
        bail!(
            "{crashed} target(s) found a crash; reproduce with `cargo +{EBPF_TOOLCHAIN} fuzz run TARGET ARTIFACT`, \
             keep the input in fuzz/corpus/TARGET with the fix"
        );
    }
    if outcomes.iter().any(|o| o.end == End::Interrupted) {
        bail!("interrupted before the campaign's budget was spent (no finding)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt as _, process::ExitStatus};

    use super::*;

    /// A process that exited with `code`.
    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn reads_libfuzzer_stats_and_artifacts() {
        let text = "INFO: Seed: 1\n#1024\tpulse  cov: 10 exec/s: 512\n\
                    ==1== ERROR: libFuzzer: deadly signal\n\
                    artifact_prefix='a/'; Test unit written to fuzz/artifacts/decode/crash-ab12\n\
                    stat::number_of_executed_units: 123456\nstat::average_exec_per_sec:     4115\n";
        assert_eq!(executions(text), Some(123_456));
        assert_eq!(
            artifact(text).as_deref(),
            Some("fuzz/artifacts/decode/crash-ab12")
        );
        assert_eq!(executions("nothing"), None);
        assert_eq!(
            classify(exit(1), text),
            End::Crash("fuzz/artifacts/decode/crash-ab12".to_owned())
        );
    }

    #[test]
    fn an_interrupted_run_is_not_a_crash() {
        let text = "#4379200\tpulse  cov: 900 exec/s: 1239\n\
                    ==7== libFuzzer: run interrupted; exiting\n\
                    stat::number_of_executed_units: 4379200\n";
        assert_eq!(classify(exit(72), text), End::Interrupted);
        assert_eq!(classify(exit(0), text), End::Done);
        assert!(matches!(classify(exit(1), "killed"), End::Crash(_)));
    }
}
