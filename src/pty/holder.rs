//! The holder: the unit's main process when it runs with `--pty`. It owns
//! the master side of the terminal, runs the command on the slave side,
//! keeps the screen model, serves clients on the session socket and writes
//! the output, as text, to its stdout (the unit's journal).
//!
//! Single-threaded (tokio current-thread): one event loop; the journal
//! writer is a thread of its own, so a write to journald never stalls the
//! loop. Output waits for it in a queue; only a journal more than
//! [`JOURNAL_BACKLOG`] behind holds the program back (as a slow terminal
//! does), so nothing is lost from the logs.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Notify};

use super::attached::Client;
use super::journal::{journal_writer, Journal, JOURNAL_DELAY, JOURNAL_NOW};
use super::master::{open_peer, open_pty, set_window};
use super::model::Model;
use super::proto::{self, Cursor, Exit, Hello, Mode, Screen};
use crate::error::{Error, Result};

/// Lines of scrollback the screen model keeps: none, as nothing shows them
/// (snapshots and `screen` draw the visible rows; the journal has the
/// history). vt100 stores every row at full width, 32 bytes a cell: 2,000
/// lines of 80 columns cost 5 MiB per session, and scrolling a full
/// scrollback frees and allocates a row per line.
pub const SCROLLBACK: usize = 0;
pub use super::journal::JOURNAL_BACKLOG;
/// The most output read from the terminal before it is handled (parsed,
/// queued for the journal and the clients) in one go: reads of a
/// terminal return 4 KiB at most, handling each alone costs more.
const READ_BATCH: usize = 64 * 1024;
/// How long output stays unparsed once the program is quiet.
const SETTLE: Duration = Duration::from_millis(50);
/// Input queued for the program and not yet read by it.
const INPUT_QUEUE: usize = 1 << 20;
/// How long clients get to read the end of the session before it closes.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// What the holder runs, and where it listens.
#[derive(Clone, Debug)]
pub struct HoldOptions {
    pub socket: PathBuf,
    pub rows: u16,
    pub cols: u16,
    /// Absolute path of the program.
    pub executable: PathBuf,
    /// Its argv, argv\[0\] included.
    pub argv: Vec<String>,
    /// The socket is bound already, passed by systemd (a confined session,
    /// see [`super::listen`]); `socket` is then only its name.
    pub inherited: bool,
}

/// Runs the session to its end and returns how the program ended.
pub fn hold(opts: HoldOptions) -> Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::systemd(format!("cannot start the holder's runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(opts))
}

/// Exits the way the program did: the same code, or the same signal, so
/// the unit's record reads like the program's own.
pub fn exit_like(exit: &Exit) -> ! {
    if let (None, Some(sig)) = (exit.code, exit.signal) {
        // SAFETY: restoring the default action and raising a signal at
        // ourselves; nothing runs after it but the default action.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    std::process::exit(exit.status())
}

struct Waiter {
    text: String,
    reply: oneshot::Sender<Screen>,
}

pub(super) struct Session {
    model: Model,
    pub(super) clients: BTreeMap<u64, Rc<Client>>,
    pub(super) next_client: u64,
    pub(super) lease: Option<u64>,
    waiters: Vec<Waiter>,
    input: VecDeque<u8>,
    master: Rc<AsyncFd<OwnedFd>>,
    journal: Arc<Journal>,
    /// Output is queued for the journal: wake its writer in a moment.
    journal_due: Rc<Notify>,
}

pub(super) type Shared = Rc<RefCell<Session>>;

pub(super) fn frame(kind: u8, payload: &[u8]) -> Rc<[u8]> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    proto::encode(&mut buf, kind, payload);
    buf.into()
}

impl Session {
    /// The clients first (they wait for it), then the journal; the screen
    /// model parses it when the screen is needed (see [`Model`]).
    fn output(&mut self, chunk: &[u8]) {
        if !self.clients.is_empty() {
            let f = frame(proto::OUTPUT, chunk);
            for c in self.clients.values() {
                c.push(f.clone());
            }
        }
        if self.journal.queue(chunk) >= JOURNAL_NOW {
            self.journal.wake();
        } else {
            self.journal_due.notify_one();
        }
        self.model.feed(chunk);
        if !self.waiters.is_empty() {
            let contents = self.model.screen().contents();
            let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| contents.contains(&w.text));
            self.waiters = wait;
            for w in done {
                let _ = w.reply.send(self.screen());
            }
        }
    }

    fn screen(&mut self) -> Screen {
        let s = self.model.screen();
        let (rows, cols) = s.size();
        let (row, col) = s.cursor_position();
        Screen {
            lines: s
                .rows(0, cols.get())
                .map(|l| l.trim_end().to_string())
                .collect(),
            cursor: Cursor { row, col },
            rows: rows.get(),
            cols: cols.get(),
        }
    }

    /// Escape sequences that draw the screen as it is on a blank terminal.
    pub(super) fn snapshot(&mut self) -> Rc<[u8]> {
        let mut s = String::from("\x1b[0m\x1b[H\x1b[2J");
        s.push_str(&self.model.screen().state_formatted());
        frame(proto::SNAPSHOT, s.as_bytes())
    }

    pub(super) fn resize(&mut self, rows: u16, cols: u16) {
        let (Some(r), Some(c)) = (
            std::num::NonZeroU16::new(rows),
            std::num::NonZeroU16::new(cols),
        ) else {
            return;
        };
        if self.model.screen().size() == (r, c) {
            return;
        }
        set_window(self.master.get_ref().as_raw_fd(), rows, cols);
        self.model.set_size(r, c);
        // Every client learns the new size, then gets the screen drawn at
        // it: what was queued before is drawn by the snapshot already.
        let size = self.size_frame();
        let snap = self.snapshot();
        for client in self.clients.values() {
            client.restart_with(&[size.clone(), snap.clone()]);
        }
    }

    /// What brings a client's view up to date: the size, then the screen.
    pub(super) fn redraw(&mut self) -> [Rc<[u8]>; 2] {
        [self.size_frame(), self.snapshot()]
    }

    /// The SIZE frame of the screen as it is.
    pub(super) fn size_frame(&mut self) -> Rc<[u8]> {
        let (rows, cols) = self.model.screen().size();
        frame(proto::SIZE, &proto::resize_payload(rows.get(), cols.get()))
    }

    /// Gives the write lease to `id` (taking it from its holder, with the
    /// terminal it lent).
    pub(super) fn grant(&mut self, id: u64) {
        if self.lease == Some(id) {
            return;
        }
        if let Some(old) = self.lease.and_then(|o| self.clients.get(&o)).cloned() {
            old.push(frame(proto::LEASE, &[0]));
            old.give_back(proto::BACK, Some(self.redraw()));
        }
        self.lease = Some(id);
        if let Some(c) = self.clients.get(&id).cloned() {
            if let Some((r, cols)) = c.size.get() {
                self.resize(r, cols);
            }
            c.granted();
        }
    }
}

async fn run(opts: HoldOptions) -> Result<Exit> {
    let (listener, master, slave) = if opts.inherited {
        let (listener, master) = super::listen::inherited()?;
        let slave = open_peer(&master, opts.rows, opts.cols)?;
        let listener = UnixListener::from_std(listener)
            .map_err(|e| Error::systemd(format!("cannot use the session socket: {e}")))?;
        (listener, master, slave)
    } else {
        let (master, slave) = open_pty(opts.rows, opts.cols)?;
        (listen(&opts.socket)?, master, slave)
    };
    let mut child = spawn(&opts, slave)?;
    // Readable only: [`write_master`] waits for writability on its own,
    // when a write would block; registered for both, each keystroke's
    // write woke the loop once more for nothing.
    // SAFETY: the fd is owned by the AsyncFd and closed only with it.
    let master = Rc::new(
        unsafe { AsyncFd::register_with_interest(master, tokio::io::Interest::READABLE) }
            .map_err(|e| Error::systemd(format!("cannot watch the terminal: {e}")))?,
    );
    let journal = Arc::new(Journal::default());
    let journal_thread = journal_writer(journal.clone())?;
    let journal_due = Rc::new(Notify::new());
    let session: Shared = Rc::new(RefCell::new(Session {
        model: Model::new(opts.rows, opts.cols, SCROLLBACK),
        clients: BTreeMap::new(),
        next_client: 0,
        lease: None,
        waiters: Vec::new(),
        input: VecDeque::new(),
        master: master.clone(),
        journal: journal.clone(),
        journal_due: journal_due.clone(),
    }));
    let input_wake = Rc::new(Notify::new());
    let pid = child.id().map(|p| p as i32);

    let reader = tokio::task::spawn_local(read_master(session.clone()));
    let writer = tokio::task::spawn_local(write_master(session.clone(), input_wake.clone()));
    let acceptor = tokio::task::spawn_local(accept(listener, session.clone(), input_wake.clone()));
    let hangup = tokio::task::spawn_local(hang_up_on_stop(master.clone(), pid));
    let waker = tokio::task::spawn_local(wake_journal(journal.clone(), journal_due));

    let status = child
        .wait()
        .await
        .map_err(|e| Error::systemd(format!("cannot wait for the program: {e}")))?;
    // What it printed before it ended is in the terminal's buffer: read it
    // all before saying it ended.
    drain_master(&session);
    reader.abort();
    writer.abort();
    acceptor.abort();
    hangup.abort();
    waker.abort();
    if !opts.inherited {
        // A confined holder cannot reach it; systemd closes the stored one.
        let _ = std::fs::remove_file(&opts.socket);
    }

    use std::os::unix::process::ExitStatusExt as _;
    let exit = Exit {
        code: status.code(),
        signal: status.signal(),
    };
    finish(&session, &exit).await;
    drop(session);
    let _ = journal_thread.join();
    Ok(exit)
}

/// Tells every client how it ended and gives them a moment to read it.
/// Wakes the journal writer [`JOURNAL_DELAY`] after output was queued
/// (the end flushes it: `finish` closes the journal).
async fn wake_journal(journal: Arc<Journal>, due: Rc<Notify>) {
    loop {
        due.notified().await;
        tokio::time::sleep(JOURNAL_DELAY).await;
        journal.wake();
    }
}

async fn finish(session: &Shared, exit: &Exit) {
    let clients: Vec<Rc<Client>> = {
        let s = session.borrow();
        s.journal.close();
        let f = frame(proto::EXIT, &serde_json::to_vec(exit).unwrap_or_default());
        for c in s.clients.values() {
            c.close_with(f.clone());
        }
        s.clients.values().cloned().collect()
    };
    let flushed = async {
        for c in clients {
            c.done.notified().await;
        }
    };
    let _ = tokio::time::timeout(FLUSH_AT_EXIT, flushed).await;
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::systemd(format!("cannot {what} {}: {e}", path.display()))
}

/// Binds the session socket in its private directory (see
/// [`super::listen::bind`]).
fn listen(socket: &Path) -> Result<UnixListener> {
    let listener = super::listen::bind(socket)?;
    listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .map_err(|e| io_err("listen on", socket, e))
}

/// Starts the program on the slave side, as the leader of a new session
/// whose controlling terminal it is (what a terminal emulator does).
fn spawn(opts: &HoldOptions, slave: OwnedFd) -> Result<tokio::process::Child> {
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| Error::systemd(format!("cannot share the terminal: {e}")))
    };
    let mut cmd = std::process::Command::new(&opts.executable);
    cmd.arg0(opts.argv.first().map(String::as_str).unwrap_or_default())
        .args(opts.argv.iter().skip(1))
        .stdin(dup(&slave)?)
        .stdout(dup(&slave)?)
        .stderr(slave);
    if std::env::var_os("TERM").is_none() {
        cmd.env("TERM", "xterm-256color");
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd).spawn().map_err(|e| {
        Error::systemd(format!(
            "cannot start {}: {e}",
            crate::text::escape(&opts.executable.display().to_string())
        ))
    })
}

/// Reads what the program prints until the terminal closes: all that is
/// there (up to [`READ_BATCH`]) before handling it, and nothing while the
/// journal is [`JOURNAL_BACKLOG`] behind.
async fn read_master(session: Shared) {
    let (master, journal) = {
        let s = session.borrow();
        (s.master.clone(), s.journal.clone())
    };
    let mut buf = vec![0u8; READ_BATCH];
    loop {
        journal.room().await;
        let pending = session.borrow().model.has_pending();
        let ready = if pending {
            // Quiet for a moment: the screen model catches up meanwhile.
            match tokio::time::timeout(SETTLE, master.readable()).await {
                Ok(ready) => ready,
                Err(_) => {
                    session.borrow_mut().model.settle();
                    // Quiet: give what the burst freed back to the system.
                    // SAFETY: malloc_trim only releases free memory.
                    unsafe { libc::malloc_trim(0) };
                    continue;
                }
            }
        } else {
            master.readable().await
        };
        let Ok(mut guard) = ready else {
            return;
        };
        let fd = master.get_ref().as_raw_fd();
        let mut n = 0;
        let mut end = false;
        while n < buf.len() {
            match read_fd(fd, &mut buf[n..]) {
                Ok(0) => {
                    end = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: every slave fd closed (the program ended).
                Err(_) => {
                    end = true;
                    break;
                }
            }
        }
        if n > 0 {
            session.borrow_mut().output(&buf[..n]);
        }
        if end {
            return;
        }
    }
}

/// Reads what is left in the terminal without waiting.
fn drain_master(session: &Shared) {
    let fd = session.borrow().master.get_ref().as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = read_fd(fd, &mut buf) {
        if n == 0 {
            break;
        }
        session.borrow_mut().output(&buf[..n]);
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: reading into a buffer we own, of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes queued input to the program as fast as it reads it.
async fn write_master(session: Shared, wake: Rc<Notify>) {
    let master = session.borrow().master.clone();
    let fd = master.get_ref().as_raw_fd();
    loop {
        if session.borrow().input.is_empty() {
            wake.notified().await;
            continue;
        }
        let written = {
            let s = session.borrow();
            let (a, _) = s.input.as_slices();
            // SAFETY: writing from a slice we borrow, of its length.
            let n = unsafe { libc::write(fd, a.as_ptr().cast(), a.len()) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        };
        match written {
            Ok(n) => {
                session.borrow_mut().input.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if until_writable(fd).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Waits until the terminal takes input again: a registration of its own
/// for writability (a duplicate descriptor: the master's is for reading),
/// made only when a write would block. epoll reports a state that is
/// already writable at registration, so none is missed.
async fn until_writable(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fd is the master's, open for the whole session; the
    // duplicate is owned by the AsyncFd and closed with it.
    let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    // SAFETY: the fd is owned by the AsyncFd and closed only with it.
    let w = unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = w.writable().await?;
    Ok(())
}

/// On stop (SIGTERM, SIGINT, SIGHUP) the terminal hangs up, as when a
/// terminal window closes: an interactive shell ignores SIGTERM but ends
/// on SIGHUP. The holder itself waits for the program to end.
async fn hang_up_on_stop(master: Rc<AsyncFd<OwnedFd>>, pid: Option<i32>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        // SAFETY: signalling process groups; tcgetpgrp reads the terminal.
        unsafe {
            let fg = libc::tcgetpgrp(master.get_ref().as_raw_fd());
            for group in [pid, (fg > 0).then_some(fg)].into_iter().flatten() {
                libc::kill(-group, libc::SIGHUP);
                libc::kill(-group, libc::SIGCONT);
            }
        }
    }
}

async fn accept(listener: UnixListener, session: Shared, input_wake: Rc<Notify>) {
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // The directory is private already; the peer's uid is checked too,
        // so a socket passed on by mistake still admits only its user.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me => {}
            _ => continue,
        }
        tokio::task::spawn_local(serve(stream, session.clone(), input_wake.clone()));
    }
}

async fn serve(stream: UnixStream, session: Shared, input_wake: Rc<Notify>) {
    let (r, mut w) = stream.into_split();
    let mut r = super::attached::reader(r);
    let hello = match proto::read_frame(&mut r).await {
        Ok(Some(f)) if f.kind == proto::HELLO => serde_json::from_slice::<Hello>(&f.payload).ok(),
        _ => None,
    };
    let Some(hello) = hello.filter(|h| h.version == proto::VERSION) else {
        let _ = proto::write_frame(
            &mut w,
            proto::ERROR,
            format!(
                "this session speaks version {} of the terminal protocol: use the refine-proc that started it",
                proto::VERSION
            )
            .as_bytes(),
        )
        .await;
        return;
    };
    match hello.mode {
        Mode::Screen => serve_screen(&hello, &session, &mut w).await,
        Mode::Send => {
            if let Ok(Some(f)) = proto::read_frame(&mut r).await {
                if f.kind == proto::INPUT {
                    let reply = queue_input(&session, &input_wake, &f.payload);
                    let _ = match reply {
                        Ok(()) => proto::write_frame(&mut w, proto::DONE, b"").await,
                        Err(e) => proto::write_frame(&mut w, proto::ERROR, e.as_bytes()).await,
                    };
                }
            }
        }
        Mode::Attach | Mode::ReadOnly | Mode::Take => {
            super::attached::serve_attached(hello, session, input_wake, r, w).await
        }
    }
}

pub(super) fn queue_input(
    session: &Shared,
    wake: &Notify,
    bytes: &[u8],
) -> std::result::Result<(), String> {
    let mut s = session.borrow_mut();
    if s.input.len() + bytes.len() > INPUT_QUEUE {
        return Err("the program is not reading its input: more than 1 MiB is waiting".into());
    }
    s.input.extend(bytes);
    wake.notify_one();
    Ok(())
}

async fn serve_screen(hello: &Hello, session: &Shared, w: &mut OwnedWriteHalf) {
    let screen = match &hello.wait_for {
        None => Ok(session.borrow_mut().screen()),
        Some(text) => {
            let rx = {
                let mut s = session.borrow_mut();
                let now = s.screen();
                if now.lines.iter().any(|l| l.contains(text.as_str()))
                    || s.model.screen().contents().contains(text.as_str())
                {
                    Ok(now)
                } else {
                    let (tx, rx) = oneshot::channel();
                    s.waiters.push(Waiter {
                        text: text.clone(),
                        reply: tx,
                    });
                    Err(rx)
                }
            };
            match rx {
                Ok(now) => Ok(now),
                Err(rx) => {
                    let limit = Duration::from_millis(hello.timeout_ms.unwrap_or(10_000));
                    match tokio::time::timeout(limit, rx).await {
                        Ok(Ok(screen)) => Ok(screen),
                        _ => Err(session.borrow_mut().screen()),
                    }
                }
            }
        }
    };
    let _ = match screen {
        Ok(s) => {
            proto::write_frame(
                w,
                proto::SCREEN,
                &serde_json::to_vec(&s).unwrap_or_default(),
            )
            .await
        }
        // Timed out: the screen as it is, so the caller sees what is there.
        Err(s) => {
            proto::write_frame(w, proto::ERROR, &serde_json::to_vec(&s).unwrap_or_default()).await
        }
    };
}
