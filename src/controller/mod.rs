//! The operations behind every command: each validates first, then acts on
//! systemd and the index, and returns data (rendering is the caller's job).

mod caller;
mod exit;
mod limits;
mod logs;
mod lookup;
mod pause;
mod pty;
mod reconcile;
mod records;
mod recover;
mod redact;
mod request;
mod resurrect;
mod run;
#[cfg(test)]
mod seam_tests;
mod stop;
mod types;

pub use caller::{Caller, Origin, Requester};
pub use logs::{
    LogPage, LogSelector, LogSources, LogsRequest, PageRequest, Until, WaitOutcome, MAX_PAGE,
};
pub use pty::TerminalAccess;
pub use reconcile::reconcile;
pub use records::journal_command;
pub use redact::HIDDEN;
pub use request::{
    Answer, CheckRequest, EventFilter, EventPage, EventWithId, EventsAfter, PolicyView, Request,
    Response,
};
pub use types::*;

use pause::*;
use reconcile::*;
use records::*;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::health::{HealthStatus, HealthView};
use crate::index::{Index, Loaded};
use crate::model::{
    is_id_like, new_id, parse_unit_name, scope_name, unit_name, Exit, LimitChange, Logs, Metadata,
    Owner, OwnerLimits, Record, Restart, RestartPolicy, State, Timestamp, UnitKind, RECORD_SCHEMA,
};
use crate::pauses::{GroupPause, Pauses};
use crate::policy::{Actor, LaunchRequest, PauseTreatment, Policy, Reach};
use crate::provenance::{ManagedCaller, RequestedBy};
use crate::spec::{
    limit_properties, outside_subtree, scope_properties, service_properties, AdoptSpec, Adoption,
    Launch, RunSpec, UnitContext,
};
use crate::systemd::{
    JobOutcome, ListedUnit, ServiceInfo, StartWait, StartWatch, Systemd, UnitManager, UnitState,
};
use crate::text::escape;
use crate::usage::{Cgroups, Usage};

/// A record still `starting` without a unit is given this long to appear
/// before it is called lost (covers a `run` that is between its index write
/// and systemd's reply).
const START_GRACE: Duration = Duration::from_secs(30);
/// How long a `starting` record whose launcher died may still get its unit
/// (a start request the launcher sent just before it died).
const LAUNCHER_GRACE: Duration = Duration::from_secs(2);

/// Where the index lives: `--state-dir`, else `REFINE_PROC_STATE_DIR`, else
/// `$XDG_STATE_HOME/refine-proc`, else `~/.local/state/refine-proc`.
pub fn default_state_dir() -> Result<PathBuf> {
    let from_env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from_env("REFINE_PROC_STATE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = from_env("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("refine-proc"));
    }
    match from_env("HOME") {
        Some(home) => Ok(home.join(".local/state/refine-proc")),
        None => Err(
            Error::invalid("cannot find a state directory: HOME is not set")
                .hint("set HOME or XDG_STATE_HOME, or pass --state-dir DIR"),
        ),
    }
}

/// The entry point of the library: one index and (lazily) one connection
/// to the user's systemd manager, acting for one [`Caller`] (this process
/// unless [`Controller::on_behalf_of`] says otherwise). Handles for other
/// callers share the index and the connection.
pub struct Controller {
    index: Arc<Index>,
    hook_program: PathBuf,
    /// A person's policy file (managed callers use their unit's).
    policy_path: Option<PathBuf>,
    systemd: Arc<OnceCell<Systemd>>,
    /// What the pause engine, reconciliation, recover and the caller
    /// lookup use instead of `systemd` (unit tests: an in-memory fake).
    units: Option<Arc<dyn UnitManager>>,
    caller: Caller,
    requester: OnceCell<Requester>,
}

impl Controller {
    /// Opens the index in `state_dir` (see [`default_state_dir`]). systemd is
    /// connected on first use, so index-only operations need no bus.
    pub fn open(state_dir: &Path) -> Result<Controller> {
        let state_dir = std::path::absolute(state_dir)
            .map_err(|e| Error::invalid(format!("bad state directory: {e}")))?;
        Ok(Controller {
            index: Arc::new(Index::open(state_dir)?),
            hook_program: default_hook_program(),
            policy_path: crate::policy::default_path(),
            systemd: Arc::new(OnceCell::new()),
            units: None,
            caller: Caller::this_process(),
            requester: OnceCell::new(),
        })
    }

    /// The policy file for requests from a person (default: see
    /// [`crate::policy::default_path`]).
    pub fn with_policy_path(mut self, path: PathBuf) -> Self {
        self.policy_path = Some(path);
        self
    }

    /// The refine-proc binary systemd runs after each exit to record it
    /// (by default this program if it is refine-proc, else the one on PATH).
    pub fn with_hook_program(mut self, program: PathBuf) -> Self {
        self.hook_program = program;
        self
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub async fn systemd(&self) -> Result<&Systemd> {
        self.systemd.get_or_try_init(Systemd::connect).await
    }

    /// The manager as the engines see it, through the [`UnitManager`]
    /// seam: the real one (connected on first use) unless a test gave one.
    pub(crate) async fn units(&self) -> Result<&dyn UnitManager> {
        match &self.units {
            Some(units) => Ok(units.as_ref()),
            None => Ok(self.systemd().await?),
        }
    }

    /// Acts on `units` instead of the user manager (unit tests).
    #[cfg(test)]
    pub(crate) fn with_units(mut self, units: Arc<dyn UnitManager>) -> Self {
        self.units = Some(units);
        self
    }
}
