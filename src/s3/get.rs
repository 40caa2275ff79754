//! GetObject and HeadObject: byte ranges (one per request), conditional requests
//! (`If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`, in RFC 9110's
//! order) and the headers that describe an object.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::error::S3Error;
use super::response::empty;
use super::service::{header_str, parse_key};
use crate::storage::registry::Resolved;
use crate::storage::{ObjectMeta, RangeRequest};

/// GetObject, or HeadObject when `head`: the object (or a range of it), its metadata as
/// headers, preconditions evaluated first.
pub(super) async fn get_object(
    backend: &Resolved,
    key: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, S3Error> {
    let key = &parse_key(key)?;
    let conditional = [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|h| headers.contains_key(h));
    let range = parse_range(headers)?;
    if head || conditional {
        let meta = backend.backend.head(key).await?;
        if let Some(status) = preconditions(headers, &meta) {
            if status == StatusCode::PRECONDITION_FAILED {
                return Err(S3Error::PreconditionFailed);
            }
            let mut res = empty(status);
            object_headers(&mut res, &meta);
            return Ok(res);
        }
        if head {
            let mut res = empty(StatusCode::OK);
            object_headers(&mut res, &meta);
            let (status, len, content_range) = match range {
                Some(r) => {
                    let r = r
                        .resolve(meta.size)
                        .ok_or(S3Error::InvalidRange { size: meta.size })?;
                    (
                        StatusCode::PARTIAL_CONTENT,
                        r.end - r.start + 1,
                        Some(format!("bytes {}-{}/{}", r.start, r.end, meta.size)),
                    )
                }
                None => (StatusCode::OK, meta.size, None),
            };
            *res.status_mut() = status;
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
                res.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            return Ok(res);
        }
    }
    let got = backend.backend.get(key, range).await?;
    let (status, len) = match got.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start + 1),
        None => (StatusCode::OK, got.meta.size),
    };
    let mut res = Response::new(Body::from_stream(got.body));
    *res.status_mut() = status;
    object_headers(&mut res, &got.meta);
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(r) = got.range
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end, got.meta.size))
    {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn etag_matches(list: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == bare)
}

/// Evaluates GET/HEAD preconditions (RFC 9110 order): `Some(status)` when they decide the answer.
fn preconditions(headers: &HeaderMap, meta: &ObjectMeta) -> Option<StatusCode> {
    let modified = UNIX_EPOCH + Duration::from_millis(meta.last_modified.max(0) as u64);
    let since = |name: header::HeaderName| {
        header_str(headers, name.as_str()).and_then(|v| httpdate::parse_http_date(&v).ok())
    };
    if let Some(list) = header_str(headers, header::IF_MATCH.as_str()) {
        if !etag_matches(&list, &meta.etag) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let Some(t) = since(header::IF_UNMODIFIED_SINCE)
        && modified
            .duration_since(t)
            .is_ok_and(|d| d >= Duration::from_secs(1))
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(list) = header_str(headers, header::IF_NONE_MATCH.as_str()) {
        if etag_matches(&list, &meta.etag) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let Some(t) = since(header::IF_MODIFIED_SINCE)
        && t.duration_since(modified).is_ok()
    {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

fn parse_range(headers: &HeaderMap) -> Result<Option<RangeRequest>, S3Error> {
    let Some(v) = header_str(headers, header::RANGE.as_str()) else {
        return Ok(None);
    };
    let invalid = || S3Error::InvalidArgument(format!("invalid Range header {v:?}"));
    let spec = v.strip_prefix("bytes=").ok_or_else(invalid)?;
    if spec.contains(',') {
        return Err(S3Error::NotImplemented("multiple byte ranges".into()));
    }
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let range = if start.is_empty() {
        RangeRequest::Suffix(end.parse().map_err(|_| invalid())?)
    } else {
        let start: u64 = start.parse().map_err(|_| invalid())?;
        let end = if end.is_empty() {
            None
        } else {
            let e: u64 = end.parse().map_err(|_| invalid())?;
            if e < start {
                return Err(invalid());
            }
            Some(e)
        };
        RangeRequest::From { start, end }
    };
    Ok(Some(range))
}

fn object_headers(res: &mut Response, meta: &ObjectMeta) {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    set(h, header::ETAG, &meta.etag);
    set(h, header::LAST_MODIFIED, &http_date(meta.last_modified));
    set(
        h,
        header::CONTENT_TYPE,
        meta.content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Objects are not user pages: let clients revalidate with their ETag.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}
