//! `run` and `adopt`: flags -> the request every surface sends -> the
//! core -> one printer.

use std::path::PathBuf;

use clap::Args;
use refine_proc::controller::{Request, Response, RunOptions};
use refine_proc::run_request::RunRequest;
use refine_proc::text::parse_signal;
use refine_proc::{AdoptSpec, Record, Result, State};

use super::args::{pairs, IdentityArgs, LimitArgs};
use super::output::{self, View};
use super::{pty, Core, DAEMON_FIX};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Working directory [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Environment variable for the process, repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Restart policy: no, on-failure, always
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Delay before a restart (RestartSec=), e.g. 2s
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// Let the delay double after each consecutive restart up to this
    /// (systemd 254+: RestartSteps=; older: done by refine-proc daemon)
    #[arg(long, value_name = "DURATION")]
    pub restart_max_delay: Option<String>,
    /// At most N starts within DURATION, then it stays failed, e.g. 5/10min
    #[arg(long, value_name = "N/DURATION")]
    pub restart_limit: Option<String>,
    /// When it is ready: notify (it sends READY=1 with sd_notify; until
    /// then it is `starting`), or health (its health check passes once)
    #[arg(long, value_name = "HOW")]
    pub ready: Option<String>,
    /// How long it may take to be ready (--ready notify: systemd's
    /// TimeoutStartSec=, after which the start fails; --ready health: how
    /// long --wait-ready probes) [default: 90s]
    #[arg(long, value_name = "DURATION", requires = "ready")]
    pub ready_timeout: Option<String>,
    /// Return only once it is ready (needs --ready)
    #[arg(long, requires = "ready", conflicts_with = "wait")]
    pub wait_ready: bool,
    /// Wait until the process ends and exit with its exit code
    #[arg(long)]
    pub wait: bool,
    /// If a pause holds this owner (or workflow, or session), queue the run
    /// and start it on resume instead of refusing
    #[arg(long, conflicts_with = "wait")]
    pub queue: bool,
    /// Start it again with `refine-proc resurrect` if the user manager goes
    /// away while it runs (logout without linger, crash, reboot)
    #[arg(long)]
    pub persist: bool,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub pty: pty::PtyRunArgs,
    /// Print the record as JSON
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments (after --). An option before it that
    /// is not one of run's is an error, not the command.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The health check of `run`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Health check: a shell command (/bin/sh -c), healthy when it exits 0
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Health check: a plain HTTP GET of http://HOST[:PORT]/PATH (no TLS), healthy on status 200-399
    #[arg(long, value_name = "URL")]
    pub health_http: Option<String>,
    /// Health check: a TCP connection to HOST:PORT, healthy when accepted
    #[arg(long, value_name = "HOST:PORT")]
    pub health_tcp: Option<String>,
    /// Time between two probes [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time one probe may take, at most the interval [default: 5s, or the interval if shorter]
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row before the process is unhealthy [default: 3]
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start during which failures do not count, until the first success [default: 0]
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// What the daemon does when the process turns unhealthy: restart, stop or none [default: none]
    #[arg(long, value_name = "ACTION")]
    pub on_unhealthy: Option<String>,
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// The process to adopt
    pub pid: u32,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Move only PID, not its children and their descendants
    #[arg(long)]
    pub no_children: bool,
    /// Print the record as JSON
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The flags as the [`RunRequest`] the API and the MCP server take:
    /// one parser ([`RunRequest::spec`]) for every surface, its errors'
    /// fields named as flags when printed.
    fn request(self) -> Result<RunRequest> {
        let h = self.health;
        let mut r = RunRequest {
            command: self.command,
            cwd: self.cwd,
            env: pairs(&self.env, "--env")?,
            restart: Some(self.restart),
            restart_delay: self.restart_delay,
            restart_max_delay: self.restart_max_delay,
            restart_limit: self.restart_limit,
            ready: self.ready,
            ready_timeout: self.ready_timeout,
            persist: self.persist,
            health_cmd: h.health_cmd,
            health_http: h.health_http,
            health_tcp: h.health_tcp,
            health_interval: h.health_interval,
            health_timeout: h.health_timeout,
            health_retries: h.health_retries,
            health_start_period: h.health_start_period,
            on_unhealthy: h.on_unhealthy,
            pty: self.pty.pty,
            pty_size: self.pty.pty_size,
            ..Default::default()
        };
        self.identity.fill(&mut r)?;
        self.limits.fill(&mut r);
        Ok(r)
    }
}

/// `run`'s arguments as the core's request; every value is checked before
/// anything runs.
fn run_request(args: RunArgs) -> Result<Request> {
    let options = RunOptions {
        wait: args.wait,
        queue: args.queue,
        wait_ready: args.wait_ready,
    };
    Ok(Request::Run {
        spec: args.request()?.spec()?,
        options,
    })
}

pub async fn run(core: &Core, args: RunArgs) -> Result<i32> {
    let (json, wait) = (args.json, args.wait);
    let mut answer = core.handle(run_request(args)?).await?;
    let Response::Record(record) = &answer.response else {
        unreachable!("run answers a record, not {:?}", answer.response)
    };
    let code = if wait { exit_code_of(record) } else { 0 };
    if record.health.is_some() && core.unprobed() {
        answer.warnings.push(format!(
            "no refine-proc daemon runs for this index, so nothing probes the health check (its health stays starting) and --on-unhealthy does nothing; {DAEMON_FIX}"
        ));
    }
    let view = if wait { View::Finished } else { View::Plain };
    output::answer(&answer, json, view)?;
    Ok(code)
}

pub async fn adopt(core: &Core, a: AdoptArgs) -> Result<i32> {
    let json = a.json;
    let id = a.identity;
    let spec = AdoptSpec {
        pid: a.pid,
        owner: id.owner()?,
        label: id.label.clone(),
        details: id.details.clone(),
        metadata: id.metadata()?,
        no_children: a.no_children,
    };
    let answer = core.handle(Request::Adopt(spec)).await?;
    output::answer(&answer, json, View::Plain)?;
    Ok(0)
}

/// The exit code `run --wait` passes on, as a shell reports it: the code,
/// or 128 + the signal number.
pub fn exit_code_of(r: &Record) -> i32 {
    match (r.exit_code, &r.exit_signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => parse_signal(sig).map(|n| 128 + n).unwrap_or(1),
        (None, None) if r.state == State::Exited => 0,
        _ => 1,
    }
}
