//! Confined actors: a policy's `confine = true` runs every process launched
//! as that actor in a systemd sandbox it cannot leave, so that its cgroup
//! is its identity and the user manager, the index and the policy are out
//! of its reach. What the sandbox is, as unit properties, is decided here
//! by pure functions; `spec` adds them to a launch's properties.
//!
//! What holds on systemd 252 (seen in the test sandbox):
//! - `PrivateUsers=` (a user manager needs a user namespace for any mount
//!   option) + `ProtectControlGroups=`: `/sys/fs/cgroup` is read-only, so the
//!   process cannot move itself to another cgroup.
//! - `RestrictNamespaces=` + `NoNewPrivileges=`: `unshare` fails with EPERM,
//!   so no cgroup namespace can make `/proc/self/cgroup` read `0::/`.
//! - What the runtime directory `/run/user/UID` holds at launch is
//!   inaccessible (the user bus, systemd's private socket and transient unit
//!   files, desktop and agent sockets), except the refine-proc API directory
//!   (read-only, so its socket cannot be replaced) and, for `--ready notify`,
//!   systemd's notify socket. (Not an empty tmpfs with binds: systemd applies
//!   TemporaryFileSystem= and BindPaths= to privileged commands too, and
//!   without the user namespace the exit hook then fails at NAMESPACE.)
//! - The index (the state directory: records with every run's environment,
//!   idempotency entries, events, the API's tokens) is inaccessible; the
//!   unit's environment names the daemon's socket instead (see
//!   [`environment`]).
//! - The home directory is read-only except the `writable` paths; the index,
//!   the policy file, the user manager's unit and environment directories are
//!   read-only even inside a writable path.
//! - `/dev` is its own (`PrivateDevices=`, unless the policy says
//!   `devices = true`), and `/dev/pts` is inaccessible: no device of the
//!   machine, no terminal of the user.
//! - The exit hook runs privileged (outside the sandbox), see [`exit_hook`].

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::Owner;
use crate::policy::{Actor, Policy};
use crate::spec::Prop;

/// `CLONE_NEWIPC`: the one namespace type a confined unit is "allowed".
/// systemd 252 writes `RestrictNamespaces=yes` (no type allowed) to the
/// transient unit file as an empty `RestrictNamespaces=`, which its parser
/// reads back after a daemon-reload as "no restriction". Allowing IPC is
/// written as `RestrictNamespaces=ipc` and survives; creating an IPC
/// namespace needs CAP_SYS_ADMIN, which the process does not have (and no
/// user namespace can give it one), so it still fails with EPERM.
pub const RESTRICT_NAMESPACES_ALLOWED: u64 = 0x0800_0000;

/// systemd version that has `PrivatePIDs=` (a PID namespace per unit).
pub const PRIVATE_PIDS_SYSTEMD: u32 = 257;

/// The file name of the exit hook's drop-in (see [`exit_hook`]).
pub const HOOK_DROP_IN: &str = "50-refine-exit-hook.conf";

/// The sandbox of one confined launch, resolved against the launching user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confinement {
    /// The actor whose rules confine it (the launcher's, or the owner's).
    pub actor: String,
    /// The user's home directory (from the password database, not $HOME).
    pub home: PathBuf,
    /// The user manager's runtime directory, `/run/user/UID`.
    pub runtime_dir: PathBuf,
    /// Absolute paths it may write (missing ones are skipped).
    pub writable: Vec<PathBuf>,
    /// Names in the runtime directory, and in its `systemd/`, at launch.
    pub runtime_entries: Vec<String>,
    pub systemd_entries: Vec<String>,
    /// The manager has `PrivatePIDs=` (systemd 257+).
    pub private_pids: bool,
    /// The policy's `devices = true`: the machine's devices stay visible.
    pub devices: bool,
}

/// Checks a `writable` entry as written: absolute or `~/...`, no `..`, and
/// not the home directory itself (or `~/.config`, `~/.local`,
/// `~/.local/share`): those hold what a login runs (shell profiles,
/// autostart, unit files), which would let the process plant code that runs
/// outside the sandbox.
pub fn check_writable(path: &str) -> std::result::Result<(), String> {
    if path.chars().any(char::is_control) {
        return Err("has control characters".into());
    }
    let rest = match path.strip_prefix("~/") {
        Some(rest) => rest,
        None if path == "~" => "",
        None if path.starts_with('/') => path,
        None => return Err("is not an absolute path or ~/...".into()),
    };
    let p = Path::new(rest);
    if p.components().any(|c| c == Component::ParentDir) {
        return Err("has a .. component; name the directory itself".into());
    }
    if path.starts_with('~') {
        let inner: PathBuf = p.components().collect();
        if LOGIN_DIRS.iter().any(|d| Path::new(d) == inner) {
            return Err(format!(
                "would make {} writable, where a login finds what it runs; name the workspace directories instead",
                if inner.as_os_str().is_empty() { "the home directory".to_string() } else { format!("~/{}", inner.display()) }
            ));
        }
    } else if Path::new(path).components().count() <= 1 {
        return Err("is the root directory".into());
    }
    Ok(())
}

/// The home and the directories under it that hold what a login reads
/// code or units from: a writable path may lie below them, not be them.
const LOGIN_DIRS: &[&str] = &["", ".config", ".local", ".local/share"];

/// Under the home, read-only even inside a writable path: the user
/// manager's units and drop-ins (`systemd/user`, `user.control`) and the
/// environment it gives every unit (`environment.d`). Created when missing,
/// so that a process cannot create them in a writable parent.
pub const PROTECTED_IN_HOME: &[&str] = &[
    ".config/systemd",
    ".config/environment.d",
    ".local/share/systemd",
];

/// The user's home directory from the password database: `$HOME` is the
/// caller's to set and must not decide what the sandbox protects.
pub fn home_of(uid: u32) -> Result<PathBuf> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buf outlives the call and pwd's pointers are read before it
    // is dropped; getpwuid_r writes only within the sizes given.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pwd.pw_dir.is_null() {
        return Err(Error::invalid(format!(
            "cannot confine: uid {uid} has no entry in the password database"
        ))
        .hint("a confined launch needs the user's home directory from getent passwd"));
    }
    // SAFETY: pw_dir points into buf, a NUL-terminated string.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

/// Whether a launch as `owner` by `actor` is confined, and how: a confined
/// launcher's children are confined as it is (they cannot get out by
/// launching as another owner); otherwise the owner's own rules decide.
/// `version` is asked only for a confined launch (for `PrivatePIDs=`).
/// Creates the protected directories that are missing (see
/// [`PROTECTED_IN_HOME`]) and the API directory, so they can be bound.
pub async fn for_launch<F>(
    policy: &Policy,
    actor: Actor,
    owner: Owner,
    version: F,
) -> Result<Option<Confinement>>
where
    F: std::future::Future<Output = Result<u32>>,
{
    let launcher = policy.rules(actor);
    let rules = if matches!(actor, Actor::Managed(_)) && launcher.confine {
        launcher
    } else {
        let own = policy.rules(Actor::Managed(owner));
        if !own.confine {
            return Ok(None);
        }
        own
    };
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let home = home_of(uid)?;
    let writable = rules
        .writable
        .iter()
        .map(|w| resolve_writable(w, &home))
        .collect::<Result<Vec<_>>>()?;
    let runtime_dir = PathBuf::from(format!("/run/user/{uid}"));
    for dir in PROTECTED_IN_HOME {
        create_dir(&home.join(dir), 0o755)?;
    }
    if runtime_dir.is_dir() {
        create_dir(&runtime_dir.join("refine-proc"), 0o700)?;
    }
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            // A name systemd would reject as a path would fail every start.
            .filter(|n| !n.chars().any(char::is_control))
            .collect();
        v.sort();
        v
    };
    Ok(Some(Confinement {
        actor: rules.actor,
        runtime_entries: names(&runtime_dir),
        systemd_entries: names(&runtime_dir.join("systemd")),
        home,
        runtime_dir,
        writable,
        devices: rules.devices,
        private_pids: version.await? >= PRIVATE_PIDS_SYSTEMD,
    }))
}

fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| {
            Error::invalid(format!(
                "cannot confine: cannot create {}: {e}",
                dir.display()
            ))
            .hint("a confined launch makes it read-only; create it yourself or fix the permissions")
        })
}

/// `~/x` against `home`; checked again against the resolved home, which
/// may be `/` or a parent of the protected directories.
pub fn resolve_writable(written: &str, home: &Path) -> Result<PathBuf> {
    let path = match written.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if written == "~" => home.to_path_buf(),
        None => PathBuf::from(written),
    };
    let path: PathBuf = path.components().collect();
    // The home or a parent of it, or one of the login directories; also
    // where a symlink leads (systemd follows it).
    let guarded = |p: &Path| {
        home.starts_with(p)
            || LOGIN_DIRS
                .iter()
                .any(|d| !d.is_empty() && home.join(d) == p)
    };
    let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    if guarded(&path) || guarded(&real) {
        return Err(Error::invalid(format!(
                "cannot confine: writable {} would make {} writable",
                crate::text::escape(written),
                path.display()
            ))
            .hint("name the workspace directories in writable = [...], not the home directory or its parents"));
    }
    Ok(path)
}

/// The properties that confine a unit (see the module's documentation).
/// `state_dir` is made inaccessible, `policy` read-only; `notify`: the process
/// reports readiness on the manager's notify socket.
pub fn properties(
    c: &Confinement,
    state_dir: &Path,
    policy: &Path,
    notify: bool,
) -> Vec<(&'static str, Prop)> {
    // "-": a path that does not exist is skipped, not a failed start.
    let optional = |p: &Path| format!("-{}", p.display());
    let run = &c.runtime_dir;
    let api = run.join("refine-proc");
    let mut read_only = vec![optional(&c.home), optional(policy)];
    read_only.extend(PROTECTED_IN_HOME.iter().map(|d| optional(&c.home.join(d))));
    read_only.push(optional(&api));
    // Named even when not listed: the bus and the private socket above all;
    // and the whole index: records and idempotency entries hold every
    // run's environment (secrets passed with --env), `secrets/` the API's
    // tokens. Nothing in the unit reads it: the exit hook runs privileged,
    // the pty holder and exec-unit need no index, and refine-proc inside
    // goes to the daemon, whose socket [`environment`] names. (Not also
    // read-only: seen on 252, the same path in ReadOnlyPaths= wins.)
    let mut hidden = vec![
        run.join("bus"),
        run.join("systemd"),
        state_dir.to_path_buf(),
    ];
    // The terminal sessions' sockets (in the API directory, which stays):
    // their holders admit any peer of the user, and keys sent to a
    // person's session run outside the sandbox. A confined session's own
    // socket is bound outside and passed in (see crate::pty::listen).
    hidden.push(api.join("pty"));
    // Every terminal of the user (/dev/pts/N is the user's own, mode 0620):
    // a person's shell, their tmux, the sessions. Open, it gives the keys
    // typed there and the screen. A confined session's own terminal is
    // opened outside and passed in (crate::pty::listen); the cost is that
    // a confined process cannot open new terminals (`script`, `expect`):
    // `refine-proc run --pty` gives it one.
    hidden.push(PathBuf::from("/dev/pts"));
    hidden.extend(c.runtime_entries.iter().map(|n| run.join(n)));
    if notify {
        // Keep systemd/notify, hide the rest of systemd/ one by one.
        let sd = run.join("systemd");
        hidden.retain(|p| *p != sd);
        hidden.push(sd.join("private"));
        hidden.push(sd.join("transient"));
        hidden.extend(
            c.systemd_entries
                .iter()
                .filter(|n| *n != "notify")
                .map(|n| sd.join(n)),
        );
        read_only.push(optional(&sd));
    }
    // What it must see (read-only or writable) is not hidden with its parent.
    let seen: Vec<&Path> = std::iter::once(policy)
        .chain(c.writable.iter().map(PathBuf::as_path))
        .collect();
    hidden.retain(|p| *p != api && (p == state_dir || !seen.iter().any(|s| s.starts_with(p))));
    hidden.sort();
    hidden.dedup();
    let mut props = vec![
        ("PrivateUsers", Prop::Bool(true)),
        ("ProtectControlGroups", Prop::Bool(true)),
        ("RestrictNamespaces", Prop::U64(RESTRICT_NAMESPACES_ALLOWED)),
        ("NoNewPrivileges", Prop::Bool(true)),
        (
            "InaccessiblePaths",
            Prop::Strs(hidden.iter().map(|p| optional(p)).collect()),
        ),
        ("ReadOnlyPaths", Prop::Strs(read_only)),
    ];
    if !c.writable.is_empty() {
        props.push((
            "ReadWritePaths",
            Prop::Strs(c.writable.iter().map(|p| optional(p)).collect()),
        ));
    }
    if c.private_pids {
        props.push(("PrivatePIDs", Prop::Bool(true)));
    }
    if !c.devices {
        // A /dev of its own with only null, zero, random, tty and the like:
        // a desktop gives the logged-in user the microphone, the camera,
        // the GPU and some USB devices (logind's uaccess), and the sandbox
        // would reach them all.
        props.push(("PrivateDevices", Prop::Bool(true)));
    }
    props
}

/// The exit hook of a confined unit, from the `ExecStopPost=` entry the
/// unconfined unit would get: it must run outside the sandbox (the index
/// is read-only inside). systemd's "privileged" flag (`+`) does that, also
/// in a user manager (seen on 252: no user or mount namespace), but only
/// `ExecStopPostEx=` carries it over D-Bus, and 252 writes that to the
/// transient unit file under a key its own parser rejects: after a
/// daemon-reload the unit would have no hook. So the hook goes twice:
/// as `ExecStopPostEx=` for the unit's first life, and in a drop-in beside
/// the transient unit file (`transient/UNIT.d/`, removed by systemd with
/// the unit), which 252 does not see at creation (its unit path cache is
/// older) but reads on every reload. The drop-in first empties the list, so
/// whichever systemd reads, there is exactly one hook.
///
/// `flags` are the hook's ExecStopPostEx= flags as built for an unconfined
/// unit (`ignore-failure`, `no-env-expand`); "privileged" is added.
pub fn exit_hook(path: &str, argv: &[String], flags: &[String]) -> (Prop, Prop) {
    let mut flags = flags.to_vec();
    if !flags.iter().any(|f| f == "privileged") {
        flags.insert(0, "privileged".into());
    }
    // The unit file's prefixes for the same flags.
    let mut prefix = "+".to_string();
    for (flag, c) in [("ignore-failure", '-'), ("no-env-expand", ':')] {
        if flags.iter().any(|f| f == flag) {
            prefix.push(c);
        }
    }
    let ex = Prop::ExecEx(vec![(path.to_string(), argv.to_vec(), flags)]);
    // A unit file's command line: the path, then argv[1..] (argv[0] is the
    // path again unless given with @, which it is not here).
    let words: Vec<String> = std::iter::once(path)
        .chain(argv.iter().skip(1).map(String::as_str))
        .map(unit_file_word)
        .collect();
    let text = format!(
        "# Written by refine-proc: the exit hook, privileged, across daemon-reload.\n[Service]\nExecStopPost=\nExecStopPost={prefix}{}\n",
        words.join(" ")
    );
    let drop_in = Prop::DropIn {
        file: HOOK_DROP_IN.to_string(),
        text,
    };
    (ex, drop_in)
}

/// One word of an `Exec*=` line, double-quoted so systemd reads back exactly
/// `word`: C escapes for `\`, `"` and control characters, `%%` for `%`
/// (specifiers). `$` is left as given: the ExecStart= rules double it
/// already, and a unit file reads `$$` as `$` too.
pub fn unit_file_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a drop-in of `unit` durably (temp file, fsync, rename, fsync of
/// the directory) beside its transient unit file in `runtime_dir`.
pub fn write_drop_in(runtime_dir: &Path, unit: &str, file: &str, text: &str) -> Result<PathBuf> {
    use std::io::Write;
    let dir = runtime_dir
        .join("systemd/transient")
        .join(format!("{unit}.d"));
    let fail = |e: std::io::Error| {
        Error::systemd(format!(
            "cannot write the exit hook's drop-in in {}: {e}",
            dir.display()
        ))
        .hint("the user manager's runtime directory must be writable (XDG_RUNTIME_DIR)")
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .and_then(|_| std::fs::File::open(&dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(path)
}

/// Removes a drop-in written for a unit that was never created.
pub fn remove_drop_in(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The variable in a confined unit's environment that names the socket of
/// its index's daemon: the index, and its `api.socket`, are out of reach.
pub const API_SOCKET_ENV: &str = "REFINE_PROC_API_SOCKET";

/// The confined unit's [`API_SOCKET_ENV`] entry: the socket the index's
/// daemon serves at launch (None without one; refine-proc inside then
/// fails closed, see [`index_out_of_reach`]).
pub fn environment(state_dir: &Path) -> Option<String> {
    crate::api::socket_of(state_dir).map(|s| format!("{API_SOCKET_ENV}={}", s.display()))
}

/// The error of refine-proc inside a confined unit that found no daemon
/// and so opened the index itself, which the sandbox hides.
pub fn index_out_of_reach(e: Error) -> Error {
    if !looks_confined(&e.message) {
        return e;
    }
    Error::new(
        crate::error::ErrorKind::Unavailable,
        format!("the index is out of reach: {}", e.message),
    )
    .hint(UNREACHABLE_HINT)
}

/// The hint when a confined process finds no user bus: that is the sandbox.
pub const UNREACHABLE_HINT: &str = "this process runs confined (confine = true in its policy): the user bus and the index are out of its reach by design; refine-proc inside the sandbox needs the daemon's API socket, running when the process was launched (start it: systemctl --user enable --now refine-proc.service)";

/// Whether a failed bus connection looks like the sandbox's doing: a
/// managed process (REFINE_ID set) denied the socket that systemd made
/// inaccessible.
pub fn looks_confined(reason: &str) -> bool {
    std::env::var_os("REFINE_ID").is_some() && reason.contains("Permission denied")
}

/// What keeps a user manager from giving its units a user namespace, and
/// the fix, from the sysctls (None: not present on this kernel):
/// `user.max_user_namespaces`, Debian's `kernel.unprivileged_userns_clone`
/// and Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`.
pub fn userns_problem(
    max_user_namespaces: Option<u64>,
    unprivileged_userns_clone: Option<u64>,
    apparmor_restrict: Option<u64>,
) -> Option<(String, String)> {
    if max_user_namespaces == Some(0) {
        return Some((
            "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            "as root: sysctl -w user.max_user_namespaces=15000, and persist it in /etc/sysctl.d/"
                .into(),
        ));
    }
    if unprivileged_userns_clone == Some(0) {
        return Some((
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)".into(),
            "as root: sysctl -w kernel.unprivileged_userns_clone=1, and persist it in /etc/sysctl.d/".into(),
        ));
    }
    if apparmor_restrict == Some(1) {
        return Some((
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10 and later)".into(),
            "as root, either allow them for every program: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (persist it in /etc/sysctl.d/60-userns.conf), or give the user manager an AppArmor profile with `userns,` (e.g. /etc/apparmor.d/systemd-user: abi <abi/4.0>, include <tunables/global>, profile systemd-user /usr/lib/systemd/systemd flags=(unconfined) { userns, }, then apparmor_parser -r it) and run refine-proc doctor again".into(),
        ));
    }
    None
}

/// What Yama's `kernel.yama.ptrace_scope` leaves open to a confined process
/// (None: no Yama): at 0 it may ptrace, and so take over, any unconfined
/// process of the user.
pub fn ptrace_problem(scope: Option<u64>) -> Option<(String, String)> {
    let fix = "as root: sysctl -w kernel.yama.ptrace_scope=1 (persist it in /etc/sysctl.d/); then only a process's ancestors may trace it";
    match scope {
        Some(s) if s >= 1 => None,
        Some(_) => Some((
            "kernel.yama.ptrace_scope = 0: a confined process may ptrace the user's unconfined processes".into(),
            fix.into(),
        )),
        None => Some((
            "no Yama (kernel.yama.ptrace_scope): a confined process may ptrace the user's unconfined processes".into(),
            "use a kernel with Yama (CONFIG_SECURITY_YAMA) and kernel.yama.ptrace_scope=1".into(),
        )),
    }
}

/// The properties of `doctor`'s probe: the mount-namespace core of the
/// sandbox, on a unit that runs `true`.
pub fn probe_properties(runtime_dir: &Path) -> Vec<(&'static str, Prop)> {
    vec![
        (
            "Description",
            Prop::Str("refine-proc doctor: confinement probe".into()),
        ),
        ("Type", Prop::Str("exec".into())),
        ("CollectMode", Prop::Str("inactive-or-failed".into())),
        ("PrivateUsers", Prop::Bool(true)),
        ("ProtectControlGroups", Prop::Bool(true)),
        ("RestrictNamespaces", Prop::U64(RESTRICT_NAMESPACES_ALLOWED)),
        ("NoNewPrivileges", Prop::Bool(true)),
        (
            "InaccessiblePaths",
            Prop::Strs(vec![format!("-{}", runtime_dir.join("bus").display())]),
        ),
        (
            "ExecStart",
            Prop::Exec(vec![("/bin/true".into(), vec!["true".into()], false)]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confinement() -> Confinement {
        Confinement {
            actor: "agent".into(),
            home: "/home/u".into(),
            runtime_dir: "/run/user/1000".into(),
            writable: vec!["/home/u/ws".into()],
            runtime_entries: ["bus", "refine-proc", "systemd", "wayland-0"]
                .map(String::from)
                .to_vec(),
            systemd_entries: ["notify", "private", "units"].map(String::from).to_vec(),
            private_pids: false,
            devices: false,
        }
    }

    fn get<'a>(props: &'a [(&'static str, Prop)], name: &str) -> Option<&'a Prop> {
        props.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    #[test]
    fn a_confined_unit_gets_the_sandbox_that_holds_on_252() {
        let props = properties(
            &confinement(),
            Path::new("/home/u/.local/state/refine-proc"),
            Path::new("/home/u/.config/refine-proc/policy.toml"),
            false,
        );
        for b in [
            "PrivateUsers",
            "ProtectControlGroups",
            "NoNewPrivileges",
            "PrivateDevices",
        ] {
            assert_eq!(get(&props, b), Some(&Prop::Bool(true)), "{b}");
        }
        // Not 0 (= "yes"): 252 loses that across a daemon-reload.
        assert_eq!(
            get(&props, "RestrictNamespaces"),
            Some(&Prop::U64(0x0800_0000))
        );
        assert_eq!(
            get(&props, "InaccessiblePaths"),
            Some(&Prop::Strs(
                [
                    "-/dev/pts",
                    "-/home/u/.local/state/refine-proc",
                    "-/run/user/1000/bus",
                    "-/run/user/1000/refine-proc/pty",
                    "-/run/user/1000/systemd",
                    "-/run/user/1000/wayland-0"
                ]
                .map(String::from)
                .to_vec()
            ))
        );
        let Some(Prop::Strs(ro)) = get(&props, "ReadOnlyPaths") else {
            panic!("no read-only paths")
        };
        for p in [
            "-/home/u",
            "-/home/u/.config/refine-proc/policy.toml",
            "-/home/u/.config/systemd",
            "-/home/u/.config/environment.d",
            "-/home/u/.local/share/systemd",
            "-/run/user/1000/refine-proc",
        ] {
            assert!(ro.contains(&p.to_string()), "{p} in {ro:?}");
        }
        // Hidden only: on 252 the same path read-only would win.
        assert!(!ro.iter().any(|p| p.contains("state")), "{ro:?}");
        assert_eq!(
            get(&props, "ReadWritePaths"),
            Some(&Prop::Strs(vec!["-/home/u/ws".into()]))
        );
        assert_eq!(get(&props, "PrivatePIDs"), None, "unknown before 257");
        // The policy's devices = true keeps the machine's /dev.
        let c = Confinement {
            devices: true,
            ..confinement()
        };
        let props = properties(&c, Path::new("/s"), Path::new("/p"), false);
        assert_eq!(get(&props, "PrivateDevices"), None);
        // An index kept in the runtime directory is hidden with it; the
        // policy there stays visible, read-only.
        let props = properties(
            &confinement(),
            Path::new("/run/user/1000/wayland-0/state"),
            Path::new("/run/user/1000/systemd/policy.toml"),
            false,
        );
        let Some(Prop::Strs(hidden)) = get(&props, "InaccessiblePaths") else {
            panic!()
        };
        for (p, is) in [
            ("-/run/user/1000/wayland-0", true),
            ("-/run/user/1000/wayland-0/state", true),
            ("-/run/user/1000/systemd", false),
        ] {
            assert_eq!(hidden.contains(&p.to_string()), is, "{p}: {hidden:?}");
        }
        let mut newer = confinement();
        newer.private_pids = true;
        newer.writable.clear();
        let props = properties(&newer, Path::new("/s"), Path::new("/p"), true);
        assert_eq!(get(&props, "PrivatePIDs"), Some(&Prop::Bool(true)));
        assert_eq!(get(&props, "ReadWritePaths"), None);
        let Some(Prop::Strs(hidden)) = get(&props, "InaccessiblePaths") else {
            panic!("nothing hidden")
        };
        for p in ["private", "transient", "units"] {
            assert!(
                hidden.contains(&format!("-/run/user/1000/systemd/{p}")),
                "{p}: {hidden:?}"
            );
        }
        for p in ["-/run/user/1000/systemd", "-/run/user/1000/systemd/notify"] {
            assert!(!hidden.contains(&p.to_string()), "{p}: {hidden:?}");
        }
    }

    #[test]
    fn the_exit_hook_is_privileged_and_its_drop_in_reads_back_verbatim() {
        let argv: Vec<String> = [
            "refine-proc",
            "--state-dir",
            "/s p/a\"b\\c%d$$e",
            "record-exit",
            "x1",
        ]
        .map(String::from)
        .to_vec();
        let (ex, drop_in) = exit_hook("/usr/bin/refine-proc", &argv, &["ignore-failure".into()]);
        assert_eq!(
            ex,
            Prop::ExecEx(vec![(
                "/usr/bin/refine-proc".into(),
                argv.clone(),
                vec!["privileged".into(), "ignore-failure".into()]
            )])
        );
        let Prop::DropIn { file, text } = drop_in else {
            panic!()
        };
        assert_eq!(file, HOOK_DROP_IN);
        assert!(text.contains("\nExecStopPost=\nExecStopPost=+-\"/usr/bin/refine-proc\" \"--state-dir\" \"/s p/a\\\"b\\\\c%%d$$e\" \"record-exit\" \"x1\"\n"), "{text}");
        assert_eq!(unit_file_word("a\nb\u{1}"), "\"a\\nb\\x01\"");
    }

    #[test]
    fn doctor_says_what_keeps_user_namespaces_away_and_the_fix() {
        assert_eq!(userns_problem(Some(15000), None, None), None);
        assert_eq!(userns_problem(Some(15000), Some(1), Some(0)), None);
        let (why, fix) = userns_problem(Some(15000), None, Some(1)).unwrap();
        assert!(why.contains("AppArmor"), "{why}");
        assert!(
            fix.contains("apparmor_restrict_unprivileged_userns=0") && fix.contains("userns,"),
            "{fix}"
        );
        assert!(userns_problem(Some(0), None, None)
            .unwrap()
            .1
            .contains("max_user_namespaces"));
        assert!(userns_problem(None, Some(0), None)
            .unwrap()
            .1
            .contains("unprivileged_userns_clone=1"));
        assert_eq!(ptrace_problem(Some(1)), None);
        assert!(ptrace_problem(Some(0))
            .unwrap()
            .1
            .contains("ptrace_scope=1"));
        assert!(ptrace_problem(None).is_some());
    }

    #[test]
    fn writable_paths_stay_beside_what_a_login_runs() {
        for ok in ["~/ws", "~/src/project", "/srv/build", "~/.config/myapp"] {
            assert!(check_writable(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("~", "home directory"),
            ("~/", "home directory"),
            ("~/.config", "~/.config"),
            ("~/.local", "~/.local"),
            ("~/.local/share", "~/.local/share"),
            ("ws", "absolute"),
            ("~/ws/../..", ".."),
            ("/", "root"),
        ] {
            let e = check_writable(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let home = Path::new("/home/u");
        assert_eq!(
            resolve_writable("~/ws", home).unwrap(),
            PathBuf::from("/home/u/ws")
        );
        // Absolute paths are checked against the real home at launch.
        for bad in ["/home/u", "/home", "/home/u/.config/"] {
            let e = resolve_writable(bad, home).unwrap_err();
            assert!(e.message.contains("would make"), "{bad}: {e}");
        }
    }
}
