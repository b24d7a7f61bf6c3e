//! A process's life: start, what systemd shows, exit recorded with nobody
//! watching, stop, kill, restart, forget, limits and restart policies.

use super::common::*;

#[test]
fn run_starts_a_transient_service_that_systemctl_shows_with_owner_and_label() {
    let env = Env::new();
    let r = env.run(&[
        "--owner",
        "agent",
        "--label",
        "docs build",
        "--workflow",
        "wf-42",
        "--gap",
        "g7",
        "--session",
        "s1",
        "--mode",
        "fix",
        "--runner",
        "claude",
        "--meta",
        "ticket=T-9",
        "--details",
        "why: regenerate docs",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(r.state, "running");
    assert_eq!(r.unit, format!("refine-agent-{}.service", r.id));
    assert_eq!(
        (r.owner.as_str(), r.label.as_str()),
        ("agent", "docs build")
    );
    assert_eq!(r.metadata.workflow.as_deref(), Some("wf-42"));
    assert_eq!(r.metadata.gap.as_deref(), Some("g7"));
    assert_eq!(r.metadata.session.as_deref(), Some("s1"));
    assert_eq!(r.metadata.mode.as_deref(), Some("fix"));
    assert_eq!(r.metadata.runner.as_deref(), Some("claude"));
    assert_eq!(r.metadata.extra["ticket"], "T-9");
    assert_eq!(r.details.as_deref(), Some("why: regenerate docs"));
    assert_eq!(r.command, vec!["sleep", "600"]);
    assert_eq!(r.cwd.as_deref(), Some(env.work_dir().to_str().unwrap()));
    assert!(r.started_at.is_some() && r.ended_at.is_none());

    // systemd's own view agrees.
    let pid = r.pid.expect("a pid");
    assert_eq!(show(&r.unit, "MainPID"), pid.to_string());
    assert_eq!(show(&r.unit, "ActiveState"), "active");
    assert_eq!(show(&r.unit, "Type"), "exec");
    assert_eq!(show(&r.unit, "Slice"), "refine-agent.slice");
    assert_eq!(
        show(&r.unit, "Description"),
        "docs build (refine-proc agent)"
    );
    assert!(show(&r.unit, "ControlGroup")
        .ends_with(&format!("/refine.slice/refine-agent.slice/{}", r.unit)));
    let listed = systemctl(&["list-units", "--no-legend", "refine-*"]);
    assert!(listed.contains(&r.unit), "{listed}");
    // The process knows who it is.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for var in [
        format!("REFINE_ID={}", r.id),
        "REFINE_OWNER=agent".into(),
        "REFINE_WORKFLOW=wf-42".into(),
        format!("REFINE_UNIT={}", r.unit),
    ] {
        assert!(environ.split('\0').any(|v| v == var), "{var} missing");
    }
    // And the same record comes back from status and list.
    let s = env.status(&r.id);
    assert_eq!(
        (s.id, s.pid, s.state.as_str()),
        (r.id.clone(), Some(pid), "running")
    );
    let listed: Vec<String> = env.list(&[]).into_iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![r.id.clone()]);
}

#[test]
fn the_record_has_every_documented_key() {
    let env = Env::new();
    let out = env.ok(&["run", "--json", "--", "sleep", "600"]);
    let v: serde_json::Value = out.json();
    for key in [
        "id",
        "unit",
        "owner",
        "label",
        "details",
        "command",
        "cwd",
        "metadata",
        "pid",
        "state",
        "started_at",
        "ended_at",
        "exit_code",
        "exit_signal",
        "result",
        "limits",
        "restart",
        "logs",
    ] {
        assert!(v.get(key).is_some(), "record lacks {key}: {v}");
    }
    for key in ["workflow", "gap", "session", "mode", "runner", "extra"] {
        assert!(v["metadata"].get(key).is_some(), "metadata lacks {key}");
    }
    for key in [
        "memory_max",
        "cpu_quota_percent",
        "tasks_max",
        "runtime_max_sec",
        "memory_high",
        "cpu_weight",
        "timeout_stop_sec",
    ] {
        assert!(v["limits"].get(key).is_some(), "limits lack {key}");
    }
    assert!(v["restart"].get("policy").is_some() && v["restart"].get("count").is_some());
    assert!(v["logs"]["journal"]
        .as_str()
        .unwrap()
        .starts_with("journalctl "));
}

#[test]
fn a_failing_exit_is_recorded_with_nobody_watching_and_the_unit_does_not_pile_up() {
    let env = Env::new();
    let r = env.run(&["--", "sh", "-c", "sleep 0.3; exit 3"]);
    // refine-proc has exited; only systemd and the exit hook are left.
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(s.state, "failed");
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.result.as_deref(), Some("exit-code"));
    assert!(s.ended_at.is_some());
    assert_eq!(show(&r.unit, "LoadState"), "not-found");
    let failed = systemctl(&["list-units", "--all", "--state=failed", "--no-legend"]);
    assert!(
        !failed.contains(&r.unit),
        "failed unit left behind: {failed}"
    );
}

#[test]
fn a_successful_exit_is_recorded_although_systemd_forgets_the_unit_at_once() {
    let env = Env::new();
    let r = env.run(&["--", "true"]);
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.exit_code), ("exited", Some(0)));
    assert_eq!(s.result.as_deref(), Some("success"));
    assert_eq!(show(&r.unit, "LoadState"), "not-found");
    // Ended processes leave the default list but stay in --all.
    assert!(env.list(&[]).is_empty());
    let all = env.list(&["--all"]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, r.id);
}

#[test]
fn run_wait_exits_with_the_process_exit_code_or_128_plus_signal() {
    let env = Env::new();
    let out = env.cmd(&["run", "--wait", "--", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(
        out.stderr.contains("failed") && out.stderr.contains("exit 7"),
        "{}",
        out.stderr
    );
    let out = env.cmd(&["run", "--wait", "--json", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 128 + 9);
    let r: Rec = out.json();
    assert_eq!(
        (r.state.as_str(), r.exit_signal.as_deref()),
        ("failed", Some("KILL"))
    );
    assert_eq!(r.result.as_deref(), Some("signal"));
    let out = env.cmd(&["run", "--wait", "--", "true"]);
    assert_eq!(out.code, 0);
}

#[test]
fn stop_ends_processes_and_records_them_as_stopped() {
    let env = Env::new();
    let a = env.run(&["--", "sleep", "600"]);
    let b = env.run(&["--owner", "quality", "--", "sleep", "600"]);
    let out = env.ok(&["stop", "--json", &a.id, &b.unit]);
    let outcomes: Vec<serde_json::Value> = out.json();
    assert_eq!(outcomes.len(), 2);
    for r in [&a, &b] {
        let s = env.status(&r.id);
        assert_eq!(s.state, "stopped", "{s:?}");
        assert_eq!(s.exit_signal.as_deref(), Some("TERM"));
        assert!(s.ended_at.is_some());
        assert_eq!(show(&r.unit, "LoadState"), "not-found");
    }
    // Stopping again is not an error: it says so.
    let again = env.ok(&["stop", &a.id]);
    assert!(again.stdout.contains("was not running"), "{}", again.stdout);
}

#[test]
fn kill_sends_the_signal_and_the_end_is_recorded_as_stopped() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    env.ok(&["kill", "--signal", "KILL", &r.id]);
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(
        (s.state.as_str(), s.exit_signal.as_deref()),
        ("stopped", Some("KILL"))
    );
    let out = env.cmd(&["kill", &r.id]);
    assert_eq!(
        out.code, 4,
        "killing an ended process is refused: {}",
        out.stderr
    );
    let out = env.cmd(&["kill", "--signal", "NOPE", &r.id]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown signal"), "{}", out.stderr);
}

#[test]
fn restart_of_a_running_process_gives_it_a_new_pid() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let out: Vec<serde_json::Value> = env.ok(&["restart", "--json", &r.id]).json();
    assert_eq!(out[0]["outcome"], "restarted");
    let s = env.status(&r.id);
    assert_eq!(s.state, "running");
    assert_eq!(s.restart.count, 1);
    assert_ne!(s.pid, r.pid);
    assert_eq!(show(&r.unit, "MainPID"), s.pid.unwrap().to_string());
}

#[test]
fn restart_of_a_process_with_restart_always_counts_once() {
    let env = Env::new();
    let r = env.run(&["--restart", "always", "--", "sleep", "600"]);
    env.ok(&["restart", &r.id]);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.restart.count), ("running", 1));
    assert_eq!(
        show(&r.unit, "NRestarts"),
        "0",
        "systemd counts only its own restarts"
    );
}

#[test]
fn restart_of_an_ended_process_runs_the_same_command_again_under_the_same_id() {
    let env = Env::new();
    let r = env.run(&[
        "--label",
        "again",
        "--env",
        "GREETING=hello there",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\" >> out.txt; exit 4",
    ]);
    wait_gone(&r.unit);
    assert_eq!(env.status(&r.id).state, "failed");
    let out: Vec<serde_json::Value> = env.ok(&["restart", "--json", &r.id]).json();
    assert_eq!(out[0]["outcome"], "started-again");
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(
        (s.state.as_str(), s.exit_code, s.restart.count),
        ("failed", Some(4), 1)
    );
    let written = std::fs::read_to_string(env.work_dir().join("out.txt")).unwrap();
    assert_eq!(written, "hello there\nhello there\n");
}

#[test]
fn forget_refuses_a_running_process_and_drops_an_ended_one() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let out = env.cmd(&["forget", &r.id]);
    assert_eq!(out.code, 4);
    assert!(out.stderr.contains("refine-proc stop"), "{}", out.stderr);
    env.ok(&["stop", &r.id]);
    env.ok(&["forget", &r.id]);
    assert_eq!(env.cmd(&["status", &r.id]).code, 3);
    assert!(env.list(&["--all"]).is_empty());
}

#[test]
fn limits_reach_systemd_and_the_runtime_limit_ends_the_process_as_a_timeout() {
    let env = Env::new();
    let r = env.run(&[
        "--memory-max",
        "64M",
        "--cpu-quota",
        "50%",
        "--tasks-max",
        "10",
        "--runtime-max",
        "1h",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(r.limits.memory_max, Some(64 << 20));
    assert_eq!(r.limits.cpu_quota_percent, Some(50));
    assert_eq!(r.limits.tasks_max, Some(10));
    assert_eq!(r.limits.runtime_max_sec, Some(3600));
    assert_eq!(show(&r.unit, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(show(&r.unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show(&r.unit, "TasksMax"), "10");
    assert_eq!(show(&r.unit, "RuntimeMaxUSec"), "1h");

    let t = env.run(&["--runtime-max", "1s", "--", "sleep", "600"]);
    wait_gone(&t.unit);
    let s = env.status(&t.id);
    assert_eq!(
        (s.state.as_str(), s.result.as_deref()),
        ("failed", Some("timeout"))
    );
}

#[test]
fn restart_on_failure_is_counted_and_the_final_exit_kept() {
    let env = Env::new();
    // Fails the first time, succeeds the second.
    let r = env.run(&[
        "--restart",
        "on-failure",
        "--",
        "sh",
        "-c",
        "if [ -e marker ]; then exit 0; else touch marker; exit 1; fi",
    ]);
    assert_eq!(r.restart.policy, "on-failure");
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(
        (s.state.as_str(), s.exit_code, s.restart.count),
        ("exited", Some(0), 1)
    );
}

#[test]
fn sixty_four_concurrent_runs_leave_sixty_four_records_and_units() {
    let env = Env::new();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    env.run(&["--label", &format!("p{i}"), "--", "sleep", "600"])
                        .id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 64);
    let listed = env.list(&[]);
    assert_eq!(listed.len(), 64);
    assert!(listed.iter().all(|r| r.state == "running"));
    let units = systemctl(&[
        "list-units",
        "--no-legend",
        "--plain",
        "refine-user-helper-*",
    ]);
    for r in &listed {
        assert!(units.contains(&r.unit), "{} not in systemctl", r.unit);
    }
    let labels: std::collections::BTreeSet<String> = listed.into_iter().map(|r| r.label).collect();
    assert_eq!(labels.len(), 64);
}

#[test]
fn list_filters_by_owner_workflow_session_gap_and_state() {
    let env = Env::new();
    let a = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "w1",
        "--session",
        "s1",
        "--",
        "sleep",
        "600",
    ]);
    let b = env.run(&[
        "--owner",
        "import",
        "--workflow",
        "w2",
        "--gap",
        "g1",
        "--",
        "sleep",
        "600",
    ]);
    let c = env.run(&["--owner", "agent", "--", "true"]);
    wait_gone(&c.unit);
    let ids = |args: &[&str]| -> Vec<String> { env.list(args).into_iter().map(|r| r.id).collect() };
    assert_eq!(ids(&["--owner", "agent"]), vec![a.id.clone()]);
    assert_eq!(
        ids(&["--owner", "agent", "--all"]),
        vec![a.id.clone(), c.id.clone()]
    );
    assert_eq!(ids(&["--workflow", "w2"]), vec![b.id.clone()]);
    assert_eq!(ids(&["--session", "s1"]), vec![a.id.clone()]);
    assert_eq!(ids(&["--gap", "g1"]), vec![b.id.clone()]);
    assert_eq!(ids(&["--state", "exited"]), vec![c.id.clone()]);
    let table = env.ok(&["list", "--all"]).stdout;
    for header in ["ID", "OWNER", "LABEL", "STATE", "PID", "AGE", "EXIT"] {
        assert!(table.contains(header), "{table}");
    }
    assert!(table.contains(&a.id) && table.contains(&c.id));
}

#[test]
fn ids_can_be_given_as_unique_prefixes_or_unit_names() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    assert_eq!(env.status(&r.id[..4]).id, r.id);
    assert_eq!(env.status(&r.unit).id, r.id);
}

#[test]
fn the_shipped_resurrect_unit_passes_systemd_analyze_verify() {
    let env = Env::new();
    // As installed, with the path of the binary under test.
    let text = include_str!("../../units/refine-proc-resurrect.service")
        .replace("/usr/bin/refine-proc", &binary().display().to_string());
    let path = env.work_dir().join("refine-proc-resurrect.service");
    std::fs::write(&path, text).unwrap();
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.args(["--user", "verify"]).arg(&path);
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        !out.stderr.contains(&path.display().to_string()),
        "systemd-analyze complained: {}",
        out.stderr
    );
}
