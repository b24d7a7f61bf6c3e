//! The event history: one JSON line per lifecycle transition (started,
//! exited, failed, stopped, killed, restarted, paused, resumed, adopted,
//! limits-changed, forgotten, refused, lost, recovered), in `events.jsonl`
//! of the index,
//! rotated to `events.1.jsonl` past a size so it stays bounded on disk.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Owner, Record, Timestamp};

/// Past this size `events.jsonl` is rotated (the previous rotation is
/// dropped): the history on disk stays under twice this.
pub const ROTATE_AT_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    /// What happened: started, exited, failed, stopped, killed, ...
    pub event: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub workflow: Option<String>,
    /// Who caused it: `person`, an owner (a managed process), or `systemd`.
    #[serde(default)]
    pub actor: Option<String>,
    /// The managed process that asked, if one did.
    #[serde(default)]
    pub caller: Option<String>,
    /// Facts of this kind of event (exit code, signal, limits, rule, ...).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(event: &str) -> Event {
        Event {
            time: Timestamp::now(),
            event: event.to_string(),
            id: None,
            unit: None,
            owner: None,
            workflow: None,
            actor: None,
            caller: None,
            details: Map::new(),
        }
    }

    /// An event about one process.
    pub fn about(event: &str, r: &Record) -> Event {
        Event {
            id: Some(r.id.clone()),
            unit: Some(r.unit.clone()),
            owner: Some(r.owner),
            workflow: r.metadata.workflow.clone(),
            ..Event::new(event)
        }
    }

    /// Adds a fact (skipped when it serializes to null).
    pub fn with(mut self, key: &str, value: impl Serialize) -> Event {
        if let Ok(v) = serde_json::to_value(value) {
            if !v.is_null() {
                self.details.insert(key.to_string(), v);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_flat_and_round_trip() {
        let e = Event::new("refused")
            .with("rule", "act_on")
            .with("pid", None::<u32>);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["rule"], "act_on");
        assert!(json.get("pid").is_none());
        // Read back, it writes the same line (times are kept to the ms).
        let back: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }
}
