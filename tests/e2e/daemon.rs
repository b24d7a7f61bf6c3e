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
        Daemon::start_with_policy(env, &env.policy_path())
    }

    /// With `policy` as the daemon's own policy file.
    fn start_with_policy(env: &Env, policy: &std::path::Path) -> Daemon {
        let unit = format!(
            "rpdaemon-{}.service",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let mut cmd = std::process::Command::new("systemd-run");
        cmd.args(["--user", "--quiet", "--unit", &unit])
            .args([
                "-p",
                "Type=notify",
                "-p",
                "WatchdogSec=2s",
                "-p",
                "Delegate=yes",
            ])
            .arg(format!("--setenv=REFINE_PROC_POLICY={}", policy.display()))
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

impl Daemon {
    /// SIGKILLs the daemon, as a crash or the OOM killer would, and waits
    /// until systemd has seen it die.
    fn crash(&self) {
        systemctl(&["kill", "--signal", "KILL", &self.unit]);
        wait_for(&self.unit, |i| {
            i.is_none_or(|i| matches!(i.state.active_state.as_str(), "inactive" | "failed"))
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        systemctl(&["stop", &self.unit]);
        systemctl(&["reset-failed", &self.unit]);
    }
}

/// `events --follow --json --id ID` in the background: events arrive as
/// they are written, without polling the history.
struct EventWatch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl EventWatch {
    fn new(env: &Env, id: &str) -> EventWatch {
        use std::io::BufRead;
        let mut child = env
            .command(&["events", "--follow", "--json", "--id", id])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(|l| l.ok()) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        EventWatch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `secs`) for an event that `done` accepts; returns
    /// every event seen so far.
    fn until(
        &mut self,
        secs: u64,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> &[serde_json::Value] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        if self.seen.iter().any(&done) {
            return &self.seen;
        }
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(e) => {
                    let hit = done(&e);
                    self.seen.push(e);
                    if hit {
                        return &self.seen;
                    }
                }
                Err(_) => panic!("no {what} within {secs}s: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn systemd_version() -> u32 {
    systemctl(&["--version"])
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn daemon_restart(e: &serde_json::Value) -> bool {
    e["event"] == "restarted" && e["by"] == "daemon"
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
fn restart_timing_was_refused_without_restart_though_on_unhealthy_restart_uses_it() {
    let env = Env::new();
    // The daemon's restarts of an unhealthy process follow the timing, so
    // --on-unhealthy restart is reason enough for it.
    let r = env.run(&[
        "--health-cmd",
        "true",
        "--on-unhealthy",
        "restart",
        "--restart-delay",
        "2s",
        "--restart-limit",
        "3/1min",
        "--",
        "sleep",
        "600",
    ]);
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(raw["restart"]["delay_sec"], 2, "{raw}");
    assert_eq!(raw["restart"]["limit_burst"], 3, "{raw}");
    // systemd itself restarts nothing: the policy is still no.
    assert_eq!(show(&r.unit, "Restart"), "no");
    env.ok(&["stop", &r.id]);
    // Without a restart of either kind the timing is still refused.
    let out = env.cmd(&[
        "run",
        "--health-cmd",
        "true",
        "--restart-delay",
        "2s",
        "--",
        "true",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("need a restart policy")
            && out.stderr.contains("--on-unhealthy restart"),
        "{}",
        out.stderr
    );
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

/// Waits until the history holds a `kind` event of `id`, on `events
/// --follow` (which prints the past events, then new ones as they are
/// appended): the daemon writes the health state before it appends the
/// event, so seeing the state is no sign that the event is there.
fn wait_event(env: &Env, id: &str, kind: &str) {
    use std::io::BufRead;
    let mut child = env
        .command(&["events", "--follow", "--json", "--id", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start refine-proc events --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let e: serde_json::Value = serde_json::from_str(&line).unwrap();
                if e["event"] == kind {
                    break true;
                }
                seen.push(e["event"].to_string());
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no {kind} event of {id} within 30s; saw {seen:?}");
}

fn health_of(env: &Env, id: &str) -> serde_json::Value {
    let raw: serde_json::Value = env.ok(&["status", "--json", id]).json();
    raw["health"]["state"].clone()
}

/// Waits (bounded) until `done` holds for the process's health state.
fn wait_health(env: &Env, id: &str, what: &str, mut done: impl FnMut(&serde_json::Value) -> bool) {
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
    wait_event(&env, &r.id, "unhealthy");
    std::fs::write(&flag, "").unwrap();
    wait_health(&env, &r.id, "healthy", |h| h["status"] == "healthy");
    wait_event(&env, &r.id, "healthy");
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
        skip(&format!(
            "systemd {version} restarts by itself (RestartSteps=): no daemon restart to hold"
        ));
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

#[test]
fn list_shows_the_new_pid_and_start_after_a_restart_of_a_running_process() {
    // Issue 10.3: `status` had the new pid, `list` the old one, and
    // started_at stayed that of the first run.
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let before = env.list(&[]);
    assert_eq!(before[0].pid, r.pid);
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.ok(&["restart", &r.id]);
    let main_pid: u32 = show(&r.unit, "MainPID").parse().unwrap();
    assert_ne!(Some(main_pid), r.pid, "systemd started a new process");
    let listed = env.list(&[]);
    let status = env.status(&r.id);
    assert_eq!(listed[0].pid, Some(main_pid), "list: {listed:?}");
    assert_eq!(status.pid, Some(main_pid));
    assert!(
        listed[0].started_at > r.started_at,
        "started_at of the new run: {:?} after {:?}",
        listed[0].started_at,
        r.started_at
    );
    assert_eq!(status.started_at, listed[0].started_at);
    env.ok(&["stop", &r.id]);
}

#[test]
fn unhealthy_restarts_back_off_stop_at_the_limit_and_are_the_daemons() {
    // Issue 10.4: a check that never passed restarted 14 times in 30 s, with
    // no backoff and no limit, each restart by actor `person`.
    let env = Env::new();
    let r = env.run(&[
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "--on-unhealthy",
        "restart",
        "--restart",
        "on-failure",
        "--restart-delay",
        "1s",
        "--restart-max-delay",
        "4s",
        "--restart-limit",
        "3/1min",
        "--",
        "sleep",
        "600",
    ]);
    let mut watch = EventWatch::new(&env, &r.id);
    let _d = Daemon::start(&env);
    let events = watch
        .until(60, "restart-gave-up", |e| e["event"] == "restart-gave-up")
        .to_vec();
    let delays: Vec<i64> = events
        .iter()
        .filter(|e| daemon_restart(e))
        .map(|e| e["delay_sec"].as_i64().unwrap())
        .collect();
    assert_eq!(delays, vec![1, 2], "growing delays, 3 starts: {events:#?}");
    for e in events.iter().filter(|e| daemon_restart(e)) {
        assert_eq!(e["reason"], "unhealthy", "{e}");
    }
    // Every action after the first start is the daemon's, for the person
    // who ran it: the restarts, the final stop, the giving up.
    let actions: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            matches!(
                e["event"].as_str(),
                Some("restarted" | "restart-gave-up" | "refused")
            )
        })
        .collect();
    assert!(actions.len() >= 3, "{events:#?}");
    for e in actions {
        assert_eq!(e["actor"], "daemon", "{e}");
        assert_eq!(e["on_behalf_of"], "person", "{e}");
    }
    let gave_up = events.last().unwrap();
    assert_eq!(gave_up["reason"], "unhealthy");
    assert_eq!(gave_up["limit_burst"], 3);
    assert_eq!(gave_up["limit_interval_sec"], 60);
    // Left as systemd leaves a unit over its start limit.
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(raw["state"], "failed", "{raw}");
    assert_eq!(raw["result"], "start-limit-hit", "{raw}");
    assert_eq!(raw["restart"]["last_failure"]["result"], "start-limit-hit");
    assert_eq!(show(&r.unit, "ActiveState"), "inactive");
    // And it stays so: no fourth start.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(env.status(&r.id).state, "failed");
    assert_eq!(
        events_of(&env, &r.id)
            .iter()
            .filter(|e| daemon_restart(e))
            .count(),
        2
    );
}

#[test]
fn the_restart_limit_and_delays_hold_across_daemon_crashes() {
    // Issue 10.5: with --restart-limit 3/1min, two SIGKILLs of the daemon
    // during the backoff gave 5 starts in 15 s, and the delays started over.
    let version = systemd_version();
    if version >= 254 {
        eprintln!("skipping: systemd {version} restarts by itself (RestartSteps=)");
        return;
    }
    let env = Env::new();
    let r = env.run(&[
        "--restart",
        "on-failure",
        "--restart-delay",
        "1s",
        "--restart-max-delay",
        "4s",
        "--restart-limit",
        "3/1min",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    let mut watch = EventWatch::new(&env, &r.id);
    wait_gone(&r.unit);
    let first = Daemon::start(&env);
    watch.until(30, "a first daemon restart", daemon_restart);
    first.crash();
    let second = Daemon::start(&env);
    watch.until(30, "a second daemon restart", |e| {
        daemon_restart(e) && e["attempt"] == 2
    });
    second.crash();
    let third = Daemon::start(&env);
    let events = watch
        .until(30, "restart-gave-up", |e| e["event"] == "restart-gave-up")
        .to_vec();
    let delays: Vec<i64> = events
        .iter()
        .filter(|e| daemon_restart(e))
        .map(|e| e["delay_sec"].as_i64().unwrap())
        .collect();
    assert_eq!(delays, vec![1, 2], "{events:#?}");
    let starts = events.iter().filter(|e| e["event"] == "started").count();
    assert_eq!(starts, 3, "the limit counts every start: {events:#?}");
    // Durable before it is announced; and a later daemon, once ready
    // (it has decided what it owes by then), owes it nothing.
    let book = || -> serde_json::Value {
        let path = env.state_dir().join("daemon-state.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(book()["restarts"][&r.id]["gave_up"], true, "{}", book());
    drop(third);
    let _fourth = Daemon::start(&env);
    let owed = &book()["restarts"][&r.id];
    assert!(owed["due"].is_null() && owed["gave_up"] == true, "{owed}");
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(
        (raw["state"].as_str(), raw["restart"]["count"].as_u64()),
        (Some("failed"), Some(2))
    );
}

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

#[test]
fn a_health_probe_leaves_no_process_behind_even_one_in_a_new_session() {
    // Issue 10.13: `setsid sleep 777 &` in a --health-cmd left one process
    // per probe, outside any unit (setsid leaves the probe's process group).
    let env = Env::new();
    let secs = (7_000_000 + std::process::id() % 1_000_000).to_string();
    let check = format!("setsid sleep {secs} >/dev/null 2>&1 & sleep 0.2");
    let r = env.run(&[
        "--health-cmd",
        &check,
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--",
        "sleep",
        "600",
    ]);
    let d = Daemon::start(&env);
    // Four probes, each seen by its own time (no event per probe exists).
    let mut times = std::collections::BTreeSet::new();
    wait_health(&env, &r.id, "four probes", |h| {
        times.extend(h["last"]["at"].as_str().map(String::from));
        times.len() >= 4
    });
    // At most the probe under way may have one.
    let left = processes_running(&["sleep", &secs]);
    assert!(left <= 1, "{left} sleeps of finished probes still run");
    // Each probe ran in the record's probe cgroup under the daemon's unit.
    let cgroup = show(&d.unit, "ControlGroup");
    let probe_cgroup = format!("/sys/fs/cgroup{cgroup}/probe-{}", r.id);
    assert!(
        std::path::Path::new(&probe_cgroup).is_dir(),
        "no {probe_cgroup}"
    );
    env.ok(&["stop", &r.id]);
    drop(d);
    assert_eq!(processes_running(&["sleep", &secs]), 0);
}

#[test]
fn a_daemon_restart_is_checked_against_the_launchs_policy_not_the_daemons() {
    // Issue 9: the daemon's restarts ran as `person` under the daemon's
    // own policy.
    let version = systemd_version();
    if version >= 254 {
        eprintln!("skipping: systemd {version} restarts by itself (RestartSteps=)");
        return;
    }
    let env = Env::new();
    let r = env.run(&[
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
    ]);
    let mut watch = EventWatch::new(&env, &r.id);
    wait_gone(&r.unit);
    // The launch's policy now lets a person run only `true`; the daemon's
    // own policy (another file) allows everything.
    std::fs::write(
        env.policy_path(),
        "[actors.person]\ncommands = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    let permissive = env.work_dir().join("daemon-policy.toml");
    let _d = Daemon::start_with_policy(&env, &permissive);
    let events = watch.until(30, "a refusal", |e| e["event"] == "refused");
    let refused = events.last().unwrap();
    assert_eq!(refused["actor"], "daemon", "{refused}");
    assert_eq!(refused["action"], "restart", "{refused}");
    assert!(
        refused["rule"]
            .as_str()
            .is_some_and(|r| r.contains("commands") && r.contains("[actors.person]")),
        "{refused}"
    );
    assert!(!events.iter().any(daemon_restart), "{events:#?}");
    assert_eq!(env.status(&r.id).state, "failed");
}

#[test]
fn the_daemon_keeps_feeding_its_watchdog_while_another_process_holds_the_index_lock() {
    let env = Env::new();
    // Healthy until `trip` exists in its directory; then the daemon stops
    // it, which needs the index lock.
    let r = env.run(&[
        "--health-cmd",
        "test ! -e trip",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--on-unhealthy",
        "stop",
        "--",
        "sleep",
        "600",
    ]);
    let d = Daemon::start(&env);
    let pid = show(&d.unit, "MainPID");
    // Another process holds the lock for 5 s (util-linux flock(1)); it
    // says so on stdout once it has it.
    let mut holder = std::process::Command::new("flock")
        .arg(env.state_dir().join("lock"))
        .args(["-c", "echo held; sleep 5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1) from util-linux");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "held\n");
    std::fs::write(env.work_dir().join("trip"), b"").unwrap();
    // Past two watchdog periods (WatchdogSec=2s) with the daemon waiting
    // for the lock: a daemon whose executor is blocked has been killed.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let state = show(&d.unit, "ActiveState");
    assert_eq!(state, "active", "Result={}", show(&d.unit, "Result"));
    assert_eq!(show(&d.unit, "MainPID"), pid, "killed by the watchdog");
    assert!(holder.wait().unwrap().success());
    // Once the lock is free the daemon does what it waited for.
    wait_gone(&r.unit);
    assert_eq!(env.status(&r.id).state, "stopped");
    assert_eq!(show(&d.unit, "NRestarts"), "0");
    assert_eq!(show(&d.unit, "Result"), "success");
}

#[test]
fn an_unhealthy_restart_is_one_restarted_event_not_two() {
    // Issue 11.7: the restart recorded `restarted`, and the daemon a second.
    let env = Env::new();
    let r = env.run(&[
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "--on-unhealthy",
        "restart",
        "--restart",
        "on-failure",
        "--restart-delay",
        "1s",
        "--restart-limit",
        "3/1min",
        "--",
        "sleep",
        "600",
    ]);
    let mut watch = EventWatch::new(&env, &r.id);
    let _d = Daemon::start(&env);
    watch.until(60, "restart-gave-up", |e| e["event"] == "restart-gave-up");
    let events = events_of(&env, &r.id);
    let restarted: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "restarted")
        .collect();
    assert_eq!(
        restarted.len(),
        2,
        "two restarts, one event each: {events:#?}"
    );
    for e in restarted {
        assert!(daemon_restart(e), "{e}");
        assert_eq!(e["reason"], "unhealthy", "{e}");
        assert_eq!(e["actor"], "daemon", "{e}");
    }
}
