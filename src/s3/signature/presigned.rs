//! Authentication by query string (presigned URLs): `X-Amz-Algorithm`, `X-Amz-Credential`,
//! `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` (and optionally
//! `X-Amz-Content-Sha256`, `X-Amz-Security-Token`, which are simply signed with the rest).
//!
//! Owns: recognising and parsing those parameters. Must not: check expiry against a clock or
//! compute signatures (that is `verify`'s job).

use std::time::Duration;

use super::canonical::parse_signed_headers;
use super::scope::{Credential, RequestTime, parse_signature_hex};
use super::{
    ALGORITHM, AuthSource, QUERY_ALGORITHM, QUERY_CONTENT_SHA256, QUERY_CREDENTIAL, QUERY_DATE,
    QUERY_EXPIRES, QUERY_SIGNATURE, QUERY_SIGNED_HEADERS, SignatureError,
};

/// The parsed presigning parameters of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QueryAuth {
    pub(super) credential: Credential,
    pub(super) signed_headers: Vec<String>,
    pub(super) signature: [u8; 32],
    pub(super) time: RequestTime,
    pub(super) expires: Duration,
    /// `X-Amz-Content-Sha256`, when the presigner put the payload hash in the URL.
    pub(super) content_sha256: Option<String>,
}

const SOURCE: AuthSource = AuthSource::Query;

/// A decoded query: `(name, value)` byte pairs in order.
type Params = [(Vec<u8>, Vec<u8>)];

fn has(params: &Params, name: &str) -> bool {
    params.iter().any(|(n, _)| n == name.as_bytes())
}

/// Whether the query carries SigV4 authentication (any of the identifying parameters).
pub(super) fn has_query_auth(params: &Params) -> bool {
    [QUERY_ALGORITHM, QUERY_CREDENTIAL, QUERY_SIGNATURE]
        .iter()
        .any(|name| has(params, name))
}

/// Whether the query carries SigV2 authentication (`AWSAccessKeyId` + `Signature`).
pub(super) fn has_sigv2_query_auth(params: &Params) -> bool {
    has(params, "AWSAccessKeyId") && has(params, "Signature")
}

/// The single value of a parameter; a repeated authentication parameter is an error.
fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, SignatureError> {
    let mut found = params.iter().filter(|(n, _)| n == name.as_bytes());
    let Some((_, value)) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(SOURCE.malformed(format!("{name} is given more than once")));
    }
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| SOURCE.malformed(format!("{name} is not valid UTF-8")))
}

pub(super) fn parse_query_auth(params: &Params) -> Result<QueryAuth, SignatureError> {
    let required = |name| {
        single(params, name)?.ok_or_else(|| {
            SOURCE.malformed(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, \
                 X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, \
                 and X-Amz-Expires parameters.",
            )
        })
    };
    let algorithm = required(QUERY_ALGORITHM)?;
    let credential = required(QUERY_CREDENTIAL)?;
    let signature = required(QUERY_SIGNATURE)?;
    let date = required(QUERY_DATE)?;
    let signed_headers = required(QUERY_SIGNED_HEADERS)?;
    let expires = required(QUERY_EXPIRES)?;
    if algorithm != ALGORITHM {
        return Err(SOURCE.malformed(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let time = RequestTime::parse_amz(date).ok_or_else(|| {
        SOURCE.malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    let expires = expires
        .parse::<u64>()
        .map_err(|_| SOURCE.malformed("X-Amz-Expires should be a non-negative number"))?;
    Ok(QueryAuth {
        credential: Credential::parse(credential, SOURCE)?,
        signed_headers: parse_signed_headers(signed_headers, SOURCE)?,
        signature: parse_signature_hex(signature)
            .ok_or_else(|| SOURCE.malformed("X-Amz-Signature is not 64 hex digits"))?,
        time,
        expires: Duration::from_secs(expires),
        content_sha256: single(params, QUERY_CONTENT_SHA256)?.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::super::canonical::decode_query;
    use super::*;

    const EXAMPLE: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn parses_the_documented_presigned_url() {
        let params = decode_query(Some(EXAMPLE));
        assert!(has_query_auth(&params));
        let auth = parse_query_auth(&params).unwrap();
        assert_eq!(auth.credential.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            auth.credential.scope(),
            "20130524/us-east-1/s3/aws4_request"
        );
        assert_eq!(auth.signed_headers, ["host"]);
        assert_eq!(auth.time.amz, "20130524T000000Z");
        assert_eq!(auth.expires, Duration::from_secs(86400));
        assert_eq!(auth.content_sha256, None);
    }

    #[test]
    fn rejects_incomplete_or_odd_parameters() {
        let cases = [
            EXAMPLE.replace("&X-Amz-Expires=86400", ""),
            EXAMPLE.replace(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256",
                "X-Amz-Algorithm=AWS4-HMAC-SHA1",
            ),
            EXAMPLE.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
            EXAMPLE.replace("X-Amz-Expires=86400", "X-Amz-Expires=-1"),
            EXAMPLE.replace("%2Fs3%2F", "%2Fsqs%2F"),
            format!("{EXAMPLE}&X-Amz-Date=20130524T000000Z"),
        ];
        for query in cases {
            let err = parse_query_auth(&decode_query(Some(&query))).unwrap_err();
            assert_eq!(
                err.s3_code(),
                "AuthorizationQueryParametersError",
                "{query}: {err}"
            );
        }
    }

    #[test]
    fn recognises_sigv2_query_auth() {
        let params = decode_query(Some("AWSAccessKeyId=AKIA&Expires=1&Signature=abc"));
        assert!(!has_query_auth(&params));
        assert!(has_sigv2_query_auth(&params));
    }
}
