//! Processes on the nodes: commands run in a node's namespaces, hbd started, signalled, killed
//! and stopped, a node killed and rebooted as a machine, the resource script and the `hbctl` /
//! `hbstat` tools run on a node.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{Lab, Node, ResourceOp, pid_alive};
use crate::monotonic_ns;

impl Lab {
    /// A command that runs `program args` on `node`: in its network namespace and in a new UTS
    /// namespace whose hostname is the node's name.
    pub fn node_command(&self, node: Node, program: &Path, args: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns(node), "unshare", "--uts", "--"])
            .args(["sh", "-c"])
            .arg(format!("hostname {} && exec \"$0\" \"$@\"", node.name()))
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .process_group(0);
        c
    }

    /// Runs `program args` on `node` to completion and returns its output (any exit status).
    pub fn exec(&self, node: Node, program: &str, args: &[&str]) -> Result<Output> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.node_command(node, Path::new(program), &args)
            .output()
            .with_context(|| format!("running {program} on {node}"))
    }

    /// The arguments hbd is started with on `node`.
    pub fn hbd_args(&self, node: Node) -> Vec<String> {
        vec![
            "--foreground".into(),
            "--config-dir".into(),
            self.config_dir(node).display().to_string(),
            "--node-name".into(),
            node.name().into(),
            "--state-dir".into(),
            self.state_dir(node).display().to_string(),
            "--run-dir".into(),
            self.run_dir(node).display().to_string(),
        ]
    }

    /// Starts hbd on `node` (output appended to its `hbd.log`). Without `hbd_path`, records why
    /// and returns. A daemon that exits within 200 ms is recorded as exited, not an error.
    pub fn start_hbd(&mut self, node: Node) -> Result<()> {
        let i = node.index();
        let Some(hbd) = self.rec.spec.hbd_path.clone() else {
            self.rec.hbd_notes[i] = "no hbd binary given".into();
            return Ok(());
        };
        if let Some(pid) = self.hbd_pid(node) {
            bail!("hbd already runs on {node} (pid {pid})");
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))?;
        let mut child = self
            .node_command(node, &hbd, &self.hbd_args(node))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} on {node}", hbd.display()))?;
        let pid = child.id();
        self.note(monotonic_ns(), format!("hbd started on {node} (pid {pid})"));
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = child.try_wait()? {
            self.rec.hbd_pids[i] = None;
            self.rec.hbd_notes[i] = format!(
                "exited at once ({status}); see {}",
                self.log_path(node).display()
            );
        } else {
            self.rec.hbd_pids[i] = Some(pid);
            self.rec.hbd_notes[i] = String::new();
            self.children[i] = Some(child);
        }
        self.save_state()
    }

    /// hbd's pid on `node` while it runs.
    pub fn hbd_pid(&mut self, node: Node) -> Option<u32> {
        let i = node.index();
        if let Some(child) = &mut self.children[i]
            && let Ok(Some(status)) = child.try_wait()
        {
            self.children[i] = None;
            self.rec.hbd_pids[i] = None;
            self.rec.hbd_notes[i] = format!("exited ({status})");
        }
        self.rec.hbd_pids[i].filter(|p| pid_alive(*p))
    }

    /// SIGKILLs hbd on `node` (if it runs) and returns the CLOCK_MONOTONIC time of the kill.
    pub fn kill_hbd(&mut self, node: Node) -> Result<u64> {
        let i = node.index();
        let at = monotonic_ns();
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            child.wait()?;
        } else if let Some(pid) = self.rec.hbd_pids[i].filter(|p| pid_alive(*p)) {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
        }
        self.rec.hbd_pids[i] = None;
        self.rec.hbd_notes[i] = "killed (SIGKILL)".into();
        self.note(at, format!("hbd on {node} SIGKILLed"));
        self.save_state()?;
        Ok(at)
    }

    /// Sends `signal` to hbd on `node` (e.g. SIGSTOP / SIGCONT to freeze and thaw it). Returns
    /// the time it was sent; an error if hbd does not run there.
    pub fn signal_hbd(&mut self, node: Node, signal: nix::sys::signal::Signal) -> Result<u64> {
        let Some(pid) = self.hbd_pid(node) else {
            bail!("hbd does not run on {node}");
        };
        let at = monotonic_ns();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(at)
    }

    /// SIGTERMs hbd on `node` and waits up to `timeout` for it to exit (a clean stop).
    pub fn stop_hbd(&mut self, node: Node, timeout: Duration) -> Result<u64> {
        let at = monotonic_ns();
        let Some(pid) = self.hbd_pid(node) else {
            return Ok(at);
        };
        let pid_t = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGTERM)?;
        self.note(at, format!("hbd on {node} sent SIGTERM (clean stop)"));
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.hbd_pid(node).is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.hbd_pid(node).is_some() {
            bail!("hbd on {node} (pid {pid}) still runs {timeout:?} after SIGTERM");
        }
        self.rec.hbd_notes[node.index()] = "stopped (SIGTERM)".into();
        self.save_state()?;
        Ok(at)
    }

    /// The node dies, as a machine that loses power: all its links go down at the same instant
    /// ([`Lab::pull_all_cables`]), then its hbd is SIGKILLed, then the lab removes the VIP the
    /// dead node's namespace still has configured (a powered-off machine holds no address; the
    /// namespace only outlives the "machine" because the lab reuses it for the reboot). Returns
    /// the time just before the links went down: from then on the node neither sends heartbeats
    /// nor answers for any address.
    ///
    /// The order matters. Killing hbd first and pulling the cables one `ip` command each
    /// afterwards left a window in which the node sent no more heartbeats but its kernel still
    /// answered for the VIP on a live link: when spawning the `ip` commands took longer than the
    /// peer's deadtime (a loaded machine), the peer took over inside that window and both nodes
    /// really held the address on a running interface: a dual owner the lab made, not hbd.
    pub fn kill_node(&mut self, node: Node) -> Result<u64> {
        let at = self.pull_all_cables(node)?;
        self.kill_hbd(node)?;
        self.del_vip(node)?;
        Ok(at)
    }

    /// The node comes back as after a reboot: its Apache stopped, VIP gone and neighbour table
    /// empty (what a reboot leaves), links up, hbd started (with [`ResourceBehaviour::IpOnly`], Apache is started
    /// again before hbd, as a boot would). Returns the time hbd was started.
    pub fn restart_node(&mut self, node: Node) -> Result<u64> {
        // A rebooted machine runs no Apache and holds no VIP.
        let _ = self.httpd(node, "stop")?;
        self.del_vip(node)?;
        self.start_always_on_httpd(node)?;
        for l in 1..=self.rec.spec.links {
            self.set_link(node, l, true)?;
        }
        self.forget_neighbours(node)?;
        let at = monotonic_ns();
        self.note(
            at,
            format!("{node} rebooted: no VIP, links up, starting hbd"),
        );
        self.start_hbd(node)?;
        Ok(at)
    }

    /// Makes `node`'s resource script fail every `op` (`start` or `stop`) from now on
    /// (`fail = true`), or behave again. Returns the time it took effect.
    pub fn set_resource_fault(&self, node: Node, op: ResourceOp, fail: bool) -> Result<u64> {
        let flag = self.node_dir(node).join(match op {
            ResourceOp::Start => "fail-start",
            ResourceOp::Stop => "fail-stop",
        });
        if fail {
            fs::write(&flag, b"")?;
        } else if let Err(e) = fs::remove_file(&flag)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("removing {}", flag.display()));
        }
        Ok(monotonic_ns())
    }

    /// Makes `node`'s resource script wait `delay` before it starts Apache (a slow start, as
    /// a database's), or not (`None`).
    pub fn set_slow_start(&self, node: Node, delay: Option<Duration>) -> Result<()> {
        let flag = self.node_dir(node).join("slow-start");
        match delay {
            Some(d) => fs::write(&flag, format!("{:.3}\n", d.as_secs_f64()))
                .with_context(|| format!("writing {}", flag.display())),
            None => match fs::remove_file(&flag) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", flag.display()))
                }
                _ => Ok(()),
            },
        }
    }

    /// Runs `resource.d/httpd ACTION` on `node` (as hbd would) and returns its output; exit status
    /// 0 is success (`status`: 0 running, 3 stopped).
    pub fn httpd(&self, node: Node, action: &str) -> Result<Output> {
        let script = self.httpd_script(node);
        self.node_command(node, &script, &[action.to_owned()])
            .output()
            .with_context(|| format!("running {} {action}", script.display()))
    }

    /// Runs the `hbctl` binary on `node`: `hbctl --run-dir RUN_DIR ARGS`.
    pub fn hbctl(&self, node: Node, args: &[&str]) -> Result<Output> {
        let bin = self
            .rec
            .spec
            .hbctl_path
            .clone()
            .context("no hbctl binary in the lab spec")?;
        self.tool(node, &bin, args)
    }

    /// Runs the `hbstat` binary on `node`: `hbstat --run-dir RUN_DIR ARGS`.
    pub fn hbstat(&self, node: Node, args: &[&str]) -> Result<Output> {
        let bin = self
            .rec
            .spec
            .hbstat_path
            .clone()
            .context("no hbstat binary in the lab spec")?;
        self.tool(node, &bin, args)
    }

    fn tool(&self, node: Node, bin: &Path, args: &[&str]) -> Result<Output> {
        let mut all = vec![
            "--run-dir".to_owned(),
            self.run_dir(node).display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.node_command(node, bin, &all)
            .output()
            .with_context(|| format!("running {} on {node}", bin.display()))
    }
}
