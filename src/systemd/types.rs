//! The plain data read from systemd: listed units, unit and service state,
//! job outcomes.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Type};

/// One row of ListUnitsByPatterns.
#[derive(Debug, Clone, Deserialize, Serialize, Type)]
pub struct ListedUnit {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub following: String,
    pub path: OwnedObjectPath,
    pub job_id: u32,
    pub job_type: String,
    pub job_path: OwnedObjectPath,
}

/// What systemd says about a loaded unit right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    /// running, freezing, frozen, thawing (absent on old systemd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freezer_state: Option<String>,
}

/// Everything `status` shows from systemd about one service (or scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    #[serde(flatten)]
    pub state: UnitState,
    pub load_state: String,
    pub description: String,
    pub main_pid: Option<u32>,
    pub result: String,
    pub n_restarts: u32,
    pub invocation_id: Option<String>,
    pub control_group: Option<String>,
    pub active_enter_usec: Option<u64>,
    /// The unit's Environment= (REFINE_* and --env), to rebuild lost records.
    pub environment: Vec<String>,
    /// ExecStart argv, to rebuild lost records.
    pub exec_argv: Vec<String>,
    pub working_directory: Option<String>,
    /// Usage; None where systemd does not track it (controller missing).
    pub memory_current: Option<u64>,
    pub cpu_usage_nsec: Option<u64>,
    pub tasks_current: Option<u64>,
}

/// Whether a unit is installed and running, as `systemctl --user status`
/// tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitActivity {
    /// loaded, not-found, masked, error, ...
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// A service's last `STATUS=` notification (empty when none).
    pub status_text: String,
}

/// What a PropertiesChanged signal said about a unit's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitChange {
    pub unit: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    /// How the main process ended, when systemd said so with this change
    /// (its `Service` signal comes just before the `Unit` one): the hook's
    /// SERVICE_RESULT, EXIT_CODE, EXIT_STATUS and INVOCATION_ID.
    pub exit: Option<std::collections::BTreeMap<String, String>>,
}

/// The object path of a unit, as systemd names it (bus-label escaping:
/// every byte but ASCII letters and digits as `_xx`): a call on it needs
/// no `GetUnit` round trip first.
pub fn unit_path_of_name(unit: &str) -> String {
    use std::fmt::Write;
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(b as char);
        } else {
            let _ = write!(path, "_{b:02x}");
        }
    }
    path
}

/// The unit name in a systemd object path: the last element, with
/// systemd's bus-label escaping (`_2d` is `-`) undone.
pub fn unit_name_of_path(path: &str) -> Option<String> {
    let label = path.strip_prefix("/org/freedesktop/systemd1/unit/")?;
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How long `start_transient_waiting` waits.
#[derive(Debug, Clone, Copy)]
pub enum StartWait {
    /// For the start job, at most this long.
    Job(Duration),
    /// A short bounded while, for the process to end (then to the end of
    /// its start job) or to say READY=1; a Type=notify unit still starting
    /// then is left starting.
    Spawned,
}

/// A start, stop or restart job that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// done, canceled, timeout, failed, dependency, skipped.
    pub result: String,
}

/// systemd's ExecStart entry: path, argv, ignore-failure, start/stop
/// timestamps, pid, code, status.
pub(super) type ExecEntry = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);

/// systemd reports "not tracked" as u64::MAX.
pub(super) fn tracked(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

pub(super) fn take<T: TryFrom<OwnedValue>>(
    map: &mut HashMap<String, OwnedValue>,
    key: &str,
) -> Option<T> {
    map.remove(key).and_then(|v| T::try_from(v).ok())
}
