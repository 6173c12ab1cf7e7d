//! `hbd`: the hb daemon. `hbd --check` validates the Heartbeat configuration and prints the
//! effective configuration; without it, hbd runs the node until SIGTERM (a clean stop that
//! releases its resource groups and tells the peers).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use hb_daemon::{
    daemon::{self, DaemonError, DaemonOptions},
    logging,
};

/// hb: a Heartbeat-compatible high-availability failover daemon.
#[derive(Debug, Parser)]
#[command(name = "hbd", version, about)]
pub(crate) struct Args {
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
    /// Log to the systemd journal with structured fields (EVENT, PEER, LINK, GROUP, RESOURCE).
    /// The default under systemd, when JOURNAL_STREAM names hbd's stderr.
    #[arg(long)]
    journald: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return hb_daemon::check::run_check(&args.config_dir, args.node_name.as_deref());
    }
    let node_name = match args.node_name.clone() {
        Some(n) => n.to_lowercase(),
        None => match hb_daemon::node_name::local_node_name() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("hbd: uname -n: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let opts = DaemonOptions {
        config_dir: args.config_dir,
        node_name,
        state_dir: args.state_dir,
        run_dir: args.run_dir,
    };
    let config = match daemon::load_config(&opts) {
        Ok(c) => c,
        Err(DaemonError::Config(problems)) => {
            eprintln!("{problems}");
            eprintln!(
                "hbd: refusing to start: invalid configuration in {}",
                opts.config_dir.display()
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("hbd: {e}");
            return ExitCode::from(1);
        }
    };
    let mut log_config = logging::LogConfig::from_ha_cf(&config.ha_cf, args.foreground);
    log_config.journald = args.journald || logging::stderr_is_journal();
    let guard = match logging::init(&log_config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("hbd: logging: {e}");
            return ExitCode::from(1);
        }
    };
    let result = daemon::run(&opts, config);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("hbd: {e}");
            ExitCode::from(1)
        }
    };
    guard.flush(std::time::Duration::from_secs(2));
    code
}
