//! How one process looks to people: `status`, its health and limits,
//! and what `set` changed.

use refine_proc::controller::Status;
use refine_proc::health::{HealthSpec, HealthView};
use refine_proc::model::{Limits, OwnerLimits};
use refine_proc::text::{escape, human_size, short_age};
use refine_proc::usage::Usage;
use refine_proc::{Record, Result, State};

use super::*;

pub fn status(s: &Status) -> Result<()> {
    let r = &s.record;
    let mut lines: Vec<(String, String)> = vec![
        ("id".into(), r.id.clone()),
        ("unit".into(), r.unit.clone()),
        ("owner".into(), r.owner.to_string()),
        ("label".into(), escape(&r.label)),
        ("state".into(), r.state.to_string()),
        ("pid".into(), opt(&r.pid)),
        ("command".into(), escape(&format!("{:?}", r.command))),
        ("cwd".into(), opt(&r.cwd)),
        ("started".into(), opt(&r.started_at)),
        ("ended".into(), opt(&r.ended_at)),
        ("result".into(), opt(&r.result)),
        ("exit".into(), exit_text(r)),
        (
            "restart".into(),
            format!(
                "{} (restarted {} times)",
                r.restart.policy.as_str(),
                r.restart.count
            ),
        ),
    ];
    let by = &r.requested_by;
    lines.push((
        "requested by".into(),
        match (&by.parent, by.acting_owner) {
            (Some(p), Some(o)) => format!("{o} process {p} (uid {})", by.uid),
            (Some(p), None) => format!("managed process {p} (uid {})", by.uid),
            _ => format!("a person (uid {})", by.uid),
        },
    ));
    if let Some(d) = &r.details {
        lines.insert(4, ("details".into(), escape(d)));
    }
    if r.kind == UnitKind::Scope {
        lines.retain(|(k, _)| k != "restart" && k != "exit" && k != "result");
        lines.push((
            "kind".into(),
            "adopted (a scope: no exit status, cannot be restarted)".into(),
        ));
    }
    let m = &r.metadata;
    for (k, v) in [
        ("workflow", &m.workflow),
        ("gap", &m.gap),
        ("session", &m.session),
        ("mode", &m.mode),
        ("runner", &m.runner),
    ] {
        if v.is_some() {
            lines.push((k.into(), opt(v)));
        }
    }
    for (k, v) in &m.extra {
        lines.push((format!("meta {}", escape(k)), escape(v)));
    }
    let limits = limits_text(&r.limits);
    if !limits.is_empty() {
        lines.push(("limits".into(), limits));
    }
    if let Some(sd) = &s.systemd {
        let restarts = match r.kind {
            UnitKind::Scope => String::new(),
            UnitKind::Service => format!(", {} restarts", sd.n_restarts),
        };
        lines.push((
            "systemd".into(),
            format!(
                "{} ({}){restarts}",
                sd.state.active_state, sd.state.sub_state
            ),
        ));
    }
    if let Some(u) = &s.usage {
        lines.extend(usage_lines(u));
    }
    if let Some(h) = &s.health {
        lines.push(("health".into(), health_text(h, r.state)));
        lines.push(("health check".into(), health_check_text(&h.spec)));
    }
    lines.push(("logs".into(), r.logs.journal.clone()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{k:>width$}: {v}\n"))
        .collect();
    print(&text)
}

/// Where a process's health stands, for people: "healthy since 5m ago;
/// last ok 2s ago in 12ms: HTTP/1.1 200 OK".
fn health_text(h: &HealthView, state: State) -> String {
    let Some(st) = &h.state else {
        return if state.is_ended() {
            "- (never probed; the process is not running)".into()
        } else if state == State::Running {
            "starting (not probed yet: the refine-proc daemon probes it)".into()
        } else {
            format!("- (not probed while {state})")
        };
    };
    let mut text = format!("{} since {} ago", st.status, short_age(st.since.elapsed()));
    if st.failures > 0 {
        text.push_str(&format!(
            " ({} of {} failures in a row)",
            st.failures.min(h.spec.retries),
            h.spec.retries
        ));
    }
    if let Some(last) = &st.last {
        // For a failure the last line says why; for a success the first
        // (an HTTP status line) says most.
        let mut lines = last.output.lines().filter(|l| !l.trim().is_empty());
        let line = if last.ok {
            lines.next()
        } else {
            lines.next_back()
        };
        text.push_str(&format!(
            "; last {} {} ago in {}ms",
            if last.ok { "ok" } else { "failed" },
            short_age(last.at.elapsed()),
            last.duration_ms
        ));
        if let Some(code) = last.exit_code.filter(|c| *c != 0) {
            text.push_str(&format!(" (exit {code})"));
        }
        if let Some(line) = line {
            text.push_str(&format!(": {}", truncate(&escape(line.trim()), 100)));
        }
    }
    match state {
        State::Paused => text.push_str(" (probes wait while it is paused)"),
        s if s.is_ended() => text.push_str(" (last known; the process is not running)"),
        _ => {}
    }
    text
}

/// The check and its timing: "http GET http://x/health, every 10s, ...".
fn health_check_text(spec: &HealthSpec) -> String {
    format!(
        "{}, every {}s, timeout {}s, unhealthy after {} failures, start period {}s, on unhealthy: {}",
        truncate(&spec.check.to_string(), 120),
        spec.interval_sec,
        spec.timeout_sec,
        spec.retries,
        spec.start_period_sec,
        spec.on_unhealthy
    )
}

/// The limits that are set, for people: "memory max 2.0G, cpu 150%".
pub(super) fn limits_text(l: &Limits) -> String {
    [
        l.memory_max
            .map(|v| format!("memory max {}", human_size(v))),
        l.memory_high
            .map(|v| format!("memory high {}", human_size(v))),
        l.cpu_quota_percent.map(|v| format!("cpu quota {v}%")),
        l.cpu_weight.map(|v| format!("cpu weight {v}")),
        l.tasks_max.map(|v| format!("tasks max {v}")),
        l.runtime_max_sec.map(|v| format!("runtime max {v}s")),
        l.timeout_stop_sec.map(|v| format!("stop timeout {v}s")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// Usage lines of `status`: values, or why there are none.
fn usage_lines(u: &Usage) -> Vec<(String, String)> {
    let why = |key: &str| {
        u.unavailable
            .get(key)
            .map(|w| format!("unavailable: {}", escape(w)))
            .unwrap_or_else(|| "-".into())
    };
    let cpu = u
        .cpu_usec
        .map(|v| format!("{:.3}s", v as f64 / 1e6))
        .unwrap_or_else(|| why("cpu"));
    let memory = match (u.memory_current, u.memory_peak) {
        (Some(now), Some(peak)) => format!("{} (peak {})", human_size(now), human_size(peak)),
        (Some(now), None) => format!("{} (peak {})", human_size(now), why("memory_peak")),
        _ => why("memory"),
    };
    let tasks = u
        .tasks
        .map(|v| v.to_string())
        .unwrap_or_else(|| why("pids"));
    vec![
        ("cpu time".into(), cpu),
        ("memory".into(), memory),
        ("tasks".into(), tasks),
    ]
}

/// What `set ID` prints.
pub fn limits_set(r: &Record) -> Result<()> {
    let limits = limits_text(&r.limits);
    print(&format!(
        "{} {}: limits now {}\n",
        r.id,
        r.unit,
        if limits.is_empty() { "none" } else { &limits }
    ))
}

/// What `set --owner` prints.
pub fn owner_limits(o: &OwnerLimits) -> Result<()> {
    let limits = limits_text(&o.limits);
    print(&format!(
        "owner {} ({}): limits now {}\n",
        o.owner,
        o.slice,
        if limits.is_empty() { "none" } else { &limits }
    ))
}
