//! The command line: each command turns its flags into a [`Request`], the
//! core (in this process, or the daemon's over its API socket: see
//! `remote`) answers it, and one printer (`output::answer`) shows the
//! answer, as text or as JSON. This file is the dispatch; each command
//! (its flags and its mapping) has its own file.

mod args;
mod events;
mod help;
mod list;
mod logs;
mod output;
mod pause;
mod policy;
mod pty;
mod recover;
mod remote;
mod run;
mod set;
mod stop;
mod web;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use clap::Parser;
use refine_proc::controller::{default_state_dir, Answer, Caller, Request, Response};
use refine_proc::error::Field;
use refine_proc::{Controller, Error, ErrorKind, Owner, Result};

use args::{Cli, Command};

pub fn main() -> i32 {
    // A unit's ExecStart=: executes its command in this process, before
    // anything else is set up (see refine_proc::unitexec).
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(2).collect();
    if args
        .get(1)
        .is_some_and(|a| a == refine_proc::unitexec::EXEC_UNIT)
    {
        let chunks: Vec<String> = std::env::args_os()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return refine_proc::unitexec::exec_unit(&chunks);
    }
    let cli = Cli::parse();
    // The daemon's log goes to the journal: what it does, not only warnings.
    init_tracing(if matches!(cli.command, Command::Daemon(_)) {
        "info"
    } else {
        "warn"
    });
    // Generated from the definition above; need no index or bus.
    match &cli.command {
        Command::Completions { shell } => return exit_of(help::completions(*shell)),
        Command::Man { dir } => return exit_of(help::man(dir.as_deref())),
        _ => {}
    }
    // The holder needs no index and no bus: only its terminal and socket.
    if let Command::PtyHold(args) = cli.command {
        return pty::hold(args);
    }
    if let Command::PtyListen { socket } = &cli.command {
        return exit_of(refine_proc::pty::listen::listen_into_store(socket));
    }
    let hook_dir = match &cli.command {
        Command::RecordExit {
            index_hex: Some(hex),
            ..
        } => match refine_proc::unitexec::unhex(hex) {
            Some(dir) => Some(PathBuf::from(std::ffi::OsString::from_vec(dir))),
            None => return fail(&Error::invalid("--index-hex is not hex")),
        },
        _ => None,
    };
    let state_dir = hook_dir
        .or_else(|| cli.state_dir.clone())
        .map(Ok)
        .unwrap_or_else(default_state_dir);
    // doctor reports a missing state directory as one of its checks.
    if let Command::Web(args) = &cli.command {
        return web::web(args).unwrap_or_else(|e| fail(&e));
    }
    if let Command::Doctor { json } = cli.command {
        return doctor(state_dir.as_deref(), json);
    }
    let state_dir = match state_dir {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    // The exit hook runs under systemd after every exit: no bus, no runtime.
    if let Command::RecordExit { id, .. } = &cli.command {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        return match Controller::open(&state_dir).and_then(|c| c.record_exit(id, &env)) {
            Ok(_) => 0,
            Err(e) => fail(&e),
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(dispatch(cli.command, state_dir)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// doctor inspects the index without opening (creating) it, so it is
/// answered here rather than by a controller's `handle` (which needs an
/// open index), and printed as every answer is.
fn doctor(state_dir: Result<&Path, &Error>, json: bool) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(refine_proc::doctor::run(state_dir));
    let code = report.exit_code();
    let answer = Answer::from(Response::Doctor(Box::new(report)));
    match output::answer(&answer, json, output::View::Plain) {
        Ok(()) => code,
        Err(e) => fail(&e),
    }
}

fn exit_of(r: Result<()>) -> i32 {
    r.map_or_else(|e| fail(&e), |_| 0)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REFINE_PROC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

/// Prints the error as the CLI words it (its input named as a flag) and
/// returns its exit code.
fn fail(e: &Error) -> i32 {
    let mut e = e.clone().worded(Field::flag);
    // No login can bring a user manager where PID 1 is not systemd: say
    // so in the hint, and where the way forward is.
    if e.kind == ErrorKind::Unavailable
        && std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() != "systemd")
    {
        let hint = e.hint.take().map(|h| format!("{h}; ")).unwrap_or_default();
        e.hint = Some(format!(
            "{hint}but PID 1 is not systemd here (a container or CI?): refine-proc doctor says \
             what works; to try refine-proc anyway, see the README's \"Trying it without a user session\""
        ));
    }
    eprintln!("refine-proc: {e}");
    e.exit_code()
}

/// How to get a daemon, for the warnings that there is none.
pub(crate) const DAEMON_FIX: &str = "start one: systemctl --user enable --now refine-proc.service (see refine-proc doctor), or refine-proc daemon in a terminal";

/// The pid of the daemon of the index in `dir`, if one runs: the pid its
/// lock file names, alive and running `refine-proc ... daemon`. Read
/// only: taking the lock, even shared, could make a starting daemon
/// believe another one runs.
fn daemon_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("daemon.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.first().is_some_and(|a| a.ends_with(b"refine-proc"))
        && args.iter().any(|a| *a == b"daemon");
    ours.then_some(pid)
}

/// Where a command's requests go: the core in this process, or the
/// daemon's over its API socket (a confined caller; see `remote`).
pub(crate) enum Core {
    Local(Box<Controller>),
    Socket(PathBuf),
}

impl Core {
    /// Carries out one request.
    pub async fn handle(&self, request: Request) -> Result<Answer> {
        match self {
            Core::Local(controller) => controller.handle(request).await,
            Core::Socket(socket) => remote::handle(socket, request).await,
        }
    }

    /// The controller in this process, for what is no single answer (a
    /// live stream, a terminal, the daemon itself).
    pub fn local(&self, what: &str) -> Result<&Controller> {
        match self {
            Core::Local(controller) => Ok(controller),
            Core::Socket(_) => Err(Error::invalid(format!(
                "{what} is not available through the daemon's API socket"
            ))
            .hint("run it outside the sandbox")),
        }
    }

    /// Whether nothing probes health checks: no daemon runs for this
    /// index (through the socket, the daemon answers, so one does).
    pub fn unprobed(&self) -> bool {
        matches!(self, Core::Local(c) if daemon_pid(c.index().dir()).is_none())
    }
}

/// Runs one command; returns the process exit code.
async fn dispatch(command: Command, state_dir: PathBuf) -> Result<i32> {
    if let Command::Mcp { actor } = &command {
        return mcp(actor.as_deref(), &state_dir).await;
    }
    // Before the index is opened: a confined caller may not write it.
    let core = match remote::socket_for(&state_dir) {
        Some(socket) => Core::Socket(socket),
        None => Core::Local(Box::new(
            Controller::open(&state_dir).map_err(refine_proc::confine::index_out_of_reach)?,
        )),
    };
    match command {
        Command::Run(args) => run::run(&core, *args).await,
        Command::Adopt(args) => run::adopt(&core, *args).await,
        Command::List(args) => list::list(&core, args).await,
        Command::Status(args) => list::status(&core, args).await,
        Command::Set(args) => set::set(&core, args).await,
        Command::Logs(args) => logs::logs(&core, args).await,
        Command::Stop(args) => stop::stop(&core, args).await,
        Command::Kill(args) => stop::kill(&core, args).await,
        Command::Restart(args) => stop::restart(&core, args).await,
        Command::Forget(args) => stop::forget(&core, args).await,
        Command::Events(args) => events::events(&core, args).await,
        Command::Pause(args) => pause::pause(&core, args).await,
        Command::Resume(args) => pause::resume(&core, args).await,
        Command::Policy { command } => policy::policy(&core, command).await,
        Command::Resurrect { json } => recover::resurrect(&core, json).await,
        Command::Recover { json } => recover::recover(&core, json).await,
        Command::Daemon(a) => refine_proc::daemon::run(core.local("daemon")?, a.options())
            .await
            .map(|()| 0),
        Command::Attach(args) => pty::attach(core.local("attach")?, args).await,
        Command::Send(args) => pty::send(&core, args).await,
        Command::Screen(args) => pty::screen(&core, args).await,
        Command::RecordExit { .. }
        | Command::PtyHold(_)
        | Command::PtyListen { .. }
        | Command::Doctor { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Web(_)
        | Command::Mcp { .. } => unreachable!("handled before the index is opened"),
    }
}

/// `mcp [--actor OWNER]`: the owner is checked before the index is opened.
async fn mcp(actor: Option<&str>, state_dir: &Path) -> Result<i32> {
    let lower_to = actor
        .map(|a| {
            a.parse::<Owner>().map_err(|mut e| {
                e.message = format!("--actor: {}", e.message);
                e
            })
        })
        .transpose()?;
    // Confined (no bus, the index hidden): through the daemon, which
    // knows the caller from the socket.
    if let Some(socket) = remote::socket_for(state_dir) {
        let managed = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| refine_proc::provenance::managed_unit_in_cgroup(&t));
        if lower_to.is_some() && managed.is_none() {
            // The daemon would see a person: --actor would be lost.
            return Err(Error::invalid("--actor cannot go through the daemon's socket")
                .hint("run mcp --actor where the user bus is reachable, or with REFINE_PROC_API=local"));
        }
        refine_proc::mcp::proxy_stdio(&socket).await?;
        return Ok(0);
    }
    let mut controller =
        Controller::open(state_dir).map_err(refine_proc::confine::index_out_of_reach)?;
    if let Some(owner) = lower_to {
        // A managed caller ignores this: its own policy binds it.
        controller = controller.on_behalf_of(Caller::this_process().lowered_to(owner));
    }
    refine_proc::mcp::serve_stdio(controller).await?;
    Ok(0)
}
