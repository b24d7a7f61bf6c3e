//! What the journal knows about units whose records may have missed it:
//! refine-proc's own entries (starts, exits, forgets), the manager's
//! messages about them, and when they last printed.

use super::*;

/// The user manager's "Main process exited" message (EXIT_CODE, EXIT_STATUS).
const MAIN_EXITED: &str = "98e322203f7a4ed290d09fe03c09fe15";
/// The user manager's "Failed with result" message (UNIT_RESULT).
const FAILED_WITH: &str = "d9b373ed55a64feb8242e02dbe79a49c";

/// An exit the journal holds for a unit whose record missed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalExit {
    /// systemd's service result (success, exit-code, signal, ...).
    pub result: String,
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub at: Option<Timestamp>,
    pub invocation: Option<String>,
}

/// What the journal tells about one unit.
#[derive(Debug, Clone, Default)]
pub struct UnitHistory {
    /// The user manager logged something about the unit (it created it).
    pub seen_by_manager: bool,
    /// refine-proc's own entry for the start (`run` writes it before it asks
    /// systemd), with the record as it was then.
    pub start: Option<Value>,
    pub start_at: Option<Timestamp>,
    /// Exits, oldest first: from the exit hook's entries, or from the
    /// manager's messages (which it logs only for failures).
    pub exits: Vec<JournalExit>,
    /// When the process last wrote a line (its SYSLOG_IDENTIFIER).
    pub last_output_at: Option<Timestamp>,
    /// The names of the `--env` variables of the start (their values are
    /// kept out of the journal).
    pub env_keys: Vec<String>,
    /// When `forget` last dropped its record.
    pub forgotten_at: Option<Timestamp>,
}

impl UnitHistory {
    /// Whether `forget` dropped the record after its last start.
    pub fn forgotten(&self) -> bool {
        self.forgotten_at.is_some() && self.forgotten_at >= self.start_at
    }

    /// The latest exit after `since` that is not `known` (an invocation the
    /// record already holds).
    pub fn exit_after(&self, since: Option<Timestamp>, known: Option<&str>) -> Option<JournalExit> {
        self.exits
            .iter()
            .rev()
            .find(|e| {
                e.at.zip(since).is_none_or(|(at, s)| at >= s)
                    && (e.invocation.is_none() || e.invocation.as_deref() != known)
            })
            .cloned()
    }
}

/// The journalctl arguments that read what the journal knows about `units`:
/// the manager's messages about them, refine-proc's own entries, and (for
/// services) their output lines, all of the caller's uid.
pub fn history_args(uid: u32, units: &[String], since: Option<Timestamp>) -> Vec<String> {
    let mut args = vec![
        "--no-pager".to_string(),
        "--quiet".to_string(),
        "--all".to_string(),
        "--output=json".to_string(),
        "--output-fields=MESSAGE_ID,USER_UNIT,USER_INVOCATION_ID,EXIT_CODE,EXIT_STATUS,\
UNIT_RESULT,COMMAND,SYSLOG_IDENTIFIER,REFINE_UNIT,REFINE_EVENT,REFINE_RECORD,REFINE_RESULT,\
REFINE_EXIT_CODE,REFINE_EXIT_STATUS,REFINE_INVOCATION,REFINE_ENV_KEYS"
            .to_string(),
    ];
    if let Some(since) = since {
        args.push(format!(
            "--since=@{}",
            since
                .0
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ));
    }
    let idents: Vec<String> = units
        .iter()
        .filter_map(|u| u.strip_suffix(".service"))
        .map(|i| format!("SYSLOG_IDENTIFIER={i}"))
        .collect();
    let groups: [Vec<String>; 3] = [
        units.iter().map(|u| format!("USER_UNIT={u}")).collect(),
        units.iter().map(|u| format!("REFINE_UNIT={u}")).collect(),
        idents,
    ];
    push_groups(&mut args, Some(uid), groups);
    args
}

/// Reads the journal's history of `units` (one journalctl call). None when
/// journalctl cannot be run or the journal cannot be read.
pub fn history(
    units: &[String],
    since: Option<Timestamp>,
) -> Option<std::collections::HashMap<String, UnitHistory>> {
    if units.is_empty() {
        return Some(Default::default());
    }
    let out = Command::new("journalctl")
        .args(history_args(current_uid(), units, since))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(parse_history(text.lines(), units))
}

/// The units that refine-proc's own journal entries name for the index
/// `dir` (starts, exits, forgets), oldest first; None when the journal
/// cannot be read.
pub fn own_units(dir: &str) -> Option<Vec<String>> {
    let out = Command::new("journalctl")
        .args([
            "--no-pager".to_string(),
            "--quiet".to_string(),
            "--output=json".to_string(),
            "--output-fields=REFINE_UNIT".to_string(),
            format!("_UID={}", current_uid()),
            format!("SYSLOG_IDENTIFIER={OWN_IDENTIFIER}"),
            format!("REFINE_PROC_STATE_DIR={dir}"),
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut units: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let unit = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("REFINE_UNIT").and_then(field_text));
        if let Some(unit) = unit.filter(|u| crate::model::parse_unit_name(u).is_some()) {
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
    }
    Some(units)
}

/// Folds journal entries (`journalctl -o json` lines) into each unit's history.
pub fn parse_history<'a>(
    lines: impl Iterator<Item = &'a str>,
    units: &[String],
) -> std::collections::HashMap<String, UnitHistory> {
    let mut out: std::collections::HashMap<String, UnitHistory> = Default::default();
    // The manager logs the exit and the result in two messages of one invocation.
    let mut results: std::collections::HashMap<String, String> = Default::default();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(field_text);
        let at = field("__REALTIME_TIMESTAMP")
            .and_then(|t| t.parse().ok())
            .and_then(Timestamp::from_usec);
        let ident = field("SYSLOG_IDENTIFIER");
        if ident.as_deref() == Some(OWN_IDENTIFIER) {
            if let Some(unit) = field("REFINE_UNIT").filter(|u| units.contains(u)) {
                fold_own_entry(out.entry(unit).or_default(), &field, at);
            }
        } else if let Some(unit) = field("USER_UNIT").filter(|u| units.contains(u)) {
            fold_manager_entry(out.entry(unit).or_default(), &field, at, &mut results);
        } else if let Some(unit) = ident
            .map(|i| format!("{i}.service"))
            .filter(|u| units.contains(u))
        {
            out.entry(unit).or_default().last_output_at = at;
        }
    }
    // "Failed with result 'timeout'" says more than the exit status.
    for h in out.values_mut() {
        h.exits.sort_by_key(|e| e.at);
        for e in &mut h.exits {
            if let Some(r) = e.invocation.as_ref().and_then(|i| results.get(i)) {
                e.result = r.clone();
            }
        }
    }
    out
}

/// Folds one of refine-proc's own entries (a start, an exit, a forget)
/// into its unit's history; `field` reads the entry's fields.
fn fold_own_entry(
    h: &mut UnitHistory,
    field: &dyn Fn(&str) -> Option<String>,
    at: Option<Timestamp>,
) {
    match field("REFINE_EVENT").as_deref() {
        // By time, not by the order of the output: the latest start
        // (a restart) wins, and a forget counts only after it.
        Some("start") if h.start.is_none() || at >= h.start_at => {
            h.start = field("REFINE_RECORD").and_then(|r| serde_json::from_str(&r).ok());
            h.start_at = at;
            h.env_keys = field("REFINE_ENV_KEYS")
                .unwrap_or_default()
                .split(',')
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        Some("forget") => h.forgotten_at = h.forgotten_at.max(at),
        Some("exit") => {
            let status = field("REFINE_EXIT_STATUS").unwrap_or_default();
            let (code, signal) =
                exit_status(&field("REFINE_EXIT_CODE").unwrap_or_default(), &status);
            h.exits.push(JournalExit {
                result: field("REFINE_RESULT").unwrap_or_else(|| "unknown".into()),
                code,
                signal,
                at,
                invocation: field("REFINE_INVOCATION").filter(|i| !i.is_empty()),
            });
        }
        _ => {}
    }
}

/// Folds one of the user manager's entries about a unit (its main process
/// exited, it failed with a result) into the unit's history; the results
/// go to `results` by invocation.
fn fold_manager_entry(
    h: &mut UnitHistory,
    field: &dyn Fn(&str) -> Option<String>,
    at: Option<Timestamp>,
    results: &mut std::collections::HashMap<String, String>,
) {
    h.seen_by_manager = true;
    let invocation = field("USER_INVOCATION_ID");
    match field("MESSAGE_ID").as_deref() {
        Some(MAIN_EXITED) if field("COMMAND").as_deref() == Some("ExecStart") => {
            let kind = field("EXIT_CODE").unwrap_or_default();
            let status = field("EXIT_STATUS").unwrap_or_default();
            let (code, signal) = exit_status(&kind, &status);
            // The hook's own entry for this invocation says more.
            if h.exits
                .iter()
                .any(|e| e.invocation.is_some() && e.invocation == invocation)
            {
                return;
            }
            let result = match (kind.as_str(), code) {
                ("exited", Some(0)) => "success",
                ("exited", _) => "exit-code",
                ("dumped", _) => "core-dump",
                _ => "signal",
            };
            h.exits.push(JournalExit {
                result: result.into(),
                code,
                signal,
                at,
                invocation,
            });
        }
        Some(FAILED_WITH) => {
            if let (Some(inv), Some(result)) = (invocation, field("UNIT_RESULT")) {
                results.insert(inv, result);
            }
        }
        _ => {}
    }
}

/// (code, signal) from systemd's EXIT_CODE (exited, killed, dumped) and
/// EXIT_STATUS (a number, or a signal's number or name).
fn exit_status(kind: &str, status: &str) -> (Option<i32>, Option<String>) {
    match kind {
        "killed" | "dumped" => {
            let name = match status.parse::<i32>() {
                Ok(n) => crate::text::signal_name(n),
                Err(_) => status.trim_start_matches("SIG").to_string(),
            };
            (None, Some(name))
        }
        _ => (status.parse().ok(), None),
    }
}
