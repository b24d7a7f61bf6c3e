//! Bad input gets a one-line error naming the fix, a documented exit code,
//! and no side effect; hostile text is data, stored and shown faithfully.

use super::common::*;

fn records_on_disk(env: &Env) -> usize {
    std::fs::read_dir(env.state_dir().join("records"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn bad_input_is_rejected_before_anything_starts() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--", "no-such-command-xyz"], "command not found"),
        (&["run", "--owner", "robot", "--", "true"], "unknown owner"),
        (
            &["run", "--memory-max", "lots", "--", "true"],
            "invalid size",
        ),
        (
            &["run", "--cpu-quota", "0%", "--", "true"],
            "invalid CPU quota",
        ),
        (
            &["run", "--runtime-max", "soon", "--", "true"],
            "invalid duration",
        ),
        (
            &["run", "--restart", "sometimes", "--", "true"],
            "unknown restart policy",
        ),
        (
            &["run", "--cwd", "/no/such/dir", "--", "true"],
            "working directory",
        ),
        (&["run", "--env", "NOEQUALS", "--", "true"], "KEY=VALUE"),
        (&["run", "--env", "REFINE_ID=x", "--", "true"], "reserved"),
        (&["run", "--meta", "=v", "--", "true"], "KEY=VALUE"),
        (&["run"], "no command given"),
        (&["list", "--state", "sleeping"], "unknown state"),
        (&["logs", "--owner", "robot"], "unknown owner"),
    ];
    for (args, message) in cases {
        let out = env.cmd(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("hint:"),
            "{args:?} names no fix: {}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed data: {}",
            out.stdout
        );
    }
    assert_eq!(records_on_disk(&env), 0, "a rejected run left a record");
    assert!(env.list(&["--all"]).is_empty());
}

#[test]
fn unknown_ambiguous_and_foreign_ids_are_refused_with_distinct_codes() {
    let env = Env::new();
    let out = env.cmd(&["status", "zzzzzzzz"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("no process with id"), "{}", out.stderr);
    let out = env.cmd(&["stop", "not-an-id!"]);
    assert_eq!(out.code, 3);
    // Units refine-proc did not create are not touched.
    for unit in ["dbus.service", "init.scope", "refine.slice"] {
        let out = env.cmd(&["stop", unit]);
        assert_eq!(out.code, 4, "{unit}: {}", out.stderr);
        assert!(
            out.stderr.contains("not a unit refine-proc created"),
            "{}",
            out.stderr
        );
    }
    // Not even one that merely copies the naming scheme.
    let fake = "refine-agent-abcd2345.service";
    let started = output({
        let mut c = std::process::Command::new("systemd-run");
        c.args(["--user", "-q", "--unit", fake, "sleep", "600"]);
        c
    });
    assert_eq!(started.code, 0, "{}", started.stderr);
    let out = env.cmd(&["stop", fake]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("not started by refine-proc"),
        "{}",
        out.stderr
    );
    assert_eq!(show(fake, "ActiveState"), "active");
    systemctl(&["stop", fake]);
    // An ambiguous prefix lists the candidates.
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let r = env.run(&["--", "true"]);
        ids.push(r.id);
        ids.sort();
        if ids.len() == 2 && ids[0][..1] != ids[1][..1] {
            ids.remove(0);
        }
    }
    let out = env.cmd(&["status", &ids[0][..1]]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("ambiguous"), "{}", out.stderr);
}

#[test]
fn hostile_text_is_stored_verbatim_passed_unexpanded_and_escaped_on_terminals() {
    let env = Env::new();
    let label = "evil\nlabel \x1b[31mred\x1b[0m $HOME `id` 'q' \"dq\"";
    let r = env.run(&[
        "--label",
        label,
        "--details",
        "line1\nline2\r\n",
        "--workflow",
        "$(rm -rf ~)",
        "--meta",
        "k=v\nw",
        "--env",
        "VAL=$HOME;$(id)",
        "--",
        "sh",
        "-c",
        r#"printf '%s|%s|%s' "$1" "$2" "$VAL" > args.txt"#,
        "sh",
        "$HOME",
        "a\nb",
    ]);
    let written = std::fs::read_to_string(env.work_dir().join("args.txt")).unwrap_or_else(|_| {
        wait_gone(&r.unit);
        std::fs::read_to_string(env.work_dir().join("args.txt")).unwrap()
    });
    assert_eq!(written, "$HOME|a\nb|$HOME;$(id)");
    let s = env.status(&r.id);
    assert_eq!(s.label, label);
    assert_eq!(s.details.as_deref(), Some("line1\nline2\r\n"));
    assert_eq!(s.metadata.workflow.as_deref(), Some("$(rm -rf ~)"));
    assert_eq!(s.metadata.extra["k"], "v\nw");
    // People see escapes, never raw control characters.
    for text in [
        env.ok(&["status", &r.id]).stdout,
        env.ok(&["list", "--all"]).stdout,
    ] {
        assert!(!text.contains('\x1b'), "raw ESC on a terminal: {text:?}");
        assert!(text.contains("evil\\nlabel"), "{text}");
    }
    // systemd's Description is one safe line.
    let description = show(&r.unit, "Description");
    assert!(description.is_empty() || !description.contains('\x1b'));
}

#[test]
fn oversized_values_are_refused_with_the_limit() {
    let env = Env::new();
    let huge = "x".repeat(5000);
    let out = env.cmd(&["run", "--label", &huge, "--", "true"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("4096"), "{}", out.stderr);
    // Three arguments of 100 KiB: each fits the kernel's limit, together
    // they pass refine-proc's 256 KiB.
    let arg = "y".repeat(100 * 1024);
    let out = env.cmd(&["run", "--", "echo", &arg, &arg, &arg]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("command line"), "{}", out.stderr);
    assert_eq!(records_on_disk(&env), 0);
}

#[test]
fn without_a_user_manager_the_error_says_why_and_how_to_fix_it() {
    let env = Env::new();
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = env.command(&["run", "--", "true"]);
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", empty.path());
    let out = output(cmd);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("no systemd user manager is reachable"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("enable-linger"), "{}", out.stderr);
    assert!(out.stderr.contains("XDG_RUNTIME_DIR"), "{}", out.stderr);
    assert_eq!(records_on_disk(&env), 0);
    // A bus without a systemd on it is told apart from no bus at all.
    let mut cmd = env.command(&["list"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let out = output(cmd);
    assert_eq!(out.code, 5);
    assert!(out.stderr.contains("/nonexistent/bus"), "{}", out.stderr);
}

#[test]
fn every_command_has_help_with_examples() {
    let env = Env::new();
    for cmd in [
        "run", "list", "status", "logs", "stop", "kill", "restart", "forget",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(
            out.stdout.contains("Example"),
            "{cmd} --help has no examples"
        );
    }
    let out = env.ok(&["--help"]);
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
}
