//! Ownership and bounded power: provenance found from the cgroup, children
//! inheriting context, and a policy that refuses with the rule's name.

use super::common::*;

/// A shell script for a managed process that calls refine-proc itself
/// (the binary by absolute path: units run with the manager's PATH).
fn nested(script: &str) -> String {
    format!("R='{}'; {script}", binary().display())
}

#[test]
fn an_agent_launching_a_child_records_provenance_and_passes_on_its_context() {
    let env = Env::new();
    let parent = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "wf-7",
        "--session",
        "s9",
        "--label",
        "planner",
        "--",
        "sh",
        "-c",
        &nested(r#""$R" run --json --label child -- sleep 600 > child.json"#),
    ]);
    wait_gone(&parent.unit);
    let child: Rec = serde_json::from_str(
        &std::fs::read_to_string(env.work_dir().join("child.json")).expect("the child was started"),
    )
    .unwrap();
    let raw: serde_json::Value = env.ok(&["status", "--json", &child.id]).json();
    assert_eq!(raw["requested_by"]["parent"], parent.id.as_str());
    assert_eq!(raw["requested_by"]["acting_owner"], "agent");
    assert!(raw["requested_by"]["uid"].is_u64());
    // The child defaults to its parent's owner and workflow context.
    assert_eq!(child.owner, "agent");
    assert_eq!(child.metadata.workflow.as_deref(), Some("wf-7"));
    assert_eq!(child.metadata.session.as_deref(), Some("s9"));
    // A person's launch names no parent.
    let by_person: serde_json::Value = env.ok(&["status", "--json", &parent.id]).json();
    assert!(by_person["requested_by"]["parent"].is_null());
    assert!(by_person["requested_by"]["acting_owner"].is_null());
    // The tree shows the child under its parent.
    let tree = env.ok(&["list", "--all", "--tree"]).stdout;
    let parent_line = tree.lines().position(|l| l.contains(&parent.id)).unwrap();
    let child_line = tree.lines().position(|l| l.contains(&child.id)).unwrap();
    assert_eq!(child_line, parent_line + 1, "{tree}");
    assert!(
        tree.lines().nth(child_line).unwrap().contains("└─ child"),
        "{tree}"
    );
}

#[test]
fn a_managed_launch_never_gets_the_record_run_prepares_for_a_person() {
    // `run` writes a person's record unnamed while the bus says who asks;
    // for an agent that guess is wrong, and its child must be recorded as
    // the agent's, once, with nothing left of the guess.
    let env = Env::new();
    let parent = env.run(&[
        "--owner",
        "agent",
        "--label",
        "guesser",
        "--",
        "sh",
        "-c",
        &nested(r#""$R" run --json --label guessed -- sleep 600 > child.json"#),
    ]);
    wait_gone(&parent.unit);
    let all: Vec<serde_json::Value> = env.ok(&["list", "--all", "--json"]).json();
    let children: Vec<&serde_json::Value> =
        all.iter().filter(|r| r["label"] == "guessed").collect();
    assert_eq!(children.len(), 1, "{children:#?}");
    let child = children[0];
    assert_eq!(
        child["requested_by"]["parent"],
        parent.id.as_str(),
        "{child:#}"
    );
    assert_eq!(child["requested_by"]["acting_owner"], "agent", "{child:#}");
    assert_eq!(child["owner"], "agent", "{child:#}");
    let records = std::fs::read_dir(env.state_dir().join("records")).unwrap();
    let stray: Vec<String> = records
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json") || n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_policy_refuses_a_command_names_the_rule_and_cannot_be_swapped_by_the_agent() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/sleep\", \"/bin/sleep\"]\n",
    )
    .unwrap();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" run -- true 2> err.txt; echo $? > rc.txt;
               REFINE_PROC_POLICY=/dev/null "$R" run -- true 2> err2.txt; echo $? > rc2.txt;
               "$R" run --json -- sleep 600 > allowed.json"#,
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "7");
    let err = read("err.txt");
    assert!(
        err.contains("refused by policy") && err.contains("may not run /usr/bin/true"),
        "{err}"
    );
    assert!(
        err.contains("rule commands") && err.contains("policy.toml"),
        "{err}"
    );
    assert_eq!(
        read("rc2.txt").trim(),
        "7",
        "the agent swapped its policy: {}",
        read("err2.txt")
    );
    let allowed: Rec = serde_json::from_str(&read("allowed.json")).unwrap();
    assert_eq!(allowed.state, "running");
    // Refusals are recorded.
    let events = std::fs::read_to_string(env.state_dir().join("events.jsonl")).unwrap();
    let refused: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["actor"], "agent");
    assert_eq!(refused[0]["caller"], agent.id.as_str());
}

#[test]
fn limits_get_the_policy_default_and_a_limit_above_the_cap_is_refused() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ndefault_limits = { memory_max = \"32M\" }\nmax_limits = { memory_max = \"64M\" }\n",
    )
    .unwrap();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" run --memory-max 1G -- sleep 600 2> err.txt; echo $? > rc.txt;
               "$R" run --json -- sleep 600 > child.json"#,
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "7", "{}", read("err.txt"));
    assert!(
        read("err.txt").contains("max_limits.memory_max"),
        "{}",
        read("err.txt")
    );
    let child: Rec = serde_json::from_str(&read("child.json")).unwrap();
    assert_eq!(child.limits.memory_max, Some(32 << 20));
    assert_eq!(show(&child.unit, "MemoryMax"), (32u64 << 20).to_string());
    // A person is not bound by the agent's caps.
    let mine = env.run(&[
        "--owner",
        "agent",
        "--memory-max",
        "1G",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(mine.limits.memory_max, Some(1 << 30));
}

#[test]
fn an_agent_may_stop_its_own_children_but_not_other_processes() {
    let env = Env::new();
    let victim = env.run(&["--label", "not the agent's", "--", "sleep", "600"]);
    let agent = env.run(&[
        "--owner", "agent", "--", "sh", "-c",
        &nested(&format!(
            r#""$R" stop {} 2> err.txt; echo $? > rc.txt;
               "$R" run --json -- sleep 600 > child.json;
               "$R" stop "$(sed -n 's/.*"id": *"\([a-z0-9]*\)".*/\1/p' child.json | head -1)"; echo $? > rc-own.txt"#,
            victim.id
        )),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "7", "{}", read("err.txt"));
    assert!(
        read("err.txt").contains("only its own descendants"),
        "{}",
        read("err.txt")
    );
    assert_eq!(env.status(&victim.id).state, "running");
    assert_eq!(read("rc-own.txt").trim(), "0");
    let child: Rec = serde_json::from_str(&read("child.json")).unwrap();
    assert_eq!(env.status(&child.id).state, "stopped");
}

#[test]
fn policy_show_and_check_explain_what_an_actor_may_do() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "# agents: checks only\n[actors.agent]\nlaunch_as = [\"agent\", \"quality\"]\nact_on = \"same-owner\"\n",
    )
    .unwrap();
    let shown: serde_json::Value = env.ok(&["policy", "show", "--json"]).json();
    assert_eq!(shown["from_file"], true);
    let agent = shown["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["actor"] == "agent")
        .unwrap();
    assert_eq!(agent["launch_as"], serde_json::json!(["agent", "quality"]));
    assert_eq!(agent["act_on"], "same-owner");
    let text = env.ok(&["policy", "show"]).stdout;
    assert!(
        text.contains("# agents: checks only") && text.contains("effective rules"),
        "{text}"
    );
    let out = env.cmd(&[
        "policy", "check", "--json", "--as", "agent", "--owner", "daemon", "--", "sleep", "1",
    ]);
    assert_eq!(out.code, 7);
    let verdict: serde_json::Value = out.json();
    assert_eq!(verdict["launch"]["allowed"], false);
    assert!(verdict["launch"]["rule"]
        .as_str()
        .unwrap()
        .contains("launch_as"));
    let out = env.cmd(&[
        "policy", "check", "--as", "agent", "--owner", "quality", "--", "sleep", "1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("allowed"), "{}", out.stdout);
    assert_eq!(env.cmd(&["policy", "check", "--as", "robot"]).code, 2);
}

#[test]
fn a_broken_policy_is_rejected_whole_and_nothing_runs() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\nlaunch_as = [\"agent\"\n",
    )
    .unwrap();
    let out = env.cmd(&["run", "--", "sleep", "600"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("policy.toml:"), "{}", out.stderr);
    assert!(out.stderr.contains("half-read"), "{}", out.stderr);
    assert!(env.list(&["--all"]).is_empty());
}

#[test]
fn an_agent_may_lower_but_not_raise_its_own_limits_nor_exceed_caps_on_children() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\nmax_limits = { memory_max = \"256M\" }\n",
    )
    .unwrap();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--memory-max",
        "128M",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" set "$REFINE_ID" --memory-max 64M; echo $? > lower.txt;
               "$R" set "$REFINE_ID" --memory-max 128M 2> raise.err; echo $? > raise.txt;
               "$R" run --json --memory-max 100M -- sleep 600 > child.json;
               id=$(sed -n 's/.*"id": *"\([a-z0-9]*\)".*/\1/p' child.json | head -1);
               "$R" set "$id" --memory-max 1G 2> cap.err; echo $? > cap.txt;
               "$R" set "$id" --memory-max 200M; echo $? > child-ok.txt;
               "$R" set --owner agent --memory-max 1G 2> slice.err; echo $? > slice.txt"#,
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("lower.txt").trim(), "0");
    assert_eq!(read("raise.txt").trim(), "7", "{}", read("raise.err"));
    assert!(
        read("raise.err").contains("may not raise its own limits"),
        "{}",
        read("raise.err")
    );
    assert_eq!(env.status(&agent.id).limits.memory_max, Some(64 << 20));
    assert_eq!(read("cap.txt").trim(), "7", "{}", read("cap.err"));
    assert!(
        read("cap.err").contains("max_limits.memory_max"),
        "{}",
        read("cap.err")
    );
    assert_eq!(read("child-ok.txt").trim(), "0");
    let child: Rec = serde_json::from_str(&read("child.json")).unwrap();
    assert_eq!(env.status(&child.id).limits.memory_max, Some(200 << 20));
    assert_eq!(show(&child.unit, "MemoryMax"), (200u64 << 20).to_string());
    assert_eq!(read("slice.txt").trim(), "7", "{}", read("slice.err"));
}

#[test]
fn record_exit_from_outside_the_units_own_cgroup_is_refused() {
    let env = Env::new();
    let r = env.run(&["--", "sh", "-c", "exit 3"]);
    wait_gone(&r.unit);
    let mut forge = env.command(&["record-exit", &r.id]);
    forge
        .env("SERVICE_RESULT", "success")
        .env("EXIT_CODE", "exited")
        .env("EXIT_STATUS", "0");
    let out = output(forge);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let s = env.status(&r.id);
    assert_eq!((s.state.as_str(), s.exit_code), ("failed", Some(3)));
}

#[test]
fn a_record_that_names_another_unit_is_quarantined_not_obeyed() {
    let env = Env::new();
    let plain = format!("plain-victim-{}", std::process::id());
    let started = output({
        let mut c = std::process::Command::new("systemd-run");
        c.args(["--user", "-q", "--unit", &plain, "sleep", "600"]);
        c
    });
    assert_eq!(started.code, 0, "{}", started.stderr);
    let template = env.run(&["--", "true"]);
    let mut forged: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            env.state_dir()
                .join(format!("records/{}.json", template.id)),
        )
        .unwrap(),
    )
    .unwrap();
    let id = "zzzz2222";
    forged["id"] = id.into();
    forged["unit"] = format!("{plain}.service").into();
    std::fs::write(
        env.state_dir().join(format!("records/{id}.json")),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let out = env.cmd(&["stop", id]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("not the unit of"), "{}", out.stderr);
    assert_eq!(show(&format!("{plain}.service"), "ActiveState"), "active");
    systemctl(&["stop", &format!("{plain}.service")]);
}

#[test]
fn an_agent_can_neither_switch_index_nor_adopt_nor_raise_its_cpu_weight() {
    let env = Env::new();
    let mut stranger = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--cpu-weight",
        "50",
        "--",
        "sh",
        "-c",
        &nested(&format!(
            r#""$R" --state-dir "$PWD/other-index" run -- true 2> index.err; echo $? > index.txt;
               "$R" adopt {} 2> adopt.err; echo $? > adopt.txt;
               "$R" set "$REFINE_ID" --cpu-weight 10000 2> weight.err; echo $? > weight.txt"#,
            stranger.id()
        )),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("index.txt").trim(), "7", "{}", read("index.err"));
    assert!(
        read("index.err").contains("was started with the index"),
        "{}",
        read("index.err")
    );
    assert_eq!(read("adopt.txt").trim(), "7", "{}", read("adopt.err"));
    assert!(
        read("adopt.err").contains("may not adopt"),
        "{}",
        read("adopt.err")
    );
    assert_eq!(read("weight.txt").trim(), "7", "{}", read("weight.err"));
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn the_policy_path_is_absolute_and_survives_a_restart_by_someone_else() {
    let env = Env::new();
    let absolute = env.policy_path().display().to_string();
    let policy_of = |unit: &str| {
        show(unit, "Environment")
            .split_whitespace()
            .find_map(|e| e.strip_prefix("REFINE_PROC_POLICY=").map(String::from))
    };
    // Given relative, recorded and passed on absolute.
    let mut cmd = env.command(&["run", "--json", "--", "sleep", "600"]);
    cmd.env("REFINE_PROC_POLICY", "policy.toml");
    let out = output(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r: Rec = out.json();
    let raw: serde_json::Value = env.ok(&["status", "--json", &r.id]).json();
    assert_eq!(raw["requested_by"]["policy"], absolute.as_str());
    assert_eq!(policy_of(&r.unit).as_deref(), Some(absolute.as_str()));
    // Ended, then started again by a caller under another (default)
    // policy: the new run is still bound by the policy of its launch.
    env.ok(&["stop", &r.id]);
    let mut restart = env.command(&["restart", &r.id]);
    restart.env_remove("REFINE_PROC_POLICY");
    let out = output(restart);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(policy_of(&r.unit).as_deref(), Some(absolute.as_str()));
}
