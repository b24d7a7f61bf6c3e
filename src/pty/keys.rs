//! Key names: `send --key` and `attach --detach-keys`.

use crate::error::{Error, Result};

/// The default detach key: Ctrl-\ (dtach's), which no common program needs
/// and which is SIGQUIT rather than input when it is not caught.
pub const DEFAULT_DETACH: &str = "ctrl-\\";

/// The bytes a key name stands for. Names: `Enter`, `Tab`, `Esc`, `Space`,
/// `BSpace`, `Up`, `Down`, `Right`, `Left`, `Home`, `End`, `PageUp`,
/// `PageDown`, `Delete`, and `C-x` / `ctrl-x` for a control character.
pub fn key_bytes(name: &str) -> Result<Vec<u8>> {
    let fixed: &[u8] = match name.to_ascii_lowercase().as_str() {
        "enter" | "return" => b"\r",
        "tab" => b"\t",
        "esc" | "escape" => b"\x1b",
        "space" => b" ",
        "bspace" | "backspace" => b"\x7f",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" | "ppage" => b"\x1b[5~",
        "pagedown" | "npage" => b"\x1b[6~",
        "delete" | "dc" => b"\x1b[3~",
        _ => return control(name).map(|b| vec![b]),
    };
    Ok(fixed.to_vec())
}

/// `C-c`, `ctrl-c`, `^C` -> 0x03.
fn control(name: &str) -> Result<u8> {
    let lower = name.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("c-")
        .or_else(|| lower.strip_prefix("ctrl-"))
        .or_else(|| lower.strip_prefix('^'));
    let byte = match rest.map(str::as_bytes) {
        Some([c @ b'a'..=b'z']) => Some(c - b'a' + 1),
        Some([b'@']) | Some([b' ']) => Some(0),
        Some([b'[']) => Some(0x1b),
        Some([b'\\']) => Some(0x1c),
        Some([b']']) => Some(0x1d),
        Some([b'^']) => Some(0x1e),
        Some([b'_']) => Some(0x1f),
        Some([b'?']) => Some(0x7f),
        _ => None,
    };
    byte.ok_or_else(|| {
        Error::invalid(format!("unknown key {:?}", crate::text::escape(name))).hint(
            "use Enter, Tab, Esc, Space, BSpace, Up, Down, Left, Right, Home, End, PageUp, PageDown, Delete, or C-a .. C-z, C-\\, C-]",
        )
    })
}

/// Parses `--detach-keys`: keys separated by commas, each a control key
/// (`ctrl-\`, `ctrl-p`) or one plain character, docker's format.
pub fn detach_sequence(spec: &str) -> Result<Vec<u8>> {
    let mut seq = Vec::new();
    for part in spec.split(',') {
        match part.as_bytes() {
            [c] if c.is_ascii_graphic() => seq.push(*c),
            _ => seq.push(control(part).map_err(|_| {
                Error::invalid(format!(
                    "unknown detach key {:?}",
                    crate::text::escape(part)
                ))
                .hint("give keys like ctrl-\\ or ctrl-p,ctrl-q (docker's format)")
            })?),
        }
    }
    if seq.is_empty() {
        return Err(Error::invalid("empty --detach-keys").hint("e.g. --detach-keys ctrl-p,ctrl-q"));
    }
    Ok(seq)
}

/// Finds the detach sequence in keyboard input that arrives in pieces.
#[derive(Debug)]
pub struct DetachMatcher {
    seq: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    pub fn new(seq: Vec<u8>) -> Self {
        DetachMatcher { seq, matched: 0 }
    }

    /// Returns the bytes to pass on, and whether the sequence is complete
    /// (input after it is dropped). A partial match is held back until it
    /// completes or fails.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.seq[self.matched] {
                self.matched += 1;
                if self.matched == self.seq.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.seq[..self.matched]);
            self.matched = 0;
            if b == self.seq[0] {
                self.matched = 1;
                if self.seq.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert_eq!(key_bytes("C-c").unwrap(), b"\x03");
        assert_eq!(key_bytes("ctrl-\\").unwrap(), b"\x1c");
        assert_eq!(key_bytes("Enter").unwrap(), b"\r");
        assert_eq!(key_bytes("up").unwrap(), b"\x1b[A");
        assert!(key_bytes("C-cc").is_err());
        assert!(key_bytes("F13").unwrap_err().hint.is_some());
    }

    #[test]
    fn detach_sequences_in_pieces() {
        assert_eq!(detach_sequence(DEFAULT_DETACH).unwrap(), vec![0x1c]);
        let seq = detach_sequence("ctrl-p,ctrl-q").unwrap();
        assert_eq!(seq, vec![0x10, 0x11]);
        assert!(detach_sequence("ctrl-").is_err());

        let mut m = DetachMatcher::new(seq);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // Not the second key: the held-back first key goes through.
        assert_eq!(m.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(m.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11rest"), (b"".to_vec(), true));

        let mut one = DetachMatcher::new(vec![0x1c]);
        assert_eq!(one.feed(b"ls\x1c"), (b"ls".to_vec(), true));
    }
}
