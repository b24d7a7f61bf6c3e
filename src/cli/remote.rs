//! The transport seam (issue 12): a command's [`Request`] goes to the core
//! in this process or, where the user bus is out of reach (a confined unit)
//! and the daemon's API socket is there, to the daemon over that socket.
//! The daemon establishes the caller from the socket's peer credentials, so
//! a confined agent is bound by its policy exactly as its CLI would be.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use refine_proc::controller::{ActionOutcome, Answer, Request, Response};
use refine_proc::journal::LogEntry;
use refine_proc::model::{LimitChange, LimitValue};
use refine_proc::{Error, ErrorKind, Result, RunSpec, Status};
use serde_json::{json, Value};

/// `REFINE_PROC_API=socket` sends every request to the daemon's socket;
/// `REFINE_PROC_API=local` never does.
const TRANSPORT_ENV: &str = "REFINE_PROC_API";

/// The daemon's socket when the request should go there, None for the
/// core in this process.
pub fn socket_for(state_dir: &Path) -> Option<PathBuf> {
    // A confined unit cannot read the index: its launch named the socket.
    let socket = refine_proc::api::socket_of(state_dir).or_else(|| {
        std::env::var_os(refine_proc::confine::API_SOCKET_ENV)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    });
    match std::env::var(TRANSPORT_ENV).as_deref() {
        Ok("socket") => Some(socket.unwrap_or_else(refine_proc::api::default_socket)),
        Ok("local") => None,
        // Only a bus we cannot reach sends us there (the in-process core
        // is what a person normally uses), and only to this index's daemon.
        _ => socket.filter(|s| s.exists() && !bus_reachable()),
    }
}

/// Whether the session bus's socket accepts a connection (a confined unit
/// finds it made inaccessible).
fn bus_reachable() -> bool {
    let path = std::env::var("DBUS_SESSION_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.split(';')
                .find_map(|one| one.strip_prefix("unix:path=").map(String::from))
        })
        .map(|p| PathBuf::from(p.split(',').next().unwrap_or_default()))
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("bus")));
    path.is_some_and(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// One answer of the daemon.
struct Reply {
    status: StatusCode,
    warnings: Vec<String>,
    body: Bytes,
}

fn unreachable(socket: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("cannot reach the daemon's API on {}: {e}", socket.display()),
    )
    .hint("start it: systemctl --user enable --now refine-proc.service; or set REFINE_PROC_API=local to use the user bus")
}

/// One HTTP/1 request over the socket.
async fn call(socket: &Path, method: Method, path: &str, body: Option<Value>) -> Result<Reply> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| unreachable(socket, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(socket, e))?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    let bytes = match body {
        Some(b) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(bytes))
        .map_err(|e| Error::invalid(format!("cannot build the request {path}: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(socket, e))?;
    let status = response.status();
    let warnings = response
        .headers()
        .get_all("refine-warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(socket, e))?
        .to_bytes();
    let reply = Reply {
        status,
        warnings,
        body,
    };
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(problem(&reply))
    }
}

/// The core's error back from the API's problem+json: its kind from the
/// exit code the daemon gives (else from the status), message and hint.
fn problem(reply: &Reply) -> Error {
    let p: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let by_exit = p["exit_code"].as_i64().and_then(|c| {
        [
            ErrorKind::Systemd,
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Refused,
            ErrorKind::Unavailable,
            ErrorKind::Index,
            ErrorKind::Denied,
        ]
        .into_iter()
        .find(|k| i64::from(k.exit_code()) == c)
    });
    let kind = by_exit.unwrap_or(match reply.status.as_u16() {
        400 | 415 | 422 => ErrorKind::Invalid,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Refused,
        401 | 403 => ErrorKind::Denied,
        502 => ErrorKind::Systemd,
        500 => ErrorKind::Index,
        _ => ErrorKind::Unavailable,
    });
    let message = p["detail"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("the daemon answered {}", reply.status));
    let mut e = Error::new(kind, message);
    if let Some(h) = p["hint"].as_str() {
        e = e.hint(h);
    }
    e
}

fn parse<T: serde::de::DeserializeOwned>(reply: &Reply) -> Result<T> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read the daemon's answer: {e}"),
        )
        .hint("the daemon may be of another version: restart it (systemctl --user restart refine-proc.service)")
    })
}

/// A path segment as data: ids are checked by the daemon, but a `/` or
/// `?` must never change which endpoint is called.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the API's run takes is a subset of a spec: refuse the rest, before
/// anything starts, rather than drop it.
fn run_body(spec: RunSpec, queue: bool) -> Result<Value> {
    let unsupported = [
        (spec.ready.is_some(), "--ready"),
        (spec.health.is_some(), "--health-*"),
        (
            spec.restart_timing != Default::default(),
            "--restart-delay/--restart-max-delay/--restart-limit",
        ),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(Error::invalid(format!(
            "{flag} is not available through the daemon's API socket"
        ))
        .hint("run it outside the sandbox, or without that flag"));
    }
    let cwd = match spec.cwd {
        Some(dir) => dir,
        None => std::env::current_dir().map_err(|e| {
            Error::invalid(format!("cannot read the current directory: {e}")).hint("pass --cwd DIR")
        })?,
    };
    let l = &spec.limits;
    Ok(json!({
        "command": spec.command,
        "owner": spec.owner,
        "label": spec.label,
        "details": spec.details,
        "metadata": spec.metadata,
        "cwd": cwd.to_string_lossy(),
        "env": spec.environment,
        "limits": {
            "memory_max": l.memory_max.map(|b| b.to_string()),
            "memory_high": l.memory_high.map(|b| b.to_string()),
            "cpu_quota": l.cpu_quota_percent.map(|p| format!("{p}%")),
            "cpu_weight": l.cpu_weight,
            "tasks_max": l.tasks_max,
            "runtime_max": l.runtime_max_sec.map(|s| format!("{s}s")),
            "timeout_stop": l.timeout_stop_sec.map(|s| format!("{s}s")),
        },
        "restart": spec.restart.as_str(),
        "queue": queue,
        "persist": spec.persist,
        // A terminal session (a confined agent's `run --pty`).
        "pty": spec.pty.is_some(),
        "pty_size": spec.pty.as_ref().and_then(|p| p.size).map(|(r, c)| format!("{r}x{c}")),
    }))
}

/// Carries out `request` by the daemon's API, as [`Controller::handle`]
/// does in process.
///
/// [`Controller::handle`]: refine_proc::Controller::handle
pub async fn handle(socket: &Path, request: Request) -> Result<Answer> {
    let pausing = matches!(request, Request::Pause(_));
    let (response, warnings) = match request {
        Request::Run { spec, options } => {
            if options.wait || options.wait_ready {
                return Err(Error::invalid(
                    "--wait and --wait-ready are not available through the daemon's API socket",
                )
                .hint("wait with refine-proc logs -f ID, or run it outside the sandbox"));
            }
            let body = run_body(spec, options.queue)?;
            let r = call(socket, Method::POST, "/api/v1/processes", Some(body)).await?;
            (Response::Record(Box::new(parse(&r)?)), r.warnings)
        }
        Request::List(filter) => {
            let r = call(socket, Method::GET, &list_path(filter), None).await?;
            (Response::Listed(parse(&r)?), r.warnings)
        }
        Request::Status { id } => {
            let path = format!("/api/v1/processes/{}", segment(&id));
            let r = call(socket, Method::GET, &path, None).await?;
            let status = status_of(parse(&r)?)?;
            let warnings = status.warnings.clone();
            (Response::Status(Box::new(status)), warnings)
        }
        Request::Stop { ids } => (
            Response::Outcomes(each(socket, &ids, "stop").await?),
            Vec::new(),
        ),
        Request::StopSelection {
            selection,
            tree: false,
        } if only_ids(&selection) => {
            let outcomes = each(socket, &selection.ids, "stop").await?;
            (Response::Outcomes(outcomes), Vec::new())
        }
        Request::Restart { id } => {
            let outcomes = each(socket, std::slice::from_ref(&id), "restart").await?;
            (Response::Outcomes(outcomes), Vec::new())
        }
        Request::Pause(s) | Request::Resume(s) if only_ids(&s) && !s.ids.is_empty() => {
            let action = if pausing { "pause" } else { "resume" };
            (
                Response::Outcomes(each(socket, &s.ids, action).await?),
                Vec::new(),
            )
        }
        Request::Pause(s) | Request::Resume(s) if s.ids.is_empty() => {
            let action = if pausing { "pause" } else { "resume" };
            let body = json!({
                "owner": s.owner, "workflow": s.workflow, "session": s.session, "all": s.all,
            });
            let r = call(
                socket,
                Method::POST,
                &format!("/api/v1/groups/{action}"),
                Some(body),
            )
            .await?;
            (Response::Outcomes(parse(&r)?), r.warnings)
        }
        Request::Kill { id, signal } => {
            let path = format!("/api/v1/processes/{}/kill", segment(&id));
            let body = json!({ "signal": signal.to_string() });
            let r = call(socket, Method::POST, &path, Some(body)).await?;
            (Response::Outcomes(vec![parse(&r)?]), r.warnings)
        }
        Request::Forget { id } => {
            let path = format!("/api/v1/processes/{}", segment(&id));
            let r = call(socket, Method::DELETE, &path, None).await?;
            (Response::Outcomes(vec![parse(&r)?]), r.warnings)
        }
        Request::Set { id, change } => {
            let path = format!("/api/v1/processes/{}/limits", segment(&id));
            let r = call(socket, Method::POST, &path, Some(limits_body(&change))).await?;
            (Response::Record(Box::new(parse(&r)?)), r.warnings)
        }
        other => {
            return Err(Error::invalid(format!(
                "{} is not available through the daemon's API socket",
                name_of(&other)
            ))
            .hint("run it outside the sandbox"))
        }
    };
    Ok(Answer { response, warnings })
}

/// The API's path and query that list what `filter` selects.
fn list_path(filter: refine_proc::ListFilter) -> String {
    let mut query = vec![format!("all={}", filter.all)];
    let pairs = [
        ("owner", filter.owner.map(|o| o.to_string())),
        ("workflow", filter.workflow),
        ("session", filter.session),
        ("gap", filter.gap),
        ("state", filter.state.map(|s| s.to_string())),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            query.push(format!("{k}={}", segment(&v)));
        }
    }
    format!("/api/v1/processes?{}", query.join("&"))
}

/// A selection of ids only (no group).
fn only_ids(s: &refine_proc::Selection) -> bool {
    s.owner.is_none() && s.workflow.is_none() && s.session.is_none() && !s.all
}

/// `action` (stop, restart, pause, resume) of each id in turn, the
/// outcomes together.
async fn each(socket: &Path, ids: &[String], action: &str) -> Result<Vec<ActionOutcome>> {
    let mut outcomes = Vec::new();
    for id in ids {
        let path = format!("/api/v1/processes/{}/{action}", segment(id));
        let r = call(socket, Method::POST, &path, None).await?;
        outcomes.extend(parse::<Vec<_>>(&r)?);
    }
    Ok(outcomes)
}

/// A limit change as the API's body writes it (what `set` takes).
fn limits_body(change: &LimitChange) -> Value {
    let text = |v: Option<LimitValue>, unit: &str| {
        v.map(|v| match v {
            LimitValue::Infinity => "infinity".to_string(),
            LimitValue::Value(n) => format!("{n}{unit}"),
        })
    };
    json!({
        "memory_max": text(change.memory_max, ""),
        "memory_high": text(change.memory_high, ""),
        "cpu_quota": text(change.cpu_quota_percent, "%"),
        "cpu_weight": text(change.cpu_weight, ""),
        "tasks_max": text(change.tasks_max, ""),
    })
}

fn name_of(request: &Request) -> &'static str {
    match request {
        Request::Run { .. } => "run",
        Request::Adopt(_) => "adopt",
        Request::List(_) => "list",
        Request::Status { .. } => "status",
        Request::Stop { .. } | Request::StopSelection { .. } => "stop",
        Request::Kill { .. } => "kill",
        Request::Restart { .. } => "restart",
        Request::Forget { .. } => "forget",
        Request::Set { .. } | Request::SetOwner { .. } => "set",
        Request::Pause(_) | Request::Pauses => "pause",
        Request::Resume(_) => "resume",
        Request::Events(_) => "events",
        Request::Recover => "recover",
        Request::Resurrect => "resurrect",
        Request::PolicyShow | Request::PolicyCheck(_) => "policy",
        Request::Logs(_) => "logs",
        Request::Doctor => "doctor",
    }
}

/// `status --json` read back: the record's fields with `health` (the
/// check and its state), `systemd`, `usage` and `warnings`.
fn status_of(mut v: Value) -> Result<Status> {
    let bad = |e: serde_json::Error| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read the daemon's status: {e}"),
        )
        .hint("the daemon may be of another version: restart it")
    };
    let map = v
        .as_object_mut()
        .ok_or_else(|| bad(serde::de::Error::custom("not an object")))?;
    let mut take = |k: &str| map.remove(k).unwrap_or(Value::Null);
    let health: Option<refine_proc::health::HealthView> =
        serde_json::from_value(take("health")).map_err(bad)?;
    let systemd = serde_json::from_value(take("systemd")).map_err(bad)?;
    let usage = serde_json::from_value(take("usage")).map_err(bad)?;
    let warnings: Option<Vec<String>> = serde_json::from_value(take("warnings")).map_err(bad)?;
    let mut record: refine_proc::Record = serde_json::from_value(v).map_err(bad)?;
    record.health = health.as_ref().map(|h| h.spec.clone());
    Ok(Status {
        record,
        systemd,
        usage,
        warnings: warnings.unwrap_or_default(),
        health,
    })
}

/// The last `lines` lines of one process's output (`logs ID`), over the
/// socket: the daemon reads the journal.
pub async fn logs(socket: &Path, id: &str, lines: Option<u64>) -> Result<Vec<LogEntry>> {
    let mut path = format!("/api/v1/processes/{}/logs", segment(id));
    if let Some(n) = lines {
        path.push_str(&format!("?lines={n}"));
    }
    let r = call(socket, Method::GET, &path, None).await?;
    #[derive(serde::Deserialize)]
    struct Page {
        entries: Vec<LogEntry>,
    }
    Ok(parse::<Page>(&r)?.entries)
}

/// `send` over the socket: the daemon types into the session.
pub async fn send(socket: &Path, id: &str, text: Option<&str>, keys: &[String]) -> Result<()> {
    let path = format!("/api/v1/processes/{}/send", segment(id));
    let body = json!({ "text": text, "keys": keys });
    call(socket, Method::POST, &path, Some(body))
        .await
        .map(drop)
}

/// `screen` over the socket: the daemon reads the session's screen.
pub async fn screen(
    socket: &Path,
    id: &str,
    wait_for: Option<&str>,
    timeout: std::time::Duration,
) -> Result<refine_proc::pty::proto::Screen> {
    let mut path = format!(
        "/api/v1/processes/{}/screen?timeout={}s",
        segment(id),
        timeout.as_secs()
    );
    if let Some(text) = wait_for {
        path.push_str(&format!("&wait_for={}", segment(text)));
    }
    let r = call(socket, Method::GET, &path, None).await?;
    parse(&r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_run_pty_was_started_without_a_terminal() {
        // The API body dropped --pty: the session had no terminal.
        let spec = RunSpec {
            command: vec!["sh".into()],
            cwd: Some("/".into()),
            pty: Some(refine_proc::pty::PtyOptions {
                size: Some((40, 120)),
            }),
            ..RunSpec::default()
        };
        let body = run_body(spec, false).unwrap();
        assert_eq!(
            (body["pty"].clone(), body["pty_size"].clone()),
            (json!(true), json!("40x120"))
        );
        let plain = RunSpec {
            command: vec!["sh".into()],
            cwd: Some("/".into()),
            ..RunSpec::default()
        };
        assert_eq!(run_body(plain, false).unwrap()["pty"], json!(false));
    }

    #[test]
    fn a_hostile_id_stays_one_path_segment() {
        assert_eq!(segment("ab/../x?all=1"), "ab%2F..%2Fx%3Fall%3D1");
        assert_eq!(segment("k3x9p2qa"), "k3x9p2qa");
    }

    #[test]
    fn problems_map_back_to_the_cores_error_and_exit_code() {
        let reply = |status: u16, body: &str| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            warnings: Vec::new(),
            body: Bytes::from(body.to_string()),
        };
        let e = problem(&reply(
            403,
            r#"{"type":"urn:refine-proc:problem:denied","title":"Forbidden","status":403,"detail":"agent may not stop x","hint":"ask a person","exit_code":7}"#,
        ));
        assert_eq!((e.kind, e.exit_code()), (ErrorKind::Denied, 7));
        assert_eq!(e.message, "agent may not stop x");
        assert_eq!(e.hint.as_deref(), Some("ask a person"));
        let e = problem(&reply(404, "not json"));
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = problem(&reply(409, r#"{"detail":"busy","exit_code":4}"#));
        assert_eq!(e.kind, ErrorKind::Refused);
    }
}
