//! CORS: the preflight answer and the headers on every answer, for the app's own origin only:
//! what the app's pages need to reach the dedicated listener (another origin); the island under
//! `/s3` is same-origin and needs none. No other origin is ever allowed.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::error::S3Error;
use super::response::empty;

/// Adds the CORS headers to an answer when the request came from `app_origin`.
pub(super) fn allow_origin(
    app_origin: &str,
    origin: Option<&HeaderValue>,
    headers: &mut HeaderMap,
) {
    if let Some(origin) = origin
        && origin.as_bytes() == app_origin.as_bytes()
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, Content-Range, Content-Length, x-amz-request-id"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Answers an `OPTIONS` preflight: allowed for `app_origin` only, before any authentication
/// (browsers send preflights without credentials).
pub(super) fn preflight(app_origin: &str, headers: &HeaderMap) -> Result<Response, S3Error> {
    let origin = headers.get(header::ORIGIN);
    if origin.is_none_or(|o| o.as_bytes() != app_origin.as_bytes()) {
        return Err(S3Error::AccessDenied(
            "CORS is allowed for Larder's own origin only".into(),
        ));
    }
    let mut res = empty(StatusCode::OK);
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE"),
    );
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    Ok(res)
}
