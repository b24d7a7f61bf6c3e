//! `Idempotency-Key` on `POST /api/v1/processes`: a client that retries a
//! run (after a timeout, a dropped connection) gets the first run's record
//! and never a second process. The key is claimed durably *before* the
//! process is started (a file created with link(2), which fails if it
//! exists), then completed with the record's id. A claim left pending by a
//! daemon that died mid-start is never taken for "not started": its retry
//! gets 409, not a second process. Keys expire after [`KEY_TTL`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use crate::model::Timestamp;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest key accepted.
pub const MAX_KEY: usize = 128;

/// What the index keeps for one key (`idempotency/<hex of key>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub key: String,
    /// The request it was first used with, so another request under the
    /// same key is refused, not answered with the first one's record.
    pub request: String,
    pub at: Timestamp,
    /// The record started; None while the start is under way (or was
    /// interrupted).
    pub id: Option<String>,
}

/// What a key says about a run.
#[derive(Debug)]
pub enum Outcome {
    /// New: start the process, then [`complete`] the claim.
    Claimed(PathBuf),
    /// Already started: this record.
    Done(String),
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync,
/// rename, directory fsync.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(path, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    sync_parent(path)
}

/// Creates `path` atomically and durably; AlreadyExists if it exists.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_parent(path)
}

fn temp_beside(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", crate::model::new_id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
}

/// Checks a key: 1 to [`MAX_KEY`] visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), Problem> {
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"
        ))
        .hint("use a UUID or another random string per logical run"));
    }
    Ok(())
}

fn path_of(state_dir: &Path, key: &str) -> PathBuf {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    state_dir.join("idempotency").join(format!("{hex}.json"))
}

fn io_problem(path: &Path, e: std::io::Error) -> Problem {
    crate::error::Error::index(format!("cannot write {}: {e}", path.display())).into()
}

/// Claims `key` for `request` (its canonical JSON), or says what the first
/// use of the key did.
pub fn claim(state_dir: &Path, key: &str, request: &str) -> Result<Outcome, Problem> {
    check_key(key)?;
    let path = path_of(state_dir, key);
    let dir = path.parent().expect("in a directory");
    fs::create_dir_all(dir).map_err(|e| io_problem(dir, e))?;
    let claim = Claim {
        key: key.to_string(),
        request: request.to_string(),
        at: Timestamp::now(),
        id: None,
    };
    let bytes = serde_json::to_vec(&claim).expect("claims serialize");
    for _ in 0..2 {
        match write_new(&path, &bytes) {
            Ok(()) => return Ok(Outcome::Claimed(path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_problem(&path, e)),
        }
        let Some(old) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Claim>(&b).ok())
        else {
            return Err(io_problem(&path, std::io::Error::other("unreadable claim")));
        };
        if old.at.elapsed() >= KEY_TTL {
            // Expired: forget it and claim again.
            let _ = fs::remove_file(&path);
            continue;
        }
        if old.request != request {
            return Err(Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "this Idempotency-Key was used for another request",
            )
            .hint("use a new key for a new run"));
        }
        return match old.id {
            Some(id) => Ok(Outcome::Done(id)),
            None => Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "refused",
                "a run with this Idempotency-Key is under way (or was interrupted)",
            )
            .hint("look for it with GET /api/v1/processes; retry later with the same key")),
        };
    }
    Err(io_problem(&path, std::io::Error::other("claim raced")))
}

/// Records the id the claimed run got.
pub fn complete(path: &Path, id: &str) -> Result<(), Problem> {
    let mut claim: Claim = fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| io_problem(path, std::io::Error::other("claim vanished")))?;
    claim.id = Some(id.to_string());
    let bytes = serde_json::to_vec(&claim).expect("claims serialize");
    write_replace(path, &bytes).map_err(|e| io_problem(path, e))
}

/// Releases a claim whose run was refused before anything started.
pub fn release(path: &Path) {
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_run_is_answered_with_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let Outcome::Claimed(path) = claim(dir.path(), "k-1", "{}").unwrap() else {
            panic!("first use claims");
        };
        // Retried while under way: 409, never a second start.
        assert_eq!(claim(dir.path(), "k-1", "{}").unwrap_err().status, 409);
        complete(&path, "abcd2345").unwrap();
        match claim(dir.path(), "k-1", "{}").unwrap() {
            Outcome::Done(id) => assert_eq!(id, "abcd2345"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            claim(dir.path(), "k-1", "{\"x\":1}").unwrap_err().status,
            422
        );
        assert_eq!(claim(dir.path(), "bad key", "{}").unwrap_err().status, 400);
        // A refused run frees its key.
        let Outcome::Claimed(p2) = claim(dir.path(), "k-2", "{}").unwrap() else {
            panic!()
        };
        release(&p2);
        assert!(matches!(
            claim(dir.path(), "k-2", "{}").unwrap(),
            Outcome::Claimed(_)
        ));
    }
}
