//! The request pipeline of the S3 proxy: parse the endpoint, authenticate (SigV4 against a
//! stateless proxy credential), authorize (the credential's scope), resolve the user's backend,
//! run the operation, and answer in S3's wire format. Mounted under `/s3` on the main origin
//! and at the root of the dedicated S3 listener.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::credentials::{self, Scope};
use super::error::S3Error;
use super::router::{Endpoint, Query};
use super::signature::{self, BodyOptions, ChecksumHeaders, SignatureError, VerifyPolicy};
use super::xml::{self, NAMESPACE};
use crate::keys::ProxyKey;
use crate::storage::registry::{Registry, ResolveError, Resolved};
use crate::storage::{ByteStream, ListRequest, ObjectKey, ObjectMeta, PutOptions, RangeRequest};

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
        self.cors(origin.as_ref(), headers);
        res
    }

    /// CORS for the app's own origin only (the island on the main origin needs none).
    fn cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if let Some(origin) = origin
            && origin.as_bytes() == self.app_origin.as_bytes()
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ETag, Content-Range, Content-Length, x-amz-request-id"),
            );
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    async fn serve(&self, path: &str, below: &str, req: Request) -> Result<Response, S3Error> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().map(str::to_owned);
        if parts.method == Method::OPTIONS {
            return self.preflight(&parts.headers);
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
        let body = body.into_data_stream().map_err(std::io::Error::other);
        let body_for = |options: ChecksumHeaders| -> Result<ByteStream, S3Error> {
            Ok(signature::verified_body_with(
                body,
                &verified,
                &parts.headers,
                &BodyOptions {
                    checksum_headers: options,
                },
            )?
            .0)
        };

        match endpoint {
            Endpoint::ListBuckets => self.list_buckets(&scope).await,
            Endpoint::HeadBucket { bucket } => {
                self.resolve(&scope, &bucket).await?;
                Ok(empty(StatusCode::OK))
            }
            Endpoint::GetBucketLocation { bucket } => {
                self.resolve(&scope, &bucket).await?;
                let body = xml::to_xml(
                    "LocationConstraint",
                    &xml::LocationConstraint {
                        xmlns: NAMESPACE,
                        region: self.region.clone(),
                    },
                );
                Ok(xml_response(StatusCode::OK, body))
            }
            Endpoint::ListObjectsV2 { bucket } => {
                let backend = self.resolve(&scope, &bucket).await?;
                list_objects(&scope, &bucket, &backend, &Query::parse(query.as_deref())).await
            }
            Endpoint::GetObject { bucket, key } | Endpoint::HeadObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                get_object(
                    &backend,
                    &parse_key(&key)?,
                    &parts.headers,
                    parts.method == Method::HEAD,
                )
                .await
            }
            Endpoint::PutObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let key = parse_key(&key)?;
                let size = body_size(&parts.headers);
                let opts = put_options(&parts.headers)?;
                let meta = backend
                    .backend
                    .put(&key, body_for(ChecksumHeaders::DescribeBody)?, size, &opts)
                    .await?;
                Ok(with_etag(empty(StatusCode::OK), &meta.etag))
            }
            Endpoint::CopyObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let to = parse_key(&key)?;
                let from = copy_source(&parts.headers, &bucket, &scope)?;
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
            Endpoint::DeleteObject { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                backend.backend.delete(&parse_key(&key)?).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Endpoint::DeleteObjects { bucket } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let body = collect(body_for(ChecksumHeaders::DescribeBody)?, MAX_XML_BODY).await?;
                delete_objects(&scope, &backend, &body).await
            }
            Endpoint::CreateMultipartUpload { bucket, key } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let content_type = header_str(&parts.headers, header::CONTENT_TYPE.as_str());
                let upload_id = backend
                    .backend
                    .create_multipart(&parse_key(&key)?, content_type)
                    .await?;
                let body = xml::to_xml(
                    "InitiateMultipartUploadResult",
                    &xml::InitiateMultipartUploadResult {
                        xmlns: NAMESPACE,
                        bucket,
                        key,
                        upload_id,
                    },
                );
                Ok(xml_response(StatusCode::OK, body))
            }
            Endpoint::UploadPart {
                bucket,
                key,
                upload_id,
                part_number,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let size = body_size(&parts.headers);
                let part = backend
                    .backend
                    .upload_part(
                        &parse_key(&key)?,
                        &upload_id,
                        part_number,
                        body_for(ChecksumHeaders::DescribeBody)?,
                        size,
                    )
                    .await?;
                Ok(with_etag(empty(StatusCode::OK), &part.etag))
            }
            Endpoint::CompleteMultipartUpload {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let body =
                    collect(body_for(ChecksumHeaders::DescribeObject)?, MAX_XML_BODY).await?;
                let request: xml::CompleteMultipartUpload =
                    quick_xml::de::from_reader(body.as_ref())
                        .map_err(|e| S3Error::MalformedXml(e.to_string()))?;
                if request.part.is_empty() {
                    return Err(S3Error::MalformedXml("no parts were listed".into()));
                }
                let parts_list: Vec<(u32, String)> = request
                    .part
                    .into_iter()
                    .map(|p| (p.part_number, p.etag))
                    .collect();
                let opts = put_options(&parts.headers)?;
                let meta = backend
                    .backend
                    .complete_multipart(&parse_key(&key)?, &upload_id, &parts_list, &opts)
                    .await?;
                let body = xml::to_xml(
                    "CompleteMultipartUploadResult",
                    &xml::CompleteMultipartUploadResult {
                        xmlns: NAMESPACE,
                        location: format!("/{bucket}/{key}"),
                        bucket,
                        key,
                        etag: meta.etag,
                    },
                );
                Ok(xml_response(StatusCode::OK, body))
            }
            Endpoint::AbortMultipartUpload {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                backend
                    .backend
                    .abort_multipart(&parse_key(&key)?, &upload_id)
                    .await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Endpoint::ListParts {
                bucket,
                key,
                upload_id,
            } => {
                let backend = self.resolve(&scope, &bucket).await?;
                let parts_list = backend
                    .backend
                    .list_parts(&parse_key(&key)?, &upload_id)
                    .await?;
                let body = xml::to_xml(
                    "ListPartsResult",
                    &xml::ListPartsResult {
                        xmlns: NAMESPACE,
                        bucket,
                        key,
                        upload_id,
                        max_parts: 10_000,
                        is_truncated: false,
                        part: parts_list
                            .into_iter()
                            .map(|p| xml::Part {
                                part_number: p.part_number,
                                last_modified: xml::timestamp(p.last_modified),
                                etag: p.etag,
                                size: p.size,
                            })
                            .collect(),
                    },
                );
                Ok(xml_response(StatusCode::OK, body))
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

    fn preflight(&self, headers: &HeaderMap) -> Result<Response, S3Error> {
        let origin = headers.get(header::ORIGIN);
        if origin.is_none_or(|o| o.as_bytes() != self.app_origin.as_bytes()) {
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

    async fn list_buckets(&self, scope: &Scope) -> Result<Response, S3Error> {
        let backends = self
            .registry
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

fn parse_key(key: &str) -> Result<ObjectKey, S3Error> {
    ObjectKey::parse(key).map_err(|e| S3Error::InvalidArgument(e.to_string()))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The object's size as announced: the decoded length of an aws-chunked body, else
/// Content-Length (unless the body is chunked framing).
fn body_size(headers: &HeaderMap) -> Option<u64> {
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

fn put_options(headers: &HeaderMap) -> Result<PutOptions, S3Error> {
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
    })
}

fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    res
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
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

async fn get_object(
    backend: &Resolved,
    key: &ObjectKey,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, S3Error> {
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

async fn list_objects(
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

async fn delete_objects(
    scope: &Scope,
    backend: &Resolved,
    body: &[u8],
) -> Result<Response, S3Error> {
    let request: xml::Delete =
        quick_xml::de::from_reader(body).map_err(|e| S3Error::MalformedXml(e.to_string()))?;
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
