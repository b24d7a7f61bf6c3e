//! Group stops (`stop --owner/--workflow/--session/--all`, `stop --tree`)
//! and the reach a managed caller needs for any group action.

use super::common::*;

/// A shell script for a managed process that calls refine-proc itself.
fn nested(script: &str) -> String {
    format!("R='{}'; {script}", binary().display())
}

#[test]
fn stop_of_a_workflow_stops_each_of_its_processes_and_nothing_else() {
    let env = Env::new();
    let a = env.run(&["--workflow", "wf-stop", "--", "sleep", "600"]);
    let b = env.run(&[
        "--workflow",
        "wf-stop",
        "--owner",
        "quality",
        "--",
        "sleep",
        "600",
    ]);
    let other = env.run(&["--workflow", "wf-other", "--", "sleep", "600"]);
    let out: serde_json::Value = env.ok(&["stop", "--workflow", "wf-stop", "--json"]).json();
    let stopped: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(stopped.len(), 2, "{out}");
    assert!(stopped.contains(&a.id.as_str()) && stopped.contains(&b.id.as_str()));
    assert_eq!(env.status(&a.id).state, "stopped");
    assert_eq!(env.status(&b.id).state, "stopped");
    assert_eq!(env.status(&other.id).state, "running");
    // --all takes the rest; nothing to act on is a usage error.
    env.ok(&["stop", "--all"]);
    assert_eq!(env.status(&other.id).state, "stopped");
    assert_eq!(env.cmd(&["stop"]).code, 2);
}

#[test]
fn stop_tree_stops_the_children_a_process_launched() {
    let env = Env::new();
    let parent = env.run(&[
        "--owner",
        "agent",
        "--label",
        "parent",
        "--",
        "sh",
        "-c",
        &nested(r#""$R" run --json --label child -- sleep 600 > child.json; exec sleep 600"#),
    ]);
    let child_file = env.work_dir().join("child.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let child: Rec = loop {
        if let Ok(text) = std::fs::read_to_string(&child_file) {
            if let Ok(c) = serde_json::from_str(&text) {
                break c;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Without --tree only the parent goes.
    let lone = env.run(&["--", "sleep", "600"]);
    env.ok(&["stop", "--tree", &parent.id]);
    assert_eq!(env.status(&parent.id).state, "stopped");
    assert_eq!(env.status(&child.id).state, "stopped");
    assert_eq!(env.status(&lone.id).state, "running");
    env.ok(&["stop", &lone.id]);
}

#[test]
fn an_agent_in_a_new_cgroup_namespace_is_still_the_agent() {
    let env = Env::new();
    let victim = env.run(&["--label", "a person's", "--", "sleep", "600"]);
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &nested(&format!(
            r#"unshare --user --map-current-user --cgroup cat /proc/self/cgroup > cg.txt 2>&1;
               unshare --user --map-current-user --cgroup "$R" stop {v} 2> err.txt; echo $? > rc.txt;
               unshare --user --map-current-user --pid --fork --cgroup "$R" stop {v} 2> err2.txt; echo $? > rc2.txt"#,
            v = victim.id
        )),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    // The namespace did hide the agent's cgroup from itself ...
    let cg = read("cg.txt");
    assert_eq!(
        cg.lines().find(|l| l.starts_with("0::")),
        Some("0::/"),
        "unshare failed: {cg}"
    );
    // ... and refine-proc still knew it for the agent (systemd's view).
    assert_eq!(read("rc.txt").trim(), "7", "{}", read("err.txt"));
    assert!(
        read("err.txt").contains("only its own descendants"),
        "{}",
        read("err.txt")
    );
    assert_eq!(read("rc2.txt").trim(), "7", "{}", read("err2.txt"));
    assert_eq!(env.status(&victim.id).state, "running");
    env.ok(&["stop", &victim.id]);
}

#[test]
fn an_agent_may_not_pause_all_nor_freeze_itself() {
    let env = Env::new();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" pause --all 2> err.txt; echo $? > rc.txt;
               "$R" stop --owner quality 2> err2.txt; echo $? > rc2.txt;
               "$R" pause "$REFINE_ID" 2> err3.txt; echo $? > rc3.txt"#,
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "7", "{}", read("err.txt"));
    assert!(read("err.txt").contains("act_on"), "{}", read("err.txt"));
    assert_eq!(read("rc2.txt").trim(), "7", "{}", read("err2.txt"));
    assert_ne!(read("rc3.txt").trim(), "0", "{}", read("err3.txt"));
    // No pause was recorded: a person's quality run is not held.
    let pauses: serde_json::Value = env.ok(&["pause", "--list", "--json"]).json();
    assert_eq!(
        pauses["active"].as_array().map(|a| a.len()),
        Some(0),
        "{pauses}"
    );
    let q = env.run(&["--owner", "quality", "--", "sleep", "600"]);
    assert_eq!(q.state, "running");
    env.ok(&["stop", &q.id]);
}
