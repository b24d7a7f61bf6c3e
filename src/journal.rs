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
    /// Anything journalctl's --since accepts ("-1h", "2026-11-20 10:00", ...).
    pub since: Option<String>,
    pub follow: bool,
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
    if format == "json" {
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
    if query.follow {
        args.push("--follow".to_string());
    }
    // Matches of different fields are ANDed, of the same field ORed; "+"
    // ORs whole groups, so each group repeats the uid.
    let groups = [
        ("SYSLOG_IDENTIFIER", &query.identifiers),
        ("_SYSTEMD_USER_UNIT", &query.units),
    ];
    let groups = groups.into_iter().filter(|(_, v)| !v.is_empty());
    for (n, (field, values)) in groups.enumerate() {
        if n > 0 {
            args.push("+".to_string());
        }
        if let Some(uid) = query.uid {
            args.push(format!("_UID={uid}"));
        }
        args.extend(values.iter().map(|v| format!("{field}={v}")));
    }
    args
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
    let field = |k: &str| v.get(k).and_then(field_text);
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
    Some(LogEntry {
        time: field("__REALTIME_TIMESTAMP")
            .and_then(|t| t.parse().ok())
            .and_then(Timestamp::from_usec),
        id,
        unit: unit.or_else(|| identifier.map(|i| format!("{i}.service"))),
        pid: field("_PID").and_then(|p| p.parse().ok()),
        priority: field("PRIORITY").and_then(|p| p.parse().ok()),
        message: field("MESSAGE").unwrap_or_default(),
        cursor: field("__CURSOR"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_match_the_identifiers_of_the_caller_only() {
        let q = LogQuery {
            identifiers: vec![
                "refine-agent-abcd2345".into(),
                "refine-agent-bcde3456".into(),
            ],
            units: Vec::new(),
            uid: Some(1000),
            lines: Some(20),
            since: Some("-1h; rm -rf /".into()),
            follow: true,
        };
        let args = journalctl_args(&q, "cat");
        assert!(args.contains(&"--output=cat".to_string()));
        assert!(args.contains(&"--lines=20".to_string()));
        // Passed as one argument, never through a shell.
        assert!(args.contains(&"--since=-1h; rm -rf /".to_string()));
        assert!(args.contains(&"--follow".to_string()));
        assert!(args.contains(&"_UID=1000".to_string()));
        assert!(args.ends_with(&[
            "SYSLOG_IDENTIFIER=refine-agent-abcd2345".to_string(),
            "SYSLOG_IDENTIFIER=refine-agent-bcde3456".to_string()
        ]));
    }

    #[test]
    fn scopes_are_matched_by_unit_in_a_group_ored_with_the_identifiers() {
        let q = LogQuery {
            identifiers: vec!["refine-agent-abcd2345".into()],
            units: vec!["refine-agent-bcde3456.scope".into()],
            uid: Some(1000),
            ..Default::default()
        };
        let args = journalctl_args(&q, "cat");
        assert!(args.ends_with(&[
            "_UID=1000".to_string(),
            "SYSLOG_IDENTIFIER=refine-agent-abcd2345".to_string(),
            "+".to_string(),
            "_UID=1000".to_string(),
            "_SYSTEMD_USER_UNIT=refine-agent-bcde3456.scope".to_string(),
        ]));
        let only_scope = LogQuery {
            units: vec!["refine-agent-bcde3456.scope".into()],
            uid: Some(1000),
            ..Default::default()
        };
        let args = journalctl_args(&only_scope, "cat");
        assert!(!args.contains(&"+".to_string()));
        assert!(args.ends_with(&[
            "_UID=1000".to_string(),
            "_SYSTEMD_USER_UNIT=refine-agent-bcde3456.scope".to_string(),
        ]));
        let e = parse_entry(
            r#"{"SYSLOG_IDENTIFIER":"mytool","_SYSTEMD_USER_UNIT":"refine-agent-bcde3456.scope","MESSAGE":"m"}"#,
        )
        .unwrap();
        assert_eq!(e.id.as_deref(), Some("bcde3456"));
        assert_eq!(e.unit.as_deref(), Some("refine-agent-bcde3456.scope"));
    }

    #[test]
    fn entries_decode_strings_bytes_and_repeated_fields() {
        let e = parse_entry(
            r#"{"__REALTIME_TIMESTAMP":"1700000000123000","_PID":"42","PRIORITY":"6",
                "SYSLOG_IDENTIFIER":"refine-agent-abcd2345","MESSAGE":"hello","__CURSOR":"s=1"}"#,
        )
        .unwrap();
        assert_eq!(e.message, "hello");
        assert_eq!(e.id.as_deref(), Some("abcd2345"));
        assert_eq!(e.unit.as_deref(), Some("refine-agent-abcd2345.service"));
        assert_eq!((e.pid, e.priority), (Some(42), Some(6)));
        assert_eq!(e.time.unwrap().to_string(), "2023-11-14T22:13:20.123Z");
        let e = parse_entry(r#"{"MESSAGE":[104,105,255]}"#).unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        let e = parse_entry(r#"{"MESSAGE":["first","second"]}"#).unwrap();
        assert_eq!(e.message, "first");
        assert!(parse_entry("not json").is_none());
    }
}
