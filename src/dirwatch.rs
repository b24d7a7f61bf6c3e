//! An inotify watch of one directory, as an async stream of wakeups,
//! whose close never blocks the caller.
//!
//! Closing an inotify descriptor that holds a watch waits in the kernel
//! for an SRCU grace period (`fsnotify_destroy_group`): 10 to 25 ms here,
//! measured. On the daemon's single executor thread that stalls every
//! stream and request each time an event stream ends, and in `attach` it
//! was most of the time to the first screen. So the descriptor is closed
//! on tokio's blocking pool, where that wait costs nobody anything.

use std::path::Path;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

type Events = inotify::EventStream<[u8; 1024]>;

/// Wakes when an entry of the directory is created, moved in, or (with
/// `modify`) written.
pub struct DirWatch(Option<Events>);

impl DirWatch {
    /// Watches `dir`. Must be called inside a tokio runtime.
    pub fn new(dir: &Path, modify: bool) -> std::io::Result<DirWatch> {
        let inotify = Inotify::init()?;
        let mut mask = WatchMask::CREATE | WatchMask::MOVED_TO;
        if modify {
            mask |= WatchMask::MODIFY;
        }
        inotify.watches().add(dir, mask)?;
        Ok(DirWatch(Some(inotify.into_event_stream([0u8; 1024])?)))
    }

    /// The next wakeup (one or more events); `None` if the watch ended.
    pub async fn next(&mut self) -> Option<()> {
        match self.0.as_mut()?.next().await {
            Some(Ok(_)) => Some(()),
            _ => None,
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Some(events) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || drop(events))),
            Err(_) => drop(events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_watch_wakes_on_a_new_entry_and_is_closed_off_the_executor() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirWatch::new(dir.path(), false).unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert_eq!(woke.expect("a wakeup within 5 s"), Some(()));
        // Handed to the blocking pool; the runtime waits for it at its end.
        drop(w);
    }
}
