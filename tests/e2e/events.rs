//! The event history: every lifecycle transition, with who caused it.

use super::common::*;

fn events(env: &Env, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["events", "--json"];
    all.extend_from_slice(args);
    env.ok(&all)
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_run_that_fails_leaves_started_and_failed_with_the_exit() {
    let env = Env::new();
    let r = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "wf-e",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    wait_gone(&r.unit);
    let history = events(&env, &["--id", &r.id]);
    assert_eq!(kinds(&history), vec!["started", "failed"]);
    assert_eq!(history[0]["actor"], "person");
    assert_eq!(history[0]["owner"], "agent");
    assert_eq!(history[0]["workflow"], "wf-e");
    assert_eq!(history[1]["actor"], "systemd");
    assert_eq!(history[1]["exit_code"], 3);
    assert_eq!(history[1]["result"], "exit-code");
}

#[test]
fn pause_resume_kill_and_the_end_are_in_the_history_in_order() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    env.ok(&["pause", &r.id]);
    env.ok(&["resume", &r.id]);
    env.ok(&["kill", "--signal", "KILL", &r.id]);
    wait_gone(&r.unit);
    let history = events(&env, &["--id", &r.id]);
    assert_eq!(
        kinds(&history),
        vec!["started", "paused", "resumed", "killed", "stopped"]
    );
    assert_eq!(history[1]["by"], "id");
    assert_eq!(history[3]["signal"], 9);
    assert_eq!(history[4]["exit_signal"], "KILL");
    // Filters and the table for people.
    let other = env.run(&["--owner", "quality", "--", "true"]);
    wait_gone(&other.unit);
    assert_eq!(
        kinds(&events(&env, &["--owner", "quality"])),
        vec!["started", "exited"]
    );
    assert_eq!(kinds(&events(&env, &["-n", "1"])), vec!["exited"]);
    let table = env.ok(&["events"]).stdout;
    assert!(
        table.contains("TIME") && table.contains("paused") && table.contains(&r.id),
        "{table}"
    );
}
