//! A launch as a surface receives it: the CLI's `run` options by their
//! snake_case names, with values written as the CLI writes them (`512M`,
//! `50%`, `1h 30m`, `5/10min`). The HTTP API's body and the MCP server's
//! `run` tool are this type; [`RunRequest::into_spec`] checks and converts
//! it, with errors that name the field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::health::{HealthCheck, HealthSpec, OnUnhealthy};
use crate::model::{Limits, Metadata, Owner, ReadySpec, RestartTiming};
use crate::spec::RunSpec;
use crate::text::{parse_cpu_quota, parse_cpu_weight, parse_seconds, parse_size};

/// What to run and how (every field but `command` is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunRequest {
    /// The program and its arguments, one string each; no shell is involved.
    pub command: Vec<String>,
    /// daemon, target-app, agent, quality, import, maintenance or user-helper
    /// (default: the caller's owner, else user-helper).
    pub owner: Option<String>,
    /// A short name for people (default: the program's name).
    pub label: Option<String>,
    /// Why this process exists.
    pub details: Option<String>,
    pub workflow: Option<String>,
    pub gap: Option<String>,
    pub session: Option<String>,
    pub mode: Option<String>,
    pub runner: Option<String>,
    /// Extra metadata.
    pub meta: BTreeMap<String, String>,
    /// Working directory (default: the caller's).
    pub cwd: Option<PathBuf>,
    /// Environment variables (REFINE_* is reserved).
    pub env: BTreeMap<String, String>,
    /// MemoryMax=, e.g. "512M", "2G".
    pub memory_max: Option<String>,
    /// MemoryHigh=, e.g. "1G".
    pub memory_high: Option<String>,
    /// CPUQuota=, e.g. "50%", "200%".
    pub cpu_quota: Option<String>,
    /// CPUWeight=, 1 to 10000.
    pub cpu_weight: Option<String>,
    /// TasksMax=.
    pub tasks_max: Option<u64>,
    /// RuntimeMaxSec=, e.g. "30s", "2h".
    pub runtime_max: Option<String>,
    /// TimeoutStopSec=, e.g. "10s".
    pub timeout_stop: Option<String>,
    /// no, on-failure or always (default no).
    pub restart: Option<String>,
    /// Delay before a restart, e.g. "1s".
    pub restart_delay: Option<String>,
    /// Let the delay double per restart up to this, e.g. "1min".
    pub restart_max_delay: Option<String>,
    /// At most N starts within DURATION, e.g. "5/10min".
    pub restart_limit: Option<String>,
    /// notify (it sends READY=1) or health (its check passes).
    pub ready: Option<String>,
    /// How long it may take to get ready, e.g. "30s".
    pub ready_timeout: Option<String>,
    /// Start it again at login if the user manager took it down.
    pub persist: bool,
    /// A shell command that exits 0 while it is healthy.
    pub health_cmd: Option<String>,
    /// A URL that answers 2xx/3xx while it is healthy.
    pub health_http: Option<String>,
    /// HOST:PORT that accepts connections while it is healthy.
    pub health_tcp: Option<String>,
    /// How often to probe, e.g. "10s".
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_retries: Option<u32>,
    pub health_start_period: Option<String>,
    /// none, restart or stop.
    pub on_unhealthy: Option<String>,
    /// Run on a pseudo-terminal that outlives every client (a terminal
    /// session: send, screen and attach reach it).
    pub pty: bool,
    /// The terminal's size until a client attaches, "ROWSxCOLS" (default
    /// 24x80); needs `pty`.
    pub pty_size: Option<String>,
}

impl RunRequest {
    /// Checks every value and builds the spec; errors name the field.
    pub fn into_spec(self) -> Result<RunSpec> {
        let field = |name: &'static str| {
            move |mut e: Error| {
                e.message = format!("{name}: {}", e.message);
                e
            }
        };
        let opt = |v: &Option<String>, name: &'static str, parse: fn(&str) -> Result<u64>| {
            v.as_deref().map(parse).transpose().map_err(field(name))
        };
        if self.tasks_max == Some(0) {
            return Err(Error::invalid("tasks_max must be at least 1"));
        }
        let owner = self
            .owner
            .as_deref()
            .map(str::parse::<Owner>)
            .transpose()
            .map_err(field("owner"))?;
        let health = self.health_spec()?;
        let pty = self.pty_options()?;
        Ok(RunSpec {
            owner,
            label: self.label,
            details: self.details,
            metadata: Metadata {
                extra: self.meta,
                workflow: self.workflow,
                gap: self.gap,
                session: self.session,
                mode: self.mode,
                runner: self.runner,
            },
            cwd: self.cwd,
            environment: self.env,
            limits: Limits {
                memory_max: opt(&self.memory_max, "memory_max", parse_size)?,
                cpu_quota_percent: opt(&self.cpu_quota, "cpu_quota", parse_cpu_quota)?,
                tasks_max: self.tasks_max,
                runtime_max_sec: opt(&self.runtime_max, "runtime_max", parse_seconds)?,
                memory_high: opt(&self.memory_high, "memory_high", parse_size)?,
                cpu_weight: opt(&self.cpu_weight, "cpu_weight", parse_cpu_weight)?,
                timeout_stop_sec: opt(&self.timeout_stop, "timeout_stop", parse_seconds)?,
            },
            restart: self
                .restart
                .as_deref()
                .unwrap_or("no")
                .parse()
                .map_err(field("restart"))?,
            restart_timing: restart_timing(
                self.restart_delay.as_deref(),
                self.restart_max_delay.as_deref(),
                self.restart_limit.as_deref(),
            )?,
            ready: self
                .ready
                .as_deref()
                .map(|how| -> Result<_> {
                    Ok(ReadySpec {
                        on: how.parse().map_err(field("ready"))?,
                        timeout_sec: opt(&self.ready_timeout, "ready_timeout", parse_seconds)?,
                    })
                })
                .transpose()?,
            persist: self.persist,
            health,
            pty,
            command: self.command,
        })
    }

    /// The terminal session the fields ask for, checked; None without one.
    fn pty_options(&self) -> Result<Option<crate::pty::PtyOptions>> {
        pty_options(self.pty, self.pty_size.as_deref())
    }

    /// The health check the fields give, checked; None without one.
    fn health_spec(&self) -> Result<Option<HealthSpec>> {
        let check = match (&self.health_cmd, &self.health_http, &self.health_tcp) {
            (Some(command), None, None) => HealthCheck::Cmd {
                command: command.clone(),
            },
            (None, Some(url), None) => HealthCheck::Http { url: url.clone() },
            (None, None, Some(address)) => HealthCheck::Tcp {
                address: address.clone(),
            },
            (None, None, None) => {
                let timing = [
                    ("health_interval", self.health_interval.is_some()),
                    ("health_timeout", self.health_timeout.is_some()),
                    ("health_retries", self.health_retries.is_some()),
                    ("health_start_period", self.health_start_period.is_some()),
                    ("on_unhealthy", self.on_unhealthy.is_some()),
                ];
                if let Some((name, _)) = timing.iter().find(|t| t.1) {
                    return Err(Error::invalid(format!("{name} needs a health check"))
                        .hint("add one of health_cmd, health_http or health_tcp"));
                }
                return Ok(None);
            }
            _ => {
                return Err(Error::invalid(
                    "health_cmd, health_http and health_tcp cannot be combined: a process has one health check",
                )
                .hint("give one of them"))
            }
        };
        let mut spec = HealthSpec::new(check);
        if let Some(i) = &self.health_interval {
            spec.interval_sec = parse_seconds(i)?;
        }
        spec.timeout_sec = match &self.health_timeout {
            Some(t) => parse_seconds(t)?,
            None => spec.timeout_sec.min(spec.interval_sec),
        };
        if let Some(r) = self.health_retries {
            spec.retries = r;
        }
        if let Some(p) = &self.health_start_period {
            spec.start_period_sec = match p.trim() {
                "0" | "0s" => 0,
                p => parse_seconds(p)?,
            };
        }
        if let Some(a) = &self.on_unhealthy {
            spec.on_unhealthy = a.parse::<OnUnhealthy>()?;
        }
        spec.validate()?;
        Ok(Some(spec))
    }
}

/// Restart timing from its text: delay, maximum delay and `N/DURATION`.
pub fn restart_timing(
    delay: Option<&str>,
    max: Option<&str>,
    limit: Option<&str>,
) -> Result<RestartTiming> {
    let (limit_burst, limit_interval_sec) = match limit {
        None => (None, None),
        Some(l) => {
            let bad = || {
                Error::invalid(format!(
                    "restart limit {:?} is not N/DURATION",
                    crate::text::escape(l)
                ))
                .hint("e.g. 5/10min: at most 5 starts within 10 minutes")
            };
            let (n, d) = l.split_once('/').ok_or_else(bad)?;
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            (Some(n), Some(parse_seconds(d.trim())?))
        }
    };
    Ok(RestartTiming {
        delay_sec: delay.map(parse_seconds).transpose()?,
        max_delay_sec: max.map(parse_seconds).transpose()?,
        limit_burst,
        limit_interval_sec,
    })
}

/// `pty` and `pty_size` of a request body, checked: None without a
/// terminal session.
pub fn pty_options(pty: bool, pty_size: Option<&str>) -> Result<Option<crate::pty::PtyOptions>> {
    if !pty {
        return match pty_size {
            Some(_) => Err(Error::invalid("pty_size needs a terminal session")
                .hint("add \"pty\": true, or drop pty_size")),
            None => Ok(None),
        };
    }
    let size = pty_size.map(crate::pty::parse_size).transpose();
    let size = size.map_err(|mut e| {
        e.message = format!("pty_size: {}", e.message);
        e.hint = Some("give ROWSxCOLS, e.g. \"pty_size\": \"40x120\"".into());
        e
    })?;
    Ok(Some(crate::pty::PtyOptions { size }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_request_becomes_the_spec_the_cli_would_build() {
        let r: RunRequest = serde_json::from_value(serde_json::json!({
            "command": ["sleep", "60"], "owner": "agent", "memory_max": "512M",
            "cpu_quota": "50%", "restart": "on-failure", "restart_limit": "5/10min",
            "env": {"A": "1"}, "meta": {"k": "v"}, "workflow": "wf"
        }))
        .unwrap();
        let spec = r.into_spec().unwrap();
        assert_eq!(spec.owner, Some(Owner::Agent));
        assert_eq!(spec.limits.memory_max, Some(512 << 20));
        assert_eq!(spec.limits.cpu_quota_percent, Some(50));
        assert_eq!(spec.restart_timing.limit_burst, Some(5));
        assert_eq!(spec.metadata.workflow.as_deref(), Some("wf"));
    }

    #[test]
    fn a_bad_value_names_its_field_and_unknown_fields_are_refused() {
        let r = RunRequest {
            command: vec!["true".into()],
            memory_max: Some("lots".into()),
            ..Default::default()
        };
        assert!(r
            .into_spec()
            .unwrap_err()
            .message
            .starts_with("memory_max:"));
        let typo = serde_json::from_value::<RunRequest>(
            serde_json::json!({"command": ["true"], "ownr": "agent"}),
        );
        assert!(typo.unwrap_err().to_string().contains("ownr"));
    }

    #[test]
    fn pty_and_pty_size_start_a_terminal_session_and_bad_ones_are_refused() {
        let r = RunRequest {
            command: vec!["sh".into()],
            pty: true,
            pty_size: Some("40x120".into()),
            ..Default::default()
        };
        assert_eq!(r.into_spec().unwrap().pty.unwrap().size, Some((40, 120)));
        let e = pty_options(true, Some("40")).unwrap_err();
        assert!(e.message.starts_with("pty_size: "), "{e}");
        assert!(e.hint.unwrap().contains("40x120"));
        let e = pty_options(false, Some("40x120")).unwrap_err();
        assert!(e.hint.unwrap().contains("\"pty\": true"));
        assert!(pty_options(false, None).unwrap().is_none());
    }
}
