//! Unit tests of run and adoption specs and of the properties built from them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::Field;
use crate::model::{LimitChange, LimitValue, Limits, Owner, RestartPolicy};

use super::validate::check_executable_format;
use super::*;

#[test]
fn a_validation_error_names_its_input_for_every_surface() {
    let no_cwd = CallerEnv {
        cwd: None,
        path: None,
    };
    let spec = |command: &[&str]| RunSpec {
        command: command.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let e = spec(&["true"]).validate_in(&no_cwd).unwrap_err();
    assert_eq!(e.field, Some(Field::Cwd));
    assert_eq!(
        (Field::Cwd.flag(), Field::Cwd.json_field()),
        ("--cwd", "cwd")
    );
    // The CLI's words stay as they were.
    assert_eq!(e.hint.as_deref(), Some("pass --cwd DIR"));
    let e = spec(&[]).validate_in(&no_cwd).unwrap_err();
    assert_eq!(e.field, Some(Field::Command));
    let e = RunSpec {
        cwd: Some("/".into()),
        ..spec(&["no-such-program-refine"])
    }
    .validate_in(&no_cwd)
    .unwrap_err();
    assert_eq!(e.field, Some(Field::Command), "{e}");
}

#[test]
fn messages_and_hints_that_name_inputs_read_as_each_surface_names_them() {
    let mut s = spec(&["true"]);
    s.restart_timing.delay_sec = Some(5);
    let e = s.validate().unwrap_err();
    // The CLI's words stay as they were.
    assert_eq!(
        e.message,
        "--restart-delay, --restart-max-delay and --restart-limit need a restart policy"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("add --restart on-failure (or always), or --on-unhealthy restart with a health check")
    );
    let api = e.worded(Field::json_field);
    assert_eq!(
        api.message,
        "restart_delay, restart_max_delay and restart_limit need a restart policy"
    );
    assert_eq!(
        api.hint.as_deref(),
        Some("add restart on-failure (or always), or on_unhealthy restart with a health check")
    );
    let mut s = spec(&["true"]);
    s.metadata.workflow = Some("w\0".into());
    let e = s.validate().unwrap_err();
    assert_eq!(e.message, "--workflow contains a NUL byte");
    assert_eq!(
        e.worded(Field::json_field).message,
        "workflow contains a NUL byte"
    );
    let mut s = spec(&["true"]);
    s.limits.memory_max = Some(0);
    let e = s.validate().unwrap_err().worded(Field::json_field);
    assert_eq!(e.message, "memory_max 0 is out of range");
}

fn spec(cmd: &[&str]) -> RunSpec {
    RunSpec {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        cwd: Some("/".into()),
        ..Default::default()
    }
}

fn hook() -> UnitContext {
    UnitContext {
        program: "/usr/bin/refine-proc".into(),
        state_dir: "/home/u/.local/state/refine-proc".into(),
        policy: "/home/u/.config/refine-proc/policy.toml".into(),
        requested_by: Default::default(),
        confinement: None,
    }
}

#[test]
fn a_rebuilt_record_keeps_who_asked_its_meta_and_details() {
    // Issue 10.11: rebuilt after quarantine, a record of uid 1001 said
    // `requested_by.uid: 0` and had lost its --meta.
    let mut s = spec(&["true"]);
    s.details = Some("why\nit runs".into());
    s.metadata
        .extra
        .insert("ticket".into(), "T-1 \"x\"\n\u{1b}".into());
    let launch = s.validate().unwrap();
    let mut context = hook();
    context.requested_by = crate::provenance::RequestedBy {
        uid: 1001,
        acting_owner: Some(Owner::Agent),
        parent: Some("bcde2345".into()),
        policy: Some("/p.toml".into()),
        lowered: None,
    };
    let env: BTreeMap<String, String> = refine_environment("abcd2345", &launch, &context)
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(!env["REFINE_META"].contains('\n'), "one line");
    let mut r: crate::model::Record = serde_json::from_value(serde_json::json!({
        "schema": crate::model::RECORD_SCHEMA, "id": "abcd2345",
        "unit": "refine-agent-abcd2345.service", "owner": "agent", "state": "running"
    }))
    .unwrap();
    restore_from_environment(&env, &mut r);
    assert_eq!(r.requested_by, context.requested_by);
    assert_eq!(r.metadata.extra, launch.metadata.extra);
    assert_eq!(r.details.as_deref(), Some("why\nit runs"));
    // A unit from before: the manager's own uid, the policy it names.
    let old: BTreeMap<String, String> =
        [("REFINE_PROC_POLICY".to_string(), "/q.toml".to_string())].into();
    restore_from_environment(&old, &mut r);
    assert_eq!(r.requested_by.uid, crate::provenance::uid());
    assert_eq!(r.requested_by.policy.as_deref(), Some("/q.toml"));
}

#[test]
fn growing_restart_delays_go_to_systemd_254_or_to_the_daemon() {
    use crate::model::{RestartBy, RestartTiming};
    assert_eq!(restart_steps(1, 60), 6, "1 2 4 8 16 32 60");
    assert_eq!(restart_steps(5, 5), 1);
    assert_eq!(
        (0..5).map(|n| backoff_delay(1, 4, n)).collect::<Vec<_>>(),
        [1, 2, 4, 4, 4]
    );
    assert_eq!(backoff_delay(3, 1000, 200), 1000, "no overflow");
    let mut s = spec(&["true"]);
    s.restart = RestartPolicy::OnFailure;
    s.restart_timing = RestartTiming {
        max_delay_sec: Some(8),
        limit_burst: Some(5),
        limit_interval_sec: Some(600),
        ..Default::default()
    };
    let mut l = s.validate().unwrap();
    assert_eq!(
        l.restart_timing.delay_sec,
        Some(1),
        "growing delays start at 1 s"
    );
    let names = |l: &Launch| -> Vec<(&'static str, Prop)> { restart_properties(l) };
    let by_systemd = names(&l);
    assert!(by_systemd.contains(&("Restart", Prop::Str("on-failure".into()))));
    assert!(by_systemd.contains(&("RestartSteps", Prop::U32(3))));
    assert!(by_systemd.contains(&("RestartMaxDelayUSec", Prop::U64(8_000_000))));
    assert!(by_systemd.contains(&("StartLimitBurst", Prop::U32(5))));
    l.restart_by = RestartBy::Daemon;
    let by_daemon = names(&l);
    assert!(by_daemon.contains(&("Restart", Prop::Str("no".into()))));
    assert!(
        !by_daemon
            .iter()
            .any(|(k, _)| k.starts_with("Restart") && *k != "Restart"),
        "systemd 252 knows no RestartSteps: {by_daemon:?}"
    );
}

#[test]
fn resolves_the_program_before_anything_runs() {
    let l = spec(&["sh", "-c", "exit 0"]).validate().unwrap();
    assert!(l.executable.is_absolute() && l.executable.ends_with("sh"));
    assert_eq!(l.label, "sh");
    assert_eq!(l.owner, Owner::UserHelper);
    let e = spec(&["no-such-program-xyz"]).validate().unwrap_err();
    assert!(e.message.contains("command not found"), "{e}");
    let e = spec(&[]).validate().unwrap_err();
    assert!(e.hint.unwrap().contains("--"));
    let e = spec(&["/etc/passwd"]).validate().unwrap_err();
    assert!(e.message.contains("not an executable"), "{e}");
}

#[test]
fn a_file_the_kernel_will_not_execute_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let check = |p: &Path, binfmt| check_executable_format(p, dir.path(), binfmt);
    assert!(check(Path::new("/bin/sh"), false).is_ok(), "ELF");
    assert!(check(&file("ok", b"#!/bin/sh\nexit 0\n"), false).is_ok());
    assert!(check(&file("args", b"#!  /bin/sh -e\n"), false).is_ok());
    file("interp", b"#!/bin/sh\n");
    assert!(check(&file("relative", b"#!interp\n"), false).is_ok());
    let e = check(&file("bad", b"#!/no/such/python\n"), false).unwrap_err();
    assert!(e.message.contains("/no/such/python"), "{e}");
    assert!(check(&file("empty-line", b"#!\n"), false).is_err());
    let plain = file("plain", b"echo hi\n");
    let e = check(&plain, false).unwrap_err();
    assert!(e.hint.as_deref().unwrap().contains("#!/bin/sh"), "{e}");
    assert!(check(&plain, true).is_ok(), "binfmt_misc may run it");
}

#[test]
fn rejects_bad_directories_env_names_and_huge_text() {
    let mut s = spec(&["true"]);
    s.cwd = Some("/no/such/dir".into());
    assert!(s
        .validate()
        .unwrap_err()
        .message
        .contains("working directory"));
    for bad in [
        "1X",
        "A-B",
        "",
        "REFINE_ID",
        "SERVICE_RESULT",
        "EXIT_STATUS",
        "MONITOR_X",
    ] {
        let mut s = spec(&["true"]);
        s.environment.insert(bad.into(), "v".into());
        assert!(s.validate().is_err(), "{bad}");
    }
    let mut s = spec(&["true"]);
    s.label = Some("x".repeat(MAX_TEXT + 1));
    assert!(s.validate().unwrap_err().message.contains("--label"));
}

#[test]
fn pty_holder_exec_start_was_plain_text_systemd_rewrote_at_reload() {
    let mut l = spec(&["sh", "-c", "echo $$; a;b", "\\;"])
        .validate()
        .unwrap();
    l.pty = Some(crate::pty::PtyLaunch {
        rows: 24,
        cols: 80,
        dir: "/run/user/1000/refine-proc/pty".into(),
    });
    let props = service_properties("abcd2345", &l, &hook());
    let Some((_, Prop::Exec(exec))) = props.iter().find(|(n, _)| *n == "ExecStart") else {
        panic!()
    };
    assert_eq!(exec[0].1[..2], ["refine-proc", "exec-unit"]);
    assert!(exec[0].1[2..]
        .iter()
        .all(|a| a.bytes().all(|b| b.is_ascii_hexdigit())));
    let c = crate::unitexec::UnitCommand::decode(&exec[0].1[2..]).unwrap();
    assert_eq!(c.executable, "/usr/bin/refine-proc");
    let argv: Vec<_> = c.argv.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(argv[..2], ["refine-proc", "pty-hold"]);
    assert_eq!(argv[argv.len() - 4..], ["sh", "-c", "echo $$; a;b", "\\;"]);
    // What a rebuilt record says it runs: the user's command.
    let back = crate::unitexec::command_of_exec_start(&exec[0].1).unwrap();
    assert_eq!(back, ["sh", "-c", "echo $$; a;b", "\\;"]);
}

#[test]
fn a_confined_pty_session_failed_because_its_holder_could_not_create_its_socket() {
    // The socket is bound by a privileged ExecStartPre= and reaches the
    // holder through the fd store; the session directory stays hidden.
    let mut l = spec(&["sh"]).validate().unwrap();
    l.pty = Some(crate::pty::PtyLaunch {
        rows: 24,
        cols: 80,
        dir: "/run/user/1000/refine-proc/pty".into(),
    });
    let mut h = hook();
    h.confinement = Some(crate::confine::Confinement {
        actor: "agent".into(),
        home: "/home/u".into(),
        runtime_dir: "/run/user/1000".into(),
        writable: vec![],
        runtime_entries: vec![],
        systemd_entries: vec![],
        private_pids: false,
        devices: false,
    });
    let props = service_properties("abcd2345", &l, &h);
    let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("ExecStartPreEx"),
        Some(Prop::ExecEx(vec![(
            "/usr/bin/refine-proc".into(),
            ["refine-proc", "pty-listen", "--socket"]
                .map(String::from)
                .into_iter()
                .chain(["/run/user/1000/refine-proc/pty/abcd2345.sock".into()])
                .collect(),
            vec!["privileged".into()],
        )]))
    );
    assert_eq!(get("FileDescriptorStoreMax"), Some(Prop::U32(2)));
    assert_eq!(get("NotifyAccess"), Some(Prop::Str("all".into())));
    let Some(Prop::Strs(hidden)) = get("InaccessiblePaths") else {
        panic!()
    };
    assert!(hidden.contains(&"-/run/user/1000/refine-proc/pty".to_string()));
    // Only binds onto themselves: anything else makes systemd insist on a
    // mount namespace for the privileged exit hook (226/NAMESPACE).
    assert_eq!(get("TemporaryFileSystem"), None);
    assert_eq!(get("BindPaths"), None);
    let Some(Prop::Exec(exec)) = get("ExecStart") else {
        panic!()
    };
    let c = crate::unitexec::UnitCommand::decode(&exec[0].1[2..]).unwrap();
    let argv: Vec<_> = c.argv.iter().map(|a| a.to_str().unwrap()).collect();
    assert!(argv.contains(&"--inherited-socket"), "{argv:?}");
    // Unconfined, the holder binds its socket itself.
    let props = service_properties("abcd2345", &l, &hook());
    assert!(!props.iter().any(|(n, _)| *n == "ExecStartPreEx"));
}

#[test]
fn hostile_text_is_kept_verbatim_in_argv_and_escaped_in_the_description() {
    let mut s = spec(&["echo", "$HOME", "a\nb", "'\""]);
    s.label = Some("evil\n\x1b[2Jlabel".into());
    let l = s.validate().unwrap();
    let props = service_properties("abcd2345", &l, &hook());
    let get = |k: &str| props.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    let Prop::Exec(exec) = get("ExecStart") else {
        panic!()
    };
    // Only hex after `exec-unit`: nothing systemd could rewrite.
    assert_eq!(exec[0].0, "/usr/bin/refine-proc");
    assert_eq!(exec[0].1[..2], ["refine-proc", "exec-unit"]);
    assert!(exec[0].1[2..]
        .iter()
        .all(|a| a.bytes().all(|b| b.is_ascii_hexdigit())));
    let back = crate::unitexec::command_of_exec_start(&exec[0].1).unwrap();
    assert_eq!(back, vec!["echo", "$HOME", "a\nb", "'\""]);
    let Prop::Exec(hook) = get("ExecStopPost") else {
        panic!()
    };
    assert_eq!(hook[0].1[1..3], ["record-exit", crate::unitexec::INDEX_HEX]);
    assert_eq!(hook[0].1[4], "abcd2345");
    let dir = crate::unitexec::unhex(&hook[0].1[3]).unwrap();
    assert_eq!(dir, b"/home/u/.local/state/refine-proc");
    let e = spec(&["echo", "a\0b"]).validate().unwrap_err();
    assert!(e.message.contains("NUL"), "{e}");
    assert_eq!(
        get("Description"),
        Prop::Str("evil\\n\\u{1b}[2Jlabel (refine-proc user-helper)".into())
    );
    let Prop::Strs(env) = get("Environment") else {
        panic!()
    };
    assert!(env.contains(&"REFINE_LABEL=evil\n\x1b[2Jlabel".to_string()));
}

#[test]
fn a_scope_gets_identity_and_every_pid_but_nothing_to_execute() {
    let a = Adoption {
        pid: 40,
        descendants: vec![41, 42],
        command: vec!["sh".into()],
        cwd: None,
        cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope".into(),
        owner: Owner::TargetApp,
        label: "dev\nserver".into(),
        details: None,
        metadata: Default::default(),
        left: Vec::new(),
    };
    let props = scope_properties(&a);
    let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
    assert_eq!(get("PIDs"), Some(Prop::U32s(vec![40, 41, 42])));
    assert_eq!(
        get("Slice"),
        Some(Prop::Str("refine-target\\x2dapp.slice".into()))
    );
    assert_eq!(
        get("Description"),
        Some(Prop::Str("dev\\nserver (refine-proc target-app)".into()))
    );
    assert_eq!(
        get("CollectMode"),
        Some(Prop::Str("inactive-or-failed".into()))
    );
    for absent in ["Environment", "ExecStart", "ExecStopPost", "Type"] {
        assert_eq!(get(absent), None, "{absent}");
    }
}

#[test]
fn adoption_checks_the_text_and_the_pid_before_anything_else() {
    let spec = |pid: u32| AdoptSpec {
        pid,
        ..Default::default()
    };
    assert_eq!(
        spec(0).validate().unwrap_err().kind,
        crate::ErrorKind::NotFound
    );
    let e = spec(1).validate().unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Refused);
    assert!(e.message.contains("init"), "{e}");
    let e = spec(std::process::id()).validate().unwrap_err();
    assert!(e.message.contains("refine-proc itself"), "{e}");
    let mut s = spec(1);
    s.label = Some(" ".into());
    assert_eq!(s.validate().unwrap_err().kind, crate::ErrorKind::Invalid);
}

#[test]
fn a_process_outside_the_managers_subtree_is_refused_with_the_fix() {
    let mut a = Adoption {
        pid: 40,
        descendants: Vec::new(),
        command: vec!["sh".into()],
        cwd: None,
        cgroup: "/user.slice/user-1000.slice/session-3.scope".into(),
        owner: Owner::Agent,
        label: "x".into(),
        details: None,
        metadata: Default::default(),
        left: Vec::new(),
    };
    let root = "/user.slice/user-1000.slice/user@1000.service";
    let e = a.restrict_to_subtree(root).unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Refused);
    assert!(e.hint.unwrap().contains("refine-proc run"));
    a.cgroup = format!("{root}/init.scope");
    let e = a.restrict_to_subtree(root).unwrap_err();
    assert!(e.message.contains("user manager itself"), "{e}");
    a.cgroup = format!("{root}/app.slice/app-term.scope");
    a.restrict_to_subtree(root).unwrap();
}

#[test]
fn properties_carry_identity_hook_and_limits() {
    let mut s = spec(&["sleep", "1"]);
    s.owner = Some(Owner::Agent);
    s.limits = Limits {
        memory_max: Some(1 << 30),
        cpu_quota_percent: Some(150),
        tasks_max: Some(64),
        runtime_max_sec: Some(90),
        memory_high: Some(768 << 20),
        cpu_weight: Some(50),
        timeout_stop_sec: Some(5),
    };
    s.restart = RestartPolicy::OnFailure;
    let props = service_properties("abcd2345", &s.validate().unwrap(), &hook());
    let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
    assert_eq!(get("Slice"), Some(Prop::Str("refine-agent.slice".into())));
    assert_eq!(get("Type"), Some(Prop::Str("exec".into())));
    assert_eq!(
        get("SyslogIdentifier"),
        Some(Prop::Str("refine-agent-abcd2345".into()))
    );
    assert_eq!(get("MemoryMax"), Some(Prop::U64(1 << 30)));
    assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(1_500_000)));
    assert_eq!(get("RuntimeMaxUSec"), Some(Prop::U64(90_000_000)));
    assert_eq!(get("TasksMax"), Some(Prop::U64(64)));
    assert_eq!(get("MemoryHigh"), Some(Prop::U64(768 << 20)));
    assert_eq!(get("CPUWeight"), Some(Prop::U64(50)));
    assert_eq!(get("TimeoutStopUSec"), Some(Prop::U64(5_000_000)));
    assert_eq!(get("Restart"), Some(Prop::Str("on-failure".into())));
    let Some(Prop::Exec(hook)) = get("ExecStopPost") else {
        panic!()
    };
    assert_eq!(hook[0].1.last().unwrap(), "abcd2345");
    assert!(hook[0].2, "ignore-failure");
}

#[test]
fn a_confined_launch_gets_the_sandbox_and_a_privileged_exit_hook() {
    let launch = spec(&["sleep", "1"]).validate().unwrap();
    let plain = service_properties("abcd2345", &launch, &hook());
    assert!(!plain
        .iter()
        .any(|(k, _)| *k == "PrivateUsers" || *k == "DropIn"));
    let mut confined = hook();
    confined.confinement = Some(crate::confine::Confinement {
        actor: "agent".into(),
        home: "/home/u".into(),
        runtime_dir: "/run/user/1000".into(),
        writable: vec![],
        runtime_entries: vec![],
        systemd_entries: vec![],
        private_pids: false,
        devices: false,
    });
    let props = service_properties("abcd2345", &launch, &confined);
    let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
    assert_eq!(get("PrivateUsers"), Some(Prop::Bool(true)));
    assert_eq!(
        get("ExecStopPost"),
        None,
        "the unprivileged hook is replaced"
    );
    let Some(Prop::ExecEx(ex)) = get("ExecStopPostEx") else {
        panic!("no privileged hook")
    };
    let Some(Prop::Exec(was)) = plain
        .iter()
        .find(|(k, _)| *k == "ExecStopPost")
        .map(|p| p.1.clone())
    else {
        panic!()
    };
    // Same program and arguments; only how it runs changed.
    assert_eq!((&ex[0].0, &ex[0].1), (&was[0].0, &was[0].1));
    assert_eq!(ex[0].2, ["privileged", "ignore-failure"]);
    let Some(Prop::DropIn { text, .. }) = get("DropIn") else {
        panic!("no drop-in")
    };
    assert!(
        text.contains("ExecStopPost=+-\"/usr/bin/refine-proc\""),
        "{text}"
    );
    assert!(text.contains("\"record-exit\" \"--index-hex\""), "{text}");
    assert!(text.trim_end().ends_with("\"abcd2345\""), "{text}");
    let env = |props: &[(&str, Prop)]| match props.iter().find(|(n, _)| *n == "Environment") {
        Some((_, Prop::Strs(env))) => env.clone(),
        _ => panic!("no environment"),
    };
    assert!(!env(&props)
        .iter()
        .any(|e| e.starts_with(crate::confine::API_SOCKET_ENV)));
    // The index is hidden inside: the socket its daemon names goes in.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.socket"),
        "/run/user/1000/refine-proc/api.sock\n",
    )
    .unwrap();
    confined.state_dir = dir.path().into();
    let props = service_properties("abcd2345", &launch, &confined);
    assert!(
        env(&props).contains(&"REFINE_PROC_API_SOCKET=/run/user/1000/refine-proc/api.sock".into())
    );
}

#[test]
fn unset_limits_are_not_sent() {
    let props = service_properties("abcd2345", &spec(&["true"]).validate().unwrap(), &hook());
    for name in [
        "MemoryMax",
        "MemoryHigh",
        "CPUQuotaPerSecUSec",
        "CPUWeight",
        "TasksMax",
        "RuntimeMaxUSec",
        "TimeoutStopUSec",
    ] {
        assert!(props.iter().all(|(n, _)| *n != name), "{name} sent");
    }
}

#[test]
fn a_limit_change_sets_values_and_clears_with_infinity() {
    let change = LimitChange {
        memory_max: Some(LimitValue::Value(8 << 30)),
        memory_high: Some(LimitValue::Infinity),
        cpu_quota_percent: Some(LimitValue::Value(250)),
        cpu_weight: Some(LimitValue::Infinity),
        tasks_max: None,
    };
    assert_eq!(
        limit_properties(&change),
        vec![
            ("MemoryMax", Prop::U64(8 << 30)),
            ("MemoryHigh", Prop::U64(u64::MAX)),
            ("CPUQuotaPerSecUSec", Prop::U64(2_500_000)),
            ("CPUWeight", Prop::U64(u64::MAX)),
        ]
    );
    let mut limits = Limits {
        memory_high: Some(1 << 30),
        tasks_max: Some(10),
        ..Default::default()
    };
    change.apply(&mut limits);
    assert_eq!(limits.memory_max, Some(8 << 30));
    assert_eq!(limits.memory_high, None);
    assert_eq!(limits.cpu_quota_percent, Some(250));
    assert_eq!(limits.tasks_max, Some(10), "untouched");
    assert!(limit_properties(&LimitChange::default()).is_empty());
}

#[test]
fn a_limit_change_is_checked_before_anything_happens() {
    let e = LimitChange::default().validate().unwrap_err();
    assert!(e.hint.unwrap().contains("--memory-max"));
    let weight = |w| LimitChange {
        cpu_weight: Some(LimitValue::Value(w)),
        ..Default::default()
    };
    assert!(weight(0).validate().is_err());
    assert!(weight(10_001).validate().is_err());
    assert!(weight(10_000).validate().is_ok());
    let tasks = LimitChange {
        tasks_max: Some(LimitValue::Value(0)),
        ..Default::default()
    };
    assert!(tasks.validate().is_err());
    let clear = LimitChange {
        memory_max: Some(LimitValue::Infinity),
        ..Default::default()
    };
    assert!(clear.validate().is_ok());
}
