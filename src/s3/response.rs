//! Building the answers operations share: an empty body with a status, an XML body (from
//! [`xml`](super::xml), which alone writes XML), an `ETag` header. Object headers belong to
//! [`get`](super::get), errors to [`error`](super::error), CORS headers to [`cors`](super::cors).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// An answer with no body.
pub(super) fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}

/// An answer whose body is an XML document rendered by [`xml::to_xml`](super::xml::to_xml).
pub(super) fn xml_response(status: StatusCode, body: String) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    res
}

/// `res` with an `ETag` header (left out if `etag` is not a valid header value).
pub(super) fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}
