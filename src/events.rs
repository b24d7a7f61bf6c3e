//! The event history: one JSON line per lifecycle transition (started,
//! exited, failed, stopped, killed, restarted, paused, resumed, adopted,
//! limits-changed, forgotten, refused, lost, recovered, healthy, unhealthy,
//! health-starting), in `events.jsonl`
//! of the index,
//! rotated to `events.1.jsonl` past a size so it stays bounded on disk.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Owner, Record, Timestamp};

/// Past this size `events.jsonl` is rotated (the previous rotation is
/// dropped): the history on disk stays under twice this.
pub const ROTATE_AT_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[schema(value_type = Object)]
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

/// The names of the events that end a run (the states a run ends in).
const RUN_ENDS: [&str; 5] = ["exited", "failed", "stopped", "lost", "ended"];

/// The run whose end an event is, as `(id, invocation)`: both the daemon
/// (from systemd's signal) and the exit hook record an end, and the one
/// that comes second finds the first in the history and writes nothing.
pub fn run_end_key(e: &Event) -> Option<(&str, &str)> {
    if !RUN_ENDS.contains(&e.event.as_str()) {
        return None;
    }
    let inv = e
        .details
        .get("invocation")?
        .as_str()
        .filter(|i| !i.is_empty())?;
    Some((e.id.as_deref()?, inv))
}

/// Counts appends to the history by this process, so that event streams
/// served by the daemon wake at once (no round trip through inotify).
static APPENDED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Changes after every event this process appends (a reader that was busy
/// still sees the change: a watch channel keeps it).
pub fn appended() -> tokio::sync::watch::Receiver<u64> {
    APPENDED.subscribe()
}

pub(crate) fn note_appended() {
    APPENDED.send_modify(|n| *n = n.wrapping_add(1));
}

/// The events in complete JSON lines, and how many lines did not parse
/// (torn by a crash, cut inside a multi-byte character, not JSON): those
/// are skipped, never fatal.
pub fn parse_lines(bytes: &[u8]) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut skipped = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(e) => events.push(e),
            Err(_) => skipped += 1,
        }
    }
    (events, skipped)
}

/// Opens a history file without following a link planted at its path.
fn open_history(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()
}

/// Reads `events.jsonl` as it grows, across rotations: the open file is
/// read to its end before the new file at the path is opened, so no line
/// is missed or read twice.
pub struct EventTail {
    path: PathBuf,
    file: Option<File>,
    /// The start of a line whose end has not been written yet.
    pending: Vec<u8>,
}

impl EventTail {
    /// Starts at the beginning of the current file.
    pub fn new(path: PathBuf) -> EventTail {
        let file = open_history(&path);
        EventTail {
            path,
            file,
            pending: Vec::new(),
        }
    }

    /// The events appended since the last call, and how many lines did not
    /// parse.
    pub fn read_new(&mut self) -> std::io::Result<(Vec<Event>, usize)> {
        let mut events = Vec::new();
        let mut skipped = 0;
        loop {
            if let Some(f) = self.file.as_mut() {
                f.read_to_end(&mut self.pending)?;
                let complete = self.pending.iter().rposition(|b| *b == b'\n');
                if let Some(end) = complete {
                    let lines: Vec<u8> = self.pending.drain(..=end).collect();
                    let (mut parsed, bad) = parse_lines(&lines);
                    events.append(&mut parsed);
                    skipped += bad;
                }
            }
            // Rotated (or created) since it was opened: another file is at
            // the path now.
            // The link itself, should one be planted there: never its target.
            let at_path = std::fs::symlink_metadata(&self.path).ok().map(|m| m.ino());
            let open = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            if at_path.is_none() || at_path == open {
                return Ok((events, skipped));
            }
            self.file = open_history(&self.path);
            self.pending.clear();
            if self.file.is_none() {
                // Not openable (a link, gone again): try on the next call.
                return Ok((events, skipped));
            }
        }
    }
}

/// A place in the history that survives rotation: the inode of the file
/// (`events.jsonl`, renamed to `events.1.jsonl` by a rotation, keeps its
/// inode) and the byte offset just after a line. Written `INODE-OFFSET`;
/// the API's event streams use it as the server-sent event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPos {
    pub inode: u64,
    pub offset: u64,
}

impl std::fmt::Display for EventPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.inode, self.offset)
    }
}

impl std::str::FromStr for EventPos {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<EventPos> {
        let bad = || {
            crate::error::Error::invalid(format!("{:?} is not an event id", crate::text::escape(s)))
                .hint("pass back an id the event stream sent")
        };
        let (i, o) = s.split_once('-').ok_or_else(bad)?;
        Ok(EventPos {
            inode: i.parse().map_err(|_| bad())?,
            offset: o.parse().map_err(|_| bad())?,
        })
    }
}

/// Reads the history in file order with the position of every event:
/// from the oldest line kept, or after a position, and then as it grows,
/// across rotations, so a reader that resumes after the last position it
/// got neither loses nor repeats a line.
pub struct EventReader {
    dir: PathBuf,
    file: Option<(File, u64)>,
    offset: u64,
    pending: Vec<u8>,
}

impl EventReader {
    /// From the oldest event kept (the rotated file, then the current one).
    pub fn from_start(dir: PathBuf) -> EventReader {
        let file = ["events.1.jsonl", "events.jsonl"]
            .iter()
            .find_map(|n| open_with_inode(&dir.join(n)));
        EventReader {
            dir,
            file,
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// Just after `pos`; None when its file is gone (rotated away twice).
    pub fn after(dir: PathBuf, pos: EventPos) -> Option<EventReader> {
        use std::io::{Seek, SeekFrom};
        let (mut file, inode) = ["events.1.jsonl", "events.jsonl"]
            .iter()
            .filter_map(|n| open_with_inode(&dir.join(n)))
            .find(|(_, inode)| *inode == pos.inode)?;
        file.seek(SeekFrom::Start(pos.offset)).ok()?;
        Some(EventReader {
            dir,
            file: Some((file, inode)),
            offset: pos.offset,
            pending: Vec::new(),
        })
    }

    /// The events appended since the last call, each with its position
    /// (lines that do not parse are passed over).
    pub fn read_new(&mut self) -> std::io::Result<Vec<(EventPos, Event)>> {
        let mut out = Vec::new();
        while self.read_some(u64::MAX, &mut out)? {}
        Ok(out)
    }

    /// At most about `max` bytes of the history (whole lines) into `out`;
    /// true when more may follow at once. A stream sends the history a
    /// chunk at a time, so the daemon never holds all of it for each
    /// stream (issue 11: its resident memory).
    pub fn read_some(
        &mut self,
        max: u64,
        out: &mut Vec<(EventPos, Event)>,
    ) -> std::io::Result<bool> {
        if let Some((f, inode)) = self.file.as_mut() {
            let got = f.take(max).read_to_end(&mut self.pending)? as u64;
            let mut start = 0;
            while let Some(n) = self.pending[start..].iter().position(|b| *b == b'\n') {
                let line = &self.pending[start..start + n];
                self.offset += n as u64 + 1;
                start += n + 1;
                if let Ok(e) = serde_json::from_slice(line) {
                    let pos = EventPos {
                        inode: *inode,
                        offset: self.offset,
                    };
                    out.push((pos, e));
                }
            }
            self.pending.drain(..start);
            if self.pending.capacity() > 64 << 10 && self.pending.len() < 16 << 10 {
                self.pending.shrink_to(16 << 10);
            }
            if got == max {
                return Ok(true);
            }
        }
        let current = std::fs::metadata(self.dir.join("events.jsonl"))
            .ok()
            .map(|m| m.ino());
        let open = self.file.as_ref().map(|(_, i)| *i);
        if current.is_none() || current == open {
            return Ok(false);
        }
        // The open file was rotated (or none was open): go on with the
        // current one from its start.
        self.file = open_with_inode(&self.dir.join("events.jsonl"));
        self.offset = 0;
        self.pending.clear();
        Ok(true)
    }
}

fn open_with_inode(path: &std::path::Path) -> Option<(File, u64)> {
    let f = File::open(path).ok()?;
    let inode = f.metadata().ok()?.ino();
    Some((f, inode))
}

#[cfg(test)]
mod reader_tests {
    use super::*;
    use std::io::Write;

    fn append(dir: &std::path::Path, n: usize) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("events.jsonl"))
            .unwrap();
        let mut e = Event::new("started");
        e.id = Some(format!("e{n}"));
        writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
    }

    fn ids(v: &[(EventPos, Event)]) -> Vec<String> {
        v.iter().map(|(_, e)| e.id.clone().unwrap()).collect()
    }

    #[test]
    fn resuming_after_a_position_loses_and_repeats_nothing_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, 1);
        append(&d, 2);
        let mut r = EventReader::from_start(d.clone());
        let first = r.read_new().unwrap();
        assert_eq!(ids(&first), ["e1", "e2"]);
        let last = first[1].0;
        // A torn line waits for its end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("events.jsonl"))
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        assert!(r.read_new().unwrap().is_empty());
        // Reconnect after e1: e2 again, once; then a rotation.
        let mut again = EventReader::after(d.clone(), first[0].0).unwrap();
        assert_eq!(ids(&again.read_new().unwrap()), ["e2"]);
        std::fs::rename(d.join("events.jsonl"), d.join("events.1.jsonl")).unwrap();
        append(&d, 3);
        let mut resumed = EventReader::after(d.clone(), last).unwrap();
        assert_eq!(ids(&resumed.read_new().unwrap()), ["e3"]);
        assert_eq!(ids(&again.read_new().unwrap()), ["e3"]);
        assert!(EventReader::after(
            d,
            EventPos {
                inode: 1,
                offset: 0
            }
        )
        .is_none());
        assert_eq!(
            "7-42".parse::<EventPos>().unwrap(),
            EventPos {
                inode: 7,
                offset: 42
            }
        );
        assert!("x".parse::<EventPos>().is_err());
    }

    #[test]
    fn reading_a_chunk_at_a_time_gives_the_same_events_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for n in 0..50 {
            append(&d, n);
        }
        let all = EventReader::from_start(d.clone()).read_new().unwrap();
        let mut r = EventReader::from_start(d);
        let mut chunked = Vec::new();
        // Smaller than a line: a line's start waits for its end.
        while r.read_some(100, &mut chunked).unwrap() {}
        assert_eq!(chunked, all);
        assert_eq!(all.len(), 50);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_at_the_history_is_not_followed_by_the_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere.jsonl");
        let line = serde_json::to_vec(&Event::new("started")).unwrap();
        std::fs::write(&target, [line.as_slice(), b"\n"].concat()).unwrap();
        let path = tmp.path().join("events.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut tail = EventTail::new(path.clone());
        // Returns (it once looped forever here), and reads nothing through it.
        assert_eq!(tail.read_new().unwrap(), (vec![], 0));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, [line.as_slice(), b"\n"].concat()).unwrap();
        assert_eq!(tail.read_new().unwrap().0.len(), 1);
    }

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
