//! End-to-end tests of `parse` → `verify` → `verified_body`: the worked examples of the AWS S3
//! SigV4 documentation with their published canonical requests, strings to sign and
//! signatures, then negative cases and streaming in arbitrary pieces.
//!
//! The published examples use access key `AKIAIOSFODNN7EXAMPLE`, secret
//! `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`, region `us-east-1` and time 20130524T000000Z
//! ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
//! Chunk", "... in Multiple Chunks", "Signature calculations for trailing headers",
//! "Authenticating Requests: Using Query Parameters").

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, executor::block_on, stream};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::canonical::{CanonicalInputs, canonical_request};
use super::checksum::ChecksumAlgorithm;
use super::scope::{SigningKey, sha256_hex, string_to_sign};
use super::*;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
const STAMP: &str = "20130524T000000Z";
const EXAMPLE_HOST: &str = "examplebucket.s3.amazonaws.com";

/// 2013-05-24T00:00:00Z, the time of every documented example.
fn may_24() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_369_353_600)
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{SCOPE},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// A request as the proxy sees it.
struct Request {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Request {
    fn new(method: Method, path: &str, query: Option<&str>, headers: HeaderMap) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers,
        }
    }

    fn parse(&self) -> Result<ParsedAuth, SignatureError> {
        parse(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
        )
    }

    fn verify_at(&self, secret: &str, now: SystemTime) -> Result<Verified, SignatureError> {
        let parsed = self.parse()?;
        verify(
            &parsed,
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            secret,
            now,
            &VerifyPolicy::default(),
        )
    }

    fn verify(&self) -> Result<Verified, SignatureError> {
        self.verify_at(SECRET, may_24())
    }

    /// The canonical request and string to sign the verifier builds for this request.
    fn canonical(&self) -> (String, String) {
        let parsed = self.parse().unwrap();
        let payload = payload_line(&parsed, &self.headers).unwrap();
        let canonical = canonical_request(&CanonicalInputs {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
            signed_headers: &parsed.signed_headers,
            payload: &payload,
            presigned: parsed.is_presigned(),
        });
        let sts = string_to_sign(&parsed.time.amz, &parsed.credential.scope(), &canonical);
        (canonical, sts)
    }
}

/// Checks a documented example: exact canonical request, exact string to sign, and that the
/// published signature verifies.
fn assert_documented(request: &Request, canonical: &str, sts: &str) -> Verified {
    let (got_canonical, got_sts) = request.canonical();
    assert_eq!(got_canonical, canonical);
    assert_eq!(got_sts, sts);
    let verified = request.verify().expect("the published signature verifies");
    assert_eq!(verified.access_key_id(), AKID);
    assert_eq!(verified.region(), "us-east-1");
    verified
}

fn collect(stream: BodyStream) -> Result<Vec<u8>, io::Error> {
    block_on(async move {
        let mut stream = stream;
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    })
}

/// Runs `body`, cut into pieces of the given sizes (cycled), through `verified_body`.
fn run_body(
    verified: &Verified,
    headers: &HeaderMap,
    body: &[u8],
    sizes: &[usize],
) -> Result<Vec<u8>, io::Error> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size.max(&1)).min(body.len());
        pieces.push(Ok(Bytes::copy_from_slice(&body[at..end])));
        at = end;
    }
    let stream =
        verified_body(stream::iter(pieces), verified, headers).expect("body verification set up");
    collect(stream)
}

fn body_error(result: Result<Vec<u8>, io::Error>) -> SignatureError {
    let error = result.expect_err("the body must fail verification");
    SignatureError::from_io(&error)
        .cloned()
        .expect("the io::Error wraps a SignatureError")
}

/// Deterministic piece sizes between 1 and `max` (xorshift).
fn random_sizes(seed: u64, count: usize, max: usize) -> Vec<usize> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max as u64) as usize + 1
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The documented single-chunk examples.

#[test]
fn aws_example_get_object() {
    let request = Request::new(
        Method::GET,
        "/test.txt",
        None,
        header_map(&[
            ("host", EXAMPLE_HOST),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", STAMP),
            (
                "authorization",
                &authorization(
                    "host;range;x-amz-content-sha256;x-amz-date",
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                ),
            ),
        ]),
    );
    let verified = assert_documented(
        &request,
        "GET\n\
         /test.txt\n\
         \n\
         host:examplebucket.s3.amazonaws.com\n\
         range:bytes=0-9\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\
         \n\
         host;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256\n\
         20130524T000000Z\n\
         20130524/us-east-1/s3/aws4_request\n\
         7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    );
    assert_eq!(
        verified.payload_mode(),
        &PayloadMode::Sha256(EMPTY_SHA256.to_owned())
    );
    assert!(!verified.is_presigned());
    assert_eq!(verified.request_time(), may_24());
    assert_eq!(
        run_body(&verified, &request.headers, b"", &[1]).unwrap(),
        b""
    );
}

fn put_object_request(path: &str) -> Request {
    Request::new(
        Method::PUT,
        path,
        None,
        header_map(&[
            ("host", EXAMPLE_HOST),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", STAMP),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
            (
                "authorization",
                &authorization(
                    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                ),
            ),
        ]),
    )
}

#[test]
fn aws_example_put_object() {
    // The documentation sends the key `test$file.text` as is; a client may also encode `$`.
    for path in ["/test$file.text", "/test%24file.text"] {
        let request = put_object_request(path);
        let verified = assert_documented(
            &request,
            "PUT\n\
             /test%24file.text\n\
             \n\
             date:Fri, 24 May 2013 00:00:00 GMT\n\
             host:examplebucket.s3.amazonaws.com\n\
             x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n\
             x-amz-date:20130524T000000Z\n\
             x-amz-storage-class:REDUCED_REDUNDANCY\n\
             \n\
             date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n\
             44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            "AWS4-HMAC-SHA256\n\
             20130524T000000Z\n\
             20130524/us-east-1/s3/aws4_request\n\
             9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
        );
        let body = b"Welcome to Amazon S3.";
        for sizes in [&[1][..], &[5, 2, 9], &[1000]] {
            assert_eq!(
                run_body(&verified, &request.headers, body, sizes).unwrap(),
                body
            );
        }
    }
}

#[test]
fn put_object_with_another_body_fails_at_eof() {
    let request = put_object_request("/test$file.text");
    let verified = request.verify().unwrap();
    for body in [&b"Welcome to Amazon S3!"[..], b"Welcome to Amazon S3", b""] {
        let error = body_error(run_body(&verified, &request.headers, body, &[3]));
        assert_eq!(error, SignatureError::ContentSha256Mismatch);
        assert_eq!(error.s3_code(), "XAmzContentSHA256Mismatch");
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
    }
}

fn bucket_get(query: &str, signature: &str) -> Request {
    Request::new(
        Method::GET,
        "/",
        Some(query),
        header_map(&[
            ("host", EXAMPLE_HOST),
            ("x-amz-date", STAMP),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "authorization",
                &authorization("host;x-amz-content-sha256;x-amz-date", signature),
            ),
        ]),
    )
}

#[test]
fn aws_example_get_bucket_lifecycle() {
    assert_documented(
        &bucket_get(
            "lifecycle",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        "GET\n\
         /\n\
         lifecycle=\n\
         host:examplebucket.s3.amazonaws.com\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\
         \n\
         host;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256\n\
         20130524T000000Z\n\
         20130524/us-east-1/s3/aws4_request\n\
         9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
    );
}

#[test]
fn aws_example_list_objects() {
    const SIGNATURE: &str = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
    // The query may arrive in any order; the canonical one is sorted.
    for query in ["max-keys=2&prefix=J", "prefix=J&max-keys=2"] {
        assert_documented(
            &bucket_get(query, SIGNATURE),
            "GET\n\
             /\n\
             max-keys=2&prefix=J\n\
             host:examplebucket.s3.amazonaws.com\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\
             \n\
             host;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n\
             20130524T000000Z\n\
             20130524/us-east-1/s3/aws4_request\n\
             df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The documented presigned URL.

const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

fn presigned_get(query: &str) -> Request {
    Request::new(
        Method::GET,
        "/test.txt",
        Some(query),
        header_map(&[("host", EXAMPLE_HOST)]),
    )
}

#[test]
fn aws_example_presigned_url() {
    let request = presigned_get(PRESIGNED_QUERY);
    let verified = assert_documented(
        &request,
        "GET\n\
         /test.txt\n\
         X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n\
         host:examplebucket.s3.amazonaws.com\n\
         \n\
         host\n\
         UNSIGNED-PAYLOAD",
        "AWS4-HMAC-SHA256\n\
         20130524T000000Z\n\
         20130524/us-east-1/s3/aws4_request\n\
         3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
    );
    assert!(verified.is_presigned());
    assert_eq!(verified.payload_mode(), &PayloadMode::Unsigned);
    // Valid until the end of its 86400 seconds, and a little before its date.
    for offset in [0i64, 86_400, -600] {
        let now = if offset >= 0 {
            may_24() + Duration::from_secs(offset as u64)
        } else {
            may_24() - Duration::from_secs(offset.unsigned_abs())
        };
        request.verify_at(SECRET, now).unwrap();
    }
}

#[test]
fn presigned_url_expires() {
    let request = presigned_get(PRESIGNED_QUERY);
    let error = request
        .verify_at(SECRET, may_24() + Duration::from_secs(86_401))
        .unwrap_err();
    assert_eq!(error, SignatureError::RequestExpired);
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("AccessDenied", 403)
    );

    let error = request
        .verify_at(SECRET, may_24() - Duration::from_secs(16 * 60))
        .unwrap_err();
    assert_eq!(error, SignatureError::RequestNotYetValid);

    let parsed = request.parse().unwrap();
    let short = VerifyPolicy {
        max_presigned_expiry: Duration::from_secs(3600),
        ..VerifyPolicy::default()
    };
    let error = verify(
        &parsed,
        &request.method,
        &request.path,
        request.query.as_deref(),
        &request.headers,
        SECRET,
        may_24(),
        &short,
    )
    .unwrap_err();
    assert_eq!(error.s3_code(), "AuthorizationQueryParametersError");
}

#[test]
fn presigned_url_signature_and_headers_are_checked() {
    let tampered = PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=86401");
    let error = presigned_get(&tampered).verify().unwrap_err();
    assert_eq!(error.s3_code(), "SignatureDoesNotMatch");

    let mut request = presigned_get(PRESIGNED_QUERY);
    request
        .headers
        .insert("x-amz-acl", HeaderValue::from_static("public-read"));
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::HeadersNotSigned(vec!["x-amz-acl".to_owned()])
    );

    // An extra (unsigned by the presigner) query parameter breaks the signature.
    let extra = format!("{PRESIGNED_QUERY}&response-content-type=text%2Fplain");
    assert_eq!(
        presigned_get(&extra).verify().unwrap_err().s3_code(),
        "SignatureDoesNotMatch"
    );
}

// ---------------------------------------------------------------------------------------------
// The documented chunked upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

const CHUNK_SIGNATURES: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn chunked_example_request() -> Request {
    Request::new(
        Method::PUT,
        "/examplebucket/chunkObject.txt",
        None,
        header_map(&[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", STAMP),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "authorization",
                &authorization(
                    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
                     x-amz-decoded-content-length;x-amz-storage-class",
                    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
                ),
            ),
            ("x-amz-content-sha256", STREAMING_SIGNED),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ]),
    )
}

/// The 64 KiB + 1 KiB of `a` of the example, framed with the given chunk signatures and tail.
fn chunked_example_body(signatures: [&str; 3], tail: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("10000;chunk-signature={}\r\n", signatures[0]).as_bytes());
    body.extend_from_slice(&[b'a'; 65536]);
    body.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", signatures[1]).as_bytes());
    body.extend_from_slice(&[b'a'; 1024]);
    body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", signatures[2]).as_bytes());
    body.extend_from_slice(tail);
    body
}

#[test]
fn aws_example_chunked_upload() {
    let request = chunked_example_request();
    let verified = assert_documented(
        &request,
        "PUT\n\
         /examplebucket/chunkObject.txt\n\
         \n\
         content-encoding:aws-chunked\n\
         content-length:66824\n\
         host:s3.amazonaws.com\n\
         x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD\n\
         x-amz-date:20130524T000000Z\n\
         x-amz-decoded-content-length:66560\n\
         x-amz-storage-class:REDUCED_REDUNDANCY\n\
         \n\
         content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class\n\
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "AWS4-HMAC-SHA256\n\
         20130524T000000Z\n\
         20130524/us-east-1/s3/aws4_request\n\
         cee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455",
    );
    assert_eq!(verified.payload_mode(), &PayloadMode::StreamingSigned);
    assert_eq!(decoded_content_length(&request.headers), Some(66560));
    assert_eq!(stored_content_encoding(&request.headers), None);

    // The first chunk's string to sign, as published.
    assert_eq!(
        sha256_hex(&[b'a'; 65536]),
        "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a"
    );
    let body = chunked_example_body(CHUNK_SIGNATURES, b"\r\n");
    assert_eq!(body.len(), 66824, "the documented Content-Length");
    let expected = vec![b'a'; 66560];
    let mut piece_sizes = vec![vec![1], vec![65536 + 100], vec![7, 4096, 3]];
    piece_sizes.extend((1..6).map(|seed| random_sizes(seed, 64, 9000)));
    for sizes in &piece_sizes {
        assert_eq!(
            run_body(&verified, &request.headers, &body, sizes).unwrap(),
            expected
        );
    }
}

#[test]
fn chunked_upload_rejects_a_bad_chunk_signature_or_data() {
    let request = chunked_example_request();
    let verified = request.verify().unwrap();
    // A chunk signature of another chunk, tampered data, a tampered final signature.
    let swapped = [
        CHUNK_SIGNATURES[1],
        CHUNK_SIGNATURES[0],
        CHUNK_SIGNATURES[2],
    ];
    let bodies = [
        chunked_example_body(swapped, b"\r\n"),
        {
            let mut body = chunked_example_body(CHUNK_SIGNATURES, b"\r\n");
            body[66_000] = b'b'; // in the second chunk
            body
        },
        chunked_example_body(
            [
                CHUNK_SIGNATURES[0],
                CHUNK_SIGNATURES[1],
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df8",
            ],
            b"\r\n",
        ),
    ];
    for body in bodies {
        let error = body_error(run_body(&verified, &request.headers, &body, &[4096]));
        assert!(
            matches!(error, SignatureError::SignatureDoesNotMatch(None)),
            "{error}"
        );
        assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
    }
}

#[test]
fn chunked_upload_releases_no_data_of_an_unverified_chunk() {
    let request = chunked_example_request();
    let verified = request.verify().unwrap();
    let mut body = chunked_example_body(CHUNK_SIGNATURES, b"\r\n");
    body[90] = b'b'; // in the first chunk
    let pieces: Vec<Result<Bytes, io::Error>> = body
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut stream = verified_body(stream::iter(pieces), &verified, &request.headers).unwrap();
    let first = block_on(stream.next()).unwrap();
    assert!(first.is_err(), "the first item is the error, not data");
}

#[test]
fn chunked_upload_checks_framing_and_length() {
    let request = chunked_example_request();
    let verified = request.verify().unwrap();
    let truncated = chunked_example_body(CHUNK_SIGNATURES, b"");
    let error = body_error(run_body(
        &verified,
        &request.headers,
        &truncated[..truncated.len() - 10],
        &[512],
    ));
    assert_eq!(error.s3_code(), "IncompleteBody");
    let error = body_error(run_body(&verified, &request.headers, &truncated, &[512]));
    assert_eq!(error.s3_code(), "IncompleteBody");
    let trailing = chunked_example_body(CHUNK_SIGNATURES, b"\r\nmore");
    let error = body_error(run_body(&verified, &request.headers, &trailing, &[512]));
    assert_eq!(error.s3_code(), "InvalidRequest");

    // The announced decoded length is part of the signed headers, so a wrong one cannot be
    // signed by the documented seed; use an unsigned copy of the headers for the body check.
    let mut headers = request.headers.clone();
    headers.insert(
        X_AMZ_DECODED_CONTENT_LENGTH,
        HeaderValue::from_static("66559"),
    );
    let body = chunked_example_body(CHUNK_SIGNATURES, b"\r\n");
    let error = body_error(run_body(&verified, &headers, &body, &[512]));
    assert_eq!(error.s3_code(), "IncompleteBody");
}

// ---------------------------------------------------------------------------------------------
// The documented chunked upload with a signed trailer
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, x-amz-checksum-crc32c).

const TRAILER_CHUNK_SIGNATURES: [&str; 3] = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
];
const TRAILER_SIGNATURE: &str = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

fn trailer_example_request() -> Request {
    Request::new(
        Method::PUT,
        "/examplebucket/chunkObject.txt",
        None,
        header_map(&[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", STAMP),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "authorization",
                &authorization(
                    "content-encoding;host;x-amz-content-sha256;x-amz-date;\
                     x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                    "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
                ),
            ),
            ("x-amz-content-sha256", STREAMING_SIGNED_TRAILER),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("content-length", "66824"),
        ]),
    )
}

fn trailer_example_body(checksum: &str, signature: &str) -> Vec<u8> {
    chunked_example_body(
        TRAILER_CHUNK_SIGNATURES,
        format!("x-amz-checksum-crc32c:{checksum}\r\nx-amz-trailer-signature:{signature}\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn aws_example_chunked_upload_with_signed_trailer() {
    let request = trailer_example_request();
    let verified = assert_documented(
        &request,
        "PUT\n\
         /examplebucket/chunkObject.txt\n\
         \n\
         content-encoding:aws-chunked\n\
         host:s3.amazonaws.com\n\
         x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER\n\
         x-amz-date:20130524T000000Z\n\
         x-amz-decoded-content-length:66560\n\
         x-amz-storage-class:REDUCED_REDUNDANCY\n\
         x-amz-trailer:x-amz-checksum-crc32c\n\
         \n\
         content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer\n\
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "AWS4-HMAC-SHA256\n\
         20130524T000000Z\n\
         20130524/us-east-1/s3/aws4_request\n\
         44d48b8c2f70eae815a0198cc73d7a546a73a93359c070abbaa5e6c7de112559",
    );
    assert_eq!(
        verified.payload_mode(),
        &PayloadMode::StreamingSignedTrailer
    );
    let body = trailer_example_body("sOO8/Q==", TRAILER_SIGNATURE);
    for sizes in [vec![1], vec![777], random_sizes(42, 100, 5000)] {
        let (stream, outcome) = verified_body_with(
            stream::iter(
                body.chunks(sizes[0])
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            ),
            &verified,
            &request.headers,
            &BodyOptions::default(),
        )
        .unwrap();
        assert_eq!(outcome.summary(), None);
        assert_eq!(collect(stream).unwrap(), vec![b'a'; 66560]);
        assert_eq!(
            outcome.summary(),
            Some(BodySummary {
                length: 66560,
                checksum: Some((ChecksumAlgorithm::Crc32c, "sOO8/Q==".to_owned())),
            })
        );
        assert_eq!(
            run_body(&verified, &request.headers, &body, &sizes).unwrap(),
            vec![b'a'; 66560]
        );
    }
}

#[test]
fn signed_trailer_is_checked() {
    let request = trailer_example_request();
    let verified = request.verify().unwrap();
    // Another checksum value breaks the trailer signature.
    let body = trailer_example_body("sOO8/A==", TRAILER_SIGNATURE);
    let error = body_error(run_body(&verified, &request.headers, &body, &[1000]));
    assert!(
        matches!(error, SignatureError::SignatureDoesNotMatch(None)),
        "{error}"
    );
    // No trailer signature at all.
    let body = chunked_example_body(
        TRAILER_CHUNK_SIGNATURES,
        b"x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n",
    );
    let error = body_error(run_body(&verified, &request.headers, &body, &[1000]));
    assert_eq!(error.s3_code(), "InvalidRequest");
}

// ---------------------------------------------------------------------------------------------
// Requests signed here (with the module's own canonicalisation, which the documented examples
// pin down) for the cases the documentation has no example of.

struct Signer {
    credential_date: &'static str,
    service: &'static str,
    secret: &'static str,
}

impl Default for Signer {
    fn default() -> Self {
        Self {
            credential_date: "20130524",
            service: "s3",
            secret: SECRET,
        }
    }
}

impl Signer {
    /// Signs `request` over `signed` headers (which must include what the test wants signed)
    /// and adds the `Authorization` header. Returns the signature (the streaming seed).
    fn sign(&self, request: &mut Request, signed: &[&str]) -> [u8; 32] {
        let credential = Credential {
            access_key_id: AKID.to_owned(),
            date: self.credential_date.to_owned(),
            region: "us-east-1".to_owned(),
            service: self.service.to_owned(),
        };
        let mut signed: Vec<String> = signed.iter().map(|s| (*s).to_owned()).collect();
        signed.sort();
        let payload = request
            .headers
            .get(X_AMZ_CONTENT_SHA256)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_owned());
        let canonical = canonical_request(&CanonicalInputs {
            method: &request.method,
            raw_path: &request.path,
            raw_query: request.query.as_deref(),
            headers: &request.headers,
            signed_headers: &signed,
            payload: &payload,
            presigned: false,
        });
        let stamp = request
            .headers
            .get(X_AMZ_DATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| STAMP.to_owned());
        let sts = string_to_sign(&stamp, &credential.scope(), &canonical);
        let signature = SigningKey::derive(self.secret, &credential).sign(&sts);
        let value = format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/{},SignedHeaders={},Signature={}",
            credential.scope(),
            signed.join(";"),
            hex::encode(signature)
        );
        request
            .headers
            .insert("authorization", HeaderValue::from_str(&value).unwrap());
        signature
    }
}

const BASIC_SIGNED: [&str; 3] = ["host", "x-amz-content-sha256", "x-amz-date"];

fn basic_get(extra: &[(&str, &str)]) -> Request {
    let mut pairs = vec![
        ("host", "localhost:9000"),
        ("x-amz-date", STAMP),
        ("x-amz-content-sha256", EMPTY_SHA256),
    ];
    pairs.extend_from_slice(extra);
    Request::new(Method::GET, "/bucket/key", None, header_map(&pairs))
}

#[test]
fn tampered_signature_or_wrong_secret_do_not_match() {
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    request.verify().unwrap();

    let error = request.verify_at("another secret", may_24()).unwrap_err();
    let SignatureError::SignatureDoesNotMatch(Some(details)) = &error else {
        panic!("expected SignatureDoesNotMatch with details, got {error:?}");
    };
    assert_eq!(details.access_key_id, AKID);
    assert!(
        details
            .canonical_request
            .starts_with("GET\n/bucket/key\n\n")
    );
    assert!(
        details
            .string_to_sign
            .starts_with("AWS4-HMAC-SHA256\n20130524T000000Z\n")
    );
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("SignatureDoesNotMatch", 403)
    );

    let value = request.headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let last = value.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &value[..value.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    request
        .headers
        .insert("authorization", HeaderValue::from_str(&flipped).unwrap());
    assert_eq!(
        request.verify().unwrap_err().s3_code(),
        "SignatureDoesNotMatch"
    );

    // A changed signed header value, path or method does not match either.
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    request
        .headers
        .insert("host", HeaderValue::from_static("localhost:9001"));
    assert_eq!(
        request.verify().unwrap_err().s3_code(),
        "SignatureDoesNotMatch"
    );
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    request.path = "/bucket/other".to_owned();
    assert_eq!(
        request.verify().unwrap_err().s3_code(),
        "SignatureDoesNotMatch"
    );
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    request.method = Method::DELETE;
    assert_eq!(
        request.verify().unwrap_err().s3_code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn host_and_every_x_amz_header_must_be_signed() {
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &["x-amz-content-sha256", "x-amz-date"]);
    let error = request.verify().unwrap_err();
    assert_eq!(
        error,
        SignatureError::HeadersNotSigned(vec!["host".to_owned()])
    );
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("AccessDenied", 403)
    );

    let mut request = basic_get(&[("x-amz-meta-colour", "blue")]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::HeadersNotSigned(vec!["x-amz-meta-colour".to_owned()])
    );
    // Unsigned headers other than x-amz-* are fine (proxies add some).
    let mut request = basic_get(&[("user-agent", "curl"), ("x-forwarded-for", "10.0.0.1")]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    request.verify().unwrap();
}

#[test]
fn x_amz_content_sha256_is_required_for_header_auth() {
    let mut request = Request::new(
        Method::GET,
        "/bucket/key",
        None,
        header_map(&[("host", "localhost"), ("x-amz-date", STAMP)]),
    );
    Signer::default().sign(&mut request, &["host", "x-amz-date"]);
    let error = request.verify().unwrap_err();
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("InvalidRequest", 400)
    );

    let mut request = basic_get(&[]);
    request
        .headers
        .insert(X_AMZ_CONTENT_SHA256, HeaderValue::from_static("not-a-hash"));
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    assert_eq!(request.verify().unwrap_err().s3_code(), "InvalidArgument");
}

#[test]
fn clock_skew_beyond_fifteen_minutes_is_refused() {
    let mut request = basic_get(&[]);
    Signer::default().sign(&mut request, &BASIC_SIGNED);
    let minutes = |m: u64| Duration::from_secs(m * 60);
    request.verify_at(SECRET, may_24() + minutes(14)).unwrap();
    request.verify_at(SECRET, may_24() - minutes(14)).unwrap();
    for now in [may_24() + minutes(16), may_24() - minutes(16)] {
        let error = request.verify_at(SECRET, now).unwrap_err();
        assert_eq!(
            error,
            SignatureError::RequestTimeTooSkewed {
                request_time: may_24(),
                server_time: now
            }
        );
        assert_eq!(
            (error.s3_code(), error.status().as_u16()),
            ("RequestTimeTooSkewed", 403)
        );
    }
}

#[test]
fn credential_date_must_be_the_request_date() {
    let mut request = basic_get(&[]);
    Signer {
        credential_date: "20130523",
        ..Signer::default()
    }
    .sign(&mut request, &BASIC_SIGNED);
    let error = request.verify().unwrap_err();
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("AuthorizationHeaderMalformed", 400)
    );
}

#[test]
fn service_must_be_s3() {
    let mut request = basic_get(&[]);
    Signer {
        service: "execute-api",
        ..Signer::default()
    }
    .sign(&mut request, &BASIC_SIGNED);
    let error = request.parse().unwrap_err();
    assert_eq!(error.s3_code(), "AuthorizationHeaderMalformed");
    assert!(error.to_string().contains("execute-api"), "{error}");
}

#[test]
fn malformed_or_missing_authentication() {
    let anonymous = basic_get(&[]);
    let error = anonymous.parse().unwrap_err();
    assert_eq!(error, SignatureError::MissingAuthentication);
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("AccessDenied", 403)
    );

    let malformed = basic_get(&[(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
    )]);
    let error = malformed.parse().unwrap_err();
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("AuthorizationHeaderMalformed", 400)
    );

    let v2 = basic_get(&[(
        "authorization",
        "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
    )]);
    assert_eq!(
        v2.parse().unwrap_err(),
        SignatureError::UnsupportedAuthorization
    );

    let mut both = presigned_get(PRESIGNED_QUERY);
    both.headers.insert(
        "authorization",
        HeaderValue::from_str(&authorization("host", CHUNK_SIGNATURES[0])).unwrap(),
    );
    assert_eq!(
        both.parse().unwrap_err(),
        SignatureError::ConflictingAuthentication
    );

    let mut undated = basic_get(&[]);
    Signer::default().sign(&mut undated, &BASIC_SIGNED);
    undated.headers.remove(X_AMZ_DATE);
    assert_eq!(undated.parse().unwrap_err(), SignatureError::MissingDate);
}

#[test]
fn date_header_may_carry_the_time_if_signed() {
    let mut request = Request::new(
        Method::GET,
        "/bucket/key",
        None,
        header_map(&[
            ("host", "localhost"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ]),
    );
    Signer::default().sign(&mut request, &["date", "host", "x-amz-content-sha256"]);
    request.verify().unwrap();
    Signer::default().sign(&mut request, &["host", "x-amz-content-sha256"]);
    assert_eq!(
        request.verify().unwrap_err(),
        SignatureError::HeadersNotSigned(vec!["date".to_owned()])
    );
}

// ---------------------------------------------------------------------------------------------
// Payload checks of non-streaming bodies.

fn signed_put(body_hash: &str, extra: &[(&str, &str)]) -> (Request, Verified) {
    let mut pairs = vec![
        ("host", "localhost:9000"),
        ("x-amz-date", STAMP),
        ("x-amz-content-sha256", body_hash),
    ];
    pairs.extend_from_slice(extra);
    let mut request = Request::new(Method::PUT, "/bucket/key", None, header_map(&pairs));
    let signed: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
    Signer::default().sign(&mut request, &signed);
    let verified = request.verify().unwrap();
    (request, verified)
}

#[test]
fn content_md5_and_checksum_headers_are_verified() {
    let body = b"123456789";
    let md5 = "JfnnlDI7RTiF9RgfG2JNCw=="; // MD5("123456789")
    let crc32 = ChecksumAlgorithm::Crc32.encode(body);
    let (request, verified) = signed_put(UNSIGNED_PAYLOAD, &[("x-amz-checksum-crc32", &crc32)]);
    let mut headers = request.headers.clone();
    headers.insert(CONTENT_MD5, HeaderValue::from_static(md5));
    assert_eq!(run_body(&verified, &headers, body, &[2]).unwrap(), body);

    let error = body_error(run_body(&verified, &headers, b"123456780", &[2]));
    assert_eq!(error, SignatureError::BadDigest("Content-MD5"));
    headers.remove(CONTENT_MD5);
    let error = body_error(run_body(&verified, &headers, b"123456780", &[2]));
    assert_eq!(
        (error.s3_code(), error.to_string().contains("CRC32")),
        ("BadDigest", true)
    );

    for algorithm in ChecksumAlgorithm::ALL {
        let mut headers = HeaderMap::new();
        headers.insert(
            algorithm.header_name(),
            HeaderValue::from_str(&algorithm.encode(body)).unwrap(),
        );
        assert_eq!(run_body(&verified, &headers, body, &[4]).unwrap(), body);
        let error = body_error(run_body(&verified, &headers, b"12345678", &[4]));
        assert_eq!(error, SignatureError::BadDigest(algorithm.name()));
    }

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_MD5, HeaderValue::from_static("not md5"));
    let error = verified_body(stream::empty(), &verified, &headers)
        .err()
        .unwrap();
    assert_eq!(
        (error.s3_code(), error.status().as_u16()),
        ("InvalidDigest", 400)
    );
}

#[test]
fn the_outcome_names_the_content_md5_its_stream_guarantees() {
    let (request, verified) = signed_put(UNSIGNED_PAYLOAD, &[]);
    let open = |headers: &HeaderMap| {
        verified_body_with(stream::empty(), &verified, headers, &BodyOptions::default())
            .unwrap()
            .1
    };
    assert_eq!(open(&request.headers).content_md5(), None);
    let mut headers = request.headers.clone();
    headers.insert(
        CONTENT_MD5,
        HeaderValue::from_static("JfnnlDI7RTiF9RgfG2JNCw=="),
    );
    assert_eq!(
        open(&headers).content_md5().map(hex::encode).as_deref(),
        Some("25f9e794323b453885f5181f1b624d0b") // MD5("123456789")
    );
}

#[test]
fn checksum_headers_of_the_object_can_be_left_alone() {
    // CompleteMultipartUpload: x-amz-checksum-* describes the object, not the XML body.
    let (request, verified) = signed_put(UNSIGNED_PAYLOAD, &[("x-amz-checksum-crc32", "AAAAAA==")]);
    let body: Vec<Result<Bytes, io::Error>> = vec![Ok(Bytes::from_static(b"<xml/>"))];
    let (stream, _) = verified_body_with(
        stream::iter(body),
        &verified,
        &request.headers,
        &BodyOptions {
            checksum_headers: ChecksumHeaders::DescribeObject,
        },
    )
    .unwrap();
    assert_eq!(collect(stream).unwrap(), b"<xml/>");
}

#[test]
fn body_errors_of_the_transport_pass_through() {
    let (request, verified) = signed_put(UNSIGNED_PAYLOAD, &[]);
    let body: Vec<Result<Bytes, io::Error>> = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
    ];
    let error = collect(verified_body(stream::iter(body), &verified, &request.headers).unwrap())
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    assert!(SignatureError::from_io(&error).is_none());
}

// ---------------------------------------------------------------------------------------------
// STREAMING-UNSIGNED-PAYLOAD-TRAILER, the default of recent botocore and the AWS CLI.

fn unsigned_trailer_body(data: &[u8], chunk: usize, trailer: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for piece in data.chunks(chunk) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\n{trailer}\r\n\r\n").as_bytes());
    body
}

fn test_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn unsigned_payload_trailer_in_any_pieces() {
    let data = test_data(300_000);
    for algorithm in ChecksumAlgorithm::ALL {
        let (request, verified) = signed_put(
            STREAMING_UNSIGNED_TRAILER,
            &[
                ("content-encoding", "aws-chunked"),
                ("x-amz-trailer", algorithm.header_name()),
                ("x-amz-decoded-content-length", "300000"),
            ],
        );
        assert_eq!(
            verified.payload_mode(),
            &PayloadMode::StreamingUnsignedTrailer
        );
        let trailer = format!("{}:{}", algorithm.header_name(), algorithm.encode(&data));
        let body = unsigned_trailer_body(&data, 65536, &trailer);
        for sizes in [
            random_sizes(algorithm as u64 + 7, 50, 20_000),
            vec![65536 + 8],
        ] {
            assert_eq!(
                run_body(&verified, &request.headers, &body, &sizes).unwrap(),
                data
            );
        }
    }
    // Byte by byte, on a smaller body.
    let small = test_data(3000);
    let (request, verified) = signed_put(
        STREAMING_UNSIGNED_TRAILER,
        &[("x-amz-trailer", "x-amz-checksum-crc32")],
    );
    let trailer = format!(
        "x-amz-checksum-crc32:{}",
        ChecksumAlgorithm::Crc32.encode(&small)
    );
    let body = unsigned_trailer_body(&small, 1000, &trailer);
    assert_eq!(
        run_body(&verified, &request.headers, &body, &[1]).unwrap(),
        small
    );
}

#[test]
fn unsigned_payload_trailer_with_a_bad_checksum() {
    let data = test_data(10_000);
    let (request, verified) = signed_put(
        STREAMING_UNSIGNED_TRAILER,
        &[("x-amz-trailer", "x-amz-checksum-crc32c")],
    );
    let wrong = ChecksumAlgorithm::Crc32c.encode(b"something else");
    let body = unsigned_trailer_body(&data, 4096, &format!("x-amz-checksum-crc32c:{wrong}"));
    let error = body_error(run_body(&verified, &request.headers, &body, &[333]));
    assert_eq!(error, SignatureError::BadDigest("CRC32C"));
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);

    // A trailer other than the announced one, or none, or an unparsable value.
    let other = unsigned_trailer_body(&data, 4096, "x-amz-checksum-crc32:AAAAAA==");
    let error = body_error(run_body(&verified, &request.headers, &other, &[333]));
    assert_eq!(error.s3_code(), "InvalidRequest");
    let mut none = unsigned_trailer_body(&data, 4096, "");
    none.truncate(none.len() - 4);
    let error = body_error(run_body(&verified, &request.headers, &none, &[333]));
    assert_eq!(error.s3_code(), "IncompleteBody");
    let garbage = unsigned_trailer_body(&data, 4096, "x-amz-checksum-crc32c:???");
    let error = body_error(run_body(&verified, &request.headers, &garbage, &[333]));
    assert_eq!(error.s3_code(), "InvalidRequest");
}

#[test]
fn unsupported_trailer_algorithm_is_refused_up_front() {
    let (request, verified) = signed_put(
        STREAMING_UNSIGNED_TRAILER,
        &[("x-amz-trailer", "x-amz-checksum-md5")],
    );
    let error = verified_body(stream::empty(), &verified, &request.headers)
        .err()
        .unwrap();
    assert_eq!(error.s3_code(), "InvalidRequest");
}

// ---------------------------------------------------------------------------------------------
// Signed chunks from a seed this module computed (aws-sdk-rust style, 64 KiB chunks).

fn signed_chunks(verified: &Verified, data: &[u8], chunk: usize, trailer: Option<&str>) -> Vec<u8> {
    let mut signing = verified.chunk_signing.clone();
    let mut body = Vec::new();
    for piece in data.chunks(chunk).chain(std::iter::once(&[][..])) {
        let signature = signing.chunk_signature(&sha256_hex(piece));
        body.extend_from_slice(
            format!(
                "{:x};chunk-signature={}\r\n",
                piece.len(),
                hex::encode(signature)
            )
            .as_bytes(),
        );
        body.extend_from_slice(piece);
        if !piece.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
        signing.previous = signature;
    }
    match trailer {
        None => body.extend_from_slice(b"\r\n"),
        Some(trailer) => {
            let signature = signing.trailer_signature(&format!("{trailer}\n"));
            body.extend_from_slice(
                format!(
                    "{trailer}\r\nx-amz-trailer-signature:{}\r\n\r\n",
                    hex::encode(signature)
                )
                .as_bytes(),
            );
        }
    }
    body
}

#[test]
fn signed_chunks_in_random_pieces() {
    let data = test_data(200_003);
    let (request, verified) = signed_put(
        STREAMING_SIGNED,
        &[
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "200003"),
        ],
    );
    let body = signed_chunks(&verified, &data, 65536, None);
    for seed in 1..4 {
        assert_eq!(
            run_body(
                &verified,
                &request.headers,
                &body,
                &random_sizes(seed, 80, 10_000)
            )
            .unwrap(),
            data
        );
    }

    let (request, verified) = signed_put(
        STREAMING_SIGNED_TRAILER,
        &[("x-amz-trailer", "x-amz-checksum-crc64nvme")],
    );
    let trailer = format!(
        "x-amz-checksum-crc64nvme:{}",
        ChecksumAlgorithm::Crc64Nvme.encode(&data)
    );
    let body = signed_chunks(&verified, &data, 65536, Some(&trailer));
    assert_eq!(
        run_body(
            &verified,
            &request.headers,
            &body,
            &random_sizes(9, 80, 10_000)
        )
        .unwrap(),
        data
    );
}

#[test]
fn oversize_signed_chunks_are_refused_before_buffering() {
    let (request, verified) = signed_put(STREAMING_SIGNED, &[]);
    let header = format!(
        "{:x};chunk-signature={}\r\n",
        streaming::MAX_SIGNED_CHUNK + 1,
        CHUNK_SIGNATURES[0]
    );
    let error = body_error(run_body(
        &verified,
        &request.headers,
        header.as_bytes(),
        &[10],
    ));
    assert!(
        matches!(error, SignatureError::MalformedChunk(_)),
        "{error}"
    );
}

/// A large upload streams: what has arrived comes out before anything more is sent, so
/// nothing accumulates (256 MiB pass through here without being held).
#[test]
fn large_bodies_stream_in_bounded_memory() {
    use futures::channel::mpsc;

    let (request, verified) = signed_put(STREAMING_UNSIGNED_TRAILER, &[]);
    let (sender, receiver) = mpsc::unbounded::<Result<Bytes, io::Error>>();
    let mut stream = verified_body(receiver, &verified, &request.headers).unwrap();
    let size: usize = 256 << 20;
    let megabyte = Bytes::from(vec![b'z'; 1 << 20]);
    sender
        .unbounded_send(Ok(Bytes::from(format!("{size:x}\r\n"))))
        .unwrap();
    let mut received = 0;
    for _ in 0..256 {
        sender.unbounded_send(Ok(megabyte.clone())).unwrap();
        let target = received + megabyte.len();
        while received < target {
            received += block_on(stream.next()).unwrap().unwrap().len();
        }
    }
    sender
        .unbounded_send(Ok(Bytes::from_static(b"\r\n0\r\n\r\n")))
        .unwrap();
    drop(sender);
    assert!(block_on(stream.next()).is_none());
    assert_eq!(received, size);
}

// ---------------------------------------------------------------------------------------------
// Requests made by a real client: botocore (boto3) 1.44.8 with its defaults, over http (payload
// SHA-256 plus an `x-amz-checksum-crc32` header) and https (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`
// with a CRC32 trailer), keys and queries full of reserved characters, presigned URLs. Captured
// by a `before-send` hook, so never sent; `Host` added as urllib3 would put it on the wire.

#[test]
fn botocore_requests_verify() {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/botocore.json")).unwrap();
    let mut modes = Vec::new();
    for capture in fixture["requests"].as_array().unwrap() {
        let text = |key: &str| capture[key].as_str().map(str::to_owned);
        let name = text("name").unwrap();
        let mut headers = HeaderMap::new();
        for pair in capture["headers"].as_array().unwrap() {
            let value: Vec<u8> = pair[1].as_str().unwrap().chars().map(|c| c as u8).collect();
            headers.append(
                HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
                HeaderValue::from_bytes(&value).unwrap(),
            );
        }
        let request = Request::new(
            Method::from_bytes(text("method").unwrap().as_bytes()).unwrap(),
            &text("path").unwrap(),
            text("query").as_deref(),
            headers,
        );
        let body = base64.decode(text("body_b64").unwrap()).unwrap();
        let payload = match text("payload_b64") {
            Some(payload) => base64.decode(payload).unwrap(),
            None => body.clone(),
        };
        let parsed = request.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let verified = request
            .verify_at(SECRET, parsed.time.at + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        modes.push(verified.payload_mode().clone());
        let options = BodyOptions {
            checksum_headers: if name.contains("complete_multipart_upload") {
                ChecksumHeaders::DescribeObject
            } else {
                ChecksumHeaders::DescribeBody
            },
        };
        let run = |body: &[u8], sizes: Vec<usize>| {
            let pieces: Vec<Result<Bytes, io::Error>> = sizes
                .iter()
                .cycle()
                .scan(0usize, |at, size| {
                    (*at < body.len()).then(|| {
                        let end = (*at + size).min(body.len());
                        let piece = Bytes::copy_from_slice(&body[*at..end]);
                        *at = end;
                        Ok(piece)
                    })
                })
                .collect();
            let (stream, _) =
                verified_body_with(stream::iter(pieces), &verified, &request.headers, &options)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            collect(stream)
        };
        for sizes in [vec![1], random_sizes(body.len() as u64 + 1, 20, 97)] {
            let decoded = run(&body, sizes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(decoded, payload, "{name}");
        }
        if !body.is_empty() && !verified.is_presigned() {
            let mut tampered = body.clone();
            let at = tampered.len() - payload.len().max(1).min(tampered.len());
            tampered[at] ^= 1;
            assert!(
                run(&tampered, vec![7]).is_err(),
                "{name}: tampered body accepted"
            );
        }
    }
    for mode in [
        PayloadMode::Unsigned,
        PayloadMode::Sha256(EMPTY_SHA256.to_owned()),
        PayloadMode::StreamingUnsignedTrailer,
    ] {
        assert!(modes.contains(&mode), "the capture exercises {mode:?}");
    }
}
