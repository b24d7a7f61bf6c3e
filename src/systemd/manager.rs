//! The seam between the controller's engines (pause, reconciliation,
//! recover, authorization) and the user manager: only the operations they
//! need, typed. [`Systemd`] implements it by delegation; unit tests use an
//! in-memory fake (`fake.rs`), so those engines are tested without systemd.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::time::Duration;
use zbus::zvariant::OwnedObjectPath;

use crate::error::Result;
use crate::model::Timestamp;

use super::*;

/// What the pause engine, reconciliation, recover and the caller lookup
/// ask of the user manager. Object-safe (boxed futures), so a controller
/// holds it as `dyn`.
pub trait UnitManager: Send + Sync {
    /// All loaded units matching the glob patterns.
    fn list<'a>(&'a self, patterns: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ListedUnit>>>;
    /// Whether the unit is loaded now.
    fn is_loaded<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Everything about one service or scope; None when not loaded.
    fn service_info<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<ServiceInfo>>>;
    /// The Environment= of services whose object paths are known (from
    /// [`UnitManager::list`]); None where it cannot be read.
    fn environments<'a>(
        &'a self,
        paths: &'a [OwnedObjectPath],
    ) -> BoxFuture<'a, Vec<Option<Vec<String>>>>;
    /// The main pids (None: none, or unreadable) of services by object path.
    fn main_pids<'a>(&'a self, paths: &'a [OwnedObjectPath]) -> BoxFuture<'a, Vec<Option<u32>>>;
    /// The Environment= of a loaded service (empty for a scope, or when
    /// it is not loaded).
    fn unit_environment<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;
    /// The unit a pid belongs to as the manager sees it (0: the caller on
    /// the bus); None when in none of this manager's units.
    fn unit_of_pid(&self, pid: u32) -> BoxFuture<'_, Result<Option<String>>>;
    /// When this manager started, if it says.
    fn started_at(&self) -> BoxFuture<'_, Option<Timestamp>>;
    /// Freezes or thaws a unit, bounded in time.
    fn set_frozen<'a>(&'a self, unit: &'a str, frozen: bool) -> BoxFuture<'a, Result<()>>;
    /// Stops a unit whose TimeoutStopSec= is `unit_timeout` and waits.
    fn stop_within<'a>(
        &'a self,
        unit: &'a str,
        unit_timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome>>;
}

impl UnitManager for Systemd {
    fn list<'a>(&'a self, patterns: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ListedUnit>>> {
        Systemd::list(self, patterns).boxed()
    }

    fn is_loaded<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<bool>> {
        Systemd::is_loaded(self, unit).boxed()
    }

    fn service_info<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<ServiceInfo>>> {
        Systemd::service_info(self, unit).boxed()
    }

    fn environments<'a>(
        &'a self,
        paths: &'a [OwnedObjectPath],
    ) -> BoxFuture<'a, Vec<Option<Vec<String>>>> {
        async move {
            let values = self.service_property(paths, "Environment").await;
            values
                .into_iter()
                .map(|v| v.and_then(|v| Vec::<String>::try_from(v).ok()))
                .collect()
        }
        .boxed()
    }

    fn main_pids<'a>(&'a self, paths: &'a [OwnedObjectPath]) -> BoxFuture<'a, Vec<Option<u32>>> {
        async move {
            let values = self.service_property(paths, "MainPID").await;
            values
                .into_iter()
                .map(|v| v.and_then(|v| u32::try_from(v).ok()).filter(|p| *p != 0))
                .collect()
        }
        .boxed()
    }

    fn unit_environment<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            let path = match self.unit_path(unit).await? {
                Some(path) if unit.ends_with(".service") => path,
                _ => return Ok(Vec::new()),
            };
            let env = UnitManager::environments(self, &[path]).await;
            Ok(env.into_iter().next().flatten().unwrap_or_default())
        }
        .boxed()
    }

    fn unit_of_pid(&self, pid: u32) -> BoxFuture<'_, Result<Option<String>>> {
        Systemd::unit_of_pid(self, pid).boxed()
    }

    fn started_at(&self) -> BoxFuture<'_, Option<Timestamp>> {
        Systemd::started_at(self).boxed()
    }

    fn set_frozen<'a>(&'a self, unit: &'a str, frozen: bool) -> BoxFuture<'a, Result<()>> {
        Systemd::set_frozen(self, unit, frozen).boxed()
    }

    fn stop_within<'a>(
        &'a self,
        unit: &'a str,
        unit_timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome>> {
        Systemd::stop_within(self, unit, unit_timeout).boxed()
    }
}
