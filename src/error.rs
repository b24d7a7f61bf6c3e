//! Errors of the library: a kind (which decides the exit code), a message that
//! names what was being done, and a hint that names the fix.

use std::fmt;

/// What went wrong, coarsely; each kind has its own documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a flag value, an unknown owner, a missing command. Exit 2.
    Invalid,
    /// No process matches the id, or a prefix matches several. Exit 3.
    NotFound,
    /// The unit exists but refine-proc did not create it, or the action is
    /// not allowed in the process's state (forget a running one). Exit 4.
    Refused,
    /// No systemd user manager could be reached. Exit 5.
    Unavailable,
    /// The index could not be read or written. Exit 6.
    Index,
    /// systemd refused or failed an operation. Exit 1.
    Systemd,
    /// The policy does not allow the request. Exit 7.
    Denied,
}

impl ErrorKind {
    /// Its name in machine-readable output: invalid, not-found, refused,
    /// unavailable, index, systemd, denied.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Index => "index",
            ErrorKind::Systemd => "systemd",
            ErrorKind::Denied => "denied",
        }
    }

    /// The process exit code documented in the README.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Systemd => 1,
            ErrorKind::Invalid => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Refused => 4,
            ErrorKind::Unavailable => 5,
            ErrorKind::Index => 6,
            ErrorKind::Denied => 7,
        }
    }
}

/// An error with a one-line message and, where one exists, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// The input the error is about, if one is: surfaces name it their
    /// own way (the CLI its flag, the API its JSON field), while `hint`
    /// keeps the CLI's wording (its stderr text is a contract).
    pub field: Option<Field>,
}

/// An input of a request that an error can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    Command,
    Cwd,
    Label,
    Env,
    CpuWeight,
    Ready,
    Restart,
    RestartDelay,
    RestartMaxDelay,
    RestartLimit,
    Owner,
    Meta,
    MemoryMax,
    MemoryHigh,
    CpuQuota,
    TasksMax,
    RuntimeMax,
    TimeoutStop,
    ReadyTimeout,
    HealthCmd,
    HealthHttp,
    HealthTcp,
    HealthInterval,
    HealthTimeout,
    HealthRetries,
    HealthStartPeriod,
    OnUnhealthy,
    PtySize,
}

impl Field {
    /// How the CLI names it: its flag (the command goes after `--`).
    pub fn flag(self) -> &'static str {
        match self {
            Field::Command => "--",
            Field::Cwd => "--cwd",
            Field::Label => "--label",
            Field::Env => "--env",
            Field::CpuWeight => "--cpu-weight",
            Field::Ready => "--ready",
            Field::Restart => "--restart",
            Field::RestartDelay => "--restart-delay",
            Field::RestartMaxDelay => "--restart-max-delay",
            Field::RestartLimit => "--restart-limit",
            Field::Owner => "--owner",
            Field::Meta => "--meta",
            Field::MemoryMax => "--memory-max",
            Field::MemoryHigh => "--memory-high",
            Field::CpuQuota => "--cpu-quota",
            Field::TasksMax => "--tasks-max",
            Field::RuntimeMax => "--runtime-max",
            Field::TimeoutStop => "--timeout-stop",
            Field::ReadyTimeout => "--ready-timeout",
            Field::HealthCmd => "--health-cmd",
            Field::HealthHttp => "--health-http",
            Field::HealthTcp => "--health-tcp",
            Field::HealthInterval => "--health-interval",
            Field::HealthTimeout => "--health-timeout",
            Field::HealthRetries => "--health-retries",
            Field::HealthStartPeriod => "--health-start-period",
            Field::OnUnhealthy => "--on-unhealthy",
            Field::PtySize => "--pty-size",
        }
    }

    /// How the HTTP API and the MCP tools name it: its JSON field (of
    /// `RunRequest`).
    pub fn json_field(self) -> &'static str {
        match self {
            Field::Command => "command",
            Field::Cwd => "cwd",
            Field::Label => "label",
            Field::Env => "env",
            Field::CpuWeight => "cpu_weight",
            Field::Ready => "ready",
            Field::Restart => "restart",
            Field::RestartDelay => "restart_delay",
            Field::RestartMaxDelay => "restart_max_delay",
            Field::RestartLimit => "restart_limit",
            Field::Owner => "owner",
            Field::Meta => "meta",
            Field::MemoryMax => "memory_max",
            Field::MemoryHigh => "memory_high",
            Field::CpuQuota => "cpu_quota",
            Field::TasksMax => "tasks_max",
            Field::RuntimeMax => "runtime_max",
            Field::TimeoutStop => "timeout_stop",
            Field::ReadyTimeout => "ready_timeout",
            Field::HealthCmd => "health_cmd",
            Field::HealthHttp => "health_http",
            Field::HealthTcp => "health_tcp",
            Field::HealthInterval => "health_interval",
            Field::HealthTimeout => "health_timeout",
            Field::HealthRetries => "health_retries",
            Field::HealthStartPeriod => "health_start_period",
            Field::OnUnhealthy => "on_unhealthy",
            Field::PtySize => "pty_size",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            field: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }

    pub fn index(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Index, message)
    }

    pub fn systemd(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Systemd, message)
    }

    /// Adds the fix to the error.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the input the error is about ([`Error::field`]).
    pub fn about(mut self, field: Field) -> Self {
        self.field = Some(field);
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The message as a surface shows it: prefixed with the input's name
    /// (`name_of` its field: [`Field::flag`], [`Field::json_field`])
    /// unless the message names that input already.
    pub fn worded(mut self, name_of: fn(Field) -> &'static str) -> Error {
        if let Some(field) = self.field {
            let name = name_of(field);
            if field != Field::Command && !self.message.contains(name) {
                self.message = format!("{name}: {}", self.message);
            }
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
