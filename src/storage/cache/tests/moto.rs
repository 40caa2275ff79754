//! The range cache in front of a real S3 server: `moto_server` (PyPI `moto[server]`) as a child
//! process on a free port, reached through the real `S3Backend`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::{from, key, pattern, read, read_ok};
use crate::config::CacheConfig;
use crate::storage::cache::{CacheStats, RangeCache};
use crate::storage::s3::{S3Backend, S3Settings};
use crate::storage::{Backend, ByteStream, PutOptions, RangeRequest, StorageError};

const MIB: u64 = 1024 * 1024;
const BUCKET: &str = "larder-cache-test";

/// A `moto_server` child process, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run moto_server ({e}); this test needs it: pip install 'moto[server]'"
                )
            });
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited at start ({status}); is port {port} taken?");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not listen on port {port} within 30 s");
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: BUCKET.into(),
            prefix: "users/u1/".into(),
            path_style: true,
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }
    }

    async fn create_bucket(&self) {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body(data: bytes::Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

async fn put(backend: &dyn Backend, k: &str, data: &bytes::Bytes) {
    backend
        .put(
            &key(k),
            body(data.clone()),
            Some(data.len() as u64),
            &PutOptions::default(),
        )
        .await
        .unwrap();
}

/// Average time of reading each `MIB`-aligned 1 MiB range of `k` once.
async fn time_reads(backend: &dyn Backend, k: &str, blocks: u64) -> Duration {
    let start = Instant::now();
    for b in 0..blocks {
        let bytes = read_ok(backend, &key(k), from(b * MIB, (b + 1) * MIB - 1)).await;
        assert_eq!(bytes.len() as u64, MIB);
    }
    start.elapsed() / blocks as u32
}

#[tokio::test]
async fn a_cache_in_front_of_a_real_s3_server() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = RangeCache::open(
        &CacheConfig {
            enabled: true,
            memory: 32 * MIB,
            disk: 64 * MIB,
            dir: Some(dir.path().join("cache")),
            block_size: MIB,
        },
        dir.path(),
    )
    .await
    .unwrap();
    assert!(cache.has_disk());
    let upstream = Arc::new(S3Backend::new(&moto.settings()));
    let cached: Arc<dyn Backend> =
        Arc::new(cache.wrap("shared:u1 moto".to_owned(), upstream.clone()));

    let v1 = pattern(1, (5 * MIB + 12_345) as usize);
    put(&*cached, "t/data.parquet", &v1).await;
    let k = key("t/data.parquet");
    let size = v1.len() as u64;

    // Across two block boundaries: blocks 0, 1 and 2 are fetched (in one GET) and cached.
    let (start, end) = (MIB - 10, 2 * MIB + 10);
    let (bytes, got) = read(&*cached, &k, from(start, end)).await.unwrap();
    assert_eq!(bytes, v1[start as usize..=end as usize]);
    assert_eq!(got.meta.size, size);
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 0,
            misses: 3,
            hit_bytes: 0
        }
    );
    assert_eq!(
        read_ok(&*cached, &k, from(start, end)).await,
        v1[start as usize..=end as usize]
    );
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 3,
            misses: 3,
            hit_bytes: end - start + 1
        }
    );

    // The footer (a suffix range in the last, partial block) and the tail from an offset.
    let footer = read_ok(&*cached, &k, Some(RangeRequest::Suffix(8))).await;
    assert_eq!(footer, v1[v1.len() - 8..]);
    let tail = RangeRequest::From {
        start: 4 * MIB + 7,
        end: None,
    };
    assert_eq!(
        read_ok(&*cached, &k, Some(tail)).await,
        v1[(4 * MIB + 7) as usize..]
    );
    let s = cache.stats();
    assert_eq!(
        (s.hits, s.misses),
        (4, 5),
        "block 5, then block 4 fetched, 5 a hit"
    );

    // Unsatisfiable: the size, as S3 reports it.
    let e = read(&*cached, &k, from(size, size + 1)).await.unwrap_err();
    assert!(
        matches!(e, StorageError::InvalidRange { size: s } if s == size),
        "{e:?}"
    );

    // An overwrite through Larder is read at once, from the new version.
    let v2 = pattern(2, (3 * MIB) as usize);
    put(&*cached, "t/data.parquet", &v2).await;
    assert_eq!(
        read_ok(&*cached, &k, from(start, end)).await,
        v2[start as usize..=end as usize]
    );
    assert_eq!(read_ok(&*cached, &k, None).await, v2, "a whole-object read");
    assert_eq!(
        cache.stats().misses,
        8,
        "the new version's blocks 0..=2 were fetched"
    );

    // For the benchmark: 1 MiB ranged reads, straight from moto and through the cache.
    let big = pattern(3, (16 * MIB) as usize);
    put(&*upstream, "t/bench.bin", &big).await;
    let uncached = time_reads(&*upstream, "t/bench.bin", 16).await;
    let cold = time_reads(&*cached, "t/bench.bin", 16).await;
    let warm = time_reads(&*cached, "t/bench.bin", 16).await;
    eprintln!(
        "1 MiB ranged reads from moto: uncached {uncached:?}/read, through the cache cold \
         {cold:?}/read, warm {warm:?}/read"
    );
}
