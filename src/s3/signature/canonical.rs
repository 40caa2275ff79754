//! The S3 flavour of the SigV4 canonical request.
//!
//! Owns: canonicalising what was received — the path (each segment percent-decoded, then
//! URI-encoded once), the query (decoded, re-encoded, sorted), the signed headers (values
//! trimmed, inner whitespace collapsed) — and assembling the canonical request. Must not:
//! decide which headers have to be signed or touch secrets.

use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};

/// Everything but the RFC 3986 unreserved characters is encoded, as `%XX` with upper-case hex.
const S3_URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// URI-encodes bytes with the SigV4 rules (`/` included).
pub(super) fn uri_encode(bytes: &[u8]) -> String {
    percent_encode(bytes, S3_URI_ENCODE).to_string()
}

/// The canonical URI of a raw (percent-encoded, as received) path: each `/`-separated segment
/// is decoded and encoded once, so `/test$file.text` and `/test%24file.text` both become
/// `/test%24file.text`, and an encoded `%2F` inside a segment stays `%2F`. S3 does not
/// normalise `.`/`..` or repeated slashes, and neither does this.
pub(super) fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() || raw_path == "/" {
        return "/".to_owned();
    }
    let encoded = raw_path
        .split('/')
        .map(|segment| uri_encode(&percent_decode_str(segment).collect::<Vec<u8>>()))
        .collect::<Vec<_>>()
        .join("/");
    if encoded.starts_with('/') {
        encoded
    } else {
        format!("/{encoded}")
    }
}

/// Splits a raw query into decoded `(name, value)` pairs, in order. A parameter without `=`
/// has an empty value. `+` is a literal plus (RFC 3986), not a space: SigV4 clients encode a
/// space as `%20`.
pub(super) fn decode_query(raw_query: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw_query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(name).collect(),
                percent_decode_str(value).collect(),
            )
        })
        .collect()
}

/// The canonical query string: every parameter re-encoded, sorted by encoded name then encoded
/// value, joined as `name=value` with `&`. `X-Amz-Signature` is left out when `skip_signature`
/// (presigned URLs sign everything but their own signature).
pub(super) fn canonical_query(raw_query: Option<&str>, skip_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = decode_query(raw_query)
        .into_iter()
        .filter(|(name, _)| !(skip_signature && name == super::QUERY_SIGNATURE.as_bytes()))
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as text. Valid UTF-8 is taken as is; anything else is read as Latin-1, the
/// way Python's `http.client` puts non-ASCII `str` values on the wire (so botocore, which signs
/// the `str`, still matches).
fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The canonical value of one header: all its values, each trimmed with inner whitespace runs
/// collapsed to one space, joined with `,`. An absent header has the empty value.
pub(super) fn canonical_header_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|value| {
            header_text(value.as_bytes())
                .split_ascii_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a `SignedHeaders` list (`host;range;x-amz-date`) into lower-case, sorted, unique
/// names, as they appear in the canonical request. Rejects empty or invalid names.
pub(super) fn parse_signed_headers(
    value: &str,
    source: super::AuthSource,
) -> Result<Vec<String>, super::SignatureError> {
    let mut names: Vec<String> = value
        .split(';')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = names
        .iter()
        .find(|name| name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err())
    {
        return Err(source.malformed(format!("invalid signed header name \"{bad}\"")));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The inputs of a canonical request that are not in the request line or headers.
pub(super) struct CanonicalInputs<'a> {
    pub(super) method: &'a Method,
    pub(super) raw_path: &'a str,
    pub(super) raw_query: Option<&'a str>,
    pub(super) headers: &'a HeaderMap,
    /// Lower-case, sorted, de-duplicated.
    pub(super) signed_headers: &'a [String],
    /// The last line: a hex SHA-256, `UNSIGNED-PAYLOAD` or a `STREAMING-*` literal.
    pub(super) payload: &'a str,
    pub(super) presigned: bool,
}

/// ```text
/// <method>\n<canonical uri>\n<canonical query>\n<name:value\n for each signed header>\n
/// <signed header names joined by ;>\n<payload>
/// ```
pub(super) fn canonical_request(inputs: &CanonicalInputs<'_>) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(inputs.method.as_str());
    out.push('\n');
    out.push_str(&canonical_uri(inputs.raw_path));
    out.push('\n');
    out.push_str(&canonical_query(inputs.raw_query, inputs.presigned));
    out.push('\n');
    for name in inputs.signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(inputs.headers, name));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&inputs.signed_headers.join(";"));
    out.push('\n');
    out.push_str(inputs.payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn path_segments_are_decoded_then_encoded_once() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/test$file.text"), "/test%24file.text");
        assert_eq!(canonical_uri("/test%24file.text"), "/test%24file.text");
        assert_eq!(canonical_uri("/b/a%20key+x"), "/b/a%20key%2Bx");
        assert_eq!(canonical_uri("/b/a%2Fb"), "/b/a%2Fb");
        assert_eq!(canonical_uri("/b//c/"), "/b//c/");
        assert_eq!(canonical_uri("/b/%E2%82%AC~._-"), "/b/%E2%82%AC~._-");
        assert_eq!(canonical_uri("/b/\u{20ac}"), "/b/%E2%82%AC");
        // A stray `%` that is not an escape is itself encoded.
        assert_eq!(canonical_uri("/b/100%"), "/b/100%25");
    }

    #[test]
    fn query_is_reencoded_and_sorted_by_name_then_value() {
        assert_eq!(canonical_query(None, false), "");
        assert_eq!(canonical_query(Some("lifecycle"), false), "lifecycle=");
        assert_eq!(
            canonical_query(Some("prefix=J&max-keys=2"), false),
            "max-keys=2&prefix=J"
        );
        assert_eq!(
            canonical_query(Some("b=2&a=x%20y&a=1&c=%7e+"), false),
            "a=1&a=x%20y&b=2&c=~%2B"
        );
        assert_eq!(
            canonical_query(Some("X-Amz-Signature=abc&uploads"), true),
            "uploads="
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-meta-a", HeaderValue::from_static("  a   b \t c  "));
        headers.append("x-amz-meta-b", HeaderValue::from_static("one"));
        headers.append("x-amz-meta-b", HeaderValue::from_static(" two "));
        headers.insert(
            "x-amz-meta-latin1",
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert_eq!(canonical_header_value(&headers, "x-amz-meta-a"), "a b c");
        assert_eq!(canonical_header_value(&headers, "x-amz-meta-b"), "one,two");
        assert_eq!(
            canonical_header_value(&headers, "x-amz-meta-latin1"),
            "caf\u{e9}"
        );
        assert_eq!(canonical_header_value(&headers, "absent"), "");
    }
}
