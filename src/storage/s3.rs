//! The `s3` backend: any S3-compatible service (AWS, R2, MinIO, Garage, ...) through aws-sdk-s3.
//!
//! A backend is one bucket and an optional key prefix; every key is stored as
//! `prefix + key`, and listings strip the prefix again, so callers never see or escape it.
//! Shared (operator) backends use the prefix to give each user their own namespace.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};

use super::{
    Backend, ByteRange, ByteStream, GetObject, ListPage, ListRequest, ObjectKey, ObjectMeta,
    PartMeta, PutOptions, RangeRequest, StorageError,
};

/// Where and how to reach a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key ("" or ending in '/').
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// `x-amz-copy-source` is `bucket/key`, URL-encoded except for `/`.
const COPY_SOURCE_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Parts of an internal multipart upload, used when a put's size is unknown.
const PART_SIZE: usize = 8 * 1024 * 1024;

pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3Backend {
    pub fn new(settings: &S3Settings) -> S3Backend {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .endpoint_url(settings.endpoint.trim_end_matches('/'))
            .force_path_style(settings.path_style)
            .credentials_provider(Credentials::new(
                settings.access_key_id.clone(),
                settings.secret_access_key.clone(),
                None,
                None,
                "larder-vault",
            ))
            .build();
        let mut prefix = settings.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        S3Backend {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            prefix,
        }
    }

    fn full(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    fn strip<'a>(&self, full: &'a str) -> &'a str {
        full.strip_prefix(&self.prefix).unwrap_or(full)
    }

    /// Checks that the bucket answers with these credentials (Settings → Test).
    pub async fn probe(&self) -> Result<(), StorageError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| upstream(e, ""))?;
        Ok(())
    }
}

fn millis(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or_default()
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// Maps an SDK error to the storage error a proxy client should see.
fn upstream<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, HttpResponse>,
    key: &str,
) -> StorageError {
    if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
        return StorageError::Upstream(format!("cannot reach the service: {}", root_cause(&e)));
    }
    let status = e.raw_response().map(|r| r.status().as_u16());
    match (e.code(), status) {
        (Some("NoSuchUpload"), _) => StorageError::NoSuchUpload(key.to_owned()),
        (Some("NoSuchBucket"), _) => StorageError::Upstream("the bucket does not exist".into()),
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => {
            StorageError::NotFound(key.to_owned())
        }
        (Some("PreconditionFailed"), _) | (_, Some(412)) => StorageError::PreconditionFailed,
        (Some("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall"), _) => {
            StorageError::InvalidPart(e.message().unwrap_or("invalid part").to_owned())
        }
        (code, _) => {
            let detail = match (code, e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            };
            StorageError::Upstream(detail)
        }
    }
}

/// The innermost cause: "Connection refused (os error 111)" rather than the SDK's wrapping.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The body error that aborted an upload, kept so the caller can report it (a failed digest is
/// the client's fault, not the upstream's).
type BodyFailure = std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>;

/// Wraps a body for the SDK. The last chunk is held back until the stream has ended cleanly:
/// a body that fails verification at its end (a wrong digest) never delivers its final bytes,
/// so the upstream sees an incomplete request and stores nothing.
fn to_sdk(body: ByteStream) -> (SdkStream, BodyFailure) {
    let failure = BodyFailure::default();
    let state = (body, None::<Bytes>, failure.clone(), false);
    let withheld = futures::stream::unfold(state, |(mut body, held, failure, done)| async move {
        if done {
            return None;
        }
        let mut held = held;
        loop {
            match body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => match held.replace(chunk) {
                    Some(previous) => return Some((Ok(previous), (body, held, failure, false))),
                    None => continue,
                },
                Some(Err(e)) => {
                    let message = e.to_string();
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return Some((
                        Err(std::io::Error::other(message)),
                        (body, None, failure, true),
                    ));
                }
                None => return held.map(|last| (Ok(last), (body, None, failure, true))),
            }
        }
    });
    // The SDK wants a `Sync` body; a stream is only ever polled by one task at a time.
    // Fused: the SDK may poll again after the end (e.g. when it retries an empty body).
    let frames =
        sync_wrapper::SyncStream::new(Box::pin(withheld.fuse())).map_ok(http_body::Frame::data);
    let body = http_body_util::StreamBody::new(frames);
    (
        SdkStream::new(aws_smithy_types::body::SdkBody::from_body_1_x(body)),
        failure,
    )
}

/// The client's body error if there was one, else the upstream's.
fn body_or_upstream(failure: &BodyFailure, upstream_error: StorageError) -> StorageError {
    match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => StorageError::Io(e),
        None => upstream_error,
    }
}

fn from_sdk(body: SdkStream) -> ByteStream {
    Box::pin(futures::stream::unfold(body, |mut body| async move {
        match body.next().await {
            Some(Ok(bytes)) => Some((Ok(bytes), body)),
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), body)),
            None => None,
        }
    }))
}

fn range_header(r: RangeRequest) -> String {
    match r {
        RangeRequest::From {
            start,
            end: Some(end),
        } => format!("bytes={start}-{end}"),
        RangeRequest::From { start, end: None } => format!("bytes={start}-"),
        RangeRequest::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// `bytes start-end/total` → the range and the total size.
fn parse_content_range(v: &str) -> Option<(ByteRange, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((
        ByteRange {
            start: start.parse().ok()?,
            end: end.parse().ok()?,
        },
        total.parse().ok()?,
    ))
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| upstream(e, key.as_str()))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or_default().max(0) as u64,
            etag: out.e_tag().unwrap_or_default().to_owned(),
            last_modified: millis(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
        })
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError> {
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key));
        if let Some(r) = range {
            req = req.range(range_header(r));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some("InvalidRange") => {
                let size = self.head(key).await?.size;
                return Err(StorageError::InvalidRange { size });
            }
            Err(e) => return Err(upstream(e, key.as_str())),
        };
        let content_range = out.content_range().and_then(parse_content_range);
        let size = match content_range {
            Some((_, total)) => total,
            None => out.content_length().unwrap_or_default().max(0) as u64,
        };
        Ok(GetObject {
            meta: ObjectMeta {
                key: key.to_string(),
                size,
                etag: out.e_tag().unwrap_or_default().to_owned(),
                last_modified: millis(out.last_modified()),
                content_type: out.content_type().map(str::to_owned),
            },
            range: content_range.map(|(r, _)| r),
            body: from_sdk(out.body),
        })
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        size: Option<u64>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let Some(size) = size else {
            return self.put_unknown_size(key, body, opts).await;
        };
        let (body, failure) = to_sdk(body);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .content_length(size as i64)
            .body(body);
        if let Some(ct) = &opts.content_type {
            req = req.content_type(ct);
        }
        if opts.if_none_match_any {
            req = req.if_none_match("*");
        }
        if let Some(etag) = &opts.if_match {
            req = req.if_match(etag);
        }
        req.send()
            .await
            .map_err(|e| body_or_upstream(&failure, upstream(e, key.as_str())))?;
        self.head(key).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StorageError> {
        let mut call = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}{}", self.prefix, req.prefix))
            .max_keys(req.max_keys.clamp(1, 1000) as i32);
        if let Some(d) = &req.delimiter {
            call = call.delimiter(d);
        }
        if let Some(after) = &req.start_after {
            call = call.start_after(format!("{}{after}", self.prefix));
        }
        let out = call.send().await.map_err(|e| upstream(e, &req.prefix))?;
        let objects: Vec<ObjectMeta> = out
            .contents()
            .iter()
            .map(|o| ObjectMeta {
                key: self.strip(o.key().unwrap_or_default()).to_owned(),
                size: o.size().unwrap_or_default().max(0) as u64,
                etag: o.e_tag().unwrap_or_default().to_owned(),
                last_modified: millis(o.last_modified()),
                content_type: None,
            })
            .collect();
        let common_prefixes: Vec<String> = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .map(|p| self.strip(p).to_owned())
            .collect();
        let next_start_after = if out.is_truncated() == Some(true) {
            let last_obj = objects.last().map(|o| o.key.clone());
            let last_prefix = common_prefixes.last().cloned();
            last_obj.into_iter().chain(last_prefix).max()
        } else {
            None
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_start_after,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| upstream(e, key.as_str()))?;
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(&self.full(from), COPY_SOURCE_ENCODE)
        );
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full(to))
            .copy_source(source)
            .send()
            .await
            .map_err(|e| upstream(e, from.as_str()))?;
        self.head(to).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key));
        if let Some(ct) = content_type {
            req = req.content_type(ct);
        }
        let out = req.send().await.map_err(|e| upstream(e, key.as_str()))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Upstream("no upload id in the answer".into()))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        _content_md5: Option<[u8; 16]>, // the upstream computes its own ETag
    ) -> Result<PartMeta, StorageError> {
        let (body, size, failure) = match size {
            Some(s) => {
                let (body, failure) = to_sdk(body);
                (body, s, failure)
            }
            None => {
                let bytes = collect(body, usize::MAX).await?;
                let len = bytes.len() as u64;
                (SdkStream::from(bytes), len, BodyFailure::default())
            }
        };
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .part_number(part_number as i32)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| body_or_upstream(&failure, upstream(e, key.as_str())))?;
        Ok(PartMeta {
            part_number,
            etag: out.e_tag().unwrap_or_default().to_owned(),
            size,
            last_modified: larder_actors::now_millis(),
        })
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        let out = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| upstream(e, key.as_str()))?;
        Ok(out
            .parts()
            .iter()
            .map(|p| PartMeta {
                part_number: p.part_number().unwrap_or_default().max(0) as u32,
                etag: p.e_tag().unwrap_or_default().to_owned(),
                size: p.size().unwrap_or_default().max(0) as u64,
                last_modified: millis(p.last_modified()),
            })
            .collect())
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag)| {
                        CompletedPart::builder()
                            .part_number(*n as i32)
                            .e_tag(etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .multipart_upload(completed);
        if opts.if_none_match_any {
            req = req.if_none_match("*");
        }
        if let Some(etag) = &opts.if_match {
            req = req.if_match(etag);
        }
        req.send().await.map_err(|e| upstream(e, key.as_str()))?;
        self.head(key).await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| upstream(e, key.as_str()))?;
        Ok(())
    }
}

impl S3Backend {
    /// A put whose size is not known up front: a multipart upload of fixed-size parts, so
    /// memory stays bounded by one part.
    async fn put_unknown_size(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let upload_id = self
            .create_multipart(key, opts.content_type.clone())
            .await?;
        let result: Result<Vec<(u32, String)>, StorageError> = async {
            let mut parts = Vec::new();
            let mut buf = BytesMut::with_capacity(PART_SIZE);
            let mut done = false;
            while !done {
                match body.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => done = true,
                }
                if buf.len() >= PART_SIZE || (done && (!buf.is_empty() || parts.is_empty())) {
                    let part: Bytes = buf.split().freeze();
                    let n = parts.len() as u32 + 1;
                    let len = part.len() as u64;
                    let stream: ByteStream =
                        Box::pin(futures::stream::once(async move { Ok(part) }));
                    let meta = self
                        .upload_part(key, &upload_id, n, stream, Some(len), None)
                        .await?;
                    parts.push((n, meta.etag));
                }
            }
            Ok(parts)
        }
        .await;
        match result {
            Ok(parts) => self.complete_multipart(key, &upload_id, &parts, opts).await,
            Err(e) => {
                let _ = self.abort_multipart(key, &upload_id).await;
                Err(e)
            }
        }
    }
}

async fn collect(mut body: ByteStream, limit: usize) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > limit {
            return Err(StorageError::InvalidPart("part too large".into()));
        }
    }
    Ok(buf.freeze())
}
