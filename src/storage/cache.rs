//! The range cache: byte ranges of objects read from `s3` backends, kept in memory and then on
//! local disk (a foyer hybrid cache), so repeated ranged reads — DuckDB's footer, metadata and
//! row-group reads — are served without a round trip to the bucket.
//!
//! An object is cached in aligned blocks of one *version*: the key is (backend identity, object
//! key, ETag, block size, block index). A new ETag is a new object, so blocks never need
//! invalidating; old ones age out. A ranged `get` asks upstream for the object's current size
//! and ETag (a `head`, remembered for [`HEAD_TTL`] and forgotten on every write through this
//! wrapper), serves the blocks it has, and fetches each run of missing blocks with one ranged
//! GET, inserting them as they stream through. Whole-object reads and ranges over
//! [`MAX_CACHED_RANGE`] go straight to the inner backend, so big downloads use bounded memory.
//!
//! Must not: cache anything but immutable ranges (listings, uploads and every other operation
//! pass through); share entries between backend identities (the registry gives each user's
//! backend its own); or fail start-up: without a usable disk directory it caches in memory only.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder as _, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    PsyncIoEngineConfig, RecoverMode,
};
use futures::StreamExt as _;

use super::{
    Backend, ByteRange, ByteStream, GetObject, ListPage, ListRequest, ObjectKey, ObjectMeta,
    PartMeta, PutOptions, RangeRequest, StorageError,
};
use crate::config::CacheConfig;

/// Ranged reads up to this many bytes are cached; longer ones stream straight through.
pub const MAX_CACHED_RANGE: u64 = 16 << 20;

/// How long a `head` answer is reused for ranged reads of the same key. Writes through the
/// wrapper forget it at once; writes that bypass Larder are seen after at most this long.
pub const HEAD_TTL: Duration = Duration::from_secs(1);

/// Remembered `head` answers, at most (expired ones are dropped first when full).
const MAX_HEADS: usize = 16 * 1024;

/// The node's range cache: cheap to clone, shared by every cached backend.
#[derive(Clone)]
pub struct RangeCache {
    shared: Arc<Shared>,
}

struct Shared {
    blocks: HybridCache<BlockKey, Block>,
    /// Whether `blocks` has a disk tier. (foyer's `is_hybrid` answers true for its no-op
    /// store too, so this is tracked here.)
    disk: bool,
    block_size: u64,
    heads: HeadCache,
    counters: Counters,
}

/// What the cache has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from the cache (memory or disk).
    pub hits: u64,
    /// Blocks fetched from upstream (and inserted).
    pub misses: u64,
    /// Bytes of object data served from cached blocks.
    pub hit_bytes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
}

impl RangeCache {
    /// Opens the cache `config` describes, its disk tier under `config.dir` (default
    /// `<data_dir>/cache`). A disk tier that cannot be set up is logged and left out; only a
    /// failure of the memory tier itself is an error.
    pub async fn open(config: &CacheConfig, data_dir: &Path) -> Result<RangeCache, foyer::Error> {
        let dir = config.dir_in(data_dir);
        let (blocks, disk) = if config.disk == 0 {
            (memory_only(config).await?, false)
        } else {
            match hybrid(config, &dir).await {
                Ok(blocks) => (blocks, true),
                Err(reason) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        %reason,
                        "the range cache cannot use its disk directory (storage.cache.dir); caching in memory only"
                    );
                    (memory_only(config).await?, false)
                }
            }
        };
        Ok(RangeCache {
            shared: Arc::new(Shared {
                blocks,
                disk,
                block_size: config.block_size,
                heads: HeadCache::default(),
                counters: Counters::default(),
            }),
        })
    }

    /// `inner`, with ranged reads served through this cache. `identity` names the backend
    /// (whose namespace, which endpoint, bucket and prefix): two backends share cached blocks
    /// exactly when their identities are equal.
    pub fn wrap(&self, identity: String, inner: Arc<dyn Backend>) -> CachedBackend {
        CachedBackend {
            cache: self.clone(),
            identity: Arc::from(identity),
            inner,
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            hit_bytes: c.hit_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether blocks also go to disk (false: memory only).
    pub fn has_disk(&self) -> bool {
        self.shared.disk
    }

    /// Writes what is in memory to the disk tier and stops it (at shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.shared.blocks.close().await {
            tracing::warn!(error = %e, "the range cache did not close cleanly");
        }
    }

    /// Waits until blocks already handed to the disk tier are written.
    #[cfg(test)]
    async fn settle(&self) {
        self.shared.blocks.storage().wait().await;
    }
}

fn builder(
    config: &CacheConfig,
) -> foyer::HybridCacheBuilderPhaseMemory<BlockKey, Block, foyer::DefaultHasher> {
    let memory = usize::try_from(config.memory).unwrap_or(usize::MAX);
    // Several blocks per shard, or a shard could hold less than one.
    let shards = (config.memory / config.block_size.max(1) / 16).clamp(1, 8) as usize;
    HybridCacheBuilder::new()
        .with_name("larder-range-cache")
        .memory(memory)
        .with_shards(shards)
        .with_weighter(|key: &BlockKey, block: &Block| key.weight() + block.0.len())
}

async fn memory_only(config: &CacheConfig) -> Result<HybridCache<BlockKey, Block>, foyer::Error> {
    builder(config).storage().build().await
}

async fn hybrid(config: &CacheConfig, dir: &Path) -> Result<HybridCache<BlockKey, Block>, String> {
    // foyer's device builder unwraps creating the directory, and only fails on the first
    // write, so both are checked here first.
    crate::keys::create_private_dir(dir).map_err(|e| format!("{e:#}"))?;
    let probe = dir.join(".larder-write-probe");
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write in it: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    let layout = DiskLayout::new(config.disk, config.block_size);
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(layout.capacity)
        .build()
        .map_err(|e| e.to_string())?;
    let engine = BlockEngineConfig::new(device)
        .with_block_size(layout.region)
        .with_buffer_pool_size(layout.buffer)
        .with_submit_queue_size_threshold(2 * layout.buffer);
    builder(config)
        .storage()
        .with_io_engine_config(PsyncIoEngineConfig::new())
        .with_engine_config(engine)
        // Entries are immutable (keyed by ETag), so what was on disk is still right.
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// How the disk tier is cut up. foyer writes and evicts whole *regions* (its "blocks"), each
/// holding many of our blocks; a region must hold at least one block plus its key and header.
/// Blocks reach the disk through a write buffer (two of `buffer` bytes, in memory), which must
/// hold at least one block too.
struct DiskLayout {
    capacity: usize,
    region: usize,
    buffer: usize,
}

impl DiskLayout {
    const PAGE: u64 = 4096;

    fn new(disk: u64, block_size: u64) -> DiskLayout {
        let align = |v: u64| v / Self::PAGE * Self::PAGE;
        // At least 8 regions (foyer keeps one or two clean for writing), at most 16 MiB each
        // unless a block needs more; config validation keeps disk ≥ 16 blocks, so a region is
        // at least two blocks.
        let region = align((disk / 8).min((16 << 20).max(2 * block_size)));
        let buffer = align((8 << 20).max(4 * block_size + (64 << 10)));
        DiskLayout {
            capacity: usize::try_from(align(disk)).unwrap_or(usize::MAX),
            region: region as usize,
            buffer: buffer as usize,
        }
    }
}

/// One cached block: `block_size` bytes of an object version (the last block may be shorter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    object: Arc<ObjectVersion>,
    index: u64,
}

/// An object as it is at one ETag, in one backend, cut into blocks of one size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectVersion {
    backend: Arc<str>,
    key: String,
    etag: String,
    block_size: u64,
}

impl BlockKey {
    /// Roughly what the key costs in memory.
    fn weight(&self) -> usize {
        let o = &self.object;
        64 + o.backend.len() + o.key.len() + o.etag.len()
    }
}

/// The bytes of one block.
#[derive(Debug, Clone)]
struct Block(Bytes);

fn write_str(w: &mut impl Write, s: &str) -> foyer::Result<()> {
    let len = u32::try_from(s.len())
        .map_err(|_| foyer::Error::new(foyer::ErrorKind::BufferSizeLimit, "string too long"))?;
    w.write_all(&len.to_le_bytes())
        .and_then(|()| w.write_all(s.as_bytes()))
        .map_err(foyer::Error::io_error)
}

fn read_u32(r: &mut impl Read) -> foyer::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> foyer::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
    Ok(u64::from_le_bytes(b))
}

fn read_bytes(r: &mut impl Read, len: usize) -> foyer::Result<Vec<u8>> {
    // Entries are checksummed before they are decoded; this only keeps a length that is wrong
    // anyway from becoming a huge allocation.
    if len > 2 * MAX_CACHED_RANGE as usize {
        return Err(foyer::Error::new(
            foyer::ErrorKind::Parse,
            "a cached length is out of range",
        ));
    }
    let mut v = vec![0; len];
    r.read_exact(&mut v).map_err(foyer::Error::io_error)?;
    Ok(v)
}

fn read_str(r: &mut impl Read) -> foyer::Result<String> {
    let len = read_u32(r)? as usize;
    String::from_utf8(read_bytes(r, len)?).map_err(|e| {
        foyer::Error::new(foyer::ErrorKind::Parse, "a cache key is not UTF-8").with_source(e)
    })
}

impl Code for BlockKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let o = &self.object;
        write_str(w, &o.backend)?;
        write_str(w, &o.key)?;
        write_str(w, &o.etag)?;
        w.write_all(&o.block_size.to_le_bytes())
            .and_then(|()| w.write_all(&self.index.to_le_bytes()))
            .map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let backend = Arc::from(read_str(r)?);
        let key = read_str(r)?;
        let etag = read_str(r)?;
        let block_size = read_u64(r)?;
        let index = read_u64(r)?;
        Ok(BlockKey {
            object: Arc::new(ObjectVersion {
                backend,
                key,
                etag,
                block_size,
            }),
            index,
        })
    }

    fn estimated_size(&self) -> usize {
        let o = &self.object;
        3 * 4 + o.backend.len() + o.key.len() + o.etag.len() + 2 * 8
    }
}

impl Code for Block {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        w.write_all(&(self.0.len() as u64).to_le_bytes())
            .and_then(|()| w.write_all(&self.0))
            .map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let len = usize::try_from(read_u64(r)?)
            .map_err(|_| foyer::Error::new(foyer::ErrorKind::Parse, "block length"))?;
        Ok(Block(Bytes::from(read_bytes(r, len)?)))
    }

    fn estimated_size(&self) -> usize {
        8 + self.0.len()
    }
}

/// Short-lived `head` answers by (backend identity, key). A write bumps the epoch and forgets
/// its key; an answer is only remembered if no write happened while it was being fetched, so a
/// `head` that raced a write can never be remembered after it.
#[derive(Default)]
struct HeadCache {
    state: Mutex<HeadState>,
}

#[derive(Default)]
struct HeadState {
    epoch: u64,
    entries: HashMap<(Arc<str>, ObjectKey), (ObjectMeta, Instant)>,
}

impl HeadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh answer, or the epoch to hand to [`HeadCache::remember`].
    fn lookup(&self, backend: &Arc<str>, key: &ObjectKey) -> Result<ObjectMeta, u64> {
        let state = self.lock();
        match state.entries.get(&(backend.clone(), key.clone())) {
            Some((meta, at)) if at.elapsed() < HEAD_TTL => Ok(meta.clone()),
            _ => Err(state.epoch),
        }
    }

    /// Remembers `meta`, as asked for at `asked`, unless a write happened since `epoch`.
    fn remember(
        &self,
        epoch: u64,
        asked: Instant,
        backend: &Arc<str>,
        key: &ObjectKey,
        meta: &ObjectMeta,
    ) {
        let mut state = self.lock();
        if state.epoch != epoch {
            return;
        }
        if state.entries.len() >= MAX_HEADS {
            state.entries.retain(|_, (_, at)| at.elapsed() < HEAD_TTL);
            if state.entries.len() >= MAX_HEADS {
                state.entries.clear();
            }
        }
        state
            .entries
            .insert((backend.clone(), key.clone()), (meta.clone(), asked));
    }

    fn forget(&self, backend: &Arc<str>, key: &ObjectKey) {
        let mut state = self.lock();
        state.epoch += 1;
        state.entries.remove(&(backend.clone(), key.clone()));
    }
}

/// A backend whose ranged reads go through the [`RangeCache`]; everything else passes through.
pub struct CachedBackend {
    cache: RangeCache,
    identity: Arc<str>,
    inner: Arc<dyn Backend>,
}

impl CachedBackend {
    fn forget(&self, key: &ObjectKey) {
        self.cache.shared.heads.forget(&self.identity, key);
    }
}

#[async_trait::async_trait]
impl Backend for CachedBackend {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let heads = &self.cache.shared.heads;
        match heads.lookup(&self.identity, key) {
            Ok(meta) => Ok(meta),
            Err(epoch) => {
                let asked = Instant::now();
                let meta = self.inner.head(key).await?;
                heads.remember(epoch, asked, &self.identity, key, &meta);
                Ok(meta)
            }
        }
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError> {
        let Some(request) = range else {
            return self.inner.get(key, None).await;
        };
        let meta = self.head(key).await?;
        let Some(resolved) = request.resolve(meta.size) else {
            return Err(StorageError::InvalidRange { size: meta.size });
        };
        if resolved.end - resolved.start + 1 > MAX_CACHED_RANGE || meta.etag.is_empty() {
            return self.inner.get(key, Some(request)).await;
        }
        let block_size = self.cache.shared.block_size;
        let mut read = RangeRead {
            cache: self.cache.clone(),
            inner: self.inner.clone(),
            key: key.clone(),
            object: Arc::new(ObjectVersion {
                backend: self.identity.clone(),
                key: key.as_str().to_owned(),
                etag: meta.etag.clone(),
                block_size,
            }),
            size: meta.size,
            range: resolved,
            next: resolved.start / block_size,
            last: resolved.end / block_size,
            fetch: None,
        };
        // The first missing run is requested before answering, so an upstream failure is a
        // proper error, and an object that changed since the `head` is served straight through
        // rather than mixed with cached blocks of the old version.
        match read.start().await {
            Ok(()) => {}
            Err(ReadError::Changed) => {
                self.forget(key);
                return self.inner.get(key, Some(request)).await;
            }
            Err(ReadError::Storage(e)) => return Err(e),
        }
        let body: ByteStream = Box::pin(futures::stream::try_unfold(read, |mut read| async move {
            match read.next_chunk().await {
                Ok(Some(chunk)) => Ok(Some((chunk, read))),
                Ok(None) => Ok(None),
                Err(e) => Err(read.into_io_error(e)),
            }
        }));
        Ok(GetObject {
            meta,
            range: Some(resolved),
            body,
        })
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        size: Option<u64>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let result = self.inner.put(key, body, size, opts).await;
        self.forget(key);
        result
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StorageError> {
        self.inner.list(req).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let result = self.inner.delete(key).await;
        self.forget(key);
        result
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let result = self.inner.copy(from, to).await;
        self.forget(to);
        result
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        self.inner.create_multipart(key, content_type).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError> {
        self.inner
            .upload_part(key, upload_id, part_number, body, size, content_md5)
            .await
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        self.inner.list_parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let result = self
            .inner
            .complete_multipart(key, upload_id, parts, opts)
            .await;
        self.forget(key);
        result
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        self.inner.abort_multipart(key, upload_id).await
    }
}

/// Why a cached read stopped.
enum ReadError {
    /// Upstream no longer has the version the read started with.
    Changed,
    Storage(StorageError),
}

impl From<StorageError> for ReadError {
    fn from(e: StorageError) -> Self {
        ReadError::Storage(e)
    }
}

/// One ranged read in progress: walks the blocks covering `range`, serving each from the cache
/// or from the current upstream fetch, and yields the part of each block inside the range.
struct RangeRead {
    cache: RangeCache,
    inner: Arc<dyn Backend>,
    key: ObjectKey,
    object: Arc<ObjectVersion>,
    size: u64,
    range: ByteRange,
    /// The next block to yield.
    next: u64,
    /// The last block to yield.
    last: u64,
    fetch: Option<Fetch>,
}

/// A run of missing blocks being fetched with one ranged GET.
struct Fetch {
    body: ByteStream,
    /// Received but not yet placed in a block.
    pending: Bytes,
    /// The block the body continues with.
    next: u64,
    /// One past the last block of the run.
    end: u64,
}

impl RangeRead {
    fn block_key(&self, index: u64) -> BlockKey {
        BlockKey {
            object: self.object.clone(),
            index,
        }
    }

    fn is_cached(&self, index: u64) -> bool {
        self.cache.shared.blocks.contains(&self.block_key(index))
    }

    /// The offset and length of block `index`.
    fn span(&self, index: u64) -> (u64, u64) {
        let start = index * self.object.block_size;
        (start, self.object.block_size.min(self.size - start))
    }

    /// The part of block `index` inside the requested range.
    fn clip(&self, index: u64, block: &Bytes) -> Bytes {
        let (start, len) = self.span(index);
        let from = self.range.start.max(start) - start;
        let to = (self.range.end + 1).min(start + len) - start;
        block.slice(from as usize..to as usize)
    }

    /// Requests the first run of blocks the cache does not have, if any.
    async fn start(&mut self) -> Result<(), ReadError> {
        let mut first = self.next;
        while first <= self.last && self.is_cached(first) {
            first += 1;
        }
        if first <= self.last {
            self.fetch = Some(self.fetch_from(first).await?);
        }
        Ok(())
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.next > self.last {
            return Ok(None);
        }
        let index = self.next;
        if self.fetch.as_ref().is_none_or(|f| f.next != index) {
            if let Some(block) = self.cached(index).await {
                self.next += 1;
                let chunk = self.clip(index, &block);
                let counters = &self.cache.shared.counters;
                counters.hits.fetch_add(1, Ordering::Relaxed);
                counters
                    .hit_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                return Ok(Some(chunk));
            }
            // Gone from the cache since the read started: fetch again from here (dropping a
            // fetch that starts further on; this one covers its blocks too).
            self.fetch = Some(self.fetch_from(index).await?);
        }
        let (_, len) = self.span(index);
        let Some(fetch) = self.fetch.as_mut() else {
            return Ok(None);
        };
        let mut block = BytesMut::with_capacity(len as usize);
        while (block.len() as u64) < len {
            if fetch.pending.is_empty() {
                fetch.pending = match fetch.body.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => return Err(StorageError::Io(e).into()),
                    None => {
                        return Err(StorageError::Upstream(
                            "the object's body ended before the range did".into(),
                        )
                        .into());
                    }
                };
            }
            let take = fetch.pending.len().min(len as usize - block.len());
            block.extend_from_slice(&fetch.pending.split_to(take));
        }
        let block = block.freeze();
        fetch.next += 1;
        if fetch.next == fetch.end {
            if !fetch.pending.is_empty() {
                return Err(StorageError::Upstream(
                    "the object's body was longer than the range".into(),
                )
                .into());
            }
            self.fetch = None;
        }
        self.next += 1;
        self.cache
            .shared
            .blocks
            .insert(self.block_key(index), Block(block.clone()));
        self.cache
            .shared
            .counters
            .misses
            .fetch_add(1, Ordering::Relaxed);
        Ok(Some(self.clip(index, &block)))
    }

    // `&mut self` rather than `&self` across an await: the read holds a body stream, which is
    // `Send` but not `Sync`, and the response body must be `Send`.
    async fn cached(&mut self, index: u64) -> Option<Bytes> {
        match self.cache.shared.blocks.get(&self.block_key(index)).await {
            Ok(Some(entry)) if entry.value().0.len() as u64 == self.span(index).1 => {
                Some(entry.value().0.clone())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "range cache read failed; fetching upstream");
                None
            }
        }
    }

    /// Requests blocks `first..` up to the next one the cache has (or the end of the range)
    /// with one ranged GET, checking that upstream still has the version being read.
    async fn fetch_from(&mut self, first: u64) -> Result<Fetch, ReadError> {
        let mut end = first + 1;
        while end <= self.last && !self.is_cached(end) {
            end += 1;
        }
        let (start, _) = self.span(first);
        let (last_start, last_len) = self.span(end - 1);
        let wanted = ByteRange {
            start,
            end: last_start + last_len - 1,
        };
        let request = RangeRequest::From {
            start: wanted.start,
            end: Some(wanted.end),
        };
        let got = match self.inner.get(&self.key, Some(request)).await {
            Ok(got) => got,
            Err(StorageError::InvalidRange { .. }) => return Err(ReadError::Changed),
            Err(e) => return Err(e.into()),
        };
        let served = got.range.unwrap_or(ByteRange {
            start: 0,
            end: got.meta.size.saturating_sub(1),
        });
        if got.meta.etag != self.object.etag || got.meta.size != self.size {
            return Err(ReadError::Changed);
        }
        if served != wanted {
            return Err(StorageError::Upstream(format!(
                "asked for bytes {}-{}, got {}-{}",
                wanted.start, wanted.end, served.start, served.end
            ))
            .into());
        }
        Ok(Fetch {
            body: got.body,
            pending: Bytes::new(),
            next: first,
            end,
        })
    }

    fn into_io_error(self, e: ReadError) -> std::io::Error {
        match e {
            ReadError::Changed => {
                self.cache
                    .shared
                    .heads
                    .forget(&self.object.backend, &self.key);
                std::io::Error::other("the object changed while it was being read")
            }
            ReadError::Storage(StorageError::Io(e)) => e,
            ReadError::Storage(e) => std::io::Error::other(e),
        }
    }
}

#[cfg(test)]
mod tests;
