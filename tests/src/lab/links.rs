//! Links and loss: cables pulled and plugged back at the bridge, neighbour tables flushed,
//! iptables rules inside a node (partitions, random heartbeat loss).

use std::fs;

use anyhow::{Context as _, Result};

use super::{Lab, Node, cmd};
use crate::monotonic_ns;

impl Lab {
    /// Sets link `link` (1 or 2) of `node` down or up at the bridge (the cable is pulled or
    /// plugged back: the node's `ethN` loses or regains carrier). Returns the time just before
    /// the `ip` command (the change takes effect inside it).
    pub fn set_link(&self, node: Node, link: u8, up: bool) -> Result<u64> {
        let port = format!("{}-e{link}", node.name());
        cmd(
            "ip",
            &[
                "-n",
                &self.bridge_netns(),
                "link",
                "set",
                &port,
                if up { "up" } else { "down" },
            ],
        )?;
        let at = monotonic_ns();
        let state = if up { "plugged back" } else { "pulled" };
        self.note(at, format!("{node} eth{link} cable {state}"));
        Ok(at)
    }

    /// Empties `node`'s neighbour (ARP/NDP) table, as a reboot does. A node that "reboots" in
    /// the lab keeps its network namespace, and with it neighbour entries left INCOMPLETE while
    /// its links were down (by TCP retransmissions of connections it had when it died): such an
    /// entry sends its next ARP probe only when its retransmit timer fires (up to 1 s), which
    /// would delay the node's first answers after it comes back by that much.
    pub fn forget_neighbours(&self, node: Node) -> Result<()> {
        cmd("ip", &["-n", &self.netns(node), "neigh", "flush", "all"])?;
        Ok(())
    }

    /// The client forgets its ARP entry for the VIP (it asks again at its next request). After
    /// a false takeover that the preferred node outlived (it never left MASTER, so it sent no
    /// gratuitous ARP, as keepalived does with no GARP refresh), the entry names the node that
    /// gave the address back until it goes stale and fails: up to about a minute.
    pub fn forget_vip_neighbour(&self) -> Result<()> {
        let vip = self.vip().to_string();
        cmd(
            "ip",
            &["-n", &self.client_netns(), "neigh", "flush", "to", &vip],
        )?;
        let at = monotonic_ns();
        self.note(at, format!("client forgot its ARP entry for {vip}"));
        Ok(())
    }

    /// Pulls all of `node`'s cables at the same instant: one `ip -batch` in the bridges'
    /// namespace sets every bridge port of the node down. Returns the time just before the
    /// command ran (the links go down within it).
    pub fn pull_all_cables(&self, node: Node) -> Result<u64> {
        let batch: String = (1..=self.rec.spec.links)
            .map(|l| format!("link set {}-e{l} down\n", node.name()))
            .collect();
        let path = self.node_dir(node).join("links-down.batch");
        fs::write(&path, batch).with_context(|| format!("writing {}", path.display()))?;
        let at = monotonic_ns();
        cmd(
            "ip",
            &[
                "-n",
                &self.bridge_netns(),
                "-batch",
                &path.display().to_string(),
            ],
        )?;
        let links: Vec<String> = (1..=self.rec.spec.links)
            .map(|l| format!("eth{l}"))
            .collect();
        self.note(
            at,
            format!("{node} died: cables of {} pulled at once", links.join(", ")),
        );
        Ok(at)
    }

    /// Adds an iptables rule inside `node`'s namespace (`iptables ARGS`); the rule goes away
    /// with the namespace.
    pub fn iptables(&self, node: Node, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", "", "iptables", "-w"];
        let ns = self.netns(node);
        all[2] = &ns;
        all.extend_from_slice(args);
        cmd("ip", &all).map(|_| ())
    }

    fn partition_rules(&self, node: Node) -> Vec<Vec<String>> {
        let mut rules = Vec::new();
        for l in 1..=self.rec.spec.links {
            for peer in self.peers(node) {
                let peer = self.node_addr(peer, l).to_string();
                rules.push(vec!["INPUT".into(), "-s".into(), peer.clone()]);
                rules.push(vec!["OUTPUT".into(), "-d".into(), peer]);
            }
            // Broadcast heartbeats leave with no peer address; drop them at the sender, since
            // a receiver-side rule acts after XDP has seen the packet.
            rules.push(vec![
                "OUTPUT".into(),
                "-o".into(),
                format!("eth{l}"),
                "-p".into(),
                "udp".into(),
                "--dport".into(),
                "694".into(),
            ]);
        }
        rules
    }

    fn partition_rules_apply(&self, op: &str) -> Result<u64> {
        for &node in self.nodes() {
            for rule in self.partition_rules(node) {
                let mut args: Vec<&str> = vec![op];
                args.extend(rule.iter().map(String::as_str));
                args.extend(["-j", "DROP"]);
                self.iptables(node, &args)?;
            }
        }
        Ok(monotonic_ns())
    }

    /// Partitions the nodes from each other on every link with iptables inside every node
    /// (traffic between their addresses and all outgoing heartbeats on UDP 694 dropped; with
    /// three nodes, each is cut off from both others); the client still reaches every node.
    /// Returns the time it took effect.
    pub fn partition(&self) -> Result<u64> {
        let at = self.partition_rules_apply("-A")?;
        let names: Vec<&str> = self.nodes().iter().map(|n| n.name()).collect();
        self.note(
            at,
            format!(
                "partition: {} cut off from each other (iptables)",
                names.join(" and ")
            ),
        );
        Ok(at)
    }

    /// Heals [`Lab::partition`]. Returns the time it took effect.
    pub fn heal(&self) -> Result<u64> {
        let at = self.partition_rules_apply("-D")?;
        self.note(at, "partition healed");
        Ok(at)
    }

    /// Drops each heartbeat `node` sends with probability `p` (on the sender, see
    /// [`Lab::partition`]); `on = false` removes the rule.
    pub fn heartbeat_loss(&self, node: Node, p: f64, on: bool) -> Result<()> {
        self.random_loss(node, &["-p", "udp", "--dport", "694"], p, on)
    }

    /// Drops each packet `node` sends that `matcher` (iptables match arguments, e.g. `-p 112`)
    /// selects, with probability `p` (`iptables -m statistic` on the sender's OUTPUT);
    /// `on = false` removes the rule.
    pub fn random_loss(&self, node: Node, matcher: &[&str], p: f64, on: bool) -> Result<()> {
        let p = format!("{p}");
        let mut args = vec![if on { "-A" } else { "-D" }, "OUTPUT"];
        args.extend_from_slice(matcher);
        args.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability", &p]);
        args.extend_from_slice(&["-j", "DROP"]);
        self.iptables(node, &args)?;
        let what = if on { "on" } else { "off" };
        self.note(
            monotonic_ns(),
            format!(
                "{node}: random loss {p} of sent {} {what}",
                matcher.join(" ")
            ),
        );
        Ok(())
    }
}
