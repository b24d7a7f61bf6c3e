//! Finding records: resolving ids and unit names, loading with
//! reconciliation against systemd, `status` and `list`.

use super::*;

impl Controller {
    /// Finds the one record an argument names: an id, a unique id prefix, or
    /// a unit name. Units that do not follow refine-proc's naming are refused.
    pub fn resolve(&self, arg: &str) -> Result<String> {
        if arg.contains('.') || arg.starts_with("refine-") {
            let (owner, id, kind) = crate::model::unit_arg(arg)?;
            if let Ok(Loaded::Found(r)) = self.index.load(&id) {
                crate::model::check_unit_arg(arg, owner, kind, &r)?;
            }
            return Ok(id);
        }
        if !is_id_like(arg) {
            return Err(
                Error::not_found(format!("no process with id {:?}", escape(arg)))
                    .hint("ids are 8 characters of a-z and 2-9; see refine-proc list --all"),
            );
        }
        if arg.len() == crate::model::ID_LEN {
            return Ok(arg.to_string());
        }
        let matches: Vec<String> = self
            .index
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(arg))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                Error::not_found(format!("no process with an id starting with {arg:?}"))
                    .hint("see refine-proc list --all"),
            ),
            many => Err(Error::not_found(format!(
                "id prefix {arg:?} is ambiguous: it matches {}",
                many.join(", ")
            ))
            .hint("type more characters of the id")),
        }
    }

    /// Loads a record for an operation; rebuilds it from systemd when the
    /// index lost it (quarantined or deleted) but the unit is still there.
    pub(super) async fn load(
        &self,
        id: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Record, Option<ServiceInfo>)> {
        let loaded = self.index.load(id)?;
        let systemd = self.units().await?;
        let unit_hint = match &loaded {
            Loaded::Found(r) => r.unit.clone(),
            _ => self.find_live_unit(id).await?.unwrap_or_default(),
        };
        let info = if unit_hint.is_empty() {
            None
        } else {
            systemd.service_info(&unit_hint).await?
        };
        let record = match loaded {
            Loaded::Found(r) => *r,
            Loaded::Newer { schema } => {
                return Err(Error::index(format!(
                    "the record of {id} was written by a newer refine-proc (schema {schema})"
                ))
                .hint("upgrade refine-proc to act on it"))
            }
            Loaded::Quarantined { path, reason } => {
                warnings.push(format!(
                    "the record of {id} was unreadable ({reason}); it was moved to {} and rebuilt from systemd",
                    path.display()
                ));
                self.rebuild(id, &unit_hint, info.as_ref())?
            }
            Loaded::Missing => {
                if info.is_none() {
                    return Err(Error::not_found(format!("no process with id {id}"))
                        .hint("see refine-proc list --all"));
                }
                warnings.push(format!(
                    "{id} was missing from the index; rebuilt from systemd"
                ));
                self.rebuild(id, &unit_hint, info.as_ref())?
            }
        };
        let mut record = record;
        with_group_pauses(&mut record, &self.index.pauses()?.0);
        Ok((record, info))
    }

    /// The unit of a record-less id, if one of ours is loaded.
    pub(super) async fn find_live_unit(&self, id: &str) -> Result<Option<String>> {
        let units = self
            .units()
            .await?
            .list(&[
                &format!("refine-*-{id}.service"),
                &format!("refine-*-{id}.scope"),
            ])
            .await?;
        Ok(units
            .into_iter()
            .map(|u| u.name)
            .find(|n| parse_unit_name(n).is_some_and(|(_, i)| i == id)))
    }

    /// Rebuilds and stores a record from the unit's REFINE_* environment.
    pub(super) fn rebuild(
        &self,
        id: &str,
        unit: &str,
        info: Option<&ServiceInfo>,
    ) -> Result<Record> {
        if unit.ends_with(".scope") && info.is_some() {
            return Err(Error::refused(format!(
                "the record of {id} was lost, and {unit} holds adopted processes: a scope \
                 keeps no environment to rebuild the record from"
            ))
            .hint(format!(
                "act on it with systemd's tools, e.g. systemctl --user stop {unit}"
            )));
        }
        let Some(info) = info else {
            return Err(Error::not_found(format!(
                "the record of {id} was lost and its unit is gone; nothing is left to rebuild it from"
            )));
        };
        let env: BTreeMap<String, String> = info
            .environment
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if env.get("REFINE_ID").map(String::as_str) != Some(id) {
            return Err(Error::refused(format!(
                "{unit} is named like a refine-proc unit but was not started by refine-proc"
            ))
            .hint("use systemctl --user for units refine-proc did not create"));
        }
        let its_index = env.get("REFINE_PROC_STATE_DIR").map(PathBuf::from);
        if its_index.as_deref() != Some(self.index.dir()) {
            return Err(Error::not_found(format!(
                "{id} belongs to another index ({})",
                its_index
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "unknown".into())
            ))
            .hint("pass that directory with --state-dir"));
        }
        // Never overwrite: the exit hook may have written it meanwhile.
        self.index
            .create_or_load(record_from_environment(id, unit, &env, info))
    }

    /// Re-reads the record and brings it in line with systemd's view.
    pub(super) async fn refetch(&self, record: Record) -> Result<Record> {
        let mut record = match self.index.load(&record.id)? {
            Loaded::Found(r) => *r,
            _ => record,
        };
        with_group_pauses(&mut record, &self.index.pauses()?.0);
        let info = self.units().await?.service_info(&record.unit).await?;
        let stored = record.state;
        refresh(&mut record, info.as_ref());
        self.close_lost(vec![(&mut record, stored)]).await;
        Ok(record)
    }

    /// Makes durable what `reconcile` found: records whose unit vanished
    /// without a recorded exit are closed as `lost`, each once (under the
    /// index lock, and only if the record still says what it said when it
    /// was read), with the exit from the journal where it is there, and one
    /// `lost` event each. Each pair is a reconciled record and the state it
    /// was stored with. Only records becoming lost pay: a D-Bus lookup each
    /// and one journalctl call for all. Best effort: what cannot be stored
    /// now is found again by the next invocation.
    pub(super) async fn close_lost(&self, found: Vec<(&mut Record, State)>) {
        let mut candidates: Vec<(&mut Record, State)> = found
            .into_iter()
            .filter(|(r, stored)| r.state == State::Lost && !stored.is_ended())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let Ok(systemd) = self.units().await else {
            return;
        };
        // The caller's view of systemd may be older than the record it read
        // (a `run` that started meanwhile): ask again, unit by unit.
        let loaded = futures_util::future::join_all(
            candidates.iter().map(|(r, _)| systemd.is_loaded(&r.unit)),
        )
        .await;
        let mut gone = Vec::new();
        for ((r, stored), loaded) in candidates.iter_mut().zip(loaded) {
            match loaded {
                Ok(false) => gone.push((&mut **r, *stored)),
                // Loaded after all, or unknown: not lost; the next look decides.
                _ => r.state = *stored,
            }
        }
        if gone.is_empty() {
            return;
        }
        let units: Vec<String> = gone.iter().map(|(r, _)| r.unit.clone()).collect();
        let since = gone
            .iter()
            .filter_map(|(r, _)| r.started_at)
            .min()
            .map(|t| Timestamp(t.0 - Duration::from_secs(60)));
        let journal = tokio::task::spawn_blocking(move || crate::journal::history(&units, since))
            .await
            .ok()
            .flatten();
        let manager_started = systemd.started_at().await;
        for (r, stored) in gone {
            let history = journal
                .as_ref()
                .and_then(|j| j.get(&r.unit))
                .cloned()
                .unwrap_or_default();
            let started_at = r.started_at;
            let mut closed = false;
            let updated = self.index.update(&r.id, |cur| {
                if cur.state != stored || cur.started_at != started_at {
                    return; // written meanwhile (an exit, a restart): theirs stands
                }
                close_as_lost(cur, &history, journal.is_some(), manager_started);
                closed = true;
            });
            match updated {
                Ok(Some(mut cur)) => {
                    if closed {
                        let event = Event::about("lost", &cur)
                            .with("ended_at", cur.ended_at)
                            .with("exit_code", cur.exit_code)
                            .with("exit_signal", &cur.exit_signal)
                            .with("result", &cur.result)
                            .with("exit_source", &cur.exit_source);
                        self.emit(Event {
                            actor: Some("refine-proc".into()),
                            ..event
                        });
                    }
                    // Else someone else's write (an exit, a start) is newer
                    // than what was reconciled: it stands as written.
                    present(&mut cur);
                    *r = cur;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot record {} as lost: {}", r.id, e.message),
            }
        }
    }

    /// Everything known about one process.
    pub async fn status(&self, arg: &str) -> Result<Status> {
        let id = self.resolve(arg)?;
        let mut warnings = Vec::new();
        let (mut record, info) = self.load(&id, &mut warnings).await?;
        let stored = record.state;
        refresh(&mut record, info.as_ref());
        self.close_lost(vec![(&mut record, stored)]).await;
        let usage = match info.as_ref().and_then(|i| i.control_group.as_deref()) {
            Some(cgroup) if !record.state.is_ended() => {
                // The manager's cgroup is the unit's minus where systemd
                // puts our units; ask systemd only if it is elsewhere.
                let suffix = format!("/refine.slice/{}/{}", record.owner.slice(), record.unit);
                let manager = match cgroup.strip_suffix(&suffix) {
                    Some(m) => Ok(m.to_string()),
                    None => self.manager_cgroup().await,
                };
                Cgroups::detect(manager).read(Some(cgroup))
            }
            _ => None,
        };
        let health = record.health.clone().map(|spec| HealthView {
            spec,
            state: match self.index.health(&id) {
                Ok(state) => state,
                Err(e) => {
                    warnings.push(format!("cannot read the health state: {}", e.message));
                    None
                }
            },
        });
        Ok(Status {
            record,
            systemd: info,
            usage,
            warnings,
            health,
        })
    }

    /// The user manager's cgroup, or why it is unknown.
    pub(crate) async fn manager_cgroup(&self) -> std::result::Result<String, String> {
        match self.systemd().await {
            Ok(s) => match s.manager_control_group().await {
                Ok(Some(cg)) => Ok(cg),
                Ok(None) => Err("the user manager does not report its cgroup".to_string()),
                Err(e) => Err(e.message),
            },
            Err(e) => Err(e.message),
        }
    }

    /// [`Controller::list`] with each running process's usage, read from
    /// its cgroup files: one D-Bus call in all (the manager's cgroup), then
    /// a few file reads per running process.
    pub async fn list_with_usage(&self, filter: &ListFilter) -> Result<(Vec<Listed>, Vec<String>)> {
        let (records, mut warnings) = self.list(filter).await?;
        let cgroups = if records.iter().any(|r| !r.state.is_ended()) {
            Some(Cgroups::detect(self.manager_cgroup().await))
        } else {
            None
        };
        let usages = match &cgroups {
            Some(c) => {
                let paths: Vec<Option<String>> = records
                    .iter()
                    .map(|r| {
                        (!r.state.is_ended())
                            .then(|| c.unit_cgroup(r.owner, &r.unit))
                            .flatten()
                    })
                    .collect();
                c.read_all(&paths)
            }
            None => vec![None; records.len()],
        };
        let listed = records
            .into_iter()
            .zip(usages)
            .map(|(record, usage)| {
                let health_status = self.health_status(&record, &mut warnings);
                Listed {
                    record,
                    usage,
                    health_status,
                }
            })
            .collect();
        Ok((listed, warnings))
    }

    /// Where a record's health stands for `list`: one small file read,
    /// only for a running process with a check.
    pub(super) fn health_status(
        &self,
        r: &Record,
        warnings: &mut Vec<String>,
    ) -> Option<HealthStatus> {
        if r.health.is_none() || r.state.is_ended() || r.state == State::Queued {
            return None;
        }
        match self.index.health(&r.id) {
            Ok(state) => Some(state.map_or(HealthStatus::Starting, |s| s.status)),
            Err(e) => {
                warnings.push(format!(
                    "cannot read the health state of {}: {}",
                    r.id, e.message
                ));
                None
            }
        }
    }

    /// The stored record of one process, without asking systemd unless the
    /// index lost it.
    pub async fn record(&self, arg: &str) -> Result<Record> {
        let id = self.resolve(arg)?;
        match self.index.load(&id)? {
            Loaded::Found(r) => Ok(*r),
            _ => Ok(self.status(&id).await?.record),
        }
    }

    /// Managed processes, oldest first. Without `all` only the records of
    /// loaded units are read, so the cost follows the number running, not
    /// the history.
    pub async fn list(&self, filter: &ListFilter) -> Result<(Vec<Record>, Vec<String>)> {
        let systemd = self.units().await?;
        let live: HashMap<String, ListedUnit> = systemd
            .list(&["refine-*.service", "refine-*.scope"])
            .await?
            .into_iter()
            .filter_map(|u| Some((parse_unit_name(&u.name)?.1, u)))
            .collect();
        let want_history = filter.all || filter.state.is_some_and(State::is_ended);
        let mut ids: Vec<String> = live.keys().cloned().collect();
        // Queued runs have no unit yet; the pause state names them.
        let pauses = self.index.pauses()?.0;
        if !pauses.queued.is_empty() {
            ids.extend(pauses.queued.iter().cloned());
            ids.sort();
            ids.dedup();
        }
        if want_history {
            ids.extend(self.index.ids()?);
            ids.sort();
            ids.dedup();
        }
        let mut warnings = Vec::new();
        let mut records = Vec::with_capacity(ids.len());
        let mut orphans = Vec::new();
        // One small file each: read on all cores for long lists.
        let loaded = crate::par::on_all_cores(&ids, 128, |id| self.index.load(id));
        for (id, loaded) in ids.into_iter().zip(loaded) {
            match loaded? {
                Loaded::Found(r) => records.push(*r),
                Loaded::Newer { schema } => warnings.push(format!(
                    "skipped {id}: written by a newer refine-proc (schema {schema})"
                )),
                Loaded::Quarantined { path, reason } => {
                    warnings.push(format!(
                        "the record of {id} was unreadable ({reason}) and moved to {}",
                        path.display()
                    ));
                    orphans.extend(live.get(&id).map(|u| (id, u)));
                }
                Loaded::Missing => orphans.extend(live.get(&id).map(|u| (id, u))),
            }
        }
        // A scope carries nothing that names its index: a scope without a
        // record cannot be told apart from another index's, so it is not
        // shown.
        orphans.retain(|(_, u)| u.name.ends_with(".service"));
        // Loaded units without a record: rebuild those that name this index
        // in their environment (one property read each); units of other
        // indexes sharing the manager are not ours to show.
        let paths: Vec<_> = orphans.iter().map(|(_, u)| u.path.clone()).collect();
        let environments = systemd.environments(&paths).await;
        for ((id, _), env) in orphans.iter().zip(environments) {
            let env = env.unwrap_or_default();
            let ours = format!("REFINE_PROC_STATE_DIR={}", self.index.dir().display());
            if env.contains(&ours) {
                match self.load(id, &mut warnings).await {
                    Ok((record, _)) => records.push(record),
                    Err(e) => warnings.push(e.message),
                }
            }
        }
        let stored: Vec<State> = records.iter().map(|r| r.state).collect();
        for r in &mut records {
            with_group_pauses(r, &pauses);
            let state = live.get(&r.id).map(|u| UnitState {
                active_state: u.active_state.clone(),
                sub_state: u.sub_state.clone(),
                freezer_state: None,
            });
            reconcile(r, state.as_ref());
        }
        self.close_lost(records.iter_mut().zip(stored).collect())
            .await;
        records.retain(|r| filter.matches(r));
        // A restart gives a unit a new main process: ask systemd for the
        // pids of restartable units only, all at once.
        let restartable: Vec<usize> = (0..records.len())
            .filter(|&i| {
                records[i].restart.policy != RestartPolicy::No && !records[i].state.is_ended()
            })
            .collect();
        let paths: Vec<_> = restartable
            .iter()
            .filter_map(|&i| live.get(&records[i].id).map(|u| u.path.clone()))
            .collect();
        if paths.len() == restartable.len() {
            let pids = systemd.main_pids(&paths).await;
            for (i, pid) in restartable.into_iter().zip(pids) {
                records[i].pid = pid.or(records[i].pid);
            }
        }
        records.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok((records, warnings))
    }

    /// All records of an owner or workflow (for grouped logs).
    pub fn records_where(&self, keep: impl Fn(&Record) -> bool) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for id in self.index.ids()? {
            if let Loaded::Found(r) = self.index.load(&id)? {
                if keep(&r) {
                    out.push(*r);
                }
            }
        }
        Ok(out)
    }
}
