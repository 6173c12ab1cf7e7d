//! `hbctl`: operate a running hbd through its control socket.
//!
//! ```text
//! hbctl standby [all|foreign|local|failback]    give groups to the peer (default all)
//! hbctl takeover [all|foreign|local|failback]   take groups from the peer (default all)
//! hbctl status [--json]                         nodes, links and group owners
//! hbctl reload                                  re-read ha.cf, haresources, authkeys (SIGHUP)
//! ```
//!
//! Exit status: 0 on success, 1 when hbd refuses the request or answers badly, 3 when hbd is
//! not running (no control socket, or nobody listening), 4 when the socket is not accessible.
//!
//! Started as `cl_status`, `hb_standby` or `hb_takeover` (a link to hbctl with that name),
//! hbctl is Heartbeat's command of that name instead, with its arguments, output and exit codes
//! ([`hb_daemon::heartbeat_tools`]). Those find hbd's socket at `$HB_CONTROL_SOCKET`, else
//! `$HB_RUN_DIR/hbd.sock`, else `/run/hb/hbd.sock`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use hb_daemon::{
    control::{self, ClientError, Request, Response, Scope},
    display,
    heartbeat_tools::{self, Context, Personality},
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
    /// Re-read ha.cf, haresources and authkeys, as SIGHUP does: what can change live is
    /// applied, a configuration with errors is refused (hbd runs on as before).
    Reload,
    /// Show nodes, their links, and which node owns each group (Heartbeat's cl_status).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Heartbeat's `cl_status` gives up after 5 s (its `alarm(5)`).
const HEARTBEAT_TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs hbctl as Heartbeat's `cl_status`, `hb_standby` or `hb_takeover`.
fn heartbeat_tool(personality: Personality, argv0: &str, args: &[String]) -> ExitCode {
    let path = match std::env::var_os("HB_CONTROL_SOCKET") {
        Some(p) => PathBuf::from(p),
        None => {
            let run_dir = std::env::var_os("HB_RUN_DIR")
                .map_or_else(|| PathBuf::from(control::DEFAULT_RUN_DIR), PathBuf::from);
            control::socket_path(&run_dir, None)
        }
    };
    let ctx = Context::current(argv0);
    let mut ask = |r: &Request| control::call(&path, r, HEARTBEAT_TOOL_TIMEOUT);
    let out = match personality {
        Personality::ClStatus => heartbeat_tools::cl_status(args, &ctx, &mut ask),
        Personality::HbStandby => heartbeat_tools::standby_takeover(false, args, &ctx, &mut ask),
        Personality::HbTakeover | Personality::Hbctl => {
            heartbeat_tools::standby_takeover(true, args, &ctx, &mut ask)
        }
    };
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    ExitCode::from(out.code)
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let argv0 = argv.next().unwrap_or_default();
    let personality = Personality::from_argv0(&argv0);
    if personality != Personality::Hbctl {
        let args: Vec<String> = argv.collect();
        return heartbeat_tool(personality, &argv0, &args);
    }
    let cli = Cli::parse();
    let path = control::socket_path(&cli.run_dir, cli.socket.as_deref());
    let request = match &cli.command {
        Command::Standby { scope } => Request::Standby { scope: *scope },
        Command::Takeover { scope } => Request::Takeover { scope: *scope },
        Command::Status { .. } => Request::Status,
        Command::Reload => Request::Reload,
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
