//! The index on disk: private, durable, never silently overwritten, rebuilt
//! from systemd when lost, and not read wholesale by everyday commands.

use std::os::unix::fs::PermissionsExt;

use super::common::*;

#[test]
fn the_index_is_private_to_the_user() {
    let env = Env::new();
    let r = env.run(&["--", "true"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = env.state_dir();
    assert_eq!(mode(&dir.join("records")), 0o700);
    assert_eq!(mode(&dir.join(format!("records/{}.json", r.id))), 0o600);
}

#[test]
fn a_corrupt_record_is_quarantined_and_rebuilt_from_systemd() {
    let env = Env::new();
    let r = env.run(&[
        "--owner",
        "agent",
        "--label",
        "keep me",
        "--workflow",
        "wf-9",
        "--",
        "sleep",
        "600",
    ]);
    let path = env.state_dir().join(format!("records/{}.json", r.id));
    std::fs::write(&path, b"{\"id\": \"trunc").unwrap();
    let out = env.ok(&["status", "--json", &r.id]);
    assert!(
        out.stderr.contains("unreadable") && out.stderr.contains("quarantine"),
        "{}",
        out.stderr
    );
    let s: Rec = out.json();
    assert_eq!(
        (s.owner.as_str(), s.label.as_str(), s.state.as_str()),
        ("agent", "keep me", "running")
    );
    assert_eq!(s.metadata.workflow.as_deref(), Some("wf-9"));
    assert_eq!(s.command, vec!["sleep", "600"]);
    // The bad bytes are kept for inspection, not overwritten.
    let quarantined: Vec<_> = std::fs::read_dir(env.state_dir().join("quarantine"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(quarantined, vec![b"{\"id\": \"trunc".to_vec()]);
    // The rebuilt record is stored: the next call is quiet.
    assert!(env.ok(&["status", &r.id]).stderr.is_empty());
}

#[test]
fn an_exit_is_recorded_even_after_the_index_was_deleted() {
    let env = Env::new();
    // The process blocks on a fifo until the test lets it end.
    let fifo = env.work_dir().join("go");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let r = env.run(&[
        "--owner",
        "maintenance",
        "--label",
        "vacuum",
        "--workflow",
        "nightly",
        "--",
        "sh",
        "-c",
        "read x < go; exit 5",
    ]);
    std::fs::remove_dir_all(env.state_dir().join("records")).unwrap();
    std::fs::create_dir(env.state_dir().join("records")).unwrap();
    std::fs::write(&fifo, b"go\n").unwrap();
    wait_gone(&r.unit);
    // Only the exit hook ran: it rebuilt the record from the unit's environment.
    let s = env.status(&r.id);
    assert_eq!(
        (s.owner.as_str(), s.label.as_str()),
        ("maintenance", "vacuum")
    );
    assert_eq!(s.metadata.workflow.as_deref(), Some("nightly"));
    assert_eq!((s.state.as_str(), s.exit_code), ("failed", Some(5)));
    // Without its command it cannot be started again: refused, not a crash.
    let out = env.cmd(&["restart", &r.id]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("refine-proc run"), "{}", out.stderr);
}

#[test]
fn a_running_unit_missing_from_the_index_is_listed_again() {
    let env = Env::new();
    let r = env.run(&[
        "--owner", "import", "--label", "extract", "--", "sleep", "600",
    ]);
    std::fs::remove_file(env.state_dir().join(format!("records/{}.json", r.id))).unwrap();
    let out = env.ok(&["list", "--json"]);
    let listed: Vec<Rec> = out.json();
    assert_eq!(listed.len(), 1, "{}", out.stderr);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].label.as_str()),
        (r.id.as_str(), "extract")
    );
    assert!(out.stderr.contains("rebuilt"), "{}", out.stderr);
    // Another index sharing the manager does not claim it.
    let other = Env::new();
    assert!(other.list(&[]).iter().all(|x| x.id != r.id));
    assert_eq!(other.cmd(&["status", &r.id]).code, 3);
}

#[test]
fn list_without_all_reads_only_running_records_not_the_history() {
    let env = Env::new();
    let live = env.run(&["--", "sleep", "600"]);
    // History that list must not even open: unreadable files would be
    // quarantined the moment they are read.
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    for i in 0..200usize {
        let id: String = (0..8)
            .map(|d| ALPHABET[(i / 31usize.pow(d)) % 31] as char)
            .collect();
        std::fs::write(
            env.state_dir().join(format!("records/{id}.json")),
            b"garbage",
        )
        .unwrap();
    }
    assert_eq!(env.list(&[]).len(), 1);
    env.status(&live.id);
    let records = std::fs::read_dir(env.state_dir().join("records"))
        .unwrap()
        .count();
    assert_eq!(records, 201, "list or status read the history");
    // --all does read it, and reports the bad files instead of hiding them.
    let out = env.ok(&["list", "--all", "--json"]);
    assert!(out.stderr.contains("unreadable"), "{}", out.stderr);
    assert_eq!(out.json::<Vec<Rec>>().len(), 1);
}
