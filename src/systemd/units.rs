//! What the controller asks of units: start a transient unit and wait for its
//! job, wait for a state, change properties, stop, restart, signal, freeze.

use crate::error::{Error, Result};
use crate::spec::Prop;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::*;

/// A subscription to the start job of one unit (see [`Systemd::watch_start`]).
pub struct StartWatch {
    unit: String,
    jobs: JobRemovedStream,
}

impl StartWatch {
    /// The unit it watches.
    pub fn unit(&self) -> &str {
        &self.unit
    }
}

impl Systemd {
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
        let watch = self.watch_start(unit).await?;
        self.start_transient_watched(watch, props, wait).await
    }

    /// Subscribes to the start job of `unit`, to be started with
    /// [`Systemd::start_transient_watched`]: made early, its round trips
    /// overlap other work.
    pub async fn watch_start(&self, unit: &str) -> Result<StartWatch> {
        // Filtered by the bus to this unit, and made before the start call,
        // or a fast job's signal could be missed.
        let jobs = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(|e| dbus_error(&format!("start {unit}"), unit, e))?;
        Ok(StartWatch {
            unit: unit.to_string(),
            jobs,
        })
    }

    /// [`Systemd::start_transient_waiting`] with the subscription made.
    pub async fn start_transient_watched(
        &self,
        watch: StartWatch,
        props: &[(&'static str, Prop)],
        wait: StartWait,
    ) -> Result<JobOutcome> {
        let unit = watch.unit.clone();
        let unit = unit.as_str();
        let drop_ins = write_drop_ins(unit, props)?;
        let props: Vec<(&str, Value<'_>)> = props
            .iter()
            .filter(|(_, v)| !matches!(v, Prop::DropIn { .. }))
            .map(|(k, v)| (*k, to_value(v)))
            .collect();
        let started = self
            .start_transient_inner(watch.jobs, unit, props, wait)
            .await;
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
        jobs: JobRemovedStream,
        unit: &str,
        props: Vec<(&str, Value<'_>)>,
        wait: StartWait,
    ) -> Result<JobOutcome> {
        let action = format!("start {unit}");
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
    /// changed ActiveState and SubState (None: unchanged), with the main
    /// process's exit once it has ended (from the service's own signal: no
    /// round trip to a manager that may be busy starting the exit hook).
    /// FreezerState is not signalled by systemd 252 (systemd issue #31115).
    /// One match rule for all units; nothing is polled.
    pub async fn unit_state_changes(
        &self,
        prefix: &str,
    ) -> Result<impl futures_util::Stream<Item = UnitChange> + Unpin + use<>> {
        let fail = |e: zbus::Error| dbus_error("watch unit state changes", "", e);
        self.manager.subscribe().await.map_err(fail)?;
        // Both interfaces: systemd sends a unit's `Service` properties,
        // then its `Unit` ones, for each change.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged"))
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1/unit"))
            .map_err(fail)?
            .build();
        // A large queue: a burst of starts must not stall the connection
        // (facts: an undrained stream blocks method replies too).
        let stream = zbus::MessageStream::for_match_rule(rule, self.connection(), Some(4096))
            .await
            .map_err(fail)?;
        let prefix = prefix.to_string();
        // Exits said by a `Service` signal, until its unit's `Unit` signal.
        let mut exits = HashMap::new();
        Ok(Box::pin(stream.filter_map(move |msg| {
            let change = msg.ok().and_then(|m| change_of(&m, &prefix, &mut exits));
            std::future::ready(change)
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

/// The change a PropertiesChanged signal of unit `prefix*` says, if any.
fn change_of(
    msg: &zbus::Message,
    prefix: &str,
    exits: &mut HashMap<String, std::collections::BTreeMap<String, String>>,
) -> Option<UnitChange> {
    let unit = unit_name_of_path(msg.header().path()?.as_str())?;
    if !unit.starts_with(prefix) {
        return None;
    }
    let (interface, mut changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
        msg.body().deserialize().ok()?;
    if interface == "org.freedesktop.systemd1.Service" {
        match super::query::main_exit_of(&mut changed) {
            Some(exit) => exits.insert(unit, exit),
            None => exits.remove(&unit),
        };
        return None;
    }
    if interface != "org.freedesktop.systemd1.Unit" {
        return None;
    }
    let invocation = changed
        .remove("InvocationID")
        .and_then(super::query::invocation_hex);
    let exit = exits.remove(&unit).map(|mut e| {
        if let Some(inv) = invocation {
            e.insert("INVOCATION_ID".into(), inv);
        }
        e
    });
    let change = UnitChange {
        unit,
        active_state: take(&mut changed, "ActiveState"),
        sub_state: take(&mut changed, "SubState"),
        exit,
    };
    let any = change.active_state.is_some() || change.sub_state.is_some();
    any.then_some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(unit: &str, interface: &str, changed: HashMap<&str, Value<'_>>) -> zbus::Message {
        let path = unit_path_of_name(unit);
        zbus::Message::signal(
            path.as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .unwrap()
        .build(&(interface, changed, Vec::<String>::new()))
        .unwrap()
    }

    #[test]
    fn an_end_signalled_by_the_service_then_the_unit_carries_the_exit() {
        let unit = "refine-a-x1.service";
        let mut exits = HashMap::new();
        let service = signal(
            unit,
            "org.freedesktop.systemd1.Service",
            HashMap::from([
                ("ExecMainCode", Value::from(2i32)),
                ("ExecMainStatus", Value::from(9i32)),
                ("Result", Value::from("signal")),
            ]),
        );
        assert_eq!(change_of(&service, "refine-", &mut exits), None);
        let id: Vec<u8> = (1..=16).collect();
        let state = signal(
            unit,
            "org.freedesktop.systemd1.Unit",
            HashMap::from([
                ("ActiveState", Value::from("deactivating")),
                ("SubState", Value::from("stop-post")),
                ("InvocationID", Value::from(id)),
            ]),
        );
        let change = change_of(&state, "refine-", &mut exits).expect("a change");
        assert_eq!(change.sub_state.as_deref(), Some("stop-post"));
        let exit = change.exit.expect("the exit from the service's signal");
        assert_eq!(exit["SERVICE_RESULT"], "signal");
        assert_eq!(exit["EXIT_CODE"], "killed");
        assert_eq!(exit["EXIT_STATUS"], "KILL");
        assert_eq!(exit["INVOCATION_ID"], "0102030405060708090a0b0c0d0e0f10");
        assert!(exits.is_empty(), "kept only until the unit's signal");
    }

    #[test]
    fn a_running_service_or_another_prefix_carries_no_exit() {
        let mut exits = HashMap::new();
        let running = signal(
            "refine-a-x2.service",
            "org.freedesktop.systemd1.Service",
            HashMap::from([("ExecMainCode", Value::from(0i32))]),
        );
        assert_eq!(change_of(&running, "refine-", &mut exits), None);
        let state = signal(
            "refine-a-x2.service",
            "org.freedesktop.systemd1.Unit",
            HashMap::from([("SubState", Value::from("running"))]),
        );
        assert_eq!(change_of(&state, "refine-", &mut exits).unwrap().exit, None);
        let other = signal(
            "other.service",
            "org.freedesktop.systemd1.Unit",
            HashMap::from([("SubState", Value::from("running"))]),
        );
        assert_eq!(change_of(&other, "refine-", &mut exits), None);
    }
}
