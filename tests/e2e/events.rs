//! The event history: every lifecycle transition, with who caused it.

use super::common::*;

fn events(env: &Env, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["events", "--json"];
    all.extend_from_slice(args);
    env.ok(&all)
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_run_that_fails_leaves_started_and_failed_with_the_exit() {
    let env = Env::new();
    let r = env.run(&[
        "--owner",
        "agent",
        "--workflow",
        "wf-e",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    wait_gone(&r.unit);
    let history = events(&env, &["--id", &r.id]);
    assert_eq!(kinds(&history), vec!["started", "failed"]);
    assert_eq!(history[0]["actor"], "person");
    assert_eq!(history[0]["owner"], "agent");
    assert_eq!(history[0]["workflow"], "wf-e");
    assert_eq!(history[1]["actor"], "systemd");
    assert_eq!(history[1]["exit_code"], 3);
    assert_eq!(history[1]["result"], "exit-code");
}

#[test]
fn pause_resume_kill_and_the_end_are_in_the_history_in_order() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    env.ok(&["pause", &r.id]);
    env.ok(&["resume", &r.id]);
    env.ok(&["kill", "--signal", "KILL", &r.id]);
    wait_gone(&r.unit);
    let history = events(&env, &["--id", &r.id]);
    assert_eq!(
        kinds(&history),
        vec!["started", "paused", "resumed", "killed", "stopped"]
    );
    assert_eq!(history[1]["by"], "id");
    assert_eq!(history[3]["signal"], 9);
    assert_eq!(history[4]["exit_signal"], "KILL");
    // Filters and the table for people.
    let other = env.run(&["--owner", "quality", "--", "true"]);
    wait_gone(&other.unit);
    assert_eq!(
        kinds(&events(&env, &["--owner", "quality"])),
        vec!["started", "exited"]
    );
    assert_eq!(kinds(&events(&env, &["-n", "1"])), vec!["exited"]);
    let table = env.ok(&["events"]).stdout;
    assert!(
        table.contains("TIME") && table.contains("paused") && table.contains(&r.id),
        "{table}"
    );
}

/// `events --follow --json` in the background; its lines arrive on a channel.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Follower {
    fn start(env: &Env, args: &[&str]) -> Follower {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut all = vec!["events", "--follow", "--json"];
        all.extend_from_slice(args);
        let mut child = env
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Live events are watched once it says so on stderr.
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        assert!(first.contains("following events"), "{first}");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(|l| l.ok()) {
                let v = serde_json::from_str(&line).expect("one JSON object a line");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next event, within a deadline (a hang fails the test).
    fn next(&self) -> serde_json::Value {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("an event within 30 s")
    }

    fn next_kind(&self) -> (String, serde_json::Value) {
        let e = self.next();
        eprintln!("follower: {e}");
        (e["event"].as_str().unwrap().to_string(), e)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_reports_transitions_live_from_systemd_and_the_rest_from_the_history() {
    let env = Env::new();
    let old = env.run(&["--", "true"]);
    wait_gone(&old.unit);
    // -n 0: nothing of the history, only what happens from now on.
    let f = Follower::start(&env, &["-n", "0"]);
    let r = env.run(&["--owner", "agent", "--", "sh", "-c", "sleep 600"]);
    let (kind, e) = f.next_kind();
    assert_eq!(
        (kind.as_str(), e["id"].as_str()),
        ("started", Some(r.id.as_str()))
    );
    // Pauses come from refine-proc's record (systemd 252 signals none).
    env.ok(&["pause", &r.id]);
    assert_eq!(f.next_kind().0, "paused");
    env.ok(&["resume", &r.id]);
    assert_eq!(f.next_kind().0, "resumed");
    // Known only to refine-proc: a limit change, from the history file.
    env.ok(&["set", &r.id, "--memory-max", "1G"]);
    assert_eq!(f.next_kind().0, "limits-changed");
    // Stopped behind refine-proc's back: the signal is the source.
    systemctl(&["stop", &r.unit]);
    let (kind, e) = f.next_kind();
    assert_eq!(kind, "stopped");
    assert_eq!(e["exit_signal"], "TERM");
    assert_eq!(e["actor"], "systemd");
    let failing = env.run(&["--", "sh", "-c", "exit 3"]);
    let got: Vec<(String, serde_json::Value)> = (0..2).map(|_| f.next_kind()).collect();
    assert_eq!(got[0].0, "started");
    assert_eq!(got[1].0, "failed");
    assert_eq!(got[1].1["id"], failing.id.as_str());
    assert_eq!(got[1].1["exit_code"], 3);
    // Each transition once: nothing more is pending.
    let extra = f.lines.recv_timeout(std::time::Duration::from_millis(500));
    assert!(extra.is_err(), "no duplicates, but also got {extra:?}");
}

#[test]
fn follow_prints_the_history_first_and_keeps_to_its_filter() {
    let env = Env::new();
    let a = env.run(&["--", "true"]);
    wait_gone(&a.unit);
    let f = Follower::start(&env, &["--owner", "agent"]);
    let h = Follower::start(&env, &[]);
    assert_eq!(h.next_kind().0, "started", "the history comes first");
    assert_eq!(h.next_kind().0, "exited");
    let b = env.run(&["--owner", "agent", "--", "true"]);
    let (kind, e) = f.next_kind();
    assert_eq!(
        (kind.as_str(), e["id"].as_str()),
        ("started", Some(b.id.as_str()))
    );
    assert_eq!(f.next_kind().0, "exited");
}

#[test]
fn follow_reports_a_refine_proc_restart_of_a_running_process() {
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    let f = Follower::start(&env, &["-n", "0", "--id", &r.id]);
    env.ok(&["restart", &r.id]);
    // The action comes from the history file; the stop and start of the
    // unit from systemd's signals, in whatever order they arrive.
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k| k == "restarted") {
        kinds.push(f.next_kind().0);
    }
    assert!(
        kinds.iter().filter(|k| *k == "restarted").count() == 1,
        "{kinds:?}"
    );
}
