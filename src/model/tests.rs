use super::*;

fn record(policy: RestartPolicy) -> Record {
    Record {
        schema: RECORD_SCHEMA,
        id: "abcd2345".into(),
        unit: "refine-agent-abcd2345.service".into(),
        kind: UnitKind::Service,
        owner: Owner::Agent,
        label: "x".into(),
        details: None,
        command: vec!["/bin/true".into()],
        cwd: None,
        environment: Default::default(),
        metadata: Default::default(),
        requested_by: Default::default(),
        pid: Some(1),
        state: State::Running,
        started_at: Some(Timestamp::now()),
        ended_at: None,
        exit_code: None,
        exit_signal: None,
        result: None,
        exit_source: None,
        limits: Default::default(),
        pty: None,
        restart: Restart {
            policy,
            ..Default::default()
        },
        logs: Default::default(),
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

fn exit(result: &str, code: Option<i32>, signal: Option<&str>) -> Exit {
    Exit {
        result: result.into(),
        code,
        signal: signal.map(Into::into),
        at: Timestamp::now(),
        invocation: Some("inv-1".into()),
    }
}

#[test]
fn exit_states_follow_systemd_results() {
    let mut r = record(RestartPolicy::No);
    r.apply_exit(exit("success", Some(0), None));
    assert_eq!((r.state, r.runs_ended), (State::Exited, 1));
    let mut r = record(RestartPolicy::No);
    r.apply_exit(exit("exit-code", Some(3), None));
    assert_eq!((r.state, r.exit_code), (State::Failed, Some(3)));
    let mut r = record(RestartPolicy::No);
    r.apply_exit(exit("signal", None, Some("KILL")));
    assert_eq!(r.state, State::Failed);
    let mut r = record(RestartPolicy::No);
    r.apply_exit(exit("success", None, Some("TERM")));
    assert_eq!(r.state, State::Stopped);
}

#[test]
fn a_stop_request_covers_only_the_run_it_was_made_for() {
    let mut r = record(RestartPolicy::Always);
    r.stop_requested_for = Some("inv-1".into());
    r.apply_exit(exit("signal", None, Some("KILL")));
    assert_eq!(r.state, State::Stopped);
    // systemd restarted it; the next run crashes on its own.
    let mut next = exit("signal", None, Some("SEGV"));
    next.invocation = Some("inv-2".into());
    r.apply_exit(next);
    assert_eq!((r.state, r.runs_ended), (State::Failed, 2));
    assert_eq!(r.last_exit_invocation.as_deref(), Some("inv-2"));
}

#[test]
fn records_of_an_older_or_newer_format_still_load() {
    // A minimal record (as a future format might still contain) with an
    // unknown field: both must load.
    let json = r#"{"id":"abcd2345","unit":"refine-agent-abcd2345.service",
        "owner":"agent","state":"exited","future_field":{"x":1}}"#;
    let r: Record = serde_json::from_str(json).unwrap();
    assert_eq!(r.owner, Owner::Agent);
    assert_eq!(r.restart.policy, RestartPolicy::No);
    assert_eq!(
        r.kind,
        UnitKind::Service,
        "records before adopt are services"
    );
}

#[test]
fn timestamps_round_trip_as_rfc3339() {
    let t = Timestamp::from_usec(1_700_000_000_123_000).unwrap();
    let s = serde_json::to_string(&t).unwrap();
    assert_eq!(s, "\"2023-11-14T22:13:20.123Z\"");
    assert_eq!(serde_json::from_str::<Timestamp>(&s).unwrap(), t);
}
