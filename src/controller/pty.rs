//! Terminal sessions (`run --pty`) as every surface reaches them: typing
//! into one is acting on it (authorized like `kill`), its screen is a read
//! like `status`. The CLI, the HTTP API and the MCP server call these.
//! A terminal view (the API's WebSocket) is both: anyone who may read
//! watches; only who may act types.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::pty::{self, client, proto::Screen};

/// ACTION as refusals record it: the same as `send`'s.
const SEND_INPUT: &str = "send input to";

/// What a terminal viewer may do with a session, as the core decided.
#[derive(Debug)]
pub struct TerminalAccess {
    /// The record's id.
    pub id: String,
    /// The live session's socket.
    pub socket: PathBuf,
    /// Why this requester may not type (None: it may).
    pub read_only: Option<Error>,
}

impl Controller {
    /// Opens a terminal view of the session `arg` names: a read like
    /// `screen`; whether it may also type is decided here, as `send` is,
    /// but not refused (nor audited) until it tries (see
    /// [`Controller::refused_input`]).
    pub async fn terminal(&self, arg: &str) -> Result<TerminalAccess> {
        let record = self.status(arg).await?.record;
        let socket = pty::live_socket(&record)?;
        let read_only = self.act_on_denial(SEND_INPUT, &record).await?;
        Ok(TerminalAccess {
            id: record.id,
            socket,
            read_only,
        })
    }

    /// Audits a read-only viewer's attempt to type (as `send`'s refusal).
    pub fn refused_input(&self, access: &TerminalAccess, error: &Error) {
        self.record_refusal(SEND_INPUT, Some(&access.id), error);
    }

    /// Types `text` (a newline is Enter), then each key (`Enter`, `C-c`,
    /// ...), into the session `arg` names. Bad keys are refused before
    /// anything is sent.
    pub async fn send_keys(&self, arg: &str, text: Option<&str>, keys: &[String]) -> Result<()> {
        let bytes = pty::send_bytes(text, keys)?;
        let socket = self.session_socket(arg, true).await?;
        client::send(&socket, &bytes).await
    }

    /// The visible screen of the session `arg` names; with `wait_for`,
    /// once that text shows (within `timeout`).
    pub async fn screen(
        &self,
        arg: &str,
        wait_for: Option<&str>,
        timeout: Duration,
    ) -> Result<Screen> {
        let socket = self.session_socket(arg, false).await?;
        client::screen(&socket, wait_for, timeout).await
    }

    /// The socket of the session `arg` names, for `attach`: from its record
    /// in the index, with no question to systemd but the requester's
    /// identity when it would `act`. The connection itself then tells
    /// whether the session lives; when it fails, [`Self::session_socket`]
    /// (systemd's live state) says why.
    pub async fn attach_socket(&self, arg: &str, act: bool) -> Result<PathBuf> {
        let id = self.resolve(arg)?;
        let record = match self.index.load(&id)? {
            Loaded::Found(r) => *r,
            // Not in the index as it is: systemd knows more.
            _ => return self.session_socket(arg, act).await,
        };
        if act {
            self.authorize("send input to", &record).await?;
        }
        pty::live_socket(&record)
    }

    /// The socket of a live, unpaused session, checked against the
    /// requester's `act_on` when it would `act` (write to it).
    pub async fn session_socket(&self, arg: &str, act: bool) -> Result<PathBuf> {
        let record = self.status(arg).await?.record;
        if act {
            self.authorize(SEND_INPUT, &record).await?;
        }
        pty::live_socket(&record)
    }
}
