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

/// Starts `refine-proc ARGS` with its stdout read line by line into a
/// channel; the child is returned to be waited for.
fn spawn_lines(
    env: &Env,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = env
        .command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start refine-proc");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (bounded) for the child's exit; its code and stderr.
fn wait_child(mut child: std::process::Child) -> (i32, String) {
    use std::io::Read;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = tx.send((child.wait().unwrap().code().unwrap_or(-1), err));
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| {
            // SAFETY: kill(2) on our own child's pid, which is not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("refine-proc did not return within 30s of the process's end")
        })
}

#[test]
fn logs_follow_returns_after_the_process_ends_with_its_exit_code() {
    let env = Env::new();
    let r = env.run(&[
        "--label",
        "ends",
        "--",
        "sh",
        "-c",
        "echo first; while [ ! -e go ]; do sleep 0.05; done; echo last; exit 3",
    ]);
    let (child, lines) = spawn_lines(&env, &["logs", "-f", &r.id]);
    let timeout = std::time::Duration::from_secs(30);
    assert_eq!(lines.recv_timeout(timeout).unwrap(), "first");
    // Following a live process: now let it print its last line and fail.
    std::fs::write(env.work_dir().join("go"), b"").unwrap();
    assert_eq!(lines.recv_timeout(timeout).unwrap(), "last");
    let (code, stderr) = wait_child(child);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&r.id) && stderr.contains("failed") && stderr.contains("exit 3"),
        "{stderr}"
    );
    // An ended process: its lines, then at once its end.
    let out = env.cmd(&["logs", "-f", &r.id]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "first\nlast\n"),
        "{out:?}"
    );
    // Killed by a signal: 128 + N, as run --wait.
    let k = env.run(&["--", "sh", "-c", "echo up; exec sleep 600"]);
    let (child, lines) = spawn_lines(&env, &["logs", "-f", &k.id]);
    assert_eq!(lines.recv_timeout(timeout).unwrap(), "up");
    env.ok(&["kill", "--signal", "KILL", &k.id]);
    let (code, stderr) = wait_child(child);
    assert_eq!(code, 128 + 9, "{stderr}");
}

#[test]
fn group_logs_prefix_each_line_with_the_process_that_wrote_it() {
    let env = Env::new();
    let a = env.run(&[
        "--workflow",
        "wf-prefix",
        "--label",
        "builder",
        "--",
        "sh",
        "-c",
        "echo from-a",
    ]);
    let b = env.run(&[
        "--workflow",
        "wf-prefix",
        "--label",
        "t",
        "--",
        "sh",
        "-c",
        "echo from-b",
    ]);
    for r in [&a, &b] {
        wait_gone(&r.unit);
        wait_journal_lines(r.unit.trim_end_matches(".service"), 1);
    }
    let out = env
        .ok(&["logs", "--workflow", "wf-prefix", "--prefix"])
        .stdout;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let mut want = vec![
        format!("{} builder | from-a", a.id),
        format!("{} t       | from-b", b.id),
    ];
    want.sort();
    assert_eq!(lines, want, "{out}");
    // Raw lines when asked (and, by default, in a pipe).
    let raw = env
        .ok(&["logs", "--workflow", "wf-prefix", "--no-prefix"])
        .stdout;
    let mut raw: Vec<&str> = raw.lines().collect();
    raw.sort();
    assert_eq!(raw, vec!["from-a", "from-b"]);
    // JSON carries the id instead.
    assert_eq!(
        env.cmd(&["logs", "--workflow", "wf-prefix", "--prefix", "--json"])
            .code,
        2
    );
}

#[test]
fn a_misspelt_option_before_the_command_is_named_with_the_closest_one() {
    let env = Env::new();
    let out = env.cmd(&["run", "--ownr", "agent", "--", "sleep", "1"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("'--ownr'") && out.stderr.contains("'--owner'"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("command not found"), "{}", out.stderr);
    assert!(env.list(&["--all"]).is_empty(), "something was recorded");
    let out = env.cmd(&["policy", "check", "--memry-max", "1G", "--", "sleep", "1"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("'--memory-max'"), "{}", out.stderr);
    // Options of the command after its name are its own, as before.
    let r = env.run(&["--", "sleep", "--help"]);
    assert_eq!(r.command, vec!["sleep", "--help"]);
    let r = env.run(&["sh", "-c", "exit 0"]);
    assert_eq!(r.command, vec!["sh", "-c", "exit 0"]);
}

#[test]
fn a_health_check_without_a_daemon_is_warned_about_at_run_and_shown_in_list_and_status() {
    let env = Env::new();
    let out = env.ok(&["run", "--health-cmd", "true", "--", "sleep", "600"]);
    assert!(
        out.stderr
            .contains("no refine-proc daemon runs for this index")
            && out
                .stderr
                .contains("systemctl --user enable --now refine-proc.service"),
        "{}",
        out.stderr
    );
    let list = env.ok(&["list"]);
    assert!(
        list.stdout.contains("starting (no daemon)"),
        "{}",
        list.stdout
    );
    assert!(
        list.stderr.contains("no refine-proc daemon"),
        "{}",
        list.stderr
    );
    // The JSON contract is unchanged: health_status is what was stored.
    let listed: serde_json::Value = env.ok(&["list", "--json"]).json();
    assert_eq!(listed[0]["health_status"], "starting");
    let id = listed[0]["id"].as_str().unwrap();
    let status: serde_json::Value = env.ok(&["status", "--json", id]).json();
    let warnings = status["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("no refine-proc daemon")),
        "{status}"
    );
    // Without a health check there is nothing to warn about.
    let plain = env.ok(&["run", "--", "sleep", "600"]);
    assert!(!plain.stderr.contains("daemon"), "{}", plain.stderr);
}

#[test]
fn json_has_help_text_on_every_command_that_takes_it() {
    let env = Env::new();
    let commands: &[&[&str]] = &[
        &["run"],
        &["adopt"],
        &["list"],
        &["status"],
        &["logs"],
        &["stop"],
        &["pause"],
        &["resume"],
        &["kill"],
        &["set"],
        &["restart"],
        &["forget"],
        &["policy", "show"],
        &["policy", "check"],
        &["resurrect"],
        &["events"],
        &["recover"],
        &["doctor"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = env.ok(&args).stdout;
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{cmd:?} has no --json:\n{help}"));
        assert!(
            line.trim_start().trim_start_matches("--json").trim().len() > 3,
            "{cmd:?}: --json has no help text: {line:?}"
        );
    }
}

#[test]
fn policy_show_prints_act_on_as_the_policy_file_spells_it() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\nact_on = \"same-owner\"\n",
    )
    .unwrap();
    let out = env.ok(&["policy", "show"]).stdout;
    assert!(out.contains("act on same-owner"), "{out}");
    assert!(out.contains("act on all"), "{out}");
    for debug in ["SameOwner", "act on All", "Descendants"] {
        assert!(!out.contains(debug), "{debug}: {out}");
    }
}

#[test]
fn list_tree_draws_a_branch_for_every_child_but_the_last() {
    let env = Env::new();
    let parent = env.run(&[
        "--owner",
        "agent",
        "--label",
        "planner",
        "--",
        "sh",
        "-c",
        &nested(
            r#""$R" run --label first -- sleep 600 > /dev/null;
               "$R" run --label second -- sleep 600 > /dev/null"#,
        ),
    ]);
    // Its children run once it has ended (on systemd's signals).
    wait_gone(&parent.unit);
    let tree = env.ok(&["list", "--all", "--tree"]).stdout;
    let line = |label: &str| {
        tree.lines()
            .find(|l| l.contains(label))
            .unwrap()
            .to_string()
    };
    assert!(line("first").contains("├─ first"), "{tree}");
    assert!(line("second").contains("└─ second"), "{tree}");
    assert!(!line("planner").contains('─'), "{tree}");
}

#[test]
fn a_unit_name_without_service_resolves_and_another_owners_unit_name_does_not() {
    let env = Env::new();
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let stem = r.unit.trim_end_matches(".service");
    assert_eq!(env.status(stem).id, r.id);
    assert_eq!(env.status(&r.unit).id, r.id);
    let other = format!("refine-daemon-{}.service", r.id);
    let out = env.cmd(&["status", &other]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains(&r.unit), "{}", out.stderr);
    let scope = format!("{stem}.scope");
    assert_eq!(env.cmd(&["stop", &scope]).code, 3);
    assert_eq!(env.cmd(&["status", "refine-agent-nothere"]).code, 4);
}

#[test]
fn a_queued_runs_hint_says_stop_as_the_readme_does() {
    let env = Env::new();
    env.ok(&["pause", "--owner", "agent"]);
    let out = env.ok(&["run", "--queue", "--owner", "agent", "--", "sleep", "600"]);
    let id = out.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        out.stdout.contains(&format!("refine-proc stop {id}")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("forget"), "{}", out.stdout);
    env.ok(&["stop", &id]);
    env.ok(&["resume", "--owner", "agent"]);
}

#[test]
fn list_has_a_restarts_column() {
    let env = Env::new();
    let r = env.run(&[
        "--restart",
        "always",
        "--restart-delay",
        "1s",
        "--",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    env.ok(&["run", "--", "sleep", "600"]);
    wait_for(&r.unit, |i| i.is_some_and(|i| i.n_restarts >= 1));
    let table = env.ok(&["list"]).stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let col = header
        .iter()
        .position(|h| *h == "RESTARTS")
        .expect("a RESTARTS column");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.contains(&r.id))
        .unwrap()
        .split_whitespace()
        .collect();
    let count: u32 = row[col].parse().unwrap();
    assert!(count >= 1, "{table}");
}

#[test]
fn events_since_keeps_the_events_at_or_after_the_time() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let recent = env
        .ok(&["events", "--json", "--since", "-1h", "--id", &r.id])
        .stdout;
    assert!(recent.contains("\"started\""), "{recent}");
    let ahead = env.ok(&["events", "--json", "--since", "+1h"]).stdout;
    assert_eq!(ahead, "");
    let bad = env.cmd(&["events", "--since", "10s"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("-10s"), "{}", bad.stderr);
}

#[test]
fn a_command_that_fails_at_once_is_reported_as_ended_not_only_as_started() {
    let env = Env::new();
    // With --ready notify the start job lasts until READY=1, which never
    // comes: the job fails after the exit is recorded, so run knows the
    // end for certain (a plain Type=exec start usually does too, racing).
    let out = env.ok(&["run", "--ready", "notify", "--", "sh", "-c", "exit 3"]);
    assert!(
        out.stdout
            .contains("and it has already ended: failed, result exit-code, exit 3"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("refine-proc logs "), "{}", out.stdout);
    let rec: Rec = env
        .ok(&[
            "run", "--json", "--ready", "notify", "--", "sh", "-c", "exit 3",
        ])
        .json();
    assert_eq!((rec.state.as_str(), rec.exit_code), ("failed", Some(3)));
}
