//! Terminal sessions (`run --pty`, `attach`, `send`, `screen`): a managed
//! process on a pseudo-terminal that outlives every client.
//!
//! Decisions, and why:
//!
//! - **The master side lives in a small holder inside the unit** (as dtach
//!   does): with `--pty`, ExecStart runs `refine-proc pty-hold ... --
//!   COMMAND`, which opens the terminal, starts COMMAND on it and serves
//!   clients. The session therefore survives the daemon's death (even
//!   SIGKILL; no daemon is involved at all) and every client's; it keeps
//!   the unit's cgroup, limits, pause (freezing the unit freezes the holder
//!   with its program, which is right: a frozen session neither prints nor
//!   reads) and exit code (the holder exits as its program did). systemd's
//!   fd store would have needed the daemon to be up for every session.
//! - **Socket**: `$XDG_RUNTIME_DIR/refine-proc/pty/ID.sock` (the record
//!   names it under `pty.socket`), in a directory of mode 0700 owned by the
//!   user; the holder also checks each peer's uid with SO_PEERCRED. A
//!   confined unit cannot reach that directory (no confined process may
//!   type into a session): its socket is bound outside the sandbox by a
//!   privileged ExecStartPre= and passed in through systemd's fd store
//!   ([`listen`]).
//! - **Protocol** ([`proto`]): frames of a one-byte type and a u32 length,
//!   as ttyd's: output, input, resize, snapshot, write lease, screen, exit.
//! - **Screen model**: the `vt100` crate (a maintained VT100/xterm parser
//!   with a formatted-redraw function, which is what an attach needs), with
//!   [`holder::SCROLLBACK`] lines of scrollback (none: nothing shows it). Clients
//!   draw with their own terminal; the model serves snapshots and `screen`.
//! - **Pseudo-terminal**: `posix_openpt(3)`, the slave side opened from
//!   the master (`TIOCGPTPEER`: a confined holder sees no /dev/pts), and a
//!   `std::process::Command` with `setsid` + `TIOCSCTTY` before exec; std
//!   reports a failed exec as an error.
//! - **Detach key**: Ctrl-\ by default (dtach's; rarely needed by
//!   programs), configurable with `attach --detach-keys` in docker's format
//!   (`ctrl-p,ctrl-q`).
//! - **The writer's terminal in the holder's hands** ([`direct`]): the
//!   writing `attach` lends its terminal's descriptors (SCM_RIGHTS), and
//!   the holder reads and draws it itself, as tmux's server does: one
//!   process on a keystroke's way, not two. Given back when the lease
//!   goes; the holder is not dumpable meanwhile.
//! - **One writer at a time**: the first client to attach (or to type, once
//!   the lease is free) holds the write lease and sets the window size;
//!   the others watch. `attach --read-only` never writes, `attach --take`
//!   takes the lease. `send` is one-shot input for scripts and agents and
//!   goes through whoever holds the lease.
//! - **Logs**: the holder writes the output, escapes stripped, line by line,
//!   to its stdout, which is the unit's journal (`refine-proc logs ID`).
//!   The journal is written by a thread from a queue; a program more than
//!   [`holder::JOURNAL_BACKLOG`] ahead of journald waits, so nothing is lost.
//! - A client that cannot keep up gets a fresh screen when it catches up
//!   instead of every byte, as tmux redraws a slow client.
//!
//! Entry points for every surface (CLI, HTTP API, MCP): the controller's
//! `send_keys`, `screen` and `session_socket` (policy, then an id to its
//! socket through [`live_socket`]), then [`client::screen`],
//! [`client::send`], [`client::attach`] (a stream of events and a sender;
//! a WebSocket bridge forwards frames both ways), and [`tty::attach_terminal`].

mod attached;
pub mod client;
pub mod direct;
pub mod holder;
pub mod journal;
pub mod keys;
pub mod listen;
mod master;
pub mod model;
pub mod proto;
pub mod strip;
pub mod tty;
pub mod view;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default terminal size until a client attaches.
pub const DEFAULT_ROWS: u16 = 24;
pub const DEFAULT_COLS: u16 = 80;
/// The hidden subcommand ExecStart runs in front of the command.
pub const HOLD_COMMAND: &str = "pty-hold";
/// Longest socket path a Unix socket address holds (sun_path less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `run --pty` as asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PtyOptions {
    /// The size before any client attaches, (rows, cols).
    pub size: Option<(u16, u16)>,
}

/// `run --pty` as checked: where the socket goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtyLaunch {
    pub rows: u16,
    pub cols: u16,
    /// The directory of the session sockets.
    pub dir: PathBuf,
}

/// What the record says of a terminal session (`pty` in the record JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PtyRecord {
    pub socket: String,
    pub rows: u16,
    pub cols: u16,
}

impl PtyLaunch {
    /// The socket of session `id`.
    pub fn socket(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.sock"))
    }

    pub fn record(&self, id: &str) -> PtyRecord {
        PtyRecord {
            socket: self.socket(id).display().to_string(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The ExecStart argv for `command` run through the holder of `id`:
    /// `refine-proc pty-hold --socket S --rows R --cols C -- EXE ARGV...`;
    /// `inherited` (a confined unit): with `--inherited-socket`, the socket
    /// comes from systemd's fd store (see [`listen`]).
    pub fn hold_argv(
        &self,
        id: &str,
        executable: &Path,
        command: &[String],
        inherited: bool,
    ) -> Vec<String> {
        let mut argv = vec![
            "refine-proc".to_string(),
            HOLD_COMMAND.to_string(),
            "--socket".to_string(),
            self.socket(id).display().to_string(),
            "--rows".to_string(),
            self.rows.to_string(),
            "--cols".to_string(),
            self.cols.to_string(),
        ];
        if inherited {
            argv.push("--inherited-socket".to_string());
        }
        argv.push("--".to_string());
        argv.push(executable.display().to_string());
        argv.extend(command.iter().cloned());
        argv
    }

    /// The privileged ExecStartPre argv of a confined session of `id`:
    /// `refine-proc pty-listen --socket S` (see [`listen`]).
    pub fn listen_argv(&self, id: &str) -> Vec<String> {
        vec![
            "refine-proc".to_string(),
            listen::LISTEN_COMMAND.to_string(),
            "--socket".to_string(),
            self.socket(id).display().to_string(),
        ]
    }
}

impl PtyOptions {
    /// Checks the size and the socket directory before anything starts.
    pub fn validate(&self) -> Result<PtyLaunch> {
        let (rows, cols) = self.size.unwrap_or((DEFAULT_ROWS, DEFAULT_COLS));
        if !(2..=1000).contains(&rows) || !(2..=1000).contains(&cols) {
            return Err(
                Error::invalid(format!("terminal size {rows}x{cols} is out of range"))
                    .hint("give --pty-size ROWSxCOLS with 2 to 1000 each, e.g. 40x120"),
            );
        }
        let dir = socket_dir()?;
        // An id is 8 characters: "/" + id + ".sock" is 14 bytes.
        if dir.as_os_str().len() + 14 > MAX_SOCKET_PATH {
            return Err(Error::invalid(format!(
                "the session socket directory {} is too long for a Unix socket",
                dir.display()
            ))
            .hint("set XDG_RUNTIME_DIR to a short path such as /run/user/UID"));
        }
        Ok(PtyLaunch { rows, cols, dir })
    }
}

/// What `restart` and `resurrect` ask again for a session: a terminal of
/// the size it started with.
pub fn options_of(record: &crate::Record) -> Option<PtyOptions> {
    record.pty.as_ref().map(|p| PtyOptions {
        size: Some((p.rows, p.cols)),
    })
}

/// Parses `ROWSxCOLS`.
pub fn parse_size(s: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::invalid(format!("bad terminal size {:?}", crate::text::escape(s)))
            .hint("give ROWSxCOLS, e.g. --pty-size 40x120")
    };
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?))
}

/// `$XDG_RUNTIME_DIR/refine-proc/pty`, or `/run/user/UID/...` without it.
pub fn socket_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        // SAFETY: getuid cannot fail.
        _ => PathBuf::from(format!("/run/user/{}", unsafe { libc::getuid() })),
    };
    if !base.is_absolute() {
        return Err(Error::invalid("XDG_RUNTIME_DIR is not an absolute path")
            .hint("set XDG_RUNTIME_DIR to /run/user/UID"));
    }
    Ok(base.join("refine-proc").join("pty"))
}

/// Creates `dir` (mode 0700) and checks it is the user's own and private:
/// a session socket admits whoever can reach it.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let fail = |e: std::io::Error| {
        Error::refused(format!(
            "cannot prepare the session directory {}: {e}",
            dir.display()
        ))
        .hint("check XDG_RUNTIME_DIR (it must be yours, e.g. /run/user/UID)")
    };
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(fail)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(Error::refused(format!(
            "the session directory {} is not a directory of yours",
            dir.display()
        ))
        .hint("remove it; refine-proc creates it again, private"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

/// The bytes `send` types: the text (a newline is Enter, `\r` as a
/// terminal sends it), then each key.
pub fn send_bytes(text: Option<&str>, key_names: &[String]) -> Result<Vec<u8>> {
    let mut bytes: Vec<u8> = text
        .unwrap_or_default()
        .bytes()
        .map(|b| if b == b'\n' { b'\r' } else { b })
        .collect();
    for k in key_names {
        bytes.extend(keys::key_bytes(k)?);
    }
    if bytes.is_empty() {
        return Err(Error::invalid("nothing to send").hint(
            "give text, or keys such as Enter or C-c (refine-proc send ID 'yes' --key Enter)",
        ));
    }
    Ok(bytes)
}

/// The socket of the terminal session of `record` (read with its live
/// state from systemd): a session paused (frozen) would queue the request
/// until it is resumed.
pub fn live_socket(record: &crate::model::Record) -> Result<PathBuf> {
    let Some(pty) = &record.pty else {
        return Err(Error::refused(format!(
            "{} is not a terminal session",
            record.id
        ))
        .hint("start it with refine-proc run --pty -- COMMAND; its output is in refine-proc logs ID"));
    };
    if record.state.is_ended() {
        return Err(Error::refused(format!(
            "the terminal session {} has ended ({})",
            record.id, record.state
        ))
        .hint(format!("its output is in refine-proc logs {}", record.id)));
    }
    if record.state == crate::State::Paused {
        return Err(Error::refused(format!(
            "the terminal session {} is paused: a frozen session neither prints nor reads",
            record.id
        ))
        .hint(format!("resume it first: refine-proc resume {}", record.id)));
    }
    Ok(PathBuf::from(&pty.socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_argv_puts_the_holder_in_front_of_the_command() {
        let l = PtyLaunch {
            rows: 24,
            cols: 80,
            dir: "/run/user/1000/refine-proc/pty".into(),
        };
        let argv = l.hold_argv(
            "abcd2345",
            Path::new("/bin/sh"),
            &["sh".into(), "-c".into(), "$x".into()],
            false,
        );
        assert_eq!(
            argv,
            [
                "refine-proc",
                "pty-hold",
                "--socket",
                "/run/user/1000/refine-proc/pty/abcd2345.sock",
                "--rows",
                "24",
                "--cols",
                "80",
                "--",
                "/bin/sh",
                "sh",
                "-c",
                "$x"
            ]
        );
        let confined = l.hold_argv("abcd2345", Path::new("/bin/true"), &["true".into()], true);
        assert_eq!(
            confined[8..],
            ["--inherited-socket", "--", "/bin/true", "true"]
        );
        assert_eq!(
            l.listen_argv("abcd2345"),
            [
                "refine-proc",
                "pty-listen",
                "--socket",
                "/run/user/1000/refine-proc/pty/abcd2345.sock"
            ]
        );
        assert_eq!(parse_size("40x120").unwrap(), (40, 120));
        assert!(parse_size("40").unwrap_err().hint.is_some());
        assert!(PtyOptions {
            size: Some((1, 80))
        }
        .validate()
        .is_err());
    }
}
