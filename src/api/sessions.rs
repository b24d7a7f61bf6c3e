//! Terminal sessions (`run --pty`) over the API: `send` types into one
//! (acting on it, authorized like `kill`), `screen` reads it (like
//! `status`). The core decides both (see `Controller::send_keys`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{Body, Query};
use super::problem::{ApiResult, Problem};
use super::AppState;
use crate::pty::proto::Screen;
use crate::text::parse_seconds;

/// What `send` types: the text (a newline is Enter), then each key.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Typed as is; "\n" is Enter.
    pub text: Option<String>,
    /// Keys after the text, e.g. "Enter", "C-c", "Up", "F1".
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Types into a terminal session (`send`); 204 once the holder has it.
#[utoipa::path(post, path = "/api/v1/processes/{id}/send", tag = "processes", request_body = SendRequest,
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem),
        (status = 503, body = Problem)))]
pub async fn send(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<SendRequest>,
) -> ApiResult<StatusCode> {
    state
        .controller(&caller)
        .send_keys(&id, body.text.as_deref(), &body.keys)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `screen`'s wait.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScreenQuery {
    /// Answer once this text shows on the screen.
    pub wait_for: Option<String>,
    /// How long to wait for it, e.g. "30s" [default: 10s].
    pub timeout: Option<String>,
}

/// The visible screen of a terminal session (`screen --json`).
#[utoipa::path(get, path = "/api/v1/processes/{id}/screen", tag = "processes",
    params(("id" = String, Path, description = "Record id, unique prefix, or unit name"), ScreenQuery),
    responses((status = 200, body = Screen), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn screen(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<ScreenQuery>,
) -> ApiResult<Json<Screen>> {
    let timeout = match q.timeout.as_deref() {
        Some(t) => Duration::from_secs(parse_seconds(t)?),
        None => Duration::from_secs(10),
    };
    let controller = state.controller(&caller);
    Ok(Json(
        controller
            .screen(&id, q.wait_for.as_deref(), timeout)
            .await?,
    ))
}
