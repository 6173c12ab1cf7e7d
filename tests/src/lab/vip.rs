//! The VIP by hand: added, removed and looked for on a node, the node's MAC, a gratuitous ARP,
//! and a resource group moved by hand as hbd would ([`Lab::move_by_hand`]).

use anyhow::{Context as _, Result, bail};

use super::{Lab, Node, cmd, cmd_status, probe};
use crate::monotonic_ns;

impl Lab {
    /// Adds the VIP on `node`'s `eth1` by hand (already present is fine).
    pub fn add_vip(&self, node: Node) -> Result<u64> {
        let vip = format!("{}/24", self.vip());
        let out = cmd_status(
            "ip",
            &["-n", &self.netns(node), "addr", "add", &vip, "dev", "eth1"],
        )?;
        if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("exists") {
            bail!(
                "adding {vip} on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let at = monotonic_ns();
        self.note(at, format!("lab added the VIP on {node} by hand"));
        Ok(at)
    }

    /// Removes the VIP from `node`'s `eth1` by hand (absent is fine).
    pub fn del_vip(&self, node: Node) -> Result<u64> {
        if self.holds_vip(node)? {
            let vip = format!("{}/24", self.vip());
            cmd(
                "ip",
                &["-n", &self.netns(node), "addr", "del", &vip, "dev", "eth1"],
            )?;
            let at = monotonic_ns();
            self.note(at, format!("lab removed the VIP from {node}"));
            return Ok(at);
        }
        Ok(monotonic_ns())
    }

    /// Whether `node` holds the VIP on `eth1`.
    pub fn holds_vip(&self, node: Node) -> Result<bool> {
        let out = cmd(
            "ip",
            &[
                "-n",
                &self.netns(node),
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "eth1",
            ],
        )?;
        let needle = format!(" {}/", self.vip());
        Ok(String::from_utf8_lossy(&out.stdout).contains(&needle))
    }

    /// The MAC address of `node`'s `ethN`.
    pub fn node_mac(&self, node: Node, link: u8) -> Result<[u8; 6]> {
        let out = cmd(
            "ip",
            &[
                "-n",
                &self.netns(node),
                "-o",
                "link",
                "show",
                "dev",
                &format!("eth{link}"),
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_once("link/ether ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(probe::parse_mac)
            .with_context(|| format!("no MAC in `{}`", text.trim()))
    }

    /// Sends one gratuitous ARP for the VIP from `node`'s `eth1`.
    pub fn send_garp(&self, node: Node) -> Result<u64> {
        probe::send_garp(&self.netns(node), "eth1", self.vip())
    }

    /// Moves the resource group by hand, as hbd would: on `from` stop Apache and remove the VIP
    /// (skipped when `from` is dead), on `to` add the VIP, send a gratuitous ARP and start
    /// Apache. Returns the times of each step.
    pub fn move_by_hand(&self, from: Option<Node>, to: Node) -> Result<ManualMove> {
        let released = match from {
            Some(f) => {
                let _ = self.httpd(f, "stop")?;
                Some(self.del_vip(f)?)
            }
            None => None,
        };
        let vip_added = self.add_vip(to)?;
        let garp = self.send_garp(to)?;
        let out = self.httpd(to, "start")?;
        let httpd_started = monotonic_ns();
        Ok(ManualMove {
            released,
            vip_added,
            garp,
            httpd_started,
            httpd_ok: out.status.success(),
        })
    }
}

/// Times of a resource group moved by hand ([`Lab::move_by_hand`]), CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy)]
pub struct ManualMove {
    /// VIP removed from the old owner (when it was alive).
    pub released: Option<u64>,
    /// VIP added on the new owner.
    pub vip_added: u64,
    /// Gratuitous ARP sent.
    pub garp: u64,
    /// `httpd start` returned.
    pub httpd_started: u64,
    /// Whether `httpd start` succeeded.
    pub httpd_ok: bool,
}
