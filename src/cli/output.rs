//! The one place that decides how results look: tables and key/value text
//! for people, JSON for programs. Untrusted text is escaped for terminals.

use std::io::Write;

use std::collections::HashSet;

use refine_proc::controller::{ActionOutcome, Adopted, Listed, Status};
use refine_proc::health::{HealthSpec, HealthView};
use refine_proc::model::{Limits, OwnerLimits, UnitKind};
use refine_proc::pauses::Pauses;
use refine_proc::text::{escape, human_size, short_age, truncate};
use refine_proc::usage::Usage;
use refine_proc::{Error, Owner, Record, Result, State};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

/// A closed stdout (`| head`) is not an error; other write errors are.
pub fn io_result(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::new(
            refine_proc::ErrorKind::Systemd,
            format!("cannot write output: {e}"),
        )),
        Ok(()) => Ok(()),
    }
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    io_result(out.write_all(text.as_bytes()).and_then(|_| out.flush()))
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("serializable output");
    text.push('\n');
    print(&text)
}

/// One JSON object a line, for streams and histories.
pub fn json_lines<T: Serialize>(items: &[T]) -> Result<()> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).expect("serializable output"));
        text.push('\n');
    }
    print(&text)
}

fn event_fields(e: &refine_proc::events::Event) -> [String; 6] {
    let details: Vec<String> = e
        .details
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect();
    [
        e.time.to_string(),
        e.event.clone(),
        opt(&e.id),
        opt(&e.owner),
        opt(&e.actor),
        truncate(&escape(&details.join(" ")), 80),
    ]
}

/// One event as a line, for `events --follow` (no table to align).
pub fn event_line(e: &refine_proc::events::Event) -> Result<()> {
    let [time, event, id, owner, actor, details] = event_fields(e);
    print(&format!(
        "{time}  {event:<14} {id:<8}  {owner:<11} {actor:<8} {details}\n"
    ))
}

pub fn events(events: &[refine_proc::events::Event]) -> Result<()> {
    if events.is_empty() {
        eprintln!("no events");
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["TIME", "EVENT", "ID", "OWNER", "ACTOR", "DETAILS"]);
    for e in events {
        b.push_record(event_fields(e));
    }
    let mut t = b.build();
    t.with(Style::blank());
    print(&format!("{t}\n"))
}

pub fn recovery(r: &refine_proc::controller::Recovery) -> Result<()> {
    let mut text = String::new();
    if !r.journal {
        text.push_str(
            "warning: the journal could not be read: ended runs cannot be recovered \
             (see journalctl --user)\n",
        );
    }
    if r.rebuilt.is_empty() {
        text.push_str("rebuilt no records\n");
    } else {
        text.push_str(&format!("rebuilt {} records:\n", r.rebuilt.len()));
        let mut b = Builder::default();
        b.push_record(["ID", "OWNER", "LABEL", "STATE", "EXIT", "FROM"]);
        for rec in &r.rebuilt {
            b.push_record([
                rec.id.clone(),
                rec.owner.to_string(),
                truncate(&escape(&rec.label), 30),
                rec.state.to_string(),
                exit_text(rec),
                opt(&rec.recovered_from),
            ]);
        }
        let mut t = b.build();
        t.with(Style::blank());
        text.push_str(&format!("{t}\n"));
    }
    for n in &r.not_rebuilt {
        text.push_str(&format!(
            "not rebuilt: {} ({}): {}\n",
            n.id,
            n.unit,
            escape(&n.reason)
        ));
    }
    if r.intact > 0 {
        text.push_str(&format!(
            "{} records were intact and left as they are\n",
            r.intact
        ));
    }
    print(&text)
}

pub fn warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("refine-proc: warning: {}", escape(w));
    }
}

fn exit_text(r: &Record) -> String {
    match (r.exit_code, &r.exit_signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("SIG{s}"),
        _ => "-".into(),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| escape(&v.to_string()))
        .unwrap_or_else(|| "-".into())
}

/// CPU time for a table cell: 0.4s, 12.3s, 5m, 2.1h.
fn cpu_text(usec: u64) -> String {
    let secs = usec as f64 / 1e6;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m", (secs / 60.0) as u64)
    } else {
        format!("{:.1}h", secs / 3600.0)
    }
}

pub fn table(listed: &[Listed], all: bool, tree: bool) -> Result<()> {
    if listed.is_empty() {
        let hint = if all {
            ""
        } else {
            " (list --all shows ended ones too)"
        };
        eprintln!("no managed processes{hint}");
        return Ok(());
    }
    let rows: Vec<(usize, &Listed)> = if tree {
        tree_order(listed)
    } else {
        listed.iter().map(|l| (0, l)).collect()
    };
    let mut b = Builder::default();
    b.push_record([
        "ID", "OWNER", "LABEL", "STATE", "HEALTH", "PID", "AGE", "CPU", "MEM", "EXIT",
    ]);
    for (
        depth,
        Listed {
            record: r,
            usage,
            health_status,
        },
    ) in rows
    {
        let usage = usage.as_ref();
        let branch = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(depth - 1))
        };
        b.push_record([
            r.id.clone(),
            r.owner.to_string(),
            format!("{branch}{}", truncate(&escape(&r.label), 40)),
            r.state.to_string(),
            opt(health_status),
            opt(&r.pid),
            r.started_at
                .map(|t| short_age(t.elapsed()))
                .unwrap_or_else(|| "-".into()),
            usage
                .and_then(|u| u.cpu_usec)
                .map(cpu_text)
                .unwrap_or_else(|| "-".into()),
            usage
                .and_then(|u| u.memory_current)
                .map(human_size)
                .unwrap_or_else(|| "-".into()),
            exit_text(r),
        ]);
    }
    let mut t = b.build();
    t.with(Style::blank());
    print(&format!("{t}\n"))
}

/// Rows in tree order with their depth: each process under the one that
/// launched it (a parent not in the list makes its children roots).
fn tree_order(listed: &[Listed]) -> Vec<(usize, &Listed)> {
    let shown: HashSet<&str> = listed.iter().map(|l| l.record.id.as_str()).collect();
    fn parent_of<'a>(r: &'a Record, shown: &HashSet<&str>) -> Option<&'a str> {
        r.requested_by
            .parent
            .as_deref()
            .filter(|p| shown.contains(p) && *p != r.id)
    }
    let mut out = Vec::with_capacity(listed.len());
    let mut stack: Vec<(usize, &Listed)> = listed
        .iter()
        .filter(|l| parent_of(&l.record, &shown).is_none())
        .rev()
        .map(|l| (0, l))
        .collect();
    while let Some((depth, l)) = stack.pop() {
        out.push((depth, l));
        if depth < 64 {
            stack.extend(
                listed
                    .iter()
                    .filter(|c| parent_of(&c.record, &shown) == Some(l.record.id.as_str()))
                    .rev()
                    .map(|c| (depth + 1, c)),
            );
        }
    }
    out
}

pub fn policy_overview(o: &refine_proc::policy::Overview, text: &str) -> Result<()> {
    let mut out = if o.from_file {
        format!("policy file: {}\n\n{}\n", o.path.display(), text.trim_end())
    } else {
        format!(
            "no policy file at {} (built-in defaults: a person may do everything; a managed process may act on its own descendants only)\n",
            o.path.display()
        )
    };
    out.push_str("\neffective rules:\n");
    for r in &o.actors {
        out.push_str(&rules_text(r));
    }
    let p = &o.pause_all;
    let owners = |v: &[Owner]| match v {
        [] => "none".to_string(),
        v => v.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "),
    };
    out.push_str(&format!(
        "\npause --all: freezes {}; stops (and starts again on resume) {}; keeps running {} ({})\n",
        owners(&p.freeze),
        owners(&p.stop),
        owners(&p.keep_running),
        p.source
    ));
    print(&out)
}

fn rules_text(r: &refine_proc::policy::Rules) -> String {
    let list = |v: &Option<Vec<String>>| match v {
        Some(v) if v.is_empty() => "nothing".to_string(),
        Some(v) => v.join(", "),
        None => "any".to_string(),
    };
    let owners = r
        .launch_as
        .as_ref()
        .map(|o| o.iter().map(|o| o.to_string()).collect::<Vec<_>>());
    // Every limit a policy can give, as `status` shows them.
    let limits = |l: &refine_proc::model::Limits| match limits_text(l) {
        t if t.is_empty() => "none".to_string(),
        t => t,
    };
    format!(
        "  {}: launch as {}; commands {}; act on {:?}; default limits {}; max limits {} ({})\n",
        r.actor,
        list(&owners),
        list(&r.commands),
        r.act_on,
        limits(&r.default_limits),
        limits(&r.max_limits),
        r.source
    )
}

pub fn policy_verdict(v: &refine_proc::policy::Verdict) -> Result<()> {
    let mut out = rules_text(&v.rules).trim_start().to_string();
    if let Some(l) = &v.launch {
        if l.allowed {
            out.push_str(&format!(
                "allowed: {} may run {} as {}\n",
                v.rules.actor,
                escape(&l.executable.display().to_string()),
                l.owner
            ));
        } else {
            out.push_str(&format!(
                "refused: {}\n  {}\n",
                l.refusal.as_deref().unwrap_or("-"),
                l.rule.as_deref().unwrap_or("")
            ));
        }
    }
    print(&out)
}

pub fn started(r: &Record) -> Result<()> {
    if r.state == State::Queued {
        return print(&format!(
            "queued {} ({}): {} holds it; it starts when that pause is lifted\n  pauses: refine-proc pause --list\n  drop:   refine-proc forget {}\n",
            r.id,
            escape(&r.label),
            r.paused_by.as_deref().unwrap_or("a pause"),
            r.id,
        ));
    }
    if r.state == State::Starting && r.ready.is_some() {
        return print(&format!(
            "started {} ({}) as {}{}; not ready yet (it says READY=1 when it is)\n  status: refine-proc status {}\n  logs:   refine-proc logs -f {}\n",
            r.id,
            escape(&r.label),
            r.unit,
            r.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
            r.id,
            r.id,
        ));
    }
    if r.state == State::Paused {
        return print(&format!(
            "started {} ({}) as {}, and paused at once: {} was paused meanwhile\n  resume: refine-proc resume {}\n",
            r.id,
            escape(&r.label),
            r.unit,
            r.paused_by.as_deref().unwrap_or("a pause"),
            r.id,
        ));
    }
    print(&format!(
        "started {} ({}) as {}{}\n  status: refine-proc status {}\n  logs:   refine-proc logs -f {}\n  stop:   refine-proc stop {}\n",
        r.id,
        escape(&r.label),
        r.unit,
        r.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
        r.id,
        r.id,
        r.id,
    ))
}

pub fn adopted(a: &Adopted) -> Result<()> {
    let r = &a.record;
    let others = a.moved.len().saturating_sub(1);
    let children = match others {
        0 => String::new(),
        1 => " and 1 descendant".into(),
        n => format!(" and {n} descendants"),
    };
    print(&format!(
        "adopted pid {}{children} ({}) as {} ({})\n  status: refine-proc status {}\n  stop:   refine-proc stop {}\n  logs:   refine-proc logs {} (only what it sends to the journal; its output goes where it went before)\n",
        r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        escape(&r.label),
        r.unit,
        r.id,
        r.id,
        r.id,
        r.id,
    ))
}

/// The summary `run --wait` prints when the process has ended.
pub fn finished(r: &Record) -> Result<()> {
    let runtime = match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => {
            e.0.duration_since(s.0)
                .map(|d| format!(", ran {:.3}s", d.as_secs_f64()))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    eprintln!(
        "{} ({}) {}: result {}, exit {}{runtime}",
        r.id,
        escape(&r.label),
        r.state,
        opt(&r.result),
        exit_text(r)
    );
    Ok(())
}

pub fn outcomes(outcomes: &[ActionOutcome]) -> Result<()> {
    let text: String = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {}: {} (now {})\n",
                o.id,
                o.unit,
                o.outcome.as_str().replace('-', " "),
                o.state
            )
        })
        .collect();
    print(&text)
}

pub fn resurrections(done: &[refine_proc::controller::Resurrection]) -> Result<()> {
    if done.is_empty() {
        return print(
            "nothing to resurrect: no persisted process went down with the user manager\n",
        );
    }
    let text: String = done
        .iter()
        .map(|d| match (&d.record, &d.error) {
            (Some(r), _) => format!(
                "{} {} as {} ({}, {})\n",
                d.from,
                d.outcome,
                r.id,
                r.unit,
                escape(&r.label)
            ),
            (None, e) => format!(
                "{} not started again: {}\n",
                d.from,
                escape(e.as_deref().unwrap_or("unknown error"))
            ),
        })
        .collect();
    print(&text)
}

/// The group pauses in force and the queued runs.
pub fn pauses(p: &Pauses) -> Result<()> {
    if p.active.is_empty() && p.queued.is_empty() {
        return print("nothing is paused as a group\n");
    }
    let mut text = String::new();
    for g in &p.active {
        let owners = |v: &[Owner]| v.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ");
        text.push_str(&format!(
            "{} since {} by {}",
            escape(&g.selector),
            g.since,
            g.by
        ));
        if g.selector == "all" {
            text.push_str(&format!(
                " (frozen: {}; stopped: {})",
                owners(&g.frozen_owners),
                owners(&g.stopped_owners)
            ));
        }
        if !g.stopped.is_empty() {
            text.push_str(&format!(
                "; starts again on resume: {}",
                g.stopped.join(" ")
            ));
        }
        text.push('\n');
    }
    if !p.queued.is_empty() {
        text.push_str(&format!("queued: {}\n", p.queued.join(" ")));
    }
    print(&text)
}

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
fn limits_text(l: &Limits) -> String {
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

pub fn doctor(report: &refine_proc::doctor::Report) -> Result<()> {
    use refine_proc::doctor::CheckStatus;
    // Not a table: details are long, and a fix goes on a line of its own.
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for c in &report.checks {
        let status = match c.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail if c.required => "FAIL",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        };
        text.push_str(&format!(
            "{status:<4}  {:<width$}  {}\n",
            c.name,
            escape(&c.detail)
        ));
        if let Some(fix) = &c.fix {
            text.push_str(&format!(
                "{:<4}  {:<width$}  fix: {}\n",
                "",
                "",
                escape(fix)
            ));
        }
    }
    let count = |s: CheckStatus| report.checks.iter().filter(|c| c.status == s).count();
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.required && c.status == CheckStatus::Fail)
        .map(|c| c.name)
        .collect();
    text.push('\n');
    for n in &report.notes {
        text.push_str(&format!("note: {}\n", escape(n)));
    }
    if failed.is_empty() {
        text.push_str(&format!(
            "refine-proc can work here: every required check passed ({} warnings)\n",
            count(CheckStatus::Warn)
        ));
    } else {
        text.push_str(&format!(
            "refine-proc cannot work here: required check{} failed: {}\n",
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        ));
    }
    print(&text)
}
