//! How the core's composite answers look as JSON, for the OpenAPI
//! document. The core serializes them (`list --json`, `status --json`,
//! ...); these types are never built, only described, and the e2e tests
//! check every body the server returns against the document.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{Record, State};

/// A record as `list` shows it: its fields, with usage and health.
#[derive(Serialize, ToSchema)]
#[schema(as = Listed)]
pub struct ListedDoc {
    #[serde(flatten)]
    pub record: Record,
    /// What its cgroup uses now (memory, CPU time, tasks); null when not running.
    #[schema(value_type = Option<Object>)]
    pub usage: Option<()>,
    /// starting, healthy, unhealthy; absent without a health check.
    pub health_status: Option<String>,
}

/// `status`: the record's fields with systemd's live view, usage, health
/// and warnings.
#[derive(Serialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusDoc {
    #[serde(flatten)]
    pub record: Record,
    /// The health check and where it stands (replaces the record's `health`).
    #[schema(value_type = Option<Object>)]
    pub health: Option<()>,
    /// systemd's view while the unit is loaded; null once it is gone.
    #[schema(value_type = Option<Object>)]
    pub systemd: Option<()>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<()>,
    pub warnings: Vec<String>,
}

/// What a stop, kill, restart, pause, resume or forget did to one process.
#[derive(Serialize, ToSchema)]
#[schema(as = ActionOutcome)]
pub struct ActionOutcomeDoc {
    pub id: String,
    pub unit: String,
    /// stopped, was-not-running, signalled, restarted, started-again, forgotten, paused, resumed, ...
    pub outcome: String,
    pub state: State,
}

/// What `adopt` did.
#[derive(Serialize, ToSchema)]
#[schema(as = Adopted)]
pub struct AdoptedDoc {
    #[serde(flatten)]
    pub record: Record,
    /// The pids handed to systemd.
    pub moved: Vec<u32>,
    pub warnings: Vec<String>,
}

/// One event of a stream, as `data:` of a server-sent event whose `id:`
/// is its place in the history (pass it back as `Last-Event-ID`).
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<PositionedEvent>,
    /// The position after the last event: pass it as `after` for the next page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PositionedEvent {
    /// Its place in the history (`INODE-OFFSET`).
    pub pos: String,
    pub event: crate::events::Event,
}

/// A page of log lines.
#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntryDoc>,
    /// journald's cursor after the last line: pass it as `after` for the
    /// next page, or as `Last-Event-ID` to follow from there.
    pub cursor: Option<String>,
}

/// One log line, as `logs --json` prints it.
#[derive(Serialize, ToSchema)]
#[schema(as = LogEntry)]
pub struct LogEntryDoc {
    pub time: Option<crate::model::Timestamp>,
    pub id: Option<String>,
    pub unit: Option<String>,
    pub pid: Option<u32>,
    pub priority: Option<u8>,
    pub message: String,
    pub cursor: Option<String>,
}
