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

fn outcomes(out: &Out) -> Vec<(String, String)> {
    let v: Vec<serde_json::Value> = out.json();
    v.iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn outcome_of(list: &[(String, String)], id: &str) -> String {
    list.iter()
        .find(|(i, _)| i == id)
        .map(|(_, o)| o.clone())
        .unwrap_or_else(|| panic!("{id} not in {list:?}"))
}

#[test]
fn pause_all_freezes_agents_stops_background_work_and_resume_brings_back_exactly_that() {
    let env = Env::new();
    let agent = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let import = env.run(&["--owner", "import", "--", "sleep", "600"]);
    let app = env.run(&["--owner", "target-app", "--", "sleep", "600"]);
    let out = env.ok(&["pause", "--all", "--json"]);
    let done = outcomes(&out);
    assert_eq!(outcome_of(&done, &agent.id), "paused");
    assert_eq!(outcome_of(&done, &import.id), "stopped-until-resume");
    assert_eq!(outcome_of(&done, &app.id), "keeps-running");
    assert_eq!(freezer(&agent.unit), "frozen");
    assert_eq!(show(&app.unit, "ActiveState"), "active");
    assert_eq!(freezer(&app.unit), "running");
    wait_gone(&import.unit);
    assert_eq!(env.status(&import.id).state, "stopped");

    // A later invocation knows: the pause is listed, and runs it holds are
    // refused with the way out, or queued on request.
    let pauses: serde_json::Value = env.ok(&["pause", "--list", "--json"]).json();
    assert_eq!(pauses["active"][0]["selector"], "all");
    assert_eq!(pauses["active"][0]["stopped"][0], import.id.as_str());
    let refused = env.cmd(&["run", "--owner", "agent", "--", "sleep", "600"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("owner agent is paused")
            && refused.stderr.contains("resume --all")
            && refused.stderr.contains("--queue"),
        "{}",
        refused.stderr
    );
    let queued: Rec = env
        .ok(&[
            "run", "--json", "--queue", "--owner", "quality", "--", "sleep", "600",
        ])
        .json();
    assert_eq!(queued.state, "queued");
    assert!(queued.started_at.is_none());
    assert_eq!(
        show(&queued.unit, "LoadState"),
        "not-found",
        "nothing started"
    );
    let listed = env.list(&[]);
    assert!(listed
        .iter()
        .any(|r| r.id == queued.id && r.state == "queued"));
    // Owners that keep running are not held.
    env.run(&["--owner", "user-helper", "--", "sleep", "600"]);

    let out = env.ok(&["resume", "--all", "--json"]);
    let done = outcomes(&out);
    assert_eq!(outcome_of(&done, &agent.id), "resumed");
    assert_eq!(outcome_of(&done, &import.id), "started-again");
    assert_eq!(outcome_of(&done, &queued.id), "started-from-queue");
    assert_eq!(freezer(&agent.unit), "running");
    for id in [&agent.id, &import.id, &queued.id, &app.id] {
        assert_eq!(env.status(id).state, "running", "{id}");
    }
    let pauses: serde_json::Value = env.ok(&["pause", "--list", "--json"]).json();
    assert_eq!(pauses, serde_json::json!({"active": [], "queued": []}));
    // The import ran twice under one id: one ended run, one running.
    let import_now = env.status(&import.id);
    assert_eq!(import_now.restart.count, 1);
    env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let events = env.ok(&["events", "--json"]).stdout;
    assert!(events.contains("\"queued\""), "{events}");
}

#[test]
fn an_owner_pause_persists_and_holds_runs_and_restarts_until_its_resume() {
    let env = Env::new();
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", "exit 3"]);
    wait_gone(&agent.unit);
    env.ok(&["pause", "--owner", "agent"]);
    let refused = env.cmd(&["run", "--owner", "agent", "--", "sleep", "600"]);
    assert_eq!(refused.code, 4);
    assert!(
        refused.stderr.contains("resume --owner agent"),
        "{}",
        refused.stderr
    );
    let restart = env.cmd(&["restart", &agent.id]);
    assert_eq!(restart.code, 4, "{}", restart.stderr);
    // Another owner, and a workflow pause holding a run of another owner.
    env.run(&["--owner", "quality", "--", "sleep", "600"]);
    env.ok(&["pause", "--workflow", "wf-9"]);
    let held = env.cmd(&[
        "run",
        "--owner",
        "daemon",
        "--workflow",
        "wf-9",
        "--",
        "true",
    ]);
    assert_eq!(held.code, 4);
    assert!(
        held.stderr.contains("workflow wf-9 is paused"),
        "{}",
        held.stderr
    );
    env.ok(&["resume", "--workflow", "wf-9"]);
    env.ok(&["resume", "--owner", "agent"]);
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    assert_eq!(r.state, "running");
    let events = env.ok(&["events", "--json"]).stdout;
    assert!(events.contains("\"refused\""), "{events}");
}

#[test]
fn the_pause_policy_comes_from_the_policy_file() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[pause_all]\nfreeze = [\"agent\", \"quality\"]\nstop = []\n",
    )
    .unwrap();
    let q = env.run(&["--owner", "quality", "--", "sleep", "600"]);
    let i = env.run(&["--owner", "import", "--", "sleep", "600"]);
    let done = outcomes(&env.ok(&["pause", "--all", "--json"]));
    assert_eq!(outcome_of(&done, &q.id), "paused");
    assert_eq!(outcome_of(&done, &i.id), "keeps-running");
    let shown = env.ok(&["policy", "show", "--json"]).stdout;
    assert!(shown.contains("\"keep_running\""), "{shown}");
    env.ok(&["resume", "--all"]);
    assert_eq!(freezer(&q.unit), "running");
}

#[test]
fn kill_and_restart_of_a_paused_process_say_what_they_did() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    env.ok(&["pause", &r.id]);
    let out = outcomes(&env.ok(&["kill", "--json", "-s", "USR1", &r.id]));
    assert_eq!(out[0].1, "signalled-delivered-on-resume");
    let out = outcomes(&env.ok(&["restart", "--json", &r.id]));
    assert_eq!(out[0].1, "restarted-unpaused");
    assert_eq!(freezer(&r.unit), "running");
    assert_eq!(env.status(&r.id).state, "running");
}

fn outcome_in(out: &Out, id: &str) -> String {
    let v: Vec<serde_json::Value> = out.json();
    v.iter()
        .find(|o| o["id"] == id)
        .and_then(|o| o["outcome"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("{id} not in {}", out.stdout))
}

/// A second `pause --owner agent` (the same group, already in force) must
/// not make the group forget what its first one froze: `list` and
/// `status` would show frozen processes as running, and `resume --owner
/// agent` would leave them frozen for good.
#[test]
fn pausing_a_group_twice_keeps_what_it_froze() {
    let env = Env::new();
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    env.ok(&["pause", "--owner", "agent"]);
    assert_eq!(freezer(&r.unit), "frozen");
    let again = env.ok(&["pause", "--json", "--owner", "agent"]);
    assert_eq!(outcome_in(&again, &r.id), "was-paused");
    assert_eq!(freezer(&r.unit), "frozen");
    assert_eq!(
        env.status(&r.id).state,
        "paused",
        "status agrees with systemd"
    );
    assert_eq!(env.list(&[])[0].state, "paused", "list agrees with systemd");
    let resumed = env.ok(&["resume", "--json", "--owner", "agent"]);
    assert_eq!(outcome_in(&resumed, &r.id), "resumed");
    assert_eq!(freezer(&r.unit), "running");
}

/// `stop` of a queued run answers `was-not-running` yet leaves it queued:
/// the group's resume then starts the run the user just stopped.
#[test]
fn a_stopped_queued_run_is_not_started_on_resume() {
    let env = Env::new();
    env.ok(&["pause", "--owner", "agent"]);
    let q: Rec = env
        .ok(&[
            "run", "--json", "--queue", "--owner", "agent", "--", "sleep", "600",
        ])
        .json();
    assert_eq!(q.state, "queued");
    env.ok(&["stop", &q.id]);
    env.ok(&["resume", "--owner", "agent"]);
    assert_eq!(
        show(&q.unit, "LoadState"),
        "not-found",
        "the stopped queued run was started: {:?}",
        env.status(&q.id).state
    );
}

#[test]
fn resuming_one_group_leaves_frozen_what_another_pause_still_holds() {
    let env = Env::new();
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    env.ok(&["pause", "--owner", "agent"]);
    let all = env.ok(&["pause", "--all", "--json"]);
    assert_eq!(outcome_in(&all, &r.id), "was-paused");
    // pause --all still holds agents: the agent stays frozen, now by it.
    let resumed = env.ok(&["resume", "--owner", "agent", "--json"]);
    assert_eq!(outcome_in(&resumed, &r.id), "stays-paused");
    assert_eq!(freezer(&r.unit), "frozen");
    assert_eq!(env.status(&r.id).state, "paused");
    let pauses: serde_json::Value = env.ok(&["pause", "--list", "--json"]).json();
    assert_eq!(pauses["active"][0]["selector"], "all");
    assert_eq!(pauses["active"][0]["frozen"][0], r.id.as_str());
    let out = env.ok(&["resume", "--all", "--json"]);
    assert_eq!(outcome_in(&out, &r.id), "resumed");
    assert_eq!(freezer(&r.unit), "running");
    // A queued run is neither paused nor resumed by id.
    env.ok(&["pause", "--owner", "agent"]);
    let q: Rec = env
        .ok(&[
            "run", "--json", "--queue", "--owner", "agent", "--", "sleep", "600",
        ])
        .json();
    let by_id = env.ok(&["resume", "--json", &q.id]);
    assert_eq!(outcome_in(&by_id, &q.id), "is-queued");
    env.ok(&["resume", "--owner", "agent"]);
    assert_eq!(env.status(&q.id).state, "running");
}
