//! What to launch: a [`RunSpec`] from the caller, validated into a
//! [`Launch`] before any side effect, and turned into systemd unit
//! properties by pure functions (unit-tested without systemd).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Field, Result};
use crate::health::HealthSpec;
use crate::model::{LimitChange, LimitValue, Limits, Metadata, Owner, RestartPolicy};
use crate::procfs;
use crate::text::escape;
use crate::unitexec;

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

impl RunSpec {
    /// Validates everything that can be checked without systemd; the only
    /// outside facts read are the caller's PATH, cwd and the file system.
    pub fn validate(self) -> Result<Launch> {
        self.validate_in(&CallerEnv::of_this_process())
    }

    /// [`RunSpec::validate`] for a caller elsewhere: its working directory
    /// (the default `cwd`) and PATH (to find the program) come from `env`.
    pub fn validate_in(self, env: &CallerEnv) -> Result<Launch> {
        let Some(program) = self.command.first() else {
            return Err(Error::invalid("no command given")
                .hint("put the command after --, e.g. refine-proc run -- sleep 60")
                .about(Field::Command));
        };
        let total: usize = self.command.iter().map(|a| a.len() + 1).sum();
        if total > MAX_COMMAND {
            return Err(Error::invalid(format!(
                "command line is {total} bytes, more than the {MAX_COMMAND} accepted"
            ))
            .hint("pass large input through a file instead of arguments")
            .about(Field::Command));
        }
        if let Some(n) = self.command.iter().position(|a| a.contains('\0')) {
            return Err(Error::invalid(format!(
                "argument {n} of the command contains a NUL byte, which no program can receive"
            ))
            .about(Field::Command));
        }
        let cwd = match self.cwd {
            Some(dir) => dir,
            None => env.cwd.clone().ok_or_else(|| {
                Error::invalid("cannot tell the caller's current directory")
                    .hint("pass --cwd DIR")
                    .about(Field::Cwd)
            })?,
        };
        // systemd wants a normalized absolute path (no `..`).
        let cwd = match std::fs::canonicalize(&cwd) {
            Ok(dir) if dir.is_dir() => dir,
            _ => {
                return Err(Error::invalid(format!(
                    "working directory {} does not exist or is not a directory",
                    escape(&cwd.display().to_string())
                ))
                .hint("pass an existing directory to --cwd")
                .about(Field::Cwd))
            }
        };
        let executable = resolve_executable(program, &cwd, env.path.as_deref())?;
        check_executable_format(&executable, &cwd, binfmt_misc_in_use())?;

        let label = match self.label {
            Some(l) => l,
            None => Path::new(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.clone()),
        };
        check_identity(&label, self.details.as_deref(), &self.metadata)?;
        for (k, v) in &self.environment {
            check_env_name(k)?;
            check_text("--env value", v, MAX_ENV_VALUE)?;
        }
        check_limits(&self.limits)?;
        if let Some(h) = &self.health {
            h.validate()?;
        }
        if self
            .ready
            .as_ref()
            .is_some_and(|r| r.on == crate::model::Readiness::Health)
            && self.health.is_none()
        {
            return Err(Error::invalid("--ready health needs a health check")
                .hint("add --health-cmd, --health-http or --health-tcp, or use --ready notify")
                .about(Field::Ready));
        }
        let mut restart_timing = self.restart_timing;
        // The daemon's restarts of an unhealthy process follow the timing.
        let unhealthy_restarts = self
            .health
            .as_ref()
            .is_some_and(|h| h.on_unhealthy == crate::health::OnUnhealthy::Restart);
        check_restart(self.restart, unhealthy_restarts, &mut restart_timing)?;
        let pty = self.pty.as_ref().map(|p| p.validate()).transpose()?;
        Ok(Launch {
            executable,
            command: self.command,
            owner: self.owner.unwrap_or(Owner::UserHelper),
            label,
            details: self.details,
            metadata: self.metadata,
            cwd,
            environment: self.environment,
            limits: self.limits,
            restart: self.restart,
            restart_timing,
            restart_by: crate::model::RestartBy::Systemd,
            ready: self.ready,
            persist: self.persist,
            health: self.health,
            pty,
        })
    }
}

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
        let cgroup = procfs::cgroup(pid)
            .map_err(|e| Error::refused(format!("cannot read the cgroup of pid {pid}: {e}")))?;
        if let Some((_, id, kind)) = procfs::managed_unit(&cgroup) {
            return Err(Error::refused(format!(
                "pid {pid} is already managed by refine-proc as {id} (a {kind}: {})",
                cgroup.rsplit('/').next().unwrap_or_default()
            ))
            .hint(format!("see refine-proc status {id}")));
        }
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

        let mut descendants = Vec::new();
        let mut left = Vec::new();
        if !self.no_children {
            let table = procfs::all_processes()
                .map_err(|e| Error::refused(format!("cannot list processes in /proc: {e}")))?;
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
        }
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

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| {
        Error::invalid(format!(
            "cannot resolve path {}: {e}",
            escape(&p.display().to_string())
        ))
    })
}

/// Checks what people and agents say about a process: label, details and
/// workflow metadata (shared by `run` and `adopt`).
fn check_identity(label: &str, details: Option<&str>, m: &Metadata) -> Result<()> {
    check_label(label)?;
    check_about(details, m)
}

fn check_label(label: &str) -> Result<()> {
    check_text("--label", label, MAX_TEXT)?;
    if label.trim().is_empty() {
        return Err(Error::invalid("--label is empty")
            .hint("give a short name for the process")
            .about(Field::Label));
    }
    Ok(())
}

fn check_about(details: Option<&str>, m: &Metadata) -> Result<()> {
    if let Some(d) = details {
        check_text("--details", d, MAX_DETAILS)?;
    }
    for (flag, value) in [
        ("--workflow", &m.workflow),
        ("--gap", &m.gap),
        ("--session", &m.session),
        ("--mode", &m.mode),
        ("--runner", &m.runner),
    ] {
        if let Some(v) = value {
            check_text(flag, v, MAX_TEXT)?;
        }
    }
    for (k, v) in &m.extra {
        check_text("--meta key", k, 256)?;
        check_text("--meta value", v, MAX_TEXT)?;
    }
    Ok(())
}

fn check_text(flag: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(format!(
            "{flag} is {} bytes, more than the {max} accepted",
            value.len()
        ))
        .hint("shorten it; put long text in a file and pass its path"));
    }
    if value.contains('\0') {
        return Err(Error::invalid(format!("{flag} contains a NUL byte")));
    }
    Ok(())
}

/// Limits a library caller may have filled in by hand get the checks the
/// CLI's parsers make.
fn check_limits(l: &Limits) -> Result<()> {
    let out_of_range =
        |flag: &str, v: u64| Err(Error::invalid(format!("{flag} {v} is out of range")));
    if let Some(w) = l
        .cpu_weight
        .filter(|w| !crate::model::CPU_WEIGHT_RANGE.contains(w))
    {
        return out_of_range("--cpu-weight", w)
            .map_err(|e: Error| e.hint("use 1 to 10000").about(Field::CpuWeight));
    }
    if let Some(p) = l
        .cpu_quota_percent
        .filter(|p| !(1..=crate::model::MAX_CPU_QUOTA_PERCENT).contains(p))
    {
        return out_of_range("--cpu-quota", p);
    }
    for (flag, v) in [
        ("--memory-max", l.memory_max),
        ("--memory-high", l.memory_high),
        ("--tasks-max", l.tasks_max),
        ("--runtime-max", l.runtime_max_sec),
        ("--timeout-stop", l.timeout_stop_sec),
    ] {
        if let Some(v) = v.filter(|v| *v == 0 || *v == u64::MAX) {
            return out_of_range(flag, v);
        }
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<()> {
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(Error::invalid(format!(
            "invalid environment variable name {:?}",
            escape(name)
        ))
        .hint("names use letters, digits and _, and do not start with a digit")
        .about(Field::Env));
    }
    // systemd gives the exit hook these; a unit's Environment= would
    // override them and forge the recorded exit.
    let set_by_systemd = [
        "SERVICE_RESULT",
        "EXIT_CODE",
        "EXIT_STATUS",
        "INVOCATION_ID",
        "MAINPID",
    ];
    if set_by_systemd.contains(&name) || name.starts_with("MONITOR_") {
        return Err(Error::invalid(format!(
            "environment variable {name} is reserved: systemd sets it to report exits"
        ))
        .hint("choose another name")
        .about(Field::Env));
    }
    if name.starts_with("REFINE_") {
        return Err(Error::invalid(format!(
            "environment variable {name} is reserved: refine-proc sets REFINE_* itself"
        ))
        .hint("use --meta KEY=VALUE for extra metadata")
        .about(Field::Env));
    }
    Ok(())
}

/// Finds the program as a shell would, so a typo fails here, before systemd
/// is asked for anything (systemd-run does the same).
fn resolve_executable(program: &str, cwd: &Path, path: Option<&OsStr>) -> Result<PathBuf> {
    let not_found = || {
        Error::invalid(format!("command not found: {}", escape(program)))
            .hint("check the spelling, give an absolute path, or fix PATH")
            .about(Field::Command)
    };
    if program.is_empty() {
        return Err(not_found());
    }
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![cwd.join(program)]
    } else {
        path.map(|p| std::env::split_paths(p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    let mut not_executable = None;
    for c in candidates {
        let Ok(meta) = std::fs::metadata(&c) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return absolute(&c);
        }
        not_executable.get_or_insert(c);
    }
    match not_executable {
        Some(path) => Err(Error::invalid(format!(
            "{} is not an executable file",
            escape(&path.display().to_string())
        ))
        .hint(format!("make it executable: chmod +x {}", path.display()))),
        None => Err(not_found()),
    }
}

/// Refuses a file the kernel will not execute, where that can be told in
/// advance: a `#!` line naming no executable interpreter, or (without
/// binfmt_misc handlers) neither ELF nor `#!`. systemd's start job now
/// ends once refine-proc's `exec-unit` runs, so such a failure would show
/// only afterwards, as status 203.
fn check_executable_format(path: &Path, cwd: &Path, binfmt_misc: bool) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 256];
    // An execute-only binary cannot be read: the kernel decides.
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return Ok(());
    };
    let head = &head[..n];
    let shown = escape(&path.display().to_string());
    let run_with = format!(
        "or run it with its interpreter: refine-proc run -- sh {}",
        path.display()
    );
    if head.starts_with(b"\x7fELF") {
        return Ok(());
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let interpreter = line
            .split(|b| *b == b' ' || *b == b'\t')
            .find(|t| !t.is_empty())
            .map(|t| cwd.join(std::ffi::OsStr::from_bytes(t)));
        let runnable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        return match interpreter {
            Some(i) if runnable(&i) => Ok(()),
            Some(i) => Err(Error::invalid(format!(
                "{shown} cannot be executed: its #! line names {}, which is not an executable file",
                escape(&i.display().to_string())
            ))
            .hint(format!("fix its first line, {run_with}"))),
            None => Err(Error::invalid(format!(
                "{shown} cannot be executed: its #! line names no interpreter"
            ))
            .hint(format!("fix its first line, {run_with}"))),
        };
    }
    if binfmt_misc {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{shown} cannot be executed: it is neither a program (ELF) nor a script with a #! line"
    ))
    .hint(format!("add a #! line such as #!/bin/sh, {run_with}")))
}

/// Whether the kernel has binfmt_misc handlers, which execute other formats.
fn binfmt_misc_in_use() -> bool {
    std::fs::read_dir("/proc/sys/fs/binfmt_misc").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| !matches!(e.file_name().to_str(), Some("register" | "status")))
    })
}

/// One D-Bus property value, as data (converted to a zvariant at the edge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    Str(String),
    U64(u64),
    Strs(Vec<String>),
    U32(u32),
    /// `au`, e.g. a scope's PIDs.
    U32s(Vec<u32>),
    /// `ExecStart`-style a(sasb): path, argv, ignore-failure.
    Exec(Vec<(String, Vec<String>, bool)>),
    Bool(bool),
    /// `ExecStartEx`-style a(sasas): path, argv, flags ("privileged", ...).
    ExecEx(Vec<(String, Vec<String>, Vec<String>)>),
    /// Not a D-Bus property: a drop-in file written beside the transient
    /// unit before it is started (see [`crate::confine::exit_hook`]).
    DropIn {
        file: String,
        text: String,
    },
}

/// Restart timing needs a restart policy (or restarts on unhealthy), and
/// sane numbers. Growing delays start at 1 s unless told.
fn check_restart(
    policy: RestartPolicy,
    unhealthy_restarts: bool,
    t: &mut crate::model::RestartTiming,
) -> Result<()> {
    let given = t.delay_sec.is_some()
        || t.max_delay_sec.is_some()
        || t.limit_burst.is_some()
        || t.limit_interval_sec.is_some();
    if given && policy == RestartPolicy::No && !unhealthy_restarts {
        return Err(Error::invalid(
            "--restart-delay, --restart-max-delay and --restart-limit need a restart policy",
        )
        .hint("add --restart on-failure (or always), or --on-unhealthy restart with a health check")
        .about(Field::Restart));
    }
    if t.max_delay_sec.is_some() && t.delay_sec.is_none() {
        t.delay_sec = Some(1);
    }
    if let (Some(d), Some(m)) = (t.delay_sec, t.max_delay_sec) {
        if m < d {
            return Err(Error::invalid(format!(
                "--restart-max-delay ({m}s) is shorter than --restart-delay ({d}s)"
            ))
            .hint("the delays grow from --restart-delay up to --restart-max-delay")
            .about(Field::RestartMaxDelay));
        }
    }
    if t.limit_burst == Some(0) {
        return Err(
            Error::invalid("--restart-limit must allow at least 1 start")
                .hint("e.g. --restart-limit 5/10min")
                .about(Field::RestartLimit),
        );
    }
    Ok(())
}

/// `notify` for `--ready notify` (the start completes at READY=1), else
/// `exec` (the start completes once the program is executed).
fn unit_type(launch: &Launch) -> &'static str {
    match &launch.ready {
        Some(r) if r.on == crate::model::Readiness::Notify => "notify",
        _ => "exec",
    }
}

/// How systemd restarts the process. With growing delays, systemd 254's
/// RestartSteps= does it; where the daemon does it instead, systemd does
/// not restart at all (the daemon starts it again).
fn restart_properties(launch: &Launch) -> Vec<(&'static str, Prop)> {
    use crate::model::RestartBy;
    let t = &launch.restart_timing;
    let usec = |s: u64| Prop::U64(s.saturating_mul(1_000_000));
    let mut props = Vec::new();
    // Timing without a restart policy is the daemon's, for its restarts
    // on unhealthy: systemd restarts nothing (and 252 has no RestartSteps=).
    if launch.restart_by == RestartBy::Daemon || launch.restart == RestartPolicy::No {
        props.push(("Restart", Prop::Str("no".into())));
    } else {
        props.push(("Restart", Prop::Str(launch.restart.as_str().into())));
        if let Some(d) = t.delay_sec {
            props.push(("RestartUSec", usec(d)));
        }
        if let (Some(max), Some(d)) = (t.max_delay_sec, t.delay_sec) {
            props.push(("RestartSteps", Prop::U32(restart_steps(d, max))));
            props.push(("RestartMaxDelayUSec", usec(max)));
        }
    }
    if let Some(b) = t.limit_burst {
        props.push(("StartLimitBurst", Prop::U32(b)));
    }
    if let Some(i) = t.limit_interval_sec {
        props.push(("StartLimitIntervalUSec", usec(i)));
    }
    props
}

/// How many doublings take `delay` to `max` (RestartSteps=, at least 1).
pub fn restart_steps(delay: u64, max: u64) -> u32 {
    let mut steps = 0;
    let mut d = delay.max(1);
    while d < max && steps < 64 {
        d = d.saturating_mul(2);
        steps += 1;
    }
    steps.max(1)
}

/// The delay before the daemon's `n`th consecutive restart (0-based):
/// `delay` doubling up to `max`.
pub fn backoff_delay(delay: u64, max: u64, n: u32) -> u64 {
    delay
        .saturating_mul(1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX))
        .min(max.max(delay))
}

/// `ExecStart=`: refine-proc's `exec-unit`, which executes the command
/// it decodes in its own process. The process finds refine-proc on PATH
/// unless `--env PATH=` says otherwise.
fn exec_start(id: &str, launch: &Launch, hook: &UnitContext) -> (String, Vec<String>, bool) {
    // With `--pty` the holder (this binary's `pty-hold`) runs in front of
    // the program, encoded the same way: its argv survives a reload too.
    let (executable, argv) = match &launch.pty {
        None => (
            launch.executable.clone().into_os_string(),
            launch.command.iter().map(Into::into).collect(),
        ),
        Some(pty) => (
            hook.program.clone().into_os_string(),
            pty.hold_argv(id, &launch.executable, &launch.command)
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
    };
    let command = unitexec::UnitCommand {
        executable,
        argv,
        add_own_dir_to_path: !launch.environment.contains_key("PATH"),
    };
    let mut argv = vec!["refine-proc".to_string(), unitexec::EXEC_UNIT.to_string()];
    argv.extend(command.encode());
    (hook.program.display().to_string(), argv, false)
}

/// What the controller gives every unit it starts: the exit hook, and the
/// index and policy that the unit's own requests go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitContext {
    /// Absolute path of the refine-proc binary systemd runs to start the
    /// command (`exec-unit`) and after each exit (`record-exit`).
    pub program: PathBuf,
    /// The index directory, passed explicitly so the hook never guesses.
    pub state_dir: PathBuf,
    /// The policy that governed this launch; it governs the unit's own
    /// requests too (read from the unit, which the process cannot change).
    pub policy: PathBuf,
    /// Who asked for the run, kept in the unit so that a record rebuilt
    /// from systemd says so too.
    pub requested_by: crate::provenance::RequestedBy,
    /// The sandbox of a confined launch (see [`crate::confine`]).
    pub confinement: Option<crate::confine::Confinement>,
}

/// The REFINE_* variables a managed process sees, so it knows who it is
/// (and so the record can be rebuilt from systemd if the index is lost).
pub fn refine_environment(id: &str, launch: &Launch, context: &UnitContext) -> Vec<String> {
    let m = &launch.metadata;
    let mut env = vec![
        format!("REFINE_ID={id}"),
        format!("REFINE_OWNER={}", launch.owner),
        format!("REFINE_UNIT={}", crate::model::unit_name(launch.owner, id)),
        format!("REFINE_LABEL={}", launch.label),
        format!("REFINE_PROC_STATE_DIR={}", context.state_dir.display()),
        format!("REFINE_PROC_POLICY={}", context.policy.display()),
    ];
    if launch.persist {
        env.push("REFINE_PERSIST=1".into());
    }
    // For rebuilding the record: what is not in the unit otherwise. JSON
    // escapes every control character, so the values stay one line.
    let requested_by = serde_json::to_string(&context.requested_by).expect("serializable");
    env.push(format!("REFINE_REQUESTED_BY={requested_by}"));
    if !m.extra.is_empty() {
        let meta = serde_json::to_string(&m.extra).expect("serializable");
        env.push(format!("REFINE_META={meta}"));
    }
    if let Some(details) = &launch.details {
        env.push(format!("REFINE_DETAILS={details}"));
    }
    for (name, value) in [
        ("WORKFLOW", &m.workflow),
        ("GAP", &m.gap),
        ("SESSION", &m.session),
        ("MODE", &m.mode),
        ("RUNNER", &m.runner),
    ] {
        if let Some(v) = value {
            env.push(format!("REFINE_{name}={v}"));
        }
    }
    env
}

/// What [`refine_environment`] keeps for a rebuild and the unit has
/// nowhere else: details, `--meta` and who asked, put back into a record
/// rebuilt from the unit's environment. A unit started before these
/// variables existed gets the user manager's uid (a user manager runs only
/// its own user's units) and the policy its environment names.
pub fn restore_from_environment(env: &BTreeMap<String, String>, record: &mut crate::model::Record) {
    record.details = env.get("REFINE_DETAILS").cloned().or(record.details.take());
    if let Some(meta) = env.get("REFINE_META") {
        match serde_json::from_str(meta) {
            Ok(extra) => record.metadata.extra = extra,
            Err(e) => tracing::warn!(record = %record.id, "REFINE_META does not parse: {e}"),
        }
    }
    let stored = env
        .get("REFINE_REQUESTED_BY")
        .and_then(|v| serde_json::from_str(v).ok());
    record.requested_by = stored.unwrap_or_else(|| crate::provenance::RequestedBy {
        uid: crate::provenance::uid(),
        policy: env.get("REFINE_PROC_POLICY").cloned(),
        ..Default::default()
    });
}

/// systemd's Description: owner and label on one safe line; what
/// `systemctl --user list-units` shows next to the unit.
pub fn description(owner: Owner, label: &str) -> String {
    let label = crate::text::truncate(&escape(label), MAX_DESCRIPTION);
    format!("{label} (refine-proc {owner})")
}

/// All properties of the transient service for `launch`, in layers as
/// systemd-run builds them: identity, execution, exit hook, limits.
pub fn service_properties(
    id: &str,
    launch: &Launch,
    hook: &UnitContext,
) -> Vec<(&'static str, Prop)> {
    let unit = crate::model::unit_name(launch.owner, id);
    let ident = unit.trim_end_matches(".service").to_string();
    let mut env = refine_environment(id, launch, hook);
    env.extend(launch.environment.iter().map(|(k, v)| format!("{k}={v}")));
    let mut props = vec![
        (
            "Description",
            Prop::Str(description(launch.owner, &launch.label)),
        ),
        ("Slice", Prop::Str(launch.owner.slice())),
        // exec: a command that cannot be executed fails the start job.
        ("Type", Prop::Str(unit_type(launch).into())),
        // Unload failed units too; the exit hook has recorded the outcome.
        ("CollectMode", Prop::Str("inactive-or-failed".into())),
        // A unique identifier carried in the stream header: journald then
        // attributes every line, even from a process that exits at once.
        ("SyslogIdentifier", Prop::Str(ident)),
        (
            "WorkingDirectory",
            Prop::Str(launch.cwd.display().to_string()),
        ),
        ("Environment", Prop::Strs(env)),
        // The command and the index directory reach systemd only as hex,
        // which its unit-file quoting leaves alone: a daemon-reload reads
        // other text back changed (`;` as `\;`, `$$` as `\$\$`), and every
        // later start would run another command (see crate::unitexec).
        ("ExecStart", Prop::Exec(vec![exec_start(id, launch, hook)])),
        (
            "ExecStopPost",
            Prop::Exec(vec![(
                hook.program.display().to_string(),
                vec![
                    "refine-proc".into(),
                    "record-exit".into(),
                    unitexec::INDEX_HEX.into(),
                    unitexec::hex(hook.state_dir.as_os_str().as_bytes()),
                    id.into(),
                ],
                // ignore-failure
                true,
            )]),
        ),
    ];
    props.extend(restart_properties(launch));
    if let Some(c) = &hook.confinement {
        confine_properties(&mut props, c, launch, hook);
    }
    if let Some(ready) = &launch.ready {
        if ready.on == crate::model::Readiness::Notify {
            // Any of its processes may say READY=1: scripts call
            // systemd-notify, a child of the main process.
            props.push(("NotifyAccess", Prop::Str("all".into())));
            if let Some(t) = ready.timeout_sec {
                props.push(("TimeoutStartUSec", Prop::U64(t.saturating_mul(1_000_000))));
            }
        }
    }
    let l = &launch.limits;
    if let Some(v) = l.memory_max {
        props.push(("MemoryMax", Prop::U64(v)));
    }
    if let Some(p) = l.cpu_quota_percent {
        props.push(("CPUQuotaPerSecUSec", Prop::U64(p * 10_000)));
    }
    if let Some(v) = l.tasks_max {
        props.push(("TasksMax", Prop::U64(v)));
    }
    if let Some(s) = l.runtime_max_sec {
        props.push(("RuntimeMaxUSec", Prop::U64(s.saturating_mul(1_000_000))));
    }
    if let Some(v) = l.memory_high {
        props.push(("MemoryHigh", Prop::U64(v)));
    }
    if let Some(v) = l.cpu_weight {
        props.push(("CPUWeight", Prop::U64(v)));
    }
    if let Some(s) = l.timeout_stop_sec {
        props.push(("TimeoutStopUSec", Prop::U64(s.saturating_mul(1_000_000))));
    }
    props
}

/// Confines a unit: the sandbox, and its exit hook made privileged (the
/// hook's arguments stay as built above; only how it runs changes).
fn confine_properties(
    props: &mut Vec<(&'static str, Prop)>,
    c: &crate::confine::Confinement,
    launch: &Launch,
    hook: &UnitContext,
) {
    // The hook as built above, in either form systemd takes it.
    let hooks: Vec<(String, Vec<String>, Vec<String>)> = match props
        .iter()
        .position(|(k, _)| *k == "ExecStopPost" || *k == "ExecStopPostEx")
        .map(|i| props.remove(i).1)
    {
        Some(Prop::Exec(cmds)) => cmds
            .into_iter()
            .map(|(path, argv, ignore)| {
                let flags = if ignore {
                    vec!["ignore-failure".to_string()]
                } else {
                    vec![]
                };
                (path, argv, flags)
            })
            .collect(),
        Some(Prop::ExecEx(cmds)) => cmds,
        _ => Vec::new(),
    };
    for (path, argv, flags) in hooks {
        let (ex, drop_in) = crate::confine::exit_hook(&path, &argv, &flags);
        props.push(("ExecStopPostEx", ex));
        props.push(("DropIn", drop_in));
    }
    let notify = launch
        .ready
        .as_ref()
        .is_some_and(|r| r.on == crate::model::Readiness::Notify);
    props.extend(crate::confine::properties(
        c,
        &hook.state_dir,
        &hook.policy,
        notify,
    ));
}

/// The properties of the transient scope that adopts `adoption`: identity
/// and the pids to move. A scope runs nothing, so it has no environment,
/// command or exit hook.
pub fn scope_properties(adoption: &Adoption) -> Vec<(&'static str, Prop)> {
    vec![
        (
            "Description",
            Prop::Str(description(adoption.owner, &adoption.label)),
        ),
        ("Slice", Prop::Str(adoption.owner.slice())),
        ("PIDs", Prop::U32s(adoption.pids())),
        // A failed scope (e.g. killed at the stop timeout) is collected too.
        ("CollectMode", Prop::Str("inactive-or-failed".into())),
    ]
}

/// The properties that make a running unit's (or a slice's) limits what
/// `change` says, for SetUnitProperties. `infinity` is u64::MAX, which
/// systemd reads as "no limit" (CPUWeight: "not set", the default).
pub fn limit_properties(change: &LimitChange) -> Vec<(&'static str, Prop)> {
    let raw = |v: LimitValue, scale: u64| match v {
        LimitValue::Value(n) => Prop::U64(n.saturating_mul(scale)),
        LimitValue::Infinity => Prop::U64(u64::MAX),
    };
    [
        ("MemoryMax", change.memory_max, 1),
        ("MemoryHigh", change.memory_high, 1),
        // 150% = 1.5 s of CPU time per second.
        ("CPUQuotaPerSecUSec", change.cpu_quota_percent, 10_000),
        ("CPUWeight", change.cpu_weight, 1),
        ("TasksMax", change.tasks_max, 1),
    ]
    .into_iter()
    .filter_map(|(name, v, scale)| v.map(|v| (name, raw(v, scale))))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_error_names_its_input_for_every_surface() {
        let no_cwd = CallerEnv {
            cwd: None,
            path: None,
        };
        let spec = |command: &[&str]| RunSpec {
            command: command.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let e = spec(&["true"]).validate_in(&no_cwd).unwrap_err();
        assert_eq!(e.field, Some(Field::Cwd));
        assert_eq!(
            (Field::Cwd.flag(), Field::Cwd.json_field()),
            ("--cwd", "cwd")
        );
        // The CLI's words stay as they were.
        assert_eq!(e.hint.as_deref(), Some("pass --cwd DIR"));
        let e = spec(&[]).validate_in(&no_cwd).unwrap_err();
        assert_eq!(e.field, Some(Field::Command));
        let e = RunSpec {
            cwd: Some("/".into()),
            ..spec(&["no-such-program-refine"])
        }
        .validate_in(&no_cwd)
        .unwrap_err();
        assert_eq!(e.field, Some(Field::Command), "{e}");
    }

    fn spec(cmd: &[&str]) -> RunSpec {
        RunSpec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            cwd: Some("/".into()),
            ..Default::default()
        }
    }

    fn hook() -> UnitContext {
        UnitContext {
            program: "/usr/bin/refine-proc".into(),
            state_dir: "/home/u/.local/state/refine-proc".into(),
            policy: "/home/u/.config/refine-proc/policy.toml".into(),
            requested_by: Default::default(),
            confinement: None,
        }
    }

    #[test]
    fn a_rebuilt_record_keeps_who_asked_its_meta_and_details() {
        // Issue 10.11: rebuilt after quarantine, a record of uid 1001 said
        // `requested_by.uid: 0` and had lost its --meta.
        let mut s = spec(&["true"]);
        s.details = Some("why\nit runs".into());
        s.metadata
            .extra
            .insert("ticket".into(), "T-1 \"x\"\n\u{1b}".into());
        let launch = s.validate().unwrap();
        let mut context = hook();
        context.requested_by = crate::provenance::RequestedBy {
            uid: 1001,
            acting_owner: Some(Owner::Agent),
            parent: Some("bcde2345".into()),
            policy: Some("/p.toml".into()),
        };
        let env: BTreeMap<String, String> = refine_environment("abcd2345", &launch, &context)
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(!env["REFINE_META"].contains('\n'), "one line");
        let mut r: crate::model::Record = serde_json::from_value(serde_json::json!({
            "schema": crate::model::RECORD_SCHEMA, "id": "abcd2345",
            "unit": "refine-agent-abcd2345.service", "owner": "agent", "state": "running"
        }))
        .unwrap();
        restore_from_environment(&env, &mut r);
        assert_eq!(r.requested_by, context.requested_by);
        assert_eq!(r.metadata.extra, launch.metadata.extra);
        assert_eq!(r.details.as_deref(), Some("why\nit runs"));
        // A unit from before: the manager's own uid, the policy it names.
        let old: BTreeMap<String, String> =
            [("REFINE_PROC_POLICY".to_string(), "/q.toml".to_string())].into();
        restore_from_environment(&old, &mut r);
        assert_eq!(r.requested_by.uid, crate::provenance::uid());
        assert_eq!(r.requested_by.policy.as_deref(), Some("/q.toml"));
    }

    #[test]
    fn growing_restart_delays_go_to_systemd_254_or_to_the_daemon() {
        use crate::model::{RestartBy, RestartTiming};
        assert_eq!(restart_steps(1, 60), 6, "1 2 4 8 16 32 60");
        assert_eq!(restart_steps(5, 5), 1);
        assert_eq!(
            (0..5).map(|n| backoff_delay(1, 4, n)).collect::<Vec<_>>(),
            [1, 2, 4, 4, 4]
        );
        assert_eq!(backoff_delay(3, 1000, 200), 1000, "no overflow");
        let mut s = spec(&["true"]);
        s.restart = RestartPolicy::OnFailure;
        s.restart_timing = RestartTiming {
            max_delay_sec: Some(8),
            limit_burst: Some(5),
            limit_interval_sec: Some(600),
            ..Default::default()
        };
        let mut l = s.validate().unwrap();
        assert_eq!(
            l.restart_timing.delay_sec,
            Some(1),
            "growing delays start at 1 s"
        );
        let names = |l: &Launch| -> Vec<(&'static str, Prop)> { restart_properties(l) };
        let by_systemd = names(&l);
        assert!(by_systemd.contains(&("Restart", Prop::Str("on-failure".into()))));
        assert!(by_systemd.contains(&("RestartSteps", Prop::U32(3))));
        assert!(by_systemd.contains(&("RestartMaxDelayUSec", Prop::U64(8_000_000))));
        assert!(by_systemd.contains(&("StartLimitBurst", Prop::U32(5))));
        l.restart_by = RestartBy::Daemon;
        let by_daemon = names(&l);
        assert!(by_daemon.contains(&("Restart", Prop::Str("no".into()))));
        assert!(
            !by_daemon
                .iter()
                .any(|(k, _)| k.starts_with("Restart") && *k != "Restart"),
            "systemd 252 knows no RestartSteps: {by_daemon:?}"
        );
    }

    #[test]
    fn resolves_the_program_before_anything_runs() {
        let l = spec(&["sh", "-c", "exit 0"]).validate().unwrap();
        assert!(l.executable.is_absolute() && l.executable.ends_with("sh"));
        assert_eq!(l.label, "sh");
        assert_eq!(l.owner, Owner::UserHelper);
        let e = spec(&["no-such-program-xyz"]).validate().unwrap_err();
        assert!(e.message.contains("command not found"), "{e}");
        let e = spec(&[]).validate().unwrap_err();
        assert!(e.hint.unwrap().contains("--"));
        let e = spec(&["/etc/passwd"]).validate().unwrap_err();
        assert!(e.message.contains("not an executable"), "{e}");
    }

    #[test]
    fn a_file_the_kernel_will_not_execute_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let check = |p: &Path, binfmt| check_executable_format(p, dir.path(), binfmt);
        assert!(check(Path::new("/bin/sh"), false).is_ok(), "ELF");
        assert!(check(&file("ok", b"#!/bin/sh\nexit 0\n"), false).is_ok());
        assert!(check(&file("args", b"#!  /bin/sh -e\n"), false).is_ok());
        file("interp", b"#!/bin/sh\n");
        assert!(check(&file("relative", b"#!interp\n"), false).is_ok());
        let e = check(&file("bad", b"#!/no/such/python\n"), false).unwrap_err();
        assert!(e.message.contains("/no/such/python"), "{e}");
        assert!(check(&file("empty-line", b"#!\n"), false).is_err());
        let plain = file("plain", b"echo hi\n");
        let e = check(&plain, false).unwrap_err();
        assert!(e.hint.as_deref().unwrap().contains("#!/bin/sh"), "{e}");
        assert!(check(&plain, true).is_ok(), "binfmt_misc may run it");
    }

    #[test]
    fn rejects_bad_directories_env_names_and_huge_text() {
        let mut s = spec(&["true"]);
        s.cwd = Some("/no/such/dir".into());
        assert!(s
            .validate()
            .unwrap_err()
            .message
            .contains("working directory"));
        for bad in [
            "1X",
            "A-B",
            "",
            "REFINE_ID",
            "SERVICE_RESULT",
            "EXIT_STATUS",
            "MONITOR_X",
        ] {
            let mut s = spec(&["true"]);
            s.environment.insert(bad.into(), "v".into());
            assert!(s.validate().is_err(), "{bad}");
        }
        let mut s = spec(&["true"]);
        s.label = Some("x".repeat(MAX_TEXT + 1));
        assert!(s.validate().unwrap_err().message.contains("--label"));
    }

    #[test]
    fn pty_holder_exec_start_was_plain_text_systemd_rewrote_at_reload() {
        let mut l = spec(&["sh", "-c", "echo $$; a;b", "\\;"])
            .validate()
            .unwrap();
        l.pty = Some(crate::pty::PtyLaunch {
            rows: 24,
            cols: 80,
            dir: "/run/user/1000/refine-proc/pty".into(),
        });
        let props = service_properties("abcd2345", &l, &hook());
        let Some((_, Prop::Exec(exec))) = props.iter().find(|(n, _)| *n == "ExecStart") else {
            panic!()
        };
        assert_eq!(exec[0].1[..2], ["refine-proc", "exec-unit"]);
        assert!(exec[0].1[2..]
            .iter()
            .all(|a| a.bytes().all(|b| b.is_ascii_hexdigit())));
        let c = crate::unitexec::UnitCommand::decode(&exec[0].1[2..]).unwrap();
        assert_eq!(c.executable, "/usr/bin/refine-proc");
        let argv: Vec<_> = c.argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(argv[..2], ["refine-proc", "pty-hold"]);
        assert_eq!(argv[argv.len() - 4..], ["sh", "-c", "echo $$; a;b", "\\;"]);
        // What a rebuilt record says it runs: the user's command.
        let back = crate::unitexec::command_of_exec_start(&exec[0].1).unwrap();
        assert_eq!(back, ["sh", "-c", "echo $$; a;b", "\\;"]);
    }

    #[test]
    fn hostile_text_is_kept_verbatim_in_argv_and_escaped_in_the_description() {
        let mut s = spec(&["echo", "$HOME", "a\nb", "'\""]);
        s.label = Some("evil\n\x1b[2Jlabel".into());
        let l = s.validate().unwrap();
        let props = service_properties("abcd2345", &l, &hook());
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        let Prop::Exec(exec) = get("ExecStart") else {
            panic!()
        };
        // Only hex after `exec-unit`: nothing systemd could rewrite.
        assert_eq!(exec[0].0, "/usr/bin/refine-proc");
        assert_eq!(exec[0].1[..2], ["refine-proc", "exec-unit"]);
        assert!(exec[0].1[2..]
            .iter()
            .all(|a| a.bytes().all(|b| b.is_ascii_hexdigit())));
        let back = crate::unitexec::command_of_exec_start(&exec[0].1).unwrap();
        assert_eq!(back, vec!["echo", "$HOME", "a\nb", "'\""]);
        let Prop::Exec(hook) = get("ExecStopPost") else {
            panic!()
        };
        assert_eq!(hook[0].1[1..3], ["record-exit", crate::unitexec::INDEX_HEX]);
        assert_eq!(hook[0].1[4], "abcd2345");
        let dir = crate::unitexec::unhex(&hook[0].1[3]).unwrap();
        assert_eq!(dir, b"/home/u/.local/state/refine-proc");
        let e = spec(&["echo", "a\0b"]).validate().unwrap_err();
        assert!(e.message.contains("NUL"), "{e}");
        assert_eq!(
            get("Description"),
            Prop::Str("evil\\n\\u{1b}[2Jlabel (refine-proc user-helper)".into())
        );
        let Prop::Strs(env) = get("Environment") else {
            panic!()
        };
        assert!(env.contains(&"REFINE_LABEL=evil\n\x1b[2Jlabel".to_string()));
    }

    #[test]
    fn a_scope_gets_identity_and_every_pid_but_nothing_to_execute() {
        let a = Adoption {
            pid: 40,
            descendants: vec![41, 42],
            command: vec!["sh".into()],
            cwd: None,
            cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope".into(),
            owner: Owner::TargetApp,
            label: "dev\nserver".into(),
            details: None,
            metadata: Default::default(),
            left: Vec::new(),
        };
        let props = scope_properties(&a);
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
        assert_eq!(get("PIDs"), Some(Prop::U32s(vec![40, 41, 42])));
        assert_eq!(
            get("Slice"),
            Some(Prop::Str("refine-target\\x2dapp.slice".into()))
        );
        assert_eq!(
            get("Description"),
            Some(Prop::Str("dev\\nserver (refine-proc target-app)".into()))
        );
        assert_eq!(
            get("CollectMode"),
            Some(Prop::Str("inactive-or-failed".into()))
        );
        for absent in ["Environment", "ExecStart", "ExecStopPost", "Type"] {
            assert_eq!(get(absent), None, "{absent}");
        }
    }

    #[test]
    fn adoption_checks_the_text_and_the_pid_before_anything_else() {
        let spec = |pid: u32| AdoptSpec {
            pid,
            ..Default::default()
        };
        assert_eq!(
            spec(0).validate().unwrap_err().kind,
            crate::ErrorKind::NotFound
        );
        let e = spec(1).validate().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Refused);
        assert!(e.message.contains("init"), "{e}");
        let e = spec(std::process::id()).validate().unwrap_err();
        assert!(e.message.contains("refine-proc itself"), "{e}");
        let mut s = spec(1);
        s.label = Some(" ".into());
        assert_eq!(s.validate().unwrap_err().kind, crate::ErrorKind::Invalid);
    }

    #[test]
    fn a_process_outside_the_managers_subtree_is_refused_with_the_fix() {
        let mut a = Adoption {
            pid: 40,
            descendants: Vec::new(),
            command: vec!["sh".into()],
            cwd: None,
            cgroup: "/user.slice/user-1000.slice/session-3.scope".into(),
            owner: Owner::Agent,
            label: "x".into(),
            details: None,
            metadata: Default::default(),
            left: Vec::new(),
        };
        let root = "/user.slice/user-1000.slice/user@1000.service";
        let e = a.restrict_to_subtree(root).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Refused);
        assert!(e.hint.unwrap().contains("refine-proc run"));
        a.cgroup = format!("{root}/init.scope");
        let e = a.restrict_to_subtree(root).unwrap_err();
        assert!(e.message.contains("user manager itself"), "{e}");
        a.cgroup = format!("{root}/app.slice/app-term.scope");
        a.restrict_to_subtree(root).unwrap();
    }

    #[test]
    fn properties_carry_identity_hook_and_limits() {
        let mut s = spec(&["sleep", "1"]);
        s.owner = Some(Owner::Agent);
        s.limits = Limits {
            memory_max: Some(1 << 30),
            cpu_quota_percent: Some(150),
            tasks_max: Some(64),
            runtime_max_sec: Some(90),
            memory_high: Some(768 << 20),
            cpu_weight: Some(50),
            timeout_stop_sec: Some(5),
        };
        s.restart = RestartPolicy::OnFailure;
        let props = service_properties("abcd2345", &s.validate().unwrap(), &hook());
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
        assert_eq!(get("Slice"), Some(Prop::Str("refine-agent.slice".into())));
        assert_eq!(get("Type"), Some(Prop::Str("exec".into())));
        assert_eq!(
            get("SyslogIdentifier"),
            Some(Prop::Str("refine-agent-abcd2345".into()))
        );
        assert_eq!(get("MemoryMax"), Some(Prop::U64(1 << 30)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(1_500_000)));
        assert_eq!(get("RuntimeMaxUSec"), Some(Prop::U64(90_000_000)));
        assert_eq!(get("TasksMax"), Some(Prop::U64(64)));
        assert_eq!(get("MemoryHigh"), Some(Prop::U64(768 << 20)));
        assert_eq!(get("CPUWeight"), Some(Prop::U64(50)));
        assert_eq!(get("TimeoutStopUSec"), Some(Prop::U64(5_000_000)));
        assert_eq!(get("Restart"), Some(Prop::Str("on-failure".into())));
        let Some(Prop::Exec(hook)) = get("ExecStopPost") else {
            panic!()
        };
        assert_eq!(hook[0].1.last().unwrap(), "abcd2345");
        assert!(hook[0].2, "ignore-failure");
    }

    #[test]
    fn a_confined_launch_gets_the_sandbox_and_a_privileged_exit_hook() {
        let launch = spec(&["sleep", "1"]).validate().unwrap();
        let plain = service_properties("abcd2345", &launch, &hook());
        assert!(!plain
            .iter()
            .any(|(k, _)| *k == "PrivateUsers" || *k == "DropIn"));
        let mut confined = hook();
        confined.confinement = Some(crate::confine::Confinement {
            actor: "agent".into(),
            home: "/home/u".into(),
            runtime_dir: "/run/user/1000".into(),
            writable: vec![],
            runtime_entries: vec![],
            systemd_entries: vec![],
            private_pids: false,
        });
        let props = service_properties("abcd2345", &launch, &confined);
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|p| p.1.clone());
        assert_eq!(get("PrivateUsers"), Some(Prop::Bool(true)));
        assert_eq!(
            get("ExecStopPost"),
            None,
            "the unprivileged hook is replaced"
        );
        let Some(Prop::ExecEx(ex)) = get("ExecStopPostEx") else {
            panic!("no privileged hook")
        };
        let Some(Prop::Exec(was)) = plain
            .iter()
            .find(|(k, _)| *k == "ExecStopPost")
            .map(|p| p.1.clone())
        else {
            panic!()
        };
        // Same program and arguments; only how it runs changed.
        assert_eq!((&ex[0].0, &ex[0].1), (&was[0].0, &was[0].1));
        assert_eq!(ex[0].2, ["privileged", "ignore-failure"]);
        let Some(Prop::DropIn { text, .. }) = get("DropIn") else {
            panic!("no drop-in")
        };
        assert!(
            text.contains("ExecStopPost=+-\"/usr/bin/refine-proc\""),
            "{text}"
        );
        assert!(text.contains("\"record-exit\" \"--index-hex\""), "{text}");
        assert!(text.trim_end().ends_with("\"abcd2345\""), "{text}");
    }

    #[test]
    fn unset_limits_are_not_sent() {
        let props = service_properties("abcd2345", &spec(&["true"]).validate().unwrap(), &hook());
        for name in [
            "MemoryMax",
            "MemoryHigh",
            "CPUQuotaPerSecUSec",
            "CPUWeight",
            "TasksMax",
            "RuntimeMaxUSec",
            "TimeoutStopUSec",
        ] {
            assert!(props.iter().all(|(n, _)| *n != name), "{name} sent");
        }
    }

    #[test]
    fn a_limit_change_sets_values_and_clears_with_infinity() {
        let change = LimitChange {
            memory_max: Some(LimitValue::Value(8 << 30)),
            memory_high: Some(LimitValue::Infinity),
            cpu_quota_percent: Some(LimitValue::Value(250)),
            cpu_weight: Some(LimitValue::Infinity),
            tasks_max: None,
        };
        assert_eq!(
            limit_properties(&change),
            vec![
                ("MemoryMax", Prop::U64(8 << 30)),
                ("MemoryHigh", Prop::U64(u64::MAX)),
                ("CPUQuotaPerSecUSec", Prop::U64(2_500_000)),
                ("CPUWeight", Prop::U64(u64::MAX)),
            ]
        );
        let mut limits = Limits {
            memory_high: Some(1 << 30),
            tasks_max: Some(10),
            ..Default::default()
        };
        change.apply(&mut limits);
        assert_eq!(limits.memory_max, Some(8 << 30));
        assert_eq!(limits.memory_high, None);
        assert_eq!(limits.cpu_quota_percent, Some(250));
        assert_eq!(limits.tasks_max, Some(10), "untouched");
        assert!(limit_properties(&LimitChange::default()).is_empty());
    }

    #[test]
    fn a_limit_change_is_checked_before_anything_happens() {
        let e = LimitChange::default().validate().unwrap_err();
        assert!(e.hint.unwrap().contains("--memory-max"));
        let weight = |w| LimitChange {
            cpu_weight: Some(LimitValue::Value(w)),
            ..Default::default()
        };
        assert!(weight(0).validate().is_err());
        assert!(weight(10_001).validate().is_err());
        assert!(weight(10_000).validate().is_ok());
        let tasks = LimitChange {
            tasks_max: Some(LimitValue::Value(0)),
            ..Default::default()
        };
        assert!(tasks.validate().is_err());
        let clear = LimitChange {
            memory_max: Some(LimitValue::Infinity),
            ..Default::default()
        };
        assert!(clear.validate().is_ok());
    }
}
