//! Test fixtures: a private index per test, the real binary with a timeout,
//! the test's own view of the JSON contract, and waiting on systemd signals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// How long one refine-proc invocation may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub fn binary() -> PathBuf {
    std::env::var_os("REFINE_PROC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_refine-proc")))
}

/// The record as the README documents it (the test's own copy).
#[derive(Debug, Clone, Deserialize)]
pub struct Rec {
    pub id: String,
    pub unit: String,
    /// "service" (run) or "scope" (adopt).
    pub kind: String,
    pub owner: String,
    pub label: String,
    pub details: Option<String>,
    pub command: Vec<String>,
    pub cwd: Option<String>,
    pub metadata: Meta,
    pub pid: Option<u32>,
    pub state: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub result: Option<String>,
    pub limits: Limits,
    pub restart: Restart,
    pub logs: Logs,
    /// In `status` and `list` output only; null when not running.
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub workflow: Option<String>,
    pub gap: Option<String>,
    pub session: Option<String>,
    pub mode: Option<String>,
    pub runner: Option<String>,
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    pub memory_max: Option<u64>,
    pub cpu_quota_percent: Option<u64>,
    pub tasks_max: Option<u64>,
    pub runtime_max_sec: Option<u64>,
    pub memory_high: Option<u64>,
    pub cpu_weight: Option<u64>,
    pub timeout_stop_sec: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Usage {
    pub cpu_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub tasks: Option<u64>,
    pub unavailable: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Restart {
    pub policy: String,
    pub count: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Logs {
    pub journal: String,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not the expected JSON ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs a command with a deadline; a hang fails the test instead of CI.
pub fn output(mut cmd: Command) -> Out {
    let mut what = format!("{cmd:?}");
    if what.len() > 300 {
        what = format!("{}…", what.chars().take(300).collect::<String>());
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.stdin(Stdio::null()).output());
    });
    let out = rx
        .recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {COMMAND_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn systemctl(args: &[&str]) -> String {
    let mut cmd = Command::new("systemctl");
    cmd.arg("--user").arg("--no-pager").args(args);
    output(cmd).stdout
}

/// `systemctl --user show UNIT -p PROP --value`
pub fn show(unit: &str, prop: &str) -> String {
    systemctl(&["show", unit, "-p", prop, "--value"])
        .trim()
        .to_string()
}

/// Tests share one user manager; a test that restarts it holds this
/// exclusively, every other test holds it shared.
static MANAGER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Exclusive use of the user manager (for a test that restarts it).
pub fn exclusive_manager() -> std::sync::RwLockWriteGuard<'static, ()> {
    MANAGER.write().unwrap_or_else(|e| e.into_inner())
}

/// One test's world: its own index and work directory, sharing the user
/// manager with the other tests. Units it started are stopped on drop.
pub struct Env {
    pub state: tempfile::TempDir,
    pub work: tempfile::TempDir,
    _shared: Option<std::sync::RwLockReadGuard<'static, ()>>,
}

impl Env {
    pub fn new() -> Env {
        let shared = MANAGER.read().unwrap_or_else(|e| e.into_inner());
        let mut env = Env::unshared();
        env._shared = Some(shared);
        env
    }

    /// An Env for a test that already holds [`exclusive_manager`].
    pub fn unshared() -> Env {
        let probe = output({
            let mut c = Command::new("systemctl");
            c.args(["--user", "is-system-running"]);
            c
        });
        assert!(
            matches!(probe.stdout.trim(), "running" | "degraded" | "starting"),
            "no systemd user manager is reachable ({:?}); run the suite with tests/run, \
             which starts a private one",
            probe.stdout.trim()
        );
        Env {
            state: tempfile::tempdir().expect("temp state dir"),
            work: tempfile::tempdir().expect("temp work dir"),
            _shared: None,
        }
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// This test's policy file; write it to put a policy in force.
    pub fn policy_path(&self) -> PathBuf {
        self.work.path().join("policy.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .current_dir(self.work.path())
            // Each test has its own policy file (absent unless it writes one).
            .env("REFINE_PROC_POLICY", self.policy_path());
        cmd
    }

    pub fn cmd(&self, args: &[&str]) -> Out {
        output(self.command(args))
    }

    /// Runs refine-proc and requires success.
    pub fn ok(&self, args: &[&str]) -> Out {
        let out = self.cmd(args);
        assert_eq!(
            out.code, 0,
            "refine-proc {args:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
        out
    }

    /// `run --json ARGS...`, requiring success.
    pub fn run(&self, args: &[&str]) -> Rec {
        let mut all = vec!["run", "--json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }

    pub fn status(&self, id: &str) -> Rec {
        self.ok(&["status", "--json", id]).json()
    }

    pub fn list(&self, args: &[&str]) -> Vec<Rec> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let out = self.cmd(&["list", "--json"]);
        if let Ok(live) = serde_json::from_str::<Vec<Rec>>(&out.stdout) {
            if !live.is_empty() {
                let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
                let mut args = vec!["stop"];
                args.extend(ids);
                let _ = self.cmd(&args);
            }
        }
    }
}

/// Waits, on systemd's signals (no polling), until the unit has ended and
/// been collected, which happens after its exit was recorded.
pub fn wait_gone(unit: &str) {
    wait_for(unit, |info| info.is_none());
}

/// Waits, on systemd's signals, until `done` holds for the unit's live
/// properties (None once it is gone).
pub fn wait_for(unit: &str, done: impl Fn(Option<&refine_proc::systemd::ServiceInfo>) -> bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let systemd = refine_proc::systemd::Systemd::connect()
            .await
            .expect("connect to systemd");
        tokio::time::timeout(Duration::from_secs(60), systemd.wait_for(unit, done))
            .await
            .unwrap_or_else(|_| panic!("{unit} did not reach the awaited state within 60s"))
            .expect("wait for the unit");
    });
}

/// `journalctl -t IDENT -o cat` lines (what journalctl users would see).
pub fn journal_lines(ident: &str) -> Vec<String> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "-q", "-o", "cat", "-t", ident]);
    output(cmd).stdout.lines().map(String::from).collect()
}

/// Waits until journald has stored at least `count` lines of the identifier.
/// journald reads a process's output asynchronously, so lines can land
/// after the unit is gone, and it offers an unprivileged user no signal for
/// "ingested" (`journalctl --sync` is root-only; `--follow` block-buffers
/// into a pipe): so this re-counts, briefly, with a deadline.
pub fn wait_journal_lines(ident: &str, count: usize) {
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        let seen = journal_lines(ident).len();
        if seen >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "journald stored {seen} of {count} lines of {ident} within {COMMAND_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Says that the running test cannot check what it is named for on this
/// machine, and why; the caller then returns. libtest has no runtime skip,
/// so the line goes to `$REFINE_PROC_SKIP_LOG` too, which `tests/run`
/// counts into its summary ("skipped: N (name: reason)"). A test that
/// returns early without calling this counts as a pass: don't.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed test");
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("SKIP {name}: {reason}");
    if let Some(path) = std::env::var_os("REFINE_PROC_SKIP_LOG") {
        use std::io::Write;
        // One write of one line with O_APPEND: lines of parallel tests
        // never interleave.
        let line = format!("{name}\t{reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record the skip in {path:?}: {e}");
        }
    }
}
