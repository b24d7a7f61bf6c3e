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
        let dir = self.index.dir().display().to_string();
        let own = tokio::task::spawn_blocking(move || crate::journal::own_units(&dir))
            .await
            .ok()
            .flatten();
        let read_history = |all: Vec<String>| async move {
            tokio::task::spawn_blocking(move || crate::journal::history(&all, None))
                .await
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        self.recover_from(own, read_history).await
    }

    /// `recover` with what the journal says given: the units it names as
    /// this index's (None: it could not be read), and `read_history`,
    /// which reads the history of the units asked (the journal's own and
    /// the loaded ones).
    pub(super) async fn recover_from<F, Fut>(
        &self,
        journal_units: Option<Vec<String>>,
        read_history: F,
    ) -> Result<Recovery>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = HashMap<String, crate::journal::UnitHistory>>,
    {
        let systemd = self.units().await?;
        let journal = journal_units.is_some();
        let in_journal = journal_units.clone().unwrap_or_default();
        let live = systemd
            .list(&["refine-*.service", "refine-*.scope"])
            .await?;
        let loaded: Vec<String> = live.into_iter().map(|u| u.name).collect();
        let mut units = journal_units.unwrap_or_default();
        for n in &loaded {
            if !units.contains(n) {
                units.push(n.clone());
            }
        }
        let known = Known {
            history: read_history(units.clone()).await,
            in_journal,
            loaded,
            forgotten: self.forgotten_runs(),
            index_dir: self.index.dir().display().to_string(),
        };
        let mut recovery = Recovery {
            rebuilt: Vec::new(),
            intact: 0,
            not_rebuilt: Vec::new(),
            journal,
        };
        for unit in &units {
            let Some((_, id)) = parse_unit_name(unit) else {
                continue;
            };
            self.recover_one(&id, unit, &known, &mut recovery).await?;
        }
        recovery
            .rebuilt
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(recovery)
    }

    /// Rebuilds the record of `id` (of `unit`) if the index lost it, and
    /// notes in `recovery` what came of it.
    async fn recover_one(
        &self,
        id: &str,
        unit: &str,
        known: &Known,
        recovery: &mut Recovery,
    ) -> Result<()> {
        let mut not_rebuilt = |reason: String| {
            recovery.not_rebuilt.push(NotRebuilt {
                id: id.to_string(),
                unit: unit.to_string(),
                reason,
            })
        };
        match stored(self.index.load(id)) {
            Stored::Intact => {
                recovery.intact += 1;
                return Ok(());
            }
            Stored::Unusable(reason) => {
                not_rebuilt(reason);
                return Ok(());
            }
            Stored::Lost => {}
        }
        let h = known.history.get(unit).cloned().unwrap_or_default();
        let info = if known.loaded.iter().any(|n| n == unit) {
            self.units().await?.service_info(unit).await?
        } else {
            None
        };
        let seen = Seen {
            history: &h,
            live: info.as_ref(),
            in_journal: known.in_journal.iter().any(|n| n == unit),
            forgotten_at: known.forgotten.get(id).copied(),
        };
        let record = match rebuild(id, unit, &known.index_dir, seen) {
            Rebuild::Record(r) => *r,
            Rebuild::NotOurs => return Ok(()),
            Rebuild::Cannot(reason) => {
                not_rebuilt(reason);
                return Ok(());
            }
        };
        match self.index.create_or_load(record) {
            Ok(stored) => {
                let mut shown = stored.clone();
                present(&mut shown);
                self.emit(Event::about("recovered", &stored).with("from", &stored.recovered_from));
                recovery.rebuilt.push(shown);
            }
            Err(e) => not_rebuilt(e.message),
        }
        Ok(())
    }

    /// When the event history says each run was forgotten. `forget` is in
    /// the event history too, which outlives a damaged record (not a
    /// deleted index): either keeps a forgotten run forgotten.
    fn forgotten_runs(&self) -> HashMap<String, Timestamp> {
        let (events, _) = self.index.events().unwrap_or_default();
        events
            .into_iter()
            .filter(|e| e.event == "forgotten")
            .filter_map(|e| Some((e.id?, e.time)))
            .collect()
    }
}

/// What `recover` learnt before it looks at each unit.
pub(super) struct Known {
    /// The journal's history of each unit.
    pub history: HashMap<String, crate::journal::UnitHistory>,
    /// The units the journal names as this index's.
    pub in_journal: Vec<String>,
    /// The units systemd has loaded.
    pub loaded: Vec<String>,
    /// When the event history says each run was forgotten.
    pub forgotten: HashMap<String, Timestamp>,
    pub index_dir: String,
}

/// What the index holds for a unit `recover` found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stored {
    /// Its record is there: left as it is.
    Intact,
    /// No record (deleted, or quarantined as unreadable): to rebuild.
    Lost,
    /// A record that must not be replaced, or an index that cannot be
    /// read, for this reason.
    Unusable(String),
}

/// The pure part of reading the index for `recover`.
pub(super) fn stored(loaded: Result<Loaded>) -> Stored {
    match loaded {
        Ok(Loaded::Found(_)) => Stored::Intact,
        Ok(Loaded::Newer { schema }) => Stored::Unusable(format!(
            "its record has schema {schema}, newer than this refine-proc"
        )),
        Ok(Loaded::Missing | Loaded::Quarantined { .. }) => Stored::Lost,
        Err(e) => Stored::Unusable(e.message),
    }
}

/// What `recover` knows of one lost unit of the index.
#[derive(Clone, Copy)]
pub(super) struct Seen<'a> {
    /// What the journal tells about it.
    pub history: &'a crate::journal::UnitHistory,
    /// Its unit, if systemd still has it loaded.
    pub live: Option<&'a ServiceInfo>,
    /// Whether the journal names it as this index's.
    pub in_journal: bool,
    /// When the event history says its record was forgotten.
    pub forgotten_at: Option<Timestamp>,
}

/// What `recover` concludes for one lost record.
#[derive(Debug)]
pub(super) enum Rebuild {
    /// The record to store.
    Record(Box<Record>),
    /// Not this index's (another index shares the manager), or forgotten
    /// on purpose: nothing to say.
    NotOurs,
    /// This index's, but it cannot be rebuilt, for this reason.
    Cannot(String),
}

/// The pure part of `recover`: the record that units and journal history
/// rebuild for `id` of `unit` in the index at `index_dir` (unit-tested
/// without systemd or a journal).
pub(super) fn rebuild(id: &str, unit: &str, index_dir: &str, seen: Seen) -> Rebuild {
    let h = seen.history;
    let from_journal = h
        .start
        .clone()
        .and_then(|v| serde_json::from_value::<Record>(v).ok())
        .filter(|r| r.id == id && r.unit == unit);
    match seen.live {
        Some(info) if unit.ends_with(".service") => {
            let env: BTreeMap<String, String> = info
                .environment
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            // Only this index's units; others share the manager.
            if env.get("REFINE_ID").map(String::as_str) != Some(id)
                || env.get("REFINE_PROC_STATE_DIR").map(String::as_str) != Some(index_dir)
            {
                return Rebuild::NotOurs;
            }
            let live = record_from_environment(id, unit, &env, info);
            Rebuild::Record(Box::new(match from_journal {
                Some(mut r) => {
                    // Who it is from the journal; what it does now from systemd.
                    r.environment = live.environment;
                    r.state = live.state;
                    r.pid = live.pid;
                    r.launcher = None;
                    r.recovered_from = Some("systemd+journal".into());
                    r
                }
                None => live,
            }))
        }
        Some(info) => {
            // A scope keeps no environment: only its start entry in the
            // journal says it is this index's.
            if !seen.in_journal {
                return Rebuild::NotOurs;
            }
            let Some(mut r) = from_journal else {
                return Rebuild::Cannot(
                    "an adopted process: a scope keeps no environment, and the \
                     journal holds no start entry for it"
                        .into(),
                );
            };
            r.launcher = None;
            r.recovered_from = Some("systemd+journal".into());
            reconcile(&mut r, Some(&info.state));
            Rebuild::Record(Box::new(r))
        }
        // Only the journal can say an ended run was this index's (a unit
        // listed a moment ago may be another index's, now gone).
        None if !seen.in_journal => Rebuild::NotOurs,
        None => {
            let forgot_after_start = seen
                .forgotten_at
                .is_some_and(|t| h.start_at.is_none_or(|s| t >= s));
            if h.forgotten() || forgot_after_start {
                return Rebuild::NotOurs; // `forget` dropped it on purpose
            }
            let Some(mut r) = from_journal else {
                return Rebuild::Cannot("the journal holds no start entry for it".into());
            };
            if !h.env_keys.is_empty() {
                // Its --env values stayed in the lost index: starting it
                // again without them would not be the same process.
                r.command.clear();
            }
            close_from_journal(&mut r, h);
            Rebuild::Record(Box::new(r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{JournalExit, UnitHistory};
    use crate::systemd::UnitState;

    const ID: &str = "abcd2345";
    const UNIT: &str = "refine-agent-abcd2345.service";
    const DIR: &str = "/state/refine";

    /// The journal's start entry of ID, as `run` writes it.
    fn started(at: Timestamp) -> UnitHistory {
        UnitHistory {
            seen_by_manager: true,
            start: Some(serde_json::json!({
                "id": ID, "unit": UNIT, "owner": "agent", "state": "starting",
                "label": "from the journal", "command": ["sleep", "600"],
                "started_at": at,
            })),
            start_at: Some(at),
            ..Default::default()
        }
    }

    fn live(env: &[&str]) -> ServiceInfo {
        ServiceInfo {
            state: UnitState {
                active_state: "active".into(),
                sub_state: "running".into(),
                freezer_state: Some("running".into()),
            },
            main_pid: Some(42),
            environment: env.iter().map(|e| e.to_string()).collect(),
            exec_argv: vec!["sleep".into(), "600".into()],
            ..Default::default()
        }
    }

    fn seen<'a>(h: &'a UnitHistory, live: Option<&'a ServiceInfo>) -> Seen<'a> {
        Seen {
            history: h,
            live,
            in_journal: true,
            forgotten_at: None,
        }
    }

    fn rebuilt(r: Rebuild) -> Record {
        match r {
            Rebuild::Record(r) => *r,
            other => panic!("not rebuilt: {other:?}"),
        }
    }

    #[test]
    fn a_running_service_is_rebuilt_from_the_journal_with_its_state_from_systemd() {
        let h = started(Timestamp::now());
        let info = live(&["REFINE_ID=abcd2345", "REFINE_PROC_STATE_DIR=/state/refine"]);
        let r = rebuilt(rebuild(ID, UNIT, DIR, seen(&h, Some(&info))));
        assert_eq!(r.label, "from the journal");
        assert_eq!(r.state, State::Running);
        assert_eq!(r.recovered_from.as_deref(), Some("systemd+journal"));
        // Without its start entry, the unit's environment alone rebuilds it.
        let none = UnitHistory::default();
        let r = rebuilt(rebuild(ID, UNIT, DIR, seen(&none, Some(&info))));
        assert_eq!(r.recovered_from.as_deref(), Some("systemd"));
    }

    #[test]
    fn a_unit_of_another_index_is_not_ours() {
        let h = started(Timestamp::now());
        let info = live(&["REFINE_ID=abcd2345", "REFINE_PROC_STATE_DIR=/other"]);
        let r = rebuild(ID, UNIT, DIR, seen(&h, Some(&info)));
        assert!(matches!(r, Rebuild::NotOurs), "{r:?}");
        // An ended run the journal does not name as this index's.
        let s = Seen {
            in_journal: false,
            ..seen(&h, None)
        };
        assert!(matches!(rebuild(ID, UNIT, DIR, s), Rebuild::NotOurs));
    }

    #[test]
    fn an_ended_run_is_closed_with_the_exit_the_journal_holds_else_lost() {
        let at = Timestamp::now();
        let mut h = started(at);
        let r = rebuilt(rebuild(ID, UNIT, DIR, seen(&h, None)));
        assert_eq!(r.state, State::Lost);
        assert_eq!(r.recovered_from.as_deref(), Some("journal"));
        h.exits.push(JournalExit {
            result: "exit-code".into(),
            code: Some(3),
            signal: None,
            at: Some(at),
            invocation: None,
        });
        let r = rebuilt(rebuild(ID, UNIT, DIR, seen(&h, None)));
        assert_eq!((r.state, r.exit_code), (State::Failed, Some(3)));
        assert_eq!(r.exit_source.as_deref(), Some("journal"));
    }

    #[test]
    fn a_run_forgotten_after_its_start_stays_forgotten() {
        let at = Timestamp::now();
        let h = started(at);
        let s = Seen {
            forgotten_at: Some(at),
            ..seen(&h, None)
        };
        assert!(matches!(rebuild(ID, UNIT, DIR, s), Rebuild::NotOurs));
    }

    #[test]
    fn a_run_whose_env_values_were_lost_is_not_startable_again() {
        let mut h = started(Timestamp::now());
        h.env_keys = vec!["TOKEN".into()];
        let r = rebuilt(rebuild(ID, UNIT, DIR, seen(&h, None)));
        assert!(r.command.is_empty(), "{:?}", r.command);
    }

    #[test]
    fn a_scope_without_its_start_entry_cannot_be_rebuilt() {
        let scope = "refine-agent-abcd2345.scope";
        let info = live(&[]);
        let none = UnitHistory::default();
        let r = rebuild(ID, scope, DIR, seen(&none, Some(&info)));
        assert!(
            matches!(r, Rebuild::Cannot(ref why) if why.contains("adopted")),
            "{r:?}"
        );
    }
}
