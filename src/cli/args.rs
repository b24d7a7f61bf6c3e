//! The command line: the commands and the flags several share. Each
//! command's own flags live in its file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use refine_proc::model::Metadata;
use refine_proc::run_request::RunRequest;
use refine_proc::text::split_assignment;
use refine_proc::{Owner, Result};

use super::{events, list, logs, pause, policy, pty, run, set, stop, web};

pub const ABOUT: &str = "Run and watch processes as transient systemd user services, \
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
pub struct Cli {
    /// Directory of the index [default: $REFINE_PROC_STATE_DIR, else
    /// $XDG_STATE_HOME/refine-proc, else ~/.local/state/refine-proc]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    Run(Box<run::RunArgs>),
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
    Adopt(Box<run::AdoptArgs>),
    /// List managed processes (running ones; --all adds ended ones)
    #[command(after_help = "\
Examples:
  refine-proc list
  refine-proc list --all --owner agent
  refine-proc list --workflow wf-42 --json
  refine-proc list --all --state failed")]
    List(list::ListArgs),
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
    Logs(logs::LogsArgs),
    /// Stop processes and wait until they have ended
    #[command(after_help = "\
Examples:
  refine-proc stop k3x9p2qa
  refine-proc stop k3x9p2qa m4n5p6q7
  refine-proc stop --tree k3x9p2qa        # and every process it launched
  refine-proc stop --workflow wf-42
  refine-proc stop --all")]
    Stop(stop::StopArgs),
    /// Send a signal to all processes of one managed process
    #[command(after_help = "\
Examples:
  refine-proc kill k3x9p2qa              # SIGTERM
  refine-proc kill --signal KILL k3x9p2qa
  refine-proc kill --signal USR1 k3x9p2qa")]
    Kill(stop::KillArgs),
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
    Set(set::SetArgs),
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
    Pause(pause::PauseArgs),
    /// Thaw what pause froze (a group's resume leaves processes paused on their own)
    #[command(after_help = "\
Examples:
  refine-proc resume k3x9p2qa
  refine-proc resume --owner agent         # only what `pause --owner agent` froze
  refine-proc resume --all                 # thaws, restarts what pause --all stopped,
                                           # and starts the queued runs")]
    Resume(pause::PauseArgs),
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
        command: policy::PolicyCommand,
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
  # harness config: {\"mcpServers\": {\"refine-proc\": {\"command\": \"refine-proc\", \"args\": [\"mcp\", \"--actor\", \"agent\"]}}}
  refine-proc daemon --listen 127.0.0.1:8765 &   # MCP over HTTP at /mcp
  refine-proc web --token control  # its bearer token: http://127.0.0.1:8765/mcp

Stdio server: this process speaks MCP on stdin/stdout (logging goes to
stderr). Tools: list, status, run, stop, kill, restart, send, screen,
pause, resume, logs, wait, events, policy_check; results are the JSON of
the matching --json output, a refusal is a tool error naming the rule.

The caller is established as for the CLI: started by a person, the server
acts as that person, and --actor OWNER lowers it to that bounded owner (it
can only lower a person's power, never raise it; an unknown owner is
refused before anything is served). Started inside a managed unit, the
server is that managed process, bound by its policy, and --actor is
ignored.

HTTP endpoint: the daemon serves the same tools at /mcp on its listeners
(streamable HTTP, stateless). On its Unix socket the caller is the peer;
on loopback TCP (daemon --listen) it needs a bearer token or the browser
session, else 401. A read token (web --token read) lists only the
read-only tools; calling another gets a tool error saying so.

Confined (confine = true: no user bus, no index in the sandbox): mcp proxies
every request to the daemon's /mcp over the API socket, whose path the
unit got at launch (start the daemon first); the daemon knows the caller
from the socket, so the policy binds it. --actor is refused there unless
the server runs in a managed unit.")]
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
    Events(events::EventsArgs),
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
    /// Bind a confined terminal session's socket into its unit's fd store
    /// (run by systemd as a privileged ExecStartPre with run --pty)
    #[command(name = "pty-listen", hide = true)]
    PtyListen {
        #[arg(long)]
        socket: PathBuf,
    },
}

/// Who a process belongs to and why it exists: the flags `run` and
/// `adopt` share.
#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// Who the process belongs to: daemon, target-app, agent, quality,
    /// import, maintenance or user-helper [default: the calling managed
    /// process's owner, else user-helper]
    #[arg(long)]
    pub owner: Option<String>,
    /// A short name for people [default: the command's or process's name]
    #[arg(long)]
    pub label: Option<String>,
    /// Longer free text: why this process exists
    #[arg(long)]
    pub details: Option<String>,
    /// The workflow it serves [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    /// The gap it works on [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    pub gap: Option<String>,
    /// The session it belongs to [default: the calling managed process's]
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// The mode it runs in, free text [default: the calling managed process's]
    #[arg(long, value_name = "TEXT")]
    pub mode: Option<String>,
    /// What runs it (an agent runner's name), free text [default: the calling managed process's]
    #[arg(long, value_name = "TEXT")]
    pub runner: Option<String>,
    /// Extra metadata, repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
}

impl IdentityArgs {
    /// Into the request `run` sends.
    pub fn fill(self, r: &mut RunRequest) -> Result<()> {
        r.meta = meta_pairs(&self.meta)?;
        r.owner = self.owner;
        r.label = self.label;
        r.details = self.details;
        r.workflow = self.workflow;
        r.gap = self.gap;
        r.session = self.session;
        r.mode = self.mode;
        r.runner = self.runner;
        Ok(())
    }

    pub fn owner(&self) -> Result<Option<Owner>> {
        self.owner.as_deref().map(str::parse::<Owner>).transpose()
    }

    pub fn metadata(self) -> Result<Metadata> {
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

/// The limits of `run`, and of the launch `policy check` checks: one
/// definition and one builder, so that both see the same request.
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Memory limit (MemoryMax=), e.g. 512M, 2G
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// Memory above which the process is throttled and reclaimed (MemoryHigh=), e.g. 1G
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// CPU limit in percent of one CPU (CPUQuota=), e.g. 50%, 200%
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// Share of CPU time against other processes (CPUWeight=), 1 to 10000; default 100
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<String>,
    /// Maximum number of tasks (TasksMax=)
    #[arg(long, value_name = "N")]
    pub tasks_max: Option<u64>,
    /// Stop the process after this long (RuntimeMaxSec=), e.g. 30s, 2h
    #[arg(long, value_name = "DURATION")]
    pub runtime_max: Option<String>,
    /// How long a stop waits for the process to exit before SIGKILL (TimeoutStopSec=), e.g. 10s
    #[arg(long, value_name = "DURATION")]
    pub timeout_stop: Option<String>,
}

impl LimitArgs {
    /// Into the request `run` (or `policy check`) checks.
    pub fn fill(self, r: &mut RunRequest) {
        r.memory_max = self.memory_max;
        r.memory_high = self.memory_high;
        r.cpu_quota = self.cpu_quota;
        r.cpu_weight = self.cpu_weight;
        r.tasks_max = self.tasks_max;
        r.runtime_max = self.runtime_max;
        r.timeout_stop = self.timeout_stop;
    }
}

#[derive(Args, Debug)]
pub struct IdArg {
    /// Record id (or a unique prefix), or unit name
    pub id: String,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// `KEY=VALUE` flags (`--meta`, `--env`) as a map.
pub fn pairs(values: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for v in values {
        let (k, v) = split_assignment(v, flag)?;
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

fn meta_pairs(meta: &[String]) -> Result<BTreeMap<String, String>> {
    pairs(meta, "--meta")
}
