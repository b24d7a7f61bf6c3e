//! State files on disk: read without following links and within a cap,
//! written atomically and durably (temp file, fsync, rename or link, directory fsync).

use crate::error::Result;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// What opening a state file found.
pub(super) enum StateFile {
    Bytes(Vec<u8>),
    Missing,
    /// Not a regular file within the cap (a link, a directory, a huge
    /// file): why, for the quarantine warning.
    Unfit(String),
}

/// Opens `path` for reading without following a symbolic link at it.
pub(super) fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

pub(super) fn is_link_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Reads a state file: at most `cap` bytes, never through a link.
pub(super) fn read_state_file(path: &Path, cap: u64) -> std::io::Result<StateFile> {
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

impl Index {
    /// Reads a state file of the index (see [`read_state_file`]).
    pub(super) fn read_state(&self, path: &Path, cap: u64) -> Result<StateFile> {
        read_state_file(path, cap).map_err(|e| self.io_error("read", path, e))
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

    pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
        File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
    }

    /// Creates `path` durably; fails with AlreadyExists rather than replace.
    /// `entry_durable: false` leaves the directory entry to the next sync:
    /// after a crash the file is then whole or absent, never torn.
    pub(super) fn write_new(
        &self,
        path: &Path,
        bytes: &[u8],
        entry_durable: bool,
    ) -> std::io::Result<()> {
        let tmp = self.write_temp(path, bytes)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        linked?;
        if entry_durable {
            Self::sync_dir(path)?;
        }
        Ok(())
    }

    /// Replaces `path` durably and atomically.
    pub(super) fn write_replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.write_temp(path, bytes)?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Self::sync_dir(path)
    }
}
