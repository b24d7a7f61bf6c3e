//! Command checks: `/bin/sh -c` as a child of the caller, in its own process
//! group (or cgroup), killed at the timeout, its output's tail kept.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

use super::*;

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

pub(super) async fn probe_command(
    command: &str,
    timeout: Duration,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
    cgroup: Option<&crate::probe_cgroup::ProbeCgroup>,
) -> (bool, String, Option<i32>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut child, reader) = match spawn_probe(command, cwd, env, cgroup) {
        Ok(spawned) => spawned,
        Err(why) => return (false, why, None),
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
        if status.is_none() {
            // Timed out: the shell is not reaped yet, so its pid still
            // names its group.
            group.kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut wait).await;
        }
        status
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
    let output = String::from_utf8_lossy(tail.bytes()).into_owned();
    verdict(status, output, timeout)
}

/// Starts `/bin/sh -c command` in a process group of its own (and in
/// `cgroup`), its stdout and stderr on one pipe whose read end it returns;
/// else why not.
fn spawn_probe(
    command: &str,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
    cgroup: Option<&crate::probe_cgroup::ProbeCgroup>,
) -> Result<(tokio::process::Child, std::io::PipeReader), String> {
    // One pipe for stdout and stderr: the output keeps its order, as in a
    // terminal.
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| format!("cannot create a pipe: {e}"))?;
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
    let child = spawned.map_err(|e| {
        let place = cwd
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default();
        format!("cannot run {SHELL}{place}: {e}")
    })?;
    Ok((child, reader))
}

/// Whether the probe passed, its output with a last line saying why it
/// failed where the output cannot (a timeout, a signal), and its exit code.
fn verdict(
    status: Option<std::io::Result<std::process::ExitStatus>>,
    mut output: String,
    timeout: Duration,
) -> (bool, String, Option<i32>) {
    let mut note = |line: String| {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&line);
    };
    let code = match status {
        None => {
            note(format!(
                "timed out after {}s; the probe command was killed",
                timeout.as_secs_f64()
            ));
            None
        }
        Some(Err(e)) => {
            note(format!("cannot wait for the probe command: {e}"));
            None
        }
        Some(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            if let (None, Some(sig)) = (status.code(), status.signal()) {
                note(format!(
                    "the probe command was killed by signal {}",
                    crate::text::signal_name(sig)
                ));
            }
            status.code()
        }
    };
    (code == Some(0), output, code)
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
