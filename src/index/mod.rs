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

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::health::HealthState;
use crate::model::{is_id_like, Limits, Owner, OwnerLimits, Record, Timestamp, RECORD_SCHEMA};
use crate::pauses::Pauses;

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

/// What opening a state file found.
enum StateFile {
    Bytes(Vec<u8>),
    Missing,
    /// Not a regular file within the cap (a link, a directory, a huge
    /// file): why, for the quarantine warning.
    Unfit(String),
}

/// Opens `path` for reading without following a symbolic link at it.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn is_link_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Reads a state file: at most `cap` bytes, never through a link.
fn read_state_file(path: &Path, cap: u64) -> std::io::Result<StateFile> {
    let file = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(StateFile::Missing),
        Err(e) if is_link_error(&e) => {
            return Ok(StateFile::Unfit("it is a symbolic link, not a file".into()))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Ok(StateFile::Unfit("it is a directory, not a file".into()));
    }
    if !meta.is_file() {
        return Ok(StateFile::Unfit("it is not a regular file".into()));
    }
    // The size may change while it is read: the cap is what bounds memory.
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Ok(StateFile::Unfit(format!(
            "it is {} bytes, more than the {cap} a state file may have",
            meta.len().max(bytes.len() as u64)
        )));
    }
    Ok(StateFile::Bytes(bytes))
}

#[derive(Debug, Serialize, Deserialize)]
struct FormatFile {
    format: u32,
}

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

/// A record may only name the unit its owner and id give: otherwise an
/// edited or forged file could point refine-proc at any unit.
fn names_its_own_unit(r: &Record) -> bool {
    r.unit == crate::model::unit_name(r.owner, &r.id)
        || r.unit == crate::model::scope_name(r.owner, &r.id)
}

/// Reads a small state file of an index for inspection (`doctor`): never
/// through a link, at most [`MAX_RECORD_BYTES`]; what is not such a file
/// is an `InvalidData` error saying why.
pub fn read_small_state_file(path: &Path) -> std::io::Result<Vec<u8>> {
    match read_state_file(path, MAX_RECORD_BYTES)? {
        StateFile::Bytes(bytes) => Ok(bytes),
        StateFile::Missing => Err(IoKind::NotFound.into()),
        StateFile::Unfit(reason) => Err(std::io::Error::new(IoKind::InvalidData, reason)),
    }
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

#[derive(Debug, Clone)]
pub struct Index {
    dir: PathBuf,
}

/// Held while limits are changed; see [`Index::limits_lock`].
#[derive(Debug)]
pub struct LimitsLock {
    _file: File,
}

/// The index lock, taken by [`Index::lock_async`] and released on drop.
/// While it is held, change the index through its methods only: they do
/// not lock again, and the index's own methods would (`flock` is per open
/// file, so they would wait for this guard forever).
#[derive(Debug)]
pub struct IndexLock {
    index: Index,
    _file: File,
}

impl IndexLock {
    /// [`Index::load`] under this lock.
    pub fn load(&self, id: &str) -> Result<Loaded> {
        self.index.load_with(id, true)
    }

    /// [`Index::update`] under this lock.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Record)) -> Result<Option<Record>> {
        self.index.update_locked(id, change)
    }

    /// [`Index::save`] under this lock.
    pub fn save(&self, record: &Record) -> Result<()> {
        self.index.save_locked(record)
    }

    /// [`Index::update_pauses`] under this lock.
    pub fn update_pauses<T>(&self, change: impl FnOnce(&mut Pauses) -> T) -> Result<(Pauses, T)> {
        self.index.update_pauses_locked(change)
    }
}

impl Index {
    /// Opens (creating it, private to the user, on first use) the index in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Index> {
        let mut index = Index { dir: dir.into() };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&index.dir)
            .map_err(|e| index.io_error("create", &index.dir, e))?;
        // One spelling per index: units name their index, and a symlink or
        // `..` must not make it look like another one.
        let canonical = fs::canonicalize(&index.dir);
        index.dir = canonical.map_err(|e| index.io_error("resolve", &index.dir, e))?;
        for d in [index.records_dir(), index.quarantine_dir()] {
            index.ensure_dir(&d)?;
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

    /// Reads a state file of the index (see [`read_state_file`]).
    fn read_state(&self, path: &Path, cap: u64) -> Result<StateFile> {
        read_state_file(path, cap).map_err(|e| self.io_error("read", path, e))
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
                match self.write_new(&path, &json) {
                    Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
                    other => other.map_err(|e| self.io_error("write", &path, e)),
                }
            }
        }
    }

    /// Writes `bytes` to a temp file beside `path` and fsyncs it; returns
    /// the temp path.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            crate::model::new_id()
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f.write_all(bytes).and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn sync_dir(path: &Path) -> std::io::Result<()> {
        File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
    }

    /// Creates `path` durably; fails with AlreadyExists rather than replace.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.write_temp(path, bytes)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        linked?;
        Self::sync_dir(path)
    }

    /// Replaces `path` durably and atomically.
    fn write_replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.write_temp(path, bytes)?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Self::sync_dir(path)
    }

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
        .hint("shorten the command, its environment (--env) or --details; pass long data in a file"))
    }

    fn encode(record: &Record) -> Vec<u8> {
        // Compact: `list` parses one file per running process.
        let mut json = serde_json::to_vec(record).expect("records serialize");
        json.push(b'\n');
        json
    }

    /// Stores a new record; fails if one with the same id exists.
    pub fn create(&self, record: &Record) -> Result<()> {
        let path = self.record_path(&record.id);
        let json = Self::encode(record);
        Self::check_size(&json)?;
        self.write_new(&path, &json).map_err(|e| {
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

    fn load_with(&self, id: &str, locked: bool) -> Result<Loaded> {
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

    fn quarantine(&self, id: &str, path: &Path, reason: String) -> Result<Loaded> {
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

    fn update_locked(&self, id: &str, change: impl FnOnce(&mut Record)) -> Result<Option<Record>> {
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

    fn save_locked(&self, record: &Record) -> Result<()> {
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

    /// The limits last set on an owner's slice with `set --owner`, if any.
    /// A file that does not parse is quarantined (under the lock).
    pub fn owner_limits(&self, owner: Owner) -> Result<Option<OwnerLimits>> {
        let _lock = self.lock()?;
        self.owner_limits_locked(owner)
    }

    fn owner_limits_locked(&self, owner: Owner) -> Result<Option<OwnerLimits>> {
        let path = self.owner_path(owner);
        let bytes = match self.read_state(&path, MAX_RECORD_BYTES)? {
            StateFile::Bytes(b) => b,
            StateFile::Missing => return Ok(None),
            StateFile::Unfit(reason) => {
                self.quarantine(&format!("owner-{owner}"), &path, reason)?;
                return Ok(None);
            }
        };
        match serde_json::from_slice::<OwnerLimits>(&bytes) {
            Ok(l) if l.owner == owner => Ok(Some(l)),
            Ok(l) => {
                let reason = format!("it names owner {}", l.owner);
                self.quarantine(&format!("owner-{owner}"), &path, reason)?;
                Ok(None)
            }
            Err(e) => {
                self.quarantine(&format!("owner-{owner}"), &path, e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Applies `change` to the limits recorded for an owner's slice under
    /// the index lock, stores them (`owners/<owner>.json`, written as
    /// records are: temp file, fsync, rename, directory fsync) and returns
    /// them.
    pub fn update_owner_limits(
        &self,
        owner: Owner,
        change: impl FnOnce(&mut Limits),
    ) -> Result<OwnerLimits> {
        let _lock = self.lock()?;
        let mut stored = self.owner_limits_locked(owner)?.unwrap_or(OwnerLimits {
            owner,
            slice: owner.slice(),
            limits: Limits::default(),
            updated_at: None,
        });
        change(&mut stored.limits);
        stored.slice = owner.slice();
        stored.updated_at = Some(Timestamp::now());
        self.ensure_dir(&self.owners_dir())?;
        let path = self.owner_path(owner);
        let mut json = serde_json::to_vec(&stored).expect("owner limits serialize");
        json.push(b'\n');
        self.write_replace(&path, &json)
            .map_err(|e| self.io_error("write", &path, e))?;
        // What a reader gets back (timestamps are kept to the millisecond).
        Ok(serde_json::from_slice(&json).unwrap_or(stored))
    }

    fn health_dir(&self) -> PathBuf {
        self.dir.join("health")
    }

    fn health_path(&self, id: &str) -> Result<PathBuf> {
        if !is_id_like(id) {
            return Err(Error::invalid(format!(
                "{:?} is not a record id",
                crate::text::escape(id)
            )));
        }
        Ok(self.health_dir().join(format!("{id}.json")))
    }

    /// What the health probes of a record have found so far
    /// (`health/<id>.json`); None when nothing has probed it yet, or when
    /// the file does not parse (the next probe writes it anew).
    pub fn health(&self, id: &str) -> Result<Option<HealthState>> {
        let path = self.health_path(id)?;
        match self.read_state(&path, MAX_RECORD_BYTES)? {
            StateFile::Bytes(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            StateFile::Missing | StateFile::Unfit(_) => Ok(None),
        }
    }

    /// Stores the health state of a record, replacing the previous one
    /// atomically (temp file, rename) so readers never see half of it.
    /// Neither the file nor the directory is fsynced, and no lock is
    /// taken: the state is volatile, rewritten after every probe, and
    /// after a crash the next probe derives it again. One writer (the
    /// daemon) is expected; of two, the later rename wins whole.
    pub fn save_health(&self, id: &str, state: &HealthState) -> Result<()> {
        let path = self.health_path(id)?;
        self.ensure_dir(&self.health_dir())?;
        let mut json = serde_json::to_vec(state).expect("health states serialize");
        json.push(b'\n');
        let tmp = path.with_file_name(format!(
            ".{id}.json.{}.{}.tmp",
            std::process::id(),
            crate::model::new_id()
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&json))
            .and_then(|_| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error("write", &path, e));
        }
        Ok(())
    }

    /// Drops the health state of a record (none is fine).
    pub fn remove_health(&self, id: &str) -> Result<()> {
        let path = self.health_path(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("remove", &path, e)),
        }
    }

    /// Serializes changes of limits (systemd first, then the index) among
    /// refine-proc invocations, so that concurrent `set`s leave systemd and
    /// the index agreeing. Held until the returned guard is dropped; it
    /// does not block record updates (the exit hook never waits on it).
    pub fn limits_lock(&self) -> Result<LimitsLock> {
        Ok(LimitsLock {
            _file: self.lock_file("limits.lock")?,
        })
    }

    /// The group pauses in force (`pauses.json`). An unreadable file is
    /// quarantined and reported: the caller must not act as if nothing
    /// were paused without saying so.
    pub fn pauses(&self) -> Result<(Pauses, Option<String>)> {
        let path = self.dir.join("pauses.json");
        match self.read_state(&path, MAX_PAUSES_BYTES)? {
            StateFile::Missing => return Ok((Pauses::default(), None)),
            StateFile::Bytes(bytes) => {
                if let Ok(p) = serde_json::from_slice::<Pauses>(&bytes) {
                    return Ok((p, None));
                }
            }
            StateFile::Unfit(_) => {}
        }
        // Re-checked under the lock: a concurrent writer renames atomically,
        // so only a file that is still bad is moved.
        let _lock = self.lock()?;
        self.pauses_locked()
    }

    fn pauses_locked(&self) -> Result<(Pauses, Option<String>)> {
        let path = self.dir.join("pauses.json");
        let parsed = match self.read_state(&path, MAX_PAUSES_BYTES)? {
            StateFile::Missing => return Ok((Pauses::default(), None)),
            StateFile::Unfit(reason) => Err(reason),
            StateFile::Bytes(bytes) => {
                serde_json::from_slice::<Pauses>(&bytes).map_err(|e| e.to_string())
            }
        };
        match parsed {
            Ok(p) => Ok((p, None)),
            Err(e) => {
                let moved = match self.quarantine("pauses", &path, e.clone())? {
                    Loaded::Quarantined { path, .. } => path.display().to_string(),
                    _ => "nowhere (it vanished)".into(),
                };
                Ok((
                    Pauses::default(),
                    Some(format!(
                        "the pause state was unreadable ({e}) and moved to {moved}; \
                         pauses made before are no longer enforced (pause again if needed)"
                    )),
                ))
            }
        }
    }

    /// Applies `change` to the pause state under the index lock and stores
    /// it durably; returns the new state.
    pub fn update_pauses<T>(&self, change: impl FnOnce(&mut Pauses) -> T) -> Result<(Pauses, T)> {
        let _lock = self.lock()?;
        self.update_pauses_locked(change)
    }

    fn update_pauses_locked<T>(
        &self,
        change: impl FnOnce(&mut Pauses) -> T,
    ) -> Result<(Pauses, T)> {
        let (mut pauses, _) = self.pauses_locked()?;
        let out = change(&mut pauses);
        let path = self.dir.join("pauses.json");
        let mut json = serde_json::to_vec_pretty(&pauses).expect("pauses serialize");
        json.push(b'\n');
        self.write_replace(&path, &json)
            .map_err(|e| self.io_error("write", &path, e))?;
        Ok((pauses, out))
    }

    /// Serializes `resurrect` among invocations (released if one dies), so
    /// a persisted process is started again once.
    pub fn resurrect_lock(&self) -> Result<LimitsLock> {
        Ok(LimitsLock {
            _file: self.lock_file("resurrect.lock")?,
        })
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

    /// Appends one event as a JSON line to `events.jsonl` (one write, so
    /// concurrent appends do not interleave); `durable` also syncs it. The
    /// file is rotated past [`crate::events::ROTATE_AT_BYTES`].
    pub fn append_event(&self, event: &crate::events::Event, durable: bool) -> Result<()> {
        self.append_event_rotating(event, durable, crate::events::ROTATE_AT_BYTES)
    }

    fn append_event_rotating(
        &self,
        event: &crate::events::Event,
        durable: bool,
        rotate_at: u64,
    ) -> Result<()> {
        let path = self.dir.join("events.jsonl");
        // The size of the file itself, not of what a planted link points at.
        let full = || fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= rotate_at);
        if full() {
            // Under the lock, so only one invocation rotates.
            let _lock = self.lock()?;
            if full() {
                fs::rename(&path, self.dir.join("events.1.jsonl"))
                    .map_err(|e| self.io_error("rotate", &path, e))?;
            }
        }
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                if durable {
                    f.sync_data()?;
                }
                Ok(())
            })
            .map_err(|e| self.io_error("append to", &path, e))
    }

    /// The history, oldest first: the rotated file, then the current one.
    /// Lines that do not parse (a torn write after a crash) are skipped and
    /// counted.
    pub fn events(&self) -> Result<(Vec<crate::events::Event>, usize)> {
        let mut events = Vec::new();
        let mut skipped = 0;
        for name in ["events.1.jsonl", "events.jsonl"] {
            let path = self.dir.join(name);
            // Bytes, not text: a line torn inside a multi-byte character is
            // one line that does not parse, not an unreadable history.
            let mut bytes = Vec::new();
            match open_nofollow(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => {}
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(self.io_error("read", &path, e)),
            }
            let (mut parsed, bad) = crate::events::parse_lines(&bytes);
            events.append(&mut parsed);
            skipped += bad;
        }
        Ok((events, skipped))
    }

    fn lock(&self) -> Result<File> {
        self.lock_file("lock")
    }

    /// Runs `work` on tokio's blocking pool, so that an async caller never
    /// stalls its executor (on a current-thread runtime: every task,
    /// the daemon's watchdog included) while `work` waits for a lock or
    /// the disk. `work` runs to its end even if the returned future is
    /// dropped, as the same call made directly would have.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Index) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let index = self.clone();
        tokio::task::spawn_blocking(move || work(&index))
            .await
            .map_err(|e| {
                Error::index(format!("an index operation did not finish: {e}"))
                    .hint("this is a bug in refine-proc; please report it")
            })?
    }

    /// Takes the index lock without blocking the executor; see [`IndexLock`].
    pub async fn lock_async(&self) -> Result<IndexLock> {
        self.blocking(|index| {
            Ok(IndexLock {
                index: index.clone(),
                _file: index.lock()?,
            })
        })
        .await
    }

    /// [`Index::update`] without blocking the executor.
    pub async fn update_async(
        &self,
        id: &str,
        change: impl FnOnce(&mut Record) + Send + 'static,
    ) -> Result<Option<Record>> {
        let id = id.to_string();
        self.blocking(move |index| index.update(&id, change)).await
    }

    /// [`Index::update_pauses`] without blocking the executor.
    pub async fn update_pauses_async<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Pauses) -> T + Send + 'static,
    ) -> Result<(Pauses, T)> {
        self.blocking(move |index| index.update_pauses(change))
            .await
    }

    /// [`Index::limits_lock`] without blocking the executor.
    pub async fn limits_lock_async(&self) -> Result<LimitsLock> {
        self.blocking(Index::limits_lock).await
    }

    /// [`Index::resurrect_lock`] without blocking the executor.
    pub async fn resurrect_lock_async(&self) -> Result<LimitsLock> {
        self.blocking(Index::resurrect_lock).await
    }

    /// An exclusive flock on the file `name` in the index, held while the
    /// returned file lives.
    /// The daemon's single-instance lock (`daemon.lock`, holding its pid):
    /// None when another daemon holds it, with that daemon's pid if known.
    pub fn daemon_lock(&self) -> Result<std::result::Result<File, Option<u32>>> {
        let path = self.dir.join("daemon.lock");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| self.lock_open_error(&path, e))?;
        match f.try_lock() {
            Ok(()) => {
                // Released by the kernel when the daemon dies, however.
                let pid = format!("{}\n", std::process::id());
                f.set_len(0)
                    .and_then(|_| std::io::Seek::rewind(&mut f))
                    .and_then(|_| f.write_all(pid.as_bytes()))
                    .map_err(|e| self.io_error("write", &path, e))?;
                Ok(Ok(f))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                // From the file opened, not the path again.
                let mut text = String::new();
                let read = (&f).take(64).read_to_string(&mut text);
                Ok(Err(read.ok().and_then(|_| text.trim().parse().ok())))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(self.io_error("lock", &path, e)),
        }
    }

    /// The daemon's own durable state (`daemon-state.json`: what it counts
    /// across its restarts); None when there is none yet. A file that does
    /// not parse is moved to the quarantine and read as none, so a daemon
    /// always starts.
    pub fn daemon_state<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.dir.join("daemon-state.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error("read", &path, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                let aside = self
                    .quarantine_dir()
                    .join(format!("daemon-state.{}.json", crate::model::new_id()));
                let moved = DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(self.quarantine_dir())
                    .and_then(|_| fs::rename(&path, &aside));
                tracing::warn!(
                    "unreadable {} ({e}){}",
                    path.display(),
                    match moved {
                        Ok(()) => format!(", moved to {}", aside.display()),
                        Err(e) => format!(", and it cannot be moved aside: {e}"),
                    }
                );
                Ok(None)
            }
        }
    }

    /// Replaces the daemon's state durably and atomically (fsynced temp
    /// file, rename, fsynced directory). One writer: the daemon, under its
    /// lock.
    pub fn save_daemon_state<T: Serialize>(&self, state: &T) -> Result<()> {
        let path = self.dir.join("daemon-state.json");
        let mut json = serde_json::to_vec(state).expect("the daemon's state serializes");
        json.push(b'\n');
        self.write_replace(&path, &json)
            .map_err(|e| self.io_error("write", &path, e))
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.dir.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| self.lock_open_error(&path, e))?;
        f.lock().map_err(|e| self.io_error("lock", &path, e))?;
        Ok(f)
    }

    fn lock_open_error(&self, path: &Path, e: std::io::Error) -> Error {
        if !is_link_error(&e) {
            return self.io_error("open", path, e);
        }
        Error::index(format!(
            "{} is a symbolic link; refusing to follow it",
            path.display()
        ))
        .hint("remove the link (refine-proc recreates the file); state files are never links")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, State};
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
        let state: HealthState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
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
            serde_json::to_vec(&crate::events::Event::new("stopped").with("label", "café"))
                .unwrap();
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
}
