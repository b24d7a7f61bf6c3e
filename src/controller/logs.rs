//! A process's output as pages with a journald cursor, and waiting: for
//! new lines, for a line that matches, for its exit or its health. What the
//! API and the MCP server serve; the CLI's `logs` streams journalctl itself.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use super::*;
use crate::journal::{LogEntry, LogQuery};

/// At most this many lines in one page.
pub const MAX_PAGE: usize = 5000;

/// Which page of a process's output.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Lines after this cursor (from a previous page's `next_cursor`);
    /// without one, the page starts at the oldest line, or with `tail` at
    /// the last `tail` lines.
    pub after: Option<String>,
    /// The last N lines (ignored with `after`).
    pub tail: Option<usize>,
    /// At most this many lines (default 200, at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// When there are no new lines yet, wait up to this long for one.
    pub wait: Option<Duration>,
}

/// One page of output. `more` says a next page is there already: nothing
/// is cut silently.
#[derive(Debug, Clone, Serialize)]
pub struct LogPage {
    pub id: String,
    pub lines: Vec<LogEntry>,
    /// Where the next page starts (the last line's cursor, or the request's
    /// own when the page is empty).
    pub next_cursor: Option<String>,
    pub more: bool,
}

/// Whose output `logs` reads.
#[derive(Debug, Clone)]
pub enum LogSelector {
    /// One process (id, unique prefix or unit name).
    Id(String),
    /// Every process of this owner.
    Owner(Owner),
    /// Every process of this workflow.
    Workflow(String),
}

/// `logs`: whose lines, and which of them.
#[derive(Debug, Clone)]
pub struct LogsRequest {
    pub of: LogSelector,
    /// The last N lines.
    pub lines: Option<u64>,
    /// Times checked by [`crate::journal::parse_time`].
    pub since: Option<String>,
    pub until: Option<String>,
    /// Keep reading new lines.
    pub follow: bool,
}

/// The processes a `logs` request names, and the journal query for their
/// lines (empty `records`: nothing to read).
#[derive(Debug, Clone, Serialize)]
pub struct LogSources {
    pub records: Vec<Record>,
    #[serde(skip)]
    pub query: LogQuery,
}

/// What [`Controller::wait_until`] waits for.
#[derive(Debug, Clone)]
pub enum Until {
    /// The process has ended (its exit recorded).
    Exit,
    /// Its health check passes.
    Healthy,
    /// It prints a line matching this regular expression.
    Log(regex::Regex),
}

/// How a wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct WaitOutcome {
    /// Whether the condition was met before the timeout.
    pub met: bool,
    /// What was waited for: exit, healthy, log.
    pub until: &'static str,
    /// The record as it is now.
    pub record: Record,
    /// The line that matched (`log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<LogEntry>,
    /// Why it stopped waiting without the condition: `timeout`, or `ended`
    /// when the process ended first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Controller {
    /// The processes `request` names and the query for their lines.
    pub async fn log_sources(&self, request: LogsRequest) -> Result<LogSources> {
        let records = match &request.of {
            LogSelector::Id(id) => vec![self.record(id).await?],
            LogSelector::Owner(owner) => self.records_where(|r| r.owner == *owner)?,
            LogSelector::Workflow(wf) => {
                self.records_where(|r| r.metadata.workflow.as_deref() == Some(wf.as_str()))?
            }
        };
        let mut query = LogQuery::of_records(&records, self.caller.uid);
        query.lines = request.lines;
        query.since = request.since;
        query.until = request.until;
        query.follow = request.follow;
        Ok(LogSources { records, query })
    }

    /// A page of a process's output.
    pub async fn log_page(&self, arg: &str, request: &PageRequest) -> Result<LogPage> {
        let record = self.record(arg).await?;
        let limit = request.limit.unwrap_or(200).clamp(1, MAX_PAGE);
        let mut query = LogQuery::of_records(std::slice::from_ref(&record), self.caller.uid);
        query.after_cursor = request.after.clone();
        if request.after.is_none() {
            query.lines = request.tail.map(|n| n as u64);
        }
        let (lines, more) = tokio::task::spawn_blocking(move || read_page(&query, limit))
            .await
            .map_err(|e| Error::systemd(format!("journal reader failed: {e}")))??;
        let mut page = LogPage {
            id: record.id.clone(),
            next_cursor: lines
                .last()
                .and_then(|l| l.cursor.clone())
                .or_else(|| request.after.clone()),
            lines,
            more,
        };
        if page.lines.is_empty() {
            if let Some(wait) = request.wait {
                if let Some(first) = self
                    .next_line(&record, request.after.clone(), wait, None)
                    .await?
                {
                    // Whatever else arrived with it makes the page.
                    let rest = PageRequest {
                        after: first.cursor.clone(),
                        limit: Some(limit - 1),
                        ..Default::default()
                    };
                    let tail = Box::pin(self.log_page(&record.id, &rest)).await?;
                    page.next_cursor = tail.next_cursor.or(first.cursor.clone());
                    page.more = tail.more;
                    page.lines = std::iter::once(first).chain(tail.lines).collect();
                }
            }
        }
        Ok(page)
    }

    /// The first line after `after` (that matches `pattern`, if given),
    /// waiting up to `wait`: journalctl --follow, so nothing is polled.
    async fn next_line(
        &self,
        record: &Record,
        after: Option<String>,
        wait: Duration,
        pattern: Option<regex::Regex>,
    ) -> Result<Option<LogEntry>> {
        let mut query = LogQuery::of_records(std::slice::from_ref(record), self.caller.uid);
        query.follow = true;
        // Without a cursor, from the run's start (journalctl --follow alone
        // shows only the last 10 lines): a line printed before the wait
        // counts too.
        if after.is_none() {
            let start = record
                .started_at
                .and_then(|t| t.0.duration_since(std::time::UNIX_EPOCH).ok());
            query.since = Some(format!("@{}", start.map_or(0, |d| d.as_secs())));
        }
        query.after_cursor = after;
        let mut child = tokio::process::Command::from(crate::journal::command(&query, "json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let found = tokio::time::timeout(wait, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(entry) = crate::journal::parse_entry(&line) else {
                    continue;
                };
                if pattern.as_ref().is_none_or(|p| p.is_match(&entry.message)) {
                    return Some(entry);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let _ = child.kill().await;
        Ok(found)
    }

    /// Waits until a process ends, becomes healthy or prints a matching
    /// line, at most `timeout`.
    pub async fn wait_until(
        &self,
        arg: &str,
        until: Until,
        timeout: Duration,
    ) -> Result<WaitOutcome> {
        let record = self.record(arg).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let name = match until {
            Until::Exit => "exit",
            Until::Healthy => "healthy",
            Until::Log(_) => "log",
        };
        let done = |record: Record, met: bool, line: Option<LogEntry>, reason| WaitOutcome {
            met,
            until: name,
            record,
            line,
            reason,
        };
        match until {
            Until::Exit => {
                if !record.state.is_ended() {
                    let systemd = self.systemd().await?;
                    let gone =
                        tokio::time::timeout_at(deadline, systemd.wait_until_gone(&record.unit))
                            .await;
                    if gone.is_err() {
                        let now = self.status(&record.id).await?.record;
                        return Ok(done(now, false, None, Some("timeout")));
                    }
                    gone.unwrap()?;
                }
                // The exit hook may still be writing: read it back once it has.
                let mut now = self.status(&record.id).await?.record;
                while !now.state.is_ended() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now = self.status(&record.id).await?.record;
                }
                let ended = now.state.is_ended();
                Ok(done(now, ended, None, (!ended).then_some("timeout")))
            }
            Until::Healthy => {
                if record.health.is_none() {
                    return Err(Error::invalid(format!("{} has no health check", record.id))
                        .hint("start it with a health check, or wait for exit or a log line"));
                }
                loop {
                    let status = self.status(&record.id).await?;
                    let healthy = status
                        .health
                        .as_ref()
                        .and_then(|h| h.state.as_ref())
                        .is_some_and(|s| s.status == HealthStatus::Healthy);
                    if healthy {
                        return Ok(done(status.record, true, None, None));
                    }
                    if status.record.state.is_ended() {
                        return Ok(done(status.record, false, None, Some("ended")));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(done(status.record, false, None, Some("timeout")));
                    }
                    // The daemon's probes write the health file; a quarter
                    // second is well under any probe interval.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            Until::Log(pattern) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let line = self.next_line(&record, None, left, Some(pattern)).await?;
                let now = self.status(&record.id).await?.record;
                let met = line.is_some();
                Ok(done(now, met, line, (!met).then_some("timeout")))
            }
        }
    }
}

fn spawn_error(e: std::io::Error) -> Error {
    Error::systemd(format!("cannot run journalctl: {e}"))
        .hint("install systemd's journalctl (Debian: apt install systemd)")
}

/// Up to `limit` entries of `query`, and whether there were more.
fn read_page(query: &LogQuery, limit: usize) -> Result<(Vec<LogEntry>, bool)> {
    let mut child = crate::journal::command(query, "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_error)?;
    let reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut lines = Vec::new();
    let mut more = false;
    for line in reader.lines() {
        let line =
            line.map_err(|e| Error::systemd(format!("cannot read journalctl output: {e}")))?;
        let Some(entry) = crate::journal::parse_entry(&line) else {
            continue;
        };
        if lines.len() == limit {
            more = true;
            break;
        }
        lines.push(entry);
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok((lines, more))
}
