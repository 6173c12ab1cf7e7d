//! Fencing devices: cluster-glue's `stonith` command for each `stonith_host` line this node may
//! use, and hb's `fence_command` lines.
//!
//! A fence of NODE tries the devices in ha.cf order until one succeeds: `stonith_host` lines
//! first (`stonith -t TYPE [NAME=VALUE...|-p "PARAMS"] -T reset NODE`), then `fence_command`
//! lines (`PROGRAM ARGS... NODE`). Success is exit status 0. Each command runs supervised (own
//! process group, output logged, SIGKILL at the deadline) on the agents thread; the whole fence
//! is bounded by one timeout. The core decides when to fence; this only runs the command.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hb_proto::config::{Config, StonithHost};

use super::script::{self, RunError};

/// cluster-glue's command.
pub const STONITH: &str = "/usr/sbin/stonith";

/// One way to fence a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceDevice {
    /// A `stonith_host` line.
    Stonith(StonithHost),
    /// A `fence_command` line: the program and its arguments (the node name is appended).
    Command(Vec<String>),
}

impl FenceDevice {
    /// The devices `config.local_node` may use, in the order they are tried.
    pub fn for_local(config: &Config) -> Vec<FenceDevice> {
        let ha = &config.ha_cf;
        let mut v: Vec<FenceDevice> = ha
            .stonith_devices()
            .into_iter()
            .filter(|s| s.usable_from(&config.local_node))
            .map(FenceDevice::Stonith)
            .collect();
        v.extend(ha.fence_commands.iter().cloned().map(FenceDevice::Command));
        v
    }

    /// The program and arguments that fence `node`.
    pub fn argv(&self, node: &str) -> (PathBuf, Vec<String>) {
        match self {
            FenceDevice::Stonith(s) => {
                let mut args = vec!["-t".to_owned(), s.kind.clone()];
                if s.params.iter().all(|p| p.contains('=')) {
                    args.extend(s.params.iter().cloned());
                } else {
                    // Heartbeat's positional form (`stonith_host * baytech 10.0.0.3 login pw`).
                    args.push("-p".to_owned());
                    args.push(s.params.join(" "));
                }
                args.extend(["-T".to_owned(), "reset".to_owned(), node.to_owned()]);
                (PathBuf::from(STONITH), args)
            }
            FenceDevice::Command(argv) => {
                let mut args: Vec<String> = argv.iter().skip(1).cloned().collect();
                args.push(node.to_owned());
                (PathBuf::from(argv.first().map_or("", String::as_str)), args)
            }
        }
    }

    /// For log lines: `stonith external/ipmi` or the program path.
    pub fn label(&self) -> String {
        match self {
            FenceDevice::Stonith(s) => format!("stonith {}", s.kind),
            FenceDevice::Command(argv) => argv.first().cloned().unwrap_or_default(),
        }
    }
}

/// Fences `node` with the first device that succeeds, within `timeout` in all. The error names
/// every device tried and why it failed.
pub async fn fence(devices: &[FenceDevice], node: &str, timeout: Duration) -> Result<(), String> {
    if devices.is_empty() {
        return Err("no STONITH device usable from this node".to_owned());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut errors = Vec::new();
    for dev in devices {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            errors.push(format!("{}: not tried, the timeout passed", dev.label()));
            continue;
        }
        let (program, args) = dev.argv(node);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let label = format!("fence {node}");
        tracing::info!(
            "hb: fencing {node}: {} {}",
            program.display(),
            args.join(" ")
        );
        // Fence devices get hbd's environment only (stonith reads its own parameters).
        match script::run(&label, Path::new(&program), &args, &[], left).await {
            Ok(f) if f.status.success() => return Ok(()),
            Ok(f) => errors.push(format!(
                "{}: {}{}",
                dev.label(),
                f.status,
                last_line(&f.output)
            )),
            Err(RunError::Timeout(out)) => errors.push(format!(
                "{}: timed out after {} ms{}",
                dev.label(),
                timeout.as_millis(),
                last_line(&out)
            )),
            Err(RunError::Spawn(e)) => errors.push(format!(
                "{}: cannot run {}: {e}",
                dev.label(),
                program.display()
            )),
            Err(RunError::Wait(e)) => errors.push(format!("{}: {e}", dev.label())),
        }
    }
    Err(errors.join("; "))
}

fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(" ({})", l.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(params: &[&str]) -> FenceDevice {
        FenceDevice::Stonith(StonithHost {
            from: "*".into(),
            kind: "external/lab".into(),
            params: params.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn stonith_argv_name_value_and_positional() {
        let (p, a) = host(&["hostlist=a b", "ip=10.0.0.1"]).argv("node2");
        assert_eq!(p, PathBuf::from(STONITH));
        assert_eq!(
            a,
            [
                "-t",
                "external/lab",
                "hostlist=a b",
                "ip=10.0.0.1",
                "-T",
                "reset",
                "node2"
            ]
        );
        let (_, a) = host(&["10.0.0.3", "login", "pw"]).argv("node2");
        assert_eq!(
            a,
            [
                "-t",
                "external/lab",
                "-p",
                "10.0.0.3 login pw",
                "-T",
                "reset",
                "node2"
            ]
        );
    }

    #[tokio::test]
    async fn first_success_wins_and_errors_name_each_device() {
        let ok = FenceDevice::Command(vec!["/bin/true".into()]);
        let bad = FenceDevice::Command(vec!["/bin/false".into()]);
        assert!(
            fence(&[bad.clone(), ok], "n", Duration::from_secs(5))
                .await
                .is_ok()
        );
        let e = fence(&[bad], "n", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("/bin/false"), "{e}");
        let slow = FenceDevice::Command(vec!["/bin/sleep".into()]);
        // `sleep NODE` with NODE = "5": killed at the timeout.
        let e = fence(&[slow], "5", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }
}
