//! What to launch: a [`RunSpec`] from the caller, validated into a
//! [`Launch`] before any side effect, and turned into systemd unit
//! properties by pure functions (unit-tested without systemd).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::health::HealthSpec;
use crate::model::{Limits, Metadata, Owner, RestartPolicy};

mod adopt;
mod env;
mod properties;
mod validate;

pub use adopt::*;
pub use env::*;
pub use properties::*;

#[cfg(test)]
mod tests;

/// Longest label, metadata value or `--meta` value accepted, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Longest `--details` accepted, in bytes.
pub const MAX_DETAILS: usize = 64 * 1024;
/// Largest command line (all arguments together) accepted, in bytes.
pub const MAX_COMMAND: usize = 256 * 1024;
/// Largest single `--env` value accepted, in bytes.
pub const MAX_ENV_VALUE: usize = 64 * 1024;
/// Longest Description handed to systemd (the full label stays in the index).
const MAX_DESCRIPTION: usize = 200;

/// A request to launch a process, as a caller states it.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// argv; `argv[0]` is looked up in the caller's PATH when it has no slash.
    pub command: Vec<String>,
    pub owner: Option<Owner>,
    pub label: Option<String>,
    pub details: Option<String>,
    pub metadata: Metadata,
    /// Working directory; the caller's current directory when None.
    pub cwd: Option<PathBuf>,
    pub environment: BTreeMap<String, String>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    pub restart_timing: crate::model::RestartTiming,
    pub ready: Option<crate::model::ReadySpec>,
    /// Started again by `refine-proc resurrect` after the user manager
    /// restarted (logout, crash, reboot) while it ran.
    pub persist: bool,
    /// The health check the daemon runs while it runs.
    pub health: Option<HealthSpec>,
    /// Run on a pseudo-terminal held by `refine-proc pty-hold` (`run --pty`).
    pub pty: Option<crate::pty::PtyOptions>,
}

/// A checked [`RunSpec`]: absolute executable, existing directory, sane text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub executable: PathBuf,
    pub command: Vec<String>,
    pub owner: Owner,
    pub label: String,
    pub details: Option<String>,
    pub metadata: Metadata,
    pub cwd: PathBuf,
    pub environment: BTreeMap<String, String>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    pub restart_timing: crate::model::RestartTiming,
    /// Decided by the controller from the running systemd: growing delays
    /// need RestartSteps= (254) or the daemon.
    pub restart_by: crate::model::RestartBy,
    pub ready: Option<crate::model::ReadySpec>,
    pub persist: bool,
    pub health: Option<HealthSpec>,
    pub pty: Option<crate::pty::PtyLaunch>,
}

/// Where a caller runs: what resolves a command without a slash (PATH) and
/// a launch without `cwd` (its working directory). A surface serving other
/// processes reads them from the caller, not from itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerEnv {
    pub cwd: Option<PathBuf>,
    pub path: Option<OsString>,
}

impl CallerEnv {
    /// This process's working directory and PATH.
    pub fn of_this_process() -> CallerEnv {
        CallerEnv {
            cwd: std::env::current_dir().ok(),
            path: std::env::var_os("PATH"),
        }
    }

    /// Another process's, read from /proc (same uid): its cwd link and the
    /// PATH of its initial environment.
    pub fn of_pid(pid: u32) -> CallerEnv {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let path = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| {
                env.split(|b| *b == 0)
                    .find_map(|kv| kv.strip_prefix(b"PATH=").map(|v| v.to_vec()))
            })
            .map(std::os::unix::ffi::OsStringExt::from_vec);
        CallerEnv { cwd, path }
    }
}
