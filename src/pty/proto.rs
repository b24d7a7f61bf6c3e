//! The wire protocol between the holder and its clients, on the session's
//! Unix socket: frames of a one-byte type, a big-endian u32 length and the
//! payload (as ttyd frames its WebSocket). Terminal bytes travel as they
//! are; control messages are small JSON objects, so fields can be added
//! without breaking older clients.
//!
//! A client opens with one [`Hello`]; what follows depends on its mode.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version of the protocol; the holder refuses a hello of another version.
pub const VERSION: u32 = 1;
/// Largest payload accepted in one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// Client to holder: the opening message (JSON).
pub const HELLO: u8 = b'H';
/// Client to holder: keyboard input for the program.
pub const INPUT: u8 = b'i';
/// Client to holder: the client's window size, rows then cols (u16 BE each).
pub const RESIZE: u8 = b'r';
/// Client to holder: take the write lease from whoever holds it.
pub const TAKE: u8 = b't';
/// Client to holder: send SIZE and a fresh SNAPSHOT (a viewer whose own
/// window changed redraws the session from it; any client may ask).
pub const REDRAW: u8 = b'R';
/// Holder to client: escape sequences that draw the current screen.
pub const SNAPSHOT: u8 = b'S';
/// Holder to client: the session's terminal size, rows then cols (u16 BE
/// each, as RESIZE): first on attach, then at each change, followed by a
/// SNAPSHOT at the new size. Output is drawn at this size: a client whose
/// window differs (a viewer) draws the screen itself (see `tty`).
pub const SIZE: u8 = b'z';
/// Holder to client: what the program printed, as it printed it.
pub const OUTPUT: u8 = b'o';
/// Holder to client: one byte, 1 when this client holds the write lease.
pub const LEASE: u8 = b'L';
/// Holder to client: the visible screen as a [`Screen`] (JSON).
pub const SCREEN: u8 = b'J';
/// Holder to client: the program ended, an [`Exit`] (JSON).
pub const EXIT: u8 = b'x';
/// Holder to client: the request was refused; the payload says why.
pub const ERROR: u8 = b'E';
/// Holder to client: a `send` was queued for the program.
pub const DONE: u8 = b'd';
/// Both ways, about the writer's own terminal (see `direct`). Client to
/// holder: here it is, to read the keys from and draw on; the payload is
/// the detach keys, and the terminal's two descriptors (to read, to write)
/// ride along (SCM_RIGHTS). Holder to client: one byte, [`LEND`],
/// [`BACK`] or [`DETACHED`].
pub const TERMINAL: u8 = b'T';
/// The holder asks for the terminal (sent after the lease is granted).
pub const LEND: u8 = 1;
/// The terminal is the client's again: read and draw it (a SIZE and a
/// SNAPSHOT follow when the client's view must catch up).
pub const BACK: u8 = 0;
/// The detach keys were typed on the lent terminal.
pub const DETACHED: u8 = 2;

/// What a client wants from the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Watch, and write while it holds the write lease (the first client
    /// that asks for it gets it).
    Attach,
    /// Watch only; never takes the lease.
    ReadOnly,
    /// Attach, taking the lease from its holder.
    Take,
    /// One reply with the visible screen, then the holder closes.
    Screen,
    /// One input frame follows; the holder queues it and answers DONE.
    Send,
}

/// The opening message of every connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub mode: Mode,
    /// The client's window, applied while it holds the lease.
    #[serde(default)]
    pub rows: Option<u16>,
    #[serde(default)]
    pub cols: Option<u16>,
    /// `screen` only: answer once the screen contains this text.
    #[serde(default)]
    pub wait_for: Option<String>,
    /// `screen` only: how long to wait for `wait_for`, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Hello {
    pub fn new(mode: Mode) -> Hello {
        Hello {
            version: VERSION,
            mode,
            rows: None,
            cols: None,
            wait_for: None,
            timeout_ms: None,
        }
    }
}

/// The visible screen of a session (the `screen --json` contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Screen {
    /// Every visible row, trailing spaces removed.
    pub lines: Vec<String>,
    pub cursor: Cursor,
    pub rows: u16,
    pub cols: u16,
}

/// Zero-based cursor position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cursor {
    pub row: u16,
    pub col: u16,
}

/// How the session's program ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Its exit status, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
}

impl Exit {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Appends one frame to `buf` (frames are batched into one write).
pub fn encode(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    encode(&mut buf, kind, payload);
    w.write_all(&buf).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than the {MAX_FRAME} accepted"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        kind: head[0],
        payload,
    }))
}

/// Takes one whole frame off the front of `buf`, if it holds one: for a
/// reader that must be cancel-safe (a frame read in pieces by
/// [`read_frame`] loses the pieces read when its future is dropped).
pub fn split_frame(buf: &mut bytes::BytesMut) -> std::io::Result<Option<Frame>> {
    let Some(head) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than the {MAX_FRAME} accepted"),
        ));
    }
    if buf.len() < 5 + len {
        buf.reserve(5 + len - buf.len());
        return Ok(None);
    }
    let whole = buf.split_to(5 + len);
    Ok(Some(Frame {
        kind: whole[0],
        payload: whole[5..].to_vec(),
    }))
}

/// The payload of a RESIZE frame.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let [a, b] = rows.to_be_bytes();
    let [c, d] = cols.to_be_bytes();
    [a, b, c, d]
}

/// Reads a RESIZE payload; None when malformed or zero-sized.
pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    let [a, b, c, d] = <[u8; 4]>::try_from(p).ok()?;
    let (rows, cols) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    (rows > 0 && cols > 0).then_some((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        encode(&mut buf, OUTPUT, b"hello");
        encode(&mut buf, RESIZE, &resize_payload(40, 120));
        let mut r = &buf[..];
        let f = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!((f.kind, &f.payload[..]), (OUTPUT, &b"hello"[..]));
        let f = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(parse_resize(&f.payload), Some((40, 120)));
        assert!(read_frame(&mut r).await.unwrap().is_none());

        let mut big = vec![INPUT];
        big.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        let mut r = &big[..];
        assert!(read_frame(&mut r).await.is_err());
        assert_eq!(parse_resize(&[0, 0, 0, 80]), None);
    }
}
