//! The policy file as written: TOML read into text rules, and checked whole
//! (a file with any error is refused).

use crate::error::{Error, Result};
use crate::model::{Limits, Owner};
use crate::text::{escape, limit_size, parse_cpu_quota, parse_seconds, parse_size};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// A limit's value as a policy file writes it: 512M, 150%, 1h 30m.
pub(super) fn limit_value(name: &str, v: u64) -> String {
    match name {
        "memory_max" | "memory_high" => limit_size(v),
        "cpu_quota" => format!("{v}%"),
        "runtime_max" => humantime::format_duration(std::time::Duration::from_secs(v)).to_string(),
        _ => v.to_string(),
    }
}

/// Limits as people write them: `memory_max = "2G"`, `runtime_max = "1h"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitText {
    pub memory_max: Option<String>,
    pub memory_high: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_weight: Option<u64>,
    pub tasks_max: Option<u64>,
    pub runtime_max: Option<String>,
}

impl LimitText {
    pub(crate) fn parse(&self) -> Result<Limits> {
        Ok(Limits {
            memory_max: self.memory_max.as_deref().map(parse_size).transpose()?,
            memory_high: self.memory_high.as_deref().map(parse_size).transpose()?,
            cpu_quota_percent: self.cpu_quota.as_deref().map(parse_cpu_quota).transpose()?,
            cpu_weight: self.cpu_weight,
            tasks_max: self.tasks_max,
            runtime_max_sec: self.runtime_max.as_deref().map(parse_seconds).transpose()?,
            ..Default::default()
        })
    }
}

/// One actor's rules as written; a missing key means the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRules {
    /// Owners it may launch processes as.
    pub launch_as: Option<Vec<Owner>>,
    /// Executables it may run: absolute paths or glob patterns
    /// (`/usr/bin/*`, `/home/me/project/**`), matched against the resolved path.
    pub commands: Option<Vec<String>>,
    pub act_on: Option<Reach>,
    /// Limits applied when a launch does not give them.
    #[serde(default)]
    pub default_limits: LimitText,
    /// Limits a launch may not exceed (and must give, where a default is missing).
    #[serde(default)]
    pub max_limits: LimitText,
    /// Every process launched as this actor (and everything it launches)
    /// runs in a systemd sandbox it cannot leave (see [`crate::confine`]).
    pub confine: Option<bool>,
    /// With `confine`: the paths it may write under the (otherwise
    /// read-only) home directory, its workspace. Absolute, or `~/...`.
    pub writable: Option<Vec<String>>,
    /// With `confine`: the machine's devices stay visible (a GPU, sound,
    /// a camera, USB, KVM); by default the sandbox has only /dev/null and
    /// the like.
    pub devices: Option<bool>,
    /// Environment variables a launch may pass (`--env`): names or globs
    /// (`RUST_*`). Default: any name but the start-up variables
    /// ([`STARTUP_ENV`]), which a bounded actor may pass only when named
    /// here exactly.
    pub env: Option<Vec<String>>,
}

/// The policy file as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub actors: BTreeMap<String, ActorRules>,
    /// What `pause --all` does to each owner.
    #[serde(default)]
    pub pause_all: PauseAllText,
}

/// The `[pause_all]` table as written; a missing key means the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseAllText {
    /// Owners whose processes are frozen (they resume where they were).
    pub freeze: Option<Vec<Owner>>,
    /// Owners whose processes are stopped and started again on resume
    /// (background work that is cheaper to redo than to hold in memory).
    pub stop: Option<Vec<Owner>>,
}

impl Policy {
    /// Reads and checks the file; no file means the built-in defaults.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Policy {
                    path: path.to_path_buf(),
                    from_file: false,
                    file: PolicyFile::default(),
                    text: String::new(),
                })
            }
            Err(e) => {
                return Err(Error::invalid(format!(
                    "cannot read the policy {}: {e}",
                    path.display()
                ))
                .hint("fix its permissions; refine-proc acts on nothing under an unread policy"))
            }
        };
        Self::parse(path, &text)
    }

    /// Parses and checks policy text (every value, every pattern).
    pub fn parse(path: &Path, text: &str) -> Result<Policy> {
        let bad = |line: Option<usize>, why: String| {
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            Error::invalid(format!("policy {}{at}: {why}", path.display()))
                .hint("fix the file; until then refine-proc refuses to act (nothing runs under a half-read policy)")
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            bad(line, e.message().trim().to_string())
        })?;
        let line_of = |actor: &str| {
            text.lines()
                .position(|l| l.contains(&format!("actors.{actor}")))
                .map(|i| i + 1)
        };
        for (actor, rules) in &file.actors {
            if actor != "person" && actor.parse::<Owner>().is_err() {
                return Err(bad(
                    line_of(actor),
                    format!(
                        "unknown actor {:?}: use person or an owner ({})",
                        escape(actor),
                        Owner::ALL.map(Owner::as_str).join(", ")
                    ),
                ));
            }
            for (which, limits) in [
                ("default_limits", &rules.default_limits),
                ("max_limits", &rules.max_limits),
            ] {
                limits.parse().map_err(|e| {
                    bad(
                        line_of(actor),
                        format!("actors.{actor}.{which}: {}", e.message),
                    )
                })?;
            }
            check_confinement(actor, rules).map_err(|why| bad(line_of(actor), why))?;
            for pattern in rules.commands.iter().flatten() {
                if !pattern.starts_with('/') {
                    return Err(bad(
                        line_of(actor),
                        format!("actors.{actor}.commands: {pattern:?} is not an absolute path or pattern"),
                    ));
                }
                glob::Pattern::new(pattern).map_err(|e| {
                    bad(
                        line_of(actor),
                        format!("actors.{actor}.commands: {pattern:?}: {e}"),
                    )
                })?;
            }
        }
        let pause = &file.pause_all;
        if let Some(both) = pause
            .freeze
            .iter()
            .flatten()
            .find(|o| pause.stop.iter().flatten().any(|s| s == *o))
        {
            let line = text
                .lines()
                .position(|l| l.contains("pause_all"))
                .map(|i| i + 1);
            return Err(bad(
                line,
                format!("pause_all: {both} is in both freeze and stop; choose one"),
            ));
        }
        Ok(Policy {
            path: path.to_path_buf(),
            from_file: true,
            file,
            text: text.to_string(),
        })
    }

    /// The policy file's text, or empty when the defaults apply.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The `confine`, `writable` and `env` keys of one actor, checked as text
/// (paths are resolved at launch, against the launcher's home).
fn check_confinement(actor: &str, rules: &ActorRules) -> std::result::Result<(), String> {
    if rules.confine == Some(true) && actor == "person" {
        return Err(
            "actors.person.confine: a person is not confined; confine the owners agents run as"
                .into(),
        );
    }
    for (key, set) in [
        ("writable", rules.writable.is_some()),
        ("devices", rules.devices.is_some()),
    ] {
        if set && rules.confine != Some(true) {
            return Err(format!(
                "actors.{actor}.{key} has no effect without confine = true: add it, or remove {key}"
            ));
        }
    }
    for path in rules.writable.iter().flatten() {
        crate::confine::check_writable(path)
            .map_err(|why| format!("actors.{actor}.writable: {:?}: {why}", escape(path)))?;
    }
    for pattern in rules.env.iter().flatten() {
        let ok = !pattern.is_empty()
            && pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'))
            && glob::Pattern::new(pattern).is_ok();
        if !ok {
            return Err(format!(
                "actors.{actor}.env: {:?} is not a variable name or glob (letters, digits, _, * and ?)",
                escape(pattern)
            ));
        }
    }
    Ok(())
}
