//! Terminal output as journal text: escape sequences removed, one journal
//! line per terminal line. A carriage return that is not part of a line
//! end starts the line again, as on the screen, so a progress bar leaves
//! its last state, not every frame.

/// Longest line kept before it is cut into several (journald's own limit
/// on a stream line is 48 KiB; shorter lines stay readable).
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    /// CSI: parameters until a final byte 0x40..=0x7e.
    Csi,
    /// OSC, DCS, SOS, PM, APC: until BEL or ST (ESC \).
    String,
    StringEsc,
}

/// A streaming stripper: feed it chunks as they come.
#[derive(Debug)]
pub struct Stripper {
    state: State,
    line: Vec<u8>,
    /// A `\r` was seen: the line restarts unless `\n` follows.
    pending_cr: bool,
}

impl Default for Stripper {
    fn default() -> Self {
        Stripper {
            state: State::Ground,
            line: Vec::new(),
            pending_cr: false,
        }
    }
}

impl Stripper {
    /// Feeds `bytes`; appends each finished line, with its `\n`, to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Ground {
                // Text goes in runs, not byte by byte: most output is text.
                let run = bytes[i..]
                    .iter()
                    .position(|&b| b < 0x20 || b == 0x7f)
                    .unwrap_or(bytes.len() - i);
                if run > 0 {
                    self.push_run(&bytes[i..i + run], out);
                    i += run;
                    continue;
                }
            }
            self.byte(bytes[i], out);
            i += 1;
        }
    }

    /// [`Self::push`] of each byte of `run`, at once.
    fn push_run(&mut self, mut run: &[u8], out: &mut Vec<u8>) {
        if self.pending_cr {
            self.line.clear();
            self.pending_cr = false;
        }
        while !run.is_empty() {
            let take = (MAX_LINE - self.line.len()).min(run.len());
            self.line.extend_from_slice(&run[..take]);
            run = &run[take..];
            if self.line.len() >= MAX_LINE {
                self.end_line(out);
            }
        }
    }

    /// The unfinished line, if any (at the end of the session).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.line);
        out.push(b'\n');
        self.line.clear();
        self.pending_cr = false;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Esc => {
                self.state = match b {
                    b'[' => State::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => State::String,
                    // Intermediate bytes (ESC ( B and the like): one more.
                    0x20..=0x2f => State::Esc,
                    _ => State::Ground,
                }
            }
            State::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.state = State::Ground;
                }
            }
            State::String => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::StringEsc,
                _ => {}
            },
            State::StringEsc => {
                self.state = if b == b'\\' {
                    State::Ground
                } else {
                    State::String
                }
            }
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\n' => self.end_line(out),
            b'\r' => self.pending_cr = true,
            0x1b => self.state = State::Esc,
            b'\t' => self.push(b, out),
            // Backspace takes back the last character, as echo does.
            0x08 => {
                self.line.pop();
            }
            0x00..=0x1f | 0x7f => {}
            _ => self.push(b, out),
        }
    }

    fn push(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.line.clear();
            self.pending_cr = false;
        }
        self.line.push(b);
        if self.line.len() >= MAX_LINE {
            self.end_line(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(chunks: &[&[u8]]) -> String {
        let mut s = Stripper::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_are_removed_and_lines_kept() {
        assert_eq!(
            strip(&[b"\x1b[1;31mred\x1b[0m text\r\n", b"\x1b]0;title\x07next"]),
            "red text\nnext\n"
        );
        // A sequence split across chunks.
        assert_eq!(strip(&[b"a\x1b[3", b"8;5;1mb\r\n"]), "ab\n");
        // OSC ended by ST, charset selection.
        assert_eq!(strip(&[b"\x1b]8;;u\x1b\\x\x1b(By\n"]), "xy\n");
    }

    #[test]
    fn carriage_returns_keep_the_last_state_of_a_line() {
        assert_eq!(strip(&[b"10%\r50%\r100%\r\ndone\n"]), "100%\ndone\n");
        assert_eq!(strip(&[b"nam\x08me\n"]), "name\n");
    }

    #[test]
    fn text_in_runs_strips_as_byte_by_byte() {
        let input: &[&[u8]] = &[
            b"pre\x1b[31mfix\x1b[0m\r\n50%\r",
            b"100%\r\nab\x08c\x1b]0;t",
            b"itle\x07 tail\x7f!\n",
        ];
        let mut bytewise = Stripper::default();
        let mut want = Vec::new();
        for c in input {
            for &b in *c {
                bytewise.byte(b, &mut want);
            }
        }
        assert_eq!(strip(input).as_bytes(), &want[..]);
        assert_eq!(strip(input), "prefix\n100%\nac tail!\n");
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE + 5];
        let out = strip(&[&long]);
        assert_eq!(out.lines().count(), 2);
    }
}
