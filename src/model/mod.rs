//! The record of a managed process: the JSON contract shared by the index,
//! `--json` output and library users. Readers never deny unknown fields, so
//! older binaries can read records written by newer ones.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Field, Result};

/// Version of the record format written by this build.
pub const RECORD_SCHEMA: u32 = 1;

/// Who a process belongs to: a closed set, one systemd slice each.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    Daemon,
    TargetApp,
    Agent,
    Quality,
    Import,
    Maintenance,
    UserHelper,
}

impl Owner {
    pub const ALL: [Owner; 7] = [
        Owner::Daemon,
        Owner::TargetApp,
        Owner::Agent,
        Owner::Quality,
        Owner::Import,
        Owner::Maintenance,
        Owner::UserHelper,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Daemon => "daemon",
            Owner::TargetApp => "target-app",
            Owner::Agent => "agent",
            Owner::Quality => "quality",
            Owner::Import => "import",
            Owner::Maintenance => "maintenance",
            Owner::UserHelper => "user-helper",
        }
    }

    /// The owner's slice, nested under `refine.slice`. A dash in a slice
    /// name means one level down, so the owner's own dashes are escaped as
    /// systemd-escape does (`refine-user\x2dhelper.slice`).
    pub fn slice(self) -> String {
        format!("refine-{}.slice", self.as_str().replace('-', "\\x2d"))
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Owner {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Owner::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!("unknown owner {:?}", crate::text::escape(s))).hint(format!(
                    "use one of: {}",
                    Owner::ALL.map(Owner::as_str).join(", ")
                ))
            })
    }
}

/// What a process is doing now, or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Started by `run --queue` while a pause held its owner (or workflow,
    /// or session): no unit yet; the `resume` that lifts the pause starts it.
    Queued,
    /// Requested; systemd has not reported it running yet.
    Starting,
    Running,
    /// Frozen through the cgroup freezer.
    Paused,
    /// Ended with exit code 0.
    Exited,
    /// Ended with a non-zero code, a signal, a timeout or an OOM kill.
    Failed,
    /// Ended by `refine-proc stop` or `kill`.
    Stopped,
    /// Vanished with no exit record (e.g. the user manager restarted).
    Lost,
    /// An adopted process whose processes are all gone. Scopes have no
    /// exit status, so there is none to report.
    Ended,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Queued,
        State::Starting,
        State::Running,
        State::Paused,
        State::Exited,
        State::Failed,
        State::Stopped,
        State::Lost,
        State::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
            State::Failed => "failed",
            State::Stopped => "stopped",
            State::Lost => "lost",
            State::Ended => "ended",
        }
    }

    /// True once the process can no longer run (only `restart` revives it).
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            State::Exited | State::Failed | State::Stopped | State::Lost | State::Ended
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        State::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!("unknown state {:?}", crate::text::escape(s))).hint(format!(
                    "use one of: {}",
                    State::ALL.map(State::as_str).join(", ")
                ))
            })
    }
}

/// What kind of systemd unit holds a process.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum UnitKind {
    /// A transient service refine-proc started (`run`).
    #[default]
    Service,
    /// A transient scope holding processes that were already running
    /// (`adopt`). A scope has no command line, environment or exit status.
    Scope,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Service => "service",
            UnitKind::Scope => "scope",
        }
    }

    /// The unit name suffix, with its dot.
    pub fn suffix(self) -> &'static str {
        match self {
            UnitKind::Service => ".service",
            UnitKind::Scope => ".scope",
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// systemd's `Restart=` policies that refine-proc offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            _ => Err(Error::invalid(format!(
                "unknown restart policy {:?}",
                crate::text::escape(s)
            ))
            .hint("use one of: no, on-failure, always")),
        }
    }
}

/// A point in time, serialized as RFC 3339 in UTC with milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// From systemd's microseconds since the epoch; 0 means "never".
    pub fn from_usec(usec: u64) -> Option<Self> {
        (usec != 0).then(|| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_micros(usec)))
    }

    /// Time elapsed since then (zero if then is in the future).
    pub fn elapsed(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.0)
            .unwrap_or(Duration::ZERO)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// Workflow context attached to a process (also the API's nested
/// `"metadata"` of a run).
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
#[serde(default)]
pub struct Metadata {
    pub workflow: Option<String>,
    pub gap: Option<String>,
    pub session: Option<String>,
    pub mode: Option<String>,
    pub runner: Option<String>,
    /// Free-form `--meta KEY=VALUE` pairs.
    pub extra: BTreeMap<String, String>,
}

/// Resource limits as systemd was last told: given at start, changed by
/// `set` while the process runs. None means "not set by refine-proc".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Limits {
    /// `MemoryMax=`, bytes.
    pub memory_max: Option<u64>,
    /// Percent of one CPU (150 = one and a half CPUs).
    pub cpu_quota_percent: Option<u64>,
    pub tasks_max: Option<u64>,
    pub runtime_max_sec: Option<u64>,
    /// `MemoryHigh=`, bytes: above it the kernel throttles and reclaims.
    pub memory_high: Option<u64>,
    /// `CPUWeight=`, 1 to 10000 (systemd's default is 100).
    pub cpu_weight: Option<u64>,
    /// `TimeoutStopSec=`: how long a stop waits before SIGKILL.
    pub timeout_stop_sec: Option<u64>,
}

/// A new value for one limit in a change made by `set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitValue {
    Value(u64),
    /// No limit (`infinity`); the record then holds None.
    Infinity,
}

impl LimitValue {
    /// What the record keeps: None for no limit.
    pub fn recorded(self) -> Option<u64> {
        match self {
            LimitValue::Value(v) => Some(v),
            LimitValue::Infinity => None,
        }
    }
}

/// The limits `set` changes at run time; None leaves a limit as it is.
/// (RuntimeMaxSec and TimeoutStopSec cannot be changed on a running unit.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitChange {
    pub memory_max: Option<LimitValue>,
    pub memory_high: Option<LimitValue>,
    pub cpu_quota_percent: Option<LimitValue>,
    pub cpu_weight: Option<LimitValue>,
    pub tasks_max: Option<LimitValue>,
}

impl LimitChange {
    pub fn is_empty(&self) -> bool {
        *self == LimitChange::default()
    }

    /// Checks the change before anything is asked of systemd: at least one
    /// limit, and every value in the range systemd accepts.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::invalid("no limit to change").hint_naming([
                "give at least one of ".into(),
                Field::MemoryMax.into(),
                ", ".into(),
                Field::MemoryHigh.into(),
                ", ".into(),
                Field::CpuQuota.into(),
                ", ".into(),
                Field::CpuWeight.into(),
                ", ".into(),
                Field::TasksMax.into(),
                " (a value or `infinity`)".into(),
            ]));
        }
        let check =
            |field: Field, v: Option<LimitValue>, range: std::ops::RangeInclusive<u64>| match v {
                Some(LimitValue::Value(n)) if !range.contains(&n) => Err(Error::naming(
                    crate::error::ErrorKind::Invalid,
                    [field.into(), format!(" {n} is out of range").into()],
                )
                .about(field)
                .hint(format!(
                    "use {} to {}, or infinity for no limit",
                    range.start(),
                    range.end()
                ))),
                _ => Ok(()),
            };
        check(Field::MemoryMax, self.memory_max, 1..=u64::MAX - 1)?;
        check(Field::MemoryHigh, self.memory_high, 1..=u64::MAX - 1)?;
        check(
            Field::CpuQuota,
            self.cpu_quota_percent,
            1..=MAX_CPU_QUOTA_PERCENT,
        )?;
        check(Field::CpuWeight, self.cpu_weight, CPU_WEIGHT_RANGE)?;
        check(Field::TasksMax, self.tasks_max, 1..=u64::MAX - 1)?;
        Ok(())
    }

    /// Applies the change to recorded limits (`infinity` becomes None).
    pub fn apply(&self, limits: &mut Limits) {
        let set = |slot: &mut Option<u64>, v: Option<LimitValue>| {
            if let Some(v) = v {
                *slot = v.recorded();
            }
        };
        set(&mut limits.memory_max, self.memory_max);
        set(&mut limits.memory_high, self.memory_high);
        set(&mut limits.cpu_quota_percent, self.cpu_quota_percent);
        set(&mut limits.cpu_weight, self.cpu_weight);
        set(&mut limits.tasks_max, self.tasks_max);
    }
}

/// The values `CPUWeight=` accepts.
pub const CPU_WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// The largest CPU quota accepted, in percent of one CPU.
pub const MAX_CPU_QUOTA_PERCENT: u64 = 100_000;

/// Limits set with `set --owner` on an owner's slice, as the index keeps
/// them (`owners/<owner>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnerLimits {
    pub owner: Owner,
    /// The slice the limits apply to, e.g. `refine-agent.slice`.
    pub slice: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Restart {
    pub policy: RestartPolicy,
    /// How many times the process was started again after its first start.
    pub count: u32,
    /// Delay before a restart (RestartSec=); with `max_delay_sec` the first
    /// of delays that double up to it.
    #[serde(flatten)]
    pub timing: RestartTiming,
    /// Who restarts it: `systemd` (Restart=, and RestartSteps= for growing
    /// delays on systemd 254 and later) or `daemon` (growing delays on
    /// older systemd, done by `refine-proc daemon`).
    pub by: RestartBy,
    /// The last run that failed, kept across later runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
}

/// When a process counts as ready, for `run --wait-ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadySpec {
    pub on: Readiness,
    /// How long it may take: TimeoutStartSec= for `notify` (systemd fails
    /// the start after it), the probe deadline for `health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// The process sends READY=1 (sd_notify): Type=notify.
    Notify,
    /// Its health check passes once.
    Health,
}

impl std::str::FromStr for Readiness {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "notify" => Ok(Readiness::Notify),
            "health" => Ok(Readiness::Health),
            _ => Err(
                Error::invalid(format!("unknown readiness {:?}", crate::text::escape(s)))
                    .hint_naming([
                        "use ".into(),
                        Field::Ready.into(),
                        " notify (the process sends READY=1) or ".into(),
                        Field::Ready.into(),
                        " health (its health check passes)".into(),
                    ]),
            ),
        }
    }
}

/// When and how often a process is restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RestartTiming {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay_sec: Option<u64>,
    /// At most this many starts within `limit_interval_sec`
    /// (StartLimitBurst=, StartLimitIntervalSec=); then it stays failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_interval_sec: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartBy {
    #[default]
    Systemd,
    Daemon,
}

/// How a failed run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    pub at: Timestamp,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub result: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Logs {
    /// The journalctl command line that shows this process's output.
    pub journal: String,
}

/// How one run ended, as systemd reported it to the exit hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// systemd's service result: success, exit-code, signal, timeout, ...
    pub result: String,
    pub code: Option<i32>,
    /// Signal name without the SIG prefix, e.g. "TERM".
    pub signal: Option<String>,
    pub at: Timestamp,
    /// systemd's INVOCATION_ID of the run that ended.
    pub invocation: Option<String>,
}

/// Everything refine-proc knows about one managed process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    #[serde(default)]
    pub schema: u32,
    pub id: String,
    pub unit: String,
    /// A service (started by `run`) or a scope (adopted by `adopt`).
    #[serde(default)]
    pub kind: UnitKind,
    pub owner: Owner,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment given with `--env` (REFINE_* variables not included).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Who asked for it: uid, acting owner, parent process.
    #[serde(default)]
    pub requested_by: crate::provenance::RequestedBy,
    #[serde(default)]
    pub pid: Option<u32>,
    pub state: State,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub exit_signal: Option<String>,
    #[serde(default)]
    pub result: Option<String>,
    /// Where the exit fields come from: `hook` (systemd's report to the
    /// exit hook) or `journal` (the user manager's log line, read after
    /// the end went unrecorded); null while no exit is known.
    #[serde(default)]
    pub exit_source: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    /// A terminal session (`run --pty`): where its socket is. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<crate::pty::PtyRecord>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default)]
    pub logs: Logs,
    /// How many runs have ended (each exit the hook recorded); restarts
    /// are derived from it, never predicted.
    #[serde(default)]
    pub runs_ended: u32,
    /// The invocation (systemd's InvocationID) that `stop`, `kill` or
    /// `restart` was asked to end; its exit is reported as `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested_for: Option<String>,
    /// The invocation whose exit the record holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_invocation: Option<String>,
    /// Why the process is frozen, while refine-proc holds it paused: the
    /// selector of the `pause` that froze it (`id`, `owner:agent`,
    /// `workflow:w`, `session:s`, `all`). `resume` of a group thaws only
    /// what that group's pause froze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// When it counts as ready (`run --ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadySpec>,
    /// `run --persist`: `resurrect` starts it again after the user manager
    /// went away while it ran.
    #[serde(default)]
    pub persist: bool,
    /// The record whose run this one resumes, after a manager restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resurrected_from: Option<String>,
    /// The record `resurrect` started in this one's place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resurrected_as: Option<String>,
    /// The `run` (or `restart`) process between its index write and
    /// systemd's answer, as `PID:STARTTIME`: once it is gone, a `starting`
    /// record without a unit needs no grace period to be called lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<String>,
    /// Set when the record was rebuilt from systemd after the index lost it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_from: Option<String>,
    /// `run --health-*`: the health check the daemon runs. Its results are
    /// kept apart (`health/<id>.json`), not in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub health: Option<crate::health::HealthSpec>,
}

impl Record {
    /// A new run began in the same unit (a restart of a running process):
    /// its main pid (when systemd named one) and its start replace the last
    /// run's, so `list` and `status` agree.
    pub fn began_run(&mut self, pid: Option<u32>) {
        self.pid = pid.or(self.pid);
        self.started_at = Some(Timestamp::now());
    }

    /// Forgets how the previous run ended, before starting a new one.
    pub fn clear_exit(&mut self) {
        self.ended_at = None;
        self.exit_code = None;
        self.exit_signal = None;
        self.result = None;
        self.exit_source = None;
    }

    /// Records how a run ended. Only facts: whether systemd restarts the
    /// service afterwards is seen in systemd's live state, not guessed here.
    pub fn apply_exit(&mut self, exit: Exit) {
        let stopped_by_us = exit.invocation.is_some() && self.stop_requested_for == exit.invocation;
        self.state = if stopped_by_us {
            State::Stopped
        } else if exit.result == "success" && exit.code == Some(0) {
            State::Exited
        } else if exit.result == "success" && exit.signal.is_some() {
            // A clean signal (TERM, INT, HUP, PIPE) counts as success to
            // systemd: something asked the process to stop (systemctl stop).
            State::Stopped
        } else {
            State::Failed
        };
        self.runs_ended += 1;
        self.paused_by = None;
        if self.state == State::Failed {
            self.restart.last_failure = Some(Failure {
                at: exit.at,
                exit_code: exit.code,
                exit_signal: exit.signal.clone(),
                result: Some(exit.result.clone()),
            });
        }
        self.ended_at = Some(exit.at);
        self.exit_code = exit.code;
        self.exit_signal = exit.signal;
        self.result = Some(exit.result);
        self.exit_source = Some("hook".into());
        self.last_exit_invocation = exit.invocation;
    }

    /// Whether the last run was ended by `refine-proc stop`, `kill` or
    /// `restart` (not by the process, nor by someone else).
    pub fn stopped_on_request(&self) -> bool {
        self.state == State::Stopped
            && self.stop_requested_for.is_some()
            && self.stop_requested_for == self.last_exit_invocation
    }
}

// As JSON a timestamp is an RFC 3339 string (see its Serialize).
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

mod naming;
pub use naming::*;

#[cfg(test)]
mod tests;
