//! The data operations take and return (outside the record model).

use super::*;

/// What `status` knows: the record, systemd's live view, and anything odd.
#[derive(Debug, Clone)]
pub struct Status {
    pub record: Record,
    /// systemd's view while the unit is loaded; null once it is gone.
    pub systemd: Option<ServiceInfo>,
    /// What its cgroup uses now; null when it is not running.
    pub usage: Option<Usage>,
    pub warnings: Vec<String>,
    /// The health check (`record.health`) with what its probes found;
    /// None without a check.
    pub health: Option<HealthView>,
}

/// A record as `list` shows it: with what its cgroup uses now.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: Record,
    /// Null when the process is not running.
    pub usage: Option<Usage>,
    /// Where a running process with a health check stands: the state its
    /// probes stored, `starting` before the first. None (and absent from
    /// JSON) without a check, while queued, or once the process has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
}

/// Which records `list` returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Include ended processes (from the index).
    pub all: bool,
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    pub session: Option<String>,
    pub gap: Option<String>,
    pub state: Option<State>,
}

/// What a stop, kill, restart, pause or resume did to one process.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ActionOutcome {
    pub id: String,
    pub unit: String,
    pub outcome: Outcome,
    pub state: State,
}

/// One process's outcome of an action (JSON: the kebab-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Stopped,
    WasNotRunning,
    Signalled,
    SignalledDeliveredOnResume,
    Restarted,
    RestartedUnpaused,
    StartedAgain,
    Forgotten,
    IsQueued,
    KeepsRunning,
    WasPaused,
    WasNotPaused,
    StaysPaused,
    Paused,
    Resumed,
    StoppedUntilResume,
    StartedFromQueue,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::WasNotRunning => "was-not-running",
            Outcome::Signalled => "signalled",
            Outcome::SignalledDeliveredOnResume => "signalled-delivered-on-resume",
            Outcome::Restarted => "restarted",
            Outcome::RestartedUnpaused => "restarted-unpaused",
            Outcome::StartedAgain => "started-again",
            Outcome::Forgotten => "forgotten",
            Outcome::IsQueued => "is-queued",
            Outcome::KeepsRunning => "keeps-running",
            Outcome::WasPaused => "was-paused",
            Outcome::WasNotPaused => "was-not-paused",
            Outcome::StaysPaused => "stays-paused",
            Outcome::Paused => "paused",
            Outcome::Resumed => "resumed",
            Outcome::StoppedUntilResume => "stopped-until-resume",
            Outcome::StartedFromQueue => "started-from-queue",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `adopt` did: the record, the pids systemd moved, and what was
/// left behind.
#[derive(Debug, Clone, Serialize)]
pub struct Adopted {
    #[serde(flatten)]
    pub record: Record,
    /// The pids handed to systemd: the process, then its descendants.
    pub moved: Vec<u32>,
    /// Descendants left where they are, and why.
    pub warnings: Vec<String>,
}

/// What `resurrect` did for one persisted record.
#[derive(Debug, Clone, Serialize)]
pub struct Resurrection {
    /// The record whose run went down with the user manager.
    pub from: String,
    /// started, queued (a pause holds it), or failed.
    pub outcome: String,
    /// The new record, linked to `from`.
    pub record: Option<Record>,
    pub error: Option<String>,
}

/// What `recover` did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Records rebuilt, oldest first: `recovered_from` says from what.
    pub rebuilt: Vec<Record>,
    /// How many records of the units found were in the index already (left
    /// as they are).
    pub intact: usize,
    /// Units of this index whose record could not be rebuilt, and why.
    pub not_rebuilt: Vec<NotRebuilt>,
    /// Whether the journal could be read (the history of ended runs, and
    /// the details of running ones, come from it).
    pub journal: bool,
}

/// A unit `recover` found but could not rebuild a record for.
#[derive(Debug, Clone, Serialize)]
pub struct NotRebuilt {
    pub id: String,
    pub unit: String,
    pub reason: String,
}

/// Which processes `pause` or `resume` act on: ids, or one group.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Vec<String>,
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    pub session: Option<String>,
    /// Every running managed process.
    pub all: bool,
}

/// How `run` should behave beyond the spec.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Return only after the process has ended (and its exit is recorded).
    pub wait: bool,
    /// Return only once the process is ready (`ready` in the spec).
    pub wait_ready: bool,
    /// While a pause holds the new process's owner (or workflow, or
    /// session), record it as `queued` and start it on resume, instead of
    /// refusing.
    pub queue: bool,
}

/// As JSON, `status` is the record's fields with `health` (the check and
/// its state, replacing the record's `health`, which holds the check
/// only), `systemd`, `usage` and `warnings`.
impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            record: &'a Record,
            #[serde(skip_serializing_if = "Option::is_none")]
            health: Option<&'a HealthView>,
            systemd: &'a Option<ServiceInfo>,
            usage: &'a Option<Usage>,
            warnings: &'a [String],
        }
        let record = match &self.record.health {
            // The check is in `health` already: one key, not two.
            Some(_) if self.health.is_some() => std::borrow::Cow::Owned(Record {
                health: None,
                ..self.record.clone()
            }),
            _ => std::borrow::Cow::Borrowed(&self.record),
        };
        Out {
            record: &record,
            health: self.health.as_ref(),
            systemd: &self.systemd,
            usage: &self.usage,
            warnings: &self.warnings,
        }
        .serialize(s)
    }
}

impl ListFilter {
    pub(super) fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.owner.is_none_or(|o| r.owner == o)
            && self.state.is_none_or(|s| r.state == s)
            && (self.all || self.state.is_some() || !r.state.is_ended())
            && eq(&self.workflow, &r.metadata.workflow)
            && eq(&self.session, &r.metadata.session)
            && eq(&self.gap, &r.metadata.gap)
    }
}

impl Selection {
    /// The selection as people read it: `--owner agent`, `--all`, ids.
    pub fn describe(&self) -> String {
        if !self.ids.is_empty() {
            self.ids.join(" ")
        } else if let Some(o) = self.owner {
            format!("--owner {o}")
        } else if let Some(w) = &self.workflow {
            format!("--workflow {w}")
        } else if let Some(s) = &self.session {
            format!("--session {s}")
        } else {
            "--all".into()
        }
    }

    /// What a record remembers about the pause that froze it.
    pub(super) fn tag(&self) -> String {
        if !self.ids.is_empty() {
            "id".into()
        } else if let Some(o) = self.owner {
            format!("owner:{o}")
        } else if let Some(w) = &self.workflow {
            format!("workflow:{w}")
        } else if let Some(s) = &self.session {
            format!("session:{s}")
        } else {
            "all".into()
        }
    }
}
