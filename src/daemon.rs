//! `refine-proc daemon`: what needs a watcher. The CLI works without it;
//! the daemon adds health checks, restarts with growing delays where
//! systemd has no RestartSteps= (before 254), and records the transitions
//! nobody else sees (systemd's own automatic restarts, health changes).
//!
//! It is driven by events only: systemd's PropertiesChanged signals for the
//! index's units, and the timers it set itself (a probe or a restart that
//! is due, the watchdog). Probes run as its own children (no unit each, no
//! journal lines), concurrently, and not while a process is paused. As a `Type=notify` service it says READY=1 once it has
//! reconciled the index with systemd, keeps a STATUS= line with counts,
//! and sends WATCHDOG=1 at half the unit's WatchdogSec. One daemon per
//! index: a second one refuses to start.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use sd_notify::NotifyState;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::controller::{Controller, ListFilter};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::follow::Tracker;
use crate::health::{HealthState, HealthStatus, OnUnhealthy, ProbeResult};
use crate::model::{Failure, Record, RestartBy, RestartPolicy, State, Timestamp};
use crate::systemd::UnitChange;

/// systemd's DefaultStartLimitBurst= and DefaultStartLimitIntervalSec=:
/// the start limit of a run without `--restart-limit`.
const DEFAULT_LIMIT: (u32, u64) = (5, 10);

/// The `result` of a run the daemon gave up on: as systemd says of a unit
/// over its start limit.
pub const GAVE_UP: &str = "start-limit-hit";

/// Why the daemon owes a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Why {
    /// The run ended and its `--restart` policy wants another.
    Ended,
    /// The run is unhealthy and `--on-unhealthy restart` asks for a new one.
    Unhealthy,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Ended => "ended",
            Why::Unhealthy => "unhealthy",
        }
    }
}

/// A restart the daemon owes: when (wall clock, so it survives the
/// daemon) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Due {
    at: Timestamp,
    why: Why,
    delay_sec: u64,
}

/// What the daemon counts of one record's restarts. Kept in
/// `daemon-state.json`, so a restart of the daemon (a crash, a watchdog
/// kill) neither forgets the start limit nor starts the delays over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Attempts {
    /// Consecutive restarts: the next delay doubles this many times.
    streak: u32,
    /// When the daemon restarted it, within the start-limit window.
    starts: Vec<Timestamp>,
    due: Option<Due>,
    /// The start limit stopped the restarts of the last run: no later
    /// daemon restarts it either, until a new run starts.
    gave_up: bool,
}

/// The daemon's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Book {
    restarts: BTreeMap<String, Attempts>,
}

/// What the daemon knows between events.
struct Supervisor {
    /// Records of this index in a run now.
    running: HashSet<String>,
    /// Restarts the daemon owes, when they are due (the timers of
    /// `book`'s `due` entries).
    due: BTreeMap<String, Instant>,
    book: Book,
    /// The book as last written, so only a change costs a durable write.
    saved: Book,
    /// Health probes that are due, by record; and those under way.
    probes: BTreeMap<String, Instant>,
    probing: HashSet<String>,
    /// Where command probes are contained (None: by process group only).
    cgroups: Option<crate::probe_cgroup::ProbeCgroups>,
}

/// When the daemon last fed systemd's watchdog (ms since the epoch; 0:
/// never), for `/api/v1/system`.
static WATCHDOG_FED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// When this daemon last sent WATCHDOG=1, if it has.
pub fn watchdog_last_fed() -> Option<Timestamp> {
    let ms = WATCHDOG_FED_MS.load(std::sync::atomic::Ordering::Relaxed);
    (ms > 0).then(|| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

/// Returns the allocator's free memory to the system half a second after
/// the first call of a burst (a page of 1,000 records, a stream's
/// history): glibc keeps a peak's freed pages resident otherwise, and the
/// daemon's resident memory stays at its peak (issue 11). Needs a runtime.
pub fn release_memory_soon() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    // Cleared however the task ends (a runtime shut down drops it).
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PENDING.store(false, Ordering::Release);
        }
    }
    tokio::spawn(async {
        let _clear = Clear;
        tokio::time::sleep(Duration::from_millis(500)).await;
        release_memory();
    });
}

fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena: a current-thread runtime has one busy thread, and
/// each blocking-pool thread's arena would otherwise stay resident after
/// the thread has gone.
fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(controller: &Controller, api: crate::api::Options) -> Result<()> {
    one_arena();
    let index = controller.index();
    let _lock = match index.daemon_lock()? {
        Ok(lock) => lock,
        Err(pid) => {
            let who = pid.map_or("another daemon".into(), |p| format!("daemon pid {p}"));
            return Err(Error::refused(format!(
                "{who} already supervises the index {}",
                index.dir().display()
            ))
            .hint("one daemon per index: stop it first (systemctl --user stop refine-proc), or use another --state-dir"));
        }
    };
    let systemd = controller.systemd().await?;
    // Subscribed before reconciling, so no transition falls in between.
    let mut changes = systemd.unit_state_changes("refine-").await?;
    let mut tracker = Tracker::new(controller).await?;
    let all = ListFilter {
        all: true,
        ..Default::default()
    };
    let (records, warnings) = controller.list(&all).await?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let manager_started = systemd.started_at().await;
    let book = index.daemon_state::<Book>()?.unwrap_or_default();
    let mut sup = Supervisor {
        running: HashSet::new(),
        due: BTreeMap::new(),
        saved: book.clone(),
        book,
        probes: BTreeMap::new(),
        probing: HashSet::new(),
        cgroups: match crate::probe_cgroup::ProbeCgroups::detect() {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::warn!(
                    "command probes are contained by process group only (a probe that calls \
                     setsid can leave processes behind): {why}"
                );
                None
            }
        },
    };
    sup.resume(controller, &records, manager_started);
    sup.save(controller);
    drop(records);
    release_memory();
    let _api = crate::api::start(controller, api).await?;
    notify(&[NotifyState::Ready, NotifyState::Status(&sup.status())]);
    tracing::info!("supervising {}", sup.status());
    let mut usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(100)));
    // Issue 9: the watchdog is fed from its own task and signals are
    // answered outside the loop, because the loop awaits its actions (a
    // stop waits for the index lock, which another process may hold for
    // seconds). The daemon's index writes on those paths are async
    // (`Index::*_async`, on the blocking pool), so its executor stays free:
    // the watchdog then proves the executor is alive, which is what it is
    // for, and a stalled executor still starves it. This is simpler than a
    // multi-thread runtime with `block_in_place` (the runtime is the CLI's,
    // current-thread for every command) and holds for every await point.
    let feeder = watchdog.map(|period| {
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(period);
            loop {
                heartbeat.tick().await;
                notify(&[NotifyState::Watchdog]);
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
                let ms = now.map_or(0, |d| d.as_millis() as u64);
                WATCHDOG_FED_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let supervise = supervise(controller, &mut sup, &mut tracker, &mut changes);
    // A signal drops the loop at its await point; an index write already
    // handed to the blocking pool still runs to its end.
    let ended = tokio::select! {
        ended = supervise => ended,
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    notify(&[NotifyState::Stopping]);
    ended
}

/// The supervision loop: unit changes, due restarts and probes, results.
async fn supervise(
    controller: &Controller,
    sup: &mut Supervisor,
    tracker: &mut Tracker,
    changes: &mut (impl futures_util::Stream<Item = UnitChange> + Unpin),
) -> Result<()> {
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    loop {
        let next_due = sup.due.values().chain(sup.probes.values()).min().copied();
        let due = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else {
                    return Err(Error::systemd("the connection to systemd ended").hint(
                        "systemd restarts the daemon (Restart=on-failure); the CLI works meanwhile",
                    ));
                };
                if change.sub_state.as_deref() == Some("stop-post") {
                    // The main process has ended: its end goes to the
                    // history (and to open streams) now, not after the hook.
                    if let Err(e) = controller.record_exit_seen(&change.unit, change.exit.clone()).await {
                        tracing::debug!("{}: {}", change.unit, e.message);
                    }
                }
                let Some((record, events)) = tracker.on_change(controller, &change) else {
                    continue;
                };
                for e in &events {
                    sup.on_event(controller, &record, e);
                }
                sup.save(controller);
                notify(&[NotifyState::Status(&sup.status())]);
            }
            _ = due => {
                let now = Instant::now();
                let ready: Vec<String> =
                    sup.due.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
                for id in ready {
                    sup.due.remove(&id);
                    restart_now(controller, sup, &id).await;
                }
                sup.save(controller);
                let probes: Vec<String> =
                    sup.probes.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
                for id in probes {
                    sup.probes.remove(&id);
                    sup.start_probe(controller, &id, &results_tx);
                }
                notify(&[NotifyState::Status(&sup.status())]);
            }
            Some((id, result)) = results.recv() => {
                sup.probing.remove(&id);
                on_probe(controller, sup, &id, result).await;
                sup.save(controller);
            }
        }
    }
}

impl Supervisor {
    fn status(&self) -> String {
        format!(
            "{} running, {} with health checks, {} restarts pending",
            self.running.len(),
            self.probes.len() + self.probing.len(),
            self.due.len()
        )
    }

    /// Runs one probe of a running, unpaused process in the background;
    /// its result comes back on `results`. A paused process is looked at
    /// again an interval later.
    fn start_probe(
        &mut self,
        controller: &Controller,
        id: &str,
        results: &tokio::sync::mpsc::UnboundedSender<(String, ProbeResult)>,
    ) {
        let Some(r) = load(controller, id) else {
            return;
        };
        let Some(spec) = r.health.clone() else { return };
        if !self.running.contains(id) {
            return;
        }
        let frozen =
            r.paused_by.is_some() || controller.pauses().is_ok_and(|p| p.frozen_by(id).is_some());
        if frozen {
            self.probes
                .insert(id.to_string(), Instant::now() + spec.interval());
            return;
        }
        let cgroup = match (&self.cgroups, &spec.check) {
            (Some(c), crate::health::HealthCheck::Cmd { .. }) => match c.for_record(id) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!("{id}: probe not contained in a cgroup: {e}");
                    None
                }
            },
            _ => None,
        };
        self.probing.insert(id.to_string());
        let results = results.clone();
        let (id, cwd, env) = (id.to_string(), r.cwd.clone(), r.environment.clone());
        tokio::spawn(async move {
            let cwd = cwd.map(std::path::PathBuf::from);
            let result = crate::health::probe_in(&spec, cwd.as_deref(), &env, cgroup).await;
            let _ = results.send((id, result));
        });
    }

    /// Picks up where the last daemon left off: probes for running
    /// records, the restarts it owed (at the time it set), and the restarts
    /// of failures while no daemon watched (under this manager).
    fn resume(
        &mut self,
        controller: &Controller,
        records: &[Record],
        manager_started: Option<Timestamp>,
    ) {
        let known: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        self.book
            .restarts
            .retain(|id, _| known.contains(id.as_str()));
        for r in records {
            let owed = self.book.restarts.get(&r.id).and_then(|a| a.due);
            if !r.state.is_ended() && r.state != State::Queued {
                self.running.insert(r.id.clone());
                if let Some(h) = &r.health {
                    self.probes
                        .insert(r.id.clone(), Instant::now() + h.interval());
                }
            }
            let gave_up = self.book.restarts.get(&r.id).is_some_and(|a| a.gave_up);
            if let Some(due) = owed {
                // restart_now checks that it is still wanted.
                self.due.insert(r.id.clone(), instant_of(due.at));
            } else if r.state.is_ended()
                && !gave_up
                && wants_restart(r)
                // Failed while no daemon watched, under this manager: owed now.
                && r.ended_at.zip(manager_started).is_some_and(|(e, m)| e >= m)
                && !self.schedule(r, Why::Ended)
            {
                self.gave_up(controller, r, Why::Ended);
            }
        }
    }

    /// Writes the book if it changed (fsynced: a daemon killed a moment
    /// later starts from it).
    fn save(&mut self, controller: &Controller) {
        if self.book == self.saved {
            return;
        }
        match controller.index().save_daemon_state(&self.book) {
            Ok(()) => self.saved = self.book.clone(),
            Err(e) => tracing::warn!("cannot store the daemon's restarts: {}", e.message),
        }
    }

    fn on_event(&mut self, controller: &Controller, record: &Record, e: &Event) {
        match e.event.as_str() {
            "started" => {
                self.running.insert(record.id.clone());
                self.new_run(controller, record);
            }
            "restarted" => {
                self.running.insert(record.id.clone());
                self.new_run(controller, record);
                // systemd's own restart: only systemd and we saw it.
                let mut e = e.clone();
                e.actor = Some("systemd".into());
                controller.record_event(e);
            }
            _ => {
                self.running.remove(&record.id);
                self.probes.remove(&record.id);
                if let Some(c) = self.cgroups.as_ref().filter(|_| record.health.is_some()) {
                    c.remove(&record.id);
                }
                // The record read when the signal came has the exit the
                // hook wrote before the unit went inactive.
                if wants_restart(record) {
                    // A run that lasted longer than the longest delay was a
                    // success of sorts: the delays start over.
                    let lasted = record
                        .started_at
                        .zip(record.ended_at)
                        .and_then(|(s, e)| e.0.duration_since(s.0).ok());
                    let max = record.restart.timing.max_delay_sec.unwrap_or(u64::MAX);
                    if lasted.is_some_and(|d| d.as_secs() > max) {
                        self.attempts(&record.id).streak = 0;
                    }
                    if !self.schedule(record, Why::Ended) {
                        self.gave_up(controller, record, Why::Ended);
                    }
                } else if let Some(a) = self.book.restarts.get_mut(&record.id) {
                    // Ended for good (stopped, exited): nothing is owed.
                    a.due = None;
                    self.due.remove(&record.id);
                }
            }
        }
    }

    /// A new run of a checked process starts its health over.
    fn new_run(&mut self, controller: &Controller, record: &Record) {
        if let Some(a) = self.book.restarts.get_mut(&record.id) {
            a.gave_up = false;
        }
        let Some(spec) = &record.health else { return };
        let index = controller.index();
        let was = index.health(&record.id).ok().flatten().map(|s| s.status);
        let fresh = HealthState::new(Timestamp::now());
        if let Err(e) = index.save_health(&record.id, &fresh) {
            tracing::warn!("{}: cannot store its health: {}", record.id, e.message);
        }
        if let Some(from) = was.filter(|s| *s != HealthStatus::Starting) {
            controller.record_event(Event::about("health-starting", record).with("from", from));
        }
        self.probes
            .insert(record.id.clone(), Instant::now() + spec.interval());
    }

    fn attempts(&mut self, id: &str) -> &mut Attempts {
        self.book.restarts.entry(id.to_string()).or_default()
    }

    /// Schedules the next restart of a record (ended, or unhealthy) with a
    /// growing delay, unless it has used up its start limit (its own, or
    /// systemd's default). Failure and unhealthy restarts share the count.
    fn schedule(&mut self, r: &Record, why: Why) -> bool {
        let t = &r.restart.timing;
        let (burst, interval) = start_limit(r);
        let now = Timestamp::now();
        let a = self.attempts(&r.id);
        let window = Duration::from_secs(interval);
        // A start dated in the future (the clock went back) still counts.
        a.starts
            .retain(|at| now.0.duration_since(at.0).map_or(true, |d| d < window));
        // The first start counts too, as systemd counts StartLimitBurst=.
        if a.starts.len() + 1 >= burst as usize {
            tracing::warn!(
                "{}: start limit reached ({burst} in {interval}s); not restarting",
                r.id
            );
            a.streak = 0;
            a.due = None;
            a.gave_up = true;
            self.due.remove(&r.id);
            return false;
        }
        let delay = crate::spec::backoff_delay(
            t.delay_sec.unwrap_or(1),
            t.max_delay_sec.unwrap_or(u64::MAX),
            a.streak,
        );
        let at = Timestamp(now.0 + Duration::from_secs(delay));
        a.due = Some(Due {
            at,
            why,
            delay_sec: delay,
        });
        self.due.insert(r.id.clone(), instant_of(at));
        true
    }

    /// Says that the start limit is used up (a `restart-gave-up` event),
    /// once that is durable: whoever sees the event finds it in the book.
    fn gave_up(&mut self, controller: &Controller, r: &Record, why: Why) {
        self.save(controller);
        let (burst, interval) = start_limit(r);
        controller.record_event(
            daemon_event("restart-gave-up", r)
                .with("reason", why.as_str())
                .with("limit_burst", burst)
                .with("limit_interval_sec", interval),
        );
    }
}

/// The start limit of a record: `--restart-limit`, else systemd's default.
fn start_limit(r: &Record) -> (u32, u64) {
    let t = &r.restart.timing;
    t.limit_burst
        .zip(t.limit_interval_sec)
        .unwrap_or(DEFAULT_LIMIT)
}

/// The monotonic instant of a wall-clock time (now, if it is past).
fn instant_of(at: Timestamp) -> Instant {
    Instant::now() + at.0.duration_since(SystemTime::now()).unwrap_or_default()
}

/// An event of the daemon's own doing, for the record's launcher (named
/// as the controller names it: `person`, or the launching owner).
fn daemon_event(name: &str, r: &Record) -> Event {
    let launcher = r.requested_by.acting_owner.map_or("person", |o| o.as_str());
    let mut e = Event::about(name, r).with("on_behalf_of", launcher);
    e.actor = Some("daemon".into());
    e.caller = r.requested_by.parent.clone();
    e
}

fn load(controller: &Controller, id: &str) -> Option<Record> {
    match controller.index().load(id) {
        Ok(crate::index::Loaded::Found(r)) => Some(*r),
        _ => None,
    }
}

/// Takes in a probe's result: stores the health, records a transition,
/// acts on `--on-unhealthy`, and schedules the next probe.
async fn on_probe(controller: &Controller, sup: &mut Supervisor, id: &str, result: ProbeResult) {
    let Some(r) = load(controller, id) else {
        return;
    };
    let Some(spec) = r.health.clone() else { return };
    if !sup.running.contains(id) {
        return; // it ended while probed
    }
    let index = controller.index();
    let run_started = r.started_at.unwrap_or(result.at);
    let mut state = index
        .health(id)
        .ok()
        .flatten()
        .unwrap_or_else(|| HealthState::new(run_started));
    let from = state.status;
    let changed = state.apply(&spec, result, run_started);
    if let Err(e) = index.save_health(id, &state) {
        tracing::warn!("{id}: cannot store its health: {}", e.message);
    }
    sup.probes
        .insert(id.to_string(), Instant::now() + spec.interval());
    let Some(to) = changed else { return };
    if let Some(last) = &state.last {
        controller.record_event(crate::health::health_event(&r, from, to, last));
    }
    if to == HealthStatus::Healthy {
        // A passing check is a success: unhealthy restarts start over.
        if let Some(a) = sup.book.restarts.get_mut(id) {
            a.streak = 0;
            if a.due.is_some_and(|d| d.why == Why::Unhealthy) {
                a.due = None;
                sup.due.remove(id);
            }
        }
        return;
    }
    if to != HealthStatus::Unhealthy {
        return;
    }
    match spec.on_unhealthy {
        OnUnhealthy::None => {}
        // After the delay, if it is still unhealthy then.
        OnUnhealthy::Restart if sup.schedule(&r, Why::Unhealthy) => {
            tracing::info!("{id} is unhealthy: restart owed");
        }
        OnUnhealthy::Restart => give_up_unhealthy(controller, sup, &r).await,
        OnUnhealthy::Stop => {
            let stopped = as_daemon(controller, &r)
                .stop(&[id.to_string()])
                .await
                .map(drop);
            match stopped {
                Ok(()) => tracing::info!("{id} is unhealthy: stopped"),
                Err(e) => tracing::warn!("{id} is unhealthy, and stop failed: {}", e.message),
            }
        }
    }
}

/// An unhealthy process over its start limit is left as systemd leaves a
/// unit over its start limit: stopped, and failed with `start-limit-hit`
/// (also in `restart.last_failure`), with a `restart-gave-up` event.
async fn give_up_unhealthy(controller: &Controller, sup: &mut Supervisor, r: &Record) {
    let id = &r.id;
    let stopped = as_daemon(controller, r)
        .stop(std::slice::from_ref(id))
        .await
        .map(drop);
    if let Err(e) = stopped {
        tracing::warn!(
            "{id} is unhealthy past its start limit, and stop failed: {}",
            e.message
        );
        return;
    }
    sup.running.remove(id);
    sup.probes.remove(id);
    let marked = controller.index().update_async(id, |cur| {
        if !cur.state.is_ended() {
            return; // a new run started meanwhile: it stands
        }
        cur.state = State::Failed;
        cur.result = Some(GAVE_UP.into());
        cur.restart.last_failure = Some(Failure {
            at: cur.ended_at.unwrap_or_else(Timestamp::now),
            exit_code: cur.exit_code,
            exit_signal: cur.exit_signal.clone(),
            result: cur.result.clone(),
        });
    });
    match marked.await {
        Ok(Some(cur)) if cur.result.as_deref() == Some(GAVE_UP) => {
            sup.gave_up(controller, &cur, Why::Unhealthy);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot record that {id} gave up: {}", e.message),
    }
}

/// The daemon acting on a record: on behalf of its launcher, bound by the
/// launch's policy, audited as `daemon`.
fn as_daemon(controller: &Controller, r: &Record) -> Controller {
    controller.on_behalf_of(crate::controller::Caller::daemon_for(r))
}

/// Whether the daemon, not systemd, restarts this ended record now.
fn wants_restart(r: &Record) -> bool {
    if r.restart.by != RestartBy::Daemon
        || r.resurrected_as.is_some()
        || r.paused_by.is_some()
        || r.result.as_deref() == Some(GAVE_UP)
    {
        return false;
    }
    match r.restart.policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => r.state == State::Failed,
        RestartPolicy::Always => {
            matches!(r.state, State::Failed | State::Exited)
                || r.state == State::Stopped && !r.stopped_on_request()
        }
    }
}

/// Whether a restart owed for `why` is still wanted: the run ended and
/// its policy wants another, or it runs and is still unhealthy. It may
/// have been stopped, forgotten, healed or started by hand meanwhile.
fn still_wanted(controller: &Controller, r: &Record, why: Why) -> bool {
    match why {
        Why::Ended => r.state.is_ended() && wants_restart(r),
        Why::Unhealthy => {
            r.state == State::Running
                && r.health
                    .as_ref()
                    .is_some_and(|h| h.on_unhealthy == OnUnhealthy::Restart)
                && controller
                    .index()
                    .health(&r.id)
                    .ok()
                    .flatten()
                    .is_some_and(|h| h.status == HealthStatus::Unhealthy)
        }
    }
}

/// Does a restart that is due, as the daemon for the record's launcher.
/// The attempt counts before it is made (as systemd counts a start that
/// fails), so a daemon killed in between does not get a free one.
async fn restart_now(controller: &Controller, sup: &mut Supervisor, id: &str) {
    let Some(mut r) = load(controller, id) else {
        sup.book.restarts.remove(id);
        return;
    };
    let Some(due) = sup.book.restarts.get(id).and_then(|a| a.due) else {
        return;
    };
    if due.why == Why::Ended {
        // Ended runs have no unit: the record's exit stands.
        crate::controller::reconcile(&mut r, None);
    }
    if !still_wanted(controller, &r, due.why) {
        sup.attempts(id).due = None;
        return;
    }
    // A pause holds its owner: look again a delay later, so the restart
    // happens after the resume instead of being dropped.
    if let Ok(Some(held)) = controller.held_by_pause(r.owner, &r.metadata) {
        let delay = r.restart.timing.delay_sec.unwrap_or(1).max(1);
        tracing::info!("{id}: restart waits, {} holds it", held.selector);
        let at = Timestamp(SystemTime::now() + Duration::from_secs(delay));
        sup.attempts(id).due = Some(Due { at, ..due });
        sup.due.insert(id.to_string(), instant_of(at));
        return;
    }
    let a = sup.attempts(id);
    a.streak += 1;
    a.starts.push(Timestamp::now());
    a.due = None;
    let attempt = a.streak;
    sup.save(controller);
    let noted = daemon_event("restarted", &r)
        .with("by", "daemon")
        .with("reason", due.why.as_str())
        .with("attempt", attempt)
        .with("delay_sec", due.delay_sec);
    // A running process's restart is recorded by the restart itself, with
    // these facts (issue 11.7: it once had two `restarted` events); an
    // ended one's is a `started` again, and this event says why.
    let restarted = as_daemon(controller, &r)
        .restart_noting(id, noted.details.clone())
        .await;
    match restarted {
        Ok(o)
            if o.outcome == crate::controller::Outcome::Restarted
                || o.outcome == crate::controller::Outcome::RestartedUnpaused => {}
        Ok(_) => controller.record_event(noted),
        Err(e) => tracing::warn!("cannot restart {id}: {}", e.message),
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::systemd(format!("cannot handle signals: {e}")))
}

/// Tells systemd (when it runs us as a Type=notify service); a no-op
/// otherwise.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}
