//! Limits at start and at run time (per process and per owner slice), what
//! systemd reports for them, usage read from cgroups, and OOM kills.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::common::*;

/// The controllers a cgroup has (`cgroup.controllers`), as this process
/// sees the cgroup2 tree.
fn controllers(cgroup: &str) -> BTreeSet<String> {
    let path = format!("/sys/fs/cgroup{cgroup}/cgroup.controllers");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn parent(cgroup: &str) -> &str {
    cgroup.rsplit_once('/').map(|(p, _)| p).unwrap_or("/")
}

/// Resets an owner slice's limits when a test ends, pass or fail: the user
/// manager (maybe a real desktop's) outlives the test.
struct ResetOwner<'a>(&'a Env, &'a str);

impl Drop for ResetOwner<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd(&[
            "set",
            "--owner",
            self.1,
            "--memory-max",
            "infinity",
            "--memory-high",
            "infinity",
            "--cpu-quota",
            "infinity",
            "--cpu-weight",
            "infinity",
        ]);
    }
}

#[test]
fn limits_given_at_start_reach_systemd_and_the_record() {
    let env = Env::new();
    let r = env.run(&[
        "--memory-max",
        "64M",
        "--memory-high",
        "48M",
        "--cpu-quota",
        "50%",
        "--cpu-weight",
        "50",
        "--tasks-max",
        "10",
        "--timeout-stop",
        "5s",
        "--runtime-max",
        "1h",
        "--",
        "sleep",
        "600",
    ]);
    let l = &r.limits;
    assert_eq!(
        (l.memory_max, l.memory_high),
        (Some(64 << 20), Some(48 << 20))
    );
    assert_eq!((l.cpu_quota_percent, l.cpu_weight), (Some(50), Some(50)));
    assert_eq!((l.tasks_max, l.timeout_stop_sec), (Some(10), Some(5)));
    assert_eq!(show(&r.unit, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(show(&r.unit, "MemoryHigh"), (48u64 << 20).to_string());
    assert_eq!(show(&r.unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show(&r.unit, "CPUWeight"), "50");
    assert_eq!(show(&r.unit, "TasksMax"), "10");
    assert_eq!(show(&r.unit, "TimeoutStopUSec"), "5s");
    let s = env.status(&r.id);
    assert_eq!(s.limits.cpu_weight, Some(50));
    let text = env.ok(&["status", &r.id]).stdout;
    assert!(
        text.contains("memory high 48M") && text.contains("stop timeout 5s"),
        "{text}"
    );
    // Without flags nothing is sent: systemd keeps its defaults.
    let plain = env.run(&["--", "sleep", "600"]);
    assert_eq!(show(&plain.unit, "MemoryHigh"), "infinity");
    assert_eq!(show(&plain.unit, "CPUWeight"), "[not set]");
    assert_eq!(plain.limits.memory_high, None);
}

#[test]
fn set_changes_a_running_process_in_systemd_and_in_the_record() {
    let env = Env::new();
    let r = env.run(&["--memory-max", "64M", "--", "sleep", "600"]);
    let changed: Rec = env
        .ok(&[
            "set",
            "--json",
            &r.id[..5],
            "--memory-max",
            "128M",
            "--memory-high",
            "96M",
            "--cpu-quota",
            "150%",
            "--cpu-weight",
            "200",
            "--tasks-max",
            "20",
        ])
        .json();
    assert_eq!(
        (changed.id.as_str(), changed.state.as_str()),
        (r.id.as_str(), "running")
    );
    // What systemd reports, what the record says and what status shows agree.
    let recorded = env.status(&r.id).limits;
    let from_set = &changed.limits;
    for l in [&recorded, from_set] {
        assert_eq!(
            (l.memory_max, l.memory_high),
            (Some(128 << 20), Some(96 << 20))
        );
        assert_eq!((l.cpu_quota_percent, l.cpu_weight), (Some(150), Some(200)));
        assert_eq!(l.tasks_max, Some(20));
    }
    assert_eq!(show(&r.unit, "MemoryMax"), (128u64 << 20).to_string());
    assert_eq!(show(&r.unit, "MemoryHigh"), (96u64 << 20).to_string());
    assert_eq!(show(&r.unit, "CPUQuotaPerSecUSec"), "1.500000s");
    assert_eq!(show(&r.unit, "CPUWeight"), "200");
    assert_eq!(show(&r.unit, "TasksMax"), "20");
    // The record on disk, not only the output, holds them.
    let on_disk: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state_dir().join(format!("records/{}.json", r.id))).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["limits"]["cpu_weight"], 200);

    // infinity clears: systemd has no limit, the record null.
    let out = env.ok(&[
        "set",
        &r.unit,
        "--memory-max",
        "infinity",
        "--cpu-quota",
        "infinity",
        "--cpu-weight",
        "infinity",
    ]);
    assert!(out.stdout.contains("limits now"), "{}", out.stdout);
    let l = env.status(&r.id).limits;
    assert_eq!(
        (l.memory_max, l.cpu_quota_percent, l.cpu_weight),
        (None, None, None)
    );
    assert_eq!(
        (l.memory_high, l.tasks_max),
        (Some(96 << 20), Some(20)),
        "untouched"
    );
    assert_eq!(show(&r.unit, "MemoryMax"), "infinity");
    assert_eq!(show(&r.unit, "CPUQuotaPerSecUSec"), "infinity");
    assert_eq!(show(&r.unit, "CPUWeight"), "[not set]");
    assert_eq!(show(&r.unit, "MemoryHigh"), (96u64 << 20).to_string());
}

#[test]
fn set_owner_limits_the_owner_slice_and_records_them_in_the_index() {
    let env = Env::new();
    let _reset = ResetOwner(&env, "agent");
    let a = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let out: serde_json::Value = env
        .ok(&[
            "set",
            "--json",
            "--owner",
            "agent",
            "--memory-max",
            "8G",
            "--cpu-weight",
            "300",
        ])
        .json();
    assert_eq!(out["slice"], "refine-agent.slice");
    assert_eq!(out["limits"]["memory_max"], 8u64 << 30);
    assert_eq!(
        show("refine-agent.slice", "MemoryMax"),
        (8u64 << 30).to_string()
    );
    assert_eq!(show("refine-agent.slice", "CPUWeight"), "300");
    // The process's own limits are untouched; the slice bounds it.
    assert_eq!(show(&a.unit, "MemoryMax"), "infinity");
    assert_eq!(show(&a.unit, "Slice"), "refine-agent.slice");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("owners/agent.json")).unwrap())
            .unwrap();
    assert_eq!(stored["limits"]["memory_max"], 8u64 << 30);
    assert_eq!(stored["limits"]["cpu_weight"], 300);

    // A second change keeps the first; infinity clears.
    env.ok(&["set", "--owner", "agent", "--memory-max", "infinity"]);
    assert_eq!(show("refine-agent.slice", "MemoryMax"), "infinity");
    assert_eq!(show("refine-agent.slice", "CPUWeight"), "300");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("owners/agent.json")).unwrap())
            .unwrap();
    assert_eq!(stored["limits"]["memory_max"], serde_json::Value::Null);
    assert_eq!(stored["limits"]["cpu_weight"], 300);
}

#[test]
fn set_owner_works_before_any_process_of_the_owner_runs_and_escapes_dashes() {
    let env = Env::new();
    let _reset = ResetOwner(&env, "target-app");
    let slice = "refine-target\\x2dapp.slice";
    let text = env
        .ok(&["set", "--owner", "target-app", "--memory-high", "3G"])
        .stdout;
    assert!(text.contains(slice), "{text}");
    assert_eq!(show(slice, "MemoryHigh"), (3u64 << 30).to_string());
    // A process started afterwards runs in the limited slice.
    let r = env.run(&["--owner", "target-app", "--", "sleep", "600"]);
    assert_eq!(show(&r.unit, "Slice"), slice);
    assert_eq!(show(slice, "MemoryHigh"), (3u64 << 30).to_string());
    assert_eq!(show(slice, "ActiveState"), "active");
}

#[test]
fn invalid_limits_exit_2_before_anything_changes() {
    let env = Env::new();
    let r = env.run(&["--memory-max", "64M", "--", "sleep", "600"]);
    let cases: &[(&[&str], &str)] = &[
        (&["set", &r.id], "--memory-max"),
        (&["set", &r.id, "--memory-max", "lots"], "infinity"),
        (
            &["set", &r.id, "--memory-max", "128M", "--cpu-weight", "0"],
            "10000",
        ),
        (&["set", &r.id, "--cpu-weight", "10001"], "10000"),
        (&["set", &r.id, "--cpu-quota", "0%"], "percentage"),
        (&["set", &r.id, "--tasks-max", "0"], "at least 1"),
        (
            &["set", "--owner", "robot", "--memory-max", "1G"],
            "unknown owner",
        ),
        (
            &["set", &r.id, "--owner", "agent", "--memory-max", "1G"],
            "cannot be used",
        ),
        (&["run", "--cpu-weight", "0", "--", "true"], "10000"),
        (&["run", "--memory-high", "x", "--", "true"], "512M"),
        (&["run", "--timeout-stop", "soon", "--", "true"], "30s"),
    ];
    for (args, needle) in cases {
        let out = env.cmd(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    // Nothing changed, in systemd or in the record, and nothing started.
    assert_eq!(show(&r.unit, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(show(&r.unit, "CPUWeight"), "[not set]");
    assert_eq!(env.status(&r.id).limits.memory_max, Some(64 << 20));
    assert_eq!(env.list(&["--all"]).len(), 1);
    assert!(!env.state_dir().join("owners").exists());
}

#[test]
fn set_on_an_ended_process_is_refused_and_on_an_unknown_one_not_found() {
    let env = Env::new();
    let r = env.run(&["--", "true"]);
    wait_gone(&r.unit);
    let out = env.cmd(&["set", &r.id, "--memory-max", "1G"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("not running") && out.stderr.contains("refine-proc restart"),
        "{}",
        out.stderr
    );
    assert_eq!(env.status(&r.id).limits.memory_max, None);
    let out = env.cmd(&["set", "zzzzzzzz", "--memory-max", "1G"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[test]
fn usage_shows_cpu_time_and_memory_and_tasks_or_why_not() {
    let env = Env::new();
    let r = env.run(&[
        "--runtime-max",
        "60s",
        "--label",
        "busy",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = env.status(&r.id);
        if s.usage.as_ref().and_then(|u| u.cpu_usec).unwrap_or(0) > 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "no CPU time seen: {:?}", s.usage);
        std::thread::sleep(Duration::from_millis(50));
    };
    let usage = status.usage.unwrap();
    let listed = env.list(&[]);
    let listed_usage = listed[0].usage.clone().expect("usage in list");
    assert!(listed_usage.cpu_usec.unwrap() >= usage.cpu_usec.unwrap());

    // Memory and tasks: numbers where the unit's cgroup has the controller,
    // else null with a reason; never a made-up zero.
    let cgroup = show(&r.unit, "ControlGroup");
    let have = controllers(&cgroup);
    for u in [&usage, &listed_usage] {
        if have.contains("memory") {
            assert!(u.memory_current.unwrap() > 0, "{u:?}");
            assert!(!u.unavailable.contains_key("memory"), "{u:?}");
        } else {
            assert_eq!((u.memory_current, u.memory_peak), (None, None), "{u:?}");
            assert!(!u.unavailable["memory"].is_empty(), "{u:?}");
            if !controllers(parent(&cgroup)).contains("memory") {
                eprintln!("memory controller absent here: {}", u.unavailable["memory"]);
            }
        }
        if have.contains("pids") {
            assert!(u.tasks.unwrap() >= 1, "{u:?}");
        } else {
            assert_eq!(u.tasks, None, "{u:?}");
            assert!(!u.unavailable["pids"].is_empty(), "{u:?}");
        }
    }
    let text = env.ok(&["status", &r.id]).stdout;
    assert!(
        text.contains("cpu time: ") && text.contains("memory: "),
        "{text}"
    );
    if !have.contains("memory") {
        assert!(text.contains("unavailable: "), "{text}");
    }
    let table = env.ok(&["list"]).stdout;
    for header in ["CPU", "MEM"] {
        assert!(table.contains(header), "{table}");
    }

    // An ended process uses nothing, and says so with null.
    env.ok(&["stop", &r.id]);
    let ended: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(ended["usage"], serde_json::Value::Null);
    let all: Vec<serde_json::Value> = env.ok(&["list", "--all", "--json"]).json();
    assert_eq!(all[0]["usage"], serde_json::Value::Null);
}

#[test]
fn an_oom_kill_is_recorded_as_oom_kill() {
    let env = Env::new();
    // The hog waits for a go-ahead, so swap can be ruled out first.
    let r = env.run(&[
        "--memory-max",
        "32M",
        "--runtime-max",
        "60s",
        "--label",
        "memory hog",
        "--",
        "sh",
        "-c",
        "while [ ! -e go ]; do sleep 0.05; done; exec tail /dev/zero",
    ]);
    // What systemd reports holds everywhere.
    assert_eq!(show(&r.unit, "MemoryMax"), "33554432");
    assert_eq!(r.limits.memory_max, Some(32 << 20));
    let cgroup = show(&r.unit, "ControlGroup");
    let parent = parent(&cgroup);
    if !controllers(parent).contains("memory") {
        skip(&format!(
            "the memory controller is not available to {parent} (not delegated to \
             the user manager), so MemoryMax=32M is reported but not enforced and the OOM kill \
             cannot be checked here"
        ));
        env.ok(&["stop", &r.id]);
        return;
    }
    // Without swap the hog hits MemoryMax at once instead of swapping.
    let _ = systemctl(&["set-property", "--runtime", &r.unit, "MemorySwapMax=0"]);
    std::fs::write(env.work_dir().join("go"), b"").unwrap();
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(
        (s.state.as_str(), s.result.as_deref()),
        ("failed", Some("oom-kill")),
        "{s:?}"
    );
}
