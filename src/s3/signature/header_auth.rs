//! Authentication by `Authorization` header:
//! `AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/s3/aws4_request, SignedHeaders=a;b,
//! Signature=<hex>`, and the request time that goes with it (`x-amz-date`, else `Date`).
//!
//! Owns: parsing the header and the time. Must not: check the time against a clock or compute
//! signatures (that is `verify`'s job, with the secret).

use http::HeaderMap;

use super::canonical::parse_signed_headers;
use super::scope::{Credential, RequestTime, parse_signature_hex};
use super::{ALGORITHM, AuthSource, DATE, SignatureError, X_AMZ_DATE};

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderAuth {
    pub(super) credential: Credential,
    pub(super) signed_headers: Vec<String>,
    pub(super) signature: [u8; 32],
}

const SOURCE: AuthSource = AuthSource::Header;

/// Parses the `Authorization` header value. Other schemes (SigV2 `AWS `, SigV4a) are
/// [`SignatureError::UnsupportedAuthorization`].
pub(super) fn parse_authorization(value: &[u8]) -> Result<HeaderAuth, SignatureError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| SOURCE.malformed("the header is not valid UTF-8"))?
        .trim();
    let (algorithm, rest) = text.split_once(' ').unwrap_or((text, ""));
    if algorithm != ALGORITHM {
        return Err(SignatureError::UnsupportedAuthorization);
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let Some((key, value)) = component.split_once('=') else {
            return Err(SOURCE.malformed(format!("\"{component}\" is not of the form key=value")));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => return Err(SOURCE.malformed(format!("unknown component \"{other}\""))),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(SOURCE.malformed(format!("\"{}\" is given twice", key.trim())));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(SOURCE.malformed("Credential, SignedHeaders and Signature are all required"));
    };
    Ok(HeaderAuth {
        credential: Credential::parse(credential, SOURCE)?,
        signed_headers: parse_signed_headers(signed_headers, SOURCE)?,
        signature: parse_signature_hex(signature)
            .ok_or_else(|| SOURCE.malformed("the Signature is not 64 hex digits"))?,
    })
}

/// The request time of a header-authenticated request and the header that carried it:
/// `x-amz-date` if present, else `Date`.
pub(super) fn request_time(
    headers: &HeaderMap,
) -> Result<(RequestTime, &'static str), SignatureError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = headers.get(X_AMZ_DATE) {
        let time = value
            .to_str()
            .ok()
            .and_then(|v| RequestTime::parse_amz(v.trim()))
            .ok_or(SignatureError::MissingDate)?;
        return Ok((time, X_AMZ_DATE));
    }
    text(DATE)
        .and_then(|v| RequestTime::parse_http(v.trim()))
        .map(|time| (time, DATE))
        .ok_or(SignatureError::MissingDate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    fn header(credential: &str, signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={signature}"
        )
    }

    #[test]
    fn parses_with_or_without_spaces_after_commas() {
        let spaced = header(
            "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            "host;range;x-amz-content-sha256;x-amz-date",
            SIG,
        );
        let tight = spaced.replace(", ", ",");
        for text in [spaced, tight] {
            let auth = parse_authorization(text.as_bytes()).unwrap();
            assert_eq!(auth.credential.access_key_id, "AKIAIOSFODNN7EXAMPLE");
            assert_eq!(auth.credential.date, "20130524");
            assert_eq!(auth.credential.region, "us-east-1");
            assert_eq!(auth.credential.service, "s3");
            assert_eq!(
                auth.signed_headers,
                ["host", "range", "x-amz-content-sha256", "x-amz-date"]
            );
            assert_eq!(hex::encode(auth.signature), SIG);
        }
    }

    #[test]
    fn rejects_malformed_headers() {
        let credential = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";
        let malformed = [
            header(credential, "host", "abc"),
            header(credential, "host;;x-amz-date", SIG),
            header("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3", "host", SIG),
            header(
                "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws5_request",
                "host",
                SIG,
            ),
            header(
                "AKIAIOSFODNN7EXAMPLE/2013052/us-east-1/s3/aws4_request",
                "host",
                SIG,
            ),
            header(
                "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/iam/aws4_request",
                "host",
                SIG,
            ),
            format!("AWS4-HMAC-SHA256 Credential={credential}, Signature={SIG}"),
            format!(
                "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature={SIG}, Signature={SIG}"
            ),
            format!(
                "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature={SIG}, Extra=1"
            ),
            format!("AWS4-HMAC-SHA256 Credential={credential} SignedHeaders=host Signature={SIG}"),
        ];
        for text in malformed {
            let err = parse_authorization(text.as_bytes()).unwrap_err();
            assert_eq!(
                err.s3_code(),
                "AuthorizationHeaderMalformed",
                "{text}: {err}"
            );
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for text in [
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
            "AWS4-ECDSA-P256-SHA256 Credential=a/20130524/s3/aws4_request, SignedHeaders=host, Signature=00",
            "Bearer token",
        ] {
            assert_eq!(
                parse_authorization(text.as_bytes()),
                Err(SignatureError::UnsupportedAuthorization)
            );
        }
    }

    #[test]
    fn request_time_prefers_x_amz_date_then_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_time(&headers), Err(SignatureError::MissingDate));
        headers.insert(DATE, "Fri, 24 May 2013 00:00:00 GMT".parse().unwrap());
        let (time, from) = request_time(&headers).unwrap();
        assert_eq!((time.amz.as_str(), from), ("20130524T000000Z", DATE));
        headers.insert(X_AMZ_DATE, "20130524T010203Z".parse().unwrap());
        let (time, from) = request_time(&headers).unwrap();
        assert_eq!((time.amz.as_str(), from), ("20130524T010203Z", X_AMZ_DATE));
        headers.insert(X_AMZ_DATE, "2013-05-24T01:02:03Z".parse().unwrap());
        assert_eq!(request_time(&headers), Err(SignatureError::MissingDate));
    }
}
