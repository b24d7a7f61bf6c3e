//! The writer's terminal, used by the holder itself (as tmux's server
//! uses its clients' terminals): `attach` hands its terminal's descriptors
//! over the session socket (SCM_RIGHTS) while it holds the write lease,
//! and the holder reads the keys from it and draws the output on it. A
//! keystroke's echo then crosses one process, not two: through `attach`
//! it took 1.7x to 2x tmux's time, most of it in the client's hop.
//!
//! The client keeps the socket for everything else (size, lease, exit)
//! and takes its terminal back when the holder says so (the lease went to
//! another client, the detach keys, a broken write), then draws as before.
//!
//! While the holder has a person's terminal it is not dumpable: no process
//! of the session (same user; a confined agent) can ptrace it or open its
//! descriptors through /proc/PID/fd, and with it the keys typed there after
//! a detach.

use std::cell::{Cell, RefCell};
use std::io::{IoSliceMut, IsTerminal as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Context, Poll};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

use super::keys::DetachMatcher;

/// The most descriptors a client may have in flight: a terminal's two.
const MAX_FDS: usize = 2;
/// The longest detach sequence a client may ask for.
pub const MAX_DETACH: usize = 16;

/// The read half of a client's connection that keeps the descriptors a
/// client sends with its bytes (a plain read would close them).
pub struct FdReader {
    half: OwnedReadHalf,
    fds: Vec<OwnedFd>,
}

impl FdReader {
    pub fn new(half: OwnedReadHalf) -> FdReader {
        FdReader {
            half,
            fds: Vec::new(),
        }
    }

    /// The descriptors received so far, in the order they came.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.half.as_ref().poll_read_ready(cx))?;
            let stream = this.half.as_ref();
            let got = stream.try_io(Interest::READABLE, || {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                // BufReader's buffer is initialized already: this is free.
                let slice = buf.initialize_unfilled();
                let msg = rustix::net::recvmsg(
                    stream.as_fd(),
                    &mut [IoSliceMut::new(slice)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )?;
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = m {
                        for fd in fds {
                            // More than a terminal's worth is dropped (closed).
                            if this.fds.len() < MAX_FDS {
                                this.fds.push(fd);
                            }
                        }
                    }
                }
                Ok(msg.bytes)
            });
            match got {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A client's terminal, in the holder's hands.
pub struct Direct {
    input: AsyncFd<OwnedFd>,
    output: AsyncFd<OwnedFd>,
    pub matcher: RefCell<DetachMatcher>,
    /// The task that reads it (it holds this too): stopped by [`Direct::stop`].
    pub reader: Cell<Option<tokio::task::AbortHandle>>,
    /// Last: dropped after the descriptors are closed.
    _not_dumpable: NotDumpable,
}

impl Direct {
    /// The terminal a client sent: two descriptors (to read and to write),
    /// both terminals, made non-blocking (they are the client's own file
    /// descriptions, not its shell's). None if they are not that.
    pub fn new(fds: Vec<OwnedFd>, detach: &[u8]) -> Option<Direct> {
        if detach.is_empty() || detach.len() > MAX_DETACH {
            return None;
        }
        let [input, output]: [OwnedFd; 2] = fds.try_into().ok()?;
        for fd in [&input, &output] {
            if !fd.is_terminal() {
                return None;
            }
            let fl = rustix::fs::fcntl_getfl(fd).ok()?;
            rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK).ok()?;
        }
        // Each registered for the one way it is used (two file
        // descriptions of one terminal: epoll tells them apart).
        // SAFETY: each fd is owned by its AsyncFd and closed only with it.
        let input = unsafe { AsyncFd::register_with_interest(input, Interest::READABLE) }.ok()?;
        // SAFETY: as above.
        let output = unsafe { AsyncFd::register_with_interest(output, Interest::WRITABLE) }.ok()?;
        Some(Direct {
            input,
            output,
            matcher: RefCell::new(DetachMatcher::new(detach.to_vec())),
            reader: Cell::new(None),
            _not_dumpable: NotDumpable::new(),
        })
    }

    /// The terminal goes back: no more reading from it.
    pub fn stop(&self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }

    /// Reads what was typed: Ok(0) when the terminal closed (hung up).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.input.readable().await?;
            match guard.try_io(|fd| Ok(rustix::io::read(fd, &mut *buf)?)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `bytes` to the terminal, waiting while it is full
    /// (a terminal held with Ctrl-S).
    pub async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.output.writable().await?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd, bytes)?)) {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

/// Not dumpable while one lives. Only the writer lends its terminal, but
/// the one given back may still be in a write when the next one comes:
/// counted, so the holder is dumpable again (as it is otherwise, so that
/// the user can look into it) only when none is left.
struct NotDumpable;

static LENT: AtomicUsize = AtomicUsize::new(0);

impl NotDumpable {
    fn new() -> NotDumpable {
        if LENT.fetch_add(1, Ordering::SeqCst) == 0 {
            set_dumpable(false);
        }
        NotDumpable
    }
}

impl Drop for NotDumpable {
    fn drop(&mut self) {
        if LENT.fetch_sub(1, Ordering::SeqCst) == 1 {
            set_dumpable(true);
        }
    }
}

fn set_dumpable(on: bool) {
    use rustix::process::DumpableBehavior;
    let b = if on {
        DumpableBehavior::Dumpable
    } else {
        DumpableBehavior::NotDumpable
    };
    let _ = rustix::process::set_dumpable_behavior(b);
}
