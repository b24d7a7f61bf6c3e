//! Validation of a run: every input checked, and the program resolved against
//! the caller's cwd and PATH, before anything touches systemd.

use crate::error::{Error, ErrorKind, Field, Result};
use crate::model::{Limits, Metadata, Owner, RestartPolicy};
use crate::text::escape;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

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
        let cwd = resolve_cwd(self.cwd, env)?;
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
            check_text(Field::Env, " value", v, MAX_ENV_VALUE)?;
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
            return Err(Error::naming(
                ErrorKind::Invalid,
                [Field::Ready.into(), " health needs a health check".into()],
            )
            .hint_naming([
                "add ".into(),
                Field::HealthCmd.into(),
                ", ".into(),
                Field::HealthHttp.into(),
                " or ".into(),
                Field::HealthTcp.into(),
                ", or use ".into(),
                Field::Ready.into(),
                " notify".into(),
            ])
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

/// The working directory `cwd` names (else the caller's), as systemd wants
/// it: normalized, absolute, an existing directory.
fn resolve_cwd(cwd: Option<PathBuf>, env: &CallerEnv) -> Result<PathBuf> {
    let cwd = match cwd {
        Some(dir) => dir,
        None => env.cwd.clone().ok_or_else(|| {
            Error::invalid("cannot tell the caller's current directory")
                .hint_naming(["pass ".into(), Field::Cwd.into(), " DIR".into()])
                .about(Field::Cwd)
        })?,
    };
    match std::fs::canonicalize(&cwd) {
        Ok(dir) if dir.is_dir() => Ok(dir),
        _ => Err(Error::invalid(format!(
            "working directory {} does not exist or is not a directory",
            escape(&cwd.display().to_string())
        ))
        .hint_naming(["pass an existing directory to ".into(), Field::Cwd.into()])
        .about(Field::Cwd)),
    }
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

pub(super) fn check_label(label: &str) -> Result<()> {
    check_text(Field::Label, "", label, MAX_TEXT)?;
    if label.trim().is_empty() {
        return Err(Error::naming(
            ErrorKind::Invalid,
            [Field::Label.into(), " is empty".into()],
        )
        .hint("give a short name for the process")
        .about(Field::Label));
    }
    Ok(())
}

pub(super) fn check_about(details: Option<&str>, m: &Metadata) -> Result<()> {
    if let Some(d) = details {
        check_text(Field::Details, "", d, MAX_DETAILS)?;
    }
    for (field, value) in [
        (Field::Workflow, &m.workflow),
        (Field::Gap, &m.gap),
        (Field::Session, &m.session),
        (Field::Mode, &m.mode),
        (Field::Runner, &m.runner),
    ] {
        if let Some(v) = value {
            check_text(field, "", v, MAX_TEXT)?;
        }
    }
    for (k, v) in &m.extra {
        check_text(Field::Meta, " key", k, 256)?;
        check_text(Field::Meta, " value", v, MAX_TEXT)?;
    }
    Ok(())
}

/// Checks the text of `field` (`part` names a part of it: " key", " value").
fn check_text(field: Field, part: &str, value: &str, max: usize) -> Result<()> {
    let named = |rest: String| {
        Error::naming(ErrorKind::Invalid, [field.into(), part.into(), rest.into()]).about(field)
    };
    if value.len() > max {
        return Err(named(format!(
            " is {} bytes, more than the {max} accepted",
            value.len()
        ))
        .hint("shorten it; put long text in a file and pass its path"));
    }
    if value.contains('\0') {
        return Err(named(" contains a NUL byte".into()));
    }
    Ok(())
}

/// Limits a library caller may have filled in by hand get the checks the
/// CLI's parsers make.
fn check_limits(l: &Limits) -> Result<()> {
    let out_of_range = |field: Field, v: u64| {
        Err(Error::naming(
            ErrorKind::Invalid,
            [field.into(), format!(" {v} is out of range").into()],
        )
        .about(field))
    };
    if let Some(w) = l
        .cpu_weight
        .filter(|w| !crate::model::CPU_WEIGHT_RANGE.contains(w))
    {
        return out_of_range(Field::CpuWeight, w).map_err(|e: Error| e.hint("use 1 to 10000"));
    }
    if let Some(p) = l
        .cpu_quota_percent
        .filter(|p| !(1..=crate::model::MAX_CPU_QUOTA_PERCENT).contains(p))
    {
        return out_of_range(Field::CpuQuota, p);
    }
    for (field, v) in [
        (Field::MemoryMax, l.memory_max),
        (Field::MemoryHigh, l.memory_high),
        (Field::TasksMax, l.tasks_max),
        (Field::RuntimeMax, l.runtime_max_sec),
        (Field::TimeoutStop, l.timeout_stop_sec),
    ] {
        if let Some(v) = v.filter(|v| *v == 0 || *v == u64::MAX) {
            return out_of_range(field, v);
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
        .hint_naming([
            "use ".into(),
            Field::Meta.into(),
            " KEY=VALUE for extra metadata".into(),
        ])
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
pub(super) fn check_executable_format(path: &Path, cwd: &Path, binfmt_misc: bool) -> Result<()> {
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
        return Err(Error::naming(
            ErrorKind::Invalid,
            [
                Field::RestartDelay.into(),
                ", ".into(),
                Field::RestartMaxDelay.into(),
                " and ".into(),
                Field::RestartLimit.into(),
                " need a restart policy".into(),
            ],
        )
        .hint_naming([
            "add ".into(),
            Field::Restart.into(),
            " on-failure (or always), or ".into(),
            Field::OnUnhealthy.into(),
            " restart with a health check".into(),
        ])
        .about(Field::Restart));
    }
    if t.max_delay_sec.is_some() && t.delay_sec.is_none() {
        t.delay_sec = Some(1);
    }
    if let (Some(d), Some(m)) = (t.delay_sec, t.max_delay_sec) {
        if m < d {
            return Err(Error::naming(
                ErrorKind::Invalid,
                [
                    Field::RestartMaxDelay.into(),
                    format!(" ({m}s) is shorter than ").into(),
                    Field::RestartDelay.into(),
                    format!(" ({d}s)").into(),
                ],
            )
            .hint_naming([
                "the delays grow from ".into(),
                Field::RestartDelay.into(),
                " up to ".into(),
                Field::RestartMaxDelay.into(),
            ])
            .about(Field::RestartMaxDelay));
        }
    }
    if t.limit_burst == Some(0) {
        return Err(Error::naming(
            ErrorKind::Invalid,
            [
                Field::RestartLimit.into(),
                " must allow at least 1 start".into(),
            ],
        )
        .hint_naming([
            "e.g. ".into(),
            Field::RestartLimit.into(),
            " 5/10min".into(),
        ])
        .about(Field::RestartLimit));
    }
    Ok(())
}
