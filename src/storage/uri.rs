//! Storage URIs as users and the catalog write them: `store://backend/key` (canonical),
//! `r2://backend/key` (accepted for the seed's catalogs), and plain `https://` (public data,
//! passed through). Invalid URIs get an error saying exactly what is wrong.

use super::{KeyError, ObjectKey};

/// A parsed storage URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUri {
    /// An object in one of the user's backends (by name, or id).
    Store { backend: String, key: ObjectKey },
    /// Public data, fetched as is.
    Https(url::Url),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("{uri:?} has no scheme: write store://<backend>/<key> (or https://...)")]
    NoScheme { uri: String },
    #[error("{uri:?}: {scheme}:// is not supported here: write store://<backend>/<key>{hint}")]
    UnsupportedScheme {
        uri: String,
        scheme: String,
        hint: &'static str,
    },
    #[error("{uri:?} names no backend: write store://<backend>/<key>")]
    NoBackend { uri: String },
    #[error("{uri:?} names no object after the backend: write store://{backend}/<key>")]
    NoKey { uri: String, backend: String },
    #[error("{uri:?}: {source}")]
    BadKey { uri: String, source: KeyError },
    #[error("{uri:?} is not a valid URL: {reason}")]
    BadUrl { uri: String, reason: String },
}

impl StorageUri {
    pub fn parse(uri: &str) -> Result<StorageUri, UriError> {
        let trimmed = uri.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(UriError::NoScheme {
                uri: uri.to_owned(),
            });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "store" | "r2" => {
                let (backend, raw_key) = rest.split_once('/').unwrap_or((rest, ""));
                if backend.is_empty() {
                    return Err(UriError::NoBackend {
                        uri: uri.to_owned(),
                    });
                }
                if raw_key.is_empty() {
                    return Err(UriError::NoKey {
                        uri: uri.to_owned(),
                        backend: backend.to_owned(),
                    });
                }
                let decoded = percent_encoding::percent_decode_str(raw_key)
                    .decode_utf8()
                    .map_err(|_| UriError::BadUrl {
                        uri: uri.to_owned(),
                        reason: "the key is not valid UTF-8 once decoded".into(),
                    })?;
                let key = ObjectKey::parse(&decoded).map_err(|source| UriError::BadKey {
                    uri: uri.to_owned(),
                    source,
                })?;
                Ok(StorageUri::Store {
                    backend: backend.to_owned(),
                    key,
                })
            }
            "https" => {
                let url = url::Url::parse(trimmed).map_err(|e| UriError::BadUrl {
                    uri: uri.to_owned(),
                    reason: e.to_string(),
                })?;
                if url.host().is_none() {
                    return Err(UriError::BadUrl {
                        uri: uri.to_owned(),
                        reason: "it has no host".into(),
                    });
                }
                Ok(StorageUri::Https(url))
            }
            other => Err(UriError::UnsupportedScheme {
                uri: uri.to_owned(),
                scheme: other.to_owned(),
                hint: match other {
                    "s3" => " (s3:// URIs are what S3 clients send to Larder's proxy)",
                    "http" => " (or https:// for public data)",
                    "file" => " (local files live in the `local` backend)",
                    _ => "",
                },
            }),
        }
    }
}

impl std::fmt::Display for StorageUri {
    /// The canonical form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUri::Store { backend, key } => write!(f, "store://{backend}/{key}"),
            StorageUri::Https(url) => f.write_str(url.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(backend: &str, key: &str) -> StorageUri {
        StorageUri::Store {
            backend: backend.into(),
            key: ObjectKey::parse(key).unwrap(),
        }
    }

    #[test]
    fn canonical_alias_and_public_uris_parse() {
        assert_eq!(
            StorageUri::parse("store://local/sales/2026.parquet").unwrap(),
            store("local", "sales/2026.parquet")
        );
        assert_eq!(
            StorageUri::parse("r2://primary-r2/sample.ndjson").unwrap(),
            store("primary-r2", "sample.ndjson")
        );
        assert_eq!(
            StorageUri::parse("STORE://local/a%20b.csv").unwrap(),
            store("local", "a b.csv")
        );
        assert_eq!(
            StorageUri::parse("r2://primary-r2/sample.ndjson")
                .unwrap()
                .to_string(),
            "store://primary-r2/sample.ndjson",
            "aliases print canonically"
        );
        let https = StorageUri::parse("https://example.org/data/x.parquet?v=1").unwrap();
        assert_eq!(https.to_string(), "https://example.org/data/x.parquet?v=1");
    }

    #[test]
    fn invalid_uris_say_what_is_wrong() {
        let err = |u: &str| StorageUri::parse(u).unwrap_err().to_string();
        assert!(err("sales.parquet").contains("has no scheme"));
        assert!(err("store:///x.csv").contains("names no backend"));
        assert!(err("store://local").contains("names no object"));
        assert!(err("store://local/").contains("names no object"));
        assert!(err("store://local/../etc/passwd").contains("'..'"));
        assert!(
            err("store://local/a%2F..%2F..%2Fb").contains("'..'"),
            "encoded traversal"
        );
        assert!(err("store://local//abs").contains("start with '/'"));
        assert!(err("s3://local/x").contains("S3 clients"));
        assert!(err("ftp://host/x").contains("ftp:// is not supported"));
        assert!(err("https://").contains("not a valid URL"));
    }
}
