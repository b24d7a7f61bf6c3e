//! Errors as RFC 9457 problem details (`application/problem+json`): the
//! core's message as `detail`, its fix as `hint`, and the CLI's exit code,
//! so a client can tell the same classes apart the CLI does.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One error, as every endpoint returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:refine-proc:problem:<class>`: invalid, not-found, refused,
    /// denied, unavailable, index, systemd, unauthorized, forbidden.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What was being done and what went wrong.
    pub detail: String,
    /// The fix, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The exit code the CLI gives for the same error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// The HTTP status of each class of the core's errors.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Refused => StatusCode::CONFLICT,
        ErrorKind::Denied => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Index => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Systemd => StatusCode::BAD_GATEWAY,
    }
}

fn class_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "invalid",
        ErrorKind::NotFound => "not-found",
        ErrorKind::Refused => "refused",
        ErrorKind::Denied => "denied",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Index => "index",
        ErrorKind::Systemd => "systemd",
    }
}

impl Problem {
    /// A problem of the HTTP layer (no core error behind it).
    pub fn new(status: StatusCode, class: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:refine-proc:problem:{class}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            hint: None,
            exit_code: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }

    /// Bad request syntax: a query or body that does not parse.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        // The API names inputs as its JSON fields, not the CLI's flags.
        let e = e.worded(crate::error::Field::json_field);
        Problem {
            exit_code: Some(e.exit_code()),
            hint: e.hint,
            ..Problem::new(status_of(e.kind), class_of(e.kind), e.message)
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problems serialize");
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"refine-proc\""),
            );
        }
        response
    }
}

/// What a handler returns: a body, or a problem.
pub type ApiResult<T> = std::result::Result<T, Problem>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_classes_map_to_the_statuses_of_the_issue() {
        let cases = [
            (ErrorKind::Invalid, 422),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Refused, 409),
            (ErrorKind::Denied, 403),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Index, 500),
            (ErrorKind::Systemd, 502),
        ];
        for (kind, status) in cases {
            let p = Problem::from(Error::new(kind, "x").hint("fix it"));
            assert_eq!(p.status, status, "{kind:?}");
            assert_eq!(p.hint.as_deref(), Some("fix it"));
            assert_eq!(p.exit_code, Some(kind.exit_code()));
        }
    }
}
