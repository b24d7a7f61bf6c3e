//! Unit properties built by pure functions from a checked launch: identity,
//! execution, restart, confinement and limits.

use crate::model::{LimitChange, LimitValue, Owner};
use crate::text::escape;
use crate::unitexec;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::*;

/// One D-Bus property value, as data (converted to a zvariant at the edge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    Str(String),
    U64(u64),
    Strs(Vec<String>),
    U32(u32),
    /// `au`, e.g. a scope's PIDs.
    U32s(Vec<u32>),
    /// `ExecStart`-style a(sasb): path, argv, ignore-failure.
    Exec(Vec<(String, Vec<String>, bool)>),
    Bool(bool),
    /// `ExecStartEx`-style a(sasas): path, argv, flags ("privileged", ...).
    ExecEx(Vec<(String, Vec<String>, Vec<String>)>),
    /// Not a D-Bus property: a drop-in file written beside the transient
    /// unit before it is started (see [`crate::confine::exit_hook`]).
    DropIn {
        file: String,
        text: String,
    },
}

/// `notify` for `--ready notify` (the start completes at READY=1), else
/// `exec` (the start completes once the program is executed).
fn unit_type(launch: &Launch) -> &'static str {
    match &launch.ready {
        Some(r) if r.on == crate::model::Readiness::Notify => "notify",
        _ => "exec",
    }
}

/// How systemd restarts the process. With growing delays, systemd 254's
/// RestartSteps= does it; where the daemon does it instead, systemd does
/// not restart at all (the daemon starts it again).
pub(super) fn restart_properties(launch: &Launch) -> Vec<(&'static str, Prop)> {
    use crate::model::RestartBy;
    let t = &launch.restart_timing;
    let usec = |s: u64| Prop::U64(s.saturating_mul(1_000_000));
    let mut props = Vec::new();
    // Timing without a restart policy is the daemon's, for its restarts
    // on unhealthy: systemd restarts nothing (and 252 has no RestartSteps=).
    if launch.restart_by == RestartBy::Daemon || launch.restart == RestartPolicy::No {
        props.push(("Restart", Prop::Str("no".into())));
    } else {
        props.push(("Restart", Prop::Str(launch.restart.as_str().into())));
        if let Some(d) = t.delay_sec {
            props.push(("RestartUSec", usec(d)));
        }
        if let (Some(max), Some(d)) = (t.max_delay_sec, t.delay_sec) {
            props.push(("RestartSteps", Prop::U32(restart_steps(d, max))));
            props.push(("RestartMaxDelayUSec", usec(max)));
        }
    }
    if let Some(b) = t.limit_burst {
        props.push(("StartLimitBurst", Prop::U32(b)));
    }
    if let Some(i) = t.limit_interval_sec {
        props.push(("StartLimitIntervalUSec", usec(i)));
    }
    props
}

/// How many doublings take `delay` to `max` (RestartSteps=, at least 1).
pub fn restart_steps(delay: u64, max: u64) -> u32 {
    let mut steps = 0;
    let mut d = delay.max(1);
    while d < max && steps < 64 {
        d = d.saturating_mul(2);
        steps += 1;
    }
    steps.max(1)
}

/// The delay before the daemon's `n`th consecutive restart (0-based):
/// `delay` doubling up to `max`.
pub fn backoff_delay(delay: u64, max: u64, n: u32) -> u64 {
    delay
        .saturating_mul(1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX))
        .min(max.max(delay))
}

/// `ExecStart=`: refine-proc's `exec-unit`, which executes the command
/// it decodes in its own process. The process finds refine-proc on PATH
/// unless `--env PATH=` says otherwise.
fn exec_start(id: &str, launch: &Launch, hook: &UnitContext) -> (String, Vec<String>, bool) {
    // With `--pty` the holder (this binary's `pty-hold`) runs in front of
    // the program, encoded the same way: its argv survives a reload too.
    let (executable, argv) = match &launch.pty {
        None => (
            launch.executable.clone().into_os_string(),
            launch.command.iter().map(Into::into).collect(),
        ),
        Some(pty) => (
            hook.program.clone().into_os_string(),
            pty.hold_argv(
                id,
                &launch.executable,
                &launch.command,
                hook.confinement.is_some(),
            )
            .into_iter()
            .map(Into::into)
            .collect(),
        ),
    };
    let command = unitexec::UnitCommand {
        executable,
        argv,
        add_own_dir_to_path: !launch.environment.contains_key("PATH"),
    };
    let mut argv = vec!["refine-proc".to_string(), unitexec::EXEC_UNIT.to_string()];
    argv.extend(command.encode());
    (hook.program.display().to_string(), argv, false)
}

/// What the controller gives every unit it starts: the exit hook, and the
/// index and policy that the unit's own requests go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitContext {
    /// Absolute path of the refine-proc binary systemd runs to start the
    /// command (`exec-unit`) and after each exit (`record-exit`).
    pub program: PathBuf,
    /// The index directory, passed explicitly so the hook never guesses.
    pub state_dir: PathBuf,
    /// The policy that governed this launch; it governs the unit's own
    /// requests too (read from the unit, which the process cannot change).
    pub policy: PathBuf,
    /// Who asked for the run, kept in the unit so that a record rebuilt
    /// from systemd says so too.
    pub requested_by: crate::provenance::RequestedBy,
    /// The sandbox of a confined launch (see [`crate::confine`]).
    pub confinement: Option<crate::confine::Confinement>,
}

/// systemd's Description: owner and label on one safe line; what
/// `systemctl --user list-units` shows next to the unit.
pub fn description(owner: Owner, label: &str) -> String {
    let label = crate::text::truncate(&escape(label), MAX_DESCRIPTION);
    format!("{label} (refine-proc {owner})")
}

/// All properties of the transient service for `launch`, in layers as
/// systemd-run builds them: identity, execution, exit hook, limits.
pub fn service_properties(
    id: &str,
    launch: &Launch,
    hook: &UnitContext,
) -> Vec<(&'static str, Prop)> {
    let unit = crate::model::unit_name(launch.owner, id);
    let ident = unit.trim_end_matches(".service").to_string();
    let mut env = refine_environment(id, launch, hook);
    env.extend(launch.environment.iter().map(|(k, v)| format!("{k}={v}")));
    let mut props = vec![
        (
            "Description",
            Prop::Str(description(launch.owner, &launch.label)),
        ),
        ("Slice", Prop::Str(launch.owner.slice())),
        // exec: a command that cannot be executed fails the start job.
        ("Type", Prop::Str(unit_type(launch).into())),
        // Unload failed units too; the exit hook has recorded the outcome.
        ("CollectMode", Prop::Str("inactive-or-failed".into())),
        // A unique identifier carried in the stream header: journald then
        // attributes every line, even from a process that exits at once.
        ("SyslogIdentifier", Prop::Str(ident)),
        (
            "WorkingDirectory",
            Prop::Str(launch.cwd.display().to_string()),
        ),
        ("Environment", Prop::Strs(env)),
        // The command and the index directory reach systemd only as hex,
        // which its unit-file quoting leaves alone: a daemon-reload reads
        // other text back changed (`;` as `\;`, `$$` as `\$\$`), and every
        // later start would run another command (see crate::unitexec).
        ("ExecStart", Prop::Exec(vec![exec_start(id, launch, hook)])),
        (
            "ExecStopPost",
            Prop::Exec(vec![(
                hook.program.display().to_string(),
                vec![
                    "refine-proc".into(),
                    "record-exit".into(),
                    unitexec::INDEX_HEX.into(),
                    unitexec::hex(hook.state_dir.as_os_str().as_bytes()),
                    id.into(),
                ],
                // ignore-failure
                true,
            )]),
        ),
    ];
    props.extend(restart_properties(launch));
    if let Some(c) = &hook.confinement {
        confine_properties(&mut props, c, id, launch, hook);
    }
    if let Some(ready) = &launch.ready {
        if ready.on == crate::model::Readiness::Notify {
            // Any of its processes may say READY=1: scripts call
            // systemd-notify, a child of the main process.
            props.push(("NotifyAccess", Prop::Str("all".into())));
            if let Some(t) = ready.timeout_sec {
                props.push(("TimeoutStartUSec", Prop::U64(t.saturating_mul(1_000_000))));
            }
        }
    }
    let l = &launch.limits;
    if let Some(v) = l.memory_max {
        props.push(("MemoryMax", Prop::U64(v)));
    }
    if let Some(p) = l.cpu_quota_percent {
        props.push(("CPUQuotaPerSecUSec", Prop::U64(p * 10_000)));
    }
    if let Some(v) = l.tasks_max {
        props.push(("TasksMax", Prop::U64(v)));
    }
    if let Some(s) = l.runtime_max_sec {
        props.push(("RuntimeMaxUSec", Prop::U64(s.saturating_mul(1_000_000))));
    }
    if let Some(v) = l.memory_high {
        props.push(("MemoryHigh", Prop::U64(v)));
    }
    if let Some(v) = l.cpu_weight {
        props.push(("CPUWeight", Prop::U64(v)));
    }
    if let Some(s) = l.timeout_stop_sec {
        props.push(("TimeoutStopUSec", Prop::U64(s.saturating_mul(1_000_000))));
    }
    props
}

/// Confines a unit: the sandbox, and its exit hook made privileged (the
/// hook's arguments stay as built above; only how it runs changes).
fn confine_properties(
    props: &mut Vec<(&'static str, Prop)>,
    c: &crate::confine::Confinement,
    id: &str,
    launch: &Launch,
    hook: &UnitContext,
) {
    // The hook as built above, in either form systemd takes it.
    let hooks: Vec<(String, Vec<String>, Vec<String>)> = match props
        .iter()
        .position(|(k, _)| *k == "ExecStopPost" || *k == "ExecStopPostEx")
        .map(|i| props.remove(i).1)
    {
        Some(Prop::Exec(cmds)) => cmds
            .into_iter()
            .map(|(path, argv, ignore)| {
                let flags = if ignore {
                    vec!["ignore-failure".to_string()]
                } else {
                    vec![]
                };
                (path, argv, flags)
            })
            .collect(),
        Some(Prop::ExecEx(cmds)) => cmds,
        _ => Vec::new(),
    };
    for (path, argv, flags) in hooks {
        let (ex, drop_in) = crate::confine::exit_hook(&path, &argv, &flags);
        props.push(("ExecStopPostEx", ex));
        props.push(("DropIn", drop_in));
    }
    // The index is hidden inside: its refine-proc finds the daemon here.
    if let Some(entry) = crate::confine::environment(&hook.state_dir) {
        if let Some((_, Prop::Strs(env))) = props.iter_mut().find(|(k, _)| *k == "Environment") {
            env.push(entry);
        }
    }
    let notify = launch
        .ready
        .as_ref()
        .is_some_and(|r| r.on == crate::model::Readiness::Notify);
    props.extend(crate::confine::properties(
        c,
        &hook.state_dir,
        &hook.policy,
        notify,
    ));
    if let Some(pty) = &launch.pty {
        // The session directory is out of the sandbox's reach: the socket
        // is bound outside it, before the start (see crate::pty::listen).
        props.push((
            "ExecStartPreEx",
            Prop::ExecEx(vec![(
                hook.program.display().to_string(),
                pty.listen_argv(id),
                vec!["privileged".into()],
            )]),
        ));
        // The session socket and the terminal's master.
        props.push(("FileDescriptorStoreMax", Prop::U32(2)));
        if !notify {
            // FDSTORE=1 comes from the ExecStartPre= process.
            props.push(("NotifyAccess", Prop::Str("all".into())));
        }
    }
}

/// The properties of the transient scope that adopts `adoption`: identity
/// and the pids to move. A scope runs nothing, so it has no environment,
/// command or exit hook.
pub fn scope_properties(adoption: &Adoption) -> Vec<(&'static str, Prop)> {
    vec![
        (
            "Description",
            Prop::Str(description(adoption.owner, &adoption.label)),
        ),
        ("Slice", Prop::Str(adoption.owner.slice())),
        ("PIDs", Prop::U32s(adoption.pids())),
        // A failed scope (e.g. killed at the stop timeout) is collected too.
        ("CollectMode", Prop::Str("inactive-or-failed".into())),
    ]
}

/// The properties that make a running unit's (or a slice's) limits what
/// `change` says, for SetUnitProperties. `infinity` is u64::MAX, which
/// systemd reads as "no limit" (CPUWeight: "not set", the default).
pub fn limit_properties(change: &LimitChange) -> Vec<(&'static str, Prop)> {
    let raw = |v: LimitValue, scale: u64| match v {
        LimitValue::Value(n) => Prop::U64(n.saturating_mul(scale)),
        LimitValue::Infinity => Prop::U64(u64::MAX),
    };
    [
        ("MemoryMax", change.memory_max, 1),
        ("MemoryHigh", change.memory_high, 1),
        // 150% = 1.5 s of CPU time per second.
        ("CPUQuotaPerSecUSec", change.cpu_quota_percent, 10_000),
        ("CPUWeight", change.cpu_weight, 1),
        ("TasksMax", change.tasks_max, 1),
    ]
    .into_iter()
    .filter_map(|(name, v, scale)| v.map(|v| (name, raw(v, scale))))
    .collect()
}
