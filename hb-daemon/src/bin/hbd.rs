//! `hbd`: the hb daemon. `hbd --check` validates the Heartbeat configuration and prints the
//! effective configuration; the daemon loop itself is not wired into this binary yet.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// hb: a Heartbeat-compatible high-availability failover daemon.
#[derive(Debug, Parser)]
#[command(name = "hbd", version, about)]
struct Args {
    /// Validate the configuration, print the effective configuration and warnings, and exit
    /// (0 when valid, 1 with every problem listed as PATH:LINE: message).
    #[arg(long)]
    check: bool,
    /// Directory holding ha.cf, haresources and authkeys.
    #[arg(long, value_name = "DIR", default_value = "/etc/ha.d")]
    config_dir: PathBuf,
    /// This node's name, one of ha.cf's node lines [default: uname -n].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// Directory for persistent state (generation counter).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hb")]
    state_dir: PathBuf,
    /// Directory for runtime files (control socket, pid file).
    #[arg(long, value_name = "DIR", default_value = "/run/hb")]
    run_dir: PathBuf,
    /// Stay in the foreground and log to stderr.
    #[arg(long)]
    foreground: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return hb_daemon::check::run_check(&args.config_dir, args.node_name.as_deref());
    }
    eprintln!(
        "hbd: the daemon loop is not wired yet (config dir {}, state dir {}, run dir {}, \
         foreground {}); use --check to validate the configuration",
        args.config_dir.display(),
        args.state_dir.display(),
        args.run_dir.display(),
        args.foreground
    );
    ExitCode::from(2)
}
