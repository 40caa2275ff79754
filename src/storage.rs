//! Storage backends: where users' objects live. One trait, [`Backend`], implemented by `local`
//! (files under the data dir: the embedded default) and `s3` (any S3-compatible service).
//!
//! Everything above this module (the S3 proxy, load jobs, the catalog) speaks [`Backend`] and
//! [`ObjectKey`]; only the implementations know about files or the AWS SDK.
//!
//! Must not: know who the user is (callers hand each user a backend already scoped to that
//! user's namespace), or accept a key that was not validated by [`ObjectKey::parse`].

pub mod cache;
pub mod local;
pub mod registry;
pub mod s3;
#[allow(dead_code)] // read by the catalog (next issue); tested here
pub mod uri;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Longest object key, in bytes (as S3).
pub const MAX_KEY_BYTES: usize = 1024;

/// A validated object key: 1..=1024 bytes of UTF-8, no control characters, no leading `/`, no
/// empty, `.` or `..` segments, no trailing `/`, nothing under the reserved `.larder/`. Keys
/// are compared and listed in byte order, as S3 does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn parse(key: &str) -> Result<ObjectKey, KeyError> {
        let refuse = |reason| {
            Err(KeyError {
                key: key.chars().take(200).collect(),
                reason,
            })
        };
        if key.is_empty() {
            return refuse("keys cannot be empty");
        }
        if key.len() > MAX_KEY_BYTES {
            return refuse("keys are at most 1024 bytes");
        }
        if key.chars().any(char::is_control) {
            return refuse("keys cannot contain control characters");
        }
        if key.starts_with('/') {
            return refuse("keys cannot start with '/'");
        }
        if key.ends_with('/') {
            return refuse("keys cannot end with '/' (folder markers are not stored)");
        }
        if key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return refuse("keys cannot contain empty, '.' or '..' segments");
        }
        if key == ".larder" || key.starts_with(".larder/") {
            return refuse("'.larder/' is reserved");
        }
        Ok(ObjectKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Quoted, as S3 sends it: `"<md5 hex>"` for single uploads, `"<hex>-<parts>"` for
    /// multipart ones.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified: i64,
    pub content_type: Option<String>,
}

/// A byte range of an object, inclusive, already resolved against its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

/// A range as requested (HTTP `Range: bytes=...`), before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=start-end` (end inclusive) or `bytes=start-`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// The concrete range within an object of `size` bytes; `None` if unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        match self {
            RangeRequest::From { start, end } => {
                if start >= size {
                    return None;
                }
                let end = end.map_or(size - 1, |e| e.min(size - 1));
                (end >= start).then_some(ByteRange { start, end })
            }
            RangeRequest::Suffix(0) => None,
            RangeRequest::Suffix(n) => Some(ByteRange {
                start: size.saturating_sub(n),
                end: size.checked_sub(1)?,
            }),
        }
    }
}

/// An object being read.
pub struct GetObject {
    pub meta: ObjectMeta,
    /// The part being returned, when a range was asked for.
    pub range: Option<ByteRange>,
    pub body: ByteStream,
}

/// Preconditions and metadata for a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// `If-None-Match: *`: fail if the key exists.
    pub if_none_match_any: bool,
    /// `If-Match: "<etag>"`: fail unless the current object has this ETag.
    pub if_match: Option<String>,
    /// The body's MD5, when the body stream guarantees it (it fails before its end if the bytes
    /// do not match: see `BodyOutcome::content_md5`). A backend that needs the MD5 for the
    /// ETag takes this instead of hashing the body a second time.
    pub content_md5: Option<[u8; 16]>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the distinct prefixes up to and including the next delimiter.
    pub common_prefixes: Vec<String>,
    /// The last key or common prefix returned, when more remain: list again with
    /// `start_after` set to it.
    pub next_start_after: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) strictly greater than this.
    pub start_after: Option<String>,
    /// 1..=1000.
    pub max_keys: usize,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartMeta {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub last_modified: i64,
}

/// Why a storage operation failed. Each maps to one S3 error code in the proxy.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("no such upload: {0}")]
    NoSuchUpload(String),
    #[error("a precondition failed")]
    PreconditionFailed,
    #[error("{0}")]
    InvalidKey(#[from] KeyError),
    #[error("{0}")]
    InvalidPart(String),
    #[error("the requested range is not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    #[error("the key conflicts with an existing object or prefix: {0}")]
    Conflict(String),
    #[error("the upload was {actual} bytes, {expected} were announced")]
    IncompleteBody { expected: u64, actual: u64 },
    #[error("the backend is unreachable or refused the request: {0}")]
    Upstream(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A place objects live. Implementations are cheap to share (`Arc<dyn Backend>`).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError>;
    /// The object, or the part of it `range` names. An unsatisfiable range is
    /// `StorageError::InvalidRange` carrying the object's size.
    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError>;
    /// Stores `body` under `key`, atomically: readers see the old object or the new one, never
    /// a partial one. `size`, when known, is checked against what arrived.
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        size: Option<u64>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError>;
    async fn list(&self, req: &ListRequest) -> Result<ListPage, StorageError>;
    /// Deleting a missing key succeeds (as S3).
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;
    /// Copies an object within this backend.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError>;
    /// Starts a multipart upload; returns its id.
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError>;
    /// Stores one part (1..=10000); returns its ETag. `content_md5` as in [`PutOptions`].
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError>;
    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError>;
    /// Assembles the listed parts (ascending part numbers, ETags must match) into the object.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError>;
    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for ok in [
            "a",
            "a/b/c.parquet",
            "year=2026/month=01/part-0.parquet",
            "ünïcode/ö",
            "a..b",
            ".hidden",
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "..",
            "./a",
            "a/.",
            "dir/",
            "a\u{0}b",
            "a\nb",
            ".larder/x",
            ".larder",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::parse(&"k".repeat(1025)).is_err());
        assert!(ObjectKey::parse(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn ranges_resolve_like_http() {
        let r = |start, end| Some(ByteRange { start, end });
        assert_eq!(
            RangeRequest::From {
                start: 0,
                end: Some(9)
            }
            .resolve(100),
            r(0, 9)
        );
        assert_eq!(
            RangeRequest::From {
                start: 90,
                end: Some(200)
            }
            .resolve(100),
            r(90, 99)
        );
        assert_eq!(
            RangeRequest::From {
                start: 10,
                end: None
            }
            .resolve(100),
            r(10, 99)
        );
        assert_eq!(
            RangeRequest::From {
                start: 100,
                end: None
            }
            .resolve(100),
            None
        );
        assert_eq!(RangeRequest::Suffix(10).resolve(100), r(90, 99));
        assert_eq!(RangeRequest::Suffix(500).resolve(100), r(0, 99));
        assert_eq!(RangeRequest::Suffix(0).resolve(100), None);
        assert_eq!(RangeRequest::Suffix(5).resolve(0), None);
    }
}

/// The outcome of [`round_trip`].
#[derive(Debug)]
pub struct RoundTrip {
    pub result: Result<(), String>,
    pub elapsed: std::time::Duration,
}

/// Writes, reads back and deletes a small probe object: proves a backend works end to end
/// (Settings → Test).
pub async fn round_trip(backend: &dyn Backend) -> RoundTrip {
    let start = std::time::Instant::now();
    let result = async {
        let key = ObjectKey::parse(&format!(".larder-probe-{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| e.to_string())?;
        let payload = Bytes::from_static(b"larder backend probe");
        let body: ByteStream = Box::pin(futures::stream::once({
            let p = payload.clone();
            async move { Ok(p) }
        }));
        backend
            .put(
                &key,
                body,
                Some(payload.len() as u64),
                &PutOptions::default(),
            )
            .await
            .map_err(|e| format!("writing a probe object failed: {e}"))?;
        let mut got = backend
            .get(&key, None)
            .await
            .map_err(|e| format!("reading it back failed: {e}"))?;
        let mut read = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut got.body).await {
            read.extend_from_slice(&chunk.map_err(|e| format!("reading it back failed: {e}"))?);
        }
        let deleted = backend
            .delete(&key)
            .await
            .map_err(|e| format!("deleting it failed: {e}"));
        if read != payload {
            return Err("the probe object read back differs from what was written".to_owned());
        }
        deleted
    }
    .await;
    RoundTrip {
        result,
        elapsed: start.elapsed(),
    }
}
