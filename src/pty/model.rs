//! The holder's screen model: the vt100 parser, fed lazily. Output is
//! kept until the screen is needed (a snapshot, `screen`, a resize) or
//! [`LAZY`] of it waits; then, when it starts with a long run of plain
//! lines, only the lines that can still be on the screen are parsed. A
//! `cat` of a big file then costs a few screenfuls of parsing per batch
//! instead of every byte (vt100 was most of the holder's time).
//!
//! Why skipping is exact: text (printable ASCII, CR, LF, tab) and SGR
//! sequences change nothing but the cells they write, the cursor and the
//! attributes. Once 2 x rows + 1 line feeds follow a CR in such a run,
//! with the scroll region the whole screen, every row on the screen was
//! scrolled in and written after the cursor reached the bottom row (the
//! same row however the run began), so the text before the CR is gone
//! from the screen; replaying its SGR sequences restores the attributes.
//! The unit tests compare the two parses on random output.

/// Output kept unparsed before it is parsed anyway.
pub const LAZY: usize = 128 * 1024;
/// Worth a probe of the scroll region (a copy of the screen) to skip.
const MIN_SKIP: usize = 8 * 1024;
/// Longest escape sequence looked into when looking for plain text.
const MAX_SEQ: usize = 64;

/// The screen model of a session.
pub struct Model {
    parser: vt100::Parser,
    pending: Vec<u8>,
    /// The parser is known to be between sequences and characters (the
    /// vte ground state, no UTF-8 sequence begun): the next output can
    /// be skipped in part.
    clean: bool,
    /// Its escape state only (what the last ESC began has ended).
    ground: bool,
    /// Parsed in full and skipped, in bytes (for the tests).
    skipped: u64,
}

impl Model {
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Model {
        let (rows, cols) = (
            std::num::NonZeroU16::new(rows).unwrap_or(vt100::Parser::DEFAULT_ROWS),
            std::num::NonZeroU16::new(cols).unwrap_or(vt100::Parser::DEFAULT_COLS),
        );
        Model {
            parser: vt100::Parser::new(rows, cols, scrollback),
            pending: Vec::new(),
            clean: true,
            ground: true,
            skipped: 0,
        }
    }

    /// Takes output; parses it once [`LAZY`] of it waits.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= LAZY {
            self.sync();
        }
    }

    /// Whether output waits to be parsed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Parses what waits and gives its memory back (the session is idle).
    pub fn settle(&mut self) {
        self.sync();
        self.pending = Vec::new();
    }

    /// The screen as the program drew it.
    pub fn screen(&mut self) -> &vt100::Screen {
        self.sync();
        self.parser.screen()
    }

    /// Resizes, after what was printed at the old size.
    pub fn set_size(&mut self, rows: std::num::NonZeroU16, cols: std::num::NonZeroU16) {
        self.sync();
        self.parser.set_size(rows, cols);
    }

    /// Parses what waits, skipping what cannot show.
    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let rows = self.parser.screen().size().0.get() as usize;
        match skip_point(&bytes, rows, self.clean, self.ground) {
            Some(s) => {
                self.parser.process(&bytes[..s.start]);
                if self.full_region() {
                    self.parser.process(&s.replay);
                    self.parser.process(&bytes[s.cut..]);
                    self.skipped += (s.cut - s.start) as u64;
                } else {
                    self.parser.process(&bytes[s.start..]);
                }
            }
            None => self.parser.process(&bytes),
        }
        self.ground = ground_after(&bytes, self.ground);
        self.clean = self.ground && utf8_complete(&bytes);
        self.pending = bytes;
        self.pending.clear();
    }

    /// Whether the scroll region is the whole screen (vt100 does not say:
    /// a copy of the screen is asked, with a probe that shows it).
    fn full_region(&self) -> bool {
        let screen = self.parser.screen();
        let (rows, cols) = screen.size();
        let mut probe = vt100::Parser::new(rows, cols, 0);
        *probe.screen_mut() = screen.clone();
        // Origin mode off, clear, mark the top row, then to the bottom.
        let mut p = b"\x1b[?6l\x1b[2J\x1b[1;1HX\r".to_vec();
        p.extend(std::iter::repeat_n(b'\n', rows.get() as usize - 1));
        probe.process(&p);
        if probe.screen().cursor_position().0 != rows.get() - 1 {
            return false;
        }
        // One more line feed scrolls the top row away if the region has it.
        probe.process(b"\n");
        probe.screen().cell(0, 0).is_some_and(|c| !c.has_contents())
    }

    #[cfg(test)]
    fn parser(&mut self) -> &vt100::Parser {
        self.sync();
        &self.parser
    }
}

/// What may be left unparsed: `start..cut`, with the SGR sequences in it
/// to replay.
#[derive(Debug, PartialEq, Eq)]
struct Skip {
    start: usize,
    cut: usize,
    replay: Vec<u8>,
}

fn plain(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | b'\r' | b'\n' | b'\t')
}

/// The length of the escape sequence at the start of `b` (CSI, or ESC
/// with intermediates and a final byte) when it is there whole, else 1.
fn seq_len(b: &[u8]) -> usize {
    let (from, fin): (usize, fn(u8) -> bool) = match b.get(1) {
        Some(b'[') => (2, |c| (0x40..=0x7e).contains(&c)),
        Some(_) => (1, |c| (0x30..=0x7e).contains(&c)),
        None => return 1,
    };
    b.iter()
        .take(MAX_SEQ)
        .skip(from)
        .position(|&c| fin(c))
        .map_or(1, |i| from + i + 1)
}

/// A sequence within plain text that only sets attributes (SGR: to be
/// replayed) or erases within the line (EL), with its length.
fn inline_seq(b: &[u8]) -> Option<(usize, bool)> {
    if b.len() < 3 || b[0] != 0x1b || b[1] != b'[' {
        return None;
    }
    let end = b
        .iter()
        .take(MAX_SEQ)
        .skip(2)
        .position(|c| !(c.is_ascii_digit() || *c == b';' || *c == b':'))?
        + 2;
    match b[end] {
        b'm' => Some((end + 1, true)),
        b'K' if end <= 3 => Some((end + 1, false)),
        _ => None,
    }
}

/// A run of plain text from the start of `b`: its end, the position of
/// its last character, its SGR sequences.
fn plain_run(b: &[u8]) -> (usize, Option<usize>, Vec<std::ops::Range<usize>>) {
    let (mut end, mut last_char, mut sgrs) = (0, None, Vec::new());
    while end < b.len() {
        let c = b[end];
        if plain(c) {
            if (0x20..=0x7e).contains(&c) {
                last_char = Some(end);
            }
            end += 1;
        } else if let Some((n, replay)) = inline_seq(&b[end..]) {
            if replay {
                sgrs.push(end..end + n);
            }
            end += n;
        } else {
            break;
        }
    }
    (end, last_char, sgrs)
}

/// The latest CR of `run` followed in it by 2 x rows + 1 line feeds and
/// then some (those after its last character too, so the last character
/// printed is the same).
fn cut_in(run: &[u8], last_char: usize, rows: usize) -> Option<usize> {
    let trailing = run[last_char..].iter().filter(|&&b| b == b'\n').count();
    let need = 2 * rows + 1 + trailing;
    let mut feeds = 0;
    for j in (1..run.len()).rev() {
        if run[j] == b'\n' {
            feeds += 1;
            if feeds >= need && run[j - 1] == b'\r' {
                return Some(j - 1);
            }
        }
    }
    None
}

/// The latest stretch of `bytes` worth skipping whose start the parser
/// reaches in its ground state (`clean`: it is there before `bytes`).
fn skip_point(bytes: &[u8], rows: usize, clean: bool, ground: bool) -> Option<Skip> {
    let mut best = None;
    let mut start = 0;
    while start < bytes.len() {
        let (end, last_char, sgrs) = plain_run(&bytes[start..]);
        let cut = last_char.and_then(|l| cut_in(&bytes[start..start + end], l, rows));
        if let Some(cut) = cut.filter(|&c| c >= MIN_SKIP) {
            let before = &bytes[..start];
            let ok = if start == 0 {
                clean
            } else {
                ground_after(before, ground) && utf8_complete(before)
            };
            if ok {
                let mut replay = Vec::new();
                for r in sgrs.into_iter().take_while(|r| r.start < cut) {
                    replay.extend_from_slice(&bytes[start + r.start..start + r.end]);
                }
                best = Some(Skip {
                    start,
                    cut: start + cut,
                    replay,
                });
            }
        }
        start += end;
        if start < bytes.len() {
            start += if bytes[start] == 0x1b {
                seq_len(&bytes[start..])
            } else {
                1
            };
        }
    }
    best
}

/// Whether vte is in its ground state after `bytes`, given that it was
/// (`before`): what follows the last ESC decides; false when unsure.
fn ground_after(bytes: &[u8], before: bool) -> bool {
    let Some(esc) = bytes.iter().rposition(|&b| b == 0x1b) else {
        return before;
    };
    let tail = &bytes[esc + 1..];
    let Some((&first, rest)) = tail.split_first() else {
        return false;
    };
    // Bytes that keep a sequence going without ending it: C0 controls
    // other than CAN and SUB (which abort it) are executed within it.
    let c0 = |b: u8| b < 0x20 && b != 0x18 && b != 0x1a;
    let ended_by = |rest: &[u8], fin: &dyn Fn(u8) -> bool, go_on: &dyn Fn(u8) -> bool| {
        for &b in rest {
            if fin(b) {
                return true;
            }
            if !(go_on(b) || c0(b)) {
                return false;
            }
        }
        false
    };
    match first {
        b'[' => ended_by(rest, &|b| (0x40..=0x7e).contains(&b), &|b| {
            (0x20..=0x3f).contains(&b)
        }),
        b']' => ended_by(rest, &|b| b == 0x07, &|b| b >= 0x20 && b != 0x7f),
        b'P' | b'X' | b'^' | b'_' => false,
        0x20..=0x2f => ended_by(rest, &|b| (0x30..=0x7e).contains(&b), &|b| {
            (0x20..=0x2f).contains(&b)
        }),
        0x30..=0x7e => true,
        _ => false,
    }
}

/// Whether `bytes` does not end inside a UTF-8 sequence.
fn utf8_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4)..];
    let Some(lead) = tail.iter().rposition(|&b| b & 0xc0 != 0x80) else {
        return false;
    };
    let want = match tail[lead] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return false,
    };
    tail.len() - lead == want
}

#[cfg(test)]
mod tests;
