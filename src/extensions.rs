//! The DuckDB extension mirror: the extension files (parquet, json, ...) that DuckDB-WASM in
//! the browser loads from this origin instead of a CDN.
//!
//! Files live in one directory laid out exactly like DuckDB's repository URLs,
//! `<dir>/<version>/<platform>/<name>.duckdb_extension.wasm`, so an operator can fill it by hand
//! for an air-gapped install. When an upstream repository is configured, a file that is missing
//! is fetched from it once and kept: the body streams into a hidden `.part` file next to its
//! final place, is checked (size cap, WebAssembly magic, a complete compressed stream), fsync'd
//! and renamed, so a crash mid-download never leaves a truncated extension behind. Concurrent
//! requests for one missing file share one download. A compressed upstream answer (DuckDB's
//! repository sends brotli) is kept as it came, as the `.br`/`.gz` variant the edge serves to
//! browsers that accept it, next to the decoded file.
//!
//! DuckDB checks each extension's signature itself; the mirror only refuses what is clearly not
//! an extension.
//!
//! Must not: touch a path that is not an [`ExtensionFile`] (every segment is validated before
//! it meets the file system); leave a partial file under a name that can be served; know HTTP
//! status codes (the edge maps [`MirrorError`] to its wire form).

mod download;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use crate::config::ExtensionsConfig;

/// The suffix of every extension file DuckDB-WASM asks for.
const SUFFIX: &str = ".duckdb_extension.wasm";
/// Downloads in progress are written to hidden files ending in this; never served, swept at
/// start.
const PART: &str = ".part";

/// A DuckDB-WASM build flavour: the second segment of an extension URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// `wasm_eh`: WebAssembly exception handling (the build the island uses).
    Eh,
    /// `wasm_mvp`: the baseline build.
    Mvp,
    /// `wasm_threads`: with threads (needs cross-origin isolation).
    Threads,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Eh, Platform::Mvp, Platform::Threads];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Eh => "wasm_eh",
            Platform::Mvp => "wasm_mvp",
            Platform::Threads => "wasm_threads",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A DuckDB release as extension URLs name it: `v1.4.3`.
pub fn is_version(s: &str) -> bool {
    s.strip_prefix('v').is_some_and(|rest| {
        let parts: Vec<&str> = rest.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// An extension name: `parquet`, `sqlite_scanner`.
pub fn is_extension_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One extension file, validated: the only way a request reaches the mirror's directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionFile {
    version: String,
    platform: Platform,
    name: String,
}

/// A path that does not name an extension file.
#[derive(Debug, thiserror::Error)]
#[error(
    "not a DuckDB extension path: expected <version>/<platform>/<name>.duckdb_extension.wasm \
     with a version like v1.4.3, a platform of wasm_eh, wasm_mvp or wasm_threads, and a name of \
     a-z, 0-9 and _"
)]
pub struct NotAnExtensionPath;

impl ExtensionFile {
    /// Parses `v1.4.3/wasm_eh/parquet.duckdb_extension.wasm` (the path below the mirror's
    /// root, already percent-decoded).
    pub fn parse(path: &str) -> Result<ExtensionFile, NotAnExtensionPath> {
        let mut segments = path.split('/');
        let (Some(version), Some(platform), Some(file), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(NotAnExtensionPath);
        };
        let platform = Platform::parse(platform).ok_or(NotAnExtensionPath)?;
        let name = file.strip_suffix(SUFFIX).ok_or(NotAnExtensionPath)?;
        if !is_version(version) || !is_extension_name(name) {
            return Err(NotAnExtensionPath);
        }
        Ok(ExtensionFile {
            version: version.to_owned(),
            platform,
            name: name.to_owned(),
        })
    }

    /// `parquet.duckdb_extension.wasm`.
    pub fn file_name(&self) -> String {
        format!("{}{SUFFIX}", self.name)
    }

    /// The directory holding the file, relative to the mirror's root.
    fn relative_dir(&self) -> PathBuf {
        Path::new(&self.version).join(self.platform.as_str())
    }
}

/// `v1.4.3/wasm_eh/parquet.duckdb_extension.wasm`: the path below the root, in URLs and on disk.
impl fmt::Display for ExtensionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}{SUFFIX}",
            self.version,
            self.platform.as_str(),
            self.name
        )
    }
}

/// Why the mirror cannot provide a file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "{0} is not in this node's DuckDB extension mirror. An operator can put the file at \
         <extensions.dir>/{0} (a copy of the same path under https://extensions.duckdb.org), or \
         set extensions.upstream to a repository such as https://extensions.duckdb.org so \
         Larder fetches it once and keeps it"
    )]
    NotMirrored(ExtensionFile),
    #[error(
        "{0} is not in this node's DuckDB extension mirror, and the upstream extension \
         repository does not have it either"
    )]
    NotUpstream(ExtensionFile),
    #[error("could not fetch {file} from the upstream extension repository: {reason}")]
    Upstream { file: ExtensionFile, reason: String },
    #[error("could not store {file} in the extension mirror: {reason}")]
    Local { file: ExtensionFile, reason: String },
}

/// An extension file present in the mirror.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mirrored {
    pub version: String,
    pub platform: Platform,
    pub name: String,
}

/// The mirror's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Extension files answered (a 2xx; not-modified revalidations excluded).
    pub served: u64,
    /// Files fetched from the upstream and kept.
    pub fetched: u64,
    /// Upstream fetches that failed: the upstream erred, stalled or sent something unusable, or
    /// the file could not be stored. Files the upstream simply does not have are not counted.
    pub upstream_failures: u64,
}

/// The mirror. Cheap to clone.
#[derive(Clone)]
pub struct ExtensionMirror {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    upstream: Option<Upstream>,
    /// Downloads in progress, so concurrent requests for one file share one.
    flights: Mutex<HashMap<ExtensionFile, Flight>>,
    served: AtomicU64,
    fetched: AtomicU64,
    upstream_failures: AtomicU64,
}

/// A download in progress; its outcome is shared by everyone waiting for it.
type Flight = Shared<BoxFuture<'static, Result<(), Failure>>>;

struct Upstream {
    /// Without a trailing slash.
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    max_size: u64,
}

/// How a download failed, shared by every waiter.
#[derive(Debug, Clone)]
enum Failure {
    /// The upstream does not have the file (404, 403 or 410: S3-hosted repositories answer 403
    /// for a missing key).
    Missing,
    /// The upstream could not be used; the reason, for a person.
    Upstream(String),
    /// This node could not store the file.
    Local(String),
}

impl ExtensionMirror {
    /// The mirror in `config.dir` (default `<data_dir>/duckdb-ext`), with an HTTP client for
    /// the upstream if one is configured. Removes downloads a crash left unfinished.
    pub fn open(config: &ExtensionsConfig, data_dir: &Path) -> Result<ExtensionMirror, String> {
        let dir = config.dir_in(data_dir);
        let upstream = match &config.upstream {
            Some(url) => Some(Upstream {
                base: url.as_str().trim_end_matches('/').to_owned(),
                client: reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout.min(Duration::from_secs(10)))
                    .user_agent(concat!("larder/", env!("CARGO_PKG_VERSION")))
                    // The body is kept as it came (decoded here, not by the client).
                    .no_gzip()
                    .no_brotli()
                    .no_deflate()
                    .no_zstd()
                    .build()
                    .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?,
                timeout: config.timeout,
                max_size: config.max_size,
            }),
            None => None,
        };
        for (_, _, platform_dir) in platform_dirs(&dir) {
            for entry in std::fs::read_dir(&platform_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(PART) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => {
                            tracing::info!(path = %entry.path().display(), "removed an unfinished extension download")
                        }
                        Err(e) => {
                            tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an unfinished extension download")
                        }
                    }
                }
            }
        }
        Ok(ExtensionMirror {
            inner: Arc::new(Inner {
                dir,
                upstream,
                flights: Mutex::new(HashMap::new()),
                served: AtomicU64::new(0),
                fetched: AtomicU64::new(0),
                upstream_failures: AtomicU64::new(0),
            }),
        })
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether a missing file is fetched from an upstream repository.
    pub fn has_upstream(&self) -> bool {
        self.inner.upstream.is_some()
    }

    /// The path of `file` on disk, fetching it from the upstream first if it is missing and
    /// there is one. Concurrent calls for one missing file share one download.
    pub async fn locate(&self, file: &ExtensionFile) -> Result<PathBuf, MirrorError> {
        let path = self.inner.path_of(file);
        if is_file(&path).await {
            return Ok(path);
        }
        if self.inner.upstream.is_none() {
            return Err(MirrorError::NotMirrored(file.clone()));
        }
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights
                .entry(file.clone())
                .or_insert_with(|| self.inner.clone().start_flight(file.clone()))
                .clone()
        };
        match flight.await {
            Ok(()) => Ok(path),
            Err(Failure::Missing) => Err(MirrorError::NotUpstream(file.clone())),
            Err(Failure::Upstream(reason)) => Err(MirrorError::Upstream {
                file: file.clone(),
                reason,
            }),
            Err(Failure::Local(reason)) => Err(MirrorError::Local {
                file: file.clone(),
                reason,
            }),
        }
    }

    /// Every extension file in the mirror, sorted.
    pub async fn list(&self) -> Vec<Mirrored> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for (version, platform, platform_dir) in platform_dirs(&dir) {
                for entry in std::fs::read_dir(&platform_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let file_name = entry.file_name();
                    let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                        continue;
                    };
                    if is_extension_name(name) && entry.path().is_file() {
                        found.push(Mirrored {
                            version: version.clone(),
                            platform,
                            name: name.to_owned(),
                        });
                    }
                }
            }
            found.sort();
            found
        })
        .await
        .unwrap_or_default()
    }

    /// Counts one file answered.
    pub fn note_served(&self) {
        self.inner.served.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> MirrorStats {
        MirrorStats {
            served: self.inner.served.load(Ordering::Relaxed),
            fetched: self.inner.fetched.load(Ordering::Relaxed),
            upstream_failures: self.inner.upstream_failures.load(Ordering::Relaxed),
        }
    }
}

/// `(version, platform, path)` of every `<dir>/<version>/<platform>/` directory whose names are
/// valid; anything else in the tree is ignored.
fn platform_dirs(dir: &Path) -> Vec<(String, Platform, PathBuf)> {
    let mut out = Vec::new();
    for version in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Some(v) = version.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_version(&v) {
            continue;
        }
        for platform in std::fs::read_dir(version.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(p) = platform.file_name().to_str().and_then(Platform::parse)
                && platform.path().is_dir()
            {
                out.push((v.clone(), p, platform.path()));
            }
        }
    }
    out
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

impl Inner {
    fn path_of(&self, file: &ExtensionFile) -> PathBuf {
        self.dir.join(file.relative_dir()).join(file.file_name())
    }

    /// Spawns the download of `file` (so a client hanging up does not abandon it) and returns
    /// its shared outcome. The flight leaves the table when it ends; one started after that
    /// finds the file on disk (or, after a failure, tries the upstream again).
    fn start_flight(self: Arc<Self>, file: ExtensionFile) -> Flight {
        let task = tokio::spawn(async move {
            let result = self.download(&file).await;
            match &result {
                Ok(true) => {
                    self.fetched.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) | Err(Failure::Missing) => {}
                Err(Failure::Upstream(_) | Failure::Local(_)) => {
                    self.upstream_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.flights
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&file);
            result.map(|_| ())
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Err(Failure::Local(format!("the download failed: {e}"))))
        })
        .boxed()
        .shared()
    }

    /// Fetches `file` from the upstream into place. `Ok(false)`: it was already there (a flight
    /// that ended just before this one started).
    async fn download(&self, file: &ExtensionFile) -> Result<bool, Failure> {
        let path = self.path_of(file);
        if is_file(&path).await {
            return Ok(false);
        }
        let Some(upstream) = &self.upstream else {
            return Err(Failure::Missing);
        };
        let url = format!("{}/{file}", upstream.base);
        let started = Instant::now();
        let result = upstream.fetch_into(&url, &path).await;
        match &result {
            Ok(fetched) => tracing::info!(
                %file, %url, bytes = fetched.bytes, encoding = fetched.encoding.unwrap_or("identity"),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fetched a DuckDB extension from the upstream"
            ),
            Err(Failure::Missing) => {
                tracing::info!(%file, %url, "the upstream has no such DuckDB extension");
            }
            Err(Failure::Upstream(reason) | Failure::Local(reason)) => {
                tracing::warn!(%file, %url, %reason, "could not fetch a DuckDB extension");
            }
        }
        result.map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_paths_are_validated_segment_by_segment() {
        let f = ExtensionFile::parse("v1.4.3/wasm_eh/parquet.duckdb_extension.wasm").unwrap();
        assert_eq!(
            (f.version.as_str(), f.platform, f.name.as_str()),
            ("v1.4.3", Platform::Eh, "parquet")
        );
        assert_eq!(
            f.to_string(),
            "v1.4.3/wasm_eh/parquet.duckdb_extension.wasm"
        );
        assert_eq!(
            f.relative_dir().join(f.file_name()),
            PathBuf::from("v1.4.3/wasm_eh/parquet.duckdb_extension.wasm")
        );
        for ok in [
            "v1.4.3/wasm_mvp/json.duckdb_extension.wasm",
            "v10.0.12/wasm_threads/sqlite_scanner.duckdb_extension.wasm",
        ] {
            assert!(ExtensionFile::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "v1.4.3",
            "v1.4.3/wasm_eh",
            "v1.4.3/wasm_eh/",
            "../wasm_eh/parquet.duckdb_extension.wasm",
            "v1.4.3/../parquet.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/../../../etc/passwd",
            "v1.4.3/wasm_eh/..",
            "/etc/passwd",
            "/v1.4.3/wasm_eh/parquet.duckdb_extension.wasm",
            "v1.4.3/wasm_eh//parquet.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/parquet.duckdb_extension.wasm/x",
            "v1.4.3/linux_amd64/parquet.duckdb_extension",
            "v1.4.3/wasm_eh/parquet.duckdb_extension",
            "v1.4.3/wasm_eh/.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/Parquet.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/par-quet.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/.parquet.duckdb_extension.wasm.0123.part",
            "v1.4.3/wasm_eh/parquet.duckdb_extension.wasm.br",
            "v1.4.3/WASM_EH/parquet.duckdb_extension.wasm",
            "1.4.3/wasm_eh/parquet.duckdb_extension.wasm",
            "v1.4/wasm_eh/parquet.duckdb_extension.wasm",
            "v1.4.3.1/wasm_eh/parquet.duckdb_extension.wasm",
            "v1.4.x/wasm_eh/parquet.duckdb_extension.wasm",
            "v1..3/wasm_eh/parquet.duckdb_extension.wasm",
            "latest/wasm_eh/parquet.duckdb_extension.wasm",
        ] {
            assert!(ExtensionFile::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("v1.4.3/wasm_eh/{}.duckdb_extension.wasm", "a".repeat(65));
        assert!(ExtensionFile::parse(&long).is_err());
    }

    fn mirror_in(dir: &Path, upstream: Option<&str>) -> ExtensionMirror {
        let config = ExtensionsConfig {
            dir: Some(dir.to_owned()),
            upstream: upstream.map(|u| u.parse().unwrap()),
            ..ExtensionsConfig::default()
        };
        ExtensionMirror::open(&config, Path::new("/nonexistent")).unwrap()
    }

    #[tokio::test]
    async fn lists_only_valid_files_and_sweeps_unfinished_downloads() {
        let root = tempfile::tempdir().unwrap();
        let eh = root.path().join("v1.4.3/wasm_eh");
        std::fs::create_dir_all(&eh).unwrap();
        std::fs::create_dir_all(root.path().join("latest/wasm_eh")).unwrap();
        std::fs::create_dir_all(root.path().join("v1.4.3/linux_amd64")).unwrap();
        for (path, bytes) in [
            (
                "v1.4.3/wasm_eh/parquet.duckdb_extension.wasm",
                &b"\0asm"[..],
            ),
            ("v1.4.3/wasm_eh/parquet.duckdb_extension.wasm.br", b"br"),
            (
                "v1.4.3/wasm_eh/.json.duckdb_extension.wasm.00ff.part",
                b"\0a",
            ),
            ("v1.4.3/wasm_eh/README", b"hello"),
            ("latest/wasm_eh/json.duckdb_extension.wasm", b"\0asm"),
            ("v1.4.3/linux_amd64/json.duckdb_extension.wasm", b"\0asm"),
        ] {
            std::fs::write(root.path().join(path), bytes).unwrap();
        }
        std::fs::create_dir_all(eh.join("fts.duckdb_extension.wasm")).unwrap();

        let mirror = mirror_in(root.path(), None);
        assert!(
            !eh.join(".json.duckdb_extension.wasm.00ff.part").exists(),
            "an unfinished download is removed at open"
        );
        assert!(eh.join("README").exists(), "nothing else is touched");
        assert_eq!(
            mirror.list().await,
            vec![Mirrored {
                version: "v1.4.3".into(),
                platform: Platform::Eh,
                name: "parquet".into()
            }]
        );
        assert!(!mirror.has_upstream());
        let parquet = ExtensionFile::parse("v1.4.3/wasm_eh/parquet.duckdb_extension.wasm").unwrap();
        assert_eq!(
            mirror.locate(&parquet).await.unwrap(),
            eh.join("parquet.duckdb_extension.wasm")
        );
        let json = ExtensionFile::parse("v1.4.3/wasm_eh/json.duckdb_extension.wasm").unwrap();
        let e = mirror.locate(&json).await.unwrap_err();
        assert!(matches!(e, MirrorError::NotMirrored(_)), "{e}");
        assert!(e.to_string().contains("extensions.upstream"), "{e}");
        assert!(
            !e.to_string().contains(&root.path().display().to_string()),
            "errors do not reveal the server's paths: {e}"
        );
        let fts = ExtensionFile::parse("v1.4.3/wasm_eh/fts.duckdb_extension.wasm").unwrap();
        assert!(
            mirror.locate(&fts).await.is_err(),
            "a directory is not a file"
        );
    }

    #[tokio::test]
    async fn an_unreachable_upstream_fails_cleanly_and_stores_nothing() {
        let root = tempfile::tempdir().unwrap();
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mirror = mirror_in(root.path(), Some(&format!("http://127.0.0.1:{port}/repo/")));
        let json = ExtensionFile::parse("v1.4.3/wasm_eh/json.duckdb_extension.wasm").unwrap();
        let e = mirror.locate(&json).await.unwrap_err();
        assert!(
            matches!(&e, MirrorError::Upstream { reason, .. } if reason.contains("cannot connect")),
            "{e}"
        );
        assert_eq!(mirror.stats().upstream_failures, 1);
        assert!(mirror.list().await.is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(root.path().join("v1.4.3/wasm_eh"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
