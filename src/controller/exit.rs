//! The exit hook: systemd runs `refine-proc` after every exit to record it.

use super::*;

impl Controller {
    /// Records an exit reported by systemd to the ExecStopPost hook, from
    /// its environment (SERVICE_RESULT, EXIT_CODE, EXIT_STATUS,
    /// INVOCATION_ID). Runs without D-Bus so it works whatever else is
    /// happening.
    pub fn record_exit(&self, id: &str, env: &BTreeMap<String, String>) -> Result<Record> {
        let record = self.store_exit(id, env)?;
        self.emit(end_event(&record));
        Ok(record)
    }

    /// Records the end of a run as the daemon sees it on systemd's bus:
    /// when the unit enters `stop-post` its main process has ended, and
    /// systemd's properties say how, while the exit hook is only starting.
    /// Whichever of the two comes first writes the exit and the event;
    /// the other finds them (by the run's invocation) and adds nothing.
    /// `said`: the exit as systemd's signal told it, if it did; else it is
    /// asked. Returns the end event when the run's end is recorded.
    pub async fn record_exit_seen(
        &self,
        unit: &str,
        said: Option<BTreeMap<String, String>>,
    ) -> Result<Option<Event>> {
        let Some((_, id)) = crate::model::parse_unit_name(unit) else {
            return Ok(None);
        };
        let seen_at = Timestamp::now();
        let env = match said {
            Some(env) => env,
            None => match self.systemd().await?.main_exit(unit).await? {
                Some(env) => env,
                None => return Ok(None),
            },
        };
        let mut exit = exit_from_environment(&env);
        if exit.invocation.is_none() {
            return Ok(None); // no way to tell this run from another: the hook's
        }
        exit.at = seen_at;
        let unit_name = unit.to_string();
        // Not this index's unit, a later run already under way, or the
        // hook was first: the daemon leaves the record as it is.
        let invocation = exit.invocation.clone();
        let ours = move |r: &Record| {
            let later = r.started_at.is_some_and(|s| s > seen_at);
            r.unit == unit_name && !later && r.last_exit_invocation != invocation
        };
        // The event first, from the record as it will be, so open streams
        // see the end without waiting for the record's fsynced write (issue
        // 11: most of the daemon's latency). A crash in between leaves the
        // event and the exit hook, which writes the record and finds the
        // event (by the invocation) already there; the end stays recorded
        // once, since every writer of an end checks the history under its
        // lock.
        let writing = self.index.end_in_flight();
        let told = match self.index.load(&id) {
            Ok(Loaded::Found(r)) if ours(&r) => {
                let mut ended = *r;
                ended.apply_exit(exit.clone());
                ended.exit_source = Some("daemon".into());
                self.emit(end_event(&ended));
                true
            }
            _ => false,
        };
        let updated = self.index.update_async(&id, move |r| {
            if ours(r) {
                r.apply_exit(exit);
                r.exit_source = Some("daemon".into());
            }
        });
        let updated = updated.await;
        drop(writing);
        let Some(record) = updated? else {
            return Ok(None);
        };
        if record.last_exit_invocation.as_deref() != env.get("INVOCATION_ID").map(String::as_str) {
            return Ok(None);
        }
        let event = end_event(&record);
        if !told {
            // The hook was first: its event is in the history (this one
            // is not written twice).
            self.emit(event.clone());
        }
        Ok(Some(event))
    }

    pub(super) fn store_exit(&self, id: &str, env: &BTreeMap<String, String>) -> Result<Record> {
        // systemd runs the hook inside the unit's own cgroup: anything else
        // asking to rewrite how a run ended is refused.
        let Some(unit) = crate::provenance::managed_caller().filter(|c| c.id == id) else {
            return Err(Error::refused(format!(
                "record-exit {id} is refused: only systemd runs it, as the ExecStopPost of that unit"
            ))
            .hint("refine-proc records exits by itself; use status to read them"));
        };
        let exit = exit_from_environment(env);
        // Also in the journal, first: should the index refuse the write, the
        // exit is still known to whoever finds the record lost.
        let dir = self.index.dir().display().to_string();
        let sent = crate::journal::send(&[
            (
                "MESSAGE",
                &format!("{}: exit recorded ({})", unit.unit, exit.result),
            ),
            ("SYSLOG_IDENTIFIER", crate::journal::OWN_IDENTIFIER),
            ("PRIORITY", "6"),
            ("REFINE_EVENT", "exit"),
            ("REFINE_ID", id),
            ("REFINE_UNIT", &unit.unit),
            ("REFINE_PROC_STATE_DIR", &dir),
            ("REFINE_RESULT", &exit.result),
            (
                "REFINE_EXIT_CODE",
                env.get("EXIT_CODE").map(String::as_str).unwrap_or(""),
            ),
            (
                "REFINE_EXIT_STATUS",
                env.get("EXIT_STATUS").map(String::as_str).unwrap_or(""),
            ),
            (
                "REFINE_INVOCATION",
                exit.invocation.as_deref().unwrap_or(""),
            ),
        ]);
        if let Err(e) = sent {
            tracing::debug!("cannot write the exit to the journal: {e}");
        }
        // The daemon may have recorded this exit from systemd's signal.
        let first =
            |r: &Record| exit.invocation.is_none() || r.last_exit_invocation != exit.invocation;
        let updated = self.index.update(id, |r| {
            if first(r) {
                r.apply_exit(exit.clone())
            }
        })?;
        if let Some(r) = updated {
            return Ok(r);
        }
        // The index lost the record: rebuild it from the unit's environment,
        // which the hook inherits.
        let mut record = record_from_environment(id, &unit.unit, env, &ServiceInfo::default());
        record.apply_exit(exit.clone());
        match self.index.create(&record) {
            Ok(()) => Ok(record),
            // Someone rebuilt it meanwhile: apply the exit to theirs.
            Err(_) => Ok(self
                .index
                .update(id, |r| r.apply_exit(exit))?
                .unwrap_or(record)),
        }
    }
}

/// The event of a run's end, as the record holds it; `invocation` names
/// the run, so that its end is recorded once (see `run_end_key`).
fn end_event(record: &Record) -> Event {
    let mut event = Event::about(record.state.as_str(), record)
        .with("exit_code", record.exit_code)
        .with("exit_signal", &record.exit_signal)
        .with("result", &record.result)
        .with("invocation", &record.last_exit_invocation);
    event.actor = Some("systemd".into());
    event
}
