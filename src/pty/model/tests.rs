use super::*;

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Terminal output of every kind the skip must get right: plain lines
/// (CR LF, bare LF, long ones that wrap), SGR, cursor moves, scroll
/// regions, the alternate screen, clears, titles, UTF-8, tabs.
fn piece(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(24) {
        0..=11 => {
            let max = if rng.below(8) == 0 { 200 } else { 60 };
            let len = rng.below(max);
            for _ in 0..len {
                out.push(b'!' + rng.below(94) as u8);
            }
            out.extend_from_slice(if rng.below(10) == 0 { b"\n" } else { b"\r\n" });
        }
        12 => out.extend_from_slice(format!("\x1b[{}m", 30 + rng.below(8)).as_bytes()),
        13 => out.extend_from_slice(b"\x1b[0m"),
        14 => out.extend_from_slice(
            format!("\x1b[{};{}H", 1 + rng.below(30), 1 + rng.below(90)).as_bytes(),
        ),
        15 => out.extend_from_slice(
            format!("\x1b[{};{}r", 1 + rng.below(5), 10 + rng.below(20)).as_bytes(),
        ),
        16..=18 => out.extend_from_slice(b"\x1b[r"),
        19 => out.extend_from_slice(if rng.below(2) == 0 {
            b"\x1b[?1049h"
        } else {
            b"\x1b[?1049l"
        }),
        20 => out.extend_from_slice(b"\x1b[2J\x1b]0;a title\x07"),
        21 => out.extend_from_slice("é─ wide 日本\t|".as_bytes()),
        22 => out.extend_from_slice(b"\x1b[38;5;196mred\x1b[1;4mbold\x1b[m\ttab\r\n"),
        _ => out.extend_from_slice(b"\x1b[?6h\x1b[5;20r\x1b[3Bx\x1b7\x1b8"),
    }
}

fn state(p: &vt100::Screen) -> (String, (u16, u16), String, String) {
    (
        p.contents(),
        p.cursor_position(),
        p.state_formatted().escape_debug().to_string(),
        p.attributes_formatted().escape_debug().to_string(),
    )
}

#[test]
fn a_skipped_parse_draws_the_same_screen_as_a_full_one() {
    let mut skipped = 0;
    for seed in 1..=24u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut model = Model::new(24, 80, 0);
        let mut full = vt100::Parser::new(24.try_into().unwrap(), 80.try_into().unwrap(), 0);
        // Bursts of plain lines (coloured at times, as a build log), and
        // stretches of every other kind of output between them.
        for step in 0..120 {
            let mut chunk = Vec::new();
            if rng.below(3) == 0 {
                for _ in 0..1 + rng.below(20) {
                    piece(&mut rng, &mut chunk);
                }
            } else {
                for _ in 0..1 + rng.below(400) {
                    let colour = match rng.below(10) {
                        0 => "\x1b[1;32m",
                        1 => "\x1b[K",
                        _ => "",
                    };
                    let x = "x".repeat(rng.below(90) as usize);
                    chunk.extend_from_slice(format!("{step:>6} {colour}{x}\r\n").as_bytes());
                }
            }
            // Chunks split anywhere, inside sequences and characters too.
            let at = rng.below(chunk.len() as u64 + 1) as usize;
            for part in [&chunk[..at], &chunk[at..]] {
                model.feed(part);
                full.process(part);
            }
            if rng.below(20) == 0 {
                assert_eq!(
                    state(model.parser().screen()),
                    state(full.screen()),
                    "seed {seed}, step {step}"
                );
            }
        }
        assert_eq!(
            state(model.parser().screen()),
            state(full.screen()),
            "seed {seed}"
        );
        skipped += model.skipped;
    }
    assert!(skipped > 0, "nothing was skipped: the test checks nothing");
}

#[test]
fn a_long_plain_run_is_parsed_only_for_its_last_screens() {
    let mut model = Model::new(24, 80, 0);
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    model.feed(&text);
    let contents = model.screen().contents();
    assert!(contents.contains("line 19999"), "{contents}");
    assert!(model.skipped as usize > text.len() * 9 / 10);
}

#[test]
fn no_skip_inside_a_sequence_or_with_a_scroll_region() {
    // An OSC begun in one chunk and not ended: what follows is its text.
    assert!(!ground_after(b"abc\x1b]0;tit", true));
    assert!(ground_after(b"abc\x1b]0;title\x07more", false));
    assert!(ground_after(b"\x1b[1;2Hxy", false));
    assert!(!ground_after(b"\x1b[1;2", true));
    assert!(!ground_after(b"\x1bP1$r", true));
    assert!(ground_after(b"plain", true) && !ground_after(b"plain", false));
    assert!(utf8_complete(b"a\xc3\xa9") && !utf8_complete(b"a\xe6\x97"));

    let mut model = Model::new(24, 80, 0);
    model.feed(b"\x1b[2;20r");
    let _ = model.screen();
    assert!(!model.full_region());
    model.feed(b"\x1b[r");
    let _ = model.screen();
    assert!(model.full_region());
}
