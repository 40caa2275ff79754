//! Errors as each surface renders them: [`WebError`] for pages and htmx fragments (HTML),
//! [`ApiError`] for `/api` (RFC 9457 problem JSON). Actor errors are converted here, at the
//! boundary; handlers just use `?`.

use askama::Template;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use larder_actors::ActorError;

/// An error on a page or an htmx request.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
    /// Rendered as a fragment into `#flash` (htmx requests) instead of a whole page.
    pub fragment: bool,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
            fragment: false,
        }
    }

    /// The same error, shown as a fragment (for htmx requests).
    pub fn fragment(mut self) -> WebError {
        self.fragment = true;
        self
    }
}

impl From<ActorError> for WebError {
    fn from(e: ActorError) -> Self {
        tracing::error!(error = %e, "actor call failed");
        WebError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

#[derive(Template)]
#[template(path = "fragments/flash.html")]
pub struct Flash<'a> {
    pub kind: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.fragment {
            let body = Flash {
                kind: "error",
                message: &self.message,
            }
            .render()
            .unwrap_or_else(|_| self.message.clone());
            let mut res = (self.status, axum::response::Html(body)).into_response();
            // htmx swaps it into the page's flash area, whatever the request targeted.
            res.headers_mut()
                .insert("HX-Retarget", HeaderValue::from_static("#flash"));
            res.headers_mut()
                .insert("HX-Reswap", HeaderValue::from_static("innerHTML"));
            return res;
        }
        let body = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        }
        .render()
        .unwrap_or_else(|_| self.message.clone());
        (self.status, axum::response::Html(body)).into_response()
    }
}

/// An error from `/api`: `application/problem+json` (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// The HTTP status, repeated in the body.
    pub status: u16,
    /// A short, stable summary of the problem type.
    pub title: String,
    /// What went wrong with this request, for a person.
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        tracing::error!(error = %e, "actor call failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        // 400 for malformed JSON, 415 for a wrong content type, 422 for the wrong shape.
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}
