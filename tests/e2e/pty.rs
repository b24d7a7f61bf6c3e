//! Terminal sessions (`run --pty`) on the real user manager: `attach`
//! driven under a real pseudo-terminal from the test, `send` and `screen`
//! answering a prompt, and the exit recorded like any run's.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::common::*;

const WAIT: Duration = Duration::from_secs(20);

/// Echoes each line as `got:LINE` and each window change as `size:R C`,
/// and says `ready` once the trap is set: attach only then. bash runs a
/// trap at once only while it waits in `wait`, so the lines are read by a
/// background loop (given the terminal explicitly: a background job of a
/// non-interactive shell reads /dev/null otherwise).
const REPORTS_SIZE: &str = "trap 'echo size:$(stty size)' WINCH; \
     while read -r l; do echo \"got:$l\"; done <&0 & \
     echo ready; while kill -0 $! 2>/dev/null; do wait $!; done";

/// Starts the session of [`REPORTS_SIZE`] and waits until it is ready.
fn start_reporting(env: &Env) -> PtyRec {
    let r = start(env, &["bash", "-c", REPORTS_SIZE]);
    screen(env, &r.id, "ready");
    r
}

#[derive(Debug, Deserialize)]
struct Screen {
    lines: Vec<String>,
    cursor: Cursor,
    rows: u16,
    cols: u16,
}

#[derive(Debug, Deserialize)]
struct Cursor {
    row: u16,
    col: u16,
}

#[derive(Debug, Deserialize)]
struct PtyRec {
    id: String,
    unit: String,
    pty: Option<PtyField>,
}

#[derive(Debug, Deserialize)]
struct PtyField {
    socket: String,
}

fn screen(env: &Env, id: &str, wait_for: &str) -> Screen {
    env.ok(&[
        "screen",
        "--json",
        id,
        "--wait-for",
        wait_for,
        "--timeout",
        "20s",
    ])
    .json()
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a size above zero")
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// The test's model of its terminal and every byte written to it, and
/// the signal of a change.
type Seen = Arc<(Mutex<(vt100::Parser, Vec<u8>)>, Condvar)>;

/// A terminal the test owns, with `refine-proc attach` running in it; what
/// the client draws goes through a vt100 model of the test's own.
struct Terminal {
    master: std::fs::File,
    pid: i32,
    /// The client's exit code, sent by the thread that waits for it.
    exit: mpsc::Receiver<i32>,
    seen: Seen,
}

impl Terminal {
    fn attach(env: &Env, args: &[&str], rows: u16, cols: u16) -> Terminal {
        let (mut m, mut s) = (-1, -1);
        let ws = winsize(rows, cols);
        // SAFETY: openpty writes two fds.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fds from openpty.
        let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let mut all = vec!["attach"];
        all.extend_from_slice(args);
        let mut cmd = env.command(&all);
        cmd.stdin(Stdio::from(s.try_clone().unwrap()))
            .stdout(Stdio::from(s.try_clone().unwrap()))
            .stderr(Stdio::from(s));
        // SAFETY: setsid and TIOCSCTTY between fork and exec: the client's
        // controlling terminal is the test's, so it gets SIGWINCH.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start attach");
        drop(cmd);
        let pid = child.id() as i32;
        let (tx, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let code = child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
            let _ = tx.send(code);
        });
        let master = std::fs::File::from(m);
        let seen = Arc::new((
            Mutex::new((vt100::Parser::new(nz(rows), nz(cols), 0), Vec::new())),
            Condvar::new(),
        ));
        let mut reader = master.try_clone().unwrap();
        let shared = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, cv) = &*shared;
                let mut g = lock.lock().unwrap();
                g.0.process(&buf[..n]);
                g.1.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Terminal {
            master,
            pid,
            exit,
            seen,
        }
    }

    fn type_keys(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits, on the reader's signal, until the test's screen shows `text`.
    fn wait_screen(&self, text: &str) -> String {
        let (lock, cv) = &*self.seen;
        let deadline = Instant::now() + WAIT;
        let mut g = lock.lock().unwrap();
        loop {
            let contents = g.0.screen().contents();
            if contents.contains(text) {
                return contents;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the terminal never showed {text:?}; it shows:\n{contents}"
            );
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Everything the client wrote (escapes included).
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap().1).into_owned()
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ on our master; the kernel signals the client.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        self.seen.0.lock().unwrap().0.set_size(nz(rows), nz(cols));
    }

    /// Waits for the client to exit; its code.
    fn wait_exit(&mut self) -> i32 {
        self.exit
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("attach did not exit within {WAIT:?}"))
    }

    fn kill_9(&self) {
        // SAFETY: SIGKILL to the client this test started.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.exit.try_recv().is_err() {
            self.kill_9();
        }
    }
}

fn start(env: &Env, command: &[&str]) -> PtyRec {
    let mut args = vec!["run", "--json", "--pty", "--"];
    args.extend_from_slice(command);
    let rec: PtyRec = env.ok(&args).json();
    assert!(rec.pty.is_some(), "a --pty record names its socket");
    rec
}

#[test]
fn pty_send_and_screen_answer_an_interactive_prompt_and_the_exit_is_recorded() {
    let env = Env::new();
    let r = start(
        &env,
        &[
            "sh",
            "-c",
            "read -p 'name? ' n; echo \"hi $n\"; read -p 'again? ' x; exit 3",
        ],
    );
    let socket = r.pty.as_ref().unwrap().socket.clone();
    assert!(
        socket.ends_with(&format!("/refine-proc/pty/{}.sock", r.id)),
        "{socket}"
    );
    let s = screen(&env, &r.id, "name?");
    assert_eq!((s.rows, s.cols), (24, 80));
    assert_eq!(s.lines.len(), 24);
    assert_eq!(s.lines[0], "name?");
    assert_eq!((s.cursor.row, s.cursor.col), (0, 6));

    env.ok(&["send", &r.id, "bob\n"]);
    let s = screen(&env, &r.id, "again?");
    assert_eq!(&s.lines[..3], ["name? bob", "hi bob", "again?"]);
    let text = env.ok(&["screen", &r.id]).stdout;
    assert_eq!(text, "name? bob\nhi bob\nagain?\n");

    env.ok(&["send", &r.id, "--key", "Enter"]);
    wait_gone(&r.unit);
    let rec = env.status(&r.id);
    assert_eq!(
        (rec.state.as_str(), rec.exit_code),
        ("failed", Some(3)),
        "{rec:?}"
    );
    // The output is in its logs as text.
    let ident = r.unit.trim_end_matches(".service");
    wait_journal_lines(ident, 2);
    let logs = env.ok(&["logs", &r.id]).stdout;
    assert!(logs.contains("name? bob\nhi bob\n"), "{logs:?}");

    // An ended session says so, with a hint.
    let out = env.cmd(&["screen", &r.id]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("has ended") && out.stderr.contains("hint:"),
        "{}",
        out.stderr
    );
}

#[test]
fn pty_screen_wait_for_times_out_with_the_screen() {
    let env = Env::new();
    let r = start(&env, &["sh", "-c", "echo ready; sleep 60"]);
    screen(&env, &r.id, "ready");
    let out = env.cmd(&["screen", &r.id, "--wait-for", "never", "--timeout", "1s"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("ready"), "{}", out.stderr);
    let plain = env.cmd(&["send", &r.id]);
    assert_eq!(plain.code, 2, "nothing to send: {plain:?}");
    let not_pty = env.run(&["--", "sleep", "60"]);
    let out = env.cmd(&["screen", &not_pty.id]);
    assert_eq!(out.code, 4);
    assert!(
        out.stderr.contains("not a terminal session"),
        "{}",
        out.stderr
    );
}

#[test]
fn pty_attach_types_resizes_detaches_and_reattaches_with_a_second_viewer() {
    let env = Env::new();
    // The program reports each window change itself (bash runs the trap
    // while read waits): the size is seen from inside the session.
    let r = start_reporting(&env);
    let mut t = Terminal::attach(&env, &[&r.id], 30, 100);
    // The writer's window sets the session's size.
    t.wait_screen("size:30 100");
    let s: Screen = env.ok(&["screen", "--json", &r.id]).json();
    assert_eq!((s.rows, s.cols), (30, 100));
    t.type_keys(b"hello\r");
    t.wait_screen("got:hello");
    let mut viewer = Terminal::attach(&env, &["--read-only", &r.id], 30, 100);
    viewer.wait_screen("got:hello");
    // The viewer cannot write; the writer's input reaches both.
    viewer.type_keys(b"ignored\r");
    t.type_keys(b"second\r");
    viewer.wait_screen("got:second");
    t.wait_screen("got:second");
    assert!(!t.wait_screen("got:second").contains("ignored"));

    t.resize(40, 120);
    t.wait_screen("size:40 120");
    viewer.wait_screen("size:40 120");
    let s: Screen = env.ok(&["screen", "--json", &r.id]).json();
    assert_eq!((s.rows, s.cols), (40, 120));

    t.type_keys(b"\x1c");
    assert_eq!(t.wait_exit(), 0);
    t.wait_screen("[detached from");
    assert_eq!(env.status(&r.id).state, "running");

    let again = Terminal::attach(&env, &[&r.id], 40, 120);
    let shown = again.wait_screen("got:second");
    assert!(shown.contains("got:hello"), "{shown}");
    drop(viewer);
}

/// Regression: a read-only viewer was not told when the writer resized
/// the terminal and kept drawing at its old size: a line the session
/// wrapped at 40 columns showed unwrapped in the viewer's 100. Now the
/// viewer draws the session's screen at the session's size, clipped to its
/// own window, and again when its own window changes.
#[test]
fn pty_a_read_only_viewer_draws_at_the_writers_size_after_a_resize() {
    let env = Env::new();
    let r = start_reporting(&env);
    let mut t = Terminal::attach(&env, &[&r.id], 30, 100);
    t.wait_screen("size:30 100");
    let viewer = Terminal::attach(&env, &["--read-only", &r.id], 30, 100);
    viewer.wait_screen("size:30 100");
    t.resize(12, 40);
    t.wait_screen("size:12 40");
    viewer.wait_screen("size:12 40");
    let long = "y".repeat(60);
    t.type_keys(format!("{long}\r").as_bytes());
    // Wrapped at 40 by the session: one line for the writer's terminal.
    t.wait_screen(&format!("got:{long}"));
    let wrapped = format!("got:{}\n{}", "y".repeat(36), "y".repeat(24));
    // The viewer's screen is the session's: 12 rows of at most 40 columns.
    let seen = viewer.wait_screen(&wrapped);
    let s: Screen = env.ok(&["screen", "--json", &r.id]).json();
    assert_eq!((s.rows, s.cols), (12, 40));
    let rows: Vec<&str> = seen.lines().map(str::trim_end).collect();
    let want: Vec<&str> = s.lines.iter().map(|l| l.trim_end()).collect();
    let want_end = want.iter().rposition(|l| !l.is_empty()).unwrap() + 1;
    assert_eq!(rows[..want_end], want[..want_end], "viewer:\n{seen}");
    assert!(
        rows.contains(&format!("got:{}", "y".repeat(36)).as_str()),
        "{seen}"
    );
    assert!(rows.iter().all(|l| l.chars().count() <= 40), "{seen}");
    // Its own window shrinks: the session is clipped to it, not wrapped.
    viewer.resize(20, 30);
    let clipped = format!("got:{}\n", "y".repeat(26));
    let seen = viewer.wait_screen(&clipped);
    assert!(seen.lines().all(|l| l.chars().count() <= 30), "{seen}");
    // The writer's own terminal is the session's size: drawn as printed.
    t.type_keys(b"\x1c");
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn pty_attach_keys_typed_before_the_policy_answers_reach_the_program_once_authorized() {
    let env = Env::new();
    let r = start_reporting(&env);
    let mut t = Terminal::attach(&env, &[&r.id], 30, 100);
    // At once, before the screen is drawn and the writer authorized: the
    // keys wait for the policy's answer, then reach the program in order.
    t.type_keys(b"early\r");
    t.type_keys(b"later\r");
    let shown = t.wait_screen("got:later");
    assert!(shown.contains("got:early"), "{shown}");
    // Then attached as the writer: its window is the session's.
    t.wait_screen("size:30 100");
    let s: Screen = env.ok(&["screen", "--json", &r.id]).json();
    assert_eq!((s.rows, s.cols), (30, 100));
}

#[test]
fn pty_kill_9_of_the_attached_client_loses_nothing() {
    let env = Env::new();
    let r = start(
        &env,
        &["sh", "-c", "while read l; do echo \"got:$l\"; done"],
    );
    let mut t = Terminal::attach(&env, &[&r.id], 24, 80);
    t.type_keys(b"one\r");
    t.wait_screen("got:one");
    t.kill_9();
    assert_eq!(t.wait_exit(), -1, "killed");
    env.ok(&["send", &r.id, "two\n"]);
    let mut again = Terminal::attach(&env, &["--detach-keys", "ctrl-p,ctrl-q", &r.id], 24, 80);
    let shown = again.wait_screen("got:two");
    assert!(shown.contains("got:one"), "{shown}");
    again.type_keys(b"three\r");
    again.wait_screen("got:three");
    again.type_keys(b"\x10\x11");
    assert_eq!(again.wait_exit(), 0);
    again.wait_screen("[detached from");
    assert!(
        !again.raw().contains("\x10"),
        "the detach keys are not passed on"
    );
}

#[test]
fn pty_session_survives_sigkill_of_the_daemon_and_of_its_client() {
    let env = Env::new();
    let daemon = super::daemon::Daemon::start(&env);
    let r = start_reporting(&env);
    let mut t = Terminal::attach(&env, &[&r.id], 24, 80);
    t.type_keys(b"before\r");
    t.wait_screen("got:before");
    // The master side lives in the unit's holder: neither death touches it.
    systemctl(&["kill", "--signal=KILL", &daemon.unit]);
    wait_for(&daemon.unit, |info| {
        info.is_none_or(|i| !matches!(i.state.active_state.as_str(), "active" | "deactivating"))
    });
    t.kill_9();
    assert_eq!(t.wait_exit(), -1, "killed");
    env.ok(&["send", &r.id, "after\n"]);
    let mut again = Terminal::attach(&env, &[&r.id], 24, 80);
    let shown = again.wait_screen("got:after");
    assert!(shown.contains("got:before"), "{shown}");
    again.type_keys(b"\x1c");
    assert_eq!(again.wait_exit(), 0);
    assert_eq!(env.status(&r.id).state, "running");
}

#[test]
fn pty_paused_session_is_refused_with_a_hint_and_stop_hangs_up_an_interactive_shell() {
    let env = Env::new();
    // An interactive bash ignores SIGTERM: stop must still end it at once
    // (the holder hangs the terminal up, as a closed window does).
    let r = start(&env, &["bash", "--norc", "-i"]);
    env.ok(&["send", &r.id, "echo on$((1+1))\n"]);
    screen(&env, &r.id, "on2");
    env.ok(&["pause", &r.id]);
    let out = env.cmd(&["send", &r.id, "x"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("paused") && out.stderr.contains("refine-proc resume"),
        "{}",
        out.stderr
    );
    env.ok(&["resume", &r.id]);
    env.ok(&["send", &r.id, "echo back$((1+1))\n"]);
    screen(&env, &r.id, "back2");
    let t = Instant::now();
    env.ok(&["stop", &r.id]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        t.elapsed()
    );
    let rec = env.status(&r.id);
    assert!(rec.state == "stopped" || rec.state == "failed", "{rec:?}");
    assert!(
        rec.exit_code.is_some() || rec.exit_signal.is_some(),
        "{rec:?}"
    );
}

/// Writes its argv NUL-separated to `out`, says so on the fifo `back`, then
/// shows `started` and waits.
const ARGV_TO_OUT: &str =
    r#"printf '%s\0' "$0" "$@" > out; echo done > back; echo started; exec sleep 600"#;

#[test]
fn pty_session_command_was_rewritten_by_a_daemon_reload() {
    // The holder's ExecStart went to systemd as text before it went through
    // exec-unit's hex: a reload read `;` back as `\;` and `$$` as `\$\$`.
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let back = env.work_dir().join("back");
    assert!(std::process::Command::new("mkfifo")
        .arg(&back)
        .status()
        .unwrap()
        .success());
    let mut args = vec!["run", "--json", "--pty", "--", "sh", "-c", ARGV_TO_OUT];
    args.extend_from_slice(super::unitbuild::HOSTILE);
    let r: PtyRec = env.ok(&args).json();
    let mut expected = Vec::new();
    for field in super::unitbuild::HOSTILE {
        expected.extend_from_slice(field.as_bytes());
        expected.push(0);
    }
    let read_round = |round: u32| {
        let (tx, rx) = mpsc::channel();
        let (back, out) = (back.clone(), env.work_dir().join("out"));
        std::thread::spawn(move || {
            let _ = std::fs::read(&back);
            let _ = tx.send(std::fs::read(out).unwrap_or_default());
        });
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("start {round} did not write its argv within {WAIT:?}"))
    };
    assert_eq!(read_round(1), expected, "before any reload");
    screen(&env, &r.id, "started");
    for round in 2..=3 {
        let out = std::process::Command::new("systemctl")
            .args(["--user", "daemon-reload"])
            .output()
            .unwrap();
        assert!(out.status.success(), "daemon-reload: {out:?}");
        env.ok(&["restart", &r.id]);
        assert_eq!(read_round(round), expected, "start {round}, after a reload");
        let s = screen(&env, &r.id, "started");
        assert!(s.lines.iter().any(|l| l.contains("started")), "{s:?}");
    }
    env.ok(&["kill", &r.id]);
}

#[test]
fn pty_logs_lost_lines_of_a_burst_when_the_journal_was_slower_than_the_program() {
    // 20 MB in 5,000 long lines at once: more than journald takes in
    // while it comes (the holder used to drop what did not fit in its
    // queue). Few lines, so journald's own rate limit stays out of it.
    let env = Env::new();
    let script =
        "x=$(printf '%*s' 4000 '' | tr ' ' x); seq -f \"%06g $x\" 1 5000; echo END$((6*7))";
    let r = start(&env, &["bash", "-c", script]);
    wait_gone(&r.unit);
    let ident = r.unit.trim_end_matches(".service");
    wait_journal_lines(ident, 5001);
    let logs = env.ok(&["logs", &r.id]).stdout;
    assert!(!logs.contains("not logged"), "the holder dropped output");
    let want = "x".repeat(4000);
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.len() == 4007 && l.ends_with(&want))
        .collect();
    assert_eq!(lines.len(), 5000, "complete lines in the logs");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l[..6].parse::<usize>().ok(), Some(i + 1), "in order");
    }
    assert!(logs.lines().any(|l| l == "END42"), "the end is logged");
}

#[test]
fn pty_input_larger_than_the_terminal_takes_at_once_reaches_the_program_whole() {
    // The program reads nothing for 2 s: the terminal's input buffer
    // (4 KiB) fills, the holder's writes would block, and it waits for the
    // terminal to take input again (its own registration for writability).
    let env = Env::new();
    let r = start(&env, &["sh", "-c", "stty -echo; sleep 2; wc -c; sleep 600"]);
    let line = format!("{}\n", "a".repeat(999));
    let text = line.repeat(100);
    env.ok(&["send", &r.id, &text]);
    env.ok(&["send", &r.id, "--key", "C-d"]);
    let s = screen(&env, &r.id, "100000");
    assert!(s.lines.iter().any(|l| l.trim() == "100000"), "{s:?}");
    env.ok(&["kill", &r.id]);
}

/// The holder's pid (the unit's main process).
fn holder_pid(env: &Env, id: &str) -> i32 {
    let st: serde_json::Value = env.ok(&["status", "--json", id]).json();
    st["pid"].as_i64().expect("status pid") as i32
}

/// Whether the holder has a writer's terminal: it is not dumpable then,
/// so even its own user cannot list its descriptors.
fn holds_a_terminal(pid: i32) -> bool {
    matches!(
        std::fs::read_dir(format!("/proc/{pid}/fd")),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied
    )
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: a signal to a client this test started.
    unsafe { libc::kill(pid, sig) };
}

/// The writer lends its terminal to the holder, which reads the keys and
/// draws on it itself (a keystroke's echo crosses no client): typing
/// echoes while the client is stopped. The lease taken by another client
/// gives the terminal back (the stopped first client then draws nothing
/// until it runs again); the detach keys typed on a lent terminal detach.
#[test]
fn pty_attach_lends_its_terminal_to_the_holder_and_gets_it_back_when_the_lease_goes() {
    let env = Env::new();
    let r = start(
        &env,
        &["sh", "-c", "while read -r l; do echo \"got:$l\"; done"],
    );
    let holder = holder_pid(&env, &r.id);
    assert!(!holds_a_terminal(holder), "dumpable with no writer");
    let mut a = Terminal::attach(&env, &[&r.id], 24, 80);
    wait_until("the writer lends its terminal", || holds_a_terminal(holder));
    signal(a.pid, libc::SIGSTOP);
    a.type_keys(b"one\r");
    a.wait_screen("got:one");
    signal(a.pid, libc::SIGCONT);

    let mut b = Terminal::attach(&env, &["--take", &r.id], 24, 80);
    b.wait_screen("got:one");
    b.type_keys(b"two\r");
    b.wait_screen("got:two");
    a.wait_screen("got:two");
    // a has its terminal back: stopped, it draws nothing new.
    signal(a.pid, libc::SIGSTOP);
    b.type_keys(b"three\r");
    b.wait_screen("got:three");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !a.seen
            .0
            .lock()
            .unwrap()
            .0
            .screen()
            .contents()
            .contains("got:three"),
        "the holder still draws on the first client's terminal"
    );
    signal(a.pid, libc::SIGCONT);
    a.wait_screen("got:three");

    // The detach keys, read by the holder from b's lent terminal.
    b.type_keys(b"\x1c");
    assert_eq!(b.wait_exit(), 0);
    b.wait_screen("[detached from");
    // a writes again (the lease was free) and lends its terminal again.
    a.type_keys(b"four\r");
    a.wait_screen("got:four");
    wait_until("the first client lends again", || holds_a_terminal(holder));
    a.type_keys(b"\x1c");
    assert_eq!(a.wait_exit(), 0);
    wait_until("dumpable again once no terminal is lent", || {
        !holds_a_terminal(holder)
    });
    assert_eq!(env.status(&r.id).state, "running");
}

/// A person's terminal in the holder's hands must stay out of reach of
/// the session's own processes (the same user; here a confined agent's):
/// through /proc/PID/fd it would give the keys typed on it after the
/// detach. The holder is not dumpable while it has one.
#[test]
fn pty_a_confined_session_cannot_take_the_terminal_a_person_lent_its_holder() {
    let env = Env::new();
    std::fs::write(env.policy_path(), "[actors.agent]\nconfine = true\n").unwrap();
    let probe = "printf 'ready? '; read go; /usr/bin/python3 -c '
import os, sys
p = int(sys.argv[1])
try:
    os.listdir(\"/proc/%d/fd\" % p); print(\"LISTED\")
except PermissionError:
    print(\"DENIED\")
' \"$PPID\"; read x";
    let r: PtyRec = env
        .ok(&[
            "run", "--json", "--owner", "agent", "--pty", "--", "sh", "-c", probe,
        ])
        .json();
    screen(&env, &r.id, "ready?");
    let holder = holder_pid(&env, &r.id);
    let mut t = Terminal::attach(&env, &[&r.id], 24, 80);
    wait_until("the writer lends its terminal", || holds_a_terminal(holder));
    t.type_keys(b"go\r");
    // DENIED or LISTED.
    let shown = t.wait_screen("ED");
    assert!(shown.contains("DENIED"), "{shown}");
    t.type_keys(b"\x1c");
    assert_eq!(t.wait_exit(), 0);
    env.ok(&["stop", &r.id]);
}
