//! The system (doctor, the daemon, owners, pauses), the policy, and the
//! sessions of the TCP listener.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Scope, COOKIE, SESSION_TTL};
use super::extract::Body;
use super::problem::{ApiResult, Problem};
use super::AppState;
use crate::model::{Limits, Owner, OwnerLimits, Timestamp};
use crate::spec::RunSpec;

/// The daemon serving the API.
#[derive(Serialize, ToSchema)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub started_at: Timestamp,
    pub uptime_sec: u64,
    pub socket: String,
    /// `http://127.0.0.1:PORT/` with `--listen`.
    pub url: Option<String>,
    pub state_dir: String,
    /// systemd's watchdog of the daemon's unit (WatchdogSec=), in
    /// microseconds; null when none is set. The daemon feeds it at half.
    pub watchdog_usec: Option<u64>,
    /// When the daemon last fed the watchdog.
    pub watchdog_last_fed: Option<Timestamp>,
}

/// One owner's slice and the limits `set --owner` put on it.
#[derive(Serialize, ToSchema)]
pub struct OwnerInfo {
    pub owner: Owner,
    pub slice: String,
    pub limits: Option<OwnerLimits>,
    /// What the slice uses now (all its running processes), from its
    /// cgroup; null when the slice has no cgroup (nothing runs in it).
    #[schema(value_type = Option<Object>)]
    pub usage: Option<crate::usage::Usage>,
}

/// What `GET /api/v1/system` says.
#[derive(Serialize, ToSchema)]
pub struct SystemInfo {
    /// `doctor --json`: each check with its fix.
    #[schema(value_type = Object)]
    pub doctor: crate::doctor::Report,
    pub daemon: DaemonInfo,
    pub owners: Vec<OwnerInfo>,
    /// `pause --list --json`: the group pauses in force and the queued runs.
    #[schema(value_type = Object)]
    pub pauses: crate::pauses::Pauses,
}

/// Doctor's checks, the daemon's status, each owner's slice and limits,
/// the pauses in force and the queued runs.
#[utoipa::path(get, path = "/api/v1/system", tag = "system",
    responses((status = 200, body = SystemInfo), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 500, body = Problem)))]
pub async fn system(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<SystemInfo>> {
    let controller = state.controller(&caller);
    let dir = controller.index().dir().to_path_buf();
    let doctor = crate::doctor::run(Ok(dir.as_path())).await;
    let cgroups = crate::usage::Cgroups::detect(controller.manager_cgroup().await);
    let owners = Owner::ALL
        .iter()
        .map(|&o| {
            Ok(OwnerInfo {
                owner: o,
                slice: o.slice(),
                limits: controller.owner_limits(o)?,
                usage: cgroups.read(cgroups.slice_cgroup(o).as_deref()),
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    // Set by systemd for the unit's main process only.
    let watchdog_usec = std::env::var("WATCHDOG_USEC")
        .ok()
        .filter(|_| {
            std::env::var("WATCHDOG_PID").map_or(true, |p| p == std::process::id().to_string())
        })
        .and_then(|u| u.parse().ok());
    Ok(Json(SystemInfo {
        doctor,
        daemon: DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: state.started,
            uptime_sec: state.started.elapsed().as_secs(),
            socket: state.socket.display().to_string(),
            url: state.url(),
            state_dir: dir.display().to_string(),
            watchdog_usec,
            watchdog_last_fed: crate::daemon::watchdog_last_fed(),
        },
        owners,
        pauses: controller.pauses()?,
    }))
}

/// The policy file and every actor's effective rules (`policy show --json`).
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, body = Object, description = "As `refine-proc policy show --json`"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 500, body = Problem),
        (status = 503, body = Problem)))]
pub async fn policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let controller = state.controller(&caller);
    let requester = controller.requester().await?;
    Ok(Json(requester.policy.overview()).into_response())
}

/// A launch to check, as `policy check` takes it.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// `person` or an owner [default: the caller].
    #[serde(rename = "as")]
    pub actor: Option<String>,
    /// [default: user-helper]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub limits: super::processes::LimitsText,
}

/// What an actor may do and whether a launch would pass (`policy check --json`).
#[utoipa::path(post, path = "/api/v1/policy/check", tag = "policy", request_body = PolicyCheck,
    responses((status = 200, body = Object, description = "As `refine-proc policy check --json`"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem),
        (status = 503, body = Problem)))]
pub async fn policy_check(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<PolicyCheck>,
) -> ApiResult<Response> {
    let controller = state.controller(&caller);
    let requester = controller.requester().await?;
    let actor = match &body.actor {
        Some(name) => crate::policy::parse_actor(name)?,
        None => requester.actor,
    };
    let launch = if body.command.is_empty() {
        None
    } else {
        let limits: Limits = body.limits.parse_limits()?;
        let spec = RunSpec {
            command: body.command.clone(),
            owner: Some(body.owner.unwrap_or(Owner::UserHelper)),
            limits,
            cwd: crate::provenance::home_dir(),
            ..Default::default()
        };
        Some(spec.validate()?)
    };
    let request = launch.as_ref().map(|l| crate::policy::LaunchRequest {
        owner: l.owner,
        executable: &l.executable,
        limits: &l.limits,
    });
    Ok(Json(requester.policy.verdict(actor, request.as_ref())).into_response())
}

/// Refuses a caller the core resolves to a managed process (systemd's
/// view of its pid, which a cgroup namespace cannot hide), beyond the
/// cgroup read at accept time.
async fn not_managed(state: &AppState, caller: &Caller, what: &str) -> ApiResult<()> {
    let controller = state.controller(caller);
    if let Some(m) = &controller.requester().await?.caller {
        return Err(Problem::forbidden(format!(
            "{what}: refused to the managed process {} ({})",
            m.id, m.owner
        ))
        .hint("a managed process acts under its own policy, never as a person"));
    }
    Ok(())
}

/// A one-time code for the browser page.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebCode {
    pub code: String,
    /// `http://127.0.0.1:PORT/#CODE`: open it within two minutes.
    pub url: Option<String>,
    pub expires_in_sec: u64,
}

/// Makes a one-time code for the page (Unix socket, a person only: this
/// is what `refine-proc web` calls).
#[utoipa::path(post, path = "/api/v1/web/code", tag = "sessions",
    responses((status = 200, body = WebCode), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn web_code(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<WebCode>> {
    caller.must_be_person_on_socket("a browser session")?;
    not_managed(&state, &caller, "a browser session").await?;
    let Some(url) = state.url() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "refused",
            "the daemon has no TCP listener",
        )
        .hint("start it with --listen 127.0.0.1:PORT"));
    };
    let code = state.auth.new_code();
    Ok(Json(WebCode {
        url: Some(format!("{url}#{code}")),
        code,
        expires_in_sec: super::auth::CODE_TTL.as_secs(),
    }))
}

/// The code the page read from its URL's fragment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub code: String,
}

/// Exchanges a one-time code for a session cookie (HttpOnly,
/// SameSite=Strict); the code is then spent.
#[utoipa::path(post, path = "/api/v1/session", tag = "sessions", request_body = SessionRequest,
    responses((status = 204, description = "Set-Cookie: the session"), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn session(
    State(state): State<AppState>,
    Body(body): Body<SessionRequest>,
) -> ApiResult<Response> {
    let Some(secret) = state.auth.exchange(&body.code) else {
        return Err(
            Problem::unauthorized("the code is unknown, spent or expired")
                .hint("run refine-proc web again for a new code"),
        );
    };
    let cookie = format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii"),
    );
    Ok(response)
}

/// A token's scope.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub scope: Scope,
}

/// A new token for scripts on the TCP listener.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub scope: Scope,
    /// Where it is kept (0600).
    pub stored_in: String,
}

/// Makes a token with a scope (Unix socket, a person only).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "sessions", request_body = TokenRequest,
    responses((status = 201, body = TokenResponse), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem)))]
pub async fn token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<TokenRequest>,
) -> ApiResult<Response> {
    caller.must_be_person_on_socket("a token")?;
    not_managed(&state, &caller, "a token").await?;
    let token = state.auth.new_token(body.scope)?;
    let out = TokenResponse {
        token,
        scope: body.scope,
        stored_in: state.auth.tokens_path().display().to_string(),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
