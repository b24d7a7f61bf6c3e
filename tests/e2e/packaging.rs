//! What the packages ship: the user units pass `systemd-analyze --user
//! verify`, and the shell completions and man pages generated from the CLI
//! definition are well-formed and name the real commands.

use std::path::Path;
use std::process::Command;

use super::common::*;

/// `systemd-analyze --user verify` on a copy of a shipped unit, with
/// `/usr/bin/refine-proc` replaced by the binary under test (verify wants
/// the ExecStart binary to exist, as it does once a package is installed).
fn verify(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    let exe = binary();
    std::fs::write(
        &path,
        text.replace("/usr/bin/refine-proc", exe.to_str().unwrap()),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-analyze");
    // The man page is not installed here; packaging/test-deb checks that
    // Documentation=man:refine-proc(1) resolves once it is.
    cmd.args(["--user", "verify", "--man=no"]).arg(&path);
    let out = output(cmd);
    assert_eq!(out.code, 0, "{name}: {}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.is_empty(),
        "systemd-analyze complained about {name}: {}",
        out.stderr
    );
}

#[test]
fn the_shipped_refine_slice_passes_systemd_analyze_verify() {
    let env = Env::new();
    verify(
        env.work_dir(),
        "refine.slice",
        include_str!("../../units/refine.slice"),
    );
}

#[test]
fn the_shipped_daemon_unit_passes_systemd_analyze_verify() {
    let env = Env::new();
    let text = include_str!("../../units/refine-proc.service");
    // What the daemon's contract with systemd rests on.
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/refine-proc daemon",
        "WatchdogSec=",
        // Probe cgroups under the daemon's own (issue 10.13).
        "Delegate=yes",
        "WantedBy=default.target",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "no {line}");
    }
    verify(env.work_dir(), "refine-proc.service", text);
}

/// `refine-proc ARGS` that must succeed, without an index or a bus.
fn generate(args: &[&str]) -> String {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    let out = output(cmd);
    assert_eq!(out.code, 0, "refine-proc {args:?}: {}", out.stderr);
    assert!(
        !out.stdout.trim().is_empty(),
        "refine-proc {args:?} printed nothing"
    );
    out.stdout
}

const COMMANDS: [&str; 8] = [
    "run", "adopt", "list", "status", "logs", "stop", "policy", "doctor",
];

#[test]
fn completions_name_the_real_commands_and_bash_parses_them() {
    for shell in ["bash", "zsh", "fish"] {
        let text = generate(&["completions", shell]);
        for c in COMMANDS {
            assert!(text.contains(c), "{shell} completion lacks {c}");
        }
        assert!(text.contains("memory-max"), "{shell}: no run flags");
        // Hidden plumbing stays out of what users are offered.
        assert!(!text.contains("record-exit"), "{shell} offers record-exit");
    }
    let env = Env::new();
    let file = env.work_dir().join("refine-proc.bash");
    std::fs::write(&file, generate(&["completions", "bash"])).unwrap();
    let mut bash = Command::new("bash");
    bash.arg("-n").arg(&file);
    let out = output(bash);
    assert_eq!(out.code, 0, "bash -n: {}", out.stderr);
    // Loading it registers the completion function for the command.
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(format!(
        "source {} && complete -p refine-proc",
        file.display()
    ));
    let out = output(bash);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("refine-proc"), "{}", out.stdout);
}

#[test]
fn completions_refuse_an_unknown_shell_with_the_choices() {
    let mut cmd = Command::new(binary());
    cmd.args(["completions", "tcsh"]);
    let out = output(cmd);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("bash") && out.stderr.contains("fish"),
        "{}",
        out.stderr
    );
}

#[test]
fn man_pages_cover_every_visible_command() {
    let page = generate(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH refine-proc 1"),
        "{page}"
    );
    assert!(page.contains(".SH SUBCOMMANDS"));
    for c in COMMANDS {
        assert!(
            page.contains(&format!("refine\\-proc\\-{c}(1)")) || page.contains(c),
            "no {c}"
        );
    }
    let env = Env::new();
    let dir = env.work_dir().join("man");
    generate(&["man", "--dir", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for c in COMMANDS {
        assert!(
            pages.contains(&format!("refine-proc-{c}.1")),
            "no page for {c}: {pages:?}"
        );
    }
    assert!(pages.contains(&"refine-proc.1".to_string()));
    assert!(
        pages.contains(&"refine-proc-policy-check.1".to_string()),
        "{pages:?}"
    );
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("record-exit") || p.contains("completions")),
        "{pages:?}"
    );
    let run = std::fs::read_to_string(dir.join("refine-proc-run.1")).unwrap();
    assert!(run.contains("memory\\-max"), "run's page lacks its options");
    assert!(run.contains("Examples"), "run's page lacks its examples");
}
