//! Building records and the journal entries and events that go with them.

use super::*;

/// The name systemd gives a spawn failure exit status (see systemd.exec(5)).
pub(super) fn spawn_failure_name(code: i32) -> &'static str {
    match code {
        200 => "/CHDIR: the working directory is not accessible",
        203 => "/EXEC: the program could not be executed",
        216 => "/GROUP",
        217 => "/USER",
        _ => "",
    }
}

/// Stores the record of a new launch under a fresh id.
pub(super) fn store_new_record(
    index: &Index,
    launch: &Launch,
    requested_by: RequestedBy,
) -> Result<Record> {
    // The journal's start entry first: a run killed in between leaves no
    // record, never one that no entry shows was not started.
    store_fresh(index, |id| {
        let record = new_record(id, launch, requested_by.clone());
        if matches!(index.load(&record.id), Ok(Loaded::Missing)) {
            journal_start(index, &record);
            crate::fault::point("after-journal-entry");
        }
        record
    })
}

/// Names a record written unnamed (see `Index::write_unnamed`) as
/// [`store_new_record`] would have stored it, its journal entry first.
/// None when its id was taken meanwhile: the caller stores the launch anew.
pub(super) fn name_prepared(
    index: &Index,
    record: Record,
    file: crate::index::UnnamedRecord,
) -> Result<Option<Record>> {
    if !matches!(index.load(&record.id), Ok(Loaded::Missing)) {
        return Ok(None);
    }
    journal_start(index, &record);
    crate::fault::point("after-journal-entry");
    match file.name() {
        Ok(true) => Ok(Some(record)),
        // No link here (no /proc): the same record, written as usual.
        Ok(false) => index.create_pending(&record).map(|()| Some(record)),
        Err(e) if e.message.contains("already exists") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The request a record describes: what `restart` and `resurrect` start
/// again.
pub(super) fn spec_of(record: &Record) -> RunSpec {
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

/// A record of `kind` with every other field at its empty value: the one
/// base the constructors of each kind (launch, adoption, rebuild) start
/// from, so that a new field has one default.
pub(super) fn base_record(id: String, kind: UnitKind, owner: Owner, label: String) -> Record {
    let unit = match kind {
        UnitKind::Service => unit_name(owner, &id),
        UnitKind::Scope => scope_name(owner, &id),
    };
    Record {
        schema: RECORD_SCHEMA,
        logs: Logs {
            journal: journal_command(&unit),
        },
        id,
        unit,
        kind,
        owner,
        label,
        details: None,
        command: Vec::new(),
        cwd: None,
        environment: Default::default(),
        metadata: Default::default(),
        requested_by: Default::default(),
        pid: None,
        state: State::Starting,
        started_at: None,
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
        launcher: None,
        recovered_from: None,
        health: None,
    }
}

/// The record of a new launch under `id`, starting.
pub(super) fn new_record(id: String, launch: &Launch, requested_by: RequestedBy) -> Record {
    let pty = launch.pty.as_ref().map(|p| p.record(&id));
    Record {
        details: launch.details.clone(),
        command: launch.command.clone(),
        cwd: Some(launch.cwd.display().to_string()),
        environment: launch.environment.clone(),
        metadata: launch.metadata.clone(),
        requested_by,
        started_at: Some(Timestamp::now()),
        limits: launch.limits.clone(),
        pty,
        restart: Restart {
            policy: launch.restart,
            timing: launch.restart_timing.clone(),
            by: launch.restart_by,
            last_failure: None,
            count: 0,
        },
        ready: launch.ready.clone(),
        persist: launch.persist,
        launcher: crate::procfs::identity(std::process::id()),
        health: launch.health.clone(),
        ..base_record(id, UnitKind::Service, launch.owner, launch.label.clone())
    }
}

/// The record of an adopted process, before systemd has moved it.
pub(super) fn adopted_record(id: String, a: &Adoption, requested_by: RequestedBy) -> Record {
    Record {
        details: a.details.clone(),
        command: a.command.clone(),
        cwd: a.cwd.clone(),
        metadata: a.metadata.clone(),
        requested_by,
        pid: Some(a.pid),
        started_at: Some(Timestamp::now()),
        launcher: crate::procfs::identity(std::process::id()),
        ..base_record(id, UnitKind::Scope, a.owner, a.label.clone())
    }
}

/// Stores a new record under a fresh id (`make` builds it for an id). The
/// record exists before the unit, so the exit hook always finds it,
/// however fast the process ends.
pub(super) fn store_fresh(index: &Index, make: impl Fn(String) -> Record) -> Result<Record> {
    loop {
        let record = make(new_id());
        match index.create_pending(&record) {
            Ok(()) => return Ok(record),
            Err(e) if e.message.contains("already exists") => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes the start of a run to the journal, with its record (without the
/// values of its environment, which stay in the private index): what
/// `recover` rebuilds ended runs from when the index is gone. Best effort.
pub(super) fn journal_start(index: &Index, r: &Record) {
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
pub(super) fn started_event(r: &Record) -> Event {
    let mut event = Event::about("started", r).with("pid", r.pid);
    if let Some(at) = r.started_at {
        event.time = at;
    }
    event
}

pub(super) fn outcome(r: &Record, what: Outcome) -> ActionOutcome {
    ActionOutcome {
        id: r.id.clone(),
        unit: r.unit.clone(),
        outcome: what,
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

pub(super) fn default_hook_program() -> PathBuf {
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
