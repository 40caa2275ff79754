//! Every XML body the S3 proxy sends or accepts, as serde types. Only this module knows XML.

use serde::{Deserialize, Serialize};

pub const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Serializes `value` as an XML document whose root element is `root`.
pub fn to_xml<T: Serialize>(root: &str, value: &T) -> String {
    let body = quick_xml::se::to_string_with_root(root, value).unwrap_or_else(|e| {
        tracing::error!(error = %e, root, "cannot serialize an S3 XML body");
        format!("<{root}/>")
    });
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}")
}

/// Parses an XML request body; the error says what is wrong with it.
pub fn from_xml<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    quick_xml::de::from_reader(body).map_err(|e| e.to_string())
}

/// Milliseconds since the epoch as S3 writes timestamps in XML (`2026-12-04T17:03:00.000Z`).
pub fn timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Error<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub resource: &'a str,
    pub request_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAllMyBucketsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub owner: Owner,
    pub buckets: Buckets,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Owner {
    #[serde(rename = "ID")]
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Serialize)]
pub struct Buckets {
    #[serde(rename = "Bucket", default)]
    pub bucket: Vec<Bucket>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bucket {
    pub name: String,
    pub creation_date: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListBucketResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub name: String,
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    pub max_keys: usize,
    pub key_count: usize,
    pub is_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<&'static str>,
    #[serde(default)]
    pub contents: Vec<Contents>,
    #[serde(default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Contents {
    pub key: String,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    pub storage_class: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    pub prefix: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompleteMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub location: String,
    pub bucket: String,
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPartsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub max_parts: usize,
    pub is_truncated: bool,
    #[serde(default)]
    pub part: Vec<Part>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Part {
    pub part_number: u32,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyObjectResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub last_modified: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(default)]
    pub deleted: Vec<Deleted>,
    #[serde(default)]
    pub error: Vec<DeleteError>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deleted {
    pub key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteError {
    pub key: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct LocationConstraint {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "$text")]
    pub region: String,
}

/// `CompleteMultipartUpload` request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompleteMultipartUpload {
    #[serde(default)]
    pub part: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompletedPart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// `DeleteObjects` request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Delete {
    #[serde(default)]
    pub object: Vec<ObjectIdentifier>,
    #[serde(default)]
    pub quiet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectIdentifier {
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_exact() {
        let body = to_xml(
            "Error",
            &Error {
                code: "NoSuchKey",
                message: "The specified key does not exist.",
                resource: "/local/a&b.csv",
                request_id: "r1",
            },
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Resource>/local/a&amp;b.csv</Resource><RequestId>r1</RequestId></Error>"
        );
    }

    #[test]
    fn listing_body_is_exact() {
        let body = to_xml(
            "ListBucketResult",
            &ListBucketResult {
                xmlns: NAMESPACE,
                name: "local".into(),
                prefix: "a/".into(),
                delimiter: Some("/".into()),
                max_keys: 2,
                key_count: 2,
                is_truncated: true,
                continuation_token: None,
                next_continuation_token: Some("tok".into()),
                start_after: None,
                encoding_type: None,
                contents: vec![Contents {
                    key: "a/x.csv".into(),
                    last_modified: timestamp(1_700_000_000_123),
                    etag: "\"abc\"".into(),
                    size: 3,
                    storage_class: "STANDARD",
                }],
                common_prefixes: vec![CommonPrefix {
                    prefix: "a/b/".into(),
                }],
            },
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>local</Name><Prefix>a/</Prefix><Delimiter>/</Delimiter><MaxKeys>2</MaxKeys><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken><Contents><Key>a/x.csv</Key><LastModified>2023-11-14T22:13:20.123Z</LastModified><ETag>\"abc\"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>a/b/</Prefix></CommonPrefixes></ListBucketResult>"
        );
    }

    #[test]
    fn request_bodies_parse() {
        let c: CompleteMultipartUpload = quick_xml::de::from_str(
            r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"e1"</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>"e2"</ETag></Part></CompleteMultipartUpload>"#,
        )
        .unwrap();
        assert_eq!(c.part.len(), 2);
        assert_eq!(
            (c.part[1].part_number, c.part[1].etag.as_str()),
            (2, "\"e2\"")
        );
        let d: Delete = quick_xml::de::from_str("<Delete><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object><Quiet>true</Quiet></Delete>").unwrap();
        assert_eq!(
            d.object.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["a", "b/c"]
        );
        assert!(d.quiet);
    }
}
