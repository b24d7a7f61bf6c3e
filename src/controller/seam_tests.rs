//! The pause engine, reconciliation, recover and authorization through the
//! [`UnitManager`] seam: a real index in a temporary directory, an
//! in-memory manager ([`FakeManager`]) instead of systemd.

use super::recover::{stored, Stored};
use super::*;
use crate::systemd::fake::FakeManager;

const A: &str = "abcd2345";
const B: &str = "bcde2345";
const C: &str = "cdef2345";
const D: &str = "defg2345";

/// A controller on a fresh index whose manager is `fake`, acting for
/// this process (which the fake puts in no unit: a person).
struct Bench {
    dir: tempfile::TempDir,
    fake: Arc<FakeManager>,
    controller: Controller,
}

impl Bench {
    fn new(fake: FakeManager) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let state = std::fs::canonicalize(dir.path()).unwrap();
        let fake = Arc::new(fake);
        let controller = Controller::open(&state)
            .unwrap()
            .with_policy_path(state.join("no-policy.toml"))
            .with_units(fake.clone());
        Bench {
            dir,
            fake,
            controller,
        }
    }

    /// The same index, with `fake` as its manager.
    fn swap(self, fake: FakeManager) -> Bench {
        let fake = Arc::new(fake);
        let controller = Controller::open(self.controller.index.dir())
            .unwrap()
            .with_policy_path(self.dir.path().join("no-policy.toml"))
            .with_units(fake.clone());
        Bench {
            dir: self.dir,
            fake,
            controller,
        }
    }

    fn dir(&self) -> String {
        self.controller.index.dir().display().to_string()
    }

    /// Stores a record of `owner` in `state`.
    fn store(&self, id: &str, owner: Owner, state: State) -> Record {
        let mut r = record(id, owner);
        r.state = state;
        self.controller.index.create_or_load(r).unwrap()
    }

    fn stored(&self, id: &str) -> Record {
        match self.controller.index.load(id).unwrap() {
            Loaded::Found(r) => *r,
            other => panic!("no record of {id}: {other:?}"),
        }
    }

    fn events(&self, name: &str) -> Vec<Event> {
        let (events, _) = self.controller.index.events().unwrap();
        events.into_iter().filter(|e| e.event == name).collect()
    }

    /// The environment `run` gives a service of this index.
    fn env_of(&self, id: &str) -> Vec<String> {
        vec![
            format!("REFINE_ID={id}"),
            format!("REFINE_PROC_STATE_DIR={}", self.dir()),
            "REFINE_OWNER=agent".into(),
        ]
    }
}

fn record(id: &str, owner: Owner) -> Record {
    serde_json::from_value(serde_json::json!({
        "id": id, "unit": unit_name(owner, id), "owner": owner.as_str(),
        "state": "running", "started_at": Timestamp::now(),
        "command": ["sleep", "600"],
    }))
    .unwrap()
}

fn unit(id: &str) -> String {
    unit_name(Owner::Agent, id)
}

/// A service loaded in this state (active/failed, freezer state).
fn info(active: &str, freezer: &str) -> ServiceInfo {
    ServiceInfo {
        state: UnitState {
            active_state: active.into(),
            sub_state: String::new(),
            freezer_state: Some(freezer.into()),
        },
        load_state: "loaded".into(),
        main_pid: (active == "active").then_some(4242),
        invocation_id: Some("0123456789abcdef0123456789abcdef".into()),
        ..Default::default()
    }
}

/// Runs a test's future on a runtime of its own, bounded in time.
fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("the test finished in time")
    })
}

fn owner(o: Owner) -> Selection {
    Selection {
        owner: Some(o),
        ..Default::default()
    }
}

fn ids(ids: &[&str]) -> Selection {
    Selection {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn outcome_of(outcomes: &[ActionOutcome], id: &str) -> Outcome {
    let found = outcomes.iter().find(|o| o.id == id);
    found
        .unwrap_or_else(|| panic!("no outcome for {id}: {outcomes:?}"))
        .outcome
}

fn strings(items: &[String]) -> Vec<&str> {
    items.iter().map(String::as_str).collect()
}

// The pause engine.

#[test]
fn an_owner_pause_freezes_what_runs_and_leaves_what_is_frozen_or_ended() {
    let fake = FakeManager::new()
        .unit(&unit(A), info("active", "running"))
        .unit(&unit(B), info("active", "frozen"))
        .unit(&unit(C), info("failed", "running"));
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Running);
    let mut paused = record(B, Owner::Agent);
    paused.paused_by = Some("id".into());
    b.controller.index.create_or_load(paused).unwrap();
    b.store(C, Owner::Agent, State::Failed);
    let outcomes = run(b.controller.pause(&owner(Owner::Agent))).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::Paused);
    assert_eq!(outcome_of(&outcomes, B), Outcome::WasPaused);
    // An ended run is not in a group's selection; named, it is left.
    assert!(outcomes.iter().all(|o| o.id != C), "{outcomes:?}");
    let by_id = run(b.controller.pause(&ids(&[C]))).unwrap();
    assert_eq!(outcome_of(&by_id, C), Outcome::WasNotRunning);
    assert_eq!(b.fake.effects(), vec![format!("freeze {}", unit(A))]);
    assert_eq!(b.fake.freezer_state(&unit(A)).as_deref(), Some("frozen"));
    // The group notes what it froze; the record does not.
    let pauses = b.controller.pauses().unwrap();
    let group = pauses.get("owner:agent").expect("the pause is in force");
    assert_eq!(strings(&group.frozen), vec![A]);
    assert_eq!(b.stored(A).paused_by, None);
    assert_eq!(b.events("paused").len(), 2, "the group's and A's");
}

#[test]
fn a_freeze_that_fails_fails_the_pause_and_the_group_keeps_only_what_froze() {
    let fake = FakeManager::new()
        .unit(&unit(A), info("active", "running"))
        .unit(&unit(B), info("active", "running"))
        .freeze_fails(&unit(B), "the cgroup freezer is not available");
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Running);
    b.store(B, Owner::Agent, State::Running);
    let err = run(b.controller.pause(&owner(Owner::Agent))).unwrap_err();
    assert!(err.message.contains("freezer is not available"), "{err:?}");
    assert_eq!(b.fake.freezer_state(&unit(A)).as_deref(), Some("frozen"));
    let pauses = b.controller.pauses().unwrap();
    let group = pauses.get("owner:agent").expect("the pause stays in force");
    assert_eq!(strings(&group.frozen), vec![A], "B did not freeze");
}

#[test]
fn a_group_resume_thaws_what_its_pause_froze_and_lifts_the_pause() {
    let fake = FakeManager::new()
        .unit(&unit(A), info("active", "running"))
        .unit(&unit(B), info("active", "frozen"));
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Running);
    let mut on_its_own = record(B, Owner::Agent);
    on_its_own.paused_by = Some("id".into());
    b.controller.index.create_or_load(on_its_own).unwrap();
    run(b.controller.pause(&owner(Owner::Agent))).unwrap();
    let outcomes = run(b.controller.resume(&owner(Owner::Agent))).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::Resumed);
    // Paused on its own: a group's resume leaves it.
    assert_eq!(outcome_of(&outcomes, B), Outcome::StaysPaused);
    let effects = b.fake.effects();
    assert_eq!(
        effects,
        vec![format!("freeze {}", unit(A)), format!("thaw {}", unit(A))]
    );
    assert!(b.controller.pauses().unwrap().active.is_empty());
    assert_eq!(b.events("resumed").len(), 2, "the group's and A's");
}

#[test]
fn a_pause_by_id_is_noted_in_the_record_and_its_resume_clears_it() {
    let fake = FakeManager::new().unit(&unit(A), info("active", "running"));
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Running);
    let outcomes = run(b.controller.pause(&ids(&[A]))).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::Paused);
    assert_eq!(b.stored(A).paused_by.as_deref(), Some("id"));
    assert!(b.controller.pauses().unwrap().active.is_empty());
    let outcomes = run(b.controller.resume(&ids(&[A]))).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::Resumed);
    assert_eq!(b.stored(A).paused_by, None);
    assert_eq!(b.fake.freezer_state(&unit(A)).as_deref(), Some("running"));
}

#[test]
fn a_resume_passes_what_another_pause_still_holds_to_that_pause() {
    let fake = FakeManager::new().unit(&unit(A), info("active", "running"));
    let b = Bench::new(fake);
    let mut r = record(A, Owner::Agent);
    r.metadata.workflow = Some("ci".into());
    b.controller.index.create_or_load(r).unwrap();
    run(b.controller.pause(&owner(Owner::Agent))).unwrap();
    let workflow = Selection {
        workflow: Some("ci".into()),
        ..Default::default()
    };
    run(b.controller.pause(&workflow)).unwrap();
    let outcomes = run(b.controller.resume(&owner(Owner::Agent))).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::StaysPaused);
    assert_eq!(b.fake.effects(), vec![format!("freeze {}", unit(A))]);
    let pauses = b.controller.pauses().unwrap();
    assert_eq!(pauses.frozen_by(A), Some("workflow:ci"));
}

#[test]
fn a_resume_releases_queued_runs_no_pause_holds_and_drops_forgotten_ones() {
    let queued = |id: &str, workflow: Option<&str>| {
        let mut r = record(id, Owner::Agent);
        r.state = State::Queued;
        r.metadata.workflow = workflow.map(Into::into);
        (id.to_string(), Some(r))
    };
    let (free, held) = (queued(A, None), queued(B, Some("ci")));
    let mut started = record(C, Owner::Agent);
    started.state = State::Running;
    let queue = vec![
        free,
        held,
        (C.to_string(), Some(started)),
        (D.to_string(), None),
    ];
    let mut pauses = Pauses::default();
    pauses.active.push(GroupPause {
        selector: "workflow:ci".into(),
        since: Timestamp::now(),
        by: "person".into(),
        frozen_owners: vec![],
        stopped_owners: vec![],
        stopped: vec![],
        frozen: vec![],
    });
    let release = release_queued(&pauses, queue);
    let start: Vec<&str> = release.start.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(start, vec![A]);
    assert_eq!(strings(&release.done), vec![A, C, D], "B stays queued");
}

#[test]
fn a_resume_leaves_queued_what_another_pause_holds_and_forgets_what_is_gone() {
    let b = Bench::new(FakeManager::new());
    let mut held = record(A, Owner::Agent);
    held.state = State::Queued;
    held.metadata.workflow = Some("ci".into());
    b.controller.index.create_or_load(held).unwrap();
    run(b.controller.pause(&owner(Owner::Agent))).unwrap();
    let workflow = Selection {
        workflow: Some("ci".into()),
        ..Default::default()
    };
    run(b.controller.pause(&workflow)).unwrap();
    let queue = |p: &mut Pauses| p.queued = vec![A.into(), B.into()];
    b.controller.index.update_pauses(queue).unwrap();
    let outcomes = run(b.controller.resume(&owner(Owner::Agent))).unwrap();
    assert!(outcomes.is_empty(), "{outcomes:?}");
    assert_eq!(strings(&b.controller.pauses().unwrap().queued), vec![A]);
    assert_eq!(b.stored(A).state, State::Queued);
    assert!(b.fake.effects().is_empty());
}

#[test]
fn pause_all_persists_what_it_will_stop_and_freeze_before_acting() {
    let job = PauseJob {
        pause: true,
        tag: "all".into(),
        group: true,
        all: true,
        plan: Policy::load(Path::new("/nonexistent/policy.toml"))
            .unwrap()
            .pause_all(),
    };
    let mut quality = record(B, Owner::Quality);
    quality.state = State::Running;
    let mut frozen = record(C, Owner::Agent);
    frozen.paused_by = Some("id".into());
    let ended = Record {
        state: State::Exited,
        ..record(D, Owner::Quality)
    };
    let helper = record("efgh2345", Owner::UserHelper);
    let records = [record(A, Owner::Agent), quality, frozen, ended, helper];
    let (to_stop, to_freeze) = group_targets(&records, &job);
    assert_eq!((strings(&to_stop), strings(&to_freeze)), (vec![B], vec![A]));
    let mut pauses = Pauses::default();
    begin_group_pause(&mut pauses, &job, "person", &to_stop, &to_freeze);
    begin_group_pause(&mut pauses, &job, "person", &to_stop, &to_freeze);
    assert_eq!(pauses.active.len(), 1, "one pause per group");
    let all = &pauses.active[0];
    assert_eq!(
        (strings(&all.stopped), strings(&all.frozen)),
        (vec![B], vec![A])
    );
    assert_eq!(all.frozen_owners, vec![Owner::Agent]);
    // What did not freeze is trimmed; what it held before stays.
    pauses.active[0].frozen.push(C.into());
    settle_group_pause(&mut pauses, &job, &to_freeze, &[], &[], &[]);
    assert_eq!(strings(&pauses.active[0].frozen), vec![C]);
}

#[test]
fn pause_all_freezes_agents_stops_background_work_and_keeps_helpers_running() {
    let quality = unit_name(Owner::Quality, B);
    let helper = unit_name(Owner::UserHelper, C);
    let b = Bench::new(FakeManager::new());
    let dir = b.controller.index.dir().to_path_buf();
    // The exit hook records the end of the stopped run.
    let b = b.swap(
        FakeManager::new()
            .unit(&unit(A), info("active", "running"))
            .unit(&quality, info("active", "running"))
            .unit(&helper, info("active", "running"))
            .on_stop(move |_| {
                let index = Index::open(dir.clone()).unwrap();
                let ended = |r: &mut Record| {
                    r.state = State::Stopped;
                    r.ended_at = Some(Timestamp::now());
                };
                index.update(B, ended).unwrap();
            }),
    );
    b.store(A, Owner::Agent, State::Running);
    b.store(B, Owner::Quality, State::Running);
    b.store(C, Owner::UserHelper, State::Running);
    let all = Selection {
        all: true,
        ..Default::default()
    };
    let outcomes = run(b.controller.pause(&all)).unwrap();
    assert_eq!(outcome_of(&outcomes, A), Outcome::Paused);
    assert_eq!(outcome_of(&outcomes, B), Outcome::StoppedUntilResume);
    assert_eq!(outcome_of(&outcomes, C), Outcome::KeepsRunning);
    let mut effects = b.fake.effects();
    effects.sort();
    assert_eq!(
        effects,
        vec![format!("freeze {}", unit(A)), format!("stop {quality}")]
    );
    // Its resume needs what it stopped: noted in pauses.json and the record.
    let pauses = b.controller.pauses().unwrap();
    let group = pauses.get("all").expect("the pause is in force");
    assert_eq!(
        (strings(&group.stopped), strings(&group.frozen)),
        (vec![B], vec![A])
    );
    let stopped = b.stored(B);
    assert_eq!(stopped.paused_by.as_deref(), Some("all"));
    assert!(
        stopped.stop_requested_for.is_some(),
        "its exit is a requested stop"
    );
}

// Reconciliation.

#[test]
fn a_record_whose_unit_is_gone_is_closed_as_lost_once() {
    let b = Bench::new(FakeManager::new());
    b.store(A, Owner::Agent, State::Running);
    let status = run(b.controller.status(A)).unwrap();
    assert_eq!(status.record.state, State::Lost);
    assert_eq!(b.stored(A).state, State::Lost);
    assert!(b.stored(A).ended_at.is_some());
    // Asked again before it was closed.
    assert!(b.fake.calls().contains(&format!("is-loaded {}", unit(A))));
    run(b.controller.status(A)).unwrap();
    assert_eq!(b.events("lost").len(), 1);
}

#[test]
fn a_record_whose_unit_failed_keeps_its_recorded_exit() {
    let fake = FakeManager::new().unit(&unit(A), info("failed", "running"));
    let b = Bench::new(fake);
    let mut r = record(A, Owner::Agent);
    r.state = State::Failed;
    r.exit_code = Some(3);
    r.result = Some("exit-code".into());
    b.controller.index.create_or_load(r).unwrap();
    let status = run(b.controller.status(A)).unwrap();
    assert_eq!(
        (status.record.state, status.record.exit_code),
        (State::Failed, Some(3))
    );
    let all = ListFilter {
        all: true,
        ..Default::default()
    };
    let listed = run(b.controller.list(&all)).unwrap().0;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::Failed);
    assert!(b.events("lost").is_empty());
}

#[test]
fn a_record_whose_unit_runs_is_running_with_its_pid_and_paused_when_frozen() {
    let fake = FakeManager::new().unit(&unit(A), info("active", "running"));
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Starting);
    let status = run(b.controller.status(A)).unwrap();
    assert_eq!(
        (status.record.state, status.record.pid),
        (State::Running, Some(4242))
    );
    let b = Bench::new(FakeManager::new().unit(&unit(A), info("active", "frozen")));
    b.store(A, Owner::Agent, State::Running);
    assert_eq!(
        run(b.controller.status(A)).unwrap().record.state,
        State::Paused
    );
}

#[test]
fn list_rebuilds_a_loaded_unit_of_this_index_but_not_another_indexs() {
    let b = Bench::new(FakeManager::new());
    let ours = ServiceInfo {
        environment: b.env_of(A),
        ..info("active", "running")
    };
    let theirs = ServiceInfo {
        environment: vec![
            format!("REFINE_ID={B}"),
            "REFINE_PROC_STATE_DIR=/other".into(),
        ],
        ..info("active", "running")
    };
    let b = b.swap(
        FakeManager::new()
            .unit(&unit(A), ours)
            .unit(&unit(B), theirs),
    );
    let (listed, _) = run(b.controller.list(&ListFilter::default())).unwrap();
    let listed: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, vec![A]);
    assert_eq!(b.stored(A).recovered_from.as_deref(), Some("systemd"));
}

// recover.

fn no_history(_: Vec<String>) -> std::future::Ready<HashMap<String, crate::journal::UnitHistory>> {
    std::future::ready(HashMap::new())
}

#[test]
fn recover_rebuilds_a_lost_running_service_and_counts_intact_records() {
    let b = Bench::new(FakeManager::new());
    let ours = ServiceInfo {
        environment: b.env_of(A),
        exec_argv: vec!["sleep".into(), "600".into()],
        ..info("active", "running")
    };
    let fake = FakeManager::new()
        .unit(&unit(A), ours)
        .unit(&unit(B), info("active", "running"));
    let b = b.swap(fake);
    b.store(B, Owner::Agent, State::Running);
    let recovery = run(b.controller.recover_from(None, no_history)).unwrap();
    let rebuilt: Vec<&str> = recovery.rebuilt.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(rebuilt, vec![A]);
    assert_eq!(recovery.intact, 1);
    assert!(!recovery.journal);
    let r = b.stored(A);
    assert_eq!(
        (r.state, r.command.clone()),
        (State::Running, vec!["sleep".to_string(), "600".into()])
    );
    assert_eq!(b.events("recovered").len(), 1);
}

#[test]
fn recover_leaves_another_indexs_unit_and_closes_an_ended_run_from_the_journal() {
    let other = ServiceInfo {
        environment: vec![
            format!("REFINE_ID={A}"),
            "REFINE_PROC_STATE_DIR=/other".into(),
        ],
        ..info("active", "running")
    };
    let b = Bench::new(FakeManager::new().unit(&unit(A), other));
    let start = serde_json::to_value(record(C, Owner::Agent)).unwrap();
    let history = move |units: Vec<String>| {
        assert!(
            units.contains(&unit(A)) && units.contains(&unit(C)),
            "{units:?}"
        );
        let h = crate::journal::UnitHistory {
            seen_by_manager: true,
            start: Some(start),
            start_at: Some(Timestamp::now()),
            ..Default::default()
        };
        std::future::ready(HashMap::from([(unit(C), h)]))
    };
    let journal = Some(vec![unit(C)]);
    let recovery = run(b.controller.recover_from(journal, history)).unwrap();
    let rebuilt: Vec<&str> = recovery.rebuilt.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(rebuilt, vec![C], "A is another index's");
    assert!(recovery.journal && recovery.not_rebuilt.is_empty());
    let r = b.stored(C);
    assert_eq!(
        (r.state, r.recovered_from.as_deref()),
        (State::Lost, Some("journal"))
    );
    assert!(matches!(b.controller.index.load(A), Ok(Loaded::Missing)));
}

#[test]
fn recover_says_why_a_unit_in_the_journal_without_its_start_cannot_be_rebuilt() {
    let b = Bench::new(FakeManager::new());
    let recovery = run(b.controller.recover_from(Some(vec![unit(A)]), no_history)).unwrap();
    assert!(recovery.rebuilt.is_empty());
    assert_eq!(recovery.not_rebuilt.len(), 1);
    assert!(recovery.not_rebuilt[0].reason.contains("no start entry"));
    let newer = stored(Ok(Loaded::Newer { schema: 99 }));
    assert!(
        matches!(newer, Stored::Unusable(ref why) if why.contains("schema 99")),
        "{newer:?}"
    );
    assert_eq!(stored(Ok(Loaded::Missing)), Stored::Lost);
}

#[test]
fn recover_without_a_manager_fails_before_writing_anything() {
    let b = Bench::new(FakeManager::new().gone());
    let start = serde_json::to_value(record(C, Owner::Agent)).unwrap();
    let history = move |_: Vec<String>| {
        let h = crate::journal::UnitHistory {
            start: Some(start),
            ..Default::default()
        };
        std::future::ready(HashMap::from([(unit(C), h)]))
    };
    assert!(run(b.controller.recover_from(Some(vec![unit(C)]), history)).is_err());
    assert!(b.controller.index.ids().unwrap().is_empty());
}

// Authorization.

/// A controller acting for pid 777, which the fake puts in `unit`.
fn for_pid(b: &Bench) -> Controller {
    b.controller
        .on_behalf_of(Caller::peer(crate::provenance::uid(), 777))
}

#[test]
fn a_pid_in_a_managed_unit_is_that_process_bound_by_its_units_policy() {
    let b = Bench::new(FakeManager::new());
    let policy = b.dir.path().join("agent-policy.toml");
    std::fs::write(&policy, "").unwrap();
    let mut env = b.env_of(A);
    env.push(format!("REFINE_PROC_POLICY={}", policy.display()));
    let in_unit = ServiceInfo {
        environment: env,
        ..info("active", "running")
    };
    let b = b.swap(
        FakeManager::new()
            .unit(&unit(A), in_unit)
            .pid(777, Some(&unit(A))),
    );
    b.store(A, Owner::Agent, State::Running);
    let c = for_pid(&b);
    let requester = run(c.requester()).unwrap();
    assert_eq!(requester.actor, Actor::Managed(Owner::Agent));
    assert_eq!(requester.caller.as_ref().map(|c| c.id.as_str()), Some(A));
    assert_eq!(requester.policy.path, policy);
    // An agent reaches its descendants only: another owner's process is
    // refused, and nothing is frozen.
    b.store(B, Owner::Quality, State::Running);
    let err = run(c.pause(&ids(&[B]))).unwrap_err();
    assert_eq!(err.kind, crate::ErrorKind::Denied, "{err:?}");
    assert_eq!(b.events("refused").len(), 1);
    // Nor may it pause itself.
    let err = run(c.pause(&ids(&[A]))).unwrap_err();
    assert!(err.message.contains("the process asking"), "{err:?}");
}

#[test]
fn a_pid_in_no_managed_unit_is_a_person() {
    let b = Bench::new(FakeManager::new().pid(777, None));
    let c = for_pid(&b);
    let requester = run(c.requester()).unwrap();
    assert_eq!(requester.actor, Actor::Person);
    assert!(requester.caller.is_none());
    // Its unit is another manager's concern (not refine-proc's naming).
    let b = Bench::new(FakeManager::new().pid(777, Some("session-3.scope")));
    assert_eq!(run(for_pid(&b).requester()).unwrap().actor, Actor::Person);
}

#[test]
fn a_failed_lookup_of_the_callers_unit_refuses_rather_than_falls_back_to_person() {
    let fake = FakeManager::new()
        .unit(&unit(A), info("active", "running"))
        .pid_fails(777, "org.freedesktop.DBus.Error.AccessDenied");
    let b = Bench::new(fake);
    b.store(A, Owner::Agent, State::Running);
    let c = for_pid(&b);
    assert!(run(c.requester()).is_err());
    assert!(run(c.pause(&ids(&[A]))).is_err());
    assert!(b.fake.effects().is_empty());
}

#[test]
fn a_managed_caller_started_with_another_index_is_denied() {
    let env = vec![format!("REFINE_ID={A}"), "REFINE_PROC_STATE_DIR=/".into()];
    let in_unit = ServiceInfo {
        environment: env,
        ..info("active", "running")
    };
    let fake = FakeManager::new()
        .unit(&unit(A), in_unit)
        .pid(777, Some(&unit(A)));
    let b = Bench::new(fake);
    let err = run(for_pid(&b).requester()).unwrap_err();
    assert_eq!(err.kind, crate::ErrorKind::Denied, "{err:?}");
    assert!(
        err.message.contains("was started with the index"),
        "{err:?}"
    );
}
