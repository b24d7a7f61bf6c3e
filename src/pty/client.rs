//! The client side of the session socket, for every surface: the CLI's
//! `attach`, `send` and `screen`, the HTTP API and the MCP tools.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::proto::{self, Exit, Hello, Mode, Screen};
use crate::dirwatch::DirWatch;
use crate::error::{Error, Result};

/// How long a holder may take to answer beyond what was asked (a frozen
/// holder, paused behind refine-proc's back, never answers).
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Reads the one answer to a request, within `limit`.
async fn answer(s: &mut UnixStream, socket: &Path, limit: Duration) -> Result<proto::Frame> {
    match tokio::time::timeout(limit, proto::read_frame(s)).await {
        Err(_) => Err(Error::refused(format!(
            "the terminal session at {} did not answer within {}",
            socket.display(),
            humantime::format_duration(limit)
        ))
        .hint("it may be paused (frozen) or stuck: see refine-proc status ID; what was sent reaches it if it resumes")),
        Ok(Err(e)) => Err(unreachable(socket, e)),
        Ok(Ok(None)) => Err(unreachable(socket, "it closed without answering")),
        Ok(Ok(Some(f))) => Ok(f),
    }
}

/// How long a client waits for a session's socket to appear (a session
/// that has just been started, or restarted by systemd).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn unreachable(socket: &Path, e: impl std::fmt::Display) -> Error {
    Error::refused(format!(
        "cannot reach the terminal session at {}: {e}",
        socket.display()
    ))
    .hint("check that it still runs with refine-proc status ID; a session ends with its program")
}

/// Connects to the session socket, waiting up to `timeout` for it to
/// appear: inotify tells when the holder publishes it, no polling. The
/// watch is made only when the socket is not there yet (attaching to a
/// running session needs none).
pub async fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    let dir = socket
        .parent()
        .ok_or_else(|| Error::invalid("the session socket has no directory"))?;
    super::private_dir(dir)?;
    let mut watch = None;
    loop {
        match UnixStream::connect(socket).await {
            Ok(s) => return Ok(s),
            Err(e) if not_yet(&e) => {
                let Some(w) = watch.as_mut() else {
                    // Watch, then try again: a socket published in between
                    // is not missed.
                    let w = DirWatch::new(dir, false).map_err(|e| unreachable(socket, e))?;
                    watch = Some(w);
                    continue;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                // Any event in the directory: try again.
                if left.is_zero()
                    || !matches!(tokio::time::timeout(left, w.next()).await, Ok(Some(())))
                {
                    return Err(unreachable(socket, e));
                }
            }
            Err(e) => return Err(unreachable(socket, e)),
        }
    }
}

/// The holder has not published its socket yet (or not listened on it).
fn not_yet(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    matches!(e.kind(), NotFound | ConnectionRefused)
}

async fn open(socket: &Path, hello: &Hello) -> Result<UnixStream> {
    let mut s = connect(socket, CONNECT_TIMEOUT).await?;
    let body = serde_json::to_vec(hello).expect("a hello serializes");
    proto::write_frame(&mut s, proto::HELLO, &body)
        .await
        .map_err(|e| unreachable(socket, e))?;
    Ok(s)
}

fn holder_error(payload: &[u8]) -> Error {
    Error::refused(format!(
        "the terminal session refused: {}",
        crate::text::escape(&String::from_utf8_lossy(payload))
    ))
}

/// The visible screen. With `wait_for`, answers once the screen shows
/// that text, or fails after `timeout` naming what the screen shows.
pub async fn screen(socket: &Path, wait_for: Option<&str>, timeout: Duration) -> Result<Screen> {
    let mut hello = Hello::new(Mode::Screen);
    hello.wait_for = wait_for.map(str::to_string);
    hello.timeout_ms = Some(timeout.as_millis() as u64);
    let mut s = open(socket, &hello).await?;
    let f = answer(&mut s, socket, timeout + ANSWER_GRACE).await?;
    match f.kind {
        proto::SCREEN => serde_json::from_slice(&f.payload)
            .map_err(|e| unreachable(socket, format!("unreadable screen: {e}"))),
        proto::ERROR => match serde_json::from_slice::<Screen>(&f.payload) {
            Ok(now) => Err(Error::refused(format!(
                "the screen did not show {:?} within {}: it shows:\n{}",
                wait_for.unwrap_or_default(),
                humantime::format_duration(timeout),
                now.lines.join("\n").trim_end()
            ))
            .hint("wait longer with --timeout, or check the text with refine-proc screen ID")),
            Err(_) => Err(holder_error(&f.payload)),
        },
        _ => Err(unreachable(socket, "unexpected answer")),
    }
}

/// Types `bytes` into the session, whoever holds the write lease.
pub async fn send(socket: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.len() > proto::MAX_FRAME {
        return Err(Error::invalid(format!(
            "{} bytes to send, more than the {} accepted at once",
            bytes.len(),
            proto::MAX_FRAME
        ))
        .hint("send large input in several parts, or through a file"));
    }
    let mut s = open(socket, &Hello::new(Mode::Send)).await?;
    proto::write_frame(&mut s, proto::INPUT, bytes)
        .await
        .map_err(|e| unreachable(socket, e))?;
    let f = answer(&mut s, socket, ANSWER_GRACE).await?;
    match f.kind {
        proto::DONE => Ok(()),
        proto::ERROR => Err(holder_error(&f.payload)),
        _ => Err(unreachable(socket, "unexpected answer")),
    }
}

/// What an attached client receives.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The session's terminal size (rows, cols): first, then at each
    /// change (a snapshot at the new size follows). Output is drawn at it.
    Size(u16, u16),
    /// Draw this on a blank terminal: the current screen.
    Snapshot(Vec<u8>),
    /// The program's output, as it printed it.
    Output(Vec<u8>),
    /// Whether this client now holds the write lease.
    Lease(bool),
    /// The program ended; nothing follows.
    Exit(Exit),
    /// The holder asks for this client's terminal ([`Sender::lend`]).
    Lend,
    /// The lent terminal is this client's again: read and draw it.
    Back,
    /// The detach keys were typed on the lent terminal.
    DetachKeys,
}

/// An attached client: a stream of [`Event`]s and a sender of input,
/// usable from two tasks.
pub struct Attached {
    pub events: Events,
    pub sender: Sender,
}

/// The reading half of an attached client. Buffered: a frame's head and
/// payload, and the frames behind it, come in one read. Cancel-safe: what
/// was read stays in the buffer when a `next()` is dropped (as in a
/// `select!` that a key or a window change won).
pub struct Events {
    r: OwnedReadHalf,
    buf: bytes::BytesMut,
}

/// The read buffer of an attached client: what a holder sends in one write.
const EVENTS_BUFFER: usize = 256 * 1024;

/// The writing half of an attached client.
pub struct Sender {
    w: OwnedWriteHalf,
}

/// How to attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttachOptions {
    /// Watch only.
    pub read_only: bool,
    /// Take the write lease from its holder.
    pub take: bool,
    /// The window size (rows, cols), applied while this client writes.
    pub size: Option<(u16, u16)>,
}

/// Attaches to the session: the first events are its size and the
/// current screen, then the live stream follows.
pub async fn attach(socket: &Path, opts: AttachOptions) -> Result<Attached> {
    let mode = match (opts.read_only, opts.take) {
        (true, _) => Mode::ReadOnly,
        (false, true) => Mode::Take,
        (false, false) => Mode::Attach,
    };
    let mut hello = Hello::new(mode);
    hello.rows = opts.size.map(|s| s.0);
    hello.cols = opts.size.map(|s| s.1);
    let s = open(socket, &hello).await?;
    let (r, w) = s.into_split();
    Ok(Attached {
        events: Events {
            r,
            buf: bytes::BytesMut::with_capacity(EVENTS_BUFFER),
        },
        sender: Sender { w },
    })
}

impl Events {
    /// The next event; None when the session closed the connection.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        use tokio::io::AsyncReadExt as _;
        let broke =
            |e: std::io::Error| Error::refused(format!("the terminal session broke off: {e}"));
        loop {
            let Some(f) = proto::split_frame(&mut self.buf).map_err(broke)? else {
                if self.buf.capacity() == self.buf.len() {
                    self.buf.reserve(EVENTS_BUFFER);
                }
                // read_buf keeps what it read, whenever it is dropped.
                if self.r.read_buf(&mut self.buf).await.map_err(broke)? == 0 {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(broke(std::io::ErrorKind::UnexpectedEof.into()));
                }
                continue;
            };
            return Ok(Some(match f.kind {
                proto::SIZE => match proto::parse_resize(&f.payload) {
                    Some((rows, cols)) => Event::Size(rows, cols),
                    None => continue,
                },
                proto::SNAPSHOT => Event::Snapshot(f.payload),
                proto::OUTPUT => Event::Output(f.payload),
                proto::LEASE => Event::Lease(f.payload.first() == Some(&1)),
                proto::EXIT => Event::Exit(serde_json::from_slice(&f.payload).unwrap_or(Exit {
                    code: None,
                    signal: None,
                })),
                proto::TERMINAL => match f.payload.first().copied() {
                    Some(proto::LEND) => Event::Lend,
                    Some(proto::BACK) => Event::Back,
                    Some(proto::DETACHED) => Event::DetachKeys,
                    _ => continue,
                },
                proto::ERROR => return Err(holder_error(&f.payload)),
                // A newer holder may say more: skip what this client does not know.
                _ => continue,
            }));
        }
    }
}

impl Sender {
    async fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        proto::write_frame(&mut self.w, kind, payload)
            .await
            .map_err(|e| Error::refused(format!("the terminal session broke off: {e}")))
    }

    /// Keyboard input; dropped by the holder unless this client writes.
    pub async fn input(&mut self, bytes: &[u8]) -> Result<()> {
        for part in bytes.chunks(proto::MAX_FRAME) {
            self.frame(proto::INPUT, part).await?;
        }
        Ok(())
    }

    /// The client's window changed.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.frame(proto::RESIZE, &proto::resize_payload(rows, cols))
            .await
    }

    /// Ask for the size and a fresh screen (a viewer whose window changed).
    pub async fn redraw(&mut self) -> Result<()> {
        self.frame(proto::REDRAW, b"").await
    }

    /// Lends the holder this terminal (`input` to read the keys from,
    /// `output` to draw on), with the detach keys it is to watch for: see
    /// `direct`. The client reads and draws nothing until [`Event::Back`].
    pub async fn lend(
        &mut self,
        input: std::os::fd::BorrowedFd<'_>,
        output: std::os::fd::BorrowedFd<'_>,
        detach: &[u8],
    ) -> Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut msg = Vec::new();
        proto::encode(&mut msg, proto::TERMINAL, detach);
        let fds = [input, output];
        let stream = self.w.as_ref();
        loop {
            stream
                .writable()
                .await
                .map_err(|e| Error::refused(format!("the terminal session broke off: {e}")))?;
            let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
                let mut space =
                    [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                control.push(SendAncillaryMessage::ScmRights(&fds));
                let iov = [std::io::IoSlice::new(&msg)];
                Ok(rustix::net::sendmsg(
                    stream,
                    &iov,
                    &mut control,
                    SendFlags::NOSIGNAL,
                )?)
            });
            match sent {
                // A frame this small goes in one piece, or not at all.
                Ok(n) if n == msg.len() => return Ok(()),
                Ok(_) => {
                    return Err(Error::refused(
                        "the terminal session broke off: a partial write",
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    return Err(Error::refused(format!(
                        "the terminal session broke off: {e}"
                    )))
                }
            }
        }
    }

    /// Take the write lease from whoever holds it.
    pub async fn take(&mut self) -> Result<()> {
        self.frame(proto::TAKE, b"").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// Regression: `attach` reads events in a `select!` with the keyboard
    /// and the window size; a frame that came in two pieces lost its first
    /// piece when another branch won, and the stream was garbage after it.
    #[tokio::test]
    async fn an_event_read_in_pieces_survives_a_cancelled_next() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (r, _w) = a.into_split();
        let mut events = Events {
            r,
            buf: bytes::BytesMut::new(),
        };
        let mut frame = Vec::new();
        proto::encode(&mut frame, proto::OUTPUT, b"hello world");
        proto::encode(&mut frame, proto::LEASE, &[1]);
        b.write_all(&frame[..7]).await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
        assert!(cancelled.is_err(), "a half frame is no event");
        b.write_all(&frame[7..]).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), events.next());
        assert_eq!(
            next.await.unwrap().unwrap(),
            Some(Event::Output(b"hello world".to_vec()))
        );
        let next = tokio::time::timeout(Duration::from_secs(5), events.next());
        assert_eq!(next.await.unwrap().unwrap(), Some(Event::Lease(true)));
        drop(b);
        let next = tokio::time::timeout(Duration::from_secs(5), events.next());
        assert_eq!(next.await.unwrap().unwrap(), None);
    }
}
