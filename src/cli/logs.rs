//! `logs`: journalctl does the reading; this decides how its output
//! reaches stdout (straight, as JSON Lines, or with a prefix naming the
//! process) and, for `logs -f ID`, when to stop: once the process has
//! ended, as `docker logs -f` and `pueue follow` do.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use refine_proc::journal::{self, LogQuery};
use refine_proc::text::{escape, truncate};
use refine_proc::{Controller, Error, Record, Result, State};

use super::output;

/// After the process has ended, journald may still be storing its last
/// lines (it reads a stream asynchronously and offers an unprivileged user
/// no "ingested" signal): keep copying until the output has been quiet
/// this long...
const QUIET: Duration = Duration::from_millis(500);
/// ...but no longer than this after the end.
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// How journalctl's output is turned into ours.
#[derive(Clone)]
pub(super) enum Shape {
    /// Copied byte for byte (a text format).
    Raw,
    /// One JSON object a line ([`journal::LogEntry`]), read from
    /// journalctl's export format (systemd 252 writes it several times
    /// faster than its JSON).
    Json,
    /// The message after a tag naming the process: `ID LABEL | text`.
    Prefixed(BTreeMap<String, String>),
}

impl Shape {
    /// The journalctl format to ask for.
    fn format<'a>(&self, text: &'a str) -> &'a str {
        match self {
            Shape::Raw => text,
            Shape::Json | Shape::Prefixed(_) => "export",
        }
    }
}

/// The tags of a group's processes, padded to one width: `k3x9p2qa build  `.
pub(super) fn tags(records: &[Record]) -> BTreeMap<String, String> {
    let label = |r: &Record| truncate(&escape(&r.label), 24);
    let width = records
        .iter()
        .map(|r| label(r).chars().count())
        .max()
        .unwrap_or(0);
    records
        .iter()
        .map(|r| {
            let l = label(r);
            let pad = width - l.chars().count();
            (r.id.clone(), format!("{} {l}{}", r.id, " ".repeat(pad)))
        })
        .collect()
}

/// Runs journalctl for `query` and copies its output in `shape`; with
/// `until_end`, stops once that process has ended and its last lines are
/// out, prints how it ended on stderr and returns its exit code.
pub(super) async fn show(
    controller: &Controller,
    query: &LogQuery,
    text_format: &str,
    shape: Shape,
    until_end: Option<&Record>,
) -> Result<i32> {
    let format = shape.format(text_format);
    if matches!(shape, Shape::Raw) && until_end.is_none() {
        // journalctl writes straight to our stdout: nothing to copy.
        let status = journal::command(query, format)
            .status()
            .map_err(spawn_error)?;
        return Ok(journalctl_exit_code(status));
    }
    let mut child = journal::command(query, format)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (activity, quiet) = mpsc::channel();
    let flush_each = query.follow;
    let copier = std::thread::spawn(move || {
        let copied = copy(stdout, &shape, flush_each, &activity);
        if let Err(e) = &copied {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // Our reader went away (`logs -f | head`): so do we.
                std::process::exit(0);
            }
        }
        copied
    });
    let Some(record) = until_end else {
        return finish(child, copier);
    };
    // On systemd's signals, as `run --wait` waits: the unit is gone once
    // the process has ended and its exit is recorded.
    controller
        .systemd()
        .await?
        .wait_until_gone(&record.unit)
        .await?;
    tokio::task::spawn_blocking(move || drain(&quiet))
        .await
        .map_err(|e| Error::systemd(format!("cannot wait for the last lines: {e}")))?;
    let _ = child.kill();
    finish(child, copier)?;
    let ended = controller.record(&record.id).await?;
    output::finished(&ended)?;
    Ok(end_code(&ended))
}

/// Waits until no output came for [`QUIET`], at most [`DRAIN_MAX`].
fn drain(activity: &mpsc::Receiver<()>) {
    let deadline = Instant::now() + DRAIN_MAX;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match activity.recv_timeout(QUIET.min(left)) {
            Ok(()) if !left.is_zero() => continue,
            _ => return,
        }
    }
}

/// journalctl's exit and the copier's result.
fn finish(mut child: Child, copier: std::thread::JoinHandle<std::io::Result<()>>) -> Result<i32> {
    let copied = copier
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the copier panicked")));
    output::io_result(copied)?;
    let status = child.wait().map_err(spawn_error)?;
    Ok(journalctl_exit_code(status))
}

/// Copies journalctl's output to stdout in `shape`, telling `activity`
/// after each write.
fn copy(
    from: impl Read,
    shape: &Shape,
    flush_each: bool,
    activity: &mpsc::Sender<()>,
) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut reader = BufReader::new(from);
    if let Shape::Raw = shape {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return out.flush();
            }
            out.write_all(&buf[..n])?;
            out.flush()?;
            let _ = activity.send(());
        }
    }
    while let Some(entry) = journal::read_export_entry(&mut reader)? {
        match shape {
            Shape::Prefixed(tags) => {
                let id = entry.id.as_deref().unwrap_or("-");
                let tag = tags.get(id).map(String::as_str).unwrap_or(id);
                writeln!(out, "{tag} | {}", entry.message)?;
            }
            _ => {
                serde_json::to_writer(&mut out, &entry)?;
                out.write_all(b"\n")?;
            }
        }
        if flush_each {
            out.flush()?;
        }
        let _ = activity.send(());
    }
    out.flush()
}

/// The exit code of `logs -f ID` once the process has ended: its own, as
/// `run --wait` passes it on (128+N for signal N); 0 for an adopted scope,
/// which has no exit status, unless it failed.
pub(super) fn end_code(r: &Record) -> i32 {
    match (r.exit_code, &r.exit_signal, r.state) {
        (None, None, State::Ended) => 0,
        _ => super::exit_code_of(r),
    }
}

fn spawn_error(e: std::io::Error) -> Error {
    Error::systemd(format!("cannot run journalctl: {e}"))
        .hint("install systemd's journalctl (Debian: apt install systemd)")
}

/// journalctl's exit code; killed by SIGPIPE means our reader went away
/// (`logs | head`), which is not a failure, nor is our own kill of it.
fn journalctl_exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(libc::SIGPIPE | libc::SIGKILL)) => 0,
        _ => 1,
    }
}
