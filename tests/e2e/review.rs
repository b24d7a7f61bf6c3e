//! Defects found in review, each reproduced against the real user manager.

use super::common::*;

fn freezer(unit: &str) -> String {
    show(unit, "FreezerState")
}

fn outcome_of(out: &Out, id: &str) -> String {
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
    assert_eq!(outcome_of(&again, &r.id), "was-paused");
    assert_eq!(freezer(&r.unit), "frozen");
    assert_eq!(
        env.status(&r.id).state,
        "paused",
        "status agrees with systemd"
    );
    assert_eq!(env.list(&[])[0].state, "paused", "list agrees with systemd");
    let resumed = env.ok(&["resume", "--json", "--owner", "agent"]);
    assert_eq!(outcome_of(&resumed, &r.id), "resumed");
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
