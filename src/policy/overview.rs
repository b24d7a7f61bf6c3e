//! What `policy show` and `policy check` report: the rules in force and a
//! verdict for one actor and request.

use crate::model::{Limits, Owner};
use serde::Serialize;
use std::path::PathBuf;

use super::*;

/// What `policy show` reports: the file and every actor's effective rules.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub path: PathBuf,
    pub from_file: bool,
    pub actors: Vec<Rules>,
    pub pause_all: PauseAll,
}

/// What `policy check` reports for one actor and, optionally, one launch.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub rules: Rules,
    pub launch: Option<LaunchVerdict>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LaunchVerdict {
    pub allowed: bool,
    pub owner: Owner,
    pub executable: PathBuf,
    /// The limits the launch would get (defaults filled in), when allowed.
    pub limits: Option<Limits>,
    /// Why not, and the rule, when refused.
    pub refusal: Option<String>,
    pub rule: Option<String>,
}

impl Policy {
    pub fn overview(&self) -> Overview {
        let mut actors = vec![self.rules(Actor::Person)];
        actors.extend(Owner::ALL.map(|o| self.rules(Actor::Managed(o))));
        Overview {
            path: self.path.clone(),
            from_file: self.from_file,
            actors,
            pause_all: self.pause_all(),
        }
    }

    /// Explains what `actor` may do, and whether `request` would pass.
    pub fn verdict(&self, actor: Actor, request: Option<&LaunchRequest<'_>>) -> Verdict {
        let launch = request.map(|r| match self.check_launch(actor, r) {
            Ok(limits) => LaunchVerdict {
                allowed: true,
                owner: r.owner,
                executable: r.executable.to_path_buf(),
                limits: Some(limits),
                refusal: None,
                rule: None,
            },
            Err(e) => LaunchVerdict {
                allowed: false,
                owner: r.owner,
                executable: r.executable.to_path_buf(),
                limits: None,
                // `policy check` prints "refused: WHY"; the error's own
                // prefix would say it twice.
                refusal: Some(
                    e.message
                        .strip_prefix(REFUSED_BY_POLICY)
                        .map(str::to_string)
                        .unwrap_or(e.message),
                ),
                rule: e.hint,
            },
        });
        Verdict {
            rules: self.rules(actor),
            launch,
        }
    }
}
