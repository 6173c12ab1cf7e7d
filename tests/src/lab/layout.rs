//! Names, addresses and paths of a lab (namespaces, node directories, the VIP) and its
//! journal of what the lab did ([`Lab::note`], [`Lab::events`]). Reads nothing from the system.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use super::{
    CLIENT_HOST, HB_OCTET, LAN_OCTET, Lab, LabEvent, LabRecord, LabSpec, Node, STATE_DIR, VIP_HOST,
    first_nodes,
};

pub(super) fn state_path(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

pub(super) fn lab_dir(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    std::env::temp_dir().join(format!("hb-lab-{name}"))
}

/// Names of the namespaces a lab with `prefix` may have: bridge, n1, n2, n3 (three-node labs
/// only), client.
pub(super) fn namespace_names(prefix: &str) -> [String; 5] {
    [
        format!("{prefix}hblab-br"),
        format!("{prefix}n1"),
        format!("{prefix}n2"),
        format!("{prefix}n3"),
        format!("{prefix}client"),
    ]
}

impl Lab {
    /// The lab's spec.
    pub fn spec(&self) -> &LabSpec {
        &self.rec.spec
    }

    /// The lab's nodes in `node` order: `n1`, `n2` (and `n3` with [`LabSpec::nodes`] 3).
    pub fn nodes(&self) -> &'static [Node] {
        first_nodes(self.rec.spec.nodes)
    }

    /// The lab's nodes other than `node`, in `node` order (in a two-node lab, [`Node::other`]).
    pub fn peers(&self, node: Node) -> Vec<Node> {
        self.nodes()
            .iter()
            .copied()
            .filter(|&n| n != node)
            .collect()
    }

    /// Records `what` at `at_ns` in the lab's journal ([`Lab::events`]).
    pub fn note(&self, at_ns: u64, what: impl Into<String>) {
        let ev = LabEvent {
            at_ns,
            what: what.into(),
        };
        match self.events.lock() {
            Ok(mut e) => e.push(ev),
            Err(p) => p.into_inner().push(ev),
        }
    }

    /// Everything the lab did to the nodes and the network since it was built, oldest first.
    pub fn events(&self) -> Vec<LabEvent> {
        match self.events.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What the lab made.
    pub fn record(&self) -> &LabRecord {
        &self.rec
    }

    /// The VIP (`10.213.y.100`).
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, LAN_OCTET, self.rec.spec.subnet, VIP_HOST)
    }

    /// A node's address on link `link` (1 or 2).
    pub fn node_addr(&self, node: Node, link: u8) -> Ipv4Addr {
        let second = if link == 2 { HB_OCTET } else { LAN_OCTET };
        Ipv4Addr::new(10, second, self.rec.spec.subnet, node.host())
    }

    /// The client's address.
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, LAN_OCTET, self.rec.spec.subnet, CLIENT_HOST)
    }

    /// A node's namespace name.
    pub fn netns(&self, node: Node) -> String {
        format!("{}{}", self.rec.spec.prefix, node.name())
    }

    /// The client's namespace name.
    pub fn client_netns(&self) -> String {
        format!("{}client", self.rec.spec.prefix)
    }

    /// The bridges' namespace name.
    pub fn bridge_netns(&self) -> String {
        format!("{}hblab-br", self.rec.spec.prefix)
    }

    /// A node's directory.
    pub fn node_dir(&self, node: Node) -> PathBuf {
        self.rec.dir.join(node.name())
    }

    /// A node's config dir (`ha.cf`, `haresources`, `authkeys`, `resource.d/`).
    pub fn config_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("ha.d")
    }

    /// A node's state dir.
    pub fn state_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("state")
    }

    /// A node's run dir.
    pub fn run_dir(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("run")
    }

    /// A node's `hbd.log` (hbd's stdout and stderr).
    pub fn log_path(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("hbd.log")
    }

    /// A node's resource script (`resource.d/httpd`).
    pub fn httpd_script(&self, node: Node) -> PathBuf {
        self.config_dir(node).join("resource.d").join("httpd")
    }
}
