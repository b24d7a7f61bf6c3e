//! `logs`: journalctl does the reading; this decides how its output
//! reaches stdout (straight, as JSON Lines, or with a prefix naming the
//! process) and, for `logs -f ID`, when to stop: once the process has
//! ended, as `docker logs -f` and `pueue follow` do.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use refine_proc::controller::{LogSelector, LogsRequest, Request, Response};
use refine_proc::journal::{self, LogQuery, TEXT_FORMATS};
use refine_proc::text::{escape, truncate};
use refine_proc::{Controller, Error, Record, Result, State};

use super::{output, remote, Core};

/// After the process has ended, journald may still be storing its last
/// lines (it reads a stream asynchronously and offers an unprivileged user
/// no "ingested" signal): keep copying until the output has been quiet
/// this long...
const QUIET: Duration = Duration::from_millis(500);
/// ...but no longer than this after the end.
const DRAIN_MAX: Duration = Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Record id (or a unique prefix), or unit name
    #[arg(required_unless_present_any = ["owner", "workflow"], conflicts_with_all = ["owner", "workflow"])]
    pub id: Option<String>,
    /// All processes of this owner
    #[arg(long)]
    pub owner: Option<String>,
    /// All processes of this workflow
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    /// Keep printing new lines as they arrive
    #[arg(long, short)]
    pub follow: bool,
    /// Show only the last N lines
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<u64>,
    /// Start at this time: -1h, '10min ago', today, yesterday, '2026-11-20 10:00', @EPOCH
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// End at this time (the same forms as --since)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Text format: cat (only the output), short, short-iso, short-precise, verbose
    #[arg(long, short, default_value = "cat")]
    pub output: String,
    /// Print JSON Lines (one object a line)
    #[arg(long)]
    pub json: bool,
    /// Start each line with the process that wrote it (ID LABEL |) [default:
    /// for --owner and --workflow, when stdout is a terminal]
    #[arg(long, conflicts_with_all = ["no_prefix", "json"])]
    pub prefix: bool,
    /// Print the lines as they were written, without the process
    #[arg(long)]
    pub no_prefix: bool,
}

/// `logs`: the core says which processes and which lines; journalctl
/// streams them (a follow has no end to answer with) and this shapes them.
pub async fn logs(core: &Core, args: LogsArgs) -> Result<i32> {
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
    let of = match (&args.id, &args.owner, &args.workflow) {
        (Some(id), _, _) => LogSelector::Id(id.clone()),
        (None, Some(owner), _) => LogSelector::Owner(owner.parse()?),
        (None, None, Some(wf)) => LogSelector::Workflow(wf.clone()),
        (None, None, None) => unreachable!("clap requires an id, --owner or --workflow"),
    };
    let controller = match core {
        Core::Socket(socket) => return by_socket(socket, args).await,
        Core::Local(controller) => controller,
    };
    let request = LogsRequest {
        of,
        lines: args.lines,
        since,
        until,
        follow: args.follow,
    };
    let sources = match controller.handle(Request::Logs(request)).await?.response {
        Response::LogSources(s) => *s,
        other => unreachable!("logs answers its sources, not {other:?}"),
    };
    let records = sources.records;
    if records.is_empty() {
        eprintln!("refine-proc: no matching processes, so no logs");
        return Ok(0);
    }
    // Only `cat` lacks the writer: the other formats name its identifier.
    let group = args.id.is_none();
    let prefix = match (args.prefix, args.no_prefix) {
        (true, _) => true,
        (_, true) => false,
        _ => group && std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let shape = if args.json {
        Shape::Json
    } else if prefix && args.output == "cat" {
        Shape::Prefixed(tags(&records))
    } else {
        Shape::Raw
    };
    // `logs -f ID` ends with the process; a queued one has not begun.
    let until_end = records
        .first()
        .filter(|r| args.follow && !group && r.state != State::Queued);
    show(controller, &sources.query, &args.output, shape, until_end).await
}

/// `logs ID [--lines N]` over the daemon's socket (the daemon reads the
/// journal); the rest needs journalctl here.
async fn by_socket(socket: &std::path::Path, args: LogsArgs) -> Result<i32> {
    let plain = !args.follow
        && !args.json
        && args.output == "cat"
        && args.since.is_none()
        && args.until.is_none();
    let Some(id) = args.id.filter(|_| plain) else {
        return Err(Error::invalid(
            "logs other than `logs ID [--lines N]` is not available through the daemon's API socket",
        )
        .hint("run it outside the sandbox"));
    };
    let entries = remote::logs(socket, &id, args.lines).await?;
    let text: String = entries.iter().map(|e| format!("{}\n", e.message)).collect();
    output::io_result(std::io::stdout().write_all(text.as_bytes()))?;
    Ok(0)
}

/// How journalctl's output is turned into ours.
#[derive(Clone)]
enum Shape {
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
fn tags(records: &[Record]) -> BTreeMap<String, String> {
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
async fn show(
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
        _ => super::run::exit_code_of(r),
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
