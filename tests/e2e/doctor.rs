//! `refine-proc doctor` against the real user manager of the sandbox, and
//! with the bus or the index broken.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::*;

/// The report as the README documents it (the test's own copy).
#[derive(Debug, Deserialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
    notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Check {
    name: String,
    status: String,
    required: bool,
    detail: String,
    fix: Option<String>,
}

impl Report {
    fn by_name(&self) -> BTreeMap<&str, &Check> {
        self.checks.iter().map(|c| (c.name.as_str(), c)).collect()
    }
}

const NAMES: [&str; 12] = [
    "user-bus",
    "systemd-version",
    "cgroup-v2",
    "freezer",
    "restart-steps",
    "controllers",
    "lingering",
    "journal-persistent",
    "journal-readable",
    "index",
    "daemon",
    "confinement",
];

#[test]
fn doctor_reports_the_user_manager_systemd_and_cgroup_v2() {
    let env = Env::new();
    // Warm the per-user journal file, as any user with processes has one.
    env.ok(&["run", "--wait", "--", "true"]);
    let out = env.cmd(&["doctor", "--json"]);
    let report: Report = out.json();
    assert_eq!(out.code, 0, "{report:#?}\n{}", out.stderr);
    assert!(report.ok);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, NAMES);
    let c = report.by_name();
    for required in ["user-bus", "systemd-version", "cgroup-v2", "index"] {
        assert!(c[required].required, "{required} should be required");
        assert_eq!(c[required].status, "ok", "{:?}", c[required]);
    }
    // The version systemd itself reports.
    let version = show_manager_version();
    assert!(
        c["systemd-version"].detail.contains(&version),
        "{:?} vs {version}",
        c["systemd-version"]
    );
    assert!(c["user-bus"].detail.contains(&version));
    // The sandbox is a unified cgroup2 mount where freezing works (pause
    // tests use it) and systemd 252 lacks RestartSteps.
    assert_eq!(c["freezer"].status, "ok", "{:?}", c["freezer"]);
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    let steps = if major >= 254 { "ok" } else { "warn" };
    assert_eq!(c["restart-steps"].status, steps, "{:?}", c["restart-steps"]);
    // The sandbox mounts a persistent journal that journald splits per user.
    assert_eq!(
        c["journal-persistent"].status, "ok",
        "{:?}",
        c["journal-persistent"]
    );
    assert_eq!(
        c["journal-readable"].status, "ok",
        "{:?}",
        c["journal-readable"]
    );
    // The daemon is optional: in the sandbox it is not installed (a
    // warning with the fix); where a package installed it, it may run.
    let daemon = c["daemon"];
    assert!(!daemon.required);
    assert!(daemon.detail.contains("refine-proc.service"), "{daemon:?}");
    match daemon.status.as_str() {
        "ok" => assert!(daemon.detail.contains("is active"), "{daemon:?}"),
        "warn" => assert!(daemon.fix.as_deref().unwrap().contains("enable --now")),
        _ => panic!("{daemon:?}"),
    }
    for check in &report.checks {
        if matches!(check.status.as_str(), "warn" | "fail") {
            assert!(check.fix.is_some(), "no fix for {check:?}");
        }
    }
    assert!(
        report.notes.iter().any(|n| n.contains("RateLimitBurst")),
        "{:?}",
        report.notes
    );
}

/// `systemctl --user show -p Version`, the manager's own word.
fn show_manager_version() -> String {
    systemctl(&["show", "-p", "Version", "--value"])
        .trim()
        .to_string()
}

#[test]
fn doctor_prints_one_line_per_check_and_a_verdict() {
    let env = Env::new();
    let out = env.ok(&["doctor"]);
    for name in NAMES {
        assert!(
            out.stdout.lines().any(|l| l.contains(name)),
            "no {name}:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("fix: "), "{}", out.stdout);
    assert!(
        out.stdout.contains("every required check passed"),
        "{}",
        out.stdout
    );
}

#[test]
fn doctor_does_not_create_the_index() {
    let env = Env::new();
    let dir = env.work_dir().join("not-yet");
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("--state-dir").arg(&dir).args(["doctor", "--json"]);
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report: Report = out.json();
    assert_eq!(report.by_name()["index"].status, "ok");
    assert!(report.by_name()["index"]
        .detail
        .contains("created on first use"));
    assert!(!dir.exists(), "doctor created {}", dir.display());
}

#[test]
fn doctor_fails_with_the_fix_when_the_user_bus_is_unreachable() {
    let env = Env::new();
    let nothing = env.work_dir().join("no-bus-here");
    let mut cmd = env.command(&["doctor", "--json"]);
    cmd.env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", nothing.display()),
    );
    let out = output(cmd);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    let report: Report = out.json();
    assert!(!report.ok);
    let c = report.by_name();
    assert_eq!(c["user-bus"].status, "fail", "{:?}", c["user-bus"]);
    assert!(c["user-bus"]
        .fix
        .as_deref()
        .unwrap()
        .contains("XDG_RUNTIME_DIR"));
    // What needs the manager is not checked; the rest still is.
    for name in [
        "systemd-version",
        "freezer",
        "restart-steps",
        "controllers",
        "daemon",
        "confinement",
    ] {
        assert_eq!(c[name].status, "skip", "{:?}", c[name]);
    }
    assert_eq!(c["index"].status, "ok");
    assert_eq!(c["cgroup-v2"].status, "ok");

    let mut cmd = env.command(&["doctor"]);
    cmd.env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", nothing.display()),
    );
    let out = output(cmd);
    assert_eq!(out.code, 5);
    assert!(out.stdout.contains("FAIL  user-bus"), "{}", out.stdout);
    assert!(
        out.stdout.contains("required check failed: user-bus"),
        "{}",
        out.stdout
    );
}

#[test]
fn doctor_fails_on_an_index_of_a_newer_format() {
    let env = Env::new();
    env.ok(&["list"]);
    std::fs::write(env.state_dir().join("format.json"), br#"{"format": 99}"#).unwrap();
    let out = env.cmd(&["doctor", "--json"]);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let report: Report = out.json();
    let index = report.by_name()["index"];
    assert_eq!(index.status, "fail");
    assert!(index
        .fix
        .as_deref()
        .unwrap()
        .contains("upgrade refine-proc"));
}

#[test]
fn doctor_reports_a_missing_state_directory_as_a_failed_index_check() {
    let _env = Env::new();
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["doctor", "--json"])
        .env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("REFINE_PROC_STATE_DIR");
    let out = output(cmd);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let report: Report = out.json();
    let c = report.by_name();
    assert_eq!(c["user-bus"].status, "ok");
    assert_eq!(c["index"].status, "fail");
    assert!(
        c["index"].detail.contains("HOME is not set"),
        "{:?}",
        c["index"]
    );
    assert!(c["index"].fix.as_deref().unwrap().contains("--state-dir"));
}

#[test]
fn doctor_says_which_situation_it_is_in_and_what_works_there() {
    let env = Env::new();
    let pid1 = std::fs::read_to_string("/proc/1/comm")
        .unwrap()
        .trim()
        .to_string();
    let sandbox = std::env::var("REFINE_PROC_SANDBOX").is_ok_and(|v| v == "1");
    let out = env.cmd(&["doctor", "--json"]);
    let raw: serde_json::Value = out.json();
    let s = &raw["situation"];
    assert_eq!(s["pid1"], pid1.as_str(), "{s}");
    assert_eq!(s["pid1_is_systemd"], pid1 == "systemd", "{s}");
    assert_eq!(s["user_manager"], true, "{s}");
    let kind = match (pid1 == "systemd", sandbox) {
        (true, _) => "session",
        (false, true) => "sandbox",
        (false, false) => "user-manager-without-systemd",
    };
    assert_eq!(s["kind"], kind, "{s}");
    let lingering = raw["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lingering")
        .unwrap();
    if pid1 != "systemd" {
        // No logind: its fix cannot work, so it is not offered.
        assert_eq!(lingering["status"], "skip", "{lingering}");
        assert!(lingering["fix"].is_null(), "{lingering}");
    }
    let text = env.ok(&["doctor"]).stdout;
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(&format!("situation: {kind}: ")),
        "{text}"
    );
    // Without a manager, and no systemd as PID 1: the way to try it anyway.
    let mut cmd = env.command(&["doctor", "--json"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let out = output(cmd);
    assert_eq!(out.code, 5);
    let raw: serde_json::Value = out.json();
    let bus = &raw["checks"][0];
    assert_eq!(raw["situation"]["user_manager"], false);
    if pid1 != "systemd" {
        assert_eq!(raw["situation"]["kind"], "no-systemd");
        assert!(
            bus["fix"]
                .as_str()
                .unwrap()
                .contains("sudo tests/sandbox/try"),
            "{bus}"
        );
    } else {
        assert_eq!(raw["situation"]["kind"], "no-user-manager");
    }
}
