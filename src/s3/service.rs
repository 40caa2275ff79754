//! The request pipeline of the S3 proxy: parse the endpoint, authenticate (SigV4 against a
//! stateless proxy credential), authorize (the credential's scope), resolve the user's backend,
//! run the operation, and answer in S3's wire format. Mounted under `/s3` on the main origin
//! and at the root of the dedicated S3 listener.
//!
//! This module owns the order of those steps and the one `match` over [`Endpoint`]; each
//! operation lives in its own module (`bucket`, `list`, `get`, `put`, `delete`, `multipart`,
//! `cors`) and receives an already authorized request and resolved backend. It must not grow
//! operation logic of its own.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};
use http::{HeaderMap, HeaderValue, Method, header};

use super::credentials::{self, Scope};
use super::error::S3Error;
use super::router::{Endpoint, Query};
use super::signature::{self, BodyOptions, ChecksumHeaders, SignatureError, VerifyPolicy};
use super::{bucket, cors, delete, get, list, multipart, put};
use crate::keys::ProxyKey;
use crate::storage::registry::{Registry, ResolveError, Resolved};
use crate::storage::{ByteStream, ObjectKey};

/// What the proxy needs; cheap to clone.
#[derive(Clone)]
pub struct S3Proxy {
    pub key: ProxyKey,
    pub registry: Arc<Registry>,
    pub region: String,
    pub policy: VerifyPolicy,
    /// The app's own origin (for CORS on the dedicated listener).
    pub app_origin: Arc<str>,
}

/// Largest XML request body (CompleteMultipartUpload with 10,000 parts, DeleteObjects).
const MAX_XML_BODY: usize = 2 * 1024 * 1024;

impl S3Proxy {
    /// Answers one S3 request. `mount` is the path prefix the proxy is served under (`/s3`, or
    /// `""` on the dedicated listener).
    pub async fn handle(&self, mount: &str, req: Request) -> Response {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let path = req.uri().path().to_owned();
        let below = match path.strip_prefix(mount) {
            Some("") => "/".to_owned(),
            Some(rest) => rest.to_owned(),
            None => path.clone(),
        };
        let resource = percent_encoding::percent_decode_str(&below)
            .decode_utf8_lossy()
            .into_owned();
        let head = req.method() == Method::HEAD;
        let origin = req.headers().get(header::ORIGIN).cloned();
        let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0);
        let mut res = match self.serve(&path, &below, req).await {
            Ok(res) => res,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(code = e.code(), error = %e, %resource, "S3 request failed");
                } else {
                    tracing::debug!(code = e.code(), error = ?e, %resource, "S3 request refused");
                }
                let mut res = e.into_response(&resource, &request_id, head);
                // A request refused before its body was read (a client that sent
                // `Expect: 100-continue` never sends it) must not share the connection with the
                // next request: the server would read that request as this body.
                if has_body {
                    res.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                res
            }
        };
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-amz-request-id", v);
        }
        cors::allow_origin(&self.app_origin, origin.as_ref(), headers);
        res
    }

    async fn serve(&self, path: &str, below: &str, req: Request) -> Result<Response, S3Error> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().map(str::to_owned);
        if parts.method == Method::OPTIONS {
            return cors::preflight(&self.app_origin, &parts.headers);
        }
        let endpoint = Endpoint::parse(
            &parts.method,
            below,
            query.as_deref(),
            parts.headers.contains_key("x-amz-copy-source"),
        )?;
        let (scope, verified) =
            self.authenticate(&parts.method, path, below, query.as_deref(), &parts.headers)?;
        authorize(&scope, &endpoint)?;
        let body = RequestBody {
            body,
            verified: &verified,
            headers: &parts.headers,
        };

        match endpoint {
            Endpoint::ListBuckets => bucket::list_buckets(&self.registry, &scope).await,
            Endpoint::HeadBucket { bucket } => {
                self.resolve(&scope, &bucket).await?;
                Ok(bucket::head_bucket())
            }
            Endpoint::GetBucketLocation { bucket } => {
                self.resolve(&scope, &bucket).await?;
                Ok(bucket::get_bucket_location(&self.region))
            }
            Endpoint::ListObjectsV2 { bucket } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let query = Query::parse(query.as_deref());
                list::list_objects_v2(&scope, &bucket, &backend, &query).await
            }
            Endpoint::GetObject { bucket, key } | Endpoint::HeadObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let head = parts.method == Method::HEAD;
                get::get_object(&backend, &key, &parts.headers, head).await
            }
            Endpoint::PutObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                put::put_object(&backend, &key, &parts.headers, body).await
            }
            Endpoint::CopyObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                put::copy_object(&scope, &backend, &bucket, &key, &parts.headers).await
            }
            Endpoint::DeleteObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                delete::delete_object(&backend, &key).await
            }
            Endpoint::DeleteObjects { bucket } => {
                let backend = self.resolve(&scope, &bucket).await?;
                delete::delete_objects(&scope, &backend, body).await
            }
            Endpoint::CreateMultipartUpload { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                multipart::create(&backend, bucket, key, &parts.headers).await
            }
            Endpoint::UploadPart {
                bucket,
                key,
                upload_id,
                part_number,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                multipart::upload_part(
                    &backend,
                    &key,
                    &upload_id,
                    part_number,
                    &parts.headers,
                    body,
                )
                .await
            }
            Endpoint::CompleteMultipartUpload {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                multipart::complete(&backend, bucket, key, &upload_id, &parts.headers, body).await
            }
            Endpoint::AbortMultipartUpload {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                multipart::abort(&backend, &key, &upload_id).await
            }
            Endpoint::ListParts {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                multipart::list_parts(&backend, bucket, key, upload_id).await
            }
        }
    }

    /// Checks the request's signature against the proxy credential it names.
    fn authenticate(
        &self,
        method: &Method,
        path: &str,
        below: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(Scope, signature::Verified), S3Error> {
        let parsed = signature::parse(method, path, query, headers)?;
        if parsed.region() != self.region {
            return Err(S3Error::WrongRegion {
                got: parsed.region().to_owned(),
                expected: self.region.clone(),
            });
        }
        let now = SystemTime::now();
        let unix = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let (scope, secret) = credentials::open(&self.key, parsed.access_key_id(), unix)?;
        let verify = |path: &str, headers: &HeaderMap| {
            signature::verify(
                &parsed,
                method,
                path,
                query,
                headers,
                &secret,
                now,
                &self.policy,
            )
        };
        let verified = match verify(path, headers) {
            // Clients configured with the mount point in their endpoint do not all sign the
            // same request: some sign the path below the mount, and DuckDB-WASM (1.32) signs
            // that path with the mount appended to the host (`host:port/s3`). All name the
            // same bucket and key, so each form is accepted, and nothing else.
            Err(first @ SignatureError::SignatureDoesNotMatch(_)) if path != below => {
                let mount = &path[..path.len() - below.len()];
                let mut with_mount_in_host = headers.clone();
                if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok())
                    && let Ok(v) = HeaderValue::from_str(&format!("{host}{mount}"))
                {
                    with_mount_in_host.insert(header::HOST, v);
                }
                verify(below, headers)
                    .or_else(|_| verify(below, &with_mount_in_host))
                    .map_err(|_| first)?
            }
            other => other?,
        };
        Ok((scope, verified))
    }

    async fn resolve(&self, scope: &Scope, bucket: &str) -> Result<Resolved, S3Error> {
        if !scope.allows_backend(bucket) {
            return Err(S3Error::AccessDenied(format!(
                "these credentials do not reach the backend {bucket:?}"
            )));
        }
        self.registry
            .resolve(scope.user, bucket)
            .await
            .map_err(|e| match e {
                ResolveError::NotFound(_) => S3Error::NoSuchBucket,
                ResolveError::Misconfigured { .. } => S3Error::ServiceUnavailable(e.to_string()),
                ResolveError::Unavailable(m) => S3Error::ServiceUnavailable(m),
            })
    }
}

/// The scope checks that do not need the backend: writes need a read-write credential; keys
/// must be under the credential's prefix.
fn authorize(scope: &Scope, endpoint: &Endpoint) -> Result<(), S3Error> {
    if endpoint.writes() && !scope.allows_write() {
        return Err(S3Error::AccessDenied(
            "these credentials are read-only".into(),
        ));
    }
    if let Some(key) = endpoint.key()
        && !scope.allows_key(key)
    {
        return Err(S3Error::AccessDenied(format!(
            "these credentials only reach keys under {:?}",
            scope.prefix
        )));
    }
    Ok(())
}

/// A request body not read yet. An operation that takes a body picks what its checksum headers
/// describe; the body is then verified as it streams (payload hash, aws-chunked signatures,
/// trailers, checksums), so a body that fails verification never completes a write.
pub(super) struct RequestBody<'a> {
    body: Body,
    verified: &'a signature::Verified,
    headers: &'a HeaderMap,
}

impl RequestBody<'_> {
    /// The body as a verifying stream, for the backend to consume.
    pub(super) fn stream(self, checksum_headers: ChecksumHeaders) -> Result<ByteStream, S3Error> {
        self.object_stream(checksum_headers)
            .map(|(stream, _)| stream)
    }

    /// [`RequestBody::stream`], with the `Content-MD5` that the stream guarantees (see
    /// `BodyOutcome::content_md5`), for a backend that would otherwise hash the body again.
    pub(super) fn object_stream(
        self,
        checksum_headers: ChecksumHeaders,
    ) -> Result<(ByteStream, Option<[u8; 16]>), S3Error> {
        let body = self.body.into_data_stream().map_err(std::io::Error::other);
        let (stream, outcome) = signature::verified_body_with(
            body,
            self.verified,
            self.headers,
            &BodyOptions { checksum_headers },
        )?;
        Ok((stream, outcome.content_md5()))
    }

    /// The whole body of an XML request (DeleteObjects, CompleteMultipartUpload), verified and
    /// bounded by [`MAX_XML_BODY`].
    pub(super) async fn xml(self, checksum_headers: ChecksumHeaders) -> Result<Bytes, S3Error> {
        collect(self.stream(checksum_headers)?, MAX_XML_BODY).await
    }
}

async fn collect(mut body: ByteStream, limit: usize) -> Result<Bytes, S3Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match SignatureError::from_io(&e) {
            Some(sig) => S3Error::Signature(sig.clone()),
            None => S3Error::IncompleteBody(e.to_string()),
        })?;
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            return Err(S3Error::MalformedXml(
                "the request body is too large".into(),
            ));
        }
    }
    Ok(buf.freeze())
}

/// The object key of a request, validated (S3's `InvalidArgument` if it is not a valid key).
pub(super) fn parse_key(key: &str) -> Result<ObjectKey, S3Error> {
    ObjectKey::parse(key).map_err(|e| S3Error::InvalidArgument(e.to_string()))
}

/// A request header as a string, if present and visible ASCII.
pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
