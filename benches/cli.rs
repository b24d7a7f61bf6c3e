//! End-to-end benchmark of the refine-proc CLI against plain systemd, in one
//! run, on a real systemd user manager. It measures and prints; it asserts
//! nothing (a slow machine is not a failure). Use `benches/run`, which
//! builds everything and, as root without a user manager, runs this inside
//! the private sandbox of tests/sandbox/with-user-manager.
//!
//! Every case times whole commands as processes (wall time from spawn to
//! exit, stdout to /dev/null), alternating the refine-proc side and its
//! systemd baseline (and which goes first) so that noise hits both alike,
//! and reports median, p90 and the ratio of the medians:
//!
//!   (a) `refine-proc run -- sleep 600`  vs  `systemd-run --user -q sleep 600`
//!   (b) `refine-proc list --json` with N running processes  vs
//!       `systemctl --user list-units 'refine-*' --no-pager`
//!   (c) `refine-proc logs ID` of a process that printed 100,000 lines  vs
//!       `journalctl --user-unit UNIT -o cat` (and `journalctl -t IDENT -o cat`)
//!   (d) `refine-proc run -- true` and `refine-proc status ID` with 10,000
//!       ended records in the index  vs  the same with an (almost) empty index
//!   (e) `refine-proc pause --owner agent` and `resume --owner agent` of 200
//!       running agents  vs  `systemctl --user freeze` / `thaw` of the same
//!       200 units (one systemctl call each); also reported per 100 processes
//!   (f) the daemon's resident memory and CPU time: idle, while 1,000
//!       processes start under its watch, and 30 s later with nothing
//!       happening (flat memory, CPU near zero)
//!   (g) `refine-proc run --owner agent -- sleep 600` with a policy that
//!       confines the agent (`confine = true`)  vs  the same unconfined
//!       (BENCH_RUNS runs each)
//!   (h) the HTTP API of the daemon with N running processes:
//!       `curl --unix-socket S /api/v1/processes` vs `refine-proc list --json`;
//!       the time from a unit's state change in systemd (its
//!       ExecMainExitTimestampMonotonic after a SIGKILL) to the event on an
//!       open `/api/v1/events?follow=true` stream; the daemon's RSS with 10
//!       open streams
//!   (i) terminal sessions (`run --pty` + `attach`) vs tmux: throughput,
//!       keystroke echo, attach time, memory per session (see benches/pty.rs;
//!       BENCH_PTY_MB, BENCH_PTY_REPS, BENCH_PTY_KEYS, BENCH_PTY_ATTACHES,
//!       BENCH_PTY_SESSIONS)
//!
//! Environment:
//!   REFINE_PROC_BIN       the refine-proc binary [default: this build's]
//!   BENCH_QUICK=1         a fast smoke run (small sizes, few repetitions)
//!   BENCH_OUT=FILE        also write the summary as JSON to FILE
//!   BENCH_ONLY=a,c        run only these cases
//!   BENCH_RUNS            (a) runs per side [50; quick 8]
//!   BENCH_SIZES           (b) process counts [100,250,500,1000; quick 100,250]
//!   BENCH_LIST_REPS       (b) runs per side and size [15; quick 5]
//!   BENCH_START_PARALLEL  (b) `run`s started at once while filling [8]
//!   BENCH_LOG_LINES       (c) lines the process prints [100000; quick 20000]
//!   BENCH_LOG_CHUNK       (c) lines printed before each pause [25000]
//!   BENCH_LOG_PAUSE       (c) seconds paused between chunks [31]
//!   BENCH_LOG_REPS        (c) runs per side [10; quick 3]
//!   BENCH_INDEX_RECORDS   (d) ended records written into the index [10000; quick 2000]
//!   BENCH_INDEX_REPS      (d) runs per side [20; quick 5]
//!   BENCH_PAUSE_PROCS     (e) running agents paused and resumed [200; quick 50]
//!   BENCH_PAUSE_REPS      (e) pause/resume rounds per side [10; quick 3]
//!   BENCH_DAEMON_PROCS    (f) processes started under the daemon [1000; quick 200]
//!   BENCH_DAEMON_IDLE     (f) seconds of idle measured [30; quick 10]
//!   BENCH_DAEMON_HEALTH   (f) give each process a health check (`true`) probed
//!                         every this many seconds [0: none]
//!   BENCH_API_PROCS       (g) running processes [1000; quick 200]
//!   BENCH_API_REPS        (g) list runs per side, and state changes timed [20; quick 5]
//!   BENCH_KEEP=1          keep the temporary state directories
//!
//! Why (c) pauses: journald rate-limits logging (RateLimitBurst=10000 per
//! 30 s by default, scaled up with free disk space; all user units share the
//! bucket of user@UID.service). A process that prints 100,000 lines at once
//! loses most of them (about 35,000 get through here), so the process
//! prints them in chunks with pauses longer than the 30 s window. The line
//! count is checked and printed before anything is timed.
//!
//! The four commands of (c) are checked to print the same lines first. In
//! the sandbox, `journalctl --user-unit` often finds only the manager's own
//! lines: journald did not attach _SYSTEMD_CGROUP/_SYSTEMD_USER_UNIT to the
//! process's output (seen for plain `systemd-run --user` units too), while
//! SYSLOG_IDENTIFIER, which refine-proc matches, comes with the stream. A
//! baseline that prints fewer lines makes its row "invalid"; then the
//! `journalctl -t` row is the comparison.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

mod pty;

const ID_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

fn main() {
    let cfg = Config::from_env();
    let bin = refine_proc_bin();
    check_user_manager();

    let root = temp_root();
    println!("refine-proc benchmark");
    println!("  binary     {}", bin.display());
    println!("  state dirs {}", root.display());
    println!(
        "  systemd    {}",
        first_line(&capture(
            Command::new("systemctl").args(["--user", "--version"])
        ))
    );
    println!(
        "  mode       {}",
        if cfg.quick {
            "quick (BENCH_QUICK=1)"
        } else {
            "full"
        }
    );
    let stray = loaded_units("refine-*.service").len();
    if stray > 0 {
        println!("  warning: {stray} refine-* units were already loaded; they add to (b)'s lists");
    }
    println!();

    let mut b = Bench {
        bin,
        root,
        cfg,
        rows: Vec::new(),
        notes: Vec::new(),
        extra_dirs: Vec::new(),
    };
    let started = Instant::now();
    // (c) runs before (b): the 1000 starts and stops of (b) fill journald's
    // rate-limit bucket shared by all user units.
    if b.cfg.wants('a') {
        b.case_a();
    }
    if b.cfg.wants('c') {
        b.case_c();
    }
    if b.cfg.wants('d') {
        b.case_d();
    }
    if b.cfg.wants('e') {
        b.case_e();
    }
    if b.cfg.wants('f') {
        b.case_f();
    }
    if b.cfg.wants('g') {
        b.case_g();
    }
    if b.cfg.wants('b') {
        b.case_b();
    }
    if b.cfg.wants('h') {
        b.case_h();
    }
    if b.cfg.wants('i') {
        b.case_i();
    }
    b.finish(started.elapsed());
}

// ---------------------------------------------------------------- config

struct Config {
    quick: bool,
    only: Option<String>,
    runs: usize,
    sizes: Vec<usize>,
    list_reps: usize,
    parallel: usize,
    log_lines: u64,
    log_chunk: u64,
    log_pause: u64,
    log_reps: usize,
    index_records: usize,
    index_reps: usize,
    pause_procs: usize,
    pause_reps: usize,
    daemon_procs: usize,
    daemon_idle: u64,
    keep: bool,
}

impl Config {
    fn from_env() -> Config {
        let quick = env_flag("BENCH_QUICK");
        let pick = |full: usize, q: usize| if quick { q } else { full };
        let sizes = match std::env::var("BENCH_SIZES") {
            Ok(s) if !s.trim().is_empty() => {
                let mut v: Vec<usize> = s
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse()
                            .unwrap_or_else(|_| die(&format!("BENCH_SIZES: bad number {x:?}")))
                    })
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            _ if quick => vec![100, 250],
            _ => vec![100, 250, 500, 1000],
        };
        Config {
            quick,
            only: std::env::var("BENCH_ONLY")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            runs: env_num("BENCH_RUNS", pick(50, 8)),
            sizes,
            list_reps: env_num("BENCH_LIST_REPS", pick(15, 5)),
            parallel: env_num("BENCH_START_PARALLEL", 8).max(1),
            log_lines: env_num("BENCH_LOG_LINES", pick(100_000, 20_000) as u64).max(1),
            log_chunk: env_num("BENCH_LOG_CHUNK", 25_000u64).max(1),
            log_pause: env_num("BENCH_LOG_PAUSE", 31u64),
            log_reps: env_num("BENCH_LOG_REPS", pick(10, 3)),
            index_records: env_num("BENCH_INDEX_RECORDS", pick(10_000, 2_000)),
            index_reps: env_num("BENCH_INDEX_REPS", pick(20, 5)),
            pause_procs: env_num("BENCH_PAUSE_PROCS", pick(200, 50)).max(1),
            pause_reps: env_num("BENCH_PAUSE_REPS", pick(10, 3)).max(1),
            daemon_procs: env_num("BENCH_DAEMON_PROCS", pick(1000, 200)),
            daemon_idle: env_num("BENCH_DAEMON_IDLE", pick(30, 10) as u64),
            keep: env_flag("BENCH_KEEP"),
        }
    }

    fn wants(&self, case: char) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.split(',').any(|c| c.trim().starts_with(case)))
    }

    fn to_json(&self) -> Value {
        json!({
            "quick": self.quick, "runs": self.runs, "sizes": self.sizes,
            "list_reps": self.list_reps, "start_parallel": self.parallel,
            "log_lines": self.log_lines, "log_chunk": self.log_chunk, "log_pause_sec": self.log_pause,
            "log_reps": self.log_reps, "index_records": self.index_records,
            "index_reps": self.index_reps,
            "pause_procs": self.pause_procs, "pause_reps": self.pause_reps,
            "daemon_procs": self.daemon_procs, "daemon_idle_sec": self.daemon_idle,
        })
    }
}

fn env_flag(k: &str) -> bool {
    std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn env_num<T: std::str::FromStr>(k: &str, default: T) -> T {
    match std::env::var(k) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| die(&format!("{k}={v:?} is not a number"))),
        _ => default,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn refine_proc_bin() -> PathBuf {
    let bin = std::env::var_os("REFINE_PROC_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_refine-proc")));
    let bin = std::path::absolute(&bin).unwrap_or(bin);
    if !bin.is_file() {
        die(&format!(
            "no refine-proc binary at {} (build it with `cargo build --release`, or set REFINE_PROC_BIN)",
            bin.display()
        ));
    }
    bin
}

/// Refuses to run without a user manager: every case needs one.
fn check_user_manager() {
    let out = Command::new("systemctl")
        .args(["--user", "is-system-running"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => die(&format!("cannot run systemctl: {e}")),
    };
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        return;
    }
    // is-system-running also fails for a manager that answers but is
    // degraded (a failed unit) or still starting: those are reachable.
    if matches!(
        state.as_str(),
        "degraded" | "starting" | "initializing" | "maintenance"
    ) {
        eprintln!("bench: note: the user manager is {state}");
        return;
    }
    die(&format!(
        "no systemd user manager is reachable (`systemctl --user is-system-running` says {:?}{}).\n\
         Run this from a login session, or as root through benches/run, which starts a private \
         user manager (tests/sandbox/with-user-manager).",
        state,
        match String::from_utf8_lossy(&out.stderr).trim() {
            "" => String::new(),
            e => format!(": {e}"),
        }
    ))
}

/// A fresh directory for the state dirs, under $TMPDIR or /tmp.
fn temp_root() -> PathBuf {
    let base = std::env::var_os("TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    for _ in 0..100 {
        let dir = base.join(format!(
            "refine-proc-bench.{}.{}",
            std::process::id(),
            random_id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => die(&format!(
                "cannot create a temp dir in {}: {e}",
                base.display()
            )),
        }
    }
    die("cannot create a temp dir")
}

// ---------------------------------------------------------------- timing

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// From samples in seconds; reported in milliseconds.
    fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = ms.len();
        if n == 0 {
            return Stats {
                n,
                median: f64::NAN,
                p90: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        // Nearest rank.
        let p90 = ms[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            n,
            median,
            p90,
            min: ms[0],
            max: ms[n - 1],
        }
    }

    fn to_json(self) -> Value {
        json!({"n": self.n, "median_ms": r3(self.median), "p90_ms": r3(self.p90),
               "min_ms": r3(self.min), "max_ms": r3(self.max)})
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One line of the summary: a refine-proc side against a baseline.
struct Row {
    case: String,
    ours_label: String,
    base_label: String,
    ours: Stats,
    base: Stats,
    /// Maximum ratio of medians; None for informational rows.
    target: Option<f64>,
    /// Set when the two sides did not do the same work.
    invalid: bool,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours.median / self.base.median
    }

    fn verdict(&self) -> &'static str {
        if self.invalid {
            return "invalid";
        }
        match self.target {
            None => "info",
            Some(t) if self.ratio() <= t => "PASS",
            Some(_) => "over-target",
        }
    }
}

/// Spawns `cmd` with stdout to /dev/null and returns its wall time; a
/// failing command ends the benchmark (its numbers would mean nothing).
fn time_cmd(cmd: &mut Command) -> Duration {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output();
    let elapsed = start.elapsed();
    match out {
        Ok(o) if o.status.success() => elapsed,
        Ok(o) => die(&format!(
            "{cmd:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => die(&format!("cannot run {cmd:?}: {e}")),
    }
}

/// Runs `cmd` and returns its stdout; dies if it fails.
fn capture(cmd: &mut Command) -> String {
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    match cmd.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => die(&format!(
            "{cmd:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => die(&format!("cannot run {cmd:?}: {e}")),
    }
}

/// Runs `cmd` and counts the lines it prints (without keeping them).
fn count_lines(cmd: &mut Command) -> u64 {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot run {cmd:?}: {e}")));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64,
            Err(e) => die(&format!("reading the output of {cmd:?}: {e}")),
        }
    }
    let _ = child.wait();
    n
}

/// Times several commands `reps` times each, interleaved: round i runs
/// them in a rotated order so that none is always first.
fn interleave(reps: usize, cmds: &mut [&mut dyn FnMut() -> Command]) -> Vec<Vec<Duration>> {
    let k = cmds.len();
    let mut samples = vec![Vec::with_capacity(reps); k];
    for i in 0..reps {
        for j in 0..k {
            let which = (i + j) % k;
            let mut c = (cmds[which])();
            samples[which].push(time_cmd(&mut c));
        }
    }
    samples
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// The file system type of `dir` ("ext4", "tmpfs", ...), for the report.
fn fs_type(dir: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// Loaded units matching `pattern`, with their descriptions.
fn loaded_units_described(pattern: &str) -> Vec<(String, String)> {
    capture(Command::new("systemctl").args([
        "--user",
        "list-units",
        "--plain",
        "--no-legend",
        "--no-pager",
        "--all",
        pattern,
    ]))
    .lines()
    .filter_map(|l| {
        // UNIT LOAD ACTIVE SUB DESCRIPTION...
        let mut f = l.split_whitespace();
        let unit = f.next()?.to_string();
        let desc: Vec<&str> = f.skip(3).collect();
        Some((unit, desc.join(" ")))
    })
    .collect()
}

fn loaded_units(pattern: &str) -> Vec<String> {
    capture(Command::new("systemctl").args([
        "--user",
        "list-units",
        "--plain",
        "--no-legend",
        "--no-pager",
        "--all",
        pattern,
    ]))
    .lines()
    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
    .collect()
}

/// Stops units in chunks (one `systemctl stop` per chunk waits for all).
fn stop_units(units: &[String]) {
    for chunk in units.chunks(200) {
        // Units that ended meanwhile make systemctl complain; that is fine.
        let _ = Command::new("systemctl")
            .args(["--user", "stop", "--"])
            .args(chunk)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------- ids

fn rng_next() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
            (t ^ ((std::process::id() as u64) << 32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn random_id() -> String {
    (0..8)
        .map(|_| ID_ALPHABET[(rng_next() >> 33) as usize % ID_ALPHABET.len()] as char)
        .collect()
}

// ---------------------------------------------------------------- cases

struct Bench {
    bin: PathBuf,
    root: PathBuf,
    cfg: Config,
    rows: Vec<Row>,
    notes: Vec<String>,
    /// State dirs outside `root`, removed at the end too.
    extra_dirs: Vec<PathBuf>,
}

impl Bench {
    fn state_dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| die(&format!("cannot create {}: {e}", d.display())));
        d
    }

    /// refine-proc with --state-dir, run from the temp root (the unit's
    /// working directory defaults to the caller's, which must be readable
    /// by the user manager's user).
    fn rp(&self, state: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--state-dir").arg(state).current_dir(&self.root);
        c
    }

    fn sys(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root);
        c
    }

    fn row(
        &mut self,
        case: &str,
        ours_label: &str,
        base_label: &str,
        s: &[Vec<Duration>],
        [o, b]: [usize; 2],
        target: Option<f64>,
    ) {
        let row = Row {
            case: case.into(),
            ours_label: ours_label.into(),
            base_label: base_label.into(),
            ours: Stats::of(&s[o]),
            base: Stats::of(&s[b]),
            target,
            invalid: false,
        };
        println!(
            "  {:<34} median {:>9.2} ms  p90 {:>9.2} ms",
            row.ours_label, row.ours.median, row.ours.p90
        );
        println!(
            "  {:<34} median {:>9.2} ms  p90 {:>9.2} ms",
            row.base_label, row.base.median, row.base.p90
        );
        println!(
            "  ratio of medians {:.2}x (p90 {:.2}x){}",
            row.ratio(),
            row.ours.p90 / row.base.p90,
            match target {
                Some(t) => format!(", target <= {t:.1}x: {}", row.verdict()),
                None => String::new(),
            }
        );
        self.rows.push(row);
    }

    /// Marks the last row invalid (its two sides did different work).
    fn invalidate_last_if(&mut self, invalid: bool) {
        if invalid {
            if let Some(r) = self.rows.last_mut() {
                r.invalid = true;
                println!("  -> invalid: the two commands did not print the same lines");
            }
        }
    }

    // (a) -----------------------------------------------------------------
    fn case_a(&mut self) {
        let n = self.cfg.runs;
        println!("(a) start a process: refine-proc run vs systemd-run, {n} runs each, interleaved");
        let state = self.state_dir("a");
        // The same run with the index on $XDG_RUNTIME_DIR (a tmpfs on
        // systemd systems), to show what the index's fsyncs cost.
        let fast = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| {
                PathBuf::from(d).join(format!(
                    "refine-proc-bench.{}.{}",
                    std::process::id(),
                    random_id()
                ))
            })
            .filter(|d| std::fs::create_dir(d).is_ok());
        println!("  index on {} ({})", state.display(), fs_type(&state));
        if let Some(f) = &fast {
            println!("  and, for comparison, on {} ({})", f.display(), fs_type(f));
            self.extra_dirs.push(f.clone());
        }
        let before: HashSet<String> = loaded_units("run-*.service").into_iter().collect();
        // Warm up both (page cache, the manager's first transient unit).
        for _ in 0..2 {
            time_cmd(self.rp(&state).args(["run", "--", "sleep", "600"]));
            time_cmd(
                self.sys("systemd-run")
                    .args(["--user", "-q", "sleep", "600"]),
            );
            if let Some(f) = &fast {
                time_cmd(self.rp(f).args(["run", "--", "sleep", "600"]));
            }
        }
        let s = {
            let (this, st, fast) = (&*self, &state, &fast);
            let mut ours = || {
                let mut c = this.rp(st);
                c.args(["run", "--", "sleep", "600"]);
                c
            };
            let mut theirs = || {
                let mut c = this.sys("systemd-run");
                c.args(["--user", "-q", "sleep", "600"]);
                c
            };
            let mut on_tmpfs = || {
                let mut c = this.rp(fast.as_ref().unwrap());
                c.args(["run", "--", "sleep", "600"]);
                c
            };
            if fast.is_some() {
                interleave(n, &mut [&mut ours, &mut theirs, &mut on_tmpfs])
            } else {
                interleave(n, &mut [&mut ours, &mut theirs])
            }
        };
        self.row(
            "(a) run",
            "refine-proc run -- sleep 600",
            "systemd-run --user -q sleep 600",
            &s,
            [0, 1],
            Some(1.2),
        );
        if let Some(f) = &fast {
            let label = format!("(a) run, index on {}", fs_type(f));
            self.row(
                &label,
                &format!("refine-proc run, index on {}", fs_type(f)),
                "systemd-run --user -q sleep 600",
                &s,
                [2, 1],
                None,
            );
        }
        // Clean up exactly what this case started.
        let mut ours = self.live_units_of(&state);
        if let Some(f) = &fast {
            ours.extend(self.live_units_of(f));
        }
        let theirs: Vec<String> = loaded_units_described("run-*.service")
            .into_iter()
            .filter(|(u, desc)| !before.contains(u) && desc.ends_with("sleep 600"))
            .map(|(u, _)| u)
            .collect();
        println!(
            "  started {} refine-proc and {} systemd-run units; stopping them",
            ours.len(),
            theirs.len()
        );
        let t = Instant::now();
        stop_units(&ours);
        stop_units(&theirs);
        println!("  stopped in {:.1} s", t.elapsed().as_secs_f64());
        println!();
    }

    // (g) -----------------------------------------------------------------
    fn case_g(&mut self) {
        let n = self.cfg.runs;
        println!("(g) a confined run vs an unconfined one, {n} runs each, interleaved");
        let (confined, plain) = (self.state_dir("g-confined"), self.state_dir("g-plain"));
        let policy = |dir: &Path, text: &str| {
            let p = dir.join("policy.toml");
            std::fs::write(&p, text)
                .unwrap_or_else(|e| die(&format!("cannot write {}: {e}", p.display())));
            p
        };
        let ws = self.state_dir("g-workspace");
        let confining = policy(
            &confined,
            &format!(
                "[actors.agent]\nconfine = true\nwritable = [{:?}]\n",
                ws.display().to_string()
            ),
        );
        let open = policy(&plain, "");
        let run = |this: &Self, state: &Path, policy: &Path| {
            let mut c = this.rp(state);
            c.env("REFINE_PROC_POLICY", policy)
                .args(["run", "--owner", "agent", "--", "sleep", "600"]);
            c
        };
        for _ in 0..2 {
            time_cmd(&mut run(self, &confined, &confining));
            time_cmd(&mut run(self, &plain, &open));
        }
        let s = {
            let this = &*self;
            let mut ours = || run(this, &confined, &confining);
            let mut theirs = || run(this, &plain, &open);
            interleave(n, &mut [&mut ours, &mut theirs])
        };
        self.row(
            "(g) confined run",
            "refine-proc run, agent confined",
            "refine-proc run, agent unconfined",
            &s,
            [0, 1],
            None,
        );
        let mut units = self.live_units_of(&confined);
        units.extend(self.live_units_of(&plain));
        stop_units(&units);
        println!();
    }

    /// Loaded units of the records of one state dir.
    fn live_units_of(&self, state: &Path) -> Vec<String> {
        let ids: HashSet<String> = std::fs::read_dir(state.join("records"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        loaded_units("refine-*.service")
            .into_iter()
            .filter(|u| {
                u.strip_suffix(".service")
                    .and_then(|s| s.rsplit('-').next())
                    .is_some_and(|id| ids.contains(id))
            })
            .collect()
    }

    // (b) -----------------------------------------------------------------
    fn case_b(&mut self) {
        let sizes = self.cfg.sizes.clone();
        let reps = self.cfg.list_reps;
        println!(
            "(b) list with N running processes: refine-proc list --json vs systemctl --user list-units, N = {:?}, {reps} runs each",
            sizes
        );
        let state = self.state_dir("b");
        let mut running = 0usize;
        let mut start_time = Duration::ZERO;
        for &n in &sizes {
            if n > running {
                let t = Instant::now();
                self.start_sleepers(&state, n - running);
                let d = t.elapsed();
                start_time += d;
                println!(
                    "  started {} more (refine-proc run -- sleep 3600, {} at once) in {:.1} s ({:.1} ms each)",
                    n - running,
                    self.cfg.parallel,
                    d.as_secs_f64(),
                    d.as_secs_f64() * 1e3 / (n - running) as f64
                );
                running = n;
            }
            let listed: Value =
                serde_json::from_str(&capture(self.rp(&state).args(["list", "--json"])))
                    .unwrap_or_else(|e| {
                        die(&format!("refine-proc list --json printed bad JSON: {e}"))
                    });
            let count = listed.as_array().map_or(0, Vec::len);
            let units = loaded_units("refine-*.service").len();
            println!("  N={n}: refine-proc list --json shows {count} records; systemd has {units} refine-* services loaded");
            if count != n {
                let note = format!(
                    "(b) N={n}: refine-proc list --json returned {count} records, expected {n}"
                );
                println!("  WARNING: {note}");
                self.notes.push(note);
            }
            let _ = time_cmd(self.rp(&state).args(["list", "--json"]));
            let s = {
                let (this, st) = (&*self, &state);
                interleave(
                    reps,
                    &mut [
                        &mut || {
                            let mut c = this.rp(st);
                            c.args(["list", "--json"]);
                            c
                        },
                        &mut || {
                            let mut c = this.sys("systemctl");
                            c.args(["--user", "list-units", "refine-*", "--no-pager"]);
                            c
                        },
                    ],
                )
            };
            self.row(
                &format!("(b) list N={n}"),
                &format!("refine-proc list --json (N={n})"),
                &format!("systemctl list-units (N={n})"),
                &s,
                [0, 1],
                Some(3.0),
            );
        }
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.case.starts_with("(b)"))
            .collect();
        if rows.len() > 1 {
            let (first, last) = (rows[0], rows[rows.len() - 1]);
            println!(
                "  growth from the smallest to the largest N: refine-proc {:.2}x, systemctl {:.2}x ({:.1}x more processes)",
                last.ours.median / first.ours.median,
                last.base.median / first.base.median,
                *sizes.last().unwrap() as f64 / sizes[0] as f64
            );
        }
        println!("  filling took {:.1} s in all", start_time.as_secs_f64());
        if std::env::var_os("WUM_MANAGER_CGROUP").is_some() {
            // The sandbox's user manager, and everything in it, ends with us.
            println!(
                "  (leaving the {running} processes to the sandbox, which ends with this run)"
            );
        } else {
            let t = Instant::now();
            let units = self.live_units_of(&state);
            stop_units(&units);
            println!(
                "  stopped {} units in {:.1} s",
                units.len(),
                t.elapsed().as_secs_f64()
            );
        }
        println!();
    }

    /// Starts `count` sleepers, `parallel` `refine-proc run`s at a time.
    fn start_sleepers(&self, state: &Path, count: usize) {
        self.start_sleepers_as(state, count, "user-helper")
    }

    fn start_sleepers_as(&self, state: &Path, count: usize, owner: &str) {
        self.start_sleepers_with(state, count, &["--owner", owner])
    }

    fn start_sleepers_with(&self, state: &Path, count: usize, args: &[&str]) {
        let mut left = count;
        while left > 0 {
            let batch = left.min(self.cfg.parallel);
            let children: Vec<_> = (0..batch)
                .map(|_| {
                    self.rp(state)
                        .arg("run")
                        .args(args)
                        .args(["--", "sleep", "3600"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| die(&format!("cannot run refine-proc: {e}")))
                })
                .collect();
            for child in children {
                let out = child
                    .wait_with_output()
                    .unwrap_or_else(|e| die(&format!("waiting for refine-proc: {e}")));
                if !out.status.success() {
                    die(&format!(
                        "refine-proc run -- sleep 3600 failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            left -= batch;
        }
    }

    // (c) -----------------------------------------------------------------
    fn case_c(&mut self) {
        let lines = self.cfg.log_lines;
        let chunk = self.cfg.log_chunk;
        let pause = self.cfg.log_pause;
        let reps = self.cfg.log_reps;
        println!("(c) read the output of a process that printed {lines} lines: refine-proc logs vs journalctl, {reps} runs each");
        let state = self.state_dir("c");
        // seq in chunks, paused past journald's 30 s rate-limit window.
        let mut script = String::new();
        let mut from = 1u64;
        while from <= lines {
            let to = (from + chunk - 1).min(lines);
            if !script.is_empty() {
                let _ = write!(script, "sleep {pause}; ");
            }
            let _ = write!(script, "seq {from} {to}; ");
            from = to + 1;
        }
        let chunks = lines.div_ceil(chunk);
        if chunks > 1 {
            println!(
                "  the process prints {chunks} chunks of <= {chunk} lines, {pause} s apart (journald's rate limit), ~{} s",
                (chunks - 1) * pause
            );
        }
        let t = Instant::now();
        let out = capture(self.rp(&state).args([
            "run",
            "--wait",
            "--json",
            "--label",
            "seq",
            "--",
            "sh",
            "-c",
            script.trim(),
        ]));
        let rec: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| die(&format!("run --json printed bad JSON: {e}")));
        let id = rec["id"]
            .as_str()
            .unwrap_or_else(|| die("run --json printed no id"))
            .to_string();
        let unit = rec["unit"]
            .as_str()
            .unwrap_or_else(|| die("run --json printed no unit"))
            .to_string();
        let ident = unit.trim_end_matches(".service").to_string();
        println!(
            "  {unit} ran in {:.1} s (state {}, exit code {})",
            t.elapsed().as_secs_f64(),
            rec["state"],
            rec["exit_code"]
        );

        // Wait until journald has stored every line (or stops growing).
        let count = || {
            let mut c = self.sys("journalctl");
            c.args(["--no-pager", "-q", "-o", "cat", "-t", &ident]);
            count_lines(&mut c)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut have, mut last, mut stable) = (count(), u64::MAX, 0);
        while have < lines && Instant::now() < deadline && stable < 10 {
            std::thread::sleep(Duration::from_millis(300));
            last = have;
            have = count();
            stable = if have == last { stable + 1 } else { 0 };
        }
        let _ = last;
        println!("  journalctl -t {ident} -o cat | wc -l  =>  {have} lines (expected {lines})");
        if have != lines {
            let note = format!(
                "(c) the journal holds {have} of {lines} lines (journald rate limit? lower BENCH_LOG_CHUNK or raise BENCH_LOG_PAUSE); timings are for {have} lines"
            );
            println!("  WARNING: {note}");
            self.notes.push(note);
        }
        let uid = std::fs::metadata(&state).map(|m| m.uid()).unwrap_or(0);
        let (counts, s) = {
            let (this, st, id, unit, ident) = (&*self, &state, &id, &unit, &ident);
            let mut ours = || {
                let mut c = this.rp(st);
                c.args(["logs", id]);
                c
            };
            let mut by_unit = || {
                let mut c = this.sys("journalctl");
                c.args(["--user-unit", unit, "-o", "cat"]);
                c
            };
            let mut by_ident = || {
                let mut c = this.sys("journalctl");
                c.args(["-t", ident, "-o", "cat"]);
                c
            };
            // Exactly what refine-proc logs spawns, to separate refine-proc's
            // own cost from journalctl's.
            let mut its_argv = || {
                let mut c = this.sys("journalctl");
                c.args(["--no-pager", "--quiet", "--all", "--output=cat"])
                    .arg(format!("_UID={uid}"))
                    .arg(format!("SYSLOG_IDENTIFIER={ident}"));
                c
            };
            // All four must print the same lines, or the times compare
            // different work (this also warms the page cache).
            let counts = [
                count_lines(&mut ours()),
                count_lines(&mut by_unit()),
                count_lines(&mut by_ident()),
                count_lines(&mut its_argv()),
            ];
            let s = interleave(
                reps,
                &mut [&mut ours, &mut by_unit, &mut by_ident, &mut its_argv],
            );
            (counts, s)
        };
        println!(
            "  lines printed: refine-proc logs {}, journalctl --user-unit {}, journalctl -t {}, refine-proc's argv {}",
            counts[0], counts[1], counts[2], counts[3]
        );
        // --user-unit adds the manager's own lines about the unit
        // (Started/Deactivated/...): a few more are expected.
        let by_unit_ok = counts[1] >= counts[2] && counts[1] <= counts[2] + 10;
        let ours_ok = counts[0] == counts[2];
        let argv_ok = counts[3] == counts[2];
        if !by_unit_ok {
            let note = format!(
                "(c) journalctl --user-unit printed {} lines, not ~{}: journald did not attach _SYSTEMD_USER_UNIT to all of the process's lines; that row is invalid, the -t row is the comparison",
                counts[1], counts[2]
            );
            println!("  WARNING: {note}");
            self.notes.push(note);
        }
        if !ours_ok || !argv_ok {
            let note = format!(
                "(c) refine-proc logs printed {} lines, journalctl -t {}, refine-proc's argv {}",
                counts[0], counts[2], counts[3]
            );
            println!("  WARNING: {note}");
            self.notes.push(note);
        }
        let k = format!("{}k", lines / 1000);
        self.row(
            &format!("(c) logs {k}"),
            &format!("refine-proc logs ID ({k} lines)"),
            "journalctl --user-unit U -o cat",
            &s,
            [0, 1],
            Some(1.2),
        );
        self.invalidate_last_if(!(by_unit_ok && ours_ok));
        self.row(
            &format!("(c) logs {k} vs -t"),
            "refine-proc logs ID",
            "journalctl -t IDENT -o cat",
            &s,
            [0, 2],
            Some(1.2),
        );
        self.invalidate_last_if(!ours_ok);
        self.row(
            &format!("(c) logs {k} vs its argv"),
            "refine-proc logs ID",
            "journalctl (refine-proc's argv)",
            &s,
            [0, 3],
            None,
        );
        self.invalidate_last_if(!(ours_ok && argv_ok));
        println!();
    }

    // (d) -----------------------------------------------------------------
    fn case_d(&mut self) {
        let n = self.cfg.index_records;
        let reps = self.cfg.index_reps;
        println!("(d) index scaling: run and status with {n} ended records vs an empty index, {reps} runs each");
        let empty = self.state_dir("d-empty");
        let full = self.state_dir("d-full");
        // A real ended record in each index: the one `status` reads.
        let out = capture(
            self.rp(&empty)
                .args(["run", "--wait", "--json", "--", "true"]),
        );
        let rec: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| die(&format!("run --json printed bad JSON: {e}")));
        let id = rec["id"]
            .as_str()
            .unwrap_or_else(|| die("run --json printed no id"))
            .to_string();
        let src = empty.join("records").join(format!("{id}.json"));
        let template: Value = serde_json::from_slice(
            &std::fs::read(&src)
                .unwrap_or_else(|e| die(&format!("cannot read {}: {e}", src.display()))),
        )
        .unwrap_or_else(|e| die(&format!("{} is not JSON: {e}", src.display())));
        println!("  template record {id}: state {}", template["state"]);
        // Initialise the full index (format.json, records/) the normal way.
        let _ = capture(self.rp(&full).args(["list", "--all", "--json"]));
        let records = full.join("records");
        std::fs::copy(&src, records.join(format!("{id}.json")))
            .unwrap_or_else(|e| die(&format!("cannot copy the template record: {e}")));
        let t = Instant::now();
        let mut ids: HashSet<String> = HashSet::from([id.clone()]);
        while ids.len() < n + 1 {
            let new = random_id();
            if !ids.insert(new.clone()) {
                continue;
            }
            let mut r = template.clone();
            let unit = format!("refine-user-helper-{new}.service");
            r["logs"]["journal"] = json!(format!(
                "journalctl -t {}",
                unit.trim_end_matches(".service")
            ));
            r["id"] = json!(new);
            r["unit"] = json!(unit);
            let mut bytes = serde_json::to_vec_pretty(&r).unwrap();
            bytes.push(b'\n');
            let path = records.join(format!("{new}.json"));
            std::fs::write(&path, bytes)
                .unwrap_or_else(|e| die(&format!("cannot write {}: {e}", path.display())));
        }
        let in_index = std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0);
        println!(
            "  wrote {n} records in {:.1} s; the full index has {in_index} files",
            t.elapsed().as_secs_f64()
        );
        let all: Value =
            serde_json::from_str(&capture(self.rp(&full).args(["list", "--all", "--json"])))
                .unwrap_or(Value::Null);
        println!(
            "  refine-proc list --all --json on it: {} records",
            all.as_array().map_or(0, Vec::len)
        );

        let _ = time_cmd(self.rp(&empty).args(["status", &id]));
        let _ = time_cmd(self.rp(&full).args(["status", &id]));
        let s = {
            let (this, e, f) = (&*self, &empty, &full);
            interleave(
                reps,
                &mut [
                    &mut || {
                        let mut c = this.rp(f);
                        c.args(["run", "--", "true"]);
                        c
                    },
                    &mut || {
                        let mut c = this.rp(e);
                        c.args(["run", "--", "true"]);
                        c
                    },
                ],
            )
        };
        self.row(
            &format!("(d) run, {}k index", n / 1000),
            &format!("run -- true ({n} records)"),
            "run -- true (empty index)",
            &s,
            [0, 1],
            Some(1.2),
        );
        let s = {
            let (this, e, f, id) = (&*self, &empty, &full, &id);
            interleave(
                reps,
                &mut [
                    &mut || {
                        let mut c = this.rp(f);
                        c.args(["status", id]);
                        c
                    },
                    &mut || {
                        let mut c = this.rp(e);
                        c.args(["status", id]);
                        c
                    },
                ],
            )
        };
        self.row(
            &format!("(d) status, {}k index", n / 1000),
            &format!("status ID ({n} records)"),
            "status ID (empty index)",
            &s,
            [0, 1],
            Some(1.2),
        );
        println!();
    }

    // (e) -----------------------------------------------------------------
    fn case_e(&mut self) {
        let n = self.cfg.pause_procs;
        let reps = self.cfg.pause_reps;
        println!("(e) pause and resume {n} running agents by owner: refine-proc pause/resume --owner agent vs systemctl --user freeze/thaw of the same units, {reps} rounds each");
        let state = self.state_dir("e");
        let t = Instant::now();
        self.start_sleepers_as(&state, n, "agent");
        println!("  started {n} agents in {:.1} s", t.elapsed().as_secs_f64());
        let units = self.live_units_of(&state);
        if units.len() != n {
            die(&format!(
                "(e) expected {n} running agents, systemd has {}",
                units.len()
            ));
        }
        let frozen = |units: &[String]| {
            let out = capture(
                Command::new("systemctl")
                    .args(["--user", "show", "-p", "FreezerState", "--value"])
                    .args(units),
            );
            out.lines().filter(|l| l.trim() == "frozen").count()
        };
        // One round: ours pause, ours resume, then the baseline's; which
        // side goes first alternates.
        let mut s: Vec<Vec<Duration>> = vec![Vec::new(); 4];
        for rep in 0..reps {
            let ours = |s: &mut Vec<Vec<Duration>>| {
                s[0].push(time_cmd(
                    self.rp(&state).args(["pause", "--owner", "agent"]),
                ));
                let paused = frozen(&units);
                if paused != n {
                    die(&format!("(e) pause --owner agent froze {paused} of {n}"));
                }
                s[1].push(time_cmd(
                    self.rp(&state).args(["resume", "--owner", "agent"]),
                ));
            };
            let base = |s: &mut Vec<Vec<Duration>>| {
                s[2].push(time_cmd(
                    self.sys("systemctl")
                        .args(["--user", "freeze"])
                        .args(&units),
                ));
                let paused = frozen(&units);
                if paused != n {
                    die(&format!("(e) systemctl freeze froze {paused} of {n}"));
                }
                s[3].push(time_cmd(
                    self.sys("systemctl").args(["--user", "thaw"]).args(&units),
                ));
            };
            if rep % 2 == 0 {
                ours(&mut s);
                base(&mut s);
            } else {
                base(&mut s);
                ours(&mut s);
            }
        }
        self.row(
            &format!("(e) pause N={n}"),
            &format!("refine-proc pause --owner (N={n})"),
            &format!("systemctl freeze (N={n})"),
            &s,
            [0, 2],
            None,
        );
        self.row(
            &format!("(e) resume N={n}"),
            &format!("refine-proc resume --owner (N={n})"),
            &format!("systemctl thaw (N={n})"),
            &s,
            [1, 3],
            None,
        );
        let per100 = |d: &[Duration]| Stats::of(d).median * 100.0 / n as f64;
        let note = format!(
            "(e) per 100 processes: pause {:.0} ms, resume {:.0} ms (target: well under 1000 ms); systemctl freeze {:.0} ms, thaw {:.0} ms",
            per100(&s[0]),
            per100(&s[1]),
            per100(&s[2]),
            per100(&s[3])
        );
        println!("  {note}");
        self.notes.push(note);
        if std::env::var_os("WUM_MANAGER_CGROUP").is_none() {
            stop_units(&units);
        }
        println!();
    }

    // (f) -----------------------------------------------------------------
    fn case_f(&mut self) {
        let n = self.cfg.daemon_procs;
        let idle = self.cfg.daemon_idle;
        println!("(f) the daemon's memory and CPU with {n} processes under its watch, then {idle} s idle");
        let state = self.state_dir("f");
        let unit = format!("rpbench-daemon-{}.service", std::process::id());
        // As installed: a Type=notify service; systemd-run returns at READY=1.
        let started = Command::new("systemd-run")
            .args(["--user", "--quiet", "--unit", &unit, "-p", "Type=notify"])
            .arg(&self.bin)
            .arg("--state-dir")
            .arg(&state)
            .arg("daemon")
            .current_dir(&self.root)
            .status()
            .unwrap_or_else(|e| die(&format!("systemd-run: {e}")));
        if !started.success() {
            die("(f) the daemon did not start");
        }
        let pid: u32 = capture(
            Command::new("systemctl").args(["--user", "show", "-p", "MainPID", "--value", &unit]),
        )
        .trim()
        .parse()
        .unwrap_or_else(|_| die("(f) no daemon pid"));
        let sample = || -> (f64, f64) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss_kib: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(f64::NAN);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(vec![], |(_, r)| r.split_whitespace().collect());
            let ticks: f64 = fields
                .get(11)
                .and_then(|u| u.parse::<f64>().ok())
                .unwrap_or(0.0)
                + fields
                    .get(12)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
            // USER_HZ is 100 on Linux.
            (rss_kib / 1024.0, ticks * 10.0)
        };
        let (rss0, cpu0) = sample();
        println!("  idle with nothing to watch: RSS {rss0:.1} MiB");
        let t = Instant::now();
        let every = env_num("BENCH_DAEMON_HEALTH", 0u64);
        let interval = format!("{every}s");
        let checked = ["--health-cmd", "true", "--health-interval", &interval];
        self.start_sleepers_with(&state, n, if every > 0 { &checked } else { &[] });
        if every > 0 {
            println!("  each with a health check (`true`) every {every} s");
        }
        let (rss1, cpu1) = sample();
        println!(
            "  after {n} starts ({:.1} s): RSS {rss1:.1} MiB; CPU {:.0} ms while they started",
            t.elapsed().as_secs_f64(),
            cpu1 - cpu0
        );
        std::thread::sleep(Duration::from_secs(idle));
        let (rss2, cpu2) = sample();
        let status = capture(Command::new("systemctl").args([
            "--user",
            "show",
            "-p",
            "StatusText",
            "--value",
            &unit,
        ]));
        println!(
            "  {idle} s later: RSS {rss2:.1} MiB; CPU {:.0} ms in those {idle} s; STATUS={}",
            cpu2 - cpu1,
            status.trim()
        );
        self.notes.push(format!(
            "(f) daemon RSS {rss0:.1} MiB idle, {rss1:.1} MiB with {n} processes, {rss2:.1} MiB {idle} s later; CPU {:.0} ms during the {n} starts, {:.0} ms in {idle} s idle",
            cpu1 - cpu0,
            cpu2 - cpu1
        ));
        let _ = Command::new("systemctl")
            .args(["--user", "stop", &unit])
            .status();
        if std::env::var_os("WUM_MANAGER_CGROUP").is_none() {
            stop_units(&self.live_units_of(&state));
        }
        println!();
    }

    // (h) -----------------------------------------------------------------
    fn case_h(&mut self) {
        let n = env_num("BENCH_API_PROCS", if self.cfg.quick { 200 } else { 1000 });
        let reps = env_num("BENCH_API_REPS", if self.cfg.quick { 5 } else { 20 }).max(1);
        println!("(h) the HTTP API with {n} running processes, {reps} runs each");
        let state = self.state_dir("h");
        let socket = self.root.join("g-api").join("api.sock");
        let unit = format!("rpbench-api-{}.service", std::process::id());
        let started = Command::new("systemd-run")
            .args(["--user", "--quiet", "--unit", &unit, "-p", "Type=notify"])
            .arg(&self.bin)
            .arg("--state-dir")
            .arg(&state)
            .args(["daemon", "--socket"])
            .arg(&socket)
            .current_dir(&self.root)
            .status()
            .unwrap_or_else(|e| die(&format!("systemd-run: {e}")));
        if !started.success() {
            die("(g) the daemon did not start");
        }
        let t = Instant::now();
        self.start_sleepers(&state, n);
        println!("  started {n} in {:.1} s", t.elapsed().as_secs_f64());
        let curl = |path: &str| {
            let mut c = Command::new("curl");
            c.args(["-sS", "-f", "--max-time", "60", "--unix-socket"])
                .arg(&socket)
                .arg(format!("http://localhost{path}"));
            c
        };
        let listed: Value = serde_json::from_str(&capture(&mut curl("/api/v1/processes")))
            .unwrap_or_else(|e| die(&format!("(g) bad JSON from the API: {e}")));
        let count = listed.as_array().map_or(0, Vec::len);
        let rp = || {
            let mut c = self.rp(&state);
            c.args(["list", "--json"]);
            c
        };
        let s = interleave(reps, &mut [&mut || curl("/api/v1/processes"), &mut || rp()]);
        self.row(
            &format!("g list API N={n}"),
            "GET /api/v1/processes (curl)",
            "refine-proc list --json",
            &s,
            [0, 1],
            Some(1.0),
        );
        self.invalidate_last_if(count != n);
        let pid = main_pid(&unit);
        let streams: Vec<_> = (0..10).map(|_| spawn_stream(&socket)).collect();
        let lat = self.event_latencies(&state, &streams[0], reps);
        let (change, kill, own) = (
            Stats::of(&lat.from_change),
            Stats::of(&lat.from_kill),
            Stats::of(&lat.systemd),
        );
        println!(
            "  state change in systemd -> event on the stream: median {:.2} ms, p90 {:.2} ms ({} samples; goal: median < 20 ms)",
            change.median, change.p90, change.n
        );
        println!(
            "  kill(2) -> event: median {:.2} ms, p90 {:.2} ms; of which systemd's own, kill(2) -> its state change: median {:.2} ms{}",
            kill.median,
            kill.p90,
            own.median,
            if lat.missed > 0 { format!(" ({} state changes not seen on the bus)", lat.missed) } else { String::new() }
        );
        let rss = rss_mib(pid);
        let (anon, file) = (status_mib(pid, "RssAnon:"), status_mib(pid, "RssFile:"));
        println!(
            "  daemon RSS with {n} processes and 10 open streams: {rss:.1} MiB (goal < 25 MiB; {anon:.1} MiB its own, {file:.1} MiB the binary's and libraries' pages)"
        );
        self.notes.push(format!(
            "(g) event latency from systemd's state change median {:.2} ms p90 {:.2} ms over {} state changes (from the kill {:.2} ms, of which systemd {:.2} ms); daemon RSS {rss:.1} MiB with {n} processes and 10 open event streams",
            change.median, change.p90, change.n, kill.median, own.median
        ));
        drop(streams);
        let _ = Command::new("systemctl")
            .args(["--user", "stop", &unit])
            .status();
        if std::env::var_os("WUM_MANAGER_CGROUP").is_none() {
            stop_units(&self.live_units_of(&state));
        }
        println!();
    }

    /// SIGKILLs `reps` sleepers one at a time and times, for each, from
    /// the unit's state change in systemd (its StateChangeTimestampMonotonic,
    /// read from the PropertiesChanged signal systemd sends with the change,
    /// on a bus connection of the benchmark's own) to the arrival of its
    /// event on `stream`; and from the kill(2) to each, for the whole path.
    fn event_latencies(&self, state: &Path, stream: &EventStream, reps: usize) -> Latencies {
        let listed: Value = serde_json::from_str(&capture(self.rp(state).args(["list", "--json"])))
            .unwrap_or_else(|e| die(&format!("(g) bad JSON: {e}")));
        let victims: Vec<(String, String)> = listed
            .as_array()
            .into_iter()
            .flatten()
            .take(reps)
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or("").into(),
                    r["unit"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        let mut out = Latencies::default();
        for (id, unit) in victims {
            let changed = state_change_of(&unit);
            let pid = main_pid(&unit);
            let asked = monotonic_usec();
            // SAFETY: kill has no memory preconditions.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
                die(&format!("(g) cannot kill {unit} (pid {pid})"));
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let arrived = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match stream.rx.recv_timeout(left) {
                    Ok((at, e)) if e["id"] == id.as_str() && e["event"] == "failed" => {
                        break Some(at)
                    }
                    Ok(_) => continue,
                    Err(_) => break None,
                }
            };
            let Some(arrived) = arrived else {
                die(&format!("(g) no event for {id} within 30 s"));
            };
            let us = |from: u64| Duration::from_micros(arrived.saturating_sub(from));
            out.from_kill.push(us(asked));
            match changed.recv_timeout(Duration::from_secs(10)) {
                Ok(at) => {
                    out.from_change.push(us(at));
                    out.systemd
                        .push(Duration::from_micros(at.saturating_sub(asked)));
                }
                Err(_) => out.missed += 1,
            }
        }
        out
    }

    // summary -------------------------------------------------------------
    fn finish(mut self, total: Duration) {
        // Cases ran in the order a, c, d, b; report them as a, b, c, d.
        self.rows.sort_by_key(|r| r.case.chars().nth(1));
        println!(
            "Summary (wall time of whole commands; ratio = refine-proc median / baseline median)"
        );
        let head = format!(
            "{:<26} {:>12} {:>12} {:>12} {:>12} {:>7} {:>8}  {}",
            "case",
            "ours med ms",
            "ours p90 ms",
            "base med ms",
            "base p90 ms",
            "ratio",
            "target",
            "verdict"
        );
        println!("{head}");
        println!("{}", "-".repeat(head.len()));
        for r in &self.rows {
            println!(
                "{:<26} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>6.2}x {:>8}  {}",
                r.case,
                r.ours.median,
                r.ours.p90,
                r.base.median,
                r.base.p90,
                r.ratio(),
                r.target.map_or("-".to_string(), |t| format!("<={t:.1}x")),
                r.verdict()
            );
        }
        println!(
            "(ours/base: (a)-(c), (e) refine-proc vs systemd; (d) the full index vs the empty one)"
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        println!("total {:.1} s", total.as_secs_f64());

        if let Some(path) = std::env::var_os("BENCH_OUT").filter(|p| !p.is_empty()) {
            let doc = json!({
                "binary": self.bin.display().to_string(),
                "config": self.cfg.to_json(),
                "total_sec": r3(total.as_secs_f64()),
                "notes": self.notes,
                "cases": self.rows.iter().map(|r| json!({
                    "case": r.case,
                    "refine_proc": r.ours_label,
                    "baseline": r.base_label,
                    "refine_proc_stats": r.ours.to_json(),
                    "baseline_stats": r.base.to_json(),
                    "ratio_of_medians": r3(r.ratio()),
                    "ratio_of_p90": r3(r.ours.p90 / r.base.p90),
                    "target_ratio": r.target,
                    "verdict": r.verdict(),
                })).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
            match std::fs::write(&path, text) {
                Ok(()) => println!("wrote {}", Path::new(&path).display()),
                Err(e) => eprintln!(
                    "bench: cannot write BENCH_OUT {}: {e}",
                    Path::new(&path).display()
                ),
            }
        }
        if self.cfg.keep {
            println!("kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
            for d in &self.extra_dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd's `*TimestampMonotonic`.
/// Latencies of (h): from systemd's state change, from the kill, and
/// systemd's own part (the kill to its state change).
#[derive(Default)]
struct Latencies {
    from_change: Vec<Duration>,
    from_kill: Vec<Duration>,
    systemd: Vec<Duration>,
    /// Kills whose state change was not seen on the bus.
    missed: usize,
}

/// The StateChangeTimestampMonotonic of `unit`'s next change to an ended
/// state (stop-post, failed, dead), from systemd's signal, watched on a
/// bus connection of a thread of its own: subscribed when this returns.
fn state_change_of(unit: &str) -> std::sync::mpsc::Receiver<u64> {
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use zbus::zvariant::OwnedValue;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")
        .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
        .and_then(|b| b.member("PropertiesChanged"))
        .and_then(|b| b.path(refine_proc::systemd::unit_path_of_name(unit)))
        .and_then(|b| b.arg(0, "org.freedesktop.systemd1.Unit"))
        .unwrap_or_else(|e| die(&format!("(g) match rule: {e}")))
        .build()
        .to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| die(&format!("(g) tokio: {e}")));
        rt.block_on(async move {
            let bus = zbus::Connection::session()
                .await
                .unwrap_or_else(|e| die(&format!("(g) no session bus: {e}")));
            let mut signals = zbus::MessageStream::for_match_rule(rule, &bus, Some(64))
                .await
                .unwrap_or_else(|e| die(&format!("(g) cannot watch the unit: {e}")));
            let _ = ready_tx.send(());
            while let Some(Ok(msg)) = signals.next().await {
                let body = msg.body();
                let Ok((_, changed, _)) =
                    body.deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                else {
                    continue;
                };
                let sub = changed
                    .get("SubState")
                    .and_then(|v| String::try_from(v.try_clone().ok()?).ok());
                let at = changed
                    .get("StateChangeTimestampMonotonic")
                    .and_then(|v| u64::try_from(v.try_clone().ok()?).ok());
                if let (Some(sub), Some(at)) = (sub, at) {
                    if matches!(sub.as_str(), "stop-post" | "failed" | "dead") {
                        let _ = tx.send(at);
                        return;
                    }
                }
            }
        });
    });
    let _ = ready.recv_timeout(Duration::from_secs(10));
    rx
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn main_pid(unit: &str) -> u32 {
    capture(Command::new("systemctl").args(["--user", "show", "-p", "MainPID", "--value", unit]))
        .trim()
        .parse()
        .unwrap_or_else(|_| die("no daemon pid"))
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A `kB` line of /proc/PID/status, in MiB.
fn status_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |k| k / 1024.0)
}

/// An open event stream: each event with the time it arrived.
struct EventStream {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<(u64, Value)>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_stream(socket: &Path) -> EventStream {
    use std::io::BufRead;
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--unix-socket"])
        .arg(socket)
        .arg("http://localhost/api/v1/events?follow=true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot run curl: {e}")));
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:") {
                let at = monotonic_usec();
                if let Ok(v) = serde_json::from_str(data.trim()) {
                    if tx.send((at, v)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    EventStream { child, rx }
}
