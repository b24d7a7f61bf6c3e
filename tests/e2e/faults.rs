//! Faults against the real user manager: a crash of the manager, an exit
//! the hook could not record, `run` killed at any point, daemon-reload and
//! daemon-reexec while operations are in flight. After each, the next
//! invocation finds the truth.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// The `event` names recorded for `id`, in order.
fn events_of(env: &Env, id: &str) -> Vec<String> {
    env.ok(&["events", "--json", "--id", id])
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            v["event"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `list --all --json` as JSON values (for fields the test's Rec lacks).
fn list_all_raw(env: &Env) -> BTreeMap<String, serde_json::Value> {
    let all: Vec<serde_json::Value> = env.ok(&["list", "--all", "--json"]).json();
    all.into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn unrecorded_exits_are_closed_as_lost_once_with_the_exit_from_the_journal() {
    let env = Env::new();
    // 1. The hook binary is removed while the process runs (README: its
    // exit cannot be recorded). The manager still logs the failure.
    let hook_dir = env.work_dir().join("hook");
    std::fs::create_dir(&hook_dir).unwrap();
    let hook = hook_dir.join("refine-proc");
    std::fs::copy(binary(), &hook).unwrap();
    let go_fail = env.work_dir().join("go-fail");
    mkfifo(&go_fail);
    let mut cmd = env.command(&[
        "run",
        "--json",
        "--label",
        "fails unseen",
        "--",
        "sh",
        "-c",
        "read x < go-fail; exit 3",
    ]);
    cmd.env("REFINE_PROC_HOOK", &hook);
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let failing: Rec = out.json();
    std::fs::remove_file(&hook).unwrap();
    std::fs::write(&go_fail, b"go\n").unwrap();
    wait_gone(&failing.unit);

    // 2. The index refuses the hook's write (records read-only): a
    // successful exit, which the manager does not log; the hook's own
    // journal entry keeps it.
    let go_ok = env.work_dir().join("go-ok");
    mkfifo(&go_ok);
    let ok = env.run(&[
        "--label",
        "succeeds unseen",
        "--",
        "sh",
        "-c",
        "read x < go-ok; exit 0",
    ]);
    let records = env.state_dir().join("records");
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o500);
    std::fs::write(&go_ok, b"go\n").unwrap();
    wait_gone(&ok.unit);
    mode(0o700);

    let all = list_all_raw(&env);
    assert_eq!(all.len(), 2, "{all:#?}");
    let f = &all[&failing.id];
    assert_eq!(
        (
            &f["state"],
            &f["exit_code"],
            &f["result"],
            &f["exit_source"]
        ),
        (
            &"lost".into(),
            &3.into(),
            &"exit-code".into(),
            &"journal".into()
        ),
        "{f:#}"
    );
    let o = &all[&ok.id];
    assert_eq!(
        (
            &o["state"],
            &o["exit_code"],
            &o["result"],
            &o["exit_source"]
        ),
        (
            &"lost".into(),
            &0.into(),
            &"success".into(),
            &"journal".into()
        ),
        "{o:#}"
    );
    // Durable, and recorded once however often it is looked at.
    for id in [&failing.id, &ok.id] {
        assert_eq!(env.status(id).state, "lost");
    }
    env.list(&["--all"]);
    for id in [&failing.id, &ok.id] {
        assert_eq!(events_of(&env, id), vec!["started", "lost"], "{id}");
    }
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(records.join(format!("{}.json", failing.id))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stored["state"], "lost",
        "closed in the index, not only shown"
    );
}

#[test]
fn a_manager_crash_closes_the_records_of_its_running_processes_as_lost_once() {
    let Some(crash) = std::env::var_os("REFINE_PROC_CRASH_MANAGER") else {
        skip("not in the test sandbox (REFINE_PROC_CRASH_MANAGER unset): no manager to crash");
        return;
    };
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let running = env.run(&["--label", "survivor?", "--", "sleep", "600"]);
    let running_pid = running.pid.expect("a pid");
    // The manager crashes: no ExecStopPost runs for the running process.
    let out = output(Command::new(&crash));
    assert_eq!(
        out.code, 0,
        "crash-user-manager: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        !pid_alive(running_pid),
        "the crashed manager's process survived"
    );
    assert_eq!(show(&running.unit, "LoadState"), "not-found");
    let all = list_all_raw(&env);
    let r = &all[&running.id];
    assert_eq!(r["state"], "lost");
    assert!(
        r["exit_code"].is_null() && r["exit_source"].is_null(),
        "{r:#}"
    );
    assert_eq!(r["pid"], running_pid, "the last known pid is kept");
    assert!(
        r["ended_at"].as_str() >= r["started_at"].as_str(),
        "ended_at is the latest it can have ended: {r:#}"
    );
    assert_eq!(env.status(&running.id).state, "lost");
    env.list(&["--all"]);
    assert_eq!(events_of(&env, &running.id), vec!["started", "lost"]);
    // The new manager takes new work.
    let again = env.run(&["--", "sleep", "600"]);
    assert_eq!(env.status(&again.id).state, "running");
}

/// Units whose Description carries `label`: (unit, active state).
fn units_labelled(label: &str) -> Vec<(String, String)> {
    systemctl(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "refine-*.service",
    ])
    .lines()
    .filter(|l| l.contains(label))
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[0].to_string(), f[2].to_string())
    })
    .collect()
}

/// A `starting` record whose launcher died is given this long before it
/// is called lost (LAUNCHER_GRACE in the controller, plus margin). A time,
/// not an event: nothing signals that a grace period has passed.
const LAUNCHER_GRACE: Duration = Duration::from_millis(2500);

#[test]
fn run_killed_at_each_point_leaves_one_true_record_per_started_unit() {
    let env = Env::new();
    for point in [
        "before-index-write",
        "after-index-write",
        "after-start-request",
        "after-start",
    ] {
        let label = format!("fault {point}");
        let mut cmd = env.command(&["run", "--label", &label, "--", "sleep", "600"]);
        cmd.env("REFINE_PROC_FAULT", point);
        let out = output(cmd);
        assert_eq!(out.code, -1, "{point}: run was not killed: {}", out.stderr);
        let mine: Vec<Rec> = env
            .list(&["--all"])
            .into_iter()
            .filter(|r| r.label == label)
            .collect();
        let units = units_labelled(&label);
        match point {
            "before-index-write" => {
                assert!(
                    mine.is_empty() && units.is_empty(),
                    "{point}: {mine:?} {units:?}"
                );
            }
            "after-index-write" => {
                assert!(units.is_empty(), "{point}: {units:?}");
                assert_eq!(mine.len(), 1, "{point}");
                std::thread::sleep(LAUNCHER_GRACE);
                let all = list_all_raw(&env);
                let r = &all[&mine[0].id];
                assert_eq!(
                    (&r["state"], &r["result"]),
                    (&"lost".into(), &"not-started".into()),
                    "{point}: {r:#}"
                );
                assert_eq!(events_of(&env, &mine[0].id), vec!["lost"]);
            }
            _ => {
                assert_eq!(units.len(), 1, "{point}: {units:?}");
                assert_eq!(mine.len(), 1, "{point}: {mine:?}");
                assert_eq!(mine[0].unit, units[0].0);
                // Killed before the start job ended, the unit may still be
                // activating (shown as starting): wait for systemd to say.
                wait_for(&units[0].0, |i| {
                    i.is_some_and(|i| i.state.active_state == "active")
                });
                let mine: Vec<Rec> = env
                    .list(&["--all"])
                    .into_iter()
                    .filter(|r| r.label == label)
                    .collect();
                assert_eq!(mine[0].state, "running", "{point}");
                let s = env.status(&mine[0].id);
                assert!(s.pid.is_some_and(pid_alive), "{point}: {s:?}");
                // Still exactly one, and stoppable as any other.
                env.ok(&["stop", &mine[0].id]);
                assert_eq!(env.status(&mine[0].id).state, "stopped");
            }
        }
    }
}

#[test]
fn run_killed_at_random_moments_never_runs_twice_loses_nothing_and_orphans_nothing() {
    let env = Env::new();
    let label = format!("random kill {}", std::process::id());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {seed}");
    let mut delays = Vec::new();
    for _ in 0..24 {
        // xorshift: no dependency for a few random numbers.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 80_000);
        delays.push(delay);
        let mut child = env
            .command(&["run", "--label", &label, "--", "sleep", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL, wherever it is
        let _ = child.wait();
    }
    std::thread::sleep(LAUNCHER_GRACE);
    let mine: Vec<Rec> = env
        .list(&["--all"])
        .into_iter()
        .filter(|r| r.label == label)
        .collect();
    let units = units_labelled(&label);
    eprintln!(
        "{} runs killed after {delays:?}: {} records, {} units",
        delays.len(),
        mine.len(),
        units.len()
    );
    // Every unit has exactly one record, which says it runs.
    for (unit, active) in &units {
        assert_eq!(active, "active", "{unit}");
        let recs: Vec<&Rec> = mine.iter().filter(|r| &r.unit == unit).collect();
        assert_eq!(recs.len(), 1, "{unit}: {recs:?}");
        assert_eq!(recs[0].state, "running", "{unit}: {:?}", recs[0]);
    }
    // Every record without a unit is closed truthfully, never `starting`
    // or `running`; none was started twice (one unit per record at most).
    for r in &mine {
        if !units.iter().any(|(u, _)| u == &r.unit) {
            assert_eq!(r.state, "lost", "{r:?}");
        }
    }
    assert!(units.len() <= delays.len() && mine.len() <= delays.len());
    // Loaded units are listed even where their record was never written.
    let running: Vec<Rec> = env
        .list(&[])
        .into_iter()
        .filter(|r| r.label == label)
        .collect();
    assert_eq!(running.len(), units.len());
}

/// `systemctl --user daemon-reload` or `daemon-reexec`, requiring success.
fn manager(op: &str) {
    let mut cmd = Command::new("systemctl");
    cmd.args(["--user", op]);
    let out = output(cmd);
    assert_eq!(out.code, 0, "systemctl --user {op}: {}", out.stderr);
}

#[test]
fn daemon_reload_and_reexec_during_run_wait_stop_and_run_keep_states_and_exit_codes() {
    // Reexec briefly takes the manager off the bus: other tests must not
    // see that as their own failure.
    let _exclusive = exclusive_manager();
    let env = Env::unshared();

    // run --wait across reloads and a reexec: the exit code is the process's.
    let go = env.work_dir().join("go");
    mkfifo(&go);
    let waiting = {
        let cmd = env.command(&[
            "run",
            "--wait",
            "--json",
            "--label",
            "waits",
            "--",
            "sh",
            "-c",
            "read x < go; exit 7",
        ]);
        std::thread::spawn(move || output(cmd))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let unit = loop {
        if let Some((unit, _)) = units_labelled("waits").into_iter().next() {
            break unit;
        }
        assert!(
            Instant::now() < deadline,
            "run --wait did not start its unit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    wait_for(&unit, |i| {
        i.is_some_and(|i| i.state.active_state == "active")
    });
    manager("daemon-reload");
    manager("daemon-reexec");
    manager("daemon-reload");
    assert_eq!(show(&unit, "ActiveState"), "active");
    std::fs::write(&go, b"go\n").unwrap();
    let out = waiting.join().unwrap();
    assert_eq!(out.code, 7, "run --wait: {}", out.stderr);
    let r: Rec = out.json();
    assert_eq!((r.state.as_str(), r.exit_code), ("failed", Some(7)));

    // stop across a reload and a reexec: stopped, and the record says so.
    let slow = env.run(&[
        "--label",
        "slow to stop",
        "--",
        "sh",
        "-c",
        "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let stopping = {
        let cmd = env.command(&["stop", "--json", &slow.id]);
        std::thread::spawn(move || output(cmd))
    };
    wait_for(&slow.unit, |i| {
        i.is_none_or(|i| i.state.active_state != "active")
    });
    manager("daemon-reload");
    manager("daemon-reexec");
    let out = stopping.join().unwrap();
    assert_eq!(out.code, 0, "stop: {}", out.stderr);
    assert_eq!(env.status(&slow.id).state, "stopped");

    // Runs while the manager reloads and re-executes: each one succeeds
    // with a running process, or fails with nothing left behind.
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let cmd = env.command(&[
                "run",
                "--json",
                "--label",
                &format!("during {i}"),
                "--",
                "sleep",
                "600",
            ]);
            std::thread::spawn(move || output(cmd))
        })
        .collect();
    manager("daemon-reload");
    manager("daemon-reexec");
    for run in runs {
        let out = run.join().unwrap();
        if out.code == 0 {
            let r: Rec = out.json();
            assert_eq!(env.status(&r.id).state, "running", "{r:?}");
        } else {
            eprintln!("a run during reexec failed cleanly: {}", out.stderr);
        }
    }
    for r in env.list(&["--all"]) {
        assert!(
            matches!(r.state.as_str(), "running" | "failed" | "stopped"),
            "{r:?}"
        );
    }
}

#[test]
fn after_a_daemon_reload_a_unit_keeps_its_literal_arguments_and_its_exit_hook() {
    // systemd 252 used to reload our units without ExecStart= and without
    // the exit hook (it wrote ExecStartEx= to the transient file, a key its
    // parser rejects): a successful exit then went unrecorded.
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let go = env.work_dir().join("go");
    mkfifo(&go);
    let r = env.run(&[
        "--",
        "sh",
        "-c",
        "read x < go; [ \"$1\" = '$HOME' ] || exit 9",
        "sh",
        "$HOME",
    ]);
    manager("daemon-reload");
    assert_eq!(show(&r.unit, "LoadState"), "loaded");
    assert!(show(&r.unit, "ExecStopPost").contains("record-exit"));
    std::fs::write(&go, b"go\n").unwrap();
    wait_gone(&r.unit);
    let all = list_all_raw(&env);
    let s = &all[&r.id];
    assert_eq!(
        (&s["state"], &s["exit_code"], &s["exit_source"]),
        (&"exited".into(), &0.into(), &"hook".into()),
        "{s:#}"
    );
    assert_eq!(events_of(&env, &r.id), vec!["started", "exited"]);
}
