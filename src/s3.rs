//! The S3 proxy: real S3 on the wire (path style), served twice by the same code: under `/s3`
//! on the main origin (for the island: same-origin, no CORS) and at the root of a dedicated
//! listener (for standard clients that cannot use an endpoint with a path).
//!
//! # Layout
//! - [`service`]: the pipeline: authenticate, authorize, resolve the backend, then the one
//!   dispatch over `Endpoint` into the operation modules; the request body, verified as it
//!   streams.
//! - [`router`]: method + path + query → one typed `Endpoint`.
//! - One module per operation family, each given an authorized request and a resolved backend:
//!   - [`bucket`]: ListBuckets, HeadBucket, GetBucketLocation.
//!   - [`list`]: ListObjectsV2, one page per request.
//!   - [`get`]: GetObject and HeadObject (ranges, preconditions, object headers).
//!   - [`put`]: PutObject and CopyObject; the put options and announced size of a write.
//!   - [`delete`]: DeleteObject and DeleteObjects.
//!   - [`multipart`]: Create/UploadPart/Complete/Abort multipart upload, ListParts.
//!   - [`cors`]: the preflight and CORS headers, for the app's own origin only.
//! - [`response`]: the answers operations share (empty, XML, with an ETag).
//! - [`credentials`]: stateless proxy credentials (scope + MAC in the access key id).
//! - [`error`]: `S3Error`, each variant with its S3 code and status, rendered as XML.
//! - [`xml`]: every XML body sent or accepted; the only module that knows XML.
//! - [`signature`]: SigV4 verification (header and presigned auth, payload and streaming
//!   chunk signatures, checksums). Only this module knows how requests are signed.

mod bucket;
mod cors;
pub mod credentials;
mod delete;
pub mod error;
mod get;
mod list;
mod multipart;
mod put;
mod response;
pub mod router;
pub mod service;
#[allow(dead_code)] // the whole verifier API; some accessors serve its tests and later callers
pub mod signature;
pub mod xml;

pub use service::S3Proxy;
