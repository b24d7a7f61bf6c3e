//! `recover`: the index is deleted or unreadable, and the records come back
//! from systemd (running units) and the journal (ended runs).

use std::collections::BTreeMap;

use super::common::*;

fn recover(env: &Env) -> serde_json::Value {
    env.ok(&["recover", "--json"]).json()
}

fn rebuilt(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    v["rebuilt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// A running process with everything a record holds, two ended ones, and
/// a forgotten one.
struct World {
    running: Rec,
    failed: Rec,
    exited: Rec,
    forgotten: Rec,
}

fn world(env: &Env) -> World {
    let running = env.run(&[
        "--owner",
        "agent",
        "--label",
        "long job",
        "--details",
        "why: it matters",
        "--workflow",
        "wf-r",
        "--meta",
        "ticket=T-1",
        "--memory-max",
        "64M",
        "--env",
        "FOO=bar",
        "--",
        "sleep",
        "600",
    ]);
    let failed = env.run(&[
        "--owner", "quality", "--label", "check", "--", "sh", "-c", "exit 3",
    ]);
    let exited = env.run(&["--label", "ok", "--", "true"]);
    let forgotten = env.run(&["--label", "gone", "--", "true"]);
    for r in [&failed, &exited, &forgotten] {
        wait_gone(&r.unit);
    }
    env.ok(&["forget", &forgotten.id]);
    // journald stores entries asynchronously: recover reads what is stored.
    for (r, event) in [
        (&running, "start"),
        (&failed, "exit"),
        (&exited, "exit"),
        (&forgotten, "forget"),
    ] {
        wait_journal_entry(&r.id, event);
    }
    World {
        running,
        failed,
        exited,
        forgotten,
    }
}

/// Waits until journald has stored refine-proc's `event` entry for `id`.
/// There is no signal for "stored" an unprivileged user can wait on (see
/// wait_journal_lines), so this looks again, briefly, with a deadline.
fn wait_journal_entry(id: &str, event: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut cmd = std::process::Command::new("journalctl");
        cmd.args([
            "--no-pager",
            "-q",
            "-o",
            "cat",
            "SYSLOG_IDENTIFIER=refine-proc",
            &format!("REFINE_ID={id}"),
            &format!("REFINE_EVENT={event}"),
        ]);
        if !output(cmd).stdout.trim().is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "journald did not store the {event} entry of {id}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn check_rebuilt(w: &World, got: &BTreeMap<String, serde_json::Value>) {
    assert!(
        !got.contains_key(&w.forgotten.id),
        "forgotten stays forgotten"
    );
    let r = &got[&w.running.id];
    assert_eq!(r["state"], "running");
    assert_eq!(r["recovered_from"], "systemd+journal");
    assert_eq!(
        (&r["owner"], &r["label"], &r["details"]),
        (
            &"agent".into(),
            &"long job".into(),
            &"why: it matters".into()
        )
    );
    assert_eq!(r["metadata"]["workflow"], "wf-r");
    assert_eq!(r["metadata"]["extra"]["ticket"], "T-1");
    assert_eq!(r["limits"]["memory_max"], 64 << 20);
    assert_eq!(
        r["environment"]["FOO"], "bar",
        "from the unit, not the journal"
    );
    assert_eq!(r["command"], serde_json::json!(["sleep", "600"]));
    assert_eq!(r["pid"], w.running.pid.unwrap());
    let f = &got[&w.failed.id];
    assert_eq!(
        (
            &f["state"],
            &f["exit_code"],
            &f["result"],
            &f["exit_source"]
        ),
        (
            &"failed".into(),
            &3.into(),
            &"exit-code".into(),
            &"journal".into()
        ),
        "{f:#}"
    );
    assert_eq!(
        (&f["owner"], &f["label"]),
        (&"quality".into(), &"check".into())
    );
    assert_eq!(f["recovered_from"], "journal");
    let e = &got[&w.exited.id];
    assert_eq!(
        (&e["state"], &e["exit_code"], &e["exit_source"]),
        (&"exited".into(), &0.into(), &"journal".into()),
        "{e:#}"
    );
}

#[test]
fn recover_rebuilds_a_deleted_index_from_systemd_and_the_journal() {
    let env = Env::new();
    let w = world(&env);
    let before: BTreeMap<String, Rec> = env
        .list(&["--all"])
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    let out = recover(&env);
    let got = rebuilt(&out);
    assert_eq!(got.len(), 3, "{out:#}");
    check_rebuilt(&w, &got);
    assert!(out["not_rebuilt"].as_array().unwrap().is_empty(), "{out:#}");
    // The index now says what it said before, field by field that matters.
    let after = env.list(&["--all"]);
    assert_eq!(after.len(), before.len());
    for a in after {
        let b = &before[&a.id];
        assert_eq!(
            (
                &a.unit,
                &a.owner,
                &a.label,
                &a.state,
                a.exit_code,
                &a.command
            ),
            (
                &b.unit,
                &b.owner,
                &b.label,
                &b.state,
                b.exit_code,
                &b.command
            )
        );
        assert_eq!(a.metadata.workflow, b.metadata.workflow);
    }
    // Nothing left to do a second time; nothing overwritten.
    let again = recover(&env);
    assert!(rebuilt(&again).is_empty(), "{again:#}");
    assert_eq!(again["intact"], 3);
    // The table for people.
    let text = env.ok(&["recover"]).stdout;
    assert!(
        text.contains("rebuilt no records") && text.contains("intact"),
        "{text}"
    );
    // Another index sharing the manager claims none of it.
    let other = Env::new();
    let theirs = recover(&other);
    assert!(rebuilt(&theirs).is_empty(), "{theirs:#}");
}

#[test]
fn recover_rebuilds_corrupt_records_and_says_what_it_rebuilt() {
    let env = Env::new();
    let w = world(&env);
    for r in [&w.running, &w.failed, &w.exited] {
        std::fs::write(
            env.state_dir().join(format!("records/{}.json", r.id)),
            b"{\"id\": \"trunc",
        )
        .unwrap();
    }
    let text = env.ok(&["recover"]).stdout;
    assert!(
        text.contains("rebuilt 3 records") && text.contains(&w.running.id),
        "{text}"
    );
    let s = env.status(&w.failed.id);
    assert_eq!((s.state.as_str(), s.exit_code), ("failed", Some(3)));
    let s = env.status(&w.running.id);
    assert_eq!(
        (s.state.as_str(), s.label.as_str()),
        ("running", "long job")
    );
    // The bad bytes were kept aside.
    let quarantined = std::fs::read_dir(env.state_dir().join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 3);
    // A recovered process is a process like any other.
    env.ok(&["stop", &w.running.id]);
    assert_eq!(env.status(&w.running.id).state, "stopped");
}
