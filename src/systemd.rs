//! The small surface of systemd's user manager that refine-proc uses:
//! hand-written D-Bus proxies limited to what systemd 252 offers, and the
//! few operations built on them (start and wait for the job, read a unit,
//! list units). Everything else in the crate talks to systemd through here.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Type, Value};
use zbus::{proxy, Connection, DBusError};

use crate::error::{Error, ErrorKind, Result};
use crate::spec::Prop;

/// How long a freeze or thaw may take before it is reported as stuck.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for systemd to finish a start job.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a start that returns before READY=1 (`run --ready notify`
/// without `--wait-ready`) watches for the process's end, so that a
/// command that fails at once is reported as ended.
const SPAWN_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a stop or restart job: longer than systemd's own
/// stop timeout (90 s by default), after which systemd kills the process
/// and the job ends.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: Vec<(&str, Value<'_>)>,
        aux: Vec<(&str, Vec<(&str, Value<'_>)>)>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(name = "GetUnitByPID")]
    fn get_unit_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;
    /// Loads a unit file (if any) and returns its path; LoadState tells
    /// whether it exists. Unused units are unloaded again by systemd.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    /// Replies once the unit's cgroup is frozen (no timeout on the server).
    fn freeze_unit(&self, name: &str) -> zbus::Result<()>;
    fn thaw_unit(&self, name: &str) -> zbus::Result<()>;
    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: Vec<(&str, Value<'_>)>,
    ) -> zbus::Result<()>;
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<ListedUnit>>;
    /// Asks for UnitNew/UnitRemoved and PropertiesChanged on this connection.
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn unit_removed(&self, unit: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// The environment the manager gives every unit (PATH=..., ...).
    #[zbus(property)]
    fn environment(&self) -> zbus::Result<Vec<String>>;
    /// The manager's own cgroup, e.g. `/user.slice/user-1000.slice/user@1000.service`:
    /// the subtree it may move processes within, and where usage is read.
    #[zbus(property)]
    fn control_group(&self) -> zbus::Result<String>;
    /// When this manager started (µs since the epoch): a unit of an earlier
    /// manager ended no later than this.
    #[zbus(property)]
    fn userspace_timestamp(&self) -> zbus::Result<u64>;
}

#[proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1"
)]
trait Properties {
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn get(&self, interface: &str, name: &str) -> zbus::Result<OwnedValue>;
    #[zbus(signal)]
    fn properties_changed(
        &self,
        interface: String,
        changed: HashMap<String, OwnedValue>,
        invalidated: Vec<String>,
    ) -> zbus::Result<()>;
}

/// One row of ListUnitsByPatterns.
#[derive(Debug, Clone, Deserialize, Serialize, Type)]
pub struct ListedUnit {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub following: String,
    pub path: OwnedObjectPath,
    pub job_id: u32,
    pub job_type: String,
    pub job_path: OwnedObjectPath,
}

/// What systemd says about a loaded unit right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    /// running, freezing, frozen, thawing (absent on old systemd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freezer_state: Option<String>,
}

/// Everything `status` shows from systemd about one service (or scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    #[serde(flatten)]
    pub state: UnitState,
    pub load_state: String,
    pub description: String,
    pub main_pid: Option<u32>,
    pub result: String,
    pub n_restarts: u32,
    pub invocation_id: Option<String>,
    pub control_group: Option<String>,
    pub active_enter_usec: Option<u64>,
    /// The unit's Environment= (REFINE_* and --env), to rebuild lost records.
    pub environment: Vec<String>,
    /// ExecStart argv, to rebuild lost records.
    pub exec_argv: Vec<String>,
    pub working_directory: Option<String>,
    /// Usage; None where systemd does not track it (controller missing).
    pub memory_current: Option<u64>,
    pub cpu_usage_nsec: Option<u64>,
    pub tasks_current: Option<u64>,
}

/// Whether a unit is installed and running, as `systemctl --user status`
/// tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitActivity {
    /// loaded, not-found, masked, error, ...
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// A service's last `STATUS=` notification (empty when none).
    pub status_text: String,
}

/// A connection to the calling user's systemd manager.
#[derive(Clone)]
pub struct Systemd {
    manager: ManagerProxy<'static>,
}

/// What a PropertiesChanged signal said about a unit's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitChange {
    pub unit: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
}

/// The unit name in a systemd object path: the last element, with
/// systemd's bus-label escaping (`_2d` is `-`) undone.
pub fn unit_name_of_path(path: &str) -> Option<String> {
    let label = path.strip_prefix("/org/freedesktop/systemd1/unit/")?;
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How long `start_transient_waiting` waits.
#[derive(Debug, Clone, Copy)]
pub enum StartWait {
    /// For the start job, at most this long.
    Job(Duration),
    /// A short bounded while, for the process to end (then to the end of
    /// its start job) or to say READY=1; a Type=notify unit still starting
    /// then is left starting.
    Spawned,
}

/// A start, stop or restart job that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// done, canceled, timeout, failed, dependency, skipped.
    pub result: String,
}

impl Systemd {
    /// Connects to the user bus and checks that a systemd manager answers.
    pub async fn connect() -> Result<Systemd> {
        let conn = Connection::session()
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        Ok(Systemd { manager })
    }

    fn connection(&self) -> &Connection {
        self.manager.inner().connection()
    }

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

    /// Starts a transient unit and waits for its start job.
    pub async fn start_transient(
        &self,
        unit: &str,
        props: &[(&'static str, Prop)],
    ) -> Result<JobOutcome> {
        self.start_transient_waiting(unit, props, StartWait::Job(START_TIMEOUT))
            .await
    }

    /// Starts a transient unit and waits as told: for its start job (which
    /// for Type=notify ends at READY=1), or only until its process runs.
    pub async fn start_transient_waiting(
        &self,
        unit: &str,
        props: &[(&'static str, Prop)],
        wait: StartWait,
    ) -> Result<JobOutcome> {
        let drop_ins = write_drop_ins(unit, props)?;
        let props: Vec<(&str, Value<'_>)> = props
            .iter()
            .filter(|(_, v)| !matches!(v, Prop::DropIn { .. }))
            .map(|(k, v)| (*k, to_value(v)))
            .collect();
        let started = self.start_transient_inner(unit, props, wait).await;
        if started.is_err() && !self.unit_path(unit).await.is_ok_and(|p| p.is_some()) {
            // No unit: nothing will remove its drop-ins.
            drop_ins
                .iter()
                .for_each(|p| crate::confine::remove_drop_in(p));
        }
        started
    }

    async fn start_transient_inner(
        &self,
        unit: &str,
        props: Vec<(&str, Value<'_>)>,
        wait: StartWait,
    ) -> Result<JobOutcome> {
        let action = format!("start {unit}");
        // Subscribe before the call, filtered by the bus to this unit, or a
        // fast job's signal could be missed.
        let jobs = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        let job = match self
            .manager
            .start_transient_unit(unit, "fail", props.clone(), Vec::new())
            .await
        {
            Ok(job) => job,
            // The manager re-executed: a request it never read left no
            // unit and is made again; one it did (no reply) is awaited by
            // the unit's state instead of its job.
            Err(e) if is_away(&e) && self.await_manager().await => {
                if self.unit_path(unit).await?.is_some() {
                    let done = |i: Option<&ServiceInfo>| {
                        i.is_none_or(|i| i.state.active_state != "activating")
                    };
                    let info = self.wait_for(unit, done).await?;
                    let ran = info.is_none_or(|i| i.state.active_state != "failed");
                    let result = if ran { "done" } else { "failed" };
                    return Ok(JobOutcome {
                        result: result.into(),
                    });
                }
                self.manager
                    .start_transient_unit(unit, "fail", props, Vec::new())
                    .await
                    .map_err(|e| dbus_error(&action, unit, e))?
            }
            Err(e) => return Err(dbus_error(&action, unit, e)),
        };
        crate::fault::point("after-start-request");
        match wait {
            StartWait::Job(timeout) => wait_job(jobs, &job, &action, timeout).await,
            StartWait::Spawned => {
                // The job ends at READY=1, or once a process that ended
                // before it has been through ExecStopPost (its exit is then
                // recorded). A process that leaves `activating` within a
                // short while (it ended, or said READY=1) is known for
                // certain; one still starting then is left starting.
                let settled = |i: Option<&ServiceInfo>| {
                    i.is_none_or(|i| i.state.active_state != "activating")
                };
                let quick = tokio::time::timeout(SPAWN_GRACE, self.wait_for(unit, settled));
                let runs_on = match quick.await {
                    Err(_) => true,
                    Ok(info) => info?
                        .is_some_and(|i| i.main_pid.is_some() && i.state.active_state == "active"),
                };
                if runs_on {
                    drop(jobs);
                    return Ok(JobOutcome {
                        result: "spawned".into(),
                    });
                }
                wait_job(jobs, &job, &action, START_TIMEOUT).await
            }
        }
    }

    /// Waits until the unit is no longer loaded: it has ended and systemd
    /// has collected it (after its ExecStopPost ran), as `systemd-run --wait`.
    pub async fn wait_until_gone(&self, unit: &str) -> Result<()> {
        self.wait_for(unit, |info| info.is_none()).await.map(drop)
    }

    /// Waits until `done` holds for the unit's properties (None once the
    /// unit is gone), re-checking on each PropertiesChanged or UnitRemoved
    /// signal: no polling. Returns the properties that satisfied it.
    pub async fn wait_for(
        &self,
        unit: &str,
        done: impl Fn(Option<&ServiceInfo>) -> bool,
    ) -> Result<Option<ServiceInfo>> {
        let action = format!("wait for {unit}");
        // A second wait on this connection finds it subscribed already.
        match self.retrying(|| self.manager.subscribe()).await {
            Err(e) if e.to_string().contains("systemd1.AlreadySubscribed") => {}
            r => r.map_err(|e| dbus_error(&action, unit, e))?,
        }
        let mut removed = self
            .manager
            .receive_unit_removed_with_args(&[(0, unit)])
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        let mut changed = match self.unit_path(unit).await? {
            Some(path) => Some(
                self.properties(path)
                    .await?
                    .receive_properties_changed()
                    .await
                    .map_err(|e| dbus_error(&action, unit, e))?,
            ),
            None => None,
        };
        // The streams exist before each check, so no change is missed.
        loop {
            let info = self.service_info(unit).await?;
            if done(info.as_ref()) {
                return Ok(info);
            }
            let next = async {
                match changed.as_mut() {
                    Some(c) => c.next().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = removed.next() => if r.is_none() { break },
                r = next => if r.is_none() { break },
            }
        }
        Err(Error::systemd(format!(
            "lost the connection to systemd while waiting for {unit}"
        )))
    }

    /// A stream of unit state changes as systemd signals them: for every
    /// unit whose name starts with `prefix`, the unit's name and the
    /// changed ActiveState and SubState (None: unchanged). FreezerState is
    /// not signalled by systemd 252 (systemd issue #31115).
    /// One match rule for all units; nothing is polled.
    pub async fn unit_state_changes(
        &self,
        prefix: &str,
    ) -> Result<impl futures_util::Stream<Item = UnitChange> + Unpin + use<>> {
        let fail = |e: zbus::Error| dbus_error("watch unit state changes", "", e);
        self.manager.subscribe().await.map_err(fail)?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged"))
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1/unit"))
            .and_then(|b| b.arg(0, "org.freedesktop.systemd1.Unit"))
            .map_err(fail)?
            .build();
        // A large queue: a burst of starts must not stall the connection
        // (facts: an undrained stream blocks method replies too).
        let stream = zbus::MessageStream::for_match_rule(rule, self.connection(), Some(4096))
            .await
            .map_err(fail)?;
        let prefix = prefix.to_string();
        Ok(Box::pin(stream.filter_map(move |msg| {
            let prefix = prefix.clone();
            async move {
                let msg = msg.ok()?;
                let unit = unit_name_of_path(msg.header().path()?.as_str())?;
                if !unit.starts_with(&prefix) {
                    return None;
                }
                let (_, mut changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                    msg.body().deserialize().ok()?;
                let change = UnitChange {
                    unit,
                    active_state: take(&mut changed, "ActiveState"),
                    sub_state: take(&mut changed, "SubState"),
                };
                let any = change.active_state.is_some() || change.sub_state.is_some();
                any.then_some(change)
            }
        })))
    }

    /// Changes properties of a loaded unit, or of a slice (which systemd
    /// loads on demand), for as long as the manager runs (`runtime`: the
    /// drop-in goes to /run, as `systemctl --user set-property --runtime`).
    pub async fn set_properties(&self, unit: &str, props: &[(&'static str, Prop)]) -> Result<()> {
        let props: Vec<(&str, Value<'_>)> = props.iter().map(|(k, v)| (*k, to_value(v))).collect();
        self.manager
            .set_unit_properties(unit, true, props)
            .await
            .map_err(|e| dbus_error(&format!("set limits of {unit}"), unit, e))
    }

    /// Stops a unit (mode "replace") and waits for the stop job.
    pub async fn stop(&self, unit: &str) -> Result<JobOutcome> {
        self.stop_within(unit, Duration::ZERO).await
    }

    /// Stops a unit whose `TimeoutStopSec=` is `unit_timeout` and waits for
    /// the stop job. A stop may take that timeout up to three times (TERM,
    /// then KILL, then ExecStopPost), so the wait grows with it.
    pub async fn stop_within(&self, unit: &str, unit_timeout: Duration) -> Result<JobOutcome> {
        let timeout = STOP_TIMEOUT.max(unit_timeout * 3 + Duration::from_secs(30));
        let action = format!("stop {unit}");
        let jobs = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        // Asking twice to stop is harmless: safe to repeat across a reexec.
        let job = self
            .retrying(|| self.manager.stop_unit(unit, "replace"))
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        wait_job(jobs, &job, &action, timeout).await
    }

    /// Restarts a loaded unit and waits for the job.
    pub async fn restart(&self, unit: &str) -> Result<JobOutcome> {
        let action = format!("restart {unit}");
        let jobs = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        let job = self
            .manager
            .restart_unit(unit, "replace")
            .await
            .map_err(|e| dbus_error(&action, unit, e))?;
        wait_job(jobs, &job, &action, STOP_TIMEOUT).await
    }

    /// Sends a signal to every process of the unit but its control
    /// process: while a service stops, that is the exit hook
    /// (`ExecStopPost=`), which `KillUnit(whom="all")` would signal too, so
    /// a second `kill` lost the exit. The main process gets it from systemd
    /// (`whom="main"`); the others from here, from a list of the cgroup's
    /// processes taken before the main process is signalled (the hook,
    /// which its end starts, is not on it). Scopes have no control process.
    pub async fn kill(&self, unit: &str, signal: i32) -> Result<()> {
        let action = format!("signal {unit}");
        let fail = |e| dbus_error(&action, unit, e);
        let path = self
            .unit_path(unit)
            .await?
            .ok_or_else(|| Error::not_found(format!("cannot {action}: {unit} is not loaded")))?;
        let others = if unit.ends_with(".service") {
            self.other_processes(unit, path).await
        } else {
            None
        };
        let Some((main, cgroup, others)) = others else {
            return self
                .manager
                .kill_unit(unit, "all", signal)
                .await
                .map_err(fail);
        };
        if main != 0 {
            match self.manager.kill_unit(unit, "main", signal).await {
                // It ended meanwhile, as a process does that is signalled twice.
                Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_PROCESS) => {}
                r => r.map_err(fail)?,
            }
        }
        for pid in others {
            // By pid, from the list, as systemd's own cgroup kill does; a
            // pid that left the unit's cgroup since (ended, its number
            // reused) is not signalled.
            let still_there =
                crate::procfs::cgroup(pid).is_ok_and(|cg| crate::procfs::is_within(&cg, &cgroup));
            if still_there {
                // SAFETY: kill has no memory preconditions.
                unsafe {
                    libc::kill(pid as libc::pid_t, signal);
                }
            }
        }
        Ok(())
    }

    /// The service's main pid (0: none), its cgroup and the other processes
    /// in it except its control process (none once the cgroup is gone);
    /// None when they cannot be read.
    async fn other_processes(
        &self,
        unit: &str,
        path: OwnedObjectPath,
    ) -> Option<(u32, String, Vec<u32>)> {
        let props = self.properties(path).await.ok()?;
        let mut s = props
            .get_all("org.freedesktop.systemd1.Service")
            .await
            .ok()?;
        let main: u32 = take(&mut s, "MainPID").unwrap_or(0);
        let control: u32 = take(&mut s, "ControlPID").unwrap_or(0);
        let cgroup: String = take(&mut s, "ControlGroup").unwrap_or_default();
        // Empty once the unit's processes are gone. Nothing but the unit's
        // own cgroup is read: "" or "/" would be every process there is.
        if cgroup.is_empty() {
            return Some((main, cgroup, Vec::new()));
        }
        if !cgroup.ends_with(&format!("/{unit}")) {
            return None;
        }
        let mut pids = crate::procfs::cgroup_processes(&cgroup)?;
        pids.retain(|p| *p != main && *p != control && *p != 0);
        Some((main, cgroup, pids))
    }

    /// Freezes (or thaws) a unit through the cgroup freezer. systemd sets
    /// no timeout on this, so the client does: a freeze that does not
    /// complete in time is reported, not waited on forever.
    pub async fn set_frozen(&self, unit: &str, frozen: bool) -> Result<()> {
        let action = if frozen { "freeze" } else { "thaw" };
        let call = async {
            if frozen {
                self.manager.freeze_unit(unit).await
            } else {
                self.manager.thaw_unit(unit).await
            }
        };
        match tokio::time::timeout(FREEZE_TIMEOUT, call).await {
            Ok(r) => r.map_err(|e| dbus_error(&format!("{action} {unit}"), unit, e)),
            Err(_) => Err(Error::systemd(format!(
                "cannot {action} {unit}: the freezer did not finish within {}s",
                FREEZE_TIMEOUT.as_secs()
            ))
            .hint(format!("see systemctl --user show {unit} -p FreezerState"))),
        }
    }

    pub async fn reset_failed(&self, unit: &str) -> Result<()> {
        self.manager
            .reset_failed_unit(unit)
            .await
            .map_err(|e| dbus_error(&format!("reset {unit}"), unit, e))
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

    async fn properties(&self, path: OwnedObjectPath) -> Result<PropertiesProxy<'static>> {
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

/// KillUnit's answer when the process to signal is gone.
const NO_SUCH_PROCESS: &str = "org.freedesktop.systemd1.NoSuchProcess";

/// How long to wait for a manager that left the bus (daemon-reexec) to
/// come back before giving up.
const REEXEC_TIMEOUT: Duration = Duration::from_secs(90);
/// How many times one call is tried again after the manager came back.
const REEXEC_RETRIES: usize = 3;

/// Whether a failed call means the manager is off the bus for a moment
/// (daemon-reexec drops its connection: calls in flight get NoReply, new
/// ones find no owner of the name) rather than a real answer.
fn is_away(e: &zbus::Error) -> bool {
    matches!(
        error_name(e).as_deref(),
        Some(
            "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        )
    )
}

impl Systemd {
    /// Waits, on the bus's NameOwnerChanged, until a manager owns
    /// org.freedesktop.systemd1 and answers again; false if none does in
    /// time (it is not re-executing but gone).
    async fn await_manager(&self) -> bool {
        let wait = async {
            let Ok(bus) = zbus::fdo::DBusProxy::new(self.connection()).await else {
                return false;
            };
            // The stream exists before the check, so the return is not missed.
            let Ok(mut owners) = bus
                .receive_name_owner_changed_with_args(&[(0, "org.freedesktop.systemd1")])
                .await
            else {
                return false;
            };
            loop {
                match self.manager.version().await {
                    Ok(_) => return true,
                    Err(e) if is_away(&e) => {}
                    Err(_) => return false,
                }
                if owners.next().await.is_none() {
                    return false;
                }
            }
        };
        tokio::time::timeout(REEXEC_TIMEOUT, wait)
            .await
            .unwrap_or(false)
    }

    /// Makes a call, and again (a few times) when it failed only because
    /// the manager was re-executing: reads are safe to repeat.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> zbus::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let mut retries = 0;
        loop {
            match call().await {
                Err(e) if is_away(&e) && retries < REEXEC_RETRIES => {
                    retries += 1;
                    if !self.await_manager().await {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }
}

/// systemd's ExecStart entry: path, argv, ignore-failure, start/stop
/// timestamps, pid, code, status.
type ExecEntry = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);

/// systemd reports "not tracked" as u64::MAX.
fn tracked(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

fn take<T: TryFrom<OwnedValue>>(map: &mut HashMap<String, OwnedValue>, key: &str) -> Option<T> {
    map.remove(key).and_then(|v| T::try_from(v).ok())
}

async fn wait_job(
    mut jobs: JobRemovedStream,
    job: &OwnedObjectPath,
    action: &str,
    timeout: Duration,
) -> Result<JobOutcome> {
    let wait = async {
        while let Some(signal) = jobs.next().await {
            let Ok(args) = signal.args() else { continue };
            if args.job == *job {
                return Ok(JobOutcome {
                    result: args.result,
                });
            }
        }
        Err(Error::systemd(format!(
            "cannot {action}: the connection to systemd closed before the job ended"
        )))
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        Error::systemd(format!(
            "cannot {action}: systemd did not finish the job within {}s",
            timeout.as_secs()
        ))
        .hint("see `systemctl --user list-jobs` and the journal")
    })?
}

/// Writes the drop-ins among `props` beside the transient unit file, before
/// the unit exists (the user manager's runtime dir, as systemd names it).
fn write_drop_ins(unit: &str, props: &[(&'static str, Prop)]) -> Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for (_, p) in props {
        if let Prop::DropIn { file, text } = p {
            // SAFETY: getuid cannot fail.
            let runtime =
                std::path::PathBuf::from(format!("/run/user/{}", unsafe { libc::getuid() }));
            written.push(crate::confine::write_drop_in(&runtime, unit, file, text)?);
        }
    }
    Ok(written)
}

fn to_value(p: &Prop) -> Value<'_> {
    match p {
        Prop::Str(s) => Value::from(s.as_str()),
        Prop::U64(v) => Value::from(*v),
        Prop::U32(v) => Value::from(*v),
        Prop::Strs(v) => Value::from(v.clone()),
        Prop::U32s(v) => Value::from(v.clone()),
        Prop::Exec(v) => Value::from(v.clone()),
        Prop::Bool(v) => Value::from(*v),
        Prop::ExecEx(v) => Value::from(v.clone()),
        // Filtered out before the call (written as a file instead).
        Prop::DropIn { .. } => Value::from(""),
    }
}

fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(fdo) => Some(fdo.name().to_string()),
        _ => None,
    }
}

/// The text of a D-Bus error reply, without its name.
fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(msg), _) => msg.clone(),
        e => e.to_string(),
    }
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    error_name(e).as_deref() == Some("org.freedesktop.systemd1.NoSuchUnit")
        || matches!(e, zbus::Error::FDO(f) if matches!(**f, zbus::fdo::Error::UnknownObject(_)))
}

/// Why no manager answered, and what usually fixes it.
fn unreachable(reason: &str) -> Error {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR");
    let cause = match (&runtime, std::env::var_os("DBUS_SESSION_BUS_ADDRESS")) {
        (None, None) => "neither XDG_RUNTIME_DIR nor DBUS_SESSION_BUS_ADDRESS is set".to_string(),
        _ => reason.to_string(),
    };
    if crate::confine::looks_confined(reason) {
        return Error::new(
            ErrorKind::Unavailable,
            format!("no systemd user manager is reachable: {cause}"),
        )
        .hint(crate::confine::UNREACHABLE_HINT);
    }
    Error::new(
        ErrorKind::Unavailable,
        format!("no systemd user manager is reachable: {cause}"),
    )
    .hint(
        "run refine-proc inside a user session, or set XDG_RUNTIME_DIR=/run/user/$(id -u) \
         (and DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus); for SSH or cron \
         without a login, enable lingering: loginctl enable-linger $USER",
    )
}

/// Maps a D-Bus failure while doing `action` on `unit` to a library error.
fn dbus_error(action: &str, unit: &str, e: zbus::Error) -> Error {
    let name = error_name(&e).unwrap_or_default();
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            unreachable("the bus has no org.freedesktop.systemd1 (no systemd --user on this bus)")
        }
        "org.freedesktop.systemd1.NoSuchUnit" => {
            Error::not_found(format!("cannot {action}: {unit} is not loaded"))
        }
        // A pid handed to systemd (a scope's PIDs) exited meanwhile.
        "org.freedesktop.DBus.Error.UnixProcessIdUnknown" => {
            Error::not_found(format!("cannot {action}: {}", dbus_message(&e)))
        }
        "org.freedesktop.systemd1.UnitExists" => Error::systemd(format!(
            "cannot {action}: a unit named {unit} already exists"
        )),
        _ => match e {
            zbus::Error::InputOutput(_) => unreachable(&e.to_string()),
            e => Error::systemd(format!("cannot {action}: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_come_back_from_object_paths() {
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/refine_2dagent_2dk3x9p2qa_2eservice")
                .as_deref(),
            Some("refine-agent-k3x9p2qa.service")
        );
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/refine_2duser_5cx2dhelper_2eslice")
                .as_deref(),
            Some("refine-user\\x2dhelper.slice")
        );
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/bad_zz"),
            None
        );
        assert_eq!(unit_name_of_path("/elsewhere/x"), None);
    }
}

#[cfg(test)]
mod unit_path_tests {
    #[test]
    fn a_unit_object_path_decodes_to_its_name() {
        assert_eq!(
            super::unit_name_of_path(
                "/org/freedesktop/systemd1/unit/refine_2dagent_2dabcd2345_2eservice"
            )
            .as_deref(),
            Some("refine-agent-abcd2345.service")
        );
        assert_eq!(
            super::unit_name_of_path("/org/freedesktop/systemd1/unit/bad_zz"),
            None
        );
    }
}
