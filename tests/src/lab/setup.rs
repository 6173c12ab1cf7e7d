//! Set-up and teardown: [`Lab::up`] builds the namespaces, bridges and veths (cleaning leftovers
//! of a lab with the same prefix first) and starts the daemons; [`Lab::down`] (also on drop) and
//! [`cleanup`] remove everything a lab made; the state file that lets a later process find it.

use std::{fs, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::{
    CLIENT_HOST, HB_OCTET, LAN_OCTET, Lab, LabRecord, LabSpec, Node, ResourceBehaviour, STATE_DIR,
    cmd, cmd_status,
    layout::{lab_dir, namespace_names, state_path},
    ns_exists,
};

/// Pids of every process in namespace `name` (`ip netns pids`).
fn ns_pids(name: &str) -> Vec<i32> {
    cmd_status("ip", &["netns", "pids", name])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes everything a lab with `prefix` made, whether or not its state file survived: kills
/// every process in its namespaces, deletes the namespaces, its temp dir and its state file.
/// Returns what it removed, one line per item.
pub fn cleanup(prefix: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut names: Vec<String> = namespace_names(prefix).into();
    let state = state_path(prefix);
    let mut dirs = vec![lab_dir(prefix)];
    if let Ok(text) = fs::read_to_string(&state)
        && let Ok(rec) = serde_json::from_str::<LabRecord>(&text)
    {
        for ns in rec.namespaces {
            if !names.contains(&ns) {
                names.push(ns);
            }
        }
        if !dirs.contains(&rec.dir) {
            dirs.push(rec.dir);
        }
    }
    // Processes first (hbd, Apache, anything else started inside), then the namespaces.
    for ns in names.iter().filter(|n| ns_exists(n)) {
        for _ in 0..50 {
            let pids = ns_pids(ns);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    removed.push(format!("killed pid {pid} in namespace {ns}"));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for ns in names.iter().filter(|n| ns_exists(n)) {
        cmd("ip", &["netns", "del", ns])?;
        removed.push(format!("deleted namespace {ns}"));
    }
    for dir in dirs.iter().filter(|d| d.exists()) {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        removed.push(format!("removed {}", dir.display()));
    }
    if state.exists() {
        fs::remove_file(&state).with_context(|| format!("removing {}", state.display()))?;
        removed.push(format!("removed {}", state.display()));
    }
    Ok(removed)
}

impl Lab {
    /// Builds the lab (cleaning leftovers of a lab with the same prefix first) and starts hbd
    /// on every node when `spec.hbd_path` is set. A daemon that exits at once does not fail
    /// `up`: [`Lab::status`] reports it.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        if spec.links != 1 && spec.links != 2 {
            bail!("a lab has 1 or 2 links, not {}", spec.links);
        }
        if spec.nodes != 2 && spec.nodes != 3 {
            bail!("a lab has 2 or 3 nodes, not {}", spec.nodes);
        }
        let leftovers = cleanup(&spec.prefix)?;
        for l in &leftovers {
            eprintln!("[lab] leftover: {l}");
        }
        let dir = lab_dir(&spec.prefix);
        let mut lab = Lab {
            rec: LabRecord {
                spec,
                dir,
                namespaces: Vec::new(),
                hbd_pids: [None; 3],
                hbd_notes: Default::default(),
            },
            children: [None, None, None],
            etcd: None,
            torn_down: false,
            events: std::sync::Mutex::new(Vec::new()),
        };
        // On any error below, dropping `lab` removes what was made so far.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        fs::create_dir_all(&self.rec.dir)?;
        for &node in self.nodes() {
            self.write_node_files(node)?;
        }
        let br = self.bridge_netns();
        let client = self.client_netns();
        let mut namespaces = vec![br.clone()];
        namespaces.extend(self.nodes().iter().map(|&n| self.netns(n)));
        namespaces.push(client.clone());
        for ns in &namespaces {
            cmd("ip", &["netns", "add", ns])?;
            self.rec.namespaces.push(ns.clone());
            self.save_state()?;
            cmd("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        for l in 1..=self.rec.spec.links {
            let bridge = format!("br{l}");
            cmd("ip", &["-n", &br, "link", "add", &bridge, "type", "bridge"])?;
            cmd("ip", &["-n", &br, "link", "set", &bridge, "up"])?;
        }
        let y = self.rec.spec.subnet;
        // (namespace, bridge port, link, address): every node on the LAN, the client on the
        // LAN, and with two links every node on the heartbeat-only link.
        let mut ports: Vec<(String, String, u8, String)> = self
            .nodes()
            .iter()
            .map(|&n| {
                (
                    self.netns(n),
                    format!("{n}-e1"),
                    1,
                    format!("10.{LAN_OCTET}.{y}.{}/24", n.host()),
                )
            })
            .collect();
        ports.push((
            client,
            "cl-e1".to_owned(),
            1,
            format!("10.{LAN_OCTET}.{y}.{CLIENT_HOST}/24"),
        ));
        if self.rec.spec.links == 2 {
            for &n in self.nodes() {
                ports.push((
                    self.netns(n),
                    format!("{n}-e2"),
                    2,
                    format!("10.{HB_OCTET}.{y}.{}/24", n.host()),
                ));
            }
        }
        for (ns, port, link, addr) in &ports {
            let ifname = format!("eth{link}");
            cmd(
                "ip",
                &[
                    "-n", &br, "link", "add", port, "type", "veth", "peer", "name", &ifname,
                    "netns", ns,
                ],
            )?;
            cmd(
                "ip",
                &[
                    "-n",
                    &br,
                    "link",
                    "set",
                    port,
                    "master",
                    &format!("br{link}"),
                    "up",
                ],
            )?;
            cmd("ip", &["-n", ns, "addr", "add", addr, "dev", &ifname])?;
            cmd("ip", &["-n", ns, "link", "set", &ifname, "up"])?;
        }
        if self.rec.spec.arbiter {
            self.start_etcd()?;
        }
        for &node in self.nodes() {
            self.start_always_on_httpd(node)?;
            self.start_hbd(node)?;
        }
        self.save_state()
    }

    /// With [`ResourceBehaviour::IpOnly`], starts `node`'s Apache (it runs outside hbd's
    /// control); otherwise does nothing.
    pub(super) fn start_always_on_httpd(&self, node: Node) -> Result<()> {
        if self.rec.spec.resource != ResourceBehaviour::IpOnly {
            return Ok(());
        }
        let out = self.httpd(node, "start")?;
        if !out.status.success() {
            bail!(
                "starting Apache on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub(super) fn save_state(&self) -> Result<()> {
        fs::create_dir_all(STATE_DIR)?;
        let path = state_path(&self.rec.spec.prefix);
        let text = serde_json::to_string_pretty(&self.rec)?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Leaves the lab running after this process exits (for `cargo xtask lab up`): the state
    /// file stays, and [`cleanup`] removes the lab later.
    pub fn detach(mut self) -> Result<LabRecord> {
        self.save_state()?;
        self.torn_down = true;
        // The children keep running; their handles are just forgotten.
        for c in &mut self.children {
            drop(c.take());
        }
        Ok(self.rec.clone())
    }

    /// Removes everything the lab made (see [`cleanup`]); idempotent.
    pub fn down(&mut self) -> Result<Vec<String>> {
        if self.torn_down {
            return Ok(Vec::new());
        }
        for c in self
            .children
            .iter_mut()
            .chain(std::iter::once(&mut self.etcd))
        {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let removed = cleanup(&self.rec.spec.prefix)?;
        self.torn_down = true;
        Ok(removed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("[lab] tearing down {:?}: {e:#}", self.rec.spec.prefix);
        }
    }
}
