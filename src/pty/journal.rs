//! The journal writer of the holder: terminal output as text lines on
//! its stdout (the unit's journal), written by a thread of its own from a
//! queue, so a write to journald never stalls the event loop.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::Notify;

use super::strip::Stripper;
use crate::error::{Error, Result};

/// Output queued for the journal writer before the holder stops reading
/// the terminal until the writer catches up: the program then waits, as
/// on a slow terminal, and the logs lose nothing. journald takes in less
/// than 10 MB/s here: a burst up to this size goes at the terminal's
/// speed, its memory is given back once the journal has it.
pub const JOURNAL_BACKLOG: usize = 128 << 20;

/// How long queued output may wait before the writer is woken (the
/// journal is read by people and `logs`: 10 ms is nothing to them).
pub const JOURNAL_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Queued output at which the writer is woken at once (a burst).
pub const JOURNAL_NOW: usize = 64 << 10;

/// Output on its way to the journal: the event loop queues it, the
/// writer thread takes it all at once.
#[derive(Default)]
pub struct Journal {
    queue: Mutex<JournalQueue>,
    /// The writer waits here for output.
    more: Condvar,
    /// The reader waits here for room.
    pub room: Notify,
}

#[derive(Default)]
struct JournalQueue {
    chunks: Vec<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

impl Journal {
    /// Queues output without waking the writer; returns the bytes queued.
    /// The event loop wakes it a moment later ([`JOURNAL_DELAY`]): waking
    /// a thread at each keystroke's echo put a context switch on the path
    /// to the attached client, on a 2-core machine.
    pub fn queue(&self, chunk: &[u8]) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !q.closed {
            q.bytes += chunk.len();
            q.chunks.push(chunk.to_vec());
        }
        q.bytes
    }

    /// Wakes the writer to take what is queued.
    pub fn wake(&self) {
        self.more.notify_one();
    }

    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.more.notify_one();
    }

    pub fn backlog(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Returns once the backlog is under [`JOURNAL_BACKLOG`].
    pub async fn room(&self) {
        loop {
            // Created before the check: a wakeup in between is kept.
            let room = self.room.notified();
            if self.backlog() < JOURNAL_BACKLOG {
                return;
            }
            room.await;
        }
    }

    /// The next chunks for the writer; None once closed and empty.
    pub fn take(&self) -> Option<(Vec<Vec<u8>>, usize)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.chunks.is_empty() && !q.closed {
            q = self.more.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.chunks.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut q.bytes);
        Some((std::mem::take(&mut q.chunks), bytes))
    }
}

/// The journal writer: terminal output as text lines on stdout. A write
/// that stalls (journald busy) stalls only this thread.
pub fn journal_writer(journal: Arc<Journal>) -> Result<std::thread::JoinHandle<()>> {
    let run = move || {
        let mut strip = Stripper::default();
        let mut out = Vec::new();
        let stdout = std::io::stdout();
        let mut w = stdout.lock();
        let mut broken = false;
        while let Some((chunks, bytes)) = journal.take() {
            // Room again: the reader may go on while this is written.
            journal.room.notify_one();
            if broken {
                continue;
            }
            for c in &chunks {
                strip.feed(c, &mut out);
            }
            drop(chunks);
            if !out.is_empty() && w.write_all(&out).and_then(|_| w.flush()).is_err() {
                // No journal: keep taking, so the program is never held.
                broken = true;
            }
            out.clear();
            if bytes > 1 << 20 {
                // After a burst: give the freed buffers back to the system.
                out.shrink_to(64 * 1024);
                // SAFETY: malloc_trim only releases free memory.
                unsafe { libc::malloc_trim(0) };
            }
        }
        strip.finish(&mut out);
        let _ = w.write_all(&out).and_then(|_| w.flush());
    };
    // A small stack: the thread only strips and writes.
    std::thread::Builder::new()
        .name("journal".into())
        .stack_size(256 * 1024)
        .spawn(run)
        .map_err(|e| Error::systemd(format!("cannot start the journal writer: {e}")))
}

#[cfg(test)]
mod tests;
