//! Group pauses that outlive the command that made them. While one holds
//! an owner (or a workflow, or a session), `run` for it is refused, or
//! queued with `--queue`, and every later invocation still knows.

use serde::{Deserialize, Serialize};

use crate::model::{Metadata, Owner, Timestamp};

/// `pauses.json` in the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pauses {
    /// Group pauses in force, oldest first.
    #[serde(default)]
    pub active: Vec<GroupPause>,
    /// Records queued by `run --queue` while a pause held them: started by
    /// the `resume` that lifts the last pause holding them.
    #[serde(default)]
    pub queued: Vec<String>,
}

/// One group's pause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPause {
    /// `owner:agent`, `workflow:W`, `session:S` or `all`: the same tag its
    /// records carry in `paused_by`.
    pub selector: String,
    pub since: Timestamp,
    /// Who paused: `person` or the owner of the managed process that asked.
    pub by: String,
    /// For `all`: the owners frozen and the owners stopped, as the pause
    /// policy said when it was made (resume undoes exactly that).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen_owners: Vec<Owner>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_owners: Vec<Owner>,
    /// For `all`: the records it stopped, to start again on resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<String>,
    /// The records it froze. Kept here, not in each record, so pausing
    /// and resuming a group of N costs two writes, not N.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
}

impl GroupPause {
    /// Whether a process of this owner and metadata is held by the pause.
    pub fn holds(&self, owner: Owner, metadata: &Metadata) -> bool {
        match self.selector.split_once(':') {
            Some(("owner", o)) => owner.as_str() == o,
            Some(("workflow", w)) => metadata.workflow.as_deref() == Some(w),
            Some(("session", s)) => metadata.session.as_deref() == Some(s),
            _ => {
                self.selector == "all"
                    && (self.frozen_owners.contains(&owner) || self.stopped_owners.contains(&owner))
            }
        }
    }
}

impl Pauses {
    /// The first pause in force that holds such a process.
    pub fn holding(&self, owner: Owner, metadata: &Metadata) -> Option<&GroupPause> {
        self.active.iter().find(|p| p.holds(owner, metadata))
    }

    pub fn get(&self, selector: &str) -> Option<&GroupPause> {
        self.active.iter().find(|p| p.selector == selector)
    }

    /// The group pause that froze this record, if one did.
    pub fn frozen_by(&self, id: &str) -> Option<&str> {
        self.active
            .iter()
            .find(|p| p.frozen.iter().any(|f| f == id))
            .map(|p| p.selector.as_str())
    }

    /// Forgets that a group froze this record (it was resumed on its own,
    /// or started anew); true when something changed.
    pub fn unfreeze(&mut self, id: &str) -> bool {
        let mut changed = false;
        for p in &mut self.active {
            let before = p.frozen.len();
            p.frozen.retain(|f| f != id);
            changed |= p.frozen.len() != before;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(selector: &str) -> GroupPause {
        GroupPause {
            selector: selector.into(),
            since: Timestamp::now(),
            by: "person".into(),
            frozen_owners: vec![Owner::Agent],
            stopped_owners: vec![Owner::Import],
            stopped: vec![],
            frozen: vec![],
        }
    }

    #[test]
    fn a_pause_holds_its_group_only() {
        let wf = Metadata {
            workflow: Some("wf-1".into()),
            ..Default::default()
        };
        let none = Metadata::default();
        assert!(pause("owner:agent").holds(Owner::Agent, &none));
        assert!(!pause("owner:agent").holds(Owner::Import, &none));
        assert!(pause("workflow:wf-1").holds(Owner::Daemon, &wf));
        assert!(!pause("workflow:wf-1").holds(Owner::Daemon, &none));
        assert!(!pause("session:wf-1").holds(Owner::Daemon, &wf));
        let all = pause("all");
        assert!(all.holds(Owner::Agent, &none) && all.holds(Owner::Import, &none));
        assert!(!all.holds(Owner::TargetApp, &none), "kept running");
        let p = Pauses {
            active: vec![pause("owner:quality"), all],
            queued: vec![],
        };
        assert_eq!(p.holding(Owner::Agent, &none).unwrap().selector, "all");
        assert!(p.holding(Owner::Daemon, &none).is_none());
    }
}
