//! Confined actors (issue 12): an agent whose policy says `confine = true`
//! runs in a systemd sandbox. Each escape is tried from inside a confined
//! agent unit, against the real user manager, and must fail with the
//! kernel's (or systemd's) error; the agent's own work must still succeed
//! and its exit must be recorded, also across a daemon-reload.

use std::path::{Path, PathBuf};

use super::common::*;

/// A directory under the real home (the sandbox's refine-test user), so
/// that "home read-only except `writable`" is checked where it applies.
struct HomeDir(PathBuf);

impl HomeDir {
    fn new(tag: &str) -> HomeDir {
        let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
        let dir = home.join(format!(".refine-confine-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        HomeDir(dir)
    }
}

impl Drop for HomeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A policy confining the agent, its workspace writable.
fn confine_agent(env: &Env, workspace: &Path) {
    confine_agent_with(env, workspace, "");
}

/// [`confine_agent`], with more of the agent's keys (`extra`, whole lines).
fn confine_agent_with(env: &Env, workspace: &Path, extra: &str) {
    std::fs::write(
        env.policy_path(),
        format!(
            "[actors.agent]\nconfine = true\n{extra}writable = [{:?}]\n",
            workspace.display().to_string()
        ),
    )
    .unwrap();
}

/// A shell function `attempt NAME CMD...` that stores CMD's exit code and
/// output in NAME.rc and NAME.out (in the work directory, which the test
/// makes writable), then the script.
fn attempts(script: &str) -> String {
    format!(
        "attempt() {{ n=$1; shift; \"$@\" > \"$n.out\" 2>&1; echo $? > \"$n.rc\"; }}\nR='{}'\n{script}",
        binary().display()
    )
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

/// The attempt failed, with `error` in its output.
fn refused(dir: &Path, name: &str, error: &str) {
    let (rc, out) = (
        read(dir, &format!("{name}.rc")),
        read(dir, &format!("{name}.out")),
    );
    assert_ne!(rc.trim(), "0", "{name} succeeded in the sandbox: {out}");
    assert!(out.contains(error), "{name}: expected {error:?} in: {out}");
}

#[test]
fn a_confined_agent_cannot_rewrite_the_index_the_policy_or_units_nor_leave_its_cgroup() {
    let env = Env::new();
    let home = HomeDir::new("escapes");
    confine_agent(&env, env.work_dir());
    let state = env.state_dir().display().to_string();
    let policy = env.policy_path().display().to_string();
    let script = attempts(&format!(
        r#"attempt record sh -c 'echo {{}} > "{state}/records/forged.json"'
attempt policy sh -c 'echo "[actors.person]" >> "{policy}"'
attempt systemd_run systemd-run --user --quiet true
attempt busctl busctl --user list
attempt plant sh -c 'mkdir -p ~/.config/systemd/user && echo "[Service]" > ~/.config/systemd/user/evil.service'
attempt environment_d sh -c 'echo LD_PRELOAD=/tmp/x.so > ~/.config/environment.d/evil.conf'
attempt home sh -c 'echo x > "{home}/planted"'
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
attempt cgroup_mkdir mkdir "$cg/../../escape"
attempt cgroup_move sh -c "echo $$ > '$cg/../cgroup.procs'"
attempt unshare unshare --user --map-current-user --cgroup true
attempt private_socket sh -c 'ls "$XDG_RUNTIME_DIR/systemd/private"'
attempt workspace sh -c 'mkdir -p build && echo built > build/out.txt && cat build/out.txt'
attempt refine_proc "$R" --state-dir "{state}" list
exit 3"#,
        home = home.0.display()
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    // The index is hidden now, not only read-only.
    refused(w, "record", "Permission denied");
    refused(w, "policy", "Read-only file system");
    // No bus: systemd-run and busctl cannot reach the user manager.
    refused(w, "systemd_run", "Failed to connect to bus");
    refused(w, "busctl", "Failed to connect to bus");
    refused(w, "plant", "Read-only file system");
    refused(w, "environment_d", "Read-only file system");
    refused(w, "home", "Read-only file system");
    refused(w, "cgroup_mkdir", "Read-only file system");
    refused(w, "cgroup_move", "Read-only file system");
    refused(w, "unshare", "Operation not permitted");
    refused(w, "private_socket", "Permission denied");
    // refine-proc itself needs the API socket in here (issue 11); until
    // then it fails closed, saying why.
    assert_eq!(read(w, "refine_proc.rc").trim(), "5");
    refused(w, "refine_proc", "runs confined");
    // Its own work in its workspace is not in the way.
    assert_eq!(
        read(w, "workspace.rc").trim(),
        "0",
        "{}",
        read(w, "workspace.out")
    );
    assert_eq!(read(w, "workspace.out").trim(), "built");
    assert!(!env.state_dir().join("records/forged.json").exists());
    assert!(!read(w, "policy.toml").contains("[actors.person]"));
    // Its exit was recorded by the hook, outside the sandbox.
    let rec = env.status(&agent.id);
    assert_eq!(rec.state, "failed", "{rec:?}");
    assert_eq!(rec.exit_code, Some(3));
}

#[test]
fn a_confined_agent_writes_only_its_writable_paths_in_the_home() {
    let env = Env::new();
    let home = HomeDir::new("writable");
    let ws = home.0.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    confine_agent(&env, &ws);
    let script = attempts(&format!(
        "attempt in_ws sh -c 'echo ok > \"{ws}/built\"'\nattempt beside sh -c 'echo no > \"{home}/beside\"'",
        ws = ws.display(),
        home = home.0.display()
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    assert_eq!(read(w, "in_ws.rc").trim(), "0", "{}", read(w, "in_ws.out"));
    assert_eq!(read(&ws, "built").trim(), "ok");
    refused(w, "beside", "Read-only file system");
    assert_eq!(env.status(&agent.id).exit_code, Some(0));
}

#[test]
fn a_confined_agents_exit_is_recorded_after_a_daemon_reload() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let fifo = env.work_dir().join("go");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", "read x < go; exit 5"]);
    assert_eq!(agent.state, "running");
    systemctl(&["daemon-reload"]);
    // systemd 252 reads RestrictNamespaces=yes back as "no restriction"
    // after a reload; what refine-proc sends must survive it.
    assert_eq!(show(&agent.unit, "RestrictNamespaces"), "ipc");
    assert_eq!(show(&agent.unit, "PrivateUsers"), "yes");
    assert_eq!(show(&agent.unit, "ProtectControlGroups"), "yes");
    assert_eq!(show(&agent.unit, "NoNewPrivileges"), "yes");
    let hidden = show(&agent.unit, "InaccessiblePaths");
    assert!(
        hidden.contains("/bus") && hidden.contains("/systemd"),
        "{hidden}"
    );
    // The index is hidden (it was read-only; see
    // a_confined_process_cannot_read_other_runs_records).
    assert!(
        hidden.contains(&env.state_dir().display().to_string()),
        "{hidden}"
    );
    let hook = show(&agent.unit, "ExecStopPost");
    assert!(
        hook.contains("record-exit"),
        "no exit hook after the reload: {hook}"
    );
    // Opening the fifo for writing releases the reader: the agent exits 5.
    std::fs::write(&fifo, "go\n").unwrap();
    wait_gone(&agent.unit);
    let rec = env.status(&agent.id);
    assert_eq!(rec.state, "failed", "{rec:?}");
    assert_eq!(rec.exit_code, Some(5));
}

#[test]
fn a_bounded_agent_may_not_pass_loader_or_interpreter_startup_variables() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/true\", \"/bin/true\"]\nenv = [\"RUST_*\", \"CI\"]\n",
    )
    .unwrap();
    let script = attempts(
        r#"attempt preload "$R" run --env LD_PRELOAD=/tmp/evil.so -- /usr/bin/true
attempt bash_env "$R" run --env BASH_ENV=/tmp/evil.sh -- /usr/bin/true
attempt other "$R" run --env HOME=/tmp -- /usr/bin/true
attempt allowed "$R" run --wait --env RUST_LOG=debug --env CI=1 -- /usr/bin/true"#,
    );
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    for (name, var) in [("preload", "LD_PRELOAD"), ("bash_env", "BASH_ENV")] {
        assert_eq!(
            read(w, &format!("{name}.rc")).trim(),
            "7",
            "{}",
            read(w, &format!("{name}.out"))
        );
        let out = read(w, &format!("{name}.out"));
        assert!(out.contains(&format!("may not pass {var}")), "{out}");
        assert!(out.contains("rule env (start-up variables)"), "{out}");
    }
    assert_eq!(read(w, "other.rc").trim(), "7");
    assert!(read(w, "other.out").contains("may not pass HOME (allowed: RUST_*, CI)"));
    assert_eq!(
        read(w, "allowed.rc").trim(),
        "0",
        "{}",
        read(w, "allowed.out")
    );
}

#[test]
fn an_unconfined_agent_runs_without_a_sandbox() {
    let env = Env::new();
    std::fs::write(env.policy_path(), "[actors.quality]\nconfine = true\n").unwrap();
    let agent = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    assert_eq!(show(&agent.unit, "PrivateUsers"), "no");
    assert_eq!(show(&agent.unit, "ProtectControlGroups"), "no");
    let confined = env.run(&["--owner", "quality", "--", "sleep", "600"]);
    assert_eq!(show(&confined.unit, "PrivateUsers"), "yes");
    env.ok(&["stop", &agent.id, &confined.id]);
}

#[test]
fn a_confined_agent_can_still_say_ready_on_the_notify_socket() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let ready: Rec = env
        .ok(&[
            "run",
            "--json",
            "--owner",
            "agent",
            "--ready",
            "notify",
            "--ready-timeout",
            "20s",
            "--wait-ready",
            "--",
            "sh",
            "-c",
            "systemctl --user list-units 2> private.err; systemd-notify --ready; sleep 600",
        ])
        .json();
    assert_eq!(ready.state, "running");
    assert_eq!(show(&ready.unit, "PrivateUsers"), "yes");
    // Only the notify socket was kept: the private socket stays hidden.
    let err = std::fs::read_to_string(env.work_dir().join("private.err")).unwrap();
    assert!(err.contains("Failed to connect to bus"), "{err}");
    env.ok(&["stop", &ready.id]);
}

#[test]
fn doctor_starts_a_confined_probe_unit_and_says_what_remains() {
    let env = Env::new();
    let report: serde_json::Value = env.ok(&["doctor", "--json"]).json();
    let checks = report["checks"].as_array().unwrap();
    let c = checks
        .iter()
        .find(|c| c["name"] == "confinement")
        .expect("a confinement check");
    assert_eq!(c["required"], false);
    let detail = c["detail"].as_str().unwrap();
    // The sandbox gives units what a real login does: the probe starts.
    assert!(matches!(c["status"].as_str(), Some("ok" | "warn")), "{c:#}");
    assert!(detail.contains("a confined unit started"), "{detail}");
    assert!(detail.contains("PrivatePIDs="), "{detail}");
}

// The escapes that go through refine-proc from inside a confined unit: the
// user bus is gone there, so refine-proc finds the daemon's API socket (the
// index names it) and the daemon establishes the caller from the socket's
// peer credentials.

/// The daemon of `env`'s index, its API on a socket in the work directory;
/// stopped when dropped.
struct Daemon {
    unit: String,
}

impl Daemon {
    fn start(env: &Env) -> Daemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unit = format!("rpconfine-{}-{n}.service", std::process::id());
        let dir = env.work_dir().join("run");
        std::fs::create_dir(&dir).unwrap();
        let mut cmd = std::process::Command::new("systemd-run");
        cmd.args(["--user", "--quiet", "--unit", &unit, "-p", "Type=notify"])
            .arg(format!(
                "--setenv=REFINE_PROC_POLICY={}",
                env.policy_path().display()
            ))
            .arg(binary())
            .arg("--state-dir")
            .arg(env.state_dir())
            .args(["daemon", "--socket"])
            .arg(dir.join("api.sock"));
        // Returns after READY=1, which comes once the socket listens.
        let out = output(cmd);
        assert_eq!(
            out.code, 0,
            "the daemon did not start: {}{}",
            out.stdout, out.stderr
        );
        assert!(
            env.state_dir().join("api.socket").exists(),
            "the daemon did not name its socket in the index"
        );
        Daemon { unit }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        systemctl(&["stop", &self.unit]);
    }
}

#[test]
fn a_confined_agent_in_a_new_cgroup_namespace_cannot_stop_a_persons_process() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let _daemon = Daemon::start(&env);
    let victim = env.run(&["--owner", "target-app", "--", "sleep", "600"]);
    let script = attempts(&format!(
        "attempt stop unshare --user --map-current-user --cgroup \"$R\" stop {}",
        victim.id
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    refused(env.work_dir(), "stop", "Operation not permitted");
    assert_eq!(env.status(&victim.id).state, "running");
}

#[test]
fn a_confined_agent_that_tries_to_move_its_cgroup_cannot_stop_a_persons_process() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let _daemon = Daemon::start(&env);
    let victim = env.run(&["--owner", "target-app", "--", "sleep", "600"]);
    let script = attempts(&format!(
        "cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)\nmkdir \"$cg/../../escape\"; echo $$ > \"$cg/../../escape/cgroup.procs\"\nattempt stop \"$R\" stop {}",
        victim.id
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    assert_eq!(read(env.work_dir(), "stop.rc").trim(), "7");
    assert_eq!(env.status(&victim.id).state, "running");
}

#[test]
fn a_confined_agent_starts_reads_and_stops_its_confined_child_through_refine_proc() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let _daemon = Daemon::start(&env);
    let script = attempts(
        r#"attempt run "$R" run --json -- sleep 600
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' run.out | head -1)
attempt logs "$R" logs "$id"
attempt stop "$R" stop "$id"
attempt preload "$R" run --env LD_PRELOAD=/tmp/evil.so -- /usr/bin/true"#,
    );
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    for a in ["run", "logs", "stop"] {
        assert_eq!(
            read(w, &format!("{a}.rc")).trim(),
            "0",
            "{}",
            read(w, &format!("{a}.out"))
        );
    }
    assert_eq!(read(w, "preload.rc").trim(), "7");
    // The daemon acted for the agent: the child is its own, and stopped.
    let child: Rec = serde_json::from_str(&read(w, "run.out")).unwrap();
    assert_eq!(child.owner, "agent");
    assert_ne!(env.status(&child.id).state, "running");
}

#[test]
fn a_confined_process_cannot_read_the_api_token_file() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    // A token file where older versions kept it: the daemon moves it.
    let old = env.state_dir().join("api-tokens.json");
    std::fs::write(&old, "[]").unwrap();
    let _daemon = Daemon::start(&env);
    let secrets = env.state_dir().join("secrets");
    assert!(!old.exists(), "the old token file was not moved");
    let mut c = env.command(&["web", "--token", "control", "--socket"]);
    c.arg(env.work_dir().join("run/api.sock"));
    let token = output(c);
    assert_eq!(token.code, 0, "{}", token.stderr);
    let stored = std::fs::read_to_string(secrets.join("api-tokens.json")).unwrap();
    assert!(
        stored.contains(token.stdout.trim()),
        "the token is not stored"
    );
    let s = secrets.display();
    let script = attempts(&format!(
        r#"attempt read cat "{s}/api-tokens.json"
attempt list ls "{s}"
attempt old cat "{}""#,
        old.display()
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    refused(w, "read", "Permission denied");
    refused(w, "list", "Permission denied");
    // Moved; and the whole index is hidden now.
    refused(w, "old", "Permission denied");
    assert!(!read(w, "read.out").contains(token.stdout.trim()));
}

#[test]
fn a_confined_process_cannot_read_other_runs_records() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let daemon = Daemon::start(&env);
    let secret = "hunter2-d41d8cd9";
    // A person's run with a secret in its environment, and an API launch
    // with an Idempotency-Key (which keeps the request, env included).
    let person = env.run(&[
        "--env",
        &format!("API_TOKEN={secret}"),
        "--",
        "sleep",
        "600",
    ]);
    let socket = env.work_dir().join("run/api.sock");
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--unix-socket"])
        .arg(&socket)
        .args([
            "-H",
            "Idempotency-Key: confine-secret-1",
            "-H",
            "Content-Type: application/json",
        ])
        .args([
            "-X",
            "POST",
            "http://localhost/api/v1/processes",
            "--data-binary",
        ])
        .arg(format!(
            r#"{{"command": ["sleep", "600"], "env": {{"API_TOKEN": "{secret}"}}}}"#
        ));
    let posted = output(c);
    assert_eq!(posted.code, 0, "{posted:?}");
    let posted: Rec = serde_json::from_str(&posted.stdout).expect("the API's record");
    let state = env.state_dir().display().to_string();
    for made in ["records", "idempotency", "events.jsonl"] {
        assert!(env.state_dir().join(made).exists(), "no {made} to try");
    }
    let script = attempts(&format!(
        r#"attempt records ls "{state}/records"
attempt record sh -c 'cat "{state}/records/{person}.json"'
attempt idempotency ls "{state}/idempotency"
attempt events cat "{state}/events.jsonl"
attempt grep grep -rl {secret} "{state}"
attempt run "$R" run --json -- sleep 600
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' run.out | head -1)
attempt list "$R" list
attempt logs "$R" logs "$id"
attempt stop "$R" stop "$id""#,
        person = person.id
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    for name in ["records", "record", "idempotency", "events", "grep"] {
        refused(w, name, "Permission denied");
        let out = read(w, &format!("{name}.out"));
        assert!(!out.contains(secret), "{name}: {out}");
    }
    // Its own work through refine-proc is not in the way: the daemon's
    // socket came with its launch.
    for name in ["run", "list", "logs", "stop"] {
        assert_eq!(
            read(w, &format!("{name}.rc")).trim(),
            "0",
            "{name}: {}",
            read(w, &format!("{name}.out"))
        );
    }
    assert!(
        read(w, "list.out").contains("agent"),
        "{}",
        read(w, "list.out")
    );
    let child: Rec = serde_json::from_str(&read(w, "run.out")).unwrap();
    assert_eq!(child.owner, "agent");
    assert_ne!(env.status(&child.id).state, "running");
    assert_eq!(env.status(&agent.id).exit_code, Some(0));
    env.ok(&["stop", &person.id, &posted.id]);
    drop(daemon);
}

#[test]
fn a_confined_process_sees_the_names_of_other_runs_environment_but_not_their_values() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let daemon = Daemon::start(&env);
    let secret = "hunter2-9e107d9d";
    let person = env.run(&[
        "--env",
        &format!("API_TOKEN={secret}"),
        "--",
        "sleep",
        "600",
    ]);
    // Through the daemon's socket (its refine-proc's only way in): the
    // person's run by id and in the list; and its own child, whose
    // environment it gave and may read.
    let script = attempts(&format!(
        r#"attempt status "$R" status --json {person}
attempt list "$R" list --json
attempt run "$R" run --json --env CHILD_TOKEN=mine-5a105e8b -- sleep 600
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' run.out | head -1)
attempt own "$R" status --json "$id"
attempt stop "$R" stop "$id""#,
        person = person.id
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    for name in ["status", "list", "run", "own", "stop"] {
        assert_eq!(
            read(w, &format!("{name}.rc")).trim(),
            "0",
            "{name}: {}",
            read(w, &format!("{name}.out"))
        );
    }
    for name in ["status", "list"] {
        let out = read(w, &format!("{name}.out"));
        assert!(!out.contains(secret), "{name} shows the value: {out}");
        assert!(out.contains(r#""API_TOKEN": "(hidden)""#), "{name}: {out}");
    }
    let status = read(w, "status.out");
    assert!(
        status.contains("API_TOKEN=(hidden)"),
        "systemd's view: {status}"
    );
    let own = read(w, "own.out");
    assert!(own.contains(r#""CHILD_TOKEN": "mine-5a105e8b""#), "{own}");
    // A person still sees every value.
    let seen = env.ok(&["status", "--json", &person.id]).stdout;
    assert!(seen.contains(secret), "{seen}");
    env.ok(&["stop", &person.id]);
    drop(daemon);
}

#[test]
fn a_confined_process_gets_401_from_the_api_over_loopback_tcp_without_a_token() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let d = super::api::ApiDaemon::start(&env);
    let url = d.url.trim_end_matches('/').to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let victim = env.run(&["--", "sleep", "600"]);
    // The status code only, of a request with the daemon's own Host.
    let script = attempts(&format!(
        r#"code() {{ curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 "$@"; }}
attempt list code "{url}/api/v1/processes"
attempt run code -X POST -H 'Content-Type: application/json' --data-binary '{{"command": ["true"]}}' "{url}/api/v1/processes"
attempt stop code -X POST "{url}/api/v1/processes/{id}/stop"
attempt forged code -H 'Authorization: Bearer forged' "{url}/api/v1/processes"
attempt terminal code -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "{url}/api/v1/processes/{id}/terminal"
attempt mcp code -X POST -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' --data-binary '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}' "{url}/mcp""#,
        id = victim.id
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    for name in ["list", "run", "stop", "forged", "terminal", "mcp"] {
        assert_eq!(
            read(w, &format!("{name}.out")).trim(),
            "401",
            "{name} over TCP without a token"
        );
    }
    assert_eq!(env.status(&victim.id).state, "running");
    assert_eq!(env.list(&[]).len(), 1, "nothing ran: {:?}", env.list(&[]));
    env.ok(&["stop", &victim.id]);
}

#[test]
fn a_confined_process_finds_no_user_manager_on_an_abstract_socket_or_the_system_bus() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    // Every abstract Unix socket it can see, tried as a D-Bus bus: none may
    // carry the user manager (org.freedesktop.systemd1).
    let script = attempts(
        r#"awk 'NR > 1 && $8 ~ /^@/ { print substr($8, 2) }' /proc/net/unix | sort -u > abstract.list
for n in $(cat abstract.list); do
  busctl --address="unix:abstract=$n" --timeout=2 --no-legend list 2>/dev/null | grep -q systemd1 && echo "$n"
done > abstract_managers.out
echo $? > abstract_loop.rc
attempt user_bus busctl --user --timeout=5 list
attempt user_manager_via_system systemctl --user -M "$(id -un)@" --no-pager list-units
attempt system_start busctl --system --timeout=5 call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StartTransientUnit 'ssa(sv)a(sa(sv))' confine-escape.service fail 1 ExecStart 'a(sasb)' 1 /bin/true 1 /bin/true false 0"#,
    );
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    // The probe finds the manager where it is: on the user bus, outside.
    let mut bus = std::process::Command::new("sh");
    bus.args([
        "-c",
        "busctl --user --timeout=5 --no-legend list | grep -q systemd1",
    ]);
    assert_eq!(
        output(bus).code,
        0,
        "busctl does not show the manager outside"
    );
    if read(w, "abstract.list").trim().is_empty() {
        super::common::skip("no abstract Unix socket here to try as a bus (the user bus and system bus parts still ran)");
    }
    assert_eq!(
        read(w, "abstract_managers.out").trim(),
        "",
        "the user manager on an abstract socket (of {})",
        read(w, "abstract.list")
    );
    refused(w, "user_bus", "Failed to connect to bus");
    refused(w, "user_manager_via_system", "");
    // No system bus in a test sandbox, or polkit's refusal on a real one.
    refused(w, "system_start", "");
    assert_eq!(env.status(&agent.id).exit_code, Some(0));
}

#[test]
fn a_confined_process_cannot_reach_a_persons_terminal_session() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    // A person's shell in a terminal session: keys sent to it run outside
    // the sandbox, so its socket must be out of a confined process's reach.
    let session: serde_json::Value = env
        .ok(&["run", "--json", "--pty", "--", "sh", "-c", "sleep 600"])
        .json();
    let socket = session["pty"]["socket"]
        .as_str()
        .expect("pty.socket")
        .to_string();
    let dir = Path::new(&socket).parent().unwrap().display().to_string();
    let connect = |c: &mut std::process::Command| {
        c.args([
            "-sS",
            "--max-time",
            "5",
            "--unix-socket",
            &socket,
            "http://x/",
        ]);
    };
    // From outside, curl reaches the holder (which then drops it): not 7.
    let mut outside = std::process::Command::new("curl");
    connect(&mut outside);
    assert_ne!(
        output(outside).code,
        7,
        "the test cannot tell a refused connect"
    );
    let script = attempts(&format!(
        "attempt list ls \"{dir}\"\nattempt connect curl -sS --max-time 5 --unix-socket \"{socket}\" http://x/"
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let w = env.work_dir();
    refused(w, "list", "Permission denied");
    // curl's "Couldn't connect to server".
    assert_eq!(
        read(w, "connect.rc").trim(),
        "7",
        "{}",
        read(w, "connect.out")
    );
    env.ok(&["stop", session["id"].as_str().unwrap()]);
}

/// Regression: `run --pty` by a confined actor failed (the holder inside
/// the sandbox could not create its socket in the hidden session
/// directory). Now it runs; `send` and `screen` through the API answer its
/// prompt, its exit is recorded, and from inside it (and from its
/// launcher) no session socket is reachable: not a person's, not another
/// confined session's, not its own.
#[test]
fn a_confined_agent_runs_a_terminal_session_and_answers_its_prompt_through_the_api() {
    let env = Env::new();
    let w = env.work_dir();
    confine_agent(&env, w);
    let _daemon = Daemon::start(&env);
    let person: serde_json::Value = env
        .ok(&["run", "--json", "--pty", "--", "sh", "-c", "sleep 600"])
        .json();
    let person_socket = person["pty"]["socket"].as_str().expect("pty.socket");
    // The session's program: the prompt, then a connect to each socket
    // (python3 prints the errno's text), then exit 3.
    std::fs::write(
        w.join("session.sh"),
        r#"printf 'name? '; read n; echo "hello $n"
probe() { /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$2" > "s-$1.out" 2>&1; echo $? > "s-$1.rc"; }
probe person "$1"; probe other "$2"; probe own "$(dirname "$1")/$REFINE_ID.sock"
exit 3
"#,
    )
    .unwrap();
    let script = attempts(&format!(
        r#"connect() {{ /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1"; }}
sock() {{ sed -n 's/.*"socket": *"\([^"]*\)".*/\1/p' "$1" | head -1; }}
attempt other "$R" run --json --pty -- sleep 600
attempt run "$R" run --json --pty -- sh "{w}/session.sh" "{person_socket}" "$(sock other.out)"
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' run.out | head -1)
attempt prompt "$R" screen "$id" --wait-for 'name?' --timeout 30s
attempt send "$R" send "$id" bob --key Enter
attempt answer "$R" screen --json "$id" --wait-for 'hello bob' --timeout 30s
attempt l-person connect "{person_socket}"
attempt l-own connect "$(sock run.out)""#,
        w = w.display()
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    for a in ["other", "run", "prompt", "send", "answer"] {
        assert_eq!(
            read(w, &format!("{a}.rc")).trim(),
            "0",
            "{a}: {}",
            read(w, &format!("{a}.out"))
        );
    }
    let answer: serde_json::Value = serde_json::from_str(&read(w, "answer.out")).unwrap();
    let lines: Vec<&str> = answer["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(lines.contains(&"hello bob"), "{lines:?}");
    let session: Rec = serde_json::from_str(&read(w, "run.out")).unwrap();
    assert_eq!(session.owner, "agent");
    wait_gone(&session.unit);
    assert_eq!(env.status(&session.id).exit_code, Some(3));
    // The whole session directory is hidden in every confined unit: its
    // files are never reached, so every connect is EACCES on the directory.
    for probe in ["s-person", "s-other", "s-own", "l-person", "l-own"] {
        refused(w, probe, "Permission denied");
    }
    // The other confined session is alive (its holder got its socket).
    let other: Rec = serde_json::from_str(&read(w, "other.out")).unwrap();
    assert_eq!(env.status(&other.id).state, "running");
    env.ok(&["stop", &other.id, person["id"].as_str().unwrap()]);
}

/// A confined terminal session's socket comes from the unit's fd store:
/// it must outlive a daemon-reload (whose transient file 252 reads back
/// without the privileged ExecStartPre=) and a restart by systemd, and the
/// exits are recorded.
#[test]
fn a_confined_terminal_session_keeps_its_socket_across_a_daemon_reload_and_a_restart() {
    let env = Env::new();
    confine_agent(&env, env.work_dir());
    let s = env.run(&[
        "--owner",
        "agent",
        "--restart",
        "on-failure",
        "--pty",
        "--",
        "sh",
        "-c",
        "printf 'go? '; read x; exit 4",
    ]);
    let ask = |id: &str| env.ok(&["screen", id, "--wait-for", "go?", "--timeout", "20s"]);
    ask(&s.id);
    systemctl(&["daemon-reload"]);
    ask(&s.id);
    env.ok(&["send", &s.id, "x\n"]);
    // systemd restarts it (exit 4 is a failure): the same socket again.
    wait_for(&s.unit, |info| {
        info.is_some_and(|i| i.n_restarts >= 1 && i.state.active_state == "active")
    });
    ask(&s.id);
    env.ok(&["stop", &s.id]);
    wait_gone(&s.unit);
    let rec = env.status(&s.id);
    assert_ne!(rec.state, "running", "{rec:?}");
}

/// Regression: a confined process could open a person's terminals
/// (`/dev/pts/N`, the user's own, mode 0620): read the keys typed there
/// and write to the screen, outside its sandbox. Tried on a refine-proc
/// session's terminal and on a terminal of the test's own (a person's
/// shell); the devices of a desktop seat (sound, video) are hidden too.
#[test]
fn a_confined_process_cannot_open_a_persons_terminal_device() {
    let env = Env::new();
    let w = env.work_dir();
    confine_agent(&env, w);
    let session: serde_json::Value = env
        .ok(&[
            "run",
            "--json",
            "--pty",
            "--",
            "sh",
            "-c",
            &format!("tty > {}/session.tty; sleep 600", w.display()),
        ])
        .json();
    // A terminal of the person's own, outside any unit.
    let (master, slave) = nix_openpty();
    use std::os::fd::AsRawFd as _;
    let person_tty = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .unwrap()
        .display()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let session_tty = loop {
        let t = std::fs::read_to_string(w.join("session.tty")).unwrap_or_default();
        if t.ends_with('\n') {
            break t.trim().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no session.tty");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(session_tty.starts_with("/dev/pts/"), "{session_tty}");
    let open = "/usr/bin/python3 -c 'import os,sys; os.close(os.open(sys.argv[1], os.O_RDWR|os.O_NOCTTY))'";
    let script = attempts(&format!(
        "attempt session {open} \"{session_tty}\"\nattempt person {open} \"{person_tty}\"\nattempt list ls /dev/pts"
    ));
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    for a in ["session", "person"] {
        let (rc, out) = (read(w, &format!("{a}.rc")), read(w, &format!("{a}.out")));
        assert_ne!(
            rc.trim(),
            "0",
            "{a}'s terminal opened in the sandbox: {out}"
        );
    }
    refused(w, "list", "");
    drop((master, slave));
    env.ok(&["stop", session["id"].as_str().unwrap()]);
}

/// A terminal pair of the test's own: (master, slave).
fn nix_openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two descriptors; no name, termios or size.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    use std::os::fd::FromRawFd as _;
    // SAFETY: openpty returned two fds that nothing else owns.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(m),
            std::os::fd::OwnedFd::from_raw_fd(s),
        )
    }
}

/// A desktop gives the logged-in user the microphone, the camera, the GPU
/// and some USB devices (logind's uaccess): a confined process must not
/// reach them. Its /dev holds only the pseudo devices; here, every device
/// of the machine's /dev (the test's host has no desktop: those that
/// exist, all root's) is missing inside, and the pseudo devices work.
/// With the policy's `devices = true` the machine's /dev stays.
#[test]
fn a_confined_process_sees_none_of_the_machines_devices() {
    let env = Env::new();
    let w = env.work_dir();
    confine_agent(&env, w);
    let pseudo = [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "console",
    ];
    let machine: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt as _;
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !pseudo.contains(&n.as_str()))
        .collect();
    if machine.is_empty() {
        super::common::skip("no device in /dev here but the pseudo devices");
    }
    let script =
        attempts("ls -A /dev > dev.list; attempt null sh -c 'head -c 4 /dev/urandom > /dev/null'");
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let inside = read(w, "dev.list");
    let seen: Vec<&String> = machine
        .iter()
        .filter(|d| inside.lines().any(|l| l == d.as_str()))
        .collect();
    assert!(
        seen.is_empty(),
        "the machine's {seen:?} in the sandbox's /dev:\n{inside}"
    );
    assert_eq!(read(w, "null.rc").trim(), "0", "{}", read(w, "null.out"));

    // devices = true: the machine's /dev, as it is.
    confine_agent_with(&env, w, "devices = true\n");
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        "ls -A /dev > dev.list",
    ]);
    wait_gone(&agent.unit);
    let inside = read(w, "dev.list");
    assert!(
        machine
            .iter()
            .all(|d| inside.lines().any(|l| l == d.as_str())),
        "devices = true hid some of {machine:?}:\n{inside}"
    );
}
