//! An in-memory [`UnitManager`] for unit tests: it answers from a table of
//! units and pids, changes the table as systemd would (a freeze freezes, a
//! stop removes the transient unit), and records every call it gets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use zbus::zvariant::OwnedObjectPath;

use crate::error::{Error, Result};
use crate::model::Timestamp;

use super::*;

/// The fake's table and its call log.
#[derive(Default)]
pub struct FakeManager {
    state: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    units: BTreeMap<String, ServiceInfo>,
    /// GetUnitByPID's answers: a unit, none, or a failure (its message).
    pids: HashMap<u32, std::result::Result<Option<String>, String>>,
    /// Units whose freeze or thaw fails, with systemd's message.
    failing: BTreeMap<String, String>,
    /// When set, every call fails as if the manager had gone.
    gone: bool,
    started_at: Option<Timestamp>,
    /// Runs when a unit stops, as its exit hook (ExecStopPost=) would.
    on_stop: Option<ExitHook>,
    calls: Vec<String>,
}

type ExitHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

impl FakeManager {
    pub fn new() -> FakeManager {
        FakeManager::default()
    }

    /// A loaded, running service (not frozen) with this environment.
    pub fn running(self, unit: &str, env: &[String]) -> FakeManager {
        let info = ServiceInfo {
            state: UnitState {
                active_state: "active".into(),
                sub_state: "running".into(),
                freezer_state: Some("running".into()),
            },
            load_state: "loaded".into(),
            main_pid: Some(4242),
            invocation_id: Some("0123456789abcdef0123456789abcdef".into()),
            environment: env.to_vec(),
            ..Default::default()
        };
        self.unit(unit, info)
    }

    /// A unit with exactly these properties.
    pub fn unit(self, unit: &str, info: ServiceInfo) -> FakeManager {
        self.table().units.insert(unit.into(), info);
        self
    }

    /// GetUnitByPID answers `unit` (None: no unit) for `pid`.
    pub fn pid(self, pid: u32, unit: Option<&str>) -> FakeManager {
        self.table().pids.insert(pid, Ok(unit.map(String::from)));
        self
    }

    /// GetUnitByPID fails for `pid` with this message.
    pub fn pid_fails(self, pid: u32, message: &str) -> FakeManager {
        self.table().pids.insert(pid, Err(message.into()));
        self
    }

    /// FreezeUnit/ThawUnit of `unit` fails with this message.
    pub fn freeze_fails(self, unit: &str, message: &str) -> FakeManager {
        self.table().failing.insert(unit.into(), message.into());
        self
    }

    /// Runs `hook` with the unit's name when a unit stops, before the stop
    /// job ends: what its exit hook records.
    pub fn on_stop(self, hook: impl Fn(&str) + Send + Sync + 'static) -> FakeManager {
        self.table().on_stop = Some(std::sync::Arc::new(hook));
        self
    }

    /// Every call fails (the manager left the bus).
    pub fn gone(self) -> FakeManager {
        self.table().gone = true;
        self
    }

    /// The manager says it started at `at`.
    pub fn started(self, at: Timestamp) -> FakeManager {
        self.table().started_at = Some(at);
        self
    }

    /// Removes a unit (it ended and was collected).
    pub fn remove(&self, unit: &str) {
        self.table().units.remove(unit);
    }

    /// The calls made so far, as `method unit` strings, in order.
    pub fn calls(&self) -> Vec<String> {
        self.table().calls.clone()
    }

    /// The calls that changed something (freeze, thaw, stop).
    pub fn effects(&self) -> Vec<String> {
        let effects = ["freeze ", "thaw ", "stop "];
        let calls = self.calls();
        let is_effect = |c: &&String| effects.iter().any(|e| c.starts_with(e));
        calls.iter().filter(is_effect).cloned().collect()
    }

    /// The unit's freezer state now.
    pub fn freezer_state(&self, unit: &str) -> Option<String> {
        let table = self.table();
        table.units.get(unit)?.state.freezer_state.clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a call; refuses it when the manager is gone.
    fn call(&self, what: String) -> Result<std::sync::MutexGuard<'_, Table>> {
        let mut table = self.table();
        table.calls.push(what);
        if table.gone {
            return Err(Error::systemd("the fake manager is gone".to_string()));
        }
        Ok(table)
    }

    fn unit_at(&self, path: &OwnedObjectPath) -> Option<ServiceInfo> {
        let unit = unit_name_of_path(path.as_str())?;
        self.table().units.get(&unit).cloned()
    }
}

/// The object path systemd gives a unit (bus-label escaping).
pub fn path_of_unit(unit: &str) -> OwnedObjectPath {
    let label: String = unit
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            b => format!("_{b:02x}"),
        })
        .collect();
    let path = format!("/org/freedesktop/systemd1/unit/{label}");
    OwnedObjectPath::try_from(path).expect("an escaped unit name is a valid path")
}

/// A shell-style glob with `*` only, as refine-proc's patterns are.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob_match(rest, &tail[i..]))
        }
    }
}

impl UnitManager for FakeManager {
    fn list<'a>(&'a self, patterns: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<ListedUnit>>> {
        let listed = self.call(format!("list {}", patterns.join(" "))).map(|t| {
            let matching = t.units.iter().filter(|(name, _)| {
                let name = name.as_str();
                patterns.iter().any(|p| glob_match(p, name))
            });
            let rows = matching.map(|(name, info)| ListedUnit {
                name: name.clone(),
                description: info.description.clone(),
                load_state: info.load_state.clone(),
                active_state: info.state.active_state.clone(),
                sub_state: info.state.sub_state.clone(),
                following: String::new(),
                path: path_of_unit(name),
                job_id: 0,
                job_type: String::new(),
                job_path: OwnedObjectPath::try_from("/").expect("/ is a path"),
            });
            rows.collect()
        });
        std::future::ready(listed).boxed()
    }

    fn is_loaded<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<bool>> {
        let loaded = self
            .call(format!("is-loaded {unit}"))
            .map(|t| t.units.contains_key(unit));
        std::future::ready(loaded).boxed()
    }

    fn service_info<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<ServiceInfo>>> {
        let info = self
            .call(format!("info {unit}"))
            .map(|t| t.units.get(unit).cloned());
        std::future::ready(info).boxed()
    }

    fn environments<'a>(
        &'a self,
        paths: &'a [OwnedObjectPath],
    ) -> BoxFuture<'a, Vec<Option<Vec<String>>>> {
        let ok = self.call(format!("environments {}", paths.len())).is_ok();
        let envs = paths
            .iter()
            .map(|p| ok.then(|| self.unit_at(p)).flatten().map(|i| i.environment))
            .collect();
        std::future::ready(envs).boxed()
    }

    fn main_pids<'a>(&'a self, paths: &'a [OwnedObjectPath]) -> BoxFuture<'a, Vec<Option<u32>>> {
        let ok = self.call(format!("main-pids {}", paths.len())).is_ok();
        let pids = paths
            .iter()
            .map(|p| {
                ok.then(|| self.unit_at(p))
                    .flatten()
                    .and_then(|i| i.main_pid)
            })
            .collect();
        std::future::ready(pids).boxed()
    }

    fn unit_environment<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        let env = self.call(format!("environment {unit}")).map(|t| {
            let service = t.units.get(unit).filter(|_| unit.ends_with(".service"));
            service.map(|i| i.environment.clone()).unwrap_or_default()
        });
        std::future::ready(env).boxed()
    }

    fn unit_of_pid(&self, pid: u32) -> BoxFuture<'_, Result<Option<String>>> {
        let answer = self.call(format!("unit-of-pid {pid}")).and_then(|t| {
            match t.pids.get(&pid).cloned().unwrap_or(Ok(None)) {
                Ok(unit) => Ok(unit),
                Err(message) => Err(Error::systemd(message)),
            }
        });
        std::future::ready(answer).boxed()
    }

    fn started_at(&self) -> BoxFuture<'_, Option<Timestamp>> {
        let at = self
            .call("started-at".into())
            .ok()
            .and_then(|t| t.started_at);
        std::future::ready(at).boxed()
    }

    fn set_frozen<'a>(&'a self, unit: &'a str, frozen: bool) -> BoxFuture<'a, Result<()>> {
        let action = if frozen { "freeze" } else { "thaw" };
        let done = self.call(format!("{action} {unit}")).and_then(|mut t| {
            if let Some(message) = t.failing.get(unit) {
                return Err(Error::systemd(format!("cannot {action} {unit}: {message}")));
            }
            let Some(info) = t.units.get_mut(unit) else {
                return Err(Error::not_found(format!(
                    "cannot {action} {unit}: {unit} is not loaded"
                )));
            };
            let state = if frozen { "frozen" } else { "running" };
            info.state.freezer_state = Some(state.into());
            Ok(())
        });
        std::future::ready(done).boxed()
    }

    fn stop_within<'a>(
        &'a self,
        unit: &'a str,
        _unit_timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome>> {
        // A transient unit is collected once stopped, after its exit hook.
        let done = self.call(format!("stop {unit}")).map(|mut t| {
            let removed = t.units.remove(unit).is_some();
            (removed, t.on_stop.clone())
        });
        let done = done.map(|(removed, hook)| {
            if let Some(hook) = hook.filter(|_| removed) {
                hook(unit);
            }
            let result = if removed { "done" } else { "skipped" };
            JobOutcome {
                result: result.into(),
            }
        });
        std::future::ready(done).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_lists_units_by_glob_and_decodes_its_own_paths() {
        assert!(glob_match(
            "refine-*.service",
            "refine-agent-abcd2345.service"
        ));
        assert!(glob_match(
            "refine-*-abcd2345.service",
            "refine-agent-abcd2345.service"
        ));
        assert!(!glob_match(
            "refine-*.scope",
            "refine-agent-abcd2345.service"
        ));
        let path = path_of_unit("refine-user\\x2dhelper-abcd2345.service");
        assert_eq!(
            unit_name_of_path(path.as_str()).as_deref(),
            Some("refine-user\\x2dhelper-abcd2345.service")
        );
    }
}
