//! Reconciliation: what a record says against what systemd and the
//! journal know, as pure functions of both.

use super::*;

/// Closes the record of an ended run rebuilt from its start entry in the
/// journal: with its last exit there (from the hook's entry, or the
/// manager's message), as the hook would have; else `lost`.
pub(super) fn close_from_journal(r: &mut Record, h: &crate::journal::UnitHistory) {
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
pub(super) fn close_as_lost(
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
pub(super) fn refresh(record: &mut Record, info: Option<&ServiceInfo>) {
    if let Some(pid) = info.and_then(|i| i.main_pid) {
        record.pid = Some(pid);
    }
    // With the unit's invocation the recorded exit is known to be this
    // run's, not an earlier one's.
    let recorded = info.is_some_and(|i| {
        exit_recorded(record, &i.state)
            && i.invocation_id
                .as_ref()
                .is_some_and(|v| record.last_exit_invocation.as_ref() == Some(v))
    });
    reconcile_as(record, info.map(|i| &i.state), recorded);
}

/// Whether the unit's main process has ended while systemd still winds the
/// unit down (its exit hook, the leftovers' kill): the exit the record
/// holds is then the run's, and the run is over, though systemd still
/// says `deactivating`.
fn exit_recorded(record: &Record, live: &UnitState) -> bool {
    let main_ended = matches!(
        live.sub_state.as_str(),
        "stop-post" | "final-sigterm" | "final-sigkill" | "final-watchdog"
    );
    main_ended && record.state.is_ended()
}

/// Merges systemd's live view into a record: while the unit is loaded its
/// state wins; once it is gone, the recorded exit does; no exit means lost.
/// The restart count follows from the runs that ended: every ended run but
/// the last one was followed by another start.
pub fn reconcile(record: &mut Record, live: Option<&UnitState>) {
    let recorded = live.is_some_and(|l| exit_recorded(record, l));
    reconcile_as(record, live, recorded);
}

/// [`reconcile`], told whether the record holds this run's exit.
fn reconcile_as(record: &mut Record, live: Option<&UnitState>, exit_recorded: bool) {
    if record.kind == UnitKind::Scope {
        reconcile_scope(record, live);
        paused_as_recorded(record, live);
        present(record);
        return;
    }
    match live.map(|l| (l.active_state.as_str(), l.freezer_state.as_deref())) {
        Some((_, Some("frozen" | "freezing"))) => record.state = State::Paused,
        // Its exit is recorded: what the hook wrote (or the daemon, which
        // streamed it already) is the state.
        Some(("deactivating", _)) if exit_recorded => {}
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
pub(super) fn may_still_start(record: &Record) -> bool {
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
pub(super) fn paused_as_recorded(record: &mut Record, live: Option<&UnitState>) {
    let unknown_freezer = live.is_some_and(|l| l.freezer_state.is_none());
    if record.state == State::Running && record.paused_by.is_some() && unknown_freezer {
        record.state = State::Paused;
    }
}

/// A scope has no exit hook and no exit status: it runs while systemd
/// shows it active, and once it is inactive or gone its processes have all
/// ended: `stopped` if refine-proc was asked to end it, else `ended`.
pub(super) fn reconcile_scope(record: &mut Record, live: Option<&UnitState>) {
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
pub(super) fn present(record: &mut Record) {
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

pub(super) fn exit_from_environment(env: &BTreeMap<String, String>) -> Exit {
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
pub(super) fn record_from_environment(
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
    let label = get("REFINE_LABEL").unwrap_or_else(|| info.description.clone());
    let mut record = Record {
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
        pid: info.main_pid,
        state: State::Running,
        started_at: info.active_enter_usec.and_then(Timestamp::from_usec),
        persist: get("REFINE_PERSIST").is_some_and(|v| v == "1"),
        recovered_from: Some("systemd".into()),
        ..base_record(id.to_string(), UnitKind::Service, owner, label)
    };
    crate::spec::restore_from_environment(env, &mut record);
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
    fn a_recorded_exit_holds_while_systemd_runs_the_exit_hook() {
        let winding = |sub: &str| UnitState {
            active_state: "deactivating".into(),
            sub_state: sub.into(),
            freezer_state: Some("running".into()),
        };
        let mut r = record(State::Failed);
        r.exit_code = Some(3);
        reconcile(&mut r, Some(&winding("stop-post")));
        assert_eq!((r.state, r.exit_code), (State::Failed, Some(3)));
        // Being stopped, its main process may still run: running.
        let mut r = record(State::Failed);
        reconcile(&mut r, Some(&winding("stop-sigterm")));
        assert_eq!(r.state, State::Running);
        // Not yet recorded: running until the exit is.
        let mut r = record(State::Running);
        reconcile(&mut r, Some(&winding("stop-post")));
        assert_eq!(r.state, State::Running);
        // With the unit's invocation: only this run's exit counts.
        let info = |inv: &str| ServiceInfo {
            state: winding("stop-post"),
            invocation_id: Some(inv.into()),
            ..Default::default()
        };
        let mut r = record(State::Failed);
        r.last_exit_invocation = Some("aa".into());
        refresh(&mut r, Some(&info("aa")));
        assert_eq!(r.state, State::Failed);
        let mut r = record(State::Failed);
        r.last_exit_invocation = Some("aa".into());
        refresh(&mut r, Some(&info("bb")));
        assert_eq!(r.state, State::Running, "an earlier run's exit");
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
