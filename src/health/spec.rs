//! What a health check is: its kind, its timings and what to do when it fails,
//! all checked before anything runs.

use crate::error::{Error, ErrorKind, Field, Result};
use crate::text::escape;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::http::parse_http_url;
use super::tcp::parse_tcp_address;
use super::*;

/// A health check as `run --health-*` gives it, kept in the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub check: HealthCheck,
    /// Seconds between the start of two probes (default 10).
    #[serde(default = "default_interval")]
    pub interval_sec: u64,
    /// Seconds one probe may take, at most `interval_sec` (default 5).
    #[serde(default = "default_timeout")]
    pub timeout_sec: u64,
    /// Consecutive counted failures before `unhealthy` (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds after the start of a run during which failures do not count
    /// while the process has not yet been healthy (default 0).
    #[serde(default)]
    pub start_period_sec: u64,
    /// What the daemon does when the process becomes unhealthy.
    #[serde(default)]
    pub on_unhealthy: OnUnhealthy,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SEC
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SEC
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HealthCheck {
    /// `/bin/sh -c COMMAND`; healthy when it exits 0.
    Cmd { command: String },
    /// A plain HTTP/1.1 GET of `http://host[:port]/path`; healthy on a
    /// status from 200 to 399.
    Http { url: String },
    /// A TCP connection to `HOST:PORT`; healthy when it is accepted.
    Tcp { address: String },
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::Cmd { command } => write!(f, "cmd {}", escape(command)),
            HealthCheck::Http { url } => write!(f, "http GET {}", escape(url)),
            HealthCheck::Tcp { address } => write!(f, "tcp connect {}", escape(address)),
        }
    }
}

/// What the daemon does when a process becomes unhealthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnhealthy {
    /// Restart it (as `refine-proc restart`).
    Restart,
    /// Stop it (as `refine-proc stop`).
    Stop,
    /// Only report it (status, list, the `unhealthy` event).
    #[default]
    None,
}

impl OnUnhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnhealthy::Restart => "restart",
            OnUnhealthy::Stop => "stop",
            OnUnhealthy::None => "none",
        }
    }
}

impl fmt::Display for OnUnhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnUnhealthy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "restart" => Ok(OnUnhealthy::Restart),
            "stop" => Ok(OnUnhealthy::Stop),
            "none" => Ok(OnUnhealthy::None),
            _ => Err(Error::naming(
                ErrorKind::Invalid,
                [
                    "unknown ".into(),
                    Field::OnUnhealthy.into(),
                    format!(" action {:?}", escape(s)).into(),
                ],
            )
            .hint("use one of: restart, stop, none")),
        }
    }
}

impl HealthSpec {
    /// A check with the default interval, timeout, retries, start period
    /// and action.
    pub fn new(check: HealthCheck) -> HealthSpec {
        HealthSpec {
            check,
            interval_sec: DEFAULT_INTERVAL_SEC,
            timeout_sec: DEFAULT_TIMEOUT_SEC,
            retries: DEFAULT_RETRIES,
            start_period_sec: 0,
            on_unhealthy: OnUnhealthy::None,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_sec)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_sec)
    }

    pub fn start_period(&self) -> Duration {
        Duration::from_secs(self.start_period_sec)
    }

    /// Checks the check and its timing, before anything runs.
    pub fn validate(&self) -> Result<()> {
        match &self.check {
            HealthCheck::Cmd { command } => check_command(command)?,
            HealthCheck::Http { url } => {
                parse_http_url(url)?;
            }
            HealthCheck::Tcp { address } => {
                parse_tcp_address(address)?;
            }
        }
        let period = |field: Field, v: u64, min: u64| {
            if v < min || v > MAX_PERIOD_SEC {
                Err(Error::naming(
                    ErrorKind::Invalid,
                    [field.into(), format!(" {v}s is out of range").into()],
                )
                .hint(format!(
                    "use {min}s to {MAX_PERIOD_SEC}s (one day), e.g. 10s or 1min"
                )))
            } else {
                Ok(())
            }
        };
        period(Field::HealthInterval, self.interval_sec, 1)?;
        period(Field::HealthTimeout, self.timeout_sec, 1)?;
        period(Field::HealthStartPeriod, self.start_period_sec, 0)?;
        if self.timeout_sec > self.interval_sec {
            return Err(Error::naming(
                ErrorKind::Invalid,
                [
                    Field::HealthTimeout.into(),
                    format!(" {}s is longer than ", self.timeout_sec).into(),
                    Field::HealthInterval.into(),
                    format!(" {}s", self.interval_sec).into(),
                ],
            )
            .hint_naming([
                "a probe must end before the next one starts: lower ".into(),
                Field::HealthTimeout.into(),
                " or raise ".into(),
                Field::HealthInterval.into(),
            ]));
        }
        if self.retries == 0 || self.retries > MAX_RETRIES {
            return Err(Error::naming(
                ErrorKind::Invalid,
                [
                    Field::HealthRetries.into(),
                    format!(" {} is out of range", self.retries).into(),
                ],
            )
            .hint(format!(
                "use 1 to {MAX_RETRIES}: the failures in a row before the process is unhealthy"
            )));
        }
        Ok(())
    }
}

fn check_command(command: &str) -> Result<()> {
    let cmd = Field::HealthCmd;
    if command.trim().is_empty() {
        return Err(
            Error::naming(ErrorKind::Invalid, [cmd.into(), " is empty".into()]).hint_naming([
                "give a shell command that exits 0 when the process is healthy, e.g. ".into(),
                cmd.into(),
                " 'curl -fsS localhost:8080/health'".into(),
            ]),
        );
    }
    if command.len() > MAX_HEALTH_COMMAND {
        return Err(Error::naming(
            ErrorKind::Invalid,
            [
                cmd.into(),
                format!(
                    " is {} bytes, more than the {MAX_HEALTH_COMMAND} accepted",
                    command.len()
                )
                .into(),
            ],
        )
        .hint("put the check in a script and pass its path"));
    }
    if command.contains('\0') {
        return Err(Error::naming(
            ErrorKind::Invalid,
            [cmd.into(), " contains a NUL byte".into()],
        ));
    }
    Ok(())
}
