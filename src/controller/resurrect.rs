//! `resurrect`: start again the `--persist` runs a manager restart took down.

use super::*;

impl Controller {
    /// Starts again the `run --persist` processes that the user manager
    /// took down with it (logout without linger, crash, reboot): each as a
    /// new record linked to the old one (`resurrected_from` and
    /// `resurrected_as`). A process ended by `refine-proc stop`, or that
    /// ended by itself, stays ended; one a pause holds is queued.
    pub async fn resurrect(&self) -> Result<Vec<Resurrection>> {
        let _one_at_a_time = self.index.resurrect_lock()?;
        let manager_started = self.systemd().await?.started_at().await;
        let all = ListFilter {
            all: true,
            ..Default::default()
        };
        let (records, _) = self.list(&all).await?;
        let mut done = Vec::new();
        for old in records {
            let went_down_with_the_manager = match old.state {
                // Lost before systemd ever started it: it never ran.
                State::Lost => old.result.as_deref() != Some("not-started"),
                // The manager stops its units on the way out: a clean
                // signal no refine-proc command asked for, before this
                // manager started.
                State::Stopped => {
                    !old.stopped_on_request()
                        && old
                            .ended_at
                            .zip(manager_started)
                            .is_some_and(|(e, m)| e <= m)
                }
                _ => false,
            };
            if !old.persist || old.resurrected_as.is_some() || !went_down_with_the_manager {
                continue;
            }
            let outcome = self.resurrect_one(&old).await;
            done.push(match outcome {
                Ok(record) => Resurrection {
                    from: old.id.clone(),
                    outcome: if record.state == State::Queued {
                        "queued".into()
                    } else {
                        "started".into()
                    },
                    record: Some(record),
                    error: None,
                },
                Err(e) => Resurrection {
                    from: old.id.clone(),
                    outcome: "failed".into(),
                    record: None,
                    error: Some(match e.hint {
                        Some(h) => format!("{} ({h})", e.message),
                        None => e.message,
                    }),
                },
            });
        }
        Ok(done)
    }

    pub(super) async fn resurrect_one(&self, old: &Record) -> Result<Record> {
        self.authorize("restart", old).await?;
        if old.command.is_empty() {
            return Err(Error::refused(format!(
                "{} has no command to start again (rebuilt after the index was lost)",
                old.id
            )));
        }
        let spec = RunSpec {
            persist: true,
            ..spec_of(old)
        };
        let options = RunOptions {
            queue: true,
            ..Default::default()
        };
        // Started as the daemon on behalf of whoever launched it: the
        // launch's own policy decides, and the audit says so.
        let new = self
            .on_behalf_of(Caller::daemon_for(old))
            .run(spec, options)
            .await?;
        let linked = self.index.update(&new.id, |r| {
            r.resurrected_from = Some(old.id.clone());
        })?;
        self.index
            .update(&old.id, |r| r.resurrected_as = Some(new.id.clone()))?;
        self.emit(
            Event::about("resurrected", &new)
                .with("from", &old.id)
                .with("state", new.state),
        );
        let mut record = linked.unwrap_or(new);
        present(&mut record);
        Ok(record)
    }
}
