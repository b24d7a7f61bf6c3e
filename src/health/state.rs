//! The pure state machine that turns probe results into `starting`, `healthy`
//! or `unhealthy`, and the event of a transition.

use crate::events::Event;
use crate::model::{Record, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

use super::*;

/// Where a process stands, as its probes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// No success yet in this run.
    Starting,
    Healthy,
    /// `retries` counted failures in a row.
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the probes of one run have found; kept outside the record (see
/// [`crate::index::Index::save_health`]), rewritten after every probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    /// Counted failures in a row (reset by a success).
    pub failures: u32,
    /// The latest probe's result.
    pub last: Option<ProbeResult>,
    /// When `status` last changed.
    pub since: Timestamp,
}

impl HealthState {
    /// The state of a run nothing has probed yet: starting.
    pub fn new(now: Timestamp) -> HealthState {
        HealthState {
            status: HealthStatus::Starting,
            failures: 0,
            last: None,
            since: now,
        }
    }

    /// Takes in one probe result of the run that started at `run_started`;
    /// returns the new status when it changed. As Docker does it: a
    /// success makes the process healthy (and resets the failures); a
    /// failure counts unless it happens within the start period while the
    /// process has not been healthy yet; `retries` counted failures in a
    /// row make it unhealthy.
    pub fn apply(
        &mut self,
        spec: &HealthSpec,
        result: ProbeResult,
        run_started: Timestamp,
    ) -> Option<HealthStatus> {
        let before = self.status;
        let at = result.at;
        if result.ok {
            self.failures = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let start_period_ends = run_started.0 + spec.start_period();
            let grace = self.status == HealthStatus::Starting && at.0 < start_period_ends;
            if !grace {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= spec.retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.last = Some(result);
        (self.status != before).then(|| {
            self.since = at;
            self.status
        })
    }
}

/// What `status` shows of a process's health: the check and, once the
/// daemon has probed it, the state (null before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    #[serde(flatten)]
    pub spec: HealthSpec,
    pub state: Option<HealthState>,
}

/// The event of a health transition (`healthy`, `unhealthy`,
/// `health-starting`), with the status before and the probe that caused it.
pub fn health_event(
    record: &Record,
    from: HealthStatus,
    to: HealthStatus,
    last: &ProbeResult,
) -> Event {
    let name = match to {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Unhealthy => "unhealthy",
        HealthStatus::Starting => "health-starting",
    };
    let mut event = Event::about(name, record)
        .with("from", from)
        .with("ok", last.ok)
        .with("probe_at", last.at)
        .with("duration_ms", last.duration_ms)
        .with("exit_code", last.exit_code)
        .with("output", tail_text(last.output.as_bytes(), EVENT_OUTPUT));
    event.actor = Some("refine-proc".into());
    if let Some(spec) = &record.health {
        event = event
            .with("check", spec.check.to_string())
            .with("on_unhealthy", spec.on_unhealthy);
    }
    event
}
