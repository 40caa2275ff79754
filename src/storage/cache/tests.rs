//! Tests of the range cache. The upstream is a fake [`Backend`] that serves deterministic bytes
//! in awkward chunk sizes and counts its calls, so the cache itself runs for real (memory and
//! disk tiers); `moto` checks it against a real S3 server.

mod moto;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use futures::{StreamExt as _, stream};
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};

use super::{HEAD_TTL, HeadCache, MAX_CACHED_RANGE, RangeCache};
use crate::config::CacheConfig;
use crate::storage::{
    Backend, ByteRange, ByteStream, GetObject, ListPage, ListRequest, ObjectKey, ObjectMeta,
    PartMeta, PutOptions, RangeRequest, StorageError,
};

const BLOCK: u64 = 64 * 1024;

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

/// `len` bytes, different for every `seed`, with no period a block size could hide.
fn pattern(seed: u64, len: usize) -> Bytes {
    let mut v = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    Bytes::from(v)
}

fn body(data: Bytes) -> ByteStream {
    Box::pin(stream::once(async move { Ok(data) }))
}

/// An upstream that keeps objects in memory and counts what it is asked.
#[derive(Default)]
struct Upstream {
    objects: Mutex<HashMap<String, (Bytes, String)>>,
    writes: AtomicU64,
    heads: AtomicUsize,
    gets: AtomicUsize,
    bytes_sent: AtomicU64,
}

impl Upstream {
    /// Stores an object directly (as a writer that bypasses Larder would).
    fn store(&self, key: &str, data: Bytes) -> String {
        let etag = format!("\"v{}\"", self.writes.fetch_add(1, Ordering::Relaxed) + 1);
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_owned(), (data, etag.clone()));
        etag
    }

    fn object(&self, key: &ObjectKey) -> Result<(Bytes, String), StorageError> {
        self.objects
            .lock()
            .unwrap()
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }

    fn gets(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::Relaxed)
    }
}

fn meta(key: &ObjectKey, data: &Bytes, etag: &str) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: data.len() as u64,
        etag: etag.to_owned(),
        last_modified: 0,
        content_type: None,
    }
}

fn unsupported<T>() -> Result<T, StorageError> {
    Err(StorageError::Upstream("not supported by the fake".into()))
}

#[async_trait::async_trait]
impl Backend for Upstream {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        let (data, etag) = self.object(key)?;
        Ok(meta(key, &data, &etag))
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let (data, etag) = self.object(key)?;
        let size = data.len() as u64;
        let resolved = match range {
            None => None,
            Some(r) => Some(r.resolve(size).ok_or(StorageError::InvalidRange { size })?),
        };
        let part = match resolved {
            None => data.clone(),
            Some(r) => data.slice(r.start as usize..=r.end as usize),
        };
        self.bytes_sent
            .fetch_add(part.len() as u64, Ordering::Relaxed);
        // Awkward chunk sizes, so blocks are assembled across chunk boundaries.
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..part.len())
            .step_by(7919)
            .map(|at| Ok(part.slice(at..part.len().min(at + 7919))))
            .collect();
        Ok(GetObject {
            meta: meta(key, &data, &etag),
            range: resolved,
            body: Box::pin(stream::iter(chunks)),
        })
    }

    async fn put(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        _size: Option<u64>,
        _opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let mut data = Vec::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
        }
        let data = Bytes::from(data);
        let etag = self.store(key.as_str(), data.clone());
        Ok(meta(key, &data, &etag))
    }

    async fn list(&self, _req: &ListRequest) -> Result<ListPage, StorageError> {
        unsupported()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.objects.lock().unwrap().remove(key.as_str());
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let (data, _) = self.object(from)?;
        let etag = self.store(to.as_str(), data.clone());
        Ok(meta(to, &data, &etag))
    }

    async fn create_multipart(
        &self,
        _key: &ObjectKey,
        _content_type: Option<String>,
    ) -> Result<String, StorageError> {
        unsupported()
    }

    async fn upload_part(
        &self,
        _key: &ObjectKey,
        _upload_id: &str,
        _part_number: u32,
        _body: ByteStream,
        _size: Option<u64>,
        _content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError> {
        unsupported()
    }

    async fn list_parts(
        &self,
        _key: &ObjectKey,
        _upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        unsupported()
    }

    async fn complete_multipart(
        &self,
        _key: &ObjectKey,
        _upload_id: &str,
        _parts: &[(u32, String)],
        _opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        unsupported()
    }

    async fn abort_multipart(
        &self,
        _key: &ObjectKey,
        _upload_id: &str,
    ) -> Result<(), StorageError> {
        unsupported()
    }
}

fn config(memory: u64, disk: u64, dir: &Path) -> CacheConfig {
    CacheConfig {
        enabled: true,
        memory,
        disk,
        dir: Some(dir.to_path_buf()),
        block_size: BLOCK,
    }
}

/// A memory-only cache of `blocks` blocks.
async fn in_memory(blocks: u64) -> RangeCache {
    let dir = Path::new("/nonexistent-unused");
    RangeCache::open(&config(blocks * (BLOCK + 1024), 0, dir), dir)
        .await
        .unwrap()
}

/// A cache in front of a fresh fake upstream.
fn wrap(cache: &RangeCache, identity: &str) -> (Arc<Upstream>, Arc<dyn Backend>) {
    let upstream = Arc::new(Upstream::default());
    let cached: Arc<dyn Backend> = Arc::new(cache.wrap(identity.to_owned(), upstream.clone()));
    (upstream, cached)
}

fn from(start: u64, end: u64) -> Option<RangeRequest> {
    Some(RangeRequest::From {
        start,
        end: Some(end),
    })
}

/// What a read answered, besides its bytes.
#[derive(Debug)]
struct Answer {
    meta: ObjectMeta,
    range: Option<ByteRange>,
}

async fn read(
    backend: &dyn Backend,
    key: &ObjectKey,
    range: Option<RangeRequest>,
) -> Result<(Vec<u8>, Answer), StorageError> {
    let mut got = backend.get(key, range).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = got.body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok((
        bytes,
        Answer {
            meta: got.meta,
            range: got.range,
        },
    ))
}

async fn read_ok(backend: &dyn Backend, key: &ObjectKey, range: Option<RangeRequest>) -> Vec<u8> {
    read(backend, key, range).await.unwrap().0
}

#[tokio::test]
async fn repeated_ranged_reads_hit_the_cache() {
    let cache = in_memory(64).await;
    let (upstream, cached) = wrap(&cache, "u1");
    let data = pattern(1, 1024 * 1024 + 123);
    upstream.store("t/a.parquet", data.clone());
    let k = key("t/a.parquet");

    // 100_000..=300_000 covers blocks 1..=4 (64 KiB each).
    let (bytes, got) = read(&*cached, &k, from(100_000, 300_000)).await.unwrap();
    assert_eq!(bytes, data[100_000..=300_000]);
    assert_eq!(
        got.range,
        Some(ByteRange {
            start: 100_000,
            end: 300_000
        })
    );
    assert_eq!(got.meta.size, data.len() as u64);
    assert_eq!(got.meta.etag, "\"v1\"");
    assert_eq!(upstream.gets(), 1, "the missing blocks came in one GET");
    assert_eq!(
        upstream.bytes_sent.load(Ordering::Relaxed),
        4 * BLOCK,
        "whole aligned blocks were fetched"
    );
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.hit_bytes), (0, 4, 0));

    for _ in 0..3 {
        assert_eq!(
            read_ok(&*cached, &k, from(100_000, 300_000)).await,
            data[100_000..=300_000]
        );
    }
    assert_eq!(upstream.gets(), 1, "repeated reads never went upstream");
    assert_eq!(upstream.heads(), 1, "the head was reused within HEAD_TTL");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (12, 4));
    assert_eq!(s.hit_bytes, 3 * 200_001);

    // A wider range fetches only what is missing: blocks 0 and 5, in two GETs around the
    // cached run.
    assert_eq!(
        read_ok(&*cached, &k, from(10, 5 * BLOCK + 10)).await,
        data[10..=(5 * BLOCK + 10) as usize]
    );
    assert_eq!(upstream.gets(), 3);
    assert_eq!(cache.stats().misses, 6);

    // After HEAD_TTL the object is looked up again, and is still served from the cache.
    tokio::time::sleep(HEAD_TTL + std::time::Duration::from_millis(100)).await;
    assert_eq!(
        read_ok(&*cached, &k, from(100_000, 300_000)).await,
        data[100_000..=300_000]
    );
    assert_eq!((upstream.heads(), upstream.gets()), (2, 3));
}

#[tokio::test]
async fn random_ranges_read_exactly_the_source_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Little memory, more disk: many reads come back from the disk tier (and its encoding).
    let cache = RangeCache::open(&config(4 * BLOCK, 64 * BLOCK, dir.path()), dir.path())
        .await
        .unwrap();
    assert!(cache.has_disk());
    let (upstream, cached) = wrap(&cache, "u1");
    let sizes = [
        10 * BLOCK as usize + 4567, // a partial last block
        3 * BLOCK as usize,         // ends on a block boundary
        BLOCK as usize - 1,         // less than one block
        1,
    ];
    for (i, size) in sizes.iter().enumerate() {
        upstream.store(&format!("obj{i}"), pattern(i as u64 + 10, *size));
    }
    let mut rng = StdRng::seed_from_u64(42);
    let mut fixed = Vec::new();
    let size = sizes[0] as u64;
    for b in [0, 1, 5, 9, 10] {
        let edge = b * BLOCK;
        fixed.push(("obj0", from(edge.saturating_sub(1), edge)));
        fixed.push(("obj0", from(edge, edge)));
        fixed.push(("obj0", from(edge.saturating_sub(3), edge + 3)));
    }
    fixed.push(("obj0", from(size - 1, size - 1)));
    fixed.push(("obj0", from(size - 4567, size + 1000)));
    fixed.push((
        "obj0",
        Some(RangeRequest::From {
            start: size - 10,
            end: None,
        }),
    ));
    fixed.push(("obj0", Some(RangeRequest::Suffix(8))));
    fixed.push(("obj0", Some(RangeRequest::Suffix(size + 5))));
    fixed.push(("obj1", from(0, 3 * BLOCK - 1)));
    fixed.push(("obj2", Some(RangeRequest::Suffix(100))));
    fixed.push(("obj3", from(0, 0)));

    for round in 0..400 {
        let (name, range) = match fixed.get(round) {
            Some(&(name, range)) => (name, range),
            None => {
                let i = rng.random_range(0..sizes.len());
                let size = sizes[i] as u64;
                let start = rng.random_range(0..size);
                let range = match rng.random_range(0..4) {
                    0 => RangeRequest::Suffix(rng.random_range(1..size + 10)),
                    1 => RangeRequest::From { start, end: None },
                    _ => RangeRequest::From {
                        start,
                        end: Some(start + rng.random_range(0..3 * BLOCK)),
                    },
                };
                (["obj0", "obj1", "obj2", "obj3"][i], Some(range))
            }
        };
        let k = key(name);
        let source = upstream.object(&k).unwrap().0;
        let expected = range.unwrap().resolve(source.len() as u64).unwrap();
        let (bytes, got) = read(&*cached, &k, range).await.unwrap();
        assert_eq!(got.range, Some(expected), "{name} {range:?}");
        assert!(
            bytes == source[expected.start as usize..=expected.end as usize],
            "{name} {range:?}: the bytes differ from the source"
        );
    }
    let s = cache.stats();
    assert!(s.hits > s.misses, "most blocks came from the cache: {s:?}");

    // Unsatisfiable ranges are refused with the object's size, as upstream would.
    for (name, range) in [
        ("obj0", from(size, size + 10)),
        ("obj3", from(1, 1)),
        ("obj0", Some(RangeRequest::Suffix(0))),
    ] {
        let e = read(&*cached, &key(name), range).await.unwrap_err();
        let want = upstream.object(&key(name)).unwrap().0.len() as u64;
        assert!(
            matches!(e, StorageError::InvalidRange { size } if size == want),
            "{name} {range:?}: {e:?}"
        );
    }
    let e = read(&*cached, &key("missing"), from(0, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
}

#[tokio::test]
async fn an_overwrite_through_larder_is_read_at_once() {
    let cache = in_memory(64).await;
    let (upstream, cached) = wrap(&cache, "u1");
    let k = key("data.parquet");
    let v1 = pattern(1, 300_000);
    let v2 = pattern(2, 250_000);
    cached
        .put(&k, body(v1.clone()), None, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read_ok(&*cached, &k, from(1000, 70_000)).await,
        v1[1000..=70_000]
    );

    cached
        .put(&k, body(v2.clone()), None, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read_ok(&*cached, &k, from(1000, 70_000)).await,
        v2[1000..=70_000],
        "the new version, with no wait"
    );
    assert_eq!(
        read_ok(&*cached, &k, Some(RangeRequest::Suffix(10))).await,
        v2[v2.len() - 10..]
    );

    // Copying over it and deleting it are seen at once too.
    let other = key("other.parquet");
    let v3 = pattern(3, 100_000);
    upstream.store(other.as_str(), v3.clone());
    cached.copy(&other, &k).await.unwrap();
    assert_eq!(read_ok(&*cached, &k, from(0, 99)).await, v3[..100]);
    cached.delete(&k).await.unwrap();
    let e = read(&*cached, &k, from(0, 99)).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
}

#[tokio::test]
async fn an_overwrite_behind_larders_back_is_never_mixed_with_cached_blocks() {
    let cache = in_memory(64).await;
    let (upstream, cached) = wrap(&cache, "u1");
    let k = key("data.parquet");
    let v1 = pattern(1, 5 * BLOCK as usize);
    let v2 = pattern(2, 5 * BLOCK as usize);
    upstream.store(k.as_str(), v1.clone());
    assert_eq!(read_ok(&*cached, &k, from(0, 99)).await, v1[..100]);

    // Within HEAD_TTL the remembered head still says v1; block 0 is cached, block 1 is not, so
    // its fetch sees the new ETag and the whole range is served from the new version.
    upstream.store(k.as_str(), v2.clone());
    let (bytes, got) = read(&*cached, &k, from(0, BLOCK + 99)).await.unwrap();
    assert_eq!(bytes, v2[..=(BLOCK + 99) as usize]);
    assert_eq!(got.meta.etag, "\"v2\"");
    assert_eq!(read_ok(&*cached, &k, from(0, 99)).await, v2[..100]);

    // Once HEAD_TTL has passed, a fully cached range is checked against upstream too.
    upstream.store(k.as_str(), v1.clone());
    tokio::time::sleep(HEAD_TTL + std::time::Duration::from_millis(100)).await;
    assert_eq!(read_ok(&*cached, &k, from(0, 99)).await, v1[..100]);
}

#[tokio::test]
async fn the_disk_tier_keeps_blocks_evicted_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RangeCache::open(
        &config(2 * BLOCK + 4096, 64 * BLOCK, dir.path()),
        dir.path(),
    )
    .await
    .unwrap();
    assert!(cache.has_disk());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 0,
        "the disk tier's files are in the configured dir"
    );
    let (upstream, cached) = wrap(&cache, "u1");
    let data = pattern(7, 16 * BLOCK as usize);
    upstream.store("big", data.clone());
    let k = key("big");
    for b in 0..16 {
        let (start, end) = (b * BLOCK + 5, b * BLOCK + 500);
        assert_eq!(
            read_ok(&*cached, &k, from(start, end)).await,
            data[start as usize..=end as usize]
        );
    }
    assert_eq!((upstream.gets(), cache.stats().misses), (16, 16));
    cache.settle().await;

    // Memory holds two blocks; the other fourteen come back from disk.
    for b in 0..16 {
        let (start, end) = (b * BLOCK + 5, b * BLOCK + 500);
        assert_eq!(
            read_ok(&*cached, &k, from(start, end)).await,
            data[start as usize..=end as usize]
        );
    }
    assert_eq!(upstream.gets(), 16, "every block came from memory or disk");
    assert_eq!(cache.stats().hits, 16);
}

#[tokio::test]
async fn whole_object_and_big_reads_bypass_the_cache() {
    // Room for twice the largest cached range: shards fill unevenly.
    let cache = in_memory(2 * MAX_CACHED_RANGE / BLOCK).await;
    let (upstream, cached) = wrap(&cache, "u1");
    let data = pattern(3, (MAX_CACHED_RANGE + 3 * BLOCK) as usize);
    upstream.store("huge", data.clone());
    let k = key("huge");

    for _ in 0..2 {
        let (bytes, got) = read(&*cached, &k, None).await.unwrap();
        assert!(bytes == data, "the whole object");
        assert_eq!(got.range, None);
    }
    assert_eq!(
        upstream.heads(),
        0,
        "whole-object reads go straight through"
    );

    let big = from(BLOCK, BLOCK + MAX_CACHED_RANGE);
    for _ in 0..2 {
        let bytes = read_ok(&*cached, &k, big).await;
        assert!(bytes == data[BLOCK as usize..=(BLOCK + MAX_CACHED_RANGE) as usize]);
    }
    let open_ended = Some(RangeRequest::From {
        start: 1,
        end: None,
    });
    assert!(read_ok(&*cached, &k, open_ended).await == data[1..]);
    assert_eq!(upstream.gets(), 5, "every big read went upstream");
    assert_eq!(
        cache.stats(),
        super::CacheStats::default(),
        "nothing was cached"
    );

    // The largest cached range is cached.
    let largest = from(0, MAX_CACHED_RANGE - 1);
    for _ in 0..2 {
        assert!(read_ok(&*cached, &k, largest).await == data[..MAX_CACHED_RANGE as usize]);
    }
    assert_eq!(upstream.gets(), 6);
}

#[tokio::test]
async fn backends_never_share_cached_blocks() {
    let cache = in_memory(64).await;
    let (alice_upstream, alice) = wrap(&cache, "user:alice b1");
    let (bob_upstream, bob) = wrap(&cache, "user:bob b1");
    // The same key with the same ETag ("v1") and different bytes.
    let a = pattern(1, 100_000);
    let b = pattern(2, 100_000);
    alice_upstream.store("k", a.clone());
    bob_upstream.store("k", b.clone());
    let k = key("k");
    for _ in 0..2 {
        assert_eq!(read_ok(&*alice, &k, from(0, 999)).await, a[..1000]);
        assert_eq!(read_ok(&*bob, &k, from(0, 999)).await, b[..1000]);
    }
    assert_eq!((alice_upstream.gets(), bob_upstream.gets()), (1, 1));
    // A write through one does not touch the other's remembered head.
    alice
        .put(&k, body(pattern(3, 10)), None, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(read_ok(&*bob, &k, from(0, 999)).await, b[..1000]);
    assert_eq!(bob_upstream.heads(), 1);
}

#[tokio::test]
async fn an_unusable_disk_dir_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let cache = RangeCache::open(
        &config(8 * BLOCK, 64 * BLOCK, &file.join("cache")),
        dir.path(),
    )
    .await
    .unwrap();
    assert!(!cache.has_disk());
    let (upstream, cached) = wrap(&cache, "u1");
    let data = pattern(5, 200_000);
    upstream.store("k", data.clone());
    for _ in 0..2 {
        assert_eq!(
            read_ok(&*cached, &key("k"), from(5, 150_000)).await,
            data[5..=150_000]
        );
    }
    assert_eq!(upstream.gets(), 1, "still cached, in memory");
}

#[test]
fn a_head_that_raced_a_write_is_not_remembered() {
    let heads = HeadCache::default();
    let backend: Arc<str> = Arc::from("b");
    let k = key("k");
    let m = ObjectMeta {
        key: "k".into(),
        size: 1,
        etag: "\"old\"".into(),
        last_modified: 0,
        content_type: None,
    };
    let epoch = heads.lookup(&backend, &k).unwrap_err();
    heads.forget(&backend, &k); // a write completes while the head is in flight
    heads.remember(epoch, std::time::Instant::now(), &backend, &k, &m);
    assert!(heads.lookup(&backend, &k).is_err());

    let epoch = heads.lookup(&backend, &k).unwrap_err();
    heads.remember(epoch, std::time::Instant::now(), &backend, &k, &m);
    assert_eq!(heads.lookup(&backend, &k).unwrap(), m);
    heads.forget(&backend, &k);
    assert!(heads.lookup(&backend, &k).is_err());
}
