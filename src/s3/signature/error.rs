//! The one error type of SigV4 verification, and its S3 wire form (`s3_code`, `status`).
//!
//! Owns: every way a request can fail authentication or payload verification. Must not: render
//! XML or know about HTTP responses beyond the status code; the proxy's S3 error type does that.

use std::io;
use std::time::SystemTime;

use http::StatusCode;

/// Why a request failed SigV4 verification. Each variant knows its S3 error code and status.
///
/// Body verification failures reach the caller as an [`io::Error`] from the body stream; use
/// [`SignatureError::from_io`] to get the variant back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Neither an `Authorization` header nor query-string authentication: an anonymous request.
    #[error("the request carries no AWS authentication")]
    MissingAuthentication,
    /// SigV2, SigV4a or an unknown scheme.
    #[error(
        "the authorization mechanism you have provided is not supported; please use AWS4-HMAC-SHA256"
    )]
    UnsupportedAuthorization,
    /// Both an `Authorization` header and query-string authentication.
    #[error(
        "only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the \
         Authorization header should be specified"
    )]
    ConflictingAuthentication,
    #[error("the authorization header is malformed; {0}")]
    AuthorizationHeaderMalformed(String),
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    /// Header authentication without a usable `x-amz-date` (or `Date`) header.
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    /// `host`, or an `x-amz-*` header that is present, is not in the signed headers.
    #[error("there were headers present in the request which were not signed: {}", .0.join(", "))]
    HeadersNotSigned(Vec<String>),
    /// The request (or a chunk, or the trailer) signature is wrong. For the request signature,
    /// carries what S3 echoes back to help a client debug its signer (nothing secret).
    #[error(
        "the request signature we calculated does not match the signature you provided; \
         check your key and signing method"
    )]
    SignatureDoesNotMatch(Option<Box<SignatureMismatch>>),
    #[error("the difference between the request time and the server's time is too large")]
    RequestTimeTooSkewed {
        request_time: SystemTime,
        server_time: SystemTime,
    },
    /// A presigned URL past its `X-Amz-Expires`.
    #[error("request has expired")]
    RequestExpired,
    /// A presigned URL whose `X-Amz-Date` is further in the future than the allowed skew.
    #[error("request is not valid yet")]
    RequestNotYetValid,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The body does not hash to the signed `x-amz-content-sha256`.
    #[error("the provided 'x-amz-content-sha256' header does not match what was computed")]
    ContentSha256Mismatch,
    /// The body does not match `Content-MD5` or an `x-amz-checksum-*` value; carries which.
    #[error("the {0} you specified did not match the calculated checksum")]
    BadDigest(&'static str),
    /// `Content-MD5` is not base64 of 16 bytes.
    #[error("the Content-MD5 you specified is not valid")]
    InvalidDigest,
    /// The body ended early, or does not have the announced decoded length.
    #[error("{0}")]
    IncompleteBody(String),
    /// The aws-chunked framing is broken (bad chunk header, missing CRLF, oversize chunk...).
    #[error("malformed aws-chunked body: {0}")]
    MalformedChunk(String),
}

/// What S3 returns with `SignatureDoesNotMatch` so a client can compare with its own signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureMismatch {
    pub access_key_id: String,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature_provided: String,
}

impl SignatureError {
    /// The S3 `<Code>` for this error.
    pub fn s3_code(&self) -> &'static str {
        match self {
            Self::MissingAuthentication
            | Self::MissingDate
            | Self::HeadersNotSigned(_)
            | Self::RequestExpired
            | Self::RequestNotYetValid => "AccessDenied",
            Self::UnsupportedAuthorization | Self::InvalidRequest(_) | Self::MalformedChunk(_) => {
                "InvalidRequest"
            }
            Self::ConflictingAuthentication | Self::InvalidArgument(_) => "InvalidArgument",
            Self::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            Self::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Self::RequestTimeTooSkewed { .. } => "RequestTimeTooSkewed",
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            Self::BadDigest(_) => "BadDigest",
            Self::InvalidDigest => "InvalidDigest",
            Self::IncompleteBody(_) => "IncompleteBody",
        }
    }

    /// The HTTP status S3 answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingAuthentication
            | Self::MissingDate
            | Self::HeadersNotSigned(_)
            | Self::SignatureDoesNotMatch(_)
            | Self::RequestTimeTooSkewed { .. }
            | Self::RequestExpired
            | Self::RequestNotYetValid => StatusCode::FORBIDDEN,
            Self::UnsupportedAuthorization
            | Self::ConflictingAuthentication
            | Self::AuthorizationHeaderMalformed(_)
            | Self::AuthorizationQueryParametersError(_)
            | Self::InvalidRequest(_)
            | Self::InvalidArgument(_)
            | Self::ContentSha256Mismatch
            | Self::BadDigest(_)
            | Self::InvalidDigest
            | Self::IncompleteBody(_)
            | Self::MalformedChunk(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The verification error inside an error yielded by a [`verified_body`] stream, if it is
    /// one (other errors are the transport's: a reset connection, a timeout...).
    ///
    /// [`verified_body`]: super::verified_body
    pub fn from_io(error: &io::Error) -> Option<&SignatureError> {
        error.get_ref()?.downcast_ref::<SignatureError>()
    }
}

impl From<SignatureError> for io::Error {
    fn from(error: SignatureError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}
