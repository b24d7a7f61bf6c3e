//! `attach` from a terminal: raw mode, the window size followed, the
//! detach keys, the screen drawn first and the live stream after it, at
//! the session's size (see [`super::view`]).

use std::io::Write;
use std::os::fd::{AsFd as _, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use tokio::io::unix::AsyncFd;

use super::client::{self, AttachOptions, Event};
use super::keys::DetachMatcher;
use super::proto::Exit;
use super::view::{Redraw, View};
use crate::error::{Error, Result};

/// How an attach from a terminal ended.
#[derive(Debug)]
pub enum Ended {
    /// The user pressed the detach keys; the session runs on.
    Detached,
    /// The program ended.
    Exited(Exit),
    /// The session closed the connection without a word (its unit stopped).
    Closed,
}

/// Puts the terminal back as it was, whatever ends the attach.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is the caller's terminal.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(Error::invalid("attach needs a terminal on its standard input")
                .hint("run it in a terminal, or use refine-proc screen ID and send ID TEXT from scripts"));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the copy.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) };
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in enter().
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The terminal's size, (rows, cols).
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills one winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Opens the terminal on stdin anew: a file description of our own, so
/// making it non-blocking does not change the shell's.
fn own_stdin() -> Result<AsyncFd<OwnedFd>> {
    let fd = reopen(c"/proc/self/fd/0", libc::O_RDONLY | libc::O_NONBLOCK)
        .map_err(|e| Error::invalid(format!("cannot read the terminal: {e}")))?;
    // Readable only: registered for writability too, every write to the
    // terminal (the same tty, on fd 1) woke the loop for nothing.
    // SAFETY: the fd is owned by the AsyncFd and closed only with it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| Error::invalid(format!("cannot watch the terminal: {e}")))
}

/// Writes to the terminal at once, unbuffered: std's stdout is line
/// buffered, which splits a chunk of output into two writes.
fn write_out(bytes: &[u8]) {
    // SAFETY: fd 1 is borrowed for the call, never closed (ManuallyDrop).
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let _ = std::io::stdout().lock().flush();
    let _ = out.write_all(bytes);
}

/// Input typed while the attach is not yet authorized, kept for then.
const HELD_INPUT: usize = 64 * 1024;

/// Attaches the calling terminal to the session until detach or its end.
///
/// A writing attach draws the screen as a viewer while `authorized` (the
/// policy's answer, which needs the bus) is pending, then attaches as a
/// writer: nothing typed reaches the session before it is authorized,
/// and nothing of the session (lease, window size) changes before.
pub async fn attach_terminal(
    socket: &Path,
    opts: AttachOptions,
    detach: Vec<u8>,
    authorized: impl std::future::Future<Output = Result<()>>,
) -> Result<Ended> {
    let stdin = std::io::stdin().as_raw_fd();
    let raw = RawMode::enter(stdin)?;
    let input = own_stdin()?;
    let size = window_size(std::io::stdout().as_raw_fd()).or_else(|| window_size(stdin));
    let viewer = AttachOptions {
        read_only: true,
        take: false,
        size,
    };
    let first = if opts.read_only { opts } else { viewer };
    let attached = client::attach(socket, AttachOptions { size, ..first }).await?;
    // The alternate screen, as tmux: detaching gives back the shell's screen.
    write_out(b"\x1b[?1049h");
    let ended = attached_loop(socket, opts, attached, input, detach, authorized).await;
    // Leave the session's modes behind (keypad, mouse, cursor, colours).
    write_out(
        b"\x1b[0m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1006l\x1b[?2004l\x1b>\x1b[?1l\x1b[?1049l",
    );
    drop(raw);
    ended
}

async fn attached_loop(
    socket: &Path,
    opts: AttachOptions,
    attached: client::Attached,
    input: AsyncFd<OwnedFd>,
    detach: Vec<u8>,
    authorized: impl std::future::Future<Output = Result<()>>,
) -> Result<Ended> {
    let stdin = std::io::stdin().as_raw_fd();
    let (mut events, mut sender) = (attached.events, attached.sender);
    let mut authorized = std::pin::pin!(authorized);
    // A writer still watching until it is authorized.
    let mut pending = !opts.read_only;
    let mut held = Vec::new();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| Error::invalid(format!("cannot follow the window size: {e}")))?;
    // The holder reads and draws this terminal while it is lent (see
    // super::direct); then this loop only follows the window size.
    let out = lendable(&opts);
    let mut input = Some(input);
    let mut matcher = DetachMatcher::new(detach.clone());
    let mut buf = vec![0u8; 16 * 1024];
    let mut view = View::new(window_size(stdin));
    // Holding the lease, its resize makes the holder redraw every client.
    let mut leased = false;
    loop {
        tokio::select! {
            ok = &mut authorized, if pending => {
                ok?;
                pending = false;
                // Attached anew, as the writer: its first event redraws.
                let size = window_size(stdin);
                let a = client::attach(socket, AttachOptions { size, ..opts }).await?;
                (events, sender) = (a.events, a.sender);
                if !held.is_empty() {
                    sender.input(&std::mem::take(&mut held)).await?;
                }
            }
            ev = events.next() => match ev? {
                Some(Event::Size(rows, cols)) => view.session_size(rows, cols),
                Some(Event::Snapshot(b)) | Some(Event::Output(b)) => write_out(&view.draw(&b)),
                Some(Event::Lease(h)) => leased = h,
                Some(Event::Lend) => {
                    if let (Some(out), Some(i), false) = (&out, &input, pending) {
                        sender.lend(i.get_ref().as_fd(), out.as_fd(), &detach).await?;
                        // Closed here while lent: registered, it woke this
                        // loop at every key the holder reads, for nothing.
                        input = None;
                    }
                }
                Some(Event::Back) => {
                    if input.is_none() {
                        input = Some(own_stdin()?);
                    }
                }
                Some(Event::DetachKeys) => return Ok(Ended::Detached),
                Some(Event::Exit(e)) => return Ok(Ended::Exited(e)),
                None => return Ok(Ended::Closed),
            },
            ready = readable(input.as_ref()), if input.is_some() => {
                let mut guard = ready.map_err(|e| Error::invalid(format!("cannot read the terminal: {e}")))?;
                let n = match guard.try_io(|fd| read(fd.get_ref().as_raw_fd(), &mut buf)) {
                    Ok(Ok(0)) => return Ok(Ended::Detached),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(Error::invalid(format!("cannot read the terminal: {e}"))),
                    Err(_would_block) => continue,
                };
                let (pass, detached) = matcher.feed(&buf[..n]);
                if pending {
                    let room = HELD_INPUT.saturating_sub(held.len());
                    held.extend_from_slice(&pass[..pass.len().min(room)]);
                } else if !pass.is_empty() && !opts.read_only {
                    sender.input(&pass).await?;
                }
                if detached {
                    return Ok(Ended::Detached);
                }
            }
            _ = winch.recv() => {
                let size = window_size(stdin);
                if let Some((rows, cols)) = size {
                    if !pending && !opts.read_only {
                        sender.resize(rows, cols).await?;
                    }
                }
                // Drawn at the session's size: a window of another size
                // draws it from its own model. Lent, the holder redraws.
                match view.window_size(size) {
                    _ if input.is_none() => {}
                    Redraw::Local(b) => write_out(&b),
                    Redraw::Ask if leased && !pending => {}
                    Redraw::Ask => sender.redraw().await?,
                }
            }
        }
    }
}

/// Readiness of the terminal while this client reads it (the branch is
/// off while it is lent).
async fn readable(
    input: Option<&AsyncFd<OwnedFd>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
    match input {
        Some(i) => i.readable().await,
        None => std::future::pending().await,
    }
}

/// The terminal to lend the holder for drawing: a file description of
/// our own on stdout (the holder makes it non-blocking), when stdout is
/// a terminal and this client writes. `REFINE_PROC_ATTACH_RELAY=1` keeps
/// every byte going through this client instead.
fn lendable(opts: &AttachOptions) -> Option<OwnedFd> {
    let relay = std::env::var_os("REFINE_PROC_ATTACH_RELAY").is_some_and(|v| v == "1");
    if opts.read_only || relay || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return None;
    }
    reopen(c"/proc/self/fd/1", libc::O_WRONLY).ok()
}

/// A file description of our own on one of our terminals (`path`, one of
/// /proc/self/fd/N), with `flags` (never the controlling terminal's).
fn reopen(path: &std::ffi::CStr, flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: opening a path; the fd is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: reading into a buffer we own, of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
