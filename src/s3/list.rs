//! ListObjectsV2: a backend's keys under a prefix, one page at a time, as S3's
//! `ListBucketResult`. The credentials' prefix bounds what may be listed.

use axum::response::Response;
use base64::Engine as _;
use http::StatusCode;

use super::credentials::Scope;
use super::error::S3Error;
use super::response::xml_response;
use super::router::Query;
use super::xml::{self, NAMESPACE};
use crate::storage::ListRequest;
use crate::storage::registry::Resolved;

/// ListObjectsV2 under a prefix within the credentials' scope: delimiter, `max-keys` (at most
/// 1000), `start-after`, continuation tokens (the backend's next start-after, base64url) and
/// `encoding-type=url`.
pub(super) async fn list_objects_v2(
    scope: &Scope,
    bucket: &str,
    backend: &Resolved,
    q: &Query,
) -> Result<Response, S3Error> {
    let prefix = q.get("prefix").unwrap_or_default().to_owned();
    if !prefix.starts_with(&scope.prefix) {
        return Err(S3Error::AccessDenied(format!(
            "these credentials only list under {:?}",
            scope.prefix
        )));
    }
    let delimiter = q
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let max_keys = match q.get("max-keys") {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| {
                S3Error::InvalidArgument("max-keys must be a non-negative integer".into())
            })?
            .min(1000),
    };
    let url_encoded = match q.get("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => {
            return Err(S3Error::InvalidArgument(format!(
                "invalid encoding-type {other:?}"
            )));
        }
    };
    let token = q.get("continuation-token").map(str::to_owned);
    let start_after = match &token {
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    S3Error::InvalidArgument("the continuation token is invalid".into())
                })?,
        ),
        None => q
            .get("start-after")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    };
    let page = if max_keys == 0 {
        Default::default()
    } else {
        backend
            .backend
            .list(&ListRequest {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after: start_after.clone(),
                max_keys,
            })
            .await?
    };
    let enc = |s: &str| {
        if url_encoded {
            percent_encoding::utf8_percent_encode(s, LIST_ENCODE).to_string()
        } else {
            s.to_owned()
        }
    };
    let next = page
        .next_start_after
        .as_ref()
        .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k));
    let body = xml::to_xml(
        "ListBucketResult",
        &xml::ListBucketResult {
            xmlns: NAMESPACE,
            name: bucket.to_owned(),
            prefix: enc(&prefix),
            delimiter: delimiter.as_deref().map(enc),
            max_keys,
            key_count: page.objects.len() + page.common_prefixes.len(),
            is_truncated: next.is_some(),
            continuation_token: token,
            next_continuation_token: next,
            start_after: q.get("start-after").filter(|s| !s.is_empty()).map(enc),
            encoding_type: url_encoded.then_some("url"),
            contents: page
                .objects
                .iter()
                .map(|o| xml::Contents {
                    key: enc(&o.key),
                    last_modified: xml::timestamp(o.last_modified),
                    etag: o.etag.clone(),
                    size: o.size,
                    storage_class: "STANDARD",
                })
                .collect(),
            common_prefixes: page
                .common_prefixes
                .iter()
                .map(|p| xml::CommonPrefix { prefix: enc(p) })
                .collect(),
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// Characters S3 leaves unencoded with `encoding-type=url` (keys keep their slashes).
const LIST_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
