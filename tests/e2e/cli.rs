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
