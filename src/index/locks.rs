//! The index's locks (`flock`s on files in the index) and the async forms that
//! take them off the executor.

use crate::error::{Error, Result};
use crate::model::Record;
use crate::pauses::Pauses;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::*;

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
    /// Serializes changes of limits (systemd first, then the index) among
    /// refine-proc invocations, so that concurrent `set`s leave systemd and
    /// the index agreeing. Held until the returned guard is dropped; it
    /// does not block record updates (the exit hook never waits on it).
    pub fn limits_lock(&self) -> Result<LimitsLock> {
        Ok(LimitsLock {
            _file: self.lock_file("limits.lock")?,
        })
    }

    /// Serializes `resurrect` among invocations (released if one dies), so
    /// a persisted process is started again once.
    pub fn resurrect_lock(&self) -> Result<LimitsLock> {
        Ok(LimitsLock {
            _file: self.lock_file("resurrect.lock")?,
        })
    }

    pub(super) fn lock(&self) -> Result<File> {
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
