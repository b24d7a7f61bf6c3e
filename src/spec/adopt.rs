//! Adoption: checking the processes to move into a scope, and the subtree they
//! must be in.

use crate::error::{Error, Result};
use crate::model::{Metadata, Owner};
use crate::procfs;
use crate::text::escape;
use std::path::Path;

use super::validate::{check_about, check_label};

/// A request to adopt a running process into a transient scope.
#[derive(Clone, Debug, Default)]
pub struct AdoptSpec {
    pub pid: u32,
    pub owner: Option<Owner>,
    /// Default: the process's name (argv\[0\]'s file name).
    pub label: Option<String>,
    pub details: Option<String>,
    pub metadata: Metadata,
    /// Move only `pid`, not its descendants.
    pub no_children: bool,
}

/// A checked [`AdoptSpec`]: a live process of the caller's user that no
/// refine-proc unit holds, with the descendants that may move along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adoption {
    pub pid: u32,
    /// Descendants to move along (systemd moves only the pids it is given).
    pub descendants: Vec<u32>,
    /// The process's argv (lossy UTF-8), or its name when argv is empty.
    pub command: Vec<String>,
    pub cwd: Option<String>,
    /// Its cgroup v2 path now.
    pub cgroup: String,
    pub owner: Owner,
    pub label: String,
    pub details: Option<String>,
    pub metadata: Metadata,
    /// Descendants left where they are, and why.
    pub left: Vec<(u32, String)>,
}

impl AdoptSpec {
    /// Validates the text and the process from `/proc`, before any side
    /// effect: it exists, belongs to the caller's uid, is not PID 1, this
    /// process, a kernel thread or a zombie, and no refine-proc unit holds
    /// it. Descendants that fail these checks are left where they are.
    pub fn validate(self) -> Result<Adoption> {
        if let Some(l) = &self.label {
            check_label(l)?;
        }
        check_about(self.details.as_deref(), &self.metadata)?;
        let pid = self.pid;
        let me = std::process::id();
        let uid = crate::journal::current_uid();
        let stat = adoptable(pid, me, uid)?;
        let cgroup = unmanaged_cgroup(pid)?;
        let mut command = procfs::cmdline(pid).unwrap_or_default();
        if command.is_empty() {
            command.push(stat.comm.clone());
        }
        let label = match self.label {
            Some(l) => l,
            None => Path::new(&command[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| stat.comm.clone()),
        };
        check_label(&label)?;
        let (descendants, left) = if self.no_children {
            (Vec::new(), Vec::new())
        } else {
            movable_descendants(pid, me, uid)?
        };
        Ok(Adoption {
            pid,
            descendants,
            cwd: procfs::cwd(pid),
            command,
            cgroup,
            owner: self.owner.unwrap_or(Owner::UserHelper),
            label,
            details: self.details,
            metadata: self.metadata,
            left,
        })
    }
}

/// The process `pid` if it may be adopted by this process (`me`, of `uid`):
/// it exists, is the user's, and is not PID 1, `me`, a kernel thread or a
/// zombie.
fn adoptable(pid: u32, me: u32, uid: u32) -> Result<procfs::Stat> {
    let no_such = || {
        Error::not_found(format!("no process with pid {pid}"))
            .hint(format!("check the pid: ps -p {pid}"))
    };
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(no_such());
    }
    if pid == 1 {
        return Err(
            Error::refused("pid 1 is the init process; it cannot be adopted")
                .hint("adopt a process you started, e.g. one running in your terminal"),
        );
    }
    if pid == me {
        return Err(Error::refused(format!(
            "pid {pid} is this refine-proc itself"
        )));
    }
    let stat = match procfs::stat(pid) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_such()),
        Err(e) => return Err(Error::refused(format!("cannot read /proc/{pid}: {e}"))),
    };
    let owner = procfs::owner_uid(pid).map_err(|_| no_such())?;
    if owner != uid {
        return Err(
            Error::refused(format!("pid {pid} belongs to uid {owner}")).hint(format!(
                "refine-proc adopts only processes of its own user (uid {uid}); \
                 run refine-proc as that user, or start the process with refine-proc run"
            )),
        );
    }
    if stat.ppid == 2 || stat.pid == 2 {
        return Err(Error::refused(format!(
            "pid {pid} is a kernel thread; it cannot be adopted"
        )));
    }
    if stat.is_zombie() {
        return Err(Error::refused(format!(
            "pid {pid} has already exited (a zombie its parent has not collected)"
        )));
    }
    Ok(stat)
}

/// The cgroup of `pid`, unless a refine-proc unit holds it already.
fn unmanaged_cgroup(pid: u32) -> Result<String> {
    let cgroup = procfs::cgroup(pid)
        .map_err(|e| Error::refused(format!("cannot read the cgroup of pid {pid}: {e}")))?;
    if let Some((_, id, kind)) = procfs::managed_unit(&cgroup) {
        return Err(Error::refused(format!(
            "pid {pid} is already managed by refine-proc as {id} (a {kind}: {})",
            cgroup.rsplit('/').next().unwrap_or_default()
        ))
        .hint(format!("see refine-proc status {id}")));
    }
    Ok(cgroup)
}

/// The descendants of `pid` (one scan of /proc) that may move along, and
/// those left where they are, with why.
type Descendants = (Vec<u32>, Vec<(u32, String)>);

fn movable_descendants(pid: u32, me: u32, uid: u32) -> Result<Descendants> {
    let table = procfs::all_processes()
        .map_err(|e| Error::refused(format!("cannot list processes in /proc: {e}")))?;
    let mut descendants = Vec::new();
    let mut left = Vec::new();
    for child in procfs::descendants(pid, &table) {
        if child == me {
            // refine-proc itself, when adopting the shell it runs in.
            continue;
        }
        match movable(child, uid) {
            Ok(()) => descendants.push(child),
            // Gone since the scan: nothing to move.
            Err(None) => {}
            Err(Some(why)) => left.push((child, why)),
        }
    }
    Ok((descendants, left))
}

/// Whether a descendant may move into the scope: Err(None) when it is
/// gone, Err(Some(reason)) when it stays where it is.
fn movable(pid: u32, uid: u32) -> std::result::Result<(), Option<String>> {
    let stat = procfs::stat(pid).map_err(|_| None)?;
    if stat.is_zombie() {
        return Err(None);
    }
    let owner = procfs::owner_uid(pid).map_err(|_| None)?;
    if owner != uid {
        return Err(Some(format!("it belongs to uid {owner}")));
    }
    let cgroup = procfs::cgroup(pid).map_err(|_| None)?;
    if let Some((_, id, _)) = procfs::managed_unit(&cgroup) {
        return Err(Some(format!("refine-proc already manages it as {id}")));
    }
    Ok(())
}

impl Adoption {
    /// All pids to move: the process first, then its descendants.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid)
            .chain(self.descendants.iter().copied())
            .collect()
    }

    /// Keeps only what the user manager may move: processes in its own
    /// cgroup subtree (`manager_cgroup`), but not the manager itself.
    /// The process itself outside it is an error that says why.
    pub fn restrict_to_subtree(&mut self, manager_cgroup: &str) -> Result<()> {
        let own = format!("{}/init.scope", manager_cgroup.trim_end_matches('/'));
        let check = |cgroup: &str| -> Option<String> {
            if procfs::is_within(cgroup, &own) {
                Some("it is part of the user manager itself".into())
            } else if !procfs::is_within(cgroup, manager_cgroup) {
                Some(format!(
                    "it runs in {}, outside the user manager's cgroup subtree",
                    escape(cgroup)
                ))
            } else {
                None
            }
        };
        if let Some(why) = check(&self.cgroup) {
            return Err(outside_subtree(self.pid, &why));
        }
        let mut kept = Vec::new();
        for pid in std::mem::take(&mut self.descendants) {
            // A pid whose cgroup cannot be read is gone since the scan.
            if let Ok(cg) = procfs::cgroup(pid) {
                match check(&cg) {
                    None => kept.push(pid),
                    Some(why) => self.left.push((pid, why)),
                }
            }
        }
        self.descendants = kept;
        Ok(())
    }
}

/// The error for a process the user manager cannot move, with the fix.
pub fn outside_subtree(pid: u32, why: &str) -> Error {
    Error::refused(format!(
        "the systemd user manager cannot adopt pid {pid}: {why}"
    ))
    .hint(
        "the user manager can only adopt processes in its own cgroup subtree (e.g. started \
         from a terminal of the desktop session), not from an SSH session or another user \
         manager; run it via refine-proc run instead",
    )
}
