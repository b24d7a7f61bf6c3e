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
    /// The message as written, where it names inputs ([`Error::naming`]):
    /// [`Error::worded`] renders it again with each surface's names.
    pub message_pieces: Option<Vec<Piece>>,
    /// The same for the hint ([`Error::hint_naming`]).
    pub hint_pieces: Option<Vec<Piece>>,
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
    Details,
    Workflow,
    Gap,
    Session,
    Mode,
    Runner,
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
            Field::Details => "--details",
            Field::Workflow => "--workflow",
            Field::Gap => "--gap",
            Field::Session => "--session",
            Field::Mode => "--mode",
            Field::Runner => "--runner",
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
            Field::Details => "details",
            Field::Workflow => "workflow",
            Field::Gap => "gap",
            Field::Session => "session",
            Field::Mode => "mode",
            Field::Runner => "runner",
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

/// A piece of a message or hint: text, or an input that each surface
/// names its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Input(Field),
}

impl From<&str> for Piece {
    fn from(text: &str) -> Self {
        Piece::Text(text.into())
    }
}

impl From<String> for Piece {
    fn from(text: String) -> Self {
        Piece::Text(text)
    }
}

impl From<Field> for Piece {
    fn from(field: Field) -> Self {
        Piece::Input(field)
    }
}

/// The text `pieces` make with inputs named by `name_of`.
fn render(pieces: &[Piece], name_of: fn(Field) -> &'static str) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Input(f) => name_of(*f),
        })
        .collect()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            message_pieces: None,
            hint_pieces: None,
            field: None,
        }
    }

    /// An error whose message names inputs: it reads as the CLI words it
    /// (flags), and [`Error::worded`] names them as another surface does.
    pub fn naming(kind: ErrorKind, pieces: impl IntoIterator<Item = Piece>) -> Self {
        let pieces: Vec<Piece> = pieces.into_iter().collect();
        let mut e = Self::new(kind, render(&pieces, Field::flag));
        e.message_pieces = Some(pieces);
        e
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
        self.hint_pieces = None;
        self
    }

    /// Adds a fix that names inputs: `hint` reads as the CLI words it
    /// (flags), and [`Error::worded`] names them as another surface does
    /// (`["lower ".into(), Field::HealthTimeout.into()]`: "lower
    /// --health-timeout", "lower health_timeout").
    pub fn hint_naming(mut self, pieces: impl IntoIterator<Item = Piece>) -> Self {
        let pieces: Vec<Piece> = pieces.into_iter().collect();
        self.hint = Some(render(&pieces, Field::flag));
        self.hint_pieces = Some(pieces);
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
    /// unless the message names that input already; a message or hint
    /// that names inputs ([`Error::naming`]) names them so too.
    pub fn worded(mut self, name_of: fn(Field) -> &'static str) -> Error {
        // Only text still as the pieces wrote it: context a caller added
        // later (`e.message = format!(...)`) is kept.
        if let Some(pieces) = &self.message_pieces {
            if self.message == render(pieces, Field::flag) {
                self.message = render(pieces, name_of);
            }
        }
        if let Some(pieces) = &self.hint_pieces {
            if self.hint.as_deref() == Some(&render(pieces, Field::flag)) {
                self.hint = Some(render(pieces, name_of));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_naming_inputs_reads_as_each_surface_names_them() {
        let e = Error::naming(
            ErrorKind::Invalid,
            [Field::HealthCmd.into(), " is empty".into()],
        )
        .about(Field::HealthCmd);
        assert_eq!(e.message, "--health-cmd is empty");
        assert_eq!(e.clone().worded(Field::flag).message, e.message);
        // It names its input: no prefix.
        assert_eq!(e.worded(Field::json_field).message, "health_cmd is empty");
    }

    #[test]
    fn a_hint_naming_inputs_reads_as_each_surface_names_them() {
        let e = Error::invalid("too long").hint_naming([
            "lower ".into(),
            Field::HealthTimeout.into(),
            " or raise ".into(),
            Field::HealthInterval.into(),
        ]);
        assert_eq!(
            e.hint.as_deref(),
            Some("lower --health-timeout or raise --health-interval")
        );
        let cli = e.clone().worded(Field::flag);
        assert_eq!(cli.hint, e.hint);
        let api = e.clone().worded(Field::json_field);
        assert_eq!(
            api.hint.as_deref(),
            Some("lower health_timeout or raise health_interval")
        );
        // Text changed later is kept as it is.
        let mut later = e.clone();
        later.hint = Some("ask a person".into());
        assert_eq!(
            later.worded(Field::json_field).hint.as_deref(),
            Some("ask a person")
        );
        // A plain hint set later replaces it, pieces and all.
        let plain = e.hint("ask a person").worded(Field::json_field);
        assert_eq!(plain.hint.as_deref(), Some("ask a person"));
    }
}
