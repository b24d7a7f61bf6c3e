//! `stop`, `kill`, `restart` and `forget`.

use super::*;

impl Controller {
    /// Stops processes and waits until systemd has stopped them.
    pub async fn stop(&self, args: &[String]) -> Result<Vec<ActionOutcome>> {
        let ids = args
            .iter()
            .map(|a| self.resolve(a))
            .collect::<Result<Vec<_>>>()?;
        let mut targets = Vec::new();
        for id in &ids {
            targets.push(self.load(id, &mut Vec::new()).await?);
        }
        self.stop_loaded(targets).await
    }

    /// Stops a selection: ids, or a group (`--owner`, `--workflow`,
    /// `--session`, `--all`), and with `tree` every running process each
    /// of them launched, transitively (what `list --tree` draws under it),
    /// children first. Queued runs of a group are cancelled. A managed
    /// caller never stops itself or its ancestors this way.
    pub async fn stop_selection(
        &self,
        target: &Selection,
        tree: bool,
    ) -> Result<Vec<ActionOutcome>> {
        let group = target.ids.is_empty();
        if group {
            self.authorize_group("stop", target).await?;
        }
        let running = self.list(&ListFilter::default()).await?.0;
        let mut chosen: Vec<Record> = if group {
            let filter = ListFilter {
                owner: target.owner,
                workflow: target.workflow.clone(),
                session: target.session.clone(),
                ..Default::default()
            };
            running
                .iter()
                .filter(|r| filter.matches(r))
                .cloned()
                .collect()
        } else {
            let mut picked = Vec::new();
            for arg in &target.ids {
                let id = self.resolve(arg)?;
                picked.push(self.load(&id, &mut Vec::new()).await?.0);
            }
            picked
        };
        if tree {
            let roots: Vec<String> = chosen.iter().map(|r| r.id.clone()).collect();
            for r in &running {
                let under = roots
                    .iter()
                    .any(|root| r.id != *root && self.descends_from(r, root));
                if under && !chosen.iter().any(|c| c.id == r.id) {
                    chosen.push(r.clone());
                }
            }
            // Children before their parents: a parent that restarts a child
            // it sees die is stopped after it.
            chosen.reverse();
        }
        if group || tree {
            let exempt = self.caller_and_ancestors().await?;
            chosen.retain(|r| !exempt.contains(&r.id));
        }
        let mut targets = Vec::new();
        for r in chosen {
            targets.push(self.load(&r.id, &mut Vec::new()).await?);
        }
        self.stop_loaded(targets).await
    }

    async fn stop_loaded(
        &self,
        targets: Vec<(Record, Option<ServiceInfo>)>,
    ) -> Result<Vec<ActionOutcome>> {
        // All allowed, or none is stopped.
        for (record, _) in &targets {
            self.authorize("stop", record).await?;
        }
        let systemd = self.systemd().await?;
        let stops = targets.into_iter().map(|(record, info)| async move {
            let Some(info) = info else {
                if record.state == State::Queued {
                    // Never started: stopping it cancels it, so no resume
                    // starts it later.
                    let updated = self.index.update(&record.id, |r| {
                        if r.state == State::Queued {
                            r.state = State::Stopped;
                            r.ended_at = Some(Timestamp::now());
                            r.paused_by = None;
                        }
                    })?;
                    let mut r = updated.unwrap_or(record);
                    reconcile(&mut r, None);
                    self.emit(Event::about("stopped", &r));
                    return Ok(outcome(&r, Outcome::Stopped));
                }
                let mut r = record;
                reconcile(&mut r, None);
                return Ok(outcome(&r, Outcome::WasNotRunning));
            };
            self.request_stop(&record.id, &info).await?;
            let timeout = Duration::from_secs(record.limits.timeout_stop_sec.unwrap_or(0));
            systemd.stop_within(&record.unit, timeout).await?;
            if record.kind == UnitKind::Scope {
                // No exit hook runs for a scope: the end is recorded here.
                let update = self
                    .index
                    .update_async(&record.id, |r| {
                        if !r.state.is_ended() {
                            r.state = State::Stopped;
                            r.ended_at = Some(Timestamp::now());
                            r.paused_by = None;
                        }
                    })
                    .await;
                crate::index::or_warn(update, &format!("that {} was stopped", record.id));
                // A service's end is recorded by its exit hook, with the exit.
                self.emit(Event::about("stopped", &record));
            }
            Ok(outcome(&self.refetch(record).await?, Outcome::Stopped))
        });
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .collect()
    }

    /// Marks the unit's current run as ended on request, so its exit is
    /// recorded as `stopped` (and only that run's).
    /// Async: the daemon stops unhealthy processes, and must not stall
    /// its executor while another process holds the index lock (issue 9).
    pub(super) async fn request_stop(&self, id: &str, info: &ServiceInfo) -> Result<()> {
        let invocation = info.invocation_id.clone();
        // A full disk must not keep a process running (issue 10.8).
        let update = self
            .index
            .update_async(id, |r| r.stop_requested_for = invocation)
            .await;
        crate::index::or_warn(update, &format!("that {id} is being stopped"));
        Ok(())
    }

    /// Sends a signal to all processes of a running process's unit.
    pub async fn kill(&self, arg: &str, signal: i32) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("kill", &record).await?;
        let Some(info) = info else {
            let mut r = record;
            reconcile(&mut r, None);
            return Err(Error::refused(format!(
                "{id} is not running (it is {}); there is nothing to signal",
                r.state
            )));
        };
        // Signals that ask a process to end; HUP, USR1, ... usually do not.
        let ends = [
            libc::SIGKILL,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGABRT,
        ];
        let ending = ends.contains(&signal);
        if ending {
            self.request_stop(&id, &info).await?;
        }
        if let Err(e) = self.systemd().await?.kill(&record.unit, signal).await {
            if ending {
                let update = self.index.update(&id, |r| r.stop_requested_for = None);
                crate::index::or_warn(update, "that the stop did not happen");
            }
            return Err(e);
        }
        self.emit(Event::about("killed", &record).with("signal", signal));
        // A frozen process gets only SIGKILL now; any other signal waits
        // in the kernel until it is resumed.
        let frozen = matches!(
            info.state.freezer_state.as_deref(),
            Some("frozen" | "freezing")
        );
        let what = if frozen && signal != libc::SIGKILL {
            Outcome::SignalledDeliveredOnResume
        } else {
            Outcome::Signalled
        };
        Ok(outcome(&self.refetch(record).await?, what))
    }

    /// Restarts a running process, or starts an ended one again under the
    /// same id with the same command, environment and limits.
    pub async fn restart(&self, arg: &str) -> Result<ActionOutcome> {
        self.restart_noting(arg, serde_json::Map::new()).await
    }

    /// [`Controller::restart`], with `details` added to its `restarted`
    /// event (the daemon's reason and attempt): one restart, one event.
    pub async fn restart_noting(
        &self,
        arg: &str,
        details: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("restart", &record).await?;
        if record.kind == UnitKind::Scope {
            return Err(Error::refused(format!(
                "{id} is an adopted process: it cannot be restarted; refine-proc has no \
                 command line to start it again"
            ))
            .hint("start the command anew with refine-proc run -- COMMAND"));
        }
        let systemd = self.systemd().await?;
        if let Some(info) = info {
            // The exit this causes is ours, not a failure.
            self.request_stop(&id, &info).await?;
            systemd.restart(&record.unit).await?;
            let pid = systemd.exec_main_pid(&record.unit).await?;
            self.forget_group_freeze(&id)?;
            // A new run starts its health anew.
            self.drop_health(&id);
            let old = info.invocation_id;
            self.index.update(&id, |r| {
                r.began_run(pid);
                // If the latest exit is the one we caused, the record
                // describes the new run now; a later exit stays as recorded.
                if r.last_exit_invocation == old {
                    r.clear_exit();
                    r.state = State::Running;
                }
                // systemd thaws a unit to stop it: the new run is not frozen.
                r.paused_by = None;
            })?;
            let mut event = Event::about("restarted", &record);
            event.details.extend(details);
            self.emit(event);
            let what = if record.paused_by.is_some() {
                Outcome::RestartedUnpaused
            } else {
                Outcome::Restarted
            };
            return Ok(outcome(&self.refetch(record).await?, what));
        }
        if record.command.is_empty() {
            return Err(Error::refused(format!(
                "cannot start {id} again: its record was rebuilt after the index was lost, without the command"
            ))
            .hint("start it anew with refine-proc run"));
        }
        let launch = Self::launch_of(&record)?;
        // Started again under the limits the restarter may grant, and bound
        // by the policy of its first launch (not the restarter's).
        let requester = self.requester().await?;
        let request = LaunchRequest {
            owner: launch.owner,
            executable: &launch.executable,
            limits: &launch.limits,
        };
        if let Err(e) = requester.policy.check_launch(requester.actor, &request) {
            self.record_refusal("restart", Some(&id), &e);
            return Err(e);
        }
        if let Some(held) = self.held_by_pause(record.owner, &record.metadata)? {
            let e = Error::refused(format!(
                "cannot start {id} again: {} is paused ({} since {})",
                held_what(&held, record.owner, &record.metadata),
                held.selector,
                held.since
            ))
            .hint(format!(
                "resume first: refine-proc resume {}",
                selector_flag(&held.selector)
            ));
            self.record_refusal("restart", Some(&id), &e);
            return Err(e);
        }
        self.drop_health(&id);
        let r = self.start_anew(record, &launch).await?;
        self.emit(started_event(&r).with("restarted", true));
        Ok(outcome(&r, Outcome::StartedAgain))
    }

    /// Starts a record's command again (an ended run, or a queued one) in
    /// its unit, under the policy of its first launch.
    pub(super) async fn start_anew(&self, record: Record, launch: &Launch) -> Result<Record> {
        let id = record.id.clone();
        let bound_by = match &record.requested_by.policy {
            Some(path) => Policy::load(Path::new(path))?,
            None => self.requester().await?.policy.clone(),
        };
        let mut hook = self.unit_context(&bound_by, record.requested_by.clone())?;
        let first = record
            .requested_by
            .acting_owner
            .map_or(Actor::Person, Actor::Managed);
        let version = async { self.systemd().await?.version_number().await };
        hook.confinement =
            crate::confine::for_launch(&bound_by, first, launch.owner, version).await?;
        self.forget_group_freeze(&id)?;
        self.index.update(&id, |r| {
            r.clear_exit();
            r.state = State::Starting;
            r.pid = None;
            r.paused_by = None;
            r.started_at = Some(Timestamp::now());
            r.launcher = crate::procfs::identity(std::process::id());
        })?;
        let props = service_properties(&id, launch, &hook);
        let job = match self
            .systemd()
            .await?
            .start_transient(&record.unit, &props)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                // Keep the history; say the new start was refused.
                self.index.update(&id, |r| {
                    r.state = State::Failed;
                    r.result = Some("start-refused".into());
                    r.ended_at = Some(Timestamp::now());
                })?;
                return Err(e);
            }
        };
        self.after_start(record, job).await
    }

    /// Drops what the health probes found (best effort: a stale state is
    /// replaced by the next probe anyway).
    pub(super) fn drop_health(&self, id: &str) {
        if let Err(e) = self.index.remove_health(id) {
            tracing::debug!("cannot drop the health state of {id}: {}", e.message);
        }
    }

    /// The launch a record describes, checked again as `run` would.
    pub(super) fn launch_of(record: &Record) -> Result<Launch> {
        spec_of(record).validate().map(|mut launch| {
            launch.restart_by = record.restart.by;
            launch
        })
    }

    /// Drops the record of an ended process.
    pub async fn forget(&self, arg: &str) -> Result<ActionOutcome> {
        let id = self.resolve(arg)?;
        let (mut record, info) = self.load(&id, &mut Vec::new()).await?;
        self.authorize("forget", &record).await?;
        if let Some(info) = &info {
            if info.state.active_state == "failed" {
                self.systemd().await?.reset_failed(&record.unit).await?;
            } else {
                return Err(Error::refused(format!(
                    "{id} is still {} ({}); refusing to forget a live process",
                    info.state.active_state, info.state.sub_state
                ))
                .hint(format!("stop it first: refine-proc stop {id}")));
            }
        }
        self.index.remove(&id)?;
        self.drop_health(&id);
        // So that `recover` does not bring it back from the journal.
        let dir = self.index.dir().display().to_string();
        let _ = crate::journal::send(&[
            ("MESSAGE", &format!("{}: record forgotten", record.unit)),
            ("SYSLOG_IDENTIFIER", crate::journal::OWN_IDENTIFIER),
            ("PRIORITY", "6"),
            ("REFINE_EVENT", "forget"),
            ("REFINE_ID", &id),
            ("REFINE_UNIT", &record.unit),
            ("REFINE_PROC_STATE_DIR", &dir),
        ]);
        reconcile(&mut record, None);
        self.emit(Event::about("forgotten", &record));
        Ok(outcome(&record, Outcome::Forgotten))
    }
}
