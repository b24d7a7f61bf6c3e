//! The one place that decides how results look: tables and key/value text
//! for people, JSON for programs. Untrusted text is escaped for terminals.

use std::io::Write;

use std::collections::HashSet;

use refine_proc::controller::{ActionOutcome, Adopted, Listed};
use refine_proc::model::UnitKind;
use refine_proc::pauses::Pauses;
use refine_proc::text::{escape, human_size, short_age, truncate};
use refine_proc::{Error, Owner, Record, Result, State};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

mod status;
pub use status::*;

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

/// The list; with `unprobed`, health states are marked as not probed
/// (no daemon runs).
pub fn table(listed: &[Listed], all: bool, tree: bool, unprobed: bool) -> Result<()> {
    if listed.is_empty() {
        let hint = if all {
            ""
        } else {
            " (list --all shows ended ones too)"
        };
        eprintln!("no managed processes{hint}");
        return Ok(());
    }
    let rows: Vec<(String, &Listed)> = if tree {
        tree_order(listed)
    } else {
        listed.iter().map(|l| (String::new(), l)).collect()
    };
    let mut b = Builder::default();
    b.push_record([
        "ID", "OWNER", "LABEL", "STATE", "HEALTH", "PID", "AGE", "CPU", "MEM", "RESTARTS", "EXIT",
    ]);
    for (
        branch,
        Listed {
            record: r,
            usage,
            health_status,
        },
    ) in rows
    {
        let usage = usage.as_ref();
        b.push_record([
            r.id.clone(),
            r.owner.to_string(),
            format!("{branch}{}", truncate(&escape(&r.label), 40)),
            r.state.to_string(),
            match health_status {
                Some(h) if unprobed => format!("{h} (no daemon)"),
                h => opt(h),
            },
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
            r.restart.count.to_string(),
            exit_text(r),
        ]);
    }
    let mut t = b.build();
    t.with(Style::blank());
    print(&format!("{t}\n"))
}

/// Rows in tree order, each with the branch drawn before its label
/// (`├─ `, `└─ ` for the last child, `│  ` under a parent with more
/// children below): each process under the one that launched it (a parent
/// not in the list makes its children roots).
fn tree_order(listed: &[Listed]) -> Vec<(String, &Listed)> {
    let shown: HashSet<&str> = listed.iter().map(|l| l.record.id.as_str()).collect();
    fn parent_of<'a>(r: &'a Record, shown: &HashSet<&str>) -> Option<&'a str> {
        r.requested_by
            .parent
            .as_deref()
            .filter(|p| shown.contains(p) && *p != r.id)
    }
    let children = |id: &str| -> Vec<&Listed> {
        listed
            .iter()
            .filter(|c| parent_of(&c.record, &shown) == Some(id))
            .collect()
    };
    let mut out = Vec::with_capacity(listed.len());
    // (listed, the indent its children get, its own branch, depth)
    let mut stack: Vec<(&Listed, String, String, usize)> = listed
        .iter()
        .filter(|l| parent_of(&l.record, &shown).is_none())
        .rev()
        .map(|l| (l, String::new(), String::new(), 0))
        .collect();
    while let Some((l, indent, branch, depth)) = stack.pop() {
        out.push((branch, l));
        if depth >= 64 {
            continue;
        }
        let kids = children(&l.record.id);
        let last = kids.len().saturating_sub(1);
        for (n, c) in kids.into_iter().enumerate().rev() {
            let (mark, more) = if n == last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            stack.push((
                c,
                format!("{indent}{more}"),
                format!("{indent}{mark}"),
                depth + 1,
            ));
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
    // Shown only where set, so the lines of unconfined actors stay as they were.
    let mut extra = String::new();
    if r.confine {
        let writable = match r.writable.as_slice() {
            [] => "nothing in the home directory".to_string(),
            w => w.join(", "),
        };
        extra.push_str(&format!("; confined, writable {writable}"));
    }
    if r.env.is_some() {
        extra.push_str(&format!("; env {}", list(&r.env)));
    }
    if r.bounded() {
        extra.push_str("; start-up variables (LD_PRELOAD, BASH_ENV, ...) refused");
    }
    format!(
        "  {}: launch as {}; commands {}; act on {}; default limits {}; max limits {}{extra} ({})\n",
        r.actor,
        list(&owners),
        list(&r.commands),
        // As the policy file spells it: descendants, same-owner, all.
        serde_json::to_value(r.act_on)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
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
            "queued {} ({}): {} holds it; it starts when that pause is lifted\n  pauses: refine-proc pause --list\n  drop:   refine-proc stop {}\n",
            r.id,
            escape(&r.label),
            r.paused_by.as_deref().unwrap_or("a pause"),
            r.id,
        ));
    }
    if r.state.is_ended() {
        // systemd ran it (Type=exec: the execve succeeded), and it has
        // already ended: say so, not "started".
        return print(&format!(
            "started {} ({}) as {}, and it has already ended: {}, result {}, exit {}\n  logs:   refine-proc logs {}\n  status: refine-proc status {}\n",
            r.id,
            escape(&r.label),
            r.unit,
            r.state,
            opt(&r.result),
            exit_text(r),
            r.id,
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

pub fn doctor(report: &refine_proc::doctor::Report) -> Result<()> {
    use refine_proc::doctor::CheckStatus;
    // Not a table: details are long, and a fix goes on a line of its own.
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let s = &report.situation;
    let mut text = format!("situation: {}: {}\n\n", s.kind, escape(&s.summary));
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

/// How an answer reads for people, where its response alone does not say.
#[derive(Clone, Copy, Debug, Default)]
pub enum View {
    /// As the response is (a run's record: it started).
    #[default]
    Plain,
    /// A run's record once it has ended (`run --wait`).
    Finished,
    /// A record whose limits `set` changed.
    LimitsSet,
    /// The table of `list`.
    Table {
        all: bool,
        tree: bool,
        unprobed: bool,
    },
}

/// The one way an answer of the core reaches the terminal: its warnings
/// on stderr, then its response on stdout, as JSON (`--json`: the
/// contract) or as text for people.
pub fn answer(answer: &refine_proc::controller::Answer, as_json: bool, view: View) -> Result<()> {
    use refine_proc::controller::Response as R;
    warnings(&answer.warnings);
    if as_json {
        return match &answer.response {
            // `adopt --json` is the record; `events --json` JSON Lines.
            R::Adopted(a) => json(&a.record),
            R::Events(page) => json_lines(&page.events),
            other => json(other),
        };
    }
    match &answer.response {
        R::Record(r) => match view {
            View::Finished => finished(r),
            View::LimitsSet => limits_set(r),
            _ => started(r),
        },
        R::Adopted(a) => adopted(a),
        R::Listed(listed) => match view {
            View::Table {
                all,
                tree,
                unprobed,
            } => table(listed, all, tree, unprobed),
            _ => table(listed, false, false, false),
        },
        R::Status(s) => status(s),
        R::Outcomes(o) => outcomes(o),
        R::OwnerLimits(o) => owner_limits(o),
        R::Pauses(p) => pauses(p),
        R::Events(page) => events(&page.events),
        R::Recovery(r) => recovery(r),
        R::Resurrections(done) => resurrections(done),
        R::Policy(p) => policy_overview(&p.overview, &p.text),
        R::Verdict(v) => policy_verdict(v),
        R::Doctor(report) => doctor(report),
        // Its lines are streamed by `logs`, never printed as an answer.
        R::LogSources(_) => Ok(()),
    }
}
