//! Regression tests, one per defect found in review, named after the bug.

use super::common::*;

#[test]
fn start_limit_hit_after_restarts_is_recorded_as_failed_not_starting() {
    let env = Env::new();
    // Fails every time: systemd restarts it until its start limit.
    let out = env.cmd(&[
        "run",
        "--restart",
        "on-failure",
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        "echo run >> runs.txt; exit 3",
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let r: Rec = out.json();
    assert_eq!((r.state.as_str(), r.exit_code), ("failed", Some(3)));
    let runs = std::fs::read_to_string(env.work_dir().join("runs.txt"))
        .unwrap()
        .lines()
        .count() as u32;
    assert!(
        runs >= 2,
        "systemd restarted it at least once ({runs} runs)"
    );
    assert_eq!(
        r.restart.count,
        runs - 1,
        "every run but the first was a restart"
    );
}

#[test]
fn systemctl_stop_of_a_restart_always_unit_is_stopped_not_lost() {
    let env = Env::new();
    let r = env.run(&["--restart", "always", "--", "sleep", "600"]);
    systemctl(&["stop", &r.unit]);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.restart.count), ("stopped", 0));
}

#[test]
fn kill_with_a_signal_that_does_not_end_the_process_does_not_mark_it_stopped() {
    let env = Env::new();
    let r = env.run(&[
        "--",
        "sh",
        "-c",
        "trap 'exit 5' HUP; while :; do sleep 0.1; done",
    ]);
    env.ok(&["kill", "--signal", "HUP", &r.id]);
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.exit_code), ("failed", Some(5)));
}

#[test]
fn kill_of_a_restart_on_failure_unit_marks_only_the_killed_run() {
    let env = Env::new();
    let r = env.run(&["--restart", "on-failure", "--", "sleep", "600"]);
    env.ok(&["kill", "--signal", "KILL", &r.id]);
    // SIGKILL is an unclean end: systemd starts it again (after RestartSec).
    wait_for(&r.unit, |i| {
        i.is_some_and(|i| i.state.active_state == "active" && i.main_pid != r.pid)
    });
    let s = env.status(&r.id);
    assert_ne!(s.pid, r.pid);
    assert_eq!((s.state.as_str(), s.restart.count), ("running", 1));
    env.ok(&["stop", &r.id]);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.restart.count), ("stopped", 1));
}

#[test]
fn restart_keeps_the_exit_of_a_new_run_that_ends_at_once() {
    let env = Env::new();
    // The first run waits; the second (after restart) exits 7 at once.
    let r = env.run(&[
        "--",
        "sh",
        "-c",
        "if [ -e started ]; then exit 7; fi; touch started; sleep 600",
    ]);
    env.ok(&["restart", &r.id]);
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(
        (s.state.as_str(), s.exit_code, s.restart.count),
        ("failed", Some(7), 1)
    );
}

#[test]
fn a_cwd_with_dot_dot_is_normalized_not_refused_by_systemd() {
    let env = Env::new();
    std::fs::create_dir(env.work_dir().join("sub")).unwrap();
    let r = env.run(&["--cwd", "sub/..", "--", "sh", "-c", "pwd > here.txt"]);
    let canonical = std::fs::canonicalize(env.work_dir()).unwrap();
    assert_eq!(r.cwd.as_deref(), Some(canonical.to_str().unwrap()));
    wait_gone(&r.unit);
    let here = std::fs::read_to_string(env.work_dir().join("here.txt")).unwrap();
    assert_eq!(here.trim(), canonical.to_str().unwrap());
}

#[test]
fn a_state_dir_reached_through_a_symlink_is_the_same_index() {
    let env = Env::new();
    let link = env.work_dir().join("state-link");
    std::os::unix::fs::symlink(env.state_dir(), &link).unwrap();
    let link = link.to_str().unwrap();
    let via_link = |args: &[&str]| {
        let mut cmd = std::process::Command::new(binary());
        cmd.arg("--state-dir").arg(link).args(args);
        let out = output(cmd);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out
    };
    let r: Rec = via_link(&["run", "--json", "--", "sleep", "600"]).json();
    let record = std::fs::canonicalize(env.state_dir())
        .unwrap()
        .join(format!("records/{}.json", r.id));
    std::fs::remove_file(record).unwrap();
    let out = via_link(&["status", "--json", &r.id]);
    assert!(out.stderr.contains("rebuilt"), "{}", out.stderr);
    assert_eq!(out.json::<Rec>().state, "running");
}

#[test]
fn an_env_cannot_forge_the_recorded_exit() {
    let env = Env::new();
    for name in [
        "SERVICE_RESULT",
        "EXIT_CODE",
        "EXIT_STATUS",
        "INVOCATION_ID",
        "MONITOR_EXIT_CODE",
    ] {
        let out = env.cmd(&["run", "--env", &format!("{name}=0"), "--", "true"]);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stderr.contains("reserved"), "{}", out.stderr);
    }
}

#[test]
fn run_wait_maps_every_signal_to_128_plus_its_number() {
    let env = Env::new();
    for (signal, number) in [("SEGV", 11), ("BUS", 7), ("TERM", 15)] {
        let script = format!("kill -{signal} $$");
        let out = env.cmd(&["run", "--wait", "--", "sh", "-c", &script]);
        assert_eq!(out.code, 128 + number, "{signal}: {}", out.stderr);
    }
}

#[test]
fn logs_into_a_closed_pipe_exits_zero() {
    let env = Env::new();
    // 200 KB: more than a pipe holds, so journalctl meets the closed pipe.
    let line = "0123456789".repeat(10);
    let r = env.run(&["--", "sh", "-c", &format!("yes {line} | head -n 2000")]);
    wait_gone(&r.unit);
    wait_journal_lines(r.unit.trim_end_matches(".service"), 2000);
    let bin = binary();
    let state = env.state_dir().to_str().unwrap().to_string();
    for form in ["", "--json"] {
        let script = format!(
            "'{}' --state-dir '{state}' logs {form} {} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            bin.display(),
            r.id
        );
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-c", &script]);
        let out = output(cmd);
        assert_eq!(out.code, 0, "logs {form} | head: {}", out.stderr);
    }
}
