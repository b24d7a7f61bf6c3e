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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use sd_notify::NotifyState;
use tokio::time::Instant;

use crate::controller::{Controller, ListFilter};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::follow::Tracker;
use crate::health::{HealthState, HealthStatus, OnUnhealthy, ProbeResult};
use crate::model::{Record, RestartBy, RestartPolicy, State, Timestamp};

/// What the daemon knows between events.
struct Supervisor {
    /// Records of this index in a run now.
    running: HashSet<String>,
    /// Restarts the daemon owes, when they are due.
    due: BTreeMap<String, Instant>,
    /// Per record: consecutive restarts (for the growing delay) and the
    /// recent starts (for the start limit).
    streak: HashMap<String, u32>,
    recent: HashMap<String, VecDeque<Instant>>,
    /// Health probes that are due, by record; and those under way.
    probes: BTreeMap<String, Instant>,
    probing: HashSet<String>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(controller: &Controller, api: crate::api::Options) -> Result<()> {
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
    let mut sup = Supervisor {
        running: HashSet::new(),
        due: BTreeMap::new(),
        streak: HashMap::new(),
        recent: HashMap::new(),
        probes: BTreeMap::new(),
        probing: HashSet::new(),
    };
    for r in &records {
        if !r.state.is_ended() && r.state != State::Queued {
            sup.running.insert(r.id.clone());
            if let Some(h) = &r.health {
                sup.probes
                    .insert(r.id.clone(), Instant::now() + h.interval());
            }
        } else if wants_restart(r)
            // Failed while no daemon watched, under this manager: owed now.
            && r.ended_at.zip(manager_started).is_some_and(|(e, m)| e >= m)
        {
            sup.schedule(r);
        }
    }
    let _api = crate::api::start(controller, api).await?;
    notify(&[NotifyState::Ready, NotifyState::Status(&sup.status())]);
    tracing::info!("supervising {}", sup.status());
    let mut usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(100)));
    let mut heartbeat = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
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
                let Some((record, events)) = tracker.on_change(controller, &change) else {
                    continue;
                };
                for e in &events {
                    sup.on_event(controller, &record, e);
                }
                notify(&[NotifyState::Status(&sup.status())]);
            }
            _ = due => {
                let now = Instant::now();
                let ready: Vec<String> =
                    sup.due.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
                for id in ready {
                    sup.due.remove(&id);
                    restart_now(controller, &mut sup, &id).await;
                }
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
                on_probe(controller, &mut sup, &id, result).await;
            }
            _ = heartbeat.tick(), if watchdog.is_some() => {
                notify(&[NotifyState::Watchdog]);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(&[NotifyState::Stopping]);
    Ok(())
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
        self.probing.insert(id.to_string());
        let results = results.clone();
        let (id, cwd, env) = (id.to_string(), r.cwd.clone(), r.environment.clone());
        tokio::spawn(async move {
            let cwd = cwd.map(std::path::PathBuf::from);
            let result = crate::health::probe(&spec, cwd.as_deref(), &env).await;
            let _ = results.send((id, result));
        });
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
                        self.streak.remove(&record.id);
                    }
                    if !self.schedule(record) {
                        let t = &record.restart.timing;
                        controller.record_event(
                            Event::about("restart-gave-up", record)
                                .with("limit_burst", t.limit_burst)
                                .with("limit_interval_sec", t.limit_interval_sec),
                        );
                    }
                }
            }
        }
    }

    /// A new run of a checked process starts its health over.
    fn new_run(&mut self, controller: &Controller, record: &Record) {
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

    /// Schedules the next restart of an ended record with a growing delay,
    /// unless it has used up its start limit.
    fn schedule(&mut self, r: &Record) -> bool {
        let t = &r.restart.timing;
        let now = Instant::now();
        let recent = self.recent.entry(r.id.clone()).or_default();
        if let (Some(burst), Some(interval)) = (t.limit_burst, t.limit_interval_sec) {
            let window = Duration::from_secs(interval);
            recent.retain(|at| now.duration_since(*at) < window);
            // The first start counts too, as systemd counts StartLimitBurst=.
            if recent.len() + 1 >= burst as usize {
                tracing::warn!(
                    "{}: start limit reached ({burst} in {interval}s); not restarting",
                    r.id
                );
                self.streak.remove(&r.id);
                return false;
            }
        }
        let n = self.streak.get(&r.id).copied().unwrap_or(0);
        let delay = crate::spec::backoff_delay(
            t.delay_sec.unwrap_or(1),
            t.max_delay_sec.unwrap_or(u64::MAX),
            n,
        );
        self.due
            .insert(r.id.clone(), now + Duration::from_secs(delay));
        true
    }
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
    if to != HealthStatus::Unhealthy {
        return;
    }
    let acted = match spec.on_unhealthy {
        OnUnhealthy::None => return,
        OnUnhealthy::Restart => as_daemon(controller, &r).restart(id).await.map(|_| {
            let _ = index.save_health(id, &HealthState::new(Timestamp::now()));
        }),
        OnUnhealthy::Stop => as_daemon(controller, &r)
            .stop(&[id.to_string()])
            .await
            .map(drop),
    };
    match acted {
        Ok(()) => tracing::info!("{id} is unhealthy: {}", spec.on_unhealthy.as_str()),
        Err(e) => tracing::warn!(
            "{id} is unhealthy, and {} failed: {}",
            spec.on_unhealthy.as_str(),
            e.message
        ),
    }
}

/// The daemon acting on a record: on behalf of its launcher, bound by the
/// launch's policy, audited as `daemon`.
fn as_daemon(controller: &Controller, r: &Record) -> Controller {
    controller.on_behalf_of(crate::controller::Caller::daemon_for(r))
}

/// Whether the daemon, not systemd, restarts this ended record now.
fn wants_restart(r: &Record) -> bool {
    if r.restart.by != RestartBy::Daemon || r.resurrected_as.is_some() || r.paused_by.is_some() {
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

/// Starts a record again if it still wants it (it may have been stopped,
/// forgotten or started by hand meanwhile).
async fn restart_now(controller: &Controller, sup: &mut Supervisor, id: &str) {
    let current = match controller.index().load(id) {
        Ok(crate::index::Loaded::Found(r)) => *r,
        _ => return,
    };
    let mut r = current;
    crate::controller::reconcile(&mut r, None);
    if !r.state.is_ended() || !wants_restart(&r) {
        return;
    }
    let n = sup.streak.get(id).copied().unwrap_or(0);
    // A pause holds its owner: look again a delay later, so the restart
    // happens after the resume instead of being dropped.
    if let Ok(Some(held)) = controller.held_by_pause(r.owner, &r.metadata) {
        let delay = r.restart.timing.delay_sec.unwrap_or(1).max(1);
        tracing::info!("{id}: restart waits, {} holds it", held.selector);
        sup.due
            .insert(id.to_string(), Instant::now() + Duration::from_secs(delay));
        return;
    }
    match as_daemon(controller, &r).restart(id).await {
        Ok(_) => {
            sup.streak.insert(id.to_string(), n + 1);
            sup.recent
                .entry(id.to_string())
                .or_default()
                .push_back(Instant::now());
            let delay = r.restart.timing.delay_sec.unwrap_or(1);
            let e = Event::about("restarted", &r)
                .with("by", "daemon")
                .with("attempt", n + 1)
                .with(
                    "delay_sec",
                    crate::spec::backoff_delay(
                        delay,
                        r.restart.timing.max_delay_sec.unwrap_or(u64::MAX),
                        n,
                    ),
                );
            controller.record_event(e);
        }
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
