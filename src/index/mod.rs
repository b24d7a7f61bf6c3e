//! The sidecar index: one JSON file per record under `records/`, so that
//! `run` and `status` cost the same with ten records or ten thousand.
//!
//! Every write is atomic and durable: temp file, fsync, rename (or link for a
//! new record, which fails instead of overwriting), directory fsync. Updates
//! of an existing record run under an exclusive `flock` on `lock`, so
//! concurrent invocations never lose each other's changes. A file that does
//! not parse is moved to `quarantine/`, never overwritten.
//!
//! Every state file is opened without following symbolic links
//! (`O_NOFOLLOW`, or `O_EXCL` for new files) and read up to a cap: a link,
//! a directory or an oversized file planted where a state file belongs is
//! refused or quarantined, never read through or written through.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind as IoKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Owner;

mod events;
mod files;
mod locks;
mod records;
mod state;

pub use files::*;
pub use locks::*;
pub use records::*;

impl Index {
    /// Marks an end as told and not yet written, until the guard drops.
    pub fn end_in_flight(&self) -> EndInFlight {
        self.ends_in_flight.send_modify(|n| *n += 1);
        EndInFlight(self.ends_in_flight.clone())
    }

    /// Waits until every end told by this process is written, at most
    /// `limit` (a write waiting for the index lock must not hold a read
    /// for long: the record is then read as it is).
    pub async fn ends_written(&self, limit: std::time::Duration) {
        let mut told = self.ends_in_flight.subscribe();
        let _ = tokio::time::timeout(limit, told.wait_for(|n| *n == 0)).await;
    }
}

#[cfg(test)]
mod tests;

/// Version of the index layout written by this build.
pub const INDEX_FORMAT: u32 = 1;

/// The most read of a record (and of an owner's limits, a health state,
/// `format.json`): a record is a few KiB (command, environment, metadata,
/// each bounded when `run` checks them), so 1 MiB is hundreds of times a
/// real one, and reading a record never costs more than a few MiB of
/// memory whatever was planted. A record over it is refused when written
/// and quarantined when read.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The most read of `pauses.json`, which names every process a group
/// pause froze or stopped (about 16 bytes each): room for tens of
/// thousands.
pub const MAX_PAUSES_BYTES: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct FormatFile {
    format: u32,
}

/// For a write that records an action rather than makes it: when it
/// fails (a full disk, a read-only state directory), the action on systemd
/// goes ahead, and the caller is told what could not be recorded.
pub fn or_warn<T>(result: Result<T>, what: &str) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("could not record {what}, going ahead: {}", e.message);
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Index {
    dir: PathBuf,
    /// Ends told to event streams before their record is written (the
    /// daemon tells first, see `record_exit_seen`): the daemon's readers
    /// wait for them, so a status read after an end event never says the
    /// run still goes.
    ends_in_flight: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

/// An end told but not yet written; see [`Index::end_in_flight`].
pub struct EndInFlight(std::sync::Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for EndInFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// The index's directory of secrets (see [`Index::secrets_dir`]).
pub const SECRETS_DIR: &str = "secrets";

impl Index {
    /// Opens (creating it, private to the user, on first use) the index in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Index> {
        let mut index = Index {
            dir: dir.into(),
            ends_in_flight: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&index.dir)
            .map_err(|e| index.io_error("create", &index.dir, e))?;
        // One spelling per index: units name their index, and a symlink or
        // `..` must not make it look like another one.
        let canonical = fs::canonicalize(&index.dir);
        index.dir = canonical.map_err(|e| index.io_error("resolve", &index.dir, e))?;
        // `secrets/` always exists: a confined unit hides it at launch,
        // and systemd skips a path that is missing then (see `confine`).
        for d in [index.records_dir(), index.quarantine_dir()] {
            index.ensure_dir(&d)?;
        }
        let secrets = index.secrets_dir();
        match DirBuilder::new().mode(0o700).create(&secrets) {
            // A unit confined by an older launch sees the index read-only
            // without it: nothing can put a secret there either.
            Err(e) if e.kind() == IoKind::ReadOnlyFilesystem => {}
            _ => index.ensure_dir(&secrets)?,
        }
        // Made on first use; checked like the others once they exist.
        for d in [index.owners_dir(), index.health_dir()] {
            if fs::symlink_metadata(&d).is_ok() {
                index.ensure_dir(&d)?;
            }
        }
        index.check_format()?;
        Ok(index)
    }

    /// Creates a directory of the index (private) unless it exists, and
    /// checks that it is one: a link planted in its place would send
    /// every write elsewhere.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::AlreadyExists => {}
            Err(e) => return Err(self.io_error("create", dir, e)),
        }
        let meta = fs::symlink_metadata(dir).map_err(|e| self.io_error("inspect", dir, e))?;
        if meta.is_dir() {
            return Ok(());
        }
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else {
            "not a directory"
        };
        Err(
            Error::index(format!("{} is {what}; refusing to use it", dir.display())).hint(format!(
                "move it aside (refine-proc recreates the directory), or pass another --state-dir than {}",
                self.dir.display()
            )),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn records_dir(&self) -> PathBuf {
        self.dir.join("records")
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    /// Where the index keeps what grants power (the API's tokens): private
    /// (0700) and inaccessible to confined units, which read the rest.
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.join(SECRETS_DIR)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    fn owners_dir(&self) -> PathBuf {
        self.dir.join("owners")
    }

    fn owner_path(&self, owner: Owner) -> PathBuf {
        self.owners_dir().join(format!("{owner}.json"))
    }

    fn io_error(&self, action: &str, path: &Path, e: std::io::Error) -> Error {
        Error::index(format!("cannot {action} {}: {e}", path.display())).hint(format!(
            "check that the state directory {} is yours and writable, or pass --state-dir",
            self.dir.display()
        ))
    }

    fn check_format(&self) -> Result<()> {
        let path = self.dir.join("format.json");
        match self.read_state(&path, MAX_RECORD_BYTES)? {
            StateFile::Unfit(reason) => Err(Error::index(format!(
                "unreadable index format file {}: {reason}",
                path.display()
            ))
            .hint("move the file aside; refine-proc will recreate it")),
            StateFile::Bytes(bytes) => {
                let f: FormatFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::index(format!(
                        "unreadable index format file {}: {e}",
                        path.display()
                    ))
                    .hint("move the file aside; refine-proc will recreate it")
                })?;
                if f.format > INDEX_FORMAT {
                    return Err(Error::index(format!(
                        "the index at {} has format {}, newer than this refine-proc understands ({INDEX_FORMAT})",
                        self.dir.display(),
                        f.format
                    ))
                    .hint("upgrade refine-proc, or use another --state-dir"));
                }
                Ok(())
            }
            StateFile::Missing => {
                let json = serde_json::to_vec(&FormatFile {
                    format: INDEX_FORMAT,
                })
                .expect("serializable");
                match self.write_new(&path, &json, true) {
                    Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
                    other => other.map_err(|e| self.io_error("write", &path, e)),
                }
            }
        }
    }
}
