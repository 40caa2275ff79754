//! The S3 proxy's one error type. Each variant knows its S3 error code and HTTP status, and
//! renders the S3 XML error body; storage, signature and credential errors convert into it.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::credentials::CredentialError;
use super::signature::SignatureError;
use super::xml;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("The AWS access key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    #[error("The provided token has expired.")]
    ExpiredToken,
    #[error("Access Denied: {0}")]
    AccessDenied(String),
    #[error(
        "the authorization header is malformed; the region '{got}' is wrong; expecting '{expected}'"
    )]
    WrongRegion { got: String, expected: String },
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    #[error(
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )]
    NoSuchUpload,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("The requested range is not satisfiable")]
    InvalidRange { size: u64 },
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    #[error(
        "A header or operation you provided implies functionality that is not implemented: {0}"
    )]
    NotImplemented(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema: {0}"
    )]
    MalformedXml(String),
    #[error("{0}")]
    IncompleteBody(String),
    #[error("{0}")]
    Conflict(String),
    #[error("The backend is unavailable: {0}")]
    ServiceUnavailable(String),
    #[error("We encountered an internal error. Please try again.")]
    Internal(String),
}

impl S3Error {
    pub fn code(&self) -> &'static str {
        match self {
            S3Error::Signature(e) => e.s3_code(),
            S3Error::InvalidAccessKeyId => "InvalidAccessKeyId",
            S3Error::ExpiredToken => "ExpiredToken",
            S3Error::AccessDenied(_) => "AccessDenied",
            S3Error::WrongRegion { .. } => "AuthorizationHeaderMalformed",
            S3Error::NoSuchBucket => "NoSuchBucket",
            S3Error::NoSuchKey => "NoSuchKey",
            S3Error::NoSuchUpload => "NoSuchUpload",
            S3Error::InvalidArgument(_) => "InvalidArgument",
            S3Error::InvalidRange { .. } => "InvalidRange",
            S3Error::PreconditionFailed => "PreconditionFailed",
            S3Error::MethodNotAllowed => "MethodNotAllowed",
            S3Error::NotImplemented(_) => "NotImplemented",
            S3Error::InvalidPart(_) => "InvalidPart",
            S3Error::MalformedXml(_) => "MalformedXML",
            S3Error::IncompleteBody(_) => "IncompleteBody",
            S3Error::Conflict(_) => "InvalidArgument",
            S3Error::ServiceUnavailable(_) => "ServiceUnavailable",
            S3Error::Internal(_) => "InternalError",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            S3Error::Signature(e) => e.status(),
            S3Error::InvalidAccessKeyId | S3Error::ExpiredToken | S3Error::AccessDenied(_) => {
                StatusCode::FORBIDDEN
            }
            S3Error::NoSuchBucket | S3Error::NoSuchKey | S3Error::NoSuchUpload => {
                StatusCode::NOT_FOUND
            }
            S3Error::InvalidRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            S3Error::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            S3Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            S3Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            S3Error::Conflict(_) => StatusCode::CONFLICT,
            S3Error::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            S3Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            S3Error::WrongRegion { .. }
            | S3Error::InvalidArgument(_)
            | S3Error::InvalidPart(_)
            | S3Error::MalformedXml(_)
            | S3Error::IncompleteBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The S3 error response. `resource` is the request path; HEAD responses carry no body.
    pub fn into_response(self, resource: &str, request_id: &str, head: bool) -> Response {
        if let S3Error::Internal(detail) = &self {
            tracing::error!(%detail, resource, "internal error in the S3 proxy");
        }
        let status = self.status();
        let mut builder = Response::builder()
            .status(status)
            .header("x-amz-request-id", request_id)
            .header("x-amz-error-code", self.code());
        if let S3Error::InvalidRange { size } = self {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes */{size}"));
        }
        let body = if head {
            Body::empty()
        } else {
            let message = self.to_string();
            let xml = xml::to_xml(
                "Error",
                &xml::Error {
                    code: self.code(),
                    message: &message,
                    resource,
                    request_id,
                },
            );
            builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            Body::from(xml)
        };
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<StorageError> for S3Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) => S3Error::NoSuchKey,
            StorageError::NoSuchUpload(_) => S3Error::NoSuchUpload,
            StorageError::PreconditionFailed => S3Error::PreconditionFailed,
            StorageError::InvalidKey(k) => S3Error::InvalidArgument(k.to_string()),
            StorageError::InvalidPart(m) => S3Error::InvalidPart(m),
            StorageError::InvalidRange { size } => S3Error::InvalidRange { size },
            StorageError::Conflict(m) => S3Error::Conflict(m),
            StorageError::IncompleteBody { expected, actual } => S3Error::IncompleteBody(format!(
                "the body was {actual} bytes, {expected} were announced"
            )),
            StorageError::Upstream(m) => S3Error::ServiceUnavailable(m),
            StorageError::Io(io) => match SignatureError::from_io(&io) {
                // The body failed verification while it was being stored: nothing was kept.
                Some(sig) => S3Error::Signature(sig.clone()),
                None => S3Error::Internal(io.to_string()),
            },
        }
    }
}

impl From<CredentialError> for S3Error {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Invalid => S3Error::InvalidAccessKeyId,
            CredentialError::Expired => S3Error::ExpiredToken,
            CredentialError::BadScope(m) => S3Error::AccessDenied(m),
        }
    }
}
