//! The lab's etcd (Debian's etcd-server) for [`LabSpec::arbiter`](super::LabSpec::arbiter): it
//! runs in the client's namespace on the LAN (`http://10.213.y.10:2379`), so every node reaches it
//! while a [`Lab::partition`] cuts only their traffic to each other; [`Lab::cut_etcd`] cuts one
//! node from it, [`Lab::kill_etcd`] stops it. [`Lab::make_etcd_tls`] and [`Lab::start_etcd_tls`]
//! run it over https instead (a test CA made with `openssl`, client certificates required),
//! [`Lab::use_arbiter_tls`] points a node's `ha.cf` at it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{ETCD_PORT, Lab, Node, cmd_status};
use crate::monotonic_ns;

/// TLS files for etcd made by [`Lab::make_etcd_tls`] (PEM, under the lab's dir `tls/`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The test CA's certificate: it signed the server's and the client's.
    pub ca: PathBuf,
    /// Another CA's certificate, which signed neither (a wrong `arbiter_ca`).
    pub wrong_ca: PathBuf,
    /// The server's certificate (SAN: the client namespace's address) and key.
    pub server_cert: PathBuf,
    /// See `server_cert`.
    pub server_key: PathBuf,
    /// The nodes' client certificate (extended key usage clientAuth) and key.
    pub client_cert: PathBuf,
    /// See `client_cert`.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A P-256 key and a self-signed CA certificate `NAME.pem` / `NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> Result<()> {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "[req]\ndistinguished_name = dn\nx509_extensions = ca\n[dn]\n[ca]\n\
         basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )?;
    let pem = format!("{name}.pem");
    req_new_key(
        dir,
        name,
        &["-x509", "-config", &ext, "-out", &pem, "-days", "2"],
    )
}

/// `openssl req` with a new P-256 key `NAME.key` (unencrypted) and the subject `CN=hb test NAME`;
/// `args` say what it writes (a self-signed certificate, or a request).
fn req_new_key(dir: &Path, name: &str, args: &[&str]) -> Result<()> {
    let key = format!("{name}.key");
    let subj = format!("/CN=hb test {name}");
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subj,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all)
}

/// A P-256 key `NAME.key` and certificate `NAME.pem` signed by `ca` with extensions `ext`.
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str) -> Result<()> {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext)?;
    req_new_key(dir, name, &["-out", &format!("{name}.csr")])?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &format!("{}", fastrand::u32(1..)),
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ],
    )
}

impl Lab {
    /// etcd's client URL (plain http).
    pub fn etcd_url(&self) -> String {
        format!("http://{}:{ETCD_PORT}", self.client_addr())
    }

    /// etcd's client URL when started with [`Lab::start_etcd_tls`].
    pub fn etcd_https_url(&self) -> String {
        format!("https://{}:{ETCD_PORT}", self.client_addr())
    }

    /// Makes a test CA, etcd's server certificate (SAN: the client namespace's address), a
    /// client certificate, and an unrelated CA, with `openssl` under the lab's dir `tls/`.
    pub fn make_etcd_tls(&self) -> Result<EtcdTls> {
        let dir = self.rec.dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        make_ca(&dir, "ca")?;
        make_ca(&dir, "wrong-ca")?;
        make_leaf(
            &dir,
            "server",
            "ca",
            &format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = serverAuth\nsubjectAltName = IP:{}\n",
                self.client_addr()
            ),
        )?;
        make_leaf(
            &dir,
            "client",
            "ca",
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n",
        )?;
        Ok(EtcdTls {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        })
    }

    /// Points `node`'s `ha.cf` at etcd over https ([`Lab::start_etcd_tls`]) with `ca` as its
    /// `arbiter_ca` and the client certificate of `tls`; takes effect when hbd (re)starts.
    pub fn use_arbiter_tls(&self, node: Node, tls: &EtcdTls, ca: &Path) -> Result<()> {
        let path = self.config_dir(node).join("ha.cf");
        let text = std::fs::read_to_string(&path)?;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("arbiter etcd ") || line.starts_with("arbiter_ca ") {
                continue;
            }
            if line.starts_with("arbiter_cert ") || line.starts_with("arbiter_key ") {
                continue;
            }
            out += line;
            out += "\n";
        }
        out += &format!("arbiter etcd {}\n", self.etcd_https_url());
        out += &format!("arbiter_ca {}\n", ca.display());
        out += &format!("arbiter_cert {}\n", tls.client_cert.display());
        out += &format!("arbiter_key {}\n", tls.client_key.display());
        std::fs::write(&path, out)?;
        Ok(())
    }

    /// Starts etcd in the client's namespace (data under the lab's dir) and waits until it
    /// accepts connections. Returns when it did.
    pub fn start_etcd(&mut self) -> Result<u64> {
        self.start_etcd_with(None)
    }

    /// Like [`Lab::start_etcd`] (replacing a running etcd), serving https only
    /// ([`Lab::etcd_https_url`]) with `tls`'s server certificate and requiring client
    /// certificates signed by its CA; its data in a directory of its own.
    pub fn start_etcd_tls(&mut self, tls: &EtcdTls) -> Result<u64> {
        self.start_etcd_with(Some(tls))
    }

    fn start_etcd_with(&mut self, tls: Option<&EtcdTls>) -> Result<u64> {
        if let Some(mut old) = self.etcd.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let ns = self.client_netns();
        let url = match tls {
            Some(_) => self.etcd_https_url(),
            None => self.etcd_url(),
        };
        let data = self
            .rec
            .dir
            .join(if tls.is_some() { "etcd-tls" } else { "etcd" });
        let log = std::fs::File::create(self.rec.dir.join("etcd.log"))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns, "etcd", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ]);
        if let Some(t) = tls {
            command
                .arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = command
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
        self.note(at, format!("etcd up at {url}"));
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
