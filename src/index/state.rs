//! The small state files beside the records: an owner's limits, health
//! states, the group pauses in force and the daemon's own state.

use crate::error::{Error, Result};
use crate::health::HealthState;
use crate::model::{is_id_like, Limits, Owner, OwnerLimits, Timestamp};
use crate::pauses::Pauses;
use serde::Serialize;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::*;

impl Index {
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

    pub(super) fn health_dir(&self) -> PathBuf {
        self.dir.join("health")
    }

    pub(super) fn health_path(&self, id: &str) -> Result<PathBuf> {
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

    pub(super) fn update_pauses_locked<T>(
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
}
