//! A launch as a surface receives it: the CLI's `run` options by their
//! snake_case names, with values written as the CLI writes them (`512M`,
//! `50%`, `1h 30m`, `5/10min`). The HTTP API's body (`POST
//! /api/v1/processes`) and the MCP server's `run` tool are this type, so
//! one place checks a run for every surface; [`RunRequest::into_spec`]
//! checks and converts it, with errors that name the field. The API's
//! nested `metadata` and `limits` objects are accepted too, each value
//! given once, there or at the top.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Field, Result};
use crate::health::{HealthCheck, HealthSpec, OnUnhealthy};
use crate::model::{Limits, Metadata, Owner, ReadySpec, RestartTiming};
use crate::spec::RunSpec;
use crate::text::{parse_cpu_quota, parse_cpu_weight, parse_seconds, parse_size};

/// What to run and how (every field but `command` is optional).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
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
    /// Working directory (default: the caller's). The HTTP API, which
    /// has no directory of yours, takes an absolute one (default: your
    /// home directory).
    #[schema(value_type = Option<String>)]
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
    /// While a pause holds the owner, queue the run instead of refusing.
    pub queue: bool,
    /// workflow, gap, session, mode, runner and `extra` (as `meta`),
    /// nested, as the HTTP API takes them.
    pub metadata: Option<Metadata>,
    /// The limits nested, as the HTTP API takes them (`cpu_weight` and
    /// `tasks_max` as numbers).
    pub limits: Option<LimitsText>,
}

/// Limits as people write them (`"2G"`, `"150%"`, `"1h"`), nested.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct LimitsText {
    pub memory_max: Option<String>,
    pub memory_high: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_weight: Option<u64>,
    pub tasks_max: Option<u64>,
    pub runtime_max: Option<String>,
    pub timeout_stop: Option<String>,
}

impl LimitsText {
    /// The limits, read as the policy file's are, plus the stop timeout.
    pub fn parse_limits(&self) -> Result<Limits> {
        let shared = crate::policy::LimitText {
            memory_max: self.memory_max.clone(),
            memory_high: self.memory_high.clone(),
            cpu_quota: self.cpu_quota.clone(),
            cpu_weight: self.cpu_weight,
            tasks_max: self.tasks_max,
            runtime_max: self.runtime_max.clone(),
        };
        let limits = shared.parse()?;
        Ok(Limits {
            timeout_stop_sec: self
                .timeout_stop
                .as_deref()
                .map(parse_seconds)
                .transpose()?,
            ..limits
        })
    }
}

/// Moves a nested value to the top, where it is checked: an error when
/// both places give it.
fn once<T>(top: &mut Option<T>, nested: Option<T>, name: &str, within: &str) -> Result<()> {
    match (top.is_some(), nested) {
        (true, Some(_)) => Err(Error::invalid(format!(
            "{name} is given twice: at the top and in {within}"
        ))
        .hint(format!("give {name} once"))),
        (false, Some(v)) => {
            *top = Some(v);
            Ok(())
        }
        (_, None) => Ok(()),
    }
}

impl RunRequest {
    /// Checks every value and builds the spec; errors name the field as
    /// JSON does (`memory_max: invalid size ...`).
    pub fn into_spec(self) -> Result<RunSpec> {
        self.spec().map_err(|e| e.worded(Field::json_field))
    }

    /// Checks every value and builds the spec; errors carry the field
    /// ([`Error::field`]) for the surface to name ([`Error::worded`]).
    pub fn spec(mut self) -> Result<RunSpec> {
        self.unnest()?;
        let field = |f: Field| move |e: Error| e.about(f);
        let opt = |v: &Option<String>, f: Field, parse: fn(&str) -> Result<u64>| {
            v.as_deref().map(parse).transpose().map_err(field(f))
        };
        if self.tasks_max == Some(0) {
            return Err(Error::invalid("must be at least 1")
                .hint("give a number of tasks, e.g. 64")
                .about(Field::TasksMax));
        }
        let owner = self
            .owner
            .as_deref()
            .map(str::parse::<Owner>)
            .transpose()
            .map_err(field(Field::Owner))?;
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
                memory_max: opt(&self.memory_max, Field::MemoryMax, parse_size)?,
                cpu_quota_percent: opt(&self.cpu_quota, Field::CpuQuota, parse_cpu_quota)?,
                tasks_max: self.tasks_max,
                runtime_max_sec: opt(&self.runtime_max, Field::RuntimeMax, parse_seconds)?,
                memory_high: opt(&self.memory_high, Field::MemoryHigh, parse_size)?,
                cpu_weight: opt(&self.cpu_weight, Field::CpuWeight, parse_cpu_weight)?,
                timeout_stop_sec: opt(&self.timeout_stop, Field::TimeoutStop, parse_seconds)?,
            },
            restart: self
                .restart
                .as_deref()
                .unwrap_or("no")
                .parse()
                .map_err(field(Field::Restart))?,
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
                        on: how.parse().map_err(field(Field::Ready))?,
                        timeout_sec: opt(&self.ready_timeout, Field::ReadyTimeout, parse_seconds)?,
                    })
                })
                .transpose()?,
            persist: self.persist,
            health,
            pty,
            command: self.command,
        })
    }

    /// The nested `metadata` and `limits` moved to the top-level fields,
    /// so one parser reads them.
    fn unnest(&mut self) -> Result<()> {
        if let Some(m) = self.metadata.take() {
            once(&mut self.workflow, m.workflow, "workflow", "metadata")?;
            once(&mut self.gap, m.gap, "gap", "metadata")?;
            once(&mut self.session, m.session, "session", "metadata")?;
            once(&mut self.mode, m.mode, "mode", "metadata")?;
            once(&mut self.runner, m.runner, "runner", "metadata")?;
            for (k, v) in m.extra {
                if self.meta.insert(k.clone(), v).is_some() {
                    return Err(Error::invalid(format!(
                        "meta {:?} is given twice: in meta and in metadata.extra",
                        crate::text::escape(&k)
                    ))
                    .hint("give each key once"));
                }
            }
        }
        if let Some(l) = self.limits.take() {
            let l2 = "limits";
            once(&mut self.memory_max, l.memory_max, "memory_max", l2)?;
            once(&mut self.memory_high, l.memory_high, "memory_high", l2)?;
            once(&mut self.cpu_quota, l.cpu_quota, "cpu_quota", l2)?;
            let weight = l.cpu_weight.map(|w| w.to_string());
            once(&mut self.cpu_weight, weight, "cpu_weight", l2)?;
            once(&mut self.tasks_max, l.tasks_max, "tasks_max", l2)?;
            once(&mut self.runtime_max, l.runtime_max, "runtime_max", l2)?;
            once(&mut self.timeout_stop, l.timeout_stop, "timeout_stop", l2)?;
        }
        Ok(())
    }

    /// The terminal session the fields ask for, checked; None without one.
    fn pty_options(&self) -> Result<Option<crate::pty::PtyOptions>> {
        pty_checked(self.pty, self.pty_size.as_deref())
    }

    /// The health check the fields give, checked; None without one.
    fn health_spec(&self) -> Result<Option<HealthSpec>> {
        let kinds = [
            (Field::HealthCmd, &self.health_cmd),
            (Field::HealthHttp, &self.health_http),
            (Field::HealthTcp, &self.health_tcp),
        ];
        let mut given = kinds.iter().filter(|k| k.1.is_some()).map(|k| k.0);
        let (first, second) = (given.next(), given.next());
        if let Some(second) = second {
            return Err(Error::invalid(
                "cannot be combined with another health check: a process has one",
            )
            .hint("give one check: a command, an HTTP URL or a TCP address")
            .about(second));
        }
        let check = match first {
            Some(Field::HealthCmd) => HealthCheck::Cmd {
                command: self.health_cmd.clone().unwrap_or_default(),
            },
            Some(Field::HealthHttp) => HealthCheck::Http {
                url: self.health_http.clone().unwrap_or_default(),
            },
            Some(_) => HealthCheck::Tcp {
                address: self.health_tcp.clone().unwrap_or_default(),
            },
            None => {
                let timing = [
                    (Field::HealthInterval, self.health_interval.is_some()),
                    (Field::HealthTimeout, self.health_timeout.is_some()),
                    (Field::HealthRetries, self.health_retries.is_some()),
                    (Field::HealthStartPeriod, self.health_start_period.is_some()),
                    (Field::OnUnhealthy, self.on_unhealthy.is_some()),
                ];
                if let Some((f, _)) = timing.iter().find(|t| t.1) {
                    return Err(Error::invalid("needs a health check")
                        .hint("add a check: a command, an HTTP URL or a TCP address")
                        .about(*f));
                }
                return Ok(None);
            }
        };
        let seconds = |v: &str, f: Field| parse_seconds(v).map_err(|e| e.about(f));
        let mut spec = HealthSpec::new(check);
        if let Some(i) = &self.health_interval {
            spec.interval_sec = seconds(i, Field::HealthInterval)?;
        }
        spec.timeout_sec = match &self.health_timeout {
            Some(t) => seconds(t, Field::HealthTimeout)?,
            None => spec.timeout_sec.min(spec.interval_sec),
        };
        if let Some(r) = self.health_retries {
            spec.retries = r;
        }
        if let Some(p) = &self.health_start_period {
            spec.start_period_sec = match p.trim() {
                "0" | "0s" => 0,
                p => seconds(p, Field::HealthStartPeriod)?,
            };
        }
        if let Some(a) = &self.on_unhealthy {
            spec.on_unhealthy = a
                .parse::<OnUnhealthy>()
                .map_err(|e| e.about(Field::OnUnhealthy))?;
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
                Error::invalid(format!("{:?} is not N/DURATION", crate::text::escape(l)))
                    .hint("e.g. 5/10min: at most 5 starts within 10 minutes")
                    .about(Field::RestartLimit)
            };
            let (n, d) = l.split_once('/').ok_or_else(bad)?;
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            let d = parse_seconds(d.trim()).map_err(|e| e.about(Field::RestartLimit))?;
            (Some(n), Some(d))
        }
    };
    let seconds =
        |v: Option<&str>, f: Field| v.map(parse_seconds).transpose().map_err(|e| e.about(f));
    Ok(RestartTiming {
        delay_sec: seconds(delay, Field::RestartDelay)?,
        max_delay_sec: seconds(max, Field::RestartMaxDelay)?,
        limit_burst,
        limit_interval_sec,
    })
}

/// `pty` and `pty_size` of a request body, checked: None without a
/// terminal session.
pub fn pty_options(pty: bool, pty_size: Option<&str>) -> Result<Option<crate::pty::PtyOptions>> {
    pty_checked(pty, pty_size).map_err(|e| e.worded(Field::json_field))
}

fn pty_checked(pty: bool, pty_size: Option<&str>) -> Result<Option<crate::pty::PtyOptions>> {
    if !pty {
        return match pty_size {
            Some(_) => Err(Error::invalid("pty_size needs a terminal session")
                .hint("add \"pty\": true, or drop pty_size")
                .about(Field::PtySize)),
            None => Ok(None),
        };
    }
    let size = pty_size.map(crate::pty::parse_size).transpose();
    let size = size.map_err(|e| e.hint("give ROWSxCOLS, e.g. 40x120").about(Field::PtySize))?;
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
    fn the_apis_nested_metadata_and_limits_read_as_the_top_level_fields() {
        let nested: RunRequest = serde_json::from_value(serde_json::json!({
            "command": ["sleep", "60"], "metadata": {"workflow": "wf", "extra": {"k": "v"}},
            "limits": {"memory_max": "256M", "cpu_weight": 50, "tasks_max": 8}, "queue": true
        }))
        .unwrap();
        assert!(nested.queue);
        let flat: RunRequest = serde_json::from_value(serde_json::json!({
            "command": ["sleep", "60"], "workflow": "wf", "meta": {"k": "v"},
            "memory_max": "256M", "cpu_weight": "50", "tasks_max": 8
        }))
        .unwrap();
        let (n, f) = (nested.into_spec().unwrap(), flat.into_spec().unwrap());
        assert_eq!(format!("{n:?}"), format!("{f:?}"));
        assert_eq!(n.limits.cpu_weight, Some(50));
        assert_eq!(n.metadata.workflow.as_deref(), Some("wf"));
        // Given in both places: refused, not one silently preferred.
        let twice: RunRequest = serde_json::from_value(serde_json::json!({
            "command": ["true"], "memory_max": "1G", "limits": {"memory_max": "2G"}
        }))
        .unwrap();
        let e = twice.into_spec().unwrap_err();
        assert!(e.message.contains("memory_max is given twice"), "{e}");
        // A bad nested value names its field; an unknown nested limit is refused.
        let bad: RunRequest = serde_json::from_value(serde_json::json!({
            "command": ["true"], "limits": {"memory_max": "lots"}
        }))
        .unwrap();
        assert!(bad
            .into_spec()
            .unwrap_err()
            .message
            .starts_with("memory_max:"));
        let typo = serde_json::from_value::<RunRequest>(
            serde_json::json!({"command": ["true"], "limits": {"memory": "1G"}}),
        );
        assert!(typo.unwrap_err().to_string().contains("memory"));
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
    fn an_error_carries_its_field_and_each_surface_words_it() {
        let bad = |r: RunRequest| r.spec().unwrap_err();
        let e = bad(RunRequest {
            command: vec!["true".into()],
            restart_limit: Some("5".into()),
            restart: Some("always".into()),
            ..Default::default()
        });
        assert_eq!(e.field, Some(Field::RestartLimit));
        let cli = e.clone().worded(Field::flag).message;
        assert!(cli.starts_with("--restart-limit: "), "{cli}");
        let api = e.worded(Field::json_field).message;
        assert!(api.starts_with("restart_limit: "), "{api}");
        let e = bad(RunRequest {
            command: vec!["true".into()],
            health_cmd: Some("true".into()),
            health_tcp: Some("localhost:1".into()),
            ..Default::default()
        });
        assert_eq!(e.field, Some(Field::HealthTcp));
        assert!(e.message.contains("cannot be combined"), "{e}");
        let e = bad(RunRequest {
            command: vec!["true".into()],
            health_interval: Some("5s".into()),
            ..Default::default()
        });
        assert_eq!(
            e.worded(Field::flag).message,
            "--health-interval: needs a health check"
        );
        // A message that names its input already is left alone.
        let named = Error::invalid("--label is empty").about(Field::Label);
        assert_eq!(named.worded(Field::flag).message, "--label is empty");
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
