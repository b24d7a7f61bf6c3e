//! `run` and `adopt`: validate, authorize, write the record, start the unit.

use super::*;

/// How many times `adopt` scans again when a descendant exits between the
/// scan and systemd's move (systemd refuses the whole call then).
const ADOPT_ATTEMPTS: usize = 3;

impl Controller {
    pub(super) fn unit_context(
        &self,
        policy: &Policy,
        requested_by: RequestedBy,
    ) -> Result<UnitContext> {
        if !self.hook_program.is_absolute() || !self.hook_program.is_file() {
            return Err(Error::invalid(format!(
                "cannot find the refine-proc binary ({}) that records exits",
                self.hook_program.display()
            ))
            .hint("install refine-proc on PATH, or set REFINE_PROC_HOOK to its absolute path"));
        }
        crate::unitexec::check_program_path(&self.hook_program)?;
        Ok(UnitContext {
            program: self.hook_program.clone(),
            state_dir: self.index.dir().to_path_buf(),
            policy: policy.path.clone(),
            requested_by,
            confinement: None,
        })
    }

    /// Launches a process as a transient user service and returns its record
    /// once systemd has started it (or, with `wait`, once it has ended).
    pub async fn run(&self, spec: RunSpec, options: RunOptions) -> Result<Record> {
        let id = new_id();
        let prepared = self.prepare_record(&spec, id.clone());
        let requester = self.requester().await?;
        let launch = self.authorize_launch(requester, spec).await?;
        if let Some(held) = self.held_by_pause(launch.owner, &launch.metadata)? {
            return self.held_launch(&launch, requester, &held, options.queue);
        }
        let mut hook = self.unit_context(&requester.policy, requester.requested_by())?;
        let version = async { self.systemd().await?.version_number().await };
        hook.confinement =
            crate::confine::for_launch(&requester.policy, requester.actor, launch.owner, version)
                .await?;
        crate::fault::point("before-index-write");
        // The record must exist before systemd starts the unit (the exit
        // hook updates it).
        let (record, watch) = self
            .store_launch(&launch, requester.requested_by(), prepared, &id)
            .await?;
        crate::fault::point("after-index-write");
        let systemd = match self.systemd().await {
            Ok(systemd) => systemd,
            Err(e) => {
                self.index.remove(&record.id)?;
                return Err(e);
            }
        };
        let props = service_properties(&record.id, &launch, &hook);
        let wait = start_wait(&launch, options);
        let watch = match watch.filter(|w| w.unit() == record.unit) {
            Some(watch) => Ok(watch),
            None => systemd.watch_start(&record.unit).await,
        };
        let started = match watch {
            Ok(watch) => systemd.start_transient_watched(watch, &props, wait).await,
            Err(e) => Err(e),
        };
        let job = match started {
            Ok(job) => job,
            Err(e) => {
                // systemd never created the unit: nothing ran, keep no record.
                if !systemd.is_loaded(&record.unit).await.unwrap_or(true) {
                    self.index.remove(&record.id)?;
                }
                return Err(e);
            }
        };
        // after_start fails when the process never ran; otherwise it ran,
        // and may be restarting, and --wait waits for the very end.
        let record = self.after_start(record, job).await?;
        crate::fault::point("after-start");
        let record = self.await_ready(record, &launch, options).await?;
        self.finish_run(record, options).await
    }

    /// The record of a launch, written and fsynced (unnamed, so invisible)
    /// while the bus says who asks, for the likely caller: a person. The
    /// guess decides nothing: [`Controller::store_launch`] uses the file only
    /// if it holds exactly what the launch, authorized for the caller as
    /// found, would write. The durable write then overlaps the round trips.
    fn prepare_record(&self, spec: &RunSpec, id: String) -> Option<PreparedRecord> {
        let guess = self.person_guess()?;
        let (index, mut spec) = (self.index.clone(), spec.clone());
        Some(tokio::task::spawn_blocking(move || {
            guess.inherit(&mut spec.owner, &mut spec.metadata);
            let launch = authorize(&guess, spec.validate_in(&guess.who.env).ok()?).ok()?;
            let requested_by = guess.requested_by();
            let record = new_record(id, &launch, requested_by.clone());
            let file = index.write_unnamed(&record).ok()??;
            Some(Prepared {
                launch,
                requested_by,
                record,
                file,
            })
        }))
    }

    /// The spec as the caller may launch it: validated, inheriting from a
    /// managed caller, within its policy (a refusal is audited).
    async fn authorize_launch(&self, requester: &Requester, mut spec: RunSpec) -> Result<Launch> {
        requester.inherit(&mut spec.owner, &mut spec.metadata);
        let launch = spec.validate_in(&requester.who.env)?;
        let mut launch =
            authorize(requester, launch).inspect_err(|e| self.record_refusal("run", None, e))?;
        let backoff =
            launch.restart != RestartPolicy::No && launch.restart_timing.max_delay_sec.is_some();
        if backoff {
            // RestartSteps= came with systemd 254; before, the daemon does it.
            let version = self.systemd().await?.version_number().await?;
            if version < 254 {
                launch.restart_by = crate::model::RestartBy::Daemon;
            }
        }
        Ok(launch)
    }

    /// A launch a pause holds: queued with `--queue`, else refused.
    fn held_launch(
        &self,
        launch: &Launch,
        requester: &Requester,
        held: &GroupPause,
        queue: bool,
    ) -> Result<Record> {
        if queue {
            return self.queue(launch, requester.requested_by(), held);
        }
        let e = Error::refused(format!(
            "{} is paused ({} since {} by {}): run for it is refused while the pause holds",
            held_what(held, launch.owner, &launch.metadata),
            held.selector,
            held.since,
            held.by
        ))
        .hint(format!(
            "resume it with refine-proc resume {}, or add --queue to start this run on resume",
            selector_flag(&held.selector)
        ));
        self.record_refusal("run", None, &e);
        Err(e)
    }

    /// Writes the record of `launch` before its start: the prepared file if
    /// it holds exactly this record, else anew. While the prepared file is
    /// awaited, the start job of its unit (`id`'s) is subscribed to.
    async fn store_launch(
        &self,
        launch: &Launch,
        requested_by: RequestedBy,
        prepared: Option<PreparedRecord>,
        id: &str,
    ) -> Result<(Record, Option<StartWatch>)> {
        if let Some(task) = prepared {
            let unit = unit_name(launch.owner, id);
            let watch = async { self.systemd().await.ok()?.watch_start(&unit).await.ok() };
            let (prepared, watch) = tokio::join!(task, watch);
            let fits = |p: &Prepared| p.launch == *launch && p.requested_by == requested_by;
            if let Some(p) = prepared.ok().flatten().filter(fits) {
                if let Some(record) = name_prepared(&self.index, p.record, p.file)? {
                    return Ok((record, watch));
                }
            }
        }
        let (index, launch) = (self.index.clone(), launch.clone());
        let record =
            tokio::task::spawn_blocking(move || store_new_record(&index, &launch, requested_by))
                .await
                .map_err(|e| Error::index(format!("cannot write the new record: {e}")))??;
        Ok((record, None))
    }

    /// With `--ready` and `wait_ready`: waits for the health check to pass,
    /// and fails unless the process is running and ready.
    async fn await_ready(
        &self,
        mut record: Record,
        launch: &Launch,
        options: RunOptions,
    ) -> Result<Record> {
        if !options.wait_ready {
            return Ok(record);
        }
        let ready = launch.ready.as_ref();
        let by_health = ready.is_some_and(|r| r.on == crate::model::Readiness::Health);
        if by_health && record.state == State::Running {
            record = self.wait_healthy(record).await?;
        }
        if record.state == State::Running {
            return Ok(record);
        }
        let why = match record.result.as_deref() {
            Some("timeout") => format!(
                "it did not say READY=1 within {}s, so systemd stopped it",
                ready.and_then(|r| r.timeout_sec).unwrap_or(90)
            ),
            _ => format!("it ended first ({})", record.state),
        };
        Err(Error::systemd(format!(
            "{} ({}) did not become ready: {why}",
            record.unit,
            escape(&record.label)
        ))
        .hint(format!("see why: refine-proc logs {}", record.id)))
    }

    /// Announces the start, holds it if a pause came meanwhile, and with
    /// `--wait` waits for the end.
    async fn finish_run(&self, mut record: Record, options: RunOptions) -> Result<Record> {
        self.emit(started_event(&record).with("command", &record.command));
        // A pause made while this run was being started did not see it.
        if let Some(held) = self.held_by_pause(record.owner, &record.metadata)? {
            record = self.hold_late_start(record, &held).await?;
        }
        if !options.wait {
            return Ok(record);
        }
        self.systemd().await?.wait_until_gone(&record.unit).await?;
        self.refetch(record).await
    }

    /// Probes a process started with `--ready health` until a probe passes
    /// (its health is then stored as healthy) or its ready timeout passes.
    pub(super) async fn wait_healthy(&self, record: Record) -> Result<Record> {
        let Some(spec) = record.health.clone() else {
            return Ok(record);
        };
        let timeout = record
            .ready
            .as_ref()
            .and_then(|r| r.timeout_sec)
            .unwrap_or(90);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Readiness is worth a quicker look than the routine interval.
        let pace = spec.interval().min(Duration::from_millis(500));
        let cwd = record.cwd.as_ref().map(PathBuf::from);
        let started = record.started_at.unwrap_or_else(Timestamp::now);
        let mut state = crate::health::HealthState::new(started);
        loop {
            let result = crate::health::probe(&spec, cwd.as_deref(), &record.environment).await;
            let ok = result.ok;
            state.apply(&spec, result, started);
            if ok {
                self.index.save_health(&record.id, &state)?;
                return self.refetch(record).await;
            }
            let current = self.refetch(record.clone()).await?;
            if current.state.is_ended() {
                return Ok(current);
            }
            if tokio::time::Instant::now() + pace > deadline {
                let last = state.last.map(|l| l.output).unwrap_or_default();
                return Err(Error::systemd(format!(
                    "{} ({}) did not become ready: its health check did not pass within {timeout}s (last: {})",
                    record.unit,
                    escape(&record.label),
                    escape(last.lines().next().unwrap_or("no output"))
                ))
                .hint(format!(
                    "it keeps running: refine-proc status {} shows it; stop it with refine-proc stop {}",
                    record.id, record.id
                )));
            }
            tokio::time::sleep(pace).await;
        }
    }

    pub(super) async fn after_start(&self, record: Record, job: JobOutcome) -> Result<Record> {
        let pid = self.systemd().await?.exec_main_pid(&record.unit).await?;
        let updated = self.index.update(&record.id, |r| {
            r.launcher = None;
            r.pid = pid.or(r.pid);
            // Unless the exit hook already recorded the end of this run.
            if r.state == State::Starting && job.result == "done" {
                r.state = State::Running;
            }
        })?;
        let mut record = updated.unwrap_or(record);
        // A start job also "fails" when the process ran but exited non-zero
        // before systemd saw it running; only systemd's own spawn failures
        // (exit codes 200-245: chdir, exec, user, ...) mean it never started.
        let spawn_failed = record.exit_code.is_some_and(|c| (200..=245).contains(&c));
        // "spawned": a Type=notify process runs and has not said READY=1.
        let ran = job.result == "done" || job.result == "spawned";
        if !ran && (spawn_failed || record.result.is_none()) {
            let how = match (&record.result, record.exit_code) {
                (Some(_), Some(code)) => format!(
                    "systemd could not execute it (status {code}{})",
                    spawn_failure_name(code)
                ),
                _ => format!("the start job ended with \"{}\"", job.result),
            };
            return Err(Error::systemd(format!(
                "{} ({}) failed to start: {how}",
                record.unit,
                escape(&record.label)
            ))
            .hint(format!(
                "see why: refine-proc logs {} and journalctl --user -u {}",
                record.id, record.unit
            )));
        }
        // The stored state is the truth right now: running, or the exit the
        // hook has already recorded.
        present(&mut record);
        Ok(record)
    }

    /// Moves a running process (by default with its descendants) into a
    /// transient scope `refine-<owner>-<id>.scope` and records it like any
    /// other process. Everything is checked before anything changes; the
    /// record is written before systemd is asked, and removed if systemd
    /// refuses. Descendants are found by one scan of /proc: a child forked
    /// after the scan stays where it is.
    pub async fn adopt(&self, mut spec: AdoptSpec) -> Result<Adopted> {
        let requester = self.requester().await?;
        requester.inherit(&mut spec.owner, &mut spec.metadata);
        let mut attempt = 1;
        loop {
            let mut adoption = spec.clone().validate()?;
            // A managed process's own children already live in its unit, so
            // whatever it could adopt is someone else's: it needs reach over all.
            let rules = requester.policy.rules(requester.actor);
            let reach = if requester.caller.is_some() && rules.act_on != Reach::All {
                Err(crate::policy::denied(
                    &rules,
                    "act_on",
                    format!(
                        "{} may not adopt processes (that needs act_on = \"all\")",
                        rules.actor
                    ),
                ))
            } else {
                requester
                    .policy
                    .check_owner(requester.actor, adoption.owner)
            };
            if let Err(e) = reach {
                self.record_refusal("adopt", None, &e);
                return Err(e);
            }
            let systemd = self.systemd().await?;
            if let Some(root) = systemd.manager_control_group().await? {
                adoption.restrict_to_subtree(&root)?;
            }
            let requested_by = requester.requested_by();
            let record = store_fresh(&self.index, |id| {
                adopted_record(id, &adoption, requested_by.clone())
            })?;
            journal_start(&self.index, &record);
            let props = scope_properties(&adoption);
            let job = match systemd.start_transient(&record.unit, &props).await {
                Ok(job) => job,
                Err(e) => {
                    let loaded = systemd.is_loaded(&record.unit).await.unwrap_or(true);
                    if !loaded {
                        self.index.remove(&record.id)?;
                    }
                    // A pid exited between the scan and the call: scan again.
                    if e.kind == crate::ErrorKind::NotFound && !loaded && attempt < ADOPT_ATTEMPTS {
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            };
            if job.result != "done" {
                return Err(self.failed_adoption(&adoption, &record, &job).await);
            }
            let mut record = self
                .index
                .update(&record.id, |r| {
                    r.launcher = None;
                    if r.state == State::Starting {
                        r.state = State::Running;
                    }
                })?
                .unwrap_or(record);
            present(&mut record);
            let warnings = adoption
                .left
                .iter()
                .map(|(pid, why)| format!("left pid {pid} where it is: {why}"))
                .collect();
            self.emit(Event::about("adopted", &record).with("pids", adoption.pids()));
            return Ok(Adopted {
                record,
                moved: adoption.pids(),
                warnings,
            });
        }
    }

    /// Why systemd's start job for an adopting scope failed, after dropping
    /// the record (nothing was adopted) and the failed unit.
    pub(super) async fn failed_adoption(
        &self,
        adoption: &Adoption,
        record: &Record,
        job: &JobOutcome,
    ) -> Error {
        if let Ok(systemd) = self.systemd().await {
            if systemd.is_loaded(&record.unit).await.unwrap_or(false) {
                let _ = systemd.reset_failed(&record.unit).await;
            }
        }
        if let Err(e) = self.index.remove(&record.id) {
            return e;
        }
        let pid = adoption.pid;
        let moved =
            crate::procfs::cgroup(pid).is_ok_and(|cg| cg.ends_with(&format!("/{}", record.unit)));
        if crate::procfs::stat(pid).is_ok() && !moved {
            // The usual cause: the manager may not write to the cgroup the
            // process lives in (systemd logs "Permission denied").
            return outside_subtree(
                pid,
                &format!(
                    "systemd could not move it into {} (the start job ended with \"{}\"; \
                     journalctl --user -u {} says why)",
                    record.unit, job.result, record.unit
                ),
            );
        }
        Error::systemd(format!(
            "cannot adopt pid {pid}: the start job of {} ended with \"{}\"",
            record.unit, job.result
        ))
        .hint(format!("see journalctl --user -u {}", record.unit))
    }
}

/// A record prepared for a guessed caller (see `Controller::prepare_record`).
type PreparedRecord = tokio::task::JoinHandle<Option<Prepared>>;

struct Prepared {
    /// What it was prepared for: the record is `new_record` of these.
    launch: Launch,
    requested_by: RequestedBy,
    record: Record,
    file: crate::index::UnnamedRecord,
}

/// `launch` checked against the requester's policy: its limits as the
/// policy bounds them, its environment, and the shell a command health
/// check runs. No side effect (the caller audits a refusal).
fn authorize(requester: &Requester, mut launch: Launch) -> Result<Launch> {
    let request = LaunchRequest {
        owner: launch.owner,
        executable: &launch.executable,
        limits: &launch.limits,
    };
    launch.limits = requester.policy.check_launch(requester.actor, &request)?;
    requester
        .policy
        .check_environment(requester.actor, launch.environment.keys())?;
    // A command health check runs the shell (in the daemon, outside the
    // unit): only for an actor the policy lets run the shell.
    if let Some(crate::health::HealthCheck::Cmd { .. }) = launch.health.as_ref().map(|h| &h.check) {
        // As named, or where it leads (/bin is /usr/bin on merged-/usr
        // systems, and a policy may name either).
        let named = PathBuf::from(crate::health::SHELL);
        let real = std::fs::canonicalize(&named).unwrap_or_else(|_| named.clone());
        let allowed = |executable: &Path| {
            let shell = LaunchRequest {
                owner: launch.owner,
                executable,
                limits: &launch.limits,
            };
            requester.policy.check_launch(requester.actor, &shell)
        };
        if let Err(mut e) = allowed(&named).or_else(|e| allowed(&real).map_err(|_| e)) {
            e.message = format!(
                "--health-cmd runs {}, which the policy refuses: {}",
                crate::health::SHELL,
                e.message
            );
            return Err(e);
        }
    }
    Ok(launch)
}

/// What the start waits for: a Type=notify start job lasts until READY=1,
/// so without `wait_ready` only until the process runs.
fn start_wait(launch: &Launch, options: RunOptions) -> StartWait {
    let ready = launch.ready.as_ref();
    let notify = ready.is_some_and(|r| r.on == crate::model::Readiness::Notify);
    match (notify, options.wait_ready) {
        (true, false) => StartWait::Spawned,
        (true, true) => {
            let t = ready.and_then(|r| r.timeout_sec).unwrap_or(90);
            StartWait::Job(Duration::from_secs(t + 30))
        }
        _ => StartWait::Job(Duration::from_secs(90)),
    }
}
