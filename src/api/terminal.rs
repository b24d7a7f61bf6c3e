//! The terminal of a session (`run --pty`) over a WebSocket, for the page's
//! xterm.js and any other client: a bridge to the holder's client protocol
//! ([`crate::pty::client::attach`]).
//!
//! Who may do what is the core's decision ([`Controller::terminal`]):
//! whoever may read the record watches; only a caller that may act on it
//! (as `send`) types, resizes and takes the keyboard. A read token on TCP
//! only watches. The connection's checks are the API's (the guard's Host,
//! session and peer credentials), and on TCP the upgrade is refused
//! cross-origin (Cross-Site WebSocket Hijacking: a browser sends the
//! cookie with any page's WebSocket, and always says its Origin).
//!
//! Frames (documented in the OpenAPI operation and the README):
//!
//! - server to client, binary: terminal bytes to write as they come; the
//!   first is the current screen (it clears and redraws, as does the one a
//!   client that fell behind gets instead of what it missed);
//! - server to client, text: one JSON object whose only key names it:
//!   `hello` (first), `size` (the session's, `{"rows", "cols"}`: on
//!   connect and at each change, a fresh screen follows; a client that
//!   does not size the session draws at it), `lease`, `refused`, `exit`;
//! - client to server, binary: keyboard input; text: `{"input": "..."}`,
//!   `{"resize": {"rows": R, "cols": C}}`, `{"take": {}}`.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{Caller, Scope, Via};
use super::problem::{ApiResult, Problem};
use super::AppState;
use crate::controller::{Controller, TerminalAccess};
use crate::error::{Error, ErrorKind};
use crate::pty::client::{self, AttachOptions, Event, Events, Sender};
use crate::pty::proto;

/// Holder events waiting for a slow browser: the holder itself drops what
/// a client cannot take and sends a fresh screen (tmux's redraw), so this
/// stays small.
const EVENT_BUFFER: usize = 16;

/// A message from the client (text frames).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Control {
    Input(String),
    Resize { rows: u16, cols: u16 },
    Take {},
}

/// The first message: what this connection may do and the screen's size.
#[derive(Debug, Serialize)]
struct Hello<'a> {
    id: &'a str,
    /// Whether input is accepted (the caller may act on the process).
    write: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only: Option<Problem>,
    rows: u16,
    cols: u16,
}

/// The terminal of a session, as a WebSocket (see the description).
#[utoipa::path(get, path = "/api/v1/processes/{id}/terminal", tag = "processes",
    description = "Upgrades to a WebSocket bridged to the session's terminal.\n\n\
Server to client: binary frames are terminal bytes, written as they come; the first one draws \
the current screen (it clears and redraws, so a reconnect shows the screen again). Text frames \
are JSON objects with one key: `{\"hello\": {\"id\", \"write\", \"read_only\", \"rows\", \"cols\"}}` \
first (`write` false with `read_only` a problem saying why: a read-only view), \
`{\"size\": {\"rows\": R, \"cols\": C}}` (the session's terminal size, on connect and whenever \
the writer changes it; a fresh screen at that size follows: a client that does not hold the \
keyboard draws at it), \
`{\"lease\": {\"held\": BOOL}}` (whether this connection holds the keyboard: one writer at a time; \
typing while nobody holds it takes it), `{\"refused\": PROBLEM}` (a message was refused; the \
view stays open) and `{\"exit\": {\"code\", \"signal\"}}` (the program ended; a close 1000 follows).\n\n\
Client to server: binary frames are keyboard input; text frames are `{\"input\": \"TEXT\"}`, \
`{\"resize\": {\"rows\": R, \"cols\": C}}` (2 to 1000 each) and `{\"take\": {}}` (take the \
keyboard from another client). Input, resize and take need the right to act on the process, \
as `send`; a caller that may only read (its policy's act_on, a read token) watches, and each \
input is answered with `refused` (403), audited once per connection.\n\n\
On TCP the session cookie (or a token) is needed, and the upgrade is refused (403) unless \
Origin is the listener's own (a cookie session must send it; browsers do).",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 500, body = Problem),
        (status = 503, body = Problem)))]
pub async fn terminal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|e| {
        Problem::bad_request(format!("not a WebSocket upgrade: {e}"))
            .hint("connect with a WebSocket client (the page's terminal, websocat), not plain HTTP")
    })?;
    check_origin(&state, &caller, &headers)?;
    let controller = state.controller(&caller);
    let mut access = controller.terminal(&id).await?;
    if access.read_only.is_none() && caller.via == Via::Tcp(Scope::Read) {
        access.read_only = Some(
            Error::new(
                ErrorKind::Denied,
                "this token may only read: the terminal is read-only",
            )
            .hint("make a control token: refine-proc web --token control"),
        );
    }
    // The size first, for a viewer that cannot set it (it draws at the
    // session's); then attach, before the upgrade: a session that ended
    // meanwhile is a 409 the client can read, not a dead socket.
    let screen = client::screen(&access.socket, None, std::time::Duration::ZERO).await?;
    let attached = client::attach(
        &access.socket,
        AttachOptions {
            read_only: access.read_only.is_some(),
            ..AttachOptions::default()
        },
    )
    .await?;
    let hello = serde_json::to_string(&json!({ "hello": Hello {
        id: &access.id,
        write: access.read_only.is_none(),
        read_only: access.read_only.clone().map(Problem::from),
        rows: screen.rows,
        cols: screen.cols,
    }}))
    .expect("a hello serializes");
    Ok(upgrade
        .max_message_size(proto::MAX_FRAME)
        .on_upgrade(move |ws| async move {
            let bridge = Bridge {
                ws,
                sender: attached.sender,
                controller,
                access,
                audited: false,
            };
            bridge.run(hello, attached.events).await;
        }))
}

/// On TCP, the page's own Origin only; a cookie session must send it.
fn check_origin(state: &AppState, caller: &Caller, headers: &HeaderMap) -> ApiResult<()> {
    if caller.via == Via::Unix {
        return Ok(());
    }
    match headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""))
    {
        Some(o) if state.auth.origin_ok(o) => Ok(()),
        Some(o) => Err(Problem::forbidden(format!(
            "cross-origin terminal from {:?} refused",
            crate::text::escape(o)
        ))
        .hint("use the page served by the daemon itself")),
        // A token (a script) need not; a cookie is a browser, which always sends it.
        None if headers.contains_key(header::AUTHORIZATION) => Ok(()),
        None => Err(Problem::forbidden("a terminal without Origin refused")
            .hint("use the page served by the daemon itself, or a token (Authorization: Bearer)")),
    }
}

/// One WebSocket bridged to one attached holder client.
struct Bridge {
    ws: WebSocket,
    sender: Sender,
    controller: Controller,
    access: TerminalAccess,
    /// Whether a refused input was audited (once per connection).
    audited: bool,
}

/// How the holder's side ended.
enum Ended {
    Exit(proto::Exit),
    Closed,
    Broken(Error),
}

impl Bridge {
    async fn run(mut self, hello: String, events: Events) {
        if self.ws.send(Message::text(hello)).await.is_err() {
            return;
        }
        // Read in a task of its own: a frame read is not cancel-safe, so
        // it must not race the browser's messages in one select.
        let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_BUFFER);
        let reader = tokio::spawn(read_events(events, tx));
        let ended = loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Ok(Event::Snapshot(b) | Event::Output(b))) => {
                        if self.ws.send(Message::binary(b)).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(Event::Size(rows, cols))) => {
                        if self.json(json!({ "size": { "rows": rows, "cols": cols } })).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(Event::Lease(held))) => {
                        if self.json(json!({ "lease": { "held": held } })).await.is_err() {
                            break None;
                        }
                    }
                    // A browser lends no terminal.
                    Some(Ok(Event::Lend | Event::Back | Event::DetachKeys)) => {}
                    Some(Ok(Event::Exit(e))) => break Some(Ended::Exit(e)),
                    Some(Err(e)) => break Some(Ended::Broken(e)),
                    None => break Some(Ended::Closed),
                },
                message = self.ws.recv() => match message {
                    Some(Ok(m)) => {
                        if self.on_message(m).await.is_err() {
                            break None;
                        }
                    }
                    // The browser went away.
                    Some(Err(_)) | None => break None,
                },
            }
        };
        reader.abort();
        if let Some(ended) = ended {
            self.close(ended).await;
        }
    }

    async fn json(&mut self, value: serde_json::Value) -> Result<(), axum::Error> {
        self.ws.send(Message::text(value.to_string())).await
    }

    /// Tells the client a message was refused; the view stays open.
    async fn refuse(&mut self, problem: Problem) -> Result<(), axum::Error> {
        self.json(json!({ "refused": problem })).await
    }

    /// One message from the client. Err: the WebSocket broke.
    async fn on_message(&mut self, message: Message) -> Result<(), axum::Error> {
        let control = match message {
            Message::Binary(b) => return self.input(&b).await,
            Message::Text(t) => serde_json::from_str::<Control>(t.as_str()),
            // Pings are answered by the WebSocket layer; a close ends recv.
            _ => return Ok(()),
        };
        match control {
            Ok(Control::Input(text)) => self.input(text.as_bytes()).await,
            Ok(Control::Resize { rows, cols }) => self.resize(rows, cols).await,
            Ok(Control::Take {}) => {
                if self.may_write().await? {
                    let sent = self.sender.take().await;
                    self.report(sent).await?;
                }
                Ok(())
            }
            Err(e) => {
                self.refuse(Problem::bad_request(format!("unreadable message: {e}")).hint(
                    r#"send keys as binary frames, or {"input": "TEXT"}, {"resize": {"rows": R, "cols": C}}, {"take": {}}"#,
                ))
                .await
            }
        }
    }

    /// Whether this connection may write; if not, says why (and audits
    /// the first attempt).
    async fn may_write(&mut self) -> Result<bool, axum::Error> {
        let Some(error) = self.access.read_only.clone() else {
            return Ok(true);
        };
        if !self.audited {
            self.audited = true;
            self.controller.refused_input(&self.access, &error);
        }
        self.refuse(Problem::from(error)).await?;
        Ok(false)
    }

    async fn input(&mut self, bytes: &[u8]) -> Result<(), axum::Error> {
        if bytes.is_empty() || !self.may_write().await? {
            return Ok(());
        }
        let sent = self.sender.input(bytes).await;
        self.report(sent).await
    }

    async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), axum::Error> {
        if !(2..=1000).contains(&rows) || !(2..=1000).contains(&cols) {
            let p = Problem::from(Error::invalid(format!(
                "terminal size {rows}x{cols} is out of range"
            )))
            .hint("give rows and cols from 2 to 1000 each");
            return self.refuse(p).await;
        }
        // A viewer's window does not size the session: the writer's does.
        if self.access.read_only.is_some() {
            return Ok(());
        }
        let sent = self.sender.resize(rows, cols).await;
        self.report(sent).await
    }

    /// What the holder said to a write: a holder that broke off is told
    /// to the client (its event stream then ends the bridge).
    async fn report(&mut self, sent: crate::Result<()>) -> Result<(), axum::Error> {
        match sent {
            Ok(()) => Ok(()),
            Err(e) => self.refuse(Problem::from(e)).await,
        }
    }

    async fn close(mut self, ended: Ended) {
        let (code, reason) = match ended {
            Ended::Exit(e) => {
                let _ = self.json(json!({ "exit": e })).await;
                (close_code::NORMAL, "the program ended".to_string())
            }
            Ended::Closed => (close_code::NORMAL, "the terminal session closed".into()),
            Ended::Broken(e) => (close_code::ERROR, e.message),
        };
        let frame = CloseFrame {
            code,
            reason: close_reason(&reason).into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
    }
}

/// Holder events into the bridge's channel, until either side ends.
async fn read_events(mut events: Events, tx: tokio::sync::mpsc::Sender<crate::Result<Event>>) {
    loop {
        let event = events.next().await.transpose();
        let last = !matches!(
            event,
            Some(Ok(Event::Size(..)
                | Event::Snapshot(_)
                | Event::Output(_)
                | Event::Lease(_)
                | Event::Lend
                | Event::Back
                | Event::DetachKeys))
        );
        let Some(event) = event else { return };
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}

/// A close frame's reason holds at most 123 bytes: cut at a character.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_parse_and_unknown_ones_do_not() {
        let r: Control = serde_json::from_str(r#"{"resize":{"rows":40,"cols":120}}"#).unwrap();
        assert!(matches!(
            r,
            Control::Resize {
                rows: 40,
                cols: 120
            }
        ));
        assert!(matches!(
            serde_json::from_str(r#"{"take":{}}"#).unwrap(),
            Control::Take {}
        ));
        let i: Control = serde_json::from_str(r#"{"input":"ls\r"}"#).unwrap();
        assert!(matches!(i, Control::Input(t) if t == "ls\r"));
        for bad in [
            r#"{"resize":{"rows":40}}"#,
            r#"{"exec":"sh"}"#,
            "ls",
            r#"{"resize":{"rows":-1,"cols":2}}"#,
        ] {
            assert!(serde_json::from_str::<Control>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_close_reason_is_cut_to_123_bytes_at_a_character() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'), "{cut}");
        assert_eq!(close_reason("short"), "short");
    }
}
