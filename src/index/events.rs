//! The event history: `events.jsonl`, appended a line at a time and rotated.

use crate::error::Result;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::*;

impl Index {
    /// Appends one event as a JSON line to `events.jsonl` (one write, so
    /// concurrent appends do not interleave); `durable` also syncs it. The
    /// file is rotated past [`crate::events::ROTATE_AT_BYTES`].
    pub fn append_event(&self, event: &crate::events::Event, durable: bool) -> Result<()> {
        self.append_event_rotating(event, durable, crate::events::ROTATE_AT_BYTES)
    }

    pub(super) fn append_event_rotating(
        &self,
        event: &crate::events::Event,
        durable: bool,
        rotate_at: u64,
    ) -> Result<()> {
        let path = self.dir.join("events.jsonl");
        // The size of the file itself, not of what a planted link points at.
        let full = || fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= rotate_at);
        if full() {
            // Under the lock, so only one invocation rotates.
            let _lock = self.lock()?;
            if full() {
                fs::rename(&path, self.dir.join("events.1.jsonl"))
                    .map_err(|e| self.io_error("rotate", &path, e))?;
            }
        }
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        OpenOptions::new()
            .read(true) // to look for an end already recorded
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut f| {
                // An end of a run is written once (see run_end_key): the
                // check and the write under a lock on the file itself.
                let key = crate::events::run_end_key(event);
                if key.is_some() && flock(&f, libc::LOCK_EX).is_ok() && recorded(&f, key)? {
                    return Ok(());
                }
                f.write_all(&line)?;
                if durable {
                    f.sync_data()?;
                }
                crate::events::note_appended();
                Ok(())
            })
            .map_err(|e| self.io_error("append to", &path, e))
    }

    /// The history, oldest first: the rotated file, then the current one.
    /// Lines that do not parse (a torn write after a crash) are skipped and
    /// counted.
    pub fn events(&self) -> Result<(Vec<crate::events::Event>, usize)> {
        let mut events = Vec::new();
        let mut skipped = 0;
        for name in ["events.1.jsonl", "events.jsonl"] {
            let path = self.dir.join(name);
            // Bytes, not text: a line torn inside a multi-byte character is
            // one line that does not parse, not an unreadable history.
            let mut bytes = Vec::new();
            match open_nofollow(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => {}
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(self.io_error("read", &path, e)),
            }
            let (mut parsed, bad) = crate::events::parse_lines(&bytes);
            events.append(&mut parsed);
            skipped += bad;
        }
        Ok((events, skipped))
    }
}

fn flock(f: &fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; flock has no other precondition. The
    // lock goes with the descriptor when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the end of this run is among the last events of the file (the
/// other writer of an end comes milliseconds apart, so the tail suffices).
fn recorded(f: &fs::File, key: Option<(&str, &str)>) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let Some((_, inv)) = key else {
        return Ok(false);
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(256 << 10);
    let mut tail = vec![0; (len - start) as usize];
    f.read_exact_at(&mut tail, start)?;
    let needle = inv.as_bytes();
    // Only lines naming the invocation are parsed.
    Ok(tail.split(|b| *b == b'\n').any(|line| {
        line.windows(needle.len()).any(|w| w == needle)
            && serde_json::from_slice::<crate::events::Event>(line)
                .is_ok_and(|e| crate::events::run_end_key(&e) == key)
    }))
}
