//! The operations behind every command: each validates first, then acts on
//! systemd and the index, and returns data (rendering is the caller's job).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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
use crate::systemd::{JobOutcome, ListedUnit, ServiceInfo, StartWait, Systemd, UnitState};
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

/// A record as `list` shows it: with what its cgroup uses now.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: Record,
    /// Null when the process is not running.
    pub usage: Option<Usage>,
    /// Where a running process with a health check stands: the state its
    /// probes stored, `starting` before the first. None (and absent from
    /// JSON) without a check, while queued, or once the process has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
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

impl ListFilter {
    fn matches(&self, r: &Record) -> bool {
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

/// What a stop, kill or restart did to one process.
#[derive(Debug, Clone, Serialize)]
pub struct ActionOutcome {
    pub id: String,
    pub unit: String,
    /// stopped, was-not-running, signalled, restarted, started-again, forgotten
    pub outcome: String,
    pub state: State,
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

/// How many times `adopt` scans again when a descendant exits between the
/// scan and systemd's move (systemd refuses the whole call then).
const ADOPT_ATTEMPTS: usize = 3;

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

impl Selection {
    /// What a record remembers about the pause that froze it.
    fn tag(&self) -> String {
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

/// Who is asking, and under which policy.
#[derive(Debug, Clone)]
pub struct Requester {
    pub actor: Actor,
    /// The managed process the request comes from (found from its cgroup).
    pub caller: Option<ManagedCaller>,
    /// That process's record, whose owner and workflow its children inherit.
    pub parent: Option<Record>,
    pub policy: Policy,
}

impl Requester {
    /// A managed caller's children default to its owner and workflow context.
    pub fn inherit(&self, owner: &mut Option<Owner>, metadata: &mut Metadata) {
        if let Some(parent) = &self.parent {
            *owner = owner.or(Some(parent.owner));
            let p = &parent.metadata;
            metadata.workflow = metadata.workflow.take().or_else(|| p.workflow.clone());
            metadata.gap = metadata.gap.take().or_else(|| p.gap.clone());
            metadata.session = metadata.session.take().or_else(|| p.session.clone());
            metadata.mode = metadata.mode.take().or_else(|| p.mode.clone());
            metadata.runner = metadata.runner.take().or_else(|| p.runner.clone());
        } else if let Some(caller) = &self.caller {
            *owner = owner.or(Some(caller.owner));
        }
    }

    pub fn requested_by(&self) -> RequestedBy {
        RequestedBy {
            uid: crate::provenance::uid(),
            acting_owner: self.caller.as_ref().map(|c| c.owner),
            parent: self.caller.as_ref().map(|c| c.id.clone()),
            policy: Some(self.policy.path.display().to_string()),
        }
    }
}

/// The entry point of the library: one index and (lazily) one connection
/// to the user's systemd manager.
pub struct Controller {
    index: Index,
    hook_program: PathBuf,
    /// A person's policy file (managed callers use their unit's).
    policy_path: Option<PathBuf>,
    systemd: OnceCell<Systemd>,
    requester: OnceCell<Requester>,
}

impl Controller {
    /// Opens the index in `state_dir` (see [`default_state_dir`]). systemd is
    /// connected on first use, so index-only operations need no bus.
    pub fn open(state_dir: &Path) -> Result<Controller> {
        let state_dir = std::path::absolute(state_dir)
            .map_err(|e| Error::invalid(format!("bad state directory: {e}")))?;
        Ok(Controller {
            index: Index::open(state_dir)?,
            hook_program: default_hook_program(),
            policy_path: crate::policy::default_path(),
            systemd: OnceCell::new(),
            requester: OnceCell::new(),
        })
    }

    /// The policy file for requests from a person (default: see
    /// [`crate::policy::default_path`]).
    pub fn with_policy_path(mut self, path: PathBuf) -> Self {
        self.policy_path = Some(path);
        self
    }

    /// Who is asking (found once per controller) and the policy that binds
    /// them. A managed caller's policy is the one named in its unit's
    /// environment, as systemd holds it, so the process cannot swap it.
    pub async fn requester(&self) -> Result<&Requester> {
        self.requester
            .get_or_try_init(|| async {
                let Some(caller) = crate::provenance::managed_caller() else {
                    let path = self
                        .policy_path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("/etc/refine-proc/policy.toml"));
                    // Absolute, so a child cannot make it mean another file by
                    // changing directory.
                    let path = std::path::absolute(&path).unwrap_or(path);
                    return Ok(Requester {
                        actor: Actor::Person,
                        caller: None,
                        parent: None,
                        policy: Policy::load(&path)?,
                    });
                };
                // What binds a managed caller comes from what systemd holds
                // for its unit (a service's Environment=) or, for an adopted
                // scope, from its record; what cannot be established is
                // refused, never guessed.
                let systemd = self.systemd().await?;
                let env: Vec<String> = match systemd.unit_path(&caller.unit).await? {
                    Some(path) if caller.unit.ends_with(".service") => systemd
                        .service_property(&[path], "Environment")
                        .await
                        .pop()
                        .flatten()
                        .and_then(|v| Vec::<String>::try_from(v).ok())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let from_env = |key: &str| {
                    env.iter()
                        .find_map(|e| e.strip_prefix(key))
                        .map(PathBuf::from)
                };
                let parent = match self.index.load(&caller.id)? {
                    Loaded::Found(r) => Some(*r),
                    _ => None,
                };
                let denied = |why: String| {
                    Error::new(crate::ErrorKind::Denied, format!("refused: {why}")).hint(
                        "a managed process acts through the index and policy it was started with",
                    )
                };
                match from_env("REFINE_PROC_STATE_DIR=") {
                    Some(dir)
                        if std::fs::canonicalize(&dir).ok().as_deref()
                            != Some(self.index.dir()) =>
                    {
                        return Err(denied(format!(
                            "{} was started with the index {}, not {}",
                            caller.id,
                            dir.display(),
                            self.index.dir().display()
                        )))
                    }
                    Some(_) => {}
                    None if parent.is_none() => {
                        return Err(denied(format!(
                            "{} ({}) has no record in the index {}",
                            caller.id,
                            caller.unit,
                            self.index.dir().display()
                        )))
                    }
                    None => {}
                }
                let path = from_env("REFINE_PROC_POLICY=")
                    .or_else(|| {
                        parent
                            .as_ref()
                            .and_then(|p| p.requested_by.policy.as_ref().map(PathBuf::from))
                    })
                    .ok_or_else(|| {
                        denied(format!("cannot tell which policy binds {}", caller.id))
                    })?;
                Ok(Requester {
                    actor: Actor::Managed(caller.owner),
                    caller: Some(caller),
                    parent,
                    policy: Policy::load(&path)?,
                })
            })
            .await
    }

    /// Refuses unless the requester may act on `target` (its policy's
    /// `act_on`: its descendants by default for a managed process).
    async fn authorize(&self, action: &str, target: &Record) -> Result<()> {
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let caller = requester.caller.as_ref();
        let descends = |ancestor: &str| self.descends_from(target, ancestor);
        let allowed = match rules.act_on {
            Reach::All => true,
            Reach::SameOwner => {
                matches!(requester.actor, Actor::Managed(o) if o == target.owner)
                    || caller.is_some_and(|c| descends(&c.id))
            }
            Reach::Descendants => caller.is_some_and(|c| descends(&c.id)),
        };
        if allowed {
            return Ok(());
        }
        let reach = match rules.act_on {
            Reach::Descendants => "its own descendants",
            Reach::SameOwner => "processes of its own owner and its descendants",
            Reach::All => "all processes",
        };
        let error = crate::policy::denied(
            &rules,
            "act_on",
            format!(
                "{} may {action} only {reach}; {} ({}) is not one of them",
                rules.actor, target.id, target.owner
            ),
        );
        self.record_refusal(action, Some(&target.id), &error);
        Err(error)
    }

    /// Whether `ancestor` started `record`, directly or through children.
    fn descends_from(&self, record: &Record, ancestor: &str) -> bool {
        let mut current = record.clone();
        // Bounded: a corrupt parent chain cannot loop forever.
        for _ in 0..64 {
            if current.id == ancestor {
                return true;
            }
            let Some(parent) = current.requested_by.parent.clone() else {
                return false;
            };
            if parent == ancestor {
                return true;
            }
            match self.index.load(&parent) {
                Ok(Loaded::Found(r)) => current = *r,
                _ => return false,
            }
        }
        false
    }

    /// Appends a refusal to the event log (best effort: the refusal itself
    /// is the answer the caller needs).
    fn record_refusal(&self, action: &str, target: Option<&str>, error: &Error) {
        let actor = self
            .requester
            .get()
            .map(|r| r.actor.key())
            .unwrap_or("unknown");
        let mut event = Event::new("refused")
            .with("action", action)
            .with("reason", &error.message)
            .with("rule", &error.hint);
        event.id = target.map(String::from);
        event.actor = Some(actor.to_string());
        event.caller = self
            .requester
            .get()
            .and_then(|r| r.caller.as_ref().map(|c| c.id.clone()));
        if let Err(e) = self.index.append_event(&event, true) {
            tracing::warn!("cannot record the refusal: {}", e.message);
        }
    }

    /// Records a lifecycle transition in the history (best effort, not
    /// synced: the record itself is the durable truth).
    /// Appends an event to the history, with the requester as its actor
    /// unless it names one.
    pub fn record_event(&self, event: Event) {
        self.emit(event)
    }

    fn emit(&self, mut event: Event) {
        if event.actor.is_none() {
            event.actor = self.requester.get().map(|r| r.actor.key().to_string());
            event.caller = self
                .requester
                .get()
                .and_then(|r| r.caller.as_ref().map(|c| c.id.clone()));
        }
        if let Err(e) = self.index.append_event(&event, false) {
            tracing::warn!("cannot record the {} event: {}", event.event, e.message);
        }
    }

    /// The history, oldest first, with how many torn lines were skipped.
    pub fn events(&self) -> Result<(Vec<Event>, usize)> {
        let (mut events, skipped) = self.index.events()?;
        // A process that exits at once may have its exit written before
        // `run` writes its start: order by when things happened.
        events.sort_by_key(|e| e.time);
        Ok((events, skipped))
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

    fn unit_context(&self, policy: &Policy) -> Result<UnitContext> {
        if !self.hook_program.is_absolute() || !self.hook_program.is_file() {
            return Err(Error::invalid(format!(
                "cannot find the refine-proc binary ({}) that records exits",
                self.hook_program.display()
            ))
            .hint("install refine-proc on PATH, or set REFINE_PROC_HOOK to its absolute path"));
        }
        Ok(UnitContext {
            program: self.hook_program.clone(),
            state_dir: self.index.dir().to_path_buf(),
            policy: policy.path.clone(),
        })
    }

    /// Launches a process as a transient user service and returns its record
    /// once systemd has started it (or, with `wait`, once it has ended).
    pub async fn run(&self, mut spec: RunSpec, options: RunOptions) -> Result<Record> {
        let requester = self.requester().await?;
        requester.inherit(&mut spec.owner, &mut spec.metadata);
        let mut launch = spec.validate()?;
        let request = LaunchRequest {
            owner: launch.owner,
            executable: &launch.executable,
            limits: &launch.limits,
        };
        launch.limits = match requester.policy.check_launch(requester.actor, &request) {
            Ok(limits) => limits,
            Err(e) => {
                self.record_refusal("run", None, &e);
                return Err(e);
            }
        };
        // A command health check runs the shell (in the daemon, outside the
        // unit): only for an actor the policy lets run the shell.
        if let Some(crate::health::HealthCheck::Cmd { .. }) =
            launch.health.as_ref().map(|h| &h.check)
        {
            // As named, or where it leads (/bin is /usr/bin on merged-/usr
            // systems, and a policy may name either).
            let named = PathBuf::from(crate::health::SHELL);
            let real = std::fs::canonicalize(&named).unwrap_or_else(|_| named.clone());
            let allowed = |executable: &Path| {
                let shell = LaunchRequest {
                    owner: launch.owner,
                    executable,
                    limits: &launch.limits,
                };
                requester.policy.check_launch(requester.actor, &shell)
            };
            if let Err(mut e) = allowed(&named).or_else(|e| allowed(&real).map_err(|_| e)) {
                e.message = format!(
                    "--health-cmd runs {}, which the policy refuses: {}",
                    crate::health::SHELL,
                    e.message
                );
                self.record_refusal("run", None, &e);
                return Err(e);
            }
        }
        let backoff =
            launch.restart != RestartPolicy::No && launch.restart_timing.max_delay_sec.is_some();
        if backoff {
            // RestartSteps= came with systemd 254; before, the daemon does it.
            let version = self.systemd().await?.version_number().await?;
            if version < 254 {
                launch.restart_by = crate::model::RestartBy::Daemon;
            }
        }
        if let Some(held) = self.held_by_pause(launch.owner, &launch.metadata)? {
            if options.queue {
                return self.queue(&launch, requester.requested_by(), &held);
            }
            let e = Error::refused(format!(
                "{} is paused ({} since {} by {}): run for it is refused while the pause holds",
                held_what(&held, launch.owner, &launch.metadata),
                held.selector,
                held.since,
                held.by
            ))
            .hint(format!(
                "resume it with refine-proc resume {}, or add --queue to start this run on resume",
                selector_flag(&held.selector)
            ));
            self.record_refusal("run", None, &e);
            return Err(e);
        }
        let hook = self.unit_context(&requester.policy)?;
        crate::fault::point("before-index-write");
        // The record must exist before systemd starts the unit (the exit
        // hook updates it); its durable write overlaps connecting to the bus.
        let (index, for_record) = (self.index.clone(), launch.clone());
        let requested_by = requester.requested_by();
        let stored = tokio::task::spawn_blocking(move || {
            let record = store_new_record(&index, &for_record, requested_by)?;
            journal_start(&index, &record);
            Ok::<_, Error>(record)
        });
        let connected = self.systemd().await;
        let record = stored
            .await
            .map_err(|e| Error::index(format!("cannot write the new record: {e}")))??;
        crate::fault::point("after-index-write");
        let systemd = match connected {
            Ok(systemd) => systemd,
            Err(e) => {
                self.index.remove(&record.id)?;
                return Err(e);
            }
        };
        let props = service_properties(&record.id, &launch, &hook);
        let notify = launch
            .ready
            .as_ref()
            .is_some_and(|r| r.on == crate::model::Readiness::Notify);
        let wait = match (notify, options.wait_ready) {
            // A Type=notify start job lasts until READY=1.
            (true, false) => StartWait::Spawned,
            (true, true) => {
                let t = launch
                    .ready
                    .as_ref()
                    .and_then(|r| r.timeout_sec)
                    .unwrap_or(90);
                StartWait::Job(Duration::from_secs(t + 30))
            }
            _ => StartWait::Job(Duration::from_secs(90)),
        };
        let job = match systemd
            .start_transient_waiting(&record.unit, &props, wait)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                // systemd never created the unit: nothing ran, keep no record.
                if !systemd.is_loaded(&record.unit).await.unwrap_or(true) {
                    self.index.remove(&record.id)?;
                }
                return Err(e);
            }
        };
        // after_start fails when the process never ran; otherwise it ran,
        // and may be restarting, and --wait waits for the very end.
        let mut record = self.after_start(record, job).await?;
        crate::fault::point("after-start");
        let by_health = launch
            .ready
            .as_ref()
            .is_some_and(|r| r.on == crate::model::Readiness::Health);
        if options.wait_ready && by_health && record.state == State::Running {
            record = self.wait_healthy(record).await?;
        }
        if options.wait_ready && record.state != State::Running {
            let why = match record.result.as_deref() {
                Some("timeout") => format!(
                    "it did not say READY=1 within {}s, so systemd stopped it",
                    launch
                        .ready
                        .as_ref()
                        .and_then(|r| r.timeout_sec)
                        .unwrap_or(90)
                ),
                _ => format!("it ended first ({})", record.state),
            };
            return Err(Error::systemd(format!(
                "{} ({}) did not become ready: {why}",
                record.unit,
                escape(&record.label)
            ))
            .hint(format!("see why: refine-proc logs {}", record.id)));
        }
        self.emit(started_event(&record).with("command", &record.command));
        // A pause made while this run was being started did not see it.
        if let Some(held) = self.held_by_pause(record.owner, &record.metadata)? {
            record = self.hold_late_start(record, &held).await?;
        }
        if !options.wait {
            return Ok(record);
        }
        systemd.wait_until_gone(&record.unit).await?;
        self.refetch(record).await
    }

    /// Probes a process started with `--ready health` until a probe passes
    /// (its health is then stored as healthy) or its ready timeout passes.
    async fn wait_healthy(&self, record: Record) -> Result<Record> {
        let Some(spec) = record.health.clone() else {
            return Ok(record);
        };
        let timeout = record
            .ready
            .as_ref()
            .and_then(|r| r.timeout_sec)
            .unwrap_or(90);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Readiness is worth a quicker look than the routine interval.
        let pace = spec.interval().min(Duration::from_millis(500));
        let cwd = record.cwd.as_ref().map(PathBuf::from);
        let started = record.started_at.unwrap_or_else(Timestamp::now);
        let mut state = crate::health::HealthState::new(started);
        loop {
            let result = crate::health::probe(&spec, cwd.as_deref(), &record.environment).await;
            let ok = result.ok;
            state.apply(&spec, result, started);
            if ok {
                self.index.save_health(&record.id, &state)?;
                return self.refetch(record).await;
            }
            let current = self.refetch(record.clone()).await?;
            if current.state.is_ended() {
                return Ok(current);
            }
            if tokio::time::Instant::now() + pace > deadline {
                let last = state.last.map(|l| l.output).unwrap_or_default();
                return Err(Error::systemd(format!(
                    "{} ({}) did not become ready: its health check did not pass within {timeout}s (last: {})",
                    record.unit,
                    escape(&record.label),
                    escape(last.lines().next().unwrap_or("no output"))
                ))
                .hint(format!(
                    "it keeps running: refine-proc status {} shows it; stop it with refine-proc stop {}",
                    record.id, record.id
                )));
            }
            tokio::time::sleep(pace).await;
        }
    }

    async fn after_start(&self, record: Record, job: JobOutcome) -> Result<Record> {
        let pid = self.systemd().await?.exec_main_pid(&record.unit).await?;
        let updated = self.index.update(&record.id, |r| {
            r.launcher = None;
            r.pid = pid.or(r.pid);
            // Unless the exit hook already recorded the end of this run.
            if r.state == State::Starting && job.result == "done" {
                r.state = State::Running;
            }
        })?;
        let mut record = updated.unwrap_or(record);
        // A start job also "fails" when the process ran but exited non-zero
        // before systemd saw it running; only systemd's own spawn failures
        // (exit codes 200-245: chdir, exec, user, ...) mean it never started.
        let spawn_failed = record.exit_code.is_some_and(|c| (200..=245).contains(&c));
        // "spawned": a Type=notify process runs and has not said READY=1.
        let ran = job.result == "done" || job.result == "spawned";
        if !ran && (spawn_failed || record.result.is_none()) {
            let how = match (&record.result, record.exit_code) {
                (Some(_), Some(code)) => format!(
                    "systemd could not execute it (status {code}{})",
                    spawn_failure_name(code)
                ),
                _ => format!("the start job ended with \"{}\"", job.result),
            };
            return Err(Error::systemd(format!(
                "{} ({}) failed to start: {how}",
                record.unit,
                escape(&record.label)
            ))
            .hint(format!(
                "see why: refine-proc logs {} and journalctl --user -u {}",
                record.id, record.unit
            )));
        }
        // The stored state is the truth right now: running, or the exit the
        // hook has already recorded.
        present(&mut record);
        Ok(record)
    }

    /// Moves a running process (by default with its descendants) into a
    /// transient scope `refine-<owner>-<id>.scope` and records it like any
    /// other process. Everything is checked before anything changes; the
    /// record is written before systemd is asked, and removed if systemd
    /// refuses. Descendants are found by one scan of /proc: a child forked
    /// after the scan stays where it is.
    pub async fn adopt(&self, mut spec: AdoptSpec) -> Result<Adopted> {
        let requester = self.requester().await?;
        requester.inherit(&mut spec.owner, &mut spec.metadata);
        let mut attempt = 1;
        loop {
            let mut adoption = spec.clone().validate()?;
            // A managed process's own children already live in its unit, so
            // whatever it could adopt is someone else's: it needs reach over all.
            let rules = requester.policy.rules(requester.actor);
            let reach = if requester.caller.is_some() && rules.act_on != Reach::All {
                Err(crate::policy::denied(
                    &rules,
                    "act_on",
                    format!(
                        "{} may not adopt processes (that needs act_on = \"all\")",
                        rules.actor
                    ),
                ))
            } else {
                requester
                    .policy
                    .check_owner(requester.actor, adoption.owner)
            };
            if let Err(e) = reach {
                self.record_refusal("adopt", None, &e);
                return Err(e);
            }
            let systemd = self.systemd().await?;
            if let Some(root) = systemd.manager_control_group().await? {
                adoption.restrict_to_subtree(&root)?;
            }
            let requested_by = requester.requested_by();
            let record = store_fresh(&self.index, |id| {
                adopted_record(id, &adoption, requested_by.clone())
            })?;
            journal_start(&self.index, &record);
            let props = scope_properties(&adoption);
            let job = match systemd.start_transient(&record.unit, &props).await {
                Ok(job) => job,
                Err(e) => {
                    let loaded = systemd.is_loaded(&record.unit).await.unwrap_or(true);
                    if !loaded {
                        self.index.remove(&record.id)?;
                    }
                    // A pid exited between the scan and the call: scan again.
                    if e.kind == crate::ErrorKind::NotFound && !loaded && attempt < ADOPT_ATTEMPTS {
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            };
            if job.result != "done" {
                return Err(self.failed_adoption(&adoption, &record, &job).await);
            }
            let mut record = self
                .index
                .update(&record.id, |r| {
                    r.launcher = None;
                    if r.state == State::Starting {
                        r.state = State::Running;
                    }
                })?
                .unwrap_or(record);
            present(&mut record);
            let warnings = adoption
                .left
                .iter()
                .map(|(pid, why)| format!("left pid {pid} where it is: {why}"))
                .collect();
            self.emit(Event::about("adopted", &record).with("pids", adoption.pids()));
            return Ok(Adopted {
                record,
                moved: adoption.pids(),
                warnings,
            });
        }
    }

    /// Why systemd's start job for an adopting scope failed, after dropping
    /// the record (nothing was adopted) and the failed unit.
    async fn failed_adoption(
        &self,
        adoption: &Adoption,
        record: &Record,
        job: &JobOutcome,
    ) -> Error {
        if let Ok(systemd) = self.systemd().await {
            if systemd.is_loaded(&record.unit).await.unwrap_or(false) {
                let _ = systemd.reset_failed(&record.unit).await;
            }
        }
        if let Err(e) = self.index.remove(&record.id) {
            return e;
        }
        let pid = adoption.pid;
        let moved =
            crate::procfs::cgroup(pid).is_ok_and(|cg| cg.ends_with(&format!("/{}", record.unit)));
        if crate::procfs::stat(pid).is_ok() && !moved {
            // The usual cause: the manager may not write to the cgroup the
            // process lives in (systemd logs "Permission denied").
            return outside_subtree(
                pid,
                &format!(
                    "systemd could not move it into {} (the start job ended with \"{}\"; \
                     journalctl --user -u {} says why)",
                    record.unit, job.result, record.unit
                ),
            );
        }
        Error::systemd(format!(
            "cannot adopt pid {pid}: the start job of {} ended with \"{}\"",
            record.unit, job.result
        ))
        .hint(format!("see journalctl --user -u {}", record.unit))
    }

    /// Finds the one record an argument names: an id, a unique id prefix, or
    /// a unit name. Units that do not follow refine-proc's naming are refused.
    pub fn resolve(&self, arg: &str) -> Result<String> {
        if arg.contains('.') || arg.starts_with("refine-") {
            return match parse_unit_name(arg) {
                Some((_, id)) => Ok(id),
                None => Err(Error::refused(format!(
                    "{} is not a unit refine-proc created",
                    escape(arg)
                ))
                .hint("refine-proc only acts on its own units (refine-<owner>-<id>.service or .scope); use systemctl --user for others")),
            };
        }
        if !is_id_like(arg) {
            return Err(
                Error::not_found(format!("no process with id {:?}", escape(arg)))
                    .hint("ids are 8 characters of a-z and 2-9; see refine-proc list --all"),
            );
        }
        if arg.len() == crate::model::ID_LEN {
            return Ok(arg.to_string());
        }
        let matches: Vec<String> = self
            .index
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(arg))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                Error::not_found(format!("no process with an id starting with {arg:?}"))
                    .hint("see refine-proc list --all"),
            ),
            many => Err(Error::not_found(format!(
                "id prefix {arg:?} is ambiguous: it matches {}",
                many.join(", ")
            ))
            .hint("type more characters of the id")),
        }
    }

    /// Loads a record for an operation; rebuilds it from systemd when the
    /// index lost it (quarantined or deleted) but the unit is still there.
    async fn load(
        &self,
        id: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Record, Option<ServiceInfo>)> {
        let loaded = self.index.load(id)?;
        let systemd = self.systemd().await?;
        let unit_hint = match &loaded {
            Loaded::Found(r) => r.unit.clone(),
            _ => self.find_live_unit(id).await?.unwrap_or_default(),
        };
        let info = if unit_hint.is_empty() {
            None
        } else {
            systemd.service_info(&unit_hint).await?
        };
        let record = match loaded {
            Loaded::Found(r) => *r,
            Loaded::Newer { schema } => {
                return Err(Error::index(format!(
                    "the record of {id} was written by a newer refine-proc (schema {schema})"
                ))
                .hint("upgrade refine-proc to act on it"))
            }
            Loaded::Quarantined { path, reason } => {
                warnings.push(format!(
                    "the record of {id} was unreadable ({reason}); it was moved to {} and rebuilt from systemd",
                    path.display()
                ));
                self.rebuild(id, &unit_hint, info.as_ref())?
            }
            Loaded::Missing => {
                if info.is_none() {
                    return Err(Error::not_found(format!("no process with id {id}"))
                        .hint("see refine-proc list --all"));
                }
                warnings.push(format!(
                    "{id} was missing from the index; rebuilt from systemd"
                ));
                self.rebuild(id, &unit_hint, info.as_ref())?
            }
        };
        let mut record = record;
        with_group_pauses(&mut record, &self.index.pauses()?.0);
        Ok((record, info))
    }

    /// The unit of a record-less id, if one of ours is loaded.
    async fn find_live_unit(&self, id: &str) -> Result<Option<String>> {
        let units = self
            .systemd()
            .await?
            .list(&[
                &format!("refine-*-{id}.service"),
                &format!("refine-*-{id}.scope"),
            ])
            .await?;
        Ok(units
            .into_iter()
            .map(|u| u.name)
            .find(|n| parse_unit_name(n).is_some_and(|(_, i)| i == id)))
    }

    /// Rebuilds and stores a record from the unit's REFINE_* environment.
    fn rebuild(&self, id: &str, unit: &str, info: Option<&ServiceInfo>) -> Result<Record> {
        if unit.ends_with(".scope") && info.is_some() {
            return Err(Error::refused(format!(
                "the record of {id} was lost, and {unit} holds adopted processes: a scope \
                 keeps no environment to rebuild the record from"
            ))
            .hint(format!(
                "act on it with systemd's tools, e.g. systemctl --user stop {unit}"
            )));
        }
        let Some(info) = info else {
            return Err(Error::not_found(format!(
                "the record of {id} was lost and its unit is gone; nothing is left to rebuild it from"
            )));
        };
        let env: BTreeMap<String, String> = info
            .environment
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if env.get("REFINE_ID").map(String::as_str) != Some(id) {
            return Err(Error::refused(format!(
                "{unit} is named like a refine-proc unit but was not started by refine-proc"
            ))
            .hint("use systemctl --user for units refine-proc did not create"));
        }
        let its_index = env.get("REFINE_PROC_STATE_DIR").map(PathBuf::from);
        if its_index.as_deref() != Some(self.index.dir()) {
            return Err(Error::not_found(format!(
                "{id} belongs to another index ({})",
                its_index
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "unknown".into())
            ))
            .hint("pass that directory with --state-dir"));
        }
        // Never overwrite: the exit hook may have written it meanwhile.
        self.index
            .create_or_load(record_from_environment(id, unit, &env, info))
    }

    /// Re-reads the record and brings it in line with systemd's view.
    async fn refetch(&self, record: Record) -> Result<Record> {
        let mut record = match self.index.load(&record.id)? {
            Loaded::Found(r) => *r,
            _ => record,
        };
        with_group_pauses(&mut record, &self.index.pauses()?.0);
        let info = self.systemd().await?.service_info(&record.unit).await?;
        let stored = record.state;
        refresh(&mut record, info.as_ref());
        self.close_lost(vec![(&mut record, stored)]).await;
        Ok(record)
    }

    /// Makes durable what `reconcile` found: records whose unit vanished
    /// without a recorded exit are closed as `lost`, each once (under the
    /// index lock, and only if the record still says what it said when it
    /// was read), with the exit from the journal where it is there, and one
    /// `lost` event each. Each pair is a reconciled record and the state it
    /// was stored with. Only records becoming lost pay: a D-Bus lookup each
    /// and one journalctl call for all. Best effort: what cannot be stored
    /// now is found again by the next invocation.
    async fn close_lost(&self, found: Vec<(&mut Record, State)>) {
        let mut candidates: Vec<(&mut Record, State)> = found
            .into_iter()
            .filter(|(r, stored)| r.state == State::Lost && !stored.is_ended())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let Ok(systemd) = self.systemd().await else {
            return;
        };
        // The caller's view of systemd may be older than the record it read
        // (a `run` that started meanwhile): ask again, unit by unit.
        let loaded = futures_util::future::join_all(
            candidates.iter().map(|(r, _)| systemd.unit_path(&r.unit)),
        )
        .await;
        let mut gone = Vec::new();
        for ((r, stored), loaded) in candidates.iter_mut().zip(loaded) {
            match loaded {
                Ok(None) => gone.push((&mut **r, *stored)),
                // Loaded after all, or unknown: not lost; the next look decides.
                _ => r.state = *stored,
            }
        }
        if gone.is_empty() {
            return;
        }
        let units: Vec<String> = gone.iter().map(|(r, _)| r.unit.clone()).collect();
        let since = gone
            .iter()
            .filter_map(|(r, _)| r.started_at)
            .min()
            .map(|t| Timestamp(t.0 - Duration::from_secs(60)));
        let journal = tokio::task::spawn_blocking(move || crate::journal::history(&units, since))
            .await
            .ok()
            .flatten();
        let manager_started = systemd.started_at().await;
        for (r, stored) in gone {
            let history = journal
                .as_ref()
                .and_then(|j| j.get(&r.unit))
                .cloned()
                .unwrap_or_default();
            let started_at = r.started_at;
            let mut closed = false;
            let updated = self.index.update(&r.id, |cur| {
                if cur.state != stored || cur.started_at != started_at {
                    return; // written meanwhile (an exit, a restart): theirs stands
                }
                close_as_lost(cur, &history, journal.is_some(), manager_started);
                closed = true;
            });
            match updated {
                Ok(Some(mut cur)) => {
                    if closed {
                        let event = Event::about("lost", &cur)
                            .with("ended_at", cur.ended_at)
                            .with("exit_code", cur.exit_code)
                            .with("exit_signal", &cur.exit_signal)
                            .with("result", &cur.result)
                            .with("exit_source", &cur.exit_source);
                        self.emit(Event {
                            actor: Some("refine-proc".into()),
                            ..event
                        });
                    }
                    // Else someone else's write (an exit, a start) is newer
                    // than what was reconciled: it stands as written.
                    present(&mut cur);
                    *r = cur;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot record {} as lost: {}", r.id, e.message),
            }
        }
    }

    /// Everything known about one process.
    pub async fn status(&self, arg: &str) -> Result<Status> {
        let id = self.resolve(arg)?;
        let mut warnings = Vec::new();
        let (mut record, info) = self.load(&id, &mut warnings).await?;
        let stored = record.state;
        refresh(&mut record, info.as_ref());
        self.close_lost(vec![(&mut record, stored)]).await;
        let usage = match info.as_ref().and_then(|i| i.control_group.as_deref()) {
            Some(cgroup) if !record.state.is_ended() => {
                // The manager's cgroup is the unit's minus where systemd
                // puts our units; ask systemd only if it is elsewhere.
                let suffix = format!("/refine.slice/{}/{}", record.owner.slice(), record.unit);
                let manager = match cgroup.strip_suffix(&suffix) {
                    Some(m) => Ok(m.to_string()),
                    None => self.manager_cgroup().await,
                };
                Cgroups::detect(manager).read(Some(cgroup))
            }
            _ => None,
        };
        let health = record.health.clone().map(|spec| HealthView {
            spec,
            state: match self.index.health(&id) {
                Ok(state) => state,
                Err(e) => {
                    warnings.push(format!("cannot read the health state: {}", e.message));
                    None
                }
            },
        });
        Ok(Status {
            record,
            systemd: info,
            usage,
            warnings,
            health,
        })
    }

    /// The user manager's cgroup, or why it is unknown.
    async fn manager_cgroup(&self) -> std::result::Result<String, String> {
        match self.systemd().await {
            Ok(s) => match s.manager_control_group().await {
                Ok(Some(cg)) => Ok(cg),
                Ok(None) => Err("the user manager does not report its cgroup".to_string()),
                Err(e) => Err(e.message),
            },
            Err(e) => Err(e.message),
        }
    }

    /// [`Controller::list`] with each running process's usage, read from
    /// its cgroup files: one D-Bus call in all (the manager's cgroup), then
    /// a few file reads per running process.
    pub async fn list_with_usage(&self, filter: &ListFilter) -> Result<(Vec<Listed>, Vec<String>)> {
        let (records, mut warnings) = self.list(filter).await?;
        let cgroups = if records.iter().any(|r| !r.state.is_ended()) {
            Some(Cgroups::detect(self.manager_cgroup().await))
        } else {
            None
        };
        let usages = match &cgroups {
            Some(c) => {
                let paths: Vec<Option<String>> = records
                    .iter()
                    .map(|r| {
                        (!r.state.is_ended())
                            .then(|| c.unit_cgroup(r.owner, &r.unit))
                            .flatten()
                    })
                    .collect();
                c.read_all(&paths)
            }
            None => vec![None; records.len()],
        };
        let listed = records
            .into_iter()
            .zip(usages)
            .map(|(record, usage)| {
                let health_status = self.health_status(&record, &mut warnings);
                Listed {
                    record,
                    usage,
                    health_status,
                }
            })
            .collect();
        Ok((listed, warnings))
    }

    /// Where a record's health stands for `list`: one small file read,
    /// only for a running process with a check.
    fn health_status(&self, r: &Record, warnings: &mut Vec<String>) -> Option<HealthStatus> {
        if r.health.is_none() || r.state.is_ended() || r.state == State::Queued {
            return None;
        }
        match self.index.health(&r.id) {
            Ok(state) => Some(state.map_or(HealthStatus::Starting, |s| s.status)),
            Err(e) => {
                warnings.push(format!(
                    "cannot read the health state of {}: {}",
                    r.id, e.message
                ));
                None
            }
        }
    }

    /// Changes the limits of a running process: systemd first
    /// (SetUnitProperties, runtime), then the record, so that
    /// `systemctl --user show` and the record agree. A later `restart`
    /// starts it again with these limits. Refused for ended processes.
    pub async fn set_limits(&self, arg: &str, change: &LimitChange) -> Result<Record> {
        change.validate()?;
        let id = self.resolve(arg)?;
        let _serialized = self.limits_lock().await?;
        let (mut record, info) = self.load(&id, &mut Vec::new()).await?;
        refresh(&mut record, info.as_ref());
        let ended = |r: &Record| {
            Error::refused(format!(
                "{id} is not running (it is {}); limits can be set only on a running process",
                r.state
            ))
            .hint(format!(
                "start it again with refine-proc restart {id}, then set its limits"
            ))
        };
        if info.is_none() || record.state.is_ended() {
            return Err(ended(&record));
        }
        self.authorize("set", &record).await?;
        let requester = self.requester().await?;
        let own = requester.caller.as_ref().is_some_and(|c| c.id == record.id);
        if let Err(e) = requester
            .policy
            .check_change(requester.actor, &record.limits, change, own)
        {
            self.record_refusal("set", Some(&record.id), &e);
            return Err(e);
        }
        let systemd = self.systemd().await?;
        if let Err(e) = systemd
            .set_properties(&record.unit, &limit_properties(change))
            .await
        {
            // It ended meanwhile.
            if e.kind == crate::error::ErrorKind::NotFound {
                reconcile(&mut record, None);
                return Err(ended(&record));
            }
            return Err(e);
        }
        let updated = self.index.update(&id, |r| change.apply(&mut r.limits))?;
        let mut record = updated.unwrap_or_else(|| {
            change.apply(&mut record.limits);
            record
        });
        refresh(&mut record, info.as_ref());
        self.emit(Event::about("limits-changed", &record).with("limits", &record.limits));
        Ok(record)
    }

    /// Changes the limits of an owner's slice (`refine-agent.slice`), which
    /// bound all of that owner's processes together, and records them in
    /// the index (`owners/<owner>.json`). systemd loads the slice on
    /// demand, so this works whether or not a process of the owner runs;
    /// the limits last as long as the user manager (runtime properties).
    pub async fn set_owner_limits(
        &self,
        owner: Owner,
        change: &LimitChange,
    ) -> Result<OwnerLimits> {
        change.validate()?;
        // A slice bounds every process of the owner: only an actor that may
        // act on all processes may change it.
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let checked = if rules.act_on == Reach::All {
            let current = self
                .index
                .owner_limits(owner)?
                .map(|o| o.limits)
                .unwrap_or_default();
            requester
                .policy
                .check_change(requester.actor, &current, change, false)
        } else {
            Err(crate::policy::denied(
                &rules,
                "act_on",
                format!(
                    "{} may not change the limits of all {owner} processes",
                    rules.actor
                ),
            ))
        };
        if let Err(e) = checked {
            self.record_refusal("set", None, &e);
            return Err(e);
        }
        let _serialized = self.limits_lock().await?;
        let slice = owner.slice();
        self.systemd()
            .await?
            .set_properties(&slice, &limit_properties(change))
            .await
            .map_err(|e| match e.kind {
                // systemd 252 loads a slice for SetUnitProperties; should a
                // manager refuse a slice that is not loaded, say what helps.
                crate::error::ErrorKind::NotFound => Error::refused(format!(
                    "{slice} is not loaded, and systemd refused to load it to set limits"
                ))
                .hint(format!(
                    "start a process of that owner first (refine-proc run --owner {owner} -- ...), \
                     then set the limits again"
                )),
                _ => e,
            })?;
        let limits = self.index.update_owner_limits(owner, |l| change.apply(l))?;
        self.emit(
            Event::new("limits-changed")
                .with("slice", &limits.slice)
                .with("limits", &limits.limits),
        );
        Ok(limits)
    }

    /// The limits recorded for an owner's slice, if any were set.
    pub fn owner_limits(&self, owner: Owner) -> Result<Option<OwnerLimits>> {
        self.index.owner_limits(owner)
    }

    async fn limits_lock(&self) -> Result<crate::index::LimitsLock> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.limits_lock())
            .await
            .map_err(|e| Error::index(format!("cannot lock the index: {e}")))?
    }

    /// The stored record of one process, without asking systemd unless the
    /// index lost it.
    pub async fn record(&self, arg: &str) -> Result<Record> {
        let id = self.resolve(arg)?;
        match self.index.load(&id)? {
            Loaded::Found(r) => Ok(*r),
            _ => Ok(self.status(&id).await?.record),
        }
    }

    /// Managed processes, oldest first. Without `all` only the records of
    /// loaded units are read, so the cost follows the number running, not
    /// the history.
    pub async fn list(&self, filter: &ListFilter) -> Result<(Vec<Record>, Vec<String>)> {
        let systemd = self.systemd().await?;
        let live: HashMap<String, ListedUnit> = systemd
            .list(&["refine-*.service", "refine-*.scope"])
            .await?
            .into_iter()
            .filter_map(|u| Some((parse_unit_name(&u.name)?.1, u)))
            .collect();
        let want_history = filter.all || filter.state.is_some_and(State::is_ended);
        let mut ids: Vec<String> = live.keys().cloned().collect();
        // Queued runs have no unit yet; the pause state names them.
        let pauses = self.index.pauses()?.0;
        if !pauses.queued.is_empty() {
            ids.extend(pauses.queued.iter().cloned());
            ids.sort();
            ids.dedup();
        }
        if want_history {
            ids.extend(self.index.ids()?);
            ids.sort();
            ids.dedup();
        }
        let mut warnings = Vec::new();
        let mut records = Vec::with_capacity(ids.len());
        let mut orphans = Vec::new();
        // One small file each: read on all cores for long lists.
        let loaded = crate::par::on_all_cores(&ids, 128, |id| self.index.load(id));
        for (id, loaded) in ids.into_iter().zip(loaded) {
            match loaded? {
                Loaded::Found(r) => records.push(*r),
                Loaded::Newer { schema } => warnings.push(format!(
                    "skipped {id}: written by a newer refine-proc (schema {schema})"
                )),
                Loaded::Quarantined { path, reason } => {
                    warnings.push(format!(
                        "the record of {id} was unreadable ({reason}) and moved to {}",
                        path.display()
                    ));
                    orphans.extend(live.get(&id).map(|u| (id, u)));
                }
                Loaded::Missing => orphans.extend(live.get(&id).map(|u| (id, u))),
            }
        }
        // A scope carries nothing that names its index: a scope without a
        // record cannot be told apart from another index's, so it is not
        // shown.
        orphans.retain(|(_, u)| u.name.ends_with(".service"));
        // Loaded units without a record: rebuild those that name this index
        // in their environment (one property read each); units of other
        // indexes sharing the manager are not ours to show.
        let paths: Vec<_> = orphans.iter().map(|(_, u)| u.path.clone()).collect();
        let environments = systemd.service_property(&paths, "Environment").await;
        for ((id, _), env) in orphans.iter().zip(environments) {
            let env: Vec<String> = env.and_then(|v| v.try_into().ok()).unwrap_or_default();
            let ours = format!("REFINE_PROC_STATE_DIR={}", self.index.dir().display());
            if env.contains(&ours) {
                match self.load(id, &mut warnings).await {
                    Ok((record, _)) => records.push(record),
                    Err(e) => warnings.push(e.message),
                }
            }
        }
        let stored: Vec<State> = records.iter().map(|r| r.state).collect();
        for r in &mut records {
            with_group_pauses(r, &pauses);
            let state = live.get(&r.id).map(|u| UnitState {
                active_state: u.active_state.clone(),
                sub_state: u.sub_state.clone(),
                freezer_state: None,
            });
            reconcile(r, state.as_ref());
        }
        self.close_lost(records.iter_mut().zip(stored).collect())
            .await;
        records.retain(|r| filter.matches(r));
        // A restart gives a unit a new main process: ask systemd for the
        // pids of restartable units only, all at once.
        let restartable: Vec<usize> = (0..records.len())
            .filter(|&i| {
                records[i].restart.policy != RestartPolicy::No && !records[i].state.is_ended()
            })
            .collect();
        let paths: Vec<_> = restartable
            .iter()
            .filter_map(|&i| live.get(&records[i].id).map(|u| u.path.clone()))
            .collect();
        if paths.len() == restartable.len() {
            let pids = systemd.service_property(&paths, "MainPID").await;
            for (i, pid) in restartable.into_iter().zip(pids) {
                let pid = pid.and_then(|v| u32::try_from(v).ok()).filter(|p| *p != 0);
                records[i].pid = pid.or(records[i].pid);
            }
        }
        records.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok((records, warnings))
    }

    /// Stops processes and waits until systemd has stopped them.
    pub async fn stop(&self, args: &[String]) -> Result<Vec<ActionOutcome>> {
        let ids = args
            .iter()
            .map(|a| self.resolve(a))
            .collect::<Result<Vec<_>>>()?;
        let mut targets = Vec::new();
        for id in &ids {
            targets.push(self.load(id, &mut Vec::new()).await?);
        }
        // All allowed, or none is stopped.
        for (record, _) in &targets {
            self.authorize("stop", record).await?;
        }
        let systemd = self.systemd().await?;
        let stops = targets.into_iter().map(|(record, info)| async move {
            let Some(info) = info else {
                if record.state == State::Queued {
                    // Never started: stopping it cancels it, so no resume
                    // starts it later.
                    let updated = self.index.update(&record.id, |r| {
                        if r.state == State::Queued {
                            r.state = State::Stopped;
                            r.ended_at = Some(Timestamp::now());
                            r.paused_by = None;
                        }
                    })?;
                    let mut r = updated.unwrap_or(record);
                    reconcile(&mut r, None);
                    self.emit(Event::about("stopped", &r));
                    return Ok(outcome(&r, "stopped"));
                }
                let mut r = record;
                reconcile(&mut r, None);
                return Ok(outcome(&r, "was-not-running"));
            };
            self.request_stop(&record.id, &info)?;
            let timeout = Duration::from_secs(record.limits.timeout_stop_sec.unwrap_or(0));
            systemd.stop_within(&record.unit, timeout).await?;
            if record.kind == UnitKind::Scope {
                // No exit hook runs for a scope: the end is recorded here.
                self.index.update(&record.id, |r| {
                    if !r.state.is_ended() {
                        r.state = State::Stopped;
                        r.ended_at = Some(Timestamp::now());
                        r.paused_by = None;
                    }
                })?;
                // A service's end is recorded by its exit hook, with the exit.
                self.emit(Event::about("stopped", &record));
            }
            Ok(outcome(&self.refetch(record).await?, "stopped"))
        });
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .collect()
    }

    /// Pauses processes through the cgroup freezer (FreezeUnit), each one
    /// by itself, and records which `pause` froze it, so that a group's
    /// `resume` thaws exactly what that group's `pause` did.
    pub async fn pause(&self, target: &Selection) -> Result<Vec<ActionOutcome>> {
        self.set_paused(target, true).await
    }

    /// Resumes what `pause` froze: for ids, those processes; for a group,
    /// only the processes that group's pause froze (one paused on its own
    /// stays paused).
    pub async fn resume(&self, target: &Selection) -> Result<Vec<ActionOutcome>> {
        self.set_paused(target, false).await
    }

    async fn set_paused(&self, target: &Selection, pause: bool) -> Result<Vec<ActionOutcome>> {
        let action = if pause { "pause" } else { "resume" };
        let tag = target.tag();
        let group = target.ids.is_empty();
        let requester = self.requester().await?;
        let plan = requester.policy.pause_all();
        let mut records = Vec::new();
        if group {
            let filter = ListFilter {
                owner: target.owner,
                workflow: target.workflow.clone(),
                session: target.session.clone(),
                ..Default::default()
            };
            records = self.list(&filter).await?.0;
            records.retain(|r| r.state != State::Queued);
            if !pause {
                // What this group's pause stopped has no unit to list.
                let stopped = self.pauses()?.get(&tag).map(|p| p.stopped.clone());
                for id in stopped.unwrap_or_default() {
                    if let Loaded::Found(r) = self.index.load(&id)? {
                        if !records.iter().any(|x| x.id == r.id) {
                            let (mut r, info) = self.load(&r.id, &mut Vec::new()).await?;
                            refresh(&mut r, info.as_ref());
                            records.push(r);
                        }
                    }
                }
            }
        } else {
            for arg in &target.ids {
                let id = self.resolve(arg)?;
                let (mut r, info) = self.load(&id, &mut Vec::new()).await?;
                refresh(&mut r, info.as_ref());
                records.push(r);
            }
        }
        let treatment = |r: &Record| {
            if target.all && pause {
                plan.treatment(r.owner)
            } else {
                PauseTreatment::Freeze
            }
        };
        // All allowed, or nothing changes.
        for r in records
            .iter()
            .filter(|r| treatment(r) != PauseTreatment::KeepRunning)
        {
            self.authorize(action, r).await?;
        }
        // What this pause is about to freeze (not what it froze before).
        let mut to_freeze: Vec<String> = Vec::new();
        if pause && group {
            // Persisted first, and what will be stopped too: a `run`
            // racing with this pause is held, and a crash halfway leaves
            // what resume needs.
            let by = requester.actor.key().to_string();
            let to_stop: Vec<String> = records
                .iter()
                .filter(|r| !r.state.is_ended() && treatment(r) == PauseTreatment::Stop)
                .map(|r| r.id.clone())
                .collect();
            to_freeze = records
                .iter()
                .filter(|r| {
                    !r.state.is_ended()
                        && r.paused_by.is_none()
                        && treatment(r) == PauseTreatment::Freeze
                })
                .map(|r| r.id.clone())
                .collect();
            self.index.update_pauses(|p| {
                if p.get(&tag).is_none() {
                    p.active.push(GroupPause {
                        selector: tag.clone(),
                        since: Timestamp::now(),
                        by,
                        frozen_owners: if target.all {
                            plan.freeze.clone()
                        } else {
                            vec![]
                        },
                        stopped_owners: if target.all {
                            plan.stop.clone()
                        } else {
                            vec![]
                        },
                        stopped: vec![],
                        frozen: vec![],
                    });
                }
                for id in &to_stop {
                    add_stopped(p, &tag, id);
                }
                // What it is about to freeze, so that a crash halfway
                // leaves what resume needs; trimmed below to what froze.
                for id in &to_freeze {
                    add_frozen(p, &tag, id);
                }
            })?;
            self.emit(Event::new("paused").with("by", &tag).with("group", true));
        }
        let systemd = self.systemd().await?;
        // Resuming one group leaves frozen what another pause in force
        // still holds: it passes to that pause (as if that one froze it).
        let others: Vec<GroupPause> = if pause || !group {
            Vec::new()
        } else {
            let (pauses, _) = self.index.pauses()?;
            pauses
                .active
                .into_iter()
                .filter(|p| p.selector != tag)
                .collect()
        };
        let still_held = |r: &Record| {
            others
                .iter()
                .find(|p| {
                    p.holds(r.owner, &r.metadata)
                        && (p.selector != "all" || p.frozen_owners.contains(&r.owner))
                })
                .map(|p| p.selector.clone())
        };
        let mut handed_over: Vec<(String, String)> = Vec::new();
        let records: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                let frozen_by_this = r.paused_by.as_deref() == Some(tag.as_str());
                match still_held(r).filter(|_| frozen_by_this && !r.state.is_ended()) {
                    Some(other) => {
                        handed_over.push((r.id.clone(), other));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        let changes = records.into_iter().map(|r| {
            let tag = tag.clone();
            let treatment = treatment(&r);
            let id = r.id.clone();
            let change = async move {
                if r.state == State::Queued {
                    // No unit yet: the pause that holds it decides.
                    return Ok(outcome(&r, "is-queued"));
                }
                let by_group = tag != "id";
                // Stopped by this group's pause: its resume starts it again.
                if !pause && r.state.is_ended() && by_group && r.paused_by.as_deref() == Some(&tag)
                {
                    let launch = Self::launch_of(&r)?;
                    let started = self.start_anew(r, &launch).await?;
                    self.emit(started_event(&started).with("resumed_by", &tag));
                    return Ok(outcome(&started, "started-again"));
                }
                if r.state.is_ended() {
                    return Ok(outcome(&r, "was-not-running"));
                }
                match (pause, treatment, r.paused_by.as_deref()) {
                    (true, PauseTreatment::KeepRunning, _) => {
                        return Ok(outcome(&r, "keeps-running"))
                    }
                    (true, _, Some(_)) => return Ok(outcome(&r, "was-paused")),
                    (true, PauseTreatment::Stop, None) => {
                        return self.stop_for_pause(r, &tag).await;
                    }
                    (false, _, None) if r.state != State::Paused => {
                        return Ok(outcome(&r, "was-not-paused"))
                    }
                    // Paused on its own (or by another group): a group's
                    // resume leaves it as it is.
                    (false, _, Some(by)) if by_group && by != tag => {
                        return Ok(outcome(&r, "stays-paused"))
                    }
                    _ => {}
                }
                systemd.set_frozen(&r.unit, pause).await?;
                // A group notes what it froze once for all in pauses.json;
                // a process paused by id, in its record.
                // (A record paused by an older refine-proc holds it itself.)
                let in_record = || {
                    matches!(self.index.load(&r.id), Ok(Loaded::Found(ref s)) if s.paused_by.is_some())
                };
                let mut r = if by_group && (pause || !in_record()) {
                    r
                } else {
                    let updated = self.index.update(&r.id, |rec| {
                        rec.paused_by = pause.then(|| tag.clone());
                    })?;
                    updated.unwrap_or(r)
                };
                r.paused_by = pause.then(|| tag.clone());
                r.state = if pause { State::Paused } else { State::Running };
                present(&mut r);
                let what = if pause { "paused" } else { "resumed" };
                self.emit(Event::about(what, &r).with("by", &tag));
                Ok(outcome(&r, what))
            };
            async move { (id, change.await) }
        });
        let results = futures_util::future::join_all(changes).await;
        let group_ids = |what: &str| -> Vec<String> {
            results
                .iter()
                .filter(|(_, r)| r.as_ref().is_ok_and(|o| o.outcome == what))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if group {
            let (paused, resumed) = (group_ids("paused"), group_ids("resumed"));
            self.index.update_pauses(|p| {
                if pause {
                    // Of what it was about to freeze, keep what froze; what
                    // this pause held before stays (its outcome is
                    // `was-paused`, not `paused`).
                    if let Some(g) = p.active.iter_mut().find(|g| g.selector == tag) {
                        g.frozen
                            .retain(|id| !to_freeze.contains(id) || paused.contains(id));
                    }
                } else {
                    for id in &resumed {
                        p.unfreeze(id);
                    }
                    for (id, other) in &handed_over {
                        p.unfreeze(id);
                        add_frozen(p, other, id);
                    }
                }
            })?;
        } else {
            // Resumed by id: no group holds it frozen any more.
            let resumed = group_ids("resumed");
            let (pauses, _) = self.index.pauses()?;
            if !pause && resumed.iter().any(|id| pauses.frozen_by(id).is_some()) {
                self.index.update_pauses(|p| {
                    for id in &resumed {
                        p.unfreeze(id);
                    }
                })?;
            }
        }
        let mut outcomes = Vec::with_capacity(results.len() + handed_over.len());
        for (_, r) in results {
            outcomes.push(r?);
        }
        for (id, other) in &handed_over {
            if let Loaded::Found(r) = self.index.load(id)? {
                let mut r = *r;
                r.state = State::Paused;
                r.paused_by = Some(other.clone());
                outcomes.push(outcome(&r, "stays-paused"));
            }
        }
        if !pause && group {
            outcomes.extend(self.lift_pause(&tag).await?);
        }
        Ok(outcomes)
    }

    /// Stops a process for `pause --all` and marks it to be started again
    /// by the matching resume.
    async fn stop_for_pause(&self, r: Record, tag: &str) -> Result<ActionOutcome> {
        let systemd = self.systemd().await?;
        if let Some(info) = systemd.service_info(&r.unit).await? {
            self.request_stop(&r.id, &info)?;
            let timeout = Duration::from_secs(r.limits.timeout_stop_sec.unwrap_or(0));
            systemd.stop_within(&r.unit, timeout).await?;
        }
        self.index
            .update(&r.id, |rec| rec.paused_by = Some(tag.to_string()))?;
        let r = self.refetch(r).await?;
        self.emit(
            Event::about("paused", &r)
                .with("by", tag)
                .with("stopped", true),
        );
        Ok(outcome(&r, "stopped-until-resume"))
    }

    /// Ends a group's persisted pause, then starts the queued runs no
    /// other pause holds.
    async fn lift_pause(&self, tag: &str) -> Result<Vec<ActionOutcome>> {
        let (pauses, lifted) = self.index.update_pauses(|p| {
            let before = p.active.len();
            p.active.retain(|x| x.selector != tag);
            before != p.active.len()
        })?;
        if lifted {
            self.emit(Event::new("resumed").with("by", tag).with("group", true));
        }
        let mut outcomes = Vec::new();
        let mut done = Vec::new();
        for id in &pauses.queued {
            let record = match self.index.load(id)? {
                Loaded::Found(r) if r.state == State::Queued => *r,
                // Forgotten or already started: drop it from the queue.
                _ => {
                    done.push(id.clone());
                    continue;
                }
            };
            if pauses.holding(record.owner, &record.metadata).is_some() {
                continue;
            }
            done.push(id.clone());
            let launch = Self::launch_of(&record)?;
            let started = self.start_anew(record, &launch).await?;
            self.emit(started_event(&started).with("queued", true));
            outcomes.push(outcome(&started, "started-from-queue"));
        }
        if !done.is_empty() {
            self.index
                .update_pauses(|p| p.queued.retain(|id| !done.contains(id)))?;
        }
        Ok(outcomes)
    }

    /// Marks the unit's current run as ended on request, so its exit is
    /// recorded as `stopped` (and only that run's).
    fn request_stop(&self, id: &str, info: &ServiceInfo) -> Result<()> {
        let invocation = info.invocation_id.clone();
        self.index
            .update(id, |r| r.stop_requested_for = invocation)?;
        Ok(())
    }

    /// Sends a signal to all processes of a running process's unit.
    pub async fn kill(&self, arg: &str, signal: i32) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("kill", &record).await?;
        let Some(info) = info else {
            let mut r = record;
            reconcile(&mut r, None);
            return Err(Error::refused(format!(
                "{id} is not running (it is {}); there is nothing to signal",
                r.state
            )));
        };
        // Signals that ask a process to end; HUP, USR1, ... usually do not.
        let ends = [
            libc::SIGKILL,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGABRT,
        ];
        let ending = ends.contains(&signal);
        if ending {
            self.request_stop(&id, &info)?;
        }
        if let Err(e) = self.systemd().await?.kill(&record.unit, signal).await {
            if ending {
                self.index.update(&id, |r| r.stop_requested_for = None)?;
            }
            return Err(e);
        }
        self.emit(Event::about("killed", &record).with("signal", signal));
        // A frozen process gets only SIGKILL now; any other signal waits
        // in the kernel until it is resumed.
        let frozen = matches!(
            info.state.freezer_state.as_deref(),
            Some("frozen" | "freezing")
        );
        let what = if frozen && signal != libc::SIGKILL {
            "signalled-delivered-on-resume"
        } else {
            "signalled"
        };
        Ok(outcome(&self.refetch(record).await?, what))
    }

    /// Restarts a running process, or starts an ended one again under the
    /// same id with the same command, environment and limits.
    pub async fn restart(&self, arg: &str) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("restart", &record).await?;
        if record.kind == UnitKind::Scope {
            return Err(Error::refused(format!(
                "{id} is an adopted process: it cannot be restarted; refine-proc has no \
                 command line to start it again"
            ))
            .hint("start the command anew with refine-proc run -- COMMAND"));
        }
        let systemd = self.systemd().await?;
        if let Some(info) = info {
            // The exit this causes is ours, not a failure.
            self.request_stop(&id, &info)?;
            systemd.restart(&record.unit).await?;
            self.forget_group_freeze(&id)?;
            // A new run starts its health anew.
            self.drop_health(&id);
            let old = info.invocation_id;
            self.index.update(&id, |r| {
                // If the latest exit is the one we caused, the record
                // describes the new run now; a later exit stays as recorded.
                if r.last_exit_invocation == old {
                    r.clear_exit();
                    r.state = State::Running;
                }
                // systemd thaws a unit to stop it: the new run is not frozen.
                r.paused_by = None;
            })?;
            self.emit(Event::about("restarted", &record));
            let what = if record.paused_by.is_some() {
                "restarted-unpaused"
            } else {
                "restarted"
            };
            return Ok(outcome(&self.refetch(record).await?, what));
        }
        if record.command.is_empty() {
            return Err(Error::refused(format!(
                "cannot start {id} again: its record was rebuilt after the index was lost, without the command"
            ))
            .hint("start it anew with refine-proc run"));
        }
        let launch = Self::launch_of(&record)?;
        // Started again under the limits the restarter may grant, and bound
        // by the policy of its first launch (not the restarter's).
        let requester = self.requester().await?;
        let request = LaunchRequest {
            owner: launch.owner,
            executable: &launch.executable,
            limits: &launch.limits,
        };
        if let Err(e) = requester.policy.check_launch(requester.actor, &request) {
            self.record_refusal("restart", Some(&id), &e);
            return Err(e);
        }
        if let Some(held) = self.held_by_pause(record.owner, &record.metadata)? {
            let e = Error::refused(format!(
                "cannot start {id} again: {} is paused ({} since {})",
                held_what(&held, record.owner, &record.metadata),
                held.selector,
                held.since
            ))
            .hint(format!(
                "resume first: refine-proc resume {}",
                selector_flag(&held.selector)
            ));
            self.record_refusal("restart", Some(&id), &e);
            return Err(e);
        }
        self.drop_health(&id);
        let r = self.start_anew(record, &launch).await?;
        self.emit(started_event(&r).with("restarted", true));
        Ok(outcome(&r, "started-again"))
    }

    /// Starts a record's command again (an ended run, or a queued one) in
    /// its unit, under the policy of its first launch.
    async fn start_anew(&self, record: Record, launch: &Launch) -> Result<Record> {
        let id = record.id.clone();
        let bound_by = match &record.requested_by.policy {
            Some(path) => Policy::load(Path::new(path))?,
            None => self.requester().await?.policy.clone(),
        };
        let hook = self.unit_context(&bound_by)?;
        self.forget_group_freeze(&id)?;
        self.index.update(&id, |r| {
            r.clear_exit();
            r.state = State::Starting;
            r.pid = None;
            r.paused_by = None;
            r.started_at = Some(Timestamp::now());
            r.launcher = crate::procfs::identity(std::process::id());
        })?;
        let props = service_properties(&id, launch, &hook);
        let job = match self
            .systemd()
            .await?
            .start_transient(&record.unit, &props)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                // Keep the history; say the new start was refused.
                self.index.update(&id, |r| {
                    r.state = State::Failed;
                    r.result = Some("start-refused".into());
                    r.ended_at = Some(Timestamp::now());
                })?;
                return Err(e);
            }
        };
        self.after_start(record, job).await
    }

    /// Drops what the health probes found (best effort: a stale state is
    /// replaced by the next probe anyway).
    fn drop_health(&self, id: &str) {
        if let Err(e) = self.index.remove_health(id) {
            tracing::debug!("cannot drop the health state of {id}: {}", e.message);
        }
    }

    /// The launch a record describes, checked again as `run` would.
    fn launch_of(record: &Record) -> Result<Launch> {
        spec_of(record).validate().map(|mut launch| {
            launch.restart_by = record.restart.by;
            launch
        })
    }

    /// Starts again the `run --persist` processes that the user manager
    /// took down with it (logout without linger, crash, reboot): each as a
    /// new record linked to the old one (`resurrected_from` and
    /// `resurrected_as`). A process ended by `refine-proc stop`, or that
    /// ended by itself, stays ended; one a pause holds is queued.
    pub async fn resurrect(&self) -> Result<Vec<Resurrection>> {
        let _one_at_a_time = self.index.resurrect_lock()?;
        let manager_started = self.systemd().await?.started_at().await;
        let all = ListFilter {
            all: true,
            ..Default::default()
        };
        let (records, _) = self.list(&all).await?;
        let mut done = Vec::new();
        for old in records {
            let went_down_with_the_manager = match old.state {
                // Lost before systemd ever started it: it never ran.
                State::Lost => old.result.as_deref() != Some("not-started"),
                // The manager stops its units on the way out: a clean
                // signal no refine-proc command asked for, before this
                // manager started.
                State::Stopped => {
                    !old.stopped_on_request()
                        && old
                            .ended_at
                            .zip(manager_started)
                            .is_some_and(|(e, m)| e <= m)
                }
                _ => false,
            };
            if !old.persist || old.resurrected_as.is_some() || !went_down_with_the_manager {
                continue;
            }
            let outcome = self.resurrect_one(&old).await;
            done.push(match outcome {
                Ok(record) => Resurrection {
                    from: old.id.clone(),
                    outcome: if record.state == State::Queued {
                        "queued".into()
                    } else {
                        "started".into()
                    },
                    record: Some(record),
                    error: None,
                },
                Err(e) => Resurrection {
                    from: old.id.clone(),
                    outcome: "failed".into(),
                    record: None,
                    error: Some(match e.hint {
                        Some(h) => format!("{} ({h})", e.message),
                        None => e.message,
                    }),
                },
            });
        }
        Ok(done)
    }

    async fn resurrect_one(&self, old: &Record) -> Result<Record> {
        self.authorize("restart", old).await?;
        if old.command.is_empty() {
            return Err(Error::refused(format!(
                "{} has no command to start again (rebuilt after the index was lost)",
                old.id
            )));
        }
        let spec = RunSpec {
            persist: true,
            ..spec_of(old)
        };
        let options = RunOptions {
            queue: true,
            ..Default::default()
        };
        let new = self.run(spec, options).await?;
        let linked = self.index.update(&new.id, |r| {
            r.resurrected_from = Some(old.id.clone());
        })?;
        self.index
            .update(&old.id, |r| r.resurrected_as = Some(new.id.clone()))?;
        self.emit(
            Event::about("resurrected", &new)
                .with("from", &old.id)
                .with("state", new.state),
        );
        let mut record = linked.unwrap_or(new);
        present(&mut record);
        Ok(record)
    }

    /// A new run of a record is not frozen, whatever froze the last one.
    fn forget_group_freeze(&self, id: &str) -> Result<()> {
        if self.index.pauses()?.0.frozen_by(id).is_some() {
            self.index.update_pauses(|p| p.unfreeze(id))?;
        }
        Ok(())
    }

    /// The group pause in force that holds a process of this owner and
    /// metadata, if any.
    pub fn held_by_pause(&self, owner: Owner, metadata: &Metadata) -> Result<Option<GroupPause>> {
        let (pauses, warning) = self.index.pauses()?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        Ok(pauses.holding(owner, metadata).cloned())
    }

    /// The group pauses in force and the queued records.
    pub fn pauses(&self) -> Result<Pauses> {
        Ok(self.index.pauses()?.0)
    }

    /// Records a run held by a pause as `queued`; the resume that lifts
    /// the last pause holding it starts it.
    fn queue(
        &self,
        launch: &Launch,
        requested_by: RequestedBy,
        held: &GroupPause,
    ) -> Result<Record> {
        let record = store_fresh(&self.index, |id| Record {
            state: State::Queued,
            started_at: None,
            paused_by: Some(held.selector.clone()),
            ..new_record(id, launch, requested_by.clone())
        })?;
        self.index
            .update_pauses(|p| p.queued.push(record.id.clone()))?;
        self.emit(Event::about("queued", &record).with("held_by", &held.selector));
        Ok(record)
    }

    /// A run that started while a pause was being made: treat it as the
    /// pause treated its group.
    async fn hold_late_start(&self, record: Record, held: &GroupPause) -> Result<Record> {
        let systemd = self.systemd().await?;
        if held.selector == "all" && held.stopped_owners.contains(&record.owner) {
            self.index
                .update_pauses(|p| add_stopped(p, "all", &record.id))?;
            if let Some(info) = systemd.service_info(&record.unit).await? {
                self.request_stop(&record.id, &info)?;
                systemd.stop(&record.unit).await?;
            }
            self.index
                .update(&record.id, |r| r.paused_by = Some("all".into()))?;
        } else {
            systemd.set_frozen(&record.unit, true).await?;
            self.index
                .update_pauses(|p| add_frozen(p, &held.selector, &record.id))?;
            self.emit(Event::about("paused", &record).with("by", &held.selector));
        }
        self.refetch(record).await
    }

    /// Drops the record of an ended process.
    pub async fn forget(&self, arg: &str) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (mut record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("forget", &record).await?;
        if let Some(info) = &info {
            if info.state.active_state == "failed" {
                self.systemd().await?.reset_failed(&record.unit).await?;
            } else {
                return Err(Error::refused(format!(
                    "{id} is still {} ({}); refusing to forget a live process",
                    info.state.active_state, info.state.sub_state
                ))
                .hint(format!("stop it first: refine-proc stop {id}")));
            }
        }
        self.index.remove(&id)?;
        self.drop_health(&id);
        // So that `recover` does not bring it back from the journal.
        let dir = self.index.dir().display().to_string();
        let _ = crate::journal::send(&[
            ("MESSAGE", &format!("{}: record forgotten", record.unit)),
            ("SYSLOG_IDENTIFIER", crate::journal::OWN_IDENTIFIER),
            ("PRIORITY", "6"),
            ("REFINE_EVENT", "forget"),
            ("REFINE_ID", &id),
            ("REFINE_UNIT", &record.unit),
            ("REFINE_PROC_STATE_DIR", &dir),
        ]);
        reconcile(&mut record, None);
        self.emit(Event::about("forgotten", &record));
        Ok(outcome(&record, "forgotten"))
    }

    /// Records an exit reported by systemd to the ExecStopPost hook, from
    /// its environment (SERVICE_RESULT, EXIT_CODE, EXIT_STATUS,
    /// INVOCATION_ID). Runs without D-Bus so it works whatever else is
    /// happening.
    pub fn record_exit(&self, id: &str, env: &BTreeMap<String, String>) -> Result<Record> {
        let record = self.store_exit(id, env)?;
        let mut event = Event::about(record.state.as_str(), &record)
            .with("exit_code", record.exit_code)
            .with("exit_signal", &record.exit_signal)
            .with("result", &record.result);
        event.actor = Some("systemd".into());
        self.emit(event);
        Ok(record)
    }

    fn store_exit(&self, id: &str, env: &BTreeMap<String, String>) -> Result<Record> {
        // systemd runs the hook inside the unit's own cgroup: anything else
        // asking to rewrite how a run ended is refused.
        let Some(unit) = crate::provenance::managed_caller().filter(|c| c.id == id) else {
            return Err(Error::refused(format!(
                "record-exit {id} is refused: only systemd runs it, as the ExecStopPost of that unit"
            ))
            .hint("refine-proc records exits by itself; use status to read them"));
        };
        let exit = exit_from_environment(env);
        // Also in the journal, first: should the index refuse the write, the
        // exit is still known to whoever finds the record lost.
        let dir = self.index.dir().display().to_string();
        let sent = crate::journal::send(&[
            (
                "MESSAGE",
                &format!("{}: exit recorded ({})", unit.unit, exit.result),
            ),
            ("SYSLOG_IDENTIFIER", crate::journal::OWN_IDENTIFIER),
            ("PRIORITY", "6"),
            ("REFINE_EVENT", "exit"),
            ("REFINE_ID", id),
            ("REFINE_UNIT", &unit.unit),
            ("REFINE_PROC_STATE_DIR", &dir),
            ("REFINE_RESULT", &exit.result),
            (
                "REFINE_EXIT_CODE",
                env.get("EXIT_CODE").map(String::as_str).unwrap_or(""),
            ),
            (
                "REFINE_EXIT_STATUS",
                env.get("EXIT_STATUS").map(String::as_str).unwrap_or(""),
            ),
            (
                "REFINE_INVOCATION",
                exit.invocation.as_deref().unwrap_or(""),
            ),
        ]);
        if let Err(e) = sent {
            tracing::debug!("cannot write the exit to the journal: {e}");
        }
        if let Some(r) = self.index.update(id, |r| r.apply_exit(exit.clone()))? {
            return Ok(r);
        }
        // The index lost the record: rebuild it from the unit's environment,
        // which the hook inherits.
        let mut record = record_from_environment(id, &unit.unit, env, &ServiceInfo::default());
        record.apply_exit(exit.clone());
        match self.index.create(&record) {
            Ok(()) => Ok(record),
            // Someone rebuilt it meanwhile: apply the exit to theirs.
            Err(_) => Ok(self
                .index
                .update(id, |r| r.apply_exit(exit))?
                .unwrap_or(record)),
        }
    }

    /// Rebuilds the records the index lost (deleted, or quarantined as
    /// unreadable) from systemd and the journal, never overwriting one that
    /// is there: every running service of this index (its unit's
    /// Environment names the index) from its unit's environment and
    /// properties, with what its start entry in the journal adds (details,
    /// metadata, limits, who asked); and every ended run the journal shows
    /// for this index, closed with the exit the journal holds (else `lost`).
    pub async fn recover(&self) -> Result<Recovery> {
        let systemd = self.systemd().await?;
        let dir = self.index.dir().display().to_string();
        let (index_dir, journal_dir) = (dir.clone(), dir.clone());
        let mut units =
            tokio::task::spawn_blocking(move || crate::journal::own_units(&journal_dir))
                .await
                .ok()
                .flatten();
        let journal_read = units.is_some();
        let in_journal = units.clone().unwrap_or_default();
        let live = systemd
            .list(&["refine-*.service", "refine-*.scope"])
            .await?;
        let names: Vec<String> = live.iter().map(|u| u.name.clone()).collect();
        let own = units.get_or_insert_with(Vec::new);
        for n in &names {
            if !own.contains(n) {
                own.push(n.clone());
            }
        }
        let all = own.clone();
        let history = tokio::task::spawn_blocking(move || crate::journal::history(&all, None))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        // `forget` is in the event history too, which outlives a damaged
        // record (not a deleted index): either keeps a forgotten run forgotten.
        let forgotten: HashMap<String, Timestamp> = self
            .index
            .events()
            .map(|(events, _)| events)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.event == "forgotten")
            .filter_map(|e| Some((e.id?, e.time)))
            .collect();
        let mut recovery = Recovery {
            rebuilt: Vec::new(),
            intact: 0,
            not_rebuilt: Vec::new(),
            journal: journal_read,
        };
        for unit in units.unwrap_or_default() {
            let Some((_, id)) = parse_unit_name(&unit) else {
                continue;
            };
            let mut not_rebuilt = |reason: String| {
                recovery.not_rebuilt.push(NotRebuilt {
                    id: id.clone(),
                    unit: unit.clone(),
                    reason,
                })
            };
            match self.index.load(&id) {
                Ok(Loaded::Found(_)) => {
                    recovery.intact += 1;
                    continue;
                }
                Ok(Loaded::Newer { schema }) => {
                    not_rebuilt(format!(
                        "its record has schema {schema}, newer than this refine-proc"
                    ));
                    continue;
                }
                Ok(Loaded::Missing | Loaded::Quarantined { .. }) => {}
                Err(e) => {
                    not_rebuilt(e.message);
                    continue;
                }
            }
            let h = history.get(&unit).cloned().unwrap_or_default();
            let from_journal = h
                .start
                .clone()
                .and_then(|v| serde_json::from_value::<Record>(v).ok());
            let info = if names.contains(&unit) {
                systemd.service_info(&unit).await?
            } else {
                None
            };
            let record = match info {
                Some(info) if unit.ends_with(".service") => {
                    let env: BTreeMap<String, String> = info
                        .environment
                        .iter()
                        .filter_map(|e| e.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    // Only this index's units; others share the manager.
                    if env.get("REFINE_ID") != Some(&id)
                        || env.get("REFINE_PROC_STATE_DIR") != Some(&index_dir)
                    {
                        continue;
                    }
                    let live = record_from_environment(&id, &unit, &env, &info);
                    match from_journal {
                        Some(mut r) if r.id == id && r.unit == unit => {
                            // Who it is from the journal; what it does now from systemd.
                            r.environment = live.environment;
                            r.state = live.state;
                            r.pid = live.pid;
                            r.launcher = None;
                            r.recovered_from = Some("systemd+journal".into());
                            r
                        }
                        _ => live,
                    }
                }
                Some(info) => {
                    // A scope keeps no environment: only its start entry in
                    // the journal says it is this index's.
                    if !in_journal.contains(&unit) {
                        continue;
                    }
                    let Some(mut r) = from_journal.filter(|r| r.id == id && r.unit == unit) else {
                        not_rebuilt(
                            "an adopted process: a scope keeps no environment, and the \
                                     journal holds no start entry for it"
                                .into(),
                        );
                        continue;
                    };
                    r.launcher = None;
                    r.recovered_from = Some("systemd+journal".into());
                    reconcile(&mut r, Some(&info.state));
                    r
                }
                // Only the journal can say an ended run was this index's (a
                // unit listed a moment ago may be another index's, now gone).
                None if !in_journal.contains(&unit) => continue,
                None => {
                    let forgot_after_start = forgotten
                        .get(&id)
                        .is_some_and(|t| h.start_at.is_none_or(|s| *t >= s));
                    if h.forgotten() || forgot_after_start {
                        continue; // `forget` dropped it on purpose
                    }
                    let Some(mut r) = from_journal.filter(|r| r.id == id && r.unit == unit) else {
                        not_rebuilt("the journal holds no start entry for it".into());
                        continue;
                    };
                    if !h.env_keys.is_empty() {
                        // Its --env values stayed in the lost index: starting it
                        // again without them would not be the same process.
                        r.command.clear();
                    }
                    close_from_journal(&mut r, &h);
                    r
                }
            };
            match self.index.create_or_load(record) {
                Ok(stored) => {
                    let mut shown = stored.clone();
                    present(&mut shown);
                    self.emit(
                        Event::about("recovered", &stored).with("from", &stored.recovered_from),
                    );
                    recovery.rebuilt.push(shown);
                }
                Err(e) => not_rebuilt(e.message),
            }
        }
        recovery
            .rebuilt
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(recovery)
    }

    /// All records of an owner or workflow (for grouped logs).
    pub fn records_where(&self, keep: impl Fn(&Record) -> bool) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for id in self.index.ids()? {
            if let Loaded::Found(r) = self.index.load(&id)? {
                if keep(&r) {
                    out.push(*r);
                }
            }
        }
        Ok(out)
    }
}

/// The name systemd gives a spawn failure exit status (see systemd.exec(5)).
fn spawn_failure_name(code: i32) -> &'static str {
    match code {
        200 => "/CHDIR: the working directory is not accessible",
        203 => "/EXEC: the program could not be executed",
        216 => "/GROUP",
        217 => "/USER",
        _ => "",
    }
}

/// Stores the record of a new launch under a fresh id.
fn store_new_record(index: &Index, launch: &Launch, requested_by: RequestedBy) -> Result<Record> {
    store_fresh(index, |id| new_record(id, launch, requested_by.clone()))
}

/// The request a record describes: what `restart` and `resurrect` start
/// again.
fn spec_of(record: &Record) -> RunSpec {
    RunSpec {
        command: record.command.clone(),
        owner: Some(record.owner),
        label: Some(record.label.clone()),
        details: record.details.clone(),
        metadata: record.metadata.clone(),
        cwd: record.cwd.as_ref().map(PathBuf::from),
        environment: record.environment.clone(),
        limits: record.limits.clone(),
        restart: record.restart.policy,
        restart_timing: record.restart.timing.clone(),
        ready: record.ready.clone(),
        persist: record.persist,
        health: record.health.clone(),
        pty: crate::pty::options_of(record),
    }
}

/// The record of a new launch under `id`, starting.
fn new_record(id: String, launch: &Launch, requested_by: RequestedBy) -> Record {
    let unit = unit_name(launch.owner, &id);
    let pty = launch.pty.as_ref().map(|p| p.record(&id));
    Record {
        schema: RECORD_SCHEMA,
        logs: Logs {
            journal: journal_command(&unit),
        },
        id,
        unit,
        kind: UnitKind::Service,
        owner: launch.owner,
        label: launch.label.clone(),
        details: launch.details.clone(),
        command: launch.command.clone(),
        cwd: Some(launch.cwd.display().to_string()),
        environment: launch.environment.clone(),
        metadata: launch.metadata.clone(),
        requested_by: requested_by.clone(),
        pid: None,
        state: State::Starting,
        started_at: Some(Timestamp::now()),
        ended_at: None,
        exit_code: None,
        exit_signal: None,
        result: None,
        exit_source: None,
        limits: launch.limits.clone(),
        pty,
        restart: Restart {
            policy: launch.restart,
            timing: launch.restart_timing.clone(),
            by: launch.restart_by,
            last_failure: None,
            count: 0,
        },
        runs_ended: 0,
        stop_requested_for: None,
        last_exit_invocation: None,
        paused_by: None,
        ready: launch.ready.clone(),
        persist: launch.persist,
        resurrected_from: None,
        resurrected_as: None,
        launcher: crate::procfs::identity(std::process::id()),
        recovered_from: None,
        health: launch.health.clone(),
    }
}

/// The record of an adopted process, before systemd has moved it.
fn adopted_record(id: String, a: &Adoption, requested_by: RequestedBy) -> Record {
    let unit = scope_name(a.owner, &id);
    Record {
        schema: RECORD_SCHEMA,
        logs: Logs {
            journal: journal_command(&unit),
        },
        id,
        unit,
        kind: UnitKind::Scope,
        owner: a.owner,
        label: a.label.clone(),
        details: a.details.clone(),
        command: a.command.clone(),
        cwd: a.cwd.clone(),
        environment: Default::default(),
        metadata: a.metadata.clone(),
        requested_by,
        pid: Some(a.pid),
        state: State::Starting,
        started_at: Some(Timestamp::now()),
        ended_at: None,
        exit_code: None,
        exit_signal: None,
        result: None,
        exit_source: None,
        limits: Default::default(),
        pty: None,
        restart: Default::default(),
        runs_ended: 0,
        stop_requested_for: None,
        last_exit_invocation: None,
        paused_by: None,
        ready: None,
        persist: false,
        resurrected_from: None,
        resurrected_as: None,
        launcher: crate::procfs::identity(std::process::id()),
        recovered_from: None,
        health: None,
    }
}

/// Stores a new record under a fresh id (`make` builds it for an id). The
/// record exists before the unit, so the exit hook always finds it,
/// however fast the process ends.
fn store_fresh(index: &Index, make: impl Fn(String) -> Record) -> Result<Record> {
    loop {
        let record = make(new_id());
        match index.create(&record) {
            Ok(()) => return Ok(record),
            Err(e) if e.message.contains("already exists") => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What a pause holds, in words: "owner agent", "workflow wf-1", ...
fn held_what(held: &GroupPause, owner: Owner, metadata: &Metadata) -> String {
    match held.selector.split_once(':') {
        Some(("workflow", _)) => format!(
            "workflow {}",
            escape(metadata.workflow.as_deref().unwrap_or_default())
        ),
        Some(("session", _)) => format!(
            "session {}",
            escape(metadata.session.as_deref().unwrap_or_default())
        ),
        _ => format!("owner {owner}"),
    }
}

/// The resume flags that lift a pause: `--owner agent`, `--all`, ...
fn selector_flag(selector: &str) -> String {
    match selector.split_once(':') {
        Some((kind, value)) => format!("--{kind} {}", escape(value)),
        None => "--all".into(),
    }
}

/// Notes in the pause `tag` that it froze record `id`.
fn add_frozen(pauses: &mut Pauses, tag: &str, id: &str) {
    if let Some(p) = pauses.active.iter_mut().find(|p| p.selector == tag) {
        if !p.frozen.iter().any(|s| s == id) {
            p.frozen.push(id.to_string());
        }
    }
}

/// A running record frozen by a group pause shows it: the pause notes
/// what it froze in pauses.json, not in each record.
fn with_group_pauses(record: &mut Record, pauses: &Pauses) {
    if record.paused_by.is_none() && !record.state.is_ended() {
        record.paused_by = pauses.frozen_by(&record.id).map(String::from);
    }
}

/// Notes in the pause `tag` that it stopped record `id`.
fn add_stopped(pauses: &mut Pauses, tag: &str, id: &str) {
    if let Some(p) = pauses.active.iter_mut().find(|p| p.selector == tag) {
        if !p.stopped.iter().any(|s| s == id) {
            p.stopped.push(id.to_string());
        }
    }
}

/// Writes the start of a run to the journal, with its record (without the
/// values of its environment, which stay in the private index): what
/// `recover` rebuilds ended runs from when the index is gone. Best effort.
fn journal_start(index: &Index, r: &Record) {
    let mut public = r.clone();
    let env_keys: Vec<String> = public.environment.keys().cloned().collect();
    public.environment.clear();
    let json = serde_json::to_string(&public).expect("records serialize");
    let dir = index.dir().display().to_string();
    let sent = crate::journal::send(&[
        ("MESSAGE", &format!("{}: start requested", r.unit)),
        ("SYSLOG_IDENTIFIER", crate::journal::OWN_IDENTIFIER),
        ("PRIORITY", "6"),
        ("REFINE_EVENT", "start"),
        ("REFINE_ID", &r.id),
        ("REFINE_UNIT", &r.unit),
        ("REFINE_PROC_STATE_DIR", &dir),
        ("REFINE_ENV_KEYS", &env_keys.join(",")),
        ("REFINE_RECORD", &json),
    ]);
    if let Err(e) = sent {
        tracing::debug!("cannot write the start to the journal: {e}");
    }
}

/// The start of a run, dated when refine-proc started it.
fn started_event(r: &Record) -> Event {
    let mut event = Event::about("started", r).with("pid", r.pid);
    if let Some(at) = r.started_at {
        event.time = at;
    }
    event
}

fn outcome(r: &Record, what: &str) -> ActionOutcome {
    ActionOutcome {
        id: r.id.clone(),
        unit: r.unit.clone(),
        outcome: what.to_string(),
        state: r.state,
    }
}

/// The journalctl command a person can paste to read a unit's output. The
/// syslog identifier is attached by journald to every line, even of a
/// process that exits at once. A scope's processes have no identifier of
/// ours: their lines are found by the unit journald reads from /proc.
pub fn journal_command(unit: &str) -> String {
    if unit.ends_with(".scope") {
        return format!("journalctl _SYSTEMD_USER_UNIT={unit}");
    }
    format!("journalctl -t {}", unit.trim_end_matches(".service"))
}

fn default_hook_program() -> PathBuf {
    if let Some(p) = std::env::var_os("REFINE_PROC_HOOK") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "refine-proc") {
            return exe;
        }
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("refine-proc"))
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("refine-proc"))
}

/// Closes the record of an ended run rebuilt from its start entry in the
/// journal: with its last exit there (from the hook's entry, or the
/// manager's message), as the hook would have; else `lost`.
fn close_from_journal(r: &mut Record, h: &crate::journal::UnitHistory) {
    r.launcher = None;
    r.paused_by = None;
    r.recovered_from = Some("journal".into());
    match h.exit_after(r.started_at, None) {
        Some(e) => {
            r.apply_exit(Exit {
                result: e.result,
                code: e.code,
                signal: e.signal,
                at: e.at.unwrap_or_else(Timestamp::now),
                invocation: e.invocation,
            });
            r.runs_ended = h.exits.len() as u32;
            r.exit_source = Some("journal".into());
        }
        None => {
            r.clear_exit();
            r.state = State::Lost;
            if !h.seen_by_manager {
                r.result = Some("not-started".into());
            } else {
                r.ended_at = h.last_output_at;
            }
        }
    }
}

/// Closes a record whose unit vanished without a recorded exit: `lost`,
/// with the last exit the journal holds for this run (`exit_source:
/// journal`), else `ended_at` the latest it can have ended (when a newer
/// user manager started, or now). A `starting` record that the journal
/// shows refine-proc requested but the manager never created is
/// `result: not-started`: nothing ran.
fn close_as_lost(
    r: &mut Record,
    history: &crate::journal::UnitHistory,
    journal_read: bool,
    manager_started: Option<Timestamp>,
) {
    let was_starting = r.state == State::Starting;
    r.state = State::Lost;
    r.launcher = None;
    r.paused_by = None;
    r.clear_exit();
    if let Some(exit) = history.exit_after(r.started_at, r.last_exit_invocation.as_deref()) {
        r.ended_at = exit.at.or(Some(Timestamp::now()));
        r.exit_code = exit.code;
        r.exit_signal = exit.signal;
        r.result = Some(exit.result);
        r.exit_source = Some("journal".into());
        r.last_exit_invocation = exit.invocation;
        r.runs_ended += 1;
        return;
    }
    if was_starting && journal_read && history.start.is_some() && !history.seen_by_manager {
        r.result = Some("not-started".into());
        return;
    }
    let later_manager = manager_started.filter(|m| r.started_at.is_none_or(|s| *m > s));
    r.ended_at = later_manager.or(Some(Timestamp::now()));
}

/// The record with systemd's live facts about the unit (if loaded) merged in.
fn refresh(record: &mut Record, info: Option<&ServiceInfo>) {
    if let Some(pid) = info.and_then(|i| i.main_pid) {
        record.pid = Some(pid);
    }
    reconcile(record, info.map(|i| &i.state));
}

/// Merges systemd's live view into a record: while the unit is loaded its
/// state wins; once it is gone, the recorded exit does; no exit means lost.
/// The restart count follows from the runs that ended: every ended run but
/// the last one was followed by another start.
pub fn reconcile(record: &mut Record, live: Option<&UnitState>) {
    if record.kind == UnitKind::Scope {
        reconcile_scope(record, live);
        paused_as_recorded(record, live);
        present(record);
        return;
    }
    match live.map(|l| (l.active_state.as_str(), l.freezer_state.as_deref())) {
        Some((_, Some("frozen" | "freezing"))) => record.state = State::Paused,
        Some(("active" | "reloading" | "deactivating", _)) => record.state = State::Running,
        Some(("activating", _)) => record.state = State::Starting,
        // inactive/failed but not yet collected: the exit hook has run or is
        // running; keep what it recorded.
        Some(_) => {}
        None => {
            let may_still_start = record.state == State::Starting && may_still_start(record);
            let queued = record.state == State::Queued;
            if !(record.state.is_ended() || may_still_start || queued) {
                record.state = State::Lost;
            }
        }
    }
    paused_as_recorded(record, live);
    present(record);
}

/// Whether a `starting` record without a unit may still get one: within
/// START_GRACE, unless the process that launched it is gone (killed
/// between its index write and systemd's answer). A launcher's last
/// D-Bus request may still be on its way when it dies: a moment's grace
/// covers that.
fn may_still_start(record: &Record) -> bool {
    let age = record.started_at.map(|t| t.elapsed());
    let young = age.is_some_and(|a| a < START_GRACE);
    let launcher_gone = record
        .launcher
        .as_deref()
        .is_some_and(|l| !crate::procfs::is_alive(l));
    young && !(launcher_gone && age.is_some_and(|a| a > LAUNCHER_GRACE))
}

/// ListUnitsByPatterns carries no FreezerState: where systemd's view has
/// none, a running process that refine-proc paused shows as paused.
fn paused_as_recorded(record: &mut Record, live: Option<&UnitState>) {
    let unknown_freezer = live.is_some_and(|l| l.freezer_state.is_none());
    if record.state == State::Running && record.paused_by.is_some() && unknown_freezer {
        record.state = State::Paused;
    }
}

/// A scope has no exit hook and no exit status: it runs while systemd
/// shows it active, and once it is inactive or gone its processes have all
/// ended: `stopped` if refine-proc was asked to end it, else `ended`.
fn reconcile_scope(record: &mut Record, live: Option<&UnitState>) {
    match live.map(|l| (l.active_state.as_str(), l.freezer_state.as_deref())) {
        Some((_, Some("frozen" | "freezing"))) => record.state = State::Paused,
        Some(("active" | "reloading" | "deactivating", _)) => record.state = State::Running,
        Some(("activating", _)) => record.state = State::Starting,
        _ if record.state.is_ended() => {}
        _ => {
            record.state = match record.state {
                // `adopt` is between its index write and systemd's reply.
                State::Starting if may_still_start(record) => State::Starting,
                // systemd never confirmed the adoption.
                State::Starting => State::Lost,
                _ if record.stop_requested_for.is_some() => State::Stopped,
                _ => State::Ended,
            };
        }
    }
}

/// Derives what a record shows from what it stores: the restart count
/// (every ended run but the last one was followed by another start) and,
/// while a process runs, no exit fields of an earlier run.
fn present(record: &mut Record) {
    let ended_last_run = matches!(record.state, State::Exited | State::Failed | State::Stopped);
    record.restart.count = if ended_last_run {
        record.runs_ended.saturating_sub(1)
    } else {
        record.runs_ended
    };
    if !record.state.is_ended() {
        // The exit fields describe a previous run of a restarted process.
        record.clear_exit();
    }
}

fn exit_from_environment(env: &BTreeMap<String, String>) -> Exit {
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
    let status = get("EXIT_STATUS");
    let (code, signal) = match get("EXIT_CODE") {
        "exited" => (status.parse().ok(), None),
        "killed" | "dumped" => (None, Some(status.trim_start_matches("SIG").to_string())),
        _ => (status.parse().ok(), None),
    };
    let result = match get("SERVICE_RESULT") {
        "" => "unknown",
        r => r,
    };
    Exit {
        result: result.to_string(),
        code,
        signal,
        at: Timestamp::now(),
        invocation: env.get("INVOCATION_ID").filter(|i| !i.is_empty()).cloned(),
    }
}

/// A record rebuilt from a unit's REFINE_* environment and properties.
fn record_from_environment(
    id: &str,
    unit: &str,
    env: &BTreeMap<String, String>,
    info: &ServiceInfo,
) -> Record {
    let get = |k: &str| env.get(k).cloned();
    let owner = parse_unit_name(unit)
        .map(|(o, _)| o)
        .or_else(|| get("REFINE_OWNER").and_then(|o| o.parse().ok()))
        .unwrap_or(Owner::UserHelper);
    let environment = env
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("REFINE_")
                && !matches!(
                    k.as_str(),
                    "SERVICE_RESULT"
                        | "EXIT_CODE"
                        | "EXIT_STATUS"
                        | "INVOCATION_ID"
                        | "MONITOR_SERVICE_RESULT"
                )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut record = Record {
        schema: RECORD_SCHEMA,
        id: id.to_string(),
        unit: unit.to_string(),
        kind: UnitKind::Service,
        owner,
        label: get("REFINE_LABEL").unwrap_or_else(|| info.description.clone()),
        details: None,
        command: info.exec_argv.clone(),
        cwd: info.working_directory.clone(),
        environment,
        metadata: Metadata {
            workflow: get("REFINE_WORKFLOW"),
            gap: get("REFINE_GAP"),
            session: get("REFINE_SESSION"),
            mode: get("REFINE_MODE"),
            runner: get("REFINE_RUNNER"),
            extra: Default::default(),
        },
        requested_by: Default::default(),
        pid: info.main_pid,
        state: State::Running,
        started_at: info.active_enter_usec.and_then(Timestamp::from_usec),
        ended_at: None,
        exit_code: None,
        exit_signal: None,
        result: None,
        exit_source: None,
        limits: Default::default(),
        pty: None,
        restart: Default::default(),
        logs: Logs {
            journal: journal_command(unit),
        },
        runs_ended: 0,
        stop_requested_for: None,
        last_exit_invocation: None,
        paused_by: None,
        ready: None,
        persist: get("REFINE_PERSIST").is_some_and(|v| v == "1"),
        resurrected_from: None,
        resurrected_as: None,
        launcher: None,
        recovered_from: Some("systemd".into()),
        health: None,
    };
    reconcile(
        &mut record,
        Some(&info.state).filter(|s| !s.active_state.is_empty()),
    );
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: State) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "abcd2345", "unit": "refine-agent-abcd2345.service",
            "owner": "agent", "state": "running"
        }))
        .unwrap();
        r.state = state;
        r.started_at = Some(Timestamp::now());
        r
    }

    fn live(active: &str, freezer: Option<&str>) -> UnitState {
        UnitState {
            active_state: active.into(),
            sub_state: String::new(),
            freezer_state: freezer.map(Into::into),
        }
    }

    #[test]
    fn a_loaded_unit_decides_the_state() {
        let mut r = record(State::Starting);
        reconcile(&mut r, Some(&live("active", Some("running"))));
        assert_eq!(r.state, State::Running);
        reconcile(&mut r, Some(&live("active", Some("frozen"))));
        assert_eq!(r.state, State::Paused);
        // A restarted process does not show the previous run's exit.
        let mut r = record(State::Failed);
        r.exit_code = Some(3);
        reconcile(&mut r, Some(&live("activating", None)));
        assert_eq!((r.state, r.exit_code), (State::Starting, None));
    }

    #[test]
    fn a_vanished_unit_keeps_its_recorded_exit_or_is_lost() {
        let mut r = record(State::Exited);
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Exited);
        let mut r = record(State::Running);
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Lost);
        // Just requested: systemd may not have answered yet.
        let mut r = record(State::Starting);
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Starting);
        r.started_at = Some(Timestamp(std::time::SystemTime::now() - START_GRACE * 2));
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Lost);
    }

    #[test]
    fn a_scope_without_its_unit_ended_or_was_stopped_but_reports_no_exit() {
        let scope = |state: State| {
            let mut r = record(state);
            r.kind = UnitKind::Scope;
            r.unit = "refine-agent-abcd2345.scope".into();
            r
        };
        let mut r = scope(State::Running);
        reconcile(&mut r, Some(&live("active", Some("running"))));
        assert_eq!(r.state, State::Running);
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Ended);
        assert!(r.exit_code.is_none() && r.result.is_none() && r.ended_at.is_none());
        // Inactive but not yet collected is just as ended.
        let mut r = scope(State::Running);
        reconcile(&mut r, Some(&live("inactive", None)));
        assert_eq!(r.state, State::Ended);
        // Ended on request (stop, kill): stopped.
        let mut r = scope(State::Running);
        r.stop_requested_for = Some("inv-1".into());
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Stopped);
        // An adoption systemd has not answered yet, and one it never did.
        let mut r = scope(State::Starting);
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Starting);
        r.started_at = Some(Timestamp(std::time::SystemTime::now() - START_GRACE * 2));
        reconcile(&mut r, None);
        assert_eq!(r.state, State::Lost);
        assert_eq!(
            journal_command(&r.unit),
            "journalctl _SYSTEMD_USER_UNIT=refine-agent-abcd2345.scope"
        );
    }

    #[test]
    fn the_exit_hook_environment_becomes_an_exit() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let e = exit_from_environment(&env(&[
            ("SERVICE_RESULT", "exit-code"),
            ("EXIT_CODE", "exited"),
            ("EXIT_STATUS", "3"),
        ]));
        assert_eq!(
            (e.result.as_str(), e.code, e.signal),
            ("exit-code", Some(3), None)
        );
        let e = exit_from_environment(&env(&[
            ("SERVICE_RESULT", "signal"),
            ("EXIT_CODE", "killed"),
            ("EXIT_STATUS", "KILL"),
        ]));
        assert_eq!((e.code, e.signal.as_deref()), (None, Some("KILL")));
    }

    #[test]
    fn a_record_is_rebuilt_from_the_unit_environment() {
        let env: BTreeMap<String, String> = [
            ("REFINE_ID", "abcd2345"),
            ("REFINE_OWNER", "agent"),
            ("REFINE_LABEL", "multi\nline"),
            ("REFINE_WORKFLOW", "wf-1"),
            ("API_URL", "http://x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let info = ServiceInfo {
            state: live("active", Some("running")),
            exec_argv: vec!["sleep".into(), "5".into()],
            ..Default::default()
        };
        let r = record_from_environment("abcd2345", "refine-agent-abcd2345.service", &env, &info);
        assert_eq!(r.owner, Owner::Agent);
        assert_eq!(r.label, "multi\nline");
        assert_eq!(r.metadata.workflow.as_deref(), Some("wf-1"));
        assert_eq!(r.environment.len(), 1);
        assert_eq!(r.command, vec!["sleep", "5"]);
        assert_eq!(r.state, State::Running);
        assert_eq!(r.recovered_from.as_deref(), Some("systemd"));
    }
}
