//! Pause and resume through the cgroup freezer: systemd agrees, list shows
//! it, and resume restores exactly what pause did.

use super::common::*;

fn freezer(unit: &str) -> String {
    show(unit, "FreezerState")
}

#[test]
fn pause_freezes_and_resume_thaws_and_systemd_agrees() {
    let env = Env::new();
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let out: Vec<serde_json::Value> = env.ok(&["pause", "--json", &r.id]).json();
    assert_eq!(
        (out[0]["outcome"].as_str(), out[0]["state"].as_str()),
        (Some("paused"), Some("paused"))
    );
    assert_eq!(freezer(&r.unit), "frozen");
    assert_eq!(env.status(&r.id).state, "paused");
    // list reads no freezer state from systemd: the record says it.
    let listed = env.list(&[]);
    assert_eq!(listed[0].state, "paused");
    assert_eq!(env.list(&["--state", "paused"]).len(), 1);
    // Pausing again says so and changes nothing.
    let again: Vec<serde_json::Value> = env.ok(&["pause", "--json", &r.id]).json();
    assert_eq!(again[0]["outcome"], "was-paused");
    env.ok(&["resume", &r.id]);
    assert_eq!(freezer(&r.unit), "running");
    assert_eq!(env.status(&r.id).state, "running");
    assert_eq!(env.list(&[])[0].state, "running");
}

#[test]
fn a_group_resume_leaves_a_process_paused_on_its_own() {
    let env = Env::new();
    let alone = env.run(&[
        "--owner",
        "agent",
        "--label",
        "paused alone",
        "--",
        "sleep",
        "600",
    ]);
    let other = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let helper = env.run(&["--owner", "user-helper", "--", "sleep", "600"]);
    env.ok(&["pause", &alone.id]);
    let paused: Vec<serde_json::Value> = env.ok(&["pause", "--json", "--owner", "agent"]).json();
    assert_eq!(paused.len(), 2);
    assert_eq!(freezer(&other.unit), "frozen");
    assert_eq!(
        freezer(&helper.unit),
        "running",
        "another owner is untouched"
    );
    let resumed: Vec<serde_json::Value> = env.ok(&["resume", "--json", "--owner", "agent"]).json();
    let outcome = |id: &str| {
        resumed
            .iter()
            .find(|o| o["id"] == id)
            .map(|o| o["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome(&other.id).as_deref(), Some("resumed"));
    assert_eq!(outcome(&alone.id).as_deref(), Some("stays-paused"));
    assert_eq!(freezer(&other.unit), "running");
    assert_eq!(freezer(&alone.unit), "frozen");
    // Resuming it by id thaws it.
    env.ok(&["resume", &alone.id]);
    assert_eq!(freezer(&alone.unit), "running");
}

#[test]
fn a_paused_process_can_be_stopped_and_nothing_is_selected_by_accident() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    env.ok(&["pause", &r.id]);
    let out = env.ok(&["stop", &r.id]);
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
    let s = env.status(&r.id);
    assert_eq!(s.state, "stopped");
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert!(
        raw.get("paused_by").is_none(),
        "an ended process is not paused: {raw}"
    );
    let out = env.cmd(&["pause"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nothing to act on"), "{}", out.stderr);
}
