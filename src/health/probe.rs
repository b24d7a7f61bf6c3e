//! One probe of a check, bounded by its timeout, and its result.

use crate::model::{State, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::command::probe_command;
use super::http::probe_http;
use super::tcp::probe_tcp;
use super::*;

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
pub(super) fn tail_text(bytes: &[u8], max: usize) -> String {
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
pub(super) fn head_text(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
