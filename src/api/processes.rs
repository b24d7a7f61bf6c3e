//! `/api/v1/processes`: each handler is request -> one core call ->
//! response, acting for the established caller (see `auth`).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{Body, Query};
use super::idempotency::{self, Outcome};
use super::problem::{ApiResult, Problem};
use super::schema::{ActionOutcomeDoc, AdoptedDoc, ListedDoc, StatusDoc};
use super::AppState;
use crate::controller::{ListFilter, Request, Response as Answered, RunOptions, Selection};
use crate::error::{Error, ErrorKind};
use crate::model::{LimitChange, Metadata, Owner, Record, State as RunState};
use crate::spec::{AdoptSpec, RunSpec};
use crate::text::{
    parse_cpu_quota, parse_cpu_weight, parse_limit, parse_signal, parse_size, parse_tasks,
};

/// `list`'s filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Include ended processes.
    #[serde(default)]
    pub all: bool,
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    pub session: Option<String>,
    pub gap: Option<String>,
    pub state: Option<RunState>,
}

/// Warnings of a read, as `refine-warning` headers (the body stays what
/// `list --json` prints).
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&crate::text::escape(w)) {
            response.headers_mut().append("refine-warning", v);
        }
    }
    response
}

/// The running processes (with `all`, ended ones too), with usage and health.
#[utoipa::path(get, path = "/api/v1/processes", tag = "processes", params(ListQuery),
    responses((status = 200, description = "As `refine-proc list --json`", body = Vec<ListedDoc>),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let filter = ListFilter {
        all: q.all,
        owner: q.owner,
        workflow: q.workflow,
        session: q.session,
        gap: q.gap,
        state: q.state,
    };
    let answer = state
        .controller(&caller)
        .handle(Request::List(filter))
        .await?;
    let Answered::Listed(listed) = answer.response else {
        unreachable!("a list is answered with a list")
    };
    Ok(with_warnings(
        Json(listed).into_response(),
        &answer.warnings,
    ))
}

pub use crate::run_request::{LimitsText, RunRequest};

/// A run of the API, checked by the core's one reader of runs
/// ([`RunRequest::into_spec`], the MCP tool's too). Only the directory is
/// the API's own: the daemon has no current directory of yours.
fn run_spec(mut body: RunRequest) -> crate::Result<RunSpec> {
    body.cwd = Some(match body.cwd.take() {
        Some(dir) if !dir.is_absolute() => {
            return Err(Error::invalid(format!(
                "cwd {:?} is not an absolute path",
                crate::text::escape(&dir.to_string_lossy())
            ))
            .hint("the daemon has no current directory of yours: pass an absolute cwd"))
        }
        Some(dir) => dir,
        None => crate::provenance::home_dir().ok_or_else(|| {
            Error::invalid("you have no home directory to run in").hint("pass cwd")
        })?,
    });
    body.into_spec()
}

fn created(record: &Record) -> Response {
    let mut response = (StatusCode::CREATED, Json(record)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/processes/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Starts a process as `refine-proc run` does, under the caller's policy.
/// With `Idempotency-Key`, a retry returns the first run's record (200)
/// and starts nothing.
#[utoipa::path(post, path = "/api/v1/processes", tag = "processes", request_body = RunRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried run start nothing twice (kept 24 h)")),
    responses((status = 201, description = "Started (or queued)", body = Record),
        (status = 200, description = "Already started under this Idempotency-Key", body = Record),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 500, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(body): Body<RunRequest>,
) -> ApiResult<Response> {
    let controller = state.controller(&caller);
    let options = RunOptions {
        queue: body.queue,
        ..Default::default()
    };
    let key = headers
        .get("idempotency-key")
        .map(|k| k.to_str().unwrap_or(""));
    let Some(key) = key else {
        let record = controller.run(run_spec(body)?, options).await?;
        return Ok(created(&record));
    };
    let canonical = serde_json::to_string(&body).expect("requests serialize");
    let claimed = match idempotency::claim(controller.index().dir(), key, &canonical)? {
        Outcome::Done(id) => {
            let mut response = Json(controller.record(&id).await?).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Outcome::Claimed(path) => path,
    };
    match controller.run(run_spec(body)?, options).await {
        Ok(record) => {
            idempotency::complete(&claimed, &record.id)?;
            Ok(created(&record))
        }
        Err(e) => {
            // Refused before anything started: the key may be used again.
            if matches!(
                e.kind,
                ErrorKind::Invalid | ErrorKind::Denied | ErrorKind::Unavailable
            ) {
                idempotency::release(&claimed);
            }
            Err(e.into())
        }
    }
}

/// An adoption, as `refine-proc adopt` takes it.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    pub pid: u32,
    pub owner: Option<Owner>,
    pub label: Option<String>,
    pub details: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Move only `pid`, not its descendants.
    #[serde(default)]
    pub no_children: bool,
}

/// Moves a running process (and its descendants) into a transient scope.
#[utoipa::path(post, path = "/api/v1/processes/adopt", tag = "processes", request_body = AdoptRequest,
    responses((status = 201, body = AdoptedDoc),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 500, body = Problem), (status = 502, body = Problem),
        (status = 503, body = Problem)))]
pub async fn adopt(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<AdoptRequest>,
) -> ApiResult<Response> {
    let spec = AdoptSpec {
        pid: body.pid,
        owner: body.owner,
        label: body.label,
        details: body.details,
        metadata: body.metadata,
        no_children: body.no_children,
    };
    let adopted = state.controller(&caller).adopt(spec).await?;
    Ok((StatusCode::CREATED, Json(adopted)).into_response())
}

/// One process with systemd's live view, usage and health (`status --json`).
#[utoipa::path(get, path = "/api/v1/processes/{id}", tag = "processes",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 200, body = StatusDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let answer = state
        .controller(&caller)
        .handle(Request::Status { id })
        .await?;
    let Answered::Status(status) = answer.response else {
        unreachable!("a status is answered with a status")
    };
    Ok(with_warnings(
        Json(status).into_response(),
        &answer.warnings,
    ))
}

/// Drops the record of an ended process (`forget`).
#[utoipa::path(delete, path = "/api/v1/processes/{id}", tag = "processes",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 200, body = ActionOutcomeDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 500, body = Problem),
        (status = 503, body = Problem)))]
pub async fn forget(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::controller::ActionOutcome>> {
    Ok(Json(state.controller(&caller).forget(&id).await?))
}

/// Which action of a process.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Stop,
    Restart,
    Pause,
    Resume,
}

/// Stops, restarts, pauses or resumes one process; the outcomes as
/// `stop --json` (and the others) print them.
#[utoipa::path(post, path = "/api/v1/processes/{id}/{action}", tag = "processes",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name"),
        ("action" = Action, Path, description = "stop, restart, pause or resume")),
    responses((status = 200, body = Vec<ActionOutcomeDoc>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 500, body = Problem), (status = 502, body = Problem),
        (status = 503, body = Problem)))]
pub async fn act(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Json<Vec<crate::controller::ActionOutcome>>> {
    let action: Action = serde_json::from_value(serde_json::Value::String(action.clone()))
        .map_err(|_| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no action {:?}", crate::text::escape(&action)),
            )
            .hint("use stop, kill, restart, pause, resume or limits")
        })?;
    let controller = state.controller(&caller);
    let one = Selection {
        ids: vec![id.clone()],
        ..Default::default()
    };
    let outcomes = match action {
        Action::Stop => controller.stop(&[id]).await?,
        Action::Restart => vec![controller.restart(&id).await?],
        Action::Pause => controller.pause(&one).await?,
        Action::Resume => controller.resume(&one).await?,
    };
    Ok(Json(outcomes))
}

/// `kill`'s signal.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// Name or number [default: TERM].
    pub signal: Option<String>,
}

/// Sends a signal to all processes of the unit.
#[utoipa::path(post, path = "/api/v1/processes/{id}/kill", tag = "processes", request_body = Option<KillRequest>,
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 200, body = ActionOutcomeDoc), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 500, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn kill(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Body<KillRequest>>,
) -> ApiResult<Json<crate::controller::ActionOutcome>> {
    let signal = body
        .and_then(|b| b.0.signal)
        .unwrap_or_else(|| "TERM".into());
    let signal = parse_signal(&signal)?;
    Ok(Json(state.controller(&caller).kill(&id, signal).await?))
}

/// New limits: a value or `infinity` each.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    pub memory_max: Option<String>,
    pub memory_high: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_weight: Option<String>,
    pub tasks_max: Option<String>,
}

impl LimitsChange {
    pub fn parse(&self) -> crate::Result<LimitChange> {
        let limit = |v: &Option<String>, parse: fn(&str) -> crate::Result<u64>| {
            v.as_deref().map(|s| parse_limit(s, parse)).transpose()
        };
        let change = LimitChange {
            memory_max: limit(&self.memory_max, parse_size)?,
            memory_high: limit(&self.memory_high, parse_size)?,
            cpu_quota_percent: limit(&self.cpu_quota, parse_cpu_quota)?,
            cpu_weight: limit(&self.cpu_weight, parse_cpu_weight)?,
            tasks_max: limit(&self.tasks_max, parse_tasks)?,
        };
        change.validate()?;
        Ok(change)
    }
}

/// Changes the limits of a running process (`set`); the updated record.
#[utoipa::path(post, path = "/api/v1/processes/{id}/limits", tag = "processes", request_body = LimitsChange,
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 200, body = Record), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<LimitsChange>,
) -> ApiResult<Json<Record>> {
    let change = body.parse()?;
    Ok(Json(
        state.controller(&caller).set_limits(&id, &change).await?,
    ))
}

/// A group: exactly one of owner, workflow, session, or all.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    pub session: Option<String>,
    #[serde(default)]
    pub all: bool,
}

impl GroupRequest {
    fn selection(self) -> crate::Result<Selection> {
        let n = [
            self.owner.is_some(),
            self.workflow.is_some(),
            self.session.is_some(),
            self.all,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            return Err(Error::invalid("name exactly one group").hint(
                "send one of {\"owner\": O}, {\"workflow\": W}, {\"session\": S}, {\"all\": true}",
            ));
        }
        Ok(Selection {
            ids: Vec::new(),
            owner: self.owner,
            workflow: self.workflow,
            session: self.session,
            all: self.all,
        })
    }
}

/// Pauses or resumes a group (`pause --owner O` ...); the outcomes.
#[utoipa::path(post, path = "/api/v1/groups/{action}", tag = "processes", request_body = GroupRequest,
    params(("action" = String, Path, description = "pause or resume")),
    responses((status = 200, body = Vec<ActionOutcomeDoc>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 500, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(action): Path<String>,
    Body(body): Body<GroupRequest>,
) -> ApiResult<Json<Vec<crate::controller::ActionOutcome>>> {
    let selection = body.selection()?;
    let controller = state.controller(&caller);
    let outcomes = match action.as_str() {
        "pause" => controller.pause(&selection).await?,
        "resume" => controller.resume(&selection).await?,
        other => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no group action {:?}", crate::text::escape(other)),
            )
            .hint("use pause or resume"))
        }
    };
    Ok(Json(outcomes))
}
