//! `set`: limits of a running process or of an owner's slice.

use super::*;

impl Controller {
    /// Changes the limits of a running process: systemd first
    /// (SetUnitProperties, runtime), then the record, so that
    /// `systemctl --user show` and the record agree. A later `restart`
    /// starts it again with these limits. Refused for ended processes.
    pub async fn set_limits(&self, arg: &str, change: &LimitChange) -> Result<Record> {
        change.validate()?;
        let id = self.resolve(arg)?;
        let _serialized = self.limits_lock().await?;
        let (mut record, info) = self.load(&id, &mut Vec::new()).await?;
        refresh(&mut record, info.as_ref());
        let ended = |r: &Record| {
            Error::refused(format!(
                "{id} is not running (it is {}); limits can be set only on a running process",
                r.state
            ))
            .hint(format!(
                "start it again with refine-proc restart {id}, then set its limits"
            ))
        };
        if info.is_none() || record.state.is_ended() {
            return Err(ended(&record));
        }
        self.authorize("set", &record).await?;
        let requester = self.requester().await?;
        let own = requester.caller.as_ref().is_some_and(|c| c.id == record.id);
        if let Err(e) = requester
            .policy
            .check_change(requester.actor, &record.limits, change, own)
        {
            self.record_refusal("set", Some(&record.id), &e);
            return Err(e);
        }
        let systemd = self.systemd().await?;
        if let Err(e) = systemd
            .set_properties(&record.unit, &limit_properties(change))
            .await
        {
            // It ended meanwhile.
            if e.kind == crate::error::ErrorKind::NotFound {
                reconcile(&mut record, None);
                return Err(ended(&record));
            }
            return Err(e);
        }
        let updated = self.index.update(&id, |r| change.apply(&mut r.limits))?;
        let mut record = updated.unwrap_or_else(|| {
            change.apply(&mut record.limits);
            record
        });
        refresh(&mut record, info.as_ref());
        self.emit(Event::about("limits-changed", &record).with("limits", &record.limits));
        Ok(record)
    }

    /// Changes the limits of an owner's slice (`refine-agent.slice`), which
    /// bound all of that owner's processes together, and records them in
    /// the index (`owners/<owner>.json`). systemd loads the slice on
    /// demand, so this works whether or not a process of the owner runs;
    /// the limits last as long as the user manager (runtime properties).
    pub async fn set_owner_limits(
        &self,
        owner: Owner,
        change: &LimitChange,
    ) -> Result<OwnerLimits> {
        change.validate()?;
        // A slice bounds every process of the owner: only an actor that may
        // act on all processes may change it.
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let checked = if rules.act_on == Reach::All {
            let current = self
                .index
                .owner_limits(owner)?
                .map(|o| o.limits)
                .unwrap_or_default();
            requester
                .policy
                .check_change(requester.actor, &current, change, false)
        } else {
            Err(crate::policy::denied(
                &rules,
                "act_on",
                format!(
                    "{} may not change the limits of all {owner} processes",
                    rules.actor
                ),
            ))
        };
        if let Err(e) = checked {
            self.record_refusal("set", None, &e);
            return Err(e);
        }
        let _serialized = self.limits_lock().await?;
        let slice = owner.slice();
        self.systemd()
            .await?
            .set_properties(&slice, &limit_properties(change))
            .await
            .map_err(|e| match e.kind {
                // systemd 252 loads a slice for SetUnitProperties; should a
                // manager refuse a slice that is not loaded, say what helps.
                crate::error::ErrorKind::NotFound => Error::refused(format!(
                    "{slice} is not loaded, and systemd refused to load it to set limits"
                ))
                .hint(format!(
                    "start a process of that owner first (refine-proc run --owner {owner} -- ...), \
                     then set the limits again"
                )),
                _ => e,
            })?;
        let limits = self.index.update_owner_limits(owner, |l| change.apply(l))?;
        self.emit(
            Event::new("limits-changed")
                .with("slice", &limits.slice)
                .with("limits", &limits.limits),
        );
        Ok(limits)
    }

    /// The limits recorded for an owner's slice, if any were set.
    pub fn owner_limits(&self, owner: Owner) -> Result<Option<OwnerLimits>> {
        self.index.owner_limits(owner)
    }

    pub(super) async fn limits_lock(&self) -> Result<crate::index::LimitsLock> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.limits_lock())
            .await
            .map_err(|e| Error::index(format!("cannot lock the index: {e}")))?
    }
}
