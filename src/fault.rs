//! Fault injection for the crash tests: with `REFINE_PROC_FAULT=POINT` in
//! its environment, refine-proc SIGKILLs itself when it reaches POINT, as a
//! crash or an OOM kill would end it there. The points, in `run`'s order:
//! `before-index-write`, `after-journal-entry` (the journal holds the
//! start, the index nothing yet), `after-index-write` (record and journal
//! entry written, systemd not asked), `after-start-request` (systemd accepted the
//! unit, the start job is not awaited), `after-start` (the record says
//! running, nothing printed). Unset (the normal case) it costs one read of
//! the environment.

use std::sync::OnceLock;

/// Dies here, at once and without cleanup, if this is the requested point.
pub fn point(name: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("REFINE_PROC_FAULT").ok());
    if wanted.as_deref() == Some(name) {
        // SAFETY: kill and getpid have no preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
