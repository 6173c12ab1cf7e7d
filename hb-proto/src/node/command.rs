//! Operator commands (`hbctl standby|takeover|shutdown`): their scopes and what they do to
//! the local groups (see the module documentation of [`super`], "Operator commands").

use super::{Event, Node, Phase};
use crate::Timestamp;

/// Which groups an operator command covers (Heartbeat's `hb_standby` / `hb_takeover`
/// arguments; the control socket's `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Scope {
    /// Every group.
    #[default]
    All,
    /// Groups whose preferred node is another node.
    Foreign,
    /// Groups whose preferred node is this node.
    Local,
    /// `standby failback`: foreign groups; `takeover failback`: local groups.
    Failback,
}

impl Scope {
    /// The word as typed (`all`, `foreign`, `local`, `failback`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Foreign => "foreign",
            Scope::Local => "local",
            Scope::Failback => "failback",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Scope::All),
            "foreign" => Ok(Scope::Foreign),
            "local" => Ok(Scope::Local),
            "failback" => Ok(Scope::Failback),
            other => Err(format!(
                "unknown scope {other:?} (expected all, foreign, local or failback)"
            )),
        }
    }
}

/// An operator command (`hbctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `hbctl standby SCOPE` (Heartbeat's `hb_standby`).
    Standby(Scope),
    /// `hbctl takeover SCOPE` (Heartbeat's `hb_takeover`).
    Takeover(Scope),
    /// Clean stop: release every group, send a shutdown notice, stop.
    Shutdown,
}

impl Node {
    /// An operator command.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command) {
        if matches!(self.phase, Phase::Stopped | Phase::ShuttingDown) {
            return;
        }
        match cmd {
            Command::Standby(scope) => {
                let scope_groups = self.scope_groups(scope, true);
                for &g in &scope_groups {
                    let lg = &mut self.local_groups[g];
                    lg.standby = true;
                    lg.wants = false;
                }
                self.dirty = true;
                self.event(Event::Standby {
                    scope: scope.as_str(),
                    groups: scope_groups.len(),
                });
            }
            Command::Takeover(scope) => {
                let scope_groups = self.scope_groups(scope, false);
                for &g in &scope_groups {
                    let lg = &mut self.local_groups[g];
                    lg.standby = false;
                    lg.wants = true;
                    lg.failed_until = None;
                    lg.start_failures = 0;
                }
                self.dirty = true;
                self.event(Event::Takeover {
                    scope: scope.as_str(),
                    groups: scope_groups.len(),
                });
            }
            Command::Shutdown => {
                self.phase = Phase::ShuttingDown;
                self.dirty = true;
                self.shutdown_began(now);
                self.event(Event::ShuttingDown);
            }
        }
        self.reconcile(now);
        self.flush(now);
    }

    pub(super) fn scope_groups(&self, scope: Scope, standby: bool) -> Vec<usize> {
        let local_only = match scope {
            Scope::All => None,
            Scope::Local => Some(true),
            Scope::Foreign => Some(false),
            Scope::Failback => Some(!standby),
        };
        (0..self.groups.len())
            .filter(|&g| local_only.is_none_or(|l| (self.groups[g].preferred == self.local) == l))
            .collect()
    }
}
