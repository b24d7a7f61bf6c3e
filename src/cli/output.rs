//! The one place that decides how results look: tables and key/value text
//! for people, JSON for programs. Untrusted text is escaped for terminals.

use std::io::Write;

use refine_proc::controller::{ActionOutcome, Adopted, Status};
use refine_proc::model::UnitKind;
use refine_proc::text::{escape, short_age, truncate};
use refine_proc::{Error, Record, Result};
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

pub fn table(records: &[Record], all: bool) -> Result<()> {
    if records.is_empty() {
        let hint = if all {
            ""
        } else {
            " (list --all shows ended ones too)"
        };
        eprintln!("no managed processes{hint}");
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["ID", "OWNER", "LABEL", "STATE", "PID", "AGE", "EXIT"]);
    for r in records {
        b.push_record([
            r.id.clone(),
            r.owner.to_string(),
            truncate(&escape(&r.label), 40),
            r.state.to_string(),
            opt(&r.pid),
            r.started_at
                .map(|t| short_age(t.elapsed()))
                .unwrap_or_else(|| "-".into()),
            exit_text(r),
        ]);
    }
    let mut t = b.build();
    t.with(Style::blank());
    print(&format!("{t}\n"))
}

pub fn started(r: &Record) -> Result<()> {
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
                o.outcome.replace('-', " "),
                o.state
            )
        })
        .collect();
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
    let l = &r.limits;
    let limits: Vec<String> = [
        l.memory_max.map(|v| format!("memory {v} bytes")),
        l.cpu_quota_percent.map(|v| format!("cpu {v}%")),
        l.tasks_max.map(|v| format!("tasks {v}")),
        l.runtime_max_sec.map(|v| format!("runtime {v}s")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !limits.is_empty() {
        lines.push(("limits".into(), limits.join(", ")));
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
        if let Some(cpu) = sd.cpu_usage_nsec {
            lines.push(("cpu time".into(), format!("{:.3}s", cpu as f64 / 1e9)));
        }
        if let Some(mem) = sd.memory_current {
            lines.push(("memory".into(), format!("{mem} bytes")));
        }
    }
    lines.push(("logs".into(), r.logs.journal.clone()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{k:>width$}: {v}\n"))
        .collect();
    print(&text)
}
