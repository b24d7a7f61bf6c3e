//! `recover`: rebuild the records a deleted or damaged index lost.

use super::*;

impl Controller {
    /// Rebuilds the records the index lost (deleted, or quarantined as
    /// unreadable) from systemd and the journal, never overwriting one that
    /// is there: every running service of this index (its unit's
    /// Environment names the index) from its unit's environment and
    /// properties, with what its start entry in the journal adds (details,
    /// metadata, limits, who asked); and every ended run the journal shows
    /// for this index, closed with the exit the journal holds (else `lost`).
    pub async fn recover(&self) -> Result<Recovery> {
        let systemd = self.systemd().await?;
        let dir = self.index.dir().display().to_string();
        let (index_dir, journal_dir) = (dir.clone(), dir.clone());
        let mut units =
            tokio::task::spawn_blocking(move || crate::journal::own_units(&journal_dir))
                .await
                .ok()
                .flatten();
        let journal_read = units.is_some();
        let in_journal = units.clone().unwrap_or_default();
        let live = systemd
            .list(&["refine-*.service", "refine-*.scope"])
            .await?;
        let names: Vec<String> = live.iter().map(|u| u.name.clone()).collect();
        let own = units.get_or_insert_with(Vec::new);
        for n in &names {
            if !own.contains(n) {
                own.push(n.clone());
            }
        }
        let all = own.clone();
        let history = tokio::task::spawn_blocking(move || crate::journal::history(&all, None))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        // `forget` is in the event history too, which outlives a damaged
        // record (not a deleted index): either keeps a forgotten run forgotten.
        let forgotten: HashMap<String, Timestamp> = self
            .index
            .events()
            .map(|(events, _)| events)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.event == "forgotten")
            .filter_map(|e| Some((e.id?, e.time)))
            .collect();
        let mut recovery = Recovery {
            rebuilt: Vec::new(),
            intact: 0,
            not_rebuilt: Vec::new(),
            journal: journal_read,
        };
        for unit in units.unwrap_or_default() {
            let Some((_, id)) = parse_unit_name(&unit) else {
                continue;
            };
            let mut not_rebuilt = |reason: String| {
                recovery.not_rebuilt.push(NotRebuilt {
                    id: id.clone(),
                    unit: unit.clone(),
                    reason,
                })
            };
            match self.index.load(&id) {
                Ok(Loaded::Found(_)) => {
                    recovery.intact += 1;
                    continue;
                }
                Ok(Loaded::Newer { schema }) => {
                    not_rebuilt(format!(
                        "its record has schema {schema}, newer than this refine-proc"
                    ));
                    continue;
                }
                Ok(Loaded::Missing | Loaded::Quarantined { .. }) => {}
                Err(e) => {
                    not_rebuilt(e.message);
                    continue;
                }
            }
            let h = history.get(&unit).cloned().unwrap_or_default();
            let from_journal = h
                .start
                .clone()
                .and_then(|v| serde_json::from_value::<Record>(v).ok());
            let info = if names.contains(&unit) {
                systemd.service_info(&unit).await?
            } else {
                None
            };
            let record = match info {
                Some(info) if unit.ends_with(".service") => {
                    let env: BTreeMap<String, String> = info
                        .environment
                        .iter()
                        .filter_map(|e| e.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    // Only this index's units; others share the manager.
                    if env.get("REFINE_ID") != Some(&id)
                        || env.get("REFINE_PROC_STATE_DIR") != Some(&index_dir)
                    {
                        continue;
                    }
                    let live = record_from_environment(&id, &unit, &env, &info);
                    match from_journal {
                        Some(mut r) if r.id == id && r.unit == unit => {
                            // Who it is from the journal; what it does now from systemd.
                            r.environment = live.environment;
                            r.state = live.state;
                            r.pid = live.pid;
                            r.launcher = None;
                            r.recovered_from = Some("systemd+journal".into());
                            r
                        }
                        _ => live,
                    }
                }
                Some(info) => {
                    // A scope keeps no environment: only its start entry in
                    // the journal says it is this index's.
                    if !in_journal.contains(&unit) {
                        continue;
                    }
                    let Some(mut r) = from_journal.filter(|r| r.id == id && r.unit == unit) else {
                        not_rebuilt(
                            "an adopted process: a scope keeps no environment, and the \
                                     journal holds no start entry for it"
                                .into(),
                        );
                        continue;
                    };
                    r.launcher = None;
                    r.recovered_from = Some("systemd+journal".into());
                    reconcile(&mut r, Some(&info.state));
                    r
                }
                // Only the journal can say an ended run was this index's (a
                // unit listed a moment ago may be another index's, now gone).
                None if !in_journal.contains(&unit) => continue,
                None => {
                    let forgot_after_start = forgotten
                        .get(&id)
                        .is_some_and(|t| h.start_at.is_none_or(|s| *t >= s));
                    if h.forgotten() || forgot_after_start {
                        continue; // `forget` dropped it on purpose
                    }
                    let Some(mut r) = from_journal.filter(|r| r.id == id && r.unit == unit) else {
                        not_rebuilt("the journal holds no start entry for it".into());
                        continue;
                    };
                    if !h.env_keys.is_empty() {
                        // Its --env values stayed in the lost index: starting it
                        // again without them would not be the same process.
                        r.command.clear();
                    }
                    close_from_journal(&mut r, &h);
                    r
                }
            };
            match self.index.create_or_load(record) {
                Ok(stored) => {
                    let mut shown = stored.clone();
                    present(&mut shown);
                    self.emit(
                        Event::about("recovered", &stored).with("from", &stored.recovered_from),
                    );
                    recovery.rebuilt.push(shown);
                }
                Err(e) => not_rebuilt(e.message),
            }
        }
        recovery
            .rebuilt
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(recovery)
    }
}
