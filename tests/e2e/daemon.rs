//! The supervisor daemon as systemd runs it: a Type=notify service that
//! says READY=1 and keeps a STATUS= line, sends watchdog heartbeats, runs
//! once per index, and restarts with growing delays where systemd cannot.

use super::common::*;

/// The daemon of `env`'s index as a transient Type=notify service with a
/// watchdog; stopped when dropped.
pub(super) struct Daemon {
    pub(super) unit: String,
}

impl Daemon {
    pub(super) fn start(env: &Env) -> Daemon {
        let unit = format!(
            "rpdaemon-{}.service",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let mut cmd = std::process::Command::new("systemd-run");
        cmd.args(["--user", "--quiet", "--unit", &unit])
            .args(["-p", "Type=notify", "-p", "WatchdogSec=2s"])
            .arg(format!(
                "--setenv=REFINE_PROC_POLICY={}",
                env.policy_path().display()
            ))
            .arg(binary())
            .arg("--state-dir")
            .arg(env.state_dir())
            .arg("daemon");
        // systemd-run returns once the start job is done: for Type=notify,
        // after READY=1.
        let out = output(cmd);
        assert_eq!(out.code, 0, "systemd-run: {}{}", out.stdout, out.stderr);
        Daemon { unit }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        systemctl(&["stop", &self.unit]);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn events_of(env: &Env, id: &str) -> Vec<serde_json::Value> {
    env.ok(&["events", "--json", "--id", id])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_daemon_is_ready_after_reconciling_reports_status_and_runs_once_per_index() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let d = Daemon::start(&env);
    assert_eq!(show(&d.unit, "ActiveState"), "active");
    let status = show(&d.unit, "StatusText");
    assert!(status.contains("1 running"), "STATUS= {status:?}");
    // A second daemon for the same index refuses, naming the first.
    let second = env.cmd(&["daemon"]);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains("already supervises"),
        "{}",
        second.stderr
    );
    // The watchdog (2 s) is fed: still active well past it.
    let pid = show(&d.unit, "MainPID");
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(show(&d.unit, "ActiveState"), "active");
    assert_eq!(
        show(&d.unit, "MainPID"),
        pid,
        "not restarted by the watchdog"
    );
    assert_eq!(show(&d.unit, "NRestarts"), "0");
    env.ok(&["stop", &r.id]);
}

#[test]
fn on_this_systemd_the_daemon_restarts_with_growing_delays_up_to_the_limit() {
    let env = Env::new();
    let version: u32 = systemctl(&["--version"])
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    let r = env.run(&[
        "--restart",
        "on-failure",
        "--restart-delay",
        "1s",
        "--restart-max-delay",
        "4s",
        "--restart-limit",
        "3/5min",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    if version >= 254 {
        assert_eq!(raw["restart"]["by"], "systemd");
        assert_eq!(show(&r.unit, "RestartSteps"), "2");
        return;
    }
    assert_eq!(raw["restart"]["by"], "daemon");
    assert_eq!(raw["restart"]["max_delay_sec"], 4);
    wait_gone(&r.unit);
    // No daemon yet: nothing restarts it (systemd was told Restart=no).
    assert_eq!(env.status(&r.id).state, "failed");
    let _d = Daemon::start(&env);
    // The daemon owes the restart of a failure under this manager: 1 s,
    // then 2 s; the third start is the last the limit allows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = events_of(&env, &r.id);
        if events.iter().any(|e| e["event"] == "restart-gave-up") {
            let delays: Vec<i64> = events
                .iter()
                .filter(|e| e["event"] == "restarted" && e["by"] == "daemon")
                .map(|e| e["delay_sec"].as_i64().unwrap())
                .collect();
            assert_eq!(delays, vec![1, 2], "{events:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no restart-gave-up: {events:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(raw["state"], "failed");
    assert_eq!(raw["restart"]["count"], 2);
    assert_eq!(raw["restart"]["last_failure"]["exit_code"], 3);
}

#[test]
fn restart_timing_needs_a_policy_and_sane_numbers() {
    let env = Env::new();
    for (args, says) in [
        (vec!["--restart-delay", "1s"], "need a restart policy"),
        (
            vec![
                "--restart",
                "always",
                "--restart-delay",
                "10s",
                "--restart-max-delay",
                "5s",
            ],
            "shorter than",
        ),
        (
            vec!["--restart", "always", "--restart-limit", "5"],
            "N/DURATION",
        ),
        (
            vec!["--restart", "always", "--restart-limit", "0/1min"],
            "at least 1",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(args.iter());
        all.extend(["--", "true"]);
        let out = env.cmd(&all);
        assert_eq!(out.code, 2, "{all:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{all:?}: {}", out.stderr);
    }
}

#[test]
fn ready_notify_is_starting_until_ready_and_wait_ready_waits_with_a_timeout() {
    let env = Env::new();
    let script = "sleep 1; systemd-notify --ready; exec sleep 600";
    // Without --wait-ready: back at once, still starting.
    let r = env.run(&["--ready", "notify", "--", "sh", "-c", script]);
    assert_eq!(r.state, "starting");
    assert_eq!(show(&r.unit, "Type"), "notify");
    wait_for(&r.unit, |i| {
        i.is_some_and(|i| i.state.active_state == "active")
    });
    assert_eq!(env.status(&r.id).state, "running");
    // With it: back once READY=1 came.
    let t = std::time::Instant::now();
    let w: Rec = env
        .ok(&[
            "run",
            "--json",
            "--ready",
            "notify",
            "--wait-ready",
            "--",
            "sh",
            "-c",
            script,
        ])
        .json();
    assert_eq!(w.state, "running");
    assert!(t.elapsed() >= std::time::Duration::from_millis(900));
    // Never ready: the start fails after the timeout, and says why.
    let out = env.cmd(&[
        "run",
        "--ready",
        "notify",
        "--ready-timeout",
        "2s",
        "--wait-ready",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("READY=1"), "{}", out.stderr);
    let bad = env.cmd(&["run", "--wait-ready", "--", "true"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

fn health_of(env: &Env, id: &str) -> serde_json::Value {
    let raw: serde_json::Value = env.ok(&["status", "--json", id]).json();
    raw["health"]["state"].clone()
}

/// Waits (bounded) until `done` holds for the process's health state.
fn wait_health(env: &Env, id: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let h = health_of(env, id);
        if done(&h) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {h}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_probes_health_acts_on_unhealthy_and_holds_probes_while_paused() {
    let env = Env::new();
    let flag = env.work_dir().join("ok");
    let check = format!("test -f {}", flag.display());
    let r = env.run(&[
        "--health-cmd",
        &check,
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "2",
        "--on-unhealthy",
        "restart",
        "--",
        "sleep",
        "600",
    ]);
    let _d = Daemon::start(&env);
    // Failing: unhealthy after two failures, then restarted by the daemon.
    wait_health(&env, &r.id, "restarted after unhealthy", |_| {
        env.status(&r.id).restart.count >= 1
    });
    let kinds: Vec<String> = events_of(&env, &r.id)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"unhealthy".to_string()), "{kinds:?}");
    std::fs::write(&flag, "").unwrap();
    wait_health(&env, &r.id, "healthy", |h| h["status"] == "healthy");
    assert!(events_of(&env, &r.id)
        .iter()
        .any(|e| e["event"] == "healthy"));
    assert!(env.ok(&["list"]).stdout.contains("healthy"));
    // Paused: no probe runs (the last probe's time stays).
    env.ok(&["pause", &r.id]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = health_of(&env, &r.id)["last"]["at"].clone();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        health_of(&env, &r.id)["last"]["at"],
        before,
        "probed while paused"
    );
    env.ok(&["resume", &r.id]);
    wait_health(&env, &r.id, "probed again", |h| h["last"]["at"] != before);
}

#[test]
fn ready_health_wait_ready_returns_once_the_check_passes() {
    let env = Env::new();
    let flag = env.work_dir().join("up");
    let check = format!("test -f {}", flag.display());
    let script = format!("sleep 1; touch {}; exec sleep 600", flag.display());
    let r: Rec = env
        .ok(&[
            "run",
            "--json",
            "--health-cmd",
            &check,
            "--ready",
            "health",
            "--wait-ready",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .json();
    assert!(flag.exists(), "returned before the check could pass");
    assert_eq!(r.state, "running");
    assert_eq!(health_of(&env, &r.id)["status"], "healthy");
    let never = env.cmd(&[
        "run",
        "--health-cmd",
        "false",
        "--ready",
        "health",
        "--ready-timeout",
        "2s",
        "--wait-ready",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(never.code, 1, "{}", never.stderr);
    assert!(
        never.stderr.contains("did not pass within 2s"),
        "{}",
        never.stderr
    );
    let unchecked = env.cmd(&["run", "--ready", "health", "--", "true"]);
    assert_eq!(unchecked.code, 2, "{}", unchecked.stderr);
}

#[test]
fn a_daemon_restart_waits_for_the_resume_of_a_pause_holding_its_owner() {
    let env = Env::new();
    let version: u32 = systemctl(&["--version"])
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    if version >= 254 {
        eprintln!("skipping: systemd {version} restarts by itself (RestartSteps=)");
        return;
    }
    env.ok(&["pause", "--owner", "agent"]);
    let r: Rec = env
        .ok(&[
            "run",
            "--json",
            "--queue",
            "--owner",
            "agent",
            "--restart",
            "on-failure",
            "--restart-delay",
            "1s",
            "--restart-max-delay",
            "2s",
            "--",
            "sh",
            "-c",
            "sleep 0.2; exit 3",
        ])
        .json();
    assert_eq!(r.state, "queued");
    let _d = Daemon::start(&env);
    // Resume starts the queued run; it fails; pause again before the
    // daemon's restart is due.
    env.ok(&["resume", "--owner", "agent"]);
    wait_gone(&r.unit);
    env.ok(&["pause", "--owner", "agent"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(env.status(&r.id).state, "failed", "restarted while paused");
    env.ok(&["resume", "--owner", "agent"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !events_of(&env, &r.id)
        .iter()
        .any(|e| e["event"] == "restarted" && e["by"] == "daemon")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never restarted after the resume"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
