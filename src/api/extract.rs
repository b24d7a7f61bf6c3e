//! Extractors whose rejections are problem details, not axum's plain text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// A JSON body: 415 without `application/json`, 400 if it does not parse,
/// 422 if it parses but does not fit (an unknown field, a bad owner).
pub struct Body<T>(pub T);

fn json_problem(r: JsonRejection) -> Problem {
    let status = r.status();
    let class = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "unsupported-media-type"
    } else {
        "invalid"
    };
    Problem::new(status, class, r.body_text())
        .hint("send a JSON body with Content-Type: application/json")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        <axum::Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(|j| Body(j.0))
            .map_err(json_problem)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for Body<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Problem> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if empty {
            return Ok(None);
        }
        <Body<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// A query string: 400 if it does not fit (an unknown parameter, a bad
/// owner or state).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r: QueryRejection| {
                Problem::bad_request(r.body_text())
                    .hint("see /api/v1/openapi.json for the parameters")
            })
    }
}
