//! The terminal-session commands: `attach`, `send`, `screen`, and the
//! hidden `pty-hold` that ExecStart runs with `run --pty`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use refine_proc::pty::{self, client, keys, tty};
use refine_proc::text::parse_seconds;
use refine_proc::{Controller, Result};

/// `run --pty` flags (flattened into `run`).
#[derive(Args, Debug, Default)]
pub struct PtyRunArgs {
    /// Run on a pseudo-terminal that outlives every client: attach, send and
    /// screen reach it (see "Terminal sessions")
    #[arg(long)]
    pub pty: bool,
    /// The terminal's size until a client attaches [default: 24x80]
    #[arg(long, value_name = "ROWSxCOLS", requires = "pty")]
    pub pty_size: Option<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Record id (or a unique prefix), or unit name
    id: String,
    /// Watch only: never write, never take the write lease
    #[arg(long, conflicts_with = "take")]
    read_only: bool,
    /// Take the write lease from the client that holds it
    #[arg(long)]
    take: bool,
    /// The keys that detach, docker's format: ctrl-\, ctrl-p,ctrl-q, ...
    #[arg(long, value_name = "KEYS", default_value = keys::DEFAULT_DETACH)]
    detach_keys: String,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Record id (or a unique prefix), or unit name
    id: String,
    /// Text to type, as typed; a newline in it is Enter
    text: Option<String>,
    /// A key to press after the text, repeatable: Enter, Tab, Esc, Up, C-c, C-d, ...
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ScreenArgs {
    /// Record id (or a unique prefix), or unit name
    id: String,
    /// Answer once the screen shows TEXT (exit 4 with the screen if it does
    /// not within --timeout)
    #[arg(long, value_name = "TEXT")]
    wait_for: Option<String>,
    /// How long --wait-for waits [default: 10s]
    #[arg(long, value_name = "DURATION", requires = "wait_for")]
    timeout: Option<String>,
    /// Print {"lines": [...], "cursor": {"row": R, "col": C}, "rows": N, "cols": M}
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct HoldArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, default_value_t = pty::DEFAULT_ROWS)]
    rows: u16,
    #[arg(long, default_value_t = pty::DEFAULT_COLS)]
    cols: u16,
    /// The socket is systemd's LISTEN_FDS (a confined session)
    #[arg(long)]
    inherited_socket: bool,
    /// The program's path, then its argv (argv[0] included)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub async fn attach(controller: &Controller, a: AttachArgs) -> Result<i32> {
    let detach = keys::detach_sequence(&a.detach_keys)?;
    // A viewer only reads; a writer acts on the session. Straight to the
    // socket the record names: systemd is asked only if it cannot be reached.
    let socket = controller.attach_socket(&a.id, false).await?;
    let opts = client::AttachOptions {
        read_only: a.read_only,
        take: a.take,
        size: None,
    };
    // Whether it may write is asked (over the bus) while the screen is
    // drawn; its input waits for the answer.
    let denied = std::cell::Cell::new(false);
    let authorized = async {
        if a.read_only {
            return Ok(());
        }
        let r = controller.attach_socket(&a.id, true).await.map(drop);
        denied.set(r.is_err());
        r
    };
    let ended = match tty::attach_terminal(&socket, opts, detach, authorized).await {
        Ok(ended) => ended,
        Err(e) if denied.get() => return Err(e),
        Err(e) if e.kind == refine_proc::ErrorKind::Refused => {
            // Ended or paused behind the index's back: the live state says so.
            controller.session_socket(&a.id, !a.read_only).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let mut err = std::io::stderr();
    Ok(match ended {
        tty::Ended::Detached => {
            let _ = writeln!(err, "[detached from {}]", a.id);
            0
        }
        tty::Ended::Exited(exit) => {
            let _ = writeln!(err, "[{} ended: exit status {}]", a.id, exit.status());
            exit.status()
        }
        tty::Ended::Closed => {
            let _ = writeln!(err, "[{}: the session closed]", a.id);
            1
        }
    })
}

/// In a confined unit, through the daemon's API socket.
pub(crate) async fn send(core: &super::Core, a: SendArgs) -> Result<i32> {
    match core {
        super::Core::Local(c) => c.send_keys(&a.id, a.text.as_deref(), &a.keys).await?,
        super::Core::Socket(s) => super::remote::send(s, &a.id, a.text.as_deref(), &a.keys).await?,
    }
    Ok(0)
}

/// In a confined unit, through the daemon's API socket.
pub(crate) async fn screen(core: &super::Core, a: ScreenArgs) -> Result<i32> {
    let timeout = match a.timeout.as_deref() {
        Some(t) => Duration::from_secs(parse_seconds(t)?),
        None => Duration::from_secs(10),
    };
    let wait_for = a.wait_for.as_deref();
    let screen = match core {
        super::Core::Local(c) => c.screen(&a.id, wait_for, timeout).await?,
        super::Core::Socket(s) => super::remote::screen(s, &a.id, wait_for, timeout).await?,
    };
    let mut out = std::io::stdout().lock();
    let r = if a.json {
        serde_json::to_writer(&mut out, &screen)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        // Text: the rows as they show, trailing blank rows left out.
        let keep = screen
            .lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        screen.lines[..keep]
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"))
    };
    super::output::io_result(r)?;
    Ok(0)
}

/// The holder, as the unit's main process. It never returns: it exits
/// as its program did.
pub fn hold(a: HoldArgs) -> i32 {
    let mut command = a.command.into_iter();
    let executable = PathBuf::from(command.next().unwrap_or_default());
    let opts = pty::holder::HoldOptions {
        socket: a.socket,
        rows: a.rows,
        cols: a.cols,
        executable,
        argv: command.collect(),
        inherited: a.inherited_socket,
    };
    match pty::holder::hold(opts) {
        Ok(exit) => pty::holder::exit_like(&exit),
        Err(e) => super::fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_turns_newlines_into_enter_and_appends_keys() {
        let b = pty::send_bytes(Some("bob\n"), &["C-c".into()]).unwrap();
        assert_eq!(b, b"bob\r\x03");
        assert!(pty::send_bytes(None, &[]).is_err());
        assert!(pty::send_bytes(Some("x"), &["nope".into()]).is_err());
    }
}
