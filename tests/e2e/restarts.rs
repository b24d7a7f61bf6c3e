//! The view survives a restart of the user manager (logout without linger,
//! a crash, a reboot): exits stay recorded, and refine-proc works on.

use super::common::*;

#[test]
fn after_a_user_manager_restart_exits_are_kept_and_new_runs_work() {
    // Restarting the manager ends every session process: only in the
    // private test sandbox, which provides the script.
    let Some(restart) = std::env::var_os("REFINE_PROC_RESTART_MANAGER") else {
        skip("not in the test sandbox (REFINE_PROC_RESTART_MANAGER unset): no manager to restart");
        return;
    };
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let running = env.run(&[
        "--owner", "agent", "--label", "long job", "--", "sleep", "600",
    ]);
    let ended = env.run(&["--", "sh", "-c", "exit 4"]);
    wait_gone(&ended.unit);
    let out = output(std::process::Command::new(restart));
    assert_eq!(
        out.code, 0,
        "restart-user-manager: {}{}",
        out.stdout, out.stderr
    );
    // The manager stopped the running process on its way out; the exit hook
    // recorded that. The earlier exit is untouched.
    let s = env.status(&running.id);
    assert_eq!(
        (s.state.as_str(), s.exit_signal.as_deref()),
        ("stopped", Some("TERM"))
    );
    assert_eq!(show(&running.unit, "LoadState"), "not-found");
    let e = env.status(&ended.id);
    assert_eq!((e.state.as_str(), e.exit_code), ("failed", Some(4)));
    assert!(env.list(&[]).is_empty());
    assert_eq!(env.list(&["--all"]).len(), 2);
    // The new manager takes new work.
    let again = env.run(&["--", "sleep", "600"]);
    assert_eq!(env.status(&again.id).state, "running");
}

#[test]
fn resurrect_starts_again_only_the_persisted_processes_the_manager_took_down() {
    let Some(restart) = std::env::var_os("REFINE_PROC_RESTART_MANAGER") else {
        skip("not in the test sandbox (REFINE_PROC_RESTART_MANAGER unset): no manager to restart");
        return;
    };
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let kept = env.run(&[
        "--persist",
        "--owner",
        "target-app",
        "--label",
        "dev server",
        "--",
        "sleep",
        "600",
    ]);
    let stopped = env.run(&["--persist", "--", "sleep", "600"]);
    env.ok(&["stop", &stopped.id]);
    let finished = env.run(&["--persist", "--", "true"]);
    wait_gone(&finished.unit);
    let plain = env.run(&["--", "sleep", "600"]);
    // Nothing went down yet: nothing to do.
    let none: Vec<serde_json::Value> = env.ok(&["resurrect", "--json"]).json();
    assert!(none.is_empty(), "{none:?}");

    let out = output(std::process::Command::new(restart));
    assert_eq!(
        out.code, 0,
        "restart-user-manager: {}{}",
        out.stdout, out.stderr
    );
    let done: Vec<serde_json::Value> = env.ok(&["resurrect", "--json"]).json();
    assert_eq!(done.len(), 1, "only the persisted one taken down: {done:?}");
    assert_eq!(done[0]["from"], kept.id.as_str());
    assert_eq!(done[0]["outcome"], "started");
    let new_id = done[0]["record"]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, kept.id);
    let new: serde_json::Value = env.ok(&["status", "--json", &new_id]).json();
    assert_eq!(new["state"], "running");
    assert_eq!(new["resurrected_from"], kept.id.as_str());
    assert_eq!(new["label"], "dev server");
    assert_eq!(new["owner"], "target-app");
    assert_eq!(new["persist"], true);
    let old: serde_json::Value = env.ok(&["status", "--json", &kept.id]).json();
    assert_eq!(old["resurrected_as"], new_id.as_str());
    assert_eq!(old["state"], "stopped", "the old run keeps how it ended");
    for r in [&stopped, &finished, &plain] {
        assert!(env.status(&r.id).state != "running", "{} stays down", r.id);
    }
    // Once only.
    let again: Vec<serde_json::Value> = env.ok(&["resurrect", "--json"]).json();
    assert!(again.is_empty(), "{again:?}");
    assert!(env.ok(&["events"]).stdout.contains("resurrected"));
}
