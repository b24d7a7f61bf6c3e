//! Adopting processes that already run: a process tree the test spawns
//! moves into a transient scope, is recorded like any other process, can be
//! stopped and killed, ends as `ended` without an exit status, and whatever
//! refine-proc must not take is refused with the reason.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// A process tree spawned by the test (so it is a child of the test, in the
/// test's cgroup), in its own process group; killed and reaped on drop.
struct Tree {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Tree {
    /// `sh -c SCRIPT`; waits until the script prints "ready" when it does.
    fn spawn(script: &str, wait_ready: bool) -> Tree {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        if wait_ready {
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready", "the tree did not start");
        }
        let stdin = child.stdin.take();
        Tree { child, stdin }
    }

    /// `sh` and two `sleep 600` children (forked before "ready").
    fn three() -> Tree {
        Tree::spawn("sleep 600 & sleep 600 & echo ready; wait", true)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Children of the shell, from a scan of /proc.
    fn children(&self) -> BTreeSet<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        let rest = &s[s.rfind(')')? + 1..];
                        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(self.pid())
            })
            .collect()
    }

    /// Ends the shell's input (for scripts that `read`).
    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reaps the shell once it has ended.
    fn reap(&mut self) {
        self.child.wait().unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-(self.pid() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s[s.rfind(')')? + 1..]
                .split_whitespace()
                .next()
                .map(String::from)
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The pids in a unit's cgroup, as the kernel lists them.
fn cgroup_procs(unit: &str) -> BTreeSet<u32> {
    let cg = show(unit, "ControlGroup");
    assert!(!cg.is_empty(), "{unit} has no cgroup");
    std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Whether this test process lives in the user manager's cgroup subtree
/// (a desktop terminal, or tests/run's sandbox), so the manager may adopt
/// its children. From an SSH session it does not, and adopt must say so.
fn adoptable(env: &Env) -> bool {
    let manager = systemctl(&["show", "-p", "ControlGroup", "--value"])
        .trim()
        .to_string();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let inside = !manager.is_empty() && own.starts_with(&format!("{manager}/"));
    if !inside {
        skip(&format!(
            "this test runs in {own}, outside the user manager's subtree {manager:?}, \
             where adopt is refused (checked instead)"
        ));
        let tree = Tree::three();
        let out = env.cmd(&["adopt", &tree.pid().to_string()]);
        assert_eq!(out.code, 4, "{}", out.stderr);
        assert!(out.stderr.contains("refine-proc run"), "{}", out.stderr);
    }
    inside
}

fn adopt(env: &Env, args: &[&str]) -> Rec {
    let mut all = vec!["adopt", "--json"];
    all.extend_from_slice(args);
    env.ok(&all).json()
}

#[test]
fn adopt_moves_a_process_tree_into_a_scope_that_systemd_shows_and_stop_ends_it() {
    let env = Env::new();
    if !adoptable(&env) {
        return;
    }
    let mut tree = Tree::three();
    let sleeps = tree.children();
    assert_eq!(sleeps.len(), 2, "{sleeps:?}");
    let pid = tree.pid().to_string();
    let r = adopt(
        &env,
        &[
            "--owner",
            "agent",
            "--label",
            "dev tree",
            "--workflow",
            "wf-a",
            "--meta",
            "ticket=T-1",
            &pid,
        ],
    );
    assert_eq!(r.kind, "scope");
    assert_eq!(r.unit, format!("refine-agent-{}.scope", r.id));
    assert_eq!(r.state, "running");
    assert_eq!(r.pid, Some(tree.pid()));
    assert_eq!(
        r.command,
        vec!["sh", "-c", "sleep 600 & sleep 600 & echo ready; wait"]
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(r.cwd.as_deref(), cwd.to_str());
    assert_eq!(
        (r.label.as_str(), r.metadata.workflow.as_deref()),
        ("dev tree", Some("wf-a"))
    );
    assert_eq!(r.metadata.extra["ticket"], "T-1");
    assert!(r.exit_code.is_none() && r.exit_signal.is_none() && r.result.is_none());
    assert_eq!(
        r.logs.journal,
        format!("journalctl _SYSTEMD_USER_UNIT={}", r.unit)
    );

    // systemd's own view: a scope in the owner's slice holding all three.
    let listed = systemctl(&["list-units", "--no-legend", "refine-*"]);
    assert!(listed.contains(&r.unit), "{listed}");
    assert_eq!(show(&r.unit, "ActiveState"), "active");
    assert_eq!(show(&r.unit, "Slice"), "refine-agent.slice");
    assert_eq!(show(&r.unit, "Description"), "dev tree (refine-proc agent)");
    let mut all = sleeps.clone();
    all.insert(tree.pid());
    assert_eq!(cgroup_procs(&r.unit), all);

    // Found by id, prefix and unit name, and listed with the services.
    assert_eq!(env.status(&r.unit).id, r.id);
    let s = env.status(&r.id[..5]);
    assert_eq!((s.state.as_str(), s.kind.as_str()), ("running", "scope"));
    let service = env.run(&["--", "sleep", "600"]);
    let kinds: Vec<(String, String)> = env.list(&[]).into_iter().map(|r| (r.id, r.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (r.id.clone(), "scope".to_string()),
            (service.id.clone(), "service".to_string())
        ]
    );

    // stop ends every process of the scope and records it as stopped.
    env.ok(&["stop", &r.id]);
    let s = env.status(&r.id);
    assert_eq!(s.state, "stopped", "{s:?}");
    assert!(s.ended_at.is_some());
    assert!(s.exit_code.is_none() && s.exit_signal.is_none() && s.result.is_none());
    assert_eq!(show(&r.unit, "LoadState"), "not-found");
    tree.reap();
    for p in sleeps {
        assert!(!alive(p), "pid {p} survived the stop");
    }
    let again = env.ok(&["stop", &r.id]);
    assert!(again.stdout.contains("was not running"), "{}", again.stdout);
}

#[test]
fn adopt_no_children_moves_only_the_process() {
    let env = Env::new();
    if !adoptable(&env) {
        return;
    }
    let tree = Tree::three();
    let sleeps = tree.children();
    let before = std::fs::read_to_string(format!("/proc/{}/cgroup", tree.pid())).unwrap();
    let r = adopt(&env, &["--no-children", &tree.pid().to_string()]);
    assert_eq!(r.owner, "user-helper");
    assert_eq!(r.label, "sh");
    assert_eq!(cgroup_procs(&r.unit), BTreeSet::from([tree.pid()]));
    for p in sleeps {
        let cg = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
        assert_eq!(cg, before, "child {p} moved");
    }
}

#[test]
fn an_adopted_process_that_exits_on_its_own_is_ended_without_an_exit_status() {
    let env = Env::new();
    if !adoptable(&env) {
        return;
    }
    let mut tree = Tree::spawn("read line; exit 3", false);
    let r = adopt(&env, &[&tree.pid().to_string()]);
    assert_eq!(r.state, "running");
    tree.close_stdin();
    tree.reap();
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(s.state, "ended", "{s:?}");
    // A scope has no exit status: nothing is invented.
    assert!(s.exit_code.is_none() && s.exit_signal.is_none() && s.result.is_none());
    assert!(env.list(&[]).is_empty());
    let ended: Vec<String> = env
        .list(&["--state", "ended"])
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ended, vec![r.id.clone()]);
    assert!(env.ok(&["list", "--all"]).stdout.contains("ended"));
    let out = env.cmd(&["kill", &r.id]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    env.ok(&["forget", &r.id]);
    assert_eq!(env.cmd(&["status", &r.id]).code, 3);
}

#[test]
fn restart_of_an_adopted_process_is_refused_and_kill_ends_it_as_stopped() {
    let env = Env::new();
    if !adoptable(&env) {
        return;
    }
    let mut tree = Tree::three();
    let r = adopt(&env, &[&tree.pid().to_string()]);
    let out = env.cmd(&["restart", &r.id]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be restarted"), "{}", out.stderr);
    assert_eq!(env.status(&r.id).state, "running");
    env.ok(&["kill", "--signal", "KILL", &r.id]);
    tree.reap();
    wait_gone(&r.unit);
    let s = env.status(&r.id);
    assert_eq!(s.state, "stopped", "{s:?}");
    assert!(s.exit_code.is_none() && s.exit_signal.is_none());
}

#[test]
fn logs_of_an_adopted_process_are_found_by_its_unit() {
    let env = Env::new();
    if !adoptable(&env) {
        return;
    }
    // After adoption, a writer that stays alive (so journald can read its
    // unit from /proc) logs under an identifier that is not refine-proc's.
    let mut tree = Tree::spawn(
        "read line; exec systemd-cat -t not-ours sh -c 'echo hello from the scope; exec sleep 600'",
        false,
    );
    let r = adopt(&env, &["--owner", "agent", &tree.pid().to_string()]);
    tree.write_line("go");
    let service = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        "echo hello from the service",
    ]);
    wait_gone(&service.unit);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.ok(&["logs", &r.id]);
        if out.stdout.contains("hello from the scope") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scope's line never showed: {}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: Vec<serde_json::Value> = env
        .ok(&["logs", "--json", &r.id])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["id"] == r.id.as_str()), "{lines:?}");
    // Grouped logs find both kinds at once.
    let both = env.ok(&["logs", "--owner", "agent"]).stdout;
    assert!(
        both.contains("hello from the scope") && both.contains("hello from the service"),
        "{both}"
    );
}

#[test]
fn adopt_refuses_what_it_must_not_take_and_says_why() {
    let env = Env::new();
    let out = env.cmd(&["adopt", "4194304"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("no process with pid 4194304"),
        "{}",
        out.stderr
    );
    let out = env.cmd(&["adopt", "1"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("pid 1 is the init process"),
        "{}",
        out.stderr
    );

    // Another user's process.
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let foreign = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != 1)
        .find(|p| std::fs::metadata(format!("/proc/{p}")).is_ok_and(|m| m.uid() != me));
    match foreign {
        Some(pid) => {
            let uid = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
            let out = env.cmd(&["adopt", &pid.to_string()]);
            assert_eq!(out.code, 4, "{}", out.stderr);
            assert!(
                out.stderr
                    .contains(&format!("pid {pid} belongs to uid {uid}")),
                "{}",
                out.stderr
            );
        }
        None => eprintln!("no process of another user is visible; skipped that case"),
    }

    // A process refine-proc already manages.
    let managed = env.run(&["--", "sleep", "600"]);
    let out = env.cmd(&["adopt", &managed.pid.unwrap().to_string()]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("already managed") && out.stderr.contains(&managed.id),
        "{}",
        out.stderr
    );

    // A process outside the manager's subtree, as an SSH session's are
    // (tests/run's sandbox provides one).
    match std::env::var("WUM_OUTSIDE_PID") {
        Ok(pid) => {
            let out = env.cmd(&["adopt", &pid]);
            assert_eq!(out.code, 4, "{}", out.stderr);
            assert!(
                out.stderr
                    .contains("outside the user manager's cgroup subtree")
                    && out.stderr.contains("run it via refine-proc run instead"),
                "{}",
                out.stderr
            );
        }
        Err(_) => eprintln!("WUM_OUTSIDE_PID is not set (no sandbox); skipped that case"),
    }

    // Bad input is exit 2, before anything else.
    let out = env.cmd(&["adopt", "--owner", "robot", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // Nothing was recorded for any refused adoption.
    let all = env.list(&["--all"]);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id, managed.id);
}
