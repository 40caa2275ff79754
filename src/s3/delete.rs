//! DeleteObject and DeleteObjects (the multi-object delete, answered per key).

use axum::response::Response;
use http::StatusCode;

use super::credentials::Scope;
use super::error::S3Error;
use super::response::{empty, xml_response};
use super::service::{RequestBody, parse_key};
use super::signature::ChecksumHeaders;
use super::xml::{self, NAMESPACE};
use crate::storage::ObjectKey;
use crate::storage::registry::Resolved;

/// DeleteObject: idempotent, as in S3 (a missing key is not an error).
pub(super) async fn delete_object(backend: &Resolved, key: &str) -> Result<Response, S3Error> {
    backend.backend.delete(&parse_key(key)?).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// DeleteObjects: up to 1000 keys, each checked against the credentials' prefix and deleted on
/// its own; failures are reported per key, not for the request.
pub(super) async fn delete_objects(
    scope: &Scope,
    backend: &Resolved,
    body: RequestBody<'_>,
) -> Result<Response, S3Error> {
    let body = body.xml(ChecksumHeaders::DescribeBody).await?;
    let request: xml::Delete = xml::from_xml(&body).map_err(S3Error::MalformedXml)?;
    if request.object.len() > 1000 {
        return Err(S3Error::MalformedXml(
            "at most 1000 keys per request".into(),
        ));
    }
    let mut result = xml::DeleteResult {
        xmlns: NAMESPACE,
        deleted: Vec::new(),
        error: Vec::new(),
    };
    for object in request.object {
        let outcome = match ObjectKey::parse(&object.key) {
            Err(e) => Err(S3Error::InvalidArgument(e.to_string())),
            Ok(_) if !scope.allows_key(&object.key) => Err(S3Error::AccessDenied(
                "outside these credentials' prefix".into(),
            )),
            Ok(key) => backend.backend.delete(&key).await.map_err(S3Error::from),
        };
        match outcome {
            Ok(()) if request.quiet => {}
            Ok(()) => result.deleted.push(xml::Deleted { key: object.key }),
            Err(e) => result.error.push(xml::DeleteError {
                key: object.key,
                code: e.code().to_owned(),
                message: e.to_string(),
            }),
        }
    }
    Ok(xml_response(
        StatusCode::OK,
        xml::to_xml("DeleteResult", &result),
    ))
}
