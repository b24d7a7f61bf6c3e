//! Logs come from journald, complete even for processes that exit at once,
//! and the same lines are what journalctl users see.

use super::common::*;

#[test]
fn logs_of_a_process_that_exits_at_once_are_complete() {
    let env = Env::new();
    // journald attributes lines by reading /proc of the writer; a process
    // that is already gone loses its unit field. Ten quick ones in a row.
    for i in 0..10 {
        let r = env.run(&[
            "--",
            "sh",
            "-c",
            &format!("echo one {i}; echo two {i}; echo three {i}"),
        ]);
        wait_gone(&r.unit);
        let ident = r.unit.trim_end_matches(".service");
        wait_journal_lines(ident, 3);
        let out = env.ok(&["logs", &r.id]);
        let expected = format!("one {i}\ntwo {i}\nthree {i}\n");
        assert_eq!(out.stdout, expected, "run {i}: {}", out.stderr);
        assert_eq!(journal_lines(ident).len(), 3, "journalctl -t {ident}");
        assert_eq!(r.logs.journal, format!("journalctl -t {ident}"));
    }
}

#[test]
fn logs_json_lines_lines_and_groups_by_owner_and_workflow() {
    let env = Env::new();
    let a = env.run(&[
        "--owner",
        "quality",
        "--workflow",
        "wf-a",
        "--",
        "sh",
        "-c",
        "echo a1; echo a2; printf 'bad\\377byte\\n'",
    ]);
    let b = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "wf-a",
        "--",
        "sh",
        "-c",
        "echo b1",
    ]);
    let c = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "wf-c",
        "--",
        "sh",
        "-c",
        "echo c1",
    ]);
    for (r, lines) in [(&a, 3), (&b, 1), (&c, 1)] {
        wait_gone(&r.unit);
        wait_journal_lines(r.unit.trim_end_matches(".service"), lines);
    }
    let out = env.ok(&["logs", "--json", &a.id]);
    let entries: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let messages: Vec<&str> = entries
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["a1", "a2", "bad\u{fffd}byte"]);
    assert!(entries
        .iter()
        .all(|e| e["id"] == a.id.as_str() && e["time"].is_string()));
    assert_eq!(
        env.ok(&["logs", "-n", "1", &a.id]).stdout,
        "bad\u{fffd}byte\n"
    );
    let owner = env.ok(&["logs", "--owner", "agent"]).stdout;
    assert_eq!(sorted(&owner), vec!["b1", "c1"]);
    let workflow = env.ok(&["logs", "--workflow", "wf-a"]).stdout;
    assert_eq!(sorted(&workflow), vec!["a1", "a2", "b1", "bad\u{fffd}byte"]);
    let short = env.ok(&["logs", "--output", "short-iso", &b.id]).stdout;
    assert!(
        short.contains(b.unit.trim_end_matches(".service")) && short.contains("b1"),
        "{short}"
    );
    assert_eq!(env.cmd(&["logs", "--output", "xml", &b.id]).code, 2);
}

#[test]
fn a_chatty_process_has_every_line_in_logs_in_order() {
    let env = Env::new();
    // Below journald's burst limit (see README): every line must be there.
    let r = env.run(&["--", "seq", "1", "20000"]);
    wait_gone(&r.unit);
    wait_journal_lines(r.unit.trim_end_matches(".service"), 20000);
    let out = env.ok(&["logs", &r.id]).stdout;
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(out == expected, "logs differ from what the process printed");
}

fn sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn logs_since_minus_1h_from_the_help_works_and_a_bare_span_is_exit_2_with_a_hint() {
    let env = Env::new();
    let r = env.run(&["--owner", "agent", "--", "sh", "-c", "echo within-the-hour"]);
    wait_gone(&r.unit);
    wait_journal_lines(r.unit.trim_end_matches(".service"), 1);
    // The example of `logs --help` and the README, as written there.
    let out = env.ok(&["logs", "--owner", "agent", "--since", "-1h"]);
    assert!(out.stdout.contains("within-the-hour"), "{out:?}");
    let out = env.ok(&["logs", &r.id, "--since", "10min ago", "--until", "now"]);
    assert!(out.stdout.contains("within-the-hour"), "{out:?}");
    // Its line is newer than an hour ago.
    let out = env.ok(&["logs", &r.id, "--until", "-1h"]);
    assert_eq!(out.stdout, "", "{out:?}");
    let bare = env.cmd(&["logs", &r.id, "--since", "10s"]);
    assert_eq!(bare.code, 2, "{bare:?}");
    assert!(
        bare.stderr.contains("hint:") && bare.stderr.contains("--since -10s"),
        "{}",
        bare.stderr
    );
    assert!(!bare.stderr.contains("Failed to parse"), "{}", bare.stderr);
    let bad = env.cmd(&["logs", &r.id, "--until", "soonish"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("--until") && bad.stderr.contains("hint:"));
}
