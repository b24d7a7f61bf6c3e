//! (i) Terminal sessions against tmux, in the same run, each through a
//! client attached on a pseudo-terminal the benchmark owns (what a user's
//! terminal emulator would be), TERM=xterm-256color, 24x80:
//!
//!   - throughput: the time to `cat` BENCH_PTY_MB (100) MB of text through
//!     an attached session, from the Enter that starts it to the end marker
//!     reaching the client's terminal;
//!   - keystroke echo: one key typed into the client's terminal until its
//!     echo (the line discipline's, inside the session) comes back out;
//!   - attach: from spawning `attach` to the last line of a session that
//!     printed 10,000 lines being on the client's terminal;
//!   - memory: resident memory of a session that printed 10,000 lines: the
//!     holder's RSS, against the growth of the tmux server's RSS per session.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::sync::{Arc, Condvar, Mutex};

use super::*;

const MARK: &[u8] = b"END42MARK";
/// Lines of scrollback refine-proc's holder keeps (none: nothing shows it).
const SCROLLBACK: usize = refine_proc::pty::holder::SCROLLBACK;
/// tmux's default history, which its copy mode shows.
const TMUX_HISTORY: usize = 2000;
/// The program prints the marker without it being in its command line, so
/// an echo of the command cannot match.
const PRINT_MARK: &str = "echo END$((6*7))MARK";

#[derive(Default)]
struct Watch {
    want: Option<Vec<u8>>,
    hit: bool,
    /// The end of the last chunk, for a marker split across reads.
    carry: Vec<u8>,
    bytes: u64,
}

/// A client (`refine-proc attach` or `tmux attach`) on a terminal of ours.
struct Term {
    master: File,
    pid: i32,
    child: std::process::Child,
    watch: Arc<(Mutex<Watch>, Condvar)>,
}

impl Term {
    /// Starts `cmd` on a new terminal, watching for `marker` from the start.
    fn spawn(cmd: Command, marker: Option<&[u8]>) -> Term {
        let t = Term::spawn_raw(cmd);
        t.watch.0.lock().unwrap().want = marker.map(<[u8]>::to_vec);
        let (mut r, w) = (t.master.try_clone().unwrap(), t.watch.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, cv) = &*w;
                let mut g = lock.lock().unwrap();
                g.bytes += n as u64;
                if let Some(want) = g.want.clone() {
                    let mut hay = std::mem::take(&mut g.carry);
                    hay.extend_from_slice(&buf[..n]);
                    if hay.windows(want.len()).any(|x| x == want) {
                        g.hit = true;
                        g.want = None;
                    } else {
                        let keep = hay.len().saturating_sub(want.len());
                        g.carry = hay.split_off(keep);
                    }
                }
                cv.notify_all();
            }
        });
        t
    }

    /// Starts `cmd` on a new terminal that nothing reads: the caller reads
    /// it (the echo probe, on its own thread, with no hand-off between
    /// threads in the timed path).
    fn spawn_raw(mut cmd: Command) -> Term {
        let (mut m, mut s) = (-1, -1);
        let ws = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two fds.
        if unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) }
            != 0
        {
            die("(i) openpty failed");
        }
        // SAFETY: fresh fds.
        let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        cmd.env("TERM", "xterm-256color")
            .stdin(Stdio::from(s.try_clone().unwrap()))
            .stdout(Stdio::from(s.try_clone().unwrap()))
            .stderr(Stdio::from(s));
        // SAFETY: setsid and TIOCSCTTY between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| die(&format!("(i) {cmd:?}: {e}")));
        drop(cmd);
        Term {
            master: File::from(m),
            pid: child.id() as i32,
            child,
            watch: Arc::default(),
        }
    }

    /// Waits for up to `limit` for the terminal to become readable.
    fn poll_in(&self, limit: Duration) -> bool {
        use std::os::fd::AsRawFd as _;
        let mut p = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd of ours.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }

    /// Reads (unwatched terminals only) until nothing comes for `quiet`;
    /// returns the bytes read.
    fn drain(&mut self, quiet: Duration) -> usize {
        let mut buf = [0u8; 1 << 16];
        let mut total = 0;
        while self.poll_in(quiet) {
            match self.master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    }

    /// One echo sample (unwatched terminals only): types `key` on the
    /// client's terminal and times until the key is back on it as text
    /// (outside escape sequences, whose final bytes are letters too).
    fn echo(&mut self, key: u8) -> Duration {
        let mut buf = [0u8; 1 << 16];
        let mut esc = EscState::Ground;
        let start = Instant::now();
        self.master.write_all(&[key]).unwrap();
        loop {
            let left = Duration::from_secs(10).saturating_sub(start.elapsed());
            if left.is_zero() || !self.poll_in(left) {
                die(&format!(
                    "(i) echo of {:?}: not seen within 10 s",
                    key as char
                ));
            }
            let n = match self.master.read(&mut buf) {
                Ok(0) | Err(_) => die("(i) echo: the client's terminal closed"),
                Ok(n) => n,
            };
            if buf[..n].iter().any(|&b| esc.text(b) == Some(key)) {
                return start.elapsed();
            }
        }
    }

    /// Watch for `marker` from now on (before the action that prints it).
    fn arm(&self, marker: &[u8]) {
        let mut g = self.watch.0.lock().unwrap();
        g.want = Some(marker.to_vec());
        g.hit = false;
        g.carry.clear();
    }

    fn wait(&self, what: &str, limit: Duration) {
        let (lock, cv) = &*self.watch;
        let deadline = Instant::now() + limit;
        let mut g = lock.lock().unwrap();
        while !g.hit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                die(&format!("(i) {what}: not seen within {limit:?}"));
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits until the client has drawn something (it is attached).
    fn wait_output(&self) {
        let (lock, cv) = &*self.watch;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut g = lock.lock().unwrap();
        while g.bytes == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                die("(i) the client drew nothing within 20 s");
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    fn type_keys(&mut self, b: &[u8]) {
        self.master.write_all(b).unwrap();
    }
}

/// Just enough of a terminal parser to tell text from escape sequences.
#[derive(Clone, Copy)]
enum EscState {
    Ground,
    Esc,
    Csi,
    Str,
}

impl EscState {
    /// Feeds one byte; the byte when it is text.
    fn text(&mut self, b: u8) -> Option<u8> {
        let (next, text) = match (*self, b) {
            (_, 0x1b) => (EscState::Esc, None),
            (EscState::Ground, _) => (EscState::Ground, Some(b)),
            (EscState::Esc, b'[') => (EscState::Csi, None),
            (EscState::Esc, b']' | b'P' | b'_' | b'^' | b'X') => (EscState::Str, None),
            (EscState::Esc, 0x20..=0x2f) => (EscState::Esc, None),
            (EscState::Esc, _) => (EscState::Ground, None),
            (EscState::Csi, 0x40..=0x7e) => (EscState::Ground, None),
            (EscState::Csi, _) => (EscState::Csi, None),
            (EscState::Str, 0x07) => (EscState::Ground, None),
            (EscState::Str, _) => (EscState::Str, None),
        };
        *self = next;
        text
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // SAFETY: SIGKILL to the client this benchmark started.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Proportional set size (shared pages split among their sharers) and
/// private memory (what ending the process frees), in KiB.
fn pss_private_kib(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// A text file of `mb` MiB: numbered printable lines of 100 bytes.
fn text_file(path: &Path, mb: u64) {
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    let tail = &"abcdefghijklmnopqrstuvwxyz0123456789".repeat(3)[..88];
    let mut line = 0u64;
    while line * 100 < mb << 20 {
        writeln!(f, "{line:>10} {tail}").unwrap();
        line += 1;
    }
    f.flush().unwrap();
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        capture(self.cmd().args(args))
    }

    fn new_session(&self, name: &str, script: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "80",
            "-y",
            "24",
            "bash",
            "-c",
            script,
        ]);
    }

    fn attach(&self, name: &str, marker: Option<&[u8]>) -> Term {
        let mut c = self.cmd();
        c.args(["attach-session", "-t", name]);
        Term::spawn(c, marker)
    }

    fn attach_raw(&self, name: &str) -> Term {
        let mut c = self.cmd();
        c.args(["attach-session", "-t", name]);
        Term::spawn_raw(c)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

impl Bench {
    fn pty_session(&self, state: &Path, script: &str) -> String {
        let out = capture(
            self.rp(state)
                .args(["run", "--pty", "--json", "--", "bash", "-c", script]),
        );
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| die(&format!("(i) run --pty: {e}: {out}")));
        v["id"]
            .as_str()
            .unwrap_or_else(|| die("(i) no id"))
            .to_string()
    }

    fn attach(&self, state: &Path, id: &str, marker: Option<&[u8]>) -> Term {
        let mut c = self.rp(state);
        c.args(["attach", id]);
        Term::spawn(c, marker)
    }

    fn attach_raw(&self, state: &Path, id: &str) -> Term {
        let mut c = self.rp(state);
        c.args(["attach", id]);
        Term::spawn_raw(c)
    }

    pub(super) fn case_i(&mut self) {
        let mb: u64 = env_num("BENCH_PTY_MB", if self.cfg.quick { 10 } else { 100 });
        let reps: usize = env_num("BENCH_PTY_REPS", if self.cfg.quick { 1 } else { 3 });
        let keys: usize = env_num("BENCH_PTY_KEYS", if self.cfg.quick { 50 } else { 200 });
        let attaches: usize = env_num("BENCH_PTY_ATTACHES", if self.cfg.quick { 5 } else { 20 });
        let sessions: usize = env_num("BENCH_PTY_SESSIONS", 5).max(1);
        println!("(i) terminal sessions vs tmux: cat {mb} MB x{reps}, {keys} keystrokes, {attaches} attaches, memory of {sessions} sessions");
        if !Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            println!("  skipped: tmux is not installed (apt-get install tmux)");
            self.notes.push("(i) skipped: tmux is not installed".into());
            return;
        }
        let state = self.state_dir("g");
        let file = self.root.join("g-text");
        text_file(&file, mb);
        let tmux = Tmux {
            socket: format!("rpbench-{}", std::process::id()),
        };
        let cat = format!(
            "while read -r l; do cat {}; {PRINT_MARK}; done",
            file.display()
        );

        // Throughput, then keystroke echo, in the same two sessions.
        let ours_id = self.pty_session(&state, &cat);
        tmux.new_session("cat", &cat);
        // refine-proc draws no status line: neither does tmux here.
        tmux.run(&["set-option", "-g", "status", "off"]);
        let mut ours = self.attach(&state, &ours_id, None);
        let mut base = tmux.attach("cat", None);
        ours.wait_output();
        base.wait_output();
        let limit = Duration::from_secs(600);
        let mut s = vec![Vec::new(), Vec::new()];
        for i in 0..reps * 2 {
            let (t, side) = if (i % 2 == 0) == (i / 2 % 2 == 0) {
                (&mut ours, 0)
            } else {
                (&mut base, 1)
            };
            t.arm(MARK);
            let start = Instant::now();
            t.type_keys(b"\r");
            t.wait("cat", limit);
            s[side].push(start.elapsed());
        }
        let per = |d: &[Duration]| mb as f64 / Stats::of(d).median * 1e3;
        println!(
            "  throughput: refine-proc {:.1} MB/s, tmux {:.1} MB/s",
            per(&s[0]),
            per(&s[1])
        );
        self.notes.push(format!(
            "(i) cat of {mb} MB through an attached client: refine-proc {:.1} MB/s, tmux {:.1} MB/s",
            per(&s[0]),
            per(&s[1])
        ));
        self.row(
            &format!("(i) cat {mb} MB attached"),
            "refine-proc attach",
            "tmux attach",
            &s,
            [0, 1],
            Some(1.0),
        );

        drop((ours, base));

        // Keystroke echo, in quiet sessions (`cat` to /dev/null: the line
        // discipline echoes), each client read by this thread itself: the
        // time from the key written on the client's terminal to its echo
        // read back from it.
        let quiet = "stty -echoctl; exec cat >/dev/null";
        let echo_id = self.pty_session(&state, quiet);
        tmux.new_session("echo", quiet);
        let mut ours = self.attach_raw(&state, &echo_id);
        let mut base = tmux.attach_raw("echo");
        let settle = Duration::from_millis(300);
        for t in [&mut ours, &mut base] {
            if !t.poll_in(Duration::from_secs(20)) {
                die("(i) echo: the client drew nothing within 20 s");
            }
            t.drain(settle);
        }
        let mut s = vec![Vec::new(), Vec::new()];
        for i in 0..keys * 2 {
            let k = i / 2;
            if k > 0 && k % 40 == 0 && i % 2 == 0 {
                // A new line now and then (not timed), so no line wraps.
                for t in [&mut ours, &mut base] {
                    t.type_keys(b"\r");
                    t.drain(Duration::from_millis(20));
                }
            }
            let (t, side) = if (i % 2 == 0) == (k % 2 == 0) {
                (&mut ours, 0)
            } else {
                (&mut base, 1)
            };
            // Nothing left over from the last sample.
            t.drain(Duration::from_millis(3));
            s[side].push(t.echo(b'a' + (k % 26) as u8));
        }
        self.row(
            "(i) keystroke echo",
            "refine-proc attach",
            "tmux attach",
            &s,
            [0, 1],
            Some(1.0),
        );
        drop((ours, base));
        capture(self.rp(&state).args(["stop", &echo_id]));

        // Sessions that printed 10,000 lines: attach time and memory.
        let tmux_pid: u32 = tmux
            .run(&["display-message", "-p", "#{pid}"])
            .trim()
            .parse()
            .unwrap_or(0);
        let tmux_before = {
            let (pss, private) = pss_private_kib(tmux_pid);
            (rss_kib(tmux_pid), pss, private)
        };
        let lines = format!("seq -f 'line %g' 1 10000; {PRINT_MARK}; read -r l");
        let mut ours_ids = Vec::new();
        for k in 0..sessions {
            let id = self.pty_session(&state, &lines);
            capture(self.rp(&state).args([
                "screen",
                &id,
                "--wait-for",
                "END42MARK",
                "--timeout",
                "60s",
            ]));
            ours_ids.push(id);
            let name = format!("lines{k}");
            // tmux's default, set explicitly (a user's .tmux.conf is not read).
            tmux.run(&[
                "set-option",
                "-g",
                "history-limit",
                &TMUX_HISTORY.to_string(),
            ]);
            tmux.new_session(
                &name,
                &format!(
                    "seq -f 'line %g' 1 10000; {PRINT_MARK}; tmux wait-for -S {name}; read -r l"
                ),
            );
            tmux.run(&["wait-for", &name]);
        }
        let mut s = vec![Vec::new(), Vec::new()];
        for i in 0..attaches * 2 {
            let start = Instant::now();
            let last: &[u8] = b"line 10000";
            let (t, side) = if i % 2 == 0 {
                (self.attach(&state, &ours_ids[0], Some(last)), 0)
            } else {
                (tmux.attach("lines0", Some(last)), 1)
            };
            t.wait("attach", Duration::from_secs(20));
            s[side].push(start.elapsed());
        }
        self.row(
            "(i) attach, 10k lines",
            "refine-proc attach",
            "tmux attach",
            &s,
            [0, 1],
            Some(1.0),
        );

        // RSS counts the binary's and libraries' pages in every holder;
        // PSS splits shared pages among the processes that share them, and
        // private memory is what ending the session frees.
        let holders: Vec<(f64, f64, f64)> = ours_ids
            .iter()
            .map(|id| {
                let out = capture(self.rp(&state).args(["status", "--json", id]));
                let v: Value = serde_json::from_str(&out).unwrap_or_default();
                let pid = v["pid"].as_u64().unwrap_or(0) as u32;
                let (pss, private) = pss_private_kib(pid);
                (rss_kib(pid), pss, private)
            })
            .collect();
        let n = holders.len() as f64 * 1024.0;
        let mean = |f: fn(&(f64, f64, f64)) -> f64| holders.iter().map(f).sum::<f64>() / n;
        let (o_rss, o_pss, o_priv) = (mean(|h| h.0), mean(|h| h.1), mean(|h| h.2));
        let (t_pss, t_priv) = pss_private_kib(tmux_pid);
        let per = sessions as f64 * 1024.0;
        let t_rss_grow = (rss_kib(tmux_pid) - tmux_before.0) / per;
        let t_pss_grow = (t_pss - tmux_before.1) / per;
        let t_priv_grow = (t_priv - tmux_before.2) / per;
        let tmux_total = rss_kib(tmux_pid) / 1024.0;
        let line = format!(
            "memory per session that printed 10,000 lines (scrollback: refine-proc {SCROLLBACK} lines, tmux {TMUX_HISTORY}): \
             refine-proc holder RSS {o_rss:.2} MiB, PSS {o_pss:.2} MiB, private {o_priv:.2} MiB; \
             tmux server growth per session RSS +{t_rss_grow:.2} MiB, PSS +{t_pss_grow:.2} MiB, private +{t_priv_grow:.2} MiB \
             ({tmux_total:.1} MiB RSS in all with {} sessions)",
            sessions + 2
        );
        println!("  {line}");
        self.notes.push(format!("(i) {line}"));
        let mut stop = self.rp(&state);
        stop.arg("stop").arg(&ours_id).args(&ours_ids);
        capture(&mut stop);
    }
}
