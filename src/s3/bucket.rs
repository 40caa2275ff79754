//! The bucket-level operations: ListBuckets (the user's backends these credentials reach),
//! HeadBucket and GetBucketLocation. A bucket is one of the user's backends; these never touch
//! objects.

use axum::response::Response;
use http::StatusCode;

use super::credentials::Scope;
use super::error::S3Error;
use super::response::{empty, xml_response};
use super::xml::{self, NAMESPACE};
use crate::storage::registry::Registry;

/// ListBuckets: the user's backends, filtered by the credentials' scope.
pub(super) async fn list_buckets(registry: &Registry, scope: &Scope) -> Result<Response, S3Error> {
    let backends = registry
        .list(scope.user)
        .await
        .map_err(|e| S3Error::ServiceUnavailable(e.to_string()))?;
    let body = xml::to_xml(
        "ListAllMyBucketsResult",
        &xml::ListAllMyBucketsResult {
            xmlns: NAMESPACE,
            owner: xml::Owner {
                id: scope.user.to_string(),
                display_name: scope.user.to_string(),
            },
            buckets: xml::Buckets {
                bucket: backends
                    .into_iter()
                    .filter(|b| scope.allows_backend(&b.name))
                    .map(|b| xml::Bucket {
                        name: b.name,
                        creation_date: xml::timestamp(0),
                    })
                    .collect(),
            },
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// HeadBucket, once the backend resolved: it exists and these credentials reach it.
pub(super) fn head_bucket() -> Response {
    empty(StatusCode::OK)
}

/// GetBucketLocation, once the backend resolved: every backend answers in the proxy's region.
pub(super) fn get_bucket_location(region: &str) -> Response {
    let body = xml::to_xml(
        "LocationConstraint",
        &xml::LocationConstraint {
            xmlns: NAMESPACE,
            region: region.to_owned(),
        },
    );
    xml_response(StatusCode::OK, body)
}
