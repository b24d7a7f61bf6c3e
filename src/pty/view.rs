//! How an attached terminal draws the session: as the program printed it
//! while the window is the session's size (the writer's, usually: exact
//! and cheapest), and from a screen model of its own while it is not (a
//! viewer, or a writer without the lease): the program's output is laid out
//! for the session's size, which another window would wrap and scroll
//! differently. The model's screen is then drawn into the window, clipped
//! to it, following the cursor (as tmux shows a larger window).

use std::fmt::Write as _;
use std::num::NonZeroU16;

/// What a window change needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Redraw {
    /// These bytes redraw it (or nothing has to change).
    Local(Vec<u8>),
    /// Ask the holder for the size and a fresh screen (`Sender::redraw`).
    Ask,
}

/// The drawing state of one attached terminal.
pub struct View {
    window: Option<(u16, u16)>,
    session: Option<(u16, u16)>,
    /// Some while the window differs from the session's size.
    model: Option<vt100::Parser>,
}

fn nz(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl View {
    /// `window`: the terminal's size, None when unknown (drawn as it comes).
    pub fn new(window: Option<(u16, u16)>) -> View {
        View {
            window,
            session: None,
            model: None,
        }
    }

    fn mismatched(&self) -> bool {
        matches!((self.window, self.session), (Some(w), Some(s)) if w != s)
    }

    /// The session's size changed (a snapshot at it follows).
    pub fn session_size(&mut self, rows: u16, cols: u16) {
        self.session = Some((rows, cols));
        self.model = self
            .mismatched()
            .then(|| vt100::Parser::new(nz(rows), nz(cols), 0));
    }

    /// The window changed to `window`.
    pub fn window_size(&mut self, window: Option<(u16, u16)>) -> Redraw {
        if window == self.window {
            return Redraw::Local(Vec::new());
        }
        self.window = window;
        match (&self.model, self.mismatched()) {
            (Some(m), true) => Redraw::Local(render(m.screen(), window.unwrap_or((1, 1)))),
            // Drawn as it came, or now the session's size: draw it anew.
            _ => {
                self.model = None;
                Redraw::Ask
            }
        }
    }

    /// What to write for output or a snapshot of the session.
    pub fn draw<'a>(&mut self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match (&mut self.model, self.window) {
            (Some(m), Some(w)) => {
                m.process(bytes);
                render(m.screen(), w).into()
            }
            _ => bytes.into(),
        }
    }
}

/// Cell attributes as SGR knows them.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Attrs {
    fg: Option<vt100::Color>,
    bg: Option<vt100::Color>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    inverse: bool,
}

impl Attrs {
    fn of(c: &vt100::Cell) -> Attrs {
        let color = |c: vt100::Color| (c != vt100::Color::Default).then_some(c);
        Attrs {
            fg: color(c.fgcolor()),
            bg: color(c.bgcolor()),
            bold: c.bold(),
            dim: c.dim(),
            italic: c.italic(),
            underline: c.underline(),
            inverse: c.inverse(),
        }
    }

    fn sgr(&self, out: &mut String) {
        out.push_str("\x1b[0");
        for (on, code) in [
            (self.bold, ";1"),
            (self.dim, ";2"),
            (self.italic, ";3"),
            (self.underline, ";4"),
            (self.inverse, ";7"),
        ] {
            if on {
                out.push_str(code);
            }
        }
        for (color, base) in [(self.fg, 30u16), (self.bg, 40)] {
            match color {
                Some(vt100::Color::Idx(i)) if i < 8 => {
                    let _ = write!(out, ";{}", base + u16::from(i));
                }
                Some(vt100::Color::Idx(i)) if i < 16 => {
                    let _ = write!(out, ";{}", base + 60 + u16::from(i - 8));
                }
                Some(vt100::Color::Idx(i)) => {
                    let _ = write!(out, ";{};5;{i}", base + 8);
                }
                Some(vt100::Color::Rgb(r, g, b)) => {
                    let _ = write!(out, ";{};2;{r};{g};{b}", base + 8);
                }
                Some(vt100::Color::Default) | None => {}
            }
        }
        out.push('m');
    }
}

/// Draws `screen` into a window of `(rows, cols)`: every window row from
/// its first column, the part of the screen that holds the cursor, the
/// rest of the window blank.
pub fn render(screen: &vt100::Screen, (wrows, wcols): (u16, u16)) -> Vec<u8> {
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    let (crow, ccol) = screen.cursor_position();
    let top = (crow + 1).saturating_sub(wrows);
    let left = (ccol + 1).saturating_sub(wcols);
    let end = cols.min(left.saturating_add(wcols));
    let mut out = String::from("\x1b[?25l");
    for vr in 0..wrows {
        let r = top + vr;
        let _ = write!(out, "\x1b[{};1H\x1b[0m", vr + 1);
        if r >= rows {
            out.push_str("\x1b[K");
            continue;
        }
        // Up to the last cell that shows something; an erase does the rest.
        let shows = |c: u16| {
            screen
                .cell(r, c)
                .is_some_and(|x| x.has_contents() || Attrs::of(x) != Attrs::default())
        };
        let stop = (left..end)
            .rev()
            .find(|c| shows(*c))
            .map_or(left, |c| c + 1);
        let mut attrs = Attrs::default();
        let mut c = left;
        while c < stop {
            let Some(cell) = screen.cell(r, c) else { break };
            if cell.is_wide_continuation() {
                c += 1;
                continue;
            }
            let a = Attrs::of(cell);
            if a != attrs {
                a.sgr(&mut out);
                attrs = a;
            }
            // A wide character cut by the window's edge shows as a space.
            let fits = !cell.is_wide() || c + 1 < end;
            if cell.has_contents() && fits {
                out.push_str(cell.contents());
            } else {
                out.push(' ');
            }
            c += if cell.is_wide() && fits { 2 } else { 1 };
        }
        // Not at the last column: an erase there would take its character.
        if c - left < wcols {
            out.push_str("\x1b[0m\x1b[K");
        }
    }
    out.push_str("\x1b[0m");
    if crow >= top && ccol >= left {
        let _ = write!(out, "\x1b[{};{}H", crow - top + 1, ccol - left + 1);
        if !screen.hide_cursor() {
            out.push_str("\x1b[?25h");
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(bytes: &[u8], rows: u16, cols: u16) -> vt100::Parser {
        let mut p = vt100::Parser::new(nz(rows), nz(cols), 0);
        p.process(bytes);
        p
    }

    #[test]
    fn a_viewer_kept_drawing_at_its_old_size_after_the_writer_resized() {
        let mut v = View::new(Some((30, 100)));
        v.session_size(30, 100);
        // Same size: as printed.
        assert_eq!(&*v.draw(b"plain"), b"plain");
        // The writer shrinks the session to 10x40: a line of 50 wraps at 40
        // there, and must on the viewer's wider window too.
        v.session_size(10, 40);
        let snap = format!("\x1b[H\x1b[2J{}\r\n\x1b[31mred\x1b[0m", "x".repeat(50));
        let out = v.draw(snap.as_bytes()).into_owned();
        let t = shown(&out, 30, 100);
        let rows: Vec<String> = t.screen().rows(0, 100).take(4).collect();
        assert_eq!(rows[0], "x".repeat(40));
        assert_eq!(rows[1], "x".repeat(10));
        assert_eq!(rows[2], "red");
        assert_eq!(
            t.screen().cell(2, 0).unwrap().fgcolor(),
            vt100::Color::Idx(1)
        );
        assert_eq!(t.screen().cursor_position(), (2, 3));
        // The viewer's window changes: redrawn from the model, at once.
        let Redraw::Local(out) = v.window_size(Some((20, 30))) else {
            panic!("redrawn locally")
        };
        let t = shown(&out, 20, 30);
        // Clipped at 30 columns, the last column kept.
        assert_eq!(t.screen().rows(0, 30).next().unwrap(), "x".repeat(30));
        // The window becomes the session's size: the holder redraws.
        assert_eq!(v.window_size(Some((10, 40))), Redraw::Ask);
        assert_eq!(&*v.draw(b"raw"), b"raw");
    }

    #[test]
    fn a_window_smaller_than_the_session_follows_the_cursor() {
        let mut p = vt100::Parser::new(nz(40), nz(120), 0);
        for i in 0..40 {
            p.process(format!("\x1b[{};1Hline {i}", i + 1).as_bytes());
        }
        let t = shown(&render(p.screen(), (10, 100)), 10, 100);
        let rows: Vec<String> = t.screen().rows(0, 100).collect();
        assert_eq!(rows[9], "line 39");
        assert_eq!(rows[0], "line 30");
    }
}
