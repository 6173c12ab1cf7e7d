//! `hbctl`: operate a running hbd through its control socket.
//!
//! ```text
//! hbctl standby [all|foreign|local|failback]    give groups to the peer (default all)
//! hbctl takeover [all|foreign|local|failback]   take groups from the peer (default all)
//! hbctl status [--json]                         nodes, links and group owners
//! ```
//!
//! Exit status: 0 on success, 1 when hbd refuses the request or answers badly, 3 when hbd is
//! not running (no control socket, or nobody listening), 4 when the socket is not accessible.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use hb_daemon::{
    control::{self, ClientError, Request, Response, Scope},
    display,
};

/// Operate a running hbd.
#[derive(Debug, Parser)]
#[command(name = "hbctl", version, about)]
pub(crate) struct Cli {
    /// hbd's run directory (holds hbd.sock).
    #[arg(long, default_value = control::DEFAULT_RUN_DIR, global = true)]
    run_dir: PathBuf,
    /// Control socket path (overrides <run-dir>/hbd.sock; ha.cf `control_socket`).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Seconds to wait for hbd's answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Give up groups to the peer (Heartbeat's hb_standby).
    Standby {
        /// Which groups: all, foreign, local or failback.
        #[arg(default_value = "all")]
        scope: Scope,
    },
    /// Take groups from the peer (Heartbeat's hb_takeover).
    Takeover {
        /// Which groups: all, foreign, local or failback.
        #[arg(default_value = "all")]
        scope: Scope,
    },
    /// Show nodes, their links, and which node owns each group (Heartbeat's cl_status).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = control::socket_path(&cli.run_dir, cli.socket.as_deref());
    let request = match &cli.command {
        Command::Standby { scope } => Request::Standby { scope: *scope },
        Command::Takeover { scope } => Request::Takeover { scope: *scope },
        Command::Status { .. } => Request::Status,
    };
    let timeout = Duration::try_from_secs_f64(cli.timeout).unwrap_or(Duration::from_secs(10));
    let response = match control::call(&path, &request, timeout) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hbctl: {e}");
            return ExitCode::from(match e {
                ClientError::NotRunning { .. } => 3,
                ClientError::PermissionDenied { .. } => 4,
                _ => 1,
            });
        }
    };
    match (response, &cli.command) {
        (Response::Status(report), Command::Status { json: true }) => {
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("hbctl: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (Response::Status(report), _) => print!("{}", display::status(&report)),
        (Response::Ack { message }, _) => println!("{message}"),
        (Response::Error { message }, _) => {
            eprintln!("hbctl: hbd refused: {message}");
            return ExitCode::FAILURE;
        }
        (Response::Stats(_), _) => {
            eprintln!("hbctl: hbd answered with statistics to a {request:?} request");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
