//! AWS Signature Version 4 verification for the S3 proxy (server side).
//!
//! Owns: deciding whether a request was signed by the holder of an access key's secret, and
//! whether its body is what was signed. Must not: look up secrets (the caller maps the access
//! key id to a secret between [`parse`] and [`verify`]), know about buckets, objects or
//! routing, or render S3 error XML (each [`SignatureError`] gives its code and status).
//!
//! # Flow
//! 1. [`parse`] reads the authentication from the request, without any secret: an
//!    `Authorization: AWS4-HMAC-SHA256 ...` header or presigned query parameters. An anonymous
//!    request is [`SignatureError::MissingAuthentication`].
//! 2. [`verify`] checks scope and time (clock skew, or presigned expiry), that `host` and every
//!    `x-amz-*` header are signed, and recomputes the signature with the secret.
//! 3. [`verified_body`] wraps the body: it yields the decoded payload (aws-chunked framing
//!    removed) and fails the stream if the payload does not verify.
//!
//! # Layout
//! - `canonical`: the canonical request (URI, query and header canonicalisation).
//! - `scope`: credential scope, request time, signing key, HMAC.
//! - `header_auth`: the `Authorization` header. `presigned`: query-string authentication.
//! - `payload`: payload modes and the verifying body stream.
//! - `streaming`: aws-chunked decoding, chunk and trailer signatures.
//! - `checksum`: `Content-MD5` and `x-amz-checksum-*` algorithms.
//! - `error`: [`SignatureError`].

use std::io;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, Method};

mod canonical;
mod checksum;
mod error;
mod header_auth;
mod payload;
mod presigned;
mod scope;
mod streaming;
#[cfg(test)]
mod tests;

// The API the proxy calls; until it is wired up, some of it is not used yet.
#[allow(unused_imports)]
pub use checksum::ChecksumAlgorithm;
pub use error::{SignatureError, SignatureMismatch};
#[allow(unused_imports)]
pub use payload::{
    BodyOptions, BodyOutcome, BodyStream, BodySummary, ChecksumHeaders, PayloadMode,
};

use canonical::{CanonicalInputs, canonical_request, decode_query};
use scope::{Credential, RequestTime, SigningKey, signatures_match, string_to_sign};
use streaming::ChunkSigning;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The only service accepted in the credential scope.
pub const SERVICE: &str = "s3";
/// The last field of every credential scope.
pub const SCOPE_TERMINATOR: &str = "aws4_request";

/// `x-amz-content-sha256` literal: the body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` literal: aws-chunked, each chunk signed.
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// `x-amz-content-sha256` literal: aws-chunked, each chunk signed, signed trailer.
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// `x-amz-content-sha256` literal: aws-chunked, unsigned chunks, checksum trailer.
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub const AUTHORIZATION: &str = "authorization";
pub const HOST: &str = "host";
pub const DATE: &str = "date";
pub const CONTENT_MD5: &str = "content-md5";
pub const CONTENT_ENCODING: &str = "content-encoding";
pub const X_AMZ_PREFIX: &str = "x-amz-";
pub const X_AMZ_DATE: &str = "x-amz-date";
pub const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
pub const X_AMZ_DECODED_CONTENT_LENGTH: &str = "x-amz-decoded-content-length";
pub const X_AMZ_TRAILER: &str = "x-amz-trailer";
pub const X_AMZ_CHECKSUM_PREFIX: &str = "x-amz-checksum-";
/// The `Content-Encoding` token of aws-chunked bodies; not part of the stored object.
pub const AWS_CHUNKED: &str = "aws-chunked";

pub const QUERY_ALGORITHM: &str = "X-Amz-Algorithm";
pub const QUERY_CREDENTIAL: &str = "X-Amz-Credential";
pub const QUERY_DATE: &str = "X-Amz-Date";
pub const QUERY_EXPIRES: &str = "X-Amz-Expires";
pub const QUERY_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
pub const QUERY_SIGNATURE: &str = "X-Amz-Signature";
pub const QUERY_CONTENT_SHA256: &str = "X-Amz-Content-Sha256";

/// Limits applied by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Largest accepted difference between a header-signed request's time and now (S3: 15
    /// minutes). Also how far in the future a presigned URL's `X-Amz-Date` may be.
    pub max_skew: Duration,
    /// Largest accepted `X-Amz-Expires` (S3: 7 days).
    pub max_presigned_expiry: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            max_skew: Duration::from_secs(15 * 60),
            max_presigned_expiry: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// Where the authentication came from; decides which error code a malformed part gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthSource {
    Header,
    Query,
}

impl AuthSource {
    fn malformed(self, message: impl Into<String>) -> SignatureError {
        match self {
            Self::Header => SignatureError::AuthorizationHeaderMalformed(message.into()),
            Self::Query => SignatureError::AuthorizationQueryParametersError(message.into()),
        }
    }
}

/// A request's authentication, parsed but not yet verified (step 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    source: AuthSource,
    credential: Credential,
    signed_headers: Vec<String>,
    signature: [u8; 32],
    time: RequestTime,
    /// Header auth: the header the time came from (`x-amz-date` or `date`).
    time_header: Option<&'static str>,
    /// Presigned: `X-Amz-Expires`.
    expires: Option<Duration>,
    /// Presigned: `X-Amz-Content-Sha256`, if in the URL.
    query_content_sha256: Option<String>,
}

impl ParsedAuth {
    /// The access key id claimed by the request; look its secret up, then call [`verify`].
    pub fn access_key_id(&self) -> &str {
        &self.credential.access_key_id
    }

    /// The region of the credential scope, as the client signed it (any value is accepted;
    /// the caller may insist on its own).
    pub fn region(&self) -> &str {
        &self.credential.region
    }

    /// The service of the credential scope; always `s3` (anything else fails [`parse`]).
    pub fn service(&self) -> &str {
        &self.credential.service
    }

    /// Whether this is query-string (presigned URL) authentication.
    pub fn is_presigned(&self) -> bool {
        self.source == AuthSource::Query
    }
}

/// A request whose signature checked out (step 2), with what body verification needs.
#[derive(Debug, Clone)]
pub struct Verified {
    access_key_id: String,
    region: String,
    payload: PayloadMode,
    presigned: bool,
    request_time: SystemTime,
    /// Signing key, seed signature, timestamp and scope for chunk signatures.
    chunk_signing: ChunkSigning,
}

impl Verified {
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// What `x-amz-content-sha256` says about the body.
    pub fn payload_mode(&self) -> &PayloadMode {
        &self.payload
    }

    pub fn is_presigned(&self) -> bool {
        self.presigned
    }

    /// The signed request time.
    pub fn request_time(&self) -> SystemTime {
        self.request_time
    }
}

/// Step 1: reads the authentication of a request without any secret.
///
/// `path` and `query` are raw (percent-encoded, exactly as received); `method` and `path` are
/// not needed to parse and are taken for symmetry with [`verify`].
pub fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<ParsedAuth, SignatureError> {
    let _ = (method, path);
    let params = decode_query(query);
    match (
        headers.get(AUTHORIZATION),
        presigned::has_query_auth(&params),
    ) {
        (Some(_), true) => Err(SignatureError::ConflictingAuthentication),
        (Some(value), false) => {
            let auth = header_auth::parse_authorization(value.as_bytes())?;
            let (time, time_header) = header_auth::request_time(headers)?;
            Ok(ParsedAuth {
                source: AuthSource::Header,
                credential: auth.credential,
                signed_headers: auth.signed_headers,
                signature: auth.signature,
                time,
                time_header: Some(time_header),
                expires: None,
                query_content_sha256: None,
            })
        }
        (None, true) => {
            let auth = presigned::parse_query_auth(&params)?;
            Ok(ParsedAuth {
                source: AuthSource::Query,
                credential: auth.credential,
                signed_headers: auth.signed_headers,
                signature: auth.signature,
                time: auth.time,
                time_header: None,
                expires: Some(auth.expires),
                query_content_sha256: auth.content_sha256,
            })
        }
        (None, false) if presigned::has_sigv2_query_auth(&params) => {
            Err(SignatureError::UnsupportedAuthorization)
        }
        (None, false) => Err(SignatureError::MissingAuthentication),
    }
}

/// Step 2: verifies a parsed request with the secret of its access key.
///
/// Checks, in order: the credential date against the request date; the time (skew for header
/// auth, expiry for presigned URLs); that `host`, every `x-amz-*` header present (and `date`
/// when it carries the time) are signed; the payload mode; then recomputes the signature over
/// the S3 canonical request and compares in constant time.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    parsed: &ParsedAuth,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    secret_access_key: &str,
    now: SystemTime,
    policy: &VerifyPolicy,
) -> Result<Verified, SignatureError> {
    let source = parsed.source;
    if parsed.credential.date != parsed.time.date() {
        return Err(source.malformed(format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{}\".",
            parsed.credential.date,
            parsed.time.date()
        )));
    }
    check_time(parsed, now, policy)?;
    let payload_line = payload_line(parsed, headers)?;
    check_signed_headers(parsed, headers)?;
    let payload = match headers.get(X_AMZ_CONTENT_SHA256) {
        Some(value) => PayloadMode::parse(value.to_str().unwrap_or("").trim())?,
        None => PayloadMode::parse(&payload_line)?,
    };

    let canonical_request = canonical_request(&CanonicalInputs {
        method,
        raw_path: path,
        raw_query: query,
        headers,
        signed_headers: &parsed.signed_headers,
        payload: &payload_line,
        presigned: source == AuthSource::Query,
    });
    let scope = parsed.credential.scope();
    let string_to_sign = string_to_sign(&parsed.time.amz, &scope, &canonical_request);
    let key = SigningKey::derive(secret_access_key, &parsed.credential);
    if !signatures_match(&key.sign(&string_to_sign), &parsed.signature) {
        return Err(SignatureError::SignatureDoesNotMatch(Some(Box::new(
            SignatureMismatch {
                access_key_id: parsed.credential.access_key_id.clone(),
                canonical_request,
                string_to_sign,
                signature_provided: hex::encode(parsed.signature),
            },
        ))));
    }
    Ok(Verified {
        access_key_id: parsed.credential.access_key_id.clone(),
        region: parsed.credential.region.clone(),
        payload,
        presigned: source == AuthSource::Query,
        request_time: parsed.time.at,
        chunk_signing: ChunkSigning {
            key,
            timestamp: parsed.time.amz.clone(),
            scope,
            previous: parsed.signature,
        },
    })
}

/// Header auth: within `max_skew` of now. Presigned: `X-Amz-Expires` within policy, not yet
/// expired, and not dated further in the future than `max_skew`.
fn check_time(
    parsed: &ParsedAuth,
    now: SystemTime,
    policy: &VerifyPolicy,
) -> Result<(), SignatureError> {
    let at = parsed.time.at;
    let Some(expires) = parsed.expires else {
        let skew = now
            .duration_since(at)
            .unwrap_or_else(|ahead| ahead.duration());
        if skew > policy.max_skew {
            return Err(SignatureError::RequestTimeTooSkewed {
                request_time: at,
                server_time: now,
            });
        }
        return Ok(());
    };
    if expires > policy.max_presigned_expiry {
        return Err(SignatureError::AuthorizationQueryParametersError(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is; {}",
            policy.max_presigned_expiry.as_secs()
        )));
    }
    if at
        .duration_since(now)
        .is_ok_and(|ahead| ahead > policy.max_skew)
    {
        return Err(SignatureError::RequestNotYetValid);
    }
    if now.duration_since(at).is_ok_and(|age| age > expires) {
        return Err(SignatureError::RequestExpired);
    }
    Ok(())
}

/// The last line of the canonical request. Header auth: `x-amz-content-sha256`, which must be
/// present. Presigned: `X-Amz-Content-Sha256` from the URL, else `UNSIGNED-PAYLOAD`.
fn payload_line(parsed: &ParsedAuth, headers: &HeaderMap) -> Result<String, SignatureError> {
    match parsed.source {
        AuthSource::Header => {
            let value = headers.get(X_AMZ_CONTENT_SHA256).ok_or_else(|| {
                SignatureError::InvalidRequest(format!(
                    "Missing required header for this request: {X_AMZ_CONTENT_SHA256}"
                ))
            })?;
            let text = value.to_str().map_err(|_| {
                SignatureError::InvalidArgument(format!("{X_AMZ_CONTENT_SHA256} is not ASCII"))
            })?;
            Ok(text.trim().to_owned())
        }
        AuthSource::Query => Ok(parsed
            .query_content_sha256
            .clone()
            .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_owned())),
    }
}

/// `host`, every `x-amz-*` header present, and `date` when it carries the request time, must
/// be among the signed headers.
fn check_signed_headers(parsed: &ParsedAuth, headers: &HeaderMap) -> Result<(), SignatureError> {
    let signed = |name: &str| parsed.signed_headers.iter().any(|s| s == name);
    let mut unsigned: Vec<String> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with(X_AMZ_PREFIX) && !signed(name))
        .map(str::to_owned)
        .collect();
    if !signed(HOST) {
        unsigned.push(HOST.to_owned());
    }
    if parsed.time_header == Some(DATE) && !signed(DATE) {
        unsigned.push(DATE.to_owned());
    }
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort();
    unsigned.dedup();
    Err(SignatureError::HeadersNotSigned(unsigned))
}

/// Step 3: wraps the request body so that it yields the decoded payload and fails with an
/// [`io::Error`] wrapping a [`SignatureError`] (see [`SignatureError::from_io`]) if anything
/// does not verify. Errors of `body` itself are passed through unchanged.
///
/// The error comes at the point of failure, at the latest in place of the end of the stream:
/// data already yielded is not yet trustworthy, so the caller must not commit an object until
/// the stream has ended without error.
pub fn verified_body(
    body: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    verified: &Verified,
    headers: &HeaderMap,
) -> Result<BodyStream, SignatureError> {
    verified_body_with(body, verified, headers, &BodyOptions::default()).map(|(stream, _)| stream)
}

/// [`verified_body`] with options, also returning a handle that holds, once the stream has
/// ended without error, the decoded length and the checksum the client sent (to echo back).
pub fn verified_body_with(
    body: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    verified: &Verified,
    headers: &HeaderMap,
    options: &BodyOptions,
) -> Result<(BodyStream, BodyOutcome), SignatureError> {
    payload::verifying_body(body, verified, headers, options)
}

/// The payload length announced by `x-amz-decoded-content-length` (aws-chunked uploads), if
/// present and a number. `Content-Length` of such requests counts the framing, not the object.
pub fn decoded_content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(X_AMZ_DECODED_CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Content-Encoding` to store with the object: the request's, without `aws-chunked`
/// (which only describes the transfer). `None` if nothing is left.
pub fn stored_content_encoding(headers: &HeaderMap) -> Option<String> {
    let kept: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty() && !token.eq_ignore_ascii_case(AWS_CHUNKED))
        .map(str::to_owned)
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}
