//! The lab's etcd (Debian's etcd-server) for [`LabSpec::arbiter`](super::LabSpec::arbiter): it
//! runs in the client's namespace on the LAN (`http://10.213.y.10:2379`), so every node reaches it
//! while a [`Lab::partition`] cuts only their traffic to each other; [`Lab::cut_etcd`] cuts one
//! node from it, [`Lab::kill_etcd`] stops it.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{ETCD_PORT, Lab, Node, cmd_status};
use crate::monotonic_ns;

impl Lab {
    /// etcd's client URL.
    pub fn etcd_url(&self) -> String {
        format!("http://{}:{ETCD_PORT}", self.client_addr())
    }

    /// Starts etcd in the client's namespace (data under the lab's dir) and waits until it
    /// accepts connections. Returns when it did.
    pub fn start_etcd(&mut self) -> Result<u64> {
        if let Some(mut old) = self.etcd.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let ns = self.client_netns();
        let url = self.etcd_url();
        let data = self.rec.dir.join("etcd");
        let log = std::fs::File::create(self.rec.dir.join("etcd.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "etcd", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "default=http://127.0.0.1:2380"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian etcd-server; cargo xtask bootstrap installs it)")?;
        self.etcd = Some(child);
        let probe = format!("exec 3<>/dev/tcp/{}/{ETCD_PORT}", self.client_addr());
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let out = cmd_status("ip", &["netns", "exec", &ns, "bash", "-c", &probe])?;
            if out.status.success() {
                break;
            }
            if let Some(c) = self.etcd.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                bail!(
                    "etcd exited at once ({st}): {}",
                    std::fs::read_to_string(self.rec.dir.join("etcd.log")).unwrap_or_default()
                );
            }
            if Instant::now() >= end {
                bail!("etcd did not accept connections within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let at = monotonic_ns();
        self.note(at, format!("etcd up at {}", self.etcd_url()));
        Ok(at)
    }

    /// Kills etcd (SIGKILL). Returns when it was gone.
    pub fn kill_etcd(&mut self) -> Result<u64> {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let at = monotonic_ns();
        self.note(at, "etcd killed");
        Ok(at)
    }

    /// Cuts (`true`) or restores `node`'s traffic to and from etcd (iptables in the node).
    pub fn cut_etcd(&self, node: Node, cut: bool) -> Result<u64> {
        let op = if cut { "-A" } else { "-D" };
        let addr = self.client_addr().to_string();
        let port = ETCD_PORT.to_string();
        self.iptables(
            node,
            &[
                op, "OUTPUT", "-d", &addr, "-p", "tcp", "--dport", &port, "-j", "DROP",
            ],
        )?;
        self.iptables(
            node,
            &[
                op, "INPUT", "-s", &addr, "-p", "tcp", "--sport", &port, "-j", "DROP",
            ],
        )?;
        let at = monotonic_ns();
        self.note(
            at,
            format!(
                "{node} {} etcd",
                if cut { "cut off from" } else { "reaches" }
            ),
        );
        Ok(at)
    }
}
