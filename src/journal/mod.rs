//! Reading a process's output from journald through `journalctl`, the
//! stable interface: the query is built here as plain arguments (never a
//! shell line) and JSON entries are decoded into [`LogEntry`].

use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Timestamp;

/// Output formats of journalctl that `refine-proc logs --output` passes on.
pub const TEXT_FORMATS: [&str; 5] = ["cat", "short", "short-iso", "short-precise", "verbose"];

/// Which lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Syslog identifiers of services (`refine-<owner>-<id>`); lines match
    /// any of them or of `units`. The two must not both be empty.
    pub identifiers: Vec<String>,
    /// Units whose lines are found by `_SYSTEMD_USER_UNIT` (scopes: their
    /// processes carry no identifier of ours).
    pub units: Vec<String>,
    /// Only lines written by this uid (the caller's own processes).
    pub uid: Option<u32>,
    /// Show the last N lines.
    pub lines: Option<u64>,
    /// A time checked by [`parse_time`] ("-1h", "2026-11-20 10:00", ...).
    pub since: Option<String>,
    /// Only lines after this journald cursor (resuming a page or a stream).
    pub after_cursor: Option<String>,
    /// The same, for journalctl's --until.
    pub until: Option<String>,
    pub follow: bool,
}

impl LogQuery {
    /// The lines of these records' processes (services by their syslog
    /// identifier, scopes by unit), written by `uid`.
    pub fn of_records(records: &[crate::model::Record], uid: u32) -> LogQuery {
        let (scopes, services): (Vec<_>, Vec<_>) = records
            .iter()
            .partition(|r| r.kind == crate::model::UnitKind::Scope);
        LogQuery {
            identifiers: services
                .iter()
                .map(|r| r.unit.trim_end_matches(".service").to_string())
                .collect(),
            units: scopes.iter().map(|r| r.unit.clone()).collect(),
            uid: Some(uid),
            ..Default::default()
        }
    }
}

/// The uid whose lines `refine-proc logs` reads: the caller's own.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The journalctl arguments for `query`, printing in `format`
/// (a text format, or "json" for [`parse_entry`]).
pub fn journalctl_args(query: &LogQuery, format: &str) -> Vec<String> {
    let mut args = vec![
        "--no-pager".to_string(),
        "--quiet".to_string(),
        "--all".to_string(),
        format!("--output={format}"),
    ];
    if format == "json" || format == "export" {
        args.push(
            "--output-fields=MESSAGE,_PID,PRIORITY,SYSLOG_IDENTIFIER,_SYSTEMD_USER_UNIT"
                .to_string(),
        );
    }
    if let Some(n) = query.lines {
        args.push(format!("--lines={n}"));
    }
    if let Some(since) = &query.since {
        args.push(format!("--since={since}"));
    }
    if let Some(cursor) = &query.after_cursor {
        args.push(format!("--after-cursor={cursor}"));
    }
    if let Some(until) = &query.until {
        args.push(format!("--until={until}"));
    }
    if query.follow {
        args.push("--follow".to_string());
    }
    let matches = |field: &str, values: &[String]| -> Vec<String> {
        values.iter().map(|v| format!("{field}={v}")).collect()
    };
    let groups = [
        matches("SYSLOG_IDENTIFIER", &query.identifiers),
        matches("_SYSTEMD_USER_UNIT", &query.units),
    ];
    push_groups(&mut args, query.uid, groups);
    args
}

/// Appends journalctl matches that select any of `groups` (the empty ones
/// left out), each only of `uid`'s lines: matches of different fields are
/// ANDed, of the same field ORed, and "+" ORs whole groups, so each group
/// repeats the uid.
fn push_groups(
    args: &mut Vec<String>,
    uid: Option<u32>,
    groups: impl IntoIterator<Item = Vec<String>>,
) {
    let groups = groups.into_iter().filter(|g| !g.is_empty());
    for (n, group) in groups.enumerate() {
        if n > 0 {
            args.push("+".to_string());
        }
        if let Some(uid) = uid {
            args.push(format!("_UID={uid}"));
        }
        args.extend(group);
    }
}

/// Checks a journald cursor given back by a client before it becomes one
/// argument of journalctl (`--after-cursor=`): visible ASCII, bounded.
pub fn check_cursor(cursor: &str) -> crate::error::Result<()> {
    if cursor.is_empty() || cursor.len() > 1024 || !cursor.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(crate::error::Error::invalid("not a journald cursor")
            .hint("pass back a cursor the API returned"));
    }
    Ok(())
}

/// Checks a `--since`/`--until` TIME and returns it as journalctl takes
/// it, so that a typo is exit 2 with a hint, not journalctl's parse error.
/// Accepted: `now`, `today`, `yesterday`, `tomorrow`; a relative time
/// `-1h`, `+30min`, `10s ago`, `1h 30m ago`; `@EPOCH`; an absolute local
/// time `2026-11-20`, `2026-11-20 10:00[:00[.5]]` (or with `T`),
/// `10:00[:00]` (today), each optionally after a weekday and before ` UTC`.
pub fn parse_time(s: &str, flag: &str) -> crate::Result<String> {
    use crate::text::{escape, parse_duration};
    let t = s.trim();
    let bad = |why: &str| {
        crate::Error::invalid(format!("{flag} {:?}: {why}", escape(s))).hint(
            "use a relative time (-1h, -10min, '30s ago'), today, yesterday, \
             '2026-11-20 10:00' or @EPOCH",
        )
    };
    // A span in microseconds, which journalctl reads exactly.
    let span = |text: &str| {
        parse_duration(text)
            .map(|d| d.as_micros())
            .map_err(|_| bad("not a time span"))
    };
    if matches!(t, "now" | "today" | "yesterday" | "tomorrow") {
        return Ok(t.to_string());
    }
    if let Some(rest) = t.strip_prefix('-') {
        return Ok(format!("-{}us", span(rest)?));
    }
    if let Some(rest) = t.strip_prefix('+') {
        return Ok(format!("+{}us", span(rest)?));
    }
    if let Some(rest) = t.strip_suffix(" ago") {
        return Ok(format!("-{}us", span(rest)?));
    }
    if let Some(epoch) = t.strip_prefix('@') {
        let (whole, frac) = epoch.split_once('.').unwrap_or((epoch, "0"));
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        return if digits(whole) && digits(frac) {
            Ok(t.to_string())
        } else {
            Err(bad("@ needs seconds since the epoch, e.g. @1700000000"))
        };
    }
    if let Some(absolute) = absolute_time(t) {
        return Ok(absolute);
    }
    if parse_duration(t).is_ok() {
        return Err(crate::Error::invalid(format!(
            "{flag} {:?} is a time span, not a time",
            escape(s)
        ))
        .hint(format!(
            "for {t} before now, write {flag} -{t} or {flag} '{t} ago'"
        )));
    }
    Err(bad("not a time"))
}

/// The moment a TIME of [`parse_time`] names, for filters refine-proc
/// applies itself (`events --since`): local time unless ` UTC` is given,
/// as journalctl reads it.
pub fn time_point(s: &str, flag: &str) -> crate::Result<std::time::SystemTime> {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let t = parse_time(s, flag)?;
    let now = SystemTime::now();
    let us = |n: &str| Duration::from_micros(n.trim_end_matches("us").parse().unwrap_or(0));
    if let Some(n) = t.strip_prefix('-') {
        return Ok(now.checked_sub(us(n)).unwrap_or(UNIX_EPOCH));
    }
    if let Some(n) = t.strip_prefix('+') {
        return Ok(now + us(n));
    }
    if let Some(epoch) = t.strip_prefix('@') {
        let secs: f64 = epoch.parse().unwrap_or(0.0);
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if t == "now" {
        return Ok(now);
    }
    let (t, utc) = match t.strip_suffix(" UTC") {
        Some(rest) => (rest, true),
        None => (t.as_str(), false),
    };
    // The weekday only checks, in journalctl; here it is left out.
    let t = t
        .split_once(' ')
        .filter(|(d, _)| d.chars().all(|c| c.is_ascii_alphabetic()))
        .map_or(t, |(_, rest)| rest);
    let today = civil_now(utc);
    let (date, time) = match t {
        "today" => (today, (0, 0, 0.0)),
        "yesterday" => ((today.0, today.1, today.2 - 1), (0, 0, 0.0)),
        "tomorrow" => ((today.0, today.1, today.2 + 1), (0, 0, 0.0)),
        _ => {
            let (d, c) = match t.split_once(' ') {
                Some((d, c)) => (Some(d), Some(c)),
                None if t.contains(':') => (None, Some(t)),
                None => (Some(t), None),
            };
            let date = d.map_or(today, |d| {
                let p: Vec<i32> = d.split('-').map(|n| n.parse().unwrap_or(0)).collect();
                (p[0], p[1], p[2])
            });
            let time = c.map_or((0, 0, 0.0), |c| {
                let p: Vec<&str> = c.split(':').collect();
                (
                    p[0].parse().unwrap_or(0),
                    p[1].parse().unwrap_or(0),
                    p.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0),
                )
            });
            (date, time)
        }
    };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = date.0 - 1900;
    tm.tm_mon = date.1 - 1;
    tm.tm_mday = date.2;
    tm.tm_hour = time.0;
    tm.tm_min = time.1;
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, initialized struct; mktime/timegm normalize
    // out-of-range days (yesterday on the 1st) as journalctl does.
    let secs = unsafe {
        if utc {
            libc::timegm(&mut tm)
        } else {
            libc::mktime(&mut tm)
        }
    };
    let at = UNIX_EPOCH + Duration::from_secs_f64(secs.max(0) as f64 + time.2);
    Ok(at)
}

/// Today's (year, month, day), local or UTC.
fn civil_now(utc: bool) -> (i32, i32, i32) {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    unsafe {
        if utc {
            libc::gmtime_r(&now, &mut tm);
        } else {
            libc::localtime_r(&now, &mut tm);
        }
    }
    (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday)
}

/// `[WEEKDAY ]DATE[ |T]TIME[ UTC]` as journalctl's parser takes it (with
/// `T` and a `Z` made its space and ` UTC`), or None.
fn absolute_time(t: &str) -> Option<String> {
    const DAYS: [&str; 14] = [
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
        "Sat",
        "Sun",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let mut rest = t;
    let mut out = String::new();
    if let Some((day, tail)) = rest.split_once(' ') {
        if DAYS.contains(&day) {
            out.push_str(day);
            out.push(' ');
            rest = tail;
        }
    }
    let (rest, utc) = match rest.strip_suffix(" UTC").or_else(|| rest.strip_suffix('Z')) {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let num = |s: &str, len: usize, max: u32| {
        s.len() == len
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n <= max)
    };
    let date_ok = |d: &str| {
        let p: Vec<&str> = d.split('-').collect();
        p.len() == 3
            && num(p[0], 4, 9999)
            && num(p[1], 2, 12)
            && num(p[2], 2, 31)
            && p[1] != "00"
            && p[2] != "00"
    };
    let time_ok = |c: &str| {
        let (hms, frac) = c.split_once('.').unwrap_or((c, "0"));
        let p: Vec<&str> = hms.split(':').collect();
        (2..=3).contains(&p.len())
            && num(p[0], 2, 23)
            && num(p[1], 2, 59)
            && p.get(2).is_none_or(|s| num(s, 2, 60))
            && !frac.is_empty()
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    let (date, time) = match rest.split_once([' ', 'T']) {
        Some((d, c)) => (Some(d), Some(c)),
        None if rest.contains(':') => (None, Some(rest)),
        None => (Some(rest), None),
    };
    if !date.is_none_or(date_ok) || !time.is_none_or(time_ok) {
        return None;
    }
    let parts: Vec<&str> = [date, time].into_iter().flatten().collect();
    out.push_str(&parts.join(" "));
    if utc {
        out.push_str(" UTC");
    }
    Some(out)
}

/// A ready-to-spawn journalctl for `query`.
pub fn command(query: &LogQuery, format: &str) -> Command {
    let mut cmd = Command::new("journalctl");
    cmd.args(journalctl_args(query, format));
    cmd
}

/// One log line, as `refine-proc logs --json` prints it (JSON Lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub time: Option<Timestamp>,
    /// The id of the process that wrote it.
    pub id: Option<String>,
    pub unit: Option<String>,
    pub pid: Option<u32>,
    /// syslog priority: 3 error, 4 warning, 6 info, 7 debug.
    pub priority: Option<u8>,
    /// The text; bytes that are not UTF-8 are replaced (U+FFFD).
    pub message: String,
    /// journald's cursor, to resume with --after-cursor.
    pub cursor: Option<String>,
}

/// Decodes one line of `journalctl -o json`. Fields can be strings, byte
/// arrays (binary or non-UTF-8) or arrays of those (repeated fields).
pub fn parse_entry(line: &str) -> Option<LogEntry> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(entry_of(|k| v.get(k).and_then(field_text)))
}

/// Reads the next entry of `journalctl -o export` (None at the end): lines
/// `FIELD=value`, a binary field as `FIELD`, its 64-bit little-endian
/// length, the bytes and a newline; a blank line ends an entry. systemd 252
/// writes this several times faster than `-o json`.
pub fn read_export_entry(r: &mut impl std::io::BufRead) -> std::io::Result<Option<LogEntry>> {
    use std::io::Read;
    let mut fields: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            // The end: a last entry without its blank line still counts.
            return Ok((!fields.is_empty()).then(|| export_entry(&fields)));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Ok(Some(export_entry(&fields)));
        }
        match line.iter().position(|b| *b == b'=') {
            Some(eq) => {
                let name = String::from_utf8_lossy(&line[..eq]).into_owned();
                // A repeated field: keep the first value, as for JSON.
                fields
                    .entry(name)
                    .or_insert_with(|| line[eq + 1..].to_vec());
            }
            None => {
                let name = String::from_utf8_lossy(&line).into_owned();
                let mut len = [0u8; 8];
                r.read_exact(&mut len)?;
                let len = u64::from_le_bytes(len);
                let mut value = Vec::new();
                r.by_ref().take(len).read_to_end(&mut value)?;
                let mut newline = [0u8; 1];
                r.read_exact(&mut newline)?;
                fields.entry(name).or_insert(value);
            }
        }
    }
}

fn export_entry(fields: &std::collections::HashMap<String, Vec<u8>>) -> LogEntry {
    entry_of(|k| {
        fields
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The entry the journal fields that `field` returns describe.
fn entry_of(field: impl Fn(&str) -> Option<String>) -> LogEntry {
    let identifier = field("SYSLOG_IDENTIFIER");
    let unit = field("_SYSTEMD_USER_UNIT");
    // The unit journald read from /proc names scopes; the identifier names
    // services even when the writer was gone before journald looked.
    let id = unit
        .as_deref()
        .and_then(crate::model::parse_unit_name)
        .or_else(|| {
            identifier
                .as_deref()
                .and_then(|i| crate::model::parse_unit_name(&format!("{i}.service")))
        })
        .map(|(_, id)| id);
    LogEntry {
        time: field("__REALTIME_TIMESTAMP")
            .and_then(|t| t.parse().ok())
            .and_then(Timestamp::from_usec),
        id,
        unit: unit.or_else(|| identifier.map(|i| format!("{i}.service"))),
        pid: field("_PID").and_then(|p| p.parse().ok()),
        priority: field("PRIORITY").and_then(|p| p.parse().ok()),
        message: field("MESSAGE").unwrap_or_default(),
        cursor: field("__CURSOR"),
    }
}

fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        // A repeated field: keep the first value.
        Value::Array(items) => items.first().and_then(field_text),
        _ => None,
    }
}

/// The syslog identifier of refine-proc's own journal entries (a start
/// requested by `run`, an exit seen by the hook): a second, append-only
/// history that survives the loss of the index.
pub const OWN_IDENTIFIER: &str = "refine-proc";

/// Sends one structured entry to journald's native socket (best effort:
/// the index stays the record; this is the history a lost index leaves).
pub fn send(fields: &[(&str, &str)]) -> std::io::Result<()> {
    let mut msg = Vec::new();
    for (key, value) in fields {
        if value.contains('\n') {
            // The native protocol's binary form: key, newline, 64-bit LE length.
            msg.extend_from_slice(key.as_bytes());
            msg.push(b'\n');
            msg.extend_from_slice(&(value.len() as u64).to_le_bytes());
            msg.extend_from_slice(value.as_bytes());
        } else {
            msg.extend_from_slice(format!("{key}={value}").as_bytes());
        }
        msg.push(b'\n');
    }
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket
        .send_to(&msg, "/run/systemd/journal/socket")
        .map(drop)
}

mod history;
pub use history::*;

#[cfg(test)]
mod tests;
