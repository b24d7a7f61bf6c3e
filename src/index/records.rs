//! Records: one JSON file each under `records/`, checked when read (its id,
//! its unit, its schema) and quarantined when unreadable.

use crate::error::{Error, Field, Result};
use crate::model::{is_id_like, Record, RECORD_SCHEMA};
use std::fs::{self};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// What reading one record found.
#[derive(Debug)]
pub enum Loaded {
    Found(Box<Record>),
    Missing,
    /// The file did not parse; it was moved to `path`.
    Quarantined {
        path: PathBuf,
        reason: String,
    },
    /// Written by a newer refine-proc (higher schema); left untouched.
    Newer {
        schema: u64,
    },
}

/// A record written by [`Index::write_unnamed`], durable but nameless.
#[derive(Debug)]
pub struct UnnamedRecord {
    file: fs::File,
    path: PathBuf,
}

impl UnnamedRecord {
    /// Links the file at its record's path; fails with "already exists"
    /// rather than replace a record, and with `Ok(false)` when the link
    /// cannot be made here (no /proc): the caller then writes it as usual.
    pub fn name(self) -> Result<bool> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let from = format!("/proc/self/fd/{}\0", self.file.as_raw_fd());
        let mut to = self.path.as_os_str().as_bytes().to_vec();
        to.push(0);
        // SAFETY: both paths are NUL-terminated and live across the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr().cast(),
                libc::AT_FDCWD,
                to.as_ptr().cast(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == IoKind::AlreadyExists {
            return Err(Error::index(format!(
                "a record already exists at {}",
                self.path.display()
            )));
        }
        Ok(false)
    }
}

/// A record may only name the unit its owner and id give: otherwise an
/// edited or forged file could point refine-proc at any unit.
fn names_its_own_unit(r: &Record) -> bool {
    r.unit == crate::model::unit_name(r.owner, &r.id)
        || r.unit == crate::model::scope_name(r.owner, &r.id)
}

/// What a record file's bytes hold: the record, a newer schema, or why it
/// is unreadable.
fn parse_record(id: &str, bytes: &[u8]) -> std::result::Result<Loaded, String> {
    match serde_json::from_slice::<Record>(bytes) {
        Ok(r) if r.id == id && names_its_own_unit(&r) => Ok(Loaded::Found(Box::new(r))),
        Ok(r) if r.id == id => Err(format!(
            "it names unit {:?}, which is not the unit of {id}",
            r.unit
        )),
        Ok(r) => Err(format!("it names id {:?}", r.id)),
        Err(e) => {
            // A newer schema may use states or owners this build does
            // not know: that is not corruption.
            let schema = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("schema").and_then(|s| s.as_u64()));
            match schema.filter(|s| *s > u64::from(RECORD_SCHEMA)) {
                Some(schema) => Ok(Loaded::Newer { schema }),
                None => Err(e.to_string()),
            }
        }
    }
}

impl Index {
    /// A record over [`MAX_RECORD_BYTES`] would be quarantined when read:
    /// refuse it before it is written (a new record: before its unit starts).
    fn check_size(json: &[u8]) -> Result<()> {
        if json.len() as u64 <= MAX_RECORD_BYTES {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "the record would be {} bytes, more than the {MAX_RECORD_BYTES} the index keeps per record",
            json.len()
        ))
        .hint_naming([
            "shorten the command, its environment (".into(),
            Field::Env.into(),
            ") or ".into(),
            Field::Details.into(),
            "; pass long data in a file".into(),
        ]))
    }

    fn encode(record: &Record) -> Vec<u8> {
        // Compact: `list` parses one file per running process.
        let mut json = serde_json::to_vec(record).expect("records serialize");
        json.push(b'\n');
        json
    }

    /// Stores a new record; fails if one with the same id exists.
    pub fn create(&self, record: &Record) -> Result<()> {
        self.create_with(record, true)
    }

    /// Stores the record of a launch about to start, whose final write
    /// (fsynced, file and directory) follows the start. Its directory entry
    /// needs no sync of its own: a machine that crashes before that write
    /// ends the unit too, and the caller never got its id; what the entry
    /// guards against is refine-proc itself dying, for which the page cache
    /// suffices. Saves one fsync on every `run`.
    pub fn create_pending(&self, record: &Record) -> Result<()> {
        self.create_with(record, false)
    }

    /// Writes and fsyncs a new record as a file without a name (O_TMPFILE),
    /// which no reader sees and a crash leaves nothing of, until
    /// [`UnnamedRecord::name`] links it as [`Index::create_pending`] would
    /// have written it. None where the file system cannot (the caller then
    /// writes it as usual).
    pub fn write_unnamed(&self, record: &Record) -> Result<Option<UnnamedRecord>> {
        let json = Self::encode(record);
        Self::check_size(&json)?;
        let dir = self.records_dir();
        let opened = fs::OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(&dir);
        let mut file = match opened {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        file.write_all(&json)
            .and_then(|_| file.sync_all())
            .map_err(|e| self.io_error("write", &dir, e))?;
        Ok(Some(UnnamedRecord {
            file,
            path: self.record_path(&record.id),
        }))
    }

    fn create_with(&self, record: &Record, entry_durable: bool) -> Result<()> {
        let path = self.record_path(&record.id);
        let json = Self::encode(record);
        Self::check_size(&json)?;
        self.write_new(&path, &json, entry_durable).map_err(|e| {
            if e.kind() == IoKind::AlreadyExists {
                Error::index(format!("a record with id {} already exists", record.id))
            } else {
                self.io_error("write", &path, e)
            }
        })
    }

    /// Stores `record` unless a record with its id exists; returns the one
    /// that is stored now (for rebuilding without overwriting a newer write).
    pub fn create_or_load(&self, record: Record) -> Result<Record> {
        match self.create(&record) {
            Ok(()) => Ok(record),
            Err(e) if e.message.contains("already exists") => match self.load(&record.id)? {
                Loaded::Found(r) => Ok(*r),
                _ => Ok(record),
            },
            Err(e) => Err(e),
        }
    }

    /// Reads one record. A file that does not parse is quarantined (after
    /// checking, under the lock, that no writer replaced it meanwhile).
    pub fn load(&self, id: &str) -> Result<Loaded> {
        self.load_with(id, false)
    }

    pub(super) fn load_with(&self, id: &str, locked: bool) -> Result<Loaded> {
        let path = self.record_path(id);
        // A link, a directory or an oversized file where the record belongs
        // is quarantined like a file that does not parse: one bad entry
        // must not make every listing fail.
        let (seen, reason) = match self.read_state(&path, MAX_RECORD_BYTES)? {
            StateFile::Missing => return Ok(Loaded::Missing),
            StateFile::Unfit(reason) => (None, reason),
            StateFile::Bytes(bytes) => match parse_record(id, &bytes) {
                Ok(loaded) => return Ok(loaded),
                Err(reason) => (Some(bytes), reason),
            },
        };
        if locked {
            return self.quarantine(id, &path, reason);
        }
        let _lock = self.lock()?;
        let unchanged = match (self.read_state(&path, MAX_RECORD_BYTES)?, &seen) {
            (StateFile::Bytes(again), Some(bytes)) => again == *bytes,
            (StateFile::Unfit(_), None) => true,
            _ => false,
        };
        if unchanged {
            self.quarantine(id, &path, reason)
        } else {
            // Replaced (or removed) by a writer meanwhile: read that.
            self.load_with(id, true)
        }
    }

    pub(super) fn quarantine(&self, id: &str, path: &Path, reason: String) -> Result<Loaded> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let dest = self.quarantine_dir().join(format!("{id}.json.{stamp}"));
        match fs::rename(path, &dest) {
            Ok(()) => {
                let _ = Self::sync_dir(path);
                let _ = Self::sync_dir(&dest);
                tracing::warn!(record = id, to = %dest.display(), %reason, "quarantined an unreadable record");
                Ok(Loaded::Quarantined { path: dest, reason })
            }
            Err(e) if e.kind() == IoKind::NotFound => Ok(Loaded::Missing),
            Err(e) => Err(self.io_error("quarantine", path, e)),
        }
    }

    /// Applies `change` to a record under the index lock and stores it;
    /// returns the new record, or None when there is no (readable) record.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Record)) -> Result<Option<Record>> {
        let _lock = self.lock()?;
        self.update_locked(id, change)
    }

    pub(super) fn update_locked(
        &self,
        id: &str,
        change: impl FnOnce(&mut Record),
    ) -> Result<Option<Record>> {
        let mut record = match self.load_with(id, true)? {
            Loaded::Found(r) => *r,
            Loaded::Newer { schema } => {
                return Err(Error::index(format!(
                    "the record of {id} has schema {schema}, newer than this refine-proc writes ({RECORD_SCHEMA})"
                ))
                .hint("upgrade refine-proc; the record is left as it is"))
            }
            Loaded::Missing | Loaded::Quarantined { .. } => return Ok(None),
        };
        change(&mut record);
        self.save_locked(&record)?;
        Ok(Some(record))
    }

    /// Stores `record`, replacing any previous version, under the lock.
    pub fn save(&self, record: &Record) -> Result<()> {
        let _lock = self.lock()?;
        self.save_locked(record)
    }

    pub(super) fn save_locked(&self, record: &Record) -> Result<()> {
        let path = self.record_path(&record.id);
        self.write_replace(&path, &Self::encode(record))
            .map_err(|e| self.io_error("write", &path, e))
    }

    /// Deletes a record under the lock, if `keep` does not veto it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Self::sync_dir(&path).map_err(|e| self.io_error("sync", &path, e)),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("remove", &path, e)),
        }
    }

    /// Ids of all stored records (a directory read, no file contents).
    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.records_dir();
        let entries = fs::read_dir(&dir).map_err(|e| self.io_error("read", &dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error("read", &dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_id_like(id) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}
