//! Who is asking: the uid and, when the caller runs inside a managed
//! process, that process. Found from the caller's cgroup, which a process
//! cannot rewrite, not from a flag or variable it could forge (REFINE_ID is
//! used only where the cgroup cannot be read).

use serde::{Deserialize, Serialize};

use crate::model::{parse_unit_name, Owner};

/// The request's origin, stored in every record as `requested_by`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RequestedBy {
    pub uid: u32,
    /// The owner of the managed process that asked; null for a person.
    pub acting_owner: Option<Owner>,
    /// The id of the managed process that asked; null for a person.
    pub parent: Option<String>,
    /// The policy file the request was checked against; it also binds the
    /// process's own requests.
    pub policy: Option<String>,
    /// A person lowered to a bounded actor (`mcp --actor OWNER`) that
    /// asked: `OWNER@PID:STARTTIME` of its process. What it launched is its
    /// own, as a managed process's children are; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowered: Option<String>,
}

/// A caller established by a front end, not by this process: the API's
/// peer, from its socket's credentials (SO_PEERCRED) and its cgroup, read
/// by the daemon when the connection was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<u32>,
    /// The managed process the peer runs in; None for a person.
    pub managed: Option<ManagedCaller>,
}

impl Peer {
    /// A peer's identity from its pid: the managed process its cgroup
    /// names. A pid whose cgroup cannot be read is refused by the caller
    /// (None), never taken for a person.
    pub fn from_pid(uid: u32, pid: u32) -> Option<Peer> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Some(Peer {
            uid,
            pid: Some(pid),
            managed: managed_unit_in_cgroup(&text),
        })
    }

    /// A person (a browser or script with a session on the TCP listener).
    pub fn person(uid: u32) -> Peer {
        Peer {
            uid,
            pid: None,
            managed: None,
        }
    }
}

/// The managed process a request comes from: the peer's, when a front end
/// established one, else this process's own.
pub fn caller_of(peer: Option<&Peer>) -> Option<ManagedCaller> {
    match peer {
        Some(p) => p.managed.clone(),
        None => managed_caller(),
    }
}

/// The managed process (owner, id, unit) the caller runs in, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedCaller {
    pub owner: Owner,
    pub id: String,
    pub unit: String,
}

/// The caller's own managed process, from /proc/self/cgroup.
pub fn managed_caller() -> Option<ManagedCaller> {
    match std::fs::read_to_string("/proc/self/cgroup") {
        Ok(text) => managed_unit_in_cgroup(&text),
        Err(_) => {
            let id = std::env::var("REFINE_ID").ok()?;
            let unit = std::env::var("REFINE_UNIT").ok()?;
            let (owner, unit_id) = parse_unit_name(&unit)?;
            (unit_id == id).then_some(ManagedCaller { owner, id, unit })
        }
    }
}

/// The innermost refine-proc unit in a /proc/PID/cgroup text (the cgroup v2
/// line `0::/…/refine.slice/refine-agent.slice/refine-agent-<id>.service`).
pub fn managed_unit_in_cgroup(text: &str) -> Option<ManagedCaller> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    path.split('/').rev().find_map(|component| {
        let as_service = component
            .strip_suffix(".scope")
            .map(|stem| format!("{stem}.service"))
            .unwrap_or_else(|| component.to_string());
        let (owner, id) = parse_unit_name(&as_service)?;
        Some(ManagedCaller {
            owner,
            id,
            unit: component.to_string(),
        })
    })
}

/// The caller's uid.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The caller's home directory from the user database, not from $HOME
/// (which a managed caller controls).
pub fn home_dir() -> Option<std::path::PathBuf> {
    // SAFETY: getpwuid returns null or a pointer to static storage that we
    // copy out at once; refine-proc does not call it from several threads.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(std::path::PathBuf::from(
            std::ffi::OsStr::from_encoded_bytes_unchecked(dir.to_bytes()),
        ))
    }
}

/// The caller's login name from the user database (None for a uid
/// without an entry, as in some containers).
pub fn user_name() -> Option<String> {
    // SAFETY: as in home_dir: copied out of static storage at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*pw).pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_innermost_managed_unit_in_a_cgroup_path() {
        let text = "0::/user.slice/user-1000.slice/user@1000.service/refine.slice/refine-agent.slice/refine-agent-abcd2345.service\n";
        let c = managed_unit_in_cgroup(text).unwrap();
        assert_eq!((c.owner, c.id.as_str()), (Owner::Agent, "abcd2345"));
        let scope = "0::/user.slice/user@1000.service/refine.slice/refine-user\\x2dhelper.slice/refine-user-helper-bcde3456.scope\n";
        let c = managed_unit_in_cgroup(scope).unwrap();
        assert_eq!(
            (c.owner, c.unit.as_str()),
            (Owner::UserHelper, "refine-user-helper-bcde3456.scope")
        );
        assert_eq!(
            managed_unit_in_cgroup("0::/user.slice/user@1000.service/app.slice/foo.service\n"),
            None
        );
        // cgroup v1 lines are ignored; a unit merely named like ours is not
        // enough without the id format.
        assert_eq!(
            managed_unit_in_cgroup("1:name=systemd:/refine-agent-abcd2345.service\n"),
            None
        );
        assert_eq!(
            managed_unit_in_cgroup("0::/refine-agent-nope.service\n"),
            None
        );
    }
}
