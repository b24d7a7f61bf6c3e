//! Unit tests of the index.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::health::HealthState;
use crate::model::{Owner, Record, Timestamp, RECORD_SCHEMA};
use crate::pauses::Pauses;

use super::*;
use crate::model::State;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn record(id: &str) -> Record {
    serde_json::from_value(serde_json::json!({
        "schema": RECORD_SCHEMA, "id": id,
        "unit": crate::model::unit_name(Owner::Agent, id),
        "owner": "agent", "state": "running"
    }))
    .unwrap()
}

#[test]
fn creates_private_directories_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path().join("state")).unwrap();
    index.create(&record("abcd2345")).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(index.dir()), 0o700);
    assert_eq!(mode(&index.record_path("abcd2345")), 0o600);
    assert_eq!(mode(&index.secrets_dir()), 0o700);
    assert_eq!(index.ids().unwrap(), vec!["abcd2345"]);
}

#[test]
fn create_never_overwrites_an_existing_record() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index.create(&record("abcd2345")).unwrap();
    assert!(index.create(&record("abcd2345")).is_err());
    // No temp files are left behind either way.
    let names: Vec<_> = fs::read_dir(index.records_dir()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_corrupt_record_is_quarantined_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    fs::write(index.record_path("abcd2345"), b"{\"id\": \"abcd23").unwrap();
    let Loaded::Quarantined { path, .. } = index.load("abcd2345").unwrap() else {
        panic!("expected quarantine")
    };
    assert_eq!(fs::read(&path).unwrap(), b"{\"id\": \"abcd23");
    assert!(matches!(index.load("abcd2345").unwrap(), Loaded::Missing));
    assert!(index.update("abcd2345", |_| {}).unwrap().is_none());
}

#[test]
fn concurrent_updates_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index.create(&record("abcd2345")).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    index.update("abcd2345", |r| r.restart.count += 1).unwrap();
                }
            });
        }
    });
    let Loaded::Found(r) = index.load("abcd2345").unwrap() else {
        panic!()
    };
    assert_eq!(r.restart.count, 200);
    assert_eq!(r.state, State::Running);
}

#[test]
fn a_record_from_a_newer_schema_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    let newer = br#"{"schema": 9, "id": "abcd2345", "state": "hibernating"}"#;
    fs::write(index.record_path("abcd2345"), newer).unwrap();
    assert!(matches!(
        index.load("abcd2345").unwrap(),
        Loaded::Newer { schema: 9 }
    ));
    assert!(index.update("abcd2345", |_| {}).is_err());
    assert_eq!(fs::read(index.record_path("abcd2345")).unwrap(), newer);
}

#[test]
fn one_index_has_one_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let real = Index::open(tmp.path().join("state")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("state"), tmp.path().join("link")).unwrap();
    let via_link = Index::open(tmp.path().join("link")).unwrap();
    let via_dots = Index::open(tmp.path().join("state/../state")).unwrap();
    assert_eq!(via_link.dir(), real.dir());
    assert_eq!(via_dots.dir(), real.dir());
}

#[test]
fn owner_limits_are_stored_privately_and_updated_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    assert_eq!(index.owner_limits(Owner::Agent).unwrap(), None);
    index
        .update_owner_limits(Owner::Agent, |l| l.memory_max = Some(8 << 30))
        .unwrap();
    let stored = index
        .update_owner_limits(Owner::Agent, |l| l.cpu_weight = Some(50))
        .unwrap();
    assert_eq!(stored.slice, "refine-agent.slice");
    assert_eq!(
        (stored.limits.memory_max, stored.limits.cpu_weight),
        (Some(8 << 30), Some(50))
    );
    assert_eq!(index.owner_limits(Owner::Agent).unwrap(), Some(stored));
    let path = index.owner_path(Owner::Agent);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&path), mode(&index.owners_dir())), (0o600, 0o700));
    assert_eq!(index.owner_limits(Owner::Quality).unwrap(), None);
    // Owner files are not records.
    assert!(index.ids().unwrap().is_empty());
}

#[test]
fn unreadable_owner_limits_are_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    fs::create_dir_all(index.owners_dir()).unwrap();
    fs::write(index.owner_path(Owner::Import), b"{\"owner\": ").unwrap();
    assert_eq!(index.owner_limits(Owner::Import).unwrap(), None);
    let quarantined: Vec<_> = fs::read_dir(index.quarantine_dir()).unwrap().collect();
    assert_eq!(quarantined.len(), 1);
    let stored = index
        .update_owner_limits(Owner::Import, |l| l.tasks_max = Some(5))
        .unwrap();
    assert_eq!(stored.limits.tasks_max, Some(5));
}

#[test]
fn the_event_history_is_rotated_and_read_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    for i in 0..30 {
        let e = crate::events::Event::new("started").with("n", i);
        index.append_event_rotating(&e, false, 1000).unwrap();
    }
    let size = |n: &str| {
        fs::metadata(tmp.path().join(n))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    assert!(size("events.jsonl") < 1100 && size("events.1.jsonl") >= 1000);
    let (events, skipped) = index.events().unwrap();
    assert_eq!(skipped, 0);
    let n: Vec<i64> = events
        .iter()
        .map(|e| e.details["n"].as_i64().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
    assert_eq!(*n.last().unwrap(), 29);
}

#[test]
fn health_states_are_kept_apart_and_unreadable_ones_read_as_none() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    assert_eq!(index.health("abcd2345").unwrap(), None);
    let state = HealthState::new(Timestamp::now());
    // Timestamps are kept to the millisecond.
    let state: HealthState = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
    index.save_health("abcd2345", &state).unwrap();
    index.save_health("abcd2345", &state).unwrap();
    assert_eq!(index.health("abcd2345").unwrap(), Some(state));
    let path = index.health_path("abcd2345").unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&path), mode(&index.health_dir())), (0o600, 0o700));
    // Only the file itself: no temp files left behind, and not a record.
    assert_eq!(fs::read_dir(index.health_dir()).unwrap().count(), 1);
    assert!(index.ids().unwrap().is_empty());
    fs::write(&path, b"{\"status\": ").unwrap();
    assert_eq!(index.health("abcd2345").unwrap(), None);
    index.remove_health("abcd2345").unwrap();
    index.remove_health("abcd2345").unwrap();
    assert!(!path.exists());
    assert!(index.health("../x").is_err());
}

#[test]
fn a_torn_multibyte_event_line_is_skipped_and_counted() {
    // Issue 10.7: a line cut inside "é" made the whole history fail.
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index
        .append_event(&crate::events::Event::new("started"), false)
        .unwrap();
    let mut torn =
        serde_json::to_vec(&crate::events::Event::new("stopped").with("label", "café")).unwrap();
    torn.truncate(torn.iter().position(|b| *b == 0xc3).unwrap() + 1);
    torn.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .open(tmp.path().join("events.jsonl"))
        .unwrap();
    f.write_all(&torn).unwrap();
    index
        .append_event(&crate::events::Event::new("exited"), false)
        .unwrap();
    let (events, skipped) = index.events().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!((names, skipped), (vec!["started", "exited"], 1));
    let mut tail = crate::events::EventTail::new(tmp.path().join("events.jsonl"));
    let (events, skipped) = tail.read_new().unwrap();
    assert_eq!((events.len(), skipped), (2, 1));
}

#[test]
fn symlinks_planted_in_the_state_dir_are_never_followed() {
    // Issue 10.9: a link at daemon.lock made the daemon write its pid
    // into the file it pointed at.
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path().join("state")).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious\n").unwrap();
    let plant = |name: &str| {
        let at = index.dir().join(name);
        let _ = fs::remove_file(&at);
        std::os::unix::fs::symlink(&victim, at).unwrap();
    };
    for name in ["daemon.lock", "lock", "limits.lock", "resurrect.lock"] {
        plant(name);
    }
    let e = index.daemon_lock().unwrap_err();
    assert!(e.message.contains("symbolic link"), "{e}");
    assert!(index.limits_lock().is_err() && index.resurrect_lock().is_err());
    assert!(
        index.save(&record("abcd2345")).is_err(),
        "the index lock is a link"
    );
    fs::remove_file(index.dir().join("lock")).unwrap();
    plant("events.jsonl");
    assert!(index
        .append_event(&crate::events::Event::new("started"), true)
        .is_err());
    assert!(index.events().is_err());
    plant("records/abcd2345.json");
    let Loaded::Quarantined { reason, .. } = index.load("abcd2345").unwrap() else {
        panic!("a linked record is quarantined")
    };
    assert!(reason.contains("symbolic link"), "{reason}");
    plant("pauses.json");
    let (pauses, warning) = index.pauses().unwrap();
    assert_eq!(pauses, Pauses::default());
    assert!(warning.unwrap().contains("symbolic link"));
    fs::create_dir_all(index.owners_dir()).unwrap();
    plant("owners/agent.json");
    assert_eq!(index.owner_limits(Owner::Agent).unwrap(), None);
    fs::create_dir_all(index.health_dir()).unwrap();
    plant("health/abcd2345.json");
    assert_eq!(index.health("abcd2345").unwrap(), None);
    index
        .save_health("abcd2345", &HealthState::new(Timestamp::now()))
        .unwrap();
    assert!(
        !fs::symlink_metadata(index.health_path("abcd2345").unwrap())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
    // A link in place of a directory of the index is refused.
    fs::remove_dir_all(index.health_dir()).unwrap();
    std::os::unix::fs::symlink(tmp.path(), index.health_dir()).unwrap();
    let e = Index::open(index.dir()).unwrap_err();
    assert!(e.message.contains("symbolic link"), "{e}");
    fs::remove_file(index.health_dir()).unwrap();
    fs::remove_dir(index.records_dir()).unwrap();
    std::os::unix::fs::symlink(tmp.path(), index.records_dir()).unwrap();
    let e = Index::open(index.dir()).unwrap_err();
    assert!(e.message.contains("symbolic link"), "{e}");
}

#[test]
fn a_directory_in_place_of_a_record_is_skipped_with_a_warning() {
    // Issue 10.10: `records/ID.json/` made `list --all` fail for all.
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index.create(&record("abcd2345")).unwrap();
    fs::create_dir(index.record_path("bcde2345")).unwrap();
    assert_eq!(index.ids().unwrap(), vec!["abcd2345", "bcde2345"]);
    let Loaded::Quarantined { path, reason } = index.load("bcde2345").unwrap() else {
        panic!("expected quarantine")
    };
    assert!(reason.contains("directory"), "{reason}");
    assert!(path.is_dir());
    assert!(matches!(index.load("abcd2345").unwrap(), Loaded::Found(_)));
    assert_eq!(index.ids().unwrap(), vec!["abcd2345"]);
}

#[test]
fn a_huge_record_is_not_read_but_quarantined() {
    // Issue 10.12: a 200 MB record made `status` use 790 MB.
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    let path = index.record_path("abcd2345");
    // Sparse: 200 MB that cost nothing on disk.
    File::create(&path).unwrap().set_len(200 << 20).unwrap();
    let Loaded::Quarantined {
        reason,
        path: moved,
    } = index.load("abcd2345").unwrap()
    else {
        panic!("expected quarantine")
    };
    assert!(reason.contains("209715200 bytes"), "{reason}");
    assert_eq!(fs::metadata(moved).unwrap().len(), 200 << 20);
    // Nothing over the cap is written either, so nothing written is lost.
    let mut big = record("bcde2345");
    big.command = vec!["x".repeat(MAX_RECORD_BYTES as usize)];
    let e = index.create(&big).unwrap_err();
    assert_eq!(e.kind, crate::error::ErrorKind::Invalid, "{e}");
    assert!(matches!(index.load("bcde2345").unwrap(), Loaded::Missing));
}

#[test]
fn reading_a_huge_state_file_stays_within_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    File::create(&path).unwrap().set_len(64 << 20).unwrap();
    assert!(matches!(
        read_state_file(&path, 1 << 20).unwrap(),
        StateFile::Unfit(_)
    ));
    fs::write(&path, vec![b' '; 1 << 20]).unwrap();
    let StateFile::Bytes(b) = read_state_file(&path, 1 << 20).unwrap() else {
        panic!("at the cap is fine")
    };
    assert_eq!(b.len(), 1 << 20);
}

/// Holds the index lock from another thread (its own open file, as
/// another process would) until the returned sender is dropped.
fn hold_lock_elsewhere(index: &Index) -> std::sync::mpsc::Sender<()> {
    let (taken_tx, taken_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let index = index.clone();
    std::thread::spawn(move || {
        let _held = index.lock().unwrap();
        taken_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    taken_rx.recv().unwrap();
    release_tx
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn waiting_for_the_index_lock_never_stalls_the_executor() {
    // Issue 9: a blocking flock inside async code stalled the daemon's
    // event loop, watchdog included, for as long as another held it.
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index.create(&record("abcd2345")).unwrap();
    current_thread().block_on(async {
        let release = hold_lock_elsewhere(&index);
        let update = index.update_async("abcd2345", |r| r.restart.count = 7);
        let updated = ticks_while_waiting(update, release).await.unwrap();
        assert_eq!(updated.map(|r| r.restart.count), Some(7));
        let release = hold_lock_elsewhere(&index);
        let guard = ticks_while_waiting(index.lock_async(), release)
            .await
            .unwrap();
        let Loaded::Found(r) = guard.load("abcd2345").unwrap() else {
            panic!()
        };
        assert_eq!(r.restart.count, 7);
    });
}

/// Checks that a timer keeps ticking while `wait` waits for a lock held
/// until `release` is dropped, then returns what `wait` gives.
async fn ticks_while_waiting<T>(
    wait: impl std::future::Future<Output = T>,
    release: std::sync::mpsc::Sender<()>,
) -> T {
    let mut wait = Box::pin(wait);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..20 {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut wait => panic!("done while the lock was held elsewhere"),
        }
    }
    drop(release);
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("done once the lock is released")
}

#[test]
fn a_held_async_lock_excludes_other_writers_until_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    index.create(&record("abcd2345")).unwrap();
    current_thread().block_on(async {
        let guard = index.lock_async().await.unwrap();
        // The guard's own methods do not lock again.
        guard.update("abcd2345", |r| r.restart.count = 1).unwrap();
        guard
            .update_pauses(|p| p.queued.push("abcd2345".into()))
            .unwrap();
        let mut other = Box::pin(index.update_async("abcd2345", |r| r.restart.count *= 10));
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut other).await;
        assert!(waited.is_err(), "another writer waits for the guard");
        guard
            .save(&{
                let mut r = record("abcd2345");
                r.restart.count = 2;
                r
            })
            .unwrap();
        drop(guard);
        let updated = tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("released on drop")
            .unwrap()
            .unwrap();
        assert_eq!(updated.restart.count, 20);
        let limits = index.limits_lock_async().await.unwrap();
        drop(limits);
        let (pauses, ()) = index.update_pauses_async(|_| ()).await.unwrap();
        assert_eq!(pauses.queued, vec!["abcd2345"]);
    });
}

#[test]
fn refuses_an_index_from_a_newer_format() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("format.json"), br#"{"format": 99}"#).unwrap();
    let e = Index::open(tmp.path()).unwrap_err();
    assert!(e.message.contains("newer"), "{e}");
}

#[test]
fn an_unnamed_record_is_invisible_until_named_and_never_replaces_one() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path()).unwrap();
    let entries = || fs::read_dir(index.records_dir()).unwrap().count();
    // Without O_TMPFILE `run` writes records as usual; this test needs it.
    let unnamed = index
        .write_unnamed(&record("abcd2345"))
        .unwrap()
        .expect("O_TMPFILE in TMPDIR (ext4, xfs, btrfs, tmpfs have it)");
    assert_eq!(entries(), 0, "an unnamed record has no directory entry");
    assert!(matches!(index.load("abcd2345").unwrap(), Loaded::Missing));
    assert!(unnamed.name().unwrap());
    let Loaded::Found(found) = index.load("abcd2345").unwrap() else {
        panic!("the named record is not found")
    };
    assert_eq!(*found, record("abcd2345"));
    let mode = fs::metadata(index.record_path("abcd2345"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second one under the same id is refused, the first kept.
    let mut other = record("abcd2345");
    other.label = "other".into();
    let again = index.write_unnamed(&other).unwrap().unwrap();
    let e = again.name().unwrap_err();
    assert!(e.message.contains("already exists"), "{e}");
    let Loaded::Found(kept) = index.load("abcd2345").unwrap() else {
        panic!("the first record is gone")
    };
    assert_eq!(kept.label, record("abcd2345").label);
    // One dropped unnamed leaves nothing behind.
    drop(index.write_unnamed(&record("efgh6789")).unwrap());
    assert_eq!(entries(), 1);
}

#[tokio::test]
async fn a_read_waits_for_an_end_told_before_its_record_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::open(tmp.path().join("state")).unwrap();
    let writing = index.end_in_flight();
    let waiting = index.clone();
    let read = tokio::spawn(async move { waiting.ends_written(Duration::from_secs(30)).await });
    tokio::task::yield_now().await;
    assert!(!read.is_finished(), "the read went ahead of the write");
    drop(writing);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read goes on once the end is written")
        .unwrap();
    // Nothing in flight: no wait at all; a stuck write: at most the limit.
    index.ends_written(Duration::from_secs(30)).await;
    let _stuck = index.end_in_flight();
    index.ends_written(Duration::from_millis(10)).await;
}
