//! The S3 proxy: real S3 on the wire (path style), served twice by the same code: under `/s3`
//! on the main origin (for the island: same-origin, no CORS) and at the root of a dedicated
//! listener (for standard clients that cannot use an endpoint with a path).
//!
//! # Layout
//! - [`service`]: the pipeline: authenticate, authorize, resolve the backend, run, answer.
//! - [`router`]: method + path + query → one typed `Endpoint`.
//! - [`credentials`]: stateless proxy credentials (scope + MAC in the access key id).
//! - [`error`]: `S3Error`, each variant with its S3 code and status, rendered as XML.
//! - [`xml`]: every XML body sent or accepted; the only module that knows XML.
//! - [`signature`]: SigV4 verification (header and presigned auth, payload and streaming
//!   chunk signatures, checksums). Only this module knows how requests are signed.

pub mod credentials;
pub mod error;
pub mod router;
pub mod service;
#[allow(dead_code)] // the whole verifier API; some accessors serve its tests and later callers
pub mod signature;
pub mod xml;

pub use service::S3Proxy;
