//! The request payload: which `x-amz-content-sha256` mode a request uses, and the body stream
//! that yields the decoded payload while verifying everything the request promised about it —
//! the signed SHA-256, `Content-MD5`, an `x-amz-checksum-*` header or trailer, and
//! `x-amz-decoded-content-length` — failing the stream if any of it does not hold.
//!
//! Owns: the payload modes and the verifying stream. Must not: parse aws-chunked framing (see
//! `streaming`) or compute checksum algorithms (see `checksum`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::checksum::{ChecksumAlgorithm, Checksummer, checksum_header, content_md5};
use super::streaming::{ChunkedDecoder, ChunkedFraming};
use super::{
    STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, SignatureError,
    UNSIGNED_PAYLOAD, Verified, X_AMZ_DECODED_CONTENT_LENGTH, X_AMZ_TRAILER,
    decoded_content_length,
};

/// What `x-amz-content-sha256` says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// A lower-case hex SHA-256 the body must hash to.
    Sha256(String),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, every chunk signed.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: as above, plus a signed trailer.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, unsigned chunks, a checksum trailer.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Reads an `x-amz-content-sha256` (or `X-Amz-Content-Sha256`) value.
    pub(super) fn parse(value: &str) -> Result<Self, SignatureError> {
        Ok(match value {
            UNSIGNED_PAYLOAD => Self::Unsigned,
            STREAMING_SIGNED => Self::StreamingSigned,
            STREAMING_SIGNED_TRAILER => Self::StreamingSignedTrailer,
            STREAMING_UNSIGNED_TRAILER => Self::StreamingUnsignedTrailer,
            hash if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Self::Sha256(hash.to_ascii_lowercase())
            }
            other if other.starts_with("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD") => {
                return Err(SignatureError::UnsupportedAuthorization);
            }
            _ => {
                return Err(SignatureError::InvalidArgument(
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                     STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
                     or a valid sha256 value."
                        .to_owned(),
                ));
            }
        })
    }

    /// Whether the body is aws-chunked (and so must be decoded).
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Self::StreamingSigned | Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }

    fn has_trailer(&self) -> bool {
        matches!(
            self,
            Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }
}

/// What the `x-amz-checksum-*` request headers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumHeaders {
    /// The body itself (PutObject, UploadPart, DeleteObjects...): verify them. The default.
    #[default]
    DescribeBody,
    /// The whole object, not this body (CompleteMultipartUpload): leave them alone.
    DescribeObject,
}

/// Options of [`verified_body_with`](super::verified_body_with).
#[derive(Debug, Clone, Default)]
pub struct BodyOptions {
    pub checksum_headers: ChecksumHeaders,
}

/// What a body turned out to be, once fully read and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySummary {
    /// Decoded payload length.
    pub length: u64,
    /// The flexible checksum the client sent (header or trailer) and that the body matched,
    /// base64 as S3 echoes it back in `x-amz-checksum-*`.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// What a verified body promises: known from the start, [`BodyOutcome::content_md5`]; filled in
/// when the body ends successfully, [`BodyOutcome::summary`] (read it after the stream is
/// exhausted).
#[derive(Debug, Clone, Default)]
pub struct BodyOutcome {
    summary: Arc<Mutex<Option<BodySummary>>>,
    content_md5: Option<[u8; 16]>,
}

impl BodyOutcome {
    /// `None` until the body stream has ended without error.
    pub fn summary(&self) -> Option<BodySummary> {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The request's `Content-MD5`, which the stream checks: once it has ended without error,
    /// this is the MD5 of every byte it yielded (a mismatch fails it before its end instead).
    /// A reader that needs the body's MD5 can take this rather than hash the body again.
    pub fn content_md5(&self) -> Option<[u8; 16]> {
        self.content_md5
    }
}

/// The body stream type handed back to the proxy.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// What to check on the decoded payload, from the verified auth and the headers.
struct PayloadChecks {
    sha256: Option<(Sha256, [u8; 32])>,
    md5: Option<(Checksummer, [u8; 16])>,
    /// A checksum header's algorithm and expected value.
    header: Option<(ChecksumAlgorithm, Vec<u8>)>,
    /// The checksum trailer announced by `x-amz-trailer`.
    trailer: Option<ChecksumAlgorithm>,
    /// One running computation per distinct flexible-checksum algorithm needed.
    checksums: Vec<(ChecksumAlgorithm, Checksummer)>,
    announced_length: Option<u64>,
    length: u64,
}

impl PayloadChecks {
    fn new(
        verified: &Verified,
        headers: &HeaderMap,
        options: &BodyOptions,
    ) -> Result<Self, SignatureError> {
        let sha256 = match &verified.payload {
            PayloadMode::Sha256(hex_hash) => {
                let mut expected = [0u8; 32];
                hex::decode_to_slice(hex_hash, &mut expected)
                    .map_err(|_| SignatureError::ContentSha256Mismatch)?;
                Some((Sha256::new(), expected))
            }
            _ => None,
        };
        let md5 = content_md5(headers)?.map(|expected| (Checksummer::md5(), expected));
        let header = match options.checksum_headers {
            ChecksumHeaders::DescribeBody => checksum_header(headers)?,
            ChecksumHeaders::DescribeObject => None,
        };
        let trailer = if verified.payload.has_trailer() {
            trailer_checksum(headers)?
        } else {
            None
        };
        let mut checksums: Vec<(ChecksumAlgorithm, Checksummer)> = Vec::new();
        for algorithm in header.iter().map(|(a, _)| *a).chain(trailer) {
            if !checksums.iter().any(|(a, _)| *a == algorithm) {
                checksums.push((algorithm, Checksummer::new(algorithm)));
            }
        }
        let announced_length = match headers.get(X_AMZ_DECODED_CONTENT_LENGTH) {
            None => None,
            Some(_) => Some(decoded_content_length(headers).ok_or_else(|| {
                SignatureError::InvalidArgument(
                    "x-amz-decoded-content-length is not a number".to_owned(),
                )
            })?),
        };
        Ok(Self {
            sha256,
            md5,
            header,
            trailer,
            checksums,
            announced_length,
            length: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.sha256.is_none()
            && self.md5.is_none()
            && self.checksums.is_empty()
            && self.announced_length.is_none()
    }

    fn update(&mut self, data: &[u8]) -> Result<(), SignatureError> {
        self.length += data.len() as u64;
        if let Some(announced) = self.announced_length
            && self.length > announced
        {
            return Err(SignatureError::IncompleteBody(format!(
                "the body is longer than the x-amz-decoded-content-length of {announced}"
            )));
        }
        if let Some((hasher, _)) = &mut self.sha256 {
            hasher.update(data);
        }
        if let Some((hasher, _)) = &mut self.md5 {
            hasher.update(data);
        }
        for (_, hasher) in &mut self.checksums {
            hasher.update(data);
        }
        Ok(())
    }

    /// End of payload: every promise must hold. `trailers` come from the aws-chunked decoder.
    fn finish(self, trailers: &[(String, String)]) -> Result<BodySummary, SignatureError> {
        if let Some(announced) = self.announced_length
            && self.length != announced
        {
            return Err(SignatureError::IncompleteBody(format!(
                "You did not provide the number of bytes specified by the \
                 x-amz-decoded-content-length header ({} of {announced})",
                self.length
            )));
        }
        if let Some((hasher, expected)) = self.sha256
            && hasher.finalize().as_slice() != expected
        {
            return Err(SignatureError::ContentSha256Mismatch);
        }
        if let Some((hasher, expected)) = self.md5
            && hasher.finalize() != expected
        {
            return Err(SignatureError::BadDigest("Content-MD5"));
        }
        for (name, _) in trailers {
            if Some(name.as_str()) != self.trailer.map(ChecksumAlgorithm::header_name) {
                return Err(SignatureError::InvalidRequest(format!(
                    "the trailer {name} was not announced in x-amz-trailer"
                )));
            }
        }
        let trailer_value = match self.trailer {
            None => None,
            Some(algorithm) => {
                let (_, value) = trailers
                    .iter()
                    .find(|(name, _)| name == algorithm.header_name())
                    .ok_or_else(|| {
                        SignatureError::IncompleteBody(format!(
                            "x-amz-trailer announced {} but the body has no such trailer",
                            algorithm.header_name()
                        ))
                    })?;
                Some((algorithm, algorithm.decode_value(value)?))
            }
        };
        let mut reported = None;
        for (algorithm, hasher) in self.checksums {
            let computed = hasher.finalize();
            for (expected_algorithm, expected) in self.header.iter().chain(trailer_value.iter()) {
                if *expected_algorithm == algorithm && *expected != computed {
                    return Err(SignatureError::BadDigest(algorithm.name()));
                }
            }
            reported.get_or_insert((algorithm, BASE64.encode(&computed)));
        }
        Ok(BodySummary {
            length: self.length,
            checksum: reported,
        })
    }
}

/// The checksum trailer announced by `x-amz-trailer`, if any.
fn trailer_checksum(headers: &HeaderMap) -> Result<Option<ChecksumAlgorithm>, SignatureError> {
    let Some(value) = headers.get(X_AMZ_TRAILER) else {
        return Ok(None);
    };
    let name = value.to_str().unwrap_or("").trim();
    if name.is_empty() {
        return Ok(None);
    }
    ChecksumAlgorithm::from_header_name(name)
        .map(Some)
        .ok_or_else(|| {
            SignatureError::InvalidRequest(format!(
                "x-amz-trailer \"{name}\" is not supported; the trailer must be one of \
                 x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1 or -sha256"
            ))
        })
}

/// Builds the verifying stream (see [`verified_body_with`](super::verified_body_with)).
pub(super) fn verifying_body(
    body: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    verified: &Verified,
    headers: &HeaderMap,
    options: &BodyOptions,
) -> Result<(BodyStream, BodyOutcome), SignatureError> {
    let checks = PayloadChecks::new(verified, headers, options)?;
    let outcome = BodyOutcome {
        summary: Arc::default(),
        content_md5: checks.md5.as_ref().map(|(_, expected)| *expected),
    };
    let decoder = verified.payload.is_streaming().then(|| {
        ChunkedDecoder::new(ChunkedFraming {
            signing: match verified.payload {
                PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer => {
                    Some(verified.chunk_signing.clone())
                }
                _ => None,
            },
            trailer: verified.payload.has_trailer(),
        })
    });
    if decoder.is_none() && checks.is_empty() {
        let passthrough = PassThrough {
            inner: Box::pin(body),
            length: 0,
            outcome: outcome.clone(),
        };
        return Ok((Box::pin(passthrough), outcome));
    }
    let stream = VerifyingBody {
        inner: Box::pin(body),
        decoder,
        checks: Some(checks),
        ready: VecDeque::new(),
        ended: false,
        outcome: outcome.clone(),
    };
    Ok((Box::pin(stream), outcome))
}

/// Nothing to verify: only counts, to fill in the outcome.
struct PassThrough {
    inner: BodyStream,
    length: u64,
    outcome: BodyOutcome,
}

impl Stream for PassThrough {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = std::task::ready!(this.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(bytes)) => this.length += bytes.len() as u64,
            Some(Err(_)) => {}
            None => {
                if let Ok(mut summary) = this.outcome.summary.lock() {
                    *summary = Some(BodySummary {
                        length: this.length,
                        checksum: None,
                    });
                }
            }
        }
        Poll::Ready(item)
    }
}

struct VerifyingBody {
    inner: BodyStream,
    decoder: Option<ChunkedDecoder>,
    /// `None` once finished.
    checks: Option<PayloadChecks>,
    /// Decoded, already-checked data waiting to be yielded.
    ready: VecDeque<Bytes>,
    ended: bool,
    outcome: BodyOutcome,
}

impl VerifyingBody {
    fn accept(&mut self, bytes: Bytes) -> Result<(), SignatureError> {
        let mut decoded = Vec::new();
        match &mut self.decoder {
            Some(decoder) => decoder.push(bytes, &mut decoded)?,
            None => decoded.push(bytes),
        }
        let checks = self.checks.as_mut().expect("checks live until the end");
        for piece in decoded.into_iter().filter(|b| !b.is_empty()) {
            checks.update(&piece)?;
            self.ready.push_back(piece);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SignatureError> {
        let trailers = match self.decoder.take() {
            Some(decoder) => decoder.finish()?,
            None => Vec::new(),
        };
        let checks = self.checks.take().expect("finished once");
        let summary = checks.finish(&trailers)?;
        if let Ok(mut slot) = self.outcome.summary.lock() {
            *slot = Some(summary);
        }
        Ok(())
    }

    fn fail(&mut self, error: SignatureError) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.ended = true;
        self.ready.clear();
        self.decoder = None;
        self.checks = None;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Stream for VerifyingBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(bytes)) => {
                    if let Err(error) = this.accept(bytes) {
                        return this.fail(error);
                    }
                }
                Some(Err(error)) => {
                    this.ended = true;
                    this.ready.clear();
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.ended = true;
                    if let Err(error) = this.finish() {
                        return this.fail(error);
                    }
                }
            }
        }
    }
}
