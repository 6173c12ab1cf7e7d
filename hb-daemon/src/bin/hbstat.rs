//! `hbstat`: link latency and loss statistics of a running hbd.
//!
//! ```text
//! hbstat                 one table per peer and link: state, received, lost (%), and
//!                        p50/p90/p99/p99.9/max of gap, delivery delay and RTT
//! hbstat --histogram     also draw each distribution as a bar chart
//! hbstat --watch         refresh in place every --interval seconds
//! hbstat --json          the same data as JSON
//! hbstat --reset         start a new statistics window
//! ```
//!
//! Exit status: 0 on success, 1 when hbd refuses or answers badly, 3 when hbd is not running,
//! 4 when the control socket is not accessible.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use hb_daemon::{
    control::{self, ClientError, Request, Response},
    display,
    metrics::StatsReport,
};

/// Link latency and loss statistics of a running hbd.
#[derive(Debug, Parser)]
#[command(name = "hbstat", version, about)]
pub(crate) struct Cli {
    /// hbd's run directory (holds hbd.sock).
    #[arg(long, default_value = control::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Control socket path (overrides <run-dir>/hbd.sock; ha.cf `control_socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Draw each distribution as a bar chart.
    #[arg(long)]
    histogram: bool,
    /// Refresh in place until interrupted.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Print JSON (with --watch: one object per line).
    #[arg(long)]
    json: bool,
    /// Start a new statistics window (then show the statistics only with --watch).
    #[arg(long)]
    reset: bool,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("hbstat: {e}");
    ExitCode::from(match e {
        ClientError::NotRunning { .. } => 3,
        ClientError::PermissionDenied { .. } => 4,
        _ => 1,
    })
}

fn fetch(path: &std::path::Path) -> Result<StatsReport, ExitCode> {
    match control::call(path, &Request::Stats, TIMEOUT) {
        Ok(Response::Stats(r)) => Ok(*r),
        Ok(Response::Error { message }) => {
            eprintln!("hbstat: hbd refused: {message}");
            Err(ExitCode::FAILURE)
        }
        Ok(other) => {
            eprintln!("hbstat: unexpected answer from hbd: {other:?}");
            Err(ExitCode::FAILURE)
        }
        Err(e) => Err(fail(&e)),
    }
}

fn render(cli: &Cli, report: &StatsReport) -> Result<String, ExitCode> {
    if cli.json {
        let json = if cli.watch {
            serde_json::to_string(report)
        } else {
            serde_json::to_string_pretty(report)
        };
        json.map(|s| s + "\n").map_err(|e| {
            eprintln!("hbstat: {e}");
            ExitCode::FAILURE
        })
    } else {
        Ok(display::stats(report, cli.histogram))
    }
}

fn run(cli: &Cli) -> Result<(), ExitCode> {
    let path = control::socket_path(&cli.run_dir, cli.socket.as_deref());
    if cli.reset {
        match control::call(&path, &Request::ResetStats, TIMEOUT) {
            Ok(Response::Ack { message }) => {
                if !cli.watch {
                    println!("{message}");
                    return Ok(());
                }
            }
            Ok(Response::Error { message }) => {
                eprintln!("hbstat: hbd refused: {message}");
                return Err(ExitCode::FAILURE);
            }
            Ok(other) => {
                eprintln!("hbstat: unexpected answer from hbd: {other:?}");
                return Err(ExitCode::FAILURE);
            }
            Err(e) => return Err(fail(&e)),
        }
    }
    if !cli.watch {
        print!("{}", render(cli, &fetch(&path)?)?);
        return Ok(());
    }
    let interval = Duration::try_from_secs_f64(cli.interval)
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(50));
    let mut stdout = std::io::stdout();
    loop {
        let text = render(cli, &fetch(&path)?)?;
        let frame = if cli.json {
            text
        } else {
            // Home the cursor, draw, clear what is left of the previous frame.
            format!("\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"))
        };
        if stdout
            .write_all(frame.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // stdout closed (a pipe reader went away): stop quietly.
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.watch && !cli.json {
        print!("\x1b[2J");
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
