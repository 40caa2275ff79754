//! The DuckDB extension mirror: `/duckdb-ext/...` served from the operator's directory offline,
//! filled once from a real upstream HTTP server (started here, counting its requests), upstream
//! failures, path validation, sign-in, `/api/duckdb-extensions` and the metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Larder, Session};

const PREFIX: &str = "/duckdb-ext/v1.4.3/wasm_eh";

/// Bytes that look like an extension to the mirror (WebAssembly's magic, then filler that
/// differs per name).
fn fake_extension(name: &str, len: usize) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let seed = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    bytes.extend(
        (0..len - 8).map(|i| (seed.wrapping_add(i as u32).wrapping_mul(2_654_435_761) >> 24) as u8),
    );
    bytes
}

/// Brotli at its fastest level: the default (11) takes seconds for the 4 MiB `bomb` in a debug
/// build, which the mirror's one-second download timeout would count against it.
async fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::BrotliEncoder::with_quality(
        bytes,
        async_compression::Level::Fastest,
    )
    .read_to_end(&mut out)
    .await
    .unwrap();
    out
}

async fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// An extension repository like extensions.duckdb.org, at `<base>/v1.4.3/wasm_eh/<file>`,
/// counting the requests for each file. `json` comes brotli-encoded (as DuckDB's repository
/// sends it), `icu` gzip-encoded; `broken` fails, `stalled` never answers, `portal` is an HTML
/// page, `huge` is 2 MiB, `unsized` too but without a Content-Length, `bomb` is tiny brotli of
/// 4 MiB, `truncated` is a cut-off brotli stream, `slow` takes two seconds; anything else is a
/// 404.
struct Repository {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct RepositoryState {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

async fn repository_answer(
    State(state): State<RepositoryState>,
    UrlPath((version, platform, file)): UrlPath<(String, String, String)>,
) -> Response {
    *state
        .hits
        .lock()
        .unwrap()
        .entry(format!("{version}/{platform}/{file}"))
        .or_default() += 1;
    let name = file.strip_suffix(".duckdb_extension.wasm").unwrap_or("");
    let wasm = [(header::CONTENT_TYPE, "application/wasm")];
    match name {
        "parquet" => {
            // Slow enough that concurrent requests overlap.
            tokio::time::sleep(Duration::from_millis(500)).await;
            (wasm, fake_extension("parquet", 300 << 10)).into_response()
        }
        "json" => (
            wasm,
            [(header::CONTENT_ENCODING, "br")],
            brotli(&fake_extension("json", 200 << 10)).await,
        )
            .into_response(),
        "icu" => (
            wasm,
            [(header::CONTENT_ENCODING, "gzip")],
            gzip(&fake_extension("icu", 100 << 10)).await,
        )
            .into_response(),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "stalled" => {
            let mut stopped = state.stopped.clone();
            let _ = stopped.wait_for(|s| *s).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        "portal" => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Please sign in to the hotel Wi-Fi</body></html>",
        )
            .into_response(),
        "huge" => (wasm, fake_extension("huge", 2 << 20)).into_response(),
        "unsized" => {
            // 2 MiB without a Content-Length: the cap must hold while streaming.
            let chunks = fake_extension("unsized", 2 << 20)
                .chunks(64 << 10)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>();
            (
                wasm,
                axum::body::Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        "slow" => {
            // 1 MiB over about two seconds.
            let bytes = fake_extension("slow", 1 << 20);
            let chunks = futures::stream::unfold(0, move |at| {
                let bytes = bytes.clone();
                async move {
                    if at >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let end = (at + (64 << 10)).min(bytes.len());
                    Some((Ok::<_, std::io::Error>(bytes[at..end].to_vec()), end))
                }
            });
            (wasm, axum::body::Body::from_stream(chunks)).into_response()
        }
        "bomb" => {
            // A few KiB of brotli that decode to 4 MiB.
            let mut bytes = b"\0asm\x01\0\0\0".to_vec();
            bytes.resize(4 << 20, 0);
            (
                wasm,
                [(header::CONTENT_ENCODING, "br")],
                brotli(&bytes).await,
            )
                .into_response()
        }
        "truncated" => {
            let mut br = brotli(&fake_extension("truncated", 100 << 10)).await;
            br.truncate(br.len() / 2);
            (wasm, [(header::CONTENT_ENCODING, "br")], br).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

impl Repository {
    async fn start() -> Repository {
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let app = axum::Router::new()
            .route(
                "/repo/{version}/{platform}/{file}",
                axum::routing::get(repository_answer),
            )
            .with_state(RepositoryState {
                hits: hits.clone(),
                stopped: stopped.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/repo", listener.local_addr().unwrap());
        let mut stopped = stopped;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
        });
        Repository {
            base,
            hits,
            stop,
            task,
        }
    }

    fn hits(&self, name: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(&format!("v1.4.3/wasm_eh/{name}.duckdb_extension.wasm"))
            .copied()
            .unwrap_or(0)
    }

    /// Stops listening and closes every connection.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the repository stops")
            .unwrap();
    }
}

fn mirror_dir(larder: &Larder) -> PathBuf {
    larder.data_dir().join("duckdb-ext")
}

/// Every file (not directory) under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

async fn metric(larder: &Larder, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", larder.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// A signed-in session plus its cookie header, for requests sent byte for byte.
async fn sign_in_with_cookie(larder: &Larder) -> (Session, String) {
    let session = larder.sign_in(&larder.startup_login_url()).await;
    let cookie = session.cookie_header();
    assert!(!cookie.is_empty(), "a session cookie");
    (session, cookie)
}

/// Sends `GET <target>` exactly as written (no client normalises `..` or `%2e%2e` away) and
/// returns the status and body.
async fn raw_get(larder: &Larder, target: &str, cookie: &str) -> (u16, String) {
    let host = larder.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn an_operator_filled_mirror_is_served_offline() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let eh = root.path().join("data/duckdb-ext/v1.4.3/wasm_eh");
    std::fs::create_dir_all(&eh).unwrap();
    let parquet = fake_extension("parquet", 300 << 10);
    let json = fake_extension("json", 200 << 10);
    let json_br = brotli(&json).await;
    std::fs::write(eh.join("parquet.duckdb_extension.wasm"), &parquet).unwrap();
    std::fs::write(eh.join("json.duckdb_extension.wasm"), &json).unwrap();
    std::fs::write(eh.join("json.duckdb_extension.wasm.br"), &json_br).unwrap();
    // Something outside the mirror that traversal must never reach.
    std::fs::write(root.path().join("data/secret.txt"), "top secret").unwrap();
    let larder = Larder::start_with(root.clone(), &[]).await;

    let signed_out = reqwest::get(format!(
        "{}{PREFIX}/parquet.duckdb_extension.wasm",
        larder.base
    ))
    .await
    .unwrap();
    assert_eq!(signed_out.status(), 401);
    assert!(signed_out.text().await.unwrap().contains("sign in"));
    let signed_out = reqwest::get(format!("{}/api/duckdb-extensions", larder.base))
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 401);

    let (session, cookie) = sign_in_with_cookie(&larder).await;
    // reqwest is built without gzip/brotli here: it neither asks for nor decodes compression.
    let client = session.client.clone();
    let url = session.url(&format!("{PREFIX}/parquet.duckdb_extension.wasm"));
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/wasm");
    assert_eq!(headers["cache-control"], "private, max-age=86400");
    assert_eq!(
        headers["content-length"],
        parquet.len().to_string().as_str()
    );
    assert!(headers.get("content-encoding").is_none());
    assert!(headers.contains_key("last-modified"));
    let etag = headers["etag"].clone();
    assert_eq!(res.bytes().await.unwrap(), parquet);

    let revalidated = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/wasm");
    assert_eq!(
        head.headers()["content-length"],
        parquet.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let range = client
        .get(&url)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(&range.bytes().await.unwrap()[..], b"\0asm");

    // The operator's precompressed variant, for browsers that accept it.
    let json_url = session.url(&format!("{PREFIX}/json.duckdb_extension.wasm"));
    let br = client
        .get(&json_url)
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(br.status(), 200);
    assert_eq!(br.headers()["content-type"], "application/wasm");
    assert_eq!(br.headers()["content-encoding"], "br");
    assert_eq!(br.headers()["vary"], "accept-encoding");
    assert_eq!(br.bytes().await.unwrap(), json_br);
    let identity = client.get(&json_url).send().await.unwrap();
    assert!(identity.headers().get("content-encoding").is_none());
    assert_eq!(identity.bytes().await.unwrap(), json);

    // Missing, and nowhere to fetch it from: a 404 that says how to add it.
    let missing = client
        .get(session.url(&format!("{PREFIX}/fts.duckdb_extension.wasm")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let message = missing.text().await.unwrap();
    for needle in [
        "v1.4.3/wasm_eh/fts.duckdb_extension.wasm",
        "extensions.dir",
        "extensions.upstream",
    ] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    assert!(
        !message.contains(&root.path().display().to_string()),
        "no server path in: {message}"
    );

    // Nothing but <version>/<platform>/<name>.duckdb_extension.wasm, and never a path outside.
    for target in [
        "/duckdb-ext/v1.4.3/wasm_eh/..%2F..%2F..%2Fsecret.txt",
        "/duckdb-ext/v1.4.3/wasm_eh/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        "/duckdb-ext/%2e%2e/%2e%2e/secret.txt",
        "/duckdb-ext/../../secret.txt",
        "/duckdb-ext/v1.4.3/../../secret.txt",
        "/duckdb-ext/v1.4.3/wasm_eh/../../../secret.txt",
        "/duckdb-ext//etc/passwd",
        "/duckdb-ext/%2Fetc%2Fpasswd",
        "/duckdb-ext/v1.4.3/wasm_eh/%2Fetc%2Fpasswd",
        "/duckdb-ext/v1.4.3/wasm_eh/json.duckdb_extension.wasm.br",
        "/duckdb-ext/v1.4.3/wasm_eh/Parquet.duckdb_extension.wasm",
        "/duckdb-ext/v1.4.3/linux_amd64/parquet.duckdb_extension",
        "/duckdb-ext/latest/wasm_eh/parquet.duckdb_extension.wasm",
        "/duckdb-ext/v1.4.3/wasm_eh/parquet.duckdb_extension.wasm/x",
        "/duckdb-ext/v1.4.3/wasm_eh",
    ] {
        let (status, body) = raw_get(&larder, target, &cookie).await;
        assert_eq!(status, 404, "{target}: {body}");
        assert!(!body.contains("top secret"), "{target}: {body}");
        assert!(
            body.contains("not a DuckDB extension path"),
            "{target}: {body}"
        );
    }
    let (status, _) = raw_get(
        &larder,
        &format!("{PREFIX}/parquet.duckdb_extension.wasm"),
        &cookie,
    )
    .await;
    assert_eq!(status, 200, "the raw client is signed in");

    let listing: serde_json::Value = session
        .get("/api/duckdb-extensions?version=v1.4.3&platform=wasm_eh")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listing,
        serde_json::json!({
            "repository": "/duckdb-ext",
            "upstream": false,
            "available": ["json", "parquet"],
            "extensions": [
                {"version": "v1.4.3", "platform": "wasm_eh", "name": "json"},
                {"version": "v1.4.3", "platform": "wasm_eh", "name": "parquet"},
            ],
        })
    );
    let other: serde_json::Value = session
        .get("/api/duckdb-extensions?platform=wasm_mvp")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["available"], serde_json::json!([]));
    let bad = session
        .get("/api/duckdb-extensions?platform=linux_amd64")
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    // parquet ×2 (GET, raw GET), its range and HEAD, json ×2.
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_served_total").await,
        6
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_fetched_total").await,
        0
    );
}

#[tokio::test]
async fn a_missing_extension_is_fetched_once_and_kept() {
    let repository = Repository::start().await;
    let larder = Larder::start_with(
        Arc::new(tempfile::tempdir().unwrap()),
        &[("LARDER_EXTENSIONS__UPSTREAM", repository.base.as_str())],
    )
    .await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    // reqwest is built without gzip/brotli here: it neither asks for nor decodes compression.
    let client = session.client.clone();
    let parquet = fake_extension("parquet", 300 << 10);
    let url = session.url(&format!("{PREFIX}/parquet.duckdb_extension.wasm"));

    // Eight browsers ask at once: one download.
    let answers = futures::future::join_all((0..8).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let res = client.get(&url).send().await.unwrap();
            let status = res.status();
            let content_type = res.headers()["content-type"].clone();
            (status, content_type, res.bytes().await.unwrap())
        }
    }))
    .await;
    for (status, content_type, body) in answers {
        assert_eq!(status, 200);
        assert_eq!(content_type, "application/wasm");
        assert_eq!(body, parquet);
    }
    assert_eq!(repository.hits("parquet"), 1);
    let dir = mirror_dir(&larder);
    assert_eq!(
        std::fs::read(dir.join("v1.4.3/wasm_eh/parquet.duckdb_extension.wasm")).unwrap(),
        parquet
    );
    for _ in 0..3 {
        assert_eq!(
            client
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            parquet
        );
    }
    assert_eq!(
        repository.hits("parquet"),
        1,
        "later requests are served from disk"
    );

    // DuckDB's repository sends brotli: kept decoded, and as the .br variant.
    let json = fake_extension("json", 200 << 10);
    let json_url = session.url(&format!("{PREFIX}/json.duckdb_extension.wasm"));
    let res = client.get(&json_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-encoding").is_none());
    assert_eq!(res.bytes().await.unwrap(), json);
    let br = client
        .get(&json_url)
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(br.headers()["content-encoding"], "br");
    assert_eq!(br.bytes().await.unwrap(), brotli(&json).await);
    let icu = client
        .get(session.url(&format!("{PREFIX}/icu.duckdb_extension.wasm")))
        .send()
        .await
        .unwrap();
    assert_eq!(icu.status(), 200);
    assert_eq!(icu.bytes().await.unwrap(), fake_extension("icu", 100 << 10));
    assert_eq!((repository.hits("json"), repository.hits("icu")), (1, 1));
    assert_eq!(
        files_under(&dir),
        [
            "v1.4.3/wasm_eh/icu.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/icu.duckdb_extension.wasm.gz",
            "v1.4.3/wasm_eh/json.duckdb_extension.wasm",
            "v1.4.3/wasm_eh/json.duckdb_extension.wasm.br",
            "v1.4.3/wasm_eh/parquet.duckdb_extension.wasm",
        ],
        "whole files only, no temporary ones"
    );

    let listing: serde_json::Value = session
        .get("/api/duckdb-extensions?version=v1.4.3&platform=wasm_eh")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["upstream"], true);
    assert_eq!(
        listing["available"],
        serde_json::json!(["icu", "json", "parquet"])
    );

    // The upstream goes away: what was fetched is still served; anything new is a clear 502.
    repository.stop().await;
    assert_eq!(
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        parquet
    );
    assert_eq!(
        client
            .get(&json_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        json
    );
    let gone = client
        .get(session.url(&format!("{PREFIX}/fts.duckdb_extension.wasm")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 502);
    let message = gone.text().await.unwrap();
    assert!(
        message.contains("cannot connect to the upstream"),
        "{message}"
    );

    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_fetched_total").await,
        3
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_upstream_failures_total").await,
        1
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_served_total").await,
        16
    );
}

#[tokio::test]
async fn upstream_failures_are_clear_502s_and_keep_nothing() {
    let repository = Repository::start().await;
    let larder = Larder::start_with(
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("LARDER_EXTENSIONS__UPSTREAM", repository.base.as_str()),
            ("LARDER_EXTENSIONS__TIMEOUT", "1s"),
            ("LARDER_EXTENSIONS__MAX_SIZE", "1048576"),
        ],
    )
    .await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    let get = |name: &str| {
        let url = session.url(&format!("{PREFIX}/{name}.duckdb_extension.wasm"));
        let client = session.client.clone();
        async move {
            let started = Instant::now();
            let res = client.get(url).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap(), started.elapsed())
        }
    };

    for (name, needle) in [
        ("broken", "the upstream answered 500 Internal Server Error"),
        ("broken", "the upstream answered 500 Internal Server Error"),
        ("stalled", "did not complete within 1s (extensions.timeout)"),
        ("portal", "not a WebAssembly module"),
        ("huge", "larger than extensions.max_size (1048576 bytes)"),
        ("unsized", "larger than extensions.max_size (1048576 bytes)"),
        ("bomb", "larger than extensions.max_size (1048576 bytes)"),
        ("truncated", "br stream is truncated or corrupt"),
    ] {
        let (status, message, elapsed) = get(name).await;
        assert_eq!(status, 502, "{name}: {message}");
        assert!(
            message.starts_with(&format!(
                "could not fetch v1.4.3/wasm_eh/{name}.duckdb_extension.wasm from the upstream"
            )) && message.contains(needle),
            "{name}: {message}"
        );
        assert!(elapsed < Duration::from_secs(10), "{name} took {elapsed:?}");
        assert!(
            !message.contains(&repository.base),
            "the upstream's address stays in the log: {message}"
        );
    }
    assert_eq!(repository.hits("broken"), 2, "a failure is not remembered");
    let (status, message, _) = get("spatial").await;
    assert_eq!(status, 404);
    assert!(message.contains("does not have it"), "{message}");

    assert_eq!(
        files_under(&mirror_dir(&larder)),
        Vec::<String>::new(),
        "nothing partial or wrong is kept"
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_upstream_failures_total").await,
        8,
        "every 502 counts; the 404 does not"
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_fetched_total").await,
        0
    );
    assert_eq!(
        metric(&larder, "larder_duckdb_extensions_served_total").await,
        0
    );
    repository.stop().await;
}

#[tokio::test]
async fn a_crash_mid_download_leaves_no_extension_behind() {
    let repository = Repository::start().await;
    let root = Arc::new(tempfile::tempdir().unwrap());
    let env = [("LARDER_EXTENSIONS__UPSTREAM", repository.base.as_str())];
    let mut larder = Larder::start_with(root.clone(), &env).await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    let url = session.url(&format!("{PREFIX}/slow.duckdb_extension.wasm"));
    let client = session.client.clone();
    let request = tokio::spawn(async move { client.get(url).send().await });

    let eh = mirror_dir(&larder).join("v1.4.3/wasm_eh");
    let deadline = Instant::now() + Duration::from_secs(10);
    let part = loop {
        let growing = std::fs::read_dir(&eh)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                e.file_name().to_string_lossy().ends_with(".part")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            });
        if let Some(part) = growing {
            break part.path();
        }
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    larder.kill9();
    assert!(request.await.unwrap().is_err(), "the node died mid-answer");
    assert_eq!(
        files_under(&mirror_dir(&larder)),
        [part
            .strip_prefix(mirror_dir(&larder))
            .unwrap()
            .display()
            .to_string()],
        "only the hidden partial file, which is never served"
    );

    let larder = Larder::start_with(root.clone(), &env).await;
    assert_eq!(
        files_under(&mirror_dir(&larder)),
        Vec::<String>::new(),
        "the partial file is swept at start"
    );
    let session = session.on(&larder);
    let res = session
        .get(&format!("{PREFIX}/slow.duckdb_extension.wasm"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap(), fake_extension("slow", 1 << 20));
    assert_eq!(repository.hits("slow"), 2);
    repository.stop().await;
}
