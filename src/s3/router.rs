//! Parses a request's method, path and query into one typed [`Endpoint`]; the proxy dispatches
//! from that one place. Path style only: `/{bucket}/{key}` below the mount point, where the
//! bucket is one of the user's backends.

use http::Method;

use super::error::S3Error;

/// Every operation the proxy implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    HeadBucket {
        bucket: String,
    },
    GetBucketLocation {
        bucket: String,
    },
    ListObjectsV2 {
        bucket: String,
    },
    DeleteObjects {
        bucket: String,
    },
    GetObject {
        bucket: String,
        key: String,
    },
    HeadObject {
        bucket: String,
        key: String,
    },
    PutObject {
        bucket: String,
        key: String,
    },
    /// `PUT` with `x-amz-copy-source`.
    CopyObject {
        bucket: String,
        key: String,
    },
    DeleteObject {
        bucket: String,
        key: String,
    },
    CreateMultipartUpload {
        bucket: String,
        key: String,
    },
    UploadPart {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
    },
    CompleteMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    AbortMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    ListParts {
        bucket: String,
        key: String,
        upload_id: String,
    },
}

impl Endpoint {
    /// Whether the operation changes anything (needs a read-write credential).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Endpoint::DeleteObjects { .. }
                | Endpoint::PutObject { .. }
                | Endpoint::CopyObject { .. }
                | Endpoint::DeleteObject { .. }
                | Endpoint::CreateMultipartUpload { .. }
                | Endpoint::UploadPart { .. }
                | Endpoint::CompleteMultipartUpload { .. }
                | Endpoint::AbortMultipartUpload { .. }
        )
    }

    /// The object key addressed, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Endpoint::GetObject { key, .. }
            | Endpoint::HeadObject { key, .. }
            | Endpoint::PutObject { key, .. }
            | Endpoint::CopyObject { key, .. }
            | Endpoint::DeleteObject { key, .. }
            | Endpoint::CreateMultipartUpload { key, .. }
            | Endpoint::UploadPart { key, .. }
            | Endpoint::CompleteMultipartUpload { key, .. }
            | Endpoint::AbortMultipartUpload { key, .. }
            | Endpoint::ListParts { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Parses a request. `path` is below the mount point (starts with `/`), still
    /// percent-encoded; `query` is raw.
    pub fn parse(
        method: &Method,
        path: &str,
        query: Option<&str>,
        has_copy_source: bool,
    ) -> Result<Endpoint, S3Error> {
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| S3Error::InvalidArgument("the path is not valid UTF-8".into()))?;
        let trimmed = decoded.strip_prefix('/').unwrap_or(&decoded);
        let (bucket, key) = match trimmed.split_once('/') {
            Some((b, k)) => (b.to_owned(), k.to_owned()),
            None => (trimmed.to_owned(), String::new()),
        };
        let q = Query::parse(query);
        let upload_id = q.get("uploadId").map(str::to_owned);

        if bucket.is_empty() {
            return match *method {
                Method::GET => Ok(Endpoint::ListBuckets),
                _ => Err(S3Error::MethodNotAllowed),
            };
        }
        if key.is_empty() {
            return match *method {
                Method::GET if q.has("location") => Ok(Endpoint::GetBucketLocation { bucket }),
                Method::GET if q.get("list-type") == Some("2") => {
                    Ok(Endpoint::ListObjectsV2 { bucket })
                }
                Method::GET if q.has("uploads") => {
                    Err(S3Error::NotImplemented("ListMultipartUploads".into()))
                }
                Method::GET
                    if q.is_empty()
                        || q.only(&[
                            "prefix",
                            "delimiter",
                            "max-keys",
                            "marker",
                            "encoding-type",
                        ]) =>
                {
                    Err(S3Error::NotImplemented(
                        "ListObjects (v1): use ListObjectsV2 (list-type=2)".into(),
                    ))
                }
                Method::GET => Err(S3Error::NotImplemented("this bucket operation".into())),
                Method::HEAD => Ok(Endpoint::HeadBucket { bucket }),
                Method::POST if q.has("delete") => Ok(Endpoint::DeleteObjects { bucket }),
                Method::PUT => Err(S3Error::NotImplemented(
                    "CreateBucket: add backends in Larder's Settings".into(),
                )),
                Method::DELETE => Err(S3Error::NotImplemented(
                    "DeleteBucket: remove backends in Larder's Settings".into(),
                )),
                _ => Err(S3Error::MethodNotAllowed),
            };
        }
        match (method.clone(), upload_id) {
            (Method::GET, Some(upload_id)) => Ok(Endpoint::ListParts {
                bucket,
                key,
                upload_id,
            }),
            (Method::GET, None) => Ok(Endpoint::GetObject { bucket, key }),
            (Method::HEAD, _) => Ok(Endpoint::HeadObject { bucket, key }),
            (Method::PUT, Some(upload_id)) => {
                let part_number = q
                    .get("partNumber")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        S3Error::InvalidArgument(
                            "partNumber must be an integer between 1 and 10000".into(),
                        )
                    })?;
                if has_copy_source {
                    return Err(S3Error::NotImplemented("UploadPartCopy".into()));
                }
                Ok(Endpoint::UploadPart {
                    bucket,
                    key,
                    upload_id,
                    part_number,
                })
            }
            (Method::PUT, None) if has_copy_source => Ok(Endpoint::CopyObject { bucket, key }),
            (Method::PUT, None) => Ok(Endpoint::PutObject { bucket, key }),
            (Method::POST, None) if q.has("uploads") => {
                Ok(Endpoint::CreateMultipartUpload { bucket, key })
            }
            (Method::POST, Some(upload_id)) => Ok(Endpoint::CompleteMultipartUpload {
                bucket,
                key,
                upload_id,
            }),
            (Method::DELETE, Some(upload_id)) => Ok(Endpoint::AbortMultipartUpload {
                bucket,
                key,
                upload_id,
            }),
            (Method::DELETE, None) => Ok(Endpoint::DeleteObject { bucket, key }),
            _ => Err(S3Error::MethodNotAllowed),
        }
    }
}

/// A decoded query string.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                // SDKs encode spaces as %20; a '+' is a literal plus, as S3 reads it.
                let dec = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (dec(k), dec(v))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn is_empty(&self) -> bool {
        self.0
            .iter()
            .all(|(k, _)| k.starts_with("X-Amz-") || k.starts_with("x-amz-"))
    }

    /// True if every non-auth parameter is one of `allowed`.
    fn only(&self, allowed: &[&str]) -> bool {
        self.0
            .iter()
            .filter(|(k, _)| !k.starts_with("X-Amz-") && !k.starts_with("x-amz-"))
            .all(|(k, _)| allowed.contains(&k.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: Method, path: &str, q: Option<&str>) -> Endpoint {
        Endpoint::parse(&m, path, q, false).unwrap()
    }

    #[test]
    fn requests_map_to_endpoints() {
        let b = || "local".to_owned();
        assert_eq!(parse(Method::GET, "/", None), Endpoint::ListBuckets);
        assert_eq!(
            parse(Method::GET, "/local", Some("list-type=2&prefix=a%2F")),
            Endpoint::ListObjectsV2 { bucket: b() }
        );
        assert_eq!(
            parse(Method::GET, "/local/", Some("list-type=2")),
            Endpoint::ListObjectsV2 { bucket: b() }
        );
        assert_eq!(
            parse(Method::HEAD, "/local", None),
            Endpoint::HeadBucket { bucket: b() }
        );
        assert_eq!(
            parse(Method::GET, "/local", Some("location")),
            Endpoint::GetBucketLocation { bucket: b() }
        );
        assert_eq!(
            parse(Method::POST, "/local", Some("delete")),
            Endpoint::DeleteObjects { bucket: b() }
        );
        assert_eq!(
            parse(Method::GET, "/local/dir/a%20b.csv", None),
            Endpoint::GetObject {
                bucket: b(),
                key: "dir/a b.csv".into()
            }
        );
        assert_eq!(
            parse(Method::PUT, "/local/k", Some("partNumber=3&uploadId=u1")),
            Endpoint::UploadPart {
                bucket: b(),
                key: "k".into(),
                upload_id: "u1".into(),
                part_number: 3
            }
        );
        assert_eq!(
            parse(Method::POST, "/local/k", Some("uploads")),
            Endpoint::CreateMultipartUpload {
                bucket: b(),
                key: "k".into()
            }
        );
        assert_eq!(
            parse(Method::POST, "/local/k", Some("uploadId=u1")),
            Endpoint::CompleteMultipartUpload {
                bucket: b(),
                key: "k".into(),
                upload_id: "u1".into()
            }
        );
        assert_eq!(
            parse(Method::DELETE, "/local/k", Some("uploadId=u1")),
            Endpoint::AbortMultipartUpload {
                bucket: b(),
                key: "k".into(),
                upload_id: "u1".into()
            }
        );
        assert_eq!(
            parse(Method::GET, "/local/k", Some("uploadId=u1")),
            Endpoint::ListParts {
                bucket: b(),
                key: "k".into(),
                upload_id: "u1".into()
            }
        );
        assert_eq!(
            Endpoint::parse(&Method::PUT, "/local/k", None, true).unwrap(),
            Endpoint::CopyObject {
                bucket: b(),
                key: "k".into()
            }
        );
        assert!(parse(Method::PUT, "/local/k", None).writes());
        assert!(!parse(Method::GET, "/local/k", None).writes());
    }

    #[test]
    fn unsupported_requests_get_clear_errors() {
        let e = Endpoint::parse(&Method::PUT, "/newbucket", None, false).unwrap_err();
        assert_eq!(e.code(), "NotImplemented");
        let e = Endpoint::parse(
            &Method::PUT,
            "/local/k",
            Some("partNumber=0&uploadId=u"),
            false,
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidArgument");
        let e = Endpoint::parse(&Method::PATCH, "/local/k", None, false).unwrap_err();
        assert_eq!(e.code(), "MethodNotAllowed");
    }
}
