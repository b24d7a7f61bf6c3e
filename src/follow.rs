//! `events --follow`: the history, then live transitions as they happen,
//! without polling. Starts, restarts and ends of runs come from systemd's
//! PropertiesChanged signals, so they are seen however they happen (also
//! `systemctl --user stop`, or Restart= doing its work); everything else
//! (pauses, refusals, kills, limit changes, queued runs, forgets, lost
//! records) from `events.jsonl`, woken by inotify. Each kind has one
//! source, so nothing is printed twice. systemd 252 signals no change of
//! FreezerState (systemd issue #31115), so pauses come from refine-proc's
//! own record of them.

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::events::{Event, EventTail};
use crate::index::Loaded;
use crate::model::{parse_unit_name, Record};
use crate::systemd::UnitChange;

/// Event kinds that systemd's signals report live; their lines in the
/// history file are not repeated while following.
const FROM_SIGNALS: [&str; 5] = ["started", "exited", "failed", "stopped", "ended"];

/// Whether systemd's signals report this event live, so its line in the
/// history file is not repeated. `restarted` is live only when systemd
/// restarted the unit by itself (the daemon records those with actor
/// `systemd`); a `refine-proc restart` or a daemon restart is an action,
/// reported from the file.
fn from_signals(e: &Event) -> bool {
    e.id.is_some()
        && (FROM_SIGNALS.contains(&e.event.as_str())
            || e.event == "restarted" && e.actor.as_deref() == Some("systemd"))
}

/// What is known of a unit's state, to turn signals into transitions.
#[derive(Clone, Debug, Default)]
struct Seen {
    active: String,
    sub: String,
    /// A start of the current run has been reported, its end not yet.
    in_run: bool,
}

/// Emits the last `last` events of the history (all when None) that
/// `keep` accepts, calls `ready` once live events are being watched, then
/// emits every new one as it happens, until `emit` fails (e.g. the reader
/// went away) or the connection to systemd ends.
pub async fn follow(
    controller: &Controller,
    last: Option<usize>,
    keep: impl Fn(&Event) -> bool,
    ready: impl FnOnce(),
    mut emit: impl FnMut(&Event) -> Result<()>,
) -> Result<()> {
    let systemd = controller.systemd().await?;
    let index = controller.index();
    // Both watches exist before the history is read: nothing falls between.
    let mut changes = systemd.unit_state_changes("refine-").await?;
    let mut wakeups = crate::dirwatch::DirWatch::new(index.dir(), true)
        .map_err(|e| io("watch the state directory", e))?;
    let mut tail = EventTail::new(index.dir().join("events.jsonl"));
    let (older, _) = rotated_history(controller)?;
    let (current, _) = tail.read_new().map_err(|e| io("read events.jsonl", e))?;
    let mut history: Vec<Event> = older.into_iter().chain(current).filter(&keep).collect();
    // In time order, as `events` shows it (a start is dated when it was
    // asked for, but written after systemd's reply).
    history.sort_by_key(|e| e.time);
    if let Some(n) = last {
        history.drain(..history.len().saturating_sub(n));
    }
    for e in &history {
        emit(e)?;
    }
    ready();
    let mut tracker = Tracker::new(controller).await?;
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else {
                    return Err(Error::systemd("the connection to systemd ended while following events"));
                };
                let Some((_, events)) = tracker.on_change(controller, &change) else {
                    continue; // another index's unit, or not refine-proc's
                };
                for e in events {
                    if keep(&e) {
                        emit(&e)?;
                    }
                }
            }
            woke = wakeups.next() => {
                if woke.is_none() {
                    return Err(Error::index("the watch on the state directory ended"));
                }
                let (events, _) = tail.read_new().map_err(|e| io("read events.jsonl", e))?;
                for e in events {
                    if !from_signals(&e) && keep(&e) {
                        emit(&e)?;
                    }
                }
            }
        }
    }
}

/// Turns systemd's unit signals into lifecycle events, remembering where
/// each unit of the index stands.
pub(crate) struct Tracker {
    seen: HashMap<String, Seen>,
}

impl Tracker {
    /// Where each loaded unit stands now; units that appear later start
    /// from nothing.
    pub(crate) async fn new(controller: &Controller) -> Result<Tracker> {
        let seen = controller
            .systemd()
            .await?
            .list(&["refine-*.service", "refine-*.scope"])
            .await?
            .into_iter()
            .map(|u| {
                let mut s = Seen {
                    active: u.active_state,
                    sub: u.sub_state,
                    in_run: false,
                };
                s.in_run = up(&s);
                (u.name, s)
            })
            .collect();
        Ok(Tracker { seen })
    }

    /// The record (None for a unit not of this index) and the events a
    /// change means.
    pub(crate) fn on_change(
        &mut self,
        controller: &Controller,
        change: &UnitChange,
    ) -> Option<(Record, Vec<Event>)> {
        let record = record_of(controller, &change.unit)?;
        let before = self.seen.entry(change.unit.clone()).or_default().clone();
        let mut after = apply(&before, change);
        let events = transitions(&before, &mut after, &record);
        self.seen.insert(change.unit.clone(), after);
        Some((record, events))
    }
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::index(format!("cannot {what}: {e}"))
}

/// The rotated history (`events.1.jsonl`), read whole.
fn rotated_history(controller: &Controller) -> Result<(Vec<Event>, usize)> {
    let path = controller.index().dir().join("events.1.jsonl");
    let mut tail = EventTail::new(path.clone());
    tail.read_new()
        .map_err(|e| io(&format!("read {}", path.display()), e))
}

fn record_of(controller: &Controller, unit: &str) -> Option<Record> {
    let (_, id) = parse_unit_name(unit)?;
    match controller.index().load(&id) {
        Ok(Loaded::Found(r)) if r.unit == unit => Some(*r),
        _ => None,
    }
}

fn apply(before: &Seen, change: &UnitChange) -> Seen {
    let mut after = before.clone();
    if let Some(a) = &change.active_state {
        after.active = a.clone();
    }
    if let Some(s) = &change.sub_state {
        after.sub = s.clone();
    }
    after
}

fn restarting(s: &Seen) -> bool {
    s.active == "activating" && s.sub == "auto-restart"
}

/// In a run: started (or starting), not yet ended.
fn up(s: &Seen) -> bool {
    matches!(s.active.as_str(), "active" | "reloading" | "deactivating")
        || (s.active == "activating" && !restarting(s))
}

/// The lifecycle events between two states of a unit; updates whether a
/// run is under way. systemd sends the state current when its queue is
/// flushed, so a short run may show no `active` at all (activating, then
/// failed; or only failed for a unit new to us): its start is reported
/// with its end.
fn transitions(before: &Seen, after: &mut Seen, record: &Record) -> Vec<Event> {
    let mut out = Vec::new();
    after.in_run = before.in_run;
    let down = matches!(after.active.as_str(), "inactive" | "failed") || restarting(after);
    // A new unit is first seen inactive, before its start: only a record
    // with an exit says a run went by.
    let short_run = down
        && (before.active.is_empty() || before.active == "activating")
        && record.state.is_ended();
    // systemd's own spawn failures (chdir, exec, ...): the process never ran.
    let never_ran = record.exit_code.is_some_and(|c| (200..=245).contains(&c));
    if !after.in_run && (up(after) || (short_run && !never_ran)) {
        let name = if restarting(before) {
            "restarted"
        } else {
            "started"
        };
        let mut e = Event::about(name, record).with("pid", record.pid);
        e.actor = Some(
            record
                .requested_by
                .acting_owner
                .map_or("person".to_string(), |o| o.to_string()),
        );
        out.push(e);
        after.in_run = true;
    }
    if after.in_run && down || short_run && never_ran {
        // The exit hook has run by now (ExecStopPost ends before the unit
        // is inactive): the record has the exit.
        let name = if record.state.is_ended() {
            record.state.as_str()
        } else {
            "ended"
        };
        let mut e = Event::about(name, record)
            .with("exit_code", record.exit_code)
            .with("exit_signal", &record.exit_signal)
            .with("result", &record.result);
        e.actor = Some("systemd".into());
        out.push(e);
        after.in_run = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(active: &str, sub: &str, in_run: bool) -> Seen {
        Seen {
            active: active.into(),
            sub: sub.into(),
            in_run,
        }
    }

    /// The events from `before` to the state `(active, sub)`, for a record
    /// with this exit code (none: still starting).
    fn names(before: Seen, active: &str, sub: &str, code: i32) -> (Vec<String>, bool) {
        let r: Record = serde_json::from_str(&if code < 0 {
            r#"{"id":"k3x9p2qa","unit":"refine-agent-k3x9p2qa.service","owner":"agent","state":"starting"}"#.to_string()
        } else {
            format!(r#"{{"id":"k3x9p2qa","unit":"refine-agent-k3x9p2qa.service","owner":"agent","state":"failed","exit_code":{code}}}"#)
        })
        .unwrap();
        let mut after = seen(active, sub, false);
        let events = transitions(&before, &mut after, &r);
        (events.into_iter().map(|e| e.event).collect(), after.in_run)
    }

    #[test]
    fn signals_become_lifecycle_events_once() {
        let new = Seen::default();
        let running = seen("active", "running", true);
        assert_eq!(
            names(new.clone(), "active", "running", 3),
            (vec!["started".into()], true)
        );
        assert_eq!(
            names(running.clone(), "active", "running", 3),
            (vec![], true),
            "no change"
        );
        assert_eq!(
            names(running.clone(), "deactivating", "stop-post", 3),
            (vec![], true),
            "still ending"
        );
        assert_eq!(
            names(
                seen("deactivating", "stop-post", true),
                "failed",
                "failed",
                3
            ),
            (vec!["failed".into()], false)
        );
        assert_eq!(
            names(seen("failed", "failed", false), "inactive", "dead", 3),
            (vec![], false)
        );
        // Restart=on-failure: an end, then a restart.
        assert_eq!(
            names(running, "activating", "auto-restart", 3),
            (vec!["failed".into()], false)
        );
        assert_eq!(
            names(
                seen("activating", "auto-restart", false),
                "active",
                "running",
                3
            ),
            (vec!["restarted".into()], true)
        );
        // A short run whose `active` was never signalled: start and end.
        assert_eq!(
            names(seen("activating", "start", false), "failed", "failed", 3),
            (vec!["started".into(), "failed".into()], false)
        );
        assert_eq!(
            names(new, "failed", "failed", 3),
            (vec!["started".into(), "failed".into()], false)
        );
        // A new unit before its start.
        assert_eq!(
            names(Seen::default(), "inactive", "dead", -1),
            (vec![], false)
        );
        // A spawn failure: it never ran.
        assert_eq!(
            names(seen("activating", "start", false), "failed", "failed", 203),
            (vec!["failed".into()], false)
        );
    }
}
