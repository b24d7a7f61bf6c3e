//! Command-line flags and the mapping of each command to one library call.
//! Rendering lives in `output`; no logic about processes lives here.

mod logs;
mod output;
mod pty;
mod remote;
mod web;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use refine_proc::controller::{
    default_state_dir, ActionOutcome, Caller, ListFilter, Listed, Request, Response, RunOptions,
    Status,
};
use refine_proc::health::{HealthCheck, HealthSpec, OnUnhealthy};
use refine_proc::journal::{self, LogQuery, TEXT_FORMATS};
use refine_proc::model::{LimitChange, Limits, Metadata, UnitKind};
use refine_proc::text::{
    parse_cpu_quota, parse_cpu_weight, parse_limit, parse_seconds, parse_signal, parse_size,
    parse_tasks, split_assignment,
};
use refine_proc::{AdoptSpec, Controller, Error, ErrorKind, Owner, Record, Result, RunSpec, State};

const ABOUT: &str = "Run and watch processes as transient systemd user services, \
with owners, workflow metadata and a durable record of every run.";

const EXAMPLES: &str = "\
Examples:
  refine-proc run --owner agent --label 'docs build' -- make docs
  refine-proc adopt 4242                # manage a process that already runs
  refine-proc list                      # what is running
  refine-proc status k3x9p2qa           # everything about one process
  refine-proc logs -f k3x9p2qa          # follow its output
  refine-proc stop k3x9p2qa
  refine-proc pause --all               # agents frozen, background work stopped
  refine-proc events -f                 # what happens, as it happens
  refine-proc doctor                    # what this machine gives refine-proc

Exit codes: 0 ok, 1 systemd failed, 2 bad input, 3 no such process,
4 refused (not ours, or not allowed in its state), 5 no user manager,
6 index unreadable or unwritable, 7 refused by policy.
`run --wait` exits with the process's code.";

#[derive(Parser, Debug)]
#[command(name = "refine-proc", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    /// Directory of the index [default: $REFINE_PROC_STATE_DIR, else
    /// $XDG_STATE_HOME/refine-proc, else ~/.local/state/refine-proc]
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a command as a transient user service and return once it runs
    #[command(after_help = "\
Examples:
  refine-proc run -- sleep 600
  refine-proc run --owner agent --workflow wf-42 --label 'fix gap 7' -- ./agent.sh --fast
  refine-proc run --memory-max 2G --cpu-quota 150% --runtime-max 1h -- cargo test
  refine-proc run --memory-high 1G --cpu-weight 50 --timeout-stop 10s -- ./server
  refine-proc run --wait -- make check    # block, exit with make's code
  refine-proc run --json -- npm run dev   # the record as JSON
  refine-proc run --health-http http://127.0.0.1:8080/health --on-unhealthy restart -- ./server
  refine-proc run --health-cmd 'pg_isready -q' --health-interval 30s --health-retries 5 -- postgres
  refine-proc run --health-tcp localhost:6379 --health-start-period 1min -- redis-server

The command runs with argv exactly as given ($VAR is not expanded), in the
current directory unless --cwd is given, with REFINE_ID, REFINE_OWNER,
REFINE_WORKFLOW, ... in its environment.

A health check (--health-cmd, --health-http or --health-tcp, one of them)
is kept in the record; the refine-proc daemon probes the process while it
runs (not while paused) and `status` and `list` show starting, healthy or
unhealthy. --health-timeout defaults to 5s or the interval if shorter.")]
    Run(Box<RunArgs>),
    /// Adopt a running process (and its descendants) into a transient scope
    #[command(after_help = "\
Examples:
  refine-proc adopt 4242
  refine-proc adopt --owner agent --workflow wf-42 --label 'dev server' 4242
  refine-proc adopt --no-children --json \"$(pgrep -n vite)\"

The process must be yours and run inside the user manager's cgroup
subtree (e.g. started from a terminal of the desktop session); from an SSH
session, start it with refine-proc run instead. Its descendants move along,
found by one scan of /proc: a child forked after that scan stays where it
is. Its output stays where it goes now (e.g. your terminal). A scope has
no exit status: when its processes are gone it is `ended` (`stopped` if
ended by refine-proc stop or kill). It cannot be restarted.")]
    Adopt(Box<AdoptArgs>),
    /// List managed processes (running ones; --all adds ended ones)
    #[command(after_help = "\
Examples:
  refine-proc list
  refine-proc list --all --owner agent
  refine-proc list --workflow wf-42 --json
  refine-proc list --all --state failed")]
    List(ListArgs),
    /// Show everything known about one process
    #[command(after_help = "\
Examples:
  refine-proc status k3x9p2qa
  refine-proc status refine-agent-k3x9p2qa.service --json")]
    Status(IdArg),
    /// Show the output of a process, or of all processes of an owner or workflow
    #[command(after_help = "\
Examples:
  refine-proc logs k3x9p2qa
  refine-proc logs -f -n 50 k3x9p2qa          # returns when it ends, with its exit code
  refine-proc logs --owner agent --since -1h
  refine-proc logs --workflow wf-42 --since '2026-11-20 10:00' --until '10min ago'
  refine-proc logs --workflow wf-42 --json    # JSON Lines

TIME is -1h, -30min, '10s ago', now, today, yesterday, '2026-11-20 10:00',
10:00 or @EPOCH (a bare 10s is refused: write -10s or '10s ago').

`logs -f ID` ends once the process has ended: it prints the last lines,
then how the process ended on stderr, and exits with the process's code
(128+N for signal N), as `run --wait` does. With --owner or --workflow it
follows until Ctrl-C, and on a terminal each line starts with the process
that wrote it (ID LABEL |; --prefix in a pipe too, --no-prefix never).")]
    Logs(LogsArgs),
    /// Stop processes and wait until they have ended
    #[command(after_help = "\
Examples:
  refine-proc stop k3x9p2qa
  refine-proc stop k3x9p2qa m4n5p6q7
  refine-proc stop --tree k3x9p2qa        # and every process it launched
  refine-proc stop --workflow wf-42
  refine-proc stop --all")]
    Stop(StopArgs),
    /// Send a signal to all processes of one managed process
    #[command(after_help = "\
Examples:
  refine-proc kill k3x9p2qa              # SIGTERM
  refine-proc kill --signal KILL k3x9p2qa
  refine-proc kill --signal USR1 k3x9p2qa")]
    Kill(KillArgs),
    /// Change the limits of a running process, or of all of an owner's processes
    #[command(after_help = "\
Examples:
  refine-proc set k3x9p2qa --memory-max 4G --cpu-weight 200
  refine-proc set k3x9p2qa --memory-max infinity    # remove the limit
  refine-proc set --owner agent --memory-max 8G --cpu-quota 400%

With ID the limits apply to that process's unit; with --owner to the
owner's slice (refine-agent.slice), which bounds all of its processes
together, whether or not one runs now. Limits set here last as long as the
user manager runs; the record keeps them, and `restart` of an ended process
starts it with them. Every value is checked before anything changes.")]
    Set(SetArgs),
    /// Freeze processes (cgroup freezer): by id, or every running one of an owner, workflow or session
    #[command(after_help = "\
Examples:
  refine-proc pause k3x9p2qa
  refine-proc pause --owner agent          # every running agent
  refine-proc pause --workflow wf-42
  refine-proc pause --all                  # as the pause policy says, below
  refine-proc pause --list                 # the group pauses in force

A paused process keeps its memory and state but gets no CPU time; stop and
kill still work on it (a signal other than KILL waits until it is resumed).
`resume` undoes exactly what a pause did.

A group pause (--owner, --workflow, --session, --all) stays in force until
its resume, across invocations: `run` for a process it holds is refused, or
with `run --queue` recorded as queued and started on resume.

`pause --all` follows the [pause_all] table of the policy file (see
`refine-proc policy show`). By default agents are frozen; import,
maintenance and quality work is stopped and started again on resume; the
daemon, target apps and user helpers keep running.")]
    Pause(PauseArgs),
    /// Thaw what pause froze (a group's resume leaves processes paused on their own)
    #[command(after_help = "\
Examples:
  refine-proc resume k3x9p2qa
  refine-proc resume --owner agent         # only what `pause --owner agent` froze
  refine-proc resume --all                 # thaws, restarts what pause --all stopped,
                                           # and starts the queued runs")]
    Resume(PauseArgs),
    /// Restart a running process, or start an ended one again with the same command
    #[command(after_help = "Example:\n  refine-proc restart k3x9p2qa")]
    Restart(IdArg),
    /// Drop the record of an ended process (refuses a running one)
    #[command(after_help = "Example:\n  refine-proc forget k3x9p2qa")]
    Forget(IdArg),
    /// Show the policy that bounds what processes may do, or check a request against it
    #[command(after_help = "\
Examples:
  refine-proc policy show
  refine-proc policy check --as agent
  refine-proc policy check --as agent --owner daemon -- /usr/bin/make
  refine-proc policy check --as agent --memory-max 16G -- ./build.sh

The policy lives in $REFINE_PROC_POLICY, else $XDG_CONFIG_HOME/refine-proc/policy.toml,
else ~/.config/refine-proc/policy.toml (see the README for its format).")]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Supervise: restarts with growing delays, health checks, live events (a user service)
    #[command(after_help = "\
Examples:
  systemctl --user enable --now refine-proc.service   # as installed by the packages
  refine-proc daemon                                  # in the foreground, for a try

The CLI works without the daemon. The daemon adds what needs a watcher:
restarts whose delay grows (--restart-max-delay) on systemd before 254, and
events for systemd's own automatic restarts. It reconciles the index with
systemd, then tells systemd READY=1 (Type=notify), keeps a STATUS= line
with counts and sends watchdog heartbeats when WatchdogSec= is set. One
daemon per index: a second one exits with code 4.

It serves the HTTP API on a Unix socket ($XDG_RUNTIME_DIR/refine-proc/api.sock),
and with --listen also on loopback TCP with the browser page (see refine-proc web).")]
    Daemon(web::DaemonArgs),
    /// Print (or open) the browser page's URL with a one-time code; or make a token for scripts
    #[command(after_help = "\
Examples:
  refine-proc web                  # http://127.0.0.1:8765/#CODE: open it within two minutes
  refine-proc web --open
  refine-proc web --token read     # a token for scripts: curl -H 'Authorization: Bearer TOKEN'

Needs a daemon started with --listen 127.0.0.1:PORT. The code works once and
becomes a session cookie (HttpOnly, SameSite=Strict); with it the page acts
as you (`person`), under your policy.")]
    Web(web::WebArgs),
    /// Serve the Model Context Protocol on stdio: these commands as tools for an AI agent
    #[command(after_help = "\
Examples:
  refine-proc mcp                  # what an agent harness starts (see the README's MCP server)
  refine-proc mcp --actor agent    # every tool call bound by the agent owner's policy

Tools: list, status, run, stop, kill, restart, pause, resume, logs, wait,
events, policy_check; results are the JSON of the matching --json output.
The caller is established as for the CLI: started inside a managed unit,
the server is that managed process, bound by its policy, and --actor is
ignored (it can only lower a person's power, never raise it). Logging goes
to stderr; stdout carries only the protocol.")]
    Mcp {
        /// Act as this bounded owner (agent, quality, ...) instead of as yourself (person)
        #[arg(long, value_name = "OWNER")]
        actor: Option<String>,
    },
    /// Start again the `run --persist` processes the user manager took down with it
    #[command(after_help = "\
Examples:
  refine-proc resurrect            # after a reboot or a crash of the user manager
  refine-proc resurrect --json

Each persisted process that was running when the user manager went away
(its record is `lost`, or `stopped` by the manager on its way out) is
started again as a new record linked to the old one (resurrected_from /
resurrected_as). A process ended with refine-proc stop, or that ended by
itself, stays ended; one a pause holds is queued. Running it twice starts
nothing twice. To run it at every login:
  systemctl --user enable refine-proc-resurrect.service")]
    Resurrect {
        /// Print what was started again as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the history (started, exited, failed, stopped, killed, restarted, paused, resumed, queued, adopted, lost, limits-changed, forgotten, refused), or follow it live
    #[command(after_help = "\
Examples:
  refine-proc events                      # the whole history, oldest first
  refine-proc events -n 20 --owner agent
  refine-proc events --since -1h
  refine-proc events --id k3x9p2qa --json  # JSON Lines
  refine-proc events -f -n 0 --json        # only what happens from now on

With --follow, starts, ends and systemd's own restarts are reported as
systemd signals them over D-Bus (also when done with systemctl); the rest
(pauses and resumes, which systemd 252 does not signal, refusals, kills,
limit changes, queued runs, health) as refine-proc records them. Nothing
is polled. --since takes the times of `logs --since`.")]
    Events(EventsArgs),
    /// Rebuild lost records (index deleted or unreadable) from systemd and the journal
    #[command(after_help = "\
Examples:
  refine-proc recover                 # after the index was deleted or damaged
  refine-proc recover --json
  refine-proc --state-dir ~/other-index recover

Running processes of this index (their unit's environment names it) get
their records back from systemd: unit, command, environment, state, with
what the journal adds (details, metadata, limits). Ended runs come back
from the journal: refine-proc writes each start, exit and forget there.
They are closed with the exit the journal holds, else as lost. Records in
the index are never overwritten; forgotten ones stay forgotten. Prints
what was rebuilt and what could not be, and why.")]
    Recover {
        /// Print what was rebuilt and what could not be as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check what this machine and session give refine-proc, with a fix for what is missing
    #[command(after_help = "\
Examples:
  refine-proc doctor
  refine-proc doctor --json | jq '.checks[] | select(.status != \"ok\")'

Checks: the user bus, the systemd version and its features (freezer,
RestartSteps), cgroup v2, the controllers delegated to the user manager,
lingering, a persistent journal you can read, the index, and the daemon.
Each is ok, warn, fail or skip (not checked because one it needs failed).
Exit 0 unless a required check fails (user bus, systemd version, cgroup v2,
index); then the code other commands give for that problem: 5 no user
manager, 6 index, 1 systemd too old or no cgroup v2.")]
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions (for packages and dotfiles)
    #[command(
        hide = true,
        after_help = "\
Examples:
  refine-proc completions bash > /usr/share/bash-completion/completions/refine-proc
  refine-proc completions zsh > /usr/share/zsh/vendor-completions/_refine-proc
  refine-proc completions fish > ~/.config/fish/completions/refine-proc.fish
  source <(refine-proc completions bash)     # this shell only"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a directory (for packages)
    #[command(
        hide = true,
        after_help = "\
Examples:
  refine-proc man | man -l -                 # read it now
  refine-proc man --dir target/man           # refine-proc.1, refine-proc-run.1, ...
  gzip -9n target/man/*.1"
    )]
    Man {
        /// Write refine-proc.1 and a page for each command (refine-proc-run.1, ...) into DIR
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Record the exit of a unit (run by systemd as ExecStopPost)
    #[command(hide = true)]
    RecordExit {
        id: String,
        /// The index directory in hex (what the unit's ExecStopPost= passes:
        /// systemd may rewrite other text in a unit file)
        #[arg(long, hide = true, value_name = "HEX")]
        index_hex: Option<String>,
    },
    /// Use a terminal session from this terminal: its screen, then live
    #[command(after_help = "\
Examples:
  refine-proc run --pty --label repl -- python3
  refine-proc attach k3x9p2qa                  # Ctrl-\\ detaches
  refine-proc attach --read-only k3x9p2qa      # watch while another client writes
  refine-proc attach --take k3x9p2qa           # take the keyboard over
  refine-proc attach --detach-keys ctrl-p,ctrl-q k3x9p2qa")]
    Attach(pty::AttachArgs),
    /// Type into a terminal session (a newline is Enter; --key for control keys)
    #[command(after_help = "\
Examples:
  refine-proc send k3x9p2qa $'bob\\n'
  refine-proc send k3x9p2qa bob --key Enter
  refine-proc send k3x9p2qa --key C-c")]
    Send(pty::SendArgs),
    /// Print the visible screen of a terminal session
    #[command(after_help = "\
Examples:
  refine-proc screen k3x9p2qa
  refine-proc screen k3x9p2qa --json
  refine-proc screen k3x9p2qa --wait-for 'name?' --timeout 30s")]
    Screen(pty::ScreenArgs),
    /// Hold a terminal session (run by systemd as ExecStart with run --pty)
    #[command(name = "pty-hold", hide = true)]
    PtyHold(pty::HoldArgs),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Print the policy file and every actor's effective rules
    Show {
        /// Print the policy and every actor's rules as JSON
        #[arg(long)]
        json: bool,
    },
    /// Explain what an actor may do, and whether a launch would be allowed
    Check(Box<PolicyCheckArgs>),
}

#[derive(Args, Debug)]
struct PolicyCheckArgs {
    /// The actor: person, or an owner for a managed process [default: whoever runs this]
    #[arg(long = "as", value_name = "ACTOR")]
    actor: Option<String>,
    /// Owner the launch would run as [default: as for run: the actor's
    /// own owner for a managed process, else user-helper]
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Print the verdict as JSON
    #[arg(long)]
    json: bool,
    /// The command the launch would run (optional; after --)
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Who a process belongs to and why it exists: the flags `run` and
/// `adopt` share.
#[derive(Args, Debug)]
struct IdentityArgs {
    /// Who the process belongs to: daemon, target-app, agent, quality,
    /// import, maintenance or user-helper [default: the calling managed
    /// process's owner, else user-helper]
    #[arg(long)]
    owner: Option<String>,
    /// A short name for people [default: the command's or process's name]
    #[arg(long)]
    label: Option<String>,
    /// Longer free text: why this process exists
    #[arg(long)]
    details: Option<String>,
    /// The workflow it serves [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    workflow: Option<String>,
    /// The gap it works on [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    gap: Option<String>,
    /// The session it belongs to [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// The mode it runs in, free text [default: the calling managed process's]
    #[arg(long, value_name = "TEXT")]
    mode: Option<String>,
    /// What runs it (an agent runner's name), free text [default: the calling managed process's]
    #[arg(long, value_name = "TEXT")]
    runner: Option<String>,
    /// Extra metadata, repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
}

impl IdentityArgs {
    fn owner(&self) -> Result<Option<Owner>> {
        self.owner.as_deref().map(str::parse::<Owner>).transpose()
    }

    fn metadata(self) -> Result<Metadata> {
        Ok(Metadata {
            extra: meta_pairs(&self.meta)?,
            workflow: self.workflow,
            gap: self.gap,
            session: self.session,
            mode: self.mode,
            runner: self.runner,
        })
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// Working directory [default: the current directory]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Environment variable for the process, repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Restart policy: no, on-failure, always
    #[arg(long, default_value = "no", value_name = "POLICY")]
    restart: String,
    /// Delay before a restart (RestartSec=), e.g. 2s
    #[arg(long, value_name = "DURATION")]
    restart_delay: Option<String>,
    /// Let the delay double after each consecutive restart up to this
    /// (systemd 254+: RestartSteps=; older: done by refine-proc daemon)
    #[arg(long, value_name = "DURATION")]
    restart_max_delay: Option<String>,
    /// At most N starts within DURATION, then it stays failed, e.g. 5/10min
    #[arg(long, value_name = "N/DURATION")]
    restart_limit: Option<String>,
    /// When it is ready: notify (it sends READY=1 with sd_notify; until
    /// then it is `starting`), or health (its health check passes once)
    #[arg(long, value_name = "HOW")]
    ready: Option<String>,
    /// How long it may take to be ready (--ready notify: systemd's
    /// TimeoutStartSec=, after which the start fails; --ready health: how
    /// long --wait-ready probes) [default: 90s]
    #[arg(long, value_name = "DURATION", requires = "ready")]
    ready_timeout: Option<String>,
    /// Return only once it is ready (needs --ready)
    #[arg(long, requires = "ready", conflicts_with = "wait")]
    wait_ready: bool,
    /// Wait until the process ends and exit with its exit code
    #[arg(long)]
    wait: bool,
    /// If a pause holds this owner (or workflow, or session), queue the run
    /// and start it on resume instead of refusing
    #[arg(long, conflicts_with = "wait")]
    queue: bool,
    /// Start it again with `refine-proc resurrect` if the user manager goes
    /// away while it runs (logout without linger, crash, reboot)
    #[arg(long)]
    persist: bool,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    pty: pty::PtyRunArgs,
    /// Print the record as JSON
    #[arg(long)]
    json: bool,
    /// The command and its arguments (after --). An option before it that
    /// is not one of run's is an error, not the command.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The limits of `run`, and of the launch `policy check` checks: one
/// definition and one builder, so that both see the same request.
#[derive(Args, Debug)]
struct LimitArgs {
    /// Memory limit (MemoryMax=), e.g. 512M, 2G
    #[arg(long, value_name = "SIZE")]
    memory_max: Option<String>,
    /// Memory above which the process is throttled and reclaimed (MemoryHigh=), e.g. 1G
    #[arg(long, value_name = "SIZE")]
    memory_high: Option<String>,
    /// CPU limit in percent of one CPU (CPUQuota=), e.g. 50%, 200%
    #[arg(long, value_name = "PERCENT")]
    cpu_quota: Option<String>,
    /// Share of CPU time against other processes (CPUWeight=), 1 to 10000; default 100
    #[arg(long, value_name = "N")]
    cpu_weight: Option<String>,
    /// Maximum number of tasks (TasksMax=)
    #[arg(long, value_name = "N")]
    tasks_max: Option<u64>,
    /// Stop the process after this long (RuntimeMaxSec=), e.g. 30s, 2h
    #[arg(long, value_name = "DURATION")]
    runtime_max: Option<String>,
    /// How long a stop waits for the process to exit before SIGKILL (TimeoutStopSec=), e.g. 10s
    #[arg(long, value_name = "DURATION")]
    timeout_stop: Option<String>,
}

impl LimitArgs {
    /// The limits the flags give, each value checked.
    fn limits(&self) -> Result<Limits> {
        if self.tasks_max == Some(0) {
            return Err(Error::invalid("--tasks-max must be at least 1"));
        }
        Ok(Limits {
            memory_max: self.memory_max.as_deref().map(parse_size).transpose()?,
            cpu_quota_percent: self.cpu_quota.as_deref().map(parse_cpu_quota).transpose()?,
            tasks_max: self.tasks_max,
            runtime_max_sec: self.runtime_max.as_deref().map(parse_seconds).transpose()?,
            memory_high: self.memory_high.as_deref().map(parse_size).transpose()?,
            cpu_weight: self
                .cpu_weight
                .as_deref()
                .map(parse_cpu_weight)
                .transpose()?,
            timeout_stop_sec: self
                .timeout_stop
                .as_deref()
                .map(parse_seconds)
                .transpose()?,
        })
    }
}

/// The health check of `run`.
#[derive(Args, Debug)]
struct HealthArgs {
    /// Health check: a shell command (/bin/sh -c), healthy when it exits 0
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Health check: a plain HTTP GET of http://HOST[:PORT]/PATH (no TLS), healthy on status 200-399
    #[arg(long, value_name = "URL")]
    health_http: Option<String>,
    /// Health check: a TCP connection to HOST:PORT, healthy when accepted
    #[arg(long, value_name = "HOST:PORT")]
    health_tcp: Option<String>,
    /// Time between two probes [default: 10s]
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// Time one probe may take, at most the interval [default: 5s, or the interval if shorter]
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Failures in a row before the process is unhealthy [default: 3]
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Time after the start during which failures do not count, until the first success [default: 0]
    #[arg(long, value_name = "DURATION")]
    health_start_period: Option<String>,
    /// What the daemon does when the process turns unhealthy: restart, stop or none [default: none]
    #[arg(long, value_name = "ACTION")]
    on_unhealthy: Option<String>,
}

impl HealthArgs {
    /// The check the flags give, checked; None without one.
    fn spec(self) -> Result<Option<HealthSpec>> {
        let kinds = [
            ("--health-cmd", self.health_cmd.is_some()),
            ("--health-http", self.health_http.is_some()),
            ("--health-tcp", self.health_tcp.is_some()),
        ];
        let given: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
        let check = match (self.health_cmd, self.health_http, self.health_tcp) {
            _ if given.len() > 1 => {
                return Err(Error::invalid(format!(
                    "{} cannot be combined: a process has one health check",
                    given.join(" and ")
                ))
                .hint("give one of --health-cmd, --health-http or --health-tcp"))
            }
            (Some(command), _, _) => HealthCheck::Cmd { command },
            (_, Some(url), _) => HealthCheck::Http { url },
            (_, _, Some(address)) => HealthCheck::Tcp { address },
            (None, None, None) => {
                let timing = [
                    ("--health-interval", self.health_interval.is_some()),
                    ("--health-timeout", self.health_timeout.is_some()),
                    ("--health-retries", self.health_retries.is_some()),
                    ("--health-start-period", self.health_start_period.is_some()),
                    ("--on-unhealthy", self.on_unhealthy.is_some()),
                ];
                if let Some((flag, _)) = timing.iter().find(|t| t.1) {
                    return Err(Error::invalid(format!("{flag} needs a health check"))
                        .hint("add one of --health-cmd, --health-http or --health-tcp"));
                }
                return Ok(None);
            }
        };
        let mut spec = HealthSpec::new(check);
        if let Some(i) = &self.health_interval {
            spec.interval_sec = parse_seconds(i)?;
        }
        spec.timeout_sec = match &self.health_timeout {
            Some(t) => parse_seconds(t)?,
            None => spec.timeout_sec.min(spec.interval_sec),
        };
        if let Some(r) = self.health_retries {
            spec.retries = r;
        }
        if let Some(p) = &self.health_start_period {
            spec.start_period_sec = match p.trim() {
                "0" | "0s" => 0,
                p => parse_seconds(p)?,
            };
        }
        if let Some(a) = &self.on_unhealthy {
            spec.on_unhealthy = a.parse::<OnUnhealthy>()?;
        }
        spec.validate()?;
        Ok(Some(spec))
    }
}

#[derive(Args, Debug)]
struct AdoptArgs {
    /// The process to adopt
    pid: u32,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Move only PID, not its children and their descendants
    #[arg(long)]
    no_children: bool,
    /// Print the record as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SetArgs {
    /// Record id (or a unique prefix), or unit name
    #[arg(required_unless_present = "owner", conflicts_with = "owner")]
    id: Option<String>,
    /// Set the limits of this owner's slice instead of one process
    #[arg(long)]
    owner: Option<String>,
    /// Memory limit (MemoryMax=), e.g. 512M, 2G, or infinity
    #[arg(long, value_name = "SIZE")]
    memory_max: Option<String>,
    /// Memory throttling threshold (MemoryHigh=), e.g. 1G, or infinity
    #[arg(long, value_name = "SIZE")]
    memory_high: Option<String>,
    /// CPU limit in percent of one CPU (CPUQuota=), e.g. 150%, or infinity
    #[arg(long, value_name = "PERCENT")]
    cpu_quota: Option<String>,
    /// CPU weight (CPUWeight=), 1 to 10000, or infinity for systemd's default
    #[arg(long, value_name = "N")]
    cpu_weight: Option<String>,
    /// Maximum number of tasks (TasksMax=), or infinity
    #[arg(long, value_name = "N")]
    tasks_max: Option<String>,
    /// Print the record (or the owner's limits) as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Include ended processes
    #[arg(long, short)]
    all: bool,
    #[arg(long)]
    owner: Option<String>,
    #[arg(long, value_name = "ID")]
    workflow: Option<String>,
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    #[arg(long, value_name = "ID")]
    gap: Option<String>,
    /// starting, running, paused, exited, failed, stopped, lost or ended
    #[arg(long)]
    state: Option<String>,
    /// Show who started whom: children under the process that launched them
    #[arg(long)]
    tree: bool,
    /// Print an array of records as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct IdArg {
    /// Record id (or a unique prefix), or unit name
    id: String,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PauseArgs {
    /// Record ids (or unique prefixes), or unit names
    ids: Vec<String>,
    /// Every running process of this owner
    #[arg(long, conflicts_with_all = ["ids", "workflow", "session", "all"])]
    owner: Option<String>,
    /// Every running process of this workflow
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "session", "all"])]
    workflow: Option<String>,
    /// Every running process of this session
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "all"])]
    session: Option<String>,
    /// Every managed process, as the pause policy says (see pause --help)
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Show the group pauses in force and the queued runs; change nothing
    #[arg(long, conflicts_with_all = ["ids", "owner", "workflow", "session", "all"])]
    list: bool,
    /// Print the outcomes (with --list: the pauses) as JSON
    #[arg(long)]
    json: bool,
}

impl PauseArgs {
    fn selection(self) -> Result<refine_proc::Selection> {
        let group = self.owner.is_some() || self.workflow.is_some() || self.session.is_some();
        if self.ids.is_empty() && !group && !self.all {
            return Err(Error::invalid("nothing to act on")
                .hint("give ids, or one of --owner, --workflow, --session, or --all (pause --list shows the pauses in force)"));
        }
        Ok(refine_proc::Selection {
            ids: self.ids,
            owner: self.owner.as_deref().map(str::parse).transpose()?,
            workflow: self.workflow,
            session: self.session,
            all: self.all,
        })
    }
}

#[derive(Args, Debug)]
struct EventsArgs {
    /// Only events of this process (id, unique prefix, or unit name)
    #[arg(long)]
    id: Option<String>,
    /// Only events of this owner's processes
    #[arg(long)]
    owner: Option<String>,
    /// Only events of this workflow's processes
    #[arg(long, value_name = "ID")]
    workflow: Option<String>,
    /// Only the last N events
    #[arg(long, short = 'n', value_name = "N")]
    lines: Option<usize>,
    /// Only events at or after this time: -1h, '10min ago', today, '2026-11-20 10:00', @EPOCH
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// Keep printing new events as they happen (Ctrl-C ends)
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print JSON Lines (one event a line)
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StopArgs {
    /// Record ids (or unique prefixes), or unit names
    #[arg(required_unless_present_any = ["owner", "workflow", "session", "all"])]
    ids: Vec<String>,
    /// Every running process of this owner
    #[arg(long, conflicts_with_all = ["ids", "workflow", "session", "all"])]
    owner: Option<String>,
    /// Every running process of this workflow
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "session", "all"])]
    workflow: Option<String>,
    /// Every running process of this session
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "all"])]
    session: Option<String>,
    /// Every running managed process (and the queued runs)
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Also every running process they launched, transitively (as `list
    /// --tree` draws them), children first
    #[arg(long)]
    tree: bool,
    /// Print the outcomes as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct KillArgs {
    id: String,
    /// Signal name or number
    #[arg(long, short, default_value = "TERM")]
    signal: String,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// Record id (or a unique prefix), or unit name
    #[arg(required_unless_present_any = ["owner", "workflow"], conflicts_with_all = ["owner", "workflow"])]
    id: Option<String>,
    /// All processes of this owner
    #[arg(long)]
    owner: Option<String>,
    /// All processes of this workflow
    #[arg(long, value_name = "ID")]
    workflow: Option<String>,
    /// Keep printing new lines as they arrive
    #[arg(long, short)]
    follow: bool,
    /// Show only the last N lines
    #[arg(long, short = 'n', value_name = "N")]
    lines: Option<u64>,
    /// Start at this time: -1h, '10min ago', today, yesterday, '2026-11-20 10:00', @EPOCH
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// End at this time (the same forms as --since)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    until: Option<String>,
    /// Text format: cat (only the output), short, short-iso, short-precise, verbose
    #[arg(long, short, default_value = "cat")]
    output: String,
    /// Print JSON Lines (one object a line)
    #[arg(long)]
    json: bool,
    /// Start each line with the process that wrote it (ID LABEL |) [default:
    /// for --owner and --workflow, when stdout is a terminal]
    #[arg(long, conflicts_with_all = ["no_prefix", "json"])]
    prefix: bool,
    /// Print the lines as they were written, without the process
    #[arg(long)]
    no_prefix: bool,
}

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
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut visible_command(), "refine-proc", &mut out);
            return exit_of(output::io_result(std::io::stdout().write_all(&out)));
        }
        Command::Man { dir } => return exit_of(man(dir.as_deref())),
        _ => {}
    }
    // The holder needs no index and no bus: only its terminal and socket.
    if let Command::PtyHold(args) = cli.command {
        return pty::hold(args);
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

/// doctor inspects the index without opening (creating) it.
fn doctor(state_dir: Result<&std::path::Path, &Error>, json: bool) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(refine_proc::doctor::run(state_dir));
    let printed = if json {
        output::json(&report)
    } else {
        output::doctor(&report)
    };
    match printed {
        Ok(()) => report.exit_code(),
        Err(e) => fail(&e),
    }
}

fn exit_of(r: Result<()>) -> i32 {
    r.map_or_else(|e| fail(&e), |_| 0)
}

/// The command line without its hidden commands: clap_complete would
/// offer them (record-exit, completions) to people otherwise.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("refine-proc")
        .about(ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The man page on stdout, or a page per command written into `dir`
/// (their paths on stdout).
fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        output::io_result(clap_mangen::Man::new(cmd).render(&mut out))?;
        return output::io_result(std::io::stdout().write_all(&out));
    };
    fn write(
        cmd: clap::Command,
        dir: &std::path::Path,
        paths: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir, paths)?;
        }
        paths.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
        Ok(())
    }
    let mut paths = Vec::new();
    std::fs::create_dir_all(dir)
        .and_then(|_| write(cmd, dir, &mut paths))
        .map_err(|e| {
            Error::invalid(format!("cannot write man pages to {}: {e}", dir.display()))
                .hint("pass a directory you can write to")
        })?;
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    output::io_result(std::io::stdout().write_all(list.as_bytes()))
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

fn fail(e: &Error) -> i32 {
    // No login can bring a user manager where PID 1 is not systemd: say
    // so in the hint, and where the way forward is.
    if e.kind == ErrorKind::Unavailable
        && std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() != "systemd")
    {
        let mut e = e.clone();
        let hint = e.hint.take().map(|h| format!("{h}; ")).unwrap_or_default();
        e.hint = Some(format!(
            "{hint}but PID 1 is not systemd here (a container or CI?): refine-proc doctor says \
             what works; to try refine-proc anyway, see the README's \"Trying it without a user session\""
        ));
        eprintln!("refine-proc: {e}");
        return e.exit_code();
    }
    eprintln!("refine-proc: {e}");
    e.exit_code()
}

/// How to get a daemon, for the warnings that there is none.
const DAEMON_FIX: &str = "start one: systemctl --user enable --now refine-proc.service (see refine-proc doctor), or refine-proc daemon in a terminal";

/// The pid of the daemon of the index in `dir`, if one runs: the pid its
/// lock file names, alive and running `refine-proc ... daemon`. Read
/// only: taking the lock, even shared, could make a starting daemon
/// believe another one runs.
fn daemon_pid(dir: &std::path::Path) -> Option<u32> {
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

/// Runs one command; returns the process exit code.
async fn dispatch(command: Command, state_dir: PathBuf) -> Result<i32> {
    if let Command::Mcp { actor } = &command {
        return mcp(actor.as_deref(), &state_dir).await;
    }
    // Before the index is opened: a confined caller may not write it.
    if let Some(socket) = remote::socket_for(&state_dir) {
        return by_socket(&socket, command).await;
    }
    let controller = Controller::open(&state_dir)?;
    match command {
        Command::Run(args) => {
            let (json, wait) = (args.json, args.wait);
            let request = run_request(*args)?;
            let record = match controller.handle(request).await?.response {
                Response::Record(r) => *r,
                other => unreachable!("run answers a record, not {other:?}"),
            };
            if record.health.is_some() && daemon_pid(controller.index().dir()).is_none() {
                output::warnings(&[format!(
                    "no refine-proc daemon runs for this index, so nothing probes the health check (its health stays starting) and --on-unhealthy does nothing; {DAEMON_FIX}"
                )]);
            }
            print_run(&record, json, wait)
        }
        Command::Adopt(args) => {
            let json = args.json;
            let adopted = controller.adopt(adopt_spec(*args)?).await?;
            output::warnings(&adopted.warnings);
            if json {
                output::json(&adopted.record)?;
            } else {
                output::adopted(&adopted)?;
            }
            Ok(0)
        }
        Command::List(args) => {
            let filter = list_filter(&args)?;
            let answer = controller.handle(Request::List(filter)).await?;
            let (listed, mut warnings) = match answer.response {
                Response::Listed(l) => (l, answer.warnings),
                other => unreachable!("list answers records, not {other:?}"),
            };
            let checked = listed.iter().filter(|l| l.health_status.is_some()).count();
            let unprobed = checked > 0 && daemon_pid(controller.index().dir()).is_none();
            if unprobed {
                warnings.push(format!(
                    "no refine-proc daemon runs for this index, so nothing probes the health checks of {checked} process{}: HEALTH is what was last stored; {DAEMON_FIX}",
                    if checked == 1 { "" } else { "es" }
                ));
            }
            print_list(&listed, &warnings, &args, unprobed)
        }
        Command::Set(args) => set(&controller, args).await,
        Command::Status(args) => {
            let request = Request::Status {
                id: args.id.clone(),
            };
            let mut status = match controller.handle(request).await?.response {
                Response::Status(s) => *s,
                other => unreachable!("status answers a status, not {other:?}"),
            };
            if status.health.is_some()
                && !status.record.state.is_ended()
                && daemon_pid(controller.index().dir()).is_none()
            {
                status.warnings.push(format!(
                    "no refine-proc daemon runs for this index, so nothing probes its health check: its health is what was last stored; {DAEMON_FIX}"
                ));
            }
            print_status(&status, args.json)
        }
        Command::Logs(args) => logs(&controller, args).await,
        Command::Stop(args) => {
            let selection = refine_proc::Selection {
                ids: args.ids,
                owner: args.owner.as_deref().map(str::parse).transpose()?,
                workflow: args.workflow,
                session: args.session,
                all: args.all,
            };
            let outcomes = controller.stop_selection(&selection, args.tree).await?;
            print_outcomes(&outcomes, args.json)
        }
        Command::Events(args) => {
            let id = args
                .id
                .as_deref()
                .map(|a| controller.resolve(a))
                .transpose()?;
            let owner: Option<Owner> = args.owner.as_deref().map(str::parse).transpose()?;
            let since = args
                .since
                .as_deref()
                .map(|t| journal::time_point(t, "--since"))
                .transpose()?;
            let keep = |e: &refine_proc::events::Event| {
                since.is_none_or(|s| e.time.0 >= s)
                    && id.as_ref().is_none_or(|i| e.id.as_ref() == Some(i))
                    && owner.is_none_or(|o| e.owner == Some(o))
                    && args
                        .workflow
                        .as_ref()
                        .is_none_or(|w| e.workflow.as_ref() == Some(w))
            };
            if args.follow {
                let json = args.json;
                let ready =
                    || eprintln!("refine-proc: following events as they happen (Ctrl-C ends)");
                refine_proc::follow::follow(&controller, args.lines, keep, ready, |e| {
                    if json {
                        output::json_lines(std::slice::from_ref(e))
                    } else {
                        output::event_line(e)
                    }
                })
                .await?;
                return Ok(0);
            }
            let (mut events, skipped) = controller.events()?;
            events.retain(keep);
            if let Some(n) = args.lines {
                events.drain(..events.len().saturating_sub(n));
            }
            if skipped > 0 {
                output::warnings(&[format!("skipped {skipped} unreadable lines of the history")]);
            }
            if args.json {
                output::json_lines(&events)?;
            } else {
                output::events(&events)?;
            }
            Ok(0)
        }
        Command::Pause(args) if args.list => {
            let pauses = controller.pauses()?;
            if args.json {
                output::json(&pauses)?;
            } else {
                output::pauses(&pauses)?;
            }
            Ok(0)
        }
        Command::Pause(args) => {
            let json = args.json;
            let outcomes = controller.pause(&args.selection()?).await?;
            print_outcomes(&outcomes, json)
        }
        Command::Resume(args) => {
            let json = args.json;
            let outcomes = controller.resume(&args.selection()?).await?;
            print_outcomes(&outcomes, json)
        }
        Command::Kill(args) => {
            let signal = parse_signal(&args.signal)?;
            let outcome = controller.kill(&args.id, signal).await?;
            print_outcomes(&[outcome], args.json)
        }
        Command::Restart(args) => {
            let outcome = controller.restart(&args.id).await?;
            print_outcomes(&[outcome], args.json)
        }
        Command::Forget(args) => {
            let outcome = controller.forget(&args.id).await?;
            print_outcomes(&[outcome], args.json)
        }
        Command::Policy { command } => policy(&controller, command).await,
        Command::Daemon(a) => refine_proc::daemon::run(&controller, a.options())
            .await
            .map(|()| 0),
        Command::Resurrect { json } => {
            let done = controller.resurrect().await?;
            if json {
                output::json(&done)?;
            } else {
                output::resurrections(&done)?;
            }
            let failed = done.iter().any(|d| d.outcome == "failed");
            Ok(if failed {
                ErrorKind::Systemd.exit_code()
            } else {
                0
            })
        }
        Command::Recover { json } => {
            let recovery = controller.recover().await?;
            if json {
                output::json(&recovery)?;
            } else {
                output::recovery(&recovery)?;
            }
            Ok(0)
        }
        Command::Attach(args) => pty::attach(&controller, args).await,
        Command::Send(args) => pty::send(&controller, args).await,
        Command::Screen(args) => pty::screen(&controller, args).await,
        Command::RecordExit { .. }
        | Command::PtyHold(_)
        | Command::Doctor { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Web(_)
        | Command::Mcp { .. } => unreachable!("handled before the index is opened"),
    }
}

/// `mcp [--actor OWNER]`: the owner is checked before the index is opened.
async fn mcp(actor: Option<&str>, state_dir: &std::path::Path) -> Result<i32> {
    let lower_to = actor
        .map(|a| {
            a.parse::<Owner>().map_err(|mut e| {
                e.message = format!("--actor: {}", e.message);
                e
            })
        })
        .transpose()?;
    // Confined (no bus, the index read-only): through the daemon, which
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
    let mut controller = Controller::open(state_dir)?;
    if let Some(owner) = lower_to {
        // A managed caller ignores this: its own policy binds it.
        controller = controller.on_behalf_of(Caller::this_process().lowered_to(owner));
    }
    refine_proc::mcp::serve_stdio(controller).await?;
    Ok(0)
}

async fn policy(controller: &Controller, command: PolicyCommand) -> Result<i32> {
    let requester = controller.requester().await?;
    match command {
        PolicyCommand::Show { json } => {
            let overview = requester.policy.overview();
            if json {
                output::json(&overview)?;
            } else {
                output::policy_overview(&overview, requester.policy.text())?;
            }
            Ok(0)
        }
        PolicyCommand::Check(a) => {
            let actor = a
                .actor
                .as_deref()
                .map(refine_proc::policy::parse_actor)
                .transpose()?;
            // Checked before the command, with run's own limits builder;
            // the owner defaults as for run (the library fills it in).
            let limits = a.limits.limits()?;
            let owner: Option<Owner> = a.owner.as_deref().map(str::parse).transpose()?;
            let launch = (!a.command.is_empty()).then(|| RunSpec {
                command: a.command.clone(),
                owner,
                limits,
                ..Default::default()
            });
            let verdict = controller
                .policy_check(refine_proc::controller::CheckRequest { actor, launch })
                .await?;
            if a.json {
                output::json(&verdict)?;
            } else {
                output::policy_verdict(&verdict)?;
            }
            let refused = verdict.launch.as_ref().is_some_and(|l| !l.allowed);
            Ok(if refused {
                ErrorKind::Denied.exit_code()
            } else {
                0
            })
        }
    }
}

fn list_filter(args: &ListArgs) -> Result<ListFilter> {
    Ok(ListFilter {
        all: args.all,
        owner: args.owner.as_deref().map(str::parse).transpose()?,
        workflow: args.workflow.clone(),
        session: args.session.clone(),
        gap: args.gap.clone(),
        state: args.state.as_deref().map(str::parse::<State>).transpose()?,
    })
}

/// `run`'s arguments as the core's request.
fn run_request(args: RunArgs) -> Result<Request> {
    let options = RunOptions {
        wait: args.wait,
        queue: args.queue,
        wait_ready: args.wait_ready,
    };
    Ok(Request::Run {
        spec: run_spec(args)?,
        options,
    })
}

fn print_run(record: &Record, json: bool, wait: bool) -> Result<i32> {
    if json {
        output::json(record)?;
    } else if wait {
        output::finished(record)?;
    } else {
        output::started(record)?;
    }
    Ok(if wait { exit_code_of(record) } else { 0 })
}

fn print_list(
    listed: &[Listed],
    warnings: &[String],
    args: &ListArgs,
    unprobed: bool,
) -> Result<i32> {
    output::warnings(warnings);
    if args.json {
        output::json(listed)?;
    } else {
        output::table(listed, args.all, args.tree, unprobed)?;
    }
    Ok(0)
}

fn print_status(status: &Status, json: bool) -> Result<i32> {
    output::warnings(&status.warnings);
    if json {
        output::json(status)?;
    } else {
        output::status(status)?;
    }
    Ok(0)
}

/// A command sent to the daemon over its API socket (see `remote`): the
/// same printers and exit codes as in process.
async fn by_socket(socket: &std::path::Path, command: Command) -> Result<i32> {
    let unsupported = |what: &str| {
        Err(Error::invalid(format!(
            "{what} is not available through the daemon's API socket"
        ))
        .hint("run, list, status, logs ID and stop IDS are; run it outside the sandbox"))
    };
    match command {
        Command::Run(args) => {
            let (json, wait) = (args.json, args.wait);
            let answer = remote::handle(socket, run_request(*args)?).await?;
            output::warnings(&answer.warnings);
            match answer.response {
                Response::Record(r) => print_run(&r, json, wait),
                other => unreachable!("run answers a record, not {other:?}"),
            }
        }
        Command::List(args) => {
            let filter = list_filter(&args)?;
            let answer = remote::handle(socket, Request::List(filter)).await?;
            match answer.response {
                Response::Listed(l) => print_list(&l, &answer.warnings, &args, false),
                other => unreachable!("list answers records, not {other:?}"),
            }
        }
        Command::Status(args) => {
            let answer = remote::handle(socket, Request::Status { id: args.id }).await?;
            match answer.response {
                Response::Status(s) => print_status(&s, args.json),
                other => unreachable!("status answers a status, not {other:?}"),
            }
        }
        Command::Stop(args) => {
            if args.ids.is_empty() || args.tree {
                return unsupported("stop --owner/--workflow/--session/--all/--tree");
            }
            let answer = remote::handle(socket, Request::Stop { ids: args.ids }).await?;
            match answer.response {
                Response::Outcomes(o) => print_outcomes(&o, args.json),
                other => unreachable!("stop answers outcomes, not {other:?}"),
            }
        }
        Command::Logs(args) => {
            let plain = !args.follow
                && !args.json
                && args.output == "cat"
                && args.since.is_none()
                && args.until.is_none();
            let Some(id) = args.id.filter(|_| plain) else {
                return unsupported("logs other than `logs ID [--lines N]`");
            };
            let entries = remote::logs(socket, &id, args.lines).await?;
            let text: String = entries.iter().map(|e| format!("{}\n", e.message)).collect();
            output::io_result(std::io::stdout().write_all(text.as_bytes()))?;
            Ok(0)
        }
        _ => unsupported("this command"),
    }
}

fn print_outcomes(outcomes: &[ActionOutcome], json: bool) -> Result<i32> {
    if json {
        output::json(&outcomes)?;
    } else {
        output::outcomes(outcomes)?;
    }
    Ok(0)
}

fn meta_pairs(meta: &[String]) -> Result<BTreeMap<String, String>> {
    let mut extra = BTreeMap::new();
    for m in meta {
        let (k, v) = split_assignment(m, "--meta")?;
        extra.insert(k.to_string(), v.to_string());
    }
    Ok(extra)
}

fn adopt_spec(a: AdoptArgs) -> Result<AdoptSpec> {
    let id = a.identity;
    Ok(AdoptSpec {
        pid: a.pid,
        owner: id.owner()?,
        label: id.label.clone(),
        details: id.details.clone(),
        metadata: id.metadata()?,
        no_children: a.no_children,
    })
}

/// Turns flags into a spec; every value is checked before anything runs.
fn run_spec(a: RunArgs) -> Result<RunSpec> {
    let owner = a.identity.owner()?;
    let (label, details) = (a.identity.label.clone(), a.identity.details.clone());
    let metadata = a.identity.metadata()?;
    let mut environment = BTreeMap::new();
    for e in &a.env {
        let (k, v) = split_assignment(e, "--env")?;
        environment.insert(k.to_string(), v.to_string());
    }
    Ok(RunSpec {
        command: a.command,
        owner,
        label,
        details,
        metadata,
        cwd: a.cwd,
        environment,
        limits: a.limits.limits()?,
        restart: a.restart.parse()?,
        restart_timing: restart_timing(
            a.restart_delay.as_deref(),
            a.restart_max_delay.as_deref(),
            a.restart_limit.as_deref(),
        )?,
        ready: a
            .ready
            .as_deref()
            .map(|how| -> Result<_> {
                Ok(refine_proc::model::ReadySpec {
                    on: how.parse()?,
                    timeout_sec: a.ready_timeout.as_deref().map(parse_seconds).transpose()?,
                })
            })
            .transpose()?,
        persist: a.persist,
        health: a.health.spec()?,
        pty: a.pty.options()?,
    })
}

/// `set`: every value is parsed and checked before systemd is asked.
async fn set(controller: &Controller, a: SetArgs) -> Result<i32> {
    let limit = |v: &Option<String>, parse: fn(&str) -> Result<u64>| {
        v.as_deref().map(|s| parse_limit(s, parse)).transpose()
    };
    let change = LimitChange {
        memory_max: limit(&a.memory_max, parse_size)?,
        memory_high: limit(&a.memory_high, parse_size)?,
        cpu_quota_percent: limit(&a.cpu_quota, parse_cpu_quota)?,
        cpu_weight: limit(&a.cpu_weight, parse_cpu_weight)?,
        tasks_max: limit(&a.tasks_max, parse_tasks)?,
    };
    change.validate()?;
    match (&a.id, &a.owner) {
        (_, Some(owner)) => {
            let owner: Owner = owner.parse()?;
            let stored = controller.set_owner_limits(owner, &change).await?;
            if a.json {
                output::json(&stored)?;
            } else {
                output::owner_limits(&stored)?;
            }
        }
        (Some(id), None) => {
            let record = controller.set_limits(id, &change).await?;
            if a.json {
                output::json(&record)?;
            } else {
                output::limits_set(&record)?;
            }
        }
        (None, None) => unreachable!("clap requires an id or --owner"),
    }
    Ok(0)
}

/// The exit code `run --wait` passes on, as a shell reports it: the code,
/// or 128 + the signal number.
fn exit_code_of(r: &Record) -> i32 {
    match (r.exit_code, &r.exit_signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => parse_signal(sig).map(|n| 128 + n).unwrap_or(1),
        (None, None) if r.state == State::Exited => 0,
        _ => 1,
    }
}

async fn logs(controller: &Controller, args: LogsArgs) -> Result<i32> {
    let since = args
        .since
        .as_deref()
        .map(|t| journal::parse_time(t, "--since"))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| journal::parse_time(t, "--until"))
        .transpose()?;
    if !TEXT_FORMATS.contains(&args.output.as_str()) {
        return Err(
            Error::invalid(format!("unknown log format {:?}", args.output))
                .hint(format!("use one of: {}", TEXT_FORMATS.join(", "))),
        );
    }
    let records: Vec<Record> = match (&args.id, &args.owner, &args.workflow) {
        (Some(id), _, _) => vec![controller.record(id).await?],
        (None, Some(owner), _) => {
            let owner: Owner = owner.parse()?;
            controller.records_where(|r| r.owner == owner)?
        }
        (None, None, Some(wf)) => {
            controller.records_where(|r| r.metadata.workflow.as_deref() == Some(wf.as_str()))?
        }
        (None, None, None) => unreachable!("clap requires an id, --owner or --workflow"),
    };
    if records.is_empty() {
        eprintln!("refine-proc: no matching processes, so no logs");
        return Ok(0);
    }
    let (scopes, services): (Vec<&Record>, Vec<&Record>) =
        records.iter().partition(|r| r.kind == UnitKind::Scope);
    let query = LogQuery {
        identifiers: services
            .iter()
            .map(|r| r.unit.trim_end_matches(".service").to_string())
            .collect(),
        units: scopes.iter().map(|r| r.unit.clone()).collect(),
        uid: Some(journal::current_uid()),
        lines: args.lines,
        since,
        until,
        follow: args.follow,
        ..Default::default()
    };
    // Only `cat` lacks the writer: the other formats name its identifier.
    let group = args.id.is_none();
    let prefix = match (args.prefix, args.no_prefix) {
        (true, _) => true,
        (_, true) => false,
        _ => group && std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let shape = if args.json {
        logs::Shape::Json
    } else if prefix && args.output == "cat" {
        logs::Shape::Prefixed(logs::tags(&records))
    } else {
        logs::Shape::Raw
    };
    // `logs -f ID` ends with the process; a queued one has not begun.
    let until_end = records
        .first()
        .filter(|r| args.follow && !group && r.state != State::Queued);
    logs::show(controller, &query, &args.output, shape, until_end).await
}

/// `--restart-delay`, `--restart-max-delay`, `--restart-limit N/DURATION`.
fn restart_timing(
    delay: Option<&str>,
    max: Option<&str>,
    limit: Option<&str>,
) -> Result<refine_proc::model::RestartTiming> {
    let (limit_burst, limit_interval_sec) = match limit {
        None => (None, None),
        Some(l) => {
            let bad = || {
                Error::invalid(format!(
                    "--restart-limit {:?} is not N/DURATION",
                    refine_proc::text::escape(l)
                ))
                .hint("e.g. --restart-limit 5/10min: at most 5 starts within 10 minutes")
            };
            let (n, d) = l.split_once('/').ok_or_else(bad)?;
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            (Some(n), Some(parse_seconds(d.trim())?))
        }
    };
    Ok(refine_proc::model::RestartTiming {
        delay_sec: delay.map(parse_seconds).transpose()?,
        max_delay_sec: max.map(parse_seconds).transpose()?,
        limit_burst,
        limit_interval_sec,
    })
}
