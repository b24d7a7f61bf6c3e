//! Containment of command probes: each checked record's probes run in a
//! cgroup of their own under the daemon's cgroup (`probe-<id>`), which is
//! emptied with `cgroup.kill` when a probe ends. A process group is not
//! enough: `setsid` (or a double fork into a new session) leaves it, a
//! cgroup cannot be left without write access to another one. Being under
//! the daemon's own cgroup, whatever a probe starts is also part of the
//! daemon's unit, which systemd empties when the daemon stops or dies.
//!
//! The daemon's cgroup must be writable by the daemon: true of any process
//! of a user manager (its subtree is the user's), and declared with
//! `Delegate=yes` in `refine-proc.service` so systemd leaves the
//! sub-cgroups alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// Where probes get their cgroups: the daemon's own cgroup directory.
#[derive(Clone, Debug)]
pub struct ProbeCgroups {
    base: PathBuf,
}

impl ProbeCgroups {
    /// The calling process's cgroup (v2), if probes can be contained in
    /// sub-cgroups of it; else why not, with what would fix it.
    pub fn detect() -> Result<ProbeCgroups, String> {
        let text = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let relative = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("not on the unified cgroup hierarchy (cgroup v2)")?;
        let base = Path::new("/sys/fs/cgroup").join(relative.trim_start_matches('/'));
        Self::at(base)
    }

    /// Probes in sub-cgroups of `base`, if that works there.
    pub fn at(base: PathBuf) -> Result<ProbeCgroups, String> {
        if !base.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (Linux 5.14 or later has it)",
                base.display()
            ));
        }
        let c_path = std::ffi::CString::new(base.as_os_str().as_encoded_bytes())
            .map_err(|_| "a cgroup path with a NUL byte".to_string())?;
        // SAFETY: access(2) reads a NUL-terminated path we own.
        let writable = unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0;
        if !writable {
            return Err(format!(
                "the daemon's cgroup {} is not writable: run it as refine-proc.service \
                 (Delegate=yes) in the user manager",
                base.display()
            ));
        }
        Ok(ProbeCgroups { base })
    }

    /// The cgroup for the probes of record `id` (created if missing). One
    /// probe of a record runs at a time, so each record has one.
    pub fn for_record(&self, id: &str) -> std::io::Result<ProbeCgroup> {
        if !crate::model::is_id_like(id) {
            return Err(std::io::Error::other(format!("{id:?} is not a record id")));
        }
        let dir = self.base.join(format!("probe-{id}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(ProbeCgroup { dir, procs })
    }

    /// Removes the cgroup of a record that is no longer probed (best
    /// effort: a cgroup with processes still dying stays, and goes with
    /// the daemon's unit).
    pub fn remove(&self, id: &str) {
        if crate::model::is_id_like(id) {
            let dir = self.base.join(format!("probe-{id}"));
            kill_all(&dir);
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// One record's probe cgroup, open for a probe to enter; emptied when
/// dropped, so a probe that ends, times out or is cancelled leaves nothing.
#[derive(Debug)]
pub struct ProbeCgroup {
    dir: PathBuf,
    procs: File,
}

impl ProbeCgroup {
    /// The descriptor of its `cgroup.procs`: a child writes `0` to it
    /// between fork and exec ([`enter`]), so it never runs outside.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// SIGKILLs every process in it, at once (the kernel walks the cgroup,
    /// so nothing forks out of the way).
    pub fn kill(&self) {
        kill_all(&self.dir);
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open
/// as `fd`. Async-signal-safe (one write(2)): for `pre_exec`.
pub fn enter(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: write(2) from a valid buffer; fd stays open in the child.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn kill_all(dir: &Path) {
    let killed = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .and_then(|mut f| f.write_all(b"1"));
    if let Err(e) = killed {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot empty the probe cgroup {}: {e}", dir.display());
        }
    }
}
