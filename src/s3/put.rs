//! PutObject and CopyObject (within one backend), and what a write reads from its headers:
//! the announced size and the put options (content type, conditional writes), which
//! CompleteMultipartUpload shares.

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};

use super::credentials::Scope;
use super::error::S3Error;
use super::response::{empty, with_etag, xml_response};
use super::service::{RequestBody, header_str, parse_key};
use super::signature::{self, ChecksumHeaders};
use super::xml::{self, NAMESPACE};
use crate::storage::registry::Resolved;
use crate::storage::{ObjectKey, PutOptions};

/// PutObject: streams the verified body to the backend, which commits only when it ends
/// cleanly.
pub(super) async fn put_object(
    backend: &Resolved,
    key: &str,
    headers: &HeaderMap,
    body: RequestBody<'_>,
) -> Result<Response, S3Error> {
    let key = parse_key(key)?;
    let size = body_size(headers);
    let (body, content_md5) = body.object_stream(ChecksumHeaders::DescribeBody)?;
    let opts = PutOptions {
        content_md5,
        ..put_options(headers)?
    };
    let meta = backend.backend.put(&key, body, size, &opts).await?;
    Ok(with_etag(empty(StatusCode::OK), &meta.etag))
}

/// CopyObject: `PUT` with `x-amz-copy-source`, from a key of the same backend within the
/// credentials' prefix.
pub(super) async fn copy_object(
    scope: &Scope,
    backend: &Resolved,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
) -> Result<Response, S3Error> {
    let to = parse_key(key)?;
    let from = copy_source(headers, bucket, scope)?;
    let meta = backend.backend.copy(&from, &to).await?;
    let body = xml::to_xml(
        "CopyObjectResult",
        &xml::CopyObjectResult {
            xmlns: NAMESPACE,
            etag: meta.etag,
            last_modified: xml::timestamp(meta.last_modified),
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// `x-amz-copy-source: [/]bucket/key` (URL-encoded), same backend only.
fn copy_source(headers: &HeaderMap, bucket: &str, scope: &Scope) -> Result<ObjectKey, S3Error> {
    let raw = header_str(headers, "x-amz-copy-source").unwrap_or_default();
    let raw = raw.split('?').next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(raw.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| S3Error::InvalidArgument("x-amz-copy-source is not valid UTF-8".into()))?;
    let (src_bucket, src_key) = decoded
        .split_once('/')
        .ok_or_else(|| S3Error::InvalidArgument("x-amz-copy-source must be bucket/key".into()))?;
    if src_bucket != bucket {
        return Err(S3Error::NotImplemented(
            "copying between backends; copy within one backend".into(),
        ));
    }
    if !scope.allows_key(src_key) {
        return Err(S3Error::AccessDenied(
            "the copy source is outside these credentials' prefix".into(),
        ));
    }
    parse_key(src_key)
}

/// The object's size as announced: the decoded length of an aws-chunked body, else
/// Content-Length (unless the body is chunked framing).
pub(super) fn body_size(headers: &HeaderMap) -> Option<u64> {
    signature::decoded_content_length(headers).or_else(|| {
        let chunked = header_str(headers, "content-encoding")
            .is_some_and(|e| e.contains("aws-chunked"))
            || header_str(headers, "x-amz-content-sha256")
                .is_some_and(|s| s.starts_with("STREAMING-"));
        if chunked {
            None
        } else {
            header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok())
        }
    })
}

/// The write options of PutObject and CompleteMultipartUpload: content type and the
/// conditional-write headers (`If-None-Match: *`, `If-Match`).
pub(super) fn put_options(headers: &HeaderMap) -> Result<PutOptions, S3Error> {
    let if_none_match = header_str(headers, header::IF_NONE_MATCH.as_str());
    let if_none_match_any = match if_none_match.as_deref() {
        None => false,
        Some("*") => true,
        Some(_) => {
            return Err(S3Error::NotImplemented(
                "If-None-Match on writes supports only '*'".into(),
            ));
        }
    };
    Ok(PutOptions {
        content_type: header_str(headers, header::CONTENT_TYPE.as_str()),
        if_none_match_any,
        if_match: header_str(headers, header::IF_MATCH.as_str()),
        // Describes a body, which CompleteMultipartUpload's is not.
        content_md5: None,
    })
}
