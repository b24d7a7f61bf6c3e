//! Bounded power: what an actor may do through refine-proc, read from a
//! TOML file written by people. An actor is a person at a terminal (no
//! managed parent) or the owner of the managed process that asks. A file
//! with any error is rejected whole: nothing runs under a half-read policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Limits, Owner};
use crate::text::{escape, limit_size, parse_cpu_quota, parse_seconds, parse_size};

/// A limit's value as a policy file writes it: 512M, 150%, 1h 30m.
fn limit_value(name: &str, v: u64) -> String {
    match name {
        "memory_max" | "memory_high" => limit_size(v),
        "cpu_quota" => format!("{v}%"),
        "runtime_max" => humantime::format_duration(std::time::Duration::from_secs(v)).to_string(),
        _ => v.to_string(),
    }
}

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
    fn parse(&self) -> Result<Limits> {
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

/// Variables that make the loader or an interpreter run code before (or
/// instead of) the program the policy allowed: glibc's loader (`LD_*`,
/// `GLIBC_TUNABLES`, `GCONV_PATH`), shells, Python, Node, Perl, Ruby,
/// Java, Lua, Tcl, PHP, OpenSSL, git. Globs end in `*`.
pub const STARTUP_ENV: &[&str] = &[
    "LD_*",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "NLSPATH",
    "LOCPATH",
    "HOSTALIASES",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "ZDOTDIR",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "PYTHONINSPECT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_INIT*",
    "LUA_PATH*",
    "LUA_CPATH*",
    "TCLLIBPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_CONFIG*",
    "GIT_ASKPASS",
    "GIT_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_TEMPLATE_DIR",
    "SSH_ASKPASS",
    "LESSOPEN",
    "LESSCLOSE",
];

/// Whether `name` matches an `env` pattern: a name, or a glob where `*`
/// and `?` match within the name.
fn env_matches(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

/// The start-up variable pattern `name` matches, if any.
pub fn startup_variable(name: &str) -> Option<&'static str> {
    STARTUP_ENV.iter().copied().find(|p| env_matches(p, name))
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

/// What a request is.
#[derive(Clone, Debug)]
pub struct LaunchRequest<'a> {
    pub owner: Owner,
    pub executable: &'a Path,
    pub limits: &'a Limits,
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

    /// Checks that `actor` may start (or adopt) processes as `owner`.
    pub fn check_owner(&self, actor: Actor, owner: Owner) -> Result<()> {
        let rules = self.rules(actor);
        match &rules.launch_as {
            Some(owners) if !owners.contains(&owner) => Err(denied(
                &rules,
                "launch_as",
                format!(
                    "{} may not launch processes as {owner} (allowed: {})",
                    rules.actor,
                    owners
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks a change of limits at run time. The actor's caps apply as at
    /// launch, and a managed process may not raise its own limits
    /// (`own`: the change targets the caller's own process).
    pub fn check_change(
        &self,
        actor: Actor,
        current: &Limits,
        change: &crate::model::LimitChange,
        own: bool,
    ) -> Result<()> {
        use crate::model::LimitValue;
        let rules = self.rules(actor);
        let m = &rules.max_limits;
        let fields = [
            (
                "memory_max",
                change.memory_max,
                current.memory_max,
                m.memory_max,
            ),
            (
                "cpu_quota",
                change.cpu_quota_percent,
                current.cpu_quota_percent,
                m.cpu_quota_percent,
            ),
            (
                "tasks_max",
                change.tasks_max,
                current.tasks_max,
                m.tasks_max,
            ),
            (
                "memory_high",
                change.memory_high,
                current.memory_high,
                m.memory_high,
            ),
            // A higher weight is a larger share of the CPU: a raise too.
            (
                "cpu_weight",
                change.cpu_weight,
                current.cpu_weight,
                m.cpu_weight,
            ),
        ];
        for (name, new, now, cap) in fields {
            let Some(new) = new else { continue };
            let new = match new {
                LimitValue::Value(v) => Some(v),
                LimitValue::Infinity => None,
            };
            if let Some(cap) = cap {
                if new.is_none_or(|v| v > cap) {
                    let asked = new.map_or("infinity".to_string(), |v| limit_value(name, v));
                    return Err(denied(
                        &rules,
                        &format!("max_limits.{name}"),
                        format!(
                            "{name} {asked} is above the cap {} for {}",
                            limit_value(name, cap),
                            rules.actor
                        ),
                    ));
                }
            }
            // None means "no limit": anything else is lower.
            let raises = match (now, new) {
                (Some(_), None) => true,
                (Some(now), Some(new)) => new > now,
                (None, _) => false,
            };
            if own && raises && matches!(actor, Actor::Managed(_)) {
                return Err(denied(
                    &rules,
                    "own limits",
                    format!("a managed process may not raise its own limits ({name})"),
                ));
            }
        }
        Ok(())
    }

    /// Checks a launch; fills in default limits. A refusal names the rule.
    pub fn check_launch(&self, actor: Actor, request: &LaunchRequest<'_>) -> Result<Limits> {
        self.check_owner(actor, request.owner)?;
        let rules = self.rules(actor);
        let deny = |rule: &str, why: String| denied(&rules, rule, why);
        if let Some(patterns) = &rules.commands {
            let allowed = patterns.iter().any(|p| {
                glob::Pattern::new(p).is_ok_and(|p| {
                    p.matches_path_with(
                        request.executable,
                        glob::MatchOptions {
                            require_literal_separator: true,
                            ..Default::default()
                        },
                    ) || p.as_str().ends_with("/**")
                        && request
                            .executable
                            .starts_with(p.as_str().trim_end_matches("/**"))
                })
            });
            if !allowed {
                return Err(deny(
                    "commands",
                    format!(
                        "{} may not run {}",
                        rules.actor,
                        escape(&request.executable.display().to_string())
                    ),
                ));
            }
        }
        let mut limits = request.limits.clone();
        let d = &rules.default_limits;
        limits.memory_max = limits.memory_max.or(d.memory_max);
        limits.memory_high = limits.memory_high.or(d.memory_high);
        limits.cpu_quota_percent = limits.cpu_quota_percent.or(d.cpu_quota_percent);
        limits.cpu_weight = limits.cpu_weight.or(d.cpu_weight);
        limits.tasks_max = limits.tasks_max.or(d.tasks_max);
        limits.runtime_max_sec = limits.runtime_max_sec.or(d.runtime_max_sec);
        let m = &rules.max_limits;
        for (name, asked, max) in [
            ("memory_max", limits.memory_max, m.memory_max),
            ("memory_high", limits.memory_high, m.memory_high),
            ("cpu_quota", limits.cpu_quota_percent, m.cpu_quota_percent),
            ("cpu_weight", limits.cpu_weight, m.cpu_weight),
            ("tasks_max", limits.tasks_max, m.tasks_max),
            ("runtime_max", limits.runtime_max_sec, m.runtime_max_sec),
        ] {
            match (asked, max) {
                (Some(a), Some(m)) if a > m => {
                    return Err(deny(
                        &format!("max_limits.{name}"),
                        format!(
                            "{name} {} is above the cap {} for {}",
                            limit_value(name, a),
                            limit_value(name, m),
                            rules.actor
                        ),
                    ))
                }
                (None, Some(m)) => {
                    return Err(deny(
                        &format!("max_limits.{name}"),
                        format!(
                            "{name} is capped at {} for {}, so the launch must set it, \
                             or the policy a default (default_limits.{name})",
                            limit_value(name, m),
                            rules.actor
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(limits)
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
    if rules.writable.is_some() && rules.confine != Some(true) {
        return Err(format!(
            "actors.{actor}.writable has no effect without confine = true: add it, or remove writable"
        ));
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

impl Policy {
    /// Checks the variables a launch passes (`--env`) against the actor's
    /// `env` rule: for a bounded actor the start-up variables are refused
    /// unless named exactly, and with an `env` list only its names pass.
    pub fn check_environment<'a>(
        &self,
        actor: Actor,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<()> {
        let rules = self.rules(actor);
        for name in names {
            let named = rules.env.iter().flatten().any(|p| p == name);
            if let (true, false, Some(p)) = (rules.bounded(), named, startup_variable(name)) {
                return Err(denied(
                    &rules,
                    "env (start-up variables)",
                    format!(
                        "{} may not pass {} (it matches {p}: it makes the loader or an interpreter run code the policy did not allow; a policy allows it only by naming it exactly in env)",
                        rules.actor,
                        escape(name)
                    ),
                ));
            }
            if let Some(allowed) = &rules.env {
                if !allowed.iter().any(|p| env_matches(p, name)) {
                    return Err(denied(
                        &rules,
                        "env",
                        format!(
                            "{} may not pass {} (allowed: {})",
                            rules.actor,
                            escape(name),
                            if allowed.is_empty() {
                                "none".to_string()
                            } else {
                                allowed.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

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

const REFUSED_BY_POLICY: &str = "refused by policy: ";

/// The refusal error: exit 7, naming the actor's rule and where it is.
pub fn denied(rules: &Rules, rule: &str, why: String) -> Error {
    Error::new(ErrorKind::Denied, format!("{REFUSED_BY_POLICY}{why}")).hint(format!(
        "rule {rule} of {}; see refine-proc policy show",
        rules.source
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Result<Policy> {
        Policy::parse(Path::new("/p/policy.toml"), text)
    }

    fn launch<'a>(owner: Owner, exe: &'a Path, limits: &'a Limits) -> LaunchRequest<'a> {
        LaunchRequest {
            owner,
            executable: exe,
            limits,
        }
    }

    const AGENTS: &str = r#"
# Agents may run project scripts and checks, within bounds.
[actors.agent]
launch_as = ["agent", "quality"]
commands = ["/usr/bin/*", "/home/me/project/**"]
act_on = "descendants"
default_limits = { memory_max = "1G" }
max_limits = { memory_max = "4G", runtime_max = "2h" }
"#;

    #[test]
    fn pause_all_defaults_and_a_file_moving_an_owner_between_lists() {
        use PauseTreatment::*;
        let p = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap();
        let d = p.pause_all();
        assert_eq!(d.treatment(Owner::Agent), Freeze);
        for o in [Owner::Import, Owner::Maintenance, Owner::Quality] {
            assert_eq!(d.treatment(o), Stop);
        }
        for o in [Owner::Daemon, Owner::TargetApp, Owner::UserHelper] {
            assert_eq!(d.treatment(o), KeepRunning);
        }
        // Quality moved to freeze: it leaves the default stop list.
        let p = policy("[pause_all]\nfreeze = [\"agent\", \"quality\"]\n").unwrap();
        let a = p.pause_all();
        assert_eq!(a.treatment(Owner::Quality), Freeze);
        assert_eq!(a.treatment(Owner::Import), Stop);
        assert!(a.source.contains("[pause_all]"));
        let e = policy("[pause_all]\nfreeze = [\"agent\"]\nstop = [\"agent\"]\n").unwrap_err();
        assert!(
            e.message.contains(":1: pause_all: agent is in both"),
            "{}",
            e.message
        );
        let e = policy("[pause_all]\nfreeze = [\"robots\"]\n").unwrap_err();
        assert!(e.message.contains("robots"), "{}", e.message);
    }

    #[test]
    fn without_a_file_a_person_may_do_everything_and_a_process_only_to_its_descendants() {
        let p = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap();
        assert!(!p.from_file);
        assert_eq!(p.rules(Actor::Person).act_on, Reach::All);
        assert_eq!(
            p.rules(Actor::Managed(Owner::Agent)).act_on,
            Reach::Descendants
        );
        let none = Limits::default();
        let exe = Path::new("/bin/anything");
        assert!(p
            .check_launch(
                Actor::Managed(Owner::Agent),
                &launch(Owner::Daemon, exe, &none)
            )
            .is_ok());
    }

    #[test]
    fn refusals_name_the_rule_and_exit_with_the_denied_code() {
        let p = policy(AGENTS).unwrap();
        let agent = Actor::Managed(Owner::Agent);
        let capped = Limits {
            runtime_max_sec: Some(60),
            ..Default::default()
        };
        let e = p
            .check_launch(
                agent,
                &launch(Owner::Daemon, Path::new("/usr/bin/make"), &capped),
            )
            .unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert!(
            e.message.contains("may not launch processes as daemon"),
            "{e}"
        );
        assert!(e
            .hint
            .unwrap()
            .contains("rule launch_as of /p/policy.toml [actors.agent]"));
        let e = p
            .check_launch(
                agent,
                &launch(Owner::Agent, Path::new("/opt/evil/bin/x"), &capped),
            )
            .unwrap_err();
        assert!(e.message.contains("may not run /opt/evil/bin/x"), "{e}");
        // `*` stays within one directory, `**` does not.
        assert!(p
            .check_launch(
                agent,
                &launch(Owner::Agent, Path::new("/usr/bin/sub/x"), &capped)
            )
            .is_err());
        assert!(p
            .check_launch(
                agent,
                &launch(
                    Owner::Agent,
                    Path::new("/home/me/project/a/b/run.sh"),
                    &capped
                )
            )
            .is_ok());
    }

    #[test]
    fn limits_get_defaults_and_may_not_exceed_caps() {
        let p = policy(AGENTS).unwrap();
        let agent = Actor::Managed(Owner::Agent);
        let exe = Path::new("/usr/bin/make");
        let asked = Limits {
            runtime_max_sec: Some(60),
            ..Default::default()
        };
        let got = p
            .check_launch(agent, &launch(Owner::Agent, exe, &asked))
            .unwrap();
        assert_eq!(got.memory_max, Some(1 << 30), "the default applies");
        let too_much = Limits {
            memory_max: Some(8 << 30),
            runtime_max_sec: Some(60),
            ..Default::default()
        };
        let e = p
            .check_launch(agent, &launch(Owner::Agent, exe, &too_much))
            .unwrap_err();
        assert!(e.hint.unwrap().contains("max_limits.memory_max"));
        // A cap without a default: the launch must set the limit.
        let e = p
            .check_launch(agent, &launch(Owner::Agent, exe, &Limits::default()))
            .unwrap_err();
        assert!(e.message.contains("runtime_max is capped"), "{e}");
    }

    #[test]
    fn changes_keep_to_caps_and_a_managed_process_cannot_raise_its_own_limits() {
        use crate::model::{LimitChange, LimitValue};
        let p = policy(AGENTS).unwrap();
        let agent = Actor::Managed(Owner::Agent);
        let now = Limits {
            memory_max: Some(1 << 30),
            ..Default::default()
        };
        let to = |v: LimitValue| LimitChange {
            memory_max: Some(v),
            ..Default::default()
        };
        assert!(p
            .check_change(agent, &now, &to(LimitValue::Value(1 << 29)), true)
            .is_ok());
        let e = p
            .check_change(agent, &now, &to(LimitValue::Value(2 << 30)), true)
            .unwrap_err();
        assert!(e.message.contains("may not raise its own limits"), "{e}");
        // On a child, raising within the cap is fine; past it is not.
        assert!(p
            .check_change(agent, &now, &to(LimitValue::Value(2 << 30)), false)
            .is_ok());
        assert!(p
            .check_change(agent, &now, &to(LimitValue::Infinity), false)
            .is_err());
        // A person is bound by its own (here: no) caps only.
        assert!(p
            .check_change(Actor::Person, &now, &to(LimitValue::Infinity), true)
            .is_ok());
    }

    #[test]
    fn startup_variables_are_refused_for_bounded_actors_unless_named_exactly() {
        let p = policy(AGENTS).unwrap();
        let agent = Actor::Managed(Owner::Agent);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for evil in [
            "LD_PRELOAD",
            "LD_AUDIT",
            "BASH_ENV",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "GIT_CONFIG_COUNT",
        ] {
            let e = p.check_environment(agent, &names(&[evil])).unwrap_err();
            assert_eq!(e.exit_code(), 7);
            assert!(e.message.contains(evil), "{e}");
            assert!(e
                .hint
                .unwrap()
                .contains("rule env (start-up variables) of /p/policy.toml [actors.agent]"));
        }
        assert!(p
            .check_environment(agent, &names(&["RUST_LOG", "CI"]))
            .is_ok());
        // Unbounded (no commands, not confined): as before.
        assert!(p
            .check_environment(Actor::Person, &names(&["LD_PRELOAD"]))
            .is_ok());
        let p = policy("[actors.agent]\ncommands = [\"/usr/bin/*\"]\nenv = [\"RUST_*\", \"CI\", \"PYTHONPATH\", \"*\"]\n").unwrap();
        assert!(p
            .check_environment(agent, &names(&["RUST_LOG", "PYTHONPATH", "X"]))
            .is_ok());
        // A glob does not let a start-up variable through.
        assert!(p.check_environment(agent, &names(&["LD_PRELOAD"])).is_err());
        let p = policy("[actors.agent]\nenv = [\"RUST_*\", \"CI\"]\n").unwrap();
        let e = p.check_environment(agent, &names(&["HOME"])).unwrap_err();
        assert!(
            e.message
                .contains("may not pass HOME (allowed: RUST_*, CI)"),
            "{e}"
        );
        assert!(e.hint.unwrap().contains("rule env of"));
    }

    #[test]
    fn confine_and_writable_are_read_and_checked() {
        let p =
            policy("[actors.agent]\nconfine = true\nwritable = [\"~/ws\", \"/srv/b\"]\n").unwrap();
        let r = p.rules(Actor::Managed(Owner::Agent));
        assert!(r.confine && r.bounded());
        assert_eq!(r.writable, ["~/ws", "/srv/b"]);
        assert!(!p.rules(Actor::Managed(Owner::Quality)).confine);
        for (text, why) in [
            (
                "[actors.agent]\nwritable = [\"~/ws\"]\n",
                "without confine = true",
            ),
            (
                "[actors.agent]\nconfine = true\nwritable = [\"~\"]\n",
                "home directory",
            ),
            (
                "[actors.agent]\nconfine = true\nwritable = [\"ws\"]\n",
                "not an absolute path",
            ),
            (
                "[actors.person]\nconfine = true\n",
                "a person is not confined",
            ),
            (
                "[actors.agent]\nenv = [\"A=B\"]\n",
                "not a variable name or glob",
            ),
        ] {
            let e = policy(text).unwrap_err();
            assert!(e.message.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_policy_with_an_error_is_rejected_whole_with_its_line() {
        for (text, line, why) in [
            ("[actors.agent]\nlaunch_as = [\"robot\"]\n", ":2", "robot"),
            ("[actors.robot]\n", ":1", "unknown actor"),
            (
                "[actors.agent]\nmax_limits = { memory_max = \"lots\" }\n",
                ":1",
                "invalid size",
            ),
            (
                "[actors.agent]\ncommands = [\"make\"]\n",
                ":1",
                "not an absolute path",
            ),
            ("[actors.agent]\nlaunch-as = []\n", ":2", "unknown field"),
            ("[actors.agent\n", ":1", ""),
        ] {
            let e = policy(text).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(
                e.message.contains(&format!("policy.toml{line}")),
                "{text:?}: {e}"
            );
            assert!(e.message.contains(why), "{text:?}: {e}");
            assert!(e.hint.unwrap().contains("half-read"));
        }
    }
}
