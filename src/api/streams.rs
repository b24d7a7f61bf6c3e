//! The history and the logs, as pages of JSON and as server-sent events
//! that resume from `Last-Event-ID`. An event's id is its place in the
//! history ([`EventPos`]), a log line's is journald's cursor: a client that
//! reconnects with the last id it got neither loses nor repeats anything.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use super::auth::Caller;
use super::extract::Query;
use super::problem::{ApiResult, Problem};
use super::schema::{EventPage, LogPage, PositionedEvent};
use super::AppState;
use crate::error::Error;
use crate::events::{Event, EventPos, EventReader};
use crate::model::Owner;

/// A client that reads slower than events come stalls only its own stream.
const STREAM_BUFFER: usize = 256;

fn resume_from(headers: &HeaderMap, after: Option<&str>) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| after.map(str::to_string))
        .filter(|s| !s.is_empty())
}

fn sse(rx: tokio::sync::mpsc::Receiver<SseEvent>) -> Response {
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The history's filters and where to start.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this process's events (an id, a unique prefix, or a unit).
    pub id: Option<String>,
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    /// Start after this position (a page's `next`, an event's id).
    pub after: Option<String>,
    /// At most this many events in a page [default 1000].
    pub limit: Option<usize>,
    /// Server-sent events: the history, then live, resuming from `Last-Event-ID`.
    #[serde(default)]
    pub follow: bool,
}

/// The history in file order, then (with `follow`) live transitions as
/// server-sent events (`id:` its position, `data:` the event's JSON). A
/// position that was rotated away starts from the oldest event kept,
/// after an `event: gap`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this event")),
    responses((status = 200, description = "A page (JSON), or with follow=true a stream (text/event-stream) of events",
            content((EventPage = "application/json"), (crate::events::Event = "text/event-stream"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem)))]
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    let controller = state.controller(&caller);
    let id = q.id.as_deref().map(|i| controller.resolve(i)).transpose()?;
    let (owner, workflow) = (q.owner, q.workflow.clone());
    let keep = move |e: &Event| {
        id.as_ref().is_none_or(|i| e.id.as_ref() == Some(i))
            && owner.is_none_or(|o| e.owner == Some(o))
            && workflow
                .as_ref()
                .is_none_or(|w| e.workflow.as_ref() == Some(w))
    };
    let dir = controller.index().dir().to_path_buf();
    let from = resume_from(&headers, q.after.as_deref());
    let pos: Option<EventPos> = from.as_deref().map(str::parse).transpose()?;
    // Watched before the first read, so nothing falls in between: the
    // daemon's own appends wake the stream at once, other processes'
    // (the CLI, exit hooks) through inotify.
    let appended = crate::events::appended();
    let wakeups = if q.follow {
        let io = |e| Error::index(format!("cannot watch {}: {e}", dir.display()));
        Some(crate::dirwatch::DirWatch::new(&dir, true).map_err(io)?)
    } else {
        None
    };
    let (mut reader, gap) = match pos {
        Some(p) => match EventReader::after(dir.clone(), p) {
            Some(r) => (r, false),
            None => (EventReader::from_start(dir.clone()), true),
        },
        None => (EventReader::from_start(dir.clone()), false),
    };
    let Some(wakeups) = wakeups else {
        let events = reader.read_new().map_err(|e| read_error(&dir, e))?;
        return Ok(event_page(events, keep, q.limit, from, gap));
    };
    // Read once here, so an unreadable history is an error, not an empty
    // stream; the rest comes a chunk at a time.
    let mut first = Vec::new();
    reader
        .read_some(HISTORY_CHUNK, &mut first)
        .map_err(|e| read_error(&dir, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    let stream = EventStream {
        reader,
        keep,
        tx,
        wakeups,
        appended,
    };
    tokio::spawn(stream.serve(first, gap));
    Ok(sse(rx))
}

/// How much of the history a stream reads at a time (whole lines).
const HISTORY_CHUNK: u64 = 64 << 10;

fn read_error(dir: &std::path::Path, e: std::io::Error) -> Error {
    Error::index(format!("cannot read the history in {}: {e}", dir.display()))
}

/// A page of the history: at most `limit` events that `keep` keeps, and
/// where the next page starts.
fn event_page(
    all: Vec<(EventPos, Event)>,
    keep: impl Fn(&Event) -> bool,
    limit: Option<usize>,
    from: Option<String>,
    gap: bool,
) -> Response {
    let limit = limit.unwrap_or(1000).max(1);
    let events: Vec<PositionedEvent> = all
        .into_iter()
        .filter(|(_, e)| keep(e))
        .take(limit)
        .map(|(p, event)| PositionedEvent {
            pos: p.to_string(),
            event,
        })
        .collect();
    let next = events.last().map(|e| e.pos.clone()).or(from);
    let mut response = Json(EventPage { events, next }).into_response();
    if gap {
        response
            .headers_mut()
            .insert("refine-gap", "true".parse().unwrap());
    }
    response
}

/// One open event stream: the history, then live events as they come.
struct EventStream<K> {
    reader: EventReader,
    keep: K,
    tx: tokio::sync::mpsc::Sender<SseEvent>,
    wakeups: crate::dirwatch::DirWatch,
    appended: tokio::sync::watch::Receiver<u64>,
}

impl<K: Fn(&Event) -> bool + Send + 'static> EventStream<K> {
    async fn serve(mut self, first: Vec<(EventPos, Event)>, gap: bool) {
        if gap {
            let note = SseEvent::default()
                .event("gap")
                .data("the position was rotated away: from the oldest event kept");
            if self.tx.send(note).await.is_err() {
                return;
            }
        }
        let mut batch = first;
        let mut history = true;
        loop {
            for (p, e) in batch.drain(..) {
                if !(self.keep)(&e) {
                    continue;
                }
                let data = serde_json::to_string(&e).expect("events serialize");
                let event = SseEvent::default().id(p.to_string()).data(data);
                if self.tx.send(event).await.is_err() {
                    return; // the client went away
                }
            }
            let more = match self.reader.read_some(HISTORY_CHUNK, &mut batch) {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!("event stream: {e}");
                    return;
                }
            };
            if more || !batch.is_empty() {
                continue;
            }
            if std::mem::take(&mut history) {
                // The history was the big part: give its memory back.
                crate::daemon::release_memory_soon();
            }
            tokio::select! {
                woke = self.wakeups.next() => if woke.is_none() { return },
                _ = self.appended.changed() => {}
                () = self.tx.closed() => return,
            }
        }
    }
}

/// Which lines.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Without `after`: the last N lines [default 100]. With it: at most N
    /// lines after the cursor [default 1000].
    pub lines: Option<u64>,
    /// Anything journalctl's --since takes (-1h, today, 2026-11-20 10:00).
    pub since: Option<String>,
    /// Lines after this journald cursor.
    pub after: Option<String>,
    /// Server-sent events: new lines as they arrive (`id:` the cursor),
    /// resuming from `Last-Event-ID`.
    #[serde(default)]
    pub follow: bool,
}

/// A process's output from journald: a page of JSON lines with the cursor
/// after the last, or (`follow`) a stream that resumes without losing or
/// repeating a line.
#[utoipa::path(get, path = "/api/v1/processes/{id}/logs", tag = "processes",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name"), LogsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this cursor")),
    responses((status = 200, description = "A page (JSON), or with follow=true a stream (text/event-stream) of log entries",
            content((LogPage = "application/json"), (super::schema::LogEntryDoc = "text/event-stream"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem),
        (status = 502, body = Problem)))]
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let record = state.controller(&caller).record(&id).await?;
    let after = resume_from(&headers, q.after.as_deref());
    if let Some(c) = &after {
        crate::journal::check_cursor(c)?;
    }
    let mut query = crate::journal::LogQuery::of_records(
        std::slice::from_ref(&record),
        crate::journal::current_uid(),
    );
    query.since = q.since.clone();
    query.follow = q.follow;
    if after.is_none() {
        query.lines = Some(q.lines.unwrap_or(if q.follow { 10 } else { 100 }));
    }
    let mut cmd = tokio::process::Command::from(crate::journal::command(&query, "json"));
    if let Some(c) = &after {
        cmd.arg(format!("--after-cursor={c}"));
    }
    cmd.stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        Error::systemd(format!("cannot run journalctl: {e}"))
            .hint("install systemd's journalctl (Debian: apt install systemd)")
    })?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    if !q.follow {
        let limit = if after.is_some() {
            q.lines.unwrap_or(1000)
        } else {
            u64::MAX
        };
        let mut entries = Vec::new();
        while (entries.len() as u64) < limit {
            match lines.next_line().await {
                Ok(Some(line)) => entries.extend(crate::journal::parse_entry(&line)),
                _ => break,
            }
        }
        let cursor = entries
            .last()
            .and_then(|e: &crate::journal::LogEntry| e.cursor.clone())
            .or(after);
        return Ok(
            Json(serde_json::json!({ "entries": entries, "cursor": cursor })).into_response(),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let _child = child; // killed when the stream ends
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { return };
                    let Some(entry) = crate::journal::parse_entry(&line) else { continue };
                    let mut event = SseEvent::default().data(serde_json::to_string(&entry).expect("entries serialize"));
                    if let Some(c) = &entry.cursor {
                        event = event.id(c.clone());
                    }
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    Ok(sse(rx))
}
