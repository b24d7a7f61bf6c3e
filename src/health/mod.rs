//! Health checks: what a check is ([`HealthSpec`]), one probe of it
//! ([`probe`]), and the pure state machine ([`HealthState`]) that turns
//! probe results into `starting`, `healthy` or `unhealthy`.
//!
//! Nothing here runs on its own: the daemon schedules probes (every
//! `interval_sec`, only while the process runs: see [`is_probed`]), stores
//! each [`HealthState`] with [`crate::index::Index::save_health`], emits
//! [`health_event`] on a transition and acts on `on_unhealthy`.
//!
//! A probe is cheap and quiet: a command check runs `/bin/sh -c` as a
//! child of the caller (no systemd unit, no journal line per probe), an
//! HTTP or TCP check is one connection from the caller.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::{Record, State, Timestamp};
use crate::text::escape;

/// The shell a command check runs (`SHELL -c COMMAND`); the policy must
/// let the actor run it (see `Controller::run`).
pub const SHELL: &str = "/bin/sh";
/// Default seconds between two probes.
pub const DEFAULT_INTERVAL_SEC: u64 = 10;
/// Default seconds one probe may take.
pub const DEFAULT_TIMEOUT_SEC: u64 = 5;
/// Default consecutive failures before `unhealthy`.
pub const DEFAULT_RETRIES: u32 = 3;
/// Longest interval, timeout or start period accepted: one day.
pub const MAX_PERIOD_SEC: u64 = 86_400;
/// Most retries accepted.
pub const MAX_RETRIES: u32 = 1_000;
/// Largest `--health-cmd` accepted, in bytes.
pub const MAX_HEALTH_COMMAND: usize = 16 * 1024;
/// Longest `--health-http` URL or `--health-tcp` address accepted, in bytes.
pub const MAX_ADDRESS: usize = 2048;
/// How much output a probe keeps: the last this many bytes.
pub const MAX_OUTPUT: usize = 4096;
/// How much of an HTTP body a probe keeps after the status line.
const HTTP_BODY_PREFIX: usize = 512;
/// How much of the probe output an event carries.
const EVENT_OUTPUT: usize = 1024;

/// A health check as `run --health-*` gives it, kept in the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub check: HealthCheck,
    /// Seconds between the start of two probes (default 10).
    #[serde(default = "default_interval")]
    pub interval_sec: u64,
    /// Seconds one probe may take, at most `interval_sec` (default 5).
    #[serde(default = "default_timeout")]
    pub timeout_sec: u64,
    /// Consecutive counted failures before `unhealthy` (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds after the start of a run during which failures do not count
    /// while the process has not yet been healthy (default 0).
    #[serde(default)]
    pub start_period_sec: u64,
    /// What the daemon does when the process becomes unhealthy.
    #[serde(default)]
    pub on_unhealthy: OnUnhealthy,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SEC
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SEC
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HealthCheck {
    /// `/bin/sh -c COMMAND`; healthy when it exits 0.
    Cmd { command: String },
    /// A plain HTTP/1.1 GET of `http://host[:port]/path`; healthy on a
    /// status from 200 to 399.
    Http { url: String },
    /// A TCP connection to `HOST:PORT`; healthy when it is accepted.
    Tcp { address: String },
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::Cmd { command } => write!(f, "cmd {}", escape(command)),
            HealthCheck::Http { url } => write!(f, "http GET {}", escape(url)),
            HealthCheck::Tcp { address } => write!(f, "tcp connect {}", escape(address)),
        }
    }
}

/// What the daemon does when a process becomes unhealthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnhealthy {
    /// Restart it (as `refine-proc restart`).
    Restart,
    /// Stop it (as `refine-proc stop`).
    Stop,
    /// Only report it (status, list, the `unhealthy` event).
    #[default]
    None,
}

impl OnUnhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnhealthy::Restart => "restart",
            OnUnhealthy::Stop => "stop",
            OnUnhealthy::None => "none",
        }
    }
}

impl fmt::Display for OnUnhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnUnhealthy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "restart" => Ok(OnUnhealthy::Restart),
            "stop" => Ok(OnUnhealthy::Stop),
            "none" => Ok(OnUnhealthy::None),
            _ => Err(
                Error::invalid(format!("unknown --on-unhealthy action {:?}", escape(s)))
                    .hint("use one of: restart, stop, none"),
            ),
        }
    }
}

impl HealthSpec {
    /// A check with the default interval, timeout, retries, start period
    /// and action.
    pub fn new(check: HealthCheck) -> HealthSpec {
        HealthSpec {
            check,
            interval_sec: DEFAULT_INTERVAL_SEC,
            timeout_sec: DEFAULT_TIMEOUT_SEC,
            retries: DEFAULT_RETRIES,
            start_period_sec: 0,
            on_unhealthy: OnUnhealthy::None,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_sec)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_sec)
    }

    pub fn start_period(&self) -> Duration {
        Duration::from_secs(self.start_period_sec)
    }

    /// Checks the check and its timing, before anything runs.
    pub fn validate(&self) -> Result<()> {
        match &self.check {
            HealthCheck::Cmd { command } => check_command(command)?,
            HealthCheck::Http { url } => {
                parse_http_url(url)?;
            }
            HealthCheck::Tcp { address } => {
                parse_tcp_address(address)?;
            }
        }
        let period = |flag: &str, v: u64, min: u64| {
            if v < min || v > MAX_PERIOD_SEC {
                Err(
                    Error::invalid(format!("{flag} {v}s is out of range")).hint(format!(
                        "use {min}s to {MAX_PERIOD_SEC}s (one day), e.g. 10s or 1min"
                    )),
                )
            } else {
                Ok(())
            }
        };
        period("--health-interval", self.interval_sec, 1)?;
        period("--health-timeout", self.timeout_sec, 1)?;
        period("--health-start-period", self.start_period_sec, 0)?;
        if self.timeout_sec > self.interval_sec {
            return Err(Error::invalid(format!(
                "--health-timeout {}s is longer than --health-interval {}s",
                self.timeout_sec, self.interval_sec
            ))
            .hint("a probe must end before the next one starts: lower --health-timeout or raise --health-interval"));
        }
        if self.retries == 0 || self.retries > MAX_RETRIES {
            return Err(Error::invalid(format!(
                "--health-retries {} is out of range",
                self.retries
            ))
            .hint(format!(
                "use 1 to {MAX_RETRIES}: the failures in a row before the process is unhealthy"
            )));
        }
        Ok(())
    }
}

fn check_command(command: &str) -> Result<()> {
    if command.trim().is_empty() {
        return Err(Error::invalid("--health-cmd is empty")
            .hint("give a shell command that exits 0 when the process is healthy, e.g. --health-cmd 'curl -fsS localhost:8080/health'"));
    }
    if command.len() > MAX_HEALTH_COMMAND {
        return Err(Error::invalid(format!(
            "--health-cmd is {} bytes, more than the {MAX_HEALTH_COMMAND} accepted",
            command.len()
        ))
        .hint("put the check in a script and pass its path"));
    }
    if command.contains('\0') {
        return Err(Error::invalid("--health-cmd contains a NUL byte"));
    }
    Ok(())
}

/// Where an HTTP check connects and what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HttpTarget {
    /// As written in the URL: a name, an IPv4 address or `[IPv6]`.
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl HttpTarget {
    /// `host:port`, as a socket address lookup takes it.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The Host header: the port only when it is not 80.
    fn host_header(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            self.authority()
        }
    }
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::invalid(format!(
        "invalid --health-http URL {:?}: {why}",
        escape(url)
    ))
    .hint("use http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080/health")
}

/// Checks text that goes into a request line or an address: no control
/// characters, spaces or non-ASCII (a header cannot be smuggled in).
fn plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_http_url(url: &str) -> Result<HttpTarget> {
    if url.len() > MAX_ADDRESS {
        return Err(bad_url(
            &url.chars().take(60).collect::<String>(),
            &format!("longer than the {MAX_ADDRESS} bytes accepted"),
        ));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(Error::invalid(format!(
            "--health-http {:?}: https is not supported (health checks speak plain HTTP, without TLS)",
            escape(url)
        ))
        .hint("probe a plain http:// endpoint (e.g. on localhost), or use --health-cmd 'curl -fsS https://...'"));
    }
    let Some(rest) = lower.starts_with("http://").then(|| &url[7..]) else {
        return Err(bad_url(url, "it must start with http://"));
    };
    if !plain_ascii(rest) {
        return Err(bad_url(
            url,
            "it contains spaces, control or non-ASCII characters (percent-encode them)",
        ));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if authority.contains('@') {
        return Err(bad_url(url, "user names and passwords are not supported"));
    }
    let (host, port) = split_host_port(authority, 80).map_err(|why| bad_url(url, &why))?;
    Ok(HttpTarget { host, port, path })
}

/// `host[:port]` or `[v6][:port]` into the host as written and the port.
fn split_host_port(s: &str, default_port: u16) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("an IPv6 address lacks its closing ]".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{:?} is not an IPv6 address", escape(addr)));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "unexpected text after the IPv6 address".to_string())?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. [::1]:8080".into())
            }
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if !plain_ascii(&host) || host.contains(['/', '?', '#', '@']) {
        return Err(format!("{:?} is not a host name", escape(&host)));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "port {:?} is not a number from 1 to 65535",
                    escape(p)
                ))
            }
        },
    };
    if port == 0 {
        return Err("a port is needed (1 to 65535)".into());
    }
    Ok((host, port))
}

/// `HOST:PORT` into a lookup address; the port is required.
fn parse_tcp_address(address: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "invalid --health-tcp address {:?}: {why}",
            escape(&address.chars().take(200).collect::<String>())
        ))
        .hint("use HOST:PORT, e.g. 127.0.0.1:5432, localhost:6379 or [::1]:8080")
    };
    if address.len() > MAX_ADDRESS {
        return Err(bad("too long"));
    }
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.contains(':')
    };
    if !has_port {
        return Err(bad("the port is missing"));
    }
    let (host, port) = split_host_port(address, 0).map_err(|why| bad(&why))?;
    Ok(format!("{host}:{port}"))
}

/// Whether the daemon probes a process in this state: only while it runs.
/// A paused (frozen) process is not probed, so it does not turn
/// unhealthy for being paused; nor is one that is starting or ended.
pub fn is_probed(state: State) -> bool {
    state == State::Running
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// When the probe started.
    pub at: Timestamp,
    pub duration_ms: u64,
    /// What the probe saw: for a command the last 4 KiB of its stdout and
    /// stderr, for HTTP the status line and the start of the body, for
    /// TCP whom it connected to; on failure, why. Untrusted text, valid
    /// UTF-8 (invalid bytes become U+FFFD): escape it for terminals.
    pub output: String,
    /// A command's exit code; null for HTTP, TCP, a timeout or a signal.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// Runs one probe of `spec`, bounded by its timeout. A command check runs
/// `/bin/sh -c COMMAND` as a child of the caller in `cwd` (else the
/// caller's), with the caller's environment plus `env`, in its own process
/// group, which is killed at the timeout and once the shell has exited (a
/// probe leaves no process behind). Never fails: errors are results with
/// `ok: false` and the reason in `output`.
pub async fn probe(
    spec: &HealthSpec,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> ProbeResult {
    probe_in(spec, cwd, env, None).await
}

/// [`probe`], with a command check run inside `cgroup` (it enters it
/// before it execs the shell), which is emptied when the probe ends:
/// nothing it starts outlives it, not even a process in a new session.
pub async fn probe_in(
    spec: &HealthSpec,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
    cgroup: Option<crate::probe_cgroup::ProbeCgroup>,
) -> ProbeResult {
    let at = Timestamp::now();
    let started = Instant::now();
    let timeout = spec.timeout().max(Duration::from_millis(1));
    let (ok, output, exit_code) = match &spec.check {
        HealthCheck::Cmd { command } => {
            probe_command(command, timeout, cwd, env, cgroup.as_ref()).await
        }
        HealthCheck::Http { url } => {
            let (ok, output) = probe_http(url, timeout).await;
            (ok, output, None)
        }
        HealthCheck::Tcp { address } => {
            let (ok, output) = probe_tcp(address, timeout).await;
            (ok, output, None)
        }
    };
    ProbeResult {
        ok,
        at,
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        output: tail_text(output.as_bytes(), MAX_OUTPUT),
        exit_code,
    }
}

/// The last `max` bytes of `bytes` as text, starting at a character.
fn tail_text(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The first `max` bytes of `s`, ending at a character.
fn head_text(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The last `cap` bytes of a stream, read in full so the writer never
/// blocks on a full pipe.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(self.cap)..]
    }
}

/// Kills a process group when dropped, unless disarmed: a probe that is
/// cancelled (its future dropped) leaves nothing running either.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn probe_command(
    command: &str,
    timeout: Duration,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
    cgroup: Option<&crate::probe_cgroup::ProbeCgroup>,
) -> (bool, String, Option<i32>) {
    let deadline = tokio::time::Instant::now() + timeout;
    // One pipe for stdout and stderr: the output keeps its order, as in a
    // terminal.
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return (false, format!("cannot create a pipe: {e}"), None),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return (false, format!("cannot create a pipe: {e}"), None),
    };
    let mut cmd = tokio::process::Command::new(SHELL);
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.envs(env);
    if let Some(fd) = cgroup.map(|c| c.procs_fd()) {
        // SAFETY: the closure makes one write(2), which is
        // async-signal-safe, and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(move || crate::probe_cgroup::enter(fd));
        }
    }
    let spawned = cmd.spawn();
    // Closes our copies of the pipe's write end: EOF once the probe's
    // processes are gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let place = cwd
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default();
            return (false, format!("cannot run {SHELL}{place}: {e}"), None);
        }
    };
    let Some(pid) = child.id() else {
        return (false, "the probe command vanished at once".into(), None);
    };
    let mut group = GroupKill(i32::try_from(pid).ok());
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).ok();
    let mut tail = Tail {
        buf: Vec::new(),
        cap: MAX_OUTPUT,
    };
    let mut chunk = vec![0u8; 8192];
    let status = {
        let wait = child.wait();
        tokio::pin!(wait);
        let status = loop {
            tokio::select! {
                status = &mut wait => break Some(status),
                n = read_some(&mut pipe, &mut chunk) => match n {
                    Some(n) => tail.push(&chunk[..n]),
                    None => pipe = None,
                },
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        match status {
            Some(status) => Some(status),
            None => {
                // Timed out: the shell is not reaped yet, so its pid still
                // names its group.
                group.kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut wait).await;
                None
            }
        }
    };
    // Whatever the shell left behind (a background job holding the pipe)
    // goes too. The group's id cannot name another group while any member
    // lives, and the leader was reaped a moment ago. The cgroup also holds
    // what left the group (setsid).
    group.kill();
    if let Some(c) = cgroup {
        c.kill();
    }
    // The rest of the output, briefly: the writers are gone.
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(200);
    while pipe.is_some() {
        match tokio::time::timeout_at(drain_until, read_some(&mut pipe, &mut chunk)).await {
            Ok(Some(n)) => tail.push(&chunk[..n]),
            _ => break,
        }
    }
    let mut output = String::from_utf8_lossy(tail.bytes()).into_owned();
    let mut note = |line: String| {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&line);
    };
    match status {
        None => {
            note(format!(
                "timed out after {}s; the probe command was killed",
                timeout.as_secs_f64()
            ));
            (false, output, None)
        }
        Some(Err(e)) => {
            note(format!("cannot wait for the probe command: {e}"));
            (false, output, None)
        }
        Some(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => (code == 0, output, Some(code)),
                (None, Some(sig)) => {
                    note(format!(
                        "the probe command was killed by signal {}",
                        crate::text::signal_name(sig)
                    ));
                    (false, output, None)
                }
                _ => (false, output, None),
            }
        }
    }
}

/// Reads what is there; None at EOF or on an error. Pends forever when
/// there is no pipe, so a `select!` branch on it simply never fires.
async fn read_some(
    pipe: &mut Option<tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn probe_tcp(address: &str, timeout: Duration) -> (bool, String) {
    let address = match parse_tcp_address(address) {
        Ok(a) => a,
        Err(e) => return (false, e.message),
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(stream)) => {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| address.clone());
            (true, format!("connected to {peer}"))
        }
        Ok(Err(e)) => (false, format!("cannot connect to {address}: {e}")),
        Err(_) => (
            false,
            format!(
                "timed out after {}s connecting to {address}",
                timeout.as_secs_f64()
            ),
        ),
    }
}

async fn probe_http(url: &str, timeout: Duration) -> (bool, String) {
    let target = match parse_http_url(url) {
        Ok(t) => t,
        Err(e) => return (false, e.message),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let secs = timeout.as_secs_f64();
    match tokio::time::timeout_at(deadline, http_get(&target)).await {
        Ok(Ok((code, output))) => ((200..=399).contains(&code), output),
        Ok(Err(why)) => (false, why),
        Err(_) => (false, format!("timed out after {secs}s")),
    }
}

/// One GET over a new HTTP/1.1 connection (hyper's client connection, no
/// pool): the status code, and the status line with the start of the
/// body. Bounded by the caller's timeout.
async fn http_get(target: &HttpTarget) -> std::result::Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let authority = target.authority();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk HTTP to {authority}: {e}"))?;
    // The connection is driven beside the request, and dropped with it.
    let connection = async move {
        let _ = connection.await;
        std::future::pending::<()>().await
    };
    let request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.host_header())
        .header(hyper::header::USER_AGENT, "refine-proc-health")
        .header(hyper::header::ACCEPT, "*/*")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_parse() {
                format!("not an HTTP response: {e}")
            } else if e.is_incomplete_message() {
                "the server closed the connection without a response".to_string()
            } else {
                format!("cannot get a response from {authority}: {e}")
            }
        })?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(String::from))
            .unwrap_or_default();
        let mut output = format!("{:?} {} {reason}", response.version(), status.as_u16());
        output.truncate(output.trim_end().len());
        // Only the start of the body is kept; a body that fails half-way
        // still has its status.
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < HTTP_BODY_PREFIX {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&kept);
        let text = head_text(text.trim(), HTTP_BODY_PREFIX);
        if !text.is_empty() {
            output.push('\n');
            output.push_str(text);
        }
        Ok((status.as_u16(), output))
    };
    tokio::select! {
        result = exchange => result,
        () = connection => unreachable!("the connection future never ends"),
    }
}

/// Where a process stands, as its probes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// No success yet in this run.
    Starting,
    Healthy,
    /// `retries` counted failures in a row.
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the probes of one run have found; kept outside the record (see
/// [`crate::index::Index::save_health`]), rewritten after every probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    /// Counted failures in a row (reset by a success).
    pub failures: u32,
    /// The latest probe's result.
    pub last: Option<ProbeResult>,
    /// When `status` last changed.
    pub since: Timestamp,
}

impl HealthState {
    /// The state of a run nothing has probed yet: starting.
    pub fn new(now: Timestamp) -> HealthState {
        HealthState {
            status: HealthStatus::Starting,
            failures: 0,
            last: None,
            since: now,
        }
    }

    /// Takes in one probe result of the run that started at `run_started`;
    /// returns the new status when it changed. As Docker does it: a
    /// success makes the process healthy (and resets the failures); a
    /// failure counts unless it happens within the start period while the
    /// process has not been healthy yet; `retries` counted failures in a
    /// row make it unhealthy.
    pub fn apply(
        &mut self,
        spec: &HealthSpec,
        result: ProbeResult,
        run_started: Timestamp,
    ) -> Option<HealthStatus> {
        let before = self.status;
        let at = result.at;
        if result.ok {
            self.failures = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let start_period_ends = run_started.0 + spec.start_period();
            let grace = self.status == HealthStatus::Starting && at.0 < start_period_ends;
            if !grace {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= spec.retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.last = Some(result);
        (self.status != before).then(|| {
            self.since = at;
            self.status
        })
    }
}

/// What `status` shows of a process's health: the check and, once the
/// daemon has probed it, the state (null before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    #[serde(flatten)]
    pub spec: HealthSpec,
    pub state: Option<HealthState>,
}

/// The event of a health transition (`healthy`, `unhealthy`,
/// `health-starting`), with the status before and the probe that caused it.
pub fn health_event(
    record: &Record,
    from: HealthStatus,
    to: HealthStatus,
    last: &ProbeResult,
) -> Event {
    let name = match to {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Unhealthy => "unhealthy",
        HealthStatus::Starting => "health-starting",
    };
    let mut event = Event::about(name, record)
        .with("from", from)
        .with("ok", last.ok)
        .with("probe_at", last.at)
        .with("duration_ms", last.duration_ms)
        .with("exit_code", last.exit_code)
        .with("output", tail_text(last.output.as_bytes(), EVENT_OUTPUT));
    event.actor = Some("refine-proc".into());
    if let Some(spec) = &record.health {
        event = event
            .with("check", spec.check.to_string())
            .with("on_unhealthy", spec.on_unhealthy);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use tokio::io::AsyncWriteExt;

    fn spec(check: HealthCheck) -> HealthSpec {
        HealthSpec::new(check)
    }

    fn http(url: &str) -> HealthSpec {
        spec(HealthCheck::Http { url: url.into() })
    }

    fn tcp(address: &str) -> HealthSpec {
        spec(HealthCheck::Tcp {
            address: address.into(),
        })
    }

    fn cmd(command: &str) -> HealthSpec {
        spec(HealthCheck::Cmd {
            command: command.into(),
        })
    }

    #[test]
    fn urls_addresses_and_commands_are_checked_with_a_fix() {
        for ok in [
            "http://localhost",
            "http://127.0.0.1:8080/health",
            "http://[::1]:9000/x?y=1",
            "HTTP://example.com/a/b",
        ] {
            http(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = http("https://example.com/").validate().unwrap_err();
        assert!(e.message.contains("TLS"), "{e}");
        assert!(e.hint.is_some());
        for (bad, why) in [
            ("ftp://x/", "http://"),
            ("http://", "host is missing"),
            ("http://:80/", "host is missing"),
            ("http://x:0/", "port"),
            ("http://x:99999/", "port"),
            ("http://x:abc/", "port"),
            ("http://u:p@x/", "passwords"),
            ("http://x/a b", "spaces"),
            ("http://x/\r\nEvil: 1", "control"),
            ("http://::1/", "brackets"),
            ("http://[zz]/", "IPv6"),
        ] {
            let e = http(bad).validate().unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e}");
            assert_eq!(e.kind, crate::ErrorKind::Invalid);
            assert!(e.hint.is_some(), "{bad}");
        }
        assert_eq!(
            parse_http_url("http://h:81").unwrap(),
            HttpTarget {
                host: "h".into(),
                port: 81,
                path: "/".into()
            }
        );
        assert_eq!(parse_http_url("http://h?q=1#frag").unwrap().path, "/?q=1");
        assert_eq!(parse_http_url("http://h/").unwrap().host_header(), "h");
        assert_eq!(
            parse_http_url("http://[::1]:8080/").unwrap().host_header(),
            "[::1]:8080"
        );

        for ok in ["localhost:5432", "127.0.0.1:1", "[::1]:65535"] {
            tcp(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("localhost", "port is missing"),
            ("localhost:0", "port"),
            ("localhost:70000", "port"),
            (":80", "host is missing"),
            ("[::1]", "port is missing"),
            ("a b:80", "not a host"),
        ] {
            let e = tcp(bad).validate().unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e}");
            assert!(e.hint.is_some(), "{bad}");
        }

        cmd("true").validate().unwrap();
        assert!(cmd("  ").validate().unwrap_err().message.contains("empty"));
        let huge = "x".repeat(MAX_HEALTH_COMMAND + 1);
        assert!(cmd(&huge).validate().unwrap_err().message.contains("bytes"));
        assert!(cmd("a\0b").validate().is_err());
    }

    #[test]
    fn timings_are_checked() {
        let mut s = cmd("true");
        s.validate().unwrap();
        s.timeout_sec = 11;
        let e = s.validate().unwrap_err();
        assert!(e.message.contains("longer than --health-interval"), "{e}");
        s.timeout_sec = 10;
        s.validate().unwrap();
        s.interval_sec = 0;
        assert!(s.validate().is_err());
        let mut s = cmd("true");
        s.retries = 0;
        assert!(s.validate().unwrap_err().message.contains("retries"));
        let mut s = cmd("true");
        s.start_period_sec = MAX_PERIOD_SEC + 1;
        assert!(s.validate().unwrap_err().message.contains("start-period"));
        let mut s = cmd("true");
        s.timeout_sec = 0;
        assert!(s.validate().is_err());
    }

    #[test]
    fn the_spec_round_trips_and_defaults_fill_in() {
        let s = HealthSpec {
            on_unhealthy: OnUnhealthy::Restart,
            ..http("http://localhost:8080/health")
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["check"]["kind"], "http");
        assert_eq!(json["check"]["url"], "http://localhost:8080/health");
        assert_eq!(json["on_unhealthy"], "restart");
        assert_eq!(serde_json::from_value::<HealthSpec>(json).unwrap(), s);
        let minimal: HealthSpec =
            serde_json::from_str(r#"{"check": {"kind": "tcp", "address": "h:1"}}"#).unwrap();
        assert_eq!(minimal, tcp("h:1"));
        assert_eq!("stop".parse::<OnUnhealthy>().unwrap(), OnUnhealthy::Stop);
        let e = "reboot".parse::<OnUnhealthy>().unwrap_err();
        assert!(e.hint.unwrap().contains("restart, stop, none"));
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
    }

    fn result(ok: bool, at: u64) -> ProbeResult {
        ProbeResult {
            ok,
            at: t(at),
            duration_ms: 1,
            output: String::new(),
            exit_code: None,
        }
    }

    #[test]
    fn failures_within_the_start_period_do_not_count_until_healthy() {
        let mut s = cmd("true");
        s.start_period_sec = 30;
        s.retries = 2;
        let mut h = HealthState::new(t(0));
        for at in [5, 15, 25] {
            assert_eq!(h.apply(&s, result(false, at), t(0)), None);
            assert_eq!((h.status, h.failures), (HealthStatus::Starting, 0));
        }
        // Past the start period they count.
        assert_eq!(h.apply(&s, result(false, 35), t(0)), None);
        assert_eq!(h.failures, 1);
        assert_eq!(
            h.apply(&s, result(false, 45), t(0)),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(h.since, t(45));
        assert!(h.last.as_ref().is_some_and(|l| l.at == t(45)));

        // Once healthy, failures count even within the start period.
        let mut h = HealthState::new(t(0));
        assert_eq!(
            h.apply(&s, result(true, 5), t(0)),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(h.apply(&s, result(false, 10), t(0)), None);
        assert_eq!(
            h.apply(&s, result(false, 15), t(0)),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
        let s = cmd("true"); // retries 3, no start period
        let mut h = HealthState::new(t(0));
        assert_eq!(
            h.apply(&s, result(true, 1), t(0)),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(h.apply(&s, result(true, 2), t(0)), None);
        // A success between failures resets the count.
        assert_eq!(h.apply(&s, result(false, 3), t(0)), None);
        assert_eq!(h.apply(&s, result(false, 4), t(0)), None);
        assert_eq!(h.apply(&s, result(true, 5), t(0)), None);
        assert_eq!(h.failures, 0);
        assert_eq!(h.apply(&s, result(false, 6), t(0)), None);
        assert_eq!(h.apply(&s, result(false, 7), t(0)), None);
        assert_eq!(
            h.apply(&s, result(false, 8), t(0)),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(h.apply(&s, result(false, 9), t(0)), None, "no repeat");
        assert_eq!(h.failures, 4);
        assert_eq!(
            h.apply(&s, result(true, 10), t(0)),
            Some(HealthStatus::Healthy)
        );
        assert_eq!((h.failures, h.since), (0, t(10)));

        // Never healthy: starting turns unhealthy after the retries.
        let mut h = HealthState::new(t(0));
        assert_eq!(h.apply(&s, result(false, 1), t(0)), None);
        assert_eq!(h.apply(&s, result(false, 2), t(0)), None);
        assert_eq!(
            h.apply(&s, result(false, 3), t(0)),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn the_state_round_trips_as_json() {
        let mut h = HealthState::new(t(0));
        h.apply(&cmd("true"), result(true, 1), t(0));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["last"]["ok"], true);
        assert_eq!(serde_json::from_value::<HealthState>(json).unwrap(), h);
    }

    #[test]
    fn an_event_names_the_transition() {
        let r: Record = serde_json::from_value(serde_json::json!({
            "id": "abcd2345", "unit": "refine-agent-abcd2345.service",
            "owner": "agent", "state": "running",
            "health": {"check": {"kind": "cmd", "command": "true"}, "on_unhealthy": "restart"}
        }))
        .unwrap();
        let mut last = result(false, 1);
        last.output = "x".repeat(5000);
        let e = health_event(&r, HealthStatus::Healthy, HealthStatus::Unhealthy, &last);
        assert_eq!(e.event, "unhealthy");
        assert_eq!(e.id.as_deref(), Some("abcd2345"));
        assert_eq!(e.details["from"], "healthy");
        assert_eq!(e.details["on_unhealthy"], "restart");
        assert_eq!(e.details["output"].as_str().unwrap().len(), EVENT_OUTPUT);
        let e = health_event(&r, HealthStatus::Unhealthy, HealthStatus::Starting, &last);
        assert_eq!(e.event, "health-starting");
    }

    #[test]
    fn output_is_cut_at_characters() {
        assert_eq!(tail_text("aé".as_bytes(), 1), "");
        assert_eq!(tail_text("éa".as_bytes(), 2), "a");
        assert_eq!(tail_text(b"abc", 10), "abc");
        assert_eq!(tail_text(b"a\xffb", 10), "a\u{fffd}b");
        assert_eq!(head_text("éa", 1), "");
    }

    // Probes against real local endpoints.

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A server that answers every connection with `response`, then closes.
    async fn serve(response: &'static [u8]) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(response).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        port
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn http_probes_read_the_status_and_the_start_of_the_body() {
        rt().block_on(async {
            let env = BTreeMap::new();
            let ok = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nall ok\n").await;
            let r = probe(&http(&format!("http://127.0.0.1:{ok}/health")), None, &env).await;
            assert!(r.ok, "{r:?}");
            assert_eq!(r.output, "HTTP/1.1 200 OK\nall ok");
            assert_eq!(r.exit_code, None);

            let redirect = serve(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n").await;
            let r = probe(&http(&format!("http://127.0.0.1:{redirect}/")), None, &env).await;
            assert!(r.ok, "{r:?}");

            let err = serve(
                b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nboom!\r\n0\r\n\r\n",
            )
            .await;
            let r = probe(&http(&format!("http://127.0.0.1:{err}/")), None, &env).await;
            assert!(!r.ok);
            assert_eq!(r.output, "HTTP/1.1 500 Internal Server Error\nboom!");

            let garbage = serve(b"SSH-2.0-OpenSSH_9\r\n\r\n").await;
            let r = probe(&http(&format!("http://127.0.0.1:{garbage}/")), None, &env).await;
            assert!(!r.ok && r.output.contains("not an HTTP response"), "{r:?}");

            let closed = closed_port();
            let r = probe(&http(&format!("http://127.0.0.1:{closed}/")), None, &env).await;
            assert!(!r.ok && r.output.contains("cannot connect"), "{r:?}");
        });
    }

    #[test]
    fn an_http_probe_that_gets_no_answer_times_out() {
        rt().block_on(async {
            // Accepts (the kernel does, from the backlog) but never answers.
            let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = silent.local_addr().unwrap().port();
            let mut s = http(&format!("http://127.0.0.1:{port}/"));
            s.timeout_sec = 1;
            let started = Instant::now();
            let r = probe(&s, None, &BTreeMap::new()).await;
            let took = started.elapsed();
            assert!(!r.ok && r.output.contains("timed out"), "{r:?}");
            assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3));
            drop(silent);
        });
    }

    #[test]
    fn tcp_probes_connect_or_say_why_not() {
        rt().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let r = probe(&tcp(&format!("127.0.0.1:{port}")), None, &BTreeMap::new()).await;
            assert!(r.ok, "{r:?}");
            assert!(r.output.contains("connected to 127.0.0.1"));
            let closed = closed_port();
            let r = probe(&tcp(&format!("127.0.0.1:{closed}")), None, &BTreeMap::new()).await;
            assert!(!r.ok && r.output.contains("refused"), "{r:?}");
        });
    }

    #[test]
    fn command_probes_report_the_exit_and_the_output() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let env = BTreeMap::from([("PROBE_X".to_string(), "42".to_string())]);
            let r = probe(
                &cmd("echo out $PROBE_X; echo err >&2; pwd"),
                Some(dir.path()),
                &env,
            )
            .await;
            assert!(r.ok, "{r:?}");
            assert_eq!(r.exit_code, Some(0));
            let canonical = std::fs::canonicalize(dir.path()).unwrap();
            assert_eq!(r.output, format!("out 42\nerr\n{}\n", canonical.display()));
            let r = probe(&cmd("echo nope; exit 3"), None, &env).await;
            assert!(!r.ok);
            assert_eq!((r.exit_code, r.output.as_str()), (Some(3), "nope\n"));
            let r = probe(&cmd("kill -9 $$"), None, &env).await;
            assert!(!r.ok && r.output.contains("signal KILL"), "{r:?}");
            let r = probe(&cmd("true"), Some(Path::new("/no/such/dir")), &env).await;
            assert!(!r.ok && r.output.contains("cannot run"), "{r:?}");
        });
    }

    #[test]
    fn command_output_keeps_its_last_4_kib() {
        rt().block_on(async {
            // 1 MiB of output, then a marker: the writer is never blocked,
            // and the end is what is kept.
            let r = probe(
                &cmd("head -c 1048576 /dev/zero | tr '\\0' x; echo; echo THE-END"),
                None,
                &BTreeMap::new(),
            )
            .await;
            assert!(r.ok, "{}", &r.output[r.output.len().saturating_sub(200)..]);
            assert_eq!(r.output.len(), MAX_OUTPUT);
            assert!(r.output.ends_with("x\nTHE-END\n"));
        });
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: kill(2) with signal 0 only checks.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let pidfile = dir.path().join("pids");
            let mut s = cmd(&format!(
                "sleep 300 & echo $! > {0}; echo $$ >> {0}; echo started; wait",
                pidfile.display()
            ));
            s.timeout_sec = 1;
            let started = Instant::now();
            let r = probe(&s, None, &BTreeMap::new()).await;
            let took = started.elapsed();
            assert!(!r.ok && r.exit_code.is_none());
            assert!(r.output.starts_with("started\n"), "{r:?}");
            assert!(r.output.contains("timed out after 1s"), "{r:?}");
            assert!(
                took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
                "{took:?}"
            );
            let pids = std::fs::read_to_string(&pidfile).unwrap();
            for pid in pids.lines() {
                let pid: i32 = pid.trim().parse().unwrap();
                // Killed and reaped (the sleep's parent, the shell, is gone,
                // so init reaps it; allow a moment).
                let gone = (0..50).any(|_| {
                    let zombie_or_gone = !alive(pid)
                        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .map(|s| s.contains(") Z "))
                            .unwrap_or(true);
                    if !zombie_or_gone {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    zombie_or_gone
                });
                assert!(gone, "pid {pid} of the probe still runs");
            }
        });
    }

    #[test]
    fn a_background_job_does_not_hold_a_finished_probe() {
        rt().block_on(async {
            let started = Instant::now();
            let mut s = cmd("sleep 300 & echo done");
            s.timeout_sec = 5;
            let r = probe(&s, None, &BTreeMap::new()).await;
            assert!(r.ok, "{r:?}");
            assert_eq!(r.output, "done\n");
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn only_running_processes_are_probed() {
        assert!(is_probed(State::Running));
        for s in [State::Paused, State::Starting, State::Queued, State::Exited] {
            assert!(!is_probed(s), "{s}");
        }
    }
}
