//! The router and its OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the types they take and return.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::Problem;
use super::{processes, streams, system, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "refine-proc", description = "Process control for developers and agents, on transient systemd user units: the same operations, policy and audit as the CLI."),
    components(schemas(Problem)),
    tags((name = "processes"), (name = "events"), (name = "system"), (name = "policy"), (name = "sessions"))
)]
struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(|| router().1);
    Json(DOC.clone())
}

/// The API routes and the document that describes them.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(processes::list, processes::run))
        .routes(routes!(processes::adopt))
        .routes(routes!(processes::status, processes::forget))
        .routes(routes!(processes::act))
        .routes(routes!(processes::kill))
        .routes(routes!(processes::limits))
        .routes(routes!(processes::group))
        .routes(routes!(streams::logs))
        .routes(routes!(streams::events))
        .routes(routes!(system::system))
        .routes(routes!(system::policy))
        .routes(routes!(system::policy_check))
        .routes(routes!(system::web_code))
        .routes(routes!(system::session))
        .routes(routes!(system::token))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// The whole application: the API, its document, the pages, the guard.
pub fn app(state: AppState) -> Router {
    router()
        .0
    .fallback(fallback)
    .layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::guard))
    .with_state(state)
}

/// The pages (GET), else a problem: 404 for an unknown path.
async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        return Problem::new(StatusCode::NOT_FOUND, "not-found", format!("no endpoint {}", crate::text::escape(path)))
            .hint("see /api/v1/openapi.json")
            .into_response();
    }
    match super::web::asset(path) {
        Some((bytes, mime)) if req.method() == axum::http::Method::GET => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
            );
            r
        }
        _ => Problem::new(StatusCode::NOT_FOUND, "not-found", "no such page").into_response(),
    }
}
