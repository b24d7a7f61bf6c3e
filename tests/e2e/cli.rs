//! The command line's own promises: what `--help` and the README show
//! works as shown, and each regression of issue 10 is pinned here by name.

use super::common::*;

/// A shell script for a managed process that calls refine-proc itself.
fn nested(script: &str) -> String {
    format!("R='{}'; {script}", binary().display())
}

/// The policy example of the README's "The policy" section, as printed.
fn readme_policy() -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("### The policy").expect("policy section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_string()
}

#[test]
fn policy_check_predicts_the_verdict_and_limits_of_an_agents_run() {
    let env = Env::new();
    std::fs::write(env.policy_path(), readme_policy()).unwrap();
    // A person asking about an agent: the agent's run defaults to owner agent.
    let check: serde_json::Value = env
        .ok(&[
            "policy", "check", "--as", "agent", "--json", "--", "sleep", "1",
        ])
        .json();
    assert_eq!(check["launch"]["owner"], "agent", "{check}");
    assert_eq!(check["launch"]["allowed"], true, "{check}");
    // A real agent: its own check and its run agree (the README's example
    // policy lets an agent launch without limit flags).
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" policy check --json -- sleep 600 > check.json;
               "$R" run --json -- sleep 600 > run.json 2> run.err; echo $? > rc.txt"#,
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "0", "{}", read("run.err"));
    let own: serde_json::Value = serde_json::from_str(&read("check.json")).unwrap();
    let ran: serde_json::Value = serde_json::from_str(&read("run.json")).unwrap();
    assert_eq!(own["launch"]["allowed"], true, "{own}");
    assert_eq!(own["launch"]["owner"], ran["owner"]);
    for key in [
        "memory_max",
        "cpu_quota_percent",
        "tasks_max",
        "runtime_max_sec",
    ] {
        assert!(!ran["limits"][key].is_null(), "{key}: {ran}");
        assert_eq!(own["launch"]["limits"][key], ran["limits"][key], "{key}");
        assert_eq!(check["launch"]["limits"][key], ran["limits"][key], "{key}");
    }
    // Every limit flag of run is a flag of policy check, checked the same.
    let both = [
        "--memory-high",
        "1G",
        "--cpu-weight",
        "50",
        "--timeout-stop",
        "5s",
    ];
    let mut args = vec!["policy", "check", "--as", "agent", "--json"];
    args.extend(both);
    args.extend(["--", "sleep", "1"]);
    let with: serde_json::Value = env.ok(&args).json();
    assert_eq!(with["launch"]["limits"]["memory_high"], 1u64 << 30);
    assert_eq!(with["launch"]["limits"]["cpu_weight"], 50);
    assert_eq!(with["launch"]["limits"]["timeout_stop_sec"], 5);
    let bad = env.cmd(&["policy", "check", "--cpu-weight", "0", "--", "sleep", "1"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    env.ok(&["stop", ran["id"].as_str().unwrap()]);
}

#[test]
fn policy_check_refusals_say_refused_once_and_print_sizes_as_written() {
    let env = Env::new();
    std::fs::write(env.policy_path(), readme_policy()).unwrap();
    let out = env.cmd(&[
        "policy",
        "check",
        "--as",
        "agent",
        "--memory-max",
        "16G",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(out.code, 7, "{out:?}");
    assert!(
        out.stdout
            .contains("refused: memory_max 16G is above the cap 8G for agent"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("refused by policy"), "{}", out.stdout);
    assert!(!out.stdout.contains("17179869184"), "{}", out.stdout);
    // run's own refusal keeps its words, with the same sizes.
    std::fs::write(
        env.policy_path(),
        "[actors.person]\nmax_limits = { memory_max = \"512M\" }\n",
    )
    .unwrap();
    let run = env.cmd(&["run", "--memory-max", "1G", "--", "sleep", "1"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr
            .contains("refused by policy: memory_max 1G is above the cap 512M for person"),
        "{}",
        run.stderr
    );
}
