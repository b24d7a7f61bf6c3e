//! `refine-proc mcp`: the core's operations as Model Context Protocol
//! tools for agents, on stdio, built with the official SDK (rmcp).
//!
//! Every tool calls the same core as the CLI, on behalf of the same caller:
//! run from inside a managed unit, the server is that managed process and
//! its policy binds every call (systemd says which unit the server's pid is
//! in; nothing the client sends can change it). `--actor OWNER` lowers a
//! person's power to a bounded actor's, never raises it.
//!
//! Results are the CLI's `--json` as structured content (an array is
//! wrapped in an object, as the protocol wants: `{"processes": [...]}`);
//! a refusal is a tool error with the message, the rule and the file.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::controller::{
    CheckRequest, Controller, EventFilter, ListFilter, PageRequest, Request, RunOptions, Selection,
    Until,
};
use crate::error::{Error, Result};
use crate::model::{Owner, State};
use crate::run_request::RunRequest;

/// The MCP server: one controller, acting for this process's caller.
#[derive(Clone)]
pub struct McpServer {
    controller: Arc<Controller>,
    tool_router: ToolRouter<McpServer>,
    /// The tools a read token may not call (see [`McpServer::read_only`]).
    withheld: Arc<Vec<String>>,
}

/// Serves MCP on stdin/stdout until the client goes away.
pub async fn serve_stdio(controller: Controller) -> Result<()> {
    let server = McpServer::new(controller);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::invalid(format!("the MCP client did not initialize: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::invalid(format!("the MCP session failed: {e}")))?;
    Ok(())
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListArgs {
    /// Include ended processes.
    pub all: bool,
    pub owner: Option<String>,
    pub workflow: Option<String>,
    pub session: Option<String>,
    pub gap: Option<String>,
    /// running, paused, queued, exited, failed, stopped, lost, ...
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// The record id (or a unique prefix), or the unit name.
    pub id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GroupArgs {
    /// One process (record id, prefix or unit name).
    pub id: Option<String>,
    /// Or every running process of this owner ...
    pub owner: Option<String>,
    /// ... of this workflow ...
    pub workflow: Option<String>,
    /// ... of this session ...
    pub session: Option<String>,
    /// ... or every managed process.
    pub all: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StopArgs {
    #[serde(flatten)]
    pub target: GroupArgs,
    /// Also stop every process they launched, children first.
    pub tree: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillArgs {
    pub id: String,
    /// Signal name or number (default TERM).
    pub signal: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// The terminal session (a process started with `pty: true`).
    pub id: String,
    /// Typed as is; "\n" is Enter.
    pub text: Option<String>,
    /// Keys after the text, e.g. "Enter", "C-c", "Up", "Tab", "F1".
    #[serde(default)]
    pub keys: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenArgs {
    /// The terminal session (a process started with `pty: true`).
    pub id: String,
    /// Answer once this text shows on the screen.
    pub wait_for: Option<String>,
    /// How long to wait for it, e.g. "30s" (default 10s).
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    pub id: String,
    /// Continue after this cursor (a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Without a cursor: only the last N lines.
    pub tail: Option<usize>,
    /// At most this many lines (default 200, at most 5000); `more` says
    /// when there are further lines.
    pub limit: Option<usize>,
    /// When there is nothing new yet, wait up to this long for a line
    /// (e.g. "10s").
    pub wait: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    pub id: String,
    /// exit, healthy or log.
    pub until: String,
    /// For `log`: a regular expression a line must match.
    pub pattern: Option<String>,
    /// How long to wait at most, e.g. "20s".
    pub timeout: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EventsArgs {
    /// Continue after this cursor (a previous page's `next_cursor`, or an
    /// event's `event_id`); without one, from the oldest event kept.
    pub cursor: Option<String>,
    pub id: Option<String>,
    pub owner: Option<String>,
    pub workflow: Option<String>,
    /// At most this many events read (default 200).
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyCheckArgs {
    /// The actor to check (default: the caller): person or an owner.
    pub actor: Option<String>,
    /// A launch to check, as `run` takes it (optional).
    pub launch: Option<RunRequest>,
}

/// Where the resources live: `refine-proc://process/ID[/logs]`.
const URI_PREFIX: &str = "refine-proc://process/";

/// A protocol result from its JSON (the SDK's structs are non-exhaustive).
fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> std::result::Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// A result as the CLI's `--json` prints it.
fn ok<T: Serialize>(key: &str, value: T) -> CallToolResult {
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    CallToolResult::structured(match v {
        Value::Object(_) => v,
        other => json!({ key: other }),
    })
}

/// A refusal or failure the agent can act on: what, why, and what to do.
fn failed(e: Error) -> CallToolResult {
    // MCP's tools take the API's JSON fields: name inputs as those.
    let e = e.worded(crate::error::Field::json_field);
    CallToolResult::structured_error(json!({
        "error": e.message,
        "hint": e.hint,
        "kind": e.kind.name(),
        "exit_code": e.kind.exit_code(),
    }))
}

fn answer<T: Serialize>(key: &str, r: Result<T>) -> CallToolResult {
    match r {
        Ok(v) => ok(key, v),
        Err(e) => failed(e),
    }
}

fn duration(name: &str, text: &str) -> Result<Duration> {
    crate::text::parse_seconds(text)
        .map(Duration::from_secs)
        .map_err(|mut e| {
            e.message = format!("{name}: {}", e.message);
            e
        })
}

fn owner(text: &Option<String>) -> Result<Option<Owner>> {
    text.as_deref().map(str::parse).transpose()
}

impl GroupArgs {
    fn selection(self) -> Result<Selection> {
        let group = self.owner.is_some() || self.workflow.is_some() || self.session.is_some();
        if self.id.is_none() && !group && !self.all {
            return Err(Error::invalid("nothing to act on")
                .hint("give id, or one of owner, workflow, session, or all: true"));
        }
        Ok(Selection {
            ids: self.id.into_iter().collect(),
            owner: owner(&self.owner)?,
            workflow: self.workflow,
            session: self.session,
            all: self.all,
        })
    }
}

#[tool_router]
impl McpServer {
    pub fn new(controller: Controller) -> McpServer {
        McpServer {
            controller: Arc::new(controller),
            tool_router: Self::tool_router(),
            withheld: Arc::default(),
        }
    }

    /// Only the read-only tools (a read token's): the others are not
    /// listed, and a call of one is a tool error that names the scope.
    pub fn read_only(mut self) -> McpServer {
        let writers: Vec<String> = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| {
                t.annotations
                    .as_ref()
                    .is_none_or(|a| a.read_only_hint != Some(true))
            })
            .map(|t| t.name.to_string())
            .collect();
        for name in &writers {
            self.tool_router.disable_route(name.clone());
        }
        self.withheld = Arc::new(writers);
        self
    }

    async fn call(&self, key: &str, request: Request) -> CallToolResult {
        answer(
            key,
            self.controller.handle(request).await.map(|a| a.response),
        )
    }

    #[tool(
        description = "List managed processes (running ones; all: true adds ended ones) with owner, state, usage and health: the JSON of `refine-proc list --json`.",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn list(&self, Parameters(a): Parameters<ListArgs>) -> CallToolResult {
        let filter = (|| -> Result<ListFilter> {
            Ok(ListFilter {
                all: a.all,
                owner: owner(&a.owner)?,
                workflow: a.workflow,
                session: a.session,
                gap: a.gap,
                state: a.state.as_deref().map(str::parse::<State>).transpose()?,
            })
        })();
        match filter {
            Ok(f) => self.call("processes", Request::List(f)).await,
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Everything known about one process: its record (who started it and why, command, state, exit), systemd's live view, usage and health.",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn status(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.call("status", Request::Status { id: a.id }).await
    }

    #[tool(
        description = "Start a command as a managed process (a transient systemd user service). `command` is an array of strings (no shell). Returns its record once systemd runs it; use `wait` to wait for its end and `logs` to read its output.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false
        )
    )]
    async fn run(&self, Parameters(a): Parameters<RunRequest>) -> CallToolResult {
        let queue = a.queue;
        match a.into_spec() {
            Ok(spec) => {
                let options = RunOptions {
                    queue,
                    ..Default::default()
                };
                self.call("record", Request::Run { spec, options }).await
            }
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Stop a process (id), or a group (owner, workflow, session, all), and wait until it has ended; tree: true also stops what it launched.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn stop(&self, Parameters(a): Parameters<StopArgs>) -> CallToolResult {
        let tree = a.tree;
        match a.target.selection() {
            Ok(s) => answer("outcomes", self.controller.stop_selection(&s, tree).await),
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Send a signal (default TERM) to every process of a managed process's unit.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn kill(&self, Parameters(a): Parameters<KillArgs>) -> CallToolResult {
        match crate::text::parse_signal(a.signal.as_deref().unwrap_or("TERM")) {
            Ok(signal) => {
                self.call("outcomes", Request::Kill { id: a.id, signal })
                    .await
            }
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Restart a running process, or start an ended one again with the same command, environment and limits, under the same id.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn restart(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.call("outcomes", Request::Restart { id: a.id }).await
    }

    #[tool(
        description = "Type into a terminal session (a process run with `pty: true`): `text` as typed (\"\\n\" is Enter), then `keys` such as \"Enter\", \"C-c\", \"Up\". Read the result with `screen`.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn send(&self, Parameters(a): Parameters<SendArgs>) -> CallToolResult {
        let sent = self
            .controller
            .send_keys(&a.id, a.text.as_deref(), &a.keys)
            .await;
        answer("sent", sent.map(|()| true))
    }

    #[tool(
        description = "The visible screen of a terminal session (a process run with `pty: true`): its rows as text, the cursor and the size; with wait_for, once that text shows (within timeout, default 10s).",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn screen(&self, Parameters(a): Parameters<ScreenArgs>) -> CallToolResult {
        let timeout = match a.timeout.as_deref().map(|t| duration("timeout", t)) {
            None => Duration::from_secs(10),
            Some(Ok(t)) => t,
            Some(Err(e)) => return failed(e),
        };
        let wait_for = a.wait_for.as_deref();
        answer(
            "screen",
            self.controller.screen(&a.id, wait_for, timeout).await,
        )
    }

    #[tool(
        description = "Pause (freeze) a process, or a group; it keeps its memory but gets no CPU until resumed.",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn pause(&self, Parameters(a): Parameters<GroupArgs>) -> CallToolResult {
        match a.selection() {
            Ok(s) => self.call("outcomes", Request::Pause(s)).await,
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Resume what pause froze (a group's resume thaws only what that group's pause froze).",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn resume(&self, Parameters(a): Parameters<GroupArgs>) -> CallToolResult {
        match a.selection() {
            Ok(s) => self.call("outcomes", Request::Resume(s)).await,
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "A page of a process's output from journald: lines after `cursor` (or the last `tail` lines), at most `limit`, with `next_cursor` for the next page and `more` when there is more. With `wait`, waits that long for a new line when there is none yet.",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn logs(&self, Parameters(a): Parameters<LogsArgs>) -> CallToolResult {
        let wait = match a.wait.as_deref().map(|w| duration("wait", w)).transpose() {
            Ok(w) => w,
            Err(e) => return failed(e),
        };
        let request = PageRequest {
            after: a.cursor,
            tail: a.tail,
            limit: a.limit,
            wait,
        };
        answer("page", self.controller.log_page(&a.id, &request).await)
    }

    #[tool(
        description = "Wait until a process ends (until: exit), its health check passes (until: healthy), or it prints a line matching `pattern` (until: log), at most `timeout` (e.g. \"20s\"). Returns whether it happened (`met`) and the record as it is then.",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn wait(&self, Parameters(a): Parameters<WaitArgs>) -> CallToolResult {
        let until = match (a.until.as_str(), &a.pattern) {
            ("exit", None) => Ok(Until::Exit),
            ("healthy", None) => Ok(Until::Healthy),
            ("log", Some(p)) => regex::Regex::new(p).map(Until::Log).map_err(|e| {
                Error::invalid(format!("pattern: {e}")).hint("give a regular expression")
            }),
            ("log", None) => Err(Error::invalid("until: log needs a pattern")),
            (_, Some(_)) => Err(Error::invalid("pattern goes with until: log only")),
            (other, None) => Err(Error::invalid(format!(
                "until: {other:?} is not exit, healthy or log"
            ))),
        };
        let timeout = duration("timeout", &a.timeout);
        match (until, timeout) {
            (Ok(u), Ok(t)) => answer("wait", self.controller.wait_until(&a.id, u, t).await),
            (Err(e), _) | (_, Err(e)) => failed(e),
        }
    }

    #[tool(
        description = "The history of lifecycle events (started, exited, failed, stopped, paused, refused, ...), oldest first, each with its `event_id`; pass `next_cursor` back as `cursor` to continue without losing or repeating one.",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn events(&self, Parameters(a): Parameters<EventsArgs>) -> CallToolResult {
        let page = owner(&a.owner).and_then(|owner| {
            let filter = EventFilter {
                id: a.id,
                owner,
                workflow: a.workflow,
                ..Default::default()
            };
            let limit = a.limit.unwrap_or(200).clamp(1, 5000);
            self.controller
                .events_after(a.cursor.as_deref(), &filter, limit)
        });
        answer("events", page)
    }

    #[tool(
        description = "What an actor may do under the policy in force, and whether a launch would pass (and why not: the rule and the file).",
        annotations(read_only_hint = true, idempotent_hint = true)
    )]
    async fn policy_check(&self, Parameters(a): Parameters<PolicyCheckArgs>) -> CallToolResult {
        let check = (|| -> Result<CheckRequest> {
            Ok(CheckRequest {
                actor: a
                    .actor
                    .as_deref()
                    .map(crate::policy::parse_actor)
                    .transpose()?,
                launch: a.launch.map(RunRequest::into_spec).transpose()?,
            })
        })();
        match check {
            Ok(c) => self.call("verdict", Request::PolicyCheck(c)).await,
            Err(e) => failed(e),
        }
    }
}

impl McpServer {
    /// What the server says of itself (the stdio proxy says the same).
    fn info() -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .build();
        ServerConfig::new(capabilities).with_instructions(
            "refine-proc: run, watch and control processes as transient systemd user units. \
             Start with `list`; `run` takes `command` as an array of strings; `wait` and \
             `logs` follow a process; refusals name the policy rule and file. \
             Resources: refine-proc://process/ID (the record) and \
             refine-proc://process/ID/logs (the last lines).",
        )
    }
}

/// A write tool called with a read token: not "tool not found" (which
/// would send the agent looking for a typo) but what to do instead.
fn withheld(tool: &str) -> CallToolResult {
    failed(
        Error::new(
            crate::ErrorKind::Denied,
            format!(
                "{tool} changes processes, and this token's scope is read: it may call only the read-only tools"
            ),
        )
        .hint("connect with a control token (a person makes one: refine-proc web --token control), or through the daemon's Unix socket"),
    )
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        McpServer::info()
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<rmcp::model::CallToolResponse, ErrorData> {
        if self.withheld.iter().any(|t| *t == request.name) {
            return Ok(withheld(&request.name).into());
        }
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourceTemplatesResult, ErrorData> {
        from_json(json!({"resourceTemplates": [
            {"uriTemplate": format!("{URI_PREFIX}{{id}}"), "name": "process",
             "description": "A managed process's status: its record, systemd's view, usage, health", "mimeType": "application/json"},
            {"uriTemplate": format!("{URI_PREFIX}{{id}}/logs"), "name": "process-logs",
             "description": "The last 200 lines of a process's output, with next_cursor for the logs tool", "mimeType": "application/json"},
        ]}))
    }

    /// The running processes, each as its record and its logs.
    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, ErrorData> {
        let listed = self
            .controller
            .handle(Request::List(ListFilter::default()))
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        let listed = serde_json::to_value(listed.response).unwrap_or(Value::Null);
        let mut resources = Vec::new();
        for p in listed.as_array().into_iter().flatten() {
            let (Some(id), label) = (p["id"].as_str(), p["label"].as_str().unwrap_or("")) else {
                continue;
            };
            resources.push(json!({"uri": format!("{URI_PREFIX}{id}"), "name": format!("{id} {label}"), "mimeType": "application/json"}));
            resources.push(json!({"uri": format!("{URI_PREFIX}{id}/logs"), "name": format!("{id} logs"), "mimeType": "application/json"}));
        }
        from_json(json!({ "resources": resources }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let not_found =
            |why: String| ErrorData::resource_not_found(why, Some(json!({ "uri": uri })));
        let Some(rest) = uri.strip_prefix(URI_PREFIX) else {
            return Err(not_found(format!(
                "not a refine-proc resource; use {URI_PREFIX}ID or {URI_PREFIX}ID/logs"
            )));
        };
        let value = match rest.split_once('/') {
            None => self
                .controller
                .handle(Request::Status { id: rest.into() })
                .await
                .map(|a| serde_json::to_value(a.response)),
            Some((id, "logs")) => {
                let page = PageRequest {
                    after: None,
                    tail: Some(200),
                    limit: Some(200),
                    wait: None,
                };
                self.controller
                    .log_page(id, &page)
                    .await
                    .map(serde_json::to_value)
            }
            Some(_) => {
                return Err(not_found(format!(
                    "unknown resource; use {URI_PREFIX}ID or {URI_PREFIX}ID/logs"
                )))
            }
        };
        let value = value
            .map_err(|e| match e.kind {
                crate::error::ErrorKind::NotFound => not_found(e.message),
                // A refusal keeps its rule and file (in the hint).
                _ => ErrorData::invalid_params(e.message, Some(json!({ "hint": e.hint }))),
            })?
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let result: ReadResourceResult = from_json(json!({"contents": [
            {"uri": uri, "mimeType": "application/json", "text": value.to_string()}
        ]}))?;
        Ok(result.into())
    }
}

/// Serves MCP on stdin/stdout by handing every request to the daemon's
/// `/mcp` on its API socket: how a confined process (no bus, a hidden
/// index) runs `mcp`. The daemon establishes the caller from the socket's
/// credentials, so each tool call is that confined process's, bound by its
/// policy; a refusal comes back as the daemon's tool error.
pub async fn proxy_stdio(socket: &std::path::Path) -> Result<()> {
    use rmcp::transport::StreamableHttpClientTransport;
    let path = socket.to_str().ok_or_else(|| {
        Error::invalid(format!("the API socket {} is not UTF-8", socket.display()))
    })?;
    let url = format!("http://localhost{}", crate::api::mcp::PATH);
    let transport = StreamableHttpClientTransport::from_unix_socket(path, url);
    let daemon = ().serve(transport).await.map_err(|e| {
        Error::new(
            crate::ErrorKind::Unavailable,
            format!(
                "cannot reach MCP at the daemon's socket {}: {e}",
                socket.display()
            ),
        )
        .hint("start the daemon of this index (refine-proc daemon), which serves /mcp")
    })?;
    let proxy = Proxy { daemon };
    let running = proxy
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::invalid(format!("the MCP client did not initialize: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::invalid(format!("the MCP session failed: {e}")))?;
    Ok(())
}

/// The stdio side of [`proxy_stdio`]: each request forwarded as is.
struct Proxy {
    daemon: rmcp::service::RunningService<rmcp::RoleClient, ()>,
}

fn forwarded(e: rmcp::service::ServiceError) -> ErrorData {
    match e {
        rmcp::service::ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("the daemon's /mcp: {other}"), None),
    }
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        McpServer::info()
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<rmcp::model::ListToolsResult, ErrorData> {
        self.daemon.list_tools(request).await.map_err(forwarded)
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<rmcp::model::CallToolResponse, ErrorData> {
        self.daemon.call_tool_once(request).await.map_err(forwarded)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourceTemplatesResult, ErrorData> {
        self.daemon
            .list_resource_templates(request)
            .await
            .map_err(forwarded)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, ErrorData> {
        self.daemon.list_resources(request).await.map_err(forwarded)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, ErrorData> {
        self.daemon
            .read_resource_once(request)
            .await
            .map_err(forwarded)
    }
}
