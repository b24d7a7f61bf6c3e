//! Bounded power: what an actor may do through refine-proc, read from a
//! TOML file written by people. An actor is a person at a terminal (no
//! managed parent) or the owner of the managed process that asks. A file
//! with any error is rejected whole: nothing runs under a half-read policy.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Limits, Owner};
use crate::text::escape;

mod checks;
mod file;
mod overview;
mod startup_env;

pub use checks::*;
pub use file::*;
pub use overview::*;
pub use startup_env::*;

#[cfg(test)]
mod tests;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A person (or any process) outside refine-proc's managed processes.
    Person,
    /// A managed process of this owner.
    Managed(Owner),
}

impl Actor {
    /// The key of its rules in the policy file: `person` or the owner.
    pub fn key(self) -> &'static str {
        match self {
            Actor::Person => "person",
            Actor::Managed(owner) => owner.as_str(),
        }
    }
}

/// On whose processes an actor may act (stop, kill, restart, set, pause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Its own process and the processes it (transitively) started.
    Descendants,
    /// Every process of its own owner, and its descendants.
    SameOwner,
    /// Every managed process.
    All,
}

/// What `pause --all` does: owners in neither list keep running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseAll {
    pub freeze: Vec<Owner>,
    pub stop: Vec<Owner>,
    pub keep_running: Vec<Owner>,
    /// The file, or the built-in default.
    pub source: String,
}

/// How `pause --all` treats one owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseTreatment {
    Freeze,
    Stop,
    KeepRunning,
}

impl PauseAll {
    pub fn treatment(&self, owner: Owner) -> PauseTreatment {
        if self.freeze.contains(&owner) {
            PauseTreatment::Freeze
        } else if self.stop.contains(&owner) {
            PauseTreatment::Stop
        } else {
            PauseTreatment::KeepRunning
        }
    }
}

/// An actor's effective rules: the file's, over the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub actor: String,
    /// None: any owner.
    pub launch_as: Option<Vec<Owner>>,
    /// None: any command.
    pub commands: Option<Vec<String>>,
    pub act_on: Reach,
    pub default_limits: Limits,
    pub max_limits: Limits,
    /// Its processes run confined (see [`crate::confine`]).
    pub confine: bool,
    /// With `confine`: what it may write in the home directory, as written.
    pub writable: Vec<String>,
    /// With `confine`: the machine's devices stay visible.
    pub devices: bool,
    /// None: any name but the start-up variables.
    pub env: Option<Vec<String>>,
    /// Where each rule came from: the file, or the built-in default.
    pub source: String,
}

impl Rules {
    /// Bound by a `commands` list or confined: the start-up variables are
    /// refused unless `env` names them exactly.
    pub fn bounded(&self) -> bool {
        self.commands.is_some() || self.confine
    }
}

/// The loaded policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub path: PathBuf,
    /// False when no file exists and the built-in defaults apply.
    pub from_file: bool,
    file: PolicyFile,
    text: String,
}

/// Where the policy of a person lives: `REFINE_PROC_POLICY`, else
/// `$XDG_CONFIG_HOME/refine-proc/policy.toml`, else `~/.config/...`.
pub fn default_path() -> Option<PathBuf> {
    let from_env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env("REFINE_PROC_POLICY")
        .or_else(|| from_env("XDG_CONFIG_HOME").map(|d| d.join("refine-proc/policy.toml")))
        .or_else(|| from_env("HOME").map(|h| h.join(".config/refine-proc/policy.toml")))
}

impl Policy {
    /// An actor's effective rules.
    pub fn rules(&self, actor: Actor) -> Rules {
        let written = self.file.actors.get(actor.key());
        let default_reach = match actor {
            Actor::Person => Reach::All,
            Actor::Managed(_) => Reach::Descendants,
        };
        let parsed = |l: Option<&LimitText>| {
            l.map(|l| l.parse().expect("checked at load"))
                .unwrap_or_default()
        };
        Rules {
            actor: actor.key().to_string(),
            launch_as: written.and_then(|w| w.launch_as.clone()),
            commands: written.and_then(|w| w.commands.clone()),
            act_on: written.and_then(|w| w.act_on).unwrap_or(default_reach),
            default_limits: parsed(written.map(|w| &w.default_limits)),
            max_limits: parsed(written.map(|w| &w.max_limits)),
            confine: written.and_then(|w| w.confine).unwrap_or(false),
            writable: written.and_then(|w| w.writable.clone()).unwrap_or_default(),
            devices: written.and_then(|w| w.devices).unwrap_or(false),
            env: written.and_then(|w| w.env.clone()),
            source: match written {
                Some(_) => format!("{} [actors.{}]", self.path.display(), actor.key()),
                None => format!("built-in defaults for {}", actor.key()),
            },
        }
    }

    /// What `pause --all` does to each owner. By default agents are frozen,
    /// background work (import, maintenance, quality) is stopped and started
    /// again on resume, and the daemon, target apps and user helpers keep
    /// running.
    pub fn pause_all(&self) -> PauseAll {
        let written = &self.file.pause_all;
        let freeze = written.freeze.clone().unwrap_or(vec![Owner::Agent]);
        let stop =
            written
                .stop
                .clone()
                .unwrap_or(vec![Owner::Import, Owner::Maintenance, Owner::Quality]);
        // An owner the file moves to one list leaves the other default list.
        let freeze: Vec<Owner> = freeze
            .into_iter()
            .filter(|o| written.stop.as_ref().is_none_or(|s| !s.contains(o)))
            .collect();
        let stop: Vec<Owner> = stop.into_iter().filter(|o| !freeze.contains(o)).collect();
        let keep_running = Owner::ALL
            .into_iter()
            .filter(|o| !freeze.contains(o) && !stop.contains(o))
            .collect();
        let source = if written.freeze.is_some() || written.stop.is_some() {
            format!("{} [pause_all]", self.path.display())
        } else {
            "built-in defaults".to_string()
        };
        PauseAll {
            freeze,
            stop,
            keep_running,
            source,
        }
    }
}

/// Parses `person` or an owner name as an actor.
pub fn parse_actor(s: &str) -> Result<Actor> {
    if s == "person" {
        return Ok(Actor::Person);
    }
    s.parse::<Owner>().map(Actor::Managed).map_err(|e| {
        Error::invalid(format!("unknown actor {:?}", escape(s))).hint(format!(
            "use person or an owner; {}",
            e.hint.unwrap_or_default()
        ))
    })
}
