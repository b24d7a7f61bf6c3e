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

/// Fills the file system under `dir` until a write fails with ENOSPC;
/// returns the filler file (remove it to make room again).
fn fill_up(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![b'x'; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

#[test]
fn a_full_state_disk_does_not_block_stop_or_kill() {
    // Issue 10.8: with the state directory full, `stop` and `kill
    // --signal KILL` failed with ENOSPC and the unit kept running.
    let Some(small) = std::env::var_os("REFINE_PROC_SMALL_FS") else {
        eprintln!("skipping: not in the test sandbox (REFINE_PROC_SMALL_FS unset)");
        return;
    };
    let mut env = Env::new();
    env.state = tempfile::tempdir_in(&small).unwrap();
    let stopped = env.run(&["--", "sleep", "600"]);
    let killed = env.run(&["--", "sleep", "600"]);
    let filler = fill_up(std::path::Path::new(&small));
    // Really full: a record update cannot be written.
    let probe = std::fs::write(env.state_dir().join("probe"), vec![0u8; 8192]);
    assert_eq!(
        probe.unwrap_err().raw_os_error(),
        Some(libc::ENOSPC),
        "the file system is full"
    );
    let out = env.cmd(&["stop", "--json", &stopped.id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not record") && out.stderr.contains("No space left"),
        "{}",
        out.stderr
    );
    let out = env.cmd(&["kill", "--signal", "KILL", "--json", &killed.id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    wait_gone(&stopped.unit);
    wait_gone(&killed.unit);
    // With room again, both read as ended (what could not be written is
    std::fs::remove_file(filler).unwrap();
    // found again from systemd and the journal: lost, with the signal).
    for (r, signal) in [(&stopped, "TERM"), (&killed, "KILL")] {
        let s = env.status(&r.id);
        assert_eq!(s.state, "lost", "{s:?}");
        // The signal comes from the journal, which journald may not have
        // written yet (it is read asynchronously): absent, never another.
        assert!(
            s.exit_signal.as_deref().is_none_or(|x| x == signal),
            "{s:?}"
        );
    }
}

#[test]
fn a_torn_multibyte_event_line_does_not_make_events_fail() {
    // Issue 10.7: `events` exited 6 with "stream did not contain valid UTF-8".
    let env = Env::new();
    let r = env.run(&["--label", "café", "--", "true"]);
    wait_gone(&r.unit);
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(env.state_dir().join("events.jsonl"))
        .unwrap();
    f.write_all(b"{\"event\": \"started\", \"label\": \"caf\xc3\n")
        .unwrap();
    let out = env.ok(&["events", "--json"]);
    assert!(
        out.stderr.contains("skipped 1 unreadable"),
        "{}",
        out.stderr
    );
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["event"] == "started" && e["id"] == r.id.as_str()));
}

#[test]
fn a_symlink_planted_at_daemon_lock_or_events_jsonl_is_not_followed() {
    // Issue 10.9: a link made the daemon write its pid into another file.
    let env = Env::new();
    env.ok(&["list"]);
    let victim = env.work_dir().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    for name in ["daemon.lock", "events.jsonl"] {
        std::os::unix::fs::symlink(&victim, env.state_dir().join(name)).unwrap();
    }
    let out = env.cmd(&["daemon"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    // An event that cannot be appended is a warning; the run goes ahead.
    let r = env.run(&["--", "true"]);
    wait_gone(&r.unit);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let out = env.cmd(&["events"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
}

#[test]
fn a_directory_in_place_of_a_record_does_not_break_list_all() {
    // Issue 10.10: `records/ID.json/` made `list --all` fail for every record.
    let env = Env::new();
    let r = env.run(&["--", "sleep", "600"]);
    std::fs::create_dir(env.state_dir().join("records/abcdefgh.json")).unwrap();
    let out = env.ok(&["list", "--all", "--json"]);
    assert!(
        out.stderr.contains("abcdefgh") && out.stderr.contains("directory"),
        "{}",
        out.stderr
    );
    let listed: Vec<Rec> = out.json();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, r.id);
}

#[test]
fn a_huge_record_file_is_quarantined_not_read_into_memory() {
    // Issue 10.12: a 200 MB record made `status` use 790 MB of memory.
    let env = Env::new();
    let r = env.run(&["--label", "big", "--", "sleep", "600"]);
    let path = env.state_dir().join(format!("records/{}.json", r.id));
    // Sparse: 200 MB that cost no disk.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let mut cmd = env.command(&["status", "--json", &r.id]);
    let (out, max_rss_kib) = output_with_max_rss(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("209715200 bytes"), "{}", out.stderr);
    let s: Rec = out.json();
    assert_eq!((s.label.as_str(), s.state.as_str()), ("big", "running"));
    eprintln!("status of a 200 MB record: peak RSS {max_rss_kib} KiB");
    assert!(max_rss_kib < 64 * 1024, "status used {max_rss_kib} KiB");
}

/// Runs `cmd` (no deadline: it is quick) and returns its output and its
/// peak resident memory. Measured by a small python3 between us and it:
/// at exec, Linux carries the peak RSS of the forking process into the
/// child's `ru_maxrss`, so a child spawned straight from this (large,
/// many-threaded) test process would report our memory, not its own.
fn output_with_max_rss(cmd: &mut std::process::Command) -> (Out, i64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = std::process::Command::new("python3");
    wrapped
        .arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             rc = subprocess.call(sys.argv[2:])\n\
             open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
             sys.exit(rc)",
        )
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = output(wrapped);
    let kib = std::fs::read_to_string(report.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (out, kib)
}

#[test]
fn a_record_rebuilt_after_quarantine_keeps_who_asked_and_its_meta() {
    // Issue 10.11: rebuilt, a record of a uid-1001 caller said
    // `requested_by.uid: 0` and had lost its --meta.
    let env = Env::new();
    let r = env.run(&[
        "--meta",
        "ticket=T-7",
        "--meta",
        "note=two\nlines",
        "--details",
        "why it runs",
        "--",
        "sleep",
        "600",
    ]);
    let path = env.state_dir().join(format!("records/{}.json", r.id));
    let before: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::write(&path, b"{\"id\": \"trunc").unwrap();
    let out = env.ok(&["status", "--json", &r.id]);
    assert!(out.stderr.contains("rebuilt"), "{}", out.stderr);
    let after: serde_json::Value = out.json();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(after["requested_by"]["uid"], uid);
    for key in ["requested_by", "details"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["metadata"]["extra"], before["metadata"]["extra"]);
    assert_eq!(after["metadata"]["extra"]["note"], "two\nlines");
}

#[test]
fn a_run_whose_record_would_be_over_the_cap_is_refused_before_it_starts() {
    // The other half of issue 10.12: what is written is always readable.
    let env = Env::new();
    let value = "v".repeat(60_000);
    let envs: Vec<String> = (0..20).map(|i| format!("BIG{i}={value}")).collect();
    let mut args = vec!["run"];
    for e in &envs {
        args.extend(["--env", e.as_str()]);
    }
    args.extend(["--", "sleep", "600"]);
    let out = env.cmd(&args);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("more than the 1048576"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(
        env.list(&["--all"]).is_empty(),
        "nothing was recorded or started"
    );
}
