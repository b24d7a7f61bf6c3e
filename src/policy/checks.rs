//! The decisions: whether an actor may act on an owner, change limits,
//! launch a command, pass an environment.

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Limits, Owner};
use crate::text::escape;
use std::path::Path;

use super::*;

/// What a request is.
#[derive(Clone, Debug)]
pub struct LaunchRequest<'a> {
    pub owner: Owner,
    pub executable: &'a Path,
    pub limits: &'a Limits,
}

impl Policy {
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

pub(super) const REFUSED_BY_POLICY: &str = "refused by policy: ";

/// The refusal error: exit 7, naming the actor's rule and where it is.
pub fn denied(rules: &Rules, rule: &str, why: String) -> Error {
    Error::new(ErrorKind::Denied, format!("{REFUSED_BY_POLICY}{why}")).hint(format!(
        "rule {rule} of {}; see refine-proc policy show",
        rules.source
    ))
}
