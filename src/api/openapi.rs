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
use super::{processes, sessions, streams, system, terminal, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "refine-proc", description = "Process control for developers and agents, on transient systemd user units: the same operations, policy and audit as the CLI."),
    components(schemas(Problem, processes::Action)),
    tags((name = "processes"), (name = "events"), (name = "system"), (name = "policy"), (name = "sessions"))
)]
struct ApiDoc;

/// Every operation can be refused (401 on TCP without a session, 403) and
/// can meet a core failure (the index 500, systemd 502, no user manager
/// 503); every error body is `application/problem+json`.
struct Problems;

/// The statuses any operation may answer with.
const ALWAYS: [(&str, &str); 5] = [
    ("401", "TCP without a session"),
    (
        "403",
        "Refused: another uid, a cross-origin request, or by policy",
    ),
    ("500", "The index cannot be read or written"),
    ("502", "systemd refused or failed the operation"),
    ("503", "No systemd user manager is reachable"),
];

impl utoipa::Modify for Problems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                for (status, why) in ALWAYS {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| ResponseBuilder::new().description(why).into());
                }
                for (status, r) in responses.iter_mut() {
                    let utoipa::openapi::RefOr::T(r) = r else {
                        continue;
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        r.content.clear();
                        r.content
                            .insert(super::problem::PROBLEM_JSON.to_string(), problem());
                        if r.description.is_empty() {
                            r.description = "A problem (RFC 9457)".into();
                        }
                    }
                }
            }
        }
    }
}

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
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(processes::list, processes::run))
        .routes(routes!(processes::adopt))
        .routes(routes!(processes::status, processes::forget))
        .routes(routes!(processes::act))
        .routes(routes!(processes::kill))
        .routes(routes!(processes::limits))
        .routes(routes!(processes::group))
        .routes(routes!(sessions::send))
        .routes(routes!(sessions::screen))
        .routes(routes!(terminal::terminal))
        .routes(routes!(streams::logs))
        .routes(routes!(streams::events))
        .routes(routes!(system::system))
        .routes(routes!(system::policy))
        .routes(routes!(system::policy_check))
        .routes(routes!(system::web_code))
        .routes(routes!(system::session))
        .routes(routes!(system::token))
        .routes(routes!(openapi_json))
        .split_for_parts();
    // After the merge: the paths come from the routes.
    utoipa::Modify::modify(&Problems, &mut doc);
    (router, doc)
}

/// The whole application: the API, its document, the pages, the guard.
pub fn app(state: AppState) -> Router {
    router()
        .0
        .route(super::mcp::PATH, axum::routing::any(super::mcp::serve))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(release_memory_after))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::guard,
        ))
        .with_state(state)
}

/// A response built, what building it took is freed: give it back soon.
async fn release_memory_after(req: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    crate::daemon::release_memory_soon();
    response
}

/// The pages (GET), else a problem: 404 for an unknown path.
async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no endpoint {}", crate::text::escape(path)),
        )
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
                HeaderValue::from_static(super::web::CONTENT_SECURITY_POLICY),
            );
            r
        }
        _ => Problem::new(StatusCode::NOT_FOUND, "not-found", "no such page").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;

    /// The contract's paths, each with its methods.
    const CONTRACT: [(&str, &str); 13] = [
        ("get", "/api/v1/processes"),
        ("post", "/api/v1/processes"),
        ("get", "/api/v1/processes/{id}"),
        ("delete", "/api/v1/processes/{id}"),
        ("post", "/api/v1/processes/{id}/{action}"),
        ("post", "/api/v1/processes/{id}/kill"),
        ("get", "/api/v1/processes/{id}/logs"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/system"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/processes/adopt"),
        ("get", "/api/v1/policy"),
        ("post", "/api/v1/groups/{action}"),
    ];

    fn state(dir: &std::path::Path) -> AppState {
        let controller = crate::Controller::open(dir).unwrap();
        let uid = crate::provenance::uid();
        AppState {
            base: std::sync::Arc::new(controller.for_peer(crate::provenance::Peer::person(uid))),
            auth: std::sync::Arc::new(super::super::auth::Auth::new(None, dir)),
            uid,
            started: crate::model::Timestamp::now(),
            socket: dir.join("api.sock"),
            listen: None,
        }
    }

    #[test]
    fn the_document_lists_the_contract_and_every_operation_its_problems() {
        let doc = serde_json::to_value(router().1).unwrap();
        for (method, path) in CONTRACT {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{method} {path}: no success"
                );
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &r["content"]["application/problem+json"]["schema"];
                        assert!(
                            schema["$ref"] == "#/components/schemas/Problem",
                            "{method} {path} {status}: not a Problem: {r}"
                        );
                    }
                }
            }
        }
        assert!(operations >= 17, "{operations}");
        // The run body is the core's request (one reader of runs), with
        // the fields the API has always taken.
        let body = &doc["paths"]["/api/v1/processes"]["post"]["requestBody"];
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RunRequest"
        );
        let run = &doc["components"]["schemas"]["RunRequest"]["properties"];
        for field in [
            "command", "owner", "metadata", "cwd", "env", "limits", "queue", "pty",
        ] {
            assert!(run[field].is_object(), "RunRequest.{field} undocumented");
        }
        // Every schema referred to is defined.
        let text = doc.to_string();
        for name in text.split("#/components/schemas/").skip(1) {
            let name = name.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{name} undefined"
            );
        }
    }

    /// Walks the router with every operation of the document: each reaches
    /// a handler (not the fallback), and answers only with a status the
    /// document lists for it. (Without a user manager most answer 503 or
    /// 404: that is documented too.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_router_serves_every_documented_operation_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(state(dir.path()));
        let doc = serde_json::to_value(router().1).unwrap();
        let me = crate::provenance::uid();
        let peer = crate::provenance::Peer::from_pid(me, std::process::id());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let uri = path.replace("{id}", "zzzzzzzz").replace(
                    "{action}",
                    if path.contains("groups") {
                        "pause"
                    } else {
                        "stop"
                    },
                );
                let mut req = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                req.extensions_mut()
                    .insert(ConnectInfo(super::super::server::Conn::Unix {
                        uid: Some(me),
                        peer: peer.clone(),
                    }));
                let call = app.clone().oneshot(req);
                let response = tokio::time::timeout(std::time::Duration::from_secs(20), call)
                    .await
                    .unwrap_or_else(|_| panic!("{method} {uri} hung"))
                    .unwrap();
                let status = response.status().as_u16().to_string();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                assert!(
                    !body.contains("no endpoint"),
                    "{method} {uri} is not routed"
                );
                assert!(
                    op["responses"][&status].is_object(),
                    "{method} {uri} answered {status}, not in the document: {body}"
                );
            }
        }
    }
}
