//! The pause and queue engine: `pause`, `resume`, group pauses that hold
//! `run`, and the queued runs they release.

use super::*;
use crate::policy::PauseAll;

impl Controller {
    /// Pauses processes through the cgroup freezer (FreezeUnit), each one
    /// by itself, and records which `pause` froze it, so that a group's
    /// `resume` thaws exactly what that group's `pause` did.
    pub async fn pause(&self, target: &Selection) -> Result<Vec<ActionOutcome>> {
        self.set_paused(target, true).await
    }

    /// Resumes what `pause` froze: for ids, those processes; for a group,
    /// only the processes that group's pause froze (one paused on its own
    /// stays paused).
    pub async fn resume(&self, target: &Selection) -> Result<Vec<ActionOutcome>> {
        self.set_paused(target, false).await
    }

    pub(super) async fn set_paused(
        &self,
        target: &Selection,
        pause: bool,
    ) -> Result<Vec<ActionOutcome>> {
        let requester = self.requester().await?;
        let job = PauseJob {
            pause,
            tag: target.tag(),
            group: target.ids.is_empty(),
            all: target.all,
            plan: requester.policy.pause_all(),
        };
        let records = self.select_for_pause(target, &job).await?;
        let records = self.authorize_pause(target, &job, records).await?;
        // What this pause is about to freeze (not what it froze before).
        let mut to_freeze: Vec<String> = Vec::new();
        if pause && job.group {
            // Persisted first, and what will be stopped too: a `run`
            // racing with this pause is held, and a crash halfway leaves
            // what resume needs.
            let (to_stop, freeze) = group_targets(&records, &job);
            to_freeze = freeze;
            let by = requester.actor.key().to_string();
            self.index
                .update_pauses(|p| begin_group_pause(p, &job, &by, &to_stop, &to_freeze))?;
            self.emit(
                Event::new("paused")
                    .with("by", &job.tag)
                    .with("group", true),
            );
        }
        // Resuming one group leaves frozen what another pause in force
        // still holds: it passes to that pause (as if that one froze it).
        let others: Vec<GroupPause> = if pause || !job.group {
            Vec::new()
        } else {
            let (pauses, _) = self.index.pauses()?;
            let others = pauses.active.into_iter();
            others.filter(|p| p.selector != job.tag).collect()
        };
        let (records, handed_over) = hand_over(records, &others, &job.tag);
        let changes = records.into_iter().map(|r| async {
            let id = r.id.clone();
            (id, self.apply_pause_step(r, &job).await)
        });
        let results = futures_util::future::join_all(changes).await;
        let done = |what: Outcome| -> Vec<String> {
            let done = results
                .iter()
                .filter(|(_, r)| r.as_ref().is_ok_and(|o| o.outcome == what));
            done.map(|(id, _)| id.clone()).collect()
        };
        let (paused, resumed) = (done(Outcome::Paused), done(Outcome::Resumed));
        if job.group {
            self.index.update_pauses(|p| {
                settle_group_pause(p, &job, &to_freeze, &paused, &resumed, &handed_over)
            })?;
        } else if !pause {
            // Resumed by id: no group holds it frozen any more.
            let (pauses, _) = self.index.pauses()?;
            if resumed.iter().any(|id| pauses.frozen_by(id).is_some()) {
                self.index.update_pauses(|p| {
                    for id in &resumed {
                        p.unfreeze(id);
                    }
                })?;
            }
        }
        let mut outcomes = Vec::with_capacity(results.len() + handed_over.len());
        for (_, r) in results {
            outcomes.push(r?);
        }
        for (id, other) in &handed_over {
            if let Loaded::Found(r) = self.index.load(id)? {
                let mut r = *r;
                r.state = State::Paused;
                r.paused_by = Some(other.clone());
                outcomes.push(outcome(&r, Outcome::StaysPaused));
            }
        }
        if !pause && job.group {
            outcomes.extend(self.lift_pause(&job.tag).await?);
        }
        Ok(outcomes)
    }

    /// The records a pause or resume acts on, refreshed from systemd: a
    /// group's running records (and, for its resume, what its pause
    /// stopped, which has no unit to list), or the ids named.
    async fn select_for_pause(&self, target: &Selection, job: &PauseJob) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        if !job.group {
            for arg in &target.ids {
                let id = self.resolve(arg)?;
                let (mut r, info) = self.load(&id, &mut Vec::new()).await?;
                refresh(&mut r, info.as_ref());
                records.push(r);
            }
            return Ok(records);
        }
        let filter = ListFilter {
            owner: target.owner,
            workflow: target.workflow.clone(),
            session: target.session.clone(),
            ..Default::default()
        };
        records = self.list(&filter).await?.0;
        records.retain(|r| r.state != State::Queued);
        if job.pause {
            return Ok(records);
        }
        let stopped = self.pauses()?.get(&job.tag).map(|p| p.stopped.clone());
        for id in stopped.unwrap_or_default() {
            if let Loaded::Found(r) = self.index.load(&id)? {
                if !records.iter().any(|x| x.id == r.id) {
                    let (mut r, info) = self.load(&r.id, &mut Vec::new()).await?;
                    refresh(&mut r, info.as_ref());
                    records.push(r);
                }
            }
        }
        Ok(records)
    }

    /// Checks, before anything changes, that the requester may act on the
    /// whole selection: a group leaves out the caller and its ancestors; a
    /// pause by id that names one of them is refused.
    async fn authorize_pause(
        &self,
        target: &Selection,
        job: &PauseJob,
        mut records: Vec<Record>,
    ) -> Result<Vec<Record>> {
        let action = if job.pause { "pause" } else { "resume" };
        if job.group {
            self.authorize_group(action, target).await?;
            let exempt = self.caller_and_ancestors().await?;
            records.retain(|r| !exempt.contains(&r.id));
        } else if job.pause {
            let exempt = self.caller_and_ancestors().await?;
            if let Some(r) = records.iter().find(|r| exempt.contains(&r.id)) {
                return Err(Error::refused(format!(
                    "{} is the process asking, or one that launched it: pausing it would freeze the caller",
                    r.id
                )));
            }
        }
        // All allowed, or nothing changes.
        let acted_on = records
            .iter()
            .filter(|r| job.treatment(r) != PauseTreatment::KeepRunning);
        for r in acted_on {
            self.authorize(action, r).await?;
        }
        Ok(records)
    }

    /// Does to one record what the pause engine decided for it
    /// ([`pause_step`]), and says what came of it.
    async fn apply_pause_step(&self, r: Record, job: &PauseJob) -> Result<ActionOutcome> {
        let (pause, tag) = (job.pause, job.tag.as_str());
        match pause_step(pause, tag, job.treatment(&r), &r) {
            PauseStep::Leave(what) => return Ok(outcome(&r, what)),
            PauseStep::StartAgain => {
                let launch = Self::launch_of(&r)?;
                let started = self.start_anew(r, &launch).await?;
                self.emit(started_event(&started).with("resumed_by", tag));
                return Ok(outcome(&started, Outcome::StartedAgain));
            }
            PauseStep::Stop => return self.stop_for_pause(r, tag).await,
            PauseStep::SetFrozen => {}
        }
        self.units().await?.set_frozen(&r.unit, pause).await?;
        // A group notes what it froze once for all in pauses.json; a
        // process paused by id, in its record. (A record paused by an
        // older refine-proc holds it itself.)
        let in_record =
            || matches!(self.index.load(&r.id), Ok(Loaded::Found(ref s)) if s.paused_by.is_some());
        let r = if job.group && (pause || !in_record()) {
            r
        } else {
            let updated = self.index.update(&r.id, |rec| {
                rec.paused_by = pause.then(|| tag.to_string());
            })?;
            updated.unwrap_or(r)
        };
        let (r, what) = frozen_view(r, pause, tag);
        self.emit(Event::about(what.as_str(), &r).with("by", tag));
        Ok(outcome(&r, what))
    }

    /// Stops a process for `pause --all` and marks it to be started again
    /// by the matching resume.
    pub(super) async fn stop_for_pause(&self, r: Record, tag: &str) -> Result<ActionOutcome> {
        let systemd = self.units().await?;
        if let Some(info) = systemd.service_info(&r.unit).await? {
            self.request_stop(&r.id, &info).await?;
            let timeout = Duration::from_secs(r.limits.timeout_stop_sec.unwrap_or(0));
            systemd.stop_within(&r.unit, timeout).await?;
        }
        self.index
            .update(&r.id, |rec| rec.paused_by = Some(tag.to_string()))?;
        let r = self.refetch(r).await?;
        self.emit(
            Event::about("paused", &r)
                .with("by", tag)
                .with("stopped", true),
        );
        Ok(outcome(&r, Outcome::StoppedUntilResume))
    }

    /// Ends a group's persisted pause, then starts the queued runs no
    /// other pause holds.
    pub(super) async fn lift_pause(&self, tag: &str) -> Result<Vec<ActionOutcome>> {
        let (pauses, lifted) = self.index.update_pauses(|p| {
            let before = p.active.len();
            p.active.retain(|x| x.selector != tag);
            before != p.active.len()
        })?;
        if lifted {
            self.emit(Event::new("resumed").with("by", tag).with("group", true));
        }
        let mut queued = Vec::with_capacity(pauses.queued.len());
        for id in &pauses.queued {
            let record = match self.index.load(id)? {
                Loaded::Found(r) => Some(*r),
                _ => None,
            };
            queued.push((id.clone(), record));
        }
        let Release { start, done } = release_queued(&pauses, queued);
        let mut outcomes = Vec::new();
        for record in start {
            let launch = Self::launch_of(&record)?;
            let started = self.start_anew(record, &launch).await?;
            self.emit(started_event(&started).with("queued", true));
            outcomes.push(outcome(&started, Outcome::StartedFromQueue));
        }
        if !done.is_empty() {
            self.index
                .update_pauses(|p| p.queued.retain(|id| !done.contains(id)))?;
        }
        Ok(outcomes)
    }

    /// A new run of a record is not frozen, whatever froze the last one.
    pub(super) fn forget_group_freeze(&self, id: &str) -> Result<()> {
        if self.index.pauses()?.0.frozen_by(id).is_some() {
            self.index.update_pauses(|p| p.unfreeze(id))?;
        }
        Ok(())
    }

    /// The group pause in force that holds a process of this owner and
    /// metadata, if any.
    pub fn held_by_pause(&self, owner: Owner, metadata: &Metadata) -> Result<Option<GroupPause>> {
        let (pauses, warning) = self.index.pauses()?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        Ok(pauses.holding(owner, metadata).cloned())
    }

    /// The group pauses in force and the queued records.
    pub fn pauses(&self) -> Result<Pauses> {
        Ok(self.index.pauses()?.0)
    }

    /// Records a run held by a pause as `queued`; the resume that lifts
    /// the last pause holding it starts it.
    pub(super) fn queue(
        &self,
        launch: &Launch,
        requested_by: RequestedBy,
        held: &GroupPause,
    ) -> Result<Record> {
        let record = store_fresh(&self.index, |id| Record {
            state: State::Queued,
            started_at: None,
            paused_by: Some(held.selector.clone()),
            ..new_record(id, launch, requested_by.clone())
        })?;
        self.index
            .update_pauses(|p| p.queued.push(record.id.clone()))?;
        self.emit(Event::about("queued", &record).with("held_by", &held.selector));
        Ok(record)
    }

    /// A run that started while a pause was being made: treat it as the
    /// pause treated its group.
    pub(super) async fn hold_late_start(
        &self,
        record: Record,
        held: &GroupPause,
    ) -> Result<Record> {
        let systemd = self.units().await?;
        if held.selector == "all" && held.stopped_owners.contains(&record.owner) {
            self.index
                .update_pauses(|p| add_stopped(p, "all", &record.id))?;
            if let Some(info) = systemd.service_info(&record.unit).await? {
                self.request_stop(&record.id, &info).await?;
                systemd.stop_within(&record.unit, Duration::ZERO).await?;
            }
            self.index
                .update(&record.id, |r| r.paused_by = Some("all".into()))?;
        } else {
            systemd.set_frozen(&record.unit, true).await?;
            self.index
                .update_pauses(|p| add_frozen(p, &held.selector, &record.id))?;
            self.emit(Event::about("paused", &record).with("by", &held.selector));
        }
        self.refetch(record).await
    }
}

/// What a pause or resume does to one record of its selection (the pure
/// part of the pause engine: unit-tested without systemd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PauseStep {
    /// Nothing to do; the outcome says why.
    Leave(Outcome),
    /// Stopped by this group's pause: its resume starts it again.
    StartAgain,
    /// `pause --all` stops it, as the pause policy says for its owner.
    Stop,
    /// Freeze (pause) or thaw (resume) its unit.
    SetFrozen,
}

/// The step for record `r` when `tag` (`id` for a pause by id, else the
/// group's selector) pauses or resumes it, with `treatment` the pause
/// policy's for its owner (always `Freeze` but for `pause --all`).
pub(super) fn pause_step(
    pause: bool,
    tag: &str,
    treatment: PauseTreatment,
    r: &Record,
) -> PauseStep {
    // No unit yet: the pause that holds it decides.
    if r.state == State::Queued {
        return PauseStep::Leave(Outcome::IsQueued);
    }
    let by_group = tag != "id";
    if !pause && r.state.is_ended() && by_group && r.paused_by.as_deref() == Some(tag) {
        return PauseStep::StartAgain;
    }
    if r.state.is_ended() {
        return PauseStep::Leave(Outcome::WasNotRunning);
    }
    match (pause, treatment, r.paused_by.as_deref()) {
        (true, PauseTreatment::KeepRunning, _) => PauseStep::Leave(Outcome::KeepsRunning),
        (true, _, Some(_)) => PauseStep::Leave(Outcome::WasPaused),
        (true, PauseTreatment::Stop, None) => PauseStep::Stop,
        (false, _, None) if r.state != State::Paused => PauseStep::Leave(Outcome::WasNotPaused),
        // Paused on its own (or by another group): a group's resume leaves
        // it as it is.
        (false, _, Some(by)) if by_group && by != tag => PauseStep::Leave(Outcome::StaysPaused),
        _ => PauseStep::SetFrozen,
    }
}

/// Which other pause in force, if any, still holds `r` frozen when one
/// group resumes: `all` holds only the owners it froze.
pub(super) fn held_elsewhere(others: &[GroupPause], r: &Record) -> Option<String> {
    others
        .iter()
        .find(|p| {
            p.holds(r.owner, &r.metadata)
                && (p.selector != "all" || p.frozen_owners.contains(&r.owner))
        })
        .map(|p| p.selector.clone())
}

/// One `pause` or `resume`: by id or of a group (`tag` its selector, `id`
/// for a pause by id), and how `pause --all` treats each owner.
pub(super) struct PauseJob {
    pub pause: bool,
    pub tag: String,
    pub group: bool,
    /// `--all`: the pause policy decides per owner.
    pub all: bool,
    pub plan: PauseAll,
}

impl PauseJob {
    /// What this job does to a record's owner: the pause policy's
    /// treatment for `pause --all`, else a freeze (or thaw).
    pub(super) fn treatment(&self, r: &Record) -> PauseTreatment {
        if self.all && self.pause {
            self.plan.treatment(r.owner)
        } else {
            PauseTreatment::Freeze
        }
    }
}

/// What a group pause will stop and what it will freeze: the records still
/// running, by the treatment of their owner (a record already paused is
/// not frozen again).
pub(super) fn group_targets(records: &[Record], job: &PauseJob) -> (Vec<String>, Vec<String>) {
    let live = || records.iter().filter(|r| !r.state.is_ended());
    let to_stop = live()
        .filter(|r| job.treatment(r) == PauseTreatment::Stop)
        .map(|r| r.id.clone())
        .collect();
    let to_freeze = live()
        .filter(|r| r.paused_by.is_none() && job.treatment(r) == PauseTreatment::Freeze)
        .map(|r| r.id.clone())
        .collect();
    (to_stop, to_freeze)
}

/// Records a group pause in force (once: a second pause of the same group
/// adds to the first), with what it is about to stop and freeze, so that
/// a crash halfway leaves what resume needs. `by` is the requester.
pub(super) fn begin_group_pause(
    p: &mut Pauses,
    job: &PauseJob,
    by: &str,
    to_stop: &[String],
    to_freeze: &[String],
) {
    if p.get(&job.tag).is_none() {
        let owners = |o: &Vec<Owner>| if job.all { o.clone() } else { vec![] };
        p.active.push(GroupPause {
            selector: job.tag.clone(),
            since: Timestamp::now(),
            by: by.to_string(),
            frozen_owners: owners(&job.plan.freeze),
            stopped_owners: owners(&job.plan.stop),
            stopped: vec![],
            frozen: vec![],
        });
    }
    for id in to_stop {
        add_stopped(p, &job.tag, id);
    }
    // Trimmed by `settle_group_pause` to what froze.
    for id in to_freeze {
        add_frozen(p, &job.tag, id);
    }
}

/// Splits off, when group `tag` resumes, the records it froze that another
/// pause in force still holds: they stay frozen and pass to that pause
/// (id, the other pause's selector).
pub(super) fn hand_over(
    records: Vec<Record>,
    others: &[GroupPause],
    tag: &str,
) -> (Vec<Record>, Vec<(String, String)>) {
    let mut handed_over = Vec::new();
    let records = records
        .into_iter()
        .filter(|r| {
            let frozen_by_this = r.paused_by.as_deref() == Some(tag);
            let held = held_elsewhere(others, r).filter(|_| frozen_by_this && !r.state.is_ended());
            match held {
                Some(other) => {
                    handed_over.push((r.id.clone(), other));
                    false
                }
                None => true,
            }
        })
        .collect();
    (records, handed_over)
}

/// What pauses.json keeps once a group's freezes and thaws are done: a
/// pause keeps, of what it was about to freeze, what froze (what it held
/// before stays: its outcome is `was-paused`); a resume forgets what it
/// thawed and passes what another pause holds to that pause.
pub(super) fn settle_group_pause(
    p: &mut Pauses,
    job: &PauseJob,
    to_freeze: &[String],
    paused: &[String],
    resumed: &[String],
    handed_over: &[(String, String)],
) {
    if job.pause {
        if let Some(g) = p.active.iter_mut().find(|g| g.selector == job.tag) {
            g.frozen
                .retain(|id| !to_freeze.contains(id) || paused.contains(id));
        }
        return;
    }
    for id in resumed {
        p.unfreeze(id);
    }
    for (id, other) in handed_over {
        p.unfreeze(id);
        add_frozen(p, other, id);
    }
}

/// How a record shows once its unit froze (pause) or thawed (resume) for
/// `tag`, and the outcome to report.
pub(super) fn frozen_view(mut r: Record, pause: bool, tag: &str) -> (Record, Outcome) {
    r.paused_by = pause.then(|| tag.to_string());
    r.state = if pause { State::Paused } else { State::Running };
    present(&mut r);
    let what = if pause {
        Outcome::Paused
    } else {
        Outcome::Resumed
    };
    (r, what)
}

/// What a lifted pause does with the queue.
#[derive(Debug)]
pub(super) struct Release {
    /// Queued records no pause in force holds any more: started now.
    pub start: Vec<Record>,
    /// Ids to drop from the queue: those started, and those forgotten or
    /// started already.
    pub done: Vec<String>,
}

/// Which queued runs start once a pause is lifted (`pauses` without it),
/// of the queue's ids with their stored records (None: none stored).
pub(super) fn release_queued(pauses: &Pauses, queued: Vec<(String, Option<Record>)>) -> Release {
    let mut release = Release {
        start: Vec::new(),
        done: Vec::new(),
    };
    for (id, record) in queued {
        match record {
            Some(r) if r.state == State::Queued => {
                if pauses.holding(r.owner, &r.metadata).is_none() {
                    release.done.push(id);
                    release.start.push(r);
                }
            }
            // Forgotten or already started: drop it from the queue.
            _ => release.done.push(id),
        }
    }
    release
}

/// What a pause holds, in words: "owner agent", "workflow wf-1", ...
pub(super) fn held_what(held: &GroupPause, owner: Owner, metadata: &Metadata) -> String {
    match held.selector.split_once(':') {
        Some(("workflow", _)) => format!(
            "workflow {}",
            escape(metadata.workflow.as_deref().unwrap_or_default())
        ),
        Some(("session", _)) => format!(
            "session {}",
            escape(metadata.session.as_deref().unwrap_or_default())
        ),
        _ => format!("owner {owner}"),
    }
}

/// The resume flags that lift a pause: `--owner agent`, `--all`, ...
pub(super) fn selector_flag(selector: &str) -> String {
    match selector.split_once(':') {
        Some((kind, value)) => format!("--{kind} {}", escape(value)),
        None => "--all".into(),
    }
}

/// Notes in the pause `tag` that it froze record `id`.
pub(super) fn add_frozen(pauses: &mut Pauses, tag: &str, id: &str) {
    if let Some(p) = pauses.active.iter_mut().find(|p| p.selector == tag) {
        if !p.frozen.iter().any(|s| s == id) {
            p.frozen.push(id.to_string());
        }
    }
}

/// A running record frozen by a group pause shows it: the pause notes
/// what it froze in pauses.json, not in each record.
pub(super) fn with_group_pauses(record: &mut Record, pauses: &Pauses) {
    if record.paused_by.is_none() && !record.state.is_ended() {
        record.paused_by = pauses.frozen_by(&record.id).map(String::from);
    }
}

/// Notes in the pause `tag` that it stopped record `id`.
pub(super) fn add_stopped(pauses: &mut Pauses, tag: &str, id: &str) {
    if let Some(p) = pauses.active.iter_mut().find(|p| p.selector == tag) {
        if !p.stopped.iter().any(|s| s == id) {
            p.stopped.push(id.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: State, paused_by: Option<&str>) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "abcd2345", "unit": "refine-agent-abcd2345.service",
            "owner": "agent", "state": "running"
        }))
        .unwrap();
        r.state = state;
        r.paused_by = paused_by.map(Into::into);
        r
    }

    fn group(selector: &str, frozen_owners: Vec<Owner>) -> GroupPause {
        GroupPause {
            selector: selector.into(),
            since: Timestamp::now(),
            by: "person".into(),
            frozen_owners,
            stopped_owners: vec![],
            stopped: vec![],
            frozen: vec![],
        }
    }

    const FREEZE: PauseTreatment = PauseTreatment::Freeze;

    #[test]
    fn a_pause_freezes_what_runs_and_leaves_what_is_queued_ended_or_paused() {
        let step = |r: &Record| pause_step(true, "owner:agent", FREEZE, r);
        assert_eq!(step(&record(State::Running, None)), PauseStep::SetFrozen);
        let queued = record(State::Queued, None);
        assert_eq!(step(&queued), PauseStep::Leave(Outcome::IsQueued));
        let ended = record(State::Exited, None);
        assert_eq!(step(&ended), PauseStep::Leave(Outcome::WasNotRunning));
        let paused = record(State::Paused, Some("id"));
        assert_eq!(step(&paused), PauseStep::Leave(Outcome::WasPaused));
    }

    #[test]
    fn pause_all_follows_the_pause_policy_for_each_owner() {
        let running = record(State::Running, None);
        let keep = pause_step(true, "all", PauseTreatment::KeepRunning, &running);
        assert_eq!(keep, PauseStep::Leave(Outcome::KeepsRunning));
        let stop = pause_step(true, "all", PauseTreatment::Stop, &running);
        assert_eq!(stop, PauseStep::Stop);
    }

    #[test]
    fn a_resume_thaws_what_its_pause_froze_and_starts_again_what_it_stopped() {
        let frozen = record(State::Paused, Some("owner:agent"));
        let thaw = pause_step(false, "owner:agent", FREEZE, &frozen);
        assert_eq!(thaw, PauseStep::SetFrozen);
        let stopped = record(State::Stopped, Some("all"));
        assert_eq!(
            pause_step(false, "all", FREEZE, &stopped),
            PauseStep::StartAgain
        );
        // Resumed by id, a stopped record is not started.
        let by_id = record(State::Stopped, Some("id"));
        let step = pause_step(false, "id", FREEZE, &by_id);
        assert_eq!(step, PauseStep::Leave(Outcome::WasNotRunning));
    }

    #[test]
    fn a_group_resume_leaves_what_another_pause_froze() {
        let other = record(State::Paused, Some("workflow:ci"));
        let step = pause_step(false, "owner:agent", FREEZE, &other);
        assert_eq!(step, PauseStep::Leave(Outcome::StaysPaused));
        // A resume by id thaws it whoever froze it.
        assert_eq!(
            pause_step(false, "id", FREEZE, &other),
            PauseStep::SetFrozen
        );
        let running = record(State::Running, None);
        let step = pause_step(false, "owner:agent", FREEZE, &running);
        assert_eq!(step, PauseStep::Leave(Outcome::WasNotPaused));
    }

    #[test]
    fn a_resumed_record_passes_to_another_pause_that_still_holds_it() {
        let r = record(State::Paused, Some("owner:agent"));
        let others = [group("owner:quality", vec![]), group("all", vec![])];
        // `all` holds only the owners it froze.
        assert_eq!(held_elsewhere(&others, &r), None);
        let others = [group("all", vec![Owner::Agent])];
        assert_eq!(held_elsewhere(&others, &r).as_deref(), Some("all"));
        let mut in_ci = r.clone();
        in_ci.metadata.workflow = Some("ci".into());
        let others = [group("workflow:ci", vec![])];
        assert_eq!(
            held_elsewhere(&others, &in_ci).as_deref(),
            Some("workflow:ci")
        );
    }
}
