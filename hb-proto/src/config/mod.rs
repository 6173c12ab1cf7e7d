//! Heartbeat-compatible configuration: `ha.cf`, `haresources`, `authkeys`.
//!
//! [`model`] holds the typed configuration the rest of hb consumes. The parsers take bytes
//! ([`parse_ha_cf`], [`parse_haresources`], [`parse_authkeys`]) and report every problem as a
//! [`Diagnostic`] (`PATH:LINE: message`); [`load`] reads the three files from a configuration
//! directory, checks them against each other and against this node's name, and returns either
//! the whole [`Config`] or every problem found in all three files.

pub mod authkeys;
mod diag;
pub mod ha_cf;
pub mod haresources;
pub mod model;
pub mod reload;
pub mod time;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

pub use authkeys::{bad_permissions_message, check_keyfile_mode, parse_authkeys};
pub use diag::Parsed;
pub use ha_cf::parse_ha_cf;
pub use haresources::{find_script, parse_haresources, parse_haresources_with};
pub use model::*;
pub use reload::{LiveChange, ReloadPlan, Timings, keep_running_ping, plan_reload};
pub use time::{TimeError, TimeValue, parse_time};

/// The default configuration directory.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/ha.d";
/// The second place scripts are looked up, after `<config-dir>/resource.d`.
pub const INIT_D: &str = "/etc/init.d";

/// What [`load`] reads and for which node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Directory holding `ha.cf`, `haresources` and `authkeys` (default `/etc/ha.d`).
    pub config_dir: PathBuf,
    /// This node's name (default `uname -n`); must be one of `ha.cf`'s `node` names
    /// (compared without case, as Heartbeat folds node names to lower case).
    pub node_name: String,
    /// Where script resources are looked up, first match wins (default
    /// `[<config_dir>/resource.d, /etc/init.d]`).
    pub script_dirs: Vec<PathBuf>,
    /// This machine's own addresses (the driver reads them; default none). A `ucast` medium
    /// to one of them is not a link and is left out with a warning: Heartbeat ignores ucast
    /// directives that go to the local machine, so that one `ha.cf` serves every node.
    pub local_addrs: Vec<IpAddr>,
}

impl LoadOptions {
    /// Options with the default script directories for `config_dir`.
    pub fn new(config_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        let config_dir = config_dir.into();
        let script_dirs = default_script_dirs(&config_dir);
        Self {
            config_dir,
            node_name: node_name.into(),
            script_dirs,
            local_addrs: Vec::new(),
        }
    }
}

/// Leaves out the `ucast` media whose address is one of `local` (see
/// [`LoadOptions::local_addrs`]), each with a warning; an error if no medium is left.
fn drop_local_ucast(p: &mut ha_cf::HaCfParse, local: &[IpAddr]) {
    let mut first_dropped = None;
    let mut kept = Vec::new();
    let mut kept_lines = Vec::new();
    let media = std::mem::take(&mut p.ha_cf.media);
    let lines = std::mem::take(&mut p.media_lines);
    for (m, line) in media.into_iter().zip(lines) {
        if let Media::Ucast { iface, addr } = &m
            && local.contains(addr)
        {
            p.diags.warn(
                line,
                format!(
                    "ucast {iface} {addr}: an address of this machine; ignored, as Heartbeat \
                     does (one ha.cf can serve every node)"
                ),
            );
            first_dropped.get_or_insert(line);
            continue;
        }
        kept.push(m);
        kept_lines.push(line);
    }
    if let Some(line) = first_dropped
        && kept.is_empty()
    {
        p.diags.error(
            line,
            "no heartbeat medium left: every ucast line names an address of this machine; add \
             one with the peer's address",
        );
    }
    p.ha_cf.media = kept;
    p.media_lines = kept_lines;
}

/// `[<config_dir>/resource.d, /etc/init.d]`.
pub fn default_script_dirs(config_dir: &Path) -> Vec<PathBuf> {
    vec![config_dir.join("resource.d"), PathBuf::from(INIT_D)]
}

fn read(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    std::fs::read(path).map_err(|e| Diagnostic {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    })
}

/// Reads and checks `ha.cf`, `haresources` and `authkeys` in `opts.config_dir`.
///
/// Returns every problem in all three files (and between them: the local node must be a
/// `node`, every preferred node of `haresources` must be a `node`, the key file must not be
/// readable by group or others), not just the first. The only I/O is reading those three
/// files, the key file's metadata and the metadata of the scripts named in `haresources`.
pub fn load(opts: &LoadOptions) -> Result<Config, Vec<Diagnostic>> {
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut warnings: Vec<Diagnostic> = Vec::new();
    let local = opts.node_name.to_ascii_lowercase();

    // ha.cf
    let ha_cf_path = opts.config_dir.join("ha.cf");
    let ha_cf = match read(&ha_cf_path) {
        Ok(bytes) => {
            let mut p = ha_cf::parse_ha_cf_inner(&ha_cf_path, &bytes);
            if !p.empty && local.is_empty() {
                p.diags
                    .error(0, "this node has no name (empty --node-name)");
            } else if !p.empty && !p.ha_cf.nodes.contains(&local) {
                if p.ha_cf.autojoin.value == "any" {
                    // Heartbeat adds the local node when autojoin is any.
                    p.diags.warn(
                        0,
                        format!("this node '{local}' is not a node; added (autojoin any)"),
                    );
                    p.ha_cf.nodes.push(local.clone());
                } else {
                    let listed = if p.ha_cf.nodes.is_empty() {
                        "none".to_string()
                    } else {
                        p.ha_cf.nodes.join(", ")
                    };
                    p.diags.error(
                        0,
                        format!(
                            "this node '{local}' is not in any node line (nodes: {listed}); \
                             node names must match uname -n"
                        ),
                    );
                }
            }
            drop_local_ucast(&mut p, &opts.local_addrs);
            errors.append(&mut p.diags.errors);
            warnings.append(&mut p.diags.warnings);
            Some(p.ha_cf)
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };

    // haresources
    let har_path = opts.config_dir.join("haresources");
    let groups = match read(&har_path) {
        Ok(bytes) => {
            let searched = opts
                .script_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let resolve = |name: &str| find_script(name, &opts.script_dirs);
            let (groups, preferred, mut d) =
                haresources::parse_inner(&har_path, &bytes, &resolve, &searched);
            if let Some(h) = &ha_cf
                && h.autojoin.value == "none"
                && !h.nodes.is_empty()
            {
                for (node, line) in &preferred {
                    if !h.nodes.contains(node) {
                        d.error(
                            *line,
                            format!(
                                "preferred node '{node}' is not a node in {}",
                                ha_cf_path.display()
                            ),
                        );
                    }
                }
            }
            errors.append(&mut d.errors);
            warnings.append(&mut d.warnings);
            groups
        }
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };

    // authkeys
    let ak_path = opts.config_dir.join("authkeys");
    let authkeys = match read(&ak_path) {
        Ok(bytes) => {
            use std::os::unix::fs::PermissionsExt as _;
            match std::fs::metadata(&ak_path) {
                Ok(m) => {
                    if let Err(e) = check_keyfile_mode(&ak_path, m.permissions().mode()) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(Diagnostic {
                    path: ak_path.clone(),
                    line: 0,
                    message: format!("cannot read metadata: {e}"),
                }),
            }
            let (keys, mut d) = authkeys::parse_inner(&ak_path, &bytes);
            errors.append(&mut d.errors);
            warnings.append(&mut d.warnings);
            Some(keys)
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };

    match (ha_cf, authkeys) {
        (Some(ha_cf), Some(authkeys)) if errors.is_empty() => Ok(Config {
            config_dir: opts.config_dir.clone(),
            local_node: local,
            ha_cf,
            groups,
            authkeys,
            warnings,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
