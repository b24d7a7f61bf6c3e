//! `refine-proc doctor`: what this machine and session give refine-proc,
//! as data. Each check has a status, a one-line detail and, where something
//! is missing, the fix. A failed *required* check means refine-proc cannot
//! work here; a warning means a feature is missing or degraded.
//!
//! Everything is read, nothing is changed: the index is inspected without
//! being created, and systemd is only asked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::systemd::Systemd;
use crate::usage::{parse_controllers, CGROUP_MOUNT};

mod index;
mod journald;
pub use index::index_check;
#[cfg(test)]
use journald::journald_conf_files;
use journald::{journal_checks, JournaldConf};

/// The oldest systemd refine-proc supports (Debian 12).
pub const MIN_SYSTEMD: u32 = 252;
/// FreezeUnit/ThawUnit appeared in systemd 246 and work for user managers
/// from 247 on.
const FREEZER_SYSTEMD: u32 = 247;
/// RestartSteps= and RestartMaxDelaySec= (growing restart delays).
const RESTART_STEPS_SYSTEMD: u32 = 254;
/// The controllers limits and usage need from the user manager's cgroup.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// The daemon's unit, as the packages install it.
pub const DAEMON_UNIT: &str = "refine-proc.service";
/// How long the bus may take to answer before it counts as unreachable.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// Missing or degraded, but refine-proc works.
    Warn,
    /// Missing; for a required check refine-proc cannot work.
    Fail,
    /// Not checked, because a check it depends on failed.
    Skip,
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Stable name: `user-bus`, `systemd-version`, `cgroup-v2`, `freezer`,
    /// `restart-steps`, `controllers`, `lingering`, `journal-persistent`,
    /// `journal-readable`, `index`, `daemon`, `confinement`.
    pub name: &'static str,
    pub status: CheckStatus,
    /// Whether refine-proc needs it (a failed required check fails doctor).
    pub required: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
    /// The exit code's kind when this required check fails.
    #[serde(skip)]
    kind: ErrorKind,
}

impl Check {
    fn new(name: &'static str, required: bool, kind: ErrorKind) -> Check {
        Check {
            name,
            status: CheckStatus::Ok,
            required,
            detail: String::new(),
            fix: None,
            kind,
        }
    }

    fn ok(mut self, detail: impl Into<String>) -> Check {
        self.status = CheckStatus::Ok;
        self.detail = detail.into();
        self
    }

    /// Not ok: a failure when required, else a warning.
    fn bad(mut self, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        self.status = if self.required {
            CheckStatus::Fail
        } else {
            CheckStatus::Warn
        };
        self.detail = detail.into();
        self.fix = Some(fix.into());
        self
    }

    fn warn(mut self, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        self = self.bad(detail, fix);
        self.status = CheckStatus::Warn;
        self
    }

    fn skip(mut self, why: &str) -> Check {
        self.status = CheckStatus::Skip;
        self.detail = format!("not checked: {why}");
        self
    }
}

/// All checks, in order, and notes that are worth knowing but not a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when no required check failed.
    pub ok: bool,
    /// Which kind of machine this is, and what works on it.
    pub situation: Situation,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

/// The kind of machine and session: the checks' fixes differ between a
/// desktop login and a container whose PID 1 is a shell.
#[derive(Clone, Debug, Serialize)]
pub struct Situation {
    /// `session` (PID 1 is systemd, the user manager answers),
    /// `no-user-manager` (PID 1 is systemd, the user manager does not
    /// answer: su, sudo, cron, an SSH login without a user session),
    /// `sandbox` (the project's sandbox: a private user manager, PID 1 is
    /// not systemd), `user-manager-without-systemd` (a user manager answers
    /// but PID 1 is not systemd, outside the sandbox), `no-systemd` (PID 1
    /// is not systemd and no user manager answers: a container, CI).
    pub kind: &'static str,
    /// PID 1's name (`systemd`, `bash`, `tini`, ...), as /proc/1/comm says.
    pub pid1: String,
    pub pid1_is_systemd: bool,
    /// The user manager answered on the user bus.
    pub user_manager: bool,
    /// logind's session of the caller ($XDG_SESSION_ID), if any.
    pub login_session: Option<String>,
    /// Inside the project's sandbox (tests/sandbox/with-user-manager).
    pub sandbox: bool,
    /// What works here, and the way forward where nothing does.
    pub summary: String,
}

/// The way to try refine-proc where no user manager can run, from a clone.
const TRY_IT: &str = "cargo build, then sudo tests/sandbox/try (a shell next to a private user manager; see the README's \"Trying it without a user session\")";

impl Situation {
    fn detect(user_manager: bool) -> Situation {
        let pid1 = std::fs::read_to_string("/proc/1/comm")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let login_session = std::env::var("XDG_SESSION_ID")
            .ok()
            .filter(|s| !s.is_empty());
        let sandbox = std::env::var_os("WUM_MANAGER_CGROUP").is_some()
            || std::env::var("REFINE_PROC_SANDBOX").is_ok_and(|v| v == "1");
        Situation::classify(pid1, user_manager, login_session, sandbox)
    }

    fn classify(
        pid1: String,
        user_manager: bool,
        login_session: Option<String>,
        sandbox: bool,
    ) -> Situation {
        let pid1_is_systemd = pid1 == "systemd";
        let (kind, summary) = match (pid1_is_systemd, user_manager, sandbox) {
            (true, true, _) => ("session", "PID 1 is systemd and your user manager answers: everything the checks below pass works; its fixes apply as written".to_string()),
            (true, false, _) => ("no-user-manager", format!("PID 1 is systemd but no user manager answers for you{}: log in (desktop, ssh with a logind session), or have it start at boot with loginctl enable-linger, then export XDG_RUNTIME_DIR=/run/user/{}", if login_session.is_none() { " (no login session: su, sudo or cron?)" } else { "" }, crate::provenance::uid())),
            (false, true, true) => ("sandbox", format!("in the project's sandbox: PID 1 is {pid1}, not systemd, and a private user manager runs for this session; run, list, logs, stop, pause and the daemon work; limits are enforced only where the controllers check passes; lingering and the daemon's unit do not apply; everything ends with the sandbox")),
            (false, true, false) => ("user-manager-without-systemd", format!("PID 1 is {pid1}, not systemd, but a user manager answers: refine-proc works as the checks below say; fixes that need logind (loginctl enable-linger) do not apply")),
            (false, false, _) => ("no-systemd", format!("PID 1 is {pid1}, not systemd, and no user manager answers (a container or CI?): refine-proc cannot run processes here, and loginctl or starting journald cannot change that; to try it: {TRY_IT}")),
        };
        Situation {
            kind,
            pid1,
            pid1_is_systemd,
            user_manager,
            login_session,
            sandbox,
            summary,
        }
    }
}

impl Report {
    fn new(checks: Vec<Check>, notes: Vec<String>) -> Report {
        let ok = !checks
            .iter()
            .any(|c| c.required && c.status == CheckStatus::Fail);
        let user_manager = checks
            .iter()
            .any(|c| c.name == "user-bus" && c.status == CheckStatus::Ok);
        Report {
            ok,
            situation: Situation::detect(user_manager),
            checks,
            notes,
        }
    }

    /// 0 when every required check passed; else the exit code other
    /// commands give for the first failed one: 5 (no user manager),
    /// 6 (index), 1 (systemd too old, no cgroup v2).
    pub fn exit_code(&self) -> i32 {
        self.checks
            .iter()
            .find(|c| c.required && c.status == CheckStatus::Fail)
            .map_or(0, |c| c.kind.exit_code())
    }
}

/// Runs every check for the index in `state_dir` (or why there is none)
/// and the calling user.
pub async fn run(state_dir: Result<&Path, &Error>) -> Report {
    let journald = JournaldConf::read();
    let (bus, systemd, version) = bus_check().await;
    let mut checks = vec![bus];
    let major = version.as_deref().and_then(major_version);
    checks.push(version_check(version.as_deref(), major));

    // The cgroup2 hierarchy and the user manager's place in it.
    let hierarchy = Hierarchy::detect();
    checks.push(cgroup_check(&hierarchy));
    let manager_cg = match &systemd {
        Some(s) => s.manager_control_group().await.ok().flatten(),
        None => None,
    };
    let manager_dir = match (&hierarchy, &manager_cg) {
        (Hierarchy::Unified(root) | Hierarchy::Hybrid(root), Some(cg)) => {
            Some(root.join(cg.trim_start_matches('/')))
        }
        _ => None,
    };
    checks.push(freezer_check(major, &hierarchy, manager_dir.as_deref()));
    checks.push(restart_steps_check(major));

    let ctl = Check::new("controllers", false, ErrorKind::Systemd);
    checks.push(match (&systemd, &manager_dir) {
        (None, _) => ctl.skip(NO_BUS),
        (Some(_), None) => ctl.bad(
            "the user manager's cgroup is unknown, so its controllers are too",
            "run refine-proc on the unified cgroup v2 hierarchy",
        ),
        (Some(_), Some(dir)) => controllers_check(ctl, dir),
    });

    checks.push(lingering_check());
    let (persistent, readable) = journal_checks(&journald);
    checks.push(persistent);
    checks.push(readable);
    checks.push(match state_dir {
        Ok(dir) => index_check(dir),
        Err(e) => Check::new("index", true, ErrorKind::Index).bad(
            e.message.clone(),
            e.hint
                .clone()
                .unwrap_or_else(|| "pass --state-dir DIR".into()),
        ),
    });
    checks.push(daemon_check(systemd.as_ref()).await);
    checks.push(match &systemd {
        None => Check::new("confinement", false, ErrorKind::Systemd).skip(NO_BUS),
        Some(s) => confinement_check(s, major).await,
    });

    let mut notes = vec![journald.rate_limit_note(major)];
    if let Some(s) = &systemd {
        notes.extend(path_note(s.manager_path().await.ok().flatten()));
    }
    Report::new(checks, notes)
}

/// Why a check that asks the user manager was skipped.
const NO_BUS: &str = "the user manager is unreachable";

/// Whether the user manager answers on the bus (within [`BUS_TIMEOUT`]),
/// and its version if it does.
async fn bus_check() -> (Check, Option<Systemd>, Option<String>) {
    let bus = Check::new("user-bus", true, ErrorKind::Unavailable);
    let connected = tokio::time::timeout(BUS_TIMEOUT, async {
        let systemd = Systemd::connect().await?;
        let version = systemd.version().await?;
        Ok::<_, Error>((systemd, version))
    })
    .await
    .unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the user bus did not answer within {}s",
                BUS_TIMEOUT.as_secs()
            ),
        )
        .hint("check DBUS_SESSION_BUS_ADDRESS and that systemd --user runs"))
    });
    match connected {
        Ok((systemd, version)) => {
            let check = bus.ok(format!("systemd {version} answers on {}", bus_address()));
            (check, Some(systemd), Some(version))
        }
        Err(e) => {
            let hint = e
                .hint
                .clone()
                .unwrap_or_else(|| "run refine-proc inside a login session of your user".into());
            // Where PID 1 is not systemd no session can bring one.
            let fix = if pid1_is_systemd() {
                hint
            } else {
                format!("PID 1 is not systemd here, so neither a login nor loginctl enable-linger brings a user manager; if one runs (a sandbox), point at it with XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS; else try refine-proc in the project's sandbox: {TRY_IT}")
            };
            (bus.bad(e.message.clone(), fix), None, None)
        }
    }
}

fn version_check(version: Option<&str>, major: Option<u32>) -> Check {
    let ver = Check::new("systemd-version", true, ErrorKind::Systemd);
    match (version, major) {
        (None, _) => ver.skip(NO_BUS),
        (Some(v), None) => ver.warn(
            format!("cannot read a version number from {v:?}"),
            format!("refine-proc needs systemd {MIN_SYSTEMD} or later; check `systemctl --version`"),
        ),
        (Some(v), Some(m)) if m < MIN_SYSTEMD => ver.bad(
            format!("systemd {v} is older than {MIN_SYSTEMD}"),
            format!("upgrade systemd to {MIN_SYSTEMD} or later (Debian 12, Ubuntu 23.04 and Fedora 38 have it)"),
        ),
        (Some(v), Some(_)) => ver.ok(format!("systemd {v} (refine-proc needs {MIN_SYSTEMD} or later)")),
    }
}

fn cgroup_check(hierarchy: &Hierarchy) -> Check {
    let cg = Check::new("cgroup-v2", true, ErrorKind::Systemd);
    match hierarchy {
        Hierarchy::Unified(root) => cg.ok(format!("unified cgroup v2 hierarchy at {}", root.display())),
        Hierarchy::Hybrid(root) => cg.warn(
            format!("hybrid hierarchy: cgroup v2 at {}, controllers on cgroup v1", root.display()),
            "boot with the unified hierarchy (systemd.unified_cgroup_hierarchy=1 on the kernel command line) so limits are enforced and processes can be paused",
        ),
        Hierarchy::None => cg.bad(
            format!("no cgroup v2 hierarchy is mounted at {CGROUP_MOUNT}"),
            "boot with the unified cgroup hierarchy (systemd.unified_cgroup_hierarchy=1; the default since systemd 247)",
        ),
    }
}

/// Whether `pause` works: systemd's freezer on the manager's cgroup.
fn freezer_check(major: Option<u32>, hierarchy: &Hierarchy, manager_dir: Option<&Path>) -> Check {
    let freezer = Check::new("freezer", false, ErrorKind::Systemd);
    let pause_fix =
        "refine-proc pause needs systemd 247 or later on the unified cgroup v2 hierarchy";
    match (major, hierarchy, manager_dir) {
        (None, _, _) => freezer.skip(NO_BUS),
        (Some(m), _, _) if m < FREEZER_SYSTEMD => freezer.bad(
            format!("systemd {m} has no freezer for user units"),
            pause_fix,
        ),
        (_, Hierarchy::Unified(_), Some(dir)) if dir.join("cgroup.freeze").is_file() => {
            freezer.ok("cgroup freezer available: pause and resume work")
        }
        (_, Hierarchy::Unified(_), Some(dir)) => {
            freezer.bad(format!("{} has no cgroup.freeze", dir.display()), pause_fix)
        }
        (_, Hierarchy::Unified(_), None) => {
            freezer.bad("the user manager's cgroup is unknown", pause_fix)
        }
        (_, _, _) => freezer.bad("no unified cgroup v2 hierarchy", pause_fix),
    }
}

fn restart_steps_check(major: Option<u32>) -> Check {
    let steps = Check::new("restart-steps", false, ErrorKind::Systemd);
    match major {
        None => steps.skip(NO_BUS),
        Some(m) if m >= RESTART_STEPS_SYSTEMD => {
            steps.ok(format!("systemd {m} has RestartSteps=: restart delays can grow"))
        }
        Some(m) => steps.bad(
            format!("systemd {m} has no RestartSteps= ({RESTART_STEPS_SYSTEMD} or later): restart delays stay fixed"),
            format!("upgrade systemd to {RESTART_STEPS_SYSTEMD} or later for growing restart delays; everything else works"),
        ),
    }
}

/// Whether the daemon's unit is installed and running (the CLI works
/// without it; the HTTP API and the web page need it).
async fn daemon_check(systemd: Option<&Systemd>) -> Check {
    let daemon = Check::new("daemon", false, ErrorKind::Systemd);
    let Some(s) = systemd else {
        return daemon.skip(NO_BUS);
    };
    match s.unit_activity(DAEMON_UNIT).await {
        Ok(a) if a.load_state == "not-found" => daemon.bad(
            format!("{DAEMON_UNIT} is not installed (the CLI works without it)"),
            format!("install a refine-proc package, or copy units/{DAEMON_UNIT} to ~/.config/systemd/user/ with ExecStart= naming your binary; then systemctl --user enable --now {DAEMON_UNIT}"),
        ),
        Ok(a) if a.active_state == "active" => {
            let status = if a.status_text.is_empty() {
                String::new()
            } else {
                format!(": {}", a.status_text)
            };
            daemon.ok(format!("{DAEMON_UNIT} is {} ({}){status}", a.active_state, a.sub_state))
        }
        Ok(a) => daemon.bad(
            format!("{DAEMON_UNIT} is {} ({}, {}); the CLI works without it", a.active_state, a.sub_state, a.load_state),
            format!("systemctl --user enable --now {DAEMON_UNIT}; if it fails: journalctl --user -u {DAEMON_UNIT}"),
        ),
        Err(e) => daemon.bad(format!("cannot ask about {DAEMON_UNIT}: {}", e.message), format!("systemctl --user status {DAEMON_UNIT}")),
    }
}

/// Whether this user manager can confine a unit (`confine = true` in a
/// policy): the kernel's user namespace settings, `/run/systemd/unit-root`,
/// and a real probe unit with the sandbox's core; then what remains open.
async fn confinement_check(systemd: &Systemd, major: Option<u32>) -> Check {
    use crate::confine::{probe_properties, ptrace_problem, userns_problem, PRIVATE_PIDS_SYSTEMD};
    let check = Check::new("confinement", false, ErrorKind::Systemd);
    let sysctl = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let userns = userns_problem(
        sysctl("/proc/sys/user/max_user_namespaces"),
        sysctl("/proc/sys/kernel/unprivileged_userns_clone"),
        sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    );
    if !Path::new("/run/systemd/unit-root").is_dir() {
        return check.bad(
            "/run/systemd/unit-root is missing: every unit with a mount-namespace option fails with 226/NAMESPACE (systemd as PID 1 creates it at boot)",
            "as root: mkdir -p /run/systemd/unit-root (a machine not booted with systemd, e.g. a container)",
        );
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let unit = format!("refine-doctor-probe-{}.service", crate::model::new_id());
    let probe = probe_properties(Path::new(&format!("/run/user/{uid}")));
    let started = tokio::time::timeout(BUS_TIMEOUT, systemd.start_transient(&unit, &probe)).await;
    let started = match started {
        Ok(Ok(job)) if job.result == "done" => Ok(()),
        Ok(Ok(job)) => Err(format!("its start job ended {:?}", job.result)),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err(format!(
            "it did not start within {}s",
            BUS_TIMEOUT.as_secs()
        )),
    };
    if let Err(why) = started {
        let (cause, fix) = userns.unwrap_or_else(|| {
            (
                "the user manager could not set up the sandbox".into(),
                format!("see journalctl --user -u {unit}"),
            )
        });
        return check.bad(
            format!("a unit with PrivateUsers=yes and ProtectControlGroups=yes did not start ({why}): {cause}; confine = true cannot work"),
            fix,
        );
    }
    let pids = match major {
        Some(m) if m >= PRIVATE_PIDS_SYSTEMD => "PrivatePIDs= too: a confined process sees and signals only its own processes".to_string(),
        _ => format!("no PrivatePIDs= before systemd {PRIVATE_PIDS_SYSTEMD}: a confined process can still signal the user's other processes by pid"),
    };
    let detail = format!(
        "a confined unit started (user and mount namespaces, read-only cgroups, no new namespaces, no user bus); {pids}"
    );
    match ptrace_problem(sysctl("/proc/sys/kernel/yama/ptrace_scope")) {
        Some((why, fix)) => check.warn(format!("{detail}; {why}"), fix),
        None => check.ok(detail),
    }
}

/// The bus refine-proc connects to, as zbus picks it.
fn bus_address() -> String {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(a) if !a.is_empty() => a,
        _ => match std::env::var("XDG_RUNTIME_DIR") {
            Ok(r) => format!("unix:path={r}/bus"),
            Err(_) => "the default session bus".into(),
        },
    }
}

/// The leading number of a systemd version ("252.38-1~deb12u1" -> 252).
pub fn major_version(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Where cgroup v2 is mounted.
enum Hierarchy {
    Unified(PathBuf),
    /// cgroup v2 beside v1 controllers (`/sys/fs/cgroup/unified`).
    Hybrid(PathBuf),
    None,
}

impl Hierarchy {
    fn detect() -> Hierarchy {
        let root = PathBuf::from(CGROUP_MOUNT);
        if root.join("cgroup.controllers").is_file() {
            Hierarchy::Unified(root)
        } else if root.join("unified/cgroup.controllers").is_file() {
            Hierarchy::Hybrid(root.join("unified"))
        } else {
            Hierarchy::None
        }
    }
}

fn controllers_check(check: Check, manager_dir: &Path) -> Check {
    let file = manager_dir.join("cgroup.controllers");
    let have = match std::fs::read_to_string(&file) {
        Ok(text) => parse_controllers(&text),
        Err(e) => {
            return check.bad(
                format!("cannot read {}: {e}", file.display()),
                "run refine-proc on the unified cgroup v2 hierarchy",
            )
        }
    };
    let missing: Vec<&str> = CONTROLLERS
        .into_iter()
        .filter(|c| !have.contains(*c))
        .collect();
    if missing.is_empty() {
        return check.ok(format!(
            "the user manager has the {} controllers: limits are enforced",
            CONTROLLERS.join(", ")
        ));
    }
    check.bad(
        format!(
            "the user manager lacks the {} controller{}: those limits are accepted but not enforced, and their usage reads as null",
            missing.join(", "),
            if missing.len() > 1 { "s" } else { "" }
        ),
        "delegate them to user managers: `sudo systemctl edit user@.service`, add [Service] Delegate=pids memory cpu, then log in again (in a container, its runtime must delegate them)",
    )
}

/// Whether PID 1 is systemd (so logind, lingering and sessions exist).
fn pid1_is_systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|s| s.trim() == "systemd")
}

fn lingering_check() -> Check {
    let check = Check::new("lingering", false, ErrorKind::Systemd);
    if !pid1_is_systemd() {
        return check.skip(
            "PID 1 is not systemd: there is no logind to keep a user manager running, and loginctl enable-linger cannot work; the user manager lives as long as whatever started it (the sandbox)",
        );
    }
    let Some(user) = crate::provenance::user_name() else {
        return check.bad(
            format!(
                "uid {} has no entry in the user database",
                crate::provenance::uid()
            ),
            "lingering needs a named user: add one (useradd) or run refine-proc as one",
        );
    };
    let path = Path::new("/var/lib/systemd/linger").join(&user);
    if path.exists() {
        check.ok(format!(
            "enabled for {user}: your user manager runs from boot, without a login"
        ))
    } else {
        check.bad(
            format!("not enabled for {user}: your user manager, and every process refine-proc started, stops at your last logout"),
            format!("loginctl enable-linger {user}"),
        )
    }
}

/// A warning when the user manager's PATH lacks the directory of this
/// refine-proc (`~/.cargo/bin` usually is not on it): the processes
/// refine-proc starts get it appended, other units do not.
fn path_note(manager_path: Option<String>) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let path = manager_path.unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d == dir) {
        return None;
    }
    let dir = dir.display();
    Some(format!(
        "warning: the user manager's PATH ({}) lacks {dir}, where this refine-proc is. \
         Processes refine-proc starts get it appended (unless --env PATH= is given); other \
         units the manager starts do not find refine-proc. To give every unit it: \
         mkdir -p ~/.config/environment.d && echo 'PATH=$PATH:{dir}' > \
         ~/.config/environment.d/50-refine-proc.conf, then log in again.",
        crate::text::escape(&path)
    ))
}

#[cfg(test)]
mod tests;
