//! Reading units: the list, a unit's path, state, activity and service
//! properties.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::*;

impl Systemd {
    /// The manager's version string, e.g. "252.38-1~deb12u1".
    pub async fn version(&self) -> Result<String> {
        self.manager
            .version()
            .await
            .map_err(|e| dbus_error("read the systemd version", "", e))
    }

    /// The user manager's cgroup (`/user.slice/user-1000.slice/user@1000.service`),
    /// or None when it does not say.
    pub async fn manager_control_group(&self) -> Result<Option<String>> {
        let cg = self
            .manager
            .control_group()
            .await
            .map_err(|e| dbus_error("read the manager's cgroup", "", e))?;
        Ok(Some(cg).filter(|c| c.starts_with('/')))
    }

    /// The PATH the manager gives its units, if it sets one.
    pub async fn manager_path(&self) -> Result<Option<String>> {
        let env = self
            .manager
            .environment()
            .await
            .map_err(|e| dbus_error("read the manager's environment", "", e))?;
        Ok(env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .map(String::from))
    }

    /// The major version of the running systemd (252 for "252.39-1~deb12u2").
    pub async fn version_number(&self) -> Result<u32> {
        let v = self.version().await?;
        let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits
            .parse()
            .map_err(|_| Error::systemd(format!("cannot read systemd's version from {v:?}")))
    }

    /// When this manager started, if it says.
    pub async fn started_at(&self) -> Option<crate::model::Timestamp> {
        let usec = self.manager.userspace_timestamp().await.ok()?;
        crate::model::Timestamp::from_usec(usec)
    }

    /// All loaded units matching the glob patterns, in one round trip.
    pub async fn list(&self, patterns: &[&str]) -> Result<Vec<ListedUnit>> {
        self.retrying(|| self.manager.list_units_by_patterns(&[], patterns))
            .await
            .map_err(|e| dbus_error("list units", "", e))
    }

    /// The object path of a loaded unit (None when not loaded).
    pub async fn unit_path(&self, unit: &str) -> Result<Option<OwnedObjectPath>> {
        match self.retrying(|| self.manager.get_unit(unit)).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if is_no_such_unit(&e) => Ok(None),
            Err(e) => Err(dbus_error(&format!("look up {unit}"), unit, e)),
        }
    }

    /// The unit a process belongs to, as the manager sees its cgroup (not
    /// as the process sees it: a cgroup namespace cannot change this).
    /// None when it belongs to none of this manager's units.
    pub async fn unit_of_pid(&self, pid: u32) -> Result<Option<String>> {
        match self.retrying(|| self.manager.get_unit_by_pid(pid)).await {
            Ok(path) => Ok(unit_name_of_path(path.as_str())),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoUnitForPID" =>
            {
                Ok(None)
            }
            Err(e) => Err(dbus_error(&format!("look up the unit of pid {pid}"), "", e)),
        }
    }

    /// Whether a unit (e.g. a unit file of a package) is installed and
    /// active. Loads the unit file as `systemctl status` does.
    pub async fn unit_activity(&self, unit: &str) -> Result<UnitActivity> {
        let action = format!("look up {unit}");
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        let props = self.properties(path).await?;
        let mut u = props
            .get_all("org.freedesktop.systemd1.Unit")
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        let status_text = if unit.ends_with(".service") {
            props
                .get("org.freedesktop.systemd1.Service", "StatusText")
                .await
                .ok()
                .and_then(|v| String::try_from(v).ok())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(UnitActivity {
            load_state: take(&mut u, "LoadState").unwrap_or_default(),
            active_state: take(&mut u, "ActiveState").unwrap_or_default(),
            sub_state: take(&mut u, "SubState").unwrap_or_default(),
            status_text,
        })
    }

    /// Whether the unit is loaded (transient units vanish once collected).
    pub async fn is_loaded(&self, unit: &str) -> Result<bool> {
        Ok(self.unit_path(unit).await?.is_some())
    }

    pub(super) async fn properties(
        &self,
        path: OwnedObjectPath,
    ) -> Result<PropertiesProxy<'static>> {
        PropertiesProxy::builder(self.connection())
            .path(path)
            .map_err(|e| dbus_error("read unit properties", "", e))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| dbus_error("read unit properties", "", e))
    }

    /// One Service property of several units whose object paths are known
    /// (ListUnitsByPatterns returns them): asked concurrently, one call each.
    pub async fn service_property(
        &self,
        paths: &[OwnedObjectPath],
        name: &str,
    ) -> Vec<Option<OwnedValue>> {
        let calls = paths.iter().map(|path| async move {
            let props = self.properties(path.clone()).await.ok()?;
            props
                .get("org.freedesktop.systemd1.Service", name)
                .await
                .ok()
        });
        futures_util::future::join_all(calls).await
    }

    /// The pid systemd started for the service's current run; it stays set
    /// after the process exits, while the unit is loaded.
    pub async fn exec_main_pid(&self, unit: &str) -> Result<Option<u32>> {
        let Some(path) = self.unit_path(unit).await? else {
            return Ok(None);
        };
        let pid = self
            .service_property(&[path], "ExecMainPID")
            .await
            .pop()
            .flatten();
        Ok(pid.and_then(|v| u32::try_from(v).ok()).filter(|p| *p != 0))
    }

    /// Everything about one service or scope, or None when it is not
    /// loaded. A scope has no main pid, command or environment: those stay
    /// empty.
    pub async fn service_info(&self, unit: &str) -> Result<Option<ServiceInfo>> {
        let Some(path) = self.unit_path(unit).await? else {
            return Ok(None);
        };
        let props = self.properties(path).await?;
        let action = format!("read the properties of {unit}");
        let kind = if unit.ends_with(".scope") {
            "org.freedesktop.systemd1.Scope"
        } else {
            "org.freedesktop.systemd1.Service"
        };
        let (u, s) = tokio::join!(
            self.retrying(|| props.get_all("org.freedesktop.systemd1.Unit")),
            self.retrying(|| props.get_all(kind)),
        );
        let mut u = match u {
            Ok(u) => u,
            Err(e) if is_no_such_unit(&e) => return Ok(None),
            Err(e) => return Err(dbus_error(&action, unit, e)),
        };
        let mut s = s.map_err(|e| dbus_error(&action, unit, e))?;
        let exec = take::<Vec<ExecEntry>>(&mut s, "ExecStart").unwrap_or_default();
        Ok(Some(ServiceInfo {
            state: UnitState {
                active_state: take(&mut u, "ActiveState").unwrap_or_default(),
                sub_state: take(&mut u, "SubState").unwrap_or_default(),
                freezer_state: take(&mut u, "FreezerState"),
            },
            load_state: take(&mut u, "LoadState").unwrap_or_default(),
            description: take(&mut u, "Description").unwrap_or_default(),
            invocation_id: take::<Vec<u8>>(&mut u, "InvocationID")
                .filter(|b| b.iter().any(|x| *x != 0))
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
            active_enter_usec: take::<u64>(&mut u, "ActiveEnterTimestamp").filter(|t| *t != 0),
            // ExecMainPID outlives the process (while the unit is loaded).
            main_pid: take::<u32>(&mut s, "MainPID")
                .filter(|p| *p != 0)
                .or_else(|| take::<u32>(&mut s, "ExecMainPID").filter(|p| *p != 0)),
            result: take(&mut s, "Result").unwrap_or_default(),
            n_restarts: take(&mut s, "NRestarts").unwrap_or_default(),
            control_group: take::<String>(&mut s, "ControlGroup").filter(|c| !c.is_empty()),
            environment: take(&mut s, "Environment").unwrap_or_default(),
            // The command exec-unit runs, not exec-unit's hex.
            exec_argv: exec
                .into_iter()
                .next()
                .and_then(|e| crate::unitexec::command_of_exec_start(&e.1))
                .unwrap_or_default(),
            working_directory: take::<String>(&mut s, "WorkingDirectory").filter(|d| !d.is_empty()),
            memory_current: take(&mut s, "MemoryCurrent").and_then(tracked),
            cpu_usage_nsec: take(&mut s, "CPUUsageNSec").and_then(tracked),
            tasks_current: take(&mut s, "TasksCurrent").and_then(tracked),
        }))
    }
}

impl Systemd {
    /// How a service's main process ended, as an exit hook would be told
    /// (SERVICE_RESULT, EXIT_CODE, EXIT_STATUS, INVOCATION_ID), or None
    /// while it has not ended (or the unit is gone). The daemon reads this
    /// when the unit enters `stop-post`, before the hook has run.
    pub async fn main_exit(&self, unit: &str) -> Result<Option<BTreeMap<String, String>>> {
        // The path from the name (one round trip less on the way to the
        // event): a unit no longer loaded reads as not ended.
        let path = OwnedObjectPath::try_from(unit_path_of_name(unit))
            .map_err(|e| Error::invalid(format!("{unit:?} has no object path: {e}")))?;
        let props = self.properties(path).await?;
        let action = format!("read how {unit} ended");
        let (s, inv) = tokio::join!(
            props.get_all("org.freedesktop.systemd1.Service"),
            props.get("org.freedesktop.systemd1.Unit", "InvocationID"),
        );
        let mut s = match s {
            Ok(s) => s,
            Err(e) if is_no_such_unit(&e) => return Ok(None),
            Err(e) => return Err(dbus_error(&action, unit, e)),
        };
        let mut env = main_exit_of(&mut s);
        let inv = inv.ok().and_then(invocation_hex);
        if let (Some(env), Some(inv)) = (env.as_mut(), inv) {
            env.insert("INVOCATION_ID".into(), inv);
        }
        Ok(env)
    }
}

/// The exit of a service's main process from its `Service` properties
/// (those of `GetAll`, or of a PropertiesChanged signal, which carries the
/// same), as the hook's environment names it, without INVOCATION_ID; None
/// while it has not ended.
pub(super) fn main_exit_of(
    s: &mut HashMap<String, OwnedValue>,
) -> Option<BTreeMap<String, String>> {
    let code: i32 = take(s, "ExecMainCode").unwrap_or(0);
    let status: i32 = take(s, "ExecMainStatus").unwrap_or(0);
    // CLD_EXITED, CLD_KILLED, CLD_DUMPED; 0: not ended.
    let (kind, status) = match code {
        1 => ("exited", status.to_string()),
        2 => ("killed", crate::text::signal_name(status)),
        3 => ("dumped", crate::text::signal_name(status)),
        _ => return None,
    };
    let mut env = BTreeMap::new();
    env.insert(
        "SERVICE_RESULT".into(),
        take(s, "Result").unwrap_or_default(),
    );
    env.insert("EXIT_CODE".into(), kind.to_string());
    env.insert("EXIT_STATUS".into(), status);
    Some(env)
}

/// A unit's `InvocationID` (16 bytes) as the hook's INVOCATION_ID (hex);
/// None when unset (all zero).
pub(super) fn invocation_hex(v: OwnedValue) -> Option<String> {
    let b = Vec::<u8>::try_from(v).ok()?;
    b.iter()
        .any(|x| *x != 0)
        .then(|| b.iter().map(|x| format!("{x:02x}")).collect())
}
