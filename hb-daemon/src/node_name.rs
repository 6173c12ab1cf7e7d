//! This machine's node name as Heartbeat takes it: `uname -n`, lower-cased (Heartbeat folds
//! node names, and ha.cf's `node` lines, to lower case). The one lookup `hbd` and `hbd --check`
//! use when `--node-name` is not given.

/// `uname -n`, lower-cased.
pub fn local_node_name() -> std::io::Result<String> {
    let name = nix::unistd::gethostname().map_err(std::io::Error::from)?;
    name.into_string().map(|n| n.to_lowercase()).map_err(|n| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("node name {n:?} is not UTF-8"),
        )
    })
}
