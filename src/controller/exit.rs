//! The exit hook: systemd runs `refine-proc` after every exit to record it.

use super::*;

impl Controller {
    /// Records an exit reported by systemd to the ExecStopPost hook, from
    /// its environment (SERVICE_RESULT, EXIT_CODE, EXIT_STATUS,
    /// INVOCATION_ID). Runs without D-Bus so it works whatever else is
    /// happening.
    pub fn record_exit(&self, id: &str, env: &BTreeMap<String, String>) -> Result<Record> {
        let record = self.store_exit(id, env)?;
        let mut event = Event::about(record.state.as_str(), &record)
            .with("exit_code", record.exit_code)
            .with("exit_signal", &record.exit_signal)
            .with("result", &record.result);
        event.actor = Some("systemd".into());
        self.emit(event);
        Ok(record)
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
        if let Some(r) = self.index.update(id, |r| r.apply_exit(exit.clone()))? {
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
